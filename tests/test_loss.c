/* test_loss.c — softmax, log_softmax and cross-entropy: values against references computed
 * here, a hand-worked 2x3 cross-entropy with and without label smoothing, huge logits, gradchecks
 * along every dim, what cross-entropy saves (white-box, via internal.h), and argument errors. */
#include "gradcheck.h"
#include "internal.h"

/* Softmax of x (row-major shape s) along dim d in double, into out. */
static void ref_softmax(const float *x, cnn_shape s, int d, double *out)
{
    int64_t outer = 1, k = s.d[d], inner = 1;
    for (int i = 0; i < d; i++) outer *= s.d[i];
    for (int i = d + 1; i < s.ndim; i++) inner *= s.d[i];
    for (int64_t o = 0; o < outer; o++)
        for (int64_t in = 0; in < inner; in++) {
            double z = 0;
            for (int64_t j = 0; j < k; j++) z += exp(x[(o * k + j) * inner + in]);
            for (int64_t j = 0; j < k; j++)
                out[(o * k + j) * inner + in] = exp(x[(o * k + j) * inner + in]) / z;
        }
}

TEST(softmax_matches_reference_every_dim)
{
    cnn_shape s = CNN_SHAPE(2, 3, 4, 5);
    cnn_tensor *x = rand_tensor(s, -4, 4, 0);
    REQUIRE(x);
    const float *xv = cnn_tensor_cdata(x);
    double ref[120];
    for (int dim = -4; dim < 4; dim++) {
        int d = dim < 0 ? dim + 4 : dim;
        ref_softmax(xv, s, d, ref);
        cnn_tensor *y = NULL, *ly = NULL;
        CHECK_OK(cnn_softmax(x, dim, &y));
        CHECK_OK(cnn_log_softmax(x, dim, &ly));
        const float *yv = cnn_tensor_cdata(y), *lv = cnn_tensor_cdata(ly);
        for (int i = 0; i < 120; i++) {
            CHECK_NEAR(yv[i], ref[i], 1e-6);
            CHECK_NEAR(lv[i], log(ref[i]), 2e-6);
        }
        cnn_tensor_free(&y);
        cnn_tensor_free(&ly);
        if (cnn_test_failed()) break;
    }
    /* Rows along dim 1 sum to one. */
    cnn_tensor *y = NULL;
    CHECK_OK(cnn_softmax(x, 1, &y));
    const float *yv = cnn_tensor_cdata(y);
    for (int n = 0; n < 2; n++)
        for (int hw = 0; hw < 20; hw++) {
            double sum = 0;
            for (int c = 0; c < 3; c++) sum += yv[(n * 3 + c) * 20 + hw];
            CHECK_NEAR(sum, 1.0, 1e-6);
        }
    cnn_tensor_free(&y);
    cnn_tensor_free(&x);
}

TEST(softmax_huge_logits_stay_finite)
{
    float xv[6] = {1e4f, 0.0f, -1e4f, 5e3f, 5e3f, -1e4f};
    cnn_tensor *x = NULL, *y = NULL, *ly = NULL;
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(2, 3), xv, CNN_CPU, &x));
    CHECK_OK(cnn_softmax(x, -1, &y));
    CHECK_OK(cnn_log_softmax(x, -1, &ly));
    const float *yv = cnn_tensor_cdata(y), *lv = cnn_tensor_cdata(ly);
    const double ey[6] = {1, 0, 0, 0.5, 0.5, 0},
                 el[6] = {0, -1e4, -2e4, -M_LN2, -M_LN2, -1.5e4 - M_LN2};
    for (int i = 0; i < 6; i++) {
        CHECK_NEAR(yv[i], ey[i], 1e-7);
        CHECK_NEAR(lv[i], el[i], 1e-3);
    }
    cnn_tensor_free(&x);
    cnn_tensor_free(&y);
    cnn_tensor_free(&ly);
}

/* Large logits with small gaps: log_softmax is (x - max) - log(sum), as PyTorch orders it, not
 * x - (max + log(sum)), where max + log(sum) rounds to max (the float spacing at 1e7 is 1, at
 * 1e8 it is 8) and every output lost its log(sum). Both layouts (the dim innermost and strided),
 * and the gradient, which reads the output. Expected values from torch 1.13 (dy rows 1, 2, 3). */
TEST(log_softmax_large_logits_as_torch)
{
    const float xv[6] = {1e7f, 1e7f + 1, 1e7f + 2, 1e8f, 1e8f, 1e8f}, dyv[6] = {1, 2, 3, 1, 2, 3};
    const double ey[6] = {-2.40760589, -1.40760589, -0.407605946, -1.09861231, -1.09861231,
                          -1.09861231};
    const double edx[6] = {0.459816515, 0.531629086, -0.991446018, -0.999999881, 1.1920929e-07,
                           1.00000012};
    for (int dim = 1; dim >= 0; dim--) {
        /* dim 0: the transpose (3, 2), softmax down the columns */
        float xs[6], dys[6];
        for (int i = 0; i < 6; i++) {
            int j = dim ? i : (i % 2) * 3 + i / 2;
            xs[i] = xv[j];
            dys[i] = dyv[j];
        }
        cnn_shape s = dim ? CNN_SHAPE(2, 3) : CNN_SHAPE(3, 2);
        cnn_tensor *x = NULL, *y = NULL, *dy = NULL;
        CHECK_OK(cnn_tensor_from_data(s, xs, CNN_CPU, &x));
        CHECK_OK(cnn_tensor_from_data(s, dys, CNN_CPU, &dy));
        CHECK_OK(cnn_tensor_set_requires_grad(x, true));
        CHECK_OK(cnn_log_softmax(x, dim, &y));
        float yv[6], g[6];
        CHECK_OK(cnn_tensor_read(y, yv, 6));
        CHECK_OK(cnn_backward_with_grad(y, dy));
        REQUIRE(cnn_tensor_grad(x));
        CHECK_OK(cnn_tensor_read(cnn_tensor_grad(x), g, 6));
        for (int i = 0; i < 6; i++) {
            int j = dim ? i : (i % 2) * 3 + i / 2;
            CHECK_NEAR(yv[i], ey[j], 1e-6);
            CHECK_NEAR(g[i], edx[j], 1e-6);
        }
        cnn_tensor_free(&x);
        cnn_tensor_free(&y);
        cnn_tensor_free(&dy);
    }
}

TEST(softmax_scalar_is_one_row)
{
    /* As PyTorch: a rank-0 tensor takes dim 0 or -1; softmax 1, log_softmax 0. */
    cnn_tensor *x = NULL, *y = NULL, *ly = NULL;
    float v = 0, lv = 1;
    CHECK_OK(cnn_tensor_full(CNN_SCALAR, 3.5f, CNN_CPU, &x));
    CHECK_OK(cnn_softmax(x, 0, &y));
    CHECK_OK(cnn_log_softmax(x, -1, &ly));
    CHECK_OK(cnn_tensor_read(y, &v, 1));
    CHECK_OK(cnn_tensor_read(ly, &lv, 1));
    CHECK(v == 1.0f && lv == 0.0f && cnn_tensor_ndim(y) == 0);
    cnn_tensor_free(&y);
    CHECK_ERR(cnn_softmax(x, 1, &y), CNN_ERR_SHAPE);
    cnn_tensor_free(&x);
    cnn_tensor_free(&ly);
}

typedef struct {
    int dim, log, transpose;
} sm_case;

static cnn_status f_softmax(cnn_tensor *const *in, void *ud, cnn_tensor **y)
{
    const sm_case *c = ud;
    cnn_tensor *t = NULL;
    cnn_status st = CNN_OK;
    if (c->transpose) st = cnn_tensor_transpose(in[0], 1, 3, &t);
    const cnn_tensor *x = c->transpose ? t : in[0];
    if (st == CNN_OK) st = c->log ? cnn_log_softmax(x, c->dim, y) : cnn_softmax(x, c->dim, y);
    cnn_tensor_free(&t);
    return st;
}

TEST(softmax_gradcheck)
{
    const sm_case cases[] = {{0, 0, 0}, {1, 0, 0}, {-1, 0, 0}, {2, 1, 0},
                             {-3, 1, 0}, {3, 1, 0}, {1, 0, 1}, {1, 1, 1}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        cnn_tensor *x = rand_tensor(CNN_SHAPE(2, 3, 4, 5), -2, 2, 1);
        REQUIRE(x);
        char what[64];
        snprintf(what, sizeof what, "%s dim %d%s", cases[c].log ? "log_softmax" : "softmax",
                 cases[c].dim, cases[c].transpose ? " transposed" : "");
        CHECK(gradcheck(what, f_softmax, &x, 1, (void *)&cases[c], NULL));
        cnn_tensor_free(&x);
    }
}

TEST(softmax_errors)
{
    cnn_tensor *x = rand_tensor(CNN_SHAPE(2, 3, 4, 5), -1, 1, 0), *y = NULL;
    REQUIRE(x);
    CHECK_ERR(cnn_softmax(x, 4, &y), CNN_ERR_SHAPE);
    CHECK(strstr(cnn_last_error(), "dim 4") && strstr(cnn_last_error(), "(2, 3, 4, 5)"));
    CHECK_ERR(cnn_log_softmax(x, -5, &y), CNN_ERR_SHAPE);
    CHECK(strstr(cnn_last_error(), "log_softmax") && strstr(cnn_last_error(), "dim -5"));
    CHECK_ERR(cnn_softmax(NULL, 0, &y), CNN_ERR_INVALID_ARG);
    CHECK(y == NULL);
    cnn_tensor_free(&x);
}

/* logits [[1, 2, 3], [1, 0, -1]], labels [2, 1]. With c = log(1 + e^-1 + e^-2), the row
 * log-sum-exps are 3 + c and 1 + c, so the NLLs are c and 1 + c: loss = c + 0.5. With label
 * smoothing 0.1 each row adds 0.1 * (lse - mean(x)) - 0.1 * nll, mean(x) = 2 and 0: rows
 * 0.9c + 0.1(1 + c) and 0.9(1 + c) + 0.1(1 + c): loss = c + 0.55. */
TEST(cross_entropy_hand_worked_2x3)
{
    const float xv[6] = {1, 2, 3, 1, 0, -1};
    const int64_t lv[2] = {2, 1};
    const double c = log(1 + exp(-1.0) + exp(-2.0));
    const float smooth[2] = {0.0f, 0.1f};
    const double expect[2] = {c + 0.5, c + 0.55};
    cnn_tensor *x = NULL, *lab = NULL;
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(2, 3), xv, CNN_CPU, &x));
    CHECK_OK(cnn_tensor_from_i64(CNN_SHAPE(2), lv, CNN_CPU, &lab));
    CHECK_OK(cnn_tensor_set_requires_grad(x, true));
    double p[6];
    ref_softmax(xv, CNN_SHAPE(2, 3), 1, p);
    for (int t = 0; t < 2; t++) {
        float ls = smooth[t], v;
        cnn_tensor *loss = NULL;
        CHECK_OK(cnn_cross_entropy(x, lab, ls, &loss));
        CHECK(cnn_tensor_ndim(loss) == 0);
        CHECK_OK(cnn_tensor_read(loss, &v, 1));
        CHECK_NEAR(v, expect[t], 1e-6);
        /* d loss / d x = (softmax - q) / N, q = (1 - ls) onehot + ls / K. */
        cnn_tensor_zero_grad(x);
        CHECK_OK(cnn_backward(loss));
        const float *g = cnn_tensor_cdata(cnn_tensor_grad(x));
        REQUIRE(g);
        for (int i = 0; i < 6; i++) {
            double q = (1 - ls) * (i % 3 == lv[i / 3]) + ls / 3.0;
            CHECK_NEAR(g[i], (p[i] - q) / 2, 1e-6);
        }
        cnn_tensor_free(&loss);
    }
    cnn_tensor_free(&x);
    cnn_tensor_free(&lab);
}

/* A -inf logit (a masked class) leaves the loss finite without label smoothing, as in PyTorch
 * (the smoothing term, +inf then, is not added at all), and makes it +inf with smoothing. */
static void cross_entropy_masked_logits_on(cnn_device dev)
{
    const float xv[6] = {0.0f, -INFINITY, 1.0f, 2.0f, 1.0f, -INFINITY};
    const int64_t lv[2] = {0, 1};
    /* -log softmax: row 0 at class 0: log(1 + e); row 1 at class 1: 1 + log(1 + 1/e) */
    const double want = 0.5 * (log(1 + exp(1.0)) + 1 + log(1 + exp(-1.0)));
    cnn_tensor *xh = NULL, *lh = NULL, *x = NULL, *lab = NULL, *loss = NULL;
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(2, 3), xv, CNN_CPU, &xh));
    CHECK_OK(cnn_tensor_from_i64(CNN_SHAPE(2), lv, CNN_CPU, &lh));
    CHECK_OK(cnn_tensor_to(xh, dev, &x));
    CHECK_OK(cnn_tensor_to(lh, dev, &lab));
    CHECK_OK(cnn_tensor_set_requires_grad(x, true));
    float v, g[6];
    CHECK_OK(cnn_cross_entropy(x, lab, 0.0f, &loss));
    CHECK_OK(cnn_tensor_read(loss, &v, 1));
    CHECK_NEAR(v, want, 1e-6);
    CHECK_OK(cnn_backward(loss));
    REQUIRE(cnn_tensor_grad(x));
    CHECK_OK(cnn_tensor_read(cnn_tensor_grad(x), g, 6));
    CHECK(g[1] == 0.0f && g[5] == 0.0f);
    for (int i = 0; i < 6; i++) CHECK(isfinite(g[i]));
    cnn_tensor_free(&loss);
    CHECK_OK(cnn_cross_entropy(x, lab, 0.1f, &loss));
    CHECK_OK(cnn_tensor_read(loss, &v, 1));
    CHECK(isinf(v) && v > 0);
    cnn_tensor_free(&loss);
    cnn_tensor_free(&x);
    cnn_tensor_free(&lab);
    cnn_tensor_free(&xh);
    cnn_tensor_free(&lh);
}

TEST(cross_entropy_masked_logits_as_torch) { cross_entropy_masked_logits_on(CNN_CPU); }

GPU_TEST(cuda_cross_entropy_masked_logits_as_torch)
{
    cross_entropy_masked_logits_on(CNN_CUDA(0));
}

TEST(cross_entropy_ignore_index_leaves_samples_out)
{
    /* Rows 0 and 2 are the 2x3 case above; rows 1 and 3 carry the ignored label: the loss is
     * the mean over the two kept rows and the ignored rows get no gradient (as PyTorch). */
    const float xv[12] = {1, 2, 3, 5, -1, 0, 1, 0, -1, 2, 2, 2};
    const int64_t lv[4] = {2, CNN_IGNORE_INDEX, 1, CNN_IGNORE_INDEX};
    const double c = log(1 + exp(-1.0) + exp(-2.0));
    cnn_tensor *x = NULL, *lab = NULL, *loss = NULL;
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(4, 3), xv, CNN_CPU, &x));
    CHECK_OK(cnn_tensor_from_i64(CNN_SHAPE(4), lv, CNN_CPU, &lab));
    CHECK_OK(cnn_tensor_set_requires_grad(x, true));
    float v;
    CHECK_OK(cnn_cross_entropy(x, lab, 0.1f, &loss));
    CHECK_OK(cnn_tensor_read(loss, &v, 1));
    CHECK_NEAR(v, c + 0.55, 1e-6);
    CHECK_OK(cnn_backward(loss));
    const float *g = cnn_tensor_cdata(cnn_tensor_grad(x));
    REQUIRE(g);
    double p[12];
    ref_softmax(xv, CNN_SHAPE(4, 3), 1, p);
    for (int i = 0; i < 12; i++) {
        int r = i / 3;
        double q = 0.9 * (i % 3 == lv[r]) + 0.1 / 3.0;
        CHECK_NEAR(g[i], lv[r] == CNN_IGNORE_INDEX ? 0.0 : (p[i] - q) / 2, 1e-6);
    }
    cnn_tensor_free(&loss);
    /* Another ignore_index: here class 1, so row 2 is left out and -100 is out of range. */
    CHECK_ERR(cnn_cross_entropy_ignore(x, lab, 0.0f, 1, &loss), CNN_ERR_INVALID_ARG);
    CHECK(strstr(cnn_last_error(), "ignore_index 1") != NULL);
    const int64_t lv2[4] = {2, 0, 1, 1};
    cnn_tensor *lab2 = NULL;
    CHECK_OK(cnn_tensor_from_i64(CNN_SHAPE(4), lv2, CNN_CPU, &lab2));
    CHECK_OK(cnn_cross_entropy_ignore(x, lab2, 0.0f, 1, &loss));
    CHECK_OK(cnn_tensor_read(loss, &v, 1));
    /* Rows 2 and 3 (label 1) are left out: row 0 gives c, row 1 lse(5, -1, 0) - 5. */
    CHECK_NEAR(v, (c + log(exp(5.0) + exp(-1.0) + 1.0) - 5.0) / 2, 1e-6);
    cnn_tensor_free(&loss);
    /* Every sample ignored: NaN, as PyTorch's mean over nothing. */
    const int64_t none[4] = {CNN_IGNORE_INDEX, CNN_IGNORE_INDEX, CNN_IGNORE_INDEX,
                             CNN_IGNORE_INDEX};
    CHECK_OK(cnn_tensor_write(lab, none, 4));
    CHECK_OK(cnn_cross_entropy(x, lab, 0.0f, &loss));
    CHECK_OK(cnn_tensor_read(loss, &v, 1));
    CHECK(isnan(v));
    cnn_tensor_free(&loss);
    cnn_tensor_free(&lab2);
    cnn_tensor_free(&lab);
    cnn_tensor_free(&x);
}

/* The ignored rows' gradient is written as zeros, not left as the allocation found it: logits
 * of 64 KiB take their gradient from the host allocator's cache, here a block just left full of
 * NaNs. Every third row is ignored; the others get (p - onehot) / N_valid. */
TEST(cross_entropy_ignored_rows_get_zeros_in_reused_memory)
{
    enum { N = 128, K = 128 };
    int64_t lv[N];
    for (int i = 0; i < N; i++) lv[i] = i % 3 == 1 ? CNN_IGNORE_INDEX : (i * 7) % K;
    cnn_tensor *x = rand_tensor(CNN_SHAPE(N, K), -3, 3, 1), *lab = NULL, *loss = NULL;
    cnn_tensor *junk = NULL;
    REQUIRE(x);
    CHECK_OK(cnn_tensor_from_i64(CNN_SHAPE(N), lv, CNN_CPU, &lab));
    CHECK_OK(cnn_cross_entropy(x, lab, 0.0f, &loss));
    CHECK_OK(cnn_tensor_full(CNN_SHAPE(N, K), NAN, CNN_CPU, &junk));
    cnn_tensor_free(&junk);
    CHECK_OK(cnn_backward(loss));
    const float *g = cnn_tensor_cdata(cnn_tensor_grad(x));
    REQUIRE(g);
    double *p = malloc(sizeof(double) * N * K);
    REQUIRE(p);
    ref_softmax(cnn_tensor_cdata(x), CNN_SHAPE(N, K), 1, p);
    const int valid = N - (N + 1) / 3;
    int bad = 0;
    for (int i = 0; i < N * K; i++) {
        int r = i / K;
        double want = lv[r] == CNN_IGNORE_INDEX ? 0.0 : (p[i] - (i % K == lv[r])) / valid;
        bad += !(fabs(g[i] - want) <= 1e-7 + 1e-5 * fabs(want));
    }
    CHECK(bad == 0);
    free(p);
    cnn_tensor_free(&loss);
    cnn_tensor_free(&lab);
    cnn_tensor_free(&x);
}

static cnn_status f_ce_ignore(cnn_tensor *const *in, void *ud, cnn_tensor **y)
{
    (void)ud;
    return cnn_cross_entropy_ignore(in[0], in[1], 0.2f, 3, y);
}

TEST(cross_entropy_ignore_index_gradcheck)
{
    const int64_t lv[5] = {0, 3, 2, 3, 1};
    cnn_tensor *in[2] = {rand_tensor(CNN_SHAPE(5, 4), -3, 3, 4), NULL};
    REQUIRE(in[0]);
    CHECK_OK(cnn_tensor_from_i64(CNN_SHAPE(5), lv, CNN_CPU, &in[1]));
    CHECK(gradcheck("cross_entropy ignore_index 3", f_ce_ignore, in, 2, NULL, NULL));
    cnn_tensor_free(&in[0]);
    cnn_tensor_free(&in[1]);
}

TEST(cross_entropy_huge_logits_stay_finite)
{
    const float xv[6] = {1e4f, 0.0f, -1e4f, -1e4f, 1e4f, 1e4f};
    const int64_t lv[2] = {2, 0};
    cnn_tensor *x = NULL, *lab = NULL, *loss = NULL;
    float v;
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(2, 3), xv, CNN_CPU, &x));
    CHECK_OK(cnn_tensor_set_requires_grad(x, true));
    CHECK_OK(cnn_tensor_from_i64(CNN_SHAPE(2), lv, CNN_CPU, &lab));
    CHECK_OK(cnn_cross_entropy(x, lab, 0.0f, &loss));
    CHECK_OK(cnn_tensor_read(loss, &v, 1));
    /* row 0: 2e4; row 1: lse = 1e4 + log 2, nll = 2e4 + log 2. */
    CHECK_NEAR(v, (2e4 + 2e4 + M_LN2) / 2, 1e-2);
    CHECK_OK(cnn_backward(loss));
    for (int i = 0; i < 6; i++) CHECK(isfinite(cnn_tensor_cdata(cnn_tensor_grad(x))[i]));
    cnn_tensor_free(&x);
    cnn_tensor_free(&lab);
    cnn_tensor_free(&loss);
}

static cnn_status f_ce(cnn_tensor *const *in, void *ud, cnn_tensor **y)
{
    return cnn_cross_entropy(in[0], in[1], *(const float *)ud, y);
}

TEST(cross_entropy_gradcheck_and_saved)
{
    const int64_t lv[6] = {0, 4, 2, 2, 3, 1};
    const float smooth[3] = {0.0f, 0.2f, 0.9f};
    cnn_tensor *in[2] = {rand_tensor(CNN_SHAPE(6, 5), -3, 3, 1), NULL};
    REQUIRE(in[0]);
    CHECK_OK(cnn_tensor_from_i64(CNN_SHAPE(6), lv, CNN_CPU, &in[1]));
    for (int t = 0; t < 3; t++) {
        char what[48];
        snprintf(what, sizeof what, "cross_entropy ls %g", (double)smooth[t]);
        CHECK(gradcheck(what, f_ce, in, 2, (void *)&smooth[t], NULL));
    }
    /* Saves the (N, K) probabilities and its own (N) copy of the labels, nothing else. */
    cnn_tensor *loss = NULL;
    CHECK_OK(cnn_cross_entropy(in[0], in[1], 0.0f, &loss));
    REQUIRE(loss->node && loss->node->n_saved == 2);
    CHECK(cnn_shape_equal(loss->node->saved[0]->shape, CNN_SHAPE(6, 5)));
    CHECK(loss->node->saved[1] != in[1] && cnn_tensor_numel(loss->node->saved[1]) == 6);
    /* Refilling the caller's label buffer before backward changes nothing. */
    const int64_t other[6] = {1, 1, 1, 1, 1, 1};
    CHECK_OK(cnn_tensor_write(in[1], other, 6));
    CHECK_OK(cnn_backward(loss));
    const float *g = cnn_tensor_cdata(cnn_tensor_grad(in[0]));
    REQUIRE(g);
    CHECK(g[0] < 0 && g[1] > 0); /* row 0's label is still 0 */
    cnn_tensor_free(&loss);
    cnn_tensor_free(&in[0]);
    cnn_tensor_free(&in[1]);
}

TEST(cross_entropy_errors)
{
    cnn_tensor *x = rand_tensor(CNN_SHAPE(2, 3), -1, 1, 0),
               *x1 = rand_tensor(CNN_SHAPE(6), -1, 1, 0);
    cnn_tensor *lab = NULL, *bad = NULL, *three = NULL, *f = rand_tensor(CNN_SHAPE(2), 0, 1, 0);
    cnn_tensor *loss = NULL;
    REQUIRE(x && x1 && f);
    const int64_t lv[2] = {0, 3}, neg[2] = {-1, 0}, ok[3] = {0, 1, 2};
    CHECK_OK(cnn_tensor_from_i64(CNN_SHAPE(2), lv, CNN_CPU, &lab));
    CHECK_ERR(cnn_cross_entropy(x, lab, 0.0f, &loss), CNN_ERR_INVALID_ARG);
    CHECK(strstr(cnn_last_error(), "label 3 at index 1") && strstr(cnn_last_error(), "[0, 3)"));
    cnn_tensor_free(&lab);
    CHECK_OK(cnn_tensor_from_i64(CNN_SHAPE(2), neg, CNN_CPU, &lab));
    CHECK_ERR(cnn_cross_entropy(x, lab, 0.0f, &loss), CNN_ERR_INVALID_ARG);
    CHECK(strstr(cnn_last_error(), "label -1 at index 0"));
    CHECK_ERR(cnn_cross_entropy(x, f, 0.0f, &loss), CNN_ERR_SHAPE);
    CHECK(strstr(cnn_last_error(), "I64") && strstr(cnn_last_error(), "F32"));
    cnn_tensor *i32 = NULL; /* integers, but 32-bit: not read as I64 */
    cnn_tensor_free(&lab);
    CHECK_OK(cnn_tensor_from_i64(CNN_SHAPE(2), ok, CNN_CPU, &lab));
    CHECK_OK(cnn_tensor_to_dtype(lab, CNN_I32, &i32));
    cnn_tensor_free(&lab);
    CHECK_ERR(cnn_cross_entropy(x, i32, 0.0f, &loss), CNN_ERR_SHAPE);
    CHECK(strstr(cnn_last_error(), "I64") && strstr(cnn_last_error(), "I32"));
    cnn_tensor_free(&i32);
    CHECK_OK(cnn_tensor_from_i64(CNN_SHAPE(3), ok, CNN_CPU, &three));
    CHECK_ERR(cnn_cross_entropy(x, three, 0.0f, &loss), CNN_ERR_SHAPE);
    CHECK(strstr(cnn_last_error(), "(3)") && strstr(cnn_last_error(), "(2, 3)"));
    CHECK_ERR(cnn_cross_entropy(x1, three, 0.0f, &loss), CNN_ERR_SHAPE);
    CHECK(strstr(cnn_last_error(), "(6)") && strstr(cnn_last_error(), "rank 1"));
    CHECK_OK(cnn_tensor_from_i64(CNN_SHAPE(2), ok, CNN_CPU, &bad));
    CHECK_ERR(cnn_cross_entropy(x, bad, 1.01f, &loss), CNN_ERR_INVALID_ARG);
    CHECK(strstr(cnn_last_error(), "label_smoothing 1.01") && strstr(cnn_last_error(), "[0, 1]"));
    CHECK_ERR(cnn_cross_entropy(x, bad, -0.5f, &loss), CNN_ERR_INVALID_ARG);
    CHECK_ERR(cnn_cross_entropy(x, NULL, 0.0f, &loss), CNN_ERR_INVALID_ARG);
    CHECK_ERR(cnn_cross_entropy(NULL, bad, 0.0f, &loss), CNN_ERR_INVALID_ARG);
    CHECK(loss == NULL);
    CHECK_OK(cnn_cross_entropy(x, bad, 0.0f, &loss)); /* and the good case works */
    cnn_tensor_free(&loss);
    cnn_tensor_free(&x);
    cnn_tensor_free(&x1);
    cnn_tensor_free(&f);
    cnn_tensor_free(&lab);
    cnn_tensor_free(&bad);
    cnn_tensor_free(&three);
}
