/* test_augment.c — the per-sample transforms on synthetic IDX images the test writes: eval
 * geometry (resize + centre crop gives known pixels), padding, normalisation, flip, affine
 * zoom, colour jitter, and determinism of the random steps in (seed, epoch, index).
 * RandomErasing and where the other draws land: test_augment_draws.c. */
#include "test.h"

#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include <stb/stb_image_write.h>

#include "data_fixtures.h"

static void put_be32(FILE *f, uint32_t v)
{
    unsigned char b[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 8), (unsigned char)v};
    fwrite(b, 1, 4, f);
}

/* Writes dir/img and dir/lab: n images rows x cols with pixel (i, y, x) = (i*37 + y*cols + x)
 * mod 256 and label i mod 3. Returns 0 on success. */
int data_test_write_idx(const char *dir, int n, int rows, int cols, char *img, char *lab)
{
    sprintf(img, "%s/img", dir);
    sprintf(lab, "%s/lab", dir);
    FILE *f = fopen(img, "wb"), *g = fopen(lab, "wb");
    if (!f || !g) {
        if (f) fclose(f);
        if (g) fclose(g);
        return -1;
    }
    fwrite("\0\0\x08\x03", 1, 4, f);
    put_be32(f, (uint32_t)n);
    put_be32(f, (uint32_t)rows);
    put_be32(f, (uint32_t)cols);
    fwrite("\0\0\x08\x01", 1, 4, g);
    put_be32(g, (uint32_t)n);
    for (int i = 0; i < n; i++) {
        for (int p = 0; p < rows * cols; p++) fputc((i * 37 + p) & 255, f);
        fputc(i % 3, g);
    }
    fclose(f);
    fclose(g);
    return 0;
}

/* n synthetic single-channel IDX images of rows x cols, loaded and their files removed (shared
 * with test_loader.c and test_cuda_transfer.c). */
cnn_dataset *data_test_synthetic(int n, int rows, int cols)
{
    char dir[32], img[128], lab[128];
    strcpy(dir, "/tmp/cnn_syn_XXXXXX");
    if (!mkdtemp(dir) || data_test_write_idx(dir, n, rows, cols, img, lab) != 0) return NULL;
    cnn_dataset *ds = NULL;
    if (cnn_idx_dataset_create(img, lab, 1, &ds) != CNN_OK) ds = NULL;
    unlink(img);
    unlink(lab);
    rmdir(dir);
    return ds;
}

static cnn_transform raw_transform(const cnn_dataset *ds, bool train, int size)
{
    cnn_transform t = cnn_transform_default(ds, train, size);
    for (int c = 0; c < 3; c++) {
        t.mean[c] = 0;
        t.std[c] = 1;
    }
    return t;
}

/* raw_transform taking its crop from the image as it is (no resize). */
static cnn_transform crop_transform(const cnn_dataset *ds, bool train, int size)
{
    cnn_transform t = raw_transform(ds, train, size);
    t.geometry = CNN_GEOM_CROP;
    return t;
}

TEST(augment_eval_centre_crop_known_pixels)
{
    /* 16 rows x 19 cols: the shorter side is already round(14 / 0.875) = 16, so no resize;
     * the crop starts at row round(1) = 1 and column round(2.5) = 2 (half to even, as
     * Python's round in torchvision's center_crop). */
    cnn_dataset *ds = data_test_synthetic(2, 16, 19);
    REQUIRE(ds);
    cnn_transform t = crop_transform(ds, false, 14);
    float out[14 * 14];
    CHECK_OK(cnn_dataset_get(ds, 0, &t, 1, 0, out, NULL));
    int bad = 0;
    for (int y = 0; y < 14; y++)
        for (int x = 0; x < 14; x++) {
            float want = (float)(((y + 1) * 19 + x + 2) & 255) / 255.0f;
            if (!(fabsf(out[y * 14 + x] - want) <= 1e-6f)) bad++; /* NaN counts */
        }
    CHECK(bad == 0);
    /* A crop ratio of 1 on a 16x19 image at size 16: columns round(1.5) = 2 onward. */
    t.img_size = 16;
    t.eval_crop_ratio = 1.0f;
    float out16[256];
    CHECK_OK(cnn_dataset_get(ds, 1, &t, 1, 0, out16, NULL));
    CHECK_NEAR(out16[0], ((37 + 2) & 255) / 255.0, 1e-6);
    CHECK_NEAR(out16[15 * 16 + 15], ((37 + 15 * 19 + 17) & 255) / 255.0, 1e-6);
    /* Eval output does not depend on the seed or the epoch. */
    float again[256];
    CHECK_OK(cnn_dataset_get(ds, 1, &t, 99, 5, again, NULL));
    CHECK(memcmp(out16, again, sizeof again) == 0);
    cnn_dataset_destroy(&ds);
}

/* A crop ratio so small that the resize before the crop would pass 65536 pixels is refused as an
 * argument (it overflowed int before, and came back as an internal error). */
TEST(augment_refuses_a_crop_ratio_that_resizes_past_65536)
{
    cnn_dataset *ds = data_test_synthetic(2, 16, 19);
    REQUIRE(ds);
    cnn_transform t = crop_transform(ds, false, 14);
    float out[14 * 14];
    t.eval_crop_ratio = 1e-30f;
    CHECK_ERR(cnn_dataset_get(ds, 0, &t, 1, 0, out, NULL), CNN_ERR_INVALID_ARG);
    CHECK(strstr(cnn_last_error(), "eval_crop_ratio"));
    t.eval_crop_ratio = 14.0f / 65536; /* exactly the limit */
    CHECK_OK(cnn_dataset_get(ds, 0, &t, 1, 0, out, NULL));
    cnn_dataset_destroy(&ds);
}

TEST(augment_pad_and_normalise)
{
    cnn_dataset *ds = data_test_synthetic(3, 28, 28);
    REQUIRE(ds);
    cnn_transform t = cnn_transform_default(ds, false, 32);
    CHECK(t.geometry == CNN_GEOM_PAD_OR_RESIZE && t.hflip_p == 0);
    t.mean[0] = 0.25f;
    t.std[0] = 0.5f;
    float out[32 * 32];
    int64_t y = -1;
    CHECK_OK(cnn_dataset_get(ds, 2, &t, 0, 0, out, &y));
    CHECK(y == 2);
    CHECK_NEAR(out[0], -0.5, 1e-6);              /* padding is 0 before normalising */
    CHECK_NEAR(out[31 * 32 + 31], -0.5, 1e-6);
    CHECK_NEAR(out[2 * 32 + 2], ((74 & 255) / 255.0 - 0.25) / 0.5, 1e-5);
    CHECK_NEAR(out[(2 + 5) * 32 + 2 + 9], (((74 + 5 * 28 + 9) & 255) / 255.0 - 0.25) / 0.5, 1e-5);
    /* A margin of 4 a side still pads (28 -> 36); a larger one resizes instead (28 -> 64: padded,
     * the image would fill a fifth of the input), corner pixel to corner pixel. */
    float big[64 * 64];
    t.mean[0] = 0.0f;
    t.std[0] = 1.0f;
    t.img_size = 36;
    CHECK_OK(cnn_dataset_get(ds, 2, &t, 0, 0, big, NULL));
    CHECK(big[0] == 0.0f && big[4 * 36 + 4] == (74 & 255) / 255.0f);
    t.img_size = 64;
    CHECK_OK(cnn_dataset_get(ds, 2, &t, 0, 0, big, NULL));
    CHECK_NEAR(big[0], 74 / 255.0, 1.5 / 255);
    CHECK_NEAR(big[64 * 64 - 1], ((74 + 27 * 28 + 27) & 255) / 255.0, 1.5 / 255);
    t.mean[0] = 0.25f;
    t.std[0] = 0.5f;
    /* img_size 0 keeps the native 28x28; a zero std is refused. */
    t.img_size = 0;
    CHECK(cnn_transform_output_size(ds, &t) == 28);
    t.std[0] = 0;
    CHECK_ERR(cnn_dataset_get(ds, 0, &t, 0, 0, out, NULL), CNN_ERR_INVALID_ARG);
    cnn_dataset_destroy(&ds);
}

/* Counts the pixels of out (n floats in [0, 1]) more than one level from want (bytes), and
 * those not equal to it, into *far and *off. */
static void count_levels_off(const float *out, const unsigned char *want, int n, int *far,
                             int *off)
{
    *far = *off = 0;
    for (int i = 0; i < n; i++) {
        float d = fabsf(out[i] * 255.0f - want[i]);
        *far += d > 1.001f;
        *off += d > 0.001f;
    }
}

/* A folder dataset ROOT/train/a/img.png holding one w x h RGB image; root (64 bytes) receives
 * the folder made from the mkdtemp template tmpl, for data_test_remove_tree. NULL, with nothing
 * left behind, on failure. */
static cnn_dataset *one_image_dataset(char *root, const char *tmpl, int w, int h,
                                      const unsigned char *rgb)
{
    char dir[128], path[192];
    snprintf(root, 64, "%s", tmpl);
    if (!mkdtemp(root)) return NULL;
    snprintf(dir, sizeof dir, "%s/train", root);
    bool ok = mkdir(dir, 0755) == 0;
    snprintf(dir, sizeof dir, "%s/train/a", root);
    ok = ok && mkdir(dir, 0755) == 0;
    snprintf(path, sizeof path, "%s/img.png", dir);
    ok = ok && stbi_write_png(path, w, h, 3, rgb, w * 3);
    cnn_dataset *ds = NULL;
    if (ok && cnn_imagefolder_create(root, "train", 3, &ds) != CNN_OK)
        cnn_test_fail(__FILE__, __LINE__, "imagefolder_create: %s", cnn_last_error());
    if (!ds) data_test_remove_tree(root);
    return ds;
}

/* Resizing is PIL's BILINEAR, as torchvision applies it to PIL images: a triangle filter whose
 * support widens with the reduction (antialiasing). The expected bytes are PIL 9.4's, from
 * Resize(round(S / 0.875)) + CenterCrop(S) (and Resize((8, 8)) for the IDX resize branch) on
 * the same pixels. PIL rounds to bytes after each axis, the library only at the end: they may
 * differ by one level (measured over 400 random images, sizes and boxes: 84% of the bytes
 * equal, none more than one level apart; the stb_image_resize used before was up to 43 off). */
TEST(augment_resize_matches_pil_bilinear)
{
    unsigned char rgb[5 * 8 * 3];
    for (int y = 0; y < 5; y++)
        for (int x = 0; x < 8; x++)
            for (int c = 0; c < 3; c++)
                rgb[(y * 8 + x) * 3 + c] =
                    (unsigned char)(y * 53 + x * 29 + c * 71 + (x * y) % 5 * 17);
    char root[64];
    cnn_dataset *ds = one_image_dataset(root, "/tmp/cnn_resize_XXXXXX", 8, 5, rgb);
    REQUIRE(ds);
    /* S = 3 shrinks 5x8 by 5/3 and 2 (Resize(3) gives 3x4); S = 6 enlarges (Resize(7): 7x11,
     * crop from column 2). Channel-major, as the dataset delivers. */
    static const unsigned char want3[27] = {49,  114, 168, 148, 175, 136, 158, 103, 87,
                                            120, 130, 130, 166, 82,  79,  103, 119, 139,
                                            175, 141, 73,  144, 114, 143, 127, 190, 197};
    static const unsigned char want6[108] = {
        38,  59,  80,  102, 123, 144, 81,  109, 138, 166, 183, 176, 135, 171, 191, 185, 183, 211,
        189, 231, 215, 114, 70,  240, 223, 227, 131, 73,  57,  103, 160, 157, 88,  68,  69,  70,
        109, 130, 151, 173, 194, 215, 152, 173, 96,  91,  108, 101, 183, 160, 47,  37,  54,  30,
        179, 46,  30,  57,  83,  67,  88,  51,  88,  107, 112, 104, 85,  89,  126, 139, 140, 141,
        180, 201, 222, 116, 9,   30,  177, 105, 133, 107, 69,  62,  146, 57,  77,  108, 125, 101,
        75,  117, 101, 128, 154, 138, 109, 122, 159, 178, 183, 175, 156, 160, 197, 210, 211, 212};
    float out[108];
    int far, off;
    cnn_transform t = raw_transform(ds, false, 3);
    CHECK_OK(cnn_dataset_get(ds, 0, &t, 0, 0, out, NULL));
    count_levels_off(out, want3, 27, &far, &off);
    CHECK(far == 0 && off <= 27 / 4);
    t.img_size = 6;
    CHECK_OK(cnn_dataset_get(ds, 0, &t, 0, 0, out, NULL));
    count_levels_off(out, want6, 108, &far, &off);
    CHECK(far == 0 && off <= 108 / 4);
    cnn_dataset_destroy(&ds);
    data_test_remove_tree(root);

    /* A 30x40 gray sawtooth (IDX image 1: (37 + 40 y + x) mod 256) shrunk six-fold averages
     * the teeth: Resize(5) + CenterCrop(4), then the IDX branch's Resize((8, 8)). */
    static const unsigned char crop4[16] = {134, 134, 120, 125, 131, 133, 127, 132,
                                            126, 121, 128, 134, 133, 123, 128, 122};
    static const unsigned char whole8[64] = {
        108, 113, 118, 122, 125, 130, 135, 140, 141, 146, 151, 141, 98,  101, 106, 111,
        127, 132, 137, 142, 147, 152, 154, 137, 94,  99,  104, 109, 114, 119, 120, 96,
        158, 162, 139, 135, 140, 145, 150, 155, 116, 120, 104, 102, 107, 112, 117, 122,
        138, 143, 148, 153, 158, 124, 103, 108, 109, 114, 119, 124, 129, 132, 136, 141};
    ds = data_test_synthetic(2, 30, 40);
    REQUIRE(ds);
    t = crop_transform(ds, false, 4);
    CHECK_OK(cnn_dataset_get(ds, 1, &t, 0, 0, out, NULL));
    count_levels_off(out, crop4, 16, &far, &off);
    CHECK(far == 0 && off <= 16 / 4);
    t = raw_transform(ds, false, 8);
    CHECK(t.geometry == CNN_GEOM_PAD_OR_RESIZE);
    CHECK_OK(cnn_dataset_get(ds, 1, &t, 0, 0, out, NULL));
    count_levels_off(out, whole8, 64, &far, &off);
    CHECK(far == 0 && off <= 64 / 4);
    cnn_dataset_destroy(&ds);
}

TEST(augment_random_crop_is_deterministic_per_seed_epoch_index)
{
    cnn_dataset *ds = data_test_synthetic(4, 16, 16);
    REQUIRE(ds);
    cnn_transform t = crop_transform(ds, true, 8);
    t.hflip_p = 0.5f;
    t.brightness = t.contrast = 0.4f;
    float a[64], b[64];
    CHECK_OK(cnn_dataset_get(ds, 3, &t, 42, 1, a, NULL));
    CHECK_OK(cnn_dataset_get(ds, 3, &t, 42, 1, b, NULL));
    CHECK(memcmp(a, b, sizeof a) == 0);
    int differ_epoch = 0, differ_seed = 0;
    for (int e = 2; e < 6; e++) {
        CHECK_OK(cnn_dataset_get(ds, 3, &t, 42, e, b, NULL));
        differ_epoch += memcmp(a, b, sizeof a) != 0;
        CHECK_OK(cnn_dataset_get(ds, 3, &t, 43 + e, 1, b, NULL));
        differ_seed += memcmp(a, b, sizeof a) != 0;
    }
    CHECK(differ_epoch == 4 && differ_seed == 4);
    cnn_dataset_destroy(&ds);
}

cnn_transform data_test_identity_transform(const cnn_dataset *ds, int S)
{
    cnn_transform t = crop_transform(ds, true, S);
    t.scale[0] = t.scale[1] = 1;
    t.ratio[0] = t.ratio[1] = 1;
    t.hflip_p = 0;
    return t;
}

TEST(augment_flip_affine_zoom_and_jitter)
{
    cnn_dataset *ds = data_test_synthetic(1, 16, 16);
    REQUIRE(ds);
    /* p = 1 flips. */
    cnn_transform t = data_test_identity_transform(ds, 16);
    t.hflip_p = 1;
    float out[256];
    CHECK_OK(cnn_dataset_get(ds, 0, &t, 5, 0, out, NULL));
    int bad = 0;
    for (int y = 0; y < 16; y++)
        for (int x = 0; x < 16; x++)
            if (!(fabsf(out[y * 16 + x] - (float)(y * 16 + 15 - x) / 255.0f) <= 1e-6f)) bad++;
    CHECK(bad == 0);
    /* Affine zoom x2 about the centre (7.5, 7.5), nearest neighbour as torchvision's default
     * on PIL images: output x reads source x / 2 + 3.75, rounded half up, on the ramp
     * v = 16y + x (torchvision 0.14 + PIL 9.4 give these very pixels). */
    t.hflip_p = 0;
    t.affine_scale[0] = t.affine_scale[1] = 2;
    CHECK_OK(cnn_dataset_get(ds, 0, &t, 5, 0, out, NULL));
    bad = 0;
    for (int y = 0; y < 16; y++)
        for (int x = 0; x < 16; x++) {
            float want = (16 * floorf(y / 2.0f + 4.25f) + floorf(x / 2.0f + 4.25f)) / 255.0f;
            if (out[y * 16 + x] != want) bad++;
        }
    CHECK(bad == 0);
    /* A rotation moves pixels without blending them (every output is a source value or the
     * zero fill) and zero-fills some corner. */
    t.affine_scale[0] = t.affine_scale[1] = 0;
    t.affine_degrees = 45;
    int zero_corners = 0, blended = 0;
    for (int e = 0; e < 8; e++) {
        CHECK_OK(cnn_dataset_get(ds, 0, &t, 5, e, out, NULL));
        zero_corners += out[15] == 0.0f; /* its source value is 15/255 */
        for (int p = 0; p < 256; p++) {
            float v = out[p] * 255.0f;
            blended += fabsf(v - rintf(v)) > 1e-3f;
        }
    }
    CHECK(zero_corners >= 1 && blended == 0);
    /* Brightness only: every unclamped pixel is scaled by one factor in [0.5, 1.5]. */
    t.affine_degrees = 0;
    t.brightness = 0.5f;
    CHECK_OK(cnn_dataset_get(ds, 0, &t, 5, 3, out, NULL));
    float f = out[1] / (1 / 255.0f);
    CHECK(f >= 0.5f && f <= 1.5f);
    bad = 0;
    for (int p = 1; p < 256; p++) {
        float want = fminf(1.0f, f * p / 255.0f);
        if (fabsf(out[p] - want) > 1e-4f) bad++;
    }
    CHECK(bad == 0);
    t.brightness = -1;
    CHECK_ERR(cnn_dataset_get(ds, 0, &t, 5, 3, out, NULL), CNN_ERR_INVALID_ARG);
    /* Infinite parameters are refused by name (they gave a blank or constant image). */
    t.brightness = 0;
    t.affine_degrees = INFINITY;
    CHECK_ERR(cnn_dataset_get(ds, 0, &t, 5, 3, out, NULL), CNN_ERR_INVALID_ARG);
    CHECK(strstr(cnn_last_error(), "affine_degrees"));
    t.affine_degrees = 0;
    t.affine_scale[0] = 1, t.affine_scale[1] = INFINITY;
    CHECK_ERR(cnn_dataset_get(ds, 0, &t, 5, 3, out, NULL), CNN_ERR_INVALID_ARG);
    CHECK(strstr(cnn_last_error(), "affine_scale[1]"));
    t.affine_scale[1] = 1;
    t.mean[0] = NAN;
    CHECK_ERR(cnn_dataset_get(ds, 0, &t, 5, 3, out, NULL), CNN_ERR_INVALID_ARG);
    CHECK(strstr(cnn_last_error(), "mean[0]"));
    cnn_dataset_destroy(&ds);
}

/* Normalize is (x - mean) / std, as torchvision's: with a tiny (subnormal) std a pixel equal to
 * the mean gives 0 (a reciprocal 1 / std was inf, and 0 * inf NaN), the others overflow to inf. */
TEST(augment_normalize_divides_by_std)
{
    cnn_dataset *ds = data_test_synthetic(1, 16, 16);
    REQUIRE(ds);
    cnn_transform t = data_test_identity_transform(ds, 16);
    t.mean[0] = 0; /* pixel 0 is 0 */
    t.std[0] = 1e-39f;
    float out[256];
    CHECK_OK(cnn_dataset_get(ds, 0, &t, 5, 0, out, NULL));
    CHECK(out[0] == 0.0f && isinf(out[255]) && out[255] > 0);
    cnn_dataset_destroy(&ds);
}

/* The defaults are torchvision's RandomResizedCrop (scale (0.08, 1), ratio (3/4, 4/3)), eval
 * Resize(S / 0.875) + CenterCrop(S), and RandomHorizontalFlip(0.5) for photos only: none in
 * evaluation, none for IDX digits and clothes (whose geometry pads or resizes). */
TEST(augment_defaults_are_torchvisions)
{
    cnn_transform t = cnn_transform_default(NULL, true, 224);
    CHECK(t.geometry == CNN_GEOM_CROP && t.train && t.img_size == 224);
    CHECK(t.scale[0] == 0.08f && t.scale[1] == 1.0f);
    CHECK(t.ratio[0] == 3.0f / 4.0f && t.ratio[1] == 4.0f / 3.0f);
    CHECK(t.eval_crop_ratio == 0.875f && t.hflip_p == 0.5f);
    CHECK(t.erase_p == 0 && t.affine_degrees == 0 && t.brightness == 0);
    t = cnn_transform_default(NULL, false, 224);
    CHECK(t.geometry == CNN_GEOM_CROP && !t.train && t.hflip_p == 0);
    cnn_dataset *ds = data_test_synthetic(1, 8, 8);
    REQUIRE(ds);
    t = cnn_transform_default(ds, true, 0);
    CHECK(t.geometry == CNN_GEOM_PAD_OR_RESIZE && t.hflip_p == 0);
    cnn_dataset_destroy(&ds);
}

/* (top, left) of the crop that gave out (S x S, raw): a crop of S x S is copied as it is, so
 * its first pixel (16 top + left for image 0 of a 16-column synthetic set) tells where. */
static int crop_origin(const float *out, int cols, int *top, int *left)
{
    int v = (int)lrintf(out[0] * 255.0f);
    *top = v / cols;
    *left = v % cols;
    return v;
}

/* RandomResizedCrop boxes as torchvision's get_params: w * h = scale * area and w / h = ratio
 * (up to rounding), placed anywhere, the last row and column included; a box as wide as the
 * image is accepted; after ten misses, the central crop of the ratio nearest the image's. */
TEST(augment_random_crop_boxes_as_torchvision)
{
    /* 16x16 (v = 16 y + x), scale 1/4, ratio 1: 8x8 boxes at every top and left in [0, 8]. */
    cnn_dataset *ds = data_test_synthetic(1, 16, 16);
    REQUIRE(ds);
    cnn_transform t = crop_transform(ds, true, 8);
    t.hflip_p = 0;
    t.scale[0] = t.scale[1] = 0.25f;
    t.ratio[0] = t.ratio[1] = 1;
    float out[64];
    int tops[9] = {0}, lefts[9] = {0}, bad = 0;
    for (int e = 0; e < 200; e++) {
        CHECK_OK(cnn_dataset_get(ds, 0, &t, 7, e, out, NULL));
        int top, left;
        crop_origin(out, 16, &top, &left);
        if (top > 8 || left > 8) {
            bad++;
            continue;
        }
        tops[top]++;
        lefts[left]++;
        for (int p = 0; p < 64; p++)
            bad += fabsf(out[p] * 255.0f - (float)(16 * (top + p / 8) + left + p % 8)) > 1e-3f;
    }
    CHECK(bad == 0);
    for (int k = 0; k <= 8; k++) CHECK(tops[k] > 0 && lefts[k] > 0);
    /* w / h = 2 (wide): an 8-row, 16-column box shrunk to 8x8 keeps the row step of the ramp
     * (16) and doubles its column step (2), inside the image's edges. */
    t.scale[0] = t.scale[1] = 0.5f;
    t.ratio[0] = t.ratio[1] = 2;
    CHECK_OK(cnn_dataset_get(ds, 0, &t, 7, 0, out, NULL));
    CHECK_NEAR((out[4 * 8 + 3] - out[3 * 8 + 3]) * 255.0, 16.0, 1e-3);
    CHECK_NEAR((out[3 * 8 + 4] - out[3 * 8 + 3]) * 255.0, 2.0, 1e-3);
    cnn_dataset_destroy(&ds);

    /* 16 rows x 8 columns (v = 8 y + x), scale 1/2, ratio 1: the 8x8 box is the image's full
     * width, taken at every top in [0, 8] (not the central fallback's row 4 only). */
    ds = data_test_synthetic(1, 16, 8);
    REQUIRE(ds);
    t = crop_transform(ds, true, 8);
    t.hflip_p = 0;
    t.scale[0] = t.scale[1] = 0.5f;
    t.ratio[0] = t.ratio[1] = 1;
    int tops2[9] = {0};
    bad = 0;
    for (int e = 0; e < 200; e++) {
        CHECK_OK(cnn_dataset_get(ds, 0, &t, 7, e, out, NULL));
        int top, left;
        crop_origin(out, 8, &top, &left);
        if (top > 8 || left != 0) bad++;
        else tops2[top]++;
    }
    CHECK(bad == 0);
    for (int k = 0; k <= 8; k++) CHECK(tops2[k] > 0);
    /* Ratio 2 never fits a 16x8 image: the fallback is the central 4x8 box (rows 6 to 9, as
     * torchvision's h = round(8 / 2), top = (16 - 4) // 2), here shrunk to 4x4: PIL 9.4's
     * crop((0, 6, 8, 10)).resize((4, 4), BILINEAR) has 51 at (0, 1) and 77 at (3, 2). */
    t = crop_transform(ds, true, 4);
    t.hflip_p = 0;
    t.scale[0] = t.scale[1] = 1;
    t.ratio[0] = t.ratio[1] = 2;
    CHECK_OK(cnn_dataset_get(ds, 0, &t, 7, 3, out, NULL));
    CHECK_NEAR(out[0 * 4 + 1] * 255.0, 51, 1e-3);
    CHECK_NEAR(out[3 * 4 + 2] * 255.0, 77, 1e-3);
    cnn_dataset_destroy(&ds);
}

/* Normalisation uses each channel's own mean and std, in RGB order: a gray IDX image read as
 * 3 channels has the same pixels in each, so the channels differ only by them. */
TEST(augment_normalises_each_channel_with_its_own_mean_and_std)
{
    char dir[32], img[128], lab[128];
    strcpy(dir, "/tmp/cnn_norm_XXXXXX");
    REQUIRE(mkdtemp(dir));
    REQUIRE(data_test_write_idx(dir, 1, 4, 4, img, lab) == 0);
    cnn_dataset *ds = NULL;
    CHECK_OK(cnn_idx_dataset_create(img, lab, 3, &ds));
    unlink(img);
    unlink(lab);
    rmdir(dir);
    REQUIRE(ds);
    cnn_transform t = cnn_transform_default(ds, false, 4);
    const float mean[3] = {0.1f, 0.2f, 0.3f}, std[3] = {0.5f, 0.25f, 0.125f};
    memcpy(t.mean, mean, sizeof mean);
    memcpy(t.std, std, sizeof std);
    float out[3 * 16];
    CHECK_OK(cnn_dataset_get(ds, 0, &t, 0, 0, out, NULL));
    int bad = 0;
    for (int c = 0; c < 3; c++)
        for (int p = 0; p < 16; p++)
            bad += !(fabsf(out[c * 16 + p] - ((float)p / 255.0f - mean[c]) / std[c]) <= 1e-5f);
    CHECK(bad == 0);
    cnn_dataset_destroy(&ds);
}

/* Contrast as torchvision's: a blend of each pixel with the mean gray level of the image, gray
 * being 0.299 R + 0.587 G + 0.114 B. With contrast only, out = f v + (1 - f) m: two pixels give
 * the factor f, and then the mean m, which must be the luma mean, not some other channel's. */
TEST(augment_contrast_blends_with_the_mean_luma)
{
    unsigned char rgb[16 * 3];
    double luma = 0;
    for (int p = 0; p < 16; p++) {
        rgb[3 * p] = (unsigned char)(60 + 3 * p);
        rgb[3 * p + 1] = (unsigned char)(190 - 2 * p);
        rgb[3 * p + 2] = (unsigned char)(100 + 5 * (p % 7));
        luma += (0.299 * rgb[3 * p] + 0.587 * rgb[3 * p + 1] + 0.114 * rgb[3 * p + 2]) / 255 / 16;
    }
    char root[64];
    cnn_dataset *ds = one_image_dataset(root, "/tmp/cnn_contrast_XXXXXX", 4, 4, rgb);
    REQUIRE(ds);
    cnn_transform t = data_test_identity_transform(ds, 4);
    t.contrast = 0.3f;
    float out[48];
    int used = 0;
    for (int e = 0; e < 20 && used < 3; e++) {
        CHECK_OK(cnn_dataset_get(ds, 0, &t, 3, e, out, NULL));
        const double va = rgb[0] / 255.0, vb = rgb[3 * 15] / 255.0;
        const double f = (out[0] - out[15]) / (va - vb);
        if (fabs(f - 1) < 0.1) continue; /* too weak a blend to tell m well */
        used++;
        CHECK(f >= 0.7 - 1e-4 && f <= 1.3 + 1e-4);
        CHECK_NEAR((out[0] - f * va) / (1 - f), luma, 2e-3);
    }
    CHECK(used == 3);
    cnn_dataset_destroy(&ds);
    data_test_remove_tree(root);
}
