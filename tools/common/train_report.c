/* train_report.c — validation statistics, the per-class report, the confusion matrix and the
 * per-epoch history (CSV and checkpoint string) of the training tool. The PNG plot lives in
 * plot_png.c. Prints only where asked to, never exits. */
#include "train_report.h"

#include <errno.h>
#include <limits.h>
#include <locale.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <wchar.h>

bool tr_eval_init(tr_eval *e, int num_classes)
{
    memset(e, 0, sizeof *e);
    e->k = num_classes;
    e->confusion = calloc((size_t)num_classes * (size_t)num_classes, sizeof *e->confusion);
    return e->confusion != NULL;
}

void tr_eval_free(tr_eval *e)
{
    free(e->confusion);
    memset(e, 0, sizeof *e);
}

void tr_eval_add(tr_eval *e, const float *logits, const int64_t *labels, int64_t b,
                 double loss_mean)
{
    const int k = e->k;
    for (int64_t i = 0; i < b; i++) {
        const float *l = logits + i * k;
        int64_t y = labels[i];
        if (y < 0 || y >= k) continue;
        /* rank of the true class; ties go to the lower index, as argmax does */
        int rank = 0, pred = 0;
        for (int j = 0; j < k; j++) {
            if (l[j] > l[y] || (l[j] == l[y] && j < y)) rank++;
            if (l[j] > l[pred]) pred = j;
        }
        e->confusion[y * k + pred]++;
        e->top1 += rank == 0;
        e->top5 += rank < 5;
    }
    e->n += b;
    e->loss_sum += loss_mean * (double)b;
}

double tr_eval_loss(const tr_eval *e) { return e->n ? e->loss_sum / (double)e->n : 0; }
double tr_eval_top1(const tr_eval *e) { return e->n ? (double)e->top1 / (double)e->n : 0; }
double tr_eval_top5(const tr_eval *e) { return e->n ? (double)e->top5 / (double)e->n : 0; }

/* One UTF-8 character at s: its code point, and its length in *len (an invalid byte: 1, and
 * U+FFFD). */
static uint32_t utf8_next(const unsigned char *s, int *len)
{
    int n = s[0] < 0x80 ? 1 : s[0] >= 0xC2 && s[0] <= 0xDF ? 2 : s[0] >= 0xE0 && s[0] <= 0xEF ? 3
          : s[0] >= 0xF0 && s[0] <= 0xF4 ? 4 : 0;
    uint32_t c = n == 1 ? s[0] : n == 2 ? s[0] & 0x1Fu : n == 3 ? s[0] & 0x0Fu : s[0] & 0x07u;
    for (int i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) n = 0; /* also stops at the string's end */
        if (!n) break;
        c = c << 6 | (s[i] & 0x3Fu);
    }
    *len = n ? n : 1;
    return n ? c : 0xFFFD;
}

/* The columns a character takes on a terminal: what the C library's wcwidth says in its
 * UTF-8 locale, as terminals count them (it knows the Unicode tables: every wide emoji, ☕ and
 * 🚀 too), 1 for what it calls unprintable. Where there is no such locale, the common cases:
 * 2 for East Asian wide and full-width characters (CJK, Hangul, kana, most emoji), 0 for
 * combining marks and zero-width spaces, else 1. */
static int columns_of(uint32_t c)
{
    static locale_t utf8;
    static int tried;
    if (!tried) { /* the tool prints from one thread */
        utf8 = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
        tried = 1;
    }
    if (utf8) {
        locale_t was = uselocale(utf8);
        int w = wcwidth((wchar_t)c);
        uselocale(was);
        return w < 0 ? 1 : w;
    }
    static const uint32_t zero[][2] = {{0x0300, 0x036F}, {0x200B, 0x200F}, {0xFE00, 0xFE0F}};
    static const uint32_t wide[][2] = {{0x1100, 0x115F},   {0x2E80, 0x303E},   {0x3041, 0x33FF},
                                       {0x3400, 0x4DBF},   {0x4E00, 0x9FFF},   {0xA000, 0xA4CF},
                                       {0xAC00, 0xD7A3},   {0xF900, 0xFAFF},   {0xFE30, 0xFE4F},
                                       {0xFF00, 0xFF60},   {0xFFE0, 0xFFE6},   {0x1F300, 0x1F64F},
                                       {0x1F900, 0x1F9FF}, {0x20000, 0x3FFFD}};
    for (size_t i = 0; i < sizeof zero / sizeof *zero; i++)
        if (c >= zero[i][0] && c <= zero[i][1]) return 0;
    for (size_t i = 0; i < sizeof wide / sizeof *wide; i++)
        if (c >= wide[i][0] && c <= wide[i][1]) return 2;
    return 1;
}

void tr_print_cell(FILE *f, const char *s, int width, bool cut)
{
    int used = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        int len;
        int w = columns_of(utf8_next(p, &len));
        if (cut && used + w > width) break;
        fwrite(p, 1, (size_t)len, f);
        used += w;
        p += len;
    }
    for (; used < width; used++) fputc(' ', f);
}

void tr_eval_print_report(const tr_eval *e, const char *(*names)(const void *, int),
                          const void *ctx, const char *csv, FILE *f)
{
    const int k = e->k;
    double sp = 0, sr = 0, sf = 0;
    int counted = 0;
    fprintf(f, "%4s %-24s %9s %9s %9s %8s\n", "", "class", "precision", "recall", "f1", "support");
    for (int c = 0; c < k; c++) {
        int64_t tp = e->confusion[c * k + c], row = 0, col = 0;
        for (int j = 0; j < k; j++) {
            row += e->confusion[c * k + j];
            col += e->confusion[j * k + c];
        }
        double p = col ? (double)tp / (double)col : 0, r = row ? (double)tp / (double)row : 0;
        double f1 = p + r > 0 ? 2 * p * r / (p + r) : 0;
        /* The macro average is over the classes that occur as a label or a prediction, as
         * sklearn's classification_report: a class only predicted counts with recall 0. */
        if (row || col) {
            sp += p;
            sr += r;
            sf += f1;
            counted++;
        }
        fprintf(f, "%4d ", c);
        tr_print_cell(f, names(ctx, c), 24, true);
        fprintf(f, " %9.4f %9.4f %9.4f %8lld\n", p, r, f1, (long long)row);
    }
    if (counted)
        fprintf(f, "%4s %-24s %9.4f %9.4f %9.4f %8lld\n", "", "macro avg", sp / counted,
                sr / counted, sf / counted, (long long)e->n);
    if (k > 20 && csv) {
        fprintf(f, "(confusion matrix of %d classes: see %s)\n", k, csv);
        return;
    }
    fprintf(f, "confusion matrix (rows: true class, columns: predicted class)\n%28s", "");
    for (int j = 0; j < k; j++) fprintf(f, " %5d", j);
    fputc('\n', f);
    for (int c = 0; c < k; c++) {
        fprintf(f, "%4d ", c);
        tr_print_cell(f, names(ctx, c), 23, true);
        for (int j = 0; j < k; j++) fprintf(f, " %5lld", (long long)e->confusion[c * k + j]);
        fputc('\n', f);
    }
}

/* CSV field: quoted, with quotes doubled, since class names may hold commas. */
static void csv_field(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

FILE *tr_replace_open(const char *path, char *tmp, size_t n)
{
    /* A link is written through, as cnn_safetensors_save does: the file it names is replaced
     * (the new one beside it, with its permissions), and the link stays. */
    char real[PATH_MAX];
    const char *target = path;
    struct stat sb;
    if (lstat(path, &sb) == 0 && S_ISLNK(sb.st_mode)) {
        if (!realpath(path, real)) return NULL;
        target = real;
    }
    bool exists = stat(target, &sb) == 0;
    if ((size_t)snprintf(tmp, n, "%s.part", target) >= n) {
        errno = ENAMETOOLONG;
        return NULL;
    }
    FILE *f = fopen(tmp, "wb");
    if (f && exists && fchmod(fileno(f), sb.st_mode & 07777) != 0) {
        int err = errno;
        fclose(f);
        remove(tmp);
        errno = err;
        return NULL;
    }
    return f;
}

bool tr_replace_close(FILE *f, const char *tmp, bool ok)
{
    int err = ok ? 0 : errno ? errno : EIO;
    if (!err && ferror(f)) err = errno ? errno : EIO;
    /* On disk before the rename, so a crash leaves the old file or the new one, never an
     * empty one under the old name. */
    if (!err && (fflush(f) != 0 || fsync(fileno(f)) != 0)) err = errno;
    if (fclose(f) != 0 && !err) err = errno;
    char target[PATH_MAX];
    snprintf(target, sizeof target, "%.*s", (int)(strlen(tmp) - strlen(".part")), tmp);
    if (!err && rename(tmp, target) != 0) err = errno;
    if (err) {
        remove(tmp);
        errno = err;
        return false;
    }
    return true;
}

bool tr_eval_write_confusion_csv(const tr_eval *e, const char *(*names)(const void *, int),
                                 const void *ctx, const char *path)
{
    char tmp[PATH_MAX];
    FILE *f = tr_replace_open(path, tmp, sizeof tmp);
    if (!f) return false;
    fprintf(f, "true\\predicted");
    for (int j = 0; j < e->k; j++) {
        fputc(',', f);
        csv_field(f, names(ctx, j));
    }
    fputc('\n', f);
    for (int c = 0; c < e->k; c++) {
        csv_field(f, names(ctx, c));
        for (int j = 0; j < e->k; j++) fprintf(f, ",%lld", (long long)e->confusion[c * e->k + j]);
        fputc('\n', f);
    }
    return tr_replace_close(f, tmp, true);
}

void tr_print_bad_samples(const cnn_loader *l, const char *split, FILE *f)
{
    int n = cnn_loader_num_bad(l);
    if (!n) return;
    fprintf(f, "%d bad image(s) skipped in %s:\n", n, split);
    for (int i = 0; i < n; i++)
        fprintf(f, "  %s: %s\n", cnn_loader_bad_name(l, i), cnn_loader_bad_reason(l, i));
}

void tr_print_data_stats(cnn_loader *l, int workers, bool to_gpu, FILE *f)
{
    cnn_loader_stats s;
    cnn_loader_get_stats(l, &s);
    int64_t images = 0;
    double busy = 0;
    for (int w = 0; w < s.n_workers; w++) {
        images += s.worker_images[w];
        busy += s.decode_seconds[w];
    }
    char who[64];
    if (workers > 0) snprintf(who, sizeof who, "%d worker(s) decoded", s.n_workers);
    else snprintf(who, sizeof who, "the training loop decoded (--workers 0)");
    fprintf(f, "training data: %s %lld images at %.0f img/s %s (%lld bad); batches %s\n", who,
            (long long)images, busy > 0 ? (double)images / busy : 0.0,
            workers > 0 ? "per worker" : "while decoding", (long long)s.bad_samples,
            to_gpu ? "copied ahead to the GPU from pinned memory" : "in host memory");
}

bool tr_history_add(tr_history *h, const tr_epoch_row *r)
{
    if (h->n == h->cap) {
        int cap = h->cap ? 2 * h->cap : 16;
        tr_epoch_row *rows = realloc(h->rows, (size_t)cap * sizeof *rows);
        if (!rows) return false;
        h->rows = rows;
        h->cap = cap;
    }
    h->rows[h->n++] = *r;
    return true;
}

void tr_history_free(tr_history *h)
{
    free(h->rows);
    memset(h, 0, sizeof *h);
}

/* %.17g keeps doubles exact, so a resumed run's CSV equals an uninterrupted one's. */
#define ROW_FMT "%d,%.17g,%.17g,%.17g,%.17g,%.17g,%.17g,%.17g,%.17g"
#define ROW_ARGS(r)                                                                                \
    (r)->epoch, (r)->train_loss, (r)->train_acc, (r)->val_loss, (r)->val_top1, (r)->val_top5,      \
        (r)->lr, (r)->seconds, (r)->data_wait

char *tr_history_serialize(const tr_history *h)
{
    size_t cap = (size_t)h->n * 240 + 1;
    char *s = malloc(cap);
    if (!s) return NULL;
    size_t len = 0;
    s[0] = 0;
    for (int i = 0; i < h->n; i++)
        len +=
            (size_t)snprintf(s + len, cap - len, "%s" ROW_FMT, i ? ";" : "", ROW_ARGS(&h->rows[i]));
    return s;
}

bool tr_history_parse(tr_history *h, const char *s)
{
    tr_history out = {0};
    while (*s) {
        tr_epoch_row r;
        int used = 0;
        if (sscanf(s, "%d,%lf,%lf,%lf,%lf,%lf,%lf,%lf,%lf%n", &r.epoch, &r.train_loss, &r.train_acc,
                   &r.val_loss, &r.val_top1, &r.val_top5, &r.lr, &r.seconds, &r.data_wait,
                   &used) != 9 ||
            !tr_history_add(&out, &r)) {
            tr_history_free(&out);
            return false;
        }
        s += used;
        if (*s == ';')
            s++;
        else if (*s) {
            tr_history_free(&out);
            return false;
        }
    }
    tr_history_free(h);
    *h = out;
    return true;
}

bool tr_history_write_csv(const tr_history *h, const char *path)
{
    char tmp[PATH_MAX];
    FILE *f = tr_replace_open(path, tmp, sizeof tmp);
    if (!f) return false;
    fprintf(f, "epoch,train_loss,train_acc,val_loss,val_top1,val_top5,lr,epoch_seconds,"
               "data_wait_fraction\n");
    for (int i = 0; i < h->n; i++) {
        const tr_epoch_row *r = &h->rows[i];
        fprintf(f, "%d,%.6f,%.6f,%.6f,%.6f,%.6f,%.6g,%.3f,%.4f\n", ROW_ARGS(r));
    }
    return tr_replace_close(f, tmp, true);
}
