/* test_cuda_transfer.c — getting data onto the GPU: pinned host tensors (asynchronous copies,
 * blocks not reused under a running copy), the loader delivering batches to a CUDA device on
 * its own stream (same batches as on the CPU, no cudaMalloc in steady state, device blocks not
 * reused while the compute stream still reads them), and clean refusals without a GPU. */
#include "test.h"

#include <pthread.h>

#include "data_fixtures.h"

static cnn_loader_options options(const cnn_dataset *ds, int batch, int workers, cnn_device dev)
{
    cnn_loader_options o = cnn_loader_default_options(ds, true, 12, batch);
    o.num_workers = workers;
    o.seed = 77;
    o.device = dev;
    return o;
}

TEST(pinned_memory_and_cuda_loader_refused_without_gpu)
{
    cnn_tensor *t = NULL;
    CHECK_OK(cnn_tensor_zeros(CNN_SHAPE(4), CNN_CPU, &t));
    CHECK(!cnn_tensor_is_pinned(t));
    CHECK(!cnn_tensor_is_pinned(NULL));
    cnn_tensor_free(&t);
    if (cnn_cuda_device_count() > 0) {
        cnn_test_skip("a CUDA device is present (the GPU tests cover it)");
        return;
    }
    CHECK_ERR(cnn_tensor_empty_pinned(CNN_SHAPE(16), CNN_F32, &t), CNN_ERR_DEVICE);
    CHECK(t == NULL);
    CHECK(strstr(cnn_last_error(), "pinned") != NULL);

    cnn_dataset *ds = data_test_synthetic(20, 12, 12);
    REQUIRE(ds != NULL);
    cnn_loader_options o = options(ds, 4, 1, CNN_CUDA(0));
    cnn_loader *l = NULL;
    CHECK_ERR(cnn_loader_create(ds, &o, &l), CNN_ERR_DEVICE);
    CHECK(l == NULL);
    CHECK(strstr(cnn_last_error(), "loader_create") != NULL);
    CHECK(strstr(cnn_last_error(), "cuda:0") != NULL);
    o.device.type = (cnn_device_type)7;
    CHECK_ERR(cnn_loader_create(ds, &o, &l), CNN_ERR_INVALID_ARG);
    cnn_dataset_destroy(&ds);
}

/* A pinned tensor of n floats with values base + i. */
static cnn_tensor *pinned_ramp(int64_t n, float base)
{
    cnn_tensor *t = NULL;
    if (cnn_tensor_empty_pinned(CNN_SHAPE(n), CNN_F32, &t) != CNN_OK) return NULL;
    float *p = cnn_tensor_data(t);
    for (int64_t i = 0; i < n; i++) p[i] = base + (float)(i % 1000003);
    return t;
}

static int64_t ramp_mismatches(const cnn_tensor *dev, int64_t n, float base)
{
    float *h = malloc((size_t)n * sizeof *h);
    if (!h || cnn_tensor_read(dev, h, (size_t)n) != CNN_OK) {
        free(h);
        return -1;
    }
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) bad += h[i] != base + (float)(i % 1000003);
    free(h);
    return bad;
}

GPU_TEST(cuda_pinned_copies_land_and_blocks_wait_for_them)
{
    /* 64 MiB copies queued back to back, each source released at once: a cached pinned block
     * handed out again while its copy still runs would corrupt an earlier tensor. */
    const int64_t n = 16 << 20;
    enum { K = 6 };
    cnn_tensor *dev[K] = {0};
    for (int k = 0; k < K; k++) {
        cnn_tensor *h = pinned_ramp(n, (float)(k * 10));
        REQUIRE(h != NULL);
        CHECK(cnn_tensor_is_pinned(h));
        CHECK(cnn_tensor_device(h).type == CNN_DEVICE_CPU);
        CHECK_OK(cnn_tensor_to(h, CNN_CUDA(0), &dev[k]));
        cnn_tensor_free(&h);
    }
    for (int k = 0; k < K; k++) {
        CHECK(ramp_mismatches(dev[k], n, (float)(k * 10)) == 0);
        cnn_tensor_free(&dev[k]);
    }
    /* Device to pinned host lands before the call returns. */
    cnn_tensor *d = NULL, *h = NULL;
    CHECK_OK(cnn_tensor_full(CNN_SHAPE(1000), 2.5f, CNN_CUDA(0), &d));
    CHECK_OK(cnn_tensor_empty_pinned(CNN_SHAPE(1000), CNN_F32, &h));
    CHECK_OK(cnn_tensor_copy_(h, d));
    CHECK(cnn_tensor_cdata(h)[999] == 2.5f);
    cnn_tensor_free(&d);
    cnn_tensor_free(&h);
    CHECK_OK(cnn_cuda_empty_cache());
}

/* The same into non-contiguous destinations (transposed views), which go through a contiguous
 * device copy first: that copy too reads the pinned source after the call returns, so its
 * block must wait for it (it was not recorded on this path). */
GPU_TEST(cuda_pinned_copies_into_views_land)
{
    const int64_t side = 2048, n = side * side;
    enum { K = 4 };
    cnn_tensor *dev[K] = {0}, *view[K] = {0};
    for (int k = 0; k < K; k++) {
        cnn_tensor *h = pinned_ramp(n, (float)(k * 10)), *h2 = NULL;
        REQUIRE(h != NULL);
        CHECK_OK(cnn_tensor_reshape(h, CNN_SHAPE(side, side), &h2));
        CHECK_OK(cnn_tensor_zeros(CNN_SHAPE(side, side), CNN_CUDA(0), &dev[k]));
        CHECK_OK(cnn_tensor_transpose(dev[k], 0, 1, &view[k]));
        REQUIRE(view[k] && !cnn_tensor_is_contiguous(view[k]));
        CHECK_OK(cnn_tensor_copy_(view[k], h2));
        cnn_tensor_free(&h);
        cnn_tensor_free(&h2);
    }
    for (int k = 0; k < K; k++) {
        CHECK(ramp_mismatches(view[k], n, (float)(k * 10)) == 0);
        cnn_tensor_free(&view[k]);
        cnn_tensor_free(&dev[k]);
    }
    CHECK_OK(cnn_cuda_empty_cache());
}

/* Two threads, each on its own CUDA context (its own stream), copy their halves of the same
 * pinned tensors (views of one block: a data-parallel split of a batch) at the same time; the
 * sources are then released and new pinned tensors filled while the copies may still run. The
 * block's bookkeeping of its last use must cover both streams, or it is handed out again under
 * a running copy (and under ThreadSanitizer the two records race). */
enum { HALVES_K = 4 };
#define HALF_N ((int64_t)500000) /* both halves' ramps stay below ramp_mismatches' period */

typedef struct {
    cnn_tensor **src; /* HALVES_K pinned tensors of 2 * HALF_N floats, shared */
    pthread_barrier_t *bar;
    int half, failures;
    char msg[256];
} half_job;

static void *copy_halves(void *arg)
{
    half_job *j = arg;
    cnn_context *ctx = NULL;
    cnn_tensor *dev[HALVES_K] = {0};
    bool ok = cnn_context_create(CNN_CUDA(0), &ctx) == CNN_OK;
    if (ok) cnn_context_set_current(ctx);
    for (int k = 0; ok && k < HALVES_K; k++) {
        cnn_tensor *v = NULL;
        ok = cnn_tensor_narrow(j->src[k], 0, j->half * HALF_N, HALF_N, &v) == CNN_OK &&
             cnn_tensor_to(v, CNN_CUDA(0), &dev[k]) == CNN_OK;
        cnn_tensor_free(&v);
    }
    if (!ok) snprintf(j->msg, sizeof j->msg, "copy: %s", cnn_last_error());
    pthread_barrier_wait(j->bar); /* the main thread releases and refills the sources */
    pthread_barrier_wait(j->bar);
    for (int k = 0; ok && k < HALVES_K; k++)
        if (ramp_mismatches(dev[k], HALF_N, (float)(k * 10 + j->half * HALF_N)) != 0) {
            ok = false;
            snprintf(j->msg, sizeof j->msg, "copy %d of half %d differs", k, j->half);
        }
    j->failures = !ok;
    for (int k = 0; k < HALVES_K; k++) cnn_tensor_free(&dev[k]);
    cnn_context_set_current(NULL);
    cnn_context_destroy(&ctx);
    return NULL;
}

GPU_TEST(cuda_pinned_halves_copied_from_two_threads_land)
{
    cnn_tensor *src[HALVES_K] = {0}, *again[HALVES_K] = {0};
    for (int k = 0; k < HALVES_K; k++) REQUIRE((src[k] = pinned_ramp(2 * HALF_N, (float)(k * 10))));
    pthread_barrier_t bar;
    REQUIRE(pthread_barrier_init(&bar, NULL, 3) == 0);
    half_job jobs[2] = {{.src = src, .bar = &bar, .half = 0}, {.src = src, .bar = &bar, .half = 1}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++) REQUIRE(pthread_create(&th[i], NULL, copy_halves, &jobs[i]) == 0);
    pthread_barrier_wait(&bar);
    for (int k = 0; k < HALVES_K; k++) {
        cnn_tensor_free(&src[k]);
        again[k] = pinned_ramp(2 * HALF_N, -1000.0f); /* reuses a block only once it is idle */
        CHECK(again[k] != NULL);
    }
    pthread_barrier_wait(&bar);
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    pthread_barrier_destroy(&bar);
    for (int i = 0; i < 2; i++)
        if (jobs[i].failures) cnn_test_fail(__FILE__, __LINE__, "thread %d: %s", i, jobs[i].msg);
    for (int k = 0; k < HALVES_K; k++) cnn_tensor_free(&again[k]);
    CHECK_OK(cnn_cuda_empty_cache());
}

/* Results read back without waiting for the work queued after them: the copy captures the
 * source as the stream reaches it (a later fill does not show), lands by cnn_tensor_wait, and
 * a bad label is still reported, by the next call that waits for the whole stream. */
GPU_TEST(cuda_copy_start_reads_back_without_stalling)
{
    const int64_t n = 1 << 20;
    cnn_tensor *h = pinned_ramp(n, 7.0f), *d = NULL, *back = NULL, *pageable = NULL;
    REQUIRE(h != NULL);
    CHECK_OK(cnn_tensor_to(h, CNN_CUDA(0), &d));
    CHECK_OK(cnn_tensor_empty_pinned(CNN_SHAPE(n), CNN_F32, &back));
    CHECK_OK(cnn_tensor_copy_start_(back, d));
    CHECK_OK(cnn_tensor_fill_(d, -1.0f)); /* queued after the copy */
    CHECK_OK(cnn_tensor_wait(back));
    const float *b = cnn_tensor_cdata(back);
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) bad += b[i] != 7.0f + (float)(i % 1000003);
    CHECK(bad == 0);
    CHECK(ramp_mismatches(d, n, 7.0f) == n); /* the fill did run */
    /* A non-contiguous source (a transposed view) is made contiguous on the device first. */
    const float six[6] = {0, 1, 2, 3, 4, 5};
    cnn_tensor *m = NULL, *mt = NULL, *mh = NULL, *m23 = NULL;
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(6), six, CNN_CUDA(0), &m));
    CHECK_OK(cnn_tensor_reshape(m, CNN_SHAPE(2, 3), &m23));
    CHECK_OK(cnn_tensor_transpose(m23, 0, 1, &mt));
    CHECK_OK(cnn_tensor_empty_pinned(CNN_SHAPE(3, 2), CNN_F32, &mh));
    CHECK_OK(cnn_tensor_copy_start_(mh, mt));
    CHECK_OK(cnn_tensor_wait(mh));
    const float *v = cnn_tensor_cdata(mh);
    CHECK(v[0] == 0 && v[1] == 3 && v[2] == 1 && v[3] == 4 && v[4] == 2 && v[5] == 5);
    /* Only pinned destinations, of the source's shape and dtype. */
    CHECK_OK(cnn_tensor_zeros(CNN_SHAPE(n), CNN_CPU, &pageable));
    CHECK_ERR(cnn_tensor_copy_start_(pageable, d), CNN_ERR_INVALID_ARG);
    CHECK(strstr(cnn_last_error(), "cnn_tensor_empty_pinned") != NULL);
    CHECK_ERR(cnn_tensor_copy_start_(mh, d), CNN_ERR_SHAPE);
    /* A bad label: the loss read back early is NaN; the next full wait names the label. */
    cnn_tensor *logits = NULL, *labels = NULL, *loss = NULL, *lh = NULL;
    const int64_t lab[2] = {1, 9};
    CHECK_OK(cnn_tensor_zeros(CNN_SHAPE(2, 4), CNN_CUDA(0), &logits));
    CHECK_OK(cnn_tensor_from_i64(CNN_SHAPE(2), lab, CNN_CUDA(0), &labels));
    CHECK_OK(cnn_cross_entropy(logits, labels, 0.0f, &loss));
    CHECK_OK(cnn_tensor_empty_pinned(cnn_tensor_shape(loss), CNN_F32, &lh));
    CHECK_OK(cnn_tensor_copy_start_(lh, loss));
    CHECK_OK(cnn_tensor_wait(lh));
    CHECK(isnan(cnn_tensor_cdata(lh)[0]));
    CHECK_ERR(cnn_synchronize(), CNN_ERR_INVALID_ARG);
    CHECK(strstr(cnn_last_error(), "label 9") != NULL);
    CHECK_OK(cnn_synchronize());
    cnn_tensor *tensors[] = {h, d, back, pageable, m, m23, mt, mh, logits, labels, loss, lh};
    for (size_t i = 0; i < sizeof tensors / sizeof *tensors; i++) cnn_tensor_free(&tensors[i]);
}

/* Reads a batch (on any device) into host arrays. */
static int read_batch(const cnn_tensor *x, const cnn_tensor *y, float *px, int64_t *py)
{
    int64_t b = cnn_tensor_dim(x, 0);
    if (cnn_tensor_read(x, px, (size_t)cnn_tensor_numel(x)) != CNN_OK) return -1;
    return cnn_tensor_read(y, py, (size_t)b) == CNN_OK ? 0 : -1;
}

GPU_TEST(cuda_loader_delivers_the_cpu_batches_on_the_device)
{
    cnn_dataset *ds = data_test_synthetic(70, 12, 12);
    REQUIRE(ds != NULL);
    cnn_loader_options oc = options(ds, 16, 2, CNN_CPU), og = options(ds, 16, 2, CNN_CUDA(0));
    cnn_loader *lc = NULL, *lg = NULL;
    REQUIRE(cnn_loader_create(ds, &oc, &lc) == CNN_OK);
    REQUIRE(cnn_loader_create(ds, &og, &lg) == CNN_OK);
    float a[16 * 144], b[16 * 144];
    int64_t la[16], lb[16];
    int64_t steady_mallocs = -1;
    for (int64_t epoch = 0; epoch < 4; epoch++) {
        CHECK_OK(cnn_loader_start_epoch(lc, epoch));
        CHECK_OK(cnn_loader_start_epoch(lg, epoch));
        if (epoch == 2) {
            cnn_cuda_memory_stats ms;
            CHECK_OK(cnn_cuda_get_memory_stats(0, &ms));
            steady_mallocs = (int64_t)ms.n_cuda_malloc;
        }
        int nb = 0;
        for (;;) {
            cnn_tensor *xc = NULL, *yc = NULL, *xg = NULL, *yg = NULL;
            CHECK_OK(cnn_loader_next(lc, &xc, &yc));
            CHECK_OK(cnn_loader_next(lg, &xg, &yg));
            CHECK((xc == NULL) == (xg == NULL));
            if (!xc || !xg) {
                cnn_tensor_free(&xc);
                cnn_tensor_free(&xg);
                break;
            }
            nb++;
            /* The device loader is a batch ahead; its position is still the caller's. */
            CHECK(cnn_loader_position(lg) == cnn_loader_position(lc));
            CHECK(cnn_tensor_device(xg).type == CNN_DEVICE_CUDA);
            CHECK(cnn_tensor_device(yg).type == CNN_DEVICE_CUDA);
            CHECK(cnn_tensor_dim(xg, 0) == cnn_tensor_dim(xc, 0));
            int64_t n = cnn_tensor_numel(xc), bs = cnn_tensor_dim(xc, 0);
            CHECK(read_batch(xc, yc, a, la) == 0 && read_batch(xg, yg, b, lb) == 0);
            CHECK(memcmp(a, b, (size_t)n * sizeof(float)) == 0);
            CHECK(memcmp(la, lb, (size_t)bs * sizeof(int64_t)) == 0);
            cnn_tensor_free(&xc);
            cnn_tensor_free(&yc);
            cnn_tensor_free(&xg);
            cnn_tensor_free(&yg);
        }
        CHECK(nb == 5); /* 70 samples in batches of 16 */
    }
    cnn_cuda_memory_stats ms;
    CHECK_OK(cnn_cuda_get_memory_stats(0, &ms));
    CHECK((int64_t)ms.n_cuda_malloc == steady_mallocs); /* epochs 2 and 3 reused blocks */

    /* Asked for from a CPU context, a CUDA loader refuses. */
    cnn_context *gpu = cnn_context_current();
    cnn_context_set_current(NULL);
    cnn_tensor *x = NULL, *y = NULL;
    CHECK_ERR(cnn_loader_next(lg, &x, &y), CNN_ERR_DEVICE);
    CHECK(strstr(cnn_last_error(), "cuda:0") != NULL);
    cnn_context_set_current(gpu);
    cnn_loader_destroy(&lg);
    cnn_loader_destroy(&lc);
    cnn_dataset_destroy(&ds);
}

GPU_TEST(cuda_loader_batches_outlive_their_release_on_the_compute_stream)
{
    /* Each batch feeds a long chain of kernels queued on the compute stream and is released at
     * once; the loader's stream copies the following batches meanwhile. If a released batch's
     * block were refilled before the queued kernels had read it, a result would be wrong. */
    enum { B = 32, STEPS = 12, CHAIN = 40 };
    cnn_dataset *ds = data_test_synthetic(B * STEPS, 12, 12);
    REQUIRE(ds != NULL);
    cnn_loader_options oc = options(ds, B, 2, CNN_CPU), og = options(ds, B, 2, CNN_CUDA(0));
    cnn_loader *lc = NULL, *lg = NULL;
    REQUIRE(cnn_loader_create(ds, &oc, &lc) == CNN_OK);
    REQUIRE(cnn_loader_create(ds, &og, &lg) == CNN_OK);
    cnn_tensor *out[STEPS] = {0};
    bool was = cnn_set_grad_enabled(false);
    for (int s = 0; s < STEPS; s++) {
        cnn_tensor *x = NULL, *y = NULL;
        CHECK_OK(cnn_loader_next(lg, &x, &y));
        REQUIRE(x != NULL);
        cnn_tensor *acc = NULL;
        CHECK_OK(cnn_scale(x, 1.0f, &acc));
        for (int c = 0; c < CHAIN; c++) {
            cnn_tensor *nx = NULL;
            CHECK_OK(cnn_add(acc, x, &nx));
            cnn_tensor_free(&acc);
            acc = nx;
        }
        out[s] = acc;
        cnn_tensor_free(&x);
        cnn_tensor_free(&y);
    }
    float *g = malloc(B * 144 * sizeof *g);
    REQUIRE(g != NULL);
    for (int s = 0; s < STEPS; s++) {
        cnn_tensor *x = NULL, *y = NULL;
        CHECK_OK(cnn_loader_next(lc, &x, &y));
        REQUIRE(x != NULL);
        CHECK_OK(cnn_tensor_read(out[s], g, B * 144));
        const float *p = cnn_tensor_cdata(x);
        int64_t bad = 0;
        for (int i = 0; i < B * 144; i++) {
            float want = p[i];
            for (int k = 0; k < CHAIN; k++) want += p[i];
            bad += g[i] != want;
        }
        if (bad) printf("  step %d: %lld of %d values differ\n", s, (long long)bad, B * 144);
        CHECK(bad == 0);
        cnn_tensor_free(&out[s]);
        cnn_tensor_free(&x);
        cnn_tensor_free(&y);
    }
    cnn_set_grad_enabled(was);
    free(g);
    cnn_loader_destroy(&lg);
    cnn_loader_destroy(&lc);
    cnn_dataset_destroy(&ds);
}
