/* conv2d_gemm.c — a 1x1 convolution (stride 1, no padding, no dilation, one group) over NCHW is
 * a GEMM per sample: y[n] (K, HW) = w (K, C) x[n] (C, HW). Run here through cuBLAS, as one
 * candidate that conv2d_cudnn.c's search times beside cuDNN's algorithms (a third of
 * ResNet-50's convolutions are 1x1, and there cuDNN's legacy algorithms trailed PyTorch's most).
 * Same arithmetic as any FP32 GEMM; deterministic. It never prints. */
#include "cuda_check.h"

#include <limits.h>

bool cnn_cuda_conv1x1_gemm_fits(const cnn_cuda_conv *g)
{
    const int64_t hw = g->h * g->w;
    return g->r == 1 && g->s == 1 && g->sh == 1 && g->sw == 1 && g->ph == 0 && g->pw == 0 &&
           g->groups == 1 && g->p == g->h && g->q == g->w && hw * g->k < INT_MAX &&
           hw * g->c < INT_MAX && g->k * g->c < INT_MAX && g->n < INT_MAX && hw > 0 &&
           g->n > 0 && g->c > 0 && g->k > 0;
}

/* Backward-filter sums the samples' (C, K) products: in chunks of `chunk` samples, each
 * product into the workspace by one batched GEMM, then the chunk's sum into dw by one GEMV
 * against a vector of ones. The chunk fills what `cap` bytes allow, up to the whole batch. */
static int64_t filter_chunk(const cnn_cuda_conv *g, size_t cap)
{
    const size_t per = (size_t)(g->k * g->c) * sizeof(float);
    int64_t chunk = (int64_t)(cap / per);
    if (chunk > g->n) chunk = g->n;
    return chunk < 1 ? 1 : chunk;
}

size_t cnn_cuda_conv1x1_gemm_workspace(const cnn_cuda_conv *g, int pass, size_t cap)
{
    if (pass != 2) return 0;
    return (size_t)filter_chunk(g, cap) * (size_t)(g->k * g->c) * sizeof(float);
}

static cnn_status gemm_failed(const char *what, cublasStatus_t e)
{
    return cnn_error(cnn_cublas_status_of(e), "conv2d (1x1 as GEMM): %s failed: %s", what,
                     cublasGetStatusString(e));
}

/* Column-major views (cuBLAS's): x[n] is (HW, C) with ld HW, y[n] and dy[n] are (HW, K) with ld
 * HW, w is (C, K) with ld C. Forward: y[n] = x[n] w; backward-data: dx[n] = dy[n] w^T;
 * backward-filter: dw (C, K) = sum_n x[n]^T dy[n].
 * pass 0: in0 x, in1 w, out y; pass 1: in0 dy, in1 w, out dx; pass 2: in0 x, in1 dy, out dw. */
cnn_status cnn_cuda_conv1x1_gemm(cnn_context *ctx, const cnn_cuda_conv *g, int pass,
                                 const float *in0, const float *in1, float *out, float *ws,
                                 size_t ws_bytes)
{
    CNN_CHECK(cnn_cuda_conv1x1_gemm_fits(g) && pass >= 0 && pass <= 2, CNN_ERR_INTERNAL,
              "conv2d (1x1 as GEMM): called for a case it does not fit");
    cublasHandle_t h;
    CNN_TRY(cnn_cuda_cublas(ctx, &h));
    const int hw = (int)(g->h * g->w), c = (int)g->c, k = (int)g->k, n = (int)g->n;
    const long long sx = (long long)hw * c, sy = (long long)hw * k;
    const float one = 1.0f, zero = 0.0f;
    cublasStatus_t e;
    if (pass == 0) {
        e = cublasSgemmStridedBatched(h, CUBLAS_OP_N, CUBLAS_OP_N, hw, k, c, &one, in0, hw, sx,
                                      in1, c, 0, &zero, out, hw, sy, n);
        return e == CUBLAS_STATUS_SUCCESS ? CNN_OK : gemm_failed("forward GEMM", e);
    }
    if (pass == 1) {
        e = cublasSgemmStridedBatched(h, CUBLAS_OP_N, CUBLAS_OP_T, hw, c, k, &one, in0, hw, sy,
                                      in1, c, 0, &zero, out, hw, sx, n);
        return e == CUBLAS_STATUS_SUCCESS ? CNN_OK : gemm_failed("backward-data GEMM", e);
    }
    const int64_t chunk = (int64_t)(ws_bytes / ((size_t)(g->k * g->c) * sizeof(float)));
    CNN_CHECK(chunk >= 1 && ws, CNN_ERR_INTERNAL,
              "conv2d (1x1 as GEMM): backward-filter workspace of %zu bytes is too small",
              ws_bytes);
    const float *ones;
    CNN_TRY(cnn_cuda_ones(ctx, chunk < g->n ? chunk : g->n, &ones));
    const int ck = c * k;
    for (int64_t n0 = 0; n0 < g->n; n0 += chunk) {
        const int b = (int)(g->n - n0 < chunk ? g->n - n0 : chunk);
        /* ws[i] (C, K) = x[n0 + i]^T dy[n0 + i] */
        e = cublasSgemmStridedBatched(h, CUBLAS_OP_T, CUBLAS_OP_N, c, k, hw, &one,
                                      in0 + n0 * sx, hw, sx, in1 + n0 * sy, hw, sy, &zero, ws, c,
                                      ck, b);
        if (e != CUBLAS_STATUS_SUCCESS) return gemm_failed("backward-filter GEMM", e);
        /* dw (+)= ws (CK, b) ones (b): the chunk's sum, added in sample order by cuBLAS */
        const float *beta = n0 == 0 ? &zero : &one;
        e = cublasSgemv(h, CUBLAS_OP_N, ck, b, &one, ws, ck, ones, 1, beta, out, 1);
        if (e != CUBLAS_STATUS_SUCCESS) return gemm_failed("backward-filter sum (GEMV)", e);
    }
    return CNN_OK;
}
