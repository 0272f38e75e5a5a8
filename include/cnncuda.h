/* cnncuda.h — the one public header of libcnncuda: tensors, autograd, ops, optimizers,
 * checkpoints, devices, data. It includes its parts (include/cnncuda/: runtime.h, nn.h, data.h,
 * memory.h) and no CUDA header or other library's header.
 *
 * OWNERSHIP RULE. The caller owns every object a function hands back (through an out-pointer
 * or as a return value documented "new") and releases it with the matching
 * `cnn_*_free(&p)` / `cnn_*_destroy(&p)`, which also sets p to NULL. Functions that take a
 * `const cnn_tensor *` (or a plain pointer) only borrow it. Tensors are reference counted
 * inside the library: the autograd tape keeps what it saved alive for as long as a backward
 * could need it, so freeing your handle never invalidates anybody else's. Pointers documented
 * "borrowed" (a model's parameters, a dict's entries) stay valid only as long as the object
 * they came from; cnn_tensor_retain one to keep it longer.
 *
 * ERRORS. Every fallible function returns a cnn_status (or NULL) and, on failure, leaves a
 * message naming the op and the offending shapes/values, read with cnn_last_error(). The
 * library never exits, aborts or prints because of bad input.
 *
 * THREADS. Each thread has a current context (device, stream, grad mode, RNG, tape); a thread
 * that sets none gets its own default CPU context. Two threads never share a context implicitly.
 * A tensor may be read by several threads at once, and released (cnn_tensor_free) on any
 * thread; one being written (an in-place op, an optimizer step, a load, a backward accumulating
 * into a leaf's gradient) must not be used by another thread meanwhile. So two threads whose
 * graphs share a leaf that requires grad (one model's parameters) back-propagate one after the
 * other, or each into its own copy of the leaf; PyTorch would lock the gradient instead.
 */
#ifndef CNNCUDA_H
#define CNNCUDA_H

#define CNN_VERSION "0.1.0"

#include "cnncuda/runtime.h"
#include "cnncuda/nn.h"
#include "cnncuda/data.h"
#include "cnncuda/memory.h"

#endif /* CNNCUDA_H */
