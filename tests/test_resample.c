/* test_resample.c — cnn_image_resample called directly (a box at fractional pixels is resampled,
 * not copied; a box reaching past the image is refused), and CNN_GEOM_PAD_OR_RESIZE resizing an
 * image whose margin is odd instead of padding it off-centre. */
#include "test.h"

#include "../data/dataset.h"
#include "data_fixtures.h"

/* The box [0.5, 4.5) x [0.5, 4.5) of a 5x5 ramp v = 20 y + 2 x, to 4x4: the scale is 1, yet each
 * output centre lies half way between two source centres on each axis, so the triangle filter
 * averages them: out = 20 y + 2 x + 11. The shortcut that copies a box of the output's size
 * holds only for whole-pixel boxes (it would give 20 y + 2 x). */
TEST(resample_box_at_half_pixels_interpolates)
{
    unsigned char src[25], dst[16];
    for (int p = 0; p < 25; p++) src[p] = (unsigned char)(20 * (p / 5) + 2 * (p % 5));
    const double box[4] = {0.5, 0.5, 4.5, 4.5};
    CHECK_OK(cnn_image_resample(src, 5, 5, 5, 1, box, dst, 4, 4));
    int bad = 0;
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 4; x++) bad += dst[y * 4 + x] != 20 * y + 2 * x + 11;
    CHECK(bad == 0);
    /* A whole-pixel box of the output's size is the window itself. */
    const double whole[4] = {1, 1, 5, 5};
    CHECK_OK(cnn_image_resample(src, 5, 5, 5, 1, whole, dst, 4, 4));
    bad = 0;
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 4; x++) bad += dst[y * 4 + x] != src[(y + 1) * 5 + x + 1];
    CHECK(bad == 0);
}

/* A box must lie inside the window on both axes: one past the right or bottom edge would have
 * the filter read bytes beyond each row (the next row's) or beyond the image. */
TEST(resample_refuses_a_box_past_the_image)
{
    unsigned char src[25] = {0}, dst[16];
    const double wide[4] = {0, 0, 4, 5.5}, tall[4] = {0, 0, 5.5, 4}, back[4] = {0, 3, 4, 2};
    CHECK_ERR(cnn_image_resample(src, 5, 5, 5, 1, wide, dst, 4, 4), CNN_ERR_INVALID_ARG);
    CHECK_ERR(cnn_image_resample(src, 5, 5, 5, 1, tall, dst, 4, 4), CNN_ERR_INVALID_ARG);
    CHECK_ERR(cnn_image_resample(src, 5, 5, 5, 1, back, dst, 4, 4), CNN_ERR_INVALID_ARG);
    const double edge[4] = {0, 0, 5, 5};
    CHECK_OK(cnn_image_resample(src, 5, 5, 5, 1, edge, dst, 4, 4));
}

/* PAD_OR_RESIZE pads only a margin that splits evenly (data.h): a 28-row, 27-column image at 32
 * has a column margin of 5, so it is resized corner to corner (pixel (0, 0) keeps about the
 * source's first value, 37 for sample 1) rather than padded with 2 zero columns on the left and
 * 3 on the right. */
TEST(resample_odd_margin_resizes_instead_of_padding)
{
    cnn_dataset *ds = data_test_synthetic(2, 28, 27);
    REQUIRE(ds);
    cnn_transform t = cnn_transform_default(ds, false, 32);
    REQUIRE(t.geometry == CNN_GEOM_PAD_OR_RESIZE);
    t.mean[0] = 0;
    t.std[0] = 1;
    float out[32 * 32];
    CHECK_OK(cnn_dataset_get(ds, 1, &t, 0, 0, out, NULL));
    CHECK_NEAR(out[0] * 255.0, 37, 1.5);
    CHECK_NEAR(out[32 * 32 - 1] * 255.0, (37 + 27 * 27 + 26) & 255, 1.5);
    cnn_dataset_destroy(&ds);
}
