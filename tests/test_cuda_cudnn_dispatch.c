/* test_cuda_cudnn_dispatch.c — the cuDNN dispatch layer: conv choices cached per groups, refusals
 * kept, workspaces within the cap and the batch, failures not taken for refusals, timings
 * waited for; batch norm's momentum and statistics rows for the hand-written backward; NaN
 * through cuDNN's max pooling. */
#include "conv_cases.h"
#include "gpu_parity.h"

#include <stdint.h>

#if CNN_WITH_CUDA

#if CNN_WITH_CUDNN
/* A fresh context on cuda:0, made current (conv choices are cached per context); NULL on
 * failure. end_context makes outer current again and destroys *ctx. */
static cnn_context *begin_context(cnn_context **outer)
{
    cnn_context *ctx = NULL;
    *outer = cnn_context_current();
    if (cnn_context_create(CNN_CUDA(0), &ctx) != CNN_OK) return NULL;
    cnn_context_set_current(ctx);
    return ctx;
}

static void end_context(cnn_context *outer, cnn_context **ctx)
{
    cnn_context_set_current(outer);
    cnn_context_destroy(ctx);
}

/* Runs cc through the cuDNN launchers twice (the first call's search writes the outputs with
 * every candidate; the second shows the cached choice's) and returns the forward's cached
 * choice, or NULL. */
static const char *run_and_name(const conv_case *cc)
{
    check_impl(cc, &conv_dnn, CONV_ATOL, CONV_RTOL);
    check_impl(cc, &conv_dnn, CONV_ATOL, CONV_RTOL);
    cnn_tensor *x = NULL, *w = NULL;
    const cnn_conv2d_params p = params_of(cc);
    const char *algo = NULL;
    if (cnn_tensor_empty(CNN_SHAPE(cc->n, cc->c, cc->h, cc->w), CNN_F32, CNN_CUDA(0), &x) ==
            CNN_OK &&
        cnn_tensor_empty(CNN_SHAPE(cc->k, cc->c / cc->groups, cc->r, cc->s), CNN_F32,
                         CNN_CUDA(0), &w) == CNN_OK)
        algo = cnn_conv2d_cudnn_algo(x, w, &p, 0);
    free_tensors(&x, &w);
    return algo;
}
#endif

/* Two 1x1 convolutions alike but for their groups, in one context, the GEMM path forced
 * (CNN_CONV1X1=gemm): the plain one runs as cuBLAS GEMMs; the grouped one, which the GEMMs
 * cannot do, neither takes the plain one's cached choice (groups are part of the key) nor is
 * offered to the GEMMs by the search. Both match the CPU. */
GPU_TEST(cuda_conv_cudnn_choice_keeps_groups_apart)
{
#if CNN_WITH_CUDNN
    static const conv_case cases[2] = {
        {"1x1 groups 1", 2, 8, 5, 5, 8, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1},
        {"1x1 groups 2", 2, 8, 5, 5, 8, 1, 1, 1, 1, 0, 0, 1, 1, 2, 1},
    };
    cnn_context *outer, *ctx = begin_context(&outer);
    REQUIRE(ctx);
    setenv("CNN_CONV1X1", "gemm", 1);
    for (int i = 0; i < 2; i++) {
        const char *algo = run_and_name(&cases[i]);
        const bool gemm = algo && !strcmp(algo, "CUBLAS_GEMM");
        if (!algo || gemm != (i == 0))
            cnn_test_fail(__FILE__, __LINE__, "%s: forward ran %s", cases[i].name,
                          algo ? algo : "(nothing cached)");
    }
    end_context(outer, &ctx);
    unsetenv("CNN_CONV1X1");
#else
    cnn_test_skip("built without cuDNN");
#endif
}

/* The search times its candidates (legacy algorithms, the 1x1 GEMMs, the graph API's engines)
 * with CUDA events, waiting for the last before reading the time: on a device that is always
 * behind (the emulator's CNN_EMU_LAGGING_EVENTS) each direction still finds an algorithm and
 * matches the CPU, where a missing wait would read "not ready" as a failure. */
GPU_TEST(cuda_conv_cudnn_search_waits_for_its_timings)
{
#if CNN_WITH_CUDNN
    if (!emulated_gpu()) {
        cnn_test_skip("needs the CUDA emulator's CNN_EMU_LAGGING_EVENTS");
        return;
    }
    const conv_case cc = {"1x1 lagging device", 2, 8, 5, 5, 12, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1};
    cnn_context *outer, *ctx = begin_context(&outer);
    REQUIRE(ctx);
    setenv("CNN_CUDNN_ENGINES", "1", 1);
    setenv("CNN_EMU_LAGGING_EVENTS", "1", 1);
    const char *algo = run_and_name(&cc);
    unsetenv("CNN_EMU_LAGGING_EVENTS");
    unsetenv("CNN_CUDNN_ENGINES");
    if (!algo) cnn_test_fail(__FILE__, __LINE__, "no algorithm cached: %s", cnn_last_error());
    end_context(outer, &ctx);
#else
    cnn_test_skip("built without cuDNN");
#endif
}

/* The 1x1 GEMM path's backward-filter takes the workspace its batch needs (one (C, K) product
 * per sample, 3 KiB here), not all the cap (CNN_CUDNN_WORKSPACE_MB, 1 GiB by default) allows:
 * the cached choice's run adds well under 1 MiB to the peak of allocated memory. */
GPU_TEST(cuda_conv_1x1_gemm_workspace_fits_the_batch)
{
#if CNN_WITH_CUDNN
    const conv_case cc = {"1x1 small batch", 2, 16, 5, 5, 24, 1, 1, 1, 1, 0, 0, 1, 1, 1, 0};
    cnn_context *outer, *ctx = begin_context(&outer);
    REQUIRE(ctx);
    setenv("CNN_CONV1X1", "gemm", 1);
    const char *algo = run_and_name(&cc);
    CHECK(algo && !strcmp(algo, "CUBLAS_GEMM"));
    conv_ref r;
    REQUIRE(make_ref(&cc, &r));
    cnn_tensor *x = to_gpu(r.x), *dy = to_gpu(r.dy), *dw = nan_gpu(cnn_tensor_shape(r.w));
    REQUIRE(x && dy && dw);
    cnn_cuda_memory_stats before, after;
    CHECK(cnn_cuda_get_memory_stats(0, &before) == CNN_OK);
    cnn_cuda_reset_peak_memory(0);
    CHECK(cnn_cudnn_conv2d_backward_filter(ctx, &r.g, cnn_f32(dy), cnn_f32(x), cnn_f32(dw),
                                           NULL) == CNN_OK);
    CHECK(cnn_cuda_get_memory_stats(0, &after) == CNN_OK);
    const size_t extra = after.peak_allocated_bytes - before.allocated_bytes;
    if (extra >= (size_t)1 << 20)
        cnn_test_fail(__FILE__, __LINE__, "backward-filter as GEMMs took %zu bytes more", extra);
    CHECK(close_scaled("GEMM dw", dw, r.dw, CONV_ATOL, CONV_RTOL));
    free_tensors(&x, &dy, &dw);
    ref_free(&r);
    end_context(outer, &ctx);
    unsetenv("CNN_CONV1X1");
#else
    cnn_test_skip("built without cuDNN");
#endif
}

#if CNN_WITH_CUDNN
/* Whether one direction's call ran: OK does; a refusal fails the test on the emulated cuDNN
 * (which has a way without workspace in every direction) and is allowed on a real one (whose
 * set of algorithms and engines is its own), where the op would fall back. */
static bool ran_or_declined(const char *what, cnn_status st)
{
    if (st == CNN_OK) return true;
    if (st != CNN_ERR_UNSUPPORTED || emulated_gpu())
        cnn_test_fail(__FILE__, __LINE__, "%s without workspace: %s", what, cnn_last_error());
    else
        printf("    %s: this cuDNN declines it without workspace\n", what);
    return false;
}

/* Runs case cc's three directions through cuDNN twice (searched, then cached) in a fresh
 * context with CNN_CUDNN_WORKSPACE_MB=0 and CNN_CUDNN_ENGINES=engines (NULL: unset), checks the
 * results of those that ran against the CPU's, and returns how far the peak of allocated memory
 * rose. */
static size_t no_workspace_peak(const conv_case *cc, const char *engines)
{
    cnn_context *outer, *ctx = begin_context(&outer);
    conv_ref r;
    if (!ctx) return SIZE_MAX;
    size_t extra = SIZE_MAX;
    if (!make_ref(cc, &r)) {
        cnn_test_fail(__FILE__, __LINE__, "%s: reference failed", cc->name);
        r = (conv_ref){0};
    }
    cnn_tensor *x = to_gpu(r.x), *w = to_gpu(r.w), *dy = to_gpu(r.dy);
    cnn_tensor *y = nan_gpu(cnn_tensor_shape(r.dy)), *dx = nan_gpu(cnn_tensor_shape(r.x));
    cnn_tensor *dw = nan_gpu(cnn_tensor_shape(r.w));
    cnn_cuda_memory_stats before, after;
    if (x && w && dy && y && dx && dw && cnn_cuda_get_memory_stats(0, &before) == CNN_OK) {
        setenv("CNN_CUDNN_WORKSPACE_MB", "0", 1);
        if (engines) setenv("CNN_CUDNN_ENGINES", engines, 1);
        cnn_cuda_reset_peak_memory(0);
        bool ran[3] = {true, true, true};
        for (int i = 0; i < 2; i++) {
            cnn_status fwd = cnn_cudnn_conv2d_forward(ctx, &r.g, cnn_f32(x), cnn_f32(w), NULL,
                                                      cnn_f32(y));
            cnn_status bwd_data = cnn_cudnn_conv2d_backward_data(ctx, &r.g, cnn_f32(dy),
                                                                 cnn_f32(w), cnn_f32(dx));
            cnn_status bwd_filter = cnn_cudnn_conv2d_backward_filter(ctx, &r.g, cnn_f32(dy),
                                                                     cnn_f32(x), cnn_f32(dw), NULL);
            ran[0] = ran_or_declined("forward", fwd) && ran[0];
            ran[1] = ran_or_declined("backward-data", bwd_data) && ran[1];
            ran[2] = ran_or_declined("backward-filter", bwd_filter) && ran[2];
        }
        unsetenv("CNN_CUDNN_WORKSPACE_MB");
        unsetenv("CNN_CUDNN_ENGINES");
        if (cnn_cuda_get_memory_stats(0, &after) == CNN_OK)
            extra = after.peak_allocated_bytes - before.allocated_bytes;
        if (ran[0]) CHECK(close_scaled("no-workspace y", y, r.y, CONV_ATOL, CONV_RTOL));
        if (ran[1]) CHECK(close_scaled("no-workspace dx", dx, r.dx, CONV_ATOL, CONV_RTOL));
        if (ran[2]) CHECK(close_scaled("no-workspace dw", dw, r.dw, CONV_ATOL, CONV_RTOL));
    }
    free_tensors(&x, &w, &dy, &y, &dx, &dw);
    ref_free(&r);
    end_context(outer, &ctx);
    return extra;
}
#endif

/* CNN_CUDNN_WORKSPACE_MB=0: cuDNN's search and the choices it keeps take no workspace (on the
 * emulated cuDNN each direction has an algorithm and an engine without one; a real cuDNN may
 * decline a direction instead), so the peak of allocated memory does not rise: not at all with
 * the legacy algorithms, and with the graph API's engines by no more than the one-word stand-in
 * a plan without workspace is timed with (a 512-byte block), far below the 30 KiB an
 * im2col-sized workspace of this case would take. */
GPU_TEST(cuda_conv_cudnn_workspace_cap_zero_takes_none)
{
#if CNN_WITH_CUDNN
    const conv_case *cc = &conv_cases[2]; /* no bias: r.y is the conv alone */
    const size_t legacy = no_workspace_peak(cc, NULL), engines = no_workspace_peak(cc, "only");
    if (legacy != 0)
        cnn_test_fail(__FILE__, __LINE__, "legacy algorithms: %zu bytes more were taken",
                      legacy);
    if (engines > 4096)
        cnn_test_fail(__FILE__, __LINE__, "graph-API engines: %zu bytes more were taken",
                      engines);
#else
    cnn_test_skip("built without cuDNN");
#endif
}

/* A case cuDNN declined stays declined: the refusal is cached (no second search) and the next
 * call declines again, rather than running an algorithm the search passed over. Here
 * deterministic mode with no workspace allowed: the emulated cuDNN's one deterministic
 * backward-filter algorithm needs a workspace (a real cuDNN may have one that does not). */
GPU_TEST(cuda_conv_cudnn_refusal_is_kept)
{
#if CNN_WITH_CUDNN
    const conv_case *cc = &conv_cases[0];
    cnn_context *outer, *ctx = begin_context(&outer);
    REQUIRE(ctx);
    conv_ref r;
    REQUIRE(make_ref(cc, &r));
    cnn_tensor *x = to_gpu(r.x), *dy = to_gpu(r.dy), *dw = nan_gpu(cnn_tensor_shape(r.w));
    REQUIRE(x && dy && dw);
    setenv("CNN_CUDNN_WORKSPACE_MB", "0", 1);
    cnn_set_deterministic(true);
    uint64_t s0, s1;
    cnn_cudnn_conv2d_cache_stats(ctx, NULL, &s0);
    cnn_status st = cnn_cudnn_conv2d_backward_filter(ctx, &r.g, cnn_f32(dy), cnn_f32(x),
                                                     cnn_f32(dw), NULL);
    if (st == CNN_OK && emulated_gpu()) {
        cnn_test_fail(__FILE__, __LINE__, "the emulated cuDNN ran a deterministic "
                      "backward-filter algorithm without workspace");
    } else if (st == CNN_OK) {
        cnn_test_skip("this cuDNN has a deterministic backward-filter algorithm without "
                      "workspace");
    } else {
        CHECK(st == CNN_ERR_UNSUPPORTED);
        CHECK_ERR(cnn_cudnn_conv2d_backward_filter(ctx, &r.g, cnn_f32(dy), cnn_f32(x),
                                                   cnn_f32(dw), NULL),
                  CNN_ERR_UNSUPPORTED);
        cnn_cudnn_conv2d_cache_stats(ctx, NULL, &s1);
        CHECK(s1 == s0 + 1);
    }
    cnn_set_deterministic(false);
    unsetenv("CNN_CUDNN_WORKSPACE_MB");
    free_tensors(&x, &dy, &dw);
    ref_free(&r);
    end_context(outer, &ctx);
#else
    cnn_test_skip("built without cuDNN");
#endif
}


#if CNN_WITH_CUDNN
typedef struct conv_job {
    cnn_tensor *x, *w;
} conv_job;

static cnn_status conv_job_run(void *ud)
{
    const conv_job *j = ud;
    cnn_tensor *y = NULL;
    cnn_status st = cnn_conv2d(j->x, j->w, NULL, NULL, &y);
    cnn_tensor_free(&y);
    return st;
}
#endif

/* A cuDNN failure other than a refusal is the call's error, not a cue for the hand-written
 * kernel: captured into a graph before cuDNN ever searched for its case, a conv fails (the
 * search times algorithms and waits for the GPU) and says to run it once first, rather than
 * being captured on the hand-written kernel, which every replay would then run. Once run, the
 * same capture succeeds. */
GPU_TEST(cuda_conv_cudnn_failure_is_not_a_fallback)
{
#if CNN_WITH_CUDNN
    conv_job job = {NULL, NULL};
    cnn_graph *g = NULL;
    CHECK_OK(cnn_tensor_uniform(CNN_SHAPE(2, 3, 8, 8), -1, 1, CNN_CUDA(0), &job.x));
    CHECK_OK(cnn_tensor_uniform(CNN_SHAPE(4, 3, 3, 3), -1, 1, CNN_CUDA(0), &job.w));
    cnn_set_backend(CNN_BACKEND_CUDNN);
    CHECK_ERR(cnn_graph_capture(conv_job_run, &job, &g), CNN_ERR_INVALID_ARG);
    CHECK(g == NULL && strstr(cnn_last_error(), "run the captured function once"));
    CHECK(conv_job_run(&job) == CNN_OK);
    CHECK(cnn_graph_capture(conv_job_run, &job, &g) == CNN_OK);
    CHECK(g && cnn_graph_replay(g) == CNN_OK);
    cnn_graph_destroy(&g);
    cnn_set_backend(CNN_BACKEND_AUTO);
    free_tensors(&job.x, &job.w);
#else
    cnn_test_skip("built without cuDNN");
#endif
}

#endif /* CNN_WITH_CUDA */

/* ---- batch norm through cuDNN --------------------------------------------------------------- */
/* The running statistics follow the momentum given (cuDNN's exponentialAverageFactor), here 0.3
 * rather than the usual 0.1, as on the CPU; eps 1e-3 rather than the usual 1e-5 shows in y. */
GPU_TEST(cuda_bn_cudnn_running_stats_follow_momentum)
{
    const float momentum = 0.3f, eps = 1e-3f;
    cnn_tensor *x = rand_tensor(CNN_SHAPE(3, 4, 5, 6), -1, 3, 0);
    cnn_tensor *rm = rand_tensor(CNN_SHAPE(4), -0.5f, 0.5f, 0);
    cnn_tensor *rv = rand_tensor(CNN_SHAPE(4), 0.5f, 1.5f, 0);
    cnn_tensor *gx = to_gpu(x), *grm = to_gpu(rm), *grv = to_gpu(rv), *y = NULL, *gy = NULL;
    REQUIRE(x && rm && rv && gx && grm && grv);
    CHECK_OK(cnn_batch_norm(x, rm, rv, NULL, NULL, true, momentum, eps, &y));
    cnn_set_backend(CNN_BACKEND_CUDNN);
    CHECK_OK(cnn_batch_norm(gx, grm, grv, NULL, NULL, true, momentum, eps, &gy));
    cnn_set_backend(CNN_BACKEND_AUTO);
    gpu_check_close("bn momentum 0.3", "y", gy, y, 1e-4f, 1e-3f);
    gpu_check_close("bn momentum 0.3", "running_mean", grm, rm, 1e-5f, 1e-4f);
    gpu_check_close("bn momentum 0.3", "running_var", grv, rv, 1e-5f, 1e-4f);
    free_tensors(&x, &rm, &rv, &gx, &grm, &grv, &y, &gy);
}

/* After a cuDNN forward, a backward that wants no dx (x needs no gradient) is the hand-written
 * kernel's, on the statistics rows cuDNN's forward filled: the low part of the mean must have
 * been written (0) there, not left as what the block held before (NaN, see poison_cache). */
GPU_TEST(cuda_bn_hand_written_backward_after_cudnn_forward)
{
    const cnn_shape xs = CNN_SHAPE(3, 5, 4, 7);
    cnn_tensor *x = rand_tensor(xs, -1, 3, 0), *dy = rand_tensor(xs, -1, 1, 0);
    cnn_tensor *w = rand_tensor(CNN_SHAPE(5), 0.5f, 1.5f, 1);
    cnn_tensor *b = rand_tensor(CNN_SHAPE(5), -1, 1, 1);
    cnn_tensor *gx = to_gpu(x), *gdy = to_gpu(dy), *gw = to_gpu(w), *gb = to_gpu(b);
    cnn_tensor *y = NULL, *gy = NULL;
    REQUIRE(x && dy && w && b && gx && gdy && gw && gb);
    CHECK_OK(cnn_batch_norm(x, NULL, NULL, w, b, true, 0.1f, 1e-5f, &y));
    CHECK_OK(cnn_backward_with_grad(y, dy));
    cnn_set_backend(CNN_BACKEND_CUDNN);
    const cnn_shape shapes[2] = {xs, CNN_SHAPE(4, 5)};
    poison_cache(shapes, 2);
    CHECK_OK(cnn_batch_norm(gx, NULL, NULL, gw, gb, true, 0.1f, 1e-5f, &gy));
    CHECK_OK(cnn_backward_with_grad(gy, gdy));
    cnn_set_backend(CNN_BACKEND_AUTO);
    gpu_check_close("bn without dx", "y", gy, y, 1e-4f, 1e-3f);
    gpu_check_close("bn without dx", "dweight", cnn_tensor_grad(gw), cnn_tensor_grad(w), 1e-4f,
                    1e-3f);
    gpu_check_close("bn without dx", "dbias", cnn_tensor_grad(gb), cnn_tensor_grad(b), 1e-4f,
                    1e-3f);
    free_tensors(&x, &dy, &w, &b, &gx, &gdy, &gw, &gb, &y, &gy);
}

/* ---- max pooling through cuDNN -------------------------------------------------------------- */
/* A window that holds a NaN gives NaN, as PyTorch's max pooling does (cuDNN's NOT_PROPAGATE_NAN
 * would give the window's largest number instead). Random values (no ties), every 13th a NaN,
 * 3x3 windows at stride 2 with padding 1; the forward only, as cuDNN documents no rule for the
 * gradient of a NaN. */
GPU_TEST(cuda_max_pool_cudnn_propagates_nan)
{
    enum { N = 2 * 3 * 9 * 8 };
    const cnn_shape s = CNN_SHAPE(2, 3, 9, 8);
    const cnn_pool2d_params p = {.kernel = {3, 3}, .stride = {2, 2}, .padding = {1, 1}};
    static float v[N], got[N], want[N];
    cnn_tensor *r = rand_tensor(s, -2, 2, 0), *xc = NULL, *xg = NULL, *yc = NULL, *yg = NULL;
    REQUIRE(r && cnn_tensor_read(r, v, N) == CNN_OK);
    for (int i = 0; i < N; i++)
        if (i % 13 == 5) v[i] = NAN;
    CHECK(cnn_tensor_from_data(s, v, CNN_CPU, &xc) == CNN_OK);
    CHECK(xc && cnn_max_pool2d(xc, &p, &yc) == CNN_OK);
    xg = to_gpu(xc);
    cnn_set_backend(CNN_BACKEND_CUDNN);
    CHECK(xg && cnn_max_pool2d(xg, &p, &yg) == CNN_OK);
    cnn_set_backend(CNN_BACKEND_AUTO);
    const int64_t m = yc ? cnn_tensor_numel(yc) : 0;
    int nans = 0, bad = 0;
    if (yg && cnn_tensor_read(yg, got, (size_t)m) == CNN_OK &&
        cnn_tensor_read(yc, want, (size_t)m) == CNN_OK) {
        for (int64_t i = 0; i < m; i++) {
            nans += isnan(want[i]) != 0;
            bad += isnan(got[i]) != isnan(want[i]) || (!isnan(want[i]) && got[i] != want[i]);
        }
        CHECK(nans > 0); /* the case has windows with a NaN */
        if (bad)
            cnn_test_fail(__FILE__, __LINE__, "%d of %lld outputs differ from the CPU's", bad,
                          (long long)m);
    } else {
        cnn_test_fail(__FILE__, __LINE__, "max pool with NaN: %s", cnn_last_error());
    }
    free_tensors(&r, &xc, &xg, &yc, &yg);
}
