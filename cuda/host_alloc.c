/* host_alloc.c — page-locked ("pinned") host memory for CPU tensors that feed the GPU: a copy
 * from it to a device is a true asynchronous DMA, so the host can go on (and the copy can run
 * beside kernels of another stream). cudaHostAlloc is slow, so released blocks are cached; a
 * block an asynchronous copy still reads is reused only once that copy is done. Memory only. */
#include "cuda_check.h"

#include <pthread.h>

#define PIN_ROUND ((size_t)64 << 10)

typedef struct pinned_block {
    void *ptr;
    size_t size;
    /* Recorded after the latest copy that reads or writes the block; NULL until the first.
     * An event belongs to the device current when it was made (event_dev) and can be recorded
     * only on that device's streams. */
    cudaEvent_t last_use;
    int event_dev;
    cudaStream_t last_stream; /* where last_use was recorded */
    bool in_use; /* last_use was recorded and may not have completed */
    /* Guards the four fields above while the block is handed out: threads that copy from (views
     * of) one pinned tensor at once each record their use on the same block. */
    pthread_mutex_t use_lock;
    /* In g_free while cached, in g_live (which also links prev) while handed out. */
    struct pinned_block *prev, *next;
} pinned_block;

/* Process-wide like the device cache (allocator.c), for the same reason: a tensor may be freed
 * from any thread and outlive its context. */
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static pinned_block *g_free;
/* The blocks handed out: a copy from a pointer into one (cnn_tensor_write of a pinned tensor's
 * data) finds its block here. */
static pinned_block *g_live;

/* Whether a cached block is free to hand out: its last recorded copy has completed. */
static bool block_idle(pinned_block *b)
{
    if (!b->in_use) return true;
    cudaError_t e = cudaEventQuery(b->last_use);
    if (e == cudaSuccess) {
        b->in_use = false;
        return true;
    }
    (void)cudaGetLastError(); /* cudaErrorNotReady is an answer, not an error */
    return false;
}

static void pinned_release(cnn_storage *s)
{
    pinned_block *b = s->allocator;
    if (!b) return;
    pthread_mutex_lock(&g_lock);
    if (b->prev)
        b->prev->next = b->next;
    else
        g_live = b->next;
    if (b->next) b->next->prev = b->prev;
    b->prev = NULL;
    b->next = g_free;
    g_free = b;
    pthread_mutex_unlock(&g_lock);
    s->data = NULL;
    s->allocator = NULL;
}

cnn_status cnn_cuda_pinned_storage_alloc(cnn_storage *s, size_t bytes, const char *op)
{
    CNN_CHECK(cnn_cuda_count_devices() > 0, CNN_ERR_DEVICE,
              "%s: pinned host memory needs a CUDA device, and none is available", op);
    /* Both the cache's event queries and cudaHostAlloc are refused to a capturing thread. */
    CNN_CHECK(!cnn_cuda_thread_capturing(), CNN_ERR_UNSUPPORTED, "%s: pinned host memory "
              "inside a graph capture; make it before capturing", op);
    size_t size = (bytes + PIN_ROUND - 1) / PIN_ROUND * PIN_ROUND;
    if (!size) size = PIN_ROUND;

    /* Best fit among idle cached blocks no more than 25% larger than asked. */
    pinned_block *b = NULL, **at = NULL;
    pthread_mutex_lock(&g_lock);
    for (pinned_block **p = &g_free; *p; p = &(*p)->next) {
        pinned_block *c = *p;
        if (c->size < size || c->size > size + size / 4 || (b && c->size >= b->size)) continue;
        if (!block_idle(c)) continue;
        b = c;
        at = p;
    }
    if (b) *at = b->next;
    pthread_mutex_unlock(&g_lock);

    if (!b) {
        b = calloc(1, sizeof *b);
        if (!b) return cnn_error(CNN_ERR_OUT_OF_MEMORY, "%s: out of host memory", op);
        cudaError_t e = cudaHostAlloc(&b->ptr, size, cudaHostAllocPortable);
        if (e != cudaSuccess) {
            (void)cudaGetLastError();
            /* Idle cached blocks may be what stands in the way: give them back, try once more. */
            cnn_cuda_pinned_empty_cache();
            e = cudaHostAlloc(&b->ptr, size, cudaHostAllocPortable);
        }
        if (e != cudaSuccess) {
            (void)cudaGetLastError();
            free(b);
            return cnn_error(CNN_ERR_OUT_OF_MEMORY,
                             "%s: cannot allocate %zu bytes of pinned host memory: %s", op, bytes,
                             cudaGetErrorString(e));
        }
        b->size = size;
        pthread_mutex_init(&b->use_lock, NULL);
    }
    pthread_mutex_lock(&g_lock);
    b->prev = NULL;
    b->next = g_live;
    if (g_live) g_live->prev = b;
    g_live = b;
    pthread_mutex_unlock(&g_lock);
    s->data = b->ptr;
    s->release = pinned_release;
    s->allocator = b;
    return CNN_OK;
}

bool cnn_cuda_storage_is_pinned(const cnn_storage *s) { return s && s->release == pinned_release; }

/* Called with b->use_lock held. */
static cnn_status record_use(pinned_block *b, int dev, cudaStream_t stream)
{
    if (b->last_use && b->event_dev != dev) {
        /* Used from another GPU before: let that use finish, then an event of this GPU. */
        CNN_CUDA_TRY(cudaEventSynchronize(b->last_use));
        (void)cudaEventDestroy(b->last_use);
        b->last_use = NULL;
        b->in_use = false;
    }
    if (!b->last_use) {
        CNN_CUDA_TRY(cudaEventCreateWithFlags(&b->last_use, cudaEventDisableTiming));
        b->event_dev = dev;
    }
    /* One event covers every use: a use on another stream first waits for the last one, so
     * the new record completes only after both. */
    if (b->in_use && b->last_stream != stream)
        CNN_CUDA_TRY(cudaStreamWaitEvent(stream, b->last_use, 0));
    CNN_CUDA_TRY(cudaEventRecord(b->last_use, stream));
    b->last_stream = stream;
    b->in_use = true;
    return CNN_OK;
}

cnn_status cnn_cuda_pinned_record_use(cnn_context *ctx, cnn_storage *s)
{
    /* Under a CPU context cnn_cuda_memcpy copied synchronously: nothing is left running. */
    if (!cnn_cuda_storage_is_pinned(s) || !s->allocator || !ctx || !ctx->gpu) return CNN_OK;
    cudaStream_t stream;
    CNN_TRY(cnn_cuda_enter(ctx, "pinned_record_use", &stream));
    pinned_block *b = s->allocator;
    pthread_mutex_lock(&b->use_lock);
    cnn_status st = record_use(b, ctx->device.index, stream);
    pthread_mutex_unlock(&b->use_lock);
    return st;
}

cnn_status cnn_cuda_pinned_record_use_at(cnn_context *ctx, const void *p)
{
    if (!ctx || !ctx->gpu || !p) return CNN_OK;
    cudaStream_t stream;
    CNN_TRY(cnn_cuda_enter(ctx, "pinned_record_use", &stream));
    pthread_mutex_lock(&g_lock);
    pinned_block *b = g_live;
    while (b && !((const char *)p >= (const char *)b->ptr &&
                  (const char *)p < (const char *)b->ptr + b->size))
        b = b->next;
    /* Locked before g_lock is let go: the block cannot be released, and reused, in between. */
    if (b) pthread_mutex_lock(&b->use_lock);
    pthread_mutex_unlock(&g_lock);
    if (!b) return CNN_OK;
    cnn_status st = record_use(b, ctx->device.index, stream);
    pthread_mutex_unlock(&b->use_lock);
    return st;
}

cnn_status cnn_cuda_pinned_wait(const cnn_storage *s)
{
    if (!cnn_cuda_storage_is_pinned(s) || !s->allocator) return CNN_OK;
    CNN_CHECK(!cnn_cuda_thread_capturing(), CNN_ERR_UNSUPPORTED, "pinned_wait: waiting for a "
              "copy inside a graph capture");
    pinned_block *b = s->allocator;
    pthread_mutex_lock(&b->use_lock);
    cudaError_t event_sync = b->in_use ? cudaEventSynchronize(b->last_use) : cudaSuccess;
    pthread_mutex_unlock(&b->use_lock);
    CNN_CUDA_TRY(event_sync);
    return CNN_OK;
}

void cnn_cuda_pinned_empty_cache(void)
{
    /* cudaFreeHost may wait for the devices, which breaks a capture under way on any of them,
     * whichever thread waits (and a capturing thread may not even query events): nothing is
     * freed while one is, and none begins until the frees are done. */
    if (!cnn_cuda_all_devices_wait_begin()) return;
    pthread_mutex_lock(&g_lock);
    pinned_block *keep = NULL, *b = g_free;
    while (b) {
        pinned_block *next = b->next;
        if (block_idle(b)) {
            if (b->last_use) (void)cudaEventDestroy(b->last_use);
            (void)cudaFreeHost(b->ptr);
            pthread_mutex_destroy(&b->use_lock);
            free(b);
        } else {
            b->next = keep;
            keep = b;
        }
        b = next;
    }
    g_free = keep;
    (void)cudaGetLastError();
    pthread_mutex_unlock(&g_lock);
    cnn_cuda_all_devices_wait_end();
}
