/* conv_cases.h — the conv2d cases of the GPU conv tests, their CPU oracle and a runner of the
 * launchers against it, shared by test_cuda_conv.c (the launchers, hand-written and cuDNN),
 * test_cuda_conv_search.c (cuDNN's algorithm search) and test_cuda_conv_ops.c (the public ops on
 * device tensors). CUDA builds only; no test lives here. */
#ifndef CNN_CONV_CASES_H
#define CNN_CONV_CASES_H

#include "gradcheck.h"

#if CNN_WITH_CUDA
#include "../cuda/cuda_api.h"

typedef struct conv_case {
    const char *name;
    int n, c, h, w, k, r, s, sh, sw, ph, pw, dh, dw, groups, bias;
} conv_case;

/* Awkward shapes: odd sizes, strides, padding, dilation, groups, depthwise, 512+ channels. */
extern const conv_case conv_cases[];
extern const int n_conv_cases;

cnn_conv2d_params params_of(const conv_case *cc);

/* Inputs on the CPU, and the CPU op's outputs and gradients: the oracle. */
typedef struct conv_ref {
    cnn_tensor *x, *w, *b, *dy;  /* CPU inputs */
    cnn_tensor *y, *dx, *dw, *db; /* CPU results (dx, dw, db borrowed from the leaves) */
    cnn_cuda_conv g;
} conv_ref;

void ref_free(conv_ref *r);

/* The CPU op's output and gradients for r's inputs (x, w, b, and dy when set; else a random dy
 * of the output's shape); 0 on failure. */
int ref_compute(const conv_case *cc, conv_ref *r);

/* Fresh random inputs for cc and their reference results; 0 on failure. Weights scaled by
 * 1/sqrt(fan-in) keep every output O(1), so one tolerance fits all cases. */
int make_ref(const conv_case *cc, conv_ref *r);

/* |got - ref| <= atol * max(1, max|ref|) + rtol * |ref|: the absolute part grows with the
 * tensor's largest value, as the rounding of a long sum grows with the magnitudes summed (dw
 * and db sum N*P*Q terms and reach ~100 here; y and dx stay O(1)). */
int close_scaled(const char *what, const cnn_tensor *got, const cnn_tensor *ref, float atol,
                 float rtol);

/* FP32 tolerance (see close_scaled): the longest sums have ~5000 terms; their rounding in any
 * order stays near 1e-6 of the largest value, 20x below 2e-5 * max|ref| + 1e-3 * |ref|, while
 * a wrong index or an unwritten element is off by O(max|ref|). */
#define CONV_ATOL 2e-5f
#define CONV_RTOL 1e-3f

/* The three launchers of one implementation: hand-written (conv_hand) or cuDNN (conv_dnn). */
typedef struct conv_impl {
    const char *name;
    cnn_status (*fwd)(cnn_context *, const cnn_cuda_conv *, const float *x, const float *w,
                      const float *b, float *y);
    cnn_status (*data)(cnn_context *, const cnn_cuda_conv *, const float *dy, const float *w,
                       float *dx);
    cnn_status (*filter)(cnn_context *, const cnn_cuda_conv *, const float *dy, const float *x,
                         float *dw, float *db);
} conv_impl;

extern const conv_impl conv_hand;
#if CNN_WITH_CUDNN
extern const conv_impl conv_dnn;
#endif

/* A device tensor's floats, or NULL for no tensor. */
static inline const float *dev_f32(const cnn_tensor *t) { return t ? cnn_f32(t) : NULL; }

/* The four results of one implementation on the GPU. */
typedef struct conv_out {
    cnn_tensor *y, *dx, *dw, *db;
} conv_out;

void conv_out_free(conv_out *o);

/* Runs one implementation's three launchers on device copies of r's inputs, into NaN-poisoned
 * outputs; a failure is reported and returns 0. */
int conv_run(const conv_case *cc, const conv_impl *im, const conv_ref *r, conv_out *o);

/* One result against its reference (close_scaled), a failure naming the implementation (tag),
 * case and tensor. */
void conv_compare(const char *tag, const conv_case *cc, const char *name, const cnn_tensor *got,
                  const cnn_tensor *ref, float atol, float rtol);

/* Runs one implementation's three launchers on case cc, on fresh inputs, and compares all four
 * results with the CPU's: |gpu - cpu| <= atol * max(1, max|cpu|) + rtol * |cpu|. */
void check_impl(const conv_case *cc, const conv_impl *im, float atol, float rtol);

/* Deterministic mode: two runs of case cc give the same bits. */
void check_bitwise_repeat(const conv_impl *im, const conv_case *cc);

#endif /* CNN_WITH_CUDA */
#endif /* CNN_CONV_CASES_H */
