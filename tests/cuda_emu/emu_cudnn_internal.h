/* emu_cudnn_internal.h — what the parts of the emulated cuDNN share: the descriptor
 * structs behind cudnn.h's handles, and the argument checks (emu_cudnn.cpp defines them;
 * emu_cudnn_conv.cpp holds the convolutions, emu_cudnn_conv_ref.cpp their arithmetic). Not seen
 * by the library. */
#ifndef CNN_EMU_CUDNN_INTERNAL_H
#define CNN_EMU_CUDNN_INTERNAL_H

#include "emu_internal.h"

#include <cudnn.h>

#include <stddef.h>

#include <memory>

struct cudnnContext {
    cudaStream_t stream;
};
struct cudnnTensorStruct {
    bool set;
    int n, c, h, w;
};
struct cudnnFilterStruct {
    bool set;
    int k, c, h, w;
};
struct cudnnConvolutionStruct {
    bool set;
    int ph, pw, sh, sw, dh, dw;
    cudnnConvolutionMode_t mode;
    int groups;
    cudnnMathType_t math;
};
struct cudnnPoolingStruct {
    bool set;
    cudnnPoolingMode_t mode;
    cudnnNanPropagation_t nan;
    int wh, ww, ph, pw, sh, sw;
};

namespace cnn_emu {

/* One "cuda-emu: <message>" line on stderr; no CUDA error is set (cuDNN reports argument
 * errors through its own status only). */
void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* [p, p + bytes) lies wholly in one device allocation; else says so (fn, what) and is false. */
bool on_device(const char *fn, const char *what, const void *p, size_t bytes);

/* CNN_EMU_CUDNN_DECLINE=word,word,...: a compute call whose name contains one of the words
 * answers CUDNN_STATUS_NOT_SUPPORTED_SHAPE, as a real cuDNN may for a shape, layout or GPU it
 * has no engine for (read at every call, so a test can set it for a while). */
bool declines(const char *fn);

/* alpha and beta are given; else says so and is false. */
bool scalars(const char *fn, const void *alpha, const void *beta);

inline size_t numel(const cudnnTensorStruct *t)
{
    return (size_t)t->n * (size_t)t->c * (size_t)t->h * (size_t)t->w;
}
inline bool ready(const cudnnTensorStruct *t) { return t && t->set; }
inline bool ready(const cudnnFilterStruct *f) { return f && f->set; }

/* y = alpha * r + beta * y, with y left unread when beta is 0 (NaN in y must not survive). */
inline void blend(float *y, double r, float alpha, float beta)
{
    *y = beta == 0.0f ? (float)(alpha * r) : (float)(alpha * r + (double)beta * *y);
}

/* ---- convolution arithmetic (emu_cudnn_conv_ref.cpp) --------------------------------------
 * x (n, c, h, w), w (k, cg = c / groups, r, s), y (n, k, p, q); kg = k / groups. */
struct geom {
    int n, c, h, w, k, cg, kg, r, s, p, q, ph, pw, sh, sw, dh, dw, groups;
    bool flip; /* CUDNN_CONVOLUTION: the filter is applied rotated by 180 degrees */
};
/* g from the descriptors, with cuDNN's output formula
 * P = 1 + (H + 2 pad - ((R - 1) dilation + 1)) / stride; any mismatch says so: BAD_PARAM. */
cudnnStatus_t conv_geom(const char *fn, const cudnnTensorStruct *x, const cudnnFilterStruct *w,
                        const cudnnConvolutionStruct *cv, const cudnnTensorStruct *y, geom *g);
size_t x_bytes(const geom &g);
size_t w_bytes(const geom &g);
size_t y_bytes(const geom &g);
/* One image's unfolded input, as an explicit-GEMM algorithm would hold it. */
size_t col_bytes(const geom &g);
/* y = alpha conv(x, w) + beta y. */
void conv_fwd(const geom &g, const float *x, const float *w, float alpha, float beta, float *y);
/* dx = alpha conv_transpose(dy, w) + beta dx; nondet: summed in float in a changing order. */
void conv_bwd_data(const geom &g, const float *dy, const float *w, float alpha, float beta,
                   float *dx, bool nondet);
/* dw = alpha (x correlated with dy) + beta dw; nondet as above. */
void conv_bwd_filter(const geom &g, const float *x, const float *dy, float alpha, float beta,
                     float *dw, bool nondet);

/* ---- convolutions for the graph API (emu_cudnn_conv.cpp) ----------------------------------
 * x (n, c, h, w), w (k, cg, r, s) with groups c / cg, y (n, k, p, q). */
struct conv_dims {
    int64_t n, c, h, w, k, cg, r, s, p, q, ph, pw, sh, sw, dh, dw;
};
/* d checked as the legacy descriptors would be (says what is wrong). */
cudnnStatus_t conv_check(const char *fn, const conv_dims &d);
/* Whether the legacy algorithm `algo` of direction dir (0 forward, 1 backward-data, 2
 * backward-filter) serves d, with its workspace and determinism. */
bool conv_algo(int dir, const conv_dims &d, int algo, size_t *ws, bool *deterministic);
/* Runs it as the legacy compute calls do, alpha 1, beta 0 (tensor_core: the forward's TF32
 * operands): forward in0 x, in1 w -> out y; backward-data dy, w -> dx; backward-filter x, dy
 * -> dw. */
cudnnStatus_t conv_run(const char *fn, int dir, const conv_dims &d, int algo, bool tensor_core,
                       const void *in0, const void *in1, void *out, void *ws, size_t ws_bytes);

/* ---- stream capture ----------------------------------------------------------------------
 * A compute call on a handle whose stream is being captured is checked at once (computing
 * nothing) and recorded to compute at each graph launch, with copies of its descriptors and
 * host scalars as they are now: the library may destroy a descriptor before the graph runs. */

template <class T>
std::shared_ptr<T> snap(const T *p)
{
    return p ? std::make_shared<T>(*p) : nullptr;
}
inline std::shared_ptr<float> snap_scalar(const void *p) { return snap((const float *)p); }

template <class F>
cudnnStatus_t capture_call(cudaStream_t stream, F call)
{
    cudnnContext now{nullptr};
    checking_only = true;
    cudnnStatus_t st = call(&now);
    checking_only = false;
    if (st != CUDNN_STATUS_SUCCESS) return st;
    int d = defer(stream, [call] {
        cudnnContext later{nullptr};
        (void)call(&later);
    });
    return d >= 0 ? CUDNN_STATUS_SUCCESS : CUDNN_STATUS_EXECUTION_FAILED;
}

} /* namespace cnn_emu */

#endif /* CNN_EMU_CUDNN_INTERNAL_H */
