/* test_train_report.c — the training tool's report (tools/common/train_report.c), tested
 * directly: the per-class table (support: true labels) and its macro average against sklearn's
 * classification_report; the confusion matrix and confusion.csv; the epoch history. */
#include "test.h"

#include "scratch.h"
#include "../tools/common/train_report.h"

#include <dirent.h>
#include <errno.h>
#include <locale.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *class_name(const void *ctx, int i)
{
    (void)ctx;
    static const char *names[] = {"a", "b", "c"};
    return names[i];
}

/* The "macro avg" line of the report of e: precision, recall, f1. */
static bool macro_of(const tr_eval *e, double *p, double *r, double *f1)
{
    char buf[4096] = "";
    FILE *f = fmemopen(buf, sizeof buf - 1, "w");
    if (!f) return false;
    tr_eval_print_report(e, class_name, NULL, NULL, f);
    fclose(f);
    const char *m = strstr(buf, "macro avg");
    return m && sscanf(m, "macro avg %lf %lf %lf", p, r, f1) == 3;
}

/* sklearn averages over every class that is a label or a prediction: class 2 below is never a
 * label but is predicted twice, and counts with precision 0 and recall 0. Before, it was left
 * out, and half the predictions being wrong still gave a macro precision of 1. */
TEST(train_report_macro_average_as_sklearn)
{
    tr_eval e;
    REQUIRE(tr_eval_init(&e, 3));
    /* y_true [0, 0, 1, 1], y_pred [0, 2, 1, 2] as one-hot logits */
    const float logits[12] = {1, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 1};
    const int64_t labels[4] = {0, 0, 1, 1};
    tr_eval_add(&e, logits, labels, 4, 0.5);
    double p = 0, r = 0, f1 = 0;
    CHECK(macro_of(&e, &p, &r, &f1));
    /* per class: 0: p 1, r 1/2, f1 2/3; 1: the same; 2: p 0, r 0, f1 0. sklearn's
     * classification_report([0, 0, 1, 1], [0, 2, 1, 2]) macro avg: 0.6667 0.3333 0.4444 */
    CHECK_NEAR(p, 2.0 / 3.0, 1e-4);
    CHECK_NEAR(r, 1.0 / 3.0, 1e-4);
    CHECK_NEAR(f1, 4.0 / 9.0, 1e-4);
    /* A class neither a label nor a prediction stays out: only classes 0 and 1 here. */
    tr_eval_free(&e);
    REQUIRE(tr_eval_init(&e, 3));
    const float l2[12] = {1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 1, 0};
    tr_eval_add(&e, l2, labels, 4, 0.5);
    CHECK(macro_of(&e, &p, &r, &f1));
    CHECK_NEAR(p, 1.0, 1e-9);
    CHECK_NEAR(r, 1.0, 1e-9);
    CHECK_NEAR(f1, 1.0, 1e-9);
    tr_eval_free(&e);
}

static const char *utf8_name(const void *ctx, int i)
{
    (void)ctx;
    static const char *names[] = {"\xc3\x89t\xc3\xa9", /* Été */
                                  "\xe6\x97\xa5\xe6\x9c\xac", /* 日本 */
                                  /* é then 13 CJK characters (27 columns) */
                                  "\xc3\xa9\xe3\x81\x93\xe3\x82\x93\xe3\x81\xab\xe3\x81\xa1"
                                  "\xe3\x81\xaf\xe4\xb8\x96\xe7\x95\x8c\xe3\x81\xae\xe7\x8c\xab"
                                  "\xe5\x86\x99\xe7\x9c\x9f\xe3\x81\xa7\xe3\x81\x99"};
    return names[i];
}

/* Class names are UTF-8: the report's columns count terminal columns (a CJK character takes
 * two), and a name too long is cut between characters. It was cut at 24 bytes, in the middle of
 * a character (invalid UTF-8 in the output), and names with accents or CJK shifted the columns
 * after them. */
TEST(train_report_cuts_and_pads_utf8_names_by_columns)
{
    tr_eval e;
    REQUIRE(tr_eval_init(&e, 3));
    const float logits[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1};
    const int64_t labels[3] = {0, 1, 2};
    tr_eval_add(&e, logits, labels, 3, 0.5);
    char buf[4096] = "";
    FILE *f = fmemopen(buf, sizeof buf - 1, "w");
    REQUIRE(f);
    tr_eval_print_report(&e, utf8_name, NULL, NULL, f);
    fclose(f);
    /* the table: name in 24 columns, then " %9.4f" */
    CHECK(strstr(buf, "   0 \xc3\x89t\xc3\xa9"
          "                         1.0000"));
    CHECK(strstr(buf, "   1 \xe6\x97\xa5\xe6\x9c\xac"
          "                        1.0000"));
    /* é + 11 CJK characters are 23 columns; the 12th would make 25 */
    CHECK(strstr(buf, "   2 \xc3\xa9\xe3\x81\x93\xe3\x82\x93\xe3\x81\xab\xe3\x81\xa1\xe3\x81\xaf"
                      "\xe4\xb8\x96\xe7\x95\x8c\xe3\x81\xae\xe7\x8c\xab\xe5\x86\x99\xe7\x9c\x9f"
                      "     1.0000"));
    /* the confusion matrix: name in 23 columns, then " %5lld" */
    CHECK(strstr(buf, "   0 \xc3\x89t\xc3\xa9                         1     0     0"));
    CHECK(strstr(buf, "   2 \xc3\xa9\xe3\x81\x93\xe3\x82\x93\xe3\x81\xab\xe3\x81\xa1\xe3\x81\xaf"
                      "\xe4\xb8\x96\xe7\x95\x8c\xe3\x81\xae\xe7\x8c\xab\xe5\x86\x99\xe7\x9c\x9f"
                      "     0     0     1"));
    tr_eval_free(&e);
}

/* Emoji and symbols a terminal shows two columns wide, beyond CJK: U+2615 (hot beverage),
 * U+1F680 (rocket), U+2705, U+2B50, U+1FAE0, which were counted as one column each and shifted
 * the rest of their row by one; a combining accent takes none; a character the C library calls
 * unprintable (wcwidth -1: U+0378, unassigned; U+0085, a C1 control) takes one, as the
 * terminal's replacement glyph does. */
TEST(train_report_counts_columns_as_a_terminal_shows_them)
{
    static const char *const cells[] = {"tea\xe2\x98\x95", "\xf0\x9f\x9a\x80", "\xe2\x9c\x85",
                                        "\xe2\xad\x90", "\xf0\x9f\xab\xa0", "e\xcc\x81",
                                        "a\xcd\xb8", "b\xc2\x85"};
    static const int cols[] = {5, 2, 2, 2, 2, 1, 2, 2};
    locale_t utf8 = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
    if (!utf8) {
        cnn_test_skip("no C.UTF-8 locale: the report counts columns from its own short table");
        return;
    }
    freelocale(utf8);
    for (int i = 0; i < 8; i++) {
        char buf[64] = "";
        FILE *f = fmemopen(buf, sizeof buf - 1, "w");
        REQUIRE(f);
        tr_print_cell(f, cells[i], 8, true);
        fclose(f);
        size_t pad = strlen(buf) - strlen(cells[i]);
        if (strncmp(buf, cells[i], strlen(cells[i])) != 0 || (int)pad != 8 - cols[i])
            cnn_test_fail(__FILE__, __LINE__, "cell %d: '%s' padded with %zu spaces, not %d", i,
                          buf, pad, 8 - cols[i]);
    }
}

static const char *letter_name(const void *ctx, int i)
{
    (void)ctx;
    static const char *names[] = {"a", "b", "c", "d", "e", "f", "g"};
    return names[i];
}

/* The confusion.csv tr_eval_write_confusion_csv writes for e into buf (n bytes), through a
 * scratch folder it removes; false when it is not written. */
static bool confusion_csv_of(const tr_eval *e, const char *(*names)(const void *, int), char *buf,
                             size_t n)
{
    scratch s;
    char path[200];
    size_t len = 0;
    if (!scratch_open(&s)) return false;
    snprintf(path, sizeof path, "%s/confusion.csv", s.dir);
    unsigned char *text =
        tr_eval_write_confusion_csv(e, names, NULL, path) ? scratch_read(path, &len) : NULL;
    snprintf(buf, n, "%.*s", (int)len, text ? (const char *)text : "");
    bool ok = text != NULL;
    free(text);
    scratch_close(&s);
    return ok;
}

/* Top-1 and top-5 count the true class's rank: top-5 means at most 4 classes score higher.
 * Ties go to the lower index (as argmax), both for the rank and the prediction, so equal
 * logits do not make every label a hit. The confusion matrix has the true class in rows (in
 * memory and in confusion.csv), the prediction in columns; the loss is a mean over samples. */
TEST(train_report_top_k_ties_and_confusion_orientation)
{
    tr_eval e;
    REQUIRE(tr_eval_init(&e, 7));
    const float logits[4][7] = {
        {5, 4, 3, 2, 1, 0, 0.5f}, /* label 6: rank 5, a top-5 miss; predicted 0 */
        {5, 4, 3, 2, 1, 0, 0},    /* label 4: rank 4, a top-5 hit */
        {0, 0, 0, 0, 0, 0, 0},    /* label 3: ties with 0, 1 and 2, rank 3; predicted 0 */
        {0, 0, 0, 0, 0, 0, 0},    /* label 0: rank 0, a top-1 hit */
    };
    const int64_t labels[4] = {6, 4, 3, 0};
    tr_eval_add(&e, &logits[0][0], labels, 4, 0.5);
    CHECK(e.n == 4 && e.top1 == 1 && e.top5 == 3);
    CHECK_NEAR(tr_eval_top1(&e), 0.25, 1e-12);
    CHECK_NEAR(tr_eval_top5(&e), 0.75, 1e-12);
    for (int t = 0; t < 7; t++)
        for (int p = 0; p < 7; p++) {
            const int64_t want = p == 0 && (t == 0 || t == 3 || t == 4 || t == 6);
            if (e.confusion[t * 7 + p] != want)
                cnn_test_fail(__FILE__, __LINE__, "confusion[true %d][predicted %d] = %lld", t,
                              p, (long long)e.confusion[t * 7 + p]);
        }
    const float two[2][7] = {{0, 0, 0, 0, 0, 1, 0}, {0, 0, 0, 0, 0, 1, 0}};
    const int64_t l2[2] = {5, 2};
    tr_eval_add(&e, &two[0][0], l2, 2, 2.0);
    CHECK_NEAR(tr_eval_loss(&e), (4 * 0.5 + 2 * 2.0) / 6, 1e-12);
    char buf[512];
    CHECK(confusion_csv_of(&e, letter_name, buf, sizeof buf));
    CHECK(strstr(buf, "true\\predicted,\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\"\n") == buf);
    CHECK(strstr(buf, "\n\"a\",1,0,0,0,0,0,0\n") != NULL);
    CHECK(strstr(buf, "\n\"c\",0,0,0,0,0,1,0\n") != NULL);
    CHECK(strstr(buf, "\n\"d\",1,0,0,0,0,0,0\n") != NULL);
    CHECK(strstr(buf, "\n\"f\",0,0,0,0,0,1,0\n") != NULL);
    if (cnn_test_failed()) printf("%s", buf);
    tr_eval_free(&e);
}

/* Writes old content to path; true on success. */
static bool write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f) return false;
    bool ok = fputs(text, f) >= 0;
    return fclose(f) == 0 && ok;
}

/* True when path holds exactly text. */
static bool holds_text(const char *path, const char *text)
{
    char buf[256] = "";
    FILE *f = fopen(path, "r");
    if (!f) return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    return n == strlen(text) && memcmp(buf, text, n) == 0;
}

/* A curves.png, metrics.csv or confusion.csv that cannot be written in full (a full disk; here
 * a file size limit: writes past it fail with EFBIG) is an error naming the file, and the copy
 * from the epoch before stays as it was: no truncated file, no temporary left behind. Before,
 * the PNG writer ignored failed writes (success, a truncated file), and all three were
 * rewritten in place. */
TEST(train_report_failed_writes_leave_the_old_files)
{
    char dir[] = "/tmp/cnn_report_XXXXXX", png[64], csv[64], conf[64];
    REQUIRE(mkdtemp(dir));
    snprintf(png, sizeof png, "%s/curves.png", dir);
    snprintf(csv, sizeof csv, "%s/metrics.csv", dir);
    snprintf(conf, sizeof conf, "%s/confusion.csv", dir);
    REQUIRE(write_text(png, "old png") && write_text(csv, "old csv") &&
            write_text(conf, "old confusion"));
    tr_history h = {0};
    tr_epoch_row row = {1, 2.0, 0.5, 1.5, 0.6, 0.9, 0.01, 3.0, 0.1};
    REQUIRE(tr_history_add(&h, &row));
    tr_eval e;
    REQUIRE(tr_eval_init(&e, 3));
    int pid = cnn_test_fork(10);
    REQUIRE(pid >= 0);
    if (pid == 0) {
        signal(SIGXFSZ, SIG_IGN); /* a write past the limit fails with EFBIG instead */
        struct rlimit cap = {40, 40};
        if (setrlimit(RLIMIT_FSIZE, &cap) != 0) _exit(3);
        char err[512] = "";
        int bad = 0;
        if (tr_plot_curves(&h, png, err, sizeof err) || !strstr(err, png) ||
            !strstr(err, "too large"))
            bad |= 1;
        if (tr_history_write_csv(&h, csv) || errno != EFBIG) bad |= 2;
        if (tr_eval_write_confusion_csv(&e, class_name, NULL, conf) || errno != EFBIG) bad |= 4;
        _exit(bad);
    }
    CHECK(cnn_test_child_ok(pid));
    CHECK(holds_text(png, "old png"));
    CHECK(holds_text(csv, "old csv"));
    CHECK(holds_text(conf, "old confusion"));
    /* Nothing else in the folder (no .part files), and a write that fits replaces the file. */
    DIR *d = opendir(dir);
    int entries = 0;
    for (struct dirent *de; d && (de = readdir(d));) entries += de->d_name[0] != '.';
    if (d) closedir(d);
    CHECK(entries == 3);
    CHECK(tr_history_write_csv(&h, csv));
    CHECK(!holds_text(csv, "old csv"));
    remove(png);
    remove(csv);
    remove(conf);
    rmdir(dir);
    tr_eval_free(&e);
    tr_history_free(&h);
}

/* A report file that is a symbolic link (say metrics.csv linked into a dashboard's folder) is
 * written through, as checkpoints are: the link stays, the file it names gets the new contents
 * and keeps its permissions, and nothing is left beside either. Before, the link was replaced
 * by a new file with default permissions, and the linked file went stale. */
TEST(train_report_files_write_through_links_and_keep_permissions)
{
    char dir[] = "/tmp/cnn_report_XXXXXX", real[64], csv[64], png[64], png_real[64];
    REQUIRE(mkdtemp(dir));
    snprintf(real, sizeof real, "%s/kept.csv", dir);
    snprintf(csv, sizeof csv, "%s/metrics.csv", dir);
    snprintf(png_real, sizeof png_real, "%s/kept.png", dir);
    snprintf(png, sizeof png, "%s/curves.png", dir);
    REQUIRE(write_text(real, "old csv") && chmod(real, 0640) == 0 && symlink("kept.csv", csv) == 0);
    REQUIRE(write_text(png_real, "old png") && chmod(png_real, 0604) == 0 &&
            symlink(png_real, png) == 0);
    tr_history h = {0};
    tr_epoch_row row = {1, 2.0, 0.5, 1.5, 0.6, 0.9, 0.01, 3.0, 0.1};
    REQUIRE(tr_history_add(&h, &row));
    char err[512] = "";
    CHECK(tr_history_write_csv(&h, csv));
    CHECK(tr_plot_curves(&h, png, err, sizeof err));
    struct stat sb;
    CHECK(lstat(csv, &sb) == 0 && S_ISLNK(sb.st_mode));
    CHECK(lstat(png, &sb) == 0 && S_ISLNK(sb.st_mode));
    CHECK(stat(real, &sb) == 0 && (sb.st_mode & 0777) == 0640 && !holds_text(real, "old csv"));
    CHECK(stat(png_real, &sb) == 0 && (sb.st_mode & 0777) == 0604 &&
          !holds_text(png_real, "old png"));
    FILE *f = fopen(real, "r");
    char line[32] = "";
    CHECK(f && fgets(line, sizeof line, f) && !strncmp(line, "epoch,", 6));
    if (f) fclose(f);
    DIR *d = opendir(dir);
    int entries = 0;
    for (struct dirent *de; d && (de = readdir(d));) entries += de->d_name[0] != '.';
    if (d) closedir(d);
    CHECK(entries == 4);
    /* A new file (no old one to take permissions from) gets the usual 0666 less the umask. */
    char fresh[80];
    snprintf(fresh, sizeof fresh, "%s/fresh.csv", dir);
    mode_t was = umask(022);
    CHECK(tr_history_write_csv(&h, fresh));
    umask(was);
    CHECK(stat(fresh, &sb) == 0 && (sb.st_mode & 07777) == 0644);
    remove(fresh);
    remove(csv), remove(real), remove(png), remove(png_real);
    rmdir(dir);
    tr_history_free(&h);
}

/* The support column is sklearn's: the number of samples whose TRUE class is the row's (a row
 * sum of the confusion matrix), not how often the class was predicted; the macro line's is the
 * sample count. classification_report([0, 0, 1, 1], [0, 2, 1, 2]) supports: 2, 2, 0; total 4.
 * (The predicted counts, a column sum, would be 1, 1, 2.) */
static const char *abc_name(const void *ctx, int i)
{
    (void)ctx;
    static const char *names[] = {"a", "b", "c"};
    return names[i];
}

TEST(train_report_support_counts_true_labels)
{
    tr_eval e;
    REQUIRE(tr_eval_init(&e, 3));
    const float logits[12] = {1, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 1}; /* predicted 0, 2, 1, 2 */
    const int64_t labels[4] = {0, 0, 1, 1};
    tr_eval_add(&e, logits, labels, 4, 0.5);
    char buf[4096] = "";
    FILE *f = fmemopen(buf, sizeof buf - 1, "w");
    REQUIRE(f);
    tr_eval_print_report(&e, abc_name, NULL, NULL, f);
    fclose(f);
    const long long want[3] = {2, 2, 0};
    for (int c = 0; c < 3; c++) {
        char head[16];
        snprintf(head, sizeof head, "\n%4d %s ", c, abc_name(NULL, c));
        const char *row = strstr(buf, head);
        double p, r, f1;
        long long support = -1;
        CHECK(row && sscanf(row + strlen(head), "%lf %lf %lf %lld", &p, &r, &f1, &support) == 4);
        if (support != want[c])
            cnn_test_fail(__FILE__, __LINE__, "class %d: support %lld, want %lld", c, support,
                          want[c]);
    }
    const char *m = strstr(buf, "macro avg");
    double p, r, f1;
    long long total = -1;
    CHECK(m && sscanf(m, "macro avg %lf %lf %lf %lld", &p, &r, &f1, &total) == 4 && total == 4);
    if (cnn_test_failed()) printf("%s", buf);
    tr_eval_free(&e);
}

/* A label outside [0, k) (a loader bug, or a checkpoint of fewer classes) is no sample of any
 * class: it is neither a hit nor a row of the confusion matrix. Counted, label k would read
 * the next sample's logits as its own and write past the matrix. */
TEST(train_report_labels_out_of_range_are_skipped)
{
    tr_eval e;
    REQUIRE(tr_eval_init(&e, 3));
    /* Label 3 of the first sample, read as a class, would take the second sample's 9. */
    const float logits[6] = {0, 1, 0, 9, 0, 0};
    const int64_t labels[2] = {3, -1};
    tr_eval_add(&e, logits, labels, 2, 0.5);
    CHECK(e.top1 == 0 && e.top5 == 0);
    for (int i = 0; i < 9; i++) CHECK(e.confusion[i] == 0);
    tr_eval_free(&e);
}

/* "c<i>" for any class index. */
static const char *numbered_name(const void *ctx, int i)
{
    (void)ctx;
    static char names[32][8];
    snprintf(names[i % 32], sizeof names[0], "c%d", i);
    return names[i % 32];
}

/* The confusion matrix is printed up to 20 classes (at 6 columns each, it still fits a wide
 * terminal); from 21 on, the report names the CSV this evaluation's matrix went to instead, and
 * where none was written (--eval-only writes nothing) it prints the matrix whatever its size:
 * it once pointed --eval-only to a confusion.csv of another evaluation, or to none. */
TEST(train_report_prints_the_matrix_up_to_20_classes)
{
    static char buf[32768];
    for (int k = 20; k <= 21; k++)
        for (int with_csv = 0; with_csv < 2; with_csv++) {
            tr_eval e;
            REQUIRE(tr_eval_init(&e, k));
            memset(buf, 0, sizeof buf);
            FILE *f = fmemopen(buf, sizeof buf - 1, "w");
            REQUIRE(f);
            tr_eval_print_report(&e, numbered_name, NULL, with_csv ? "runs/x/confusion.csv" : NULL,
                                 f);
            fclose(f);
            bool matrix = strstr(buf, "confusion matrix (rows: true class") != NULL;
            bool pointer = strstr(buf, "see runs/x/confusion.csv)") != NULL;
            bool want_pointer = k > 20 && with_csv;
            if (matrix == want_pointer || pointer != want_pointer)
                cnn_test_fail(__FILE__, __LINE__, "%d classes, csv %d: matrix %d, pointer %d", k,
                              with_csv, matrix, pointer);
            tr_eval_free(&e);
        }
}

static const char *quoted_name(const void *ctx, int i)
{
    (void)ctx;
    static const char *names[] = {"a,b", "say \"hi\""};
    return names[i];
}

/* Class names come from folder names: a comma stays inside its quoted field, and a quote is
 * doubled (RFC 4180), else the row splits into more columns than there are classes. */
TEST(train_report_confusion_csv_quotes_names)
{
    tr_eval e;
    REQUIRE(tr_eval_init(&e, 2));
    const float logits[2] = {0, 1};
    const int64_t labels[1] = {1};
    tr_eval_add(&e, logits, labels, 1, 0.5);
    char buf[256];
    CHECK(confusion_csv_of(&e, quoted_name, buf, sizeof buf));
    CHECK(!strcmp(buf, "true\\predicted,\"a,b\",\"say \"\"hi\"\"\"\n"
                       "\"a,b\",0,0\n"
                       "\"say \"\"hi\"\"\",0,1\n"));
    if (cnn_test_failed()) printf("%s", buf);
    tr_eval_free(&e);
}

/* The history stored in checkpoints reads back bit-exact; text after a row that is not ';'
 * and another row makes it malformed (a cut or edited checkpoint), and the history given is
 * then left as it was. */
TEST(train_report_history_round_trip_and_junk)
{
    tr_history h = {0}, back = {0};
    tr_epoch_row rows[2] = {{1, 2.0 / 3, 0.1, 1.5, 0.6, 0.9, 1e-3 / 7, 3.25, 0.125},
                            {2, 0.5, 0.7, 1.25, 0.65, 0.95, 2e-4, 3.5, 0.0625}};
    REQUIRE(tr_history_add(&h, &rows[0]) && tr_history_add(&h, &rows[1]));
    char *s = tr_history_serialize(&h);
    REQUIRE(s);
    CHECK(tr_history_parse(&back, s));
    REQUIRE(back.n == 2);
    for (int i = 0; i < 2; i++) {
        const tr_epoch_row *a = &h.rows[i], *b = &back.rows[i];
        CHECK(a->epoch == b->epoch && a->train_loss == b->train_loss &&
              a->train_acc == b->train_acc && a->val_loss == b->val_loss &&
              a->val_top1 == b->val_top1 && a->val_top5 == b->val_top5 && a->lr == b->lr &&
              a->seconds == b->seconds && a->data_wait == b->data_wait);
    }
    free(s);
    static const char *const bad[] = {"1,2,3,4,5,6,7,8,9x", "1,2,3,4,5,6,7,8,9;2,2",
                                      "1,2,3,4,5,6,7,8,9 1,2,3,4,5,6,7,8,9", "1,2,3"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (tr_history_parse(&back, bad[i]))
            cnn_test_fail(__FILE__, __LINE__, "'%s' read as a history", bad[i]);
        CHECK(back.n == 2 && back.rows[1].epoch == 2);
    }
    tr_history_free(&h);
    tr_history_free(&back);
}
