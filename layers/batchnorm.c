/* batchnorm.c — batch normalisation per channel C of (N, C), (N, C, L) or (N, C, H, W): argument
 * checks, forward (batch or running statistics), the in-place running-stat update, backward and
 * the CPU kernels. The running-stat update is a buffer write, never recorded on the tape. */
#include "internal.h"

#include <math.h>

typedef struct {
    int64_t n, c, inner; /* x seen as (N, C, inner) */
    bool training;
} bn_params;

/* Per-channel statistics the kernels share, rows of one (4, C) tensor saved for backward: the
 * mean used as a float pair hi + lo (x - hi is exact for x near the mean, so a large mean with a
 * small spread keeps its precision), the inverse standard deviation used, and the weight (1
 * when there is none; a copy keeps backward right if the caller updates it in place). */
enum { BN_MEAN_HI = 0, BN_MEAN_LO = 1, BN_INVSTD = 2, BN_WEIGHT = 3, BN_ROWS = 4 };

/* Batch mean and biased variance per channel, two passes in double for stability.
 * x: (N, C, inner) */
static void bn_batch_stats(const float *x, int64_t n, int64_t c, int64_t inner, double *mean,
                           double *var)
{
    int64_t m = n * inner;
    #pragma omp parallel for if (n * c * inner > 32768)
    for (int64_t ch = 0; ch < c; ch++) {
        double s = 0;
        for (int64_t i = 0; i < n; i++) {
            const float *p = x + (i * c + ch) * inner;
            for (int64_t j = 0; j < inner; j++) s += p[j];
        }
        double mu = s / (double)m, q = 0;
        for (int64_t i = 0; i < n; i++) {
            const float *p = x + (i * c + ch) * inner;
            for (int64_t j = 0; j < inner; j++) {
                double d = p[j] - mu;
                q += d * d;
            }
        }
        mean[ch] = mu;
        var[ch] = q / (double)m;
    }
}

/* y = (x - mean) * invstd * weight + bias per channel.
 * x, y: (N, C, inner); stats: (4, C); bias: (C) or NULL */
static void bn_forward_kernel(const float *x, const float *stats, const float *bias, int64_t n,
                              int64_t c, int64_t inner, float *y)
{
    #pragma omp parallel for if (n * c * inner > 32768)
    for (int64_t ch = 0; ch < c; ch++) {
        float hi = stats[BN_MEAN_HI * c + ch], lo = stats[BN_MEAN_LO * c + ch];
        float a = stats[BN_INVSTD * c + ch] * stats[BN_WEIGHT * c + ch];
        float b = bias ? bias[ch] : 0.0f;
        for (int64_t i = 0; i < n; i++) {
            const float *px = x + (i * c + ch) * inner;
            float *py = y + (i * c + ch) * inner;
            for (int64_t j = 0; j < inner; j++) py[j] = ((px[j] - hi) - lo) * a + b;
        }
    }
}

/* With xhat = (x - mean) * invstd: dbias = sum dy, dweight = sum dy * xhat. In training the
 * mean and invstd depend on x, so dx = w * invstd * (dy - mean(dy) - xhat * mean(dy * xhat));
 * in eval they are constants and dx = w * invstd * dy.
 * x, dy, dx: (N, C, inner); stats: (4, C); dw, db: (C) or NULL */
static void bn_backward_kernel(const float *x, const float *dy, const float *stats, int64_t n,
                               int64_t c, int64_t inner, bool training, float *dx, float *dw,
                               float *db)
{
    double m = (double)(n * inner);
    #pragma omp parallel for if (n * c * inner > 32768)
    for (int64_t ch = 0; ch < c; ch++) {
        float hi = stats[BN_MEAN_HI * c + ch], lo = stats[BN_MEAN_LO * c + ch];
        float is = stats[BN_INVSTD * c + ch];
        float w = stats[BN_WEIGHT * c + ch];
        double sdy = 0, sdyx = 0;
        for (int64_t i = 0; i < n; i++) {
            const float *px = x + (i * c + ch) * inner, *pg = dy + (i * c + ch) * inner;
            for (int64_t j = 0; j < inner; j++) {
                sdy += pg[j];
                sdyx += (double)pg[j] * (((px[j] - hi) - lo) * is);
            }
        }
        if (db) db[ch] = (float)sdy;
        if (dw) dw[ch] = (float)sdyx;
        if (!dx) continue;
        float k = w * is;
        float mdy = training ? (float)(sdy / m) : 0.0f;
        float mdyx = training ? (float)(sdyx / m) : 0.0f;
        for (int64_t i = 0; i < n; i++) {
            const float *px = x + (i * c + ch) * inner, *pg = dy + (i * c + ch) * inner;
            float *pd = dx + (i * c + ch) * inner;
            for (int64_t j = 0; j < inner; j++)
                pd[j] = k * (pg[j] - mdy - ((px[j] - hi) - lo) * is * mdyx);
        }
    }
}

static cnn_status bn_backward(cnn_node *nd, const cnn_tensor *dy, cnn_tensor **dx)
{
    const bn_params *p = (const bn_params *)nd->params;
    const cnn_tensor *x = nd->saved[0], *stats = nd->saved[1];
    CNN_ASSERT(nd->n_saved == 2 && cnn_tensor_is_contiguous(dy));
    float *pdx = NULL, *pdw = NULL, *pdb = NULL;
    if (nd->in[0].needs_grad) {
        CNN_TRY(cnn_tensor_empty(nd->in[0].shape, CNN_F32, nd->in[0].device, &dx[0]));
        pdx = cnn_f32(dx[0]);
    }
    if (nd->in[1].needs_grad) {
        CNN_TRY(cnn_tensor_empty(nd->in[1].shape, CNN_F32, nd->in[1].device, &dx[1]));
        pdw = cnn_f32(dx[1]);
    }
    if (nd->in[2].needs_grad) {
        CNN_TRY(cnn_tensor_empty(nd->in[2].shape, CNN_F32, nd->in[2].device, &dx[2]));
        pdb = cnn_f32(dx[2]);
    }
    bn_backward_kernel(cnn_f32(x), cnn_f32(dy), cnn_f32(stats), p->n, p->c, p->inner, p->training,
                       pdx, pdw, pdb);
    return CNN_OK;
}

/* Checks an optional per-channel tensor: F32 on x's device, shape (C). */
static cnn_status bn_check_channel(const char *name, const cnn_tensor *t, const cnn_tensor *x,
                                   int64_t c)
{
    if (!t) return CNN_OK;
    CNN_TRY(cnn_check_tensor("batch_norm", name, t));
    CNN_TRY(cnn_check_same_device("batch_norm", x, "x", t, name));
    CNN_CHECK(t->shape.ndim == 1 && t->shape.d[0] == c, CNN_ERR_SHAPE,
              "batch_norm: %s has shape %s, expected (%lld) for x %s with %lld channels", name,
              cnn_shape_of(t), (long long)c, cnn_shape_of(x), (long long)c);
    return CNN_OK;
}

static cnn_status bn_check_args(const cnn_tensor *x, const cnn_tensor *rm, const cnn_tensor *rv,
                                const cnn_tensor *w, const cnn_tensor *b, bool training, float eps)
{
    CNN_TRY(cnn_check_tensor("batch_norm", "x", x));
    CNN_CHECK(x->shape.ndim >= 2 && x->shape.ndim <= 4, CNN_ERR_SHAPE,
              "batch_norm: x must be (N, C), (N, C, L) or (N, C, H, W), got %s", cnn_shape_of(x));
    int64_t c = x->shape.d[1];
    CNN_TRY(bn_check_channel("weight", w, x, c));
    CNN_TRY(bn_check_channel("bias", b, x, c));
    CNN_TRY(bn_check_channel("running_mean", rm, x, c));
    CNN_TRY(bn_check_channel("running_var", rv, x, c));
    CNN_CHECK(!rm == !rv, CNN_ERR_INVALID_ARG,
              "batch_norm: running_mean and running_var must both be given or both be NULL");
    CNN_CHECK(training || rm, CNN_ERR_INVALID_ARG,
              "batch_norm: eval mode (training=false) needs running_mean and running_var");
    CNN_CHECK(eps >= 0, CNN_ERR_INVALID_ARG, "batch_norm: eps %g must be >= 0", (double)eps);
    int64_t per_channel = cnn_shape_numel(x->shape) / (c ? c : 1);
    CNN_CHECK(!training || c == 0 || per_channel > 1, CNN_ERR_SHAPE,
              "batch_norm: expected more than 1 value per channel when training, got input of "
              "shape %s", cnn_shape_of(x));
    return CNN_OK;
}

/* running = (1 - momentum) * running + momentum * batch, with the unbiased batch variance. */
static cnn_status bn_update_running(cnn_tensor *rm, cnn_tensor *rv, const double *mean,
                                    const double *var, int64_t c, int64_t m, float momentum,
                                    float *buf)
{
    double unbias = (double)m / (double)(m - 1);
    CNN_TRY(cnn_tensor_read(rm, buf, (size_t)c));
    for (int64_t ch = 0; ch < c; ch++)
        buf[ch] = (float)((1.0 - momentum) * buf[ch] + (double)momentum * mean[ch]);
    CNN_TRY(cnn_tensor_write(rm, buf, (size_t)c));
    CNN_TRY(cnn_tensor_read(rv, buf, (size_t)c));
    for (int64_t ch = 0; ch < c; ch++)
        buf[ch] = (float)((1.0 - momentum) * buf[ch] + (double)momentum * var[ch] * unbias);
    return cnn_tensor_write(rv, buf, (size_t)c);
}

cnn_status cnn_batch_norm(const cnn_tensor *x, cnn_tensor *running_mean, cnn_tensor *running_var,
                          const cnn_tensor *weight, const cnn_tensor *bias, bool training,
                          float momentum, float eps, cnn_tensor **y)
{
    CNN_CHECK(y, CNN_ERR_INVALID_ARG, "batch_norm: y is NULL");
    *y = NULL;
    CNN_TRY(bn_check_args(x, running_mean, running_var, weight, bias, training, eps));
    bn_params p = {x->shape.d[0], x->shape.d[1], 1, training};
    for (int i = 2; i < x->shape.ndim; i++) p.inner *= x->shape.d[i];
    int64_t c = p.c;
    cnn_status st = CNN_OK;
    cnn_tensor *xc = NULL, *stats = NULL, *bc = NULL;
    double *mean = NULL, *var = NULL;
    float *buf = NULL;
    CNN_TRYG(cnn_contig(x, &xc));
    CNN_TRYG(cnn_tensor_empty(CNN_SHAPE(BN_ROWS, c), CNN_F32, x->device, &stats));
    mean = malloc((size_t)(c ? c : 1) * sizeof *mean);
    var = malloc((size_t)(c ? c : 1) * sizeof *var);
    buf = malloc((size_t)(c ? c : 1) * sizeof *buf);
    if (!mean || !var || !buf) {
        st = cnn_error(CNN_ERR_OUT_OF_MEMORY, "batch_norm: out of host memory for %lld channels",
                       (long long)c);
        goto done;
    }
    float *ps = cnn_f32(stats);
    if (training) {
        bn_batch_stats(cnn_f32(xc), p.n, c, p.inner, mean, var);
        for (int64_t ch = 0; ch < c; ch++) {
            ps[BN_MEAN_HI * c + ch] = (float)mean[ch];
            ps[BN_MEAN_LO * c + ch] = (float)(mean[ch] - (double)ps[BN_MEAN_HI * c + ch]);
            ps[BN_INVSTD * c + ch] = (float)(1.0 / sqrt(var[ch] + (double)eps));
        }
        if (running_mean)
            CNN_TRYG(bn_update_running(running_mean, running_var, mean, var, c, p.n * p.inner,
                                       momentum, buf));
    } else {
        CNN_TRYG(cnn_tensor_read(running_mean, ps + BN_MEAN_HI * c, (size_t)c));
        CNN_TRYG(cnn_tensor_read(running_var, buf, (size_t)c));
        for (int64_t ch = 0; ch < c; ch++) {
            ps[BN_MEAN_LO * c + ch] = 0.0f;
            ps[BN_INVSTD * c + ch] = (float)(1.0 / sqrt((double)buf[ch] + (double)eps));
        }
    }
    if (weight) {
        CNN_TRYG(cnn_tensor_read(weight, ps + BN_WEIGHT * c, (size_t)c));
    } else {
        for (int64_t ch = 0; ch < c; ch++) ps[BN_WEIGHT * c + ch] = 1.0f;
    }
    if (bias) CNN_TRYG(cnn_contig(bias, &bc));
    CNN_TRYG(cnn_tensor_empty(x->shape, CNN_F32, x->device, y));
    bn_forward_kernel(cnn_f32(xc), ps, bc ? cnn_f32(bc) : NULL, p.n, c, p.inner, cnn_f32(*y));
    const cnn_tensor *in[3] = {x, weight, bias};
    if (cnn_should_record(in, 3)) {
        cnn_node *nd = NULL;
        CNN_TRYG(cnn_tape_record("batch_norm", bn_backward, *y, in, 3, &p, sizeof p, &nd));
        cnn_node_save(nd, xc);
        cnn_node_save(nd, stats);
    }
done:
    free(mean);
    free(var);
    free(buf);
    cnn_tensor_free(&xc);
    cnn_tensor_free(&stats);
    cnn_tensor_free(&bc);
    if (st != CNN_OK) cnn_tensor_free(y);
    return st;
}
