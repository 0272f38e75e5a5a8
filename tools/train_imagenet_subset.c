/* train_imagenet_subset.c — trains a zoo model on Fashion-MNIST or an ImageNet-style folder:
 * the epoch loop with validation, checkpoints, Ctrl-C and resume, and the --eval-only /
 * --predict modes. The pieces live in tools/common/ (options, building the run, the
 * --cuda-graph step, progress display, metrics and plots, checkpoint files, prediction). A fatal
 * error prints one line on stderr. */
#include "cnncuda.h"
#include "common/checkpoint.h"
#include "common/predict.h"
#include "common/progress.h"
#include "common/stop_signal.h"
#include "common/train_opts.h"
#include "common/train_report.h"
#include "common/train_run.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* OpenMP threads that wait for work sleep instead of spinning, unless OMP_WAIT_POLICY says
 * otherwise: a spinning thread holds its core while the loader's workers, or another program,
 * need it. With one of the 2 cores busy elsewhere an epoch of the default run took 10.6 s with
 * spinning and 6.2 s without; on an idle machine the two are within noise (BENCHMARKS.md).
 * libgomp reads the variable once, before main, so the tool sets it and runs itself again
 * (once: the second run finds it set). Without /proc, or if the exec fails, it runs on as it
 * is, spinning. */
static void omp_wait_passive(char **argv)
{
    char self[4096];
    if (getenv("OMP_WAIT_POLICY")) return;
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0 || n >= (ssize_t)sizeof self - 1) return;
    self[n] = '\0';
    setenv("OMP_WAIT_POLICY", "passive", 1);
    execv(self, argv);
}

static const char *class_name_of(const void *ctx, int i)
{
    const tr_model_meta *mm = ctx;
    return i >= 0 && i < mm->num_classes ? mm->class_names[i] : "?";
}

/* The schedule's step for the batch just taken from the training loader: epoch * steps per
 * epoch + the batch's index in an epoch with no bad sample, told by how far into the epoch's
 * order the loader now is. Bad samples skipped make an epoch fewer batches; counting those would
 * put the schedule behind, so that the step decay came late and the cosine never reached its
 * end. Without bad samples this is the count of steps taken. */
static int64_t sched_step(const tr_run *r)
{
    const int64_t spe = r->steps_per_epoch, pos = cnn_loader_position(r->train_ld);
    int64_t b = (pos + r->o.batch - 1) / r->o.batch - 1;
    if (b > spe - 1) b = spe - 1; /* drop_last: the batch may end in the dropped tail */
    if (b < 0) b = 0;
    return r->st.epoch * spe + b;
}

/* The learning rate of optimizer step `step` (0-based): warm-up per step, then the schedule. */
static float lr_at(const tr_run *r, int64_t step)
{
    const train_opts *o = &r->o;
    int64_t spe = r->steps_per_epoch, warm = (int64_t)o->warmup_epochs * spe;
    float lr = o->lr;
    if (!strcmp(o->schedule, "cosine")) {
        TR_LIB(cnn_sched_cosine_lr(o->lr, warm, (int64_t)o->epochs * spe, 0.0f, step, &lr),
               "lr schedule");
        return lr;
    }
    if (step < warm) return o->lr * (float)(step + 1) / (float)warm;
    if (r->plateau) return cnn_sched_plateau_get_lr(r->plateau);
    int size = o->epochs / 3 > 0 ? o->epochs / 3 : 1;
    TR_LIB(cnn_sched_step_lr(o->lr, size, 0.1f, step / spe, &lr), "lr schedule");
    return lr;
}

/* A batch's logits, labels and loss on their way to the host. On the GPU their copies start
 * once the step is queued and are waited for after the next step is queued, so the device
 * never idles while the host reads; on the CPU they are the tensors themselves. */
typedef struct step_out {
    cnn_tensor *t[3]; /* logits, labels, loss; t[0] NULL: none */
    int64_t step;     /* the optimizer step; -1 for a validation batch */
} step_out;

/* Takes the batch's tensors (the caller's handles become NULL). */
static void out_start(tr_run *r, cnn_tensor **logits, cnn_tensor **labels, cnn_tensor **loss,
                      step_out *o)
{
    cnn_tensor **src[3] = {logits, labels, loss};
    o->step = cnn_is_grad_enabled() ? r->st.step : -1; /* -1: a validation batch */
    for (int i = 0; i < 3; i++) {
        if (r->dev.type == CNN_DEVICE_CPU) {
            o->t[i] = *src[i];
        } else {
            o->t[i] = NULL;
            TR_LIB(cnn_tensor_empty_pinned(cnn_tensor_shape(*src[i]), cnn_tensor_dtype(*src[i]),
                                           &o->t[i]),
                   "reading results back");
            TR_LIB(cnn_tensor_copy_start_(o->t[i], *src[i]), "reading results back");
            cnn_tensor_free(src[i]);
        }
        *src[i] = NULL;
    }
}

static void out_drop(step_out *o)
{
    for (int i = 0; i < 3; i++) cnn_tensor_free(&o->t[i]);
}

/* A loss that is not finite ends the run, with what caused it as far as the tool can tell and
 * what is on disk. step: the optimizer step of a training batch, -1 for a validation batch.
 * Weights this process has not updated yet (step r->first_step, or a validation pass before
 * any training here) came so from the checkpoint or --pretrained: no --lr is to blame. */
static void die_non_finite(const tr_run *r, float lv, int64_t step)
{
    const char *v = isnan(lv) ? "nan" : lv > 0 ? "inf" : "-inf"; /* never "-nan" */
    char what[64];
    if (step >= 0) snprintf(what, sizeof what, "the loss is %s at step %lld", v, (long long)step);
    else snprintf(what, sizeof what, "the validation loss is %s", v);
    if (step >= 0 ? step == r->first_step : r->st.step == r->first_step)
        tr_die("%s, before this run updated any weight: the weights it %s give non-finite "
               "outputs", what, r->o.eval_only[0] || r->o.resume[0] ? "loaded from the checkpoint"
                                    : r->o.pretrained[0] ? "started from (--pretrained)"
                                                         : "was initialised with");
    char kept[TR_PATH_MAX + 160];
    if (r->st.epoch == 0 && !r->o.resume[0])
        snprintf(kept, sizeof kept, "no epoch finished, so nothing was saved");
    else
        snprintf(kept, sizeof kept, "the checkpoints in %s are from before it (if a run "
                 "resumed from them diverges again, start a new one)", r->dir);
    tr_die("%s: training diverged (lower --lr, or add --warmup-epochs); %s", what, kept);
}

/* Waits for a batch's results and adds them to e's statistics. */
static void out_finish(tr_run *r, step_out *o, tr_eval *e)
{
    int64_t b = cnn_tensor_dim(o->t[1], 0), k = r->mm.num_classes;
    int64_t lab[b];
    float lv;
    if (!r->host_logits && !(r->host_logits = malloc((size_t)(r->o.batch * k) * sizeof(float))))
        tr_die("out of memory");
    for (int i = 0; i < 3; i++) TR_LIB(cnn_tensor_wait(o->t[i]), "reading results back");
    TR_LIB(cnn_tensor_read(o->t[0], r->host_logits, (size_t)(b * k)), "reading logits");
    TR_LIB(cnn_tensor_read(o->t[1], lab, (size_t)b), "reading labels");
    TR_LIB(cnn_tensor_read(o->t[2], &lv, 1), "reading the loss");
    if (!isfinite(lv)) die_non_finite(r, lv, o->step);
    tr_eval_add(e, r->host_logits, lab, b, lv);
    out_drop(o);
}

/* The k of the "top-5" figures: with 5 classes or fewer every class is among the top 5, so the
 * figure (100%) is labelled top-K for what it is. */
static int top_k(const tr_run *r) { return r->mm.num_classes < 5 ? r->mm.num_classes : 5; }

/* sep + "top-k 12.34%" after the top-1, or nothing when top-k is top-1 (a single class). */
static const char *top_k_text(const tr_run *r, const char *sep, double acc, char *buf, size_t n)
{
    if (top_k(r) > 1) snprintf(buf, n, "%stop-%d %.2f%%", sep, top_k(r), 100 * acc);
    else buf[0] = 0;
    return buf;
}

/* One batch through the model and the loss (the loaders deliver batches on r->dev already).
 * Validation uses the training criterion, label smoothing included, as torchvision's reference
 * scripts do: the two losses (and a plateau schedule's) stay on one scale. */
static void forward_batch(tr_run *r, cnn_tensor *images, cnn_tensor *labels, bool train,
                          cnn_tensor **logits, cnn_tensor **loss)
{
    TR_LIB(cnn_model_forward(r->model, images, train, logits), "forward");
    TR_LIB(cnn_cross_entropy(*logits, labels, r->o.label_smoothing, loss), "loss");
}

/* Validation pass into e (fresh). False when Ctrl-C interrupted it. */
static bool evaluate(tr_run *r, tr_eval *e)
{
    tr_eval_free(e);
    if (!tr_eval_init(e, r->mm.num_classes)) tr_die("out of memory");
    bool was = cnn_set_grad_enabled(false);
    TR_LIB(cnn_loader_start_epoch(r->val_ld, 0), "validation loader");
    /* A batch's results are read once the next batch's forward is queued, so that the device
     * stays busy while the host reads. */
    step_out prev = {0};
    for (;;) {
        if (tool_stop) break;
        cnn_tensor *images = NULL, *labels = NULL, *logits = NULL, *loss = NULL;
        TR_LIB(cnn_loader_next(r->val_ld, &images, &labels), "validation data");
        if (images) forward_batch(r, images, labels, false, &logits, &loss);
        cnn_tensor_free(&images);
        step_out cur = {0};
        if (logits) out_start(r, &logits, &labels, &loss, &cur);
        cnn_tensor_free(&labels);
        if (prev.t[0]) out_finish(r, &prev, e);
        prev = cur;
        if (!prev.t[0]) break;
    }
    out_drop(&prev); /* interrupted: not waited for */
    cnn_set_grad_enabled(was);
    return !tool_stop;
}

static void path_in_dir(const tr_run *r, const char *name, char *buf, size_t n)
{
    snprintf(buf, n, "%s/%s", r->dir, name);
}

/* last.safetensors holds everything a resumed run needs; best.safetensors the weights and the
 * metadata only, so that it loads into torchvision as it is (load_state_dict, strict). */
static void save(tr_run *r, const char *name)
{
    char path[TR_PATH_MAX + 64], err[2048];
    const bool all = strcmp(name, "best.safetensors") != 0;
    path_in_dir(r, name, path, sizeof path);
    cnn_rng_get_state(&r->st.rng_seed, &r->st.rng_offset);
    if (!tr_checkpoint_save(path, r->model, all ? r->opt : NULL, all ? r->plateau : NULL, &r->o,
                            &r->mm, &r->st, err, sizeof err))
        tr_die("%s", err);
}

/* Whether the run has met its --early-stop patience (a resumed one may have before it). */
static bool stopped_early(const tr_run *r)
{
    return r->o.early_stop > 0 && r->st.bad_epochs >= r->o.early_stop;
}

/* Whether the run's folder is the one --resume's checkpoint is in. */
static bool in_checkpoint_folder(const tr_run *r)
{
    char dir[TR_PATH_MAX];
    tr_dir_of(r->o.resume, dir, sizeof dir);
    struct stat a, b;
    return stat(dir, &a) == 0 && stat(r->dir, &b) == 0 && a.st_dev == b.st_dev &&
           a.st_ino == b.st_ino;
}

/* A resumed run whose last completed epoch was its best, before it trains: the model holds that
 * epoch's weights, so a best.safetensors that is missing or older (a run killed after saving
 * last.safetensors and before best.safetensors) is written now. */
static void repair_best(tr_run *r)
{
    char path[TR_PATH_MAX + 64], err[2048];
    if (r->st.best_epoch < 1 || r->st.best_epoch != r->st.epoch || r->st.batch != 0) return;
    /* A run with nothing left to train, resumed into another folder (--checkpoint-dir), is
     * only evaluated: that folder is not its run's, and gets no file. */
    if ((r->st.epoch >= r->o.epochs || stopped_early(r)) && !in_checkpoint_folder(r)) return;
    path_in_dir(r, "best.safetensors", path, sizeof path);
    cnn_dict *d = NULL;
    tr_model_meta mm = {0};
    const char *e = NULL;
    /* (A missing or unreadable file fails to open.) */
    bool current = tr_checkpoint_open(path, &d, &mm, err, sizeof err) &&
                   (e = cnn_dict_get_meta(d, "epoch")) && atoll(e) == r->st.epoch;
    cnn_dict_destroy(&d);
    tr_model_meta_free(&mm);
    if (current) return;
    save(r, "best.safetensors");
    r->best_repaired = true;
    printf("wrote %s: epoch %lld's weights, which the run had not saved as its best\n", path,
           (long long)r->st.epoch);
}

/* The last validation's confusion matrix (a finished run's is its last epoch's). */
static void write_confusion(tr_run *r)
{
    char path[TR_PATH_MAX + 64];
    path_in_dir(r, "confusion.csv", path, sizeof path);
    if (!tr_eval_write_confusion_csv(&r->last_eval, class_name_of, &r->mm, path))
        tr_die("cannot write %s: %s", path, strerror(errno));
}

static void write_curves(tr_run *r)
{
    char path[TR_PATH_MAX + 64], err[512];
    path_in_dir(r, "metrics.csv", path, sizeof path);
    if (!tr_history_write_csv(&r->st.history, path))
        tr_die("cannot write %s: %s", path, strerror(errno));
    path_in_dir(r, "curves.png", path, sizeof path);
    if (!tr_plot_curves(&r->st.history, path, err, sizeof err)) tr_die("%s", err);
}

/* What follows --resume in the command that continues the run, to paste into a shell:
 * last.safetensors' path, quoted, and the options given that the checkpoint does not keep
 * (--device, ...: a bit-identical resume needs the same device). */
static const char *resume_args(const tr_run *r, char *buf, size_t n)
{
    char path[TR_PATH_MAX + 64], rt[512];
    path_in_dir(r, "last.safetensors", path, sizeof path);
    tr_shell_quote(path, buf, n);
    size_t used = strlen(buf);
    snprintf(buf + used, n - used, "%s", tr_opts_runtime_args(&r->o, rt, sizeof rt));
    return buf;
}

static void interrupted(tr_run *r)
{
    char quoted[TR_QUOTED_MAX + 512];
    save(r, "last.safetensors");
    printf("\ninterrupted: saved %s/last.safetensors (epoch %lld, after batch %lld of %lld)\n"
           "resume with: %s --resume %s\n",
           r->dir, (long long)r->st.epoch + 1, (long long)r->st.batch,
           (long long)r->steps_per_epoch, tr_invocation(), resume_args(r, quoted, sizeof quoted));
    if (r->st.history.n) /* what the epochs completed reached, as a finished run says it */
        printf("best val top-1 %.2f%% at epoch %lld so far\n", 100 * r->st.best_top1,
               (long long)r->st.best_epoch);
    exit(0);
}

/* One training epoch: returns false when Ctrl-C stopped it (state saved by the caller). */
static bool train_epoch(tr_run *r, tr_eval *te, double *wait_s)
{
    int64_t e = r->st.epoch;
    /* A checkpoint taken inside this epoch: continue after the batches it already trained on
     * (the loader's order depends only on (seed, epoch), so the rest is the same), without
     * decoding them again; an older checkpoint without the position skips them by decoding. */
    const bool at_position = r->st.batch > 0 && r->st.position >= 0;
    /* Another --data may hold fewer training images than the run stopped at. */
    if (at_position && r->st.position > cnn_loader_num_samples(r->train_ld))
        tr_die("--data %s: the checkpoint stopped at sample %lld of its epoch, but this training "
               "split has %lld: resume with the run's data", r->o.data,
               (long long)r->st.position, (long long)cnn_loader_num_samples(r->train_ld));
    TR_LIB(cnn_loader_start_epoch_at(r->train_ld, e, at_position ? r->st.position : 0),
           "training loader");
    for (int64_t b = 0; b < (at_position ? 0 : r->st.batch); b++) {
        cnn_tensor *images = NULL, *labels = NULL;
        TR_LIB(cnn_loader_next(r->train_ld, &images, &labels), "training data");
        cnn_tensor_free(&images);
        cnn_tensor_free(&labels);
    }
    te->loss_sum = r->st.part_loss;
    te->top1 = r->st.part_correct;
    te->n = r->st.part_seen;
    char label[32];
    snprintf(label, sizeof label, "epoch %lld/%d", (long long)e + 1, r->o.epochs);
    tr_progress bar;
    /* What the epoch trains on: a last batch left out (tr_run_open_train) is not counted. */
    int64_t total = cnn_loader_num_samples(r->train_ld);
    if (total > r->steps_per_epoch * r->o.batch) total = r->steps_per_epoch * r->o.batch;
    tr_progress_start(&bar, label, total, te->n);
    cnn_loader_stats s0, s1;
    cnn_loader_get_stats(r->train_ld, &s0);
    step_out prev = {0};
    for (;;) {
        if (tool_stop) break;
        cnn_tensor *images = NULL, *labels = NULL;
        TR_LIB(cnn_loader_next(r->train_ld, &images, &labels), "training data");
        if (!images) break;
        if (r->bn_1x1[0] && cnn_tensor_dim(images, 0) == 1) {
            /* Bad files skipped left one image for this batch (tr_run_open_train). */
            if (!r->one_image_noted)
                printf("%snote: bad files left a batch of 1 image, which %s cannot train on: "
                       "it is left out, as is any other such batch\n", bar.tty ? "\n" : "",
                       r->bn_1x1);
            r->one_image_noted = true;
            cnn_tensor_free(&images);
            cnn_tensor_free(&labels);
            r->st.batch++;
            r->st.position = cnn_loader_position(r->train_ld);
            continue;
        }
        TR_LIB(cnn_optim_set_lr(r->opt, lr_at(r, sched_step(r))), "setting the learning rate");
        cnn_tensor *logits = NULL, *loss = NULL;
        if (!tr_graph_step(r, images, labels, &logits, &loss)) {
            forward_batch(r, images, labels, true, &logits, &loss);
            TR_LIB(cnn_backward(loss), "backward");
            TR_LIB(cnn_optim_step(r->opt), "optimizer step");
            cnn_optim_zero_grad(r->opt);
        }
        cnn_tensor_free(&images);
        /* This step's results go to the host while the next step is queued. */
        step_out cur;
        out_start(r, &logits, &labels, &loss, &cur);
        if (prev.t[0]) {
            out_finish(r, &prev, te);
            tr_progress_update(&bar, te->n, tr_eval_loss(te), tr_eval_top1(te));
        }
        prev = cur;
        r->st.step++;
        r->st.batch++;
        r->st.position = cnn_loader_position(r->train_ld);
    }
    if (prev.t[0]) {
        out_finish(r, &prev, te);
        tr_progress_update(&bar, te->n, tr_eval_loss(te), tr_eval_top1(te));
    }
    /* The statistics a checkpoint keeps cover every step counted in r->st. */
    r->st.part_loss = te->loss_sum;
    r->st.part_correct = te->top1;
    r->st.part_seen = te->n;
    tr_progress_end(&bar);
    cnn_loader_get_stats(r->train_ld, &s1);
    *wait_s = s1.wait_seconds - s0.wait_seconds;
    return !tool_stop;
}

/* Trains the epochs left; returns how many this call trained. */
static int train(tr_run *r)
{
    const train_opts *o = &r->o;
    int64_t k = r->mm.num_classes;
    tr_eval te = {0};
    if (!tr_eval_init(&te, (int)k)) tr_die("out of memory");
    int ran = 0;
    for (; r->st.epoch < o->epochs; ran++) {
        /* Checked before an epoch, so that a run resumed after its early stop stays stopped. */
        if (stopped_early(r)) {
            printf("early stop: no better val top-1 for %d epochs\n", o->early_stop);
            break;
        }
        if (o->stop_after > 0 && ran == o->stop_after) {
            char quoted[TR_QUOTED_MAX + 512];
            printf("stopped after %d epoch(s) (--stop-after); continue with: %s --resume %s\n",
                   ran, tr_invocation(), resume_args(r, quoted, sizeof quoted));
            break;
        }
        double t0 = tr_now_s() - r->st.part_seconds, wait = 0;
        memset(te.confusion, 0, (size_t)(k * k) * sizeof *te.confusion);
        te.top5 = 0;
        bool done = train_epoch(r, &te, &wait);
        double train_secs = r->st.part_seconds = tr_now_s() - t0;
        if (!done || !evaluate(r, &r->last_eval)) interrupted(r);
        /* Every sample of a split failed (its folder went away mid-run): an epoch of nothing
         * would be recorded with a loss of 0 and the run would end "successfully". */
        if (te.n == 0 || r->last_eval.n == 0) {
            const cnn_loader *l = te.n == 0 ? r->train_ld : r->val_ld;
            int nb = cnn_loader_num_bad(l);
            tr_die("epoch %lld: not one %s image could be read%s%s", (long long)r->st.epoch + 1,
                   te.n == 0 ? "training" : "validation", nb ? "; the last failure: " : "",
                   nb ? cnn_loader_bad_reason(l, nb - 1) : "");
        }
        double secs = tr_now_s() - t0;
        const tr_eval *ve = &r->last_eval;
        tr_epoch_row row = {(int)r->st.epoch + 1,
                            tr_eval_loss(&te),
                            tr_eval_top1(&te),
                            tr_eval_loss(ve),
                            tr_eval_top1(ve),
                            tr_eval_top5(ve),
                            cnn_optim_get_lr(r->opt),
                            secs,
                            r->st.part_seconds > 0 ? wait / r->st.part_seconds : 0};
        if (!tr_history_add(&r->st.history, &row)) tr_die("out of memory");
        if (r->plateau)
            TR_LIB(cnn_sched_step_metric(r->plateau, (float)row.val_loss, NULL, NULL),
                   "plateau schedule");
        bool best = row.val_top1 > r->st.best_top1 || r->st.best_epoch == 0;
        if (best) {
            r->st.best_top1 = row.val_top1;
            r->st.best_epoch = row.epoch;
            r->st.bad_epochs = 0;
        } else {
            r->st.bad_epochs++;
        }
        r->st.epoch++;
        r->st.batch = r->st.position = 0;
        r->st.part_loss = r->st.part_seconds = 0;
        r->st.part_correct = r->st.part_seen = 0;
        /* The epoch's files, then last.safetensors, which commits the epoch: a run killed
         * before that resumes from the epoch before and writes them all again. best.safetensors
         * comes after, as a folder holding one without a last.safetensors belongs to nobody's
         * run (a run killed between the two has it written when resumed: repair_best). */
        write_curves(r);
        write_confusion(r);
        save(r, "last.safetensors");
        if (best) save(r, "best.safetensors");
        char tk[32];
        printf("epoch %d/%d  train loss %.4f acc %.2f%%  val loss %.4f top-1 %.2f%%%s"
               "  lr %.3g  %.1f s (%.0f img/s, data wait %.1f%%)%s\n",
               row.epoch, o->epochs, row.train_loss, 100 * row.train_acc, row.val_loss,
               100 * row.val_top1, top_k_text(r, " ", row.val_top5, tk, sizeof tk), row.lr, secs,
               train_secs > 0 ? (double)te.n / train_secs : 0, 100 * row.data_wait,
               best ? "  *best" : "");
        fflush(stdout);
        /* After the last epoch there is nothing to resume: the run ends as it would have. */
        if (tool_stop && r->st.epoch < o->epochs && !stopped_early(r)) interrupted(r);
    }
    tr_eval_free(&te);
    return ran;
}

/* The validation report, the loaders' figures and what this invocation wrote (trained: its
 * epochs; 0 for a finished run resumed, which only evaluates). */
static void print_final(tr_run *r, double wall, int trained)
{
    const tr_eval *ve = &r->last_eval;
    char tk[32];
    printf("\nvalidation: loss %.4f  top-1 %.2f%%%s  (%lld images)\n", tr_eval_loss(ve),
           100 * tr_eval_top1(ve), top_k_text(r, "  ", tr_eval_top5(ve), tk, sizeof tk),
           (long long)ve->n);
    /* The matrix this report is of is in the folder only when this invocation trained: one
     * that only evaluates (--eval-only, a finished run resumed) prints it whatever its size. */
    char csv[TR_PATH_MAX + 64];
    path_in_dir(r, "confusion.csv", csv, sizeof csv);
    tr_eval_print_report(ve, class_name_of, &r->mm, trained > 0 ? csv : NULL, stdout);
    /* The files were written with each epoch's checkpoint; --eval-only, and a finished run
     * resumed, leave the checkpoint's folder as it was. */
    if (trained > 0)
        tr_print_data_stats(r->train_ld, r->o.workers, r->dev.type == CNN_DEVICE_CUDA, stdout);
    if (r->train_ld) tr_print_bad_samples(r->train_ld, "train", stdout);
    tr_print_bad_samples(r->val_ld, "validation", stdout);
    if (r->st.history.n)
        printf("best val top-1 %.2f%% at epoch %lld; wall time %.1f s\n",
               100 * r->st.best_top1, (long long)r->st.best_epoch, wall);
    if (trained > 0)
        printf("wrote %s/{best,last}.safetensors, metrics.csv, curves.png, confusion.csv\n",
               r->dir);
    else if (r->train_ld && !r->best_repaired) {
        /* A folder made for this invocation (a new --checkpoint-dir) goes again, empty. */
        tr_run_remove_new_dir();
        struct stat sb;
        if (stat(r->dir, &sb) == 0) printf("nothing written: %s is left as it was\n", r->dir);
        else printf("nothing written (%s, made for it, removed again)\n", r->dir);
    }
}

static void eval_only(tr_run *r)
{
    tr_run_open_eval(r);
    printf("evaluating %s (%s) on %s validation (%lld images)\n", r->o.eval_only, r->mm.model,
           r->o.data, (long long)cnn_loader_num_samples(r->val_ld));
    if (!evaluate(r, &r->last_eval)) tr_die("interrupted");
    print_final(r, 0, 0);
}

int main(int argc, char **argv)
{
    omp_wait_passive(argv);
    setvbuf(stdout, NULL, _IOLBF, 0);
    static tr_run r;
    char err[1024];
    if (!tr_opts_parse(&r.o, argc, argv, err, sizeof err)) tr_die("%s", err);
    if (r.o.help) {
        tr_opts_usage(stdout);
        return 0;
    }
    if (!tr_opts_validate(&r.o, err, sizeof err)) tr_die("%s", err);
    tr_set_invocation(argv[0]);
    /* Training: Ctrl-C or SIGTERM (a batch system's stop, `timeout`) sets tool_stop, and the
     * loop saves a checkpoint at the next step boundary (during the set-up, before the first
     * step). --predict and --eval-only write nothing, and simply end. */
    bool training = !r.o.predict[0] && !r.o.eval_only[0];
    if (training) tool_catch_stop_signals();
    tr_run_setup_device(&r);
    if (r.o.predict[0]) {
        if (!tr_predict(&r.o, r.dev, err, sizeof err)) tr_die("%s", err);
        tr_run_free(&r);
        return 0;
    }
    if (r.o.eval_only[0]) {
        eval_only(&r);
        tr_run_free(&r);
        return 0;
    }
    double t_start = tr_now_s();
    tr_run_open_train(&r);
    if (tool_stop) {
        tr_run_remove_new_dir();
        printf("interrupted before the first step: nothing trained, nothing saved\n");
        tr_run_free(&r);
        return 0;
    }

    char where[24] = "cpu";
    if (r.dev.type == CNN_DEVICE_CUDA)
        snprintf(where, sizeof where, "cuda:%d%s", r.dev.index, cnn_is_tf32() ? " (TF32)" : "");
    printf(TR_TOOL " %s: %s (%lld parameters) on %s, %s\n", cnn_version(), r.mm.model,
           (long long)cnn_model_num_parameters(r.model), where,
           r.o.resume[0] ? "resumed" : "new run");
    printf("data %s: %lld train / %lld val images, %d classes, %dx%dx%d input\n", r.o.data,
           (long long)cnn_loader_num_samples(r.train_ld),
           (long long)cnn_loader_num_samples(r.val_ld), r.mm.num_classes, r.mm.in_channels,
           r.mm.img_size, r.mm.img_size);
    tr_opts_print(&r.o, stdout);
    printf("checkpoints: %s\n", r.dir);
    if (r.o.resume[0] && r.st.epoch >= r.o.epochs)
        printf("the checkpoint's run is complete (%lld of %d epochs): evaluating it\n",
               (long long)r.st.epoch, r.o.epochs);
    else if (r.o.resume[0] && stopped_early(&r))
        printf("the checkpoint's run stopped early after epoch %lld (--early-stop %d): "
               "evaluating it\n", (long long)r.st.epoch, r.o.early_stop);
    else if (r.o.resume[0] && r.st.batch > 0 && r.st.position >= 0)
        printf("resuming at epoch %lld, batch %lld (step %lld), from sample %lld of the epoch's "
               "order\n", (long long)r.st.epoch + 1, (long long)r.st.batch, (long long)r.st.step,
               (long long)r.st.position);
    else if (r.o.resume[0])
        printf("resuming at epoch %lld, batch %lld (step %lld)\n", (long long)r.st.epoch + 1,
               (long long)r.st.batch, (long long)r.st.step);

    if (r.o.resume[0]) repair_best(&r);
    r.first_step = r.st.step;
    int trained = train(&r);
    if (r.last_eval.n == 0) {
        /* resumed after the last epoch: report on the saved model */
        if (!evaluate(&r, &r.last_eval))
            tr_die("interrupted while evaluating the finished run: nothing written");
    }
    print_final(&r, tr_now_s() - t_start, trained);
    tr_run_free(&r);
    return 0;
}
