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
/* TF32 math for conv and GEMM on the GPU (default off: exact FP32): cuDNN, cuBLAS and the
 * hand-written conv's GEMMs then use TF32 tensor cores (sm_80 and later); other ops stay FP32. */
void cnn_set_tf32(bool on);
bool cnn_is_tf32(void);
/* Seeds the current context's counter-based RNG and resets its offset to 0. */
void cnn_manual_seed(uint64_t seed);
/* The RNG state (seed, offset): saving and restoring both reproduces the stream exactly. */
void cnn_rng_get_state(uint64_t *seed, uint64_t *offset);
void cnn_rng_set_state(uint64_t seed, uint64_t offset);
/* Returns the host memory cached for CPU tensors (blocks >= 64 KiB kept for reuse; at most
 * CNN_CPU_CACHE_MB megabytes, default 4096, 0 disables) to the system. */
void cnn_cpu_empty_cache(void);
/* Waits until all work queued on the current context's device is done. */
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
/* New uninitialised CPU tensor in page-locked (pinned) host memory, for data headed to the
 * GPU: a copy from it to a CUDA tensor runs asynchronously on the context's stream (the call
 * returns before the data has moved), so do not write into the pinned tensor again until the
 * device has been synchronised; releasing it at once is always safe (its memory is reused only
 * after the copy is done). CNN_ERR_DEVICE without CUDA or a GPU. */
cnn_status cnn_tensor_empty_pinned(cnn_shape shape, cnn_dtype dtype, cnn_tensor **out);
bool cnn_tensor_is_pinned(const cnn_tensor *t);
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
 * [0, 1), averaged over the samples whose label is not ignore_index -> a scalar (NaN when none
 * is left), as torch.nn.functional.cross_entropy. cnn_cross_entropy ignores CNN_IGNORE_INDEX
 * (-100, PyTorch's default). Any other label outside [0, K) is CNN_ERR_INVALID_ARG on the CPU.
 * On a GPU the kernel finds it without waiting for the device: the loss is NaN, and the next call
 * that waits for the device anyway (cnn_tensor_read, cnn_tensor_to the CPU, cnn_synchronize)
 * returns CNN_ERR_INVALID_ARG naming the label and sample, once. */
#define CNN_IGNORE_INDEX (-100)
cnn_status cnn_cross_entropy(const cnn_tensor *logits, const cnn_tensor *labels,
                             float label_smoothing, cnn_tensor **loss);
cnn_status cnn_cross_entropy_ignore(const cnn_tensor *logits, const cnn_tensor *labels,
                                    float label_smoothing, int64_t ignore_index, cnn_tensor **loss);
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

/* ------------------------------------------------------------------------------------------
 * Models: the zoo (LeNet-5, AlexNet, VGG, ResNet), torchvision's architectures, initialisation
 * and state_dict names, so that torchvision weights (converted to safetensors) load directly.
 * ---------------------------------------------------------------------------------------- */
typedef struct cnn_model cnn_model;

/* Start from cnn_model_default_options() and change what you need. */
typedef struct cnn_model_options {
    int num_classes;         /* 0: the architecture's default (1000; LeNet-5: 10) */
    int in_channels;         /* 0: the architecture's default (3; LeNet-5: 1) */
    bool zero_init_residual; /* ResNet: the last BN of each block starts with weight 0 */
    bool tanh;               /* LeNet-5: tanh activations (LeCun 1998) instead of ReLU */
    float dropout;           /* AlexNet / VGG classifier dropout probability (default 0.5) */
    bool skip_init;          /* conv / linear weights left uninitialised (no RNG, no fill):
                                for loading a checkpoint right after creation */
} cnn_model_options;
cnn_model_options cnn_model_default_options(void);

/* What a model is and what it expects as input. */
typedef struct cnn_model_info {
    const char *name;         /* the zoo name, e.g. "resnet50" (borrowed from the model) */
    int num_classes, in_channels;
    int input_h, input_w;     /* the usual input size (224 for ImageNet models) */
    int min_h, min_w;         /* the smallest input the architecture accepts */
    float mean[3], std[3];    /* per-channel input normalisation (ImageNet's for ImageNet
                                 models with 3 channels, else 0.5 / 0.5) */
} cnn_model_info;

/* The zoo's names (a borrowed static array of *count entries): lenet5, alexnet, vgg11..vgg19
 * and their _bn variants, resnet18..resnet152, and resnet18_small / resnet34_small /
 * resnet50_small (3x3 stride-1 stem, no max-pool: for 28..64-pixel images). */
const char *const *cnn_model_names(int *count);
/* New model with torchvision's initialisation (from the context RNG), tensors on the CPU.
 * num_classes / in_channels 0 take the defaults. Unknown name: CNN_ERR_NOT_FOUND listing the
 * valid names. LeNet-5 takes 32x32 inputs, or 28x28 ones (zero-padded by 2 inside the model). */
cnn_status cnn_model_create(const char *name, int num_classes, int in_channels, cnn_model **out);
cnn_status cnn_model_create_ex(const char *name, const cnn_model_options *opts, cnn_model **out);
void cnn_model_destroy(cnn_model **m);
/* x: (N, in_channels, H, W) -> new logits (N, num_classes), recorded on the tape. training:
 * batch norm uses batch statistics and updates running_mean / running_var (momentum 0.1, eps
 * 1e-5) and num_batches_tracked; dropout is on. Eval: running statistics, no dropout. The
 * parameters require grad, so an evaluation pass should turn grad mode off to record nothing. */
cnn_status cnn_model_forward(cnn_model *m, const cnn_tensor *x, bool training, cnn_tensor **logits);
cnn_model_info cnn_model_get_info(const cnn_model *m);
/* Parameters and buffers under torchvision's state_dict keys, in its order (borrowed): load
 * weights with cnn_dict_load(cnn_model_state(m), src, strict, report). */
cnn_dict *cnn_model_state(cnn_model *m);
/* The trainable parameters only, same tensors and order (borrowed). */
cnn_dict *cnn_model_parameters(cnn_model *m);
/* True for the i-th trainable parameter when it is a bias or a batch-norm weight/bias (the
 * usual no-weight-decay group). */
bool cnn_model_param_no_decay(const cnn_model *m, int i);
/* Number of trainable scalars (num_batches_tracked and running stats are buffers). */
int64_t cnn_model_num_parameters(const cnn_model *m);
/* Moves every parameter and buffer (and gradient) to device, keeping the tensor handles, as
 * module.to() does; a CUDA device must be the current context's. Call it between steps (not
 * with a recorded forward pending). On failure nothing moves. */
cnn_status cnn_model_to(cnn_model *m, cnn_device device);
cnn_device cnn_model_device(const cnn_model *m);
/* Writes / reads the state as safetensors (reading: strict or not, see cnn_dict_load). */
cnn_status cnn_model_save(const cnn_model *m, const char *path);
cnn_status cnn_model_load(cnn_model *m, const char *path, bool strict, cnn_load_report *report);

/* Per-layer summary for one image of height x width, computed from shapes alone. MACs count
 * the multiply-accumulates of conv and linear layers (bias adds excluded), as torchvision's
 * model table does (ResNet-50: 4.09 G at 224x224); batch norm, activations, pooling and
 * residual adds count 0. */
typedef struct cnn_layer_summary {
    char name[48];       /* module path, e.g. "layer1.0.conv1" */
    char type[24];       /* "Conv2d", "BatchNorm2d", "ReLU", "Add", ... */
    cnn_shape out_shape; /* for a batch of 1 */
    int64_t params;      /* trainable scalars of this layer */
    int64_t macs;
} cnn_layer_summary;
typedef struct cnn_model_summary {
    int n_layers;
    cnn_layer_summary *layers;
    cnn_shape in_shape, out_shape;
    int64_t total_params, total_macs;
} cnn_model_summary;
/* Fills *out (release with cnn_model_summary_free). Too small an input: CNN_ERR_SHAPE naming
 * the layer where it fails. */
cnn_status cnn_model_summarize(const cnn_model *m, int height, int width, cnn_model_summary *out);
void cnn_model_summary_free(cnn_model_summary *s);
/* Formats a summary as a table into buf (truncated to n); returns the length it needs. */
size_t cnn_model_summary_format(const cnn_model_summary *s, char *buf, size_t n);

/* ------------------------------------------------------------------------------------------
 * Optimizers, LR schedules and initialisers (torch.optim, torch.optim.lr_scheduler,
 * torch.nn.utils.clip_grad_norm_, torch.nn.init: same formulas, defaults and argument order)
 * ---------------------------------------------------------------------------------------- */
typedef enum cnn_optim_kind { CNN_OPTIM_SGD = 0, CNN_OPTIM_ADAM, CNN_OPTIM_ADAMW } cnn_optim_kind;
typedef struct cnn_optim_config {
    cnn_optim_kind kind;
    float lr;           /* >= 0 */
    float momentum;     /* SGD: >= 0 */
    float dampening;    /* SGD */
    bool nesterov;      /* SGD: needs momentum > 0 and dampening 0 */
    float weight_decay; /* >= 0; SGD/Adam: L2 added to the gradient; AdamW: decoupled */
    float beta1, beta2; /* Adam/AdamW: in [0, 1) */
    float eps;          /* Adam/AdamW: >= 0, added after sqrt(v_hat) */
} cnn_optim_config;
typedef struct cnn_optim cnn_optim;

/* PyTorch's defaults for a kind: lr 1e-3; Adam betas (0.9, 0.999), eps 1e-8; AdamW weight
 * decay 1e-2; everything else 0/false. */
cnn_optim_config cnn_optim_defaults(cnn_optim_kind kind);
/* New optimizer with no parameters. Bad hyper-parameters -> CNN_ERR_INVALID_ARG. */
cnn_status cnn_optim_create(const cnn_optim_config *cfg, cnn_optim **out);
void cnn_optim_destroy(cnn_optim **opt);
/* Adds a leaf F32 contiguous parameter under a unique name (its state-dict key); the optimizer
 * retains it. apply_weight_decay false exempts it from weight decay (e.g. BN weights, biases). */
cnn_status cnn_optim_add_param(cnn_optim *opt, const char *name, cnn_tensor *param,
                               bool apply_weight_decay);
/* Adds every tensor of d that requires grad, under its dict name; tensors of rank <= 1 (biases,
 * BN weights) get weight decay only if decay_1d. */
cnn_status cnn_optim_add_dict(cnn_optim *opt, const cnn_dict *d, bool decay_1d);
/* One update of every parameter that has a gradient (those whose grad is NULL are skipped).
 * On failure no parameter has changed. */
cnn_status cnn_optim_step(cnn_optim *opt);
/* Drops every parameter's gradient (PyTorch's zero_grad(set_to_none=True)). */
void cnn_optim_zero_grad(cnn_optim *opt);
cnn_status cnn_optim_set_lr(cnn_optim *opt, float lr);
float cnn_optim_get_lr(const cnn_optim *opt);
/* Number of cnn_optim_step calls so far (restored by cnn_optim_load_state_dict). */
int64_t cnn_optim_step_count(const cnn_optim *opt);
/* Adds the optimizer's state to d (copies): tensors "optim.<param>.momentum_buffer" (SGD with
 * momentum) or "optim.<param>.exp_avg" / ".exp_avg_sq" (Adam/AdamW), and metadata
 * "optim.kind", "optim.lr", "optim.step" and "optim.<param>.step". */
cnn_status cnn_optim_state_dict(const cnn_optim *opt, cnn_dict *d);
/* Restores what cnn_optim_state_dict wrote (entries of d outside "optim." are ignored): kind
 * must match, every parameter needs its state, shapes must match, no unknown "optim.<name>"
 * entries. lr and step counts are restored too. On failure nothing is changed. */
cnn_status cnn_optim_load_state_dict(cnn_optim *opt, const cnn_dict *d);

/* torch.nn.utils.clip_grad_norm_: total = L2 norm over all gradients (NULL grads skipped, the
 * params array may hold NULLs); every gradient is multiplied by min(1, max_norm / (total +
 * 1e-6)). total_norm may be NULL. */
cnn_status cnn_clip_grad_norm(cnn_tensor *const *params, int n, float max_norm, float *total_norm);
/* The same over an optimizer's parameters. */
cnn_status cnn_optim_clip_grad_norm(cnn_optim *opt, float max_norm, float *total_norm);

/* Learning-rate schedules as pure functions of t, the number of completed epochs (or steps),
 * PyTorch's last_epoch. StepLR: base * gamma^floor(t / step_size). */
cnn_status cnn_sched_step_lr(float base_lr, int step_size, float gamma, int64_t t, float *lr);
/* MultiStepLR: base * gamma^(number of milestones <= t); milestones in any order. */
cnn_status cnn_sched_multistep_lr(float base_lr, const int64_t *milestones, int n, float gamma,
                                  int64_t t, float *lr);
/* Linear warmup then cosine annealing over `total` units (warmup counts inside total), with
 * T = total - warmup:
 *   t < warmup:          base * (t + 1) / warmup
 *   warmup <= t < total: eta_min + (base - eta_min) * (1 + cos(pi * (t - warmup) / T)) / 2
 *                        (CosineAnnealingLR's closed form with T_max = T)
 *   t >= total:          eta_min (where PyTorch's closed form would rise again).
 * warmup 0 is plain CosineAnnealingLR(T_max = total). Needs 0 <= warmup < total. */
cnn_status cnn_sched_cosine_lr(float base_lr, int64_t warmup, int64_t total, float eta_min,
                               int64_t t, float *lr);

/* ReduceLROnPlateau: stateful, driven by a validation metric once per epoch. */
typedef enum cnn_plateau_mode { CNN_PLATEAU_MIN = 0, CNN_PLATEAU_MAX } cnn_plateau_mode;
typedef struct cnn_plateau_config {
    cnn_plateau_mode mode;
    float factor;        /* in (0, 1): new lr = max(lr * factor, min_lr) */
    int patience;        /* bad epochs tolerated before a reduction */
    float threshold;     /* improvement needed to count as better */
    bool threshold_abs;  /* false: 'rel' (best * (1 -+ threshold)); true: 'abs' (best -+ it) */
    int cooldown;        /* epochs after a reduction during which bad epochs are not counted */
    float min_lr;
    float eps;           /* reductions smaller than eps are skipped */
} cnn_plateau_config;
typedef struct cnn_plateau cnn_plateau;
/* PyTorch's defaults: min, factor 0.1, patience 10, threshold 1e-4 rel, cooldown 0, min_lr 0,
 * eps 1e-8. */
cnn_plateau_config cnn_sched_plateau_defaults(void);
cnn_status cnn_sched_plateau_create(const cnn_plateau_config *cfg, float initial_lr,
                                    cnn_plateau **out);
void cnn_sched_plateau_destroy(cnn_plateau **p);
/* Feeds one epoch's metric; *lr (may be NULL) receives the lr to use next, which is also set on
 * opt when opt is not NULL. */
cnn_status cnn_sched_step_metric(cnn_plateau *p, float metric, cnn_optim *opt, float *lr);
float cnn_sched_plateau_get_lr(const cnn_plateau *p);
/* The scheduler's state (lr, best, bad-epoch and cooldown counters, epoch) as metadata
 * "sched.plateau.*" of d, and back (validated; on failure nothing is changed). */
cnn_status cnn_sched_plateau_state_dict(const cnn_plateau *p, cnn_dict *d);
cnn_status cnn_sched_plateau_load_state_dict(cnn_plateau *p, const cnn_dict *d);

/* Initialisers (torch.nn.init), in place on any tensor, drawing from the context RNG. */
typedef enum cnn_fan_mode { CNN_FAN_IN = 0, CNN_FAN_OUT } cnn_fan_mode;
typedef enum cnn_nonlinearity {
    CNN_NONLIN_LINEAR = 0, /* also conv and identity: gain 1 */
    CNN_NONLIN_SIGMOID,    /* 1 */
    CNN_NONLIN_TANH,       /* 5/3 */
    CNN_NONLIN_RELU,       /* sqrt(2) */
    CNN_NONLIN_LEAKY_RELU, /* sqrt(2 / (1 + slope^2)) */
    CNN_NONLIN_SELU        /* 3/4 */
} cnn_nonlinearity;
/* torch.nn.init.calculate_gain; param is leaky_relu's negative slope (ignored otherwise). */
cnn_status cnn_init_gain(cnn_nonlinearity nl, float param, float *gain);
/* fan_in = size(1) * receptive field, fan_out = size(0) * receptive field (rank >= 2). */
cnn_status cnn_init_fans(const cnn_tensor *t, int64_t *fan_in, int64_t *fan_out);
cnn_status cnn_init_uniform_(cnn_tensor *t, float low, float high);
cnn_status cnn_init_normal_(cnn_tensor *t, float mean, float std);
cnn_status cnn_init_constant_(cnn_tensor *t, float value);
cnn_status cnn_init_zeros_(cnn_tensor *t);
cnn_status cnn_init_ones_(cnn_tensor *t);
/* Kaiming: std = gain(nl, a) / sqrt(fan); uniform bound sqrt(3) * std. PyTorch's defaults are
 * a = 0, CNN_FAN_IN, CNN_NONLIN_LEAKY_RELU. */
cnn_status cnn_init_kaiming_uniform_(cnn_tensor *t, float a, cnn_fan_mode mode,
                                     cnn_nonlinearity nl);
cnn_status cnn_init_kaiming_normal_(cnn_tensor *t, float a, cnn_fan_mode mode,
                                    cnn_nonlinearity nl);
/* Xavier/Glorot: std = gain * sqrt(2 / (fan_in + fan_out)); uniform bound sqrt(3) * std. */
cnn_status cnn_init_xavier_uniform_(cnn_tensor *t, float gain);
cnn_status cnn_init_xavier_normal_(cnn_tensor *t, float gain);
/* PyTorch's default Conv2d/Linear init: weight ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (kaiming
 * uniform with a = sqrt(5)), bias (may be NULL) ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)). */
cnn_status cnn_init_default_(cnn_tensor *weight, cnn_tensor *bias);

/* ------------------------------------------------------------------------------------------
 * Datasets and data loading (data/). A dataset maps an index to (image, label); a transform
 * turns the decoded image into a normalised (C, H, W) float image; a loader shuffles, decodes
 * on worker threads and hands out CPU batches. All randomness comes from (seed, epoch, sample
 * index), so a seed gives the same batches whatever the number of workers.
 * ---------------------------------------------------------------------------------------- */
typedef struct cnn_dataset cnn_dataset;

/* IDX files (MNIST layout), plain or gzip: images (N, rows, cols) ubyte and labels (N) ubyte.
 * Everything is read and validated up front (magic, dims, sizes, same N in both files); a bad
 * file gives CNN_ERR_IO / CNN_ERR_FORMAT naming it. num_classes = max label + 1; mean/std
 * computed over all pixels. channels: 1 (the stored gray), or 3 to repeat the gray plane. */
cnn_status cnn_idx_dataset_create(const char *images_path, const char *labels_path, int channels,
                                  cnn_dataset **out);
/* Fashion-MNIST from root (NULL: $CNN_FASHION_MNIST_DIR, else /usr/share/datasets/fashion-mnist,
 * where Debian's dataset-fashion-mnist puts it) holding
 * {train,t10k}-{images-idx3,labels-idx1}-ubyte.gz: the train (60,000) or test (10,000) split,
 * with its 10 class names and the train split's mean/std (0.2860, 0.3530) for both splits. */
cnn_status cnn_fashion_mnist_create(const char *root, bool train, int channels, cnn_dataset **out);
/* An ImageNet-style folder ROOT/<split>/<class>/<image files> (split e.g. "train" or "val").
 * Classes are the sub-folders sorted by name (strcmp), labels 0..K-1 in that order; files are
 * sorted within a class; files without an image extension (jpg jpeg png bmp, any case) and
 * hidden files are ignored. Images are decoded (stb_image) when a sample is fetched, so a bad
 * file shows up then, per sample: only JPEG, PNG and BMP content is decoded, told by its first
 * bytes, up to 32768 pixels a side and 2^26 in all. channels: 3 (RGB) or 1 (gray); other
 * channel layouts of the source are converted. Errors: missing root or split folder
 * (CNN_ERR_IO), no class folder or no image at all (CNN_ERR_NOT_FOUND). An empty class folder
 * is allowed and kept (its label exists with no sample) and listed in the warnings. Mean/std
 * are ImageNet's. */
cnn_status cnn_imagefolder_create(const char *root, const char *split, int channels,
                                  cnn_dataset **out);
/* Whether an image folder lists a file of this name (an image extension, any case). */
bool cnn_imagefolder_is_image_name(const char *file_name);
void cnn_dataset_destroy(cnn_dataset **ds);

int64_t cnn_dataset_size(const cnn_dataset *ds);
int cnn_dataset_num_classes(const cnn_dataset *ds);
/* Name of class i (a folder name, or Fashion-MNIST's "T-shirt/top" ...), borrowed; NULL when
 * out of range. */
const char *cnn_dataset_class_name(const cnn_dataset *ds, int i);
/* Label of sample i, or -1 when out of range. Needs no decoding. */
int64_t cnn_dataset_label(const cnn_dataset *ds, int64_t i);
/* Channels of every image the dataset hands out (1 or 3). */
int cnn_dataset_channels(const cnn_dataset *ds);
/* Stored image size of datasets that have one (IDX: 28 x 28) in *height, *width (may be NULL);
 * returns the side when square, else 0 (folders: sizes vary, all 0). */
int cnn_dataset_native_size(const cnn_dataset *ds, int *height, int *width);
/* Per-channel mean/std of the pixels scaled to [0, 1] used by the default normalisation. */
void cnn_dataset_mean_std(const cnn_dataset *ds, float mean[3], float std[3]);
/* Writes a name for sample i (its file path, or "file[i]" for IDX) into buf; returns buf. */
const char *cnn_dataset_sample_name(const cnn_dataset *ds, int64_t i, char *buf, size_t n);
/* Things found while opening the dataset that are not errors (empty class folders, ignored
 * files): count and i-th message (borrowed). */
int cnn_dataset_num_warnings(const cnn_dataset *ds);
const char *cnn_dataset_warning(const cnn_dataset *ds, int i);

/* How a sample becomes a (C, img_size, img_size) float image. Steps in order: geometry ->
 * random affine -> horizontal flip -> colour jitter -> normalise ((x - mean) / std, x in
 * [0, 1]) -> random erasing. The random steps run only when `train` is true. */
typedef enum cnn_geometry {
    /* train: torchvision RandomResizedCrop(img_size, scale, ratio) (10 tries, then centre
     * crop); eval: Resize(round(img_size / eval_crop_ratio)) of the shorter side + CenterCrop */
    CNN_GEOM_CROP = 0,
    /* Zero-pad (centred) up to img_size when the image is smaller by an even amount per side
     * (28 -> 32 for LeNet), else resize to img_size x img_size; the same in train and eval */
    CNN_GEOM_PAD_OR_RESIZE = 1
} cnn_geometry;
typedef struct cnn_transform {
    int img_size;            /* output height = width; 0: the dataset's native size (IDX) */
    bool train;              /* random augmentation on (training) or off (evaluation) */
    cnn_geometry geometry;
    float scale[2];          /* RandomResizedCrop area fraction range (0.08, 1) */
    float ratio[2];          /* RandomResizedCrop aspect range (3/4, 4/3) */
    float eval_crop_ratio;   /* crop / resize ratio in eval (0.875) */
    float hflip_p;           /* probability of a horizontal flip (0.5 for photos, 0 for digits) */
    float brightness, contrast, saturation; /* ColorJitter factors; 0: off */
    float affine_degrees;    /* RandomAffine: rotation in [-deg, deg]; all three 0: off */
    float affine_translate;  /* max shift as a fraction of the size, per axis */
    float affine_scale[2];   /* scale range; (0, 0) means (1, 1) */
    float mean[3], std[3];   /* per output channel */
    /* torchvision RandomErasing(p, scale, ratio, value=0) after normalising: with probability
     * erase_p, a box of erase_scale of the area and aspect (h / w) in erase_ratio is set to 0
     * (the mean) in every channel. erase_p 0: off; a zero range means the default (0.02, 0.33)
     * for scale, (0.3, 3.3) for ratio. */
    float erase_p;
    float erase_scale[2];
    float erase_ratio[2];
} cnn_transform;
/* The default pipeline for a dataset: folders -> CNN_GEOM_CROP, hflip 0.5 in training, no
 * jitter; IDX -> CNN_GEOM_PAD_OR_RESIZE, no flip, no affine. Mean/std from the dataset.
 * img_size 0 keeps an IDX dataset's native size (a folder needs img_size > 0). */
cnn_transform cnn_transform_default(const cnn_dataset *ds, bool train, int img_size);
/* Sample i decoded and transformed into out[C * S * S] (S = img_size, or the native size),
 * with its label in *label (may be NULL). Randomness from (seed, epoch, i) only. A file that
 * cannot be decoded gives CNN_ERR_FORMAT / CNN_ERR_IO naming it and stb_image's reason.
 * Thread-safe: several threads may fetch from one dataset. */
cnn_status cnn_dataset_get(const cnn_dataset *ds, int64_t i, const cnn_transform *t,
                           uint64_t seed, int64_t epoch, float *out, int64_t *label);
/* Output size S of a transform on a dataset (0 with an error if it has none). */
int cnn_transform_output_size(const cnn_dataset *ds, const cnn_transform *t);

typedef struct cnn_loader cnn_loader;
typedef struct cnn_loader_options {
    int batch_size;        /* > 0 */
    bool shuffle;          /* a new permutation every epoch, from (seed, epoch) */
    bool drop_last;        /* drop a final batch smaller than batch_size */
    int num_workers;       /* decoding threads (<= CNN_LOADER_MAX_WORKERS); 0: decode inside
                              cnn_loader_next on the calling thread */
    int prefetch;          /* batches decoded ahead of the consumer; 0 means 2 */
    int64_t limit;         /* > 0: use only `limit` samples, spread evenly over the dataset
                              (indices floor(k * size / limit)) so every class appears */
    uint64_t seed;
    bool strict;           /* a bad sample fails cnn_loader_next instead of being skipped */
    cnn_transform transform;
    cnn_device device;     /* where batches are delivered (default, zero: the CPU). For a CUDA
                              device, batches are packed into pinned host memory and copied on
                              the loader's own stream one batch ahead, overlapping the caller's
                              GPU work; cnn_loader_next must then be called with a current
                              context on that device (its stream waits for the copy). */
} cnn_loader_options;
#define CNN_LOADER_MAX_WORKERS 64
/* Options with batch_size, shuffle = train, the dataset's default transform and everything
 * else zero (no workers, prefetch 2, not strict, all samples, seed 0). */
cnn_loader_options cnn_loader_default_options(const cnn_dataset *ds, bool train, int img_size,
                                              int batch_size);
/* New loader over ds (borrowed: keep it alive until the loader is destroyed). Starts its
 * workers, which wait for the first epoch. */
cnn_status cnn_loader_create(const cnn_dataset *ds, const cnn_loader_options *opt,
                             cnn_loader **out);
/* Stops and joins the workers (safe at any point of an epoch) and frees everything. */
void cnn_loader_destroy(cnn_loader **l);
/* Starts (or restarts, dropping what was prefetched) epoch `epoch`: its permutation and
 * augmentation draws depend on (seed, epoch). cnn_loader_next starts epoch 0 if none was. */
cnn_status cnn_loader_start_epoch(cnn_loader *l, int64_t epoch);
/* Starts epoch `epoch` at a position in its order (0 <= position <= samples per epoch): the
 * samples before it are neither decoded nor handed out, so the batches that follow are those an
 * uninterrupted epoch would give after cnn_loader_position returned `position`. For resuming
 * inside an epoch (bad samples met before the position are not listed again). */
cnn_status cnn_loader_start_epoch_at(cnn_loader *l, int64_t epoch, int64_t position);
/* The position in the current epoch's order just after the last batch handed out (bad samples
 * skipped included); 0 at the start of an epoch. */
int64_t cnn_loader_position(const cnn_loader *l);
/* The next batch: new tensors images (B, C, S, S) F32 and labels (B) I64 on the options'
 * device (the CPU unless set). At the end of the epoch both are set to NULL and CNN_OK is
 * returned (again on every later call, until cnn_loader_start_epoch). Bad samples
 * (undecodable files) are skipped and recorded: the batch is completed from the following
 * samples, so every batch
 * has batch_size samples except the epoch's last, which may be smaller (or dropped with
 * drop_last). With `strict`, a bad sample makes this call fail with CNN_ERR_FORMAT (or
 * CNN_ERR_IO) naming the file; the partial batch is discarded and the next call goes on with
 * the following samples. */
cnn_status cnn_loader_next(cnn_loader *l, cnn_tensor **images, cnn_tensor **labels);
/* Samples per epoch (after `limit`) and batches per epoch if no sample is bad. */
int64_t cnn_loader_num_samples(const cnn_loader *l);
int64_t cnn_loader_num_batches(const cnn_loader *l);
/* Bad samples met so far (each file once, in the order met): count, path, reason. Borrowed,
 * valid until the loader is destroyed; call from the thread that calls cnn_loader_next. */
int cnn_loader_num_bad(const cnn_loader *l);
const char *cnn_loader_bad_name(const cnn_loader *l, int i);
const char *cnn_loader_bad_reason(const cnn_loader *l, int i);

typedef struct cnn_loader_stats {
    int64_t images_decoded;   /* good samples decoded (including prefetched, not yet handed out) */
    int64_t bad_samples;      /* samples that failed to decode */
    int64_t batches;          /* batches handed out */
    int n_workers;            /* entries used below: num_workers, or 1 for the calling thread */
    double decode_seconds[CNN_LOADER_MAX_WORKERS]; /* time spent decoding + transforming */
    int64_t worker_images[CNN_LOADER_MAX_WORKERS]; /* => images / second per worker */
    double wait_seconds;      /* wall time spent inside cnn_loader_next (waiting for data) */
} cnn_loader_stats;
/* Counters since the loader was created. */
void cnn_loader_get_stats(cnn_loader *l, cnn_loader_stats *out);

/* ------------------------------------------------------------------------------------------
 * CPU memory: what CPU tensors hold (process-wide, every context and thread together)
 * ---------------------------------------------------------------------------------------- */
/* Bytes held by live CPU tensor storages now (*allocated) and the most held at any moment since
 * the start or the last reset (*peak): sizes as allocated (rounded up to 64 B, 4 KiB from
 * 64 KiB), cached free blocks excluded, as torch.cuda.memory_allocated / max_memory_allocated
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
    size_t cached_bytes;         /* reserved but free, ready for reuse */
    uint64_t n_cuda_malloc;      /* successful cudaMalloc calls */
    uint64_t n_cuda_free;        /* cudaFree calls */
} cnn_cuda_memory_stats;
/* The allocator's counters for cuda:device (all zero before its first allocation).
 * CNN_ERR_DEVICE for a device that does not exist. */
cnn_status cnn_cuda_get_memory_stats(int device, cnn_cuda_memory_stats *out);
/* Restarts peak_allocated_bytes from the current allocated_bytes. */
void cnn_cuda_reset_peak_memory(int device);
/* Waits for each device, then returns every wholly free cudaMalloc'd segment to CUDA; live
 * tensors keep theirs, and the free rest of a segment a live tensor uses stays cached. */
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
 * flags: a static name such as "IMPLICIT_PRECOMP_GEMM", "WINOGRAD_NONFUSED" or "ALGO_1".
 * NULL when no choice is cached for that key (not run yet, CPU tensors, no cuDNN). */
const char *cnn_conv2d_cudnn_algo(const cnn_tensor *x, const cnn_tensor *w,
                                  const cnn_conv2d_params *p, int pass);

#ifdef __cplusplus
}
#endif
#endif /* CNNCUDA_H */
