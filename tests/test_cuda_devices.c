/* test_cuda_devices.c — two CUDA devices at once (skipped with fewer; the emulator makes two
 * under CNN_EMU_DEVICES=2, which make check-cuda-emu runs): a training step on either device,
 * from one thread switching contexts and from two threads at once, gives the CPU's result;
 * tensors move between the devices (pinned host memory feeding both); an op mixing devices, a
 * tensor or timer used under the other device's context are refused; each device's allocator
 * counts its own memory. */
#include "gradcheck.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#if CNN_WITH_CUDA

static bool two_devices(void)
{
    if (cnn_cuda_device_count() >= 2) return true;
    cnn_test_skip("needs two CUDA devices");
    return false;
}

enum { N_IN = 7, N_OUT = 3 };

/* x (4, 3, 5, 5), conv w (6, 3, 3, 3) and b, batch-norm gamma and beta, linear wl (5, 150),
 * labels (4): fixed values on the CPU. */
static int make_inputs(cnn_tensor *in[N_IN])
{
    const cnn_shape shapes[N_IN - 1] = {CNN_SHAPE(4, 3, 5, 5), CNN_SHAPE(6, 3, 3, 3),
                                        CNN_SHAPE(6), CNN_SHAPE(6), CNN_SHAPE(6),
                                        CNN_SHAPE(5, 150)};
    cnn_manual_seed(20261207);
    for (int i = 0; i < N_IN - 1; i++) in[i] = rand_tensor(shapes[i], -0.5f, 0.5f, 0);
    const int64_t labels[4] = {0, 3, 4, 1};
    in[N_IN - 1] = NULL;
    if (cnn_tensor_from_i64(CNN_SHAPE(4), labels, CNN_CPU, &in[N_IN - 1]) != CNN_OK) return -1;
    for (int i = 0; i < N_IN; i++)
        if (!in[i]) return -1;
    return 0;
}

/* Two steps of SGD with momentum on conv (pad 1) -> batch norm -> ReLU -> linear ->
 * cross-entropy, on dev under the current context (which must be on dev), from the CPU inputs.
 * out: the last loss and the updated conv and linear weights, on the CPU. */
static cnn_status train_steps(cnn_device dev, cnn_tensor *const in[N_IN], cnn_tensor *out[N_OUT])
{
    cnn_tensor *t[N_IN] = {0}, *h[6] = {0};
    cnn_optim *opt = NULL;
    cnn_status st = CNN_OK;
    for (int i = 0; i < N_IN && st == CNN_OK; i++) {
        st = cnn_tensor_to(in[i], dev, &t[i]);
        if (st == CNN_OK && i >= 1 && i <= 5) st = cnn_tensor_set_requires_grad(t[i], true);
    }
    cnn_optim_config cfg = cnn_optim_defaults(CNN_OPTIM_SGD);
    cfg.lr = 0.1f;
    cfg.momentum = 0.9f;
    if (st == CNN_OK) st = cnn_optim_create(&cfg, &opt);
    const char *names[5] = {"w", "b", "gamma", "beta", "wl"};
    for (int i = 0; i < 5 && st == CNN_OK; i++)
        st = cnn_optim_add_param(opt, names[i], t[i + 1], true);
    const cnn_conv2d_params p = {.padding = {1, 1}};
    for (int step = 0; step < 2 && st == CNN_OK; step++) {
        for (int i = 0; i < 6; i++) cnn_tensor_free(&h[i]);
        cnn_optim_zero_grad(opt);
        st = cnn_conv2d(t[0], t[1], t[2], &p, &h[0]);
        if (st == CNN_OK)
            st = cnn_batch_norm(h[0], NULL, NULL, t[3], t[4], true, 0.1f, 1e-5f, &h[1]);
        if (st == CNN_OK) st = cnn_relu(h[1], &h[2]);
        if (st == CNN_OK) st = cnn_flatten(h[2], 1, &h[3]);
        if (st == CNN_OK) st = cnn_linear(h[3], t[5], NULL, &h[4]);
        if (st == CNN_OK) st = cnn_cross_entropy(h[4], t[6], 0.0f, &h[5]);
        if (st == CNN_OK) st = cnn_backward(h[5]);
        if (st == CNN_OK) st = cnn_optim_step(opt);
    }
    cnn_tensor *res[N_OUT] = {h[5], t[1], t[5]};
    for (int i = 0; i < N_OUT && st == CNN_OK; i++) st = cnn_tensor_to(res[i], CNN_CPU, &out[i]);
    if (st == CNN_OK) st = cnn_synchronize();
    cnn_optim_destroy(&opt);
    for (int i = 0; i < 6; i++) cnn_tensor_free(&h[i]);
    for (int i = 0; i < N_IN; i++) cnn_tensor_free(&t[i]);
    return st;
}

static int outputs_close(const char *what, cnn_tensor *const a[N_OUT], cnn_tensor *const b[N_OUT])
{
    static const char *const names[N_OUT] = {"loss", "conv weight", "linear weight"};
    int ok = 1;
    for (int i = 0; i < N_OUT; i++) {
        char label[96];
        snprintf(label, sizeof label, "%s: %s", what, names[i]);
        ok &= a[i] && b[i] && tensors_close(label, a[i], b[i], 1e-5f, 1e-4f);
    }
    return ok;
}

static void free_outputs(cnn_tensor *o[N_OUT])
{
    for (int i = 0; i < N_OUT; i++) cnn_tensor_free(&o[i]);
}

GPU_TEST(cuda_two_devices_train_as_the_cpu_from_one_thread)
{
    if (!two_devices()) return;
    cnn_tensor *in[N_IN] = {0}, *cpu[N_OUT] = {0}, *dev[2][N_OUT] = {{0}};
    REQUIRE(make_inputs(in) == 0);
    cnn_context *was = cnn_context_current(), *ctx[2] = {NULL, NULL};
    cnn_context_set_current(NULL);
    CHECK_OK(train_steps(CNN_CPU, in, cpu));
    /* Alternating: the thread's current CUDA device changes under the library at every switch. */
    for (int d = 1; d >= 0; d--) CHECK_OK(cnn_context_create(CNN_CUDA(d), &ctx[d]));
    for (int d = 1; d >= 0 && ctx[0] && ctx[1]; d--) {
        cnn_context_set_current(ctx[d]);
        CHECK(cnn_current_device().index == d);
        CHECK_OK(train_steps(CNN_CUDA(d), in, dev[d]));
    }
    cnn_context_set_current(was);
    CHECK(outputs_close("cuda:1 against the CPU", dev[1], cpu));
    CHECK(outputs_close("cuda:0 against the CPU", dev[0], cpu));
    for (int d = 0; d < 2; d++) {
        free_outputs(dev[d]);
        cnn_context_destroy(&ctx[d]);
    }
    free_outputs(cpu);
    for (int i = 0; i < N_IN; i++) cnn_tensor_free(&in[i]);
}

typedef struct device_job {
    int device;
    cnn_tensor *const *in;
    cnn_tensor *out[N_OUT];
    char error[256];
} device_job;

static void *device_worker(void *arg)
{
    device_job *j = arg;
    cnn_context *ctx = NULL;
    cnn_status st = cnn_context_create(CNN_CUDA(j->device), &ctx);
    if (st == CNN_OK) {
        cnn_context_set_current(ctx);
        for (int round = 0; round < 3 && st == CNN_OK; round++) {
            free_outputs(j->out);
            st = train_steps(CNN_CUDA(j->device), j->in, j->out);
        }
        cnn_context_set_current(NULL);
    }
    if (st != CNN_OK) snprintf(j->error, sizeof j->error, "%s", cnn_last_error());
    cnn_context_destroy(&ctx);
    return NULL;
}

GPU_TEST(cuda_each_device_trains_on_a_thread_of_its_own)
{
    if (!two_devices()) return;
    cnn_tensor *in[N_IN] = {0}, *cpu[N_OUT] = {0};
    REQUIRE(make_inputs(in) == 0);
    cnn_context *was = cnn_context_current();
    cnn_context_set_current(NULL);
    CHECK_OK(train_steps(CNN_CPU, in, cpu));
    cnn_context_set_current(was);
    device_job jobs[2] = {{.device = 1, .in = in}, {.device = 0, .in = in}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        REQUIRE(pthread_create(&th[i], NULL, device_worker, &jobs[i]) == 0);
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < 2; i++) {
        if (jobs[i].error[0])
            cnn_test_fail(__FILE__, __LINE__, "cuda:%d: %s", jobs[i].device, jobs[i].error);
        char what[32];
        snprintf(what, sizeof what, "thread on cuda:%d", jobs[i].device);
        CHECK(outputs_close(what, jobs[i].out, cpu));
        free_outputs(jobs[i].out);
    }
    free_outputs(cpu);
    for (int i = 0; i < N_IN; i++) cnn_tensor_free(&in[i]);
}

/* Whether t holds the n values v (read back to the host). */
static bool holds(const cnn_tensor *t, const float *v, size_t n)
{
    float got[12];
    return t && n <= 12 && cnn_tensor_read(t, got, n) == CNN_OK &&
           memcmp(got, v, n * sizeof *v) == 0;
}

GPU_TEST(cuda_tensors_cross_devices_only_when_asked)
{
    if (!two_devices()) return;
    const float v[12] = {-6, -5, -4, -3, -2, -1, 0.5f, 1, 2, 3, 4, 5};
    float r[12];
    for (int i = 0; i < 12; i++) r[i] = v[i] > 0 ? v[i] : 0;
    cnn_context *was = cnn_context_current(), *ctx[2] = {NULL, NULL};
    for (int d = 0; d < 2; d++) REQUIRE(cnn_context_create(CNN_CUDA(d), &ctx[d]) == CNN_OK);
    cnn_tensor *a0 = NULL, *a1 = NULL, *b1 = NULL, *back = NULL, *y = NULL, *p = NULL;
    cnn_tensor *d[2] = {NULL, NULL};

    cnn_context_set_current(ctx[0]);
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(3, 4), v, CNN_CUDA(0), &a0));
    CHECK_OK(cnn_synchronize());
    cnn_context_set_current(ctx[1]);
    CHECK_OK(cnn_tensor_to(a0, CNN_CUDA(1), &a1));
    CHECK(a1 && cnn_tensor_device(a1).index == 1 && holds(a1, v, 12));
    CHECK_ERR(cnn_add(a0, a1, &y), CNN_ERR_DEVICE);
    CHECK(y == NULL);
    CHECK_ERR(cnn_relu(a0, &y), CNN_ERR_DEVICE); /* cuda:0's tensor under cuda:1's context */
    CHECK(y == NULL);
    CHECK_OK(cnn_relu(a1, &b1));
    CHECK_OK(cnn_synchronize());
    cnn_context_set_current(ctx[0]);
    CHECK_OK(cnn_tensor_to(b1, CNN_CUDA(0), &back));
    CHECK(holds(back, r, 12));
    CHECK_OK(cnn_tensor_copy_(a0, b1)); /* into cuda:0's tensor, from cuda:1's */
    CHECK(holds(a0, r, 12));

    /* Pinned host memory feeds both devices. */
    CHECK_OK(cnn_tensor_empty_pinned(CNN_SHAPE(12), CNN_F32, &p));
    CHECK_OK(cnn_tensor_write(p, v, 12));
    for (int k = 1; k >= 0; k--) {
        cnn_context_set_current(ctx[k]);
        CHECK_OK(cnn_tensor_zeros(CNN_SHAPE(12), CNN_CUDA(k), &d[k]));
        CHECK_OK(cnn_tensor_copy_(d[k], p));
        CHECK(holds(d[k], v, 12));
    }

    /* Each device's allocator counts its own memory. */
    cnn_context_set_current(ctx[1]);
    cnn_cuda_memory_stats s0, s1, t0, t1;
    CHECK_OK(cnn_cuda_get_memory_stats(0, &s0));
    CHECK_OK(cnn_cuda_get_memory_stats(1, &s1));
    cnn_tensor *big = NULL;
    CHECK_OK(cnn_tensor_empty(CNN_SHAPE(2 << 20), CNN_F32, CNN_CUDA(1), &big));
    CHECK_OK(cnn_cuda_get_memory_stats(0, &t0));
    CHECK_OK(cnn_cuda_get_memory_stats(1, &t1));
    CHECK(t1.allocated_bytes >= s1.allocated_bytes + (8u << 20));
    CHECK(t0.allocated_bytes == s0.allocated_bytes);
    const uint64_t mallocs = t1.n_cuda_malloc;
    /* Released under the other device's context (after a wait under its own, as the API asks):
     * its block goes back to cuda:1's cache, and cuda:1 takes it again. */
    CHECK_OK(cnn_synchronize());
    cnn_context_set_current(ctx[0]);
    cnn_tensor_free(&big);
    CHECK_OK(cnn_cuda_get_memory_stats(1, &t1));
    CHECK(t1.allocated_bytes == s1.allocated_bytes);
    cnn_context_set_current(ctx[1]);
    CHECK_OK(cnn_tensor_full(CNN_SHAPE(2 << 20), 1.5f, CNN_CUDA(1), &big));
    CHECK_OK(cnn_cuda_get_memory_stats(1, &t1));
    CHECK(t1.n_cuda_malloc == mallocs); /* the first one's block, reused */
    cnn_tensor_free(&big);

    /* A timer belongs to its device. */
    cnn_timer *tm = NULL;
    double ms = -1;
    CHECK_OK(cnn_timer_create(&tm));
    CHECK_OK(cnn_timer_start(tm));
    CHECK_OK(cnn_relu(a1, &y));
    CHECK_OK(cnn_timer_stop(tm));
    CHECK_OK(cnn_timer_elapsed_ms(tm, &ms));
    CHECK(ms >= 0);
    cnn_context_set_current(ctx[0]);
    CHECK_ERR(cnn_timer_start(tm), CNN_ERR_DEVICE);
    CHECK(strstr(cnn_last_error(), "cuda:1") && strstr(cnn_last_error(), "cuda:0"));
    CHECK_OK(cnn_timer_elapsed_ms(tm, &ms)); /* reading it needs no context of its device */
    cnn_timer_destroy(&tm);

    /* Each tensor is released under its device's context. */
    CHECK_OK(cnn_synchronize());
    cnn_tensor_free(&a0);
    cnn_tensor_free(&back);
    cnn_tensor_free(&d[0]);
    cnn_context_set_current(ctx[1]);
    CHECK_OK(cnn_synchronize());
    cnn_tensor_free(&a1);
    cnn_tensor_free(&b1);
    cnn_tensor_free(&y);
    cnn_tensor_free(&d[1]);
    cnn_tensor_free(&p);
    CHECK_OK(cnn_cuda_empty_cache());
    cnn_context_set_current(was);
    for (int k = 0; k < 2; k++) cnn_context_destroy(&ctx[k]);
}

#endif /* CNN_WITH_CUDA */
