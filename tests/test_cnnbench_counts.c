/* test_cnnbench_counts.c — runs the built cnnbench (skipped when absent) and checks what its JSON
 * rows derive from the timings: GFLOP/s and GB/s against each op's FLOP and byte counts (times
 * its median), img/s against the batch, the batch field; and range checks at their bounds. */
#include "test.h"

#include "bench_tool.h"
#include "data_fixtures.h"

#include <unistd.h>

/* The value of "key": in the results line of the JSON s that holds all the strings in `has`
 * (each row is one line); NAN when there is none. */
static double row_value(const char *s, const char *const *has, int n_has, const char *key)
{
    char k[64];
    snprintf(k, sizeof k, "\"%s\": ", key);
    for (const char *line = strstr(s, "{ \"mode\""); line; line = strstr(line + 1, "{ \"mode\"")) {
        const char *eol = strchr(line, '\n');
        size_t len = eol ? (size_t)(eol - line) : strlen(line);
        char buf[1024];
        snprintf(buf, sizeof buf, "%.*s", (int)(len < sizeof buf ? len : sizeof buf - 1), line);
        bool all = true;
        for (int i = 0; i < n_has; i++) all &= strstr(buf, has[i]) != NULL;
        const char *v = strstr(buf, k);
        if (all && v) return strtod(v + strlen(k), NULL);
    }
    return NAN;
}

/* Whether x is within 1e-4 (relative) of want: the JSON keeps 6 significant digits. */
static bool near(double x, double want) { return fabs(x - want) <= 1e-4 * fabs(want); }

/* Runs cnnbench with args and --json into a temporary file; the JSON (static), NULL on failure. */
static const char *bench_json(const char *tool, const char *args)
{
    char json[64], cmd[1024], out[16384];
    snprintf(json, sizeof json, "/tmp/cnnbench_counts_%d.json", (int)getpid());
    snprintf(cmd, sizeof cmd, "%s --no-peak --json %s", args, json);
    int rc = run_bench(tool, "", cmd, out, sizeof out);
    const char *j = rc == 0 ? slurp(json) : NULL;
    if (!j) cnn_test_fail(__FILE__, __LINE__, "cnnbench %s: exit %d:\n%s", args, rc, out);
    unlink(json);
    return j;
}

/* Rate times median against the count it was derived from (ms and GFLOP/s: 1e6 apart). */
static void check_rate(const char *j, const char *pass, const char *rate, double count)
{
    const char *has[] = {pass};
    double r = row_value(j, has, 1, rate), ms = row_value(j, has, 1, "median_ms");
    if (!near(r * ms * 1e6, count))
        cnn_test_fail(__FILE__, __LINE__, "%s %s: %g * %g ms is not %g", pass, rate, r, ms, count);
}

TEST(cnnbench_conv_and_gemm_rates_match_their_counts)
{
    char tool[512];
    if (!bench_path(tool, sizeof tool)) return;
    /* Grouped: 2 * N * K * P * Q * (C / groups) * R * S = 2 * 4 * 7 * 7 * 2 * 9 = 7056 FLOPs,
     * and x (784 B) + w (4 * 2 * 9 floats: 288 B) + y (784 B) read or written. */
    const char *j = bench_json(tool, "conv --shape 1,4,7,7,4,3,3,1,1,2 --warmup 0 --iters 1");
    REQUIRE(j != NULL);
    const char *passes[] = {"\"fwd\"", "\"bwd_data\"", "\"bwd_filter\""};
    for (int p = 0; p < 3; p++) {
        check_rate(j, passes[p], "gflops", 7056);
        check_rate(j, passes[p], "gbs", 1856);
    }
    /* y (16, 8) = x (16, 4) w (8, 4)^T: 2 * 16 * 8 * 4 FLOPs; 4 * (64 + 32 + 128) bytes. */
    j = bench_json(tool, "gemm --mnk 16,8,4 --warmup 0 --iters 1");
    REQUIRE(j != NULL);
    check_rate(j, "\"fwd\"", "gflops", 1024);
    check_rate(j, "\"fwd\"", "gbs", 896);
}

TEST(cnnbench_model_rates_match_the_batch_and_the_macs)
{
    char tool[512];
    if (!bench_path(tool, sizeof tool)) return;
    cnn_model *m = NULL;
    cnn_model_options mo = cnn_model_default_options();
    mo.skip_init = true;
    REQUIRE(cnn_model_create_ex("lenet5", &mo, &m) == CNN_OK);
    cnn_model_summary s = {0};
    REQUIRE(cnn_model_summarize(m, 32, 32, &s) == CNN_OK);
    const double fwd = 2.0 * (double)s.total_macs * 2; /* batch 2 */
    cnn_model_summary_free(&s);
    cnn_model_destroy(&m);
    const char *j = bench_json(tool, "model lenet5 --batch 2 --warmup 0 --iters 1");
    REQUIRE(j != NULL);
    /* Inference is one forward; a training step forward + backward, counted as 3 forwards. */
    check_rate(j, "\"infer\"", "gflops", fwd);
    check_rate(j, "\"train\"", "gflops", 3 * fwd);
    const char *passes[] = {"\"infer\"", "\"train\""};
    for (int p = 0; p < 2; p++) {
        const char *has[] = {passes[p]};
        double ips = row_value(j, has, 1, "img_per_s"), ms = row_value(j, has, 1, "median_ms");
        if (!near(ips * ms, 2 * 1e3)) /* 2 images per median ms */
            cnn_test_fail(__FILE__, __LINE__, "%s: %g img/s at %g ms", passes[p], ips, ms);
    }
}

TEST(cnnbench_loader_gbs_counts_float_bytes)
{
    char tool[512], root[64], args[256];
    if (!bench_path(tool, sizeof tool)) return;
    REQUIRE(data_test_make_tree(root) == 0);
    snprintf(args, sizeof args, "loader %s --workers 1 --batch 2 --img-size 16 --warmup 0 "
             "--iters 2", root);
    const char *j = bench_json(tool, args);
    if (j) {
        /* Each image delivered is 3 x 16 x 16 floats of 4 bytes. */
        const char *has[] = {"\"loader\""};
        double ips = row_value(j, has, 1, "img_per_s"), gbs = row_value(j, has, 1, "gbs");
        if (!near(gbs * 1e9, ips * 4.0 * 3 * 16 * 16))
            cnn_test_fail(__FILE__, __LINE__, "%g GB/s at %g img/s", gbs, ips);
    }
    data_test_remove_tree(root);
}

TEST(cnnbench_json_batch_is_the_shapes_shared_n)
{
    char tool[512];
    if (!bench_path(tool, sizeof tool)) return;
    /* Two --shape strings with N = 3: the batch is theirs (not the default 32)... */
    const char *j = bench_json(tool, "conv --shape 3,2,4,4,2,1,1,1,0 --shape 3,2,4,4,2,1,1,1,0 "
                                     "--warmup 0 --iters 1");
    CHECK(j && strstr(j, "\"batch\": 3,"));
    /* ... and with different N it is null, each row's shape saying its own. */
    j = bench_json(tool, "conv --shape 2,2,4,4,2,1,1,1,0 --shape 3,2,4,4,2,1,1,1,0 "
                         "--warmup 0 --iters 1");
    CHECK(j && strstr(j, "\"batch\": null,"));
}

TEST(cnnbench_ranges_at_their_bounds)
{
    char tool[512], args[4096], out[8192];
    if (!bench_path(tool, sizeof tool)) return;
    /* --workers 64 is the most there is, and allowed: the run goes on to find no data (exit 1),
     * rather than refuse the argument (exit 2). */
    int rc = run_bench(tool, "", "loader /nonexistent/cnnbench --workers 64 --iters 1", out,
                       sizeof out);
    CHECK(rc == 1 && !strstr(out, "at most"));
    /* A 3x3 kernel fits a 1x1 input padded by 1 on both sides. */
    rc = run_bench(tool, "", "conv --shape 1,1,1,1,1,3,3,1,1 --warmup 0 --iters 1", out,
                   sizeof out);
    CHECK(rc == 0 && !strstr(out, "larger than the padded input"));
    /* 64 --shape options are allowed, a 65th is refused. */
    size_t k = (size_t)snprintf(args, sizeof args, "conv --list");
    for (int i = 0; i < 65; i++)
        k += (size_t)snprintf(args + k, sizeof args - k, " --shape 1,1,2,2,1,1,1,1,0");
    rc = run_bench(tool, "", args, out, sizeof out);
    CHECK(rc == 2 && strstr(out, "at most 64 conv shapes"));
    args[k - strlen(" --shape 1,1,2,2,1,1,1,1,0")] = 0;
    rc = run_bench(tool, "", args, out, sizeof out);
    CHECK(rc == 0 && count_of(out, "\n1,1,2,2,1,1,1,1,0,1") == 63);
}
