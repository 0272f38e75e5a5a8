/* test_cuda_runtime.c — the CUDA runtime foundation: a clean refusal without a GPU, host/device
 * copies, the fill / accumulate / strided-copy kernels, Philox parity with the CPU, two contexts
 * on two threads, and captures after a copy under a CPU context. The caching allocator has
 * test_cuda_allocator.c, the timer test_timer.c.
 * GPU tests poison every device output first, so elements a kernel never wrote fail. */
#include "gradcheck.h"

#include <pthread.h>
#include <stdint.h>
#include <unistd.h>

#if CNN_WITH_CUDA
#include "../cuda/cuda_api.h"
#endif

TEST(cuda_absent_is_reported_cleanly)
{
    int n = cnn_cuda_device_count();
    if (n > 0) {
        cnn_test_skip("a CUDA device is present");
        return;
    }
    CHECK(n == 0);
    cnn_context *c = NULL;
    CHECK_ERR(cnn_context_create(CNN_CUDA(0), &c), CNN_ERR_DEVICE);
    CHECK(c == NULL);
    CHECK(strstr(cnn_last_error(), cnn_built_with_cuda() ? "no CUDA device" : "without CUDA"));
    CHECK_ERR(cnn_context_create(CNN_CUDA(1), &c), CNN_ERR_DEVICE);
    cnn_tensor *t = NULL;
    CHECK_ERR(cnn_tensor_zeros(CNN_SHAPE(3), CNN_CUDA(0), &t), CNN_ERR_DEVICE);
    CHECK(t == NULL);
    CHECK(cnn_cuda_device_count() == 0); /* asking again changes nothing */
    CHECK_OK(cnn_synchronize());         /* a CPU context has nothing to wait for */
#if CNN_WITH_CUDA
    cnn_cuda_memory_stats ms;
    CHECK_ERR(cnn_cuda_get_memory_stats(0, &ms), CNN_ERR_DEVICE);
    CHECK_OK(cnn_cuda_empty_cache());
    /* GPU entry points under a CPU context refuse before touching CUDA. */
    cnn_context *cpu = cnn_context_current();
    float buf[4] = {1, 2, 3, 4}, out[4] = {0};
    CHECK_ERR(cnn_cuda_fill_f32(cpu, buf, 0.0f, 4), CNN_ERR_DEVICE);
    CHECK(strstr(cnn_last_error(), "fill") != NULL);
    CHECK_ERR(cnn_cuda_synchronize(cpu), CNN_ERR_DEVICE);
    CHECK_ERR(cnn_cuda_random_f32(cpu, buf, 4, 2, 0.0f, 1.0f, (cnn_rng_draw){1, 0, NULL}),
              CNN_ERR_INVALID_ARG);
    int64_t st4[1] = {4}, st3[1] = {3};
    CHECK_ERR(cnn_cuda_strided_copy(cpu, out, st4, buf, st4, CNN_SHAPE(4), 3), CNN_ERR_UNSUPPORTED);
    CHECK_ERR(cnn_cuda_strided_copy(cpu, out, st4, buf, st3, CNN_SHAPE(4), 4), CNN_ERR_INVALID_ARG);
    CHECK_OK(cnn_cuda_memcpy(cpu, out, CNN_CPU, buf, CNN_CPU, sizeof buf));
    CHECK(memcmp(out, buf, sizeof buf) == 0);
#endif
}

/* The GPU tests use the cuda/ entry points and the allocator statistics, which exist only in a
 * build with CUDA. */
#if CNN_WITH_CUDA

/* Bits for test data: xorshift64*, so no test depends on the library's own RNG. */
static uint64_t next_bits(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1DULL;
}

/* n host floats uniform in [-2, 2). */
static float *host_uniform(int64_t n, uint64_t seed)
{
    float *p = malloc((size_t)(n ? n : 1) * sizeof *p);
    for (int64_t i = 0; p && i < n; i++)
        p[i] = (float)((next_bits(&seed) >> 40) * (1.0 / 16777216.0)) * 4.0f - 2.0f;
    return p;
}

/* A CUDA tensor whose bytes are all 0xFF (NaN as F32, -1 as I64), written from the host. */
static cnn_tensor *poisoned(cnn_shape s, cnn_dtype dt)
{
    cnn_tensor *t = NULL;
    if (cnn_tensor_empty(s, dt, CNN_CUDA(0), &t) != CNN_OK) return NULL;
    size_t bytes = (size_t)cnn_tensor_numel(t) * (dt == CNN_I64 ? 8 : 4);
    void *junk = malloc(bytes ? bytes : 1);
    if (junk) memset(junk, 0xFF, bytes);
    if (!junk || cnn_tensor_write(t, junk, (size_t)cnn_tensor_numel(t)) != CNN_OK)
        cnn_tensor_free(&t);
    free(junk);
    return t;
}

GPU_TEST(cuda_roundtrip_is_bit_exact)
{
    const int64_t n = 100003;
    uint32_t *bits = malloc(n * sizeof *bits), *back = malloc(n * sizeof *back);
    REQUIRE(bits && back);
    uint64_t s = 99;
    for (int64_t i = 0; i < n; i++) bits[i] = (uint32_t)next_bits(&s); /* NaN payloads too */
    memset(back, 0, n * sizeof *back);
    cnn_tensor *d = NULL, *e = NULL;
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(n), (const float *)bits, CNN_CUDA(0), &d));
    CHECK(cnn_tensor_device(d).type == CNN_DEVICE_CUDA && cnn_tensor_device(d).index == 0);
    CHECK(cnn_tensor_data(d) == NULL); /* no host pointer to device memory */
    CHECK_OK(cnn_tensor_read(d, back, (size_t)n));
    CHECK(memcmp(bits, back, n * sizeof *bits) == 0);
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(0, 5), NULL, CNN_CUDA(0), &e));
    CHECK_OK(cnn_tensor_read(e, NULL, 0));
    cnn_tensor_free(&d);
    cnn_tensor_free(&e);
    free(bits);
    free(back);
}

GPU_TEST(cuda_fill_writes_every_element)
{
    /* Sizes around the block size and past what one grid covers (grid-stride loop). */
    const int64_t sizes[] = {1, 255, 256, 257, 5000011};
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        int64_t n = sizes[k];
        cnn_tensor *t = poisoned(CNN_SHAPE(n), CNN_F32);
        REQUIRE(t);
        CHECK_OK(cnn_tensor_fill_(t, 3.25f));
        float *h = malloc(n * sizeof *h);
        REQUIRE(h);
        CHECK_OK(cnn_tensor_read(t, h, (size_t)n));
        int64_t bad = 0;
        for (int64_t i = 0; i < n; i++) bad += h[i] != 3.25f;
        if (bad) cnn_test_fail(__FILE__, __LINE__, "fill of %lld: %lld wrong", (long long)n,
                               (long long)bad);
        free(h);
        cnn_tensor_free(&t);
    }
    /* A transposed view is filled through a contiguous temporary and a strided copy. */
    cnn_tensor *base = poisoned(CNN_SHAPE(3, 5), CNN_F32), *tv = NULL;
    REQUIRE(base);
    CHECK_OK(cnn_tensor_transpose(base, 0, 1, &tv));
    CHECK_OK(cnn_tensor_fill_(tv, -1.5f));
    float h[15];
    CHECK_OK(cnn_tensor_read(base, h, 15));
    for (int i = 0; i < 15; i++) CHECK(h[i] == -1.5f);
    cnn_tensor_free(&tv);
    cnn_tensor_free(&base);
    cnn_tensor *l = poisoned(CNN_SHAPE(7), CNN_I64);
    REQUIRE(l);
    CHECK_OK(cnn_tensor_fill_(l, 42.0f));
    int64_t hl[7];
    CHECK_OK(cnn_tensor_read(l, hl, 7));
    for (int i = 0; i < 7; i++) CHECK(hl[i] == 42);
    cnn_tensor_free(&l);
}

GPU_TEST(cuda_accumulate_adds_elementwise)
{
    const int64_t n = 5000011;
    float *a = host_uniform(n, 1), *b = host_uniform(n, 2), *h = malloc(n * sizeof *h);
    REQUIRE(a && b && h);
    cnn_tensor *da = NULL, *db = NULL;
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(n), a, CNN_CUDA(0), &da));
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(n), b, CNN_CUDA(0), &db));
    CHECK_OK(cnn_tensor_accumulate_(da, db));
    CHECK_OK(cnn_tensor_accumulate_(da, db));
    CHECK_OK(cnn_tensor_read(da, h, (size_t)n));
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) bad += h[i] != (a[i] + b[i]) + b[i];
    CHECK(bad == 0);
    cnn_tensor_free(&da);
    cnn_tensor_free(&db);
    free(a);
    free(b);
    free(h);
}

/* Copies through views of x on the GPU into a poisoned destination; compares with the CPU. */
static void check_view_copy(cnn_tensor *x_cpu, int transpose_a, int transpose_b, int narrow_dim,
                            int64_t start, int64_t len)
{
    cnn_tensor *vc = NULL, *vg = NULL, *tmp = NULL, *dst = NULL, *x_gpu = NULL;
    CHECK_OK(cnn_tensor_to(x_cpu, CNN_CUDA(0), &x_gpu));
    CHECK_OK(cnn_tensor_transpose(x_cpu, transpose_a, transpose_b, &tmp));
    CHECK_OK(cnn_tensor_narrow(tmp, narrow_dim, start, len, &vc));
    cnn_tensor_free(&tmp);
    CHECK_OK(cnn_tensor_transpose(x_gpu, transpose_a, transpose_b, &tmp));
    CHECK_OK(cnn_tensor_narrow(tmp, narrow_dim, start, len, &vg));
    cnn_tensor_free(&tmp);
    CHECK(!cnn_tensor_is_contiguous(vg));
    dst = poisoned(cnn_tensor_shape(vg), CNN_F32);
    REQUIRE(dst);
    CHECK_OK(cnn_tensor_copy_(dst, vg)); /* same device: the strided-copy kernel */
    int64_t n = cnn_tensor_numel(vc);
    float *want = malloc(n * sizeof *want), *got = malloc(n * sizeof *got);
    REQUIRE(want && got);
    CHECK_OK(cnn_tensor_read(vc, want, (size_t)n));
    CHECK_OK(cnn_tensor_read(dst, got, (size_t)n));
    CHECK(memcmp(want, got, n * sizeof *got) == 0);
    /* And back: contiguous source into the strided destination. */
    cnn_tensor *src = NULL;
    float *ones = malloc(n * sizeof *ones);
    REQUIRE(ones);
    for (int64_t i = 0; i < n; i++) ones[i] = (float)i;
    CHECK_OK(cnn_tensor_from_data(cnn_tensor_shape(vg), ones, CNN_CUDA(0), &src));
    CHECK_OK(cnn_tensor_copy_(vg, src));
    CHECK_OK(cnn_tensor_read(vg, got, (size_t)n));
    CHECK(memcmp(ones, got, n * sizeof *got) == 0);
    free(ones);
    free(want);
    free(got);
    cnn_tensor_free(&src);
    cnn_tensor_free(&vc);
    cnn_tensor_free(&vg);
    cnn_tensor_free(&dst);
    cnn_tensor_free(&x_gpu);
}

GPU_TEST(cuda_strided_copy_of_views_matches_cpu)
{
    cnn_tensor *x = rand_tensor(CNN_SHAPE(3, 5, 7, 9), -1, 1, 0);
    REQUIRE(x);
    check_view_copy(x, 1, 3, 2, 2, 4);
    check_view_copy(x, 0, 2, 3, 1, 7);
    check_view_copy(x, 2, 3, 0, 1, 1);
    /* A rank-0 clone goes through the same kernel. */
    cnn_tensor *s = NULL, *sc = NULL;
    float v = 6.5f, r = 0;
    CHECK_OK(cnn_tensor_from_data(CNN_SCALAR, &v, CNN_CUDA(0), &s));
    CHECK_OK(cnn_tensor_clone(s, &sc));
    CHECK_OK(cnn_tensor_read(sc, &r, 1));
    CHECK(r == 6.5f);
    cnn_tensor_free(&s);
    cnn_tensor_free(&sc);
    cnn_tensor_free(&x);
}

GPU_TEST(cuda_strided_copy_every_element_size)
{
    /* A (4, 6, 5) index space read with permuted strides, for 1-, 2-, 4- and 8-byte elements,
     * checked against the same loop on the host. */
    const int64_t d0 = 4, d1 = 6, d2 = 5, n = d0 * d1 * d2;
    cnn_context *ctx = cnn_context_current();
    for (size_t es = 1; es <= 8; es *= 2) {
        size_t bytes = (size_t)n * es;
        unsigned char *src = malloc(bytes), *want = malloc(bytes), *got = malloc(bytes);
        REQUIRE(src && want && got);
        uint64_t seed = 7 + es;
        for (size_t i = 0; i < bytes; i++) src[i] = (unsigned char)next_bits(&seed);
        cnn_tensor *ds = NULL, *dd = poisoned(CNN_SHAPE((int64_t)(bytes / 4)), CNN_F32);
        REQUIRE(dd);
        CHECK_OK(cnn_tensor_from_data(CNN_SHAPE((int64_t)(bytes / 4)), (const float *)src,
                                      CNN_CUDA(0), &ds));
        /* source laid out as (d2, d0, d1), read as (d0, d1, d2) */
        int64_t ss[3] = {d1 * (int64_t)es, (int64_t)es, d0 * d1 * (int64_t)es};
        int64_t dst_st[3] = {d1 * d2 * (int64_t)es, d2 * (int64_t)es, (int64_t)es};
        CHECK_OK(cnn_cuda_strided_copy(ctx, cnn_ptr(dd), dst_st, cnn_ptr(ds), ss,
                                       CNN_SHAPE(d0, d1, d2), es));
        for (int64_t a = 0; a < d0; a++)
            for (int64_t b = 0; b < d1; b++)
                for (int64_t c = 0; c < d2; c++)
                    memcpy(want + a * dst_st[0] + b * dst_st[1] + c * dst_st[2],
                           src + a * ss[0] + b * ss[1] + c * ss[2], es);
        CHECK_OK(cnn_tensor_read(dd, got, bytes / 4));
        if (memcmp(want, got, bytes) != 0)
            cnn_test_fail(__FILE__, __LINE__, "strided copy with %zu-byte elements differs", es);
        cnn_tensor_free(&ds);
        cnn_tensor_free(&dd);
        free(src);
        free(want);
        free(got);
    }
}

GPU_TEST(cuda_tensor_to_roundtrips_f32_and_i64)
{
    cnn_tensor *x = rand_tensor(CNN_SHAPE(3, 7), -3, 3, 0), *g = NULL, *back = NULL;
    REQUIRE(x);
    CHECK_OK(cnn_tensor_to(x, CNN_CUDA(0), &g));
    CHECK_OK(cnn_tensor_to(g, CNN_CPU, &back));
    CHECK(cnn_tensor_device(back).type == CNN_DEVICE_CPU);
    CHECK(memcmp(cnn_tensor_cdata(x), cnn_tensor_cdata(back), 21 * sizeof(float)) == 0);
    cnn_tensor_free(&back);
    int64_t lab[5] = {0, -5, (int64_t)1 << 40, 9, INT64_MAX}, got[5] = {0};
    cnn_tensor *l = NULL, *lg = NULL, *lc = NULL;
    CHECK_OK(cnn_tensor_from_i64(CNN_SHAPE(5), lab, CNN_CPU, &l));
    CHECK_OK(cnn_tensor_to(l, CNN_CUDA(0), &lg));
    CHECK(cnn_tensor_dtype(lg) == CNN_I64);
    CHECK_OK(cnn_tensor_clone(lg, &lc)); /* device to device */
    CHECK_OK(cnn_tensor_read(lc, got, 5));
    CHECK(memcmp(lab, got, sizeof lab) == 0);
    /* Reading a CUDA tensor while a CPU context is current still works (device-wide wait). */
    cnn_context *ctx = cnn_context_current();
    cnn_context_set_current(NULL);
    float h[21];
    cnn_status st = cnn_tensor_read(g, h, 21);
    cnn_context_set_current(ctx);
    CHECK(st == CNN_OK);
    CHECK(memcmp(cnn_tensor_cdata(x), h, sizeof h) == 0);
    cnn_tensor_free(&x);
    cnn_tensor_free(&g);
    cnn_tensor_free(&l);
    cnn_tensor_free(&lg);
    cnn_tensor_free(&lc);
}

static cnn_status fill_five(void *ud) { return cnn_tensor_fill_((cnn_tensor *)ud, 5.0f); }

/* A read under a CPU context, then a capture: true when both worked and the replay filled x. */
static bool read_under_cpu_then_capture(cnn_tensor *x)
{
    cnn_context *ctx = cnn_context_current();
    cnn_graph *g = NULL;
    float h[16] = {0};
    cnn_context_set_current(NULL);
    bool ok = cnn_tensor_read(x, h, 16) == CNN_OK && h[0] == 2.0f;
    cnn_context_set_current(ctx);
    ok = ok && cnn_graph_capture(fill_five, x, &g) == CNN_OK && cnn_graph_replay(g) == CNN_OK;
    ok = ok && cnn_tensor_read(x, h, 16) == CNN_OK && h[0] == 5.0f && h[15] == 5.0f;
    cnn_graph_destroy(&g);
    return ok;
}

/* A copy under a CPU context waits for the whole device, which a capture on that device must
 * not meet, so captures wait for such waits to end: once done, the wait must not be counted
 * still, or every later capture on the device would wait for ever. On the emulator the check
 * runs in a child process with an alarm (CUDA proper cannot be used across a fork). */
GPU_TEST(cuda_copy_under_a_cpu_context_lets_later_captures_begin)
{
    cnn_tensor *x = NULL;
    CHECK_OK(cnn_tensor_full(CNN_SHAPE(16), 2.0f, CNN_CUDA(0), &x));
    REQUIRE(x);
    CHECK_OK(cnn_synchronize());
    if (!emulated_gpu()) {
        CHECK(read_under_cpu_then_capture(x));
    } else {
        int pid = cnn_test_fork(30);
        if (pid == 0) _exit(read_under_cpu_then_capture(x) ? 0 : 1);
        CHECK(pid > 0 && cnn_test_child_ok(pid));
    }
    cnn_tensor_free(&x);
}

/* Draws n values on the CPU and (into a poisoned tensor) on the GPU from the same state. */
static void random_pair(int dist, int64_t n, float a, float b, float **cpu, float **gpu)
{
    uint64_t seed, offset, off_cpu, off_gpu;
    cnn_rng_get_state(&seed, &offset);
    *cpu = malloc(n * sizeof **cpu);
    *gpu = malloc(n * sizeof **gpu);
    /* 3 poisoned elements past the n filled: the kernels store n values and nothing after
     * them, though a counter gives 4 uniforms or 2 normals (an overrun into them fails). */
    cnn_tensor *t = poisoned(CNN_SHAPE(n + 3), CNN_F32);
    if (!*cpu || !*gpu || !t) {
        cnn_test_fail(__FILE__, __LINE__, "out of memory");
        cnn_tensor_free(&t);
        return;
    }
    CHECK_OK(cnn_rng_fill(*cpu, n, dist, a, b, CNN_CPU));
    cnn_rng_get_state(NULL, &off_cpu);
    cnn_rng_set_state(seed, offset);
    CHECK_OK(cnn_rng_fill(cnn_f32(t), n, dist, a, b, CNN_CUDA(0)));
    cnn_rng_get_state(NULL, &off_gpu);
    CHECK(off_cpu == off_gpu);
    float *all = malloc((size_t)(n + 3) * sizeof *all);
    CHECK(all && cnn_tensor_read(t, all, (size_t)(n + 3)) == CNN_OK);
    if (all) {
        memcpy(*gpu, all, (size_t)n * sizeof **gpu);
        for (int i = 0; i < 3; i++)
            if (!isnan(all[n + i]))
                cnn_test_fail(__FILE__, __LINE__, "random n=%lld (dist %d) wrote element %lld "
                              "past the end", (long long)n, dist, (long long)(n + i));
    }
    free(all);
    cnn_tensor_free(&t);
}

GPU_TEST(cuda_random_matches_cpu)
{
    const int64_t sizes[] = {1, 3, 1001, 300007};
    cnn_manual_seed(20261123);
    float *burn = malloc(10 * sizeof *burn);
    REQUIRE(burn);
    CHECK_OK(cnn_rng_fill(burn, 10, 0, 0, 1, CNN_CPU)); /* start at a nonzero offset */
    free(burn);
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        int64_t n = sizes[k];
        float *c = NULL, *g = NULL;
        random_pair(0, n, -2.0f, 3.0f, &c, &g);
        if (c && g) {
            int64_t bad = 0, out = 0;
            for (int64_t i = 0; i < n; i++) {
                bad += memcmp(&c[i], &g[i], sizeof(float)) != 0;
                out += !(c[i] >= -2.0f && c[i] < 3.0f);
            }
            if (bad) cnn_test_fail(__FILE__, __LINE__, "uniform n=%lld: %lld of %lld differ "
                                   "(first: %.9g vs %.9g)", (long long)n, (long long)bad,
                                   (long long)n, c[0], g[0]);
            CHECK(out == 0);
        }
        free(c);
        free(g);
        for (int m = 0; m < 2; m++) {
            float mean = m ? 0.5f : 0.0f, std = m ? 2.0f : 1.0f;
            random_pair(1, n, mean, std, &c, &g);
            if (c && g) {
                int64_t bad = 0;
                double worst = 0;
                for (int64_t i = 0; i < n; i++) {
                    /* logf/cosf on the device may differ from glibc in the last ulp */
                    double err = fabs((double)c[i] - g[i]);
                    double tol = 1e-6 * (fabs((double)c[i]) + fabs((double)mean)) + 1e-30;
                    if (!(err <= tol)) bad++;
                    if (err > worst) worst = err;
                }
                if (bad) cnn_test_fail(__FILE__, __LINE__, "normal n=%lld mean=%g: %lld differ, "
                                       "max error %.3g", (long long)n, mean, (long long)bad, worst);
            }
            free(c);
            free(g);
        }
    }
    /* The public constructors draw the same values on both devices. */
    cnn_tensor *u = NULL, *ug = NULL;
    cnn_manual_seed(5);
    CHECK_OK(cnn_tensor_uniform(CNN_SHAPE(33), 0.0f, 1.0f, CNN_CPU, &u));
    cnn_manual_seed(5);
    CHECK_OK(cnn_tensor_uniform(CNN_SHAPE(33), 0.0f, 1.0f, CNN_CUDA(0), &ug));
    CHECK(tensors_close("uniform cpu vs gpu", ug, u, 0.0f, 0.0f));
    cnn_tensor_free(&u);
    cnn_tensor_free(&ug);
}

typedef struct {
    uint64_t seed;
    float value;
    int failures;
    char msg[256];
} worker_job;

/* One thread, one context: fills, accumulates and draws on its own stream, and checks its own
 * results (the harness' CHECK is not for other threads). */
static void *worker(void *arg)
{
    worker_job *job = arg;
    cnn_context *ctx = NULL;
    cnn_tensor *x = NULL, *y = NULL, *u = NULL, *ug = NULL;
    const int64_t n = 1 << 18;
    float *h = malloc(n * sizeof *h);
    if (!h || cnn_context_create(CNN_CUDA(0), &ctx) != CNN_OK) {
        job->failures++;
        snprintf(job->msg, sizeof job->msg, "setup: %s", cnn_last_error());
        free(h);
        return NULL;
    }
    cnn_context_set_current(ctx);
    for (int it = 0; it < 20 && !job->failures; it++) {
        cnn_manual_seed(job->seed + (uint64_t)it);
        bool ok = cnn_tensor_full(CNN_SHAPE(n), job->value, CNN_CUDA(0), &x) == CNN_OK &&
                  cnn_tensor_full(CNN_SHAPE(n), (float)it, CNN_CUDA(0), &y) == CNN_OK &&
                  cnn_tensor_accumulate_(x, y) == CNN_OK &&
                  cnn_tensor_read(x, h, (size_t)n) == CNN_OK;
        for (int64_t i = 0; ok && i < n; i++) ok = h[i] == job->value + (float)it;
        uint64_t seed, off;
        cnn_rng_get_state(&seed, &off);
        ok = ok && cnn_tensor_uniform(CNN_SHAPE(1000), 0, 1, CNN_CUDA(0), &ug) == CNN_OK;
        cnn_rng_set_state(seed, off);
        ok = ok && cnn_tensor_uniform(CNN_SHAPE(1000), 0, 1, CNN_CPU, &u) == CNN_OK &&
             cnn_tensor_read(ug, h, 1000) == CNN_OK &&
             memcmp(h, cnn_tensor_cdata(u), 1000 * sizeof *h) == 0;
        if (!ok) {
            job->failures++;
            snprintf(job->msg, sizeof job->msg, "iteration %d: %s", it, cnn_last_error());
        }
        cnn_tensor_free(&x);
        cnn_tensor_free(&y);
        cnn_tensor_free(&u);
        cnn_tensor_free(&ug);
    }
    cnn_context_destroy(&ctx);
    free(h);
    return NULL;
}

GPU_TEST(cuda_two_threads_two_contexts)
{
    worker_job jobs[2] = {{.seed = 11, .value = 1.0f}, {.seed = 977, .value = -40.0f}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++) REQUIRE(pthread_create(&th[i], NULL, worker, &jobs[i]) == 0);
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < 2; i++)
        if (jobs[i].failures) cnn_test_fail(__FILE__, __LINE__, "thread %d: %s", i, jobs[i].msg);
    /* This thread's context was untouched by the others. */
    CHECK(cnn_current_device().type == CNN_DEVICE_CUDA);
    cnn_tensor *t = NULL;
    CHECK_OK(cnn_tensor_ones(CNN_SHAPE(2), CNN_CUDA(0), &t));
    cnn_tensor_free(&t);
}

GPU_TEST(cuda_mixing_devices_is_refused)
{
    cnn_tensor *a = NULL, *b = NULL, *y = NULL, *big = NULL;
    CHECK_OK(cnn_tensor_ones(CNN_SHAPE(2, 3), CNN_CPU, &a));
    CHECK_OK(cnn_tensor_ones(CNN_SHAPE(2, 3), CNN_CUDA(0), &b));
    CHECK_ERR(cnn_add(a, b, &y), CNN_ERR_DEVICE);
    CHECK(y == NULL);
    CHECK_ERR(cnn_add(b, a, &y), CNN_ERR_DEVICE);
    CHECK(y == NULL);
    /* Copies across devices must still agree on shape. */
    CHECK_OK(cnn_tensor_ones(CNN_SHAPE(3, 2), CNN_CUDA(0), &big));
    CHECK_ERR(cnn_tensor_copy_(a, big), CNN_ERR_SHAPE);
    /* A CUDA tensor cannot be made while a CPU context is current. */
    cnn_context *ctx = cnn_context_current();
    cnn_context_set_current(NULL);
    cnn_tensor *t = NULL;
    cnn_clear_error();
    cnn_status st = cnn_tensor_zeros(CNN_SHAPE(2), CNN_CUDA(0), &t);
    cnn_context_set_current(ctx);
    CHECK(st == CNN_ERR_DEVICE && t == NULL);
    cnn_tensor_free(&a);
    cnn_tensor_free(&b);
    cnn_tensor_free(&big);
}

#endif /* CNN_WITH_CUDA */
