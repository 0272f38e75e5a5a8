/* test_image_pnm.c — Netpbm files (PBM, PGM, PPM; plain and raw): pixels as Pillow gives them
 * (samples scaled from the maxval as Python's round does, a PBM's 1 black, gray made RGB and
 * RGB made gray as for every format), comments in the header, 16-bit samples; malformed,
 * truncated and out-of-range files refused with a reason; mutated files never crash; and an
 * image folder lists and decodes .ppm/.pgm/.pbm/.pnm files. */
#include "test.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../data/dataset.h"
#include "data_fixtures.h"

/* Decodes the n bytes at f (channels 1 or 3): the pixels, or NULL with the reason in *why. */
static unsigned char *decode(const void *f, size_t n, int channels, int *w, int *h,
                             const char **why)
{
    *w = *h = 0;
    *why = NULL;
    return cnn_image_decode(f, n, channels, w, h, why);
}

/* Whether pix holds the n bytes at want. */
static bool same(const unsigned char *pix, const unsigned char *want, size_t n)
{
    return pix && memcmp(pix, want, n) == 0;
}

TEST(pnm_raw_and_plain_pixmaps_and_graymaps_decode_alike)
{
    const unsigned char rgb[] = {255, 0, 0, 0, 128, 7, 1, 2, 3, 90, 91, 92, 0, 0, 0, 255, 255, 9};
    unsigned char raw[64];
    int n = snprintf((char *)raw, sizeof raw, "P6\n# made by hand\n3 2 # width height\n255\n");
    memcpy(raw + n, rgb, sizeof rgb);
    const char plain[] = "P3 3 2 255\n255 0 0  0 128 7  1 2 3\n# a comment line\n"
                         "90 91 92 0 0 0 255 255 9\n";
    int w, h;
    const char *why;
    CHECK(cnn_image_refusal(raw, (size_t)n + sizeof rgb) == NULL);
    CHECK(cnn_image_info(raw, (size_t)n + sizeof rgb, &w, &h) && w == 3 && h == 2);
    unsigned char *a = decode(raw, (size_t)n + sizeof rgb, 3, &w, &h, &why);
    CHECK(same(a, rgb, sizeof rgb) && w == 3 && h == 2);
    unsigned char *b = decode(plain, sizeof plain - 1, 3, &w, &h, &why);
    CHECK(same(b, rgb, sizeof rgb) && w == 3 && h == 2);
    free(a);
    free(b);
    /* Gray from colour: PIL's L = (19595 R + 38470 G + 7471 B + 2^15) >> 16. */
    unsigned char gray[6];
    for (int i = 0; i < 6; i++) {
        const unsigned char *p = rgb + 3 * i;
        gray[i] = (unsigned char)((19595u * p[0] + 38470u * p[1] + 7471u * p[2] + 0x8000u) >> 16);
    }
    a = decode(plain, sizeof plain - 1, 1, &w, &h, &why);
    CHECK(same(a, gray, sizeof gray) && gray[0] == 76);
    free(a);
    /* A graymap, raw and plain, as gray and as RGB (replicated). */
    const unsigned char g5[] = "P5 2 2 255\n\x00\x10\xf0\xff";
    const char g2[] = "P2\n2 2\n255\n0 16\n240 255";
    const unsigned char g[4] = {0, 16, 240, 255};
    unsigned char g3[12];
    for (int i = 0; i < 12; i++) g3[i] = g[i / 3];
    a = decode(g5, sizeof g5 - 1, 1, &w, &h, &why);
    b = decode(g2, sizeof g2 - 1, 3, &w, &h, &why);
    CHECK(same(a, g, 4) && same(b, g3, 12) && w == 2 && h == 2);
    free(a);
    free(b);
    /* Several images in one file: the first; bytes after it are not read. */
    const unsigned char two[] = "P5 1 1 255\n\x2aP5 1 1 255\n\x07";
    a = decode(two, sizeof two - 1, 1, &w, &h, &why);
    CHECK(a && a[0] == 42 && w == 1 && h == 1);
    free(a);
}

/* Pillow's round(v / maxval * 255): half to even, in double. maxval 510: 253 -> 126.5 -> 126
 * and 255 -> 127.5 -> 128. 16-bit samples are big-endian; a raw sample above the maxval is 255
 * (Pillow clamps), a plain one an error (Pillow raises). */
TEST(pnm_samples_scale_from_their_maxval_as_pillow_rounds)
{
    int w, h;
    const char *why;
    const unsigned char m15[] = "P5 4 1 15\n\x00\x01\x0f\x08";
    unsigned char *a = decode(m15, sizeof m15 - 1, 1, &w, &h, &why);
    CHECK(same(a, (const unsigned char *)"\x00\x11\xff\x88", 4));
    free(a);
    const char m510[] = "P2 4 1 510 253 255 1 509";
    a = decode(m510, sizeof m510 - 1, 1, &w, &h, &why);
    CHECK(a && a[0] == 126 && a[1] == 128 && a[2] == 0 && a[3] == 254);
    free(a);
    /* 16 bits: 0, 128 (0.498 -> 0), 32768 (127.502 -> 128), 65535; maxval 1000 with 1200. */
    const unsigned char w16[] = "P5 4 1 65535\n\x00\x00\x00\x80\x80\x00\xff\xff";
    a = decode(w16, sizeof w16 - 1, 1, &w, &h, &why);
    CHECK(same(a, (const unsigned char *)"\x00\x00\x80\xff", 4));
    free(a);
    const unsigned char rgb16[] = "P6 1 1 1000\n\x01\xf4\x00\x00\x04\xb0"; /* 500, 0, 1200 */
    a = decode(rgb16, sizeof rgb16 - 1, 3, &w, &h, &why);
    CHECK(same(a, (const unsigned char *)"\x80\x00\xff", 3));
    free(a);
    const unsigned char over[] = "P5 1 1 100\n\xc8"; /* raw 200 > 100 */
    a = decode(over, sizeof over - 1, 1, &w, &h, &why);
    CHECK(a && a[0] == 255);
    free(a);
    const char plain_over[] = "P2 2 1 100 7 101";
    a = decode(plain_over, sizeof plain_over - 1, 1, &w, &h, &why);
    CHECK(!a && why && strstr(why, "above the header's maxval"));
}

/* PBM: 1 is black, 0 white; plain pixels need no separators; raw rows are packed from the high
 * bit and end on a byte (width 10: two bytes a row, six bits unused). */
TEST(pnm_bitmaps_are_black_on_one)
{
    int w, h;
    const char *why;
    const char p1[] = "P1\n# bitmap\n5 2\n01011\n1 0 0 0 1";
    unsigned char *a = decode(p1, sizeof p1 - 1, 1, &w, &h, &why);
    const unsigned char want1[10] = {255, 0, 255, 0, 0, 0, 255, 255, 255, 0};
    CHECK(same(a, want1, 10) && w == 5 && h == 2);
    free(a);
    const unsigned char p4[] = "P4 10 2\n\x80\x7f\x40\xc0"; /* rows 1000000001, 0100000011 */
    a = decode(p4, sizeof p4 - 1, 3, &w, &h, &why);
    REQUIRE(a && w == 10 && h == 2);
    const char *rows = "10000000010100000011";
    int wrong = 0;
    for (int i = 0; i < 20; i++)
        for (int c = 0; c < 3; c++) wrong += a[3 * i + c] != (rows[i] == '1' ? 0 : 255);
    CHECK(wrong == 0);
    free(a);
    const char p1_bad[] = "P1 2 1 0 2";
    a = decode(p1_bad, sizeof p1_bad - 1, 1, &w, &h, &why);
    CHECK(!a && why && strstr(why, "above the header's maxval"));
}

/* Each malformed file is refused before any pixel memory is taken, with its reason; the
 * refusal, the header query and the decoder agree. */
TEST(pnm_malformed_files_are_refused_with_a_reason)
{
    static const struct {
        const char *file;
        const char *why;
    } cases[] = { /* the first five are found by the length check, the sixth only decoding */
        {"P6 2 2 255\n\x01\x02\x03", "truncated PNM"},
        {"P5 3 3 65535\n\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c", "truncated PNM"},
        {"P4 9 2\n\x01\x02\x03", "truncated PNM"},
        {"P2 3 1 255 1 2", "truncated PNM"},
        {"P1 3 2 0101", "truncated PNM"},
        {"P3 1 1 255 1 2 x", "a sample is missing"},
        {"P6\n3", "header cut short"},
        {"P6 3 2", "header cut short or malformed (maxval)"},
        {"P5 0 4 255\n", "zero or absurd width"},
        {"P5 99999999999 1 255\n", "zero or absurd width"},
        {"P5 4 16777217 255\n", "zero or absurd width"},
        {"P5 -1 1 255\n", "header cut short or malformed (width, height)"},
        {"P5 1 1 0\n\x00", "maxval outside"},
        {"P5 1 1 65536\n\x00\x00", "maxval outside"},
        {"P5 1 1 255", "not followed by whitespace"},
        {"P5 1 1 255x\x00", "not followed by whitespace"},
        {"P7 1 1 255\n\x00", "not a JPEG, PNG, BMP or PNM file"},
        {"P6x", "not a JPEG, PNG, BMP or PNM file"},
    };
    int w, h;
    const char *why;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *f = cases[i].file;
        const size_t n = strlen(f);
        const char *refused = cnn_image_refusal((const unsigned char *)f, n);
        unsigned char *pix = decode(f, n, 3, &w, &h, &why);
        const bool header = cnn_image_info((const unsigned char *)f, n, &w, &h);
        if (pix || (i == 5 ? refused != NULL : !refused || !strstr(refused, cases[i].why)) ||
            !why || !strstr(why, cases[i].why) || (header && strstr(cases[i].why, "header")))
            cnn_test_fail(__FILE__, __LINE__, "case %zu (%s): refused '%s', decode '%s'", i,
                          cases[i].why, refused ? refused : "-", why ? why : "-");
        free(pix);
    }
}

/* Mutated PNM files (bytes set, bits flipped, cut short; a fixed seed) each decode to the size
 * their header gives or are refused with a reason: never a crash (under ASan in CI). */
TEST(pnm_mutated_files_never_crash)
{
    unsigned char seeds[5][160];
    size_t len[5];
    len[0] = (size_t)snprintf((char *)seeds[0], 64, "P6\n# c\n4 3\n255\n");
    len[1] = (size_t)snprintf((char *)seeds[1], 64, "P5 4 3 1023\n");
    len[2] = (size_t)snprintf((char *)seeds[2], 160, "P3 2 2 15 0 1 2 3 4 5 6 7 8 9 10 11\n");
    len[3] = (size_t)snprintf((char *)seeds[3], 64, "P4 12 3\n");
    len[4] = (size_t)snprintf((char *)seeds[4], 160, "P1 3 3 010 111 000\n");
    for (int i = 0; i < 36; i++) seeds[0][len[0] + i] = (unsigned char)(i * 37);
    len[0] += 36;
    for (int i = 0; i < 24; i++) seeds[1][len[1] + i] = (unsigned char)(i * 11);
    len[1] += 24;
    for (int i = 0; i < 6; i++) seeds[3][len[3] + i] = (unsigned char)(0xA5 ^ i);
    len[3] += 6;
    uint64_t r = 0x2545F4914F6CDD1Dull;
    int decoded = 0, refused = 0, bad = 0;
    unsigned char buf[160];
    for (int it = 0; it < 3000; it++) {
        const int k = it % 5;
        size_t n = len[k];
        memcpy(buf, seeds[k], n);
        for (int j = 0; j < 1 + it % 3; j++) {
            r ^= r << 13, r ^= r >> 7, r ^= r << 17;
            const size_t at = (size_t)(r >> 8) % n;
            if (r % 4 == 0) n = at > 2 ? at : n;
            else if (r % 4 == 1) buf[at] = (unsigned char)(r >> 40);
            else if (r % 4 == 2) buf[at] = "0123456789 #\nP"[(r >> 40) % 14];
            else buf[at] ^= (unsigned char)(1u << (r >> 50) % 8);
        }
        int w = 0, h = 0, iw = 0, ih = 0;
        const char *why = NULL;
        unsigned char *pix = cnn_image_decode(buf, n, 1 + 2 * (it % 2), &w, &h, &why);
        const bool info = cnn_image_info(buf, n, &iw, &ih);
        if (pix) {
            decoded++;
            bad += !info || w != iw || h != ih || cnn_image_refusal(buf, n) != NULL;
            free(pix);
        } else {
            refused++;
            bad += why == NULL;
        }
    }
    CHECK(bad == 0);
    CHECK(decoded > 300 && refused > 300);
}

/* A folder's .ppm, .pgm, .pbm and .PNM files are images (any case), decoded by their content:
 * the gray levels come through the evaluation transform unchanged; a truncated one is a
 * per-sample error naming it. */
TEST(imagefolder_reads_netpbm_files)
{
    CHECK(cnn_imagefolder_is_image_name("a.ppm") && cnn_imagefolder_is_image_name("b.PGM"));
    CHECK(cnn_imagefolder_is_image_name("c.pbm") && cnn_imagefolder_is_image_name("d.pnm"));
    CHECK(!cnn_imagefolder_is_image_name("e.pam") && !cnn_imagefolder_is_image_name("ppm"));
    char root[64], dir[512];
    REQUIRE(data_test_one_class_folder(root, "train", dir, sizeof dir) == 0);
    unsigned char ppm[32 + 48], pgm[32 + 16];
    int np = snprintf((char *)ppm, 32, "P6 4 4 255\n"), ng = snprintf((char *)pgm, 32, "P2 4 4 3 ");
    for (int i = 0; i < 48; i++) ppm[np + i] = 60;
    REQUIRE(data_test_write_bytes(dir, "a.ppm", ppm, (size_t)np + 48) == 0);
    for (int i = 0; i < 16; i++) ng += snprintf((char *)pgm + ng, sizeof pgm - (size_t)ng, "1 ");
    REQUIRE(data_test_write_bytes(dir, "b.PNM", pgm, (size_t)ng) == 0);
    REQUIRE(data_test_write_bytes(dir, "c.pbm", "P4 4 4\n\xf0\xf0\xf0\xf0", 11) == 0);
    REQUIRE(data_test_write_bytes(dir, "d.pgm", ppm, (size_t)np + 20) == 0); /* truncated */
    cnn_dataset *ds = NULL;
    CHECK_OK(cnn_imagefolder_create(root, "train", 1, &ds));
    REQUIRE(ds && cnn_dataset_size(ds) == 4);
    cnn_transform t = cnn_transform_default(ds, false, 4);
    t.mean[0] = 0;
    t.std[0] = 1;
    float out[16];
    const int want[3] = {60, 85, 0}; /* 85: round(1 / 3 * 255); a PBM's 1 is black */
    for (int i = 0; i < 3; i++) {
        CHECK_OK(cnn_dataset_get(ds, i, &t, 1, 0, out, NULL));
        float worst = 0;
        for (int p = 0; p < 16; p++) worst = fmaxf(worst, fabsf(out[p] - want[i] / 255.0f));
        if (worst > 0.5f / 255) cnn_test_fail(__FILE__, __LINE__, "file %d: off by %g", i, worst);
    }
    CHECK_ERR(cnn_dataset_get(ds, 3, &t, 1, 0, out, NULL), CNN_ERR_FORMAT);
    CHECK(strstr(cnn_last_error(), "d.pgm") && strstr(cnn_last_error(), "truncated PNM"));
    cnn_dataset_destroy(&ds);
    data_test_remove_tree(root);
}
