/* image_pnm.c — Netpbm's bitmaps, gray maps and pixel maps (PBM, PGM, PPM: P1 to P6, plain and
 * raw, any maxval up to 65535; torchvision's ImageFolder lists .ppm and .pgm files, not .pbm or
 * .pnm ones), decoded here rather than by stb_image: the packaged stb_image reads only P5 and P6,
 * takes a 16-bit sample's high byte whatever the maxval, leaves a maxval below 255 unscaled, and
 * decodes a file cut short as black rows. Here a sample v becomes round(v / maxval * 255) in
 * double, half to even, as Pillow (torchvision's loader) computes it, a raw sample above the
 * maxval 255 and a plain one an error, as there; a PBM's 1 is black. One difference: Pillow keeps
 * a 16-bit PGM as 32-bit integers, which torchvision's convert('RGB') clips at 255; here it is
 * scaled like the rest. A file cut short or a malformed header is refused with a reason. A file of
 * several images gives its first. */
#include "dataset.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* stb_image's limit on a side; the dataset's own (imagefolder.c) is smaller. */
#define PNM_MAX_SIDE (1 << 24)

typedef struct pnm_reader {
    const unsigned char *p, *end;
} pnm_reader;

static bool is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

/* Skips whitespace and comments ('#' to the end of its line). */
static void skip_blank(pnm_reader *r)
{
    while (r->p < r->end) {
        if (is_space(*r->p)) {
            r->p++;
        } else if (*r->p == '#') {
            while (r->p < r->end && *r->p != '\n' && *r->p != '\r') r->p++;
        } else {
            break;
        }
    }
}

/* A decimal number of up to `digits` digits (1 for a plain PBM's pixels, which may touch),
 * after blanks; -1 where none is there, -2 where it exceeds max (read no further). */
static int64_t read_number(pnm_reader *r, int64_t max, int digits)
{
    skip_blank(r);
    if (r->p >= r->end || *r->p < '0' || *r->p > '9') return -1;
    int64_t v = 0;
    for (int n = 0; n < digits && r->p < r->end && *r->p >= '0' && *r->p <= '9'; n++) {
        v = v * 10 + (*r->p++ - '0');
        if (v > max) return -2;
    }
    return v;
}

/* The header's fields; `raster` is where the pixels start. */
typedef struct pnm_header {
    int kind;     /* 1..6, from "P1".."P6" */
    int channels; /* 1 (PBM, PGM) or 3 (PPM) */
    int64_t w, h, maxval;
    const unsigned char *raster;
} pnm_header;

bool cnn_pnm_is(const unsigned char *file, size_t len)
{
    return len >= 3 && file[0] == 'P' && file[1] >= '1' && file[1] <= '6' && is_space(file[2]);
}

static const char *parse_header(const unsigned char *file, size_t len, pnm_header *hd)
{
    if (!cnn_pnm_is(file, len)) return "not a PBM, PGM or PPM file";
    pnm_reader r = {file + 2, file + len};
    hd->kind = file[1] - '0';
    hd->channels = hd->kind == 3 || hd->kind == 6 ? 3 : 1;
    hd->w = read_number(&r, PNM_MAX_SIDE, 64);
    hd->h = hd->w > 0 ? read_number(&r, PNM_MAX_SIDE, 64) : hd->w;
    if (hd->w == -1 || hd->h == -1) return "PNM header cut short or malformed (width, height)";
    if (hd->w <= 0 || hd->h <= 0) return "PNM image has a zero or absurd width or height";
    const bool bitmap = hd->kind == 1 || hd->kind == 4;
    hd->maxval = bitmap ? 1 : read_number(&r, 65535, 64);
    if (hd->maxval == -1) return "PNM header cut short or malformed (maxval)";
    if (hd->maxval <= 0) return "PNM maxval outside 1..65535";
    /* One whitespace character ends the header: a raw raster may begin with a byte that looks
     * like one (or like a '#'). */
    if (r.p >= r.end || !is_space(*r.p)) return "PNM header not followed by whitespace";
    hd->raster = r.p + 1;
    return NULL;
}

/* The bytes a raw raster takes; for a plain one, the fewest it can take (one character a
 * sample for PBM, which needs no separators; a digit and a separator otherwise). */
static uint64_t raster_bytes(const pnm_header *hd)
{
    const uint64_t samples = (uint64_t)hd->w * (uint64_t)hd->h * (uint64_t)hd->channels;
    switch (hd->kind) {
    case 1: return samples;
    case 4: return (uint64_t)hd->h * (((uint64_t)hd->w + 7) / 8);
    case 5:
    case 6: return samples * (hd->maxval > 255 ? 2 : 1);
    default: return 2 * samples - 1;
    }
}

/* The header, and whether the file is long enough for its raster. */
static const char *check(const unsigned char *file, size_t len, pnm_header *hd)
{
    *hd = (pnm_header){0};
    const char *why = parse_header(file, len, hd);
    if (why) return why;
    if (raster_bytes(hd) > (uint64_t)(file + len - hd->raster))
        return "truncated PNM (shorter than its header says)";
    return NULL;
}

const char *cnn_pnm_refusal(const unsigned char *file, size_t len)
{
    pnm_header hd;
    return check(file, len, &hd);
}

bool cnn_pnm_info(const unsigned char *file, size_t len, int *w, int *h)
{
    pnm_header hd;
    if (parse_header(file, len, &hd)) return false;
    *w = (int)hd.w, *h = (int)hd.h;
    return true;
}

/* Sample v as 0..255: Python's round(v / maxval * 255), which rint is in the default rounding
 * mode; above 255 (a raw sample over the maxval) 255. */
static unsigned char scale(uint32_t v, uint32_t maxval)
{
    if (maxval == 255 || v == 0) return (unsigned char)v;
    const double s = rint((double)v / maxval * 255.0);
    return s >= 255 ? 255 : (unsigned char)s;
}

/* The raster into out (w x h x channels). NULL, or what is wrong with the file. */
static const char *read_raster(const pnm_header *hd, const unsigned char *end, unsigned char *out)
{
    const int64_t row = hd->w * hd->channels;
    const uint32_t maxval = (uint32_t)hd->maxval;
    const unsigned char *p = hd->raster;
    pnm_reader r = {p, end};
    for (int64_t y = 0; y < hd->h; y++) {
        unsigned char *o = out + y * row;
        if (hd->kind == 4) { /* packed bits, first pixel in the high bit; rows end on a byte */
            for (int64_t x = 0; x < hd->w; x++) o[x] = (p[x >> 3] >> (7 - (x & 7)) & 1) ? 0 : 255;
            p += (hd->w + 7) / 8;
            continue;
        }
        for (int64_t x = 0; x < row; x++) {
            uint32_t v;
            if (hd->kind == 5 || hd->kind == 6) {
                v = maxval > 255 ? (uint32_t)p[0] << 8 | p[1] : p[0];
                p += maxval > 255 ? 2 : 1;
            } else {
                const int64_t n = read_number(&r, maxval, hd->kind == 1 ? 1 : 64);
                if (n == -1) return "truncated or malformed PNM (a sample is missing)";
                if (n == -2) return "PNM sample above the header's maxval";
                v = (uint32_t)n;
            }
            o[x] = hd->kind == 1 ? (v ? 0 : 255) : scale(v, maxval);
        }
    }
    return NULL;
}

unsigned char *cnn_pnm_decode(const unsigned char *file, size_t len, int channels, int *w,
                              int *h, int *native, const char **why)
{
    pnm_header hd;
    if ((*why = check(file, len, &hd))) return NULL;
    if (channels != 0 && channels != 1 && channels != 3) {
        *why = "PNM decoded to 1 or 3 channels only";
        return NULL;
    }
    const int c = hd.channels, out_c = c == 1 && channels == 3 ? 3 : c;
    const uint64_t pixels = (uint64_t)hd.w * (uint64_t)hd.h;
    if (pixels * (uint64_t)out_c > INT32_MAX) { /* as stb_image's limit */
        *why = "PNM image too large";
        return NULL;
    }
    unsigned char *pix = malloc((size_t)pixels * (size_t)out_c);
    if (!pix) {
        *why = CNN_IMAGE_OUT_OF_MEMORY;
        return NULL;
    }
    if ((*why = read_raster(&hd, file + len, pix))) {
        free(pix);
        return NULL;
    }
    /* Gray to RGB, from the last pixel back, in place. Colour to gray is the caller's
     * (cnn_image_decode, as for every format): *native says what pix holds. */
    if (out_c != c)
        for (size_t i = (size_t)pixels; i-- > 0;)
            pix[3 * i] = pix[3 * i + 1] = pix[3 * i + 2] = pix[i];
    *w = (int)hd.w, *h = (int)hd.h;
    *native = out_c;
    return pix;
}
