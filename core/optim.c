/* optim.c — SGD, Adam and AdamW with torch.optim's update formulas (their state dicts for
 * checkpoints are optim_state.c's, gradient-norm clipping itself clip_grad.c's). Parameters are
 * updated in place and nothing is recorded on the tape. Each optimizer's per-parameter update is
 * one function over raw floats; CUDA parameters are all updated together by a fused multi-tensor
 * kernel (cuda/optim.cu) doing the same float operations, and the state tensors live on the
 * parameter's device. */
#include "internal.h"
#include "json.h"
#include "optim.h"
#include "parallel.h"
#if CNN_WITH_CUDA
#include "../cuda/cuda_api.h"
#endif

#include <math.h>

cnn_optim_config cnn_optim_defaults(cnn_optim_kind kind)
{
    cnn_optim_config c = {.kind = kind, .lr = 1e-3f};
    if (kind == CNN_OPTIM_ADAM || kind == CNN_OPTIM_ADAMW) {
        c.beta1 = 0.9f;
        c.beta2 = 0.999f;
        c.eps = 1e-8f;
    }
    if (kind == CNN_OPTIM_ADAMW) c.weight_decay = 1e-2f;
    return c;
}

static cnn_status check_lr(const char *op, float lr)
{
    CNN_CHECK(lr >= 0 && isfinite(lr), CNN_ERR_INVALID_ARG, "%s: invalid learning rate %g", op, lr);
    return CNN_OK;
}

static cnn_status check_config(const cnn_optim_config *c)
{
    CNN_CHECK(c->kind == CNN_OPTIM_SGD || c->kind == CNN_OPTIM_ADAM || c->kind == CNN_OPTIM_ADAMW,
              CNN_ERR_INVALID_ARG, "optim_create: unknown optimizer kind %d", (int)c->kind);
    CNN_TRY(check_lr("optim_create", c->lr));
    CNN_CHECK(c->weight_decay >= 0, CNN_ERR_INVALID_ARG, "optim_create: invalid weight_decay %g",
              c->weight_decay);
    if (c->kind == CNN_OPTIM_SGD) {
        CNN_CHECK(c->momentum >= 0, CNN_ERR_INVALID_ARG, "optim_create: invalid momentum %g",
                  c->momentum);
        CNN_CHECK(isfinite(c->dampening), CNN_ERR_INVALID_ARG, "optim_create: invalid dampening %g",
                  c->dampening);
        CNN_CHECK(!c->nesterov || (c->momentum > 0 && c->dampening == 0), CNN_ERR_INVALID_ARG,
                  "optim_create: Nesterov momentum needs momentum > 0 and dampening 0 (got "
                  "momentum %g, dampening %g)", c->momentum, c->dampening);
        return CNN_OK;
    }
    CNN_CHECK(c->beta1 >= 0 && c->beta1 < 1, CNN_ERR_INVALID_ARG,
              "optim_create: invalid beta1 %g (must be in [0, 1))", c->beta1);
    CNN_CHECK(c->beta2 >= 0 && c->beta2 < 1, CNN_ERR_INVALID_ARG,
              "optim_create: invalid beta2 %g (must be in [0, 1))", c->beta2);
    CNN_CHECK(c->eps >= 0, CNN_ERR_INVALID_ARG, "optim_create: invalid eps %g", c->eps);
    return CNN_OK;
}

cnn_status cnn_optim_create(const cnn_optim_config *cfg, cnn_optim **out)
{
    CNN_CHECK(cfg && out, CNN_ERR_INVALID_ARG, "optim_create: NULL argument");
    *out = NULL;
    CNN_TRY(check_config(cfg));
    cnn_optim *o = calloc(1, sizeof *o);
    CNN_CHECK(o, CNN_ERR_OUT_OF_MEMORY, "optim_create: out of host memory");
    o->cfg = *cfg;
    *out = o;
    return CNN_OK;
}

static void param_free(optim_param *q)
{
    free(q->name);
    cnn_tensor_free(&q->p);
    cnn_tensor_free(&q->s1);
    cnn_tensor_free(&q->s2);
}

void cnn_optim_destroy(cnn_optim **opt)
{
    if (!opt || !*opt) return;
    for (int i = 0; i < (*opt)->n; i++) param_free(&(*opt)->ps[i]);
    cnn_tensor_free(&(*opt)->lr_dev);
    cnn_tensor_free(&(*opt)->adam_dev);
    free((*opt)->ps);
    free(*opt);
    *opt = NULL;
}

cnn_status cnn_optim_add_param(cnn_optim *opt, const char *name, cnn_tensor *param,
                               bool apply_weight_decay)
{
    CNN_CHECK(opt && name && param, CNN_ERR_INVALID_ARG, "optim_add_param: NULL argument");
    CNN_CHECK(name[0], CNN_ERR_INVALID_ARG, "optim_add_param: empty parameter name");
    CNN_CHECK(strlen(name) <= OPTIM_NAME_MAX, CNN_ERR_INVALID_ARG, "optim_add_param: name "
              "'%.60s...' has %zu bytes; a state-dict key holds a name of at most %d", name,
              strlen(name), OPTIM_NAME_MAX);
    /* Its state-dict keys are a checkpoint's JSON text, which cnn_dict_set_meta refuses. */
    CNN_CHECK(cnn_utf8_valid(name, strlen(name)), CNN_ERR_INVALID_ARG,
              "optim_add_param: the parameter name is not valid UTF-8 text");
    CNN_CHECK(param->dtype == CNN_F32, CNN_ERR_UNSUPPORTED,
              "optim_add_param: '%s' has dtype %s; only F32 parameters can be optimized", name,
              cnn_dtype_name(param->dtype));
    CNN_CHECK(param->requires_grad || !cnn_tensor_requires_grad(param), CNN_ERR_INVALID_ARG,
              "optim_add_param: '%s' %s is the output of a recorded op, not a leaf", name,
              cnn_shape_of(param));
    CNN_CHECK(cnn_tensor_is_contiguous(param), CNN_ERR_INVALID_ARG,
              "optim_add_param: '%s' %s is not contiguous", name, cnn_shape_of(param));
    for (int i = 0; i < opt->n; i++) {
        CNN_CHECK(strcmp(opt->ps[i].name, name) != 0, CNN_ERR_INVALID_ARG,
                  "optim_add_param: a parameter named '%s' was already added", name);
        CNN_CHECK(opt->ps[i].p != param, CNN_ERR_INVALID_ARG,
                  "optim_add_param: '%s' is the same tensor as '%s', already added", name,
                  opt->ps[i].name);
    }
    if (opt->n == opt->cap) {
        int cap = opt->cap ? 2 * opt->cap : 16;
        optim_param *ps = realloc(opt->ps, (size_t)cap * sizeof *ps);
        CNN_CHECK(ps, CNN_ERR_OUT_OF_MEMORY, "optim_add_param: out of host memory");
        opt->ps = ps;
        opt->cap = cap;
    }
    char *copy = strdup(name);
    CNN_CHECK(copy, CNN_ERR_OUT_OF_MEMORY, "optim_add_param: out of host memory");
    opt->ps[opt->n++] = (optim_param){.name = copy, .p = cnn_tensor_retain(param),
                                      .decay = apply_weight_decay};
    return CNN_OK;
}

cnn_status cnn_optim_add_dict(cnn_optim *opt, const cnn_dict *d, bool decay_1d)
{
    CNN_CHECK(opt && d, CNN_ERR_INVALID_ARG, "optim_add_dict: NULL argument");
    int n0 = opt->n;
    for (int i = 0; i < cnn_dict_size(d); i++) {
        cnn_tensor *t = cnn_dict_at(d, i);
        if (!t->requires_grad) continue;
        bool decay = decay_1d || t->shape.ndim > 1;
        cnn_status st = cnn_optim_add_param(opt, cnn_dict_name(d, i), t, decay);
        if (st != CNN_OK) {
            while (opt->n > n0) param_free(&opt->ps[--opt->n]);
            return st;
        }
    }
    return CNN_OK;
}

/* ---- per-parameter updates (CPU reference; a CUDA launcher takes the same arguments) ------- */
/* p, g, buf: (n). buf is NULL without momentum; first: buf holds nothing yet and starts as the
 * (decayed) gradient, as torch.optim.SGD's clone(grad). */
static void sgd_update_f32(float *p, const float *g, float *buf, int64_t n, float lr,
                           float momentum, float dampening, bool nesterov, float wd, bool first)
{
    const float keep = (float)(1.0 - (double)dampening), neg_lr = -lr;
    #pragma omp parallel for if (cnn_par_worth(n * 8))
    for (int64_t i = 0; i < n; i++) {
        float gi = g[i];
        if (wd != 0) gi = gi + wd * p[i];
        if (buf) {
            float b = first ? gi : buf[i] * momentum + keep * gi;
            buf[i] = b;
            gi = nesterov ? gi + momentum * b : b;
        }
        p[i] = p[i] + neg_lr * gi;
    }
}

/* torch.lerp's two-sided form, which keeps the result exact at both ends. */
static inline float lerp_f32(float a, float b, float w)
{
    return w < 0.5f ? a + w * (b - a) : b - (b - a) * (1.0f - w);
}

/* p, g, m (exp_avg), v (exp_avg_sq): (n). step counts this update (>= 1). decoupled: AdamW's
 * p *= 1 - lr*wd before the Adam step; else wd is L2 added to the gradient. */
/* An Adam step's scalars {shrink, step_size, bc2_sqrt}: in double as PyTorch computes them in
 * Python, then rounded once (the CUDA update reads the same three from device memory). */
static void adam_scalars(float lr, float beta1, float beta2, float wd, int64_t step, float out[3])
{
    const double bc1 = 1.0 - pow((double)beta1, (double)step);
    const double bc2 = 1.0 - pow((double)beta2, (double)step);
    out[0] = (float)(1.0 - (double)lr * (double)wd);
    out[1] = (float)((double)lr / bc1);
    out[2] = (float)sqrt(bc2);
}

static void adam_update_f32(float *p, const float *g, float *m, float *v, int64_t n, float lr,
                            float beta1, float beta2, float eps, float wd, bool decoupled,
                            int64_t step)
{
    float sc[3];
    adam_scalars(lr, beta1, beta2, wd, step, sc);
    const float shrink = sc[0], step_size = sc[1], bc2_sqrt = sc[2];
    const float w1 = (float)(1.0 - (double)beta1), w2 = (float)(1.0 - (double)beta2);
    const bool l2 = !decoupled && wd != 0, dec = decoupled && wd != 0;
    #pragma omp parallel for if (cnn_par_worth(n * 8))
    for (int64_t i = 0; i < n; i++) {
        float pi = p[i], gi = g[i];
        if (dec) pi = pi * shrink;
        if (l2) gi = gi + wd * pi;
        float mi = lerp_f32(m[i], gi, w1);
        float vi = v[i] * beta2 + w2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        float denom = sqrtf(vi) / bc2_sqrt + eps;
        p[i] = pi - step_size * (mi / denom);
    }
}

static bool uses_momentum_buffer(const cnn_optim_config *c)
{
    return c->kind == CNN_OPTIM_SGD && c->momentum != 0;
}

/* Checks a parameter's gradient and allocates missing state, changing no value. */
static cnn_status prepare(cnn_optim *opt, optim_param *q, const cnn_tensor *g)
{
    const cnn_tensor *p = q->p;
    CNN_CHECK(g->dtype == CNN_F32 && cnn_shape_equal(g->shape, p->shape), CNN_ERR_SHAPE,
              "optim_step: gradient of '%s' is %s %s, parameter is F32 %s", q->name,
              cnn_dtype_name(g->dtype), cnn_shape_of(g), cnn_shape_of(p));
    CNN_TRY(cnn_check_same_device("optim_step", p, q->name, g, "its gradient"));
#if CNN_WITH_CUDA
    /* Checked here, before any parameter changes, rather than when the first kernel is refused. */
    const cnn_context *c = cnn_ctx();
    CNN_CHECK(!cnn_on_cuda(p) ||
                  (c->device.type == CNN_DEVICE_CUDA && c->device.index == p->device.index),
              CNN_ERR_DEVICE, "optim_step: '%s' is on cuda:%d but the current context is on %s:%d",
              q->name, p->device.index, c->device.type == CNN_DEVICE_CUDA ? "cuda" : "cpu",
              c->device.index);
#else
    CNN_CHECK(p->device.type == CNN_DEVICE_CPU, CNN_ERR_UNSUPPORTED,
              "optim_step: '%s' is on cuda:%d and the optimizers have no CUDA kernel in this "
              "build", q->name, p->device.index);
#endif
    CNN_CHECK(cnn_tensor_is_contiguous(p) && cnn_tensor_is_contiguous(g), CNN_ERR_INVALID_ARG,
              "optim_step: '%s' or its gradient is no longer contiguous", q->name);
    /* The parameter moved (cnn_model_to) since its state was made: the state follows it, as
     * PyTorch's load_state_dict casts state to its parameter's device. */
    cnn_tensor **state[2] = {&q->s1, &q->s2};
    for (int i = 0; i < 2; i++) {
        cnn_tensor *s = *state[i], *moved = NULL;
        if (!s || (s->device.type == p->device.type && s->device.index == p->device.index))
            continue;
        CNN_TRY(cnn_tensor_to(s, p->device, &moved));
        cnn_tensor_free(state[i]);
        *state[i] = moved;
    }
    if (opt->cfg.kind == CNN_OPTIM_SGD) {
        if (uses_momentum_buffer(&opt->cfg) && !q->s1) /* filled from the first gradient */
            CNN_TRY(cnn_tensor_empty_for("optim", p->shape, CNN_F32, p->device, &q->s1));
        return CNN_OK;
    }
    if (!q->s1) CNN_TRY(cnn_tensor_zeros(p->shape, p->device, &q->s1));
    if (!q->s2) CNN_TRY(cnn_tensor_zeros(p->shape, p->device, &q->s2));
    return CNN_OK;
}

/* The CPU update of one parameter. */
static void update_cpu(const cnn_optim_config *c, optim_param *q, const cnn_tensor *g)
{
    float *p = cnn_f32(q->p), *buf = q->s1 ? cnn_f32(q->s1) : NULL;
    int64_t n = cnn_shape_numel(q->p->shape), step = q->step + 1;
    float wd = q->decay ? c->weight_decay : 0.0f;
    if (c->kind == CNN_OPTIM_SGD)
        sgd_update_f32(p, cnn_f32(g), buf, n, c->lr, c->momentum, c->dampening, c->nesterov, wd,
                       step == 1);
    else
        adam_update_f32(p, cnn_f32(g), buf, cnn_f32(q->s2), n, c->lr, c->beta1, c->beta2, c->eps,
                        wd, c->kind == CNN_OPTIM_ADAMW, step);
}

#if CNN_WITH_CUDA
/* Brings the device copy of the learning rate up to cfg.lr (made on first use, on the current
 * context's device; written on the stream, so ordered before the update that reads it). Inside
 * a capture nothing is written: the replay hook writes it before each replay. */
static cnn_status sync_lr(cnn_optim *opt)
{
    const cnn_device dev = cnn_ctx()->device;
    cnn_tensor *t = opt->lr_dev;
    const bool here = t && t->device.type == dev.type && t->device.index == dev.index;
    if (here && opt->lr_dev_value == opt->cfg.lr) return CNN_OK;
    if (cnn_cuda_capturing(cnn_ctx())) {
        CNN_CHECK(here, CNN_ERR_INVALID_ARG, "optim_step: the first CUDA step is inside a graph "
                  "capture (its state is made then); run one step before capturing");
        return CNN_OK;
    }
    if (here) {
        CNN_TRY(cnn_tensor_fill_(t, opt->cfg.lr));
    } else {
        cnn_tensor *fresh = NULL;
        CNN_TRY(cnn_tensor_full(CNN_SHAPE(1), opt->cfg.lr, dev, &fresh));
        cnn_tensor_free(&opt->lr_dev);
        opt->lr_dev = fresh;
    }
    opt->lr_dev_value = opt->cfg.lr;
    return CNN_OK;
}

/* Writes the Adam scalars of the next step of parameters idx[0, n) into t, 3 floats per
 * parameter index (the copy is ordered on the stream, behind the updates that read the previous
 * values). */
static cnn_status write_adam(const cnn_optim *opt, cnn_tensor *t, const int *idx, int n)
{
    const int64_t need = cnn_shape_numel(t->shape);
    float *h = calloc((size_t)need, sizeof *h);
    CNN_CHECK(h, CNN_ERR_OUT_OF_MEMORY, "optim_step: out of host memory");
    const cnn_optim_config *c = &opt->cfg;
    for (int k = 0; k < n; k++) {
        const optim_param *q = &opt->ps[idx[k]];
        if (3 * (int64_t)idx[k] + 3 > need) continue; /* not in t (added since it was made) */
        adam_scalars(c->lr, c->beta1, c->beta2, q->decay ? c->weight_decay : 0.0f, q->step + 1,
                     h + 3 * idx[k]);
    }
    cnn_status st = cnn_tensor_write(t, h, (size_t)need);
    free(h);
    return st;
}

/* Writes the Adam scalars of the next step of parameters idx[0, n) into opt->adam_dev (made,
 * or remade to fit, on the current context's device). Inside a capture nothing is written: the
 * replay hook writes before each replay. */
static cnn_status sync_adam(cnn_optim *opt, const int *idx, int n)
{
    const cnn_device dev = cnn_ctx()->device;
    const int64_t need = 3 * (int64_t)(opt->n ? opt->n : 1);
    cnn_tensor *t = opt->adam_dev;
    const bool fits = t && t->device.type == dev.type && t->device.index == dev.index &&
                      cnn_shape_numel(t->shape) == need;
    if (cnn_cuda_capturing(cnn_ctx())) {
        CNN_CHECK(fits, CNN_ERR_INVALID_ARG, "optim_step: the first CUDA step (or the first "
                  "since parameters were added) is inside a graph capture; run one step before "
                  "capturing");
        return CNN_OK;
    }
    if (!fits) {
        cnn_tensor *fresh = NULL;
        CNN_TRY(cnn_tensor_empty_for("optim", CNN_SHAPE(need), CNN_F32, dev, &fresh));
        cnn_tensor_free(&opt->adam_dev);
        opt->adam_dev = fresh;
    }
    return write_adam(opt, opt->adam_dev, idx, n);
}

/* All CUDA parameters with a gradient in one fused update (a few launches in all). Only a
 * failed launch, or the scalars' device copy, can fail here. */
static cnn_status update_cuda(cnn_optim *opt)
{
    const cnn_optim_config *c = &opt->cfg;
    const size_t n = (size_t)(opt->n ? opt->n : 1);
    cnn_cuda_param_update *us = malloc(n * sizeof *us);
    int *idx = malloc(n * sizeof *idx);
    cnn_status st = CNN_OK;
    if (!us || !idx) {
        st = cnn_error(CNN_ERR_OUT_OF_MEMORY, "optim_step: out of host memory");
        goto done;
    }
    int count = 0;
    for (int i = 0; i < opt->n; i++)
        if (opt->ps[i].p->grad && cnn_on_cuda(opt->ps[i].p)) idx[count++] = i;
    if (count == 0) goto done;
    st = c->kind == CNN_OPTIM_SGD ? sync_lr(opt) : sync_adam(opt, idx, count);
    if (st != CNN_OK) goto done;
    for (int k = 0; k < count; k++) {
        const optim_param *q = &opt->ps[idx[k]];
        us[k] = (cnn_cuda_param_update){
            .p = cnn_f32(q->p), .g = cnn_f32(q->p->grad), .s1 = q->s1 ? cnn_f32(q->s1) : NULL,
            .s2 = q->s2 ? cnn_f32(q->s2) : NULL, .n = cnn_shape_numel(q->p->shape),
            .wd = q->decay ? c->weight_decay : 0.0f, .step = q->step + 1,
            .adam = opt->adam_dev ? cnn_f32(opt->adam_dev) + 3 * idx[k] : NULL};
    }
    if (c->kind == CNN_OPTIM_SGD)
        st = cnn_cuda_sgd_update_f32(cnn_ctx(), us, count, cnn_f32(opt->lr_dev), c->momentum,
                                     c->dampening, c->nesterov);
    else
        st = cnn_cuda_adam_update_f32(cnn_ctx(), us, count, c->beta1, c->beta2, c->eps,
                                      c->kind == CNN_OPTIM_ADAMW);
done:
    free(us);
    free(idx);
    return st;
}

/* ---- inside a CUDA graph capture ---------------------------------------------------------
 * The captured update reads its scalars from device memory (SGD's learning rate, Adam's
 * per-step scalars), which each replay first brings up to date; each replay, not the capture,
 * counts as a step of the parameters that had a gradient at capture. The graph keeps every
 * tensor the update reads or writes (scalars, states, gradients): the optimizer may replace
 * its own (a step on another device, parameters added) and a gradient may be zeroed (freed)
 * between replays, and the captured addresses must stay the same memory. */
typedef struct captured_step {
    cnn_optim *opt;
    cnn_tensor *scalars; /* the lr_dev or adam_dev the update was captured with (kept) */
    int n;      /* entries of idx */
    int idx[];  /* the parameters updated */
} captured_step;

static cnn_status captured_step_hook(void *ud, bool commit)
{
    captured_step *c = ud;
    cnn_optim *opt = c->opt;
    if (!commit) {
        if (c->n == 0 || !c->scalars) return CNN_OK; /* no update was captured */
        if (opt->cfg.kind != CNN_OPTIM_SGD) return write_adam(opt, c->scalars, c->idx, c->n);
        /* The optimizer's own lr_dev is rewritten only when the rate changed; one it has since
         * replaced is the graph's alone and rewritten every time. */
        if (c->scalars != opt->lr_dev) return cnn_tensor_fill_(c->scalars, opt->cfg.lr);
        if (opt->lr_dev_value != opt->cfg.lr) CNN_TRY(cnn_tensor_fill_(c->scalars, opt->cfg.lr));
        opt->lr_dev_value = opt->cfg.lr;
        return CNN_OK;
    }
    for (int i = 0; i < c->n; i++) opt->ps[c->idx[i]].step++;
    opt->steps++;
    return CNN_OK;
}

/* Checks that a step can be captured and registers its replay hook; the update itself is
 * queued (recorded) by the caller as usual. */
static cnn_status capture_step(cnn_optim *opt)
{
    size_t size = sizeof(captured_step) + (size_t)(opt->n ? opt->n : 1) * sizeof(int);
    captured_step *c = malloc(size);
    CNN_CHECK(c, CNN_ERR_OUT_OF_MEMORY, "optim_step: out of host memory");
    *c = (captured_step){.opt = opt};
    cnn_status st = CNN_OK;
    for (int i = 0; i < opt->n && st == CNN_OK; i++) {
        optim_param *q = &opt->ps[i];
        if (!q->p->grad) continue;
        if (!cnn_on_cuda(q->p))
            st = cnn_error(CNN_ERR_UNSUPPORTED, "optim_step: parameter '%s' is on the CPU; a "
                           "graph capture records GPU work only", q->name);
        else if (q->step == 0)
            st = cnn_error(CNN_ERR_INVALID_ARG, "optim_step: parameter '%s' has its first "
                           "update inside a graph capture (its state is made then); run one "
                           "step before capturing", q->name);
        c->idx[c->n++] = i;
        cnn_context *ctx = cnn_ctx();
        if (st == CNN_OK) st = cnn_cuda_capture_keep(ctx, q->p->grad);
        if (st == CNN_OK) st = cnn_cuda_capture_keep(ctx, q->s1);
        if (st == CNN_OK) st = cnn_cuda_capture_keep(ctx, q->s2);
    }
    /* The scalars as the update will read them: checked and made current by the caller's
     * sync_lr / sync_adam, which run in the capture only to refuse a missing tensor. */
    c->scalars = opt->cfg.kind == CNN_OPTIM_SGD ? opt->lr_dev : opt->adam_dev;
    if (st == CNN_OK) st = cnn_cuda_capture_keep(cnn_ctx(), c->scalars);
    if (st == CNN_OK) st = cnn_cuda_capture_on_replay(cnn_ctx(), captured_step_hook, c, size);
    free(c);
    return st;
}
#endif

cnn_status cnn_optim_step(cnn_optim *opt)
{
    CNN_CHECK(opt, CNN_ERR_INVALID_ARG, "optim_step: optimizer is NULL");
    bool capturing = false;
#if CNN_WITH_CUDA
    capturing = cnn_cuda_capturing(cnn_ctx());
    if (capturing) CNN_TRY(capture_step(opt));
#endif
    /* All checks and allocations first, so that a failure leaves every parameter unchanged. */
    bool any_cuda = false;
    for (int i = 0; i < opt->n; i++) {
        optim_param *q = &opt->ps[i];
        if (!q->p->grad) continue;
        CNN_TRY(prepare(opt, q, q->p->grad));
        any_cuda = any_cuda || cnn_on_cuda(q->p);
    }
#if CNN_WITH_CUDA
    if (any_cuda) CNN_TRY(update_cuda(opt));
#else
    (void)any_cuda;
#endif
    for (int i = 0; i < opt->n; i++)
        if (opt->ps[i].p->grad) cnn_storage_bump(opt->ps[i].p);
    if (capturing) return CNN_OK; /* recorded: each replay counts as the step (capture_step) */
    for (int i = 0; i < opt->n; i++) {
        optim_param *q = &opt->ps[i];
        if (!q->p->grad) continue;
        if (!cnn_on_cuda(q->p)) update_cpu(&opt->cfg, q, q->p->grad);
        q->step++;
    }
    opt->steps++;
    return CNN_OK;
}

void cnn_optim_zero_grad(cnn_optim *opt)
{
    if (!opt) return;
    for (int i = 0; i < opt->n; i++) cnn_tensor_zero_grad(opt->ps[i].p);
}

cnn_status cnn_optim_set_lr(cnn_optim *opt, float lr)
{
    CNN_CHECK(opt, CNN_ERR_INVALID_ARG, "optim_set_lr: optimizer is NULL");
    CNN_TRY(check_lr("optim_set_lr", lr));
    opt->cfg.lr = lr;
    return CNN_OK;
}

float cnn_optim_get_lr(const cnn_optim *opt) { return opt ? opt->cfg.lr : NAN; }
int64_t cnn_optim_step_count(const cnn_optim *opt) { return opt ? opt->steps : 0; }

/* ---- gradient clipping -------------------------------------------------------------------- */
cnn_status cnn_optim_clip_grad_norm(cnn_optim *opt, float max_norm, float *total_norm)
{
    CNN_CHECK(opt, CNN_ERR_INVALID_ARG, "optim_clip_grad_norm: optimizer is NULL");
    cnn_tensor **ps = malloc((size_t)(opt->n ? opt->n : 1) * sizeof *ps);
    CNN_CHECK(ps, CNN_ERR_OUT_OF_MEMORY, "optim_clip_grad_norm: out of host memory");
    for (int i = 0; i < opt->n; i++) ps[i] = opt->ps[i].p;
    cnn_status st = cnn_clip_grad_norm(ps, opt->n, max_norm, total_norm);
    free(ps);
    return st;
}
