/* test_cuda_caches.c — the device and pinned caches beyond test_cuda_allocator.c: rounding,
 * splits and merges at their edges, no reuse or merge across streams or with a block a second
 * stream may still use (and no event query about one on a capturing thread), the retry after a
 * failed cudaMalloc, graph pools and replays, pinned best fit. */
#include "gradcheck.h"
#include "internal.h"

#include <string.h>

#if CNN_WITH_CUDA
#include "../cuda/cuda_api.h"
#endif

#define KIB ((size_t)1 << 10)

/* Such a segment, made and released: cached whole, the current stream's. Its size, or 0. */
static size_t cache_one_segment(size_t at_least)
{
    size_t seg = gpu_fresh_segment(at_least);
    cnn_tensor *t = gpu_bytes(seg);
    if (!t) return 0;
    cnn_tensor_free(&t);
    return seg;
}

/* A whole segment of at least `at_least` bytes, cached and owned by no stream (its context is
 * gone). Returns its size (0 on failure). */
static size_t ownerless_segment(size_t at_least)
{
    cnn_context *home = cnn_context_current(), *gone = NULL;
    if (cnn_context_create(CNN_CUDA(0), &gone) != CNN_OK) return 0;
    cnn_context_set_current(gone);
    size_t seg = cache_one_segment(at_least);
    cnn_context_set_current(home);
    cnn_context_destroy(&gone);
    return seg;
}

/* Each request counts as its rounded size: 512 B steps up to 1 MiB (1 MiB itself included),
 * then 2 MiB steps. Ascending, so that no block cached by an earlier request can serve a later
 * one (a small request may take a cached block up to twice its size whole). Guards against a
 * rounding off by one at each boundary, and a small request served by a large block. */
GPU_TEST(cuda_allocator_counts_requests_rounded)
{
    static const struct {
        int64_t n;
        cnn_dtype dtype;
        size_t rounded;
    } cases[] = {
        {1, CNN_F32, 512},           {128, CNN_F32, 512},         {129, CNN_F32, 1024},
        {257, CNN_F16, 1024},        {262143, CNN_F32, MIB},      {262144, CNN_F32, MIB},
        {262145, CNN_F32, 2 * MIB},  {524288, CNN_F32, 2 * MIB},  {524289, CNN_F32, 4 * MIB},
    };
    CHECK_OK(cnn_cuda_empty_cache());
    if (gpu_memory_stats().cached_bytes != 0) {
        cnn_test_skip("a live tensor keeps free memory cached that could serve these requests");
        return;
    }
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        cnn_cuda_memory_stats a = gpu_memory_stats();
        cnn_tensor *t = NULL;
        CHECK_OK(cnn_tensor_empty(CNN_SHAPE(cases[i].n), cases[i].dtype, CNN_CUDA(0), &t));
        REQUIRE(t);
        size_t got = gpu_memory_stats().allocated_bytes - a.allocated_bytes;
        if (got != cases[i].rounded)
            cnn_test_fail(__FILE__, __LINE__, "%lld elements of dtype %d: %zu bytes allocated, "
                          "expected %zu", (long long)cases[i].n, (int)cases[i].dtype, got,
                          cases[i].rounded);
        cnn_tensor_free(&t);
    }
    /* A small request takes no cached block more than twice its size: not the 4 MiB one the
     * last request left, which would count (and hold) 4 MiB for 4 bytes. */
    CHECK_OK(cnn_cuda_empty_cache());
    cnn_tensor *big = gpu_bytes(4 * MIB), *t = NULL;
    REQUIRE(big);
    cnn_tensor_free(&big);
    cnn_cuda_memory_stats a = gpu_memory_stats();
    t = gpu_bytes(sizeof(float));
    REQUIRE(t);
    CHECK(gpu_memory_stats().allocated_bytes == a.allocated_bytes + 512);
    cnn_tensor_free(&t);
    CHECK_OK(cnn_cuda_empty_cache());
}

/* A large request that leaves exactly 2 MiB of its block is cut there: it counts its own size,
 * and the 2 MiB left serve the next 2 MiB request without a cudaMalloc. */
GPU_TEST(cuda_allocator_splits_off_a_rest_of_exactly_2_mib)
{
    const size_t seg = cache_one_segment(16 * MIB);
    REQUIRE(seg);
    cnn_tensor *b = NULL, *c = NULL;
    cnn_cuda_memory_stats s1 = gpu_memory_stats();
    b = gpu_bytes(seg - 2 * MIB);
    REQUIRE(b);
    cnn_cuda_memory_stats s2 = gpu_memory_stats();
    CHECK(s2.allocated_bytes == s1.allocated_bytes + seg - 2 * MIB);
    c = gpu_bytes(2 * MIB);
    REQUIRE(c);
    cnn_cuda_memory_stats s3 = gpu_memory_stats();
    CHECK(s3.n_cuda_malloc == s1.n_cuda_malloc);
    CHECK(s3.reserved_bytes == s1.reserved_bytes);
    free_tensors(&b, &c);
    CHECK_OK(cnn_cuda_empty_cache());
}

/* A free block between a live one and the segment's end is cut again: the new rest lies between
 * the part taken and the live block, and must be linked so. Once everything is released the
 * segment is whole again: it serves a request of its full size without a cudaMalloc. */
GPU_TEST(cuda_allocator_split_in_the_middle_of_a_segment_merges_back)
{
    const size_t seg = cache_one_segment(64 * MIB);
    REQUIRE(seg);
    cnn_tensor *t = NULL;
    cnn_cuda_memory_stats s1 = gpu_memory_stats();
    cnn_tensor *a = gpu_bytes(20 * MIB), *b = gpu_bytes(10 * MIB); /* a | b | free rest */
    REQUIRE(a && b);
    cnn_tensor_free(&a);        /* free 20 MiB | b | free rest */
    a = gpu_bytes(10 * MIB);    /* a | free 10 MiB | b | free rest: the 20 MiB block cut */
    REQUIRE(a);
    free_tensors(&b, &a);
    t = gpu_bytes(seg);
    REQUIRE(t);
    CHECK(gpu_memory_stats().n_cuda_malloc == s1.n_cuda_malloc);
    cnn_tensor_free(&t);
    CHECK_OK(cnn_cuda_empty_cache());
}

/* A segment left by a destroyed context belongs to no stream; a part cut from it by one
 * context leaves a rest that still belongs to none, so another context's stream takes it
 * rather than calling cudaMalloc. */
GPU_TEST(cuda_allocator_rest_of_an_ownerless_segment_serves_any_stream)
{
    cnn_context *home = cnn_context_current(), *b = NULL;
    REQUIRE(cnn_context_create(CNN_CUDA(0), &b) == CNN_OK);
    REQUIRE(ownerless_segment(64 * MIB));
    cnn_context_set_current(b);
    cnn_tensor *t = gpu_bytes(20 * MIB), *u = NULL;
    cnn_context_set_current(home);
    REQUIRE(t);
    cnn_cuda_memory_stats s1 = gpu_memory_stats();
    u = gpu_bytes(20 * MIB); /* home's stream: from the rest of the segment */
    REQUIRE(u);
    CHECK(gpu_memory_stats().n_cuda_malloc == s1.n_cuda_malloc);
    free_tensors(&t, &u);
    cnn_context_destroy(&b);
    CHECK_OK(cnn_cuda_empty_cache());
}

/* A cudaMalloc that fails for want of memory gives the cached segments back to CUDA and then
 * tries once more: the request succeeds and the cached segment was freed before the retry.
 * The emulator fails the next cudaMalloc on request (CNN_EMU_FAIL_MALLOC=once). */
GPU_TEST(cuda_allocator_gives_the_cache_back_and_retries_a_failed_cudamalloc)
{
    if (!emulated_gpu()) {
        cnn_test_skip("needs the CUDA emulator's CNN_EMU_FAIL_MALLOC");
        return;
    }
    const size_t seg = cache_one_segment(16 * MIB);
    REQUIRE(seg);
    cnn_cuda_memory_stats a = gpu_memory_stats();
    setenv("CNN_EMU_FAIL_MALLOC", "once", 1);
    cnn_tensor *u = gpu_bytes(seg + 2 * MIB); /* fits no cached block */
    const char *left = getenv("CNN_EMU_FAIL_MALLOC");
    const bool failed_once = left && !strcmp(left, "spent");
    unsetenv("CNN_EMU_FAIL_MALLOC");
    if (!u) cnn_test_fail(__FILE__, __LINE__, "no retry: %s", cnn_last_error());
    CHECK(failed_once);
    cnn_cuda_memory_stats b = gpu_memory_stats();
    CHECK(b.n_cuda_free == a.n_cuda_free + 1);
    CHECK(b.reserved_bytes == a.reserved_bytes + 2 * MIB);
    cnn_tensor_free(&u);
    CHECK_OK(cnn_cuda_empty_cache());
}

/* A block another context's stream released is not that of the current stream: work queued
 * there may still use it, so it is not reused here (a cudaMalloc instead), though it fits. */
GPU_TEST(cuda_allocator_keeps_a_block_to_the_stream_that_released_it)
{
    cnn_context *home = cnn_context_current(), *other = NULL;
    REQUIRE(cnn_context_create(CNN_CUDA(0), &other) == CNN_OK);
    cnn_context_set_current(other);
    const size_t seg = cache_one_segment(16 * MIB);
    cnn_context_set_current(home);
    REQUIRE(seg);
    cnn_cuda_memory_stats a = gpu_memory_stats();
    cnn_tensor *t = gpu_bytes(seg);
    REQUIRE(t);
    CHECK(gpu_memory_stats().n_cuda_malloc == a.n_cuda_malloc + 1);
    cnn_tensor_free(&t);
    cnn_context_destroy(&other);
    CHECK_OK(cnn_cuda_empty_cache());
}

/* Two parts of an ownerless segment taken by two streams: released, they do not merge (the
 * merged block would have one owner, which could reuse it under the other's work), so a
 * request that only both together could serve takes a cudaMalloc. */
GPU_TEST(cuda_allocator_merges_no_parts_of_two_streams)
{
    cnn_context *home = cnn_context_current(), *x = NULL, *y = NULL;
    REQUIRE(cnn_context_create(CNN_CUDA(0), &x) == CNN_OK);
    REQUIRE(cnn_context_create(CNN_CUDA(0), &y) == CNN_OK);
    const size_t seg = ownerless_segment(64 * MIB);
    REQUIRE(seg);
    cnn_context_set_current(x);
    cnn_tensor *a = gpu_bytes(20 * MIB), *b = NULL, *t = NULL;
    cnn_context_set_current(y);
    b = gpu_bytes(20 * MIB); /* a | b | free rest, owned by x, y and none */
    REQUIRE(a && b);
    cnn_tensor_free(&b); /* merges with the rest: y's */
    cnn_context_set_current(x);
    cnn_tensor_free(&a);
    cnn_cuda_memory_stats s = gpu_memory_stats();
    t = gpu_bytes(seg - 10 * MIB); /* more than any other free block */
    REQUIRE(t);
    CHECK(gpu_memory_stats().n_cuda_malloc == s.n_cuda_malloc + 1);
    cnn_tensor_free(&t);
    cnn_context_set_current(home);
    cnn_context_destroy(&x);
    cnn_context_destroy(&y);
    CHECK_OK(cnn_cuda_empty_cache());
}

/* An ownerless free block that absorbs a neighbour some stream owns becomes that stream's:
 * another stream may not take the merged block. Here k (made by a context since destroyed,
 * released under home) merges with home's free rest of the segment at the next empty_cache,
 * while a live part keeps the segment; a third context then cannot reuse it. */
GPU_TEST(cuda_allocator_ownerless_block_merged_with_an_owned_one_is_owned)
{
    cnn_context *home = cnn_context_current(), *maker = NULL, *z = NULL;
    REQUIRE(cnn_context_create(CNN_CUDA(0), &maker) == CNN_OK);
    REQUIRE(cnn_context_create(CNN_CUDA(0), &z) == CNN_OK);
    cnn_context_set_current(maker);
    const size_t seg = cache_one_segment(64 * MIB);
    cnn_tensor *a = gpu_bytes(20 * MIB), *k = gpu_bytes(10 * MIB), *h = NULL, *t = NULL;
    cnn_context_set_current(home);
    REQUIRE(seg && a && k);
    cnn_context_destroy(&maker); /* a, k and the free rest: no stream's */
    h = gpu_bytes(10 * MIB);     /* a | k | h | free rest: home's part */
    REQUIRE(h);
    free_tensors(&h, &k); /* h merges with the rest; k waits for home's work, apart */
    CHECK_OK(cnn_synchronize());
    CHECK_OK(cnn_cuda_empty_cache()); /* k merges with home's free block; a keeps the segment */
    cnn_context_set_current(z);
    cnn_cuda_memory_stats s = gpu_memory_stats();
    t = gpu_bytes(seg - 30 * MIB); /* only the merged block fits: home's */
    REQUIRE(t);
    CHECK(gpu_memory_stats().n_cuda_malloc == s.n_cuda_malloc + 1);
    cnn_tensor_free(&t);
    cnn_context_set_current(home);
    cnn_context_destroy(&z);
    cnn_tensor_free(&a);
    CHECK_OK(cnn_cuda_empty_cache());
}

#if CNN_WITH_CUDA
/* A block a second stream used (record_stream) is kept apart at release until that stream's
 * work is done; its free neighbour in the segment must not absorb it (nor be absorbed by it)
 * meanwhile, whichever of the two is released first, or the merged block would be reused at
 * once. The emulator keeps the second stream's event unfinished until that stream is waited
 * for (CNN_EMU_LAGGING_EVENTS); on a GPU it may finish at any time, so this needs it. */
GPU_TEST(cuda_allocator_merges_no_block_a_second_stream_may_still_use)
{
    if (!emulated_gpu()) {
        cnn_test_skip("needs the CUDA emulator's CNN_EMU_LAGGING_EVENTS");
        return;
    }
    cnn_context *home = cnn_context_current(), *other = NULL;
    REQUIRE(cnn_context_create(CNN_CUDA(0), &other) == CNN_OK);
    setenv("CNN_EMU_LAGGING_EVENTS", "1", 1);
    for (int used_first = 0; used_first < 2; used_first++) {
        /* b | a | c: the whole segment, c live throughout. (No REQUIRE: the variable must be
         * unset on the way out.) */
        const size_t seg = cache_one_segment(64 * MIB);
        cnn_tensor *b = seg ? gpu_bytes(10 * MIB) : NULL, *a = seg ? gpu_bytes(20 * MIB) : NULL;
        cnn_tensor *c = seg ? gpu_bytes(seg - 30 * MIB) : NULL, *t = NULL;
        if (!(a && b && c)) {
            cnn_test_fail(__FILE__, __LINE__, "cannot allocate the segment's parts");
            free_tensors(&a, &b, &c);
            break;
        }
        CHECK(cnn_cuda_record_stream(other, a->storage) == CNN_OK);
        if (used_first) free_tensors(&a, &b);
        else free_tensors(&b, &a);
        cnn_cuda_memory_stats s = gpu_memory_stats();
        t = gpu_bytes(30 * MIB); /* b and a together would fit, but a may still be in use */
        if (!t || gpu_memory_stats().n_cuda_malloc != s.n_cuda_malloc + 1)
            cnn_test_fail(__FILE__, __LINE__, "a block in use merged (released %s first)",
                          used_first ? "it" : "its neighbour");
        cnn_context_set_current(other);
        CHECK(cnn_synchronize() == CNN_OK);
        cnn_context_set_current(home);
        free_tensors(&t, &c);
    }
    unsetenv("CNN_EMU_LAGGING_EVENTS");
    cnn_context_destroy(&other);
    CHECK_OK(cnn_cuda_empty_cache());
}
#endif

static cnn_status fill_ones(void *ud) { return cnn_tensor_fill_((cnn_tensor *)ud, 1.0f); }

/* A capture first gives the cached memory back (the graph's pool would otherwise hold a second
 * copy of the step's peak), and a graph whose work draws no random numbers keeps no random
 * state: after it, only what the captured work itself holds stays allocated (here nothing). */
GPU_TEST(graph_capture_empties_the_cache_and_keeps_no_unused_random_state)
{
    cnn_tensor *x = NULL;
    CHECK_OK(cnn_tensor_empty(CNN_SHAPE(4), CNN_F32, CNN_CUDA(0), &x));
    REQUIRE(x);
    REQUIRE(cache_one_segment(16 * MIB));
    cnn_cuda_memory_stats a = gpu_memory_stats();
    cnn_graph *g = NULL;
    CHECK_OK(cnn_graph_capture(fill_ones, x, &g));
    cnn_cuda_memory_stats b = gpu_memory_stats();
    CHECK(b.n_cuda_free > a.n_cuda_free);
    CHECK(b.allocated_bytes == a.allocated_bytes);
    CHECK_OK(cnn_graph_replay(g));
    float back[4] = {0};
    CHECK_OK(cnn_tensor_read(x, back, 4));
    CHECK(back[0] == 1.0f && back[3] == 1.0f);
    cnn_graph_destroy(&g);
    cnn_tensor_free(&x);
}

typedef struct capture_elsewhere {
    cnn_tensor *x;       /* home's, filled by the captured work */
    cnn_context *other;  /* a context whose stream is not captured */
    cnn_tensor *made;    /* allocated under `other` during the capture */
} capture_elsewhere;

static cnn_status fill_and_allocate_elsewhere(void *ud)
{
    capture_elsewhere *c = ud;
    cnn_context *home = cnn_context_current();
    cnn_context_set_current(c->other);
    c->made = gpu_bytes(4 * MIB);
    cnn_context_set_current(home);
    return c->made ? fill_ones(c->x) : CNN_ERR_OUT_OF_MEMORY;
}

/* Only the capturing stream allocates from the graph's pool: a tensor another context makes
 * meanwhile (on the capturing thread) is general memory, and its release gives nothing to
 * the graph. */
GPU_TEST(graph_pool_serves_only_the_capturing_stream)
{
    capture_elsewhere c = {NULL, NULL, NULL};
    REQUIRE(cnn_context_create(CNN_CUDA(0), &c.other) == CNN_OK);
    CHECK_OK(cnn_tensor_empty(CNN_SHAPE(4), CNN_F32, CNN_CUDA(0), &c.x));
    REQUIRE(c.x);
    cnn_graph *g = NULL;
    CHECK_OK(cnn_graph_capture(fill_and_allocate_elsewhere, &c, &g));
    REQUIRE(c.made);
    size_t g0 = gpu_memory_stats().graph_bytes;
    cnn_tensor_free(&c.made);
    CHECK(gpu_memory_stats().graph_bytes == g0);
    cnn_graph_destroy(&g);
    cnn_tensor_free(&c.x);
    cnn_context_destroy(&c.other);
}

#if CNN_WITH_CUDA
/* The capturing thread may not ask whether a block's second-stream work is done (an event
 * query breaks its capture): to it such a block is still busy, and is passed over. Here the
 * allocation made for another context inside the capture meets one (kept unfinished by
 * CNN_EMU_LAGGING_EVENTS, its segment kept by a live neighbour), and the capture holds. */
GPU_TEST(cuda_allocator_asks_no_event_on_a_capturing_thread)
{
    if (!emulated_gpu()) {
        cnn_test_skip("needs the CUDA emulator's CNN_EMU_LAGGING_EVENTS");
        return;
    }
    cnn_context *home = cnn_context_current(), *third = NULL;
    capture_elsewhere j = {NULL, NULL, NULL};
    cnn_graph *g = NULL;
    REQUIRE(cnn_context_create(CNN_CUDA(0), &j.other) == CNN_OK);
    REQUIRE(cnn_context_create(CNN_CUDA(0), &third) == CNN_OK);
    CHECK_OK(cnn_tensor_zeros(CNN_SHAPE(16), CNN_CUDA(0), &j.x));
    cnn_context_set_current(j.other);
    const size_t seg = cache_one_segment(16 * MIB);
    cnn_tensor *a = seg ? gpu_bytes(4 * MIB) : NULL, *c = seg ? gpu_bytes(seg - 4 * MIB) : NULL;
    cnn_context_set_current(home);
    REQUIRE(j.x && a && c);
    CHECK_OK(cnn_cuda_record_stream(third, a->storage));
    setenv("CNN_EMU_LAGGING_EVENTS", "1", 1);
    cnn_context_set_current(j.other);
    cnn_tensor_free(&a); /* kept apart: third's work on it is not done */
    cnn_context_set_current(home);
    cnn_status st = cnn_graph_capture(fill_and_allocate_elsewhere, &j, &g);
    unsetenv("CNN_EMU_LAGGING_EVENTS");
    CHECK_OK(st);
    if (g) {
        float v[16] = {0};
        CHECK_OK(cnn_graph_replay(g));
        CHECK_OK(cnn_tensor_read(j.x, v, 16));
        CHECK(v[0] == 1.0f && v[15] == 1.0f);
    }
    cnn_graph_destroy(&g);
    free_tensors(&j.x, &j.made, &c);
    cnn_context_destroy(&third);
    cnn_context_destroy(&j.other);
    CHECK_OK(cnn_cuda_empty_cache());
}
#endif

static cnn_status destroy_in_capture(void *ud)
{
    cnn_graph_destroy((cnn_graph **)ud);
    return CNN_OK;
}

/* A block released during one capture is held for that graph. Destroyed while a second graph
 * is captured, the first graph's last replay was not waited for: the block stays held, now
 * for the second graph, and comes back to the cache only when that one goes. */
GPU_TEST(graph_destroyed_during_another_capture_keeps_its_held_block)
{
    const size_t g0 = gpu_memory_stats().graph_bytes;
    cnn_tensor *x = gpu_bytes(16 * MIB);
    REQUIRE(x);
    cnn_graph *g1 = NULL, *g2 = NULL;
    CHECK_OK(cnn_graph_capture(gpu_release_in_capture, &x, &g1));
    CHECK(gpu_memory_stats().graph_bytes >= g0 + 16 * MIB);
    CHECK_OK(cnn_graph_capture(destroy_in_capture, &g1, &g2));
    CHECK(g1 == NULL);
    CHECK(gpu_memory_stats().graph_bytes >= g0 + 16 * MIB); /* still held */
    cnn_graph_destroy(&g2);
    CHECK(gpu_memory_stats().graph_bytes == g0);
    cnn_graph_destroy(&g1); /* where the capture failed */
    cnn_tensor_free(&x);
}

static cnn_status replay_in_capture(void *ud) { return cnn_graph_replay((cnn_graph *)ud); }

/* A replay inside a capture on the graph's own context is refused before it reaches CUDA. */
GPU_TEST(graph_replay_inside_a_capture_is_refused)
{
    cnn_tensor *x = NULL;
    CHECK_OK(cnn_tensor_empty(CNN_SHAPE(4), CNN_F32, CNN_CUDA(0), &x));
    REQUIRE(x);
    cnn_graph *g = NULL, *outer = NULL;
    CHECK_OK(cnn_graph_capture(fill_ones, x, &g));
    CHECK_ERR(cnn_graph_capture(replay_in_capture, g, &outer), CNN_ERR_UNSUPPORTED);
    CHECK(outer == NULL && strstr(cnn_last_error(), "replay it after the capture"));
    cnn_graph_destroy(&outer);
    cnn_graph_destroy(&g);
    cnn_tensor_free(&x);
}

typedef struct ce_step {
    cnn_tensor *x, *y, *loss;
} ce_step;

static cnn_status cross_entropy_step(void *ud)
{
    ce_step *c = ud;
    return cnn_cross_entropy(c->x, c->y, 0.0f, &c->loss);
}

/* A replayed cross-entropy meeting a bad label reports it at the next wait, as the op run by
 * itself does: each replay arms the context's check. */
GPU_TEST(graph_replay_reports_a_bad_label)
{
    const float v[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    const int64_t good[2] = {1, 3}, bad[2] = {1, 9};
    ce_step c = {NULL, NULL, NULL};
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(2, 4), v, CNN_CUDA(0), &c.x));
    CHECK_OK(cnn_tensor_from_i64(CNN_SHAPE(2), good, CNN_CUDA(0), &c.y));
    REQUIRE(c.x && c.y);
    CHECK_OK(cross_entropy_step(&c)); /* made before the capture: the bad-label slot */
    CHECK_OK(cnn_synchronize());
    cnn_tensor_free(&c.loss);
    cnn_graph *g = NULL;
    CHECK_OK(cnn_graph_capture(cross_entropy_step, &c, &g));
    CHECK_OK(cnn_tensor_write(c.y, bad, 2));
    CHECK_OK(cnn_graph_replay(g));
    CHECK_ERR(cnn_synchronize(), CNN_ERR_INVALID_ARG);
    CHECK_OK(cnn_synchronize()); /* reported once */
    cnn_graph_destroy(&g);
    free_tensors(&c.x, &c.y, &c.loss);
}

/* Pinned tensor of `bytes` bytes and its address. */
static cnn_tensor *pinned_bytes(size_t bytes, const void **at)
{
    cnn_tensor *t = NULL;
    if (cnn_tensor_empty_pinned(CNN_SHAPE((int64_t)(bytes / sizeof(float))), CNN_F32, &t) !=
        CNN_OK)
        return NULL;
    *at = cnn_ptr(t);
    return t;
}

/* Released pinned blocks serve later requests best fit, and only those at most 25% larger than
 * the request: a 256 KiB request takes the idle 256 KiB block, not the 320 KiB one; a 64 KiB
 * request takes neither. (No copy touched them, so both are idle.) */
GPU_TEST(cuda_pinned_cache_takes_the_best_fitting_block)
{
    CHECK_OK(cnn_cuda_empty_cache()); /* the idle pinned blocks too */
    const void *p320 = NULL, *p256 = NULL, *p = NULL;
    cnn_tensor *a = pinned_bytes(320 * KIB, &p320), *b = pinned_bytes(256 * KIB, &p256);
    REQUIRE(a && b);
    free_tensors(&a, &b); /* the 256 KiB block is released last: first in the cache's list */
    cnn_tensor *t = pinned_bytes(256 * KIB, &p);
    REQUIRE(t);
    CHECK(p == p256);
    cnn_tensor *s = pinned_bytes(64 * KIB, &p);
    REQUIRE(s);
    CHECK(p != p320);
    free_tensors(&t, &s);
}
