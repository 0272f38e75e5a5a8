/* test_cuda_conv_search.c — cuDNN's algorithm search behind the conv2d launchers: the choice
 * cached per shape, direction and mode; 1x1 convs as cuBLAS GEMMs; the environment's settings;
 * the graph API's engines and what they must pass over (TF32 off, down-converted inputs,
 * non-deterministic engines) and the pointers' alignment they are promised, against the CPU
 * reference (conv_cases.c). */
#include "conv_cases.h"

#include <stdint.h>

#if CNN_WITH_CUDA

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
    CHECK_OK(cnn_cudnn_conv2d_forward(ctx, &r.g, dev_f32(x), dev_f32(w), dev_f32(b), cnn_f32(y)));
    cnn_cudnn_conv2d_cache_stats(ctx, &e1, &s1);
    CHECK_OK(cnn_cudnn_conv2d_forward(ctx, &r.g, dev_f32(x), dev_f32(w), dev_f32(b), cnn_f32(y)));
    cnn_cudnn_conv2d_cache_stats(ctx, &e2, &s2);
    CHECK(s1 == s0 + 1 && e1 == e0 + 1);
    CHECK(s2 == s1 && e2 == e1);
    CHECK_OK(cnn_cudnn_conv2d_backward_data(ctx, &r.g, dev_f32(dy), dev_f32(w), cnn_f32(dx)));
    CHECK_OK(cnn_cudnn_conv2d_backward_data(ctx, &r.g, dev_f32(dy), dev_f32(w), cnn_f32(dx)));
    cnn_cudnn_conv2d_cache_stats(ctx, &e3, &s3);
    CHECK(s3 == s2 + 1 && e3 == e2 + 1);
    cnn_set_deterministic(true);
    CHECK_OK(cnn_cudnn_conv2d_forward(ctx, &r.g, dev_f32(x), dev_f32(w), dev_f32(b), cnn_f32(y)));
    cnn_set_deterministic(false);
    cnn_cudnn_conv2d_cache_stats(ctx, &e4, &s4);
    CHECK(s4 == s3 + 1 && e4 == e3 + 1);
    /* The hand-written kernels never search. */
    CHECK_OK(cnn_cuda_conv2d_forward(ctx, &r.g, dev_f32(x), dev_f32(w), dev_f32(b), cnn_f32(y)));
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
            check_impl(cc, &conv_dnn, CONV_ATOL, CONV_RTOL);
            check_impl(cc, &conv_dnn, CONV_ATOL, CONV_RTOL);
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
        check_impl(&cc, &conv_dnn, CONV_ATOL, CONV_RTOL);
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
            check_impl(&conv_cases[i], &conv_dnn, CONV_ATOL, CONV_RTOL);
            check_impl(&conv_cases[i], &conv_dnn, CONV_ATOL, CONV_RTOL);
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
        check_impl(&conv_cases[0], &conv_dnn, CONV_ATOL, CONV_RTOL);
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
/* A device buffer of one float and then s's elements (t's, or NaN where t is NULL); *at points
 * past the first float: 4-byte aligned, never 16 (allocations are). NULL on failure. */
static cnn_tensor *offset_gpu(const cnn_tensor *t, cnn_shape s, float **at)
{
    int64_t n = 1;
    for (int i = 0; i < s.ndim; i++) n *= s.d[i];
    float *h = malloc((size_t)(n + 1) * sizeof *h);
    cnn_tensor *buf = NULL;
    if (h) {
        h[0] = 0.0f;
        if (!t) {
            for (int64_t i = 0; i < n; i++) h[i + 1] = NAN;
        } else if (cnn_tensor_read(t, h + 1, (size_t)n) != CNN_OK) {
            free(h);
            return NULL;
        }
        if (cnn_tensor_from_data(CNN_SHAPE(n + 1), h, CNN_CUDA(0), &buf) != CNN_OK) buf = NULL;
    }
    free(h);
    *at = buf ? cnn_f32(buf) + 1 : NULL;
    return buf;
}

/* What offset_gpu's buffer holds after its first element, as a CPU tensor of shape s (NULL on
 * failure). */
static cnn_tensor *offset_read(const cnn_tensor *buf, cnn_shape s)
{
    const int64_t n = cnn_tensor_numel(buf);
    float *h = malloc((size_t)n * sizeof *h);
    cnn_tensor *t = NULL;
    if (h && cnn_tensor_read(buf, h, (size_t)n) == CNN_OK &&
        cnn_tensor_from_data(s, h + 1, CNN_CPU, &t) != CNN_OK)
        t = NULL;
    free(h);
    return t;
}
#endif

/* Buffers 4 bytes past a 16-byte boundary (a view's data may start anywhere) through the graph
 * API's engines alone (CNN_CUDNN_ENGINES=only: a call that no engine runs fails): each tensor
 * promises cuDNN the alignment its pointer has. Promised 16, cuDNN refuses every plan
 * (BAD_PARAM_MISALIGNED_POINTER; the emulated cuDNN checks it as the real one does). The same
 * case on aligned buffers runs first in the context: the plans cached for it, promised 16,
 * must not serve the offset buffers (the alignment is part of the cached choice's key). */
GPU_TEST(cuda_conv_cudnn_engines_take_unaligned_buffers)
{
#if CNN_WITH_CUDNN
    const conv_case *cc = &conv_cases[1];
    cnn_context *outer = cnn_context_current(), *ctx = NULL;
    setenv("CNN_CUDNN_ENGINES", "only", 1);
    REQUIRE(cnn_context_create(CNN_CUDA(0), &ctx) == CNN_OK);
    cnn_context_set_current(ctx);
    conv_ref r;
    REQUIRE(make_ref(cc, &r));
    float *x, *w, *dy, *y, *dx, *dw;
    const cnn_shape xs = cnn_tensor_shape(r.x), ws = cnn_tensor_shape(r.w);
    const cnn_shape ys = cnn_tensor_shape(r.dy);
    cnn_tensor *bufs[6] = {offset_gpu(r.x, xs, &x), offset_gpu(r.w, ws, &w),
                           offset_gpu(r.dy, ys, &dy), offset_gpu(NULL, ys, &y),
                           offset_gpu(NULL, xs, &dx), offset_gpu(NULL, ws, &dw)};
    for (int i = 0; i < 6; i++) REQUIRE(bufs[i]);
    cnn_tensor *al[6] = {to_gpu(r.x), to_gpu(r.w), to_gpu(r.dy), nan_gpu(ys), nan_gpu(xs),
                         nan_gpu(ws)};
    for (int i = 0; i < 6; i++) REQUIRE(al[i]);
    CHECK_OK(cnn_cudnn_conv2d_forward(ctx, &r.g, cnn_f32(al[0]), cnn_f32(al[1]), NULL,
                                      cnn_f32(al[3])));
    CHECK_OK(cnn_cudnn_conv2d_backward_data(ctx, &r.g, cnn_f32(al[2]), cnn_f32(al[1]),
                                            cnn_f32(al[4])));
    CHECK_OK(cnn_cudnn_conv2d_backward_filter(ctx, &r.g, cnn_f32(al[2]), cnn_f32(al[0]),
                                              cnn_f32(al[5]), NULL));
    for (int i = 0; i < 6; i++) cnn_tensor_free(&al[i]);
    CHECK_OK(cnn_cudnn_conv2d_forward(ctx, &r.g, x, w, NULL, y));
    CHECK_OK(cnn_cudnn_conv2d_backward_data(ctx, &r.g, dy, w, dx));
    CHECK_OK(cnn_cudnn_conv2d_backward_filter(ctx, &r.g, dy, x, dw, NULL));
    /* r.y includes the case's bias: the reference here is without it. */
    cnn_tensor *y_ref = NULL;
    const cnn_conv2d_params p = params_of(cc);
    CHECK_OK(cnn_conv2d(r.x, r.w, NULL, &p, &y_ref));
    const cnn_tensor *refs[3] = {y_ref, r.dx, r.dw};
    static const char *const names[3] = {"y", "dx", "dw"};
    for (int i = 0; i < 3; i++) {
        const cnn_shape s[3] = {ys, xs, ws};
        cnn_tensor *got = offset_read(bufs[3 + i], s[i]);
        char what[64];
        snprintf(what, sizeof what, "unaligned %s", names[i]);
        CHECK(got && refs[i] && close_scaled(what, got, refs[i], CONV_ATOL, CONV_RTOL));
        cnn_tensor_free(&got);
    }
    cnn_tensor_free(&y_ref);
    for (int i = 0; i < 6; i++) cnn_tensor_free(&bufs[i]);
    ref_free(&r);
    cnn_context_set_current(outer);
    cnn_context_destroy(&ctx);
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
    return cnn_cudnn_conv2d_forward(j->ctx, j->g, dev_f32(j->x), dev_f32(j->w), NULL,
                                    cnn_f32(j->y));
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
        cnn_status st = cnn_cudnn_conv2d_forward(ctx, &g, dev_f32(x), dev_f32(w), NULL, cnn_f32(y));
        unsetenv("CNN_EMU_FAIL_MALLOC");
        if (st != CNN_ERR_OUT_OF_MEMORY || !strstr(cnn_last_error(), "engine search ran out"))
            cnn_test_fail(__FILE__, __LINE__, "full GPU: status %d: %s", st, cnn_last_error());
    }
    CHECK_OK(cnn_cudnn_conv2d_forward(ctx, &g, dev_f32(x), dev_f32(w), NULL, cnn_f32(y)));
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
    CHECK_OK(cnn_cudnn_conv2d_forward(ctx, &g, dev_f32(x), dev_f32(w), NULL, cnn_f32(y)));
    CHECK_OK(cnn_tensor_read(y, &yv, 1));
    if (yv != 1.0f / 512) cnn_test_fail(__FILE__, __LINE__, "TF32 y = %g, not 2^-9", yv);
    cnn_set_tf32(false);
    cnn_set_deterministic(true);
    check_bitwise_repeat(&conv_dnn, &conv_cases[1]);
    cnn_set_deterministic(false);
    free_tensors(&x, &w, &y);
    cnn_context_set_current(outer);
    cnn_context_destroy(&ctx);
    unsetenv("CNN_CUDNN_ENGINES");
#else
    cnn_test_skip("built without cuDNN");
#endif
}

#endif /* CNN_WITH_CUDA */
