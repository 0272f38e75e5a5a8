/* batchnorm.cu — hand-written CUDA batch norm: per-channel statistics (two passes accumulated
 * in double, as the CPU reference), running-stat update, forward and backward. Statistics use
 * layers/batchnorm.c's (4, C) layout. A channel's sums are split over several blocks (its
 * "splits", a function of the shape alone) whose partial sums are added in a fixed order: no
 * atomics, so results do not depend on scheduling, and a layer of few channels still fills the
 * GPU. Launchers only; layers/batchnorm.c checks the arguments. */
#include "cuda_check.h"

#define BLOCK 256

enum { MEAN_HI = 0, MEAN_LO = 1, INVSTD = 2, WEIGHT = 3 };

/* Splits per channel: enough blocks in all (TARGET_BLOCKS) to keep every SM of a large GPU
 * busy, none with fewer than MIN_CHUNK elements, and at most MAX_SPLITS. */
#define TARGET_BLOCKS 1024
#define MIN_CHUNK 4096
#define MAX_SPLITS 256

static int64_t bn_splits(int64_t m, int64_t c)
{
    int64_t by_work = (m + MIN_CHUNK - 1) / MIN_CHUNK, by_fill = (TARGET_BLOCKS + c - 1) / c;
    int64_t s = by_work < by_fill ? by_work : by_fill;
    return s < 1 ? 1 : s > MAX_SPLITS ? MAX_SPLITS : s;
}

/* Sum of v over the block, in a fixed tree order; every thread gets the result. */
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

/* The channel's total of its splits' partial sums part[0, splits), by the whole block. */
static __device__ double channel_total(const double *part, int64_t splits)
{
    double v = 0;
    for (int64_t i = threadIdx.x; i < splits; i += BLOCK) v += part[i];
    return block_sum(v);
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

/* The elements of channel blockIdx.x that split blockIdx.y of gridDim.y sums: positions
 * [lo, hi) of the channel's m = n * inner values, in (sample, position) order; this thread
 * visits lo + threadIdx.x, then every BLOCK-th. */
struct ChannelPart {
    int64_t ch, lo, hi;
    __device__ ChannelPart(int64_t m)
    {
        const int64_t per = (m + gridDim.y - 1) / gridDim.y;
        ch = blockIdx.x;
        lo = per * blockIdx.y;
        hi = lo + per < m ? lo + per : m;
    }
};

/* Element (sample i, position j) of channel ch. */
static __device__ int64_t bn_at(int64_t i, int64_t j, int64_t ch, int64_t c, int64_t inner)
{
    return (i * c + ch) * inner + j;
}

/* First pass of the statistics: part[ch * splits + split] = the split's sum of x.
 * x: (N, C, inner); grid (C, splits) */
static __global__ void bn_sum_kernel(const float *x, int64_t n, int64_t c, int64_t inner,
                                     double *part)
{
    const ChannelPart cp(n * inner);
    double s = 0;
    RowWalk k(cp.lo + threadIdx.x, BLOCK, inner);
    for (int64_t t = cp.lo + threadIdx.x; t < cp.hi; t += BLOCK, k.next())
        s += x[bn_at(k.row, k.j, cp.ch, c, inner)];
    s = block_sum(s);
    if (threadIdx.x == 0) part[cp.ch * gridDim.y + blockIdx.y] = s;
}

/* Second pass: sq[ch * splits + split] = the split's sum of (x - mean)^2, the mean from the
 * first pass's partial sums. x: (N, C, inner); grid (C, splits) */
static __global__ void bn_sq_kernel(const float *x, int64_t n, int64_t c, int64_t inner,
                                    const double *sum, double *sq)
{
    const ChannelPart cp(n * inner);
    const double mu = channel_total(sum + cp.ch * gridDim.y, gridDim.y) / (double)(n * inner);
    double q = 0;
    RowWalk k(cp.lo + threadIdx.x, BLOCK, inner);
    for (int64_t t = cp.lo + threadIdx.x; t < cp.hi; t += BLOCK, k.next()) {
        double d = x[bn_at(k.row, k.j, cp.ch, c, inner)] - mu;
        q += d * d;
    }
    q = block_sum(q);
    if (threadIdx.x == 0) sq[cp.ch * gridDim.y + blockIdx.y] = q;
}

/* The statistics rows and the running-stat update from both passes' partial sums.
 * sum, sq: (C, splits); stats: (4, C); rm, rv: (C) or NULL. One block per channel. */
static __global__ void bn_stats_finish_kernel(const double *sum, const double *sq, int64_t splits,
                                              int64_t m, int64_t c, float momentum, float eps,
                                              float *rm, float *rv, float *stats)
{
    const int64_t ch = blockIdx.x;
    const double mu = channel_total(sum + ch * splits, splits) / (double)m;
    const double var = channel_total(sq + ch * splits, splits) / (double)m;
    if (threadIdx.x == 0) {
        float hi = (float)mu;
        stats[MEAN_HI * c + ch] = hi;
        stats[MEAN_LO * c + ch] = (float)(mu - (double)hi);
        /* PyTorch's InvStd: 0 when var and eps are both 0, as the CPU's bn_forward_cpu. */
        stats[INVSTD * c + ch] =
            var == 0 && eps == 0 ? 0.0f : (float)(1.0 / sqrt(var + (double)eps));
        if (rm) {
            double unbias = (double)m / (double)(m - 1);
            rm[ch] = (float)((1.0 - momentum) * rm[ch] + (double)momentum * mu);
            rv[ch] = (float)((1.0 - momentum) * rv[ch] + (double)momentum * var * unbias);
        }
    }
}

// rm, rv: (C) -> stats rows 0..2: (4, C)
static __global__ void bn_eval_stats_kernel(const float *rm, const float *rv, int64_t c, float eps,
                                            float *stats)
{
    for (int64_t ch = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; ch < c;
         ch += (int64_t)gridDim.x * blockDim.x) {
        stats[MEAN_HI * c + ch] = rm[ch];
        stats[MEAN_LO * c + ch] = 0.0f;
        stats[INVSTD * c + ch] = (float)(1.0 / sqrt((double)rv[ch] + (double)eps));
    }
}

/* The (x - mean) * invstd of the CPU code, rounded step by step (no fused multiply-add). */
static __device__ float bn_xhat(float x, const float *stats, int64_t c, int64_t ch)
{
    return __fmul_rn((x - stats[MEAN_HI * c + ch]) - stats[MEAN_LO * c + ch],
                     stats[INVSTD * c + ch]);
}

/* Runs body(e, ch) for the elements e of an (N, C, inner) tensor in a grid-stride loop, with
 * e's channel ch kept up to date without a division per element: the plane (i * c + ch) of e
 * advances by k.drow or one more, so its channel likewise. */
template <class F>
static __device__ void for_each_with_channel(int64_t n, int64_t c, int64_t inner, F body)
{
    const int64_t total = n * c * inner, start = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    const int64_t step = (int64_t)gridDim.x * blockDim.x;
    RowWalk k(start, step, inner);
    int64_t ch = k.row % c;
    const int64_t dch = k.drow % c;
    for (int64_t e = start; e < total; e += step) {
        body(e, ch);
        ch += dch + (k.next() ? 1 : 0);
        if (ch >= c) ch -= c;
    }
}

// x, y: (N, C, inner); stats: (4, C); bias: (C) or NULL
static __global__ void bn_forward_kernel(const float *x, const float *stats, const float *bias,
                                         int64_t n, int64_t c, int64_t inner, float *y)
{
    for_each_with_channel(n, c, inner, [&](int64_t e, int64_t ch) {
        /* Rounded step by step like the CPU code (no fused multiply-add). */
        float a = __fmul_rn(stats[INVSTD * c + ch], stats[WEIGHT * c + ch]);
        float b = bias ? bias[ch] : 0.0f;
        y[e] = __fadd_rn(__fmul_rn((x[e] - stats[MEAN_HI * c + ch]) - stats[MEAN_LO * c + ch], a),
                         b);
    });
}

/* The backward's sums, split like the statistics: part (2, C, splits) = each split's sum of dy
 * and of dy * xhat. x, dy: (N, C, inner); stats: (4, C); grid (C, splits) */
static __global__ void bn_backward_sums_kernel(const float *x, const float *dy, const float *stats,
                                               int64_t n, int64_t c, int64_t inner, double *part)
{
    const ChannelPart cp(n * inner);
    double sdy = 0, sdyx = 0;
    RowWalk k(cp.lo + threadIdx.x, BLOCK, inner);
    for (int64_t t = cp.lo + threadIdx.x; t < cp.hi; t += BLOCK, k.next()) {
        const int64_t e = bn_at(k.row, k.j, cp.ch, c, inner);
        sdy += dy[e];
        sdyx += (double)dy[e] * (double)bn_xhat(x[e], stats, c, cp.ch);
    }
    sdy = block_sum(sdy);
    sdyx = block_sum(sdyx);
    if (threadIdx.x == 0) {
        const int64_t at = cp.ch * gridDim.y + blockIdx.y;
        part[at] = sdy;
        part[c * gridDim.y + at] = sdyx;
    }
}

/* dbias = sum dy, dweight = sum dy * xhat, and the means dx needs (in training) into
 * means (2, C). part: (2, C, splits); dw, db: (C) or NULL. One block per channel. */
static __global__ void bn_backward_finish_kernel(const double *part, int64_t splits, int64_t m,
                                                 int64_t c, bool training, float *dw, float *db,
                                                 float *means)
{
    const int64_t ch = blockIdx.x;
    const double sdy = channel_total(part + ch * splits, splits);
    const double sdyx = channel_total(part + (c + ch) * splits, splits);
    if (threadIdx.x == 0) {
        if (db) db[ch] = (float)sdy;
        if (dw) dw[ch] = (float)sdyx;
        means[ch] = training ? (float)(sdy / (double)m) : 0.0f;
        means[c + ch] = training ? (float)(sdyx / (double)m) : 0.0f;
    }
}

/* The CPU's dx = w * invstd * (dy - mean(dy) - xhat * mean(dy * xhat)) in training,
 * w * invstd * dy in eval (means zero, and no xhat: a non-finite x must not make dx NaN).
 * x, dy, dx: (N, C, inner); stats: (4, C); means: (2, C) */
static __global__ void bn_backward_dx_kernel(const float *x, const float *dy, const float *stats,
                                             const float *means, int64_t n, int64_t c,
                                             int64_t inner, bool training, float *dx)
{
    for_each_with_channel(n, c, inner, [&](int64_t e, int64_t ch) {
        float kk = __fmul_rn(stats[WEIGHT * c + ch], stats[INVSTD * c + ch]);
        float xhat_m =
            training ? __fmul_rn(bn_xhat(x[e], stats, c, ch), means[c + ch]) : 0.0f;
        dx[e] = __fmul_rn(kk, (dy[e] - means[ch]) - xhat_m);
    });
}

/* ---- launchers ------------------------------------------------------------------------------ */
static unsigned grid_for(int64_t n, int threads)
{
    int64_t blocks = (n + threads - 1) / threads;
    return (unsigned)(blocks < 65535 ? blocks : 65535);
}

/* Both passes and the finish, with the partial sums in part (2, C, splits). Launch failures
 * return here so the caller releases the scratch in one place. */
static cnn_status bn_train_stats_launch(cudaStream_t s, const float *x, int64_t n, int64_t c,
                                        int64_t inner, int64_t splits, float momentum, float eps,
                                        float *rm, float *rv, double *part, float *stats)
{
    const dim3 grid((unsigned)c, (unsigned)splits);
    bn_sum_kernel<<<grid, BLOCK, 0, s>>>(x, n, c, inner, part);
    CNN_CUDA_LAUNCH_CHECK(bn_sum_kernel);
    bn_sq_kernel<<<grid, BLOCK, 0, s>>>(x, n, c, inner, part, part + c * splits);
    CNN_CUDA_LAUNCH_CHECK(bn_sq_kernel);
    bn_stats_finish_kernel<<<(unsigned)c, BLOCK, 0, s>>>(part, part + c * splits, splits,
                                                         n * inner, c, momentum, eps, rm, rv,
                                                         stats);
    CNN_CUDA_LAUNCH_CHECK(bn_stats_finish_kernel);
    return CNN_OK;
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
    if (!training) {
        bn_eval_stats_kernel<<<grid_for(c, 256), 256, 0, s>>>(rm, rv, c, eps, stats);
        CNN_CUDA_LAUNCH_CHECK(bn_eval_stats_kernel);
        return CNN_OK;
    }
    const int64_t splits = bn_splits(n * inner, c);
    cnn_storage scratch;
    CNN_TRY(cnn_cuda_scratch_alloc(ctx, 2 * (size_t)c * (size_t)splits * sizeof(double),
                                   "batch_norm", &scratch));
    cnn_status st = bn_train_stats_launch(s, x, n, c, inner, splits, momentum, eps, rm, rv,
                                          (double *)scratch.data, stats);
    cnn_cuda_scratch_free(&scratch);
    return st;
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

/* The sums, the finish and dx, with part (2, C, splits) and means (2, C) in scratch. */
static cnn_status bn_backward_launch(cudaStream_t s, const float *x, const float *dy,
                                     const float *stats, int64_t n, int64_t c, int64_t inner,
                                     int64_t splits, bool training, double *part, float *means,
                                     float *dx, float *dw, float *db)
{
    bn_backward_sums_kernel<<<dim3((unsigned)c, (unsigned)splits), BLOCK, 0, s>>>(
        x, dy, stats, n, c, inner, part);
    CNN_CUDA_LAUNCH_CHECK(bn_backward_sums_kernel);
    bn_backward_finish_kernel<<<(unsigned)c, BLOCK, 0, s>>>(part, splits, n * inner, c, training,
                                                            dw, db, means);
    CNN_CUDA_LAUNCH_CHECK(bn_backward_finish_kernel);
    const int64_t total = n * c * inner;
    if (dx && total > 0) {
        bn_backward_dx_kernel<<<grid_for((total + 3) / 4, 256), 256, 0, s>>>(
            x, dy, stats, means, n, c, inner, training, dx);
        CNN_CUDA_LAUNCH_CHECK(bn_backward_dx_kernel);
    }
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
    const int64_t splits = bn_splits(n * inner, c);
    cnn_storage scratch;
    CNN_TRY(cnn_cuda_scratch_alloc(ctx, 2 * (size_t)c * ((size_t)splits * sizeof(double) +
                                                         sizeof(float)),
                                   "batch_norm backward", &scratch));
    double *part = (double *)scratch.data;
    cnn_status st = bn_backward_launch(s, x, dy, stats, n, c, inner, splits, training, part,
                                       (float *)(part + 2 * c * splits), dx, dw, db);
    cnn_cuda_scratch_free(&scratch);
    return st;
}

/* ---- folding an eval-mode batch norm into the conv before it ------------------------------- */
/* One block per output channel k: s = weight / sqrt(rv + eps) in double, w_out (k, per) = w * s,
 * b_out = fma(b - rm, s, bias): the CPU's operations (layers/batchnorm.c), so the same bits. */
static __global__ void bn_fold_kernel(const float *w, const float *b, const float *rm,
                                      const float *rv, const float *weight, const float *bias,
                                      double eps, int64_t k, int64_t per, float *w_out,
                                      float *b_out)
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
