/* elementwise.c — add, scale, sum, mean, concat: shape rules, forward, backward, CPU kernels and
 * the choice of CUDA kernel (cuda/elementwise.cu) for CUDA tensors. Simple ops, and the pattern
 * every op file follows: check arguments (naming op and shapes), compute into a new output,
 * record a node with what backward needs, nothing more. */
#include "internal.h"
#include "parallel.h"
#if CNN_WITH_CUDA
#include "../cuda/cuda_api.h"
#endif

#include <math.h>

/* ---- add: y = a + b ---------------------------------------------------------------------- */
static cnn_status add_backward(cnn_node *n, const cnn_tensor *dy, cnn_tensor **dx)
{
    /* The gradient passes through unchanged to both inputs; the tape copies it if both take it. */
    for (int i = 0; i < 2; i++)
        if (n->in[i].needs_grad) dx[i] = cnn_tensor_retain((cnn_tensor *)dy);
    return CNN_OK;
}

/* Through the ReLU from its saved output, then to both inputs as add's backward. */
static cnn_status add_relu_backward(cnn_node *n, const cnn_tensor *dy, cnn_tensor **dx)
{
    cnn_tensor *d = NULL;
    CNN_TRY(cnn_relu_grad(n->saved[0], dy, &d));
    for (int i = 0; i < 2; i++)
        if (n->in[i].needs_grad) dx[i] = cnn_tensor_retain(d);
    cnn_tensor_free(&d);
    return CNN_OK;
}

/* y = a + b, then a ReLU when relu (saving y for the backward). */
static cnn_status add_act(const char *op, const cnn_tensor *a, const cnn_tensor *b, bool relu,
                          cnn_tensor **y)
{
    CNN_CHECK(y, CNN_ERR_INVALID_ARG, "%s: y is NULL", op);
    *y = NULL;
    CNN_TRY(cnn_check_f32(op, "a", a));
    CNN_TRY(cnn_check_f32(op, "b", b));
    CNN_TRY(cnn_check_same_device(op, a, "a", b, "b"));
    CNN_CHECK(cnn_shape_equal(a->shape, b->shape), CNN_ERR_SHAPE,
              "%s: a %s and b %s differ in shape", op, cnn_shape_of(a), cnn_shape_of(b));
    cnn_status st = CNN_OK;
    cnn_tensor *ac = NULL, *bc = NULL;
    CNN_TRYG(cnn_contig(a, &ac));
    CNN_TRYG(cnn_contig(b, &bc));
    CNN_TRYG(cnn_tensor_empty_for(op, a->shape, CNN_F32, a->device, y));
    {
        /* a, b, y: (numel) */
        const float *pa = cnn_f32(ac), *pb = cnn_f32(bc);
        float *py = cnn_f32(*y);
        int64_t n = cnn_shape_numel(a->shape);
#if CNN_WITH_CUDA
        if (cnn_on_cuda(a)) CNN_TRYG(cnn_cuda_add_f32(cnn_ctx(), py, pa, pb, n, relu));
        else
#endif
        if (relu) {
            #pragma omp parallel for simd if (parallel: cnn_par_worth(n))
            for (int64_t i = 0; i < n; i++) {
                const float v = pa[i] + pb[i];
                py[i] = v <= 0.0f ? 0.0f : v;
            }
        } else {
            #pragma omp parallel for simd if (parallel: cnn_par_worth(n))
            for (int64_t i = 0; i < n; i++) py[i] = pa[i] + pb[i];
        }
    }
    const cnn_tensor *in[2] = {a, b};
    if (cnn_should_record(in, 2)) {
        cnn_node *nd = NULL;
        CNN_TRYG(cnn_tape_record(op, relu ? add_relu_backward : add_backward, *y, in, 2, NULL, 0,
                                 &nd));
        if (relu) cnn_node_save(nd, *y);
    }
done:
    cnn_tensor_free(&ac);
    cnn_tensor_free(&bc);
    if (st != CNN_OK) cnn_tensor_free(y);
    return st;
}

cnn_status cnn_add(const cnn_tensor *a, const cnn_tensor *b, cnn_tensor **y)
{
    return add_act("add", a, b, false, y);
}

cnn_status cnn_add_relu(const cnn_tensor *a, const cnn_tensor *b, cnn_tensor **y)
{
    return add_act("add_relu", a, b, true, y);
}

/* ---- scale: y = alpha * a ---------------------------------------------------------------- */
static cnn_status scale_kernel(const cnn_tensor *a, float alpha, cnn_tensor **y)
{
    cnn_tensor *ac = NULL;
    CNN_TRY(cnn_contig(a, &ac));
    cnn_status st = cnn_tensor_empty_for("scale", a->shape, CNN_F32, a->device, y);
    if (st == CNN_OK) {
        const float *pa = cnn_f32(ac);
        float *py = cnn_f32(*y);
        int64_t n = cnn_shape_numel(a->shape);
#if CNN_WITH_CUDA
        if (cnn_on_cuda(a)) st = cnn_cuda_scale_f32(cnn_ctx(), py, pa, alpha, n);
        else
#endif
        {
            #pragma omp parallel for simd if (parallel: cnn_par_worth(n))
            for (int64_t i = 0; i < n; i++) py[i] = alpha * pa[i];
        }
        if (st != CNN_OK) cnn_tensor_free(y);
    }
    cnn_tensor_free(&ac);
    return st;
}

static cnn_status scale_backward(cnn_node *n, const cnn_tensor *dy, cnn_tensor **dx)
{
    float alpha;
    memcpy(&alpha, n->params, sizeof alpha);
    return scale_kernel(dy, alpha, &dx[0]);
}

cnn_status cnn_scale(const cnn_tensor *a, float alpha, cnn_tensor **y)
{
    CNN_CHECK(y, CNN_ERR_INVALID_ARG, "scale: y is NULL");
    *y = NULL;
    CNN_TRY(cnn_check_f32("scale", "a", a));
    CNN_TRY(scale_kernel(a, alpha, y));
    cnn_status st = CNN_OK;
    if (cnn_should_record(&a, 1))
        st = cnn_tape_record("scale", scale_backward, *y, &a, 1, &alpha, sizeof alpha, NULL);
    if (st != CNN_OK) cnn_tensor_free(y);
    return st;
}

/* ---- sum / mean of all elements -> scalar ------------------------------------------------- */
static cnn_status reduce_backward(cnn_node *n, const cnn_tensor *dy, cnn_tensor **dx)
{
    float scale, g;
    memcpy(&scale, n->params, sizeof scale);
#if CNN_WITH_CUDA
    /* dy stays on the device: the kernel reads the scalar there, with no host round trip. */
    if (cnn_on_cuda(dy)) {
        CNN_TRY(cnn_tensor_empty(n->in[0].shape, CNN_F32, n->in[0].device, &dx[0]));
        cnn_status st = cnn_cuda_fill_scaled_f32(cnn_ctx(), cnn_f32(dx[0]), cnn_f32(dy), scale,
                                                 cnn_shape_numel(n->in[0].shape));
        if (st != CNN_OK) cnn_tensor_free(&dx[0]);
        return st;
    }
#endif
    CNN_TRY(cnn_tensor_read(dy, &g, 1));
    return cnn_tensor_full(n->in[0].shape, g * scale, n->in[0].device, &dx[0]);
}

static cnn_status reduce(const char *op, const cnn_tensor *x, bool mean, cnn_tensor **y)
{
    CNN_CHECK(y, CNN_ERR_INVALID_ARG, "%s: y is NULL", op);
    *y = NULL;
    CNN_TRY(cnn_check_f32(op, "x", x));
    cnn_tensor *xc = NULL;
    CNN_TRY(cnn_contig(x, &xc));
    int64_t n = cnn_shape_numel(x->shape);
    const float *p = cnn_f32(xc);
    float scale = mean ? (n ? 1.0f / (float)n : NAN) : 1.0f;
    cnn_status st = CNN_OK;
#if CNN_WITH_CUDA
    if (cnn_on_cuda(x)) {
        st = cnn_tensor_empty_for(op, CNN_SCALAR, CNN_F32, x->device, y);
        if (st == CNN_OK) st = cnn_cuda_sum_f32(cnn_ctx(), cnn_f32(*y), p, n, scale);
        cnn_tensor_free(&xc);
        if (st != CNN_OK) {
            cnn_tensor_free(y);
            return st;
        }
    } else
#endif
    {
        double s = 0;
        #pragma omp parallel for reduction(+ : s) if (cnn_par_worth(n))
        for (int64_t i = 0; i < n; i++) s += p[i];
        cnn_tensor_free(&xc);
        CNN_TRY(cnn_tensor_full(CNN_SCALAR, (float)(s * scale), x->device, y));
    }
    if (cnn_should_record(&x, 1))
        st = cnn_tape_record(op, reduce_backward, *y, &x, 1, &scale, sizeof scale, NULL);
    if (st != CNN_OK) cnn_tensor_free(y);
    return st;
}

cnn_status cnn_sum(const cnn_tensor *x, cnn_tensor **y) { return reduce("sum", x, false, y); }
cnn_status cnn_mean(const cnn_tensor *x, cnn_tensor **y) { return reduce("mean", x, true, y); }

/* ---- concat along one dim ----------------------------------------------------------------- */
/* Copies part into the slab [at, at + len) of whole's middle dim (to_slab), or that slab out
 * into part (backward). */
// part: (outer, len, inner); whole: (outer, total, inner)
static void concat_copy(float *whole, float *part, int64_t outer, int64_t total, int64_t at,
                        int64_t len, int64_t inner, bool to_slab)
{
    size_t bytes = (size_t)(len * inner) * sizeof(float);
    #pragma omp parallel for if (cnn_par_worth(outer * len * inner) && outer > 1)
    for (int64_t o = 0; o < outer; o++) {
        float *w = whole + (o * total + at) * inner, *q = part + o * len * inner;
        if (bytes) memcpy(to_slab ? w : q, to_slab ? q : w, bytes);
    }
}

/* PyTorch's legacy rule: a 1-D tensor of size 0 is left out, whatever the others' shapes. */
static bool legacy_empty(cnn_shape s) { return s.ndim == 1 && s.d[0] == 0; }

static void concat_extent(cnn_shape s, int dim, int64_t *outer, int64_t *inner)
{
    *outer = *inner = 1;
    for (int i = 0; i < s.ndim; i++) {
        if (i < dim) *outer *= s.d[i];
        else if (i > dim) *inner *= s.d[i];
    }
}

static cnn_status concat_backward(cnn_node *n, const cnn_tensor *dy, cnn_tensor **dx)
{
    int dim;
    memcpy(&dim, n->params, sizeof dim);
    int64_t outer, inner, total = dy->shape.d[dim], at = 0;
    concat_extent(dy->shape, dim, &outer, &inner);
    for (int i = 0; i < n->n_inputs; i++) {
        int64_t len = legacy_empty(n->in[i].shape) ? 0 : n->in[i].shape.d[dim];
        if (n->in[i].needs_grad) {
            CNN_TRY(cnn_tensor_empty(n->in[i].shape, CNN_F32, n->in[i].device, &dx[i]));
#if CNN_WITH_CUDA
            if (cnn_on_cuda(dy))
                CNN_TRY(cnn_cuda_concat_copy_f32(cnn_ctx(), cnn_f32(dy), cnn_f32(dx[i]), outer,
                                                 total, at, len, inner, false));
            else
#endif
                concat_copy(cnn_f32(dy), cnn_f32(dx[i]), outer, total, at, len, inner, false);
        }
        at += len;
    }
    return CNN_OK;
}

cnn_status cnn_concat(const cnn_tensor *const *xs, int n, int dim, cnn_tensor **y)
{
    CNN_CHECK(y, CNN_ERR_INVALID_ARG, "concat: y is NULL");
    *y = NULL;
    CNN_CHECK(xs && n >= 1, CNN_ERR_INVALID_ARG, "concat: needs at least one tensor, got %d%s", n,
              xs ? "" : " (xs is NULL)");
    char name[32], name_r[32];
    int r = -1; /* the first input that is not a legacy (0,): the shape the others follow */
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof name, "xs[%d]", i);
        CNN_TRY(cnn_check_f32("concat", name, xs[i]));
        if (r < 0 && !legacy_empty(xs[i]->shape)) r = i;
    }
    if (r < 0) r = 0; /* only (0,) tensors: the result is (0,) along any dim, as PyTorch's */
    const bool all_legacy = legacy_empty(xs[r]->shape);
    const cnn_tensor *x0 = xs[r];
    snprintf(name_r, sizeof name_r, "xs[%d]", r);
    int nd = x0->shape.ndim;
    CNN_CHECK(nd > 0, CNN_ERR_SHAPE,
              "concat: %s is a scalar (rank 0) and cannot be concatenated", name_r);
    int d = all_legacy ? 0 : dim < 0 ? dim + nd : dim;
    CNN_CHECK(d >= 0 && d < nd, CNN_ERR_SHAPE, "concat: dim %d is out of range for %s (rank %d)",
              dim, cnn_shape_of(x0), nd);
    cnn_shape out = x0->shape;
    for (int i = 0; i < n; i++) {
        const cnn_tensor *x = xs[i];
        snprintf(name, sizeof name, "xs[%d]", i);
        CNN_TRY(cnn_check_same_device("concat", x0, name_r, x, name));
        if (i == r || legacy_empty(x->shape)) continue;
        CNN_CHECK(x->shape.ndim == nd, CNN_ERR_SHAPE,
                  "concat: %s %s has rank %d but %s %s has rank %d", name, cnn_shape_of(x),
                  x->shape.ndim, name_r, cnn_shape_of(x0), nd);
        for (int j = 0; j < nd; j++)
            CNN_CHECK(j == d || x->shape.d[j] == x0->shape.d[j], CNN_ERR_SHAPE,
                      "concat: %s %s and %s %s differ in dim %d (only dim %d may differ)", name,
                      cnn_shape_of(x), name_r, cnn_shape_of(x0), j, d);
        CNN_CHECK(!__builtin_add_overflow(out.d[d], x->shape.d[d], &out.d[d]), CNN_ERR_SHAPE,
                  "concat: the sizes along dim %d add up past 2^63 - 1 (at %s %s)", d, name,
                  cnn_shape_of(x));
    }
    int64_t outer, inner;
    concat_extent(out, d, &outer, &inner);
    CNN_TRY(cnn_tensor_empty_for("concat", out, CNN_F32, x0->device, y));
    cnn_status st = CNN_OK;
    int64_t at = 0;
    for (int i = 0; i < n; i++) {
        if (legacy_empty(xs[i]->shape)) continue;
        cnn_tensor *xc = NULL;
        CNN_TRYG(cnn_contig(xs[i], &xc));
        int64_t len = xs[i]->shape.d[d];
#if CNN_WITH_CUDA
        if (cnn_on_cuda(x0))
            st = cnn_cuda_concat_copy_f32(cnn_ctx(), cnn_f32(*y), cnn_f32(xc), outer, out.d[d], at,
                                          len, inner, true);
        else
#endif
            concat_copy(cnn_f32(*y), cnn_f32(xc), outer, out.d[d], at, len, inner, true);
        cnn_tensor_free(&xc);
        if (st != CNN_OK) goto done;
        at += len;
    }
    if (cnn_should_record(xs, n))
        CNN_TRYG(cnn_tape_record("concat", concat_backward, *y, xs, n, &d, sizeof d, NULL));
done:
    if (st != CNN_OK) cnn_tensor_free(y);
    return st;
}
