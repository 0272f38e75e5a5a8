/* igemm.cuh — the implicit GEMMs behind the hand-written conv (through conv2d.cuh: conv2d.cu and
 * conv2d_data.cu): shared-memory tiles of operands that an Op computes on the fly, multiplied in exact
 * FP32 on the CUDA cores or in TF32 on the tensor cores. Knows nothing of convolution but the
 * name its errors give. */
#ifndef CNN_IGEMM_CUH
#define CNN_IGEMM_CUH

#include "cuda_check.h"

#include <climits>
#include <mma.h>

namespace {

namespace wmma = nvcuda::wmma;

/* v rounded to TF32 (10 mantissa bits, to nearest with ties away from zero), as a tensor core
 * reads it. Before sm_80 there is no TF32 (and the TF32 kernel is never launched there). */
__device__ float to_tf32(float v)
{
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
    return wmma::__float_to_tf32(v);
#else
    return v;
#endif
}

/* Per group gi: C[m][j] = sum_t A[m][t] * B[t][j] for m < M, j < NC, t in this split's part of
 * [0, KD). An Op supplies the operands and the store; rows of A and columns of B are resolved
 * once per thread (RowA / ColB) so that the inner loads only decompose t. Two kernels share the
 * tile loading: exact FP32 on the CUDA cores, and TF32 on the tensor cores when the context asks
 * for TF32 (as cuDNN's and cuBLAS's TF32 modes do). */

/* One block's part of the GEMM and its operand tiles, BK steps of t at a time: each thread
 * fetches its share of A (BM x BK) and B (BK x BN) into registers (load), then writes it to
 * shared memory as As[t][m] and Bs[t][j] (stash), rounded to TF32 for the tensor-core kernel.
 * Tiles are loaded "row-fast" (consecutive threads along m or j) or "t-fast" (consecutive
 * threads along t), whichever keeps their global reads coalesced for that operand. */
template <int BM, int BN, int BK, int THREADS, class Op>
struct Tiles {
    static constexpr int A_LD = BM * BK / THREADS, B_LD = BN * BK / THREADS;
    static_assert(BM * BK % THREADS == 0 && BN * BK % THREADS == 0, "tile/thread mismatch");
    int gi, split, m0, j0, kbeg, kend; /* group, split, first row and column, t range */
    typename Op::RowA ra[A_LD];
    typename Op::ColB cb[B_LD];
    int a_t[A_LD], a_m[A_LD], b_t[B_LD], b_j[B_LD];
    float la[A_LD], lb[B_LD];

    __device__ Tiles(const Op &op, int M, int NC, int KD, int splits, int kchunk)
        : gi(blockIdx.z / splits), split(blockIdx.z % splits), m0(blockIdx.x * BM),
          j0(blockIdx.y * BN), kbeg(split * kchunk), kend(kbeg + min(kchunk, KD - kbeg))
    {
        /* kend as kbeg + what is left: the launcher's split count keeps every kbeg below KD,
         * but kbeg + kchunk of the last split can pass INT_MAX near the 2^31 limit (it wrapped
         * negative, and that split summed nothing). */
        /* Unsigned, so that the compiler sees (tid + THREADS * i) % BM == tid % BM when BM
         * divides THREADS (the tile sizes are powers of 2): the row-fast operand's rows are then
         * one row per thread, resolved once, and its RowA registers are shared. */
        const unsigned tid = threadIdx.x;
#pragma unroll
        for (int i = 0; i < A_LD; i++) {
            const unsigned e = tid + THREADS * i;
            a_m[i] = (int)(Op::A_T_FAST ? e / BK : e % BM);
            a_t[i] = (int)(Op::A_T_FAST ? e % BK : e / BM);
            ra[i] = op.row_a(gi, m0 + a_m[i], M);
        }
#pragma unroll
        for (int i = 0; i < B_LD; i++) {
            const unsigned e = tid + THREADS * i;
            b_j[i] = (int)(Op::B_T_FAST ? e / BK : e % BN);
            b_t[i] = (int)(Op::B_T_FAST ? e % BK : e / BN);
            cb[i] = op.col_b(gi, j0 + b_j[i], NC);
        }
    }
    __device__ void load(const Op &op, int k0)
    {
#pragma unroll
        for (int i = 0; i < A_LD; i++) {
            const int t = k0 + a_t[i];
            la[i] = t < kend ? op.a(ra[i], t) : 0.0f;
        }
#pragma unroll
        for (int i = 0; i < B_LD; i++) {
            const int t = k0 + b_t[i];
            lb[i] = t < kend ? op.b(cb[i], t) : 0.0f;
        }
    }
    template <bool TF32, int LDA, int LDB>
    __device__ void stash(float (*As)[LDA], float (*Bs)[LDB]) const
    {
#pragma unroll
        for (int i = 0; i < A_LD; i++) As[a_t[i]][a_m[i]] = TF32 ? to_tf32(la[i]) : la[i];
#pragma unroll
        for (int i = 0; i < B_LD; i++) Bs[b_t[i]][b_j[i]] = TF32 ? to_tf32(lb[i]) : lb[i];
    }
    /* Every step of t: multiply(buf) reads the tiles in As[buf] / Bs[buf]. Double buffering:
     * the next tile is fetched into registers while this one is multiplied, then written to the
     * other buffer; one barrier per step suffices because a buffer is only rewritten after the
     * barrier that ends the step which read it. */
    template <bool TF32, int LDA, int LDB, class Multiply>
    __device__ void run(const Op &op, float (*As)[BK][LDA], float (*Bs)[BK][LDB], Multiply multiply)
    {
        int buf = 0;
        if (kbeg < kend) {
            load(op, kbeg);
            stash<TF32>(As[0], Bs[0]);
        }
        __syncthreads();
        for (int k0 = kbeg; k0 < kend; k0 += BK) {
            const bool more = k0 + BK < kend;
            if (more) load(op, k0 + BK);
            multiply(buf);
            if (more) stash<TF32>(As[buf ^ 1], Bs[buf ^ 1]);
            __syncthreads();
            buf ^= 1;
        }
    }
};

/* Exact FP32: each thread accumulates a TM x TN micro-tile with fmaf. */
template <int BM, int BN, int BK, int TM, int TN, class Op>
__global__ void __launch_bounds__((BM / TM) * (BN / TN))
    igemm_kernel(Op op, int M, int NC, int KD, int splits, int kchunk)
{
    static_assert(TM % 4 == 0 && TN % 4 == 0, "micro-tiles are read as float4");
    /* +4 floats per row: t-fast stores of a warp then hit 32 distinct banks, and rows stay
     * 16-byte aligned for the float4 reads. */
    __shared__ __align__(16) float As[2][BK][BM + 4];
    __shared__ __align__(16) float Bs[2][BK][BN + 4];
    Tiles<BM, BN, BK, (BM / TM) * (BN / TN), Op> tiles(op, M, NC, KD, splits, kchunk);

    float acc[TM][TN];
#pragma unroll
    for (int i = 0; i < TM; i++)
#pragma unroll
        for (int j = 0; j < TN; j++) acc[i][j] = 0.0f;

    /* Thread (tm, tn) owns TM/4 runs of 4 rows, run i starting at i*4*(BM/TM) + 4*tm, and the
     * same for columns: each run is one float4 read, and the 8 threads of a quarter-warp read
     * 128 consecutive bytes (no bank conflict); a warp's stores of C cover consecutive pixels. */
    const int tm = threadIdx.x % (BM / TM), tn = threadIdx.x / (BM / TM);
    tiles.template run<false>(op, As, Bs, [&](int buf) {
#pragma unroll
        for (int kk = 0; kk < BK; kk++) {
            float av[TM], bv[TN];
#pragma unroll
            for (int i = 0; i < TM / 4; i++) {
                const float4 v =
                    *reinterpret_cast<const float4 *>(&As[buf][kk][i * 4 * (BM / TM) + 4 * tm]);
                av[4 * i] = v.x, av[4 * i + 1] = v.y, av[4 * i + 2] = v.z, av[4 * i + 3] = v.w;
            }
#pragma unroll
            for (int j = 0; j < TN / 4; j++) {
                const float4 v =
                    *reinterpret_cast<const float4 *>(&Bs[buf][kk][j * 4 * (BN / TN) + 4 * tn]);
                bv[4 * j] = v.x, bv[4 * j + 1] = v.y, bv[4 * j + 2] = v.z, bv[4 * j + 3] = v.w;
            }
#pragma unroll
            for (int i = 0; i < TM; i++)
#pragma unroll
                for (int j = 0; j < TN; j++) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
        }
    });

#pragma unroll
    for (int i = 0; i < TM; i++) {
        const int m = tiles.m0 + (i / 4) * 4 * (BM / TM) + 4 * tm + i % 4;
        if (m >= M) continue;
#pragma unroll
        for (int j = 0; j < TN; j++) {
            const int col = tiles.j0 + (j / 4) * 4 * (BN / TN) + 4 * tn + j % 4;
            if (col < NC) op.store(tiles.gi, tiles.split, m, col, acc[i][j]);
        }
    }
}

/* TF32 on the tensor cores (sm_80 and later): the warps of a block form a WM x WN grid, each
 * owning a (BM/WM) x (BN/WN) part of C as 16x16 accumulator fragments, fed by 16x16x8 WMMA
 * products from the same double-buffered tiles (BK = 8: one product's depth per step). Operands
 * are rounded to TF32 (nearest, ties away) as they are stashed; products and sums are FP32. */
template <int BM, int BN, int WM, int WN, class Op>
__global__ void __launch_bounds__(WM * WN * 32)
    igemm_tf32_kernel(Op op, int M, int NC, int KD, int splits, int kchunk)
{
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
    constexpr int BK = 8, FM = BM / WM / 16, FN = BN / WN / 16;
    static_assert(BM % (16 * WM) == 0 && BN % (16 * WN) == 0, "warp tiles of whole fragments");
    /* +8 floats per row: a row is 32-byte aligned, as WMMA loads need, and the fragment loads
     * of a warp (8 rows x 4 columns, or the transpose) fall in 32 distinct banks. */
    __shared__ __align__(32) float As[2][BK][BM + 8];
    __shared__ __align__(32) float Bs[2][BK][BN + 8];
    /* Each warp writes one accumulator fragment here at a time, for the Op's store. */
    __shared__ __align__(32) float Cs[WM * WN][16 * 16];
    Tiles<BM, BN, BK, WM * WN * 32, Op> tiles(op, M, NC, KD, splits, kchunk);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, wm = warp % WM, wn = warp / WM;

    wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc[FM][FN];
#pragma unroll
    for (int i = 0; i < FM; i++)
#pragma unroll
        for (int j = 0; j < FN; j++) wmma::fill_fragment(acc[i][j], 0.0f);

    tiles.template run<true>(op, As, Bs, [&](int buf) {
        /* As[t][m] is A (m x t) column-major; Bs[t][j] is B (t x j) row-major. */
        wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::col_major> a[FM];
        wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major> b[FN];
#pragma unroll
        for (int i = 0; i < FM; i++)
            wmma::load_matrix_sync(a[i], &As[buf][0][(wm * FM + i) * 16], BM + 8);
#pragma unroll
        for (int j = 0; j < FN; j++)
            wmma::load_matrix_sync(b[j], &Bs[buf][0][(wn * FN + j) * 16], BN + 8);
#pragma unroll
        for (int i = 0; i < FM; i++)
#pragma unroll
            for (int j = 0; j < FN; j++) wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
    });

    /* Column-major staging: lanes 0-15 then store 16 consecutive m (pixels) of one column. */
    float *cs = Cs[warp];
#pragma unroll
    for (int i = 0; i < FM; i++)
#pragma unroll
        for (int j = 0; j < FN; j++) {
            wmma::store_matrix_sync(cs, acc[i][j], 16, wmma::mem_col_major);
            __syncwarp();
            for (int e = lane; e < 16 * 16; e += 32) {
                const int m = tiles.m0 + (wm * FM + i) * 16 + e % 16;
                const int col = tiles.j0 + (wn * FN + j) * 16 + e / 16;
                if (m < M && col < NC) op.store(tiles.gi, tiles.split, m, col, cs[e]);
            }
            __syncwarp();
        }
#endif
}

/* ---- launch ------------------------------------------------------------------------------ */
/* The tile side for an M x NC GEMM: big tiles (128x128) when both sides fill them, else 64. */
inline int igemm_tile(int M, int NC) { return M >= 128 && NC >= 96 ? 128 : 64; }

/* The blocks of one split of an M x NC GEMM in `groups` groups (tiles of igemm_tile's side). */
inline int64_t igemm_tiles(int M, int NC, int groups)
{
    const int t = igemm_tile(M, NC);
    return (((int64_t)M + t - 1) / t) * (((int64_t)NC + t - 1) / t) * groups;
}

/* The GEMM in igemm_tile's tiles, on the tensor cores when TF32 is on and the GPU has them
 * (sm_80 and later). */
template <class Op>
cnn_status launch_igemm(cudaStream_t st, const Op &op, bool tf32, int M, int NC, int KD,
                        int groups, int splits, int kchunk)
{
    /* An empty batch leaves nothing to compute, and a grid of 0 blocks is a launch error. */
    if (M == 0 || NC == 0) return CNN_OK;
    const int tile = igemm_tile(M, NC);
    const bool big = tile == 128;
    const int64_t gx = ((int64_t)M + tile - 1) / tile, gy = ((int64_t)NC + tile - 1) / tile;
    const int64_t gz = (int64_t)groups * splits;
    CNN_CHECK(gx < INT_MAX && gy <= 65535 && gz <= 65535, CNN_ERR_UNSUPPORTED,
              "conv2d: a GEMM of %d x %d x %d in %d groups is beyond the hand-written kernel's "
              "grid",
              M, NC, KD, groups);
    dim3 grid((unsigned)gx, (unsigned)gy, (unsigned)gz);
    if (tf32 && big) {
        igemm_tf32_kernel<128, 128, 2, 4, Op><<<grid, 256, 0, st>>>(op, M, NC, KD, splits, kchunk);
        CNN_CUDA_LAUNCH_CHECK(igemm_tf32_kernel_128x128);
    } else if (tf32) {
        igemm_tf32_kernel<64, 64, 2, 2, Op><<<grid, 128, 0, st>>>(op, M, NC, KD, splits, kchunk);
        CNN_CUDA_LAUNCH_CHECK(igemm_tf32_kernel_64x64);
    } else if (big) {
        igemm_kernel<128, 128, 8, 8, 8, Op><<<grid, 256, 0, st>>>(op, M, NC, KD, splits, kchunk);
        CNN_CUDA_LAUNCH_CHECK(igemm_kernel_128x128);
    } else {
        igemm_kernel<64, 64, 8, 4, 4, Op><<<grid, 256, 0, st>>>(op, M, NC, KD, splits, kchunk);
        CNN_CUDA_LAUNCH_CHECK(igemm_kernel_64x64);
    }
    return CNN_OK;
}

} /* namespace */

#endif /* CNN_IGEMM_CUH */
