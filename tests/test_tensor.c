/* test_tensor.c — tensor creation, views, copies, host I/O, RNG and argument errors. */
#include "gradcheck.h"

TEST(create_and_query)
{
    cnn_tensor *t = NULL;
    CHECK_OK(cnn_tensor_zeros(CNN_SHAPE(2, 3, 4, 5), CNN_CPU, &t));
    CHECK(cnn_tensor_ndim(t) == 4);
    CHECK(cnn_tensor_numel(t) == 120);
    CHECK(cnn_tensor_dim(t, -1) == 5 && cnn_tensor_dim(t, 1) == 3);
    /* Out of range is 0: dim 4 of a 4-d tensor is past its sizes, not the next field read. */
    CHECK(cnn_tensor_dim(t, 4) == 0 && cnn_tensor_dim(t, -5) == 0);
    CHECK(cnn_tensor_is_contiguous(t));
    CHECK(cnn_tensor_dtype(t) == CNN_F32);
    CHECK(cnn_tensor_device(t).type == CNN_DEVICE_CPU);
    const float *p = cnn_tensor_cdata(t);
    REQUIRE(p);
    for (int i = 0; i < 120; i++) CHECK(p[i] == 0.0f);
    cnn_tensor_free(&t);
    CHECK(t == NULL);
    cnn_tensor_free(&t); /* NULL-safe */
    CHECK_OK(cnn_tensor_full(CNN_SHAPE(7), 2.5f, CNN_CPU, &t));
    CHECK(cnn_tensor_cdata(t)[6] == 2.5f);
    cnn_tensor_free(&t);
    CHECK_OK(cnn_tensor_ones(CNN_SCALAR, CNN_CPU, &t));
    CHECK(cnn_tensor_numel(t) == 1 && cnn_tensor_cdata(t)[0] == 1.0f);
    char buf[64];
    CHECK(strcmp(cnn_shape_str(CNN_SHAPE(8, 3, 32, 32), buf, sizeof buf), "(8, 3, 32, 32)") == 0);
    cnn_tensor_free(&t);
}

TEST(bad_arguments_give_errors)
{
    cnn_tensor *t = NULL;
    cnn_shape bad = CNN_SHAPE(2, 3);
    bad.d[1] = -3;
    CHECK_ERR(cnn_tensor_zeros(bad, CNN_CPU, &t), CNN_ERR_SHAPE);
    CHECK(t == NULL);
    bad.ndim = 5;
    CHECK_ERR(cnn_tensor_zeros(bad, CNN_CPU, &t), CNN_ERR_SHAPE);
    CHECK_ERR(cnn_tensor_zeros(CNN_SHAPE(2), CNN_CPU, NULL), CNN_ERR_INVALID_ARG);
    CHECK_ERR(cnn_tensor_uniform(CNN_SHAPE(2), 1.0f, 0.0f, CNN_CPU, &t), CNN_ERR_INVALID_ARG);
    if (!cnn_built_with_cuda() || cnn_cuda_device_count() == 0)
        CHECK_ERR(cnn_tensor_zeros(CNN_SHAPE(2), CNN_CUDA(0), &t), CNN_ERR_DEVICE);
    CHECK_OK(cnn_tensor_zeros(CNN_SHAPE(2, 3), CNN_CPU, &t));
    float v[5];
    CHECK_ERR(cnn_tensor_read(t, v, 5), CNN_ERR_SHAPE);
    CHECK(strstr(cnn_last_error(), "(2, 3)") != NULL);
    cnn_tensor *r = NULL;
    CHECK_ERR(cnn_tensor_reshape(t, CNN_SHAPE(4, 2), &r), CNN_ERR_SHAPE);
    CHECK_ERR(cnn_tensor_reshape(t, CNN_SHAPE(-1, -1), &r), CNN_ERR_SHAPE);
    cnn_tensor_free(&t);
    /* The queries take NULL as "no tensor" (this one segfaulted). */
    CHECK(!cnn_tensor_is_contiguous(NULL));
    CHECK(cnn_tensor_numel(NULL) == 0);
}

TEST(reshape_views_share_storage)
{
    float v[6] = {1, 2, 3, 4, 5, 6};
    cnn_tensor *t = NULL, *r = NULL;
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(2, 3), v, CNN_CPU, &t));
    CHECK_OK(cnn_tensor_reshape(t, CNN_SHAPE(3, -1), &r));
    CHECK(cnn_tensor_dim(r, 0) == 3 && cnn_tensor_dim(r, 1) == 2);
    cnn_tensor_data(t)[0] = 42;
    CHECK(cnn_tensor_cdata(r)[0] == 42); /* a view */
    cnn_tensor_free(&t);
    CHECK(cnn_tensor_cdata(r)[5] == 6); /* the view keeps the storage alive */
    cnn_tensor_free(&r);
}

TEST(transpose_narrow_contiguous)
{
    float v[6] = {1, 2, 3, 4, 5, 6}, out[6];
    cnn_tensor *t = NULL, *tt = NULL, *c = NULL, *nr = NULL;
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(2, 3), v, CNN_CPU, &t));
    CHECK_OK(cnn_tensor_transpose(t, 0, 1, &tt));
    CHECK(!cnn_tensor_is_contiguous(tt));
    CHECK(cnn_tensor_data(tt) == NULL);
    CHECK_OK(cnn_tensor_read(tt, out, 6));
    float want[6] = {1, 4, 2, 5, 3, 6};
    for (int i = 0; i < 6; i++) CHECK(out[i] == want[i]);
    CHECK_OK(cnn_tensor_contiguous(tt, &c));
    CHECK(cnn_tensor_is_contiguous(c));
    CHECK(memcmp(cnn_tensor_cdata(c), want, sizeof want) == 0);
    CHECK_OK(cnn_tensor_narrow(t, 1, 1, 2, &nr));
    float o2[4];
    CHECK_OK(cnn_tensor_read(nr, o2, 4));
    CHECK(o2[0] == 2 && o2[1] == 3 && o2[2] == 5 && o2[3] == 6);
    cnn_tensor_free(&nr);
    CHECK_ERR(cnn_tensor_narrow(t, 1, 2, 2, &nr), CNN_ERR_SHAPE);
    CHECK(nr == NULL);
    cnn_tensor_free(&t);
    cnn_tensor_free(&tt);
    cnn_tensor_free(&c);
    cnn_tensor_free(&nr);
}

/* Sizes whose product or sum wraps around 64 bits are refused, not turned into a view larger
 * than its storage (which then read and wrote far outside it). */
TEST(reshape_and_narrow_refuse_overflowing_sizes)
{
    cnn_tensor *t = NULL, *v = NULL, *e = NULL;
    CHECK_OK(cnn_tensor_zeros(CNN_SHAPE(12), CNN_CPU, &t));
    const int64_t big = ((int64_t)1 << 62) + 3; /* big * 4 wraps to 12 */
    CHECK_ERR(cnn_tensor_reshape(t, CNN_SHAPE(big, 4), &v), CNN_ERR_SHAPE);
    CHECK(v == NULL);
    CHECK_ERR(cnn_tensor_reshape(t, CNN_SHAPE(big, -1), &v), CNN_ERR_SHAPE);
    CHECK_ERR(cnn_tensor_narrow(t, 0, 1, INT64_MAX, &v), CNN_ERR_SHAPE);
    CHECK_ERR(cnn_tensor_narrow(t, 0, INT64_MAX, 1, &v), CNN_ERR_SHAPE);
    CHECK_ERR(cnn_tensor_narrow(t, 0, 13, 0, &v), CNN_ERR_SHAPE);
    CHECK(v == NULL);
    CHECK_OK(cnn_tensor_narrow(t, 0, 12, 0, &v)); /* empty, at the end: as PyTorch */
    CHECK(cnn_tensor_numel(v) == 0);
    cnn_tensor_free(&v);
    /* A zero size makes the product 0, but the strides still multiply the other sizes: those
     * must fit as for cnn_tensor_empty (they wrapped around before, undefined behaviour). */
    CHECK_OK(cnn_tensor_zeros(CNN_SHAPE(0, 3), CNN_CPU, &e));
    CHECK_OK(cnn_tensor_reshape(e, CNN_SHAPE((int64_t)1 << 40, 8, 0), &v));
    CHECK(cnn_tensor_numel(v) == 0);
    cnn_tensor_free(&v);
    CHECK_ERR(cnn_tensor_reshape(e, CNN_SHAPE(big, 8, 0), &v), CNN_ERR_SHAPE);
    CHECK(v == NULL);
    CHECK_ERR(cnn_tensor_reshape(e, CNN_SHAPE(0, -1), &v), CNN_ERR_SHAPE);
    cnn_tensor_free(&e);
    cnn_tensor_free(&t);
}

/* cnn_tensor_copy_ between overlapping views of one storage gives dst the values src had
 * before the call: each row shifted right by one, and a square matrix transposed in place
 * (copied element by element, the first would smear one value along the row, the second would
 * leave a symmetric matrix). */
static void overlapping_copies_on(cnn_device dev)
{
    float v[16], out[16];
    for (int i = 0; i < 16; i++) v[i] = (float)i;
    cnn_tensor *h = NULL, *x = NULL, *a = NULL, *b = NULL, *t = NULL;
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(4, 4), v, CNN_CPU, &h));
    CHECK_OK(cnn_tensor_to(h, dev, &x));
    CHECK_OK(cnn_tensor_narrow(x, 1, 1, 3, &a));
    CHECK_OK(cnn_tensor_narrow(x, 1, 0, 3, &b));
    CHECK_OK(cnn_tensor_copy_(a, b));
    CHECK_OK(cnn_tensor_read(x, out, 16));
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 4; c++) {
            const float want = (float)(r * 4 + (c ? c - 1 : 0));
            if (out[r * 4 + c] != want)
                cnn_test_fail(__FILE__, __LINE__, "shift: [%d][%d] = %g, want %g", r, c,
                              out[r * 4 + c], want);
        }
    CHECK_OK(cnn_tensor_write(x, v, 16));
    CHECK_OK(cnn_tensor_transpose(x, 0, 1, &t));
    CHECK_OK(cnn_tensor_copy_(x, t));
    CHECK_OK(cnn_tensor_read(x, out, 16));
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 4; c++) CHECK(out[r * 4 + c] == v[c * 4 + r]);
    cnn_tensor *all[5] = {h, x, a, b, t};
    for (int i = 0; i < 5; i++) cnn_tensor_free(&all[i]);
}

TEST(copy_between_overlapping_views_reads_the_old_values) { overlapping_copies_on(CNN_CPU); }

GPU_TEST(cuda_copy_between_overlapping_views_reads_the_old_values)
{
    overlapping_copies_on(CNN_CUDA(0));
}

/* Without a GPU in the picture, a started copy is an ordinary one and waiting is a no-op. */
TEST(copy_start_from_the_cpu_is_immediate)
{
    const float five[5] = {0, 1, 2, 3, 4};
    cnn_tensor *a = NULL, *b = NULL;
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(5), five, CNN_CPU, &a));
    CHECK_OK(cnn_tensor_zeros(CNN_SHAPE(5), CNN_CPU, &b));
    CHECK_OK(cnn_tensor_copy_start_(b, a));
    CHECK(cnn_tensor_cdata(b)[4] == 4.0f);
    CHECK_OK(cnn_tensor_wait(b));
    CHECK_ERR(cnn_tensor_copy_start_(NULL, a), CNN_ERR_INVALID_ARG);
    CHECK_ERR(cnn_tensor_wait(NULL), CNN_ERR_INVALID_ARG);
    cnn_tensor_free(&a);
    cnn_tensor_free(&b);
}

TEST(copy_clone_write_i64)
{
    cnn_tensor *a = NULL, *b = NULL, *l = NULL;
    CHECK_OK(cnn_tensor_uniform(CNN_SHAPE(4, 5), -1, 1, CNN_CPU, &a));
    CHECK_OK(cnn_tensor_clone(a, &b));
    CHECK(memcmp(cnn_tensor_cdata(a), cnn_tensor_cdata(b), 20 * sizeof(float)) == 0);
    CHECK(cnn_tensor_cdata(a) != cnn_tensor_cdata(b));
    CHECK_OK(cnn_tensor_fill_(b, 3.0f));
    CHECK_OK(cnn_tensor_copy_(a, b));
    CHECK(cnn_tensor_cdata(a)[19] == 3.0f);
    int64_t lab[3] = {0, 7, 1LL << 40}, back[3];
    CHECK_OK(cnn_tensor_from_i64(CNN_SHAPE(3), lab, CNN_CPU, &l));
    CHECK(cnn_tensor_dtype(l) == CNN_I64);
    CHECK_OK(cnn_tensor_read(l, back, 3));
    CHECK(back[2] == (1LL << 40) && back[1] == 7);
    CHECK_ERR(cnn_tensor_copy_(a, l), CNN_ERR_SHAPE);
    cnn_tensor_free(&a);
    cnn_tensor_free(&b);
    cnn_tensor_free(&l);
}

TEST(rng_is_seeded_and_distributed)
{
    cnn_tensor *a = NULL, *b = NULL, *n = NULL;
    cnn_manual_seed(7);
    CHECK_OK(cnn_tensor_uniform(CNN_SHAPE(1000), 0, 1, CNN_CPU, &a));
    cnn_manual_seed(7);
    CHECK_OK(cnn_tensor_uniform(CNN_SHAPE(1000), 0, 1, CNN_CPU, &b));
    CHECK(memcmp(cnn_tensor_cdata(a), cnn_tensor_cdata(b), 1000 * sizeof(float)) == 0);
    cnn_tensor_free(&b);
    CHECK_OK(cnn_tensor_uniform(CNN_SHAPE(1000), 0, 1, CNN_CPU, &b)); /* stream moved on */
    CHECK(memcmp(cnn_tensor_cdata(a), cnn_tensor_cdata(b), 1000 * sizeof(float)) != 0);
    double mean = 0;
    for (int i = 0; i < 1000; i++) {
        float x = cnn_tensor_cdata(a)[i];
        CHECK(x >= 0 && x < 1);
        mean += x / 1000;
    }
    CHECK_NEAR(mean, 0.5, 0.05);
    /* Restoring (seed, offset) replays the stream. */
    uint64_t seed, off;
    cnn_rng_get_state(&seed, &off);
    CHECK_OK(cnn_tensor_normal(CNN_SHAPE(20000), 1.0f, 2.0f, CNN_CPU, &n));
    double m = 0, v = 0;
    for (int i = 0; i < 20000; i++) m += cnn_tensor_cdata(n)[i] / 20000.0;
    for (int i = 0; i < 20000; i++) v += pow(cnn_tensor_cdata(n)[i] - m, 2) / 20000.0;
    CHECK_NEAR(m, 1.0, 0.05);
    CHECK_NEAR(sqrt(v), 2.0, 0.05);
    float first = cnn_tensor_cdata(n)[0];
    cnn_tensor_free(&n);
    cnn_rng_set_state(seed, off);
    CHECK_OK(cnn_tensor_normal(CNN_SHAPE(1), 1.0f, 2.0f, CNN_CPU, &n));
    CHECK(cnn_tensor_cdata(n)[0] == first);
    cnn_tensor_free(&a);
    cnn_tensor_free(&b);
    cnn_tensor_free(&n);
}

TEST(contexts_are_per_thread_state)
{
    cnn_context *c1 = cnn_context_current(), *c2 = NULL;
    CHECK_OK(cnn_context_create(CNN_CPU, &c2));
    cnn_set_grad_enabled(false);
    cnn_context_set_current(c2);
    CHECK(cnn_is_grad_enabled()); /* c2 has its own grad mode */
    cnn_context_set_current(c1);
    CHECK(!cnn_is_grad_enabled());
    cnn_set_grad_enabled(true);
    cnn_context_destroy(&c2);
    CHECK(c2 == NULL);
    if (!cnn_built_with_cuda()) {
        cnn_context *g = NULL;
        CHECK_ERR(cnn_context_create(CNN_CUDA(0), &g), CNN_ERR_DEVICE);
    }
}
