/* scratch.c — the tests' scratch folders (scratch.h). */
#include "scratch.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
