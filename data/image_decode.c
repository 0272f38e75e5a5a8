/* image_decode.c — stb_image (from Debian's libstb-dev header) compiled into the library with
 * only its JPEG, PNG and BMP decoders and with zero-filled allocations (on corrupt files the
 * packaged stb_image reads heap it never wrote: valgrind, under fuzzing, so pixels would differ
 * from run to run), and the checks of a file's content that keep it from stb's known faults.
 * The Makefile builds this file with zero-initialised locals too: stb keeps a file's palette in
 * a stack array, and a pixel whose index is past the file's palette read whatever the stack
 * held (different pixels from run to run); now such pixels are black, as libpng makes them. */
#include "dataset.h"

#include <stdlib.h>
#include <string.h>

/* The most bytes stb_image's growing buffers may take while this thread decodes a PNG (0: no
 * limit): what the header's size calls for, with room. A few kilobytes of compressed zeros
 * inflate to gigabytes, which stb would allocate (and this file zero-fill) before it found the
 * surplus. */
static _Thread_local size_t tl_grow_limit;
static _Thread_local bool tl_grow_refused;
/* An allocation of stb_image's failed while this thread decoded: its failure reason may then
 * name another format's fault (it goes on to the next decoder), so this decides. */
static _Thread_local bool tl_out_of_memory;

static void *zero_alloc(size_t n)
{
    void *p = calloc(1, n ? n : 1);
    if (!p) tl_out_of_memory = true;
    return p;
}

/* Grows p from old to n bytes, the new part zeroed; NULL (stb's "out of memory") past the
 * thread's limit. */
static void *zero_realloc(void *p, size_t old, size_t n)
{
    if (tl_grow_limit && n > tl_grow_limit) {
        tl_grow_refused = true;
        return NULL;
    }
    unsigned char *q = realloc(p, n ? n : 1);
    if (!q) tl_out_of_memory = true;
    if (q && n > old) memset(q + old, 0, n - old);
    return q;
}

#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#define STBI_ONLY_JPEG
#define STBI_ONLY_PNG
#define STBI_ONLY_BMP
#define STBI_NO_STDIO
#define STBI_MALLOC(sz) zero_alloc(sz)
#define STBI_REALLOC_SIZED(p, oldsz, newsz) zero_realloc((p), (oldsz), (newsz))
#define STBI_FREE(p) free(p)
/* stb_image checks its own invariants with assert(), which would abort the process, and the
 * library never aborts: release builds compile them out (the decoders check what a file says
 * before it reaches them: BMP masks, Huffman tables). Sanitizer builds (DEBUG=1, which the
 * fuzzing uses) keep them, so that a reachable one would show. */
#ifndef CNN_KEEP_STB_ASSERTS
#define STBI_ASSERT(x) ((void)0)
#endif
/* stb_image's own warnings, for this file only (some are reported at its end). */
#pragma GCC diagnostic ignored "-Wpragmas"
#pragma GCC diagnostic ignored "-Wunknown-warning-option"
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <stb/stb_image.h>

/* The formats stb_image decodes, told by their first bytes (a file's name can lie): JPEG, PNG
 * and BMP (Netpbm files go to image_pnm.c). stb_image's other decoders are not even compiled
 * in: fuzzing found its Radiance HDR decoder looping forever on a corrupt run length, and its
 * GIF, PSD and PIC decoders have a record of memory errors. */
static bool decodable(const unsigned char *m, size_t n)
{
    return (n >= 3 && m[0] == 0xFF && m[1] == 0xD8 && m[2] == 0xFF) ||
           (n >= 8 && memcmp(m, "\x89PNG\r\n\x1a\n", 8) == 0) ||
           (n >= 2 && m[0] == 'B' && m[1] == 'M');
}

/* More scans than any encoder writes (libjpeg's progressive scripts have about 10): stb_image
 * passes over the whole image for each, and reads missing entropy data as zeros, so a 10 KB
 * file of empty scans over an 8192x8192 frame took 28 s to decode. */
#define JPEG_MAX_SCANS 100

/* Why a JPEG is refused before stb_image sees it, or NULL:
 * - a Huffman table (DHT segment) of more than 256 codes: the packaged stb_image (2022) does
 *   not check, and writes past its tables (found by fuzzing under UBSan; newer stb refuses
 *   such a table);
 * - more than JPEG_MAX_SCANS scans (start-of-scan segments);
 * - frames stb cannot decode, named: arithmetic coding, lossless or hierarchical frames, and
 *   sample precisions other than 8 bits (12-bit);
 * - a file that ends before its end-of-image marker (a download or copy cut short: stb_image
 *   refuses it too, as "expected marker");
 * - a four-component (CMYK or YCCK) frame without an Adobe APP14 segment saying which: stb
 *   decodes such a file as YCbCr and drops the fourth component, so its colours come out wrong
 *   without a word (libjpeg takes it as plain CMYK, stb cannot). With the segment's transform 0
 *   (Adobe's inverted CMYK) or 2 (YCCK) stb converts it as Photoshop writes it.
 * The walk follows stb_image's own reading, so that it meets every table stb would: bytes
 * before a 0xFF are skipped, a segment's tables are read until its length is used up (counts
 * past the file's end read as 0), and the entropy-coded data after a start of scan runs to the
 * next marker that is neither a stuffed 0xFF nor a restart (progressive files define tables
 * between scans). Other damage is left to stb_image, which reports it. */
static const char *jpeg_refusal(const unsigned char *p, size_t n)
{
    int scans = 0, components = 0, adobe = -1; /* the frame's; the last APP14's transform */
    size_t i = 2;
    bool ended = false;
    while (i + 1 < n) {
        if (p[i] != 0xFF) {
            i++;
            continue;
        }
        size_t k = i + 1;
        while (k < n && p[k] == 0xFF) k++; /* fill bytes */
        ended = k < n && p[k] == 0xD9;
        if (k + 2 >= n || ended) break;
        const unsigned m = p[k];
        i = k + 1;
        if (m == 0 || m == 0x01 || (m >= 0xD0 && m <= 0xD8)) continue; /* no segment */
        const size_t len = ((size_t)p[i] << 8) | p[i + 1];
        if (len < 2) break; /* stb_image stops there */
        /* Frames stb_image cannot decode, named (stb says "unknown marker" or "only 8-bit"). */
        if (m == 0xC9 || m == 0xCA || m == 0xCB || m == 0xCD || m == 0xCE || m == 0xCF)
            return "arithmetic-coded JPEG (only Huffman-coded ones are supported)";
        if (m == 0xC3 || m == 0xC5 || m == 0xC6 || m == 0xC7)
            return "lossless or hierarchical JPEG (only baseline and progressive are supported)";
        if ((m == 0xC0 || m == 0xC1 || m == 0xC2) && i + 2 < n && p[i + 2] != 8)
            return p[i + 2] == 12 ? "12-bit JPEG (only 8-bit samples are supported)"
                                  : "JPEG of a sample precision other than 8 bits (corrupt?)";
        if (m >= 0xC0 && m <= 0xC2 && i + 7 < n) components = p[i + 7];
        /* As stb reads APP14: "Adobe\0" (the version's first byte as the 6th), the version's
         * second byte, two 16-bit flags, the transform. */
        if (m == 0xEE && len >= 14 && i + 13 < n && !memcmp(p + i + 2, "Adobe", 6))
            adobe = p[i + 13];
        if (m == 0xC4) {
            long left = (long)len - 2;
            for (size_t j = i + 2; left > 0;) {
                unsigned codes = 0;
                for (size_t c = j + 1; c <= j + 16; c++) codes += c < n ? p[c] : 0;
                if (codes > 256) return "a Huffman table with more than 256 codes (corrupt JPEG)";
                j += 17 + codes;
                left -= 17 + (long)codes;
            }
        }
        i += len;
        if (m == 0xDA && ++scans > JPEG_MAX_SCANS)
            return "more than 100 scans (no encoder writes so many: corrupt or hostile JPEG)";
        if (m == 0xDA)
            while (i + 1 < n && !(p[i] == 0xFF && p[i + 1] != 0 && (p[i + 1] & 0xF8) != 0xD0)) i++;
    }
    if (!ended) return "the file ends before its end-of-image marker (truncated JPEG)";
    if (components == 4 && adobe < 0)
        return "a CMYK JPEG without Adobe's marker saying how its colours are stored (only "
               "Adobe CMYK and YCCK JPEGs are supported)";
    if (components == 4 && adobe != 0 && adobe != 2)
        return "a 4-component JPEG whose Adobe marker gives neither CMYK (transform 0) nor YCCK "
               "(2): its colours are unknown";
    return NULL;
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Why a PNG's chunks are refused before stb_image sees them, or NULL. Chunks: a 4-byte
 * big-endian data length, a 4-byte type, the data, a 4-byte CRC (the last chunk's CRC may be
 * missing: stb_image does not check it), ending with IEND.
 * - A chunk whose data runs past the end of the file: stb_image grows its buffer for the image
 *   data to the length a chunk claims before it reads the chunk, so a 53-byte file claiming a
 *   1.8 GB IDAT chunk had 2 GB allocated and zeroed (found by fuzzing).
 * - A file that ends inside a chunk's header or before IEND: stb reads zeros past the end and
 *   reports an "unknown chunk" of type zero, an empty reason.
 * - An unknown critical chunk (type starting with a capital letter): stb refuses it too, but
 *   writes its name into one static buffer shared by all threads (a data race between loader
 *   workers, and another file's name in the message). */
static const char *png_refusal(const unsigned char *p, size_t n)
{
    static const char *const critical[] = {"IHDR", "PLTE", "IDAT", "IEND", "CgBI"};
    for (size_t i = 8; i < n;) {
        if (n - i < 8) return "the file ends inside a chunk's header (truncated PNG)";
        const size_t len = be32(p + i);
        if (len > n - i - 8)
            return "a chunk longer than the rest of the file (truncated or corrupt PNG)";
        const unsigned char *type = p + i + 4;
        if (memcmp(type, "IEND", 4) == 0) return NULL;
        bool known = !(type[0] >= 'A' && type[0] <= 'Z'); /* ancillary: stb skips it */
        for (int k = 0; k < 5 && !known; k++) known = memcmp(type, critical[k], 4) == 0;
        if (!known) return "an unknown critical chunk (corrupt PNG)";
        i += 12 + len;
    }
    return "no IEND chunk at the end (truncated PNG)";
}

/* The most bytes stb_image may hold for a PNG's inflated image data (tl_grow_limit): a row of
 * width x channels x bit depth bits plus its filter byte, times the height, at most doubled
 * for the interlaced passes' own rows, plus the file itself (its IDAT data is gathered in one
 * buffer first) and a megabyte. 0 where the header is not there to read (stb refuses those). */
static size_t png_grow_limit(const unsigned char *p, size_t n)
{
    if (n < 8 + 8 + 13 || memcmp(p + 12, "IHDR", 4) != 0) return 0;
    const uint64_t w = be32(p + 16), h = be32(p + 20), depth = p[24], type = p[25];
    const uint64_t channels = type == 2 ? 3 : type == 4 ? 2 : type == 6 ? 4 : 1;
    if (w == 0 || h == 0 || w > (1u << 24) || h > (1u << 24) || depth > 16) return 0;
    const uint64_t raw = h * (1 + (w * channels * depth + 7) / 8);
    return (size_t)(2 * raw + (uint64_t)n + (1u << 20));
}

const char *cnn_image_refusal(const unsigned char *file, size_t len)
{
    if (cnn_pnm_is(file, len)) return cnn_pnm_refusal(file, len);
    if (!decodable(file, len)) return "not a JPEG, PNG, BMP or PNM file";
    if (file[0] == 0x89) return png_refusal(file, len);
    if (file[0] == 0xFF) return jpeg_refusal(file, len);
    return NULL;
}

static int64_t le16(const unsigned char *p) { return p[0] | p[1] << 8; }
static int64_t le32s(const unsigned char *p)
{
    return (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                     (uint32_t)p[3] << 24);
}

/* stb_image's BMP reader gives zeros for bytes past the end of the file instead of failing, so
 * a BMP cut short would decode as an image with black rows (a 63-byte file as 1805 x 12022,
 * found by fuzzing). The headers stb reads: a 14-byte file header (pixel data offset at 10),
 * then an info header of 12 bytes (16-bit width, height at 18, 20; bit depth at 24) or of 40,
 * 56, 108 or 124 bytes (32-bit width, height at 18, 22, a negative height meaning top-down;
 * bit depth at 28). Rows are padded to 4 bytes; the last row's padding is not required.
 * Returns the length the header calls for, 0 for a file that is not such a BMP. */
static int64_t bmp_bytes_needed(const unsigned char *p, size_t n)
{
    if (n < 30 || p[0] != 'B' || p[1] != 'M') return 0;
    const int64_t offset = le32s(p + 10) & 0xFFFFFFFFll, hsz = le32s(p + 14);
    int64_t w, h, bpp;
    if (hsz == 12) {
        w = le16(p + 18), h = le16(p + 20), bpp = le16(p + 24);
    } else if (hsz == 40 || hsz == 56 || hsz == 108 || hsz == 124) {
        w = le32s(p + 18), h = le32s(p + 22), bpp = le16(p + 28);
        if (h < 0) h = -h;
    } else {
        return 0;
    }
    if (w <= 0 || h <= 0 || w > (1 << 24) || h > (1 << 24) ||
        !(bpp == 1 || bpp == 4 || bpp == 8 || bpp == 16 || bpp == 24 || bpp == 32))
        return 0;
    const int64_t row = (w * bpp + 7) / 8, stride = (row + 3) / 4 * 4;
    return offset + stride * (h - 1) + row;
}

bool cnn_image_info(const unsigned char *file, size_t len, int *w, int *h)
{
    int n = 0;
    if (cnn_pnm_is(file, len)) return cnn_pnm_info(file, len, w, h);
    return decodable(file, len) && len <= INT32_MAX &&
           stbi_info_from_memory(file, (int)len, w, h, &n);
}

/* n-channel pixels made one-channel, as PIL's convert('L') makes them (stb would keep a JPEG's
 * Y plane, or truncate its own weights). In place: pixel i is written after pixels 0..i were
 * read. PIL's L = (19595 R + 38470 G + 7471 B + 2^15) >> 16 (ITU-R 601, rounded); gray + alpha
 * keeps the gray. */
static unsigned char *to_gray(unsigned char *pix, int w, int h, int n)
{
    const size_t np = (size_t)w * (size_t)h;
    for (size_t i = 0; n > 1 && i < np; i++) {
        const unsigned char *p = pix + i * (size_t)n;
        pix[i] = n == 2 ? p[0]
                        : (unsigned char)((19595u * p[0] + 38470u * p[1] + 7471u * p[2] +
                                           0x8000u) >> 16);
    }
    return pix;
}

unsigned char *cnn_image_decode(const unsigned char *file, size_t len, int channels, int *w,
                                int *h, const char **why)
{
    int n = 0;
    if (cnn_pnm_is(file, len)) {
        unsigned char *pix = cnn_pnm_decode(file, len, channels == 1 ? 0 : channels, w, h, &n, why);
        return pix && channels == 1 ? to_gray(pix, *w, *h, n) : pix;
    }
    if (!decodable(file, len)) {
        *why = "not a JPEG, PNG, BMP or PNM file";
        return NULL;
    }
    if (bmp_bytes_needed(file, len) > (int64_t)len) {
        *why = "truncated BMP (shorter than its header says)";
        return NULL;
    }
    tl_grow_limit = len >= 8 && file[0] == 0x89 ? png_grow_limit(file, len) : 0;
    tl_grow_refused = tl_out_of_memory = false;
    /* One channel from a colour file: decoded as it is, then made gray (to_gray). */
    const int ask = channels == 1 ? 0 : channels;
    unsigned char *pix =
        len <= INT32_MAX ? stbi_load_from_memory(file, (int)len, w, h, &n, ask) : NULL;
    tl_grow_limit = 0;
    if (pix && channels == 1) pix = to_gray(pix, *w, *h, n);
    if (!pix && tl_grow_refused)
        *why = "its image data inflates past the size its header gives (corrupt PNG)";
    else if (!pix && len > INT32_MAX)
        *why = "file too large";
    else if (!pix)
        *why = tl_out_of_memory ? CNN_IMAGE_OUT_OF_MEMORY : stbi_failure_reason();
    return pix;
}

void cnn_image_free(unsigned char *pix) { stbi_image_free(pix); }
