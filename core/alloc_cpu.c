/* alloc_cpu.c — the host caching allocator behind CPU tensor storage. Large buffers handed
 * back to the OS are page-faulted in again on the next allocation (hundreds of ms per 50 MB on
 * a VM), and a training step reallocates the same sizes every time, so blocks of 64 KiB and up
 * are kept on a free list and reused. The cache is process-wide (tensors are freed from any
 * thread), guarded by a mutex, and capped by CNN_CPU_CACHE_MB. Blocks never yet taken from
 * the cache again are kept only while they and the live bytes stay within twice the most ever
 * live at once: a loop whose sizes keep changing would otherwise fill the cap with blocks it
 * never takes again, while a loop repeating its sizes keeps every block once it has taken it
 * again. It never changes any value a tensor holds. It also counts the bytes live tensors hold
 * and their peak (cnn_cpu_memory_stats), cached blocks not. */
#include "internal.h"

#include <pthread.h>
#include <stdatomic.h>

#define SMALL_LIMIT (64u << 10)     /* below this, plain aligned_alloc/free */
#define GRANULE (4096u)

/* taken: the block was handed out from the cache at least once. A storage's allocator field
 * holds its block's size (a multiple of 64) plus 1 when taken (cnn_cpu_block_bytes). */
typedef struct { void *p; size_t bytes; bool taken; } cpu_block;

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static cpu_block *g_free;
/* g_cold: the bytes of cached blocks never taken; g_fresh: blocks of 64 KiB and up allocated
 * from the system (for tests) */
static size_t g_n, g_cap, g_cached, g_cold, g_fresh;
/* Counted apart from the lock: small blocks never take it. g_high is the peak that no reset
 * lowers. */
static atomic_size_t g_allocated, g_peak, g_high;

static void raise_to(atomic_size_t *peak, size_t now)
{
    size_t was = atomic_load(peak);
    while (now > was && !atomic_compare_exchange_weak(peak, &was, now)) {
    }
}

static void count_alloc(size_t bytes)
{
    size_t now = atomic_fetch_add(&g_allocated, bytes) + bytes;
    raise_to(&g_peak, now);
    raise_to(&g_high, now);
}

/* Read from the environment at first use; threads racing there compute and store the same
 * value (an atomic, so the race is defined). */
static size_t cache_limit(void)
{
    static atomic_size_t cached;
    size_t limit = atomic_load_explicit(&cached, memory_order_relaxed);
    if (!limit) {
        const char *v = getenv("CNN_CPU_CACHE_MB");
        limit = (v && *v) ? (size_t)strtoull(v, NULL, 10) << 20 : (size_t)4 << 30;
        if (!limit) limit = 1; /* "0" disables caching */
        atomic_store_explicit(&cached, limit, memory_order_relaxed);
    }
    return limit;
}

static void release_block(cnn_storage *s);

cnn_status cnn_cpu_storage_alloc(cnn_storage *s, size_t bytes, const char *what)
{
    size_t rounded =
        bytes < SMALL_LIMIT ? (bytes + 63) / 64 * 64 : (bytes + GRANULE - 1) / GRANULE * GRANULE;
    if (!rounded) rounded = 64;
    void *p = NULL;
    size_t got = rounded;
    bool taken = false;
    if (rounded >= SMALL_LIMIT) {
        /* Best fit among cached blocks no more than 25% larger than asked. */
        pthread_mutex_lock(&g_lock);
        size_t best = (size_t)-1;
        for (size_t i = 0; i < g_n; i++)
            if (g_free[i].bytes >= rounded && g_free[i].bytes <= rounded + rounded / 4 &&
                (best == (size_t)-1 || g_free[i].bytes < g_free[best].bytes))
                best = i;
        if (best != (size_t)-1) {
            p = g_free[best].p;
            got = g_free[best].bytes;
            g_cached -= got;
            if (!g_free[best].taken) g_cold -= got;
            taken = true;
            g_free[best] = g_free[--g_n];
        } else {
            g_fresh++;
        }
        pthread_mutex_unlock(&g_lock);
    }
    if (!p) p = aligned_alloc(64, rounded);
    if (!p) {
        cnn_cpu_empty_cache();
        p = aligned_alloc(64, rounded);
    }
    if (!p) return cnn_error(CNN_ERR_OUT_OF_MEMORY, "%s: out of host memory allocating %zu bytes",
                             what, bytes);
    s->data = p;
    s->allocator = (void *)(uintptr_t)(got | taken); /* what release frees and uncounts */
    s->release = release_block;
    count_alloc(got);
    return CNN_OK;
}

/* Drops the largest cached block (only_cold: of those never taken). False when there is none. */
static bool drop_largest(bool only_cold)
{
    size_t big = (size_t)-1;
    for (size_t i = 0; i < g_n; i++)
        if ((!only_cold || !g_free[i].taken) &&
            (big == (size_t)-1 || g_free[i].bytes > g_free[big].bytes))
            big = i;
    if (big == (size_t)-1) return false;
    free(g_free[big].p);
    g_cached -= g_free[big].bytes;
    if (!g_free[big].taken) g_cold -= g_free[big].bytes;
    g_free[big] = g_free[--g_n];
    return true;
}

static void release_block(cnn_storage *s)
{
    size_t bytes = cnn_cpu_block_bytes(s);
    bool taken = (uintptr_t)s->allocator & 1;
    atomic_fetch_sub(&g_allocated, bytes);
    if (bytes < SMALL_LIMIT || bytes > cache_limit()) {
        free(s->data);
        return;
    }
    pthread_mutex_lock(&g_lock);
    /* Make room under the cap by dropping the largest cached blocks first; a block never taken
     * goes in only beside never-taken ones and the live bytes within twice the high-water
     * mark. It was live, so with none cached it always fits there. */
    while (g_cached + bytes > cache_limit() && drop_largest(false)) {
    }
    if (!taken) {
        size_t room = 2 * atomic_load(&g_high) - atomic_load(&g_allocated);
        while (g_cold + bytes > room && drop_largest(true)) {
        }
    }
    if (g_n == g_cap) {
        size_t cap = g_cap ? 2 * g_cap : 64;
        cpu_block *nb = realloc(g_free, cap * sizeof *nb);
        if (!nb) {
            pthread_mutex_unlock(&g_lock);
            free(s->data);
            return;
        }
        g_free = nb;
        g_cap = cap;
    }
    g_free[g_n++] = (cpu_block){s->data, bytes, taken};
    g_cached += bytes;
    if (!taken) g_cold += bytes;
    pthread_mutex_unlock(&g_lock);
}

void cnn_cpu_empty_cache(void)
{
    pthread_mutex_lock(&g_lock);
    for (size_t i = 0; i < g_n; i++) free(g_free[i].p);
    g_n = 0;
    g_cached = g_cold = 0;
    pthread_mutex_unlock(&g_lock);
}

void cnn_cpu_cache_counts(size_t *cached, size_t *fresh)
{
    pthread_mutex_lock(&g_lock);
    *cached = g_cached;
    *fresh = g_fresh;
    pthread_mutex_unlock(&g_lock);
}

void cnn_cpu_memory_stats(size_t *allocated, size_t *peak, bool reset_peak)
{
    if (allocated) *allocated = atomic_load(&g_allocated);
    if (peak) *peak = atomic_load(&g_peak);
    if (reset_peak) atomic_store(&g_peak, atomic_load(&g_allocated));
}
