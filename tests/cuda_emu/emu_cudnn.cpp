/* emu_cudnn.cpp — the cuDNN calls of the emulator (include/cudnn.h) other than convolution
 * (emu_cudnn_conv.cpp) and batch norm (emu_cudnn_bn.cpp): handle, descriptors, cudnnAddTensor
 * and pooling, computed on the CPU with plain loops and cuDNN's documented semantics
 * (alpha/beta blending, the pooling output formula), so the library's glue in cuda/ (the
 * *_cudnn.c files) is tested, not trusted. Test infrastructure: it may print ("cuda-emu:"
 * lines for bad arguments), and it never touches a real GPU. */
#include "emu_cudnn_internal.h"
#include "emu_internal.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <string>
#include <vector>

namespace cnn_emu {

void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "cuda-emu: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
}

bool on_device(const char *fn, const char *what, const void *p, size_t bytes)
{
    if (p && memory_kind(p, bytes) == MEM_DEVICE)
        return replaying || !foreign_device_memory(fn, p, current_device());
    say("%s: %s %p (%zu bytes) is not (wholly) in device memory", fn, what, p, bytes);
    return false;
}

bool declines(const char *fn)
{
    const char *v = getenv("CNN_EMU_CUDNN_DECLINE");
    if (!v || !*v) return false;
    for (const char *w = v; *w;) {
        size_t n = strcspn(w, ",");
        if (n && strstr(fn, std::string(w, n).c_str())) return true;
        w += n + (w[n] == ',');
    }
    return false;
}

bool scalars(const char *fn, const void *alpha, const void *beta)
{
    if (alpha && beta) return true;
    say("%s: alpha or beta is NULL", fn);
    return false;
}

} /* namespace cnn_emu */

using namespace cnn_emu;

extern "C" {

/* ---- handle ------------------------------------------------------------------------------ */
size_t cudnnGetVersion(void) { return 91400; }

const char *cudnnGetErrorString(cudnnStatus_t s)
{
    switch (s) {
    case CUDNN_STATUS_SUCCESS: return "CUDNN_STATUS_SUCCESS";
    case CUDNN_STATUS_NOT_INITIALIZED: return "CUDNN_STATUS_NOT_INITIALIZED";
    case CUDNN_STATUS_SUBLIBRARY_VERSION_MISMATCH:
        return "CUDNN_STATUS_SUBLIBRARY_VERSION_MISMATCH";
    case CUDNN_STATUS_SUBLIBRARY_LOADING_FAILED: return "CUDNN_STATUS_SUBLIBRARY_LOADING_FAILED";
    case CUDNN_STATUS_BAD_PARAM: return "CUDNN_STATUS_BAD_PARAM";
    case CUDNN_STATUS_BAD_PARAM_NULL_POINTER: return "CUDNN_STATUS_BAD_PARAM_NULL_POINTER";
    case CUDNN_STATUS_BAD_PARAM_MISALIGNED_POINTER:
        return "CUDNN_STATUS_BAD_PARAM_MISALIGNED_POINTER";
    case CUDNN_STATUS_BAD_PARAM_SHAPE_MISMATCH: return "CUDNN_STATUS_BAD_PARAM_SHAPE_MISMATCH";
    case CUDNN_STATUS_NOT_SUPPORTED: return "CUDNN_STATUS_NOT_SUPPORTED";
    case CUDNN_STATUS_NOT_SUPPORTED_SHAPE: return "CUDNN_STATUS_NOT_SUPPORTED_SHAPE";
    case CUDNN_STATUS_NOT_SUPPORTED_DATA_TYPE: return "CUDNN_STATUS_NOT_SUPPORTED_DATA_TYPE";
    case CUDNN_STATUS_NOT_SUPPORTED_LAYOUT: return "CUDNN_STATUS_NOT_SUPPORTED_LAYOUT";
    case CUDNN_STATUS_INTERNAL_ERROR: return "CUDNN_STATUS_INTERNAL_ERROR";
    case CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED:
        return "CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED";
    case CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED:
        return "CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED";
    case CUDNN_STATUS_EXECUTION_FAILED: return "CUDNN_STATUS_EXECUTION_FAILED";
    }
    return "CUDNN_STATUS_UNKNOWN";
}

cudnnStatus_t cudnnCreate(cudnnHandle_t *handle)
{
    if (!handle) return CUDNN_STATUS_BAD_PARAM;
    *handle = nullptr;
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
        (void)cudaGetLastError();
        return CUDNN_STATUS_NOT_INITIALIZED;
    }
    if (injected_alloc_failure()) return CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED;
    *handle = new cudnnContext{nullptr};
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnDestroy(cudnnHandle_t handle)
{
    if (!handle) return CUDNN_STATUS_BAD_PARAM;
    delete handle;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetStream(cudnnHandle_t handle, cudaStream_t stream)
{
    if (!handle) return CUDNN_STATUS_BAD_PARAM;
    handle->stream = stream;
    return CUDNN_STATUS_SUCCESS;
}

/* ---- descriptors ------------------------------------------------------------------------- */
cudnnStatus_t cudnnCreateTensorDescriptor(cudnnTensorDescriptor_t *d)
{
    if (!d) return CUDNN_STATUS_BAD_PARAM;
    *d = new cudnnTensorStruct{};
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnDestroyTensorDescriptor(cudnnTensorDescriptor_t d)
{
    delete d;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetTensor4dDescriptor(cudnnTensorDescriptor_t d, cudnnTensorFormat_t format,
                                         cudnnDataType_t type, int n, int c, int h, int w)
{
    if (!d || n <= 0 || c <= 0 || h <= 0 || w <= 0) return CUDNN_STATUS_BAD_PARAM;
    if ((unsigned)format > CUDNN_TENSOR_NCHW_VECT_C) return CUDNN_STATUS_BAD_PARAM;
    /* Strides are int: the largest (n's) must fit. */
    if ((long long)c * h * w > 0x7fffffffLL) return CUDNN_STATUS_BAD_PARAM;
    /* Real cuDNN takes NHWC and other types too; the emulation computes NCHW float only. */
    if (format != CUDNN_TENSOR_NCHW) return CUDNN_STATUS_NOT_SUPPORTED_LAYOUT;
    if (type != CUDNN_DATA_FLOAT) return CUDNN_STATUS_NOT_SUPPORTED_DATA_TYPE;
    *d = cudnnTensorStruct{true, n, c, h, w};
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnCreateFilterDescriptor(cudnnFilterDescriptor_t *d)
{
    if (!d) return CUDNN_STATUS_BAD_PARAM;
    *d = new cudnnFilterStruct{};
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnDestroyFilterDescriptor(cudnnFilterDescriptor_t d)
{
    delete d;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetFilter4dDescriptor(cudnnFilterDescriptor_t d, cudnnDataType_t type,
                                         cudnnTensorFormat_t format, int k, int c, int h, int w)
{
    if (!d || k <= 0 || c <= 0 || h <= 0 || w <= 0) return CUDNN_STATUS_BAD_PARAM;
    if ((unsigned)format > CUDNN_TENSOR_NCHW_VECT_C) return CUDNN_STATUS_BAD_PARAM;
    if (format != CUDNN_TENSOR_NCHW) return CUDNN_STATUS_NOT_SUPPORTED_LAYOUT;
    if (type != CUDNN_DATA_FLOAT) return CUDNN_STATUS_NOT_SUPPORTED_DATA_TYPE;
    *d = cudnnFilterStruct{true, k, c, h, w};
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnCreateConvolutionDescriptor(cudnnConvolutionDescriptor_t *d)
{
    if (!d) return CUDNN_STATUS_BAD_PARAM;
    /* cuDNN's defaults: one group, default math. */
    *d = new cudnnConvolutionStruct{};
    (*d)->groups = 1;
    (*d)->math = CUDNN_DEFAULT_MATH;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnDestroyConvolutionDescriptor(cudnnConvolutionDescriptor_t d)
{
    delete d;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetConvolution2dDescriptor(cudnnConvolutionDescriptor_t d, int pad_h,
                                              int pad_w, int u, int v, int dilation_h,
                                              int dilation_w, cudnnConvolutionMode_t mode,
                                              cudnnDataType_t computeType)
{
    if (!d || pad_h < 0 || pad_w < 0 || u <= 0 || v <= 0 || dilation_h <= 0 || dilation_w <= 0 ||
        (mode != CUDNN_CONVOLUTION && mode != CUDNN_CROSS_CORRELATION))
        return CUDNN_STATUS_BAD_PARAM;
    if (computeType != CUDNN_DATA_FLOAT) return CUDNN_STATUS_NOT_SUPPORTED_DATA_TYPE;
    d->set = true;
    d->ph = pad_h, d->pw = pad_w, d->sh = u, d->sw = v, d->dh = dilation_h, d->dw = dilation_w;
    d->mode = mode;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetConvolutionGroupCount(cudnnConvolutionDescriptor_t d, int groupCount)
{
    if (!d || groupCount < 1) return CUDNN_STATUS_BAD_PARAM;
    d->groups = groupCount;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetConvolutionMathType(cudnnConvolutionDescriptor_t d, cudnnMathType_t m)
{
    if (!d || (unsigned)m > CUDNN_FMA_MATH) return CUDNN_STATUS_BAD_PARAM;
    d->math = m;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnCreatePoolingDescriptor(cudnnPoolingDescriptor_t *d)
{
    if (!d) return CUDNN_STATUS_BAD_PARAM;
    *d = new cudnnPoolingStruct{};
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnDestroyPoolingDescriptor(cudnnPoolingDescriptor_t d)
{
    delete d;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetPooling2dDescriptor(cudnnPoolingDescriptor_t d, cudnnPoolingMode_t mode,
                                          cudnnNanPropagation_t nan, int wh, int ww, int ph,
                                          int pw, int sh, int sw)
{
    if (!d || (unsigned)mode > CUDNN_POOLING_MAX_DETERMINISTIC ||
        (unsigned)nan > CUDNN_PROPAGATE_NAN || wh <= 0 || ww <= 0 || ph < 0 || pw < 0 ||
        sh <= 0 || sw <= 0)
        return CUDNN_STATUS_BAD_PARAM;
    *d = cudnnPoolingStruct{true, mode, nan, wh, ww, ph, pw, sh, sw};
    return CUDNN_STATUS_SUCCESS;
}

/* cuDNN's formula: outputDim = 1 + (inputDim + 2 * padding - windowDim) / poolingStride. */
cudnnStatus_t cudnnGetPooling2dForwardOutputDim(const cudnnPoolingDescriptor_t d,
                                                const cudnnTensorDescriptor_t x, int *n, int *c,
                                                int *h, int *w)
{
    if (!d || !d->set || !ready(x) || !n || !c || !h || !w) return CUDNN_STATUS_BAD_PARAM;
    if (x->h + 2 * d->ph < d->wh || x->w + 2 * d->pw < d->ww) return CUDNN_STATUS_BAD_PARAM;
    *n = x->n;
    *c = x->c;
    *h = 1 + (x->h + 2 * d->ph - d->wh) / d->sh;
    *w = 1 + (x->w + 2 * d->pw - d->ww) / d->sw;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnDeriveBNTensorDescriptor(cudnnTensorDescriptor_t bn,
                                            const cudnnTensorDescriptor_t x,
                                            cudnnBatchNormMode_t mode)
{
    if (!bn || !ready(x) || (unsigned)mode > CUDNN_BATCHNORM_SPATIAL_PERSISTENT)
        return CUDNN_STATUS_BAD_PARAM;
    if (mode == CUDNN_BATCHNORM_PER_ACTIVATION)
        *bn = cudnnTensorStruct{true, 1, x->c, x->h, x->w};
    else
        *bn = cudnnTensorStruct{true, 1, x->c, 1, 1};
    return CUDNN_STATUS_SUCCESS;
}

/* ---- tensor ops -------------------------------------------------------------------------- */
/* C = alpha * A + beta * C, each dimension of A equal to C's or 1 (broadcast). */
cudnnStatus_t cudnnAddTensor(cudnnHandle_t h, const void *alpha, const cudnnTensorDescriptor_t ad,
                             const void *A, const void *beta, const cudnnTensorDescriptor_t cd,
                             void *C)
{
    if (h && deferring(h->stream)) {
        auto al = snap_scalar(alpha), be = snap_scalar(beta);
        auto AD = snap(ad), CD = snap(cd);
        return capture_call(h->stream, [=](cudnnHandle_t now) {
            return cudnnAddTensor(now, al.get(), AD.get(), A, be.get(), CD.get(), C);
        });
    }
    const char *fn = "cudnnAddTensor";
    count_call(fn);
    if (declines(fn)) return CUDNN_STATUS_NOT_SUPPORTED_SHAPE;
    if (!h || !ready(ad) || !ready(cd) || !scalars(fn, alpha, beta)) return CUDNN_STATUS_BAD_PARAM;
    const int adims[4] = {ad->n, ad->c, ad->h, ad->w}, cdims[4] = {cd->n, cd->c, cd->h, cd->w};
    for (int i = 0; i < 4; i++)
        if (adims[i] != cdims[i] && adims[i] != 1) {
            say("%s: A (%d, %d, %d, %d) does not broadcast to C (%d, %d, %d, %d)", fn, ad->n,
                ad->c, ad->h, ad->w, cd->n, cd->c, cd->h, cd->w);
            return CUDNN_STATUS_BAD_PARAM;
        }
    if (!on_device(fn, "A", A, numel(ad) * 4) || !on_device(fn, "C", C, numel(cd) * 4))
        return CUDNN_STATUS_BAD_PARAM;
    if (no_compute()) return CUDNN_STATUS_SUCCESS;
    const float a = *(const float *)alpha, b = *(const float *)beta;
    const float *pa = (const float *)A;
    float *pc = (float *)C;
    for (int n = 0; n < cd->n; n++)
        for (int c = 0; c < cd->c; c++)
            for (int y = 0; y < cd->h; y++)
                for (int x = 0; x < cd->w; x++) {
                    const size_t ai = (((size_t)(ad->n == 1 ? 0 : n) * ad->c +
                                        (ad->c == 1 ? 0 : c)) * ad->h +
                                       (ad->h == 1 ? 0 : y)) * ad->w + (ad->w == 1 ? 0 : x);
                    blend(&pc[(((size_t)n * cd->c + c) * cd->h + y) * cd->w + x], pa[ai], a, b);
                }
    return CUDNN_STATUS_SUCCESS;
}


} /* extern "C" */

/* ---- pooling ----------------------------------------------------------------------------- */

namespace {

/* The checks both directions share; *oh, *ow: cuDNN's output size. */
cudnnStatus_t pool_check(const char *fn, cudnnHandle_t h, cudnnPoolingStruct *d,
                         cudnnTensorStruct *x, const cudnnTensorStruct *y)
{
    if (!h || !d || !d->set || !ready(x) || !ready(y)) return CUDNN_STATUS_BAD_PARAM;
    int n, c, oh, ow;
    if (cudnnStatus_t e = cudnnGetPooling2dForwardOutputDim(d, x, &n, &c, &oh, &ow)) return e;
    if (y->n != n || y->c != c || y->h != oh || y->w != ow) {
        say("%s: y (%d, %d, %d, %d), cuDNN's output is (%d, %d, %d, %d)", fn, y->n, y->c, y->h,
            y->w, n, c, oh, ow);
        return CUDNN_STATUS_BAD_PARAM;
    }
    return CUDNN_STATUS_SUCCESS;
}

bool is_max(const cudnnPoolingStruct *d)
{
    return d->mode == CUDNN_POOLING_MAX || d->mode == CUDNN_POOLING_MAX_DETERMINISTIC;
}

/* One window of one plane: the max (and where, -1 if none) or the average. Padding never wins
 * a max; AVERAGE_COUNT_INCLUDE_PADDING divides by the window size, EXCLUDE by the inputs in it. */
double pool_window(const cudnnPoolingStruct *d, const float *xp, int H, int W, int oy, int ox)
{
    const int y0 = oy * d->sh - d->ph, x0 = ox * d->sw - d->pw;
    double acc = 0, best = -INFINITY;
    long at = -1, count = 0;
    bool nan = false;
    for (int i = 0; i < d->wh; i++)
        for (int j = 0; j < d->ww; j++) {
            const int iy = y0 + i, ix = x0 + j;
            if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
            const float v = xp[(size_t)iy * W + ix];
            count++;
            acc += v;
            if (isnan(v)) {
                if (d->nan == CUDNN_PROPAGATE_NAN && !nan) {
                    nan = true;
                    at = (long)iy * W + ix;
                }
                continue;
            }
            if (!nan && (at < 0 || v > best)) {
                best = v;
                at = (long)iy * W + ix;
            }
        }
    if (is_max(d)) return nan ? NAN : best;
    if (d->mode == CUDNN_POOLING_AVERAGE_COUNT_INCLUDE_PADDING)
        return acc / ((double)d->wh * d->ww);
    return count ? acc / (double)count : 0.0;
}

} /* namespace */

extern "C" {

cudnnStatus_t cudnnPoolingForward(cudnnHandle_t h, const cudnnPoolingDescriptor_t d,
                                  const void *alpha, const cudnnTensorDescriptor_t xd,
                                  const void *x, const void *beta,
                                  const cudnnTensorDescriptor_t yd, void *y)
{
    if (h && deferring(h->stream)) {
        auto al = snap_scalar(alpha), be = snap_scalar(beta);
        auto D = snap(d);
        auto XD = snap(xd), YD = snap(yd);
        return capture_call(h->stream, [=](cudnnHandle_t now) {
            return cudnnPoolingForward(now, D.get(), al.get(), XD.get(), x, be.get(), YD.get(), y);
        });
    }
    const char *fn = "cudnnPoolingForward";
    count_call(fn);
    if (declines(fn)) return CUDNN_STATUS_NOT_SUPPORTED_SHAPE;
    if (cudnnStatus_t e = pool_check(fn, h, d, xd, yd)) return e;
    if (!scalars(fn, alpha, beta) || !on_device(fn, "x", x, numel(xd) * 4) ||
        !on_device(fn, "y", y, numel(yd) * 4))
        return CUDNN_STATUS_BAD_PARAM;
    if (no_compute()) return CUDNN_STATUS_SUCCESS;
    const float a = *(const float *)alpha, b = *(const float *)beta;
    for (size_t pl = 0; pl < (size_t)xd->n * xd->c; pl++) {
        const float *xp = (const float *)x + pl * xd->h * xd->w;
        float *yp = (float *)y + pl * yd->h * yd->w;
        for (int oy = 0; oy < yd->h; oy++)
            for (int ox = 0; ox < yd->w; ox++)
                blend(&yp[oy * yd->w + ox], pool_window(d, xp, xd->h, xd->w, oy, ox), a,
                      b);
    }
    return CUDNN_STATUS_SUCCESS;
}

/* dx = alpha * (each dy sent to its window's max, or spread evenly over the average's divisor)
 * + beta * dx. The max's place is where x equals y (the first one in the window, row by row). */
cudnnStatus_t cudnnPoolingBackward(cudnnHandle_t h, const cudnnPoolingDescriptor_t d,
                                   const void *alpha, const cudnnTensorDescriptor_t yd,
                                   const void *y, const cudnnTensorDescriptor_t dyd,
                                   const void *dy, const cudnnTensorDescriptor_t xd,
                                   const void *x, const void *beta,
                                   const cudnnTensorDescriptor_t dxd, void *dx)
{
    if (h && deferring(h->stream)) {
        auto al = snap_scalar(alpha), be = snap_scalar(beta);
        auto D = snap(d);
        auto YD = snap(yd), DYD = snap(dyd), XD = snap(xd), DXD = snap(dxd);
        return capture_call(h->stream, [=](cudnnHandle_t now) {
            return cudnnPoolingBackward(now, D.get(), al.get(), YD.get(), y, DYD.get(), dy,
                                        XD.get(), x, be.get(), DXD.get(), dx);
        });
    }
    const char *fn = "cudnnPoolingBackward";
    count_call(fn);
    if (declines(fn)) return CUDNN_STATUS_NOT_SUPPORTED_SHAPE;
    if (cudnnStatus_t e = pool_check(fn, h, d, xd, yd)) return e;
    if (!ready(dyd) || !ready(dxd) || dyd->n != yd->n || dyd->c != yd->c || dyd->h != yd->h ||
        dyd->w != yd->w || dxd->n != xd->n || dxd->c != xd->c || dxd->h != xd->h ||
        dxd->w != xd->w) {
        say("%s: dy/dx descriptors differ from y/x", fn);
        return CUDNN_STATUS_BAD_PARAM;
    }
    if (!scalars(fn, alpha, beta) || !on_device(fn, "y", y, numel(yd) * 4) ||
        !on_device(fn, "dy", dy, numel(dyd) * 4) || !on_device(fn, "x", x, numel(xd) * 4) ||
        !on_device(fn, "dx", dx, numel(dxd) * 4))
        return CUDNN_STATUS_BAD_PARAM;
    if (no_compute()) return CUDNN_STATUS_SUCCESS;
    const float a = *(const float *)alpha, b = *(const float *)beta;
    const int H = xd->h, W = xd->w, OH = yd->h, OW = yd->w;
    std::vector<double> acc((size_t)H * W);
    for (size_t pl = 0; pl < (size_t)xd->n * xd->c; pl++) {
        const float *xp = (const float *)x + pl * H * W;
        const float *dyp = (const float *)dy + pl * OH * OW;
        const float *yp = (const float *)y + pl * OH * OW;
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int oy = 0; oy < OH; oy++)
            for (int ox = 0; ox < OW; ox++) {
                const double g = dyp[oy * OW + ox];
                const int y0 = oy * d->sh - d->ph, x0 = ox * d->sw - d->pw;
                if (is_max(d)) {
                    /* The gradient goes where x equals the given y (NaN: the first NaN): a y
                     * that is not this x's forward output routes it wrongly, as on a GPU. */
                    const float m = yp[oy * OW + ox];
                    bool found = false;
                    for (int i = 0; i < d->wh && !found; i++)
                        for (int j = 0; j < d->ww && !found; j++) {
                            const int iy = y0 + i, ix = x0 + j;
                            if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                            const float v = xp[(size_t)iy * W + ix];
                            if (v == m || (isnan(v) && isnan(m))) {
                                acc[(size_t)iy * W + ix] += g;
                                found = true;
                            }
                        }
                    continue;
                }
                long count = 0;
                for (int i = 0; i < d->wh; i++)
                    for (int j = 0; j < d->ww; j++)
                        count += y0 + i >= 0 && y0 + i < H && x0 + j >= 0 && x0 + j < W;
                const double div = d->mode == CUDNN_POOLING_AVERAGE_COUNT_INCLUDE_PADDING
                                       ? (double)d->wh * d->ww
                                       : (double)count;
                if (count == 0) continue;
                for (int i = 0; i < d->wh; i++)
                    for (int j = 0; j < d->ww; j++) {
                        const int iy = y0 + i, ix = x0 + j;
                        if (iy >= 0 && iy < H && ix >= 0 && ix < W)
                            acc[(size_t)iy * W + ix] += g / div;
                    }
            }
        float *dxp = (float *)dx + pl * H * W;
        for (size_t i = 0; i < acc.size(); i++) blend(&dxp[i], acc[i], a, b);
    }
    return CUDNN_STATUS_SUCCESS;
}

} /* extern "C" */
