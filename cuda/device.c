/* device.c — the GPU side of a context: device count, name and library versions, the context's
 * own non-blocking stream and its lazily created cuBLAS/cuDNN handles, all kept in ctx->gpu
 * (never in globals, so contexts on different threads or devices cannot interfere). No op logic
 * here; it never prints. */
#include "cuda_check.h"

typedef struct cnn_gpu_state {
    int device;
    cudaStream_t stream;
    cublasHandle_t cublas;       /* NULL until first use */
    struct cudnnContext *cudnn;  /* a cudnnHandle_t, NULL until first use (or without cuDNN) */
    bool cudnn_unusable;         /* cudnnCreate said cuDNN cannot run here (status below) */
    int cudnn_status;
    /* Kernels report a bad input here (cnn_cuda_bad_label_slot); read at the next wait. */
    unsigned long long *bad_label; /* device memory (bad_label_mem's), NULL until first use */
    cnn_storage bad_label_mem;     /* from the caching allocator */
    bool bad_label_armed;          /* a kernel that may report has been queued since */
    int64_t bad_label_k;           /* the class count of the last such kernel */
    /* A vector of ones (cnn_cuda_ones), from the caching allocator; grown, never shrunk. */
    cnn_storage ones;
    int64_t ones_n;
    /* The graph being captured on the stream (cuda/graph.c), NULL when none. */
    struct cnn_graph *capture;
    /* Graphs captured on this context and not yet destroyed: their work may read a vector of
     * ones that has since been outgrown, so outgrown ones wait here until none is left. */
    int live_graphs;
    cnn_storage *retired;
    int n_retired;
} cnn_gpu_state;

static void release_retired(cnn_gpu_state *g)
{
    for (int i = 0; i < g->n_retired; i++) g->retired[i].release(&g->retired[i]);
    free(g->retired);
    g->retired = NULL;
    g->n_retired = 0;
}

int cnn_cuda_count_devices(void)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        /* No driver or no GPU is an answer, 0 devices, not a failure: clear the error so no
         * later check picks it up. */
        (void)cudaGetLastError();
        return 0;
    }
    return n;
}

cnn_status cnn_cuda_device_name(int device, char *buf, size_t size)
{
    CNN_CHECK(buf && size > 0, CNN_ERR_INVALID_ARG, "cuda_device_name: buf is NULL or size is 0");
    buf[0] = '\0';
    int n = cnn_cuda_count_devices();
    CNN_CHECK(device >= 0 && device < n, CNN_ERR_DEVICE,
              "cuda_device_name: cuda:%d requested but %d device(s) are present", device, n);
    struct cudaDeviceProp prop;
    CNN_CUDA_TRY(cudaGetDeviceProperties(&prop, device));
    snprintf(buf, size, "%s", prop.name);
    return CNN_OK;
}

cnn_status cnn_cuda_versions(int *driver, int *runtime, size_t *cudnn)
{
    /* Without a driver cudaDriverGetVersion answers 0, which is the answer wanted here. */
    int d = 0, r = 0;
    if (cudaDriverGetVersion(&d) != cudaSuccess) d = 0;
    if (cudaRuntimeGetVersion(&r) != cudaSuccess) r = 0;
    (void)cudaGetLastError();
    if (driver) *driver = d;
    if (runtime) *runtime = r;
    /* The loaded library's version, which may differ from the headers this was built with. */
#if CNN_WITH_CUDNN
    if (cudnn) *cudnn = cudnnGetVersion();
#else
    if (cudnn) *cudnn = 0;
#endif
    return CNN_OK;
}

cnn_status cnn_cuda_context_init(cnn_context *ctx)
{
    cnn_status st = CNN_OK;
    cnn_gpu_state *g = calloc(1, sizeof *g);
    if (!g) return cnn_error(CNN_ERR_OUT_OF_MEMORY, "context_create: out of host memory");
    g->device = ctx->device.index;
    CNN_CUDA_TRYG(cudaSetDevice(g->device));
    /* Non-blocking: the context's work must not serialise with the legacy default stream that
     * other code in the process may use. */
    CNN_CUDA_TRYG(cudaStreamCreateWithFlags(&g->stream, cudaStreamNonBlocking));
    ctx->gpu = g;
    return CNN_OK;
done:
    free(g);
    return cnn_error_prefix(st, "context_create(cuda:%d)", ctx->device.index);
}

void cnn_cuda_context_release(cnn_context *ctx)
{
    cnn_gpu_state *g = ctx->gpu;
    if (!g) return;
    ctx->gpu = NULL;
    /* Nobody is left to report a failure to: everything is released regardless. The stream is
     * drained first so that no queued work still uses memory the cache may hand out again. */
    (void)cudaSetDevice(g->device);
    (void)cudaStreamSynchronize(g->stream);
    if (g->cublas) (void)cublasDestroy(g->cublas);
#if CNN_WITH_CUDNN
    cnn_cudnn_conv2d_cache_release(ctx);
    if (g->cudnn) (void)cudnnDestroy(g->cudnn);
#endif
    if (g->bad_label_mem.release) g->bad_label_mem.release(&g->bad_label_mem);
    if (g->ones.release) g->ones.release(&g->ones);
    release_retired(g);
    cnn_cuda_allocator_forget_stream(g->device, g->stream);
    (void)cudaStreamDestroy(g->stream);
    (void)cudaGetLastError();
    free(g);
}

cnn_status cnn_cuda_enter(cnn_context *ctx, const char *op, cudaStream_t *stream)
{
    cnn_gpu_state *g = ctx ? ctx->gpu : NULL;
    CNN_CHECK(g, CNN_ERR_DEVICE,
              "%s: CUDA work needs a CUDA context, but the current one is on the CPU (create one "
              "with cnn_context_create(CNN_CUDA(i), ...) and make it current)", op);
    /* As PyTorch's device guard: a query of the thread's device is nearly free, a
     * cudaSetDevice on every op is not. */
    int cur = -1;
    if (cudaGetDevice(&cur) != cudaSuccess) {
        (void)cudaGetLastError(); /* not left for the next launch check to find */
        cur = -1;
    }
    if (cur != g->device) CNN_CUDA_TRY(cudaSetDevice(g->device));
    *stream = g->stream;
    return CNN_OK;
}

/* What a lazily made helper says when its first use falls inside a capture: made then, it
 * would be filled only when the graph runs, and a capture cannot wait or (safely) allocate. */
static cnn_status first_use_in_capture(const char *what)
{
    return cnn_error(CNN_ERR_INVALID_ARG,
                     "graph_capture: %s is first needed inside the capture; run the captured "
                     "function once before capturing it", what);
}

struct cnn_graph *cnn_cuda_capture_of(const cnn_context *ctx)
{
    const cnn_gpu_state *g = ctx ? ctx->gpu : NULL;
    return g ? g->capture : NULL;
}

void cnn_cuda_capture_set(cnn_context *ctx, struct cnn_graph *graph)
{
    cnn_gpu_state *g = ctx->gpu;
    g->capture = graph;
}

void cnn_cuda_graphs_alive(cnn_context *ctx, int delta)
{
    cnn_gpu_state *g = ctx->gpu;
    if (!g) return;
    g->live_graphs += delta;
    if (g->live_graphs == 0) release_retired(g);
}

cudaStream_t cnn_cuda_stream_of(const cnn_context *ctx)
{
    const cnn_gpu_state *g = ctx->gpu;
    return g->stream;
}

bool cnn_cuda_bad_label_exchange(cnn_context *ctx, bool armed, int64_t *k)
{
    cnn_gpu_state *g = ctx->gpu;
    bool was = g->bad_label_armed;
    int64_t old_k = g->bad_label_k;
    g->bad_label_armed = armed;
    if (armed) g->bad_label_k = *k;
    *k = old_k;
    return was;
}

cnn_status cnn_cuda_synchronize(cnn_context *ctx)
{
    cudaStream_t s;
    CNN_TRY(cnn_cuda_enter(ctx, "synchronize", &s));
    CNN_CHECK(!cnn_cuda_capture_of(ctx), CNN_ERR_UNSUPPORTED,
              "synchronize: waiting for the GPU inside a graph capture (the capture records "
              "work, it runs none; read results after cnn_graph_replay)");
    CNN_CUDA_TRY(cudaStreamSynchronize(s));
    return cnn_cuda_check_bad_label(ctx);
}

cnn_status cnn_cuda_ones(cnn_context *ctx, int64_t n, const float **ones)
{
    cudaStream_t s;
    CNN_TRY(cnn_cuda_enter(ctx, "ones", &s));
    cnn_gpu_state *g = ctx->gpu;
    if (g->ones_n < n) {
        if (g->capture) return first_use_in_capture("the context's vector of ones");
        int64_t want = g->ones_n ? g->ones_n : 1024;
        while (want < n) want *= 2;
        if (g->ones.release && g->live_graphs > 0) { /* room to retire the old one first */
            cnn_storage *r = realloc(g->retired, (size_t)(g->n_retired + 1) * sizeof *r);
            CNN_CHECK(r, CNN_ERR_OUT_OF_MEMORY, "ones: out of host memory");
            g->retired = r;
        }
        cnn_storage fresh;
        memset(&fresh, 0, sizeof fresh);
        CNN_TRY(cnn_cuda_storage_alloc(ctx, &fresh, (size_t)want * sizeof(float), "ones"));
        cnn_status st = cnn_cuda_fill_f32(ctx, fresh.data, 1.0f, want);
        if (st != CNN_OK) {
            fresh.release(&fresh);
            return st;
        }
        /* Released in stream order: work already queued that reads the old vector runs first.
         * A live graph's replays may read it later: then it waits for the last one to go. */
        if (g->ones.release && g->live_graphs > 0) g->retired[g->n_retired++] = g->ones;
        else if (g->ones.release) g->ones.release(&g->ones);
        g->ones = fresh;
        g->ones_n = want;
    }
    *ones = g->ones.data;
    return CNN_OK;
}

/* ---- bad inputs found on the device ------------------------------------------------------------
 * A kernel cannot return an error, and checking labels on the host would wait for the device on
 * every step. So a kernel that meets a label outside [0, K) records (sample << 32 | label) with
 * an atomicMin in the context's slot (the lowest bad sample wins: deterministic), and the next
 * call that waits for the stream anyway reads the slot and reports it. */
#define NO_BAD_LABEL (~0ull)

cnn_status cnn_cuda_bad_label_slot(cnn_context *ctx, int64_t k, unsigned long long **slot)
{
    cudaStream_t s;
    CNN_TRY(cnn_cuda_enter(ctx, "cross_entropy", &s));
    cnn_gpu_state *g = ctx->gpu;
    if (!g->bad_label) {
        if (g->capture) return first_use_in_capture("the context's bad-label slot");
        /* From the caching allocator, which frees its cache and retries when the GPU is full. */
        cnn_storage fresh;
        memset(&fresh, 0, sizeof fresh);
        CNN_TRY(cnn_cuda_storage_alloc(ctx, &fresh, sizeof *g->bad_label, "cross_entropy"));
        cudaError_t e = cudaMemsetAsync(fresh.data, 0xff, sizeof *g->bad_label, s);
        if (e != cudaSuccess) {
            (void)cudaGetLastError();
            fresh.release(&fresh);
            return cnn_error(cnn_cuda_status_of(e), "cross_entropy: %s", cudaGetErrorString(e));
        }
        g->bad_label_mem = fresh;
        g->bad_label = fresh.data;
    }
    g->bad_label_armed = true;
    g->bad_label_k = k;
    *slot = g->bad_label;
    return CNN_OK;
}

cnn_status cnn_cuda_check_bad_label(cnn_context *ctx)
{
    cnn_gpu_state *g = ctx ? ctx->gpu : NULL;
    if (!g || !g->bad_label_armed) return CNN_OK;
    unsigned long long v = NO_BAD_LABEL;
    CNN_CUDA_TRY(cudaMemcpyAsync(&v, g->bad_label, sizeof v, cudaMemcpyDeviceToHost, g->stream));
    CNN_CUDA_TRY(cudaStreamSynchronize(g->stream));
    g->bad_label_armed = false;
    if (v == NO_BAD_LABEL) return CNN_OK;
    CNN_CUDA_TRY(cudaMemsetAsync(g->bad_label, 0xff, sizeof *g->bad_label, g->stream));
    return cnn_error(CNN_ERR_INVALID_ARG,
                     "cross_entropy (queued earlier on cuda:%d): label %d of sample %llu is "
                     "outside [0, %lld); that loss is NaN",
                     g->device, (int)(int32_t)(uint32_t)(v & 0xffffffffu), v >> 32,
                     (long long)g->bad_label_k);
}

/* ---- event timers (cnn_timer) ---------------------------------------------------------------- */
typedef struct timer_events {
    int device;
    cudaEvent_t start, stop;
} timer_events;

cnn_status cnn_cuda_timer_create(cnn_context *ctx, void **out)
{
    cudaStream_t s;
    CNN_TRY(cnn_cuda_enter(ctx, "timer_create", &s));
    timer_events *t = calloc(1, sizeof *t);
    if (!t) return cnn_error(CNN_ERR_OUT_OF_MEMORY, "timer_create: out of host memory");
    t->device = ctx->device.index;
    cudaError_t e = cudaEventCreate(&t->start);
    if (e == cudaSuccess) {
        e = cudaEventCreate(&t->stop);
        if (e != cudaSuccess) (void)cudaEventDestroy(t->start);
    }
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        free(t);
        return cnn_error(cnn_cuda_status_of(e), "timer_create: cudaEventCreate failed: %s",
                         cudaGetErrorString(e));
    }
    *out = t;
    return CNN_OK;
}

cnn_status cnn_cuda_timer_record(cnn_context *ctx, void *events, bool stop)
{
    timer_events *t = events;
    cudaStream_t s;
    CNN_TRY(cnn_cuda_enter(ctx, stop ? "timer_stop" : "timer_start", &s));
    /* Recorded in a capture, the event would mark nothing a replay does, and reading it
     * afterwards is refused by CUDA. */
    CNN_CHECK(!cnn_cuda_capture_of(ctx), CNN_ERR_UNSUPPORTED, "timer_%s: inside a graph capture "
              "(a replay does not record the event); time cnn_graph_replay from outside",
              stop ? "stop" : "start");
    CNN_CUDA_TRY(cudaEventRecord(stop ? t->stop : t->start, s));
    return CNN_OK;
}

cnn_status cnn_cuda_timer_elapsed(void *events, double *ms)
{
    timer_events *t = events;
    float f = 0;
    CNN_CHECK(!cnn_cuda_thread_capturing(), CNN_ERR_UNSUPPORTED, "timer_elapsed: waiting for "
              "the GPU inside a graph capture");
    CNN_CUDA_TRY(cudaSetDevice(t->device));
    /* Both: start may have been recorded under another context's stream, still behind. */
    CNN_CUDA_TRY(cudaEventSynchronize(t->start));
    CNN_CUDA_TRY(cudaEventSynchronize(t->stop));
    CNN_CUDA_TRY(cudaEventElapsedTime(&f, t->start, t->stop));
    *ms = f;
    return CNN_OK;
}

void cnn_cuda_timer_destroy(void *events)
{
    timer_events *t = events;
    if (!t) return;
    (void)cudaSetDevice(t->device);
    (void)cudaEventDestroy(t->start);
    (void)cudaEventDestroy(t->stop);
    (void)cudaGetLastError();
    free(t);
}

cnn_status cnn_cuda_time_mean(cnn_context *ctx, const char *op, cnn_status (*run)(void *ud),
                              void *ud, float *ms)
{
    cudaStream_t s;
    CNN_TRY(cnn_cuda_enter(ctx, op, &s));
    cudaEvent_t ev[2] = {NULL, NULL};
    cnn_status st = CNN_OK;
    CNN_CUDA_TRYG(cudaEventCreate(&ev[0]));
    CNN_CUDA_TRYG(cudaEventCreate(&ev[1]));
    for (int i = 0; i < 4 && st == CNN_OK; i++) {
        if (i == 1) CNN_CUDA_TRYG(cudaEventRecord(ev[0], s));
        st = run(ud);
    }
    if (st != CNN_OK) goto done;
    CNN_CUDA_TRYG(cudaEventRecord(ev[1], s));
    CNN_CUDA_TRYG(cudaEventSynchronize(ev[1]));
    CNN_CUDA_TRYG(cudaEventElapsedTime(ms, ev[0], ev[1]));
    *ms /= 3;
done:
    for (int i = 0; i < 2; i++)
        if (ev[i]) (void)cudaEventDestroy(ev[i]);
    return st;
}

/* cublasCreate and cudnnCreate take device memory of their own, outside the caching allocator:
 * where that fails, the cache is given back and the creation tried once more, as a cudaMalloc
 * is (the cache may hold all the memory a training step left). */
static bool retry_after_freeing_cache(int device, const char *op)
{
    cnn_status st = cnn_cuda_release_cached(device, op);
    if (st != CNN_OK) cnn_clear_error(); /* refused while a graph is captured: no 2nd try */
    return st == CNN_OK;
}

cnn_status cnn_cuda_cublas(cnn_context *ctx, cublasHandle_t *out)
{
    cnn_gpu_state *g = ctx->gpu;
    CNN_ASSERT(g && out);
    if (!g->cublas) {
        if (g->capture) return first_use_in_capture("the context's cuBLAS handle");
        cublasHandle_t h = NULL;
        cublasStatus_t e = cublasCreate(&h);
        if (e == CUBLAS_STATUS_ALLOC_FAILED && retry_after_freeing_cache(g->device, "cublasCreate"))
            e = cublasCreate(&h);
        if (e != CUBLAS_STATUS_SUCCESS)
            return cnn_error(cnn_cublas_status_of(e), "cuBLAS handle for cuda:%d: cublasCreate "
                             "failed: %s", g->device, cublasGetStatusString(e));
        e = cublasSetStream(h, g->stream);
        if (e != CUBLAS_STATUS_SUCCESS) {
            (void)cublasDestroy(h);
            return cnn_error(cnn_cublas_status_of(e), "%s: cublasSetStream failed: %s", __func__,
                             cublasGetStatusString(e));
        }
        g->cublas = h;
    }
    /* Set on every use: the context's TF32 flag may change between calls. */
    CNN_CUBLAS_TRY(cublasSetMathMode(g->cublas, ctx->tf32 ? CUBLAS_TF32_TENSOR_OP_MATH
                                                           : CUBLAS_DEFAULT_MATH));
    *out = g->cublas;
    return CNN_OK;
}

#if CNN_WITH_CUDNN
cnn_status cnn_cuda_cudnn(cnn_context *ctx, cudnnHandle_t *out)
{
    cnn_gpu_state *g = ctx->gpu;
    CNN_ASSERT(g && out);
    if (!g->cudnn && !g->cudnn_unusable) {
        if (g->capture) return first_use_in_capture("the context's cuDNN handle");
        cudnnHandle_t h = NULL;
        cudnnStatus_t e = cudnnCreate(&h);
        if (cnn_cudnn_status_of(e) == CNN_ERR_OUT_OF_MEMORY &&
            retry_after_freeing_cache(g->device, "cudnnCreate"))
            e = cudnnCreate(&h);
        /* A GPU or driver this cuDNN does not support, or a sub-library (libcudnn_ops/_cnn,
         * loaded lazily by libcudnn.so in cuDNN 9) that is missing, is a case cuDNN cannot do:
         * callers that have a hand-written kernel fall back to it. Remembered, since
         * cudnnCreate is slow and would fail the same way on every call. */
        if (e == CUDNN_STATUS_SUBLIBRARY_LOADING_FAILED ||
            e == CUDNN_STATUS_SUBLIBRARY_VERSION_MISMATCH || (e >= 3000 && e < 4000)) {
            g->cudnn_unusable = true;
            g->cudnn_status = (int)e;
        } else if (e != CUDNN_STATUS_SUCCESS) {
            return cnn_error(cnn_cudnn_status_of(e), "cuDNN handle for cuda:%d: cudnnCreate "
                             "failed: %s", g->device, cudnnGetErrorString(e));
        } else {
            e = cudnnSetStream(h, g->stream);
            if (e != CUDNN_STATUS_SUCCESS) {
                (void)cudnnDestroy(h);
                return cnn_error(cnn_cudnn_status_of(e), "%s: cudnnSetStream failed: %s",
                                 __func__, cudnnGetErrorString(e));
            }
            g->cudnn = h;
        }
    }
    if (g->cudnn_unusable)
        return cnn_error(CNN_ERR_UNSUPPORTED, "cuDNN is unusable here: cudnnCreate: %s",
                         cudnnGetErrorString((cudnnStatus_t)g->cudnn_status));
    *out = g->cudnn;
    return CNN_OK;
}
#endif
