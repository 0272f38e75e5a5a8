/* gpu_parity.h — one op on the CPU reference and on the GPU, compared: forward and every input
 * gradient, on fresh random inputs, with the GPU's outputs poisoned (see poison_cache). */
#ifndef CNN_TEST_GPU_PARITY_H
#define CNN_TEST_GPU_PARITY_H

#include "gradcheck.h"

#define GP_MAX_IN 4

/* y = f(inputs[0..n), ud); an absent input is passed as NULL (an op's optional bias). Inputs are
 * uniform in [lo, hi) and all require grad. Agreement: |gpu - cpu| <= atol + rtol * |cpu|. */
typedef struct gp_case {
    const char *name;
    gc_fn f;
    void *ud;
    int n;
    cnn_shape in[GP_MAX_IN];
    bool absent[GP_MAX_IN];
    float lo, hi, atol, rtol;
} gp_case;

/* Runs f and its backward (with a random dy) on the CPU, then on cuda:0 copies of the inputs
 * with `backend` preferred (CNN_BACKEND_AUTO: the default dispatch), and checks that y and
 * every input gradient are on the GPU and agree with the CPU's. Failures are reported under
 * the case's name (and the backend's, unless AUTO). */
void gpu_parity(const gp_case *c, cnn_backend backend);

/* The same case with the hand-written kernels, then with cuDNN. */
void gpu_parity_both(const gp_case *c);

/* "hand-written", "cudnn" or "auto": the backend a failure message names. */
const char *gpu_backend_name(cnn_backend b);

/* Reports a failure "what: part" unless got (any device) is within atol + rtol * |ref| of ref;
 * a NULL got is a failure. */
void gpu_check_close(const char *what, const char *part, const cnn_tensor *got,
                     const cnn_tensor *ref, float atol, float rtol);

#endif /* CNN_TEST_GPU_PARITY_H */
