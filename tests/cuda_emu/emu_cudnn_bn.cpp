/* emu_cudnn_bn.cpp — cuDNN's batch normalization for the emulator: forward training (batch
 * statistics, saved mean and inverse std, running statistics with the unbiased variance),
 * forward inference and backward, spatial modes, computed on the CPU in double with cuDNN's
 * alpha/beta blending, and recorded instead while the stream is captured. Test infrastructure,
 * as the rest of cuda_emu. */
#include "emu_cudnn_internal.h"
#include "emu_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>


using namespace cnn_emu;

namespace {

/* Spatial modes only (PER_ACTIVATION is not emulated); x and y alike; bn is (1, C, 1, 1). */
cudnnStatus_t bn_check(const char *fn, cudnnHandle_t h, cudnnBatchNormMode_t mode,
                       const cudnnTensorStruct *x, const cudnnTensorStruct *y,
                       const cudnnTensorStruct *bn, double eps)
{
    if (!h || !ready(x) || !ready(y) || !ready(bn)) return CUDNN_STATUS_BAD_PARAM;
    if (mode == CUDNN_BATCHNORM_PER_ACTIVATION) return CUDNN_STATUS_NOT_SUPPORTED;
    if (mode != CUDNN_BATCHNORM_SPATIAL && mode != CUDNN_BATCHNORM_SPATIAL_PERSISTENT)
        return CUDNN_STATUS_BAD_PARAM;
    if (x->n != y->n || x->c != y->c || x->h != y->h || x->w != y->w || bn->n != 1 ||
        bn->c != x->c || bn->h != 1 || bn->w != 1) {
        say("%s: x (%d, %d, %d, %d), y (%d, %d, %d, %d), bn (%d, %d, %d, %d)", fn, x->n, x->c,
            x->h, x->w, y->n, y->c, y->h, y->w, bn->n, bn->c, bn->h, bn->w);
        return CUDNN_STATUS_BAD_PARAM;
    }
    if (!(eps >= CUDNN_BN_MIN_EPSILON)) {
        say("%s: epsilon %g is below CUDNN_BN_MIN_EPSILON %g", fn, eps, CUDNN_BN_MIN_EPSILON);
        return CUDNN_STATUS_BAD_PARAM;
    }
    return CUDNN_STATUS_SUCCESS;
}

/* Channel c's batch mean and biased variance over N, H, W. */
void channel_stats(const cudnnTensorStruct *x, const float *px, int c, double *mean, double *var)
{
    const size_t hw = (size_t)x->h * x->w, m = hw * x->n;
    double s = 0;
    for (int n = 0; n < x->n; n++)
        for (size_t i = 0; i < hw; i++) s += px[((size_t)n * x->c + c) * hw + i];
    const double mu = s / (double)m;
    double v = 0;
    for (int n = 0; n < x->n; n++)
        for (size_t i = 0; i < hw; i++) {
            const double d = px[((size_t)n * x->c + c) * hw + i] - mu;
            v += d * d;
        }
    *mean = mu;
    *var = v / (double)m;
}

} /* namespace */

extern "C" {

/* y = alpha * (scale (x - mean) / sqrt(var + eps) + bias) + beta * y with the batch's mean and
 * biased variance; saved: mean and 1 / sqrt(var + eps); running (factor f):
 * r = (1 - f) r + f * new, the running variance taking the unbiased variance (m / (m - 1)). */
cudnnStatus_t cudnnBatchNormalizationForwardTraining(
    cudnnHandle_t h, cudnnBatchNormMode_t mode, const void *alpha, const void *beta,
    const cudnnTensorDescriptor_t xd, const void *x, const cudnnTensorDescriptor_t yd, void *y,
    const cudnnTensorDescriptor_t bnd, const void *scale, const void *bias, double factor,
    void *run_mean, void *run_var, double eps, void *save_mean, void *save_invstd)
{
    if (h && deferring(h->stream)) {
        auto al = snap_scalar(alpha), be = snap_scalar(beta);
        auto XD = snap(xd), YD = snap(yd), BND = snap(bnd);
        return capture_call(h->stream, [=](cudnnHandle_t now) {
            return cudnnBatchNormalizationForwardTraining(
                now, mode, al.get(), be.get(), XD.get(), x, YD.get(), y, BND.get(), scale, bias,
                factor, run_mean, run_var, eps, save_mean, save_invstd);
        });
    }
    const char *fn = "cudnnBatchNormalizationForwardTraining";
    count_call(fn);
    if (declines(fn)) return CUDNN_STATUS_NOT_SUPPORTED_SHAPE;
    if (cudnnStatus_t e = bn_check(fn, h, mode, xd, yd, bnd, eps)) return e;
    if (!scalars(fn, alpha, beta)) return CUDNN_STATUS_BAD_PARAM;
    if (!run_mean != !run_var || !save_mean != !save_invstd) {
        say("%s: running mean/variance and saved mean/inverse variance go in pairs", fn);
        return CUDNN_STATUS_BAD_PARAM;
    }
    const size_t cb = (size_t)xd->c * 4;
    if (!on_device(fn, "x", x, numel(xd) * 4) || !on_device(fn, "y", y, numel(yd) * 4) ||
        !on_device(fn, "bnScale", scale, cb) || !on_device(fn, "bnBias", bias, cb) ||
        (run_mean && (!on_device(fn, "resultRunningMean", run_mean, cb) ||
                      !on_device(fn, "resultRunningVariance", run_var, cb))) ||
        (save_mean && (!on_device(fn, "resultSaveMean", save_mean, cb) ||
                       !on_device(fn, "resultSaveInvVariance", save_invstd, cb))))
        return CUDNN_STATUS_BAD_PARAM;
    if (no_compute()) return CUDNN_STATUS_SUCCESS;
    const float a = *(const float *)alpha, b = *(const float *)beta;
    const float *px = (const float *)x, *ps = (const float *)scale, *pb = (const float *)bias;
    float *py = (float *)y;
    const size_t hw = (size_t)xd->h * xd->w, m = hw * xd->n;
    for (int c = 0; c < xd->c; c++) {
        double mean, var;
        channel_stats(xd, px, c, &mean, &var);
        const double invstd = 1.0 / sqrt(var + eps);
        for (int n = 0; n < xd->n; n++)
            for (size_t i = 0; i < hw; i++) {
                const size_t at = ((size_t)n * xd->c + c) * hw + i;
                blend(&py[at], ps[c] * (px[at] - mean) * invstd + pb[c], a, b);
            }
        if (run_mean) {
            const double unbiased = m > 1 ? var * (double)m / (double)(m - 1) : var;
            float *rm = (float *)run_mean + c, *rv = (float *)run_var + c;
            *rm = (float)((1.0 - factor) * *rm + factor * mean);
            *rv = (float)((1.0 - factor) * *rv + factor * unbiased);
        }
        if (save_mean) {
            ((float *)save_mean)[c] = (float)mean;
            ((float *)save_invstd)[c] = (float)invstd;
        }
    }
    return CUDNN_STATUS_SUCCESS;
}

/* y = alpha * (scale (x - mean) / sqrt(var + eps) + bias) + beta * y from the given statistics. */
cudnnStatus_t cudnnBatchNormalizationForwardInference(
    cudnnHandle_t h, cudnnBatchNormMode_t mode, const void *alpha, const void *beta,
    const cudnnTensorDescriptor_t xd, const void *x, const cudnnTensorDescriptor_t yd, void *y,
    const cudnnTensorDescriptor_t bnd, const void *scale, const void *bias, const void *est_mean,
    const void *est_var, double eps)
{
    if (h && deferring(h->stream)) {
        auto al = snap_scalar(alpha), be = snap_scalar(beta);
        auto XD = snap(xd), YD = snap(yd), BND = snap(bnd);
        return capture_call(h->stream, [=](cudnnHandle_t now) {
            return cudnnBatchNormalizationForwardInference(now, mode, al.get(), be.get(),
                                                           XD.get(), x, YD.get(), y, BND.get(),
                                                           scale, bias, est_mean, est_var, eps);
        });
    }
    const char *fn = "cudnnBatchNormalizationForwardInference";
    count_call(fn);
    if (declines(fn)) return CUDNN_STATUS_NOT_SUPPORTED_SHAPE;
    if (cudnnStatus_t e = bn_check(fn, h, mode, xd, yd, bnd, eps)) return e;
    if (!scalars(fn, alpha, beta)) return CUDNN_STATUS_BAD_PARAM;
    const size_t cb = (size_t)xd->c * 4;
    if (!on_device(fn, "x", x, numel(xd) * 4) || !on_device(fn, "y", y, numel(yd) * 4) ||
        !on_device(fn, "bnScale", scale, cb) || !on_device(fn, "bnBias", bias, cb) ||
        !on_device(fn, "estimatedMean", est_mean, cb) ||
        !on_device(fn, "estimatedVariance", est_var, cb))
        return CUDNN_STATUS_BAD_PARAM;
    if (no_compute()) return CUDNN_STATUS_SUCCESS;
    const float a = *(const float *)alpha, b = *(const float *)beta;
    const float *px = (const float *)x, *ps = (const float *)scale, *pb = (const float *)bias;
    const float *pm = (const float *)est_mean, *pv = (const float *)est_var;
    float *py = (float *)y;
    const size_t hw = (size_t)xd->h * xd->w;
    for (int c = 0; c < xd->c; c++) {
        const double invstd = 1.0 / sqrt((double)pv[c] + eps);
        for (int n = 0; n < xd->n; n++)
            for (size_t i = 0; i < hw; i++) {
                const size_t at = ((size_t)n * xd->c + c) * hw + i;
                blend(&py[at], ps[c] * (px[at] - (double)pm[c]) * invstd + pb[c], a, b);
            }
    }
    return CUDNN_STATUS_SUCCESS;
}

/* Training backward through the batch statistics: the saved mean and inverse std when given
 * (both or neither), else recomputed from x with eps. dx blends with alphaDataDiff/betaDataDiff,
 * dScale and dBias with alphaParamDiff/betaParamDiff. */
cudnnStatus_t cudnnBatchNormalizationBackward(
    cudnnHandle_t h, cudnnBatchNormMode_t mode, const void *alpha_d, const void *beta_d,
    const void *alpha_p, const void *beta_p, const cudnnTensorDescriptor_t xd, const void *x,
    const cudnnTensorDescriptor_t dyd, const void *dy, const cudnnTensorDescriptor_t dxd,
    void *dx, const cudnnTensorDescriptor_t bnd, const void *scale, void *dscale, void *dbias,
    double eps, const void *saved_mean, const void *saved_invstd)
{
    if (h && deferring(h->stream)) {
        auto ad = snap_scalar(alpha_d), bd = snap_scalar(beta_d);
        auto ap = snap_scalar(alpha_p), bp = snap_scalar(beta_p);
        auto XD = snap(xd), DYD = snap(dyd), DXD = snap(dxd), BND = snap(bnd);
        return capture_call(h->stream, [=](cudnnHandle_t now) {
            return cudnnBatchNormalizationBackward(now, mode, ad.get(), bd.get(), ap.get(),
                                                   bp.get(), XD.get(), x, DYD.get(), dy,
                                                   DXD.get(), dx, BND.get(), scale, dscale,
                                                   dbias, eps, saved_mean, saved_invstd);
        });
    }
    const char *fn = "cudnnBatchNormalizationBackward";
    count_call(fn);
    if (declines(fn)) return CUDNN_STATUS_NOT_SUPPORTED_SHAPE;
    if (cudnnStatus_t e = bn_check(fn, h, mode, xd, dxd, bnd, eps)) return e;
    if (!ready(dyd) || dyd->n != xd->n || dyd->c != xd->c || dyd->h != xd->h || dyd->w != xd->w)
        return CUDNN_STATUS_BAD_PARAM;
    if (!scalars(fn, alpha_d, beta_d) || !scalars(fn, alpha_p, beta_p))
        return CUDNN_STATUS_BAD_PARAM;
    if (!saved_mean != !saved_invstd) {
        say("%s: savedMean and savedInvVariance go in pairs", fn);
        return CUDNN_STATUS_BAD_PARAM;
    }
    const size_t cb = (size_t)xd->c * 4;
    if (!on_device(fn, "x", x, numel(xd) * 4) || !on_device(fn, "dy", dy, numel(dyd) * 4) ||
        !on_device(fn, "dx", dx, numel(dxd) * 4) || !on_device(fn, "bnScale", scale, cb) ||
        !on_device(fn, "dBnScaleResult", dscale, cb) ||
        !on_device(fn, "dBnBiasResult", dbias, cb) ||
        (saved_mean && (!on_device(fn, "savedMean", saved_mean, cb) ||
                        !on_device(fn, "savedInvVariance", saved_invstd, cb))))
        return CUDNN_STATUS_BAD_PARAM;
    if (no_compute()) return CUDNN_STATUS_SUCCESS;
    const float ad = *(const float *)alpha_d, bd = *(const float *)beta_d;
    const float ap = *(const float *)alpha_p, bp = *(const float *)beta_p;
    const float *px = (const float *)x, *pg = (const float *)dy, *ps = (const float *)scale;
    float *pdx = (float *)dx;
    const size_t hw = (size_t)xd->h * xd->w, m = hw * xd->n;
    for (int c = 0; c < xd->c; c++) {
        double mean, invstd;
        if (saved_mean) {
            mean = ((const float *)saved_mean)[c];
            invstd = ((const float *)saved_invstd)[c];
        } else {
            double var;
            channel_stats(xd, px, c, &mean, &var);
            invstd = 1.0 / sqrt(var + eps);
        }
        double sdy = 0, sdyx = 0;
        for (int n = 0; n < xd->n; n++)
            for (size_t i = 0; i < hw; i++) {
                const size_t at = ((size_t)n * xd->c + c) * hw + i;
                sdy += pg[at];
                sdyx += pg[at] * (px[at] - mean) * invstd;
            }
        const double k = ps[c] * invstd / (double)m;
        for (int n = 0; n < xd->n; n++)
            for (size_t i = 0; i < hw; i++) {
                const size_t at = ((size_t)n * xd->c + c) * hw + i;
                const double xhat = (px[at] - mean) * invstd;
                blend(&pdx[at], k * ((double)m * pg[at] - sdy - xhat * sdyx), ad, bd);
            }
        blend((float *)dscale + c, sdyx, ap, bp);
        blend((float *)dbias + c, sdy, ap, bp);
    }
    return CUDNN_STATUS_SUCCESS;
}

} /* extern "C" */
