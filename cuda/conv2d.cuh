/* conv2d.cuh — what the hand-written conv's two files (conv2d.cu: forward and filter gradient;
 * conv2d_data.cu: data gradient) share: the launch geometry in 32-bit ints with its fixed-divisor
 * divisions, the forward's epilogue, and the split-K driver of the implicit GEMMs (igemm.cuh).
 * Only those two files include it; it knows nothing of cuDNN. */
#ifndef CNN_CONV2D_CUH
#define CNN_CONV2D_CUH

#include "cuda_check.h"

#include <climits>

#include "igemm.cuh"

namespace {

/* Division by a divisor fixed for the whole launch, as a multiply-high, an add and a shift
 * (round-up method of Granlund & Montgomery, exact for 0 <= n < 2^31): the implicit GEMM
 * splits an index into coordinates on every operand load, where a true division would cost
 * about as much as the multiply-adds it feeds. */
struct FastDiv {
    unsigned m, s;
    __device__ int div(int n) const
    {
        return (int)((__umulhi((unsigned)n, m) + (unsigned)n) >> s);
    }
};

inline FastDiv fast_div(int d)
{
    unsigned s = 0;
    while ((1ull << s) < (unsigned long long)d) s++;
    return FastDiv{(unsigned)((1ull << 32) * ((1ull << s) - (unsigned long long)d) / d + 1), s};
}

/* The geometry in 32-bit ints: the launchers refuse tensors of 2^31 elements or more, so every
 * offset the kernels compute fits and the index arithmetic stays cheap. The FastDivs divide by
 * R*S, S, P*Q, Q, sh and sw. */
struct Geo {
    int n, c, h, w, k, r, s, p, q, cg, kg, sh, sw, ph, pw, dh, dw, groups;
    FastDiv by_rs, by_s, by_pq, by_q, by_sh, by_sw;
};

/* The forward's epilogue (cnn_cuda_epilogue): v + b[k], + z[i], then ReLU, in cnn_conv2d's,
 * cnn_add's and cnn_relu's order, so the fused op gives their bits. i indexes y (and z). */
struct Epi {
    const float *b, *z;
    bool relu;
    __device__ float apply(float v, int k, int i) const
    {
        if (b) v += __ldg(b + k);
        if (z) v += __ldg(z + i);
        return relu && v <= 0.0f ? 0.0f : v;
    }
};

/* The conv kernels' grid-stride loops step a 64-bit j (n <= INT_MAX; a 32-bit index wrapped to
 * a negative value past 2^31 - stride, which still passed i < n) and index with int i = j. */

/* out[i] = the forward's epilogue of the sum over splits of ws[s][i], in split order (channel
 * (i / pq) % k, out: (N, K, P, Q)); e is empty for the backward passes. */
__global__ void sum_splits_kernel(const float *ws, int splits, int slice, Epi e, int pq, int k,
                                  float *out)
{
    const bool epi = e.b || e.z || e.relu;
    for (int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; j < slice;
         j += (int64_t)gridDim.x * blockDim.x) {
        const int i = (int)j;
        float s = 0.0f;
        for (int z = 0; z < splits; z++) s += ws[(int64_t)z * slice + i];
        out[i] = epi ? e.apply(s, (i / pq) % k, i) : s;
    }
}

/* ---- launch helpers ------------------------------------------------------------------------ */
inline cnn_status to_geo(const char *op, const cnn_cuda_conv *c, Geo *g)
{
    /* Headroom below 2^31: the kernels' int loops step past their end by up to a block (256)
     * or a tile's depth, and every extent they loop over (the GEMM's M = N*P*Q and depth,
     * N*P*Q for the filter and bias sums) is bounded by one of these sizes. */
    const int64_t lim = (int64_t)INT_MAX - 256;
    const int64_t big[] = {c->n * c->c * c->h * c->w, c->n * c->k * c->p * c->q,
                           c->k * c->cg * c->r * c->s, c->n * c->p * c->q};
    for (int64_t v : big)
        CNN_CHECK(v <= lim, CNN_ERR_UNSUPPORTED,
                  "%s: the hand-written CUDA conv needs tensors under 2^31 elements, less 256 "
                  "(x (%lld, %lld, %lld, %lld), weight (%lld, %lld, %lld, %lld))", op,
                  (long long)c->n, (long long)c->c, (long long)c->h, (long long)c->w,
                  (long long)c->k, (long long)c->cg, (long long)c->r, (long long)c->s);
    CNN_CHECK(cnn_cuda_window_fits_int(c->h, c->w, (int)c->r, (int)c->s, c->sh, c->sw, c->ph,
                                       c->pw, c->dh, c->dw),
              CNN_ERR_UNSUPPORTED, "%s: the hand-written CUDA conv indexes in 32 bits: padding "
              "(%d, %d), stride (%d, %d) and dilation (%d, %d) are too large for it", op, c->ph,
              c->pw, c->sh, c->sw, c->dh, c->dw);
    CNN_CHECK(c->groups >= 1 && c->groups <= 65535, CNN_ERR_UNSUPPORTED,
              "%s: groups %d is more than the hand-written CUDA conv launches", op, c->groups);
    *g = Geo{(int)c->n, (int)c->c, (int)c->h, (int)c->w, (int)c->k, (int)c->r, (int)c->s,
             (int)c->p, (int)c->q, (int)c->cg, (int)c->kg, c->sh, c->sw, c->ph, c->pw, c->dh,
             c->dw, c->groups, fast_div((int)(c->r * c->s)), fast_div((int)c->s),
             fast_div((int)(c->p * c->q)), fast_div((int)c->q), fast_div(c->sh),
             fast_div(c->sw)};
    return CNN_OK;
}

inline int grid_for(int64_t total, int threads)
{
    const int64_t b = (total + threads - 1) / threads;
    return (int)(b < 65535 * 8 ? (b > 0 ? b : 1) : 65535 * 8);
}

/* Whether this conv runs in TF32: the context asks for it and the GPU has TF32 tensor cores. */
inline cnn_status use_tf32(const cnn_context *ctx, bool *tf32)
{
    *tf32 = false;
    if (!ctx->tf32) return CNN_OK;
    int major = 0;
    CNN_CUDA_TRY(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor,
                                        ctx->device.index));
    *tf32 = major >= 8;
    return CNN_OK;
}

/* Runs op's GEMM (M x NC per group, reduction KD long), whose result has slice elements. When
 * its tiles fill fewer than `fill` blocks per multiprocessor, the reduction is split over
 * blockIdx.z until they fill about that many, each split a whole number of 8-steps and at least
 * 256 long: each split writes its own slice of a workspace, and sum(ws, splits) launches the
 * kernel that adds them in split order into the result, so it does not depend on scheduling. */
template <class Op, class Sum>
cnn_status run_split_with(cnn_context *ctx, cudaStream_t st, const Op &op, int M, int NC, int KD,
                          int groups, int fill, int slice, Sum sum)
{
    bool tf32;
    CNN_TRY(use_tf32(ctx, &tf32));
    const int64_t tiles = igemm_tiles(M, NC, groups);
    int sms = 0;
    CNN_CUDA_TRY(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, ctx->device.index));
    int64_t splits = 1;
    if (tiles > 0 && slice > 0 && tiles < (int64_t)fill * sms) {
        splits = ((int64_t)fill * sms + tiles - 1) / tiles;
        const int64_t max_by_len = KD / 256 > 0 ? KD / 256 : 1;
        if (splits > max_by_len) splits = max_by_len;
        if (splits > 65535 / groups) splits = 65535 / groups;
        if ((int64_t)slice * splits >= INT_MAX) splits = INT_MAX / slice;
        if (splits < 1) splits = 1;
    }
    /* Chunks are whole tiles of BK (8) so that no split's tiles straddle another's. */
    const int kchunk = (int)((((int64_t)KD + splits - 1) / splits + 7) / 8 * 8);
    if (splits > 1) splits = (int)(((int64_t)KD + kchunk - 1) / kchunk);
    if (splits <= 1) return launch_igemm(st, op, tf32, M, NC, KD, groups, 1, KD);
    cnn_tensor *ws = NULL;
    cnn_shape wshape = {};
    wshape.ndim = 1;
    wshape.d[0] = splits * slice;
    CNN_TRY(cnn_tensor_empty(wshape, CNN_F32, ctx->device, &ws));
    cnn_status s = launch_igemm(st, op.split_into(cnn_f32(ws), slice), tf32, M, NC, KD, groups,
                                (int)splits, kchunk);
    if (s == CNN_OK) {
        sum(cnn_f32(ws), (int)splits);
        cudaError_t e = cudaGetLastError();
        if (e != cudaSuccess)
            s = cnn_error(cnn_cuda_status_of(e), "conv2d: launch of the split sum failed: %s",
                          cudaGetErrorString(e));
    }
    /* Released at once: the caching allocator reuses the block only for later work on this
     * stream, which runs after these kernels. */
    cnn_tensor_free(&ws);
    return s;
}

/* run_split_with into out (slice elements, laid out as op's own result), summed by
 * sum_splits_kernel, which applies the forward's epilogue e (empty for the backward passes). */
template <class Op>
cnn_status run_split(cnn_context *ctx, cudaStream_t st, const Op &op, int M, int NC, int KD,
                     int groups, int fill, float *out, int slice, Epi e, int pq, int k)
{
    return run_split_with(ctx, st, op, M, NC, KD, groups, fill, slice,
                          [&](const float *ws, int splits) {
                              sum_splits_kernel<<<grid_for(slice, 256), 256, 0, st>>>(
                                  ws, splits, slice, e, pq, k, out);
                          });
}

} /* namespace */

#endif /* CNN_CONV2D_CUH */
