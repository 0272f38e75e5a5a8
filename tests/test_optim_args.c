/* test_optim_args.c — the edges of the optimizers against torch.optim 1.13: hyper-parameters
 * PyTorch accepts (Adam with betas (0, 0) and eps 0 is sign descent), parameters it refuses,
 * the state dict of a parameter that never had a gradient, entries a state dict may not hold
 * (a refused load keeps the learning rate too). The update formulas themselves: test_optim.c;
 * gradient clipping: test_clip_grad.c. */
#include "gradcheck.h"

/* Replaces p's gradient with g (a leaf's backward seeds its grad directly). */
static cnn_status regrad(cnn_tensor *p, const cnn_tensor *g)
{
    cnn_tensor_zero_grad(p);
    return cnn_backward_with_grad(p, g);
}

static cnn_tensor *vec2(float a, float b)
{
    const float v[2] = {a, b};
    cnn_tensor *t = NULL;
    return cnn_tensor_from_data(CNN_SHAPE(2), v, CNN_CPU, &t) == CNN_OK ? t : NULL;
}

/* torch.optim.Adam([p], lr=0.5, betas=(0, 0), eps=0): m = g, v = g^2, no bias correction, so
 * each step moves p by lr * sign(g): [1, 2, -3] with g = [0.25, -4, 2] becomes [0.5, 2.5, -3.5]
 * then [0, 3, -4] (PyTorch 1.13 prints exactly these). */
TEST(adam_with_zero_betas_and_zero_eps_is_sign_descent)
{
    const float p0[3] = {1, 2, -3}, g[3] = {0.25f, -4, 2};
    const float want[2][3] = {{0.5f, 2.5f, -3.5f}, {0, 3, -4}};
    cnn_optim_config c = cnn_optim_defaults(CNN_OPTIM_ADAM);
    c.lr = 0.5f;
    c.beta1 = 0.0f;
    c.beta2 = 0.0f;
    c.eps = 0.0f;
    cnn_optim *opt = NULL;
    cnn_tensor *p = leaf_of_values(CNN_SHAPE(3), p0), *gt = NULL;
    REQUIRE(p);
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(3), g, CNN_CPU, &gt));
    CHECK_OK(cnn_optim_create(&c, &opt));
    CHECK_OK(cnn_optim_add_param(opt, "p", p, true));
    for (int s = 0; s < 2; s++) {
        CHECK_OK(regrad(p, gt));
        CHECK_OK(cnn_optim_step(opt));
        for (int i = 0; i < 3; i++) CHECK(cnn_tensor_cdata(p)[i] == want[s][i]);
    }
    cnn_optim_destroy(&opt);
    cnn_tensor_free(&p);
    cnn_tensor_free(&gt);
}

/* lr 0 is valid in torch.optim (0 <= lr): the optimizer is made, steps and moves nothing. */
TEST(a_zero_learning_rate_is_valid_and_moves_nothing)
{
    const float p0[3] = {1, 2, -3};
    cnn_optim_config c = cnn_optim_defaults(CNN_OPTIM_SGD);
    c.lr = 0.0f;
    c.momentum = 0.9f;
    cnn_optim *opt = NULL;
    cnn_tensor *p = leaf_of_values(CNN_SHAPE(3), p0), *g = NULL;
    REQUIRE(p);
    CHECK_OK(cnn_tensor_full(CNN_SHAPE(3), 0.5f, CNN_CPU, &g));
    CHECK_OK(cnn_optim_create(&c, &opt));
    CHECK_OK(cnn_optim_add_param(opt, "p", p, true));
    CHECK_OK(regrad(p, g));
    CHECK_OK(cnn_optim_step(opt));
    CHECK_OK(cnn_optim_set_lr(opt, 0.0f));
    CHECK_OK(cnn_optim_step(opt));
    for (int i = 0; i < 3; i++) CHECK(cnn_tensor_cdata(p)[i] == p0[i]);
    CHECK(cnn_optim_get_lr(opt) == 0.0f && cnn_optim_step_count(opt) == 2);
    cnn_optim_destroy(&opt);
    cnn_tensor_free(&p);
    cnn_tensor_free(&g);
}

/* A parameter must be contiguous (the header), and its name is its state-dict key, so a
 * second tensor under a name already added is refused. */
TEST(add_param_refuses_non_contiguous_tensors_and_repeated_names)
{
    const float v[6] = {1, 2, 3, 4, 5, 6};
    cnn_optim_config c = cnn_optim_defaults(CNN_OPTIM_SGD);
    cnn_optim *opt = NULL;
    cnn_tensor *base = NULL, *tr = NULL;
    cnn_tensor *w = leaf_of_values(CNN_SHAPE(2, 3), v), *w2 = leaf_of_values(CNN_SHAPE(6), v);
    REQUIRE(w && w2);
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(2, 3), v, CNN_CPU, &base));
    CHECK_OK(cnn_tensor_transpose(base, 0, 1, &tr));
    CHECK_OK(cnn_tensor_set_requires_grad(tr, true));
    CHECK_OK(cnn_optim_create(&c, &opt));
    CHECK_ERR(cnn_optim_add_param(opt, "t", tr, true), CNN_ERR_INVALID_ARG);
    CHECK(strstr(cnn_last_error(), "contiguous"));
    CHECK_OK(cnn_optim_add_param(opt, "w", w, true));
    CHECK_ERR(cnn_optim_add_param(opt, "w", w2, true), CNN_ERR_INVALID_ARG);
    CHECK(strstr(cnn_last_error(), "'w'"));
    /* A dict refused part-way (its "w" is taken) adds none of its tensors: not its "a" either,
     * which the state dict below would list. */
    cnn_dict *ad = NULL;
    cnn_tensor *a = leaf_of_values(CNN_SHAPE(3), v);
    REQUIRE(a);
    CHECK_OK(cnn_dict_create(&ad));
    CHECK_OK(cnn_dict_set(ad, "a", a));
    CHECK_OK(cnn_dict_set(ad, "w", w2));
    CHECK_ERR(cnn_optim_add_dict(opt, ad, true), CNN_ERR_INVALID_ARG);
    CHECK(strstr(cnn_last_error(), "'w'"));
    cnn_dict_destroy(&ad);
    cnn_tensor_free(&a);
    cnn_dict *d = NULL;
    CHECK_OK(cnn_dict_create(&d));
    CHECK_OK(cnn_optim_state_dict(opt, d));
    CHECK(cnn_dict_get_meta(d, "optim.w.step") && !cnn_dict_get_meta(d, "optim.t.step"));
    CHECK(cnn_dict_meta_size(d) == 4); /* kind, lr, step and w's step */
    cnn_dict_destroy(&d);
    cnn_optim_destroy(&opt);
    cnn_tensor *all[4] = {base, tr, w, w2};
    for (int i = 0; i < 4; i++) cnn_tensor_free(&all[i]);
}

/* Adam over a and b where only a ever has a gradient: as torch.optim, b has no state (its step
 * is 0 and it has no exp_avg), and the state dict is still made. */
static cnn_status two_params_one_stepped(cnn_optim **opt, cnn_tensor **a, cnn_tensor **b)
{
    const float v[2] = {1, -1};
    cnn_optim_config c = cnn_optim_defaults(CNN_OPTIM_ADAM);
    *a = leaf_of_values(CNN_SHAPE(2), v);
    *b = leaf_of_values(CNN_SHAPE(2), v);
    if (!*a || !*b) return CNN_ERR_OUT_OF_MEMORY;
    cnn_status st = cnn_optim_create(&c, opt);
    if (st == CNN_OK) st = cnn_optim_add_param(*opt, "a", *a, true);
    if (st == CNN_OK) st = cnn_optim_add_param(*opt, "b", *b, true);
    cnn_tensor *g = vec2(0.5f, 2);
    if (st == CNN_OK) st = g ? regrad(*a, g) : CNN_ERR_OUT_OF_MEMORY;
    cnn_tensor_free(&g);
    return st == CNN_OK ? cnn_optim_step(*opt) : st;
}

TEST(state_dict_holds_no_state_for_a_parameter_never_stepped)
{
    cnn_optim *opt = NULL;
    cnn_tensor *a = NULL, *b = NULL;
    cnn_dict *d = NULL;
    CHECK_OK(two_params_one_stepped(&opt, &a, &b));
    CHECK_OK(cnn_dict_create(&d));
    CHECK_OK(cnn_optim_state_dict(opt, d));
    CHECK(cnn_dict_get(d, "optim.a.exp_avg") && cnn_dict_get(d, "optim.a.exp_avg_sq"));
    CHECK(!cnn_dict_get(d, "optim.b.exp_avg") && !cnn_dict_get(d, "optim.b.exp_avg_sq"));
    CHECK(cnn_dict_size(d) == 2);
    const char *sa = cnn_dict_get_meta(d, "optim.a.step");
    const char *sb = cnn_dict_get_meta(d, "optim.b.step");
    CHECK(sa && !strcmp(sa, "1") && sb && !strcmp(sb, "0"));
    cnn_dict_destroy(&d);
    cnn_optim_destroy(&opt);
    cnn_tensor_free(&a);
    cnn_tensor_free(&b);
}

/* What a load refuses (the header: no unknown "optim.<name>" entries): state for a parameter
 * whose step is 0, metadata under a parameter's name other than its step, negative step counts
 * and an lr that is negative or not finite. A refused load changes nothing. */
TEST(load_state_dict_refuses_state_of_unstepped_params_and_unknown_keys)
{
    cnn_optim *opt = NULL, *fresh = NULL;
    cnn_tensor *a = NULL, *b = NULL, *z = NULL;
    cnn_dict *d = NULL;
    CHECK_OK(two_params_one_stepped(&opt, &a, &b));
    CHECK_OK(cnn_dict_create(&d));
    CHECK_OK(cnn_optim_state_dict(opt, d));
    cnn_optim_config c = cnn_optim_defaults(CNN_OPTIM_ADAM);
    CHECK_OK(cnn_optim_create(&c, &fresh));
    CHECK_OK(cnn_optim_add_param(fresh, "a", a, true));
    CHECK_OK(cnn_optim_add_param(fresh, "b", b, true));
    CHECK_OK(cnn_optim_load_state_dict(fresh, d)); /* as saved: fine */
    CHECK_OK(cnn_tensor_zeros(CNN_SHAPE(2), CNN_CPU, &z));
    CHECK_OK(cnn_dict_set(d, "optim.b.exp_avg", z));
    CHECK_ERR(cnn_optim_load_state_dict(fresh, d), CNN_ERR_NOT_FOUND);
    CHECK(strstr(cnn_last_error(), "optim.b.exp_avg"));
    cnn_dict_destroy(&d);
    CHECK_OK(cnn_dict_create(&d));
    CHECK_OK(cnn_optim_state_dict(opt, d));
    CHECK_OK(cnn_dict_set_meta(d, "optim.a.bogus", "1"));
    CHECK_ERR(cnn_optim_load_state_dict(fresh, d), CNN_ERR_NOT_FOUND);
    CHECK(strstr(cnn_last_error(), "optim.a.bogus"));
    cnn_dict_destroy(&d);
    /* Counts are integers from 0 to 2^53 (a step of INT64_MAX overflowed step + 1 in the
     * update, and Adam wrote NaN), and lr is a finite number >= 0 that a float holds. */
    const char *bad[9][2] = {{"optim.step", "-1"},
                             {"optim.a.step", "-2"},
                             {"optim.a.step", "9223372036854775807"},
                             {"optim.step", "9007199254740993"},
                             {"optim.a.step", "2.5"},
                             {"optim.lr", "-0.5"},
                             {"optim.lr", "inf"},
                             {"optim.lr", "nan"},
                             {"optim.lr", "1e300"}};
    for (int i = 0; i < 9; i++) {
        CHECK_OK(cnn_dict_create(&d));
        CHECK_OK(cnn_optim_state_dict(opt, d));
        CHECK_OK(cnn_dict_set_meta(d, bad[i][0], bad[i][1]));
        CHECK_ERR(cnn_optim_load_state_dict(fresh, d), CNN_ERR_FORMAT);
        CHECK(strstr(cnn_last_error(), bad[i][0]));
        cnn_dict_destroy(&d);
    }
    CHECK(cnn_optim_get_lr(fresh) == c.lr);
    /* The largest step loads, and Adam's next update from it is finite. */
    CHECK_OK(cnn_dict_create(&d));
    CHECK_OK(cnn_optim_state_dict(opt, d));
    CHECK_OK(cnn_dict_set_meta(d, "optim.a.step", "9007199254740992"));
    CHECK_OK(cnn_optim_load_state_dict(fresh, d));
    cnn_dict_destroy(&d);
    float before[2] = {0, 0}, av[2] = {0, 0};
    CHECK_OK(cnn_tensor_read(a, before, 2));
    CHECK_OK(cnn_optim_step(fresh));
    CHECK_OK(cnn_tensor_read(a, av, 2));
    CHECK(isfinite(av[0]) && isfinite(av[1]) && av[0] != before[0] && av[1] != before[1]);
    cnn_optim_destroy(&opt);
    cnn_optim_destroy(&fresh);
    cnn_tensor *all[3] = {a, b, z};
    for (int i = 0; i < 3; i++) cnn_tensor_free(&all[i]);
}

/* A refused load changes nothing, the learning rate included: a state with another lr whose
 * later entries are wrong (a negative step count, a missing tensor) leaves the lr as it was,
 * so a resume that failed cannot go on training at the checkpoint's rate. */
TEST(a_refused_load_leaves_the_learning_rate_alone)
{
    cnn_optim *opt = NULL;
    cnn_tensor *a = NULL, *b = NULL;
    cnn_dict *d = NULL;
    CHECK_OK(two_params_one_stepped(&opt, &a, &b));
    const float lr = cnn_optim_get_lr(opt);
    for (int variant = 0; variant < 2; variant++) {
        cnn_dict *bad = NULL;
        CHECK_OK(cnn_dict_create(&d));
        CHECK_OK(cnn_optim_state_dict(opt, d));
        CHECK_OK(cnn_dict_set_meta(d, "optim.lr", "0.25"));
        if (variant == 0) CHECK_OK(cnn_dict_set_meta(d, "optim.a.step", "-2"));
        CHECK_OK(cnn_dict_create(&bad));
        for (int i = 0; i < cnn_dict_meta_size(d); i++)
            CHECK_OK(cnn_dict_set_meta(bad, cnn_dict_meta_key(d, i), cnn_dict_meta_value(d, i)));
        if (variant == 0) CHECK_ERR(cnn_optim_load_state_dict(opt, bad), CNN_ERR_FORMAT);
        else CHECK_ERR(cnn_optim_load_state_dict(opt, bad), CNN_ERR_NOT_FOUND); /* no tensors */
        CHECK(cnn_optim_get_lr(opt) == lr);
        cnn_dict_destroy(&bad);
        cnn_dict_destroy(&d);
    }
    cnn_optim_destroy(&opt);
    cnn_tensor_free(&a);
    cnn_tensor_free(&b);
}
