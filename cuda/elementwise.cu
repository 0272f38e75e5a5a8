/* elementwise.cu — CUDA kernels of layers/elementwise.c (add, scale, sum/mean, concat), the
 * linear layer's bias rows, and the full-tensor reductions, e.g. core/clip_grad.c's norm of all
 * gradients at once. Reductions run in two fixed stages whose order depends only on
 * the sizes, never on timing: no float atomics, so a sum is the same bits on every run.
 * Launchers and kernels only; argument checks are the caller's. */
#include "cuda_check.h"
#include "launch.cuh"
#include "multi_tensor.cuh"

#include <climits>

/* Stage-1 blocks of a reduction: a constant, so the summation order is a function of n alone. */
#define RED_BLOCKS 256

static unsigned red_blocks_for(int64_t n)
{
    int64_t blocks = (n + THREADS - 1) / THREADS;
    return (unsigned)(blocks < RED_BLOCKS ? blocks : RED_BLOCKS);
}

/* ---- add, scale, fill from a device scalar, repeat a row ------------------------------------- */
/* add and scale move four floats per load when every pointer is 16-byte aligned (always, for
 * tensors fresh from the allocator); the last n % 4 elements go one by one, in block 0. */
static bool aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

/* a + b, then a ReLU when RELU (cnn_relu's rule: NaN stays NaN). */
template <bool RELU> static __device__ float add_act(float a, float b)
{
    const float v = a + b;
    return RELU && v <= 0.0f ? 0.0f : v;
}

// y, a, b: (n)
template <bool RELU>
static __global__ void add_f32_kernel(float *y, const float *a, const float *b, int64_t n)
{
    GRID_STRIDE_LOOP(i, n) y[i] = add_act<RELU>(a[i], b[i]);
}

// y, a, b: (n), 16-byte aligned
template <bool RELU>
static __global__ void add_f32x4_kernel(float *y, const float *a, const float *b, int64_t n)
{
    int64_t n4 = n / 4;
    GRID_STRIDE_LOOP(i, n4) {
        float4 u = reinterpret_cast<const float4 *>(a)[i];
        float4 v = reinterpret_cast<const float4 *>(b)[i];
        reinterpret_cast<float4 *>(y)[i] =
            make_float4(add_act<RELU>(u.x, v.x), add_act<RELU>(u.y, v.y),
                        add_act<RELU>(u.z, v.z), add_act<RELU>(u.w, v.w));
    }
    int64_t t = 4 * n4 + (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (t < n) y[t] = add_act<RELU>(a[t], b[t]);
}

template <bool RELU>
static cnn_status launch_add(cudaStream_t s, float *y, const float *a, const float *b, int64_t n)
{
    if (aligned16(y) && aligned16(a) && aligned16(b)) {
        add_f32x4_kernel<RELU><<<grid_for(n / 4 > 0 ? n / 4 : 1), THREADS, 0, s>>>(y, a, b, n);
        CNN_CUDA_LAUNCH_CHECK(add_f32x4_kernel);
    } else {
        add_f32_kernel<RELU><<<grid_for(n), THREADS, 0, s>>>(y, a, b, n);
        CNN_CUDA_LAUNCH_CHECK(add_f32_kernel);
    }
    return CNN_OK;
}

// y, x: (n); y may be x
static __global__ void scale_f32_kernel(float *y, const float *x, float alpha, int64_t n)
{
    GRID_STRIDE_LOOP(i, n) y[i] = alpha * x[i];
}

// y, x: (n), 16-byte aligned; y may be x
static __global__ void scale_f32x4_kernel(float *y, const float *x, float alpha, int64_t n)
{
    int64_t n4 = n / 4;
    GRID_STRIDE_LOOP(i, n4) {
        float4 u = reinterpret_cast<const float4 *>(x)[i];
        reinterpret_cast<float4 *>(y)[i] =
            make_float4(alpha * u.x, alpha * u.y, alpha * u.z, alpha * u.w);
    }
    int64_t t = 4 * n4 + (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (t < n) y[t] = alpha * x[t];
}

// y: (n); g: (1)
static __global__ void fill_scaled_f32_kernel(float *y, const float *g, float scale, int64_t n)
{
    float v = g[0] * scale;
    GRID_STRIDE_LOOP(i, n) y[i] = v;
}

// y: (rows, len); b: (len)
static __global__ void repeat_rows_f32_kernel(float *y, const float *b, int64_t len, int64_t n)
{
    GRID_STRIDE_LOOP(i, n) y[i] = b[i % len];
}

extern "C" cnn_status cnn_cuda_repeat_rows_f32(cnn_context *ctx, float *y, const float *b,
                                               int64_t rows, int64_t len)
{
    if (rows <= 0 || len <= 0) return CNN_OK;
    cudaStream_t s;
    CNN_TRY(cnn_cuda_enter(ctx, "repeat_rows", &s));
    repeat_rows_f32_kernel<<<grid_for(rows * len), THREADS, 0, s>>>(y, b, len, rows * len);
    CNN_CUDA_LAUNCH_CHECK(repeat_rows_f32_kernel);
    return CNN_OK;
}

extern "C" cnn_status cnn_cuda_add_f32(cnn_context *ctx, float *y, const float *a, const float *b,
                                       int64_t n, bool relu)
{
    if (n <= 0) return CNN_OK;
    cudaStream_t s;
    CNN_TRY(cnn_cuda_enter(ctx, "add", &s));
    return relu ? launch_add<true>(s, y, a, b, n) : launch_add<false>(s, y, a, b, n);
}

extern "C" cnn_status cnn_cuda_scale_f32(cnn_context *ctx, float *y, const float *x, float alpha,
                                         int64_t n)
{
    if (n <= 0) return CNN_OK;
    cudaStream_t s;
    CNN_TRY(cnn_cuda_enter(ctx, "scale", &s));
    if (aligned16(y) && aligned16(x)) {
        scale_f32x4_kernel<<<grid_for(n / 4 > 0 ? n / 4 : 1), THREADS, 0, s>>>(y, x, alpha, n);
        CNN_CUDA_LAUNCH_CHECK(scale_f32x4_kernel);
    } else {
        scale_f32_kernel<<<grid_for(n), THREADS, 0, s>>>(y, x, alpha, n);
        CNN_CUDA_LAUNCH_CHECK(scale_f32_kernel);
    }
    return CNN_OK;
}

extern "C" cnn_status cnn_cuda_fill_scaled_f32(cnn_context *ctx, float *y, const float *g,
                                               float scale, int64_t n)
{
    if (n <= 0) return CNN_OK;
    cudaStream_t s;
    CNN_TRY(cnn_cuda_enter(ctx, "fill_scaled", &s));
    fill_scaled_f32_kernel<<<grid_for(n), THREADS, 0, s>>>(y, g, scale, n);
    CNN_CUDA_LAUNCH_CHECK(fill_scaled_f32_kernel);
    return CNN_OK;
}

/* ---- deterministic reductions ---------------------------------------------------------------- */
/* Sum of v over the block (blockDim.x == THREADS, a power of two) in a fixed tree order. */
static __device__ double block_sum(double v, double *sh)
{
    sh[threadIdx.x] = v;
    __syncthreads();
    for (int stride = THREADS / 2; stride > 0; stride >>= 1) {
        if ((int)threadIdx.x < stride) sh[threadIdx.x] += sh[threadIdx.x + stride];
        __syncthreads();
    }
    double r = sh[0];
    __syncthreads();
    return r;
}

// x: (n) -> partial: (gridDim.x), each block's sum of x in double
static __global__ void reduce_partials_kernel(const float *x, int64_t n, double *partial)
{
    __shared__ double sh[THREADS];
    double acc = 0;
    GRID_STRIDE_LOOP(i, n) acc += x[i];
    double total = block_sum(acc, sh);
    if (threadIdx.x == 0) partial[blockIdx.x] = total;
}

// partial: (count) -> out: (1) = sum * scale, or sqrt(sum); launched with one block
static __global__ void reduce_finish_kernel(const double *partial, int64_t count, double scale,
                                            bool take_sqrt, float *out)
{
    __shared__ double sh[THREADS];
    double acc = 0;
    for (int64_t i = threadIdx.x; i < count; i += THREADS) acc += partial[i];
    double total = block_sum(acc, sh);
    if (threadIdx.x == 0) out[0] = (float)(take_sqrt ? sqrt(total) : total * scale);
}

// partial: (blocks): each block's sum of squares of its chunk (multi_tensor.cuh), in double
static __global__ void sumsq_multi_kernel(MtArgs a, double *partial)
{
    __shared__ double sh[THREADS];
    double acc = 0;
    MT_CHUNK_LOOP(a, t, i) {
        double v = t.g[i];
        acc += v * v;
    }
    double total = block_sum(acc, sh);
    if (threadIdx.x == 0) partial[blockIdx.x] = total;
}

/* Stage 1 over x into partial, then stage 2 into out. Launch failures return here so the
 * caller can release the scratch in one place. */
static cnn_status reduce_launch(cudaStream_t s, const float *x, int64_t n, double *partial,
                                double scale, float *out)
{
    unsigned blocks = red_blocks_for(n);
    if (blocks) {
        reduce_partials_kernel<<<blocks, THREADS, 0, s>>>(x, n, partial);
        CNN_CUDA_LAUNCH_CHECK(reduce_partials_kernel);
    }
    /* Stage 2 also runs when there is nothing to sum, so the result (0, or NaN) is written. */
    reduce_finish_kernel<<<1, THREADS, 0, s>>>(partial, blocks, scale, false, out);
    CNN_CUDA_LAUNCH_CHECK(reduce_finish_kernel);
    return CNN_OK;
}

extern "C" cnn_status cnn_cuda_sum_f32(cnn_context *ctx, float *out, const float *x, int64_t n,
                                       double scale)
{
    cudaStream_t s;
    CNN_TRY(cnn_cuda_enter(ctx, "sum", &s));
    cnn_storage scratch;
    CNN_TRY(cnn_cuda_scratch_alloc(ctx, RED_BLOCKS * sizeof(double), "sum", &scratch));
    cnn_status st = reduce_launch(s, x, n, (double *)scratch.data, scale, out);
    cnn_cuda_scratch_free(&scratch);
    return st;
}

/* Both stages of cnn_cuda_norm2_f32 on stream s: sqrt of the sum of squares into dev_norm. */
static cnn_status norm_launches(cudaStream_t s, const MtTensor *ts, int count, double *partial,
                                float *dev_norm)
{
    int64_t at = 0;
    CNN_TRY(for_each_launch(ts, count, [&](const MtArgs &a, int blocks) {
        sumsq_multi_kernel<<<blocks, THREADS, 0, s>>>(a, partial + at);
        CNN_CUDA_LAUNCH_CHECK(sumsq_multi_kernel);
        at += blocks;
        return CNN_OK;
    }));
    /* Also with nothing to sum, so the result (0) is written. */
    reduce_finish_kernel<<<1, THREADS, 0, s>>>(partial, at, 1.0, true, dev_norm);
    CNN_CUDA_LAUNCH_CHECK(reduce_finish_kernel);
    return CNN_OK;
}

extern "C" cnn_status cnn_cuda_norm2_f32(cnn_context *ctx, const float *const *xs,
                                         const int64_t *ns, int count, float *norm)
{
    cudaStream_t s;
    CNN_TRY(cnn_cuda_enter(ctx, "grad_norm", &s));
    /* Stage 1: one partial sum per chunk of every array, in as few launches as the
     * multi-tensor arguments allow; stage 2 adds them in order, so the bits depend on the
     * sizes alone. Then the one float that comes back to the host. */
    MtTensor *ts = (MtTensor *)calloc((size_t)(count > 0 ? count : 1), sizeof *ts);
    CNN_CHECK(ts, CNN_ERR_OUT_OF_MEMORY, "grad_norm: out of host memory");
    int64_t chunks = 0;
    for (int i = 0; i < count; i++) {
        ts[i].g = xs[i];
        ts[i].n = ns[i];
        chunks += (ns[i] + MT_CHUNK - 1) / MT_CHUNK;
    }
    size_t n_partial = (size_t)(chunks ? chunks : 1);
    cnn_storage scratch;
    cnn_status st = cnn_cuda_scratch_alloc(ctx, n_partial * sizeof(double) + sizeof(float),
                                           "grad_norm", &scratch);
    if (st != CNN_OK) {
        free(ts);
        return st;
    }
    double *partial = (double *)scratch.data;
    float *dev_norm = (float *)(partial + n_partial);
    st = norm_launches(s, ts, count, partial, dev_norm);
    free(ts);
    if (st == CNN_OK)
        st = cnn_cuda_memcpy(ctx, norm, CNN_CPU, dev_norm, ctx->device, sizeof(float));
    cnn_cuda_scratch_free(&scratch);
    return st;
}

/* ---- concat ---------------------------------------------------------------------------------- */
// part: (outer, len, inner); whole: (outer, total, inner). One strided 2-D copy: outer rows.
extern "C" cnn_status cnn_cuda_concat_copy_f32(cnn_context *ctx, float *whole, float *part,
                                               int64_t outer, int64_t total, int64_t at,
                                               int64_t len, int64_t inner, bool to_slab)
{
    size_t width = (size_t)(len * inner) * sizeof(float);
    if (outer <= 0 || width == 0) return CNN_OK;
    cudaStream_t s;
    CNN_TRY(cnn_cuda_enter(ctx, "concat", &s));
    float *slab = whole + at * inner;
    size_t whole_pitch = (size_t)(total * inner) * sizeof(float);
    /* One row (e.g. concat along dim 0) is one plain copy, free of the 2-D copy's pitch limit;
     * rows of the whole past 2^31 - 1 bytes (the pitch limit of today's GPUs, which refuse
     * more as "invalid pitch") are copied one by one: there are few (the whole holds outer of
     * them, so outer < 64 on a 141 GB GPU). */
    if (outer == 1 || whole_pitch > (size_t)INT_MAX) {
        for (int64_t r = 0; r < outer; r++) {
            float *w = slab + r * total * inner, *p = part + r * len * inner;
            CNN_CUDA_TRY(cudaMemcpyAsync(to_slab ? w : p, to_slab ? p : w, width,
                                         cudaMemcpyDeviceToDevice, s));
        }
    } else if (to_slab)
        CNN_CUDA_TRY(cudaMemcpy2DAsync(slab, whole_pitch, part, width, width, (size_t)outer,
                                       cudaMemcpyDeviceToDevice, s));
    else
        CNN_CUDA_TRY(cudaMemcpy2DAsync(part, width, slab, whole_pitch, width, (size_t)outer,
                                       cudaMemcpyDeviceToDevice, s));
    return CNN_OK;
}
