/* optim.cu — fused CUDA updates for core/optim.c: one kernel per optimizer applies the whole
 * update of one parameter (weight decay, momentum / Nesterov / dampening, Adam moments, bias
 * correction) in one pass. Every float operation is an explicit _rn intrinsic in the order of
 * the CPU loop, so nvcc fuses nothing into an FMA and both devices compute the same bits.
 * Launchers and kernels only: state allocation and checks stay in core/optim.c. */
#include "cuda_check.h"
#include "launch.cuh"

#include <math.h>

/* p, g, buf: (n); buf is NULL without momentum. See sgd_update_f32 in core/optim.c. */
__global__ void sgd_update_kernel(float *p, const float *g, float *buf, int64_t n, float neg_lr,
                                  float momentum, float keep, bool nesterov, float wd, bool first)
{
    GRID_STRIDE_LOOP(i, n) {
        float gi = g[i];
        if (wd != 0) gi = __fadd_rn(gi, __fmul_rn(wd, p[i]));
        if (buf) {
            float b = first ? gi : __fadd_rn(__fmul_rn(buf[i], momentum), __fmul_rn(keep, gi));
            buf[i] = b;
            gi = nesterov ? __fadd_rn(gi, __fmul_rn(momentum, b)) : b;
        }
        p[i] = __fadd_rn(p[i], __fmul_rn(neg_lr, gi));
    }
}

/* torch.lerp's two-sided form, as lerp_f32 in core/optim.c. */
__device__ __forceinline__ float lerp_rn(float a, float b, float w)
{
    return w < 0.5f ? __fadd_rn(a, __fmul_rn(w, __fsub_rn(b, a)))
                    : __fsub_rn(b, __fmul_rn(__fsub_rn(b, a), __fsub_rn(1.0f, w)));
}

/* p, g, m (exp_avg), v (exp_avg_sq): (n). See adam_update_f32 in core/optim.c. */
__global__ void adam_update_kernel(float *p, const float *g, float *m, float *v, int64_t n,
                                   float beta2, float eps, float wd, bool l2, bool dec,
                                   float shrink, float w1, float w2, float step_size,
                                   float bc2_sqrt)
{
    GRID_STRIDE_LOOP(i, n) {
        float pi = p[i], gi = g[i];
        if (dec) pi = __fmul_rn(pi, shrink);
        if (l2) gi = __fadd_rn(gi, __fmul_rn(wd, pi));
        float mi = lerp_rn(m[i], gi, w1);
        float vi = __fadd_rn(__fmul_rn(v[i], beta2), __fmul_rn(__fmul_rn(w2, gi), gi));
        m[i] = mi;
        v[i] = vi;
        float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), bc2_sqrt), eps);
        p[i] = __fsub_rn(pi, __fmul_rn(step_size, __fdiv_rn(mi, denom)));
    }
}

extern "C" cnn_status cnn_cuda_sgd_update_f32(cnn_context *ctx, float *p, const float *g,
                                              float *buf, int64_t n, float lr, float momentum,
                                              float dampening, bool nesterov, float wd, bool first)
{
    if (n <= 0) return CNN_OK;
    cudaStream_t s;
    CNN_TRY(cnn_cuda_enter(ctx, "sgd_update", &s));
    const float keep = (float)(1.0 - (double)dampening);
    sgd_update_kernel<<<grid_for(n), THREADS, 0, s>>>(p, g, buf, n, -lr, momentum, keep, nesterov,
                                                      wd, first);
    CNN_CUDA_LAUNCH_CHECK(sgd_update_kernel);
    return CNN_OK;
}

extern "C" cnn_status cnn_cuda_adam_update_f32(cnn_context *ctx, float *p, const float *g,
                                               float *m, float *v, int64_t n, float lr,
                                               float beta1, float beta2, float eps, float wd,
                                               bool decoupled, int64_t step)
{
    if (n <= 0) return CNN_OK;
    cudaStream_t s;
    CNN_TRY(cnn_cuda_enter(ctx, "adam_update", &s));
    /* The scalars exactly as the CPU path computes them: in double, then rounded once. */
    const double bc1 = 1.0 - pow((double)beta1, (double)step);
    const double bc2 = 1.0 - pow((double)beta2, (double)step);
    const float step_size = (float)((double)lr / bc1), bc2_sqrt = (float)sqrt(bc2);
    const float w1 = (float)(1.0 - (double)beta1), w2 = (float)(1.0 - (double)beta2);
    const float shrink = (float)(1.0 - (double)lr * (double)wd);
    const bool l2 = !decoupled && wd != 0, dec = decoupled && wd != 0;
    adam_update_kernel<<<grid_for(n), THREADS, 0, s>>>(p, g, m, v, n, beta2, eps, wd, l2, dec,
                                                       shrink, w1, w2, step_size, bc2_sqrt);
    CNN_CUDA_LAUNCH_CHECK(adam_update_kernel);
    return CNN_OK;
}
