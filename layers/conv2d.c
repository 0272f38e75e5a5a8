/* conv2d.c — 2-D convolution as torch.nn.functional.conv2d, and conv + bias + residual + ReLU
 * fused: shape rules, the backend choice (the CPU kernels of conv2d_cpu.c; for CUDA tensors
 * cuDNN or the hand-written kernels) and autograd (dx, dw, db). No GPU code here (that is
 * cuda/conv2d.cu and cuda/conv2d_cudnn.c), no CPU kernel; nothing kept between calls. */
#include "conv2d_cpu.h"

#include <limits.h>
#if CNN_WITH_CUDA
#include <stdatomic.h>

#include "../cuda/cuda_api.h"
#endif

/* ---- backend choice ------------------------------------------------------------------------
 * CPU tensors: conv2d_cpu.c. CUDA tensors: cuDNN when built and preferred (AUTO / CUDNN),
 * else, and wherever cuDNN declines (CNN_ERR_UNSUPPORTED), the hand-written cuda/conv2d.cu.
 * Every path saves x and w, so one backward function serves every device. */
enum { PASS_FORWARD, PASS_DATA, PASS_FILTER };

#if CNN_WITH_CUDA
/* forward: (x, w, epilogue e) -> out = y; data: (dy, w) -> out = dx; filter: (dy, x) -> dw, db.
 * The hand-written forward applies the epilogue as it stores; after a cuDNN forward, one more
 * kernel does (bias, residual and ReLU in one pass), or cuDNN adds a lone bias. */
static cnn_status run_gpu(int pass, const conv_geom *g, const float *a, const float *b,
                          const conv_epi *e, float *out, float *db)
{
    cnn_cuda_conv c = {.n = g->n, .c = g->c, .h = g->h, .w = g->w, .k = g->k, .r = g->r,
                       .s = g->s, .p = g->p, .q = g->q, .cg = g->cg, .kg = g->kg, .sh = g->sh,
                       .sw = g->sw, .ph = g->ph, .pw = g->pw, .dh = g->dh, .dw = g->dw,
                       .groups = g->groups};
    cnn_context *ctx = cnn_ctx();
    const cnn_cuda_epilogue epi = e ? (cnn_cuda_epilogue){e->b, e->z, e->relu}
                                    : (cnn_cuda_epilogue){0};
#if CNN_WITH_CUDNN
    cnn_backend pref = cnn_get_backend();
    if (pref == CNN_BACKEND_AUTO || pref == CNN_BACKEND_CUDNN) {
        const bool after = epi.z || epi.relu;
        const float *bias = after ? NULL : epi.b;
        cnn_status st =
            pass == PASS_FORWARD ? cnn_cudnn_conv2d_forward(ctx, &c, a, b, bias, out)
            : pass == PASS_DATA  ? cnn_cudnn_conv2d_backward_data(ctx, &c, a, b, out)
                                 : cnn_cudnn_conv2d_backward_filter(ctx, &c, a, b, out, db);
        if (st == CNN_OK && pass == PASS_FORWARD && after)
            st = cnn_cuda_conv2d_epilogue(ctx, &c, &epi, out);
        if (st != CNN_ERR_UNSUPPORTED) return st;
        /* Said once per process; the message is dropped, as the hand-written kernel serves. */
        static atomic_flag logged = ATOMIC_FLAG_INIT;
        if (!atomic_flag_test_and_set(&logged))
            cnn_log_debug("conv2d: %s; using the hand-written CUDA kernel", cnn_last_error());
        cnn_clear_error();
    }
#endif
    return pass == PASS_FORWARD ? cnn_cuda_conv2d_forward_fused(ctx, &c, a, b, &epi, out)
           : pass == PASS_DATA  ? cnn_cuda_conv2d_backward_data(ctx, &c, a, b, out)
                                : cnn_cuda_conv2d_backward_filter(ctx, &c, a, b, out, db);
}
#endif

/* x: (N, C, H, W), w: (K, Cg, R, S) -> y: (N, K, P, Q) = act(conv + b + z), on the CPU or the
 * GPU. */
static cnn_status run_forward(const conv_geom *g, bool gpu, const float *x, const float *w,
                              const conv_epi *e, float *y)
{
#if CNN_WITH_CUDA
    if (gpu) return run_gpu(PASS_FORWARD, g, x, w, e, y, NULL);
#else
    (void)gpu;
#endif
    return cnn_conv2d_cpu_forward(g, x, w, e, y);
}

/* dy: (N, K, P, Q), w: (K, Cg, R, S) -> dx: (N, C, H, W). */
static cnn_status run_backward_data(const conv_geom *g, bool gpu, const float *dy,
                                    const float *w, float *dx)
{
#if CNN_WITH_CUDA
    if (gpu) return run_gpu(PASS_DATA, g, dy, w, NULL, dx, NULL);
#else
    (void)gpu;
#endif
    return cnn_conv2d_cpu_backward_data(g, dy, w, dx);
}

/* dy: (N, K, P, Q), x: (N, C, H, W) -> dw: (K, Cg, R, S) and db: (K), either may be NULL. */
static cnn_status run_backward_filter(const conv_geom *g, bool gpu, const float *dy,
                                      const float *x, float *dw, float *db)
{
#if CNN_WITH_CUDA
    if (gpu) return run_gpu(PASS_FILTER, g, dy, x, NULL, dw, db);
#else
    (void)gpu;
#endif
    return cnn_conv2d_cpu_backward_filter(g, dy, x, dw, db);
}

/* ---- autograd ----------------------------------------------------------------------------- */
/* dx[0..2] (x, w, b, those the node wants) from the conv's output gradient dy; the node saved
 * x and w first. */
static cnn_status conv_grads(const cnn_node *nd, const conv_geom *g, const cnn_tensor *dy,
                             cnn_tensor **dx)
{
    const cnn_tensor *x = nd->saved[0], *w = nd->saved[1];
    cnn_status st = CNN_OK;
    if (nd->in[0].needs_grad) {
        CNN_TRYG(cnn_tensor_empty(x->shape, CNN_F32, x->device, &dx[0]));
        CNN_TRYG(run_backward_data(g, cnn_on_cuda(x), cnn_f32(dy), cnn_f32(w), cnn_f32(dx[0])));
    }
    bool want_w = nd->in[1].needs_grad, want_b = nd->n_inputs > 2 && nd->in[2].needs_grad;
    if (want_w) CNN_TRYG(cnn_tensor_empty(w->shape, CNN_F32, w->device, &dx[1]));
    if (want_b) CNN_TRYG(cnn_tensor_empty(CNN_SHAPE(g->k), CNN_F32, w->device, &dx[2]));
    if (want_w || want_b)
        CNN_TRYG(run_backward_filter(g, cnn_on_cuda(x), cnn_f32(dy), cnn_f32(x),
                                     want_w ? cnn_f32(dx[1]) : NULL,
                                     want_b ? cnn_f32(dx[2]) : NULL));
done:
    return st;
}

static cnn_status conv2d_backward(cnn_node *nd, const cnn_tensor *dy, cnn_tensor **dx)
{
    conv_geom g;
    memcpy(&g, nd->params, sizeof g);
    return conv_grads(nd, &g, dy, dx);
}

/* The fused op's node: inputs (x, w, b, z); saved x, w, and y when there is a ReLU. */
typedef struct fused_node {
    conv_geom g;
    bool relu;
} fused_node;
_Static_assert(sizeof(fused_node) <= CNN_NODE_PARAM_BYTES, "fused_node must fit a tape node");

static cnn_status conv2d_fused_backward(cnn_node *nd, const cnn_tensor *dy, cnn_tensor **dx)
{
    fused_node f;
    memcpy(&f, nd->params, sizeof f);
    cnn_tensor *dpre = NULL; /* the gradient before the ReLU: of conv + b + z */
    if (f.relu) CNN_TRY(cnn_relu_grad(nd->saved[2], dy, &dpre));
    const cnn_tensor *d = f.relu ? dpre : dy;
    cnn_status st = conv_grads(nd, &f.g, d, dx);
    if (st == CNN_OK && nd->in[3].needs_grad) dx[3] = cnn_tensor_retain((cnn_tensor *)d);
    cnn_tensor_free(&dpre);
    return st;
}

/* ---- shape rules -------------------------------------------------------------------------- */
static cnn_status conv_resolve(const cnn_tensor *x, const cnn_tensor *w, const cnn_tensor *b,
                               const cnn_conv2d_params *p, conv_geom *g)
{
    static const cnn_conv2d_params defaults;
    if (!p) p = &defaults;
    CNN_TRY(cnn_check_f32("conv2d", "x", x));
    CNN_TRY(cnn_check_f32("conv2d", "w", w));
    if (b) CNN_TRY(cnn_check_f32("conv2d", "b", b));
    CNN_TRY(cnn_check_same_device("conv2d", x, "x", w, "w"));
    CNN_TRY(cnn_check_same_device("conv2d", x, "x", b, "b"));
    CNN_CHECK(x->shape.ndim == 4, CNN_ERR_SHAPE, "conv2d: input must be 4-D (N, C, H, W), got %s",
              cnn_shape_of(x));
    CNN_CHECK(w->shape.ndim == 4, CNN_ERR_SHAPE,
              "conv2d: weight must be 4-D (K, C/groups, R, S), got %s", cnn_shape_of(w));
    for (int i = 0; i < 2; i++) {
        CNN_CHECK(p->stride[i] >= 0 && p->padding[i] >= 0 && p->dilation[i] >= 0,
                  CNN_ERR_INVALID_ARG,
                  "conv2d: stride (%d, %d), padding (%d, %d) and dilation (%d, %d) must not be "
                  "negative", p->stride[0], p->stride[1], p->padding[0], p->padding[1],
                  p->dilation[0], p->dilation[1]);
    }
    CNN_CHECK(p->groups >= 0, CNN_ERR_INVALID_ARG, "conv2d: groups %d is negative", p->groups);
    *g = (conv_geom){
        .n = x->shape.d[0], .c = x->shape.d[1], .h = x->shape.d[2], .w = x->shape.d[3],
        .k = w->shape.d[0], .r = w->shape.d[2], .s = w->shape.d[3],
        .sh = p->stride[0] ? p->stride[0] : 1, .sw = p->stride[1] ? p->stride[1] : 1,
        .ph = p->padding[0], .pw = p->padding[1],
        .dh = p->dilation[0] ? p->dilation[0] : 1, .dw = p->dilation[1] ? p->dilation[1] : 1,
        .groups = p->groups ? p->groups : 1,
    };
    g->cg = w->shape.d[1];
    CNN_CHECK(g->k > 0 && g->cg > 0 && g->r > 0 && g->s > 0, CNN_ERR_SHAPE,
              "conv2d: weight %s has an empty dimension", cnn_shape_of(w));
    CNN_CHECK(g->k % g->groups == 0, CNN_ERR_SHAPE,
              "conv2d: weight %s has %lld output channels, not divisible by groups %d",
              cnn_shape_of(w), (long long)g->k, g->groups);
    CNN_CHECK(g->c == g->cg * g->groups, CNN_ERR_SHAPE,
              "conv2d: input %s has %lld channels, weight %s expects %lld (groups %d)",
              cnn_shape_of(x), (long long)g->c, cnn_shape_of(w), (long long)(g->cg * g->groups),
              g->groups);
    g->kg = g->k / g->groups;
    if (b)
        CNN_CHECK(b->shape.ndim == 1 && b->shape.d[0] == g->k, CNN_ERR_SHAPE,
                  "conv2d: bias %s does not match weight %s (expected (%lld))", cnn_shape_of(b),
                  cnn_shape_of(w), (long long)g->k);
    /* In int64: padding and dilation are ints, and 2 * padding may not fit one. */
    const int64_t span_h = g->h + 2 * (int64_t)g->ph - (int64_t)g->dh * (g->r - 1) - 1;
    const int64_t span_w = g->w + 2 * (int64_t)g->pw - (int64_t)g->dw * (g->s - 1) - 1;
    g->p = span_h / g->sh + 1;
    g->q = span_w / g->sw + 1;
    /* C's division truncates toward zero, so a negative numerator must be caught first. */
    CNN_CHECK(span_h >= 0 && span_w >= 0, CNN_ERR_SHAPE,
              "conv2d: input %s is smaller than the weight %s's window (padding (%d, %d), "
              "dilation (%d, %d)): the output would be empty", cnn_shape_of(x), cnn_shape_of(w),
              g->ph, g->pw, g->dh, g->dw);
    const double patch = (double)g->cg * (double)g->r * (double)g->s; /* exact below 2^53 */
    CNN_CHECK(patch * (double)g->p * (double)g->q < INT_MAX && (double)g->k * patch < INT_MAX,
              CNN_ERR_UNSUPPORTED,
              "conv2d: input %s with weight %s (padding (%d, %d), stride (%d, %d), dilation "
              "(%d, %d)) gives a %lld x %lld output: per image, its unfolded input (%.0f x %.0f "
              "values) or its weight (%.0f) would not fit one GEMM's 2^31 - 1 elements",
              cnn_shape_of(x), cnn_shape_of(w), g->ph, g->pw, g->sh, g->sw, g->dh, g->dw,
              (long long)g->p, (long long)g->q, patch, (double)g->p * (double)g->q,
              (double)g->k * patch);
    return CNN_OK;
}

/* The forward of cnn_conv2d (z NULL, act NONE) and cnn_conv2d_fused: resolved shapes, one
 * output written with the epilogue, and a node that saves what the backward needs. */
static cnn_status conv2d_run(const char *op, const cnn_tensor *x, const cnn_tensor *w,
                             const cnn_tensor *b, const cnn_tensor *z, bool relu,
                             const cnn_conv2d_params *p, cnn_tensor **y)
{
    CNN_CHECK(y, CNN_ERR_INVALID_ARG, "%s: y is NULL", op);
    *y = NULL;
    conv_geom g;
    CNN_TRY(conv_resolve(x, w, b, p, &g));
    if (z) {
        CNN_TRY(cnn_check_f32(op, "z", z));
        CNN_TRY(cnn_check_same_device(op, x, "x", z, "z"));
        cnn_shape ys = CNN_SHAPE(g.n, g.k, g.p, g.q);
        CNN_CHECK(cnn_shape_equal(z->shape, ys), CNN_ERR_SHAPE,
                  "%s: z %s does not match the output (%lld, %lld, %lld, %lld)", op,
                  cnn_shape_of(z), (long long)g.n, (long long)g.k, (long long)g.p,
                  (long long)g.q);
    }
    cnn_status st = CNN_OK;
    cnn_tensor *xc = NULL, *wc = NULL, *bc = NULL, *zc = NULL;
    CNN_TRYG(cnn_contig(x, &xc));
    CNN_TRYG(cnn_contig(w, &wc));
    if (b) CNN_TRYG(cnn_contig(b, &bc));
    if (z) CNN_TRYG(cnn_contig(z, &zc));
    CNN_TRYG(cnn_tensor_empty_for(op, CNN_SHAPE(g.n, g.k, g.p, g.q), CNN_F32, x->device, y));
    const conv_epi e = {bc ? cnn_f32(bc) : NULL, zc ? cnn_f32(zc) : NULL, relu};
    CNN_TRYG(run_forward(&g, cnn_on_cuda(x), cnn_f32(xc), cnn_f32(wc), &e, cnn_f32(*y)));
    const cnn_tensor *in[4] = {x, w, b, z};
    const bool fused = z || relu;
    if (cnn_should_record(in, fused ? 4 : 3)) {
        cnn_node *nd = NULL;
        if (fused) {
            fused_node f = {g, relu};
            CNN_TRYG(cnn_tape_record(op, conv2d_fused_backward, *y, in, 4, &f, sizeof f, &nd));
        } else {
            CNN_TRYG(cnn_tape_record(op, conv2d_backward, *y, in, 3, &g, sizeof g, &nd));
        }
        cnn_node_save(nd, xc);
        cnn_node_save(nd, wc);
        if (relu) cnn_node_save(nd, *y);
    }
done:
    cnn_tensor_free(&xc);
    cnn_tensor_free(&wc);
    cnn_tensor_free(&bc);
    cnn_tensor_free(&zc);
    if (st != CNN_OK) cnn_tensor_free(y);
    return st;
}

cnn_status cnn_conv2d(const cnn_tensor *x, const cnn_tensor *w, const cnn_tensor *b,
                      const cnn_conv2d_params *p, cnn_tensor **y)
{
    return conv2d_run("conv2d", x, w, b, NULL, false, p, y);
}

cnn_status cnn_conv2d_fused(const cnn_tensor *x, const cnn_tensor *w, const cnn_tensor *b,
                            const cnn_tensor *z, cnn_activation act, const cnn_conv2d_params *p,
                            cnn_tensor **y)
{
    if (y) *y = NULL;
    CNN_CHECK(act == CNN_ACT_NONE || act == CNN_ACT_RELU, CNN_ERR_INVALID_ARG,
              "conv2d_fused: activation %d is not CNN_ACT_NONE (0) or CNN_ACT_RELU (1)", (int)act);
    return conv2d_run("conv2d_fused", x, w, b, z, act == CNN_ACT_RELU, p, y);
}
