/* bench_layers.c — the per-layer breakdown of `cnnbench model NAME --layers`: each layer of the
 * zoo's summary rebuilt alone on its input shape and timed forward and forward + backward, with
 * a per-type total against the whole step's time. Public API only. */
#include "bench_common.h"

#include <string.h>

/* The model API has no hooks, so each layer but Flatten (a view) is rebuilt alone from the
 * summary (its input shape and parameters, cnn_layer_summary) and the model's own weights, then
 * timed forward and forward + backward; dropout in training mode, as in the step. */
enum { L_CONV, L_LINEAR, L_BN, L_RELU, L_ADD, L_MAXPOOL, L_AVGPOOL, L_ADAPTIVE, L_DROPOUT,
       L_TANH, L_KINDS };
static const char *const LAYER_TYPES[L_KINDS] = {"Conv2d", "Linear", "BatchNorm2d", "ReLU", "Add",
                                                 "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d",
                                                 "Dropout", "Tanh"};
typedef struct layer_job {
    int kind;
    const cnn_layer_summary *ly;
    cnn_tensor *x, *x2, *w, *b, *rm, *rv, *y, *dy;
    bool bwd;
} layer_job;

static cnn_status layer_fwd(layer_job *j, cnn_tensor **y)
{
    const cnn_layer_summary *ly = j->ly;
    switch (j->kind) {
    case L_CONV: return cnn_conv2d(j->x, j->w, j->b, &ly->conv, y);
    case L_LINEAR: return cnn_linear(j->x, j->w, j->b, y);
    case L_BN: return cnn_batch_norm(j->x, j->rm, j->rv, j->w, j->b, true, 0.1f, 1e-5f, y);
    case L_RELU: return cnn_relu(j->x, y);
    case L_ADD: return cnn_add(j->x, j->x2, y);
    case L_MAXPOOL: return cnn_max_pool2d(j->x, &ly->pool, y);
    case L_AVGPOOL: return cnn_avg_pool2d(j->x, &ly->pool, y);
    case L_ADAPTIVE:
        return cnn_adaptive_avg_pool2d(j->x, (int)ly->out_shape.d[2], (int)ly->out_shape.d[3], y);
    case L_DROPOUT: return cnn_dropout(j->x, ly->dropout_p, true, y);
    default: return cnn_tanh(j->x, y);
    }
}

static int layer_run(void *ud)
{
    layer_job *j = ud;
    cnn_tensor_free(&j->y);
    cnn_status st = layer_fwd(j, &j->y);
    if (!st && j->bwd) st = cnn_backward_with_grad(j->y, j->dy);
    return st != CNN_OK;
}

/* The backward's random dy, drawn before the first timed repeat (as bench/torch_reference.py
 * draws its own): the forward run once, untimed, for the output's shape. */
static int layer_prepare_dy(void *ud)
{
    layer_job *j = ud;
    if (j->dy) return 0;
    cnn_tensor *y = NULL;
    bool was = cnn_set_grad_enabled(false);
    cnn_status st = layer_fwd(j, &y);
    cnn_set_grad_enabled(was);
    if (!st) st = cnn_tensor_uniform(cnn_tensor_shape(y), -1, 1, cnn_tensor_device(y), &j->dy);
    cnn_tensor_free(&y);
    return st != CNN_OK;
}

static int layer_teardown(void *ud)
{
    layer_job *j = ud;
    cnn_tensor_free(&j->y);
    cnn_tensor *ts[] = {j->x, j->x2, j->w, j->b};
    for (int i = 0; i < 4; i++) cnn_tensor_zero_grad(ts[i]);
    cnn_tape_reset();
    return 0;
}

static cnn_status rand_like_in(const bench_env *e, cnn_shape s, cnn_tensor **out)
{
    return cnn_tensor_uniform(s, -1, 1, e->dev, out);
}

/* The model's tensor "<layer>.<what>" (borrowed), or NULL. */
static cnn_tensor *layer_tensor(cnn_dict *state, const char *layer, const char *what)
{
    char key[96];
    snprintf(key, sizeof key, "%s.%s", layer, what);
    return cnn_dict_get(state, key);
}

/* j's inputs for layer ly at batch n: random activations, the model's weights, copies of its
 * batch-norm buffers (the timed steps update them). */
static cnn_status layer_setup(const bench_env *e, cnn_dict *state, const cnn_layer_summary *ly,
                              int n, layer_job *j)
{
    cnn_shape in = ly->in_shape;
    in.d[0] = n;
    cnn_status st = rand_like_in(e, in, &j->x);
    if (!st && j->kind == L_ADD) st = rand_like_in(e, in, &j->x2);
    if (!st && (j->kind == L_CONV || j->kind == L_LINEAR || j->kind == L_BN)) {
        cnn_tensor *w = layer_tensor(state, ly->name, "weight");
        cnn_tensor *b = layer_tensor(state, ly->name, "bias");
        j->w = w ? cnn_tensor_retain(w) : NULL;
        j->b = b ? cnn_tensor_retain(b) : NULL;
        if (!w) st = CNN_ERR_NOT_FOUND;
    }
    if (!st && j->kind == L_BN) {
        cnn_tensor *rm = layer_tensor(state, ly->name, "running_mean");
        cnn_tensor *rv = layer_tensor(state, ly->name, "running_var");
        st = rm && rv ? cnn_tensor_clone(rm, &j->rm) : CNN_ERR_NOT_FOUND;
        if (!st) st = cnn_tensor_clone(rv, &j->rv);
    }
    return st;
}

int bench_time_layers(const bench_opts *o, bench_env *e, bench_log *l, cnn_model *m,
                      const cnn_model_summary *s, double step_ms)
{
    double type_ms[L_KINDS] = {0}, total = 0;
    cnn_dict *state = cnn_model_state(m);
    printf(
        "\nper-layer (each rebuilt alone on its input shape; fwd+bwd = forward then backward)\n");
    printf("%-28s %-17s %-22s %10s %12s %7s\n", "layer", "type", "input", "fwd ms", "fwd+bwd ms",
           "%step");
    int rc = 0;
    for (int i = 0; i < s->n_layers && !tool_stop; i++) {
        const cnn_layer_summary *ly = &s->layers[i];
        layer_job j = {.kind = -1, .ly = ly};
        for (int k = 0; k < L_KINDS; k++)
            if (!strcmp(ly->type, LAYER_TYPES[k])) j.kind = k;
        if (j.kind < 0) continue; /* Flatten: a view */
        char sb[40];
        cnn_shape in = ly->in_shape;
        in.d[0] = o->batch;
        cnn_status st = layer_setup(e, state, ly, o->batch, &j);
        bench_stats tf = {0}, tb = {0};
        if (!st) {
            /* The model's first layer reads the images, which need no gradient: the step runs
             * no backward-data there, so neither does its time alone. */
            if (i > 0) cnn_tensor_set_requires_grad(j.x, true);
            if (j.x2) cnn_tensor_set_requires_grad(j.x2, true);
            bool was = cnn_set_grad_enabled(false);
            st = bench_time(e, o->warmup, o->iters, NULL, layer_run, layer_teardown, &j, &tf)
                     ? CNN_ERR_INTERNAL
                     : CNN_OK;
            cnn_set_grad_enabled(was);
            j.bwd = true;
            if (!st && bench_time(e, o->warmup, o->iters, layer_prepare_dy, layer_run,
                                  layer_teardown, &j, &tb))
                st = CNN_ERR_INTERNAL;
        }
        if (st) {
            bench_error("layer %s (%s): could not time it alone: %s\n", ly->name,
                    ly->type, cnn_last_error());
            rc = 1;
        } else {
            type_ms[j.kind] += tb.median;
            total += tb.median;
            printf("%-28s %-17s %-22s %10.3f %12.3f %6.1f%%\n", ly->name, ly->type,
                   cnn_shape_str(in, sb, sizeof sb), tf.median, tb.median,
                   100 * tb.median / step_ms);
            for (int p = 0; p < 2; p++) {
                bench_result *r = bench_log_add(l);
                if (!r) break;
                snprintf(r->mode, sizeof r->mode, "layer");
                snprintf(r->backend, sizeof r->backend, "%s", e->backend);
                snprintf(r->name, sizeof r->name, "%s", ly->name);
                snprintf(r->shape, sizeof r->shape, "%s", sb);
                snprintf(r->pass, sizeof r->pass, "%s", p ? "train" : "infer");
                snprintf(r->check, sizeof r->check, "n/a");
                r->t = p ? tb : tf;
                r->count = 1;
            }
        }
        layer_teardown(&j);
        cnn_tensor *ts[] = {j.x, j.x2, j.w, j.b, j.rm, j.rv, j.dy};
        for (int k = 0; k < 7; k++) cnn_tensor_free(&ts[k]);
    }
    printf("per type (fwd+bwd):");
    for (int k = 0; k < L_KINDS; k++)
        if (type_ms[k] > 0)
            printf("  %s %.3f ms (%.1f%%)", LAYER_TYPES[k], type_ms[k],
                   100 * type_ms[k] / step_ms);
    /* Each layer alone starts with caches flushed, where in the step it finds its input warm:
     * their sum can pass the step's time, and then there is no "other" to tell. */
    if (total <= step_ms)
        printf("\nlayers timed alone: %.3f ms of the %.3f ms step; other (loss, optimizer, "
               "overhead): %.3f ms\n",
               total, step_ms, step_ms - total);
    else
        printf("\nlayers timed alone: %.3f ms, more than the %.3f ms step (each alone starts with "
               "cold caches; per-layer rows are timings, not checked)\n",
               total, step_ms);
    return rc;
}
