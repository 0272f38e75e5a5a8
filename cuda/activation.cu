/* activation.cu — CUDA kernels of layers/activation.c: relu, leaky_relu, elu, sigmoid, tanh,
 * forward and backward, with the same formulas (and the same saved-tensor rules) as its CPU
 * loops. Launchers and kernels only; argument checks are the caller's. */
#include "cuda_check.h"
#include "launch.cuh"

/* activation.c's act_kind, in its order. */
enum { K_RELU, K_LEAKY, K_ELU, K_SIGMOID, K_TANH };

/* The kind is the same for every thread of a launch, so the switch never diverges and one
 * kernel serves all five activations. */
__device__ __forceinline__ float act_forward(int kind, float x, float a)
{
    switch (kind) {
    case K_RELU: return x <= 0.0f ? 0.0f : x; /* NaN stays, as PyTorch's */
    case K_LEAKY: return x > 0.0f ? x : a * x;
    case K_ELU: return x > 0.0f ? x : a * expm1f(x);
    case K_SIGMOID: return 1.0f / (1.0f + expf(-x));
    default: return tanhf(x);
    }
}

/* s is the saved output y or the input x, as layers/activation.c chose; see act_backward_cpu
 * for why the sign of y stands in for the sign of x. */
__device__ __forceinline__ float act_backward(int kind, float s, float dy, float a)
{
    switch (kind) {
    case K_RELU: return s <= 0.0f ? 0.0f : dy;
    case K_LEAKY: return s > 0.0f ? dy : a * dy;
    case K_ELU: /* s is x (see act_backward_cpu); a NaN passes its gradient, as on the CPU */
        return s <= 0.0f ? dy * a * expf(s) : dy;
    case K_SIGMOID: return dy * s * (1.0f - s);
    /* __fmul_rn keeps nvcc from fusing 1 - s*s into an FMA the CPU loop does not do. */
    default: return dy * (1.0f - __fmul_rn(s, s));
    }
}

// x, y: (numel)
static __global__ void act_forward_kernel(int kind, const float *x, float *y, float a, int64_t n)
{
    GRID_STRIDE_LOOP(i, n) y[i] = act_forward(kind, x[i], a);
}

// s, dy, dx: (numel)
static __global__ void act_backward_kernel(int kind, const float *s, const float *dy, float *dx,
                                           float a, int64_t n)
{
    GRID_STRIDE_LOOP(i, n) dx[i] = act_backward(kind, s[i], dy[i], a);
}

extern "C" cnn_status cnn_cuda_activation_forward(cnn_context *ctx, int kind, float param,
                                                  const float *x, float *y, int64_t n)
{
    CNN_CHECK(kind >= K_RELU && kind <= K_TANH, CNN_ERR_INTERNAL,
              "activation: unknown kind %d", kind);
    if (n <= 0) return CNN_OK;
    cudaStream_t s;
    CNN_TRY(cnn_cuda_enter(ctx, "activation", &s));
    act_forward_kernel<<<grid_for(n), THREADS, 0, s>>>(kind, x, y, param, n);
    CNN_CUDA_LAUNCH_CHECK(act_forward_kernel);
    return CNN_OK;
}

extern "C" cnn_status cnn_cuda_activation_backward(cnn_context *ctx, int kind, float param,
                                                   const float *saved, const float *dy, float *dx,
                                                   int64_t n)
{
    CNN_CHECK(kind >= K_RELU && kind <= K_TANH, CNN_ERR_INTERNAL,
              "activation backward: unknown kind %d", kind);
    if (n <= 0) return CNN_OK;
    cudaStream_t s;
    CNN_TRY(cnn_cuda_enter(ctx, "activation backward", &s));
    act_backward_kernel<<<grid_for(n), THREADS, 0, s>>>(kind, saved, dy, dx, param, n);
    CNN_CUDA_LAUNCH_CHECK(act_backward_kernel);
    return CNN_OK;
}
