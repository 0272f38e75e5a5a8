/* lrn.c — local response normalisation across channels (torch.nn.LocalResponseNorm) of
 * (N, C, L) or (N, C, H, W): checks, forward, backward, the CPU kernels and the backend choice
 * (CUDA tensors always take the hand-written kernels of cuda/lrn.cu, which keep PyTorch's window
 * for every size; cuDNN's LRN accepts only sizes 1..16). Backward recomputes the per-element
 * scale from the saved input rather than keeping a second activation-sized tensor alive. */
#include "internal.h"
#include "parallel.h"

#include <math.h>

#if CNN_WITH_CUDA
#include "../cuda/cuda_api.h"
#endif

typedef struct {
    int64_t n, c, inner; /* x seen as (N, C, inner) */
    int size;
    float alpha, beta, k;
} lrn_params;

/* Channel c's window, PyTorch's: size/2 channels before it and (size-1)/2 after, clipped to
 * [0, C) (the padding contributes zeros). */
static void lrn_window(const lrn_params *p, int64_t c, int64_t *lo, int64_t *hi)
{
    *lo = c - p->size / 2;
    *hi = c + (p->size - 1) / 2 + 1;
    if (*lo < 0) *lo = 0;
    if (*hi > p->c) *hi = p->c;
}

/* scale = k + alpha / size * (sum of x^2 over the channel window). The window loop is outside
 * the position loop so the inner loop runs over contiguous memory.
 * x, scale: (N, C, inner) */
static void lrn_scale(const lrn_params *p, const float *x, float *scale)
{
    float a = p->alpha / (float)p->size;
    #pragma omp parallel for collapse(2) if (cnn_par_worth(p->n * p->c * p->inner * p->size))
    for (int64_t i = 0; i < p->n; i++)
        for (int64_t c = 0; c < p->c; c++) {
            int64_t lo, hi;
            lrn_window(p, c, &lo, &hi);
            float *s = scale + (i * p->c + c) * p->inner;
            for (int64_t j = 0; j < p->inner; j++) s[j] = 0.0f;
            for (int64_t cc = lo; cc < hi; cc++) {
                const float *xc = x + (i * p->c + cc) * p->inner;
                for (int64_t j = 0; j < p->inner; j++) s[j] += xc[j] * xc[j];
            }
            for (int64_t j = 0; j < p->inner; j++) s[j] = p->k + a * s[j];
        }
}

/* With y_c = x_c / s_c^beta and s_c = k + alpha/size * sum_{c' in W(c)} x_c'^2:
 * dx_j = dy_j * s_j^-beta - 2 beta alpha/size * x_j * sum_{c : j in W(c)} dy_c x_c s_c^(-beta-1).
 * j is in W(c) exactly when c lies in [j - (size-1)/2, j + size/2].
 * x, dy, dx: (N, C, inner); t: scratch of the same size */
static void lrn_backward_kernel(const lrn_params *p, const float *x, const float *dy, float *t,
                                float *dx)
{
    lrn_scale(p, x, dx);
    int64_t total = p->n * p->c * p->inner;
    #pragma omp parallel for if (cnn_par_worth(total * p->size))
    for (int64_t e = 0; e < total; e++) {
        float s = dx[e], sb = powf(s, -p->beta); /* s^(-beta-1) = sb / s: one powf, not two */
        /* (x / s) * sb: x / s and sb stay in range where sb / s underflows (x = 1e16, s = 2e27:
         * 1.7e-48, which dropped the term); |x| near FLT_MAX makes s inf and x / s 0, where
         * dy * x would overflow and inf * 0 turn PyTorch's finite gradient into NaN. */
        t[e] = dy[e] * ((x[e] / s) * sb);
        dx[e] = dy[e] * sb;
    }
    float f = 2.0f * p->beta * p->alpha / (float)p->size;
    #pragma omp parallel for collapse(2) if (cnn_par_worth(total * p->size))
    for (int64_t i = 0; i < p->n; i++)
        for (int64_t jc = 0; jc < p->c; jc++) {
            int64_t lo = jc - (p->size - 1) / 2, hi = jc + p->size / 2 + 1;
            if (lo < 0) lo = 0;
            if (hi > p->c) hi = p->c;
            float *d = dx + (i * p->c + jc) * p->inner;
            const float *xj = x + (i * p->c + jc) * p->inner;
            for (int64_t c = lo; c < hi; c++) {
                const float *tc = t + (i * p->c + c) * p->inner;
                for (int64_t j = 0; j < p->inner; j++) d[j] -= f * xj[j] * tc[j];
            }
        }
}

static cnn_status lrn_backward(cnn_node *nd, const cnn_tensor *dy, cnn_tensor **dx)
{
    const lrn_params *p = (const lrn_params *)nd->params;
    CNN_ASSERT(nd->n_saved == 1 && cnn_tensor_is_contiguous(dy));
    cnn_tensor *t = NULL;
    CNN_TRY(cnn_tensor_empty(nd->in[0].shape, CNN_F32, nd->in[0].device, &t));
    cnn_status st = cnn_tensor_empty(nd->in[0].shape, CNN_F32, nd->in[0].device, &dx[0]);
    if (st == CNN_OK && !cnn_on_cuda(nd->saved[0]))
        lrn_backward_kernel(p, cnn_f32(nd->saved[0]), cnn_f32(dy), cnn_f32(t), cnn_f32(dx[0]));
#if CNN_WITH_CUDA
    if (st == CNN_OK && cnn_on_cuda(nd->saved[0]))
        st = cnn_cuda_lrn_backward(cnn_ctx(), cnn_f32(nd->saved[0]), cnn_f32(dy), p->n, p->c,
                                   p->inner, p->size, p->alpha, p->beta, p->k, cnn_f32(t),
                                   cnn_f32(dx[0]));
#endif
    cnn_tensor_free(&t);
    return st;
}

cnn_status cnn_lrn(const cnn_tensor *x, int size, float alpha, float beta, float k, cnn_tensor **y)
{
    CNN_CHECK(y, CNN_ERR_INVALID_ARG, "lrn: y is NULL");
    *y = NULL;
    CNN_TRY(cnn_check_f32("lrn", "x", x));
    CNN_CHECK(x->shape.ndim == 3 || x->shape.ndim == 4, CNN_ERR_SHAPE,
              "lrn: x must be (N, C, L) or (N, C, H, W), got %s", cnn_shape_of(x));
    CNN_CHECK(size > 0, CNN_ERR_INVALID_ARG, "lrn: size %d must be positive", size);
    lrn_params p = {x->shape.d[0], x->shape.d[1], 1, size, alpha, beta, k};
    for (int i = 2; i < x->shape.ndim; i++) p.inner *= x->shape.d[i];
    cnn_status st = CNN_OK;
    cnn_tensor *xc = NULL;
    CNN_TRYG(cnn_contig(x, &xc));
    CNN_TRYG(cnn_tensor_empty_for("lrn", x->shape, CNN_F32, x->device, y));
    if (cnn_on_cuda(x)) {
#if CNN_WITH_CUDA
        CNN_TRYG(cnn_cuda_lrn_forward(cnn_ctx(), cnn_f32(xc), p.n, p.c, p.inner, size, alpha, beta,
                                      k, cnn_f32(*y)));
#endif
    } else {
        /* x, y: (N, C, inner); the scale is computed into y, then replaced by the result */
        const float *px = cnn_f32(xc);
        float *py = cnn_f32(*y);
        int64_t total = p.n * p.c * p.inner;
        lrn_scale(&p, px, py);
        /* one powf (about 16 operations) per element; x / s^beta, as PyTorch: s^-beta
         * overflows first (k 0, beta 2, x 1e-10: inf where the quotient is 1e30) */
        #pragma omp parallel for if (cnn_par_worth(total * 16))
        for (int64_t e = 0; e < total; e++) py[e] = px[e] / powf(py[e], beta);
    }
    if (cnn_should_record(&x, 1)) {
        cnn_node *nd = NULL;
        CNN_TRYG(cnn_tape_record("lrn", lrn_backward, *y, &x, 1, &p, sizeof p, &nd));
        cnn_node_save(nd, xc);
    }
done:
    cnn_tensor_free(&xc);
    if (st != CNN_OK) cnn_tensor_free(y);
    return st;
}
