/* rng.c — the context's counter-based random stream (Philox4x32-10, see philox.h). A draw of n
 * values takes a block of counters starting at the context's offset, so CPU and CUDA produce
 * identical numbers and a (seed, offset) pair restores the stream exactly. Random ops inside a
 * CUDA graph capture take their counters from the graph instead (cnn_rng_draw_take), so that
 * every replay draws new numbers: the ones the same ops run one by one would have drawn. */
#include "internal.h"
#include "parallel.h"
#include "philox.h"

#include <math.h>

#if CNN_WITH_CUDA
#include "../cuda/cuda_api.h"
#endif

void cnn_manual_seed(uint64_t seed)
{
    cnn_context *c = cnn_ctx();
    c->rng_seed = seed;
    c->rng_offset = 0;
}

void cnn_rng_get_state(uint64_t *seed, uint64_t *offset)
{
    cnn_context *c = cnn_ctx();
    if (seed) *seed = c->rng_seed;
    if (offset) *offset = c->rng_offset;
}

void cnn_rng_set_state(uint64_t seed, uint64_t offset)
{
    cnn_context *c = cnn_ctx();
    c->rng_seed = seed;
    c->rng_offset = offset;
}

uint64_t cnn_rng_take(int64_t n_counters)
{
    cnn_context *c = cnn_ctx();
    uint64_t first = c->rng_offset;
    c->rng_offset += (uint64_t)(n_counters > 0 ? n_counters : 0);
    return first;
}

cnn_status cnn_rng_draw_take(int64_t n_counters, cnn_device device, cnn_rng_draw *d,
                             const cnn_tensor **keep)
{
    cnn_context *c = cnn_ctx();
    if (keep) *keep = NULL;
#if CNN_WITH_CUDA
    if (device.type == CNN_DEVICE_CUDA && cnn_cuda_capturing(c)) {
        const cnn_tensor *state = NULL;
        *d = (cnn_rng_draw){0};
        CNN_TRY(cnn_cuda_capture_rng(c, n_counters, &state, &d->offset));
        d->state = (const uint64_t *)cnn_ptr(state);
        if (keep) *keep = state;
        return CNN_OK;
    }
#endif
    (void)device;
    *d = (cnn_rng_draw){c->rng_seed, cnn_rng_take(n_counters), NULL};
    return CNN_OK;
}

/* Normal element i: Box-Muller on the two words (2*(i%2), 2*(i%2)+1) of counter offset + i/2.
 * (Kept in step with cuda/tensor_ops.cu.) */
static float normal_at(uint64_t seed, uint64_t offset, int64_t i)
{
    uint32_t r[4];
    cnn_philox4x32(seed, offset + (uint64_t)i / 2, r);
    int lane = (int)(i % 2) * 2;
    float u1 = ((float)(r[lane] >> 8) + 1.0f) * (1.0f / 16777216.0f); /* (0, 1] */
    float u2 = cnn_u32_to_unit(r[lane + 1]);
    return sqrtf(-2.0f * logf(u1)) * cosf(6.2831853071795864f * u2);
}

cnn_status cnn_rng_fill(float *data, int64_t n, int dist, float a, float b, cnn_device device)
{
    cnn_rng_draw d;
    CNN_TRY(cnn_rng_draw_take(dist == 0 ? (n + 3) / 4 : (n + 1) / 2, device, &d, NULL));
    const uint64_t seed = d.seed, offset = d.offset;
    if (device.type == CNN_DEVICE_CUDA) {
#if CNN_WITH_CUDA
        return cnn_cuda_random_f32(cnn_ctx(), data, n, dist, a, b, d);
#else
        return cnn_error(CNN_ERR_DEVICE, "random: CUDA tensor in a build without CUDA");
#endif
    }
    if (dist == 0) {
        /* One Philox call (about 60 integer operations) per element counts as its work. */
        #pragma omp parallel for if (cnn_par_worth(n * 60))
        for (int64_t i = 0; i < n; i++)
            data[i] = cnn_uniform_below(a + (b - a) * cnn_philox_uniform(seed, offset, (uint64_t)i),
                                        a, b);
    } else {
        #pragma omp parallel for if (cnn_par_worth(n * 60))
        for (int64_t i = 0; i < n; i++) data[i] = a + b * normal_at(seed, offset, i);
    }
    return CNN_OK;
}
