/* test_image_decode.c — the folder dataset's decoding of files that are not what they claim:
 * JPEG variants stb_image cannot decode, files replaced by FIFOs, absurd sizes and Huffman
 * tables, truncated BMPs, PNGs and JPEGs, hostile PNGs and JPEGs built byte by byte, other
 * formats and randomly mutated files. Each is a per-sample error naming the file, never a crash
 * or a wrong image; and legal files at the edges of those checks (256 Huffman codes, CgBI,
 * gray + alpha, interlaced RGBA) still decode. */
#include "test.h"

#include <math.h>
#include <stb/stb_image_write.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "../data/dataset.h"
#include "data_fixtures.h"
#include "scratch.h"

/* Rewrites one byte of a file: at the first FF C0 (baseline SOF) marker plus `delta`. */
static int patch_sof(const char *path, int delta, unsigned char value)
{
    FILE *f = fopen(path, "r+b");
    if (!f) return -1;
    unsigned char buf[4096];
    size_t n = fread(buf, 1, sizeof buf, f);
    int rc = -1;
    for (size_t i = 0; i + 1 < n; i++)
        if (buf[i] == 0xFF && buf[i + 1] == 0xC0) {
            fseek(f, (long)(i + (size_t)delta), SEEK_SET);
            fputc(value, f);
            rc = 0;
            break;
        }
    fclose(f);
    return rc;
}

TEST(imagefolder_rejected_jpeg_variants_are_per_sample_errors)
{
    char root[64], dir[512], path[1024];
    REQUIRE(data_test_one_class_folder(root, "val", dir, sizeof dir) == 0);
    /* 12-bit precision and arithmetic coding (SOF9), which stb_image does not decode. */
    REQUIRE(data_test_write_image(dir, "a12bit.jpg", 16, 16, 3, 10) == 0);
    snprintf(path, sizeof path, "%s/a12bit.jpg", dir);
    REQUIRE(patch_sof(path, 4, 12) == 0);
    REQUIRE(data_test_write_image(dir, "arith.jpg", 16, 16, 3, 10) == 0);
    snprintf(path, sizeof path, "%s/arith.jpg", dir);
    REQUIRE(patch_sof(path, 1, 0xC9) == 0);
    REQUIRE(data_test_write_image(dir, "good.PNG", 5, 7, 3, 10) == 0);
    cnn_dataset *ds = NULL;
    CHECK_OK(cnn_imagefolder_create(root, "val", 3, &ds));
    REQUIRE(cnn_dataset_size(ds) == 3);
    cnn_transform t = cnn_transform_default(ds, true, 4);
    float out[48];
    CHECK_ERR(cnn_dataset_get(ds, 0, &t, 1, 0, out, NULL), CNN_ERR_FORMAT);
    CHECK(strstr(cnn_last_error(), "a12bit.jpg") && strstr(cnn_last_error(), "12-bit JPEG"));
    CHECK_ERR(cnn_dataset_get(ds, 1, &t, 1, 0, out, NULL), CNN_ERR_FORMAT);
    CHECK(strstr(cnn_last_error(), "arith.jpg") &&
          strstr(cnn_last_error(), "arithmetic-coded JPEG"));
    CHECK_OK(cnn_dataset_get(ds, 2, &t, 1, 0, out, NULL));
    /* A file removed after listing is an I/O error of that sample. */
    snprintf(path, sizeof path, "%s/good.PNG", dir);
    REQUIRE(unlink(path) == 0);
    CHECK_ERR(cnn_dataset_get(ds, 2, &t, 1, 0, out, NULL), CNN_ERR_IO);
    CHECK(strstr(cnn_last_error(), "good.PNG") != NULL);
    cnn_dataset_destroy(&ds);
    data_test_remove_tree(root);
}

/* A file replaced by a FIFO after listing is an I/O error of that sample at once (reading it
 * would wait for a writer forever and stall the loader): checked in a child with an alarm. */
TEST(imagefolder_file_replaced_by_a_fifo_is_refused_without_waiting)
{
    char root[64], dir[512], path[1024];
    REQUIRE(data_test_one_class_folder(root, "val", dir, sizeof dir) == 0);
    REQUIRE(data_test_write_image(dir, "a.png", 5, 7, 3, 10) == 0);
    cnn_dataset *ds = NULL;
    CHECK_OK(cnn_imagefolder_create(root, "val", 3, &ds));
    REQUIRE(ds && cnn_dataset_size(ds) == 1);
    snprintf(path, sizeof path, "%s/a.png", dir);
    REQUIRE(unlink(path) == 0 && mkfifo(path, 0600) == 0);
    cnn_transform t = cnn_transform_default(ds, false, 4);
    int pid = cnn_test_fork(10);
    REQUIRE(pid >= 0);
    if (pid == 0) {
        float out[48];
        cnn_status st = cnn_dataset_get(ds, 0, &t, 1, 0, out, NULL);
        _exit(st == CNN_ERR_IO && strstr(cnn_last_error(), "a.png") ? 0 : 1);
    }
    CHECK(cnn_test_child_ok(pid));
    cnn_dataset_destroy(&ds);
    data_test_remove_tree(root);
}

/* Overwrites 4 bytes at offset off of dir/name with v, little- or big-endian. */
static int patch_u32(const char *dir, const char *name, long off, uint32_t v, bool big_endian)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "r+b");
    if (!f) return -1;
    unsigned char b[4];
    for (int i = 0; i < 4; i++) b[i] = (unsigned char)(v >> (big_endian ? 24 - 8 * i : 8 * i));
    int ok = fseek(f, off, SEEK_SET) == 0 && fwrite(b, 1, 4, f) == 4;
    fclose(f);
    return ok ? 0 : -1;
}

/* A header that claims a huge image is refused from the header alone: stb_image would allocate
 * for it, and stb_image_resize aborts on sides near 2^24. A top-down BMP (negative height) is
 * still a good image. A JPEG Huffman table of more than 256 codes is refused before stb_image
 * sees it. */
TEST(imagefolder_absurd_sizes_and_huffman_tables_are_refused)
{
    char root[64], dir[512];
    REQUIRE(data_test_one_class_folder(root, "train", dir, sizeof dir) == 0);
    REQUIRE(data_test_write_image(dir, "a_tall.bmp", 24, 20, 3, 10) == 0);
    REQUIRE(patch_u32(dir, "a_tall.bmp", 22, (uint32_t)-16777196, false) == 0);
    REQUIRE(data_test_write_image(dir, "b_wide.png", 4, 4, 3, 10) == 0);
    REQUIRE(patch_u32(dir, "b_wide.png", 16, 40000, true) == 0);
    REQUIRE(data_test_write_image(dir, "c_topdown.bmp", 4, 4, 3, 90) == 0);
    REQUIRE(patch_u32(dir, "c_topdown.bmp", 22, (uint32_t)-4, false) == 0);
    /* A Huffman table claiming 16 x 255 codes: the packaged stb_image would write past its
     * tables. Its first DHT segment's counts start 5 bytes after the marker. */
    REQUIRE(data_test_write_image(dir, "d_huff.jpg", 8, 8, 3, 50) == 0);
    char path[1024];
    snprintf(path, sizeof path, "%s/d_huff.jpg", dir);
    size_t n = 0;
    unsigned char *jpg = scratch_read(path, &n);
    REQUIRE(jpg);
    size_t dht = 2;
    while (dht + 1 < n && !(jpg[dht] == 0xFF && jpg[dht + 1] == 0xC4)) dht++;
    REQUIRE(dht + 21 < n);
    for (int k = 0; k < 16; k++) jpg[dht + 5 + k] = 255;
    const int wrote = data_test_write_bytes(dir, "d_huff.jpg", jpg, n);
    free(jpg);
    REQUIRE(wrote == 0);
    cnn_dataset *ds = NULL;
    CHECK_OK(cnn_imagefolder_create(root, "train", 3, &ds));
    REQUIRE(cnn_dataset_size(ds) == 4);
    cnn_transform t = cnn_transform_default(ds, true, 8);
    float out[3 * 8 * 8];
    CHECK_ERR(cnn_dataset_get(ds, 0, &t, 1, 0, out, NULL), CNN_ERR_FORMAT);
    CHECK(strstr(cnn_last_error(), "a_tall.bmp") && strstr(cnn_last_error(), "24 x 16777196") &&
          strstr(cnn_last_error(), "not supported"));
    CHECK_ERR(cnn_dataset_get(ds, 1, &t, 1, 0, out, NULL), CNN_ERR_FORMAT);
    CHECK(strstr(cnn_last_error(), "b_wide.png") && strstr(cnn_last_error(), "40000 x 4"));
    CHECK_OK(cnn_dataset_get(ds, 2, &t, 1, 0, out, NULL));
    CHECK_ERR(cnn_dataset_get(ds, 3, &t, 1, 0, out, NULL), CNN_ERR_FORMAT);
    CHECK(strstr(cnn_last_error(), "d_huff.jpg") &&
          strstr(cnn_last_error(), "more than 256 codes"));
    cnn_dataset_destroy(&ds);
    data_test_remove_tree(root);
}

/* Files cut short, or claiming more than they hold, are refused by name before stb_image sees
 * them: it reads the missing bytes of a BMP as zeros (a black image), and grows its buffer to a
 * PNG chunk's claimed length before reading it (a 53-byte file cost 2 GB). BMPs bottom-up and
 * top-down, 24-bit and 32-bit (a 108-byte header); a BMP whose last row lacks only its padding,
 * and a PNG whose last chunk lacks only its CRC, are still read. The 13 x 10 RGB BMP has rows
 * of 39 bytes padded to 40: 54 + 10 x 40 = 454 bytes. A PNG's first chunk after its 13-byte
 * header (IHDR) starts at byte 33. */
TEST(imagefolder_truncated_bmp_and_png_are_refused)
{
    char root[64], dir[512], path[1024];
    REQUIRE(data_test_one_class_folder(root, "train", dir, sizeof dir) == 0);
    const char *names[9] = {"a_full.bmp",    "b_nopad.bmp", "c_cut.bmp",
                            "d_header.bmp",  "e_topdown.bmp", "f_rgba.bmp",
                            "g_nocrc.png",   "h_cut.png",   "i_claims.png"};
    const int cut[9] = {0, 1, 40, 454 - 60, 2, 1, 2, 20, 0}; /* bytes taken off the end */
    const bool good[9] = {true, true, false, false, false, false, true, false, false};
    for (int i = 0; i < 9; i++) {
        REQUIRE(data_test_write_image(dir, names[i], 13, 10, i == 5 ? 4 : 3, 30 + 20 * i) == 0);
        if (i == 4) REQUIRE(patch_u32(dir, names[i], 22, (uint32_t)-10, false) == 0);
        if (i == 8) REQUIRE(patch_u32(dir, names[i], 33, 0x6d18003eu, true) == 0);
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        size_t n = 0;
        unsigned char *b = scratch_read(path, &n);
        REQUIRE(b && n > (size_t)cut[i] + 45);
        if (i < 5) CHECK(n == 454);
        const int wrote = data_test_write_bytes(dir, names[i], b, n - (size_t)cut[i]);
        free(b);
        REQUIRE(wrote == 0);
    }
    cnn_dataset *ds = NULL;
    CHECK_OK(cnn_imagefolder_create(root, "train", 3, &ds));
    REQUIRE(cnn_dataset_size(ds) == 9);
    cnn_transform t = cnn_transform_default(ds, false, 8);
    float out[3 * 8 * 8];
    for (int i = 0; i < 9; i++) {
        cnn_status st = cnn_dataset_get(ds, i, &t, 1, 0, out, NULL);
        if (good[i]) {
            CHECK_OK(st);
        } else {
            const char *e = cnn_last_error();
            CHECK(st == CNN_ERR_FORMAT && strstr(e, names[i]) &&
                  strstr(e, i < 6 ? "truncated" : "truncated or corrupt PNG"));
        }
    }
    cnn_dataset_destroy(&ds);
    data_test_remove_tree(root);
}

/* A JPEG cut short anywhere (before its end-of-image marker, in its headers, or inside its
 * entropy-coded data) is refused as truncated, by name. Bytes after the end-of-image marker
 * (some cameras and editors append them) and an end-of-image marker inside an APP1 segment (an
 * Exif thumbnail is a whole JPEG) are not mistaken for the end. */
TEST(imagefolder_truncated_jpeg_is_named_and_trailing_bytes_are_not)
{
    char root[64], dir[512], path[1024];
    REQUIRE(data_test_one_class_folder(root, "train", dir, sizeof dir) == 0);
    unsigned char p[64 * 64 * 3];
    for (int i = 0; i < 64 * 64 * 3; i++) p[i] = (unsigned char)((i * 7919) >> 3);
    snprintf(path, sizeof path, "%s/../source.jpg", dir);
    REQUIRE(stbi_write_jpg(path, 64, 64, 3, p, 90));
    size_t n = 0;
    unsigned char *b = scratch_read(path, &n);
    REQUIRE(b && n > 400 && b[n - 2] == 0xFF && b[n - 1] == 0xD9);
    REQUIRE(remove(path) == 0);
    unsigned char *e = malloc(n + 256);
    REQUIRE(e);
    REQUIRE(data_test_write_bytes(dir, "a_whole.jpg", b, n) == 0);
    memcpy(e, b, n);
    for (int i = 0; i < 100; i++) e[n + i] = (unsigned char)(i % 3 ? 0xFF : 0xD8 + i % 2);
    REQUIRE(data_test_write_bytes(dir, "b_trailing.jpg", e, n + 100) == 0);
    /* SOI, APP1 holding "Exif\0\0" and a thumbnail-like SOI ... EOI, then the rest. */
    const unsigned char app1[] = {0xFF, 0xE1, 0, 14, 'E', 'x', 'i', 'f', 0, 0,
                                  0xFF, 0xD8, 0xFF, 0xD9, 0xFF, 0xD9};
    memcpy(e, b, 2);
    memcpy(e + 2, app1, sizeof app1);
    memcpy(e + 2 + sizeof app1, b + 2, n - 2);
    REQUIRE(data_test_write_bytes(dir, "c_app1.jpg", e, n + sizeof app1) == 0);
    REQUIRE(data_test_write_bytes(dir, "d_no_eoi.jpg", b, n - 2) == 0);
    REQUIRE(data_test_write_bytes(dir, "e_cut_data.jpg", b, n * 9 / 10) == 0);
    REQUIRE(data_test_write_bytes(dir, "f_cut_header.jpg", b, 40) == 0);
    free(e);
    free(b);
    cnn_dataset *ds = NULL;
    CHECK_OK(cnn_imagefolder_create(root, "train", 3, &ds));
    REQUIRE(cnn_dataset_size(ds) == 6);
    cnn_transform t = cnn_transform_default(ds, false, 8);
    float out[3 * 8 * 8], whole[3 * 8 * 8];
    CHECK_OK(cnn_dataset_get(ds, 0, &t, 1, 0, whole, NULL));
    for (int i = 1; i < 6; i++) {
        cnn_status st = cnn_dataset_get(ds, i, &t, 1, 0, out, NULL);
        if (i < 3) {
            CHECK_OK(st);
            CHECK(memcmp(out, whole, sizeof out) == 0);
        } else if (st != CNN_ERR_FORMAT || !strstr(cnn_last_error(), "truncated JPEG")) {
            cnn_test_fail(__FILE__, __LINE__, "sample %d: status %d, '%s'", i, st,
                          cnn_last_error());
        }
    }
    cnn_dataset_destroy(&ds);
    data_test_remove_tree(root);
}

/* ---- hostile PNGs and JPEGs ------------------------------------------------------------------
 * A PNG from parts: the signature, IHDR (w x h, bit depth 8, colour type `type`), the chunks in
 * `extra` (type + data, each a 4-character name then its bytes; NULL-terminated list), an IDAT
 * of `raw` deflated, and IEND unless `no_iend`. Into buf (cap bytes); returns its length. */
typedef struct png_chunk {
    const char *type;
    const unsigned char *data;
    size_t len;
} png_chunk;

static size_t put_chunk(unsigned char *b, const char *type, const unsigned char *d, size_t len)
{
    for (int i = 0; i < 4; i++) b[i] = (unsigned char)(len >> (24 - 8 * i));
    memcpy(b + 4, type, 4);
    if (len) memcpy(b + 8, d, len);
    uint32_t crc = (uint32_t)crc32(0, b + 4, (uInt)(len + 4));
    for (int i = 0; i < 4; i++) b[8 + len + i] = (unsigned char)(crc >> (24 - 8 * i));
    return 12 + len;
}

static size_t build_png(unsigned char *buf, size_t cap, int w, int h, int type,
                        const png_chunk *extra, const unsigned char *raw, size_t raw_len,
                        bool no_iend)
{
    unsigned char ihdr[13] = {0, 0, 0, 0, 0, 0, 0, 0, 8, (unsigned char)type, 0, 0, 0};
    for (int i = 0; i < 4; i++) {
        ihdr[i] = (unsigned char)((unsigned)w >> (24 - 8 * i));
        ihdr[4 + i] = (unsigned char)((unsigned)h >> (24 - 8 * i));
    }
    uLongf zlen = compressBound((uLong)raw_len);
    unsigned char *z = malloc(zlen);
    if (!z || compress2(z, &zlen, raw, (uLong)raw_len, 9) != Z_OK || zlen + 128 > cap) {
        free(z);
        return 0;
    }
    memcpy(buf, "\x89PNG\r\n\x1a\n", 8);
    size_t n = 8 + put_chunk(buf + 8, "IHDR", ihdr, 13);
    for (; extra && extra->type; extra++)
        n += put_chunk(buf + n, extra->type, extra->data, extra->len);
    n += put_chunk(buf + n, "IDAT", z, zlen);
    if (!no_iend) n += put_chunk(buf + n, "IEND", NULL, 0);
    free(z);
    return n;
}

/* A progressive 8-bit gray JPEG of side x side with `scans` empty DC scans (their data read as
 * zeros): a few bytes a scan, a pass over the whole image each for stb_image. */
static size_t build_scans_jpeg(unsigned char *b, int side, int scans)
{
    static const unsigned char dqt[] = {0xFF, 0xDB, 0, 67, 0};
    static const unsigned char dht[] = {0xFF, 0xC4, 0, 20, 0x00, 1, 0, 0, 0, 0, 0, 0, 0,
                                        0,    0,    0, 0,  0,    0, 0, 0, 0x00};
    static const unsigned char sos[] = {0xFF, 0xDA, 0, 8, 1, 1, 0x00, 0, 0, 0};
    size_t n = 0;
    b[n++] = 0xFF, b[n++] = 0xD8;
    memcpy(b + n, dqt, sizeof dqt), n += sizeof dqt;
    memset(b + n, 1, 64), n += 64;
    const unsigned char sof[] = {0xFF, 0xC2, 0, 11, 8, (unsigned char)(side >> 8),
                                 (unsigned char)side, (unsigned char)(side >> 8),
                                 (unsigned char)side, 1, 1, 0x11, 0};
    memcpy(b + n, sof, sizeof sof), n += sizeof sof;
    memcpy(b + n, dht, sizeof dht), n += sizeof dht;
    for (int s = 0; s < scans; s++) memcpy(b + n, sos, sizeof sos), n += sizeof sos;
    b[n++] = 0xFF, b[n++] = 0xD9;
    return n;
}

/* Fills some stack with a pattern, so that a read of stack memory nobody wrote sees it. */
static __attribute__((noinline)) unsigned dirty_stack(unsigned seed)
{
    volatile unsigned char junk[65536];
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (unsigned char)(seed + 37 * i);
    return junk[seed % sizeof junk];
}

/* What review found stb_image doing with hostile files, each kept from it:
 * - a palette PNG whose pixel indexes past its 2-entry palette read stb's uninitialised stack
 *   (pixels differing from run to run): now black, the same at every decode;
 * - 64 MiB of zeros deflated into a 1x1 PNG (a 65 KB file) made stb allocate and zero-fill
 *   gigabytes before it noticed the surplus: refused by the size its header allows;
 * - a progressive JPEG of 101 empty scans (stb passes over the whole image for each: at
 *   8192 x 8192, 28 s for a 10 KB file of 1,000): refused; 100 scans at 64 x 64 still decode;
 * - a PNG cut inside a chunk header or without IEND, and one with an unknown critical chunk
 *   (stb named it in a buffer shared by all threads): refused with a reason. */
TEST(imagefolder_hostile_png_and_jpeg_are_refused_or_decode_alike)
{
    char root[64], dir[512];
    REQUIRE(data_test_one_class_folder(root, "train", dir, sizeof dir) == 0);
    static unsigned char buf[1 << 20];
    const unsigned char pal[6] = {10, 20, 30, 200, 210, 220};
    const png_chunk plte[] = {{"PLTE", pal, 6}, {NULL, NULL, 0}};
    const unsigned char row[4] = {0, 0, 1, 200}; /* filter byte 0, then three indices */
    size_t n = build_png(buf, sizeof buf, 3, 1, 3, plte, row, 4, false);
    REQUIRE(n && data_test_write_bytes(dir, "a_palette.png", buf, n) == 0);
    const size_t zeros = (size_t)64 << 20;
    unsigned char *big = calloc(zeros, 1);
    REQUIRE(big);
    n = build_png(buf, sizeof buf, 1, 1, 0, NULL, big, zeros, false);
    free(big);
    REQUIRE(n && data_test_write_bytes(dir, "b_bomb.png", buf, n) == 0);
    n = build_scans_jpeg(buf, 1024, 101);
    REQUIRE(data_test_write_bytes(dir, "c_scans101.jpg", buf, n) == 0);
    n = build_scans_jpeg(buf, 64, 100);
    REQUIRE(data_test_write_bytes(dir, "d_scans100.jpg", buf, n) == 0);
    const unsigned char gray_row[2] = {0, 77};
    n = build_png(buf, sizeof buf, 1, 1, 0, NULL, gray_row, 2, false);
    REQUIRE(n && data_test_write_bytes(dir, "e_good.png", buf, n) == 0);
    /* IEND's length only */
    REQUIRE(data_test_write_bytes(dir, "f_cut_header.png", buf, n - 12 + 4) == 0);
    n = build_png(buf, sizeof buf, 1, 1, 0, NULL, gray_row, 2, true);
    REQUIRE(n && data_test_write_bytes(dir, "g_no_iend.png", buf, n) == 0);
    const png_chunk odd[] = {{"ZZZZ", gray_row, 2}, {NULL, NULL, 0}};
    n = build_png(buf, sizeof buf, 1, 1, 0, odd, gray_row, 2, false);
    REQUIRE(n && data_test_write_bytes(dir, "h_critical.png", buf, n) == 0);

    cnn_dataset *ds = NULL;
    CHECK_OK(cnn_imagefolder_create(root, "train", 3, &ds));
    REQUIRE(cnn_dataset_size(ds) == 8);
    cnn_transform t = cnn_transform_default(ds, false, 3);
    t.geometry = CNN_GEOM_PAD_OR_RESIZE;
    for (int c = 0; c < 3; c++) t.mean[c] = 0, t.std[c] = 1;
    float out[3 * 3 * 3];
    for (unsigned k = 0; k < 4; k++) {
        (void)dirty_stack(0x5A + 91 * k);
        CHECK_OK(cnn_dataset_get(ds, 0, &t, 1, 0, out, NULL));
        /* Channel-major (3, 3, 3) after a resize of 3x1 to 3x3: the middle row holds the
         * pixels (palette 0, palette 1, index 200 -> black). */
        for (int c = 0; c < 3; c++) {
            CHECK(fabsf(out[c * 9 + 3] - pal[c] / 255.0f) < 1e-6f);
            CHECK(fabsf(out[c * 9 + 4] - pal[3 + c] / 255.0f) < 1e-6f);
            CHECK(out[c * 9 + 5] == 0.0f);
        }
    }
    const char *why[8] = {NULL, "inflates past the size its header gives", "more than 100 scans",
                          NULL, NULL, "ends inside a chunk's header", "no IEND chunk",
                          "unknown critical chunk"};
    for (int i = 1; i < 8; i++) {
        cnn_status st = cnn_dataset_get(ds, i, &t, 1, 0, out, NULL);
        if (!why[i]) {
            CHECK_OK(st);
        } else if (st != CNN_ERR_FORMAT || !strstr(cnn_last_error(), why[i])) {
            cnn_test_fail(__FILE__, __LINE__, "sample %d: status %d, '%s' (want '%s')", i, st,
                          cnn_last_error(), why[i]);
        }
    }
    cnn_dataset_destroy(&ds);
    data_test_remove_tree(root);
}

/* Only JPEG, PNG and BMP content is decoded, whatever the name says: stb_image's other decoders
 * (here Radiance HDR, whose run-length decoder a corrupt file sent into an endless loop) never
 * see a file. And mutated JPEG, PNG and BMP files (bits flipped, bytes set, cut short; a fixed
 * seed) each decode or give a format error naming the file: never a crash (under ASan in CI). */
TEST(imagefolder_other_formats_refused_and_mutated_files_never_crash)
{
    char root[64], dir[512], path[1024];
    REQUIRE(data_test_one_class_folder(root, "train", dir, sizeof dir) == 0);
    float hdr_px[4 * 4 * 3];
    for (int i = 0; i < 48; i++) hdr_px[i] = (float)i / 10;
    snprintf(path, sizeof path, "%s/a_hdr.jpg", dir);
    REQUIRE(stbi_write_hdr(path, 4, 4, 3, hdr_px));
    const char *seeds[3] = {"b.jpg", "c.png", "d.bmp"};
    unsigned char *seed[3];
    size_t len[3];
    for (int k = 0; k < 3; k++) {
        REQUIRE(data_test_write_image(dir, seeds[k], 19, 13, 3, 60 + 50 * k) == 0);
        snprintf(path, sizeof path, "%s/%s", dir, seeds[k]);
        REQUIRE((seed[k] = scratch_read(path, &len[k])) != NULL);
    }
    cnn_dataset *ds = NULL;
    CHECK_OK(cnn_imagefolder_create(root, "train", 3, &ds));
    REQUIRE(cnn_dataset_size(ds) == 4);
    cnn_transform t = cnn_transform_default(ds, true, 16);
    float out[3 * 16 * 16];
    CHECK_ERR(cnn_dataset_get(ds, 0, &t, 1, 0, out, NULL), CNN_ERR_FORMAT);
    CHECK(strstr(cnn_last_error(), "a_hdr.jpg") && strstr(cnn_last_error(), "not a JPEG, PNG, BMP or PNM"));
    uint64_t r = 0x9E3779B97F4A7C15ull;
    int decoded = 0, refused = 0, unnamed = 0;
    unsigned char *buf = malloc(len[0] + len[1] + len[2]);
    REQUIRE(buf);
    for (int it = 0; it < 600; it++) {
        const int k = it % 3;
        size_t n = len[k];
        memcpy(buf, seed[k], n);
        for (int j = 0; j < 1 + it % 4; j++) {
            r ^= r << 13, r ^= r >> 7, r ^= r << 17;
            const size_t at = (size_t)(r >> 8) % (j % 2 ? n : (n < 200 ? n : 200));
            if (r % 5 == 0) n = at > 2 ? at : n; /* cut short */
            else if (r % 5 == 1) buf[at] = (unsigned char)(r >> 40);
            else buf[at] ^= (unsigned char)(1u << (r >> 50) % 8);
        }
        REQUIRE(data_test_write_bytes(dir, seeds[k], buf, n) == 0);
        cnn_status st = cnn_dataset_get(ds, 1 + k, &t, 1, it, out, NULL);
        if (st == CNN_OK) {
            decoded++;
        } else {
            refused++;
            unnamed += st != CNN_ERR_FORMAT || !strstr(cnn_last_error(), seeds[k]);
        }
    }
    CHECK(unnamed == 0);
    CHECK(decoded > 50 && refused > 50);
    free(buf);
    for (int k = 0; k < 3; k++) free(seed[k]);
    cnn_dataset_destroy(&ds);
    data_test_remove_tree(root);
}

/* ---- the refusals' boundaries --------------------------------------------------------------
 * A Huffman table of exactly 256 codes is legal (every 8-bit symbol once) and passes the check
 * that stops stb_image writing past its tables; 257 does not. SOF1 (extended sequential) is
 * checked for 12-bit samples as SOF0 and SOF2 are; Apple's CgBI chunk is a known critical
 * chunk (stb_image reads iPhone PNGs), where another unknown one is refused. */
TEST(image_refusal_boundaries)
{
    unsigned char b[320];
    size_t n = 0;
    b[n++] = 0xFF, b[n++] = 0xD8, b[n++] = 0xFF, b[n++] = 0xC4, b[n++] = 1, b[n++] = 19;
    b[n++] = 0x00; /* DC table 0: 255 codes of 9 bits, 1 of 10 */
    for (int l = 1; l <= 16; l++) b[n++] = l == 9 ? 255 : l == 10 ? 1 : 0;
    for (int s = 0; s < 256; s++) b[n++] = (unsigned char)s;
    b[n++] = 0xFF, b[n++] = 0xD9;
    CHECK(cnn_image_refusal(b, n) == NULL);
    b[7 + 9] = 2; /* 2 codes of 10 bits: 257 in all (the segment's length grows by one) */
    b[5] = 20;
    const char *why = cnn_image_refusal(b, n);
    CHECK(why && strstr(why, "more than 256 codes"));
    static const unsigned char sof1[] = {0xFF, 0xD8, 0xFF, 0xC1, 0, 11, 12, 0, 8, 0,
                                         8,    1,    1,    0x11, 0, 0xFF, 0xD9};
    why = cnn_image_refusal(sof1, sizeof sof1);
    CHECK(why && strstr(why, "12-bit"));
    unsigned char png[256];
    const unsigned char row[2] = {0, 7}, cgbi[4] = {0x50, 0, 0x20, 0x06};
    const png_chunk apple[] = {{"CgBI", cgbi, 4}, {NULL, NULL, 0}};
    const png_chunk other[] = {{"CgBJ", cgbi, 4}, {NULL, NULL, 0}};
    n = build_png(png, sizeof png, 1, 1, 0, apple, row, 2, false);
    CHECK(n > 0 && cnn_image_refusal(png, n) == NULL);
    n = build_png(png, sizeof png, 1, 1, 0, other, row, 2, false);
    why = n ? cnn_image_refusal(png, n) : NULL;
    CHECK(why && strstr(why, "unknown critical chunk"));
}

/* One channel from gray + alpha keeps the gray (PIL's convert('L') of an LA image), not the
 * alpha; and an interlaced RGBA PNG of 600 x 600 decodes: its seven passes' rows hold more
 * bytes than stb_image's first guess (the plain image's), so stb doubles its buffer, which the
 * limit on a PNG's inflated data (made for compressed zeros that claim gigabytes) must allow
 * for every colour type. */
TEST(image_gray_alpha_and_interlaced_rgba_decode)
{
    unsigned char la[5] = {0, 90, 200, 91, 201}, png[4096]; /* filter 0, (L, A) twice */
    size_t n = build_png(png, sizeof png, 2, 1, 4, NULL, la, sizeof la, false);
    int w = 0, h = 0;
    const char *why = NULL;
    unsigned char *pix = n ? cnn_image_decode(png, n, 1, &w, &h, &why) : NULL;
    CHECK(pix && w == 2 && h == 1 && pix[0] == 90 && pix[1] == 91);
    free(pix);
    enum { S = 600 };
    static const int adam7[7][4] = {{0, 0, 8, 8}, {4, 0, 8, 8}, {0, 4, 4, 8}, {2, 0, 4, 4},
                                    {0, 2, 2, 4}, {1, 0, 2, 2}, {0, 1, 1, 2}}; /* x0 y0 dx dy */
    unsigned char *raw = calloc((size_t)2 * S * S * 4, 1);
    REQUIRE(raw);
    size_t len = 0;
    for (int p = 0; p < 7; p++) {
        const int pw = (S - adam7[p][0] + adam7[p][2] - 1) / adam7[p][2];
        const int ph = (S - adam7[p][1] + adam7[p][3] - 1) / adam7[p][3];
        for (int y = 0; y < ph; y++, len += 1 + (size_t)pw * 4) /* filter 0, then RGBA */
            for (int x = 0; x < pw; x++) memcpy(raw + len + 1 + 4 * x, "\x0a\x14\x1e\xff", 4);
    }
    n = build_png(png, sizeof png, S, S, 6, NULL, raw, len, false);
    free(raw);
    REQUIRE(n > 0);
    unsigned char ihdr[13];
    memcpy(ihdr, png + 16, 13);
    ihdr[12] = 1; /* Adam7 */
    put_chunk(png + 8, "IHDR", ihdr, 13);
    pix = cnn_image_decode(png, n, 3, &w, &h, &why);
    if (!pix) cnn_test_fail(__FILE__, __LINE__, "interlaced PNG refused: %s", why);
    CHECK(pix && w == S && h == S && pix[0] == 10 && pix[1] == 20 && pix[2] == 30);
    CHECK(pix && pix[3 * (S * S - 1)] == 10 && pix[3 * (S * S - 1) + 2] == 30);
    free(pix);
}

typedef struct {
    unsigned char *b;
    size_t n;
    unsigned acc;
    int bits;
} bit_writer;

/* k bits of v, most significant first; a whole 0xFF byte is followed by a stuffed 0. */
static void put_bits(bit_writer *w, unsigned v, int k)
{
    for (int i = k - 1; i >= 0; i--) {
        w->acc = (w->acc << 1) | ((v >> i) & 1);
        if (++w->bits < 8) continue;
        w->b[w->n++] = (unsigned char)w->acc;
        if (w->acc == 0xFF) w->b[w->n++] = 0;
        w->acc = 0;
        w->bits = 0;
    }
}

/* A flat JPEG, w x h (multiples of 8), whose nc components hold the values v[]: DC-only
 * blocks (quantiser 8, so a coefficient v - 128 decodes to v), a 4-bit code per DC size
 * category, and for a baseline frame a 1-bit end of block; a progressive frame (progressive
 * true) has its one DC scan and no AC scans (those coefficients stay 0). adobe >= 0 adds an
 * Adobe APP14 segment with that colour transform. */
static size_t build_jpeg_ex(unsigned char *b, int w, int h, const int *v, int nc, int adobe,
                            bool progressive)
{
    static const unsigned char app14[] = {0xFF, 0xEE, 0, 14, 'A', 'd', 'o', 'b',
                                          'e',  0,    100, 0, 0, 0, 0};
    size_t n = 0;
    b[n++] = 0xFF, b[n++] = 0xD8;
    if (adobe >= 0) {
        memcpy(b + n, app14, sizeof app14), n += sizeof app14;
        b[n++] = (unsigned char)adobe;
    }
    const unsigned char dqt[] = {0xFF, 0xDB, 0, 67, 0, 8};
    memcpy(b + n, dqt, sizeof dqt), n += sizeof dqt;
    memset(b + n, 1, 63), n += 63;
    const unsigned char sof[] = {0xFF, progressive ? 0xC2 : 0xC0, 0, (unsigned char)(8 + 3 * nc), 8,
                                 (unsigned char)(h >> 8), (unsigned char)h,
                                 (unsigned char)(w >> 8), (unsigned char)w, (unsigned char)nc};
    memcpy(b + n, sof, sizeof sof), n += sizeof sof;
    for (int c = 0; c < nc; c++) b[n++] = (unsigned char)(c + 1), b[n++] = 0x11, b[n++] = 0;
    const unsigned char dht_dc[] = {0xFF, 0xC4, 0, 31, 0x00, 0, 0, 0, 12}; /* 12 4-bit codes */
    memcpy(b + n, dht_dc, sizeof dht_dc), n += sizeof dht_dc;
    memset(b + n, 0, 12), n += 12;
    for (int s = 0; s < 12; s++) b[n++] = (unsigned char)s;
    const unsigned char dht_ac[] = {0xFF, 0xC4, 0, 20, 0x10, 1}; /* one 1-bit code: EOB */
    memcpy(b + n, dht_ac, sizeof dht_ac), n += sizeof dht_ac;
    memset(b + n, 0, 16), n += 16;
    const unsigned char sos[] = {0xFF, 0xDA, 0, (unsigned char)(6 + 2 * nc), (unsigned char)nc};
    memcpy(b + n, sos, sizeof sos), n += sizeof sos;
    for (int c = 0; c < nc; c++) b[n++] = (unsigned char)(c + 1), b[n++] = 0x00;
    b[n++] = 0, b[n++] = progressive ? 0 : 63, b[n++] = 0; /* spectral selection, Ah/Al */
    bit_writer bw = {b, n, 0, 0};
    int pred[4] = {0, 0, 0, 0};
    for (int blk = 0; blk < (w / 8) * (h / 8); blk++)
        for (int c = 0; c < nc; c++) {
            const int dc = v[c] - 128, diff = dc - pred[c];
            int cat = 0;
            for (int a = abs(diff); a; a >>= 1) cat++;
            put_bits(&bw, (unsigned)cat, 4);
            if (cat) put_bits(&bw, (unsigned)(diff >= 0 ? diff : diff + (1 << cat) - 1), cat);
            if (!progressive) put_bits(&bw, 0, 1);
            pred[c] = dc;
        }
    while (bw.bits) put_bits(&bw, 1, 1);
    n = bw.n;
    b[n++] = 0xFF, b[n++] = 0xD9;
    return n;
}

/* A progressive JPEG decodes to the pixels of the same image written baseline (gray, and a
 * colour whose chroma is not neutral), through the dataset's refusal check too. */
TEST(image_progressive_jpeg_decodes_as_its_baseline_twin)
{
    static unsigned char b[2][4096];
    static const int v[2][3] = {{200, 128, 128}, {90, 60, 200}};
    for (int k = 0; k < 2; k++) {
        unsigned char *pix[2] = {NULL, NULL};
        for (int prog = 0; prog < 2; prog++) {
            size_t n = build_jpeg_ex(b[prog], 24, 16, v[k], 3, -1, prog);
            int w = 0, h = 0;
            const char *why = cnn_image_refusal(b[prog], n);
            pix[prog] = why ? NULL : cnn_image_decode(b[prog], n, 3, &w, &h, &why);
            if (!pix[prog]) cnn_test_fail(__FILE__, __LINE__, "colour %d %s refused: %s", k,
                                          prog ? "progressive" : "baseline", why);
            CHECK(!pix[prog] || (w == 24 && h == 16));
        }
        CHECK(b[1][2 + 69 + 1] == 0xC2); /* after SOI and the DQT: a progressive frame */
        CHECK(pix[0] && pix[1] && !memcmp(pix[0], pix[1], 24 * 16 * 3));
        if (k == 0) CHECK(pix[1] && pix[1][0] == 200 && pix[1][1] == 200 && pix[1][2] == 200);
        if (k == 1) CHECK(pix[1] && pix[1][2] < pix[1][0]); /* Cr 200: red over blue */
        free(pix[0]);
        free(pix[1]);
    }
}

/* Four-component JPEGs, baseline and progressive: Adobe's (inverted) CMYK and YCCK decode to
 * their colours; one without the Adobe segment, or with another transform, is refused with a
 * reason (stb_image read it as YCbCr and dropped the fourth component: a green file came out
 * blue, without a word). */
TEST(image_cmyk_jpeg_decodes_with_adobes_marker_and_is_refused_without)
{
    static unsigned char b[4096];
    static const struct {
        int v[4], nc, adobe, rgb; /* rgb: the colour expected, 0xRRGGBB; < 0: refused */
    } cases[] = {
        {{200, 128, 128, 0}, 3, -1, 0xC8C8C8},  /* the builder's check: YCbCr gray 200 */
        {{255, 0, 0, 255}, 4, 0, 0xFF0000},     /* Adobe CMYK (inverted): C 0, M Y 100%: red */
        {{0, 255, 0, 255}, 4, 0, 0x00FF00},     /* green */
        {{55, 128, 128, 255}, 4, 2, 0xC8C8C8},  /* YCCK: Y 55 is C = M = Y = 200 (inverted) */
        {{0, 255, 0, 255}, 4, -1, -1},          /* no marker: plain or inverted CMYK unknown */
        {{0, 255, 0, 255}, 4, 1, -2},           /* transform 1 is YCbCr: no fourth component */
    };
    for (size_t j = 0; j < 2 * sizeof cases / sizeof *cases; j++) {
        const size_t i = j / 2;
        const bool prog = j % 2;
        size_t n = build_jpeg_ex(b, 16, 8, cases[i].v, cases[i].nc, cases[i].adobe, prog);
        CHECK(b[2 + (cases[i].adobe >= 0 ? 16 : 0) + 69 + 1] == (prog ? 0xC2 : 0xC0));
        int w = 0, h = 0;
        const char *why = cnn_image_refusal(b, n); /* first, as the dataset does */
        unsigned char *pix = why ? NULL : cnn_image_decode(b, n, 3, &w, &h, &why);
        if (cases[i].rgb < 0) {
            CHECK(!pix && why &&
                  strstr(why, cases[i].rgb == -1 ? "CMYK JPEG without Adobe's marker"
                                                 : "Adobe marker gives neither CMYK"));
            if (pix) cnn_test_fail(__FILE__, __LINE__, "case %zu%s decoded: %d %d %d", i,
                                   prog ? " (progressive)" : "", pix[0], pix[1], pix[2]);
            free(pix);
            continue;
        }
        if (!pix) cnn_test_fail(__FILE__, __LINE__, "case %zu%s refused: %s", i,
                                prog ? " (progressive)" : "", why);
        for (int p = 0; pix && p < 16 * 8; p++)
            for (int c = 0; c < 3; c++) {
                const int want = (cases[i].rgb >> (16 - 8 * c)) & 0xFF;
                if (abs(pix[3 * p + c] - want) > 1) {
                    cnn_test_fail(__FILE__, __LINE__, "case %zu%s pixel %d channel %d: %d, not %d",
                                  i, prog ? " (progressive)" : "", p, c, pix[3 * p + c], want);
                    p = 16 * 8;
                    break;
                }
            }
        CHECK(!pix || (w == 16 && h == 8));
        free(pix);
    }
}
