/* safetensors.c — checkpoints in Hugging Face's safetensors format, read back with the whole
 * header validated before any tensor is allocated (the writer is safetensors_save.c). Files are
 * untrusted input: nothing here may crash, leak or read out of bounds on them, and nothing
 * prints. */
#include "safetensors.h"

static const st_dtype DTYPES[] = {
    {"F32", 32, CNN_F32},     {"F16", 16, CNN_F16},     {"BF16", 16, CNN_BF16},
    {"I64", 64, CNN_I64},     {"I32", 32, CNN_I32},     {"F64", 64, CNN_F64},
    {"U64", 64, -1},          {"U32", 32, -1},          {"I16", 16, -1},
    {"U16", 16, -1},          {"I8", 8, -1},            {"U8", 8, -1},
    {"BOOL", 8, -1},          {"F8_E5M2", 8, -1},       {"F8_E4M3", 8, -1},
    {"F8_E8M0", 8, -1},       {"F6_E2M3", 6, -1},       {"F6_E3M2", 6, -1},
    {"F4", 4, -1},            {"C64", 64, -1},
};

const st_dtype *cnn_st_dtype_by_name(const char *s, size_t n)
{
    for (size_t i = 0; i < sizeof DTYPES / sizeof DTYPES[0]; i++)
        if (strlen(DTYPES[i].name) == n && memcmp(DTYPES[i].name, s, n) == 0) return &DTYPES[i];
    return NULL;
}

const st_dtype *cnn_st_dtype_of(cnn_dtype dt)
{
    for (size_t i = 0; i < sizeof DTYPES / sizeof DTYPES[0]; i++)
        if (DTYPES[i].dtype == (int)dt) return &DTYPES[i];
    return NULL;
}

typedef struct st_entry {
    const cnn_json *node; /* the member in the header: its key is the name */
    const st_dtype *dt;
    int ndim;             /* the true rank, even above CNN_MAX_DIMS */
    uint64_t d[CNN_MAX_DIMS];
    uint64_t begin, end;
    cnn_tensor *t;
} st_entry;

typedef struct st_reader {
    const char *path;
    FILE *f;
    uint64_t file_size, header_len, data_len;
    char *header;
    cnn_json *root;
    st_entry *e;
    st_entry **sorted; /* e by data offsets */
    size_t n;
    const cnn_json *meta; /* the __metadata__ object, or NULL */
} st_reader;

static cnn_status fmt_err(const st_reader *r, cnn_status s, const cnn_json *tensor,
                          const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static cnn_status fmt_err(const st_reader *r, cnn_status s, const cnn_json *tensor,
                          const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (tensor)
        return cnn_error(s, "safetensors_load: '%s': tensor '%.200s': %s", r->path, tensor->key,
                         what);
    return cnn_error(s, "safetensors_load: '%s': %s", r->path, what);
}

static cnn_status io_err(const st_reader *r, const char *what, int err)
{
    char eb[128];
    if (err == 0)
        return cnn_error(CNN_ERR_IO, "safetensors_load: '%s': %s: file ended early", r->path, what);
    return cnn_error(cnn_errno_status(err), "safetensors_load: '%s': %s: %s", r->path, what,
                     cnn_st_errstr(err, eb, sizeof eb));
}

static cnn_status read_exact(st_reader *r, void *dst, size_t n, const char *what)
{
    if (n == 0) return CNN_OK;
    errno = 0;
    if (fread(dst, 1, n, r->f) != n) return io_err(r, what, ferror(r->f) ? errno : 0);
    return CNN_OK;
}

static cnn_status read_header(st_reader *r)
{
    struct stat sb;
    if (fstat(fileno(r->f), &sb) != 0) return io_err(r, "cannot stat", errno);
    if (!S_ISREG(sb.st_mode))
        return cnn_error(CNN_ERR_IO, "safetensors_load: '%s': not a regular file%s", r->path,
                         S_ISDIR(sb.st_mode) ? " (a folder)" : "");
    r->file_size = (uint64_t)sb.st_size;
    if (r->file_size < 8)
        return fmt_err(r, CNN_ERR_FORMAT, NULL, "file is %llu bytes, shorter than the 8-byte "
                       "header length", (unsigned long long)r->file_size);
    unsigned char len8[8];
    CNN_TRY(read_exact(r, len8, 8, "reading the header length"));
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | len8[i];
    if (n > ST_MAX_HEADER)
        return fmt_err(r, CNN_ERR_FORMAT, NULL, "header length %llu is absurd (over the %llu "
                       "byte limit)", (unsigned long long)n, ST_MAX_HEADER);
    if (n > r->file_size - 8)
        return fmt_err(r, CNN_ERR_FORMAT, NULL, "header length %llu is larger than the %llu "
                       "bytes left in the file", (unsigned long long)n,
                       (unsigned long long)(r->file_size - 8));
    r->header_len = n;
    r->data_len = r->file_size - 8 - n;
    r->header = malloc((size_t)n + 1);
    if (!r->header)
        return fmt_err(r, CNN_ERR_OUT_OF_MEMORY, NULL, "out of host memory for a %llu-byte "
                       "header", (unsigned long long)n);
    CNN_TRY(read_exact(r, r->header, (size_t)n, "reading the header"));
    cnn_status st = cnn_json_parse(r->header, (size_t)n, ST_MAX_DEPTH, ST_MAX_VALUES, &r->root);
    if (st != CNN_OK)
        return cnn_error_prefix(st, "safetensors_load: '%s': header", r->path);
    if (r->root->type != CNN_JSON_OBJECT)
        return fmt_err(r, CNN_ERR_FORMAT, NULL, "header is %s, expected a JSON object",
                       cnn_json_type_name(r->root));
    return CNN_OK;
}

static bool has_nul(const char *s, size_t n) { return memchr(s, '\0', n) != NULL; }

static int cmp_keys(const void *a, const void *b)
{
    const cnn_json *x = *(const cnn_json *const *)a, *y = *(const cnn_json *const *)b;
    size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
    int c = memcmp(x->key, y->key, n);
    if (c) return c;
    return x->key_len < y->key_len ? -1 : x->key_len > y->key_len;
}

/* Finds a repeated key among an object's members in O(n log n): hostile headers may hold
 * millions of them. */
static const cnn_json *find_duplicate(const st_reader *r, const cnn_json *obj, cnn_status *st)
{
    *st = CNN_OK;
    if (obj->n_children < 2) return NULL;
    const cnn_json **v = malloc(obj->n_children * sizeof *v);
    if (!v) {
        *st = fmt_err(r, CNN_ERR_OUT_OF_MEMORY, NULL, "out of host memory checking the names");
        return NULL;
    }
    size_t k = 0;
    for (const cnn_json *c = obj->child; c; c = c->next) v[k++] = c;
    qsort(v, k, sizeof *v, cmp_keys);
    const cnn_json *dup = NULL;
    for (size_t i = 1; i < k && !dup; i++)
        if (cmp_keys(&v[i - 1], &v[i]) == 0) dup = v[i];
    free(v);
    return dup;
}

static cnn_status parse_metadata(st_reader *r, const cnn_json *m)
{
    if (r->meta)
        return fmt_err(r, CNN_ERR_FORMAT, NULL, "\"__metadata__\" appears twice");
    if (m->type == CNN_JSON_NULL) return CNN_OK;
    if (m->type != CNN_JSON_OBJECT)
        return fmt_err(r, CNN_ERR_FORMAT, NULL, "\"__metadata__\" is %s, expected an object of "
                       "strings", cnn_json_type_name(m));
    for (const cnn_json *c = m->child; c; c = c->next)
        if (c->type != CNN_JSON_STRING)
            return fmt_err(r, CNN_ERR_FORMAT, NULL, "\"__metadata__\" value of '%.200s' is %s, "
                           "expected a string", c->key, cnn_json_type_name(c));
    cnn_status st;
    const cnn_json *dup = find_duplicate(r, m, &st);
    CNN_TRY(st);
    if (dup)
        return fmt_err(r, CNN_ERR_FORMAT, NULL, "\"__metadata__\" key '%.200s' appears twice",
                       dup->key);
    r->meta = m;
    return CNN_OK;
}

/* Checks one tensor's description: fields, types, shape, byte length and bounds. */
static cnn_status parse_entry(st_reader *r, const cnn_json *m, st_entry *e)
{
    e->node = m;
    if (m->type != CNN_JSON_OBJECT)
        return fmt_err(r, CNN_ERR_FORMAT, m, "description is %s, expected an object",
                       cnn_json_type_name(m));
    const cnn_json *dtype = NULL, *shape = NULL, *offs = NULL;
    for (const cnn_json *c = m->child; c; c = c->next) {
        const cnn_json **slot = strcmp(c->key, "dtype") == 0          ? &dtype
                                : strcmp(c->key, "shape") == 0        ? &shape
                                : strcmp(c->key, "data_offsets") == 0 ? &offs : NULL;
        if (!slot || c->key_len != strlen(c->key)) continue; /* unknown fields are ignored */
        if (*slot) return fmt_err(r, CNN_ERR_FORMAT, m, "field \"%s\" appears twice", c->key);
        *slot = c;
    }
    if (!dtype || !shape || !offs)
        return fmt_err(r, CNN_ERR_FORMAT, m, "missing field \"%s\"",
                       !dtype ? "dtype" : !shape ? "shape" : "data_offsets");
    if (dtype->type != CNN_JSON_STRING)
        return fmt_err(r, CNN_ERR_FORMAT, m, "\"dtype\" is %s, expected a string",
                       cnn_json_type_name(dtype));
    e->dt = cnn_st_dtype_by_name(dtype->str, dtype->len);
    if (!e->dt)
        return fmt_err(r, CNN_ERR_FORMAT, m, "unknown dtype '%.40s'", dtype->str);
    if (shape->type != CNN_JSON_ARRAY)
        return fmt_err(r, CNN_ERR_FORMAT, m, "\"shape\" is %s, expected an array",
                       cnn_json_type_name(shape));
    uint64_t numel = 1;
    int i = 0;
    for (const cnn_json *c = shape->child; c; c = c->next, i++) {
        uint64_t v;
        if (!cnn_json_get_u64(c, &v))
            return fmt_err(r, CNN_ERR_FORMAT, m, "shape entry %d (%.40s) is not a non-negative "
                           "integer", i, c->type == CNN_JSON_NUMBER ? c->str
                           : cnn_json_type_name(c));
        if (__builtin_mul_overflow(numel, v, &numel))
            return fmt_err(r, CNN_ERR_FORMAT, m, "the product of the shape overflows 64 bits");
        if (i < CNN_MAX_DIMS) e->d[i] = v;
    }
    e->ndim = i;
    if (offs->type != CNN_JSON_ARRAY || offs->n_children != 2 ||
        !cnn_json_get_u64(offs->child, &e->begin) || !cnn_json_get_u64(offs->child->next, &e->end))
        return fmt_err(r, CNN_ERR_FORMAT, m, "\"data_offsets\" must be an array of two "
                       "non-negative integers");
    if (e->end < e->begin)
        return fmt_err(r, CNN_ERR_FORMAT, m, "data_offsets [%llu, %llu] end before they begin",
                       (unsigned long long)e->begin, (unsigned long long)e->end);
    uint64_t bits;
    if (__builtin_mul_overflow(numel, (uint64_t)e->dt->bits, &bits))
        return fmt_err(r, CNN_ERR_FORMAT, m, "the byte size of the shape overflows 64 bits");
    if (bits % 8)
        return fmt_err(r, CNN_ERR_FORMAT, m, "%llu elements of %s do not fill whole bytes",
                       (unsigned long long)numel, e->dt->name);
    if (e->end - e->begin != bits / 8)
        return fmt_err(r, CNN_ERR_FORMAT, m, "data_offsets [%llu, %llu] hold %llu bytes but %llu "
                       "elements of %s need %llu", (unsigned long long)e->begin,
                       (unsigned long long)e->end, (unsigned long long)(e->end - e->begin),
                       (unsigned long long)numel, e->dt->name, (unsigned long long)(bits / 8));
    if (e->end > r->data_len)
        return fmt_err(r, CNN_ERR_FORMAT, m, "data_offsets [%llu, %llu] run past the end of the "
                       "%llu-byte data section", (unsigned long long)e->begin,
                       (unsigned long long)e->end, (unsigned long long)r->data_len);
    return CNN_OK;
}

static int cmp_offsets(const void *a, const void *b)
{
    const st_entry *x = *(const st_entry *const *)a, *y = *(const st_entry *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return x < y ? -1 : x > y;
}

/* As the reference implementation: tensors sorted by offsets must tile the data section
 * exactly, with no overlap, no hole and nothing left over. */
static cnn_status check_layout(st_reader *r)
{
    st_entry **sorted = r->sorted;
    for (size_t i = 0; i < r->n; i++) sorted[i] = &r->e[i];
    qsort(sorted, r->n, sizeof *sorted, cmp_offsets);
    uint64_t at = 0;
    for (size_t i = 0; i < r->n; i++) {
        const st_entry *e = sorted[i];
        if (e->begin < at)
            return fmt_err(r, CNN_ERR_FORMAT, e->node, "bytes [%llu, %llu) overlap tensor "
                           "'%.200s'", (unsigned long long)e->begin, (unsigned long long)e->end,
                           sorted[i - 1]->node->key);
        if (e->begin > at)
            return fmt_err(r, CNN_ERR_FORMAT, e->node, "a hole of %llu unused bytes precedes it "
                           "in the data section", (unsigned long long)(e->begin - at));
        at = e->end;
    }
    if (at != r->data_len)
        return fmt_err(r, CNN_ERR_FORMAT, NULL, "the tensors cover %llu bytes but the data "
                       "section holds %llu", (unsigned long long)at,
                       (unsigned long long)r->data_len);
    return CNN_OK;
}

/* What the format allows but a cnn_dict cannot hold. Checked after the whole file is known to
 * be valid, so a corrupt file is always reported as corrupt. */
static cnn_status check_supported(st_reader *r)
{
    for (size_t i = 0; i < r->n; i++) {
        const st_entry *e = &r->e[i];
        const cnn_json *m = e->node;
        if (e->dt->dtype < 0)
            return fmt_err(r, CNN_ERR_UNSUPPORTED, m, "dtype %s is not supported (F32, F16, "
                           "BF16, F64, I64 and I32 are)", e->dt->name);
        if (e->ndim > CNN_MAX_DIMS)
            return fmt_err(r, CNN_ERR_UNSUPPORTED, m, "rank %d is above the supported %d",
                           e->ndim, CNN_MAX_DIMS);
        /* An empty tensor may have huge sizes beside its zero; byte strides must still fit. */
        uint64_t span = (uint64_t)e->dt->bits / 8;
        for (int k = 0; k < e->ndim; k++)
            if (e->d[k] && (__builtin_mul_overflow(span, e->d[k], &span) || span > INT64_MAX))
                return fmt_err(r, CNN_ERR_UNSUPPORTED, m, "sizes too large for int64 byte "
                               "strides (dim %d is %llu)", k, (unsigned long long)e->d[k]);
        if (m->key_len == 0 || has_nul(m->key, m->key_len))
            return fmt_err(r, CNN_ERR_UNSUPPORTED, m, "an empty name or one holding U+0000 "
                           "cannot be a dict key");
    }
    if (r->meta)
        for (const cnn_json *c = r->meta->child; c; c = c->next)
            if (has_nul(c->key, c->key_len) || has_nul(c->str, c->len))
                return fmt_err(r, CNN_ERR_UNSUPPORTED, NULL, "\"__metadata__\" entry '%.200s' "
                               "holds U+0000", c->key);
    return CNN_OK;
}

static cnn_status validate(st_reader *r)
{
    cnn_status st;
    size_t n = 0;
    for (const cnn_json *c = r->root->child; c; c = c->next)
        if (strcmp(c->key, "__metadata__") != 0 || c->key_len != 12) n++;
    if (n > ST_MAX_TENSORS)
        return fmt_err(r, CNN_ERR_UNSUPPORTED, NULL, "%zu tensors is more than the supported %d",
                       n, ST_MAX_TENSORS);
    r->e = calloc(n ? n : 1, sizeof *r->e);
    r->sorted = calloc(n ? n : 1, sizeof *r->sorted);
    if (!r->e || !r->sorted)
        return fmt_err(r, CNN_ERR_OUT_OF_MEMORY, NULL, "out of host memory for the index of "
                       "%zu tensors", n);
    for (const cnn_json *c = r->root->child; c; c = c->next) {
        if (c->key_len == 12 && strcmp(c->key, "__metadata__") == 0)
            CNN_TRY(parse_metadata(r, c));
        else
            CNN_TRY(parse_entry(r, c, &r->e[r->n++]));
    }
    const cnn_json *dup = find_duplicate(r, r->root, &st);
    CNN_TRY(st);
    if (dup)
        return fmt_err(r, CNN_ERR_FORMAT, NULL, "tensor name '%.200s' appears twice", dup->key);
    CNN_TRY(check_layout(r));
    return check_supported(r);
}

/* Allocates the tensors (header order) and fills them in file order with sequential reads. */
static cnn_status build_dict(st_reader *r, cnn_dict *d)
{
    /* Failures here are out of memory: the message names the file and the tensor. */
    if (r->meta)
        for (const cnn_json *c = r->meta->child; c; c = c->next) {
            cnn_status st = cnn_dict_set_meta(d, c->key, c->str);
            if (st != CNN_OK)
                return cnn_error_prefix(st, "safetensors_load: '%s': metadata '%.200s'", r->path,
                                        c->key);
        }
    for (size_t i = 0; i < r->n; i++) {
        st_entry *e = &r->e[i];
        cnn_shape s = {.ndim = e->ndim};
        for (int k = 0; k < e->ndim; k++) s.d[k] = (int64_t)e->d[k];
        cnn_status st = cnn_tensor_empty(s, (cnn_dtype)e->dt->dtype, CNN_CPU, &e->t);
        if (st == CNN_OK) st = cnn_dict_set(d, e->node->key, e->t);
        if (st != CNN_OK)
            return cnn_error_prefix(st, "safetensors_load: '%s': tensor '%.200s'", r->path,
                                    e->node->key);
    }
    if (fseeko(r->f, (off_t)(8 + r->header_len), SEEK_SET) != 0)
        return io_err(r, "seeking to the data", errno);
    for (size_t i = 0; i < r->n; i++) {
        st_entry *e = r->sorted[i];
        char what[256];
        snprintf(what, sizeof what, "reading tensor '%.200s'", e->node->key);
        CNN_TRY(read_exact(r, cnn_ptr(e->t), (size_t)(e->end - e->begin), what));
    }
    return CNN_OK;
}

cnn_status cnn_safetensors_load(const char *path, cnn_dict **out)
{
    CNN_CHECK(out, CNN_ERR_INVALID_ARG, "safetensors_load: out is NULL");
    *out = NULL;
    CNN_CHECK(path && path[0], CNN_ERR_INVALID_ARG, "safetensors_load: empty path");
    st_reader r = {.path = path};
    cnn_dict *d = NULL;
    cnn_status st = CNN_OK;
    /* O_NONBLOCK: a FIFO opens at once (read_header then refuses it) instead of waiting for a
     * writer; reads of a regular file ignore the flag. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return io_err(&r, "cannot open", errno);
    r.f = fdopen(fd, "rb");
    if (!r.f) {
        st = io_err(&r, "cannot open", errno);
        close(fd);
        return st;
    }
    CNN_TRYG(read_header(&r));
    CNN_TRYG(validate(&r));
    CNN_TRYG(cnn_dict_create(&d));
    CNN_TRYG(build_dict(&r, d));
    *out = d;
    d = NULL;
done:
    for (size_t i = 0; i < r.n; i++) cnn_tensor_free(&r.e[i].t);
    cnn_dict_destroy(&d);
    free(r.sorted);
    free(r.e);
    cnn_json_free(&r.root);
    free(r.header);
    fclose(r.f);
    return st;
}
