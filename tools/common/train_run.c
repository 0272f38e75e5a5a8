/* train_run.c — building a run of train_imagenet_subset (see train_run.h): the device, the
 * datasets, the model and its description, the optimizer and the loaders, for a new run, a
 * resume or --eval-only. No training here; any failure ends the process through tr_die. */
#include "train_run.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* The folder this run made for its outputs: a run that fails before writing anything there
 * removes it (rmdir removes only an empty folder), rather than leave an empty
 * runs/<model>-<time> behind for every failed start. */
static char g_new_dir[TR_PATH_MAX];

static char g_invocation[TR_QUOTED_MAX] = TR_TOOL;

void tr_set_invocation(const char *argv0)
{
    char quoted[TR_QUOTED_MAX];
    if (argv0 && argv0[0] && strlen(argv0) <= TR_PATH_MAX)
        snprintf(g_invocation, sizeof g_invocation, "%s",
                 tr_shell_quote(argv0, quoted, sizeof quoted));
}

const char *tr_invocation(void) { return g_invocation; }

void tr_run_remove_new_dir(void)
{
    if (g_new_dir[0]) rmdir(g_new_dir);
}

void tr_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, TR_TOOL ": ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    tr_run_remove_new_dir();
    exit(1);
}

void tr_run_setup_device(tr_run *r)
{
    const train_opts *o = &r->o;
    int gpus = cnn_cuda_device_count(), index = tr_device_index(o->device);
    bool cuda = index >= 0 || (!strcmp(o->device, "auto") && gpus > 0);
    if (cuda && gpus == 0)
        tr_die("--device %s: no usable CUDA device (%s)", o->device,
               cnn_built_with_cuda() ? "none found" : "this build has no CUDA");
    if (index >= gpus)
        tr_die("--device %s: there %s only %d CUDA device%s (cuda:0%s)", o->device,
               gpus == 1 ? "is" : "are", gpus, gpus == 1 ? "" : "s", gpus == 1 ? "" : " and up");
    r->dev = cuda ? CNN_CUDA(index < 0 ? 0 : index) : CNN_CPU;
    TR_LIB(cnn_context_create(r->dev, &r->ctx), "creating the device context");
    cnn_context_set_current(r->ctx);
    if (cuda) cnn_set_backend(!strcmp(o->backend, "cuda") ? CNN_BACKEND_CUDA : CNN_BACKEND_CUDNN);
    cnn_set_tf32(o->tf32 != 0);
    /* GPU options given for a run that is on the CPU (--device cpu, or auto without a GPU). */
    const bool tf32 = tr_opts_given(o, "tf32"), backend = tr_opts_given(o, "backend");
    const bool graph = tr_opts_given(o, "cuda-graph");
    if (!cuda && (tf32 || backend || graph))
        printf("note:%s%s%s for a GPU run only; this run is on the CPU, where %s nothing\n",
               tf32 ? " --tf32" : "", backend ? " --backend" : "", graph ? " --cuda-graph" : "",
               tf32 + backend + graph > 1 ? "they do" : "it does");
}

/* The split of --data: Fashion-MNIST's train / test set, or DIR/train and DIR/val. */
static cnn_dataset *open_split(const train_opts *o, bool train, int channels)
{
    cnn_dataset *ds = NULL;
    cnn_status s = !strcmp(o->data, "fashion-mnist")
                       ? cnn_fashion_mnist_create(NULL, train, channels, &ds)
                       : cnn_imagefolder_create(o->data, train ? "train" : "val", channels, &ds);
    if (s != CNN_OK) tr_die("--data %s: %s", o->data, cnn_last_error());
    for (int i = 0; i < cnn_dataset_num_warnings(ds); i++)
        printf("warning: %s\n", cnn_dataset_warning(ds, i));
    return ds;
}

static int default_channels(const train_opts *o)
{
    return strcmp(o->data, "fashion-mnist") ? 3 : 1;
}

/* The model of r->mm, initialised from the seed (so reproducible). */
static void build_model(tr_run *r)
{
    const train_opts *o = &r->o;
    cnn_manual_seed((uint64_t)o->seed);
    if (cnn_model_create(r->mm.model, r->mm.num_classes, r->mm.in_channels, &r->model) != CNN_OK)
        tr_die("--model %s: %s", r->mm.model, cnn_last_error());
}

/* --pretrained: the new run's model starts from those weights, on the CPU still. */
static void load_pretrained(tr_run *r)
{
    cnn_pretrained_report pr;
    TR_LIB(cnn_model_load_pretrained(r->model, r->o.pretrained, &pr), "--pretrained");
    printf("pretrained: %d tensors from %s", pr.n_loaded, r->o.pretrained);
    if (pr.n_fresh)
        printf("; %s left as initialised (%d classes in the file, %d here)", pr.fresh,
               pr.file_classes, r->mm.num_classes);
    if (pr.adapted[0]) printf("; %s summed over the file's 3 input channels", pr.adapted);
    printf("\n");
}

/* The model of a new run and its description, from the datasets and the model's defaults. */
static void describe_model(tr_run *r)
{
    const train_opts *o = &r->o;
    tr_model_meta *mm = &r->mm;
    int k = cnn_dataset_num_classes(r->train_ds);
    if (k < 1) tr_die("--data %s: no class", o->data);
    if (cnn_dataset_num_classes(r->val_ds) != k)
        tr_die("--data %s: train has %d classes, validation %d", o->data, k,
               cnn_dataset_num_classes(r->val_ds));
    for (int i = 0; i < k; i++) {
        if (strcmp(cnn_dataset_class_name(r->train_ds, i), cnn_dataset_class_name(r->val_ds, i)))
            tr_die("--data %s: class %d is '%s' in train but '%s' in validation", o->data, i,
                   cnn_dataset_class_name(r->train_ds, i), cnn_dataset_class_name(r->val_ds, i));
        /* Checkpoints keep the names one per line. */
        if (strchr(cnn_dataset_class_name(r->train_ds, i), '\n'))
            tr_die("--data %s: class folder %d has a line break in its name; rename it",
                   o->data, i);
    }
    snprintf(mm->model, sizeof mm->model, "%s", o->model);
    mm->num_classes = k;
    mm->in_channels = cnn_dataset_channels(r->train_ds);
    mm->class_names = calloc((size_t)k, sizeof *mm->class_names);
    if (!mm->class_names) tr_die("out of memory");
    for (int i = 0; i < k; i++)
        if (!(mm->class_names[i] = strdup(cnn_dataset_class_name(r->train_ds, i))))
            tr_die("out of memory");
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

static void build_optimizer(tr_run *r)
{
    const train_opts *o = &r->o;
    cnn_optim_kind kind = !strcmp(o->optimizer, "sgd")    ? CNN_OPTIM_SGD
                          : !strcmp(o->optimizer, "adam") ? CNN_OPTIM_ADAM
                                                          : CNN_OPTIM_ADAMW;
    cnn_optim_config c = cnn_optim_defaults(kind);
    c.lr = o->lr;
    c.weight_decay = o->weight_decay;
    if (kind == CNN_OPTIM_SGD) c.momentum = o->momentum;
    TR_LIB(cnn_optim_create(&c, &r->opt), "creating the optimizer");
    cnn_dict *p = cnn_model_parameters(r->model);
    for (int i = 0; i < cnn_dict_size(p); i++)
        TR_LIB(cnn_optim_add_param(r->opt, cnn_dict_name(p, i), cnn_dict_at(p, i),
                                   !cnn_model_param_no_decay(r->model, i)),
               "adding a parameter to the optimizer");
    if (!strcmp(o->schedule, "plateau")) {
        cnn_plateau_config pc = cnn_sched_plateau_defaults();
        pc.patience = 2;
        TR_LIB(cnn_sched_plateau_create(&pc, o->lr, &r->plateau), "creating the plateau schedule");
    }
}

static cnn_loader *make_loader(const tr_run *r, const cnn_dataset *ds, bool train,
                               bool drop_last)
{
    const train_opts *o = &r->o;
    cnn_loader_options lo = cnn_loader_default_options(ds, train, r->mm.img_size, o->batch);
    lo.transform.geometry = (cnn_geometry)r->mm.geometry;
    memcpy(lo.transform.mean, r->mm.mean, sizeof r->mm.mean);
    memcpy(lo.transform.std, r->mm.std, sizeof r->mm.std);
    if (train) tr_opts_augment(o, &lo.transform);
    lo.num_workers = o->workers;
    lo.seed = (uint64_t)o->seed;
    lo.limit = train ? o->limit_train : o->limit_val;
    lo.strict = o->strict != 0;
    lo.drop_last = drop_last;
    /* On a GPU the loader copies each batch ahead on its own stream from pinned memory. */
    lo.device = r->dev;
    cnn_loader *l = NULL;
    if (cnn_loader_create(ds, &lo, &l) != CNN_OK)
        tr_die("%s loader: %s", train ? "training" : "validation", cnn_last_error());
    return l;
}

/* A float written by the tool into metadata key (exact text); false when absent or malformed. */
static bool meta_float(const cnn_dict *d, const char *key, double *v)
{
    const char *s = cnn_dict_get_meta(d, key);
    char *end = NULL;
    if (s) *v = strtod(s, &end);
    return s && end != s && !*end && isfinite(*v);
}

/* A new --lr on resume scales a plateau schedule's rate, as it replaces the other schedules'
 * base rate: the plateau holds the rate it reached, so its reductions so far are kept. */
static void scale_plateau_lr(const tr_run *r, cnn_dict *d)
{
    double run_lr, held;
    if (!r->plateau || !tr_opts_given(&r->o, "lr") || !meta_float(d, "opt.lr", &run_lr) ||
        !meta_float(d, "sched.plateau.lr", &held) || (float)run_lr == r->o.lr)
        return; /* (a malformed rate is refused by the load) */
    char v[48];
    snprintf(v, sizeof v, "%.17g", run_lr > 0 ? held * r->o.lr / run_lr : r->o.lr);
    TR_LIB(cnn_dict_set_meta(d, "sched.plateau.lr", v), "scaling the plateau's learning rate");
}

/* --resume / --eval-only: the checkpoint's options (unless given again), model and state. */
static void load_checkpoint(tr_run *r, const char *path, bool with_state)
{
    char err[2048], changed[2048];
    cnn_dict *d = NULL;
    if (!tr_checkpoint_open(path, &d, &r->mm, err, sizeof err)) tr_die("%s", err);
    if (!tr_opts_from_meta(&r->o, d, with_state, err, sizeof err, changed, sizeof changed) ||
        !tr_opts_validate(&r->o, err, sizeof err))
        tr_die("%s: %s", path, err);
    cnn_set_tf32(r->o.tf32 != 0); /* the run's (tr_run_setup_device set the command line's) */
    /* SGD keeps a momentum buffer per parameter only with momentum: another non-zero momentum
     * goes on with the buffers, but none has none to go on with, and 0 would drop them. */
    double run_m;
    if (with_state && !strcmp(r->o.optimizer, "sgd") && tr_opts_given(&r->o, "momentum") &&
        meta_float(d, "opt.momentum", &run_m) && (run_m == 0) != (r->o.momentum == 0))
        tr_die("--momentum %g: the checkpoint's SGD run has momentum %g%s, which a resumed run "
               "keeps (another non-zero momentum is taken; start a new run for this one)",
               (double)r->o.momentum, run_m, run_m == 0 ? " (no momentum buffers)" : "");
    if (changed[0])
        printf("resumed with %s: the run goes on from its checkpoint, but no longer as it would "
               "have without the change\n", changed);
    if (tr_opts_given(&r->o, "img-size") && r->o.img_size && r->o.img_size != r->mm.img_size)
        tr_die("--img-size %d: the model in %s takes %dx%d inputs, which it keeps (start a new "
               "run for another size; --pretrained starts one from its weights)", r->o.img_size,
               path, r->mm.img_size, r->mm.img_size);
    snprintf(r->o.model, sizeof r->o.model, "%s", r->mm.model);
    build_model(r);
    if (!tr_checkpoint_load_model(r->model, d, err, sizeof err)) tr_die("%s: %s", path, err);
    if (with_state) {
        if (!tr_checkpoint_resumable(d))
            tr_die("%s holds weights only, without the optimizer's state (best.safetensors "
                   "keeps just the weights): resume from the last.safetensors beside it, or "
                   "start a new run from these weights with --pretrained", path);
        if (!tr_checkpoint_state(d, &r->st, err, sizeof err)) tr_die("%s: %s", path, err);
        TR_LIB(cnn_model_to(r->model, r->dev), "moving the model to the device");
        build_optimizer(r);
        if (cnn_optim_load_state_dict(r->opt, d) != CNN_OK)
            tr_die("%s: optimizer state: %s", path, cnn_last_error());
        scale_plateau_lr(r, d);
        if (r->plateau && cnn_sched_plateau_load_state_dict(r->plateau, d) != CNN_OK)
            tr_die("%s: scheduler state: %s", path, cnn_last_error());
        cnn_rng_set_state(r->st.rng_seed, r->st.rng_offset);
    }
    cnn_dict_destroy(&d);
}

/* The checkpoint's classes must be the data's, by name and in order: the labels are indices. */
static void check_classes(const tr_run *r, const cnn_dataset *ds, const char *ckpt)
{
    if (cnn_dataset_num_classes(ds) != r->mm.num_classes)
        tr_die("--data %s has %d classes, the checkpoint's model %d", r->o.data,
               cnn_dataset_num_classes(ds), r->mm.num_classes);
    for (int i = 0; i < r->mm.num_classes; i++)
        if (strcmp(cnn_dataset_class_name(ds, i), r->mm.class_names[i]))
            tr_die("--data %s: class %d is '%s', but in %s it is '%s'", r->o.data, i,
                   cnn_dataset_class_name(ds, i), ckpt, r->mm.class_names[i]);
}

/* When process pid started, in seconds since the epoch (to within about a second: the boot
 * time is whole seconds), from /proc; -1 when unknown. */
static double process_start(long pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    /* Field 22, start time in clock ticks after boot; field 2, the name, may hold anything
     * but ends at the last ')'; field 3 follows it. */
    const char *p = strrchr(buf, ')');
    unsigned long long ticks = 0, boot = 0;
    for (int field = 3; p && field <= 22; field++) {
        p = strchr(p + 1, ' ');
        if (p && field == 22 && sscanf(p + 1, "%llu", &ticks) != 1) p = NULL;
    }
    long hz = sysconf(_SC_CLK_TCK);
    if (!p || hz <= 0 || !(f = fopen("/proc/stat", "r"))) return -1;
    while (fgets(buf, sizeof buf, f) && sscanf(buf, "btime %llu", &boot) != 1) {
    }
    fclose(f);
    return boot ? (double)boot + (double)ticks / (double)hz : -1;
}

/* The temporary files (NAME.tmp.<pid>.<tid>, see cnn_safetensors_save) of checkpoints whose
 * writer was killed before it renamed them: each as large as a checkpoint, one more for every
 * run killed while saving (a batch system's SIGKILL). Removed once their process is gone, or
 * when the process of that id started after the file was last written (the id was given again:
 * in a container the training process is often process 1, run after run). */
static void remove_partial_checkpoints(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        char base[8];
        long pid, tid;
        int end = 0;
        if (sscanf(e->d_name, "%4[a-z].safetensors.tmp.%ld.%ld%n", base, &pid, &tid, &end) != 3 ||
            e->d_name[end] || (strcmp(base, "last") && strcmp(base, "best")))
            continue;
        if (pid <= 0) continue;
        char path[TR_PATH_MAX + 300];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        /* kill(pid, 0) fails with ESRCH only when no such process exists. A live process's
         * file is left alone unless it is older than the process by more than the start
         * time's uncertainty. */
        bool gone = kill((pid_t)pid, 0) != 0 && errno == ESRCH;
        struct stat st;
        double start = gone ? -1 : process_start(pid);
        if (!gone && !(start > 0 && stat(path, &st) == 0 && (double)st.st_mtime < start - 2))
            continue;
        if (unlink(path) == 0)
            printf("removed %s: a checkpoint being written when its run (process %ld) was "
                   "killed\n", path, pid);
    }
    closedir(d);
}

void tr_run_open_train(tr_run *r)
{
    char err[1024];
    if (r->o.resume[0]) {
        load_checkpoint(r, r->o.resume, true);
        r->train_ds = open_split(&r->o, true, r->mm.in_channels);
        r->val_ds = open_split(&r->o, false, r->mm.in_channels);
        check_classes(r, r->train_ds, r->o.resume);
        check_classes(r, r->val_ds, r->o.resume);
        if (!r->o.checkpoint_dir[0])
            tr_dir_of(r->o.resume, r->o.checkpoint_dir, sizeof r->o.checkpoint_dir);
    } else {
        r->train_ds = open_split(&r->o, true, default_channels(&r->o));
        r->val_ds = open_split(&r->o, false, default_channels(&r->o));
        describe_model(r);
        TR_LIB(cnn_model_to(r->model, r->dev), "moving the model to the device");
        build_optimizer(r);
    }
    cnn_model_info info = cnn_model_get_info(r->model);
    if (r->mm.img_size < info.min_h)
        tr_die("--model %s needs inputs of at least %dx%d, --img-size is %d (try --img-size %d%s)",
               r->mm.model, info.min_h, info.min_w, r->mm.img_size, info.min_h,
               strstr(r->mm.model, "resnet") ? " or a *_small ResNet" : "");
    /* Any other size the model refuses (LeNet-5 takes 32x32 or 28x28 only) is found here, as
     * cnnbench finds it, before the run's folder is made and its first step fails. */
    cnn_model_summary sum = {0};
    cnn_status st = cnn_model_summarize(r->model, r->mm.img_size, r->mm.img_size, &sum);
    for (int i = 0; st == CNN_OK && i < sum.n_layers && !r->bn_1x1[0]; i++) {
        const cnn_layer_summary *l = &sum.layers[i];
        if (!strcmp(l->type, "BatchNorm2d") && l->out_shape.ndim == 4 &&
            l->out_shape.d[2] * l->out_shape.d[3] == 1)
            snprintf(r->bn_1x1, sizeof r->bn_1x1, "%s", l->name);
    }
    /* Such a batch norm has one value per channel in a batch of one image, which it cannot
     * normalise in training (PyTorch's refuses it too): a last training batch of one image
     * would end the run at the end of its first epoch, so that batch is left out (and one that
     * bad files leave, at its step: train_epoch). The images counted as the loader counts. */
    const char *bn_1x1 = r->bn_1x1;
    const int64_t size = cnn_dataset_size(r->train_ds), lim = r->o.limit_train;
    const int64_t n_train = lim > 0 && lim < size ? lim : size;
    if (bn_1x1[0] && r->o.batch == 1)
        tr_die("--model %s at --img-size %d: %s normalises a 1x1 map, which cannot be trained "
               "on one image: use a --batch of 2 or more, or a larger --img-size", r->mm.model,
               r->mm.img_size, bn_1x1);
    if (bn_1x1[0] && n_train == 1)
        tr_die("--model %s at --img-size %d: %s normalises a 1x1 map, which cannot be trained "
               "on one image, and the training split has one (use more images, or a larger "
               "--img-size)", r->mm.model, r->mm.img_size, bn_1x1);
    const bool drop_last = bn_1x1[0] && n_train % r->o.batch == 1;
    if (drop_last)
        printf("note: %lld training images leave 1 for the last batch of %d, and %s (a batch "
               "norm over a 1x1 map at --img-size %d) cannot train on one image: each epoch "
               "leaves that image out (another each epoch: the order is shuffled); a --batch "
               "that leaves no single image over uses them all\n", (long long)n_train,
               r->o.batch, bn_1x1, r->mm.img_size);
    cnn_model_summary_free(&sum);
    if (st != CNN_OK) tr_die("--img-size %d: %s", r->mm.img_size, cnn_last_error());
    if (!tr_checkpoint_check_text(&r->o, &r->mm, err, sizeof err)) tr_die("%s", err);
    if (!r->o.checkpoint_dir[0]) {
        /* A folder of its own, even for two runs started in the same second. */
        char stamp[32];
        time_t t = time(NULL);
        strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", localtime(&t));
        snprintf(r->o.checkpoint_dir, sizeof r->o.checkpoint_dir, "runs/%s-%s", r->mm.model, stamp);
        if (!tr_make_new_dir(r->o.checkpoint_dir, sizeof r->o.checkpoint_dir, err, sizeof err))
            tr_die("%s", err);
        snprintf(g_new_dir, sizeof g_new_dir, "%s", r->o.checkpoint_dir);
    } else {
        struct stat sb;
        bool existed = stat(r->o.checkpoint_dir, &sb) == 0;
        if (!tr_make_dirs(r->o.checkpoint_dir, err, sizeof err) ||
            !tr_check_unused_dir(r->o.checkpoint_dir, r->o.resume, err, sizeof err))
            tr_die("%s", err);
        if (!existed) snprintf(g_new_dir, sizeof g_new_dir, "%s", r->o.checkpoint_dir);
    }
    snprintf(r->dir, sizeof r->dir, "%s", r->o.checkpoint_dir);
    /* Before the first epoch, not at its end. */
    if (!tr_check_writable_dir(r->dir, err, sizeof err)) tr_die("%s", err);
    remove_partial_checkpoints(r->dir);
    r->train_ld = make_loader(r, r->train_ds, true, drop_last);
    r->val_ld = make_loader(r, r->val_ds, false, false);
    r->steps_per_epoch = cnn_loader_num_batches(r->train_ld);
    if (r->steps_per_epoch < 1) tr_die("--data %s: no training sample", r->o.data);
}

void tr_run_open_eval(tr_run *r)
{
    load_checkpoint(r, r->o.eval_only, false);
    TR_LIB(cnn_model_to(r->model, r->dev), "moving the model to the device");
    r->val_ds = open_split(&r->o, false, r->mm.in_channels);
    check_classes(r, r->val_ds, r->o.eval_only);
    r->val_ld = make_loader(r, r->val_ds, false, false);
}

void tr_run_free(tr_run *r)
{
    cnn_loader_destroy(&r->train_ld);
    cnn_loader_destroy(&r->val_ld);
    cnn_dataset_destroy(&r->train_ds);
    cnn_dataset_destroy(&r->val_ds);
    cnn_sched_plateau_destroy(&r->plateau);
    tr_run_drop_graph(r); /* before what its replays use */
    cnn_optim_destroy(&r->opt);
    cnn_model_destroy(&r->model);
    tr_model_meta_free(&r->mm);
    tr_history_free(&r->st.history);
    tr_eval_free(&r->last_eval);
    free(r->host_logits);
    cnn_context_set_current(NULL);
    cnn_context_destroy(&r->ctx);
}
