/* test_train_tool.c — runs the built train_imagenet_subset (from $CNN_TOOLS_DIR, else build/bin;
 * skipped when absent) on small Fashion-MNIST subsets: exit codes and error lines, the files a
 * run leaves, an accuracy floor, --eval-only and --predict; and the checkpoint folder helpers
 * directly. Image folders: test_train_tool_folder.c; resume, early stop and schedules across a
 * run: test_train_resume.c. */
#include "test.h"

#include <stb/stb_image.h>
#include <stb/stb_image_write.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gradcheck.h"
#include "scratch.h"
#include "train_tool.h"
#include "../tools/common/train_opts.h"

static bool file_exists(const char *dir, const char *name)
{
    char p[600];
    struct stat sb;
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return stat(p, &sb) == 0 && sb.st_size > 0;
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
    const char *env[2] = {"env -u OMP_WAIT_POLICY", "env OMP_WAIT_POLICY=active"};
    for (int i = 0; i < 2; i++) {
        snprintf(args, sizeof args, "--epochs 1 --limit-train 256 --limit-val 64 --batch 64 "
                 "--checkpoint-dir %s/run%d", dir, i);
        snprintf(cmd, sizeof cmd, "%s OMP_DISPLAY_ENV=verbose %s", env[i], tool);
        CHECK(run_tool(cmd, args, out, sizeof out) == 0);
        CHECK(omp_reports_passive(out) == (i == 0));
        CHECK(strstr(out, "best val top-1")); /* and the tool itself ran */
    }
    remove_tree(dir);
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
    /* An unset shell variable must not turn "--resume $CKPT" into a new run. */
    check_one_line_error(tool, "--resume ''", "--resume: empty value");
    check_one_line_error(tool, "--eval-only a.safetensors --resume b.safetensors",
                         "give one at most");
    check_one_line_error(tool, "--checkpoint a.safetensors --epochs 1",
                         "--checkpoint is the checkpoint --predict uses");
    check_one_line_error(tool, "--tf32 off --epochs 1", "write --tf32=off");
    check_one_line_error(tool, "--batch 2147483647 --limit-train 3", "--batch must be in [1, ");
    /* What does nothing in a mode is refused there, not ignored. */
    check_one_line_error(tool, "--eval-only a.safetensors --epochs 3",
                         "--epochs does nothing with --eval-only");
    check_one_line_error(tool, "--eval-only a.safetensors --checkpoint-dir d",
                         "--checkpoint-dir does nothing with --eval-only");
    check_one_line_error(tool, "--eval-only a.safetensors --optimizer sgd",
                         "--optimizer does nothing with --eval-only");
    check_one_line_error(tool, "--predict x.png --checkpoint c.safetensors --data /nonexistent",
                         "--data does nothing with --predict");
    check_one_line_error(tool, "--predict x.png --checkpoint c.safetensors --batch 4",
                         "--batch does nothing with --predict");
    /* A checkpoint folder that cannot take files stops the run before its first epoch. */
    char dir[256], args[600];
    REQUIRE(make_tmpdir(dir, sizeof dir));
    snprintf(args, sizeof args, "%s/file", dir);
    FILE *f = fopen(args, "w");
    REQUIRE(f);
    fclose(f);
    snprintf(args, sizeof args, "--limit-train 10 --checkpoint-dir %s/file", dir);
    check_one_line_error(tool, args, "is not a folder");
    /* An input size the model refuses stops the run before its folder is made. */
    snprintf(args, sizeof args,
             "--img-size 30 --limit-train 10 --limit-val 10 --epochs 1 --checkpoint-dir %s/s30",
             dir);
    check_one_line_error(tool, args, "--img-size 30: lenet5: input 30x30 must be 32x32");
    snprintf(args, sizeof args, "%s/s30", dir);
    CHECK(access(args, F_OK) != 0);
    check_one_line_error(tool, "--img-size 27 --limit-train 10 --limit-val 10 --epochs 1",
                         "--model lenet5 needs inputs of at least 28x28, --img-size is 27 "
                         "(try --img-size 28)");
    remove_tree(dir);
}

/* Paths in the commands the tool prints are quoted for the shell when they need it. */
TEST(train_tool_shell_quote)
{
    char buf[TR_QUOTED_MAX];
    CHECK(!strcmp(tr_shell_quote("runs/lenet5-1/last.safetensors", buf, sizeof buf),
                  "runs/lenet5-1/last.safetensors"));
    CHECK(!strcmp(tr_shell_quote("my run/last.safetensors", buf, sizeof buf),
                  "'my run/last.safetensors'"));
    CHECK(!strcmp(tr_shell_quote("it's $HOME", buf, sizeof buf), "'it'\\''s $HOME'"));
    CHECK(!strcmp(tr_shell_quote("", buf, sizeof buf), "''"));
    CHECK(!strcmp(tr_shell_quote("~/x", buf, sizeof buf), "'~/x'"));
    char err[4096], dir[256], path[600];
    REQUIRE(make_tmpdir(dir, sizeof dir));
    snprintf(path, sizeof path, "%s/my run", dir);
    REQUIRE(mkdir(path, 0777) == 0);
    snprintf(path, sizeof path, "%s/my run/last.safetensors", dir);
    FILE *f = fopen(path, "w");
    REQUIRE(f);
    fclose(f);
    snprintf(path, sizeof path, "%s/my run", dir);
    CHECK(!tr_check_unused_dir(path, NULL, err, sizeof err));
    char want[700];
    snprintf(want, sizeof want, "continue that run with --resume '%s/last.safetensors',", path);
    if (!strstr(err, want)) cnn_test_fail(__FILE__, __LINE__, "want \"%s\" in: %s", want, err);
    remove_tree(dir);
}

/* A run in a folder whose name has a space: the printed --resume command works when pasted
 * into a shell; resumed once it is finished, the run is evaluated and its files are left as
 * they were, confusion.csv included (here evaluated on fewer images than the run's). */
TEST(train_tool_resume_command_and_finished_run)
{
    char tool[512], dir[256], args[2048], path[600];
    static char out[65536];
    if (!tool_path(tool, sizeof tool)) return;
    REQUIRE(make_tmpdir(dir, sizeof dir));
    snprintf(args, sizeof args,
             "--limit-train 128 --limit-val 64 --batch 64 --epochs 2 --stop-after 1 "
             "--checkpoint-dir '%s/my run'", dir);
    int rc = run_tool(tool, args, out, sizeof out);
    /* The command names the tool as it was started (here by its path), not by a bare name
     * that the shell would not find, and the device run_tool gave (not kept by checkpoints). */
    char want[1300];
    snprintf(want, sizeof want,
             "continue with: %s --resume '%s/my run/last.safetensors' --device cpu\n", tool, dir);
    const char *cont = strstr(out, want);
    if (rc != 0 || !cont)
        cnn_test_fail(__FILE__, __LINE__, "exit %d, no \"%s\" in:\n%s", rc, want, out);
    REQUIRE(cont);
    /* The printed command, whole, as a shell reads it. */
    cont += strlen("continue with: ");
    snprintf(args, sizeof args, "%.*s 2>&1", (int)(strchr(cont, '\n') - cont), cont);
    rc = cnn_test_capture(args, out, sizeof out);
    if (rc != 0 || !strstr(out, "epoch 2/2"))
        cnn_test_fail(__FILE__, __LINE__, "%s: exit %d:\n%s", args, rc, out);
    const char *files[] = {"confusion.csv", "metrics.csv", "last.safetensors", "curves.png"};
    size_t nb[4] = {0};
    unsigned char *before[4];
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/my run/%s", dir, files[i]);
        before[i] = scratch_read(path, &nb[i]);
        REQUIRE(before[i]);
    }
    snprintf(args, sizeof args, "--resume '%s/my run/last.safetensors' --limit-val 16", dir);
    rc = run_tool(tool, args, out, sizeof out);
    if (rc != 0 || !strstr(out, "is complete (2 of 2 epochs): evaluating it") ||
        !strstr(out, "(16 images)") || !strstr(out, "is left as it was"))
        cnn_test_fail(__FILE__, __LINE__, "%s: exit %d:\n%s", args, rc, out);
    for (int i = 0; i < 4; i++) {
        size_t na = 0;
        snprintf(path, sizeof path, "%s/my run/%s", dir, files[i]);
        unsigned char *after = scratch_read(path, &na);
        if (!after || na != nb[i] || memcmp(before[i], after, na))
            cnn_test_fail(__FILE__, __LINE__, "%s changed", files[i]);
        free(after);
        free(before[i]);
    }
    remove_tree(dir);
}

/* A run's default folder is new even when another run of the same second has taken the name;
 * a folder that is a file, or missing, is no checkpoint folder. */
TEST(train_tool_checkpoint_folders)
{
    char dir[256], path[TR_PATH_MAX], first[TR_PATH_MAX], err[512];
    REQUIRE(make_tmpdir(dir, sizeof dir));
    snprintf(path, sizeof path, "%s/runs/lenet5-20261205-101010", dir);
    snprintf(first, sizeof first, "%s", path);
    CHECK(tr_make_new_dir(path, sizeof path, err, sizeof err)); /* runs/ made on the way */
    CHECK(!strcmp(path, first));
    CHECK(tr_check_writable_dir(path, err, sizeof err));
    snprintf(path, sizeof path, "%s", first);
    CHECK(tr_make_new_dir(path, sizeof path, err, sizeof err));
    char want[TR_PATH_MAX + 8];
    snprintf(want, sizeof want, "%s-2", first);
    CHECK(!strcmp(path, want));
    snprintf(path, sizeof path, "%s/nothing", dir);
    CHECK(!tr_check_writable_dir(path, err, sizeof err) && strstr(err, "No such file"));
    snprintf(path, sizeof path, "%s/runs/lenet5-20261205-101010/probe", dir);
    FILE *f = fopen(path, "w");
    REQUIRE(f);
    fclose(f);
    CHECK(!tr_check_writable_dir(path, err, sizeof err) && strstr(err, "is not a folder"));
    remove_tree(dir);
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
    /* checkpoints load and carry the model and metadata; last's the optimizer state too */
    const char *names[] = {"last.safetensors", "best.safetensors"};
    for (int i = 0; i < 2; i++) {
        cnn_dict *d = NULL;
        snprintf(path, sizeof path, "%s/%s", run, names[i]);
        CHECK_OK(cnn_safetensors_load(path, &d));
        CHECK(cnn_dict_get(d, "conv1.weight") != NULL && cnn_dict_get(d, "fc3.bias") != NULL);
        CHECK((cnn_dict_get(d, "optim.conv1.weight.exp_avg") != NULL) == (i == 0));
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

/* The GPU's options on a run on the CPU do nothing there, and the run says so. */
TEST(train_tool_gpu_options_on_the_cpu_are_noted)
{
    char tool[512], dir[256], args[1024];
    static char out[65536];
    if (!tool_path(tool, sizeof tool)) return;
    REQUIRE(make_tmpdir(dir, sizeof dir));
    snprintf(args, sizeof args, "--limit-train 64 --limit-val 32 --batch 32 --epochs 1 "
             "--device cpu --tf32 --backend cuda --checkpoint-dir %s/run", dir);
    int rc = run_tool(tool, args, out, sizeof out);
    if (rc != 0) printf("%s\n", out);
    CHECK(rc == 0);
    CHECK(strstr(out, "note: --tf32 --backend for a GPU run only; this run is on the CPU, where "
                      "they do nothing"));
    snprintf(args, sizeof args, "--limit-train 64 --limit-val 32 --batch 32 --epochs 1 "
             "--device cpu --checkpoint-dir %s/run2", dir);
    CHECK(run_tool(tool, args, out, sizeof out) == 0);
    CHECK(!strstr(out, "note:"));
    /* One of them alone: "it does". */
    snprintf(args, sizeof args, "--limit-train 64 --limit-val 32 --batch 32 --epochs 1 "
             "--device cpu --cuda-graph --checkpoint-dir %s/run3", dir);
    CHECK(run_tool(tool, args, out, sizeof out) == 0);
    CHECK(strstr(out, "note: --cuda-graph for a GPU run only; this run is on the CPU, where it "
                      "does nothing"));
    remove_tree(dir);
}

/* ResNet-18 at 32x32 ends in a batch norm over a 1x1 map, which cannot train on a batch of one
 * image. Five images in batches of 4 leave one for the last batch: that batch is left out with
 * a note (before, the run failed at the end of its first epoch and kept nothing); a training
 * split of one image is refused before the run starts. */
TEST(train_tool_a_last_batch_of_one_image_is_left_out_for_a_1x1_batch_norm)
{
    char tool[512], dir[256], args[1024];
    static char out[65536];
    if (!tool_path(tool, sizeof tool)) return;
    REQUIRE(make_tmpdir(dir, sizeof dir));
    snprintf(args, sizeof args, "--model resnet18 --img-size 32 --limit-train 5 --limit-val 8 "
             "--batch 4 --epochs 1 --device cpu --checkpoint-dir %s/run", dir);
    int rc = run_tool(tool, args, out, sizeof out);
    if (rc != 0) printf("%s\n", out);
    CHECK(rc == 0);
    CHECK(strstr(out, "note: 5 training images leave 1 for the last batch of 4, and layer4.0.bn1 "
                      "(a batch norm over a 1x1 map at --img-size 32) cannot train on one image"));
    CHECK(strstr(out, "epoch 1/1  train loss"));
    /* The loader drops it (no bad file is blamed), and the progress counts the 4 trained on:
     * "80%  4/5" would say the epoch ended short. */
    CHECK(!strstr(out, "bad files left"));
    CHECK(!strstr(out, "/5  "));
    snprintf(args, sizeof args, "%s/run", dir);
    double v[7];
    CHECK(metrics_row(args, 0, v) && v[0] == 1);
    snprintf(args, sizeof args, "--model resnet18 --img-size 32 --limit-train 1 --limit-val 8 "
             "--epochs 1 --device cpu --checkpoint-dir %s/run2", dir);
    check_one_line_error(tool, args, "layer4.0.bn1 normalises a 1x1 map, which cannot be trained "
                                     "on one image, and the training split has one");
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
    /* The validation loss is the training criterion, label smoothing included (as torchvision's
     * reference scripts evaluate): linear in the smoothing s, (1 - s) * NLL + s * the mean of
     * -log p over the classes, which for a trained model is far above the NLL. */
    double ls[3] = {0, 0, 0};
    for (int k = 0; k < 3; k++) {
        snprintf(args, sizeof args, "--eval-only %s/run/last.safetensors --limit-val 1000 "
                 "--label-smoothing %g", dir, k * 0.5);
        CHECK(run_tool(tool, args, out, sizeof out) == 0);
        v = strstr(out, "validation:");
        CHECK(v && sscanf(v, "validation: loss %lf", &ls[k]) == 1);
    }
    CHECK_NEAR(ls[0], loss2, 1e-9);
    CHECK_NEAR(ls[1], (ls[0] + ls[2]) / 2, 2e-4);
    CHECK(ls[2] > ls[0] + 0.5);

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
    CHECK(strstr(out, "metrics.csv: not a .jpg, .jpeg, .png, .bmp, .ppm, .pgm, .pbm or .pnm "
                      "file") != NULL);
    remove_tree(dir);
}

/* The part of the tool's output from the validation report to the end of its confusion
 * matrix; NULL (and *len 0) when it is missing. */
static const char *val_report(const char *out, int *len)
{
    const char *a = strstr(out, "validation:"), *e = a ? strstr(a, "\ntraining data:") : NULL;
    *len = e ? (int)(e - a) : 0;
    return e ? a : NULL;
}

/* --cuda-graph: the training step captured once and replayed (Adam, a cosine schedule that
 * changes the learning rate every step, label smoothing) trains as the op-by-op steps do: the
 * same validation report, down to the confusion matrix. The epoch's last batch, smaller, runs op
 * by op. Deterministic algorithms on all runs. On the emulator a third run has every capture
 * fail (CNN_EMU_INVALIDATE_CAPTURE): the tool says so once and trains op by op, to the same
 * report. */
GPU_TEST(train_tool_cuda_graph_matches_op_by_op)
{
    char tool[512], dir[256], args[1024];
    static char out[3][65536];
    if (!tool_path(tool, sizeof tool)) return;
    REQUIRE(make_tmpdir(dir, sizeof dir));
    const int runs = emulated_gpu() ? 3 : 2;
    for (int g = 0; g < runs; g++) {
        snprintf(args, sizeof args,
                 "--device cuda --limit-train 500 --limit-val 256 --epochs 2 --batch 64 "
                 "--label-smoothing 0.1 --seed 5 --checkpoint-dir %s/run%d%s",
                 dir, g, g ? " --cuda-graph" : "");
        setenv("CNN_DETERMINISTIC", "1", 1);
        if (g == 2) setenv("CNN_EMU_INVALIDATE_CAPTURE", "1", 1);
        int rc = run_tool(tool, args, out[g], sizeof out[g]);
        unsetenv("CNN_DETERMINISTIC");
        unsetenv("CNN_EMU_INVALIDATE_CAPTURE");
        if (rc != 0) printf("%s\n", out[g]);
        CHECK(rc == 0);
    }
    CHECK(!strstr(out[0], "--cuda-graph:"));
    CHECK(strstr(out[1], "--cuda-graph: training step captured; replayed for each batch of 64"));
    int n0 = 0;
    const char *r0 = val_report(out[0], &n0);
    REQUIRE(r0 != NULL);
    for (int g = 1; g < runs; g++) {
        int n = 0;
        const char *r = val_report(out[g], &n);
        if (!r || n != n0 || memcmp(r0, r, (size_t)n0) != 0)
            cnn_test_fail(__FILE__, __LINE__, "reports differ:\n%.*s\n---\n%.*s", n0, r0, n,
                          r ? r : "(none)");
    }
    if (runs == 3) {
        const char *fell = strstr(out[2], "--cuda-graph: graph_capture: the capture was "
                                          "invalidated");
        CHECK(fell && strstr(fell, "; training op by op\n"));
        CHECK(fell && !strstr(fell + 1, "--cuda-graph:")); /* no second try */
    }
    remove_tree(dir);
}

/* On the GPU the tool reads each step's results back while the next step runs: the statistics
 * must still add up (every image counted once, a sane accuracy). */
/* --device cuda:N: the run is on device N (its graph capture too), and trains as on cuda:0 (on
 * the emulator, to the same validation report; two GPUs may pick different cuDNN algorithms). A
 * device that is not there is a one-line error before anything is written. */
GPU_TEST(train_tool_runs_on_the_device_named)
{
    char tool[512], dir[256], args[1024];
    static char out[2][65536];
    if (!tool_path(tool, sizeof tool)) return;
    REQUIRE(make_tmpdir(dir, sizeof dir));
    const int gpus = cnn_cuda_device_count();
    snprintf(args, sizeof args, "--device cuda:%d --checkpoint-dir %s/none", gpus, dir);
    int rc = run_tool(tool, args, out[0], sizeof out[0]);
    char want[96];
    snprintf(want, sizeof want, "--device cuda:%d: there %s only %d CUDA device", gpus,
             gpus == 1 ? "is" : "are", gpus);
    CHECK(rc == 1 && strstr(out[0], want) && access(dir, F_OK) == 0);
    struct stat sb;
    CHECK(stat(strcat(strcpy(args, dir), "/none"), &sb) != 0); /* no run folder left behind */
    if (gpus < 2) {
        remove_tree(dir);
        cnn_test_skip("training on a second device needs two CUDA devices");
        return;
    }
    for (int d = 0; d < 2; d++) {
        snprintf(args, sizeof args,
                 "--device cuda:%d --limit-train 320 --limit-val 128 --epochs 1 --batch 64 "
                 "--seed 3 --cuda-graph --checkpoint-dir %s/run%d",
                 1 - d, dir, d);
        setenv("CNN_DETERMINISTIC", "1", 1);
        rc = run_tool(tool, args, out[d], sizeof out[d]);
        unsetenv("CNN_DETERMINISTIC");
        if (rc != 0) printf("%s\n", out[d]);
        CHECK(rc == 0);
    }
    CHECK(strstr(out[0], "on cuda:1, new run") && strstr(out[1], "on cuda:0, new run"));
    CHECK(strstr(out[0], "--cuda-graph: training step captured"));
    int n0 = 0, n1 = 0;
    const char *r0 = val_report(out[0], &n0), *r1 = val_report(out[1], &n1);
    CHECK(r0 && r1);
    if (r0 && r1 && emulated_gpu()) CHECK(n0 == n1 && memcmp(r0, r1, (size_t)n0) == 0);
    remove_tree(dir);
}

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
