/* test_autograd.c — the tape: gradient routing and summing, accumulation across backward
 * calls, no-grad mode, resets that release what was saved, and gradchecks of the core ops. */
#include "gradcheck.h"

TEST(leaf_grads_accumulate_until_zeroed)
{
    float av[3] = {1, 2, 3};
    cnn_tensor *a = NULL, *y = NULL, *s = NULL;
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(3), av, CNN_CPU, &a));
    CHECK_OK(cnn_tensor_set_requires_grad(a, true));
    for (int step = 0; step < 2; step++) {
        CHECK_OK(cnn_add(a, a, &y)); /* y = 2a: both inputs route to the same leaf */
        CHECK_OK(cnn_sum(y, &s));
        CHECK_OK(cnn_backward(s));
        cnn_tensor_free(&y);
        cnn_tensor_free(&s);
    }
    REQUIRE(cnn_tensor_grad(a));
    for (int i = 0; i < 3; i++) CHECK(cnn_tensor_cdata(cnn_tensor_grad(a))[i] == 4.0f);
    cnn_tensor_zero_grad(a);
    CHECK(cnn_tensor_grad(a) == NULL);
    CHECK(cnn_tape_size() == 0);
    cnn_tensor_free(&a);
}

/* contiguous() of a transposed leaf is recorded: its gradient comes back through the copy and
 * adds to the one the leaf gets directly (x.t().contiguous().sum() + x.sum(): all 2s). */
TEST(contiguous_copy_passes_gradients_back)
{
    cnn_tensor *x = rand_tensor(CNN_SHAPE(2, 3), -1, 1, 0), *t = NULL, *c = NULL, *s1 = NULL,
               *s2 = NULL, *l = NULL;
    REQUIRE(x);
    CHECK_OK(cnn_tensor_set_requires_grad(x, true));
    CHECK_OK(cnn_tensor_transpose(x, 0, 1, &t));
    CHECK_OK(cnn_tensor_contiguous(t, &c));
    CHECK(cnn_tensor_is_contiguous(c) && cnn_tensor_requires_grad(c));
    CHECK_OK(cnn_sum(c, &s1));
    CHECK_OK(cnn_sum(x, &s2));
    CHECK_OK(cnn_add(s1, s2, &l));
    CHECK_OK(cnn_backward(l));
    REQUIRE(cnn_tensor_grad(x));
    for (int i = 0; i < 6; i++) CHECK(cnn_tensor_cdata(cnn_tensor_grad(x))[i] == 2.0f);
    /* In no-grad mode, or already contiguous, nothing is recorded. */
    cnn_tensor *c2 = NULL;
    cnn_set_grad_enabled(false);
    CHECK_OK(cnn_tensor_contiguous(t, &c2));
    cnn_set_grad_enabled(true);
    CHECK(!cnn_tensor_requires_grad(c2) && cnn_tape_size() == 0);
    cnn_tensor_free(&c2);
    CHECK_OK(cnn_tensor_contiguous(x, &c2));
    CHECK(c2 == x && cnn_tape_size() == 0);
    cnn_tensor_free(&c2);
    cnn_tensor *all[] = {t, c, s1, s2, l, x};
    for (int i = 0; i < 6; i++) cnn_tensor_free(&all[i]);
}

/* A leaf frozen after an op recorded it gets no gradient (PyTorch's AccumulateGrad checks
 * requires_grad when it runs); and a backward from a leaf, like any other, resets the tape. */
TEST(frozen_leaves_get_no_gradient_and_a_leafs_backward_resets_the_tape)
{
    cnn_tensor *x = rand_tensor(CNN_SHAPE(3), -1, 1, 0), *w = rand_tensor(CNN_SHAPE(3), -1, 1, 0);
    cnn_tensor *y = NULL, *s = NULL, *p = NULL;
    REQUIRE(x && w);
    CHECK_OK(cnn_tensor_set_requires_grad(x, true));
    CHECK_OK(cnn_tensor_set_requires_grad(w, true));
    CHECK_OK(cnn_add(x, w, &y));
    CHECK_OK(cnn_sum(y, &s));
    CHECK_OK(cnn_tensor_set_requires_grad(x, false));
    CHECK_OK(cnn_backward(s));
    CHECK(cnn_tensor_grad(x) == NULL);
    REQUIRE(cnn_tensor_grad(w));
    for (int i = 0; i < 3; i++) CHECK(cnn_tensor_cdata(cnn_tensor_grad(w))[i] == 1.0f);
    cnn_tensor_free(&y);
    cnn_tensor_free(&s);

    CHECK_OK(cnn_scale(w, 2.0f, &p));
    CHECK(cnn_tape_size() == 1);
    cnn_tensor_zero_grad(w);
    CHECK_OK(cnn_backward_with_grad(w, x));
    CHECK(cnn_tape_size() == 0 && !cnn_tensor_requires_grad(p));
    REQUIRE(cnn_tensor_grad(w));
    CHECK(cnn_tensor_cdata(cnn_tensor_grad(w))[2] == cnn_tensor_cdata(x)[2]);
    cnn_tensor *all[] = {p, w, x};
    for (int i = 0; i < 3; i++) cnn_tensor_free(&all[i]);
}

/* A view of a parameter taken before a backward belongs to the graph that backward freed. Used
 * after it beside the parameter itself (sum(x·v^T) + sum(x·w^T), v = w[0:2]), its share of the
 * gradient cannot reach w: the backward refuses, naming the op, before any gradient changes
 * (before, w.grad silently lacked v's share). Ops on it still run, and a clone is a constant. */
/* w (4, 3) zeros requiring grad, x (2, 3), and v = w's first two rows, taken before a backward
 * of sum(v): an input from a graph that backward freed. */
static void stale_view(cnn_tensor **w, cnn_tensor **x, cnn_tensor **v, cnn_tensor **s)
{
    const float xv[6] = {1, 0, 1, 1, 2, 3};
    CHECK_OK(cnn_tensor_zeros(CNN_SHAPE(4, 3), CNN_CPU, w));
    CHECK_OK(cnn_tensor_set_requires_grad(*w, true));
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(2, 3), xv, CNN_CPU, x));
    CHECK_OK(cnn_tensor_narrow(*w, 0, 0, 2, v));
    CHECK_OK(cnn_sum(*v, s));
    CHECK_OK(cnn_backward(*s));
}

TEST(backward_refuses_an_input_from_a_graph_an_earlier_backward_freed)
{
    cnn_tensor *w = NULL, *x = NULL, *v = NULL, *s = NULL, *a = NULL, *b = NULL, *sa = NULL,
               *sb = NULL, *loss = NULL, *c = NULL, *r = NULL;
    stale_view(&w, &x, &v, &s);
    REQUIRE(w && x && v && s);
    REQUIRE(cnn_tensor_grad(w));
    CHECK(!cnn_tensor_requires_grad(v));
    CHECK_OK(cnn_linear(x, v, NULL, &a));
    CHECK_OK(cnn_linear(x, w, NULL, &b));
    CHECK_OK(cnn_sum(a, &sa));
    CHECK_OK(cnn_sum(b, &sb));
    CHECK_OK(cnn_add(sa, sb, &loss));
    CHECK_ERR(cnn_backward(loss), CNN_ERR_INVALID_ARG);
    CHECK(strstr(cnn_last_error(), "input 1 (2, 3) of linear") &&
          strstr(cnn_last_error(), "an earlier backward"));
    const float *g = cnn_tensor_cdata(cnn_tensor_grad(w)); /* the first backward's, unchanged */
    for (int i = 0; i < 12; i++) CHECK(g[i] == (i < 6 ? 1.0f : 0.0f));
    CHECK(cnn_tape_size() == 0);
    /* As a constant: a clone of it (w.grad gets w's share only: column sums of x, each row). */
    cnn_tensor_zero_grad(w);
    CHECK_OK(cnn_tensor_clone(v, &c));
    cnn_tensor *drop[] = {a, b, sa, sb, loss};
    for (int i = 0; i < 5; i++) cnn_tensor_free(&drop[i]);
    a = b = sa = sb = loss = NULL;
    CHECK_OK(cnn_linear(x, c, NULL, &a));
    CHECK_OK(cnn_linear(x, w, NULL, &b));
    CHECK_OK(cnn_sum(a, &sa));
    CHECK_OK(cnn_sum(b, &sb));
    CHECK_OK(cnn_add(sa, sb, &loss));
    CHECK_OK(cnn_backward(loss));
    REQUIRE(cnn_tensor_grad(w));
    g = cnn_tensor_cdata(cnn_tensor_grad(w));
    static const float col[3] = {2, 2, 4};
    for (int i = 0; i < 12; i++) CHECK(g[i] == col[i % 3]);
    /* A forward op on it alone, never back-propagated, runs as before. */
    CHECK_OK(cnn_relu(v, &r));
    cnn_tensor *all[] = {w, x, v, s, a, b, sa, sb, loss, c, r};
    for (int i = 0; i < 11; i++) cnn_tensor_free(&all[i]);
    cnn_tape_reset();
}

TEST(branches_sum_and_no_grad_mode)
{
    cnn_tensor *a = rand_tensor(CNN_SHAPE(4), -1, 1, 1), *b = NULL, *c = NULL, *d = NULL, *s = NULL;
    REQUIRE(a);
    CHECK_OK(cnn_scale(a, 3.0f, &b));   /* b = 3a */
    CHECK_OK(cnn_scale(b, 2.0f, &c));   /* c = 6a */
    CHECK_OK(cnn_add(b, c, &d));        /* d = 9a, b used twice */
    CHECK_OK(cnn_mean(d, &s));
    CHECK(cnn_tape_size() == 4);
    CHECK_OK(cnn_backward(s));
    for (int i = 0; i < 4; i++) CHECK_NEAR(cnn_tensor_cdata(cnn_tensor_grad(a))[i], 9.0 / 4, 1e-6);
    cnn_tensor_free(&b);
    cnn_tensor_free(&c);
    cnn_tensor_free(&d);
    cnn_tensor_free(&s);
    bool was = cnn_set_grad_enabled(false);
    CHECK_OK(cnn_scale(a, 3.0f, &b));
    CHECK(cnn_tape_size() == 0);
    CHECK(!cnn_tensor_requires_grad(b));
    CHECK_ERR(cnn_backward(b), CNN_ERR_SHAPE);
    cnn_set_grad_enabled(was);
    CHECK_OK(cnn_sum(b, &s));
    CHECK_ERR(cnn_backward(s), CNN_ERR_INVALID_ARG); /* b is a constant: nothing to do */
    cnn_tensor_free(&a);
    cnn_tensor_free(&b);
    cnn_tensor_free(&s);
}

/* add hands one gradient tensor to both its inputs, and the caller keeps the seed it passes:
 * a slot may take such a tensor over only after copying it, or a later in-place sum into one
 * slot changes the other. y = (a + b) + a: a gets 2 g and b g, and the seed g is left as it was. */
TEST(shared_gradient_tensors_are_copied_before_summing)
{
    cnn_tensor *a = rand_tensor(CNN_SHAPE(5), -1, 1, 1), *b = rand_tensor(CNN_SHAPE(5), -1, 1, 1);
    cnn_tensor *g = rand_tensor(CNN_SHAPE(5), -1, 1, 0), *t = NULL, *y = NULL;
    REQUIRE(a && b && g);
    float g0[5];
    memcpy(g0, cnn_tensor_cdata(g), sizeof g0);
    CHECK_OK(cnn_add(a, b, &t));
    CHECK_OK(cnn_add(t, a, &y));
    CHECK_OK(cnn_backward_with_grad(y, g));
    REQUIRE(cnn_tensor_grad(a) && cnn_tensor_grad(b));
    for (int i = 0; i < 5; i++) {
        CHECK(cnn_tensor_cdata(g)[i] == g0[i]);
        CHECK(cnn_tensor_cdata(cnn_tensor_grad(a))[i] == 2 * g0[i]);
        CHECK(cnn_tensor_cdata(cnn_tensor_grad(b))[i] == g0[i]);
    }
    /* A second backward sums into a's gradient in place: b's and the seed stay. */
    cnn_tensor_free(&t);
    cnn_tensor_free(&y);
    CHECK_OK(cnn_add(a, a, &y));
    CHECK_OK(cnn_backward_with_grad(y, g));
    for (int i = 0; i < 5; i++) {
        CHECK(cnn_tensor_cdata(g)[i] == g0[i]);
        CHECK(cnn_tensor_cdata(cnn_tensor_grad(a))[i] == 4 * g0[i]);
        CHECK(cnn_tensor_cdata(cnn_tensor_grad(b))[i] == g0[i]);
    }
    cnn_tensor *all[] = {a, b, g, t, y};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) cnn_tensor_free(&all[i]);
}

TEST(tape_reset_releases_and_does_not_grow)
{
    cnn_tensor *w = rand_tensor(CNN_SHAPE(16), -1, 1, 1);
    REQUIRE(w);
    for (int step = 0; step < 10000; step++) {
        cnn_tensor *y = NULL, *z = NULL, *s = NULL;
        CHECK_OK(cnn_scale(w, 0.5f, &y));
        CHECK_OK(cnn_add(y, w, &z));
        CHECK_OK(cnn_sum(z, &s));
        if (step % 2) {
            CHECK_OK(cnn_backward(s));
        } else {
            cnn_tape_reset(); /* e.g. an evaluation pass that never calls backward */
            CHECK(!cnn_tensor_requires_grad(z)); /* stale outputs become constants */
        }
        CHECK(cnn_tape_size() == 0);
        cnn_tensor_free(&y);
        cnn_tensor_free(&z);
        cnn_tensor_free(&s);
        if (cnn_test_failed()) break;
    }
    CHECK_NEAR(cnn_tensor_cdata(cnn_tensor_grad(w))[0], 5000 * 1.5, 1e-2);
    cnn_tensor_free(&w);
}

static cnn_status f_views(cnn_tensor *const *in, void *ud, cnn_tensor **y)
{
    (void)ud;
    cnn_tensor *t = NULL, *n = NULL, *r = NULL;
    cnn_status st = cnn_tensor_transpose(in[0], 1, 3, &t);
    if (st == CNN_OK) st = cnn_tensor_narrow(t, 2, 1, 2, &n);
    if (st == CNN_OK) st = cnn_flatten(n, 1, &r);
    if (st == CNN_OK) st = cnn_scale(r, 1.5f, y);
    cnn_tensor_free(&t);
    cnn_tensor_free(&n);
    cnn_tensor_free(&r);
    return st;
}

TEST(gradcheck_views)
{
    cnn_tensor *x = rand_tensor(CNN_SHAPE(2, 3, 4, 5), -1, 1, 1);
    CHECK(gradcheck("transpose+narrow+flatten", f_views, &x, 1, NULL, NULL));
    cnn_tensor_free(&x);
}

static cnn_status f_add(cnn_tensor *const *in, void *ud, cnn_tensor **y)
{
    (void)ud;
    return cnn_add(in[0], in[1], y);
}
static cnn_status f_mean(cnn_tensor *const *in, void *ud, cnn_tensor **y)
{
    (void)ud;
    return cnn_mean(in[0], y);
}

static cnn_status f_add_relu(cnn_tensor *const *in, void *ud, cnn_tensor **y)
{
    (void)ud;
    return cnn_add_relu(in[0], in[1], y);
}

/* cnn_add_relu against cnn_add then cnn_relu: output and both gradients the same bits, on a
 * small tensor and on one large enough for the threaded loops; then finite differences, with
 * every sum kept 0.5 or more from the ReLU's kink; then the errors. */
TEST(add_relu_same_bits_as_add_then_relu)
{
    const cnn_shape shapes[] = {CNN_SHAPE(3, 5), CNN_SHAPE(2, 64, 130, 131)};
    for (int k = 0; k < 2; k++) {
        cnn_tensor *a = rand_tensor(shapes[k], -1, 1, 1), *b = rand_tensor(shapes[k], -1, 1, 1);
        cnn_tensor *dy = rand_tensor(shapes[k], -1, 1, 0), *s = NULL, *ref = NULL, *y = NULL;
        cnn_tensor *ga = NULL, *gb = NULL;
        CHECK_OK(cnn_add(a, b, &s));
        CHECK_OK(cnn_relu(s, &ref));
        CHECK_OK(cnn_backward_with_grad(ref, dy));
        CHECK_OK(cnn_tensor_clone(cnn_tensor_grad(a), &ga));
        CHECK_OK(cnn_tensor_clone(cnn_tensor_grad(b), &gb));
        cnn_tensor_zero_grad(a);
        cnn_tensor_zero_grad(b);
        CHECK_OK(cnn_add_relu(a, b, &y));
        CHECK_OK(cnn_backward_with_grad(y, dy));
        CHECK(tensors_close("add_relu y", y, ref, 0, 0));
        CHECK(tensors_close("add_relu grad a", cnn_tensor_grad(a), ga, 0, 0));
        CHECK(tensors_close("add_relu grad b", cnn_tensor_grad(b), gb, 0, 0));
        cnn_tensor *all[] = {a, b, dy, s, ref, y, ga, gb};
        for (size_t i = 0; i < sizeof all / sizeof *all; i++) cnn_tensor_free(&all[i]);
    }
    float bv[15];
    for (int i = 0; i < 15; i++) bv[i] = (i % 3 ? 1.5f : -1.5f) + 0.03f * (float)i;
    cnn_tensor *in[2] = {rand_tensor(CNN_SHAPE(3, 5), -1, 1, 1), NULL}, *y = NULL;
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(3, 5), bv, CNN_CPU, &in[1]));
    CHECK_OK(cnn_tensor_set_requires_grad(in[1], true));
    CHECK(gradcheck("add_relu", f_add_relu, in, 2, NULL, NULL));
    cnn_tensor *other = rand_tensor(CNN_SHAPE(5, 3), -1, 1, 0);
    CHECK_ERR(cnn_add_relu(in[0], other, &y), CNN_ERR_SHAPE);
    CHECK(strstr(cnn_last_error(), "add_relu") && strstr(cnn_last_error(), "(5, 3)"));
    CHECK_ERR(cnn_add_relu(in[0], in[1], NULL), CNN_ERR_INVALID_ARG);
    CHECK(y == NULL);
    cnn_tensor_free(&other);
    cnn_tensor_free(&in[0]);
    cnn_tensor_free(&in[1]);
}

TEST(gradcheck_elementwise)
{
    cnn_tensor *in[2] = {rand_tensor(CNN_SHAPE(3, 5), -1, 1, 1),
                         rand_tensor(CNN_SHAPE(3, 5), -1, 1, 1)};
    CHECK(gradcheck("add", f_add, in, 2, NULL, NULL));
    CHECK(gradcheck("mean", f_mean, in, 1, NULL, NULL));
    cnn_tensor *c = NULL;
    CHECK_ERR(cnn_add(in[0], c, &c), CNN_ERR_INVALID_ARG);
    cnn_tensor *other = rand_tensor(CNN_SHAPE(5, 3), -1, 1, 0);
    CHECK_ERR(cnn_add(in[0], other, &c), CNN_ERR_SHAPE);
    CHECK(strstr(cnn_last_error(), "(3, 5)") && strstr(cnn_last_error(), "(5, 3)"));
    cnn_tensor_free(&other);
    cnn_tensor_free(&in[0]);
    cnn_tensor_free(&in[1]);
}

/* The mean of no elements is NaN, as torch.mean of an empty tensor (the sum is 0). */
TEST(mean_of_an_empty_tensor_is_nan)
{
    cnn_tensor *e = NULL, *m = NULL, *s = NULL;
    CHECK_OK(cnn_tensor_zeros(CNN_SHAPE(0, 3), CNN_CPU, &e));
    CHECK_OK(cnn_mean(e, &m));
    CHECK_OK(cnn_sum(e, &s));
    REQUIRE(m && s);
    CHECK(isnan(cnn_tensor_cdata(m)[0]));
    CHECK(cnn_tensor_cdata(s)[0] == 0.0f);
    free_tensors(&e, &m, &s);
}

/* Tape generations are unique in the process: a tensor recorded on a context that was destroyed
 * stays a constant even when a new context is allocated at the dead one's address (glibc hands
 * the same block back at once), instead of pointing the new tape at a freed node. */
TEST(tensor_of_a_destroyed_context_is_a_constant)
{
    float v[4] = {1, 2, 3, 4};
    cnn_context *saved = cnn_context_current();
    for (int round = 0; round < 4; round++) {
        cnn_context *a = NULL, *b = NULL;
        cnn_tensor *x = NULL, *y = NULL, *z = NULL, *loss = NULL;
        CHECK_OK(cnn_context_create(CNN_CPU, &a));
        cnn_context_set_current(a);
        CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(4), v, CNN_CPU, &x));
        CHECK_OK(cnn_tensor_set_requires_grad(x, true));
        CHECK_OK(cnn_scale(x, 2.0f, &y)); /* recorded on a's tape */
        CHECK(cnn_tensor_requires_grad(y));
        cnn_context_set_current(saved);
        cnn_context_destroy(&a);
        CHECK_OK(cnn_context_create(CNN_CPU, &b));
        cnn_context_set_current(b);
        CHECK(!cnn_tensor_requires_grad(y));
        CHECK_OK(cnn_scale(y, 3.0f, &z));
        CHECK(!cnn_tensor_requires_grad(z));
        CHECK_OK(cnn_sum(z, &loss));
        CHECK_ERR(cnn_backward(loss), CNN_ERR_INVALID_ARG); /* nothing to differentiate */
        CHECK(cnn_tensor_grad(x) == NULL);
        cnn_tensor_free(&x);
        cnn_tensor_free(&y);
        cnn_tensor_free(&z);
        cnn_tensor_free(&loss);
        cnn_context_set_current(saved);
        cnn_context_destroy(&b);
    }
}

/* A loss recorded on one context and back-propagated under another is refused for what it is,
 * not as "does not require grad"; under its own context again, the backward runs. */
TEST(backward_under_another_context_names_the_cause)
{
    float v[3] = {1, 2, 3};
    cnn_context *saved = cnn_context_current(), *a = NULL, *b = NULL;
    cnn_tensor *x = NULL, *loss = NULL;
    CHECK_OK(cnn_context_create(CNN_CPU, &a));
    CHECK_OK(cnn_context_create(CNN_CPU, &b));
    cnn_context_set_current(a);
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(3), v, CNN_CPU, &x));
    CHECK_OK(cnn_tensor_set_requires_grad(x, true));
    CHECK_OK(cnn_sum(x, &loss));
    cnn_context_set_current(b);
    CHECK_ERR(cnn_backward(loss), CNN_ERR_INVALID_ARG);
    CHECK(strstr(cnn_last_error(), "another context's tape"));
    CHECK(cnn_tensor_grad(x) == NULL);
    cnn_context_set_current(a);
    CHECK_OK(cnn_backward(loss));
    REQUIRE(cnn_tensor_grad(x));
    CHECK(cnn_tensor_cdata(cnn_tensor_grad(x))[2] == 1.0f);
    cnn_tensor_free(&x);
    cnn_tensor_free(&loss);
    cnn_context_set_current(saved);
    cnn_context_destroy(&a);
    cnn_context_destroy(&b);
}

/* As torch.autograd.backward: a gradient must have the output's shape, even one with the same
 * number of elements ((3, 2) for a (2, 3) output). Only floating tensors can require grad, and
 * only a leaf's flag can be changed ("you can only change requires_grad flags of leaf
 * variables"). */
TEST(backward_refuses_a_gradient_of_another_shape_and_integer_leaves)
{
    cnn_tensor *a = rand_tensor(CNN_SHAPE(2, 3), -1, 1, 1), *y = NULL, *g = NULL, *l = NULL;
    REQUIRE(a);
    CHECK_OK(cnn_scale(a, 2.0f, &y));
    CHECK_OK(cnn_tensor_ones(CNN_SHAPE(3, 2), CNN_CPU, &g));
    CHECK_ERR(cnn_backward_with_grad(y, g), CNN_ERR_SHAPE);
    CHECK_ERR(cnn_backward_with_grad(a, g), CNN_ERR_SHAPE);
    CHECK(cnn_tensor_grad(a) == NULL);
    cnn_tensor_free(&g);
    CHECK_OK(cnn_tensor_ones(CNN_SHAPE(6), CNN_CPU, &g));
    CHECK_ERR(cnn_backward_with_grad(y, g), CNN_ERR_SHAPE);
    CHECK(cnn_tensor_grad(a) == NULL);
    CHECK_ERR(cnn_tensor_set_requires_grad(y, false), CNN_ERR_INVALID_ARG);
    CHECK(cnn_tensor_requires_grad(y));
    const int64_t lab[2] = {1, 2};
    CHECK_OK(cnn_tensor_from_i64(CNN_SHAPE(2), lab, CNN_CPU, &l));
    CHECK_ERR(cnn_tensor_set_requires_grad(l, true), CNN_ERR_UNSUPPORTED);
    CHECK(!cnn_tensor_requires_grad(l));
    CHECK_OK(cnn_tensor_set_requires_grad(l, false));
    cnn_tape_reset();
    cnn_tensor *all[4] = {a, y, g, l};
    for (int i = 0; i < 4; i++) cnn_tensor_free(&all[i]);
}

/* PyTorch's version counter: a tensor an op saved for its backward, written in place after the
 * op ran (fill_, copy_, write, an optimizer step, a load), makes the backward fail, naming the op,
 * before any gradient changes; the forward run again after the write is fine. Conv with a 3x3
 * kernel over a 3x3 input: dw = x, so a missed write would show as dw = 100. */
TEST(backward_refuses_a_saved_tensor_written_in_place)
{
    cnn_tensor *x = rand_tensor(CNN_SHAPE(1, 1, 3, 3), -1, 1, 0);
    cnn_tensor *w = rand_tensor(CNN_SHAPE(1, 1, 3, 3), -1, 1, 1), *y = NULL, *s = NULL;
    REQUIRE(x && w);
    cnn_conv2d_params p = {0};
    CHECK_OK(cnn_conv2d(x, w, NULL, &p, &y));
    CHECK_OK(cnn_sum(y, &s));
    CHECK_OK(cnn_tensor_fill_(x, 100.0f));
    CHECK_ERR(cnn_backward(s), CNN_ERR_INVALID_ARG);
    CHECK(strstr(cnn_last_error(), "conv2d") && strstr(cnn_last_error(), "modified in place"));
    CHECK(cnn_tensor_grad(w) == NULL && cnn_tape_size() == 0);
    cnn_tensor_free(&y);
    cnn_tensor_free(&s);
    CHECK_OK(cnn_conv2d(x, w, NULL, &p, &y)); /* the write came first: fine */
    CHECK_OK(cnn_sum(y, &s));
    CHECK_OK(cnn_backward(s));
    REQUIRE(cnn_tensor_grad(w));
    for (int i = 0; i < 9; i++) CHECK(cnn_tensor_cdata(cnn_tensor_grad(w))[i] == 100.0f);
    cnn_tensor_free(&y);
    cnn_tensor_free(&s);

    /* An optimizer step between forward and backward changes the saved weight. */
    cnn_optim *opt = NULL;
    cnn_optim_config cfg = cnn_optim_defaults(CNN_OPTIM_SGD);
    CHECK_OK(cnn_optim_create(&cfg, &opt));
    CHECK_OK(cnn_optim_add_param(opt, "w", w, true));
    CHECK_OK(cnn_conv2d(x, w, NULL, &p, &y));
    CHECK_OK(cnn_sum(y, &s));
    CHECK_OK(cnn_optim_step(opt)); /* w still has the last gradient */
    CHECK_ERR(cnn_backward(s), CNN_ERR_INVALID_ARG);
    CHECK(cnn_tensor_cdata(cnn_tensor_grad(w))[0] == 100.0f); /* not accumulated into */
    cnn_optim_destroy(&opt);
    cnn_tensor *all[] = {x, w, y, s};
    for (int i = 0; i < 4; i++) cnn_tensor_free(&all[i]);
}

/* Only what the backward needs counts, as in PyTorch: sigmoid saves its output, not its input,
 * so writing the input is fine and writing the output (here through a view of one row) is not;
 * a write to what a node off the loss's path saved does not stop the backward either. */
TEST(backward_checks_only_what_its_nodes_saved)
{
    cnn_tensor *x = rand_tensor(CNN_SHAPE(2, 3), -1, 1, 1), *z = rand_tensor(CNN_SHAPE(2, 3), -1,
                                                                              1, 0);
    cnn_tensor *w = rand_tensor(CNN_SHAPE(4, 3), -1, 1, 1);
    cnn_tensor *y = NULL, *s = NULL, *row = NULL, *off = NULL, *ones = NULL;
    REQUIRE(x && z && w);
    CHECK_OK(cnn_sigmoid(x, &y));
    CHECK_OK(cnn_linear(z, w, NULL, &off)); /* saves z, off the path of s */
    CHECK_OK(cnn_sum(y, &s));
    CHECK_OK(cnn_tensor_fill_(z, 7.0f));
    CHECK_OK(cnn_tensor_fill_(x, 0.0f)); /* sigmoid's backward does not read x */
    CHECK_OK(cnn_backward(s));
    REQUIRE(cnn_tensor_grad(x));
    cnn_tensor_zero_grad(x);
    cnn_tensor_free(&y);
    cnn_tensor_free(&s);

    CHECK_OK(cnn_sigmoid(x, &y)); /* y = 0.5 everywhere, dy/dx = 0.25 */
    CHECK_OK(cnn_sum(y, &s));
    CHECK_OK(cnn_tensor_narrow(y, 0, 1, 1, &row));
    CHECK_OK(cnn_tensor_ones(CNN_SHAPE(1, 3), CNN_CPU, &ones));
    CHECK_OK(cnn_tensor_copy_(row, ones)); /* y's storage, through a view */
    CHECK_ERR(cnn_backward(s), CNN_ERR_INVALID_ARG);
    CHECK(strstr(cnn_last_error(), "sigmoid"));
    CHECK(cnn_tensor_grad(x) == NULL);
    cnn_tensor *all[] = {x, z, w, y, s, row, off, ones};
    for (int i = 0; i < 8; i++) cnn_tensor_free(&all[i]);
}

/* Adding into a leaf's .grad is a write, as PyTorch's AccumulateGrad: here x.grad is linear's
 * weight, and the backward reaches scale's node (recorded later, so run first), which adds 3
 * into x.grad, before linear's, which reads it for dx2. PyTorch refuses ("modified by an inplace
 * operation"); without the check dx2 came out 4 where the forward had used 1. */
TEST(backward_refuses_a_saved_grad_that_the_same_backward_adds_into)
{
    const float xv[2] = {1, 2}, x2v[2] = {5, 7};
    cnn_tensor *x = NULL, *x2 = NULL, *s = NULL, *z = NULL, *sz = NULL, *sc = NULL, *ss = NULL;
    cnn_tensor *l = NULL;
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(1, 2), xv, CNN_CPU, &x));
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(1, 2), x2v, CNN_CPU, &x2));
    REQUIRE(x && x2);
    CHECK_OK(cnn_tensor_set_requires_grad(x, true));
    CHECK_OK(cnn_tensor_set_requires_grad(x2, true));
    CHECK_OK(cnn_sum(x, &s));
    CHECK_OK(cnn_backward(s)); /* x.grad = (1, 1) */
    REQUIRE(cnn_tensor_grad(x));
    CHECK_OK(cnn_linear(x2, cnn_tensor_grad(x), NULL, &z)); /* saves x.grad for dx2 */
    CHECK_OK(cnn_sum(z, &sz));
    CHECK_OK(cnn_scale(x, 3.0f, &sc));
    CHECK_OK(cnn_sum(sc, &ss));
    CHECK_OK(cnn_add(sz, ss, &l));
    CHECK_ERR(cnn_backward(l), CNN_ERR_INVALID_ARG);
    CHECK(strstr(cnn_last_error(), "linear") && strstr(cnn_last_error(), "modified in place"));
    CHECK(cnn_tensor_grad(x2) == NULL && cnn_tape_size() == 0);
    cnn_tensor *all[] = {x, x2, s, z, sz, sc, ss, l};
    for (int i = 0; i < 8; i++) cnn_tensor_free(&all[i]);
}

/* An in-place write into an op's output is not recorded (PyTorch records it as an op), so a
 * backward through the op would give the op's gradient as if nothing had been written: scale
 * saves nothing, and without the output's version check x.grad came out (2, 2, 2, 2) where
 * PyTorch, having recorded the fill, gives (0, 0, 2, 2). Refused instead, naming the op, with
 * no gradient changed. */
TEST(backward_refuses_an_output_written_in_place)
{
    const float xv[4] = {1, 2, 3, 4};
    cnn_tensor *x = NULL, *y = NULL, *head = NULL, *s = NULL;
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(4), xv, CNN_CPU, &x));
    REQUIRE(x);
    CHECK_OK(cnn_tensor_set_requires_grad(x, true));
    CHECK_OK(cnn_scale(x, 2.0f, &y));
    CHECK_OK(cnn_tensor_narrow(y, 0, 0, 2, &head));
    CHECK_OK(cnn_tensor_fill_(head, 0.0f)); /* y's storage, through a view */
    CHECK_OK(cnn_sum(y, &s));
    CHECK_ERR(cnn_backward(s), CNN_ERR_INVALID_ARG);
    CHECK(strstr(cnn_last_error(), "scale") && strstr(cnn_last_error(), "written in place"));
    CHECK(cnn_tensor_grad(x) == NULL && cnn_tape_size() == 0);
    cnn_tensor *all[] = {y, head, s};
    for (int i = 0; i < 3; i++) cnn_tensor_free(&all[i]);
    CHECK_OK(cnn_scale(x, 2.0f, &y)); /* the forward again: fine */
    CHECK_OK(cnn_sum(y, &s));
    CHECK_OK(cnn_backward(s));
    REQUIRE(cnn_tensor_grad(x));
    for (int i = 0; i < 4; i++) CHECK(cnn_tensor_cdata(cnn_tensor_grad(x))[i] == 2.0f);
    cnn_tensor *rest[] = {x, y, s};
    for (int i = 0; i < 3; i++) cnn_tensor_free(&rest[i]);
}

/* linear saves x only for dw and w only for dx, as PyTorch does: writing the one that no wanted
 * gradient reads is fine (a frozen input's weight updated between forward and backward); with
 * both gradients wanted, either write is refused. dy = 1: dw[o][i] = sum_n x[n][i] and
 * dx[n][i] = sum_o w[o][i]. */
TEST(linear_saves_only_what_the_wanted_gradients_read)
{
    cnn_tensor *x = rand_tensor(CNN_SHAPE(2, 3), -1, 1, 0), *w = rand_tensor(CNN_SHAPE(4, 3), -1,
                                                                              1, 1);
    cnn_tensor *y = NULL, *s = NULL;
    REQUIRE(x && w);
    CHECK_OK(cnn_linear(x, w, NULL, &y));
    CHECK_OK(cnn_sum(y, &s));
    CHECK_OK(cnn_tensor_fill_(w, 3.0f)); /* dw does not read w */
    CHECK_OK(cnn_backward(s));
    const float *px = cnn_tensor_cdata(x), *dw = cnn_tensor_cdata(cnn_tensor_grad(w));
    REQUIRE(dw);
    for (int o = 0; o < 4; o++)
        for (int i = 0; i < 3; i++) CHECK_NEAR(dw[o * 3 + i], px[i] + px[3 + i], 1e-6);
    cnn_tensor_free(&y);
    cnn_tensor_free(&s);

    /* x wanted, w frozen: writing x is fine. */
    CHECK_OK(cnn_tensor_set_requires_grad(w, false));
    CHECK_OK(cnn_tensor_set_requires_grad(x, true));
    CHECK_OK(cnn_linear(x, w, NULL, &y));
    CHECK_OK(cnn_sum(y, &s));
    CHECK_OK(cnn_tensor_fill_(x, -2.0f));
    CHECK_OK(cnn_backward(s));
    REQUIRE(cnn_tensor_grad(x));
    for (int k = 0; k < 6; k++) CHECK_NEAR(cnn_tensor_cdata(cnn_tensor_grad(x))[k], 12.0f, 1e-6);
    cnn_tensor_free(&y);
    cnn_tensor_free(&s);

    /* Both wanted: dx reads w and dw reads x, so a write to either is refused. */
    CHECK_OK(cnn_tensor_set_requires_grad(w, true));
    for (int which = 0; which < 2; which++) {
        CHECK_OK(cnn_linear(x, w, NULL, &y));
        CHECK_OK(cnn_sum(y, &s));
        CHECK_OK(cnn_tensor_fill_(which ? x : w, 1.0f));
        CHECK_ERR(cnn_backward(s), CNN_ERR_INVALID_ARG);
        CHECK(strstr(cnn_last_error(), "linear") && strstr(cnn_last_error(), "modified in place"));
        cnn_tensor_free(&y);
        cnn_tensor_free(&s);
    }
    cnn_tensor_free(&x);
    cnn_tensor_free(&w);
}

/* A stale input blocks only a backward that reaches it: an op on an old view of a parameter,
 * kept but off the path (r = relu(v) below), leaves a backward of something else alone. */
TEST(a_stale_input_off_the_backward_path_blocks_nothing)
{
    cnn_tensor *w = NULL, *x = NULL, *v = NULL, *s = NULL, *r = NULL, *b = NULL, *sb = NULL;
    stale_view(&w, &x, &v, &s);
    REQUIRE(w && x && v && s);
    CHECK_OK(cnn_relu(v, &r)); /* recorded (its input is stale), held, never back-propagated */
    CHECK_OK(cnn_linear(x, w, NULL, &b));
    CHECK_OK(cnn_sum(b, &sb));
    CHECK_OK(cnn_backward(sb));
    REQUIRE(cnn_tensor_grad(w));
    const float *g = cnn_tensor_cdata(cnn_tensor_grad(w)); /* ones (rows 0-1) + column sums */
    static const float col[3] = {2, 2, 4};
    for (int i = 0; i < 12; i++) CHECK(g[i] == (i < 6 ? 1.0f : 0.0f) + col[i % 3]);
    cnn_tensor *all[] = {w, x, v, s, r, b, sb};
    for (int i = 0; i < 7; i++) cnn_tensor_free(&all[i]);
    cnn_tape_reset();
}
