/* init.c — parameter initialisers with torch.nn.init's formulas (gains, fans, Kaiming, Xavier,
 * PyTorch's default Conv2d/Linear init). They fill tensors in place from the context RNG and
 * record nothing on the tape. */
#include "internal.h"

#include <float.h>
#include <math.h>

static cnn_status check_target(const char *op, const cnn_tensor *t)
{
    CNN_CHECK(t, CNN_ERR_INVALID_ARG, "%s: tensor is NULL", op);
    CNN_CHECK(t->dtype == CNN_F32, CNN_ERR_UNSUPPORTED, "%s: tensor %s has dtype %s; only F32",
              op, cnn_shape_of(t), cnn_dtype_name(t->dtype));
    return CNN_OK;
}

/* torch.nn.init.calculate_gain in double, as Python computes it: Kaiming's bounds take it
 * unrounded (a gain rounded to float first made a quarter of them 1 ulp low). */
static cnn_status gain_of(const char *op, cnn_nonlinearity nl, double param, double *gain)
{
    switch (nl) {
    case CNN_NONLIN_LINEAR:
    case CNN_NONLIN_SIGMOID: *gain = 1.0; return CNN_OK;
    case CNN_NONLIN_TANH: *gain = 5.0 / 3.0; return CNN_OK;
    case CNN_NONLIN_RELU: *gain = sqrt(2.0); return CNN_OK;
    case CNN_NONLIN_LEAKY_RELU:
        CNN_CHECK(isfinite(param), CNN_ERR_INVALID_ARG, "%s: negative slope %g is not a number",
                  op, param);
        *gain = sqrt(2.0 / (1.0 + param * param));
        return CNN_OK;
    case CNN_NONLIN_SELU: *gain = 0.75; return CNN_OK;
    }
    return cnn_error(CNN_ERR_INVALID_ARG, "%s: unknown nonlinearity %d", op, (int)nl);
}

cnn_status cnn_init_gain(cnn_nonlinearity nl, float param, float *gain)
{
    CNN_CHECK(gain, CNN_ERR_INVALID_ARG, "init_gain: gain is NULL");
    double g = 0;
    CNN_TRY(gain_of("init_gain", nl, param, &g));
    *gain = (float)g;
    return CNN_OK;
}

cnn_status cnn_init_fans(const cnn_tensor *t, int64_t *fan_in, int64_t *fan_out)
{
    CNN_CHECK(t, CNN_ERR_INVALID_ARG, "init_fans: tensor is NULL");
    CNN_CHECK(t->shape.ndim >= 2, CNN_ERR_SHAPE, "init_fans: fan in and fan out cannot be computed "
              "for tensor %s with fewer than 2 dimensions", cnn_shape_of(t));
    int64_t field = 1;
    for (int i = 2; i < t->shape.ndim; i++) field *= t->shape.d[i];
    if (fan_in) *fan_in = t->shape.d[1] * field;
    if (fan_out) *fan_out = t->shape.d[0] * field;
    return CNN_OK;
}

/* Draws into a fresh contiguous tensor, then copies: works for any layout and device. */
static cnn_status fill_random(cnn_tensor *t, bool normal, float a, float b)
{
    cnn_tensor *tmp = NULL;
    if (normal) CNN_TRY(cnn_tensor_normal(t->shape, a, b, t->device, &tmp));
    else CNN_TRY(cnn_tensor_uniform(t->shape, a, b, t->device, &tmp));
    cnn_status st = cnn_tensor_copy_(t, tmp);
    cnn_tensor_free(&tmp);
    return st;
}

cnn_status cnn_init_uniform_(cnn_tensor *t, float low, float high)
{
    CNN_TRY(check_target("init_uniform_", t));
    CNN_CHECK(low <= high && isfinite(low) && isfinite(high) &&
                  (double)high - (double)low <= FLT_MAX,
              CNN_ERR_INVALID_ARG, "init_uniform_: need finite low <= high with high - low <= "
              "FLT_MAX, got [%g, %g)", low, high);
    return fill_random(t, false, low, high);
}

cnn_status cnn_init_normal_(cnn_tensor *t, float mean, float std)
{
    CNN_TRY(check_target("init_normal_", t));
    CNN_CHECK(std >= 0 && isfinite(std) && isfinite(mean), CNN_ERR_INVALID_ARG,
              "init_normal_: need a finite mean and std >= 0, got mean %g, std %g", mean, std);
    return fill_random(t, true, mean, std);
}

static cnn_status constant(const char *op, cnn_tensor *t, float value)
{
    CNN_TRY(check_target(op, t));
    return cnn_tensor_fill_(t, value);
}

cnn_status cnn_init_constant_(cnn_tensor *t, float value)
{
    return constant("init_constant_", t, value);
}
cnn_status cnn_init_zeros_(cnn_tensor *t) { return constant("init_zeros_", t, 0.0f); }
cnn_status cnn_init_ones_(cnn_tensor *t) { return constant("init_ones_", t, 1.0f); }

static cnn_status kaiming(const char *op, cnn_tensor *t, double a, cnn_fan_mode mode,
                          cnn_nonlinearity nl, bool normal)
{
    CNN_TRY(check_target(op, t));
    /* Zero elements: a no-op whatever the other arguments, as in PyTorch (which returns before
     * computing the fan or the gain). */
    if (cnn_shape_numel(t->shape) == 0) return CNN_OK;
    CNN_CHECK(mode == CNN_FAN_IN || mode == CNN_FAN_OUT, CNN_ERR_INVALID_ARG,
              "%s: unknown fan mode %d", op, (int)mode);
    int64_t fan_in, fan_out;
    CNN_TRY(cnn_init_fans(t, &fan_in, &fan_out));
    int64_t fan = mode == CNN_FAN_IN ? fan_in : fan_out;
    double gain;
    CNN_TRY(gain_of(op, nl, a, &gain));
    double std = gain / sqrt((double)fan);
    return normal ? fill_random(t, true, 0.0f, (float)std)
                  : fill_random(t, false, (float)(-sqrt(3.0) * std), (float)(sqrt(3.0) * std));
}

cnn_status cnn_init_kaiming_uniform_(cnn_tensor *t, float a, cnn_fan_mode mode,
                                     cnn_nonlinearity nl)
{
    return kaiming("init_kaiming_uniform_", t, a, mode, nl, false);
}

cnn_status cnn_init_kaiming_normal_(cnn_tensor *t, float a, cnn_fan_mode mode,
                                    cnn_nonlinearity nl)
{
    return kaiming("init_kaiming_normal_", t, a, mode, nl, true);
}

static cnn_status xavier(const char *op, cnn_tensor *t, float gain, bool normal)
{
    CNN_TRY(check_target(op, t));
    CNN_CHECK(gain >= 0 && isfinite(gain), CNN_ERR_INVALID_ARG, "%s: invalid gain %g", op, gain);
    int64_t fan_in, fan_out;
    CNN_TRY(cnn_init_fans(t, &fan_in, &fan_out));
    if (cnn_shape_numel(t->shape) == 0) return CNN_OK;
    double std = gain * sqrt(2.0 / (double)(fan_in + fan_out));
    return normal ? fill_random(t, true, 0.0f, (float)std)
                  : fill_random(t, false, (float)(-sqrt(3.0) * std), (float)(sqrt(3.0) * std));
}

cnn_status cnn_init_xavier_uniform_(cnn_tensor *t, float gain)
{
    return xavier("init_xavier_uniform_", t, gain, false);
}

cnn_status cnn_init_xavier_normal_(cnn_tensor *t, float gain)
{
    return xavier("init_xavier_normal_", t, gain, true);
}

cnn_status cnn_init_default_(cnn_tensor *weight, cnn_tensor *bias)
{
    CNN_TRY(check_target("init_default_", weight));
    int64_t fan_in;
    CNN_TRY(cnn_init_fans(weight, &fan_in, NULL));
    if (bias) {
        CNN_TRY(check_target("init_default_", bias));
        CNN_CHECK(bias->shape.ndim == 1 && bias->shape.d[0] == weight->shape.d[0], CNN_ERR_SHAPE,
                  "init_default_: bias %s does not match weight %s (expected (%lld))",
                  cnn_shape_of(bias), cnn_shape_of(weight), (long long)weight->shape.d[0]);
    }
    /* kaiming_uniform_(a=sqrt(5)): gain sqrt(1/3), bound sqrt(3) * gain / sqrt(fan_in), with
     * Python's double sqrt(5). */
    CNN_TRY(kaiming("init_default_", weight, sqrt(5.0), CNN_FAN_IN, CNN_NONLIN_LEAKY_RELU, false));
    if (!bias) return CNN_OK;
    /* No inputs: PyTorch's bound is the integer 0, so the bias is +0 (U[-0, 0) drew -0). */
    if (fan_in == 0) return cnn_tensor_fill_(bias, 0.0f);
    float bound = (float)(1.0 / sqrt((double)fan_in));
    return cnn_init_uniform_(bias, -bound, bound);
}
