/* batchnorm_cudnn.c — spatial batch norm through cuDNN's legacy batch-norm API (deprecated but
 * present in every cuDNN 9): training forward, inference forward and backward, x seen as
 * (N, C, inner, 1). Statistics use layers/batchnorm.c's (4, C) layout so either backend's
 * backward can follow either forward. Every cuDNN call is checked. CUDNN_BATCHNORM_SPATIAL, not
 * SPATIAL_PERSISTENT: the persistent kernels may overflow on some inputs (cuDNN's own caveat).
 * cuDNN's running statistics follow PyTorch: factor = momentum, running_var unbiased. */
#include "cuda_check.h"

#include <limits.h>

enum { MEAN_HI = 0, MEAN_LO = 1, INVSTD = 2, WEIGHT = 3 };

typedef struct bn_descs {
    cudnnTensorDescriptor_t x, c; /* (N, C, inner, 1) and (1, C, 1, 1) */
} bn_descs;

static void bn_descs_free(bn_descs *d)
{
    if (d->x) (void)cudnnDestroyTensorDescriptor(d->x);
    if (d->c) (void)cudnnDestroyTensorDescriptor(d->c);
}

/* The legacy API takes int sizes and strides: x must have fewer than 2^31 elements. Larger
 * tensors take the hand-written kernels, which share the statistics layout, so the caller sees
 * no difference. */
static bool fits_cudnn(int64_t n, int64_t c, int64_t inner)
{
    return n * c * inner <= INT_MAX;
}

static cnn_status bn_descs_make(int64_t n, int64_t c, int64_t inner, bn_descs *d)
{
    CNN_ASSERT(fits_cudnn(n, c, inner));
    CNN_CUDNN_TRY(cudnnCreateTensorDescriptor(&d->x));
    CNN_CUDNN_TRY(cudnnSetTensor4dDescriptor(d->x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, (int)n,
                                             (int)c, (int)inner, 1));
    CNN_CUDNN_TRY(cudnnCreateTensorDescriptor(&d->c));
    CNN_CUDNN_TRY(cudnnDeriveBNTensorDescriptor(d->c, d->x, CUDNN_BATCHNORM_SPATIAL));
    return CNN_OK;
}

double cnn_cudnn_bn_min_epsilon(void) { return CUDNN_BN_MIN_EPSILON; }

/* cuDNN needs a bias; a zero vector stands in for none. */
static cnn_status bias_or_zeros(cnn_context *ctx, const float *bias, int64_t c, cnn_tensor **zeros,
                                const float **out)
{
    *out = bias;
    if (bias) return CNN_OK;
    CNN_TRY(cnn_tensor_zeros(CNN_SHAPE(c), ctx->device, zeros));
    *out = cnn_f32(*zeros);
    return CNN_OK;
}

// x, y: (N, C, inner); stats: (4, C); bias, rm, rv: (C)
cnn_status cnn_cudnn_batch_norm_forward_training(cnn_context *ctx, const float *x, int64_t n,
                                                 int64_t c, int64_t inner, float *stats,
                                                 const float *bias, float momentum, float eps,
                                                 float *rm, float *rv, float *y)
{
    /* cuDNN rejects empty descriptors; an empty x has nothing to normalise (training with an
     * empty batch is refused by layers/batchnorm.c). */
    if (n * c * inner == 0) return CNN_OK;
    if (!fits_cudnn(n, c, inner)) {
        CNN_TRY(cnn_cuda_batch_norm_stats(ctx, x, n, c, inner, true, momentum, eps, rm, rv, stats));
        return cnn_cuda_batch_norm_forward(ctx, x, stats, bias, n, c, inner, y);
    }
    cudaStream_t s;
    cudnnHandle_t h;
    CNN_TRY(cnn_cuda_enter(ctx, "batch_norm", &s));
    CNN_TRY(cnn_cuda_cudnn(ctx, &h));
    cnn_status st = CNN_OK;
    bn_descs d = {0};
    cnn_tensor *zeros = NULL;
    const float *b = NULL;
    CNN_TRYG(bn_descs_make(n, c, inner, &d));
    CNN_TRYG(bias_or_zeros(ctx, bias, c, &zeros, &b));
    /* cuDNN's mean is a single float: the low part of the CPU's hi + lo pair is 0. */
    CNN_CUDA_TRYG(cudaMemsetAsync(stats + MEAN_LO * c, 0, (size_t)c * sizeof(float), s));
    const float one = 1.0f, zero = 0.0f;
    cudnnStatus_t e = cudnnBatchNormalizationForwardTraining(
        h, CUDNN_BATCHNORM_SPATIAL, &one, &zero, d.x, x, d.x, y, d.c, stats + WEIGHT * c, b,
        (double)momentum, rm, rv, (double)eps, stats + MEAN_HI * c, stats + INVSTD * c);
    if (e != CUDNN_STATUS_SUCCESS)
        st = cnn_error(cnn_cudnn_run_status_of(e),
                       "batch_norm: cudnnBatchNormalizationForwardTraining failed on (%lld, %lld, "
                       "%lld): %s", (long long)n, (long long)c, (long long)inner,
                       cudnnGetErrorString(e));
done:
    cnn_tensor_free(&zeros);
    bn_descs_free(&d);
    return st;
}

// x, y: (N, C, inner); stats: (4, C); bias, rm, rv: (C)
cnn_status cnn_cudnn_batch_norm_forward_inference(cnn_context *ctx, const float *x, int64_t n,
                                                  int64_t c, int64_t inner, const float *stats,
                                                  const float *bias, const float *rm,
                                                  const float *rv, float eps, float *y)
{
    if (n * c * inner == 0) return CNN_OK;
    /* The caller computed the statistics rows from rm/rv already. */
    if (!fits_cudnn(n, c, inner))
        return cnn_cuda_batch_norm_forward(ctx, x, stats, bias, n, c, inner, y);
    cudaStream_t s;
    cudnnHandle_t h;
    CNN_TRY(cnn_cuda_enter(ctx, "batch_norm", &s));
    CNN_TRY(cnn_cuda_cudnn(ctx, &h));
    cnn_status st = CNN_OK;
    bn_descs d = {0};
    cnn_tensor *zeros = NULL;
    const float *b = NULL;
    CNN_TRYG(bn_descs_make(n, c, inner, &d));
    CNN_TRYG(bias_or_zeros(ctx, bias, c, &zeros, &b));
    const float one = 1.0f, zero = 0.0f;
    cudnnStatus_t e = cudnnBatchNormalizationForwardInference(
        h, CUDNN_BATCHNORM_SPATIAL, &one, &zero, d.x, x, d.x, y, d.c, stats + WEIGHT * c, b, rm,
        rv, (double)eps);
    if (e != CUDNN_STATUS_SUCCESS)
        st = cnn_error(cnn_cudnn_run_status_of(e),
                       "batch_norm: cudnnBatchNormalizationForwardInference failed on (%lld, "
                       "%lld, %lld): %s", (long long)n, (long long)c, (long long)inner,
                       cudnnGetErrorString(e));
done:
    cnn_tensor_free(&zeros);
    bn_descs_free(&d);
    return st;
}

// x, dy, dx: (N, C, inner); stats: (4, C); dw, db: (C) or NULL
cnn_status cnn_cudnn_batch_norm_backward(cnn_context *ctx, const float *x, const float *dy,
                                         const float *stats, int64_t n, int64_t c, int64_t inner,
                                         float eps, float *dx, float *dw, float *db)
{
    if (n * c * inner == 0 || !fits_cudnn(n, c, inner))
        return cnn_cuda_batch_norm_backward(ctx, x, dy, stats, n, c, inner, true, dx, dw, db);
    cudaStream_t s;
    cudnnHandle_t h;
    CNN_TRY(cnn_cuda_enter(ctx, "batch_norm backward", &s));
    CNN_TRY(cnn_cuda_cudnn(ctx, &h));
    cnn_status st = CNN_OK;
    bn_descs d = {0};
    cnn_tensor *scratch = NULL;
    CNN_TRYG(bn_descs_make(n, c, inner, &d));
    /* cuDNN always writes both parameter gradients: unwanted ones go to scratch. */
    if (!dw || !db) {
        CNN_TRYG(cnn_tensor_empty(CNN_SHAPE(2, c), CNN_F32, ctx->device, &scratch));
        if (!dw) dw = cnn_f32(scratch);
        if (!db) db = cnn_f32(scratch) + c;
    }
    const float one = 1.0f, zero = 0.0f;
    cudnnStatus_t e = cudnnBatchNormalizationBackward(
        h, CUDNN_BATCHNORM_SPATIAL, &one, &zero, &one, &zero, d.x, x, d.x, dy, d.x, dx, d.c,
        stats + WEIGHT * c, dw, db, (double)eps, stats + MEAN_HI * c, stats + INVSTD * c);
    if (e != CUDNN_STATUS_SUCCESS)
        st = cnn_error(cnn_cudnn_run_status_of(e),
                       "batch_norm backward: cudnnBatchNormalizationBackward failed on (%lld, "
                       "%lld, %lld): %s", (long long)n, (long long)c, (long long)inner,
                       cudnnGetErrorString(e));
done:
    cnn_tensor_free(&scratch);
    bn_descs_free(&d);
    return st;
}
