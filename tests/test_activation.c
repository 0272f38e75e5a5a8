/* test_activation.c — relu, leaky_relu, elu, sigmoid, tanh: forward values against libm,
 * gradchecks away from the kinks, what each saves for backward (white-box, via internal.h),
 * the threaded path on a large tensor, and argument errors. */
#include "gradcheck.h"
#include "internal.h"

/* Values uniform in +-[0.1, 1.1): finite differences of step 1e-2 never straddle a kink at 0. */
static cnn_tensor *away_from_zero(cnn_shape s)
{
    cnn_tensor *t = rand_tensor(s, -1, 1, 0);
    if (!t) return NULL;
    float *v = cnn_tensor_data(t);
    for (int64_t i = 0; i < cnn_tensor_numel(t); i++) v[i] += v[i] < 0 ? -0.1f : 0.1f;
    cnn_tensor_set_requires_grad(t, true);
    return t;
}

typedef struct {
    int kind; /* 0 relu, 1 leaky, 2 elu, 3 sigmoid, 4 tanh */
    float a;
    int transpose; /* feed a non-contiguous view */
} act_case;

static cnn_status apply(int kind, float a, const cnn_tensor *x, cnn_tensor **y)
{
    switch (kind) {
    case 0: return cnn_relu(x, y);
    case 1: return cnn_leaky_relu(x, a, y);
    case 2: return cnn_elu(x, a, y);
    case 3: return cnn_sigmoid(x, y);
    default: return cnn_tanh(x, y);
    }
}

static double ref(int kind, float a, double x)
{
    switch (kind) {
    case 0: return x > 0 ? x : 0;
    case 1: return x > 0 ? x : a * x;
    case 2: return x > 0 ? x : a * expm1(x);
    case 3: return 1 / (1 + exp(-x));
    default: return tanh(x);
    }
}

static cnn_status f_act(cnn_tensor *const *in, void *ud, cnn_tensor **y)
{
    const act_case *c = ud;
    if (!c->transpose) return apply(c->kind, c->a, in[0], y);
    cnn_tensor *t = NULL;
    cnn_status st = cnn_tensor_transpose(in[0], 0, 2, &t);
    if (st == CNN_OK) st = apply(c->kind, c->a, t, y);
    cnn_tensor_free(&t);
    return st;
}

static const act_case cases[] = {
    {0, 0, 0}, {1, 0.01f, 0}, {1, -0.5f, 0}, {2, 1.0f, 0}, {2, 0.3f, 0}, {2, -0.5f, 0},
    {3, 0, 0}, {4, 0, 0},     {0, 0, 1},     {1, 0.2f, 1}, {2, 1.0f, 1}, {3, 0, 1}, {4, 0, 1},
};
#define N_CASES ((int)(sizeof cases / sizeof cases[0]))

TEST(activation_forward_matches_libm)
{
    float xv[7] = {-3.0f, -0.5f, -1e-3f, 0.0f, 1e-3f, 0.7f, 4.0f};
    cnn_tensor *x = NULL;
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(7), xv, CNN_CPU, &x));
    for (int c = 0; c < N_CASES; c++) {
        cnn_tensor *y = NULL;
        CHECK_OK(apply(cases[c].kind, cases[c].a, x, &y));
        const float *yv = cnn_tensor_cdata(y);
        REQUIRE(yv);
        for (int i = 0; i < 7; i++) CHECK_NEAR(yv[i], ref(cases[c].kind, cases[c].a, xv[i]), 1e-6);
        cnn_tensor_free(&y);
    }
    CHECK(cnn_tape_size() == 0); /* nothing requires grad: nothing recorded */
    cnn_tensor_free(&x);
}

TEST(activation_gradcheck)
{
    for (int c = 0; c < N_CASES; c++) {
        cnn_tensor *x = away_from_zero(CNN_SHAPE(2, 3, 4, 5));
        REQUIRE(x);
        char what[64];
        snprintf(what, sizeof what, "act kind %d a %g%s", cases[c].kind, (double)cases[c].a,
                 cases[c].transpose ? " transposed" : "");
        CHECK(gradcheck(what, f_act, &x, 1, (void *)&cases[c], NULL));
        cnn_tensor_free(&x);
    }
}

TEST(activation_saturation_gradients)
{
    /* Far in the tails sigmoid/tanh gradients vanish instead of becoming NaN. */
    float xv[4] = {-100.0f, -30.0f, 30.0f, 100.0f};
    for (int kind = 3; kind <= 4; kind++) {
        cnn_tensor *x = NULL, *y = NULL, *s = NULL;
        CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(4), xv, CNN_CPU, &x));
        CHECK_OK(cnn_tensor_set_requires_grad(x, true));
        CHECK_OK(apply(kind, 0, x, &y));
        for (int i = 0; i < 4; i++) CHECK(isfinite(cnn_tensor_cdata(y)[i]));
        CHECK_OK(cnn_sum(y, &s));
        CHECK_OK(cnn_backward(s));
        for (int i = 0; i < 4; i++) CHECK_NEAR(cnn_tensor_cdata(cnn_tensor_grad(x))[i], 0.0, 1e-12);
        cnn_tensor_free(&x);
        cnn_tensor_free(&y);
        cnn_tensor_free(&s);
    }
}

TEST(activation_saves_what_its_backward_reads)
{
    cnn_tensor *x = away_from_zero(CNN_SHAPE(3, 4));
    REQUIRE(x);
    for (int c = 0; c < N_CASES; c++) {
        if (cases[c].transpose) continue;
        cnn_tensor *y = NULL;
        CHECK_OK(apply(cases[c].kind, cases[c].a, x, &y));
        REQUIRE(y->node && y->node->n_saved == 1);
        /* elu's gradient is a * exp(x), as PyTorch computes it (from y it would be y + a, which
         * cancels in the tail); leaky_relu with a negative slope needs x's sign, which y's no
         * longer tells. Every other case saves its output. */
        if (cases[c].kind == 2 || cases[c].a < 0) CHECK(y->node->saved[0] == x);
        else CHECK(y->node->saved[0] == y);
        cnn_tensor_free(&y);
        cnn_tape_reset();
    }
    cnn_tensor_free(&x);
}

/* elu far in the negative tail: dx = a * exp(x) stays accurate (from y + a it lost every digit:
 * 0 below x = -17.3, where PyTorch gives 1.5e-8 at -18). */
TEST(elu_gradient_in_the_negative_tail)
{
    float xv[5] = {-9.0f, -14.0f, -17.0f, -18.0f, -25.0f};
    cnn_tensor *x = NULL, *y = NULL, *s = NULL;
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(5), xv, CNN_CPU, &x));
    CHECK_OK(cnn_tensor_set_requires_grad(x, true));
    CHECK_OK(cnn_elu(x, 1.0f, &y));
    CHECK_OK(cnn_sum(y, &s));
    CHECK_OK(cnn_backward(s));
    const float *dx = cnn_tensor_cdata(cnn_tensor_grad(x));
    REQUIRE(dx);
    for (int i = 0; i < 5; i++) {
        const double want = exp((double)xv[i]);
        if (!(fabs(dx[i] - want) <= 1e-6 * want))
            cnn_test_fail(__FILE__, __LINE__, "elu'(%g) = %.8g, exactly %.8g", (double)xv[i],
                          (double)dx[i], want);
    }
    free_tensors(&x, &y, &s);
}

TEST(activation_large_tensor_threaded)
{
    /* Above the OpenMP threshold; relu backward must pass dy exactly where x > 0. */
    cnn_tensor *x = rand_tensor(CNN_SHAPE(4, 16, 32, 33), -1, 1, 1), *y = NULL, *g = NULL;
    REQUIRE(x);
    int64_t n = cnn_tensor_numel(x);
    CHECK_OK(cnn_relu(x, &y));
    g = rand_tensor(cnn_tensor_shape(x), -1, 1, 0);
    REQUIRE(g);
    CHECK_OK(cnn_backward_with_grad(y, g));
    const float *xv = cnn_tensor_cdata(x), *yv = cnn_tensor_cdata(y), *gv = cnn_tensor_cdata(g);
    const float *dx = cnn_tensor_cdata(cnn_tensor_grad(x));
    REQUIRE(dx);
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) {
        if (yv[i] != (xv[i] > 0 ? xv[i] : 0.0f)) bad++;
        if (dx[i] != (xv[i] > 0 ? gv[i] : 0.0f)) bad++;
    }
    CHECK(bad == 0);
    cnn_tensor_free(&x);
    cnn_tensor_free(&y);
    cnn_tensor_free(&g);
}

/* The gradient at exactly 0 and -0, as torch 1.13 gives it (x = (0, -0, 1, -1), dy = 1): relu
 * 0; leaky_relu its slope (PyTorch's `x > 0 ? dy : slope * dy`, read from y for a positive slope
 * and from x for a negative one); elu alpha (`x <= 0 ? dy * alpha * exp(x) : dy`). */
TEST(activation_gradient_at_zero_as_torch)
{
    const float xv[4] = {0.0f, -0.0f, 1.0f, -1.0f};
    const act_case cs[4] = {{0, 0, 0}, {1, 0.1f, 0}, {1, -0.5f, 0}, {2, 0.5f, 0}};
    const double want[4][4] = {
        {0, 0, 1, 0}, {0.1, 0.1, 1, 0.1}, {-0.5, -0.5, 1, -0.5}, {0.5, 0.5, 1, 0.183939721}};
    for (int c = 0; c < 4; c++) {
        cnn_tensor *x = leaf_of_values(CNN_SHAPE(4), xv), *y = NULL, *s = NULL;
        REQUIRE(x);
        CHECK_OK(apply(cs[c].kind, cs[c].a, x, &y));
        CHECK_OK(cnn_sum(y, &s));
        CHECK_OK(cnn_backward(s));
        REQUIRE(cnn_tensor_grad(x));
        for (int i = 0; i < 4; i++)
            CHECK_NEAR(cnn_tensor_cdata(cnn_tensor_grad(x))[i], want[c][i], 1e-6);
        free_tensors(&x, &y, &s);
    }
}

TEST(activation_errors)
{
    cnn_tensor *x = rand_tensor(CNN_SHAPE(2, 2), -1, 1, 0), *y = NULL, *lab = NULL;
    REQUIRE(x);
    CHECK_ERR(cnn_relu(NULL, &y), CNN_ERR_INVALID_ARG);
    CHECK(strstr(cnn_last_error(), "relu"));
    CHECK_ERR(cnn_sigmoid(x, NULL), CNN_ERR_INVALID_ARG);
    CHECK_ERR(cnn_leaky_relu(x, NAN, &y), CNN_ERR_INVALID_ARG);
    CHECK(strstr(cnn_last_error(), "negative_slope"));
    CHECK_ERR(cnn_elu(x, INFINITY, &y), CNN_ERR_INVALID_ARG);
    CHECK(strstr(cnn_last_error(), "alpha") && strstr(cnn_last_error(), "inf"));
    int64_t lv[2] = {0, 1};
    CHECK_OK(cnn_tensor_from_i64(CNN_SHAPE(2), lv, CNN_CPU, &lab));
    CHECK_ERR(cnn_tanh(lab, &y), CNN_ERR_UNSUPPORTED);
    CHECK(strstr(cnn_last_error(), "tanh") && strstr(cnn_last_error(), "I64"));
    CHECK(y == NULL);
    cnn_tensor_free(&x);
    cnn_tensor_free(&lab);
}

/* ReLU keeps NaN as torch.relu does (forward NaN, gradient passed through, as PyTorch's
 * threshold_backward on the saved output), in cnn_relu and in the fused paths that apply it
 * (cnn_add_relu; cnn_conv2d_fused with one input channel, with two, and with a residual z):
 * a diverging net must show its NaN, not turn it into 0. On the GPU those are the three
 * kernels that apply it (depthwise, the GEMM's store, the epilogue pass), or cuDNN's conv and
 * the epilogue pass. x: (1, 2, 1, 4), channel 0 [NaN, -1, 2, -0], channel 1 zeros. */
static void relu_keeps_nan_on(cnn_device dev)
{
    const float xv[8] = {NAN, -1.0f, 2.0f, -0.0f, 0, 0, 0, 0}, zero[4] = {0}, ones[2] = {1, 1};
    cnn_tensor *h = NULL, *x = NULL, *x1 = NULL, *z = NULL, *w1 = NULL, *w2 = NULL;
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(1, 2, 1, 4), xv, CNN_CPU, &h));
    CHECK_OK(cnn_tensor_to(h, dev, &x));
    CHECK_OK(cnn_tensor_set_requires_grad(x, true));
    cnn_tensor_free(&h);
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(1, 1, 1, 4), xv, CNN_CPU, &h));
    CHECK_OK(cnn_tensor_to(h, dev, &x1));
    CHECK_OK(cnn_tensor_set_requires_grad(x1, true));
    cnn_tensor_free(&h);
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(1, 1, 1, 4), zero, CNN_CPU, &h));
    CHECK_OK(cnn_tensor_to(h, dev, &z));
    cnn_tensor_free(&h);
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(1, 1, 1, 1), ones, CNN_CPU, &h));
    CHECK_OK(cnn_tensor_to(h, dev, &w1));
    cnn_tensor_free(&h);
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(1, 2, 1, 1), ones, CNN_CPU, &h));
    CHECK_OK(cnn_tensor_to(h, dev, &w2));
    cnn_tensor_free(&h);
    for (int op = 0; op < 5; op++) {
        cnn_tensor *in = op == 2 ? x1 : x, *y = NULL, *s = NULL;
        if (op == 0) CHECK_OK(cnn_relu(x, &y));
        if (op == 1) CHECK_OK(cnn_add_relu(x, x, &y)); /* 2x, and NaN */
        if (op == 2) CHECK_OK(cnn_conv2d_fused(x1, w1, NULL, NULL, CNN_ACT_RELU, NULL, &y));
        if (op == 3) CHECK_OK(cnn_conv2d_fused(x, w2, NULL, NULL, CNN_ACT_RELU, NULL, &y));
        if (op == 4) CHECK_OK(cnn_conv2d_fused(x, w2, NULL, z, CNN_ACT_RELU, NULL, &y));
        REQUIRE(y);
        const float k = op == 1 ? 2.0f : 1.0f; /* add_relu(x, x) doubles x and its gradient */
        float out[8], g[8];
        CHECK_OK(cnn_tensor_read(y, out, op < 2 ? 8 : 4));
        if (!(isnan(out[0]) && out[1] == 0.0f && out[2] == 2.0f * k && out[3] == 0.0f &&
              !signbit(out[3])))
            cnn_test_fail(__FILE__, __LINE__, "op %d: y %g %g %g %g, want nan 0 %g 0", op,
                          out[0], out[1], out[2], out[3], 2.0f * k);
        CHECK_OK(cnn_sum(y, &s));
        cnn_tensor_zero_grad(in);
        CHECK_OK(cnn_backward(s));
        REQUIRE(cnn_tensor_grad(in));
        CHECK_OK(cnn_tensor_read(cnn_tensor_grad(in), g, op == 2 ? 4 : 8));
        if (!(g[0] == k && g[1] == 0.0f && g[2] == k && g[3] == 0.0f))
            cnn_test_fail(__FILE__, __LINE__, "op %d: gradient %g %g %g %g, want %g 0 %g 0", op,
                          g[0], g[1], g[2], g[3], k, k);
        cnn_tensor_free(&y);
        cnn_tensor_free(&s);
    }
    cnn_tensor *all[5] = {x, x1, z, w1, w2};
    for (int i = 0; i < 5; i++) cnn_tensor_free(&all[i]);
}

TEST(relu_keeps_nan_as_torch) { relu_keeps_nan_on(CNN_CPU); }

GPU_TEST(cuda_relu_keeps_nan_as_torch)
{
    const cnn_backend backends[2] = {CNN_BACKEND_CUDA, CNN_BACKEND_AUTO};
    for (int i = 0; i < 2 && !cnn_test_failed(); i++) {
        cnn_set_backend(backends[i]);
        relu_keeps_nan_on(CNN_CUDA(0));
    }
    cnn_set_backend(CNN_BACKEND_AUTO);
}

/* NaN in ELU's backward: PyTorch's elu_backward is `x <= 0 ? negative branch : grad`, so a NaN
 * input passes its gradient unchanged (as ReLU's does), for alpha > 0 (backward reads y) and
 * alpha < 0 (backward reads x). Leaky ReLU's `x > 0 ? grad : slope * grad` gives slope * grad.
 * Expected from torch 1.13, x = (NaN, -1, 2), dy = (1, 2, 3). */
static void elu_nan_gradient_on(cnn_device dev)
{
    const float xv[3] = {NAN, -1.0f, 2.0f}, dyv[3] = {1, 2, 3};
    const float alphas[3] = {1.0f, -0.5f, 0.1f};
    const double want[3][3] = {{1, 0.735758901, 3}, {1, -0.36787945, 3}, {0.100000001, 0.2, 3}};
    for (int t = 0; t < 3; t++) {
        cnn_tensor *h = NULL, *x = NULL, *dy = NULL, *y = NULL;
        CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(3), xv, CNN_CPU, &h));
        CHECK_OK(cnn_tensor_to(h, dev, &x));
        cnn_tensor_free(&h);
        CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(3), dyv, CNN_CPU, &h));
        CHECK_OK(cnn_tensor_to(h, dev, &dy));
        cnn_tensor_free(&h);
        CHECK_OK(cnn_tensor_set_requires_grad(x, true));
        if (t < 2) CHECK_OK(cnn_elu(x, alphas[t], &y));
        else CHECK_OK(cnn_leaky_relu(x, alphas[t], &y));
        float out[3], g[3];
        CHECK_OK(cnn_tensor_read(y, out, 3));
        CHECK(isnan(out[0]));
        CHECK_OK(cnn_backward_with_grad(y, dy));
        REQUIRE(cnn_tensor_grad(x));
        CHECK_OK(cnn_tensor_read(cnn_tensor_grad(x), g, 3));
        for (int i = 0; i < 3; i++) CHECK_NEAR(g[i], want[t][i], 1e-6);
        cnn_tensor_free(&x);
        cnn_tensor_free(&dy);
        cnn_tensor_free(&y);
    }
}

TEST(elu_nan_passes_gradient_as_torch) { elu_nan_gradient_on(CNN_CPU); }

GPU_TEST(cuda_elu_nan_passes_gradient_as_torch) { elu_nan_gradient_on(CNN_CUDA(0)); }
