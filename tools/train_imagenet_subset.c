/* train_imagenet_subset.c — trains a zoo model on Fashion-MNIST or an ImageNet-style folder:
 * option handling, the epoch loop with validation, checkpoints, Ctrl-C and resume, and the
 * --eval-only / --predict modes. The pieces live in tools/common/ (options, progress display,
 * metrics and plots, checkpoint files, prediction). A fatal error prints one line on stderr. */
#include "cnncuda.h"
#include "common/checkpoint.h"
#include "common/predict.h"
#include "common/progress.h"
#include "common/stop_signal.h"
#include "common/train_opts.h"
#include "common/train_report.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TOOL "train_imagenet_subset"

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

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, TOOL ": ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

/* A failed library call: its message names the op and the values. */
#define LIB(call, what)                                                                            \
    do {                                                                                           \
        if ((call) != CNN_OK) die("%s: %s", what, cnn_last_error());                               \
    } while (0)

/* Everything a run holds; freed by run_free. */
typedef struct run {
    train_opts o;
    cnn_device dev;
    cnn_context *ctx;
    cnn_dataset *train_ds, *val_ds;
    cnn_loader *train_ld, *val_ld;
    cnn_model *model;
    cnn_optim *opt;
    cnn_plateau *plateau;
    tr_model_meta mm;
    tr_state st;
    tr_eval last_eval;
    char dir[TR_PATH_MAX];
    int64_t steps_per_epoch;
    float *host_logits; /* batch x num_classes, for metrics */
} run;

static const char *class_name_of(const void *ctx, int i)
{
    const tr_model_meta *mm = ctx;
    return i >= 0 && i < mm->num_classes ? mm->class_names[i] : "?";
}

static void setup_device(run *r)
{
    const train_opts *o = &r->o;
    int gpus = cnn_cuda_device_count();
    bool cuda = !strcmp(o->device, "cuda") || (!strcmp(o->device, "auto") && gpus > 0);
    if (cuda && gpus == 0)
        die("--device cuda: no usable CUDA device (%s)",
            cnn_built_with_cuda() ? "none found" : "this build has no CUDA");
    r->dev = cuda ? CNN_CUDA(0) : CNN_CPU;
    LIB(cnn_context_create(r->dev, &r->ctx), "creating the device context");
    cnn_context_set_current(r->ctx);
    if (cuda) cnn_set_backend(!strcmp(o->backend, "cuda") ? CNN_BACKEND_CUDA : CNN_BACKEND_CUDNN);
    cnn_set_tf32(o->tf32 != 0);
}

/* The split of --data: Fashion-MNIST's train / test set, or DIR/train and DIR/val. */
static cnn_dataset *open_split(const train_opts *o, bool train, int channels)
{
    cnn_dataset *ds = NULL;
    cnn_status s = !strcmp(o->data, "fashion-mnist")
                       ? cnn_fashion_mnist_create(NULL, train, channels, &ds)
                       : cnn_imagefolder_create(o->data, train ? "train" : "val", channels, &ds);
    if (s != CNN_OK) die("--data %s: %s", o->data, cnn_last_error());
    for (int i = 0; i < cnn_dataset_num_warnings(ds); i++)
        printf("warning: %s\n", cnn_dataset_warning(ds, i));
    return ds;
}

static int default_channels(const train_opts *o)
{
    return strcmp(o->data, "fashion-mnist") ? 3 : 1;
}

/* The model of r->mm, initialised from the seed (so reproducible). */
static void build_model(run *r)
{
    const train_opts *o = &r->o;
    cnn_manual_seed((uint64_t)o->seed);
    if (cnn_model_create(r->mm.model, r->mm.num_classes, r->mm.in_channels, &r->model) != CNN_OK)
        die("--model %s: %s", r->mm.model, cnn_last_error());
}

/* --pretrained: the new run's model starts from those weights, on the CPU still. */
static void load_pretrained(run *r)
{
    cnn_pretrained_report pr;
    LIB(cnn_model_load_pretrained(r->model, r->o.pretrained, &pr), "--pretrained");
    printf("pretrained: %d tensors from %s", pr.n_loaded, r->o.pretrained);
    if (pr.n_fresh)
        printf("; %s left as initialised (%d classes in the file, %d here)", pr.fresh,
               pr.file_classes, r->mm.num_classes);
    if (pr.adapted[0]) printf("; %s summed over the file's 3 input channels", pr.adapted);
    printf("\n");
}

/* The model of a new run and its description, from the datasets and the model's defaults. */
static void describe_model(run *r)
{
    const train_opts *o = &r->o;
    tr_model_meta *mm = &r->mm;
    int k = cnn_dataset_num_classes(r->train_ds);
    if (k < 1) die("--data %s: no class", o->data);
    if (cnn_dataset_num_classes(r->val_ds) != k)
        die("--data %s: train has %d classes, validation %d", o->data, k,
            cnn_dataset_num_classes(r->val_ds));
    for (int i = 0; i < k; i++) {
        if (strcmp(cnn_dataset_class_name(r->train_ds, i), cnn_dataset_class_name(r->val_ds, i)))
            die("--data %s: class %d is '%s' in train but '%s' in validation", o->data, i,
                cnn_dataset_class_name(r->train_ds, i), cnn_dataset_class_name(r->val_ds, i));
        /* Checkpoints keep the names one per line. */
        if (strchr(cnn_dataset_class_name(r->train_ds, i), '\n'))
            die("--data %s: class folder %d has a line break in its name; rename it", o->data, i);
    }
    snprintf(mm->model, sizeof mm->model, "%s", o->model);
    mm->num_classes = k;
    mm->in_channels = cnn_dataset_channels(r->train_ds);
    mm->class_names = calloc((size_t)k, sizeof *mm->class_names);
    if (!mm->class_names) die("out of memory");
    for (int i = 0; i < k; i++)
        if (!(mm->class_names[i] = strdup(cnn_dataset_class_name(r->train_ds, i))))
            die("out of memory");
    cnn_transform t = cnn_transform_default(r->train_ds, false, o->img_size);
    mm->geometry = (int)t.geometry;
    memcpy(mm->mean, t.mean, sizeof mm->mean);
    memcpy(mm->std, t.std, sizeof mm->std);
    build_model(r);
    if (o->pretrained[0]) load_pretrained(r);
    int h, w;
    if (o->img_size > 0)
        mm->img_size = o->img_size;
    else if (cnn_dataset_native_size(r->train_ds, &h, &w) && h == w)
        mm->img_size = h;
    else
        mm->img_size = cnn_model_get_info(r->model).input_h;
}

static void build_optimizer(run *r)
{
    const train_opts *o = &r->o;
    cnn_optim_kind kind = !strcmp(o->optimizer, "sgd")    ? CNN_OPTIM_SGD
                          : !strcmp(o->optimizer, "adam") ? CNN_OPTIM_ADAM
                                                          : CNN_OPTIM_ADAMW;
    cnn_optim_config c = cnn_optim_defaults(kind);
    c.lr = o->lr;
    c.weight_decay = o->weight_decay;
    if (kind == CNN_OPTIM_SGD) c.momentum = o->momentum;
    LIB(cnn_optim_create(&c, &r->opt), "creating the optimizer");
    cnn_dict *p = cnn_model_parameters(r->model);
    for (int i = 0; i < cnn_dict_size(p); i++)
        LIB(cnn_optim_add_param(r->opt, cnn_dict_name(p, i), cnn_dict_at(p, i),
                                !cnn_model_param_no_decay(r->model, i)),
            "adding a parameter to the optimizer");
    if (!strcmp(o->schedule, "plateau")) {
        cnn_plateau_config pc = cnn_sched_plateau_defaults();
        pc.patience = 2;
        LIB(cnn_sched_plateau_create(&pc, o->lr, &r->plateau), "creating the plateau schedule");
    }
}

static cnn_loader *make_loader(const run *r, const cnn_dataset *ds, bool train)
{
    const train_opts *o = &r->o;
    cnn_loader_options lo = cnn_loader_default_options(ds, train, r->mm.img_size, o->batch);
    lo.transform.geometry = (cnn_geometry)r->mm.geometry;
    memcpy(lo.transform.mean, r->mm.mean, sizeof r->mm.mean);
    memcpy(lo.transform.std, r->mm.std, sizeof r->mm.std);
    if (train && o->hflip >= 0) lo.transform.hflip_p = o->hflip;
    if (train) lo.transform.affine_translate = o->translate;
    if (train) lo.transform.erase_p = o->random_erase;
    lo.num_workers = o->workers;
    lo.seed = (uint64_t)o->seed;
    lo.limit = train ? o->limit_train : o->limit_val;
    lo.strict = o->strict != 0;
    /* On a GPU the loader copies each batch ahead on its own stream from pinned memory. */
    lo.device = r->dev;
    cnn_loader *l = NULL;
    if (cnn_loader_create(ds, &lo, &l) != CNN_OK)
        die("%s loader: %s", train ? "training" : "validation", cnn_last_error());
    return l;
}

/* The schedule's step for the batch just taken from the training loader: epoch * steps per
 * epoch + the batch's index in an epoch with no bad sample, told by how far into the epoch's
 * order the loader now is. Bad samples skipped make an epoch fewer batches; counting those would
 * put the schedule behind, so that the step decay came late and the cosine never reached its
 * end. Without bad samples this is the count of steps taken. */
static int64_t sched_step(const run *r)
{
    const int64_t spe = r->steps_per_epoch, pos = cnn_loader_position(r->train_ld);
    int64_t b = (pos + r->o.batch - 1) / r->o.batch - 1;
    if (b > spe - 1) b = spe - 1; /* drop_last: the batch may end in the dropped tail */
    if (b < 0) b = 0;
    return r->st.epoch * spe + b;
}

/* The learning rate of optimizer step `step` (0-based): warm-up per step, then the schedule. */
static float lr_at(const run *r, int64_t step)
{
    const train_opts *o = &r->o;
    int64_t spe = r->steps_per_epoch, warm = (int64_t)o->warmup_epochs * spe;
    float lr = o->lr;
    if (!strcmp(o->schedule, "cosine")) {
        LIB(cnn_sched_cosine_lr(o->lr, warm, (int64_t)o->epochs * spe, 0.0f, step, &lr),
            "lr schedule");
        return lr;
    }
    if (step < warm) return o->lr * (float)(step + 1) / (float)warm;
    if (r->plateau) return cnn_sched_plateau_get_lr(r->plateau);
    int size = o->epochs / 3 > 0 ? o->epochs / 3 : 1;
    LIB(cnn_sched_step_lr(o->lr, size, 0.1f, step / spe, &lr), "lr schedule");
    return lr;
}

/* A batch's logits, labels and loss on their way to the host. On the GPU their copies start
 * once the step is queued and are waited for after the next step is queued, so the device
 * never idles while the host reads; on the CPU they are the tensors themselves. */
typedef struct step_out {
    cnn_tensor *t[3]; /* logits, labels, loss; t[0] NULL: none */
    int64_t step;
} step_out;

/* Takes the batch's tensors (the caller's handles become NULL). */
static void out_start(run *r, cnn_tensor **logits, cnn_tensor **labels, cnn_tensor **loss,
                      step_out *o)
{
    cnn_tensor **src[3] = {logits, labels, loss};
    o->step = r->st.step;
    for (int i = 0; i < 3; i++) {
        if (r->dev.type == CNN_DEVICE_CPU) {
            o->t[i] = *src[i];
        } else {
            o->t[i] = NULL;
            LIB(cnn_tensor_empty_pinned(cnn_tensor_shape(*src[i]), cnn_tensor_dtype(*src[i]),
                                        &o->t[i]),
                "reading results back");
            LIB(cnn_tensor_copy_start_(o->t[i], *src[i]), "reading results back");
            cnn_tensor_free(src[i]);
        }
        *src[i] = NULL;
    }
}

static void out_drop(step_out *o)
{
    for (int i = 0; i < 3; i++) cnn_tensor_free(&o->t[i]);
}

/* Waits for a batch's results and adds them to e's statistics. */
static void out_finish(run *r, step_out *o, tr_eval *e)
{
    int64_t b = cnn_tensor_dim(o->t[1], 0), k = r->mm.num_classes;
    int64_t lab[b];
    float lv;
    if (!r->host_logits && !(r->host_logits = malloc((size_t)(r->o.batch * k) * sizeof(float))))
        die("out of memory");
    for (int i = 0; i < 3; i++) LIB(cnn_tensor_wait(o->t[i]), "reading results back");
    LIB(cnn_tensor_read(o->t[0], r->host_logits, (size_t)(b * k)), "reading logits");
    LIB(cnn_tensor_read(o->t[1], lab, (size_t)b), "reading labels");
    LIB(cnn_tensor_read(o->t[2], &lv, 1), "reading the loss");
    if (!isfinite(lv)) die("the loss is %g at step %lld: lower --lr", lv, (long long)o->step);
    tr_eval_add(e, r->host_logits, lab, b, lv);
    out_drop(o);
}

/* One batch through the model and the loss (the loaders deliver batches on r->dev already). */
static void forward_batch(run *r, cnn_tensor *images, cnn_tensor *labels, bool train,
                          cnn_tensor **logits, cnn_tensor **loss)
{
    LIB(cnn_model_forward(r->model, images, train, logits), "forward");
    LIB(cnn_cross_entropy(*logits, labels, train ? r->o.label_smoothing : 0.0f, loss), "loss");
}

/* Validation pass into e (fresh). False when Ctrl-C interrupted it. */
static bool evaluate(run *r, tr_eval *e)
{
    tr_eval_free(e);
    if (!tr_eval_init(e, r->mm.num_classes)) die("out of memory");
    bool was = cnn_set_grad_enabled(false);
    LIB(cnn_loader_start_epoch(r->val_ld, 0), "validation loader");
    /* A batch's results are read once the next batch's forward is queued, so that the device
     * stays busy while the host reads. */
    step_out prev = {0};
    for (;;) {
        if (tool_stop) break;
        cnn_tensor *images = NULL, *labels = NULL, *logits = NULL, *loss = NULL;
        LIB(cnn_loader_next(r->val_ld, &images, &labels), "validation data");
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

static void path_in_dir(const run *r, const char *name, char *buf, size_t n)
{
    snprintf(buf, n, "%s/%s", r->dir, name);
}

static void save(run *r, const char *name)
{
    char path[TR_PATH_MAX + 64], err[2048];
    path_in_dir(r, name, path, sizeof path);
    cnn_rng_get_state(&r->st.rng_seed, &r->st.rng_offset);
    if (!tr_checkpoint_save(path, r->model, r->opt, r->plateau, &r->o, &r->mm, &r->st, err,
                            sizeof err))
        die("%s", err);
}

static void write_curves(run *r)
{
    char path[TR_PATH_MAX + 64], err[512];
    path_in_dir(r, "metrics.csv", path, sizeof path);
    if (!tr_history_write_csv(&r->st.history, path))
        die("cannot write %s: %s", path, strerror(errno));
    path_in_dir(r, "curves.png", path, sizeof path);
    if (!tr_plot_curves(&r->st.history, path, err, sizeof err)) die("%s", err);
}

static void interrupted(run *r)
{
    save(r, "last.safetensors");
    printf("\ninterrupted: saved %s/last.safetensors (epoch %lld, after batch %lld of %lld)\n"
           "resume with: " TOOL " --resume %s/last.safetensors\n",
           r->dir, (long long)r->st.epoch + 1, (long long)r->st.batch,
           (long long)r->steps_per_epoch, r->dir);
    exit(0);
}

/* One training epoch: returns false when Ctrl-C stopped it (state saved by the caller). */
static bool train_epoch(run *r, tr_eval *te, double *wait_s)
{
    int64_t e = r->st.epoch;
    /* A checkpoint taken inside this epoch: continue after the batches it already trained on
     * (the loader's order depends only on (seed, epoch), so the rest is the same), without
     * decoding them again; an older checkpoint without the position skips them by decoding. */
    const bool at_position = r->st.batch > 0 && r->st.position >= 0;
    LIB(cnn_loader_start_epoch_at(r->train_ld, e, at_position ? r->st.position : 0),
        "training loader");
    for (int64_t b = 0; b < (at_position ? 0 : r->st.batch); b++) {
        cnn_tensor *images = NULL, *labels = NULL;
        LIB(cnn_loader_next(r->train_ld, &images, &labels), "training data");
        cnn_tensor_free(&images);
        cnn_tensor_free(&labels);
    }
    te->loss_sum = r->st.part_loss;
    te->top1 = r->st.part_correct;
    te->n = r->st.part_seen;
    char label[32];
    snprintf(label, sizeof label, "epoch %lld/%d", (long long)e + 1, r->o.epochs);
    tr_progress bar;
    tr_progress_start(&bar, label, cnn_loader_num_samples(r->train_ld), te->n);
    cnn_loader_stats s0, s1;
    cnn_loader_get_stats(r->train_ld, &s0);
    step_out prev = {0};
    for (;;) {
        if (tool_stop) break;
        cnn_tensor *images = NULL, *labels = NULL;
        LIB(cnn_loader_next(r->train_ld, &images, &labels), "training data");
        if (!images) break;
        LIB(cnn_optim_set_lr(r->opt, lr_at(r, sched_step(r))), "setting the learning rate");
        cnn_tensor *logits = NULL, *loss = NULL;
        forward_batch(r, images, labels, true, &logits, &loss);
        LIB(cnn_backward(loss), "backward");
        LIB(cnn_optim_step(r->opt), "optimizer step");
        cnn_optim_zero_grad(r->opt);
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

static void train(run *r)
{
    const train_opts *o = &r->o;
    int64_t k = r->mm.num_classes;
    tr_eval te = {0};
    if (!tr_eval_init(&te, (int)k)) die("out of memory");
    for (int ran = 0; r->st.epoch < o->epochs; ran++) {
        if (o->stop_after > 0 && ran == o->stop_after) {
            printf("stopped after %d epoch(s) (--stop-after); continue with: " TOOL
                   " --resume %s/last.safetensors\n",
                   ran, r->dir);
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
            die("epoch %lld: not one %s image could be read%s%s", (long long)r->st.epoch + 1,
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
        if (!tr_history_add(&r->st.history, &row)) die("out of memory");
        if (r->plateau)
            LIB(cnn_sched_step_metric(r->plateau, (float)row.val_loss, NULL, NULL),
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
        save(r, "last.safetensors");
        if (best) save(r, "best.safetensors");
        write_curves(r);
        printf("epoch %d/%d  train loss %.4f acc %.2f%%  val loss %.4f top-1 %.2f%% top-5 %.2f%%"
               "  lr %.3g  %.1f s (%.0f img/s, data wait %.1f%%)%s\n",
               row.epoch, o->epochs, row.train_loss, 100 * row.train_acc, row.val_loss,
               100 * row.val_top1, 100 * row.val_top5, row.lr, secs,
               train_secs > 0 ? (double)te.n / train_secs : 0, 100 * row.data_wait,
               best ? "  *best" : "");
        fflush(stdout);
        if (tool_stop) interrupted(r);
        if (o->early_stop > 0 && r->st.bad_epochs >= o->early_stop) {
            printf("early stop: no better val top-1 for %d epochs\n", o->early_stop);
            break;
        }
    }
    tr_eval_free(&te);
}

/* Decode throughput of the training loader's workers over the whole run. */
static void print_final(run *r, double wall)
{
    char path[TR_PATH_MAX + 64];
    const tr_eval *ve = &r->last_eval;
    printf("\nvalidation: loss %.4f  top-1 %.2f%%  top-5 %.2f%%  (%lld images)\n", tr_eval_loss(ve),
           100 * tr_eval_top1(ve), 100 * tr_eval_top5(ve), (long long)ve->n);
    tr_eval_print_report(ve, class_name_of, &r->mm, stdout);
    if (r->train_ld) { /* --eval-only leaves the checkpoint's folder alone */
        tr_print_data_stats(r->train_ld, r->dev.type == CNN_DEVICE_CUDA, stdout);
        path_in_dir(r, "confusion.csv", path, sizeof path);
        if (!tr_eval_write_confusion_csv(ve, class_name_of, &r->mm, path))
            die("cannot write %s: %s", path, strerror(errno));
        tr_print_bad_samples(r->train_ld, "train", stdout);
    }
    tr_print_bad_samples(r->val_ld, "validation", stdout);
    if (r->st.history.n)
        printf("best val top-1 %.2f%% at epoch %lld; wall time %.1f s\n"
               "wrote %s/{best,last}.safetensors, metrics.csv, curves.png, confusion.csv\n",
               100 * r->st.best_top1, (long long)r->st.best_epoch, wall, r->dir);
}

static void run_free(run *r)
{
    cnn_loader_destroy(&r->train_ld);
    cnn_loader_destroy(&r->val_ld);
    cnn_dataset_destroy(&r->train_ds);
    cnn_dataset_destroy(&r->val_ds);
    cnn_sched_plateau_destroy(&r->plateau);
    cnn_optim_destroy(&r->opt);
    cnn_model_destroy(&r->model);
    tr_model_meta_free(&r->mm);
    tr_history_free(&r->st.history);
    tr_eval_free(&r->last_eval);
    free(r->host_logits);
    cnn_context_set_current(NULL);
    cnn_context_destroy(&r->ctx);
}

/* --resume / --eval-only: the checkpoint's options (unless given again), model and state. */
static void load_checkpoint(run *r, const char *path, bool with_state)
{
    char err[2048];
    cnn_dict *d = NULL;
    if (!tr_checkpoint_open(path, &d, &r->mm, err, sizeof err)) die("%s", err);
    if (!tr_opts_from_meta(&r->o, d, err, sizeof err) || !tr_opts_validate(&r->o, err, sizeof err))
        die("%s: %s", path, err);
    snprintf(r->o.model, sizeof r->o.model, "%s", r->mm.model);
    r->o.img_size = r->mm.img_size;
    build_model(r);
    if (!tr_checkpoint_load_model(r->model, d, err, sizeof err)) die("%s: %s", path, err);
    if (with_state) {
        if (!tr_checkpoint_state(d, &r->st, err, sizeof err)) die("%s: %s", path, err);
        LIB(cnn_model_to(r->model, r->dev), "moving the model to the device");
        build_optimizer(r);
        if (cnn_optim_load_state_dict(r->opt, d) != CNN_OK)
            die("%s: optimizer state: %s", path, cnn_last_error());
        if (r->plateau && cnn_sched_plateau_load_state_dict(r->plateau, d) != CNN_OK)
            die("%s: scheduler state: %s", path, cnn_last_error());
        cnn_rng_set_state(r->st.rng_seed, r->st.rng_offset);
    }
    cnn_dict_destroy(&d);
}

/* The checkpoint's classes must be the data's, by name and in order: the labels are indices. */
static void check_classes(const run *r, const cnn_dataset *ds, const char *ckpt)
{
    if (cnn_dataset_num_classes(ds) != r->mm.num_classes)
        die("--data %s has %d classes, the checkpoint's model %d", r->o.data,
            cnn_dataset_num_classes(ds), r->mm.num_classes);
    for (int i = 0; i < r->mm.num_classes; i++)
        if (strcmp(cnn_dataset_class_name(ds, i), r->mm.class_names[i]))
            die("--data %s: class %d is '%s', but in %s it is '%s'", r->o.data, i,
                cnn_dataset_class_name(ds, i), ckpt, r->mm.class_names[i]);
}

static void eval_only(run *r)
{
    load_checkpoint(r, r->o.eval_only, false);
    LIB(cnn_model_to(r->model, r->dev), "moving the model to the device");
    r->val_ds = open_split(&r->o, false, r->mm.in_channels);
    check_classes(r, r->val_ds, r->o.eval_only);
    r->val_ld = make_loader(r, r->val_ds, false);
    printf("evaluating %s (%s) on %s validation (%lld images)\n", r->o.eval_only, r->mm.model,
           r->o.data, (long long)cnn_loader_num_samples(r->val_ld));
    if (!evaluate(r, &r->last_eval)) die("interrupted");
    print_final(r, 0);
}

int main(int argc, char **argv)
{
    omp_wait_passive(argv);
    setvbuf(stdout, NULL, _IOLBF, 0);
    static run r;
    char err[1024];
    if (!tr_opts_parse(&r.o, argc, argv, err, sizeof err)) die("%s", err);
    if (r.o.help) {
        tr_opts_usage(stdout);
        return 0;
    }
    if (!tr_opts_validate(&r.o, err, sizeof err)) die("%s", err);
    setup_device(&r);
    if (r.o.predict[0]) {
        if (!tr_predict(&r.o, r.dev, err, sizeof err)) die("%s", err);
        run_free(&r);
        return 0;
    }
    if (r.o.eval_only[0]) {
        eval_only(&r);
        run_free(&r);
        return 0;
    }
    double t_start = tr_now_s();
    if (r.o.resume[0]) {
        load_checkpoint(&r, r.o.resume, true);
        r.train_ds = open_split(&r.o, true, r.mm.in_channels);
        r.val_ds = open_split(&r.o, false, r.mm.in_channels);
        check_classes(&r, r.train_ds, r.o.resume);
        check_classes(&r, r.val_ds, r.o.resume);
        if (!r.o.checkpoint_dir[0]) {
            snprintf(r.o.checkpoint_dir, sizeof r.o.checkpoint_dir, "%s", r.o.resume);
            char *slash = strrchr(r.o.checkpoint_dir, '/');
            if (slash)
                *slash = 0;
            else
                snprintf(r.o.checkpoint_dir, sizeof r.o.checkpoint_dir, ".");
        }
    } else {
        r.train_ds = open_split(&r.o, true, default_channels(&r.o));
        r.val_ds = open_split(&r.o, false, default_channels(&r.o));
        describe_model(&r);
        LIB(cnn_model_to(r.model, r.dev), "moving the model to the device");
        build_optimizer(&r);
    }
    cnn_model_info info = cnn_model_get_info(r.model);
    if (r.mm.img_size < info.min_h)
        die("--model %s needs inputs of at least %dx%d, --img-size is %d (try --img-size %d%s)",
            r.mm.model, info.min_h, info.min_w, r.mm.img_size, info.min_h,
            strstr(r.mm.model, "resnet") ? " or a *_small ResNet" : "");
    if (!r.o.checkpoint_dir[0]) {
        char stamp[32];
        time_t t = time(NULL);
        strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", localtime(&t));
        snprintf(r.o.checkpoint_dir, sizeof r.o.checkpoint_dir, "runs/%s-%s", r.mm.model, stamp);
    }
    snprintf(r.dir, sizeof r.dir, "%s", r.o.checkpoint_dir);
    if (!tr_make_dirs(r.dir, err, sizeof err)) die("%s", err);
    r.train_ld = make_loader(&r, r.train_ds, true);
    r.val_ld = make_loader(&r, r.val_ds, false);
    r.steps_per_epoch = cnn_loader_num_batches(r.train_ld);
    if (r.steps_per_epoch < 1) die("--data %s: no training sample", r.o.data);

    printf(TOOL " %s: %s (%lld parameters) on %s, %s\n", cnn_version(), r.mm.model,
           (long long)cnn_model_num_parameters(r.model),
           r.dev.type == CNN_DEVICE_CPU ? "cpu" : "cuda:0", r.o.resume[0] ? "resumed" : "new run");
    printf("data %s: %lld train / %lld val images, %d classes, %dx%dx%d input\n", r.o.data,
           (long long)cnn_loader_num_samples(r.train_ld),
           (long long)cnn_loader_num_samples(r.val_ld), r.mm.num_classes, r.mm.in_channels,
           r.mm.img_size, r.mm.img_size);
    tr_opts_print(&r.o, stdout);
    printf("checkpoints: %s\n", r.dir);
    if (r.o.resume[0] && r.st.batch > 0 && r.st.position >= 0)
        printf("resuming at epoch %lld, batch %lld (step %lld), from sample %lld of the epoch's "
               "order\n", (long long)r.st.epoch + 1, (long long)r.st.batch, (long long)r.st.step,
               (long long)r.st.position);
    else if (r.o.resume[0])
        printf("resuming at epoch %lld, batch %lld (step %lld)\n", (long long)r.st.epoch + 1,
               (long long)r.st.batch, (long long)r.st.step);

    /* Ctrl-C sets tool_stop: the loop saves a checkpoint at the next step boundary. */
    tool_catch_stop_signals(0);

    train(&r);
    if (r.last_eval.n == 0) {
        /* resumed after the last epoch: report on the saved model */
        if (!evaluate(&r, &r.last_eval)) die("interrupted");
    }
    print_final(&r, tr_now_s() - t_start);
    run_free(&r);
    return 0;
}
