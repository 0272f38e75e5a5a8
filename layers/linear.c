/* linear.c — fully connected layer as torch.nn.functional.linear (y = x w^T + b): shape rules,
 * forward, backward (dx, dw, db) and the CPU kernels, all through cnn_sgemm (layers/gemm.c:
 * OpenBLAS's sgemm single-threaded, split over the OpenMP team).
 * CUDA tensors go to cuBLAS (cuda/gemm_cublas.c) whatever the backend preference: there is no
 * hand-written GEMM. */
#include "internal.h"
#include "parallel.h"

#include "gemm.h"
#include <limits.h>

#if CNN_WITH_CUDA
#include "../cuda/cuda_api.h"
#endif

typedef struct linear_geom {
    int64_t n, in, out;
} linear_geom;

/* Zeros in a CPU tensor (memset wants a pointer even for no bytes; an empty tensor may have
 * none). */
static void zero_fill(cnn_tensor *t)
{
    size_t bytes = cnn_tensor_nbytes(t);
    if (bytes) memset(cnn_f32(t), 0, bytes);
}

static cnn_status linear_backward(cnn_node *nd, const cnn_tensor *dy, cnn_tensor **dx)
{
    linear_geom g;
    memcpy(&g, nd->params, sizeof g);
    /* x is saved only when dw is wanted, w only when dx is (cnn_linear). */
    const cnn_tensor *x = nd->saved[0], *w = nd->saved[1];
    const float *pdy = cnn_f32(dy);
    const cnn_shape xs = CNN_SHAPE(g.n, g.in), ws = CNN_SHAPE(g.out, g.in);
    cnn_status st = CNN_OK;
    if (cnn_on_cuda(dy)) {
#if CNN_WITH_CUDA
        if (nd->in[0].needs_grad) CNN_TRY(cnn_tensor_empty(xs, CNN_F32, dy->device, &dx[0]));
        if (nd->in[1].needs_grad) CNN_TRY(cnn_tensor_empty(ws, CNN_F32, dy->device, &dx[1]));
        if (nd->in[2].needs_grad)
            CNN_TRY(cnn_tensor_empty(CNN_SHAPE(g.out), CNN_F32, dy->device, &dx[2]));
        return cnn_cuda_linear_backward(cnn_ctx(), x ? cnn_f32(x) : NULL, w ? cnn_f32(w) : NULL,
                                        pdy, g.n, g.in, g.out,
                                        dx[0] ? cnn_f32(dx[0]) : NULL,
                                        dx[1] ? cnn_f32(dx[1]) : NULL,
                                        dx[2] ? cnn_f32(dx[2]) : NULL);
#endif
    }
    if (nd->in[0].needs_grad) {
        /* dy: (N, out), w: (out, in) -> dx: (N, in) = dy w */
        CNN_TRYG(cnn_tensor_empty(xs, CNN_F32, dy->device, &dx[0]));
        /* no output features: a sum of nothing, zeros (as torch's) */
        if (g.out == 0) zero_fill(dx[0]);
        else if (g.n > 0 && g.in > 0)
            cnn_sgemm(false, false, (int)g.n, (int)g.in, (int)g.out, 1.0f, pdy, (int)g.out,
                      cnn_f32(w), (int)g.in, 0.0f, cnn_f32(dx[0]), (int)g.in);
    }
    if (nd->in[1].needs_grad) {
        /* dy: (N, out), x: (N, in) -> dw: (out, in) = dy^T x, summed over the batch */
        CNN_TRYG(cnn_tensor_empty(ws, CNN_F32, dy->device, &dx[1]));
        if (g.n == 0) zero_fill(dx[1]);
        else if (g.out > 0 && g.in > 0)
            cnn_sgemm(true, false, (int)g.out, (int)g.in, (int)g.n, 1.0f, pdy, (int)g.out,
                      cnn_f32(x), (int)g.in, 0.0f, cnn_f32(dx[1]), (int)g.in);
    }
    if (nd->in[2].needs_grad) {
        /* dy: (N, out) -> db: (out), column sums */
        CNN_TRYG(cnn_tensor_empty(CNN_SHAPE(g.out), CNN_F32, dy->device, &dx[2]));
        float *db = cnn_f32(dx[2]);
        #pragma omp parallel for schedule(static) if (cnn_par_worth(g.n * g.out))
        for (int64_t o = 0; o < g.out; o++) {
            double acc = 0;
            for (int64_t i = 0; i < g.n; i++) acc += pdy[i * g.out + o];
            db[o] = (float)acc;
        }
    }
done:
    return st;
}

static cnn_status linear_resolve(const cnn_tensor *x, const cnn_tensor *w, const cnn_tensor *b,
                                 linear_geom *g)
{
    CNN_TRY(cnn_check_f32("linear", "x", x));
    CNN_TRY(cnn_check_f32("linear", "w", w));
    if (b) CNN_TRY(cnn_check_f32("linear", "b", b));
    CNN_TRY(cnn_check_same_device("linear", x, "x", w, "w"));
    CNN_TRY(cnn_check_same_device("linear", x, "x", b, "b"));
    CNN_CHECK(x->shape.ndim == 2, CNN_ERR_SHAPE,
              "linear: input must be 2-D (N, in_features), got %s (flatten it first)",
              cnn_shape_of(x));
    CNN_CHECK(w->shape.ndim == 2, CNN_ERR_SHAPE,
              "linear: weight must be 2-D (out_features, in_features), got %s", cnn_shape_of(w));
    CNN_CHECK(x->shape.d[1] == w->shape.d[1], CNN_ERR_SHAPE,
              "linear: input %s has %lld features, weight %s expects %lld", cnn_shape_of(x),
              (long long)x->shape.d[1], cnn_shape_of(w), (long long)w->shape.d[1]);
    if (b)
        CNN_CHECK(b->shape.ndim == 1 && b->shape.d[0] == w->shape.d[0], CNN_ERR_SHAPE,
                  "linear: bias %s does not match weight %s (expected (%lld))", cnn_shape_of(b),
                  cnn_shape_of(w), (long long)w->shape.d[0]);
    *g = (linear_geom){.n = x->shape.d[0], .in = x->shape.d[1], .out = w->shape.d[0]};
    CNN_CHECK(g->n < INT_MAX && g->in < INT_MAX && g->out < INT_MAX, CNN_ERR_UNSUPPORTED,
              "linear: input %s with weight %s is too large for one sgemm", cnn_shape_of(x),
              cnn_shape_of(w));
    return CNN_OK;
}

cnn_status cnn_linear(const cnn_tensor *x, const cnn_tensor *w, const cnn_tensor *b, cnn_tensor **y)
{
    CNN_CHECK(y, CNN_ERR_INVALID_ARG, "linear: y is NULL");
    *y = NULL;
    linear_geom g;
    CNN_TRY(linear_resolve(x, w, b, &g));
    cnn_status st = CNN_OK;
    cnn_tensor *xc = NULL, *wc = NULL, *bc = NULL;
    CNN_TRYG(cnn_contig(x, &xc));
    CNN_TRYG(cnn_contig(w, &wc));
    if (b) CNN_TRYG(cnn_contig(b, &bc));
    CNN_TRYG(cnn_tensor_empty_for("linear", CNN_SHAPE(g.n, g.out), CNN_F32, x->device, y));
    if (cnn_on_cuda(x)) {
#if CNN_WITH_CUDA
        CNN_TRYG(cnn_cuda_linear_forward(cnn_ctx(), cnn_f32(xc), cnn_f32(wc),
                                         bc ? cnn_f32(bc) : NULL, g.n, g.in, g.out, cnn_f32(*y)));
#endif
    } else {
        /* x: (N, in), w: (out, in), b: (out) -> y: (N, out); the bias rows go in first so the
         * sgemm adds onto them (beta = 1). */
        float *py = cnn_f32(*y);
        if (g.n > 0 && g.out > 0) {
            if (bc) {
                const float *pb = cnn_f32(bc);
                for (int64_t i = 0; i < g.n; i++)
                    memcpy(py + i * g.out, pb, (size_t)g.out * sizeof *py);
            }
            /* no input features: y is the bias alone, or zeros (BLAS wants k >= 1 here) */
            if (g.in == 0 && !bc) zero_fill(*y);
            else if (g.in > 0)
                cnn_sgemm(false, true, (int)g.n, (int)g.out, (int)g.in, 1.0f, cnn_f32(xc),
                          (int)g.in, cnn_f32(wc), (int)g.in, bc ? 1.0f : 0.0f, py, (int)g.out);
        }
    }
    const cnn_tensor *in[3] = {x, w, b};
    if (cnn_should_record(in, 3)) {
        cnn_node *nd = NULL;
        CNN_TRYG(cnn_tape_record("linear", linear_backward, *y, in, 3, &g, sizeof g, &nd));
        cnn_node_save(nd, nd->in[1].needs_grad ? xc : NULL); /* for dw = dy^T x */
        cnn_node_save(nd, nd->in[0].needs_grad ? wc : NULL); /* for dx = dy w */
    }
done:
    cnn_tensor_free(&xc);
    cnn_tensor_free(&wc);
    cnn_tensor_free(&bc);
    if (st != CNN_OK) cnn_tensor_free(y);
    return st;
}
