/* cnncuda.h — the one public header of libcnncuda: tensors, autograd, ops, optimizers,
 * checkpoints, devices. It includes no CUDA header and no other library's header.
 *
 * OWNERSHIP RULE. The caller owns every object a function hands back (through an out-pointer
 * or as a return value documented "new") and releases it with the matching
 * `cnn_*_free(&p)` / `cnn_*_destroy(&p)`, which also sets p to NULL. Functions that take a
 * `const cnn_tensor *` (or a plain pointer) only borrow it. Tensors are reference counted
 * inside the library: the autograd tape keeps what it saved alive until it is reset, so
 * freeing your handle never invalidates anybody else's. Pointers documented "borrowed" stay
 * valid only as long as the object they came from.
 *
 * ERRORS. Every fallible function returns a cnn_status (or NULL) and, on failure, leaves a
 * message naming the op and the offending shapes/values, read with cnn_last_error(). The
 * library never exits, aborts or prints because of bad input.
 *
 * THREADS. Each thread has a current context (device, stream, grad mode, RNG, tape); a thread
 * that sets none gets its own default CPU context. Two threads never share a context implicitly.
 */
#ifndef CNNCUDA_H
#define CNNCUDA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CNN_VERSION "0.1.0"

/* ------------------------------------------------------------------------------------------
 * Status and errors
 * ---------------------------------------------------------------------------------------- */
typedef enum cnn_status {
    CNN_OK = 0,
    CNN_ERR_INVALID_ARG,    /* a NULL pointer, a negative size, an unknown name ... */
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
#define CNN_CPU ((cnn_device){CNN_DEVICE_CPU, 0})
#define CNN_CUDA(i) ((cnn_device){CNN_DEVICE_CUDA, (i)})

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
/* Backend preference of the current context (see cnn_backend). */
void cnn_set_backend(cnn_backend backend);
cnn_backend cnn_get_backend(void);
/* Deterministic mode: only deterministic algorithms (cuDNN, atomics-free kernels). */
void cnn_set_deterministic(bool on);
bool cnn_is_deterministic(void);
/* TF32 math for conv and GEMM on the GPU (default off: exact FP32). */
void cnn_set_tf32(bool on);
bool cnn_is_tf32(void);
/* Seeds the current context's counter-based RNG and resets its offset to 0. */
void cnn_manual_seed(uint64_t seed);
/* The RNG state (seed, offset): saving and restoring both reproduces the stream exactly. */
void cnn_rng_get_state(uint64_t *seed, uint64_t *offset);
void cnn_rng_set_state(uint64_t seed, uint64_t offset);
/* Waits until all work queued on the current context's device is done. */
cnn_status cnn_synchronize(void);

/* ------------------------------------------------------------------------------------------
 * Tensors: dtype, device, rank <= 4, dims and byte strides over a shared storage.
 * ---------------------------------------------------------------------------------------- */
typedef enum cnn_dtype {
    CNN_F32 = 0,  /* every op */
    CNN_F16 = 1,  /* storage only, for now */
    CNN_BF16 = 2, /* storage only, for now */
    CNN_I64 = 3,  /* class labels, counters (e.g. num_batches_tracked) */
    CNN_I32 = 4   /* indices (e.g. max-pool argmax) */
} cnn_dtype;

#define CNN_MAX_DIMS 4
typedef struct cnn_shape {
    int ndim;                 /* 0 (a scalar) .. 4 */
    int64_t d[CNN_MAX_DIMS];  /* unused trailing entries are 0 */
} cnn_shape;
/* CNN_SHAPE(8, 3, 32, 32) builds a cnn_shape from 1 to 4 sizes; CNN_SCALAR is rank 0. */
#define CNN_NARGS_(a, b, c, d, n, ...) n
#define CNN_SHAPE(...) ((cnn_shape){CNN_NARGS_(__VA_ARGS__, 4, 3, 2, 1, 0), {__VA_ARGS__}})
#define CNN_SCALAR ((cnn_shape){0, {0}})

typedef struct cnn_tensor cnn_tensor;

/* New uninitialised / zero / one / constant-filled tensor of F32 on a device. */
cnn_status cnn_tensor_empty(cnn_shape shape, cnn_dtype dtype, cnn_device device, cnn_tensor **out);
cnn_status cnn_tensor_zeros(cnn_shape shape, cnn_device device, cnn_tensor **out);
cnn_status cnn_tensor_ones(cnn_shape shape, cnn_device device, cnn_tensor **out);
cnn_status cnn_tensor_full(cnn_shape shape, float value, cnn_device device, cnn_tensor **out);
/* Random F32 tensors from the current context's RNG: U[low, high) and N(mean, std^2). The same
 * seed gives the same values on CPU and GPU. */
cnn_status cnn_tensor_uniform(cnn_shape shape, float low, float high, cnn_device device, cnn_tensor **out);
cnn_status cnn_tensor_normal(cnn_shape shape, float mean, float std, cnn_device device, cnn_tensor **out);
/* New F32 tensor holding a copy of `numel` host floats (row-major). */
cnn_status cnn_tensor_from_data(cnn_shape shape, const float *data, cnn_device device, cnn_tensor **out);
/* New I64 tensor holding a copy of host int64 values (e.g. class labels). */
cnn_status cnn_tensor_from_i64(cnn_shape shape, const int64_t *data, cnn_device device, cnn_tensor **out);
/* Copies a tensor to another device (a new contiguous tensor, even on the same device). */
cnn_status cnn_tensor_to(const cnn_tensor *t, cnn_device device, cnn_tensor **out);
/* New contiguous copy on the same device (no autograd history). */
cnn_status cnn_tensor_clone(const cnn_tensor *t, cnn_tensor **out);
/* Copies src's values into dst in place: same shape and dtype, any devices. Not recorded. */
cnn_status cnn_tensor_copy_(cnn_tensor *dst, const cnn_tensor *src);
/* Fills a tensor in place (not recorded). */
cnn_status cnn_tensor_fill_(cnn_tensor *t, float value);
/* Reshape: a view sharing storage when t is contiguous, else a contiguous copy. One size may
 * be -1 (inferred). Recorded by autograd. */
cnn_status cnn_tensor_reshape(const cnn_tensor *t, cnn_shape shape, cnn_tensor **out);
/* A contiguous tensor with t's values (a new reference to t itself if already contiguous). */
cnn_status cnn_tensor_contiguous(const cnn_tensor *t, cnn_tensor **out);
/* A view of t with dims a and b swapped (strides only, no copy). Recorded by autograd. */
cnn_status cnn_tensor_transpose(const cnn_tensor *t, int a, int b, cnn_tensor **out);
/* A view of t narrowed along dim to [start, start+length). Recorded by autograd. */
cnn_status cnn_tensor_narrow(const cnn_tensor *t, int dim, int64_t start, int64_t length, cnn_tensor **out);
/* Copies the values (in logical row-major order) to host memory: n must equal numel. F32
 * tensors read into float, I64 tensors into int64_t. Synchronises with the device. */
cnn_status cnn_tensor_read(const cnn_tensor *t, void *dst, size_t n);
/* Writes host values (logical row-major order, n == numel) into t in place. */
cnn_status cnn_tensor_write(cnn_tensor *t, const void *src, size_t n);
/* Direct pointer to a contiguous CPU F32 tensor's data; NULL otherwise. Borrowed. */
float *cnn_tensor_data(cnn_tensor *t);
const float *cnn_tensor_cdata(const cnn_tensor *t);
/* Shape queries. */
cnn_shape cnn_tensor_shape(const cnn_tensor *t);
int cnn_tensor_ndim(const cnn_tensor *t);
int64_t cnn_tensor_dim(const cnn_tensor *t, int i); /* negative i counts from the end */
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
 * .grad of every leaf that requires grad, then resets the tape. */
cnn_status cnn_backward(cnn_tensor *loss);
/* As cnn_backward, but seeds the gradient of `out` (any shape) with `grad` (same shape). */
cnn_status cnn_backward_with_grad(cnn_tensor *out, const cnn_tensor *grad);
/* Drops everything recorded on the current context's tape (and what it saved). */
void cnn_tape_reset(void);
/* Number of ops recorded on the current context's tape. */
size_t cnn_tape_size(void);

/* ------------------------------------------------------------------------------------------
 * Ops (semantics, argument order and defaults as PyTorch's torch.nn.functional). Shapes are
 * (N, C, H, W) for images. Each returns a new output tensor through *y and records itself on
 * the tape when grad mode is on and an input requires grad. Inputs must share a device.
 * ---------------------------------------------------------------------------------------- */
typedef struct cnn_conv2d_params {
    int stride[2];   /* (h, w); 0 means 1 */
    int padding[2];
    int dilation[2]; /* 0 means 1 */
    int groups;      /* 0 means 1 */
} cnn_conv2d_params;
/* x: (N, C, H, W), w: (K, C/groups, R, S), b: (K) or NULL -> y: (N, K, P, Q). */
cnn_status cnn_conv2d(const cnn_tensor *x, const cnn_tensor *w, const cnn_tensor *b,
                      const cnn_conv2d_params *p, cnn_tensor **y);
/* x: (N, in), w: (out, in), b: (out) or NULL -> y: (N, out) = x w^T + b. */
cnn_status cnn_linear(const cnn_tensor *x, const cnn_tensor *w, const cnn_tensor *b, cnn_tensor **y);

/* Batch norm over (N, C) or (N, C, H, W), per channel C. training: batch statistics, and
 * running_mean/var (if given) updated with `momentum` (running_var with the unbiased batch
 * variance, as PyTorch). Eval: running statistics. weight/bias NULL: no affine. */
cnn_status cnn_batch_norm(const cnn_tensor *x, cnn_tensor *running_mean, cnn_tensor *running_var,
                          const cnn_tensor *weight, const cnn_tensor *bias, bool training,
                          float momentum, float eps, cnn_tensor **y);

typedef struct cnn_pool2d_params {
    int kernel[2];
    int stride[2];     /* 0 means = kernel (PyTorch's default) */
    int padding[2];
    int dilation[2];   /* max pool only; 0 means 1 */
    bool ceil_mode;
    /* avg pool only: true = PyTorch's count_include_pad=False. Zero (the default) counts the
     * padding in the divisor, as PyTorch's default count_include_pad=True does. */
    bool exclude_pad;
} cnn_pool2d_params;
cnn_status cnn_max_pool2d(const cnn_tensor *x, const cnn_pool2d_params *p, cnn_tensor **y);
cnn_status cnn_avg_pool2d(const cnn_tensor *x, const cnn_pool2d_params *p, cnn_tensor **y);
/* Adaptive average pooling to (out_h, out_w); (1, 1) is global average pooling. */
cnn_status cnn_adaptive_avg_pool2d(const cnn_tensor *x, int out_h, int out_w, cnn_tensor **y);

cnn_status cnn_relu(const cnn_tensor *x, cnn_tensor **y);
cnn_status cnn_leaky_relu(const cnn_tensor *x, float negative_slope, cnn_tensor **y);
cnn_status cnn_elu(const cnn_tensor *x, float alpha, cnn_tensor **y);
cnn_status cnn_sigmoid(const cnn_tensor *x, cnn_tensor **y);
cnn_status cnn_tanh(const cnn_tensor *x, cnn_tensor **y);
/* Inverted dropout: in training, zero with probability p and scale the rest by 1/(1-p);
 * identity (a new reference) in eval. Draws from the context RNG. */
cnn_status cnn_dropout(const cnn_tensor *x, float p, bool training, cnn_tensor **y);

/* y = a + b (same shape). */
cnn_status cnn_add(const cnn_tensor *a, const cnn_tensor *b, cnn_tensor **y);
/* y = a * alpha (scalar). */
cnn_status cnn_scale(const cnn_tensor *a, float alpha, cnn_tensor **y);
/* Concatenation of n tensors along dim (1 = channels); other dims must match. */
cnn_status cnn_concat(const cnn_tensor *const *xs, int n, int dim, cnn_tensor **y);
/* Flattens dims start_dim.. into one (torch.flatten(x, start_dim)); a view when possible. */
cnn_status cnn_flatten(const cnn_tensor *x, int start_dim, cnn_tensor **y);
/* Sum / mean of all elements -> a scalar (rank 0). */
cnn_status cnn_sum(const cnn_tensor *x, cnn_tensor **y);
cnn_status cnn_mean(const cnn_tensor *x, cnn_tensor **y);

/* Softmax / log-softmax along dim (negative counts from the end). */
cnn_status cnn_softmax(const cnn_tensor *x, int dim, cnn_tensor **y);
cnn_status cnn_log_softmax(const cnn_tensor *x, int dim, cnn_tensor **y);
/* Cross-entropy of logits (N, K) against I64 labels (N) in [0, K), with label smoothing in
 * [0, 1), averaged over the batch -> a scalar. */
cnn_status cnn_cross_entropy(const cnn_tensor *logits, const cnn_tensor *labels,
                             float label_smoothing, cnn_tensor **loss);
/* Local response normalisation across channels (torch.nn.LocalResponseNorm):
 * y = x / (k + alpha/size * sum over `size` neighbouring channels of x^2)^beta. */
cnn_status cnn_lrn(const cnn_tensor *x, int size, float alpha, float beta, float k, cnn_tensor **y);

/* ------------------------------------------------------------------------------------------
 * Named tensor sets (state dicts) and safetensors checkpoints
 * ---------------------------------------------------------------------------------------- */
/* An ordered map name -> tensor (each retained), plus string metadata (key -> value). */
typedef struct cnn_dict cnn_dict;
cnn_status cnn_dict_create(cnn_dict **out);
void cnn_dict_destroy(cnn_dict **d);
/* Adds or replaces an entry; the dict takes its own reference to t. */
cnn_status cnn_dict_set(cnn_dict *d, const char *name, cnn_tensor *t);
/* The tensor under name, or NULL. Borrowed. */
cnn_tensor *cnn_dict_get(const cnn_dict *d, const char *name);
/* Entries in insertion order: count, i-th name, i-th tensor (borrowed). */
int cnn_dict_size(const cnn_dict *d);
const char *cnn_dict_name(const cnn_dict *d, int i);
cnn_tensor *cnn_dict_at(const cnn_dict *d, int i);
/* String metadata (safetensors' __metadata__): set (copies), get (borrowed or NULL), list. */
cnn_status cnn_dict_set_meta(cnn_dict *d, const char *key, const char *value);
const char *cnn_dict_get_meta(const cnn_dict *d, const char *key);
int cnn_dict_meta_size(const cnn_dict *d);
const char *cnn_dict_meta_key(const cnn_dict *d, int i);
const char *cnn_dict_meta_value(const cnn_dict *d, int i);

/* What cnn_dict_load found: names in the destination with no source tensor (missing) and
 * names in the source with no destination (unexpected), as PyTorch's load_state_dict. */
typedef struct cnn_load_report {
    int n_missing, n_unexpected;
    char missing[1024];    /* comma-separated, truncated with "..." */
    char unexpected[1024];
} cnn_load_report;
/* Copies src's values into dst's tensors of the same names (any devices; shapes and dtypes
 * must match, else CNN_ERR_SHAPE naming the tensor, and nothing is changed). strict: missing
 * or unexpected names are an error (CNN_ERR_NOT_FOUND) and nothing is changed. report may be
 * NULL. */
cnn_status cnn_dict_load(cnn_dict *dst, const cnn_dict *src, bool strict, cnn_load_report *report);

/* Writes a dict (tensors + metadata) as a safetensors file: temporary file, fsync, rename. */
cnn_status cnn_safetensors_save(const char *path, const cnn_dict *d);
/* Reads and fully validates a safetensors file into a new dict of CPU tensors. */
cnn_status cnn_safetensors_load(const char *path, cnn_dict **out);

#ifdef __cplusplus
}
#endif
#endif /* CNNCUDA_H */
