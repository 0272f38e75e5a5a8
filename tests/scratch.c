/* scratch.c — the tests' scratch folders (scratch.h). */
#include "scratch.h"

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int scratch_open(scratch *s)
{
    snprintf(s->dir, sizeof s->dir, "/tmp/cnn_st_XXXXXX");
    if (!mkdtemp(s->dir)) return 0;
    snprintf(s->path, sizeof s->path, "%s/ckpt.safetensors", s->dir);
    return 1;
}

/* Counts the entries of the scratch folder (leftover temporary files show up here) and, if
 * asked, removes them and the folder. */
int scratch_walk(const scratch *s, int remove)
{
    DIR *d = opendir(s->dir);
    if (!d) return -1;
    int n = 0;
    char p[512];
    for (struct dirent *e; (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        n++;
        snprintf(p, sizeof p, "%s/%s", s->dir, e->d_name);
        if (remove && unlink(p) != 0) rmdir(p);
    }
    closedir(d);
    if (remove) rmdir(s->dir);
    return n;
}

unsigned char *scratch_read(const char *path, size_t *n)
{
    struct stat sb;
    FILE *f = fopen(path, "rb");
    if (!f || fstat(fileno(f), &sb) != 0) return f ? (fclose(f), NULL) : NULL;
    *n = (size_t)sb.st_size;
    unsigned char *b = malloc(*n + 1);
    if (b && fread(b, 1, *n, f) != *n) free(b), b = NULL;
    fclose(f);
    return b;
}

int scratch_write(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    int ok = fwrite(data, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

int scratch_put_file(const char *path, const char *header, const void *data, size_t dlen)
{
    size_t hlen = strlen(header), n = 8 + hlen + dlen;
    unsigned char *b = malloc(n);
    if (!b) return 0;
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    memcpy(b + 8, header, hlen);
    if (data) memcpy(b + 8 + hlen, data, dlen);
    else memset(b + 8 + hlen, 0x5a, dlen);
    int ok = scratch_write(path, b, n);
    free(b);
    return ok;
}
