/* view.c — ops that change how a tensor's storage is seen, not its values: reshape, flatten,
 * transpose, narrow. Each is recorded on the tape so gradients flow back through views. */
#include "internal.h"

typedef struct { int a, b; } transpose_params;
typedef struct { int dim; int64_t start; } narrow_params;

static cnn_status reshape_backward(cnn_node *n, const cnn_tensor *dy, cnn_tensor **dx)
{
    cnn_tensor *c = NULL;
    int64_t strides[CNN_MAX_DIMS];
    CNN_TRY(cnn_contig(dy, &c));
    cnn_contiguous_strides(n->in[0].shape, cnn_dtype_size(c->dtype), strides);
    cnn_status st = cnn_tensor_view(c, n->in[0].shape, strides, c->offset, &dx[0]);
    cnn_tensor_free(&c);
    return st;
}

cnn_status cnn_tensor_reshape(const cnn_tensor *t, cnn_shape shape, cnn_tensor **out)
{
    CNN_CHECK(t && out, CNN_ERR_INVALID_ARG, "reshape: NULL argument");
    *out = NULL;
    CNN_CHECK(shape.ndim >= 0 && shape.ndim <= CNN_MAX_DIMS, CNN_ERR_SHAPE,
              "reshape: rank %d is outside 0..4", shape.ndim);
    int64_t known = 1, numel = cnn_shape_numel(t->shape);
    int infer = -1;
    bool has_zero = false; /* then the product is 0 however large the other sizes */
    for (int i = 0; i < shape.ndim; i++) has_zero |= shape.d[i] == 0;
    for (int i = 0; i < shape.ndim; i++) {
        if (shape.d[i] == -1) {
            CNN_CHECK(infer < 0, CNN_ERR_SHAPE, "reshape: more than one -1 in the new shape");
            infer = i;
        } else {
            CNN_CHECK(shape.d[i] >= 0, CNN_ERR_SHAPE, "reshape: size %lld is negative",
                      (long long)shape.d[i]);
            if (!has_zero)
                CNN_CHECK(!__builtin_mul_overflow(known, shape.d[i], &known), CNN_ERR_SHAPE,
                          "reshape: the new shape's element count overflows 64 bits");
        }
    }
    if (has_zero) known = 0;
    if (infer >= 0) {
        CNN_CHECK(known > 0 && numel % known == 0, CNN_ERR_SHAPE,
                  "reshape: cannot infer -1 for %lld elements of %s", (long long)numel,
                  cnn_shape_of(t));
        shape.d[infer] = numel / known;
        known *= shape.d[infer];
    }
    char buf[64];
    CNN_CHECK(known == numel, CNN_ERR_SHAPE, "reshape: %s (%lld elements) cannot become %s",
              cnn_shape_of(t), (long long)numel, cnn_shape_str(shape, buf, sizeof buf));
    CNN_TRY(cnn_shape_validate(shape, "reshape")); /* an empty shape's other sizes too */
    cnn_tensor *c = NULL;
    CNN_TRY(cnn_contig(t, &c));
    int64_t strides[CNN_MAX_DIMS];
    cnn_contiguous_strides(shape, cnn_dtype_size(t->dtype), strides);
    cnn_status st = cnn_tensor_view(c, shape, strides, c->offset, out);
    cnn_tensor_free(&c);
    if (st == CNN_OK && cnn_should_record(&t, 1))
        st = cnn_tape_record("reshape", reshape_backward, *out, &t, 1, NULL, 0, NULL);
    if (st != CNN_OK) cnn_tensor_free(out);
    return st;
}

cnn_status cnn_flatten(const cnn_tensor *x, int start_dim, cnn_tensor **y)
{
    CNN_CHECK(x && y, CNN_ERR_INVALID_ARG, "flatten: NULL argument");
    int nd = x->shape.ndim, given = start_dim;
    if (start_dim < 0) start_dim += nd;
    /* a 0-d tensor takes 0 and -1, as torch.flatten does (its dims count as one there) */
    CNN_CHECK(nd == 0 ? given == 0 || given == -1 : start_dim >= 0 && start_dim < nd,
              CNN_ERR_SHAPE, "flatten: start_dim %d is out of range for %s", given,
              cnn_shape_of(x));
    cnn_shape s = {0, {0}};
    if (nd == 0) {
        s = CNN_SHAPE(1);
    } else {
        s.ndim = start_dim + 1;
        int64_t rest = 1;
        for (int i = 0; i < nd; i++) {
            if (i < start_dim) s.d[i] = x->shape.d[i];
            else rest *= x->shape.d[i];
        }
        s.d[start_dim] = rest;
    }
    return cnn_tensor_reshape(x, s, y);
}

static cnn_status transpose_backward(cnn_node *n, const cnn_tensor *dy, cnn_tensor **dx)
{
    const transpose_params *p = (const transpose_params *)n->params;
    cnn_tensor *v = NULL;
    int64_t strides[CNN_MAX_DIMS];
    cnn_shape s = dy->shape;
    memcpy(strides, dy->strides, sizeof strides);
    int64_t t = s.d[p->a];
    s.d[p->a] = s.d[p->b];
    s.d[p->b] = t;
    t = strides[p->a];
    strides[p->a] = strides[p->b];
    strides[p->b] = t;
    CNN_TRY(cnn_tensor_view(dy, s, strides, dy->offset, &v));
    cnn_status st = cnn_contig(v, &dx[0]);
    cnn_tensor_free(&v);
    return st;
}

cnn_status cnn_tensor_transpose(const cnn_tensor *t, int a, int b, cnn_tensor **out)
{
    CNN_CHECK(t && out, CNN_ERR_INVALID_ARG, "transpose: NULL argument");
    *out = NULL;
    int nd = t->shape.ndim, ga = a, gb = b;
    if (a < 0) a += nd;
    if (b < 0) b += nd;
    CNN_CHECK(a >= 0 && a < nd && b >= 0 && b < nd, CNN_ERR_SHAPE,
              "transpose: dims (%d, %d) out of range for %s", ga, gb, cnn_shape_of(t));
    cnn_shape s = t->shape;
    int64_t strides[CNN_MAX_DIMS];
    memcpy(strides, t->strides, sizeof strides);
    int64_t tmp = s.d[a];
    s.d[a] = s.d[b];
    s.d[b] = tmp;
    tmp = strides[a];
    strides[a] = strides[b];
    strides[b] = tmp;
    CNN_TRY(cnn_tensor_view(t, s, strides, t->offset, out));
    transpose_params p = {a, b};
    cnn_status st = CNN_OK;
    if (cnn_should_record(&t, 1))
        st = cnn_tape_record("transpose", transpose_backward, *out, &t, 1, &p, sizeof p, NULL);
    if (st != CNN_OK) cnn_tensor_free(out);
    return st;
}

static cnn_status narrow_backward(cnn_node *n, const cnn_tensor *dy, cnn_tensor **dx)
{
    const narrow_params *p = (const narrow_params *)n->params;
    cnn_status st = CNN_OK;
    cnn_tensor *slice = NULL;
    CNN_TRYG(cnn_tensor_zeros(n->in[0].shape, n->in[0].device, &dx[0]));
    cnn_shape s = dx[0]->shape;
    s.d[p->dim] = dy->shape.d[p->dim];
    CNN_TRYG(cnn_tensor_view(dx[0], s, dx[0]->strides,
                             dx[0]->offset + (size_t)(p->start * dx[0]->strides[p->dim]), &slice));
    CNN_TRYG(cnn_tensor_copy_(slice, dy));
done:
    cnn_tensor_free(&slice);
    return st;
}

cnn_status cnn_tensor_narrow(const cnn_tensor *t, int dim, int64_t start, int64_t length,
                             cnn_tensor **out)
{
    CNN_CHECK(t && out, CNN_ERR_INVALID_ARG, "narrow: NULL argument");
    *out = NULL;
    int nd = t->shape.ndim;
    if (dim < 0) dim += nd;
    CNN_CHECK(dim >= 0 && dim < nd, CNN_ERR_SHAPE, "narrow: dim %d out of range for %s", dim,
              cnn_shape_of(t));
    CNN_CHECK(start >= 0 && length >= 0 && start <= t->shape.d[dim] &&
                  length <= t->shape.d[dim] - start,
              CNN_ERR_SHAPE, "narrow: start %lld, length %lld is outside dim %d of %s",
              (long long)start, (long long)length, dim, cnn_shape_of(t));
    cnn_shape s = t->shape;
    s.d[dim] = length;
    CNN_TRY(cnn_tensor_view(t, s, t->strides, t->offset + (size_t)(start * t->strides[dim]), out));
    narrow_params p = {dim, start};
    cnn_status st = CNN_OK;
    if (cnn_should_record(&t, 1))
        st = cnn_tape_record("narrow", narrow_backward, *out, &t, 1, &p, sizeof p, NULL);
    if (st != CNN_OK) cnn_tensor_free(out);
    return st;
}
