/* elementwise.c — add, scale, sum, mean: shape rules, forward, backward and CPU kernels.
 * Simple ops, and the pattern every op file follows: check arguments (naming op and shapes),
 * compute into a new output, record a node with what backward needs, nothing more. */
#include "internal.h"

#include <math.h>

/* ---- add: y = a + b ---------------------------------------------------------------------- */
static cnn_status add_backward(cnn_node *n, const cnn_tensor *dy, cnn_tensor **dx)
{
    /* The gradient passes through unchanged to both inputs; the tape copies it if both take it. */
    for (int i = 0; i < 2; i++)
        if (n->in[i].needs_grad) dx[i] = cnn_tensor_retain((cnn_tensor *)dy);
    return CNN_OK;
}

cnn_status cnn_add(const cnn_tensor *a, const cnn_tensor *b, cnn_tensor **y)
{
    CNN_CHECK(y, CNN_ERR_INVALID_ARG, "add: y is NULL");
    *y = NULL;
    CNN_TRY(cnn_check_tensor("add", "a", a));
    CNN_TRY(cnn_check_tensor("add", "b", b));
    CNN_TRY(cnn_check_same_device("add", a, "a", b, "b"));
    CNN_CHECK(cnn_shape_equal(a->shape, b->shape), CNN_ERR_SHAPE,
              "add: a %s and b %s differ in shape", cnn_shape_of(a), cnn_shape_of(b));
    cnn_status st = CNN_OK;
    cnn_tensor *ac = NULL, *bc = NULL;
    CNN_TRYG(cnn_contig(a, &ac));
    CNN_TRYG(cnn_contig(b, &bc));
    CNN_TRYG(cnn_tensor_empty(a->shape, CNN_F32, a->device, y));
    {
        /* a, b, y: (numel) */
        const float *pa = cnn_f32(ac), *pb = cnn_f32(bc);
        float *py = cnn_f32(*y);
        int64_t n = cnn_shape_numel(a->shape);
        #pragma omp parallel for simd if (n > 32768)
        for (int64_t i = 0; i < n; i++) py[i] = pa[i] + pb[i];
    }
    const cnn_tensor *in[2] = {a, b};
    if (cnn_should_record(in, 2)) CNN_TRYG(cnn_tape_record("add", add_backward, *y, in, 2, NULL, 0, NULL));
done:
    cnn_tensor_free(&ac);
    cnn_tensor_free(&bc);
    if (st != CNN_OK) cnn_tensor_free(y);
    return st;
}

/* ---- scale: y = alpha * a ---------------------------------------------------------------- */
static cnn_status scale_kernel(const cnn_tensor *a, float alpha, cnn_tensor **y)
{
    cnn_tensor *ac = NULL;
    CNN_TRY(cnn_contig(a, &ac));
    cnn_status st = cnn_tensor_empty(a->shape, CNN_F32, a->device, y);
    if (st == CNN_OK) {
        const float *pa = cnn_f32(ac);
        float *py = cnn_f32(*y);
        int64_t n = cnn_shape_numel(a->shape);
        #pragma omp parallel for simd if (n > 32768)
        for (int64_t i = 0; i < n; i++) py[i] = alpha * pa[i];
    }
    cnn_tensor_free(&ac);
    return st;
}

static cnn_status scale_backward(cnn_node *n, const cnn_tensor *dy, cnn_tensor **dx)
{
    float alpha;
    memcpy(&alpha, n->params, sizeof alpha);
    return scale_kernel(dy, alpha, &dx[0]);
}

cnn_status cnn_scale(const cnn_tensor *a, float alpha, cnn_tensor **y)
{
    CNN_CHECK(y, CNN_ERR_INVALID_ARG, "scale: y is NULL");
    *y = NULL;
    CNN_TRY(cnn_check_tensor("scale", "a", a));
    CNN_TRY(scale_kernel(a, alpha, y));
    cnn_status st = CNN_OK;
    if (cnn_should_record(&a, 1))
        st = cnn_tape_record("scale", scale_backward, *y, &a, 1, &alpha, sizeof alpha, NULL);
    if (st != CNN_OK) cnn_tensor_free(y);
    return st;
}

/* ---- sum / mean of all elements -> scalar ------------------------------------------------- */
static cnn_status reduce_backward(cnn_node *n, const cnn_tensor *dy, cnn_tensor **dx)
{
    float scale, g;
    memcpy(&scale, n->params, sizeof scale);
    CNN_TRY(cnn_tensor_read(dy, &g, 1));
    return cnn_tensor_full(n->in[0].shape, g * scale, n->in[0].device, &dx[0]);
}

static cnn_status reduce(const char *op, const cnn_tensor *x, bool mean, cnn_tensor **y)
{
    CNN_CHECK(y, CNN_ERR_INVALID_ARG, "%s: y is NULL", op);
    *y = NULL;
    CNN_TRY(cnn_check_tensor(op, "x", x));
    cnn_tensor *xc = NULL;
    CNN_TRY(cnn_contig(x, &xc));
    int64_t n = cnn_shape_numel(x->shape);
    const float *p = cnn_f32(xc);
    double s = 0;
    #pragma omp parallel for reduction(+ : s) if (n > 65536)
    for (int64_t i = 0; i < n; i++) s += p[i];
    cnn_tensor_free(&xc);
    float scale = mean ? (n ? 1.0f / (float)n : NAN) : 1.0f;
    CNN_TRY(cnn_tensor_full(CNN_SCALAR, (float)(s * scale), x->device, y));
    cnn_status st = CNN_OK;
    if (cnn_should_record(&x, 1))
        st = cnn_tape_record(op, reduce_backward, *y, &x, 1, &scale, sizeof scale, NULL);
    if (st != CNN_OK) cnn_tensor_free(y);
    return st;
}

cnn_status cnn_sum(const cnn_tensor *x, cnn_tensor **y) { return reduce("sum", x, false, y); }
cnn_status cnn_mean(const cnn_tensor *x, cnn_tensor **y) { return reduce("mean", x, true, y); }
