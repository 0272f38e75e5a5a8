/* test_cnnbench.c — runs the built cnnbench (from $CNN_TOOLS_DIR, else build/bin; skipped when
 * absent) on tiny problems: exit codes and messages for bad command lines, the JSON it writes,
 * the summary totals, the shape tables against the zoo, and that its output check catches a
 * corrupted result. Also bench/compare and the shared JSON schema (python3; skipped without). */
#include "test.h"

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static bool bench_path(char *buf, size_t n) { return cnn_test_tool_path("cnnbench", buf, n); }

/* Runs a shell command with stdout and stderr captured into out (truncated to n); returns the
 * exit status, or -1 when it did not exit normally. */
static int run_cmd(const char *cmd, char *out, size_t n)
{
    char full[4096];
    snprintf(full, sizeof full, "%s 2>&1", cmd);
    return cnn_test_capture(full, out, n);
}

static int run_bench(const char *tool, const char *env, const char *args, char *out, size_t n)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s %s %s%s", env, tool, args,
             strstr(args, "--warmup") ? " --no-peak" : "");
    return run_cmd(cmd, out, n);
}

static bool have_python(void)
{
    return system("python3 -c 'import json' >/dev/null 2>&1") == 0;
}

static int count_of(const char *s, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(s, needle); p; p = strstr(p + 1, needle)) n++;
    return n;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    return buf;
}

TEST(cnnbench_rejects_bad_arguments_with_exit_2)
{
    char tool[512], out[8192];
    if (!bench_path(tool, sizeof tool)) return;
    const struct {
        const char *args, *msg;
    } cases[] = {
        {"", "no mode given"},
        {"convolve", "unknown mode 'convolve'"},
        {"conv --shape 1,2,3", "malformed --shape '1,2,3'"},
        {"conv --shape 1,8,8,8,8,3,3,1,x", "malformed --shape"},
        {"conv --shape 1,6,8,8,8,3,3,1,1,4", "groups 4 must divide"},
        {"conv --shapes resnet51", "unknown shape set 'resnet51'"},
        {"model resnet51", "unknown model 'resnet51'"},
        {"summary", "needs a model name"},
        {"gemm --backend tpu", "unknown backend 'tpu'"},
        {"gemm --iters 0", "malformed --iters"},
        {"gemm --frobnicate 3", "unknown option '--frobnicate'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int rc = run_bench(tool, "", cases[i].args, out, sizeof out);
        if (rc != 2 || !strstr(out, cases[i].msg) || count_of(out, "\n") != 1)
            cnn_test_fail(__FILE__, __LINE__,
                          "cnnbench %s: exit %d, output '%s' (want exit 2, "
                          "one line with '%s')",
                          cases[i].args, rc, out, cases[i].msg);
    }
    CHECK(run_bench(tool, "", "--help", out, sizeof out) == 0 && strstr(out, "usage: cnnbench"));
}

TEST(cnnbench_summary_resnet50_totals)
{
    char tool[512];
    static char out[1 << 16];
    if (!bench_path(tool, sizeof tool)) return;
    REQUIRE(run_bench(tool, "", "summary resnet50", out, sizeof out) == 0);
    CHECK(strstr(out, "total params 25,557,032") != NULL);
    CHECK(strstr(out, "4.09 GMACs") != NULL);
    CHECK(strstr(out, "layer4.2.conv3") != NULL);
    REQUIRE(run_bench(tool, "", "summary lenet5", out, sizeof out) == 0);
    CHECK(strstr(out, "total params 61,706") != NULL);
}

TEST(cnnbench_conv_shape_tables_match_the_zoo)
{
    char tool[512], out[8192];
    if (!bench_path(tool, sizeof tool)) return;
    const struct {
        const char *set;
        int rows;
    } sets[] = {{"resnet50", 23}, {"vgg16", 9}, {"alexnet", 5}};
    for (int i = 0; i < 3; i++) {
        char args[128];
        snprintf(args, sizeof args, "conv --shapes %s --list --batch 4", sets[i].set);
        int rc = run_bench(tool, "", args, out, sizeof out);
        if (rc != 0 || !strstr(out, "verified against the zoo summary") ||
            count_of(out, "\n4,") != sets[i].rows - 1)
            cnn_test_fail(__FILE__, __LINE__, "%s: exit %d, output:\n%s", sets[i].set, rc, out);
    }
}

TEST(cnnbench_conv_cpu_json)
{
    char tool[512], out[16384], json[64] = "/tmp/cnnbench_test.XXXXXX";
    if (!bench_path(tool, sizeof tool)) return;
    int fd = mkstemp(json);
    REQUIRE(fd >= 0);
    close(fd);
    char args[256];
    snprintf(args, sizeof args,
             "conv --shape 2,4,9,9,6,3,3,2,1 --shape 1,4,7,7,4,3,3,1,1,2 "
             "--warmup 1 --iters 2 --json %s",
             json);
    int rc = run_bench(tool, "", args, out, sizeof out);
    CHECK(rc == 0);
    CHECK(count_of(out, "  ok") == 6);
    CHECK(strstr(out, "MISMATCH") == NULL);
    const char *j = slurp(json);
    REQUIRE(j != NULL);
    CHECK(j[0] == '{');
    const char *keys[] = {"\"tool\": \"cnnbench\"",
                          "\"device\":",
                          "\"backend\": \"cpu\"",
                          "\"tf32\": false",
                          "\"results\": [",
                          "\"pass\": \"bwd_filter\"",
                          "\"shape\": \"2,4,9,9,6,3,3,2,1,1\"",
                          "\"check\": \"ok\""};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
        if (!strstr(j, keys[i]))
            cnn_test_fail(__FILE__, __LINE__, "JSON lacks %s:\n%s", keys[i], j);
    CHECK(count_of(j, "\"median_ms\": ") == 6);
    const char *res = strstr(j, "\"results\"");
    REQUIRE(res != NULL);
    const char *m = strstr(res, "\"median_ms\": ");
    REQUIRE(m != NULL);
    double med = strtod(m + 13, NULL);
    CHECK(med > 0 && med < 1e4);
    const char *g = strstr(res, "\"gflops\": ");
    CHECK(g && strtod(g + 10, NULL) > 0);
    if (have_python()) {
        char cmd[512];
        snprintf(cmd, sizeof cmd, "python3 -c 'import json,sys; json.load(open(sys.argv[1]))' %s",
                 json);
        CHECK(run_cmd(cmd, out, sizeof out) == 0);
        snprintf(cmd, sizeof cmd, "python3 bench/torch_reference.py --check-schema %s", json);
        if (access("bench/torch_reference.py", R_OK) == 0) {
            rc = run_cmd(cmd, out, sizeof out);
            if (rc != 0 || !strstr(out, "schema ok (6 results)"))
                cnn_test_fail(__FILE__, __LINE__, "%s: exit %d: %s", cmd, rc, out);
        }
    }
    unlink(json);
}

TEST(cnnbench_check_catches_a_corrupted_result)
{
    char tool[512], out[16384];
    if (!bench_path(tool, sizeof tool)) return;
    const char *args[] = {"conv --shape 1,4,8,8,4,3,3,1,1 --warmup 0 --iters 1",
                          "gemm --mnk 16,8,4 --warmup 0 --iters 1",
                          "elementwise --batch 1 --warmup 0 --iters 1"};
    for (int i = 0; i < 3; i++) {
        int rc = run_bench(tool, "CNNBENCH_CORRUPT=1", args[i], out, sizeof out);
        if (rc == 0 || !strstr(out, "MISMATCH max_err="))
            cnn_test_fail(__FILE__, __LINE__, "corrupted %s: exit %d, output:\n%s", args[i], rc,
                          out);
        rc = run_bench(tool, "CNNBENCH_CORRUPT=0", args[i], out, sizeof out);
        if (rc != 0 || strstr(out, "MISMATCH"))
            cnn_test_fail(__FILE__, __LINE__, "clean %s: exit %d, output:\n%s", args[i], rc, out);
    }
}

TEST(cnnbench_other_modes_cpu)
{
    char tool[512];
    static char out[1 << 16];
    if (!bench_path(tool, sizeof tool)) return;
    int rc = run_bench(tool, "", "pool --batch 1 --warmup 0 --iters 1", out, sizeof out);
    CHECK(rc == 0 && count_of(out, "fwd ") == 3 && count_of(out, "  ok") == 3);
    rc = run_bench(tool, "", "model lenet5 --batch 2 --warmup 1 --iters 2 --layers", out,
                   sizeof out);
    if (rc != 0 || !strstr(out, "img/s") || !strstr(out, " train ") || !strstr(out, " infer ") ||
        !strstr(out, "conv2 ") || !strstr(out, "fc3 ") || !strstr(out, "peak host memory"))
        cnn_test_fail(__FILE__, __LINE__, "model lenet5: exit %d, output:\n%s", rc, out);
    rc = run_bench(tool, "", "model lenet5 --backend cuda --iters 1", out, sizeof out);
    if (cnn_cuda_device_count() == 0) CHECK(rc == 1 && strstr(out, "backend cuda: "));
}

GPU_TEST(cnnbench_gpu_backends_check_ok)
{
    char tool[512];
    static char out[1 << 16];
    if (!bench_path(tool, sizeof tool)) return;
    int rc = run_bench(tool, "",
                       "conv --backend all --shape 2,8,15,15,16,3,3,2,1 --warmup 1 "
                       "--iters 2",
                       out, sizeof out);
    if (rc != 0 || count_of(out, "  ok") < 9 || strstr(out, "MISMATCH"))
        cnn_test_fail(__FILE__, __LINE__, "conv --backend all: exit %d, output:\n%s", rc, out);
    rc = run_bench(tool, "", "model lenet5 --backend cudnn --batch 8 --iters 2", out, sizeof out);
    CHECK(rc == 0 && count_of(out, "  ok") == 2);
}

TEST(bench_compare_prints_ratios)
{
    char out[8192], dir[64] = "/tmp/cnnbench_cmp.XXXXXX", a[128], b[128], cmd[512];
    if (!have_python() || access("bench/compare", X_OK) != 0) {
        cnn_test_skip("python3 or bench/compare (run from the repository root) not found");
        return;
    }
    REQUIRE(mkdtemp(dir) != NULL);
    snprintf(a, sizeof a, "%s/ours.json", dir);
    snprintf(b, sizeof b, "%s/torch.json", dir);
    const char *row = "{\"mode\": \"model\", \"name\": \"resnet50\", \"shape\": \"32,3,224,224\", "
                      "\"pass\": \"train\", \"median_ms\": %g, \"min_ms\": %g, \"max_ms\": %g, "
                      "\"img_per_s\": %g, \"check\": \"%s\"}";
    char r1[512], r2[512];
    snprintf(r1, sizeof r1, row, 300.0, 290.0, 310.0, 32 / 0.3, "ok");
    snprintf(r2, sizeof r2, row, 200.0, 195.0, 205.0, 32 / 0.2, "n/a");
    FILE *f = fopen(a, "w");
    REQUIRE(f != NULL);
    fprintf(f,
            "{\"tool\": \"cnnbench\", \"device\": \"cuda:0\", \"backend\": \"cudnn\", "
            "\"tf32\": false, \"results\": [%s]}\n",
            r1);
    fclose(f);
    f = fopen(b, "w");
    REQUIRE(f != NULL);
    fprintf(f,
            "{\"tool\": \"torch\", \"device\": \"H100\", \"backend\": \"cudnn\", "
            "\"tf32\": false, \"results\": [%s]}\n",
            r2);
    fclose(f);
    snprintf(cmd, sizeof cmd, "bench/compare %s %s", a, b);
    int rc = run_cmd(cmd, out, sizeof out);
    if (rc != 0 || !strstr(out, "1.50") || !strstr(out, "0.67") || !strstr(out, "resnet50"))
        cnn_test_fail(__FILE__, __LINE__, "%s: exit %d, output:\n%s", cmd, rc, out);
    snprintf(cmd, sizeof cmd, "bench/compare --markdown %s %s", a, b);
    rc = run_cmd(cmd, out, sizeof out);
    CHECK(rc == 0 && strstr(out, "| model | resnet50 | 32,3,224,224 | train |") != NULL);
    /* A file that breaks the schema is refused with exit 2. */
    f = fopen(b, "w");
    REQUIRE(f != NULL);
    fprintf(f, "{\"tool\": \"torch\", \"results\": []}\n");
    fclose(f);
    snprintf(cmd, sizeof cmd, "bench/compare %s %s", a, b);
    rc = run_cmd(cmd, out, sizeof out);
    CHECK(rc == 2 && strstr(out, "missing top-level key 'device'") != NULL);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
}
