/* dict.c — ordered name -> tensor maps with string metadata: the state dicts that models
 * expose, optimizers fill and checkpoints read and write. Lookup is linear: dicts hold at most
 * a few thousand entries and are walked once per save/load. */
#include "internal.h"
#include "json.h"

typedef struct { char *name; cnn_tensor *t; } dict_entry;
typedef struct { char *key, *value; } meta_entry;

struct cnn_dict {
    dict_entry *e;
    int n, cap;
    meta_entry *m;
    int nm, capm;
};

cnn_status cnn_dict_create(cnn_dict **out)
{
    CNN_CHECK(out, CNN_ERR_INVALID_ARG, "dict_create: out is NULL");
    *out = calloc(1, sizeof **out);
    CNN_CHECK(*out, CNN_ERR_OUT_OF_MEMORY, "dict_create: out of host memory");
    return CNN_OK;
}

void cnn_dict_destroy(cnn_dict **d)
{
    if (!d || !*d) return;
    for (int i = 0; i < (*d)->n; i++) {
        free((*d)->e[i].name);
        cnn_tensor_free(&(*d)->e[i].t);
    }
    for (int i = 0; i < (*d)->nm; i++) {
        free((*d)->m[i].key);
        free((*d)->m[i].value);
    }
    free((*d)->e);
    free((*d)->m);
    free(*d);
    *d = NULL;
}

static int find(const cnn_dict *d, const char *name)
{
    for (int i = 0; i < d->n; i++)
        if (strcmp(d->e[i].name, name) == 0) return i;
    return -1;
}

static int find_meta(const cnn_dict *d, const char *key)
{
    for (int i = 0; i < d->nm; i++)
        if (strcmp(d->m[i].key, key) == 0) return i;
    return -1;
}

/* arr (capacity *cap elements of esize bytes; `first` when empty) grown to hold need, by
 * doubling: the new array, or NULL (arr and *cap unchanged) when host memory ran out. */
static void *grown(void *arr, int *cap, int need, size_t esize, int first)
{
    int c = *cap ? *cap : first;
    while (c < need) c *= 2;
    void *p = realloc(arr, (size_t)c * esize);
    if (p) *cap = c;
    return p;
}

/* Makes room for `more` entries and `more_meta` metadata (the arrays grow; nothing else does);
 * `what` names the caller in the error. */
static cnn_status reserve(cnn_dict *d, int more, int more_meta, const char *what)
{
    if (d->n + more > d->cap) {
        dict_entry *e = grown(d->e, &d->cap, d->n + more, sizeof *e, 32);
        CNN_CHECK(e, CNN_ERR_OUT_OF_MEMORY, "%s: out of host memory", what);
        d->e = e;
    }
    if (d->nm + more_meta > d->capm) {
        meta_entry *m = grown(d->m, &d->capm, d->nm + more_meta, sizeof *m, 16);
        CNN_CHECK(m, CNN_ERR_OUT_OF_MEMORY, "%s: out of host memory", what);
        d->m = m;
    }
    return CNN_OK;
}

cnn_status cnn_dict_set(cnn_dict *d, const char *name, cnn_tensor *t)
{
    CNN_CHECK(d && name && t, CNN_ERR_INVALID_ARG, "dict_set: NULL argument");
    CNN_CHECK(name[0], CNN_ERR_INVALID_ARG, "dict_set: empty name");
    int i = find(d, name);
    if (i >= 0) {
        cnn_tensor *old = d->e[i].t;
        d->e[i].t = cnn_tensor_retain(t);
        cnn_tensor_free(&old);
        return CNN_OK;
    }
    CNN_TRY(reserve(d, 1, 0, "dict_set"));
    char *copy = strdup(name);
    CNN_CHECK(copy, CNN_ERR_OUT_OF_MEMORY, "dict_set: out of host memory");
    d->e[d->n++] = (dict_entry){copy, cnn_tensor_retain(t)};
    return CNN_OK;
}

cnn_tensor *cnn_dict_get(const cnn_dict *d, const char *name)
{
    if (!d || !name) return NULL;
    int i = find(d, name);
    return i >= 0 ? d->e[i].t : NULL;
}

int cnn_dict_size(const cnn_dict *d) { return d ? d->n : 0; }
const char *cnn_dict_name(const cnn_dict *d, int i)
{
    return (d && i >= 0 && i < d->n) ? d->e[i].name : NULL;
}
cnn_tensor *cnn_dict_at(const cnn_dict *d, int i)
{
    return (d && i >= 0 && i < d->n) ? d->e[i].t : NULL;
}

cnn_status cnn_dict_set_meta(cnn_dict *d, const char *key, const char *value)
{
    CNN_CHECK(d && key && value, CNN_ERR_INVALID_ARG, "dict_set_meta: NULL argument");
    /* safetensors' metadata is JSON text: refused here, where the caller can say which. */
    CNN_CHECK(cnn_utf8_valid(key, strlen(key)), CNN_ERR_INVALID_ARG,
              "dict_set_meta: a key is not valid UTF-8 text");
    CNN_CHECK(cnn_utf8_valid(value, strlen(value)), CNN_ERR_INVALID_ARG,
              "dict_set_meta: the value of '%s' is not valid UTF-8 text", key);
    char *v = strdup(value);
    CNN_CHECK(v, CNN_ERR_OUT_OF_MEMORY, "dict_set_meta: out of host memory");
    int i = find_meta(d, key);
    if (i >= 0) {
        free(d->m[i].value);
        d->m[i].value = v;
        return CNN_OK;
    }
    cnn_status st = reserve(d, 0, 1, "dict_set_meta");
    if (st != CNN_OK) {
        free(v);
        return st;
    }
    char *k = strdup(key);
    if (!k) {
        free(v);
        return cnn_error(CNN_ERR_OUT_OF_MEMORY, "dict_set_meta: out of host memory");
    }
    d->m[d->nm++] = (meta_entry){k, v};
    return CNN_OK;
}

const char *cnn_dict_get_meta(const cnn_dict *d, const char *key)
{
    int i = d && key ? find_meta(d, key) : -1;
    return i >= 0 ? d->m[i].value : NULL;
}

int cnn_dict_meta_size(const cnn_dict *d) { return d ? d->nm : 0; }
const char *cnn_dict_meta_key(const cnn_dict *d, int i)
{
    return (d && i >= 0 && i < d->nm) ? d->m[i].key : NULL;
}
const char *cnn_dict_meta_value(const cnn_dict *d, int i)
{
    return (d && i >= 0 && i < d->nm) ? d->m[i].value : NULL;
}

cnn_status cnn_dict_move_into(cnn_dict *dst, cnn_dict *src)
{
    CNN_CHECK(dst && src && dst != src, CNN_ERR_INVALID_ARG, "dict_move_into: bad argument");
    CNN_TRY(reserve(dst, src->n, src->nm, "dict_move_into"));
    /* Nothing below can fail: the strings and tensors change owners. */
    for (int i = 0; i < src->n; i++) {
        int j = find(dst, src->e[i].name);
        if (j < 0) {
            dst->e[dst->n++] = src->e[i];
            continue;
        }
        cnn_tensor_free(&dst->e[j].t);
        dst->e[j].t = src->e[i].t;
        free(src->e[i].name);
    }
    for (int i = 0; i < src->nm; i++) {
        int j = find_meta(dst, src->m[i].key);
        if (j < 0) {
            dst->m[dst->nm++] = src->m[i];
            continue;
        }
        free(dst->m[j].value);
        dst->m[j].value = src->m[i].value;
        free(src->m[i].key);
    }
    src->n = src->nm = 0;
    return CNN_OK;
}

/* Appends name to a comma-separated list, ending it with "..." when it no longer fits. A name
 * goes in only if ", ..." (5 characters and the NUL) still fits after it. */
static void list_add(char *buf, size_t cap, const char *name)
{
    size_t len = strlen(buf);
    if (len >= 3 && strcmp(buf + len - 3, "...") == 0) return;
    size_t need = strlen(name) + (len ? 2 : 0);
    if (len + need + 5 >= cap) {
        snprintf(buf + len, cap - len, "%s...", len ? ", " : "");
        return;
    }
    snprintf(buf + len, cap - len, "%s%s", len ? ", " : "", name);
}

/* s's values in dtype dt, as a new CPU tensor (*out), for a tensor in another dtype (a CUDA one
 * is brought to the host first); an error names the tensor. */
static cnn_status converted(const char *name, const cnn_tensor *s, cnn_dtype dt, cnn_tensor **out)
{
    cnn_tensor *host = NULL;
    cnn_status st = cnn_on_cuda(s) ? cnn_tensor_to(s, CNN_CPU, &host) : CNN_OK;
    if (st == CNN_OK) st = cnn_tensor_to_dtype(host ? host : s, dt, out);
    cnn_tensor_free(&host);
    if (st != CNN_OK) return cnn_error_prefix(st, "load: tensor '%s'", name);
    return CNN_OK;
}

/* The missing entry keeps its value, as PyTorch's module keeps its own counter. */
bool cnn_dict_optional_name(const char *name)
{
    const char *last = strrchr(name, '.');
    return !strcmp(last ? last + 1 : name, "num_batches_tracked");
}

/* Checks src's tensors against dst's (the report's names; a shape that differs is an error)
 * and converts those in another dtype: conv[i] for dst's entry i, else NULL. */
static cnn_status check_load(const cnn_dict *dst, const cnn_dict *src, cnn_load_report *r,
                             cnn_tensor **conv)
{
    for (int i = 0; i < dst->n; i++) {
        cnn_tensor *s = cnn_dict_get(src, dst->e[i].name);
        if (!s) {
            if (cnn_dict_optional_name(dst->e[i].name)) continue;
            r->n_missing++;
            list_add(r->missing, sizeof r->missing, dst->e[i].name);
            continue;
        }
        cnn_tensor *t = dst->e[i].t;
        /* PyTorch loads a (1,) tensor into a scalar (files from PyTorch 0.3). */
        bool scalar_of_one = t->shape.ndim == 0 && s->shape.ndim == 1 && s->shape.d[0] == 1;
        CNN_CHECK(cnn_shape_equal(s->shape, t->shape) || scalar_of_one, CNN_ERR_SHAPE,
                  "load: tensor '%s' has shape %s in the checkpoint but %s in the model",
                  dst->e[i].name, cnn_shape_of(s), cnn_shape_of(t));
        if (s->dtype != t->dtype) CNN_TRY(converted(dst->e[i].name, s, t->dtype, &conv[i]));
        if (scalar_of_one) {
            const cnn_tensor *from = conv[i] ? conv[i] : s;
            cnn_tensor *v = NULL;
            CNN_TRY(cnn_tensor_view(from, CNN_SCALAR, NULL, from->offset, &v));
            cnn_tensor_free(&conv[i]);
            conv[i] = v;
        }
    }
    for (int i = 0; i < src->n; i++)
        if (find(dst, src->e[i].name) < 0) {
            r->n_unexpected++;
            list_add(r->unexpected, sizeof r->unexpected, src->e[i].name);
        }
    return CNN_OK;
}

cnn_status cnn_dict_load(cnn_dict *dst, const cnn_dict *src, bool strict, cnn_load_report *report)
{
    CNN_CHECK(dst && src, CNN_ERR_INVALID_ARG, "dict_load: NULL argument");
    cnn_load_report r;
    memset(&r, 0, sizeof r);
    /* Validate (and convert) everything before copying anything, so a failure changes
     * nothing. */
    cnn_tensor **conv = calloc((size_t)dst->n + 1, sizeof *conv);
    CNN_CHECK(conv, CNN_ERR_OUT_OF_MEMORY, "load: out of host memory");
    cnn_status st = check_load(dst, src, &r, conv);
    if (st == CNN_OK && report) *report = r;
    if (st == CNN_OK && strict && (r.n_missing || r.n_unexpected))
        st = cnn_error(CNN_ERR_NOT_FOUND, "load (strict): %d missing tensor(s)%s%s, %d "
                       "unexpected tensor(s)%s%s", r.n_missing, r.n_missing ? ": " : "",
                       r.missing, r.n_unexpected, r.n_unexpected ? ": " : "", r.unexpected);
    for (int i = 0; st == CNN_OK && i < dst->n; i++) {
        cnn_tensor *s = conv[i] ? conv[i] : cnn_dict_get(src, dst->e[i].name);
        if (s) st = cnn_tensor_copy_(dst->e[i].t, s);
    }
    for (int i = 0; i < dst->n; i++) cnn_tensor_free(&conv[i]);
    free(conv);
    return st;
}
