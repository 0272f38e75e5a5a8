/* resample.c — image resizing as torchvision resizes PIL images (Resize, RandomResizedCrop,
 * both with PIL's BILINEAR filter): a separable triangle filter whose support widens with the
 * reduction factor, so that shrinking averages every source pixel it covers (antialiasing);
 * pixel centres at +0.5; the filter window clipped to the source window. Sums are float and
 * rounded to bytes once, at the end (PIL rounds to bytes after each axis as well, so the two
 * differ by at most one level).
 *
 * Each output row is one vertical pass (source rows weighted into a float row: contiguous,
 * vectorised) then one horizontal pass over that row; only the columns the output reaches are
 * summed. */
#include "dataset.h"

/* One output sample's filter window: `count` source pixels from `first`. */
typedef struct window {
    int first, count;
} window;

/* The most source pixels any output sample of a `scale`-to-1 reduction can weigh. */
static int max_taps(double scale) { return (int)ceil(scale > 1 ? scale : 1) * 2 + 1; }

static float triangle(double t)
{
    t = fabs(t);
    return t < 1 ? (float)(1 - t) : 0.0f;
}

/* Plans one axis: `out` samples spread over [b0, b1) of a source of n pixels, the windows into
 * win and their weights (normalised to sum 1) into w, `taps` per sample. */
static void plan_axis(int n, double b0, double b1, int out, int taps, window *win, float *w)
{
    const double scale = (b1 - b0) / out, fs = scale > 1 ? scale : 1;
    for (int i = 0; i < out; i++) {
        const double centre = b0 + (i + 0.5) * scale;
        int lo = (int)floor(centre - fs + 0.5), hi = (int)floor(centre + fs + 0.5);
        if (lo < 0) lo = 0;
        if (hi > n) hi = n;
        if (hi - lo > taps) hi = lo + taps;
        float *k = w + (size_t)i * taps;
        double sum = 0;
        for (int j = 0; j < hi - lo; j++) sum += k[j] = triangle((lo + j + 0.5 - centre) / fs);
        /* Zero weights at either end cost a multiply each for nothing (scale 1 has one). */
        int a = 0, b = hi - lo;
        while (b > a && k[b - 1] == 0) b--;
        while (a < b && k[a] == 0) a++;
        if (a == b || !(sum > 0)) { /* cannot happen for a box inside the source; kept safe */
            int c = (int)floor(centre);
            lo = c < 0 ? 0 : (c >= n ? n - 1 : c);
            k[0] = 1;
            win[i] = (window){lo, 1};
            continue;
        }
        for (int j = a; j < b; j++) k[j - a] = (float)(k[j] / sum);
        win[i] = (window){lo + a, b - a};
    }
}

static unsigned char to_byte(float v)
{
    return v <= 0 ? 0 : (v >= 255 ? 255 : (unsigned char)(v + 0.5f));
}

/* row = the sum of n source rows (from s, `stride` apart) weighted by k: ncols values each. */
static void vertical(const unsigned char *restrict s, size_t stride, int n, const float *k,
                     int ncols, float *restrict row)
{
    for (int j = 0; j < ncols; j++) row[j] = k[0] * s[j];
    for (int t = 1; t < n; t++) {
        s += stride;
        const float kt = k[t];
        for (int j = 0; j < ncols; j++) row[j] += kt * s[j];
    }
}

/* d = the ow output pixels of a row: each the weighted sum of its window of row's pixels (row
 * starts at source column c0). */
static void horizontal(const float *row, int c0, int C, const window *wx, const float *kx,
                       int tx, int ow, unsigned char *d)
{
    for (int x = 0; x < ow; x++) {
        const float *k = kx + (size_t)x * tx, *r = row + (size_t)(wx[x].first - c0) * C;
        for (int c = 0; c < C; c++) {
            float v = 0;
            for (int t = 0; t < wx[x].count; t++) v += k[t] * r[t * C + c];
            d[x * C + c] = to_byte(v);
        }
    }
}

/* The same for three channels (RGB), with the channels summed side by side. */
static void horizontal3(const float *row, int c0, const window *wx, const float *kx, int tx,
                        int ow, unsigned char *d)
{
    for (int x = 0; x < ow; x++) {
        const float *k = kx + (size_t)x * tx, *r = row + (size_t)(wx[x].first - c0) * 3;
        float v0 = 0, v1 = 0, v2 = 0;
        for (int t = 0; t < wx[x].count; t++, r += 3) {
            v0 += k[t] * r[0];
            v1 += k[t] * r[1];
            v2 += k[t] * r[2];
        }
        d[3 * x] = to_byte(v0);
        d[3 * x + 1] = to_byte(v1);
        d[3 * x + 2] = to_byte(v2);
    }
}

cnn_status cnn_image_resample(const unsigned char *src, int h, int w, size_t stride, int C,
                              const double *box, unsigned char *dst, int oh, int ow)
{
    const double y0 = box ? box[0] : 0, x0 = box ? box[1] : 0;
    const double y1 = box ? box[2] : h, x1 = box ? box[3] : w;
    CNN_CHECK(h > 0 && w > 0 && oh > 0 && ow > 0 && C > 0 && 0 <= y0 && y0 < y1 && y1 <= h &&
                  0 <= x0 && x0 < x1 && x1 <= w,
              CNN_ERR_INVALID_ARG, "resample: box [%g, %g) x [%g, %g) of a %dx%d image to %dx%d",
              y0, y1, x0, x1, w, h, ow, oh);
    /* A box of oh x ow whole pixels is a copy (a centre crop without resizing). */
    if (y1 - y0 == oh && x1 - x0 == ow && y0 == floor(y0) && x0 == floor(x0)) {
        const unsigned char *s0 = src + (size_t)y0 * stride + (size_t)x0 * C;
        for (int y = 0; y < oh; y++)
            memcpy(dst + (size_t)y * ow * C, s0 + (size_t)y * stride, (size_t)ow * C);
        return CNN_OK;
    }
    const int ty = max_taps((y1 - y0) / oh), tx = max_taps((x1 - x0) / ow);
    const size_t n_win = (size_t)oh + ow, n_w = (size_t)oh * ty + (size_t)ow * tx;
    window *win = malloc(n_win * sizeof *win);
    float *wts = malloc((n_w + (size_t)w * C) * sizeof *wts);
    if (!win || !wts) {
        free(win);
        free(wts);
        return cnn_error(CNN_ERR_OUT_OF_MEMORY, "resample: no memory to resize %dx%d to %dx%d",
                         w, h, ow, oh);
    }
    window *wy = win, *wx = win + oh;
    float *ky = wts, *kx = wts + (size_t)oh * ty, *row = kx + (size_t)ow * tx;
    plan_axis(h, y0, y1, oh, ty, wy, ky);
    plan_axis(w, x0, x1, ow, tx, wx, kx);
    /* The vertical pass sums only the columns some output pixel reads. */
    int c0 = w, c1 = 0;
    for (int x = 0; x < ow; x++) {
        if (wx[x].first < c0) c0 = wx[x].first;
        if (wx[x].first + wx[x].count > c1) c1 = wx[x].first + wx[x].count;
    }
    const int ncols = (c1 - c0) * C;
    for (int y = 0; y < oh; y++) {
        vertical(src + (size_t)wy[y].first * stride + (size_t)c0 * C, stride, wy[y].count,
                 ky + (size_t)y * ty, ncols, row);
        unsigned char *d = dst + (size_t)y * ow * C;
        if (C == 3) horizontal3(row, c0, wx, kx, tx, ow, d);
        else horizontal(row, c0, C, wx, kx, tx, ow, d);
    }
    free(win);
    free(wts);
    return CNN_OK;
}
