/* safetensors_save.c — checkpoints in Hugging Face's safetensors format, written atomically
 * (temporary file, fsync, rename, fsync of the directory) so that a crash leaves the old file or
 * the new one, never a torn one (the reader is safetensors.c). Nothing prints. */
#include "safetensors.h"

static cnn_status save_err(const char *path, const char *what, int err)
{
    char eb[128];
    return cnn_error(cnn_errno_status(err), "safetensors_save: '%s': %s: %s", path, what,
                     cnn_st_errstr(err, eb, sizeof eb));
}

/* The order the tensors' bytes are stored in (order[k]: the dict index of the k-th): largest
 * element first, dict order among equal sizes (Python's writer sorts by dtype, largest first,
 * then by name, so a dict in its order gives its file byte for byte). The data starts 8-byte
 * aligned and every size is a power of two, so each tensor then starts at a multiple of its
 * element size (an I64 after an odd number of F32s would not). */
static cnn_status data_order(const char *path, const cnn_dict *d, int *order)
{
    for (int i = 0; i < cnn_dict_size(d); i++)
        CNN_CHECK(cnn_st_dtype_of(cnn_dict_at(d, i)->dtype), CNN_ERR_INVALID_ARG,
                  "safetensors_save: '%s': tensor '%s' has unknown dtype %d", path,
                  cnn_dict_name(d, i), (int)cnn_dict_at(d, i)->dtype);
    int k = 0;
    for (size_t es = ST_ALIGN; es >= 1; es /= 2)
        for (int i = 0; i < cnn_dict_size(d); i++)
            if (cnn_dtype_size(cnn_dict_at(d, i)->dtype) == es) order[k++] = i;
    CNN_CHECK(k == cnn_dict_size(d), CNN_ERR_INTERNAL, "safetensors_save: an element size "
              "that is not 1, 2, 4 or 8 bytes");
    return CNN_OK;
}

/* Tensor i's entry of the header, its bytes at [at, at + size) of the data. */
static cnn_status header_entry(const char *path, const cnn_dict *d, int i, uint64_t at,
                               cnn_buf *b, int nm)
{
    const char *name = cnn_dict_name(d, i);
    const cnn_tensor *t = cnn_dict_at(d, i);
    CNN_CHECK(cnn_utf8_valid(name, strlen(name)), CNN_ERR_INVALID_ARG,
              "safetensors_save: '%s': tensor name %d is not valid UTF-8", path, i);
    CNN_CHECK(strcmp(name, "__metadata__") != 0, CNN_ERR_INVALID_ARG,
              "safetensors_save: '%s': a tensor may not be named \"__metadata__\"", path);
    if (nm || i) cnn_buf_append(b, ",", 1);
    cnn_buf_json_string(b, name);
    cnn_buf_printf(b, ":{\"dtype\":\"%s\",\"shape\":[", cnn_st_dtype_of(t->dtype)->name);
    for (int k = 0; k < t->shape.ndim; k++)
        cnn_buf_printf(b, k ? ",%lld" : "%lld", (long long)t->shape.d[k]);
    cnn_buf_printf(b, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)at,
                   (unsigned long long)(at + cnn_tensor_nbytes(t)));
    return CNN_OK;
}

/* The header JSON, padded with spaces so the data starts 8-byte aligned, as the reference
 * writer does. Metadata first, then tensors in dict order (so a load gives that order back),
 * their bytes stored back to back in `order`. */
static cnn_status build_header(const char *path, const cnn_dict *d, const int *order, cnn_buf *b)
{
    int nm = cnn_dict_meta_size(d), nt = cnn_dict_size(d);
    CNN_CHECK(nt <= ST_MAX_TENSORS, CNN_ERR_UNSUPPORTED, "safetensors_save: '%s': %d tensors is "
              "more than the %d that safetensors_load accepts", path, nt, ST_MAX_TENSORS);
    /* The JSON values the reader will count (ST_MAX_VALUES): the outer object, the metadata
     * object and its strings, and per tensor its object, dtype, shape array and sizes, and
     * data_offsets array and its two numbers. */
    uint64_t values = 1 + (nm ? 1 + (uint64_t)nm : 0);
    for (int i = 0; i < nt; i++) values += 6 + (uint64_t)cnn_dict_at(d, i)->shape.ndim;
    CNN_CHECK(values <= ST_MAX_VALUES, CNN_ERR_UNSUPPORTED, "safetensors_save: '%s': a header of "
              "%llu JSON values is more than the %u that safetensors_load accepts", path,
              (unsigned long long)values, ST_MAX_VALUES);
    /* (Metadata is UTF-8 already: cnn_dict_set_meta refuses anything else.) */
    cnn_buf_append(b, "{", 1);
    if (nm) {
        cnn_buf_append(b, "\"__metadata__\":{", 16);
        for (int i = 0; i < nm; i++) {
            if (i) cnn_buf_append(b, ",", 1);
            cnn_buf_json_string(b, cnn_dict_meta_key(d, i));
            cnn_buf_append(b, ":", 1);
            cnn_buf_json_string(b, cnn_dict_meta_value(d, i));
        }
        cnn_buf_append(b, "}", 1);
    }
    uint64_t *start = malloc(((size_t)nt + 1) * sizeof *start), at = 0;
    CNN_CHECK(start, CNN_ERR_OUT_OF_MEMORY, "safetensors_save: out of host memory");
    for (int k = 0; k < nt; k++) {
        start[order[k]] = at;
        at += cnn_tensor_nbytes(cnn_dict_at(d, order[k]));
    }
    cnn_status st = CNN_OK;
    for (int i = 0; i < nt && st == CNN_OK; i++) st = header_entry(path, d, i, start[i], b, nm);
    free(start);
    CNN_TRY(st);
    cnn_buf_append(b, "}", 1);
    while (!b->oom && b->len % ST_ALIGN) cnn_buf_append(b, " ", 1);
    CNN_CHECK(!b->oom, CNN_ERR_OUT_OF_MEMORY, "safetensors_save: out of host memory for the "
              "header");
    CNN_CHECK(b->len <= ST_MAX_HEADER, CNN_ERR_UNSUPPORTED, "safetensors_save: '%s': a %zu-byte "
              "header is over the %llu-byte limit of readers", path, b->len, ST_MAX_HEADER);
    return CNN_OK;
}

/* Writes one tensor's bytes, contiguous and in row-major order, whatever its layout/device. */
static cnn_status write_tensor(FILE *f, const char *path, const cnn_tensor *t, const char *name)
{
    size_t nbytes = cnn_tensor_nbytes(t);
    if (nbytes == 0) return CNN_OK;
    if (t->device.type == CNN_DEVICE_CPU && cnn_tensor_is_contiguous(t)) {
        if (fwrite(cnn_ptr(t), 1, nbytes, f) != nbytes)
            return save_err(path, "writing the temporary file failed", errno);
        return CNN_OK;
    }
    void *host = malloc(nbytes);
    CNN_CHECK(host, CNN_ERR_OUT_OF_MEMORY, "safetensors_save: out of host memory copying "
              "tensor '%s' (%zu bytes)", name, nbytes);
    cnn_status st = cnn_tensor_read(t, host, (size_t)cnn_tensor_numel(t));
    if (st != CNN_OK) st = cnn_error_prefix(st, "safetensors_save: tensor '%s'", name);
    else if (fwrite(host, 1, nbytes, f) != nbytes)
        st = save_err(path, "writing the temporary file failed", errno);
    free(host);
    return st;
}

/* The folder holding path ("." for a bare name), whose entry the rename changes (malloc'ed). */
static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
}

cnn_status cnn_safetensors_save(const char *path, const cnn_dict *d)
{
    CNN_CHECK(path && path[0] && d, CNN_ERR_INVALID_ARG, "safetensors_save: NULL argument or "
              "empty path");
    cnn_status st = CNN_OK;
    cnn_buf hdr = {0};
    FILE *f = NULL;
    char *tmp = NULL, *dir = NULL, *resolved = NULL;
    const char *target = path; /* the file the rename replaces */
    int dir_fd = -1;
    int *order = malloc(((size_t)cnn_dict_size(d) + 1) * sizeof *order);
    if (!order) {
        st = cnn_error(CNN_ERR_OUT_OF_MEMORY, "safetensors_save: out of host memory");
        goto done;
    }
    CNN_TRYG(data_order(path, d, order));
    CNN_TRYG(build_header(path, d, order, &hdr));
    /* A link is written through, as open() writes a link's target: the rename replaces the
     * target, not the link. The new file keeps the old one's permissions (a checkpoint made
     * private stays private). */
    struct stat sb;
    bool exists = lstat(path, &sb) == 0;
    if (exists && S_ISLNK(sb.st_mode)) {
        resolved = realpath(path, NULL);
        if (!resolved) {
            st = save_err(path, "cannot follow the symbolic link", errno);
            goto done;
        }
        target = resolved;
        exists = lstat(target, &sb) == 0;
    }
    size_t tlen = strlen(target) + 64;
    /* Everything the save allocates, before anything is written: once the rename has replaced
     * the old file, only the disk can fail. */
    tmp = malloc(tlen);
    dir = dir_of(target);
    if (!tmp || !dir) {
        st = cnn_error(CNN_ERR_OUT_OF_MEMORY, "safetensors_save: out of host memory");
        free(tmp);
        tmp = NULL; /* no file to remove */
        goto done;
    }
    /* Unique per process and thread, so concurrent saves to one path never share a file. */
    snprintf(tmp, tlen, "%s.tmp.%ld.%ld", target, (long)getpid(), (long)gettid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0) {
        st = save_err(path, "cannot create the temporary file", errno);
        free(tmp);
        tmp = NULL; /* nothing to remove */
        goto done;
    }
    if (exists && fchmod(fd, sb.st_mode & 07777) != 0) {
        st = save_err(path, "cannot give the temporary file the old file's permissions", errno);
        close(fd);
        goto done;
    }
    f = fdopen(fd, "wb");
    if (!f) {
        st = save_err(path, "cannot open the temporary file as a stream", errno);
        close(fd);
        goto done;
    }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)hdr.len >> (8 * i));
    if (fwrite(len8, 1, 8, f) != 8 || fwrite(hdr.data, 1, hdr.len, f) != hdr.len) {
        st = save_err(path, "writing the temporary file failed", errno);
        goto done;
    }
    for (int k = 0; k < cnn_dict_size(d); k++)
        CNN_TRYG(write_tensor(f, path, cnn_dict_at(d, order[k]), cnn_dict_name(d, order[k])));
    if (fflush(f) != 0) {
        st = save_err(path, "writing the temporary file failed", errno);
        goto done;
    }
    if (fsync(fileno(f)) != 0) {
        st = save_err(path, "fsync of the temporary file failed", errno);
        goto done;
    }
    int rc = fclose(f);
    f = NULL;
    if (rc != 0) {
        st = save_err(path, "closing the temporary file failed", errno);
        goto done;
    }
    /* The folder is opened before the rename, so that the old file is still there if it
     * cannot be (out of descriptors); its fsync makes the rename itself durable. */
    dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd < 0) {
        st = save_err(path, "cannot open its folder to sync the rename", errno);
        goto done;
    }
    if (rename(tmp, target) != 0) {
        st = save_err(path, "cannot rename the temporary file over it", errno);
        goto done;
    }
    free(tmp);
    tmp = NULL;
    /* Past the rename nothing can be undone: the error says the new file is in place. Some
     * file systems cannot fsync a folder (EINVAL). */
    if (fsync(dir_fd) != 0 && errno != EINVAL)
        st = save_err(path, "the new file is in place, but the fsync of its folder failed (the "
                      "rename may not survive a crash)", errno);
done:
    if (dir_fd >= 0) close(dir_fd);
    if (f) fclose(f);
    if (tmp) {
        unlink(tmp);
        free(tmp);
    }
    free(dir);
    free(resolved);
    free(order);
    cnn_buf_free(&hdr);
    return st;
}
