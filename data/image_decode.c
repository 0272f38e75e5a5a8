/* image_decode.c — stb_image (from Debian's libstb-dev header) compiled into the library with
 * only its JPEG, PNG and BMP decoders and with zero-filled allocations (on corrupt files the
 * packaged stb_image reads heap it never wrote: valgrind, under fuzzing, so pixels would differ
 * from run to run), and the checks of a file's content that keep it from stb's known faults. */
#include "dataset.h"

#include <stdlib.h>
#include <string.h>

/* Grows p from old to n bytes, the new part zeroed. */
static void *zero_realloc(void *p, size_t old, size_t n)
{
    unsigned char *q = realloc(p, n ? n : 1);
    if (q && n > old) memset(q + old, 0, n - old);
    return q;
}

#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#define STBI_ONLY_JPEG
#define STBI_ONLY_PNG
#define STBI_ONLY_BMP
#define STBI_NO_STDIO
#define STBI_MALLOC(sz) calloc(1, (sz) ? (sz) : 1)
#define STBI_REALLOC_SIZED(p, oldsz, newsz) zero_realloc((p), (oldsz), (newsz))
#define STBI_FREE(p) free(p)
/* stb_image's own warnings, for this file only (some are reported at its end). */
#pragma GCC diagnostic ignored "-Wpragmas"
#pragma GCC diagnostic ignored "-Wunknown-warning-option"
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <stb/stb_image.h>

/* The formats decoded, told by their first bytes (a file's name can lie): JPEG, PNG and BMP.
 * stb_image's other decoders are not even compiled in: fuzzing found its Radiance HDR decoder
 * looping forever on a corrupt run length, and its GIF, PSD and PIC decoders have a record of
 * memory errors. */
static bool decodable(const unsigned char *m, size_t n)
{
    return (n >= 3 && m[0] == 0xFF && m[1] == 0xD8 && m[2] == 0xFF) ||
           (n >= 8 && memcmp(m, "\x89PNG\r\n\x1a\n", 8) == 0) ||
           (n >= 2 && m[0] == 'B' && m[1] == 'M');
}

/* A JPEG with a Huffman table (DHT segment) of more than 256 codes: the packaged stb_image
 * (2022) does not check, and writes past its tables (found by fuzzing under UBSan; newer stb
 * refuses such a table). The walk follows stb_image's own reading, so that it meets every table
 * stb would: bytes before a 0xFF are skipped, a segment's tables are read until its length is
 * used up (counts past the file's end read as 0), and the entropy-coded data after a start of
 * scan runs to the next marker that is neither a stuffed 0xFF nor a restart (progressive files
 * define tables between scans). Other damage is left to stb_image, which reports it. */
static bool jpeg_huffman_overflows(const unsigned char *p, size_t n)
{
    size_t i = 2;
    while (i + 1 < n) {
        if (p[i] != 0xFF) {
            i++;
            continue;
        }
        size_t k = i + 1;
        while (k < n && p[k] == 0xFF) k++; /* fill bytes */
        if (k + 2 >= n || p[k] == 0xD9) break;
        const unsigned m = p[k];
        i = k + 1;
        if (m == 0 || m == 0x01 || (m >= 0xD0 && m <= 0xD8)) continue; /* no segment */
        const size_t len = ((size_t)p[i] << 8) | p[i + 1];
        if (len < 2) break; /* stb_image stops there */
        if (m == 0xC4) {
            long left = (long)len - 2;
            for (size_t j = i + 2; left > 0;) {
                unsigned codes = 0;
                for (size_t c = j + 1; c <= j + 16; c++) codes += c < n ? p[c] : 0;
                if (codes > 256) return true;
                j += 17 + codes;
                left -= 17 + (long)codes;
            }
        }
        i += len;
        if (m == 0xDA)
            while (i + 1 < n && !(p[i] == 0xFF && p[i + 1] != 0 && (p[i + 1] & 0xF8) != 0xD0)) i++;
    }
    return false;
}

/* A PNG chunk whose data runs past the end of the file. stb_image grows its buffer for the
 * image data to the length a chunk claims before it reads the chunk, so a 53-byte file claiming
 * a 1.8 GB IDAT chunk had 2 GB allocated and zeroed (found by fuzzing). Chunks: a 4-byte
 * big-endian data length, a 4-byte type, the data, a 4-byte CRC (the last chunk's CRC may be
 * missing: stb_image does not check it). */
static bool png_chunk_overruns(const unsigned char *p, size_t n)
{
    for (size_t i = 8; i + 8 <= n;) {
        const size_t len = (size_t)p[i] << 24 | (size_t)p[i + 1] << 16 | (size_t)p[i + 2] << 8 |
                           p[i + 3];
        if (len > n - i - 8) return true;
        if (memcmp(p + i + 4, "IEND", 4) == 0) break;
        i += 12 + len;
    }
    return false;
}

const char *cnn_image_refusal(const unsigned char *file, size_t len)
{
    if (!decodable(file, len)) return "not a JPEG, PNG or BMP file";
    if (file[0] == 0x89 && png_chunk_overruns(file, len))
        return "a chunk longer than the rest of the file (truncated or corrupt PNG)";
    if (file[0] == 0xFF && jpeg_huffman_overflows(file, len))
        return "a Huffman table with more than 256 codes (corrupt JPEG)";
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
    return len <= INT32_MAX && stbi_info_from_memory(file, (int)len, w, h, &n);
}

unsigned char *cnn_image_decode(const unsigned char *file, size_t len, int channels, int *w,
                                int *h, const char **why)
{
    int n = 0;
    if (bmp_bytes_needed(file, len) > (int64_t)len) {
        *why = "truncated BMP (shorter than its header says)";
        return NULL;
    }
    unsigned char *pix =
        len <= INT32_MAX ? stbi_load_from_memory(file, (int)len, w, h, &n, channels) : NULL;
    if (!pix) *why = len > INT32_MAX ? "file too large" : stbi_failure_reason();
    return pix;
}

void cnn_image_free(unsigned char *pix) { stbi_image_free(pix); }
