/* conv2d.cu — hand-written CUDA conv2d: forward, backward-data and backward-filter as implicit
 * GEMMs (igemm.cuh) whose operands index the tensors on the fly, direct kernels for
 * depthwise convs and the bias gradient. Backward data with at most 4 input channels per group
 * (an RGB stem, depthwise convs) is a direct gather over the valid taps instead: as a GEMM its
 * tiles were nearly empty and ResNet-50's stem ran at 0.02 of cuDNN's throughput on an H200;
 * with more channels and a stride, one GEMM per stride phase over that phase's taps only (the
 * single GEMM multiplied zeros at 3 of 4 steps at stride 2: 0.24-0.31 of cuDNN). Neither's speed
 * is measured on a GPU yet. Exact FP32, or TF32 tensor cores for the
 * GEMMs when the context asks; no float atomics (bit-reproducible); it never calls cuDNN and
 * keeps no state between calls. */
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

FastDiv fast_div(int d)
{
    unsigned s = 0;
    while ((1ull << s) < (unsigned long long)d) s++;
    return FastDiv{(unsigned)((1ull << 32) * ((1ull << s) - (unsigned long long)d) / d + 1), s};
}

/* The geometry in 32-bit ints: the launchers refuse tensors of 2^31 elements or more, so every
 * offset below fits and the index arithmetic stays cheap. The FastDivs divide by R*S, S, P*Q,
 * Q, sh and sw. */
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

/* Backward data as a gather, for more than 4 input channels per group (fewer take
 * gather_backward_data_kernel) at stride 1 or with a dilation (a strided conv without one takes
 * PhaseDataOp): m = (n, h, w) input pixel, j = input channel within the group, t = (k, r, s); dy
 * contributes where (h + ph - r*dh) is a multiple of sh (likewise w), so any stride and dilation
 * is exact and every dx element is written once.
 * dy: (N, K, P, Q), w: (K, Cg, R, S) -> dx: (N, C, H, W). */
struct DataOp {
    static constexpr bool A_T_FAST = false, B_T_FAST = true;
    Geo g;
    const float *dy, *w;
    float *dx;
    int slice; /* as FwdOp's */
    DataOp split_into(float *ws, int n) const { return DataOp{g, dy, w, ws, n}; }
    struct RowA { int base, hh, ww; bool ok; };
    struct ColB { int base; bool ok; };
    __device__ RowA row_a(int gi, int m, int M) const
    {
        RowA r{0, 0, 0, m < M};
        if (!r.ok) return r;
        const int hw = g.h * g.w, n = m / hw, rem = m - n * hw, h = rem / g.w, x = rem - h * g.w;
        r.base = (n * g.k + gi * g.kg) * g.p * g.q;
        r.hh = h + g.ph;
        r.ww = x + g.pw;
        return r;
    }
    __device__ ColB col_b(int gi, int j, int NC) const
    {
        return ColB{(gi * g.kg * g.cg + j) * g.r * g.s, j < NC};
    }
    __device__ float a(const RowA &r, int t) const
    {
        const int rs = g.r * g.s, k = g.by_rs.div(t), u = t - k * rs, ri = g.by_s.div(u);
        const int si = u - ri * g.s, ph = r.hh - ri * g.dh, pw = r.ww - si * g.dw;
        if (!r.ok || ph < 0 || pw < 0) return 0.0f;
        const int p = g.by_sh.div(ph), q = g.by_sw.div(pw);
        if (p * g.sh != ph || q * g.sw != pw || p >= g.p || q >= g.q) return 0.0f;
        return __ldg(dy + r.base + (k * g.p + p) * g.q + q);
    }
    __device__ float b(const ColB &c, int t) const
    {
        if (!c.ok) return 0.0f;
        const int rs = g.r * g.s, k = g.by_rs.div(t), u = t - k * rs;
        return __ldg(w + c.base + k * g.cg * rs + u);
    }
    __device__ void store(int gi, int split, int m, int j, float v) const
    {
        const int hw = g.h * g.w, n = m / hw, rem = m - n * hw;
        dx[split * slice + (n * g.c + gi * g.cg + j) * hw + rem] = v;
    }
};

/* Backward data of a strided conv (dilation 1), one stride phase at a time. The input rows
 * h = h0, h0 + sh, h0 + 2 sh ... (hc of them) are all reached by the same kernel rows,
 * r = r0, r0 + sh ... (nr of them, r0 = (h0 + ph) mod sh), through dy row p = pb + hi - jr for
 * the hi-th row and the jr-th tap (pb = (h0 + ph) / sh); columns likewise. So each of the sh*sw
 * phases is a dense GEMM over only its taps: m = (n, hi, wi), j = input channel within the
 * group, t = (k, jr, js), KD = Kg*nr*ns. DataOp's gather instead runs every (r, s) for every
 * pixel and multiplies zeros where the stride skips it: 3 of every 4 steps at stride 2 (0.24-0.31
 * of cuDNN's throughput on ResNet-50's strided convs, H200). A phase without taps (a 1x1 conv's
 * odd rows at stride 2) gets zeros from zero_phase_kernel. */
struct Phase {
    int h0, w0, hc, wc; /* first input row and column, and how many of each */
    int r0, s0, nr, ns; /* first kernel row and column, and how many of each */
    int pb, qb;         /* dy row and column of (hi, wi) and tap (jr, js): pb + hi - jr ... */
    FastDiv by_cells, by_wc, by_taps, by_ns; /* hc*wc, wc, nr*ns, ns */
};

struct PhaseDataOp {
    static constexpr bool A_T_FAST = false, B_T_FAST = true;
    Geo g;
    Phase f;
    const float *dy, *w;
    float *out; /* dx; or, split, the workspace: (splits, N, C, hc, wc) */
    int slice;  /* 0, or N*C*hc*wc: one split's part of the workspace */
    PhaseDataOp split_into(float *ws, int n) const { return PhaseDataOp{g, f, dy, w, ws, n}; }
    struct RowA { int base, hi, wi; bool ok; };
    struct ColB { int base; bool ok; };
    __device__ RowA row_a(int gi, int m, int M) const
    {
        RowA r{0, 0, 0, m < M};
        if (!r.ok) return r;
        const int n = f.by_cells.div(m), rem = m - n * f.hc * f.wc;
        r.hi = f.by_wc.div(rem);
        r.wi = rem - r.hi * f.wc;
        r.base = (n * g.k + gi * g.kg) * g.p * g.q;
        return r;
    }
    __device__ ColB col_b(int gi, int j, int NC) const
    {
        return ColB{(gi * g.kg * g.cg + j) * g.r * g.s, j < NC};
    }
    __device__ float a(const RowA &r, int t) const
    {
        const int k = f.by_taps.div(t), u = t - k * f.nr * f.ns, jr = f.by_ns.div(u);
        const int p = f.pb + r.hi - jr, q = f.qb + r.wi - (u - jr * f.ns);
        if (!r.ok || p < 0 || p >= g.p || q < 0 || q >= g.q) return 0.0f;
        return __ldg(dy + r.base + (k * g.p + p) * g.q + q);
    }
    __device__ float b(const ColB &c, int t) const
    {
        if (!c.ok) return 0.0f;
        const int k = f.by_taps.div(t), u = t - k * f.nr * f.ns, jr = f.by_ns.div(u);
        const int ri = f.r0 + jr * g.sh, si = f.s0 + (u - jr * f.ns) * g.sw;
        return __ldg(w + c.base + k * g.cg * g.r * g.s + ri * g.s + si);
    }
    __device__ void store(int gi, int split, int m, int j, float v) const
    {
        const int cells = f.hc * f.wc, n = f.by_cells.div(m), rem = m - n * cells;
        const int c = gi * g.cg + j;
        if (slice) {
            out[split * slice + (n * g.c + c) * cells + rem] = v;
            return;
        }
        const int hi = f.by_wc.div(rem), wi = rem - hi * f.wc;
        out[(n * g.c + c) * g.h * g.w + (f.h0 + hi * g.sh) * g.w + f.w0 + wi * g.sw] = v;
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

/* The grid-stride loops below step a 64-bit j (n <= INT_MAX; a 32-bit index wrapped to a
 * negative value past 2^31 - stride, which still passed i < n) and index with int i = j. */

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

/* The dx offset of element i of a phase's compact (N, C, hc, wc) layout. */
__device__ int phase_dx_index(const Geo &g, const Phase &f, int i)
{
    const int cells = f.hc * f.wc, nc = f.by_cells.div(i), rem = i - nc * cells;
    const int hi = f.by_wc.div(rem), wi = rem - hi * f.wc;
    return nc * g.h * g.w + (f.h0 + hi * g.sh) * g.w + f.w0 + wi * g.sw;
}

/* dx at a phase's pixels = the sum over splits of ws[s][i] (compact layout), in split order. */
__global__ void phase_sum_kernel(const float *ws, int splits, int slice, Geo g, Phase f,
                                 float *dx)
{
    for (int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; j < slice;
         j += (int64_t)gridDim.x * blockDim.x) {
        const int i = (int)j;
        float s = 0.0f;
        for (int z = 0; z < splits; z++) s += ws[(int64_t)z * slice + i];
        dx[phase_dx_index(g, f, i)] = s;
    }
}

/* dx = 0 at the pixels of a phase that no tap reaches. */
__global__ void zero_phase_kernel(Geo g, Phase f, int len, float *dx)
{
    for (int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; j < len;
         j += (int64_t)gridDim.x * blockDim.x)
        dx[phase_dx_index(g, f, (int)j)] = 0.0f;
}

/* ---- depthwise (Cg == 1) forward and filter gradient (its backward data is the gather below) */
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

/* Block-wide sum of one value per thread, in a fixed order (deterministic). blockDim.x = 256. */
__device__ float block_sum(float v)
{
    __shared__ float part[32];
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = v;
    __syncthreads();
    v = threadIdx.x < (blockDim.x >> 5) ? part[threadIdx.x] : 0.0f;
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
    float acc = 0.0f;
    for (int i = threadIdx.x; i < g.n * pq; i += blockDim.x) {
        const int n = i / pq, pi = i - n * pq, p = pi / g.q, q = pi - p * g.q;
        const int hh = p * g.sh - g.ph + r * g.dh, ww = q * g.sw - g.pw + s * g.dw;
        if (hh < 0 || hh >= g.h || ww < 0 || ww >= g.w) continue;
        acc = fmaf(__ldg(dy + (n * g.k + k) * pq + pi),
                   __ldg(x + ((n * g.c + c) * g.h + hh) * g.w + ww), acc);
    }
    acc = block_sum(acc);
    if (threadIdx.x == 0) dw[blockIdx.x] = acc;
}

/* One block per channel: db[k] = sum over (n, p, q) of dy. dy: (N, K, P, Q) -> db: (K). */
__global__ void bias_grad_kernel(Geo g, const float *dy, float *db)
{
    const int k = blockIdx.x, pq = g.p * g.q;
    float acc = 0.0f;
    for (int i = threadIdx.x; i < g.n * pq; i += blockDim.x) {
        const int n = i / pq;
        acc += __ldg(dy + (n * g.k + k) * pq + (i - n * pq));
    }
    acc = block_sum(acc);
    if (threadIdx.x == 0) db[k] = acc;
}

/* ---- backward data for few input channels per group (Cg <= 4): a direct gather ------------ */
/* Calls f(t, o) for each tap t < taps, in ascending order, whose output index
 * o = (at - t*dil) / stride is whole and in [0, outs); at = the input index plus the padding.
 * With dil == 1 the valid taps are t = at mod stride, then every stride-th t, o falling by one
 * each step: no test per tap. A dilation > 1 takes the checking loop. */
template <class F>
__device__ void for_valid_taps(int at, int taps, int dil, int stride, FastDiv by_stride,
                               int outs, F f)
{
    if (dil == 1) {
        int o = by_stride.div(at), t = at - o * stride;
        if (o >= outs) { /* the first taps land past the output's end: skip them */
            t += (o - outs + 1) * stride;
            o = outs - 1;
        }
        for (; t < taps && o >= 0; t += stride, o--) f(t, o);
        return;
    }
    for (int t = 0; t < taps; t++) {
        const int a = at - t * dil;
        if (a < 0) break; /* a only falls from here */
        const int o = by_stride.div(a);
        if (o * stride == a && o < outs) f(t, o);
    }
}

/* One thread per (n, group, h, w) input pixel computes its group's CG (= Cg) input channels:
 * dx[n][gi*CG + c][h][w] = sum over the valid (r, s) and the group's kg output channels k of
 * w[k][c][r][s] * dy[n][k][p][q], so each dy element loaded feeds CG multiply-adds and the
 * index arithmetic is per tap, not per multiply-add. Every dx element is written once. For
 * Cg == 1 this is the depthwise conv's backward data.
 * dy: (N, K, P, Q), w: (K, Cg, R, S) -> dx: (N, C, H, W). */
template <int CG>
__global__ void gather_backward_data_kernel(Geo g, const float *dy, const float *w, float *dx)
{
    const int hw = g.h * g.w, pq = g.p * g.q, rs = g.r * g.s, total = g.n * g.groups * hw;
    for (int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; j < total;
         j += (int64_t)gridDim.x * blockDim.x) {
        const int i = (int)j; /* ((n * groups + gi) * H + h) * W + xw */
        const int ng = i / hw, rem = i - ng * hw, h = rem / g.w, xw = rem - h * g.w;
        const int n = ng / g.groups, gi = ng - n * g.groups;
        /* dy's and w's parts for the group's first output channel */
        const float *dyg = dy + (n * g.k + gi * g.kg) * pq, *wg = w + gi * g.kg * CG * rs;
        float acc[CG];
#pragma unroll
        for (int c = 0; c < CG; c++) acc[c] = 0.0f;
        for_valid_taps(h + g.ph, g.r, g.dh, g.sh, g.by_sh, g.p, [&](int r, int p) {
            for_valid_taps(xw + g.pw, g.s, g.dw, g.sw, g.by_sw, g.q, [&](int s, int q) {
                const float *d = dyg + p * g.q + q, *wk = wg + r * g.s + s;
                for (int k = 0; k < g.kg; k++, d += pq, wk += CG * rs) {
                    const float v = __ldg(d);
#pragma unroll
                    for (int c = 0; c < CG; c++) acc[c] = fmaf(__ldg(wk + c * rs), v, acc[c]);
                }
            });
        });
        float *o = dx + ng * CG * hw + rem; /* (n*C + gi*CG) * H*W + h*W + xw, as C = groups*CG */
#pragma unroll
        for (int c = 0; c < CG; c++) o[c * hw] = acc[c];
    }
}

/* ---- launch helpers ------------------------------------------------------------------------ */
cnn_status to_geo(const char *op, const cnn_cuda_conv *c, Geo *g)
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
    CNN_CHECK(c->groups >= 1 && c->groups <= 65535, CNN_ERR_UNSUPPORTED,
              "%s: groups %d is more than the hand-written CUDA conv launches", op, c->groups);
    *g = Geo{(int)c->n, (int)c->c, (int)c->h, (int)c->w, (int)c->k, (int)c->r, (int)c->s,
             (int)c->p, (int)c->q, (int)c->cg, (int)c->kg, c->sh, c->sw, c->ph, c->pw, c->dh,
             c->dw, c->groups, fast_div((int)(c->r * c->s)), fast_div((int)c->s),
             fast_div((int)(c->p * c->q)), fast_div((int)c->q), fast_div(c->sh),
             fast_div(c->sw)};
    return CNN_OK;
}

int grid_for(int64_t total, int threads)
{
    const int64_t b = (total + threads - 1) / threads;
    return (int)(b < 65535 * 8 ? (b > 0 ? b : 1) : 65535 * 8);
}

/* Whether this conv runs in TF32: the context asks for it and the GPU has TF32 tensor cores. */
cnn_status use_tf32(const cnn_context *ctx, bool *tf32)
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

/* The stride phase (h0, w0) of g (see PhaseDataOp); counts of 0 where it has no rows or taps. */
Phase make_phase(const Geo &g, int h0, int w0)
{
    Phase f = {};
    f.h0 = h0;
    f.w0 = w0;
    f.hc = h0 < g.h ? (g.h - h0 + g.sh - 1) / g.sh : 0;
    f.wc = w0 < g.w ? (g.w - w0 + g.sw - 1) / g.sw : 0;
    f.r0 = (h0 + g.ph) % g.sh;
    f.s0 = (w0 + g.pw) % g.sw;
    f.nr = f.r0 < g.r ? (g.r - f.r0 + g.sh - 1) / g.sh : 0;
    f.ns = f.s0 < g.s ? (g.s - f.s0 + g.sw - 1) / g.sw : 0;
    f.pb = (h0 + g.ph) / g.sh;
    f.qb = (w0 + g.pw) / g.sw;
    if (f.hc > 0 && f.wc > 0) {
        f.by_cells = fast_div(f.hc * f.wc);
        f.by_wc = fast_div(f.wc);
    }
    if (f.nr > 0 && f.ns > 0) {
        f.by_taps = fast_div(f.nr * f.ns);
        f.by_ns = fast_div(f.ns);
    }
    return f;
}

/* Backward data of a strided conv with dilation 1 and more than 4 input channels per group:
 * one GEMM per stride phase (PhaseDataOp), each split as run_split splits, its split sums
 * scattered into dx by phase_sum_kernel. */
cnn_status backward_data_phases(cnn_context *ctx, cudaStream_t st, const Geo &g, const float *dy,
                                const float *w, float *dx)
{
    for (int h0 = 0; h0 < g.sh; h0++)
        for (int w0 = 0; w0 < g.sw; w0++) {
            const Phase f = make_phase(g, h0, w0);
            /* N*C*hc*wc <= N*C*H*W, which to_geo keeps under 2^31 */
            const int cells = g.n * g.c * f.hc * f.wc;
            if (cells == 0) continue;
            if (f.nr == 0 || f.ns == 0) {
                zero_phase_kernel<<<grid_for(cells, 256), 256, 0, st>>>(g, f, cells, dx);
                CNN_CUDA_LAUNCH_CHECK(zero_phase_kernel);
                continue;
            }
            const PhaseDataOp op{g, f, dy, w, dx, 0};
            CNN_TRY(run_split_with(ctx, st, op, g.n * f.hc * f.wc, g.cg, g.kg * f.nr * f.ns,
                                   g.groups, 1, cells, [&](const float *ws, int splits) {
                                       phase_sum_kernel<<<grid_for(cells, 256), 256, 0, st>>>(
                                           ws, splits, cells, g, f, dx);
                                   }));
        }
    return CNN_OK;
}

/* dx from dy by gather_backward_data_kernel<CG> (CG = the group's input channels). */
template <int CG>
cnn_status launch_gather_data(cudaStream_t st, const Geo &g, const float *dy, const float *w,
                              float *dx)
{
    const int blocks = grid_for((int64_t)g.n * g.groups * g.h * g.w, 256);
    gather_backward_data_kernel<CG><<<blocks, 256, 0, st>>>(g, dy, w, dx);
    CNN_CUDA_LAUNCH_CHECK(gather_backward_data_kernel);
    return CNN_OK;
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

extern "C" cnn_status cnn_cuda_conv2d_backward_data(cnn_context *ctx, const cnn_cuda_conv *c,
                                                    const float *dy, const float *w, float *dx)
{
    cudaStream_t st;
    Geo g;
    CNN_TRY(cnn_cuda_enter(ctx, "conv2d backward", &st));
    CNN_TRY(to_geo("conv2d backward", c, &g));
    /* Few input channels per group (an RGB stem, depthwise and narrow grouped convs): the
     * GEMM's columns would be the group's Cg channels, a 64-wide tile at least 94% empty, and at
     * stride 2 three of its four reduction steps multiply zeros (ResNet-50's stem, Cg 3 and
     * 7x7/2, ran at 0.02 of cuDNN's throughput on an H200). The gather does the valid taps
     * only; its speed is not yet measured on a GPU. */
    switch (g.cg) {
    case 1: return launch_gather_data<1>(st, g, dy, w, dx);
    case 2: return launch_gather_data<2>(st, g, dy, w, dx);
    case 3: return launch_gather_data<3>(st, g, dy, w, dx);
    case 4: return launch_gather_data<4>(st, g, dy, w, dx);
    default: break;
    }
    if ((g.sh > 1 || g.sw > 1) && g.dh == 1 && g.dw == 1)
        return backward_data_phases(ctx, st, g, dy, w, dx);
    DataOp op{g, dy, w, dx, 0};
    return run_split(ctx, st, op, g.n * g.h * g.w, g.cg, g.kg * g.r * g.s, g.groups, 1, dx,
                     g.n * g.c * g.h * g.w, Epi{}, 1, 1);
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
