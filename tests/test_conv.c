/* test_conv.c — cnn_conv2d: forward against a naive direct convolution on awkward random
 * shapes, finite-difference gradients of x, w and b for every kind of conv (stride, padding,
 * dilation, groups, depthwise, 1x1), and the fused conv (+z, +ReLU) against the separate ops.
 * Refused shapes and other edges: test_conv_edges.c. */
#include "gradcheck.h"

typedef struct conv_case {
    const char *name;
    int n, c, h, w, k, r, s;
    cnn_conv2d_params p;
    int bias;
} conv_case;

/* Sets *pp, *qq to P, Q; then calls f(ctx, yi, xi, wi), unless f is NULL, for each product
 * x[xi] * w[wi] the conv adds into y[yi], indices into x (N, C, H, W), w (K, C/groups, R, S) and
 * y (N, K, P, Q), in the order of a naive loop nest. */
static void conv_visit(const conv_case *cc, int *pp, int *qq, void (*f)(void *, int, int, int),
                       void *ctx)
{
    int sh = cc->p.stride[0] ? cc->p.stride[0] : 1, sw = cc->p.stride[1] ? cc->p.stride[1] : 1;
    int dh = cc->p.dilation[0] ? cc->p.dilation[0] : 1;
    int dw = cc->p.dilation[1] ? cc->p.dilation[1] : 1;
    int ph = cc->p.padding[0], pw = cc->p.padding[1], gr = cc->p.groups ? cc->p.groups : 1;
    int P = (cc->h + 2 * ph - dh * (cc->r - 1) - 1) / sh + 1;
    int Q = (cc->w + 2 * pw - dw * (cc->s - 1) - 1) / sw + 1;
    int cg = cc->c / gr, kg = cc->k / gr;
    *pp = P;
    *qq = Q;
    if (!f) return;
    for (int n = 0; n < cc->n; n++)
        for (int k = 0; k < cc->k; k++)
            for (int p = 0; p < P; p++)
                for (int q = 0; q < Q; q++) {
                    int yi = ((n * cc->k + k) * P + p) * Q + q;
                    for (int c = 0; c < cg; c++)
                        for (int r = 0; r < cc->r; r++)
                            for (int s = 0; s < cc->s; s++) {
                                int hh = p * sh - ph + r * dh, ww = q * sw - pw + s * dw;
                                if (hh < 0 || hh >= cc->h || ww < 0 || ww >= cc->w) continue;
                                int ci = (k / kg) * cg + c;
                                f(ctx, yi, ((n * cc->c + ci) * cc->h + hh) * cc->w + ww,
                                  ((k * cg + c) * cc->r + r) * cc->s + s);
                            }
                }
}

typedef struct {
    const float *x, *w, *dy;
    double *y, *dx, *dw;
} naive_bufs;

static void fwd_product(void *ctx, int yi, int xi, int wi)
{
    naive_bufs *b = ctx;
    b->y[yi] += (double)b->x[xi] * b->w[wi];
}

/* x: (N, C, H, W), w: (K, C/groups, R, S), b: (K) or NULL -> y: (N, K, P, Q), in double. */
static void naive_conv(const conv_case *cc, const float *x, const float *w, const float *b,
                       float *y, int *pp, int *qq)
{
    conv_visit(cc, pp, qq, NULL, NULL);
    int64_t len = (int64_t)cc->n * cc->k * *pp * *qq, per = (int64_t)*pp * *qq;
    double *acc = malloc((size_t)(len ? len : 1) * sizeof *acc);
    if (!acc) return;
    for (int64_t i = 0; i < len; i++) acc[i] = b ? b[(i / per) % cc->k] : 0;
    naive_bufs nb = {.x = x, .w = w, .y = acc};
    conv_visit(cc, pp, qq, fwd_product, &nb);
    for (int64_t i = 0; i < len; i++) y[i] = (float)acc[i];
    free(acc);
}

/* Runs cnn_conv2d and the naive reference on the same random inputs; 1 when they agree. */
static int forward_matches(const conv_case *cc)
{
    int gr = cc->p.groups ? cc->p.groups : 1;
    cnn_tensor *x = rand_tensor(CNN_SHAPE(cc->n, cc->c, cc->h, cc->w), -1, 1, 0);
    cnn_tensor *w = rand_tensor(CNN_SHAPE(cc->k, cc->c / gr, cc->r, cc->s), -1, 1, 0);
    cnn_tensor *b = cc->bias ? rand_tensor(CNN_SHAPE(cc->k), -1, 1, 0) : NULL;
    cnn_tensor *y = NULL, *ref = NULL;
    int ok = 0, P, Q;
    if (cnn_conv2d(x, w, b, &cc->p, &y) != CNN_OK) {
        printf("    %s: conv2d failed: %s\n", cc->name, cnn_last_error());
        goto done;
    }
    float *yr = malloc((size_t)cnn_tensor_numel(y) * sizeof *yr);
    naive_conv(cc, cnn_tensor_cdata(x), cnn_tensor_cdata(w), b ? cnn_tensor_cdata(b) : NULL, yr,
               &P, &Q);
    cnn_shape want = CNN_SHAPE(cc->n, cc->k, P, Q);
    if (cnn_tensor_ndim(y) == 4 && cnn_tensor_dim(y, 2) == P && cnn_tensor_dim(y, 3) == Q &&
        cnn_tensor_from_data(want, yr, CNN_CPU, &ref) == CNN_OK)
        ok = tensors_close(cc->name, y, ref, 1e-4f, 1e-4f);
    else
        printf("    %s: output shape differs from (%d, %d, %d, %d)\n", cc->name, cc->n, cc->k, P,
               Q);
    free(yr);
done:
    cnn_tensor_free(&x);
    cnn_tensor_free(&w);
    cnn_tensor_free(&b);
    cnn_tensor_free(&y);
    cnn_tensor_free(&ref);
    return ok;
}

static cnn_status f_conv(cnn_tensor *const *in, void *ud, cnn_tensor **y)
{
    return cnn_conv2d(in[0], in[1], in[2], (const cnn_conv2d_params *)ud, y);
}

/* Gradchecks x, w and (when the case has one) b; the conv is linear in each, so a large step
 * is exact and keeps float rounding out of the comparison. */
static int grads_match_n(const conv_case *cc, int x_grad, int w_grad, int max_checks)
{
    int gr = cc->p.groups ? cc->p.groups : 1;
    cnn_tensor *in[3] = {
        rand_tensor(CNN_SHAPE(cc->n, cc->c, cc->h, cc->w), -1, 1, x_grad),
        rand_tensor(CNN_SHAPE(cc->k, cc->c / gr, cc->r, cc->s), -1, 1, w_grad),
        cc->bias ? rand_tensor(CNN_SHAPE(cc->k), -1, 1, 1) : NULL,
    };
    gc_opts o = {.eps = 0.25f, .atol = 1e-3f, .rtol = 1e-3f, .max_checks = max_checks};
    int ok = gradcheck(cc->name, f_conv, in, 3, (void *)&cc->p, &o);
    for (int i = 0; i < 3; i++) cnn_tensor_free(&in[i]);
    return ok;
}

static int grads_match(const conv_case *cc, int x_grad, int w_grad)
{
    return grads_match_n(cc, x_grad, w_grad, 0);
}

static const conv_case grad_cases[] = {
    {"3x3 pad 1", 2, 3, 6, 6, 4, 3, 3, {.padding = {1, 1}}, 1},
    {"stride 2", 2, 3, 7, 7, 4, 3, 3, {.stride = {2, 2}, .padding = {1, 1}}, 1},
    {"pad (1, 0)", 2, 2, 5, 6, 3, 3, 3, {.padding = {1, 0}}, 1},
    {"stride (1, 2) pad (0, 2)", 1, 2, 5, 6, 3, 3, 3, {.stride = {1, 2}, .padding = {0, 2}}, 1},
    {"dilation 2", 2, 2, 7, 7, 3, 3, 3, {.padding = {2, 2}, .dilation = {2, 2}}, 1},
    {"dilation (2, 1)", 1, 2, 7, 6, 2, 3, 2, {.padding = {1, 0}, .dilation = {2, 1}}, 1},
    {"groups 2", 2, 4, 5, 5, 6, 3, 3, {.padding = {1, 1}, .groups = 2}, 1},
    {"depthwise", 2, 3, 5, 5, 3, 3, 3, {.padding = {1, 1}, .groups = 3}, 1},
    {"depthwise x2 stride 2", 2, 3, 6, 5, 6, 3, 3,
     {.stride = {2, 2}, .padding = {1, 1}, .groups = 3}, 1},
    {"depthwise x2 dilation (2, 1) stride (1, 2)", 2, 2, 7, 6, 4, 3, 3,
     {.stride = {1, 2}, .padding = {2, 1}, .dilation = {2, 1}, .groups = 2}, 1},
    {"1 input channel", 2, 1, 6, 5, 3, 3, 2, {.padding = {1, 0}}, 1},
    {"1x1", 2, 5, 4, 4, 3, 1, 1, {.groups = 1}, 1},
    {"1x1 stride 2", 2, 5, 5, 4, 3, 1, 1, {.stride = {2, 2}}, 1},
    {"1x1 groups 5", 2, 5, 3, 4, 5, 1, 1, {.groups = 5}, 1},
    {"1x1 groups 2", 2, 4, 3, 4, 6, 1, 1, {.groups = 2}, 1},
    {"pad (3, 2) wider than the window", 1, 2, 4, 4, 3, 3, 3, {.padding = {3, 2}}, 1},
    {"no bias", 2, 3, 5, 5, 4, 3, 3, {.padding = {1, 1}}, 0},
    {"batch 1", 1, 3, 6, 6, 4, 3, 3, {.padding = {1, 1}}, 1},
    {"odd 7x5, 3x2 kernel", 2, 3, 7, 5, 4, 3, 2, {.stride = {2, 1}, .padding = {1, 1}}, 1},
};

TEST(conv2d_gradcheck_all_kinds)
{
    for (size_t i = 0; i < sizeof grad_cases / sizeof *grad_cases; i++) {
        if (!grads_match(&grad_cases[i], 1, 1))
            cnn_test_fail(__FILE__, __LINE__, "gradcheck of conv2d '%s'", grad_cases[i].name);
    }
}

TEST(conv2d_gradcheck_partial_requires_grad)
{
    /* Only the inputs that require grad get one; the others' backward work is skipped. */
    conv_case cc = {"x only", 2, 3, 5, 5, 4, 3, 3, {.padding = {1, 1}}, 0};
    CHECK(grads_match(&cc, 1, 0));
    cc.name = "w only";
    CHECK(grads_match(&cc, 0, 1));
}

/* Big enough (> 4 MFLOP, several samples) to take the multi-threaded batch path, where each
 * thread has its own im2col buffer and its own dw partial sum. */
static const conv_case threaded_cases[] = {
    {"threaded 3x3 pad 1", 4, 16, 16, 16, 16, 3, 3, {.padding = {1, 1}}, 1},
    {"threaded 1x1", 4, 64, 16, 16, 32, 1, 1, {.groups = 1}, 1},
    {"threaded groups 4 stride 2", 4, 32, 31, 29, 32, 3, 3,
     {.stride = {2, 2}, .padding = {1, 1}, .groups = 4}, 1},
    {"threaded depthwise x2", 4, 32, 32, 32, 64, 3, 3, {.padding = {1, 1}, .groups = 32}, 1},
};

/* Forward against the naive conv and a 12-point gradcheck of x and w, for each case. */
static void check_cases(const conv_case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!forward_matches(&cases[i]))
            cnn_test_fail(__FILE__, __LINE__, "forward of conv2d '%s'", cases[i].name);
        if (!grads_match_n(&cases[i], 1, 1, 12))
            cnn_test_fail(__FILE__, __LINE__, "gradcheck of conv2d '%s'", cases[i].name);
    }
}

TEST(conv2d_gradcheck_threaded)
{
    check_cases(threaded_cases, sizeof threaded_cases / sizeof *threaded_cases);
}

/* Small output maps: the CPU kernels put several samples side by side in one sgemm (blocks of
 * up to 128 columns, at least one block per thread), so a batch ends in a shorter block. */
static const conv_case blocked_cases[] = {
    {"blocked 3x3 on 4x4 maps", 7, 8, 4, 4, 6, 3, 3, {.padding = {1, 1}}, 1},
    {"blocked 1x1", 7, 6, 5, 5, 5, 1, 1, {.groups = 1}, 1},
    {"blocked 1x1 stride 2", 7, 6, 7, 7, 5, 1, 1, {.stride = {2, 2}}, 1},
    {"blocked groups 2 stride 2", 5, 4, 6, 6, 4, 3, 3,
     {.stride = {2, 2}, .padding = {1, 1}, .groups = 2}, 0},
};

TEST(conv2d_small_maps_blocked_samples)
{
    check_cases(blocked_cases, sizeof blocked_cases / sizeof *blocked_cases);
}

static void grad_products(void *ctx, int yi, int xi, int wi)
{
    naive_bufs *b = ctx;
    b->dx[xi] += (double)b->dy[yi] * b->w[wi];
    b->dw[wi] += (double)b->dy[yi] * b->x[xi];
}

/* dx and dw of naive_conv for the output gradient dy, by the adjoint of its loops, in double
 * (dx, dw zeroed by the caller). */
static void naive_conv_grads(const conv_case *cc, const float *x, const float *w, const float *dy,
                             double *dx, double *dw)
{
    int P, Q;
    naive_bufs nb = {.x = x, .w = w, .dy = dy, .dx = dx, .dw = dw};
    conv_visit(cc, &P, &Q, grad_products, &nb);
}

/* A copy in float of n doubles as a tensor of shape s. */
static cnn_tensor *tensor_of_doubles(cnn_shape s, const double *v, int64_t n)
{
    float *f = malloc((size_t)n * sizeof *f);
    cnn_tensor *t = NULL;
    for (int64_t i = 0; f && i < n; i++) f[i] = (float)v[i];
    if (f && cnn_tensor_from_data(s, f, CNN_CPU, &t) != CNN_OK) t = NULL;
    free(f);
    return t;
}

/* Every element of dx and dw (for a random output gradient) against naive_conv_grads, where a
 * gradcheck samples only some; 1 when they agree. */
static int grads_match_naive(const conv_case *cc)
{
    int gr = cc->p.groups ? cc->p.groups : 1, ok = 0;
    cnn_shape xs = CNN_SHAPE(cc->n, cc->c, cc->h, cc->w);
    cnn_shape ws = CNN_SHAPE(cc->k, cc->c / gr, cc->r, cc->s);
    cnn_tensor *x = rand_tensor(xs, -1, 1, 1), *w = rand_tensor(ws, -1, 1, 1);
    cnn_tensor *y = NULL, *dy = NULL, *dx_ref = NULL, *dw_ref = NULL;
    double *dx = NULL, *dw = NULL;
    if (cnn_conv2d(x, w, NULL, &cc->p, &y) != CNN_OK) {
        printf("    %s: conv2d failed: %s\n", cc->name, cnn_last_error());
        goto done;
    }
    dy = rand_tensor(CNN_SHAPE(cc->n, cc->k, cnn_tensor_dim(y, 2), cnn_tensor_dim(y, 3)), -1, 1,
                     0);
    if (cnn_backward_with_grad(y, dy) != CNN_OK || !cnn_tensor_grad(x) || !cnn_tensor_grad(w)) {
        printf("    %s: backward failed: %s\n", cc->name, cnn_last_error());
        goto done;
    }
    dx = calloc((size_t)cnn_tensor_numel(x), sizeof *dx);
    dw = calloc((size_t)cnn_tensor_numel(w), sizeof *dw);
    if (!dx || !dw) goto done;
    naive_conv_grads(cc, cnn_tensor_cdata(x), cnn_tensor_cdata(w), cnn_tensor_cdata(dy), dx, dw);
    dx_ref = tensor_of_doubles(xs, dx, cnn_tensor_numel(x));
    dw_ref = tensor_of_doubles(ws, dw, cnn_tensor_numel(w));
    if (dx_ref && dw_ref) {
        char what[160];
        snprintf(what, sizeof what, "%s: dx", cc->name);
        ok = tensors_close(what, cnn_tensor_grad(x), dx_ref, 1e-4f, 1e-4f);
        snprintf(what, sizeof what, "%s: dw", cc->name);
        ok &= tensors_close(what, cnn_tensor_grad(w), dw_ref, 1e-4f, 1e-4f);
    }
done:
    free(dx);
    free(dw);
    cnn_tensor *all[] = {x, w, y, dy, dx_ref, dw_ref};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) cnn_tensor_free(&all[i]);
    return ok;
}

/* Paths the cases above leave out: the data gradient computed as a conv of dy (stride 1, 16 or
 * more input channels per group) with dilations and paddings that differ between the axes, and
 * depthwise filter gradients over batches of 8 samples and more (summed in blocks of 8). */
static const conv_case adjoint_cases[] = {
    {"dx as conv, dilation (2, 1) pad (2, 1)", 2, 16, 7, 8, 4, 3, 3,
     {.padding = {2, 1}, .dilation = {2, 1}}, 0},
    {"dx as conv, dilation (1, 3) pad (1, 2)", 1, 16, 6, 9, 3, 3, 3,
     {.padding = {1, 2}, .dilation = {1, 3}}, 0},
    {"dx as conv, 3x2 kernel pad (2, 0)", 2, 17, 5, 6, 5, 3, 2, {.padding = {2, 0}}, 0},
    {"dx as conv, groups 2 dilation (1, 2)", 2, 32, 6, 7, 6, 3, 3,
     {.padding = {1, 1}, .dilation = {1, 2}, .groups = 2}, 0},
    {"1x1 pad (1, 0), 16 channels", 2, 16, 4, 5, 3, 1, 1, {.padding = {1, 0}}, 0},
    {"depthwise batch 8", 8, 3, 5, 6, 3, 3, 3, {.padding = {1, 1}, .groups = 3}, 0},
    {"depthwise x2 batch 19 stride 2", 19, 2, 7, 6, 4, 3, 3,
     {.stride = {2, 2}, .padding = {1, 1}, .groups = 2}, 0},
};

TEST(conv2d_grads_match_naive_adjoint)
{
    for (size_t i = 0; i < sizeof adjoint_cases / sizeof *adjoint_cases; i++)
        if (!grads_match_naive(&adjoint_cases[i]))
            cnn_test_fail(__FILE__, __LINE__, "gradients of conv2d '%s'", adjoint_cases[i].name);
}

TEST(conv2d_forward_matches_naive_fixed)
{
    for (size_t i = 0; i < sizeof grad_cases / sizeof *grad_cases; i++)
        if (!forward_matches(&grad_cases[i]))
            cnn_test_fail(__FILE__, __LINE__, "forward of conv2d '%s'", grad_cases[i].name);
    conv_case big = {"resnet-like 3x3", 4, 16, 14, 13, 12, 3, 3, {.padding = {1, 1}}, 1};
    CHECK(forward_matches(&big));
    conv_case pw = {"resnet-like 1x1", 3, 24, 9, 11, 8, 1, 1, {.groups = 1}, 1};
    CHECK(forward_matches(&pw));
}

TEST(conv2d_forward_matches_naive_random)
{
    /* Awkward random geometries from a fixed-seed generator (independent of the tensor RNG). */
    unsigned st = 12345;
#define RND(lo, hi) ((int)((st = st * 1103515245u + 12345u) >> 16) % ((hi) - (lo) + 1) + (lo))
    int tried = 0;
    for (int it = 0; it < 200 && tried < 40; it++) {
        /* One draw per statement: the order of evaluation inside an initializer list is
         * unspecified, so gcc and clang would test different cases. */
        conv_case cc = {"random", 0, 0, 0, 0, 0, 0, 0, {.groups = 1}, 0};
        cc.n = RND(1, 3);
        cc.h = RND(1, 12);
        cc.w = RND(1, 12);
        cc.r = RND(1, 4);
        cc.s = RND(1, 4);
        cc.bias = RND(0, 1);
        int gr = RND(1, 3), cg = RND(1, 3), kg = RND(1, 3);
        cc.c = gr * cg;
        cc.k = gr * kg;
        cc.p.groups = gr;
        for (int i = 0; i < 2; i++) cc.p.stride[i] = RND(1, 3);
        for (int i = 0; i < 2; i++) cc.p.padding[i] = RND(0, 2);
        for (int i = 0; i < 2; i++) cc.p.dilation[i] = RND(1, 2);
        int dh = cc.p.dilation[0], dw = cc.p.dilation[1];
        if (cc.h + 2 * cc.p.padding[0] < dh * (cc.r - 1) + 1 ||
            cc.w + 2 * cc.p.padding[1] < dw * (cc.s - 1) + 1)
            continue;
        tried++;
        if (!forward_matches(&cc)) {
            cnn_test_fail(__FILE__, __LINE__,
                          "random conv2d: x (%d, %d, %d, %d) w (%d, %d, %d, %d) stride (%d, %d) "
                          "pad (%d, %d) dil (%d, %d) groups %d", cc.n, cc.c, cc.h, cc.w, cc.k, cg,
                          cc.r, cc.s, cc.p.stride[0], cc.p.stride[1], cc.p.padding[0],
                          cc.p.padding[1], dh, dw, gr);
            break;
        }
    }
#undef RND
    CHECK(tried >= 40);
}

/* ---- cnn_conv2d_fused: act(conv + b + z) as one op ------------------------------------------ */
/* The fused op against cnn_conv2d, cnn_add(z, .) and cnn_relu run in turn on the same inputs:
 * the output and every gradient (x, w, b, z, for a random output gradient) must be the same
 * bits. with_z / relu pick the epilogue. */
static int fused_matches_separate(const conv_case *cc, bool with_z, bool relu)
{
    int gr = cc->p.groups ? cc->p.groups : 1, ok = 1;
    cnn_tensor *x = rand_tensor(CNN_SHAPE(cc->n, cc->c, cc->h, cc->w), -1, 1, 1);
    cnn_tensor *w = rand_tensor(CNN_SHAPE(cc->k, cc->c / gr, cc->r, cc->s), -1, 1, 1);
    cnn_tensor *b = cc->bias ? rand_tensor(CNN_SHAPE(cc->k), -1, 1, 1) : NULL;
    cnn_tensor *conv = NULL, *sum = NULL, *ref = NULL, *y = NULL, *z = NULL, *dy = NULL;
    cnn_tensor *g_ref[4] = {NULL}, *leaves[4] = {x, w, b, NULL};
    char what[160];
#define STEP(e)                                                                                   \
    if ((e) != CNN_OK) {                                                                          \
        printf("    %s: %s failed: %s\n", cc->name, #e, cnn_last_error());                      \
        ok = 0;                                                                                   \
        goto done;                                                                                \
    }
    STEP(cnn_conv2d(x, w, b, &cc->p, &conv));
    if (with_z) {
        z = rand_tensor(cnn_tensor_shape(conv), -1, 1, 1);
        leaves[3] = z;
    }
    dy = rand_tensor(cnn_tensor_shape(conv), -1, 1, 0);
    /* the separate ops, then their gradients kept aside */
    if (with_z) {
        STEP(cnn_add(z, conv, &sum));
    } else {
        sum = cnn_tensor_retain(conv);
    }
    if (relu) {
        STEP(cnn_relu(sum, &ref));
    } else {
        ref = cnn_tensor_retain(sum);
    }
    STEP(cnn_backward_with_grad(ref, dy));
    for (int i = 0; i < 4; i++)
        if (leaves[i]) {
            STEP(cnn_tensor_clone(cnn_tensor_grad(leaves[i]), &g_ref[i]));
            cnn_tensor_zero_grad(leaves[i]);
        }
    STEP(cnn_conv2d_fused(x, w, b, z, relu ? CNN_ACT_RELU : CNN_ACT_NONE, &cc->p, &y));
    STEP(cnn_backward_with_grad(y, dy));
    snprintf(what, sizeof what, "fused %s (z %d, relu %d): y", cc->name, with_z, relu);
    ok &= tensors_close(what, y, ref, 0, 0);
    for (int i = 0; i < 4; i++)
        if (leaves[i]) {
            snprintf(what, sizeof what, "fused %s (z %d, relu %d): grad %d", cc->name, with_z,
                     relu, i);
            const cnn_tensor *g = cnn_tensor_grad(leaves[i]);
            ok &= g && tensors_close(what, g, g_ref[i], 0, 0);
        }
#undef STEP
done:
    for (int i = 0; i < 4; i++) {
        cnn_tensor_free(&g_ref[i]);
        cnn_tensor_free(&leaves[i]);
    }
    cnn_tensor_free(&conv);
    cnn_tensor_free(&sum);
    cnn_tensor_free(&ref);
    cnn_tensor_free(&y);
    cnn_tensor_free(&dy);
    return ok;
}

TEST(conv2d_fused_same_bits_as_separate_ops)
{
    const conv_case *sets[] = {grad_cases, threaded_cases, blocked_cases};
    const size_t counts[] = {sizeof grad_cases / sizeof *grad_cases,
                             sizeof threaded_cases / sizeof *threaded_cases,
                             sizeof blocked_cases / sizeof *blocked_cases};
    for (int s = 0; s < 3; s++)
        for (size_t i = 0; i < counts[s]; i++)
            for (int mode = 1; mode < 4; mode++) /* z, relu, both */
                if (!fused_matches_separate(&sets[s][i], mode & 1, mode & 2))
                    cnn_test_fail(__FILE__, __LINE__, "conv2d_fused '%s' mode %d",
                                  sets[s][i].name, mode);
}

static cnn_status f_fused(cnn_tensor *const *in, void *ud, cnn_tensor **y)
{
    return cnn_conv2d_fused(in[0], in[1], in[2], in[3], CNN_ACT_RELU,
                            (const cnn_conv2d_params *)ud, y);
}

TEST(conv2d_fused_gradcheck)
{
    /* Finite differences across a ReLU's kink are wrong, so every pre-activation is kept at
     * least ~0.4 away from 0: small x, w, b (|conv + b| <= 0.6) and z = +-(1 + u). */
    const conv_case cases[] = {
        {"fused 3x3 stride 2", 2, 3, 7, 6, 4, 3, 3, {.stride = {2, 2}, .padding = {1, 1}}, 1},
        {"fused depthwise", 2, 4, 5, 5, 4, 3, 3, {.padding = {1, 1}, .groups = 4}, 1},
        {"fused 1x1 groups 2", 2, 4, 3, 4, 6, 1, 1, {.groups = 2}, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const conv_case *cc = &cases[i];
        int gr = cc->p.groups ? cc->p.groups : 1;
        cnn_tensor *x = rand_tensor(CNN_SHAPE(cc->n, cc->c, cc->h, cc->w), -0.2f, 0.2f, 1);
        cnn_tensor *w = rand_tensor(CNN_SHAPE(cc->k, cc->c / gr, cc->r, cc->s), -0.1f, 0.1f, 1);
        cnn_tensor *b = cc->bias ? rand_tensor(CNN_SHAPE(cc->k), -0.1f, 0.1f, 1) : NULL;
        cnn_tensor *y0 = NULL;
        CHECK_OK(cnn_conv2d(x, w, b, &cc->p, &y0));
        const int64_t n = cnn_tensor_numel(y0);
        float *zv = malloc((size_t)n * sizeof *zv);
        REQUIRE(zv && cnn_tensor_read(y0, zv, (size_t)n) == CNN_OK);
        for (int64_t j = 0; j < n; j++) /* fixed signs, alternating in a scrambled order */
            zv[j] = ((j * 7919) % 3 ? 1.0f : -1.0f) * (1.0f + 0.5f * (float)((j * 31) % 17) / 17);
        cnn_tensor *z = NULL;
        CHECK_OK(cnn_tensor_from_data(cnn_tensor_shape(y0), zv, CNN_CPU, &z));
        CHECK_OK(cnn_tensor_set_requires_grad(z, true));
        cnn_tensor *in[4] = {x, w, b, z};
        gc_opts o = {.eps = 1e-2f, .atol = 1e-3f, .rtol = 1e-2f};
        if (!gradcheck(cc->name, f_fused, in, 4, (void *)&cc->p, &o))
            cnn_test_fail(__FILE__, __LINE__, "gradcheck of conv2d_fused '%s'", cc->name);
        free(zv);
        cnn_tensor_free(&y0);
        for (int j = 0; j < 4; j++) cnn_tensor_free(&in[j]);
    }
}
