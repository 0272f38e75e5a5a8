/* lrn.cu — hand-written CUDA local response normalisation across channels (forward and
 * backward), one thread per element, with the CPU reference's window and operation order
 * (layers/lrn.c). Launchers only; layers/lrn.c checks the arguments. */
#include "cuda_check.h"
#include "launch.cuh"


struct lrn_geom {
    int64_t n, c, inner;
    int size;
    float alpha, beta, k;
};

/* scale = k + alpha / size * sum of x^2 over channels [ch - size/2, ch + (size-1)/2] in [0, C),
 * summed in ascending channel order and rounded step by step like the CPU loop.
 * x: (N, C, inner); e is the flat index of (i, ch, j) */
static __device__ float lrn_scale_at(const lrn_geom &g, const float *x, int64_t e)
{
    int64_t j = e % g.inner, ch = (e / g.inner) % g.c, i = e / (g.inner * g.c);
    int64_t lo = ch - g.size / 2, hi = ch + (g.size - 1) / 2 + 1;
    if (lo < 0) lo = 0;
    if (hi > g.c) hi = g.c;
    float s = 0.0f;
    for (int64_t cc = lo; cc < hi; cc++) {
        float v = x[(i * g.c + cc) * g.inner + j];
        s = __fadd_rn(s, __fmul_rn(v, v));
    }
    return __fadd_rn(g.k, __fmul_rn(g.alpha / (float)g.size, s));
}

// x, y: (N, C, inner)
static __global__ void lrn_forward_kernel(lrn_geom g, const float *x, float *y)
{
    GRID_STRIDE_LOOP(e, g.n * g.c * g.inner) y[e] = x[e] / powf(lrn_scale_at(g, x, e), g.beta);
}

/* First half of the CPU backward: t = dy x s^(-beta-1), dx = dy s^-beta.
 * x, dy, t, dx: (N, C, inner) */
static __global__ void lrn_backward_scale_kernel(lrn_geom g, const float *x, const float *dy,
                                                 float *t, float *dx)
{
    GRID_STRIDE_LOOP(e, g.n * g.c * g.inner) {
        float s = lrn_scale_at(g, x, e), sb = powf(s, -g.beta);
        t[e] = __fmul_rn(dy[e], __fmul_rn(x[e] / s, sb)); /* the CPU's order (layers/lrn.c) */
        dx[e] = __fmul_rn(dy[e], sb);
    }
}

/* Second half: dx_j -= 2 beta alpha/size * x_j * t_c over the channels c whose window holds j,
 * c in [j - (size-1)/2, j + size/2], ascending. x, t, dx: (N, C, inner) */
static __global__ void lrn_backward_window_kernel(lrn_geom g, const float *x, const float *t,
                                                  float *dx)
{
    float f = __fmul_rn(__fmul_rn(2.0f, g.beta), g.alpha) / (float)g.size;
    GRID_STRIDE_LOOP(e, g.n * g.c * g.inner) {
        int64_t j = e % g.inner, ch = (e / g.inner) % g.c, i = e / (g.inner * g.c);
        int64_t lo = ch - (g.size - 1) / 2, hi = ch + g.size / 2 + 1;
        if (lo < 0) lo = 0;
        if (hi > g.c) hi = g.c;
        float d = dx[e], fx = x[e];
        for (int64_t cc = lo; cc < hi; cc++)
            d = __fsub_rn(d, __fmul_rn(__fmul_rn(f, fx), t[(i * g.c + cc) * g.inner + j]));
        dx[e] = d;
    }
}

extern "C" cnn_status cnn_cuda_lrn_forward(cnn_context *ctx, const float *x, int64_t n, int64_t c,
                                           int64_t inner, int size, float alpha, float beta,
                                           float k, float *y)
{
    lrn_geom g = {n, c, inner, size, alpha, beta, k};
    int64_t total = n * c * inner;
    if (total <= 0) return CNN_OK;
    cudaStream_t s;
    CNN_TRY(cnn_cuda_enter(ctx, "lrn", &s));
    lrn_forward_kernel<<<grid_for(total), THREADS, 0, s>>>(g, x, y);
    CNN_CUDA_LAUNCH_CHECK(lrn_forward_kernel);
    return CNN_OK;
}

extern "C" cnn_status cnn_cuda_lrn_backward(cnn_context *ctx, const float *x, const float *dy,
                                            int64_t n, int64_t c, int64_t inner, int size,
                                            float alpha, float beta, float k, float *t, float *dx)
{
    lrn_geom g = {n, c, inner, size, alpha, beta, k};
    int64_t total = n * c * inner;
    if (total <= 0) return CNN_OK;
    cudaStream_t s;
    CNN_TRY(cnn_cuda_enter(ctx, "lrn backward", &s));
    lrn_backward_scale_kernel<<<grid_for(total), THREADS, 0, s>>>(g, x, dy, t, dx);
    CNN_CUDA_LAUNCH_CHECK(lrn_backward_scale_kernel);
    lrn_backward_window_kernel<<<grid_for(total), THREADS, 0, s>>>(g, x, t, dx);
    CNN_CUDA_LAUNCH_CHECK(lrn_backward_window_kernel);
    return CNN_OK;
}
