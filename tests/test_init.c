/* test_init.c — torch.nn.init: fans, gains, uniform bounds (reached but never exceeded),
 * empirical std of normal inits on large tensors, PyTorch's default Conv2d/Linear init,
 * constant fills, non-contiguous targets, seeding, and refused arguments. */
#include "test.h"

typedef struct { double mean, std, lo, hi; } stats;

static stats stats_of(const cnn_tensor *t)
{
    int64_t n = cnn_tensor_numel(t);
    float *v = malloc((size_t)n * sizeof *v);
    stats s = {0, 0, INFINITY, -INFINITY};
    if (!v || cnn_tensor_read(t, v, (size_t)n) != CNN_OK) {
        free(v);
        return (stats){NAN, NAN, NAN, NAN};
    }
    double sum = 0, sq = 0;
    for (int64_t i = 0; i < n; i++) {
        sum += v[i];
        sq += (double)v[i] * v[i];
        s.lo = fmin(s.lo, v[i]);
        s.hi = fmax(s.hi, v[i]);
    }
    s.mean = sum / n;
    s.std = sqrt(sq / n - s.mean * s.mean);
    free(v);
    return s;
}

TEST(fans_and_gains_follow_torch)
{
    cnn_tensor *conv = NULL, *fc = NULL, *bias = NULL;
    int64_t fi = -1, fo = -1;
    CHECK_OK(cnn_tensor_empty(CNN_SHAPE(64, 3, 7, 5), CNN_F32, CNN_CPU, &conv));
    CHECK_OK(cnn_tensor_empty(CNN_SHAPE(10, 20), CNN_F32, CNN_CPU, &fc));
    CHECK_OK(cnn_tensor_empty(CNN_SHAPE(10), CNN_F32, CNN_CPU, &bias));
    CHECK_OK(cnn_init_fans(conv, &fi, &fo));
    CHECK(fi == 3 * 35 && fo == 64 * 35);
    CHECK_OK(cnn_init_fans(fc, &fi, &fo));
    CHECK(fi == 20 && fo == 10);
    CHECK_ERR(cnn_init_fans(bias, &fi, &fo), CNN_ERR_SHAPE);
    CHECK_ERR(cnn_init_kaiming_uniform_(bias, 0, CNN_FAN_IN, CNN_NONLIN_RELU), CNN_ERR_SHAPE);
    CHECK_ERR(cnn_init_xavier_normal_(bias, 1.0f), CNN_ERR_SHAPE);

    float g = -1;
    CHECK_OK(cnn_init_gain(CNN_NONLIN_LINEAR, 0, &g));
    CHECK(g == 1.0f);
    CHECK_OK(cnn_init_gain(CNN_NONLIN_SIGMOID, 0, &g));
    CHECK(g == 1.0f);
    CHECK_OK(cnn_init_gain(CNN_NONLIN_TANH, 0, &g));
    CHECK_NEAR(g, 5.0 / 3, 1e-7);
    CHECK_OK(cnn_init_gain(CNN_NONLIN_RELU, 0.3f, &g)); /* relu ignores the slope */
    CHECK_NEAR(g, sqrt(2.0), 1e-7);
    CHECK_OK(cnn_init_gain(CNN_NONLIN_LEAKY_RELU, 0.2f, &g));
    CHECK_NEAR(g, sqrt(2.0 / (1 + 0.2 * 0.2)), 1e-7);
    CHECK_OK(cnn_init_gain(CNN_NONLIN_LEAKY_RELU, sqrtf(5.0f), &g));
    CHECK_NEAR(g, sqrt(1.0 / 3), 1e-7);
    CHECK_OK(cnn_init_gain(CNN_NONLIN_SELU, 0, &g));
    CHECK(g == 0.75f);
    CHECK_ERR(cnn_init_gain((cnn_nonlinearity)42, 0, &g), CNN_ERR_INVALID_ARG);
    CHECK_ERR(cnn_init_kaiming_normal_(fc, 0, (cnn_fan_mode)3, CNN_NONLIN_RELU),
              CNN_ERR_INVALID_ARG);
    cnn_tensor_free(&conv);
    cnn_tensor_free(&fc);
    cnn_tensor_free(&bias);
}

/* Uniform draws stay inside [-b, b], come close to both ends and have std b / sqrt(3). */
static void check_uniform(const cnn_tensor *t, double b)
{
    stats s = stats_of(t);
    CHECK(s.lo >= -(float)b && s.hi <= (float)b); /* the bound is a float, as torch's */
    CHECK(s.lo < -0.99 * b && s.hi > 0.99 * b);
    CHECK_NEAR(s.std, b / sqrt(3.0), 0.02 * b / sqrt(3.0));
    CHECK_NEAR(s.mean, 0, 0.02 * b);
}

TEST(uniform_inits_have_torchs_bounds)
{
    cnn_tensor *w = NULL, *fc = NULL, *b = NULL;
    CHECK_OK(cnn_tensor_zeros(CNN_SHAPE(64, 32, 3, 3), CNN_CPU, &w)); /* fan_in 288, out 576 */
    CHECK_OK(cnn_init_kaiming_uniform_(w, 0, CNN_FAN_IN, CNN_NONLIN_RELU));
    check_uniform(w, sqrt(3.0) * sqrt(2.0) / sqrt(288.0));
    CHECK_OK(cnn_init_kaiming_uniform_(w, 0.1f, CNN_FAN_OUT, CNN_NONLIN_LEAKY_RELU));
    check_uniform(w, sqrt(3.0) * sqrt(2.0 / 1.01) / sqrt(576.0));
    CHECK_OK(cnn_init_xavier_uniform_(w, 2.0f));
    check_uniform(w, 2.0 * sqrt(6.0 / (288 + 576)));
    CHECK_OK(cnn_init_uniform_(w, -3.0f, 3.0f));
    check_uniform(w, 3.0);

    /* Default Conv2d/Linear init: weight and bias both U(-1/sqrt(fan_in), 1/sqrt(fan_in)). */
    CHECK_OK(cnn_init_default_(w, NULL));
    check_uniform(w, 1.0 / sqrt(288.0));
    CHECK_OK(cnn_tensor_zeros(CNN_SHAPE(4000, 50), CNN_CPU, &fc));
    CHECK_OK(cnn_tensor_zeros(CNN_SHAPE(4000), CNN_CPU, &b));
    CHECK_OK(cnn_init_default_(fc, b));
    check_uniform(fc, 1.0 / sqrt(50.0));
    check_uniform(b, 1.0 / sqrt(50.0));
    cnn_tensor *wrong = NULL;
    CHECK_OK(cnn_tensor_zeros(CNN_SHAPE(3), CNN_CPU, &wrong));
    CHECK_ERR(cnn_init_default_(fc, wrong), CNN_ERR_SHAPE);
    cnn_tensor_free(&wrong);
    cnn_tensor_free(&w);
    cnn_tensor_free(&fc);
    cnn_tensor_free(&b);
}

TEST(normal_inits_have_torchs_std)
{
    cnn_tensor *w = NULL;
    CHECK_OK(cnn_tensor_zeros(CNN_SHAPE(128, 64, 3, 3), CNN_CPU, &w)); /* fan_in 576, out 1152 */
    struct { int which; double std; } cases[4] = {
        {0, sqrt(2.0) / sqrt(576.0)},                 /* kaiming_normal_, relu, fan_in */
        {1, (5.0 / 3) / sqrt(1152.0)},                /* kaiming_normal_, tanh, fan_out */
        {2, 0.5 * sqrt(2.0 / (576 + 1152))},          /* xavier_normal_, gain 0.5 */
        {3, 0.02},                                    /* normal_(0.01, 0.02) */
    };
    for (int c = 0; c < 4; c++) {
        if (c == 0) CHECK_OK(cnn_init_kaiming_normal_(w, 0, CNN_FAN_IN, CNN_NONLIN_RELU));
        if (c == 1) CHECK_OK(cnn_init_kaiming_normal_(w, 0, CNN_FAN_OUT, CNN_NONLIN_TANH));
        if (c == 2) CHECK_OK(cnn_init_xavier_normal_(w, 0.5f));
        if (c == 3) CHECK_OK(cnn_init_normal_(w, 0.01f, 0.02f));
        stats s = stats_of(w);
        CHECK_NEAR(s.std, cases[c].std, 0.02 * cases[c].std);
        CHECK_NEAR(s.mean, c == 3 ? 0.01 : 0.0, 0.02 * cases[c].std);
        CHECK(s.hi > 3 * cases[c].std); /* a normal's tails, not a uniform's box */
    }
    cnn_tensor_free(&w);
}

TEST(constant_fills_views_and_seeding)
{
    cnn_tensor *t = NULL, *v = NULL, *u = NULL;
    CHECK_OK(cnn_tensor_empty(CNN_SHAPE(6, 4), CNN_F32, CNN_CPU, &t));
    CHECK_OK(cnn_init_constant_(t, 2.5f));
    stats s = stats_of(t);
    CHECK(s.lo == 2.5 && s.hi == 2.5);
    CHECK_OK(cnn_init_zeros_(t));
    s = stats_of(t);
    CHECK(s.lo == 0 && s.hi == 0);
    CHECK_OK(cnn_init_ones_(t));
    s = stats_of(t);
    CHECK(s.lo == 1 && s.hi == 1);

    /* A transposed (non-contiguous) view is filled through its own layout. */
    CHECK_OK(cnn_tensor_transpose(t, 0, 1, &v));
    CHECK(!cnn_tensor_is_contiguous(v));
    CHECK_OK(cnn_init_kaiming_uniform_(v, 0, CNN_FAN_IN, CNN_NONLIN_RELU)); /* fan_in 6 */
    s = stats_of(t);
    CHECK(s.lo >= -1.0 && s.hi <= 1.0 && s.hi - s.lo > 0.5);

    /* The same seed gives the same values; the next draw differs. */
    float a[24], b[24], c[24];
    cnn_manual_seed(7);
    CHECK_OK(cnn_init_xavier_uniform_(t, 1.0f));
    CHECK_OK(cnn_tensor_read(t, a, 24));
    CHECK_OK(cnn_init_xavier_uniform_(t, 1.0f));
    CHECK_OK(cnn_tensor_read(t, c, 24));
    cnn_manual_seed(7);
    CHECK_OK(cnn_init_xavier_uniform_(t, 1.0f));
    CHECK_OK(cnn_tensor_read(t, b, 24));
    CHECK(memcmp(a, b, sizeof a) == 0 && memcmp(a, c, sizeof a) != 0);

    /* Zero-element tensors are a no-op, as in PyTorch. */
    CHECK_OK(cnn_tensor_empty(CNN_SHAPE(0, 3), CNN_F32, CNN_CPU, &u));
    CHECK_OK(cnn_init_kaiming_normal_(u, 0, CNN_FAN_OUT, CNN_NONLIN_RELU));
    CHECK_OK(cnn_init_xavier_uniform_(u, 1.0f));
    cnn_tensor_free(&u);

    int64_t lab[2] = {1, 2};
    CHECK_OK(cnn_tensor_from_i64(CNN_SHAPE(1, 2), lab, CNN_CPU, &u));
    CHECK_ERR(cnn_init_uniform_(u, 0, 1), CNN_ERR_UNSUPPORTED);
    CHECK_ERR(cnn_init_uniform_(t, 1, 0), CNN_ERR_INVALID_ARG);
    CHECK_ERR(cnn_init_normal_(t, 0, -1), CNN_ERR_INVALID_ARG);
    CHECK_ERR(cnn_init_xavier_uniform_(t, -1.0f), CNN_ERR_INVALID_ARG);
    CHECK_ERR(cnn_init_zeros_(NULL), CNN_ERR_INVALID_ARG);
    cnn_tensor_free(&u);
    cnn_tensor_free(&v);
    cnn_tensor_free(&t);
}

/* What torch.nn.init 1.13 refuses ("from is out of bounds for float"): an infinite bound of
 * uniform_ and an infinite gain of xavier_uniform_; the target is left as it was. Kaiming on
 * a zero-element tensor returns before looking at the fan mode, the fans or the nonlinearity,
 * as PyTorch's no-op does (kaiming_uniform_ / kaiming_normal_ in torch 1.13). */
TEST(inits_refuse_infinite_bounds_and_skip_empty_tensors)
{
    cnn_tensor *w = NULL, *e = NULL;
    CHECK_OK(cnn_tensor_full(CNN_SHAPE(3, 4), 0.5f, CNN_CPU, &w));
    CHECK_ERR(cnn_init_uniform_(w, -INFINITY, 1.0f), CNN_ERR_INVALID_ARG);
    CHECK_ERR(cnn_init_uniform_(w, 0.0f, INFINITY), CNN_ERR_INVALID_ARG);
    /* Finite bounds whose span overflows a float (every value came out infinite). */
    CHECK_ERR(cnn_init_uniform_(w, -3.4e38f, 3.4e38f), CNN_ERR_INVALID_ARG);
    cnn_tensor *u = NULL;
    CHECK_ERR(cnn_tensor_uniform(CNN_SHAPE(4), -3.4e38f, 3.4e38f, CNN_CPU, &u),
              CNN_ERR_INVALID_ARG);
    CHECK_ERR(cnn_tensor_uniform(CNN_SHAPE(4), 0.0f, INFINITY, CNN_CPU, &u), CNN_ERR_INVALID_ARG);
    CHECK_ERR(cnn_tensor_uniform(CNN_SHAPE(4), -INFINITY, -INFINITY, CNN_CPU, &u),
              CNN_ERR_INVALID_ARG);
    CHECK_ERR(cnn_tensor_uniform(CNN_SHAPE(4), NAN, 1.0f, CNN_CPU, &u), CNN_ERR_INVALID_ARG);
    CHECK(u == NULL && strstr(cnn_last_error(), "FLT_MAX"));
    /* The widest span allowed gives finite values. */
    CHECK_OK(cnn_tensor_uniform(CNN_SHAPE(64), -1.7e38f, 1.7e38f, CNN_CPU, &u));
    for (int i = 0; i < 64; i++) CHECK(isfinite(cnn_tensor_cdata(u)[i]));
    cnn_tensor_free(&u);
    CHECK_ERR(cnn_init_xavier_uniform_(w, INFINITY), CNN_ERR_INVALID_ARG);
    CHECK_ERR(cnn_init_xavier_normal_(w, -1.0f), CNN_ERR_INVALID_ARG);
    /* A mean that is not finite is refused as well (torch fills infinities or NaNs): no
     * initialisation gives a weight that is not a number. */
    CHECK_ERR(cnn_init_normal_(w, INFINITY, 1.0f), CNN_ERR_INVALID_ARG);
    CHECK_ERR(cnn_init_normal_(w, NAN, 1.0f), CNN_ERR_INVALID_ARG);
    for (int i = 0; i < 12; i++) CHECK(cnn_tensor_cdata(w)[i] == 0.5f);
    CHECK_OK(cnn_tensor_zeros(CNN_SHAPE(0, 3), CNN_CPU, &e));
    CHECK_OK(cnn_init_kaiming_uniform_(e, 0, CNN_FAN_OUT, (cnn_nonlinearity)99));
    CHECK_OK(cnn_init_kaiming_normal_(e, NAN, CNN_FAN_OUT, CNN_NONLIN_LEAKY_RELU));
    CHECK_OK(cnn_init_kaiming_uniform_(e, 0, CNN_FAN_IN, (cnn_nonlinearity)99)); /* fan_in 3 */
    cnn_tensor_free(&e);
    CHECK_OK(cnn_tensor_zeros(CNN_SHAPE(0), CNN_CPU, &e)); /* 1-D: torch returns before fans */
    CHECK_OK(cnn_init_kaiming_normal_(e, 0, CNN_FAN_IN, CNN_NONLIN_RELU));
    CHECK_OK(cnn_init_kaiming_normal_(e, 0, (cnn_fan_mode)7, CNN_NONLIN_RELU));
    CHECK_ERR(cnn_init_kaiming_normal_(w, 0, CNN_FAN_IN, (cnn_nonlinearity)99),
              CNN_ERR_INVALID_ARG); /* with elements the arguments still count */
    cnn_tensor_free(&w);
    cnn_tensor_free(&e);
}

/* Kaiming's bound is PyTorch's to the bit: the gain stays a double (torch's calculate_gain is
 * Python arithmetic), and the default init's slope is the double sqrt(5). A gain rounded to
 * float first made the bound 1 ulp low for about a quarter of the fans, among them 9, 784 and
 * 2304 of the default init. The bounds below are torch 1.13's, as float bits. */
static bool draws_match(cnn_tensor *w, float bound)
{
    cnn_tensor *ref = NULL;
    bool same = false;
    cnn_manual_seed(7);
    if (cnn_tensor_uniform(cnn_tensor_shape(w), -bound, bound, CNN_CPU, &ref) == CNN_OK)
        same = !memcmp(cnn_tensor_cdata(ref), cnn_tensor_cdata(w),
                       (size_t)cnn_tensor_numel(w) * sizeof(float));
    cnn_tensor_free(&ref);
    return same;
}

static float float_of_bits(uint32_t b)
{
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

TEST(kaiming_bounds_are_torchs_to_the_bit)
{
    static const struct {
        int64_t fan_in;
        uint32_t bound; /* torch's, default init: kaiming_uniform_(a=sqrt(5)) */
    } dflt[] = {{9, 0x3eaaaaabu}, {576, 0x3d2aaaabu}, {784, 0x3d124925u}, {2304, 0x3caaaaabu}};
    for (size_t i = 0; i < sizeof dflt / sizeof dflt[0]; i++) {
        cnn_tensor *w = NULL;
        CHECK_OK(cnn_tensor_zeros(CNN_SHAPE(3, dflt[i].fan_in), CNN_CPU, &w));
        cnn_manual_seed(7);
        CHECK_OK(cnn_init_default_(w, NULL));
        if (!draws_match(w, float_of_bits(dflt[i].bound)))
            cnn_test_fail(__FILE__, __LINE__, "default init, fan_in %lld: not U(-b, b) with "
                          "torch's b = %.9g", (long long)dflt[i].fan_in,
                          float_of_bits(dflt[i].bound));
        cnn_tensor_free(&w);
    }
    cnn_tensor *w = NULL;
    CHECK_OK(cnn_tensor_zeros(CNN_SHAPE(3, 4), CNN_CPU, &w)); /* relu, fan_in 4 */
    cnn_manual_seed(7);
    CHECK_OK(cnn_init_kaiming_uniform_(w, 0, CNN_FAN_IN, CNN_NONLIN_RELU));
    CHECK(draws_match(w, float_of_bits(0x3f9cc471u)));
    cnn_tensor_free(&w);

    /* A layer without inputs: torch's bias bound is the integer 0, so the bias is +0, not -0. */
    cnn_tensor *fc = NULL, *b = NULL;
    CHECK_OK(cnn_tensor_zeros(CNN_SHAPE(5, 0), CNN_CPU, &fc));
    CHECK_OK(cnn_tensor_full(CNN_SHAPE(5), 1.0f, CNN_CPU, &b));
    CHECK_OK(cnn_init_default_(fc, b));
    for (int i = 0; i < 5; i++)
        CHECK(!signbit(cnn_tensor_cdata(b)[i]) && cnn_tensor_cdata(b)[i] == 0);
    cnn_tensor_free(&fc);
    cnn_tensor_free(&b);
}
