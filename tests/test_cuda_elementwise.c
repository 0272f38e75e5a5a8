/* test_cuda_elementwise.c — the CUDA kernels of the elementwise family (add, scale, sum, mean,
 * concat), activations, dropout, softmax / log_softmax and cross-entropy, each
 * against the CPU reference on fresh random inputs of awkward shapes. GPU tests only: skipped
 * (and counted as skipped) without a device. Tolerances are |gpu - cpu| <= abs + rel * |cpu|. */
#include "gpu_parity.h"

#include <stdint.h>
#include <string.h>

#if CNN_WITH_CUDA
#include "../cuda/cuda_api.h"
#endif

/* Tolerances per op family (abs, rel). */
#define EW_ATOL 1e-6f
#define EW_RTOL 1e-5f
#define SM_ATOL 1e-5f
#define SM_RTOL 1e-4f

/* f on inputs uniform in [-3, 3) of the given shapes, on the CPU and on the GPU (gpu_parity). */
static void check_op(const char *what, gc_fn f, void *ud, int n, const cnn_shape *shapes,
                     float atol, float rtol)
{
    gp_case c = {.name = what, .f = f, .ud = ud, .n = n, .lo = -3, .hi = 3, .atol = atol,
                 .rtol = rtol};
    for (int i = 0; i < n && i < GP_MAX_IN; i++) c.in[i] = shapes[i];
    gpu_parity(&c, CNN_BACKEND_AUTO);
}

/* Shapes every unary op runs on: odd sizes, batch 1 with 513 channels, sizes not a multiple of
 * 4, a scalar, and one past what one grid covers (the grid-stride loop). */
static const cnn_shape k_shapes[] = {
    {4, {3, 5, 7, 11}}, {4, {1, 513, 3, 3}}, {1, {7}}, {2, {2, 3}}, {0, {0}}, {1, {1}},
    {4, {2, 600, 41, 43}},
};
#define N_SHAPES ((int)(sizeof k_shapes / sizeof *k_shapes))

/* ---- add, scale, sum, mean, concat ----------------------------------------------------------- */
/* The ops as gradcheck's gc_fn; ud points to a letter: + add, r add_relu, * scale, s sum,
 * m mean. */
static cnn_status f_ew(cnn_tensor *const *x, void *ud, cnn_tensor **y)
{
    switch (*(const char *)ud) {
    case '+': return cnn_add(x[0], x[1], y);
    case 'r': return cnn_add_relu(x[0], x[1], y);
    case '*': return cnn_scale(x[0], -1.75f, y);
    case 's': return cnn_sum(x[0], y);
    default: return cnn_mean(x[0], y);
    }
}

GPU_TEST(cuda_add_scale_match_cpu)
{
    for (int i = 0; i < N_SHAPES; i++) {
        cnn_shape two[2] = {k_shapes[i], k_shapes[i]};
        check_op("add", f_ew, "+", 2, two, EW_ATOL, EW_RTOL);
        check_op("add_relu", f_ew, "r", 2, two, EW_ATOL, EW_RTOL);
        check_op("scale", f_ew, "*", 1, &k_shapes[i], EW_ATOL, EW_RTOL);
    }
}

GPU_TEST(cuda_sum_mean_match_cpu_and_are_deterministic)
{
    for (int i = 0; i < N_SHAPES; i++) {
        check_op("sum", f_ew, "s", 1, &k_shapes[i], 1e-5f, 1e-5f);
        check_op("mean", f_ew, "m", 1, &k_shapes[i], 1e-6f, 1e-5f);
    }
    /* The same input gives the same bits every time (no atomics in the reduction). */
    cnn_tensor *xc = rand_tensor(CNN_SHAPE(2, 600, 41, 43), -1, 1, 0), *xg = NULL;
    REQUIRE(xc && (xg = to_gpu(xc)) != NULL);
    float first = 0, again = 0;
    for (int rep = 0; rep < 5; rep++) {
        cnn_tensor *s = NULL;
        CHECK_OK(cnn_sum(xg, &s));
        CHECK_OK(cnn_tensor_read(s, rep ? &again : &first, 1));
        cnn_tensor_free(&s);
        if (rep) CHECK(memcmp(&first, &again, sizeof first) == 0);
    }
    /* Empty tensors: sum 0, mean NaN, as on the CPU. */
    cnn_tensor *e = NULL, *s = NULL, *m = NULL;
    float vs = NAN, vm = 0;
    CHECK_OK(cnn_tensor_zeros(CNN_SHAPE(0, 5), CNN_CUDA(0), &e));
    poison_cache((cnn_shape[]){CNN_SCALAR}, 1);
    CHECK_OK(cnn_sum(e, &s));
    CHECK_OK(cnn_mean(e, &m));
    CHECK_OK(cnn_tensor_read(s, &vs, 1));
    CHECK_OK(cnn_tensor_read(m, &vm, 1));
    CHECK(vs == 0.0f && isnan(vm));
    cnn_tensor *all[5] = {e, s, m, xc, xg};
    for (int i = 0; i < 5; i++) cnn_tensor_free(&all[i]);
}

static cnn_status f_concat(cnn_tensor *const *x, void *ud, cnn_tensor **y)
{
    const int *p = ud; /* {n, dim} */
    return cnn_concat((const cnn_tensor *const *)x, p[0], p[1], y);
}

GPU_TEST(cuda_concat_matches_cpu)
{
    int a[2] = {3, 1};
    cnn_shape s1[3] = {CNN_SHAPE(2, 3, 5, 7), CNN_SHAPE(2, 513, 5, 7), CNN_SHAPE(2, 1, 5, 7)};
    check_op("concat dim 1", f_concat, a, 3, s1, 0, 0);
    int b[2] = {2, 0};
    cnn_shape s0[2] = {CNN_SHAPE(1, 3, 5), CNN_SHAPE(4, 3, 5)};
    check_op("concat dim 0", f_concat, b, 2, s0, 0, 0);
    int c[2] = {3, -1};
    cnn_shape s3[3] = {CNN_SHAPE(3, 4, 1), CNN_SHAPE(3, 4, 6), CNN_SHAPE(3, 4, 0)};
    check_op("concat dim -1", f_concat, c, 3, s3, 0, 0);
    int d[2] = {1, 0};
    cnn_shape one[1] = {CNN_SHAPE(11)};
    check_op("concat of one", f_concat, d, 1, one, 0, 0);
    /* Legacy (0,) inputs are left out, first and in the middle. */
    int e[2] = {4, 1};
    cnn_shape s4[4] = {CNN_SHAPE(0), CNN_SHAPE(2, 3, 5, 7), CNN_SHAPE(0), CNN_SHAPE(2, 4, 5, 7)};
    check_op("concat with (0,) inputs", f_concat, e, 4, s4, 0, 0);
}

GPU_TEST(cuda_add_refuses_mixed_devices)
{
    cnn_tensor *a = rand_tensor(CNN_SHAPE(3, 4), -1, 1, 0), *b = NULL, *y = NULL;
    REQUIRE(a && (b = to_gpu(a)) != NULL);
    CHECK_ERR(cnn_add(a, b, &y), CNN_ERR_DEVICE);
    CHECK(y == NULL);
    CHECK_ERR(cnn_add(b, a, &y), CNN_ERR_DEVICE);
    CHECK(y == NULL);
    const cnn_tensor *xs[2] = {b, a};
    CHECK_ERR(cnn_concat(xs, 2, 0, &y), CNN_ERR_DEVICE);
    CHECK(y == NULL);
    cnn_tensor_free(&a);
    cnn_tensor_free(&b);
}

/* ---- activations ----------------------------------------------------------------------------- */
typedef struct {
    int kind; /* 0 relu, 1 leaky, 2 elu, 3 sigmoid, 4 tanh */
    float param;
} act_case;

static cnn_status f_act(cnn_tensor *const *x, void *ud, cnn_tensor **y)
{
    const act_case *c = ud;
    switch (c->kind) {
    case 0: return cnn_relu(x[0], y);
    case 1: return cnn_leaky_relu(x[0], c->param, y);
    case 2: return cnn_elu(x[0], c->param, y);
    case 3: return cnn_sigmoid(x[0], y);
    default: return cnn_tanh(x[0], y);
    }
}

GPU_TEST(cuda_activations_match_cpu)
{
    /* Negative slope / alpha make backward read the input instead of the output. */
    const act_case cases[] = {{0, 0}, {1, 0.1f}, {1, -0.2f}, {2, 1.0f}, {2, -0.5f}, {3, 0}, {4, 0}};
    const char *names[] = {"relu", "leaky_relu 0.1", "leaky_relu -0.2", "elu 1", "elu -0.5",
                           "sigmoid", "tanh"};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++)
        for (int i = 0; i < N_SHAPES; i++)
            check_op(names[c], f_act, (void *)&cases[c], 1, &k_shapes[i], EW_ATOL, EW_RTOL);
}

/* Inputs of exactly +0 and -0, which random inputs never hold: there the CPU's (and PyTorch's)
 * rules give relu's gradient 0 and leaky_relu's and elu's the negative side's (x > 0 is false),
 * so `>` against `>=` in a kernel shows only here. */
GPU_TEST(cuda_activations_at_zero_match_cpu)
{
    const float v[8] = {0.0f, -0.0f, 1.5f, -1.5f, 0.0f, 0.25f, -0.0f, -3.0f};
    const act_case cases[] = {{0, 0}, {1, 0.1f}, {1, -0.2f}, {2, 1.0f}, {2, -0.5f}, {3, 0}, {4, 0}};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        cnn_tensor *xc = NULL, *xg = NULL, *yc = NULL, *yg = NULL, *dc = NULL, *dg = NULL;
        CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(8), v, CNN_CPU, &xc));
        CHECK_OK(cnn_tensor_set_requires_grad(xc, true));
        xg = to_gpu(xc);
        dc = rand_tensor(CNN_SHAPE(8), 0.5f, 1.5f, 0);
        dg = to_gpu(dc);
        REQUIRE(xg && dg);
        CHECK_OK(f_act(&xc, (void *)&cases[c], &yc));
        CHECK_OK(cnn_backward_with_grad(yc, dc));
        poison_cache((cnn_shape[]){CNN_SHAPE(8)}, 1);
        CHECK_OK(f_act(&xg, (void *)&cases[c], &yg));
        poison_cache((cnn_shape[]){CNN_SHAPE(8)}, 1);
        CHECK_OK(cnn_backward_with_grad(yg, dg));
        char name[64];
        snprintf(name, sizeof name, "activation %zu at 0: y", c);
        CHECK(tensors_close(name, yg, yc, EW_ATOL, EW_RTOL));
        snprintf(name, sizeof name, "activation %zu at 0: dx", c);
        CHECK(tensors_close(name, cnn_tensor_grad(xg), cnn_tensor_grad(xc), EW_ATOL, EW_RTOL));
        cnn_tensor *all[6] = {xc, xg, yc, yg, dc, dg};
        for (int i = 0; i < 6; i++) cnn_tensor_free(&all[i]);
    }
}

GPU_TEST(cuda_ops_on_views_match_cpu)
{
    /* A transposed view goes through the contiguous copy first; a view narrowed to start at
     * row 1 stays contiguous but misaligned, which takes the one-float-per-load kernels. */
    cnn_tensor *xc = rand_tensor(CNN_SHAPE(5, 7, 3), -2, 2, 0), *xg = NULL;
    REQUIRE(xc && (xg = to_gpu(xc)) != NULL);
    for (int view = 0; view < 2; view++) {
        cnn_tensor *vc = NULL, *vg = NULL, *y[6] = {0};
        CHECK_OK(view ? cnn_tensor_narrow(xc, 0, 1, 3, &vc) : cnn_tensor_transpose(xc, 0, 2, &vc));
        CHECK_OK(view ? cnn_tensor_narrow(xg, 0, 1, 3, &vg) : cnn_tensor_transpose(xg, 0, 2, &vg));
        for (int d = 0; d < 2; d++) { /* CPU into y[0..2], GPU into y[3..5] */
            cnn_tensor *v = d ? vg : vc;
            poison_cache((cnn_shape[]){cnn_tensor_shape(v)}, 1);
            CHECK_OK(cnn_elu(v, 0.7f, &y[3 * d]));
            CHECK_OK(cnn_add(v, v, &y[3 * d + 1]));
            CHECK_OK(cnn_scale(v, 0.3f, &y[3 * d + 2]));
        }
        for (int k = 0; k < 3; k++)
            CHECK(tensors_close(view ? "op of a narrowed view" : "op of a transposed view",
                                y[3 + k], y[k], EW_ATOL, EW_RTOL));
        for (int k = 0; k < 6; k++) cnn_tensor_free(&y[k]);
        cnn_tensor_free(&vc);
        cnn_tensor_free(&vg);
    }
    cnn_tensor_free(&xc);
    cnn_tensor_free(&xg);
}

/* ---- dropout --------------------------------------------------------------------------------- */
static cnn_status f_dropout(cnn_tensor *const *x, void *ud, cnn_tensor **y)
{
    /* Re-seeded on every call, so the CPU and GPU runs draw from the same state. */
    cnn_manual_seed(4242);
    return cnn_dropout(x[0], *(const float *)ud, true, y);
}

GPU_TEST(cuda_dropout_mask_is_the_cpu_mask)
{
    const float ps[] = {0.3f, 0.5f, 0.9f, 1.0f};
    for (size_t k = 0; k < sizeof ps / sizeof *ps; k++)
        for (int i = 0; i < N_SHAPES; i++) {
            float p = ps[k];
            /* Exact: the same Philox words and one float multiply on both devices. */
            check_op("dropout", f_dropout, &p, 1, &k_shapes[i], 0, 0);
        }
    /* Both devices take the same number of counters from the context stream. */
    cnn_tensor *xc = rand_tensor(CNN_SHAPE(3, 5, 7, 11), -1, 1, 0), *xg = NULL, *y = NULL;
    REQUIRE(xc && (xg = to_gpu(xc)) != NULL);
    uint64_t seed, off[2];
    for (int d = 0; d < 2; d++) {
        cnn_manual_seed(9);
        CHECK_OK(cnn_dropout(d ? xg : xc, 0.5f, true, &y));
        cnn_tensor_free(&y);
        cnn_rng_get_state(&seed, &off[d]);
    }
    CHECK(off[0] == off[1] && off[0] > 0);
    /* Eval mode is the identity on the GPU too. */
    CHECK_OK(cnn_dropout(xg, 0.5f, false, &y));
    CHECK(y == xg);
#if CNN_WITH_CUDA
    /* The kernel stores y[0, n) and nothing past it, for n short of the 4 values of the last
     * Philox call (an op's own output hides an overrun in the allocator's rounding). */
    cnn_tensor *yb = NULL;
    float h[12];
    CHECK_OK(cnn_tensor_full(CNN_SHAPE(12), 7.0f, CNN_CUDA(0), &yb));
    CHECK_OK(cnn_cuda_dropout_f32(cnn_context_current(), cnn_f32(xg), cnn_f32(yb), 9,
                                  (cnn_rng_draw){3, 0, NULL}, 0.5f, 2.0f));
    CHECK_OK(cnn_tensor_read(yb, h, 12));
    CHECK(h[9] == 7.0f && h[10] == 7.0f && h[11] == 7.0f);
    cnn_tensor_free(&yb);
#endif
    cnn_tensor *all[3] = {y, xc, xg};
    for (int i = 0; i < 3; i++) cnn_tensor_free(&all[i]);
}

/* ---- softmax, log_softmax, cross-entropy ----------------------------------------------------- */
typedef struct {
    int dim;
    bool log;
} sm_case;

static cnn_status f_softmax(cnn_tensor *const *x, void *ud, cnn_tensor **y)
{
    const sm_case *c = ud;
    return c->log ? cnn_log_softmax(x[0], c->dim, y) : cnn_softmax(x[0], c->dim, y);
}

GPU_TEST(cuda_softmax_and_log_softmax_match_cpu)
{
    /* Each dim of an odd 4-d shape (inner > 1 and inner == 1 kernels), rows longer than a
     * block, one row, batch 1. */
    const struct {
        cnn_shape s;
        int dim;
    } cases[] = {
        {CNN_SHAPE(3, 5, 7, 11), 0}, {CNN_SHAPE(3, 5, 7, 11), 1}, {CNN_SHAPE(3, 5, 7, 11), 2},
        {CNN_SHAPE(3, 5, 7, 11), 3}, {CNN_SHAPE(3, 5, 7, 11), -1}, {CNN_SHAPE(37, 1000), 1},
        {CNN_SHAPE(4, 1537), -1},    {CNN_SHAPE(1, 513, 3, 3), 1}, {CNN_SHAPE(1, 10), 1},
        {CNN_SHAPE(6, 1), 1},        {CNN_SHAPE(9), 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        for (int lg = 0; lg < 2; lg++) {
            sm_case c = {cases[i].dim, lg == 1};
            check_op(lg ? "log_softmax" : "softmax", f_softmax, &c, 1, &cases[i].s, SM_ATOL,
                     SM_RTOL);
        }
}

GPU_TEST(cuda_softmax_gradcheck)
{
    cnn_tensor *xc = rand_tensor(CNN_SHAPE(2, 5, 3), -2, 2, 0), *xg = NULL;
    REQUIRE(xc && (xg = to_gpu(xc)) != NULL);
    CHECK_OK(cnn_tensor_set_requires_grad(xg, true));
    for (int lg = 0; lg < 2; lg++) {
        sm_case c = {1, lg == 1};
        CHECK(gradcheck(lg ? "log_softmax on cuda" : "softmax on cuda", f_softmax, &xg, 1, &c,
                        NULL));
    }
    cnn_tensor_free(&xc);
    cnn_tensor_free(&xg);
}

typedef struct {
    const cnn_tensor *labels; /* on the device of the logits */
    float ls;
} ce_case;

static cnn_status f_ce(cnn_tensor *const *x, void *ud, cnn_tensor **y)
{
    const ce_case *c = ud;
    return cnn_cross_entropy(x[0], c->labels, c->ls, y);
}

/* Cross-entropy of (n, k) logits uniform in [center - 4, center + 4) on both devices with the
 * same random labels; with ignore_every > 0, every ignore_every-th label (from the second) is
 * CNN_IGNORE_INDEX. */
static void check_cross_entropy(int64_t n, int64_t k, float ls, int ignore_every, float center)
{
    int64_t *lab = malloc((size_t)(n ? n : 1) * sizeof *lab);
    cnn_tensor *lc = NULL, *lg = NULL, *xc = NULL, *xg = NULL, *yc = NULL, *yg = NULL;
    REQUIRE(lab);
    uint64_t s = (uint64_t)(n * 7919 + k);
    for (int64_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        lab[i] = (int64_t)((s >> 33) % (uint64_t)k);
        if (ignore_every > 0 && i % ignore_every == 1) lab[i] = CNN_IGNORE_INDEX;
    }
    CHECK_OK(cnn_tensor_from_i64(CNN_SHAPE(n), lab, CNN_CPU, &lc));
    CHECK_OK(cnn_tensor_from_i64(CNN_SHAPE(n), lab, CNN_CUDA(0), &lg));
    free(lab);
    /* The CPU reference (forward and backward) first, then the GPU with poisoned outputs. */
    xc = rand_tensor(CNN_SHAPE(n, k), center - 4, center + 4, 1);
    REQUIRE(xc && (xg = to_gpu(xc)) != NULL);
    ce_case cg = {lg, ls};
    CHECK_OK(cnn_cross_entropy(xc, lc, ls, &yc));
    CHECK_OK(cnn_backward(yc));
    poison_cache((cnn_shape[]){CNN_SHAPE(n, k)}, 1);
    poison_cache((cnn_shape[]){CNN_SHAPE(n)}, 1);
    poison_cache((cnn_shape[]){CNN_SCALAR}, 1);
    CHECK_OK(f_ce(&xg, &cg, &yg));
    CHECK(on_gpu(yg));
    char name[96];
    snprintf(name, sizeof name, "cross_entropy (%lld, %lld) ls %g ignore %d at %g", (long long)n,
             (long long)k, ls, ignore_every, center);
    CHECK(tensors_close(name, yg, yc, SM_ATOL, SM_RTOL));
    poison_cache((cnn_shape[]){CNN_SHAPE(n, k)}, 1);
    CHECK_OK(cnn_backward(yg));
    snprintf(name, sizeof name, "cross_entropy (%lld, %lld) ls %g ignore %d at %g grad",
             (long long)n, (long long)k, ls, ignore_every, center);
    CHECK(cnn_tensor_grad(xg) && tensors_close(name, cnn_tensor_grad(xg), cnn_tensor_grad(xc),
                                               SM_ATOL, SM_RTOL));
    cnn_tensor *all[6] = {lc, lg, xc, xg, yc, yg};
    for (int i = 0; i < 6; i++) cnn_tensor_free(&all[i]);
}

GPU_TEST(cuda_cross_entropy_matches_cpu)
{
    const int64_t sizes[][2] = {{1, 10}, {5, 3}, {37, 1000}, {256, 10}, {3, 1}, {2, 1537}};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        check_cross_entropy(sizes[i][0], sizes[i][1], 0.0f, 0, 0.0f);
        check_cross_entropy(sizes[i][0], sizes[i][1], 0.1f, 0, 0.0f);
        check_cross_entropy(sizes[i][0], sizes[i][1], 0.1f, 3, 0.0f);
    }
}

/* Logits far from 0, where the result depends on the row's maximum being subtracted before exp
 * (the CPU reference does): near -100, exp underflows in float and the sum of exps' reciprocal
 * overflows it (a maximum that starts at 0 instead of -inf subtracts nothing there); near +1000,
 * exp overflows even in double. The logits near 0 of the tests above give the same results either
 * way. Both softmax layouts (the dim innermost, and strided) and cross-entropy. */
GPU_TEST(cuda_softmax_and_cross_entropy_of_far_logits_match_cpu)
{
    const float centers[] = {-100.0f, 1000.0f};
    const struct {
        cnn_shape s;
        int dim;
    } cases[] = {{CNN_SHAPE(5, 300), 1}, {CNN_SHAPE(3, 7, 11), 1}, {CNN_SHAPE(4, 9), 0}};
    for (int c = 0; c < 2; c++) {
        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
            for (int lg = 0; lg < 2; lg++) {
                sm_case sc = {cases[i].dim, lg == 1};
                gp_case g = {.name = lg ? "log_softmax of far logits" : "softmax of far logits",
                             .f = f_softmax, .ud = &sc, .n = 1, .in = {cases[i].s},
                             .lo = centers[c] - 3, .hi = centers[c] + 3, .atol = SM_ATOL,
                             .rtol = SM_RTOL};
                gpu_parity(&g, CNN_BACKEND_AUTO);
            }
        check_cross_entropy(37, 300, 0.0f, 0, centers[c]);
        check_cross_entropy(5, 10, 0.1f, 3, centers[c]);
    }
}

GPU_TEST(cuda_cross_entropy_bad_labels)
{
    /* On the GPU a label outside [0, K) is found by the kernel: the loss is NaN, and the next
     * call that waits for the device (a read, cnn_synchronize) reports the lowest bad sample with
     * CNN_ERR_INVALID_ARG, once. Labels on another device: CNN_ERR_DEVICE at once. */
    int64_t lab[5] = {0, -100, 7, 2, -3}, good[5] = {0, 1, 2, 3, -100};
    cnn_tensor *lg = NULL, *lc = NULL, *ok = NULL, *x = NULL, *y = NULL;
    CHECK_OK(cnn_tensor_from_i64(CNN_SHAPE(5), lab, CNN_CUDA(0), &lg));
    CHECK_OK(cnn_tensor_from_i64(CNN_SHAPE(5), lab, CNN_CPU, &lc));
    CHECK_OK(cnn_tensor_from_i64(CNN_SHAPE(5), good, CNN_CUDA(0), &ok));
    CHECK_OK(cnn_tensor_zeros(CNN_SHAPE(5, 4), CNN_CUDA(0), &x));
    float v = 0;
    CHECK_OK(cnn_cross_entropy(x, lg, 0.0f, &y)); /* queued: nothing known yet */
    CHECK_ERR(cnn_tensor_read(y, &v, 1), CNN_ERR_INVALID_ARG);
    CHECK(strstr(cnn_last_error(), "label 7 of sample 2 is outside [0, 4)") != NULL);
    CHECK(isnan(v)); /* the value was still read */
    CHECK_OK(cnn_tensor_read(y, &v, 1)); /* reported once */
    cnn_tensor_free(&y);
    CHECK_OK(cnn_cross_entropy(x, lg, 0.0f, &y));
    cnn_tensor_free(&y);
    CHECK_ERR(cnn_synchronize(), CNN_ERR_INVALID_ARG);
    CHECK(strstr(cnn_last_error(), "sample 2") != NULL);
    /* K itself is the first label past the end. */
    int64_t edge[5] = {0, 1, 2, 4, 3};
    cnn_tensor *le = NULL;
    CHECK_OK(cnn_tensor_from_i64(CNN_SHAPE(5), edge, CNN_CUDA(0), &le));
    CHECK_OK(cnn_cross_entropy(x, le, 0.0f, &y));
    CHECK_ERR(cnn_tensor_read(y, &v, 1), CNN_ERR_INVALID_ARG);
    CHECK(strstr(cnn_last_error(), "label 4 of sample 3 is outside [0, 4)") != NULL);
    CHECK(isnan(v));
    cnn_tensor_free(&y);
    cnn_tensor_free(&le);
    /* Good labels (and the ignored one) report nothing. */
    CHECK_OK(cnn_cross_entropy(x, ok, 0.0f, &y));
    CHECK_OK(cnn_tensor_read(y, &v, 1));
    CHECK_NEAR(v, log(4.0), 1e-6);
    cnn_tensor_free(&y);
    CHECK_ERR(cnn_cross_entropy(x, lc, 0.0f, &y), CNN_ERR_DEVICE);
    CHECK(y == NULL);
    cnn_tensor *all[4] = {lg, lc, ok, x};
    for (int i = 0; i < 4; i++) cnn_tensor_free(&all[i]);
}

GPU_TEST(cuda_cross_entropy_gradcheck)
{
    int64_t lab[4] = {2, CNN_IGNORE_INDEX, 4, 1};
    cnn_tensor *lg = NULL, *xc = rand_tensor(CNN_SHAPE(4, 5), -2, 2, 0), *xg = NULL;
    REQUIRE(xc && (xg = to_gpu(xc)) != NULL);
    CHECK_OK(cnn_tensor_set_requires_grad(xg, true));
    CHECK_OK(cnn_tensor_from_i64(CNN_SHAPE(4), lab, CNN_CUDA(0), &lg));
    ce_case c = {lg, 0.2f};
    CHECK(gradcheck("cross_entropy on cuda", f_ce, &xg, 1, &c, NULL));
    cnn_tensor_free(&lg);
    cnn_tensor_free(&xc);
    cnn_tensor_free(&xg);
}
