/* safetensors.h — what the safetensors reader (safetensors.c) and writer (safetensors_save.c)
 * share: the format's limits and its dtype names. Internal to core/. */
#ifndef CNN_SAFETENSORS_H
#define CNN_SAFETENSORS_H

#include "json.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors I/O moves tensor bytes as they are in memory: it needs a little-endian host"
#endif

/* The reference implementation's limits: a larger header is refused as absurd. */
#define ST_MAX_HEADER 100000000ull
#define ST_MAX_DEPTH 64
/* Resource caps for hostile headers: a node per JSON value (~100 bytes each), and cnn_dict's
 * linear lookup, which makes loading n tensors cost O(n^2). Real checkpoints hold a few
 * thousand tensors and about ten values per tensor. */
#define ST_MAX_VALUES (1u << 20)
#define ST_MAX_TENSORS 65536
#define ST_ALIGN 8

/* Every dtype the format defines: the ones libcnncuda stores map to a cnn_dtype; the others are
 * recognised (so the file is valid) but refused as unsupported. */
typedef struct st_dtype {
    const char *name;
    int bits;
    int dtype; /* a cnn_dtype, or -1 when unsupported */
} st_dtype;

/* The format's entry named s[0..n), or NULL. */
const st_dtype *cnn_st_dtype_by_name(const char *s, size_t n);
/* The entry a cnn_dtype is stored as, or NULL. */
const st_dtype *cnn_st_dtype_of(cnn_dtype dt);

static inline const char *cnn_st_errstr(int err, char *buf, size_t n)
{
    return strerror_r(err, buf, n); /* the GNU variant: _GNU_SOURCE is set by the Makefile */
}

#endif
