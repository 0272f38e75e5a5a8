/* imagefolder.c — the ImageNet folder layout ROOT/<split>/<class>/<files>: lists classes and
 * files once (sorted; a class folder's sub-folders too, as torchvision's ImageFolder), and
 * decodes one file per sample with stb_image. It never augments
 * (augment.c) and never prints: empty classes and ignored files become dataset warnings. */
#include "dataset.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>


typedef struct folder_impl {
    char **paths; /* n full paths, class by class, in torchvision's order within a class */
    size_t n;
} folder_impl;

/* A growable list of strings. */
typedef struct strlist {
    char **v;
    size_t n, cap;
} strlist;

static cnn_status strlist_push(strlist *l, const char *s)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        char **v = realloc(l->v, cap * sizeof *v);
        if (!v) return cnn_error(CNN_ERR_OUT_OF_MEMORY, "imagefolder: out of memory");
        l->v = v;
        l->cap = cap;
    }
    CNN_TRY(cnn_data_strdup(s, "imagefolder", &l->v[l->n]));
    l->n++;
    return CNN_OK;
}

static void strlist_free(strlist *l)
{
    for (size_t i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
    *l = (strlist){0};
}

/* The next character of a name as Python reads file names (UTF-8, strict, with surrogateescape):
 * a valid sequence gives its code point, any other byte b stands alone as U+DC00 + b. */
static uint32_t next_char(const unsigned char **p)
{
    const unsigned char *s = *p;
    unsigned b = s[0];
    int len = b < 0x80 ? 1 : b >= 0xC2 && b <= 0xDF ? 2 : b >= 0xE0 && b <= 0xEF ? 3
            : b >= 0xF0 && b <= 0xF4 ? 4 : 0;
    /* The second byte's range rules out overlong forms, surrogates and code points > U+10FFFF. */
    unsigned lo = b == 0xE0 ? 0xA0 : b == 0xF0 ? 0x90 : 0x80;
    unsigned hi = b == 0xED ? 0x9F : b == 0xF4 ? 0x8F : 0xBF;
    uint32_t c = len > 1 ? b & (0x7Fu >> len) : b;
    for (int i = 1; i < len; i++) {
        if (s[i] < (i == 1 ? lo : 0x80) || s[i] > (i == 1 ? hi : 0xBF)) {
            len = 0; /* (a NUL ends the name here too) */
            break;
        }
        c = c << 6 | (s[i] & 0x3F);
    }
    if (len == 0) {
        *p = s + 1;
        return 0xDC00 + b;
    }
    *p = s + len;
    return c;
}

/* Names in the order of Python's sorted() on os.scandir's str names, which torchvision's
 * ImageFolder uses: by code point, and an undecodable byte after U+DBFF and before U+E000
 * ("\xC3x" after "\xC3\xA9", where strcmp puts it before). */
static int cmp_name(const char *a, const char *b)
{
    const unsigned char *p = (const unsigned char *)a, *q = (const unsigned char *)b;
    while (*p && *q) {
        uint32_t x = next_char(&p), y = next_char(&q);
        if (x != y) return x < y ? -1 : 1;
    }
    return (*p != 0) - (*q != 0);
}

static int cmp_str(const void *a, const void *b)
{
    return cmp_name(*(char *const *)a, *(char *const *)b);
}

bool cnn_imagefolder_is_image_name(const char *name)
{
    if (!name) return false;
    static const char *const exts[] = {"jpg", "jpeg", "png", "bmp", "ppm", "pgm", "pbm", "pnm"};
    const char *dot = strrchr(name, '.');
    if (!dot) return false;
    for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++)
        if (strcasecmp(dot + 1, exts[i]) == 0) return true;
    return false;
}

/* a/b, without doubling a slash that ends a ("data/" + "train" is "data/train"). */
static cnn_status join_path(const char *a, const char *b, char *out, size_t n)
{
    size_t la = strlen(a);
    while (la > 0 && a[la - 1] == '/') la--; /* "/" itself gives "/b" */
    int k = la <= INT_MAX ? snprintf(out, n, "%.*s/%s", (int)la, a, b) : -1;
    if (k < 0 || (size_t)k >= n)
        return cnn_error(CNN_ERR_INVALID_ARG, "imagefolder: path '%s/%s' is too long", a, b);
    return CNN_OK;
}

/* A folder the dataset needs: missing (or not a folder) says `missing`; a folder that cannot be
 * looked at says why. */
static cnn_status check_folder(const char *path, const char *what, const char *missing)
{
    struct stat sb;
    errno = 0;
    if (stat(path, &sb) == 0) {
        if (S_ISDIR(sb.st_mode)) return CNN_OK;
        return cnn_error(CNN_ERR_IO, "imagefolder: %s '%s' is not a folder", what, path);
    }
    if (errno != 0 && errno != ENOENT && errno != ENOTDIR)
        return cnn_error(cnn_errno_status(errno), "imagefolder: cannot read the %s '%s': %s",
                         what, path, strerror(errno));
    return cnn_error(CNN_ERR_IO, "imagefolder: %s '%s' %s", what, path, missing);
}

/* The next entry of the open folder d (dir) that is not hidden, its path in path (n bytes) and
 * its status in *sb, following links; *gone when it vanished or is a dangling link. NULL at the
 * end of the folder (*st CNN_OK) or on an error (*st set): an error while listing fails, so
 * that nothing is silently missing. */
static const char *next_entry(DIR *d, const char *dir, char *path, size_t n, struct stat *sb,
                              bool *gone, cnn_status *st)
{
    for (;;) {
        errno = 0;
        struct dirent *e = readdir(d);
        if (!e) {
            *st = errno == 0 ? CNN_OK
                             : cnn_error(cnn_errno_status(errno),
                                         "imagefolder: cannot list folder '%s': %s", dir,
                                         strerror(errno));
            return NULL;
        }
        if (e->d_name[0] == '.') continue;
        if ((*st = join_path(dir, e->d_name, path, n)) != CNN_OK) return NULL;
        *gone = stat(path, sb) != 0;
        if (*gone && errno != ENOENT && errno != ELOOP) {
            *st = cnn_error(cnn_errno_status(errno), "imagefolder: cannot read '%s': %s", path,
                            strerror(errno));
            return NULL;
        }
        return e->d_name;
    }
}

static DIR *open_folder(const char *dir, cnn_status *st)
{
    DIR *d = opendir(dir);
    *st = d ? CNN_OK
            : cnn_error(cnn_errno_status(errno), "imagefolder: cannot open folder '%s': %s", dir,
                        strerror(errno));
    return d;
}

/* The class folders of a split: the names in dir (not hidden) that are folders (or links to
 * folders), sorted. */
static cnn_status list_class_folders(const char *dir, strlist *out)
{
    cnn_status st;
    DIR *d = open_folder(dir, &st);
    if (!d) return st;
    char path[4096];
    struct stat sb;
    bool gone;
    for (const char *name; (name = next_entry(d, dir, path, sizeof path, &sb, &gone, &st));)
        if (!gone && S_ISDIR(sb.st_mode)) CNN_TRYG(strlist_push(out, name));
    if (st == CNN_OK && out->n > 1) qsort(out->v, out->n, sizeof *out->v, cmp_str);
done:
    closedir(d);
    return st;
}

/* A class's files, found by walking its folder and every folder below it (links followed, as
 * torchvision's ImageFolder does with os.walk(followlinks=True)); listed as torchvision lists
 * them: folder by folder in the order of their paths (as cmp_name sorts), files sorted within
 * each. */
typedef struct walk_entry {
    char *dir;     /* a folder met, as a path */
    strlist files; /* the image names directly in it, sorted */
} walk_entry;

typedef struct class_walk {
    walk_entry *v;
    size_t n, cap;
    int ignored;         /* entries that are neither image files nor folders */
    char examples[160];  /* the first few of them, for the warning */
    int loops;           /* links back to a folder being walked or above, not followed */
    size_t base_len;     /* of the class folder's path and its '/': names below it start there */
    size_t n_above;      /* the folders above the class folder, up to '/': */
    dev_t *above_dev;    /* a link to one of them would take in the other classes, */
    ino_t *above_ino;    /* or everything under the root */
} class_walk;

#define WALK_MAX_DEPTH 64

static void note_ignored(class_walk *w, const char *rel)
{
    if (w->ignored++ < 3) {
        size_t used = strlen(w->examples);
        snprintf(w->examples + used, sizeof w->examples - used, "%s'%s'", used ? ", " : "", rel);
    }
}

/* Walks dir, depth folders below the class folder; anc holds the device and inode of each
 * folder on the way down, so that a link back to one is not followed. */
static cnn_status walk_dir(class_walk *w, const char *dir, dev_t *anc_dev, ino_t *anc_ino,
                           int depth)
{
    strlist names = {0}, subdirs = {0};
    cnn_status st;
    char path[4096];
    DIR *d = open_folder(dir, &st);
    if (!d) return st;
    struct stat sb;
    bool gone;
    for (const char *name; (name = next_entry(d, dir, path, sizeof path, &sb, &gone, &st));) {
        if (gone) {
            note_ignored(w, path + w->base_len);
        } else if (S_ISDIR(sb.st_mode)) {
            bool loop = false;
            for (int i = 0; i <= depth; i++)
                loop |= anc_dev[i] == sb.st_dev && anc_ino[i] == sb.st_ino;
            for (size_t i = 0; i < w->n_above; i++)
                loop |= w->above_dev[i] == sb.st_dev && w->above_ino[i] == sb.st_ino;
            if (loop || depth + 1 >= WALK_MAX_DEPTH) w->loops++;
            else CNN_TRYG(strlist_push(&subdirs, name));
        } else if (S_ISREG(sb.st_mode) && cnn_imagefolder_is_image_name(name)) {
            CNN_TRYG(strlist_push(&names, name));
        } else {
            note_ignored(w, path + w->base_len);
        }
    }
    if (st != CNN_OK) goto done;
    closedir(d);
    d = NULL;
    if (names.n > 1) qsort(names.v, names.n, sizeof *names.v, cmp_str);
    if (w->n == w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 8;
        walk_entry *v = realloc(w->v, cap * sizeof *v);
        if (!v) {
            st = cnn_error(CNN_ERR_OUT_OF_MEMORY, "imagefolder: out of memory");
            goto done;
        }
        w->v = v;
        w->cap = cap;
    }
    CNN_TRYG(cnn_data_strdup(dir, "imagefolder", &w->v[w->n].dir));
    w->v[w->n++].files = names;
    names = (strlist){0};
    for (size_t i = 0; i < subdirs.n; i++) {
        struct stat sb;
        CNN_TRYG(join_path(dir, subdirs.v[i], path, sizeof path));
        if (stat(path, &sb) != 0) { /* gone since it was listed */
            note_ignored(w, path + w->base_len);
            continue;
        }
        anc_dev[depth + 1] = sb.st_dev;
        anc_ino[depth + 1] = sb.st_ino;
        CNN_TRYG(walk_dir(w, path, anc_dev, anc_ino, depth + 1));
    }
done:
    if (d) closedir(d);
    strlist_free(&names);
    strlist_free(&subdirs);
    return st;
}

static void class_walk_free(class_walk *w)
{
    for (size_t i = 0; i < w->n; i++) {
        free(w->v[i].dir);
        strlist_free(&w->v[i].files);
    }
    free(w->v);
    free(w->above_dev);
    free(w->above_ino);
    *w = (class_walk){0};
}

/* The folders above class folder cdir (those of its real path, '/' included) into w, so that
 * the walk below follows no link up to one of them. */
static cnn_status find_folders_above(class_walk *w, const char *cdir)
{
    char *real = realpath(cdir, NULL);
    if (!real)
        return cnn_error(cnn_errno_status(errno), "imagefolder: cannot resolve '%s': %s", cdir,
                         strerror(errno));
    size_t n = 1; /* '/' and one per '/' after it */
    for (const char *c = real + 1; *c; c++) n += *c == '/';
    w->above_dev = malloc(n * sizeof *w->above_dev);
    w->above_ino = malloc(n * sizeof *w->above_ino);
    cnn_status st = CNN_OK;
    if (!w->above_dev || !w->above_ino) {
        st = cnn_error(CNN_ERR_OUT_OF_MEMORY, "imagefolder: out of memory");
        goto done;
    }
    /* Cut the path at its last '/' again and again: the parent, its parent, ..., '/'. */
    for (char *slash; strcmp(real, "/") != 0 && (slash = strrchr(real, '/'));) {
        slash[slash == real] = '\0';
        struct stat sb;
        if (stat(real, &sb) != 0) {
            st = cnn_error(cnn_errno_status(errno), "imagefolder: cannot read '%s' (above "
                           "'%s'): %s", real, cdir, strerror(errno));
            goto done;
        }
        w->above_dev[w->n_above] = sb.st_dev;
        w->above_ino[w->n_above++] = sb.st_ino;
    }
done:
    free(real);
    return st;
}

static int cmp_walk_entry(const void *a, const void *b)
{
    return cmp_name(((const walk_entry *)a)->dir, ((const walk_entry *)b)->dir);
}

/* Appends the image files of class folder cdir, in torchvision's order, to all (full paths)
 * and their label to labels (grown as needed); warns of what was ignored. */
static cnn_status list_class(cnn_dataset *ds, const char *cname, size_t label, const char *cdir,
                             strlist *all, int64_t **labels, size_t *lcap)
{
    class_walk w = {0};
    dev_t anc_dev[WALK_MAX_DEPTH];
    ino_t anc_ino[WALK_MAX_DEPTH];
    struct stat sb;
    char fpath[4096];
    cnn_status st = CNN_OK;
    if (stat(cdir, &sb) != 0)
        return cnn_error(cnn_errno_status(errno), "imagefolder: cannot read '%s': %s", cdir,
                         strerror(errno));
    anc_dev[0] = sb.st_dev;
    anc_ino[0] = sb.st_ino;
    w.base_len = strlen(cdir) + 1;
    CNN_TRYG(find_folders_above(&w, cdir));
    CNN_TRYG(walk_dir(&w, cdir, anc_dev, anc_ino, 0));
    if (w.n > 1) qsort(w.v, w.n, sizeof *w.v, cmp_walk_entry); /* folder by folder, by path */
    size_t found = 0;
    for (size_t k = 0; k < w.n; k++) found += w.v[k].files.n;
    if (all->n + found > *lcap) {
        size_t cap = (all->n + found) * 2;
        int64_t *nl = realloc(*labels, cap * sizeof *nl);
        if (!nl) {
            st = cnn_error(CNN_ERR_OUT_OF_MEMORY, "imagefolder: out of memory");
            goto done;
        }
        *labels = nl;
        *lcap = cap;
    }
    for (size_t k = 0; k < w.n; k++) {
        for (size_t i = 0; i < w.v[k].files.n; i++) {
            CNN_TRYG(join_path(w.v[k].dir, w.v[k].files.v[i], fpath, sizeof fpath));
            CNN_TRYG(strlist_push(all, fpath));
            (*labels)[all->n - 1] = (int64_t)label;
        }
    }
    if (found == 0)
        cnn_dataset_warn(ds, "class '%s' (label %zu) has no images: '%s'", cname, label, cdir);
    if (w.ignored)
        cnn_dataset_warn(ds, "class '%s': ignored %d entr%s of '%s' that %s not image files "
                         "(jpg, jpeg, png, bmp, ppm, pgm, pbm, pnm): %s%s", cname, w.ignored,
                         w.ignored == 1 ? "y" : "ies", cdir, w.ignored == 1 ? "is" : "are",
                         w.examples, w.ignored > 3 ? ", ..." : "");
    if (w.loops)
        cnn_dataset_warn(ds, "class '%s': %d link%s in '%s' lead%s back to a folder above (or "
                         "below %d levels): not followed", cname, w.loops,
                         w.loops == 1 ? "" : "s", cdir, w.loops == 1 ? "s" : "",
                         WALK_MAX_DEPTH);
done:
    class_walk_free(&w);
    return st;
}

/* The largest image accepted: sides up to 32768 and 2^26 pixels in all, well above any photo
 * (a 50 MP camera gives 8688 x 5792), and small enough that a lying header cannot make stb_image
 * allocate gigabytes for a small file, nor stb_image_resize lose the float precision it asserts
 * on (sides near 2^24 abort inside it). */
#define MAX_SIDE 32768
#define MAX_PIXELS ((int64_t)1 << 26)

static cnn_status check_size(const char *path, int64_t w, int64_t h)
{
    if (w < 0) w = -w; /* a top-down BMP has a negative height in its header */
    if (h < 0) h = -h;
    CNN_CHECK(w <= MAX_SIDE && h <= MAX_SIDE && w * h <= MAX_PIXELS, CNN_ERR_FORMAT,
              "imagefolder: '%s' is %lld x %lld pixels; images over %d a side or %lld in all are "
              "not supported", path, (long long)w, (long long)h, MAX_SIDE, (long long)MAX_PIXELS);
    return CNN_OK;
}

/* The whole file at path, for cnn_image_refusal and stb_image (which takes an int length).
 * *process_fault: the file could not be opened for a reason that is the process's (out of file
 * descriptors), not the file's. */
static cnn_status read_image_file(const char *path, unsigned char **out, size_t *len,
                                  bool *process_fault)
{
    *out = NULL;
    /* O_NONBLOCK: a file replaced by a FIFO since the listing opens at once (and is refused)
     * instead of waiting for a writer; reads of a regular file ignore the flag. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    FILE *f = fd >= 0 ? fdopen(fd, "rb") : NULL;
    if (!f) {
        int err = errno;
        if (fd >= 0) close(fd);
        *process_fault = err == EMFILE || err == ENFILE;
        return cnn_error(cnn_errno_status(err), "imagefolder: cannot read '%s': %s", path,
                         strerror(err));
    }
    struct stat sb;
    cnn_status st = CNN_OK;
    if (fstat(fileno(f), &sb) != 0) {
        st = cnn_error(cnn_errno_status(errno), "imagefolder: cannot read '%s': %s", path,
                       strerror(errno));
    } else if (!S_ISREG(sb.st_mode)) {
        st = cnn_error(CNN_ERR_IO, "imagefolder: cannot read '%s': not a regular file", path);
    } else if (sb.st_size > ((off_t)1 << 28)) {
        st = cnn_error(CNN_ERR_FORMAT, "imagefolder: '%s' is %lld bytes; image files over 256 MiB "
                       "are not supported", path, (long long)sb.st_size);
    } else if (!(*out = malloc((size_t)sb.st_size + 1))) {
        st = cnn_error(CNN_ERR_OUT_OF_MEMORY, "imagefolder: no memory for the %lld bytes of '%s'",
                       (long long)sb.st_size, path);
    } else if ((*len = fread(*out, 1, (size_t)sb.st_size, f)) != (size_t)sb.st_size) {
        st = cnn_error(CNN_ERR_IO, "imagefolder: cannot read '%s': %s", path,
                       ferror(f) ? strerror(errno) : "it shrank while being read");
    }
    fclose(f);
    if (st != CNN_OK) {
        free(*out);
        *out = NULL;
    }
    return st;
}

static cnn_status folder_decode(const cnn_dataset *ds, int64_t i, cnn_image_u8 *img,
                                bool *process_fault)
{
    const folder_impl *m = ds->impl;
    const char *path = m->paths[i];
    unsigned char *file = NULL, *pix = NULL;
    size_t len = 0;
    CNN_TRY(read_image_file(path, &file, &len, process_fault));
    int w = 0, h = 0;
    cnn_status st = CNN_OK;
    const char *refused = cnn_image_refusal(file, len);
    if (refused) {
        st = cnn_error(CNN_ERR_FORMAT, "imagefolder: cannot decode '%s' (%zu bytes): %s", path,
                       len, refused);
    } else if (!cnn_image_info(file, len, &w, &h) || (st = check_size(path, w, h)) == CNN_OK) {
        /* The header's size was checked before anything is allocated for the pixels. */
        const char *why = NULL;
        pix = cnn_image_decode(file, len, ds->channels, &w, &h, &why);
        if (!pix && why && !strcmp(why, CNN_IMAGE_OUT_OF_MEMORY)) {
            st = cnn_error(CNN_ERR_OUT_OF_MEMORY, "imagefolder: out of memory decoding '%s' "
                           "(%zu bytes)", path, len);
        } else if (!pix) {
            st = cnn_error(CNN_ERR_FORMAT, "imagefolder: cannot decode '%s' (%zu bytes): %s", path,
                           len, why ? why : "unknown reason");
        } else if (w <= 0 || h <= 0) {
            st = cnn_error(CNN_ERR_FORMAT, "imagefolder: '%s' decodes to a %dx%d image", path, w,
                           h);
        } else {
            st = check_size(path, w, h);
        }
    }
    free(file);
    if (st != CNN_OK) {
        cnn_image_free(pix);
        return st;
    }
    *img = (cnn_image_u8){pix, h, w, ds->channels, true};
    return CNN_OK;
}

static void folder_sample_name(const cnn_dataset *ds, int64_t i, char *buf, size_t n)
{
    const folder_impl *m = ds->impl;
    snprintf(buf, n, "%s", m->paths[i]);
}

static void folder_destroy_impl(void *p)
{
    folder_impl *m = p;
    if (!m) return;
    for (size_t i = 0; i < m->n; i++) free(m->paths[i]);
    free(m->paths);
    free(m);
}

static const cnn_dataset_ops g_folder_ops = {folder_decode, folder_sample_name,
                                             folder_destroy_impl};

cnn_status cnn_imagefolder_create(const char *root, const char *split, int channels,
                                  cnn_dataset **out)
{
    CNN_CHECK(out, CNN_ERR_INVALID_ARG, "imagefolder_create: out is NULL");
    *out = NULL;
    CNN_CHECK(root && split, CNN_ERR_INVALID_ARG, "imagefolder_create: root or split is NULL");
    CNN_CHECK(channels == 1 || channels == 3, CNN_ERR_INVALID_ARG,
              "imagefolder_create: channels must be 1 or 3, got %d", channels);
    char dir[4096], cdir[4096];
    CNN_TRY(check_folder(root, "root", "does not exist"));
    CNN_TRY(join_path(root, split, dir, sizeof dir));
    CNN_TRY(check_folder(dir, "split folder", "does not exist"));

    cnn_status st = CNN_OK;
    strlist classes = {0}, all = {0};
    int64_t *labels = NULL;
    size_t lcap = 0;
    cnn_dataset *ds = cnn_dataset_alloc(&g_folder_ops);
    folder_impl *m = calloc(1, sizeof *m);
    if (!ds || !m) {
        free(m);
        cnn_dataset_destroy(&ds);
        return cnn_error(CNN_ERR_OUT_OF_MEMORY, "imagefolder_create: out of memory");
    }
    ds->impl = m;
    ds->channels = channels;
    CNN_TRYG(list_class_folders(dir, &classes));
    if (classes.n == 0) {
        st = cnn_error(CNN_ERR_NOT_FOUND, "imagefolder: '%s' has no class folders", dir);
        goto done;
    }
    if (classes.n > (1u << 30)) {
        st = cnn_error(CNN_ERR_FORMAT, "imagefolder: '%s' has %zu class folders", dir, classes.n);
        goto done;
    }
    for (size_t c = 0; c < classes.n; c++) {
        CNN_TRYG(join_path(dir, classes.v[c], cdir, sizeof cdir));
        CNN_TRYG(list_class(ds, classes.v[c], c, cdir, &all, &labels, &lcap));
    }
    if (all.n == 0) {
        st = cnn_error(CNN_ERR_NOT_FOUND, "imagefolder: no image files under '%s' (%zu classes)",
                       dir, classes.n);
        goto done;
    }
    ds->n = (int64_t)all.n;
    ds->labels = labels;
    labels = NULL;
    m->paths = all.v;
    m->n = all.n;
    all = (strlist){0};
    ds->num_classes = (int)classes.n;
    ds->class_names = classes.v;
    classes = (strlist){0};
    static const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    for (int c = 0; c < 3; c++) {
        /* A gray image is the luma of an RGB one: use its weighted mean/std. */
        ds->mean[c] = channels == 3 ? mean[c] : 0.449f;
        ds->std[c] = channels == 3 ? std[c] : 0.226f;
    }
    *out = ds;
    ds = NULL;
done:
    free(labels);
    strlist_free(&classes);
    strlist_free(&all);
    cnn_dataset_destroy(&ds);
    return st;
}
