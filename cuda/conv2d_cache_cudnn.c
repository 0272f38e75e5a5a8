/* conv2d_cache_cudnn.c — the algorithm each cuDNN convolution call chose, kept per context under
 * a key of everything the choice depends on (conv2d_cudnn.c searches, then keeps its result
 * here), and the names of cuDNN's algorithms. Built only with CUDNN=1; it never prints. */
#include "cuda_check.h"

#include <pthread.h>

/* cuDNN 9 marks its v7-style convolution API deprecated (see conv2d_cudnn.c); its algorithm
 * counts are used here. */
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

/* One context's cache, in a process-wide list keyed by the context's address (entries carry the
 * device too); a context's cache is freed when the context is (cnn_cudnn_conv2d_cache_release,
 * from cuda/device.c), so no later context at the same address inherits it. */
typedef struct ctx_cache {
    const cnn_context *ctx;
    cnn_conv_algo_entry *entries;
    size_t n_entries;
    uint64_t searches;
    struct ctx_cache *next;
} ctx_cache;

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static ctx_cache *caches;

/* Called with cache_lock held. */
static ctx_cache *cache_of(const cnn_context *ctx, bool create)
{
    for (ctx_cache *c = caches; c; c = c->next)
        if (c->ctx == ctx) return c;
    if (!create) return NULL;
    ctx_cache *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->ctx = ctx;
    c->next = caches;
    caches = c;
    return c;
}

bool cnn_conv_algo_cache_find(const cnn_context *ctx, const cnn_conv_algo_key *key,
                              cnn_conv_algo_entry *out)
{
    bool found = false;
    pthread_mutex_lock(&cache_lock);
    ctx_cache *c = cache_of(ctx, false);
    for (cnn_conv_algo_entry *e = c ? c->entries : NULL; e && !found; e = e->next)
        if (memcmp(&e->key, key, sizeof *key) == 0) {
            *out = *e;
            found = true;
        }
    pthread_mutex_unlock(&cache_lock);
    return found;
}

bool cnn_conv_algo_cache_put(const cnn_context *ctx, const cnn_conv_algo_entry *val)
{
    bool kept = false;
    pthread_mutex_lock(&cache_lock);
    ctx_cache *c = cache_of(ctx, true);
    if (c) {
        c->searches++;
        cnn_conv_algo_entry *e = malloc(sizeof *e);
        if (e) {
            *e = *val;
            e->next = c->entries;
            c->entries = e;
            c->n_entries++;
            kept = true;
        }
    }
    pthread_mutex_unlock(&cache_lock);
    return kept;
}

void cnn_cudnn_conv2d_cache_stats(const cnn_context *ctx, size_t *entries, uint64_t *searches)
{
    pthread_mutex_lock(&cache_lock);
    ctx_cache *c = cache_of(ctx, false);
    if (entries) *entries = c ? c->n_entries : 0;
    if (searches) *searches = c ? c->searches : 0;
    pthread_mutex_unlock(&cache_lock);
}

void cnn_cudnn_conv2d_cache_release(const cnn_context *ctx)
{
    pthread_mutex_lock(&cache_lock);
    for (ctx_cache **pc = &caches; *pc; pc = &(*pc)->next) {
        ctx_cache *c = *pc;
        if (c->ctx != ctx) continue;
        *pc = c->next;
        for (cnn_conv_algo_entry *e = c->entries, *nx; e; e = nx) {
            nx = e->next;
            cnn_cudnn_plan_free(e->plan);
            free(e);
        }
        free(c);
        break;
    }
    pthread_mutex_unlock(&cache_lock);
}

const char *cnn_conv_algo_name(int dir, int algo)
{
    static const char *const fwd[] = {"IMPLICIT_GEMM", "IMPLICIT_PRECOMP_GEMM", "GEMM", "DIRECT",
                                      "FFT", "FFT_TILING", "WINOGRAD", "WINOGRAD_NONFUSED"};
    static const char *const data[] = {"ALGO_0", "ALGO_1", "FFT", "FFT_TILING", "WINOGRAD",
                                       "WINOGRAD_NONFUSED"};
    static const char *const filter[] = {"ALGO_0", "ALGO_1", "FFT", "ALGO_3", "WINOGRAD",
                                         "WINOGRAD_NONFUSED", "FFT_TILING"};
    _Static_assert(sizeof fwd / sizeof *fwd == CUDNN_CONVOLUTION_FWD_ALGO_COUNT, "forward names");
    _Static_assert(sizeof data / sizeof *data == CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT,
                   "backward-data names");
    _Static_assert(sizeof filter / sizeof *filter == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT,
                   "backward-filter names");
    if (algo == CNN_CONV_ALGO_GEMM) return "CUBLAS_GEMM";
    const char *const *names = dir == 0 ? fwd : dir == 1 ? data : filter;
    const int count = dir == 0   ? CUDNN_CONVOLUTION_FWD_ALGO_COUNT
                      : dir == 1 ? CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT
                                 : CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT;
    return algo >= 0 && algo < count ? names[algo] : "UNKNOWN";
}
