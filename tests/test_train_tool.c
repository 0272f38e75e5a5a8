/* test_train_tool.c — runs the built train_imagenet_subset (from $CNN_TOOLS_DIR, else build/bin;
 * skipped when absent) on small Fashion-MNIST subsets: exit codes and error lines, the files a
 * run leaves, exact resume, an accuracy floor, --eval-only and --predict. */
#include "test.h"

#include <signal.h>
#include <stb/stb_image.h>
#include <stb/stb_image_write.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define SUBSET "--limit-train 2000 --limit-val 500"

/* The tool's path into buf; false (test skipped) when it is not built. */
static bool tool_path(char *buf, size_t n)
{
    return cnn_test_tool_path("train_imagenet_subset", buf, n);
}

/* Runs "tool args" with stdout and stderr (or stderr only) captured into out (n bytes,
 * truncated); returns the exit status, or -1 when it did not exit normally. Runs on the CPU
 * unless args name a device: the exactness checks are CPU claims. */
static int run_tool_ex(const char *tool, const char *args, bool stderr_only, char *out, size_t n)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s %s%s %s", tool, strstr(args, "--device") ? "" : "--device cpu ",
             args, stderr_only ? "2>&1 >/dev/null" : "2>&1");
    return cnn_test_capture(cmd, out, n);
}

static int run_tool(const char *tool, const char *args, char *out, size_t n)
{
    return run_tool_ex(tool, args, false, out, n);
}

static bool make_tmpdir(char *buf, size_t n)
{
    snprintf(buf, n, "/tmp/cnn_train_test.XXXXXX");
    return mkdtemp(buf) != NULL;
}

static void remove_tree(const char *dir)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) printf("    note: could not remove %s\n", dir);
}

static bool file_exists(const char *dir, const char *name)
{
    char p[600];
    struct stat sb;
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return stat(p, &sb) == 0 && sb.st_size > 0;
}

/* Every tensor of a and b: same names, shapes, dtypes and bytes. */
static void check_same_tensors(const char *pa, const char *pb)
{
    cnn_dict *a = NULL, *b = NULL;
    CHECK_OK(cnn_safetensors_load(pa, &a));
    if (cnn_safetensors_load(pb, &b) != CNN_OK) {
        cnn_test_fail(__FILE__, __LINE__, "loading %s: %s", pb, cnn_last_error());
        cnn_dict_destroy(&a);
        return;
    }
    CHECK(cnn_dict_size(a) == cnn_dict_size(b));
    CHECK(cnn_dict_size(a) > 10);
    int differ = 0;
    for (int i = 0; i < cnn_dict_size(a); i++) {
        const char *name = cnn_dict_name(a, i);
        cnn_tensor *ta = cnn_dict_at(a, i), *tb = cnn_dict_get(b, name);
        if (!tb || cnn_tensor_dtype(ta) != cnn_tensor_dtype(tb) ||
            cnn_tensor_numel(ta) != cnn_tensor_numel(tb)) {
            cnn_test_fail(__FILE__, __LINE__, "tensor %s missing or of another shape in %s", name,
                          pb);
            continue;
        }
        size_t esz = cnn_tensor_dtype(ta) == CNN_I64 ? 8 : 4, n = (size_t)cnn_tensor_numel(ta);
        void *da = malloc(n * esz + 1), *db = malloc(n * esz + 1);
        if (da && db && cnn_tensor_read(ta, da, n) == CNN_OK &&
            cnn_tensor_read(tb, db, n) == CNN_OK && memcmp(da, db, n * esz) != 0 && differ++ < 5)
            cnn_test_fail(__FILE__, __LINE__, "tensor %s differs between %s and %s", name, pa, pb);
        free(da);
        free(db);
    }
    cnn_dict_destroy(&a);
    cnn_dict_destroy(&b);
}

static const char *meta_of(const char *path, const char *key, char *buf, size_t n)
{
    cnn_dict *d = NULL;
    buf[0] = 0;
    if (cnn_safetensors_load(path, &d) == CNN_OK && cnn_dict_get_meta(d, key))
        snprintf(buf, n, "%s", cnn_dict_get_meta(d, key));
    cnn_dict_destroy(&d);
    return buf;
}

TEST(train_tool_help)
{
    char tool[512], out[16384];
    if (!tool_path(tool, sizeof tool)) return;
    REQUIRE(run_tool(tool, "--help", out, sizeof out) == 0);
    const char *opts[] = {"--data",
                          "--model",
                          "--epochs",
                          "--batch",
                          "--lr",
                          "--optimizer",
                          "--momentum",
                          "--weight-decay",
                          "--schedule",
                          "--warmup-epochs",
                          "--label-smoothing",
                          "--img-size",
                          "--workers",
                          "--device",
                          "--backend",
                          "--tf32",
                          "--seed",
                          "--limit-train",
                          "--limit-val",
                          "--checkpoint-dir",
                          "--resume",
                          "--eval-only",
                          "--early-stop",
                          "--strict",
                          "--predict",
                          "--checkpoint",
                          "--help"};
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++)
        if (!strstr(out, opts[i])) cnn_test_fail(__FILE__, __LINE__, "--help lacks %s", opts[i]);
    CHECK(strstr(out, "[lenet5]") != NULL); /* defaults are listed */
}

/* The text after the last occurrence of key in s, or NULL. */
static const char *after_last(const char *s, const char *key)
{
    const char *last = NULL;
    for (const char *p = s; (p = strstr(p, key)) != NULL; p++) last = p;
    return last ? last + strlen(key) : NULL;
}

/* Whether the last OMP_DISPLAY_ENV=verbose report of the OpenMP runtime in out (libgomp also
 * reports from the process before it re-runs itself) says that waiting threads sleep:
 * libgomp's spin count 0 (its OMP_WAIT_POLICY line says PASSIVE even when the variable is
 * unset), LLVM's libomp OMP_WAIT_POLICY='PASSIVE'. -1: no report found. */
static int omp_reports_passive(const char *out)
{
    const char *spin = after_last(out, "GOMP_SPINCOUNT = '");
    if (spin) return strncmp(spin, "0'", 2) == 0;
    const char *policy = after_last(out, "OMP_WAIT_POLICY='");
    if (policy) return strncmp(policy, "PASSIVE", 7) == 0;
    return -1;
}

/* The tool's OpenMP threads sleep while they wait (OMP_WAIT_POLICY=passive) unless the
 * variable is set, as the runtime reports on a short run. */
TEST(train_tool_omp_wait_policy)
{
    char tool[512], cmd[700], dir[256], args[600], out[65536];
    if (!tool_path(tool, sizeof tool) || !make_tmpdir(dir, sizeof dir)) return;
    snprintf(args, sizeof args,
             "--epochs 1 --limit-train 256 --limit-val 64 --batch 64 --checkpoint-dir %s", dir);
    const char *env[2] = {"env -u OMP_WAIT_POLICY", "env OMP_WAIT_POLICY=active"};
    for (int i = 0; i < 2; i++) {
        snprintf(cmd, sizeof cmd, "%s OMP_DISPLAY_ENV=verbose %s", env[i], tool);
        CHECK(run_tool(cmd, args, out, sizeof out) == 0);
        CHECK(omp_reports_passive(out) == (i == 0));
        CHECK(strstr(out, "best val top-1")); /* and the tool itself ran */
    }
    remove_tree(dir);
}

/* A failing run: non-zero exit and exactly one line "train_imagenet_subset: ..." on stderr. */
static void check_one_line_error(const char *tool, const char *args, const char *needle)
{
    char out[8192];
    int rc = run_tool_ex(tool, args, true, out, sizeof out);
    if (rc == 0) cnn_test_fail(__FILE__, __LINE__, "'%s' exited 0", args);
    if (strncmp(out, "train_imagenet_subset: ", 23) != 0 ||
        strchr(out, '\n') != out + strlen(out) - 1)
        cnn_test_fail(__FILE__, __LINE__, "'%s' printed not one error line: %s", args, out);
    if (!strstr(out, needle))
        cnn_test_fail(__FILE__, __LINE__, "'%s': reason lacks '%s': %s", args, needle, out);
}

TEST(train_tool_bad_arguments)
{
    char tool[512];
    if (!tool_path(tool, sizeof tool)) return;
    check_one_line_error(tool, "--bogus", "unknown option '--bogus'");
    check_one_line_error(tool, "--model nope --limit-train 10", "unknown model 'nope'");
    check_one_line_error(tool, "--data /nonexistent/imagenet", "/nonexistent/imagenet");
    check_one_line_error(tool, "--epochs", "--epochs needs a value");
    check_one_line_error(tool, "--lr abc", "--lr: bad value 'abc'");
    check_one_line_error(tool, "--optimizer rmsprop", "--optimizer");
    check_one_line_error(tool, "--random-erase 1.5", "--random-erase must be in [0, 1]");
    if (cnn_cuda_device_count() == 0)
        check_one_line_error(tool, "--device cuda --limit-train 10", "--device cuda");
    check_one_line_error(tool, "--predict x.png", "--checkpoint");
    check_one_line_error(tool, "--eval-only /nonexistent.safetensors", "nonexistent.safetensors");
    check_one_line_error(tool, "--pretrained a.safetensors --resume b.safetensors",
                         "--pretrained starts a new run");
    check_one_line_error(tool, "--pretrained /nonexistent/w.safetensors --limit-train 10",
                         "--pretrained: safetensors_load: '/nonexistent/w.safetensors'");
}

TEST(train_tool_small_run_outputs)
{
    char tool[512], dir[256], args[1024], path[600], buf[64];
    static char out[65536];
    if (!tool_path(tool, sizeof tool)) return;
    REQUIRE(make_tmpdir(dir, sizeof dir));
    snprintf(args, sizeof args, SUBSET " --epochs 2 --seed 3 --checkpoint-dir %s/run", dir);
    int rc = run_tool(tool, args, out, sizeof out);
    if (rc != 0) printf("%s\n", out);
    CHECK(rc == 0);
    char run[400];
    snprintf(run, sizeof run, "%s/run", dir);
    CHECK(strstr(out, "epoch 2/2  train loss") != NULL);
    CHECK(strstr(out, "macro avg") != NULL && strstr(out, "confusion matrix") != NULL);
    CHECK(strstr(out, "Ankle boot") != NULL);
    /* metrics.csv: the header and one row per epoch, epochs 1 and 2 */
    snprintf(path, sizeof path, "%s/metrics.csv", run);
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    if (f) {
        char line[512];
        int rows = 0;
        CHECK(fgets(line, sizeof line, f) && !strncmp(line, "epoch,train_loss,", 17));
        while (fgets(line, sizeof line, f)) {
            rows++;
            int ep = 0;
            double tl, ta, vl, v1, v5;
            CHECK(sscanf(line, "%d,%lf,%lf,%lf,%lf,%lf", &ep, &tl, &ta, &vl, &v1, &v5) == 6);
            CHECK(ep == rows);
            CHECK(tl > 0 && vl > 0 && v1 > 0.1 && v1 <= 1 && v5 >= v1 && v5 <= 1);
        }
        CHECK(rows == 2);
        fclose(f);
    }
    /* checkpoints load and carry the model, optimizer state and metadata */
    const char *names[] = {"last.safetensors", "best.safetensors"};
    for (int i = 0; i < 2; i++) {
        cnn_dict *d = NULL;
        snprintf(path, sizeof path, "%s/%s", run, names[i]);
        CHECK_OK(cnn_safetensors_load(path, &d));
        CHECK(cnn_dict_get(d, "conv1.weight") != NULL && cnn_dict_get(d, "fc3.bias") != NULL);
        CHECK(cnn_dict_get(d, "optim.conv1.weight.exp_avg") != NULL);
        CHECK(cnn_dict_get_meta(d, "model") && !strcmp(cnn_dict_get_meta(d, "model"), "lenet5"));
        CHECK(cnn_dict_get_meta(d, "class_names") &&
              strstr(cnn_dict_get_meta(d, "class_names"), "Sneaker"));
        CHECK(cnn_dict_get_meta(d, "rng_offset") && cnn_dict_get_meta(d, "opt.lr"));
        cnn_dict_destroy(&d);
    }
    snprintf(path, sizeof path, "%s/last.safetensors", run);
    CHECK(!strcmp(meta_of(path, "epoch", buf, sizeof buf), "2"));
    /* curves.png is a valid PNG of a sensible size */
    snprintf(path, sizeof path, "%s/curves.png", run);
    int w = 0, h = 0, comp = 0;
    CHECK(stbi_info(path, &w, &h, &comp) == 1);
    CHECK(w >= 400 && h >= 200 && comp == 3);
    CHECK(file_exists(run, "confusion.csv"));
    remove_tree(dir);
}

/* Writes a tiny ImageNet-style folder under dir: classes "bottom" and "top" (a bright half),
 * 8 train and 4 val images each, plus one undecodable train/top/broken.png. */
static bool make_folder_dataset(const char *dir)
{
    const char *splits[] = {"train", "val"}, *classes[] = {"bottom", "top"};
    char p[600];
    for (int s = 0; s < 2; s++) {
        snprintf(p, sizeof p, "%s/%s", dir, splits[s]);
        if (mkdir(p, 0777)) return false;
        for (int c = 0; c < 2; c++) {
            snprintf(p, sizeof p, "%s/%s/%s", dir, splits[s], classes[c]);
            if (mkdir(p, 0777)) return false;
            for (int i = 0; i < (s ? 4 : 8); i++) {
                unsigned char img[40 * 40 * 3];
                for (int k = 0; k < 40 * 40 * 3; k++) {
                    int y = k / (40 * 3);
                    img[k] = (unsigned char)(((y < 20) == (c == 1) ? 200 : 30) + (k * 7 + i) % 25);
                }
                snprintf(p, sizeof p, "%s/%s/%s/img%d.png", dir, splits[s], classes[c], i);
                if (!stbi_write_png(p, 40, 40, 3, img, 40 * 3)) return false;
            }
        }
    }
    snprintf(p, sizeof p, "%s/train/top/broken.png", dir);
    FILE *f = fopen(p, "w");
    if (!f) return false;
    fputs("this is not a PNG file", f);
    return fclose(f) == 0;
}

/* The learning rate in the last row of DIR/metrics.csv (its 7th column), or -1. */
static double last_lr(const char *dir)
{
    char p[800], line[512], last[512] = "";
    snprintf(p, sizeof p, "%s/metrics.csv", dir);
    FILE *f = fopen(p, "r");
    if (!f) return -1;
    while (fgets(line, sizeof line, f)) memcpy(last, line, sizeof last);
    fclose(f);
    double v[7];
    if (sscanf(last, "%lf,%lf,%lf,%lf,%lf,%lf,%lf", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
               &v[6]) != 7)
        return -1;
    return v[6];
}

/* An image folder:
 * - a bad image is skipped and listed (exit 0), or aborts with --strict;
 * - the cosine schedule still ends on its last step though the bad image makes each epoch a
 *   batch short (the schedule follows the position in the epoch, not a count of batches);
 * - --eval-only and --resume refuse data whose classes differ from the checkpoint's by name
 *   (same count, so the labels would silently mean other classes);
 * - --predict works under a TMPDIR longer than the 40 characters it once cut it to;
 * - a class folder with a line break in its name is refused at the start (checkpoints keep
 *   the names one per line, so the run could never be resumed). */
TEST(train_tool_image_folder)
{
    char tool[512], dir[256], data[300], args[2048], env_tool[1300], path[700];
    static char out[65536];
    if (!tool_path(tool, sizeof tool)) return;
    REQUIRE(make_tmpdir(dir, sizeof dir));
    snprintf(data, sizeof data, "%s/data", dir);
    REQUIRE(mkdir(data, 0777) == 0 && make_folder_dataset(data));
    snprintf(args, sizeof args,
             "--data %s --model lenet5 --img-size 32 --epochs 2 --batch 4 --workers 2 "
             "--checkpoint-dir %s/run",
             data, dir);
    int rc = run_tool(tool, args, out, sizeof out);
    if (rc != 0) printf("%s\n", out);
    CHECK(rc == 0);
    CHECK(strstr(out, "17 train / 8 val images, 2 classes, 3x32x32 input") != NULL);
    CHECK(strstr(out, "1 bad image(s) skipped in train") != NULL);
    CHECK(strstr(out, "broken.png") != NULL);
    CHECK(strstr(out, "bottom") != NULL && strstr(out, "top") != NULL);
    snprintf(args, sizeof args,
             "--data %s --img-size 32 --epochs 1 --batch 4 --strict "
             "--checkpoint-dir %s/strict",
             data, dir);
    check_one_line_error(tool, args, "broken.png");

    /* 17 samples, 16 good: 4 batches of the 5 nominal. The last batch is still the cosine's
     * last step, 9 of 10 (when counted, step 7: 0.000412). Adam's default lr 0.002. */
    snprintf(path, sizeof path, "%s/run", dir);
    const double lr = last_lr(path), want = 0.002 * 0.5 * (1 + cos(M_PI * 9 / 10));
    if (!(fabs(lr - want) < 1e-9))
        cnn_test_fail(__FILE__, __LINE__, "last epoch's lr %g, want %g (cosine step 9 of 10)",
                      lr, want);

    /* Predict under a long TMPDIR (over 40 characters). */
    snprintf(path, sizeof path, "%s/a_temporary_directory_with_a_rather_long_name_0123456789",
             dir);
    REQUIRE(mkdir(path, 0777) == 0);
    snprintf(env_tool, sizeof env_tool, "TMPDIR=%s %s", path, tool);
    snprintf(args, sizeof args, "--predict %s/val/top/img0.png --checkpoint %s/run/best.safetensors",
             data, dir);
    rc = run_tool(env_tool, args, out, sizeof out);
    if (rc != 0) printf("%s\n", out);
    CHECK(rc == 0 && strstr(out, "  1. ") != NULL);

    /* Same number of classes, another name: the checkpoint's labels would mean other classes. */
    char from[700], to[700];
    snprintf(from, sizeof from, "%s/val/top", data);
    snprintf(to, sizeof to, "%s/val/upper", data);
    REQUIRE(rename(from, to) == 0);
    snprintf(args, sizeof args, "--eval-only %s/run/last.safetensors --data %s --img-size 32", dir,
             data);
    check_one_line_error(tool, args, "class 1 is 'upper', but in");
    snprintf(args, sizeof args, "--resume %s/run/last.safetensors --data %s --epochs 3", dir, data);
    check_one_line_error(tool, args, "class 1 is 'upper', but in");
    REQUIRE(rename(to, from) == 0);

    /* A line break in a class folder's name. */
    const char *splits[2] = {"train", "val"};
    for (int i = 0; i < 2; i++) {
        snprintf(to, sizeof to, "%s/%s/new\nline", data, splits[i]);
        REQUIRE(mkdir(to, 0777) == 0);
        snprintf(args, sizeof args, "cp %s/%s/top/img0.png '%s/'", data, splits[i], to);
        REQUIRE(system(args) == 0);
    }
    snprintf(args, sizeof args,
             "--data %s --img-size 32 --epochs 1 --batch 4 --checkpoint-dir %s/nl", data, dir);
    check_one_line_error(tool, args, "line break");
    remove_tree(dir);
}

/* 2 epochs straight vs 1 epoch (--stop-after 1) + --resume: bit-identical final weights and
 * optimizer state, the same metrics. */
TEST(train_tool_resume_is_exact)
{
    char tool[512], dir[256], args[1024], pa[600], pb[600];
    static char out[65536];
    if (!tool_path(tool, sizeof tool)) return;
    REQUIRE(make_tmpdir(dir, sizeof dir));
    const char *common = "--limit-train 1000 --limit-val 200 --epochs 2 --seed 11 --batch 64";
    snprintf(args, sizeof args, "%s --checkpoint-dir %s/a", common, dir);
    CHECK(run_tool(tool, args, out, sizeof out) == 0);
    snprintf(args, sizeof args, "%s --stop-after 1 --checkpoint-dir %s/b", common, dir);
    CHECK(run_tool(tool, args, out, sizeof out) == 0);
    CHECK(strstr(out, "--resume") != NULL);
    snprintf(args, sizeof args, "--resume %s/b/last.safetensors", dir);
    int rc = run_tool(tool, args, out, sizeof out);
    if (rc != 0) printf("%s\n", out);
    CHECK(rc == 0);
    CHECK(strstr(out, "resuming at epoch 2") != NULL);
    snprintf(pa, sizeof pa, "%s/a/last.safetensors", dir);
    snprintf(pb, sizeof pb, "%s/b/last.safetensors", dir);
    check_same_tensors(pa, pb);
    remove_tree(dir);
}

/* Data rows of DIR/metrics.csv, or -1. */
static int metric_rows(const char *dir)
{
    char p[800], line[512];
    snprintf(p, sizeof p, "%s/metrics.csv", dir);
    FILE *f = fopen(p, "r");
    if (!f) return -1;
    int rows = -1; /* the header */
    while (fgets(line, sizeof line, f)) rows++;
    fclose(f);
    return rows;
}

/* An lr too small to change a float weight makes every epoch's val top-1 equal: the best
 * checkpoint stays epoch 1 (only a better top-1 replaces it), and --early-stop 2 stops after
 * epoch 3 (two epochs without one). Resumed after epoch 2, the run keeps the best top-1 and
 * the count of epochs without a better one, and stops at the same place. */
TEST(train_tool_best_checkpoint_and_early_stop_on_ties)
{
    char tool[512], dir[256], args[1024], run[300], path[700], buf[64];
    static char out[65536];
    if (!tool_path(tool, sizeof tool)) return;
    REQUIRE(make_tmpdir(dir, sizeof dir));
    const char *common = "--limit-train 128 --limit-val 64 --batch 64 --epochs 6 --lr 1e-30 "
                         "--early-stop 2 --seed 4";
    for (int resumed = 0; resumed <= 1; resumed++) {
        snprintf(run, sizeof run, "%s/%s", dir, resumed ? "b" : "a");
        snprintf(args, sizeof args, "%s%s --checkpoint-dir %s", common,
                 resumed ? " --stop-after 2" : "", run);
        int rc = run_tool(tool, args, out, sizeof out);
        if (resumed && rc == 0) {
            CHECK(metric_rows(run) == 2);
            snprintf(args, sizeof args, "--resume %s/last.safetensors", run);
            rc = run_tool(tool, args, out, sizeof out);
        }
        CHECK(rc == 0);
        CHECK(strstr(out, "early stop: no better val top-1 for 2 epochs") != NULL);
        CHECK(strstr(out, "at epoch 1;") != NULL);
        CHECK(metric_rows(run) == 3);
        snprintf(path, sizeof path, "%s/best.safetensors", run);
        CHECK(!strcmp(meta_of(path, "epoch", buf, sizeof buf), "1"));
        snprintf(path, sizeof path, "%s/last.safetensors", run);
        CHECK(!strcmp(meta_of(path, "epoch", buf, sizeof buf), "3"));
        if (cnn_test_failed()) printf("%s\n", out);
    }
    /* Resumed after those 2 epochs with a real lr, epoch 3 is a new best (15.6% -> 23.4%),
     * which restarts the count of epochs without a better one. */
    snprintf(run, sizeof run, "%s/d", dir);
    snprintf(args, sizeof args, "%s --stop-after 2 --checkpoint-dir %s", common, run);
    CHECK(run_tool(tool, args, out, sizeof out) == 0);
    snprintf(args, sizeof args, "--resume %s/last.safetensors --lr 0.003 --stop-after 1", run);
    CHECK(run_tool(tool, args, out, sizeof out) == 0);
    snprintf(path, sizeof path, "%s/last.safetensors", run);
    CHECK(!strcmp(meta_of(path, "best_epoch", buf, sizeof buf), "3"));
    CHECK(!strcmp(meta_of(path, "bad_epochs", buf, sizeof buf), "0"));
    /* --schedule plateau (patience 2) with an lr that moves the val loss far less than the
     * 1e-4 relative gain that counts: epochs 2, 3 and 4 are not better, so after epoch 4
     * (3 > 2) the lr falls tenfold, and epoch 5 runs at 1e-8. */
    snprintf(args, sizeof args, "--limit-train 128 --limit-val 64 --batch 64 --epochs 5 "
             "--lr 1e-7 --schedule plateau --seed 4 --checkpoint-dir %s/c", dir);
    CHECK(run_tool(tool, args, out, sizeof out) == 0);
    snprintf(run, sizeof run, "%s/c", dir);
    CHECK(metric_rows(run) == 5);
    double lr5 = last_lr(run);
    if (fabs(lr5 - 1e-8) > 1e-13)
        cnn_test_fail(__FILE__, __LINE__, "plateau: lr %g in epoch 5, expected 1e-08", lr5);
    remove_tree(dir);
}

/* Warm-up then the step schedule, as the tool applies them per optimizer step: 2 steps an
 * epoch, --warmup-epochs 2 raise the lr linearly to its base at step 4 (lr (s + 1) / 4 at step
 * s), then it falls tenfold every epochs / 3 = 2 epochs, counted from the run's start. The lr
 * column of metrics.csv is the lr of each epoch's last step. */
TEST(train_tool_warmup_then_step_schedule)
{
    char tool[512], dir[256], args[1024], path[700], line[512];
    static char out[65536];
    if (!tool_path(tool, sizeof tool)) return;
    REQUIRE(make_tmpdir(dir, sizeof dir));
    snprintf(args, sizeof args,
             "--limit-train 128 --limit-val 64 --batch 64 --epochs 6 --lr 0.002 --schedule step "
             "--warmup-epochs 2 --seed 2 --checkpoint-dir %s/run", dir);
    int rc = run_tool(tool, args, out, sizeof out);
    if (rc != 0) printf("%s\n", out);
    CHECK(rc == 0);
    const double want[6] = {0.001, 0.002, 0.0002, 0.0002, 2e-5, 2e-5};
    snprintf(path, sizeof path, "%s/run/metrics.csv", dir);
    FILE *f = fopen(path, "r");
    int rows = 0;
    while (f && fgets(line, sizeof line, f)) {
        double v[7];
        if (sscanf(line, "%lf,%lf,%lf,%lf,%lf,%lf,%lf", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
                   &v[6]) != 7)
            continue;
        if (rows < 6 && fabs(v[6] - want[rows]) > 1e-5 * want[rows])
            cnn_test_fail(__FILE__, __LINE__, "epoch %d: lr %g, expected %g", rows + 1, v[6],
                          want[rows]);
        rows++;
    }
    if (f) fclose(f);
    CHECK(rows == 6);
    remove_tree(dir);
}

/* Ctrl-C in the middle of an epoch: exit 0 with a checkpoint and the resume command; resuming
 * from it ends bit-identical to an uninterrupted run. */
TEST(train_tool_sigint_then_resume)
{
    char tool[512], dir[256], ckdir[300], args[1024], pa[600], pb[600];
    static char out[65536];
    if (!tool_path(tool, sizeof tool)) return;
    REQUIRE(make_tmpdir(dir, sizeof dir));
    const char *common = "--limit-train 3000 --limit-val 200 --epochs 1 --seed 5 --batch 32";
    snprintf(ckdir, sizeof ckdir, "%s/b", dir);
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], STDOUT_FILENO);
        dup2(fds[1], STDERR_FILENO);
        close(fds[0]);
        close(fds[1]);
        execl(tool, tool, "--device", "cpu", "--limit-train", "3000", "--limit-val", "200",
              "--epochs", "1", "--seed", "5", "--batch", "32", "--checkpoint-dir", ckdir,
              (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    FILE *f = fdopen(fds[0], "r");
    char line[1024];
    size_t len = 0;
    bool sent = false;
    out[0] = 0;
    while (f && fgets(line, sizeof line, f)) {
        if (len + strlen(line) < sizeof out) {
            memcpy(out + len, line, strlen(line) + 1);
            len += strlen(line);
        }
        /* the first progress line (10%) means training is under way */
        if (!sent && strstr(line, " 10% ")) {
            kill(pid, SIGINT);
            sent = true;
        }
    }
    if (f) fclose(f);
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK(sent);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK(strstr(out, "interrupted: saved") != NULL);
    CHECK(strstr(out, "--resume") != NULL);
    if (cnn_test_failed()) printf("%s\n", out);
    snprintf(args, sizeof args, "--resume %s/last.safetensors", ckdir);
    CHECK(run_tool(tool, args, out, sizeof out) == 0);
    /* It continues from the loader position saved, without decoding the batches done again. */
    CHECK(strstr(out, "of the epoch's order") != NULL);
    if (cnn_test_failed()) printf("%s\n", out);
    snprintf(args, sizeof args, "%s --checkpoint-dir %s/a", common, dir);
    CHECK(run_tool(tool, args, out, sizeof out) == 0);
    snprintf(pa, sizeof pa, "%s/a/last.safetensors", dir);
    snprintf(pb, sizeof pb, "%s/last.safetensors", ckdir);
    check_same_tensors(pa, pb);
    remove_tree(dir);
}

/* End to end: LeNet-5 trained on 10,000 Fashion-MNIST images for 2 epochs (batch 64, lr 3e-3)
 * reaches >= 78% top-1 on 1,000 test images (81.1% measured); then --eval-only and --predict on
 * that checkpoint. */
TEST(train_tool_accuracy_eval_predict)
{
    char tool[512], dir[256], args[2048], path[600];
    static char out[65536];
    if (!tool_path(tool, sizeof tool)) return;
    REQUIRE(make_tmpdir(dir, sizeof dir));
    snprintf(args, sizeof args,
             "--limit-train 10000 --limit-val 1000 --epochs 2 --batch 64 --lr 0.003 --seed 1 "
             "--checkpoint-dir %s/run",
             dir);
    int rc = run_tool(tool, args, out, sizeof out);
    if (rc != 0) printf("%s\n", out);
    REQUIRE(rc == 0);
    const char *v = strstr(out, "validation:");
    double loss = 0, top1 = 0;
    REQUIRE(v && sscanf(v, "validation: loss %lf top-1 %lf%%", &loss, &top1) == 2);
    if (top1 < 78)
        cnn_test_fail(__FILE__, __LINE__, "top-1 %.2f%% < 78%% after 2 epochs of 10k", top1);

    snprintf(args, sizeof args, "--eval-only %s/run/last.safetensors --limit-val 1000", dir);
    REQUIRE(run_tool(tool, args, out, sizeof out) == 0);
    v = strstr(out, "validation:");
    double loss2 = 0, top1b = 0;
    CHECK(v && sscanf(v, "validation: loss %lf top-1 %lf%%", &loss2, &top1b) == 2);
    CHECK_NEAR(top1b, top1, 1e-9); /* the same model on the same images */

    /* Fine-tuning from it: a new run that starts where it ended (from scratch, the same run
     * ends at 9% top-1). */
    snprintf(args, sizeof args,
             "--pretrained %s/run/best.safetensors --limit-train 256 --limit-val 1000 --epochs 1 "
             "--batch 64 --lr 0.0001 --checkpoint-dir %s/tuned",
             dir, dir);
    rc = run_tool(tool, args, out, sizeof out);
    if (rc != 0) printf("%s\n", out);
    CHECK(rc == 0);
    CHECK(strstr(out, "pretrained: 10 tensors from ") && strstr(out, "new run"));
    v = strstr(out, "validation:");
    double top1c = 0;
    CHECK(v && sscanf(v, "validation: loss %lf top-1 %lf%%", &loss2, &top1c) == 2);
    if (top1c < top1 - 5)
        cnn_test_fail(__FILE__, __LINE__, "fine-tuned top-1 %.2f%%, started from %.2f%%", top1c,
                      top1);

    /* a 28x28 gray PNG: two bright vertical bars on black (trouser-like) */
    unsigned char img[28 * 28] = {0};
    for (int y = 2; y < 26; y++)
        for (int x = 0; x < 28; x++)
            img[y * 28 + x] = ((x >= 8 && x < 13) || (x >= 15 && x < 20)) ? 220 : 0;
    snprintf(path, sizeof path, "%s/probe.png", dir);
    REQUIRE(stbi_write_png(path, 28, 28, 1, img, 28) != 0);
    snprintf(args, sizeof args, "--predict %s --checkpoint %s/run/best.safetensors %s", path, dir,
             path);
    rc = run_tool(tool, args, out, sizeof out);
    if (rc != 0) printf("%s\n", out);
    CHECK(rc == 0);
    /* per file: "FILE:" then five lines "  k. CLASS  P%" with P falling */
    int ranks = 0;
    double sum = 0, prev = 0;
    char *save = NULL;
    for (char *l = strtok_r(out, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        int k = 0;
        char *pct = strrchr(l, '%'), *sp = pct;
        if (sscanf(l, "  %d. ", &k) != 1 || !pct) continue;
        *pct = 0;
        while (sp > l && sp[-1] != ' ') sp--;
        double p = atof(sp);
        CHECK(k == ranks % 5 + 1);
        CHECK(k == 1 || p <= prev + 1e-9);
        prev = p;
        sum += p;
        ranks++;
    }
    CHECK(ranks == 10); /* 5 classes for each of the two files */
    CHECK(sum > 2 * 50 && sum <= 2 * 100 + 0.1);
    /* A file the image folder would not read is named, in one line. */
    snprintf(args, sizeof args,
             "--predict %s --checkpoint %s/run/best.safetensors %s/run/metrics.csv", path, dir,
             dir);
    CHECK(run_tool(tool, args, out, sizeof out) == 1);
    CHECK(strstr(out, "metrics.csv: not a .jpg, .jpeg, .png or .bmp file") != NULL);
    remove_tree(dir);
}

/* On the GPU the tool reads each step's results back while the next step runs: the statistics
 * must still add up (every image counted once, a sane accuracy). */
GPU_TEST(train_tool_runs_on_the_gpu)
{
    char tool[512], dir[256], args[1024];
    static char out[65536];
    if (!tool_path(tool, sizeof tool)) return;
    REQUIRE(make_tmpdir(dir, sizeof dir));
    snprintf(args, sizeof args,
             "--device cuda --limit-train 640 --limit-val 256 --epochs 2 --batch 64 --seed 2 "
             "--checkpoint-dir %s/run",
             dir);
    int rc = run_tool(tool, args, out, sizeof out);
    if (rc != 0) printf("%s\n", out);
    CHECK(rc == 0);
    CHECK(strstr(out, "on cuda:0, new run") != NULL);
    CHECK(strstr(out, "epoch 1/2  90%    576/640") != NULL); /* every step counted */
    const char *v = strstr(out, "validation:");
    double loss = 0, top1 = 0;
    CHECK(v && sscanf(v, "validation: loss %lf top-1 %lf%%", &loss, &top1) == 2);
    CHECK(loss > 0 && top1 > 15 && strstr(out, "(256 images)"));
    remove_tree(dir);
}
