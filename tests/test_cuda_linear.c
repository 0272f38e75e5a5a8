/* test_cuda_linear.c — linear on the GPU (cuBLAS, whichever backend) against the CPU reference:
 * through the public op (every gradient, or only the one wanted), and its launchers directly in
 * FP32 and TF32 on awkward shapes, an empty batch included. GPU outputs start as NaN (see
 * poison_cache). Pooling, batch norm and LRN: test_cuda_nn.c. */
#include "gpu_parity.h"

#if CNN_WITH_CUDA
#include "../cuda/cuda_api.h"
#endif

/* ---- linear (cuBLAS) ---------------------------------------------------------------------- */
static cnn_status linear_f(cnn_tensor *const *in, void *ud, cnn_tensor **y)
{
    (void)ud;
    return cnn_linear(in[0], in[1], in[2], y);
}

/* Through the public op (cuBLAS whatever the backend preference): FP32 sums of 600 O(1)
 * products. */
GPU_TEST(cuda_linear_op_matches_cpu)
{
    cnn_set_tf32(false);
    gp_case with_bias = {"linear op 19x600 -> 513", linear_f, NULL, 3,
                         {CNN_SHAPE(19, 600), CNN_SHAPE(513, 600), CNN_SHAPE(513)},
                         {false, false, false}, -1, 1, 1e-4f, 1e-3f};
    gp_case no_bias = {"linear op batch 1, no bias", linear_f, NULL, 3,
                       {CNN_SHAPE(1, 37), CNN_SHAPE(5, 37), CNN_SHAPE(5)},
                       {false, false, true}, -1, 1, 1e-4f, 1e-3f};
    gp_case no_in = {"linear op 4x0 -> 6", linear_f, NULL, 3,
                     {CNN_SHAPE(4, 0), CNN_SHAPE(6, 0), CNN_SHAPE(6)},
                     {false, false, false}, -1, 1, 1e-5f, 1e-5f};
    gp_case no_out = {"linear op 4x9 -> 0", linear_f, NULL, 3,
                      {CNN_SHAPE(4, 9), CNN_SHAPE(0, 9), CNN_SHAPE(0)},
                      {false, false, false}, -1, 1, 1e-5f, 1e-5f};
    gpu_parity_both(&with_bias);
    gpu_parity_both(&no_bias);
    gpu_parity_both(&no_in);
    gpu_parity_both(&no_out);
}

/* With one of x and w wanting a gradient, linear saves only what that gradient reads
 * (layers/linear.c), and the cuBLAS backward is given NULL for the other. */
GPU_TEST(cuda_linear_with_one_gradient_wanted_matches_cpu)
{
    cnn_set_tf32(false);
    for (int want_x = 0; want_x < 2; want_x++) {
        cnn_tensor *x = rand_tensor(CNN_SHAPE(5, 70), -1, 1, want_x);
        cnn_tensor *w = rand_tensor(CNN_SHAPE(33, 70), -1, 1, !want_x);
        cnn_tensor *gx = NULL, *gw = NULL, *y = NULL, *s = NULL, *gy = NULL, *gs = NULL;
        REQUIRE(x && w);
        CHECK_OK(cnn_linear(x, w, NULL, &y));
        CHECK_OK(cnn_sum(y, &s));
        CHECK_OK(cnn_backward(s));
        CHECK_OK(cnn_tensor_to(x, CNN_CUDA(0), &gx));
        CHECK_OK(cnn_tensor_to(w, CNN_CUDA(0), &gw));
        CHECK_OK(cnn_tensor_set_requires_grad(want_x ? gx : gw, true));
        CHECK_OK(cnn_linear(gx, gw, NULL, &gy));
        CHECK_OK(cnn_sum(gy, &gs));
        CHECK_OK(cnn_backward(gs));
        gpu_check_close(want_x ? "linear, x only" : "linear, w only", "gradient",
                        cnn_tensor_grad(want_x ? gx : gw), cnn_tensor_grad(want_x ? x : w),
                        1e-4f, 1e-4f);
        CHECK(cnn_tensor_grad(want_x ? gw : gx) == NULL);
        cnn_tensor *all[] = {x, w, gx, gw, y, s, gy, gs};
        for (int i = 0; i < 8; i++) cnn_tensor_free(&all[i]);
    }
}

#if CNN_WITH_CUDA
typedef struct lin_case {
    const char *name;
    int n, in, out;
    bool bias;
} lin_case;

/* The cuBLAS launchers on device copies of a CPU reference (cnn_linear on the CPU). */
static void linear_run(const lin_case *lc, float atol, float rtol)
{
    char what[160];
    snprintf(what, sizeof what, "%s%s", lc->name, cnn_is_tf32() ? " [tf32]" : "");
    float ws = lc->in ? 1.0f / sqrtf((float)lc->in) : 1.0f;
    cnn_tensor *x = rand_tensor(CNN_SHAPE(lc->n, lc->in), -1, 1, 1);
    cnn_tensor *w = rand_tensor(CNN_SHAPE(lc->out, lc->in), -ws, ws, 1);
    cnn_tensor *b = lc->bias ? rand_tensor(CNN_SHAPE(lc->out), -1, 1, 1) : NULL;
    cnn_tensor *y = NULL, *dy = rand_tensor(CNN_SHAPE(lc->n, lc->out), -1, 1, 0);
    cnn_tensor *gx = to_gpu(x), *gw = to_gpu(w), *gb = to_gpu(b), *gdy = to_gpu(dy);
    cnn_tensor *gy = NULL, *gdx = NULL, *gdw = NULL, *gdb = NULL;
    if (!x || !w || !dy || !gx || !gw || !gdy || (lc->bias && !gb) ||
        cnn_linear(x, w, b, &y) != CNN_OK || cnn_backward_with_grad(y, dy) != CNN_OK) {
        cnn_test_fail(__FILE__, __LINE__, "%s: reference: %s", what, cnn_last_error());
        goto done;
    }
    cnn_shape shapes[4] = {CNN_SHAPE(lc->n, lc->out), CNN_SHAPE(lc->n, lc->in),
                           CNN_SHAPE(lc->out, lc->in), CNN_SHAPE(lc->out)};
    poison_cache(shapes, 4);
    if (cnn_tensor_empty(shapes[0], CNN_F32, CNN_CUDA(0), &gy) != CNN_OK ||
        cnn_tensor_empty(shapes[1], CNN_F32, CNN_CUDA(0), &gdx) != CNN_OK ||
        cnn_tensor_empty(shapes[2], CNN_F32, CNN_CUDA(0), &gdw) != CNN_OK ||
        cnn_tensor_empty(shapes[3], CNN_F32, CNN_CUDA(0), &gdb) != CNN_OK) {
        cnn_test_fail(__FILE__, __LINE__, "%s: alloc: %s", what, cnn_last_error());
        goto done;
    }
    cnn_context *ctx = cnn_context_current();
    cnn_status s1 = cnn_cuda_linear_forward(ctx, cnn_f32(gx), cnn_f32(gw), gb ? cnn_f32(gb) : NULL,
                                            lc->n, lc->in, lc->out, cnn_f32(gy));
    cnn_status s2 = cnn_cuda_linear_backward(ctx, cnn_f32(gx), cnn_f32(gw), cnn_f32(gdy), lc->n,
                                             lc->in, lc->out, cnn_f32(gdx), cnn_f32(gdw),
                                             lc->bias ? cnn_f32(gdb) : NULL);
    if (s1 != CNN_OK || s2 != CNN_OK) {
        cnn_test_fail(__FILE__, __LINE__, "%s: %s / %s: %s", what, cnn_status_name(s1),
                      cnn_status_name(s2), cnn_last_error());
        goto done;
    }
    gpu_check_close(what, "y", gy, y, atol, rtol);
    gpu_check_close(what, "dx", gdx, cnn_tensor_grad(x), atol, rtol);
    gpu_check_close(what, "dw", gdw, cnn_tensor_grad(w), atol, rtol);
    if (b) gpu_check_close(what, "db", gdb, cnn_tensor_grad(b), atol, rtol);
done:
    cnn_tensor_free(&x);
    cnn_tensor_free(&w);
    cnn_tensor_free(&b);
    cnn_tensor_free(&y);
    cnn_tensor_free(&dy);
    cnn_tensor_free(&gx);
    cnn_tensor_free(&gw);
    cnn_tensor_free(&gb);
    cnn_tensor_free(&gdy);
    cnn_tensor_free(&gy);
    cnn_tensor_free(&gdx);
    cnn_tensor_free(&gdw);
    cnn_tensor_free(&gdb);
}

static const lin_case lin_cases[] = {
    {"linear 7x13 -> 5", 7, 13, 5, true},
    {"linear batch 1", 1, 300, 17, true},
    {"linear no bias", 33, 65, 129, false},
    {"linear 600 -> 513", 19, 600, 513, true},
    {"linear 4096 -> 10", 64, 4096, 10, true},
    /* the context's vector of ones (db as a GEMV) grows past its first 1024, then serves a
     * smaller batch again */
    {"linear batch 2500", 2500, 9, 6, true},
    {"linear 3x5 -> 2 after batch 2500", 3, 5, 2, true},
    /* no input features: y is the bias (or zeros), dx and dw empty; no output features: y and
     * dw empty, dx zeros. cuBLAS is not called (it refuses leading dimensions of 0). */
    {"linear 7x0 -> 5", 7, 0, 5, true},
    {"linear 7x0 -> 5 no bias", 7, 0, 5, false},
    {"linear 7x9 -> 0", 7, 9, 0, true},
};

/* FP32: sums of up to 4096 O(1/sqrt(in)) products (dw: up to 64 O(1) products). */
GPU_TEST(cuda_linear_cublas_matches_cpu)
{
    cnn_set_tf32(false);
    for (size_t i = 0; i < sizeof lin_cases / sizeof *lin_cases; i++)
        linear_run(&lin_cases[i], 1e-4f, 1e-3f);
}

/* TF32 keeps 10 mantissa bits per operand (relative error ~5e-4 per product). */
GPU_TEST(cuda_linear_cublas_tf32)
{
    cnn_set_tf32(true);
    for (size_t i = 0; i < sizeof lin_cases / sizeof *lin_cases; i++)
        linear_run(&lin_cases[i], 1e-2f, 1e-2f);
    cnn_set_tf32(false);
}

/* The TF32 flag is read at every GEMM, not only when the context's cuBLAS handle is made:
 * turned on, off and on again, the same linear gives TF32's and FP32's exact results in turn.
 * x's 1 + 2^-12 keeps its last bits in FP32 (4 of them sum to 4 + 2^-10) and rounds to 1 as a
 * TF32 operand (10 mantissa bits). Whether a GPU's cuBLAS uses TF32 for so small a GEMM is its
 * choice: there only the FP32 results are pinned; the emulator always rounds. */
GPU_TEST(cuda_linear_follows_the_tf32_flag_at_each_call)
{
    cnn_tensor *x = NULL, *w = NULL, *y = NULL;
    CHECK_OK(cnn_tensor_full(CNN_SHAPE(2, 4), 1.0f + 0x1p-12f, CNN_CUDA(0), &x));
    CHECK_OK(cnn_tensor_ones(CNN_SHAPE(3, 4), CNN_CUDA(0), &w));
    REQUIRE(x && w);
    for (int k = 0; k < 3; k++) {
        const bool tf32 = k != 1;
        float v[6] = {0};
        cnn_set_tf32(tf32);
        cnn_tensor_free(&y);
        CHECK_OK(cnn_linear(x, w, NULL, &y));
        CHECK_OK(cnn_tensor_read(y, v, 6));
        if (tf32 && !emulated_gpu()) continue;
        const float want = tf32 ? 4.0f : 4.0f + 0x1p-10f;
        for (int i = 0; i < 6; i++)
            if (v[i] != want)
                cnn_test_fail(__FILE__, __LINE__, "tf32 %d: y[%d] = %.9g, not %.9g", tf32, i,
                              v[i], want);
    }
    cnn_set_tf32(false);
    free_tensors(&x, &w, &y);
}

/* An empty batch: y has no rows, dw and db are zeros (not left unwritten). */
GPU_TEST(cuda_linear_cublas_empty_batch)
{
    cnn_tensor *x = NULL, *w = NULL, *dy = NULL, *dw = NULL, *db = NULL;
    CHECK_OK(cnn_tensor_zeros(CNN_SHAPE(0, 4), CNN_CUDA(0), &x));
    CHECK_OK(cnn_tensor_ones(CNN_SHAPE(3, 4), CNN_CUDA(0), &w));
    CHECK_OK(cnn_tensor_zeros(CNN_SHAPE(0, 3), CNN_CUDA(0), &dy));
    CHECK_OK(cnn_tensor_full(CNN_SHAPE(3, 4), NAN, CNN_CUDA(0), &dw));
    CHECK_OK(cnn_tensor_full(CNN_SHAPE(3), NAN, CNN_CUDA(0), &db));
    CHECK_OK(cnn_cuda_linear_backward(cnn_context_current(), cnn_f32(x), cnn_f32(w), cnn_f32(dy), 0,
                                      4, 3, NULL, cnn_f32(dw), cnn_f32(db)));
    float v[12];
    CHECK_OK(cnn_tensor_read(dw, v, 12));
    for (int i = 0; i < 12; i++) CHECK(v[i] == 0.0f);
    CHECK_OK(cnn_tensor_read(db, v, 3));
    for (int i = 0; i < 3; i++) CHECK(v[i] == 0.0f);
    cnn_tensor_free(&x);
    cnn_tensor_free(&w);
    cnn_tensor_free(&dy);
    cnn_tensor_free(&dw);
    cnn_tensor_free(&db);
}
#endif
