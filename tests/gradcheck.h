/* gradcheck.h — what the tests share: finite-difference gradient checks, tensor comparisons,
 * random tensors, GPU copies and NaN poison for outputs. */
#ifndef CNN_GRADCHECK_H
#define CNN_GRADCHECK_H

#include "test.h"

/* Releases every tensor handle given (each a cnn_tensor **). */
#define free_tensors(...)                                                                         \
    do {                                                                                          \
        cnn_tensor **l_[] = {__VA_ARGS__};                                                        \
        for (size_t i_ = 0; i_ < sizeof l_ / sizeof l_[0]; i_++) cnn_tensor_free(l_[i_]);         \
    } while (0)

/* The function under test: y = f(inputs). ud is the caller's parameters. */
typedef cnn_status (*gc_fn)(cnn_tensor *const *inputs, void *ud, cnn_tensor **y);

typedef struct gc_opts {
    float eps;  /* finite-difference step (default 1e-2) */
    float atol; /* |analytic - numeric| <= atol + rtol * |numeric| (defaults 1e-3, 1e-2) */
    float rtol;
    int max_checks; /* per input, elements checked (spread over the tensor); 0 = all */
} gc_opts;

/* Checks d<y, r>/d(input) for every input that requires grad, with r a fixed random tensor:
 * the analytic gradient from cnn_backward_with_grad against central differences of <y, r>
 * (accumulated in double). CPU tensors only. Prints the first mismatches and the max error;
 * returns 1 when all agree. */
int gradcheck(const char *what, gc_fn f, cnn_tensor *const *inputs, int n, void *ud,
              const gc_opts *opts);

/* Compares two tensors of one shape (any devices) with |a - b| <= atol + rtol * |b|, b the
 * reference. Prints the first mismatches and the max error; returns 1 when all agree. */
int tensors_close(const char *what, const cnn_tensor *a, const cnn_tensor *ref, float atol,
                  float rtol);

/* A new CPU tensor with values uniform in [lo, hi), requiring grad if asked. */
cnn_tensor *rand_tensor(cnn_shape s, float lo, float hi, int requires_grad);

/* A new CPU leaf of shape s holding v (row-major), requiring grad; NULL on failure. */
cnn_tensor *leaf_of_values(cnn_shape s, const float *v);

/* Replaces leaf p's gradient with the values v (as many as p holds, row-major): a leaf's
 * backward seeds its gradient directly. */
cnn_status set_grad_values(cnn_tensor *p, const float *v);

/* Whether two shapes have the same rank and sizes; whether t (non-NULL) has shape s. */
bool shape_eq(cnn_shape a, cnn_shape b);
bool has_shape(const cnn_tensor *t, cnn_shape s);

/* Whether the string s ends with tail. */
bool ends_with(const char *s, const char *tail);

/* A copy on cuda:0 of a CPU tensor, requiring grad as the source does; NULL on failure or for
 * a NULL source. */
cnn_tensor *to_gpu(const cnn_tensor *t);

/* Whether t is a tensor on a CUDA device. */
bool on_gpu(const cnn_tensor *t);

/* A tensor on cuda:0 full of NaN: an element a kernel never writes stays NaN and fails the
 * comparison. NULL on failure. */
cnn_tensor *nan_gpu(cnn_shape s);

/* Makes the outputs an op allocates itself start as NaN. The caching allocator hands a released
 * block back, best fit, to a later request of its size, so NaN-filled tensors of the shapes[0..n)
 * the op is about to ask for (four of each, up to 8 shapes) are made and released just before
 * it runs: an unwritten element then fails instead of passing as a stale zero or an old correct
 * value. */
void poison_cache(const cnn_shape *shapes, int n);

/* The caching allocator's statistics for cuda:0 (all zero where they cannot be read). */
cnn_cuda_memory_stats gpu_memory_stats(void);

/* An uninitialised F32 tensor of `bytes` bytes (a multiple of 4) on cuda:0; NULL on failure. */
cnn_tensor *gpu_bytes(size_t bytes);

#define MIB ((size_t)1 << 20)

/* Empties cuda:0's cache and returns the size of a segment larger than every free block it still
 * keeps (the free parts of segments live tensors use): at least `at_least` bytes, rounded up to
 * the allocator's 2 MiB step. A request of that size is a fresh cudaMalloc. */
size_t gpu_fresh_segment(size_t at_least);

/* A cnn_graph_capture body that releases the tensor *(cnn_tensor **)ud (held for the graph). */
cnn_status gpu_release_in_capture(void *ud);

/* Whether cuda:0 is the CPU emulator's (tests/cuda_emu: a GPU named "Emulated ..."). */
bool emulated_gpu(void);

#endif /* CNN_GRADCHECK_H */
