/* scratch.h — a fresh folder under /tmp for a test's files, a check that nothing is left in it
 * (a leftover temporary file shows up in the count), and writers of files, hand-made
 * safetensors files among them. */
#ifndef CNN_TEST_SCRATCH_H
#define CNN_TEST_SCRATCH_H

#include <stddef.h>

/* dir: the folder; path: dir/ckpt.safetensors, for the file under test. */
typedef struct { char dir[64]; char path[160]; } scratch;

/* Makes the folder; 0 on failure. */
int scratch_open(scratch *s);

/* Counts the entries of the folder and, if asked, removes them and the folder; -1 when the
 * folder cannot be read. */
int scratch_walk(const scratch *s, int remove);
#define scratch_count(s) scratch_walk((s), 0)
#define scratch_close(s) scratch_walk((s), 1)

/* The whole file at path (malloc'ed, one spare byte), its length into *n; NULL on failure. */
unsigned char *scratch_read(const char *path, size_t *n);

/* Writes n bytes to a new file at path (replacing it); 0 on failure. */
int scratch_write(const char *path, const void *data, size_t n);

/* Writes a safetensors file as given: the 8-byte little-endian length of header, the header
 * (no padding added), then dlen data bytes (a filler pattern when data is NULL); 0 on failure. */
int scratch_put_file(const char *path, const char *header, const void *data, size_t dlen);

#endif /* CNN_TEST_SCRATCH_H */
