/* conv2d_data.cu — hand-written CUDA conv2d, data gradient: an implicit GEMM that gathers dy
 * for every input pixel (DataOp), one GEMM per stride phase over that phase's taps only for a
 * strided conv (PhaseDataOp: the single GEMM multiplied zeros at 3 of 4 steps at stride 2,
 * 0.24-0.31 of cuDNN's throughput on ResNet-50's strided convs, H200), and a direct gather over the
 * valid taps for at most 4 input channels per group (as a GEMM its tiles were nearly empty:
 * ResNet-50's stem ran at 0.02 of cuDNN's). The last two are not yet measured on a GPU. Exact
 * FP32, or TF32 for the GEMMs; every dx element written once, no atomics; never calls cuDNN. */
#include "conv2d.cuh"

namespace {

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
    /* A phase (h0, w0) past the input has no pixels: a stride of 2^20 makes 2^40 phases. */
    for (int h0 = 0; h0 < g.sh && h0 < g.h; h0++)
        for (int w0 = 0; w0 < g.sw && w0 < g.w; w0++) {
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

extern "C" cnn_status cnn_cuda_conv2d_backward_data(cnn_context *ctx, const cnn_cuda_conv *c,
                                                    const float *dy, const float *w, float *dx)
{
    cudaStream_t st;
    Geo g = {}; /* set by to_geo; zeroed so that gcc sees no uninitialised read */
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
