/* loss.cu — CUDA kernels of layers/loss.c: softmax / log_softmax along one dim, forward and
 * backward, and cross-entropy of logits against device I64 labels. Same formulas as the CPU
 * loops (max subtracted first, sums in double); row reductions in a fixed tree order, so results
 * are reproducible. Nothing is read back to the host. Launchers and kernels only. */
#include "cuda_check.h"
#include "launch.cuh"

#include <math.h>

/* Threads per row when the softmax dim is innermost: one block reduces one row. */
#define ROW_THREADS 128

static unsigned row_grid_for(int64_t rows) { return (unsigned)(rows < 65535 ? rows : 65535); }

/* Reduction of v over the block (blockDim.x == ROW_THREADS) in a fixed tree order. */
template <typename T, bool IS_MAX>
__device__ T block_reduce(T v, T *sh)
{
    sh[threadIdx.x] = v;
    __syncthreads();
    for (int stride = ROW_THREADS / 2; stride > 0; stride >>= 1) {
        if ((int)threadIdx.x < stride) {
            T o = sh[threadIdx.x + stride];
            sh[threadIdx.x] = IS_MAX ? fmax(sh[threadIdx.x], o) : sh[threadIdx.x] + o;
        }
        __syncthreads();
    }
    T r = sh[0];
    __syncthreads();
    return r;
}

/* ---- softmax / log_softmax --------------------------------------------------------------------
 * Two layouts: inner == 1 (the dim is innermost, e.g. logits (N, K)): a block per row, its
 * threads striding along k; inner > 1 (e.g. channels of (N, C, H, W)): a thread per row, and
 * neighbouring threads read neighbouring addresses. */

// x, y: (rows, k); block b handles rows b, b + gridDim.x, ...
static __global__ void softmax_rows_kernel(const float *x, float *y, int64_t rows, int64_t k,
                                           bool log)
{
    __shared__ float shf[ROW_THREADS];
    __shared__ double shd[ROW_THREADS];
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const float *xr = x + r * k;
        float *yr = y + r * k;
        float m = -INFINITY;
        for (int64_t j = threadIdx.x; j < k; j += ROW_THREADS) m = fmaxf(m, xr[j]);
        m = block_reduce<float, true>(m, shf);
        double s = 0;
        for (int64_t j = threadIdx.x; j < k; j += ROW_THREADS) s += exp((double)(xr[j] - m));
        s = block_reduce<double, false>(s, shd);
        if (log) {
            float ls = (float)::log(s); /* (x - m) - log(s), as the CPU's softmax_cpu */
            for (int64_t j = threadIdx.x; j < k; j += ROW_THREADS) yr[j] = (xr[j] - m) - ls;
        } else {
            float inv = (float)(1.0 / s);
            for (int64_t j = threadIdx.x; j < k; j += ROW_THREADS)
                yr[j] = __fmul_rn(expf(xr[j] - m), inv);
        }
    }
}

// x, y: (outer, k, inner); thread t handles row t = (o, i), stepping by inner along k
static __global__ void softmax_strided_kernel(const float *x, float *y, int64_t outer, int64_t k,
                                              int64_t inner, bool log)
{
    int64_t rows = outer * inner;
    for (int64_t r = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; r < rows;
         r += (int64_t)gridDim.x * blockDim.x) {
        int64_t base = (r / inner) * k * inner + r % inner;
        const float *xr = x + base;
        float *yr = y + base;
        float m = -INFINITY;
        for (int64_t j = 0; j < k; j++) m = fmaxf(m, xr[j * inner]);
        double s = 0;
        for (int64_t j = 0; j < k; j++) s += exp((double)(xr[j * inner] - m));
        if (log) {
            float ls = (float)::log(s); /* (x - m) - log(s), as the CPU's softmax_cpu */
            for (int64_t j = 0; j < k; j++) yr[j * inner] = (xr[j * inner] - m) - ls;
        } else {
            float inv = (float)(1.0 / s);
            for (int64_t j = 0; j < k; j++) yr[j * inner] = __fmul_rn(expf(xr[j * inner] - m), inv);
        }
    }
}

/* softmax: dx = y * (dy - sum_j dy_j y_j); log_softmax: dx = dy - exp(y) * sum_j dy_j. */
// y, dy, dx: (rows, k)
static __global__ void softmax_backward_rows_kernel(const float *y, const float *dy, float *dx,
                                                    int64_t rows, int64_t k, bool log)
{
    __shared__ double shd[ROW_THREADS];
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const float *yr = y + r * k, *dyr = dy + r * k;
        float *dxr = dx + r * k;
        double s = 0;
        for (int64_t j = threadIdx.x; j < k; j += ROW_THREADS)
            s += log ? (double)dyr[j] : (double)dyr[j] * yr[j];
        float sf = (float)block_reduce<double, false>(s, shd);
        for (int64_t j = threadIdx.x; j < k; j += ROW_THREADS)
            dxr[j] = log ? __fsub_rn(dyr[j], __fmul_rn(expf(yr[j]), sf))
                         : __fmul_rn(yr[j], __fsub_rn(dyr[j], sf));
    }
}

// y, dy, dx: (outer, k, inner)
static __global__ void softmax_backward_strided_kernel(const float *y, const float *dy, float *dx,
                                                       int64_t outer, int64_t k, int64_t inner,
                                                       bool log)
{
    int64_t rows = outer * inner;
    for (int64_t r = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; r < rows;
         r += (int64_t)gridDim.x * blockDim.x) {
        int64_t base = (r / inner) * k * inner + r % inner;
        const float *yr = y + base, *dyr = dy + base;
        float *dxr = dx + base;
        double s = 0;
        for (int64_t j = 0; j < k; j++)
            s += log ? (double)dyr[j * inner] : (double)dyr[j * inner] * yr[j * inner];
        float sf = (float)s;
        for (int64_t j = 0; j < k; j++) {
            int64_t o = j * inner;
            dxr[o] = log ? __fsub_rn(dyr[o], __fmul_rn(expf(yr[o]), sf))
                         : __fmul_rn(yr[o], __fsub_rn(dyr[o], sf));
        }
    }
}

extern "C" cnn_status cnn_cuda_softmax_forward(cnn_context *ctx, const float *x, float *y,
                                               int64_t outer, int64_t k, int64_t inner, bool log)
{
    int64_t rows = outer * inner;
    if (rows <= 0 || k <= 0) return CNN_OK;
    cudaStream_t s;
    CNN_TRY(cnn_cuda_enter(ctx, log ? "log_softmax" : "softmax", &s));
    if (inner == 1) {
        softmax_rows_kernel<<<row_grid_for(rows), ROW_THREADS, 0, s>>>(x, y, rows, k, log);
        CNN_CUDA_LAUNCH_CHECK(softmax_rows_kernel);
    } else {
        softmax_strided_kernel<<<grid_for(rows), THREADS, 0, s>>>(x, y, outer, k, inner, log);
        CNN_CUDA_LAUNCH_CHECK(softmax_strided_kernel);
    }
    return CNN_OK;
}

extern "C" cnn_status cnn_cuda_softmax_backward(cnn_context *ctx, const float *y, const float *dy,
                                                float *dx, int64_t outer, int64_t k,
                                                int64_t inner, bool log)
{
    int64_t rows = outer * inner;
    if (rows <= 0 || k <= 0) return CNN_OK;
    cudaStream_t s;
    CNN_TRY(cnn_cuda_enter(ctx, log ? "log_softmax backward" : "softmax backward", &s));
    if (inner == 1) {
        softmax_backward_rows_kernel<<<row_grid_for(rows), ROW_THREADS, 0, s>>>(y, dy, dx, rows,
                                                                                 k, log);
        CNN_CUDA_LAUNCH_CHECK(softmax_backward_rows_kernel);
    } else {
        softmax_backward_strided_kernel<<<grid_for(rows), THREADS, 0, s>>>(y, dy, dx, outer, k,
                                                                           inner, log);
        CNN_CUDA_LAUNCH_CHECK(softmax_backward_strided_kernel);
    }
    return CNN_OK;
}

/* ---- cross-entropy -----------------------------------------------------------------------------
 * Per sample: loss = (1 - ls) (lse - x_label) + ls (lse - mean_k x_k), on logits shifted by
 * their max, as cross_entropy_cpu; 0 for a sample whose label is `ignore`, which the mean
 * leaves out. A label outside [0, K) makes its sample's loss NaN (so the batch loss is NaN),
 * its gradient row has no label term, and it is reported in *bad (the context's slot, see
 * cnn_cuda_bad_label_slot) as (sample << 32 | label as int32); the lowest sample wins.
 * logits, prob: (n, k); labels, loss: (n) */
static __device__ void report_bad_label(unsigned long long *bad, int64_t r, int64_t label)
{
    const int64_t l = label < INT32_MIN ? INT32_MIN : label > INT32_MAX ? INT32_MAX : label;
    const unsigned long long sample = r < 0xffffffffll ? (unsigned long long)r : 0xffffffffull;
    atomicMin(bad, sample << 32 | (unsigned long long)(uint32_t)(int32_t)l);
}

static __global__ void cross_entropy_kernel(const float *logits, const int64_t *labels, float *prob,
                                            float *loss, int64_t n, int64_t k, float ls,
                                            int64_t ignore, unsigned long long *bad)
{
    __shared__ float shf[ROW_THREADS];
    __shared__ double shd[ROW_THREADS];
    for (int64_t r = blockIdx.x; r < n; r += gridDim.x) {
        const float *x = logits + r * k;
        float *pr = prob + r * k;
        float m = -INFINITY;
        for (int64_t j = threadIdx.x; j < k; j += ROW_THREADS) m = fmaxf(m, x[j]);
        m = block_reduce<float, true>(m, shf);
        double s = 0, sum_x = 0;
        for (int64_t j = threadIdx.x; j < k; j += ROW_THREADS) {
            s += exp((double)(x[j] - m));
            sum_x += (double)x[j] - m;
        }
        s = block_reduce<double, false>(s, shd);
        sum_x = block_reduce<double, false>(sum_x, shd);
        double lse = ::log(s);
        for (int64_t j = threadIdx.x; j < k; j += ROW_THREADS)
            pr[j] = (float)exp((double)(x[j] - m) - lse);
        if (threadIdx.x == 0) {
            int64_t label = labels[r];
            if (label == ignore) {
                loss[r] = 0.0f;
            } else if (label < 0 || label >= k) {
                loss[r] = NAN;
                report_bad_label(bad, r, label);
            } else {
                double nll = lse - ((double)x[label] - m);
                /* as the CPU: no smoothing term unless asked (-inf logits make it +inf) */
                loss[r] = (float)(ls != 0.0f ? (1.0 - ls) * nll + (double)ls * (lse - sum_x / k)
                                             : nll);
            }
        }
    }
}

/* The batch mean over the samples not ignored, in a fixed order: *loss = sum / count (NaN when
 * every sample is ignored, as PyTorch), *count kept for backward. One block. */
// per_sample, labels: (n)
static __global__ void cross_entropy_mean_kernel(const float *per_sample, const int64_t *labels,
                                                 int64_t n, int64_t ignore, float *loss,
                                                 float *count)
{
    __shared__ double sh[ROW_THREADS];
    double s = 0, c = 0;
    for (int64_t i = threadIdx.x; i < n; i += ROW_THREADS) {
        s += per_sample[i];
        c += labels[i] != ignore;
    }
    s = block_reduce<double, false>(s, sh);
    c = block_reduce<double, false>(c, sh);
    if (threadIdx.x == 0) {
        *loss = (float)(s / c);
        *count = (float)c;
    }
}

// prob, dx: (n, k); labels: (n); g: (1), the loss gradient; count: (1), samples not ignored
static __global__ void cross_entropy_backward_kernel(const float *prob, const int64_t *labels,
                                                     const float *g, const float *count, float *dx,
                                                     int64_t n, int64_t k, float ls, int64_t ignore)
{
    /* The host's float operations, one rounding each: scale = g / count, off = ls / K. */
    float scale = __fdiv_rn(g[0], count[0]), off = __fdiv_rn(ls, (float)k);
    float hit = __fsub_rn(1.0f, ls);
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n * k;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i / k, j = i % k;
        if (labels[r] == ignore) {
            dx[i] = 0.0f;
            continue;
        }
        float v = __fmul_rn(scale, __fsub_rn(prob[i], off));
        if (labels[r] == j) v = __fsub_rn(v, __fmul_rn(scale, hit));
        dx[i] = v;
    }
}

extern "C" cnn_status cnn_cuda_cross_entropy_forward(cnn_context *ctx, const float *logits,
                                                     const int64_t *labels, float *prob,
                                                     float *per_sample, float *loss, float *count,
                                                     int64_t n, int64_t k, float label_smoothing,
                                                     int64_t ignore_index)
{
    cudaStream_t s;
    CNN_TRY(cnn_cuda_enter(ctx, "cross_entropy", &s));
    if (n > 0) {
        unsigned long long *bad = NULL;
        CNN_TRY(cnn_cuda_bad_label_slot(ctx, k, &bad));
        cross_entropy_kernel<<<row_grid_for(n), ROW_THREADS, 0, s>>>(
            logits, labels, prob, per_sample, n, k, label_smoothing, ignore_index, bad);
        CNN_CUDA_LAUNCH_CHECK(cross_entropy_kernel);
    }
    /* An empty batch: 0 / 0, NaN, as PyTorch's mean over nothing. */
    cross_entropy_mean_kernel<<<1, ROW_THREADS, 0, s>>>(per_sample, labels, n, ignore_index, loss,
                                                        count);
    CNN_CUDA_LAUNCH_CHECK(cross_entropy_mean_kernel);
    return CNN_OK;
}

extern "C" cnn_status cnn_cuda_cross_entropy_backward(cnn_context *ctx, const float *prob,
                                                      const int64_t *labels, const float *g,
                                                      const float *count, float *dx, int64_t n,
                                                      int64_t k, float label_smoothing,
                                                      int64_t ignore_index)
{
    if (n <= 0 || k <= 0) return CNN_OK;
    cudaStream_t s;
    CNN_TRY(cnn_cuda_enter(ctx, "cross_entropy backward", &s));
    cross_entropy_backward_kernel<<<grid_for(n * k), THREADS, 0, s>>>(
        prob, labels, g, count, dx, n, k, label_smoothing, ignore_index);
    CNN_CUDA_LAUNCH_CHECK(cross_entropy_backward_kernel);
    return CNN_OK;
}
