/* train_opts.c — the option table of train_imagenet_subset and everything derived from it:
 * parsing (--name value or --name=value), --help, validation, and the copy stored in
 * checkpoints so that --resume continues with the same settings. Never exits. */
#include "train_opts.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef enum { OT_STR, OT_INT, OT_I64, OT_F32, OT_FLAG } opt_type;

typedef struct opt_desc {
    const char *name; /* without the leading "--" */
    opt_type type;
    size_t off, size;
    const char *def;
    bool saved; /* a training setting: kept in checkpoints, restored by --resume */
    const char *arg, *help;
} opt_desc;

#define F(field) offsetof(train_opts, field), sizeof(((train_opts *)0)->field)
static const opt_desc OPTS[] = {
    {"data", OT_STR, F(data), "fashion-mnist", true, "DIR",
     "'fashion-mnist' (/usr/share/datasets/fashion-mnist) or an ImageNet-style folder\n"
     "DIR/train/<class>/*, DIR/val/<class>/*"},
    {"model", OT_STR, F(model), "lenet5", true, "NAME", "any zoo name (lenet5, resnet18, ...)"},
    {"epochs", OT_INT, F(epochs), "12", true, "N", "training epochs"},
    {"batch", OT_INT, F(batch), "128", true, "N", "batch size (at most " TR_BATCH_MAX_STR ")"},
    {"lr", OT_F32, F(lr), "0.002", true, "LR", "base learning rate (after warm-up)"},
    {"optimizer", OT_STR, F(optimizer), "adam", true, "sgd|adam|adamw", "optimizer"},
    {"momentum", OT_F32, F(momentum), "0.9", true, "M", "SGD momentum (Adam: unused)"},
    {"weight-decay", OT_F32, F(weight_decay), "0", true, "WD",
     "weight decay (never on biases and batch-norm parameters)"},
    {"schedule", OT_STR, F(schedule), "cosine", true, "cosine|step|plateau",
     "cosine: per step, to 0; step: x0.1 every epochs/3 epochs, counted\n"
     "from the first (warm-up included);\n"
     "plateau: ReduceLROnPlateau(factor 0.1, patience 2) on the val loss"},
    {"warmup-epochs", OT_INT, F(warmup_epochs), "0", true, "N",
     "linear learning-rate warm-up, per step, over N epochs, then the schedule\n"
     "(cosine's curve starts after it; plateau counts its epochs' val losses)"},
    {"label-smoothing", OT_F32, F(label_smoothing), "0", true, "S",
     "cross-entropy label smoothing in [0, 1] (validation loss too)"},
    {"img-size", OT_INT, F(img_size), "0", true, "S",
     "input size; 0: the dataset's own (28 for Fashion-MNIST), else the model's"},
    {"hflip", OT_F32, F(hflip), "-1", true, "P",
     "training: horizontal flip probability (-1: the dataset's default,\n"
     "0.5 for image folders, 0 for IDX digits and clothes)"},
    {"translate", OT_F32, F(translate), "0", true, "F",
     "training: random shift up to F of the size per axis (RandomAffine)"},
    {"rotate", OT_F32, F(rotate), "0", true, "DEG",
     "training: random rotation in [-DEG, DEG] degrees (RandomAffine)"},
    {"zoom", OT_F32, F(zoom), "0", true, "F",
     "training: random scale in [1-F, 1+F] (RandomAffine)"},
    {"color-jitter", OT_F32, F(color_jitter), "0", true, "F",
     "training: ColorJitter(brightness=F, contrast=F, saturation=F)"},
    {"random-erase", OT_F32, F(random_erase), "0", true, "P",
     "training: RandomErasing probability (2-33% of the area set to the mean)"},
    {"workers", OT_INT, F(workers), "1", false, "N", "decoding threads (0: in the training loop)"},
    {"device", OT_STR, F(device), "auto", false, "cpu|cuda|cuda:N",
     "auto: cuda if a GPU is usable, else cpu; cuda is cuda:0"},
    {"backend", OT_STR, F(backend), "cudnn", false, "cudnn|cuda",
     "kernels for CUDA tensors: cuDNN where possible, or hand-written only"},
    {"tf32", OT_FLAG, F(tf32), "off", true, NULL, "TF32 math for conv and GEMM on the GPU"},
    {"cuda-graph", OT_FLAG, F(cuda_graph), "off", false, NULL,
     "GPU: capture the training step once as a CUDA graph and replay it\n"
     "(less host time per step; the same results)"},
    {"seed", OT_I64, F(seed), "0", true, "N", "seed of initialisation, shuffling and augmentation"},
    {"limit-train", OT_I64, F(limit_train), "0", true, "N",
     "train on N samples spread over the split (0: all)"},
    {"limit-val", OT_I64, F(limit_val), "0", true, "N", "validate on N samples (0: all)"},
    {"checkpoint-dir", OT_STR, F(checkpoint_dir), "", false, "DIR",
     "where checkpoints, metrics.csv and curves.png go (default runs/<model>-<time>;\n"
     "with --resume, the resumed checkpoint's folder); one holding another run's\n"
     "checkpoints is refused"},
    {"resume", OT_STR, F(resume), "", false, "PATH", "continue training from a checkpoint"},
    {"eval-only", OT_STR, F(eval_only), "", false, "PATH",
     "evaluate a checkpoint on the validation split and stop"},
    {"pretrained", OT_STR, F(pretrained), "", false, "PATH",
     "start from these weights (a torchvision state_dict as safetensors, or a\n"
     "checkpoint): fine-tuning; a classifier for other classes stays fresh"},
    {"early-stop", OT_INT, F(early_stop), "0", true, "PATIENCE",
     "stop after PATIENCE epochs without a better val top-1 (0: never)"},
    {"stop-after", OT_INT, F(stop_after), "0", false, "N",
     "end this invocation after N epochs, resumable (0: run all)"},
    {"strict", OT_FLAG, F(strict), "off", true, NULL,
     "a bad image aborts instead of being skipped"},
    {"predict", OT_STR, F(predict), "", false, "IMAGE",
     "print the top-5 classes of IMAGE and any further files given\n"
     "after the options (needs --checkpoint)"},
    {"checkpoint", OT_STR, F(checkpoint), "", false, "CKPT", "the checkpoint --predict uses"},
    {"help", OT_FLAG, F(help), "", false, NULL, "this text"},
};
#undef F
#define N_OPTS ((int)(sizeof OPTS / sizeof OPTS[0]))
_Static_assert(sizeof OPTS / sizeof OPTS[0] <= TR_MAX_OPTS, "TR_MAX_OPTS too small");

/* Parses text into the field of option d. NULL when it is a complete, in-range value, else
 * why it is not. */
static const char *set_value(train_opts *o, const opt_desc *d, const char *v)
{
    char *p = (char *)o + d->off, *end = NULL;
    errno = 0;
    switch (d->type) {
    case OT_STR:
        if (strlen(v) >= d->size) return "too long";
        memcpy(p, v, strlen(v) + 1);
        return NULL;
    case OT_INT: {
        long x = strtol(v, &end, 10);
        if (end == v || *end) return "not an integer";
        if (errno || x < -2147483647L || x > 2147483647L) return "out of range";
        *(int *)p = (int)x;
        return NULL;
    }
    case OT_I64: {
        long long x = strtoll(v, &end, 10);
        if (end == v || *end) return "not an integer";
        if (errno) return "out of range";
        *(int64_t *)p = x;
        return NULL;
    }
    case OT_F32: {
        float x = strtof(v, &end);
        if (end == v || *end) return "not a number";
        if (errno) return fabsf(x) < 1 ? "too close to 0 for a float" : "too large for a float";
        if (!isfinite(x)) return "not finite";
        *(float *)p = x;
        return NULL;
    }
    case OT_FLAG:
        if (!strcmp(v, "on") || !strcmp(v, "1"))
            *(int *)p = 1;
        else if (!strcmp(v, "off") || !strcmp(v, "0") || !v[0])
            *(int *)p = 0;
        else
            return "not on or off";
        return NULL;
    }
    return "of an unknown type";
}

/* The value of option d as text: exact (read back bit-identical by set_value) or short. */
static void get_value(const train_opts *o, const opt_desc *d, bool exact, char *buf, size_t n)
{
    const char *p = (const char *)o + d->off;
    switch (d->type) {
    case OT_STR:
        snprintf(buf, n, "%s", p);
        break;
    case OT_INT:
        snprintf(buf, n, "%d", *(const int *)p);
        break;
    case OT_I64:
        snprintf(buf, n, "%lld", (long long)*(const int64_t *)p);
        break;
    case OT_F32:
        snprintf(buf, n, exact ? "%.9g" : "%g", (double)*(const float *)p);
        break;
    case OT_FLAG:
        snprintf(buf, n, "%s", *(const int *)p ? "on" : "off");
        break;
    }
}

void tr_opts_defaults(train_opts *o)
{
    memset(o, 0, sizeof *o);
    for (int i = 0; i < N_OPTS; i++) set_value(o, &OPTS[i], OPTS[i].def);
}

bool tr_opts_parse(train_opts *o, int argc, char **argv, char *err, size_t n)
{
    tr_opts_defaults(o);
    o->files = argv + argc;
    int first_file = argc, bare_flag = -1; /* bare_flag: argv index of a flag given without = */
    for (int a = 1; a < argc; a++) {
        const char *arg = argv[a];
        if (arg[0] != '-' || !arg[1]) {
            if (bare_flag == a - 1 && (!strcmp(arg, "on") || !strcmp(arg, "off"))) {
                snprintf(err, n, "'%s' after %s: a flag takes no separate value (write %s=%s)",
                         arg, argv[a - 1], argv[a - 1], arg);
                return false;
            }
            /* positional arguments: --predict's further files, kept together at the end */
            if (first_file == argc)
                first_file = a;
            else if (first_file + o->n_files != a) {
                snprintf(err, n, "'%s': files must come after all options", arg);
                return false;
            }
            o->n_files++;
            continue;
        }
        if (first_file != argc) {
            snprintf(err, n, "'%s': options must come before the image files", arg);
            return false;
        }
        if (!strcmp(arg, "--")) { /* the end of the options: the rest are files, "-x.png" too */
            if (a + 1 < argc) first_file = a + 1;
            o->n_files = argc - a - 1;
            break;
        }
        if (!strcmp(arg, "-h")) arg = "--help";
        if (strncmp(arg, "--", 2) != 0) {
            snprintf(err, n, "unknown option '%s' (see --help)", arg);
            return false;
        }
        const char *name = arg + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        int i = 0;
        while (i < N_OPTS && (strlen(OPTS[i].name) != len || strncmp(OPTS[i].name, name, len))) i++;
        if (i == N_OPTS) {
            snprintf(err, n, "unknown option '%.*s' (see --help)", (int)len + 2, arg);
            return false;
        }
        const opt_desc *d = &OPTS[i];
        const char *v;
        if (d->type == OT_FLAG && !eq) bare_flag = a;
        if (d->type == OT_FLAG)
            v = eq ? eq + 1 : "on";
        else if (eq)
            v = eq + 1;
        else if (a + 1 < argc && strncmp(argv[a + 1], "--", 2) != 0 && strcmp(argv[a + 1], "-h"))
            v = argv[++a];
        else {
            /* The next argument is an option, not this one's value (as argparse, a value that
             * begins with -- is written --name=--value). */
            if (a + 1 < argc)
                snprintf(err, n, "--%s needs a value (%s), not the option '%s'", d->name, d->arg,
                         argv[a + 1]);
            else
                snprintf(err, n, "--%s needs a value (%s)", d->name, d->arg);
            return false;
        }
        /* An empty value (an unset shell variable) would read as "not given": for --resume
         * a new run would start instead of failing. */
        if (d->type == OT_STR && !v[0]) {
            snprintf(err, n, "--%s: empty value (expected %s)", d->name, d->arg);
            return false;
        }
        const char *why = set_value(o, d, v);
        if (why) {
            /* A value of a few kilobytes is named by its start: the message stays one line. */
            int shown = strlen(v) > 64 ? 60 : (int)strlen(v);
            char limit[48] = "";
            if (d->type == OT_STR)
                snprintf(limit, sizeof limit, ", over %zu characters", d->size - 1);
            snprintf(err, n, "--%s: bad value '%.*s%s' (%s%s; expected %s)", d->name, shown, v,
                     shown < (int)strlen(v) ? "..." : "", why, limit,
                     d->type == OT_FLAG ? "on|off" : d->arg);
            return false;
        }
        o->given[i] = true;
    }
    o->files = argv + first_file;
    if (o->n_files && !o->predict[0]) {
        snprintf(err, n, "unexpected argument '%s' (image files need --predict)", o->files[0]);
        return false;
    }
    return true;
}

static bool one_of(const char *v, const char *const *names)
{
    for (; *names; names++)
        if (!strcmp(v, *names)) return true;
    return false;
}

int tr_device_index(const char *device)
{
    if (!strcmp(device, "cuda")) return 0;
    if (strncmp(device, "cuda:", 5) != 0) return -1;
    const char *d = device + 5;
    const size_t n = strspn(d, "0123456789");
    return n >= 1 && n <= 3 && d[n] == '\0' ? atoi(d) : -1;
}

/* The options that do something with --eval-only (the device; the validation split and its
 * loader; the model and input size, checked against the checkpoint's; the loss's label
 * smoothing) and with --predict (the device; the rest comes from the checkpoint). Any other
 * given with them is refused rather than ignored. */
static const char *const EVAL_ONLY_OPTS[] = {
    "eval-only", "data",   "model",  "img-size", "label-smoothing", "batch", "workers",
    "limit-val", "strict", "device", "backend",  "tf32",            NULL};
static const char *const PREDICT_OPTS[] = {"predict", "checkpoint", "device", "backend", "tf32",
                                           NULL};

/* An option given that does nothing in o's mode (--eval-only or --predict); false with the
 * reason in err. */
static bool check_mode_options(const train_opts *o, char *err, size_t n)
{
    const char *mode = o->eval_only[0] ? "--eval-only" : o->predict[0] ? "--predict" : NULL;
    for (int i = 0; mode && i < N_OPTS; i++) {
        if (!o->given[i] || one_of(OPTS[i].name, o->eval_only[0] ? EVAL_ONLY_OPTS : PREDICT_OPTS))
            continue;
        snprintf(err, n, "--%s does nothing with %s: leave it out", OPTS[i].name, mode);
        return false;
    }
    return true;
}

void tr_opts_augment(const train_opts *o, cnn_transform *t)
{
    if (o->hflip >= 0) t->hflip_p = o->hflip;
    t->affine_translate = o->translate;
    t->affine_degrees = o->rotate;
    if (o->zoom > 0) t->affine_scale[0] = 1 - o->zoom, t->affine_scale[1] = 1 + o->zoom;
    if (o->color_jitter > 0) t->brightness = t->contrast = t->saturation = o->color_jitter;
    t->erase_p = o->random_erase;
}

bool tr_opts_validate(const train_opts *o, char *err, size_t n)
{
    static const char *const optims[] = {"sgd", "adam", "adamw", NULL};
    static const char *const scheds[] = {"cosine", "step", "plateau", NULL};
    static const char *const devices[] = {"auto", "cpu", NULL};
    static const char *const backends[] = {"cudnn", "cuda", NULL};
    const char *bad = NULL;
    if (o->epochs < 1)
        bad = "--epochs must be >= 1";
    else if (o->batch < 1 || o->batch > TR_BATCH_MAX)
        bad = "--batch must be in [1, " TR_BATCH_MAX_STR "]";
    else if (!(o->lr > 0))
        bad = "--lr must be > 0";
    else if (!one_of(o->optimizer, optims))
        bad = "--optimizer must be sgd, adam or adamw";
    else if (o->momentum < 0 || o->momentum >= 1)
        bad = "--momentum must be in [0, 1)";
    else if (o->weight_decay < 0)
        bad = "--weight-decay must be >= 0";
    else if (!one_of(o->schedule, scheds))
        bad = "--schedule must be cosine, step or plateau";
    else if (o->warmup_epochs < 0 || o->warmup_epochs >= o->epochs)
        bad = "--warmup-epochs must be in [0, epochs)";
    else if (!(o->label_smoothing >= 0 && o->label_smoothing <= 1))
        bad = "--label-smoothing must be in [0, 1]";
    else if (o->img_size < 0 || o->img_size > 4096)
        bad = "--img-size must be in [0, 4096]";
    else if (!(o->hflip == -1 || (o->hflip >= 0 && o->hflip <= 1)))
        bad = "--hflip must be -1 (the dataset's default) or in [0, 1]";
    else if (!(o->translate >= 0 && o->translate < 1))
        bad = "--translate must be in [0, 1)";
    else if (!(o->rotate >= 0 && o->rotate <= 180))
        bad = "--rotate must be in [0, 180]";
    else if (!(o->zoom >= 0 && o->zoom < 1))
        bad = "--zoom must be in [0, 1)";
    else if (!(o->color_jitter >= 0 && o->color_jitter <= 1))
        bad = "--color-jitter must be in [0, 1]";
    else if (!(o->random_erase >= 0 && o->random_erase <= 1))
        bad = "--random-erase must be in [0, 1]";
    else if (o->workers < 0 || o->workers > CNN_LOADER_MAX_WORKERS)
        bad = "--workers must be in [0, 64]";
    else if (!one_of(o->device, devices) && tr_device_index(o->device) < 0)
        bad = "--device must be auto, cpu, cuda or cuda:N";
    else if (!one_of(o->backend, backends))
        bad = "--backend must be cudnn or cuda";
    else if (o->seed < 0)
        bad = "--seed must be >= 0";
    else if (o->limit_train < 0 || o->limit_val < 0)
        bad = "--limit-train/--limit-val must be >= 0";
    else if (o->early_stop < 0)
        bad = "--early-stop must be >= 0";
    else if (o->stop_after < 0)
        bad = "--stop-after must be >= 0";
    else if (!!o->resume[0] + !!o->eval_only[0] + !!o->predict[0] > 1)
        bad = "--resume, --eval-only and --predict are modes of their own: give one at most";
    else if (o->predict[0] && !o->checkpoint[0])
        bad = "--predict needs --checkpoint CKPT";
    else if (o->checkpoint[0] && !o->predict[0])
        bad = "--checkpoint is the checkpoint --predict uses (to train on from a checkpoint: "
              "--resume PATH or --pretrained PATH)";
    else if (o->pretrained[0] && (o->resume[0] || o->eval_only[0] || o->predict[0]))
        bad = "--pretrained starts a new run: it does not go with --resume, --eval-only or "
              "--predict";
    else if (!o->data[0])
        bad = "--data must not be empty";
    if (bad) {
        snprintf(err, n, "%s", bad);
        return false;
    }
    if (!check_mode_options(o, err, n)) return false;
    /* a bad --model fails here, before any dataset is read */
    int count = 0;
    const char *const *names = cnn_model_names(&count);
    for (int i = 0; i < count; i++)
        if (!strcmp(names[i], o->model)) return true;
    int len = snprintf(err, n, "--model %s: unknown model '%s' (known:", o->model, o->model);
    for (int i = 0; i < count && len > 0 && (size_t)len < n; i++)
        len += snprintf(err + len, n - (size_t)len, "%s %s", i ? "," : "", names[i]);
    if (len > 0 && (size_t)len < n) snprintf(err + len, n - (size_t)len, ")");
    return false;
}

bool tr_make_dirs(const char *path, char *err, size_t n)
{
    char buf[TR_PATH_MAX];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1;; p++) {
        if (*p && *p != '/') continue;
        char c = *p;
        *p = 0;
        if (mkdir(buf, 0777) != 0 && errno != EEXIST) {
            snprintf(err, n, "cannot create %s: %s", buf, strerror(errno));
            return false;
        }
        if (!c) return true;
        *p = c;
    }
}

bool tr_opts_given(const train_opts *o, const char *name)
{
    for (int i = 0; i < N_OPTS; i++)
        if (!strcmp(OPTS[i].name, name)) return o->given[i];
    return false;
}

bool tr_make_new_dir(char *path, size_t size, char *err, size_t n)
{
    char *slash = strrchr(path, '/');
    if (slash && slash != path) {
        *slash = 0;
        bool ok = tr_make_dirs(path, err, n);
        *slash = '/';
        if (!ok) return false;
    }
    size_t len = strlen(path);
    for (int k = 1; k < 1000; k++) {
        if (k > 1 && snprintf(path + len, size - len, "-%d", k) >= (int)(size - len)) break;
        if (mkdir(path, 0777) == 0) return true;
        if (errno != EEXIST) {
            snprintf(err, n, "cannot create %s: %s", path, strerror(errno));
            return false;
        }
    }
    path[len] = 0;
    snprintf(err, n, "cannot create a new folder %s-N: all taken", path);
    return false;
}

bool tr_check_writable_dir(const char *path, char *err, size_t n)
{
    struct stat sb;
    if (stat(path, &sb) != 0) {
        snprintf(err, n, "checkpoint folder %s: %s", path, strerror(errno));
        return false;
    }
    if (!S_ISDIR(sb.st_mode)) {
        snprintf(err, n, "checkpoint folder %s is not a folder", path);
        return false;
    }
    char probe[TR_PATH_MAX + 32];
    snprintf(probe, sizeof probe, "%s/.write-test-XXXXXX", path);
    int fd = mkstemp(probe);
    if (fd < 0) {
        snprintf(err, n, "checkpoint folder %s is not writable: %s", path, strerror(errno));
        return false;
    }
    close(fd);
    unlink(probe);
    return true;
}

const char *tr_opts_runtime_args(const train_opts *o, char *buf, size_t n)
{
    static const char *const names[] = {"device", "backend", "workers", "cuda-graph"};
    size_t used = 0;
    buf[0] = 0;
    for (size_t k = 0; k < sizeof names / sizeof *names; k++) {
        for (int i = 0; i < N_OPTS; i++) {
            if (strcmp(OPTS[i].name, names[k]) || !o->given[i]) continue;
            char v[TR_PATH_MAX + 32], q[TR_QUOTED_MAX];
            get_value(o, &OPTS[i], false, v, sizeof v);
            int w = snprintf(buf + used, n - used, " --%s %s", names[k],
                             tr_shell_quote(v, q, sizeof q));
            if (w > 0 && (size_t)w < n - used) used += (size_t)w;
            else buf[used] = 0; /* (does not fit: left out whole) */
        }
    }
    return buf;
}

void tr_dir_of(const char *path, char *out, size_t n)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(out, n, ".");
    else
        snprintf(out, n, "%.*s", slash == path ? 1 : (int)(slash - path), path);
}

bool tr_check_unused_dir(const char *path, const char *resume, char *err, size_t n)
{
    char here[PATH_MAX], theirs[PATH_MAX], file[TR_PATH_MAX + 32];
    if (resume && resume[0] && realpath(path, here)) {
        tr_dir_of(resume, file, sizeof file);
        if (realpath(file, theirs) && !strcmp(here, theirs))
            return true; /* continuing the run whose folder this is */
    }
    static const char *const names[] = {"last.safetensors", "best.safetensors"};
    for (int i = 0; i < 2; i++) {
        snprintf(file, sizeof file, "%s/%s", path, names[i]);
        if (access(file, F_OK) == 0) {
            char last[TR_PATH_MAX + 32], quoted[TR_QUOTED_MAX];
            snprintf(last, sizeof last, "%s/last.safetensors", path);
            snprintf(err, n, "--checkpoint-dir %s already holds another run's %s, which this "
                     "run would overwrite: continue that run with --resume %s, or name a new "
                     "folder (without --checkpoint-dir each run gets its own)",
                     path, names[i], tr_shell_quote(last, quoted, sizeof quoted));
            return false;
        }
    }
    return true;
}

/* Appends s to buf (n bytes, *k used), as much as fits. */
static void append(char *buf, size_t n, size_t *k, const char *s)
{
    for (; *s; s++)
        if (*k + 1 < n) buf[(*k)++] = *s;
}

const char *tr_shell_quote(const char *s, char *buf, size_t n)
{
    bool plain = s[0] != 0;
    for (const char *p = s; *p; p++)
        plain = plain && (isalnum((unsigned char)*p) || strchr("%+,-./:=@_", *p));
    if (plain) {
        snprintf(buf, n, "%s", s);
        return buf;
    }
    /* Inside single quotes only ' itself is special: it is written '\'' (close the quotes,
     * an escaped quote, open them again). */
    size_t k = 0;
    append(buf, n, &k, "'");
    for (const char *p = s; *p; p++) {
        const char c[2] = {*p, 0};
        append(buf, n, &k, *p == '\'' ? "'\\''" : c);
    }
    append(buf, n, &k, "'");
    buf[k] = 0;
    return buf;
}

void tr_opts_usage(FILE *f)
{
    fprintf(f, "usage: train_imagenet_subset [options]\n"
               "       train_imagenet_subset --predict IMAGE --checkpoint CKPT [--] [IMAGE...]\n"
               "Trains a zoo model on Fashion-MNIST or an ImageNet-style folder, writing\n"
               "checkpoints (best.safetensors, last.safetensors), metrics.csv, confusion.csv\n"
               "and curves.png. Ctrl-C or SIGTERM saves last.safetensors after the current step,\n"
               "prints how to resume and exits 0; --resume continues bit-identically on the same\n"
               "device and OMP_NUM_THREADS, from the loader's position (batches done are not\n"
               "read again).\n"
               "options (default in brackets):\n");
    for (int i = 0; i < N_OPTS; i++) {
        const opt_desc *d = &OPTS[i];
        char lhs[64];
        snprintf(lhs, sizeof lhs, "--%s%s%s", d->name, d->arg ? " " : "", d->arg ? d->arg : "");
        fprintf(f, "  %-26s ", lhs);
        for (const char *h = d->help; *h; h++) {
            fputc(*h, f);
            if (*h == '\n') fprintf(f, "  %-26s ", "");
        }
        if (d->def[0] && d->type != OT_FLAG) fprintf(f, " [%s]", d->def);
        fputc('\n', f);
    }
}

cnn_status tr_opts_to_meta(const train_opts *o, cnn_dict *d)
{
    for (int i = 0; i < N_OPTS; i++) {
        if (!OPTS[i].saved) continue;
        char key[64], val[TR_PATH_MAX + 32];
        snprintf(key, sizeof key, "opt.%s", OPTS[i].name);
        get_value(o, &OPTS[i], true, val, sizeof val);
        cnn_status st = cnn_dict_set_meta(d, key, val);
        if (st != CNN_OK) return st;
    }
    return CNN_OK;
}

/* "data/", "./data" and "data" name one folder: giving it again another way changes nothing. */
static bool same_folder(const char *a, const char *b)
{
    char ra[PATH_MAX], rb[PATH_MAX];
    return realpath(a, ra) && realpath(b, rb) && !strcmp(ra, rb);
}

bool tr_opts_from_meta(train_opts *o, const cnn_dict *d, bool resume, char *err, size_t n,
                       char *notes, size_t nn)
{
    if (notes && nn) notes[0] = 0;
    for (int i = 0; i < N_OPTS; i++) {
        if (!OPTS[i].saved) continue;
        char key[64], mine[TR_PATH_MAX + 32], def[TR_PATH_MAX + 32];
        snprintf(key, sizeof key, "opt.%s", OPTS[i].name);
        const char *v = cnn_dict_get_meta(d, key);
        if (!v && !o->given[i]) continue; /* an older checkpoint: keep the default */
        if (!v) {
            /* An option newer than the checkpoint, given: its run had the default. */
            train_opts run = *o;
            set_value(&run, &OPTS[i], OPTS[i].def);
            get_value(&run, &OPTS[i], true, def, sizeof def);
            v = def;
        }
        const char *name = OPTS[i].name;
        if (o->given[i]) {
            get_value(o, &OPTS[i], true, mine, sizeof mine);
            if (!strcmp(mine, v) || (!strcmp(name, "data") && same_folder(mine, v))) continue;
            /* The model goes with the weights; a resumed run keeps the optimizer and schedule
             * whose state it loads, and the samples of its epochs and their order (another
             * --limit-train or --seed mid-epoch would read some twice and skip others): another
             * one given is refused rather than dropped or mixed in. Any other change is the
             * user's to make (a longer run, a lower lr), and is said. */
            bool model = !strcmp(name, "model");
            bool kept = model || (resume && (!strcmp(name, "optimizer") ||
                                             !strcmp(name, "schedule") ||
                                             !strcmp(name, "limit-train") ||
                                             !strcmp(name, "seed")));
            if (kept) {
                snprintf(err, n, "--%s %s: the checkpoint's run uses %s %s, which it keeps "
                         "(start a new run for another%s)", name, mine, name, v,
                         model ? "; --pretrained starts one from its weights" : "");
                return false;
            }
            /* (--img-size is checked against the model's own input size by the caller.) */
            if (resume && notes && nn && strcmp(name, "img-size")) {
                /* Both as --help shows values (0.002, not 0.00200000009). */
                train_opts run = *o;
                char shown[2][TR_PATH_MAX + 32];
                get_value(o, &OPTS[i], false, shown[0], sizeof shown[0]);
                if (!set_value(&run, &OPTS[i], v))
                    get_value(&run, &OPTS[i], false, shown[1], sizeof shown[1]);
                else
                    snprintf(shown[1], sizeof shown[1], "%s", v);
                size_t used = strlen(notes);
                snprintf(notes + used, nn - used, "%s--%s %s (the run's: %s)", used ? ", " : "",
                         name, shown[0], shown[1]);
            }
            continue;
        }
        const char *why = set_value(o, &OPTS[i], v);
        if (why) {
            snprintf(err, n, "checkpoint option %s has a bad value '%s' (%s)", key, v, why);
            return false;
        }
    }
    return true;
}

void tr_opts_print(const train_opts *o, FILE *f)
{
    int col = 0;
    for (int i = 0; i < N_OPTS; i++) {
        if (!OPTS[i].saved) continue;
        char val[TR_PATH_MAX + 32];
        get_value(o, &OPTS[i], false, val, sizeof val);
        int w = (int)(strlen(OPTS[i].name) + strlen(val)) + 2;
        if (col && col + w > 96) {
            fputc('\n', f);
            col = 0;
        }
        col += fprintf(f, "%s%s=%s", col ? " " : "", OPTS[i].name, val);
    }
    if (col) fputc('\n', f);
}
