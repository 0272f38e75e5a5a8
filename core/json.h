/* json.h — a strict, bounded JSON reader (RFC 8259) and a string escaper, for safetensors
 * headers. Internal to the library; it knows nothing about tensors or files. */
#ifndef CNN_JSON_H
#define CNN_JSON_H

#include "internal.h"

typedef enum cnn_json_type {
    CNN_JSON_NULL,
    CNN_JSON_BOOL,
    CNN_JSON_NUMBER,
    CNN_JSON_STRING,
    CNN_JSON_ARRAY,
    CNN_JSON_OBJECT
} cnn_json_type;

typedef struct cnn_json cnn_json;
struct cnn_json {
    cnn_json_type type;
    /* STRING: the decoded UTF-8 (NUL-terminated, may also hold NULs: use len). NUMBER: the
     * literal text as written. BOOL: len is 1 for true, 0 for false (str is NULL). */
    char *str;
    size_t len;
    /* Member of an OBJECT: its decoded key. */
    char *key;
    size_t key_len;
    /* ARRAY / OBJECT: children in document order. */
    cnn_json *child, *next;
    size_t n_children;
};

/* Parses exactly one JSON value (surrounding whitespace allowed) from text[0, len). The text
 * must be valid UTF-8; strings may not hold unpaired surrogates or raw control characters;
 * arrays/objects nest at most max_depth deep. Duplicate object keys are kept (callers decide).
 * On failure: CNN_ERR_FORMAT (or CNN_ERR_OUT_OF_MEMORY) with a message naming the byte
 * offset, and *out = NULL. More than max_values values is CNN_ERR_UNSUPPORTED: each costs a
 * node of ~100 bytes, so the cap bounds the memory a hostile text can make us spend. */
cnn_status cnn_json_parse(const char *text, size_t len, int max_depth, size_t max_values,
                          cnn_json **out);
/* Frees a tree from cnn_json_parse and sets *j to NULL. NULL-safe. */
void cnn_json_free(cnn_json **j);
/* True when j is a NUMBER written as a plain non-negative integer that fits in uint64. */
bool cnn_json_get_u64(const cnn_json *j, uint64_t *out);
/* A short name for a value's type ("string", "array", ...), for messages. */
const char *cnn_json_type_name(const cnn_json *j);
/* True when s[0, n) is valid UTF-8 (no overlongs, surrogates or code points > U+10FFFF). */
bool cnn_utf8_valid(const char *s, size_t n);

/* A growing byte buffer for writers. */
typedef struct cnn_buf {
    char *data;
    size_t len, cap;
    bool oom; /* set by the first failed allocation; later appends do nothing */
} cnn_buf;
void cnn_buf_append(cnn_buf *b, const char *s, size_t n);
void cnn_buf_printf(cnn_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s as a quoted JSON string, escaping '"', '\\' and control characters. */
void cnn_buf_json_string(cnn_buf *b, const char *s);
void cnn_buf_free(cnn_buf *b);

#endif /* CNN_JSON_H */
