/* image_decode.c — stb_image (from Debian's libstb-dev header) compiled into the library with
 * only its JPEG, PNG and BMP decoders and with zero-filled allocations: on corrupt files the
 * packaged stb_image reads heap it never wrote (valgrind, under fuzzing), which would give
 * garbage pixels that differ from run to run. Nothing else here; imagefolder.c decides what
 * reaches it. */
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

bool cnn_image_info(const unsigned char *file, size_t len, int *w, int *h)
{
    int n = 0;
    return len <= INT32_MAX && stbi_info_from_memory(file, (int)len, w, h, &n);
}

unsigned char *cnn_image_decode(const unsigned char *file, size_t len, int channels, int *w,
                                int *h, const char **why)
{
    int n = 0;
    unsigned char *pix =
        len <= INT32_MAX ? stbi_load_from_memory(file, (int)len, w, h, &n, channels) : NULL;
    if (!pix) *why = len > INT32_MAX ? "file too large" : stbi_failure_reason();
    return pix;
}

void cnn_image_free(unsigned char *pix) { stbi_image_free(pix); }
