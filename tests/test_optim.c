/* test_optim.c — SGD, Adam and AdamW against their update formulas written out in double here,
 * per-parameter weight decay, skipped NULL gradients, state-dict export/resume (bit-identical,
 * also from a state saved before any step) and its validation, a checkpoint through
 * safetensors, and refused hyper-parameters. Gradient-norm clipping: test_clip_grad.c. */
#include "gradcheck.h"

#include <stdint.h>
#include <unistd.h>

#define NP 5

static cnn_tensor *param(const float *v, int n) { return leaf_of_values(CNN_SHAPE(n), v); }

/* A deterministic, sign-changing gradient for parameter k, element i, step s. */
static float grad_at(int k, int i, int s)
{
    return (float)sin(1.3 * i + 0.7 * s + 2.1 * k) * (1 + i);
}

static const float P0[2][NP] = {{0.5f, -1.0f, 2.0f, 0.0f, -0.25f},
                                {1.5f, 0.3f, -0.7f, 4.0f, -2.0f}};

typedef struct {
    double p[2][NP], s1[2][NP], s2[2][NP];
    int t;
} ref_state;

/* torch.optim.SGD / Adam / AdamW, in double. decay[k]: parameter k takes weight decay. */
static void ref_step(const cnn_optim_config *c, ref_state *r, const bool *decay, int s)
{
    r->t++;
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < NP; i++) {
            double g = grad_at(k, i, s), wd = decay[k] ? c->weight_decay : 0, *p = &r->p[k][i];
            double *m = &r->s1[k][i], *v = &r->s2[k][i];
            if (c->kind == CNN_OPTIM_SGD) {
                g += wd * *p;
                if (c->momentum != 0) {
                    *m = r->t == 1 ? g : c->momentum * *m + (1 - (double)c->dampening) * g;
                    g = c->nesterov ? g + c->momentum * *m : *m;
                }
                *p -= c->lr * g;
                continue;
            }
            if (c->kind == CNN_OPTIM_ADAMW) *p *= 1 - (double)c->lr * wd;
            else g += wd * *p;
            *m = c->beta1 * *m + (1 - (double)c->beta1) * g;
            *v = c->beta2 * *v + (1 - (double)c->beta2) * g * g;
            double bc1 = 1 - pow(c->beta1, r->t), bc2 = 1 - pow(c->beta2, r->t);
            *p -= c->lr / bc1 * *m / (sqrt(*v) / sqrt(bc2) + c->eps);
        }
}

/* Runs `steps` steps of cfg on two parameters (the second without weight decay when
 * decay1 is false) and compares with the double reference after each. */
static void run_against_reference(const cnn_optim_config *cfg, bool decay1, int steps)
{
    cnn_optim *opt = NULL;
    cnn_tensor *p[2] = {param(P0[0], NP), param(P0[1], NP)};
    ref_state r = {.t = 0};
    bool decay[2] = {true, decay1};
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < NP; i++) r.p[k][i] = P0[k][i];
    REQUIRE(p[0] && p[1]);
    CHECK_OK(cnn_optim_create(cfg, &opt));
    CHECK_OK(cnn_optim_add_param(opt, "w", p[0], true));
    CHECK_OK(cnn_optim_add_param(opt, "b", p[1], decay1));
    for (int s = 0; s < steps && !cnn_test_failed(); s++) {
        float g[NP];
        for (int k = 0; k < 2; k++) {
            for (int i = 0; i < NP; i++) g[i] = grad_at(k, i, s);
            CHECK_OK(set_grad_values(p[k], g));
        }
        CHECK_OK(cnn_optim_step(opt));
        ref_step(cfg, &r, decay, s);
        for (int k = 0; k < 2; k++)
            for (int i = 0; i < NP; i++)
                CHECK_NEAR(cnn_tensor_cdata(p[k])[i], r.p[k][i], 2e-6 * (1 + fabs(r.p[k][i])));
    }
    CHECK(cnn_optim_step_count(opt) == steps);
    cnn_optim_destroy(&opt);
    CHECK(opt == NULL);
    cnn_tensor_free(&p[0]);
    cnn_tensor_free(&p[1]);
}

TEST(sgd_plain_momentum_dampening_nesterov_match_formula)
{
    cnn_optim_config c = cnn_optim_defaults(CNN_OPTIM_SGD);
    c.lr = 0.1f;
    run_against_reference(&c, true, 4); /* plain */
    c.momentum = 0.9f;
    c.dampening = 0.3f;
    c.weight_decay = 0.05f;
    run_against_reference(&c, false, 6); /* momentum + dampening, decay on one parameter */
    c.dampening = 0;
    c.nesterov = true;
    run_against_reference(&c, true, 6);
    run_against_reference(&c, false, 6);
}

TEST(adam_and_adamw_match_formula)
{
    cnn_optim_config c = cnn_optim_defaults(CNN_OPTIM_ADAM);
    c.lr = 0.01f;
    run_against_reference(&c, true, 6);
    c.weight_decay = 0.1f;
    c.beta1 = 0.8f;
    c.beta2 = 0.95f;
    c.eps = 1e-3f;
    run_against_reference(&c, false, 6);
    cnn_optim_config w = cnn_optim_defaults(CNN_OPTIM_ADAMW);
    CHECK(w.weight_decay == 1e-2f && w.beta1 == 0.9f && w.beta2 == 0.999f && w.eps == 1e-8f);
    w.lr = 0.05f;
    w.weight_decay = 0.2f;
    run_against_reference(&w, true, 6);
    run_against_reference(&w, false, 6);
}

/* One step of cfg from P0[0] with gradient grad_at(0, i, 0); values into out. */
static void one_step(const cnn_optim_config *cfg, float *out)
{
    cnn_optim *opt = NULL;
    cnn_tensor *p = param(P0[0], NP);
    float g[NP];
    for (int i = 0; i < NP; i++) g[i] = grad_at(0, i, 0);
    REQUIRE(p);
    CHECK_OK(set_grad_values(p, g));
    CHECK_OK(cnn_optim_create(cfg, &opt));
    CHECK_OK(cnn_optim_add_param(opt, "w", p, true));
    CHECK_OK(cnn_optim_step(opt));
    memcpy(out, cnn_tensor_cdata(p), sizeof(float) * NP);
    cnn_optim_destroy(&opt);
    cnn_tensor_free(&p);
}

TEST(adam_and_adamw_differ_only_by_decoupled_decay)
{
    cnn_optim_config a = cnn_optim_defaults(CNN_OPTIM_ADAM);
    cnn_optim_config w = cnn_optim_defaults(CNN_OPTIM_ADAMW);
    float pa[NP], pw[NP];
    a.lr = w.lr = 0.1f;
    w.weight_decay = 0;
    one_step(&a, pa);
    one_step(&w, pw);
    CHECK(memcmp(pa, pw, sizeof pa) == 0); /* without decay they are the same optimizer */
    w.weight_decay = 0.3f;
    one_step(&w, pw);
    for (int i = 0; i < NP; i++) {
        double shrunk = P0[0][i] * (1.0 - 0.1 * 0.3), adam_update = P0[0][i] - pa[i];
        CHECK_NEAR(pw[i], shrunk - adam_update, 1e-6);
    }
    a.weight_decay = 0.3f; /* Adam's L2 decay goes through the moments instead: different */
    one_step(&a, pa);
    bool differs = false;
    for (int i = 0; i < NP; i++) differs |= fabsf(pa[i] - pw[i]) > 1e-4f;
    CHECK(differs);
}

TEST(null_grads_are_skipped_with_their_own_step_count)
{
    cnn_optim_config c = cnn_optim_defaults(CNN_OPTIM_ADAM);
    c.lr = 0.01f;
    cnn_optim *opt = NULL;
    cnn_tensor *a = param(P0[0], NP), *b = param(P0[1], NP);
    cnn_dict *d = NULL;
    float g[NP] = {1, -2, 3, -4, 5};
    REQUIRE(a && b);
    CHECK_OK(cnn_optim_create(&c, &opt));
    CHECK_OK(cnn_optim_add_param(opt, "a", a, true));
    CHECK_OK(cnn_optim_add_param(opt, "b", b, true));
    for (int s = 0; s < 3; s++) {
        CHECK_OK(set_grad_values(a, g));
        CHECK_OK(cnn_optim_step(opt));
    }
    for (int i = 0; i < NP; i++) CHECK(cnn_tensor_cdata(b)[i] == P0[1][i]);
    /* b's first update, at global step 4, is bias-corrected as its step 1: |dp| = lr. */
    CHECK_OK(set_grad_values(b, g));
    CHECK_OK(cnn_optim_step(opt));
    for (int i = 0; i < NP; i++)
        CHECK_NEAR(cnn_tensor_cdata(b)[i], P0[1][i] - 0.01 * (g[i] > 0 ? 1 : -1), 1e-6);
    CHECK_OK(cnn_dict_create(&d));
    CHECK_OK(cnn_optim_state_dict(opt, d));
    const char *keys[3] = {"optim.a.step", "optim.b.step", "optim.step"};
    const char *want[3] = {"4", "1", "4"};
    for (int i = 0; i < 3; i++)
        CHECK(cnn_dict_get_meta(d, keys[i]) && !strcmp(cnn_dict_get_meta(d, keys[i]), want[i]));
    cnn_optim_zero_grad(opt);
    CHECK(cnn_tensor_grad(a) == NULL && cnn_tensor_grad(b) == NULL);
    CHECK_OK(cnn_optim_step(opt)); /* nothing has a gradient: nothing moves */
    CHECK_NEAR(cnn_tensor_cdata(b)[0], P0[1][0] - 0.01, 1e-6);
    cnn_dict_destroy(&d);
    cnn_optim_destroy(&opt);
    cnn_tensor_free(&a);
    cnn_tensor_free(&b);
}

/* A name is refused when its longest state-dict key ("optim.<name>.momentum_buffer") would
 * not fit: the optimizer could never be saved. The longest accepted name round-trips. */
TEST(parameter_names_fit_their_state_dict_keys)
{
    cnn_optim_config c = cnn_optim_defaults(CNN_OPTIM_SGD);
    c.momentum = 0.9f;
    cnn_optim *opt = NULL, *back = NULL;
    cnn_tensor *a = param(P0[0], NP), *b = param(P0[1], NP);
    cnn_dict *d = NULL;
    char name[491];
    float g[NP] = {1, -2, 3, -4, 5};
    REQUIRE(a && b);
    memset(name, 'n', 490);
    name[490] = 0;
    CHECK_OK(cnn_optim_create(&c, &opt));
    CHECK_ERR(cnn_optim_add_param(opt, name, a, true), CNN_ERR_INVALID_ARG);
    CHECK(strstr(cnn_last_error(), "has 490 bytes") && strstr(cnn_last_error(), "489"));
    name[489] = 0;
    CHECK_OK(cnn_optim_add_param(opt, name, a, true));
    CHECK_OK(set_grad_values(a, g));
    CHECK_OK(cnn_optim_step(opt));
    CHECK_OK(cnn_dict_create(&d));
    CHECK_OK(cnn_optim_state_dict(opt, d));
    CHECK_OK(cnn_optim_create(&c, &back));
    CHECK_OK(cnn_optim_add_param(back, name, b, true));
    CHECK_OK(cnn_optim_load_state_dict(back, d));
    CHECK(cnn_optim_step_count(back) == 1);
    cnn_dict_destroy(&d);
    cnn_optim_destroy(&opt);
    cnn_optim_destroy(&back);
    cnn_tensor_free(&a);
    cnn_tensor_free(&b);
}

/* The keys are a checkpoint's JSON text: a name that is not UTF-8 is refused when added (before,
 * every cnn_optim_state_dict failed); one that is, multi-byte characters and all, round-trips.
 * A second state dict into the same dict replaces the first's entries and keeps the others. */
TEST(parameter_names_are_utf8_and_a_second_state_dict_replaces_the_first)
{
    cnn_optim_config c = cnn_optim_defaults(CNN_OPTIM_SGD);
    c.momentum = 0.9f;
    cnn_optim *opt = NULL, *back = NULL;
    cnn_tensor *a = param(P0[0], NP), *b = param(P0[1], NP), *other = param(P0[1], NP);
    cnn_dict *d = NULL;
    float g[NP] = {1, -2, 3, -4, 5};
    REQUIRE(a && b && other);
    CHECK_OK(cnn_optim_create(&c, &opt));
    CHECK_ERR(cnn_optim_add_param(opt, "conv\xff.weight", a, true), CNN_ERR_INVALID_ARG);
    CHECK(strstr(cnn_last_error(), "not valid UTF-8"));
    CHECK_ERR(cnn_optim_add_param(opt, "conv\xc3", a, true), CNN_ERR_INVALID_ARG);
    CHECK_OK(cnn_optim_add_param(opt, "poids.\xc3\xa9t\xc3\xa9", a, true)); /* "poids.été" */
    CHECK_OK(set_grad_values(a, g));
    CHECK_OK(cnn_optim_step(opt));
    CHECK_OK(cnn_dict_create(&d));
    CHECK_OK(cnn_dict_set(d, "model.weight", other));
    CHECK_OK(cnn_dict_set_meta(d, "note", "kept"));
    CHECK_OK(cnn_optim_state_dict(opt, d));
    const int n = cnn_dict_size(d), nm = cnn_dict_meta_size(d);
    CHECK(n == 2 && nm == 5);
    CHECK_OK(set_grad_values(a, g));
    CHECK_OK(cnn_optim_step(opt));
    CHECK_OK(cnn_optim_state_dict(opt, d));
    CHECK(cnn_dict_size(d) == n && cnn_dict_meta_size(d) == nm);
    CHECK(cnn_dict_get(d, "model.weight") == other);
    CHECK(!strcmp(cnn_dict_get_meta(d, "note"), "kept"));
    CHECK(!strcmp(cnn_dict_get_meta(d, "optim.step"), "2"));
    CHECK_OK(cnn_optim_create(&c, &back));
    CHECK_OK(cnn_optim_add_param(back, "poids.\xc3\xa9t\xc3\xa9", b, true));
    CHECK_OK(cnn_optim_load_state_dict(back, d));
    CHECK(cnn_optim_step_count(back) == 2);
    cnn_dict_destroy(&d);
    cnn_optim_destroy(&opt);
    cnn_optim_destroy(&back);
    cnn_tensor_free(&a);
    cnn_tensor_free(&b);
    cnn_tensor_free(&other);
}

/* An optimizer over two parameters ("conv.weight" (5), "conv.bias" (3), no decay). */
typedef struct {
    cnn_optim *opt;
    cnn_tensor *p[2];
} rig;

static cnn_status rig_make(rig *r, const cnn_optim_config *cfg, const float *w, const float *b)
{
    r->opt = NULL;
    r->p[0] = param(w, NP);
    r->p[1] = param(b, 3);
    if (!r->p[0] || !r->p[1]) return CNN_ERR_OUT_OF_MEMORY;
    cnn_status st = cnn_optim_create(cfg, &r->opt);
    if (st == CNN_OK) st = cnn_optim_add_param(r->opt, "conv.weight", r->p[0], true);
    if (st == CNN_OK) st = cnn_optim_add_param(r->opt, "conv.bias", r->p[1], false);
    return st;
}

static void rig_free(rig *r)
{
    cnn_optim_destroy(&r->opt);
    cnn_tensor_free(&r->p[0]);
    cnn_tensor_free(&r->p[1]);
}

/* Step s: both parameters get gradients, except the bias on odd steps. */
static cnn_status rig_step(rig *r, int s)
{
    float g[NP];
    for (int i = 0; i < NP; i++) g[i] = grad_at(0, i, s);
    cnn_status st = set_grad_values(r->p[0], g);
    for (int i = 0; i < 3; i++) g[i] = grad_at(1, i, s);
    if (st == CNN_OK) {
        if (s % 2) cnn_tensor_zero_grad(r->p[1]);
        else st = set_grad_values(r->p[1], g);
    }
    return st == CNN_OK ? cnn_optim_step(r->opt) : st;
}

static bool rig_same(const rig *a, const rig *b)
{
    return memcmp(cnn_tensor_cdata(a->p[0]), cnn_tensor_cdata(b->p[0]), NP * sizeof(float)) == 0 &&
           memcmp(cnn_tensor_cdata(a->p[1]), cnn_tensor_cdata(b->p[1]), 3 * sizeof(float)) == 0;
}

static void check_resume(cnn_optim_config cfg)
{
    rig a = {0}, b = {0};
    cnn_dict *d = NULL;
    CHECK_OK(rig_make(&a, &cfg, P0[0], P0[1]));
    for (int s = 0; s < 3; s++) CHECK_OK(rig_step(&a, s));
    CHECK_OK(cnn_optim_set_lr(a.opt, cfg.lr * 0.5f));
    CHECK_OK(cnn_dict_create(&d));
    CHECK_OK(cnn_optim_state_dict(a.opt, d));
    /* The resumed run starts from the saved parameter values, a fresh lr and a fresh state. */
    CHECK_OK(rig_make(&b, &cfg, cnn_tensor_cdata(a.p[0]), cnn_tensor_cdata(a.p[1])));
    CHECK_OK(cnn_optim_load_state_dict(b.opt, d));
    CHECK(cnn_optim_get_lr(b.opt) == cfg.lr * 0.5f);
    CHECK(cnn_optim_step_count(b.opt) == 3);
    for (int s = 3; s < 7; s++) {
        CHECK_OK(rig_step(&a, s));
        CHECK_OK(rig_step(&b, s));
        CHECK(rig_same(&a, &b));
    }
    /* The exported tensors are copies: later steps do not change them. */
    const char *key = cfg.kind == CNN_OPTIM_SGD ? "optim.conv.weight.momentum_buffer"
                                                : "optim.conv.weight.exp_avg";
    cnn_tensor *saved = cnn_dict_get(d, key);
    if (cfg.kind != CNN_OPTIM_SGD || cfg.momentum != 0) {
        REQUIRE(saved);
        cnn_dict *now = NULL;
        CHECK_OK(cnn_dict_create(&now));
        CHECK_OK(cnn_optim_state_dict(a.opt, now));
        CHECK(memcmp(cnn_tensor_cdata(saved), cnn_tensor_cdata(cnn_dict_get(now, key)),
                     NP * sizeof(float)) != 0);
        cnn_dict_destroy(&now);
    } else {
        CHECK(saved == NULL);
    }
    /* A state saved before any step, loaded into an optimizer that has state: it starts over as
     * a new optimizer does (its state tensors zeroed in place). */
    rig c = {0};
    cnn_dict *fresh = NULL;
    CHECK_OK(rig_make(&c, &cfg, cnn_tensor_cdata(a.p[0]), cnn_tensor_cdata(a.p[1])));
    CHECK_OK(cnn_dict_create(&fresh));
    CHECK_OK(cnn_optim_state_dict(c.opt, fresh));
    CHECK_OK(cnn_optim_load_state_dict(a.opt, fresh));
    CHECK(cnn_optim_step_count(a.opt) == 0 && cnn_optim_get_lr(a.opt) == cfg.lr);
    for (int s = 7; s < 10; s++) {
        CHECK_OK(rig_step(&a, s));
        CHECK_OK(rig_step(&c, s));
        CHECK(rig_same(&a, &c));
    }
    cnn_dict_destroy(&fresh);
    cnn_dict_destroy(&d);
    rig_free(&a);
    rig_free(&b);
    rig_free(&c);
}

TEST(state_dict_resume_is_bit_identical)
{
    cnn_optim_config c = cnn_optim_defaults(CNN_OPTIM_SGD);
    c.lr = 0.1f;
    check_resume(c);
    c.momentum = 0.9f;
    c.nesterov = true;
    c.weight_decay = 1e-3f;
    check_resume(c);
    c = cnn_optim_defaults(CNN_OPTIM_ADAM);
    c.weight_decay = 1e-2f;
    check_resume(c);
    check_resume(cnn_optim_defaults(CNN_OPTIM_ADAMW));
}

TEST(state_dict_load_validates_and_changes_nothing_on_failure)
{
    cnn_optim_config c = cnn_optim_defaults(CNN_OPTIM_ADAM);
    rig a = {0}, twin = {0}, other = {0};
    cnn_dict *d = NULL, *bad = NULL;
    CHECK_OK(rig_make(&a, &c, P0[0], P0[1]));
    CHECK_OK(rig_make(&twin, &c, P0[0], P0[1]));
    for (int s = 0; s < 2; s++) {
        CHECK_OK(rig_step(&a, s));
        CHECK_OK(rig_step(&twin, s));
    }
    CHECK_OK(cnn_dict_create(&d));
    CHECK_OK(cnn_optim_state_dict(a.opt, d));
    CHECK(cnn_dict_size(d) == 4); /* exp_avg, exp_avg_sq of both */

    /* Each broken copy of d must be refused with the right code. */
    const char *names[4] = {"optim.conv.weight.exp_avg", "optim.conv.weight.exp_avg_sq",
                            "optim.conv.bias.exp_avg", "optim.conv.bias.exp_avg_sq"};
    for (int variant = 0; variant < 6; variant++) {
        CHECK_OK(cnn_dict_create(&bad));
        for (int i = 0; i < cnn_dict_meta_size(d); i++)
            CHECK_OK(cnn_dict_set_meta(bad, cnn_dict_meta_key(d, i), cnn_dict_meta_value(d, i)));
        for (int i = 0; i < 4; i++) {
            if (variant == 0 && i == 1) continue; /* missing tensor */
            cnn_tensor *t = cnn_dict_get(d, names[i]), *wrong = NULL;
            if (variant == 1 && i == 2) { /* wrong shape */
                CHECK_OK(cnn_tensor_zeros(CNN_SHAPE(4), CNN_CPU, &wrong));
                t = wrong;
            }
            CHECK_OK(cnn_dict_set(bad, names[i], t));
            cnn_tensor_free(&wrong);
        }
        cnn_status want = CNN_ERR_NOT_FOUND;
        if (variant == 1) want = CNN_ERR_SHAPE;
        if (variant == 2) { /* an entry for a parameter this optimizer does not have */
            CHECK_OK(cnn_dict_set(bad, "optim.fc.weight.exp_avg", cnn_dict_get(d, names[0])));
        }
        if (variant == 3) {
            CHECK_OK(cnn_dict_set_meta(bad, "optim.kind", "sgd"));
            want = CNN_ERR_FORMAT;
        }
        if (variant == 4) {
            CHECK_OK(cnn_dict_set_meta(bad, "optim.conv.bias.step", "two"));
            want = CNN_ERR_FORMAT;
        }
        if (variant == 5) CHECK_OK(cnn_dict_set_meta(bad, "optim.fc.bias.step", "1"));
        CHECK_ERR(cnn_optim_load_state_dict(a.opt, bad), want);
        cnn_dict_destroy(&bad);
    }
    /* An optimizer without conv.bias: d's conv.bias entries are unexpected. */
    CHECK_OK(cnn_optim_create(&c, &other.opt));
    other.p[0] = param(P0[0], NP);
    REQUIRE(other.p[0]);
    CHECK_OK(cnn_optim_add_param(other.opt, "conv.weight", other.p[0], true));
    CHECK_ERR(cnn_optim_load_state_dict(other.opt, d), CNN_ERR_NOT_FOUND);
    CHECK_ERR(cnn_optim_load_state_dict(NULL, d), CNN_ERR_INVALID_ARG);

    CHECK(rig_same(&a, &twin));
    for (int s = 2; s < 5; s++) {
        CHECK_OK(rig_step(&a, s));
        CHECK_OK(rig_step(&twin, s));
    }
    CHECK(rig_same(&a, &twin)); /* the failed loads left a's state alone */
    cnn_dict_destroy(&d);
    rig_free(&a);
    rig_free(&twin);
    rig_free(&other);
}

TEST(add_dict_takes_trainable_tensors_and_exempts_1d_from_decay)
{
    float w[4] = {1, 2, 3, 4}, bv[2] = {1, 1}, gw[4] = {0, 0, 0, 0}, gb[2] = {1, -1};
    cnn_tensor *wt = NULL, *bt = param(bv, 2), *rm = NULL;
    cnn_dict *d = NULL;
    cnn_optim *opt = NULL;
    REQUIRE(bt);
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(2, 2), w, CNN_CPU, &wt));
    CHECK_OK(cnn_tensor_set_requires_grad(wt, true));
    CHECK_OK(cnn_tensor_zeros(CNN_SHAPE(2), CNN_CPU, &rm));
    CHECK_OK(cnn_dict_create(&d));
    CHECK_OK(cnn_dict_set(d, "fc.weight", wt));
    CHECK_OK(cnn_dict_set(d, "fc.bias", bt));
    CHECK_OK(cnn_dict_set(d, "bn.running_mean", rm)); /* a buffer: not trainable */
    cnn_optim_config c = cnn_optim_defaults(CNN_OPTIM_SGD);
    c.lr = 0.5f;
    c.weight_decay = 0.1f;
    CHECK_OK(cnn_optim_create(&c, &opt));
    CHECK_OK(cnn_optim_add_dict(opt, d, false));
    CHECK_ERR(cnn_optim_add_dict(opt, d, false), CNN_ERR_INVALID_ARG); /* already added */
    cnn_tensor *gt = NULL;
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(2, 2), gw, CNN_CPU, &gt));
    CHECK_OK(cnn_backward_with_grad(wt, gt));
    CHECK_OK(set_grad_values(bt, gb));
    CHECK_OK(cnn_optim_step(opt));
    for (int i = 0; i < 4; i++) CHECK_NEAR(cnn_tensor_cdata(wt)[i], w[i] * (1 - 0.5 * 0.1), 1e-6);
    CHECK(cnn_tensor_cdata(bt)[0] == 0.5f && cnn_tensor_cdata(bt)[1] == 1.5f);
    cnn_dict *st = NULL;
    CHECK_OK(cnn_dict_create(&st));
    CHECK_OK(cnn_optim_state_dict(opt, st));
    CHECK(cnn_dict_get_meta(st, "optim.fc.weight.step"));
    CHECK(cnn_dict_get_meta(st, "optim.fc.bias.step"));
    CHECK(cnn_dict_get_meta(st, "optim.bn.running_mean.step") == NULL);
    cnn_dict_destroy(&st);
    cnn_dict_destroy(&d);
    cnn_optim_destroy(&opt);
    cnn_tensor_free(&gt);
    cnn_tensor_free(&wt);
    cnn_tensor_free(&bt);
    cnn_tensor_free(&rm);
}

TEST(bad_hyper_parameters_and_arguments_are_refused)
{
    cnn_optim *opt = NULL;
    cnn_optim_config c = cnn_optim_defaults(CNN_OPTIM_SGD);
    c.lr = -0.1f;
    CHECK_ERR(cnn_optim_create(&c, &opt), CNN_ERR_INVALID_ARG);
    CHECK(opt == NULL);
    c.lr = 0.1f;
    c.nesterov = true; /* needs momentum */
    CHECK_ERR(cnn_optim_create(&c, &opt), CNN_ERR_INVALID_ARG);
    c.momentum = 0.9f;
    c.dampening = 0.1f; /* and zero dampening */
    CHECK_ERR(cnn_optim_create(&c, &opt), CNN_ERR_INVALID_ARG);
    c = cnn_optim_defaults(CNN_OPTIM_SGD);
    c.momentum = -1;
    CHECK_ERR(cnn_optim_create(&c, &opt), CNN_ERR_INVALID_ARG);
    c.momentum = 0.9f;
    c.dampening = INFINITY;
    CHECK_ERR(cnn_optim_create(&c, &opt), CNN_ERR_INVALID_ARG);
    CHECK(strstr(cnn_last_error(), "dampening inf"));
    c = cnn_optim_defaults(CNN_OPTIM_ADAM);
    c.beta1 = 1.0f;
    CHECK_ERR(cnn_optim_create(&c, &opt), CNN_ERR_INVALID_ARG);
    c.beta1 = 0.9f;
    c.beta2 = -0.5f;
    CHECK_ERR(cnn_optim_create(&c, &opt), CNN_ERR_INVALID_ARG);
    c.beta2 = 1.0f; /* torch's 0 <= beta2 < 1 */
    CHECK_ERR(cnn_optim_create(&c, &opt), CNN_ERR_INVALID_ARG);
    CHECK(strstr(cnn_last_error(), "beta2 1"));
    c.beta2 = 0.999f;
    c.eps = -1;
    CHECK_ERR(cnn_optim_create(&c, &opt), CNN_ERR_INVALID_ARG);
    c = cnn_optim_defaults(CNN_OPTIM_ADAMW);
    c.weight_decay = -0.1f;
    CHECK_ERR(cnn_optim_create(&c, &opt), CNN_ERR_INVALID_ARG);
    c = cnn_optim_defaults((cnn_optim_kind)7);
    CHECK_ERR(cnn_optim_create(&c, &opt), CNN_ERR_INVALID_ARG);
    c = cnn_optim_defaults(CNN_OPTIM_ADAM);
    c.lr = NAN;
    CHECK_ERR(cnn_optim_create(&c, &opt), CNN_ERR_INVALID_ARG);
    CHECK_ERR(cnn_optim_create(NULL, &opt), CNN_ERR_INVALID_ARG);

    c = cnn_optim_defaults(CNN_OPTIM_ADAM);
    CHECK_OK(cnn_optim_create(&c, &opt));
    CHECK_ERR(cnn_optim_set_lr(opt, -1.0f), CNN_ERR_INVALID_ARG);
    CHECK_ERR(cnn_optim_set_lr(opt, INFINITY), CNN_ERR_INVALID_ARG);
    CHECK(strstr(cnn_last_error(), "learning rate inf"));
    CHECK(cnn_optim_get_lr(opt) == 1e-3f);
    CHECK_OK(cnn_optim_set_lr(opt, 0.25f));
    CHECK(cnn_optim_get_lr(opt) == 0.25f);
    cnn_tensor *p = param(P0[0], NP), *q = NULL, *labels = NULL;
    REQUIRE(p);
    CHECK_OK(cnn_optim_add_param(opt, "p", p, true));
    CHECK_ERR(cnn_optim_add_param(opt, "p", p, true), CNN_ERR_INVALID_ARG);     /* name */
    CHECK_ERR(cnn_optim_add_param(opt, "p2", p, true), CNN_ERR_INVALID_ARG);    /* tensor */
    CHECK_ERR(cnn_optim_add_param(opt, "", p, true), CNN_ERR_INVALID_ARG);
    CHECK_ERR(cnn_optim_add_param(opt, "x", NULL, true), CNN_ERR_INVALID_ARG);
    CHECK_OK(cnn_scale(p, 2.0f, &q)); /* recorded: not a leaf */
    CHECK_ERR(cnn_optim_add_param(opt, "q", q, true), CNN_ERR_INVALID_ARG);
    int64_t lab[2] = {0, 1};
    CHECK_OK(cnn_tensor_from_i64(CNN_SHAPE(2), lab, CNN_CPU, &labels));
    CHECK_ERR(cnn_optim_add_param(opt, "labels", labels, true), CNN_ERR_UNSUPPORTED);
    CHECK_ERR(cnn_optim_step(NULL), CNN_ERR_INVALID_ARG);
    cnn_tape_reset();
    cnn_optim_destroy(&opt);
    cnn_optim_destroy(&opt); /* NULL-safe */
    cnn_tensor_free(&p);
    cnn_tensor_free(&q);
    cnn_tensor_free(&labels);
}

TEST(checkpoint_through_safetensors_resumes_bit_identically)
{
    cnn_optim_config c = cnn_optim_defaults(CNN_OPTIM_ADAMW);
    cnn_plateau_config pc = cnn_sched_plateau_defaults();
    rig a = {0}, b = {0};
    cnn_plateau *pa = NULL, *pb = NULL;
    cnn_dict *d = NULL, *back = NULL;
    char path[64];
    snprintf(path, sizeof path, "/tmp/cnn_test_optim_%d.safetensors", (int)getpid());
    pc.patience = 0;
    CHECK_OK(rig_make(&a, &c, P0[0], P0[1]));
    CHECK_OK(cnn_sched_plateau_create(&pc, c.lr, &pa));
    for (int s = 0; s < 3; s++) {
        CHECK_OK(rig_step(&a, s));
        CHECK_OK(cnn_sched_step_metric(pa, 1.0f, a.opt, NULL)); /* no improvement: lr drops */
    }
    CHECK_OK(cnn_dict_create(&d));
    CHECK_OK(cnn_dict_set(d, "conv.weight", a.p[0])); /* the model's state beside the optimizer's */
    CHECK_OK(cnn_dict_set(d, "conv.bias", a.p[1]));
    CHECK_OK(cnn_optim_state_dict(a.opt, d));
    CHECK_OK(cnn_sched_plateau_state_dict(pa, d));
    CHECK_OK(cnn_safetensors_save(path, d));
    CHECK_OK(cnn_safetensors_load(path, &back));
    remove(path);
    REQUIRE(cnn_dict_get(back, "conv.weight") && cnn_dict_get(back, "conv.bias"));
    CHECK_OK(rig_make(&b, &c, cnn_tensor_cdata(cnn_dict_get(back, "conv.weight")),
                      cnn_tensor_cdata(cnn_dict_get(back, "conv.bias"))));
    CHECK_OK(cnn_optim_load_state_dict(b.opt, back));
    CHECK_OK(cnn_sched_plateau_create(&pc, 1.0f, &pb));
    CHECK_OK(cnn_sched_plateau_load_state_dict(pb, back));
    CHECK(cnn_optim_get_lr(b.opt) == cnn_optim_get_lr(a.opt));
    CHECK(cnn_optim_get_lr(b.opt) < c.lr);
    for (int s = 3; s < 7; s++) {
        float la, lb;
        CHECK_OK(rig_step(&a, s));
        CHECK_OK(rig_step(&b, s));
        CHECK(rig_same(&a, &b));
        CHECK_OK(cnn_sched_step_metric(pa, 2.0f - s, a.opt, &la));
        CHECK_OK(cnn_sched_step_metric(pb, 2.0f - s, b.opt, &lb));
        CHECK(la == lb);
    }
    cnn_dict_destroy(&d);
    cnn_dict_destroy(&back);
    cnn_sched_plateau_destroy(&pa);
    cnn_sched_plateau_destroy(&pb);
    rig_free(&a);
    rig_free(&b);
}
