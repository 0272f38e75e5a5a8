/* idx.c — IDX datasets (MNIST / Fashion-MNIST layout), plain or gzip, read whole and validated
 * up front so that a sample fetch can never fail. Holds no decoding of photos and no
 * augmentation (augment.c does that for every dataset kind). */
#include "dataset.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

typedef struct idx_impl {
    unsigned char *images; /* n * rows * cols bytes */
    int rows, cols;
    char *images_path;
} idx_impl;

static const char *const g_fashion_classes[10] = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

/* zlib's reason for a failed read, without the "<fd:N>: " it puts first for a stream opened
 * with gzdopen. */
static const char *zlib_reason(gzFile f, int *z)
{
    const char *why = gzerror(f, z);
    if (strncmp(why, "<fd:", 4) == 0 && strstr(why, ">: ")) why = strstr(why, ">: ") + 3;
    return why;
}

/* A failed gzread: the system's reason for a failed read (Z_ERRNO), else zlib's for data that
 * does not inflate (a corrupt .gz). */
static cnn_status read_error(gzFile f, const char *path)
{
    int err = errno, z = Z_OK;
    const char *why = zlib_reason(f, &z);
    if (z == Z_ERRNO || z == Z_OK)
        return cnn_error(cnn_errno_status(err), "idx: cannot read '%s': %s", path,
                         strerror(err));
    if (z == Z_MEM_ERROR)
        return cnn_error(CNN_ERR_OUT_OF_MEMORY, "idx: out of memory reading '%s'", path);
    return cnn_error(CNN_ERR_FORMAT, "idx: '%s' is %s: %s", path,
                     z == Z_BUF_ERROR ? "truncated" : "corrupt", why);
}

/* Reads a whole IDX file of unsigned bytes with `want_ndim` dims. gzread reads plain files
 * as they are, so one path serves both. */
static cnn_status idx_read(const char *path, int want_ndim, int64_t dims[3], unsigned char **data)
{
    *data = NULL;
    /* O_NONBLOCK: a FIFO opens at once (and is refused) instead of waiting for a writer; reads
     * of a regular file ignore the flag. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return cnn_error(cnn_errno_status(errno), "idx: cannot open '%s': %s", path,
                         strerror(errno));
    struct stat sb;
    int err = fstat(fd, &sb) != 0 ? errno : 0;
    if (err || !S_ISREG(sb.st_mode)) {
        close(fd);
        return cnn_error(err ? cnn_errno_status(err) : CNN_ERR_IO, "idx: cannot read '%s': %s",
                         path, err ? strerror(err) : "not a regular file");
    }
    gzFile f = gzdopen(fd, "rb"); /* fails only when zlib has no memory for its state */
    if (!f) {
        close(fd);
        return cnn_error(CNN_ERR_OUT_OF_MEMORY, "idx: out of memory opening '%s'", path);
    }
    cnn_status st = CNN_OK;
    unsigned char head[16], *buf = NULL;
    int hlen = 4 + 4 * want_ndim;
    int got = gzread(f, head, (unsigned)hlen);
    if (got < 0) {
        st = read_error(f, path);
        goto done;
    }
    if (got != hlen) {
        st = cnn_error(CNN_ERR_FORMAT, "idx: '%s' is truncated: %d of %d header bytes", path,
                       got, hlen);
        goto done;
    }
    if (head[0] != 0 || head[1] != 0 || head[2] != 0x08 || head[3] != want_ndim) {
        st = cnn_error(CNN_ERR_FORMAT,
                       "idx: '%s' has magic %02x %02x %02x %02x, expected 00 00 08 %02x "
                       "(unsigned bytes, %d dims)",
                       path, head[0], head[1], head[2], head[3], want_ndim, want_ndim);
        goto done;
    }
    /* At most 8 GiB of data, checked before each multiply so that no product overflows. */
    const int64_t max_total = (int64_t)1 << 33;
    int64_t total = 1;
    for (int d = 0; d < want_ndim; d++) {
        const unsigned char *p = head + 4 + 4 * d;
        dims[d] = ((int64_t)p[0] << 24) | ((int64_t)p[1] << 16) | ((int64_t)p[2] << 8) | p[3];
        if (dims[d] <= 0 || dims[d] > (1 << 28)) {
            st = cnn_error(CNN_ERR_FORMAT, "idx: '%s' has dim %d = %lld", path, d,
                           (long long)dims[d]);
            goto done;
        }
        if (total > max_total / dims[d]) {
            st = cnn_error(CNN_ERR_FORMAT, "idx: '%s' claims more than %lld data bytes (dims %lld "
                           "... %lld)", path, (long long)max_total, (long long)dims[0],
                           (long long)dims[d]);
            goto done;
        }
        total *= dims[d];
    }
    /* The buffer grows with the data actually read (from 16 MiB, doubling), so a header that
     * claims gigabytes over a short file costs no more memory than the file holds. */
    int64_t cap = 0, have = 0;
    while (have < total) {
        if (have == cap) {
            int64_t grow = cap ? 2 * cap : (int64_t)1 << 24;
            if (grow > total) grow = total;
            unsigned char *nb = realloc(buf, (size_t)grow + 1);
            if (!nb) {
                st = cnn_error(CNN_ERR_OUT_OF_MEMORY, "idx: no memory for %lld bytes of '%s'",
                               (long long)grow, path);
                goto done;
            }
            buf = nb;
            cap = grow;
        }
        int64_t chunk = cap - have < (1 << 30) ? cap - have : (1 << 30);
        int r = gzread(f, buf + have, (unsigned)chunk);
        if (r < 0) {
            st = read_error(f, path);
            goto done;
        }
        if (r == 0) break;
        have += r;
    }
    if (have < total) {
        int errnum = 0;
        const char *why = zlib_reason(f, &errnum);
        st = cnn_error(CNN_ERR_FORMAT, "idx: '%s' is truncated: %lld of %lld data bytes%s%s", path,
                       (long long)have, (long long)total, errnum ? ": " : "", errnum ? why : "");
        goto done;
    }
    got = gzread(f, head, 1);
    if (got != 0) {
        st = got < 0 ? read_error(f, path)
                     : cnn_error(CNN_ERR_FORMAT, "idx: '%s' has bytes after its %lld data bytes",
                                 path, (long long)total);
        goto done;
    }
    *data = buf;
    buf = NULL;
done:
    free(buf);
    gzclose(f);
    return st;
}

static cnn_status idx_decode(const cnn_dataset *ds, int64_t i, cnn_image_u8 *img,
                             bool *process_fault)
{
    (void)process_fault; /* only memory can run out: the images are in memory */
    const idx_impl *m = ds->impl;
    size_t plane = (size_t)m->rows * (size_t)m->cols;
    unsigned char *src = m->images + (size_t)i * plane;
    *img = (cnn_image_u8){src, m->rows, m->cols, 1, false};
    if (ds->channels == 1) return CNN_OK;
    unsigned char *rgb = malloc(plane * 3);
    if (!rgb) return cnn_error(CNN_ERR_OUT_OF_MEMORY, "idx: no memory for a %dx%d RGB image",
                               m->rows, m->cols);
    for (size_t p = 0; p < plane; p++) rgb[3 * p] = rgb[3 * p + 1] = rgb[3 * p + 2] = src[p];
    *img = (cnn_image_u8){rgb, m->rows, m->cols, 3, true};
    return CNN_OK;
}

static void idx_sample_name(const cnn_dataset *ds, int64_t i, char *buf, size_t n)
{
    const idx_impl *m = ds->impl;
    snprintf(buf, n, "%s[%lld]", m->images_path, (long long)i);
}

static void idx_destroy_impl(void *p)
{
    idx_impl *m = p;
    if (!m) return;
    free(m->images);
    free(m->images_path);
    free(m);
}

static const cnn_dataset_ops g_idx_ops = {idx_decode, idx_sample_name, idx_destroy_impl};

cnn_status cnn_idx_dataset_create(const char *images_path, const char *labels_path, int channels,
                                  cnn_dataset **out)
{
    CNN_CHECK(out, CNN_ERR_INVALID_ARG, "idx_dataset_create: out is NULL");
    *out = NULL;
    CNN_CHECK(images_path && labels_path, CNN_ERR_INVALID_ARG,
              "idx_dataset_create: a path is NULL");
    CNN_CHECK(channels == 1 || channels == 3, CNN_ERR_INVALID_ARG,
              "idx_dataset_create: channels must be 1 or 3, got %d", channels);
    cnn_status st = CNN_OK;
    unsigned char *labels = NULL;
    cnn_dataset *ds = cnn_dataset_alloc(&g_idx_ops);
    idx_impl *m = calloc(1, sizeof *m);
    if (!ds || !m) {
        free(m);
        cnn_dataset_destroy(&ds);
        return cnn_error(CNN_ERR_OUT_OF_MEMORY, "idx_dataset_create: out of memory");
    }
    ds->impl = m;
    int64_t idims[3], ldims[3];
    CNN_TRYG(cnn_data_strdup(images_path, "idx_dataset_create", &m->images_path));
    CNN_TRYG(idx_read(images_path, 3, idims, &m->images));
    CNN_TRYG(idx_read(labels_path, 1, ldims, &labels));
    if (idims[0] != ldims[0]) {
        st = cnn_error(CNN_ERR_FORMAT, "idx: '%s' holds %lld images but '%s' holds %lld labels",
                       images_path, (long long)idims[0], labels_path, (long long)ldims[0]);
        goto done;
    }
    if (idims[1] > 65536 || idims[2] > 65536) {
        st = cnn_error(CNN_ERR_FORMAT, "idx: '%s' has %lldx%lld images", images_path,
                       (long long)idims[1], (long long)idims[2]);
        goto done;
    }
    ds->n = idims[0];
    m->rows = ds->native_h = (int)idims[1];
    m->cols = ds->native_w = (int)idims[2];
    ds->channels = channels;
    ds->labels = malloc((size_t)ds->n * sizeof *ds->labels);
    if (!ds->labels) {
        st = cnn_error(CNN_ERR_OUT_OF_MEMORY, "idx_dataset_create: out of memory");
        goto done;
    }
    int maxl = 0;
    for (int64_t i = 0; i < ds->n; i++) {
        ds->labels[i] = labels[i];
        if (labels[i] > maxl) maxl = labels[i];
    }
    ds->num_classes = maxl + 1;
    ds->class_names = calloc((size_t)ds->num_classes, sizeof *ds->class_names);
    if (!ds->class_names) {
        st = cnn_error(CNN_ERR_OUT_OF_MEMORY, "idx_dataset_create: out of memory");
        goto done;
    }
    for (int c = 0; c < ds->num_classes; c++) {
        char name[16];
        snprintf(name, sizeof name, "%d", c);
        CNN_TRYG(cnn_data_strdup(name, "idx_dataset_create", &ds->class_names[c]));
    }
    /* Mean/std over every pixel (scaled to [0, 1]), from a byte histogram: exact and fast. The
     * variance takes a second pass over the bins: E[x^2] - mean^2 cancels, and gave a constant
     * image set a std of 3e-10 instead of 0 (then the 1.0 fallback). */
    int64_t hist[256] = {0};
    size_t total = (size_t)ds->n * (size_t)m->rows * (size_t)m->cols;
    for (size_t p = 0; p < total; p++) hist[m->images[p]]++;
    int64_t sum = 0; /* below 2^53: exact as a double too */
    for (int v = 0; v < 256; v++) sum += hist[v] * v;
    /* One correctly rounded quotient: for a constant set it is exactly v / 255.0. */
    const double mean = (double)sum / (255.0 * (double)total);
    double s2 = 0;
    for (int v = 0; v < 256; v++) s2 += (double)hist[v] * (v / 255.0 - mean) * (v / 255.0 - mean);
    const double var = s2 / (double)total;
    for (int c = 0; c < 3; c++) {
        ds->mean[c] = (float)mean;
        ds->std[c] = var > 0 ? (float)sqrt(var) : 1.0f;
    }
    *out = ds;
    ds = NULL;
done:
    free(labels);
    cnn_dataset_destroy(&ds);
    return st;
}

cnn_status cnn_fashion_mnist_create(const char *root, bool train, int channels, cnn_dataset **out)
{
    CNN_CHECK(out, CNN_ERR_INVALID_ARG, "fashion_mnist_create: out is NULL");
    *out = NULL;
    if (!root || !*root) root = getenv("CNN_FASHION_MNIST_DIR");
    if (!root || !*root) root = "/usr/share/datasets/fashion-mnist";
    const char *pre = train ? "train" : "t10k";
    char ipath[4096], lpath[4096];
    int a = snprintf(ipath, sizeof ipath, "%s/%s-images-idx3-ubyte.gz", root, pre);
    int b = snprintf(lpath, sizeof lpath, "%s/%s-labels-idx1-ubyte.gz", root, pre);
    CNN_CHECK(a > 0 && a < (int)sizeof ipath && b > 0 && b < (int)sizeof lpath,
              CNN_ERR_INVALID_ARG, "fashion_mnist_create: root path too long");
    cnn_dataset *ds = NULL;
    CNN_TRY(cnn_idx_dataset_create(ipath, lpath, channels, &ds));
    if (ds->num_classes > 10) {
        cnn_status st = cnn_error(CNN_ERR_FORMAT, "fashion_mnist: '%s' has labels up to %d", lpath,
                                  ds->num_classes - 1);
        cnn_dataset_destroy(&ds);
        return st;
    }
    for (int c = 0; c < ds->num_classes; c++) free(ds->class_names[c]);
    free(ds->class_names);
    ds->class_names = calloc(10, sizeof *ds->class_names);
    ds->num_classes = 10;
    for (int c = 0; c < 10 && ds->class_names; c++) {
        cnn_status st = cnn_data_strdup(g_fashion_classes[c], "fashion_mnist", &ds->class_names[c]);
        if (st != CNN_OK) {
            cnn_dataset_destroy(&ds);
            return st;
        }
    }
    if (!ds->class_names) {
        cnn_dataset_destroy(&ds);
        return cnn_error(CNN_ERR_OUT_OF_MEMORY, "fashion_mnist: out of memory");
    }
    /* The usual normalisation uses the train split's statistics for both splits. */
    for (int c = 0; c < 3; c++) {
        ds->mean[c] = 0.2860f;
        ds->std[c] = 0.3530f;
    }
    *out = ds;
    return CNN_OK;
}
