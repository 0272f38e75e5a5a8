/* cuda_check.h — what every file in cuda/ shares: one generator for the macros that check CUDA,
 * cuBLAS and cuDNN calls and kernel launches, and access to a context's device, stream and
 * library handles. Only cuda/ includes it (it pulls in the CUDA headers); it never prints. */
#ifndef CNN_CUDA_CHECK_H
#define CNN_CUDA_CHECK_H

#include <cublas_v2.h>
#include <cuda_runtime.h>
#if CNN_WITH_CUDNN
#include <cudnn.h>
#endif

#ifdef __cplusplus
extern "C" {
#endif
#include "cuda_api.h"

/* ---- error translation --------------------------------------------------------------------- */
/* Out-of-memory is reported as such, never as a CUDA failure. */
static inline cnn_status cnn_cuda_status_of(cudaError_t e)
{
    return e == cudaErrorMemoryAllocation ? CNN_ERR_OUT_OF_MEMORY : CNN_ERR_CUDA;
}
static inline cnn_status cnn_cublas_status_of(cublasStatus_t e)
{
    return e == CUBLAS_STATUS_ALLOC_FAILED ? CNN_ERR_OUT_OF_MEMORY : CNN_ERR_CUDA;
}
#if CNN_WITH_CUDNN
static inline cnn_status cnn_cudnn_status_of(cudnnStatus_t e)
{
    return (e == CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED ||
            e == CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED)
               ? CNN_ERR_OUT_OF_MEMORY
               : CNN_ERR_CUDA;
}
/* The same for a compute call that has a hand-written fallback: cuDNN's NOT_SUPPORTED family
 * (3000-3999: this shape, layout, GPU) and a pointer it cannot use (2003, misaligned) are
 * CNN_ERR_UNSUPPORTED, which the layers answer with the hand-written kernel. */
static inline cnn_status cnn_cudnn_run_status_of(cudnnStatus_t e)
{
    return ((int)e >= 3000 && (int)e < 4000) || (int)e == 2003 ? CNN_ERR_UNSUPPORTED
                                                               : cnn_cudnn_status_of(e);
}
#endif

/* The generator: evaluates stmt once; on a result other than ok, sets the thread's message to
 * "<function>: <statement> failed at <file>:<line>: <library's error string>" and runs on_fail
 * with the translated status in cnn_cs_. */
#define CNN_CUDA_CHECK_GEN(stmt, type, ok, to_status, to_string, on_fail)                         \
    do {                                                                                          \
        type cnn_ce_ = (stmt);                                                                    \
        if (cnn_ce_ != (ok)) {                                                                    \
            cnn_status cnn_cs_ = cnn_error(to_status(cnn_ce_), "%s: %s failed at %s:%d: %s",      \
                                           __func__, #stmt, __FILE__, __LINE__,                   \
                                           to_string(cnn_ce_));                                   \
            on_fail;                                                                              \
        }                                                                                         \
    } while (0)

/* Return the status from the enclosing function on failure. A failed runtime call also sets
 * the runtime's last error: it is cleared, or the next launch check would report it as its
 * kernel's failure. */
#define CNN_CUDA_TRY(stmt)                                                                        \
    CNN_CUDA_CHECK_GEN(stmt, cudaError_t, cudaSuccess, cnn_cuda_status_of, cudaGetErrorString,    \
                       (void)cudaGetLastError(); return cnn_cs_)
#define CNN_CUBLAS_TRY(stmt)                                                                      \
    CNN_CUDA_CHECK_GEN(stmt, cublasStatus_t, CUBLAS_STATUS_SUCCESS, cnn_cublas_status_of,         \
                       cublasGetStatusString, return cnn_cs_)
#if CNN_WITH_CUDNN
#define CNN_CUDNN_TRY(stmt)                                                                       \
    CNN_CUDA_CHECK_GEN(stmt, cudnnStatus_t, CUDNN_STATUS_SUCCESS, cnn_cudnn_status_of,            \
                       cudnnGetErrorString, return cnn_cs_)
#endif
/* For functions with `cnn_status st = CNN_OK;` and a `done:` clean-up label. */
#define CNN_CUDA_TRYG(stmt)                                                                       \
    CNN_CUDA_CHECK_GEN(stmt, cudaError_t, cudaSuccess, cnn_cuda_status_of, cudaGetErrorString,    \
                       (void)cudaGetLastError(); st = cnn_cs_; goto done)
#if CNN_WITH_CUDNN
#define CNN_CUDNN_TRYG(stmt)                                                                      \
    CNN_CUDA_CHECK_GEN(stmt, cudnnStatus_t, CUDNN_STATUS_SUCCESS, cnn_cudnn_status_of,            \
                       cudnnGetErrorString, st = cnn_cs_; goto done)
/* A compute call that cuDNN answers with NOT_SUPPORTED (a shape, a GPU or a sub-library it
 * lacks) leaves the case to the hand-written kernel, which overwrites the whole output. */
#define CNN_CUDNN_RUN_TRYG(stmt)                                                                  \
    CNN_CUDA_CHECK_GEN(stmt, cudnnStatus_t, CUDNN_STATUS_SUCCESS, cnn_cudnn_run_status_of,        \
                       cudnnGetErrorString, st = cnn_cs_; goto done)
#endif
/* After every kernel launch: a bad configuration or a missing image for this GPU shows here,
 * as "<function>: launch of <kernel> failed at <file>:<line>: <error string>". */
#define CNN_CUDA_LAUNCH_CHECK(kernel)                                                             \
    do {                                                                                          \
        cudaError_t cnn_le_ = cudaGetLastError();                                                 \
        if (cnn_le_ != cudaSuccess)                                                               \
            return cnn_error(cnn_cuda_status_of(cnn_le_), "%s: launch of %s failed at %s:%d: %s", \
                             __func__, #kernel, __FILE__, __LINE__, cudaGetErrorString(cnn_le_)); \
    } while (0)

/* ---- the context's GPU side (cuda/device.c) -------------------------------------------------- */
/* Makes ctx's device current on this thread and hands back its stream. Every launcher and copy
 * starts here, since two contexts on one thread may sit on different devices. Fails with
 * CNN_ERR_DEVICE (naming op) when ctx is not a CUDA context. */
cnn_status cnn_cuda_enter(cnn_context *ctx, const char *op, cudaStream_t *stream);
/* The mean time of run(ud), which queues work on ctx's stream: one untimed call, then three
 * between CUDA events (waits for the last; a search's timing, not a benchmark's). run's first
 * failure is returned. */
cnn_status cnn_cuda_time_mean(cnn_context *ctx, const char *op, cnn_status (*run)(void *ud),
                              void *ud, float *ms);
/* The context's cuBLAS handle, created on first use, bound to its stream, with TF32 tensor-op
 * math as ctx->tf32 says. The caller has entered ctx. */
cnn_status cnn_cuda_cublas(cnn_context *ctx, cublasHandle_t *out);
#if CNN_WITH_CUDNN
/* The context's cuDNN handle, created on first use and bound to its stream. */
cnn_status cnn_cuda_cudnn(cnn_context *ctx, cudnnHandle_t *out);
#endif

/* *ones = at least n ones in device memory, kept by the context (filled once, on first use and
 * when a larger n is asked for): for reductions written as a GEMV. */
cnn_status cnn_cuda_ones(cnn_context *ctx, int64_t n, const float **ones);

/* The context's slot where kernels report an out-of-range class label (cuda/loss.cu), armed
 * so that the next wait for the stream reads it; k is the class count, for the message. */
cnn_status cnn_cuda_bad_label_slot(cnn_context *ctx, int64_t k, unsigned long long **slot);
/* After the stream has been waited for: CNN_ERR_INVALID_ARG naming the bad label if a kernel
 * reported one since the last check (the slot is then cleared), else CNN_OK. */
cnn_status cnn_cuda_check_bad_label(cnn_context *ctx);

/* ---- 1x1 convolutions as cuBLAS GEMMs (cuda/conv2d_gemm.c) ---------------------------------- */
/* Whether g is a 1x1, stride-1, unpadded, undilated, ungrouped convolution within int sizes. */
bool cnn_cuda_conv1x1_gemm_fits(const cnn_cuda_conv *g);
/* Workspace bytes pass (0 forward, 1 backward data, 2 backward filter) wants under cap (only
 * backward-filter wants any: at least one sample's (C, K) product). */
size_t cnn_cuda_conv1x1_gemm_workspace(const cnn_cuda_conv *g, int pass, size_t cap);
/* Runs pass with alpha 1, beta 0: 0: in0 x, in1 w -> out y; 1: in0 dy, in1 w -> out dx;
 * 2: in0 x, in1 dy -> out dw, with ws (ws_bytes, from cnn_cuda_conv1x1_gemm_workspace). */
cnn_status cnn_cuda_conv1x1_gemm(cnn_context *ctx, const cnn_cuda_conv *g, int pass,
                                 const float *in0, const float *in1, float *out, float *ws,
                                 size_t ws_bytes);

#if CNN_WITH_CUDNN
/* ---- convolutions through cuDNN's graph API (cuda/conv2d_engine_cudnn.c) ------------------------
 * The execution plan of one engine configuration for one direction of one convolution. */
typedef struct cnn_cudnn_plan cnn_cudnn_plan;
/* One call's convolution as the search sees it: dir 0 forward (in0 x, in1 w, out y), 1
 * backward-data (in0 dy, in1 w, out dx), 2 backward-filter (in0 x, in1 dy, out dw). aligned:
 * in0, in1 and out all lie on 16-byte boundaries (a plan made for that needs them to). */
typedef struct cnn_cudnn_engine_call {
    cnn_context *ctx;
    cudnnHandle_t h;
    const cnn_cuda_conv *g;
    int dir;
    bool tf32, deterministic, aligned;
    size_t cap; /* the most workspace a plan may ask for */
    const float *in0, *in1;
    float *out; /* overwritten by the timing runs */
} cnn_cudnn_engine_call;
/* Times the engine configurations cuDNN's heuristics propose for the call (exact FP32 unless
 * tf32, deterministic ones when asked, none compiled at run time, workspace within cap) on its
 * own buffers; *best: the fastest plan (NULL when none could run: a shape, GPU or cuDNN build
 * without one is no error), *ms its mean time; *oom: some plan was passed over for want of
 * memory. first_only: the heuristics' first acceptable configuration that runs, untimed (for
 * tests: a choice that does not depend on timing). */
void cnn_cudnn_engine_search(const cnn_cudnn_engine_call *c, bool first_only,
                             cnn_cudnn_plan **best, float *ms, bool *oom);
/* Runs a plan for the call's direction with alpha 1, beta 0 (ws: its workspace). */
cnn_status cnn_cudnn_plan_run(cudnnHandle_t h, const cnn_cudnn_plan *p, int dir, const float *in0,
                              const float *in1, float *out, void *ws);
size_t cnn_cudnn_plan_workspace(const cnn_cudnn_plan *p);
/* "ENGINE_<cuDNN's global engine index>". */
const char *cnn_cudnn_plan_name(const cnn_cudnn_plan *p);
void cnn_cudnn_plan_free(cnn_cudnn_plan *p);

/* ---- the algorithm each convolution chose (cuda/conv2d_cache_cudnn.c) --------------------------
 * conv2d_cudnn.c's search keeps its result per context under a key of everything the choice
 * depends on; dir as in cnn_cudnn_engine_call. An entry's algo is cuDNN's algorithm number for
 * its direction, or one of these: */
#define CNN_CONV_ALGO_GEMM 1000   /* the 1x1 conv as cuBLAS GEMMs (conv2d_gemm.c) */
#define CNN_CONV_ALGO_ENGINE 2000 /* a plan of cuDNN's graph API (conv2d_engine_cudnn.c) */
/* Everything an algorithm's choice depends on. Zero-filled before use: compared with memcmp. */
typedef struct cnn_conv_algo_key {
    int device, dir, tf32, deterministic;
    int aligned; /* all three buffers on 16-byte boundaries (a graph-API plan may need it) */
    int64_t n, c, h, w, k, r, s;
    int sh, sw, ph, pw, dh, dw, groups;
    /* The environment's say in the search (read at each call, so a change takes effect):
     * CNN_CUDNN_WORKSPACE_MB, CNN_CUDNN_ENGINES, CNN_CONV1X1. */
    size_t cap;
    int engines, gemm_pref;
} cnn_conv_algo_key;

typedef struct cnn_conv_algo_entry {
    cnn_conv_algo_key key;
    int algo; /* -1: cuDNN declined the case (search failed as unsupported) */
    cudnnMathType_t math;
    size_t workspace;
    cnn_cudnn_plan *plan; /* algo CNN_CONV_ALGO_ENGINE: the graph API's plan, owned by the cache */
    struct cnn_conv_algo_entry *next;
} cnn_conv_algo_entry;
/* The entry ctx's cache holds for key, copied to *out; false when there is none. */
bool cnn_conv_algo_cache_find(const cnn_context *ctx, const cnn_conv_algo_key *key,
                              cnn_conv_algo_entry *out);
/* Counts one search and keeps its result (algo -1: cuDNN declined the case), plan included;
 * false when a failed host allocation kept nothing (the caller still owns the plan; it only
 * costs a later search). */
bool cnn_conv_algo_cache_put(const cnn_context *ctx, const cnn_conv_algo_entry *val);
/* cuDNN's name of a direction's algorithm ("IMPLICIT_GEMM", "ALGO_1", ...), "CUBLAS_GEMM" for
 * CNN_CONV_ALGO_GEMM; a plan names itself (cnn_cudnn_plan_name). */
const char *cnn_conv_algo_name(int dir, int algo);
#endif

/* ---- graph capture (cuda/graph.c) ------------------------------------------------------------ */
/* The graph being captured on ctx's stream (NULL: none, or not a CUDA context); set / cleared
 * by graph.c around the capture. */
struct cnn_graph *cnn_cuda_capture_of(const cnn_context *ctx);
void cnn_cuda_capture_set(cnn_context *ctx, struct cnn_graph *graph);
/* Whether this thread is running a capture's function (for any context: in thread-local capture
 * mode the thread may neither allocate nor wait without switching modes). */
bool cnn_cuda_thread_capturing(void);
/* Counts the graphs captured on ctx that are alive (+1 at capture, -1 at destroy); buffers of
 * the context that their replays may read are kept while any is. */
void cnn_cuda_graphs_alive(cnn_context *ctx, int delta);
cudaStream_t cnn_cuda_stream_of(const cnn_context *ctx);
/* Brackets a wait for every device (cudaFreeHost): begin is false, and no wait may follow, on a
 * capturing thread or while a graph is captured on any device, else keeps captures from
 * starting anywhere until end. */
bool cnn_cuda_all_devices_wait_begin(void);
void cnn_cuda_all_devices_wait_end(void);
/* Brackets a wait for all of cuda:device (cudaDeviceSynchronize, cudaFree): begin refuses it
 * with CNN_ERR_UNSUPPORTED ("<op>: ..., <what> ...") on a capturing thread or while a graph is
 * captured on the device, else keeps captures from starting there until end. */
cnn_status cnn_cuda_device_wait_begin(int device, const char *op, const char *what);
void cnn_cuda_device_wait_end(int device);
/* Frees cuda:device's cached memory (cnn_cuda_empty_cache for one device, errors prefixed by
 * op); CNN_ERR_UNSUPPORTED, nothing freed, where there is something to free but the wait for
 * the device is refused (cnn_cuda_device_wait_begin). */
cnn_status cnn_cuda_release_cached(int device, const char *op);
/* Sets whether a kernel that may report a bad label was queued since the last wait (with its
 * class count *k when armed); returns the old flag, and the old count in *k. A capture saves
 * and restores it, and each replay arms it as the captured work did. */
bool cnn_cuda_bad_label_exchange(cnn_context *ctx, bool armed, int64_t *k);
/* Graph pools (cuda/allocator.c). begin: from now on, allocations on `stream` of cuda:device
 * come from a new pool (its number in *pool), which only they may reuse; CNN_ERR_UNSUPPORTED
 * while another capture runs on the device. end: allocations go to the general cache again,
 * and the pool's blocks stay reserved for the graph. release: the graph is gone: the pool's
 * blocks join the general cache, and blocks of other pools released during its capture
 * (held, since the graph's work used them) go back to theirs. */
cnn_status cnn_cuda_pool_begin(int device, cudaStream_t stream, int *pool);
void cnn_cuda_pool_end(int device);
void cnn_cuda_pool_release(int device, int pool);

/* ---- allocator hooks (cuda/allocator.c) ------------------------------------------------------ */
/* Device scratch for a launcher, from the caching allocator. Released right after the kernels
 * that use it are queued: the block goes back to this stream's cache, and later work on the
 * stream runs after them. */
static inline cnn_status cnn_cuda_scratch_alloc(cnn_context *ctx, size_t bytes, const char *op,
                                                cnn_storage *s)
{
    memset(s, 0, sizeof *s);
    return cnn_cuda_storage_alloc(ctx, s, bytes, op);
}
static inline void cnn_cuda_scratch_free(cnn_storage *s)
{
    if (s->release) s->release(s);
}

/* Called when a stream is about to be destroyed (after it was synchronised): cached and live
 * blocks tagged with it become reusable by any stream. */
void cnn_cuda_allocator_forget_stream(int device, cudaStream_t stream);

#ifdef __cplusplus
}
#endif
#endif /* CNN_CUDA_CHECK_H */
