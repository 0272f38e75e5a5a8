/* test_torch_parity.c — our ops, optimizers, schedules, gradient clipping and float-format
 * conversions against real PyTorch (the zoo models: test_torch_zoo.c):
 * scripts/torch_crosscheck.py writes reference data into a fresh /tmp folder, these tests load
 * it, compare within `abs + rel * |ref|` and remove the folder (tests/torch_xref.c). Skipped
 * without a python that imports torch and torchvision ($CNN_PYTHON, /usr/bin/python3,
 * python3). */
#include "torch_xref.h"

/* ---- ops -------------------------------------------------------------------------------- */
/* One case "<c>" of a check: its leaves {x, w, b} (NULL where it has none) and parameters p
 * ("<c>p") and fp ("<c>fp"). */
typedef struct op_case {
    const xref *r;
    const char *c;
    cnn_tensor *in[3];
    double p[16], fp[16];
} op_case;
typedef cnn_status (*op_fn)(const op_case *k, cnn_tensor **y);

/* Every case "<prefix><i>.": y against torch's (forward tolerance), then the gradients of its
 * inputs for torch's upstream gradient "<c>dy" (backward tolerance). */
static void run_cases(const char *check, const char *prefix, int np, int nfp, op_fn fn,
                      double fabs_, double frel, double babs, double brel)
{
    xref r;
    if (!xref_run(&r, check)) goto done;
    for (int i = 0; ref_get(&r, "%s%d.x", prefix, i); i++) {
        char c[16];
        cnn_tensor *y = NULL;
        op_case k = {&r, c, {NULL}, {0}, {0}};
        snprintf(c, sizeof c, "%s%d.", prefix, i);
        if ((np && !ref_values(ref_get(&r, "%sp", c), k.p, np)) ||
            (nfp && !ref_values(ref_get(&r, "%sfp", c), k.fp, nfp))) {
            cnn_test_fail(__FILE__, __LINE__, "%s %s: parameters p/fp missing", check, c);
            break;
        }
        k.in[0] = leaf_of(ref_get(&r, "%sx", c));
        k.in[1] = leaf_of(ref_get(&r, "%sw", c));
        k.in[2] = leaf_of(ref_get(&r, "%sb", c));
        if (fn(&k, &y) != CNN_OK)
            cnn_test_fail(__FILE__, __LINE__, "%s %s: %s", check, c, cnn_last_error());
        else if (CLOSE(y, ref_get(&r, "%sy", c), fabs_, frel, "%s %sy", check, c)) {
            cnn_tensor *dy = ref_get(&r, "%sdy", c);
            if (!dy || cnn_backward_with_grad(y, dy) != CNN_OK)
                cnn_test_fail(__FILE__, __LINE__, "%s %s backward: %s", check, c,
                              dy ? cnn_last_error() : "dy missing");
            for (int j = 0; dy && j < 3; j++) /* gradients of x, w, b: "<c>dx" ... */
                if (k.in[j])
                    CLOSE(cnn_tensor_grad(k.in[j]), ref_get(&r, "%sd%c", c, "xwb"[j]), babs, brel,
                          "%s %sd%c", check, c, "xwb"[j]);
        }
        cnn_tensor_free(&y);
        for (int j = 0; j < 3; j++) cnn_tensor_free(&k.in[j]);
    }
done:
    xref_done(&r);
}

/* p = [stride h w, padding h w, dilation h w, groups, bias]. */
static cnn_status op_conv(const op_case *k, cnn_tensor **y)
{
    const double *p = k->p;
    cnn_conv2d_params cp = {{(int)p[0], (int)p[1]}, {(int)p[2], (int)p[3]},
                            {(int)p[4], (int)p[5]}, (int)p[6]};
    return cnn_conv2d(k->in[0], k->in[1], k->in[2], &cp, y);
}
TEST(torch_conv2d) { run_cases("conv2d", "c", 8, 0, op_conv, 1e-4, 1e-4, 1e-4, 1e-4); }

static cnn_status op_linear(const op_case *k, cnn_tensor **y)
{
    return cnn_linear(k->in[0], k->in[1], k->in[2], y);
}
TEST(torch_linear) { run_cases("linear", "c", 0, 0, op_linear, 1e-5, 1e-5, 1e-5, 1e-5); }

/* p = [kind (0 max, 1 avg, 2 adaptive), kernel h w, stride h w, padding h w, dilation h w,
 * ceil_mode, count_include_pad, out h w]. */
static cnn_status op_pool(const op_case *k, cnn_tensor **y)
{
    const double *p = k->p;
    cnn_pool2d_params pp = {{(int)p[1], (int)p[2]}, {(int)p[3], (int)p[4]},
                            {(int)p[5], (int)p[6]}, {(int)p[7], (int)p[8]}, p[9] != 0, p[10] == 0};
    return p[0] == 0 ? cnn_max_pool2d(k->in[0], &pp, y)
         : p[0] == 1 ? cnn_avg_pool2d(k->in[0], &pp, y)
                     : cnn_adaptive_avg_pool2d(k->in[0], (int)p[11], (int)p[12], y);
}
TEST(torch_pool) { run_cases("pool", "c", 13, 0, op_pool, 1e-6, 1e-5, 1e-6, 1e-5); }

/* p = [size], fp = [alpha, beta, k] (AlexNet's 5, 1e-4, 0.75, 2 first). */
static cnn_status op_lrn(const op_case *k, cnn_tensor **y)
{
    return cnn_lrn(k->in[0], (int)k->p[0], (float)k->fp[0], (float)k->fp[1], (float)k->fp[2], y);
}
TEST(torch_lrn) { run_cases("lrn", "c", 1, 3, op_lrn, 1e-5, 1e-5, 1e-5, 1e-4); }

/* p = [kind: 0 relu, 1 tanh, 2 sigmoid, 3 leaky_relu, 4 elu, 5 dropout in eval], fp = [param]. */
static cnn_status op_act(const op_case *k, cnn_tensor **y)
{
    float a = (float)k->fp[0];
    switch ((int)k->p[0]) {
    case 0: return cnn_relu(k->in[0], y);
    case 1: return cnn_tanh(k->in[0], y);
    case 2: return cnn_sigmoid(k->in[0], y);
    case 3: return cnn_leaky_relu(k->in[0], a, y);
    case 4: return cnn_elu(k->in[0], a, y);
    default: return cnn_dropout(k->in[0], a, false, y);
    }
}
TEST(torch_activations) { run_cases("activations", "c", 1, 1, op_act, 1e-6, 1e-5, 1e-6, 1e-5); }

/* p = [log, dim]. */
static cnn_status op_softmax(const op_case *k, cnn_tensor **y)
{
    int dim = (int)k->p[1];
    return k->p[0] != 0 ? cnn_log_softmax(k->in[0], dim, y) : cnn_softmax(k->in[0], dim, y);
}
TEST(torch_softmax) { run_cases("softmax", "s", 2, 0, op_softmax, 1e-6, 1e-5, 1e-6, 1e-5); }

/* Cross-entropy of logits x against labels "<c>lab", fp = [label_smoothing]. */
static cnn_status op_ce(const op_case *k, cnn_tensor **y)
{
    return cnn_cross_entropy(k->in[0], ref_get(k->r, "%slab", k->c), (float)k->fp[0], y);
}
TEST(torch_cross_entropy) { run_cases("softmax", "ce", 0, 1, op_ce, 1e-6, 1e-5, 1e-7, 1e-5); }

/* p = [training, affine, calls], fp = [momentum, eps]: `calls` forwards from running statistics
 * rm0 / rv0 (updated each time, with the unbiased variance; compared with torch's rm / rv),
 * the last one recorded. */
static cnn_status op_bn(const op_case *k, cnn_tensor **y)
{
    cnn_tensor *rm = NULL, *rv = NULL;
    cnn_status s = cnn_tensor_clone(ref_get(k->r, "%srm0", k->c), &rm);
    if (s == CNN_OK) s = cnn_tensor_clone(ref_get(k->r, "%srv0", k->c), &rv);
    for (int i = 0; s == CNN_OK && i < (int)k->p[2]; i++) {
        bool prev = cnn_set_grad_enabled(i == (int)k->p[2] - 1);
        cnn_tensor_free(y);
        s = cnn_batch_norm(k->in[0], rm, rv, k->in[1], k->in[2], k->p[0] != 0, (float)k->fp[0],
                           (float)k->fp[1], y);
        cnn_set_grad_enabled(prev);
    }
    if (s == CNN_OK) {
        CLOSE(rm, ref_get(k->r, "%srm", k->c), 1e-6, 1e-5, "batch_norm %srunning_mean", k->c);
        CLOSE(rv, ref_get(k->r, "%srv", k->c), 1e-6, 1e-5, "batch_norm %srunning_var", k->c);
    }
    cnn_tensor_free(&rm);
    cnn_tensor_free(&rv);
    return s;
}
TEST(torch_batch_norm) { run_cases("batch_norm", "c", 3, 2, op_bn, 1e-5, 1e-5, 1e-4, 1e-4); }

/* ---- optimizers, schedules, clipping ----------------------------------------------------- */
/* Gives a leaf exactly the gradient g (through y = 1 * p, dL/dy = g). */
static cnn_status set_grad(cnn_tensor *p, const cnn_tensor *g)
{
    cnn_tensor *y = NULL;
    cnn_status s = g ? cnn_scale(p, 1.0f, &y) : CNN_ERR_NOT_FOUND;
    if (s == CNN_OK) s = cnn_backward_with_grad(y, g);
    cnn_tensor_free(&y);
    return s;
}

/* fp = [kind, lr, momentum, dampening, nesterov, weight_decay, beta1, beta2, eps]; 5 steps on
 * two parameters fed torch's gradients, compared after every step. */
TEST(torch_optimizers)
{
    xref r;
    if (!xref_run(&r, "optim")) goto done;
    for (int i = 0; ref_get(&r, "c%d.fp", i); i++) {
        double fp[9] = {0};
        cnn_optim *opt = NULL;
        cnn_tensor *p[2] = {leaf_of(ref_get(&r, "c%d.0.init", i)),
                            leaf_of(ref_get(&r, "c%d.1.init", i))};
        bool have = ref_values(ref_get(&r, "c%d.fp", i), fp, 9);
        cnn_optim_config cfg = {(cnn_optim_kind)(int)fp[0], (float)fp[1], (float)fp[2],
                                (float)fp[3], fp[4] != 0, (float)fp[5], (float)fp[6],
                                (float)fp[7], (float)fp[8]};
        cnn_status s = have ? cnn_optim_create(&cfg, &opt) : CNN_ERR_NOT_FOUND;
        if (s == CNN_OK) s = cnn_optim_add_param(opt, "a", p[0], true);
        if (s == CNN_OK) s = cnn_optim_add_param(opt, "b", p[1], true);
        for (int k = 0; s == CNN_OK && k < 5; k++) {
            for (int j = 0; j < 2 && s == CNN_OK; j++)
                s = set_grad(p[j], ref_get(&r, "c%d.g%d.%d", i, k, j));
            if (s == CNN_OK) s = cnn_optim_step(opt);
            cnn_optim_zero_grad(opt);
            for (int j = 0; j < 2 && s == CNN_OK; j++)
                CLOSE(p[j], ref_get(&r, "c%d.%d.step%d", i, j, k), 1e-6, 1e-5,
                      "optim c%d (kind %d) param %d after step %d", i, cfg.kind, j, k + 1);
        }
        if (s != CNN_OK) cnn_test_fail(__FILE__, __LINE__, "optim c%d: %s", i, cnn_last_error());
        cnn_optim_destroy(&opt);
        cnn_tensor_free(&p[0]);
        cnn_tensor_free(&p[1]);
    }
done:
    xref_done(&r);
}

/* Compares lrs[0..n) with the reference list `name`. */
static void check_lrs(const xref *r, const char *name, const float *lrs, int n)
{
    cnn_tensor *ours = NULL;
    if (cnn_tensor_from_data(CNN_SHAPE(n), lrs, CNN_CPU, &ours) != CNN_OK)
        cnn_test_fail(__FILE__, __LINE__, "%s: %s", name, cnn_last_error());
    else
        CLOSE(ours, ref_get(r, "%s", name), 1e-8, 1e-5, "lr schedule %s", name);
    cnn_tensor_free(&ours);
}

/* Base lr 0.1: StepLR(3, 0.5), MultiStepLR([5, 2, 6], 0.3), CosineAnnealingLR(10, 0.01), warmup
 * 4 + cosine to 12 (torch: SequentialLR(LinearLR(1/4, 1, 3), CosineAnnealingLR(8, 1e-3), [4])),
 * ReduceLROnPlateau(min, 0.5, patience 2, threshold 1e-2 rel, cooldown 1, min_lr 0.02). */
TEST(torch_lr_schedules)
{
    xref r;
    float lrs[16];
    double metric[16];
    const int64_t ms[3] = {5, 2, 6};
    cnn_status s = CNN_OK;
    cnn_plateau *pl = NULL;
    if (!xref_run(&r, "sched")) goto done;
    for (int t = 0; t < 12; t++) s |= cnn_sched_step_lr(0.1f, 3, 0.5f, t, &lrs[t]);
    check_lrs(&r, "step", lrs, 12);
    for (int t = 0; t < 10; t++) s |= cnn_sched_multistep_lr(0.1f, ms, 3, 0.3f, t, &lrs[t]);
    check_lrs(&r, "multistep", lrs, 10);
    for (int t = 0; t < 10; t++) s |= cnn_sched_cosine_lr(0.1f, 0, 10, 0.01f, t, &lrs[t]);
    check_lrs(&r, "cosine", lrs, 10);
    for (int t = 0; t < 12; t++) s |= cnn_sched_cosine_lr(0.1f, 4, 12, 0.001f, t, &lrs[t]);
    check_lrs(&r, "warmcos", lrs, 12);
    /* Past `total` ours stays at eta_min (documented), where torch's closed form rises again. */
    for (int t = 12; t < 16; t++) {
        s |= cnn_sched_cosine_lr(0.1f, 4, 12, 0.001f, t, &lrs[0]);
        CHECK_NEAR(lrs[0], 0.001f, 1e-9);
    }
    CHECK(s == CNN_OK);
    cnn_tensor *m = ref_get(&r, "plateau.metric");
    int n = m ? (int)cnn_tensor_numel(m) : 0;
    /* mode, factor, patience, threshold, threshold_abs, cooldown, min_lr, eps */
    cnn_plateau_config pc = {CNN_PLATEAU_MIN, 0.5f, 2, 1e-2f, false, 1, 0.02f, 1e-8f};
    if (n < 1 || n > 16 || !ref_values(m, metric, n) ||
        cnn_sched_plateau_create(&pc, 0.1f, &pl) != CNN_OK) {
        cnn_test_fail(__FILE__, __LINE__, "plateau: metrics missing or %s", cnn_last_error());
        goto done;
    }
    for (int i = 0; i < n; i++)
        if (cnn_sched_step_metric(pl, (float)metric[i], NULL, &lrs[i]) != CNN_OK)
            cnn_test_fail(__FILE__, __LINE__, "plateau: %s", cnn_last_error());
    check_lrs(&r, "plateau", lrs, n);
done:
    cnn_sched_plateau_destroy(&pl);
    xref_done(&r);
}

/* Three gradients, max_norm from c<i>.max_norm: the total norm and the clipped gradients. */
TEST(torch_clip_grad_norm)
{
    xref r;
    if (!xref_run(&r, "clip")) goto done;
    for (int i = 0; ref_get(&r, "c%d.total", i); i++) {
        cnn_tensor *p[3] = {0}, *tot = NULL;
        double max_norm = 0.0;
        float total = 0.0f;
        cnn_status s = ref_values(ref_get(&r, "c%d.max_norm", i), &max_norm, 1)
                           ? CNN_OK : CNN_ERR_NOT_FOUND;
        for (int j = 0; j < 3 && s == CNN_OK; j++) {
            p[j] = leaf_of(ref_get(&r, "c%d.g%d", i, j));
            s = p[j] ? set_grad(p[j], ref_get(&r, "c%d.g%d", i, j)) : CNN_ERR_NOT_FOUND;
        }
        if (s == CNN_OK) s = cnn_clip_grad_norm(p, 3, (float)max_norm, &total);
        if (s == CNN_OK) s = cnn_tensor_from_data(CNN_SHAPE(1), &total, CNN_CPU, &tot);
        if (s != CNN_OK) cnn_test_fail(__FILE__, __LINE__, "clip c%d: %s", i, cnn_last_error());
        else CLOSE(tot, ref_get(&r, "c%d.total", i), 1e-6, 1e-5, "clip c%d total norm", i);
        for (int j = 0; j < 3 && s == CNN_OK; j++)
            CLOSE(cnn_tensor_grad(p[j]), ref_get(&r, "c%d.clipped%d", i, j), 1e-7, 1e-5,
                  "clip c%d clipped grad %d", i, j);
        cnn_tensor_free(&tot);
        for (int j = 0; j < 3; j++) cnn_tensor_free(&p[j]);
    }
done:
    xref_done(&r);
}

/* ---- half-precision formats ------------------------------------------------------------------ */
/* Whether the n codes (16-bit, or 32-bit when wide) of a and b are equal, NaN matching any NaN
 * (torch keeps a NaN's payload or not depending on its code path); names the first that is
 * not, and how many. */
static bool same_codes(const cnn_tensor *a, const cnn_tensor *b, bool wide, uint32_t nan_above,
                       const char *what)
{
    const int64_t n = cnn_tensor_numel(a);
    uint32_t *x = calloc((size_t)n + 1, 4), *y = calloc((size_t)n + 1, 4);
    bool ok = x && y && n == cnn_tensor_numel(b) && cnn_tensor_read(a, x, (size_t)n) == CNN_OK &&
              cnn_tensor_read(b, y, (size_t)n) == CNN_OK;
    int64_t bad = 0, first = -1;
    for (int64_t i = 0; ok && i < n; i++) {
        uint32_t u = wide ? x[i] : ((uint16_t *)x)[i], v = wide ? y[i] : ((uint16_t *)y)[i];
        uint32_t mag = wide ? 0x7fffffffu : 0x7fffu;
        bool un = (u & mag) > nan_above, vn = (v & mag) > nan_above;
        if (un || vn ? !(un && vn) : u != v) {
            if (first < 0) first = i;
            bad++;
        }
    }
    if (!ok || bad)
        cnn_test_fail(__FILE__, __LINE__, "%s: %s%lld of %lld differ (first at %lld)", what,
                      ok ? "" : "could not read; ", (long long)bad, (long long)n, (long long)first);
    free(x);
    free(y);
    return ok && !bad;
}

/* x.half(), x.bfloat16() and h.float() of torch against ours: F32 values at every scale, the
 * formats' edges, ties and specials, random bit patterns, and every F16 and BF16 code; and F64
 * values (at every scale, and beside F32 values) to F32, F16 and BF16. */
TEST(torch_half_precision_conversions)
{
    xref r;
    cnn_tensor *t = NULL;
    if (!xref_run(&r, "dtype")) goto done;
    static const struct { const char *src, *ref; cnn_dtype to; bool wide; uint32_t nan; } c[] = {
        {"x", "x16", CNN_F16, false, 0x7c00u},     {"x", "xb16", CNN_BF16, false, 0x7f80u},
        {"h16", "h16f", CNN_F32, true, 0x7f800000u}, {"hb16", "hb16f", CNN_F32, true, 0x7f800000u},
        {"d", "d32", CNN_F32, true, 0x7f800000u},    {"d", "d16", CNN_F16, false, 0x7c00u},
        {"d", "db16", CNN_BF16, false, 0x7f80u}};
    for (size_t i = 0; i < sizeof c / sizeof *c; i++) {
        const cnn_tensor *src = ref_get(&r, "%s", c[i].src), *ref = ref_get(&r, "%s", c[i].ref);
        if (!src || !ref || cnn_tensor_dtype(ref) != c[i].to ||
            cnn_tensor_to_dtype(src, c[i].to, &t) != CNN_OK) {
            cnn_test_fail(__FILE__, __LINE__, "%s -> %s: %s", c[i].src, c[i].ref,
                          cnn_last_error());
        } else {
            same_codes(t, ref, c[i].wide, c[i].nan, c[i].ref);
        }
        cnn_tensor_free(&t);
    }
done:
    xref_done(&r);
}
