/* plot_png.c — curves.png of the training tool: loss and accuracy per epoch in two panels with
 * axes, ticks and labels drawn with a tiny built-in 3x5 bitmap font, written with
 * stb_image_write (implementation in libstb.a). No other drawing library, no printing. */
#include "train_report.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <stb/stb_image_write.h>

#define IMG_W 1000
#define IMG_H 420
#define FONT_SCALE 2

typedef struct canvas {
    unsigned char *px; /* IMG_W * IMG_H RGB */
} canvas;
typedef struct rgb {
    unsigned char r, g, b;
} rgb;

static const rgb BLACK = {0, 0, 0}, GRID = {225, 225, 225}, BLUE = {31, 119, 180},
                 ORANGE = {255, 127, 14}, GREEN = {44, 160, 44};

/* 3x5 glyphs, rows top to bottom, '#' = ink. Only what the labels use. */
static const struct glyph {
    char c;
    const char *rows;
} FONT[] = {
    {'0', "####.##.##.####"}, {'1', ".#.##..#..#.###"}, {'2', "###..#####..###"},
    {'3', "###..####..####"}, {'4', "#.##.####..#..#"}, {'5', "####..###..####"},
    {'6', "####..####.####"}, {'7', "###..#..#..#..#"}, {'8', "####.#####.####"},
    {'9', "####.####..####"}, {'.', ".............#."}, {'-', "......###......"},
    {'%', "#.#..#.#.#..#.#"}, {'A', ".#.#.#####.##.#"}, {'C', "####..#..#..###"},
    {'E', "####..##.#..###"}, {'H', "#.##.#####.##.#"}, {'I', "###.#..#..#.###"},
    {'L', "#..#..#..#..###"}, {'N', "##.#.##.##.##.#"}, {'O', "####.##.##.####"},
    {'P', "####.#####..#.."}, {'R', "##.#.###.#.##.#"}, {'S', "####..###..####"},
    {'T', "###.#..#..#..#."}, {'U', "#.##.##.##.####"}, {'V', "#.##.##.##.#.#."},
    {'Y', "#.##.#.#..#..#."},
};

static void put(canvas *c, int x, int y, rgb col)
{
    if (x < 0 || y < 0 || x >= IMG_W || y >= IMG_H) return;
    unsigned char *p = c->px + 3 * ((size_t)y * IMG_W + x);
    p[0] = col.r;
    p[1] = col.g;
    p[2] = col.b;
}

static void rect(canvas *c, int x0, int y0, int w, int h, rgb col)
{
    for (int y = y0; y < y0 + h; y++)
        for (int x = x0; x < x0 + w; x++) put(c, x, y, col);
}

static int text_width(const char *s) { return (int)strlen(s) * 4 * FONT_SCALE; }

static void text(canvas *c, int x, int y, const char *s, rgb col)
{
    for (; *s; s++, x += 4 * FONT_SCALE) {
        const struct glyph *g = NULL;
        for (size_t i = 0; i < sizeof FONT / sizeof FONT[0]; i++)
            if (FONT[i].c == *s) g = &FONT[i];
        if (!g) continue; /* spaces and anything unknown advance only */
        size_t len = strlen(g->rows);
        for (size_t i = 0; i < len && i < 15; i++)
            if (g->rows[i] == '#')
                rect(c, x + (int)(i % 3) * FONT_SCALE, y + (int)(i / 3) * FONT_SCALE, FONT_SCALE,
                     FONT_SCALE, col);
    }
}

static void line(canvas *c, int x0, int y0, int x1, int y1, rgb col, int thick)
{
    int dx = abs(x1 - x0), dy = -abs(y1 - y0), sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
    int err = dx + dy;
    for (;;) {
        rect(c, x0 - thick / 2, y0 - thick / 2, thick, thick, col);
        if (x0 == x1 && y0 == y1) break;
        int e2 = 2 * err;
        if (e2 >= dy) {
            err += dy;
            x0 += sx;
        }
        if (e2 <= dx) {
            err += dx;
            y0 += sy;
        }
    }
}

typedef struct panel {
    int x, y, w, h; /* plot area in pixels */
    double xmin, xmax, ymin, ymax;
} panel;

static int px_x(const panel *p, double v)
{
    return p->x + (int)lround((v - p->xmin) / (p->xmax - p->xmin) * p->w);
}
static int px_y(const panel *p, double v)
{
    return p->y + p->h - (int)lround((v - p->ymin) / (p->ymax - p->ymin) * p->h);
}

/* A "nice" tick step (1, 2, 2.5 or 5 times a power of ten) giving about four intervals, and
 * the panel's y range widened to whole steps. */
static double nice_range(panel *p)
{
    double raw = (p->ymax - p->ymin) / 4, mag = pow(10, floor(log10(raw))), step = 10 * mag;
    static const double m[] = {1, 2, 2.5, 5};
    for (int i = 3; i >= 0; i--)
        if (m[i] * mag >= raw) step = m[i] * mag;
    p->ymin = floor(p->ymin / step + 1e-9) * step;
    p->ymax = ceil(p->ymax / step - 1e-9) * step;
    return step;
}

void tr_tick_label(double v, double step, char *buf, size_t n)
{
    int d = 0; /* the decimals a multiple of step needs: 0.25 two, 2.5 one, 5 none */
    for (double s = step; d < 4 && fabs(s - round(s)) > 1e-6 * s; s *= 10) d++;
    if (fabs(v) < step / 2) v = 0; /* not -0.00 */
    if (fabs(step - round(step * pow(10, d)) / pow(10, d)) <= 1e-6 * step)
        snprintf(buf, n, "%.*f", d, v);
    else
        snprintf(buf, n, "%.3g", v); /* 2.5e-07: a step below 1e-4 */
}

/* Axes, grid and tick labels; the title above the plot, "EPOCH" below it. */
static void axes(canvas *c, panel *p, const char *title, int n_epochs)
{
    double step = nice_range(p);
    int ticks = (int)lround((p->ymax - p->ymin) / step);
    for (int i = 0; i <= ticks; i++) {
        double v = p->ymin + i * step;
        int y = px_y(p, v);
        line(c, p->x, y, p->x + p->w, y, GRID, 1);
        char lab[32];
        tr_tick_label(v, step, lab, sizeof lab);
        text(c, p->x - 8 - text_width(lab), y - 5, lab, BLACK);
    }
    int every = n_epochs <= 10 ? 1 : (n_epochs + 9) / 10;
    for (int e = 1; e <= n_epochs; e += every) {
        int x = px_x(p, e);
        line(c, x, p->y + p->h, x, p->y + p->h + 5, BLACK, 1);
        char lab[16];
        snprintf(lab, sizeof lab, "%d", e);
        text(c, x - text_width(lab) / 2, p->y + p->h + 10, lab, BLACK);
    }
    line(c, p->x, p->y, p->x, p->y + p->h, BLACK, 2);
    line(c, p->x, p->y + p->h, p->x + p->w, p->y + p->h, BLACK, 2);
    text(c, p->x + (p->w - text_width(title)) / 2, 14, title, BLACK);
    text(c, p->x + (p->w - text_width("EPOCH")) / 2, p->y + p->h + 28, "EPOCH", BLACK);
}

static void legend(canvas *c, int x, int y, const char *label, rgb col)
{
    rect(c, x, y, 14, 10, col);
    text(c, x + 20, y, label, BLACK);
}

/* One curve: field at byte offset off of each row, times scale. */
static void curve(canvas *c, const panel *p, const tr_history *h, size_t off, double scale, rgb col)
{
    for (int i = 0; i < h->n; i++) {
        double v = *(const double *)((const char *)&h->rows[i] + off) * scale;
        int x = px_x(p, h->rows[i].epoch), y = px_y(p, v);
        rect(c, x - 3, y - 3, 7, 7, col);
        if (i > 0) {
            double u = *(const double *)((const char *)&h->rows[i - 1] + off) * scale;
            line(c, px_x(p, h->rows[i - 1].epoch), px_y(p, u), x, y, col, 2);
        }
    }
}

/* stbi_write_png ignores failed writes (a full disk): the PNG goes through this callback,
 * which keeps the first write error. */
typedef struct { FILE *f; int err; } png_out;

static void png_write(void *ctx, void *data, int size)
{
    png_out *o = ctx;
    if (!o->err && fwrite(data, 1, (size_t)size, o->f) != (size_t)size)
        o->err = errno ? errno : EIO;
}

bool tr_plot_curves(const tr_history *h, const char *path, char *err, size_t n)
{
    if (h->n < 1) {
        snprintf(err, n, "no epoch to plot");
        return false;
    }
    canvas c = {malloc((size_t)IMG_W * IMG_H * 3)};
    if (!c.px) {
        snprintf(err, n, "out of memory for a %dx%d image", IMG_W, IMG_H);
        return false;
    }
    memset(c.px, 255, (size_t)IMG_W * IMG_H * 3);
    int last = h->rows[h->n - 1].epoch;
    double lmax = 0, amin = 100;
    for (int i = 0; i < h->n; i++) {
        const tr_epoch_row *r = &h->rows[i];
        lmax = fmax(lmax, fmax(r->train_loss, r->val_loss));
        amin = fmin(amin, 100 * fmin(r->train_acc, r->val_top1));
    }
    if (!(lmax > 0) || !isfinite(lmax)) lmax = 1;
    panel loss = {90, 80, 360, 260, 0.5, last + 0.5, 0, lmax};
    panel acc = {590, 80, 360, 260, 0.5, last + 0.5, fmin(amin, 99), 100};
    axes(&c, &loss, "LOSS", last);
    axes(&c, &acc, "ACCURACY %", last);
    curve(&c, &loss, h, offsetof(tr_epoch_row, train_loss), 1, BLUE);
    curve(&c, &loss, h, offsetof(tr_epoch_row, val_loss), 1, ORANGE);
    curve(&c, &acc, h, offsetof(tr_epoch_row, train_acc), 100, BLUE);
    curve(&c, &acc, h, offsetof(tr_epoch_row, val_top1), 100, ORANGE);
    curve(&c, &acc, h, offsetof(tr_epoch_row, val_top5), 100, GREEN);
    legend(&c, loss.x + 10, 44, "TRAIN", BLUE);
    legend(&c, loss.x + 110, 44, "VAL", ORANGE);
    legend(&c, acc.x + 10, 44, "TRAIN", BLUE);
    legend(&c, acc.x + 110, 44, "VAL TOP-1", ORANGE);
    legend(&c, acc.x + 250, 44, "VAL TOP-5", GREEN);
    char tmp[PATH_MAX];
    png_out o = {tr_replace_open(path, tmp, sizeof tmp), 0};
    bool ok = false;
    if (!o.f) {
        o.err = errno;
    } else {
        ok = stbi_write_png_to_func(png_write, &o, IMG_W, IMG_H, 3, c.px, IMG_W * 3) && !o.err;
        errno = o.err;
        ok = tr_replace_close(o.f, tmp, ok);
        if (!ok) o.err = errno;
    }
    free(c.px);
    if (!ok) {
        snprintf(err, n, "%s: could not write the PNG%s%s", path, o.err ? ": " : "",
                 o.err ? strerror(o.err) : "");
        return false;
    }
    return true;
}
