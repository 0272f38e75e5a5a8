/* tensor_ops.cu — the kernels every CUDA tensor needs before any op has its own: fill,
 * accumulate, strided copy, and the Philox random fill that reproduces core/rng.c bit for bit.
 * Launchers (extern "C") and kernels only: argument checks on tensors are core/'s job. */
#include "cuda_check.h"
#include "launch.cuh"
#include "philox.h"

/* ---- fill, add, accumulate ------------------------------------------------------------------- */
// p: (n)
static __global__ void fill_f32_kernel(float *p, float value, int64_t n)
{
    GRID_STRIDE_LOOP(i, n) p[i] = value;
}

// dst, src: (n)
static __global__ void accumulate_f32_kernel(float *dst, const float *src, int64_t n)
{
    GRID_STRIDE_LOOP(i, n) dst[i] = __fadd_rn(dst[i], src[i]);
}

// p: (n), int64
static __global__ void add_i64_kernel(int64_t *p, int64_t v, int64_t n)
{
    GRID_STRIDE_LOOP(i, n) p[i] += v;
}

extern "C" cnn_status cnn_cuda_add_i64(cnn_context *ctx, int64_t *p, int64_t v, int64_t n)
{
    if (n <= 0) return CNN_OK;
    cudaStream_t s;
    CNN_TRY(cnn_cuda_enter(ctx, "add_i64", &s));
    add_i64_kernel<<<grid_for(n), THREADS, 0, s>>>(p, v, n);
    CNN_CUDA_LAUNCH_CHECK(add_i64_kernel);
    return CNN_OK;
}

// p: (2)
static __global__ void store_u64x2_kernel(uint64_t *p, uint64_t a, uint64_t b)
{
    p[0] = a;
    p[1] = b;
}

extern "C" cnn_status cnn_cuda_store_u64x2(cnn_context *ctx, uint64_t *p, uint64_t a, uint64_t b)
{
    cudaStream_t s;
    CNN_TRY(cnn_cuda_enter(ctx, "store_u64x2", &s));
    store_u64x2_kernel<<<1, 1, 0, s>>>(p, a, b);
    CNN_CUDA_LAUNCH_CHECK(store_u64x2_kernel);
    return CNN_OK;
}

extern "C" cnn_status cnn_cuda_fill_f32(cnn_context *ctx, float *p, float value, int64_t n)
{
    if (n <= 0) return CNN_OK;
    cudaStream_t s;
    CNN_TRY(cnn_cuda_enter(ctx, "fill", &s));
    fill_f32_kernel<<<grid_for(n), THREADS, 0, s>>>(p, value, n);
    CNN_CUDA_LAUNCH_CHECK(fill_f32_kernel);
    return CNN_OK;
}

extern "C" cnn_status cnn_cuda_accumulate_f32(cnn_context *ctx, float *dst, const float *src,
                                              int64_t n)
{
    if (n <= 0) return CNN_OK;
    cudaStream_t s;
    CNN_TRY(cnn_cuda_enter(ctx, "accumulate", &s));
    accumulate_f32_kernel<<<grid_for(n), THREADS, 0, s>>>(dst, src, n);
    CNN_CUDA_LAUNCH_CHECK(accumulate_f32_kernel);
    return CNN_OK;
}

/* ---- strided copy ---------------------------------------------------------------------------- */
/* A rank <= 4 index space padded at the front to rank 4 (sizes 1, strides 0). */
struct copy_geom {
    int64_t d[4];
    int64_t ds[4], ss[4]; /* destination / source strides, in bytes */
};

// dst, src: (d0, d1, d2, d3) with their own byte strides; T has the element's size
template <typename T>
static __global__ void strided_copy_kernel(char *dst, const char *src, copy_geom g, int64_t n)
{
    GRID_STRIDE_LOOP(i, n) {
        int64_t r = i;
        int64_t i3 = r % g.d[3];
        r /= g.d[3];
        int64_t i2 = r % g.d[2];
        r /= g.d[2];
        int64_t i1 = r % g.d[1];
        int64_t i0 = r / g.d[1];
        int64_t doff = i0 * g.ds[0] + i1 * g.ds[1] + i2 * g.ds[2] + i3 * g.ds[3];
        int64_t soff = i0 * g.ss[0] + i1 * g.ss[1] + i2 * g.ss[2] + i3 * g.ss[3];
        *(T *)(dst + doff) = *(const T *)(src + soff);
    }
}

template <typename T>
static cnn_status launch_strided_copy(cudaStream_t s, void *dst, const void *src,
                                      const copy_geom &g, int64_t n)
{
    strided_copy_kernel<T><<<grid_for(n), THREADS, 0, s>>>((char *)dst, (const char *)src, g, n);
    CNN_CUDA_LAUNCH_CHECK(strided_copy_kernel);
    return CNN_OK;
}

extern "C" cnn_status cnn_cuda_strided_copy(cnn_context *ctx, void *dst,
                                            const int64_t *dst_byte_strides, const void *src,
                                            const int64_t *src_byte_strides, cnn_shape shape,
                                            size_t esize)
{
    CNN_CHECK(shape.ndim >= 0 && shape.ndim <= 4, CNN_ERR_SHAPE,
              "strided_copy: rank %d is outside 0..4", shape.ndim);
    CNN_CHECK(esize == 1 || esize == 2 || esize == 4 || esize == 8, CNN_ERR_UNSUPPORTED,
              "strided_copy: element size %zu is not 1, 2, 4 or 8", esize);
    copy_geom g;
    int off = 4 - shape.ndim;
    int64_t n = 1;
    for (int i = 0; i < 4; i++) {
        bool used = i >= off;
        g.d[i] = used ? shape.d[i - off] : 1;
        g.ds[i] = used ? dst_byte_strides[i - off] : 0;
        g.ss[i] = used ? src_byte_strides[i - off] : 0;
        n *= g.d[i];
        /* A misaligned element would fault on the device and end the whole CUDA context. */
        CNN_CHECK(g.ds[i] % (int64_t)esize == 0 && g.ss[i] % (int64_t)esize == 0,
                  CNN_ERR_INVALID_ARG, "strided_copy: byte strides %lld / %lld of dim %d are not "
                  "multiples of the element size %zu", (long long)g.ds[i], (long long)g.ss[i],
                  i - off, esize);
    }
    CNN_CHECK((uintptr_t)dst % esize == 0 && (uintptr_t)src % esize == 0, CNN_ERR_INVALID_ARG,
              "strided_copy: pointers are not aligned to the element size %zu", esize);
    if (n <= 0) return CNN_OK;
    cudaStream_t s;
    CNN_TRY(cnn_cuda_enter(ctx, "strided_copy", &s));
    switch (esize) {
    case 1: return launch_strided_copy<uint8_t>(s, dst, src, g, n);
    case 2: return launch_strided_copy<uint16_t>(s, dst, src, g, n);
    case 4: return launch_strided_copy<uint32_t>(s, dst, src, g, n);
    default: return launch_strided_copy<uint64_t>(s, dst, src, g, n);
    }
}

/* ---- Philox random fill ------------------------------------------------------------------------
 * The same counters and the same float operations as core/rng.c. The explicit _rn intrinsics
 * stop nvcc from fusing a multiply and an add into an FMA, which the host code never does and
 * which would change the last bit. */

// p: (n); counter offset + c gives elements 4c .. 4c+3
static __global__ void uniform_f32_kernel(float *p, int64_t n, float a, float b, uint64_t seed,
                                          uint64_t offset, const uint64_t *state)
{
    cnn_philox_resolve(state, &seed, &offset);
    int64_t n_counters = (n + 3) / 4;
    float span = __fsub_rn(b, a);
    GRID_STRIDE_LOOP(c, n_counters) {
        uint32_t r[4];
        cnn_philox4x32(seed, offset + (uint64_t)c, r);
        for (int k = 0; k < 4; k++) {
            int64_t i = 4 * c + k;
            if (i >= n) continue;
            const float v = __fadd_rn(a, __fmul_rn(span, cnn_u32_to_unit(r[k])));
            p[i] = cnn_uniform_below(v, a, b);
        }
    }
}

/* Box-Muller on two words, as normal_at in core/rng.c. logf/cosf may differ from glibc's in
 * the last ulp; everything else is exact or correctly rounded on both sides. */
static __device__ float normal_from(uint32_t w1, uint32_t w2)
{
    float u1 = __fmul_rn(__fadd_rn((float)(w1 >> 8), 1.0f), 1.0f / 16777216.0f); /* (0, 1] */
    float u2 = cnn_u32_to_unit(w2);
    return __fmul_rn(__fsqrt_rn(__fmul_rn(-2.0f, logf(u1))),
                     cosf(__fmul_rn(6.2831853071795864f, u2)));
}

// p: (n); counter offset + c gives element 2c (words 0, 1) and 2c+1 (words 2, 3)
static __global__ void normal_f32_kernel(float *p, int64_t n, float mean, float std, uint64_t seed,
                                         uint64_t offset, const uint64_t *state)
{
    cnn_philox_resolve(state, &seed, &offset);
    int64_t n_counters = (n + 1) / 2;
    GRID_STRIDE_LOOP(c, n_counters) {
        uint32_t r[4];
        cnn_philox4x32(seed, offset + (uint64_t)c, r);
        int64_t i = 2 * c;
        p[i] = __fadd_rn(mean, __fmul_rn(std, normal_from(r[0], r[1])));
        if (i + 1 < n) p[i + 1] = __fadd_rn(mean, __fmul_rn(std, normal_from(r[2], r[3])));
    }
}

extern "C" cnn_status cnn_cuda_random_f32(cnn_context *ctx, float *p, int64_t n, int dist,
                                          float a, float b, cnn_rng_draw d)
{
    CNN_CHECK(dist == 0 || dist == 1, CNN_ERR_INVALID_ARG,
              "random: distribution %d is neither 0 (uniform) nor 1 (normal)", dist);
    if (n <= 0) return CNN_OK;
    cudaStream_t s;
    CNN_TRY(cnn_cuda_enter(ctx, "random", &s));
    if (dist == 0) {
        uniform_f32_kernel<<<grid_for((n + 3) / 4), THREADS, 0, s>>>(p, n, a, b, d.seed, d.offset,
                                                                     d.state);
        CNN_CUDA_LAUNCH_CHECK(uniform_f32_kernel);
    } else {
        normal_f32_kernel<<<grid_for((n + 1) / 2), THREADS, 0, s>>>(p, n, a, b, d.seed, d.offset,
                                                                    d.state);
        CNN_CUDA_LAUNCH_CHECK(normal_f32_kernel);
    }
    return CNN_OK;
}
