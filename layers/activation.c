/* activation.c — relu, leaky_relu, elu, sigmoid, tanh: forward, backward, CPU kernels and the
 * choice of CUDA kernel (cuda/activation.cu). Each saves the least its backward needs, preferring
 * the output (which the next layer usually keeps anyway) over the input, so an activation adds
 * no tensor of its own to training memory. */
#include "internal.h"
#include "parallel.h"
#if CNN_WITH_CUDA
#include "../cuda/cuda_api.h"
#endif

#include <math.h>

/* cuda/activation.cu takes the kind as an int in this order. */
typedef enum { ACT_RELU, ACT_LEAKY, ACT_ELU, ACT_SIGMOID, ACT_TANH } act_kind;

typedef struct {
    act_kind kind;
    float param;     /* negative_slope (leaky) or alpha (elu) */
    bool saved_is_y; /* the saved tensor is the output (else the input) */
} act_params;

// x, y: (numel), any shape flattened
static void act_forward_cpu(act_kind kind, float a, const float *x, float *y, int64_t n)
{
    switch (kind) {
    case ACT_RELU:
        #pragma omp parallel for simd if (parallel: cnn_par_worth(n))
        for (int64_t i = 0; i < n; i++) y[i] = x[i] <= 0.0f ? 0.0f : x[i]; /* NaN stays */
        break;
    case ACT_LEAKY:
        #pragma omp parallel for simd if (parallel: cnn_par_worth(n))
        for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : a * x[i];
        break;
    case ACT_ELU:
        #pragma omp parallel for if (cnn_par_worth(n))
        for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : a * expm1f(x[i]);
        break;
    case ACT_SIGMOID:
        #pragma omp parallel for if (cnn_par_worth(n))
        for (int64_t i = 0; i < n; i++) y[i] = 1.0f / (1.0f + expf(-x[i]));
        break;
    case ACT_TANH:
        #pragma omp parallel for if (cnn_par_worth(n))
        for (int64_t i = 0; i < n; i++) y[i] = tanhf(x[i]);
        break;
    }
}

/* s is the saved tensor (output y or input x, per p->saved_is_y).
 * relu: y > 0 <=> x > 0. leaky with slope >= 0: likewise. elu always reads x: there dy/dx =
 * alpha * exp(x), as PyTorch computes it; y + alpha equals it but cancels once y nears -alpha
 * (0 below x = -17.3 for alpha 1). */
// s, dy, dx: (numel)
static void act_backward_cpu(const act_params *p, const float *s, const float *dy, float *dx,
                             int64_t n)
{
    float a = p->param;
    switch (p->kind) {
    case ACT_RELU:
        #pragma omp parallel for simd if (parallel: cnn_par_worth(n))
        for (int64_t i = 0; i < n; i++) dx[i] = s[i] <= 0.0f ? 0.0f : dy[i];
        break;
    case ACT_LEAKY:
        #pragma omp parallel for simd if (parallel: cnn_par_worth(n))
        for (int64_t i = 0; i < n; i++) dx[i] = s[i] > 0.0f ? dy[i] : a * dy[i];
        break;
    case ACT_ELU: /* PyTorch's `x <= 0 ? ... : dy`: a NaN passes its gradient, as in relu */
        #pragma omp parallel for if (cnn_par_worth(n))
        for (int64_t i = 0; i < n; i++) dx[i] = s[i] <= 0.0f ? dy[i] * a * expf(s[i]) : dy[i];
        break;
    case ACT_SIGMOID:
        #pragma omp parallel for simd if (parallel: cnn_par_worth(n))
        for (int64_t i = 0; i < n; i++) dx[i] = dy[i] * s[i] * (1.0f - s[i]);
        break;
    case ACT_TANH:
        #pragma omp parallel for simd if (parallel: cnn_par_worth(n))
        for (int64_t i = 0; i < n; i++) dx[i] = dy[i] * (1.0f - s[i] * s[i]);
        break;
    }
}

/* dx (new, the input's shape and device) from the saved tensor s and dy, both contiguous. */
static cnn_status act_grad(const act_params *p, const cnn_tensor *s, const cnn_tensor *dy,
                           cnn_shape in_shape, cnn_device in_device, cnn_tensor **dx)
{
    CNN_ASSERT(cnn_tensor_is_contiguous(s) && cnn_tensor_is_contiguous(dy));
    CNN_TRY(cnn_tensor_empty(in_shape, CNN_F32, in_device, dx));
    int64_t n = cnn_shape_numel(s->shape);
#if CNN_WITH_CUDA
    if (cnn_on_cuda(s)) {
        cnn_status st = cnn_cuda_activation_backward(cnn_ctx(), (int)p->kind, p->param,
                                                     cnn_f32(s), cnn_f32(dy), cnn_f32(*dx), n);
        if (st != CNN_OK) cnn_tensor_free(dx);
        return st;
    }
#endif
    act_backward_cpu(p, cnn_f32(s), cnn_f32(dy), cnn_f32(*dx), n);
    return CNN_OK;
}

static cnn_status act_backward(cnn_node *node, const cnn_tensor *dy, cnn_tensor **dx)
{
    CNN_ASSERT(node->n_saved == 1);
    return act_grad((const act_params *)node->params, node->saved[0], dy, node->in[0].shape,
                    node->in[0].device, &dx[0]);
}

cnn_status cnn_relu_grad(const cnn_tensor *y, const cnn_tensor *dy, cnn_tensor **dx)
{
    const act_params p = {ACT_RELU, 0.0f, true};
    return act_grad(&p, y, dy, y->shape, y->device, dx);
}

static cnn_status activation(const char *op, act_kind kind, float param, const cnn_tensor *x,
                             cnn_tensor **y)
{
    CNN_CHECK(y, CNN_ERR_INVALID_ARG, "%s: y is NULL", op);
    *y = NULL;
    CNN_TRY(cnn_check_f32(op, "x", x));
    CNN_CHECK(isfinite(param), CNN_ERR_INVALID_ARG, "%s: %s %g is not finite", op,
              kind == ACT_LEAKY ? "negative_slope" : "alpha", (double)param);
    /* elu's backward reads x (see act_backward_cpu), and so does leaky_relu's with a negative
     * slope, which breaks the sign correspondence that lets the others read y. */
    act_params p = {kind, param, !(kind == ACT_ELU || (kind == ACT_LEAKY && param < 0.0f))};
    cnn_status st = CNN_OK;
    cnn_tensor *xc = NULL;
    CNN_TRYG(cnn_contig(x, &xc));
    CNN_TRYG(cnn_tensor_empty_for(op, x->shape, CNN_F32, x->device, y));
#if CNN_WITH_CUDA
    if (cnn_on_cuda(x))
        CNN_TRYG(cnn_cuda_activation_forward(cnn_ctx(), (int)kind, param, cnn_f32(xc), cnn_f32(*y),
                                             cnn_shape_numel(x->shape)));
    else
#endif
        act_forward_cpu(kind, param, cnn_f32(xc), cnn_f32(*y), cnn_shape_numel(x->shape));
    if (cnn_should_record(&x, 1)) {
        cnn_node *node = NULL;
        CNN_TRYG(cnn_tape_record(op, act_backward, *y, &x, 1, &p, sizeof p, &node));
        cnn_node_save(node, p.saved_is_y ? *y : xc);
    }
done:
    cnn_tensor_free(&xc);
    if (st != CNN_OK) cnn_tensor_free(y);
    return st;
}

cnn_status cnn_relu(const cnn_tensor *x, cnn_tensor **y)
{
    return activation("relu", ACT_RELU, 0.0f, x, y);
}

cnn_status cnn_leaky_relu(const cnn_tensor *x, float negative_slope, cnn_tensor **y)
{
    return activation("leaky_relu", ACT_LEAKY, negative_slope, x, y);
}

cnn_status cnn_elu(const cnn_tensor *x, float alpha, cnn_tensor **y)
{
    return activation("elu", ACT_ELU, alpha, x, y);
}

cnn_status cnn_sigmoid(const cnn_tensor *x, cnn_tensor **y)
{
    return activation("sigmoid", ACT_SIGMOID, 0.0f, x, y);
}

cnn_status cnn_tanh(const cnn_tensor *x, cnn_tensor **y)
{
    return activation("tanh", ACT_TANH, 0.0f, x, y);
}
