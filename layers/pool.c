/* pool.c — 2-D max, average and adaptive average pooling over (N, C, H, W) or (C, H, W): shape
 * rules (PyTorch's, ceil_mode included), forward, backward, the CPU kernels and the backend
 * choice. Max pooling saves its argmax indices (cuDNN's max pooling: its input and output, which
 * cuDNN's backward needs), never more; average pooling saves nothing. */
#include "internal.h"
#include "parallel.h"

#include <math.h>
#include <stdatomic.h>

#if CNN_WITH_CUDA
#include "../cuda/cuda_api.h"
#endif

/* One pooling call's geometry, also the tape node's packed parameters. */
typedef struct {
    int64_t planes;   /* N * C */
    int64_t h, w;     /* input */
    int64_t oh, ow;   /* output */
    int kh, kw, sh, sw, ph, pw, dh, dw;
    bool exclude_pad; /* avg: divide by the in-input count only */
} pool_geom;

/* Element visits of one call, for the threading decision: in double, as a kernel near INT_MAX
 * (over a small output) makes the int64 product overflow. */
static int64_t pool_work(const pool_geom *g)
{
    double v = (double)g->planes * (double)g->oh * (double)g->ow * g->kh * g->kw;
    return v < 0x1p62 ? (int64_t)v : INT64_MAX;
}

static int64_t floor_div(int64_t a, int64_t b)
{
    return a / b - ((a % b != 0) && ((a < 0) != (b < 0)));
}

/* PyTorch's pooling_output_shape: with ceil_mode the last window must still start inside the
 * input or its left padding, so a window lying wholly in the right padding is dropped. */
int64_t cnn_window_out(int64_t in, int k, int s, int pad, int dil, bool ceil_mode)
{
    int64_t span = in + 2 * (int64_t)pad - (int64_t)dil * (k - 1) - 1;
    int64_t out = floor_div(span + (ceil_mode ? s - 1 : 0), s) + 1;
    if (ceil_mode && (out - 1) * s >= in + pad) out--;
    return out;
}

/* Checks x and p and fills g; max_pool selects the dilation rule. */
static cnn_status pool_geometry(const char *op, const cnn_tensor *x, const cnn_pool2d_params *p,
                                bool max_pool, pool_geom *g)
{
    CNN_TRY(cnn_check_f32(op, "x", x));
    CNN_CHECK(p, CNN_ERR_INVALID_ARG, "%s: params is NULL", op);
    int nd = x->shape.ndim;
    CNN_CHECK(nd == 3 || nd == 4, CNN_ERR_SHAPE, "%s: x must be (N, C, H, W) or (C, H, W), got %s",
              op, cnn_shape_of(x));
    const int64_t *d = x->shape.d + (nd - 3);
    CNN_CHECK(d[0] > 0 && d[1] > 0 && d[2] > 0, CNN_ERR_SHAPE,
              "%s: x %s has an empty channel or spatial dimension", op, cnn_shape_of(x));
    CNN_CHECK(p->kernel[0] > 0 && p->kernel[1] > 0, CNN_ERR_INVALID_ARG,
              "%s: kernel (%d, %d) must be positive", op, p->kernel[0], p->kernel[1]);
    CNN_CHECK(p->stride[0] >= 0 && p->stride[1] >= 0 && p->padding[0] >= 0 && p->padding[1] >= 0 &&
                  p->dilation[0] >= 0 && p->dilation[1] >= 0,
              CNN_ERR_INVALID_ARG,
              "%s: stride (%d, %d), padding (%d, %d), dilation (%d, %d) must not be negative", op,
              p->stride[0], p->stride[1], p->padding[0], p->padding[1], p->dilation[0],
              p->dilation[1]);
    CNN_CHECK(max_pool || (p->dilation[0] <= 1 && p->dilation[1] <= 1), CNN_ERR_INVALID_ARG,
              "%s: dilation (%d, %d) is not supported (max_pool2d only)", op, p->dilation[0],
              p->dilation[1]);
    CNN_CHECK(p->padding[0] <= p->kernel[0] / 2 && p->padding[1] <= p->kernel[1] / 2,
              CNN_ERR_INVALID_ARG,
              "%s: padding (%d, %d) must be at most half of kernel (%d, %d)", op, p->padding[0],
              p->padding[1], p->kernel[0], p->kernel[1]);
    CNN_CHECK(x->shape.d[nd - 1] * x->shape.d[nd - 2] <= INT32_MAX, CNN_ERR_UNSUPPORTED,
              "%s: x %s has more than 2^31 elements per plane", op, cnn_shape_of(x));
    *g = (pool_geom){0};
    g->planes = nd == 4 ? x->shape.d[0] * d[0] : d[0];
    g->h = d[1];
    g->w = d[2];
    g->kh = p->kernel[0];
    g->kw = p->kernel[1];
    g->sh = p->stride[0] ? p->stride[0] : p->kernel[0];
    g->sw = p->stride[1] ? p->stride[1] : p->kernel[1];
    g->ph = p->padding[0];
    g->pw = p->padding[1];
    g->dh = max_pool && p->dilation[0] ? p->dilation[0] : 1;
    g->dw = max_pool && p->dilation[1] ? p->dilation[1] : 1;
    g->exclude_pad = !max_pool && p->exclude_pad;
    g->oh = cnn_window_out(g->h, g->kh, g->sh, g->ph, g->dh, p->ceil_mode);
    g->ow = cnn_window_out(g->w, g->kw, g->sw, g->pw, g->dw, p->ceil_mode);
    CNN_CHECK(g->oh > 0 && g->ow > 0, CNN_ERR_SHAPE,
              "%s: kernel (%d, %d) with dilation (%d, %d) is larger than the padded input "
              "(%lld, %lld) of x %s (output size (%lld, %lld))", op, g->kh, g->kw, g->dh, g->dw,
              (long long)(g->h + 2 * g->ph), (long long)(g->w + 2 * g->pw), cnn_shape_of(x),
              (long long)g->oh, (long long)g->ow);
    return CNN_OK;
}

/* ---- backend choice ---------------------------------------------------------------------- */
typedef enum { POOL_CPU, POOL_CUDA, POOL_CUDNN } pool_backend;

/* CPU tensors: the CPU kernels. CUDA tensors: cuDNN when built, preferred (AUTO/CUDNN) and able
 * to compute PyTorch's result (no dilation; an output size that floor mode gives, since cuDNN
 * has no ceil_mode), else the hand-written kernels. Adaptive pooling passes NULL (no cuDNN). */
static pool_backend pool_backend_for(const char *op, const cnn_tensor *x, const pool_geom *g)
{
    if (!cnn_on_cuda(x)) return POOL_CPU;
    cnn_backend pref = cnn_get_backend();
    if (!CNN_WITH_CUDNN || !g || (pref != CNN_BACKEND_AUTO && pref != CNN_BACKEND_CUDNN))
        return POOL_CUDA;
    bool floor_shape = g->oh == cnn_window_out(g->h, g->kh, g->sh, g->ph, g->dh, false) &&
                       g->ow == cnn_window_out(g->w, g->kw, g->sw, g->pw, g->dw, false);
    /* cuDNN's descriptors take int strides: the whole of x and y must stay below 2^31. */
    bool fits = g->planes * g->h * g->w <= INT32_MAX && g->planes * g->oh * g->ow <= INT32_MAX;
    if (g->dh == 1 && g->dw == 1 && floor_shape && fits) return POOL_CUDNN;
    static atomic_flag logged = ATOMIC_FLAG_INIT;
    if (!atomic_flag_test_and_set(&logged))
        cnn_log_debug("%s: cuDNN has no %s, using the hand-written CUDA kernel", op,
                      !fits ? "int64 strides (a tensor of 2^31 elements or more)"
                            : "dilation or ceil_mode output size");
    return POOL_CUDA;
}

#if CNN_WITH_CUDNN
/* The status of a cuDNN forward; CNN_ERR_UNSUPPORTED (cuDNN cannot here, e.g. no usable handle
 * on this GPU) switches *be to the hand-written kernels instead of failing. */
static cnn_status cudnn_or_fallback(pool_backend *be, cnn_status st)
{
    if (st != CNN_ERR_UNSUPPORTED) return st;
    /* Said once per process; the message is dropped, as the hand-written kernel serves. */
    static atomic_flag logged = ATOMIC_FLAG_INIT;
    if (!atomic_flag_test_and_set(&logged))
        cnn_log_debug("pool: cuDNN declined (%s), using the hand-written kernel",
                      cnn_last_error());
    cnn_clear_error();
    *be = POOL_CUDA;
    return CNN_OK;
}
#endif

#if CNN_WITH_CUDA
static cnn_cuda_pool_geom cuda_geom(const pool_geom *g)
{
    return (cnn_cuda_pool_geom){g->planes, g->h, g->w, g->oh, g->ow, g->kh, g->kw, g->sh, g->sw,
                                g->ph, g->pw, g->dh, g->dw, g->exclude_pad};
}
#endif

/* x's shape with the last two dims replaced by (oh, ow). */
static cnn_shape pool_out_shape(cnn_shape s, int64_t oh, int64_t ow)
{
    s.d[s.ndim - 2] = oh;
    s.d[s.ndim - 1] = ow;
    return s;
}

/* ---- max pooling ------------------------------------------------------------------------- */
/* PyTorch's rule: the first maximum wins ties, and a NaN wins over any number (the last NaN
 * of a window, as PyTorch's `v > best || isnan(v)` keeps it). idx is the position h * W + w
 * inside the plane, -1 for a window that covers only padding; NULL when no backward will need
 * it. */

/* Output columns [*lo, *hi) whose windows lie wholly inside [0, W) horizontally. */
static void max_pool_inner_cols(const pool_geom *g, int64_t *lo, int64_t *hi)
{
    int64_t last = g->w - 1 + g->pw - (int64_t)(g->kw - 1) * g->dw; /* ow * sw <= last */
    *lo = ((int64_t)g->pw + g->sw - 1) / g->sw;
    *hi = last < 0 ? 0 : last / g->sw + 1;
    if (*hi > g->ow) *hi = g->ow;
    if (*lo > *hi) *lo = *hi;
}

/* One output of rows [hs, he) (already clipped to the input): the taps one by one. */
static void max_pool_one(const pool_geom *g, const float *xp, int64_t hs, int64_t he, int64_t ow,
                         float *y, int32_t *idx)
{
    int64_t ws = ow * g->sw - g->pw;
    int64_t we = ws + (int64_t)(g->kw - 1) * g->dw + 1;
    if (we > g->w) we = g->w;
    if (ws < 0) ws += (-ws + g->dw - 1) / g->dw * g->dw; /* the first tap inside */
    float best = -INFINITY;
    int64_t bi = (hs < he && ws < we) ? hs * g->w + ws : -1;
    for (int64_t h = hs; h < he; h += g->dh)
        for (int64_t w = ws; w < we; w += g->dw) {
            float v = xp[h * g->w + w];
            if (v > best || isnan(v)) {
                best = v;
                bi = h * g->w + w;
            }
        }
    *y = best;
    if (idx) *idx = (int32_t)bi;
}

/* Outputs [o0, o0 + n) of one row, n <= MAXPOOL_RUN, all with whole windows across: the same
 * taps in the same order as max_pool_one, but each tap is applied to the run of outputs at
 * once. The compare-and-select of one output is a chain through its taps; across outputs the
 * chains are independent, so the loop over j vectorises instead of waiting on each chain. */
enum { MAXPOOL_RUN = 64 };
static void max_pool_run(const pool_geom *g, const float *xp, int64_t hs, int64_t he, int64_t o0,
                         int64_t n, float *y, int32_t *idx)
{
    float best[MAXPOOL_RUN];
    int32_t bi[MAXPOOL_RUN];
    const int64_t sw = g->sw, w0 = o0 * sw - g->pw;
    for (int64_t j = 0; j < n; j++) {
        best[j] = -INFINITY;
        bi[j] = hs < he ? (int32_t)(hs * g->w + w0 + j * sw) : -1;
    }
    for (int64_t h = hs; h < he; h += g->dh)
        for (int64_t k = 0; k < g->kw; k++) {
            const int64_t first = h * g->w + w0 + k * g->dw; /* tap k of output o0 */
            const float *xr = xp + first;
            for (int64_t j = 0; j < n; j++) {
                float v = xr[j * sw];
                bool take = v > best[j] || v != v;
                best[j] = take ? v : best[j];
                bi[j] = take ? (int32_t)(first + j * sw) : bi[j];
            }
        }
    memcpy(y, best, (size_t)n * sizeof *y);
    if (idx) memcpy(idx, bi, (size_t)n * sizeof *idx);
}

/* x: (planes, H, W) -> y, idx: (planes, OH, OW) */
static void max_pool_kernel(const pool_geom *g, const float *x, float *y, int32_t *idx)
{
    int64_t plane_out = g->oh * g->ow, lo, hi;
    max_pool_inner_cols(g, &lo, &hi);
    #pragma omp parallel for if (cnn_par_worth(pool_work(g)))
    for (int64_t pl = 0; pl < g->planes; pl++) {
        const float *xp = x + pl * g->h * g->w;
        for (int64_t oh = 0; oh < g->oh; oh++) {
            int64_t hs = oh * g->sh - g->ph;
            int64_t he = hs + (int64_t)(g->kh - 1) * g->dh + 1;
            if (he > g->h) he = g->h;
            if (hs < 0) hs += (-hs + g->dh - 1) / g->dh * g->dh;
            const int64_t o = pl * plane_out + oh * g->ow;
            float *yr = y + o;
            int32_t *ir = idx ? idx + o : NULL;
            for (int64_t ow = 0; ow < lo; ow++)
                max_pool_one(g, xp, hs, he, ow, yr + ow, ir ? ir + ow : NULL);
            for (int64_t ow = lo; ow < hi; ow += MAXPOOL_RUN) {
                int64_t n = hi - ow < MAXPOOL_RUN ? hi - ow : MAXPOOL_RUN;
                max_pool_run(g, xp, hs, he, ow, n, yr + ow, ir ? ir + ow : NULL);
            }
            for (int64_t ow = hi; ow < g->ow; ow++)
                max_pool_one(g, xp, hs, he, ow, yr + ow, ir ? ir + ow : NULL);
        }
    }
}

/* Saved: the argmax indices, or (cuDNN forward) x and y for cuDNN's backward. */
static cnn_status max_pool_backward(cnn_node *nd, const cnn_tensor *dy, cnn_tensor **dx)
{
    const pool_geom *g = (const pool_geom *)nd->params;
    CNN_ASSERT((nd->n_saved == 1 || nd->n_saved == 2) && cnn_tensor_is_contiguous(dy));
    if (nd->in[0].device.type == CNN_DEVICE_CUDA) {
#if CNN_WITH_CUDA
        CNN_TRY(cnn_tensor_empty(nd->in[0].shape, CNN_F32, nd->in[0].device, &dx[0]));
        cnn_cuda_pool_geom cg = cuda_geom(g);
#if CNN_WITH_CUDNN
        if (nd->n_saved == 2)
            return cnn_cudnn_pool2d_backward(cnn_ctx(), &cg, true, cnn_f32(nd->saved[0]),
                                             cnn_f32(nd->saved[1]), cnn_f32(dy), cnn_f32(dx[0]));
#endif
        CNN_ASSERT(nd->n_saved == 1);
        return cnn_cuda_max_pool2d_backward(cnn_ctx(), &cg, cnn_f32(dy),
                                            (const int32_t *)cnn_ptr(nd->saved[0]), cnn_f32(dx[0]));
#endif
    }
    CNN_ASSERT(nd->n_saved == 1);
    CNN_TRY(cnn_tensor_zeros(nd->in[0].shape, nd->in[0].device, &dx[0]));
    /* dy, idx: (planes, OH, OW) -> dx: (planes, H, W) */
    const int32_t *idx = (const int32_t *)cnn_ptr(nd->saved[0]);
    const float *pdy = cnn_f32(dy);
    float *pdx = cnn_f32(dx[0]);
    int64_t plane_out = g->oh * g->ow;
    #pragma omp parallel for if (cnn_par_worth(g->planes * plane_out))
    for (int64_t pl = 0; pl < g->planes; pl++) {
        float *d = pdx + pl * g->h * g->w;
        for (int64_t o = pl * plane_out; o < (pl + 1) * plane_out; o++)
            if (idx[o] >= 0) d[idx[o]] += pdy[o];
    }
    return CNN_OK;
}

cnn_status cnn_max_pool2d(const cnn_tensor *x, const cnn_pool2d_params *p, cnn_tensor **y)
{
    CNN_CHECK(y, CNN_ERR_INVALID_ARG, "max_pool2d: y is NULL");
    *y = NULL;
    pool_geom g;
    CNN_TRY(pool_geometry("max_pool2d", x, p, true, &g));
    pool_backend be = pool_backend_for("max_pool2d", x, &g);
    cnn_status st = CNN_OK;
    cnn_tensor *xc = NULL, *idx = NULL;
    cnn_shape os = pool_out_shape(x->shape, g.oh, g.ow);
    /* The indices are kept for backward only: in eval or no-grad work they are not made. */
    const bool record = cnn_should_record(&x, 1);
    CNN_TRYG(cnn_contig(x, &xc));
    CNN_TRYG(cnn_tensor_empty_for("max_pool2d", os, CNN_F32, x->device, y));
#if CNN_WITH_CUDA
    cnn_cuda_pool_geom cg = cuda_geom(&g);
#endif
#if CNN_WITH_CUDNN
    if (be == POOL_CUDNN) CNN_TRYG(cudnn_or_fallback(&be, cnn_cudnn_pool2d_forward(
                                       cnn_ctx(), &cg, true, cnn_f32(xc), cnn_f32(*y))));
#endif
    if (be != POOL_CUDNN && record)
        CNN_TRYG(cnn_tensor_empty_for("max_pool2d", os, CNN_I32, x->device, &idx));
    int32_t *pidx = idx ? (int32_t *)cnn_ptr(idx) : NULL;
    if (be == POOL_CPU) max_pool_kernel(&g, cnn_f32(xc), cnn_f32(*y), pidx);
#if CNN_WITH_CUDA
    if (be == POOL_CUDA)
        CNN_TRYG(cnn_cuda_max_pool2d_forward(cnn_ctx(), &cg, cnn_f32(xc), cnn_f32(*y), pidx));
#endif
    if (record) {
        cnn_node *nd = NULL;
        CNN_TRYG(cnn_tape_record("max_pool2d", max_pool_backward, *y, &x, 1, &g, sizeof g, &nd));
        if (idx) {
            cnn_node_save(nd, idx);
        } else {
            cnn_node_save(nd, xc);
            cnn_node_save(nd, *y);
        }
    }
done:
    cnn_tensor_free(&xc);
    cnn_tensor_free(&idx);
    if (st != CNN_OK) cnn_tensor_free(y);
    return st;
}

/* ---- average pooling --------------------------------------------------------------------- */
/* PyTorch's windows, one axis at a time (the 2-D window is their product): clipped first to
 * the padded input (which sets the count_include_pad divisor, smaller for ceil_mode windows
 * running past it) and then to the input itself (the exclude_pad divisor). Returns this axis'
 * factor of the divisor, 0 for a window outside the input. */
static int64_t avg_span(int64_t o, int64_t k, int64_t stride, int64_t pad, int64_t size,
                        bool exclude_pad, int64_t *lo, int64_t *hi)
{
    int64_t s = o * stride - pad, e = s + k < size + pad ? s + k : size + pad;
    int64_t padded = e - s;
    *lo = s < 0 ? 0 : s;
    *hi = e > size ? size : e;
    if (*lo >= *hi) return 0;
    return exclude_pad ? *hi - *lo : padded;
}

/* 2x2 windows at stride 2 without padding, all inside the input (LeNet-5's pooling): every
 * window is whole, so each output is (((x00 + x01) + x10) + x11) / 4, the generic loops' sum in
 * their order, and each input pixel is in one window at most. The generic loops' bounds and
 * divisors per output cost more than the four adds; these rows vectorise. */
static bool avg_2x2(const pool_geom *g)
{
    return g->kh == 2 && g->kw == 2 && g->sh == 2 && g->sw == 2 && g->ph == 0 && g->pw == 0 &&
           2 * g->oh <= g->h && 2 * g->ow <= g->w;
}

/* x: (planes, H, W) -> y: (planes, OH, OW) */
static void avg_pool_kernel(const pool_geom *g, const float *x, float *y)
{
    const int64_t plane_out = g->oh * g->ow;
    const bool ex = g->exclude_pad;
    if (avg_2x2(g)) {
        #pragma omp parallel for if (cnn_par_worth(g->planes * plane_out * 4))
        for (int64_t pl = 0; pl < g->planes; pl++)
            for (int64_t oh = 0; oh < g->oh; oh++) {
                const float *r0 = x + (pl * g->h + 2 * oh) * g->w, *r1 = r0 + g->w;
                float *yr = y + pl * plane_out + oh * g->ow;
                for (int64_t ow = 0; ow < g->ow; ow++) /* in double, as the generic loops */
                    yr[ow] = (float)(((((double)r0[2 * ow] + r0[2 * ow + 1]) + r1[2 * ow]) +
                                      r1[2 * ow + 1]) / 4.0);
            }
        return;
    }
    #pragma omp parallel for if (cnn_par_worth(pool_work(g)))
    for (int64_t pl = 0; pl < g->planes; pl++) {
        const float *xp = x + pl * g->h * g->w;
        float *yp = y + pl * plane_out;
        for (int64_t oh = 0; oh < g->oh; oh++) {
            int64_t hs, he, fh = avg_span(oh, g->kh, g->sh, g->ph, g->h, ex, &hs, &he);
            for (int64_t ow = 0; ow < g->ow; ow++) {
                int64_t ws, we, fw = avg_span(ow, g->kw, g->sw, g->pw, g->w, ex, &ws, &we);
                int64_t div = fh * fw;
                double s = 0; /* a float sum of a 512 x 512 window came out 0.3% off */
                for (int64_t h = hs; h < he; h++)
                    for (int64_t w = ws; w < we; w++) s += xp[h * g->w + w];
                yp[oh * g->ow + ow] = div ? (float)(s / (double)div) : 0.0f;
            }
        }
    }
}

/* dy: (planes, OH, OW) -> dx: (planes, H, W), dx zeroed by the caller */
static void avg_pool_backward_kernel(const pool_geom *g, const float *dy, float *dx)
{
    const int64_t plane_out = g->oh * g->ow;
    const bool ex = g->exclude_pad;
    if (avg_2x2(g)) { /* each covered pixel gets its one window's share (0 + v = v) */
        #pragma omp parallel for if (cnn_par_worth(g->planes * plane_out * 4))
        for (int64_t pl = 0; pl < g->planes; pl++)
            for (int64_t oh = 0; oh < g->oh; oh++) {
                float *r0 = dx + (pl * g->h + 2 * oh) * g->w, *r1 = r0 + g->w;
                const float *dr = dy + pl * plane_out + oh * g->ow;
                for (int64_t ow = 0; ow < g->ow; ow++) {
                    const float v = dr[ow] / 4.0f;
                    r0[2 * ow] = r0[2 * ow + 1] = r1[2 * ow] = r1[2 * ow + 1] = v;
                }
            }
        return;
    }
    #pragma omp parallel for if (cnn_par_worth(pool_work(g)))
    for (int64_t pl = 0; pl < g->planes; pl++) {
        float *d = dx + pl * g->h * g->w;
        const float *dyp = dy + pl * plane_out;
        for (int64_t oh = 0; oh < g->oh; oh++) {
            int64_t hs, he, fh = avg_span(oh, g->kh, g->sh, g->ph, g->h, ex, &hs, &he);
            for (int64_t ow = 0; ow < g->ow; ow++) {
                int64_t ws, we, fw = avg_span(ow, g->kw, g->sw, g->pw, g->w, ex, &ws, &we);
                int64_t div = fh * fw;
                if (!div) continue;
                float v = dyp[oh * g->ow + ow] / (float)div;
                for (int64_t h = hs; h < he; h++)
                    for (int64_t w = ws; w < we; w++) d[h * g->w + w] += v;
            }
        }
    }
}

/* On the GPU always the hand-written gather kernel, also after a cuDNN forward: cuDNN's backward
 * would need x and y, which average pooling does not keep alive. */
static cnn_status avg_pool_backward(cnn_node *nd, const cnn_tensor *dy, cnn_tensor **dx)
{
    CNN_ASSERT(cnn_tensor_is_contiguous(dy));
    if (nd->in[0].device.type == CNN_DEVICE_CUDA) {
#if CNN_WITH_CUDA
        CNN_TRY(cnn_tensor_empty(nd->in[0].shape, CNN_F32, nd->in[0].device, &dx[0]));
        cnn_cuda_pool_geom cg = cuda_geom((const pool_geom *)nd->params);
        return cnn_cuda_avg_pool2d_backward(cnn_ctx(), &cg, cnn_f32(dy), cnn_f32(dx[0]));
#endif
    }
    CNN_TRY(cnn_tensor_zeros(nd->in[0].shape, nd->in[0].device, &dx[0]));
    avg_pool_backward_kernel((const pool_geom *)nd->params, cnn_f32(dy), cnn_f32(dx[0]));
    return CNN_OK;
}

cnn_status cnn_avg_pool2d(const cnn_tensor *x, const cnn_pool2d_params *p, cnn_tensor **y)
{
    CNN_CHECK(y, CNN_ERR_INVALID_ARG, "avg_pool2d: y is NULL");
    *y = NULL;
    pool_geom g;
    CNN_TRY(pool_geometry("avg_pool2d", x, p, false, &g));
    pool_backend be = pool_backend_for("avg_pool2d", x, &g);
    cnn_status st = CNN_OK;
    cnn_tensor *xc = NULL;
    CNN_TRYG(cnn_contig(x, &xc));
    CNN_TRYG(cnn_tensor_empty_for("avg_pool2d", pool_out_shape(x->shape, g.oh, g.ow), CNN_F32,
                                  x->device, y));
#if CNN_WITH_CUDA
    cnn_cuda_pool_geom cg = cuda_geom(&g);
#endif
#if CNN_WITH_CUDNN
    if (be == POOL_CUDNN) CNN_TRYG(cudnn_or_fallback(&be, cnn_cudnn_pool2d_forward(
                                       cnn_ctx(), &cg, false, cnn_f32(xc), cnn_f32(*y))));
#endif
    if (be == POOL_CPU) avg_pool_kernel(&g, cnn_f32(xc), cnn_f32(*y));
#if CNN_WITH_CUDA
    if (be == POOL_CUDA)
        CNN_TRYG(cnn_cuda_avg_pool2d_forward(cnn_ctx(), &cg, cnn_f32(xc), cnn_f32(*y)));
#endif
    if (cnn_should_record(&x, 1))
        CNN_TRYG(cnn_tape_record("avg_pool2d", avg_pool_backward, *y, &x, 1, &g, sizeof g, NULL));
done:
    cnn_tensor_free(&xc);
    if (st != CNN_OK) cnn_tensor_free(y);
    return st;
}

/* ---- adaptive average pooling ------------------------------------------------------------ */
/* Output cell i covers [floor(i * H / out), ceil((i + 1) * H / out)): windows of varying size
 * that may overlap, so it has its own kernels rather than avg_pool's fixed stride.
 * x: (planes, H, W) -> y: (planes, OH, OW); backward: dy -> dx (zeroed by the caller) */
static void adaptive_kernel(const pool_geom *g, const float *src, float *dst, bool backward)
{
    int64_t plane_out = g->oh * g->ow, plane_in = g->h * g->w;
    #pragma omp parallel for if (cnn_par_worth(g->planes * plane_in))
    for (int64_t pl = 0; pl < g->planes; pl++) {
        for (int64_t oh = 0; oh < g->oh; oh++) {
            int64_t hs = oh * g->h / g->oh, he = ((oh + 1) * g->h + g->oh - 1) / g->oh;
            for (int64_t ow = 0; ow < g->ow; ow++) {
                int64_t ws = ow * g->w / g->ow, we = ((ow + 1) * g->w + g->ow - 1) / g->ow;
                float div = (float)((he - hs) * (we - ws));
                int64_t o = pl * plane_out + oh * g->ow + ow;
                if (backward) {
                    float v = src[o] / div;
                    for (int64_t h = hs; h < he; h++)
                        for (int64_t w = ws; w < we; w++) dst[pl * plane_in + h * g->w + w] += v;
                } else {
                    double s = 0; /* as in avg_pool_kernel */
                    for (int64_t h = hs; h < he; h++)
                        for (int64_t w = ws; w < we; w++) s += src[pl * plane_in + h * g->w + w];
                    dst[o] = (float)(s / div);
                }
            }
        }
    }
}

static cnn_status adaptive_backward(cnn_node *nd, const cnn_tensor *dy, cnn_tensor **dx)
{
    CNN_ASSERT(cnn_tensor_is_contiguous(dy));
    if (nd->in[0].device.type == CNN_DEVICE_CUDA) {
#if CNN_WITH_CUDA
        CNN_TRY(cnn_tensor_empty(nd->in[0].shape, CNN_F32, nd->in[0].device, &dx[0]));
        cnn_cuda_pool_geom cg = cuda_geom((const pool_geom *)nd->params);
        return cnn_cuda_adaptive_avg_pool2d_backward(cnn_ctx(), &cg, cnn_f32(dy), cnn_f32(dx[0]));
#endif
    }
    CNN_TRY(cnn_tensor_zeros(nd->in[0].shape, nd->in[0].device, &dx[0]));
    adaptive_kernel((const pool_geom *)nd->params, cnn_f32(dy), cnn_f32(dx[0]), true);
    return CNN_OK;
}

cnn_status cnn_adaptive_avg_pool2d(const cnn_tensor *x, int out_h, int out_w, cnn_tensor **y)
{
    const char *op = "adaptive_avg_pool2d";
    CNN_CHECK(y, CNN_ERR_INVALID_ARG, "%s: y is NULL", op);
    *y = NULL;
    CNN_TRY(cnn_check_f32(op, "x", x));
    int nd = x->shape.ndim;
    CNN_CHECK(nd == 3 || nd == 4, CNN_ERR_SHAPE, "%s: x must be (N, C, H, W) or (C, H, W), got %s",
              op, cnn_shape_of(x));
    const int64_t *d = x->shape.d + (nd - 3);
    CNN_CHECK(d[0] > 0 && d[1] > 0 && d[2] > 0, CNN_ERR_SHAPE,
              "%s: x %s has an empty channel or spatial dimension", op, cnn_shape_of(x));
    CNN_CHECK(out_h >= 0 && out_w >= 0, CNN_ERR_INVALID_ARG,
              "%s: output size (%d, %d) must not be negative", op, out_h, out_w);
    pool_geom g = {.planes = nd == 4 ? x->shape.d[0] * d[0] : d[0], .h = d[1], .w = d[2],
                   .oh = out_h, .ow = out_w};
    cnn_status st = CNN_OK;
    cnn_tensor *xc = NULL;
    CNN_TRYG(cnn_contig(x, &xc));
    CNN_TRYG(cnn_tensor_empty_for(op, pool_out_shape(x->shape, out_h, out_w), CNN_F32, x->device,
                                  y));
    if (pool_backend_for(op, x, NULL) == POOL_CPU) {
        adaptive_kernel(&g, cnn_f32(xc), cnn_f32(*y), false);
    } else {
#if CNN_WITH_CUDA
        cnn_cuda_pool_geom cg = cuda_geom(&g);
        CNN_TRYG(cnn_cuda_adaptive_avg_pool2d_forward(cnn_ctx(), &cg, cnn_f32(xc), cnn_f32(*y)));
#endif
    }
    if (cnn_should_record(&x, 1))
        CNN_TRYG(cnn_tape_record(op, adaptive_backward, *y, &x, 1, &g, sizeof g, NULL));
done:
    cnn_tensor_free(&xc);
    if (st != CNN_OK) cnn_tensor_free(y);
    return st;
}
