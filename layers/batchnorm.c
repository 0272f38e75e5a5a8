/* batchnorm.c — batch normalisation per channel C of (N, C), (N, C, L) or (N, C, H, W): argument
 * checks, forward (batch or running statistics), the in-place running-stat update, backward, the
 * CPU kernels and the backend choice. The running-stat update is a buffer write, never recorded
 * on the tape. */
#include "internal.h"
#include "parallel.h"

#include <math.h>
#include <stdatomic.h>

#if CNN_WITH_CUDA
#include "../cuda/cuda_api.h"
#endif

typedef struct {
    int64_t n, c, inner; /* x seen as (N, C, inner) */
    bool training;
    float eps;
} bn_params;

/* Per-channel statistics the kernels share, rows of one (4, C) tensor saved for backward: the
 * mean used as a float pair hi + lo (x - hi is exact for x near the mean, so a large mean with a
 * small spread keeps its precision), the inverse standard deviation used, and the weight (1
 * when there is none; a copy keeps backward right if the caller updates it in place). */
enum { BN_MEAN_HI = 0, BN_MEAN_LO = 1, BN_INVSTD = 2, BN_WEIGHT = 3, BN_ROWS = 4 };

/* The sums below run in LANES independent double chains, added up at the end: the compiler
 * vectorises them (one serial chain waits on every add's latency), and the order is fixed, so
 * results stay deterministic. */
#define LANES 8

/* sum p[j] and, when mu is given, sum (p[j] - *mu)^2, over n floats. */
static double lane_sum(const float *p, int64_t n, const double *mu)
{
    double a[LANES] = {0}, s = 0;
    int64_t j = 0;
    if (mu) {
        for (; j + LANES <= n; j += LANES)
            for (int l = 0; l < LANES; l++) {
                double d = p[j + l] - *mu;
                a[l] += d * d;
            }
        for (; j < n; j++) s += (p[j] - *mu) * (p[j] - *mu);
    } else {
        for (; j + LANES <= n; j += LANES)
            for (int l = 0; l < LANES; l++) a[l] += p[j + l];
        for (; j < n; j++) s += p[j];
    }
    for (int l = 0; l < LANES; l++) s += a[l];
    return s;
}

/* sum g[j] * xhat[j] over n floats, xhat = ((x - hi) - lo) * is as the forward computes it. */
static double lane_dot_xhat(const float *restrict g, const float *restrict x, int64_t n, float hi,
                            float lo, float is)
{
    double a[LANES] = {0}, s = 0;
    int64_t j = 0;
    for (; j + LANES <= n; j += LANES)
        for (int l = 0; l < LANES; l++) a[l] += (double)g[j + l] * (((x[j + l] - hi) - lo) * is);
    for (; j < n; j++) s += (double)g[j] * (((x[j] - hi) - lo) * is);
    for (int l = 0; l < LANES; l++) s += a[l];
    return s;
}

/* Batch mean and biased variance per channel, two passes in double for stability.
 * x: (N, C, inner) */
static void bn_batch_stats(const float *x, int64_t n, int64_t c, int64_t inner, double *mean,
                           double *var)
{
    int64_t m = n * inner;
    #pragma omp parallel for if (cnn_par_worth(n * c * inner))
    for (int64_t ch = 0; ch < c; ch++) {
        double s = 0;
        for (int64_t i = 0; i < n; i++) s += lane_sum(x + (i * c + ch) * inner, inner, NULL);
        double mu = s / (double)m, q = 0;
        for (int64_t i = 0; i < n; i++) q += lane_sum(x + (i * c + ch) * inner, inner, &mu);
        mean[ch] = mu;
        var[ch] = q / (double)m;
    }
}

/* y = (x - mean) * invstd * weight + bias per channel.
 * x, y: (N, C, inner); stats: (4, C); bias: (C) or NULL */
static void bn_forward_kernel(const float *x, const float *stats, const float *bias, int64_t n,
                              int64_t c, int64_t inner, float *y)
{
    #pragma omp parallel for if (cnn_par_worth(n * c * inner))
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
 * in eval they are constants and dx = w * invstd * dy, without xhat (whose 0 * inf or NaN for
 * a non-finite x would make that dx NaN where PyTorch's is finite).
 * x, dy, dx: (N, C, inner); stats: (4, C); dw, db: (C) or NULL */
static void bn_backward_kernel(const float *x, const float *dy, const float *stats, int64_t n,
                               int64_t c, int64_t inner, bool training, float *dx, float *dw,
                               float *db)
{
    double m = (double)(n * inner);
    #pragma omp parallel for if (cnn_par_worth(n * c * inner))
    for (int64_t ch = 0; ch < c; ch++) {
        float hi = stats[BN_MEAN_HI * c + ch], lo = stats[BN_MEAN_LO * c + ch];
        float is = stats[BN_INVSTD * c + ch];
        float w = stats[BN_WEIGHT * c + ch];
        double sdy = 0, sdyx = 0;
        for (int64_t i = 0; i < n; i++) {
            const float *px = x + (i * c + ch) * inner, *pg = dy + (i * c + ch) * inner;
            sdy += lane_sum(pg, inner, NULL);
            sdyx += lane_dot_xhat(pg, px, inner, hi, lo, is);
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
            if (!training)
                for (int64_t j = 0; j < inner; j++) pd[j] = k * pg[j];
            else
                for (int64_t j = 0; j < inner; j++)
                    pd[j] = k * (pg[j] - mdy - ((px[j] - hi) - lo) * is * mdyx);
        }
    }
}

/* ---- backend choice ---------------------------------------------------------------------- */
typedef enum { BN_CPU, BN_CUDA, BN_CUDNN } bn_backend;

/* CPU tensors: the CPU kernels. CUDA tensors: cuDNN (spatial mode) when built, preferred
 * (AUTO/CUDNN) and eps >= CUDNN_BN_MIN_EPSILON, else the hand-written kernels. eps 0 (which
 * cuDNN 9's minimum of 0 admits) takes the hand-written kernels too: they follow PyTorch's rule
 * for a constant channel (invstd 0, not 1 / sqrt(0)), as the CPU does. */
static bn_backend bn_backend_for(const cnn_tensor *x, float eps)
{
    if (!cnn_on_cuda(x)) return BN_CPU;
    cnn_backend pref = cnn_get_backend();
    if (!CNN_WITH_CUDNN || (pref != CNN_BACKEND_AUTO && pref != CNN_BACKEND_CUDNN)) return BN_CUDA;
#if CNN_WITH_CUDNN
    if ((double)eps >= cnn_cudnn_bn_min_epsilon() && eps > 0) return BN_CUDNN;
#endif
    static atomic_flag logged = ATOMIC_FLAG_INIT;
    if (!atomic_flag_test_and_set(&logged))
        cnn_log_debug("batch_norm: eps %g is 0 or below cuDNN's minimum, using the hand-written "
                      "CUDA kernel", (double)eps);
    return BN_CUDA;
}

#if CNN_WITH_CUDA
/* cuDNN's backward assumes batch statistics, so eval mode, and a call that needs no dx, take the
 * hand-written kernel. */
#if CNN_WITH_CUDNN
/* cuDNN cannot here (e.g. no usable handle on this GPU): said once per process, and the message
 * dropped, as the hand-written kernels serve. */
static void cudnn_declined(void)
{
    static atomic_flag logged = ATOMIC_FLAG_INIT;
    if (!atomic_flag_test_and_set(&logged))
        cnn_log_debug("batch_norm: cuDNN declined (%s), using the hand-written kernel",
                      cnn_last_error());
    cnn_clear_error();
}
#endif

static cnn_status bn_backward_gpu(const bn_params *p, const cnn_tensor *x, const cnn_tensor *stats,
                                  const cnn_tensor *dy, float *dx, float *dw, float *db)
{
#if CNN_WITH_CUDNN
    if (p->training && dx && bn_backend_for(x, p->eps) == BN_CUDNN) {
        cnn_status st = cnn_cudnn_batch_norm_backward(cnn_ctx(), cnn_f32(x), cnn_f32(dy),
                                                      cnn_f32(stats), p->n, p->c, p->inner,
                                                      p->eps, dx, dw, db);
        if (st != CNN_ERR_UNSUPPORTED) return st;
        cudnn_declined(); /* and the hand-written kernel below serves */
    }
#endif
    return cnn_cuda_batch_norm_backward(cnn_ctx(), cnn_f32(x), cnn_f32(dy), cnn_f32(stats), p->n,
                                        p->c, p->inner, p->training, dx, dw, db);
}
#endif

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
#if CNN_WITH_CUDA
    if (cnn_on_cuda(x)) return bn_backward_gpu(p, x, stats, dy, pdx, pdw, pdb);
#endif
    bn_backward_kernel(cnn_f32(x), cnn_f32(dy), cnn_f32(stats), p->n, p->c, p->inner, p->training,
                       pdx, pdw, pdb);
    return CNN_OK;
}

/* An empty input (batch 0, or an empty spatial size) has an empty output and leaves the running
 * statistics alone, as PyTorch; weight and bias get zero gradients. */
static cnn_status bn_empty_backward(cnn_node *nd, const cnn_tensor *dy, cnn_tensor **dx)
{
    (void)dy;
    for (int i = 0; i < 3; i++)
        if (nd->in[i].needs_grad) CNN_TRY(cnn_tensor_zeros(nd->in[i].shape, nd->in[i].device,
                                                           &dx[i]));
    return CNN_OK;
}

/* t (NULL allowed) must be an F32 (c) on xt's device; xn names xt in the message. */
static cnn_status bn_check_channel(const char *op, const char *name, const cnn_tensor *t,
                                   const cnn_tensor *xt, const char *xn, int64_t c)
{
    if (!t) return CNN_OK;
    CNN_TRY(cnn_check_f32(op, name, t));
    CNN_TRY(cnn_check_same_device(op, xt, xn, t, name));
    CNN_CHECK(t->shape.ndim == 1 && t->shape.d[0] == c, CNN_ERR_SHAPE,
              "%s: %s has shape %s, expected (%lld) for %s %s with %lld channels", op, name,
              cnn_shape_of(t), (long long)c, xn, cnn_shape_of(xt), (long long)c);
    return CNN_OK;
}

static cnn_status bn_check_args(const cnn_tensor *x, const cnn_tensor *rm, const cnn_tensor *rv,
                                const cnn_tensor *w, const cnn_tensor *b, bool training, float eps)
{
    CNN_TRY(cnn_check_f32("batch_norm", "x", x));
    CNN_CHECK(x->shape.ndim >= 2 && x->shape.ndim <= 4, CNN_ERR_SHAPE,
              "batch_norm: x must be (N, C), (N, C, L) or (N, C, H, W), got %s", cnn_shape_of(x));
    int64_t c = x->shape.d[1];
    CNN_TRY(bn_check_channel("batch_norm", "weight", w, x, "x", c));
    CNN_TRY(bn_check_channel("batch_norm", "bias", b, x, "x", c));
    CNN_TRY(bn_check_channel("batch_norm", "running_mean", rm, x, "x", c));
    CNN_TRY(bn_check_channel("batch_norm", "running_var", rv, x, "x", c));
    CNN_CHECK(!rm == !rv, CNN_ERR_INVALID_ARG,
              "batch_norm: running_mean and running_var must both be given or both be NULL");
    CNN_CHECK(training || rm, CNN_ERR_INVALID_ARG,
              "batch_norm: eval mode (training=false) needs running_mean and running_var");
    CNN_CHECK(eps >= 0, CNN_ERR_INVALID_ARG, "batch_norm: eps %g must be >= 0", (double)eps);
    int64_t per_channel = cnn_shape_numel(x->shape) / (c ? c : 1);
    CNN_CHECK(!training || per_channel != 1, CNN_ERR_SHAPE,
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

#if CNN_WITH_CUDA
/* The GPU forward: the weight row of stats (a copy of weight, or ones), then statistics, the
 * running-stat update and y from cuDNN or the hand-written kernels. Running stats that are
 * strided views are updated through contiguous copies written back.
 * xc: contiguous x; stats: (4, C); bc: contiguous bias or NULL */
static cnn_status bn_forward_gpu(const bn_params *p, const cnn_tensor *xc, cnn_tensor *rm,
                                 cnn_tensor *rv, const cnn_tensor *weight, const cnn_tensor *bc,
                                 float momentum, cnn_tensor *stats, cnn_tensor *y)
{
    int64_t c = p->c;
    cnn_status st = CNN_OK;
    cnn_tensor *wrow = NULL, *rmc = NULL, *rvc = NULL;
    int64_t stride = sizeof(float);
    CNN_TRYG(cnn_tensor_view(stats, CNN_SHAPE(c), &stride, stats->offset + 3 * c * sizeof(float),
                             &wrow));
    CNN_TRYG(weight ? cnn_tensor_copy_(wrow, weight) : cnn_tensor_fill_(wrow, 1.0f));
    if (rm) {
        CNN_TRYG(cnn_contig(rm, &rmc));
        CNN_TRYG(cnn_contig(rv, &rvc));
    }
    float *prm = rmc ? cnn_f32(rmc) : NULL, *prv = rvc ? cnn_f32(rvc) : NULL;
    const float *pb = bc ? cnn_f32(bc) : NULL;
    cnn_context *ctx = cnn_ctx();
    bn_backend be = bn_backend_for(xc, p->eps);
    /* Eval: the statistics rows from the running ones, whichever backend normalises. */
    if (!p->training)
        CNN_TRYG(cnn_cuda_batch_norm_stats(ctx, cnn_f32(xc), p->n, c, p->inner, false, momentum,
                                           p->eps, prm, prv, cnn_f32(stats)));
#if CNN_WITH_CUDNN
    if (be == BN_CUDNN) {
        st = p->training
                 ? cnn_cudnn_batch_norm_forward_training(ctx, cnn_f32(xc), p->n, c, p->inner,
                                                         cnn_f32(stats), pb, momentum, p->eps,
                                                         prm, prv, cnn_f32(y))
                 : cnn_cudnn_batch_norm_forward_inference(ctx, cnn_f32(xc), p->n, c, p->inner,
                                                          cnn_f32(stats), pb, prm, prv, p->eps,
                                                          cnn_f32(y));
        /* cuDNN cannot here (e.g. no usable handle on this GPU): the hand-written kernels can. */
        if (st == CNN_ERR_UNSUPPORTED) {
            cudnn_declined();
            be = BN_CUDA;
            st = CNN_OK;
        }
        if (st != CNN_OK) goto done;
    }
#endif
    if (be == BN_CUDA && p->training)
        CNN_TRYG(cnn_cuda_batch_norm_stats(ctx, cnn_f32(xc), p->n, c, p->inner, true, momentum,
                                           p->eps, prm, prv, cnn_f32(stats)));
    if (be == BN_CUDA)
        CNN_TRYG(cnn_cuda_batch_norm_forward(ctx, cnn_f32(xc), cnn_f32(stats), pb, p->n, c,
                                             p->inner, cnn_f32(y)));
    if (p->training && rmc != rm) CNN_TRYG(cnn_tensor_copy_(rm, rmc));
    if (p->training && rvc != rv) CNN_TRYG(cnn_tensor_copy_(rv, rvc));
done:
    cnn_tensor_free(&wrow);
    cnn_tensor_free(&rmc);
    cnn_tensor_free(&rvc);
    return st;
}
#endif

/* The CPU forward: statistics (rows of stats), the running-stat update and y.
 * xc: contiguous x; stats: (4, C); bc: contiguous bias or NULL */
static cnn_status bn_forward_cpu(const bn_params *p, const cnn_tensor *xc, cnn_tensor *rm,
                                 cnn_tensor *rv, const cnn_tensor *weight, const cnn_tensor *bc,
                                 float momentum, cnn_tensor *stats, cnn_tensor *y)
{
    int64_t c = p->c;
    cnn_status st = CNN_OK;
    double *mean = malloc((size_t)(c ? c : 1) * sizeof *mean);
    double *var = malloc((size_t)(c ? c : 1) * sizeof *var);
    float *buf = malloc((size_t)(c ? c : 1) * sizeof *buf);
    if (!mean || !var || !buf) {
        st = cnn_error(CNN_ERR_OUT_OF_MEMORY, "batch_norm: out of host memory for %lld channels",
                       (long long)c);
        goto done;
    }
    float *ps = cnn_f32(stats);
    if (p->training) {
        bn_batch_stats(cnn_f32(xc), p->n, c, p->inner, mean, var);
        for (int64_t ch = 0; ch < c; ch++) {
            ps[BN_MEAN_HI * c + ch] = (float)mean[ch];
            ps[BN_MEAN_LO * c + ch] = (float)(mean[ch] - (double)ps[BN_MEAN_HI * c + ch]);
            /* PyTorch's InvStd: 0 when var and eps are both 0 (a constant channel with eps 0
             * then gives its bias and zero gradients, not 0 * inf = NaN). */
            ps[BN_INVSTD * c + ch] = var[ch] == 0 && p->eps == 0
                                         ? 0.0f
                                         : (float)(1.0 / sqrt(var[ch] + (double)p->eps));
        }
        if (rm)
            CNN_TRYG(bn_update_running(rm, rv, mean, var, c, p->n * p->inner, momentum, buf));
    } else {
        CNN_TRYG(cnn_tensor_read(rm, ps + BN_MEAN_HI * c, (size_t)c));
        CNN_TRYG(cnn_tensor_read(rv, buf, (size_t)c));
        for (int64_t ch = 0; ch < c; ch++) {
            ps[BN_MEAN_LO * c + ch] = 0.0f;
            ps[BN_INVSTD * c + ch] = (float)(1.0 / sqrt((double)buf[ch] + (double)p->eps));
        }
    }
    if (weight) {
        CNN_TRYG(cnn_tensor_read(weight, ps + BN_WEIGHT * c, (size_t)c));
    } else {
        for (int64_t ch = 0; ch < c; ch++) ps[BN_WEIGHT * c + ch] = 1.0f;
    }
    bn_forward_kernel(cnn_f32(xc), ps, bc ? cnn_f32(bc) : NULL, p->n, c, p->inner, cnn_f32(y));
done:
    free(mean);
    free(var);
    free(buf);
    return st;
}

cnn_status cnn_batch_norm(const cnn_tensor *x, cnn_tensor *running_mean, cnn_tensor *running_var,
                          const cnn_tensor *weight, const cnn_tensor *bias, bool training,
                          float momentum, float eps, cnn_tensor **y)
{
    CNN_CHECK(y, CNN_ERR_INVALID_ARG, "batch_norm: y is NULL");
    *y = NULL;
    CNN_TRY(bn_check_args(x, running_mean, running_var, weight, bias, training, eps));
    bn_params p = {x->shape.d[0], x->shape.d[1], 1, training, eps};
    for (int i = 2; i < x->shape.ndim; i++) p.inner *= x->shape.d[i];
    cnn_status st = CNN_OK;
    if (cnn_shape_numel(x->shape) == 0) {
        CNN_TRY(cnn_tensor_empty_for("batch_norm", x->shape, CNN_F32, x->device, y));
        const cnn_tensor *in[3] = {x, weight, bias};
        if (cnn_should_record(in, 3))
            st = cnn_tape_record("batch_norm", bn_empty_backward, *y, in, 3, NULL, 0, NULL);
        if (st != CNN_OK) cnn_tensor_free(y);
        return st;
    }
    cnn_tensor *xc = NULL, *stats = NULL, *bc = NULL;
    CNN_TRYG(cnn_contig(x, &xc));
    CNN_TRYG(cnn_tensor_empty_for("batch_norm", CNN_SHAPE(BN_ROWS, p.c), CNN_F32, x->device,
                                  &stats));
    if (bias) CNN_TRYG(cnn_contig(bias, &bc));
    CNN_TRYG(cnn_tensor_empty_for("batch_norm", x->shape, CNN_F32, x->device, y));
    if (bn_backend_for(x, eps) == BN_CPU) {
        CNN_TRYG(bn_forward_cpu(&p, xc, running_mean, running_var, weight, bc, momentum, stats,
                                *y));
    } else {
#if CNN_WITH_CUDA
        CNN_TRYG(bn_forward_gpu(&p, xc, running_mean, running_var, weight, bc, momentum, stats,
                                *y));
#endif
    }
    if (training) { /* the running statistics were updated in place (NULLs are skipped) */
        cnn_storage_bump(running_mean);
        cnn_storage_bump(running_var);
    }
    const cnn_tensor *in[3] = {x, weight, bias};
    if (cnn_should_record(in, 3)) {
        cnn_node *nd = NULL;
        CNN_TRYG(cnn_tape_record("batch_norm", bn_backward, *y, in, 3, &p, sizeof p, &nd));
        cnn_node_save(nd, xc);
        cnn_node_save(nd, stats);
    }
done:
    cnn_tensor_free(&xc);
    cnn_tensor_free(&stats);
    cnn_tensor_free(&bc);
    if (st != CNN_OK) cnn_tensor_free(y);
    return st;
}

/* ---- folding into the conv before it (eval mode) -------------------------------------------- */
cnn_status cnn_batch_norm_fold(const cnn_tensor *w, const cnn_tensor *b,
                               const cnn_tensor *running_mean, const cnn_tensor *running_var,
                               const cnn_tensor *weight, const cnn_tensor *bias, float eps,
                               cnn_tensor **w_out, cnn_tensor **b_out)
{
    static const char op[] = "batch_norm_fold";
    CNN_CHECK(w_out && b_out, CNN_ERR_INVALID_ARG, "%s: w_out or b_out is NULL", op);
    *w_out = *b_out = NULL;
    CNN_TRY(cnn_check_f32(op, "w", w));
    CNN_CHECK(w->shape.ndim >= 1, CNN_ERR_SHAPE, "%s: w must have an output-channel dimension, "
              "got %s", op, cnn_shape_of(w));
    CNN_CHECK(running_mean && running_var, CNN_ERR_INVALID_ARG,
              "%s: running_mean and running_var are required", op);
    CNN_CHECK(eps >= 0 && isfinite(eps), CNN_ERR_INVALID_ARG, "%s: eps %g must be >= 0", op,
              (double)eps);
    const int64_t k = w->shape.d[0], per = k ? cnn_shape_numel(w->shape) / k : 0;
    const cnn_tensor *chan[5] = {b, running_mean, running_var, weight, bias};
    static const char *const names[5] = {"b", "running_mean", "running_var", "weight", "bias"};
    for (int i = 0; i < 5; i++) CNN_TRY(bn_check_channel(op, names[i], chan[i], w, "w", k));
    cnn_status st = CNN_OK;
    cnn_tensor *c[5] = {NULL}, *wc = NULL; /* contiguous inputs */
    CNN_TRYG(cnn_contig(w, &wc));
    for (int i = 0; i < 5; i++)
        if (chan[i]) CNN_TRYG(cnn_contig(chan[i], &c[i]));
    CNN_TRYG(cnn_tensor_empty_for("batch_norm_fold", w->shape, CNN_F32, w->device, w_out));
    CNN_TRYG(cnn_tensor_empty_for("batch_norm_fold", CNN_SHAPE(k), CNN_F32, w->device, b_out));
    const float *pc[5];
    for (int i = 0; i < 5; i++) pc[i] = c[i] ? cnn_f32(c[i]) : NULL;
    const float *pw = cnn_f32(wc);
    float *wo = cnn_f32(*w_out), *bo = cnn_f32(*b_out);
#if CNN_WITH_CUDA
    if (cnn_on_cuda(w)) {
        CNN_TRYG(cnn_cuda_batch_norm_fold(cnn_ctx(), pw, pc[0], pc[1], pc[2], pc[3], pc[4], eps,
                                          k, per, wo, bo));
        goto done;
    }
#endif
    /* cuda/batchnorm.cu's bn_fold_kernel does the same operations: the same bits. */
    for (int64_t row = 0; row < k; row++) {
        const double s = (pc[3] ? (double)pc[3][row] : 1.0) / sqrt((double)pc[2][row] + eps);
        for (int64_t j = 0; j < per; j++)
            wo[row * per + j] = (float)((double)pw[row * per + j] * s);
        bo[row] = (float)fma((pc[0] ? (double)pc[0][row] : 0.0) - (double)pc[1][row], s,
                             pc[4] ? (double)pc[4][row] : 0.0);
    }
done:
    cnn_tensor_free(&wc);
    for (int i = 0; i < 5; i++) cnn_tensor_free(&c[i]);
    if (st != CNN_OK) {
        cnn_tensor_free(w_out);
        cnn_tensor_free(b_out);
    }
    return st;
}
