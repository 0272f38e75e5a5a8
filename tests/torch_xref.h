/* torch_xref.h — what the PyTorch cross-checks share: finding a python with torch and
 * torchvision, running scripts/torch_crosscheck.py into a fresh /tmp folder, reading the
 * reference tensors it writes and comparing ours with them within `abs + rel * |ref|`. */
#ifndef CNN_TEST_TORCH_XREF_H
#define CNN_TEST_TORCH_XREF_H

#include "test.h"

/* The python that imports torch + torchvision ($CNN_PYTHON, /usr/bin/python3, python3), probed
 * once; NULL when there is none. */
const char *torch_python(void);

/* scripts/NAME under $CNN_SOURCE_DIR, else beside this source file's folder (from the
 * repository root, where `make test` runs); false when it cannot be read. */
bool script_path(const char *name, char *buf, size_t n);

typedef struct xref {
    char dir[64];  /* the check's temporary folder ("" before it exists) */
    cnn_dict *ref; /* its ref.safetensors */
} xref;

/* Makes the folder, or skips the test (no torch) / fails it; false then. */
bool xref_open(xref *r);

/* Runs the script's `check` (arg may be NULL) into the folder, then loads its ref.safetensors. */
bool xref_script(xref *r, const char *check, const char *arg);

/* xref_open, then xref_script without an argument. */
bool xref_run(xref *r, const char *check);

/* Drops the references and removes the folder. */
void xref_done(xref *r);

/* The reference tensor named by the format (borrowed), NULL when absent. */
__attribute__((format(printf, 2, 3)))
cnn_tensor *ref_get(const xref *r, const char *fmt, ...);

/* Exactly n values of a (reference) tensor into out; false when absent or of another size. */
bool ref_values(const cnn_tensor *t, double *out, int n);

/* Compares ours with torch's: same shape, every |ours - ref| <= abs + rel * |ref|. A failure
 * names the tensor (the format), the count off, the max error and where, at file:line;
 * CNN_TORCH_VERBOSE=1 prints every comparison's max error. */
__attribute__((format(printf, 7, 8)))
bool close_to(const char *file, int line, const cnn_tensor *ours, const cnn_tensor *ref,
              double abs, double rel, const char *fmt, ...);
#define CLOSE(ours, ref, abs, rel, ...)                                                           \
    close_to(__FILE__, __LINE__, ours, ref, abs, rel, __VA_ARGS__)

/* A new leaf copy of a reference tensor that requires grad (NULL ref: NULL). */
cnn_tensor *leaf_of(const cnn_tensor *ref);

#endif /* CNN_TEST_TORCH_XREF_H */
