/* pool.cu — hand-written CUDA kernels for max, average and adaptive average pooling, forward
 * and backward, with the CPU reference's exact rules (layers/pool.c). Backward kernels gather
 * (one thread per input element sums the windows covering it): no atomics, deterministic, and
 * in the CPU's summation order. Launchers only; shapes are checked by layers/pool.c. */
#include "cuda_check.h"
#include "launch.cuh"


/* The max and average kernels index in I: int when every extent fits comfortably in 32 bits
 * (use_int32; always, in practice), else int64_t. A 64-bit division is a software routine of
 * dozens of instructions on a GPU, and these kernels divide several times per element. */
template <class I> static __device__ I div_floor(I a, I b)
{
    return a / b - ((a % b != 0) && ((a < 0) != (b < 0)));
}

template <class I> static __device__ I div_ceil(I a, I b) { return -div_floor<I>(-a, b); }

/* cnn_cuda_pool_geom in I. */
template <class I> struct PoolGeo {
    I planes, h, w, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw;
    bool exclude_pad;
    __device__ explicit PoolGeo(const cnn_cuda_pool_geom &g)
        : planes((I)g.planes), h((I)g.h), w((I)g.w), oh((I)g.oh), ow((I)g.ow), kh(g.kh),
          kw(g.kw), sh(g.sh), sw(g.sw), ph(g.ph), pw(g.pw), dh(g.dh), dw(g.dw),
          exclude_pad(g.exclude_pad)
    {
    }
};

#define GRID_STRIDE_LOOP_I(i, n)                                                                  \
    for (I i = (I)blockIdx.x * (I)blockDim.x + (I)threadIdx.x; i < (n);                           \
         i += (I)gridDim.x * (I)blockDim.x)

/* ---- max pooling --------------------------------------------------------------------------- */
// x: (planes, H, W) -> y, idx: (planes, OH, OW); idx NULL: no indices wanted
template <class I>
static __global__ void max_pool_forward_kernel(cnn_cuda_pool_geom gg, const float *x, float *y,
                                               int32_t *idx)
{
    const PoolGeo<I> g(gg);
    I total = g.planes * g.oh * g.ow;
    GRID_STRIDE_LOOP_I(o, total) {
        I ow = o % g.ow, oh = (o / g.ow) % g.oh, pl = o / (g.ow * g.oh);
        const float *xp = x + pl * g.h * g.w;
        I hs = oh * g.sh - g.ph, he = hs + (I)(g.kh - 1) * g.dh + 1;
        I ws = ow * g.sw - g.pw, we = ws + (I)(g.kw - 1) * g.dw + 1;
        if (he > g.h) he = g.h;
        if (we > g.w) we = g.w;
        /* the first taps inside (a loop of dh steps took ~2^30 of them for padding 2^30) */
        if (hs < 0) hs += (-hs + g.dh - 1) / g.dh * g.dh;
        if (ws < 0) ws += (-ws + g.dw - 1) / g.dw * g.dw;
        float best = -INFINITY;
        I bi = (hs < he && ws < we) ? hs * g.w + ws : -1;
        for (I h = hs; h < he; h += g.dh)
            for (I w = ws; w < we; w += g.dw) {
                float v = xp[h * g.w + w];
                if (v > best || isnan(v)) {
                    best = v;
                    bi = h * g.w + w;
                }
            }
        y[o] = best;
        if (idx) idx[o] = (int32_t)bi;
    }
}

/* Output rows whose window [o * s - p, o * s - p + span) holds input row i, clipped to
 * [0, out): o in [ceil((i + p - span + 1) / s), floor((i + p) / s)]. */
template <class I>
static __device__ void covering(I i, I s, I p, I span, I out, I *lo, I *hi)
{
    *lo = div_ceil<I>(i + p - span + 1, s);
    *hi = div_floor<I>(i + p, s) + 1;
    if (*lo < 0) *lo = 0;
    if (*hi > out) *hi = out;
}

// dy, idx: (planes, OH, OW) -> dx: (planes, H, W)
template <class I>
static __global__ void max_pool_backward_kernel(cnn_cuda_pool_geom gg, const float *dy,
                                                const int32_t *idx, float *dx)
{
    const PoolGeo<I> g(gg);
    I total = g.planes * g.h * g.w;
    GRID_STRIDE_LOOP_I(e, total) {
        I w = e % g.w, h = (e / g.w) % g.h, pl = e / (g.w * g.h);
        I ohs, ohe, ows, owe;
        covering(h, g.sh, g.ph, (I)(g.kh - 1) * g.dh + 1, g.oh, &ohs, &ohe);
        covering(w, g.sw, g.pw, (I)(g.kw - 1) * g.dw + 1, g.ow, &ows, &owe);
        int32_t me = (int32_t)(h * g.w + w);
        float s = 0.0f;
        for (I oh = ohs; oh < ohe; oh++)
            for (I ow = ows; ow < owe; ow++) {
                I o = (pl * g.oh + oh) * g.ow + ow;
                if (idx[o] == me) s += dy[o];
            }
        dx[e] = s;
    }
}

/* ---- average pooling ----------------------------------------------------------------------- */
/* The CPU's avg_window: clipped to the padded input (count_include_pad divisor), then to the
 * input (exclude_pad divisor); 0 for a window outside the input. */
template <class I>
static __device__ I avg_window(const PoolGeo<I> &g, I oh, I ow, I *hs, I *he, I *ws, I *we)
{
    *hs = oh * g.sh - g.ph;
    *ws = ow * g.sw - g.pw;
    *he = *hs + g.kh < g.h + g.ph ? *hs + g.kh : g.h + g.ph;
    *we = *ws + g.kw < g.w + g.pw ? *ws + g.kw : g.w + g.pw;
    I padded = (*he - *hs) * (*we - *ws);
    if (*hs < 0) *hs = 0;
    if (*ws < 0) *ws = 0;
    if (*he > g.h) *he = g.h;
    if (*we > g.w) *we = g.w;
    if (*hs >= *he || *ws >= *we) return 0;
    return g.exclude_pad ? (*he - *hs) * (*we - *ws) : padded;
}

// x: (planes, H, W) -> y: (planes, OH, OW)
template <class I>
static __global__ void avg_pool_forward_kernel(cnn_cuda_pool_geom gg, const float *x, float *y)
{
    const PoolGeo<I> g(gg);
    I total = g.planes * g.oh * g.ow;
    GRID_STRIDE_LOOP_I(o, total) {
        I ow = o % g.ow, oh = (o / g.ow) % g.oh, pl = o / (g.ow * g.oh);
        const float *xp = x + pl * g.h * g.w;
        I hs, he, ws, we, div = avg_window(g, oh, ow, &hs, &he, &ws, &we);
        /* In double, as the CPU's (the same order, so the same bits): a float sum overflowed
         * to inf for a window of values near FLT_MAX whose mean is finite. */
        double s = 0.0;
        for (I h = hs; h < he; h++)
            for (I w = ws; w < we; w++) s += xp[h * g.w + w];
        y[o] = div ? (float)(s / (double)div) : 0.0f;
    }
}

// dy: (planes, OH, OW) -> dx: (planes, H, W)
template <class I>
static __global__ void avg_pool_backward_kernel(cnn_cuda_pool_geom gg, const float *dy, float *dx)
{
    const PoolGeo<I> g(gg);
    I total = g.planes * g.h * g.w;
    GRID_STRIDE_LOOP_I(e, total) {
        I w = e % g.w, h = (e / g.w) % g.h, pl = e / (g.w * g.h);
        I ohs, ohe, ows, owe;
        covering(h, g.sh, g.ph, g.kh, g.oh, &ohs, &ohe);
        covering(w, g.sw, g.pw, g.kw, g.ow, &ows, &owe);
        float s = 0.0f;
        for (I oh = ohs; oh < ohe; oh++)
            for (I ow = ows; ow < owe; ow++) {
                I hs, he, ws, we, div = avg_window(g, oh, ow, &hs, &he, &ws, &we);
                if (div && h >= hs && h < he && w >= ws && w < we)
                    s += dy[(pl * g.oh + oh) * g.ow + ow] / (float)div;
            }
        dx[e] = s;
    }
}

/* ---- adaptive average pooling -------------------------------------------------------------- */
/* Output cell i covers [floor(i * in / out), ceil((i + 1) * in / out)); input j is covered by
 * the cells i in [floor(j * out / in), ceil((j + 1) * out / in)) (the same rule, roles swapped). */
static __device__ void adaptive_span(int64_t i, int64_t in, int64_t out, int64_t *s, int64_t *e)
{
    *s = i * in / out;
    *e = ((i + 1) * in + out - 1) / out;
}

// x: (planes, H, W) -> y: (planes, OH, OW)
static __global__ void adaptive_forward_kernel(cnn_cuda_pool_geom g, const float *x, float *y)
{
    int64_t total = g.planes * g.oh * g.ow;
    GRID_STRIDE_LOOP(o, total) {
        int64_t ow = o % g.ow, oh = (o / g.ow) % g.oh, pl = o / (g.ow * g.oh);
        const float *xp = x + pl * g.h * g.w;
        int64_t hs, he, ws, we;
        adaptive_span(oh, g.h, g.oh, &hs, &he);
        adaptive_span(ow, g.w, g.ow, &ws, &we);
        /* In double, as the CPU's: a global pool over a 512 x 512 map summed in float came out
         * 0.25% off (PyTorch takes a 1x1 adaptive pool as a mean, a tree reduction). */
        double s = 0.0;
        for (int64_t h = hs; h < he; h++)
            for (int64_t w = ws; w < we; w++) s += xp[h * g.w + w];
        y[o] = (float)(s / (double)((he - hs) * (we - ws)));
    }
}

// dy: (planes, OH, OW) -> dx: (planes, H, W)
static __global__ void adaptive_backward_kernel(cnn_cuda_pool_geom g, const float *dy, float *dx)
{
    int64_t total = g.planes * g.h * g.w;
    GRID_STRIDE_LOOP(e, total) {
        int64_t w = e % g.w, h = (e / g.w) % g.h, pl = e / (g.w * g.h);
        float s = 0.0f;
        if (g.oh > 0 && g.ow > 0) {
            int64_t ohs, ohe, ows, owe;
            adaptive_span(h, g.oh, g.h, &ohs, &ohe);
            adaptive_span(w, g.ow, g.w, &ows, &owe);
            for (int64_t oh = ohs; oh < ohe; oh++)
                for (int64_t ow = ows; ow < owe; ow++) {
                    int64_t hs, he, ws, we;
                    adaptive_span(oh, g.h, g.oh, &hs, &he);
                    adaptive_span(ow, g.w, g.ow, &ws, &we);
                    if (h >= hs && h < he && w >= ws && w < we)
                        s += dy[(pl * g.oh + oh) * g.ow + ow] / (float)((he - hs) * (we - ws));
                }
        }
        dx[e] = s;
    }
}

/* ---- launchers ------------------------------------------------------------------------------ */
#define LAUNCH(op, kernel, n, ...)                                                                \
    do {                                                                                          \
        if ((n) <= 0) return CNN_OK;                                                              \
        cudaStream_t s_;                                                                          \
        CNN_TRY(cnn_cuda_enter(ctx, op, &s_));                                                    \
        kernel<<<grid_for(n), THREADS, 0, s_>>>(__VA_ARGS__);                                     \
        CNN_CUDA_LAUNCH_CHECK(kernel);                                                            \
        return CNN_OK;                                                                            \
    } while (0)

/* Whether the max / average kernels can index in 32 bits: every extent, the window's area (the
 * average's divisor), and the grid-stride loop's last step past the end, well inside int. */
static bool use_int32(const cnn_cuda_pool_geom *g)
{
    const int64_t lim = (int64_t)1 << 30;
    return g->planes * g->h * g->w < lim && g->planes * g->oh * g->ow < lim &&
           (int64_t)g->kh * g->kw < lim &&
           cnn_cuda_window_fits_int(g->h, g->w, g->kh, g->kw, g->sh, g->sw, g->ph, g->pw, g->dh,
                                    g->dw) &&
           g->oh * g->sh < lim && g->ow * g->sw < lim;
}

extern "C" cnn_status cnn_cuda_max_pool2d_forward(cnn_context *ctx, const cnn_cuda_pool_geom *g,
                                                  const float *x, float *y, int32_t *idx)
{
    if (use_int32(g))
        LAUNCH("max_pool2d", max_pool_forward_kernel<int>, g->planes * g->oh * g->ow, *g, x, y,
               idx);
    LAUNCH("max_pool2d", max_pool_forward_kernel<int64_t>, g->planes * g->oh * g->ow, *g, x, y,
           idx);
}

extern "C" cnn_status cnn_cuda_max_pool2d_backward(cnn_context *ctx, const cnn_cuda_pool_geom *g,
                                                   const float *dy, const int32_t *idx, float *dx)
{
    if (use_int32(g))
        LAUNCH("max_pool2d backward", max_pool_backward_kernel<int>, g->planes * g->h * g->w, *g,
               dy, idx, dx);
    LAUNCH("max_pool2d backward", max_pool_backward_kernel<int64_t>, g->planes * g->h * g->w, *g,
           dy, idx, dx);
}

extern "C" cnn_status cnn_cuda_avg_pool2d_forward(cnn_context *ctx, const cnn_cuda_pool_geom *g,
                                                  const float *x, float *y)
{
    if (use_int32(g))
        LAUNCH("avg_pool2d", avg_pool_forward_kernel<int>, g->planes * g->oh * g->ow, *g, x, y);
    LAUNCH("avg_pool2d", avg_pool_forward_kernel<int64_t>, g->planes * g->oh * g->ow, *g, x, y);
}

extern "C" cnn_status cnn_cuda_avg_pool2d_backward(cnn_context *ctx, const cnn_cuda_pool_geom *g,
                                                   const float *dy, float *dx)
{
    if (use_int32(g))
        LAUNCH("avg_pool2d backward", avg_pool_backward_kernel<int>, g->planes * g->h * g->w, *g,
               dy, dx);
    LAUNCH("avg_pool2d backward", avg_pool_backward_kernel<int64_t>, g->planes * g->h * g->w, *g,
           dy, dx);
}

extern "C" cnn_status cnn_cuda_adaptive_avg_pool2d_forward(cnn_context *ctx,
                                                           const cnn_cuda_pool_geom *g,
                                                           const float *x, float *y)
{
    LAUNCH("adaptive_avg_pool2d", adaptive_forward_kernel, g->planes * g->oh * g->ow, *g, x, y);
}

extern "C" cnn_status cnn_cuda_adaptive_avg_pool2d_backward(cnn_context *ctx,
                                                            const cnn_cuda_pool_geom *g,
                                                            const float *dy, float *dx)
{
    LAUNCH("adaptive_avg_pool2d backward", adaptive_backward_kernel, g->planes * g->h * g->w, *g,
           dy, dx);
}
