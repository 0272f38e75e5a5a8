/* test_cuda_release_order.c — memory released while work may still use it is reused only after
 * that work, in the cases the allocator once missed: a tensor released under a context of
 * another device, or while a graph is captured on its device; a pinned tensor whose data was
 * the source of cnn_tensor_write; segments a second stream kept apart (empty_cache); the pinned
 * cache emptied while another thread captures; a timer started and stopped under two contexts.
 * On the CUDA emulator the GPU runs behind (CNN_EMU_LAGGING_STREAMS / _EVENTS), so a missing wait
 * shows as a wrong value; on a GPU the same checks hold. GPU tests only. */
#include "gradcheck.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Turns one of the emulator's "the GPU runs behind" switches on or off (a GPU ignores it). */
static void lagging(const char *which, bool on)
{
    if (!emulated_gpu()) return;
    if (on)
        setenv(which, "1", 1);
    else
        unsetenv(which);
}

/* The first value of a CUDA tensor, read under the current context. */
static float first_value(const cnn_tensor *t)
{
    cnn_tensor *v = NULL;
    float x = -1;
    if (cnn_tensor_narrow(t, 0, 0, 1, &v) != CNN_OK || cnn_tensor_read(v, &x, 1) != CNN_OK)
        x = -1;
    cnn_tensor_free(&v);
    return x;
}

/* x on cuda:0, copied to cuda:1 under a cuda:1 context and released there: a new cuda:0 tensor
 * (same size) filled at once under cuda:0 once took x's block while the copy was still queued,
 * and the copy read its fill. */
GPU_TEST(cuda_release_under_another_device_waits_for_its_copy)
{
    if (cnn_cuda_device_count() < 2) {
        cnn_test_skip("needs two devices");
        return;
    }
    enum { N = 1 << 16 };
    cnn_context *c0 = NULL, *c1 = NULL, *home = cnn_context_current();
    REQUIRE(cnn_context_create(CNN_CUDA(0), &c0) == CNN_OK);
    REQUIRE(cnn_context_create(CNN_CUDA(1), &c1) == CNN_OK);
    cnn_tensor *x = NULL, *y = NULL, *z = NULL;
    lagging("CNN_EMU_LAGGING_STREAMS", true);
    cnn_context_set_current(c0);
    CHECK_OK(cnn_tensor_full(CNN_SHAPE(N), 1.0f, CNN_CUDA(0), &x));
    CHECK_OK(cnn_synchronize());
    cnn_context_set_current(c1);
    CHECK_OK(cnn_tensor_to(x, CNN_CUDA(1), &y)); /* queued on c1's stream */
    cnn_tensor_free(&x);                          /* released under c1, which used it */
    cnn_context_set_current(c0);
    CHECK_OK(cnn_tensor_full(CNN_SHAPE(N), 7.0f, CNN_CUDA(0), &z));
    CHECK_OK(cnn_synchronize());
    cnn_context_set_current(c1);
    CHECK(y && first_value(y) == 1.0f);
    lagging("CNN_EMU_LAGGING_STREAMS", false);
    cnn_tensor_free(&y);
    cnn_context_set_current(c0);
    cnn_tensor_free(&z);
    cnn_context_set_current(home);
    cnn_context_destroy(&c0);
    cnn_context_destroy(&c1);
}

/* Released under C, whose queued relu still reads it, while another thread captures a graph on
 * the device: the block is held until the graph is destroyed, and then it was returned as free
 * at once, without waiting for C's relu. */
static struct {
    cnn_context *c;
    cnn_tensor *x, *w;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int phase;
} held = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static void held_phase(int to, int wait_for)
{
    pthread_mutex_lock(&held.mu);
    if (to) held.phase = to;
    pthread_cond_broadcast(&held.cv);
    while (wait_for && held.phase != wait_for) pthread_cond_wait(&held.cv, &held.mu);
    pthread_mutex_unlock(&held.mu);
}

static void *held_releaser(void *arg)
{
    (void)arg;
    held_phase(0, 1);
    cnn_context_set_current(held.c);
    cnn_tensor_free(&held.x);
    cnn_context_set_current(NULL);
    held_phase(2, 0);
    return NULL;
}

static cnn_status held_capture(void *ud)
{
    (void)ud;
    held_phase(1, 2); /* the release happens during the capture */
    return cnn_tensor_fill_(held.w, 2.0f);
}

GPU_TEST(cuda_release_during_a_capture_waits_for_its_stream)
{
    enum { N = 1 << 16 };
    cnn_context *home = cnn_context_current(), *b = NULL;
    REQUIRE(cnn_context_create(CNN_CUDA(0), &b) == CNN_OK);
    REQUIRE(cnn_context_create(CNN_CUDA(0), &held.c) == CNN_OK);
    held.phase = 0;
    cnn_tensor *y = NULL, *z = NULL;
    lagging("CNN_EMU_LAGGING_STREAMS", true);
    cnn_context_set_current(b);
    CHECK_OK(cnn_tensor_full(CNN_SHAPE(N), 3.0f, CNN_CUDA(0), &held.x));
    CHECK_OK(cnn_synchronize());
    cnn_context_set_current(held.c);
    CHECK_OK(cnn_relu(held.x, &y)); /* queued on C's stream */
    cnn_context_set_current(home);
    CHECK_OK(cnn_tensor_full(CNN_SHAPE(16), 1.0f, CNN_CUDA(0), &held.w));
    CHECK_OK(cnn_synchronize());
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, held_releaser, NULL) == 0);
    cnn_graph *g = NULL;
    CHECK_OK(cnn_graph_capture(held_capture, NULL, &g));
    pthread_join(th, NULL);
    cnn_graph_destroy(&g); /* x's block goes back to the cache */
    cnn_context_set_current(b);
    CHECK_OK(cnn_tensor_full(CNN_SHAPE(N), -7.0f, CNN_CUDA(0), &z));
    CHECK_OK(cnn_synchronize());
    cnn_context_set_current(held.c);
    CHECK(y && first_value(y) == 3.0f);
    lagging("CNN_EMU_LAGGING_STREAMS", false);
    cnn_tensor_free(&y);
    cnn_context_set_current(b);
    cnn_tensor_free(&z);
    cnn_context_set_current(home);
    cnn_tensor_free(&held.w);
    cnn_context_destroy(&b);
    cnn_context_destroy(&held.c);
}

/* cnn_tensor_write from a pinned tensor's data queues a copy that reads the pinned block; the
 * tensor released at once, the next pinned tensor of its size once took the block at once, and
 * the copy read what was written there next. */
GPU_TEST(cuda_write_from_pinned_data_keeps_its_block)
{
    enum { N = 1 << 16 };
    cnn_tensor *p1 = NULL, *p2 = NULL, *d = NULL;
    lagging("CNN_EMU_LAGGING_STREAMS", true);
    REQUIRE(cnn_tensor_empty_pinned(CNN_SHAPE(N), CNN_F32, &p1) == CNN_OK);
    float *h1 = cnn_tensor_data(p1);
    for (int i = 0; i < N; i++) h1[i] = 1.0f;
    CHECK_OK(cnn_tensor_empty(CNN_SHAPE(N), CNN_F32, CNN_CUDA(0), &d));
    CHECK_OK(cnn_tensor_write(d, h1, N));
    cnn_tensor_free(&p1); /* "releasing it at once is always safe" */
    REQUIRE(cnn_tensor_empty_pinned(CNN_SHAPE(N), CNN_F32, &p2) == CNN_OK);
    float *h2 = cnn_tensor_data(p2);
    for (int i = 0; i < N; i++) h2[i] = 5.0f;
    CHECK(first_value(d) == 1.0f);
    lagging("CNN_EMU_LAGGING_STREAMS", false);
    cnn_tensor_free(&p2);
    cnn_tensor_free(&d);
}

/* A segment split in two, its front released under a second context that read it (kept apart
 * until that context's work is done): empty_cache waits for the device, so the whole segment is
 * free and goes back to CUDA; it once looked for whole segments before waiting and freed
 * nothing. The out-of-memory retry frees the cache the same way. */
GPU_TEST(cuda_empty_cache_frees_segments_a_second_stream_kept_apart)
{
    cnn_context *home = cnn_context_current(), *c1 = NULL;
    REQUIRE(cnn_context_create(CNN_CUDA(0), &c1) == CNN_OK);
    CHECK_OK(cnn_cuda_empty_cache());
    cnn_tensor *t = gpu_bytes(32 * MIB), *x = NULL, *y = NULL;
    REQUIRE(t);
    cnn_tensor_free(&t);
    x = gpu_bytes(8 * MIB); /* the front of the 32 MiB segment */
    REQUIRE(x);
    CHECK_OK(cnn_tensor_fill_(x, 1.0f));
    CHECK_OK(cnn_synchronize());
    lagging("CNN_EMU_LAGGING_EVENTS", true);
    cnn_context_set_current(c1);
    CHECK_OK(cnn_relu(x, &y));
    cnn_tensor_free(&x); /* released under c1, the context that read it */
    cnn_context_set_current(home);
    size_t before = gpu_memory_stats().reserved_bytes;
    CHECK_OK(cnn_cuda_empty_cache());
    size_t after = gpu_memory_stats().reserved_bytes;
    lagging("CNN_EMU_LAGGING_EVENTS", false);
    if (after + 32 * MIB > before)
        cnn_test_fail(__FILE__, __LINE__, "empty_cache gave back %zu bytes, want the 32 MiB "
                      "segment", before - after);
    cnn_context_set_current(c1);
    cnn_tensor_free(&y);
    cnn_context_set_current(home);
    cnn_context_destroy(&c1);
}

/* Emptying the pinned cache waits for every device, which breaks a capture begun meanwhile:
 * the pinned cache was checked for a capture once and then freed block after block, and about
 * one capture in fifteen on another thread failed. Now no capture begins until it is done. */
enum { N_CAPTURES = 2000 };
static atomic_int pinned_stop;
static cnn_tensor *pinned_w;

static cnn_status pinned_capture_fn(void *ud)
{
    (void)ud;
    usleep(100);
    return cnn_tensor_fill_(pinned_w, 2.0f);
}

static void *pinned_capturer(void *arg)
{
    int *broken = arg;
    cnn_context *a = NULL;
    if (cnn_context_create(CNN_CUDA(0), &a) != CNN_OK) {
        *broken = -1;
        pinned_stop = 1;
        return NULL;
    }
    cnn_context_set_current(a);
    if (cnn_tensor_full(CNN_SHAPE(16), 1.0f, CNN_CUDA(0), &pinned_w) != CNN_OK) *broken = -1;
    for (int i = 0; i < N_CAPTURES && *broken >= 0; i++) {
        cnn_graph *g = NULL;
        if (cnn_graph_capture(pinned_capture_fn, NULL, &g) != CNN_OK) (*broken)++;
        cnn_graph_destroy(&g);
    }
    pinned_stop = 1;
    cnn_tensor_free(&pinned_w);
    cnn_context_set_current(NULL);
    cnn_context_destroy(&a);
    return NULL;
}

GPU_TEST(cuda_pinned_empty_cache_never_breaks_a_capture)
{
    int broken = 0;
    pinned_stop = 0;
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, pinned_capturer, &broken) == 0);
    while (!pinned_stop) {
        cnn_tensor *p[16] = {0};
        for (int i = 0; i < 16; i++)
            (void)cnn_tensor_empty_pinned(CNN_SHAPE((int64_t)(i + 1) * 16384), CNN_F32, &p[i]);
        for (int i = 0; i < 16; i++) cnn_tensor_free(&p[i]);
        (void)cnn_cuda_empty_cache(); /* refused for cuda:0 while a capture runs, as documented */
        cnn_clear_error();
    }
    pthread_join(th, NULL);
    if (broken) cnn_test_fail(__FILE__, __LINE__, "%d of %d captures failed", broken, N_CAPTURES);
}

/* A timer started under one context and stopped under another of its device: elapsed waited
 * for the stop only, and failed (device not ready) while the start was still behind. */
GPU_TEST(cuda_timer_across_two_contexts)
{
    cnn_context *home = cnn_context_current(), *c1 = NULL;
    REQUIRE(cnn_context_create(CNN_CUDA(0), &c1) == CNN_OK);
    cnn_timer *t = NULL;
    cnn_tensor *a = NULL;
    REQUIRE(cnn_timer_create(&t) == CNN_OK);
    lagging("CNN_EMU_LAGGING_EVENTS", true);
    CHECK_OK(cnn_tensor_full(CNN_SHAPE(1 << 20), 1.0f, CNN_CUDA(0), &a));
    CHECK_OK(cnn_timer_start(t));
    cnn_context_set_current(c1);
    CHECK_OK(cnn_timer_stop(t));
    double ms = -1;
    CHECK_OK(cnn_timer_elapsed_ms(t, &ms));
    CHECK(ms >= 0);
    lagging("CNN_EMU_LAGGING_EVENTS", false);
    cnn_context_set_current(home);
    cnn_tensor_free(&a);
    cnn_timer_destroy(&t);
    cnn_context_destroy(&c1);
}
