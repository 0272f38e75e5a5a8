/* dropout.c — inverted dropout: forward, backward, CPU kernel and the choice of CUDA kernel
 * (cuda/dropout.cu). The mask is never stored: element i is kept when Philox uniform i of the
 * block of counters the call drew (cnn_rng_draw_take) is < 1 - p, so backward and the CUDA
 * kernel regenerate exactly the same mask. Inside a CUDA graph capture the block is the
 * graph's, so each replay drops new elements. */
#include "internal.h"
#include "parallel.h"
#include "philox.h"
#if CNN_WITH_CUDA
#include "../cuda/cuda_api.h"
#endif

#include <math.h>

typedef struct {
    cnn_rng_draw draw; /* the Philox block this call drew: counter offset + i/4, word i%4 */
    float p;
} dropout_params;

static float keep_below_of(const dropout_params *p) { return 1.0f - p->p; }
static float scale_of(const dropout_params *p) { return p->p < 1.0f ? 1.0f / (1.0f - p->p) : 0.0f; }

/* y[i] = x[i] * (keep(i) ? scale : 0), keep(i) = uniform(seed, offset, i) < 1 - p: PyTorch's
 * x * mask / (1 - p), so a dropped NaN or inf is NaN, not 0. Also the backward, with x = dy.
 * One Philox call yields the four uniforms of elements 4j..4j+3, the same numbers
 * cnn_philox_uniform gives one at a time. */
// x, y: (numel)
static void dropout_cpu(const dropout_params *p, const float *x, float *y, int64_t n)
{
    float keep_below = keep_below_of(p), scale = scale_of(p);
    int64_t blocks = (n + 3) / 4;
    #pragma omp parallel for if (cnn_par_worth(n))
    for (int64_t b = 0; b < blocks; b++) {
        uint32_t r[4];
        cnn_philox4x32(p->draw.seed, p->draw.offset + (uint64_t)b, r);
        for (int k = 0; k < 4; k++) {
            int64_t i = 4 * b + k;
            if (i < n) y[i] = x[i] * (cnn_u32_to_unit(r[k]) < keep_below ? scale : 0.0f);
        }
    }
}

/* Runs the CUDA kernel for device memory, else the CPU loop. */
static cnn_status dropout_run(const dropout_params *p, const cnn_tensor *x, cnn_tensor *y)
{
    int64_t n = cnn_shape_numel(x->shape);
#if CNN_WITH_CUDA
    if (cnn_on_cuda(x))
        return cnn_cuda_dropout_f32(cnn_ctx(), cnn_f32(x), cnn_f32(y), n, p->draw,
                                    keep_below_of(p), scale_of(p));
#endif
    dropout_cpu(p, cnn_f32(x), cnn_f32(y), n);
    return CNN_OK;
}

static cnn_status dropout_backward(cnn_node *node, const cnn_tensor *dy, cnn_tensor **dx)
{
    const dropout_params *p = (const dropout_params *)node->params;
    CNN_ASSERT(cnn_tensor_is_contiguous(dy));
    CNN_TRY(cnn_tensor_empty(node->in[0].shape, CNN_F32, node->in[0].device, &dx[0]));
    return dropout_run(p, dy, dx[0]);
}

cnn_status cnn_dropout(const cnn_tensor *x, float p, bool training, cnn_tensor **y)
{
    CNN_CHECK(y, CNN_ERR_INVALID_ARG, "dropout: y is NULL");
    *y = NULL;
    CNN_CHECK(x, CNN_ERR_INVALID_ARG, "dropout: x is NULL");
    CNN_CHECK(p >= 0.0f && p <= 1.0f, CNN_ERR_INVALID_ARG,
              "dropout: probability p = %g is outside [0, 1]", (double)p);
    /* The identity needs no kernel, so it serves every device. */
    if (!training || p == 0.0f) {
        *y = cnn_tensor_retain((cnn_tensor *)x);
        return CNN_OK;
    }
    CNN_TRY(cnn_check_f32("dropout", "x", x));
    int64_t n = cnn_shape_numel(x->shape);
    dropout_params dp = {.p = p};
    const cnn_tensor *state = NULL; /* a graph's random state, which the backward reads too */
    CNN_TRY(cnn_rng_draw_take((n + 3) / 4, x->device, &dp.draw, &state));
    cnn_status st = CNN_OK;
    cnn_tensor *xc = NULL;
    cnn_node *node = NULL;
    CNN_TRYG(cnn_contig(x, &xc));
    CNN_TRYG(cnn_tensor_empty_for("dropout", x->shape, CNN_F32, x->device, y));
    CNN_TRYG(dropout_run(&dp, xc, *y));
    if (cnn_should_record(&x, 1)) {
        CNN_TRYG(cnn_tape_record("dropout", dropout_backward, *y, &x, 1, &dp, sizeof dp, &node));
        if (state) cnn_node_save(node, state);
    }
done:
    cnn_tensor_free(&xc);
    if (st != CNN_OK) cnn_tensor_free(y);
    return st;
}
