/* test_augment_draws.c — where the augmentation's random draws may land, against torchvision's
 * ranges and senses: RandomErasing's boxes (inside the image, within the scale and ratio ranges,
 * reaching the last row and column, off in evaluation, bad ranges refused), RandomResizedCrop
 * draws top before left, makes ten tries and falls back for a tall and a wide image, RandomAffine
 * turns clockwise and shifts right and down, ColorJitter's brightness factor is clipped at 0, its
 * steps come in a uniformly random order and saturation blends with the luma. Most fail on a bug
 * that leaves every value plausible and every other test passing. */
#include "test.h"

#include <math.h>
#include <stdint.h>

#include "../data/dataset.h"
#include "data_fixtures.h"
#include "philox.h"

/* torchvision: top = randint(0, H - h + 1), so a box may touch the last row and column. 5x5
 * boxes on 16x16, 400 epochs: the last row and column are each covered with probability
 * 5/12 per epoch. Pixels are >= 1 after the mean of -1; erased ones are 0. */
TEST(augment_random_erasing_reaches_the_last_row_and_column)
{
    cnn_dataset *ds = data_test_synthetic(1, 16, 16);
    REQUIRE(ds);
    cnn_transform t = data_test_identity_transform(ds, 16);
    t.mean[0] = -1;
    t.erase_p = 1;
    t.erase_scale[0] = t.erase_scale[1] = 0.1f;
    t.erase_ratio[0] = t.erase_ratio[1] = 1;
    float out[256];
    int last_row = 0, last_col = 0;
    for (int e = 0; e < 400; e++) {
        CHECK_OK(cnn_dataset_get(ds, 0, &t, 3, e, out, NULL));
        for (int i = 0; i < 16; i++) {
            last_row += out[15 * 16 + i] == 0.0f;
            last_col += out[i * 16 + 15] == 0.0f;
        }
    }
    CHECK(last_row > 0 && last_col > 0);
    cnn_dataset_destroy(&ds);
}

/* When no try fits, torchvision's get_params crops the centre at the nearest ratio in range, at
 * scale (1, 1) and ratio (3/4, 4/3) here. A tall 16x8 image (v = 8 y + x): h = round(8 / (3/4))
 * = 11 (top 2), and PIL's crop((0, 2, 8, 13)).resize((8, 8), BILINEAR) has rows 19..26 first
 * and 93..100 last. A wide 8x16 image (v = 16 y + x; no try fits, a crop of area 128 having
 * sides of at least 9.8): w = round(8 * 4/3) = 11 (left 2), and PIL's crop((2, 0, 13, 8))
 * gives the first and last rows below. */
TEST(augment_random_resized_crop_fallback_of_tall_and_wide_images)
{
    static const struct {
        int rows, cols, first[8], last[8];
    } cases[2] = {{16, 8, {19, 20, 21, 22, 23, 24, 25, 26}, {93, 94, 95, 96, 97, 98, 99, 100}},
                  {8, 16, {2, 4, 5, 6, 8, 9, 10, 12}, {114, 116, 117, 118, 120, 121, 122, 124}}};
    for (int k = 0; k < 2; k++) {
        cnn_dataset *ds = data_test_synthetic(1, cases[k].rows, cases[k].cols);
        REQUIRE(ds);
        cnn_transform t = data_test_identity_transform(ds, 8);
        t.ratio[0] = 3.0f / 4.0f;
        t.ratio[1] = 4.0f / 3.0f;
        float out[64];
        CHECK_OK(cnn_dataset_get(ds, 0, &t, 7, 0, out, NULL));
        for (int x = 0; x < 8; x++) {
            CHECK_NEAR(out[x] * 255.0, cases[k].first[x], 1e-3);
            CHECK_NEAR(out[56 + x] * 255.0, cases[k].last[x], 1e-3);
        }
        cnn_dataset_destroy(&ds);
    }
}

/* ColorJitter(brightness=3) draws its factor in [max(0, 1 - 3), 4] (torchvision: [0, 4]): from
 * [-2, 4] a third of the images would clamp to black. Pixel 1 is 1/255, far below the clamp at
 * 1, so out[1] * 255 is the factor. */
TEST(augment_brightness_factor_is_clipped_at_zero)
{
    cnn_dataset *ds = data_test_synthetic(1, 16, 16);
    REQUIRE(ds);
    cnn_transform t = data_test_identity_transform(ds, 16);
    t.brightness = 3;
    float out[256];
    int outside = 0;
    for (int e = 0; e < 60; e++) {
        CHECK_OK(cnn_dataset_get(ds, 0, &t, 5, e, out, NULL));
        const float f = out[1] * 255.0f;
        outside += !(f > 0.0f && f <= 4.0f);
    }
    CHECK(outside == 0);
    cnn_dataset_destroy(&ds);
}

/* The k-th draw of sample 0's stream at `epoch` (data/augment.c's), in [lo, hi). */
static float sample_draw(uint64_t seed, int64_t epoch, uint64_t k, float lo, float hi)
{
    const float u = cnn_philox_uniform(seed ^ CNN_AUGMENT_TAG, cnn_augment_counter(epoch, 0), k);
    return cnn_uniform_below(lo + (hi - lo) * u, lo, hi);
}

/* ColorJitter applies its steps in a uniformly random order (torchvision: randperm): a
 * Fisher-Yates shuffle of (brightness, contrast, saturation) from the sample's stream. The
 * reference replays that stream: 4 draws for the crop (one try that fits: area, aspect, top,
 * left), 2 for the shuffle, then the two factors, and applies the steps in that order with
 * their clamps. Clamping makes brightness and contrast not commute, so a shuffle that can
 * produce only some orders (Sattolo's cycles never put brightness first) shows. */
TEST(augment_color_jitter_order_is_a_uniform_shuffle)
{
    cnn_dataset *ds = data_test_synthetic(1, 16, 16);
    REQUIRE(ds);
    cnn_transform t = data_test_identity_transform(ds, 16);
    t.brightness = 0.9f;
    t.contrast = 0.9f;
    const uint64_t seed = 11;
    int bad = 0;
    for (int e = 0; e < 40; e++) {
        float out[256], ref[256];
        CHECK_OK(cnn_dataset_get(ds, 0, &t, seed, e, out, NULL));
        uint64_t k = 4;
        int order[3] = {0, 1, 2};
        for (int i = 2; i > 0; i--) {
            int j = (int)(sample_draw(seed, e, k++, 0, 1) * (i + 1));
            if (j > i) j = i;
            int tmp = order[i];
            order[i] = order[j];
            order[j] = tmp;
        }
        const float fb = sample_draw(seed, e, k++, 0.1f, 1.9f);
        const float fc = sample_draw(seed, e, k++, 0.1f, 1.9f);
        for (int p = 0; p < 256; p++) ref[p] = p / 255.0f; /* the synthetic image 0 */
        for (int s = 0; s < 3; s++) {
            if (order[s] == 0) {
                for (int p = 0; p < 256; p++) ref[p] = fminf(1, fmaxf(0, ref[p] * fb));
            } else if (order[s] == 1) {
                double sum = 0;
                for (int p = 0; p < 256; p++) sum += ref[p];
                const float m = (float)(sum / 256);
                for (int p = 0; p < 256; p++)
                    ref[p] = fminf(1, fmaxf(0, fc * ref[p] + (1 - fc) * m));
            }
        }
        for (int p = 0; p < 256; p++) bad += !(fabsf(out[p] - ref[p]) <= 1e-5f);
    }
    CHECK(bad == 0);
    cnn_dataset_destroy(&ds);
}

/* torchvision's get_params draws the crop's top (a randint over the rows) before its left: 8x8
 * boxes of the 16x16 ramp v = 16 y + x (scale 1/4, ratio 1) are copied as they are, from the
 * row and column of draws 2 and 3 (draws 0 and 1 size the box). Swapped, each crop would still
 * be a plausible 8x8 window. */
TEST(augment_random_crop_draws_top_before_left)
{
    cnn_dataset *ds = data_test_synthetic(1, 16, 16);
    REQUIRE(ds);
    cnn_transform t = data_test_identity_transform(ds, 8);
    t.scale[0] = t.scale[1] = 0.25f;
    int bad = 0, differ = 0;
    for (int e = 0; e < 20; e++) {
        float out[64];
        CHECK_OK(cnn_dataset_get(ds, 0, &t, 9, e, out, NULL));
        int top = (int)(sample_draw(9, e, 2, 0, 1) * 9);
        int left = (int)(sample_draw(9, e, 3, 0, 1) * 9);
        top = top < 8 ? top : 8;
        left = left < 8 ? left : 8;
        differ += top != left;
        for (int y = 0; y < 8; y++)
            for (int x = 0; x < 8; x++)
                bad += out[y * 8 + x] != (float)(16 * (top + y) + left + x) / 255.0f;
    }
    CHECK(bad == 0 && differ > 0);
    cnn_dataset_destroy(&ds);
}

/* get_params makes 10 tries before its fallback (here the whole image, as the image's ratio 1
 * is in range). At scale 1/4 and ratio (1/64, 64) a try fits when its aspect is within
 * (1/4, 4), a third of the log range, so all 10 tries fail in 1.7% of epochs (about 3 of the
 * 200 here; after 3 tries, 30%: about 60). A fitted crop holds a quarter of the image, so only
 * the fallback gives the image itself. */
TEST(augment_random_crop_makes_ten_tries)
{
    cnn_dataset *ds = data_test_synthetic(1, 16, 16);
    REQUIRE(ds);
    cnn_transform t = data_test_identity_transform(ds, 16);
    t.scale[0] = t.scale[1] = 0.25f;
    t.ratio[0] = 1.0f / 64;
    t.ratio[1] = 64;
    int whole = 0;
    for (int e = 0; e < 200; e++) {
        float out[256];
        CHECK_OK(cnn_dataset_get(ds, 0, &t, 13, e, out, NULL));
        int same = 0;
        for (int p = 0; p < 256; p++) same += out[p] == (float)p / 255.0f;
        whole += same == 256;
    }
    CHECK(whole <= 12);
    cnn_dataset_destroy(&ds);
}

/* RandomAffine as F.affine applies it: a positive angle turns the picture clockwise (y down), a
 * positive shift moves it right and down, and get_params draws the angle, then tx, then ty
 * (draws 4, 5, 6 after the crop's four), the shifts rounded and at most translate * size. Every
 * output pixel of the ramp is checked against that mapping (nearest source pixel, zero outside)
 * except where the source point is within 0.01 of a tie between two pixels. */
TEST(augment_affine_turns_clockwise_and_shifts_right_and_down)
{
    cnn_dataset *ds = data_test_synthetic(1, 16, 16);
    REQUIRE(ds);
    cnn_transform t = data_test_identity_transform(ds, 16);
    t.affine_degrees = 30;
    t.affine_translate = 0.25f;
    const uint64_t seed = 17;
    int bad = 0, checked = 0;
    for (int e = 0; e < 12; e++) {
        float out[256];
        CHECK_OK(cnn_dataset_get(ds, 0, &t, seed, e, out, NULL));
        const double a = sample_draw(seed, e, 4, -30, 30) * M_PI / 180;
        const double tx = rintf(sample_draw(seed, e, 5, -4, 4));
        const double ty = rintf(sample_draw(seed, e, 6, -4, 4));
        for (int y = 0; y < 16; y++)
            for (int x = 0; x < 16; x++) {
                /* Undo the shift, then turn back anticlockwise about the centre (7.5, 7.5);
                 * (sx, sy) is the source point plus 0.5, so its floor is the nearest pixel. */
                const double ex = x - 7.5 - tx, ey = y - 7.5 - ty;
                const double sx = cos(a) * ex + sin(a) * ey + 8;
                const double sy = -sin(a) * ex + cos(a) * ey + 8;
                if (fabs(sx - rint(sx)) < 0.01 || fabs(sy - rint(sy)) < 0.01) continue;
                const double fx = floor(sx), fy = floor(sy);
                const bool in = fx >= 0 && fy >= 0 && fx < 16 && fy < 16;
                checked++;
                bad += out[y * 16 + x] != (in ? (float)(16 * fy + fx) / 255.0f : 0.0f);
            }
    }
    CHECK(bad == 0 && checked > 2000);
    cnn_dataset_destroy(&ds);
}

/* RandomErasing as torchvision's (value 0, after normalising): with p = 1 each draw zeroes one
 * box, wholly inside the image, whose h * w and h / w come from the scale and ratio ranges up to
 * the rounding of h and w; the rest is untouched. Deterministic per (seed, epoch, index), off in
 * evaluation, and p = 0.5 erases about half the time. */
TEST(augment_random_erasing_boxes)
{
    cnn_dataset *ds = data_test_synthetic(1, 16, 16);
    REQUIRE(ds);
    cnn_transform t = data_test_identity_transform(ds, 16);
    t.mean[0] = -1; /* every pixel becomes v + 1 >= 1, so an erased one stands out as 0 */
    t.erase_p = 1;
    float out[256], again[256];
    int erased = 0, bad = 0, tops[16] = {0};
    for (int e = 0; e < 60; e++) {
        CHECK_OK(cnn_dataset_get(ds, 0, &t, 9, e, out, NULL));
        int y0 = 16, y1 = -1, x0 = 16, x1 = -1, zeros = 0;
        for (int p = 0; p < 256; p++) {
            const int y = p / 16, x = p % 16;
            if (out[p] == 0.0f) {
                zeros++;
                y0 = y < y0 ? y : y0, y1 = y > y1 ? y : y1;
                x0 = x < x0 ? x : x0, x1 = x > x1 ? x : x1;
            } else if (fabsf(out[p] - (1 + (float)p / 255.0f)) > 1e-6f) {
                bad++;
            }
        }
        if (!zeros) continue; /* ten tries without a fitting box: allowed, and rare */
        erased++;
        tops[y0]++;
        const float h = (float)(y1 - y0 + 1), w = (float)(x1 - x0 + 1);
        if (zeros != (int)(h * w) || h >= 16 || w >= 16) bad++;
        if ((h - 0.5f) * (w - 0.5f) > 0.33f * 256 || (h + 0.5f) * (w + 0.5f) < 0.02f * 256) bad++;
        if ((h - 0.5f) / (w + 0.5f) > 3.3f || (h + 0.5f) / (w - 0.5f) < 0.3f) bad++;
    }
    CHECK(bad == 0);
    CHECK(erased >= 55);
    int rows_used = 0;
    for (int y = 0; y < 16; y++) rows_used += tops[y] > 0;
    CHECK(rows_used >= 4);
    CHECK_OK(cnn_dataset_get(ds, 0, &t, 9, 7, out, NULL));
    CHECK_OK(cnn_dataset_get(ds, 0, &t, 9, 7, again, NULL));
    CHECK(memcmp(out, again, sizeof out) == 0);
    /* p = 0.5: about half of 200 draws. */
    t.erase_p = 0.5f;
    int some = 0;
    for (int e = 0; e < 200; e++) {
        CHECK_OK(cnn_dataset_get(ds, 0, &t, 9, e, out, NULL));
        int zeros = 0;
        for (int p = 0; p < 256; p++) zeros += out[p] == 0.0f;
        some += zeros > 0;
    }
    CHECK(some >= 70 && some <= 130);
    /* Evaluation never erases. */
    t.train = false;
    t.erase_p = 1;
    CHECK_OK(cnn_dataset_get(ds, 0, &t, 9, 3, out, NULL));
    for (int p = 0; p < 256; p++) bad += out[p] == 0.0f;
    CHECK(bad == 0);
    /* Bad parameters are refused. */
    t.train = true;
    t.erase_p = 1.5f;
    CHECK_ERR(cnn_dataset_get(ds, 0, &t, 9, 3, out, NULL), CNN_ERR_INVALID_ARG);
    t.erase_p = 0.5f;
    t.erase_scale[0] = 0.5f;
    t.erase_scale[1] = 0.2f;
    CHECK_ERR(cnn_dataset_get(ds, 0, &t, 9, 3, out, NULL), CNN_ERR_INVALID_ARG);
    t.erase_scale[0] = t.erase_scale[1] = 0;
    t.erase_ratio[0] = -1;
    t.erase_ratio[1] = 2;
    CHECK_ERR(cnn_dataset_get(ds, 0, &t, 9, 3, out, NULL), CNN_ERR_INVALID_ARG);
    /* Extreme ratios are legal: every box is then far taller or wider than the image (one side
     * past 2^31, or infinite), so, as in torchvision, nothing is erased. */
    const float extreme[] = {1e30f, 3e38f, 1e-30f};
    for (int i = 0; i < 3; i++) {
        t.erase_p = 1;
        t.erase_ratio[0] = t.erase_ratio[1] = extreme[i];
        CHECK_OK(cnn_dataset_get(ds, 0, &t, 9, 3, out, NULL));
        for (int p = 0; p < 256; p++) bad += out[p] == 0.0f;
        CHECK(bad == 0);
    }
    cnn_dataset_destroy(&ds);
}

/* RandomErasing's default ranges, scale (0.02, 0.33) and log-uniform ratio (0.3, 3.3): the box
 * erased is the one the sample's stream gives under them. Draws 0..3 are the crop's, 4 decides
 * p = 1, then (area, log aspect) per try and (top, left) for the first try that fits. Pixels are
 * >= 1 after the mean of -1, so exactly the erased ones are 0. */
TEST(augment_random_erasing_default_ranges)
{
    cnn_dataset *ds = data_test_synthetic(1, 16, 16);
    REQUIRE(ds);
    cnn_transform t = data_test_identity_transform(ds, 16);
    t.mean[0] = -1;
    t.erase_p = 1;
    const uint64_t seed = 21;
    int bad = 0, erased = 0;
    for (int e = 0; e < 40; e++) {
        float out[256];
        CHECK_OK(cnn_dataset_get(ds, 0, &t, seed, e, out, NULL));
        int box[4] = {0, 0, 0, 0}; /* top, left, h, w: none found, nothing erased */
        uint64_t k = 5;
        for (int attempt = 0; attempt < 10; attempt++) {
            const float a = 256.0f * sample_draw(seed, e, k, 0.02f, 0.33f);
            const float r = expf(sample_draw(seed, e, k + 1, logf(0.3f), logf(3.3f)));
            k += 2;
            const float hf = rintf(sqrtf(a * r)), wf = rintf(sqrtf(a / r));
            if (!(hf < 16 && wf < 16)) continue;
            box[2] = (int)hf;
            box[3] = (int)wf;
            box[0] = (int)(sample_draw(seed, e, k, 0, 1) * (float)(17 - box[2]));
            box[1] = (int)(sample_draw(seed, e, k + 1, 0, 1) * (float)(17 - box[3]));
            box[0] = box[0] < 16 - box[2] ? box[0] : 16 - box[2];
            box[1] = box[1] < 16 - box[3] ? box[1] : 16 - box[3];
            break;
        }
        erased += box[2] * box[3] > 0;
        for (int y = 0; y < 16; y++)
            for (int x = 0; x < 16; x++) {
                const bool in = y >= box[0] && y < box[0] + box[2] && x >= box[1] &&
                                x < box[1] + box[3];
                bad += (out[y * 16 + x] == 0.0f) != in;
            }
    }
    CHECK(bad == 0 && erased > 30);
    cnn_dataset_destroy(&ds);
}

/* A dataset of one RGB image held in memory (not owned), for colour checks. */
typedef struct mem_rgb {
    unsigned char *pix;
    int h, w;
} mem_rgb;

static cnn_status mem_rgb_decode(const cnn_dataset *ds, int64_t i, cnn_image_u8 *img,
                                 bool *process_fault)
{
    (void)i;
    (void)process_fault;
    const mem_rgb *m = ds->impl;
    *img = (cnn_image_u8){m->pix, m->h, m->w, 3, false};
    return CNN_OK;
}

static void mem_rgb_name(const cnn_dataset *ds, int64_t i, char *buf, size_t n)
{
    (void)ds;
    snprintf(buf, n, "memory[%lld]", (long long)i);
}

static const cnn_dataset_ops g_mem_rgb_ops = {mem_rgb_decode, mem_rgb_name, NULL};

/* ColorJitter's saturation blends each pixel with its own gray, L = 0.299 R + 0.587 G +
 * 0.114 B (PIL's convert('L') weights, as torchvision's rgb_to_grayscale): on strongly coloured
 * pixels, with the factor replayed from the stream (draws 4 and 5 shuffle, 6 is the factor),
 * other weights (R and B swapped) give other values. */
TEST(augment_saturation_blends_with_the_pixels_luma)
{
    unsigned char rgb[4 * 4 * 3];
    for (int p = 0; p < 16; p++) {
        rgb[3 * p] = (unsigned char)(200 - 10 * p);
        rgb[3 * p + 1] = (unsigned char)(40 + 5 * p);
        rgb[3 * p + 2] = (unsigned char)(15 * p);
    }
    mem_rgb m = {rgb, 4, 4};
    cnn_dataset *ds = cnn_dataset_alloc(&g_mem_rgb_ops);
    REQUIRE(ds);
    ds->impl = &m;
    ds->n = 1;
    ds->channels = 3;
    ds->num_classes = 1;
    cnn_transform t = data_test_identity_transform(ds, 4);
    t.saturation = 0.9f;
    int bad = 0;
    for (int e = 0; e < 10; e++) {
        float out[48];
        CHECK_OK(cnn_dataset_get(ds, 0, &t, 3, e, out, NULL));
        const float f = sample_draw(3, e, 6, 0.1f, 1.9f);
        for (int p = 0; p < 16; p++) {
            const float r = rgb[3 * p] / 255.0f, g = rgb[3 * p + 1] / 255.0f;
            const float b = rgb[3 * p + 2] / 255.0f, l = 0.299f * r + 0.587f * g + 0.114f * b;
            const float v[3] = {r, g, b};
            for (int c = 0; c < 3; c++)
                bad += !(fabsf(out[c * 16 + p] - fminf(1, fmaxf(0, f * v[c] + (1 - f) * l))) <=
                         1e-5f);
        }
    }
    CHECK(bad == 0);
    ds->impl = NULL;
    cnn_dataset_destroy(&ds);
}
