/* loss.c — softmax, log_softmax and cross-entropy: shape rules, forward, backward, CPU kernels
 * and the choice of CUDA kernel (cuda/loss.cu). All subtract the maximum before exponentiating
 * so large logits stay finite; each saves only its probabilities (or log-probabilities), never
 * its input. On CUDA, cross-entropy leaves its labels on the device (no host round trip): a
 * label outside [0, K) gives a NaN loss, and the next call that waits for the device returns
 * CNN_ERR_INVALID_ARG (cuda/loss.cu records it in the context). */
#include "internal.h"
#include "parallel.h"
#if CNN_WITH_CUDA
#include "../cuda/cuda_api.h"
#endif

#include <math.h>

/* ---- softmax / log_softmax along one dim --------------------------------------------------- */
typedef struct {
    int64_t outer, k, inner; /* x viewed as (outer, k, inner), the softmax dim in the middle */
    bool log;
} softmax_params;

// x, y: (outer, k, inner), softmax over k
static void softmax_cpu(const softmax_params *p, const float *x, float *y)
{
    int64_t k = p->k, inner = p->inner, rows = p->outer * p->inner;
    #pragma omp parallel for if (cnn_par_worth(rows * k))
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + (r / inner) * k * inner + r % inner;
        float *yr = y + (r / inner) * k * inner + r % inner;
        float m = -INFINITY;
        for (int64_t j = 0; j < k; j++) m = fmaxf(m, xr[j * inner]);
        double s = 0;
        for (int64_t j = 0; j < k; j++) s += exp((double)(xr[j * inner] - m));
        if (p->log) {
            /* (x - m) - log(s), PyTorch's order: m + log(s) first would round to m for large
             * logits (float spacing 8 at 1e8) and lose log(s) from every output. */
            float ls = (float)log(s);
            for (int64_t j = 0; j < k; j++) yr[j * inner] = (xr[j * inner] - m) - ls;
        } else {
            float inv = (float)(1.0 / s);
            for (int64_t j = 0; j < k; j++) yr[j * inner] = expf(xr[j * inner] - m) * inv;
        }
    }
}

/* softmax: dx = y * (dy - sum_j dy_j y_j); log_softmax: dx = dy - exp(y) * sum_j dy_j. */
// y, dy, dx: (outer, k, inner)
static void softmax_backward_cpu(const softmax_params *p, const float *y, const float *dy,
                                 float *dx)
{
    int64_t k = p->k, inner = p->inner, rows = p->outer * p->inner;
    #pragma omp parallel for if (cnn_par_worth(rows * k))
    for (int64_t r = 0; r < rows; r++) {
        int64_t base = (r / inner) * k * inner + r % inner;
        const float *yr = y + base, *dyr = dy + base;
        float *dxr = dx + base;
        double s = 0;
        if (p->log) {
            for (int64_t j = 0; j < k; j++) s += dyr[j * inner];
            for (int64_t j = 0; j < k; j++)
                dxr[j * inner] = dyr[j * inner] - expf(yr[j * inner]) * (float)s;
        } else {
            for (int64_t j = 0; j < k; j++) s += (double)dyr[j * inner] * yr[j * inner];
            for (int64_t j = 0; j < k; j++)
                dxr[j * inner] = yr[j * inner] * (dyr[j * inner] - (float)s);
        }
    }
}

static cnn_status softmax_backward(cnn_node *node, const cnn_tensor *dy, cnn_tensor **dx)
{
    const softmax_params *p = (const softmax_params *)node->params;
    const cnn_tensor *y = node->saved[0];
    CNN_ASSERT(node->n_saved == 1 && cnn_tensor_is_contiguous(y) && cnn_tensor_is_contiguous(dy));
    CNN_TRY(cnn_tensor_empty(node->in[0].shape, CNN_F32, node->in[0].device, &dx[0]));
#if CNN_WITH_CUDA
    if (cnn_on_cuda(y))
        return cnn_cuda_softmax_backward(cnn_ctx(), cnn_f32(y), cnn_f32(dy), cnn_f32(dx[0]),
                                         p->outer, p->k, p->inner, p->log);
#endif
    softmax_backward_cpu(p, cnn_f32(y), cnn_f32(dy), cnn_f32(dx[0]));
    return CNN_OK;
}

static cnn_status softmax_op(const char *op, const cnn_tensor *x, int dim, bool log, cnn_tensor **y)
{
    CNN_CHECK(y, CNN_ERR_INVALID_ARG, "%s: y is NULL", op);
    *y = NULL;
    CNN_TRY(cnn_check_f32(op, "x", x));
    int nd = x->shape.ndim;
    /* As PyTorch, a scalar accepts dim 0 or -1 and is its own single-element row. */
    int span = nd > 0 ? nd : 1;
    int d = dim < 0 ? dim + span : dim;
    CNN_CHECK(d >= 0 && d < span, CNN_ERR_SHAPE, "%s: dim %d is out of range for %s (rank %d)",
              op, dim, cnn_shape_of(x), nd);
    softmax_params p = {1, 1, 1, log};
    for (int i = 0; i < nd; i++) {
        if (i < d) p.outer *= x->shape.d[i];
        else if (i == d) p.k = x->shape.d[i];
        else p.inner *= x->shape.d[i];
    }
    cnn_status st = CNN_OK;
    cnn_tensor *xc = NULL;
    CNN_TRYG(cnn_contig(x, &xc));
    CNN_TRYG(cnn_tensor_empty_for(op, x->shape, CNN_F32, x->device, y));
#if CNN_WITH_CUDA
    if (cnn_on_cuda(x))
        CNN_TRYG(cnn_cuda_softmax_forward(cnn_ctx(), cnn_f32(xc), cnn_f32(*y), p.outer, p.k,
                                          p.inner, p.log));
    else
#endif
        softmax_cpu(&p, cnn_f32(xc), cnn_f32(*y));
    if (cnn_should_record(&x, 1)) {
        cnn_node *node = NULL;
        CNN_TRYG(cnn_tape_record(op, softmax_backward, *y, &x, 1, &p, sizeof p, &node));
        cnn_node_save(node, *y);
    }
done:
    cnn_tensor_free(&xc);
    if (st != CNN_OK) cnn_tensor_free(y);
    return st;
}

cnn_status cnn_softmax(const cnn_tensor *x, int dim, cnn_tensor **y)
{
    return softmax_op("softmax", x, dim, false, y);
}

cnn_status cnn_log_softmax(const cnn_tensor *x, int dim, cnn_tensor **y)
{
    return softmax_op("log_softmax", x, dim, true, y);
}

/* ---- cross-entropy ------------------------------------------------------------------------ */
typedef struct {
    float label_smoothing;
    int64_t ignore_index;
    int64_t n_valid; /* CPU: samples not ignored (CUDA keeps the count on the device) */
} ce_params;

/* Per sample: loss_n = -sum_k q_k log p_k with q = (1 - ls) onehot(label) + ls / K, i.e.
 * lse - (1 - ls) x_label - ls/K sum_k x_k. Writes the probabilities p and returns the sum over
 * the samples whose label is not `ignore`. */
// logits, prob: (N, K); labels: (N)
static double cross_entropy_cpu(const float *logits, const int64_t *labels, float ls,
                                int64_t ignore, int64_t n, int64_t k, float *prob)
{
    double total = 0;
    #pragma omp parallel for reduction(+ : total) if (cnn_par_worth(n * k))
    for (int64_t i = 0; i < n; i++) {
        const float *x = logits + i * k;
        float *pr = prob + i * k;
        float m = -INFINITY;
        for (int64_t j = 0; j < k; j++) m = fmaxf(m, x[j]);
        double s = 0, sum_x = 0;
        for (int64_t j = 0; j < k; j++) {
            s += exp((double)(x[j] - m));
            sum_x += (double)x[j] - m;
        }
        double lse = log(s); /* of the shifted logits x - m */
        for (int64_t j = 0; j < k; j++) pr[j] = (float)(exp((double)(x[j] - m) - lse));
        if (labels[i] == ignore) continue;
        double nll = lse - ((double)x[labels[i]] - m);
        /* The smoothing term only with smoothing on: a -inf logit (a masked class) makes it
         * +inf, and 0 * inf would turn PyTorch's finite loss into NaN. */
        total += ls != 0.0f ? (1.0 - ls) * nll + (double)ls * (lse - sum_x / (double)k) : nll;
    }
    return total;
}

/* dlogits = g / N_valid * (p - q), 0 on ignored rows. saved: p (N, K), a copy of the labels (N)
 * and, on CUDA, the device count N_valid (1). */
// prob, dlogits: (N, K); labels: (N)
static cnn_status cross_entropy_backward(cnn_node *node, const cnn_tensor *dy, cnn_tensor **dx)
{
    const ce_params *cp = (const ce_params *)node->params;
    CNN_ASSERT(node->n_saved == 2 || node->n_saved == 3);
    const cnn_tensor *prob = node->saved[0], *lab = node->saved[1];
    CNN_ASSERT(cnn_tensor_is_contiguous(prob) && cnn_tensor_is_contiguous(lab) &&
               lab->dtype == CNN_I64);
    int64_t n = prob->shape.d[0], k = prob->shape.d[1];
    CNN_TRY(cnn_tensor_empty(node->in[0].shape, CNN_F32, node->in[0].device, &dx[0]));
#if CNN_WITH_CUDA
    /* The loss gradient stays on the device: the kernel reads it there. */
    if (cnn_on_cuda(prob))
        return cnn_cuda_cross_entropy_backward(cnn_ctx(), cnn_f32(prob),
                                               (const int64_t *)cnn_ptr(lab), cnn_f32(dy),
                                               cnn_f32(node->saved[2]), cnn_f32(dx[0]), n, k,
                                               cp->label_smoothing, cp->ignore_index);
#endif
    float g;
    CNN_TRY(cnn_tensor_read(dy, &g, 1));
    const float *p = cnn_f32(prob);
    const int64_t *labels = (const int64_t *)cnn_ptr(lab);
    float *d = cnn_f32(dx[0]);
    float scale = g / (float)cp->n_valid, off = cp->label_smoothing / (float)k;
    float hit = 1.0f - cp->label_smoothing;
    #pragma omp parallel for if (cnn_par_worth(n * k))
    for (int64_t i = 0; i < n; i++) {
        if (labels[i] == cp->ignore_index) {
            for (int64_t j = 0; j < k; j++) d[i * k + j] = 0.0f;
            continue;
        }
        for (int64_t j = 0; j < k; j++) d[i * k + j] = scale * (p[i * k + j] - off);
        d[i * k + labels[i]] -= scale * hit;
    }
    return CNN_OK;
}

/* The CPU forward: labels copied to the host and checked, probabilities and the mean over the
 * samples not ignored (their count into cp->n_valid). On success *lab (a private copy of the
 * labels: the caller may refill its batch buffer before backward), *prob and *loss are new; on
 * failure the caller frees what was set. */
static cnn_status cross_entropy_forward_cpu(const cnn_tensor *logits, const cnn_tensor *labels,
                                            ce_params *cp, cnn_tensor **lab, cnn_tensor **prob,
                                            cnn_tensor **loss)
{
    int64_t n = logits->shape.d[0], k = logits->shape.d[1];
    CNN_TRY(cnn_tensor_empty(labels->shape, CNN_I64, CNN_CPU, lab));
    int64_t *lv = (int64_t *)cnn_ptr(*lab);
    CNN_TRY(cnn_tensor_read(labels, lv, (size_t)n));
    cp->n_valid = 0;
    for (int64_t i = 0; i < n; i++) {
        if (lv[i] == cp->ignore_index) continue;
        CNN_CHECK(lv[i] >= 0 && lv[i] < k, CNN_ERR_INVALID_ARG,
                  "cross_entropy: label %lld at index %lld is outside [0, %lld) for logits %s "
                  "(and is not ignore_index %lld)", (long long)lv[i], (long long)i, (long long)k,
                  cnn_shape_of(logits), (long long)cp->ignore_index);
        cp->n_valid++;
    }
    cnn_tensor *xc = NULL;
    CNN_TRY(cnn_contig(logits, &xc));
    cnn_status st =
        cnn_tensor_empty_for("cross_entropy", logits->shape, CNN_F32, logits->device, prob);
    double total = st == CNN_OK ? cross_entropy_cpu(cnn_f32(xc), lv, cp->label_smoothing,
                                                    cp->ignore_index, n, k, cnn_f32(*prob))
                                : 0;
    cnn_tensor_free(&xc);
    CNN_TRY(st);
    /* No sample counted (an empty batch, or all ignored) gives NaN, as PyTorch's mean. */
    return cnn_tensor_full(CNN_SCALAR, (float)(total / (double)cp->n_valid), logits->device,
                           loss);
}

#if CNN_WITH_CUDA
/* The CUDA forward, as the CPU one but with the labels copied on the device and never read on
 * the host (see the file comment for what an out-of-range label does). */
static cnn_status cross_entropy_forward_cuda(const cnn_tensor *logits, const cnn_tensor *labels,
                                             const ce_params *cp, cnn_tensor **lab,
                                             cnn_tensor **prob, cnn_tensor **count,
                                             cnn_tensor **loss)
{
    int64_t n = logits->shape.d[0], k = logits->shape.d[1];
    cnn_status st = CNN_OK;
    cnn_tensor *xc = NULL, *per_sample = NULL;
    CNN_TRYG(cnn_tensor_clone(labels, lab));
    CNN_TRYG(cnn_contig(logits, &xc));
    CNN_TRYG(cnn_tensor_empty_for("cross_entropy", logits->shape, CNN_F32, logits->device, prob));
    CNN_TRYG(cnn_tensor_empty_for("cross_entropy", labels->shape, CNN_F32, logits->device,
                                  &per_sample));
    CNN_TRYG(cnn_tensor_empty_for("cross_entropy", CNN_SCALAR, CNN_F32, logits->device, count));
    CNN_TRYG(cnn_tensor_empty_for("cross_entropy", CNN_SCALAR, CNN_F32, logits->device, loss));
    /* The mean over the samples not ignored; none (or an empty batch) gives NaN, as on the CPU. */
    CNN_TRYG(cnn_cuda_cross_entropy_forward(cnn_ctx(), cnn_f32(xc), (const int64_t *)cnn_ptr(*lab),
                                            cnn_f32(*prob), cnn_f32(per_sample), cnn_f32(*loss),
                                            cnn_f32(*count), n, k, cp->label_smoothing,
                                            cp->ignore_index));
done:
    cnn_tensor_free(&xc);
    cnn_tensor_free(&per_sample);
    return st;
}
#endif

cnn_status cnn_cross_entropy(const cnn_tensor *logits, const cnn_tensor *labels,
                             float label_smoothing, cnn_tensor **loss)
{
    return cnn_cross_entropy_ignore(logits, labels, label_smoothing, CNN_IGNORE_INDEX, loss);
}

cnn_status cnn_cross_entropy_ignore(const cnn_tensor *logits, const cnn_tensor *labels,
                                    float label_smoothing, int64_t ignore_index, cnn_tensor **loss)
{
    CNN_CHECK(loss, CNN_ERR_INVALID_ARG, "cross_entropy: loss is NULL");
    *loss = NULL;
    CNN_TRY(cnn_check_f32("cross_entropy", "logits", logits));
    CNN_CHECK(labels, CNN_ERR_INVALID_ARG, "cross_entropy: labels is NULL");
    CNN_CHECK(logits->shape.ndim == 2, CNN_ERR_SHAPE,
              "cross_entropy: logits must be (N, K), got %s (rank %d)", cnn_shape_of(logits),
              logits->shape.ndim);
    CNN_CHECK(labels->dtype == CNN_I64, CNN_ERR_SHAPE,
              "cross_entropy: labels must be I64 class indices, got dtype %s",
              cnn_dtype_name(labels->dtype));
    CNN_TRY(cnn_check_same_device("cross_entropy", logits, "logits", labels, "labels"));
    int64_t n = logits->shape.d[0];
    CNN_CHECK(labels->shape.ndim == 1 && labels->shape.d[0] == n, CNN_ERR_SHAPE,
              "cross_entropy: labels %s do not match logits %s (expected (%lld))",
              cnn_shape_of(labels), cnn_shape_of(logits), (long long)n);
    CNN_CHECK(label_smoothing >= 0.0f && label_smoothing <= 1.0f, CNN_ERR_INVALID_ARG,
              "cross_entropy: label_smoothing %g is outside [0, 1]", (double)label_smoothing);
    cnn_status st = CNN_OK;
    cnn_tensor *prob = NULL, *lab = NULL, *count = NULL;
    ce_params cp = {label_smoothing, ignore_index, 0};
#if CNN_WITH_CUDA
    if (cnn_on_cuda(logits))
        CNN_TRYG(cross_entropy_forward_cuda(logits, labels, &cp, &lab, &prob, &count, loss));
    else
#endif
        CNN_TRYG(cross_entropy_forward_cpu(logits, labels, &cp, &lab, &prob, loss));
    /* Labels are integers: the node has logits as its only input. */
    if (cnn_should_record(&logits, 1)) {
        cnn_node *node = NULL;
        CNN_TRYG(cnn_tape_record("cross_entropy", cross_entropy_backward, *loss, &logits, 1, &cp,
                                 sizeof cp, &node));
        cnn_node_save(node, prob);
        cnn_node_save(node, lab);
        if (count) cnn_node_save(node, count);
    }
done:
    cnn_tensor_free(&prob);
    cnn_tensor_free(&lab);
    cnn_tensor_free(&count);
    if (st != CNN_OK) cnn_tensor_free(loss);
    return st;
}
