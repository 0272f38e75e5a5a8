/* cnncuda/runtime.h — status and errors, devices and contexts, tensors, autograd.
 * A part of the public API: users include cnncuda.h, which includes every part and states
 * the ownership, error and thread rules. */
#ifndef CNNCUDA_RUNTIME_H
#define CNNCUDA_RUNTIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------
 * Status and errors
 * ---------------------------------------------------------------------------------------- */
typedef enum cnn_status {
    CNN_OK = 0,
    CNN_ERR_INVALID_ARG,    /* a NULL pointer, an out-of-range value or option ... */
    CNN_ERR_SHAPE,          /* shapes or dtypes that do not fit together */
    CNN_ERR_OUT_OF_MEMORY,  /* host or device allocation failed */
    CNN_ERR_IO,             /* a file could not be opened, read or written */
    CNN_ERR_FORMAT,         /* a file's content is corrupt or not what was expected */
    CNN_ERR_DEVICE,         /* a device is missing, or tensors live on different devices */
    CNN_ERR_UNSUPPORTED,    /* a valid request this build or backend cannot serve */
    CNN_ERR_NOT_FOUND,      /* a name (tensor, model, class) does not exist */
    CNN_ERR_CUDA,           /* a CUDA / cuDNN / cuBLAS call failed */
    CNN_ERR_INTERNAL        /* a broken invariant: a bug in libcnncuda */
} cnn_status;

/* The message of the last failure on this thread ("" if none). Borrowed, thread-local. */
const char *cnn_last_error(void);
/* Clears this thread's error message. */
void cnn_clear_error(void);
/* A short constant name for a status, e.g. "CNN_ERR_SHAPE". */
const char *cnn_status_name(cnn_status s);
/* The library version string. */
const char *cnn_version(void);

/* ------------------------------------------------------------------------------------------
 * Devices and contexts
 * ---------------------------------------------------------------------------------------- */
typedef enum cnn_device_type { CNN_DEVICE_CPU = 0, CNN_DEVICE_CUDA = 1 } cnn_device_type;
typedef struct cnn_device {
    cnn_device_type type;
    int index; /* CUDA device ordinal; 0 for the CPU */
} cnn_device;
#ifndef __cplusplus
#define CNN_CPU ((cnn_device){CNN_DEVICE_CPU, 0})
#define CNN_CUDA(i) ((cnn_device){CNN_DEVICE_CUDA, (i)})
#else /* C++ has no compound literals */
#define CNN_CPU (cnn_device{CNN_DEVICE_CPU, 0})
#define CNN_CUDA(i) (cnn_device{CNN_DEVICE_CUDA, (int)(i)})
#endif

/* Which implementation an op uses for CUDA tensors (CPU tensors always use the CPU code). */
typedef enum cnn_backend {
    CNN_BACKEND_AUTO = 0, /* cuDNN/cuBLAS where built and able, else hand-written CUDA */
    CNN_BACKEND_CUDNN,    /* same as AUTO, stated explicitly */
    CNN_BACKEND_CUDA,     /* hand-written CUDA kernels only (GEMMs still use cuBLAS) */
    CNN_BACKEND_CPU       /* only meaningful for CPU tensors */
} cnn_backend;

typedef struct cnn_context cnn_context;

/* Number of usable CUDA devices: 0 in a CPU-only build or without a GPU or driver. */
int cnn_cuda_device_count(void);
/* True when this build contains the CUDA backend / the cuDNN dispatch. */
bool cnn_built_with_cuda(void);
bool cnn_built_with_cudnn(void);

/* Each CUDA context queues its work on a stream of its own, so a CUDA tensor produced under one
 * context and used under another (another thread's, or another device's) must be waited for
 * first: cnn_synchronize under the producing context, then hand the tensor over. Released under
 * the context that used it, its memory is reused only after the work queued there by then
 * (under a context of another device the release waits for that work, except inside a graph
 * capture, where no wait is allowed: release such a tensor outside it); released under a third
 * context (or a CPU one), cnn_synchronize the user's context first. */
/* New context for a device. Reads CNN_BACKEND (cudnn|cuda|cpu), CNN_TF32 (0|1) and
 * CNN_DETERMINISTIC (0|1) from the environment. Fails with CNN_ERR_DEVICE for a missing GPU. */
cnn_status cnn_context_create(cnn_device device, cnn_context **out);
/* Destroys a context (must not be current on another thread). */
void cnn_context_destroy(cnn_context **ctx);
/* Makes ctx current on this thread; NULL returns to the thread's default CPU context. */
void cnn_context_set_current(cnn_context *ctx);
/* This thread's current context (borrowed). */
cnn_context *cnn_context_current(void);
/* The current context's device. */
cnn_device cnn_current_device(void);

/* Grad mode of the current context: when off, ops record nothing. Returns the previous mode. */
bool cnn_set_grad_enabled(bool enabled);
bool cnn_is_grad_enabled(void);
/* Backend preference of the current context (see cnn_backend; a value outside it is ignored). */
void cnn_set_backend(cnn_backend backend);
cnn_backend cnn_get_backend(void);
/* Deterministic mode: only deterministic algorithms (cuDNN, atomics-free kernels). */
void cnn_set_deterministic(bool on);
bool cnn_is_deterministic(void);
/* TF32 math for conv and GEMM on the GPU (default off: exact FP32): cuDNN, cuBLAS and the
 * hand-written conv's GEMMs then use TF32 tensor cores (sm_80 and later); other ops stay FP32. */
void cnn_set_tf32(bool on);
bool cnn_is_tf32(void);
/* Seeds the current context's counter-based RNG and resets its offset to 0. Every context
 * (each thread's default one too) starts from the same fixed seed, so two contexts left unseeded
 * draw the same numbers, dropout masks included: seed each one of them differently. */
void cnn_manual_seed(uint64_t seed);
/* The RNG state (seed, offset): saving and restoring both reproduces the stream exactly. */
void cnn_rng_get_state(uint64_t *seed, uint64_t *offset);
void cnn_rng_set_state(uint64_t seed, uint64_t offset);
/* Returns the host memory cached for CPU tensors (blocks >= 64 KiB kept for reuse; at most
 * CNN_CPU_CACHE_MB megabytes, default 4096, 0 disables; blocks not yet reused only while they
 * and the live bytes stay within twice the most ever live at once) to the system. */
void cnn_cpu_empty_cache(void);
/* Waits until all work queued on the current context (its stream) is done. */
cnn_status cnn_synchronize(void);
/* A stopwatch for work queued on the current context. On a CUDA context, start and stop record
 * CUDA events on the context's stream, so the time is the device's, between the two points of
 * the stream, with no host synchronisation in between; on a CPU context they read the host's
 * monotonic clock. Start and stop must be called under a context on the timer's device. */
typedef struct cnn_timer cnn_timer;
/* New timer for the current context's device. */
cnn_status cnn_timer_create(cnn_timer **out);
void cnn_timer_destroy(cnn_timer **t);
cnn_status cnn_timer_start(cnn_timer *t);
cnn_status cnn_timer_stop(cnn_timer *t);
/* Milliseconds from the last start to the last stop; waits until the stop has been reached.
 * CNN_ERR_INVALID_ARG if the timer was not started and stopped. */
cnn_status cnn_timer_elapsed_ms(cnn_timer *t, double *ms);

/* CUDA graphs: a step recorded once and replayed with one launch, without the host-side cost
 * of its ops (checks, tape, allocator, one launch per kernel). cnn_graph_capture calls fn(ud)
 * once under the current CUDA context with the context's stream in capture mode: the GPU work
 * fn queues there is recorded, not run, and each cnn_graph_replay runs all of it again. A
 * replay repeats exactly what was recorded, the same addresses and the same scalar values:
 *  - run fn once without capturing first: cuDNN's algorithm search, the optimizer's state and
 *    the context's helper buffers are made on first use, which a capture cannot do
 *    (CNN_ERR_INVALID_ARG names what was missing);
 *  - tensors fn allocates come from memory kept for the graph until cnn_graph_destroy, so a
 *    tensor fn leaves alive (a loss stored through ud) holds each replay's result; feed new
 *    inputs by copying them into the tensors fn read (cnn_tensor_copy_), not by new tensors;
 *  - host work in fn happens once, at capture: ops on CPU tensors, host-side counters. Waiting
 *    for the GPU inside fn (cnn_synchronize, reading a tensor), timers, pinned memory and
 *    handing tensors between streams are CNN_ERR_UNSUPPORTED; so is what waits for the whole
 *    device, from any thread, while the capture runs (cnn_cuda_empty_cache keeps that
 *    device's cache);
 *  - random ops on the GPU (dropout in training, random fills) draw new numbers at each
 *    replay: the ones fn run op by op would draw from the context's random stream where it is
 *    at the replay (cnn_manual_seed applies), and the replay advances it as fn would; the
 *    capture itself draws nothing;
 *  - an optimizer step in fn reads its scalars from device memory (the learning rate; Adam's
 *    bias corrections), which each replay first brings up to date, so cnn_optim_set_lr and
 *    schedules apply between replays; each replay counts as one cnn_optim_step. The graph
 *    keeps the tensors the step uses (state, scalars, gradients) until it is destroyed, and
 *    cnn_optim_load_state_dict loads into the same state tensors, which the graph then reads.
 * Everything fn used (context, model, optimizer, tensors) must outlive the graph. When fn or
 * the capture fails, nothing was run, *out is NULL and the error is fn's or the capture's.
 * CNN_ERR_DEVICE on a CPU context and in a CPU-only build. */
typedef struct cnn_graph cnn_graph;
cnn_status cnn_graph_capture(cnn_status (*fn)(void *ud), void *ud, cnn_graph **out);
/* Queues the recorded work on the capturing context's stream (asynchronously, as ops run). */
cnn_status cnn_graph_replay(cnn_graph *g);
/* Waits for a replay still running, then releases the graph and its memory (destroyed inside
 * another capture on its context, it cannot wait: memory a replay may still use is then kept
 * until that capture's graph is destroyed). */
void cnn_graph_destroy(cnn_graph **g);

/* ------------------------------------------------------------------------------------------
 * Tensors: dtype, device, rank <= 4, dims and byte strides over a shared storage.
 * ---------------------------------------------------------------------------------------- */
typedef enum cnn_dtype {
    CNN_F32 = 0,  /* every op */
    CNN_F16 = 1,  /* storage only (files, cnn_tensor_to_dtype) */
    CNN_BF16 = 2, /* storage only (files, cnn_tensor_to_dtype) */
    CNN_I64 = 3,  /* class labels, counters (e.g. num_batches_tracked) */
    CNN_I32 = 4,  /* indices (e.g. max-pool argmax) */
    CNN_F64 = 5   /* storage only (files, cnn_tensor_to_dtype) */
} cnn_dtype;

#define CNN_MAX_DIMS 4
typedef struct cnn_shape {
    int ndim;                 /* 0 (a scalar) .. 4 */
    int64_t d[CNN_MAX_DIMS];  /* unused trailing entries are 0 */
} cnn_shape;
/* CNN_SHAPE(8, 3, 32, 32) builds a cnn_shape from 1 to 4 sizes; CNN_SCALAR is rank 0. */
#define CNN_NARGS_(a, b, c, d, n, ...) n
#ifndef __cplusplus
#define CNN_SHAPE(...) ((cnn_shape){CNN_NARGS_(__VA_ARGS__, 4, 3, 2, 1, 0), {__VA_ARGS__}})
#define CNN_SCALAR ((cnn_shape){0, {0}})
#else /* C++: no compound literals, and a size_t size must not be a narrowing error */
inline cnn_shape cnn_shape_make_(int n, int64_t a, int64_t b = 0, int64_t c = 0, int64_t d = 0)
{
    cnn_shape s = {n, {a, b, c, d}};
    return s;
}
#define CNN_SHAPE(...) cnn_shape_make_(CNN_NARGS_(__VA_ARGS__, 4, 3, 2, 1, 0), __VA_ARGS__)
#define CNN_SCALAR (cnn_shape{0, {0}})
#endif

typedef struct cnn_tensor cnn_tensor;

/* New tensor on a device: uninitialised of any dtype; zero / one / constant-filled F32. */
cnn_status cnn_tensor_empty(cnn_shape shape, cnn_dtype dtype, cnn_device device, cnn_tensor **out);
cnn_status cnn_tensor_zeros(cnn_shape shape, cnn_device device, cnn_tensor **out);
cnn_status cnn_tensor_ones(cnn_shape shape, cnn_device device, cnn_tensor **out);
cnn_status cnn_tensor_full(cnn_shape shape, float value, cnn_device device, cnn_tensor **out);
/* Random F32 tensors from the current context's RNG: U[low, high) and N(mean, std^2). The same
 * seed gives the same values on CPU and GPU (normal: up to the last bit or so of a value, where
 * the GPU's logf/cosf round differently from the C library's). */
cnn_status cnn_tensor_uniform(cnn_shape shape, float low, float high, cnn_device device,
                              cnn_tensor **out);
cnn_status cnn_tensor_normal(cnn_shape shape, float mean, float std, cnn_device device,
                             cnn_tensor **out);
/* New F32 tensor holding a copy of `numel` host floats (row-major); from page-locked memory
 * to a CUDA device the copy may still run on return (see cnn_tensor_write). */
cnn_status cnn_tensor_from_data(cnn_shape shape, const float *data, cnn_device device,
                                cnn_tensor **out);
/* New I64 tensor holding a copy of host int64 values (e.g. class labels). */
cnn_status cnn_tensor_from_i64(cnn_shape shape, const int64_t *data, cnn_device device,
                               cnn_tensor **out);
/* New uninitialised CPU tensor in page-locked (pinned) host memory, for data headed to the
 * GPU: a copy from it to a CUDA tensor runs asynchronously on the context's stream (the call
 * returns before the data has moved), so do not write into the pinned tensor again until the
 * device has been synchronised; releasing it at once is always safe (its memory is reused only
 * after the copy is done). CNN_ERR_DEVICE without CUDA or a GPU. */
cnn_status cnn_tensor_empty_pinned(cnn_shape shape, cnn_dtype dtype, cnn_tensor **out);
/* Whether t's memory is pinned host memory (false for NULL and in a CPU-only build). */
bool cnn_tensor_is_pinned(const cnn_tensor *t);
/* Copies a tensor to another device (a new contiguous tensor, even on the same device; no
 * autograd history, as cnn_tensor_clone: the copy is a constant). */
cnn_status cnn_tensor_to(const cnn_tensor *t, cnn_device device, cnn_tensor **out);
/* New contiguous copy on the same device (no autograd history). */
cnn_status cnn_tensor_clone(const cnn_tensor *t, cnn_tensor **out);
/* New contiguous CPU copy of a CPU tensor in another dtype (no autograd history), as PyTorch's
 * t.to(dtype): to a wider format exactly; to a narrower float one rounded to nearest even (F64
 * to F16 or BF16 through F32, as PyTorch), values past the format's range to +-infinity, NaN to
 * NaN; to an integer truncated toward zero, where a NaN, infinite or out-of-range value is
 * CNN_ERR_INVALID_ARG naming the element (PyTorch's cast leaves a float's undefined and wraps
 * an I64 into I32 modulo 2^32). The same dtype
 * gives a clone (any device); another dtype of a CUDA tensor is CNN_ERR_UNSUPPORTED. */
cnn_status cnn_tensor_to_dtype(const cnn_tensor *t, cnn_dtype dtype, cnn_tensor **out);
/* Copies src's values into dst in place: same shape and dtype, any devices. Not recorded (a
 * backward through the op that made dst is refused after it: cnn_backward).
 * Views of one storage that overlap are fine: dst gets src's values from before the call. */
cnn_status cnn_tensor_copy_(cnn_tensor *dst, const cnn_tensor *src);
/* Reading results back without stalling the GPU: starts copying a CUDA tensor into a
 * contiguous pinned CPU tensor of its shape and dtype and returns at once; the copy runs on the
 * context's stream after the work queued so far, so the host can queue more (the next training
 * step) meanwhile. cnn_tensor_wait(dst) returns once the values have landed; read dst only
 * after it. A CPU src is copied at once. */
cnn_status cnn_tensor_copy_start_(cnn_tensor *dst, const cnn_tensor *src);
/* Waits until the copies started into t have landed (at once unless t is pinned), and not for
 * the work queued after them. An error a kernel found meanwhile (a class label out of range)
 * is reported by the next call that waits for the whole stream (cnn_tensor_read or
 * cnn_tensor_to of a CUDA tensor, cnn_synchronize). */
cnn_status cnn_tensor_wait(const cnn_tensor *t);
/* Fills a tensor in place (not recorded: as cnn_tensor_copy_). */
cnn_status cnn_tensor_fill_(cnn_tensor *t, float value);
/* Reshape: a view sharing storage when t is contiguous, else a contiguous copy. One size may
 * be -1 (inferred). Recorded by autograd. */
cnn_status cnn_tensor_reshape(const cnn_tensor *t, cnn_shape shape, cnn_tensor **out);
/* A contiguous tensor with t's values (a new reference to t itself if already contiguous); a
 * copy is recorded on the tape when t requires grad, so gradients flow back to t. */
cnn_status cnn_tensor_contiguous(const cnn_tensor *t, cnn_tensor **out);
/* A view of t with dims a and b swapped (strides only, no copy). Recorded by autograd. */
cnn_status cnn_tensor_transpose(const cnn_tensor *t, int a, int b, cnn_tensor **out);
/* A view of t narrowed along dim to [start, start+length). Recorded by autograd. */
cnn_status cnn_tensor_narrow(const cnn_tensor *t, int dim, int64_t start, int64_t length,
                             cnn_tensor **out);
/* Copies the values (in logical row-major order) to host memory: n must equal numel. F32
 * tensors read into float, F64 into double, I64 into int64_t, I32 into int32_t, F16 and BF16
 * into their bits (uint16_t). Synchronises with the device. */
cnn_status cnn_tensor_read(const cnn_tensor *t, void *dst, size_t n);
/* Writes host values (logical row-major order, n == numel) into t in place. Into a CUDA
 * tensor from ordinary memory, src may be reused on return; from page-locked memory (the data
 * of a cnn_tensor_empty_pinned tensor) the copy runs asynchronously, as cnn_tensor_copy_ from
 * a pinned tensor does: do not write src again until cnn_synchronize. */
cnn_status cnn_tensor_write(cnn_tensor *t, const void *src, size_t n);
/* Direct pointer to a contiguous CPU F32 tensor's data; NULL otherwise. Borrowed. */
float *cnn_tensor_data(cnn_tensor *t);
const float *cnn_tensor_cdata(const cnn_tensor *t);
/* Shape queries. */
cnn_shape cnn_tensor_shape(const cnn_tensor *t);
int cnn_tensor_ndim(const cnn_tensor *t);
/* Size of dim i; a negative i counts from the end; 0 for an i out of range. */
int64_t cnn_tensor_dim(const cnn_tensor *t, int i);
int64_t cnn_tensor_numel(const cnn_tensor *t);
cnn_dtype cnn_tensor_dtype(const cnn_tensor *t);
cnn_device cnn_tensor_device(const cnn_tensor *t);
bool cnn_tensor_is_contiguous(const cnn_tensor *t);
/* Writes "(8, 3, 32, 32)" into buf; returns buf. */
const char *cnn_shape_str(cnn_shape s, char *buf, size_t n);
/* One more reference to the same tensor (release it with cnn_tensor_free). */
cnn_tensor *cnn_tensor_retain(cnn_tensor *t);
/* Drops the caller's reference and sets *t to NULL. NULL-safe. */
void cnn_tensor_free(cnn_tensor **t);

/* ------------------------------------------------------------------------------------------
 * Autograd
 * ---------------------------------------------------------------------------------------- */
/* Marks a leaf tensor (one not produced by a recorded op) as needing a gradient. */
cnn_status cnn_tensor_set_requires_grad(cnn_tensor *t, bool requires_grad);
/* True for a leaf that requires grad, or the output of an op recorded on the live tape. */
bool cnn_tensor_requires_grad(const cnn_tensor *t);
/* The accumulated gradient of a leaf (NULL until a backward reaches it). Borrowed. */
cnn_tensor *cnn_tensor_grad(const cnn_tensor *t);
/* Drops a leaf's gradient (the next backward writes a fresh one). */
void cnn_tensor_zero_grad(cnn_tensor *t);
/* Back-propagates from a scalar loss (its gradient seeded with 1), accumulating into the
 * .grad of every leaf that requires grad, then resets the tape: every graph recorded on this
 * context goes, not only the loss's (unlike PyTorch's), so several losses are summed (cnn_add)
 * into one before a single backward. As PyTorch (its version
 * counter), a tensor an op saved for this backward that was written in place after the op ran
 * (cnn_tensor_copy_, _fill_, _write, an initialiser, an optimizer step, a load, a training-mode
 * batch norm's running statistics; through any view of its storage) makes the backward fail with
 * CNN_ERR_INVALID_ARG naming the op, before any gradient changes; run the forward again. So does
 * such a write into a recorded op's output while that output tensor is still held (PyTorch
 * records the write as an op; the tape does not, and the op's gradient would then be wrong);
 * one written only through a view after the output tensor itself was freed is not seen. Adding
 * into a leaf's .grad is such a write too: where an op saved that .grad and this backward adds
 * into it before the op's turn, the backward stops there, the gradients added so far kept (as
 * PyTorch's). Writes through a cnn_tensor_data pointer are not seen. An op's output kept from
 * before an earlier backward (or cnn_tape_reset) has lost its graph, a view of a parameter
 * too: a backward through an op that took it as an input fails (CNN_ERR_INVALID_ARG, before
 * any gradient changes) rather than leave out its share (PyTorch keeps a view's graph); take
 * the view again after each backward, or pass a cnn_tensor_clone as a constant. */
cnn_status cnn_backward(cnn_tensor *loss);
/* As cnn_backward, but seeds the gradient of `out` (any shape) with `grad` (same shape). */
cnn_status cnn_backward_with_grad(cnn_tensor *out, const cnn_tensor *grad);
/* Drops everything recorded on the current context's tape (and what it saved). */
void cnn_tape_reset(void);
/* Number of ops on the current context's tape: those recorded since the last backward or
 * reset, less the ones no held tensor leads to any more. Those are dropped as later ops are
 * recorded, once as many outputs were released as the tape last kept (at least 16): PyTorch
 * frees a graph with its output, here a forward run in grad mode and freed without a backward
 * (an evaluation loop that forgot cnn_set_grad_enabled(false)) is dropped within about one
 * more forward, so such a loop holds a few forwards' memory, not one per iteration. */
size_t cnn_tape_size(void);

#ifdef __cplusplus
}
#endif
#endif /* CNNCUDA_RUNTIME_H */
