/* test_batchnorm.c — batch norm against a naive double-precision reference, the batch statistics
 * of its output, running-stat updates (unbiased variance) and eval mode, gradchecks of x, weight
 * and bias in training and eval, and argument errors. */
#include "gradcheck.h"

#include <stdbool.h>

/* Per-channel mean and biased variance of x: (N, C, inner), in double. */
static void ref_stats(const float *x, int64_t n, int64_t c, int64_t inner, double *mean,
                      double *var)
{
    for (int64_t ch = 0; ch < c; ch++) {
        double s = 0, q = 0;
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < inner; j++) s += x[(i * c + ch) * inner + j];
        mean[ch] = s / (double)(n * inner);
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < inner; j++) {
                double d = x[(i * c + ch) * inner + j] - mean[ch];
                q += d * d;
            }
        var[ch] = q / (double)(n * inner);
    }
}

/* y = (x - mean) / sqrt(var + eps) * w + b with the given per-channel mean/var. */
static void ref_apply(const float *x, int64_t n, int64_t c, int64_t inner, const double *mean,
                      const double *var, const float *w, const float *b, float eps, float *y)
{
    for (int64_t i = 0; i < n; i++)
        for (int64_t ch = 0; ch < c; ch++)
            for (int64_t j = 0; j < inner; j++) {
                int64_t e = (i * c + ch) * inner + j;
                double v = (x[e] - mean[ch]) / sqrt(var[ch] + eps);
                y[e] = (float)(v * (w ? w[ch] : 1.0) + (b ? b[ch] : 0.0));
            }
}

/* Runs batch norm on x of shape s in training mode and compares with the reference. */
static void check_train_forward(cnn_shape s, bool affine, float offset)
{
    int64_t n = s.d[0], c = s.d[1], inner = 1;
    for (int i = 2; i < s.ndim; i++) inner *= s.d[i];
    cnn_tensor *x = rand_tensor(s, offset - 2, offset + 2, 0);
    cnn_tensor *w = affine ? rand_tensor(CNN_SHAPE(c), 0.5f, 1.5f, 0) : NULL;
    cnn_tensor *b = affine ? rand_tensor(CNN_SHAPE(c), -1, 1, 0) : NULL;
    cnn_tensor *y = NULL, *ref = NULL;
    REQUIRE(x);
    double mean[16], var[16];
    float *yv = malloc((size_t)(n * c * inner) * sizeof *yv);
    REQUIRE(yv && c <= 16);
    ref_stats(cnn_tensor_cdata(x), n, c, inner, mean, var);
    ref_apply(cnn_tensor_cdata(x), n, c, inner, mean, var, w ? cnn_tensor_cdata(w) : NULL,
              b ? cnn_tensor_cdata(b) : NULL, 1e-5f, yv);
    CHECK_OK(cnn_tensor_from_data(s, yv, CNN_CPU, &ref));
    CHECK_OK(cnn_batch_norm(x, NULL, NULL, w, b, true, 0.1f, 1e-5f, &y));
    CHECK(tensors_close("batch_norm train", y, ref, 1e-4f, 1e-4f));
    free(yv);
    cnn_tensor_free(&x);
    cnn_tensor_free(&w);
    cnn_tensor_free(&b);
    cnn_tensor_free(&y);
    cnn_tensor_free(&ref);
}

TEST(bn_train_forward_matches_reference)
{
    check_train_forward(CNN_SHAPE(3, 4, 2, 5), true, 0.0f);
    check_train_forward(CNN_SHAPE(6, 3), true, 0.5f);
    check_train_forward(CNN_SHAPE(2, 3, 7), false, -1.0f);
    check_train_forward(CNN_SHAPE(1, 2, 3, 3), true, 0.0f); /* batch 1, H*W > 1 */
    /* A large mean with a small spread: one-pass E[x^2] - E[x]^2 in float would lose it all. */
    check_train_forward(CNN_SHAPE(4, 2, 3, 3), true, 10000.0f);
}

TEST(bn_train_output_has_zero_mean_unit_variance)
{
    cnn_tensor *x = rand_tensor(CNN_SHAPE(8, 3, 4, 4), 2, 9, 0), *y = NULL;
    REQUIRE(x);
    CHECK_OK(cnn_batch_norm(x, NULL, NULL, NULL, NULL, true, 0.1f, 1e-5f, &y));
    double mean[3], var[3];
    ref_stats(cnn_tensor_cdata(y), 8, 3, 16, mean, var);
    for (int ch = 0; ch < 3; ch++) {
        CHECK_NEAR(mean[ch], 0.0, 1e-5);
        CHECK_NEAR(var[ch], 1.0, 1e-3);
    }
    cnn_tensor_free(&x);
    cnn_tensor_free(&y);
}

TEST(bn_running_stats_use_unbiased_variance)
{
    const float momentum = 0.1f;
    cnn_tensor *rm = NULL, *rv = NULL;
    CHECK_OK(cnn_tensor_zeros(CNN_SHAPE(3), CNN_CPU, &rm));
    CHECK_OK(cnn_tensor_ones(CNN_SHAPE(3), CNN_CPU, &rv));
    double em[3] = {0, 0, 0}, ev[3] = {1, 1, 1};
    for (int step = 1; step <= 3; step++) {
        cnn_tensor *x = rand_tensor(CNN_SHAPE(4, 3, 2, 3), (float)step, 3.0f * step, 0), *y = NULL;
        REQUIRE(x);
        double mean[3], var[3];
        ref_stats(cnn_tensor_cdata(x), 4, 3, 6, mean, var);
        const double m = 24;
        for (int ch = 0; ch < 3; ch++) {
            em[ch] = (1 - momentum) * em[ch] + momentum * mean[ch];
            ev[ch] = (1 - momentum) * ev[ch] + momentum * var[ch] * m / (m - 1);
        }
        CHECK_OK(cnn_batch_norm(x, rm, rv, NULL, NULL, true, momentum, 1e-5f, &y));
        if (step == 1 || step == 3)
            for (int ch = 0; ch < 3; ch++) {
                CHECK_NEAR(cnn_tensor_cdata(rm)[ch], em[ch], 1e-5);
                CHECK_NEAR(cnn_tensor_cdata(rv)[ch], ev[ch], 1e-5);
            }
        cnn_tensor_free(&x);
        cnn_tensor_free(&y);
    }
    cnn_tensor_free(&rm);
    cnn_tensor_free(&rv);
}

TEST(bn_eval_uses_running_stats)
{
    float rmv[2] = {0.5f, -1.0f}, rvv[2] = {4.0f, 0.25f};
    float wv[2] = {2.0f, -1.0f}, bv[2] = {0.1f, 3.0f};
    float xv[8] = {1, 2, 3, 4, -1, -2, 0, 5}; /* (2, 2, 2) */
    cnn_tensor *x = NULL, *rm = NULL, *rv = NULL, *w = NULL, *b = NULL, *y = NULL;
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(2, 2, 2), xv, CNN_CPU, &x));
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(2), rmv, CNN_CPU, &rm));
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(2), rvv, CNN_CPU, &rv));
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(2), wv, CNN_CPU, &w));
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(2), bv, CNN_CPU, &b));
    CHECK_OK(cnn_batch_norm(x, rm, rv, w, b, false, 0.1f, 0.0f, &y));
    /* channel 0: (x - 0.5) / 2 * 2 + 0.1; channel 1: (x + 1) / 0.5 * -1 + 3 */
    const float want[8] = {0.6f, 1.6f, -5.0f, -7.0f, -1.4f, -2.4f, 1.0f, -9.0f};
    for (int i = 0; i < 8; i++) CHECK_NEAR(cnn_tensor_cdata(y)[i], want[i], 1e-6);
    for (int ch = 0; ch < 2; ch++) { /* eval leaves the running stats alone */
        CHECK(cnn_tensor_cdata(rm)[ch] == rmv[ch]);
        CHECK(cnn_tensor_cdata(rv)[ch] == rvv[ch]);
    }
    cnn_tensor_free(&x);
    cnn_tensor_free(&rm);
    cnn_tensor_free(&rv);
    cnn_tensor_free(&w);
    cnn_tensor_free(&b);
    cnn_tensor_free(&y);
}

typedef struct {
    bool training;
    cnn_tensor *rm, *rv;
} bn_case;

/* inputs: x, weight, bias (the last two may be NULL). */
static cnn_status f_bn(cnn_tensor *const *in, void *ud, cnn_tensor **y)
{
    const bn_case *c = ud;
    return cnn_batch_norm(in[0], c->rm, c->rv, in[1], in[2], c->training, 0.1f, 1e-5f, y);
}

static void gradcheck_bn(const char *what, cnn_shape s, bool training, bool affine)
{
    int64_t c = s.d[1];
    cnn_tensor *in[3] = {rand_tensor(s, -1, 1, 1), NULL, NULL};
    if (affine) {
        in[1] = rand_tensor(CNN_SHAPE(c), 0.5f, 1.5f, 1);
        in[2] = rand_tensor(CNN_SHAPE(c), -1, 1, 1);
    }
    bn_case bc = {training, rand_tensor(CNN_SHAPE(c), -0.5f, 0.5f, 0),
                  rand_tensor(CNN_SHAPE(c), 0.5f, 2.0f, 0)};
    int64_t numel = 1;
    for (int i = 0; i < s.ndim; i++) numel *= s.d[i];
    gc_opts o = {.eps = 1e-2f, .atol = 2e-3f, .rtol = 1e-2f, .max_checks = numel > 4096 ? 12 : 0};
    CHECK(gradcheck(what, f_bn, in, 3, &bc, &o));
    for (int i = 0; i < 3; i++) cnn_tensor_free(&in[i]);
    cnn_tensor_free(&bc.rm);
    cnn_tensor_free(&bc.rv);
}

TEST(bn_gradcheck_train)
{
    gradcheck_bn("bn train (N,C,H,W)", CNN_SHAPE(2, 3, 2, 3), true, true);
    gradcheck_bn("bn train (N,C)", CNN_SHAPE(5, 3), true, true);
    gradcheck_bn("bn train batch 1", CNN_SHAPE(1, 2, 3, 3), true, true);
    gradcheck_bn("bn train no affine", CNN_SHAPE(3, 2, 2, 2), true, false);
}

TEST(bn_gradcheck_eval)
{
    gradcheck_bn("bn eval (N,C,H,W)", CNN_SHAPE(2, 3, 2, 3), false, true);
    gradcheck_bn("bn eval (N,C)", CNN_SHAPE(4, 3), false, true);
    gradcheck_bn("bn eval no affine", CNN_SHAPE(2, 2, 3), false, false);
}

/* Training-mode forward and backward against their formulas in double: with
 * xhat = (x - mean) / sqrt(var + eps), y = w xhat + b, db = sum dy, dw = sum dy xhat and
 * dx = w / sqrt(var + eps) * (dy - mean(dy) - xhat mean(dy xhat)).
 * The input has a large mean and a small spread, where the float mean is off by up to half its
 * ulp (4e-3 at 1e5), as much as 1% of the spread: the forward's and the backward's xhat must
 * carry the mean's low part. Rows of 10 take the 8-lane sums and their tail. */
static void bn_large_mean_on(cnn_device dev)
{
    const int64_t n = 4, c = 3, inner = 10, m = n * inner;
    const float eps = 1e-5f;
    const cnn_shape s = CNN_SHAPE(n, c, 2, 5);
    cnn_tensor *x = rand_tensor(s, 1e5f - 0.5f, 1e5f + 0.5f, 1);
    cnn_tensor *w = rand_tensor(CNN_SHAPE(c), 0.5f, 1.5f, 1);
    cnn_tensor *b = rand_tensor(CNN_SHAPE(c), -1, 1, 1), *dy = rand_tensor(s, -1, 1, 0);
    cnn_tensor *y = NULL, *ry = NULL, *rdx = NULL, *rdw = NULL, *rdb = NULL;
    /* The op runs on the CPU tensors themselves, or on copies of them on the GPU. */
    const bool gpu = dev.type != CNN_DEVICE_CPU;
    cnn_tensor *xd = gpu ? to_gpu(x) : x, *wd = gpu ? to_gpu(w) : w, *bd = gpu ? to_gpu(b) : b;
    cnn_tensor *dyd = gpu ? to_gpu(dy) : dy;
    REQUIRE(x && w && b && dy && xd && wd && bd && dyd);
    CHECK_OK(cnn_batch_norm(xd, NULL, NULL, wd, bd, true, 0.1f, eps, &y));
    CHECK_OK(cnn_backward_with_grad(y, dyd));
    REQUIRE(cnn_tensor_grad(xd) && cnn_tensor_grad(wd) && cnn_tensor_grad(bd));
    const float *px = cnn_tensor_cdata(x), *pdy = cnn_tensor_cdata(dy), *pw = cnn_tensor_cdata(w);
    const float *pb = cnn_tensor_cdata(b);
    double mean[3], var[3];
    ref_stats(px, n, c, inner, mean, var);
    float yv[4 * 3 * 10], dx[4 * 3 * 10], dw[3], db[3];
    for (int64_t ch = 0; ch < c; ch++) {
        double is = 1.0 / sqrt(var[ch] + eps), sdy = 0, sdyx = 0;
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < inner; j++) {
                int64_t e = (i * c + ch) * inner + j;
                sdy += pdy[e];
                sdyx += pdy[e] * (px[e] - mean[ch]) * is;
                yv[e] = (float)((px[e] - mean[ch]) * is * pw[ch] + pb[ch]);
            }
        dw[ch] = (float)sdyx;
        db[ch] = (float)sdy;
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < inner; j++) {
                int64_t e = (i * c + ch) * inner + j;
                double xhat = (px[e] - mean[ch]) * is;
                dx[e] = (float)(pw[ch] * is * (pdy[e] - sdy / m - xhat * sdyx / m));
            }
    }
    CHECK_OK(cnn_tensor_from_data(s, yv, CNN_CPU, &ry));
    CHECK_OK(cnn_tensor_from_data(s, dx, CNN_CPU, &rdx));
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(c), dw, CNN_CPU, &rdw));
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(c), db, CNN_CPU, &rdb));
    CHECK(tensors_close("bn large mean y", y, ry, 1e-4f, 1e-4f));
    CHECK(tensors_close("bn large mean dx", cnn_tensor_grad(xd), rdx, 1e-4f, 1e-4f));
    CHECK(tensors_close("bn large mean dw", cnn_tensor_grad(wd), rdw, 1e-4f, 1e-4f));
    CHECK(tensors_close("bn large mean db", cnn_tensor_grad(bd), rdb, 1e-4f, 1e-4f));
    cnn_tensor *all[] = {x, w, b, dy, y, ry, rdx, rdw, rdb};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) cnn_tensor_free(&all[i]);
    if (gpu) {
        cnn_tensor *dev_all[] = {xd, wd, bd, dyd};
        for (size_t i = 0; i < sizeof dev_all / sizeof *dev_all; i++) cnn_tensor_free(&dev_all[i]);
    }
}

TEST(bn_train_backward_large_mean_matches_formula) { bn_large_mean_on(CNN_CPU); }

/* The same on the GPU's hand-written kernels (cuDNN keeps no low part of the mean, so it is not
 * asked): their forward and backward must carry the mean's low part too. Inputs of O(1) leave
 * it below any tolerance, so the parity tests of test_cuda_nn.c cannot tell whether it is used. */
GPU_TEST(cuda_bn_train_large_mean_matches_formula)
{
    cnn_set_backend(CNN_BACKEND_CUDA);
    bn_large_mean_on(CNN_CUDA(0));
    cnn_set_backend(CNN_BACKEND_AUTO);
}

TEST(bn_errors)
{
    cnn_tensor *x = rand_tensor(CNN_SHAPE(2, 3, 2, 2), -1, 1, 0);
    cnn_tensor *w4 = rand_tensor(CNN_SHAPE(4), -1, 1, 0), *c3 = rand_tensor(CNN_SHAPE(3), 1, 2, 0);
    cnn_tensor *v = rand_tensor(CNN_SHAPE(6), -1, 1, 0);
    cnn_tensor *one = rand_tensor(CNN_SHAPE(1, 3), -1, 1, 0);
    cnn_tensor *one4 = rand_tensor(CNN_SHAPE(1, 3, 1, 1), -1, 1, 0), *y = NULL;
    REQUIRE(x && w4 && c3 && v && one && one4);
    CHECK_ERR(cnn_batch_norm(NULL, NULL, NULL, NULL, NULL, true, 0.1f, 1e-5f, &y),
              CNN_ERR_INVALID_ARG);
    CHECK_ERR(cnn_batch_norm(x, NULL, NULL, NULL, NULL, true, 0.1f, 1e-5f, NULL),
              CNN_ERR_INVALID_ARG);
    CHECK_ERR(cnn_batch_norm(v, NULL, NULL, NULL, NULL, true, 0.1f, 1e-5f, &y), CNN_ERR_SHAPE);
    CHECK(strstr(cnn_last_error(), "batch_norm") && strstr(cnn_last_error(), "(6)"));
    CHECK_ERR(cnn_batch_norm(x, NULL, NULL, w4, NULL, true, 0.1f, 1e-5f, &y), CNN_ERR_SHAPE);
    CHECK(strstr(cnn_last_error(), "weight") && strstr(cnn_last_error(), "(4)") &&
          strstr(cnn_last_error(), "(2, 3, 2, 2)"));
    CHECK_ERR(cnn_batch_norm(x, NULL, NULL, NULL, w4, true, 0.1f, 1e-5f, &y), CNN_ERR_SHAPE);
    CHECK_ERR(cnn_batch_norm(x, w4, c3, NULL, NULL, true, 0.1f, 1e-5f, &y), CNN_ERR_SHAPE);
    CHECK_ERR(cnn_batch_norm(x, c3, w4, NULL, NULL, false, 0.1f, 1e-5f, &y), CNN_ERR_SHAPE);
    CHECK(strstr(cnn_last_error(), "running_var has shape (4)"));
    /* Refused before anything runs: the running mean is left as it was. */
    float rm_before[3], rm_after[3];
    CHECK_OK(cnn_tensor_read(c3, rm_before, 3));
    CHECK_ERR(cnn_batch_norm(x, c3, NULL, NULL, NULL, true, 0.1f, 1e-5f, &y), CNN_ERR_INVALID_ARG);
    CHECK(strstr(cnn_last_error(), "running_mean and running_var must both be given"));
    CHECK_OK(cnn_tensor_read(c3, rm_after, 3));
    CHECK(memcmp(rm_before, rm_after, sizeof rm_after) == 0);
    CHECK_ERR(cnn_batch_norm(x, NULL, NULL, NULL, NULL, false, 0.1f, 1e-5f, &y),
              CNN_ERR_INVALID_ARG);
    CHECK(strstr(cnn_last_error(), "eval mode (training=false) needs running_mean"));
    CHECK_ERR(cnn_batch_norm(x, NULL, NULL, NULL, NULL, true, 0.1f, -1.0f, &y),
              CNN_ERR_INVALID_ARG);
    CHECK_ERR(cnn_batch_norm(one, NULL, NULL, NULL, NULL, true, 0.1f, 1e-5f, &y), CNN_ERR_SHAPE);
    CHECK(strstr(cnn_last_error(), "more than 1 value per channel"));
    CHECK_ERR(cnn_batch_norm(one4, NULL, NULL, NULL, NULL, true, 0.1f, 1e-5f, &y), CNN_ERR_SHAPE);
    CHECK(y == NULL);
    /* One value per channel is fine in eval, where nothing is estimated from the batch. */
    cnn_tensor *rv = rand_tensor(CNN_SHAPE(3), 1, 2, 0);
    CHECK_OK(cnn_batch_norm(one, c3, rv, NULL, NULL, false, 0.1f, 1e-5f, &y));
    CHECK(y && cnn_tensor_numel(y) == 3);
    cnn_tensor_free(&rv);
    cnn_tensor_free(&y);
    cnn_tensor_free(&x);
    cnn_tensor_free(&w4);
    cnn_tensor_free(&c3);
    cnn_tensor_free(&v);
    cnn_tensor_free(&one);
    cnn_tensor_free(&one4);
}

/* An empty batch (or an empty spatial size) is not an error, as in PyTorch: the output is empty,
 * the running statistics stay as they were, and weight and bias get zero gradients. */
TEST(bn_empty_input_gives_an_empty_output_and_zero_gradients)
{
    const cnn_shape shapes[2] = {CNN_SHAPE(0, 3, 2, 2), CNN_SHAPE(2, 3, 0, 2)};
    for (int k = 0; k < 2; k++) {
        cnn_tensor *x = rand_tensor(shapes[k], -1, 1, 1), *w = rand_tensor(CNN_SHAPE(3), 1, 2, 1);
        cnn_tensor *b = rand_tensor(CNN_SHAPE(3), -1, 1, 1), *rm = NULL, *rv = NULL, *y = NULL,
                   *s = NULL;
        REQUIRE(x && w && b);
        CHECK_OK(cnn_tensor_full(CNN_SHAPE(3), 0.5f, CNN_CPU, &rm));
        CHECK_OK(cnn_tensor_full(CNN_SHAPE(3), 2.0f, CNN_CPU, &rv));
        CHECK_OK(cnn_batch_norm(x, rm, rv, w, b, true, 0.1f, 1e-5f, &y));
        REQUIRE(y);
        char a[64], e[64];
        cnn_shape_str(shapes[k], e, sizeof e);
        CHECK(!strcmp(cnn_shape_str(cnn_tensor_shape(y), a, sizeof a), e));
        for (int c = 0; c < 3; c++)
            CHECK(cnn_tensor_cdata(rm)[c] == 0.5f && cnn_tensor_cdata(rv)[c] == 2.0f);
        CHECK_OK(cnn_sum(y, &s));
        CHECK_OK(cnn_backward(s));
        REQUIRE(cnn_tensor_grad(x) && cnn_tensor_grad(w) && cnn_tensor_grad(b));
        CHECK(!strcmp(cnn_shape_str(cnn_tensor_shape(cnn_tensor_grad(x)), a, sizeof a), e));
        for (int c = 0; c < 3; c++)
            CHECK(cnn_tensor_cdata(cnn_tensor_grad(w))[c] == 0.0f &&
                  cnn_tensor_cdata(cnn_tensor_grad(b))[c] == 0.0f);
        cnn_tensor *all[] = {x, w, b, rm, rv, y, s};
        for (int i = 0; i < 7; i++) cnn_tensor_free(&all[i]);
    }
}

/* Eval mode only reads the running statistics: an op that saved one of them (elu saves its
 * input) still back-propagates. Training mode writes them in place, and that backward is
 * refused, as PyTorch's version counter refuses it. */
TEST(bn_eval_leaves_the_running_stats_unwritten)
{
    cnn_tensor *x = rand_tensor(CNN_SHAPE(2, 3, 2, 2), -1, 1, 0);
    cnn_tensor *rm = rand_tensor(CNN_SHAPE(3), -1, 1, 1), *rv = rand_tensor(CNN_SHAPE(3), 1, 2, 0);
    REQUIRE(x && rm && rv);
    for (int training = 0; training < 2; training++) {
        cnn_tensor *e = NULL, *s = NULL, *y = NULL;
        CHECK_OK(cnn_elu(rm, 1.0f, &e));
        CHECK_OK(cnn_sum(e, &s));
        CHECK_OK(cnn_batch_norm(x, rm, rv, NULL, NULL, training, 0.1f, 1e-5f, &y));
        if (training) {
            CHECK_ERR(cnn_backward(s), CNN_ERR_INVALID_ARG);
            CHECK(strstr(cnn_last_error(), "elu") && strstr(cnn_last_error(), "in place"));
        } else {
            CHECK_OK(cnn_backward(s));
            CHECK(cnn_tensor_grad(rm) != NULL);
        }
        free_tensors(&e, &s, &y);
    }
    free_tensors(&x, &rm, &rv);
}

TEST(bn_records_only_when_needed)
{
    cnn_tensor *x = rand_tensor(CNN_SHAPE(4, 2), -1, 1, 0), *w = rand_tensor(CNN_SHAPE(2), 1, 2, 1);
    cnn_tensor *y = NULL, *s = NULL;
    REQUIRE(x && w);
    CHECK_OK(cnn_batch_norm(x, NULL, NULL, NULL, NULL, true, 0.1f, 1e-5f, &y));
    CHECK(cnn_tape_size() == 0);
    cnn_tensor_free(&y);
    /* Only the weight needs a gradient: d sum(y) / d w = sum of xhat = 0 per channel. */
    CHECK_OK(cnn_batch_norm(x, NULL, NULL, w, NULL, true, 0.1f, 1e-5f, &y));
    CHECK(cnn_tape_size() == 1);
    CHECK_OK(cnn_sum(y, &s));
    CHECK_OK(cnn_backward(s));
    REQUIRE(cnn_tensor_grad(w));
    for (int ch = 0; ch < 2; ch++) CHECK_NEAR(cnn_tensor_cdata(cnn_tensor_grad(w))[ch], 0.0, 1e-5);
    cnn_tensor_free(&x);
    cnn_tensor_free(&w);
    cnn_tensor_free(&y);
    cnn_tensor_free(&s);
}

/* A new tensor on dev holding v (shape s). */
static cnn_tensor *bn_on(cnn_shape s, const float *v, cnn_device dev)
{
    cnn_tensor *h = NULL, *t = NULL;
    if (cnn_tensor_from_data(s, v, CNN_CPU, &h) == CNN_OK) (void)cnn_tensor_to(h, dev, &t);
    cnn_tensor_free(&h);
    return t;
}

/* Against torch 1.13 (F.batch_norm, x (4, 2), weight (2, 3), bias (0.5, -1), dy below):
 * training with eps 0 and a constant channel (variance 0): PyTorch's InvStd makes invstd 0 when
 * var and eps are both 0, so that channel's y is its bias and its gradients 0 (1 / sqrt(0) gave
 * NaN). Eval with NaN and +-inf in x: dx = dy * weight / sqrt(running_var + eps) does not
 * depend on x (its xhat * 0 term made those elements NaN). */
static void bn_nonfinite_on(cnn_device dev)
{
    const float xv[8] = {5, 1, 5, 2, 5, 3, 5, 4}, dyv[8] = {1, 2, 3, 1, 5, 7, 2, 3};
    const float wv[2] = {2, 3}, bv[2] = {0.5f, -1}, zeros[2] = {0, 0}, ones[2] = {1, 1};
    const float ey[8] = {0.5f, -5.02492189f, 0.5f, -2.34164047f, 0.5f, 0.341640949f, 0.5f,
                         3.02492237f};
    const float edx[8] = {0, 0.268328071f, 0, -4.82990646f, 0, 8.85482883f, 0, -4.29325008f};
    const float edw[2] = {0, 4.02492237f}, edb[2] = {11, 13}, erm[2] = {0.5f, 0.25f};
    const float erv[2] = {0.9f, 1.0666666f};
    cnn_tensor *x = bn_on(CNN_SHAPE(4, 2), xv, dev), *dy = bn_on(CNN_SHAPE(4, 2), dyv, dev);
    cnn_tensor *w = bn_on(CNN_SHAPE(2), wv, dev), *b = bn_on(CNN_SHAPE(2), bv, dev);
    cnn_tensor *rm = bn_on(CNN_SHAPE(2), zeros, dev), *rv = bn_on(CNN_SHAPE(2), ones, dev);
    cnn_tensor *y = NULL;
    REQUIRE(x && dy && w && b && rm && rv);
    CHECK_OK(cnn_tensor_set_requires_grad(x, true));
    CHECK_OK(cnn_tensor_set_requires_grad(w, true));
    CHECK_OK(cnn_tensor_set_requires_grad(b, true));
    CHECK_OK(cnn_batch_norm(x, rm, rv, w, b, true, 0.1f, 0.0f, &y));
    CHECK_OK(cnn_backward_with_grad(y, dy));
    float v[8], g[8], gw[2], gb[2], m[2], s[2];
    CHECK_OK(cnn_tensor_read(y, v, 8));
    REQUIRE(cnn_tensor_grad(x) && cnn_tensor_grad(w) && cnn_tensor_grad(b));
    CHECK_OK(cnn_tensor_read(cnn_tensor_grad(x), g, 8));
    CHECK_OK(cnn_tensor_read(cnn_tensor_grad(w), gw, 2));
    CHECK_OK(cnn_tensor_read(cnn_tensor_grad(b), gb, 2));
    CHECK_OK(cnn_tensor_read(rm, m, 2));
    CHECK_OK(cnn_tensor_read(rv, s, 2));
    for (int i = 0; i < 8; i++) {
        CHECK_NEAR(v[i], ey[i], 1e-5);
        CHECK_NEAR(g[i], edx[i], 1e-5);
    }
    for (int i = 0; i < 2; i++) {
        CHECK_NEAR(gw[i], edw[i], 1e-5);
        CHECK_NEAR(gb[i], edb[i], 1e-5);
        CHECK_NEAR(m[i], erm[i], 1e-6);
        CHECK_NEAR(s[i], erv[i], 1e-6);
    }
    cnn_tensor_free(&y);
    cnn_tensor_free(&x);
    cnn_tensor_free(&rm);
    cnn_tensor_free(&rv);
    /* eval, running mean (0, 1), var (1, 4), eps 1e-5 */
    const float xe[8] = {NAN, 1, 5, INFINITY, 5, -INFINITY, 5, 4}, rmv[2] = {0, 1};
    const float rvv[2] = {1, 4};
    const float edxe[8] = {1.99998999f, 2.99999619f, 5.99996996f, 1.49999809f, 9.99995041f,
                           10.4999866f, 3.99997997f, 4.49999428f};
    x = bn_on(CNN_SHAPE(4, 2), xe, dev);
    rm = bn_on(CNN_SHAPE(2), rmv, dev);
    rv = bn_on(CNN_SHAPE(2), rvv, dev);
    REQUIRE(x && rm && rv);
    CHECK_OK(cnn_tensor_set_requires_grad(x, true));
    CHECK_OK(cnn_batch_norm(x, rm, rv, w, b, false, 0.1f, 1e-5f, &y));
    CHECK_OK(cnn_backward_with_grad(y, dy));
    REQUIRE(cnn_tensor_grad(x));
    CHECK_OK(cnn_tensor_read(cnn_tensor_grad(x), g, 8));
    for (int i = 0; i < 8; i++) CHECK_NEAR(g[i], edxe[i], 1e-5);
    cnn_tensor *all[7] = {x, dy, w, b, rm, rv, y};
    for (int i = 0; i < 7; i++) cnn_tensor_free(&all[i]);
}

TEST(bn_zero_variance_and_nonfinite_as_torch) { bn_nonfinite_on(CNN_CPU); }

GPU_TEST(cuda_bn_zero_variance_and_nonfinite_as_torch) { bn_nonfinite_on(CNN_CUDA(0)); }

/* Big enough for the OpenMP paths (more than 32768 elements). */
TEST(bn_large_parallel_matches_reference)
{
    check_train_forward(CNN_SHAPE(8, 16, 16, 17), true, 1.0f);
    gradcheck_bn("bn train large", CNN_SHAPE(8, 4, 32, 33), true, true);
}

/* ---- cnn_batch_norm_fold ------------------------------------------------------------------- */
/* conv2d(x, w', b') with the folded weights against batch_norm(conv2d(x, w, b)) in eval mode;
 * and the folded tensors against the formula in double (s = gamma / sqrt(var + eps)). */
static void check_fold(int k, bool conv_bias, bool affine)
{
    cnn_tensor *x = rand_tensor(CNN_SHAPE(2, 3, 6, 5), -1, 1, 0);
    cnn_tensor *w = rand_tensor(CNN_SHAPE(k, 3, 3, 3), -1, 1, 0);
    cnn_tensor *b = conv_bias ? rand_tensor(CNN_SHAPE(k), -1, 1, 0) : NULL;
    cnn_tensor *rm = rand_tensor(CNN_SHAPE(k), -2, 2, 0),
               *rv = rand_tensor(CNN_SHAPE(k), 0.1f, 3, 0);
    cnn_tensor *g = affine ? rand_tensor(CNN_SHAPE(k), -2, 2, 0) : NULL;
    cnn_tensor *be = affine ? rand_tensor(CNN_SHAPE(k), -1, 1, 0) : NULL;
    cnn_tensor *wf = NULL, *bf = NULL, *y = NULL, *ref = NULL, *c = NULL;
    const float eps = 1e-3f;
    cnn_conv2d_params p = {.padding = {1, 1}};
    CHECK_OK(cnn_batch_norm_fold(w, b, rm, rv, g, be, eps, &wf, &bf));
    CHECK(cnn_tensor_ndim(wf) == 4 && cnn_tensor_numel(wf) == cnn_tensor_numel(w));
    CHECK(cnn_tensor_ndim(bf) == 1 && cnn_tensor_dim(bf, 0) == k);
    CHECK_OK(cnn_conv2d(x, wf, bf, &p, &y));
    CHECK_OK(cnn_conv2d(x, w, b, &p, &c));
    CHECK_OK(cnn_batch_norm(c, rm, rv, g, be, false, 0.1f, eps, &ref));
    CHECK(tensors_close("folded conv vs conv + eval BN", y, ref, 1e-5f, 1e-5f));
    const float *pw = cnn_tensor_cdata(w), *pwf = cnn_tensor_cdata(wf), *pbf = cnn_tensor_cdata(bf);
    const float *pm = cnn_tensor_cdata(rm), *pv = cnn_tensor_cdata(rv);
    int exact = 1;
    for (int ch = 0; ch < k; ch++) {
        double s = (g ? (double)((const float *)cnn_tensor_cdata(g))[ch] : 1.0) /
                   sqrt((double)pv[ch] + (double)eps);
        double bb = b ? (double)((const float *)cnn_tensor_cdata(b))[ch] : 0.0;
        double beta = be ? (double)((const float *)cnn_tensor_cdata(be))[ch] : 0.0;
        exact &= pbf[ch] == (float)fma(bb - pm[ch], s, beta);
        for (int j = 0; j < 27; j++)
            exact &= pwf[ch * 27 + j] == (float)((double)pw[ch * 27 + j] * s);
    }
    CHECK(exact);
    cnn_tensor *all[] = {x, w, b, rm, rv, g, be, wf, bf, y, ref, c};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) cnn_tensor_free(&all[i]);
}

TEST(batch_norm_fold_matches_conv_then_eval_bn)
{
    check_fold(4, true, true);
    check_fold(5, false, true);
    check_fold(3, true, false);
    CHECK(cnn_tape_size() == 0);
}

TEST(batch_norm_fold_errors)
{
    cnn_tensor *w = rand_tensor(CNN_SHAPE(4, 3, 3, 3), -1, 1, 0);
    cnn_tensor *c4 = rand_tensor(CNN_SHAPE(4), 0.5f, 1, 0),
               *c5 = rand_tensor(CNN_SHAPE(5), 0.5f, 1, 0);
    cnn_tensor *wf = NULL, *bf = NULL;
    CHECK_ERR(cnn_batch_norm_fold(w, NULL, c5, c4, NULL, NULL, 1e-5f, &wf, &bf), CNN_ERR_SHAPE);
    CHECK(strstr(cnn_last_error(), "batch_norm_fold: running_mean has shape (5)") &&
          strstr(cnn_last_error(), "(4, 3, 3, 3)"));
    CHECK_ERR(cnn_batch_norm_fold(w, c5, c4, c4, NULL, NULL, 1e-5f, &wf, &bf), CNN_ERR_SHAPE);
    CHECK_ERR(cnn_batch_norm_fold(w, NULL, c4, c4, c4, c5, 1e-5f, &wf, &bf), CNN_ERR_SHAPE);
    CHECK_ERR(cnn_batch_norm_fold(w, NULL, c4, NULL, NULL, NULL, 1e-5f, &wf, &bf),
              CNN_ERR_INVALID_ARG);
    CHECK_ERR(cnn_batch_norm_fold(w, NULL, c4, c4, NULL, NULL, -1.0f, &wf, &bf),
              CNN_ERR_INVALID_ARG);
    CHECK_ERR(cnn_batch_norm_fold(w, NULL, c4, c4, NULL, NULL, INFINITY, &wf, &bf),
              CNN_ERR_INVALID_ARG);
    CHECK(strstr(cnn_last_error(), "eps inf"));
    CHECK_ERR(cnn_batch_norm_fold(NULL, NULL, c4, c4, NULL, NULL, 1e-5f, &wf, &bf),
              CNN_ERR_INVALID_ARG);
    CHECK_ERR(cnn_batch_norm_fold(w, NULL, c4, c4, NULL, NULL, 1e-5f, &wf, NULL),
              CNN_ERR_INVALID_ARG);
    CHECK(!wf && !bf);
    cnn_tensor_free(&w);
    cnn_tensor_free(&c4);
    cnn_tensor_free(&c5);
}
