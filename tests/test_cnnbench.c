/* test_cnnbench.c — runs the built cnnbench (from $CNN_TOOLS_DIR, else build/bin; skipped when
 * absent) on tiny problems: exit codes and messages for bad command lines, the JSON it writes,
 * the summary totals, the shape tables against the zoo, the loader mode, and that its output
 * check catches a corrupted result, and its stop signals (the bench/ scripts' tests are
 * test_bench_scripts.c's). */
#include "test.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_tool.h"
#include "data_fixtures.h"

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
        {"model resnet51", "unknown model 'resnet51' (known: lenet5, alexnet, "},
        {"summary", "needs a model name (lenet5, alexnet, "},
        {"gemm --backend tpu", "unknown backend 'tpu'"},
        {"gemm --iters 0", "malformed --iters '0' (want a whole number >= 1)"},
        {"loader fashion-mnist --workers 0", "malformed --workers '0' (want a whole number >= 1)"},
        {"gemm --frobnicate 3", "unknown option '--frobnicate'"},
        {"loader", "loader needs a data folder"},
        {"loader fashion-mnist --workers 65", "--workers 65: at most 64"},
        {"gemm --json --list", "option '--json' needs a value, not '--list'"},
        {"conv --graph", "--graph does not apply to mode conv (only to model)"},
        {"bn --shape 1,1,1,1,1,1,1,1,0", "--shape does not apply to mode bn"},
        {"conv --mnk 4,4,4", "--mnk does not apply to mode conv"},
        {"pool --layers", "--layers does not apply to mode pool"},
        {"model lenet5 --img-size 8", "--img-size 8: lenet5: input 8x8"},
        {"summary lenet5 --img-size 4", "--img-size 4: lenet5"},
        {"model lenet5 --graph", "--graph: CUDA graphs need a GPU backend"},
        /* summary and conv --list time nothing: no JSON, no timing options, no batch */
        {"summary lenet5 --json /tmp/cnnbench_never.json",
         "--json does not apply to mode summary, which times nothing"},
        {"conv --list --json /tmp/cnnbench_never.json",
         "--json does not apply to conv --list, which times nothing"},
        {"summary lenet5 --batch 7", "--batch does not apply to mode summary"},
        {"summary lenet5 --iters 5", "--iters does not apply to mode summary"},
        {"summary lenet5 --tf32", "--tf32 does not apply to mode summary"},
        /* an option that would be ignored is refused */
        {"conv --shape 1,8,8,8,8,3,3,1,1 --batch 64",
         "--batch sets the batch of a shape set (--shapes); each --shape gives its own N"},
        {"gemm --mnk 8,8,8 --tf32", "--tf32: TF32 is a GPU math mode"},
        {"conv --shapes vgg16 --list --backend all", "--backend does not apply to conv --list"},
        {"conv --list --no-peak", "--no-peak does not apply to conv --list"},
        /* found before any timing, not after it */
        {"gemm --mnk 8,8,8 --warmup 0 --iters 1 --json /nonexistent/dir/x.json",
         "cannot write /nonexistent/dir/x.json: No such file or directory"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int rc = run_bench(tool, "", cases[i].args, out, sizeof out);
        if (rc != 2 || !strstr(out, cases[i].msg) || count_of(out, "\n") != 1)
            cnn_test_fail(__FILE__, __LINE__,
                          "cnnbench %s: exit %d, output '%s' (want exit 2, "
                          "one line with '%s')",
                          cases[i].args, rc, out, cases[i].msg);
    }
    CHECK(access("/tmp/cnnbench_never.json", F_OK) != 0);
    CHECK(run_bench(tool, "", "--help", out, sizeof out) == 0 && strstr(out, "usage: cnnbench"));
}

/* The --json file is probed before the timing: one that did not exist is not left behind
 * when the run writes nothing, and one that existed is not changed by the probe. */
TEST(cnnbench_json_probe_leaves_no_file)
{
    char tool[512], out[8192], json[64], args[256];
    if (!bench_path(tool, sizeof tool)) return;
    snprintf(json, sizeof json, "/tmp/cnnbench_probe_%d.json", (int)getpid());
    unlink(json);
    /* --backend cuda fails on a CPU-only build before writing anything; elsewhere it writes */
    snprintf(args, sizeof args, "gemm --mnk 8,8,8 --warmup 0 --iters 1 --backend cuda --json %s",
             json);
    int rc = run_bench(tool, "", args, out, sizeof out);
    CHECK(rc == 0 ? access(json, F_OK) == 0 : access(json, F_OK) != 0);
    unlink(json);
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
    CHECK(strstr(out, "total params 61,706, 0.42 MMACs per image") != NULL); /* not 0.00 GMACs */
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
                          "\"fusion\": true",
                          "\"results\": [",
                          "\"pass\": \"bwd_filter\"",
                          "\"shape\": \"2,4,9,9,6,3,3,2,1,1\"",
                          "\"check\": \"ok\"",
                          "\"timer_overhead_ms\": "};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
        if (!strstr(j, keys[i]))
            cnn_test_fail(__FILE__, __LINE__, "JSON lacks %s:\n%s", keys[i], j);
    CHECK(count_of(j, "\"median_ms\": ") == 6 && strstr(j, "\"complete\": true"));
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
    /* A row that could not run (4 TB of input) leaves the file marked incomplete: it said
     * "complete": true after the failed run, and bench/compare took it as a whole. (Under
     * AddressSanitizer such a malloc aborts unless told to return NULL, as malloc does.) */
    snprintf(args, sizeof args,
             "conv --shape 1,4,7,7,4,3,3,1,1 --shape 1000,1000,1000,1000,1,1,1,1,0 --warmup 0 "
             "--iters 1 --no-peak --json %s", json);
    rc = run_bench(tool, "ASAN_OPTIONS=\"$ASAN_OPTIONS:allocator_may_return_null=1\"", args, out,
                   sizeof out);
    CHECK(rc == 1 && strstr(out, "out of host memory"));
    j = slurp(json); /* a static buffer, rewritten */
    CHECK(j && strstr(j, "\"complete\": false") && count_of(j, "\"median_ms\": ") == 3);
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
        /* The error reported is the corruption's (over 1), not what the other values left. */
        for (const char *m = strstr(out, "MISMATCH max_err="); m;
             m = strstr(m + 1, "MISMATCH max_err="))
            if (!(atof(m + 17) >= 1.0))
                cnn_test_fail(__FILE__, __LINE__, "corrupted %s: %.30s", args[i], m);
        if (i == 0) { /* and so is the JSON's */
            char json[64], jargs[256];
            snprintf(json, sizeof json, "/tmp/cnnbench_corrupt_%d.json", (int)getpid());
            snprintf(jargs, sizeof jargs, "%s --json %s", args[i], json);
            run_bench(tool, "CNNBENCH_CORRUPT=1", jargs, out, sizeof out);
            const char *j = slurp(json), *m = j ? strstr(j, "\"max_err\": ") : NULL;
            CHECK(j && count_of(j, "\"check\": \"mismatch\", \"max_err\": ") == 3);
            CHECK(m && atof(m + 11) >= 1.0);
            unlink(json);
        }
        rc = run_bench(tool, "CNNBENCH_CORRUPT=0", args[i], out, sizeof out);
        if (rc != 0 || strstr(out, "MISMATCH"))
            cnn_test_fail(__FILE__, __LINE__, "clean %s: exit %d, output:\n%s", args[i], rc, out);
    }
}

/* A fixed shift of the middle element (CNNBENCH_CORRUPT=abs=D): a check that reads every element
 * with its stated tolerance flags it in every pass and reports about D as the error. D is a few
 * times the FP32 tolerance at these shapes (conv: 2e-5 * sum|terms| + 1e-5, about 2.5e-4 for
 * bwd_filter; gemm about 3e-5; elementwise about 1e-6), so a check that skips the middle or is
 * several times looser lets it through. CNNBENCH_CORRUPT_CHECK limits the corruption to one
 * named check, and that check alone must fail the run: here bwd_data, and model mode's eval. */
TEST(cnnbench_check_catches_a_small_shift_in_the_middle)
{
    char tool[512], out[16384], env[128];
    if (!bench_path(tool, sizeof tool)) return;
    const struct {
        const char *args;
        double d;
        int rows;
    } cases[] = {{"conv --shape 1,4,8,8,4,3,3,1,1 --warmup 0 --iters 1", 1e-3, 3},
                 {"gemm --mnk 16,8,4 --warmup 0 --iters 1", 3e-4, 1},
                 {"elementwise --batch 1 --warmup 0 --iters 1", 1e-5, 3}};
    for (int i = 0; i < 3; i++) {
        snprintf(env, sizeof env, "CNNBENCH_CORRUPT=abs=%g", cases[i].d);
        int rc = run_bench(tool, env, cases[i].args, out, sizeof out);
        if (rc == 0 || count_of(out, "MISMATCH max_err=") != cases[i].rows)
            cnn_test_fail(__FILE__, __LINE__, "%s %s: exit %d, output:\n%s", env, cases[i].args,
                          rc, out);
        for (const char *m = strstr(out, "max_err="); m; m = strstr(m + 1, "max_err="))
            if (!(atof(m + 8) >= 0.5 * cases[i].d && atof(m + 8) <= 2 * cases[i].d))
                cnn_test_fail(__FILE__, __LINE__, "%s %s: %.30s", env, cases[i].args, m);
    }
    const char *only = "CNNBENCH_CORRUPT=abs=1e-3 CNNBENCH_CORRUPT_CHECK=bwd_data";
    int rc = run_bench(tool, only, cases[0].args, out, sizeof out);
    const char *bad = strstr(out, "MISMATCH");
    if (rc == 0 || count_of(out, "MISMATCH") != 1 || !bad || !strstr(out, " bwd_data ") ||
        strstr(out, " bwd_data ") > bad || count_of(out, "  ok") != 2)
        cnn_test_fail(__FILE__, __LINE__, "%s: exit %d, output:\n%s", only, rc, out);
    /* model mode's checks compare whole tensors (tolerance about 2e-3 of the largest logit);
     * batch 4 gives 40 logits, whose middle a check sampling 8 or 16 of them would miss */
    const char *model = "model lenet5 --batch 4 --warmup 0 --iters 1";
    for (int k = 0; k < 2; k++) {
        snprintf(env, sizeof env, "CNNBENCH_CORRUPT=abs=0.02 CNNBENCH_CORRUPT_CHECK=%s",
                 k ? "train" : "eval");
        rc = run_bench(tool, env, model, out, sizeof out);
        const char *row = strstr(out, k ? " train " : " infer ");
        const char *eol = row ? strchr(row, '\n') : NULL, *mm = strstr(out, "MISMATCH");
        if (rc == 0 || count_of(out, "MISMATCH") != 1 || !eol || !mm || mm < row || mm > eol ||
            count_of(out, "  ok ") != 1)
            cnn_test_fail(__FILE__, __LINE__, "%s %s: exit %d, output:\n%s", env, model, rc, out);
    }
    /* The gradients are checked whole (relative L2 within a measured bound: bench_model.c), and
     * a wrong one fails the train row alone and is named. */
    rc = run_bench(tool, "CNNBENCH_CORRUPT=1 CNNBENCH_CORRUPT_CHECK=grad", model, out, sizeof out);
    const char *row = strstr(out, " train "), *mm = strstr(out, "MISMATCH max_err=");
    if (rc == 0 || count_of(out, "MISMATCH") != 1 || !row || !mm || mm < row ||
        mm > strchr(row, '\n') || count_of(out, "  ok ") != 1 ||
        !strstr(out, "the gradient of conv1.weight differs") || !(atof(mm + 17) >= 1.0))
        cnn_test_fail(__FILE__, __LINE__, "corrupted gradients, %s: exit %d, output:\n%s", model,
                      rc, out);
    /* The optimizer update the timed step ends with is checked too (every parameter against
     * p - lr * grad after one SGD step), and a wrong one fails the train row. */
    rc = run_bench(tool, "CNNBENCH_CORRUPT=1 CNNBENCH_CORRUPT_CHECK=update", model, out,
                   sizeof out);
    row = strstr(out, " train ");
    mm = strstr(out, "MISMATCH");
    if (rc == 0 || count_of(out, "MISMATCH") != 1 || !row || !mm || mm < row ||
        mm > strchr(row, '\n') || !strstr(out, "the SGD step moved conv1.weight"))
        cnn_test_fail(__FILE__, __LINE__, "corrupted update, %s: exit %d, output:\n%s", model,
                      rc, out);
}

TEST(cnnbench_other_modes_cpu)
{
    char tool[512];
    static char out[1 << 16];
    if (!bench_path(tool, sizeof tool)) return;
    int rc = run_bench(tool, "", "pool --batch 1 --warmup 0 --iters 1", out, sizeof out);
    /* both passes checked against direct loops, backward too */
    CHECK(rc == 0 && count_of(out, "fwd ") == 3 && count_of(out, "  ok") == 6);
    rc = run_bench(tool, "", "model lenet5 --batch 2 --warmup 1 --iters 2 --layers", out,
                   sizeof out);
    if (rc != 0 || !strstr(out, "img/s") || !strstr(out, " train ") || !strstr(out, " infer ") ||
        !strstr(out, "conv2 ") || !strstr(out, "fc3 ") || !strstr(out, "peak host memory") ||
        !strstr(out, "pool2                        AvgPool2d         (2, 16, 10, 10)"))
        cnn_test_fail(__FILE__, __LINE__, "model lenet5: exit %d, output:\n%s", rc, out);
    /* fused (the default): checked against the layers run alone; --no-fusion: nothing to check */
    if (!strstr(out, "| fusion on |") || count_of(out, "  ok ") != 2)
        cnn_test_fail(__FILE__, __LINE__, "model lenet5 fused: output:\n%s", out);
    rc = run_bench(tool, "", "model lenet5 --batch 2 --warmup 0 --iters 1 --no-fusion", out,
                   sizeof out);
    if (rc != 0 || !strstr(out, "| fusion off |") || count_of(out, "  n/a ") != 2)
        cnn_test_fail(__FILE__, __LINE__, "model lenet5 --no-fusion: exit %d, output:\n%s", rc,
                      out);
    rc = run_bench(tool, "", "model lenet5 --backend cuda --warmup 0 --iters 1", out, sizeof out);
    if (cnn_cuda_device_count() == 0) CHECK(rc == 1 && strstr(out, "backend cuda: "));
}

GPU_TEST(cnnbench_gpu_backends_check_ok)
{
    char tool[512], json[64] = "/tmp/cnnbench_gpu.XXXXXX", args[256];
    static char out[1 << 16];
    if (!bench_path(tool, sizeof tool)) return;
    int fd = mkstemp(json);
    REQUIRE(fd >= 0);
    close(fd);
    snprintf(args, sizeof args,
             "conv --backend all --shape 2,8,15,15,16,3,3,2,1 --warmup 1 --iters 2 --json %s",
             json);
    int rc = run_bench(tool, "", args, out, sizeof out);
    const int gpu_rows = cnn_built_with_cudnn() ? 6 : 3; /* cuda (+ cudnn), three passes each */
    if (rc != 0 || count_of(out, "  ok") != 3 + gpu_rows || strstr(out, "MISMATCH"))
        cnn_test_fail(__FILE__, __LINE__, "conv --backend all: exit %d, output:\n%s", rc, out);
    /* The GPU's name, not an ordinal; each cuDNN row names the algorithm cuDNN chose, each
     * hand-written row says so. */
    char name[128] = "", want[160];
    CHECK_OK(cnn_cuda_device_name(0, name, sizeof name));
    snprintf(want, sizeof want, "\"device\": \"%s\"", name);
    const char *j = slurp(json);
    REQUIRE(j != NULL);
    CHECK(name[0] && strstr(j, want) != NULL);
    CHECK(count_of(j, "\"algo\": \"hand-written\"") == 3);
    CHECK(count_of(j, "\"algo\": ") == gpu_rows);
    CHECK(count_of(out, "algo hand-written") == 3 && count_of(out, "  algo ") == gpu_rows);
    unlink(json);
    /* Train and infer rows per GPU backend, each checked against the CPU library. */
    rc = run_bench(tool, "", "model lenet5 --backend gpu --batch 8 --warmup 1 --iters 2", out,
                   sizeof out);
    if (rc != 0 || count_of(out, "  ok") != 2 * gpu_rows / 3)
        cnn_test_fail(__FILE__, __LINE__, "model lenet5 --backend gpu: exit %d, output:\n%s", rc,
                      out);
}

/* --graph: the steps are replayed from a CUDA graph, and a replay's result is checked against
 * the step run op by op; a wrong one fails its row, a right one with dropout passes. */
GPU_TEST(cnnbench_graph_replays_are_checked)
{
    char tool[512];
    static char out[1 << 16];
    if (!bench_path(tool, sizeof tool)) return;
    const char *args = "model lenet5 --backend cuda --batch 8 --graph --warmup 1 --iters 2";
    int rc = run_bench(tool, "", args, out, sizeof out);
    if (rc != 0 || !strstr(out, "| CUDA graph replays |") || count_of(out, "  ok ") != 2)
        cnn_test_fail(__FILE__, __LINE__, "%s: exit %d, output:\n%s", args, rc, out);
    rc = run_bench(tool, "CNNBENCH_CORRUPT=1 CNNBENCH_CORRUPT_CHECK='graph train loss'", args, out,
                   sizeof out);
    const char *row = strstr(out, " train "), *mm = strstr(out, "MISMATCH");
    if (rc != 1 || count_of(out, "MISMATCH") != 1 || !row || !mm || mm < row ||
        mm > strchr(row, '\n') || count_of(out, "  ok ") != 1)
        cnn_test_fail(__FILE__, __LINE__, "corrupted graph loss: exit %d, output:\n%s", rc, out);
    /* A model with dropout: the replay draws its masks from where the op-by-op step drew them,
     * so its loss matches (a replay drawing from after the step's draws was off by 1e-2). */
    const char *drop = "model alexnet --backend cuda --batch 1 --img-size 63 --graph --warmup 0 "
                       "--iters 1 --no-peak";
    rc = run_bench(tool, "", drop, out, sizeof out);
    if (rc != 0 || count_of(out, "  ok ") != 2 || strstr(out, "MISMATCH"))
        cnn_test_fail(__FILE__, __LINE__, "%s: exit %d, output:\n%s", drop, rc, out);
}

TEST(cnnbench_loader_mode_on_a_folder)
{
    char tool[512], root[64], args[256], json[96], out[8192];
    if (!bench_path(tool, sizeof tool)) return;
    REQUIRE(data_test_make_tree(root) == 0);
    snprintf(json, sizeof json, "%s/loader.json", root);
    /* A val/ split beside train/: the tree's training images are train/'s alone. */
    char path[256];
    snprintf(path, sizeof path, "%s/val", root);
    REQUIRE(mkdir(path, 0755) == 0);
    snprintf(path, sizeof path, "%s/val/a_cat", root);
    REQUIRE(mkdir(path, 0755) == 0 && data_test_write_image(path, "v.png", 8, 8, 3, 9) == 0);
    /* 7 good images, batch 2: the 5 batches wrap into a second epoch. */
    snprintf(args, sizeof args,
             "loader %s --workers 2 --batch 2 --img-size 16 --warmup 1 --iters 4 --json %s", root,
             json);
    int rc = run_bench(tool, "", args, out, sizeof out);
    /* The 4 timed batches hold 7 images (the epoch's last batch holds one). */
    if (rc != 0 || !strstr(out, "delivered ") || !strstr(out, "of 2 worker(s) that decoded") ||
        !strstr(out, "2,3,16,16,w2") || !strstr(out, ": 10 training images") ||
        !strstr(out, "(7 images in "))
        cnn_test_fail(__FILE__, __LINE__, "%s: exit %d, output:\n%s", args, rc, out);
    const char *j = slurp(json);
    CHECK(j && strstr(j, "\"mode\": \"loader\"") && strstr(j, "\"worker_img_per_s\": ") &&
          strstr(j, "\"img_per_s\": "));
    snprintf(args, sizeof args, "loader %s/nothing --iters 1", root);
    rc = run_bench(tool, "", args, out, sizeof out);
    CHECK(rc == 1 && strstr(out, "does not exist") != NULL);
    /* The train/ split itself, as --help says: the same 10 files. */
    /* Named with trailing slashes too; without --img-size, at the folders' usual 224. */
    for (int i = 0; i < 2; i++) {
        snprintf(args, sizeof args, "loader %s/train%s --batch 2 --warmup 0 --iters 4%s", root,
                 i ? "//" : "", i ? "" : " --img-size 16");
        rc = run_bench(tool, "", args, out, sizeof out);
        if (rc != 0 || !strstr(out, ": 10 training images") ||
            !strstr(out, i ? "2,3,224,224,w4" : "2,3,16,16,w4"))
            cnn_test_fail(__FILE__, __LINE__, "%s: exit %d, output:\n%s", args, rc, out);
    }
    /* Not one image decodes: the reason is the loader's, with the count. */
    snprintf(path, sizeof path, "%s/allbad", root);
    REQUIRE(mkdir(path, 0755) == 0);
    snprintf(path, sizeof path, "%s/allbad/train", root);
    REQUIRE(mkdir(path, 0755) == 0);
    snprintf(path, sizeof path, "%s/allbad/train/a", root);
    REQUIRE(mkdir(path, 0755) == 0);
    snprintf(path, sizeof path, "%s/allbad/train/a/zero.jpg", root);
    FILE *f = fopen(path, "w");
    REQUIRE(f != NULL);
    fclose(f);
    snprintf(args, sizeof args, "loader %s/allbad --img-size 16 --warmup 0 --iters 1", root);
    rc = run_bench(tool, "", args, out, sizeof out);
    if (rc != 1 || !strstr(out, "not one training image could be read (1 bad); the first "
                                "failure: ") || !strstr(out, "zero.jpg' (0 bytes)"))
        cnn_test_fail(__FILE__, __LINE__, "%s: exit %d, output:\n%s", args, rc, out);
    data_test_remove_tree(root);
}

/* A stop signal that comes twice (as `timeout` sends it: to the command, then to its process
 * group) is one stop: the second, 0.2 s later while a training step is still running, must not
 * kill the process before it writes what it completed. */
TEST(cnnbench_a_repeated_stop_signal_is_one_stop)
{
    char tool[512], json[64] = "/tmp/cnnbench_stop2.XXXXXX";
    if (!bench_path(tool, sizeof tool)) return;
    int fd = mkstemp(json);
    REQUIRE(fd >= 0);
    close(fd);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, STDOUT_FILENO);
        dup2(null, STDERR_FILENO);
        execl(tool, tool, "model", "resnet18", "--batch", "16", "--warmup", "0", "--iters", "50",
              "--no-peak", "--json", json, (char *)NULL);
        _exit(127);
    }
    /* A training step here takes 1.7 s (2 cores; far longer under ASan), after 0.5 s of
     * start-up: both signals land inside the first step. */
    usleep(1000000);
    kill(pid, SIGTERM);
    usleep(200000);
    kill(pid, SIGTERM);
    int st = 0;
    REQUIRE(waitpid(pid, &st, 0) == pid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 1);
    if (WIFSIGNALED(st)) cnn_test_fail(__FILE__, __LINE__, "killed by signal %d", WTERMSIG(st));
    const char *j = slurp(json);
    CHECK(j && strstr(j, "\"complete\": false"));
    unlink(json);
}

TEST(cnnbench_writes_completed_results_when_stopped)
{
    char tool[512], json[64] = "/tmp/cnnbench_stop.XXXXXX", cmd[1024];
    static char out[1 << 15];
    if (!bench_path(tool, sizeof tool)) return;
    int fd = mkstemp(json);
    REQUIRE(fd >= 0);
    close(fd);
    /* Far longer than the 5 s limit (about 100 s on 2 cores): SIGTERM arrives mid-run, as
     * from a step's time limit. */
    snprintf(cmd, sizeof cmd,
             "timeout -s TERM 5 %s conv --shapes resnet50 --batch 1 --warmup 0 --iters 200 "
             "--no-peak --json %s",
             tool, json);
    int rc = run_cmd(cmd, out, sizeof out);
    if (rc != 124 || !strstr(out, "cnnbench: stopped by a signal;"))
        cnn_test_fail(__FILE__, __LINE__, "%s: exit %d, output:\n%s", cmd, rc, out);
    const char *j = slurp(json);
    CHECK(j && j[0] == '{' && strstr(j, "\"complete\": false") && strstr(j, "\"results\": ["));
    unlink(json);
}
