/* checkpoint.c — saving and reading the training tool's checkpoints (see checkpoint.h). All
 * numbers go through text metadata with enough digits to come back bit-exact; nothing prints. */
#include "checkpoint.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define FORMAT_TAG "cnncuda-train/1"

void tr_model_meta_free(tr_model_meta *m)
{
    if (m->class_names)
        for (int i = 0; i < m->num_classes; i++) free(m->class_names[i]);
    free(m->class_names);
    m->class_names = NULL;
}

static cnn_status meta_i64(cnn_dict *d, const char *key, int64_t v)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%" PRId64, v);
    return cnn_dict_set_meta(d, key, buf);
}

static cnn_status meta_u64(cnn_dict *d, const char *key, uint64_t v)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%" PRIu64, v);
    return cnn_dict_set_meta(d, key, buf);
}

static cnn_status meta_f64(cnn_dict *d, const char *key, double v)
{
    char buf[40];
    snprintf(buf, sizeof buf, "%.17g", v);
    return cnn_dict_set_meta(d, key, buf);
}

/* Class names joined by '\n' (names come from folder names, which cannot hold '/' but may
 * hold nearly anything else; a newline in a folder name is not supported). */
static cnn_status meta_names(cnn_dict *d, const tr_model_meta *mm)
{
    size_t len = 1;
    for (int i = 0; i < mm->num_classes; i++) len += strlen(mm->class_names[i]) + 1;
    char *s = malloc(len), *p = s;
    if (!s) return CNN_ERR_OUT_OF_MEMORY;
    for (int i = 0; i < mm->num_classes; i++) {
        size_t l = strlen(mm->class_names[i]);
        memcpy(p, mm->class_names[i], l);
        p += l;
        *p++ = i + 1 < mm->num_classes ? '\n' : '\0';
    }
    if (mm->num_classes == 0) *p = 0;
    cnn_status st = cnn_dict_set_meta(d, "class_names", s);
    free(s);
    return st;
}

bool tr_checkpoint_check_text(const train_opts *o, const tr_model_meta *mm, char *err,
                              size_t n)
{
    cnn_dict *d = NULL;
    if (cnn_dict_create(&d) != CNN_OK) {
        snprintf(err, n, "out of memory");
        return false;
    }
    bool ok = true;
    for (int i = 0; ok && i < mm->num_classes; i++)
        if (cnn_dict_set_meta(d, "class_names", mm->class_names[i]) != CNN_OK) {
            snprintf(err, n, "class %d's folder name '%s' is not UTF-8 text, which checkpoints "
                     "store class names as: rename it", i, mm->class_names[i]);
            ok = false;
        }
    if (ok && tr_opts_to_meta(o, d) != CNN_OK) {
        snprintf(err, n, "a checkpoint cannot store this run's options (%s): give --data as a "
                 "UTF-8 path, e.g. through a link", cnn_last_error());
        ok = false;
    }
    cnn_dict_destroy(&d);
    return ok;
}

#define TRY(x)                                                                                     \
    do {                                                                                           \
        if ((x) != CNN_OK) goto done;                                                              \
    } while (0)

bool tr_checkpoint_save(const char *path, cnn_model *model, const cnn_optim *opt,
                        const cnn_plateau *plateau, const train_opts *o, const tr_model_meta *mm,
                        const tr_state *s, char *err, size_t n)
{
    cnn_dict *d = NULL;
    char *hist = NULL;
    bool ok = false;
    cnn_clear_error();
    TRY(cnn_dict_create(&d));
    const cnn_dict *ms = cnn_model_state(model);
    for (int i = 0; i < cnn_dict_size(ms); i++)
        TRY(cnn_dict_set(d, cnn_dict_name(ms, i), cnn_dict_at(ms, i)));
    if (opt) TRY(cnn_optim_state_dict(opt, d));
    if (plateau) TRY(cnn_sched_plateau_state_dict(plateau, d));
    char buf[128];
    TRY(cnn_dict_set_meta(d, "format", FORMAT_TAG));
    TRY(cnn_dict_set_meta(d, "model", mm->model));
    TRY(meta_i64(d, "num_classes", mm->num_classes));
    TRY(meta_i64(d, "in_channels", mm->in_channels));
    TRY(meta_i64(d, "img_size", mm->img_size));
    TRY(meta_i64(d, "geometry", mm->geometry));
    snprintf(buf, sizeof buf, "%.9g,%.9g,%.9g", mm->mean[0], mm->mean[1], mm->mean[2]);
    TRY(cnn_dict_set_meta(d, "mean", buf));
    snprintf(buf, sizeof buf, "%.9g,%.9g,%.9g", mm->std[0], mm->std[1], mm->std[2]);
    TRY(cnn_dict_set_meta(d, "std", buf));
    TRY(meta_names(d, mm));
    TRY(meta_i64(d, "epoch", s->epoch));
    TRY(meta_i64(d, "batch", s->batch));
    TRY(meta_i64(d, "position", s->position));
    TRY(meta_i64(d, "step", s->step));
    TRY(meta_u64(d, "rng_seed", s->rng_seed));
    TRY(meta_u64(d, "rng_offset", s->rng_offset));
    TRY(meta_f64(d, "best_top1", s->best_top1));
    TRY(meta_i64(d, "best_epoch", s->best_epoch));
    TRY(meta_i64(d, "bad_epochs", s->bad_epochs));
    TRY(meta_f64(d, "part_loss", s->part_loss));
    TRY(meta_i64(d, "part_correct", s->part_correct));
    TRY(meta_i64(d, "part_seen", s->part_seen));
    TRY(meta_f64(d, "part_seconds", s->part_seconds));
    hist = tr_history_serialize(&s->history);
    if (!hist) goto done;
    TRY(cnn_dict_set_meta(d, "history", hist));
    TRY(tr_opts_to_meta(o, d));
    TRY(cnn_safetensors_save(path, d));
    ok = true;
done:
    if (!ok)
        snprintf(err, n, "saving checkpoint %s: %s", path,
                 cnn_last_error()[0] ? cnn_last_error() : "out of memory");
    free(hist);
    cnn_dict_destroy(&d);
    return ok;
}

/* Metadata readers: false when the key is absent or its value malformed. Integers beyond
 * +-2^53 are malformed: no run counts that far, and a counter read as INT64_MAX would overflow
 * at its next step. */
static bool get_i64(const cnn_dict *d, const char *key, int64_t *v)
{
    const char *s = cnn_dict_get_meta(d, key);
    char *end = NULL;
    errno = 0;
    long long x = s ? strtoll(s, &end, 10) : 0;
    if (!s || errno || end == s || *end || x > (1LL << 53) || x < -(1LL << 53)) return false;
    *v = x;
    return true;
}

static bool get_u64(const cnn_dict *d, const char *key, uint64_t *v)
{
    const char *s = cnn_dict_get_meta(d, key);
    char *end = NULL;
    errno = 0;
    unsigned long long x = s ? strtoull(s, &end, 10) : 0;
    if (!s || errno || end == s || *end || s[0] == '-') return false;
    *v = x;
    return true;
}

static bool get_f64(const cnn_dict *d, const char *key, double *v)
{
    const char *s = cnn_dict_get_meta(d, key);
    char *end = NULL;
    double x = s ? strtod(s, &end) : 0;
    if (!s || end == s || *end) return false;
    *v = x;
    return true;
}

static bool get_int(const cnn_dict *d, const char *key, int lo, int hi, int *v)
{
    int64_t x;
    if (!get_i64(d, key, &x) || x < lo || x > hi) return false;
    *v = (int)x;
    return true;
}

static bool get_f3(const cnn_dict *d, const char *key, float v[3])
{
    const char *s = cnn_dict_get_meta(d, key);
    int used = 0;
    return s && sscanf(s, "%f,%f,%f%n", &v[0], &v[1], &v[2], &used) == 3 && !s[used];
}

static bool split_names(const char *s, tr_model_meta *mm)
{
    mm->class_names = calloc((size_t)mm->num_classes, sizeof *mm->class_names);
    if (!mm->class_names) return false;
    for (int i = 0; i < mm->num_classes; i++) {
        const char *e = strchr(s, '\n');
        size_t l = e ? (size_t)(e - s) : strlen(s);
        if ((i + 1 < mm->num_classes) != (e != NULL)) return false;
        mm->class_names[i] = strndup(s, l);
        if (!mm->class_names[i]) return false;
        s += l + (e != NULL);
    }
    return true;
}

bool tr_checkpoint_open(const char *path, cnn_dict **d, tr_model_meta *mm, char *err, size_t n)
{
    memset(mm, 0, sizeof *mm);
    if (cnn_safetensors_load(path, d) != CNN_OK) {
        snprintf(err, n, "cannot load checkpoint: %s", cnn_last_error());
        return false;
    }
    const char *bad = NULL, *fmt = cnn_dict_get_meta(*d, "format"),
               *model = cnn_dict_get_meta(*d, "model"),
               *names = cnn_dict_get_meta(*d, "class_names");
    if (!fmt || strcmp(fmt, FORMAT_TAG))
        bad = "format (not a train_imagenet_subset checkpoint)";
    else if (!model || strlen(model) >= sizeof mm->model)
        bad = "model";
    else if (!get_int(*d, "num_classes", 1, 1 << 20, &mm->num_classes))
        bad = "num_classes";
    else if (!get_int(*d, "in_channels", 1, 4, &mm->in_channels))
        bad = "in_channels";
    else if (!get_int(*d, "img_size", 1, 1 << 16, &mm->img_size))
        bad = "img_size";
    else if (!get_int(*d, "geometry", 0, 1, &mm->geometry))
        bad = "geometry";
    else if (!get_f3(*d, "mean", mm->mean))
        bad = "mean";
    else if (!get_f3(*d, "std", mm->std))
        bad = "std";
    else if (!names || !split_names(names, mm))
        bad = "class_names";
    if (bad) {
        snprintf(err, n, "%s: checkpoint metadata '%s' is missing or malformed", path, bad);
        tr_model_meta_free(mm);
        cnn_dict_destroy(d);
        return false;
    }
    snprintf(mm->model, sizeof mm->model, "%s", model);
    return true;
}

bool tr_checkpoint_resumable(const cnn_dict *d) { return cnn_dict_get_meta(d, "optim.kind"); }

bool tr_checkpoint_state(const cnn_dict *d, tr_state *s, char *err, size_t n)
{
    const char *bad = NULL, *hist = cnn_dict_get_meta(d, "history");
    s->position = -1; /* absent in checkpoints written before it was recorded */
    if (!get_i64(d, "epoch", &s->epoch) || s->epoch < 0)
        bad = "epoch";
    else if (!get_i64(d, "batch", &s->batch) || s->batch < 0)
        bad = "batch";
    else if (!get_i64(d, "step", &s->step) || s->step < 0)
        bad = "step";
    else if (cnn_dict_get_meta(d, "position") && (!get_i64(d, "position", &s->position) ||
                                                  s->position < (s->batch ? 1 : 0)))
        bad = "position";
    else if (!get_u64(d, "rng_seed", &s->rng_seed))
        bad = "rng_seed";
    else if (!get_u64(d, "rng_offset", &s->rng_offset))
        bad = "rng_offset";
    else if (!get_f64(d, "best_top1", &s->best_top1))
        bad = "best_top1";
    else if (!get_i64(d, "best_epoch", &s->best_epoch))
        bad = "best_epoch";
    else if (!get_i64(d, "bad_epochs", &s->bad_epochs))
        bad = "bad_epochs";
    else if (!get_f64(d, "part_loss", &s->part_loss))
        bad = "part_loss";
    else if (!get_i64(d, "part_correct", &s->part_correct))
        bad = "part_correct";
    else if (!get_i64(d, "part_seen", &s->part_seen))
        bad = "part_seen";
    else if (!get_f64(d, "part_seconds", &s->part_seconds))
        bad = "part_seconds";
    else if (!hist || !tr_history_parse(&s->history, hist))
        bad = "history";
    if (bad) snprintf(err, n, "checkpoint metadata '%s' is missing or malformed", bad);
    return bad == NULL;
}

bool tr_checkpoint_load_model(cnn_model *model, const cnn_dict *d, char *err, size_t n)
{
    cnn_load_report rep;
    if (cnn_dict_load(cnn_model_state(model), d, false, &rep) != CNN_OK) {
        snprintf(err, n, "checkpoint does not fit the model: %s", cnn_last_error());
        return false;
    }
    if (rep.n_missing) {
        snprintf(err, n, "checkpoint lacks %d model tensor(s): %s", rep.n_missing, rep.missing);
        return false;
    }
    return true;
}
