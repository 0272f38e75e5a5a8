/* bench_model.c — cnnbench's model modes: `model NAME` times a training step (forward,
 * cross-entropy, backward, SGD momentum update) and inference, optionally with a per-layer
 * breakdown (bench_layers.c's); `summary NAME` prints the zoo's layer table. Public API only. */
#include "bench_common.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* "25,557,032" */
static const char *thousands(long long v, char *buf, size_t n)
{
    char raw[32];
    int len = snprintf(raw, sizeof raw, "%lld", v < 0 ? -v : v), o = 0;
    if (v < 0 && o + 1 < (int)n) buf[o++] = '-';
    for (int i = 0; i < len && o + 2 < (int)n; i++) {
        buf[o++] = raw[i];
        if ((len - i - 1) % 3 == 0 && i + 1 < len) buf[o++] = ',';
    }
    buf[o] = 0;
    return buf;
}

int bench_mode_summary(const bench_opts *o)
{
    cnn_model *m = NULL;
    cnn_model_options mo = cnn_model_default_options();
    mo.skip_init = true; /* shapes only */
    if (cnn_model_create_ex(o->model, &mo, &m) != CNN_OK) {
        bench_error("%s\n", cnn_last_error());
        return 2;
    }
    cnn_model_info info = cnn_model_get_info(m);
    int s = o->img_size ? o->img_size : info.input_h;
    cnn_model_summary sum = {0};
    if (cnn_model_summarize(m, s, s, &sum) != CNN_OK) {
        bench_error("summary %s at %dx%d: %s\n", o->model, s, s, cnn_last_error());
        cnn_model_destroy(&m);
        return 2;
    }
    size_t need = cnn_model_summary_format(&sum, NULL, 0) + 1;
    char *buf = malloc(need), a[32];
    if (buf) {
        cnn_model_summary_format(&sum, buf, need);
        fputs(buf, stdout);
    }
    /* LeNet-5's 0.42 MMACs read as "0.00 GMACs" */
    const bool giga = sum.total_macs >= 100000000;
    printf("%s at %dx%d: total params %s, %.2f %sMACs per image\n", info.name, s, s,
           thousands(sum.total_params, a, sizeof a), (double)sum.total_macs / (giga ? 1e9 : 1e6),
           giga ? "G" : "M");
    free(buf);
    cnn_model_summary_free(&sum);
    cnn_model_destroy(&m);
    return 0;
}

/* ---- one training step / one inference ------------------------------------------------------- */
typedef struct model_job {
    cnn_model *m;
    cnn_optim *opt;
    cnn_tensor *x, *labels;
    bool train;
    cnn_tensor *logits, *loss; /* the last step's (kept for --graph, which reads them back) */
} model_job;

/* One training step (forward, cross-entropy, backward, SGD update) or one inference: what is
 * timed, and with --graph what is captured. */
static cnn_status model_step(void *ud)
{
    model_job *j = ud;
    cnn_status st;
    cnn_tensor_free(&j->logits);
    cnn_tensor_free(&j->loss);
    if (j->train) {
        st = cnn_model_forward(j->m, j->x, true, &j->logits);
        if (!st) st = cnn_cross_entropy(j->logits, j->labels, 0.0f, &j->loss);
        if (!st) st = cnn_backward(j->loss);
        if (!st) st = cnn_optim_step(j->opt);
        cnn_optim_zero_grad(j->opt);
    } else {
        bool was = cnn_set_grad_enabled(false);
        st = cnn_model_forward(j->m, j->x, false, &j->logits);
        cnn_set_grad_enabled(was);
    }
    cnn_tape_reset();
    return st;
}

static int model_run(void *ud)
{
    model_job *j = ud;
    cnn_status st = model_step(j);
    if (st)
        bench_error("model %s: %s\n", j->train ? "train" : "infer", cnn_last_error());
    cnn_tensor_free(&j->logits);
    cnn_tensor_free(&j->loss);
    return st != CNN_OK;
}

/* What a captured step's result must be at the current weights, computed op by op: the
 * training loss (a forward in training mode, nothing recorded, nothing updated) or the
 * inference logits. */
static cnn_status model_reference(void *ud, cnn_tensor **out)
{
    model_job *j = ud;
    cnn_tensor *logits = NULL;
    bool was = cnn_set_grad_enabled(false);
    cnn_status st = cnn_model_forward(j->m, j->x, j->train, &logits);
    if (!st && j->train) st = cnn_cross_entropy(logits, j->labels, 0.0f, out);
    cnn_set_grad_enabled(was);
    if (!st && !j->train) *out = cnn_tensor_retain(logits);
    cnn_tensor_free(&logits);
    return st;
}

/* Times the pass j->train says, op by op or (--graph) as replays of a CUDA graph; the graph's
 * result joins the pass's check. */
static int time_pass(const bench_opts *o, const bench_env *e, model_job *j, const char **check,
                     double *err, bench_stats *t)
{
    if (!o->graph) return bench_time(e, o->warmup, o->iters, NULL, model_run, NULL, j, t);
    bench_graph_job g = {.step = model_step, .reference = model_reference, .ud = j,
                         .result = j->train ? &j->loss : &j->logits,
                         .check = j->train ? "graph train loss" : "graph infer logits"};
    const char *gcheck = "n/a";
    double gerr = 0;
    int rc = bench_time_graph(e, o->warmup, o->iters, &g, &gcheck, &gerr, t);
    if (!rc && !strcmp(gcheck, "mismatch")) *check = "mismatch";
    if (!rc && !strcmp(*check, "n/a")) *check = gcheck;
    if (gerr > *err) *err = gerr;
    cnn_tensor_free(&j->logits);
    cnn_tensor_free(&j->loss);
    return rc;
}

/* ---- model mode ------------------------------------------------------------------------------ */
static void model_row(bench_env *e, bench_log *l, const char *name, const char *shape,
                      const char *pass, const bench_stats *t, double flops, int batch,
                      double mem_mb, const char *check, double err)
{
    bench_result *r = bench_log_add(l);
    if (!r) return;
    snprintf(r->mode, sizeof r->mode, "model");
    snprintf(r->backend, sizeof r->backend, "%s", e->backend);
    snprintf(r->name, sizeof r->name, "%s", name);
    snprintf(r->shape, sizeof r->shape, "%s", shape);
    snprintf(r->pass, sizeof r->pass, "%s", pass);
    snprintf(r->check, sizeof r->check, "%s", check);
    r->max_err = err;
    r->t = *t;
    r->count = 1;
    r->img_per_s = batch / (t->median * 1e-3);
    r->gflops = flops / (t->median * 1e6);
    r->peak_mem_mb = mem_mb;
    bench_print_row(e, r);
}

/* Fresh models have batch norms that do nothing (gamma 1, beta 0, mean 0, var 1): a fused path
 * that folded them wrong, or dropped them, would pass the check. So every vector (batch-norm
 * weights, biases and statistics, conv and linear biases) gets the same random values in m and
 * its reference: variances and BN weights in [0.5, 1.5], the rest in [-0.2, 0.2]. */
static cnn_status randomize_vectors(cnn_model *m, cnn_model *ref)
{
    cnn_dict *dm = cnn_model_state(m), *dr = cnn_model_state(ref);
    cnn_status st = CNN_OK;
    for (int i = 0; i < cnn_dict_size(dm) && st == CNN_OK; i++) {
        cnn_tensor *a = cnn_dict_at(dm, i), *b = cnn_dict_at(dr, i), *v = NULL;
        const char *name = cnn_dict_name(dm, i);
        if (cnn_tensor_ndim(a) != 1 || cnn_tensor_dtype(a) != CNN_F32) continue;
        const size_t n = strlen(name);
        const bool scale = (n >= 11 && !strcmp(name + n - 11, "running_var")) ||
                           (n >= 6 && !strcmp(name + n - 6, "weight"));
        st = cnn_tensor_uniform(cnn_tensor_shape(a), scale ? 0.5f : -0.2f, scale ? 1.5f : 0.2f,
                                CNN_CPU, &v);
        if (!st) st = cnn_tensor_copy_(a, v);
        if (!st) st = cnn_tensor_copy_(b, v);
        cnn_tensor_free(&v);
    }
    return st;
}

/* Host copies of the gradients of m's parameters (NULL where one has none); *lens their sizes. */
static float **grads_of(cnn_model *m, long **lens)
{
    const cnn_dict *p = cnn_model_parameters(m);
    const int np = cnn_dict_size(p);
    float **g = calloc((size_t)np + 1, sizeof *g);
    *lens = calloc((size_t)np + 1, sizeof **lens);
    for (int i = 0; g && *lens && i < np; i++) {
        const cnn_tensor *t = cnn_tensor_grad(cnn_dict_at(p, i));
        g[i] = t ? bench_host_copy(t) : NULL;
        (*lens)[i] = t ? (long)cnn_tensor_numel(t) : 0;
    }
    return g;
}

static void free_grads(float **g, long *lens, int n)
{
    for (int i = 0; g && i < n; i++) free(g[i]);
    free(g);
    free(lens);
}

static cnn_status no_memory(void)
{
    bench_error("model check: out of host memory for copies of the gradients\n");
    return CNN_ERR_OUT_OF_MEMORY;
}

/* One training step's forward (dropout from seed 7), cross-entropy and backward; *logits kept. */
static cnn_status train_pass(cnn_model *m, const cnn_tensor *x, const cnn_tensor *lab,
                             cnn_tensor **logits)
{
    cnn_tensor *loss = NULL;
    cnn_manual_seed(7); /* the same dropout masks on every pass */
    cnn_status st = cnn_model_forward(m, x, true, logits);
    if (!st) st = cnn_cross_entropy(*logits, lab, 0.0f, &loss);
    if (!st) st = cnn_backward(loss);
    cnn_tape_reset();
    cnn_tensor_free(&loss);
    return st;
}

/* The check of a training step: m (this backend, fused or not) against ref (the CPU, every layer
 * alone) on the same nc images, and an evaluation forward of each.
 * A deep network's gradients are chaotic element by element: a ReLU or max-pool decision near a
 * tie flips under any change of rounding and moves a gradient by a step (the CPU's own first-
 * layer gradient of ResNet-50 moves by 3% in relative L2 when the input is scaled by 1 + 1e-6;
 * see tests/test_models_gpu.c). An element-wise tolerance there flags correct GPUs (it did on
 * the H200, 2026-12-04: ResNet-50 and VGG16 MISMATCH). So the bound is measured: ref runs the
 * step a second time on the input scaled by 1 + 1e-6, and each result may differ from ref's by
 * 10x what that moved it, never less than the floor tol:
 *   - the training logits element-wise (|d| <= tol * |ref| + bound * max|ref|): the check the
 *     tests corrupt as "train";
 *   - each parameter gradient in relative L2 (bench_check_rel_l2, corrupted as "grad"): a wrong
 *     backward misses by far (a 10% leak in ReLU's moves LeNet-5's first gradient by 23%).
 * Sets *check_train and *check_eval ("ok" or "mismatch"); *err_train gets the logits' largest
 * error, or a failed gradient's relative L2 error when larger; leaves no gradient behind. */
static cnn_status check_model(cnn_model *m, cnn_model *ref, const bench_env *e, int nc, int C,
                              int S, int classes, double *err_train, double *err_eval,
                              const char **check_train, const char **check_eval)
{
    cnn_model *both[2] = {m, ref};
    cnn_tensor *xc = NULL, *lc = NULL, *x[2] = {0}, *lab[2] = {0}, *logit[2] = {0}, *ev[2] = {0};
    cnn_tensor *xp = NULL, *lp = NULL;
    int64_t labels[8];
    for (int i = 0; i < nc; i++) labels[i] = (i * 7919 + 3) % classes;
    const double tol = e->tf32 ? 2e-2 : 2e-3;
    cnn_status st = cnn_tensor_uniform(CNN_SHAPE(nc, C, S, S), -1, 1, CNN_CPU, &xc);
    if (!st) st = cnn_tensor_from_i64(CNN_SHAPE(nc), labels, CNN_CPU, &lc);
    for (int k = 0; k < 2 && !st; k++) {
        st = cnn_tensor_to(xc, k ? CNN_CPU : e->dev, &x[k]);
        if (!st) st = cnn_tensor_to(lc, k ? CNN_CPU : e->dev, &lab[k]);
        if (!st) st = train_pass(both[k], x[k], lab[k], &logit[k]);
        bool was = cnn_set_grad_enabled(false);
        if (!st) st = cnn_model_forward(both[k], x[k], false, &ev[k]);
        cnn_set_grad_enabled(was);
    }
    const int np = cnn_dict_size(cnn_model_parameters(m));
    long *lg = NULL, *lr = NULL, *lq = NULL;
    float **gm = st ? NULL : grads_of(m, &lg), **gr = st ? NULL : grads_of(ref, &lr), **gq = NULL;
    if (!st && (!gm || !gr || !lg || !lr)) st = no_memory();
    /* ref again, on the input scaled by 1 + 1e-6 (its gradients zeroed first). */
    const cnn_dict *pr = cnn_model_parameters(ref);
    for (int i = 0; i < np && !st; i++) cnn_tensor_zero_grad(cnn_dict_at(pr, i));
    if (!st) st = cnn_scale(x[1], 1.0f + 1e-6f, &xp);
    if (!st) st = train_pass(ref, xp, lab[1], &lp);
    if (!st && !(gq = grads_of(ref, &lq))) st = no_memory();
    if (!st) {
        /* The logits: 10x the perturbation's largest change, relative to the largest logit. */
        float *a = bench_host_copy(logit[1]), *b = bench_host_copy(lp);
        const long n = (long)cnn_tensor_numel(lp);
        double big = 0, moved = 0;
        for (long i = 0; a && b && i < n; i++) {
            big = fmax(big, fabs(a[i]));
            moved = fmax(moved, fabs((double)a[i] - b[i]));
        }
        free(a);
        free(b);
        const double lbound = fmax(tol, big > 0 ? 10 * moved / big : 0);
        bool ok = bench_check_tensors("train", logit[0], logit[1], tol, lbound, err_train);
        const cnn_dict *pm = cnn_model_parameters(m);
        for (int i = 0; i < np; i++) {
            if (!gr[i] && !gm[i]) continue; /* a parameter backward does not reach */
            double err = INFINITY;
            const double bound = gq[i] ? fmax(tol, 10 * bench_rel_l2(gq[i], gr[i], lr[i])) : 0;
            const bool same = gm[i] && gr[i] && gq[i] && lg[i] == lr[i] && lq[i] == lr[i];
            if (same && bench_check_rel_l2("grad", gm[i], gr[i], lr[i], bound, &err)) continue;
            fprintf(stderr,
                    "cnnbench: check train: the gradient of %s differs from the CPU reference's "
                    "by %.3g (relative L2), over its bound %.3g\n",
                    cnn_dict_name(pm, i), err, bound);
            if (ok || err > *err_train) *err_train = err;
            ok = false;
        }
        *check_train = ok ? "ok" : "mismatch";
        const bool ok_eval = bench_check_tensors("eval", ev[0], ev[1], tol, tol, err_eval);
        *check_eval = ok_eval ? "ok" : "mismatch";
    }
    free_grads(gm, lg, np);
    free_grads(gr, lr, np);
    free_grads(gq, lq, np);
    for (int k = 0; k < 2; k++) {
        const cnn_dict *p = cnn_model_parameters(both[k]);
        for (int i = 0; i < cnn_dict_size(p); i++) cnn_tensor_zero_grad(cnn_dict_at(p, i));
        cnn_tensor *t[4] = {x[k], lab[k], logit[k], ev[k]};
        for (int j = 0; j < 4; j++) cnn_tensor_free(&t[j]);
    }
    cnn_tensor_free(&xp);
    cnn_tensor_free(&lp);
    cnn_tensor_free(&xc);
    cnn_tensor_free(&lc);
    return st;
}

/* The timed step's optimizer: SGD, lr 0.01, momentum 0.9 (weight decay 0). */
static cnn_status make_sgd(cnn_model *m, cnn_optim **opt)
{
    cnn_optim_config oc = cnn_optim_defaults(CNN_OPTIM_SGD);
    oc.lr = 0.01f;
    oc.momentum = 0.9f;
    cnn_status st = cnn_optim_create(&oc, opt);
    if (!st) st = cnn_optim_add_dict(*opt, cnn_model_parameters(m), true);
    return st;
}

typedef struct sgd_ref {
    const float *p0, *g;
    double lr;
} sgd_ref;

/* A first SGD step with momentum: the buffer starts as the gradient, p = p0 - lr * g. */
static void sgd_ref_at(void *ud, long idx, double *ref, double *mag)
{
    const sgd_ref *s = ud;
    *ref = (double)s->p0[idx] - s->lr * s->g[idx];
    *mag = fabs(s->p0[idx]) + fabs(s->lr * s->g[idx]);
}

/* The check of the timed step's last part, the optimizer update (check_model covers forward,
 * loss and backward): one training pass on nc images, then one step of a fresh SGD like the
 * timed one; every element of every parameter against p0 - lr * g from host copies (the check
 * "update"). The weights are put back and the gradients dropped afterwards. */
static cnn_status check_update(cnn_model *m, const bench_env *e, int nc, int C, int S,
                               int classes, double *err, bool *ok)
{
    const cnn_dict *ps = cnn_model_parameters(m);
    const int np = cnn_dict_size(ps);
    int64_t labels[8];
    for (int i = 0; i < nc; i++) labels[i] = (i * 7919 + 5) % classes;
    cnn_tensor *x = NULL, *lab = NULL, *logits = NULL;
    cnn_optim *opt = NULL;
    float **p0 = calloc((size_t)np + 1, sizeof *p0);
    long *lg = NULL;
    float **g = NULL;
    *ok = true;
    cnn_status st = p0 ? cnn_tensor_uniform(CNN_SHAPE(nc, C, S, S), -1, 1, e->dev, &x)
                       : no_memory();
    if (!st) st = cnn_tensor_from_i64(CNN_SHAPE(nc), labels, e->dev, &lab);
    if (!st) st = train_pass(m, x, lab, &logits);
    if (!st && !(g = grads_of(m, &lg))) st = no_memory();
    for (int i = 0; i < np && !st; i++)
        if (!(p0[i] = bench_host_copy(cnn_dict_at(ps, i)))) st = no_memory();
    if (!st) st = make_sgd(m, &opt);
    if (!st) st = cnn_optim_step(opt);
    for (int i = 0; i < np && !st; i++) {
        cnn_tensor *p = cnn_dict_at(ps, i);
        const long n = (long)cnn_tensor_numel(p);
        float *p1 = bench_host_copy(p);
        if (!p1) {
            st = no_memory();
            break;
        }
        double e1 = 0;
        /* No gradient: SGD leaves the parameter as it was (lr 0 against any array). */
        sgd_ref r = {p0[i], g[i] ? g[i] : p1, g[i] ? 0.01 : 0.0};
        if (!bench_check("update", p1, n, n, sgd_ref_at, &r, 1e-6, 1e-30, &e1)) {
            fprintf(stderr, "cnnbench: check train: the SGD step moved %s by up to %.3g from "
                    "p - lr * grad\n", cnn_dict_name(ps, i), e1);
            *ok = false;
        }
        if (e1 > *err) *err = e1;
        free(p1);
        st = cnn_tensor_write(p, p0[i], (size_t)n); /* the weights as checked before */
    }
    for (int i = 0; i < np; i++) cnn_tensor_zero_grad(cnn_dict_at(ps, i));
    for (int i = 0; p0 && i < np; i++) free(p0[i]);
    free(p0);
    free_grads(g, lg, np);
    cnn_optim_destroy(&opt);
    cnn_tensor_free(&x);
    cnn_tensor_free(&lab);
    cnn_tensor_free(&logits);
    return st;
}

int bench_mode_model(const bench_opts *o, bench_env *e, bench_log *l)
{
    cnn_model *m = NULL, *ref = NULL;
    cnn_optim *opt = NULL;
    cnn_tensor *x = NULL, *xc = NULL, *labels = NULL;
    cnn_model_summary sum = {0};
    int64_t *lab = NULL;
    int rc = 1;
    /* Same seed for the model and its CPU twin: identical weights. */
    cnn_manual_seed(1);
    if (cnn_model_create(o->model, 0, 0, &m) != CNN_OK) goto fail;
    cnn_model_info info = cnn_model_get_info(m);
    const int B = o->batch, S = o->img_size ? o->img_size : info.input_h, C = info.in_channels;
    if (cnn_model_summarize(m, S, S, &sum) != CNN_OK) goto fail;
    cnn_model_set_fusion(m, !o->no_fusion);
    if (e->gpu || !o->no_fusion) { /* the reference: on the CPU, every layer alone */
        cnn_manual_seed(1);
        if (cnn_model_create(o->model, 0, 0, &ref)) goto fail;
        cnn_model_set_fusion(ref, false);
    }
    if (ref && randomize_vectors(m, ref)) goto fail;
    if (e->gpu && cnn_model_to(m, e->dev)) goto fail;
    if (!(lab = malloc((size_t)B * sizeof *lab))) goto fail;
    for (int i = 0; i < B; i++) lab[i] = (int64_t)i * 7919 % info.num_classes; /* as torch's */
    if (cnn_tensor_uniform(CNN_SHAPE(B, C, S, S), -1, 1, CNN_CPU, &xc) ||
        cnn_tensor_to(xc, e->dev, &x) || cnn_tensor_from_i64(CNN_SHAPE(B), lab, e->dev, &labels))
        goto fail;
    char shape[64];
    snprintf(shape, sizeof shape, "%d,%d,%d,%d", B, C, S, S);
    /* The check: this backend (fused unless --no-fusion) against the CPU library running every
     * layer alone (none on the CPU with --no-fusion: the layers are the reference themselves),
     * on a few images (the CPU reference of ResNet-50 at batch 256 would be ~2 TFLOP): the
     * training step's logits and every parameter gradient, and the evaluation logits. */
    const char *check_train = "n/a", *check_eval = "n/a";
    double err_train = 0, err_eval = 0;
    if (ref) {
        if (check_model(m, ref, e, B < 8 ? B : 8, C, S, info.num_classes, &err_train, &err_eval,
                        &check_train, &check_eval))
            goto fail;
        cnn_model_destroy(&ref); /* out of the memory figures below */
        bool update_ok = true;
        if (check_update(m, e, B < 8 ? B : 8, C, S, info.num_classes, &err_train, &update_ok))
            goto fail;
        if (!update_ok) check_train = "mismatch";
    }
    if (make_sgd(m, &opt)) goto fail;
    const double fwd_flops = 2.0 * (double)sum.total_macs * B;
    bench_stats tt, ti;
    model_job j = {m, opt, x, labels, true, NULL, NULL};
    if (e->gpu) cnn_cuda_reset_peak_memory(e->dev.index);
    else { /* the peak-rate measurement's and the check's buffers out of the figure */
        cnn_cpu_empty_cache();
        bench_reset_peak_rss();
    }
    bench_print_row(e, NULL);
    if (time_pass(o, e, &j, &check_train, &err_train, &tt)) goto fail;
    double mem = bench_peak_rss_mb();
    if (e->gpu) {
        cnn_cuda_memory_stats ms;
        mem =
            cnn_cuda_get_memory_stats(e->dev.index, &ms) ? 0 : ms.peak_allocated_bytes / 1048576.0;
    }
    /* Training FLOPs: forward + backward-data + backward-filter, about 3x the forward. */
    model_row(e, l, o->model, shape, "train", &tt, 3 * fwd_flops, B, mem, check_train, err_train);
    j.train = false;
    if (time_pass(o, e, &j, &check_eval, &err_eval, &ti)) goto fail;
    model_row(e, l, o->model, shape, "infer", &ti, fwd_flops, B, 0, check_eval, err_eval);
    printf("peak %s memory during training: %.1f MiB%s\n", e->gpu ? "device" : "host", mem,
           e->gpu ? " (caching allocator, allocated bytes)" : " (process peak RSS while training)");
    rc = strcmp(check_train, "mismatch") && strcmp(check_eval, "mismatch") ? 0 : 1;
    if (o->layers) rc |= bench_time_layers(o, e, l, m, &sum, tt.median);
    goto done;
fail:
    if (!tool_stop) bench_error("model %s: %s\n", o->model, cnn_last_error());
done:
    cnn_tensor_free(&x);
    cnn_tensor_free(&xc);
    cnn_tensor_free(&labels);
    cnn_optim_destroy(&opt);
    cnn_model_summary_free(&sum);
    cnn_model_destroy(&m);
    cnn_model_destroy(&ref);
    free(lab);
    cnn_tape_reset();
    return rc;
}
