/* cnncuda/memory.h — CPU and CUDA memory, CUDA devices, versions and the cuDNN
 * algorithms chosen.
 * A part of the public API: users include cnncuda.h, which includes every part and states
 * the ownership, error and thread rules. */
#ifndef CNNCUDA_MEMORY_H
#define CNNCUDA_MEMORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------
 * CPU memory: what CPU tensors hold (process-wide, every context and thread together)
 * ---------------------------------------------------------------------------------------- */
/* Bytes held by live CPU tensor storages now (*allocated) and the most held at any moment since
 * the start or the last reset (*peak): the sizes of the blocks the storages hold (a request
 * rounded up to 64 B, 4 KiB from 64 KiB, or a cached block up to 25% larger that served it),
 * cached free blocks excluded, as torch.cuda.memory_allocated / max_memory_allocated
 * count device memory; pinned tensors (cnn_tensor_empty_pinned) are not counted. Either pointer
 * may be NULL. reset_peak: after reading, the peak restarts from the current allocated bytes. */
void cnn_cpu_memory_stats(size_t *allocated, size_t *peak, bool reset_peak);

/* ------------------------------------------------------------------------------------------
 * CUDA devices and memory. Device memory comes from a caching allocator: a released tensor's
 * block stays cached on its device and is reused by later allocations on the same stream, so
 * a steady training step calls neither cudaMalloc nor cudaFree. Sizes are rounded up (512 B
 * steps up to 1 MiB, 2 MiB steps above); the byte counts below are rounded sizes. A request
 * above 1 MiB may be cut from the front of a larger cached block, whose rest stays cached, and
 * released neighbours within one cudaMalloc'd segment merge again.
 * ---------------------------------------------------------------------------------------- */
typedef struct cnn_cuda_memory_stats {
    size_t allocated_bytes;      /* held by live tensors */
    size_t peak_allocated_bytes; /* the most allocated_bytes since start or the last reset */
    size_t reserved_bytes;       /* obtained from cudaMalloc: allocated + cached */
    size_t cached_bytes;         /* reserved but free: ready for reuse, but for graph_bytes */
    uint64_t n_cuda_malloc;      /* successful cudaMalloc calls */
    uint64_t n_cuda_free;        /* cudaFree calls */
    /* Of cached_bytes, those kept for CUDA graphs until each is destroyed (cnn_graph_capture):
     * free memory of a graph's pool, and blocks released while a graph was being captured,
     * which its replays may still use. No other allocation takes them. */
    size_t graph_bytes;
} cnn_cuda_memory_stats;
/* The allocator's counters for cuda:device (all zero before its first allocation).
 * CNN_ERR_DEVICE for a device that does not exist. */
cnn_status cnn_cuda_get_memory_stats(int device, cnn_cuda_memory_stats *out);
/* Restarts peak_allocated_bytes from the current allocated_bytes. */
void cnn_cuda_reset_peak_memory(int device);
/* Waits for each device, then returns every wholly free cudaMalloc'd segment to CUDA; live
 * tensors keep theirs, and the free rest of a segment a live tensor uses stays cached; idle
 * pinned host blocks are freed too. While a CUDA graph is being captured (by any thread), a wait
 * for its device would break the capture: that device's cache and the pinned cache are kept,
 * and if that device had memory to free the answer is CNN_ERR_UNSUPPORTED naming it (the other
 * devices are emptied). */
cnn_status cnn_cuda_empty_cache(void);

/* The name of cuda:device (cudaGetDeviceProperties, e.g. "NVIDIA H100 80GB HBM3") into buf,
 * truncated to size - 1 characters. CNN_ERR_DEVICE (buf "") for a device that does not exist,
 * without a GPU or driver, and in a CPU-only build. */
cnn_status cnn_cuda_device_name(int device, char *buf, size_t size);
/* Versions as the libraries encode them: CUDA driver and runtime (12040 is 12.4; driver 0
 * without one) and the cuDNN library loaded at run time (91400 is 9.14.0; 0 in a build without
 * cuDNN). Any pointer may be NULL. CNN_ERR_DEVICE, all 0, in a CPU-only build. */
cnn_status cnn_cuda_versions(int *driver, int *runtime, size_t *cudnn);
/* The cuDNN algorithm the current context has cached for cnn_conv2d(x, w, ., p) in `pass`
 * (0 forward, 1 backward data, 2 backward filter) under its current TF32 and deterministic
 * flags: a name such as "IMPLICIT_PRECOMP_GEMM", "WINOGRAD_NONFUSED", "ALGO_1", "CUBLAS_GEMM"
 * (a 1x1 conv as cuBLAS GEMMs) or "ENGINE_12" (an engine of cuDNN's graph API, with
 * CNN_CUDNN_ENGINES), valid while the context lives. NULL when no choice is cached for that
 * key (not run yet, CPU tensors, no cuDNN). */
const char *cnn_conv2d_cudnn_algo(const cnn_tensor *x, const cnn_tensor *w,
                                  const cnn_conv2d_params *p, int pass);

#ifdef __cplusplus
}
#endif
#endif /* CNNCUDA_MEMORY_H */
