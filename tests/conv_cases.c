/* conv_cases.c — the conv2d cases of the GPU conv tests, their CPU oracle and the runner of the
 * launchers against it (conv_cases.h). */
#include "conv_cases.h"

#if CNN_WITH_CUDA

const conv_case conv_cases[] = {
    {"odd 3x3 pad 1", 2, 3, 11, 13, 5, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},
    {"3x3 stride 2", 2, 8, 15, 17, 12, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1},
    {"3x3 dilation 2", 1, 6, 14, 10, 9, 3, 3, 1, 1, 2, 2, 2, 2, 1, 0},
    {"groups 4", 2, 8, 9, 9, 12, 3, 3, 1, 1, 1, 1, 1, 1, 4, 1},
    {"depthwise stride 2", 2, 16, 12, 11, 16, 3, 3, 2, 2, 1, 1, 1, 1, 16, 1},
    {"depthwise x2 5x5", 1, 4, 9, 9, 8, 5, 5, 1, 1, 2, 2, 1, 1, 4, 0},
    {"1x1", 3, 64, 7, 7, 96, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1},
    {"1x1 stride 2", 2, 32, 9, 9, 64, 1, 1, 2, 2, 0, 0, 1, 1, 1, 0},
    {"7x7/2 stem", 1, 3, 37, 41, 64, 7, 7, 2, 2, 3, 3, 1, 1, 1, 0},
    {"520 channels", 1, 520, 5, 5, 513, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},
    {"big tiles, split-K", 4, 64, 28, 28, 128, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},
    {"asymmetric", 2, 5, 10, 7, 7, 3, 2, 2, 1, 1, 0, 1, 2, 1, 1},
    {"stride 3 > kernel", 2, 4, 13, 14, 6, 2, 2, 3, 3, 0, 1, 1, 1, 2, 1},
    /* all three GEMMs split their reduction (576, 576, 512 long) and have 2 groups each */
    {"groups 2, split-K", 2, 128, 16, 16, 128, 3, 3, 1, 1, 1, 1, 1, 1, 2, 1},
    /* backward data by the Cg <= 4 gather: its checking loop (dilation > 1 in both dims), and
     * its stepping loop with a different stride per dim and taps past the output's end */
    {"cg 4, dilation 2x3, stride 2", 2, 8, 13, 14, 6, 3, 3, 2, 2, 2, 3, 2, 3, 2, 1},
    {"cg 2, stride 2x1, pad 2x0", 2, 6, 11, 9, 9, 5, 3, 2, 1, 2, 0, 1, 1, 3, 0},
    /* backward data by stride phase (Cg > 4, dilation 1; "3x3 stride 2" and "1x1 stride 2",
     * whose odd phases have no taps, too): groups, stride 3 with uneven padding, and phases whose
     * reductions (512 to 2048 long on one 16 x 16 tile) are split */
    {"groups 2, stride 2", 2, 16, 13, 11, 12, 3, 3, 2, 2, 1, 1, 1, 1, 2, 1},
    {"5x5 stride 3, pad 2x1", 1, 6, 17, 16, 7, 5, 5, 3, 3, 2, 1, 1, 1, 1, 0},
    {"stride 2, split-K", 1, 16, 8, 8, 512, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1},
};
const int n_conv_cases = (int)(sizeof conv_cases / sizeof *conv_cases);

cnn_conv2d_params params_of(const conv_case *cc)
{
    return (cnn_conv2d_params){{cc->sh, cc->sw}, {cc->ph, cc->pw}, {cc->dh, cc->dw}, cc->groups};
}



void ref_free(conv_ref *r)
{
    cnn_tensor_free(&r->x);
    cnn_tensor_free(&r->w);
    cnn_tensor_free(&r->b);
    cnn_tensor_free(&r->dy);
    cnn_tensor_free(&r->y);
}

/* The CPU op's output and gradients for r's inputs (x, w, b, and dy when set; else a random dy
 * of the output's shape). */
int ref_compute(const conv_case *cc, conv_ref *r)
{
    cnn_conv2d_params p = params_of(cc);
    if (cnn_conv2d(r->x, r->w, r->b, &p, &r->y) != CNN_OK) return 0;
    cnn_shape ys = cnn_tensor_shape(r->y);
    if (!r->dy) r->dy = rand_tensor(ys, -1, 1, 0);
    if (!r->dy || cnn_backward_with_grad(r->y, r->dy) != CNN_OK) return 0;
    r->dx = cnn_tensor_grad(r->x);
    r->dw = cnn_tensor_grad(r->w);
    r->db = r->b ? cnn_tensor_grad(r->b) : NULL;
    r->g = (cnn_cuda_conv){.n = cc->n, .c = cc->c, .h = cc->h, .w = cc->w, .k = cc->k, .r = cc->r,
                           .s = cc->s, .p = ys.d[2], .q = ys.d[3], .cg = cc->c / cc->groups,
                           .kg = cc->k / cc->groups, .sh = cc->sh, .sw = cc->sw, .ph = cc->ph,
                           .pw = cc->pw, .dh = cc->dh, .dw = cc->dw, .groups = cc->groups};
    return r->dx && r->dw && (!r->b || r->db);
}

/* Weights scaled by 1/sqrt(fan-in) keep every output O(1), so one tolerance fits all cases. */
int make_ref(const conv_case *cc, conv_ref *r)
{
    memset(r, 0, sizeof *r);
    const int cg = cc->c / cc->groups;
    const float ws = 1.0f / sqrtf((float)(cg * cc->r * cc->s));
    r->x = rand_tensor(CNN_SHAPE(cc->n, cc->c, cc->h, cc->w), -1, 1, 1);
    r->w = rand_tensor(CNN_SHAPE(cc->k, cg, cc->r, cc->s), -ws, ws, 1);
    if (cc->bias) r->b = rand_tensor(CNN_SHAPE(cc->k), -1, 1, 1);
    if (!r->x || !r->w || (cc->bias && !r->b)) return 0;
    return ref_compute(cc, r);
}

/* |got - ref| <= atol * max(1, max|ref|) + rtol * |ref|: the absolute part grows with the
 * tensor's largest value, as the rounding of a long sum grows with the magnitudes summed (dw
 * and db sum N*P*Q terms and reach ~100 here; y and dx stay O(1)). */
int close_scaled(const char *what, const cnn_tensor *got, const cnn_tensor *ref, float atol,
                 float rtol)
{
    int64_t n = cnn_tensor_numel(ref);
    float *v = malloc((size_t)(n ? n : 1) * sizeof *v), mx = 1.0f;
    if (!v || cnn_tensor_read(ref, v, (size_t)n) != CNN_OK) {
        free(v);
        return 0;
    }
    for (int64_t i = 0; i < n; i++) mx = fmaxf(mx, fabsf(v[i]));
    free(v);
    return tensors_close(what, got, ref, atol * mx, rtol);
}

const conv_impl conv_hand = {"hand-written", cnn_cuda_conv2d_forward,
                             cnn_cuda_conv2d_backward_data, cnn_cuda_conv2d_backward_filter};
#if CNN_WITH_CUDNN
const conv_impl conv_dnn = {"cudnn", cnn_cudnn_conv2d_forward, cnn_cudnn_conv2d_backward_data,
                            cnn_cudnn_conv2d_backward_filter};
#endif

void conv_out_free(conv_out *o)
{
    cnn_tensor_free(&o->y);
    cnn_tensor_free(&o->dx);
    cnn_tensor_free(&o->dw);
    cnn_tensor_free(&o->db);
}

int conv_run(const conv_case *cc, const conv_impl *im, const conv_ref *r, conv_out *o)
{
    memset(o, 0, sizeof *o);
    cnn_tensor *x = to_gpu(r->x), *w = to_gpu(r->w), *b = to_gpu(r->b), *dy = to_gpu(r->dy);
    o->y = nan_gpu(cnn_tensor_shape(r->dy));
    o->dx = nan_gpu(cnn_tensor_shape(r->x));
    o->dw = nan_gpu(cnn_tensor_shape(r->w));
    o->db = nan_gpu(CNN_SHAPE(cc->k));
    int ok = 0;
    if (!x || !w || !dy || !o->y || !o->dx || !o->dw || !o->db || (cc->bias && !b)) {
        cnn_test_fail(__FILE__, __LINE__, "%s: setup failed: %s", cc->name, cnn_last_error());
        goto done;
    }
    cnn_context *ctx = cnn_context_current();
    cnn_status s1 = im->fwd(ctx, &r->g, dev_f32(x), dev_f32(w), dev_f32(b), cnn_f32(o->y));
    cnn_status s2 = im->data(ctx, &r->g, dev_f32(dy), dev_f32(w), cnn_f32(o->dx));
    cnn_status s3 = im->filter(ctx, &r->g, dev_f32(dy), dev_f32(x), cnn_f32(o->dw),
                               b ? cnn_f32(o->db) : NULL);
    if (s1 != CNN_OK || s2 != CNN_OK || s3 != CNN_OK) {
        cnn_test_fail(__FILE__, __LINE__, "%s %s: %s / %s / %s: %s", im->name, cc->name,
                      cnn_status_name(s1), cnn_status_name(s2), cnn_status_name(s3),
                      cnn_last_error());
        goto done;
    }
    ok = 1;
done:
    cnn_tensor_free(&x);
    cnn_tensor_free(&w);
    cnn_tensor_free(&b);
    cnn_tensor_free(&dy);
    if (!ok) conv_out_free(o);
    return ok;
}

void conv_compare(const char *tag, const conv_case *cc, const char *name, const cnn_tensor *got,
                  const cnn_tensor *ref, float atol, float rtol)
{
    char what[160];
    snprintf(what, sizeof what, "%s %s: %s", tag, cc->name, name);
    if (!close_scaled(what, got, ref, atol, rtol)) cnn_test_fail(__FILE__, __LINE__, "%s", what);
}

void check_impl(const conv_case *cc, const conv_impl *im, float atol, float rtol)
{
    conv_ref r;
    conv_out o;
    if (!make_ref(cc, &r)) {
        cnn_test_fail(__FILE__, __LINE__, "%s: reference failed: %s", cc->name, cnn_last_error());
    } else if (conv_run(cc, im, &r, &o)) {
        conv_compare(im->name, cc, "y", o.y, r.y, atol, rtol);
        conv_compare(im->name, cc, "dx", o.dx, r.dx, atol, rtol);
        conv_compare(im->name, cc, "dw", o.dw, r.dw, atol, rtol);
        if (r.b) conv_compare(im->name, cc, "db", o.db, r.db, atol, rtol);
        conv_out_free(&o);
    }
    ref_free(&r);
}

/* Runs forward, backward-data and backward-filter of case cc with im and reads the three
 * results back into host arrays (each malloc'ed). */
static int run_to_host(const conv_case *cc, const conv_impl *im, const conv_ref *r, float **out)
{
    (void)cc; /* the case's geometry already shaped r's tensors */
    cnn_tensor *x = to_gpu(r->x), *w = to_gpu(r->w), *dy = to_gpu(r->dy);
    cnn_tensor *y = nan_gpu(cnn_tensor_shape(r->dy)), *dx = nan_gpu(cnn_tensor_shape(r->x));
    cnn_tensor *dw = nan_gpu(cnn_tensor_shape(r->w));
    cnn_tensor *res[3] = {y, dx, dw};
    cnn_context *ctx = cnn_context_current();
    int ok = x && w && dy && y && dx && dw &&
             im->fwd(ctx, &r->g, dev_f32(x), dev_f32(w), NULL, cnn_f32(y)) == CNN_OK &&
             im->data(ctx, &r->g, dev_f32(dy), dev_f32(w), cnn_f32(dx)) == CNN_OK &&
             im->filter(ctx, &r->g, dev_f32(dy), dev_f32(x), cnn_f32(dw), NULL) == CNN_OK;
    for (int i = 0; i < 3; i++) {
        out[i] = NULL;
        if (!ok) continue;
        size_t n = (size_t)cnn_tensor_numel(res[i]);
        out[i] = malloc(n * sizeof *out[i]);
        ok = out[i] && cnn_tensor_read(res[i], out[i], n) == CNN_OK;
    }
    cnn_tensor_free(&x);
    cnn_tensor_free(&w);
    cnn_tensor_free(&dy);
    for (int i = 0; i < 3; i++) cnn_tensor_free(&res[i]);
    return ok;
}

/* The hand-written kernels always give the same bits; cuDNN in deterministic mode. */
void check_bitwise_repeat(const conv_impl *im, const conv_case *cc)
{
    conv_ref r;
    REQUIRE(make_ref(cc, &r));
    float *a[3] = {NULL}, *b[3] = {NULL}; /* b stays unset when the first run fails */
    int ok = run_to_host(cc, im, &r, a) && run_to_host(cc, im, &r, b);
    if (!ok) cnn_test_fail(__FILE__, __LINE__, "%s: runs failed: %s", im->name, cnn_last_error());
    const int64_t n[3] = {cnn_tensor_numel(r.y), cnn_tensor_numel(r.x), cnn_tensor_numel(r.w)};
    static const char *const names[3] = {"y", "dx", "dw"};
    for (int i = 0; ok && i < 3; i++)
        if (memcmp(a[i], b[i], (size_t)n[i] * sizeof(float)) != 0)
            cnn_test_fail(__FILE__, __LINE__, "%s: %s differs between two runs", im->name,
                          names[i]);
    for (int i = 0; i < 3; i++) {
        free(a[i]);
        free(b[i]);
    }
    ref_free(&r);
}

#endif /* CNN_WITH_CUDA */
