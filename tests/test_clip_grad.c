/* test_clip_grad.c — gradient-norm clipping (cnn_clip_grad_norm, cnn_optim_clip_grad_norm) as
 * torch.nn.utils.clip_grad_norm_: the scale max_norm / (norm + 1e-6) only when over, the norm
 * summed in double, a NaN or infinite norm spread as torch does, and the clip as an in-place
 * write of the gradients that backward checks. */
#include "gradcheck.h"

TEST(clip_grad_norm_scales_when_over)
{
    float v[3] = {0, 0, 0}, g1[2] = {3, 4}, g2[1] = {12};
    cnn_tensor *a = leaf_of_values(CNN_SHAPE(2), v), *b = leaf_of_values(CNN_SHAPE(1), v);
    cnn_tensor *c = leaf_of_values(CNN_SHAPE(3), v);
    REQUIRE(a && b && c);
    cnn_tensor *ps[4] = {a, NULL, b, c}; /* c has no gradient */
    float total = -1;
    CHECK_OK(set_grad_values(a, g1));
    CHECK_OK(set_grad_values(b, g2));
    CHECK_OK(cnn_clip_grad_norm(ps, 4, 20.0f, &total));
    CHECK_NEAR(total, 13.0, 1e-6);
    CHECK(cnn_tensor_cdata(cnn_tensor_grad(a))[0] == 3.0f); /* under max_norm: untouched */
    CHECK_OK(cnn_clip_grad_norm(ps, 4, 6.5f, &total));
    CHECK_NEAR(total, 13.0, 1e-6);
    double coef = 6.5 / (13.0 + 1e-6);
    CHECK_NEAR(cnn_tensor_cdata(cnn_tensor_grad(a))[0], 3 * coef, 1e-6);
    CHECK_NEAR(cnn_tensor_cdata(cnn_tensor_grad(a))[1], 4 * coef, 1e-6);
    CHECK_NEAR(cnn_tensor_cdata(cnn_tensor_grad(b))[0], 12 * coef, 1e-6);
    CHECK(cnn_tensor_grad(c) == NULL);
    CHECK_OK(cnn_clip_grad_norm(ps, 4, 100.0f, &total));
    CHECK_NEAR(total, 6.5, 1e-5);

    cnn_optim *opt = NULL;
    cnn_optim_config cfg = cnn_optim_defaults(CNN_OPTIM_SGD);
    CHECK_OK(cnn_optim_create(&cfg, &opt));
    CHECK_OK(cnn_optim_add_param(opt, "a", a, true));
    CHECK_OK(cnn_optim_add_param(opt, "b", b, true));
    CHECK_OK(cnn_optim_clip_grad_norm(opt, 1.0f, &total));
    CHECK_NEAR(total, 6.5, 1e-5);
    CHECK_OK(cnn_clip_grad_norm(ps, 4, 100.0f, &total));
    CHECK_NEAR(total, 1.0, 1e-5);
    CHECK_OK(cnn_clip_grad_norm(NULL, 0, 1.0f, &total));
    CHECK(total == 0);
    CHECK_ERR(cnn_clip_grad_norm(ps, 4, -1.0f, NULL), CNN_ERR_INVALID_ARG);
    CHECK_ERR(cnn_clip_grad_norm(NULL, 2, 1.0f, NULL), CNN_ERR_INVALID_ARG);
    CHECK_ERR(cnn_clip_grad_norm(ps, -1, 1.0f, NULL), CNN_ERR_INVALID_ARG);
    CHECK(strstr(cnn_last_error(), "negative count -1"));
    /* max_norm 0 is valid: torch's coefficient 0 / (norm + 1e-6) zeroes the gradients. */
    CHECK_OK(cnn_clip_grad_norm(ps, 4, 0.0f, &total));
    CHECK_NEAR(total, 1.0, 1e-5);
    CHECK(cnn_tensor_cdata(cnn_tensor_grad(a))[1] == 0.0f);
    CHECK(cnn_tensor_cdata(cnn_tensor_grad(b))[0] == 0.0f);
    cnn_optim_destroy(&opt);
    cnn_tensor_free(&a);
    cnn_tensor_free(&b);
    cnn_tensor_free(&c);
}

/* The clip coefficient is max_norm / (total + 1e-6), as torch.nn.utils.clip_grad_norm_'s: with a
 * norm near 1e-6 that term sets the scale. Gradients (3e-7, 4e-7), norm 5e-7, max_norm 2.5e-7:
 * torch gives coefficient 1/6 (gradients 5e-8, 6.67e-8), where max_norm / total would give 1/2. */
TEST(clip_grad_norm_adds_eps_to_the_norm)
{
    float v[2] = {0, 0}, g[2] = {3e-7f, 4e-7f};
    cnn_tensor *a = leaf_of_values(CNN_SHAPE(2), v);
    REQUIRE(a);
    float total = -1;
    CHECK_OK(set_grad_values(a, g));
    CHECK_OK(cnn_clip_grad_norm(&a, 1, 2.5e-7f, &total));
    CHECK_NEAR(total, 5e-7, 1e-6 * 5e-7);
    REQUIRE(cnn_tensor_grad(a));
    const double want[2] = {5e-8, 6.666666667e-8};
    for (int i = 0; i < 2; i++)
        CHECK_NEAR(cnn_tensor_cdata(cnn_tensor_grad(a))[i], want[i], 1e-6 * want[i]);
    cnn_tensor_free(&a);
}

/* The squares are summed in double: gradients of 1e20, whose squares overflow float (PyTorch's
 * float32 norm is inf there and zeroes them), give the true norm and are scaled to max_norm; ones
 * of 1e-30, whose squares underflow float, keep their norm too. */
TEST(clip_grad_norm_neither_overflows_nor_underflows)
{
    float v[3] = {0, 0, 0}, big[3] = {1e20f, 1e20f, 1e20f}, tiny[3] = {1e-30f, 1e-30f, 1e-30f};
    cnn_tensor *a = leaf_of_values(CNN_SHAPE(3), v);
    REQUIRE(a);
    float total = -1;
    CHECK_OK(set_grad_values(a, big));
    CHECK_OK(cnn_clip_grad_norm(&a, 1, 1.0f, &total));
    CHECK_NEAR(total, 1.7320508e20, 1e-6 * 1.7320508e20);
    REQUIRE(cnn_tensor_grad(a));
    for (int i = 0; i < 3; i++)
        CHECK_NEAR(cnn_tensor_cdata(cnn_tensor_grad(a))[i], 0.57735027, 1e-6);
    CHECK_OK(set_grad_values(a, tiny));
    CHECK_OK(cnn_clip_grad_norm(&a, 1, 1.0f, &total));
    CHECK_NEAR(total, 1.7320508e-30, 1e-6 * 1.7320508e-30);
    CHECK(cnn_tensor_cdata(cnn_tensor_grad(a))[0] == 1e-30f);
    cnn_tensor_free(&a);
}

/* torch.nn.utils.clip_grad_norm_([a, b], 1.0) multiplies every gradient by
 * clamp(1 / (norm + 1e-6), max=1): a NaN norm makes them all NaN; an infinite one makes them
 * 0, and inf * 0 NaN. PyTorch 1.13 gives (nan, [nan, nan], [nan, nan]) for a.grad = [nan, 1],
 * b.grad = [3, 4], and (inf, [nan, 0], [0, 0]) for a.grad = [inf, 1]. */
TEST(clip_grad_norm_spreads_a_nan_or_infinite_norm_as_torch)
{
    const float z[2] = {0, 0}, ga_nan[2] = {NAN, 1}, ga_inf[2] = {INFINITY, 1}, gb[2] = {3, 4};
    cnn_tensor *ps[2] = {leaf_of_values(CNN_SHAPE(2), z), leaf_of_values(CNN_SHAPE(2), z)};
    REQUIRE(ps[0] && ps[1]);
    float norm = 0;
    CHECK_OK(set_grad_values(ps[0], ga_nan));
    CHECK_OK(set_grad_values(ps[1], gb));
    CHECK_OK(cnn_clip_grad_norm(ps, 2, 1.0f, &norm));
    CHECK(isnan(norm));
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < 2; i++) CHECK(isnan(cnn_tensor_cdata(cnn_tensor_grad(ps[k]))[i]));
    CHECK_OK(set_grad_values(ps[0], ga_inf));
    CHECK_OK(set_grad_values(ps[1], gb));
    CHECK_OK(cnn_clip_grad_norm(ps, 2, 1.0f, &norm));
    CHECK(isinf(norm) && norm > 0);
    const float *a = cnn_tensor_cdata(cnn_tensor_grad(ps[0]));
    const float *b = cnn_tensor_cdata(cnn_tensor_grad(ps[1]));
    CHECK(isnan(a[0]) && a[1] == 0.0f && b[0] == 0.0f && b[1] == 0.0f);
    cnn_tensor_free(&ps[0]);
    cnn_tensor_free(&ps[1]);
}

/* Clipping scales the gradients in place, so a forward that read a gradient before the clip
 * cannot back-propagate through the scaled values: backward refuses, as after any in-place
 * write (here linear saved p's gradient, its input, for w's gradient). */
TEST(clip_grad_norm_counts_as_an_in_place_write_of_the_gradients)
{
    const float z[2] = {0, 0};
    cnn_tensor *p = leaf_of_values(CNN_SHAPE(1, 2), z), *w = leaf_of_values(CNN_SHAPE(1, 2), z);
    cnn_tensor *out = NULL, *s = NULL;
    const float gv[2] = {3, 4};
    REQUIRE(p && w);
    CHECK_OK(set_grad_values(p, gv));
    CHECK_OK(cnn_linear(cnn_tensor_grad(p), w, NULL, &out));
    CHECK_OK(cnn_sum(out, &s));
    float norm = 0;
    CHECK_OK(cnn_clip_grad_norm(&p, 1, 1.0f, &norm));
    CHECK(norm == 5.0f);
    CHECK_ERR(cnn_backward(s), CNN_ERR_INVALID_ARG);
    CHECK(strstr(cnn_last_error(), "modified in place") != NULL);
    CHECK(cnn_tensor_grad(w) == NULL);
    cnn_tensor *all[4] = {p, w, out, s};
    for (int i = 0; i < 4; i++) cnn_tensor_free(&all[i]);
}
