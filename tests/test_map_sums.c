/* test_map_sums.c — sums over whole feature maps stay accurate on large maps, on the CPU and in
 * the hand-written CUDA kernels: conv2d's bias gradient and a depthwise conv's filter gradient
 * (which is no GEMM), and the average pools' windows. A float running sum of 512 x 512 terms of
 * 0.001 came out 0.34% off, and one of 2^25 ones stopped at 2^24. */
#include "gradcheck.h"

/* |got - want| within rel of want. */
static int near_exact(const char *what, float got, double want, double rel)
{
    if (fabs(got - want) <= rel * fabs(want)) return 1;
    fprintf(stderr, "  %s: %.7g, exactly %.7g (%.3g%% off)\n", what, got, want,
            100 * (got - want) / want);
    return 0;
}

/* x all ones (1, 2, 512, 512) on dev, dy all 0.001: db[k] and the filter gradient's taps are
 * sums of 0.001 over every output position (a tap at the map's edge misses one row or column). */
static void check_large_map(int groups, int kernel, cnn_device dev)
{
    const int H = 512, W = 512, pad = kernel / 2;
    const double d = (double)0.001f;
    cnn_tensor *x = NULL, *w = NULL, *b = NULL, *y = NULL, *dy = NULL;
    CHECK_OK(cnn_tensor_full(CNN_SHAPE(1, 2, H, W), 1.0f, dev, &x));
    CHECK_OK(cnn_tensor_full(CNN_SHAPE(2, 2 / groups, kernel, kernel), 0.5f, dev, &w));
    CHECK_OK(cnn_tensor_zeros(CNN_SHAPE(2), dev, &b));
    REQUIRE(x && w && b);
    cnn_tensor_set_requires_grad(w, true);
    cnn_tensor_set_requires_grad(b, true);
    cnn_conv2d_params p = {.padding = {pad, pad}, .groups = groups};
    CHECK_OK(cnn_conv2d(x, w, b, &p, &y));
    REQUIRE(y);
    CHECK_OK(cnn_tensor_full(cnn_tensor_shape(y), 0.001f, dev, &dy));
    CHECK_OK(cnn_backward_with_grad(y, dy));
    float db[2], dw[18];
    REQUIRE(cnn_tensor_grad(b) && cnn_tensor_grad(w));
    CHECK_OK(cnn_tensor_read(cnn_tensor_grad(b), db, 2));
    CHECK_OK(cnn_tensor_read(cnn_tensor_grad(w), dw, (size_t)cnn_tensor_numel(w)));
    /* The library's own sums: a float's rounding of the exact sum, and then some. */
    for (int k = 0; k < 2; k++) CHECK(near_exact("db[k]", db[k], (double)H * W * d, 1e-6));
    if (kernel == 3) {
        /* Depthwise: dw (2, 1, 3, 3); the centre tap sees every position, a corner tap misses
         * one row and one column. */
        CHECK(near_exact("dw centre", dw[4], (double)H * W * d, 1e-6));
        CHECK(near_exact("dw corner", dw[0], (double)(H - 1) * (W - 1) * d, 1e-6));
    } else {
        /* 1x1 through a float GEMM (OpenBLAS's, or the GPU's), whose blocked float sums (as in
         * PyTorch's conv) come within about 1e-5 here. */
        for (int i = 0; i < 4; i++) CHECK(near_exact("dw", dw[i], (double)H * W * d, 1e-4));
    }
    free_tensors(&x, &w, &b, &y, &dy);
    cnn_tape_reset();
}

TEST(conv2d_bias_and_depthwise_filter_grads_sum_large_maps_accurately)
{
    check_large_map(2, 3, CNN_CPU); /* depthwise 3x3: its own filter-gradient loop, the bias's */
    check_large_map(1, 1, CNN_CPU); /* an ordinary conv: the filter gradient is a GEMM */
}

/* The hand-written CUDA kernels of the same sums: a float share of a channel per thread drifted
 * (1024 terms of 0.001 each here), and partial sums of huge gradients of both signs overflowed:
 * dy alternating +-1e36 along a row gave the bias gradient inf - inf = NaN, where it is 0. */
static void hand_written_conv_grads(void)
{
    check_large_map(2, 3, CNN_CUDA(0));
    check_large_map(1, 1, CNN_CUDA(0));
    cnn_tensor *x = NULL, *w = NULL, *b = NULL, *y = NULL, *dy = NULL;
    float *alt = malloc(4 * 64 * 64 * sizeof *alt), db = -1;
    REQUIRE(alt);
    for (int i = 0; i < 4 * 64 * 64; i++) alt[i] = i % 2 ? -1e36f : 1e36f;
    CHECK_OK(cnn_tensor_full(CNN_SHAPE(4, 1, 64, 64), 1.0f, CNN_CUDA(0), &x));
    CHECK_OK(cnn_tensor_full(CNN_SHAPE(1, 1, 1, 1), 1.0f, CNN_CUDA(0), &w));
    CHECK_OK(cnn_tensor_zeros(CNN_SHAPE(1), CNN_CUDA(0), &b));
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(4, 1, 64, 64), alt, CNN_CUDA(0), &dy));
    REQUIRE(x && w && b && dy);
    cnn_tensor_set_requires_grad(b, true);
    CHECK_OK(cnn_conv2d(x, w, b, NULL, &y));
    CHECK_OK(cnn_backward_with_grad(y, dy));
    REQUIRE(cnn_tensor_grad(b));
    CHECK_OK(cnn_tensor_read(cnn_tensor_grad(b), &db, 1));
    if (db != 0.0f) cnn_test_fail(__FILE__, __LINE__, "bias gradient %g, exactly 0", (double)db);
    free_tensors(&x, &w, &b, &y, &dy);
    free(alt);
    cnn_tape_reset();
}

GPU_TEST(cuda_hand_written_conv_grads_sum_large_maps_accurately)
{
    cnn_set_backend(CNN_BACKEND_CUDA);
    hand_written_conv_grads(); /* a failed REQUIRE returns from it, not from here */
    cnn_set_backend(CNN_BACKEND_AUTO);
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

/* The hand-written CUDA average pool sums as the CPU does (in double, in the same order): the
 * same bits, and a window of values near FLT_MAX averages to them instead of overflowing. */
static void hand_written_avg_pool(void)
{
    cnn_tensor *x = rand_tensor(CNN_SHAPE(2, 3, 17, 13), -1, 1, 0), *gx = NULL, *y = NULL;
    cnn_tensor *gy = NULL, *big = NULL, *gb = NULL;
    REQUIRE(x);
    cnn_pool2d_params p = {.kernel = {3, 3}, .stride = {2, 2}, .padding = {1, 1}};
    CHECK_OK(cnn_tensor_to(x, CNN_CUDA(0), &gx));
    CHECK_OK(cnn_avg_pool2d(x, &p, &y));
    CHECK_OK(cnn_avg_pool2d(gx, &p, &gy));
    REQUIRE(y && gy);
    const int64_t n = cnn_tensor_numel(y);
    float *got = malloc((size_t)n * sizeof *got);
    REQUIRE(got);
    CHECK_OK(cnn_tensor_read(gy, got, (size_t)n));
    CHECK(memcmp(got, cnn_tensor_cdata(y), (size_t)n * sizeof *got) == 0);
    free(got);
    float v[4];
    cnn_pool2d_params two = {.kernel = {2, 2}};
    CHECK_OK(cnn_tensor_full(CNN_SHAPE(1, 1, 4, 4), 3e38f, CNN_CUDA(0), &big));
    CHECK_OK(cnn_avg_pool2d(big, &two, &gb));
    REQUIRE(gb);
    CHECK_OK(cnn_tensor_read(gb, v, 4));
    for (int i = 0; i < 4; i++) CHECK(v[i] == 3e38f);
    free_tensors(&x, &gx, &y, &gy, &big, &gb);
}

GPU_TEST(cuda_hand_written_avg_pool_sums_as_the_cpu)
{
    cnn_set_backend(CNN_BACKEND_CUDA);
    hand_written_avg_pool();
    cnn_set_backend(CNN_BACKEND_AUTO);
}
