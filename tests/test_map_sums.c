/* test_map_sums.c — the CPU's sums over whole feature maps stay accurate on large maps: conv2d's
 * bias gradient and a depthwise conv's filter gradient (which is no GEMM), and the average pools'
 * windows. A float running sum of 512 x 512 terms of 0.001 came out 0.34% off, and one of 2^25
 * ones stopped at 2^24. */
#include "gradcheck.h"

/* |got - want| within rel of want. */
static int near_exact(const char *what, float got, double want, double rel)
{
    if (fabs(got - want) <= rel * fabs(want)) return 1;
    fprintf(stderr, "  %s: %.7g, exactly %.7g (%.3g%% off)\n", what, got, want,
            100 * (got - want) / want);
    return 0;
}

/* x all ones (1, 2, 512, 512), dy all 0.001: db[k] and the filter gradient's taps are sums of
 * 0.001 over every output position (a tap at the map's edge misses one row or column). */
static void check_large_map(int groups, int kernel)
{
    const int H = 512, W = 512, pad = kernel / 2;
    const double d = (double)0.001f;
    cnn_tensor *x = NULL, *w = NULL, *b = NULL, *y = NULL, *dy = NULL;
    CHECK_OK(cnn_tensor_full(CNN_SHAPE(1, 2, H, W), 1.0f, CNN_CPU, &x));
    CHECK_OK(cnn_tensor_full(CNN_SHAPE(2, 2 / groups, kernel, kernel), 0.5f, CNN_CPU, &w));
    CHECK_OK(cnn_tensor_zeros(CNN_SHAPE(2), CNN_CPU, &b));
    REQUIRE(x && w && b);
    cnn_tensor_set_requires_grad(w, true);
    cnn_tensor_set_requires_grad(b, true);
    cnn_conv2d_params p = {.padding = {pad, pad}, .groups = groups};
    CHECK_OK(cnn_conv2d(x, w, b, &p, &y));
    REQUIRE(y);
    CHECK_OK(cnn_tensor_full(cnn_tensor_shape(y), 0.001f, CNN_CPU, &dy));
    CHECK_OK(cnn_backward_with_grad(y, dy));
    const float *db = cnn_tensor_data(cnn_tensor_grad(b));
    const float *dw = cnn_tensor_data(cnn_tensor_grad(w));
    REQUIRE(db && dw);
    /* The library's own sums: a float's rounding of the exact sum, and then some. */
    for (int k = 0; k < 2; k++) CHECK(near_exact("db[k]", db[k], (double)H * W * d, 1e-6));
    if (kernel == 3) {
        /* Depthwise: dw (2, 1, 3, 3); the centre tap sees every position, a corner tap misses
         * one row and one column. */
        CHECK(near_exact("dw centre", dw[4], (double)H * W * d, 1e-6));
        CHECK(near_exact("dw corner", dw[0], (double)(H - 1) * (W - 1) * d, 1e-6));
    } else {
        /* 1x1 through OpenBLAS's SGEMM, whose blocked float sums (as in PyTorch's conv) come
         * within about 1e-5 here. */
        for (int i = 0; i < 4; i++) CHECK(near_exact("dw", dw[i], (double)H * W * d, 1e-4));
    }
    free_tensors(&x, &w, &b, &y, &dy);
    cnn_tape_reset();
}

TEST(conv2d_bias_and_depthwise_filter_grads_sum_large_maps_accurately)
{
    check_large_map(2, 3); /* depthwise 3x3: its own filter-gradient loop, and the bias's */
    check_large_map(1, 1); /* an ordinary conv: the filter gradient is a GEMM, the bias's a sum */
}

/* A window as large as the map: average and adaptive average pooling of (1, 2, 512, 512). */
TEST(avg_pools_sum_large_windows_accurately)
{
    cnn_tensor *x = NULL, *y = NULL, *z = NULL;
    CHECK_OK(cnn_tensor_full(CNN_SHAPE(1, 2, 512, 512), 0.001f, CNN_CPU, &x));
    REQUIRE(x);
    cnn_pool2d_params p = {.kernel = {512, 512}};
    CHECK_OK(cnn_avg_pool2d(x, &p, &y));
    CHECK_OK(cnn_adaptive_avg_pool2d(x, 1, 1, &z));
    REQUIRE(y && z);
    const float *yv = cnn_tensor_data(y), *zv = cnn_tensor_data(z);
    for (int c = 0; c < 2; c++) {
        CHECK(near_exact("avg_pool2d", yv[c], (double)0.001f, 1e-6));
        CHECK(near_exact("adaptive_avg_pool2d", zv[c], (double)0.001f, 1e-6));
    }
    free_tensors(&x, &y, &z);
}

/* The same global pool on the GPU (always the hand-written kernel). */
GPU_TEST(cuda_adaptive_avg_pool_sums_a_large_window_accurately)
{
    cnn_tensor *x = NULL, *z = NULL, *h = NULL;
    CHECK_OK(cnn_tensor_full(CNN_SHAPE(1, 2, 512, 512), 0.001f, CNN_CUDA(0), &x));
    REQUIRE(x);
    CHECK_OK(cnn_adaptive_avg_pool2d(x, 1, 1, &z));
    CHECK_OK(cnn_tensor_to(z, CNN_CPU, &h));
    REQUIRE(h);
    for (int c = 0; c < 2; c++)
        CHECK(near_exact("cuda adaptive_avg_pool2d", cnn_tensor_cdata(h)[c], (double)0.001f, 1e-6));
    free_tensors(&x, &z, &h);
}
