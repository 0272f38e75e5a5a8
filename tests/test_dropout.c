/* test_dropout.c — inverted dropout: drop rate, exact survivor scaling, masks reproduced by the
 * seed and regenerated identically in backward, the RNG counters it takes, eval/p=0 identity,
 * p=1, a gradcheck with a pinned RNG state, and argument errors. */
#include "gradcheck.h"
#include "philox.h"

TEST(dropout_rate_and_scale)
{
    const float ps[3] = {0.1f, 0.3f, 0.75f};
    cnn_tensor *x = rand_tensor(CNN_SHAPE(4, 16, 64, 64), 0.5f, 1.5f, 0); /* 262144, none 0 */
    REQUIRE(x);
    int64_t n = cnn_tensor_numel(x);
    const float *xv = cnn_tensor_cdata(x);
    for (int t = 0; t < 3; t++) {
        float p = ps[t], scale = 1.0f / (1.0f - p);
        cnn_tensor *y = NULL;
        CHECK_OK(cnn_dropout(x, p, true, &y));
        const float *yv = cnn_tensor_cdata(y);
        int64_t zeros = 0, bad = 0;
        for (int64_t i = 0; i < n; i++) {
            if (yv[i] == 0.0f) zeros++;
            else if (yv[i] != xv[i] * scale) bad++;
        }
        /* Binomial: sd of the fraction <= 0.001 here, so 0.006 is six sigma. */
        CHECK_NEAR((double)zeros / (double)n, p, 0.006);
        CHECK(bad == 0);
        cnn_tensor_free(&y);
    }
    cnn_tensor_free(&x);
}

TEST(dropout_same_seed_same_mask)
{
    cnn_tensor *x = rand_tensor(CNN_SHAPE(3, 5, 7), 0.5f, 1.5f, 0), *a = NULL, *b = NULL, *c = NULL;
    REQUIRE(x);
    int64_t n = cnn_tensor_numel(x);
    cnn_manual_seed(42);
    uint64_t seed, off0, off1;
    cnn_rng_get_state(&seed, &off0);
    CHECK_OK(cnn_dropout(x, 0.5f, true, &a));
    cnn_rng_get_state(&seed, &off1);
    CHECK(off1 - off0 == (uint64_t)(n + 3) / 4); /* 4 uniforms per Philox counter */
    CHECK_OK(cnn_dropout(x, 0.5f, true, &c));    /* the stream moved on: another mask */
    cnn_manual_seed(42);
    CHECK_OK(cnn_dropout(x, 0.5f, true, &b));
    CHECK(memcmp(cnn_tensor_cdata(a), cnn_tensor_cdata(b), (size_t)n * sizeof(float)) == 0);
    CHECK(memcmp(cnn_tensor_cdata(a), cnn_tensor_cdata(c), (size_t)n * sizeof(float)) != 0);
    cnn_tensor_free(&x);
    cnn_tensor_free(&a);
    cnn_tensor_free(&b);
    cnn_tensor_free(&c);
}

TEST(dropout_mask_is_philox_uniform_of_element_index)
{
    /* The contract a CUDA kernel must meet: element i is kept iff uniform(seed, offset, i) <
     * 1 - p, with (seed, offset) the context state before the call. */
    cnn_tensor *x = rand_tensor(CNN_SHAPE(3, 7, 11), 0.5f, 1.5f, 0), *y = NULL;
    REQUIRE(x);
    cnn_rng_set_state(0x1234567890abcdefull, 77);
    uint64_t seed, off;
    cnn_rng_get_state(&seed, &off);
    float p = 0.35f;
    CHECK_OK(cnn_dropout(x, p, true, &y));
    const float *yv = cnn_tensor_cdata(y);
    int64_t bad = 0, n = cnn_tensor_numel(x);
    for (int64_t i = 0; i < n; i++)
        if ((yv[i] != 0.0f) != (cnn_philox_uniform(seed, off, (uint64_t)i) < 1.0f - p)) bad++;
    CHECK(bad == 0);
    cnn_tensor_free(&x);
    cnn_tensor_free(&y);
}

TEST(dropout_backward_regenerates_forward_mask)
{
    /* Another draw between forward and backward must not disturb the regenerated mask. */
    cnn_tensor *x = rand_tensor(CNN_SHAPE(2, 8, 33, 35), 0.5f, 1.5f, 1), *y = NULL, *g = NULL;
    cnn_tensor *noise = NULL;
    REQUIRE(x);
    float p = 0.4f, scale = 1.0f / (1.0f - p);
    CHECK_OK(cnn_dropout(x, p, true, &y));
    CHECK(cnn_tape_size() == 1);
    CHECK_OK(cnn_tensor_uniform(CNN_SHAPE(1000), 0, 1, CNN_CPU, &noise));
    g = rand_tensor(cnn_tensor_shape(x), -1, 1, 0);
    REQUIRE(g);
    CHECK_OK(cnn_backward_with_grad(y, g));
    const float *yv = cnn_tensor_cdata(y), *gv = cnn_tensor_cdata(g);
    const float *dx = cnn_tensor_cdata(cnn_tensor_grad(x));
    REQUIRE(dx);
    int64_t bad = 0, n = cnn_tensor_numel(x);
    for (int64_t i = 0; i < n; i++)
        if (dx[i] != (yv[i] != 0.0f ? gv[i] * scale : 0.0f)) bad++;
    CHECK(bad == 0);
    cnn_tensor_free(&x);
    cnn_tensor_free(&y);
    cnn_tensor_free(&g);
    cnn_tensor_free(&noise);
}

TEST(dropout_eval_and_p0_are_identity)
{
    cnn_tensor *x = rand_tensor(CNN_SHAPE(4, 6), -1, 1, 1), *y = NULL, *z = NULL;
    REQUIRE(x);
    uint64_t seed, off0, off1;
    cnn_rng_get_state(&seed, &off0);
    CHECK_OK(cnn_dropout(x, 0.5f, false, &y));
    CHECK(y == x); /* a new reference, no copy */
    CHECK_OK(cnn_dropout(x, 0.0f, true, &z));
    CHECK(z == x);
    CHECK(cnn_tape_size() == 0);
    cnn_rng_get_state(&seed, &off1);
    CHECK(off1 == off0); /* and no random numbers spent */
    cnn_tensor_free(&y);
    cnn_tensor_free(&z);
    CHECK(cnn_tensor_numel(x) == 24); /* the caller's handle is still alive */
    cnn_tensor_free(&x);
}

TEST(dropout_p1_zeros_everything)
{
    cnn_tensor *x = rand_tensor(CNN_SHAPE(5, 7), -1, 1, 1), *y = NULL, *s = NULL;
    REQUIRE(x);
    CHECK_OK(cnn_dropout(x, 1.0f, true, &y));
    for (int i = 0; i < 35; i++) CHECK(cnn_tensor_cdata(y)[i] == 0.0f);
    CHECK_OK(cnn_sum(y, &s));
    CHECK_OK(cnn_backward(s));
    REQUIRE(cnn_tensor_grad(x));
    for (int i = 0; i < 35; i++) CHECK(cnn_tensor_cdata(cnn_tensor_grad(x))[i] == 0.0f);
    cnn_tensor_free(&x);
    cnn_tensor_free(&y);
    cnn_tensor_free(&s);
}

/* As PyTorch's x * mask / (1 - p): a dropped NaN or +-inf is NaN (x * 0), not 0, in forward
 * and backward, so dropout cannot hide a diverging net's NaN. With p = 1 (torch 1.13:
 * dropout((NaN, inf, -inf, 1, -2), 1) = (NaN, NaN, NaN, 0, -0), backward of (1, NaN, 1, 1, 1) =
 * (0, NaN, 0, 0, 0)), and with p = 0.5 on all-NaN input (every output NaN, whatever the mask). */
static void dropout_keeps_nan_on(cnn_device dev)
{
    const float xv[5] = {NAN, INFINITY, -INFINITY, 1, -2}, dyv[5] = {1, NAN, 1, 1, 1};
    cnn_tensor *h = NULL, *x = NULL, *dy = NULL, *y = NULL, *big = NULL;
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(5), xv, CNN_CPU, &h));
    CHECK_OK(cnn_tensor_to(h, dev, &x));
    cnn_tensor_free(&h);
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(5), dyv, CNN_CPU, &h));
    CHECK_OK(cnn_tensor_to(h, dev, &dy));
    cnn_tensor_free(&h);
    CHECK_OK(cnn_tensor_set_requires_grad(x, true));
    CHECK_OK(cnn_dropout(x, 1.0f, true, &y));
    float v[5], g[5];
    CHECK_OK(cnn_tensor_read(y, v, 5));
    CHECK(isnan(v[0]) && isnan(v[1]) && isnan(v[2]) && v[3] == 0.0f && v[4] == 0.0f);
    CHECK_OK(cnn_backward_with_grad(y, dy));
    REQUIRE(cnn_tensor_grad(x));
    CHECK_OK(cnn_tensor_read(cnn_tensor_grad(x), g, 5));
    CHECK(g[0] == 0.0f && isnan(g[1]) && g[2] == 0.0f && g[3] == 0.0f && g[4] == 0.0f);
    cnn_tensor_free(&y);
    enum { N = 1000 };
    static float out[N];
    CHECK_OK(cnn_tensor_full(CNN_SHAPE(N), NAN, dev, &big));
    CHECK_OK(cnn_dropout(big, 0.5f, true, &y));
    CHECK_OK(cnn_tensor_read(y, out, N));
    int finite = 0;
    for (int i = 0; i < N; i++) finite += !isnan(out[i]);
    CHECK(finite == 0);
    cnn_tensor *all[4] = {x, dy, y, big};
    for (int i = 0; i < 4; i++) cnn_tensor_free(&all[i]);
}

TEST(dropout_keeps_nan_as_torch) { dropout_keeps_nan_on(CNN_CPU); }

GPU_TEST(cuda_dropout_keeps_nan_as_torch) { dropout_keeps_nan_on(CNN_CUDA(0)); }

/* Every call draws the same mask: the RNG state is pinned before each forward. */
static cnn_status f_dropout(cnn_tensor *const *in, void *ud, cnn_tensor **y)
{
    cnn_rng_set_state(7, 100);
    cnn_tensor *t = NULL;
    cnn_status st = cnn_tensor_transpose(in[0], 1, 2, &t); /* a non-contiguous input */
    if (st == CNN_OK) st = cnn_dropout(t, *(const float *)ud, true, y);
    cnn_tensor_free(&t);
    return st;
}

TEST(dropout_gradcheck)
{
    float p = 0.3f;
    cnn_tensor *x = rand_tensor(CNN_SHAPE(2, 3, 4, 5), -1, 1, 1);
    REQUIRE(x);
    CHECK(gradcheck("dropout", f_dropout, &x, 1, &p, NULL));
    cnn_tensor_free(&x);
}

TEST(dropout_errors)
{
    cnn_tensor *x = rand_tensor(CNN_SHAPE(3), -1, 1, 0), *y = NULL;
    REQUIRE(x);
    CHECK_ERR(cnn_dropout(x, 1.5f, true, &y), CNN_ERR_INVALID_ARG);
    CHECK(strstr(cnn_last_error(), "dropout") && strstr(cnn_last_error(), "1.5"));
    CHECK_ERR(cnn_dropout(x, -0.25f, false, &y), CNN_ERR_INVALID_ARG);
    CHECK(strstr(cnn_last_error(), "-0.25"));
    CHECK_ERR(cnn_dropout(x, NAN, true, &y), CNN_ERR_INVALID_ARG);
    CHECK_ERR(cnn_dropout(NULL, 0.5f, true, &y), CNN_ERR_INVALID_ARG);
    CHECK_ERR(cnn_dropout(x, 0.5f, true, NULL), CNN_ERR_INVALID_ARG);
    /* Integer elements are not multiplied by the mask as floats. */
    const int64_t lv[2] = {1, 2};
    cnn_tensor *lab = NULL;
    CHECK_OK(cnn_tensor_from_i64(CNN_SHAPE(2), lv, CNN_CPU, &lab));
    CHECK_ERR(cnn_dropout(lab, 0.5f, true, &y), CNN_ERR_UNSUPPORTED);
    CHECK(strstr(cnn_last_error(), "dropout") && strstr(cnn_last_error(), "I64"));
    CHECK(y == NULL);
    cnn_tensor_free(&lab);
    cnn_tensor_free(&x);
}
