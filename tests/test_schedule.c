/* test_schedule.c — StepLR, MultiStepLR and warmup + cosine against their closed forms at many
 * epochs, ReduceLROnPlateau through hand-traced metric sequences (patience, threshold, cooldown,
 * min_lr, both modes), its state round trip, and refused arguments. */
#include "test.h"

#define PI 3.14159265358979323846

TEST(step_and_multistep_match_closed_form)
{
    float lr = -1;
    for (int64_t e = 0; e < 12; e++) {
        CHECK_OK(cnn_sched_step_lr(0.1f, 3, 0.5f, e, &lr));
        CHECK_NEAR(lr, 0.1f * pow(0.5f, (double)(e / 3)), 1e-8);
    }
    CHECK_OK(cnn_sched_step_lr(0.1f, 30, 0.1f, 29, &lr));
    CHECK(lr == 0.1f);
    CHECK_OK(cnn_sched_step_lr(0.1f, 30, 0.1f, 30, &lr));
    CHECK_NEAR(lr, 0.01, 1e-9);

    const int64_t ms[3] = {20, 5, 12}; /* any order */
    const double want[] = {1, 1, 1, 1, 1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.01, 0.01};
    for (int64_t e = 0; e < 14; e++) {
        CHECK_OK(cnn_sched_multistep_lr(1.0f, ms, 3, 0.1f, e, &lr));
        CHECK_NEAR(lr, want[e], 1e-7);
    }
    CHECK_OK(cnn_sched_multistep_lr(1.0f, ms, 3, 0.1f, 20, &lr));
    CHECK_NEAR(lr, 1e-3, 1e-9);
    CHECK_OK(cnn_sched_multistep_lr(1.0f, ms, 3, 0.1f, 1000, &lr));
    CHECK_NEAR(lr, 1e-3, 1e-9);
    const int64_t dup[2] = {4, 4}; /* a repeated milestone decays twice, as PyTorch */
    CHECK_OK(cnn_sched_multistep_lr(1.0f, dup, 2, 0.5f, 4, &lr));
    CHECK_NEAR(lr, 0.25, 1e-9);
    CHECK_OK(cnn_sched_multistep_lr(1.0f, NULL, 0, 0.5f, 4, &lr));
    CHECK(lr == 1.0f);
}

TEST(cosine_with_warmup_matches_closed_form)
{
    const float base = 0.1f, eta = 0.001f;
    float lr = -1;
    /* warmup 5 of total 25: base/5, 2base/5, ... base, then cosine over T = 20. */
    for (int64_t t = 0; t < 5; t++) {
        CHECK_OK(cnn_sched_cosine_lr(base, 5, 25, eta, t, &lr));
        CHECK_NEAR(lr, (double)base * (t + 1) / 5, 1e-8);
    }
    for (int64_t t = 5; t < 25; t++) {
        CHECK_OK(cnn_sched_cosine_lr(base, 5, 25, eta, t, &lr));
        CHECK_NEAR(lr, eta + ((double)base - eta) * (1 + cos(PI * (t - 5) / 20.0)) / 2, 1e-8);
    }
    CHECK_OK(cnn_sched_cosine_lr(base, 5, 25, eta, 5, &lr));
    CHECK(lr == base);
    CHECK_OK(cnn_sched_cosine_lr(base, 5, 25, eta, 15, &lr)); /* half-way down */
    CHECK_NEAR(lr, ((double)base + eta) / 2, 1e-8);
    for (int64_t t = 25; t < 30; t++) {
        CHECK_OK(cnn_sched_cosine_lr(base, 5, 25, eta, t, &lr));
        CHECK(lr == eta);
    }
    /* No warmup: CosineAnnealingLR(T_max = 10) through its closed form. */
    for (int64_t t = 0; t <= 10; t++) {
        CHECK_OK(cnn_sched_cosine_lr(1.0f, 0, 10, 0.0f, t, &lr));
        CHECK_NEAR(lr, (1 + cos(PI * t / 10.0)) / 2, 1e-7);
    }
}

TEST(schedules_refuse_bad_arguments)
{
    float lr;
    int64_t ms[1] = {-1};
    CHECK_ERR(cnn_sched_step_lr(0.1f, 0, 0.1f, 1, &lr), CNN_ERR_INVALID_ARG);
    CHECK_ERR(cnn_sched_step_lr(0.1f, 3, 0.1f, -1, &lr), CNN_ERR_INVALID_ARG);
    CHECK_ERR(cnn_sched_step_lr(-0.1f, 3, 0.1f, 1, &lr), CNN_ERR_INVALID_ARG);
    CHECK_ERR(cnn_sched_step_lr(0.1f, 3, 0.1f, 1, NULL), CNN_ERR_INVALID_ARG);
    CHECK_ERR(cnn_sched_multistep_lr(0.1f, ms, 1, 0.1f, 1, &lr), CNN_ERR_INVALID_ARG);
    CHECK_ERR(cnn_sched_multistep_lr(0.1f, NULL, 2, 0.1f, 1, &lr), CNN_ERR_INVALID_ARG);
    CHECK_ERR(cnn_sched_cosine_lr(0.1f, 10, 10, 0, 1, &lr), CNN_ERR_INVALID_ARG);
    CHECK_ERR(cnn_sched_cosine_lr(0.1f, -1, 10, 0, 1, &lr), CNN_ERR_INVALID_ARG);
    CHECK_ERR(cnn_sched_cosine_lr(0.1f, 0, 10, -1, 1, &lr), CNN_ERR_INVALID_ARG);
    CHECK_ERR(cnn_sched_cosine_lr(0.1f, 0, 10, INFINITY, 1, &lr), CNN_ERR_INVALID_ARG);
    CHECK(strstr(cnn_last_error(), "eta_min inf"));
    CHECK_ERR(cnn_sched_step_lr(0.1f, 3, INFINITY, 1, &lr), CNN_ERR_INVALID_ARG);
    CHECK(strstr(cnn_last_error(), "gamma inf"));
    CHECK_ERR(cnn_sched_multistep_lr(0.1f, NULL, 0, -0.5f, 1, &lr), CNN_ERR_INVALID_ARG);
    CHECK(strstr(cnn_last_error(), "gamma -0.5"));

    cnn_plateau *p = NULL;
    cnn_plateau_config c = cnn_sched_plateau_defaults();
    c.factor = 1.0f;
    CHECK_ERR(cnn_sched_plateau_create(&c, 0.1f, &p), CNN_ERR_INVALID_ARG);
    c = cnn_sched_plateau_defaults();
    c.patience = -1;
    CHECK_ERR(cnn_sched_plateau_create(&c, 0.1f, &p), CNN_ERR_INVALID_ARG);
    c = cnn_sched_plateau_defaults();
    c.cooldown = -1;
    CHECK_ERR(cnn_sched_plateau_create(&c, 0.1f, &p), CNN_ERR_INVALID_ARG);
    CHECK(strstr(cnn_last_error(), "cooldown -1"));
    c = cnn_sched_plateau_defaults();
    c.threshold = INFINITY;
    CHECK_ERR(cnn_sched_plateau_create(&c, 0.1f, &p), CNN_ERR_INVALID_ARG);
    CHECK(strstr(cnn_last_error(), "threshold inf"));
    c = cnn_sched_plateau_defaults();
    c.eps = -1e-8f;
    CHECK_ERR(cnn_sched_plateau_create(&c, 0.1f, &p), CNN_ERR_INVALID_ARG);
    CHECK(strstr(cnn_last_error(), "eps -1e-08"));
    c = cnn_sched_plateau_defaults();
    c.min_lr = -1e-3f;
    CHECK_ERR(cnn_sched_plateau_create(&c, 0.1f, &p), CNN_ERR_INVALID_ARG);
    c = cnn_sched_plateau_defaults();
    CHECK_ERR(cnn_sched_plateau_create(&c, INFINITY, &p), CNN_ERR_INVALID_ARG);
    CHECK(strstr(cnn_last_error(), "initial learning rate inf"));
    c = cnn_sched_plateau_defaults();
    c.mode = (cnn_plateau_mode)5;
    CHECK_ERR(cnn_sched_plateau_create(&c, 0.1f, &p), CNN_ERR_INVALID_ARG);
    c = cnn_sched_plateau_defaults();
    CHECK_ERR(cnn_sched_plateau_create(&c, -0.1f, &p), CNN_ERR_INVALID_ARG);
    CHECK(p == NULL);
    CHECK_ERR(cnn_sched_step_metric(NULL, 1.0f, NULL, &lr), CNN_ERR_INVALID_ARG);
}

TEST(plateau_defaults_are_pytorchs)
{
    cnn_plateau_config c = cnn_sched_plateau_defaults();
    CHECK(c.mode == CNN_PLATEAU_MIN && c.factor == 0.1f && c.patience == 10);
    CHECK(c.threshold == 1e-4f && !c.threshold_abs && c.cooldown == 0 && c.min_lr == 0);
    CHECK(c.eps == 1e-8f);
}

/* min mode, rel threshold 0.01, patience 1, cooldown 2, factor 0.5, min_lr 0.03, lr 0.1,
 * traced by hand through PyTorch's ReduceLROnPlateau.step. */
static const float g_metrics[13] = {1.0f, 0.995f, 0.999f, 2, 2, 2, 0.5f, 0.6f, 0.6f, 0.6f, 0.6f,
                                    0.6f, 0.6f};
static const double g_lrs[13] = {
    0.1,  /* first metric: best = 1.0 */
    0.1,  /* 0.995 is not below 1.0 * 0.99: bad 1 (not > patience 1) */
    0.05, /* bad 2 > 1: reduce, cooldown 2 */
    0.05, /* cooldown 2 -> 1: bad epochs ignored */
    0.05, /* cooldown 1 -> 0 */
    0.05, /* bad 1 */
    0.05, /* 0.5 is better: best 0.5 */
    0.05, /* bad 1 */
    0.03, /* bad 2: max(0.025, min_lr 0.03) */
    0.03, 0.03, 0.03,
    0.03  /* bad 2 again: max(0.015, 0.03) equals the lr: no change */
};

static cnn_plateau_config traced_config(void)
{
    cnn_plateau_config c = cnn_sched_plateau_defaults();
    c.factor = 0.5f;
    c.patience = 1;
    c.threshold = 0.01f;
    c.cooldown = 2;
    c.min_lr = 0.03f;
    return c;
}

TEST(plateau_follows_patience_cooldown_and_min_lr)
{
    cnn_plateau_config c = traced_config();
    cnn_plateau *p = NULL;
    cnn_optim *opt = NULL;
    cnn_optim_config oc = cnn_optim_defaults(CNN_OPTIM_SGD);
    CHECK_OK(cnn_optim_create(&oc, &opt));
    CHECK_OK(cnn_sched_plateau_create(&c, 0.1f, &p));
    CHECK(cnn_sched_plateau_get_lr(p) == 0.1f);
    for (int e = 0; e < 13; e++) {
        float lr = -1;
        CHECK_OK(cnn_sched_step_metric(p, g_metrics[e], opt, &lr));
        CHECK_NEAR(lr, g_lrs[e], 1e-8);
        CHECK(cnn_optim_get_lr(opt) == lr);
        CHECK(cnn_sched_plateau_get_lr(p) == lr);
    }
    cnn_sched_plateau_destroy(&p);
    CHECK(p == NULL);

    /* max mode, abs threshold 0.5, patience 0, factor 0.1. */
    c = cnn_sched_plateau_defaults();
    c.mode = CNN_PLATEAU_MAX;
    c.threshold_abs = true;
    c.threshold = 0.5f;
    c.patience = 0;
    CHECK_OK(cnn_sched_plateau_create(&c, 1.0f, &p));
    const float m[4] = {1.0f, 1.4f, 2.0f, 2.0f};
    const double want[4] = {1.0, 0.1, 0.1, 0.01};
    for (int e = 0; e < 4; e++) {
        float lr = -1;
        CHECK_OK(cnn_sched_step_metric(p, m[e], NULL, &lr));
        CHECK_NEAR(lr, want[e], 1e-8);
    }
    cnn_sched_plateau_destroy(&p);
    cnn_optim_destroy(&opt);
}

/* The threshold modes the traced runs above leave out, against torch's ReduceLROnPlateau
 * (factor 0.5, patience 0, threshold 0.1) on metrics near 10, where rel and abs differ:
 * max mode, rel: better means above best * 1.1; min mode, abs: below best - 0.1. Then eps: a
 * reduction smaller than eps (1e-8) is skipped, from a tiny lr or to a min_lr just below it. */
TEST(plateau_rel_max_abs_min_and_eps_as_torch)
{
    const float up[5] = {10, 10.5f, 12, 12.5f, 14}, down[5] = {10, 9.95f, 9.85f, 9.8f, 9.7f};
    const double want[5] = {1.0, 0.5, 0.5, 0.25, 0.25}; /* torch, both runs */
    for (int run = 0; run < 2; run++) {
        cnn_plateau_config c = cnn_sched_plateau_defaults();
        c.mode = run ? CNN_PLATEAU_MIN : CNN_PLATEAU_MAX;
        c.threshold_abs = run == 1;
        c.threshold = 0.1f;
        c.factor = 0.5f;
        c.patience = 0;
        cnn_plateau *p = NULL;
        CHECK_OK(cnn_sched_plateau_create(&c, 1.0f, &p));
        for (int e = 0; e < 5; e++) {
            float lr = -1;
            CHECK_OK(cnn_sched_step_metric(p, run ? down[e] : up[e], NULL, &lr));
            CHECK_NEAR(lr, want[e], 1e-8);
        }
        cnn_sched_plateau_destroy(&p);
    }
    const float lr0[2] = {1.5e-8f, 0.1f}, min_lr[2] = {0.0f, 0.1f - 5e-9f};
    for (int run = 0; run < 2; run++) {
        cnn_plateau_config c = cnn_sched_plateau_defaults();
        c.factor = 0.5f;
        c.patience = 0;
        c.min_lr = min_lr[run];
        cnn_plateau *p = NULL;
        CHECK_OK(cnn_sched_plateau_create(&c, lr0[run], &p));
        for (int e = 0; e < 3; e++) {
            float lr = -1;
            CHECK_OK(cnn_sched_step_metric(p, (float)(e + 1), NULL, &lr));
            CHECK(lr == lr0[run]);
        }
        cnn_sched_plateau_destroy(&p);
    }
}

TEST(plateau_state_round_trip_resumes_identically)
{
    cnn_plateau_config c = traced_config();
    cnn_plateau *a = NULL, *b = NULL;
    cnn_dict *d = NULL;
    float lr;
    CHECK_OK(cnn_sched_plateau_create(&c, 0.1f, &a));
    CHECK_OK(cnn_sched_plateau_create(&c, 0.7f, &b));
    for (int e = 0; e < 4; e++) CHECK_OK(cnn_sched_step_metric(a, g_metrics[e], NULL, &lr));
    CHECK_OK(cnn_dict_create(&d));
    CHECK_OK(cnn_sched_plateau_state_dict(a, d));
    CHECK_OK(cnn_sched_plateau_load_state_dict(b, d)); /* mid-cooldown, best 1.0 */
    for (int e = 4; e < 13; e++) {
        float la = -1, lb = -2;
        CHECK_OK(cnn_sched_step_metric(a, g_metrics[e], NULL, &la));
        CHECK_OK(cnn_sched_step_metric(b, g_metrics[e], NULL, &lb));
        CHECK(la == lb);
        CHECK_NEAR(lb, g_lrs[e], 1e-8);
    }
    /* A fresh scheduler's best is +inf, which must survive the text round trip. */
    cnn_sched_plateau_destroy(&b);
    CHECK_OK(cnn_sched_plateau_create(&c, 0.1f, &b));
    CHECK_OK(cnn_sched_plateau_state_dict(b, d));
    CHECK_OK(cnn_sched_plateau_load_state_dict(a, d));
    CHECK_OK(cnn_sched_step_metric(a, 123.0f, NULL, &lr)); /* better than +inf */
    CHECK_OK(cnn_sched_step_metric(a, 123.0f, NULL, &lr));
    CHECK(lr == 0.1f);
    CHECK_OK(cnn_sched_step_metric(a, 123.0f, NULL, &lr));
    CHECK_NEAR(lr, 0.05, 1e-8);

    /* best is kept exactly (as a double) through the text. */
    CHECK_OK(cnn_sched_step_metric(b, 0.123456789f, NULL, &lr));
    CHECK_OK(cnn_sched_plateau_state_dict(b, d));
    REQUIRE(cnn_dict_get_meta(d, "sched.plateau.best"));
    CHECK(strtod(cnn_dict_get_meta(d, "sched.plateau.best"), NULL) == (double)0.123456789f);
    CHECK_OK(cnn_dict_set_meta(d, "sched.plateau.num_bad_epochs", "-3"));
    CHECK_ERR(cnn_sched_plateau_load_state_dict(b, d), CNN_ERR_FORMAT);
    cnn_dict_destroy(&d);
    CHECK_OK(cnn_dict_create(&d));
    CHECK_ERR(cnn_sched_plateau_load_state_dict(b, d), CNN_ERR_NOT_FOUND);
    CHECK(cnn_sched_plateau_get_lr(b) == 0.1f); /* unchanged */
    cnn_dict_destroy(&d);
    cnn_sched_plateau_destroy(&a);
    cnn_sched_plateau_destroy(&b);
}

static const char *meta_of(const cnn_dict *d, const char *key)
{
    const char *v = cnn_dict_get_meta(d, key);
    return v ? v : "(missing)";
}

/* Both comparisons are strict in PyTorch: 'abs' min counts a metric as better only when it is
 * below best - threshold, and a reduction smaller than or equal to eps is skipped. Traced with
 * torch.optim.lr_scheduler.ReduceLROnPlateau(lr 1, factor 0.5, patience 0, threshold 0.5
 * 'abs', eps 0.5) on metrics 1, 0.5, 0.5: lr stays 1, best stays 1, last_epoch is 3. */
TEST(plateau_boundaries_are_strict_and_epochs_are_counted)
{
    cnn_plateau_config c = cnn_sched_plateau_defaults();
    c.factor = 0.5f;
    c.patience = 0;
    c.threshold = 0.5f;
    c.threshold_abs = true;
    c.eps = 0.5f;
    cnn_plateau *p = NULL;
    cnn_dict *d = NULL;
    CHECK_OK(cnn_sched_plateau_create(&c, 1.0f, &p));
    const float metrics[3] = {1.0f, 0.5f, 0.5f};
    for (int e = 0; e < 3; e++) {
        float lr = -1;
        CHECK_OK(cnn_sched_step_metric(p, metrics[e], NULL, &lr));
        CHECK(lr == 1.0f);
    }
    CHECK_OK(cnn_dict_create(&d));
    CHECK_OK(cnn_sched_plateau_state_dict(p, d));
    CHECK(strtod(meta_of(d, "sched.plateau.best"), NULL) == 1.0);
    CHECK(!strcmp(meta_of(d, "sched.plateau.last_epoch"), "3"));
    CHECK(!strcmp(meta_of(d, "sched.plateau.num_bad_epochs"), "0"));
    cnn_dict_destroy(&d);
    cnn_sched_plateau_destroy(&p);
}

/* A saved lr must be a non-negative number a float holds and best must not be NaN (best may be
 * infinite: a fresh scheduler's is); counts are integers from 0 to 2^53 (INT64_MAX once passed
 * through a double and came back negative). A refused state changes nothing. */
TEST(plateau_load_refuses_a_bad_lr_or_a_nan_best)
{
    cnn_plateau_config c = cnn_sched_plateau_defaults();
    cnn_plateau *p = NULL;
    cnn_dict *d = NULL;
    CHECK_OK(cnn_sched_plateau_create(&c, 0.25f, &p));
    CHECK_OK(cnn_dict_create(&d));
    const char *bad[8][2] = {{"sched.plateau.lr", "-1"},
                             {"sched.plateau.lr", "inf"},
                             {"sched.plateau.lr", "nan"},
                             {"sched.plateau.lr", "1e300"},
                             {"sched.plateau.best", "nan"},
                             {"sched.plateau.num_bad_epochs", "9223372036854775807"},
                             {"sched.plateau.cooldown_counter", "9007199254740993"},
                             {"sched.plateau.last_epoch", "1.5"}};
    for (int i = 0; i < 8; i++) {
        CHECK_OK(cnn_sched_plateau_state_dict(p, d));
        CHECK_OK(cnn_dict_set_meta(d, bad[i][0], bad[i][1]));
        CHECK_ERR(cnn_sched_plateau_load_state_dict(p, d), CNN_ERR_FORMAT);
        CHECK(strstr(cnn_last_error(), bad[i][0]));
        CHECK(cnn_sched_plateau_get_lr(p) == 0.25f);
    }
    CHECK_OK(cnn_sched_plateau_state_dict(p, d));
    CHECK_OK(cnn_dict_set_meta(d, "sched.plateau.best", "-inf"));
    CHECK_OK(cnn_dict_set_meta(d, "sched.plateau.last_epoch", "9007199254740992"));
    CHECK_OK(cnn_sched_plateau_load_state_dict(p, d));
    cnn_dict_destroy(&d);
    CHECK_OK(cnn_dict_create(&d));
    CHECK_OK(cnn_sched_plateau_state_dict(p, d));
    CHECK(!strcmp(meta_of(d, "sched.plateau.last_epoch"), "9007199254740992"));
    cnn_dict_destroy(&d);
    cnn_sched_plateau_destroy(&p);
}
