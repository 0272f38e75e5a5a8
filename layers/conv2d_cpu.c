/* conv2d_cpu.c — the CPU kernels of 2-D convolution (conv2d_cpu.h): im2col / col2im around the
 * OpenBLAS sgemm (layers/gemm.c), split over the OpenMP team by blocks of samples, and direct
 * loops for depthwise convs. Forward with its epilogue, backward-data, backward-filter and the
 * bias gradient. Shape rules, the backend choice and autograd are in conv2d.c. */
#include "conv2d_cpu.h"
#include "gemm.h"
#include "parallel.h"

#include <limits.h>
#include <math.h>
#include <omp.h>

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
 * nb <= DWF_SAMPLES samples at once. Each sum is a serial chain of adds whose order fixes the
 * result; several chains side by side hide the add latency without reordering any sum. They are
 * double: a float sum of a 512 x 512 map's terms comes out 0.3% off (as a scalar chain, double
 * adds cost what float ones do). */
#define DWF_SAMPLES 8
static void depthwise_filter_part(const conv_geom *g, const float *dy, const float *x, int64_t k,
                                  int64_t r, int64_t s, int64_t n0, int64_t nb, double *part)
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
            for (int64_t j = 0; j < nb; j++)
                part[j] += (double)dr[j * dyn + q] * xr[j * xn + q * g->sw];
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
                double part[DWF_SAMPLES];
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
cnn_status cnn_conv2d_cpu_forward(const conv_geom *g, const float *x, const float *w,
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
cnn_status cnn_conv2d_cpu_backward_data(const conv_geom *g, const float *dy, const float *w,
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
        cnn_status st = cnn_conv2d_cpu_forward(&t, dy, wt, &(conv_epi){0}, dx);
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
cnn_status cnn_conv2d_cpu_backward_filter(const conv_geom *g, const float *dy, const float *x,
                                          float *dw, float *db)
{
    const int64_t crs = g->cg * g->r * g->s, pq = g->p * g->q;
    if (db) {
        #pragma omp parallel for schedule(static) if (g->n * g->k * pq > 65536)
        for (int64_t k = 0; k < g->k; k++) {
            double acc = 0; /* a float sum of a 512 x 512 map came out 0.3% off */
            for (int64_t n = 0; n < g->n; n++) {
                const float *d = dy + (n * g->k + k) * pq;
                for (int64_t i = 0; i < pq; i++) acc += d[i];
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
