/* conv_cases.c — the conv2d cases of the GPU conv tests and their CPU oracle (conv_cases.h). */
#include "conv_cases.h"

#if CNN_WITH_CUDA

const conv_case conv_cases[] = {
    {"odd 3x3 pad 1", 2, 3, 11, 13, 5, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},
    {"3x3 stride 2", 2, 8, 15, 17, 12, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1},
    {"3x3 dilation 2", 1, 6, 14, 10, 9, 3, 3, 1, 1, 2, 2, 2, 2, 1, 0},
    {"groups 4", 2, 8, 9, 9, 12, 3, 3, 1, 1, 1, 1, 1, 1, 4, 1},
    {"depthwise stride 2", 2, 16, 12, 11, 16, 3, 3, 2, 2, 1, 1, 1, 1, 16, 1},
    {"depthwise x2 5x5", 1, 4, 9, 9, 8, 5, 5, 1, 1, 2, 2, 1, 1, 4, 0},
    {"1x1", 3, 64, 7, 7, 96, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1},
    {"1x1 stride 2", 2, 32, 9, 9, 64, 1, 1, 2, 2, 0, 0, 1, 1, 1, 0},
    {"7x7/2 stem", 1, 3, 37, 41, 64, 7, 7, 2, 2, 3, 3, 1, 1, 1, 0},
    {"520 channels", 1, 520, 5, 5, 513, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},
    {"big tiles, split-K", 4, 64, 28, 28, 128, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},
    {"asymmetric", 2, 5, 10, 7, 7, 3, 2, 2, 1, 1, 0, 1, 2, 1, 1},
    {"stride 3 > kernel", 2, 4, 13, 14, 6, 2, 2, 3, 3, 0, 1, 1, 1, 2, 1},
    /* all three GEMMs split their reduction (576, 576, 512 long) and have 2 groups each */
    {"groups 2, split-K", 2, 128, 16, 16, 128, 3, 3, 1, 1, 1, 1, 1, 1, 2, 1},
    /* backward data by the Cg <= 4 gather: its checking loop (dilation > 1 in both dims), and
     * its stepping loop with a different stride per dim and taps past the output's end */
    {"cg 4, dilation 2x3, stride 2", 2, 8, 13, 14, 6, 3, 3, 2, 2, 2, 3, 2, 3, 2, 1},
    {"cg 2, stride 2x1, pad 2x0", 2, 6, 11, 9, 9, 5, 3, 2, 1, 2, 0, 1, 1, 3, 0},
    /* backward data by stride phase (Cg > 4, dilation 1; "3x3 stride 2" and "1x1 stride 2",
     * whose odd phases have no taps, too): groups, stride 3 with uneven padding, and phases whose
     * reductions (512 to 2048 long on one 16 x 16 tile) are split */
    {"groups 2, stride 2", 2, 16, 13, 11, 12, 3, 3, 2, 2, 1, 1, 1, 1, 2, 1},
    {"5x5 stride 3, pad 2x1", 1, 6, 17, 16, 7, 5, 5, 3, 3, 2, 1, 1, 1, 1, 0},
    {"stride 2, split-K", 1, 16, 8, 8, 512, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1},
};
const int n_conv_cases = (int)(sizeof conv_cases / sizeof *conv_cases);

cnn_conv2d_params params_of(const conv_case *cc)
{
    return (cnn_conv2d_params){{cc->sh, cc->sw}, {cc->ph, cc->pw}, {cc->dh, cc->dw}, cc->groups};
}



void ref_free(conv_ref *r)
{
    cnn_tensor_free(&r->x);
    cnn_tensor_free(&r->w);
    cnn_tensor_free(&r->b);
    cnn_tensor_free(&r->dy);
    cnn_tensor_free(&r->y);
}

/* The CPU op's output and gradients for r's inputs (x, w, b, and dy when set; else a random dy
 * of the output's shape). */
int ref_compute(const conv_case *cc, conv_ref *r)
{
    cnn_conv2d_params p = params_of(cc);
    if (cnn_conv2d(r->x, r->w, r->b, &p, &r->y) != CNN_OK) return 0;
    cnn_shape ys = cnn_tensor_shape(r->y);
    if (!r->dy) r->dy = rand_tensor(ys, -1, 1, 0);
    if (!r->dy || cnn_backward_with_grad(r->y, r->dy) != CNN_OK) return 0;
    r->dx = cnn_tensor_grad(r->x);
    r->dw = cnn_tensor_grad(r->w);
    r->db = r->b ? cnn_tensor_grad(r->b) : NULL;
    r->g = (cnn_cuda_conv){.n = cc->n, .c = cc->c, .h = cc->h, .w = cc->w, .k = cc->k, .r = cc->r,
                           .s = cc->s, .p = ys.d[2], .q = ys.d[3], .cg = cc->c / cc->groups,
                           .kg = cc->k / cc->groups, .sh = cc->sh, .sw = cc->sw, .ph = cc->ph,
                           .pw = cc->pw, .dh = cc->dh, .dw = cc->dw, .groups = cc->groups};
    return r->dx && r->dw && (!r->b || r->db);
}

/* Weights scaled by 1/sqrt(fan-in) keep every output O(1), so one tolerance fits all cases. */
int make_ref(const conv_case *cc, conv_ref *r)
{
    memset(r, 0, sizeof *r);
    const int cg = cc->c / cc->groups;
    const float ws = 1.0f / sqrtf((float)(cg * cc->r * cc->s));
    r->x = rand_tensor(CNN_SHAPE(cc->n, cc->c, cc->h, cc->w), -1, 1, 1);
    r->w = rand_tensor(CNN_SHAPE(cc->k, cg, cc->r, cc->s), -ws, ws, 1);
    if (cc->bias) r->b = rand_tensor(CNN_SHAPE(cc->k), -1, 1, 1);
    if (!r->x || !r->w || (cc->bias && !r->b)) return 0;
    return ref_compute(cc, r);
}

/* |got - ref| <= atol * max(1, max|ref|) + rtol * |ref|: the absolute part grows with the
 * tensor's largest value, as the rounding of a long sum grows with the magnitudes summed (dw
 * and db sum N*P*Q terms and reach ~100 here; y and dx stay O(1)). */
int close_scaled(const char *what, const cnn_tensor *got, const cnn_tensor *ref, float atol,
                 float rtol)
{
    int64_t n = cnn_tensor_numel(ref);
    float *v = malloc((size_t)(n ? n : 1) * sizeof *v), mx = 1.0f;
    if (!v || cnn_tensor_read(ref, v, (size_t)n) != CNN_OK) {
        free(v);
        return 0;
    }
    for (int64_t i = 0; i < n; i++) mx = fmaxf(mx, fabsf(v[i]));
    free(v);
    return tensors_close(what, got, ref, atol * mx, rtol);
}

#endif /* CNN_WITH_CUDA */
