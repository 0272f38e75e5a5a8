/* torch_xref.c — see torch_xref.h. */
#include "torch_xref.h"

#include <stdarg.h>
#include <unistd.h>

const char *torch_python(void)
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

bool script_path(const char *name, char *buf, size_t n)
{
    const char *src = getenv("CNN_SOURCE_DIR"), *slash = strrchr(__FILE__, '/');
    if (src && src[0])
        snprintf(buf, n, "%s/scripts/%s", src, name);
    else
        snprintf(buf, n, "%.*s/../scripts/%s", (int)(slash ? slash - __FILE__ : 1),
                 slash ? __FILE__ : ".", name);
    return access(buf, R_OK) == 0;
}

bool xref_open(xref *r)
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

bool xref_script(xref *r, const char *check, const char *arg)
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

bool xref_run(xref *r, const char *check)
{
    return xref_open(r) && xref_script(r, check, NULL);
}

void xref_done(xref *r)
{
    char cmd[128];
    cnn_dict_destroy(&r->ref);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", r->dir);
    if (r->dir[0] && system(cmd) != 0) printf("    note: could not remove %s\n", r->dir);
    r->dir[0] = 0;
}

cnn_tensor *ref_get(const xref *r, const char *fmt, ...)
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

bool ref_values(const cnn_tensor *t, double *out, int n)
{
    double *v = t && cnn_tensor_numel(t) == n ? values(t) : NULL;
    if (v) memcpy(out, v, sizeof(double) * (size_t)n);
    free(v);
    return v != NULL;
}

bool close_to(const char *file, int line, const cnn_tensor *ours, const cnn_tensor *ref,
              double abs, double rel, const char *fmt, ...)
{
    char what[200], sa[64], sb[64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (!ours || !ref) {
        cnn_test_fail(file, line, "%s: %s tensor missing", what, ours ? "torch's" : "our");
        return false;
    }
    cnn_shape so = cnn_tensor_shape(ours), sr = cnn_tensor_shape(ref);
    if (so.ndim != sr.ndim || memcmp(so.d, sr.d, sizeof so.d) != 0) {
        cnn_test_fail(file, line, "%s: shape %s, torch's %s", what,
                      cnn_shape_str(so, sa, sizeof sa), cnn_shape_str(sr, sb, sizeof sb));
        return false;
    }
    int64_t n = cnn_tensor_numel(ref), bad = 0, worst = 0;
    double *a = values(ours), *b = values(ref), max_err = 0.0;
    if (!a || !b) {
        cnn_test_fail(file, line, "%s: could not read values: %s", what, cnn_last_error());
        bad = 1;
    }
    for (int64_t i = 0; a && b && i < n; i++) {
        double e = fabs(a[i] - b[i]);
        if (!(e <= abs + rel * fabs(b[i]))) bad++;
        if (!(e <= max_err)) max_err = e, worst = i;
    }
    if (a && b && bad)
        cnn_test_fail(file, line, "%s: %lld of %lld values off, max error %.3g at [%lld] "
                      "(ours %.9g, torch %.9g), tolerance %g + %g*|ref|", what, (long long)bad,
                      (long long)n, max_err, (long long)worst, a[worst], b[worst], abs, rel);
    else if (!bad && getenv("CNN_TORCH_VERBOSE"))
        printf("    %-52s max error %.3g\n", what, max_err);
    free(a);
    free(b);
    return bad == 0;
}

cnn_tensor *leaf_of(const cnn_tensor *ref)
{
    cnn_tensor *t = NULL;
    if (ref && cnn_tensor_clone(ref, &t) == CNN_OK) cnn_tensor_set_requires_grad(t, true);
    return t;
}
