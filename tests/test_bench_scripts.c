/* test_bench_scripts.c — the PyTorch side of the benchmarks (bench/): bench/compare's ratio
 * table and bench/conv_ratio's per-pass figures on hand-written results of the shared JSON schema
 * (python3; skipped without), and bench/torch_reference.py on the CPU row for row against the
 * built cnnbench (skipped without a python that has torch). */
#include "test.h"

#include <sys/stat.h>
#include <unistd.h>

#include "bench_tool.h"
#include "torch_xref.h"

/* A results file of the shared JSON schema with one row. */
static bool write_results(const char *path, const char *tool, const char *device, const char *row)
{
    FILE *f = fopen(path, "w");
    if (!f) return false;
    fprintf(f,
            "{\"tool\": \"%s\", \"device\": \"%s\", \"backend\": \"cudnn\", "
            "\"tf32\": false, \"results\": [%s]}\n",
            tool, device, row);
    return fclose(f) == 0;
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
    FILE *f = NULL;
    snprintf(r1, sizeof r1, row, 300.0, 290.0, 310.0, 32 / 0.3, "ok");
    snprintf(r2, sizeof r2, row, 200.0, 195.0, 205.0, 32 / 0.2, "n/a");
    REQUIRE(write_results(a, "cnnbench", "cuda:0", r1) && write_results(b, "torch", "H100", r2));
    snprintf(cmd, sizeof cmd, "bench/compare %s %s", a, b);
    int rc = run_cmd(cmd, out, sizeof out);
    if (rc != 0 || !strstr(out, "1.50") || !strstr(out, "0.67") || !strstr(out, "resnet50"))
        cnn_test_fail(__FILE__, __LINE__, "%s: exit %d, output:\n%s", cmd, rc, out);
    snprintf(cmd, sizeof cmd, "bench/compare --markdown %s %s", a, b);
    rc = run_cmd(cmd, out, sizeof out);
    CHECK(rc == 0 && strstr(out, "| model | resnet50 | 32,3,224,224 | train |") != NULL);
    /* A --layers file holds the step and its layers: their totals are kept apart (the step was
     * added into its own layers' total). Layers 10 + 20 ms against 20 + 40: 0.50. */
    const char *lrow = "{\"mode\": \"layer\", \"name\": \"conv%d\", \"shape\": \"1\", \"pass\": "
                       "\"train\", \"median_ms\": %g, \"min_ms\": %g, \"max_ms\": %g, "
                       "\"check\": \"n/a\"}";
    char la[3][512], lb[3][512], all_a[1600], all_b[1600];
    snprintf(r1, sizeof r1, row, 300.0, 290.0, 310.0, 32 / 0.3, "ok");
    for (int i = 1; i <= 2; i++) {
        snprintf(la[i], sizeof la[i], lrow, i, 10.0 * i, 10.0 * i, 10.0 * i);
        snprintf(lb[i], sizeof lb[i], lrow, i, 20.0 * i, 20.0 * i, 20.0 * i);
    }
    snprintf(all_a, sizeof all_a, "%s, %s, %s", r1, la[1], la[2]);
    snprintf(all_b, sizeof all_b, "%s, %s, %s", r2, lb[1], lb[2]);
    REQUIRE(write_results(a, "cnnbench", "cuda:0", all_a) &&
            write_results(b, "torch", "H100", all_b));
    snprintf(cmd, sizeof cmd, "bench/compare %s %s", a, b);
    rc = run_cmd(cmd, out, sizeof out);
    if (rc != 0 || !strstr(out, "layer cudnn train 0.50; model cudnn train 1.50"))
        cnn_test_fail(__FILE__, __LINE__, "%s: exit %d, output:\n%s", cmd, rc, out);
    snprintf(cmd, sizeof cmd, "bench/compare --brief %s %s", a, b);
    rc = run_cmd(cmd, out, sizeof out);
    if (rc != 0 || !strstr(out, "count-weighted train 0.50"))
        cnn_test_fail(__FILE__, __LINE__, "%s: exit %d, output:\n%s", cmd, rc, out);
    /* A row of ours that failed its check is shown, left out of the mean, and makes exit 1. */
    snprintf(r1, sizeof r1, row, 100.0, 90.0, 110.0, 32 / 0.1, "mismatch");
    REQUIRE(write_results(a, "cnnbench", "cuda:0", r1));
    snprintf(cmd, sizeof cmd, "bench/compare --markdown %s %s", a, b);
    rc = run_cmd(cmd, out, sizeof out);
    if (rc != 1 || !strstr(out, "MISMATCH |") || !strstr(out, "over 0 rows") ||
        !strstr(out, "1 MISMATCH row(s) left out"))
        cnn_test_fail(__FILE__, __LINE__, "%s: exit %d, output:\n%s", cmd, rc, out);
    /* Our CPU rows are never paired with torch's GPU rows (nor their peaks compared). */
    char cpu_row[600];
    snprintf(r1, sizeof r1, row, 100.0, 90.0, 110.0, 32 / 0.1, "ok");
    snprintf(cpu_row, sizeof cpu_row, "{\"backend\": \"cpu\", %s", r1 + 1);
    REQUIRE(write_results(a, "cnnbench", "cpu", cpu_row));
    snprintf(cmd, sizeof cmd, "bench/compare %s %s", a, b);
    rc = run_cmd(cmd, out, sizeof out);
    CHECK(rc == 1 && strstr(out, "no result of") != NULL &&
          strstr(out, "kind of device: ours cpu, torch's gpu") != NULL);
    /* Throughputs divide in one unit: a file giving only GB/s against ours with GFLOP/s and
     * GB/s, at equal times, is 1.00, not 100 GFLOP/s over 5 GB/s. Runs that are not alike (TF32
     * on one side, an incomplete file, other repeats) are warned about. */
    const char *bn = "{\"mode\": \"bn\", \"name\": \"bn\", \"shape\": \"8,8,8,8\", \"pass\": "
                     "\"fwd\", \"median_ms\": 2, \"min_ms\": 2, \"max_ms\": 2, %s\"gbs\": 5, "
                     "\"check\": \"ok\"}";
    snprintf(r1, sizeof r1, bn, "\"gflops\": 100, ");
    snprintf(r2, sizeof r2, bn, "");
    REQUIRE(write_results(a, "cnnbench", "cuda:0", r1));
    f = fopen(b, "w");
    REQUIRE(f != NULL);
    fprintf(f, "{\"tool\": \"torch\", \"device\": \"cuda:0\", \"backend\": \"cudnn\", "
            "\"tf32\": true, \"iters\": 5, \"complete\": false, \"results\": [%s]}\n", r2);
    fclose(f);
    snprintf(cmd, sizeof cmd, "bench/compare --markdown %s %s", a, b);
    rc = run_cmd(cmd, out, sizeof out);
    if (rc != 0 || !strstr(out, "| 1.00 | 1.00 |") ||
        !strstr(out, "warning: TF32 settings differ: ours False, torch True") ||
        !strstr(out, "warning: torch's file is incomplete"))
        cnn_test_fail(__FILE__, __LINE__, "%s: exit %d, output:\n%s", cmd, rc, out);
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

TEST(bench_compare_pairs_repeated_keys_in_order)
{
    char out[8192], dir[64] = "/tmp/cnnbench_cmp.XXXXXX", a[128], b[128], cmd[512];
    if (!have_python() || access("bench/compare", X_OK) != 0) {
        cnn_test_skip("python3 or bench/compare (run from the repository root) not found");
        return;
    }
    REQUIRE(mkdtemp(dir) != NULL);
    snprintf(a, sizeof a, "%s/ours.json", dir);
    snprintf(b, sizeof b, "%s/torch.json", dir);
    /* torchvision's ResNet blocks call one relu module two or three times: torch's --layers
     * file has a row per call under one name, as ours has a row per layer. Rows of one key pair
     * in order (ours relu 1 and 2 ms with torch's 10 and 20 ms: 0.10 both; the third relu of
     * ours has no partner), a torch row is used once (its second conv1 is left over), and a row
     * torch has no module for (add) stays unmatched. Before, torch's rows of one key overwrote
     * each other: all three relu rows paired with the 20 ms call, and none was counted left. */
    const char *fmt = "{\"mode\": \"layer\", \"name\": \"%s\", \"shape\": \"1\", "
                      "\"pass\": \"train\", \"median_ms\": %g, \"min_ms\": %g, "
                      "\"max_ms\": %g, \"check\": \"n/a\"}";
    static const struct {
        const char *name;
        double ms;
    } mine[] = {{"conv1", 4}, {"layer1.0.relu", 1}, {"layer1.0.relu", 2},
                {"layer1.0.add", 5}, {"layer1.0.relu", 3}},
      refs[] = {{"conv1", 8}, {"layer1.0.relu", 10}, {"conv1", 9}, {"layer1.0.relu", 20}};
    char rows_a[2048] = "", rows_b[2048] = "", r[256];
    for (size_t i = 0; i < sizeof mine / sizeof *mine; i++) {
        snprintf(r, sizeof r, fmt, mine[i].name, mine[i].ms, mine[i].ms, mine[i].ms);
        snprintf(rows_a + strlen(rows_a), sizeof rows_a - strlen(rows_a), "%s%s", i ? ", " : "",
                 r);
    }
    for (size_t i = 0; i < sizeof refs / sizeof *refs; i++) {
        snprintf(r, sizeof r, fmt, refs[i].name, refs[i].ms, refs[i].ms, refs[i].ms);
        snprintf(rows_b + strlen(rows_b), sizeof rows_b - strlen(rows_b), "%s%s", i ? ", " : "",
                 r);
    }
    REQUIRE(write_results(a, "cnnbench", "cuda:0", rows_a) &&
            write_results(b, "torch", "cuda:0", rows_b));
    snprintf(cmd, sizeof cmd, "bench/compare --markdown %s %s", a, b);
    int rc = run_cmd(cmd, out, sizeof out);
    if (rc != 0 || !strstr(out, "| layer | conv1 | 1 | train | cudnn | 4.000 | 8.000 | 0.50 |") ||
        !strstr(out, "| layer1.0.relu | 1 | train | cudnn | 1.000 | 10.000 | 0.10 |") ||
        !strstr(out, "| layer1.0.relu | 1 | train | cudnn | 2.000 | 20.000 | 0.10 |") ||
        strstr(out, "3.000") || strstr(out, "layer1.0.add") ||
        !strstr(out, "over 3 rows (2 of ours and 1 of torch's unmatched)"))
        cnn_test_fail(__FILE__, __LINE__, "%s: exit %d, output:\n%s", cmd, rc, out);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
}

/* Writes a cnnbench-style conv JSON: one shape, three passes with the given times and check. */
static bool write_conv_json_checked(const char *path, const char *backend, const double ms[3],
                                    const char *check)
{
    FILE *f = fopen(path, "w");
    if (!f) return false;
    fprintf(f, "{\"tool\": \"cnnbench\", \"device\": \"x\", \"backend\": \"%s\", \"tf32\": false, "
               "\"results\": [", backend);
    const char *passes[3] = {"fwd", "bwd_data", "bwd_filter"};
    for (int i = 0; i < 3; i++)
        fprintf(f, "%s{\"mode\": \"conv\", \"backend\": \"%s\", \"name\": \"resnet50\", "
                   "\"shape\": \"64,64,56,56,64,3,3,1,1,1\", \"pass\": \"%s\", \"median_ms\": %g, "
                   "\"min_ms\": %g, \"max_ms\": %g, \"gflops\": 1, \"count\": 3, \"check\": "
                   "\"%s\"}",
                i ? ", " : "", backend, passes[i], ms[i], ms[i], ms[i], check);
    fprintf(f, "]}\n");
    return fclose(f) == 0;
}

static bool write_conv_json(const char *path, const char *backend, const double ms[3])
{
    return write_conv_json_checked(path, backend, ms, "ok");
}

TEST(bench_conv_ratio_per_pass)
{
    char out[8192], dir[64] = "/tmp/cnnbench_ratio.XXXXXX", a[128], b[128], cmd[512];
    if (!have_python() || access("bench/conv_ratio", X_OK) != 0) {
        cnn_test_skip("python3 or bench/conv_ratio (run from the repository root) not found");
        return;
    }
    REQUIRE(mkdtemp(dir) != NULL);
    snprintf(a, sizeof a, "%s/cuda.json", dir);
    snprintf(b, sizeof b, "%s/cudnn.json", dir);
    const double hand[3] = {2.0, 4.0, 1.0}, dnn[3] = {1.0, 1.0, 1.0};
    REQUIRE(write_conv_json(a, "cuda", hand) && write_conv_json(b, "cudnn", dnn));
    snprintf(cmd, sizeof cmd, "bench/conv_ratio %s %s", a, b);
    int rc = run_cmd(cmd, out, sizeof out);
    /* bwd_data at 0.25 misses the 0.5 goal: exit 3; fwd (0.50) and bwd_filter (1.00) meet it. */
    if (rc != 3 || !strstr(out, "fwd: cuda/cudnn 0.50") || !strstr(out, "goal >= 0.50 met") ||
        !strstr(out, "bwd_data: cuda/cudnn 0.25") || !strstr(out, "NOT met") ||
        !strstr(out, "bwd_filter: cuda/cudnn 1.00"))
        cnn_test_fail(__FILE__, __LINE__, "%s: exit %d, output:\n%s", cmd, rc, out);
    snprintf(cmd, sizeof cmd, "bench/conv_ratio --goal 0.2 --markdown %s %s", a, b);
    rc = run_cmd(cmd, out, sizeof out);
    CHECK(rc == 0 &&
          strstr(out, "| resnet50 | 64,64,56,56,64,3,3,1,1,1 | 3 | 0.50 | 0.25 | 1.00 |"));
    snprintf(cmd, sizeof cmd, "bench/conv_ratio --num cudnn --den cpu %s", b);
    CHECK(run_cmd(cmd, out, sizeof out) == 1 && strstr(out, "no conv row"));
    /* A fast row that failed its check counts in no figure, and fails the run. */
    const double fast[3] = {0.01, 0.01, 0.01};
    REQUIRE(write_conv_json_checked(a, "cuda", fast, "mismatch"));
    snprintf(cmd, sizeof cmd, "bench/conv_ratio %s %s", a, b);
    rc = run_cmd(cmd, out, sizeof out);
    if (rc != 3 || !strstr(out, "fwd: 1 row(s) MISMATCH, left out") || strstr(out, " met"))
        cnn_test_fail(__FILE__, __LINE__, "%s: exit %d, output:\n%s", cmd, rc, out);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
}

/* A cnnbench-style conv JSON of one backend: each of the n shapes at 1 ms in all three passes,
 * with "complete" as given. */
static bool write_conv_shapes(const char *path, const char *backend, const char *const *shapes,
                              int n, bool complete)
{
    FILE *f = fopen(path, "w");
    if (!f) return false;
    fprintf(f, "{\"tool\": \"cnnbench\", \"device\": \"x\", \"backend\": \"%s\", \"tf32\": false, "
               "\"complete\": %s, \"results\": [", backend, complete ? "true" : "false");
    const char *passes[3] = {"fwd", "bwd_data", "bwd_filter"};
    for (int s = 0; s < n; s++)
        for (int i = 0; i < 3; i++)
            fprintf(f, "%s{\"mode\": \"conv\", \"backend\": \"%s\", \"name\": \"resnet50\", "
                       "\"shape\": \"%s\", \"pass\": \"%s\", \"median_ms\": 1, \"min_ms\": 1, "
                       "\"max_ms\": 1, \"gflops\": 1, \"count\": 1, \"check\": \"ok\"}",
                    s || i ? ", " : "", backend, shapes[s], passes[i]);
    fprintf(f, "]}\n");
    return fclose(f) == 0;
}

TEST(bench_conv_ratio_fails_on_unpaired_rows_and_incomplete_files)
{
    char out[8192], dir[64] = "/tmp/cnnbench_ratio.XXXXXX", a[128], b[128], cmd[512];
    if (!have_python() || access("bench/conv_ratio", X_OK) != 0) {
        cnn_test_skip("python3 or bench/conv_ratio (run from the repository root) not found");
        return;
    }
    REQUIRE(mkdtemp(dir) != NULL);
    snprintf(a, sizeof a, "%s/cuda.json", dir);
    snprintf(b, sizeof b, "%s/cudnn.json", dir);
    /* cnnbench leaves out a shape whose timing failed: the cuda file lacks the stem's shape.
     * That shape is counted and named in every pass, no pass says the goal is met on what is
     * left, and the exit status is 3 (it was 0: the shape vanished from "the set"). */
    const char *both[2] = {"64,64,56,56,64,3,3,1,1,1", "64,3,224,224,64,7,7,2,3,1"};
    REQUIRE(write_conv_shapes(a, "cuda", both, 1, true) &&
            write_conv_shapes(b, "cudnn", both, 2, true));
    snprintf(cmd, sizeof cmd, "bench/conv_ratio %s %s", a, b);
    int rc = run_cmd(cmd, out, sizeof out);
    if (rc != 3 || count_of(out, ": 1 row(s) with no partner") != 3 ||
        count_of(out, "0 of cuda (-), 1 of cudnn (64,3,224,224,64,7,7,2,3,1)") != 3 ||
        count_of(out, "over the 1 paired shape(s) only") != 3 || strstr(out, " met"))
        cnn_test_fail(__FILE__, __LINE__, "%s: exit %d, output:\n%s", cmd, rc, out);
    /* The same the other way round (the numerator's side has the extra row). */
    snprintf(cmd, sizeof cmd, "bench/conv_ratio --num cudnn --den cuda %s %s", a, b);
    rc = run_cmd(cmd, out, sizeof out);
    if (rc != 3 || !strstr(out, "fwd: 1 row(s) with no partner, left out of the figures below: "
                                "1 of cudnn (64,3,224,224,64,7,7,2,3,1), 0 of cuda (-)"))
        cnn_test_fail(__FILE__, __LINE__, "%s: exit %d, output:\n%s", cmd, rc, out);
    /* Every row paired, but a file marked incomplete: warned about, and the run fails. */
    REQUIRE(write_conv_shapes(a, "cuda", both, 2, false));
    snprintf(cmd, sizeof cmd, "bench/conv_ratio %s %s", a, b);
    rc = run_cmd(cmd, out, sizeof out);
    if (rc != 3 || !strstr(out, "warning: ") || !strstr(out, "cuda.json is incomplete") ||
        strstr(out, "no partner") || count_of(out, "goal >= 0.50 met") != 3)
        cnn_test_fail(__FILE__, __LINE__, "%s: exit %d, output:\n%s", cmd, rc, out);
    /* Both complete and paired: the goal is met, exit 0. */
    REQUIRE(write_conv_shapes(a, "cuda", both, 2, true));
    rc = run_cmd(cmd, out, sizeof out);
    if (rc != 0 || count_of(out, "over the set") != 3)
        cnn_test_fail(__FILE__, __LINE__, "%s: exit %d, output:\n%s", cmd, rc, out);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
}

TEST(bench_torch_reference_refuses_what_cnnbench_refuses)
{
    char tool[512], cmd[1024], out[8192];
    if (!bench_path(tool, sizeof tool)) return;
    if (!have_python() || access("bench/torch_reference.py", R_OK) != 0) {
        cnn_test_skip("python3 or bench/torch_reference.py (run from the repository root) not "
                      "found");
        return;
    }
    /* A NAME but after model, an option given to a mode it does not apply to, and conv's --batch
     * with only --shape options: cnnbench refuses them (exit 2), and torch_reference.py refuses
     * them alike, before it imports torch (it ignored them: `conv vgg16` timed resnet50). */
    static const struct {
        const char *args, *why;
    } bad[] = {
        {"conv vgg16", "unexpected argument 'vgg16'"},
        {"gemm --shapes vgg16 --mnk 8,8,8", "--shapes does not apply to mode gemm"},
        {"gemm --batch 7 --mnk 8,8,8", "--batch does not apply to mode gemm"},
        {"conv --mnk 8,8,8", "--mnk does not apply to mode conv"},
        {"bn --layers", "--layers does not apply to mode bn"},
        {"pool --img-size 32", "--img-size does not apply to mode pool"},
        {"model lenet5 --shapes vgg16", "--shapes does not apply to mode model"},
        {"model lenet5 --shape 2,8,10,10,16,3,3,1,1", "--shape does not apply to mode model"},
        {"conv --shape 2,8,10,10,16,3,3,1,1 --batch 4", "--batch sets the batch of a shape set"},
        /* Shapes cnnbench refuses, refused before torch is needed. */
        {"conv --shape 1,2,3", "malformed --shape '1,2,3'"},
        {"conv --shape 1,3,8,8,4,3,3,1,1,2", "groups 2 must divide C 3 and K 4"},
        {"conv --shape 1,3,8,8,4,3,3,0,1", "only the padding may be 0"},
        {"conv --shape 1,3,2,2,4,7,7,1,1", "the kernel is larger than the padded input"},
        /* Accepted: the run goes on to the --json check, which both refuse with exit 2 too. */
        {"conv --shapes vgg16 --shape 2,8,10,10,16,3,3,1,1 --batch 4", "cannot write"},
        {"model lenet5 --layers --img-size 32 --batch 2", "cannot write"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        snprintf(cmd, sizeof cmd, "%s %s --warmup 0 --iters 1 --json /nonexistent/x.json", tool,
                 bad[i].args);
        int rc = run_cmd(cmd, out, sizeof out);
        if (rc != 2 || !strstr(out, bad[i].why))
            cnn_test_fail(__FILE__, __LINE__, "%s: exit %d, output:\n%s", cmd, rc, out);
        snprintf(cmd, sizeof cmd, "python3 bench/torch_reference.py %s --warmup 0 --iters 1 "
                 "--json /nonexistent/x.json", bad[i].args);
        rc = run_cmd(cmd, out, sizeof out);
        if (rc != 2 || !strstr(out, bad[i].why))
            cnn_test_fail(__FILE__, __LINE__, "%s: exit %d, output:\n%s", cmd, rc, out);
    }
}

TEST(bench_torch_reference_json_batch_is_the_shapes_shared_n)
{
    char tool[512], dir[64] = "/tmp/cnnbench_torch.XXXXXX", cmd[1024], path[128], out[8192];
    if (!bench_path(tool, sizeof tool)) return;
    const char *py = torch_python();
    if (!py || access("bench/torch_reference.py", R_OK) != 0) {
        cnn_test_skip("no python with torch, or not run from the repository root");
        return;
    }
    REQUIRE(mkdtemp(dir) != NULL);
    /* conv's "batch" is the shapes' shared N on both sides (torch's was --batch, 32 by
     * default, for --shape strings of N = 3), and null where their Ns differ. */
    static const struct {
        const char *args, *want;
    } cases[] = {
        {"--shape 3,2,4,4,2,1,1,1,0 --shape 3,2,5,5,2,1,1,1,0", "\"batch\": 3,"},
        {"--shape 2,2,4,4,2,1,1,1,0 --shape 3,2,4,4,2,1,1,1,0", "\"batch\": null,"},
        {"--shapes alexnet --batch 1 --shape 1,4,7,7,4,3,3,1,1", "\"batch\": 1,"},
    };
    snprintf(path, sizeof path, "%s/out.json", dir);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        for (int side = 0; side < 2; side++) {
            snprintf(cmd, sizeof cmd, "%s%s conv %s --warmup 0 --iters 1 --json %s%s",
                     side ? py : tool, side ? " bench/torch_reference.py" : "", cases[i].args,
                     path, side ? " --device cpu" : " --no-peak");
            int rc = run_cmd(cmd, out, sizeof out);
            const char *j = rc == 0 ? slurp(path) : NULL;
            if (!j || !strstr(j, cases[i].want))
                cnn_test_fail(__FILE__, __LINE__, "%s: exit %d, want %s in:\n%s", cmd, rc,
                              cases[i].want, j ? j : out);
        }
    }
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
}

TEST(bench_torch_memory_refuses_a_repeated_batch)
{
    char cmd[1024], dir[64] = "/tmp/cnnbench_mem.XXXXXX", json[128];
    static char out[1 << 14];
    if (!have_python() || access("bench/torch_memory.py", R_OK) != 0) {
        cnn_test_skip("python3 or bench/torch_memory.py (run from the repository root) not found");
        return;
    }
    REQUIRE(mkdtemp(dir) != NULL);
    snprintf(json, sizeof json, "%s/m.json", dir);
    /* A batch size given twice divided the line fit by zero after all the measuring, before
     * --json was written: it is refused up front (before torch is imported), with exit 2, as is
     * a size that is not a whole number >= 1. */
    static const struct {
        const char *batch, *why;
    } bad[] = {{"2,2", "batch size 2 is given twice"},
               {"2,3,2", "batch size 2 is given twice"},
               {"2,x", "want batch sizes >= 1"},
               {"0,2", "want batch sizes >= 1"}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        snprintf(cmd, sizeof cmd, "python3 bench/torch_memory.py --batch %s --model resnet18 "
                 "--img-size 32 --threads 1 --json %s", bad[i].batch, json);
        int rc = run_cmd(cmd, out, sizeof out);
        if (rc != 2 || !strstr(out, bad[i].why) || access(json, F_OK) == 0)
            cnn_test_fail(__FILE__, __LINE__, "%s: exit %d, output:\n%s", cmd, rc, out);
    }
    /* Distinct sizes in any order still measure and fit the line (with torch). */
    const char *py = torch_python();
    if (py) {
        snprintf(cmd, sizeof cmd, "%s bench/torch_memory.py --batch 3,2 --model resnet18 "
                 "--img-size 32 --threads 1 --json %s", py, json);
        int rc = run_cmd(cmd, out, sizeof out);
        const char *j = rc == 0 ? slurp(json) : NULL;
        if (!j || !strstr(j, "\"peak_fit_per_image_bytes\""))
            cnn_test_fail(__FILE__, __LINE__, "%s: exit %d, output:\n%s", cmd, rc, out);
    }
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
}

TEST(bench_torch_reference_cpu_matches_cnnbench_rows)
{
    char tool[512], dir[64] = "/tmp/cnnbench_torch.XXXXXX", cmd[1024];
    static char out[1 << 15];
    if (!bench_path(tool, sizeof tool)) return;
    const char *py = torch_python();
    if (!py || access("bench/torch_reference.py", R_OK) != 0) {
        cnn_test_skip("no python with torch, or not run from the repository root");
        return;
    }
    REQUIRE(mkdtemp(dir) != NULL);
    /* Each mode's rows must pair up one to one: compare reports no unmatched row on either
     * side, and no difference between the runs (the same thread count included: torch's own
     * default was the physical cores, 1 here, against cnnbench's 2). A set's rows are named as
     * the set and a --shape's "custom" on both sides. */
    const char *modes[] = {"conv --shape 2,4,9,9,6,3,3,2,1", "pool --batch 1",
                           "conv --shapes alexnet --batch 1 --shape 1,4,7,7,4,3,3,1,1,2",
                           "model lenet5 --batch 2 --layers"}; /* 2 model, 11 x 2 layer rows */
    const int rows[] = {3, 6, 18, 24};
    for (int i = 0; i < 4; i++) {
        snprintf(cmd, sizeof cmd,
                 "%s %s --warmup 0 --iters 1 --no-peak --json %s/ours.json >/dev/null && "
                 "%s bench/torch_reference.py %s --device cpu --warmup 0 --iters 1 "
                 "--json %s/torch.json >/dev/null && bench/compare %s/ours.json %s/torch.json",
                 tool, modes[i], dir, py, modes[i], dir, dir, dir);
        int rc = run_cmd(cmd, out, sizeof out);
        char want[80];
        snprintf(want, sizeof want, "over %d rows; 0 of ours and 0 of torch's unmatched", rows[i]);
        if (rc != 0 || !strstr(out, want) || strstr(out, "warning"))
            cnn_test_fail(__FILE__, __LINE__, "%s: exit %d, output:\n%s", modes[i], rc, out);
        if (i == 2) {
            snprintf(cmd, sizeof cmd, "%s/ours.json", dir);
            const char *j = slurp(cmd);
            CHECK(j && count_of(j, "\"name\": \"custom\"") == 3 &&
                  count_of(j, "\"name\": \"alexnet\"") == 15);
        }
    }
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
}
