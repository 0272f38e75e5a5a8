/* gradcheck.c — see gradcheck.h. */
#include "gradcheck.h"

static double dot_with(const cnn_tensor *y, const float *r)
{
    int64_t n = cnn_tensor_numel(y);
    float *v = malloc((size_t)(n ? n : 1) * sizeof *v);
    double s = 0;
    if (!v || cnn_tensor_read(y, v, (size_t)n) != CNN_OK) {
        free(v);
        return NAN;
    }
    for (int64_t i = 0; i < n; i++) s += (double)v[i] * r[i];
    free(v);
    return s;
}

static double eval_loss(gc_fn f, cnn_tensor *const *inputs, void *ud, const float *r)
{
    cnn_tensor *y = NULL;
    bool was = cnn_set_grad_enabled(false);
    cnn_status st = f(inputs, ud, &y);
    cnn_set_grad_enabled(was);
    if (st != CNN_OK) return NAN;
    double s = dot_with(y, r);
    cnn_tensor_free(&y);
    return s;
}

int gradcheck(const char *what, gc_fn f, cnn_tensor *const *inputs, int n, void *ud,
              const gc_opts *opts)
{
    gc_opts o = {1e-2f, 1e-3f, 1e-2f, 0};
    if (opts) {
        if (opts->eps > 0) o.eps = opts->eps;
        if (opts->atol > 0) o.atol = opts->atol;
        if (opts->rtol > 0) o.rtol = opts->rtol;
        o.max_checks = opts->max_checks;
    }
    for (int i = 0; i < n; i++) cnn_tensor_zero_grad(inputs[i]);
    cnn_tensor *y = NULL, *rt = NULL;
    if (f(inputs, ud, &y) != CNN_OK) {
        printf("    gradcheck %s: forward failed: %s\n", what, cnn_last_error());
        return 0;
    }
    int64_t ny = cnn_tensor_numel(y);
    float *r = malloc((size_t)(ny ? ny : 1) * sizeof *r);
    cnn_tensor *r_cpu = rand_tensor(cnn_tensor_shape(y), -1, 1, 0);
    cnn_tensor_read(r_cpu, r, (size_t)ny);
    cnn_tensor_to(r_cpu, cnn_tensor_device(y), &rt);
    cnn_tensor_free(&r_cpu);
    int ok = 1;
    if (cnn_backward_with_grad(y, rt) != CNN_OK) {
        printf("    gradcheck %s: backward failed: %s\n", what, cnn_last_error());
        ok = 0;
    }
    cnn_tensor_free(&y);
    cnn_tensor_free(&rt);
    for (int i = 0; ok && i < n; i++) {
        cnn_tensor *x = inputs[i];
        if (!x || !cnn_tensor_requires_grad(x)) continue;
        cnn_tensor *g = cnn_tensor_grad(x);
        if (!g) {
            printf("    gradcheck %s: input %d got no gradient\n", what, i);
            ok = 0;
            break;
        }
        int64_t nx = cnn_tensor_numel(x);
        float *gv = malloc((size_t)nx * sizeof *gv), *xv = malloc((size_t)nx * sizeof *xv);
        cnn_tensor_read(g, gv, (size_t)nx);
        cnn_tensor_read(x, xv, (size_t)nx);
        int64_t step = (o.max_checks > 0 && nx > o.max_checks) ? nx / o.max_checks : 1;
        double max_err = 0;
        int shown = 0;
        for (int64_t j = 0; j < nx; j += step) {
            float orig = xv[j];
            xv[j] = orig + o.eps;
            cnn_tensor_write(x, xv, (size_t)nx);
            double lp = eval_loss(f, inputs, ud, r);
            xv[j] = orig - o.eps;
            cnn_tensor_write(x, xv, (size_t)nx);
            double lm = eval_loss(f, inputs, ud, r);
            xv[j] = orig;
            cnn_tensor_write(x, xv, (size_t)nx);
            double num = (lp - lm) / (2.0 * o.eps);
            double err = fabs(num - gv[j]);
            if (err > max_err || isnan(err)) max_err = isnan(err) ? INFINITY : err;
            if (!(err <= o.atol + o.rtol * fabs(num))) {
                if (shown++ < 5)
                    printf("    gradcheck %s: input %d [%lld]: analytic %.6g numeric %.6g\n", what,
                           i, (long long)j, gv[j], num);
                ok = 0;
            }
        }
        if (!ok) printf("    gradcheck %s: input %d max abs error %.3g\n", what, i, max_err);
        free(gv);
        free(xv);
    }
    free(r);
    return ok;
}

int tensors_close(const char *what, const cnn_tensor *a, const cnn_tensor *ref, float atol,
                  float rtol)
{
    int64_t n = cnn_tensor_numel(ref);
    if (!a || cnn_tensor_numel(a) != n) {
        printf("    %s: sizes differ (%lld vs %lld)\n", what, (long long)cnn_tensor_numel(a),
               (long long)n);
        return 0;
    }
    float *av = malloc((size_t)(n ? n : 1) * sizeof *av);
    float *rv = malloc((size_t)(n ? n : 1) * sizeof *rv);
    cnn_tensor_read(a, av, (size_t)n);
    cnn_tensor_read(ref, rv, (size_t)n);
    int ok = 1, shown = 0;
    double max_err = 0;
    for (int64_t i = 0; i < n; i++) {
        double err = fabs((double)av[i] - rv[i]);
        if (isnan(err)) err = INFINITY;
        if (err > max_err) max_err = err;
        if (!(err <= atol + rtol * fabs(rv[i]))) {
            if (shown++ < 5)
                printf("    %s: [%lld] got %.7g expected %.7g\n", what, (long long)i, av[i], rv[i]);
            ok = 0;
        }
    }
    if (!ok) printf("    %s: %d mismatches, max abs error %.3g\n", what, shown, max_err);
    free(av);
    free(rv);
    return ok;
}

cnn_tensor *rand_tensor(cnn_shape s, float lo, float hi, int requires_grad)
{
    cnn_tensor *t = NULL;
    if (cnn_tensor_uniform(s, lo, hi, CNN_CPU, &t) != CNN_OK) return NULL;
    if (requires_grad) cnn_tensor_set_requires_grad(t, true);
    return t;
}

cnn_tensor *leaf_of_values(cnn_shape s, const float *v)
{
    cnn_tensor *t = NULL;
    if (cnn_tensor_from_data(s, v, CNN_CPU, &t) != CNN_OK) return NULL;
    if (cnn_tensor_set_requires_grad(t, true) != CNN_OK) cnn_tensor_free(&t);
    return t;
}

cnn_status set_grad_values(cnn_tensor *p, const float *v)
{
    cnn_tensor *g = NULL;
    cnn_tensor_zero_grad(p);
    cnn_status st = cnn_tensor_from_data(cnn_tensor_shape(p), v, CNN_CPU, &g);
    if (st == CNN_OK) st = cnn_backward_with_grad(p, g);
    cnn_tensor_free(&g);
    return st;
}

bool shape_eq(cnn_shape a, cnn_shape b)
{
    if (a.ndim != b.ndim) return false;
    for (int i = 0; i < a.ndim; i++)
        if (a.d[i] != b.d[i]) return false;
    return true;
}

bool has_shape(const cnn_tensor *t, cnn_shape s) { return t && shape_eq(cnn_tensor_shape(t), s); }

bool ends_with(const char *s, const char *tail)
{
    size_t a = strlen(s), b = strlen(tail);
    return a >= b && strcmp(s + a - b, tail) == 0;
}

cnn_tensor *to_gpu(const cnn_tensor *t)
{
    cnn_tensor *d = NULL;
    if (!t || cnn_tensor_to(t, CNN_CUDA(0), &d) != CNN_OK) return NULL;
    if (cnn_tensor_requires_grad(t)) cnn_tensor_set_requires_grad(d, true);
    return d;
}

bool on_gpu(const cnn_tensor *t) { return t && cnn_tensor_device(t).type == CNN_DEVICE_CUDA; }

cnn_tensor *nan_gpu(cnn_shape s)
{
    cnn_tensor *t = NULL;
    if (cnn_tensor_full(s, NAN, CNN_CUDA(0), &t) != CNN_OK) return NULL;
    return t;
}

void poison_cache(const cnn_shape *shapes, int n)
{
    enum { COPIES = 4, MAX_SHAPES = 8 };
    cnn_tensor *t[COPIES * MAX_SHAPES] = {0};
    for (int i = 0; i < n && i < MAX_SHAPES; i++)
        for (int k = 0; k < COPIES; k++) t[i * COPIES + k] = nan_gpu(shapes[i]);
    cnn_synchronize();
    for (int i = 0; i < COPIES * MAX_SHAPES; i++) cnn_tensor_free(&t[i]);
}

cnn_cuda_memory_stats gpu_memory_stats(void)
{
    cnn_cuda_memory_stats s;
    if (cnn_cuda_get_memory_stats(0, &s) != CNN_OK) memset(&s, 0, sizeof s);
    return s;
}

cnn_tensor *gpu_bytes(size_t bytes)
{
    cnn_tensor *t = NULL;
    if (cnn_tensor_empty(CNN_SHAPE((int64_t)(bytes / sizeof(float))), CNN_F32, CNN_CUDA(0), &t) !=
        CNN_OK)
        return NULL;
    return t;
}

size_t gpu_fresh_segment(size_t at_least)
{
    CHECK(cnn_cuda_empty_cache() == CNN_OK);
    size_t c0 = gpu_memory_stats().cached_bytes;
    return (c0 + at_least + 2 * MIB - 1) / (2 * MIB) * (2 * MIB);
}

cnn_status gpu_release_in_capture(void *ud)
{
    cnn_tensor_free((cnn_tensor **)ud);
    return CNN_OK;
}

bool emulated_gpu(void)
{
    char name[256] = "";
    return cnn_cuda_device_name(0, name, sizeof name) == CNN_OK && strstr(name, "Emulated");
}
