/* test_linear.c — cnn_linear: forward against a naive loop, finite-difference gradients of x, w
 * and b (with and without bias, batch 1), and the shape errors with their messages; and the
 * sgemm under it and the convs (layers/gemm.c): split over the threads, right to rounding and the
 * same bits every time. */
#include "gradcheck.h"

#include <cblas.h>
#include <omp.h>

#include "../layers/gemm.h"

static cnn_status f_linear(cnn_tensor *const *in, void *ud, cnn_tensor **y)
{
    (void)ud;
    return cnn_linear(in[0], in[1], in[2], y);
}

/* Gradchecks a linear layer of the given sizes; the step is large because y is linear in each
 * input, which keeps float rounding out of the comparison. */
static int linear_grads_match(const char *what, int n, int in, int out, int bias)
{
    cnn_tensor *t[3] = {rand_tensor(CNN_SHAPE(n, in), -1, 1, 1),
                        rand_tensor(CNN_SHAPE(out, in), -1, 1, 1),
                        bias ? rand_tensor(CNN_SHAPE(out), -1, 1, 1) : NULL};
    gc_opts o = {.eps = 0.25f, .atol = 1e-3f, .rtol = 1e-3f};
    int ok = gradcheck(what, f_linear, t, 3, NULL, &o);
    for (int i = 0; i < 3; i++) cnn_tensor_free(&t[i]);
    return ok;
}

TEST(linear_gradcheck)
{
    CHECK(linear_grads_match("linear 3x5 -> 4", 3, 5, 4, 1));
    CHECK(linear_grads_match("linear no bias", 3, 5, 4, 0));
    CHECK(linear_grads_match("linear batch 1", 1, 7, 3, 1));
    CHECK(linear_grads_match("linear 1 -> 1", 2, 1, 1, 1));
}

/* An empty batch: y is (0, out) and the weight and bias gradients are sums over no samples,
 * zeros as torch's, whatever memory they are allocated in. The weight is 64 KiB, so its gradient
 * comes from the host allocator's cache: here a block just left full of NaNs. */
TEST(linear_empty_batch_gives_zero_gradients)
{
    cnn_tensor *x = rand_tensor(CNN_SHAPE(0, 128), -1, 1, 1);
    cnn_tensor *w = rand_tensor(CNN_SHAPE(128, 128), -1, 1, 1);
    cnn_tensor *b = rand_tensor(CNN_SHAPE(128), -1, 1, 1), *junk = NULL, *y = NULL, *dy = NULL;
    REQUIRE(x && w && b);
    CHECK_OK(cnn_tensor_full(CNN_SHAPE(128, 128), NAN, CNN_CPU, &junk));
    cnn_tensor_free(&junk);
    CHECK_OK(cnn_linear(x, w, b, &y));
    REQUIRE(y && cnn_tensor_dim(y, 0) == 0 && cnn_tensor_dim(y, 1) == 128);
    CHECK_OK(cnn_tensor_zeros(CNN_SHAPE(0, 128), CNN_CPU, &dy));
    CHECK_OK(cnn_backward_with_grad(y, dy));
    const cnn_tensor *gx = cnn_tensor_grad(x), *gw = cnn_tensor_grad(w), *gb = cnn_tensor_grad(b);
    REQUIRE(gx && gw && gb);
    CHECK(cnn_tensor_dim(gx, 0) == 0 && cnn_tensor_dim(gx, 1) == 128);
    int nonzero = 0;
    for (int i = 0; i < 128 * 128; i++) nonzero += cnn_tensor_cdata(gw)[i] != 0.0f;
    for (int i = 0; i < 128; i++) nonzero += cnn_tensor_cdata(gb)[i] != 0.0f;
    CHECK(nonzero == 0);
    cnn_tensor *all[] = {x, w, b, y, dy};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) cnn_tensor_free(&all[i]);
}

/* No input or no output features, as torch 1.13's F.linear: with a (5, 0) weight y is the bias
 * in every row (zeros without one) and db the column sums of dy; with a (0, 4) weight y is
 * (N, 0) and dx zeros. The outputs are allocated where a block of NaNs just was, so anything
 * left unwritten shows. */
TEST(linear_empty_features_as_torch)
{
    cnn_tensor *x = rand_tensor(CNN_SHAPE(3, 0), -1, 1, 1);
    cnn_tensor *w = rand_tensor(CNN_SHAPE(5, 0), -1, 1, 1);
    cnn_tensor *b = NULL, *y = NULL, *dy = NULL, *junk = NULL;
    const float bias[5] = {0.5f, -1, 2, 0, 3};
    float dyv[15], v[15];
    for (int i = 0; i < 15; i++) dyv[i] = (float)i;
    REQUIRE(x && w);
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(5), bias, CNN_CPU, &b));
    CHECK_OK(cnn_tensor_set_requires_grad(b, true));
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(3, 5), dyv, CNN_CPU, &dy));
    for (int with_bias = 0; with_bias < 2; with_bias++) {
        CHECK_OK(cnn_tensor_full(CNN_SHAPE(3, 5), NAN, CNN_CPU, &junk));
        cnn_tensor_free(&junk);
        CHECK_OK(cnn_linear(x, w, with_bias ? b : NULL, &y));
        REQUIRE(y && cnn_tensor_dim(y, 0) == 3 && cnn_tensor_dim(y, 1) == 5);
        CHECK_OK(cnn_tensor_read(y, v, 15));
        for (int i = 0; i < 15; i++) CHECK(v[i] == (with_bias ? bias[i % 5] : 0.0f));
        CHECK_OK(cnn_backward_with_grad(y, dy));
        cnn_tensor_free(&y);
    }
    const cnn_tensor *gb = cnn_tensor_grad(b);
    REQUIRE(gb && cnn_tensor_grad(x) && cnn_tensor_grad(w));
    CHECK(cnn_tensor_numel(cnn_tensor_grad(x)) == 0 && cnn_tensor_dim(cnn_tensor_grad(w), 0) == 5);
    for (int j = 0; j < 5; j++) CHECK(cnn_tensor_cdata(gb)[j] == 15.0f + 3 * j); /* 15 18 .. 27 */
    cnn_tensor_free(&x);
    cnn_tensor_free(&w);
    cnn_tensor_free(&b);
    cnn_tensor_free(&dy);

    x = rand_tensor(CNN_SHAPE(3, 4), -1, 1, 1);
    w = rand_tensor(CNN_SHAPE(0, 4), -1, 1, 1);
    b = rand_tensor(CNN_SHAPE(0), -1, 1, 1);
    REQUIRE(x && w && b);
    CHECK_OK(cnn_linear(x, w, b, &y));
    REQUIRE(y && cnn_tensor_dim(y, 0) == 3 && cnn_tensor_dim(y, 1) == 0);
    CHECK_OK(cnn_tensor_zeros(CNN_SHAPE(3, 0), CNN_CPU, &dy));
    CHECK_OK(cnn_tensor_full(CNN_SHAPE(3, 4), NAN, CNN_CPU, &junk));
    cnn_tensor_free(&junk);
    CHECK_OK(cnn_backward_with_grad(y, dy));
    const cnn_tensor *gx = cnn_tensor_grad(x);
    REQUIRE(gx && cnn_tensor_grad(w) && cnn_tensor_grad(b));
    for (int i = 0; i < 12; i++) CHECK(cnn_tensor_cdata(gx)[i] == 0.0f);
    CHECK(cnn_tensor_numel(cnn_tensor_grad(w)) == 0 && cnn_tensor_numel(cnn_tensor_grad(b)) == 0);
    cnn_tensor *all[] = {x, w, b, y, dy};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) cnn_tensor_free(&all[i]);
    CHECK(linear_grads_match("linear 3x0 -> 5", 3, 0, 5, 1));
    CHECK(linear_grads_match("linear 3x4 -> 0", 3, 4, 0, 1));
}

TEST(linear_forward_matches_naive)
{
    const int sizes[][3] = {{1, 1, 1}, {3, 5, 4}, {17, 33, 9}, {64, 300, 130}};
    for (int t = 0; t < 4; t++) {
        int n = sizes[t][0], in = sizes[t][1], out = sizes[t][2];
        for (int bias = 0; bias < 2; bias++) {
            cnn_tensor *x = rand_tensor(CNN_SHAPE(n, in), -1, 1, 0);
            cnn_tensor *w = rand_tensor(CNN_SHAPE(out, in), -1, 1, 0);
            cnn_tensor *b = bias ? rand_tensor(CNN_SHAPE(out), -1, 1, 0) : NULL;
            cnn_tensor *y = NULL, *ref = NULL;
            CHECK_OK(cnn_linear(x, w, b, &y));
            REQUIRE(cnn_tensor_dim(y, 0) == n && cnn_tensor_dim(y, 1) == out);
            const float *px = cnn_tensor_cdata(x), *pw = cnn_tensor_cdata(w);
            float *yr = malloc((size_t)n * out * sizeof *yr);
            for (int i = 0; i < n; i++)
                for (int o = 0; o < out; o++) {
                    double acc = b ? cnn_tensor_cdata(b)[o] : 0;
                    for (int j = 0; j < in; j++) acc += (double)px[i * in + j] * pw[o * in + j];
                    yr[i * out + o] = (float)acc;
                }
            CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(n, out), yr, CNN_CPU, &ref));
            CHECK(tensors_close("linear forward", y, ref, 1e-4f, 1e-4f));
            free(yr);
            cnn_tensor_free(&x);
            cnn_tensor_free(&w);
            cnn_tensor_free(&b);
            cnn_tensor_free(&y);
            cnn_tensor_free(&ref);
        }
    }
}

TEST(linear_shape_errors)
{
    cnn_tensor *x = rand_tensor(CNN_SHAPE(2, 5), -1, 1, 0);
    cnn_tensor *x4 = rand_tensor(CNN_SHAPE(2, 5, 1, 1), -1, 1, 0);
    cnn_tensor *w = rand_tensor(CNN_SHAPE(3, 6), -1, 1, 0);
    cnn_tensor *w_ok = rand_tensor(CNN_SHAPE(3, 5), -1, 1, 0);
    cnn_tensor *b = rand_tensor(CNN_SHAPE(4), -1, 1, 0);
    cnn_tensor *y = NULL;
    CHECK_ERR(cnn_linear(x, w, NULL, &y), CNN_ERR_SHAPE);
    CHECK(strstr(cnn_last_error(), "(2, 5)") && strstr(cnn_last_error(), "(3, 6)"));
    CHECK_ERR(cnn_linear(x4, w_ok, NULL, &y), CNN_ERR_SHAPE);
    CHECK(strstr(cnn_last_error(), "(2, 5, 1, 1)"));
    CHECK_ERR(cnn_linear(x, b, NULL, &y), CNN_ERR_SHAPE);
    CHECK(strstr(cnn_last_error(), "weight") && strstr(cnn_last_error(), "(4)"));
    CHECK_ERR(cnn_linear(x, w_ok, b, &y), CNN_ERR_SHAPE);
    CHECK(strstr(cnn_last_error(), "(4)") && strstr(cnn_last_error(), "(3, 5)"));
    CHECK_ERR(cnn_linear(NULL, w_ok, NULL, &y), CNN_ERR_INVALID_ARG);
    CHECK_ERR(cnn_linear(x, w_ok, NULL, NULL), CNN_ERR_INVALID_ARG);
    CHECK(y == NULL);
    cnn_tensor_free(&x);
    cnn_tensor_free(&x4);
    cnn_tensor_free(&w);
    cnn_tensor_free(&w_ok);
    cnn_tensor_free(&b);
}

/* cnn_sgemm against a double-precision loop, for every transpose pair, on shapes big enough to
 * be split by columns (n >= m) and by rows (m > n), with beta 0 and 1: right to rounding, the
 * padding between rows untouched, and the same bits on a second call. Not the same bits as one
 * unsplit call: OpenBLAS's Haswell/Zen kernels round an element differently depending on where
 * the matrix edge falls (seen on an AMD EPYC, OpenBLAS 0.3.21). Inside a parallel region there is
 * no split: the same bits as one single-threaded cblas_sgemm. */
TEST(sgemm_split_over_threads_right_and_repeatable)
{
    /* 311 columns or rows (a prime): no thread count splits them evenly. */
    const int shapes[][3] = {{40, 300, 200}, {300, 40, 200}, {7, 9, 5}, {256, 256, 64},
                             {40, 311, 200}, {311, 40, 200}};
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++)
                for (int beta = 0; beta < 2; beta++) {
                    const int m = shapes[si][0], n = shapes[si][1], k = shapes[si][2];
                    const int lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 1, ldc = n + 2;
                    const size_t nc = (size_t)m * ldc;
                    cnn_tensor *ta_ = rand_tensor(CNN_SHAPE((ta ? k : m) * lda), -1, 1, 0);
                    cnn_tensor *tb_ = rand_tensor(CNN_SHAPE((tb ? n : k) * ldb), -1, 1, 0);
                    cnn_tensor *tc = rand_tensor(CNN_SHAPE(m * ldc), -1, 1, 0);
                    const float *a = cnn_tensor_cdata(ta_), *b = cnn_tensor_cdata(tb_);
                    const float *c0 = cnn_tensor_cdata(tc);
                    float *c[4]; /* one cblas call, cnn_sgemm twice, cnn_sgemm in a region */
                    for (int i = 0; i < 4; i++) {
                        c[i] = malloc(nc * sizeof *c[i]);
                        REQUIRE(c[i]);
                        memcpy(c[i], c0, nc * sizeof *c[i]);
                    }
                    cnn_blas_serial_begin();
                    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans,
                                tb ? CblasTrans : CblasNoTrans, m, n, k, 0.5f, a, lda, b, ldb,
                                (float)beta, c[0], ldc);
                    cnn_blas_serial_end();
                    for (int r = 1; r <= 2; r++)
                        cnn_sgemm(ta, tb, m, n, k, 0.5f, a, lda, b, ldb, (float)beta, c[r], ldc);
                    #pragma omp parallel num_threads(2)
                    {
                        #pragma omp single
                        cnn_sgemm(ta, tb, m, n, k, 0.5f, a, lda, b, ldb, (float)beta, c[3], ldc);
                    }
                    double worst = 0;
                    int repeat = 1, region = 1, padding = 1;
                    for (int i = 0; i < m; i++)
                        for (int j = 0; j < ldc; j++) {
                            const size_t at = (size_t)i * ldc + j;
                            repeat &= c[2][at] == c[1][at];
                            region &= c[3][at] == c[0][at];
                            if (j >= n) {
                                padding &= c[1][at] == c0[at];
                                continue;
                            }
                            double ref = beta ? c0[at] : 0;
                            for (int q = 0; q < k; q++)
                                ref += 0.5 * a[ta ? (size_t)q * lda + i : (size_t)i * lda + q] *
                                       b[tb ? (size_t)j * ldb + q : (size_t)q * ldb + j];
                            worst = fmax(worst, fabs(ref - c[1][at]));
                        }
                    if (!repeat || !region || !padding || !(worst < 1e-4))
                        cnn_test_fail(__FILE__, __LINE__,
                                      "sgemm %dx%dx%d ta %d tb %d beta %d: repeatable %d, in a "
                                      "region as one call %d, padding kept %d, max error %g",
                                      m, n, k, ta, tb, beta, repeat, region, padding, worst);
                    for (int i = 0; i < 4; i++)
                        free(c[i]);
                    cnn_tensor_free(&ta_);
                    cnn_tensor_free(&tb_);
                    cnn_tensor_free(&tc);
                }
}

/* OpenBLAS runs single-threaded between cnn_blas_serial_begin and the matching end (nested
 * pairs too), and the last end puts back the thread count the caller had, as cnn_sgemm does
 * around each call. Only for a pthreads OpenBLAS: an OpenMP or serial one is left alone. */
TEST(blas_serial_sections_restore_the_thread_count)
{
    if (openblas_get_parallel() != OPENBLAS_THREAD) {
        cnn_test_skip("OpenBLAS is not the pthreads build");
        return;
    }
    const int saved = openblas_get_num_threads();
    openblas_set_num_threads(2);
    REQUIRE(openblas_get_num_threads() == 2);
    cnn_blas_serial_begin();
    CHECK(openblas_get_num_threads() == 1);
    cnn_blas_serial_begin();
    cnn_blas_serial_end();
    CHECK(openblas_get_num_threads() == 1);
    cnn_blas_serial_end();
    CHECK(openblas_get_num_threads() == 2);
    float a[4] = {1, 2, 3, 4}, b[4] = {1, 0, 0, 1}, c[4] = {0};
    cnn_sgemm(false, false, 2, 2, 2, 1.0f, a, 2, b, 2, 0.0f, c, 2);
    CHECK(c[0] == 1 && c[1] == 2 && c[2] == 3 && c[3] == 4);
    CHECK(openblas_get_num_threads() == 2);
    openblas_set_num_threads(saved);
}
