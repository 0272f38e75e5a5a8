/* test_augment_draws.c — where the augmentation's random draws may land, against torchvision's
 * ranges: RandomErasing's box reaches the last row and column, RandomResizedCrop's fallback for
 * a tall image, ColorJitter's brightness factor clipped at 0 and its steps in a uniformly random
 * order. Each fails on a bug that leaves every value plausible and every other test passing. */
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

/* When no try fits, torchvision's get_params crops the centre at the nearest ratio in range: for
 * a tall 16x8 image at scale (1, 1) and ratio (3/4, 4/3), w = 8 and h = round(8 / (3/4)) = 11
 * (top 2). PIL's crop((0, 2, 8, 13)).resize((8, 8), BILINEAR) of v = 8y + x has rows 19..26
 * first and 93..100 last. */
TEST(augment_random_resized_crop_fallback_of_a_tall_image)
{
    cnn_dataset *ds = data_test_synthetic(1, 16, 8);
    REQUIRE(ds);
    cnn_transform t = data_test_identity_transform(ds, 8);
    t.ratio[0] = 3.0f / 4.0f;
    t.ratio[1] = 4.0f / 3.0f;
    float out[64];
    CHECK_OK(cnn_dataset_get(ds, 0, &t, 7, 0, out, NULL));
    for (int x = 0; x < 8; x++) {
        CHECK_NEAR(out[x] * 255.0, 19 + x, 1e-3);
        CHECK_NEAR(out[56 + x] * 255.0, 93 + x, 1e-3);
    }
    cnn_dataset_destroy(&ds);
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
