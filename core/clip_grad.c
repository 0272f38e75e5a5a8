/* clip_grad.c — torch.nn.utils.clip_grad_norm_ over a list of parameters' gradients: the total
 * L2 norm (reduced on the device for CUDA gradients) and the in-place scaling. It knows nothing
 * of optimizers (optim.c hands it an optimizer's parameters) and records nothing on the tape. */
#include "internal.h"
#include "parallel.h"
#if CNN_WITH_CUDA
#include "../cuda/cuda_api.h"
#endif

#include <math.h>

static double sum_squares_cpu(const float *d, int64_t m)
{
    double s = 0;
    #pragma omp parallel for reduction(+ : s) if (cnn_par_worth(m * 2))
    for (int64_t j = 0; j < m; j++) s += (double)d[j] * d[j];
    return s;
}

#if CNN_WITH_CUDA
/* On the CUDA gradients of params: scale false, *total = their norm, reduced on the device (only
 * the final scalar comes back); scale true, each is multiplied by coef, all in a few launches. */
static cnn_status grads_cuda(cnn_tensor *const *params, int n, bool scale, float coef,
                             float *total)
{
    float **xs = malloc((size_t)(n ? n : 1) * sizeof *xs);
    int64_t *ns = malloc((size_t)(n ? n : 1) * sizeof *ns);
    cnn_status st = CNN_OK;
    if (!xs || !ns) st = cnn_error(CNN_ERR_OUT_OF_MEMORY, "clip_grad_norm: out of host memory");
    int count = 0;
    for (int i = 0; st == CNN_OK && i < n; i++) {
        const cnn_tensor *g = params[i] ? params[i]->grad : NULL;
        if (!g) continue;
        xs[count] = cnn_f32(g);
        ns[count++] = cnn_shape_numel(g->shape);
    }
    if (st == CNN_OK)
        st = scale ? cnn_cuda_scale_multi_f32(cnn_ctx(), xs, ns, count, coef)
                   : cnn_cuda_norm2_f32(cnn_ctx(), (const float *const *)xs, ns, count, total);
    free(xs);
    free(ns);
    return st;
}
#endif

cnn_status cnn_clip_grad_norm(cnn_tensor *const *params, int n, float max_norm, float *total_norm)
{
    CNN_CHECK(n >= 0, CNN_ERR_INVALID_ARG, "clip_grad_norm: negative count %d", n);
    CNN_CHECK(params || n == 0, CNN_ERR_INVALID_ARG,
              "clip_grad_norm: params is NULL but n is %d", n);
    CNN_CHECK(max_norm >= 0, CNN_ERR_INVALID_ARG, "clip_grad_norm: invalid max_norm %g", max_norm);
    const cnn_tensor *first = NULL;
    int first_i = -1;
    for (int i = 0; i < n; i++) {
        const cnn_tensor *g = params[i] ? params[i]->grad : NULL;
        if (!g) continue;
#if !CNN_WITH_CUDA
        CNN_CHECK(g->device.type == CNN_DEVICE_CPU, CNN_ERR_UNSUPPORTED,
                  "clip_grad_norm: gradient %d is on cuda:%d, which has no kernel in this build",
                  i, g->device.index);
#endif
        CNN_CHECK(g->dtype == CNN_F32 && cnn_tensor_is_contiguous(g), CNN_ERR_INVALID_ARG,
                  "clip_grad_norm: gradient %d %s is not a contiguous F32 tensor", i,
                  cnn_shape_of(g));
        if (!first) {
            first = g;
            first_i = i;
            continue;
        }
        char an[32], bn[32];
        snprintf(an, sizeof an, "gradient %d", first_i);
        snprintf(bn, sizeof bn, "gradient %d", i);
        CNN_TRY(cnn_check_same_device("clip_grad_norm", first, an, g, bn));
    }
    float total = 0;
#if CNN_WITH_CUDA
    if (first && cnn_on_cuda(first)) CNN_TRY(grads_cuda(params, n, false, 0.0f, &total));
    else
#endif
    {
        double sq = 0;
        for (int i = 0; i < n; i++) {
            const cnn_tensor *g = params[i] ? params[i]->grad : NULL;
            if (g) sq += sum_squares_cpu(cnn_f32(g), cnn_shape_numel(g->shape));
        }
        total = (float)sqrt(sq);
    }
    if (total_norm) *total_norm = total;
    float coef = max_norm / (total + 1e-6f);
    /* As PyTorch: grads are multiplied by min(coef, 1), so a NaN/inf norm spreads to them. */
    if (coef >= 1.0f) return CNN_OK;
    for (int i = 0; i < n; i++)
        if (params[i]) cnn_storage_bump(params[i]->grad);
#if CNN_WITH_CUDA
    if (first && cnn_on_cuda(first)) return grads_cuda(params, n, true, coef, NULL);
#endif
    for (int i = 0; i < n; i++) {
        cnn_tensor *g = params[i] ? params[i]->grad : NULL;
        if (!g) continue;
        float *d = cnn_f32(g);
        int64_t m = cnn_shape_numel(g->shape);
        for (int64_t j = 0; j < m; j++) d[j] *= coef;
    }
    return CNN_OK;
}
