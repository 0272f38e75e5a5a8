/* test_tape.c — what the tape guarantees to every op's backward, seen through hand-recorded
 * nodes (internal.h): backward functions run with grad mode off (as torch.autograd without
 * create_graph), so the ops they call are not recorded; and a backward that returns a gradient
 * of the wrong shape is reported as an internal error instead of landing in a leaf's grad. */
#include "internal.h"
#include "test.h"

static struct {
    bool ran, grad_mode, scaled_requires_grad;
    size_t tape_before, tape_after;
    cnn_shape dx_shape;
} g_seen;

/* Calls an op on a tensor that requires grad, as a layer's backward may, then passes dy on (or
 * a gradient of g_seen.dx_shape when one is set). */
static cnn_status probe_backward(cnn_node *node, const cnn_tensor *dy, cnn_tensor **dx)
{
    cnn_tensor *w = node->saved[0], *tmp = NULL;
    g_seen.ran = true;
    g_seen.grad_mode = cnn_is_grad_enabled();
    g_seen.tape_before = cnn_tape_size();
    CNN_TRY(cnn_scale(w, 2.0f, &tmp));
    g_seen.scaled_requires_grad = cnn_tensor_requires_grad(tmp);
    g_seen.tape_after = cnn_tape_size();
    cnn_tensor_free(&tmp);
    if (g_seen.dx_shape.ndim) return cnn_tensor_zeros(g_seen.dx_shape, CNN_CPU, &dx[0]);
    dx[0] = cnn_tensor_retain((cnn_tensor *)dy);
    return CNN_OK;
}

/* y = probe(x), saving w (which requires grad); returns backward's status on sum(y). */
static cnn_status run_probe(cnn_tensor *x, cnn_tensor *w)
{
    cnn_tensor *y = NULL, *s = NULL;
    cnn_node *node = NULL;
    cnn_status st = cnn_tensor_clone(x, &y);
    if (st == CNN_OK)
        st = cnn_tape_record("probe", probe_backward, y, (const cnn_tensor *const *)&x, 1, NULL,
                             0, &node);
    if (st == CNN_OK) cnn_node_save(node, w);
    if (st == CNN_OK) st = cnn_sum(y, &s);
    if (st == CNN_OK) st = cnn_backward(s);
    cnn_tensor_free(&y);
    cnn_tensor_free(&s);
    return st;
}

TEST(backward_functions_run_with_grad_mode_off)
{
    cnn_tensor *x = NULL, *w = NULL;
    CHECK_OK(cnn_tensor_ones(CNN_SHAPE(2, 3), CNN_CPU, &x));
    CHECK_OK(cnn_tensor_ones(CNN_SHAPE(4), CNN_CPU, &w));
    CHECK_OK(cnn_tensor_set_requires_grad(x, true));
    CHECK_OK(cnn_tensor_set_requires_grad(w, true));
    memset(&g_seen, 0, sizeof g_seen);
    CHECK_OK(run_probe(x, w));
    REQUIRE(g_seen.ran);
    CHECK(!g_seen.grad_mode);
    CHECK(!g_seen.scaled_requires_grad);
    CHECK(g_seen.tape_after == g_seen.tape_before);
    CHECK(cnn_is_grad_enabled()); /* restored */
    CHECK(cnn_tape_size() == 0);
    REQUIRE(cnn_tensor_grad(x));
    for (int i = 0; i < 6; i++) CHECK(cnn_tensor_cdata(cnn_tensor_grad(x))[i] == 1.0f);
    CHECK(cnn_tensor_grad(w) == NULL);
    cnn_tensor_free(&x);
    cnn_tensor_free(&w);
}

/* A (6) gradient for a (2, 3) input has the right size and the wrong shape: refused. */
TEST(a_backward_returning_a_wrongly_shaped_gradient_is_an_internal_error)
{
    cnn_tensor *x = NULL, *w = NULL;
    CHECK_OK(cnn_tensor_ones(CNN_SHAPE(2, 3), CNN_CPU, &x));
    CHECK_OK(cnn_tensor_ones(CNN_SHAPE(4), CNN_CPU, &w));
    CHECK_OK(cnn_tensor_set_requires_grad(x, true));
    memset(&g_seen, 0, sizeof g_seen);
    g_seen.dx_shape = CNN_SHAPE(6);
    CHECK_ERR(run_probe(x, w), CNN_ERR_INTERNAL);
    CHECK(strstr(cnn_last_error(), "probe") && strstr(cnn_last_error(), "(2, 3)"));
    CHECK(cnn_tensor_grad(x) == NULL);
    CHECK(cnn_tape_size() == 0);
    cnn_tensor_free(&x);
    cnn_tensor_free(&w);
}
