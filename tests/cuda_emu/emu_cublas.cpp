/* emu_cublas.cpp — the cuBLAS calls the library makes, for the emulator: handles with a stream
 * and a math mode, SGEMM (strided-batched too) and SGEMV on OpenBLAS, each operand checked to
 * lie wholly in device memory, TF32 math mode rounding the GEMM operands to TF32 first, and
 * calls on a capturing stream recorded for the graph. Test infrastructure, as the rest of
 * cuda_emu. */
#include "emu_internal.h"

#include <cublas_v2.h>

#include <cblas.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <initializer_list>
#include <vector>

struct cublasContext {
    cublasMath_t mode;
    cudaStream_t stream;
};

using namespace cnn_emu;

extern "C" {

const char *cublasGetStatusString(cublasStatus_t s)
{
    switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    }
    return "CUBLAS_STATUS_UNKNOWN";
}

cublasStatus_t cublasCreate(cublasHandle_t *h)
{
    if (!h) return CUBLAS_STATUS_INVALID_VALUE;
    if (!device_count()) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (injected_alloc_failure()) return CUBLAS_STATUS_ALLOC_FAILED; /* its workspace */
    *h = new cublasContext{CUBLAS_DEFAULT_MATH, nullptr};
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy(cublasHandle_t h)
{
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    delete h;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s)
{
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    h->stream = s;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t mode)
{
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (mode > CUBLAS_TF32_TENSOR_OP_MATH) return CUBLAS_STATUS_INVALID_VALUE;
    h->mode = mode;
    return CUBLAS_STATUS_SUCCESS;
}

} /* extern "C" */

/* v with its `drop` lowest mantissa bits rounded away, to nearest even (inf and NaN kept). */
static float round_mantissa(float v, int drop)
{
    uint32_t u, half = (1u << (drop - 1)) - 1u, mask = (1u << drop) - 1u;
    memcpy(&u, &v, sizeof u);
    if ((u & 0x7f800000u) != 0x7f800000u) u = (u + half + ((u >> drop) & 1u)) & ~mask;
    memcpy(&v, &u, sizeof v);
    return v;
}

float cnn_emu::to_tf32(float v) { return round_mantissa(v, 13); }
float cnn_emu::to_bf16(float v) { return round_mantissa(v, 16); }

namespace {

/* A column-major (rows, cols) operand with leading dimension ld, checked to lie in device
 * memory, rounded to TF32 into tmp when asked. */
bool operand(const float *p, int rows, int cols, int ld, bool tf32, std::vector<float> &tmp,
             const float **out)
{
    if (rows == 0 || cols == 0) {
        *out = p;
        return true;
    }
    size_t span = ((size_t)ld * (size_t)(cols - 1) + (size_t)rows) * sizeof(float);
    if (memory_kind(p, span) != MEM_DEVICE) return false;
    *out = p;
    if (tf32) {
        tmp.assign(p, p + span / sizeof(float));
        for (float &v : tmp) v = to_tf32(v);
        *out = tmp.data();
    }
    return true;
}

/* An operand on another device than the one h's stream runs on (checked when called, not again
 * when a graph replays the call). */
bool foreign(cublasHandle_t h, const char *fn, std::initializer_list<const void *> ps)
{
    if (replaying) return false;
    for (const void *p : ps)
        if (foreign_device_memory(fn, p, stream_device(h->stream))) return true;
    return false;
}

} /* namespace */

extern "C" cublasStatus_t cublasSgemm(cublasHandle_t h, cublasOperation_t ta,
                                      cublasOperation_t tb, int m, int n, int k,
                                      const float *alpha, const float *a, int lda, const float *b,
                                      int ldb, const float *beta, float *c, int ldc)
{
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    count_call("cublasSgemm");
    const bool at = ta != CUBLAS_OP_N, bt = tb != CUBLAS_OP_N;
    const int ar = at ? k : m, ac = at ? m : k, br = bt ? n : k, bc = bt ? k : n;
    if (m < 0 || n < 0 || k < 0 || !alpha || !beta || lda < (ar > 1 ? ar : 1) ||
        ldb < (br > 1 ? br : 1) || ldc < (m > 1 ? m : 1))
        return CUBLAS_STATUS_INVALID_VALUE;
    if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
    if (deferring(h->stream)) {
        /* Host scalars and the math mode are read at capture, as cuBLAS does. */
        const float al = *alpha, be = *beta;
        const cublasMath_t mode = h->mode;
        int d = defer(h->stream, [=] {
            cublasContext now{mode, nullptr};
            (void)cublasSgemm(&now, ta, tb, m, n, k, &al, a, lda, b, ldb, &be, c, ldc);
        });
        if (d) return d > 0 ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_EXECUTION_FAILED;
    }
    const bool tf32 = h->mode == CUBLAS_TF32_TENSOR_OP_MATH;
    std::vector<float> ta32, tb32;
    const float *pa, *pb;
    float *pc = c;
    if (!operand(a, ar, ac, lda, tf32, ta32, &pa) || !operand(b, br, bc, ldb, tf32, tb32, &pb) ||
        memory_kind(pc, ((size_t)ldc * (size_t)(n - 1) + (size_t)m) * sizeof(float)) !=
            MEM_DEVICE) {
        report(cudaErrorIllegalAddress, "cublasSgemm: an operand is not (wholly) in device "
               "memory (m %d, n %d, k %d, lda %d, ldb %d, ldc %d)", m, n, k, lda, ldb, ldc);
        return CUBLAS_STATUS_EXECUTION_FAILED;
    }
    if (foreign(h, "cublasSgemm", {a, b, c})) return CUBLAS_STATUS_EXECUTION_FAILED;
    if (no_compute()) return CUBLAS_STATUS_SUCCESS;
    if (k == 0) {
        for (int j = 0; j < n; j++)
            for (int i = 0; i < m; i++) {
                float &v = pc[(size_t)j * ldc + i];
                v = *beta == 0.0f ? 0.0f : *beta * v;
            }
        return CUBLAS_STATUS_SUCCESS;
    }
    cblas_sgemm(CblasColMajor, at ? CblasTrans : CblasNoTrans, bt ? CblasTrans : CblasNoTrans, m,
                n, k, *alpha, pa, lda, pb, ldb, *beta, pc, ldc);
    return CUBLAS_STATUS_SUCCESS;
}

extern "C" cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t h, cublasOperation_t ta,
                                                    cublasOperation_t tb, int m, int n, int k,
                                                    const float *alpha, const float *a, int lda,
                                                    long long stride_a, const float *b, int ldb,
                                                    long long stride_b, const float *beta,
                                                    float *c, int ldc, long long stride_c,
                                                    int batch)
{
    if (batch < 0) return CUBLAS_STATUS_INVALID_VALUE;
    for (int i = 0; i < batch; i++) {
        cublasStatus_t s = cublasSgemm(h, ta, tb, m, n, k, alpha, a + i * stride_a, lda,
                                       b + i * stride_b, ldb, beta, c + i * stride_c, ldc);
        if (s != CUBLAS_STATUS_SUCCESS) return s;
    }
    return CUBLAS_STATUS_SUCCESS;
}

extern "C" cublasStatus_t cublasSgemv(cublasHandle_t h, cublasOperation_t t, int m, int n,
                                      const float *alpha, const float *a, int lda, const float *x,
                                      int incx, const float *beta, float *y, int incy)
{
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    count_call("cublasSgemv");
    if (m < 0 || n < 0 || !alpha || !beta || lda < (m > 1 ? m : 1) || incx == 0 || incy == 0)
        return CUBLAS_STATUS_INVALID_VALUE;
    const int xl = t == CUBLAS_OP_N ? n : m, yl = t == CUBLAS_OP_N ? m : n;
    if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
    if (deferring(h->stream)) {
        const float al = *alpha, be = *beta;
        const cublasMath_t mode = h->mode;
        int d = defer(h->stream, [=] {
            cublasContext now{mode, nullptr};
            (void)cublasSgemv(&now, t, m, n, &al, a, lda, x, incx, &be, y, incy);
        });
        if (d) return d > 0 ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_EXECUTION_FAILED;
    }
    std::vector<float> unused;
    const float *pa;
    const size_t xs = ((size_t)(xl - 1) * (size_t)abs(incx) + 1) * sizeof(float);
    const size_t ys = ((size_t)(yl - 1) * (size_t)abs(incy) + 1) * sizeof(float);
    if (!operand(a, m, n, lda, false, unused, &pa) || memory_kind(x, xs) != MEM_DEVICE ||
        memory_kind(y, ys) != MEM_DEVICE) {
        report(cudaErrorIllegalAddress, "cublasSgemv: an operand is not (wholly) in device "
               "memory (m %d, n %d, lda %d)", m, n, lda);
        return CUBLAS_STATUS_EXECUTION_FAILED;
    }
    if (foreign(h, "cublasSgemv", {a, x, y})) return CUBLAS_STATUS_EXECUTION_FAILED;
    if (no_compute()) return CUBLAS_STATUS_SUCCESS;
    /* cuBLAS GEMV ignores TF32 mode: exact FP32, as cblas. */
    cblas_sgemv(CblasColMajor, t == CUBLAS_OP_N ? CblasNoTrans : CblasTrans, m, n, *alpha, pa,
                lda, x, incx, *beta, y, incy);
    return CUBLAS_STATUS_SUCCESS;
}
