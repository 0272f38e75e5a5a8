/* test_memory.c — training memory: what the tape keeps for backward (exactly what each backward
 * reads, each storage once), that it lets go of it as the walk proceeds, and the CPU allocator's
 * counters (cnn_cpu_memory_stats). White-box through internal.h; bench/torch_memory.py measures
 * PyTorch's side of the same figures. */
#include "internal.h"
#include "test.h"

static size_t cpu_allocated(void)
{
    size_t a = 0;
    cnn_cpu_memory_stats(&a, NULL, false);
    return a;
}

/* What alloc_cpu.c counts for a CPU storage: the size of the block it handed out. */
static size_t block_of(const cnn_storage *s) { return cnn_cpu_block_bytes(s); }

/* Distinct storages the current tape saved, skipping those of `skip` (params, inputs made
 * before the forward); sums their requested bytes and their allocated blocks. */
typedef struct {
    int n;
    size_t bytes, blocks;
} saved_set;
static saved_set tape_saved(const cnn_tensor *const *skip, int n_skip)
{
    saved_set r = {0, 0, 0};
    const cnn_storage *seen[1024];
    const cnn_tape *tp = &cnn_ctx()->tape;
    for (size_t i = 0; i < tp->n; i++)
        for (int k = 0; k < tp->nodes[i]->n_saved; k++) {
            if (!tp->nodes[i]->saved[k]) continue; /* an empty slot */
            const cnn_storage *s = tp->nodes[i]->saved[k]->storage;
            bool dup = false;
            for (int j = 0; j < r.n && !dup; j++) dup = seen[j] == s;
            for (int j = 0; j < n_skip && !dup; j++) dup = skip[j] && skip[j]->storage == s;
            if (dup || r.n == 1024) continue;
            seen[r.n++] = s;
            r.bytes += s->bytes;
            r.blocks += block_of(s);
        }
    return r;
}

TEST(cpu_memory_stats_count_live_tensors)
{
    cnn_cpu_empty_cache(); /* a fresh block is exactly the rounded size, not a larger cached one */
    size_t a0 = 0, p0 = 0;
    cnn_cpu_memory_stats(&a0, &p0, true);
    CHECK(p0 >= a0);
    cnn_tensor *small = NULL, *big = NULL;
    CHECK_OK(cnn_tensor_empty(CNN_SHAPE(1000), CNN_F32, CNN_CPU, &small)); /* 4000 B -> 4032 */
    CHECK(cpu_allocated() == a0 + 4032);
    CHECK_OK(cnn_tensor_empty(CNN_SHAPE(1000, 1000), CNN_F32, CNN_CPU, &big)); /* 4e6 B */
    CHECK(cpu_allocated() == a0 + 4032 + 4001792);
    cnn_tensor *view = NULL;
    CHECK_OK(cnn_tensor_reshape(big, CNN_SHAPE(1000000), &view)); /* a view: no new storage */
    CHECK(cpu_allocated() == a0 + 4032 + 4001792);
    cnn_tensor_free(&big);
    CHECK(cpu_allocated() == a0 + 4032 + 4001792); /* the view keeps the storage */
    cnn_tensor_free(&view);
    cnn_tensor_free(&small);
    size_t a1 = 0, p1 = 0;
    cnn_cpu_memory_stats(&a1, &p1, false);
    CHECK(a1 == a0);
    CHECK(p1 == a0 + 4032 + 4001792);
    cnn_cpu_memory_stats(NULL, NULL, true);
    cnn_cpu_memory_stats(&a1, &p1, false);
    CHECK(p1 == a1);
    /* A cached block handed out again is counted again, and its release uncounted. */
    CHECK_OK(cnn_tensor_empty(CNN_SHAPE(1000, 1000), CNN_F32, CNN_CPU, &big));
    CHECK(cpu_allocated() == a0 + 4001792);
    cnn_tensor_free(&big);
    CHECK(cpu_allocated() == a0);
}

/* conv -> bn -> relu -> add(identity) -> relu -> sum, the residual pattern: each op must save
 * exactly what its backward reads, preferring storages something else keeps anyway. */
TEST(memory_residual_block_saves_exactly_what_backward_reads)
{
    const int64_t n = 2, c = 4, h = 6, w = 6;
    cnn_tensor *x = NULL, *wt = NULL, *g = NULL, *beta = NULL, *rm = NULL, *rv = NULL;
    CHECK_OK(cnn_tensor_normal(CNN_SHAPE(n, c, h, w), 0, 1, CNN_CPU, &x));
    CHECK_OK(cnn_tensor_normal(CNN_SHAPE(c, c, 3, 3), 0, 0.3f, CNN_CPU, &wt));
    CHECK_OK(cnn_tensor_full(CNN_SHAPE(c), 1.5f, CNN_CPU, &g));
    CHECK_OK(cnn_tensor_full(CNN_SHAPE(c), 0.1f, CNN_CPU, &beta));
    CHECK_OK(cnn_tensor_zeros(CNN_SHAPE(c), CNN_CPU, &rm));
    CHECK_OK(cnn_tensor_ones(CNN_SHAPE(c), CNN_CPU, &rv));
    CHECK_OK(cnn_tensor_set_requires_grad(wt, true));
    CHECK_OK(cnn_tensor_set_requires_grad(g, true));
    CHECK_OK(cnn_tensor_set_requires_grad(beta, true));
    size_t a0 = cpu_allocated();
    cnn_conv2d_params cp = {{1, 1}, {1, 1}, {1, 1}, 1};
    cnn_tensor *cv = NULL, *bn = NULL, *r1 = NULL, *sum = NULL, *out = NULL, *loss = NULL;
    CHECK_OK(cnn_conv2d(x, wt, NULL, &cp, &cv));
    CHECK_OK(cnn_batch_norm(cv, rm, rv, g, beta, true, 0.1f, 1e-5f, &bn));
    CHECK_OK(cnn_relu(bn, &r1));
    CHECK_OK(cnn_add(r1, x, &sum));
    CHECK_OK(cnn_relu(sum, &out));
    CHECK_OK(cnn_sum(out, &loss));
    REQUIRE(cnn_tape_size() == 6);
    cnn_node **nd = cnn_ctx()->tape.nodes;
    /* conv: its input and weight (dw, dx); bn: its input and the (4, C) statistics, not its
     * output; relu: its output only; add and sum: nothing. */
    REQUIRE(nd[0]->n_saved == 2 && nd[1]->n_saved == 2 && nd[2]->n_saved == 1);
    CHECK(nd[0]->saved[0]->storage == x->storage && nd[0]->saved[1]->storage == wt->storage);
    CHECK(nd[1]->saved[0]->storage == cv->storage);
    CHECK(cnn_shape_equal(nd[1]->saved[1]->shape, CNN_SHAPE(4, c)));
    CHECK(nd[2]->saved[0]->storage == r1->storage);
    CHECK(nd[3]->n_saved == 0);
    REQUIRE(nd[4]->n_saved == 1);
    CHECK(nd[4]->saved[0]->storage == out->storage);
    CHECK(nd[5]->n_saved == 0);
    const cnn_tensor *skip[2] = {x, wt};
    saved_set s = tape_saved(skip, 2);
    size_t act = (size_t)(n * c * h * w) * sizeof(float);
    CHECK(s.n == 4);
    CHECK(s.bytes == 3 * act + 4 * (size_t)c * sizeof(float));
    /* With the caller's handles gone, the saved set (and the loss) is all that stays alive:
     * bn's output and the sum before the relu are freed. */
    cnn_tensor_free(&cv);
    cnn_tensor_free(&bn);
    cnn_tensor_free(&r1);
    cnn_tensor_free(&sum);
    cnn_tensor_free(&out);
    CHECK(cpu_allocated() - a0 == s.blocks + block_of(loss->storage));
    CHECK_OK(cnn_backward(loss));
    /* After backward the tape holds nothing: only the loss and the parameters' gradients. */
    CHECK(cnn_tape_size() == 0);
    REQUIRE(cnn_tensor_grad(wt) && cnn_tensor_grad(g) && cnn_tensor_grad(beta));
    CHECK(cpu_allocated() - a0 == block_of(loss->storage) +
                                      block_of(cnn_tensor_grad(wt)->storage) +
                                      block_of(cnn_tensor_grad(g)->storage) +
                                      block_of(cnn_tensor_grad(beta)->storage));
    cnn_tensor_free(&loss);
    cnn_tensor_zero_grad(wt);
    cnn_tensor_zero_grad(g);
    cnn_tensor_zero_grad(beta);
    CHECK(cpu_allocated() == a0);
    cnn_tensor *all[6] = {x, wt, g, beta, rm, rv};
    for (int i = 0; i < 6; i++) cnn_tensor_free(&all[i]);
}

/* Ops with nothing to save: dropout regenerates its mask, scale/mean/concat need no input. */
TEST(memory_ops_that_need_nothing_save_nothing)
{
    cnn_tensor *x = NULL, *y[4] = {0};
    CHECK_OK(cnn_tensor_normal(CNN_SHAPE(2, 3, 4, 4), 0, 1, CNN_CPU, &x));
    CHECK_OK(cnn_tensor_set_requires_grad(x, true));
    CHECK_OK(cnn_dropout(x, 0.5f, true, &y[0]));
    CHECK_OK(cnn_scale(x, 2.0f, &y[1]));
    CHECK_OK(cnn_mean(x, &y[2]));
    const cnn_tensor *xs[2] = {x, x};
    CHECK_OK(cnn_concat(xs, 2, 1, &y[3]));
    REQUIRE(cnn_tape_size() == 4);
    for (int i = 0; i < 4; i++) CHECK(cnn_ctx()->tape.nodes[i]->n_saved == 0);
    cnn_tape_reset();
    for (int i = 0; i < 4; i++) cnn_tensor_free(&y[i]);
    cnn_tensor_free(&x);
}

/* Max pooling keeps its argmax indices for backward only: without a recording, its peak is
 * the output alone; with one, the output and as many int32 indices. */
TEST(memory_max_pool_makes_indices_only_for_backward)
{
    cnn_tensor *x = NULL, *y = NULL;
    cnn_pool2d_params p = {.kernel = {2, 2}, .stride = {2, 2}};
    CHECK_OK(cnn_tensor_normal(CNN_SHAPE(2, 8, 32, 32), 0, 1, CNN_CPU, &x));
    const size_t out_block = 2 * 8 * 16 * 16 * sizeof(float); /* 16 KiB: rounds to itself */
    size_t a0 = 0, peak = 0;
    for (int pass = 0; pass < 2; pass++) {
        bool training = pass == 1;
        CHECK_OK(cnn_tensor_set_requires_grad(x, training));
        cnn_cpu_empty_cache();
        cnn_cpu_memory_stats(&a0, NULL, true);
        CHECK_OK(cnn_max_pool2d(x, &p, &y));
        cnn_cpu_memory_stats(NULL, &peak, false);
        CHECK(peak - a0 == (training ? 2 * out_block : out_block));
        CHECK(cnn_tape_size() == (training ? 1u : 0u));
        cnn_tape_reset();
        cnn_tensor_free(&y);
    }
    cnn_tensor_free(&x);
}

/* The tape drops a node's output gradient before routing its input gradients, so the last
 * input that aliases it (add passes dy to both) takes it over rather than a copy: backward of
 * sum(a + b) allocates dy (sum's backward) and one copy of it for a, not a second for b. */
TEST(memory_add_backward_takes_over_its_output_gradient)
{
    const size_t block = (size_t)1 << 22; /* 4 MiB: rounds to itself */
    cnn_tensor *a = NULL, *b = NULL, *y = NULL, *s = NULL;
    CHECK_OK(cnn_tensor_full(CNN_SHAPE(1 << 20), 1.0f, CNN_CPU, &a));
    CHECK_OK(cnn_tensor_full(CNN_SHAPE(1 << 20), 2.0f, CNN_CPU, &b));
    CHECK_OK(cnn_tensor_set_requires_grad(a, true));
    CHECK_OK(cnn_tensor_set_requires_grad(b, true));
    CHECK_OK(cnn_add(a, b, &y));
    CHECK_OK(cnn_sum(y, &s));
    size_t a0 = 0, a1 = 0, peak = 0;
    cnn_cpu_empty_cache();
    cnn_cpu_memory_stats(&a0, NULL, true);
    CHECK_OK(cnn_backward(s));
    cnn_cpu_memory_stats(&a1, &peak, false);
    CHECK(a1 - a0 == 2 * block);          /* the two gradients */
    CHECK(peak - a0 < 2 * block + 4096); /* and nothing else of their size on the way */
    REQUIRE(cnn_tensor_grad(a) && cnn_tensor_grad(b));
    CHECK(cnn_tensor_grad(a)->storage != cnn_tensor_grad(b)->storage);
    CHECK(cnn_tensor_cdata(cnn_tensor_grad(a))[12345] == 1.0f);
    CHECK(cnn_tensor_cdata(cnn_tensor_grad(b))[(1 << 20) - 1] == 1.0f);
    cnn_tensor *all[] = {a, b, y, s};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) cnn_tensor_free(&all[i]);
}

/* A probe recorded first runs last in backward: by then every later node must have dropped
 * what it saved and its output gradient, and only the probe's own gradient, the leaves'
 * gradients and the caller's handles may be alive. */
static struct {
    bool ran, later_released;
    size_t allocated;
} g_probe;

static cnn_status probe_backward(cnn_node *node, const cnn_tensor *dy, cnn_tensor **dx)
{
    const cnn_tape *tp = &cnn_ctx()->tape;
    g_probe.ran = true;
    g_probe.later_released = true;
    size_t i = 0;
    while (i < tp->n && tp->nodes[i] != node) i++;
    for (i++; i < tp->n; i++)
        if (tp->nodes[i]->n_saved || tp->nodes[i]->dout) g_probe.later_released = false;
    g_probe.allocated = cpu_allocated();
    dx[0] = cnn_tensor_retain((cnn_tensor *)dy);
    return CNN_OK;
}

TEST(memory_backward_releases_as_it_walks)
{
    cnn_tensor *x = NULL, *g = NULL, *beta = NULL, *p = NULL, *t = NULL;
    CHECK_OK(cnn_tensor_normal(CNN_SHAPE(2, 3, 5, 5), 0, 1, CNN_CPU, &x));
    CHECK_OK(cnn_tensor_full(CNN_SHAPE(3), 0.7f, CNN_CPU, &g));
    CHECK_OK(cnn_tensor_zeros(CNN_SHAPE(3), CNN_CPU, &beta));
    CHECK_OK(cnn_tensor_set_requires_grad(x, true));
    CHECK_OK(cnn_tensor_set_requires_grad(g, true));
    CHECK_OK(cnn_tensor_set_requires_grad(beta, true));
    size_t a0 = cpu_allocated();
    CHECK_OK(cnn_tensor_clone(x, &p));
    CHECK_OK(cnn_tape_record("probe", probe_backward, p, (const cnn_tensor *const *)&x, 1, NULL,
                             0, NULL));
    /* Three ops that save, on the probe's output. */
    const char *ops[3] = {"relu", "batch_norm", "tanh"};
    for (int i = 0; i < 3; i++) {
        cnn_tensor *y = NULL;
        if (i == 1) CHECK_OK(cnn_batch_norm(p, NULL, NULL, g, beta, true, 0.1f, 1e-5f, &y));
        else CHECK_OK(i == 0 ? cnn_relu(p, &y) : cnn_tanh(p, &y));
        REQUIRE(cnn_ctx()->tape.nodes[cnn_tape_size() - 1]->n_saved > 0);
        CHECK(!strcmp(cnn_ctx()->tape.nodes[cnn_tape_size() - 1]->op, ops[i]));
        cnn_tensor_free(&p);
        p = y;
    }
    CHECK_OK(cnn_sum(p, &t));
    cnn_tensor_free(&p);
    memset(&g_probe, 0, sizeof g_probe);
    CHECK_OK(cnn_backward(t));
    REQUIRE(g_probe.ran);
    CHECK(g_probe.later_released);
    /* Alive at the probe: the loss, the probe's output gradient, and g and beta's gradients. */
    REQUIRE(cnn_tensor_grad(g) && cnn_tensor_grad(beta) && cnn_tensor_grad(x));
    size_t act_block = block_of(cnn_tensor_grad(x)->storage);
    CHECK(g_probe.allocated - a0 == block_of(t->storage) + act_block +
                                        block_of(cnn_tensor_grad(g)->storage) +
                                        block_of(cnn_tensor_grad(beta)->storage));
    CHECK(cnn_tape_size() == 0);
    cnn_tensor_free(&t);
    cnn_tensor_zero_grad(x);
    cnn_tensor_zero_grad(g);
    cnn_tensor_zero_grad(beta);
    CHECK(cpu_allocated() == a0);
    cnn_tensor_free(&x);
    cnn_tensor_free(&g);
    cnn_tensor_free(&beta);
}

/* The bytes a ResNet's training forward must keep for backward, from its layer table alone:
 * each batch norm's input (a conv output) and its (4, C) statistics, each ReLU's output (which
 * the next conv reads too), max-pool indices (int32, one per output), the classifier's input,
 * and cross-entropy's probabilities and label copy. Convs add nothing of their own (their input
 * is a ReLU output or the image), nor do adds, average pooling and flatten. */
static size_t resnet_expected_saved(const cnn_model_summary *s, int64_t n, int64_t classes)
{
    size_t bytes = 0;
    for (int i = 1; i < s->n_layers; i++) {
        const cnn_layer_summary *r = &s->layers[i];
        size_t in = (size_t)(n * cnn_shape_numel(s->layers[i - 1].out_shape)) * sizeof(float);
        size_t out = (size_t)(n * cnn_shape_numel(r->out_shape)) * sizeof(float);
        if (!strcmp(r->type, "BatchNorm2d")) bytes += in + 4 * (size_t)r->out_shape.d[1] * 4;
        else if (!strcmp(r->type, "ReLU") || !strcmp(r->type, "MaxPool2d")) bytes += out;
        else if (!strcmp(r->type, "Linear")) bytes += in;
    }
    return bytes + (size_t)(n * classes) * sizeof(float) + (size_t)n * sizeof(int64_t);
}

TEST(memory_resnet_step_keeps_only_what_backward_reads)
{
    const int n = 2, size = 8, classes = 10;
    /* Initialisation draws 23 M normals (seconds); any finite weights do for counting bytes. */
    cnn_model_options o = cnn_model_default_options();
    o.num_classes = classes;
    o.in_channels = 3;
    o.skip_init = true;
    cnn_model *m = NULL;
    CHECK_OK(cnn_model_create_ex("resnet50_small", &o, &m));
    cnn_dict *params = cnn_model_parameters(m);
    int np = cnn_dict_size(params);
    for (int i = 0; i < np; i++) CHECK_OK(cnn_tensor_fill_(cnn_dict_at(params, i), 0.01f));
    cnn_model_summary sum = {0};
    CHECK_OK(cnn_model_summarize(m, size, size, &sum));
    cnn_tensor *x = NULL, *labels = NULL, *logits = NULL, *loss = NULL;
    int64_t lab[2] = {3, 7};
    CHECK_OK(cnn_tensor_normal(CNN_SHAPE(n, 3, size, size), 0, 1, CNN_CPU, &x));
    CHECK_OK(cnn_tensor_from_i64(CNN_SHAPE(n), lab, CNN_CPU, &labels));
    const cnn_tensor **skip = calloc((size_t)np + 1, sizeof *skip);
    REQUIRE(skip);
    for (int i = 0; i < np; i++) skip[i] = cnn_dict_at(params, i);
    skip[np] = x;
    size_t a0 = 0;
    cnn_cpu_memory_stats(&a0, NULL, true);
    CHECK_OK(cnn_model_forward(m, x, true, &logits));
    CHECK_OK(cnn_cross_entropy(logits, labels, 0.0f, &loss));
    saved_set s = tape_saved(skip, np + 1);
    free(skip);
    CHECK(s.bytes == resnet_expected_saved(&sum, n, classes));
    /* Nothing else stays alive: no normalised copy, no pre-activation, no block input. */
    CHECK(cpu_allocated() - a0 == s.blocks + block_of(logits->storage) +
                                      block_of(loss->storage));
    size_t after_forward = cpu_allocated();
    CHECK_OK(cnn_backward(loss));
    CHECK(cnn_tape_size() == 0);
    size_t grads = 0;
    for (int i = 0; i < np; i++) {
        const cnn_tensor *gr = cnn_tensor_grad(cnn_dict_at(params, i));
        REQUIRE(gr);
        grads += block_of(gr->storage);
    }
    CHECK(cpu_allocated() - a0 == grads + block_of(logits->storage) + block_of(loss->storage));
    /* What backward frees as it goes makes room for the gradients it creates: the step's peak
     * stays below the end of the forward plus all the gradients. */
    size_t peak = 0;
    cnn_cpu_memory_stats(NULL, &peak, false);
    CHECK(peak < after_forward + grads);
    for (int i = 0; i < np; i++) cnn_tensor_zero_grad(cnn_dict_at(params, i));
    cnn_tensor_free(&logits);
    cnn_tensor_free(&loss);
    CHECK(cpu_allocated() == a0);
    cnn_model_summary_free(&sum);
    cnn_tensor_free(&x);
    cnn_tensor_free(&labels);
    cnn_model_destroy(&m);
}
