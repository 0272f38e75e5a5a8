/* test_cuda_graph_hazards.c — what must not break a CUDA graph once captured, or while it is
 * captured: memory its replays read that someone else could get (the random state, the
 * context's vector of ones once outgrown, kept until the last graph goes; an optimizer's
 * gradients and scalars), work from another thread that waits for the device during a capture
 * (refused there, the capture unharmed), and calls a capture cannot hold (timers, pinned
 * memory, handing tensors between streams). GPU tests; the emulator enforces CUDA's capture
 * rules. */
#include "gradcheck.h"

#include <pthread.h>

#if CNN_WITH_CUDA
#include "../cuda/cuda_api.h"
#endif

/* ---- the random state lives apart from the step's memory ----------------------------------- */
typedef struct scratch_job {
    cnn_tensor *u;
} scratch_job;

/* Small tensors written and released before the random op: their blocks are the first the
 * capture's pool hands out again (to the op's output, and to anything else it allocates). */
static cnn_status scratch_then_uniform(void *ud)
{
    scratch_job *j = ud;
    cnn_tensor *tmp[4] = {NULL};
    cnn_tensor_free(&j->u);
    cnn_status st = CNN_OK;
    for (int i = 0; i < 4 && !st; i++)
        st = cnn_tensor_full(CNN_SHAPE(64), 3.0f, CNN_CUDA(0), &tmp[i]);
    for (int i = 0; i < 4; i++) cnn_tensor_free(&tmp[i]);
    if (!st) st = cnn_tensor_uniform(CNN_SHAPE(37), -1, 1, CNN_CUDA(0), &j->u);
    return st;
}

GPU_TEST(graph_random_state_is_memory_of_its_own)
{
    scratch_job j = {0}, r = {0};
    cnn_graph *g = NULL;
    cnn_manual_seed(11);
    CHECK_OK(cnn_graph_capture(scratch_then_uniform, &j, &g));
    REQUIRE(g);
    for (int k = 0; k < 2; k++) {
        uint64_t seed = 0, offset = 0;
        cnn_rng_get_state(&seed, &offset);
        CHECK_OK(cnn_graph_replay(g));
        cnn_rng_set_state(seed, offset);
        CHECK_OK(scratch_then_uniform(&r)); /* op by op from the same stream position */
        CHECK(tensors_close("replayed uniform after a scratch tensor", j.u, r.u, 0, 0));
    }
    cnn_graph_destroy(&g);
    free_tensors(&j.u, &r.u);
}

/* ---- the context's vector of ones, outgrown after a capture -------------------------------- */
typedef struct lin_job {
    cnn_tensor *x, *w, *b, *db;
} lin_job;

/* The bias gradient of a linear layer: cuBLAS sums dy's rows against the vector of ones. */
static cnn_status linear_bias_grad(void *ud)
{
    lin_job *j = ud;
    cnn_tensor *y = NULL, *loss = NULL;
    cnn_tensor_zero_grad(j->w);
    cnn_tensor_zero_grad(j->b);
    cnn_tensor_free(&j->db);
    cnn_status st = cnn_linear(j->x, j->w, j->b, &y);
    if (!st) st = cnn_sum(y, &loss);
    if (!st) st = cnn_backward(loss);
    if (!st) j->db = cnn_tensor_retain(cnn_tensor_grad(j->b));
    free_tensors(&y, &loss);
    cnn_tape_reset();
    return st;
}

static int make_lin(lin_job *j, int rows)
{
    memset(j, 0, sizeof *j);
    return cnn_tensor_full(CNN_SHAPE(rows, 8), 0.5f, CNN_CUDA(0), &j->x) == CNN_OK &&
           cnn_tensor_full(CNN_SHAPE(3, 8), 0.25f, CNN_CUDA(0), &j->w) == CNN_OK &&
           cnn_tensor_zeros(CNN_SHAPE(3), CNN_CUDA(0), &j->b) == CNN_OK &&
           cnn_tensor_set_requires_grad(j->w, true) == CNN_OK &&
           cnn_tensor_set_requires_grad(j->b, true) == CNN_OK;
}

/* A larger batch run op by op after the capture outgrows the vector; the graph's replays still
 * read the old one, which must stay ones (and nobody else's) while the graph lives. The
 * captured batch is exactly as long as the vector (1024): it needs no new one. */
GPU_TEST(graph_keeps_the_vector_of_ones_it_read)
{
    lin_job small, big;
    cnn_graph *g = NULL;
    cnn_tensor *junk[8] = {NULL};
    REQUIRE(make_lin(&small, 1024) && make_lin(&big, 5000));
    CHECK_OK(linear_bias_grad(&small)); /* the helpers are made outside the capture */
    CHECK_OK(cnn_graph_capture(linear_bias_grad, &small, &g));
    REQUIRE(g);
    CHECK_OK(linear_bias_grad(&big));
    for (int i = 0; i < 8; i++) CHECK_OK(cnn_tensor_full(CNN_SHAPE(1024 << (i % 3)), 7.0f,
                                                        CNN_CUDA(0), &junk[i]));
    CHECK_OK(cnn_graph_replay(g));
    float db[3] = {0}, want = 1024.0f;
    REQUIRE(small.db);
    CHECK_OK(cnn_tensor_read(small.db, db, 3));
    for (int i = 0; i < 3; i++)
        if (db[i] != want) cnn_test_fail(__FILE__, __LINE__, "db[%d] = %g, not %g", i, db[i], want);
    cnn_graph_destroy(&g);
    for (int i = 0; i < 8; i++) cnn_tensor_free(&junk[i]);
    free_tensors(&small.x, &small.w, &small.b, &small.db, &big.x, &big.w, &big.b, &big.db);
}

static cnn_status fill_x(void *ud) { return cnn_tensor_fill_((cnn_tensor *)ud, 3.0f); }

/* Runs j's step and drops all it left (the gradients): the allocated bytes that change are the
 * context's vector of ones. */
static size_t allocated_after_step(lin_job *j)
{
    CHECK(linear_bias_grad(j) == CNN_OK);
    cnn_tensor_zero_grad(j->w);
    cnn_tensor_zero_grad(j->b);
    cnn_tensor_free(&j->db);
    return gpu_memory_stats().allocated_bytes;
}

/* An outgrown vector of ones waits while a graph lives, and goes with the last one; once no
 * graph lives, the next outgrown one goes at once (never left for the context's end). Ones of
 * 1024, 8192 and 32768 floats: 4, 32 and 128 KiB. */
GPU_TEST(graph_destroyed_releases_the_outgrown_vector_of_ones)
{
    const size_t kib = 1024;
    lin_job small, big, huge;
    cnn_tensor *x = NULL;
    cnn_graph *g = NULL;
    REQUIRE(make_lin(&small, 4) && make_lin(&big, 5000) && make_lin(&huge, 20000));
    CHECK_OK(cnn_tensor_zeros(CNN_SHAPE(8), CNN_CUDA(0), &x));
    const size_t a0 = allocated_after_step(&small);
    CHECK_OK(cnn_graph_capture(fill_x, x, &g)); /* reads no ones, but may live long */
    REQUIRE(g);
    const size_t a1 = allocated_after_step(&big);
    CHECK(a1 == a0 + 32 * kib); /* the 4 KiB one waits for the graph */
    cnn_graph_destroy(&g);
    const size_t a2 = gpu_memory_stats().allocated_bytes;
    CHECK(a2 == a1 - 4 * kib);
    CHECK_OK(cnn_graph_capture(fill_x, x, &g));
    cnn_graph_destroy(&g);
    const size_t a3 = allocated_after_step(&huge);
    CHECK(a3 == a2 + 128 * kib - 32 * kib);
    if (cnn_test_failed())
        cnn_test_fail(__FILE__, __LINE__, "allocated: %zu, %zu, %zu, %zu bytes", a0, a1, a2, a3);
    free_tensors(&x, &small.x, &small.w, &small.b, &big.x, &big.w, &big.b, &huge.x, &huge.w,
                 &huge.b);
}

typedef struct helper_job {
    int what; /* 0: a GEMM, 1: a bias gradient, 2: a cross entropy */
    lin_job l;
    cnn_tensor *labels; /* I64 (4), on the GPU */
} helper_job;

static cnn_status use_a_helper(void *ud)
{
    helper_job *h = ud;
    if (h->what == 1) return linear_bias_grad(&h->l);
    cnn_tensor *y = NULL, *loss = NULL;
    cnn_status st = cnn_linear(h->l.x, h->l.w, NULL, &y);
    if (!st && h->what == 2) st = cnn_cross_entropy(y, h->labels, 0.0f, &loss);
    free_tensors(&y, &loss);
    cnn_tape_reset();
    return st;
}

/* The context's helpers (cuBLAS handle, vector of ones, bad-label slot) are made at their
 * first use, which a capture cannot hold (it may neither allocate nor fill them for good):
 * there it is refused, naming the helper, and once made outside the same work is captured.
 * The test's context is fresh: none of them exists yet. */
GPU_TEST(graph_capture_refuses_helpers_first_needed_inside)
{
    const char *what[] = {"cuBLAS handle", "vector of ones", "bad-label slot"};
    const int64_t lab[4] = {0, 1, 2, 0};
    helper_job h = {0};
    cnn_graph *g = NULL;
    REQUIRE(make_lin(&h.l, 4));
    CHECK_OK(cnn_tensor_from_i64(CNN_SHAPE(4), lab, CNN_CUDA(0), &h.labels));
    for (int i = 0; i < 3; i++) {
        h.what = i;
        CHECK_ERR(cnn_graph_capture(use_a_helper, &h, &g), CNN_ERR_INVALID_ARG);
        if (!strstr(cnn_last_error(), what[i]))
            cnn_test_fail(__FILE__, __LINE__, "'%s' does not name the %s", cnn_last_error(),
                          what[i]);
        CHECK(g == NULL);
        CHECK_OK(use_a_helper(&h));
        CHECK_OK(cnn_graph_capture(use_a_helper, &h, &g));
        CHECK(g != NULL);
        cnn_graph_destroy(&g);
    }
    free_tensors(&h.l.x, &h.l.w, &h.l.b, &h.l.db, &h.labels);
}

/* ---- the optimizer's tensors --------------------------------------------------------------- */
typedef struct opt_job {
    lin_job l;
    cnn_optim *opt;
} opt_job;

/* Forward, backward, SGD step; no zero_grad: the gradients the step accumulates into exist
 * before the capture (the graph must keep them). */
static cnn_status accumulate_and_step(void *ud)
{
    opt_job *j = ud;
    cnn_tensor *y = NULL, *loss = NULL;
    cnn_status st = cnn_linear(j->l.x, j->l.w, j->l.b, &y);
    if (!st) st = cnn_sum(y, &loss);
    if (!st) st = cnn_backward(loss);
    if (!st) st = cnn_optim_step(j->opt);
    free_tensors(&y, &loss);
    cnn_tape_reset();
    return st;
}

static int make_opt_job(opt_job *j, cnn_optim_kind kind)
{
    cnn_optim_config oc = cnn_optim_defaults(kind);
    oc.lr = 0.01f;
    if (kind == CNN_OPTIM_SGD) oc.momentum = 0.9f;
    else oc.weight_decay = 0.05f;
    j->opt = NULL;
    return make_lin(&j->l, 4) && cnn_optim_create(&oc, &j->opt) == CNN_OK &&
           cnn_optim_add_param(j->opt, "w", j->l.w, true) == CNN_OK &&
           cnn_optim_add_param(j->opt, "b", j->l.b, false) == CNN_OK;
}

/* Gradients zeroed (freed) between replays, and their memory asked for at once: the replays go
 * on accumulating into the gradients they captured, never into someone else's tensor. */
GPU_TEST(graph_keeps_the_gradients_its_step_reads)
{
    opt_job j;
    cnn_graph *g = NULL;
    cnn_tensor *junk[16] = {NULL};
    REQUIRE(make_opt_job(&j, CNN_OPTIM_SGD));
    CHECK_OK(accumulate_and_step(&j));
    CHECK_OK(cnn_graph_capture(accumulate_and_step, &j, &g));
    REQUIRE(g);
    cnn_optim_zero_grad(j.opt);
    for (int i = 0; i < 16; i++)
        CHECK_OK(cnn_tensor_full(CNN_SHAPE(i % 2 ? 3 : 24), 7.0f, CNN_CUDA(0), &junk[i]));
    CHECK_OK(cnn_graph_replay(g));
    CHECK_OK(cnn_graph_replay(g));
    for (int i = 0; i < 16 && junk[i]; i++) {
        float v[24];
        const int n = i % 2 ? 3 : 24;
        CHECK_OK(cnn_tensor_read(junk[i], v, (size_t)n));
        for (int k = 0; k < n; k++)
            if (v[k] != 7.0f) {
                cnn_test_fail(__FILE__, __LINE__, "tensor %d [%d] = %g: written by a replay", i,
                              k, v[k]);
                break;
            }
    }
    cnn_graph_destroy(&g);
    for (int i = 0; i < 16; i++) cnn_tensor_free(&junk[i]);
    cnn_optim_destroy(&j.opt);
    free_tensors(&j.l.x, &j.l.w, &j.l.b, &j.l.db);
}

/* Once the graphs, the optimizer, the tensors and the context are gone, nothing they held
 * stays allocated: not the tensors a graph kept (here an SGD step's gradients, momentum and
 * learning rate), nor its random state (a uniform's). */
GPU_TEST(graph_leaves_nothing_allocated_once_all_is_gone)
{
    cnn_context *home = cnn_context_current(), *ctx = NULL;
    const size_t a0 = gpu_memory_stats().allocated_bytes;
    REQUIRE(cnn_context_create(CNN_CUDA(0), &ctx) == CNN_OK);
    cnn_context_set_current(ctx);
    opt_job j;
    scratch_job r = {0};
    cnn_graph *g[2] = {NULL, NULL};
    if (make_opt_job(&j, CNN_OPTIM_SGD) && accumulate_and_step(&j) == CNN_OK) {
        CHECK_OK(cnn_graph_capture(accumulate_and_step, &j, &g[0]));
        CHECK_OK(cnn_graph_capture(scratch_then_uniform, &r, &g[1]));
        cnn_context_set_current(home); /* a replay runs on its graph's context, from anywhere */
        for (int i = 0; i < 2; i++) CHECK(g[i] && cnn_graph_replay(g[i]) == CNN_OK);
        CHECK(cnn_context_current() == home);
        cnn_context_set_current(ctx);
        CHECK_OK(cnn_synchronize());
    } else {
        cnn_test_fail(__FILE__, __LINE__, "setup: %s", cnn_last_error());
    }
    for (int i = 0; i < 2; i++) cnn_graph_destroy(&g[i]);
    cnn_optim_destroy(&j.opt);
    free_tensors(&j.l.x, &j.l.w, &j.l.b, &j.l.db, &r.u);
    cnn_context_set_current(home);
    cnn_context_destroy(&ctx);
    const size_t a1 = gpu_memory_stats().allocated_bytes;
    if (a1 != a0) cnn_test_fail(__FILE__, __LINE__, "%zu bytes allocated, not %zu", a1, a0);
}

/* A captured step with no gradient to apply: replays update nothing and count as steps. */
static cnn_status step_only(void *ud) { return cnn_optim_step(((opt_job *)ud)->opt); }

GPU_TEST(graph_of_a_step_without_gradients)
{
    opt_job j;
    cnn_graph *g = NULL;
    REQUIRE(make_opt_job(&j, CNN_OPTIM_SGD));
    CHECK_OK(cnn_graph_capture(step_only, &j, &g));
    REQUIRE(g);
    CHECK_OK(cnn_optim_set_lr(j.opt, 0.5f));
    CHECK_OK(cnn_graph_replay(g));
    CHECK(cnn_optim_step_count(j.opt) == 1);
    cnn_graph_destroy(&g);
    cnn_optim_destroy(&j.opt);
    free_tensors(&j.l.x, &j.l.w, &j.l.b, &j.l.db);
}

/* Parameters added between replays (a layer unfrozen): the next op-by-op AdamW step remakes
 * the optimizer's per-step scalars for the larger set, while the graph keeps the ones it
 * captured and each replay still brings those up to date; replays and op-by-op steps agree. */
GPU_TEST(graph_adam_replays_after_parameters_are_added)
{
    opt_job a, b;
    opt_job *jobs[2] = {&a, &b};
    cnn_tensor *extra[2] = {NULL, NULL}, *ge = NULL;
    cnn_graph *g = NULL;
    REQUIRE(make_opt_job(&a, CNN_OPTIM_ADAMW) && make_opt_job(&b, CNN_OPTIM_ADAMW));
    CHECK_OK(accumulate_and_step(&a));
    CHECK_OK(accumulate_and_step(&b));
    CHECK_OK(cnn_graph_capture(accumulate_and_step, &b, &g));
    CHECK_OK(cnn_tensor_full(CNN_SHAPE(5), -0.5f, CNN_CUDA(0), &ge));
    REQUIRE(g && ge);
    for (int k = 1; k <= 4; k++) {
        for (int i = 0; i < 2 && k == 2; i++) {
            CHECK_OK(cnn_tensor_full(CNN_SHAPE(5), 1.0f, CNN_CUDA(0), &extra[i]));
            REQUIRE(extra[i]);
            CHECK_OK(cnn_tensor_set_requires_grad(extra[i], true));
            CHECK_OK(cnn_optim_add_param(jobs[i]->opt, "extra", extra[i], true));
        }
        if (k != 3) {
            CHECK_OK(accumulate_and_step(&a));
            CHECK_OK(cnn_graph_replay(g));
            continue;
        }
        for (int i = 0; i < 2; i++) { /* op by op, the new parameter with a gradient */
            CHECK_OK(cnn_backward_with_grad(extra[i], ge));
            CHECK_OK(accumulate_and_step(jobs[i]));
            cnn_tensor_zero_grad(extra[i]);
        }
    }
    CHECK(tensors_close("w", b.l.w, a.l.w, 1e-6f, 1e-6f));
    CHECK(tensors_close("b", b.l.b, a.l.b, 1e-6f, 1e-6f));
    CHECK(tensors_close("extra", extra[1], extra[0], 0, 0));
    CHECK(cnn_optim_step_count(b.opt) == 5);
    cnn_graph_destroy(&g);
    for (int i = 0; i < 2; i++) {
        cnn_optim_destroy(&jobs[i]->opt);
        free_tensors(&jobs[i]->l.x, &jobs[i]->l.w, &jobs[i]->l.b, &jobs[i]->l.db);
        cnn_tensor_free(&extra[i]);
    }
    cnn_tensor_free(&ge);
}

/* ---- another thread during a capture ----------------------------------------------------------
 * Thread B caches device and pinned memory before thread A captures, and while A's function is
 * inside its capture, uses and releases 4 MiB more, empties the caches and reads a CUDA tensor
 * under a CPU context. The capture's start gave the cache's whole free segments back to CUDA;
 * the block B releases during the capture is held for the graph (its replays may use it), so
 * emptying has nothing it may free and says so with CNN_OK, and keeps the pinned block
 * (cudaFreeHost would wait for the device). The read would wait for the whole device and is
 * refused with CNN_ERR_UNSUPPORTED. A's capture goes through; the held block goes back with
 * the graph. (Emptying refuses only for a whole free segment during a capture, which can
 * exist only between the capture's start emptying the cache and its pool opening.) */
typedef struct crossing {
    pthread_mutex_t m;
    pthread_cond_t cv;
    int stage; /* 1: B has cached memory; 2: A is capturing; 3: B is done */
    cnn_tensor *x, *y, *probe;
    cnn_status empty_st, read_st, prep_st, use_st;
    size_t cached_by_b, reserved_before, reserved_after, graph_after;
    char empty_msg[256];
} crossing;

static void set_stage(crossing *c, int s)
{
    pthread_mutex_lock(&c->m);
    c->stage = s;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->m);
}

static void wait_stage(crossing *c, int s)
{
    pthread_mutex_lock(&c->m);
    while (c->stage < s) pthread_cond_wait(&c->cv, &c->m);
    pthread_mutex_unlock(&c->m);
}

static cnn_status capture_while_b_works(void *ud)
{
    crossing *c = ud;
    cnn_tensor_free(&c->y);
    cnn_status st = cnn_relu(c->x, &c->y);
    set_stage(c, 2);
    wait_stage(c, 3);
    return st;
}

static cnn_cuda_memory_stats stats_of_cuda0(void)
{
    cnn_cuda_memory_stats ms = {0};
    (void)cnn_cuda_get_memory_stats(0, &ms);
    return ms;
}

static void *thread_b(void *ud)
{
    crossing *c = ud;
    cnn_context *ctx = NULL;
    cnn_tensor *t = NULL, *pinned = NULL;
    c->prep_st = cnn_context_create(CNN_CUDA(0), &ctx);
    if (c->prep_st == CNN_OK) {
        cnn_context_set_current(ctx);
        c->prep_st = cnn_tensor_zeros(CNN_SHAPE(1 << 20), CNN_CUDA(0), &t);
        if (c->prep_st == CNN_OK) c->prep_st = cnn_tensor_empty_pinned(CNN_SHAPE(1000), CNN_F32,
                                                                        &pinned);
        if (c->prep_st == CNN_OK) c->prep_st = cnn_synchronize();
        free_tensors(&t, &pinned);
        c->cached_by_b = stats_of_cuda0().cached_bytes;
    }
    set_stage(c, 1);
    wait_stage(c, 2);
    if (ctx) {
        c->use_st = cnn_tensor_zeros(CNN_SHAPE(1 << 20), CNN_CUDA(0), &t);
        if (c->use_st == CNN_OK) c->use_st = cnn_synchronize();
        cnn_tensor_free(&t);
    }
    c->reserved_before = stats_of_cuda0().reserved_bytes;
    c->empty_st = cnn_cuda_empty_cache();
    snprintf(c->empty_msg, sizeof c->empty_msg, "%s", cnn_last_error());
    cnn_cuda_memory_stats after = stats_of_cuda0();
    c->reserved_after = after.reserved_bytes;
    c->graph_after = after.graph_bytes;
    cnn_context_set_current(NULL); /* a CPU context: the read waits for the whole device */
    float v[4];
    c->read_st = cnn_tensor_read(c->probe, v, 4);
    set_stage(c, 3);
    cnn_context_destroy(&ctx);
    return NULL;
}

GPU_TEST(graph_capture_survives_device_waits_from_another_thread)
{
    const size_t four_mib = (size_t)4 << 20;
    crossing c = {.m = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    cnn_graph *g = NULL;
    CHECK_OK(cnn_tensor_full(CNN_SHAPE(16), -2.0f, CNN_CUDA(0), &c.x));
    CHECK_OK(cnn_tensor_full(CNN_SHAPE(4), 1.0f, CNN_CUDA(0), &c.probe));
    CHECK_OK(cnn_synchronize());
    pthread_t b;
    REQUIRE(pthread_create(&b, NULL, thread_b, &c) == 0);
    wait_stage(&c, 1);
    cnn_status st = cnn_graph_capture(capture_while_b_works, &c, &g);
    if (st != CNN_OK) set_stage(&c, 3); /* never left waiting */
    pthread_join(b, NULL);
    CHECK_OK(st);
    CHECK_OK(c.prep_st);
    CHECK_OK(c.use_st);
    CHECK(c.cached_by_b >= four_mib);
    if (c.empty_st != CNN_OK) cnn_test_fail(__FILE__, __LINE__, "B: %s", c.empty_msg);
    CHECK(c.reserved_after == c.reserved_before && c.graph_after >= four_mib);
    CHECK(c.read_st == CNN_ERR_UNSUPPORTED); /* its message is thread B's */
    if (g) {
        CHECK_OK(cnn_tensor_fill_(c.x, 5.0f));
        CHECK_OK(cnn_graph_replay(g));
        float y[16];
        CHECK_OK(cnn_tensor_read(c.y, y, 16));
        CHECK(y[0] == 5.0f && y[15] == 5.0f);
    }
    /* With the capture over, both work again; the held block is the graph's until it goes. */
    CHECK_OK(cnn_cuda_empty_cache());
    CHECK(stats_of_cuda0().graph_bytes >= four_mib);
    cnn_graph_destroy(&g);
    CHECK_OK(cnn_cuda_empty_cache());
    CHECK(stats_of_cuda0().graph_bytes == 0);
    free_tensors(&c.x, &c.y, &c.probe);
}

/* ---- what a capture cannot hold, and what it can ------------------------------------------- */
typedef struct side_job {
    int what;
    cnn_context *other;
    cnn_tensor *x, *y, *side;
    cnn_timer *timed; /* started and stopped before the capture */
} side_job;

static cnn_status side_fn(void *ud)
{
    side_job *j = ud;
    cnn_tensor_free(&j->y);
    cnn_status st = cnn_relu(j->x, &j->y);
    if (st) return st;
    if (j->what == 0) {
        cnn_timer *t = NULL;
        st = cnn_timer_create(&t);
        if (!st) st = cnn_timer_start(t);
        cnn_timer_destroy(&t);
        return st;
    }
    if (j->what == 5) {
        double ms = 0;
        return cnn_timer_elapsed_ms(j->timed, &ms); /* it would wait for the stop event */
    }
    if (j->what == 6) { /* a capture begun inside this one, for another context */
        cnn_context *home = cnn_context_current();
        cnn_graph *inner = NULL;
        cnn_context_set_current(j->other);
        st = cnn_graph_capture(fill_x, j->x, &inner);
        cnn_context_set_current(home);
        cnn_graph_destroy(&inner);
        return st;
    }
    if (j->what == 1) {
        cnn_tensor *p = NULL;
        st = cnn_tensor_empty_pinned(CNN_SHAPE(1000), CNN_F32, &p);
        cnn_tensor_free(&p);
        return st;
    }
    /* Handing tensors between the captured stream and another context's, either way, or
     * marking a block as used by a stream, from the capturing thread. */
    cnn_context *mine = cnn_context_current();
#if CNN_WITH_CUDA
    if (j->what == 2) return cnn_cuda_stream_handoff(mine, j->other, &j->x, 1);
    if (j->what == 3) return cnn_cuda_stream_handoff(j->other, mine, &j->x, 1);
    if (j->what == 4) return cnn_cuda_record_stream(j->other, j->x->storage);
#endif
    /* Work for another CUDA context from the capturing thread: it runs at once, uncaptured,
     * and its allocations must not break the capture. */
    cnn_context_set_current(j->other);
    cnn_tensor_free(&j->side);
    st = cnn_tensor_full(CNN_SHAPE(3 << 20), -1.5f, CNN_CUDA(0), &j->side);
    cnn_tensor *abs_side = NULL;
    if (!st) st = cnn_relu(j->side, &abs_side);
    cnn_tensor_free(&abs_side);
    cnn_context_set_current(mine);
    return st;
}

GPU_TEST(graph_capture_refuses_timers_pinned_memory_and_handoffs)
{
    side_job j = {0};
    cnn_graph *g = NULL;
    CHECK_OK(cnn_tensor_full(CNN_SHAPE(8), 2.0f, CNN_CUDA(0), &j.x));
    CHECK_OK(cnn_context_create(CNN_CUDA(0), &j.other));
    REQUIRE(j.x && j.other);
    const char *words[] = {"timer_start", "pinned", "stream_handoff", "stream_handoff",
                           "record_stream", "timer_elapsed", "nest"};
    CHECK_OK(cnn_timer_create(&j.timed));
    CHECK_OK(cnn_timer_start(j.timed));
    CHECK_OK(cnn_timer_stop(j.timed));
    for (int i = 0; i < 7; i++) {
        j.what = i;
        CHECK_ERR(cnn_graph_capture(side_fn, &j, &g), CNN_ERR_UNSUPPORTED);
        CHECK(g == NULL);
        if (!strstr(cnn_last_error(), words[i]))
            cnn_test_fail(__FILE__, __LINE__, "'%s' does not name %s", cnn_last_error(), words[i]);
    }
    j.what = 7;
    CHECK_OK(cnn_graph_capture(side_fn, &j, &g));
    CHECK(g != NULL);
    CHECK_OK(cnn_graph_replay(g));
    CHECK_OK(cnn_synchronize());
    cnn_graph_destroy(&g);
    cnn_timer_destroy(&j.timed);
    cnn_context_destroy(&j.other);
    free_tensors(&j.x, &j.y, &j.side);
}
