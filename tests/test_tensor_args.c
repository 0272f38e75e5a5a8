/* test_tensor_args.c — the argument rules of tensor creation, host I/O, filling and the views
 * (reshape, flatten, transpose, narrow), each against what PyTorch 1.13 does with the same
 * arguments: negative dims count from the end, one past the end is refused, sizes must be
 * non-negative even when their product fits, and a size-1 dim's stride does not matter. */
#include "gradcheck.h"

#include <stdint.h>

/* x: (2, 3, 4) holding 0..23 in row-major order. */
static cnn_tensor *arange_234(void)
{
    float v[24];
    for (int i = 0; i < 24; i++) v[i] = (float)i;
    cnn_tensor *t = NULL;
    if (cnn_tensor_from_data(CNN_SHAPE(2, 3, 4), v, CNN_CPU, &t) != CNN_OK) return NULL;
    return t;
}

/* torch.ones(6).reshape(-2, -3) raises "invalid shape dimension -2": (-2) * (-3) is 6, but a
 * negative size is never a size. */
TEST(reshape_refuses_negative_sizes_whose_product_fits)
{
    cnn_tensor *t = NULL, *r = NULL;
    CHECK_OK(cnn_tensor_zeros(CNN_SHAPE(6), CNN_CPU, &t));
    const cnn_shape bad[2] = {CNN_SHAPE(-2, -3), CNN_SHAPE(-6, -1)};
    for (int i = 0; i < 2; i++) {
        CHECK_ERR(cnn_tensor_reshape(t, bad[i], &r), CNN_ERR_SHAPE);
        CHECK(r == NULL);
    }
    cnn_tensor_free(&t);
}

/* torch.flatten(x, -2) of a (2, 3, 4) is (2, 12); start_dim 3 or -4 is out of range. A 0-d
 * tensor flattens to shape (1), as torch.flatten(torch.tensor(5.)), not to a 0-d view; its
 * start_dim is 0 or -1, as there (torch raises "Dimension out of range" for 1 or -2). */
TEST(flatten_counts_negative_start_dim_from_the_end)
{
    cnn_tensor *x = arange_234(), *y = NULL;
    REQUIRE(x);
    CHECK_OK(cnn_flatten(x, -2, &y));
    CHECK(has_shape(y, CNN_SHAPE(2, 12)));
    cnn_tensor_free(&y);
    CHECK_OK(cnn_flatten(x, 2, &y));
    CHECK(has_shape(y, CNN_SHAPE(2, 3, 4)));
    cnn_tensor_free(&y);
    for (int start = 3; start >= -4; start -= 7) {
        CHECK_ERR(cnn_flatten(x, start, &y), CNN_ERR_SHAPE);
        CHECK(y == NULL);
    }
    CHECK(strstr(cnn_last_error(), "start_dim -4 ")); /* as given, not after adding the rank */
    cnn_tensor_free(&x);
    CHECK_OK(cnn_tensor_full(CNN_SCALAR, 5.0f, CNN_CPU, &x));
    for (int start = 0; start >= -1; start--) {
        CHECK_OK(cnn_flatten(x, start, &y));
        CHECK(has_shape(y, CNN_SHAPE(1)) && cnn_tensor_cdata(y)[0] == 5.0f);
        cnn_tensor_free(&y);
    }
    for (int start = 1; start >= -2; start -= 3) {
        CHECK_ERR(cnn_flatten(x, start, &y), CNN_ERR_SHAPE);
        CHECK(y == NULL);
    }
    cnn_tensor_free(&x);
}

/* x.transpose(-1, 0) of a (2, 3, 4) is (4, 3, 2) with y[k][j][i] = x[i][j][k]; a dim equal
 * to the rank is out of range. */
TEST(transpose_counts_negative_dims_from_the_end)
{
    cnn_tensor *x = arange_234(), *y = NULL;
    REQUIRE(x);
    CHECK_OK(cnn_tensor_transpose(x, -1, 0, &y));
    REQUIRE(y);
    CHECK(has_shape(y, CNN_SHAPE(4, 3, 2)));
    float out[24];
    CHECK_OK(cnn_tensor_read(y, out, 24));
    for (int k = 0; k < 4; k++)
        for (int j = 0; j < 3; j++)
            for (int i = 0; i < 2; i++)
                CHECK(out[(k * 3 + j) * 2 + i] == (float)(i * 12 + j * 4 + k));
    cnn_tensor_free(&y);
    CHECK_ERR(cnn_tensor_transpose(x, 0, 3, &y), CNN_ERR_SHAPE);
    CHECK(y == NULL);
    CHECK_ERR(cnn_tensor_transpose(x, 3, 0, &y), CNN_ERR_SHAPE);
    CHECK_ERR(cnn_tensor_transpose(x, -4, 0, &y), CNN_ERR_SHAPE);
    CHECK(strstr(cnn_last_error(), "dims (-4, 0)"));
    cnn_tensor_free(&y);
    cnn_tensor_free(&x);
}

/* torch.narrow(x, -1, 1, 2) of a (2, 3, 4) is x[..., 1:3]; a negative length is refused
 * ("start (1) + length (-1) exceeds dimension size"), as is a dim past the rank, even with a
 * length of 0 ("Dimension out of range"; the size read one past the last dim is 0). */
TEST(narrow_counts_negative_dims_and_refuses_negative_lengths)
{
    cnn_tensor *x = arange_234(), *y = NULL;
    REQUIRE(x);
    CHECK_OK(cnn_tensor_narrow(x, -1, 1, 2, &y));
    REQUIRE(y);
    CHECK(has_shape(y, CNN_SHAPE(2, 3, 2)));
    float out[12];
    CHECK_OK(cnn_tensor_read(y, out, 12));
    for (int r = 0; r < 6; r++)
        CHECK(out[2 * r] == (float)(4 * r + 1) && out[2 * r + 1] == (float)(4 * r + 2));
    cnn_tensor_free(&y);
    CHECK_ERR(cnn_tensor_narrow(x, 2, 1, -1, &y), CNN_ERR_SHAPE);
    CHECK(y == NULL);
    CHECK_ERR(cnn_tensor_narrow(x, 0, 2, -2, &y), CNN_ERR_SHAPE);
    CHECK_ERR(cnn_tensor_narrow(x, 3, 0, 1, &y), CNN_ERR_SHAPE);
    CHECK_ERR(cnn_tensor_narrow(x, 3, 0, 0, &y), CNN_ERR_SHAPE);
    CHECK(y == NULL);
    CHECK_ERR(cnn_tensor_narrow(x, -4, 0, 1, &y), CNN_ERR_SHAPE);
    cnn_tensor_free(&y);
    cnn_tensor_free(&x);
}

/* Shapes are compared in every dim: (2, 3) and (2, 4) differ only in the last. */
TEST(copy_refuses_shapes_that_differ_in_the_last_dim)
{
    cnn_tensor *a = NULL, *b = NULL, *c = NULL, *d = NULL;
    CHECK_OK(cnn_tensor_zeros(CNN_SHAPE(2, 3), CNN_CPU, &a));
    CHECK_OK(cnn_tensor_ones(CNN_SHAPE(2, 4), CNN_CPU, &b));
    CHECK_ERR(cnn_tensor_copy_(a, b), CNN_ERR_SHAPE);
    CHECK_ERR(cnn_tensor_copy_(b, a), CNN_ERR_SHAPE);
    CHECK_OK(cnn_tensor_zeros(CNN_SHAPE(3), CNN_CPU, &c));
    CHECK_OK(cnn_tensor_ones(CNN_SHAPE(4), CNN_CPU, &d));
    CHECK_ERR(cnn_tensor_copy_(c, d), CNN_ERR_SHAPE);
    for (int i = 0; i < 6; i++) CHECK(cnn_tensor_cdata(a)[i] == 0.0f);
    cnn_tensor *all[4] = {a, b, c, d};
    for (int i = 0; i < 4; i++) cnn_tensor_free(&all[i]);
}

/* (2^62 + 3) * 4 floats is 2^66 + 48 bytes, which wraps to 48 in 64 bits: refused, not a
 * 48-byte storage under a shape that claims far more. */
TEST(creation_refuses_shapes_whose_byte_count_wraps)
{
    cnn_tensor *t = NULL;
    const int64_t big = ((int64_t)1 << 62) + 3;
    CHECK_ERR(cnn_tensor_zeros(CNN_SHAPE(big, 4), CNN_CPU, &t), CNN_ERR_SHAPE);
    CHECK(t == NULL);
    CHECK_ERR(cnn_tensor_empty(CNN_SHAPE(1 << 21, 1 << 21, 1 << 21), CNN_F32, CNN_CPU, &t),
              CNN_ERR_SHAPE);
    CHECK(t == NULL);
    cnn_tensor_free(&t);
}

/* torch.ones(1, 3).t().is_contiguous() is True: the stride of a size-1 dim is never used. A
 * (4, 4) narrowed to one column is not contiguous. Only F32 tensors hand out a float pointer. */
TEST(contiguity_ignores_size_one_dims_and_data_needs_f32)
{
    const float v[3] = {1, 2, 3};
    cnn_tensor *r = NULL, *t = NULL, *sq = NULL, *col = NULL, *l = NULL;
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(1, 3), v, CNN_CPU, &r));
    CHECK_OK(cnn_tensor_transpose(r, 0, 1, &t));
    CHECK(has_shape(t, CNN_SHAPE(3, 1)));
    CHECK(cnn_tensor_is_contiguous(t));
    CHECK(cnn_tensor_cdata(t) == cnn_tensor_cdata(r));
    CHECK_OK(cnn_tensor_zeros(CNN_SHAPE(4, 4), CNN_CPU, &sq));
    CHECK_OK(cnn_tensor_narrow(sq, 1, 2, 1, &col));
    CHECK(!cnn_tensor_is_contiguous(col) && cnn_tensor_cdata(col) == NULL);
    const int64_t lab[2] = {5, 6};
    CHECK_OK(cnn_tensor_from_i64(CNN_SHAPE(2), lab, CNN_CPU, &l));
    CHECK(cnn_tensor_is_contiguous(l));
    CHECK(cnn_tensor_data(l) == NULL && cnn_tensor_cdata(l) == NULL);
    cnn_tensor *all[5] = {r, t, sq, col, l};
    for (int i = 0; i < 5; i++) cnn_tensor_free(&all[i]);
}

/* Filling column 1 of a (3, 4) changes those three elements and no other. */
TEST(fill_of_a_strided_view_writes_only_the_view)
{
    cnn_tensor *x = NULL, *col = NULL;
    CHECK_OK(cnn_tensor_zeros(CNN_SHAPE(3, 4), CNN_CPU, &x));
    CHECK_OK(cnn_tensor_narrow(x, 1, 1, 1, &col));
    CHECK_OK(cnn_tensor_fill_(col, 7.0f));
    const float *p = cnn_tensor_cdata(x);
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 4; c++) CHECK(p[r * 4 + c] == (c == 1 ? 7.0f : 0.0f));
    cnn_tensor_free(&col);
    cnn_tensor_free(&x);
}

/* torch's uniform_(2, 2) fills with 2 and normal_(3, 0) with 3: equal bounds and a zero std are
 * valid, a degenerate distribution. */
TEST(uniform_with_equal_bounds_and_normal_with_zero_std_are_constants)
{
    cnn_tensor *u = NULL, *n = NULL;
    CHECK_OK(cnn_tensor_uniform(CNN_SHAPE(5), 2.0f, 2.0f, CNN_CPU, &u));
    CHECK_OK(cnn_tensor_normal(CNN_SHAPE(5), 3.0f, 0.0f, CNN_CPU, &n));
    REQUIRE(u && n);
    for (int i = 0; i < 5; i++)
        CHECK(cnn_tensor_cdata(u)[i] == 2.0f && cnn_tensor_cdata(n)[i] == 3.0f);
    cnn_tensor_free(&u);
    cnn_tensor_free(&n);
    /* As uniform's bounds, a mean or std that is NaN or infinite is refused (it made every
     * value NaN or infinite), and the message says which. */
    const float bad[][2] = {{NAN, 1}, {INFINITY, 1}, {0, INFINITY}, {0, NAN}, {0, -1}};
    for (int i = 0; i < 5; i++) {
        CHECK_ERR(cnn_tensor_normal(CNN_SHAPE(5), bad[i][0], bad[i][1], CNN_CPU, &n),
                  CNN_ERR_INVALID_ARG);
        CHECK(n == NULL && strstr(cnn_last_error(), "need a finite mean and a finite std >= 0"));
    }
}

/* Host reads and writes take exactly numel values: one fewer or one more is refused, and a
 * refused write changes nothing. */
TEST(host_read_and_write_need_exactly_numel_values)
{
    float v[7] = {1, 2, 3, 4, 5, 6, 7};
    cnn_tensor *t = NULL;
    CHECK_OK(cnn_tensor_zeros(CNN_SHAPE(2, 3), CNN_CPU, &t));
    CHECK_ERR(cnn_tensor_write(t, v, 5), CNN_ERR_SHAPE);
    CHECK_ERR(cnn_tensor_write(t, v, 7), CNN_ERR_SHAPE);
    for (int i = 0; i < 6; i++) CHECK(cnn_tensor_cdata(t)[i] == 0.0f);
    CHECK_ERR(cnn_tensor_read(t, v, 5), CNN_ERR_SHAPE);
    CHECK_ERR(cnn_tensor_read(t, v, 7), CNN_ERR_SHAPE);
    CHECK(v[6] == 7.0f);
    CHECK_OK(cnn_tensor_read(t, v, 6));
    CHECK(v[0] == 0.0f && v[5] == 0.0f && v[6] == 7.0f);
    cnn_tensor_free(&t);
}

/* A host buffer that is the tensor's own storage: reading a transposed view into it transposes
 * in place, and writing the storage's values into a shifted view shifts them, each as from a
 * copy taken first (element by element, the first values written would be read again). */
TEST(host_read_and_write_through_the_tensors_own_storage)
{
    float v[16];
    for (int i = 0; i < 16; i++) v[i] = (float)i;
    cnn_tensor *m = NULL, *mt = NULL, *row = NULL, *tail = NULL;
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(4, 4), v, CNN_CPU, &m));
    CHECK_OK(cnn_tensor_transpose(m, 0, 1, &mt));
    CHECK_OK(cnn_tensor_read(mt, cnn_tensor_data(m), 16));
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 4; c++) CHECK(cnn_tensor_cdata(m)[r * 4 + c] == (float)(c * 4 + r));
    /* Elements 1..15 of a 16-vector take the old 0..14. */
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(16), v, CNN_CPU, &row));
    CHECK_OK(cnn_tensor_narrow(row, 0, 1, 15, &tail));
    CHECK_OK(cnn_tensor_write(tail, cnn_tensor_cdata(row), 15));
    for (int i = 1; i < 16; i++) CHECK(cnn_tensor_cdata(row)[i] == (float)(i - 1));
    cnn_tensor_free(&tail);
    cnn_tensor_free(&row);
    cnn_tensor_free(&mt);
    cnn_tensor_free(&m);
}

/* A shape of rank outside 0..4 is refused by name before any of its sizes is read (d has
 * four), and printing one shows at most four sizes. */
TEST(shapes_of_a_bad_rank_are_refused_before_their_sizes_are_read)
{
    float v[4] = {0};
    cnn_tensor *t = NULL;
    cnn_shape bad = {.ndim = 1000, .d = {2, 3, 4, 5}};
    CHECK_ERR(cnn_tensor_from_data(bad, v, CNN_CPU, &t), CNN_ERR_SHAPE);
    CHECK(t == NULL && strstr(cnn_last_error(), "rank 1000"));
    CHECK_ERR(cnn_tensor_from_data(bad, NULL, CNN_CPU, &t), CNN_ERR_SHAPE);
    char buf[128];
    CHECK(!strcmp(cnn_shape_str(bad, buf, sizeof buf), "(2, 3, 4, 5)"));
    bad.ndim = -3;
    CHECK(!strcmp(cnn_shape_str(bad, buf, sizeof buf), "()"));
}

/* A device is CNN_CPU or CNN_CUDA(i): an unknown type is refused by name, and a CPU index other
 * than 0 means the one CPU (as cnn_context_create takes it), so the tensor works with others. */
TEST(creation_checks_the_device)
{
    cnn_tensor *a = NULL, *b = NULL, *c = NULL;
    CHECK_ERR(cnn_tensor_zeros(CNN_SHAPE(2), (cnn_device){(cnn_device_type)7, 0}, &a),
              CNN_ERR_INVALID_ARG);
    CHECK(a == NULL && strstr(cnn_last_error(), "unknown device type 7"));
    CHECK_ERR(cnn_tensor_zeros(CNN_SHAPE(2), CNN_CUDA(-1), &a), CNN_ERR_INVALID_ARG);
    CHECK(strstr(cnn_last_error(), "cuda:-1"));
    CHECK_OK(cnn_tensor_ones(CNN_SHAPE(2), (cnn_device){CNN_DEVICE_CPU, 3}, &a));
    REQUIRE(a);
    CHECK(cnn_tensor_device(a).type == CNN_DEVICE_CPU && cnn_tensor_device(a).index == 0);
    CHECK_OK(cnn_tensor_ones(CNN_SHAPE(2), CNN_CPU, &b));
    CHECK_OK(cnn_add(a, b, &c));
    cnn_tensor_free(&c);
    CHECK_OK(cnn_tensor_to(a, (cnn_device){CNN_DEVICE_CPU, 5}, &c));
    cnn_tensor_free(&a);
    cnn_tensor_free(&b);
    cnn_tensor_free(&c);
}

/* Each message names the function called and the problem (here: a dtype, not a shape). */
TEST(argument_errors_name_the_function_and_the_problem)
{
    cnn_tensor *t = NULL, *y = NULL, *g = NULL;
    const int64_t v[3] = {1, 2, 3};
    CHECK_ERR(cnn_tensor_from_i64(CNN_SHAPE(3), NULL, CNN_CPU, &t), CNN_ERR_INVALID_ARG);
    CHECK(strstr(cnn_last_error(), "tensor_from_i64"));
    CHECK_ERR(cnn_init_zeros_(NULL), CNN_ERR_INVALID_ARG);
    CHECK(strstr(cnn_last_error(), "init_zeros_"));
    CHECK_ERR(cnn_init_ones_(NULL), CNN_ERR_INVALID_ARG);
    CHECK(strstr(cnn_last_error(), "init_ones_"));
    CHECK_OK(cnn_tensor_ones(CNN_SHAPE(3), CNN_CPU, &t));
    CHECK_OK(cnn_tensor_set_requires_grad(t, true));
    CHECK_OK(cnn_scale(t, 2.0f, &y));
    CHECK_OK(cnn_tensor_from_i64(CNN_SHAPE(3), v, CNN_CPU, &g));
    CHECK_ERR(cnn_backward_with_grad(y, g), CNN_ERR_SHAPE);
    CHECK(strstr(cnn_last_error(), "I64"));
    cnn_tape_reset();
    cnn_tensor_free(&t);
    cnn_tensor_free(&y);
    cnn_tensor_free(&g);
}
