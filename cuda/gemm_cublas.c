/* gemm_cublas.c — the linear layer on the GPU with cuBLAS: forward y = x w^T + b and backward
 * (dx, dw, db), TF32 or exact FP32 as the context says (set per call by cnn_cuda_cublas). Only
 * cuBLAS calls on device pointers (and elementwise.cu's row repeat for the bias);
 * layers/linear.c checks shapes and sizes (< 2^31).
 * cuBLAS is column-major: a row-major (r, c) matrix is read as its transpose, (c, r) with
 * leading dimension c, so every product below is written for the transposes. */
#include "cuda_check.h"

cnn_status cnn_cuda_linear_forward(cnn_context *ctx, const float *x, const float *w,
                                   const float *b, int64_t n, int64_t in, int64_t out, float *y)
{
    if (n <= 0 || out <= 0) return CNN_OK;
    cudaStream_t s;
    cublasHandle_t h;
    CNN_TRY(cnn_cuda_enter(ctx, "linear", &s));
    CNN_TRY(cnn_cuda_cublas(ctx, &h));
    const float one = 1.0f, zero = 0.0f;
    /* The bias in every row, copied exactly (a GEMM with ones would round it to TF32), in one
     * launch; the GEMM then adds onto it (beta 1). */
    if (b) CNN_TRY(cnn_cuda_repeat_rows_f32(ctx, y, b, n, out));
    /* No input features: y is the bias alone, or zeros (cuBLAS wants leading dimensions >= 1). */
    if (in == 0) {
        if (!b) CNN_CUDA_TRY(cudaMemsetAsync(y, 0, (size_t)(n * out) * sizeof(float), s));
        return CNN_OK;
    }
    /* y^T (out, n) = w (out, in) x^T (in, n); w is stored as w^T (in, out), hence OP_T. */
    CNN_CUBLAS_TRY(cublasSgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, (int)out, (int)n, (int)in, &one, w,
                               (int)in, x, (int)in, b ? &one : &zero, y, (int)out));
    return CNN_OK;
}

cnn_status cnn_cuda_linear_backward(cnn_context *ctx, const float *x, const float *w,
                                    const float *dy, int64_t n, int64_t in, int64_t out,
                                    float *dx, float *dw, float *db)
{
    cudaStream_t s;
    cublasHandle_t h;
    CNN_TRY(cnn_cuda_enter(ctx, "linear backward", &s));
    CNN_TRY(cnn_cuda_cublas(ctx, &h));
    const float one = 1.0f, zero = 0.0f;
    /* No output features: dx is a sum of nothing, zeros. No input features: dx and dw are
     * empty. cuBLAS is never called with an empty dimension (it wants leading dimensions >= 1). */
    if (dx && n > 0 && out == 0)
        CNN_CUDA_TRY(cudaMemsetAsync(dx, 0, (size_t)(n * in) * sizeof(float), s));
    else if (dx && n > 0 && in > 0)
        /* dx^T (in, n) = w^T (in, out) dy^T (out, n) */
        CNN_CUBLAS_TRY(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, (int)in, (int)n, (int)out, &one, w,
                                   (int)in, dy, (int)out, &zero, dx, (int)in));
    /* An empty batch contributes nothing: zero sums, without a k = 0 GEMM. */
    if (n == 0) {
        if (dw) CNN_CUDA_TRY(cudaMemsetAsync(dw, 0, (size_t)(out * in) * sizeof(float), s));
        if (db) CNN_CUDA_TRY(cudaMemsetAsync(db, 0, (size_t)out * sizeof(float), s));
        return CNN_OK;
    }
    if (dw && in > 0 && out > 0)
        /* dw^T (in, out) = x^T (in, n) dy (n, out); dy is stored as dy^T (out, n), hence OP_T. */
        CNN_CUBLAS_TRY(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_T, (int)in, (int)out, (int)n, &one, x,
                                   (int)in, dy, (int)out, &zero, dw, (int)in));
    if (db && out > 0) {
        /* db (out) = dy^T (out, n) ones (n), the context's ones */
        const float *ones = NULL;
        CNN_TRY(cnn_cuda_ones(ctx, n, &ones));
        cublasStatus_t e = cublasSgemv(h, CUBLAS_OP_N, (int)out, (int)n, &one, dy, (int)out,
                                       ones, 1, &zero, db, 1);
        if (e != CUBLAS_STATUS_SUCCESS)
            return cnn_error(cnn_cublas_status_of(e),
                             "linear backward: dbias cublasSgemv failed: %s",
                             cublasGetStatusString(e));
    }
    return CNN_OK;
}
