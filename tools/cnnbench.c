/* cnnbench.c — times kernels (conv, gemm, bn, pool, elementwise) and whole zoo models per backend
 * (cpu, cuda, cudnn) through the public API, checks every output once before timing it, and
 * prints a table plus optional JSON (the schema bench/torch_reference.py writes too). The modes
 * live in tools/common/bench_*.c; this file holds the command line and the backend loop. */
#include "common/bench_common.h"

#include <cblas.h>
#include <errno.h>
#include <omp.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: cnnbench MODE [NAME] [options]\n"
        "modes:\n"
        "  conv           conv2d fwd, bwd_data, bwd_filter over --shapes SET (default resnet50)\n"
        "                 or the --shape given\n"
        "  gemm           y = x w^T through cnn_linear, x (M,K), w (N,K) (--mnk)\n"
        "  bn             batch norm (training, affine) fwd and bwd on three ResNet shapes\n"
        "  pool           max pool 3x3/2 and 2x2/2, avg pool 2x2/2, fwd and bwd\n"
        "  elementwise    relu (fwd, bwd) and add on (batch, 256, 56, 56)\n"
        "  model NAME     a zoo model: training step (forward + cross-entropy + backward + SGD\n"
        "                 momentum update) and inference, img/s; --layers adds a per-layer table\n"
        "  summary NAME   the zoo's layer table, total params and GMACs (no timing)\n"
        "  loader DATA    training batches of DATA (an ImageNet-style folder, whose train/ is\n"
        "                 read; such a split folder itself, DIR/train; or fashion-mnist)\n"
        "                 through the data loader with --workers threads and nothing else to\n"
        "                 do: img/s delivered (to the GPU with a GPU backend) and each\n"
        "                 worker's decode img/s; --warmup/--iters count batches\n"
        "options:\n"
        "  --backend cpu|cuda|cudnn|gpu|all   (default cpu; gpu = cuda and cudnn; all = cpu plus\n"
        "                 each GPU backend present)\n"
        "  --shape N,C,H,W,K,R,S,stride,pad[,groups]   a conv shape (repeatable)\n"
        "  --shapes resnet50|vgg16|alexnet             every distinct conv of the model at 224\n"
        "  --list         conv: list the set's shapes, verified against the zoo summary; no "
        "timing\n"
        "  --mnk M,N,K    gemm size (default 1024,1024,1024)\n"
        "  --batch N      batch size (default 32)\n"
        "  --img-size S   model/summary/loader input size (default: the model's, 224 or 32;\n"
        "                 loader: 224 for folders, 28 for Fashion-MNIST)\n"
        "  --workers N    loader: decoding threads (default 4)\n"
        "  --layers       model: also time each layer alone\n"
        "  --graph        model: capture each step once into a CUDA graph and time its replays\n"
        "                 (a GPU backend; the replay's loss or logits are checked against the\n"
        "                 step run op by op)\n"
        "  --no-fusion    model: run every layer alone (no conv + BN fold, no fused conv + add +\n"
        "                 ReLU; see cnn_model_set_fusion)\n"
        "  --tf32         TF32 math for conv and GEMM on the GPU\n"
        "  --no-peak      skip measuring the device peak (no %%peak column)\n"
        "  --warmup N     untimed repeats first (default 3)\n"
        "  --iters N      timed repeats (default 20)\n"
        "  --json FILE    also write the results as JSON\n"
        "  --help\n"
        "Each op's output is checked once against direct double-precision loops before it is\n"
        "timed; a model's against the CPU library running every layer alone (logits, every\n"
        "gradient, within a bound it measures; --no-fusion on the CPU: n/a, those layers are\n"
        "the reference) and its SGD update against p - lr * grad. A wrong result shows as\n"
        "MISMATCH and makes the exit status 1. --layers rows and loader rows are timings only\n"
        "(n/a). Bad arguments: exit status 2.\n");
}

/* Bad command lines end here: one line on stderr and exit status 2. */
static void die_usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "cnnbench: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (cnnbench --help lists the options)\n");
    va_end(ap);
    exit(2);
}

/* Parses lo..hi comma-separated integers in [min, 1e6]; the count, or -1. */
static int parse_ints(const char *s, int *out, int lo, int hi, int min)
{
    int n = 0;
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < min || v > 1000000 || n == hi) return -1;
        out[n++] = (int)v;
        if (*end == ',' && end[1])
            end++;
        else if (*end)
            return -1;
        p = end;
    }
    return n >= lo ? n : -1;
}

static void add_shape(bench_opts *o, bench_conv_shape s)
{
    if (o->n_shapes == BENCH_MAX_SHAPES) die_usage("at most %d conv shapes", BENCH_MAX_SHAPES);
    o->shapes[o->n_shapes++] = s;
}

static bool known_model(const char *name)
{
    int n;
    const char *const *names = cnn_model_names(&n);
    for (int i = 0; i < n; i++)
        if (!strcmp(names[i], name)) return true;
    return false;
}

/* The zoo's names, comma-separated, for the messages that want one. */
static const char *zoo_names(char *buf, size_t size)
{
    int n;
    const char *const *names = cnn_model_names(&n);
    size_t k = 0;
    buf[0] = 0;
    for (int i = 0; i < n && k < size; i++)
        k += (size_t)snprintf(buf + k, size - k, "%s%s", i ? ", " : "", names[i]);
    return buf;
}

/* The modes an option means something in (options not listed: every mode); an option given
 * to another mode is refused rather than ignored. */
static const struct {
    const char *option, *modes;
} g_applies[] = {
    {"--shape", "conv"},          {"--shapes", "conv"},  {"--list", "conv"},
    {"--mnk", "gemm"},            {"--layers", "model"}, {"--no-fusion", "model"},
    {"--graph", "model"},         {"--workers", "loader"},
    {"--img-size", "model summary loader"},
    {"--batch", "conv bn pool elementwise model loader"},
};

/* The options about timing and its report: summary and conv --list time nothing. */
static bool is_timing_option(const char *option)
{
    static const char *const timing[] = {"--backend", "--tf32",  "--no-peak",
                                         "--warmup",  "--iters", "--json"};
    for (size_t k = 0; k < sizeof timing / sizeof *timing; k++)
        if (!strcmp(option, timing[k])) return true;
    return false;
}

static void check_applies(const char *mode, const char *option)
{
    char m[32], all[64];
    snprintf(m, sizeof m, " %s ", mode);
    for (size_t k = 0; k < sizeof g_applies / sizeof *g_applies; k++) {
        if (strcmp(option, g_applies[k].option)) continue;
        snprintf(all, sizeof all, " %s ", g_applies[k].modes);
        if (!strstr(all, m))
            die_usage("%s does not apply to mode %s (only to %s)", option, mode,
                      g_applies[k].modes);
    }
}

/* model/summary: a model that cannot take --img-size is a bad argument, found before timing. */
static void check_model_size(const bench_opts *o)
{
    cnn_model *m = NULL;
    cnn_model_options mo = cnn_model_default_options();
    mo.skip_init = true;
    if (cnn_model_create_ex(o->model, &mo, &m) != CNN_OK) die_usage("%s", cnn_last_error());
    cnn_model_summary sum = {0};
    cnn_status st = cnn_model_summarize(m, o->img_size, o->img_size, &sum);
    cnn_model_summary_free(&sum);
    cnn_model_destroy(&m);
    if (st != CNN_OK) die_usage("--img-size %d: %s", o->img_size, cnn_last_error());
}

/* --json's file is checked before the timing, not found unwritable after it: opened for
 * appending (which leaves a file that exists as it is), and removed if it did not exist. */
static void check_json_writable(const char *path)
{
    struct stat sb;
    const bool existed = stat(path, &sb) == 0;
    FILE *f = fopen(path, "a");
    if (!f) {
        fprintf(stderr, "cnnbench: cannot write %s: %s\n", path, strerror(errno));
        exit(2);
    }
    fclose(f);
    if (!existed) remove(path);
}

static void parse_args(int argc, char **argv, bench_opts *o)
{
    static const char *const modes[] = {"conv",  "gemm",    "bn",    "pool", "elementwise",
                                        "model", "summary", "loader"};
    *o = (bench_opts){.backend = "cpu",
                      .warmup = 3,
                      .iters = 20,
                      .batch = 32,
                      .workers = 4,
                      .m = 1024,
                      .n = 1024,
                      .k = 1024};
    if (argc < 2)
        die_usage("no mode given (conv, gemm, bn, pool, elementwise, model, summary, loader)");
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(stdout);
        exit(0);
    }
    o->mode = argv[1];
    bool ok = false;
    for (size_t i = 0; i < sizeof modes / sizeof *modes; i++) ok |= !strcmp(o->mode, modes[i]);
    if (!ok)
        die_usage("unknown mode '%s' (conv, gemm, bn, pool, elementwise, model, summary, loader)",
                  o->mode);
    int i = 2;
    if (!strcmp(o->mode, "model") || !strcmp(o->mode, "summary")) {
        char names[1024];
        if (argc < 3 || argv[2][0] == '-')
            die_usage("%s needs a model name (%s)", o->mode, zoo_names(names, sizeof names));
        o->model = argv[i++];
        if (!known_model(o->model))
            die_usage("unknown model '%s' (known: %s)", o->model,
                      zoo_names(names, sizeof names));
    } else if (!strcmp(o->mode, "loader")) {
        if (argc < 3 || argv[2][0] == '-')
            die_usage("loader needs a data folder (DIR/train/<class>/*) or fashion-mnist");
        o->data = argv[i++];
    }
    const char *set = NULL, *timing = NULL; /* timing: the last timing option given */
    bool batch_given = false;
    bench_conv_shape custom[BENCH_MAX_SHAPES];
    int n_custom = 0;
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            exit(0);
        }
        check_applies(o->mode, a);
        if (is_timing_option(a)) timing = a;
        if (!strcmp(a, "--tf32") || !strcmp(a, "--layers") || !strcmp(a, "--list") ||
            !strcmp(a, "--no-peak") || !strcmp(a, "--no-fusion") || !strcmp(a, "--graph")) {
            if (!strcmp(a, "--graph"))
                o->graph = true;
            else if (!strcmp(a, "--tf32"))
                o->tf32 = true;
            else if (!strcmp(a, "--no-fusion"))
                o->no_fusion = true;
            else if (!strcmp(a, "--no-peak"))
                o->no_peak = true;
            else if (!strcmp(a, "--layers"))
                o->layers = true;
            else
                o->list = true;
            continue;
        }
        if (strncmp(a, "--", 2)) die_usage("unexpected argument '%s'", a);
        static const char *const with_value[] = {"--shape", "--shapes", "--mnk",    "--backend",
                                                 "--warmup", "--iters", "--batch",  "--img-size",
                                                 "--workers", "--json"};
        bool known = false;
        for (size_t k = 0; k < sizeof with_value / sizeof *with_value; k++)
            known |= !strcmp(a, with_value[k]);
        if (!known) die_usage("unknown option '%s'", a);
        if (i + 1 >= argc) die_usage("option '%s' needs a value", a);
        const char *v = argv[++i];
        /* No value starts with "--": `--json --no-peak` would write a file named --no-peak. */
        if (!strncmp(v, "--", 2)) die_usage("option '%s' needs a value, not '%s'", a, v);
        int vals[10];
        if (!strcmp(a, "--shape")) {
            int n = parse_ints(v, vals, 9, 10, 0);
            if (n < 0)
                die_usage("malformed --shape '%s' (want N,C,H,W,K,R,S,stride,pad[,groups])", v);
            bench_conv_shape s = {vals[0], vals[1], vals[2], vals[3], vals[4],
                                  vals[5], vals[6], vals[7], vals[8], n == 10 ? vals[9] : 1,
                                  1};
            if (!s.n || !s.c || !s.h || !s.w || !s.k || !s.r || !s.s || !s.stride || !s.groups)
                die_usage("--shape '%s': only the padding may be 0", v);
            if (s.c % s.groups || s.k % s.groups)
                die_usage("--shape '%s': groups %d must divide C %d and K %d", v, s.groups, s.c,
                          s.k);
            if (s.h + 2 * s.pad < s.r || s.w + 2 * s.pad < s.s)
                die_usage("--shape '%s': the kernel is larger than the padded input", v);
            if (n_custom == BENCH_MAX_SHAPES) die_usage("at most %d conv shapes", BENCH_MAX_SHAPES);
            custom[n_custom++] = s;
        } else if (!strcmp(a, "--shapes")) {
            bench_conv_shape tmp[1];
            if (bench_conv_set(v, 1, tmp, 1) < 0)
                die_usage("unknown shape set '%s' (resnet50, vgg16, alexnet)", v);
            set = v;
        } else if (!strcmp(a, "--mnk")) {
            if (parse_ints(v, vals, 3, 3, 1) < 0)
                die_usage("malformed --mnk '%s' (want M,N,K, all positive)", v);
            o->m = vals[0];
            o->n = vals[1];
            o->k = vals[2];
        } else if (!strcmp(a, "--backend")) {
            if (strcmp(v, "cpu") && strcmp(v, "cuda") && strcmp(v, "cudnn") && strcmp(v, "gpu") &&
                strcmp(v, "all"))
                die_usage("unknown backend '%s' (cpu, cuda, cudnn, gpu, all)", v);
            o->backend = v;
        } else if (!strcmp(a, "--warmup") || !strcmp(a, "--iters") || !strcmp(a, "--batch") ||
                   !strcmp(a, "--img-size") || !strcmp(a, "--workers")) {
            int min = !strcmp(a, "--warmup") ? 0 : 1;
            if (parse_ints(v, vals, 1, 1, min) < 0)
                die_usage("malformed %s '%s' (want a whole number >= %d)", a, v, min);
            if (!strcmp(a, "--workers") && vals[0] > CNN_LOADER_MAX_WORKERS)
                die_usage("--workers %d: at most %d", vals[0], CNN_LOADER_MAX_WORKERS);
            int *dst = !strcmp(a, "--warmup")    ? &o->warmup
                       : !strcmp(a, "--iters")   ? &o->iters
                       : !strcmp(a, "--batch")   ? &o->batch
                       : !strcmp(a, "--workers") ? &o->workers
                                                 : &o->img_size;
            *dst = vals[0];
            batch_given |= dst == &o->batch;
        } else if (!strcmp(a, "--json")) {
            o->json = v;
        } else {
            die_usage("unknown option '%s'", a);
        }
    }
    if (timing && (!strcmp(o->mode, "summary") || o->list))
        die_usage("%s does not apply to %s, which times nothing", timing,
                  o->list ? "conv --list" : "mode summary");
    if (o->img_size && (!strcmp(o->mode, "model") || !strcmp(o->mode, "summary")))
        check_model_size(o);
    if (o->graph && (!strcmp(o->backend, "cpu") || !strcmp(o->backend, "all")))
        die_usage("--graph: CUDA graphs need a GPU backend (cuda, cudnn or gpu), not '%s'",
                  o->backend);
    if (o->tf32 && !strcmp(o->backend, "cpu"))
        die_usage("--tf32: TF32 is a GPU math mode, the cpu backend computes in FP32");
    if (!strcmp(o->mode, "conv")) {
        if (batch_given && n_custom && !set)
            die_usage("--batch sets the batch of a shape set (--shapes); each --shape gives "
                      "its own N");
        if (set || !n_custom) {
            o->set = set ? set : "resnet50";
            o->n_shapes = o->n_set_shapes =
                bench_conv_set(o->set, o->batch, o->shapes, BENCH_MAX_SHAPES);
        }
        for (int k = 0; k < n_custom; k++) add_shape(o, custom[k]);
    }
    if (o->json) check_json_writable(o->json);
}

/* ---- the backends ---------------------------------------------------------------------------- */
static int run_mode(const bench_opts *o, bench_env *e, bench_log *l)
{
    const char *m = o->mode;
    if (!strcmp(m, "conv")) return bench_mode_conv(o, e, l);
    if (!strcmp(m, "gemm")) return bench_mode_gemm(o, e, l);
    if (!strcmp(m, "bn")) return bench_mode_bn(o, e, l);
    if (!strcmp(m, "pool")) return bench_mode_pool(o, e, l);
    if (!strcmp(m, "elementwise")) return bench_mode_elementwise(o, e, l);
    if (!strcmp(m, "loader")) return bench_mode_loader(o, e, l);
    return bench_mode_model(o, e, l);
}

static int run_backend(const bench_opts *o, bench_env *e, bench_log *l)
{
    cnn_context *ctx = NULL;
    if (cnn_context_create(e->dev, &ctx) != CNN_OK) {
        bench_error("backend %s: %s\n", e->backend, cnn_last_error());
        return 1;
    }
    cnn_context_set_current(ctx);
    cnn_set_backend(!strcmp(e->backend, "cuda")    ? CNN_BACKEND_CUDA
                    : !strcmp(e->backend, "cudnn") ? CNN_BACKEND_CUDNN
                                                   : CNN_BACKEND_CPU);
    cnn_set_tf32(o->tf32);
    cnn_manual_seed(1);
    int rc = 0;
    /* Bigger than the last-level cache (H100 L2: 50 MB; server CPUs' L3: up to 32 MB per die). */
    const int64_t flush_floats = e->gpu ? 32 << 20 : 16 << 20;
    if (cnn_tensor_empty(CNN_SHAPE(flush_floats), CNN_F32, e->dev, &e->flush) != CNN_OK) {
        bench_error("backend %s: the cache-flush buffer: %s\n", e->backend, cnn_last_error());
        rc = 1;
    }
    if (!rc && bench_measure_overhead(e)) {
        bench_error("timing the timer on %s: %s\n", e->backend, cnn_last_error());
        rc = 1;
    }
    if (!rc && !o->no_peak && bench_measure_peak(e)) {
        bench_error("measuring the %s peak: %s\n", e->backend, cnn_last_error());
        rc = 1;
    }
    char cpu[160], where[384] = "the CPU";
    bench_cpu_name(cpu, sizeof cpu);
    if (e->gpu) {
        char name[128] = "";
        int drv = 0, rt = 0;
        size_t dnn = 0;
        cnn_cuda_device_name(e->dev.index, name, sizeof name);
        cnn_cuda_versions(&drv, &rt, &dnn);
        snprintf(where, sizeof where,
                 "cuda:%d (%s; driver %d.%d, runtime %d.%d, cuDNN %zu.%zu.%zu)", e->dev.index,
                 name, drv / 1000, drv % 1000 / 10, rt / 1000, rt % 1000 / 10, dnn / 10000,
                 dnn % 10000 / 100, dnn % 100);
    }
    static int headers; /* --backend all: a blank line between the backends' tables */
    printf("%scnnbench %s | %s | backend %s on %s | host %s | %d OpenMP / %d OpenBLAS threads "
           "(%s kernels) | tf32 %s%s%s | warmup %d, iters %d\n",
           headers++ ? "\n" : "", cnn_version(), o->mode, e->backend, where, cpu,
           omp_get_max_threads(), openblas_get_num_threads(), openblas_get_corename(),
           o->tf32 ? "on" : "off",
           strcmp(o->mode, "model") ? "" : o->no_fusion ? " | fusion off" : " | fusion on",
           o->graph ? " | CUDA graph replays" : "",
           o->warmup, o->iters);
    if (strcmp(o->mode, "loader"))
        printf("timing: %s per repeat, median (min, max); %d MiB written between repeats to "
               "flush the caches; timer overhead %.1f us (a one-element fill), included in every "
               "time below\n",
               e->gpu ? "CUDA events on the context's stream" : "host monotonic clock",
               e->gpu ? 128 : 64, e->overhead_ms * 1e3);
    if (!o->no_peak)
        printf("measured peak: %.1f GFLOP/s (%s sgemm via cnn_linear), %.1f GB/s (copy, "
               "read+write)\n",
               e->peak_gflops, e->gpu ? "8192^3" : "1024^3", e->peak_gbs);
    if (!rc) rc = run_mode(o, e, l);
    cnn_tensor_free(&e->flush);
    cnn_context_set_current(NULL);
    cnn_context_destroy(&ctx);
    return rc;
}

static int write_json(const char *path, const bench_opts *o, const bench_env *envs, int n_env,
                      const bench_log *l)
{
    bench_json j;
    if (bench_json_open(&j, path)) {
        fprintf(stderr, "cnnbench: cannot write %s: %s\n", path, strerror(errno));
        return 1;
    }
    char cpu[160], gpu_name[128] = "";
    bench_cpu_name(cpu, sizeof cpu);
    bool gpu = n_env > 0 && envs[n_env - 1].gpu;
    int drv = 0, rt = 0;
    size_t dnn = 0;
    if (gpu) {
        cnn_cuda_device_name(envs[n_env - 1].dev.index, gpu_name, sizeof gpu_name);
        cnn_cuda_versions(&drv, &rt, &dnn);
    }
    bench_json_begin(&j, '{');
    bench_json_key(&j, "tool"), bench_json_str(&j, "cnnbench");
    bench_json_key(&j, "version"), bench_json_str(&j, cnn_version());
    bench_json_key(&j, "device"), bench_json_str(&j, gpu ? gpu_name : cpu);
    bench_json_key(&j, "cpu"), bench_json_str(&j, cpu);
    if (gpu) {
        bench_json_key(&j, "cuda_driver"), bench_json_int(&j, drv);
        bench_json_key(&j, "cuda_runtime"), bench_json_int(&j, rt);
        bench_json_key(&j, "cudnn_version"), bench_json_int(&j, (long long)dnn);
    }
    bench_json_key(&j, "backend"), bench_json_str(&j, o->backend);
    bench_json_key(&j, "tf32"), bench_json_bool(&j, o->tf32);
    bench_json_key(&j, "fusion"), bench_json_bool(&j, !o->no_fusion);
    bench_json_key(&j, "graph"), bench_json_bool(&j, o->graph);
    bench_json_key(&j, "mode"), bench_json_str(&j, o->mode);
    /* conv shapes carry their own N (--shape strings theirs, a --shapes set --batch): the batch
     * is theirs when they share one, else null (each row's shape says it). */
    long long batch = o->batch;
    for (int i = 0; i < o->n_shapes && !strcmp(o->mode, "conv"); i++)
        batch = i == 0 || o->shapes[i].n == batch ? o->shapes[i].n : -1;
    bench_json_key(&j, "batch");
    if (batch >= 0) bench_json_int(&j, batch);
    else bench_json_num(&j, NAN);
    bench_json_key(&j, "warmup"), bench_json_int(&j, o->warmup);
    bench_json_key(&j, "iters"), bench_json_int(&j, o->iters);
    bench_json_key(&j, "complete"), bench_json_bool(&j, !tool_stop && !bench_error_count());
    bench_json_key(&j, "threads"), bench_json_int(&j, omp_get_max_threads());
    bench_json_key(&j, "timing");
    bench_json_str(&j, gpu ? "cuda events (host clock on the cpu)" : "host monotonic clock");
    bench_json_key(&j, "peaks");
    bench_json_begin(&j, '[');
    for (int i = 0; i < n_env; i++) {
        bench_json_begin(&j, '{');
        bench_json_key(&j, "backend"), bench_json_str(&j, envs[i].backend);
        if (!o->no_peak) {
            bench_json_key(&j, "gflops"), bench_json_num(&j, envs[i].peak_gflops);
            bench_json_key(&j, "gbs"), bench_json_num(&j, envs[i].peak_gbs);
        }
        bench_json_key(&j, "timer_overhead_ms"), bench_json_num(&j, envs[i].overhead_ms);
        bench_json_end(&j, '}');
    }
    bench_json_end(&j, ']');
    bench_json_key(&j, "results");
    bench_json_begin(&j, '[');
    for (int i = 0; i < l->n; i++) {
        const bench_result *r = &l->r[i];
        bench_json_begin(&j, '{');
        bench_json_key(&j, "mode"), bench_json_str(&j, r->mode);
        bench_json_key(&j, "backend"), bench_json_str(&j, r->backend);
        bench_json_key(&j, "name"), bench_json_str(&j, r->name);
        bench_json_key(&j, "shape"), bench_json_str(&j, r->shape);
        bench_json_key(&j, "pass"), bench_json_str(&j, r->pass);
        bench_json_key(&j, "median_ms"), bench_json_num(&j, r->t.median);
        bench_json_key(&j, "min_ms"), bench_json_num(&j, r->t.min);
        bench_json_key(&j, "max_ms"), bench_json_num(&j, r->t.max);
        if (r->gflops > 0) bench_json_key(&j, "gflops"), bench_json_num(&j, r->gflops);
        if (r->gbs > 0) bench_json_key(&j, "gbs"), bench_json_num(&j, r->gbs);
        if (r->img_per_s > 0) bench_json_key(&j, "img_per_s"), bench_json_num(&j, r->img_per_s);
        if (r->peak_mem_mb > 0)
            bench_json_key(&j, "peak_mem_mb"), bench_json_num(&j, r->peak_mem_mb);
        if (r->worker_img_per_s > 0)
            bench_json_key(&j, "worker_img_per_s"), bench_json_num(&j, r->worker_img_per_s);
        bench_json_key(&j, "count"), bench_json_int(&j, r->count);
        bench_json_key(&j, "check"), bench_json_str(&j, r->check);
        if (strcmp(r->check, "n/a")) bench_json_key(&j, "max_err"), bench_json_num(&j, r->max_err);
        if (r->algo[0]) bench_json_key(&j, "algo"), bench_json_str(&j, r->algo);
        bench_json_end(&j, '}');
    }
    bench_json_end(&j, ']');
    bench_json_end(&j, '}');
    if (bench_json_close(&j)) {
        fprintf(stderr, "cnnbench: error writing %s\n", path);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    /* First: a stop that comes during start-up (CUDA's initialisation can take seconds) is
     * then reported, with the JSON of what completed, instead of killing the process. */
    tool_catch_stop_signals();
    bench_opts o;
    parse_args(argc, argv, &o);
    /* The loader moves data, not arithmetic: no device peaks to compare it with. */
    if (!strcmp(o.mode, "loader")) o.no_peak = true;
    if (!strcmp(o.mode, "summary")) return bench_mode_summary(&o);
    if (!strcmp(o.mode, "conv") && o.list) {
        char b[64], msg[256];
        int rc = 0;
        for (int i = 0; i < o.n_shapes; i++)
            printf("%-34s x%d\n", bench_conv_shape_str(&o.shapes[i], b, sizeof b),
                   o.shapes[i].count);
        if (o.set) {
            rc = !bench_conv_set_verify(o.set, msg, sizeof msg);
            printf("%s\n", msg);
        }
        return rc;
    }
    bench_env envs[3];
    int n_env = 0;
    const bool all = !strcmp(o.backend, "all"), has_gpu = cnn_cuda_device_count() > 0;
    if (all || !strcmp(o.backend, "cpu"))
        envs[n_env++] = (bench_env){.backend = "cpu", .dev = CNN_CPU};
    const char *gpu_backends[] = {"cuda", "cudnn"};
    for (int i = 0; i < 2; i++) {
        const char *b = gpu_backends[i];
        const bool gpu = !strcmp(o.backend, "gpu");
        if (!all && !gpu && strcmp(o.backend, b)) continue;
        bool usable = has_gpu && (i == 0 || cnn_built_with_cudnn());
        /* all and gpu skip what is missing; gpu still needs a device (the cuda backend). */
        const char *why = !cnn_built_with_cuda() ? "this build has no CUDA backend (CUDA=0)"
                          : !has_gpu             ? "no CUDA device found"
                                                 : "this build has no cuDNN (CUDNN=0)";
        if (!usable && (gpu ? i == 0 : !all)) {
            fprintf(stderr, "cnnbench: backend %s: %s\n", b, why);
            return 1;
        }
        if (!usable) {
            printf("backend %s: skipped (%s)\n", b, why);
            continue;
        }
        envs[n_env++] = (bench_env){.backend = b, .dev = CNN_CUDA(0), .gpu = true, .tf32 = o.tf32};
    }
    bench_log l = {0};
    int rc = 0;
    for (int i = 0; i < n_env && !tool_stop; i++) rc |= run_backend(&o, &envs[i], &l);
    if (tool_stop) {
        fprintf(stderr, "cnnbench: stopped by a signal; %d result(s) completed%s\n", l.n,
                o.json ? ", written to the JSON file" : "");
        rc = 1;
    }
    if (o.json) rc |= write_json(o.json, &o, envs, n_env, &l);
    free(l.r);
    return rc;
}
