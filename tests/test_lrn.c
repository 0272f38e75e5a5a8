/* test_lrn.c — local response normalisation: a hand-computed case with an even window (to pin
 * PyTorch's asymmetric centring), forward against a naive reference for odd and even sizes on
 * ranks 3 and 4, gradchecks for sizes 3 and 5, and argument errors. */
#include "gradcheck.h"

/* Naive reference: channel c's window is [c - size/2, c + (size-1)/2], zeros outside.
 * x, y: (N, C, inner) */
static void ref_lrn(const float *x, int n, int c, int inner, int size, double alpha, double beta,
                    double k, float *y)
{
    for (int i = 0; i < n; i++)
        for (int ch = 0; ch < c; ch++)
            for (int j = 0; j < inner; j++) {
                double q = 0;
                for (int cc = ch - size / 2; cc <= ch + (size - 1) / 2; cc++) {
                    if (cc < 0 || cc >= c) continue;
                    double v = x[(i * c + cc) * inner + j];
                    q += v * v;
                }
                double v = x[(i * c + ch) * inner + j];
                y[(i * c + ch) * inner + j] = (float)(v / pow(k + alpha / size * q, beta));
            }
}

TEST(lrn_known_even_window)
{
    /* size 2: channel c sees c-1 and c. alpha 1, beta 1, k 1:
     * c0: 1 / (1 + 1/2) ; c1: 2 / (1 + 5/2) ; c2: 3 / (1 + 13/2) */
    float xv[3] = {1, 2, 3};
    cnn_tensor *x = NULL, *y = NULL;
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(1, 3, 1), xv, CNN_CPU, &x));
    CHECK_OK(cnn_lrn(x, 2, 1.0f, 1.0f, 1.0f, &y));
    CHECK_NEAR(cnn_tensor_cdata(y)[0], 1.0 / 1.5, 1e-6);
    CHECK_NEAR(cnn_tensor_cdata(y)[1], 2.0 / 3.5, 1e-6);
    CHECK_NEAR(cnn_tensor_cdata(y)[2], 3.0 / 7.5, 1e-6);
    cnn_tensor_free(&x);
    cnn_tensor_free(&y);
}

/* Near FLT_MAX: the scale overflows to inf, so y is 0 there (as PyTorch's x / inf), and the
 * backward's dy * x * s^(-beta) / s must not form dy * x first (inf, then inf * 0 = NaN): it is
 * dy * (x * (s^(-beta) / s)), 0 for an infinite scale. Expected from torch 1.13 (size 3,
 * alpha 1e-4, beta 0.75, k 1). x, dy: (1, 3, 2). */
TEST(lrn_huge_inputs_keep_finite_gradient_as_torch)
{
    const float xv[6] = {3e38f, -3e38f, 0.5f, 1, 1, 1}, dyv[6] = {1, 2, 3, 1, 2, 3};
    const double ey[6] = {0, 0, 0, 0, 0.999968767, 0.999950051};
    const double edx[6] = {0, 0, -4.99963535e-05, -0.00014998253, 1.99983764, 2.99970007};
    cnn_tensor *x = NULL, *y = NULL, *dy = NULL;
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(1, 3, 2), xv, CNN_CPU, &x));
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(1, 3, 2), dyv, CNN_CPU, &dy));
    CHECK_OK(cnn_tensor_set_requires_grad(x, true));
    CHECK_OK(cnn_lrn(x, 3, 1e-4f, 0.75f, 1.0f, &y));
    CHECK_OK(cnn_backward_with_grad(y, dy));
    REQUIRE(cnn_tensor_grad(x));
    for (int i = 0; i < 6; i++) {
        CHECK_NEAR(cnn_tensor_cdata(y)[i], ey[i], 1e-6);
        CHECK_NEAR(cnn_tensor_cdata(cnn_tensor_grad(x))[i], edx[i], 1e-6);
    }
    cnn_tensor_free(&x);
    cnn_tensor_free(&y);
    cnn_tensor_free(&dy);
}

/* Large but not huge inputs: at x = 1e16 (size 5, alpha 1e-4, beta 0.75, k 1, one channel) the
 * scale is 2e27 and s^(-beta-1) 1.7e-48, below the smallest float, so the gradient's cross term
 * must not form it (x / s first, then s^-beta: -1.6718507e-21 exactly, where the dropped term
 * gave +3.34e-21). And with k 0 and beta 2, s^-beta overflows where x / s^beta does not (PyTorch's
 * form): x = 1e-10 (size 1, alpha 1) gives 1e30, not inf. */
TEST(lrn_large_and_small_scales_as_torch)
{
    const float big = 1e16f, tiny = 1e-10f;
    cnn_tensor *x = NULL, *y = NULL, *dy = NULL;
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(1, 1, 1), &big, CNN_CPU, &x));
    CHECK_OK(cnn_tensor_full(CNN_SHAPE(1, 1, 1), 1.0f, CNN_CPU, &dy));
    CHECK_OK(cnn_tensor_set_requires_grad(x, true));
    CHECK_OK(cnn_lrn(x, 5, 1e-4f, 0.75f, 1.0f, &y));
    CHECK_OK(cnn_backward_with_grad(y, dy));
    REQUIRE(cnn_tensor_grad(x));
    const double xd = big, sd = 1.0 + (double)1e-4f / 5 * xd * xd;
    const double want = pow(sd, -0.75) - 2 * 0.75 * (double)1e-4f / 5 * xd * xd * pow(sd, -1.75);
    const float got = cnn_tensor_cdata(cnn_tensor_grad(x))[0];
    if (!(fabs(got - want) <= 1e-5 * fabs(want)))
        cnn_test_fail(__FILE__, __LINE__, "lrn dx at 1e16: %.8g, exactly %.8g", (double)got, want);
    free_tensors(&x, &y, &dy);
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(1, 1, 1), &tiny, CNN_CPU, &x));
    CHECK_OK(cnn_lrn(x, 1, 1.0f, 2.0f, 0.0f, &y));
    const double yd = (double)tiny / pow((double)tiny * tiny, 2);
    CHECK(y && fabs(cnn_tensor_cdata(y)[0] - yd) <= 1e-5 * yd);
    free_tensors(&x, &y);
}

static void check_lrn_forward(cnn_shape s, int size, float alpha, float beta, float k)
{
    int n = (int)s.d[0], c = (int)s.d[1], inner = 1;
    for (int i = 2; i < s.ndim; i++) inner *= (int)s.d[i];
    cnn_tensor *x = rand_tensor(s, -3, 3, 0), *y = NULL, *want = NULL;
    REQUIRE(x);
    float *yv = malloc((size_t)(n * c * inner) * sizeof *yv);
    ref_lrn(cnn_tensor_cdata(x), n, c, inner, size, alpha, beta, k, yv);
    CHECK_OK(cnn_tensor_from_data(s, yv, CNN_CPU, &want));
    free(yv);
    CHECK_OK(cnn_lrn(x, size, alpha, beta, k, &y));
    CHECK(tensors_close("lrn", y, want, 1e-6f, 1e-5f));
    cnn_tensor_free(&x);
    cnn_tensor_free(&y);
    cnn_tensor_free(&want);
}

TEST(lrn_matches_naive)
{
    check_lrn_forward(CNN_SHAPE(2, 7, 3, 4), 5, 1e-4f, 0.75f, 1.0f); /* AlexNet's settings */
    check_lrn_forward(CNN_SHAPE(2, 7, 3, 4), 5, 0.5f, 0.75f, 2.0f);
    check_lrn_forward(CNN_SHAPE(3, 6, 5), 3, 0.3f, 0.5f, 1.0f);
    check_lrn_forward(CNN_SHAPE(2, 5, 2, 2), 4, 0.3f, 1.2f, 1.5f);
    check_lrn_forward(CNN_SHAPE(1, 3, 2, 3), 9, 0.3f, 0.75f, 1.0f); /* window wider than C */
    check_lrn_forward(CNN_SHAPE(2, 4, 3), 1, 0.3f, 0.75f, 1.0f);
}

typedef struct {
    int size;
    float alpha, beta, k;
} lrn_case;

static cnn_status f_lrn(cnn_tensor *const *in, void *ud, cnn_tensor **y)
{
    const lrn_case *c = ud;
    return cnn_lrn(in[0], c->size, c->alpha, c->beta, c->k, y);
}

TEST(lrn_gradcheck)
{
    const lrn_case cases[] = {{3, 0.5f, 0.75f, 1.0f}, {5, 0.8f, 0.75f, 2.0f},
                              {4, 0.6f, 1.3f, 1.0f}, {2, 0.5f, 0.5f, 1.5f}};
    const cnn_shape shapes[] = {CNN_SHAPE(2, 6, 2, 3), CNN_SHAPE(2, 7, 2, 2), CNN_SHAPE(2, 5, 3),
                                CNN_SHAPE(1, 4, 3)};
    for (int i = 0; i < 4; i++) {
        cnn_tensor *x = rand_tensor(shapes[i], -1.5f, 1.5f, 1);
        char what[32];
        snprintf(what, sizeof what, "lrn size %d", cases[i].size);
        CHECK(gradcheck(what, f_lrn, &x, 1, (void *)&cases[i], NULL));
        cnn_tensor_free(&x);
    }
}

TEST(lrn_errors)
{
    cnn_tensor *x = rand_tensor(CNN_SHAPE(2, 4, 3), -1, 1, 0);
    cnn_tensor *x2 = rand_tensor(CNN_SHAPE(4, 3), -1, 1, 0);
    cnn_tensor *y = NULL;
    REQUIRE(x && x2);
    CHECK_ERR(cnn_lrn(NULL, 3, 1e-4f, 0.75f, 1.0f, &y), CNN_ERR_INVALID_ARG);
    CHECK_ERR(cnn_lrn(x, 3, 1e-4f, 0.75f, 1.0f, NULL), CNN_ERR_INVALID_ARG);
    CHECK_ERR(cnn_lrn(x, 0, 1e-4f, 0.75f, 1.0f, &y), CNN_ERR_INVALID_ARG);
    CHECK_ERR(cnn_lrn(x, -2, 1e-4f, 0.75f, 1.0f, &y), CNN_ERR_INVALID_ARG);
    CHECK_ERR(cnn_lrn(x2, 3, 1e-4f, 0.75f, 1.0f, &y), CNN_ERR_SHAPE);
    CHECK(strstr(cnn_last_error(), "lrn") && strstr(cnn_last_error(), "(4, 3)"));
    CHECK(y == NULL);
    cnn_tensor_free(&x);
    cnn_tensor_free(&x2);
}

/* Big enough for the OpenMP paths. */
TEST(lrn_large_parallel)
{
    check_lrn_forward(CNN_SHAPE(4, 33, 16, 16), 5, 1e-3f, 0.75f, 1.0f);
    lrn_case c = {5, 0.8f, 0.75f, 1.0f};
    cnn_tensor *x = rand_tensor(CNN_SHAPE(4, 33, 16, 16), -1.5f, 1.5f, 1);
    gc_opts o = {.max_checks = 24};
    CHECK(gradcheck("lrn large", f_lrn, &x, 1, &c, &o));
    cnn_tensor_free(&x);
}
