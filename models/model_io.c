/* model_io.c — a model's state to and from safetensors files. Kept apart from model.c so that
 * programs that never touch files do not link the checkpoint code. */
#include "model.h"

cnn_status cnn_model_save(const cnn_model *m, const char *path)
{
    CNN_CHECK(m && path, CNN_ERR_INVALID_ARG, "model_save: NULL argument");
    return cnn_safetensors_save(path, m->state);
}

cnn_status cnn_model_load(cnn_model *m, const char *path, bool strict, cnn_load_report *report)
{
    CNN_CHECK(m && path, CNN_ERR_INVALID_ARG, "model_load: NULL argument");
    cnn_dict *src = NULL;
    CNN_TRY(cnn_safetensors_load(path, &src));
    cnn_status st = cnn_dict_load(m->state, src, strict, report);
    cnn_dict_destroy(&src);
    if (st != CNN_OK) return cnn_error_prefix(st, "%s: loading %s", m->name, path);
    return CNN_OK;
}

/* ---- fine-tuning: weights of a model trained elsewhere --------------------------------------- */
/* The names fine-tuning may treat apart: the first conv's weight and the last linear layer's
 * weight and bias (NULL where the model has none). */
static void adaptable_names(const cnn_model *m, const char **conv, const char **cls_w,
                            const char **cls_b)
{
    *conv = *cls_w = *cls_b = NULL;
    for (int i = 0; i < m->n_steps; i++) {
        const mstep *s = &m->steps[i];
        if (s->kind == MS_CONV && !*conv) *conv = cnn_dict_name(m->state, s->t0);
        if (s->kind == MS_LINEAR) {
            *cls_w = cnn_dict_name(m->state, s->t0);
            *cls_b = s->bias ? cnn_dict_name(m->state, s->t0 + 1) : NULL;
        }
    }
}

static bool same_name(const char *a, const char *b) { return a && b && !strcmp(a, b); }

/* Whether two shapes differ only in their first dimension (a classifier's class count). */
static bool differ_in_classes(cnn_shape a, cnn_shape b)
{
    if (a.ndim != b.ndim || a.ndim < 1 || a.d[0] == b.d[0]) return false;
    for (int k = 1; k < a.ndim; k++)
        if (a.d[k] != b.d[k]) return false;
    return true;
}

/* w: (K, 3, R, S) CPU, any float format -> *out: (K, 1, R, S) F32, the sum over the input
 * channels (in F32, as timm sums a half-precision conv). */
static cnn_status sum_input_channels(const cnn_tensor *w, cnn_tensor **out)
{
    const int64_t k = w->shape.d[0], rs = w->shape.d[2] * w->shape.d[3];
    cnn_tensor *c = NULL;
    CNN_TRY(cnn_tensor_to_dtype(w, CNN_F32, &c));
    cnn_status st = cnn_tensor_empty(CNN_SHAPE(k, 1, w->shape.d[2], w->shape.d[3]), CNN_F32,
                                     CNN_CPU, out);
    if (st == CNN_OK) {
        const float *src = cnn_f32(c);
        float *dst = cnn_f32(*out);
        for (int64_t i = 0; i < k; i++)
            for (int64_t j = 0; j < rs; j++)
                dst[i * rs + j] = src[(i * 3 + 0) * rs + j] + src[(i * 3 + 1) * rs + j] +
                                  src[(i * 3 + 2) * rs + j];
    }
    cnn_tensor_free(&c);
    return st;
}

static void add_name(char *list, size_t n, const char *name)
{
    size_t len = strlen(list);
    if (len + 1 < n) snprintf(list + len, n - len, "%s%s", len ? ", " : "", name);
}

cnn_status cnn_model_load_pretrained(cnn_model *m, const char *path,
                                     cnn_pretrained_report *report)
{
    CNN_CHECK(m && path, CNN_ERR_INVALID_ARG, "model_load_pretrained: NULL argument");
    cnn_pretrained_report r = {0};
    cnn_dict *src = NULL, *use = NULL;
    cnn_tensor *summed = NULL;
    const char *conv, *cls_w, *cls_b;
    adaptable_names(m, &conv, &cls_w, &cls_b);
    CNN_TRY(cnn_safetensors_load(path, &src));
    cnn_status st = cnn_dict_create(&use);
    for (int i = 0; st == CNN_OK && i < cnn_dict_size(m->state); i++) {
        const char *name = cnn_dict_name(m->state, i);
        const cnn_tensor *t = cnn_dict_at(m->state, i);
        cnn_tensor *f = cnn_dict_get(src, name);
        if (!f && cnn_dict_optional_name(name)) {
            continue; /* kept, as cnn_dict_load keeps it */
        } else if (!f) {
            st = cnn_error(CNN_ERR_NOT_FOUND, "the file has no tensor '%s' (weights of another "
                           "model?)", name);
        } else if (cnn_shape_equal(f->shape, t->shape)) {
            st = cnn_dict_set(use, name, f);
            r.n_loaded++;
        } else if ((same_name(name, cls_w) || same_name(name, cls_b)) &&
                   differ_in_classes(f->shape, t->shape)) {
            r.n_fresh++;
            r.file_classes = (int)f->shape.d[0];
            add_name(r.fresh, sizeof r.fresh, name);
        } else if (same_name(name, conv) && cnn_dtype_is_float(f->dtype) && f->shape.ndim == 4 &&
                   f->shape.d[1] == 3 && t->shape.d[1] == 1 && f->shape.d[0] == t->shape.d[0] &&
                   f->shape.d[2] == t->shape.d[2] && f->shape.d[3] == t->shape.d[3]) {
            st = sum_input_channels(f, &summed);
            if (st == CNN_OK) st = cnn_dict_set(use, name, summed);
            cnn_tensor_free(&summed);
            snprintf(r.adapted, sizeof r.adapted, "%s", name);
            r.n_loaded++;
        } else {
            st = cnn_error(CNN_ERR_SHAPE, "tensor '%s' is %s in the file but %s in the model",
                           name, cnn_shape_of(f), cnn_shape_of(t));
        }
    }
    for (int i = 0; st == CNN_OK && i < cnn_dict_size(src); i++) {
        const char *name = cnn_dict_name(src, i);
        if (!cnn_dict_get(m->state, name) && strncmp(name, "optim.", 6))
            st = cnn_error(CNN_ERR_NOT_FOUND, "the file has a tensor '%s' that the model lacks "
                           "(weights of another model?)", name);
    }
    /* Checks every shape and dtype before it copies anything. */
    if (st == CNN_OK) st = cnn_dict_load(m->state, use, false, NULL);
    cnn_dict_destroy(&use);
    cnn_dict_destroy(&src);
    if (st != CNN_OK) return cnn_error_prefix(st, "%s: pretrained weights %s", m->name, path);
    if (report) *report = r;
    return CNN_OK;
}
