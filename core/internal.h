/* internal.h — what every part of the library shares but users never see: the tensor and
 * context structs, the autograd node, error macros, and helpers ops use to check arguments and
 * record themselves. It knows nothing of any op's math and includes no CUDA header. */
#ifndef CNN_INTERNAL_H
#define CNN_INTERNAL_H

#include "cnncuda.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef CNN_WITH_CUDA
#define CNN_WITH_CUDA 0
#endif
#ifndef CNN_WITH_CUDNN
#define CNN_WITH_CUDNN 0
#endif

/* ---- errors ------------------------------------------------------------------------------ */
/* Sets this thread's error message and returns s. */
cnn_status cnn_error(cnn_status s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prepends "what: " to the current message (for context added on the way up). */
cnn_status cnn_error_prefix(cnn_status s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The status for a failed system call's errno: out of memory (ENOMEM, e.g. a stream's buffer)
 * is CNN_ERR_OUT_OF_MEMORY, anything else about a file CNN_ERR_IO. */
static inline cnn_status cnn_errno_status(int err)
{
    return err == ENOMEM ? CNN_ERR_OUT_OF_MEMORY : CNN_ERR_IO;
}

/* One line on stderr when CNN_DEBUG=1 is set, else nothing (e.g. "conv2d: cuDNN cannot do
 * this case, using the hand-written kernel"). Callers log a given fact once. */
void cnn_log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Seconds on the host's monotonic clock (core/timer.c). */
double cnn_monotonic_s(void);

#define CNN_TRY(expr)                                                                             \
    do {                                                                                          \
        cnn_status cnn_s_ = (expr);                                                               \
        if (cnn_s_ != CNN_OK) return cnn_s_;                                                      \
    } while (0)
/* For functions with `cnn_status st = CNN_OK;` and a `done:` clean-up label. */
#define CNN_TRYG(expr)                                                                            \
    do {                                                                                          \
        st = (expr);                                                                              \
        if (st != CNN_OK) goto done;                                                              \
    } while (0)
#define CNN_CHECK(cond, status, ...)                                                              \
    do {                                                                                          \
        if (!(cond)) return cnn_error((status), __VA_ARGS__);                                     \
    } while (0)
/* Only for true invariants: a failure is a bug, reported as CNN_ERR_INTERNAL. */
#define CNN_ASSERT(cond)                                                                          \
    do {                                                                                          \
        if (!(cond))                                                                              \
            return cnn_error(CNN_ERR_INTERNAL, "internal error: '%s' failed at %s:%d", #cond,     \
                             __FILE__, __LINE__);                                                 \
    } while (0)

/* ---- storage and tensors ----------------------------------------------------------------- */
typedef struct cnn_storage cnn_storage;
struct cnn_storage {
    int refcount;
    void *data;
    size_t bytes;
    /* Returns the memory to whoever allocated it (CPU free, or the CUDA caching allocator). */
    void (*release)(cnn_storage *s);
    void *allocator; /* the allocator's own state, for release */
    /* PyTorch's version counter, shared by every view of the storage: bumped by each in-place
     * write the API offers (cnn_storage_bump), compared by backward with the version a node saw
     * when it saved a tensor, so a gradient is never computed from values changed since. */
    uint64_t version;
};

struct cnn_node;
struct cnn_tape;

struct cnn_tensor {
    int refcount;
    cnn_dtype dtype;
    cnn_device device;
    cnn_shape shape;
    int64_t strides[CNN_MAX_DIMS]; /* in bytes */
    cnn_storage *storage;
    size_t offset;                 /* in bytes, into storage->data */
    bool requires_grad;            /* leaf flag, set by the user */
    cnn_tensor *grad;              /* a leaf's accumulated gradient */
    int tape_refs;                 /* how many of refcount tape nodes hold (saved tensors) */
    /* The op that produced this tensor, valid only while tape->gen == tape_gen; NULLed when
     * the node is freed, so a non-NULL node is always a live one. Written under tape.c's link
     * lock, read atomically. */
    struct cnn_node *node;
    struct cnn_tape *tape;
    uint64_t tape_gen;
};

/* Host memory for a CPU storage from the caching allocator (alloc_cpu.c): sets s->data,
 * s->release and s->allocator. */
cnn_status cnn_cpu_storage_alloc(cnn_storage *s, size_t bytes, const char *what);
/* The size of a CPU storage's block (its allocator field, less alloc_cpu.c's flag bit). */
static inline size_t cnn_cpu_block_bytes(const cnn_storage *s)
{
    return (size_t)(uintptr_t)s->allocator & ~(size_t)1;
}
/* For tests: the bytes the host cache holds, and how many blocks of 64 KiB and up were
 * allocated from the system so far. */
void cnn_cpu_cache_counts(size_t *cached, size_t *fresh);

size_t cnn_dtype_size(cnn_dtype dt);
const char *cnn_dtype_name(cnn_dtype dt);
/* The half-precision formats (dtype.c): to F32 exactly; from F32 rounded to nearest even,
 * past the range to +-infinity, NaN to a quiet NaN (F16 keeps its sign), as PyTorch. */
float cnn_f16_to_f32(uint16_t h);
uint16_t cnn_f32_to_f16(float f);
float cnn_bf16_to_f32(uint16_t b);
uint16_t cnn_f32_to_bf16(float f);
bool cnn_dtype_is_float(cnn_dtype dt);
/* Moves every entry and metadata of src into dst, replacing those of the same name, and leaves
 * src empty (dict.c). All or nothing: on failure (host memory) neither dict has changed. */
cnn_status cnn_dict_move_into(cnn_dict *dst, cnn_dict *src);
/* True for a state entry a load may find missing (dict.c): a batch norm's num_batches_tracked,
 * which files from before PyTorch 0.4.1 lack and PyTorch's load_state_dict lets them. */
bool cnn_dict_optional_name(const char *name);
int64_t cnn_shape_numel(cnn_shape s);
/* The byte strides of a contiguous (row-major) tensor of shape s, esize bytes an element. */
void cnn_contiguous_strides(cnn_shape s, size_t esize, int64_t *strides);
bool cnn_shape_equal(cnn_shape a, cnn_shape b);
/* Checks 0 <= ndim <= 4 and every size >= 0; `what` names the caller in the message. */
cnn_status cnn_shape_validate(cnn_shape s, const char *what);
/* Number of bytes of a contiguous tensor. */
size_t cnn_tensor_nbytes(const cnn_tensor *t);
/* cnn_tensor_empty for an op's output: a failure (out of GPU memory, above all) names op. */
cnn_status cnn_tensor_empty_for(const char *op, cnn_shape shape, cnn_dtype dtype,
                                cnn_device device, cnn_tensor **out);
/* First element (storage data + offset). */
static inline void *cnn_ptr(const cnn_tensor *t) { return (char *)t->storage->data + t->offset; }
/* Marks t's storage as written in place (atomic: loader threads write one batch at once). */
static inline void cnn_storage_bump(cnn_tensor *t)
{
    if (t && t->storage) __atomic_fetch_add(&t->storage->version, 1, __ATOMIC_RELAXED);
}
static inline uint64_t cnn_storage_version(const cnn_tensor *t)
{
    return t->storage ? __atomic_load_n(&t->storage->version, __ATOMIC_RELAXED) : 0;
}
static inline float *cnn_f32(const cnn_tensor *t) { return (float *)cnn_ptr(t); }
static inline bool cnn_on_cuda(const cnn_tensor *t) { return t->device.type == CNN_DEVICE_CUDA; }
/* New view of t's storage with another shape/strides (retains the storage). */
cnn_status cnn_tensor_view(const cnn_tensor *t, cnn_shape shape, const int64_t *byte_strides,
                           size_t offset, cnn_tensor **out);
/* Contiguous input for a kernel: a new reference to t, or a contiguous copy. Not recorded. */
cnn_status cnn_contig(const cnn_tensor *t, cnn_tensor **out);
/* dst += src, elementwise, same shape, both contiguous F32 on one device. Not recorded. */
cnn_status cnn_tensor_accumulate_(cnn_tensor *dst, const cnn_tensor *src);
/* The gradient through a ReLU from its output y: dx = y > 0 ? dy : 0 (layers/activation.c), for
 * ops that end in a ReLU of their own. Not recorded. */
cnn_status cnn_relu_grad(const cnn_tensor *y, const cnn_tensor *dy, cnn_tensor **dx);
/* Adds v to every element of the contiguous I64 tensor t, on its device, without waiting for
 * the device (a counter such as BN's num_batches_tracked). */
cnn_status cnn_tensor_add_i64_(cnn_tensor *t, int64_t v);
/* Fills n floats of device memory with the context RNG stream (dist 0: U[a,b), 1: N(a,b^2)),
 * advancing the context's offset (inside a graph capture: each replay does, cnn_rng_draw_take). */
cnn_status cnn_rng_fill(float *data, int64_t n, int dist, float a, float b, cnn_device device);
/* Takes `n_counters` Philox counters from the context stream; returns the first offset. */
uint64_t cnn_rng_take(int64_t n_counters);
/* The Philox counters of one random op: offset, offset + 1, ... under key seed. For a CUDA
 * kernel inside a graph capture, state points to the graph's device state {seed, base}, which
 * each replay sets from the context stream, and offset counts from base (philox.h's
 * cnn_philox_resolve); otherwise state is NULL. */
typedef struct cnn_rng_draw {
    uint64_t seed, offset;
    const uint64_t *state;
} cnn_rng_draw;
/* Takes n_counters counters for an op on `device`: from the context stream, or, for CUDA work
 * inside a graph capture, from the graph's (each replay then draws the counters the same ops
 * run one by one would have drawn, and advances the context stream as they would). *keep, if
 * keep is not NULL, is the tensor holding the state (borrowed; NULL outside a capture): an op
 * whose backward draws again saves it with cnn_node_save. */
cnn_status cnn_rng_draw_take(int64_t n_counters, cnn_device device, cnn_rng_draw *d,
                             const cnn_tensor **keep);

/* PyTorch's output size of a conv or pooling window along one axis (layers/pool.c; ceil_mode
 * for pooling only): floor((in + 2 pad - dil (k - 1) - 1) / stride) + 1, or the ceiling. */
int64_t cnn_window_out(int64_t in, int k, int stride, int pad, int dil, bool ceil_mode);

/* ---- argument checks shared by ops (each sets a message naming op and tensor) -------------- */
/* NULL and dtype (F32) check, any device: for ops that dispatch to CUDA kernels. */
cnn_status cnn_check_f32(const char *op, const char *name, const cnn_tensor *t);
cnn_status cnn_check_same_device(const char *op, const cnn_tensor *a, const char *an,
                                 const cnn_tensor *b, const char *bn);
/* "(8, 3, 32, 32)" of a tensor, in a thread-local rotating buffer (valid for a few calls). */
const char *cnn_shape_of(const cnn_tensor *t);

/* ---- context ----------------------------------------------------------------------------- */
typedef struct cnn_tape {
    struct cnn_node **nodes;
    size_t n, cap;
    uint64_t gen;       /* new at every backward or reset (unique in the process) */
    uint64_t first_gen; /* the tape's first: a tensor of an older one at this address was
                           recorded by a destroyed context, and is a constant here */
    size_t freed;       /* outputs released since the last sweep (atomic: any thread) */
    size_t n_swept;     /* nodes the last sweep kept */
} cnn_tape;
uint64_t cnn_tape_new_gen(void); /* tape.c */
void cnn_tape_destroy(cnn_tape *tape); /* tape.c, for context.c */

struct cnn_context {
    cnn_device device;
    bool grad_enabled;
    bool deterministic;
    bool tf32;
    cnn_backend backend;
    uint64_t rng_seed, rng_offset;
    cnn_tape tape;
    void *gpu; /* cuda/'s per-context state (stream, handles, caches); NULL on CPU */
};
/* The thread's current context (created on first use). Never NULL. */
cnn_context *cnn_ctx(void);
/* The context made current on this thread with cnn_context_set_current, or NULL: creates
 * nothing, so it is safe where a thread's contexts are being torn down. */
cnn_context *cnn_ctx_if_set(void);

/* ---- autograd ---------------------------------------------------------------------------- */
typedef struct cnn_node cnn_node;
/* Computes dx[i] for every input i with node->in[i].needs_grad, from dy (the gradient of the
 * node's output, contiguous). Each dx[i] is a new tensor of the input's shape. */
typedef cnn_status (*cnn_backward_fn)(cnn_node *node, const cnn_tensor *dy, cnn_tensor **dx);

typedef struct cnn_node_input {
    bool needs_grad;
    bool stale;           /* recorded on a graph a backward (or reset) has freed: no gradient
                             can reach what it came from, so a backward through it fails */
    cnn_node *producer;   /* the op that made this input, if it is on the tape */
    cnn_tensor *leaf;     /* retained leaf that requires grad, else NULL */
    cnn_shape shape;
    cnn_device device;
} cnn_node_input;

#define CNN_NODE_MAX_SAVED 6
#define CNN_NODE_PARAM_BYTES 128
struct cnn_node {
    const char *op;
    cnn_backward_fn backward;
    int n_inputs;
    cnn_node_input *in;
    cnn_tensor *out;      /* the output, not retained: NULLed when the tensor is freed */
    uint64_t out_version; /* its storage's version when recorded */
    cnn_tensor *dout;     /* accumulated gradient of the output during backward */
    int n_saved;
    cnn_tensor *saved[CNN_NODE_MAX_SAVED];
    uint64_t saved_version[CNN_NODE_MAX_SAVED]; /* each storage's version when saved */
    bool live; /* on the way back from the tensor backward started at */
    bool keep; /* reachable from a tensor someone holds (the tape's sweep) */
    union { /* the op's packed parameters, aligned for any struct an op stores */
        unsigned char params[CNN_NODE_PARAM_BYTES];
        uint64_t params_align_;
    };
};

/* True when grad mode is on and any of the n inputs (NULLs allowed) requires grad. */
bool cnn_should_record(const cnn_tensor *const *inputs, int n);
/* Appends a node for `out` = op(inputs) to the current tape and links out to it. params
 * (psize <= CNN_NODE_PARAM_BYTES) are copied. inputs may contain NULLs. */
cnn_status cnn_tape_record(const char *op, cnn_backward_fn backward, cnn_tensor *out,
                           const cnn_tensor *const *inputs, int n, const void *params,
                           size_t psize, cnn_node **node);
/* Keeps t alive for the node's backward (retained; released after backward or at reset); a
 * backward after t's storage was written in place is refused. A NULL t keeps its slot empty:
 * an input that only gradients nobody asked for would read (PyTorch saves it neither). */
void cnn_node_save(cnn_node *node, const cnn_tensor *t);
/* Clears the link between a tensor being freed and the node that recorded it (on any thread:
 * tape.c's link lock). */
void cnn_tape_unlink(cnn_tensor *t);

#endif /* CNN_INTERNAL_H */
