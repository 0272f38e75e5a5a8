/* optim.cu — fused CUDA updates for core/optim.c (and core/clip_grad.c's scaling),
 * applied to all of an optimizer's parameters at once (multi_tensor.cuh: a launch covers up
 * to 32 parameters and 320 chunks of 65,536 elements, so ResNet-50's 161 parameters take a
 * handful of launches, not 161). Each element's update (weight decay, momentum / Nesterov /
 * dampening, Adam moments, bias correction) is one pass, with every float operation an explicit _rn
 * intrinsic in the order of the CPU loop, so nvcc fuses nothing into an FMA and both devices
 * compute the same bits. Launchers and kernels only: state allocation and checks stay in
 * core/optim.c. */
#include "cuda_check.h"
#include "launch.cuh"
#include "multi_tensor.cuh"

#include <math.h>

namespace {

/* See sgd_update_f32 in core/optim.c. The learning rate is read from device memory, so that a
 * step captured in a CUDA graph replays with the rate set since (core/optim.c keeps it). */
__global__ void sgd_multi_kernel(MtArgs a, const float *lr, float momentum, float keep,
                                 bool nesterov)
{
    const float neg_lr = -*lr;
    MT_CHUNK_LOOP(a, t, i) {
        float gi = t.g[i];
        if (t.wd != 0) gi = __fadd_rn(gi, __fmul_rn(t.wd, t.p[i]));
        if (t.s1) {
            float b = t.first ? gi : __fadd_rn(__fmul_rn(t.s1[i], momentum), __fmul_rn(keep, gi));
            t.s1[i] = b;
            gi = nesterov ? __fadd_rn(gi, __fmul_rn(momentum, b)) : b;
        }
        t.p[i] = __fadd_rn(t.p[i], __fmul_rn(neg_lr, gi));
    }
}

/* torch.lerp's two-sided form, as lerp_f32 in core/optim.c. */
__device__ __forceinline__ float lerp_rn(float a, float b, float w)
{
    return w < 0.5f ? __fadd_rn(a, __fmul_rn(w, __fsub_rn(b, a)))
                    : __fsub_rn(b, __fmul_rn(__fsub_rn(b, a), __fsub_rn(1.0f, w)));
}

/* See adam_update_f32 in core/optim.c. l2: wd is added to the gradient (Adam); dec: the
 * parameter shrinks first (AdamW). The per-step scalars are read from device memory, so that a
 * step captured in a CUDA graph replays with the ones core/optim.c writes before each replay. */
__global__ void adam_multi_kernel(MtArgs a, float beta2, float eps, bool dec, float w1, float w2)
{
    const MtTensor &tt = a.t[a.tensor_of[blockIdx.x]];
    const float shrink = tt.adam[0], step_size = tt.adam[1], bc2_sqrt = tt.adam[2];
    MT_CHUNK_LOOP(a, t, i) {
        float pi = t.p[i], gi = t.g[i];
        if (dec && t.wd != 0) pi = __fmul_rn(pi, shrink);
        if (!dec && t.wd != 0) gi = __fadd_rn(gi, __fmul_rn(t.wd, pi));
        float mi = lerp_rn(t.s1[i], gi, w1);
        float vi = __fadd_rn(__fmul_rn(t.s2[i], beta2), __fmul_rn(__fmul_rn(w2, gi), gi));
        t.s1[i] = mi;
        t.s2[i] = vi;
        float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), bc2_sqrt), eps);
        t.p[i] = __fsub_rn(pi, __fmul_rn(step_size, __fdiv_rn(mi, denom)));
    }
}

/* The status of the launch just made, naming the op and kernel if it failed. */
cnn_status launch_status(const char *op, const char *kernel)
{
    cudaError_t e = cudaGetLastError();
    if (e == cudaSuccess) return CNN_OK;
    return cnn_error(cnn_cuda_status_of(e), "%s: launch of %s failed: %s", op, kernel,
                     cudaGetErrorString(e));
}

/* x *= alpha over each tensor's chunk (gradient clipping); the CPU's one multiply. */
__global__ void scale_multi_kernel(MtArgs a, float alpha)
{
    MT_CHUNK_LOOP(a, t, i) t.p[i] = __fmul_rn(t.p[i], alpha);
}

} /* namespace */

extern "C" cnn_status cnn_cuda_sgd_update_f32(cnn_context *ctx, const cnn_cuda_param_update *ps,
                                              int count, const float *lr, float momentum,
                                              float dampening, bool nesterov)
{
    if (count <= 0) return CNN_OK;
    cudaStream_t s;
    CNN_TRY(cnn_cuda_enter(ctx, "sgd_update", &s));
    MtTensor *ts = (MtTensor *)calloc((size_t)count, sizeof *ts);
    CNN_CHECK(ts, CNN_ERR_OUT_OF_MEMORY, "sgd_update: out of host memory");
    for (int i = 0; i < count; i++)
        ts[i] = MtTensor{ps[i].p, ps[i].g, ps[i].s1, NULL, ps[i].n, ps[i].wd, ps[i].step == 1,
                         NULL};
    const float keep = (float)(1.0 - (double)dampening);
    cnn_status st = for_each_launch(ts, count, [&](const MtArgs &a, int blocks) {
        sgd_multi_kernel<<<blocks, THREADS, 0, s>>>(a, lr, momentum, keep, nesterov);
        return launch_status("sgd_update", "sgd_multi_kernel");
    });
    free(ts);
    return st;
}

extern "C" cnn_status cnn_cuda_adam_update_f32(cnn_context *ctx, const cnn_cuda_param_update *ps,
                                               int count, float beta1, float beta2, float eps,
                                               bool decoupled)
{
    if (count <= 0) return CNN_OK;
    cudaStream_t s;
    CNN_TRY(cnn_cuda_enter(ctx, "adam_update", &s));
    MtTensor *ts = (MtTensor *)calloc((size_t)count, sizeof *ts);
    CNN_CHECK(ts, CNN_ERR_OUT_OF_MEMORY, "adam_update: out of host memory");
    for (int i = 0; i < count; i++)
        ts[i] = MtTensor{ps[i].p, ps[i].g, ps[i].s1, ps[i].s2, ps[i].n, ps[i].wd, false,
                         ps[i].adam};
    const float w1 = (float)(1.0 - (double)beta1), w2 = (float)(1.0 - (double)beta2);
    cnn_status st = for_each_launch(ts, count, [&](const MtArgs &a, int blocks) {
        adam_multi_kernel<<<blocks, THREADS, 0, s>>>(a, beta2, eps, decoupled, w1, w2);
        return launch_status("adam_update", "adam_multi_kernel");
    });
    free(ts);
    return st;
}

extern "C" cnn_status cnn_cuda_scale_multi_f32(cnn_context *ctx, float *const *xs,
                                               const int64_t *ns, int count, float alpha)
{
    if (count <= 0) return CNN_OK;
    cudaStream_t s;
    CNN_TRY(cnn_cuda_enter(ctx, "clip_grad_norm", &s));
    MtTensor *ts = (MtTensor *)calloc((size_t)count, sizeof *ts);
    CNN_CHECK(ts, CNN_ERR_OUT_OF_MEMORY, "clip_grad_norm: out of host memory");
    for (int i = 0; i < count; i++) {
        ts[i].p = xs[i];
        ts[i].n = ns[i];
    }
    cnn_status st = for_each_launch(ts, count, [&](const MtArgs &a, int blocks) {
        scale_multi_kernel<<<blocks, THREADS, 0, s>>>(a, alpha);
        return launch_status("clip_grad_norm", "scale_multi_kernel");
    });
    free(ts);
    return st;
}
