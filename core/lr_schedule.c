/* lr_schedule.c — learning-rate schedules with torch.optim.lr_scheduler's formulas: StepLR,
 * MultiStepLR and warmup + cosine as pure functions of the epoch, ReduceLROnPlateau as a small
 * state machine whose state goes into checkpoint metadata. It touches no tensor. */
#include "internal.h"

#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>

static cnn_status check_common(const char *op, float base_lr, int64_t t, const float *lr)
{
    CNN_CHECK(lr, CNN_ERR_INVALID_ARG, "%s: lr is NULL", op);
    CNN_CHECK(base_lr >= 0 && isfinite(base_lr), CNN_ERR_INVALID_ARG,
              "%s: invalid base learning rate %g", op, base_lr);
    CNN_CHECK(t >= 0, CNN_ERR_INVALID_ARG, "%s: epoch %" PRId64 " is negative", op, t);
    return CNN_OK;
}

cnn_status cnn_sched_step_lr(float base_lr, int step_size, float gamma, int64_t t, float *lr)
{
    CNN_TRY(check_common("sched_step_lr", base_lr, t, lr));
    CNN_CHECK(step_size > 0, CNN_ERR_INVALID_ARG, "sched_step_lr: step_size %d must be positive",
              step_size);
    CNN_CHECK(gamma >= 0 && isfinite(gamma), CNN_ERR_INVALID_ARG, "sched_step_lr: invalid gamma %g",
              gamma);
    *lr = (float)((double)base_lr * pow((double)gamma, (double)(t / step_size)));
    return CNN_OK;
}

cnn_status cnn_sched_multistep_lr(float base_lr, const int64_t *milestones, int n, float gamma,
                                  int64_t t, float *lr)
{
    CNN_TRY(check_common("sched_multistep_lr", base_lr, t, lr));
    CNN_CHECK(n >= 0 && (milestones || n == 0), CNN_ERR_INVALID_ARG,
              "sched_multistep_lr: %d milestones at %p", n, (const void *)milestones);
    CNN_CHECK(gamma >= 0 && isfinite(gamma), CNN_ERR_INVALID_ARG,
              "sched_multistep_lr: invalid gamma %g", gamma);
    int passed = 0;
    for (int i = 0; i < n; i++) {
        CNN_CHECK(milestones[i] >= 0, CNN_ERR_INVALID_ARG,
                  "sched_multistep_lr: milestone %d is %" PRId64 ", must be >= 0", i,
                  milestones[i]);
        /* A repeated milestone decays twice, as PyTorch's Counter of milestones does. */
        if (milestones[i] <= t) passed++;
    }
    *lr = (float)((double)base_lr * pow((double)gamma, (double)passed));
    return CNN_OK;
}

cnn_status cnn_sched_cosine_lr(float base_lr, int64_t warmup, int64_t total, float eta_min,
                               int64_t t, float *lr)
{
    CNN_TRY(check_common("sched_cosine_lr", base_lr, t, lr));
    CNN_CHECK(warmup >= 0 && warmup < total, CNN_ERR_INVALID_ARG,
              "sched_cosine_lr: need 0 <= warmup < total, got warmup %" PRId64 ", total %" PRId64,
              warmup, total);
    CNN_CHECK(eta_min >= 0 && isfinite(eta_min), CNN_ERR_INVALID_ARG,
              "sched_cosine_lr: invalid eta_min %g", eta_min);
    double base = base_lr, lo = eta_min;
    if (t < warmup) {
        *lr = (float)(base * (double)(t + 1) / (double)warmup);
    } else if (t < total) {
        const double pi = 3.14159265358979323846;
        double x = (double)(t - warmup) / (double)(total - warmup);
        *lr = (float)(lo + (base - lo) * (1.0 + cos(pi * x)) / 2.0);
    } else {
        *lr = eta_min;
    }
    return CNN_OK;
}

/* ---- ReduceLROnPlateau -------------------------------------------------------------------- */
struct cnn_plateau {
    cnn_plateau_config cfg;
    double lr;
    double best;          /* +inf (min) / -inf (max) until the first metric */
    int64_t bad_epochs;   /* PyTorch's num_bad_epochs */
    int64_t cooldown_left; /* PyTorch's cooldown_counter */
    int64_t epoch;        /* PyTorch's last_epoch */
};

cnn_plateau_config cnn_sched_plateau_defaults(void)
{
    return (cnn_plateau_config){.mode = CNN_PLATEAU_MIN, .factor = 0.1f, .patience = 10,
                                .threshold = 1e-4f, .threshold_abs = false, .cooldown = 0,
                                .min_lr = 0.0f, .eps = 1e-8f};
}

cnn_status cnn_sched_plateau_create(const cnn_plateau_config *cfg, float initial_lr,
                                    cnn_plateau **out)
{
    CNN_CHECK(cfg && out, CNN_ERR_INVALID_ARG, "sched_plateau_create: NULL argument");
    *out = NULL;
    CNN_CHECK(cfg->mode == CNN_PLATEAU_MIN || cfg->mode == CNN_PLATEAU_MAX, CNN_ERR_INVALID_ARG,
              "sched_plateau_create: unknown mode %d", (int)cfg->mode);
    CNN_CHECK(cfg->factor > 0 && cfg->factor < 1, CNN_ERR_INVALID_ARG,
              "sched_plateau_create: factor %g must be in (0, 1)", cfg->factor);
    CNN_CHECK(cfg->patience >= 0 && cfg->cooldown >= 0, CNN_ERR_INVALID_ARG,
              "sched_plateau_create: patience %d and cooldown %d must be >= 0", cfg->patience,
              cfg->cooldown);
    CNN_CHECK(cfg->threshold >= 0 && isfinite(cfg->threshold), CNN_ERR_INVALID_ARG,
              "sched_plateau_create: invalid threshold %g", cfg->threshold);
    CNN_CHECK(cfg->min_lr >= 0 && cfg->eps >= 0, CNN_ERR_INVALID_ARG,
              "sched_plateau_create: min_lr %g and eps %g must be >= 0", cfg->min_lr, cfg->eps);
    CNN_CHECK(initial_lr >= 0 && isfinite(initial_lr), CNN_ERR_INVALID_ARG,
              "sched_plateau_create: invalid initial learning rate %g", initial_lr);
    cnn_plateau *p = calloc(1, sizeof *p);
    CNN_CHECK(p, CNN_ERR_OUT_OF_MEMORY, "sched_plateau_create: out of host memory");
    p->cfg = *cfg;
    p->lr = initial_lr;
    p->best = cfg->mode == CNN_PLATEAU_MIN ? INFINITY : -INFINITY;
    *out = p;
    return CNN_OK;
}

void cnn_sched_plateau_destroy(cnn_plateau **p)
{
    if (!p) return;
    free(*p);
    *p = NULL;
}

float cnn_sched_plateau_get_lr(const cnn_plateau *p) { return p ? (float)p->lr : NAN; }

/* PyTorch's is_better; a NaN metric is never better. */
static bool is_better(const cnn_plateau *p, double a)
{
    double th = p->cfg.threshold;
    if (p->cfg.mode == CNN_PLATEAU_MIN)
        return p->cfg.threshold_abs ? a < p->best - th : a < p->best * (1.0 - th);
    return p->cfg.threshold_abs ? a > p->best + th : a > p->best * (th + 1.0);
}

cnn_status cnn_sched_step_metric(cnn_plateau *p, float metric, cnn_optim *opt, float *lr)
{
    CNN_CHECK(p, CNN_ERR_INVALID_ARG, "sched_step_metric: scheduler is NULL");
    double cur = metric;
    p->epoch++;
    if (is_better(p, cur)) {
        p->best = cur;
        p->bad_epochs = 0;
    } else {
        p->bad_epochs++;
    }
    if (p->cooldown_left > 0) {
        p->cooldown_left--;
        p->bad_epochs = 0;
    }
    if (p->bad_epochs > p->cfg.patience) {
        double next = fmax(p->lr * (double)p->cfg.factor, (double)p->cfg.min_lr);
        if (p->lr - next > (double)p->cfg.eps) p->lr = next;
        p->cooldown_left = p->cfg.cooldown;
        p->bad_epochs = 0;
    }
    if (lr) *lr = (float)p->lr;
    if (opt) CNN_TRY(cnn_optim_set_lr(opt, (float)p->lr));
    return CNN_OK;
}

static const char *const g_keys[5] = {"sched.plateau.lr", "sched.plateau.best",
                                      "sched.plateau.num_bad_epochs",
                                      "sched.plateau.cooldown_counter",
                                      "sched.plateau.last_epoch"};

cnn_status cnn_sched_plateau_state_dict(const cnn_plateau *p, cnn_dict *d)
{
    CNN_CHECK(p && d, CNN_ERR_INVALID_ARG, "sched_plateau_state_dict: NULL argument");
    char v[5][48];
    /* %.17g round-trips a double exactly; inf prints as "inf", which strtod reads back. */
    snprintf(v[0], sizeof v[0], "%.17g", p->lr);
    snprintf(v[1], sizeof v[1], "%.17g", p->best);
    snprintf(v[2], sizeof v[2], "%" PRId64, p->bad_epochs);
    snprintf(v[3], sizeof v[3], "%" PRId64, p->cooldown_left);
    snprintf(v[4], sizeof v[4], "%" PRId64, p->epoch);
    cnn_dict *t = NULL; /* filled first, so that a failure part way leaves d unchanged */
    CNN_TRY(cnn_dict_create(&t));
    cnn_status st = CNN_OK;
    for (int i = 0; i < 5 && st == CNN_OK; i++) st = cnn_dict_set_meta(t, g_keys[i], v[i]);
    if (st == CNN_OK) st = cnn_dict_move_into(d, t);
    cnn_dict_destroy(&t);
    return st;
}

cnn_status cnn_sched_plateau_load_state_dict(cnn_plateau *p, const cnn_dict *d)
{
    CNN_CHECK(p && d, CNN_ERR_INVALID_ARG, "sched_plateau_load_state_dict: NULL argument");
    double x[2] = {0, 0};
    int64_t n[3] = {0, 0, 0};
    for (int i = 0; i < 5; i++) {
        const char *s = cnn_dict_get_meta(d, g_keys[i]);
        CNN_CHECK(s, CNN_ERR_NOT_FOUND, "sched_plateau_load_state_dict: metadata '%s' is missing",
                  g_keys[i]);
        char *end = NULL;
        errno = 0;
        bool ok;
        if (i < 2) {
            x[i] = strtod(s, &end);
            ok = errno == 0 && end != s && *end == '\0';
            /* the lr goes to the optimizer as a float: one beyond FLT_MAX would be inf there */
            if (i == 0) ok = ok && x[0] >= 0 && x[0] <= FLT_MAX;
            if (i == 1) ok = ok && !isnan(x[1]);
        } else {
            /* counts read as integers (not through a double, which rounds above 2^53 and
             * makes INT64_MAX negative), up to 2^53: beyond any run, and room to count on */
            long long v = strtoll(s, &end, 10);
            ok = errno == 0 && end != s && *end == '\0' && v >= 0 && v <= (1LL << 53);
            n[i - 2] = v;
        }
        CNN_CHECK(ok, CNN_ERR_FORMAT, "sched_plateau_load_state_dict: metadata '%s' = '%s' is "
                  "not valid", g_keys[i], s);
    }
    p->lr = x[0];
    p->best = x[1];
    p->bad_epochs = n[0];
    p->cooldown_left = n[1];
    p->epoch = n[2];
    return CNN_OK;
}
