/* cuda_api.h — the plain-C face of cuda/: what core/ and layers/ may call on CUDA tensors.
 * Declared here, defined in cuda/*.c and cuda/*.cu; only built (and only called) when
 * CNN_WITH_CUDA is 1. It includes no CUDA header, so nothing outside cuda/ ever does. */
#ifndef CNN_CUDA_API_H
#define CNN_CUDA_API_H

#include "../core/internal.h"

/* ---- runtime (cuda/device.c) ------------------------------------------------------------- */
/* Number of usable devices; 0 (not an error) without a GPU or driver. */
int cnn_cuda_count_devices(void);
/* Creates / releases the per-context GPU state (ctx->gpu): stream, lazily created handles. */
cnn_status cnn_cuda_context_init(cnn_context *ctx);
void cnn_cuda_context_release(cnn_context *ctx);
/* Waits for the context's stream. */
cnn_status cnn_cuda_synchronize(cnn_context *ctx);

/* ---- memory (cuda/allocator.c) ------------------------------------------------------------ */
/* Device memory for a storage from the caching allocator: sets s->data, s->release and
 * s->allocator. `op` names the caller for an out-of-memory message. */
cnn_status cnn_cuda_storage_alloc(cnn_context *ctx, cnn_storage *s, size_t bytes, const char *op);
/* Copies bytes between any two of host and device memory, ordered on the context stream;
 * returns once a copy into host memory has landed. */
cnn_status cnn_cuda_memcpy(cnn_context *ctx, void *dst, cnn_device dst_dev, const void *src,
                           cnn_device src_dev, size_t bytes);

/* ---- basic tensor kernels (cuda/tensor_ops.cu) --------------------------------------------- */
cnn_status cnn_cuda_fill_f32(cnn_context *ctx, float *p, float value, int64_t n);
/* dst[i] += src[i]. */
cnn_status cnn_cuda_accumulate_f32(cnn_context *ctx, float *dst, const float *src, int64_t n);
/* Element-by-element copy between two strided views of one shape (rank <= 4, element size
 * esize, strides in bytes), both in device memory. */
cnn_status cnn_cuda_strided_copy(cnn_context *ctx, void *dst, const int64_t *dst_byte_strides,
                                 const void *src, const int64_t *src_byte_strides,
                                 cnn_shape shape, size_t esize);
/* Philox stream into p: dist 0 uniform [a, b), 1 normal (mean a, std b), as core/rng.c. */
cnn_status cnn_cuda_random_f32(cnn_context *ctx, float *p, int64_t n, int dist, float a, float b,
                               uint64_t seed, uint64_t offset);

#endif /* CNN_CUDA_API_H */
