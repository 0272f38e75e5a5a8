/* test_cuda_conv.c — conv2d on the GPU, hand-written kernels and cuDNN, against the CPU
 * reference (layers/conv2d.c) on fresh random inputs of awkward shapes: forward, backward-data,
 * backward-filter and the bias gradient; the cuDNN algorithm cache; deterministic mode; a
 * finite-difference gradcheck through the public op. GPU outputs are poisoned with NaN first. */
#include "gradcheck.h"

#include <stdint.h>

#if CNN_WITH_CUDA
#include "../cuda/cuda_api.h"

typedef struct conv_case {
    const char *name;
    int n, c, h, w, k, r, s, sh, sw, ph, pw, dh, dw, groups, bias;
} conv_case;

static const conv_case cases[] = {
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
};
#define N_CASES ((int)(sizeof cases / sizeof *cases))

static cnn_conv2d_params params_of(const conv_case *cc)
{
    return (cnn_conv2d_params){{cc->sh, cc->sw}, {cc->ph, cc->pw}, {cc->dh, cc->dw}, cc->groups};
}

/* Inputs on the CPU, and the CPU op's outputs and gradients: the oracle. */
typedef struct conv_ref {
    cnn_tensor *x, *w, *b, *dy;  /* CPU inputs */
    cnn_tensor *y, *dx, *dw, *db; /* CPU results (dx, dw, db borrowed from the leaves) */
    cnn_cuda_conv g;
} conv_ref;

static void ref_free(conv_ref *r)
{
    cnn_tensor_free(&r->x);
    cnn_tensor_free(&r->w);
    cnn_tensor_free(&r->b);
    cnn_tensor_free(&r->dy);
    cnn_tensor_free(&r->y);
}

/* The CPU op's output and gradients for r's inputs (x, w, b, and dy when set; else a random dy
 * of the output's shape). */
static int ref_compute(const conv_case *cc, conv_ref *r)
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
static int make_ref(const conv_case *cc, conv_ref *r)
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

/* v rounded to TF32 as a tensor core's operand: 10 mantissa bits, nearest, ties away. */
static float tf32_round(float v)
{
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    u = (u + 0x1000u) & ~0x1fffu;
    memcpy(&v, &u, sizeof v);
    return v;
}

/* A CPU copy of t that requires grad, its elements rounded to TF32 when asked. */
static cnn_tensor *cpu_copy(const cnn_tensor *t, bool tf32)
{
    if (!t) return NULL;
    const int64_t n = cnn_tensor_numel(t);
    float *v = malloc((size_t)(n ? n : 1) * sizeof *v);
    cnn_tensor *c = NULL;
    if (v && cnn_tensor_read(t, v, (size_t)n) == CNN_OK) {
        for (int64_t i = 0; tf32 && i < n; i++) v[i] = tf32_round(v[i]);
        if (cnn_tensor_from_data(cnn_tensor_shape(t), v, CNN_CPU, &c) != CNN_OK ||
            cnn_tensor_set_requires_grad(c, true) != CNN_OK)
            cnn_tensor_free(&c);
    }
    free(v);
    return c;
}

/* What a TF32 GEMM computes from r's inputs: the CPU op on x, w and dy rounded to TF32 (the
 * products are then exact and only the FP32 sums round); the bias is added unrounded. */
static int make_ref_tf32(const conv_case *cc, const conv_ref *r, conv_ref *rr)
{
    memset(rr, 0, sizeof *rr);
    rr->x = cpu_copy(r->x, true);
    rr->w = cpu_copy(r->w, true);
    rr->b = cpu_copy(r->b, false);
    rr->dy = cpu_copy(r->dy, true);
    if (!rr->x || !rr->w || !rr->dy || (r->b && !rr->b)) return 0;
    return ref_compute(cc, rr);
}

/* A device copy of a CPU tensor (no grad). */
static cnn_tensor *gpu_copy(const cnn_tensor *t)
{
    cnn_tensor *d = NULL;
    if (t && cnn_tensor_to(t, CNN_CUDA(0), &d) != CNN_OK) return NULL;
    return d;
}

/* A device tensor full of NaN: an element the kernel never writes stays NaN and fails. */
static cnn_tensor *nan_gpu(cnn_shape s)
{
    cnn_tensor *t = NULL;
    if (cnn_tensor_full(s, NAN, CNN_CUDA(0), &t) != CNN_OK) return NULL;
    return t;
}

/* Poisons the caching allocator for outputs an op allocates itself: NaN-filled tensors of the
 * sizes it is about to ask for (two of each) are released into the cache, which hands a block
 * back only for a request of at least half its size, so the op's outputs most likely start as
 * NaN rather than as zeros or old results that could hide unwritten elements. */
static void poison_cache(const cnn_shape *shapes, int n)
{
    cnn_tensor *t[16] = {0};
    for (int i = 0; i < n && 2 * i + 1 < 16; i++) {
        t[2 * i] = nan_gpu(shapes[i]);
        t[2 * i + 1] = nan_gpu(shapes[i]);
    }
    for (int i = 0; i < 16; i++) cnn_tensor_free(&t[i]);
}

typedef cnn_status (*fwd_fn)(cnn_context *, const cnn_cuda_conv *, const float *, const float *,
                             const float *, float *);
typedef cnn_status (*data_fn)(cnn_context *, const cnn_cuda_conv *, const float *, const float *,
                              float *);
typedef cnn_status (*filter_fn)(cnn_context *, const cnn_cuda_conv *, const float *,
                                const float *, float *, float *);
typedef struct conv_impl {
    const char *name;
    fwd_fn fwd;
    data_fn data;
    filter_fn filter;
} conv_impl;

static const conv_impl hand = {"hand-written", cnn_cuda_conv2d_forward,
                               cnn_cuda_conv2d_backward_data, cnn_cuda_conv2d_backward_filter};
#if CNN_WITH_CUDNN
static const conv_impl dnn = {"cudnn", cnn_cudnn_conv2d_forward, cnn_cudnn_conv2d_backward_data,
                              cnn_cudnn_conv2d_backward_filter};
#endif

static const float *f(const cnn_tensor *t) { return t ? cnn_f32(t) : NULL; }

/* |got - ref| <= atol * max(1, max|ref|) + rtol * |ref|: the absolute part grows with the
 * tensor's largest value, as the rounding of a long sum grows with the magnitudes summed (dw
 * and db sum N*P*Q terms and reach ~100 here; y and dx stay O(1)). */
static int close_scaled(const char *what, const cnn_tensor *got, const cnn_tensor *ref, float atol,
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

/* The four results of one implementation on the GPU. */
typedef struct conv_out {
    cnn_tensor *y, *dx, *dw, *db;
} conv_out;

static void out_free(conv_out *o)
{
    cnn_tensor_free(&o->y);
    cnn_tensor_free(&o->dx);
    cnn_tensor_free(&o->dw);
    cnn_tensor_free(&o->db);
}

/* Runs one implementation's three launchers on device copies of r's inputs, into NaN-poisoned
 * outputs; a failure is reported and returns 0. */
static int run_impl(const conv_case *cc, const conv_impl *im, const conv_ref *r, conv_out *o)
{
    memset(o, 0, sizeof *o);
    cnn_tensor *x = gpu_copy(r->x), *w = gpu_copy(r->w), *b = gpu_copy(r->b), *dy = gpu_copy(r->dy);
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
    cnn_status s1 = im->fwd(ctx, &r->g, f(x), f(w), f(b), cnn_f32(o->y));
    cnn_status s2 = im->data(ctx, &r->g, f(dy), f(w), cnn_f32(o->dx));
    cnn_status s3 = im->filter(ctx, &r->g, f(dy), f(x), cnn_f32(o->dw), b ? cnn_f32(o->db) : NULL);
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
    if (!ok) out_free(o);
    return ok;
}

/* One result against its reference, a failure naming the implementation, case and tensor. */
static void compare(const char *tag, const conv_case *cc, const char *name, const cnn_tensor *got,
                    const cnn_tensor *ref, float atol, float rtol)
{
    char what[160];
    snprintf(what, sizeof what, "%s %s: %s", tag, cc->name, name);
    if (!close_scaled(what, got, ref, atol, rtol)) cnn_test_fail(__FILE__, __LINE__, "%s", what);
}

/* Runs one implementation's three launchers on case cc and compares all four results with the
 * CPU's: |gpu - cpu| <= atol + rtol * |cpu|. */
static void check_impl(const conv_case *cc, const conv_impl *im, float atol, float rtol)
{
    conv_ref r;
    conv_out o;
    if (!make_ref(cc, &r)) {
        cnn_test_fail(__FILE__, __LINE__, "%s: reference failed: %s", cc->name, cnn_last_error());
    } else if (run_impl(cc, im, &r, &o)) {
        compare(im->name, cc, "y", o.y, r.y, atol, rtol);
        compare(im->name, cc, "dx", o.dx, r.dx, atol, rtol);
        compare(im->name, cc, "dw", o.dw, r.dw, atol, rtol);
        if (r.b) compare(im->name, cc, "db", o.db, r.db, atol, rtol);
        out_free(&o);
    }
    ref_free(&r);
}

/* FP32 tolerance (see close_scaled): the longest sums have ~5000 terms; their rounding in any
 * order stays near 1e-6 of the largest value, 20x below 2e-5 * max|ref| + 1e-3 * |ref|, while
 * a wrong index or an unwritten element is off by O(max|ref|). */
#define ATOL 2e-5f
#define RTOL 1e-3f

GPU_TEST(cuda_conv_hand_written_matches_cpu)
{
    for (int i = 0; i < N_CASES; i++) check_impl(&cases[i], &hand, ATOL, RTOL);
}

GPU_TEST(cuda_conv_cudnn_matches_cpu)
{
#if CNN_WITH_CUDNN
    for (int i = 0; i < N_CASES; i++) check_impl(&cases[i], &dnn, ATOL, RTOL);
#else
    cnn_test_skip("built without cuDNN");
#endif
}

/* max |got - ref| / max(1, max|ref|), or -1 if a read fails. */
static float scaled_max_diff(const cnn_tensor *got, const cnn_tensor *ref)
{
    const int64_t n = cnn_tensor_numel(ref);
    float *a = malloc((size_t)(n ? n : 1) * sizeof *a), *b = malloc((size_t)(n ? n : 1) * sizeof *b);
    float d = -1.0f, mx = 1.0f;
    if (a && b && cnn_tensor_read(got, a, (size_t)n) == CNN_OK &&
        cnn_tensor_read(ref, b, (size_t)n) == CNN_OK) {
        d = 0.0f;
        for (int64_t i = 0; i < n; i++) {
            d = fmaxf(d, fabsf(a[i] - b[i]));
            mx = fmaxf(mx, fabsf(b[i]));
        }
        d /= mx;
    }
    free(a);
    free(b);
    return d;
}

/* TF32 hand-written GEMMs against the CPU op on TF32-rounded operands: only the FP32 sums differ
 * (in order, and a tensor core's accumulation), so 5e-5 * max|ref| + 1e-3 * |ref| holds, while
 * rounding just one operand, or none, is off by ~3e-4 * max|ref| and fails. The bias gradient
 * and depthwise convs (direct kernels) stay exact FP32. */
#define TF32_ATOL 5e-5f

static void check_hand_tf32(const conv_case *cc)
{
    conv_ref r, rr;
    conv_out o;
    memset(&rr, 0, sizeof rr);
    if (!make_ref(cc, &r) || !make_ref_tf32(cc, &r, &rr)) {
        cnn_test_fail(__FILE__, __LINE__, "%s: reference failed: %s", cc->name, cnn_last_error());
    } else if (run_impl(cc, &hand, &r, &o)) {
        const bool gemm = cc->c / cc->groups > 1;
        const conv_ref *e = gemm ? &rr : &r;
        const float atol = gemm ? TF32_ATOL : ATOL;
        compare("hand-written tf32", cc, "y", o.y, e->y, atol, RTOL);
        compare("hand-written tf32", cc, "dx", o.dx, e->dx, atol, RTOL);
        compare("hand-written tf32", cc, "dw", o.dw, e->dw, atol, RTOL);
        if (r.b) compare("hand-written tf32", cc, "db", o.db, r.db, ATOL, RTOL);
        /* And TF32 was really used: y is measurably off the exact FP32 result. */
        const float d = scaled_max_diff(o.y, r.y);
        if (gemm && !(d > 2 * ATOL))
            cnn_test_fail(__FILE__, __LINE__, "hand-written tf32 %s: y is within %g of exact FP32 "
                          "(TF32 not used?)", cc->name, d);
        out_free(&o);
    }
    ref_free(&rr);
    ref_free(&r);
}

/* With TF32 on, the hand-written GEMMs run on the tensor cores (every case), and cuDNN may:
 * its tolerance covers TF32's own error (~1e-4 of max|ref| over a sum of 3000 random-sign
 * terms): 2e-3 * max|ref| + 5e-3 * |ref|. */
GPU_TEST(cuda_conv_tf32)
{
    cnn_set_tf32(true);
    for (int i = 0; i < N_CASES; i++) check_hand_tf32(&cases[i]);
#if CNN_WITH_CUDNN
    check_impl(&cases[10], &dnn, 2e-3f, 5e-3f);
    check_impl(&cases[9], &dnn, 2e-3f, 5e-3f);
#endif
    cnn_set_tf32(false);
}

/* Only the bias gradient (dw NULL) writes db and nothing else. */
GPU_TEST(cuda_conv_bias_grad_alone)
{
    conv_ref r;
    REQUIRE(make_ref(&cases[1], &r));
    cnn_tensor *dy = gpu_copy(r.dy), *db = nan_gpu(CNN_SHAPE(cases[1].k));
    REQUIRE(dy && db);
    CHECK_OK(cnn_cuda_conv2d_backward_filter(cnn_context_current(), &r.g, f(dy), NULL, NULL,
                                             cnn_f32(db)));
    CHECK(close_scaled("hand-written db", db, r.db, ATOL, RTOL));
#if CNN_WITH_CUDNN
    CHECK_OK(cnn_tensor_fill_(db, NAN));
    CHECK_OK(cnn_cudnn_conv2d_backward_filter(cnn_context_current(), &r.g, f(dy), NULL, NULL,
                                              cnn_f32(db)));
    CHECK(close_scaled("cudnn db", db, r.db, ATOL, RTOL));
#endif
    cnn_tensor_free(&dy);
    cnn_tensor_free(&db);
    ref_free(&r);
}

/* Runs forward, backward-data and backward-filter of case cc with im and reads the three
 * results back into host arrays (each malloc'ed). */
static int run_to_host(const conv_case *cc, const conv_impl *im, const conv_ref *r, float **out)
{
    (void)cc; /* the case's geometry already shaped r's tensors */
    cnn_tensor *x = gpu_copy(r->x), *w = gpu_copy(r->w), *dy = gpu_copy(r->dy);
    cnn_tensor *y = nan_gpu(cnn_tensor_shape(r->dy)), *dx = nan_gpu(cnn_tensor_shape(r->x));
    cnn_tensor *dw = nan_gpu(cnn_tensor_shape(r->w));
    cnn_tensor *res[3] = {y, dx, dw};
    cnn_context *ctx = cnn_context_current();
    int ok = x && w && dy && y && dx && dw &&
             im->fwd(ctx, &r->g, f(x), f(w), NULL, cnn_f32(y)) == CNN_OK &&
             im->data(ctx, &r->g, f(dy), f(w), cnn_f32(dx)) == CNN_OK &&
             im->filter(ctx, &r->g, f(dy), f(x), cnn_f32(dw), NULL) == CNN_OK;
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

/* Deterministic mode: two runs give the same bits (the hand-written kernels always do). */
static void check_bitwise_repeat(const conv_impl *im)
{
    const conv_case *cc = &cases[10];
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

GPU_TEST(cuda_conv_deterministic_is_bitwise_repeatable)
{
    cnn_set_deterministic(true);
    check_bitwise_repeat(&hand);
#if CNN_WITH_CUDNN
    check_bitwise_repeat(&dnn);
#endif
    cnn_set_deterministic(false);
}

/* The second call with one key searches no more; a new shape, direction or mode does. Counted
 * as differences, since the cache of an earlier context at the same address may remain. */
GPU_TEST(cuda_conv_cudnn_algorithm_cache)
{
#if CNN_WITH_CUDNN
    cnn_context *ctx = cnn_context_current();
    conv_ref r;
    REQUIRE(make_ref(&cases[1], &r));
    cnn_tensor *x = gpu_copy(r.x), *w = gpu_copy(r.w), *y = nan_gpu(cnn_tensor_shape(r.dy));
    cnn_tensor *dy = gpu_copy(r.dy), *dx = nan_gpu(cnn_tensor_shape(r.x));
    cnn_tensor *b = gpu_copy(r.b); /* r.y includes the case's bias */
    REQUIRE(x && w && y && dy && dx && b);
    size_t e0, e1, e2, e3, e4;
    uint64_t s0, s1, s2, s3, s4;
    cnn_cudnn_conv2d_cache_stats(ctx, &e0, &s0);
    CHECK_OK(cnn_cudnn_conv2d_forward(ctx, &r.g, f(x), f(w), f(b), cnn_f32(y)));
    cnn_cudnn_conv2d_cache_stats(ctx, &e1, &s1);
    CHECK_OK(cnn_cudnn_conv2d_forward(ctx, &r.g, f(x), f(w), f(b), cnn_f32(y)));
    cnn_cudnn_conv2d_cache_stats(ctx, &e2, &s2);
    CHECK(s1 == s0 + 1 && e1 == e0 + 1);
    CHECK(s2 == s1 && e2 == e1);
    CHECK_OK(cnn_cudnn_conv2d_backward_data(ctx, &r.g, f(dy), f(w), cnn_f32(dx)));
    CHECK_OK(cnn_cudnn_conv2d_backward_data(ctx, &r.g, f(dy), f(w), cnn_f32(dx)));
    cnn_cudnn_conv2d_cache_stats(ctx, &e3, &s3);
    CHECK(s3 == s2 + 1 && e3 == e2 + 1);
    cnn_set_deterministic(true);
    CHECK_OK(cnn_cudnn_conv2d_forward(ctx, &r.g, f(x), f(w), f(b), cnn_f32(y)));
    cnn_set_deterministic(false);
    cnn_cudnn_conv2d_cache_stats(ctx, &e4, &s4);
    CHECK(s4 == s3 + 1 && e4 == e3 + 1);
    /* The hand-written kernels never search. */
    CHECK_OK(cnn_cuda_conv2d_forward(ctx, &r.g, f(x), f(w), f(b), cnn_f32(y)));
    cnn_cudnn_conv2d_cache_stats(ctx, &e0, &s0);
    CHECK(s0 == s4 && e0 == e4);
    CHECK(close_scaled("cached cudnn y", y, r.y, ATOL, RTOL));
    cnn_tensor_free(&x);
    cnn_tensor_free(&w);
    cnn_tensor_free(&y);
    cnn_tensor_free(&dy);
    cnn_tensor_free(&dx);
    cnn_tensor_free(&b);
    ref_free(&r);
#else
    cnn_test_skip("built without cuDNN");
#endif
}

/* Within 256 of 2^31 elements the kernels' int loops would step past INT_MAX (the filter and
 * bias sums over N*P*Q, the GEMM's depth and tile counts), reachable with one output channel:
 * such shapes are refused before any memory is touched (the pointers here are never read), as
 * CNN_ERR_UNSUPPORTED, which the layers answer with cuDNN where it is built. */
GPU_TEST(cuda_conv_refuses_shapes_at_the_int_limit)
{
    cnn_context *ctx = cnn_context_current();
    float *no = (float *)(uintptr_t)0x1000; /* never dereferenced: refused first */
    /* x (2, 1, 1, 2^30 - 1), 1x1 weight, one output channel: N*P*Q = 2^31 - 2 */
    const int64_t w = ((int64_t)1 << 30) - 1;
    cnn_cuda_conv g = {.n = 2, .c = 1, .h = 1, .w = w, .k = 1, .r = 1, .s = 1, .p = 1, .q = w,
                       .cg = 1, .kg = 1, .sh = 1, .sw = 1, .dh = 1, .dw = 1, .groups = 1};
    CHECK_ERR(cnn_cuda_conv2d_forward(ctx, &g, no, no, NULL, no), CNN_ERR_UNSUPPORTED);
    CHECK_ERR(cnn_cuda_conv2d_backward_filter(ctx, &g, no, no, no, no), CNN_ERR_UNSUPPORTED);
    CHECK_ERR(cnn_cuda_conv2d_backward_data(ctx, &g, no, no, no), CNN_ERR_UNSUPPORTED);
    /* a GEMM depth of 2^31 - 3: x (1, 2^31 - 3, 1, 1), w (1, 2^31 - 3, 1, 1) */
    const int64_t c = ((int64_t)1 << 31) - 3;
    cnn_cuda_conv d = {.n = 1, .c = c, .h = 1, .w = 1, .k = 1, .r = 1, .s = 1, .p = 1, .q = 1,
                       .cg = c, .kg = 1, .sh = 1, .sw = 1, .dh = 1, .dw = 1, .groups = 1};
    CHECK_ERR(cnn_cuda_conv2d_forward(ctx, &d, no, no, NULL, no), CNN_ERR_UNSUPPORTED);
    CHECK(strstr(cnn_last_error(), "under 2^31") != NULL);
}

/* ---- through the public op: dispatch, autograd, finite differences -------------------------- */
/* cnn_conv2d + cnn_backward_with_grad on device copies, under a backend preference; all four
 * results against the CPU. */
static void check_dispatch(const conv_case *cc, cnn_backend be)
{
    conv_ref r;
    REQUIRE(make_ref(cc, &r));
    cnn_tensor *x = gpu_copy(r.x), *w = gpu_copy(r.w), *b = gpu_copy(r.b), *dy = gpu_copy(r.dy);
    cnn_tensor *y = NULL;
    REQUIRE(x && w && dy && (!cc->bias || b));
    CHECK_OK(cnn_tensor_set_requires_grad(x, true));
    CHECK_OK(cnn_tensor_set_requires_grad(w, true));
    if (b) CHECK_OK(cnn_tensor_set_requires_grad(b, true));
    cnn_set_backend(be);
    cnn_conv2d_params p = params_of(cc);
    const cnn_shape shapes[4] = {cnn_tensor_shape(r.y), cnn_tensor_shape(r.x),
                                 cnn_tensor_shape(r.w), CNN_SHAPE(cc->k)};
    poison_cache(shapes, 1);
    cnn_status st = cnn_conv2d(x, w, b, &p, &y);
    poison_cache(shapes, 4);
    if (st == CNN_OK) st = cnn_backward_with_grad(y, dy);
    cnn_set_backend(CNN_BACKEND_AUTO);
    char what[160];
    if (st != CNN_OK) {
        cnn_test_fail(__FILE__, __LINE__, "%s (backend %d): %s", cc->name, (int)be,
                      cnn_last_error());
    } else {
        snprintf(what, sizeof what, "dispatch %d %s: y", (int)be, cc->name);
        if (!close_scaled(what, y, r.y, ATOL, RTOL)) cnn_test_fail(__FILE__, __LINE__, "%s", what);
        CHECK(cnn_tensor_device(y).type == CNN_DEVICE_CUDA);
        const cnn_tensor *got[3] = {cnn_tensor_grad(x), cnn_tensor_grad(w),
                                    b ? cnn_tensor_grad(b) : NULL};
        const cnn_tensor *want[3] = {r.dx, r.dw, r.db};
        for (int i = 0; i < (b ? 3 : 2); i++) {
            snprintf(what, sizeof what, "dispatch %d %s: grad %d", (int)be, cc->name, i);
            if (!got[i]) cnn_test_fail(__FILE__, __LINE__, "%s missing", what);
            else if (!close_scaled(what, got[i], want[i], ATOL, RTOL))
                cnn_test_fail(__FILE__, __LINE__, "%s", what);
        }
    }
    cnn_tensor_free(&x);
    cnn_tensor_free(&w);
    cnn_tensor_free(&b);
    cnn_tensor_free(&dy);
    cnn_tensor_free(&y);
    ref_free(&r);
}

GPU_TEST(cuda_conv_dispatch_autograd_matches_cpu)
{
    const int pick[] = {1, 3, 4, 8, 11};
    for (size_t i = 0; i < sizeof pick / sizeof *pick; i++) {
        check_dispatch(&cases[pick[i]], CNN_BACKEND_AUTO);
        check_dispatch(&cases[pick[i]], CNN_BACKEND_CUDA);
    }
}

/* Where cuDNN declines a conv (a NOT_SUPPORTED status, as a real cuDNN may for a shape, an
 * alignment or a GPU it has no engine for), the hand-written kernels compute it instead of the
 * call failing. The emulated cuDNN declines on request (CNN_EMU_CUDNN_DECLINE: Find and the
 * compute calls); on a GPU this runs as the dispatch test above. */
GPU_TEST(cuda_conv_falls_back_where_cudnn_declines)
{
    setenv("CNN_EMU_CUDNN_DECLINE", "Convolution", 1);
    const int pick[] = {1, 8};
    for (size_t i = 0; i < sizeof pick / sizeof *pick; i++)
        check_dispatch(&cases[pick[i]], CNN_BACKEND_CUDNN);
    unsetenv("CNN_EMU_CUDNN_DECLINE");
}

/* cnn_conv2d_fused (z added, ReLU as `relu` says) on device copies under a backend preference,
 * outputs poisoned: y and the four gradients (x, w, b, z) against the CPU fused op's. On
 * cuDNN the epilogue is a kernel of its own after the conv; hand-written, the GEMM's store. */
static void check_fused(const conv_case *cc, cnn_backend be, bool with_z, bool relu)
{
    conv_ref r;
    REQUIRE(make_ref(cc, &r)); /* r.x, r.w, r.b, r.dy; r.y gives the output shape */
    cnn_conv2d_params p = params_of(cc);
    cnn_tensor *z = with_z ? rand_tensor(cnn_tensor_shape(r.y), -1, 1, 1) : NULL, *yc = NULL;
    const cnn_tensor *leaf[4] = {r.x, r.w, r.b, z};
    for (int i = 0; i < 4; i++)
        if (leaf[i]) cnn_tensor_zero_grad((cnn_tensor *)leaf[i]);
    const cnn_activation act = relu ? CNN_ACT_RELU : CNN_ACT_NONE;
    CHECK_OK(cnn_conv2d_fused(r.x, r.w, r.b, z, act, &p, &yc));
    CHECK_OK(cnn_backward_with_grad(yc, r.dy));
    cnn_tensor *d[4], *y = NULL, *dy = gpu_copy(r.dy);
    for (int i = 0; i < 4; i++) {
        d[i] = gpu_copy(leaf[i]);
        if (d[i]) CHECK_OK(cnn_tensor_set_requires_grad(d[i], true));
    }
    REQUIRE(d[0] && d[1] && (!with_z || d[3]) && dy && (!cc->bias || d[2]));
    cnn_set_backend(be);
    const cnn_shape shapes[4] = {cnn_tensor_shape(r.y), cnn_tensor_shape(r.x),
                                 cnn_tensor_shape(r.w), CNN_SHAPE(cc->k)};
    poison_cache(shapes, 1);
    cnn_status st = cnn_conv2d_fused(d[0], d[1], d[2], d[3], act, &p, &y);
    poison_cache(shapes, 4);
    if (st == CNN_OK) st = cnn_backward_with_grad(y, dy);
    cnn_set_backend(CNN_BACKEND_AUTO);
    char what[160];
    if (st != CNN_OK) {
        cnn_test_fail(__FILE__, __LINE__, "fused %s (backend %d): %s", cc->name, (int)be,
                      cnn_last_error());
    } else {
        snprintf(what, sizeof what, "fused %d relu %d %s: y", (int)be, relu, cc->name);
        if (!close_scaled(what, y, yc, ATOL, RTOL)) cnn_test_fail(__FILE__, __LINE__, "%s", what);
        for (int i = 0; i < 4; i++) {
            if (!d[i]) continue;
            snprintf(what, sizeof what, "fused %d relu %d %s: grad %d", (int)be, relu, cc->name,
                     i);
            const cnn_tensor *got = cnn_tensor_grad(d[i]), *want = cnn_tensor_grad(leaf[i]);
            if (!got || !want) cnn_test_fail(__FILE__, __LINE__, "%s missing", what);
            else if (!close_scaled(what, got, want, ATOL, RTOL))
                cnn_test_fail(__FILE__, __LINE__, "%s", what);
        }
    }
    for (int i = 0; i < 4; i++) cnn_tensor_free(&d[i]);
    cnn_tensor_free(&y);
    cnn_tensor_free(&yc);
    cnn_tensor_free(&dy);
    cnn_tensor_free(&z);
    ref_free(&r);
}

GPU_TEST(cuda_conv_fused_matches_cpu)
{
    const int pick[] = {0, 1, 4, 6, 8, 10};
    for (size_t i = 0; i < sizeof pick / sizeof *pick; i++)
        for (int mode = 1; mode < 4; mode++) { /* z, relu, both */
            check_fused(&cases[pick[i]], CNN_BACKEND_AUTO, mode & 1, mode & 2);
            check_fused(&cases[pick[i]], CNN_BACKEND_CUDA, mode & 1, mode & 2);
        }
    /* z must be on the conv's device */
    cnn_tensor *xc = rand_tensor(CNN_SHAPE(1, 2, 4, 4), -1, 1, 0), *x = gpu_copy(xc);
    cnn_tensor *wc = rand_tensor(CNN_SHAPE(3, 2, 1, 1), -1, 1, 0), *w = gpu_copy(wc), *y = NULL;
    cnn_tensor *z = rand_tensor(CNN_SHAPE(1, 3, 4, 4), -1, 1, 0);
    CHECK_ERR(cnn_conv2d_fused(x, w, NULL, z, CNN_ACT_RELU, NULL, &y), CNN_ERR_DEVICE);
    CHECK(y == NULL);
    cnn_tensor *all[] = {xc, x, wc, w, z};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) cnn_tensor_free(&all[i]);
}

/* On the GPU too the fused op gives the bits of cnn_conv2d, cnn_add and cnn_relu run in turn,
 * under each backend, in FP32 and TF32 (the hand-written TF32 kernel's store, and the split-K
 * sum, apply the epilogue as the FP32 ones do). */
GPU_TEST(cuda_conv_fused_same_bits_as_separate_ops)
{
    const int pick[] = {1, 4, 10};
    const cnn_backend bes[] = {CNN_BACKEND_AUTO, CNN_BACKEND_CUDA};
    for (int tf = 0; tf < 2; tf++)
        for (int bi = 0; bi < 2; bi++)
            for (size_t i = 0; i < 2 * sizeof pick / sizeof *pick; i++) {
                const conv_case *cc = &cases[pick[i / 2]];
                const bool with_z = i % 2; /* without: the ReLU in the GEMM's store */
                conv_ref r;
                REQUIRE(make_ref(cc, &r));
                cnn_conv2d_params p = params_of(cc);
                cnn_tensor *zc = rand_tensor(cnn_tensor_shape(r.y), -1, 1, 0);
                cnn_tensor *x = gpu_copy(r.x), *w = gpu_copy(r.w), *b = gpu_copy(r.b);
                cnn_tensor *z = gpu_copy(zc), *c = NULL, *s = NULL, *ref = NULL, *y = NULL;
                REQUIRE(x && w && z && (!cc->bias || b));
                cnn_set_tf32(tf);
                cnn_set_backend(bes[bi]);
                bool was = cnn_set_grad_enabled(false);
                CHECK_OK(cnn_conv2d(x, w, b, &p, &c));
                if (with_z) {
                    CHECK_OK(cnn_add(z, c, &s));
                } else {
                    s = cnn_tensor_retain(c);
                }
                CHECK_OK(cnn_relu(s, &ref));
                const cnn_shape shapes[1] = {cnn_tensor_shape(r.y)};
                poison_cache(shapes, 1);
                CHECK_OK(cnn_conv2d_fused(x, w, b, with_z ? z : NULL, CNN_ACT_RELU, &p, &y));
                cnn_set_grad_enabled(was);
                cnn_set_backend(CNN_BACKEND_AUTO);
                cnn_set_tf32(false);
                char what[128];
                snprintf(what, sizeof what, "fused bits, z %d tf32 %d backend %d %s", with_z, tf,
                         (int)bes[bi], cc->name);
                if (!tensors_close(what, y, ref, 0, 0))
                    cnn_test_fail(__FILE__, __LINE__, "%s", what);
                cnn_tensor *all[] = {zc, x, w, b, z, c, s, ref, y};
                for (size_t k = 0; k < sizeof all / sizeof *all; k++) cnn_tensor_free(&all[k]);
                ref_free(&r);
            }
}

/* The epilogue pass alone, y = act(y + b[k] + z) over (N, K, P, Q) with each element's channel
 * k from its row: after a cuDNN forward the ops run it with a bias, which only a cuDNN build
 * reaches through them. On the host, the same float operations in the same order: the bits. */
GPU_TEST(cuda_conv_epilogue_alone_matches_host)
{
    const cnn_cuda_conv g = {.n = 3, .c = 2, .h = 7, .w = 6, .k = 5, .r = 1, .s = 1, .p = 7,
                             .q = 6, .cg = 2, .kg = 5, .sh = 1, .sw = 1, .dh = 1, .dw = 1,
                             .groups = 1};
    enum { PQ = 7 * 6, N = 3 * 5 * PQ };
    cnn_tensor *yc = rand_tensor(CNN_SHAPE(3, 5, 7, 6), -1, 1, 0);
    cnn_tensor *bc = rand_tensor(CNN_SHAPE(5), -1, 1, 0), *zc = rand_tensor(CNN_SHAPE(N), -1, 1, 0);
    cnn_tensor *b = gpu_copy(bc), *z = gpu_copy(zc);
    REQUIRE(yc && b && z);
    float y0[N], bh[5], zh[N], want[N], got[N];
    REQUIRE(cnn_tensor_read(yc, y0, N) == CNN_OK && cnn_tensor_read(bc, bh, 5) == CNN_OK &&
            cnn_tensor_read(zc, zh, N) == CNN_OK);
    for (int mode = 0; mode < 4; mode++) { /* bias, bias + z, bias + ReLU, all three */
        const bool with_z = mode & 1, relu = mode & 2;
        cnn_tensor *y = gpu_copy(yc);
        REQUIRE(y);
        const cnn_cuda_epilogue e = {cnn_f32(b), with_z ? cnn_f32(z) : NULL, relu};
        CHECK_OK(cnn_cuda_conv2d_epilogue(cnn_context_current(), &g, &e, cnn_f32(y)));
        CHECK_OK(cnn_tensor_read(y, got, N));
        int bad = 0;
        for (int i = 0; i < N; i++) {
            float v = y0[i] + bh[(i / PQ) % 5];
            if (with_z) v += zh[i];
            want[i] = relu && v <= 0.0f ? 0.0f : v;
            bad += memcmp(&want[i], &got[i], sizeof(float)) != 0;
        }
        if (bad)
            cnn_test_fail(__FILE__, __LINE__, "epilogue z %d relu %d: %d of %d differ", with_z,
                          relu, bad, N);
        cnn_tensor_free(&y);
    }
    cnn_tensor *all[] = {yc, bc, zc, b, z};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) cnn_tensor_free(&all[i]);
}

/* The GPU fold does the CPU's double-precision operations: the same bits. */
GPU_TEST(cuda_batch_norm_fold_matches_cpu_bits)
{
    const int k = 70;
    cnn_tensor *c[6] = {rand_tensor(CNN_SHAPE(k, 33, 3, 3), -1, 1, 0),
                        rand_tensor(CNN_SHAPE(k), -1, 1, 0), rand_tensor(CNN_SHAPE(k), -2, 2, 0),
                        rand_tensor(CNN_SHAPE(k), 0.1f, 3, 0), rand_tensor(CNN_SHAPE(k), -2, 2, 0),
                        rand_tensor(CNN_SHAPE(k), -1, 1, 0)};
    cnn_tensor *g[6], *wf = NULL, *bf = NULL, *wg = NULL, *bg = NULL;
    for (int i = 0; i < 6; i++) g[i] = gpu_copy(c[i]);
    REQUIRE(g[0] && g[1] && g[2] && g[3] && g[4] && g[5]);
    for (int nb = 0; nb < 2; nb++) { /* with and without the conv bias and the BN affine */
        cnn_tensor *b = nb ? NULL : c[1], *gm = nb ? NULL : c[4], *bt = nb ? NULL : c[5];
        cnn_tensor *bd = nb ? NULL : g[1], *gmd = nb ? NULL : g[4], *btd = nb ? NULL : g[5];
        CHECK_OK(cnn_batch_norm_fold(c[0], b, c[2], c[3], gm, bt, 1e-5f, &wf, &bf));
        const cnn_shape shapes[2] = {cnn_tensor_shape(c[0]), CNN_SHAPE(k)};
        poison_cache(shapes, 2);
        CHECK_OK(cnn_batch_norm_fold(g[0], bd, g[2], g[3], gmd, btd, 1e-5f, &wg, &bg));
        CHECK(cnn_tensor_device(wg).type == CNN_DEVICE_CUDA);
        CHECK(tensors_close("gpu fold w", wg, wf, 0, 0));
        CHECK(tensors_close("gpu fold b", bg, bf, 0, 0));
        cnn_tensor_free(&wf);
        cnn_tensor_free(&bf);
        cnn_tensor_free(&wg);
        cnn_tensor_free(&bg);
    }
    for (int i = 0; i < 6; i++) {
        cnn_tensor_free(&c[i]);
        cnn_tensor_free(&g[i]);
    }
}

static cnn_status f_conv(cnn_tensor *const *in, void *ud, cnn_tensor **y)
{
    return cnn_conv2d(in[0], in[1], in[2], (const cnn_conv2d_params *)ud, y);
}

/* Finite differences of the GPU op itself (inputs on the device), under both backends. */
GPU_TEST(cuda_conv_gradcheck)
{
    const cnn_backend bes[] = {CNN_BACKEND_AUTO, CNN_BACKEND_CUDA};
    cnn_conv2d_params p = {{2, 1}, {1, 1}, {1, 1}, 2};
    for (int i = 0; i < 2; i++) {
        cnn_tensor *xc = rand_tensor(CNN_SHAPE(2, 4, 5, 6), -1, 1, 0);
        cnn_tensor *wc = rand_tensor(CNN_SHAPE(6, 2, 3, 3), -1, 1, 0);
        cnn_tensor *bc = rand_tensor(CNN_SHAPE(6), -1, 1, 0);
        cnn_tensor *in[3] = {gpu_copy(xc), gpu_copy(wc), gpu_copy(bc)};
        cnn_tensor_free(&xc);
        cnn_tensor_free(&wc);
        cnn_tensor_free(&bc);
        REQUIRE(in[0] && in[1] && in[2]);
        for (int j = 0; j < 3; j++) CHECK_OK(cnn_tensor_set_requires_grad(in[j], true));
        cnn_set_backend(bes[i]);
        gc_opts o = {.eps = 1e-2f, .atol = 2e-3f, .rtol = 1e-2f};
        if (!gradcheck(i ? "gpu conv2d (hand-written)" : "gpu conv2d (auto)", f_conv, in, 3, &p,
                       &o))
            cnn_test_fail(__FILE__, __LINE__, "gradcheck of the GPU conv2d, backend %d",
                          (int)bes[i]);
        cnn_set_backend(CNN_BACKEND_AUTO);
        for (int j = 0; j < 3; j++) cnn_tensor_free(&in[j]);
    }
}

/* Without a GPU this runs: the launchers refuse a CPU context before touching CUDA. */
TEST(cuda_conv_launchers_refuse_cpu_context)
{
    cnn_context *cpu = cnn_context_current();
    if (cnn_current_device().type != CNN_DEVICE_CPU) {
        cnn_test_skip("current context is on a GPU");
        return;
    }
    cnn_cuda_conv g = {.n = 1, .c = 1, .h = 3, .w = 3, .k = 1, .r = 1, .s = 1, .p = 3, .q = 3,
                       .cg = 1, .kg = 1, .sh = 1, .sw = 1, .dh = 1, .dw = 1, .groups = 1};
    float buf[9] = {0};
    CHECK_ERR(cnn_cuda_conv2d_forward(cpu, &g, buf, buf, NULL, buf), CNN_ERR_DEVICE);
    CHECK(strstr(cnn_last_error(), "conv2d") != NULL);
    CHECK_ERR(cnn_cuda_conv2d_backward_data(cpu, &g, buf, buf, buf), CNN_ERR_DEVICE);
    CHECK_ERR(cnn_cuda_conv2d_backward_filter(cpu, &g, buf, buf, buf, buf), CNN_ERR_DEVICE);
#if CNN_WITH_CUDNN
    CHECK_ERR(cnn_cudnn_conv2d_forward(cpu, &g, buf, buf, NULL, buf), CNN_ERR_DEVICE);
    size_t e = 1;
    uint64_t s = 1;
    cnn_cudnn_conv2d_cache_stats(cpu, &e, &s);
    CHECK(e == 0 && s == 0);
#endif
}

#endif /* CNN_WITH_CUDA */
