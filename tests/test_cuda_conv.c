/* test_cuda_conv.c — the conv2d launchers on the GPU, hand-written kernels and cuDNN, against
 * the CPU reference (cnn_conv2d) on fresh random inputs of awkward shapes (conv_cases.c):
 * forward, backward-data, backward-filter and the bias gradient, FP32 and TF32; the cuDNN
 * algorithm cache; deterministic mode. GPU outputs are poisoned with NaN first. The public ops on
 * device tensors are tested in test_cuda_conv_ops.c. */
#include "conv_cases.h"

#include <limits.h>
#include <stdint.h>

#if CNN_WITH_CUDA

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

GPU_TEST(cuda_conv_hand_written_matches_cpu)
{
    for (int i = 0; i < n_conv_cases; i++) check_impl(&conv_cases[i], &hand, CONV_ATOL, CONV_RTOL);
}

GPU_TEST(cuda_conv_cudnn_matches_cpu)
{
#if CNN_WITH_CUDNN
    for (int i = 0; i < n_conv_cases; i++) check_impl(&conv_cases[i], &dnn, CONV_ATOL, CONV_RTOL);
#else
    cnn_test_skip("built without cuDNN");
#endif
}

/* max |got - ref| / max(1, max|ref|), or -1 if a read fails. */
static float scaled_max_diff(const cnn_tensor *got, const cnn_tensor *ref)
{
    const int64_t n = cnn_tensor_numel(ref);
    const size_t bytes = (size_t)(n ? n : 1) * sizeof(float);
    float *a = malloc(bytes), *b = malloc(bytes);
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
 * rounding just one operand, or none, is off by ~3e-4 * max|ref| and fails. The bias gradient,
 * depthwise convs and backward data with Cg <= 4 (direct kernels) stay exact FP32. */
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
        const float atol = gemm ? TF32_ATOL : CONV_ATOL;
        compare("hand-written tf32", cc, "y", o.y, e->y, atol, CONV_RTOL);
        /* backward data with Cg <= 4 is a direct gather, exact FP32 */
        const bool dx_gemm = cc->c / cc->groups > 4;
        compare("hand-written tf32", cc, "dx", o.dx, dx_gemm ? rr.dx : r.dx,
                dx_gemm ? TF32_ATOL : CONV_ATOL, CONV_RTOL);
        compare("hand-written tf32", cc, "dw", o.dw, e->dw, atol, CONV_RTOL);
        if (r.b) compare("hand-written tf32", cc, "db", o.db, r.db, CONV_ATOL, CONV_RTOL);
        /* And TF32 was really used: y is measurably off the exact FP32 result. */
        const float d = scaled_max_diff(o.y, r.y);
        if (gemm && !(d > 2 * CONV_ATOL))
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
    for (int i = 0; i < n_conv_cases; i++) check_hand_tf32(&conv_cases[i]);
#if CNN_WITH_CUDNN
    check_impl(&conv_cases[10], &dnn, 2e-3f, 5e-3f);
    check_impl(&conv_cases[9], &dnn, 2e-3f, 5e-3f);
#endif
    cnn_set_tf32(false);
}

/* Only the bias gradient (dw NULL) writes db and nothing else. */
GPU_TEST(cuda_conv_bias_grad_alone)
{
    conv_ref r;
    REQUIRE(make_ref(&conv_cases[1], &r));
    cnn_tensor *dy = to_gpu(r.dy), *db = nan_gpu(CNN_SHAPE(conv_cases[1].k));
    REQUIRE(dy && db);
    CHECK_OK(cnn_cuda_conv2d_backward_filter(cnn_context_current(), &r.g, f(dy), NULL, NULL,
                                             cnn_f32(db)));
    CHECK(close_scaled("hand-written db", db, r.db, CONV_ATOL, CONV_RTOL));
#if CNN_WITH_CUDNN
    CHECK_OK(cnn_tensor_fill_(db, NAN));
    CHECK_OK(cnn_cudnn_conv2d_backward_filter(cnn_context_current(), &r.g, f(dy), NULL, NULL,
                                              cnn_f32(db)));
    CHECK(close_scaled("cudnn db", db, r.db, CONV_ATOL, CONV_RTOL));
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
    cnn_tensor *x = to_gpu(r->x), *w = to_gpu(r->w), *dy = to_gpu(r->dy);
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

/* Deterministic mode: two runs of case cc give the same bits (the hand-written kernels always
 * do). */
static void check_bitwise_repeat(const conv_impl *im, const conv_case *cc)
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

GPU_TEST(cuda_conv_deterministic_is_bitwise_repeatable)
{
    cnn_set_deterministic(true);
    check_bitwise_repeat(&hand, &conv_cases[10]);
#if CNN_WITH_CUDNN
    check_bitwise_repeat(&dnn, &conv_cases[10]);
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
    REQUIRE(make_ref(&conv_cases[1], &r));
    cnn_tensor *x = to_gpu(r.x), *w = to_gpu(r.w), *y = nan_gpu(cnn_tensor_shape(r.dy));
    cnn_tensor *dy = to_gpu(r.dy), *dx = nan_gpu(cnn_tensor_shape(r.x));
    cnn_tensor *b = to_gpu(r.b); /* r.y includes the case's bias */
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
    CHECK(close_scaled("cached cudnn y", y, r.y, CONV_ATOL, CONV_RTOL));
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

/* A 1x1 convolution may run as cuBLAS GEMMs (cuda/conv2d_gemm.c) where the search times them
 * faster than cuDNN's algorithms. Forced here (CNN_CONV1X1=gemm) on 1x1 shapes, in a fresh
 * context each (the choice is cached per context): once with the default workspace cap, once
 * with none, where the backward-filter sums its samples one GEMV at a time. */
GPU_TEST(cuda_conv_1x1_as_gemm_matches_cpu)
{
#if CNN_WITH_CUDNN
    static const conv_case cases[] = {
        {"1x1 as GEMM", 3, 64, 7, 7, 96, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1},
        {"1x1 as GEMM, odd", 5, 3, 5, 9, 7, 1, 1, 1, 1, 0, 0, 1, 1, 1, 0},
        {"1x1 as GEMM, 130 -> 260", 2, 130, 3, 3, 260, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1},
    };
    cnn_context *outer = cnn_context_current();
    setenv("CNN_CONV1X1", "gemm", 1);
    for (int round = 0; round < 2; round++) {
        if (round) setenv("CNN_CUDNN_WORKSPACE_MB", "0", 1);
        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
            const conv_case *cc = &cases[i];
            cnn_context *ctx = NULL;
            REQUIRE(cnn_context_create(CNN_CUDA(0), &ctx) == CNN_OK);
            cnn_context_set_current(ctx);
            /* Twice: the first call's search writes the outputs with every candidate, so only
             * the second (the cached choice alone, on fresh NaN outputs) shows what it wrote. */
            check_impl(cc, &dnn, CONV_ATOL, CONV_RTOL);
            check_impl(cc, &dnn, CONV_ATOL, CONV_RTOL);
            cnn_tensor *x = NULL, *w = NULL;
            cnn_conv2d_params p = params_of(cc);
            CHECK_OK(cnn_tensor_empty(CNN_SHAPE(cc->n, cc->c, cc->h, cc->w), CNN_F32, CNN_CUDA(0),
                                      &x));
            CHECK_OK(cnn_tensor_empty(CNN_SHAPE(cc->k, cc->c, 1, 1), CNN_F32, CNN_CUDA(0), &w));
            for (int pass = 0; pass < 3; pass++) {
                const char *algo = cnn_conv2d_cudnn_algo(x, w, &p, pass);
                if (!algo || strcmp(algo, "CUBLAS_GEMM"))
                    cnn_test_fail(__FILE__, __LINE__, "%s pass %d ran %s", cc->name, pass,
                                  algo ? algo : "(nothing cached)");
            }
            cnn_tensor_free(&x);
            cnn_tensor_free(&w);
            cnn_context_set_current(outer);
            cnn_context_destroy(&ctx);
        }
    }
    unsetenv("CNN_CONV1X1");
    unsetenv("CNN_CUDNN_WORKSPACE_MB");
#else
    cnn_test_skip("built without cuDNN");
#endif
}

/* The search's environment (CNN_CONV1X1, CNN_CUDNN_ENGINES, CNN_CUDNN_WORKSPACE_MB) is part of
 * what a cached choice is kept for: changed within one context, the next call searches again
 * rather than reuse a choice the new setting forbids. */
GPU_TEST(cuda_conv_cached_choice_follows_the_environment)
{
#if CNN_WITH_CUDNN
    const conv_case cc = {"1x1", 2, 16, 5, 5, 24, 1, 1, 1, 1, 0, 0, 1, 1, 1, 0};
    cnn_tensor *x = NULL, *w = NULL;
    cnn_conv2d_params p = params_of(&cc);
    CHECK_OK(cnn_tensor_empty(CNN_SHAPE(cc.n, cc.c, cc.h, cc.w), CNN_F32, CNN_CUDA(0), &x));
    CHECK_OK(cnn_tensor_empty(CNN_SHAPE(cc.k, cc.c, 1, 1), CNN_F32, CNN_CUDA(0), &w));
    const char *const prefs[] = {"gemm", "cudnn", "gemm"};
    for (int i = 0; i < 3; i++) {
        setenv("CNN_CONV1X1", prefs[i], 1);
        check_impl(&cc, &dnn, CONV_ATOL, CONV_RTOL);
        const char *algo = cnn_conv2d_cudnn_algo(x, w, &p, 0);
        const bool gemm = algo && !strcmp(algo, "CUBLAS_GEMM");
        if (!algo || gemm != (i != 1))
            cnn_test_fail(__FILE__, __LINE__, "CNN_CONV1X1=%s: forward ran %s", prefs[i],
                          algo ? algo : "(nothing cached)");
    }
    unsetenv("CNN_CONV1X1");
    cnn_tensor_free(&x);
    cnn_tensor_free(&w);
#else
    cnn_test_skip("built without cuDNN");
#endif
}

/* cuDNN's graph-API engines (cuda/conv2d_engine_cudnn.c), chosen by CNN_CUDNN_ENGINES in a
 * fresh context per mode (choices are cached per context): "first" (the heuristics' first
 * acceptable engine, untimed) on every case, "only" (the fastest engine, timed) and "1" (the
 * fastest of engines and legacy algorithms) on two. Each case runs twice: the first call's
 * search may write the outputs, the second shows the cached choice's. */
#if CNN_WITH_CUDNN
/* The emulated cuDNN lists an engine noted RUNTIME_COMPILATION, global index 99, early in every
 * heuristic: the search must never take it. */
static void check_engine_chosen(const conv_case *cc)
{
    const bool emu = emulated_gpu();
    cnn_tensor *x = NULL, *w = NULL;
    cnn_conv2d_params p = params_of(cc);
    CHECK_OK(cnn_tensor_empty(CNN_SHAPE(cc->n, cc->c, cc->h, cc->w), CNN_F32, CNN_CUDA(0), &x));
    CHECK_OK(cnn_tensor_empty(CNN_SHAPE(cc->k, cc->c / cc->groups, cc->r, cc->s), CNN_F32,
                              CNN_CUDA(0), &w));
    for (int pass = 0; pass < 3; pass++) {
        const char *algo = cnn_conv2d_cudnn_algo(x, w, &p, pass);
        if (!algo || strncmp(algo, "ENGINE_", 7))
            cnn_test_fail(__FILE__, __LINE__, "%s pass %d ran %s", cc->name, pass,
                          algo ? algo : "(nothing cached)");
        else if (emu && !strcmp(algo, "ENGINE_99"))
            cnn_test_fail(__FILE__, __LINE__, "%s pass %d took the run-time-compiled engine",
                          cc->name, pass);
    }
    cnn_tensor_free(&x);
    cnn_tensor_free(&w);
}
#endif

GPU_TEST(cuda_conv_cudnn_graph_engines_match_cpu)
{
#if CNN_WITH_CUDNN
    static const char *const modes[] = {"first", "only", "1"};
    cnn_context *outer = cnn_context_current();
    for (int m = 0; m < 3; m++) {
        setenv("CNN_CUDNN_ENGINES", modes[m], 1);
        cnn_context *ctx = NULL;
        REQUIRE(cnn_context_create(CNN_CUDA(0), &ctx) == CNN_OK);
        cnn_context_set_current(ctx);
        for (int i = 0; i < (m == 0 ? n_conv_cases : 2); i++) {
            check_impl(&conv_cases[i], &dnn, CONV_ATOL, CONV_RTOL);
            check_impl(&conv_cases[i], &dnn, CONV_ATOL, CONV_RTOL);
            if (m < 2) check_engine_chosen(&conv_cases[i]);
        }
        cnn_context_set_current(outer);
        cnn_context_destroy(&ctx);
    }
    /* Where cuDNN declines the legacy search (the emulated one does on request), mode 1 still
     * asks the engines: the call runs on one of them, not on the hand-written kernels. */
    if (emulated_gpu()) {
        setenv("CNN_CUDNN_ENGINES", "1", 1);
        setenv("CNN_EMU_CUDNN_DECLINE", "FindConvolution", 1);
        cnn_context *ctx = NULL;
        REQUIRE(cnn_context_create(CNN_CUDA(0), &ctx) == CNN_OK);
        cnn_context_set_current(ctx);
        check_impl(&conv_cases[0], &dnn, CONV_ATOL, CONV_RTOL);
        check_engine_chosen(&conv_cases[0]);
        cnn_context_set_current(outer);
        cnn_context_destroy(&ctx);
        unsetenv("CNN_EMU_CUDNN_DECLINE");
    }
    unsetenv("CNN_CUDNN_ENGINES");
#else
    cnn_test_skip("built without cuDNN");
#endif
}

#if CNN_WITH_CUDNN
typedef struct engine_job {
    cnn_context *ctx;
    const cnn_cuda_conv *g;
    cnn_tensor *x, *w, *y;
} engine_job;

static cnn_status engine_forward(void *ud)
{
    engine_job *j = ud;
    return cnn_cudnn_conv2d_forward(j->ctx, j->g, f(j->x), f(j->w), NULL, cnn_f32(j->y));
}
#endif

/* What the engine search must pass over. TF32 when it is off: y = (1 + 2^-12) * 1 + 1 * (-1)
 * is 2^-12 with FP32 products and sum (exact here in any order), 0 with TF32 operands. Inputs
 * converted down to BF16 even with TF32 on.
 * Non-deterministic engines in deterministic mode: two runs give the same bits. And a cached
 * plan runs inside a CUDA graph capture: the replay reads the new input.
 * On the emulator, first a search with the GPU full (CNN_EMU_FAIL_MALLOC, and no cached block
 * for a plan's workspace): CNN_ERR_OUT_OF_MEMORY, and not a refusal kept for the case (which
 * would send the next call, with memory, to the hand-written kernels). */
GPU_TEST(cuda_conv_cudnn_graph_engines_filter)
{
#if CNN_WITH_CUDNN
    cnn_context *outer = cnn_context_current(), *ctx = NULL;
    setenv("CNN_CUDNN_ENGINES", "first", 1);
    REQUIRE(cnn_context_create(CNN_CUDA(0), &ctx) == CNN_OK);
    cnn_context_set_current(ctx);
    /* The context's cuDNN handle first (a conv of another shape), so that the full GPU below
     * fails the search, not the handle's creation. */
    cnn_tensor *a = NULL, *b = NULL, *c = NULL;
    CHECK_OK(cnn_tensor_full(CNN_SHAPE(1, 1, 2, 2), 1.0f, CNN_CUDA(0), &a));
    CHECK_OK(cnn_tensor_full(CNN_SHAPE(1, 1, 1, 1), 1.0f, CNN_CUDA(0), &b));
    CHECK_OK(cnn_conv2d(a, b, NULL, NULL, &c));
    free_tensors(&a, &b, &c);
    CHECK_OK(cnn_cuda_empty_cache());
    const float eps = 1.0f / 4096, xv[2] = {1.0f + eps, 1.0f}, wv[2] = {1.0f, -1.0f};
    cnn_cuda_conv g = {.n = 1, .c = 2, .h = 1, .w = 1, .k = 1, .r = 1, .s = 1, .p = 1, .q = 1,
                       .cg = 2, .kg = 1, .sh = 1, .sw = 1, .dh = 1, .dw = 1, .groups = 1};
    cnn_tensor *x = NULL, *w = NULL, *y = NULL;
    float yv = NAN;
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(1, 2, 1, 1), xv, CNN_CUDA(0), &x));
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(1, 2, 1, 1), wv, CNN_CUDA(0), &w));
    y = nan_gpu(CNN_SHAPE(1, 1, 1, 1));
    REQUIRE(x && w && y);
    if (emulated_gpu()) {
        setenv("CNN_EMU_FAIL_MALLOC", "all", 1);
        cnn_status st = cnn_cudnn_conv2d_forward(ctx, &g, f(x), f(w), NULL, cnn_f32(y));
        unsetenv("CNN_EMU_FAIL_MALLOC");
        if (st != CNN_ERR_OUT_OF_MEMORY || !strstr(cnn_last_error(), "engine search ran out"))
            cnn_test_fail(__FILE__, __LINE__, "full GPU: status %d: %s", st, cnn_last_error());
    }
    CHECK_OK(cnn_cudnn_conv2d_forward(ctx, &g, f(x), f(w), NULL, cnn_f32(y)));
    CHECK_OK(cnn_tensor_read(y, &yv, 1));
    if (yv != eps) cnn_test_fail(__FILE__, __LINE__, "y = %g, exact FP32 gives %g", yv, eps);
    engine_job job = {ctx, &g, x, w, y};
    cnn_graph *graph = NULL;
    const float x2[2] = {1.0f + 2 * eps, 1.0f};
    CHECK_OK(cnn_graph_capture(engine_forward, &job, &graph));
    CHECK_OK(cnn_tensor_write(x, x2, 2));
    CHECK_OK(cnn_graph_replay(graph));
    CHECK_OK(cnn_tensor_read(y, &yv, 1));
    if (yv != 2 * eps) cnn_test_fail(__FILE__, __LINE__, "replayed y = %g, not %g", yv, 2 * eps);
    cnn_graph_destroy(&graph);
    /* With TF32 on, still no engine that converts its inputs down: 1 + 2^-9 is exact in TF32
     * (10 mantissa bits) but not in BF16 (7), where y would be 0. */
    const float x3[2] = {1.0f + 1.0f / 512, 1.0f};
    cnn_set_tf32(true);
    CHECK_OK(cnn_tensor_write(x, x3, 2));
    CHECK_OK(cnn_cudnn_conv2d_forward(ctx, &g, f(x), f(w), NULL, cnn_f32(y)));
    CHECK_OK(cnn_tensor_read(y, &yv, 1));
    if (yv != 1.0f / 512) cnn_test_fail(__FILE__, __LINE__, "TF32 y = %g, not 2^-9", yv);
    cnn_set_tf32(false);
    cnn_set_deterministic(true);
    check_bitwise_repeat(&dnn, &conv_cases[1]);
    cnn_set_deterministic(false);
    free_tensors(&x, &w, &y);
    cnn_context_set_current(outer);
    cnn_context_destroy(&ctx);
    unsetenv("CNN_CUDNN_ENGINES");
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
    /* Padding and stride near INT_MAX over a 4x4 input (a 3x3 output, valid on the CPU): the
     * kernels' int index arithmetic wrapped (out-of-bounds reads in backward data). */
    cnn_cuda_conv e = {.n = 1, .c = 3, .h = 4, .w = 4, .k = 2, .r = 1, .s = 1, .p = 3, .q = 3,
                       .cg = 3, .kg = 2, .sh = INT_MAX, .sw = INT_MAX, .ph = INT_MAX,
                       .pw = INT_MAX, .dh = 1, .dw = 1, .groups = 1};
    CHECK_ERR(cnn_cuda_conv2d_backward_data(ctx, &e, no, no, no), CNN_ERR_UNSUPPORTED);
    CHECK(strstr(cnn_last_error(), "32 bits") != NULL);
    CHECK_ERR(cnn_cuda_conv2d_forward(ctx, &e, no, no, NULL, no), CNN_ERR_UNSUPPORTED);
    CHECK_ERR(cnn_cuda_conv2d_backward_filter(ctx, &e, no, no, no, no), CNN_ERR_UNSUPPORTED);
}

/* A stride far above the input: backward data ran one (empty) GEMM phase per stride phase,
 * 2^40 of them here, where only the 4x4 phases that hold pixels need one. */
GPU_TEST(cuda_conv_huge_stride_matches_cpu)
{
    const conv_case cc = {"1x1 stride 2^20, 5 channels", 1, 5, 4, 4, 2, 1, 1, 1 << 20, 1 << 20,
                          0, 0, 1, 1, 1, 1};
    check_impl(&cc, &hand, CONV_ATOL, CONV_RTOL);
#if CNN_WITH_CUDNN
    check_impl(&cc, &dnn, CONV_ATOL, CONV_RTOL);
#endif
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
