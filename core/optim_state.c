/* optim_state.c — an optimizer's state dict (torch.optim's per-parameter state under
 * "optim.<param>.<name>" keys, with its kind, learning rate and step counts as metadata), for
 * checkpoints; loading checks every key against the parameters and changes nothing on error. */
#include "internal.h"
#include "optim.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>

static const char *kind_name(cnn_optim_kind k)
{
    switch (k) {
    case CNN_OPTIM_SGD: return "sgd";
    case CNN_OPTIM_ADAM: return "adam";
    case CNN_OPTIM_ADAMW: return "adamw";
    }
    return "?";
}

static const char *state_suffix(const cnn_optim_config *c, int which)
{
    if (c->kind == CNN_OPTIM_SGD) return which == 0 && c->momentum != 0 ? "momentum_buffer" : NULL;
    return which == 0 ? "exp_avg" : which == 1 ? "exp_avg_sq" : NULL;
}

static cnn_status key_of(char *buf, const char *name, const char *suffix)
{
    int len = snprintf(buf, OPTIM_KEY_MAX, "optim.%s.%s", name, suffix);
    CNN_CHECK(len > 0 && len < OPTIM_KEY_MAX, CNN_ERR_INVALID_ARG,
              "optim: parameter name '%.64s...' is too long for a state-dict key", name);
    return CNN_OK;
}

/* The state into t, a fresh dict, so that a failure part way leaves the caller's unchanged. */
static cnn_status fill_state(const cnn_optim *opt, cnn_dict *t)
{
    char key[OPTIM_KEY_MAX], val[64];
    CNN_TRY(cnn_dict_set_meta(t, "optim.kind", kind_name(opt->cfg.kind)));
    snprintf(val, sizeof val, "%.9g", opt->cfg.lr);
    CNN_TRY(cnn_dict_set_meta(t, "optim.lr", val));
    snprintf(val, sizeof val, "%" PRId64, opt->steps);
    CNN_TRY(cnn_dict_set_meta(t, "optim.step", val));
    for (int i = 0; i < opt->n; i++) {
        const optim_param *q = &opt->ps[i];
        CNN_TRY(key_of(key, q->name, "step"));
        snprintf(val, sizeof val, "%" PRId64, q->step);
        CNN_TRY(cnn_dict_set_meta(t, key, val));
        if (q->step == 0) continue;
        for (int w = 0; w < 2; w++) {
            const char *suffix = state_suffix(&opt->cfg, w);
            cnn_tensor *s = w == 0 ? q->s1 : q->s2, *copy = NULL;
            if (!suffix) continue;
            CNN_ASSERT(s);
            CNN_TRY(key_of(key, q->name, suffix));
            CNN_TRY(cnn_tensor_clone(s, &copy));
            cnn_status st = cnn_dict_set(t, key, copy);
            cnn_tensor_free(&copy);
            CNN_TRY(st);
        }
    }
    return CNN_OK;
}

cnn_status cnn_optim_state_dict(const cnn_optim *opt, cnn_dict *d)
{
    CNN_CHECK(opt && d, CNN_ERR_INVALID_ARG, "optim_state_dict: NULL argument");
    cnn_dict *t = NULL;
    CNN_TRY(cnn_dict_create(&t));
    cnn_status st = fill_state(opt, t);
    if (st == CNN_OK) st = cnn_dict_move_into(d, t);
    cnn_dict_destroy(&t);
    return st;
}

static cnn_status parse_i64(const cnn_dict *d, const char *key, int64_t *v)
{
    const char *s = cnn_dict_get_meta(d, key);
    CNN_CHECK(s, CNN_ERR_NOT_FOUND, "optim_load_state_dict: metadata '%s' is missing", key);
    char *end = NULL;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    /* up to 2^53 steps: beyond any run, and step + 1 cannot overflow in the updates */
    CNN_CHECK(errno == 0 && end != s && *end == '\0' && x >= 0 && x <= (1LL << 53),
              CNN_ERR_FORMAT, "optim_load_state_dict: metadata '%s' = '%s' is not a count (0 to "
              "2^53)", key, s);
    *v = x;
    return CNN_OK;
}

/* True when `name` is "optim.<param>.<suffix>" for a parameter whose loaded state has it. */
static bool expected_tensor(const cnn_optim *opt, const int64_t *steps, const char *name)
{
    const char *rest = name + strlen("optim.");
    for (int i = 0; i < opt->n; i++) {
        size_t len = strlen(opt->ps[i].name);
        if (strncmp(rest, opt->ps[i].name, len) != 0 || rest[len] != '.' || steps[i] == 0) continue;
        for (int w = 0; w < 2; w++) {
            const char *suffix = state_suffix(&opt->cfg, w);
            if (suffix && strcmp(rest + len + 1, suffix) == 0) return true;
        }
    }
    return false;
}

static bool expected_meta(const cnn_optim *opt, const char *key)
{
    if (!strcmp(key, "optim.kind") || !strcmp(key, "optim.lr") || !strcmp(key, "optim.step"))
        return true;
    const char *rest = key + strlen("optim.");
    for (int i = 0; i < opt->n; i++) {
        size_t len = strlen(opt->ps[i].name);
        if (strncmp(rest, opt->ps[i].name, len) == 0 && !strcmp(rest + len, ".step")) return true;
    }
    return false;
}

/* Copies of the saved state for every parameter, checked against the parameters. */
static cnn_status load_states(const cnn_optim *opt, const cnn_dict *d, int64_t *steps,
                              cnn_tensor **s)
{
    char key[OPTIM_KEY_MAX];
    for (int i = 0; i < opt->n; i++) {
        const optim_param *q = &opt->ps[i];
        CNN_TRY(key_of(key, q->name, "step"));
        CNN_TRY(parse_i64(d, key, &steps[i]));
        if (steps[i] == 0) continue;
        for (int w = 0; w < 2; w++) {
            const char *suffix = state_suffix(&opt->cfg, w);
            if (!suffix) continue;
            CNN_TRY(key_of(key, q->name, suffix));
            const cnn_tensor *t = cnn_dict_get(d, key);
            CNN_CHECK(t, CNN_ERR_NOT_FOUND, "optim_load_state_dict: '%s' is missing (parameter "
                      "'%s' has had %" PRId64 " steps)", key, q->name, steps[i]);
            CNN_CHECK(t->dtype == CNN_F32 && cnn_shape_equal(t->shape, q->p->shape), CNN_ERR_SHAPE,
                      "optim_load_state_dict: '%s' is %s %s, parameter '%s' is F32 %s", key,
                      cnn_dtype_name(t->dtype), cnn_shape_of(t), q->name, cnn_shape_of(q->p));
            CNN_TRY(cnn_tensor_to(t, q->p->device, &s[2 * i + w]));
        }
    }
    for (int i = 0; i < cnn_dict_size(d); i++) {
        const char *name = cnn_dict_name(d, i);
        CNN_CHECK(strncmp(name, "optim.", 6) != 0 || expected_tensor(opt, steps, name),
                  CNN_ERR_NOT_FOUND, "optim_load_state_dict: unexpected tensor '%s' for this %s "
                  "optimizer and its parameters", name, kind_name(opt->cfg.kind));
    }
    for (int i = 0; i < cnn_dict_meta_size(d); i++) {
        const char *key2 = cnn_dict_meta_key(d, i);
        CNN_CHECK(strncmp(key2, "optim.", 6) != 0 || expected_meta(opt, key2), CNN_ERR_NOT_FOUND,
                  "optim_load_state_dict: unexpected metadata '%s' (no such parameter)", key2);
    }
    return CNN_OK;
}

cnn_status cnn_optim_load_state_dict(cnn_optim *opt, const cnn_dict *d)
{
    CNN_CHECK(opt && d, CNN_ERR_INVALID_ARG, "optim_load_state_dict: NULL argument");
    const char *kind = cnn_dict_get_meta(d, "optim.kind");
    CNN_CHECK(kind, CNN_ERR_NOT_FOUND, "optim_load_state_dict: metadata 'optim.kind' is missing");
    CNN_CHECK(!strcmp(kind, kind_name(opt->cfg.kind)), CNN_ERR_FORMAT,
              "optim_load_state_dict: the state is for '%s', this optimizer is '%s'", kind,
              kind_name(opt->cfg.kind));
    const char *lrs = cnn_dict_get_meta(d, "optim.lr");
    CNN_CHECK(lrs, CNN_ERR_NOT_FOUND, "optim_load_state_dict: metadata 'optim.lr' is missing");
    char *end = NULL;
    float lr = strtof(lrs, &end);
    CNN_CHECK(end != lrs && *end == '\0' && lr >= 0 && isfinite(lr), CNN_ERR_FORMAT,
              "optim_load_state_dict: metadata 'optim.lr' = '%s' is not a learning rate", lrs);
    int64_t total = 0;
    CNN_TRY(parse_i64(d, "optim.step", &total));

    int64_t *steps = calloc((size_t)opt->n + 1, sizeof *steps);
    cnn_tensor **s = calloc(2 * (size_t)opt->n + 1, sizeof *s);
    cnn_status st = steps && s ? load_states(opt, d, steps, s)
                               : cnn_error(CNN_ERR_OUT_OF_MEMORY, "optim_load_state_dict: out of "
                                           "host memory");
    /* A state tensor that exists with the same shape and device takes the loaded values in
     * place (a CUDA graph that captured a step keeps updating the same memory), and one whose
     * parameter has no saved state (no step yet) is zeroed in place: a fresh state, as the next
     * op-by-op step would make it. Any other is replaced. */
    for (int i = 0; st == CNN_OK && i < opt->n; i++) {
        cnn_tensor **have[2] = {&opt->ps[i].s1, &opt->ps[i].s2};
        for (int w = 0; w < 2 && st == CNN_OK; w++) {
            cnn_tensor *h = *have[w], *t = s[2 * i + w];
            if (h && !t && steps[i] == 0) {
                st = cnn_tensor_fill_(h, 0.0f);
                s[2 * i + w] = cnn_tensor_retain(h);
            } else if (h && t && cnn_shape_equal(h->shape, t->shape) &&
                       h->device.type == t->device.type && h->device.index == t->device.index) {
                st = cnn_tensor_copy_(h, t);
                cnn_tensor_free(&s[2 * i + w]);
                s[2 * i + w] = cnn_tensor_retain(h);
            }
        }
    }
    if (st == CNN_OK) {
        for (int i = 0; i < opt->n; i++) {
            optim_param *q = &opt->ps[i];
            cnn_tensor_free(&q->s1);
            cnn_tensor_free(&q->s2);
            q->s1 = s[2 * i];
            q->s2 = s[2 * i + 1];
            s[2 * i] = s[2 * i + 1] = NULL;
            q->step = steps[i];
        }
        opt->cfg.lr = lr;
        opt->steps = total;
    }
    for (int i = 0; s && i < 2 * opt->n; i++) cnn_tensor_free(&s[i]);
    free(s);
    free(steps);
    return st;
}
