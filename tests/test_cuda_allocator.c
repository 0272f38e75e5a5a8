/* test_cuda_allocator.c — the caching device allocator: steady-state reuse without cudaMalloc,
 * the statistics, splitting a large free block and merging its parts back (also parts left by a
 * destroyed context, or used by a second stream), empty_cache (whole segments only), reuse of a
 * tensor released under another context only after that context's work (or a read's wait),
 * a tensor handed to a second stream kept until that stream read it, a destroyed second stream
 * forgotten, a destroyed context's helpers given back, out-of-memory errors that name the op,
 * and cuBLAS/cuDNN handles made on a full GPU. GPU tests only: skipped without a device. */
#include "gradcheck.h"
#include "internal.h"

#include <string.h>

#if CNN_WITH_CUDA
#include "../cuda/cuda_api.h"
#endif

GPU_TEST(cuda_allocator_reuses_blocks)
{
    const int64_t sizes[] = {1, 100, 1000, 4096, 70000, 300000, 1500000, 5000000};
    enum { K = sizeof sizes / sizeof *sizes };
    cnn_tensor *t[K] = {0};
    cnn_cuda_memory_stats s0 = gpu_memory_stats();
    for (int it = 0; it < 101; it++) { /* iteration 0 warms the cache up */
        if (it == 1) s0 = gpu_memory_stats();
        for (int k = 0; k < K; k++)
            CHECK_OK(cnn_tensor_empty(CNN_SHAPE(sizes[k]), CNN_F32, CNN_CUDA(0), &t[k]));
        for (int k = 0; k < K; k++) CHECK_OK(cnn_tensor_fill_(t[k], (float)it));
        for (int k = (it % 2) ? 0 : K - 1; k >= 0 && k < K; k += (it % 2) ? 1 : -1)
            cnn_tensor_free(&t[k]);
    }
    CHECK_OK(cnn_synchronize());
    cnn_cuda_memory_stats s1 = gpu_memory_stats();
    CHECK(s1.n_cuda_malloc == s0.n_cuda_malloc);
    CHECK(s1.n_cuda_free == s0.n_cuda_free);
    CHECK(s1.allocated_bytes == s0.allocated_bytes);
    CHECK(s1.reserved_bytes == s0.reserved_bytes);
    CHECK(s1.reserved_bytes == s1.allocated_bytes + s1.cached_bytes);

    /* Statistics follow one large tensor. */
    cnn_cuda_reset_peak_memory(0);
    cnn_cuda_memory_stats a = gpu_memory_stats();
    CHECK(a.peak_allocated_bytes == a.allocated_bytes);
    cnn_tensor *big = NULL;
    CHECK_OK(cnn_tensor_empty(CNN_SHAPE(5000000), CNN_F32, CNN_CUDA(0), &big));
    cnn_cuda_memory_stats b = gpu_memory_stats();
    CHECK(b.allocated_bytes >= a.allocated_bytes + 20000000);
    CHECK(b.peak_allocated_bytes >= a.allocated_bytes + 20000000);
    cnn_tensor_free(&big);
    cnn_cuda_memory_stats c = gpu_memory_stats();
    CHECK(c.allocated_bytes == a.allocated_bytes);
    CHECK(c.peak_allocated_bytes == b.peak_allocated_bytes);
    cnn_cuda_memory_stats bad;
    CHECK_ERR(cnn_cuda_get_memory_stats(cnn_cuda_device_count(), &bad), CNN_ERR_DEVICE);
    CHECK_ERR(cnn_cuda_get_memory_stats(-1, &bad), CNN_ERR_DEVICE);
}

GPU_TEST(cuda_empty_cache_returns_free_blocks)
{
    float keep_vals[4] = {1, 2, 3, 4}, back[4] = {0};
    cnn_tensor *keep = NULL, *tmp = NULL;
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(4), keep_vals, CNN_CUDA(0), &keep));
    /* What stays cached after an empty_cache is the free part of segments that live tensors
     * still use (none, unless an earlier test left a tensor alive). A tensor larger than all of
     * it gets a segment of its own, which the next empty_cache returns whole. */
    CHECK_OK(cnn_cuda_empty_cache());
    size_t c0 = gpu_memory_stats().cached_bytes, big = c0 + ((size_t)12 << 20);
    CHECK_OK(cnn_tensor_empty(CNN_SHAPE((int64_t)(big / 4)), CNN_F32, CNN_CUDA(0), &tmp));
    cnn_tensor_free(&tmp);
    cnn_cuda_memory_stats a = gpu_memory_stats();
    CHECK(a.cached_bytes >= c0 + big);
    CHECK_OK(cnn_cuda_empty_cache());
    cnn_cuda_memory_stats b = gpu_memory_stats();
    CHECK(b.cached_bytes == c0);
    CHECK(b.reserved_bytes == b.allocated_bytes + c0);
    CHECK(b.allocated_bytes == a.allocated_bytes);
    CHECK(b.n_cuda_free > a.n_cuda_free);
    CHECK_OK(cnn_tensor_read(keep, back, 4)); /* live tensors keep their memory */
    CHECK(memcmp(keep_vals, back, sizeof back) == 0);
    cnn_tensor_free(&keep);
}

GPU_TEST(cuda_out_of_memory_is_reported_and_survivable)
{
    cnn_tensor *t = NULL;
    cnn_cuda_memory_stats a = gpu_memory_stats();
    /* 2^48 floats: 1125899906842624 bytes, beyond any GPU */
    CHECK_ERR(cnn_tensor_empty(CNN_SHAPE((int64_t)1 << 48), CNN_F32, CNN_CUDA(0), &t),
              CNN_ERR_OUT_OF_MEMORY);
    CHECK(t == NULL);
    CHECK(strstr(cnn_last_error(), "1125899906842624") != NULL);
    CHECK(strstr(cnn_last_error(), "tensor_empty") != NULL);
    cnn_cuda_memory_stats b = gpu_memory_stats();
    CHECK(b.allocated_bytes == a.allocated_bytes);
    /* The context still works. */
    float v[3] = {1, 2, 3}, back[3] = {0};
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(3), v, CNN_CUDA(0), &t));
    CHECK_OK(cnn_tensor_fill_(t, 8.0f));
    CHECK_OK(cnn_tensor_read(t, back, 3));
    CHECK(back[0] == 8.0f && back[2] == 8.0f);
    CHECK_OK(cnn_synchronize());
    cnn_tensor_free(&t);
}

/* An op whose output cannot fit names itself, the bytes it asked for and those free: here
 * adaptive pooling of one pixel to 2^21 x 2^21 (2^44 bytes, beyond any GPU). */
GPU_TEST(cuda_out_of_memory_in_an_op_names_the_op)
{
    cnn_tensor *x = NULL, *y = NULL;
    const float one = 1.0f;
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(1, 1, 1, 1), &one, CNN_CUDA(0), &x));
    CHECK_ERR(cnn_adaptive_avg_pool2d(x, 1 << 21, 1 << 21, &y), CNN_ERR_OUT_OF_MEMORY);
    CHECK(y == NULL);
    const char *e = cnn_last_error();
    CHECK(strncmp(e, "adaptive_avg_pool2d: out of GPU memory", 38) == 0);
    CHECK(strstr(e, "17592186044416 bytes requested") && strstr(e, "bytes free"));
    cnn_tensor_free(&x);
}


/* Every element of a device tensor equals v. */
static bool all_equal(const cnn_tensor *t, float v)
{
    size_t n = (size_t)cnn_tensor_numel(t);
    float *h = malloc(n * sizeof *h);
    bool ok = h && cnn_tensor_read(t, h, n) == CNN_OK;
    for (size_t i = 0; ok && i < n; i++) ok = h[i] == v;
    free(h);
    return ok;
}

GPU_TEST(cuda_allocator_splits_large_blocks_and_merges_them_back)
{
    const size_t seg = gpu_fresh_segment(64 * MIB); /* empties the cache */
    cnn_cuda_memory_stats s0 = gpu_memory_stats();
    const size_t c0 = s0.cached_bytes; /* free parts of segments live tensors use (normally 0) */
    cnn_tensor *a = gpu_bytes(seg), *b = NULL, *c = NULL;
    REQUIRE(a);
    cnn_cuda_memory_stats s1 = gpu_memory_stats();
    CHECK(s1.n_cuda_malloc == s0.n_cuda_malloc + 1);
    CHECK(s1.reserved_bytes == s0.reserved_bytes + seg);
    cnn_tensor_free(&a);

    /* Two tensors cut from free memory: no cudaMalloc, and each counts its own rounded size, not
     * the block it was cut from. Their memory does not overlap. */
    b = gpu_bytes(20 * MIB);
    c = gpu_bytes(30 * MIB);
    REQUIRE(b && c);
    cnn_cuda_memory_stats s2 = gpu_memory_stats();
    CHECK(s2.n_cuda_malloc == s1.n_cuda_malloc);
    CHECK(s2.reserved_bytes == s1.reserved_bytes);
    CHECK(s2.allocated_bytes == s0.allocated_bytes + 50 * MIB);
    CHECK(s2.cached_bytes == c0 + seg - 50 * MIB);
    CHECK_OK(cnn_tensor_fill_(b, 1.0f));
    CHECK_OK(cnn_tensor_fill_(c, 2.0f));
    CHECK(all_equal(b, 1.0f));
    CHECK(all_equal(c, 2.0f));

    /* Released, the parts merge again: the whole segment serves a request of its full size. */
    cnn_tensor_free(&b);
    cnn_tensor_free(&c);
    a = gpu_bytes(seg);
    REQUIRE(a);
    CHECK(gpu_memory_stats().n_cuda_malloc == s1.n_cuda_malloc);
    cnn_tensor_free(&a);

    /* A live part keeps its segment through empty_cache; once it goes, the segment is returned. */
    b = gpu_bytes(10 * MIB);
    REQUIRE(b);
    CHECK(gpu_memory_stats().n_cuda_malloc == s1.n_cuda_malloc);
    CHECK_OK(cnn_cuda_empty_cache());
    cnn_cuda_memory_stats s3 = gpu_memory_stats();
    if (c0 == 0) CHECK(s3.reserved_bytes == s1.reserved_bytes); /* b was cut from the segment */
    CHECK(s3.allocated_bytes == s0.allocated_bytes + 10 * MIB);
    cnn_tensor_free(&b);
    CHECK_OK(cnn_cuda_empty_cache());
    cnn_cuda_memory_stats s4 = gpu_memory_stats();
    CHECK(s4.reserved_bytes == s0.reserved_bytes);
    CHECK(s4.cached_bytes == c0);
    CHECK(s4.n_cuda_free == s3.n_cuda_free + 1);
}

/* On a full GPU every allocation the library makes goes through the caching allocator, which
 * serves it from the cache (or frees the cache and retries): the slot cross_entropy's kernel
 * reports a bad label in too. The emulator fails every cudaMalloc on request
 * (CNN_EMU_FAIL_MALLOC=all); on a GPU this runs as a plain cross-entropy. */
GPU_TEST(cuda_cross_entropy_on_a_full_gpu_uses_the_cache)
{
    float v[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    int64_t lab[2] = {1, 3};
    cnn_tensor *x = NULL, *y = NULL, *loss = NULL, *spare[8] = {NULL};
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(2, 4), v, CNN_CUDA(0), &x));
    CHECK_OK(cnn_tensor_from_i64(CNN_SHAPE(2), lab, CNN_CUDA(0), &y));
    for (int i = 0; i < 8; i++)
        CHECK_OK(cnn_tensor_empty(CNN_SHAPE(4), CNN_F32, CNN_CUDA(0), &spare[i]));
    for (int i = 0; i < 8; i++) cnn_tensor_free(&spare[i]); /* cached: room for what follows */
    setenv("CNN_EMU_FAIL_MALLOC", "all", 1);
    cnn_status st = cnn_cross_entropy(x, y, 0.0f, &loss);
    unsetenv("CNN_EMU_FAIL_MALLOC");
    CHECK(st == CNN_OK);
    if (st != CNN_OK) printf("    %s\n", cnn_last_error());
    float l = 0;
    if (loss) CHECK_OK(cnn_tensor_read(loss, &l, 1));
    CHECK_NEAR(l, 1.4401897f, 1e-5);
    cnn_tensor_free(&x);
    cnn_tensor_free(&y);
    cnn_tensor_free(&loss);
}

/* A context's cached memory outlives it, owned by no stream; another context that cuts a
 * tensor from it and releases it gets the parts merged back, so the whole segment serves it
 * again (no cudaMalloc) and empty_cache returns it. Likewise parts a second stream used
 * (record_stream, as the loader's hand-off does) merge once that stream's work is done: an
 * empty_cache after it returns their segment whole. */
GPU_TEST(cuda_allocator_merges_parts_of_destroyed_contexts_and_second_streams)
{
    cnn_context *home = cnn_context_current(), *a = NULL, *b = NULL;
    REQUIRE(cnn_context_create(CNN_CUDA(0), &a) == CNN_OK);
    REQUIRE(cnn_context_create(CNN_CUDA(0), &b) == CNN_OK);
    cnn_context_set_current(a);
    const size_t seg = gpu_fresh_segment(64 * MIB); /* empties the cache */
    cnn_cuda_memory_stats s0 = gpu_memory_stats();
    cnn_tensor *t = gpu_bytes(seg);
    REQUIRE(t);
    cnn_tensor_free(&t);
    cnn_context_set_current(b);
    cnn_context_destroy(&a);
    cnn_cuda_memory_stats s1 = gpu_memory_stats();
    CHECK(s1.reserved_bytes == s0.reserved_bytes + seg);
    t = gpu_bytes(20 * MIB); /* cut from the ownerless segment */
    REQUIRE(t);
    cnn_tensor_free(&t);
    t = gpu_bytes(seg); /* the parts merged: the whole segment again */
    REQUIRE(t);
    CHECK(gpu_memory_stats().n_cuda_malloc == s1.n_cuda_malloc);
    cnn_tensor_free(&t);
    CHECK_OK(cnn_cuda_empty_cache());
    CHECK(gpu_memory_stats().reserved_bytes == s0.reserved_bytes);

#if CNN_WITH_CUDA
    /* A part used by a second stream: kept apart at release, merged by the empty_cache after
     * both streams are done. */
    t = gpu_bytes(seg);
    REQUIRE(t);
    cnn_tensor_free(&t);
    t = gpu_bytes(20 * MIB);
    REQUIRE(t);
    CHECK_OK(cnn_cuda_record_stream(home, t->storage));
    cnn_tensor_free(&t);
    CHECK_OK(cnn_synchronize());
    cnn_context_set_current(home);
    CHECK_OK(cnn_synchronize());
    CHECK_OK(cnn_cuda_empty_cache());
    cnn_cuda_memory_stats s2 = gpu_memory_stats();
    CHECK(s2.reserved_bytes == s0.reserved_bytes);
#endif
    cnn_context_set_current(home);
    cnn_context_destroy(&b);
}

/* A tensor released inside a capture is held until the graph goes (its replays may read it).
 * If its context is destroyed first, the block's stream goes with it: the block must come back
 * owned by no stream, reusable by any, not tied to a stream that no longer exists. */
GPU_TEST(cuda_allocator_block_held_by_a_graph_outlives_its_context)
{
    cnn_context *home = cnn_context_current(), *b = NULL;
    REQUIRE(cnn_context_create(CNN_CUDA(0), &b) == CNN_OK);
    const size_t seg = gpu_fresh_segment(16 * MIB); /* empties the cache */
    cnn_cuda_memory_stats s0 = gpu_memory_stats();
    cnn_context_set_current(b);
    cnn_tensor *x = gpu_bytes(seg);
    cnn_context_set_current(home);
    REQUIRE(x);
    cnn_graph *g = NULL;
    CHECK_OK(cnn_graph_capture(gpu_release_in_capture, &x, &g));
    CHECK(x == NULL);
    CHECK(gpu_memory_stats().graph_bytes >= seg); /* held */
    cnn_context_destroy(&b);
    cnn_graph_destroy(&g);
    cnn_cuda_memory_stats s1 = gpu_memory_stats();
    CHECK(s1.reserved_bytes >= s0.reserved_bytes + seg && s1.graph_bytes == 0);
    x = gpu_bytes(seg); /* home's stream takes the block: no cudaMalloc */
    REQUIRE(x);
    CHECK(gpu_memory_stats().n_cuda_malloc == s1.n_cuda_malloc);
    cnn_tensor_free(&x);
    CHECK_OK(cnn_cuda_empty_cache());
    CHECK(gpu_memory_stats().reserved_bytes == s0.reserved_bytes);
}

/* A tensor handed to another context (made and waited for under one, used under the other)
 * and released there: its block goes back to the maker's stream, which may reuse it only once
 * the user's work on it is done, else that work would read what the maker writes next. On the
 * emulator, whose events stay unfinished until their stream is waited for
 * (CNN_EMU_LAGGING_EVENTS), the block is visibly kept until then; on a GPU the user's result
 * is checked (it would be wrong if the maker's next fill had run under it). */
GPU_TEST(cuda_tensor_released_under_another_context_is_reused_after_its_work)
{
    cnn_context *home = cnn_context_current(), *b = NULL;
    REQUIRE(cnn_context_create(CNN_CUDA(0), &b) == CNN_OK);
    const int64_t n = (int64_t)(8 * MIB / sizeof(float));
    cnn_tensor *x = NULL, *y = NULL, *z = NULL;
    CHECK_OK(cnn_tensor_empty(CNN_SHAPE(n), CNN_F32, CNN_CUDA(0), &x));
    REQUIRE(x);
    CHECK_OK(cnn_tensor_fill_(x, 3.0f));
    CHECK_OK(cnn_synchronize());
    const void *xp = cnn_ptr(x);
    setenv("CNN_EMU_LAGGING_EVENTS", "1", 1);
    cnn_context_set_current(b);
    CHECK_OK(cnn_relu(x, &y));
    cnn_tensor_free(&x); /* under b, b's relu maybe still running */
    cnn_context_set_current(home);
    CHECK_OK(cnn_tensor_empty(CNN_SHAPE(n), CNN_F32, CNN_CUDA(0), &z));
    REQUIRE(z);
    if (emulated_gpu()) CHECK(cnn_ptr(z) != xp);
    CHECK_OK(cnn_tensor_fill_(z, -7.0f));
    cnn_context_set_current(b);
    CHECK_OK(cnn_synchronize());
    CHECK(y && all_equal(y, 3.0f));
    cnn_tensor_free(&y);
    cnn_context_set_current(home);
    cnn_tensor *again[2] = {NULL, NULL}; /* b's work is done: x's block serves one of them */
    for (int i = 0; i < 2; i++)
        CHECK_OK(cnn_tensor_empty(CNN_SHAPE(n), CNN_F32, CNN_CUDA(0), &again[i]));
    REQUIRE(again[0] && again[1]);
    if (emulated_gpu()) CHECK(cnn_ptr(again[0]) == xp || cnn_ptr(again[1]) == xp);
    unsetenv("CNN_EMU_LAGGING_EVENTS");
    free_tensors(&z, &again[0], &again[1]);
    cnn_context_destroy(&b);
}

#if CNN_WITH_CUDA
/* A tensor handed to a second context's stream, which is then destroyed (its work drained):
 * the block forgets that stream, so a third context may take the tensor over (one second
 * stream per block is all the cache tracks, and a dead one must not hold the place), and the
 * release records nothing on the dead stream. */
GPU_TEST(cuda_allocator_forgets_a_destroyed_second_stream)
{
    cnn_context *home = cnn_context_current(), *user = NULL, *next = NULL;
    cnn_tensor *t = NULL;
    REQUIRE(cnn_context_create(CNN_CUDA(0), &user) == CNN_OK);
    REQUIRE(cnn_context_create(CNN_CUDA(0), &next) == CNN_OK); /* while user's stream lives */
    CHECK_OK(cnn_tensor_full(CNN_SHAPE(64), 2.0f, CNN_CUDA(0), &t));
    REQUIRE(t);
    CHECK_OK(cnn_cuda_stream_handoff(home, user, &t, 1));
    cnn_context_destroy(&user);
    CHECK_OK(cnn_cuda_stream_handoff(home, next, &t, 1));
    cnn_context_set_current(next);
    float v[64];
    CHECK_OK(cnn_tensor_read(t, v, 64));
    CHECK(v[0] == 2.0f && v[63] == 2.0f);
    cnn_context_set_current(home);
    cnn_tensor_free(&t);
    cnn_context_destroy(&next);
}

/* A tensor handed over to a second context's stream (as the loader hands its batches to the
 * caller) and read there, then released by its first context, waits for the second stream's
 * work before its block serves another tensor. On a GPU the read has usually run long before;
 * CNN_EMU_LAGGING_STREAMS (make check-cuda-emu's third pass) holds it back until its stream is
 * waited for, so a block reused under it is overwritten first. */
GPU_TEST(cuda_handed_over_tensor_is_reused_only_after_the_second_stream_read_it)
{
    cnn_context *home = cnn_context_current(), *user = NULL;
    REQUIRE(cnn_context_create(CNN_CUDA(0), &user) == CNN_OK);
    const int64_t n = (int64_t)(8 * MIB / sizeof(float));
    cnn_tensor *t = NULL, *y = NULL, *z = NULL;
    CHECK_OK(cnn_tensor_full(CNN_SHAPE(n), 2.0f, CNN_CUDA(0), &t));
    REQUIRE(t);
    CHECK_OK(cnn_cuda_stream_handoff(home, user, &t, 1));
    cnn_context_set_current(user);
    CHECK_OK(cnn_relu(t, &y));
    cnn_context_set_current(home);
    cnn_tensor_free(&t);
    CHECK_OK(cnn_tensor_full(CNN_SHAPE(n), -1.0f, CNN_CUDA(0), &z));
    CHECK_OK(cnn_synchronize());
    cnn_context_set_current(user);
    CHECK_OK(cnn_synchronize());
    CHECK(y && all_equal(y, 2.0f));
    cnn_tensor_free(&y);
    cnn_context_set_current(home);
    cnn_tensor_free(&z);
    cnn_context_destroy(&user);
}

/* A read waits for the reading context's stream, or, under a CPU context, which has none, for
 * the whole device: after it, a block kept from reuse for that stream's work (here home's, on a
 * block the other context made) is reusable at once. The emulator shows "work left" only
 * through CNN_EMU_LAGGING_EVENTS (an event unfinished until its stream or the device is waited
 * for), so this needs it. */
GPU_TEST(cuda_reads_wait_for_their_stream_or_the_device)
{
    if (!emulated_gpu()) {
        cnn_test_skip("needs the CUDA emulator's CNN_EMU_LAGGING_EVENTS");
        return;
    }
    cnn_context *home = cnn_context_current(), *maker = NULL;
    REQUIRE(cnn_context_create(CNN_CUDA(0), &maker) == CNN_OK);
    cnn_tensor *y = gpu_bytes(64);
    REQUIRE(y);
    CHECK_OK(cnn_cuda_empty_cache());
    for (int cpu = 0; cpu < 2; cpu++) {
        cnn_context_set_current(maker);
        cnn_tensor *x = gpu_bytes(8 * MIB), *z = NULL;
        cnn_context_set_current(home);
        REQUIRE(x);
        CHECK_OK(cnn_cuda_record_stream(home, x->storage));
        setenv("CNN_EMU_LAGGING_EVENTS", "1", 1);
        cnn_context_set_current(maker);
        cnn_tensor_free(&x); /* kept until home's work is done */
        cnn_context_set_current(cpu ? NULL : home);
        float v[16];
        cnn_status st = cnn_tensor_read(y, v, 16);
        cnn_context_set_current(maker);
        cnn_cuda_memory_stats s = gpu_memory_stats();
        z = gpu_bytes(8 * MIB);
        if (st != CNN_OK || !z || gpu_memory_stats().n_cuda_malloc != s.n_cuda_malloc)
            cnn_test_fail(__FILE__, __LINE__, "read under the %s context: %s, then a cudaMalloc",
                          cpu ? "CPU" : "second stream's", st ? cnn_last_error() : "ok");
        unsetenv("CNN_EMU_LAGGING_EVENTS");
        cnn_tensor_free(&z);
        cnn_context_set_current(home);
    }
    cnn_tensor_free(&y);
    cnn_context_destroy(&maker);
}
#endif

/* A context's own device helpers, its vector of ones (a linear layer's bias gradient) and its
 * bad-label slot (a cross entropy), go back to the cache with the context: after it, the
 * allocated bytes are what they were before it. */
GPU_TEST(cuda_destroyed_context_gives_its_helpers_memory_back)
{
    cnn_context *home = cnn_context_current(), *ctx = NULL;
    const size_t a0 = gpu_memory_stats().allocated_bytes;
    REQUIRE(cnn_context_create(CNN_CUDA(0), &ctx) == CNN_OK);
    cnn_context_set_current(ctx);
    const int64_t lab[4] = {0, 1, 2, 1};
    cnn_tensor *x = NULL, *w = NULL, *b = NULL, *y = NULL, *loss = NULL, *labels = NULL;
    float v = 0;
    CHECK_OK(cnn_tensor_full(CNN_SHAPE(4, 8), 0.5f, CNN_CUDA(0), &x));
    CHECK_OK(cnn_tensor_full(CNN_SHAPE(3, 8), 0.25f, CNN_CUDA(0), &w));
    CHECK_OK(cnn_tensor_zeros(CNN_SHAPE(3), CNN_CUDA(0), &b));
    CHECK_OK(cnn_tensor_from_i64(CNN_SHAPE(4), lab, CNN_CUDA(0), &labels));
    if (x && w && b && labels && cnn_tensor_set_requires_grad(b, true) == CNN_OK &&
        cnn_linear(x, w, b, &y) == CNN_OK && cnn_sum(y, &loss) == CNN_OK) {
        CHECK_OK(cnn_backward(loss));
        cnn_tensor_free(&loss);
        CHECK_OK(cnn_cross_entropy(y, labels, 0.0f, &loss));
        CHECK(loss && cnn_tensor_read(loss, &v, 1) == CNN_OK);
    } else {
        cnn_test_fail(__FILE__, __LINE__, "setup: %s", cnn_last_error());
    }
    cnn_tape_reset();
    free_tensors(&x, &w, &b, &y, &loss, &labels);
    cnn_context_set_current(home);
    cnn_context_destroy(&ctx);
    CHECK(gpu_memory_stats().allocated_bytes == a0);
}

/* cuBLAS and cuDNN handles (made at a context's first GEMM or cuDNN call) take device memory
 * outside the cache: on a full GPU their creation gives the cache back and tries again, as a
 * cudaMalloc does, and failing twice is an out-of-memory naming the handle. On the emulator,
 * whose CNN_EMU_FAIL_MALLOC fails the creations too; each context's tensors come from the cache
 * a destroyed one left (so the handle is the first thing the context really allocates). */
static cnn_status first_gemm_or_conv(const cnn_tensor *x, const cnn_tensor *w, bool conv)
{
    cnn_tensor *y = NULL, *x4 = NULL, *w4 = NULL;
    cnn_status st = CNN_OK;
    if (!conv) {
        st = cnn_linear(x, w, NULL, &y);
    } else {
        st = cnn_tensor_reshape(x, CNN_SHAPE(2, 8, 1, 1), &x4);
        if (st == CNN_OK) st = cnn_tensor_reshape(w, CNN_SHAPE(8, 8, 1, 1), &w4);
        if (st == CNN_OK) st = cnn_conv2d(x4, w4, NULL, NULL, &y);
    }
    free_tensors(&y, &x4, &w4);
    return st;
}

GPU_TEST(cuda_handles_made_on_a_full_gpu_free_the_cache_first)
{
    if (!emulated_gpu()) {
        cnn_test_skip("needs the CUDA emulator's CNN_EMU_FAIL_MALLOC");
        return;
    }
    cnn_context *home = cnn_context_current(), *ctx = NULL;
    cnn_tensor *x = NULL, *w = NULL;
    CHECK_OK(cnn_tensor_full(CNN_SHAPE(2, 8), 1.0f, CNN_CUDA(0), &x));
    CHECK_OK(cnn_tensor_full(CNN_SHAPE(8, 8), 0.5f, CNN_CUDA(0), &w));
    REQUIRE(x && w);
    CHECK_OK(cnn_synchronize());
    const char *const modes[] = {"warm-up", "once", "all"};
    for (int conv = 0; conv < (cnn_built_with_cudnn() ? 2 : 1); conv++)
        for (int m = 0; m < 3; m++) {
            REQUIRE(cnn_context_create(CNN_CUDA(0), &ctx) == CNN_OK);
            cnn_context_set_current(ctx);
            if (m) setenv("CNN_EMU_FAIL_MALLOC", modes[m], 1);
            cnn_status st = first_gemm_or_conv(x, w, conv);
            const char *left = getenv("CNN_EMU_FAIL_MALLOC");
            const char *handle = conv ? "cuDNN handle" : "cuBLAS handle";
            if (m == 0) {
                CHECK_OK(st);
            } else if (m == 1) {
                if (st != CNN_OK)
                    cnn_test_fail(__FILE__, __LINE__, "%s once: %s", handle, cnn_last_error());
                CHECK(left && !strcmp(left, "spent")); /* the creation failed once */
            } else if (st != CNN_ERR_OUT_OF_MEMORY || !strstr(cnn_last_error(), handle)) {
                cnn_test_fail(__FILE__, __LINE__, "%s, all: status %d, %s", handle, st,
                              cnn_last_error());
            }
            unsetenv("CNN_EMU_FAIL_MALLOC");
            cnn_context_set_current(home);
            cnn_context_destroy(&ctx); /* its cache is any context's now */
        }
    free_tensors(&x, &w);
}
