/* test_tape.c — what the tape guarantees to every op's backward, seen through hand-recorded
 * nodes (internal.h): backward functions run with grad mode off (as torch.autograd without
 * create_graph), so the ops they call are not recorded; a backward that returns a gradient of
 * the wrong shape is reported as an internal error instead of landing in a leaf's grad; and
 * forwards whose outputs were freed without a backward are dropped as the tape grows, while
 * everything a held tensor's backward needs stays (also once swept nodes that saved it are
 * gone). */
#include "internal.h"
#include "test.h"

#include <pthread.h>
#include <sched.h>

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

/* loss = sum(relu(x w^T)): three nodes, the first two saving x, w and relu's output. */
static cnn_status small_forward(const cnn_tensor *x, const cnn_tensor *w, cnn_tensor **loss)
{
    cnn_tensor *h = NULL, *r = NULL;
    cnn_status st = cnn_linear(x, w, NULL, &h);
    if (st == CNN_OK) st = cnn_relu(h, &r);
    if (st == CNN_OK) st = cnn_sum(r, loss);
    cnn_tensor_free(&h);
    cnn_tensor_free(&r);
    return st;
}

/* As forgetting torch.no_grad() in an evaluation loop costs PyTorch only time, it must not cost
 * the tape memory: 3,000 forwards in grad mode, each output freed without a backward, leave a
 * tape of a few forwards (each frees 2 outputs, so one sweep per 8 of them: at most 27 nodes;
 * before, dead nodes stayed until the tape's 256 were full) and the memory of as many
 * forwards' saved tensors. A loss held from the first iteration still back-propagates exactly,
 * through every sweep. */
TEST(forwards_freed_without_a_backward_are_dropped_from_the_tape)
{
    cnn_tensor *x = NULL, *w = NULL, *held = NULL, *loss = NULL, *want = NULL;
    CHECK_OK(cnn_tensor_uniform(CNN_SHAPE(16, 64), -1.0f, 1.0f, CNN_CPU, &x));
    CHECK_OK(cnn_tensor_uniform(CNN_SHAPE(64, 64), -1.0f, 1.0f, CNN_CPU, &w));
    CHECK_OK(cnn_tensor_set_requires_grad(w, true));
    CHECK_OK(small_forward(x, w, &loss));
    CHECK_OK(cnn_backward(loss));
    cnn_tensor_free(&loss);
    CHECK_OK(cnn_tensor_clone(cnn_tensor_grad(w), &want));
    cnn_tensor_zero_grad(w);

    CHECK_OK(small_forward(x, w, &held));
    size_t base = 0, after = 0, peak = 0, most_nodes = 0;
    for (int i = 0; i < 3000 && !cnn_test_failed(); i++) {
        CHECK_OK(small_forward(x, w, &loss));
        cnn_tensor_free(&loss);
        if (cnn_tape_size() > most_nodes) most_nodes = cnn_tape_size();
        if (i == 99) cnn_cpu_memory_stats(&base, &peak, false);
    }
    cnn_cpu_memory_stats(&after, &peak, false);
    CHECK(most_nodes <= 32);
    /* The tape holds at most 9 forwards' outputs (relu's and sum's, saved or not yet swept;
     * twice their size for the allocator's rounding); without the sweep the 2,900 forwards
     * since `base` would keep 300 times that. */
    size_t per_forward = 2 * (16 * 64 + 1) * sizeof(float);
    CHECK(after <= base + 9 * per_forward);
    CHECK(cnn_tensor_requires_grad(held));
    CHECK_OK(cnn_backward(held));
    REQUIRE(cnn_tensor_grad(w));
    CHECK(memcmp(cnn_tensor_cdata(cnn_tensor_grad(w)), cnn_tensor_cdata(want),
                 64 * 64 * sizeof(float)) == 0);
    CHECK(cnn_tape_size() == 0);
    cnn_tensor_free(&held);
    cnn_tensor_free(&want);
    cnn_tensor_free(&x);
    cnn_tensor_free(&w);
}

/* The other side of the sweep: a chain of 1,000 ops whose intermediate outputs the caller frees
 * as it goes is still reachable from the last one held, so every node stays and the gradient is
 * the whole chain's (1.001^1000 per element, to rounding). */
TEST(a_chain_reachable_from_a_held_output_survives_the_sweeps)
{
    cnn_tensor *x = NULL, *y = NULL, *s = NULL;
    CHECK_OK(cnn_tensor_ones(CNN_SHAPE(4), CNN_CPU, &x));
    CHECK_OK(cnn_tensor_set_requires_grad(x, true));
    y = cnn_tensor_retain(x);
    for (int i = 0; i < 1000 && !cnn_test_failed(); i++) {
        cnn_tensor *next = NULL;
        CHECK_OK(cnn_scale(y, 1.001f, &next));
        cnn_tensor_free(&y);
        y = next;
    }
    CHECK(cnn_tape_size() == 1000);
    CHECK_OK(cnn_sum(y, &s));
    CHECK_OK(cnn_backward(s));
    REQUIRE(cnn_tensor_grad(x));
    for (int i = 0; i < 4; i++)
        CHECK(fabs(cnn_tensor_cdata(cnn_tensor_grad(x))[i] - pow(1.001, 1000)) < 1e-3);
    cnn_tensor_free(&s);
    cnn_tensor_free(&y);
    cnn_tensor_free(&x);
}

/* A queue of tensors handed from one thread to another. */
typedef struct handoff {
    pthread_mutex_t lock;
    pthread_cond_t ready;
    cnn_tensor *v[64];
    int n;
    bool done;
} handoff;

static void *release_all(void *arg)
{
    handoff *h = arg;
    pthread_mutex_lock(&h->lock);
    for (;;) {
        while (!h->n && !h->done) pthread_cond_wait(&h->ready, &h->lock);
        if (!h->n) break;
        cnn_tensor *t = h->v[--h->n];
        pthread_mutex_unlock(&h->lock);
        cnn_tensor_free(&t); /* while the recording thread records, sweeps and resets */
        pthread_mutex_lock(&h->lock);
    }
    pthread_mutex_unlock(&h->lock);
    return NULL;
}

/* Outputs recorded on this thread's tape and released on two_ others (as the header allows a
 * tensor to be): their release clears the link to their node while this thread's sweeps read
 * it and its resets free the nodes. Under ThreadSanitizer (make check-tsan) this raced: the
 * sweep read a tensor another thread had just freed. A loss held throughout still
 * back-propagates exactly. */
TEST(outputs_released_on_two_other_threads_while_the_tape_sweeps)
{
    cnn_tensor *x = NULL, *held = NULL;
    CHECK_OK(cnn_tensor_ones(CNN_SHAPE(8), CNN_CPU, &x));
    CHECK_OK(cnn_tensor_set_requires_grad(x, true));
    CHECK_OK(cnn_sum(x, &held));
    handoff h = {.lock = PTHREAD_MUTEX_INITIALIZER, .ready = PTHREAD_COND_INITIALIZER};
    pthread_t th[2];
    REQUIRE(pthread_create(&th[0], NULL, release_all, &h) == 0);
    REQUIRE(pthread_create(&th[1], NULL, release_all, &h) == 0);
    for (int i = 0; i < 4000 && !cnn_test_failed(); i++) {
        cnn_tensor *y = NULL;
        CHECK_OK(cnn_sum(x, &y)); /* sum saves nothing: the other thread's free is the last */
        pthread_mutex_lock(&h.lock);
        while (h.n == 64) {
            pthread_mutex_unlock(&h.lock);
            sched_yield();
            pthread_mutex_lock(&h.lock);
        }
        h.v[h.n++] = y;
        pthread_cond_signal(&h.ready);
        pthread_mutex_unlock(&h.lock);
    }
    pthread_mutex_lock(&h.lock);
    h.done = true;
    pthread_cond_broadcast(&h.ready);
    pthread_mutex_unlock(&h.lock);
    pthread_join(th[0], NULL);
    pthread_join(th[1], NULL);
    CHECK(cnn_tape_size() <= 256);
    CHECK_OK(cnn_backward(held));
    REQUIRE(cnn_tensor_grad(x));
    CHECK(cnn_tensor_cdata(cnn_tensor_grad(x))[7] == 1.0f);
    cnn_tensor_free(&held);
    cnn_tensor_free(&x);
}

/* The other count the sweep reads: a node that saved a tensor gives its hold back when it is
 * swept. y = 2x, held by the caller, is saved by 600 linear nodes whose outputs are freed (so
 * the sweeps drop them); if a swept node left its hold on y counted, y would look held by the
 * tape alone and its node would go too, leaving sum(y) a constant and x without a gradient. */
TEST(an_output_held_by_the_caller_outlives_the_swept_nodes_that_saved_it)
{
    cnn_tensor *x = NULL, *w = NULL, *y = NULL, *s = NULL;
    CHECK_OK(cnn_tensor_ones(CNN_SHAPE(2, 4), CNN_CPU, &x));
    CHECK_OK(cnn_tensor_ones(CNN_SHAPE(3, 4), CNN_CPU, &w));
    CHECK_OK(cnn_tensor_set_requires_grad(x, true));
    CHECK_OK(cnn_tensor_set_requires_grad(w, true)); /* so that linear saves its input y */
    CHECK_OK(cnn_scale(x, 2.0f, &y));
    for (int i = 0; i < 600 && !cnn_test_failed(); i++) {
        cnn_tensor *z = NULL;
        CHECK_OK(cnn_linear(y, w, NULL, &z));
        cnn_tensor_free(&z);
    }
    CHECK(cnn_tape_size() <= 256); /* swept at least twice */
    CHECK(cnn_tensor_requires_grad(y));
    CHECK_OK(cnn_sum(y, &s));
    CHECK_OK(cnn_backward(s));
    REQUIRE(cnn_tensor_grad(x));
    for (int i = 0; i < 8; i++) CHECK(cnn_tensor_cdata(cnn_tensor_grad(x))[i] == 2.0f);
    CHECK(cnn_tensor_grad(w) == NULL);
    cnn_tensor_free(&s);
    cnn_tensor_free(&y);
    cnn_tensor_free(&w);
    cnn_tensor_free(&x);
}
