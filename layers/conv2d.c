/* conv2d.c — 2-D convolution as torch.nn.functional.conv2d: shape rules, forward, backward
 * (dx, dw, db) and the CPU kernels (im2col / col2im around OpenBLAS sgemm, direct loops for
 * depthwise), and the backend choice for CUDA tensors. No GPU code here (that is cuda/conv2d.cu
 * and cuda/conv2d_cudnn.c); nothing kept between calls. */
#include "internal.h"
#include "gemm.h"
#include "parallel.h"

#include <limits.h>
#include <math.h>
#include <omp.h>
#if CNN_WITH_CUDA
#include <stdatomic.h>

#include "../cuda/cuda_api.h"
#endif

/* Everything a kernel needs, resolved once (defaults applied) and packed into the tape node. */
typedef struct conv_geom {
    int64_t n, c, h, w;      /* input */
    int64_t k, r, s;         /* weight: (K, C/groups, R, S) */
    int64_t p, q;            /* output height, width */
    int64_t cg, kg;          /* channels per group: in, out */
    int sh, sw, ph, pw, dh, dw, groups;
} conv_geom;
_Static_assert(sizeof(conv_geom) <= CNN_NODE_PARAM_BYTES, "conv_geom must fit a tape node");

/* What the forward applies to each output element as it writes it: y = act(conv + b + z), b[k]
 * per output channel (NULL: none), z of y's shape (NULL: none), act ReLU or none. The order of
 * the adds is cnn_conv2d's bias, then cnn_add's, so the fused op matches the three ops in turn
 * bit for bit. */
typedef struct conv_epi {
    const float *b, *z;
    bool relu;
} conv_epi;

// y, z: rows of pq floats (one output channel of one sample), channel bias bk
static void epi_row(float *y, const float *z, float bk, bool relu, int64_t pq)
{
    for (int64_t i = 0; i < pq; i++) {
        float v = y[i] + bk;
        if (z) v += z[i];
        y[i] = relu && v <= 0.0f ? 0.0f : v;
    }
}

static int64_t conv_macs(const conv_geom *g)
{
    return g->n * g->k * (g->p * g->q) * (g->cg * g->r * g->s);
}

static bool is_pointwise(const conv_geom *g)
{
    return g->r == 1 && g->s == 1 && g->sh == 1 && g->sw == 1 && g->ph == 0 && g->pw == 0;
}

/* Output columns q in [lo, hi) read input column q*sw + off inside [0, W). */
static void valid_cols(int64_t off, int64_t sw, int64_t w, int64_t q, int64_t *lo, int64_t *hi)
{
    int64_t a = off >= 0 ? 0 : (-off + sw - 1) / sw;
    int64_t b = (w - 1 - off) < 0 ? 0 : (w - 1 - off) / sw + 1;
    *lo = a < q ? a : q;
    *hi = b < q ? b : q;
    if (*hi < *lo) *hi = *lo;
}

/* x: (Cg, H, W) of one sample and group -> col: (Cg*R*S, P*Q), rows ld floats apart, zeros where
 * the window pads. */
static void im2col(const conv_geom *g, const float *x, float *col, int64_t ld)
{
    for (int64_t c = 0; c < g->cg; c++)
        for (int64_t r = 0; r < g->r; r++)
            for (int64_t s = 0; s < g->s; s++) {
                float *row = col + ((c * g->r + r) * g->s + s) * ld;
                int64_t off = s * g->dw - g->pw, lo, hi;
                valid_cols(off, g->sw, g->w, g->q, &lo, &hi);
                for (int64_t p = 0; p < g->p; p++) {
                    float *o = row + p * g->q;
                    int64_t hh = p * g->sh - g->ph + r * g->dh;
                    if (hh < 0 || hh >= g->h) {
                        memset(o, 0, (size_t)g->q * sizeof *o);
                        continue;
                    }
                    const float *xr = x + (c * g->h + hh) * g->w + off;
                    for (int64_t q = 0; q < lo; q++) o[q] = 0.0f;
                    if (g->sw == 1) memcpy(o + lo, xr + lo, (size_t)(hi - lo) * sizeof *o);
                    else
                        for (int64_t q = lo; q < hi; q++) o[q] = xr[q * g->sw];
                    for (int64_t q = hi; q < g->q; q++) o[q] = 0.0f;
                }
            }
}

/* The adjoint of im2col: col (Cg*R*S, P*Q), rows ld floats apart, is summed into dx (Cg, H, W). */
static void col2im(const conv_geom *g, const float *col, int64_t ld, float *dx)
{
    for (int64_t c = 0; c < g->cg; c++)
        for (int64_t r = 0; r < g->r; r++)
            for (int64_t s = 0; s < g->s; s++) {
                const float *row = col + ((c * g->r + r) * g->s + s) * ld;
                int64_t off = s * g->dw - g->pw, lo, hi;
                valid_cols(off, g->sw, g->w, g->q, &lo, &hi);
                for (int64_t p = 0; p < g->p; p++) {
                    int64_t hh = p * g->sh - g->ph + r * g->dh;
                    if (hh < 0 || hh >= g->h) continue;
                    const float *o = row + p * g->q;
                    float *xr = dx + (c * g->h + hh) * g->w + off;
                    if (g->sw == 1)
                        for (int64_t q = lo; q < hi; q++) xr[q] += o[q];
                    else
                        for (int64_t q = lo; q < hi; q++) xr[q * g->sw] += o[q];
                }
            }
}

/* ---- sample blocks -------------------------------------------------------------------------
 * The GEMM kernels' unit of work is a block of nb samples of one group: one single-threaded
 * sgemm whose nb * P * Q columns are the samples' output maps side by side. One sample at a
 * time (nb = 1, straight into the tensors) suits large maps; small ones (ResNet's last stages:
 * 7x7 at 224, 4x4 at 28 or 32) make too thin an sgemm (OpenBLAS, one thread, 512 x 4608
 * weights: 50 GFLOP/s on 16 columns, 89 on 256), so samples are blocked up to BLOCK_COLS
 * columns, while every thread still gets a block. 128 measured best on the 2-core machine
 * (BENCHMARKS.md): 4x4 maps 15% faster, 7x7 8%; wider blocks' im2col matrices outgrow the
 * cache. Per thread: cols for the im2col matrix, maps for a block of outputs (or of dy). */
#define BLOCK_COLS 128

typedef struct conv_work {
    int64_t nb, units; /* samples per block; blocks x groups */
    int nt;            /* threads */
    size_t col_floats, map_floats; /* per thread */
    float *cols, *maps;
} conv_work;

/* Samples the busiest of nt threads computes when the batch's n samples go in blocks of nb
 * (the last one shorter), each block once per group, dealt out as OpenMP's static schedule
 * deals loop iterations: thread t gets a contiguous run of units / nt units, one more for the
 * first units % nt threads. */
static int64_t busiest_thread(int64_t n, int64_t nb, int64_t groups, int nt)
{
    const int64_t blocks = (n + nb - 1) / nb, units = blocks * groups, q = units / nt;
    const int64_t r = units % nt, short_by = blocks * nb - n; /* the last block's shortfall */
    const int64_t last0 = (blocks - 1) * groups;            /* its first unit */
    int64_t worst = 0, s0 = 0;
    for (int t = 0; t < nt; t++) {
        const int64_t e0 = s0 + q + (t < r);
        const int64_t lo = s0 > last0 ? s0 : last0, in_last = e0 > lo ? e0 - lo : 0;
        const int64_t samples = (e0 - s0) * nb - in_last * short_by;
        if (samples > worst) worst = samples;
        s0 = e0;
    }
    return worst;
}

static cnn_status plan_work(const char *op, const conv_geom *g, conv_work *wk)
{
    const int64_t pq = g->p * g->q, crs = g->cg * g->r * g->s, rows = crs > g->kg ? crs : g->kg;
    const int max_nt = omp_get_max_threads();
    int64_t nb_max = pq >= BLOCK_COLS ? 1 : (BLOCK_COLS + pq - 1) / pq;
    if (nb_max > g->n) nb_max = g->n > 0 ? g->n : 1;
    while (nb_max > 1 && rows * nb_max * pq >= INT_MAX) nb_max--;
    /* The widest block that still gives every thread a unit and loads the busiest thread least:
     * 8 samples of 7x7 maps in blocks of 3 (at most 128 columns) load one thread with 6 samples
     * and the other with 2; blocks of 2 give each 4. */
    int64_t nb = 1, best = -1;
    for (int64_t c = nb_max; c >= 1; c--) {
        if (c > 1 && (g->n + c - 1) / c * g->groups < max_nt) continue;
        const int64_t load = busiest_thread(g->n, c, g->groups, max_nt);
        if (best < 0 || load < best) best = load, nb = c;
    }
    *wk = (conv_work){.nb = nb, .units = (g->n + nb - 1) / nb * g->groups, .nt = 1};
    /* Threads only when each gets a unit and the work outweighs waking them (tiny convs, as in
     * gradchecks, run far slower in parallel); else 1, and cnn_sgemm may split the sgemm
     * over the team itself (gemm.h). */
    if (max_nt > 1 && wk->units >= max_nt && cnn_par_worth(conv_macs(g))) wk->nt = max_nt;
    wk->col_floats = is_pointwise(g) && nb == 1 ? 0 : (size_t)(crs * nb * pq);
    wk->map_floats = nb == 1 ? 0 : (size_t)(g->kg * nb * pq);
    const size_t n = (size_t)wk->nt * (wk->col_floats + wk->map_floats);
    if (n == 0) return CNN_OK;
    wk->cols = malloc(n * sizeof *wk->cols);
    CNN_CHECK(wk->cols, CNN_ERR_OUT_OF_MEMORY, "%s: out of host memory for %zu floats of im2col "
              "buffers", op, n);
    wk->maps = wk->cols + (size_t)wk->nt * wk->col_floats;
    return CNN_OK;
}

/* The calling thread's buffers. */
static float *work_cols(const conv_work *wk)
{
    return wk->cols + (size_t)omp_get_thread_num() * wk->col_floats;
}

static float *work_maps(const conv_work *wk)
{
    return wk->maps + (size_t)omp_get_thread_num() * wk->map_floats;
}

/* A block's samples [n0, n0 + cnt): rows (channels) of pq floats, `stride` floats from one
 * sample to the next, <-> a (rows, cnt * pq) matrix of side-by-side maps. */
static void maps_gather(const float *src, int64_t stride, int64_t cnt, int64_t rows, int64_t pq,
                        float *m)
{
    for (int64_t j = 0; j < cnt; j++)
        for (int64_t r = 0; r < rows; r++)
            memcpy(m + r * cnt * pq + j * pq, src + j * stride + r * pq, (size_t)pq * sizeof *m);
}

static void maps_scatter(const float *m, int64_t cnt, int64_t rows, int64_t pq, float *dst,
                         int64_t stride)
{
    for (int64_t j = 0; j < cnt; j++)
        for (int64_t r = 0; r < rows; r++)
            memcpy(dst + j * stride + r * pq, m + r * cnt * pq + j * pq, (size_t)pq * sizeof *m);
}

/* The im2col matrix of the block's samples (group gi), side by side in cols; returns it, or
 * the sample itself where a pointwise conv of one sample needs no copy. */
static const float *block_cols(const conv_geom *g, const conv_work *wk, const float *x,
                               int64_t n0, int64_t cnt, int64_t gi)
{
    const int64_t hw = g->h * g->w, pq = g->p * g->q;
    const float *xg = x + (n0 * g->c + gi * g->cg) * hw;
    if (!wk->col_floats) return xg;
    float *col = work_cols(wk);
    for (int64_t j = 0; j < cnt; j++) im2col(g, xg + j * g->c * hw, col + j * pq, cnt * pq);
    return col;
}

/* ---- depthwise (one input channel per output channel): direct loops ----------------------------
 * Per (sample, channel) the sgemm would be (K/groups) x (P*Q) x (R*S), too thin to pay for its
 * packing and the im2col copy; these loops read each input row in place. They serve convs with
 * C/groups == 1 and groups > 1 (depthwise, channel multipliers) in every pass. A single-channel
 * input (C = 1, groups 1: LeNet-5's first conv) is another matter: its K x (R*S) x (P*Q) sgemm
 * beats the loops 2.5-4x forward and 3-5x for the filter gradient (BENCHMARKS.md), but its data
 * gradient, an sgemm one row tall, is 1.3-2x slower: so only that pass takes the loops. */
static bool is_depthwise(const conv_geom *g) { return g->cg == 1 && g->groups > 1; }
static bool data_grad_direct(const conv_geom *g) { return g->cg == 1; }

/* x: (N, C, H, W), w: (K, 1, R, S) -> y: (N, K, P, Q) = act(conv + b + z) (conv_epi). */
static void depthwise_forward(const conv_geom *g, const float *x, const float *w,
                              const conv_epi *e, float *y)
{
    const float *b = e->b;
    const int64_t planes = g->n * g->k, pq = g->p * g->q;
    #pragma omp parallel for schedule(static) if (cnn_par_worth(conv_macs(g)))
    for (int64_t nk = 0; nk < planes; nk++) {
        const int64_t n = nk / g->k, k = nk % g->k, c = k / g->kg;
        const float *xc = x + (n * g->c + c) * g->h * g->w;
        float *yp = y + nk * pq;
        const float bk = b ? b[k] : 0.0f;
        for (int64_t i = 0; i < pq; i++) yp[i] = bk;
        for (int64_t r = 0; r < g->r; r++)
            for (int64_t s = 0; s < g->s; s++) {
                const float wv = w[(k * g->r + r) * g->s + s];
                int64_t off = s * g->dw - g->pw, lo, hi;
                valid_cols(off, g->sw, g->w, g->q, &lo, &hi);
                for (int64_t p = 0; p < g->p; p++) {
                    int64_t hh = p * g->sh - g->ph + r * g->dh;
                    if (hh < 0 || hh >= g->h) continue;
                    const float *xr = xc + hh * g->w + off;
                    float *yr = yp + p * g->q;
                    if (g->sw == 1)
                        for (int64_t q = lo; q < hi; q++) yr[q] += wv * xr[q];
                    else
                        for (int64_t q = lo; q < hi; q++) yr[q] += wv * xr[q * g->sw];
                }
            }
        if (e->z || e->relu) epi_row(yp, e->z ? e->z + nk * pq : NULL, 0.0f, e->relu, pq);
    }
}

/* dy: (N, K, P, Q), w: (K, 1, R, S) -> dx: (N, C, H, W), every element written. */
static void depthwise_backward_data(const conv_geom *g, const float *dy, const float *w, float *dx)
{
    const int64_t planes = g->n * g->c, pq = g->p * g->q, hw = g->h * g->w;
    #pragma omp parallel for schedule(static) if (cnn_par_worth(conv_macs(g)))
    for (int64_t nc = 0; nc < planes; nc++) {
        const int64_t n = nc / g->c, c = nc % g->c;
        float *dxp = dx + nc * hw;
        memset(dxp, 0, (size_t)hw * sizeof *dxp);
        for (int64_t k = c * g->kg; k < (c + 1) * g->kg; k++) {
            const float *dyp = dy + (n * g->k + k) * pq;
            for (int64_t r = 0; r < g->r; r++)
                for (int64_t s = 0; s < g->s; s++) {
                    const float wv = w[(k * g->r + r) * g->s + s];
                    int64_t off = s * g->dw - g->pw, lo, hi;
                    valid_cols(off, g->sw, g->w, g->q, &lo, &hi);
                    for (int64_t p = 0; p < g->p; p++) {
                        int64_t hh = p * g->sh - g->ph + r * g->dh;
                        if (hh < 0 || hh >= g->h) continue;
                        float *xr = dxp + hh * g->w + off;
                        const float *dr = dyp + p * g->q;
                        if (g->sw == 1)
                            for (int64_t q = lo; q < hi; q++) xr[q] += wv * dr[q];
                        else
                            for (int64_t q = lo; q < hi; q++) xr[q * g->sw] += wv * dr[q];
                    }
                }
        }
    }
}

/* part[j]: sample n0 + j's share of dw[k, 0, r, s], summed over (p, q) in that order, for
 * nb <= DWF_SAMPLES samples at once. Each sum is a serial chain of float adds whose order fixes
 * the result; several chains side by side hide the add latency without reordering any sum. */
#define DWF_SAMPLES 8
static void depthwise_filter_part(const conv_geom *g, const float *dy, const float *x, int64_t k,
                                  int64_t r, int64_t s, int64_t n0, int64_t nb, float *part)
{
    const int64_t pq = g->p * g->q, hw = g->h * g->w, c = k / g->kg;
    int64_t off = s * g->dw - g->pw, lo, hi;
    valid_cols(off, g->sw, g->w, g->q, &lo, &hi);
    const float *xc = x + (n0 * g->c + c) * hw + off, *dyp = dy + (n0 * g->k + k) * pq;
    const int64_t xn = g->c * hw, dyn = g->k * pq; /* sample strides */
    for (int64_t j = 0; j < nb; j++) part[j] = 0;
    for (int64_t p = 0; p < g->p; p++) {
        int64_t hh = p * g->sh - g->ph + r * g->dh;
        if (hh < 0 || hh >= g->h) continue;
        const float *xr = xc + hh * g->w, *dr = dyp + p * g->q;
        for (int64_t q = lo; q < hi; q++)
            for (int64_t j = 0; j < nb; j++) part[j] += dr[j * dyn + q] * xr[j * xn + q * g->sw];
    }
}

/* dy: (N, K, P, Q), x: (N, C, H, W) -> dw: (K, 1, R, S), summed over the batch. */
static void depthwise_backward_filter(const conv_geom *g, const float *dy, const float *x,
                                      float *dw)
{
    #pragma omp parallel for schedule(static) if (cnn_par_worth(conv_macs(g)))
    for (int64_t k = 0; k < g->k; k++)
        for (int64_t r = 0; r < g->r; r++)
            for (int64_t s = 0; s < g->s; s++) {
                double acc = 0;
                float part[DWF_SAMPLES];
                int64_t n0 = 0; /* full blocks: a constant count keeps the sums in registers */
                for (; n0 + DWF_SAMPLES <= g->n; n0 += DWF_SAMPLES) {
                    depthwise_filter_part(g, dy, x, k, r, s, n0, DWF_SAMPLES, part);
                    for (int j = 0; j < DWF_SAMPLES; j++) acc += part[j];
                }
                if (n0 < g->n) depthwise_filter_part(g, dy, x, k, r, s, n0, g->n - n0, part);
                for (int64_t j = 0; j < g->n - n0; j++) acc += part[j];
                dw[(k * g->r + r) * g->s + s] = (float)acc;
            }
}

/* x: (N, C, H, W), w: (K, Cg, R, S) -> y: (N, K, P, Q) = act(conv + b + z) (conv_epi). */
static cnn_status conv_forward_cpu(const conv_geom *g, const float *x, const float *w,
                                   const conv_epi *e, float *y)
{
    if (is_depthwise(g)) {
        depthwise_forward(g, x, w, e, y);
        return CNN_OK;
    }
    const int64_t crs = g->cg * g->r * g->s, pq = g->p * g->q, ystride = g->k * pq;
    conv_work wk;
    CNN_TRY(plan_work("conv2d", g, &wk));
    #pragma omp parallel for num_threads(wk.nt) schedule(static) if (wk.nt > 1)
    for (int64_t u = 0; u < wk.units; u++) {
        const int64_t n0 = u / g->groups * wk.nb, gi = u % g->groups;
        const int64_t cnt = g->n - n0 < wk.nb ? g->n - n0 : wk.nb, ld = cnt * pq;
        const float *bmat = block_cols(g, &wk, x, n0, cnt, gi);
        float *yg = y + n0 * ystride + gi * g->kg * pq, *out = cnt > 1 ? work_maps(&wk) : yg;
        cnn_sgemm(false, false, (int)g->kg, (int)ld, (int)crs, 1.0f, w + gi * g->kg * crs,
                  (int)crs, bmat, (int)ld, 0.0f, out, (int)ld);
        if (cnt > 1) maps_scatter(out, cnt, g->kg, pq, yg, ystride);
        if (e->b || e->z || e->relu) /* while the block is still in cache */
            for (int64_t j = 0; j < cnt; j++)
                for (int64_t k = 0; k < g->kg; k++) {
                    const int64_t at = (yg - y) + j * ystride + k * pq;
                    epi_row(y + at, e->z ? e->z + at : NULL, e->b ? e->b[gi * g->kg + k] : 0.0f,
                            e->relu, pq);
                }
    }
    free(wk.cols);
    return CNN_OK;
}

/* With stride 1, dx is itself a stride-1 conv of dy (padded by dil*(R-1) - pad) with the
 * weights flipped in space and transposed per group, so the forward's im2col + sgemm serves:
 * its sgemm has depth K*R*S instead of K, and no col2im scatter is needed. But that sgemm is
 * only C/groups rows tall: for few input channels (LeNet-5's second conv has 6) the col2im
 * path's taller sgemm wins, 3-4x on that conv (BENCHMARKS.md); from 16 channels on as before. */
static bool data_grad_as_conv(const conv_geom *g)
{
    return g->sh == 1 && g->sw == 1 && g->ph <= g->dh * (g->r - 1) &&
           g->pw <= g->dw * (g->s - 1) && !is_pointwise(g) && g->cg >= 16 &&
           g->kg * g->r * g->s * g->h * g->w < INT_MAX;
}

/* That conv also multiplies weights by the zeros padding dy, terms the true gradient does not
 * have: an inf weight would put inf * 0 = NaN into dx where PyTorch's (and the col2im path's)
 * is finite. So it is taken only when every weight is finite (one pass over w: K*C/g*R*S reads
 * against the conv's N*P*Q times as many multiply-adds). */
static bool all_finite(const float *w, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(w[i])) return false;
    return true;
}

/* dy: (N, K, P, Q), w: (K, Cg, R, S) -> dx: (N, C, H, W), every element written. */
static cnn_status conv_backward_data_cpu(const conv_geom *g, const float *dy, const float *w,
                                         float *dx)
{
    const int64_t crs = g->cg * g->r * g->s, pq = g->p * g->q;
    if (data_grad_direct(g)) {
        depthwise_backward_data(g, dy, w, dx);
        return CNN_OK;
    }
    if (data_grad_as_conv(g) && all_finite(w, g->k * crs)) {
        const int64_t rs = g->r * g->s;
        conv_geom t = *g;
        t.c = g->k, t.h = g->p, t.w = g->q, t.k = g->c, t.p = g->h, t.q = g->w;
        t.cg = g->kg, t.kg = g->cg;
        t.ph = (int)(g->dh * (g->r - 1) - g->ph), t.pw = (int)(g->dw * (g->s - 1) - g->pw);
        /* wt: (C, Kg, R, S) = w: (K, Cg, R, S) flipped in R and S, Kg <-> Cg within each group */
        float *wt = malloc((size_t)(g->k * crs) * sizeof *wt);
        CNN_CHECK(wt, CNN_ERR_OUT_OF_MEMORY, "conv2d backward: out of host memory");
        for (int64_t gi = 0; gi < g->groups; gi++)
            for (int64_t k = 0; k < g->kg; k++)
                for (int64_t c = 0; c < g->cg; c++) {
                    const float *src = w + ((gi * g->kg + k) * g->cg + c) * rs;
                    float *dst = wt + ((gi * g->cg + c) * g->kg + k) * rs;
                    for (int64_t i = 0; i < rs; i++) dst[rs - 1 - i] = src[i];
                }
        cnn_status st = conv_forward_cpu(&t, dy, wt, &(conv_epi){0}, dx);
        free(wt);
        return st;
    }
    conv_work wk;
    CNN_TRY(plan_work("conv2d backward", g, &wk));
    const int64_t hw = g->h * g->w, dystride = g->k * pq;
    /* col2im adds into dx; only a pointwise conv of one sample per block writes dx directly. */
    if (wk.col_floats) memset(dx, 0, (size_t)(g->n * g->c * hw) * sizeof *dx);
    #pragma omp parallel for num_threads(wk.nt) schedule(static) if (wk.nt > 1)
    for (int64_t u = 0; u < wk.units; u++) {
        const int64_t n0 = u / g->groups * wk.nb, gi = u % g->groups;
        const int64_t cnt = g->n - n0 < wk.nb ? g->n - n0 : wk.nb, ld = cnt * pq;
        float *dxg = dx + (n0 * g->c + gi * g->cg) * hw;
        const float *dyg = dy + n0 * dystride + gi * g->kg * pq;
        if (cnt > 1) {
            float *m = work_maps(&wk);
            maps_gather(dyg, dystride, cnt, g->kg, pq, m);
            dyg = m;
        }
        float *dst = wk.col_floats ? work_cols(&wk) : dxg;
        cnn_sgemm(true, false, (int)crs, (int)ld, (int)g->kg, 1.0f, w + gi * g->kg * crs,
                  (int)crs, dyg, (int)ld, 0.0f, dst, (int)ld);
        if (wk.col_floats)
            for (int64_t j = 0; j < cnt; j++) col2im(g, dst + j * pq, ld, dxg + j * g->c * hw);
    }
    free(wk.cols);
    return CNN_OK;
}

/* dy: (N, K, P, Q), x: (N, C, H, W) -> dw: (K, Cg, R, S) (overwritten) and db: (K) (overwritten,
 * when not NULL), both summed over the batch. dw may be NULL when only db is wanted. */
static cnn_status conv_backward_filter_cpu(const conv_geom *g, const float *dy, const float *x,
                                           float *dw, float *db)
{
    const int64_t crs = g->cg * g->r * g->s, pq = g->p * g->q;
    if (db) {
        #pragma omp parallel for schedule(static) if (g->n * g->k * pq > 65536)
        for (int64_t k = 0; k < g->k; k++) {
            double acc = 0;
            for (int64_t n = 0; n < g->n; n++) {
                const float *d = dy + (n * g->k + k) * pq;
                float part = 0;
                for (int64_t i = 0; i < pq; i++) part += d[i];
                acc += part;
            }
            db[k] = (float)acc;
        }
    }
    if (!dw) return CNN_OK;
    if (is_depthwise(g)) {
        depthwise_backward_filter(g, dy, x, dw);
        return CNN_OK;
    }
    conv_work wk;
    const size_t wsize = (size_t)(g->k * crs);
    float *partial = NULL;
    memset(dw, 0, wsize * sizeof *dw);
    CNN_TRY(plan_work("conv2d backward", g, &wk));
    if (wk.nt > 1) {
        /* One private dw per thread, summed at the end: the samples of a batch all add into
         * the same weights. */
        partial = calloc((size_t)wk.nt * wsize, sizeof *partial);
        if (!partial) {
            free(wk.cols);
            return cnn_error(CNN_ERR_OUT_OF_MEMORY, "conv2d backward: out of host memory");
        }
    }
    const int64_t dystride = g->k * pq;
    #pragma omp parallel for num_threads(wk.nt) schedule(static) if (wk.nt > 1)
    for (int64_t u = 0; u < wk.units; u++) {
        const int64_t n0 = u / g->groups * wk.nb, gi = u % g->groups;
        const int64_t cnt = g->n - n0 < wk.nb ? g->n - n0 : wk.nb, ld = cnt * pq;
        const int t = omp_get_thread_num();
        const float *dyg = dy + n0 * dystride + gi * g->kg * pq;
        if (cnt > 1) {
            float *m = work_maps(&wk);
            maps_gather(dyg, dystride, cnt, g->kg, pq, m);
            dyg = m;
        }
        float *acc = (partial ? partial + (size_t)t * wsize : dw) + gi * g->kg * crs;
        const float *bmat = block_cols(g, &wk, x, n0, cnt, gi);
        cnn_sgemm(false, true, (int)g->kg, (int)crs, (int)ld, 1.0f, dyg, (int)ld, bmat, (int)ld,
                  1.0f, acc, (int)crs);
    }
    if (partial) {
        for (int t = 0; t < wk.nt; t++)
            for (size_t i = 0; i < wsize; i++) dw[i] += partial[(size_t)t * wsize + i];
    }
    free(partial);
    free(wk.cols);
    return CNN_OK;
}

/* ---- backend choice ------------------------------------------------------------------------
 * CPU tensors: the kernels above. CUDA tensors: cuDNN when built and preferred (AUTO / CUDNN),
 * else, and wherever cuDNN declines (CNN_ERR_UNSUPPORTED), the hand-written cuda/conv2d.cu.
 * Every path saves x and w, so one backward function serves every device. */
enum { PASS_FORWARD, PASS_DATA, PASS_FILTER };

#if CNN_WITH_CUDA
/* forward: (x, w, epilogue e) -> out = y; data: (dy, w) -> out = dx; filter: (dy, x) -> dw, db.
 * The hand-written forward applies the epilogue as it stores; after a cuDNN forward, one more
 * kernel does (bias, residual and ReLU in one pass), or cuDNN adds a lone bias. */
static cnn_status run_gpu(int pass, const conv_geom *g, const float *a, const float *b,
                          const conv_epi *e, float *out, float *db)
{
    cnn_cuda_conv c = {.n = g->n, .c = g->c, .h = g->h, .w = g->w, .k = g->k, .r = g->r,
                       .s = g->s, .p = g->p, .q = g->q, .cg = g->cg, .kg = g->kg, .sh = g->sh,
                       .sw = g->sw, .ph = g->ph, .pw = g->pw, .dh = g->dh, .dw = g->dw,
                       .groups = g->groups};
    cnn_context *ctx = cnn_ctx();
    const cnn_cuda_epilogue epi = e ? (cnn_cuda_epilogue){e->b, e->z, e->relu}
                                    : (cnn_cuda_epilogue){0};
#if CNN_WITH_CUDNN
    cnn_backend pref = cnn_get_backend();
    if (pref == CNN_BACKEND_AUTO || pref == CNN_BACKEND_CUDNN) {
        const bool after = epi.z || epi.relu;
        const float *bias = after ? NULL : epi.b;
        cnn_status st =
            pass == PASS_FORWARD ? cnn_cudnn_conv2d_forward(ctx, &c, a, b, bias, out)
            : pass == PASS_DATA  ? cnn_cudnn_conv2d_backward_data(ctx, &c, a, b, out)
                                 : cnn_cudnn_conv2d_backward_filter(ctx, &c, a, b, out, db);
        if (st == CNN_OK && pass == PASS_FORWARD && after)
            st = cnn_cuda_conv2d_epilogue(ctx, &c, &epi, out);
        if (st != CNN_ERR_UNSUPPORTED) return st;
        /* Said once per process; the message is dropped, as the hand-written kernel serves. */
        static atomic_flag logged = ATOMIC_FLAG_INIT;
        if (!atomic_flag_test_and_set(&logged))
            cnn_log_debug("conv2d: %s; using the hand-written CUDA kernel", cnn_last_error());
        cnn_clear_error();
    }
#endif
    return pass == PASS_FORWARD ? cnn_cuda_conv2d_forward_fused(ctx, &c, a, b, &epi, out)
           : pass == PASS_DATA  ? cnn_cuda_conv2d_backward_data(ctx, &c, a, b, out)
                                : cnn_cuda_conv2d_backward_filter(ctx, &c, a, b, out, db);
}
#endif

/* x: (N, C, H, W), w: (K, Cg, R, S) -> y: (N, K, P, Q) = act(conv + b + z), on the CPU or the
 * GPU. */
static cnn_status run_forward(const conv_geom *g, bool gpu, const float *x, const float *w,
                              const conv_epi *e, float *y)
{
#if CNN_WITH_CUDA
    if (gpu) return run_gpu(PASS_FORWARD, g, x, w, e, y, NULL);
#else
    (void)gpu;
#endif
    return conv_forward_cpu(g, x, w, e, y);
}

/* dy: (N, K, P, Q), w: (K, Cg, R, S) -> dx: (N, C, H, W). */
static cnn_status run_backward_data(const conv_geom *g, bool gpu, const float *dy,
                                    const float *w, float *dx)
{
#if CNN_WITH_CUDA
    if (gpu) return run_gpu(PASS_DATA, g, dy, w, NULL, dx, NULL);
#else
    (void)gpu;
#endif
    return conv_backward_data_cpu(g, dy, w, dx);
}

/* dy: (N, K, P, Q), x: (N, C, H, W) -> dw: (K, Cg, R, S) and db: (K), either may be NULL. */
static cnn_status run_backward_filter(const conv_geom *g, bool gpu, const float *dy,
                                      const float *x, float *dw, float *db)
{
#if CNN_WITH_CUDA
    if (gpu) return run_gpu(PASS_FILTER, g, dy, x, NULL, dw, db);
#else
    (void)gpu;
#endif
    return conv_backward_filter_cpu(g, dy, x, dw, db);
}

/* ---- autograd ----------------------------------------------------------------------------- */
/* dx[0..2] (x, w, b, those the node wants) from the conv's output gradient dy; the node saved
 * x and w first. */
static cnn_status conv_grads(const cnn_node *nd, const conv_geom *g, const cnn_tensor *dy,
                             cnn_tensor **dx)
{
    const cnn_tensor *x = nd->saved[0], *w = nd->saved[1];
    cnn_status st = CNN_OK;
    if (nd->in[0].needs_grad) {
        CNN_TRYG(cnn_tensor_empty(x->shape, CNN_F32, x->device, &dx[0]));
        CNN_TRYG(run_backward_data(g, cnn_on_cuda(x), cnn_f32(dy), cnn_f32(w), cnn_f32(dx[0])));
    }
    bool want_w = nd->in[1].needs_grad, want_b = nd->n_inputs > 2 && nd->in[2].needs_grad;
    if (want_w) CNN_TRYG(cnn_tensor_empty(w->shape, CNN_F32, w->device, &dx[1]));
    if (want_b) CNN_TRYG(cnn_tensor_empty(CNN_SHAPE(g->k), CNN_F32, w->device, &dx[2]));
    if (want_w || want_b)
        CNN_TRYG(run_backward_filter(g, cnn_on_cuda(x), cnn_f32(dy), cnn_f32(x),
                                     want_w ? cnn_f32(dx[1]) : NULL,
                                     want_b ? cnn_f32(dx[2]) : NULL));
done:
    return st;
}

static cnn_status conv2d_backward(cnn_node *nd, const cnn_tensor *dy, cnn_tensor **dx)
{
    conv_geom g;
    memcpy(&g, nd->params, sizeof g);
    return conv_grads(nd, &g, dy, dx);
}

/* The fused op's node: inputs (x, w, b, z); saved x, w, and y when there is a ReLU. */
typedef struct fused_node {
    conv_geom g;
    bool relu;
} fused_node;
_Static_assert(sizeof(fused_node) <= CNN_NODE_PARAM_BYTES, "fused_node must fit a tape node");

static cnn_status conv2d_fused_backward(cnn_node *nd, const cnn_tensor *dy, cnn_tensor **dx)
{
    fused_node f;
    memcpy(&f, nd->params, sizeof f);
    cnn_tensor *dpre = NULL; /* the gradient before the ReLU: of conv + b + z */
    if (f.relu) CNN_TRY(cnn_relu_grad(nd->saved[2], dy, &dpre));
    const cnn_tensor *d = f.relu ? dpre : dy;
    cnn_status st = conv_grads(nd, &f.g, d, dx);
    if (st == CNN_OK && nd->in[3].needs_grad) dx[3] = cnn_tensor_retain((cnn_tensor *)d);
    cnn_tensor_free(&dpre);
    return st;
}

/* ---- shape rules -------------------------------------------------------------------------- */
static cnn_status conv_resolve(const cnn_tensor *x, const cnn_tensor *w, const cnn_tensor *b,
                               const cnn_conv2d_params *p, conv_geom *g)
{
    static const cnn_conv2d_params defaults;
    if (!p) p = &defaults;
    CNN_TRY(cnn_check_f32("conv2d", "x", x));
    CNN_TRY(cnn_check_f32("conv2d", "w", w));
    if (b) CNN_TRY(cnn_check_f32("conv2d", "b", b));
    CNN_TRY(cnn_check_same_device("conv2d", x, "x", w, "w"));
    CNN_TRY(cnn_check_same_device("conv2d", x, "x", b, "b"));
    CNN_CHECK(x->shape.ndim == 4, CNN_ERR_SHAPE, "conv2d: input must be 4-D (N, C, H, W), got %s",
              cnn_shape_of(x));
    CNN_CHECK(w->shape.ndim == 4, CNN_ERR_SHAPE,
              "conv2d: weight must be 4-D (K, C/groups, R, S), got %s", cnn_shape_of(w));
    for (int i = 0; i < 2; i++) {
        CNN_CHECK(p->stride[i] >= 0 && p->padding[i] >= 0 && p->dilation[i] >= 0,
                  CNN_ERR_INVALID_ARG,
                  "conv2d: stride (%d, %d), padding (%d, %d) and dilation (%d, %d) must not be "
                  "negative", p->stride[0], p->stride[1], p->padding[0], p->padding[1],
                  p->dilation[0], p->dilation[1]);
    }
    CNN_CHECK(p->groups >= 0, CNN_ERR_INVALID_ARG, "conv2d: groups %d is negative", p->groups);
    *g = (conv_geom){
        .n = x->shape.d[0], .c = x->shape.d[1], .h = x->shape.d[2], .w = x->shape.d[3],
        .k = w->shape.d[0], .r = w->shape.d[2], .s = w->shape.d[3],
        .sh = p->stride[0] ? p->stride[0] : 1, .sw = p->stride[1] ? p->stride[1] : 1,
        .ph = p->padding[0], .pw = p->padding[1],
        .dh = p->dilation[0] ? p->dilation[0] : 1, .dw = p->dilation[1] ? p->dilation[1] : 1,
        .groups = p->groups ? p->groups : 1,
    };
    g->cg = w->shape.d[1];
    CNN_CHECK(g->k > 0 && g->cg > 0 && g->r > 0 && g->s > 0, CNN_ERR_SHAPE,
              "conv2d: weight %s has an empty dimension", cnn_shape_of(w));
    CNN_CHECK(g->k % g->groups == 0, CNN_ERR_SHAPE,
              "conv2d: weight %s has %lld output channels, not divisible by groups %d",
              cnn_shape_of(w), (long long)g->k, g->groups);
    CNN_CHECK(g->c == g->cg * g->groups, CNN_ERR_SHAPE,
              "conv2d: input %s has %lld channels, weight %s expects %lld (groups %d)",
              cnn_shape_of(x), (long long)g->c, cnn_shape_of(w), (long long)(g->cg * g->groups),
              g->groups);
    g->kg = g->k / g->groups;
    if (b)
        CNN_CHECK(b->shape.ndim == 1 && b->shape.d[0] == g->k, CNN_ERR_SHAPE,
                  "conv2d: bias %s does not match weight %s (expected (%lld))", cnn_shape_of(b),
                  cnn_shape_of(w), (long long)g->k);
    g->p = (g->h + 2 * g->ph - g->dh * (g->r - 1) - 1) / g->sh + 1;
    g->q = (g->w + 2 * g->pw - g->dw * (g->s - 1) - 1) / g->sw + 1;
    /* C's division truncates toward zero, so a negative numerator must be caught first. */
    CNN_CHECK(g->h + 2 * g->ph - g->dh * (g->r - 1) - 1 >= 0 &&
              g->w + 2 * g->pw - g->dw * (g->s - 1) - 1 >= 0, CNN_ERR_SHAPE,
              "conv2d: input %s is smaller than the weight %s's window (padding (%d, %d), "
              "dilation (%d, %d)): the output would be empty", cnn_shape_of(x), cnn_shape_of(w),
              g->ph, g->pw, g->dh, g->dw);
    CNN_CHECK(g->cg * g->r * g->s * g->p * g->q < INT_MAX && g->k * g->cg * g->r * g->s < INT_MAX,
              CNN_ERR_UNSUPPORTED, "conv2d: input %s with weight %s is too large for one sgemm",
              cnn_shape_of(x), cnn_shape_of(w));
    return CNN_OK;
}

/* The forward of cnn_conv2d (z NULL, act NONE) and cnn_conv2d_fused: resolved shapes, one
 * output written with the epilogue, and a node that saves what the backward needs. */
static cnn_status conv2d_run(const char *op, const cnn_tensor *x, const cnn_tensor *w,
                             const cnn_tensor *b, const cnn_tensor *z, bool relu,
                             const cnn_conv2d_params *p, cnn_tensor **y)
{
    CNN_CHECK(y, CNN_ERR_INVALID_ARG, "%s: y is NULL", op);
    *y = NULL;
    conv_geom g;
    CNN_TRY(conv_resolve(x, w, b, p, &g));
    if (z) {
        CNN_TRY(cnn_check_f32(op, "z", z));
        CNN_TRY(cnn_check_same_device(op, x, "x", z, "z"));
        cnn_shape ys = CNN_SHAPE(g.n, g.k, g.p, g.q);
        CNN_CHECK(cnn_shape_equal(z->shape, ys), CNN_ERR_SHAPE,
                  "%s: z %s does not match the output (%lld, %lld, %lld, %lld)", op,
                  cnn_shape_of(z), (long long)g.n, (long long)g.k, (long long)g.p,
                  (long long)g.q);
    }
    cnn_status st = CNN_OK;
    cnn_tensor *xc = NULL, *wc = NULL, *bc = NULL, *zc = NULL;
    CNN_TRYG(cnn_contig(x, &xc));
    CNN_TRYG(cnn_contig(w, &wc));
    if (b) CNN_TRYG(cnn_contig(b, &bc));
    if (z) CNN_TRYG(cnn_contig(z, &zc));
    CNN_TRYG(cnn_tensor_empty(CNN_SHAPE(g.n, g.k, g.p, g.q), CNN_F32, x->device, y));
    const conv_epi e = {bc ? cnn_f32(bc) : NULL, zc ? cnn_f32(zc) : NULL, relu};
    CNN_TRYG(run_forward(&g, cnn_on_cuda(x), cnn_f32(xc), cnn_f32(wc), &e, cnn_f32(*y)));
    const cnn_tensor *in[4] = {x, w, b, z};
    const bool fused = z || relu;
    if (cnn_should_record(in, fused ? 4 : 3)) {
        cnn_node *nd = NULL;
        if (fused) {
            fused_node f = {g, relu};
            CNN_TRYG(cnn_tape_record(op, conv2d_fused_backward, *y, in, 4, &f, sizeof f, &nd));
        } else {
            CNN_TRYG(cnn_tape_record(op, conv2d_backward, *y, in, 3, &g, sizeof g, &nd));
        }
        cnn_node_save(nd, xc);
        cnn_node_save(nd, wc);
        if (relu) cnn_node_save(nd, *y);
    }
done:
    cnn_tensor_free(&xc);
    cnn_tensor_free(&wc);
    cnn_tensor_free(&bc);
    cnn_tensor_free(&zc);
    if (st != CNN_OK) cnn_tensor_free(y);
    return st;
}

cnn_status cnn_conv2d(const cnn_tensor *x, const cnn_tensor *w, const cnn_tensor *b,
                      const cnn_conv2d_params *p, cnn_tensor **y)
{
    return conv2d_run("conv2d", x, w, b, NULL, false, p, y);
}

cnn_status cnn_conv2d_fused(const cnn_tensor *x, const cnn_tensor *w, const cnn_tensor *b,
                            const cnn_tensor *z, cnn_activation act, const cnn_conv2d_params *p,
                            cnn_tensor **y)
{
    if (y) *y = NULL;
    CNN_CHECK(act == CNN_ACT_NONE || act == CNN_ACT_RELU, CNN_ERR_INVALID_ARG,
              "conv2d_fused: activation %d is not CNN_ACT_NONE (0) or CNN_ACT_RELU (1)", (int)act);
    return conv2d_run("conv2d_fused", x, w, b, z, act == CNN_ACT_RELU, p, y);
}
