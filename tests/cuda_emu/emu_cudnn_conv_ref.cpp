/* emu_cudnn_conv_ref.cpp — the emulated cuDNN's convolution arithmetic: the geometry of a
 * descriptor set (cuDNN's output formula, every mismatch BAD_PARAM) and the forward,
 * backward-data and backward-filter loops, with groups, dilation, the flipped filter of
 * CUDNN_CONVOLUTION and alpha/beta, summed in double (or, for the non-deterministic algorithms,
 * in float in an order that changes from call to call). emu_cudnn_conv.cpp holds the cuDNN
 * calls and algorithms built on them. Test infrastructure: never touches a real GPU. */
#include "emu_cudnn_internal.h"

#include <algorithm>
#include <atomic>
#include <vector>

namespace cnn_emu {

/* x (N, C, H, W), w (K, C/groups, R, S), y (N, K, P, Q) with cuDNN's output formula
 * P = 1 + (H + 2 pad - ((R - 1) dilation + 1)) / stride; any mismatch is BAD_PARAM. */
cudnnStatus_t conv_geom(const char *fn, const cudnnTensorStruct *x, const cudnnFilterStruct *w,
                        const cudnnConvolutionStruct *cv, const cudnnTensorStruct *y, geom *g)
{
    if (!ready(x) || !ready(w) || !cv || !cv->set || !ready(y)) {
        say("%s: a descriptor is NULL or was never set", fn);
        return CUDNN_STATUS_BAD_PARAM;
    }
    g->n = x->n, g->c = x->c, g->h = x->h, g->w = x->w;
    g->k = w->k, g->cg = w->c, g->r = w->h, g->s = w->w;
    g->ph = cv->ph, g->pw = cv->pw, g->sh = cv->sh, g->sw = cv->sw, g->dh = cv->dh, g->dw = cv->dw;
    g->groups = cv->groups;
    g->flip = cv->mode == CUDNN_CONVOLUTION;
    if (g->cg * g->groups != g->c || g->k % g->groups != 0) {
        say("%s: x has %d channels, filter (%d, %d, %d, %d) with %d groups", fn, g->c, g->k,
            g->cg, g->r, g->s, g->groups);
        return CUDNN_STATUS_BAD_PARAM;
    }
    g->kg = g->k / g->groups;
    const long eh = (long)(g->r - 1) * g->dh + 1, ew = (long)(g->s - 1) * g->dw + 1;
    const long hp = g->h + 2L * g->ph, wp = g->w + 2L * g->pw;
    if (hp < eh || wp < ew) {
        say("%s: filter (%d, %d) dilated (%d, %d) exceeds the padded input (%ld, %ld)", fn, g->r,
            g->s, g->dh, g->dw, hp, wp);
        return CUDNN_STATUS_BAD_PARAM;
    }
    g->p = (int)(1 + (hp - eh) / g->sh);
    g->q = (int)(1 + (wp - ew) / g->sw);
    if (y->n != g->n || y->c != g->k || y->h != g->p || y->w != g->q) {
        say("%s: output descriptor (%d, %d, %d, %d), cuDNN's output is (%d, %d, %d, %d)", fn,
            y->n, y->c, y->h, y->w, g->n, g->k, g->p, g->q);
        return CUDNN_STATUS_BAD_PARAM;
    }
    return CUDNN_STATUS_SUCCESS;
}

size_t x_bytes(const geom &g) { return (size_t)g.n * g.c * g.h * g.w * sizeof(float); }
size_t w_bytes(const geom &g) { return (size_t)g.k * g.cg * g.r * g.s * sizeof(float); }
size_t y_bytes(const geom &g) { return (size_t)g.n * g.k * g.p * g.q * sizeof(float); }
/* One image's unfolded input, as an explicit-GEMM algorithm would hold it. */
size_t col_bytes(const geom &g)
{
    return (size_t)g.c * g.r * g.s * (size_t)g.p * g.q * sizeof(float);
}

/* The input row/column that output (oy, ox) reads through filter tap (i, j). */
static inline int in_row(const geom &g, int oy, int i)
{
    return oy * g.sh - g.ph + (g.flip ? g.r - 1 - i : i) * g.dh;
}
static inline int in_col(const geom &g, int ox, int j)
{
    return ox * g.sw - g.pw + (g.flip ? g.s - 1 - j : j) * g.dw;
}

// x: (N, C, H, W), w: (K, C/groups, R, S) -> y: (N, K, P, Q), y = alpha conv + beta y
void conv_fwd(const geom &g, const float *x, const float *w, float alpha, float beta, float *y)
{
    for (int n = 0; n < g.n; n++)
        for (int k = 0; k < g.k; k++) {
            const int gi = k / g.kg;
            for (int oy = 0; oy < g.p; oy++)
                for (int ox = 0; ox < g.q; ox++) {
                    double acc = 0;
                    for (int c = 0; c < g.cg; c++) {
                        const float *xp = x + ((size_t)n * g.c + gi * g.cg + c) * g.h * g.w;
                        const float *wp = w + ((size_t)k * g.cg + c) * g.r * g.s;
                        for (int i = 0; i < g.r; i++) {
                            const int iy = in_row(g, oy, i);
                            if (iy < 0 || iy >= g.h) continue;
                            for (int j = 0; j < g.s; j++) {
                                const int ix = in_col(g, ox, j);
                                if (ix < 0 || ix >= g.w) continue;
                                acc += (double)xp[(size_t)iy * g.w + ix] * wp[i * g.s + j];
                            }
                        }
                    }
                    blend(&y[(((size_t)n * g.k + k) * g.p + oy) * g.q + ox], acc, alpha, beta);
                }
        }
}

/* Non-deterministic algorithms sum their partial products in an order that changes from call
 * to call (as atomics would), so a result that must be reproducible shows when it is not. */
static std::atomic<unsigned> nondet_calls{0};

// dy: (N, K, P, Q), w -> dx: (N, C, H, W)
void conv_bwd_data(const geom &g, const float *dy, const float *w, float alpha, float beta,
                   float *dx, bool nondet)
{
    std::vector<double> acc((size_t)g.c * g.h * g.w);
    std::vector<float> accf(nondet ? acc.size() : 0);
    const unsigned rot = nondet ? nondet_calls++ : 0;
    for (int n = 0; n < g.n; n++) {
        std::fill(acc.begin(), acc.end(), 0.0);
        std::fill(accf.begin(), accf.end(), 0.0f);
        for (int kk = 0; kk < g.k; kk++) {
            const int k = (int)((kk + rot) % (unsigned)g.k), gi = k / g.kg;
            for (int oy = 0; oy < g.p; oy++)
                for (int ox = 0; ox < g.q; ox++) {
                    const float d = dy[(((size_t)n * g.k + k) * g.p + oy) * g.q + ox];
                    for (int c = 0; c < g.cg; c++) {
                        const float *wp = w + ((size_t)k * g.cg + c) * g.r * g.s;
                        const size_t base = (size_t)(gi * g.cg + c) * g.h * g.w;
                        for (int i = 0; i < g.r; i++) {
                            const int iy = in_row(g, oy, i);
                            if (iy < 0 || iy >= g.h) continue;
                            for (int j = 0; j < g.s; j++) {
                                const int ix = in_col(g, ox, j);
                                if (ix < 0 || ix >= g.w) continue;
                                const size_t at = base + (size_t)iy * g.w + ix;
                                if (nondet)
                                    accf[at] += d * wp[i * g.s + j];
                                else
                                    acc[at] += (double)d * wp[i * g.s + j];
                            }
                        }
                    }
                }
        }
        float *dxn = dx + (size_t)n * g.c * g.h * g.w;
        for (size_t i = 0; i < acc.size(); i++)
            blend(&dxn[i], nondet ? accf[i] : acc[i], alpha, beta);
    }
}

// x: (N, C, H, W), dy: (N, K, P, Q) -> dw: (K, C/groups, R, S)
void conv_bwd_filter(const geom &g, const float *x, const float *dy, float alpha, float beta,
                     float *dw, bool nondet)
{
    const unsigned rot = nondet ? nondet_calls++ : 0;
    for (int k = 0; k < g.k; k++) {
        const int gi = k / g.kg;
        for (int c = 0; c < g.cg; c++)
            for (int i = 0; i < g.r; i++)
                for (int j = 0; j < g.s; j++) {
                    double acc = 0;
                    float accf = 0;
                    for (int nn = 0; nn < g.n; nn++) {
                        const int n = (int)((nn + rot) % (unsigned)g.n);
                        const float *xp = x + ((size_t)n * g.c + gi * g.cg + c) * g.h * g.w;
                        const float *dyp = dy + ((size_t)n * g.k + k) * g.p * g.q;
                        for (int oy = 0; oy < g.p; oy++) {
                            const int iy = in_row(g, oy, i);
                            if (iy < 0 || iy >= g.h) continue;
                            for (int ox = 0; ox < g.q; ox++) {
                                const int ix = in_col(g, ox, j);
                                if (ix < 0 || ix >= g.w) continue;
                                const float a = xp[(size_t)iy * g.w + ix], b = dyp[oy * g.q + ox];
                                if (nondet)
                                    accf += a * b;
                                else
                                    acc += (double)a * b;
                            }
                        }
                    }
                    blend(&dw[(((size_t)k * g.cg + c) * g.r + i) * g.s + j], nondet ? accf : acc,
                          alpha, beta);
                }
    }
}

} /* namespace cnn_emu */
