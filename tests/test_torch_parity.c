/* test_torch_parity.c — our ops, optimizers, schedules and zoo models against real PyTorch /
 * torchvision: scripts/torch_crosscheck.py writes reference data into a fresh /tmp folder, these
 * tests load it, compare within `abs + rel * |ref|` and remove the folder. Skipped without a
 * python that imports torch and torchvision ($CNN_PYTHON, /usr/bin/python3, python3). */
#include "test.h"

#include <stdarg.h>
#include <unistd.h>

/* The python that imports torch + torchvision, probed once; NULL when there is none. */
static const char *torch_python(void)
{
    static char found[512];
    static int probed;
    const char *env = getenv("CNN_PYTHON");
    const char *cands[] = {env && env[0] ? env : NULL, "/usr/bin/python3", "python3"};
    for (size_t i = 0; !probed && i < sizeof cands / sizeof cands[0] && !found[0]; i++) {
        char cmd[700], out[64];
        snprintf(cmd, sizeof cmd, "'%s' -c 'import torch, torchvision' >/dev/null 2>&1",
                 cands[i] ? cands[i] : "");
        if (cands[i] && cnn_test_capture(cmd, out, sizeof out) == 0)
            snprintf(found, sizeof found, "%s", cands[i]);
    }
    probed = 1;
    return found[0] ? found : NULL;
}

/* scripts/NAME under $CNN_SOURCE_DIR, else beside this source file's folder (__FILE__ is
 * "tests/test_torch_parity.c" from the repository root, where `make test` runs). */
static bool script_path(const char *name, char *buf, size_t n)
{
    const char *src = getenv("CNN_SOURCE_DIR"), *slash = strrchr(__FILE__, '/');
    if (src && src[0])
        snprintf(buf, n, "%s/scripts/%s", src, name);
    else
        snprintf(buf, n, "%.*s/../scripts/%s", (int)(slash ? slash - __FILE__ : 1),
                 slash ? __FILE__ : ".", name);
    return access(buf, R_OK) == 0;
}

typedef struct xref {
    char dir[64];  /* the check's temporary folder ("" before it exists) */
    cnn_dict *ref; /* its ref.safetensors */
} xref;

/* Makes the folder, or skips the test (no torch) / fails it; false then. */
static bool xref_open(xref *r)
{
    memset(r, 0, sizeof *r);
    if (!torch_python()) {
        cnn_test_skip("PyTorch not installed (set CNN_PYTHON to a python with torch)");
        return false;
    }
    snprintf(r->dir, sizeof r->dir, "/tmp/cnn_torch.XXXXXX");
    if (mkdtemp(r->dir)) return true;
    cnn_test_fail(__FILE__, __LINE__, "mkdtemp failed");
    return false;
}

/* Runs the script's `check` (arg may be NULL) into the folder, then loads its ref.safetensors. */
static bool xref_script(xref *r, const char *check, const char *arg)
{
    char script[512], cmd[1400], out[8192], path[128];
    if (!script_path("torch_crosscheck.py", script, sizeof script)) {
        cnn_test_fail(__FILE__, __LINE__, "%s not found (set CNN_SOURCE_DIR)", script);
        return false;
    }
    snprintf(cmd, sizeof cmd, "'%s' '%s' %s '%s' %s 2>&1", torch_python(), script, check, r->dir,
             arg ? arg : "");
    int rc = cnn_test_capture(cmd, out, sizeof out);
    if (rc != 0) {
        size_t len = strlen(out);
        cnn_test_fail(__FILE__, __LINE__, "%s exited with %d: ...%s", cmd, rc,
                      out + (len > 1500 ? len - 1500 : 0));
        return false;
    }
    snprintf(path, sizeof path, "%s/ref.safetensors", r->dir);
    if (cnn_safetensors_load(path, &r->ref) == CNN_OK) return true;
    cnn_test_fail(__FILE__, __LINE__, "loading %s: %s", path, cnn_last_error());
    return false;
}

static bool xref_run(xref *r, const char *check)
{
    return xref_open(r) && xref_script(r, check, NULL);
}

/* Drops the references and removes the folder. */
static void xref_done(xref *r)
{
    char cmd[128];
    cnn_dict_destroy(&r->ref);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", r->dir);
    if (r->dir[0] && system(cmd) != 0) printf("    note: could not remove %s\n", r->dir);
    r->dir[0] = 0;
}

/* The reference tensor named by the format (borrowed), NULL when absent. */
__attribute__((format(printf, 2, 3)))
static cnn_tensor *ref_get(const xref *r, const char *fmt, ...)
{
    char name[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    return cnn_dict_get(r->ref, name);
}

/* A new array of an F32 or I64 tensor's values as doubles (NULL on failure). */
static double *values(const cnn_tensor *t)
{
    int64_t n = cnn_tensor_numel(t);
    double *v = malloc(sizeof(double) * (size_t)(n ? n : 1));
    void *raw = malloc(8 * (size_t)(n ? n : 1));
    bool i64 = cnn_tensor_dtype(t) == CNN_I64, ok = v && raw;
    if (ok) ok = cnn_tensor_read(t, raw, (size_t)n) == CNN_OK;
    for (int64_t i = 0; ok && i < n; i++)
        v[i] = i64 ? (double)((int64_t *)raw)[i] : (double)((float *)raw)[i];
    free(raw);
    if (!ok) free(v);
    return ok ? v : NULL;
}

/* Exactly n values of a (reference) tensor into out; false when absent or of another size. */
static bool ref_values(const cnn_tensor *t, double *out, int n)
{
    double *v = t && cnn_tensor_numel(t) == n ? values(t) : NULL;
    if (v) memcpy(out, v, sizeof(double) * (size_t)n);
    free(v);
    return v != NULL;
}

/* Compares ours with torch's: same shape, every |ours - ref| <= abs + rel * |ref|. A failure
 * names the tensor (the format), the count off, the max error and where; CNN_TORCH_VERBOSE=1
 * prints every comparison's max error. */
#define CLOSE(ours, ref, abs, rel, ...) close_to(__LINE__, ours, ref, abs, rel, __VA_ARGS__)
__attribute__((format(printf, 6, 7)))
static bool close_to(int line, const cnn_tensor *ours, const cnn_tensor *ref, double abs,
                     double rel, const char *fmt, ...)
{
    char what[200], sa[64], sb[64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (!ours || !ref) {
        cnn_test_fail(__FILE__, line, "%s: %s tensor missing", what, ours ? "torch's" : "our");
        return false;
    }
    cnn_shape so = cnn_tensor_shape(ours), sr = cnn_tensor_shape(ref);
    if (so.ndim != sr.ndim || memcmp(so.d, sr.d, sizeof so.d) != 0) {
        cnn_test_fail(__FILE__, line, "%s: shape %s, torch's %s", what,
                      cnn_shape_str(so, sa, sizeof sa), cnn_shape_str(sr, sb, sizeof sb));
        return false;
    }
    int64_t n = cnn_tensor_numel(ref), bad = 0, worst = 0;
    double *a = values(ours), *b = values(ref), max_err = 0.0;
    if (!a || !b) {
        cnn_test_fail(__FILE__, line, "%s: could not read values: %s", what, cnn_last_error());
        bad = 1;
    }
    for (int64_t i = 0; a && b && i < n; i++) {
        double e = fabs(a[i] - b[i]);
        if (!(e <= abs + rel * fabs(b[i]))) bad++;
        if (!(e <= max_err)) max_err = e, worst = i;
    }
    if (a && b && bad)
        cnn_test_fail(__FILE__, line, "%s: %lld of %lld values off, max error %.3g at [%lld] "
                      "(ours %.9g, torch %.9g), tolerance %g + %g*|ref|", what, (long long)bad,
                      (long long)n, max_err, (long long)worst, a[worst], b[worst], abs, rel);
    else if (!bad && getenv("CNN_TORCH_VERBOSE"))
        printf("    %-52s max error %.3g\n", what, max_err);
    free(a);
    free(b);
    return bad == 0;
}

/* A new leaf copy of a reference tensor that requires grad (NULL ref: NULL). */
static cnn_tensor *leaf_of(const cnn_tensor *ref)
{
    cnn_tensor *t = NULL;
    if (ref && cnn_tensor_clone(ref, &t) == CNN_OK) cnn_tensor_set_requires_grad(t, true);
    return t;
}

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

/* ---- the zoo ----------------------------------------------------------------------------- */
#define ZOO_OK(expr)                                                                              \
    do { if ((expr) != CNN_OK) { cnn_test_fail(__FILE__, __LINE__, "%s: %s: %s", name, #expr,      \
                                               cnn_last_error()); goto done; } } while (0)

/* Tolerances abs + rel * |ref| for logits, loss and BN buffers, and for gradients (float32
 * sums in another order through up to 150 layers). `fast`: run by default; the others only
 * with CNN_TORCH_ALL=1 (VGG-16's files are over 500 MB; the deep ResNets take long). */
typedef struct zoo_tol { const char *name; double abs, rel, gabs, grel; bool fast; } zoo_tol;
static const zoo_tol ZOO_TOL[] = {
    {"alexnet", 1e-5, 1e-4, 1e-6, 1e-3, true},   {"resnet18", 1e-4, 1e-4, 1e-4, 1e-3, true},
    {"vgg16", 1e-5, 1e-4, 1e-5, 1e-3, false},    {"vgg16_bn", 1e-4, 1e-4, 2e-4, 1e-3, false},
    {"resnet34", 1e-4, 1e-4, 1e-4, 1e-3, false}, {"resnet50", 1e-4, 1e-4, 1e-4, 1e-3, false},
    {"resnet101", 1e-4, 1e-4, 1e-4, 1e-3, false}, {"resnet152", 1e-4, 1e-4, 1e-4, 1e-3, false}};

/* Our model at 10 classes, dropout 0 (so training-mode forwards are deterministic). */
static cnn_status zoo_model(const char *name, bool skip_init, cnn_model **m)
{
    cnn_model_options o = cnn_model_default_options();
    o.num_classes = 10, o.dropout = 0.0f, o.skip_init = skip_init;
    return cnn_model_create_ex(name, &o, m);
}

/* CLOSE against reference `key`, widened by 4x "err.<key>" where the script wrote one: how far
 * torch's own float32 run is from float64 references (deep models). */
static void zoo_close(const xref *r, const char *name, const char *key, const cnn_tensor *ours,
                      double abs, double rel)
{
    double err = 0.0; /* stays 0 where there is no err.<key> */
    ref_values(ref_get(r, "err.%s", key), &err, 1);
    if (err > 0.0)
        close_to(__LINE__, ours, ref_get(r, "%s", key), abs + 4.0 * err, rel,
                 "%s %s (float64 reference; torch's float32 off by %.2g)", name, key, err);
    else
        close_to(__LINE__, ours, ref_get(r, "%s", key), abs, rel, "%s %s", name, key);
}

/* Ours -> torchvision, first half: our initialisation, BN running statistics moved by one
 * training-mode forward, saved with cnn_model_save with the input; *logits gets our eval logits
 * for the script's torchvision (strict=True) to reproduce as "rev_logits". */
static bool zoo_save_ours(const xref *r, const char *name, cnn_tensor **logits)
{
    cnn_model *m = NULL;
    cnn_tensor *x = NULL;
    cnn_dict *in = NULL;
    char path[128];
    bool ok = false, prev = cnn_set_grad_enabled(false);
    cnn_manual_seed(7);
    ZOO_OK(zoo_model(name, false, &m));
    ZOO_OK(cnn_tensor_normal(CNN_SHAPE(2, 3, 64, 64), 0.0f, 1.0f, CNN_CPU, &x)); /* AlexNet: 63+ */
    ZOO_OK(cnn_model_forward(m, x, true, logits));
    cnn_tensor_free(logits);
    ZOO_OK(cnn_model_forward(m, x, false, logits));
    snprintf(path, sizeof path, "%s/ours.safetensors", r->dir);
    ZOO_OK(cnn_model_save(m, path));
    ZOO_OK(cnn_dict_create(&in));
    ZOO_OK(cnn_dict_set(in, "x", x));
    snprintf(path, sizeof path, "%s/input.safetensors", r->dir);
    ZOO_OK(cnn_safetensors_save(path, in));
    ok = true;
done:
    cnn_set_grad_enabled(prev);
    cnn_dict_destroy(&in);
    cnn_tensor_free(&x);
    cnn_model_destroy(&m);
    return ok;
}

/* torchvision's weights -> ours (strict): eval logits, training-mode logits, the CE loss, the
 * BN buffers after that step ("after.<key>", num_batches_tracked included) and the gradients
 * of the parameters torch wrote as "grad.<key>", of that loss or (where the script says
 * grad_in_eval: the deeper BN nets, see GRAD_IN_EVAL there) of the eval-mode loss after it. */
static void zoo_from_torch(const xref *r, const char *name, const zoo_tol *t)
{
    cnn_model *m = NULL;
    cnn_tensor *logits = NULL, *loss = NULL, *x = ref_get(r, "x"), *y = ref_get(r, "y");
    char path[128];
    double in_eval = 0.0;
    snprintf(path, sizeof path, "%s/weights.safetensors", r->dir);
    ZOO_OK(zoo_model(name, true, &m));
    ZOO_OK(cnn_model_load(m, path, true, NULL));
    bool prev = cnn_set_grad_enabled(false);
    cnn_status s = cnn_model_forward(m, x, false, &logits);
    cnn_set_grad_enabled(prev);
    ZOO_OK(s);
    zoo_close(r, name, "logits_eval", logits, t->abs, t->rel);
    cnn_tensor_free(&logits);
    ZOO_OK(cnn_model_forward(m, x, true, &logits));
    zoo_close(r, name, "logits_train", logits, t->abs, t->rel);
    ZOO_OK(cnn_cross_entropy(logits, y, 0.0f, &loss));
    zoo_close(r, name, "loss", loss, t->abs, t->rel);
    if (ref_values(ref_get(r, "grad_in_eval"), &in_eval, 1) && in_eval != 0.0) {
        cnn_tensor_free(&loss);
        cnn_tensor_free(&logits);
        cnn_tape_reset();
        ZOO_OK(cnn_model_forward(m, x, false, &logits));
        ZOO_OK(cnn_cross_entropy(logits, y, 0.0f, &loss));
    }
    ZOO_OK(cnn_backward(loss));
    cnn_dict *state = cnn_model_state(m);
    for (int i = 0; i < cnn_dict_size(r->ref); i++) {
        const char *k = cnn_dict_name(r->ref, i);
        bool g = strncmp(k, "grad.", 5) == 0;
        if (!g && strncmp(k, "after.", 6) != 0) continue;
        cnn_tensor *ours = cnn_dict_get(state, k + (g ? 5 : 6));
        zoo_close(r, name, k, ours && g ? cnn_tensor_grad(ours) : ours, g ? t->gabs : t->abs,
                  g ? t->grel : t->rel);
    }
done:
    cnn_tensor_free(&loss);
    cnn_tensor_free(&logits);
    cnn_model_destroy(&m);
}

/* Both directions for one model, with one run of the script. */
static void zoo_check(const char *name)
{
    const zoo_tol *t = NULL;
    const char *all = getenv("CNN_TORCH_ALL");
    for (size_t i = 0; i < sizeof ZOO_TOL / sizeof ZOO_TOL[0]; i++)
        if (strcmp(ZOO_TOL[i].name, name) == 0) t = &ZOO_TOL[i];
    REQUIRE(t);
    if (!t->fast && !(all && strcmp(all, "1") == 0)) {
        cnn_test_skip("a long check: set CNN_TORCH_ALL=1");
        return;
    }
    xref r;
    cnn_tensor *ours = NULL;
    if (xref_open(&r) && zoo_save_ours(&r, name, &ours) && xref_script(&r, "zoo", name)) {
        CLOSE(ours, ref_get(&r, "rev_logits"), t->abs, t->rel, "%s ours -> torchvision logits",
              name);
        zoo_from_torch(&r, name, t);
    }
    cnn_tensor_free(&ours);
    xref_done(&r);
}

#define ZOO_TEST(model) TEST(torch_zoo_##model) { zoo_check(#model); }
ZOO_TEST(alexnet) ZOO_TEST(resnet18) ZOO_TEST(vgg16) ZOO_TEST(vgg16_bn) ZOO_TEST(resnet34)
ZOO_TEST(resnet50) ZOO_TEST(resnet101) ZOO_TEST(resnet152)

/* scripts/torchvision_weights.py writes torchvision's own state_dict (random weights here: no
 * network): it loads strictly into the same model, and for fine-tuning into one with other
 * classes and gray input. */
TEST(torch_weights_script_feeds_fine_tuning)
{
    xref r;
    char script[512], cmd[1400], out[4096], path[128];
    if (!xref_open(&r)) return;
    if (!script_path("torchvision_weights.py", script, sizeof script)) {
        cnn_test_fail(__FILE__, __LINE__, "%s not found (set CNN_SOURCE_DIR)", script);
        xref_done(&r);
        return;
    }
    snprintf(path, sizeof path, "%s/resnet18.safetensors", r.dir);
    snprintf(cmd, sizeof cmd, "'%s' '%s' resnet18 '%s' --weights none 2>&1", torch_python(),
             script, path);
    int rc = cnn_test_capture(cmd, out, sizeof out);
    if (rc != 0) cnn_test_fail(__FILE__, __LINE__, "%s exited with %d: %s", cmd, rc, out);
    CHECK(strstr(out, "122 tensors") != NULL);
    cnn_model *same = NULL, *gray10 = NULL;
    CHECK_OK(cnn_model_create("resnet18", 1000, 3, &same));
    CHECK_OK(cnn_model_create("resnet18", 10, 1, &gray10));
    if (same && gray10) {
        CHECK_OK(cnn_model_load(same, path, true, NULL));
        cnn_pretrained_report pr;
        CHECK_OK(cnn_model_load_pretrained(gray10, path, &pr));
        CHECK(pr.n_fresh == 2 && pr.file_classes == 1000 && !strcmp(pr.adapted, "conv1.weight"));
        CHECK(pr.n_loaded == cnn_dict_size(cnn_model_state(gray10)) - 2);
    }
    cnn_model_destroy(&same);
    cnn_model_destroy(&gray10);
    xref_done(&r);
}
