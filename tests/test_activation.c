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

TEST(activation_saves_output_not_input)
{
    cnn_tensor *x = away_from_zero(CNN_SHAPE(3, 4));
    REQUIRE(x);
    for (int c = 0; c < N_CASES; c++) {
        if (cases[c].transpose) continue;
        cnn_tensor *y = NULL;
        CHECK_OK(apply(cases[c].kind, cases[c].a, x, &y));
        REQUIRE(y->node && y->node->n_saved == 1);
        /* Only a negative slope/alpha needs the input (the sign of y no longer tells x's). */
        if (cases[c].a < 0) CHECK(y->node->saved[0] == x);
        else CHECK(y->node->saved[0] == y);
        cnn_tensor_free(&y);
        cnn_tape_reset();
    }
    cnn_tensor_free(&x);
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
