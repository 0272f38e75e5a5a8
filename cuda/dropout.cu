/* dropout.cu — the CUDA kernel of layers/dropout.c. Element i is kept when Philox uniform i of
 * the draw's block is < keep_below: the same counters, words and float operations as
 * dropout_cpu, so both devices draw the same mask bit for bit. Launcher and kernel only. */
#include "cuda_check.h"
#include "launch.cuh"
#include "philox.h"

// x, y: (n); counter offset + b gives elements 4b .. 4b+3. Also the backward, with x = dy.
static __global__ void dropout_f32_kernel(const float *x, float *y, int64_t n, uint64_t seed,
                                          uint64_t offset, const uint64_t *state,
                                          float keep_below, float scale)
{
    cnn_philox_resolve(state, &seed, &offset);
    int64_t blocks = (n + 3) / 4;
    for (int64_t b = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; b < blocks;
         b += (int64_t)gridDim.x * blockDim.x) {
        uint32_t r[4];
        cnn_philox4x32(seed, offset + (uint64_t)b, r);
        for (int k = 0; k < 4; k++) {
            int64_t i = 4 * b + k;
            /* __fmul_rn: one rounding, as the host's x * scale. */
            if (i < n) y[i] = __fmul_rn(x[i], cnn_u32_to_unit(r[k]) < keep_below ? scale : 0.0f);
        }
    }
}

extern "C" cnn_status cnn_cuda_dropout_f32(cnn_context *ctx, const float *x, float *y, int64_t n,
                                           cnn_rng_draw d, float keep_below, float scale)
{
    if (n <= 0) return CNN_OK;
    cudaStream_t s;
    CNN_TRY(cnn_cuda_enter(ctx, "dropout", &s));
    dropout_f32_kernel<<<grid_for((n + 3) / 4), THREADS, 0, s>>>(x, y, n, d.seed, d.offset,
                                                                 d.state, keep_below, scale);
    CNN_CUDA_LAUNCH_CHECK(dropout_f32_kernel);
    return CNN_OK;
}
