/* allocator.c — the caching allocator for device memory (copies are memcpy.c's).
 * Blocks are rounded up (512 B small, 2 MiB large), kept per device after release and reused
 * best-fit by the stream that allocated them, so a steady training step calls neither cudaMalloc
 * nor cudaFree. A large request served from a larger free block takes its front and leaves the
 * rest free (a split); released neighbours of one cudaMalloc'd segment merge again, so memory
 * freed by one layer's big tensors serves the next layer's differently sized ones, and the
 * allocated bytes are the rounded requests, as PyTorch's allocator counts them. A block handed to a
 * second stream (cnn_cuda_record_stream: the data loader's copy stream fills batches the compute
 * stream reads; or released under another context than the one that allocated it) is reused
 * only after that stream's work at release time is done. While a CUDA graph is captured
 * (cuda/graph.c), the capturing stream's allocations come from a pool of the graph's own that
 * nothing else may reuse until the graph is destroyed, since every replay writes the same
 * addresses. It owns memory only: no kernels, no printing. The free lists themselves (best
 * fit, splits, merges) are allocator_blocks.c's. */
#include "allocator_blocks.h"

#include <pthread.h>

/* The library's one piece of process-wide state, and why: device memory belongs to the process,
 * not to a context; a tensor may outlive the context that allocated it and be released from any
 * thread. So each device's cache lives here, created on first use, all behind one mutex. */
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_waited = PTHREAD_COND_INITIALIZER; /* some device_waits fell */
static int g_all_waits; /* threads waiting for every device (cnn_cuda_all_devices_wait_begin) */
static dev_cache **g_devs; /* g_ndev entries, each NULL until that device's first allocation */
static int g_ndev;

/* The cache of a device, created on first use; NULL (with a message) for a device that does not
 * exist or when host memory runs out. */
static dev_cache *get_dev(int device, const char *op, cnn_status *st)
{
    if (!g_devs) {
        int n = cnn_cuda_count_devices();
        g_devs = n > 0 ? calloc((size_t)n, sizeof *g_devs) : NULL;
        if (!g_devs) {
            *st = n > 0 ? cnn_error(CNN_ERR_OUT_OF_MEMORY, "%s: out of host memory", op)
                        : cnn_error(CNN_ERR_DEVICE, "%s: no CUDA device is available", op);
            return NULL;
        }
        g_ndev = n;
    }
    if (device < 0 || device >= g_ndev) {
        *st = cnn_error(CNN_ERR_DEVICE, "%s: cuda:%d requested but %d device(s) are present", op,
                        device, g_ndev);
        return NULL;
    }
    if (!g_devs[device]) {
        g_devs[device] = calloc(1, sizeof **g_devs);
        if (!g_devs[device]) {
            *st = cnn_error(CNN_ERR_OUT_OF_MEMORY, "%s: out of host memory", op);
            return NULL;
        }
        g_devs[device]->device = device;
    }
    return g_devs[device];
}


/* ---- waiting for a whole device ----------------------------------------------------------------
 * CUDA forbids waiting for a device one of whose streams is being captured (it breaks the
 * capture, whichever thread waits), and a capturing thread may wait for no device at all. So a
 * wait for cuda:device (cudaDeviceSynchronize, cudaFree) is bracketed by device_wait_begin,
 * which refuses it with CNN_ERR_UNSUPPORTED in those cases (caller holds g_lock), and
 * cnn_cuda_device_wait_end; in between, no capture can begin there (cnn_cuda_pool_begin waits). */
static cnn_status device_wait_begin(dev_cache *dc, int device, const char *op, const char *what)
{
    if (cnn_cuda_thread_capturing())
        return cnn_error(CNN_ERR_UNSUPPORTED, "%s: inside a graph capture, %s (it would wait for "
                         "the device, which breaks the capture)", op, what);
    if (dc && dc->capture_pool)
        return cnn_error(CNN_ERR_UNSUPPORTED, "%s: a CUDA graph is being captured on cuda:%d, so "
                         "%s (it would wait for the device, which breaks the capture)", op, device,
                         what);
    if (dc) dc->device_waits++;
    return CNN_OK;
}

static void device_wait_end_locked(dev_cache *dc)
{
    if (!dc) return;
    dc->device_waits--;
    pthread_cond_broadcast(&g_waited);
}

bool cnn_cuda_all_devices_wait_begin(void)
{
    if (cnn_cuda_thread_capturing()) return false;
    pthread_mutex_lock(&g_lock);
    bool any = false;
    for (int d = 0; g_devs && d < g_ndev && !any; d++) any = g_devs[d] && g_devs[d]->capture_pool;
    if (!any) g_all_waits++;
    pthread_mutex_unlock(&g_lock);
    return !any;
}

void cnn_cuda_all_devices_wait_end(void)
{
    pthread_mutex_lock(&g_lock);
    g_all_waits--;
    pthread_cond_broadcast(&g_waited);
    pthread_mutex_unlock(&g_lock);
}

cnn_status cnn_cuda_device_wait_begin(int device, const char *op, const char *what)
{
    cnn_status st = CNN_OK;
    pthread_mutex_lock(&g_lock);
    dev_cache *dc = get_dev(device, op, &st);
    if (dc) st = device_wait_begin(dc, device, op, what);
    pthread_mutex_unlock(&g_lock);
    return st;
}

void cnn_cuda_device_wait_end(int device)
{
    pthread_mutex_lock(&g_lock);
    device_wait_end_locked((g_devs && device >= 0 && device < g_ndev) ? g_devs[device] : NULL);
    pthread_mutex_unlock(&g_lock);
}

/* ---- giving memory back to CUDA ------------------------------------------------------------- */
/* A free block cudaFree can take: a whole cudaMalloc'd segment of the general cache (a graph's
 * memory stays). */
static bool whole_free_segment(const block *b)
{
    return !(b->seg_prev || b->seg_next || b->pool);
}

/* Frees every cached segment of one device (a free block that is a whole cudaMalloc'd segment;
 * the free parts of a segment a live tensor still uses stay), after waiting for the device: a
 * cached block may still be read by work queued before its tensor was released, and a block a
 * second stream used merges with its free neighbours only once that stream's work is done
 * (cnn_cache_coalesce after the wait). Leaves the current device as it was.
 * CNN_ERR_UNSUPPORTED, nothing freed, where the wait is refused (device_wait_begin). */
static cnn_status free_cached(int device, const char *op)
{
    pthread_mutex_lock(&g_lock);
    dev_cache *dc = (g_devs && device >= 0 && device < g_ndev) ? g_devs[device] : NULL;
    if (dc) cnn_cache_coalesce(dc);
    bool any = false;
    for (block *b = dc ? dc->free_list : NULL; b && !any; b = b->next)
        any = whole_free_segment(b) || (b->pending && !b->pool);
    cnn_status wst = any ? device_wait_begin(dc, device, op, "its cached memory stays") : CNN_OK;
    pthread_mutex_unlock(&g_lock);
    if (wst != CNN_OK || !any) return wst;

    cnn_status st = CNN_OK;
    int prev_device = -1;
    uint64_t n_freed = 0;
    (void)cudaGetDevice(&prev_device);
    cudaError_t e = cudaSetDevice(device);
    if (e == cudaSuccess) e = cudaDeviceSynchronize();
    if (e != cudaSuccess)
        st = cnn_error(CNN_ERR_CUDA, "%s: waiting for cuda:%d failed: %s", op, device,
                       cudaGetErrorString(e));
    /* Taken after the wait, so every block taken was released before it: none is still used.
     * One released since is still pending, and stays. */
    pthread_mutex_lock(&g_lock);
    if (st == CNN_OK) cnn_cache_coalesce(dc);
    block *list = NULL;
    for (block *b = st == CNN_OK ? dc->free_list : NULL, *next; b; b = next) {
        next = b->next;
        if (!whole_free_segment(b) || b->pending) continue;
        cnn_block_list_remove(&dc->free_list, b);
        dc->stats.reserved_bytes -= b->size;
        cnn_block_list_push(&list, b);
    }
    pthread_mutex_unlock(&g_lock);
    while (list) {
        block *b = list;
        list = b->next;
        e = cudaFree(b->ptr);
        if (e != cudaSuccess && st == CNN_OK)
            st = cnn_error(CNN_ERR_CUDA, "%s: cudaFree of %zu bytes on cuda:%d failed: %s", op,
                           b->size, device, cudaGetErrorString(e));
        n_freed++;
        if (b->ready) (void)cudaEventDestroy(b->ready);
        free(b);
    }
    if (prev_device >= 0) (void)cudaSetDevice(prev_device);
    pthread_mutex_lock(&g_lock);
    dc->stats.n_cuda_free += n_freed;
    device_wait_end_locked(dc);
    pthread_mutex_unlock(&g_lock);
    return st;
}

cnn_status cnn_cuda_release_cached(int device, const char *op) { return free_cached(device, op); }

void cnn_cuda_allocator_forget_stream(int device, cudaStream_t stream)
{
    pthread_mutex_lock(&g_lock);
    dev_cache *dc = (g_devs && device >= 0 && device < g_ndev) ? g_devs[device] : NULL;
    if (dc) {
        /* Held blocks too: a graph's destruction returns them to the cache long after. */
        block *const lists[3] = {dc->free_list, dc->live, dc->held};
        for (int l = 0; l < 3; l++)
            for (block *b = lists[l]; b; b = b->next) {
                if (b->stream == stream) b->stream = NULL;
                if (b->use_stream == stream) b->use_stream = NULL; /* drained before destruction */
            }
    }
    pthread_mutex_unlock(&g_lock);
}

/* ---- storage allocation and release ---------------------------------------------------------- */

/* A block released under a context whose stream is not the one that allocated it: a tensor
 * handed over to that context, which used it there. Its work so far must be done before the
 * block is reused, as for a stream named by record_stream (cnn_cache_return records the event).
 * A third stream, where one is named already, is waited for here. */
static void note_releasing_stream(block *b, cudaStream_t rs)
{
    if (!rs || rs == b->stream || rs == b->use_stream) return;
    if (!b->use_stream) {
        b->use_stream = rs;
    } else if (cudaStreamSynchronize(rs) != cudaSuccess) {
        (void)cudaGetLastError();
    }
}

/* Called from any thread when a storage's last reference goes: the block goes back to the
 * cache, reusable at once by its stream (later work there is ordered after earlier work), or,
 * if another stream used it (record_stream, or the releasing context's), once the work queued
 * there so far is done. During a capture a block of another pool is held instead (see
 * `held_by`). */
static void block_release(cnn_storage *s)
{
    block *b = s->allocator;
    if (!b) return;
    pthread_mutex_lock(&g_lock);
    dev_cache *dc = b->dev;
    cnn_block_list_remove(&dc->live, b);
    dc->stats.allocated_bytes -= b->size;
    const cnn_context *ctx = cnn_ctx_if_set();
    cudaStream_t rs = ctx && ctx->gpu ? cnn_cuda_stream_of(ctx) : NULL;
    if (rs && ctx->device.index != dc->device) {
        /* Released under a context of another device (a peer copy read it there): an event of
         * the block's device cannot be recorded on that stream, so its work is waited for now
         * (not by a capturing thread, which may not wait: runtime.h says so). */
        if (!cnn_cuda_thread_capturing() && cudaStreamSynchronize(rs) != cudaSuccess)
            (void)cudaGetLastError();
        rs = NULL;
    }
    if (dc->capture_pool && b->pool != dc->capture_pool) {
        /* Held until the graph is destroyed; then returned after the releasing stream's work
         * (the capture's own stream is the graph's, which its destruction waits for). */
        if (rs != dc->capture_stream) note_releasing_stream(b, rs);
        b->held_by = dc->capture_pool;
        cnn_block_list_push(&dc->held, b);
    } else {
        note_releasing_stream(b, rs);
        cnn_cache_return(b);
    }
    pthread_mutex_unlock(&g_lock);
    s->data = NULL;
    s->allocator = NULL;
}

/* cudaMalloc of `size` bytes; on out-of-memory, frees this device's cache and tries once more.
 * On a capturing thread (graph.c captures in thread-local mode, where cudaMalloc is refused),
 * for whichever context, the call is made in relaxed mode, as PyTorch's allocator does, and
 * there is no second try: freeing the cache waits for the device, which a capture forbids (so
 * does free_cached while another thread captures on the device). */
static cnn_status device_malloc(int device, size_t size, size_t bytes, const char *op,
                                bool capturing, void **p)
{
    cudaError_t e;
    if (capturing) {
        enum cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
        e = cudaThreadExchangeStreamCaptureMode(&mode);
        if (e == cudaSuccess) {
            e = cudaMalloc(p, size);
            (void)cudaThreadExchangeStreamCaptureMode(&mode);
        }
    } else {
        e = cudaMalloc(p, size);
    }
    if (e == cudaErrorMemoryAllocation && !capturing) {
        (void)cudaGetLastError();
        cnn_status st = free_cached(device, op);
        if (st == CNN_OK) e = cudaMalloc(p, size);
        else if (st != CNN_ERR_UNSUPPORTED) return st;
    }
    if (e == cudaErrorMemoryAllocation) {
        (void)cudaGetLastError();
        size_t free_b = 0, total_b = 0;
        (void)cudaMemGetInfo(&free_b, &total_b);
        (void)cudaGetLastError();
        return cnn_error(CNN_ERR_OUT_OF_MEMORY,
                         "%s: out of GPU memory on cuda:%d: %zu bytes requested, %zu of %zu bytes "
                         "free", op, device, bytes, free_b, total_b);
    }
    if (e != cudaSuccess) {
        (void)cudaGetLastError(); /* reported here, not by the next launch check */
        return cnn_error(CNN_ERR_CUDA, "%s: cudaMalloc of %zu bytes on cuda:%d failed: %s", op,
                         size, device, cudaGetErrorString(e));
    }
    return CNN_OK;
}

cnn_status cnn_cuda_storage_alloc(cnn_context *ctx, cnn_storage *s, size_t bytes, const char *op)
{
    cudaStream_t stream;
    CNN_TRY(cnn_cuda_enter(ctx, op, &stream));
    int device = ctx->device.index;
    CNN_CHECK(bytes <= SIZE_MAX - LARGE_ROUND, CNN_ERR_OUT_OF_MEMORY,
              "%s: %zu bytes requested on cuda:%d is beyond any device", op, bytes, device);
    size_t size = cnn_cache_round_size(bytes);

    cnn_status st = CNN_OK;
    pthread_mutex_lock(&g_lock);
    dev_cache *dc = get_dev(device, op, &st);
    /* The capturing stream allocates from its graph's pool; everything else from the cache. */
    int pool = dc && dc->capture_pool && stream == dc->capture_stream ? dc->capture_pool : 0;
    block *b = dc ? cnn_cache_take_free(dc, size, stream, pool) : NULL;
    if (b) {
        cnn_block_list_push(&dc->live, b);
        cnn_cache_note_allocated(dc, b->size);
    }
    pthread_mutex_unlock(&g_lock);
    if (!dc) return st;

    if (!b) {
        /* The record first: with it missing there is nothing to undo, where a cudaFree would
         * wait for the device (and break a capture on this thread). */
        b = calloc(1, sizeof *b);
        CNN_CHECK(b, CNN_ERR_OUT_OF_MEMORY, "%s: out of host memory", op);
        void *p = NULL;
        cnn_status ms = device_malloc(device, size, bytes, op,
                                      pool != 0 || cnn_cuda_thread_capturing(), &p);
        if (ms != CNN_OK) {
            free(b);
            return ms;
        }
        b->ptr = p;
        b->size = size;
        b->stream = stream;
        b->pool = pool;
        b->dev = dc;
        pthread_mutex_lock(&g_lock);
        cnn_block_list_push(&dc->live, b);
        dc->stats.reserved_bytes += size;
        dc->stats.n_cuda_malloc++;
        cnn_cache_note_allocated(dc, size);
        pthread_mutex_unlock(&g_lock);
    }
    s->data = b->ptr;
    s->release = block_release;
    s->allocator = b;
    return CNN_OK;
}

cnn_status cnn_cuda_record_stream(cnn_context *ctx, cnn_storage *s)
{
    cudaStream_t stream;
    CNN_TRY(cnn_cuda_enter(ctx, "record_stream", &stream));
    CNN_CHECK(s && s->release == block_release && s->allocator, CNN_ERR_INVALID_ARG,
              "record_stream: the storage is not device memory from the caching allocator");
    /* At release the block's use would be marked by an event recorded in the capture, which
     * the cache could then never query. */
    CNN_CHECK(!cnn_cuda_capturing(ctx) && !cnn_cuda_thread_capturing(), CNN_ERR_UNSUPPORTED,
              "record_stream: inside a graph capture; hand tensors over before capturing");
    block *b = s->allocator;
    cnn_status st = CNN_OK;
    pthread_mutex_lock(&g_lock);
    if (stream != b->stream && stream != b->use_stream) {
        if (b->use_stream)
            st = cnn_error(CNN_ERR_UNSUPPORTED,
                           "record_stream: a block of %zu bytes is already used by a second "
                           "stream; a third is not supported", b->size);
        else
            b->use_stream = stream;
    }
    pthread_mutex_unlock(&g_lock);
    return st;
}

cnn_status cnn_cuda_stream_handoff(cnn_context *from, cnn_context *to, cnn_tensor *const *ts,
                                   int n)
{
    cudaStream_t fs, tos;
    CNN_TRY(cnn_cuda_enter(from, "stream_handoff", &fs));
    CNN_TRY(cnn_cuda_enter(to, "stream_handoff", &tos));
    CNN_CHECK(from->device.index == to->device.index, CNN_ERR_DEVICE,
              "stream_handoff: from cuda:%d to cuda:%d", from->device.index, to->device.index);
    /* Into a capture, the wait would depend on work outside it; out of one, it would pull the
     * other stream's later work into the graph. CUDA refuses both. */
    CNN_CHECK(!cnn_cuda_capturing(from) && !cnn_cuda_capturing(to), CNN_ERR_UNSUPPORTED,
              "stream_handoff: %s context's stream is being captured into a graph; hand tensors "
              "over outside the capture", cnn_cuda_capturing(from) ? "the source" : "the target");
    for (int i = 0; i < n; i++) CNN_TRY(cnn_cuda_record_stream(to, ts[i]->storage));
    cudaEvent_t ev;
    CNN_CUDA_TRY(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
    cudaError_t e = cudaEventRecord(ev, fs);
    if (e == cudaSuccess) e = cudaStreamWaitEvent(tos, ev, 0);
    /* Destroying a recorded event is allowed: CUDA releases it once it completes. */
    (void)cudaEventDestroy(ev);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return cnn_error(cnn_cuda_status_of(e), "stream_handoff: ordering the streams failed: %s",
                         cudaGetErrorString(e));
    }
    return CNN_OK;
}

/* ---- public statistics ----------------------------------------------------------------------- */
cnn_status cnn_cuda_get_memory_stats(int device, cnn_cuda_memory_stats *out)
{
    CNN_CHECK(out, CNN_ERR_INVALID_ARG, "cuda_get_memory_stats: out is NULL");
    memset(out, 0, sizeof *out);
    int n = cnn_cuda_count_devices();
    CNN_CHECK(device >= 0 && device < n, CNN_ERR_DEVICE,
              "cuda_get_memory_stats: cuda:%d requested but %d device(s) are present", device, n);
    pthread_mutex_lock(&g_lock);
    dev_cache *dc = (g_devs && device < g_ndev) ? g_devs[device] : NULL;
    if (dc) {
        *out = dc->stats;
        out->cached_bytes = dc->stats.reserved_bytes - dc->stats.allocated_bytes;
        out->graph_bytes = 0;
        for (const block *b = dc->free_list; b; b = b->next)
            if (b->pool) out->graph_bytes += b->size;
        for (const block *b = dc->held; b; b = b->next) out->graph_bytes += b->size;
    }
    pthread_mutex_unlock(&g_lock);
    return CNN_OK;
}

void cnn_cuda_reset_peak_memory(int device)
{
    pthread_mutex_lock(&g_lock);
    dev_cache *dc = (g_devs && device >= 0 && device < g_ndev) ? g_devs[device] : NULL;
    if (dc) dc->stats.peak_allocated_bytes = dc->stats.allocated_bytes;
    pthread_mutex_unlock(&g_lock);
}

cnn_status cnn_cuda_empty_cache(void)
{
    pthread_mutex_lock(&g_lock);
    int n = g_devs ? g_ndev : 0;
    pthread_mutex_unlock(&g_lock);
    cnn_status first = CNN_OK;
    for (int d = 0; d < n; d++) {
        cnn_status st = free_cached(d, "empty_cache");
        if (first == CNN_OK) first = st;
    }
    cnn_cuda_pinned_empty_cache();
    return first;
}

/* ---- graph pools (cuda/graph.c) -------------------------------------------------------------- */
cnn_status cnn_cuda_pool_begin(int device, cudaStream_t stream, int *pool)
{
    cnn_status st = CNN_OK;
    pthread_mutex_lock(&g_lock);
    dev_cache *dc = get_dev(device, "graph_capture", &st);
    while (dc && (dc->device_waits || g_all_waits)) pthread_cond_wait(&g_waited, &g_lock);
    if (dc && dc->capture_pool)
        st = cnn_error(CNN_ERR_UNSUPPORTED, "graph_capture: another graph is being captured on "
                       "cuda:%d; one capture per device at a time", device);
    else if (dc) {
        dc->capture_pool = *pool = ++dc->last_pool;
        dc->capture_stream = stream;
    }
    pthread_mutex_unlock(&g_lock);
    return st;
}

void cnn_cuda_pool_end(int device)
{
    pthread_mutex_lock(&g_lock);
    dev_cache *dc = g_devs && device >= 0 && device < g_ndev ? g_devs[device] : NULL;
    if (dc) {
        dc->capture_pool = 0;
        dc->capture_stream = NULL;
    }
    pthread_mutex_unlock(&g_lock);
}

void cnn_cuda_pool_release(int device, int pool)
{
    pthread_mutex_lock(&g_lock);
    dev_cache *dc = g_devs && device >= 0 && device < g_ndev ? g_devs[device] : NULL;
    if (!dc || !pool) {
        pthread_mutex_unlock(&g_lock);
        return;
    }
    /* Retag first, so that held blocks merge with the pool's free neighbours they border. */
    for (block *b = dc->free_list; b; b = b->next)
        if (b->pool == pool) b->pool = 0;
    for (block *b = dc->live; b; b = b->next)
        if (b->pool == pool) b->pool = 0;
    for (block *b = dc->held; b; b = b->next)
        if (b->pool == pool) b->pool = 0;
    for (block *b = dc->held, *next; b; b = next) {
        next = b->next;
        if (b->held_by != pool) continue;
        /* A graph destroyed while another is captured on the device: its last replay was not
         * waited for, so the block stays held, now until that capture's graph goes. */
        if (dc->capture_pool) {
            b->held_by = dc->capture_pool;
            continue;
        }
        cnn_block_list_remove(&dc->held, b);
        b->held_by = 0;
        cnn_cache_return(b);
    }
    pthread_mutex_unlock(&g_lock);
}
