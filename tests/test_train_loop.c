/* test_train_loop.c — train_imagenet_subset's epoch loop through what it leaves on disk: state
 * after whole epochs, lr schedules (cosine end, warm-up at a Ctrl-C, plateau patience), and a
 * resume mid-epoch (the epoch's figures, no best.safetensors from half-trained weights). */
#include "test.h"

#include "train_tool.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

/* Two epochs of two steps (128 images, batch 64), the default cosine schedule from --lr 0.002. */
TEST(train_tool_state_after_whole_epochs)
{
    char tool[512], dir[256], args[512], path[400], buf[64];
    static char out[65536];
    if (!tool_path(tool, sizeof tool)) return;
    REQUIRE(make_tmpdir(dir, sizeof dir));
    snprintf(args, sizeof args, "--limit-train 128 --limit-val 64 --batch 64 --epochs 2 "
             "--lr 0.002 --seed 4 --checkpoint-dir %s/a", dir);
    REQUIRE(run_tool(tool, args, out, sizeof out) == 0);
    snprintf(path, sizeof path, "%s/a/last.safetensors", dir);
    /* The run's counters: every epoch and step counted once, the epoch's position back at 0. */
    const struct {
        const char *key, *want;
    } keys[] = {{"epoch", "2"},     {"step", "4"},         {"batch", "0"},
                {"position", "0"},  {"part_seen", "0"},    {"part_correct", "0"},
                {"part_loss", "0"}, {"part_seconds", "0"}, {"optim.step", "4"}};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
        if (strcmp(meta_of(path, keys[i].key, buf, sizeof buf), keys[i].want))
            cnn_test_fail(__FILE__, __LINE__, "%s: %s is '%s', want '%s'", path, keys[i].key,
                          buf, keys[i].want);
    /* The epochs since the best are counted for --early-stop, one for each epoch after it. */
    long best = atol(meta_of(path, "best_epoch", buf, sizeof buf));
    long bad = atol(meta_of(path, "bad_epochs", buf, sizeof buf));
    CHECK(best >= 1 && best <= 2 && bad == 2 - best);
    /* Cosine over the run's 4 steps, without warm-up: step 3, the last, has
     * 0.002 * (1 + cos(3 pi / 4)) / 2; a schedule whose length is one epoch short has reached
     * its end (0) by then. */
    double lr = atof(meta_of(path, "optim.lr", buf, sizeof buf));
    CHECK(fabs(lr - 0.001 * (1 + cos(3 * M_PI / 4))) < 1e-9);
    remove_tree(dir);
}

/* Runs 2000 images in batches of 16 for `epochs` epochs (options: more of them) into DIR/b,
 * Ctrl-C'd at the output line holding `at`; true when DIR/b/last.safetensors then holds a run
 * stopped inside an epoch (a signal after the last step lets the run end: the caller's checks
 * cannot apply, and the test is counted as skipped). */
static bool stop_mid_epoch(const char *tool, const char *dir, const char *epochs,
                           const char *options, const char *at, char *out, size_t cap)
{
    char script[1024], path[400], buf[64];
    /* exec: the shell becomes the tool, which gets the signal */
    snprintf(script, sizeof script, "exec '%s' --device cpu --limit-train 2000 --limit-val 64 "
             "--batch 16 --epochs %s %s --checkpoint-dir %s/b", tool, epochs, options, dir);
    char *argv[] = {"/bin/sh", "-c", script, NULL};
    int st = run_and_interrupt("/bin/sh", argv, at, SIGINT, out, cap);
    if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        cnn_test_fail(__FILE__, __LINE__, "interrupted run: status %d:\n%s", st, out);
        return false;
    }
    snprintf(path, sizeof path, "%s/b/last.safetensors", dir);
    return atol(meta_of(path, "batch", buf, sizeof buf)) > 0;
}

/* Ctrl-C in the middle of the warm-up's first epoch (125 steps of 16 images, --warmup-epochs 1):
 * the checkpoint's learning rate is that of the last step taken, step S - 1 after S steps,
 * lr * S / 125. A step count one ahead within the epoch (its last batch hides it: clamped to the
 * epoch's end) gave lr * (S + 1) / 125; the message names the epoch and batch the file holds. */
TEST(train_tool_interrupted_warmup_keeps_the_last_steps_lr)
{
    char tool[512], dir[256], path[400], buf[64], want[96];
    static char out[65536];
    if (!tool_path(tool, sizeof tool)) return;
    REQUIRE(make_tmpdir(dir, sizeof dir));
    if (stop_mid_epoch(tool, dir, "2", "--seed 5 --lr 0.001 --schedule step --warmup-epochs 1",
                       "epoch 1/2  10% ", out, sizeof out)) {
        snprintf(path, sizeof path, "%s/b/last.safetensors", dir);
        long epoch = atol(meta_of(path, "epoch", buf, sizeof buf));
        long batch = atol(meta_of(path, "batch", buf, sizeof buf));
        long step = atol(meta_of(path, "step", buf, sizeof buf));
        double lr = atof(meta_of(path, "optim.lr", buf, sizeof buf));
        CHECK(step == epoch * 125 + batch);
        snprintf(want, sizeof want, "(epoch %ld, after batch %ld of 125)", epoch + 1, batch);
        if (!strstr(out, want)) cnn_test_fail(__FILE__, __LINE__, "no '%s' in:\n%s", want, out);
        /* (On a machine slow enough for the signal to land after epoch 1, no warm-up.) */
        if (epoch == 0 && fabs(lr - 0.001 * (double)batch / 125) > 1e-9)
            cnn_test_fail(__FILE__, __LINE__, "after %ld steps the lr is %.9g, want %.9g", batch,
                          lr, 0.001 * (double)batch / 125);
    } else {
        cnn_test_skip("the Ctrl-C landed after the run's last step");
    }
    remove_tree(dir);
}

/* Stopped in epoch 2 after epoch 1 was the best, and best.safetensors lost: the resumed run's
 * weights are no longer epoch 1's (some of epoch 2's steps moved them), so it must not write
 * them as epoch 1's best (as it does for a checkpoint taken at the end of that epoch). */
TEST(train_tool_resume_mid_epoch_does_not_repair_the_best)
{
    char tool[512], dir[256], path[400], args[512], buf[64];
    static char out[65536];
    if (!tool_path(tool, sizeof tool)) return;
    REQUIRE(make_tmpdir(dir, sizeof dir));
    if (stop_mid_epoch(tool, dir, "2", "--seed 6", "epoch 2/2  10% ", out, sizeof out)) {
        snprintf(path, sizeof path, "%s/b/last.safetensors", dir);
        CHECK(!strcmp(meta_of(path, "best_epoch", buf, sizeof buf), "1"));
        snprintf(path, sizeof path, "%s/b/best.safetensors", dir);
        REQUIRE(unlink(path) == 0);
        snprintf(args, sizeof args, "--resume %s/b/last.safetensors", dir);
        CHECK(run_tool(tool, args, out, sizeof out) == 0);
        if (strstr(out, "which the run had not saved as its best"))
            cnn_test_fail(__FILE__, __LINE__, "mid-epoch weights saved as the best:\n%s", out);
    } else {
        cnn_test_skip("the Ctrl-C landed after the run's last step");
    }
    remove_tree(dir);
}

/* Ctrl-C in the middle of the only epoch, then --resume: the epoch's train loss and accuracy
 * cover the steps before the stop too (kept in the checkpoint), as an uninterrupted run's do.
 * Counting only the steps after it, with the loss summed over all, gave other figures. */
TEST(train_tool_resumed_epoch_reports_all_its_steps)
{
    char tool[512], dir[256], path[400], args[512];
    static char out[65536];
    if (!tool_path(tool, sizeof tool)) return;
    REQUIRE(make_tmpdir(dir, sizeof dir));
    if (stop_mid_epoch(tool, dir, "1", "--seed 7", "epoch 1/1  10% ", out, sizeof out)) {
        snprintf(args, sizeof args, "--resume %s/b/last.safetensors", dir);
        CHECK(run_tool(tool, args, out, sizeof out) == 0);
        snprintf(args, sizeof args, "--limit-train 2000 --limit-val 64 --epochs 1 --seed 7 "
                 "--batch 16 --checkpoint-dir %s/a", dir);
        CHECK(run_tool(tool, args, out, sizeof out) == 0);
        double a[7], b[7];
        snprintf(path, sizeof path, "%s/b", dir);
        CHECK(metrics_row(path, 0, b));
        snprintf(path, sizeof path, "%s/a", dir);
        REQUIRE(metrics_row(path, 0, a));
        if (fabs(a[1] - b[1]) > 1e-5 * a[1] || fabs(a[2] - b[2]) > 1e-6)
            cnn_test_fail(__FILE__, __LINE__, "train loss %g acc %g resumed, %g %g straight",
                          b[1], b[2], a[1], a[2]);
    } else {
        cnn_test_skip("the Ctrl-C landed after the run's last step");
    }
    remove_tree(dir);
}

/* --schedule plateau: ReduceLROnPlateau on the val loss with patience 2. At --lr 1e-6 the val
 * loss moves by less than the schedule's threshold (1e-4 of it) after epoch 1: epochs 2, 3 and 4
 * are bad, the third of them (more than 2) cuts the lr tenfold, and epoch 5 trains at 1e-7. */
TEST(train_tool_plateau_waits_its_patience)
{
    char tool[512], dir[256], args[512];
    static char out[65536];
    if (!tool_path(tool, sizeof tool)) return;
    REQUIRE(make_tmpdir(dir, sizeof dir));
    snprintf(args, sizeof args, "--limit-train 64 --limit-val 64 --batch 64 --epochs 5 "
             "--lr 1e-6 --schedule plateau --seed 3 --checkpoint-dir %s/run", dir);
    REQUIRE(run_tool(tool, args, out, sizeof out) == 0);
    snprintf(args, sizeof args, "%s/run", dir);
    for (int row = 0; row < 5; row++) {
        double v[7], want = row < 4 ? 1e-6 : 1e-7;
        if (!metrics_row(args, row, v) || fabs(v[6] - want) > 1e-3 * want)
            cnn_test_fail(__FILE__, __LINE__, "epoch %d: lr %g, want %g", row + 1, v[6], want);
    }
    remove_tree(dir);
}
