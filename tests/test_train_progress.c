/* test_train_progress.c — what the training tool shows of a run besides its numbers, tested
 * directly: the progress lines written when stdout is no terminal (tools/common/progress.c)
 * and curves.png (tools/common/plot_png.c). */
#include "test.h"

#include "scratch.h"
#include "../tools/common/progress.h"
#include "../tools/common/train_report.h"

#include <stb/stb_image.h>
#include <unistd.h>

/* The lines a non-terminal stdout gets from an epoch of `total` samples of which `already`
 * were trained before a resume, updated at each of done[0..n): into out (size bytes). */
static bool progress_lines(int64_t total, int64_t already, const int64_t *done, int n,
                           char *out, size_t size)
{
    scratch s;
    char path[200];
    size_t len = 0;
    if (!scratch_open(&s)) return false;
    snprintf(path, sizeof path, "%s/out.txt", s.dir);
    int pid = cnn_test_fork(10);
    if (pid == 0) {
        if (!freopen(path, "w", stdout)) _exit(3);
        tr_progress p;
        tr_progress_start(&p, "epoch 1", total, already);
        for (int i = 0; i < n; i++) tr_progress_update(&p, done[i], 0.5, 0.25);
        tr_progress_end(&p);
        fflush(stdout);
        _exit(0);
    }
    bool ok = pid > 0 && cnn_test_child_ok(pid);
    unsigned char *text = ok ? scratch_read(path, &len) : NULL;
    snprintf(out, size, "%.*s", (int)len, text ? (const char *)text : "");
    ok = text != NULL;
    free(text);
    scratch_close(&s);
    return ok;
}

/* One line per tenth of the epoch passed, from 10% to 90% (the epoch's own line ends it, so
 * no 100% line), and none for a tenth a resumed run had done before it stopped. */
TEST(train_progress_lines_once_per_tenth)
{
    char out[4096];
    const int64_t done[] = {5, 10, 12, 50, 99, 100};
    REQUIRE(progress_lines(100, 0, done, 6, out, sizeof out));
    int lines = 0;
    for (const char *p = out; *p; p++) lines += *p == '\n';
    CHECK(lines == 3);
    CHECK(strstr(out, "epoch 1  10%     10/100") == out);
    CHECK(strstr(out, "\nepoch 1  50%     50/100"));
    CHECK(strstr(out, "\nepoch 1  90%     99/100"));
    CHECK(!strstr(out, "100%"));
    if (cnn_test_failed()) printf("%s", out);
    /* resumed at 35 of 100: the 30% line was written before the interruption */
    const int64_t after[] = {39, 40};
    REQUIRE(progress_lines(100, 35, after, 2, out, sizeof out));
    CHECK(!strstr(out, " 30%"));
    CHECK(strstr(out, "epoch 1  40%     40/100") == out);
    if (cnn_test_failed()) printf("%s", out);
}

/* RGB of pixel (x, y) of an image w pixels wide. */
static bool pixel_is(const unsigned char *px, int w, int x, int y, int r, int g, int b)
{
    const unsigned char *p = px + 3 * ((size_t)y * w + x);
    return p[0] == r && p[1] == g && p[2] == b;
}

/* A run at 100% accuracy throughout (a small, easy dataset) leaves the accuracy panel no
 * range of its own: it is widened down to 99%, else its scale divides by zero and every
 * point lands off the plot. The one epoch's val top-5 (green, drawn last) sits at the
 * panel's top, x = 590 + 360 / 2, y = 80. */
TEST(train_progress_curves_of_a_perfect_run)
{
    scratch s;
    char path[200];
    REQUIRE(scratch_open(&s));
    snprintf(path, sizeof path, "%s/curves.png", s.dir);
    tr_history h = {0};
    tr_epoch_row row = {1, 0.1, 1.0, 0.05, 1.0, 1.0, 0.01, 2.0, 0.1};
    REQUIRE(tr_history_add(&h, &row));
    char err[512] = "";
    CHECK(tr_plot_curves(&h, path, err, sizeof err));
    int w = 0, ht = 0, ch = 0;
    unsigned char *px = stbi_load(path, &w, &ht, &ch, 3);
    REQUIRE(px);
    CHECK(w == 1000 && ht == 420);
    CHECK(pixel_is(px, w, 770, 80, 44, 160, 44));
    stbi_image_free(px);
    tr_history_free(&h);
    scratch_close(&s);
}

/* Each grid line of curves.png is labelled with its own value: a step of 0.25 (a largest loss
 * near 1) or 2.5 (accuracies above 90%) once drew "0.8" at 0.75 and "98" at 97.5, and losses
 * near 1e-7 were all "0.00". */
TEST(train_progress_tick_labels_are_the_grid_values)
{
    static const struct {
        double v, step;
        const char *want;
    } cases[] = {
        {0.75, 0.25, "0.75"}, {0.25, 0.25, "0.25"},   {0, 0.25, "0.00"},    {-1e-17, 0.25, "0.00"},
        {97.5, 2.5, "97.5"},  {92.5, 2.5, "92.5"},    {100, 2.5, "100.0"},  {99.75, 0.25, "99.75"},
        {7.5, 2.5, "7.5"},    {4, 2, "4"},            {15, 5, "15"},        {0.5, 0.5, "0.5"},
        {0.3, 0.1, "0.3"},    {0.06, 0.02, "0.06"},   {3e-4, 1e-4, "0.0003"},
        {7.5e-7, 2.5e-7, "7.5e-07"},                  {2e-7, 1e-7, "2e-07"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char got[32];
        tr_tick_label(cases[i].v, cases[i].step, got, sizeof got);
        if (strcmp(got, cases[i].want))
            cnn_test_fail(__FILE__, __LINE__, "tick %g (step %g): '%s', want '%s'", cases[i].v,
                          cases[i].step, got, cases[i].want);
    }
}

/* The bar fits the terminal, one column to spare: at 80 columns a 92-character line wrapped,
 * and each redraw's "\r" went back only to the start of its last row, leaving a row behind. */
TEST(train_progress_bar_fits_the_terminal)
{
    tr_progress p;
    tr_progress_start(&p, "epoch 12/100", 6000, 0);
    p.t0 -= 4000; /* 3000 images in 4000 s: an ETA over an hour, the longest form */
    const int cols[] = {200, 120, 100, 80, 60, 40, 20};
    for (size_t i = 0; i < sizeof cols / sizeof cols[0]; i++) {
        char line[256];
        tr_progress_bar_line(&p, 3000, 0.1234, 0.9, cols[i], line, sizeof line);
        if (strlen(line) > (size_t)cols[i] - 1 || strncmp(line, "epoch 12/100 [", 14))
            cnn_test_fail(__FILE__, __LINE__, "%d columns: '%s' (%zu characters)", cols[i],
                          line, strlen(line));
        /* Wide enough, all of it: the speed and the ETA's hours, at 80 columns too (the bar
         * shrinks first), with a full bar from 100. */
        if (cols[i] >= 80) CHECK(strstr(line, "img/s") && strstr(line, "ETA 1:06:40"));
        if (cols[i] >= 80) CHECK(strstr(line, "loss 0.1234  acc  90.00%"));
        if (cols[i] >= 100) CHECK(strstr(line, "[############............]  50% 1 img/s  loss"));
        if (cols[i] == 60) CHECK(!strstr(line, "img/s") && strstr(line, "loss 0.1234"));
    }
}

/* The speed shows as soon as it fits beside a bar shrunk to 8: at the narrowest width that
 * shows it, the line fills the row but one column exactly (it was dropped a column early, or
 * kept at one too few). */
TEST(train_progress_bar_keeps_the_speed_wherever_it_fits)
{
    tr_progress p;
    tr_progress_start(&p, "epoch 3/12", 6000, 0);
    p.t0 -= 40; /* 3000 images in 40 s: 75 img/s */
    int first = 0;
    char line[256];
    for (int cols = 40; cols <= 140 && !first; cols++) {
        tr_progress_bar_line(&p, 3000, 0.1234, 0.9, cols, line, sizeof line);
        if (strstr(line, "img/s")) first = cols;
    }
    REQUIRE(first > 0);
    tr_progress_bar_line(&p, 3000, 0.1234, 0.9, first, line, sizeof line);
    CHECK(strlen(line) == (size_t)first - 1);
    CHECK(strstr(line, "[####....]  50% 75 img/s  loss 0.1234"));
}
