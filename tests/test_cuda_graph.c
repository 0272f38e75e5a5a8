/* test_cuda_graph.c — CUDA graphs (cnn_graph_capture / replay / destroy): a captured LeNet-5
 * training step replayed gives what the same steps run op by op give; the capture itself runs
 * nothing; random ops draw new numbers at each replay, as op by op; what a replay could not
 * repeat faithfully is refused with a clear error and leaves the context usable; the graph's
 * memory is nobody else's until it is destroyed. GPU tests, except the CPU-context refusal. */
#include "gradcheck.h"

#define BATCH 4
#define STEPS 3

typedef struct step_job {
    int c, hw; /* input channels and size */
    cnn_model *m;
    cnn_optim *opt;
    cnn_tensor *x, *labels; /* the graph's inputs: new batches are copied into them */
    cnn_tensor *loss;       /* the last step's loss */
} step_job;

/* Forward, cross-entropy, backward, SGD step: what a training loop runs, and what is captured. */
static cnn_status train_step(void *ud)
{
    step_job *j = ud;
    cnn_tensor *logits = NULL;
    cnn_tensor_free(&j->loss);
    cnn_status st = cnn_model_forward(j->m, j->x, true, &logits);
    if (!st) st = cnn_cross_entropy(logits, j->labels, 0.0f, &j->loss);
    if (!st) st = cnn_backward(j->loss);
    if (!st) st = cnn_optim_step(j->opt);
    cnn_optim_zero_grad(j->opt);
    cnn_tensor_free(&logits);
    cnn_tape_reset();
    return st;
}

/* A zoo model from seed 7 on the GPU (inputs c x hw x hw) with an SGD (momentum) or Adam
 * optimizer over its parameters. */
static int make_model_job(step_job *j, cnn_optim_kind kind, const char *model, int c, int hw)
{
    memset(j, 0, sizeof *j);
    j->c = c;
    j->hw = hw;
    cnn_manual_seed(7);
    cnn_optim_config oc = cnn_optim_defaults(kind);
    oc.lr = 0.05f;
    oc.momentum = kind == CNN_OPTIM_SGD ? 0.9f : 0.0f;
    oc.weight_decay = kind == CNN_OPTIM_ADAMW ? 0.05f : 0.0f;
    return cnn_model_create(model, 10, c, &j->m) == CNN_OK &&
           cnn_model_to(j->m, CNN_CUDA(0)) == CNN_OK && cnn_optim_create(&oc, &j->opt) == CNN_OK &&
           cnn_optim_add_dict(j->opt, cnn_model_parameters(j->m), true) == CNN_OK &&
           cnn_tensor_empty(CNN_SHAPE(BATCH, c, hw, hw), CNN_F32, CNN_CUDA(0), &j->x) == CNN_OK &&
           cnn_tensor_empty(CNN_SHAPE(BATCH), CNN_I64, CNN_CUDA(0), &j->labels) == CNN_OK;
}

static int make_job(step_job *j, cnn_optim_kind kind)
{
    return make_model_job(j, kind, "lenet5", 1, 32);
}

static void free_job(step_job *j)
{
    cnn_tensor_free(&j->x);
    cnn_tensor_free(&j->labels);
    cnn_tensor_free(&j->loss);
    cnn_optim_destroy(&j->opt);
    cnn_model_destroy(&j->m);
}

/* Batch k (inputs and labels, the same for every job) copied into the job's input tensors. */
static int load_batch(step_job *j, int k)
{
    cnn_manual_seed(100 + (uint64_t)k);
    cnn_tensor *x = NULL, *l = NULL;
    int64_t lab[BATCH];
    for (int i = 0; i < BATCH; i++) lab[i] = (i * 3 + k) % 10;
    const cnn_shape xs = CNN_SHAPE(BATCH, j->c, j->hw, j->hw);
    int ok = cnn_tensor_uniform(xs, -1, 1, CNN_CPU, &x) == CNN_OK &&
             cnn_tensor_from_i64(CNN_SHAPE(BATCH), lab, CNN_CPU, &l) == CNN_OK &&
             cnn_tensor_copy_(j->x, x) == CNN_OK && cnn_tensor_copy_(j->labels, l) == CNN_OK;
    cnn_tensor_free(&x);
    cnn_tensor_free(&l);
    return ok;
}

/* Every tensor of a's and b's state (parameters, batch-norm statistics and counters) within
 * tol (the I64 counters exactly). */
static int params_close(const char *what, cnn_model *a, cnn_model *b, float tol)
{
    const cnn_dict *da = cnn_model_state(a), *db = cnn_model_state(b);
    int ok = cnn_dict_size(da) == cnn_dict_size(db);
    for (int i = 0; ok && i < cnn_dict_size(da); i++) {
        char name[160];
        snprintf(name, sizeof name, "%s: %s", what, cnn_dict_name(da, i));
        const cnn_tensor *ta = cnn_dict_at(da, i), *tb = cnn_dict_at(db, i);
        if (cnn_tensor_dtype(ta) == CNN_I64) {
            int64_t va = -1, vb = -2;
            ok = cnn_tensor_numel(ta) == 1 && cnn_tensor_read(ta, &va, 1) == CNN_OK &&
                 cnn_tensor_read(tb, &vb, 1) == CNN_OK && va == vb;
            if (!ok) printf("    %s: %lld, expected %lld\n", name, (long long)vb, (long long)va);
        } else {
            ok = tensors_close(name, tb, ta, tol, tol);
        }
    }
    return ok;
}

static float read_scalar(const cnn_tensor *t)
{
    float v = NAN;
    if (!t || cnn_tensor_read(t, &v, 1) != CNN_OK) return NAN;
    return v;
}

/* Model A runs three steps op by op; model B (same weights) runs the first op by op, then is
 * captured and replayed twice on the next two batches. The capture must leave B as it was, and
 * after the replays both must agree (parameters, loss, step counts). */
static void check_replay_matches(const char *model, int c, int hw)
{
    step_job a, b;
    cnn_graph *g = NULL;
    cnn_tensor *loss_a[STEPS] = {0};
    printf("    %s\n", model);
    /* Deterministic algorithms: a non-deterministic cuDNN backward differs in its last bits
     * from call to call, and a small ResNet's batch norms (over 4 values in layer4) grow that
     * into visible differences within three steps. */
    cnn_set_deterministic(true);
    REQUIRE(make_model_job(&a, CNN_OPTIM_SGD, model, c, hw) &&
            make_model_job(&b, CNN_OPTIM_SGD, model, c, hw));
    for (int k = 0; k < STEPS; k++) {
        REQUIRE(load_batch(&a, k));
        CHECK_OK(train_step(&a));
        loss_a[k] = cnn_tensor_retain(a.loss);
        if (k == 0) { /* B's warm-up step: the same work (a step moves weights by ~1e-3) */
            REQUIRE(load_batch(&b, 0));
            CHECK_OK(train_step(&b));
            CHECK(params_close("after one step", a.m, b.m, 1e-6f));
            REQUIRE(load_batch(&b, 1));
            CHECK_OK(cnn_graph_capture(train_step, &b, &g));
            REQUIRE(g);
            CHECK(params_close("the capture ran nothing", a.m, b.m, 1e-6f));
            CHECK(cnn_optim_step_count(b.opt) == 1);
        }
    }
    /* Batch 1 again: its seed also puts the random stream where A's step 1 drew its dropout
     * masks, which the replay then draws. */
    REQUIRE(load_batch(&b, 1));
    CHECK_OK(cnn_graph_replay(g));
    CHECK(fabsf(read_scalar(b.loss) - read_scalar(loss_a[1])) <= 1e-5f * (1 + read_scalar(b.loss)));
    REQUIRE(load_batch(&b, 2));
    CHECK_OK(cnn_graph_replay(g));
    CHECK(fabsf(read_scalar(b.loss) - read_scalar(loss_a[2])) <= 1e-5f * (1 + read_scalar(b.loss)));
    CHECK(read_scalar(loss_a[2]) != read_scalar(loss_a[1])); /* the batches differ */
    CHECK(params_close("after three steps", a.m, b.m, 1e-5f));
    CHECK(cnn_optim_step_count(b.opt) == STEPS && cnn_optim_step_count(a.opt) == STEPS);
    /* A captured loss stays the graph's: the loop can go on op by op after the graph is gone. */
    cnn_graph_destroy(&g);
    CHECK(g == NULL);
    REQUIRE(load_batch(&b, 0));
    CHECK_OK(train_step(&b));
    CHECK(isfinite(read_scalar(b.loss)));
    for (int k = 0; k < STEPS; k++) cnn_tensor_free(&loss_a[k]);
    free_job(&a);
    free_job(&b);
}

/* LeNet-5 (convs, pools, linears, cuBLAS), AlexNet (dropout: each replay draws new masks, the
 * ones the op-by-op step draws) and a small ResNet (batch norms, whose statistics and counters
 * advance at each replay; residual joins). The ResNet runs in builds with cuDNN (its batch norm
 * then cuDNN's): without, the hand-written batch norm's one block per channel of 512 makes it
 * take 40 s on the CPU emulator. */
GPU_TEST(graph_replay_matches_training_steps_run_op_by_op)
{
    check_replay_matches("lenet5", 1, 32);
    check_replay_matches("alexnet", 3, 63);
    if (cnn_built_with_cudnn()) check_replay_matches("resnet18_small", 3, 8);
}

/* Two graphs of one model alive together, replayed in turn: a training step and an inference
 * (each with a pool of its own). After each training replay the inference replay must give the
 * logits an op-by-op inference gives at the new weights. */
typedef struct infer_job {
    step_job *j;
    cnn_tensor *logits;
} infer_job;

static cnn_status infer_step(void *ud)
{
    infer_job *ij = ud;
    cnn_tensor_free(&ij->logits);
    bool was = cnn_set_grad_enabled(false);
    cnn_status st = cnn_model_forward(ij->j->m, ij->j->x, false, &ij->logits);
    cnn_set_grad_enabled(was);
    return st;
}

GPU_TEST(graph_two_graphs_replayed_in_turn)
{
    step_job j;
    infer_job ij = {&j, NULL};
    cnn_graph *train = NULL, *infer = NULL;
    cnn_tensor *want = NULL;
    REQUIRE(make_job(&j, CNN_OPTIM_SGD) && load_batch(&j, 0));
    CHECK_OK(train_step(&j));
    CHECK_OK(infer_step(&ij));
    CHECK_OK(cnn_graph_capture(train_step, &j, &train));
    CHECK_OK(cnn_graph_capture(infer_step, &ij, &infer));
    REQUIRE(train && infer);
    for (int k = 1; k <= 3; k++) {
        REQUIRE(load_batch(&j, k));
        CHECK_OK(cnn_graph_replay(train));
        CHECK_OK(cnn_graph_replay(infer));
        bool was = cnn_set_grad_enabled(false);
        CHECK_OK(cnn_model_forward(j.m, j.x, false, &want));
        cnn_set_grad_enabled(was);
        CHECK(tensors_close("inference replay after a training replay", ij.logits, want, 1e-6f,
                            1e-5f));
        cnn_tensor_free(&want);
    }
    CHECK(cnn_optim_step_count(j.opt) == 4);
    cnn_graph_destroy(&infer);
    cnn_graph_destroy(&train);
    cnn_tensor_free(&ij.logits);
    free_job(&j);
}

/* ---- random ops ------------------------------------------------------------------------------ */
typedef struct rand_job {
    cnn_tensor *x, *drop, *u;
} rand_job;

/* A dropout in training mode and a uniform fill, both on the GPU. */
static cnn_status rand_fn(void *ud)
{
    rand_job *j = ud;
    cnn_tensor_free(&j->drop);
    cnn_tensor_free(&j->u);
    cnn_status st = cnn_dropout(j->x, 0.5f, true, &j->drop);
    if (!st) st = cnn_tensor_uniform(CNN_SHAPE(37), -1, 1, CNN_CUDA(0), &j->u);
    return st;
}

static int differ(const cnn_tensor *a, const cnn_tensor *b)
{
    float va[200], vb[200];
    int64_t n = cnn_tensor_numel(a);
    return n <= 200 && cnn_tensor_read(a, va, (size_t)n) == CNN_OK &&
           cnn_tensor_read(b, vb, (size_t)n) == CNN_OK && memcmp(va, vb, (size_t)n * 4) != 0;
}

/* Each replay draws new numbers, the ones the same calls run op by op from the same stream
 * position draw, and moves the stream as far as they do; the capture itself draws nothing. The
 * graph follows cnn_manual_seed. */
GPU_TEST(graph_random_ops_draw_afresh_at_each_replay)
{
    rand_job j = {0}, r = {0};
    cnn_graph *g = NULL;
    cnn_tensor *want[2][2] = {{0}};
    cnn_tensor *xc = rand_tensor(CNN_SHAPE(4, 50), 0.5f, 1.0f, 0);
    j.x = r.x = to_gpu(xc);
    cnn_tensor_free(&xc);
    REQUIRE(j.x);
    cnn_manual_seed(5);
    for (int k = 0; k < 2; k++) {
        CHECK_OK(rand_fn(&r));
        want[k][0] = cnn_tensor_retain(r.drop);
        want[k][1] = cnn_tensor_retain(r.u);
    }
    CHECK(differ(want[0][0], want[1][0]) && differ(want[0][1], want[1][1]));
    uint64_t seed = 0, after = 0, now = 1;
    cnn_rng_get_state(&seed, &after);
    cnn_manual_seed(5);
    CHECK_OK(cnn_graph_capture(rand_fn, &j, &g));
    REQUIRE(g);
    cnn_rng_get_state(NULL, &now);
    CHECK(now == 0);
    for (int k = 0; k < 2; k++) {
        CHECK_OK(cnn_graph_replay(g));
        CHECK(tensors_close("replayed dropout", j.drop, want[k][0], 0, 0));
        CHECK(tensors_close("replayed uniform", j.u, want[k][1], 0, 0));
    }
    cnn_rng_get_state(NULL, &now);
    CHECK(seed == 5 && now == after && after > 0);
    /* Another seed: the replay draws what an op-by-op call under it draws. */
    cnn_manual_seed(9);
    CHECK_OK(cnn_graph_replay(g));
    cnn_manual_seed(9);
    CHECK_OK(rand_fn(&r));
    CHECK(tensors_close("replayed dropout, seed 9", j.drop, r.drop, 0, 0));
    CHECK(tensors_close("replayed uniform, seed 9", j.u, r.u, 0, 0));
    cnn_graph_destroy(&g);
    for (int k = 0; k < 2; k++) free_tensors(&want[k][0], &want[k][1]);
    free_tensors(&j.drop, &j.u, &r.drop, &r.u, &j.x);
}

static cnn_status drop_fn(void *ud)
{
    rand_job *j = ud;
    cnn_tensor_free(&j->drop);
    return cnn_dropout(j->x, 0.5f, true, &j->drop);
}

/* A dropout captured with its tape node: the backward, run op by op after the graph is gone,
 * regenerates the last replay's mask (the node keeps the graph's random state alive). */
GPU_TEST(graph_dropout_backward_after_the_graph_is_gone)
{
    rand_job j = {0};
    cnn_graph *g = NULL;
    cnn_tensor *xc = rand_tensor(CNN_SHAPE(4, 50), 0.5f, 1.0f, 0), *loss = NULL;
    j.x = to_gpu(xc);
    cnn_tensor_free(&xc);
    REQUIRE(j.x);
    CHECK_OK(cnn_tensor_set_requires_grad(j.x, true));
    cnn_tape_reset();
    CHECK_OK(cnn_graph_capture(drop_fn, &j, &g));
    REQUIRE(g);
    CHECK_OK(cnn_graph_replay(g));
    CHECK_OK(cnn_graph_replay(g));
    cnn_graph_destroy(&g);
    CHECK_OK(cnn_sum(j.drop, &loss));
    CHECK_OK(cnn_backward(loss));
    float y[200], dx[200];
    REQUIRE(cnn_tensor_grad(j.x));
    CHECK_OK(cnn_tensor_read(j.drop, y, 200));
    CHECK_OK(cnn_tensor_read(cnn_tensor_grad(j.x), dx, 200));
    int bad = 0, kept = 0;
    for (int i = 0; i < 200; i++) {
        kept += y[i] != 0;
        bad += dx[i] != (y[i] != 0 ? 2.0f : 0.0f);
    }
    CHECK(bad == 0 && kept > 50 && kept < 150);
    cnn_tape_reset();
    free_tensors(&loss, &j.drop, &j.x);
}

/* ---- refusals ------------------------------------------------------------------------------ */
typedef struct probe {
    int what;
    cnn_tensor *x, *y, *z;
} probe;

static cnn_status probe_fn(void *ud)
{
    probe *p = ud;
    float v[16];
    cnn_tensor_free(&p->y);
    cnn_tensor_free(&p->z);
    cnn_status st = cnn_relu(p->x, &p->y); /* some captured work first */
    if (st) return st;
    switch (p->what) {
    case 0: return cnn_synchronize();
    case 1: return cnn_tensor_read(p->y, v, 16);
    case 2: return cnn_tensor_to(p->x, CNN_CPU, &p->z);
    case 3: return cnn_tensor_write(p->y, (const float[16]){0}, 16); /* from the host */
    default: return cnn_relu(NULL, &p->z); /* fn's own failure */
    }
}

GPU_TEST(graph_capture_refuses_what_a_replay_cannot_repeat)
{
    probe p = {0};
    cnn_graph *g = NULL;
    cnn_tensor *xc = rand_tensor(CNN_SHAPE(2, 8), -1, 1, 0);
    p.x = to_gpu(xc);
    cnn_tensor_free(&xc);
    REQUIRE(p.x);
    const cnn_status want[] = {CNN_ERR_UNSUPPORTED, CNN_ERR_UNSUPPORTED, CNN_ERR_UNSUPPORTED,
                               CNN_ERR_UNSUPPORTED, CNN_ERR_INVALID_ARG};
    const char *words[] = {"synchronize", "memcpy", "memcpy", "memcpy", "relu"};
    for (int i = 0; i < 5; i++) {
        p.what = i;
        g = (cnn_graph *)&p; /* must come back NULL */
        CHECK_ERR(cnn_graph_capture(probe_fn, &p, &g), want[i]);
        CHECK(g == NULL);
        if (!strstr(cnn_last_error(), words[i]))
            cnn_test_fail(__FILE__, __LINE__, "case %d: '%s' does not name %s", i,
                          cnn_last_error(), words[i]);
        /* The context goes on working: ops run and wait as usual. */
        cnn_tensor_free(&p.y);
        CHECK_OK(cnn_relu(p.x, &p.y));
        CHECK_OK(cnn_synchronize());
    }
    CHECK_ERR(cnn_graph_capture(NULL, &p, &g), CNN_ERR_INVALID_ARG);
    CHECK_ERR(cnn_graph_capture(probe_fn, &p, NULL), CNN_ERR_INVALID_ARG);
    CHECK_ERR(cnn_graph_replay(NULL), CNN_ERR_INVALID_ARG);
    cnn_graph_destroy(NULL);
    free_tensors(&p.x, &p.y, &p.z);
}

/* An optimizer's first step (its state is made then) cannot be captured. After it, SGD and
 * AdamW steps replay as op-by-op steps run, with the learning rate set between replays (SGD
 * reads it on the device; AdamW its per-step bias corrections and decay too). */
static void check_optimizer_replays(cnn_optim_kind kind, const char *what)
{
    step_job a, b;
    cnn_graph *g = NULL;
    printf("    %s\n", what);
    REQUIRE(make_job(&a, kind) && make_job(&b, kind) && load_batch(&b, 0));
    CHECK_ERR(cnn_graph_capture(train_step, &b, &g), CNN_ERR_INVALID_ARG);
    CHECK(strstr(cnn_last_error(), "first") != NULL);
    CHECK(g == NULL && cnn_optim_step_count(b.opt) == 0);
    REQUIRE(load_batch(&a, 0));
    CHECK_OK(train_step(&a));
    CHECK_OK(train_step(&b));
    CHECK_OK(cnn_graph_capture(train_step, &b, &g));
    REQUIRE(g);
    const float lrs[] = {0.01f, 0.2f, 0.01f};
    for (int k = 1; k <= 3; k++) {
        const float lr = kind == CNN_OPTIM_SGD ? lrs[k - 1] : lrs[k - 1] / 10;
        CHECK_OK(cnn_optim_set_lr(a.opt, lr));
        CHECK_OK(cnn_optim_set_lr(b.opt, lr));
        REQUIRE(load_batch(&a, k) && load_batch(&b, k));
        CHECK_OK(train_step(&a));
        CHECK_OK(cnn_graph_replay(g));
    }
    CHECK(params_close(what, a.m, b.m, 1e-5f));
    CHECK(cnn_optim_step_count(b.opt) == 4);
    cnn_graph_destroy(&g);
    free_job(&a);
    free_job(&b);
}

GPU_TEST(graph_capture_of_optimizer_steps)
{
    cnn_set_deterministic(true);
    check_optimizer_replays(CNN_OPTIM_SGD, "SGD with momentum");
    check_optimizer_replays(CNN_OPTIM_ADAMW, "AdamW with weight decay");
}

/* The optimizer's state loaded between replays (a resume): the graph goes on from the loaded
 * state, as op-by-op steps do. With `fresh`, the state was saved before any step (no parameter
 * has one), and both start over from a zero state. Memory of the cache is scribbled on right
 * after the load, so a graph still updating a state tensor the load let go of would show it. */
static void check_state_loaded_between_replays(cnn_optim_kind kind, bool fresh, const char *what)
{
    step_job a, b;
    cnn_graph *g = NULL;
    cnn_dict *sd = NULL;
    cnn_tensor *junk[32] = {NULL};
    printf("    %s\n", what);
    REQUIRE(make_job(&a, kind) && make_job(&b, kind));
    REQUIRE(load_batch(&a, 0) && load_batch(&b, 0));
    CHECK_OK(cnn_dict_create(&sd));
    REQUIRE(sd);
    if (fresh) CHECK_OK(cnn_optim_state_dict(a.opt, sd));
    CHECK_OK(train_step(&a));
    CHECK_OK(train_step(&b));
    if (!fresh) CHECK_OK(cnn_optim_state_dict(a.opt, sd));
    CHECK_OK(cnn_graph_capture(train_step, &b, &g));
    REQUIRE(g);
    for (int k = 1; k <= 4; k++) {
        if (k == 3) {
            CHECK_OK(cnn_optim_load_state_dict(a.opt, sd));
            CHECK_OK(cnn_optim_load_state_dict(b.opt, sd));
            CHECK(cnn_optim_step_count(b.opt) == (fresh ? 0 : 1));
            cnn_dict *ps = cnn_model_parameters(b.m);
            for (int i = 0; i < cnn_dict_size(ps) && i < 32; i++)
                CHECK_OK(cnn_tensor_full(cnn_tensor_shape(cnn_dict_at(ps, i)), 1e3f, CNN_CUDA(0),
                                         &junk[i]));
        }
        REQUIRE(load_batch(&a, k) && load_batch(&b, k));
        CHECK_OK(train_step(&a));
        CHECK_OK(cnn_graph_replay(g));
    }
    CHECK(params_close(what, a.m, b.m, 1e-5f));
    CHECK(cnn_optim_step_count(b.opt) == (fresh ? 2 : 3));
    cnn_graph_destroy(&g);
    for (int i = 0; i < 32; i++) cnn_tensor_free(&junk[i]);
    cnn_dict_destroy(&sd);
    free_job(&a);
    free_job(&b);
}

GPU_TEST(graph_optimizer_state_loaded_between_replays)
{
    cnn_set_deterministic(true);
    check_state_loaded_between_replays(CNN_OPTIM_SGD, false, "SGD, state saved after a step");
    check_state_loaded_between_replays(CNN_OPTIM_SGD, true, "SGD, state saved before any step");
    check_state_loaded_between_replays(CNN_OPTIM_ADAMW, true,
                                       "AdamW, state saved before any step");
}

TEST(graph_capture_needs_a_cuda_context)
{
    probe p = {0};
    cnn_graph *g = NULL;
    REQUIRE((p.x = rand_tensor(CNN_SHAPE(2, 8), -1, 1, 0)));
    p.what = 3;
    CHECK_ERR(cnn_graph_capture(probe_fn, &p, &g), CNN_ERR_DEVICE);
    CHECK(g == NULL && p.y == NULL); /* fn was not called */
    free_tensors(&p.x, &p.y, &p.z);
}

/* ---- memory ---------------------------------------------------------------------------------- */
typedef struct mem_job {
    cnn_tensor *x, *pre, *y;
} mem_job;

/* y = relu(x + pre) (x + x without pre), through a temporary; pre, made before the capture, is
 * released inside it after the captured work has read it. */
static cnn_status mem_fn(void *ud)
{
    mem_job *j = ud;
    cnn_tensor *t = NULL;
    cnn_tensor_free(&j->y);
    cnn_status st = cnn_add(j->x, j->pre ? j->pre : j->x, &t);
    cnn_tensor_free(&j->pre);
    if (!st) st = cnn_relu(t, &j->y);
    cnn_tensor_free(&t);
    return st;
}

/* While the graph lives, tensors made outside it never get memory its replays use: neither
 * what the capture allocated nor the block of a tensor released during the capture that the
 * captured work reads. After destroy the memory is the cache's again. */
GPU_TEST(graph_memory_belongs_to_the_graph_until_destroyed)
{
    const cnn_shape s = CNN_SHAPE(64, 1024);
    mem_job j = {0};
    cnn_graph *g = NULL;
    cnn_tensor *others[8] = {0}, *fresh = NULL, *pre_copy = NULL;
    cnn_tensor *xc = rand_tensor(s, -1, 1, 0);
    j.x = to_gpu(xc);
    cnn_tensor_free(&xc);
    REQUIRE(j.x);
    CHECK_OK(mem_fn(&j)); /* j.y comes from the general cache and is released in the capture */
    CHECK_OK(cnn_tensor_uniform(s, -1, 1, CNN_CUDA(0), &j.pre));
    CHECK_OK(cnn_tensor_clone(j.pre, &pre_copy));
    CHECK_OK(cnn_graph_capture(mem_fn, &j, &g));
    REQUIRE(g && j.y && !j.pre);
    /* Kept for the graph: the block of pre (released in the capture) and the pool's free one of
     * the sum (the relu's is j.y's, live). */
    cnn_cuda_memory_stats kept, before, after;
    const size_t bytes = (size_t)cnn_tensor_numel(j.y) * sizeof(float); /* one tensor of s */
    CHECK_OK(cnn_cuda_get_memory_stats(0, &kept));
    CHECK(kept.graph_bytes >= 2 * bytes && kept.graph_bytes <= kept.cached_bytes);
    /* Were any of these given a block the graph uses, the replay would read or overwrite it. */
    for (int i = 0; i < 8; i++) CHECK_OK(cnn_tensor_full(s, 42.0f, CNN_CUDA(0), &others[i]));
    CHECK_OK(cnn_tensor_uniform(s, -1, 1, CNN_CUDA(0), &fresh)); /* a new input, same tensor */
    CHECK_OK(cnn_tensor_copy_(j.x, fresh));
    CHECK_OK(cnn_graph_replay(g));
    cnn_tensor *ref = NULL, *t = NULL, *c42 = NULL;
    CHECK_OK(cnn_add(j.x, pre_copy, &t));
    CHECK_OK(cnn_relu(t, &ref));
    CHECK(tensors_close("replayed relu(x + pre)", j.y, ref, 0.0f, 0.0f));
    CHECK_OK(cnn_tensor_full(s, 42.0f, CNN_CUDA(0), &c42));
    for (int i = 0; i < 8; i++)
        CHECK(tensors_close("untouched by the replay", others[i], c42, 0, 0));
    cnn_graph_destroy(&g);
    cnn_tensor_free(&j.y); /* after the graph: back to the cache like any block */
    CHECK_OK(cnn_cuda_get_memory_stats(0, &before));
    CHECK(before.graph_bytes == 0);
    cnn_tensor *again = NULL;
    CHECK_OK(cnn_tensor_empty(s, CNN_F32, CNN_CUDA(0), &again));
    CHECK_OK(cnn_cuda_get_memory_stats(0, &after));
    CHECK(after.n_cuda_malloc == before.n_cuda_malloc); /* served from the cache */
    for (int i = 0; i < 8; i++) cnn_tensor_free(&others[i]);
    free_tensors(&again, &c42, &ref, &t, &fresh, &pre_copy);
    cnn_tensor_free(&j.x);
}
