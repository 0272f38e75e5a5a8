/* graph.c — CUDA graphs (cnn_graph_capture / replay / destroy): a function's GPU work recorded
 * once by stream capture on the context's stream and replayed with one launch. The memory the
 * captured work uses comes from a pool of the graph's own (allocator.c), and the ops whose work
 * a replay could not repeat faithfully refuse to run inside a capture (they ask
 * cnn_cuda_capturing); ops with host-side state register hooks that each replay runs. Random
 * ops draw from the graph's counters, which each replay places at the context stream's
 * position (cnn_cuda_capture_rng). It never prints. */
#include "cuda_check.h"

typedef struct replay_hook {
    cnn_status (*fn)(void *ud, bool commit);
    void *ud;
    struct replay_hook *next;
} replay_hook;

struct cnn_graph {
    cnn_context *ctx;
    int device;
    int pool;              /* the allocator pool of the memory the captured work uses */
    cudaGraphExec_t exec;  /* NULL until instantiated */
    replay_hook *hooks;    /* in registration order */
    replay_hook **tail;
    bool arms_bad_label;   /* the captured work queued a kernel that may report a bad label */
    int64_t bad_label_k;
    /* I64 {seed, base} the captured random kernels read (made before the capture, so that no
     * captured work can have the same memory; freed after it when no random op took it). */
    cnn_tensor *rng_state;
    bool rng_used;
    uint64_t rng_counters; /* the Philox counters one replay draws */
    /* Tensors the captured work reads or writes that their owners might let go of while the
     * graph lives (an optimizer's state and scalars, parameter gradients): held until destroy. */
    cnn_tensor **kept;
    int n_kept, cap_kept;
    bool counted; /* counted among its context's live graphs (cnn_cuda_graphs_alive) */
};

/* Whether this thread is inside cnn_graph_capture's fn: in CUDA's thread-local capture mode it
 * may then neither allocate nor wait, for whichever context it works. */
static _Thread_local bool tl_capturing;

bool cnn_cuda_thread_capturing(void) { return tl_capturing; }

bool cnn_cuda_capturing(const cnn_context *ctx) { return cnn_cuda_capture_of(ctx) != NULL; }

cnn_status cnn_cuda_capture_keep(cnn_context *ctx, cnn_tensor *t)
{
    cnn_graph *g = cnn_cuda_capture_of(ctx);
    CNN_CHECK(g, CNN_ERR_INTERNAL, "capture_keep: no capture in progress");
    if (!t) return CNN_OK;
    if (g->n_kept == g->cap_kept) {
        int cap = g->cap_kept ? 2 * g->cap_kept : 16;
        cnn_tensor **k = realloc(g->kept, (size_t)cap * sizeof *k);
        CNN_CHECK(k, CNN_ERR_OUT_OF_MEMORY, "graph_capture: out of host memory");
        g->kept = k;
        g->cap_kept = cap;
    }
    g->kept[g->n_kept++] = cnn_tensor_retain(t);
    return CNN_OK;
}

cnn_status cnn_cuda_capture_on_replay(cnn_context *ctx, cnn_status (*hook)(void *ud, bool commit),
                                      const void *ud, size_t size)
{
    cnn_graph *g = cnn_cuda_capture_of(ctx);
    CNN_CHECK(g, CNN_ERR_INTERNAL, "capture_on_replay: no capture in progress");
    replay_hook *h = calloc(1, sizeof *h);
    void *copy = size ? malloc(size) : NULL;
    if (!h || (size && !copy)) {
        free(h);
        free(copy);
        return cnn_error(CNN_ERR_OUT_OF_MEMORY, "graph_capture: out of host memory");
    }
    if (size) memcpy(copy, ud, size);
    h->fn = hook;
    h->ud = copy;
    *g->tail = h;
    g->tail = &h->next;
    return CNN_OK;
}

cnn_status cnn_cuda_capture_rng(cnn_context *ctx, int64_t n_counters, const cnn_tensor **state,
                                uint64_t *offset)
{
    cnn_graph *g = cnn_cuda_capture_of(ctx);
    CNN_CHECK(g && g->rng_state, CNN_ERR_INTERNAL, "capture_rng: no capture in progress");
    g->rng_used = true;
    *state = g->rng_state;
    *offset = g->rng_counters;
    g->rng_counters += (uint64_t)(n_counters > 0 ? n_counters : 0);
    return CNN_OK;
}

void cnn_graph_destroy(cnn_graph **gp)
{
    if (!gp || !*gp) return;
    cnn_graph *g = *gp;
    *gp = NULL;
    if (g->exec) {
        int prev = -1;
        (void)cudaGetDevice(&prev);
        (void)cudaSetDevice(g->device);
        /* A replay may still run: what it uses goes back to the cache below, where another
         * stream could take it (the blocks of other pools held during the capture, the kept
         * tensors). So wait for it, unless the stream is being captured again (a wait would
         * break that capture: then the memory waits for the context's next use instead, as
         * the pool's blocks keep the capturing stream as their owner). */
        if (!cnn_cuda_capturing(g->ctx)) (void)cudaStreamSynchronize(cnn_cuda_stream_of(g->ctx));
        (void)cudaGraphExecDestroy(g->exec);
        if (prev >= 0 && prev != g->device) (void)cudaSetDevice(prev);
        (void)cudaGetLastError();
    }
    cnn_tensor_free(&g->rng_state); /* a dropout's backward may still hold it */
    for (int i = 0; i < g->n_kept; i++) cnn_tensor_free(&g->kept[i]);
    free(g->kept);
    if (g->counted) cnn_cuda_graphs_alive(g->ctx, -1);
    cnn_cuda_pool_release(g->device, g->pool);
    for (replay_hook *h = g->hooks, *next; h; h = next) {
        next = h->next;
        free(h->ud);
        free(h);
    }
    free(g);
}

/* The status of a failed capture: fn's own error when it had one (a refusal inside the capture
 * names its op), else what ending the capture said. */
static cnn_status end_failed(cnn_status fn_st, cudaError_t end)
{
    if (fn_st != CNN_OK) return cnn_error_prefix(fn_st, "graph_capture");
    return cnn_error(end == cudaErrorStreamCaptureInvalidated ? CNN_ERR_UNSUPPORTED : CNN_ERR_CUDA,
                     "graph_capture: the capture was invalidated by a call that a capture "
                     "forbids (a wait for the GPU, or work on the stream from elsewhere): %s",
                     cudaGetErrorString(end));
}

cnn_status cnn_graph_capture(cnn_status (*fn)(void *ud), void *ud, cnn_graph **out)
{
    CNN_CHECK(out, CNN_ERR_INVALID_ARG, "graph_capture: out is NULL");
    *out = NULL;
    CNN_CHECK(fn, CNN_ERR_INVALID_ARG, "graph_capture: fn is NULL");
    cnn_context *ctx = cnn_ctx();
    CNN_CHECK(ctx->device.type == CNN_DEVICE_CUDA, CNN_ERR_DEVICE,
              "graph_capture: the current context is on the CPU; CUDA graphs need a CUDA context");
    CNN_CHECK(!cnn_cuda_capturing(ctx) && !tl_capturing, CNN_ERR_UNSUPPORTED,
              "graph_capture: called inside a capture; captures do not nest");
    cudaStream_t stream;
    CNN_TRY(cnn_cuda_enter(ctx, "graph_capture", &stream));
    /* The graph's pool starts empty: give the device's cached free memory back to CUDA first,
     * so that the pool can have it instead of holding a second copy of the step's peak. (Not
     * while another capture runs on the device: then cnn_cuda_pool_begin refuses, and says so.) */
    cnn_status cst = cnn_cuda_release_cached(ctx->device.index, "graph_capture");
    if (cst == CNN_ERR_UNSUPPORTED) cnn_clear_error();
    else if (cst != CNN_OK) return cst;

    cnn_graph *g = calloc(1, sizeof *g);
    CNN_CHECK(g, CNN_ERR_OUT_OF_MEMORY, "graph_capture: out of host memory");
    g->ctx = ctx;
    g->device = ctx->device.index;
    g->tail = &g->hooks;
    cnn_status st = cnn_tensor_empty(CNN_SHAPE(2), CNN_I64, ctx->device, &g->rng_state);
    if (st == CNN_OK) st = cnn_cuda_pool_begin(g->device, stream, &g->pool);
    if (st != CNN_OK) {
        cnn_tensor_free(&g->rng_state);
        free(g);
        return st;
    }
    int64_t saved_k = 0;
    bool saved_armed = cnn_cuda_bad_label_exchange(ctx, false, &saved_k);

    /* Thread-local mode: this thread may not allocate or wait behind the capture's back (the
     * allocator switches to relaxed mode around its own cudaMalloc); other threads' contexts
     * on other streams are not disturbed. */
    cudaError_t e = cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        st = cnn_error(CNN_ERR_CUDA, "graph_capture: cudaStreamBeginCapture failed: %s",
                       cudaGetErrorString(e));
    } else {
        cnn_cuda_capture_set(ctx, g);
        tl_capturing = true;
        cnn_status fn_st = fn(ud);
        cnn_cuda_capture_set(ctx, NULL);
        cudaGraph_t graph = NULL;
        e = cudaStreamEndCapture(stream, &graph);
        tl_capturing = false;
        if (e != cudaSuccess) (void)cudaGetLastError();
        if (fn_st != CNN_OK || e != cudaSuccess) {
            st = end_failed(fn_st, e);
        } else {
            e = cudaGraphInstantiate(&g->exec, graph, 0);
            if (e != cudaSuccess) {
                (void)cudaGetLastError();
                g->exec = NULL;
                st = cnn_error(cnn_cuda_status_of(e), "graph_capture: cudaGraphInstantiate "
                               "failed: %s", cudaGetErrorString(e));
            }
        }
        if (graph) (void)cudaGraphDestroy(graph);
    }
    cnn_cuda_pool_end(g->device);
    int64_t k = saved_k;
    g->arms_bad_label = cnn_cuda_bad_label_exchange(ctx, saved_armed, &k);
    g->bad_label_k = k;
    if (st != CNN_OK) {
        cnn_graph_destroy(&g);
        return st;
    }
    if (!g->rng_used) cnn_tensor_free(&g->rng_state);
    cnn_cuda_graphs_alive(ctx, +1);
    g->counted = true;
    *out = g;
    return CNN_OK;
}

cnn_status cnn_graph_replay(cnn_graph *g)
{
    CNN_CHECK(g, CNN_ERR_INVALID_ARG, "graph_replay: graph is NULL");
    CNN_CHECK(!cnn_cuda_capturing(g->ctx), CNN_ERR_UNSUPPORTED,
              "graph_replay: inside a capture on the same context; replay it after the capture");
    cudaStream_t stream;
    CNN_TRY(cnn_cuda_enter(g->ctx, "graph_replay", &stream));
    /* The hooks queue their work (an optimizer's learning rate) on the current context's
     * stream: make it the graph's for the call. */
    cnn_context *prev = cnn_context_current();
    cnn_context_set_current(g->ctx);
    cnn_status st = CNN_OK;
    /* The random ops draw what they would draw run one by one from here (the stream advances
     * once the launch is queued). */
    if (g->rng_state)
        st = cnn_cuda_store_u64x2(g->ctx, (uint64_t *)cnn_ptr(g->rng_state), g->ctx->rng_seed,
                                  g->ctx->rng_offset);
    for (replay_hook *h = g->hooks; h && st == CNN_OK; h = h->next) st = h->fn(h->ud, false);
    if (st == CNN_OK) {
        cudaError_t e = cudaGraphLaunch(g->exec, stream);
        if (e != cudaSuccess) {
            (void)cudaGetLastError();
            st = cnn_error(cnn_cuda_status_of(e), "graph_replay: cudaGraphLaunch failed: %s",
                           cudaGetErrorString(e));
        }
    }
    if (st == CNN_OK) g->ctx->rng_offset += g->rng_counters;
    for (replay_hook *h = g->hooks; h && st == CNN_OK; h = h->next) st = h->fn(h->ud, true);
    if (st == CNN_OK && g->arms_bad_label) {
        int64_t k = g->bad_label_k;
        (void)cnn_cuda_bad_label_exchange(g->ctx, true, &k);
    }
    cnn_context_set_current(prev);
    return st;
}
