/* test_tensor_copy.c — copies and fills at their edges: strided views of one storage that share
 * a single element (their byte spans meet in one float), copies between tensors of one shape and
 * different dtypes, fills of I64 tensors, and a conversion just below I32's range. The overlap
 * cases of whole rows: test_tensor.c. */
#include "test.h"

/* x = 0..15 seen as (8, 2); its column 0 holds x[0], x[2], ..., x[14]. dst = rows 2..4 of it
 * (x[4], x[6], x[8]) and src = rows 0..2 (x[0], x[2], x[4]) share x[4] only. dst must get
 * src's old values 0, 2, 4: copied in place element by element front to back, x[8] would get
 * the 0 just written into x[4]. Nothing else changes. */
TEST(copy_between_views_sharing_one_element_reads_the_old_values)
{
    float v[16], out[16];
    for (int i = 0; i < 16; i++) v[i] = (float)i;
    cnn_tensor *x = NULL, *col = NULL, *dst = NULL, *src = NULL;
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(8, 2), v, CNN_CPU, &x));
    CHECK_OK(cnn_tensor_narrow(x, 1, 0, 1, &col));
    CHECK_OK(cnn_tensor_narrow(col, 0, 2, 3, &dst));
    CHECK_OK(cnn_tensor_narrow(col, 0, 0, 3, &src));
    CHECK_OK(cnn_tensor_copy_(dst, src));
    CHECK_OK(cnn_tensor_read(x, out, 16));
    for (int i = 0; i < 16; i++) {
        const float want = i == 4 ? 0 : i == 6 ? 2 : i == 8 ? 4 : (float)i;
        if (out[i] != want)
            cnn_test_fail(__FILE__, __LINE__, "x[%d] = %g, want %g", i, out[i], want);
    }
    cnn_tensor *all[4] = {x, col, dst, src};
    for (int i = 0; i < 4; i++) cnn_tensor_free(&all[i]);
}

/* Same shape, different dtypes: refused both ways (4-byte F32 and I32, 8-byte I64). */
TEST(copy_refuses_a_dtype_mismatch_of_one_shape)
{
    cnn_tensor *f = NULL, *i32 = NULL, *i64 = NULL;
    CHECK_OK(cnn_tensor_ones(CNN_SHAPE(3), CNN_CPU, &f));
    CHECK_OK(cnn_tensor_empty(CNN_SHAPE(3), CNN_I32, CNN_CPU, &i32));
    CHECK_OK(cnn_tensor_empty(CNN_SHAPE(3), CNN_I64, CNN_CPU, &i64));
    CHECK_ERR(cnn_tensor_copy_(i32, f), CNN_ERR_SHAPE);
    CHECK_ERR(cnn_tensor_copy_(f, i32), CNN_ERR_SHAPE);
    CHECK_ERR(cnn_tensor_copy_(i64, f), CNN_ERR_SHAPE);
    CHECK(strstr(cnn_last_error(), "I64") && strstr(cnn_last_error(), "F32"));
    cnn_tensor_free(&f);
    cnn_tensor_free(&i32);
    cnn_tensor_free(&i64);
}

/* fill_ of an I64 tensor stores the value truncated toward zero, as torch's fill_(3.7) on an
 * int64 tensor gives 3 (and -2.9 gives -2); NaN and values outside int64 are refused; I32 is
 * refused. */
TEST(fill_of_i64_tensors_truncates_the_value)
{
    cnn_tensor *l = NULL, *i = NULL;
    int64_t back[4];
    CHECK_OK(cnn_tensor_empty(CNN_SHAPE(2, 2), CNN_I64, CNN_CPU, &l));
    CHECK_OK(cnn_tensor_fill_(l, 3.7f));
    CHECK_OK(cnn_tensor_read(l, back, 4));
    for (int k = 0; k < 4; k++) CHECK(back[k] == 3);
    CHECK_OK(cnn_tensor_fill_(l, -2.9f));
    CHECK_OK(cnn_tensor_read(l, back, 4));
    for (int k = 0; k < 4; k++) CHECK(back[k] == -2);
    /* No conversion for NaN or past the range: refused, as torch refuses them, values kept. */
    const float bad[3] = {NAN, 0x1p63f, -0x1p64f};
    for (int k = 0; k < 3; k++) {
        CHECK_ERR(cnn_tensor_fill_(l, bad[k]), CNN_ERR_INVALID_ARG);
        CHECK(strstr(cnn_last_error(), "I64") != NULL);
    }
    CHECK_OK(cnn_tensor_fill_(l, -0x1p63f)); /* INT64_MIN is in range */
    CHECK_OK(cnn_tensor_read(l, back, 4));
    CHECK(back[0] == INT64_MIN);
    CHECK_OK(cnn_tensor_empty(CNN_SHAPE(2), CNN_I32, CNN_CPU, &i));
    CHECK_ERR(cnn_tensor_fill_(i, 1.0f), CNN_ERR_UNSUPPORTED);
    cnn_tensor_free(&l);
    cnn_tensor_free(&i);
}

/* -2147483649 truncates to itself, one below INT32_MIN: refused (x86's cast gave INT32_MIN),
 * while -2147483648.75 truncates to INT32_MIN and converts. test_dtype.c has the other edges. */
TEST(to_i32_refuses_the_integer_just_below_its_range)
{
    cnn_tensor *d = NULL, *o = NULL;
    const double below[2] = {-2147483648.75, -2147483649.0};
    int32_t got = 0;
    for (int k = 0; k < 2; k++) {
        CHECK_OK(cnn_tensor_empty(CNN_SHAPE(1), CNN_F64, CNN_CPU, &d));
        CHECK_OK(cnn_tensor_write(d, &below[k], 1));
        if (k == 0) {
            CHECK_OK(cnn_tensor_to_dtype(d, CNN_I32, &o));
            if (o) CHECK_OK(cnn_tensor_read(o, &got, 1));
            CHECK(got == INT32_MIN);
        } else {
            CHECK_ERR(cnn_tensor_to_dtype(d, CNN_I32, &o), CNN_ERR_INVALID_ARG);
            CHECK(o == NULL && strstr(cnn_last_error(), "element 0") != NULL);
        }
        cnn_tensor_free(&d);
        cnn_tensor_free(&o);
    }
}
