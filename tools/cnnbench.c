/* cnnbench.c — times kernels through the public API, one function per mode (conv, gemm), and
 * prints a table plus optional JSON. A new mode or backend adds a function and a table row; the
 * timing, statistics and JSON helpers below are shared. Only the CPU backend exists so far. */
#include "cnncuda.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- options and usage -------------------------------------------------------------------- */
#define MAX_SHAPES 32

typedef struct conv_shape {
    int n, c, h, w, k, r, s, stride, pad, groups;
} conv_shape;

typedef struct bench_opts {
    const char *mode, *backend, *json;
    int warmup, iters;
    conv_shape shapes[MAX_SHAPES];
    int n_shapes;
    int m, n, k; /* gemm */
} bench_opts;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: cnnbench MODE [options]\n"
            "modes:\n"
            "  conv   conv2d forward, backward-data and backward-filter, each timed alternately\n"
            "         with one plain sgemm of the same FLOP count and transpositions (forward:\n"
            "         M,N,K = K, N*P*Q, C/groups*R*S); the output is checked once against a\n"
            "         direct loop (MISMATCH in the table, exit status 1)\n"
            "  gemm   one sgemm, C(M,N) = A(M,K) B(K,N)\n"
            "options:\n"
            "  --shape N,C,H,W,K,R,S,stride,pad[,groups]   a conv shape (repeatable)\n"
            "  --shapes resnet50-cpu                       built-in conv shapes (the default)\n"
            "  --mnk M,N,K                                 gemm size (default 1024,1024,1024)\n"
            "  --backend cpu                               the only backend so far\n"
            "  --warmup N                                  untimed runs first (default 2)\n"
            "  --iters N                                   timed runs (default 10)\n"
            "  --json FILE                                 also write the results as JSON\n"
            "  --help\n");
}

/* Bad command lines end here: a message on stderr and exit status 2. */
static void die_usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "cnnbench: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n(cnnbench --help lists the options)\n");
    va_end(ap);
    exit(2);
}

/* Parses exactly `lo`..`hi` comma-separated positive integers (zero allowed where zero_ok). */
static int parse_ints(const char *s, int *out, int lo, int hi, int zero_ok)
{
    int n = 0;
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < (zero_ok ? 0 : 1) || v > 1000000 || n == hi) return -1;
        out[n++] = (int)v;
        if (*end == ',') end++;
        else if (*end) return -1;
        p = end;
    }
    return n >= lo ? n : -1;
}

static const conv_shape resnet50_cpu[] = {
    {8, 3, 224, 224, 64, 7, 7, 2, 3, 1},  /* stem */
    {8, 64, 56, 56, 64, 3, 3, 1, 1, 1},   /* layer1 3x3 */
    {8, 256, 56, 56, 64, 1, 1, 1, 0, 1},  /* layer1 1x1 reduce */
    {8, 64, 56, 56, 256, 1, 1, 1, 0, 1},  /* layer1 1x1 expand */
    {8, 128, 28, 28, 128, 3, 3, 1, 1, 1}, /* layer2 3x3 */
    {8, 256, 14, 14, 256, 3, 3, 1, 1, 1}, /* layer3 3x3 */
};

static void add_shape(bench_opts *o, conv_shape s)
{
    if (o->n_shapes == MAX_SHAPES) die_usage("at most %d conv shapes", MAX_SHAPES);
    o->shapes[o->n_shapes++] = s;
}

static void parse_args(int argc, char **argv, bench_opts *o)
{
    *o = (bench_opts){.backend = "cpu", .warmup = 2, .iters = 10, .m = 1024, .n = 1024, .k = 1024};
    if (argc < 2) die_usage("no mode given (conv or gemm)");
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(stdout);
        exit(0);
    }
    o->mode = argv[1];
    if (strcmp(o->mode, "conv") && strcmp(o->mode, "gemm"))
        die_usage("unknown mode '%s' (conv or gemm)", o->mode);
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            exit(0);
        }
        if (i + 1 >= argc) die_usage("option '%s' needs a value (or is unknown)", a);
        const char *v = argv[++i];
        int vals[10];
        if (!strcmp(a, "--shape")) {
            int n = parse_ints(v, vals, 9, 10, 1);
            if (n < 0)
                die_usage("malformed --shape '%s' (want N,C,H,W,K,R,S,stride,pad[,groups])", v);
            conv_shape s = {vals[0], vals[1], vals[2], vals[3], vals[4], vals[5], vals[6],
                            vals[7], vals[8], n == 10 ? vals[9] : 1};
            if (s.n == 0 || s.c == 0 || s.h == 0 || s.w == 0 || s.k == 0 || s.r == 0 || s.s == 0 ||
                s.stride == 0 || s.groups == 0)
                die_usage("--shape '%s': only the padding may be 0", v);
            if (s.c % s.groups || s.k % s.groups)
                die_usage("--shape '%s': groups %d must divide C %d and K %d", v, s.groups, s.c,
                          s.k);
            add_shape(o, s);
        } else if (!strcmp(a, "--shapes")) {
            if (strcmp(v, "resnet50-cpu")) die_usage("unknown shape set '%s' (resnet50-cpu)", v);
            for (size_t j = 0; j < sizeof resnet50_cpu / sizeof *resnet50_cpu; j++)
                add_shape(o, resnet50_cpu[j]);
        } else if (!strcmp(a, "--mnk")) {
            if (parse_ints(v, vals, 3, 3, 0) < 0 || !vals[0] || !vals[1] || !vals[2])
                die_usage("malformed --mnk '%s' (want M,N,K, all positive)", v);
            o->m = vals[0];
            o->n = vals[1];
            o->k = vals[2];
        } else if (!strcmp(a, "--backend")) {
            o->backend = v;
        } else if (!strcmp(a, "--warmup") || !strcmp(a, "--iters")) {
            if (parse_ints(v, vals, 1, 1, 1) < 0) die_usage("malformed %s '%s'", a, v);
            if (!strcmp(a, "--iters")) o->iters = vals[0];
            else o->warmup = vals[0];
        } else if (!strcmp(a, "--json")) {
            o->json = v;
        } else {
            die_usage("unknown option '%s'", a);
        }
    }
    if (o->iters < 1) die_usage("--iters must be at least 1");
    if (strcmp(o->backend, "cpu"))
        die_usage("backend '%s' is not available in this cnnbench (only 'cpu' so far)", o->backend);
    if (!strcmp(o->mode, "conv") && o->n_shapes == 0)
        for (size_t j = 0; j < sizeof resnet50_cpu / sizeof *resnet50_cpu; j++)
            add_shape(o, resnet50_cpu[j]);
}

/* ---- timing --------------------------------------------------------------------------------- */
static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec * 1e-6;
}

typedef struct bench_stats {
    double median, min, max; /* ms */
} bench_stats;

/* One timed piece of work: setup (untimed, may be NULL) then run (timed), teardown (untimed,
 * may be NULL). Each returns 0 on success. */
typedef struct bench_job {
    int (*setup)(void *ud);
    int (*run)(void *ud);
    void (*teardown)(void *ud);
    void *ud;
} bench_job;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void stats_of(double *t, int n, bench_stats *st)
{
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    st->min = t[0];
    st->max = t[n - 1];
    st->median = n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

/* Runs warmup + iters rounds of n jobs, one of each per round, so that jobs compared with each
 * other (a conv pass and its equivalent sgemm) see the same machine load. Returns 0 and each
 * job's statistics of its timed parts, or -1. */
static int time_jobs(const bench_job *jobs, int n, int warmup, int iters, bench_stats *st)
{
    double *t = malloc((size_t)n * (size_t)iters * sizeof *t);
    if (!t) return -1;
    for (int i = 0; i < warmup + iters; i++)
        for (int j = 0; j < n; j++) {
            const bench_job *b = &jobs[j];
            if (b->setup && b->setup(b->ud)) goto fail;
            double t0 = now_ms();
            if (b->run(b->ud)) {
                if (b->teardown) b->teardown(b->ud);
                goto fail;
            }
            double t1 = now_ms();
            if (b->teardown) b->teardown(b->ud);
            if (i >= warmup) t[(size_t)j * iters + (i - warmup)] = t1 - t0;
        }
    for (int j = 0; j < n; j++) stats_of(t + (size_t)j * iters, iters, &st[j]);
    free(t);
    return 0;
fail:
    free(t);
    return -1;
}

/* ---- results and JSON ------------------------------------------------------------------------ */
typedef struct bench_result {
    char mode[16], backend[16], shape[64], pass[24], check[16];
    bench_stats t;
    double gflops;
    int gm, gn, gk;       /* the equivalent sgemm, 0 when none */
    double sgemm_gflops, ratio; /* ratio of GFLOP/s at the medians */
    double ratio_min;           /* the same at the fastest runs (less sensitive to load) */
} bench_result;

typedef struct bench_log {
    bench_result *r;
    int n, cap;
} bench_log;

static bench_result *log_add(bench_log *l)
{
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 16;
        bench_result *r = realloc(l->r, (size_t)cap * sizeof *r);
        if (!r) {
            fprintf(stderr, "cnnbench: out of memory\n");
            exit(1);
        }
        l->r = r;
        l->cap = cap;
    }
    bench_result *r = &l->r[l->n++];
    memset(r, 0, sizeof *r);
    return r;
}

static void cpu_model(char *buf, size_t n)
{
    snprintf(buf, n, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        char *c = strchr(line, ':');
        if (!strncmp(line, "model name", 10) && c) {
            c += 1 + strspn(c + 1, " \t");
            c[strcspn(c, "\n")] = 0;
            snprintf(buf, n, "%s", c);
            break;
        }
    }
    fclose(f);
}

/* Names and short strings written here are our own (no quotes or backslashes to escape). */
static int write_json(const char *path, const bench_opts *o, const bench_log *l)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "cnnbench: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    char cpu[256];
    cpu_model(cpu, sizeof cpu);
    for (char *c = cpu; *c; c++)
        if (*c == '"' || *c == '\\') *c = ' ';
    fprintf(f, "{\n  \"tool\": \"cnnbench\",\n  \"version\": \"%s\",\n  \"mode\": \"%s\",\n",
            cnn_version(), o->mode);
    fprintf(f, "  \"backend\": \"%s\",\n  \"cpu\": \"%s\",\n  \"omp_threads\": %d,\n"
            "  \"blas_threads\": %d,\n  \"warmup\": %d,\n  \"iters\": %d,\n  \"results\": [\n",
            o->backend, cpu, omp_get_max_threads(), openblas_get_num_threads(), o->warmup,
            o->iters);
    for (int i = 0; i < l->n; i++) {
        const bench_result *r = &l->r[i];
        fprintf(f, "    {\"mode\": \"%s\", \"backend\": \"%s\", \"shape\": \"%s\", "
                "\"pass\": \"%s\", \"median_ms\": %.4f, \"min_ms\": %.4f, \"max_ms\": %.4f, "
                "\"gflops\": %.2f",
                r->mode, r->backend, r->shape, r->pass, r->t.median, r->t.min, r->t.max, r->gflops);
        if (r->gm)
            fprintf(f, ", \"sgemm_mnk\": [%d, %d, %d], \"sgemm_gflops\": %.2f, \"ratio\": %.3f, "
                    "\"ratio_min\": %.3f", r->gm, r->gn, r->gk, r->sgemm_gflops, r->ratio,
                    r->ratio_min);
        if (r->check[0]) fprintf(f, ", \"check\": \"%s\"", r->check);
        fprintf(f, "}%s\n", i + 1 < l->n ? "," : "");
    }
    fprintf(f, "  ]\n}\n");
    int bad = ferror(f);
    if (fclose(f) || bad) {
        fprintf(stderr, "cnnbench: error writing %s\n", path);
        return -1;
    }
    return 0;
}

static void print_header(const bench_opts *o)
{
    char cpu[256];
    cpu_model(cpu, sizeof cpu);
    printf("cnnbench %s | mode %s | backend %s | %s | %d OpenMP / %d OpenBLAS threads | "
           "warmup %d, iters %d\n", cnn_version(), o->mode, o->backend, cpu, omp_get_max_threads(),
           openblas_get_num_threads(), o->warmup, o->iters);
}

/* ---- gemm ------------------------------------------------------------------------------------ */
typedef struct gemm_job {
    int m, n, k, ta, tb; /* ta/tb: A is stored (K, M) / B is stored (N, K) */
    float *a, *b, *c;
} gemm_job;

static int gemm_run(void *ud)
{
    gemm_job *g = ud;
    cblas_sgemm(CblasRowMajor, g->ta ? CblasTrans : CblasNoTrans, g->tb ? CblasTrans : CblasNoTrans,
                g->m, g->n, g->k, 1.0f, g->a, g->ta ? g->m : g->k, g->b, g->tb ? g->k : g->n, 0.0f,
                g->c, g->n);
    return 0;
}

static float *rand_floats(size_t n, unsigned seed)
{
    float *p = malloc(n * sizeof *p);
    if (!p) return NULL;
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        p[i] = (float)(seed >> 8) / 16777216.0f * 2.0f - 1.0f;
    }
    return p;
}

/* An sgemm job C(M,N) = op(A) op(B) on random operands; 0, or -1 when out of memory. */
static int gemm_init(gemm_job *g, int m, int n, int k, int ta, int tb)
{
    *g = (gemm_job){m, n, k, ta, tb, rand_floats((size_t)m * k, 1), rand_floats((size_t)k * n, 2),
                    malloc((size_t)m * n * sizeof(float))};
    return g->a && g->b && g->c ? 0 : -1;
}

static void gemm_free(gemm_job *g)
{
    free(g->a);
    free(g->b);
    free(g->c);
}

static double gflops_of(double flops, const bench_stats *st) { return flops / (st->median * 1e6); }

static int mode_gemm(const bench_opts *o, bench_log *l)
{
    print_header(o);
    bench_result *r = log_add(l);
    snprintf(r->mode, sizeof r->mode, "gemm");
    snprintf(r->backend, sizeof r->backend, "%s", o->backend);
    snprintf(r->shape, sizeof r->shape, "M%d N%d K%d", o->m, o->n, o->k);
    snprintf(r->pass, sizeof r->pass, "sgemm");
    gemm_job g;
    int bad = gemm_init(&g, o->m, o->n, o->k, 0, 0);
    bench_job j = {NULL, gemm_run, NULL, &g};
    if (!bad) bad = time_jobs(&j, 1, o->warmup, o->iters, &r->t);
    gemm_free(&g);
    if (bad) {
        fprintf(stderr, "cnnbench: gemm %s: out of memory\n", r->shape);
        return 1;
    }
    r->gflops = gflops_of(2.0 * o->m * o->n * o->k, &r->t);
    printf("%-20s %10s %10s %10s %9s\n", "sgemm", "median ms", "min ms", "max ms", "GFLOP/s");
    printf("%-20s %10.3f %10.3f %10.3f %9.1f\n", r->shape, r->t.median, r->t.min, r->t.max,
           r->gflops);
    return 0;
}

/* ---- conv ------------------------------------------------------------------------------------ */
enum { PASS_FORWARD, PASS_BACKWARD_DATA, PASS_BACKWARD_FILTER };
static const char *const pass_names[] = {"forward", "backward-data", "backward-filter"};

typedef struct conv_job {
    cnn_conv2d_params p;
    cnn_tensor *x, *w, *dy, *y;
    int pass;
} conv_job;

/* The backward passes need a recorded forward first (untimed); which input requires grad
 * picks the pass: x alone gives backward-data, w alone backward-filter. */
static int conv_setup(void *ud)
{
    conv_job *j = ud;
    if (j->pass == PASS_FORWARD) return 0;
    if (cnn_conv2d(j->x, j->w, NULL, &j->p, &j->y) != CNN_OK) return -1;
    return 0;
}

static int conv_run(void *ud)
{
    conv_job *j = ud;
    cnn_status st;
    if (j->pass == PASS_FORWARD) {
        bool was = cnn_set_grad_enabled(false);
        st = cnn_conv2d(j->x, j->w, NULL, &j->p, &j->y);
        cnn_set_grad_enabled(was);
    } else {
        st = cnn_backward_with_grad(j->y, j->dy);
    }
    if (st != CNN_OK)
        fprintf(stderr, "cnnbench: conv2d %s: %s\n", pass_names[j->pass], cnn_last_error());
    return st != CNN_OK;
}

static void conv_teardown(void *ud)
{
    conv_job *j = ud;
    cnn_tensor_free(&j->y);
    cnn_tensor_zero_grad(j->x);
    cnn_tensor_zero_grad(j->w);
    cnn_tape_reset();
}

/* Compares up to 4096 output points spread over the whole output (every sample and channel)
 * with a direct loop in double; 1 when all agree within float rounding of the sum. */
static int conv_check(const conv_shape *s, const cnn_tensor *x, const cnn_tensor *w,
                      const cnn_tensor *y)
{
    const float *px = cnn_tensor_cdata(x), *pw = cnn_tensor_cdata(w), *py = cnn_tensor_cdata(y);
    if (!px || !pw || !py) return 0;
    const int P = (int)cnn_tensor_dim(y, 2), Q = (int)cnn_tensor_dim(y, 3);
    const int cg = s->c / s->groups, kg = s->k / s->groups;
    const long total = (long)s->n * s->k * P * Q;
    unsigned seed = 7;
    int ok = 1;
    for (int t = 0; t < 4096 && ok; t++) {
        seed = seed * 1664525u + 1013904223u;
        unsigned long pick = ((unsigned long)seed << 15 ^ seed) % (unsigned long)total;
        long idx = t == 0 ? 0 : t == 1 ? total - 1 : (long)pick; /* both ends, then spread */
        int q = (int)(idx % Q), p = (int)(idx / Q % P), k = (int)(idx / ((long)P * Q) % s->k);
        int n = (int)(idx / ((long)P * Q * s->k));
        double acc = 0, mag = 0;
        for (int c = 0; c < cg; c++)
            for (int r = 0; r < s->r; r++)
                for (int u = 0; u < s->s; u++) {
                    int hh = p * s->stride - s->pad + r, ww = q * s->stride - s->pad + u;
                    if (hh < 0 || hh >= s->h || ww < 0 || ww >= s->w) continue;
                    long xi = (((long)n * s->c + (k / kg) * cg + c) * s->h + hh) * s->w + ww;
                    double v = (double)px[xi] * pw[(((long)k * cg + c) * s->r + r) * s->s + u];
                    acc += v;
                    mag += fabs(v);
                }
        if (!(fabs(py[idx] - acc) <= 2e-5 * mag + 1e-5)) {
            fprintf(stderr, "cnnbench: conv2d output [%d, %d, %d, %d] is %.7g, direct loop %.7g\n",
                    n, k, p, q, py[idx], acc);
            ok = 0;
        }
    }
    return ok;
}

static int mode_conv(const bench_opts *o, bench_log *l)
{
    print_header(o);
    /* ratio: conv GFLOP/s over sgemm GFLOP/s at the medians; @min: at the fastest runs. */
    printf("%-26s %-15s %9s %9s %9s %8s  %-20s %8s %6s %6s  %s\n", "N,C,H,W,K,R,S,str,pad,g",
           "pass", "median ms", "min ms", "max ms", "GFLOP/s", "equiv. sgemm M,N,K", "GFLOP/s",
           "ratio", "@min", "check");
    int rc = 0;
    for (int i = 0; i < o->n_shapes; i++) {
        const conv_shape *s = &o->shapes[i];
        conv_job j = {.p = {.stride = {s->stride, s->stride}, .padding = {s->pad, s->pad},
                            .groups = s->groups}};
        char name[64];
        snprintf(name, sizeof name, "%d,%d,%d,%d,%d,%d,%d,%d,%d,%d", s->n, s->c, s->h, s->w, s->k,
                 s->r, s->s, s->stride, s->pad, s->groups);
        /* Inputs are random, never zeros, so no kernel can shortcut them. */
        if (cnn_tensor_uniform(CNN_SHAPE(s->n, s->c, s->h, s->w), -1, 1, CNN_CPU, &j.x) ||
            cnn_tensor_uniform(CNN_SHAPE(s->k, s->c / s->groups, s->r, s->s), -1, 1, CNN_CPU,
                               &j.w)) {
            fprintf(stderr, "cnnbench: conv %s: %s\n", name, cnn_last_error());
            rc = 1;
            goto next;
        }
        bool was = cnn_set_grad_enabled(false);
        cnn_status st = cnn_conv2d(j.x, j.w, NULL, &j.p, &j.y);
        cnn_set_grad_enabled(was);
        if (st != CNN_OK) {
            fprintf(stderr, "cnnbench: conv %s: %s\n", name, cnn_last_error());
            rc = 1;
            goto next;
        }
        const char *check = conv_check(s, j.x, j.w, j.y) ? "ok" : "MISMATCH";
        if (strcmp(check, "ok")) rc = 1;
        const int P = (int)cnn_tensor_dim(j.y, 2), Q = (int)cnn_tensor_dim(j.y, 3);
        const int npq = s->n * P * Q, crs = s->c / s->groups * s->r * s->s;
        const double flops = 2.0 * s->n * s->k * P * Q * (double)crs;
        if (cnn_tensor_uniform(cnn_tensor_shape(j.y), -1, 1, CNN_CPU, &j.dy)) {
            rc = 1;
            goto next;
        }
        cnn_tensor_free(&j.y);
        /* The equivalent single sgemm of each pass, with the conv's transpositions. */
        const int gemm[3][5] = {
            {s->k, npq, crs, 0, 0}, {crs, npq, s->k, 1, 0}, {s->k, crs, npq, 0, 1}};
        for (int pass = 0; pass < 3; pass++) {
            bench_result *r = log_add(l);
            snprintf(r->mode, sizeof r->mode, "conv");
            snprintf(r->backend, sizeof r->backend, "%s", o->backend);
            snprintf(r->shape, sizeof r->shape, "%s", name);
            snprintf(r->pass, sizeof r->pass, "%s", pass_names[pass]);
            snprintf(r->check, sizeof r->check, "%s", check);
            j.pass = pass;
            cnn_tensor_set_requires_grad(j.x, pass == PASS_BACKWARD_DATA);
            cnn_tensor_set_requires_grad(j.w, pass == PASS_BACKWARD_FILTER);
            r->gm = gemm[pass][0];
            r->gn = gemm[pass][1];
            r->gk = gemm[pass][2];
            gemm_job gj;
            bench_stats st2[2];
            bench_job jobs[2] = {{conv_setup, conv_run, conv_teardown, &j},
                                 {NULL, gemm_run, NULL, &gj}};
            int bad = gemm_init(&gj, r->gm, r->gn, r->gk, gemm[pass][3], gemm[pass][4]);
            if (!bad) bad = time_jobs(jobs, 2, o->warmup, o->iters, st2);
            gemm_free(&gj);
            if (bad) {
                fprintf(stderr, "cnnbench: conv %s %s failed\n", name, pass_names[pass]);
                rc = 1;
                l->n--;
                continue;
            }
            r->t = st2[0];
            r->gflops = gflops_of(flops, &st2[0]);
            r->sgemm_gflops = gflops_of(flops, &st2[1]);
            r->ratio = r->gflops / r->sgemm_gflops;
            r->ratio_min = st2[1].min / st2[0].min;
            char mnk[32];
            snprintf(mnk, sizeof mnk, "%d,%d,%d", r->gm, r->gn, r->gk);
            printf("%-26s %-15s %9.3f %9.3f %9.3f %8.1f  %-20s %8.1f %6.2f %6.2f  %s\n", name,
                   r->pass, r->t.median, r->t.min, r->t.max, r->gflops, mnk, r->sgemm_gflops,
                   r->ratio, r->ratio_min, check);
            fflush(stdout);
        }
    next:
        cnn_tensor_free(&j.x);
        cnn_tensor_free(&j.w);
        cnn_tensor_free(&j.dy);
        cnn_tensor_free(&j.y);
    }
    return rc;
}

int main(int argc, char **argv)
{
    bench_opts o;
    parse_args(argc, argv, &o);
    bench_log l = {0};
    int rc = !strcmp(o.mode, "conv") ? mode_conv(&o, &l) : mode_gemm(&o, &l);
    if (o.json && write_json(o.json, &o, &l)) rc = 1;
    free(l.r);
    return rc;
}
