/* predict.c — --predict: decodes each file with the evaluation transform the checkpoint was
 * trained with and prints its five most probable classes. The library decodes images only
 * through datasets, so the files are linked into a temporary one-class folder dataset. */
#include "predict.h"

#include "checkpoint.h"
#include "train_report.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct tmp_folder {
    char root[PATH_MAX], cls[PATH_MAX + 8];
    char **links;
    int n;
} tmp_folder;

static void tmp_folder_remove(tmp_folder *t)
{
    for (int i = 0; i < t->n; i++) {
        if (t->links[i]) unlink(t->links[i]);
        free(t->links[i]);
    }
    free(t->links);
    if (t->cls[0]) {
        rmdir(t->cls);
        *strrchr(t->cls, '/') = 0;
        rmdir(t->cls);
    }
    if (t->root[0]) rmdir(t->root);
}

/* root/p/x/<000000.ext ...>: numbered links keep the files in command-line order (the folder
 * dataset sorts by name). */
static bool tmp_folder_make(tmp_folder *t, char **files, int n, char *err, size_t en)
{
    const char *tmpdir = getenv("TMPDIR");
    if (!tmpdir || !tmpdir[0]) tmpdir = "/tmp";
    if ((size_t)snprintf(t->root, sizeof t->root, "%s/cnnpredict.XXXXXX", tmpdir) >=
        sizeof t->root) {
        snprintf(err, en, "TMPDIR is longer than a path may be (%zu bytes)", strlen(tmpdir));
        t->root[0] = 0;
        return false;
    }
    if (!mkdtemp(t->root)) {
        snprintf(err, en, "cannot create a temporary folder in %s: %s", t->root, strerror(errno));
        t->root[0] = 0;
        return false;
    }
    snprintf(t->cls, sizeof t->cls, "%s/p", t->root);
    if (mkdir(t->cls, 0700) != 0) goto fail;
    snprintf(t->cls, sizeof t->cls, "%s/p/x", t->root);
    if (mkdir(t->cls, 0700) != 0) goto fail;
    t->links = calloc((size_t)n, sizeof *t->links);
    if (!t->links) goto fail;
    for (int i = 0; i < n; i++, t->n++) {
        char real[PATH_MAX];
        if (!realpath(files[i], real)) {
            snprintf(err, en, "%s: %s", files[i], strerror(errno));
            return false;
        }
        const char *dot = strrchr(files[i], '.'), *slash = strrchr(files[i], '/');
        if (!dot || (slash && dot < slash) || strlen(dot) > 8) dot = ".unknown";
        size_t len = strlen(t->cls) + 32;
        t->links[i] = malloc(len);
        if (!t->links[i]) goto fail;
        snprintf(t->links[i], len, "%s/%06d%s", t->cls, i, dot);
        if (symlink(real, t->links[i]) != 0) goto fail;
    }
    return true;
fail:
    snprintf(err, en, "temporary folder %s: %s", t->root, strerror(errno ? errno : ENOMEM));
    return false;
}

static int cmp_desc(const void *a, const void *b, void *p)
{
    const float *v = p;
    int i = *(const int *)a, j = *(const int *)b;
    return v[i] < v[j] ? 1 : v[i] > v[j] ? -1 : i - j;
}

/* Prints msg with the temporary link's path replaced by the user's file name. */
static void print_read_error(const char *file, const char *link, const char *msg)
{
    const char *at = strstr(msg, link);
    if (at)
        printf("%s: cannot read: %.*s%s%s\n", file, (int)(at - msg), msg, file, at + strlen(link));
    else
        printf("%s: cannot read: %s\n", file, msg);
}

/* Prints one file's top-5; false on failure (err set: a library error, or probabilities that
 * are not finite, which a checkpoint with non-finite weights gives: there is nothing to rank). */
static bool classify(cnn_model *m, const cnn_dataset *ds, int64_t i, const cnn_transform *t,
                     const tr_model_meta *mm, cnn_device dev, const char *file, const char *link,
                     float *img, bool *bad, char *err, size_t n)
{
    int S = mm->img_size, K = mm->num_classes;
    if (cnn_dataset_get(ds, i, t, 0, 0, img, NULL) != CNN_OK) {
        print_read_error(file, link, cnn_last_error());
        *bad = true;
        return true;
    }
    cnn_tensor *x = NULL, *xd = NULL, *logits = NULL, *prob = NULL;
    float *p = malloc((size_t)K * sizeof *p);
    int *idx = malloc((size_t)K * sizeof *idx);
    bool ok =
        p && idx &&
        cnn_tensor_from_data(CNN_SHAPE(1, mm->in_channels, S, S), img, CNN_CPU, &x) == CNN_OK &&
        cnn_tensor_to(x, dev, &xd) == CNN_OK &&
        cnn_model_forward(m, xd, false, &logits) == CNN_OK &&
        cnn_softmax(logits, 1, &prob) == CNN_OK && cnn_tensor_read(prob, p, (size_t)K) == CNN_OK;
    if (!ok) snprintf(err, n, "%s: %s", file, p && idx ? cnn_last_error() : "out of memory");
    for (int k = 0; ok && k < K; k++)
        if (!isfinite(p[k])) {
            snprintf(err, n, "%s: the class probabilities are not finite (class %d: %s): the "
                     "checkpoint's weights give non-finite outputs", file, k,
                     isnan(p[k]) ? "nan" : "inf");
            ok = false;
        }
    if (ok) {
        for (int k = 0; k < K; k++) idx[k] = k;
        qsort_r(idx, (size_t)K, sizeof *idx, cmp_desc, p);
        printf("%s:\n", file);
        for (int k = 0; k < K && k < 5; k++) {
            printf("  %d. ", k + 1);
            tr_print_cell(stdout, mm->class_names[idx[k]], 32, false);
            printf(" %6.2f%%\n", 100.0 * p[idx[k]]);
        }
    }
    free(p);
    free(idx);
    cnn_tensor_free(&x);
    cnn_tensor_free(&xd);
    cnn_tensor_free(&logits);
    cnn_tensor_free(&prob);
    return ok;
}

bool tr_predict(const train_opts *o, cnn_device dev, char *err, size_t n)
{
    tr_model_meta mm;
    cnn_dict *d = NULL;
    cnn_model *m = NULL;
    cnn_dataset *ds = NULL;
    tmp_folder tmp = {0};
    float *img = NULL;
    bool ok = false, bad = false;
    char **files = malloc((size_t)(o->n_files + 1) * sizeof *files);
    if (!files) {
        snprintf(err, n, "out of memory");
        return false;
    }
    files[0] = (char *)o->predict;
    for (int i = 0; i < o->n_files; i++) files[i + 1] = o->files[i];
    int nf = o->n_files + 1;
    /* Each file named as the user gave it, not as its link in the temporary folder: a folder
     * or a FIFO named like an image would be met there under another name. */
    for (int i = 0; i < nf; i++) {
        struct stat sb;
        const char *why = !cnn_imagefolder_is_image_name(files[i])
                              ? "not a .jpg, .jpeg, .png, .bmp, .ppm, .pgm, .pbm or .pnm file"
                          : stat(files[i], &sb) != 0 ? strerror(errno)
                          : !S_ISREG(sb.st_mode)     ? "not a regular file"
                                                     : NULL;
        if (why) {
            snprintf(err, n, "%s: %s", files[i], why);
            free(files);
            return false;
        }
    }
    if (!tr_checkpoint_open(o->checkpoint, &d, &mm, err, n)) {
        free(files);
        return false;
    }
    if (cnn_model_create(mm.model, mm.num_classes, mm.in_channels, &m) != CNN_OK) {
        snprintf(err, n, "%s: model %s: %s", o->checkpoint, mm.model, cnn_last_error());
        goto done;
    }
    if (!tr_checkpoint_load_model(m, d, err, n)) goto done;
    cnn_dict_destroy(&d);
    if (cnn_model_to(m, dev) != CNN_OK) {
        snprintf(err, n, "moving the model to the device: %s", cnn_last_error());
        goto done;
    }
    if (!tmp_folder_make(&tmp, files, nf, err, n)) goto done;
    if (cnn_imagefolder_create(tmp.root, "p", mm.in_channels, &ds) != CNN_OK ||
        cnn_dataset_size(ds) != nf) {
        snprintf(err, n, "image files: %s",
                 cnn_dataset_size(ds) != nf && ds ? "a file is missing from the temporary folder"
                                                  : cnn_last_error());
        goto done;
    }
    cnn_transform t = cnn_transform_default(ds, false, mm.img_size);
    t.geometry = (cnn_geometry)mm.geometry;
    memcpy(t.mean, mm.mean, sizeof t.mean);
    memcpy(t.std, mm.std, sizeof t.std);
    img = malloc((size_t)mm.in_channels * mm.img_size * mm.img_size * sizeof *img);
    if (!img) {
        snprintf(err, n, "out of memory");
        goto done;
    }
    bool was = cnn_set_grad_enabled(false);
    ok = true;
    for (int i = 0; i < nf && ok; i++) {
        ok = classify(m, ds, i, &t, &mm, dev, files[i], tmp.links[i], img, &bad, err, n);
    }
    cnn_set_grad_enabled(was);
    if (ok && bad) {
        ok = false;
        snprintf(err, n, "some image(s) could not be read");
    }
done:
    free(img);
    free(files);
    cnn_dataset_destroy(&ds);
    tmp_folder_remove(&tmp);
    cnn_model_destroy(&m);
    cnn_dict_destroy(&d);
    tr_model_meta_free(&mm);
    return ok;
}
