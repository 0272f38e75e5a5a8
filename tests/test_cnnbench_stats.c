/* test_cnnbench_stats.c — cnnbench's shared machinery (tools/common/bench_util.c) tested
 * in-process on fixed inputs: the median/min/max of timings, how many repeats bench_time runs,
 * the output checks (sampled indices, tolerances, relative L2) and the JSON writer. */
#include "test.h"

#include "../tools/common/bench_common.h"
#include "bench_tool.h"

#include <unistd.h>

TEST(cnnbench_stats_median_min_max)
{
    /* An even count takes the mean of the two middle values, not either one alone. */
    double even[] = {4, 1, 3, 2};
    bench_stats s = bench_stats_of(even, 4);
    CHECK(s.median == 2.5 && s.min == 1 && s.max == 4);
    double odd[] = {9, 5, 1, 7, 3};
    s = bench_stats_of(odd, 5);
    CHECK(s.median == 5 && s.min == 1 && s.max == 9);
    double one[] = {0.25};
    s = bench_stats_of(one, 1);
    CHECK(s.median == 0.25 && s.min == 0.25 && s.max == 0.25);
}

typedef struct calls {
    int setup, run, teardown;
} calls;

static int count_setup(void *ud) { return ((calls *)ud)->setup++, 0; }
static int count_run(void *ud) { return ((calls *)ud)->run++, 0; }
static int count_teardown(void *ud) { return ((calls *)ud)->teardown++, 0; }

TEST(cnnbench_time_runs_warmup_then_iters)
{
    /* Warm-up repeats come on top of the timed ones; none of them is skipped or timed alone. */
    bench_env e = {.backend = "cpu", .dev = CNN_CPU};
    calls c = {0};
    bench_stats st = {0};
    REQUIRE(bench_time(&e, 3, 5, count_setup, count_run, count_teardown, &c, &st) == 0);
    CHECK(c.setup == 8 && c.run == 8 && c.teardown == 8);
    CHECK(st.min >= 0 && st.min <= st.median && st.median <= st.max);
}

/* The reference of the check tests: element i should be i, with magnitude 1. */
static void index_ref(void *ud, long idx, double *ref, double *mag)
{
    (void)ud;
    *ref = (double)idx;
    *mag = 1;
}

TEST(cnnbench_check_samples_the_last_element_and_keeps_its_tolerance)
{
    enum { N = 1000 };
    static float got[N];
    for (long i = 0; i < N; i++) got[i] = (float)i;
    double err = 0;
    CHECK(bench_check("t", got, N, 4, index_ref, NULL, 0, 1e-6, &err) && err == 0);
    /* A sampled check reads element n-1 second, so a wrong last element (a loop bound off by
     * one in a kernel) is always seen. */
    got[N - 1] += 1;
    CHECK(!bench_check("t", got, N, 4, index_ref, NULL, 0, 1e-6, &err) && err == 1);
    got[N - 1] -= 1;
    /* The tolerance is rtol * mag + atol and nothing more: an error just above it fails. */
    got[0] = 2e-4f;
    CHECK(!bench_check("t", got, N, N, index_ref, NULL, 1e-4, 5e-5, &err));
    CHECK(bench_check("t", got, N, N, index_ref, NULL, 2e-4, 5e-5, &err));
}

TEST(cnnbench_check_tensors_atol_scales_with_the_largest_reference)
{
    cnn_tensor *ref = NULL, *got = NULL;
    const float r[4] = {100, 1, -2, 0}, g[4] = {100, 1, -2, 0.05f};
    REQUIRE(cnn_tensor_from_data(CNN_SHAPE(4), r, CNN_CPU, &ref) == CNN_OK);
    REQUIRE(cnn_tensor_from_data(CNN_SHAPE(4), g, CNN_CPU, &got) == CNN_OK);
    double err = 0;
    /* atol_rel 1e-3 of max|ref| = 100 is 0.1, which 0.05 is within; of 1 it would not be. */
    CHECK(bench_check_tensors("t", got, ref, 0, 1e-3, &err));
    CHECK(fabs(err - 0.05) < 1e-6);
    CHECK(!bench_check_tensors("t", got, ref, 0, 1e-4, &err));
    cnn_tensor_free(&ref);
    cnn_tensor_free(&got);
}

TEST(cnnbench_rel_l2_is_a_norm_ratio)
{
    const float ref[2] = {3, 4}, a[2] = {3, 4.5f}, zero[2] = {0, 0};
    /* ||(0, 0.5)|| / ||(3, 4)|| = 0.1, not the squared ratio 0.01 */
    CHECK(fabs(bench_rel_l2(a, ref, 2) - 0.1) < 1e-12);
    CHECK(fabs(bench_rel_l2(ref, zero, 2) - 5) < 1e-12);
    float got[2] = {3, 4.5f};
    double err = 0;
    CHECK(!bench_check_rel_l2("t", got, ref, 2, 0.05, &err) && fabs(err - 0.1) < 1e-12);
    CHECK(bench_check_rel_l2("t", got, ref, 2, 0.2, &err));
}

TEST(cnnbench_json_writer_escapes_and_nulls)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/cnnbench_json_%d.json", (int)getpid());
    bench_json j;
    REQUIRE(bench_json_open(&j, path) == 0);
    bench_json_begin(&j, '{');
    bench_json_key(&j, "name"), bench_json_str(&j, "a\"b\\c\nd");
    bench_json_key(&j, "inf"), bench_json_num(&j, INFINITY);
    bench_json_key(&j, "nan"), bench_json_num(&j, NAN);
    bench_json_key(&j, "x"), bench_json_num(&j, 0.125);
    bench_json_key(&j, "list");
    bench_json_begin(&j, '[');
    bench_json_int(&j, 1), bench_json_bool(&j, false);
    bench_json_end(&j, ']');
    bench_json_end(&j, '}');
    REQUIRE(bench_json_close(&j) == 0);
    const char *s = slurp(path);
    REQUIRE(s != NULL);
    /* Quotes and backslashes escaped, control characters as \u; a non-finite number is null
     * (JSON has no inf or nan, and Python's json module writes them only by extension). */
    if (!strstr(s, "\"name\": \"a\\\"b\\\\c\\u000ad\"") || !strstr(s, "\"inf\": null") ||
        !strstr(s, "\"nan\": null") || !strstr(s, "\"x\": 0.125") ||
        !strstr(s, "\"list\": ["))
        cnn_test_fail(__FILE__, __LINE__, "JSON written:\n%s", s);
    if (have_python()) {
        char cmd[256], out[1024];
        snprintf(cmd, sizeof cmd,
                 "python3 -c 'import json,sys; json.load(open(sys.argv[1]))' %s", path);
        CHECK(run_cmd(cmd, out, sizeof out) == 0);
    }
    unlink(path);
}
