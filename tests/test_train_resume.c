/* test_train_resume.c — train_imagenet_subset across runs, on small Fashion-MNIST subsets:
 * an interrupted run (--stop-after, or Ctrl-C) resumed ends bit-identical to an uninterrupted
 * one; the best checkpoint and --early-stop on ties, also across a resume; warm-up and the step
 * schedule over the run's optimizer steps, the warm-up ending on its last step. */
#include "test.h"

#include <signal.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "scratch.h"
#include "train_tool.h"

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
    CHECK(cnn_dict_size(a) >= 10); /* LeNet-5's weights, at least */
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

/* 2 epochs straight vs 1 epoch (--stop-after 1) + --resume, every run with the options
 * `common` (the resume with `device` too): bit-identical final weights and optimizer state, the
 * same metrics. */
static void check_resume_exact(const char *common, const char *device)
{
    char tool[512], dir[256], args[1024], pa[600], pb[600];
    static char out[65536];
    if (!tool_path(tool, sizeof tool)) return;
    REQUIRE(make_tmpdir(dir, sizeof dir));
    snprintf(args, sizeof args, "%s %s --checkpoint-dir %s/a", common, device, dir);
    CHECK(run_tool(tool, args, out, sizeof out) == 0);
    snprintf(args, sizeof args, "%s %s --stop-after 1 --checkpoint-dir %s/b", common, device,
             dir);
    CHECK(run_tool(tool, args, out, sizeof out) == 0);
    CHECK(strstr(out, "--resume") != NULL);
    snprintf(args, sizeof args, "--resume %s/b/last.safetensors %s", dir, device);
    int rc = run_tool(tool, args, out, sizeof out);
    if (rc != 0) printf("%s\n", out);
    CHECK(rc == 0);
    CHECK(strstr(out, "resuming at epoch 2") != NULL);
    /* The run's TF32 comes back with it (the header names it on a GPU). */
    if (strstr(common, "--tf32")) CHECK(strstr(out, "(TF32), resumed") != NULL);
    snprintf(pa, sizeof pa, "%s/a/last.safetensors", dir);
    snprintf(pb, sizeof pb, "%s/b/last.safetensors", dir);
    check_same_tensors(pa, pb);
    remove_tree(dir);
}

TEST(train_tool_resume_is_exact)
{
    check_resume_exact("--limit-train 1000 --limit-val 200 --epochs 2 --seed 11 --batch 64", "");
}

/* With dropout (AlexNet has two), whose masks come from the context's random stream: the
 * checkpoint's RNG state must put the resumed run where the uninterrupted one was (LeNet-5 draws
 * nothing after its initialisation, so the test above passes without the restore). */
TEST(train_tool_resume_with_dropout_is_exact)
{
    check_resume_exact("--model alexnet --img-size 63 --limit-train 128 --limit-val 64 "
                       "--batch 64 --epochs 2 --seed 11", "");
}

/* On a GPU, with the hand-written kernels: they add in a fixed order (no atomics) and are
 * chosen without timing, so a resumed run is bit-identical too. (cuDNN's algorithms are timed
 * anew in each process, and its fastest backward ones add with atomics: a resumed cuDNN run
 * matches an uninterrupted one to rounding only, as README says.) */
GPU_TEST(train_tool_resume_on_the_gpu_is_exact_with_the_hand_written_kernels)
{
    check_resume_exact("--limit-train 256 --limit-val 64 --epochs 2 --seed 11 --batch 64",
                       "--device cuda --backend cuda");
}

/* With TF32 (the hand-written GEMMs round their inputs to TF32): the resumed run takes TF32
 * from the checkpoint, as the uninterrupted one had it from the command line. It ran without
 * TF32 while its option list said tf32=on. */
GPU_TEST(train_tool_resume_on_the_gpu_keeps_tf32)
{
    check_resume_exact("--limit-train 256 --limit-val 64 --epochs 2 --seed 11 --batch 64 --tf32",
                       "--device cuda --backend cuda");
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
    /* Resumed again, the stopped run stays stopped: it is evaluated, and nothing in its folder
     * is written. */
    snprintf(path, sizeof path, "%s/a/last.safetensors", dir);
    size_t nb = 0, na = 0;
    unsigned char *before = scratch_read(path, &nb), *after = NULL;
    REQUIRE(before);
    snprintf(args, sizeof args, "--resume %s", path);
    CHECK(run_tool(tool, args, out, sizeof out) == 0);
    CHECK(strstr(out, "stopped early after epoch 3 (--early-stop 2): evaluating it") != NULL);
    CHECK(strstr(out, "\nepoch ") == NULL && strstr(out, "is left as it was\n") != NULL);
    CHECK(strstr(out, "best.safetensors") == NULL);
    CHECK((after = scratch_read(path, &na)) && na == nb && !memcmp(before, after, nb));
    snprintf(run, sizeof run, "%s/a", dir);
    CHECK(metric_rows(run) == 3);
    free(after);
    /* A folder holding another run's checkpoints is not written over: neither by a new run
     * named to it nor by a run resumed from elsewhere into it. */
    char refused[4096];
    snprintf(args, sizeof args, "--limit-train 128 --limit-val 64 --checkpoint-dir %s/a", dir);
    CHECK(run_tool_ex(tool, args, true, refused, sizeof refused) != 0);
    CHECK(strstr(refused, "a already holds another run's last.safetensors, which this run would "
                          "overwrite: continue that run with --resume ") != NULL);
    snprintf(args, sizeof args, "--resume %s --checkpoint-dir %s/b", path, dir);
    CHECK(run_tool_ex(tool, args, true, refused, sizeof refused) != 0);
    CHECK(strstr(refused, "b already holds another run's last.safetensors") != NULL);
    CHECK((after = scratch_read(path, &na)) && na == nb && !memcmp(before, after, nb));
    CHECK(metric_rows(run) == 3);
    if (cnn_test_failed()) printf("%s\n", refused);
    free(before);
    free(after);
    /* A resumed run keeps its model, schedule and input size, and the samples of its epochs
     * and their order: another --limit-train (which once failed mid-epoch with the loader's
     * "position ... is outside the epoch's ... samples") or --seed would read some samples of
     * the epoch twice and others never. Each given is refused by name. */
    static const char *const kept[][2] = {
        {"--model resnet18_small",
         "--model resnet18_small: the checkpoint's run uses model lenet5"},
        {"--schedule plateau", "--schedule plateau: the checkpoint's run uses schedule cosine"},
        {"--img-size 32", "--img-size 32: the model in"},
        {"--limit-train 50", "--limit-train 50: the checkpoint's run uses limit-train 128"},
        {"--seed 5", "--seed 5: the checkpoint's run uses seed 4"}};
    char one[4096];
    for (size_t i = 0; i < sizeof kept / sizeof *kept; i++) {
        snprintf(args, sizeof args, "--resume %s %s", path, kept[i][0]);
        CHECK(run_tool_ex(tool, args, true, one, sizeof one) != 0);
        if (!strstr(one, kept[i][1]))
            cnn_test_fail(__FILE__, __LINE__, "%s: %s", kept[i][0], one);
    }
    /* Resumed after those 2 epochs with a real lr, epoch 3 is a new best (15.6% -> 23.4%),
     * which restarts the count of epochs without a better one. */
    snprintf(run, sizeof run, "%s/d", dir);
    snprintf(args, sizeof args, "%s --stop-after 2 --checkpoint-dir %s", common, run);
    CHECK(run_tool(tool, args, out, sizeof out) == 0);
    snprintf(args, sizeof args,
             "--resume %s/last.safetensors --lr 0.003 --seed 4 --stop-after 1", run);
    CHECK(run_tool(tool, args, out, sizeof out) == 0);
    /* A change the user may make is said; an option given with the run's own value is not. */
    CHECK(strstr(out, "resumed with --lr 0.003 (the run's: 1e-30): the run goes on") &&
          !strstr(out, "--seed 4 ("));
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

/* Runs the tool on `limit` training samples (batch 64) for `epochs` epochs at lr 0.002 with the
 * step schedule and --warmup-epochs 2, and checks metrics.csv's lr column (each epoch's last
 * step's lr) against want[0, epochs). */
static void check_warmup_lrs(int limit, int epochs, const double *want)
{
    char tool[512], dir[256], args[1024], path[700], line[512];
    static char out[65536];
    if (!tool_path(tool, sizeof tool)) return;
    REQUIRE(make_tmpdir(dir, sizeof dir));
    snprintf(args, sizeof args,
             "--limit-train %d --limit-val 64 --batch 64 --epochs %d --lr 0.002 --schedule step "
             "--warmup-epochs 2 --seed 2 --checkpoint-dir %s/run", limit, epochs, dir);
    int rc = run_tool(tool, args, out, sizeof out);
    if (rc != 0) printf("%s\n", out);
    CHECK(rc == 0);
    snprintf(path, sizeof path, "%s/run/metrics.csv", dir);
    FILE *f = fopen(path, "r");
    int rows = 0;
    while (f && fgets(line, sizeof line, f)) {
        double v[7];
        if (sscanf(line, "%lf,%lf,%lf,%lf,%lf,%lf,%lf", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
                   &v[6]) != 7)
            continue;
        if (rows < epochs && fabs(v[6] - want[rows]) > 1e-5 * want[rows])
            cnn_test_fail(__FILE__, __LINE__, "epoch %d: lr %g, expected %g", rows + 1, v[6],
                          want[rows]);
        rows++;
    }
    if (f) fclose(f);
    CHECK(rows == epochs);
    remove_tree(dir);
}

/* Warm-up then the step schedule, as the tool applies them per optimizer step: 2 steps an
 * epoch, --warmup-epochs 2 raise the lr linearly to its base at step 4 (lr (s + 1) / 4 at step
 * s), then it falls tenfold every epochs / 3 = 2 epochs, counted from the run's start. */
TEST(train_tool_warmup_then_step_schedule)
{
    const double want[6] = {0.001, 0.002, 0.0002, 0.0002, 2e-5, 2e-5};
    check_warmup_lrs(128, 6, want);
}

/* The warm-up's last step is step warm - 1: with one step an epoch (where every step shows in
 * metrics.csv; with two, an epoch's first never does), --warmup-epochs 2 gives 0.001 and 0.002
 * at steps 0 and 1, and step 2 already follows the step schedule (3 epochs: x0.1 every epoch,
 * from the start: 0.002 * 0.01). A warm-up one step too long gave step 2 0.003. */
TEST(train_tool_warmup_ends_on_its_last_step)
{
    const double want[3] = {0.001, 0.002, 2e-5};
    check_warmup_lrs(64, 3, want);
}

/* Ctrl-C in the middle of an epoch: exit 0 with a checkpoint and the resume command; resuming
 * from it ends bit-identical to an uninterrupted run. */
TEST(train_tool_sigint_then_resume)
{
    char tool[512], dir[256], ckdir[300], args[1024], pa[600], pb[600];
    static char out[65536];
    if (!tool_path(tool, sizeof tool)) return;
    REQUIRE(make_tmpdir(dir, sizeof dir));
    const char *common = "--limit-train 3000 --limit-val 200 --epochs 2 --seed 5 --batch 32";
    snprintf(ckdir, sizeof ckdir, "%s/b", dir);
    char *argv[] = {tool, "--device", "cpu", "--limit-train", "3000", "--limit-val", "200",
                    "--epochs", "2", "--seed", "5", "--batch", "32", "--checkpoint-dir", ckdir,
                    NULL};
    /* The first progress line (10%) means training is under way; the signal lands in epoch 1
     * or, on a slow machine, in epoch 2 (a stop after the last epoch would end the run). */
    int st = run_and_interrupt(tool, argv, "epoch 1/2  10% ", SIGINT, out, sizeof out);
    CHECK(st != -1);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK(strstr(out, "interrupted: saved") != NULL);
    CHECK(strstr(out, "--resume") != NULL);
    /* "best ... so far" only once an epoch is complete */
    CHECK(!strstr(out, "so far") == !strstr(out, "epoch 1/2  train loss"));
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

/* Stopped by SIGTERM (what a batch system or `timeout` sends) after an epoch, the tool saves and
 * exits 0 as for Ctrl-C (it was killed by it, with nothing saved), and says the best accuracy
 * so far, as a finished run says its best (the GPU session's script reads that line). */
TEST(train_tool_sigterm_after_an_epoch_reports_the_best_so_far)
{
    char tool[512], dir[256], ckdir[300];
    static char out[65536];
    if (!tool_path(tool, sizeof tool)) return;
    REQUIRE(make_tmpdir(dir, sizeof dir));
    snprintf(ckdir, sizeof ckdir, "%s/c", dir);
    char *argv[] = {tool, "--device", "cpu", "--limit-train", "1000", "--limit-val", "200",
                    "--epochs", "3", "--seed", "5", "--batch", "32", "--checkpoint-dir", ckdir,
                    NULL};
    /* Sent in epoch 2; on a slow machine it may land in epoch 3, still before the end. */
    int st = run_and_interrupt(tool, argv, "epoch 2/3  10% ", SIGTERM, out, sizeof out);
    CHECK(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK(strstr(out, "interrupted: saved") && strstr(out, "resume with: "));
    /* The figure is the top-1 of the epoch it names. */
    const char *tb = strstr(out, "best val top-1 "), *at = tb ? strstr(tb, "% at epoch ") : NULL;
    int k = 0;
    CHECK(at && sscanf(at, "%% at epoch %d so far", &k) == 1 && (k == 1 || k == 2));
    char line[32];
    snprintf(line, sizeof line, "epoch %d/3  train loss", k);
    const char *ek = strstr(out, line), *tk = ek ? strstr(ek, "top-1 ") : NULL;
    CHECK(tk && strncmp(tk + 6, tb + 15, 5) == 0);
    if (cnn_test_failed()) printf("%s\n", out);
    remove_tree(dir);
}

/* An epoch's files are written before its last.safetensors, which commits the epoch, and
 * best.safetensors after it. A run stopped before the commit (killed, or here failing to write
 * confusion.csv, a folder in the way) has written no checkpoint in its first epoch, so the same
 * command runs again in that folder; one stopped between last.safetensors and best.safetensors
 * (here: best removed) has the best written when it is resumed, from the same weights. */
TEST(train_tool_epoch_files_come_before_the_last_checkpoint_and_the_best_after)
{
    char tool[512], dir[256], run[300], args[1024], path[600], kept[600];
    static char out[65536];
    if (!tool_path(tool, sizeof tool)) return;
    REQUIRE(make_tmpdir(dir, sizeof dir));
    snprintf(run, sizeof run, "%s/run", dir);
    snprintf(path, sizeof path, "%s/confusion.csv", run);
    REQUIRE(mkdir(run, 0777) == 0 && mkdir(path, 0777) == 0);
    snprintf(args, sizeof args, "--limit-train 128 --limit-val 64 --batch 64 --epochs 1 "
             "--checkpoint-dir %s", run);
    int rc = run_tool(tool, args, out, sizeof out);
    if (rc == 0 || !strstr(out, "confusion.csv"))
        cnn_test_fail(__FILE__, __LINE__, "exit %d:\n%s", rc, out);
    CHECK(metric_rows(run) == 1); /* written before the failure */
    snprintf(kept, sizeof kept, "%s/last.safetensors", run);
    CHECK(access(kept, F_OK) != 0);
    snprintf(kept, sizeof kept, "%s/best.safetensors", run);
    CHECK(access(kept, F_OK) != 0);
    REQUIRE(rmdir(path) == 0);
    rc = run_tool(tool, args, out, sizeof out); /* the same command, in the same folder */
    if (rc != 0) cnn_test_fail(__FILE__, __LINE__, "again: exit %d:\n%s", rc, out);

    /* The run is complete and epoch 1 its best; without its best.safetensors, a resume writes
     * it, and says so rather than "left as it was". */
    snprintf(path, sizeof path, "%s/best-before.safetensors", dir);
    REQUIRE(rename(kept, path) == 0);
    snprintf(args, sizeof args, "--resume %s/last.safetensors", run);
    rc = run_tool(tool, args, out, sizeof out);
    if (rc != 0 || !strstr(out, "best.safetensors: epoch 1's weights, which the run had not") ||
        strstr(out, "left as it was"))
        cnn_test_fail(__FILE__, __LINE__, "resume: exit %d:\n%s", rc, out);
    check_same_tensors(path, kept);
    /* Present and current, it is left alone. */
    rc = run_tool(tool, args, out, sizeof out);
    CHECK(rc == 0 && !strstr(out, "had not saved") && strstr(out, "left as it was"));
    remove_tree(dir);
}

/* A checkpoint's temporary file left by a run killed while saving it (as large as the
 * checkpoint, one more per kill) is removed when the folder is next trained in, once its
 * process is gone, or when the process of its id started after it was written (process 1, in a
 * container, run after run); one of a live process written since it started, and other files,
 * are left alone. */
TEST(train_tool_removes_partial_checkpoints_of_killed_runs)
{
    char tool[512], dir[256], run[300], args[1024], dead[600], live[600], other[600], best[600];
    char reused[600], recent[600];
    static char out[65536];
    if (!tool_path(tool, sizeof tool)) return;
    REQUIRE(make_tmpdir(dir, sizeof dir));
    snprintf(run, sizeof run, "%s/run", dir);
    snprintf(args, sizeof args, "--limit-train 128 --limit-val 64 --batch 64 --epochs 2 "
             "--stop-after 1 --checkpoint-dir %s", run);
    REQUIRE(run_tool(tool, args, out, sizeof out) == 0);
    pid_t gone = fork(); /* a process id that no process has once it is waited for */
    REQUIRE(gone >= 0);
    if (gone == 0) _exit(0);
    REQUIRE(waitpid(gone, NULL, 0) == gone);
    snprintf(dead, sizeof dead, "%s/last.safetensors.tmp.%ld.%ld", run, (long)gone, (long)gone);
    snprintf(live, sizeof live, "%s/best.safetensors.tmp.%ld.7", run, (long)getpid());
    snprintf(other, sizeof other, "%s/notes.tmp.%ld.1", run, (long)gone);
    snprintf(best, sizeof best, "%s/best.safetensors.tmp.%ld.3", run, (long)gone);
    snprintf(reused, sizeof reused, "%s/last.safetensors.tmp.1.9", run);
    snprintf(recent, sizeof recent, "%s/best.safetensors.tmp.1.8", run);
    const char *const made[6] = {dead, live, other, best, reused, recent};
    for (int i = 0; i < 6; i++) {
        FILE *f = fopen(made[i], "w");
        REQUIRE(f && fputs("partial", f) >= 0 && fclose(f) == 0);
    }
    /* Written in 1970: before process 1 started, whatever it is. */
    const struct timeval old[2] = {{1000, 0}, {1000, 0}};
    REQUIRE(utimes(reused, old) == 0);
    const bool proc1 = access("/proc/1/stat", R_OK) == 0;
    snprintf(args, sizeof args, "--resume %s/last.safetensors", run);
    int rc = run_tool(tool, args, out, sizeof out);
    snprintf(args, sizeof args, "removed %s: a checkpoint being written when its run (process "
             "%ld) was killed", dead, (long)gone);
    if (rc != 0 || !strstr(out, args))
        cnn_test_fail(__FILE__, __LINE__, "exit %d, no \"%s\" in:\n%s", rc, args, out);
    CHECK(access(dead, F_OK) != 0 && access(live, F_OK) == 0 && access(other, F_OK) == 0);
    CHECK(access(best, F_OK) != 0);
    CHECK(access(recent, F_OK) == 0);
    if (proc1) CHECK(access(reused, F_OK) != 0); /* else its start is unknown: kept */
    remove_tree(dir);
}

/* Options a resumed run takes or refuses, where the run's state is involved: a new --lr scales a
 * plateau schedule's rate (it held the rate it reached: epoch 5 after the fall at epoch 4 runs
 * at 2e-8 under --lr 2e-7, where the new rate was said and then dropped, 1e-8); SGD's momentum
 * may change but not to or from 0 (its buffers: the state failed to load after the change was
 * said to be used); the command to go on names the device given (a checkpoint does not keep
 * it, and an exact resume needs it); and a finished run resumed into a new folder is evaluated
 * without writing there (an orphan best.safetensors was, "which the run had not saved as its
 * best"). */
TEST(train_tool_resume_takes_a_new_lr_and_momentum_with_the_runs_state)
{
    char tool[512], dir[256], args[1024], run[400], path[600];
    static char out[65536];
    if (!tool_path(tool, sizeof tool)) return;
    REQUIRE(make_tmpdir(dir, sizeof dir));
    snprintf(run, sizeof run, "%s/p", dir);
    snprintf(args, sizeof args, "--limit-train 128 --limit-val 64 --batch 64 --epochs 5 "
             "--lr 1e-7 --schedule plateau --seed 4 --stop-after 4 --checkpoint-dir %s", run);
    CHECK(run_tool(tool, args, out, sizeof out) == 0);
    snprintf(args, sizeof args, "--resume %s/last.safetensors --lr 2e-7", run);
    CHECK(run_tool(tool, args, out, sizeof out) == 0);
    CHECK(strstr(out, "resumed with --lr 2e-07 (the run's: 1e-07)") != NULL);
    CHECK(metric_rows(run) == 5);
    double lr5 = last_lr(run);
    if (fabs(lr5 - 2e-8) > 1e-13)
        cnn_test_fail(__FILE__, __LINE__, "plateau: lr %g in epoch 5, expected 2e-08", lr5);

    snprintf(run, sizeof run, "%s/s", dir);
    snprintf(args, sizeof args, "--limit-train 128 --limit-val 64 --batch 64 --epochs 2 "
             "--optimizer sgd --stop-after 1 --device cpu --workers 2 --checkpoint-dir %s", run);
    CHECK(run_tool(tool, args, out, sizeof out) == 0);
    /* The command it gives to go on keeps the options a checkpoint does not (the device). */
    snprintf(path, sizeof path, "--resume %s/last.safetensors --device cpu --workers 2\n", run);
    CHECK(strstr(out, "continue with: ") && strstr(out, path));
    snprintf(args, sizeof args, "--resume %s/last.safetensors --momentum 0", run);
    CHECK(run_tool_ex(tool, args, true, out, sizeof out) != 0);
    CHECK(strstr(out, "--momentum 0: the checkpoint's SGD run has momentum 0.9, which a resumed "
                      "run keeps") != NULL);
    snprintf(args, sizeof args, "--resume %s/last.safetensors --momentum 0.5", run);
    CHECK(run_tool(tool, args, out, sizeof out) == 0);
    CHECK(strstr(out, "resumed with --momentum 0.5 (the run's: 0.9)") != NULL);
    CHECK(metric_rows(run) == 2);

    snprintf(run, sizeof run, "%s/one", dir);
    snprintf(args, sizeof args, "--limit-train 128 --limit-val 64 --batch 64 --epochs 1 "
             "--checkpoint-dir %s", run);
    CHECK(run_tool(tool, args, out, sizeof out) == 0); /* its one epoch is its best */
    snprintf(args, sizeof args, "--resume %s/last.safetensors --checkpoint-dir %s/fresh", run,
             dir);
    CHECK(run_tool(tool, args, out, sizeof out) == 0);
    CHECK(strstr(out, "is complete (1 of 1 epochs)") && strstr(out, "nothing written (") &&
          !strstr(out, "best.safetensors"));
    snprintf(path, sizeof path, "%s/fresh", dir);
    struct stat sb;
    CHECK(stat(path, &sb) != 0);
    if (cnn_test_failed()) printf("%s\n", out);
    remove_tree(dir);
}
