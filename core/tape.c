/* tape.c — reverse-mode autograd. Ops append nodes in execution order (so the tape is already
 * topologically sorted); cnn_backward walks it backwards, handing each node the gradient of its
 * output and routing the input gradients it returns to producers (summed) or leaves
 * (accumulated across backward calls until zeroed). Nodes that no tensor anyone holds can reach
 * any more (a forward whose output was freed without a backward) are dropped as later ops are
 * recorded. Knows nothing of any op's math. */
#include "internal.h"

#include <pthread.h>
#include <stdatomic.h>

/* Tape generations are unique in the process, not per tape: a context freed and another
 * allocated at its address must not take the dead tape's tensors for its own op outputs. */
static atomic_uint_least64_t g_next_gen = 1;

uint64_t cnn_tape_new_gen(void) { return atomic_fetch_add(&g_next_gen, 1); }

/* The link between a node and its output (node->out, tensor->node) is the one part of a tape
 * another thread may touch: a tensor recorded here may be released on another thread, and its
 * release clears the link (cnn_tape_unlink). Both sides are written under this lock, and
 * tensor->node is read atomically, so a sweep never reads a tensor being freed and a release
 * never writes into a node being freed. */
static pthread_mutex_t g_link_lock = PTHREAD_MUTEX_INITIALIZER;

static cnn_node *node_of(const cnn_tensor *t)
{
    return __atomic_load_n(&t->node, __ATOMIC_ACQUIRE);
}

void cnn_tape_unlink(cnn_tensor *t)
{
    if (!node_of(t)) return;
    pthread_mutex_lock(&g_link_lock);
    if (t->node) {
        t->node->out = NULL;
        /* The node is alive (node_free clears t->node under this lock), so its tape is too. */
        __atomic_add_fetch(&t->tape->freed, 1, __ATOMIC_RELAXED);
    }
    __atomic_store_n(&t->node, NULL, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&g_link_lock);
}

static bool node_valid(const cnn_tensor *t, const cnn_context *c)
{
    return node_of(t) && t->tape == &c->tape && t->tape_gen == c->tape.gen;
}

/* An op's output recorded on this context's tape before its last backward or reset, which
 * freed the node: the gradient path it had is gone (a view of a parameter kept from an earlier
 * step). PyTorch keeps such a graph; a backward through a view of it still works there. */
static bool stale(const cnn_tensor *t, const cnn_context *c)
{
    return !t->requires_grad && t->tape == &c->tape && t->tape_gen >= c->tape.first_gen &&
           t->tape_gen != c->tape.gen && !node_of(t);
}

bool cnn_tensor_requires_grad(const cnn_tensor *t)
{
    return t && (t->requires_grad || node_valid(t, cnn_ctx()));
}

cnn_status cnn_tensor_set_requires_grad(cnn_tensor *t, bool requires_grad)
{
    CNN_CHECK(t, CNN_ERR_INVALID_ARG, "set_requires_grad: tensor is NULL");
    CNN_CHECK(!node_valid(t, cnn_ctx()), CNN_ERR_INVALID_ARG,
              "set_requires_grad: tensor %s was produced by a recorded op (only leaves can be "
              "marked)", cnn_shape_of(t));
    CNN_CHECK(!requires_grad || t->dtype == CNN_F32, CNN_ERR_UNSUPPORTED,
              "set_requires_grad: only F32 tensors can require grad, this one is %s",
              cnn_dtype_name(t->dtype));
    t->requires_grad = requires_grad;
    return CNN_OK;
}

cnn_tensor *cnn_tensor_grad(const cnn_tensor *t) { return t ? t->grad : NULL; }

void cnn_tensor_zero_grad(cnn_tensor *t)
{
    if (t) cnn_tensor_free(&t->grad);
}

bool cnn_should_record(const cnn_tensor *const *inputs, int n)
{
    cnn_context *c = cnn_ctx();
    if (!c->grad_enabled) return false;
    /* A stale input is recorded too, so that a backward through the op can refuse it rather
     * than silently leave out the gradient it once carried. */
    for (int i = 0; i < n; i++)
        if (inputs[i] && (inputs[i]->requires_grad || node_valid(inputs[i], c) ||
                          stale(inputs[i], c)))
            return true;
    return false;
}

static void release_saved(cnn_node *n)
{
    for (int i = 0; i < n->n_saved; i++) {
        if (!n->saved[i]) continue;
        __atomic_sub_fetch(&n->saved[i]->tape_refs, 1, __ATOMIC_RELAXED);
        cnn_tensor_free(&n->saved[i]);
    }
    n->n_saved = 0;
}

static void node_free(cnn_node *n)
{
    pthread_mutex_lock(&g_link_lock);
    if (n->out) __atomic_store_n(&n->out->node, NULL, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&g_link_lock);
    for (int i = 0; i < n->n_inputs; i++) cnn_tensor_free(&n->in[i].leaf);
    release_saved(n);
    cnn_tensor_free(&n->dout);
    free(n->in);
    free(n);
}

/* True while someone besides the tape (a caller, a model, a later op's input) holds the node's
 * output: its references outnumber those of the nodes that saved it. */
static bool output_held(const cnn_node *n)
{
    pthread_mutex_lock(&g_link_lock);
    const cnn_tensor *y = n->out;
    bool held = y && __atomic_load_n(&y->refcount, __ATOMIC_ACQUIRE) >
                         __atomic_load_n(&y->tape_refs, __ATOMIC_ACQUIRE);
    pthread_mutex_unlock(&g_link_lock);
    return held;
}

/* Drops the nodes no held tensor can reach: a backward from any tensor still held walks only
 * its own node and, through their inputs, the nodes before it. Without this, every forward run
 * in grad mode whose output was freed without a backward (an evaluation loop that forgot
 * cnn_set_grad_enabled(false)) would keep its saved activations until the next backward or
 * reset, as PyTorch frees such a graph with its output. One pass from the end suffices: the
 * tape is in execution order, so a node's consumers come after it. */
static void tape_sweep(cnn_tape *tape)
{
    for (size_t i = tape->n; i-- > 0;) {
        cnn_node *nd = tape->nodes[i];
        if (!nd->keep && !output_held(nd)) continue;
        nd->keep = true;
        for (int k = 0; k < nd->n_inputs; k++)
            if (nd->in[k].producer) nd->in[k].producer->keep = true;
    }
    size_t kept = 0;
    for (size_t i = 0; i < tape->n; i++) {
        cnn_node *nd = tape->nodes[i];
        if (!nd->keep) {
            node_free(nd);
            continue;
        }
        nd->keep = false;
        tape->nodes[kept++] = nd;
    }
    tape->n = tape->n_swept = kept;
    __atomic_store_n(&tape->freed, 0, __ATOMIC_RELAXED);
}

cnn_status cnn_tape_record(const char *op, cnn_backward_fn backward, cnn_tensor *out,
                           const cnn_tensor *const *inputs, int n, const void *params,
                           size_t psize, cnn_node **node)
{
    cnn_context *c = cnn_ctx();
    cnn_tape *tape = &c->tape;
    CNN_ASSERT(psize <= CNN_NODE_PARAM_BYTES && n > 0);
    /* The tape is swept when full, and when as many outputs were released since the last
     * sweep as it kept then (at least 16): a forward whose output was freed goes within about
     * one more forward, not a tape's capacity later. Each release or node is counted by one
     * sweep, so a node costs O(1) sweeping on average. A full tape grows only if more than half
     * of it is still reachable. */
    size_t freed = __atomic_load_n(&tape->freed, __ATOMIC_RELAXED);
    bool full = tape->n == tape->cap;
    if (full || (freed >= 16 && freed >= tape->n_swept)) tape_sweep(tape);
    if (full) {
        if (tape->n > tape->cap / 2 || tape->cap == 0) {
            size_t cap = tape->cap ? tape->cap * 2 : 256;
            cnn_node **nodes = realloc(tape->nodes, cap * sizeof *nodes);
            if (!nodes)
                return cnn_error(CNN_ERR_OUT_OF_MEMORY, "%s: out of host memory (tape)", op);
            tape->nodes = nodes;
            tape->cap = cap;
        }
    }
    cnn_node *nd = calloc(1, sizeof *nd);
    cnn_node_input *in = calloc((size_t)n, sizeof *in);
    if (!nd || !in) {
        free(nd);
        free(in);
        return cnn_error(CNN_ERR_OUT_OF_MEMORY, "%s: out of host memory (tape)", op);
    }
    nd->op = op;
    nd->backward = backward;
    nd->n_inputs = n;
    nd->in = in;
    if (params && psize) memcpy(nd->params, params, psize);
    for (int i = 0; i < n; i++) {
        const cnn_tensor *x = inputs[i];
        if (!x) continue;
        in[i].shape = x->shape;
        in[i].device = x->device;
        if (node_valid(x, c)) {
            in[i].producer = node_of(x);
            in[i].needs_grad = true;
        } else if (x->requires_grad) {
            in[i].leaf = cnn_tensor_retain((cnn_tensor *)x);
            in[i].needs_grad = true;
        } else {
            in[i].stale = stale(x, c);
        }
    }
    pthread_mutex_lock(&g_link_lock);
    if (out->node) out->node->out = NULL; /* recorded again: the older node keeps no output */
    nd->out = out;
    nd->out_version = cnn_storage_version(out);
    __atomic_store_n(&out->node, nd, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&g_link_lock);
    out->tape = tape;
    out->tape_gen = tape->gen;
    tape->nodes[tape->n++] = nd;
    if (node) *node = nd;
    return CNN_OK;
}

void cnn_node_save(cnn_node *node, const cnn_tensor *t)
{
    /* CNN_NODE_MAX_SAVED bounds what any op saves; an op saving more is a bug caught in tests. */
    if (node->n_saved < CNN_NODE_MAX_SAVED) {
        node->saved_version[node->n_saved] = t ? cnn_storage_version(t) : 0;
        node->saved[node->n_saved++] = t ? cnn_tensor_retain((cnn_tensor *)t) : NULL;
        if (t) __atomic_add_fetch(&((cnn_tensor *)t)->tape_refs, 1, __ATOMIC_RELAXED);
    }
}

void cnn_tape_reset(void)
{
    cnn_tape *tape = &cnn_ctx()->tape;
    for (size_t i = 0; i < tape->n; i++) node_free(tape->nodes[i]);
    tape->n = tape->n_swept = 0;
    __atomic_store_n(&tape->freed, 0, __ATOMIC_RELAXED);
    tape->gen = cnn_tape_new_gen();
}

void cnn_tape_destroy(cnn_tape *tape)
{
    for (size_t i = 0; i < tape->n; i++) node_free(tape->nodes[i]);
    free(tape->nodes);
    tape->nodes = NULL;
    tape->n = tape->cap = 0;
    tape->gen = cnn_tape_new_gen();
}

size_t cnn_tape_size(void) { return cnn_ctx()->tape.n; }

/* Adds g into *slot: takes g over when the slot is empty (cloning if someone else also holds
 * it, so a later in-place sum cannot change their copy), else sums in place, which counts as a
 * write (a version bump, as PyTorch's AccumulateGrad): a leaf's .grad that a node of this graph
 * saved, and that this backward adds into before that node runs, is caught (run_node). Consumes
 * g. */
static cnn_status accumulate_into(cnn_tensor **slot, cnn_tensor *g)
{
    cnn_status st = CNN_OK;
    if (!*slot) {
        if (g->refcount == 1 && cnn_tensor_is_contiguous(g)) {
            *slot = g;
            return CNN_OK;
        }
        cnn_tensor *own = NULL;
        st = cnn_tensor_empty(g->shape, g->dtype, g->device, &own);
        if (st == CNN_OK) st = cnn_tensor_copy_(own, g);
        if (st == CNN_OK) *slot = own;
        else cnn_tensor_free(&own);
    } else {
        cnn_tensor *gc = NULL;
        st = cnn_contig(g, &gc);
        if (st == CNN_OK) st = cnn_tensor_accumulate_(*slot, gc);
        if (st == CNN_OK) cnn_storage_bump(*slot);
        cnn_tensor_free(&gc);
    }
    cnn_tensor_free(&g);
    return st;
}

/* Whether every tensor nd saved for its gradient is as it was when nd ran: PyTorch's "one of
 * the variables needed for gradient computation has been modified by an inplace operation".
 * And whether its output, while still held, is: the tape records no in-place write (PyTorch
 * records one as an op of its own), so after fill_ or copy_ into an op's output (or a view of
 * it) the gradient would still be the op's, as if nothing had been written. */
static cnn_status check_node_saved(const cnn_node *nd)
{
    char shape[64] = "";
    pthread_mutex_lock(&g_link_lock);
    const cnn_tensor *y = nd->out;
    uint64_t out_now = y ? cnn_storage_version(y) : nd->out_version;
    if (y) cnn_shape_str(y->shape, shape, sizeof shape);
    pthread_mutex_unlock(&g_link_lock);
    CNN_CHECK(out_now == nd->out_version, CNN_ERR_INVALID_ARG,
              "backward: the output %s of %s was written in place after %s ran (version %llu, "
              "expected %llu), which the tape does not record, so its gradient would be wrong: "
              "compute the forward again after the write, or write into a copy", shape, nd->op,
              nd->op, (unsigned long long)out_now, (unsigned long long)nd->out_version);
    for (int k = 0; k < nd->n_saved; k++) {
        if (!nd->saved[k]) continue;
        uint64_t now = cnn_storage_version(nd->saved[k]);
        CNN_CHECK(now == nd->saved_version[k], CNN_ERR_INVALID_ARG,
                  "backward: a tensor %s that %s saved for its gradient was modified in place "
                  "after %s ran (version %llu, expected %llu): compute the forward again after "
                  "changing it", cnn_shape_of(nd->saved[k]), nd->op, nd->op,
                  (unsigned long long)now, (unsigned long long)nd->saved_version[k]);
    }
    return CNN_OK;
}

static cnn_status run_node(cnn_node *nd)
{
    /* Checked for every node before the walk; again here for what the walk itself wrote: a
     * gradient added into a leaf's .grad that this node saved. */
    CNN_TRY(check_node_saved(nd));
    cnn_status st = CNN_OK;
    cnn_tensor *dx_stack[8] = {0};
    cnn_tensor **dx = nd->n_inputs <= 8 ? dx_stack : calloc((size_t)nd->n_inputs, sizeof *dx);
    if (!dx) return cnn_error(CNN_ERR_OUT_OF_MEMORY, "backward of %s: out of host memory", nd->op);
    st = nd->backward(nd, nd->dout, dx);
    if (st != CNN_OK) {
        cnn_error_prefix(st, "backward of %s", nd->op);
        goto done;
    }
    /* The node needs its output gradient no more. Dropping its reference now lets the last
     * input gradient that aliases it (add, reshape) be taken over instead of copied. */
    cnn_tensor_free(&nd->dout);
    for (int i = 0; i < nd->n_inputs; i++) {
        cnn_node_input *in = &nd->in[i];
        if (!dx[i]) continue;
        if (!in->needs_grad || !cnn_shape_equal(dx[i]->shape, in->shape)) {
            if (in->needs_grad) {
                char a[64], b[64];
                st = cnn_error(CNN_ERR_INTERNAL,
                               "backward of %s: gradient of input %d has shape %s, expected %s",
                               nd->op, i, cnn_shape_str(dx[i]->shape, a, sizeof a),
                               cnn_shape_str(in->shape, b, sizeof b));
                goto done;
            }
            cnn_tensor_free(&dx[i]);
            continue;
        }
        cnn_tensor *g = dx[i];
        dx[i] = NULL;
        if (in->producer) st = accumulate_into(&in->producer->dout, g);
        else if (in->leaf->requires_grad) st = accumulate_into(&in->leaf->grad, g);
        else cnn_tensor_free(&g); /* frozen since it was recorded: no gradient, as PyTorch */
        if (st != CNN_OK) goto done;
    }
done:
    for (int i = 0; i < nd->n_inputs; i++) cnn_tensor_free(&dx[i]);
    if (dx != dx_stack) free(dx);
    /* What this node saved and its output gradient are no longer needed: free them now so peak
     * memory falls as the walk proceeds. */
    cnn_tensor_free(&nd->dout);
    release_saved(nd);
    return st;
}

/* Before any gradient is computed: every node backward will run (those `out` depends on) must
 * find what it saved as it was, and no input from a graph already freed, or its gradient would
 * be silently wrong. As PyTorch refuses a
 * backward after "one of the variables needed for gradient computation has been modified by an
 * inplace operation"; checked first, so a refused backward changes no gradient. */
static cnn_status check_saved_versions(const cnn_tape *tape, size_t start, cnn_node *last)
{
    char shape[64];
    last->live = true;
    for (size_t i = start; i-- > 0;) {
        cnn_node *nd = tape->nodes[i];
        if (!nd->live) continue;
        CNN_TRY(check_node_saved(nd));
        for (int k = 0; k < nd->n_inputs; k++) {
            CNN_CHECK(!nd->in[k].stale, CNN_ERR_INVALID_ARG, "backward: input %d %s of %s was "
                      "computed by ops recorded before an earlier backward (or cnn_tape_reset), "
                      "which freed their graph, so its gradient cannot reach what it came from: "
                      "compute it again after each backward (a view of a parameter too), or use "
                      "a cnn_tensor_clone of it as a constant", k,
                      cnn_shape_str(nd->in[k].shape, shape, sizeof shape), nd->op);
            if (nd->in[k].needs_grad && nd->in[k].producer) nd->in[k].producer->live = true;
        }
    }
    return CNN_OK;
}

/* Walks the tape back from `out`, whose gradient is seeded with `seed` (consumed: taken over
 * when nobody else holds it, so cnn_backward's seed costs no copy). */
static cnn_status backward_from(cnn_tensor *out, cnn_tensor *seed)
{
    cnn_context *c = cnn_ctx();
    if (!node_valid(out, c)) {
        if (out->requires_grad) {
            cnn_status st = accumulate_into(&out->grad, seed);
            cnn_tape_reset(); /* as after any backward */
            return st;
        }
        cnn_tensor_free(&seed);
        /* A non-NULL node is a live one (node_free clears it), so its tape is alive too. */
        CNN_CHECK(!node_of(out), CNN_ERR_INVALID_ARG,
                  "backward: the tensor of shape %s was recorded on another context's tape: "
                  "make that context current (on the thread that recorded it) first",
                  cnn_shape_of(out));
        return cnn_error(CNN_ERR_INVALID_ARG,
                         "backward: the tensor of shape %s does not require grad (no recorded op "
                         "produced it; was grad mode off, or the tape reset?)",
                         cnn_shape_of(out));
    }
    cnn_tape *tape = &c->tape;
    cnn_node *last = node_of(out); /* out is held here, and its node on this thread's tape */
    size_t start = tape->n;
    while (start > 0 && tape->nodes[start - 1] != last) start--;
    if (start == 0) { /* out's node is valid, so it is on the tape: a broken invariant */
        cnn_tensor_free(&seed);
        return cnn_error(CNN_ERR_INTERNAL, "backward: the node of %s is not on the tape",
                         cnn_shape_of(out));
    }
    cnn_status st = check_saved_versions(tape, start, last);
    if (st != CNN_OK) {
        cnn_tensor_free(&seed);
        cnn_tape_reset(); /* as after any backward */
        return st;
    }
    st = accumulate_into(&last->dout, seed);
    bool was = c->grad_enabled;
    c->grad_enabled = false; /* backward functions may call ops: record none of them */
    for (size_t i = start; st == CNN_OK && i-- > 0;) {
        cnn_node *nd = tape->nodes[i];
        if (nd->dout) st = run_node(nd);
    }
    c->grad_enabled = was;
    cnn_tape_reset();
    return st;
}

cnn_status cnn_backward_with_grad(cnn_tensor *out, const cnn_tensor *grad)
{
    CNN_CHECK(out && grad, CNN_ERR_INVALID_ARG, "backward: NULL tensor");
    CNN_CHECK(grad->dtype == CNN_F32, CNN_ERR_SHAPE, "backward: gradient %s is %s, not F32",
              cnn_shape_of(grad), cnn_dtype_name(grad->dtype));
    CNN_CHECK(cnn_shape_equal(out->shape, grad->shape), CNN_ERR_SHAPE,
              "backward: gradient %s does not match output %s", cnn_shape_of(grad),
              cnn_shape_of(out));
    CNN_TRY(cnn_check_same_device("backward", out, "output", grad, "gradient"));
    /* The caller keeps its reference, so the seed slot gets its own copy. */
    return backward_from(out, cnn_tensor_retain((cnn_tensor *)grad));
}

cnn_status cnn_backward(cnn_tensor *loss)
{
    CNN_CHECK(loss, CNN_ERR_INVALID_ARG, "backward: loss is NULL");
    CNN_CHECK(cnn_shape_numel(loss->shape) == 1, CNN_ERR_SHAPE,
              "backward: loss must have one element, got shape %s (use "
              "cnn_backward_with_grad)", cnn_shape_of(loss));
    cnn_tensor *one = NULL;
    CNN_TRY(cnn_tensor_full(loss->shape, 1.0f, loss->device, &one));
    return backward_from(loss, one);
}
