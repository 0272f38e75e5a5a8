/* conv2d.cu — hand-written CUDA conv2d, forward and filter gradient: implicit GEMMs (igemm.cuh)
 * whose operands index the tensors on the fly, and direct kernels for depthwise convs and the
 * bias gradient (the data gradient is conv2d_data.cu). Exact FP32, or TF32 tensor cores for the
 * GEMMs when the context asks; no float atomics (bit-reproducible); it never calls cuDNN and
 * keeps no state between calls. */
#include "conv2d.cuh"

namespace {

/* Forward. m = (n, p, q) output pixel, j = output channel within the group, t = (c, r, s).
 * x: (N, C, H, W), w: (K, Cg, R, S) -> y: (N, K, P, Q) = conv + b, then a ReLU when RELU. The
 * store applies no residual: adding one there cost the FP32 128x128 kernel 15 registers (143,
 * one block per multiprocessor instead of two), so a conv with a residual stores conv + b and
 * epilogue_kernel adds the residual and applies the ReLU after it. */
template <bool RELU>
struct FwdOp {
    static constexpr bool A_T_FAST = false, B_T_FAST = true;
    Geo g;
    const float *x, *w;
    Epi e; /* b and relu only (z NULL): applied by the store, or by sum_splits_kernel */
    float *y;
    int slice; /* elements of one split's part of y (a workspace) when the reduction is split */
    /* A split's partial sums: no bias, no ReLU (sum_splits_kernel applies both to the sum). */
    FwdOp<false> split_into(float *ws, int n) const { return FwdOp<false>{g, x, w, Epi{}, ws, n}; }
    struct RowA { int base, h0, w0; bool ok; };
    struct ColB { int base; bool ok; };
    __device__ RowA row_a(int gi, int m, int M) const
    {
        RowA r{0, 0, 0, m < M};
        if (!r.ok) return r;
        const int pq = g.p * g.q, n = m / pq, rem = m - n * pq, p = rem / g.q, q = rem - p * g.q;
        r.base = (n * g.c + gi * g.cg) * g.h * g.w;
        r.h0 = p * g.sh - g.ph;
        r.w0 = q * g.sw - g.pw;
        return r;
    }
    __device__ ColB col_b(int gi, int j, int NC) const
    {
        return ColB{(gi * g.kg + j) * g.cg * g.r * g.s, j < NC};
    }
    __device__ float a(const RowA &r, int t) const
    {
        const int rs = g.r * g.s, c = g.by_rs.div(t), u = t - c * rs, ri = g.by_s.div(u);
        const int si = u - ri * g.s, hh = r.h0 + ri * g.dh, ww = r.w0 + si * g.dw;
        if (!r.ok || hh < 0 || hh >= g.h || ww < 0 || ww >= g.w) return 0.0f;
        return __ldg(x + r.base + (c * g.h + hh) * g.w + ww);
    }
    __device__ float b(const ColB &c, int t) const { return c.ok ? __ldg(w + c.base + t) : 0.0f; }
    __device__ void store(int gi, int split, int m, int j, float v) const
    {
        const int pq = g.p * g.q, n = m / pq, rem = m - n * pq, k = gi * g.kg + j;
        const int i = (n * g.k + k) * pq + rem;
        v = e.b ? v + __ldg(e.b + k) : v;
        y[split * slice + i] = RELU && v <= 0.0f ? 0.0f : v;
    }
};

/* Backward filter: m = output channel within the group, j = (c, r, s), t = (n, p, q), the
 * batch-and-pixel reduction, usually long and so split (see run_split).
 * dy: (N, K, P, Q), x: (N, C, H, W) -> dw: (K, Cg, R, S). */
struct FilterOp {
    static constexpr bool A_T_FAST = true, B_T_FAST = true;
    Geo g;
    const float *dy, *x;
    float *out; /* dw, or ws: (splits, K, Cg*R*S) */
    int slice;  /* K * Cg * R * S: elements of one split's slice */
    FilterOp split_into(float *ws, int n) const { return FilterOp{g, dy, x, ws, n}; }
    struct RowA { int base; bool ok; };
    struct ColB { int base, hoff, woff; bool ok; };
    __device__ RowA row_a(int gi, int m, int M) const
    {
        return RowA{(gi * g.kg + m) * g.p * g.q, m < M};
    }
    __device__ ColB col_b(int gi, int j, int NC) const
    {
        ColB c{0, 0, 0, j < NC};
        if (!c.ok) return c;
        const int rs = g.r * g.s, ci = j / rs, u = j - ci * rs, ri = u / g.s, si = u - ri * g.s;
        c.base = (gi * g.cg + ci) * g.h * g.w;
        c.hoff = ri * g.dh - g.ph;
        c.woff = si * g.dw - g.pw;
        return c;
    }
    __device__ float a(const RowA &r, int t) const
    {
        if (!r.ok) return 0.0f;
        const int pq = g.p * g.q, n = g.by_pq.div(t), u = t - n * pq;
        return __ldg(dy + n * g.k * pq + r.base + u);
    }
    __device__ float b(const ColB &c, int t) const
    {
        const int pq = g.p * g.q, n = g.by_pq.div(t), u = t - n * pq, p = g.by_q.div(u);
        const int q = u - p * g.q, hh = p * g.sh + c.hoff, ww = q * g.sw + c.woff;
        if (!c.ok || hh < 0 || hh >= g.h || ww < 0 || ww >= g.w) return 0.0f;
        return __ldg(x + n * g.c * g.h * g.w + c.base + hh * g.w + ww);
    }
    __device__ void store(int gi, int split, int m, int j, float v) const
    {
        const int crs = g.cg * g.r * g.s;
        out[split * slice + (gi * g.kg + m) * crs + j] = v;
    }
};

/* y = the forward's epilogue of y, over `len` elements of a conv output starting at a row
 * boundary: rows of pq elements, the first of channel c0, channels cycling through k. */
__global__ void epilogue_kernel(Epi e, float *y, int len, FastDiv by_pq, FastDiv by_k, int k,
                                int c0)
{
    for (int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; j < len;
         j += (int64_t)gridDim.x * blockDim.x) {
        const int i = (int)j;
        const int row = by_pq.div(i);
        int c = row - by_k.div(row) * k + c0;
        if (c >= k) c -= k;
        y[i] = e.apply(y[i], c, i);
    }
}

/* ---- depthwise (Cg == 1) forward and filter gradient (backward data: conv2d_data.cu) ------- */
/* x: (N, C, H, W), w: (K, 1, R, S) -> y: (N, K, P, Q) = the epilogue of the conv. */
__global__ void dw_forward_kernel(Geo g, const float *x, const float *w, Epi e, float *y)
{
    const int total = g.n * g.k * g.p * g.q;
    for (int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; j < total;
         j += (int64_t)gridDim.x * blockDim.x) {
        const int i = (int)j;
        const int q = i % g.q, p = (i / g.q) % g.p, k = (i / (g.p * g.q)) % g.k;
        const int n = i / (g.p * g.q * g.k), c = k / g.kg;
        const float *xc = x + (n * g.c + c) * g.h * g.w, *wk = w + k * g.r * g.s;
        float acc = 0.0f;
        for (int r = 0; r < g.r; r++) {
            const int hh = p * g.sh - g.ph + r * g.dh;
            if (hh < 0 || hh >= g.h) continue;
            for (int s = 0; s < g.s; s++) {
                const int ww = q * g.sw - g.pw + s * g.dw;
                if (ww >= 0 && ww < g.w)
                    acc = fmaf(__ldg(wk + r * g.s + s), __ldg(xc + hh * g.w + ww), acc);
            }
        }
        y[i] = e.apply(acc, k, i);
    }
}

/* Block-wide sum of one value per thread, in a fixed order (deterministic). blockDim.x = 256.
 * The two sums below run in double, as the CPU's: in float a thread's share of a channel (12,544
 * terms at batch 256 and 112 x 112) drifted 2e-4 from the exact sum, and partial sums of large
 * gradients of both signs overflowed to inf - inf = NaN where the total is finite. */
__device__ double block_sum(double v)
{
    __shared__ double part[32];
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = v;
    __syncthreads();
    v = threadIdx.x < (blockDim.x >> 5) ? part[threadIdx.x] : 0.0;
    if (threadIdx.x < 32)
        for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    return v;
}

/* One block per (k, r, s): dw[k][0][r][s] = sum over (n, p, q) of dy * x.
 * dy: (N, K, P, Q), x: (N, C, H, W) -> dw: (K, 1, R, S). */
__global__ void dw_backward_filter_kernel(Geo g, const float *dy, const float *x, float *dw)
{
    const int rs = g.r * g.s, k = blockIdx.x / rs, u = blockIdx.x % rs;
    const int r = u / g.s, s = u % g.s, c = k / g.kg, pq = g.p * g.q;
    double acc = 0.0;
    for (int i = threadIdx.x; i < g.n * pq; i += blockDim.x) {
        const int n = i / pq, pi = i - n * pq, p = pi / g.q, q = pi - p * g.q;
        const int hh = p * g.sh - g.ph + r * g.dh, ww = q * g.sw - g.pw + s * g.dw;
        if (hh < 0 || hh >= g.h || ww < 0 || ww >= g.w) continue;
        acc += (double)__ldg(dy + (n * g.k + k) * pq + pi) *
               __ldg(x + ((n * g.c + c) * g.h + hh) * g.w + ww);
    }
    acc = block_sum(acc);
    if (threadIdx.x == 0) dw[blockIdx.x] = (float)acc;
}

/* One block per channel: db[k] = sum over (n, p, q) of dy. dy: (N, K, P, Q) -> db: (K). */
__global__ void bias_grad_kernel(Geo g, const float *dy, float *db)
{
    const int k = blockIdx.x, pq = g.p * g.q;
    double acc = 0.0;
    for (int i = threadIdx.x; i < g.n * pq; i += blockDim.x) {
        const int n = i / pq;
        acc += __ldg(dy + (n * g.k + k) * pq + (i - n * pq));
    }
    acc = block_sum(acc);
    if (threadIdx.x == 0) db[k] = (float)acc;
}
} /* namespace */

extern "C" cnn_status cnn_cuda_conv2d_forward_fused(cnn_context *ctx, const cnn_cuda_conv *c,
                                                    const float *x, const float *w,
                                                    const cnn_cuda_epilogue *ce, float *y)
{
    cudaStream_t st;
    Geo g;
    CNN_TRY(cnn_cuda_enter(ctx, "conv2d", &st));
    CNN_TRY(to_geo("conv2d", c, &g));
    const Epi e{ce->b, ce->z, ce->relu};
    if (g.cg == 1) {
        const int blocks = grid_for((int64_t)g.n * g.k * g.p * g.q, 256);
        dw_forward_kernel<<<blocks, 256, 0, st>>>(g, x, w, e, y);
        CNN_CUDA_LAUNCH_CHECK(dw_forward_kernel);
        return CNN_OK;
    }
    /* Split only when the tiles alone leave multiprocessors idle (ResNet-50's 7x7 stage). */
    const int M = g.n * g.p * g.q, NC = g.kg, KD = g.cg * g.r * g.s, slice = g.n * g.k * g.p * g.q;
    if (ce->z) { /* conv + b here, then the residual and the ReLU in one more pass */
        const Epi bias_only{ce->b, nullptr, false};
        CNN_TRY(run_split(ctx, st, FwdOp<false>{g, x, w, bias_only, y, 0}, M, NC, KD, g.groups,
                          1, y, slice, bias_only, g.p * g.q, g.k));
        const cnn_cuda_epilogue rest = {NULL, ce->z, ce->relu};
        return cnn_cuda_conv2d_epilogue(ctx, c, &rest, y);
    }
    if (ce->relu)
        return run_split(ctx, st, FwdOp<true>{g, x, w, e, y, 0}, M, NC, KD, g.groups, 1, y, slice,
                         e, g.p * g.q, g.k);
    return run_split(ctx, st, FwdOp<false>{g, x, w, e, y, 0}, M, NC, KD, g.groups, 1, y, slice,
                     e, g.p * g.q, g.k);
}

extern "C" cnn_status cnn_cuda_conv2d_forward(cnn_context *ctx, const cnn_cuda_conv *c,
                                              const float *x, const float *w, const float *b,
                                              float *y)
{
    const cnn_cuda_epilogue e = {b, NULL, false};
    return cnn_cuda_conv2d_forward_fused(ctx, c, x, w, &e, y);
}

extern "C" cnn_status cnn_cuda_conv2d_epilogue(cnn_context *ctx, const cnn_cuda_conv *c,
                                               const cnn_cuda_epilogue *ce, float *y)
{
    cudaStream_t st;
    CNN_TRY(cnn_cuda_enter(ctx, "conv2d", &st));
    const int64_t pq = c->p * c->q, rows = c->n * c->k;
    if (pq == 0 || rows == 0) return CNN_OK;
    CNN_CHECK(pq < INT_MAX && c->k < INT_MAX, CNN_ERR_UNSUPPORTED,
              "conv2d: an output map of %lld x %lld is too large", (long long)c->p,
              (long long)c->q);
    /* Chunks of whole rows under 2^31 elements keep the kernel's index arithmetic in 32 bits. */
    const int64_t chunk_rows = INT_MAX / pq;
    const FastDiv by_pq = fast_div((int)pq), by_k = fast_div((int)c->k);
    for (int64_t row0 = 0; row0 < rows; row0 += chunk_rows) {
        const int64_t n_rows = rows - row0 < chunk_rows ? rows - row0 : chunk_rows;
        const int64_t at = row0 * pq, len = n_rows * pq;
        const Epi e{ce->b, ce->z ? ce->z + at : nullptr, ce->relu};
        epilogue_kernel<<<grid_for(len, 256), 256, 0, st>>>(e, y + at, (int)len, by_pq, by_k,
                                                            (int)c->k, (int)(row0 % c->k));
        CNN_CUDA_LAUNCH_CHECK(epilogue_kernel);
    }
    return CNN_OK;
}

extern "C" cnn_status cnn_cuda_conv2d_backward_filter(cnn_context *ctx, const cnn_cuda_conv *c,
                                                      const float *dy, const float *x, float *dw,
                                                      float *db)
{
    cudaStream_t st;
    Geo g;
    CNN_TRY(cnn_cuda_enter(ctx, "conv2d backward", &st));
    CNN_TRY(to_geo("conv2d backward", c, &g));
    if (db) {
        bias_grad_kernel<<<g.k, 256, 0, st>>>(g, dy, db);
        CNN_CUDA_LAUNCH_CHECK(bias_grad_kernel);
    }
    if (!dw) return CNN_OK;
    if (g.cg == 1) {
        dw_backward_filter_kernel<<<g.k * g.r * g.s, 256, 0, st>>>(g, dy, x, dw);
        CNN_CUDA_LAUNCH_CHECK(dw_backward_filter_kernel);
        return CNN_OK;
    }
    /* The reduction (N*P*Q) is usually far longer than the output (Kg x Cg*R*S) is wide: split
     * it until the grid has a few blocks per multiprocessor. */
    const int M = g.kg, NC = g.cg * g.r * g.s, KD = g.n * g.p * g.q, slice = g.k * NC;
    /* An empty batch: dw = 0 (and no split arithmetic on a reduction of length 0). */
    if (KD == 0) {
        CNN_CUDA_TRY(cudaMemsetAsync(dw, 0, (size_t)slice * sizeof(float), st));
        return CNN_OK;
    }
    FilterOp op{g, dy, x, dw, slice};
    return run_split(ctx, st, op, M, NC, KD, g.groups, 4, dw, slice, Epi{}, 1, 1);
}
