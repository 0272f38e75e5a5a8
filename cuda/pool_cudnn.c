/* pool_cudnn.c — max and average pooling through cuDNN's legacy pooling API (present in every
 * cuDNN 9). Only the cases cuDNN computes exactly as PyTorch are sent here (layers/pool.c
 * decides: no dilation, output size as floor mode); every cuDNN call is checked. */
#include "cuda_check.h"

#include <limits.h>

typedef struct pool_descs {
    cudnnPoolingDescriptor_t pool;
    cudnnTensorDescriptor_t x, y;
} pool_descs;

static void pool_descs_free(pool_descs *d)
{
    if (d->pool) (void)cudnnDestroyPoolingDescriptor(d->pool);
    if (d->x) (void)cudnnDestroyTensorDescriptor(d->x);
    if (d->y) (void)cudnnDestroyTensorDescriptor(d->y);
}

/* cuDNN's int sizes and strides: x and y each under 2^31 elements, windows far inside int. */
static bool fits_cudnn(const cnn_cuda_pool_geom *g)
{
    return g->planes * g->h * g->w <= INT_MAX && g->planes * g->oh * g->ow <= INT_MAX &&
           cnn_cuda_window_fits_int(g->h, g->w, g->kh, g->kw, g->sh, g->sw, g->ph, g->pw, g->dh,
                                    g->dw);
}

/* The N * C planes go in cuDNN's N, with C = 1, so (C, H, W) inputs need no special case.
 * Max pooling propagates NaN as PyTorch does; the deterministic max mode makes the backward
 * independent of scheduling. */
static cnn_status pool_descs_make(const cnn_cuda_pool_geom *g, bool max_pool, pool_descs *d)
{
    CNN_CHECK(fits_cudnn(g) && g->dh == 1 && g->dw == 1,
              CNN_ERR_UNSUPPORTED, "pool2d (cuDNN): %lld planes of (%lld, %lld) with dilation "
              "(%d, %d) is not a cuDNN case", (long long)g->planes, (long long)g->h,
              (long long)g->w, g->dh, g->dw);
    cudnnPoolingMode_t mode = max_pool ? CUDNN_POOLING_MAX_DETERMINISTIC
                              : g->exclude_pad ? CUDNN_POOLING_AVERAGE_COUNT_EXCLUDE_PADDING
                                               : CUDNN_POOLING_AVERAGE_COUNT_INCLUDE_PADDING;
    CNN_CUDNN_TRY(cudnnCreatePoolingDescriptor(&d->pool));
    CNN_CUDNN_TRY(cudnnSetPooling2dDescriptor(d->pool, mode, CUDNN_PROPAGATE_NAN, g->kh, g->kw,
                                              g->ph, g->pw, g->sh, g->sw));
    CNN_CUDNN_TRY(cudnnCreateTensorDescriptor(&d->x));
    CNN_CUDNN_TRY(cudnnSetTensor4dDescriptor(d->x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT,
                                             (int)g->planes, 1, (int)g->h, (int)g->w));
    int n, c, oh, ow;
    CNN_CUDNN_TRY(cudnnGetPooling2dForwardOutputDim(d->pool, d->x, &n, &c, &oh, &ow));
    CNN_CHECK(oh == g->oh && ow == g->ow, CNN_ERR_INTERNAL,
              "pool2d (cuDNN): cuDNN's output (%d, %d) differs from PyTorch's (%lld, %lld)", oh, ow,
              (long long)g->oh, (long long)g->ow);
    CNN_CUDNN_TRY(cudnnCreateTensorDescriptor(&d->y));
    CNN_CUDNN_TRY(cudnnSetTensor4dDescriptor(d->y, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT,
                                             (int)g->planes, 1, oh, ow));
    return CNN_OK;
}

// x: (planes, H, W) -> y: (planes, OH, OW)
cnn_status cnn_cudnn_pool2d_forward(cnn_context *ctx, const cnn_cuda_pool_geom *g, bool max_pool,
                                    const float *x, float *y)
{
    if (g->planes * g->oh * g->ow == 0) return CNN_OK;
    /* Average pooling's backward is the hand-written kernel's whatever the forward was, so a
     * forward cuDNN cannot size goes there too. Max pooling saved no argmax for it: layers/pool.c
     * must not send such a case here. */
    if (!max_pool && !fits_cudnn(g))
        return cnn_cuda_avg_pool2d_forward(ctx, g, x, y);
    cudaStream_t s;
    cudnnHandle_t h;
    CNN_TRY(cnn_cuda_enter(ctx, max_pool ? "max_pool2d" : "avg_pool2d", &s));
    CNN_TRY(cnn_cuda_cudnn(ctx, &h));
    pool_descs d = {0};
    cnn_status st = pool_descs_make(g, max_pool, &d);
    if (st == CNN_OK) {
        const float one = 1.0f, zero = 0.0f;
        cudnnStatus_t e = cudnnPoolingForward(h, d.pool, &one, d.x, x, &zero, d.y, y);
        if (e != CUDNN_STATUS_SUCCESS)
            st = cnn_error(cnn_cudnn_run_status_of(e), "%s: cudnnPoolingForward failed: %s",
                           max_pool ? "max_pool2d" : "avg_pool2d", cudnnGetErrorString(e));
    }
    pool_descs_free(&d);
    return st;
}

// x: (planes, H, W), y, dy: (planes, OH, OW) -> dx: (planes, H, W)
cnn_status cnn_cudnn_pool2d_backward(cnn_context *ctx, const cnn_cuda_pool_geom *g, bool max_pool,
                                     const float *x, const float *y, const float *dy, float *dx)
{
    if (g->planes * g->h * g->w == 0) return CNN_OK;
    cudaStream_t s;
    cudnnHandle_t h;
    CNN_TRY(cnn_cuda_enter(ctx, max_pool ? "max_pool2d backward" : "avg_pool2d backward", &s));
    CNN_TRY(cnn_cuda_cudnn(ctx, &h));
    pool_descs d = {0};
    cnn_status st = pool_descs_make(g, max_pool, &d);
    if (st == CNN_OK) {
        const float one = 1.0f, zero = 0.0f;
        cudnnStatus_t e = cudnnPoolingBackward(h, d.pool, &one, d.y, y, d.y, dy, d.x, x, &zero,
                                               d.x, dx);
        if (e != CUDNN_STATUS_SUCCESS)
            st = cnn_error(cnn_cudnn_status_of(e), "%s: cudnnPoolingBackward failed: %s",
                           max_pool ? "max_pool2d backward" : "avg_pool2d backward",
                           cudnnGetErrorString(e));
    }
    pool_descs_free(&d);
    return st;
}
