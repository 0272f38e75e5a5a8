/* batchnorm.cu — hand-written CUDA batch norm: per-channel statistics (one block per channel,
 * two passes accumulated in double, as the CPU reference), running-stat update, forward and
 * backward. Statistics use layers/batchnorm.c's (4, C) layout. No atomics: results do not
 * depend on scheduling. Launchers only; layers/batchnorm.c checks the arguments. */
#include "cuda_check.h"

#define BLOCK 512

enum { MEAN_HI = 0, MEAN_LO = 1, INVSTD = 2, WEIGHT = 3 };

/* Sum of v over the block; every thread gets the result. */
static __device__ double block_sum(double v)
{
    __shared__ double part[BLOCK];
    __syncthreads(); /* part may still be read by the previous call's threads */
    part[threadIdx.x] = v;
    __syncthreads();
    for (int s = BLOCK / 2; s > 0; s >>= 1) {
        if ((int)threadIdx.x < s) part[threadIdx.x] += part[threadIdx.x + s];
        __syncthreads();
    }
    return part[0];
}

/* Walks k = start, start + step, ... over the elements of a (rows, inner) layout, keeping the
 * row and the position in it up to date without a division per step (a 64-bit division costs
 * the GPU more than the load it serves). The order of the elements is the order of k. */
struct RowWalk {
    int64_t row, j, drow, dj, inner;
    /* An empty row (inner 0) has no elements: row starts past any count. */
    __device__ RowWalk(int64_t start, int64_t step, int64_t inner_)
        : row(inner_ > 0 ? start / inner_ : INT64_MAX), j(inner_ > 0 ? start % inner_ : 0),
          drow(inner_ > 0 ? step / inner_ : 0), dj(inner_ > 0 ? step % inner_ : 0), inner(inner_)
    {
    }
    /* Advances by step; returns whether the row went past one more boundary than drow. */
    __device__ bool next()
    {
        row += drow;
        j += dj;
        if (j < inner) return false;
        j -= inner;
        row++;
        return true;
    }
};

/* Element (sample i, position j) of channel ch. */
static __device__ int64_t bn_at(int64_t i, int64_t j, int64_t ch, int64_t c, int64_t inner)
{
    return (i * c + ch) * inner + j;
}

// x: (N, C, inner); stats: (4, C); rm, rv: (C) or NULL. One block per channel.
__global__ void bn_train_stats_kernel(const float *x, int64_t n, int64_t c, int64_t inner,
                                      float momentum, float eps, float *rm, float *rv,
                                      float *stats)
{
    int64_t ch = blockIdx.x, m = n * inner;
    double s = 0;
    for (RowWalk k(threadIdx.x, BLOCK, inner); k.row < n; k.next())
        s += x[bn_at(k.row, k.j, ch, c, inner)];
    double mu = block_sum(s) / (double)m;
    double q = 0;
    for (RowWalk k(threadIdx.x, BLOCK, inner); k.row < n; k.next()) {
        double d = x[bn_at(k.row, k.j, ch, c, inner)] - mu;
        q += d * d;
    }
    double var = block_sum(q) / (double)m;
    if (threadIdx.x == 0) {
        float hi = (float)mu;
        stats[MEAN_HI * c + ch] = hi;
        stats[MEAN_LO * c + ch] = (float)(mu - (double)hi);
        stats[INVSTD * c + ch] = (float)(1.0 / sqrt(var + (double)eps));
        if (rm) {
            double unbias = (double)m / (double)(m - 1);
            rm[ch] = (float)((1.0 - momentum) * rm[ch] + (double)momentum * mu);
            rv[ch] = (float)((1.0 - momentum) * rv[ch] + (double)momentum * var * unbias);
        }
    }
}

// rm, rv: (C) -> stats rows 0..2: (4, C)
__global__ void bn_eval_stats_kernel(const float *rm, const float *rv, int64_t c, float eps,
                                     float *stats)
{
    for (int64_t ch = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; ch < c;
         ch += (int64_t)gridDim.x * blockDim.x) {
        stats[MEAN_HI * c + ch] = rm[ch];
        stats[MEAN_LO * c + ch] = 0.0f;
        stats[INVSTD * c + ch] = (float)(1.0 / sqrt((double)rv[ch] + (double)eps));
    }
}

// x, y: (N, C, inner); stats: (4, C); bias: (C) or NULL
__global__ void bn_forward_kernel(const float *x, const float *stats, const float *bias,
                                  int64_t n, int64_t c, int64_t inner, float *y)
{
    const int64_t total = n * c * inner, start = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    const int64_t step = (int64_t)gridDim.x * blockDim.x;
    /* The plane (i * c + ch) of e advances by k.drow or one more: its channel likewise. */
    RowWalk k(start, step, inner);
    int64_t ch = k.row % c;
    const int64_t dch = k.drow % c;
    for (int64_t e = start; e < total; e += step) {
        float hi = stats[MEAN_HI * c + ch], lo = stats[MEAN_LO * c + ch];
        float a = __fmul_rn(stats[INVSTD * c + ch], stats[WEIGHT * c + ch]);
        float b = bias ? bias[ch] : 0.0f;
        /* Rounded step by step like the CPU code (no fused multiply-add). */
        y[e] = __fadd_rn(__fmul_rn((x[e] - hi) - lo, a), b);
        ch += dch + (k.next() ? 1 : 0);
        if (ch >= c) ch -= c;
    }
}

/* The CPU's bn_backward_kernel, one block per channel: dbias = sum dy, dweight = sum dy * xhat;
 * dx = w * invstd * (dy - mean(dy) - xhat * mean(dy * xhat)) in training, w * invstd * dy in
 * eval. x, dy, dx: (N, C, inner); stats: (4, C); dw, db: (C); dx, dw, db may be NULL */
__global__ void bn_backward_kernel(const float *x, const float *dy, const float *stats,
                                   int64_t n, int64_t c, int64_t inner, bool training,
                                   float *dx, float *dw, float *db)
{
    int64_t ch = blockIdx.x, m = n * inner;
    float hi = stats[MEAN_HI * c + ch], lo = stats[MEAN_LO * c + ch];
    float is = stats[INVSTD * c + ch], w = stats[WEIGHT * c + ch];
    double sdy = 0, sdyx = 0;
    for (RowWalk k(threadIdx.x, BLOCK, inner); k.row < n; k.next()) {
        int64_t e = bn_at(k.row, k.j, ch, c, inner);
        sdy += dy[e];
        sdyx += (double)dy[e] * (double)__fmul_rn((x[e] - hi) - lo, is);
    }
    sdy = block_sum(sdy);
    sdyx = block_sum(sdyx);
    if (threadIdx.x == 0) {
        if (db) db[ch] = (float)sdy;
        if (dw) dw[ch] = (float)sdyx;
    }
    if (!dx) return;
    float kk = __fmul_rn(w, is);
    float mdy = training ? (float)(sdy / (double)m) : 0.0f;
    float mdyx = training ? (float)(sdyx / (double)m) : 0.0f;
    for (RowWalk k(threadIdx.x, BLOCK, inner); k.row < n; k.next()) {
        int64_t e = bn_at(k.row, k.j, ch, c, inner);
        float xhat_m = __fmul_rn(__fmul_rn((x[e] - hi) - lo, is), mdyx);
        dx[e] = __fmul_rn(kk, (dy[e] - mdy) - xhat_m);
    }
}

/* ---- launchers ------------------------------------------------------------------------------ */
static unsigned grid_for(int64_t n, int threads)
{
    int64_t blocks = (n + threads - 1) / threads;
    return (unsigned)(blocks < 65535 ? blocks : 65535);
}

extern "C" cnn_status cnn_cuda_batch_norm_stats(cnn_context *ctx, const float *x, int64_t n,
                                                int64_t c, int64_t inner, bool training,
                                                float momentum, float eps, float *rm, float *rv,
                                                float *stats)
{
    if (c <= 0) return CNN_OK;
    CNN_CHECK(c <= INT32_MAX, CNN_ERR_UNSUPPORTED, "batch_norm: %lld channels is too many",
              (long long)c);
    cudaStream_t s;
    CNN_TRY(cnn_cuda_enter(ctx, "batch_norm", &s));
    if (training) {
        bn_train_stats_kernel<<<(unsigned)c, BLOCK, 0, s>>>(x, n, c, inner, momentum, eps, rm, rv,
                                                            stats);
        CNN_CUDA_LAUNCH_CHECK(bn_train_stats_kernel);
    } else {
        bn_eval_stats_kernel<<<grid_for(c, 256), 256, 0, s>>>(rm, rv, c, eps, stats);
        CNN_CUDA_LAUNCH_CHECK(bn_eval_stats_kernel);
    }
    return CNN_OK;
}

extern "C" cnn_status cnn_cuda_batch_norm_forward(cnn_context *ctx, const float *x,
                                                  const float *stats, const float *bias,
                                                  int64_t n, int64_t c, int64_t inner, float *y)
{
    int64_t total = n * c * inner;
    if (total <= 0) return CNN_OK;
    cudaStream_t s;
    CNN_TRY(cnn_cuda_enter(ctx, "batch_norm", &s));
    /* Four elements a thread at least: the walk's one division per thread is spread over
     * them (and every test runs the walk's steps, not only its start). */
    bn_forward_kernel<<<grid_for((total + 3) / 4, 256), 256, 0, s>>>(x, stats, bias, n, c, inner,
                                                                     y);
    CNN_CUDA_LAUNCH_CHECK(bn_forward_kernel);
    return CNN_OK;
}

extern "C" cnn_status cnn_cuda_batch_norm_backward(cnn_context *ctx, const float *x,
                                                   const float *dy, const float *stats,
                                                   int64_t n, int64_t c, int64_t inner,
                                                   bool training, float *dx, float *dw, float *db)
{
    if (c <= 0) return CNN_OK;
    CNN_CHECK(c <= INT32_MAX, CNN_ERR_UNSUPPORTED, "batch_norm backward: %lld channels is too many",
              (long long)c);
    cudaStream_t s;
    CNN_TRY(cnn_cuda_enter(ctx, "batch_norm backward", &s));
    bn_backward_kernel<<<(unsigned)c, BLOCK, 0, s>>>(x, dy, stats, n, c, inner, training, dx, dw,
                                                     db);
    CNN_CUDA_LAUNCH_CHECK(bn_backward_kernel);
    return CNN_OK;
}

/* ---- folding an eval-mode batch norm into the conv before it ------------------------------- */
/* One block per output channel k: s = weight / sqrt(rv + eps) in double, w_out (k, per) = w * s,
 * b_out = fma(b - rm, s, bias): the CPU's operations (layers/batchnorm.c), so the same bits. */
__global__ void bn_fold_kernel(const float *w, const float *b, const float *rm, const float *rv,
                               const float *weight, const float *bias, double eps, int64_t k,
                               int64_t per, float *w_out, float *b_out)
{
    for (int64_t row = blockIdx.x; row < k; row += gridDim.x) {
        const double s = (weight ? (double)weight[row] : 1.0) / sqrt((double)rv[row] + eps);
        for (int64_t j = threadIdx.x; j < per; j += blockDim.x)
            w_out[row * per + j] = (float)((double)w[row * per + j] * s);
        if (threadIdx.x == 0)
            b_out[row] = (float)fma((b ? (double)b[row] : 0.0) - (double)rm[row], s,
                                    bias ? (double)bias[row] : 0.0);
    }
}

extern "C" cnn_status cnn_cuda_batch_norm_fold(cnn_context *ctx, const float *w, const float *b,
                                               const float *rm, const float *rv,
                                               const float *weight, const float *bias, double eps,
                                               int64_t k, int64_t per, float *w_out, float *b_out)
{
    if (k <= 0) return CNN_OK;
    cudaStream_t s;
    CNN_TRY(cnn_cuda_enter(ctx, "batch_norm_fold", &s));
    const unsigned blocks = (unsigned)(k < 65535 * 8 ? k : 65535 * 8);
    bn_fold_kernel<<<blocks, 128, 0, s>>>(w, b, rm, rv, weight, bias, eps, k, per, w_out, b_out);
    CNN_CUDA_LAUNCH_CHECK(bn_fold_kernel);
    return CNN_OK;
}
