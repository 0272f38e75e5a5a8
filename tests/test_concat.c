/* test_concat.c — concat along dims 0, 1 and -1 of inputs with different sizes: values by index,
 * gradchecks along each (with an input that needs no gradient and a non-contiguous one), legacy
 * (0,) inputs left out as in PyTorch, and errors. */
#include "gradcheck.h"

/* True when y == concat(xs, dim), element by element over y's row-major index. */
static int concat_matches(cnn_tensor *const *xs, int dim, const cnn_tensor *y)
{
    cnn_shape ys = cnn_tensor_shape(y);
    int64_t idx[4] = {0}, total = cnn_tensor_numel(y);
    const float *yv = cnn_tensor_cdata(y);
    if (!yv) return 0;
    for (int64_t e = 0; e < total; e++) {
        int64_t r = e;
        for (int i = ys.ndim - 1; i >= 0; i--) {
            idx[i] = r % ys.d[i];
            r /= ys.d[i];
        }
        int k = 0;
        int64_t along = idx[dim];
        while (along >= cnn_tensor_dim(xs[k], dim)) along -= cnn_tensor_dim(xs[k++], dim);
        cnn_shape xsh = cnn_tensor_shape(xs[k]);
        int64_t off = 0;
        for (int i = 0; i < ys.ndim; i++) off = off * xsh.d[i] + (i == dim ? along : idx[i]);
        if (yv[e] != cnn_tensor_cdata(xs[k])[off]) return 0;
    }
    return 1;
}

static void free3(cnn_tensor **t)
{
    for (int i = 0; i < 3; i++) cnn_tensor_free(&t[i]);
}

TEST(concat_values_dims_0_1_last)
{
    cnn_tensor *c[3] = {rand_tensor(CNN_SHAPE(2, 1, 3, 2), -1, 1, 0),
                        rand_tensor(CNN_SHAPE(2, 4, 3, 2), -1, 1, 0),
                        rand_tensor(CNN_SHAPE(2, 2, 3, 2), -1, 1, 0)};
    cnn_tensor *r[3] = {rand_tensor(CNN_SHAPE(1, 3), -1, 1, 0),
                        rand_tensor(CNN_SHAPE(2, 3), -1, 1, 0),
                        rand_tensor(CNN_SHAPE(3, 3), -1, 1, 0)};
    cnn_tensor *l[3] = {rand_tensor(CNN_SHAPE(3, 2, 1), -1, 1, 0),
                        rand_tensor(CNN_SHAPE(3, 2, 5), -1, 1, 0),
                        rand_tensor(CNN_SHAPE(3, 2, 2), -1, 1, 0)};
    cnn_tensor *y = NULL;
    REQUIRE(c[0] && c[1] && c[2] && r[0] && r[1] && r[2] && l[0] && l[1] && l[2]);
    CHECK_OK(cnn_concat((const cnn_tensor *const *)c, 3, 1, &y));
    CHECK(has_shape(y, CNN_SHAPE(2, 7, 3, 2)) && concat_matches(c, 1, y));
    cnn_tensor_free(&y);
    CHECK_OK(cnn_concat((const cnn_tensor *const *)r, 3, 0, &y));
    CHECK(has_shape(y, CNN_SHAPE(6, 3)) && concat_matches(r, 0, y));
    cnn_tensor_free(&y);
    CHECK_OK(cnn_concat((const cnn_tensor *const *)l, 3, -1, &y));
    CHECK(has_shape(y, CNN_SHAPE(3, 2, 8)) && concat_matches(l, 2, y));
    cnn_tensor_free(&y);
    /* One input: a copy of it. */
    CHECK_OK(cnn_concat((const cnn_tensor *const *)c, 1, 1, &y));
    CHECK(has_shape(y, CNN_SHAPE(2, 1, 3, 2)) && y != c[0] && concat_matches(c, 1, y));
    cnn_tensor_free(&y);
    CHECK(cnn_tape_size() == 0);
    free3(c);
    free3(r);
    free3(l);
}

TEST(concat_large_channels_threaded)
{
    /* Above the OpenMP threshold, and a non-contiguous input (a transposed view). */
    cnn_tensor *a = rand_tensor(CNN_SHAPE(8, 32, 16, 16), -1, 1, 0);
    cnn_tensor *bt = rand_tensor(CNN_SHAPE(8, 16, 16, 48), -1, 1, 0);
    cnn_tensor *b = NULL, *bc = NULL, *y = NULL;
    REQUIRE(a && bt);
    CHECK_OK(cnn_tensor_transpose(bt, 1, 3, &b)); /* (8, 48, 16, 16) */
    CHECK_OK(cnn_tensor_contiguous(b, &bc));
    const cnn_tensor *xs[2] = {a, b};
    CHECK_OK(cnn_concat(xs, 2, 1, &y));
    cnn_tensor *ref[2] = {a, bc};
    CHECK(has_shape(y, CNN_SHAPE(8, 80, 16, 16)) && concat_matches(ref, 1, y));
    cnn_tensor_free(&a);
    cnn_tensor_free(&b);
    cnn_tensor_free(&bc);
    cnn_tensor_free(&bt);
    cnn_tensor_free(&y);
}

TEST(concat_same_tensor_twice_sums_gradients)
{
    cnn_tensor *a = rand_tensor(CNN_SHAPE(2, 3), -1, 1, 1), *y = NULL, *s = NULL;
    REQUIRE(a);
    const cnn_tensor *xs[3] = {a, a, a};
    CHECK_OK(cnn_concat(xs, 3, 0, &y));
    CHECK_OK(cnn_sum(y, &s));
    CHECK_OK(cnn_backward(s));
    REQUIRE(cnn_tensor_grad(a));
    for (int i = 0; i < 6; i++) CHECK(cnn_tensor_cdata(cnn_tensor_grad(a))[i] == 3.0f);
    cnn_tensor_free(&a);
    cnn_tensor_free(&y);
    cnn_tensor_free(&s);
}

static cnn_status f_concat(cnn_tensor *const *in, void *ud, cnn_tensor **y)
{
    int dim = *(const int *)ud;
    cnn_tensor *t = NULL;
    /* Input 2 arrives as a transposed view of a tensor stored the other way round. */
    cnn_status st = cnn_tensor_transpose(in[2], 2, 3, &t);
    const cnn_tensor *xs[3] = {in[0], in[1], t};
    if (st == CNN_OK) st = cnn_concat(xs, 3, dim, y);
    cnn_tensor_free(&t);
    return st;
}

TEST(concat_gradcheck)
{
    /* dim 1: channels 1, 3, 2; input 1 needs no gradient and must get none. */
    int dim = 1;
    cnn_tensor *in[3] = {rand_tensor(CNN_SHAPE(2, 1, 3, 4), -1, 1, 1),
                         rand_tensor(CNN_SHAPE(2, 3, 3, 4), -1, 1, 0),
                         rand_tensor(CNN_SHAPE(2, 2, 4, 3), -1, 1, 1)};
    REQUIRE(in[0] && in[1] && in[2]);
    CHECK(gradcheck("concat dim 1", f_concat, in, 3, &dim, NULL));
    CHECK(cnn_tensor_grad(in[1]) == NULL);
    free3(in);
    /* dim 0: batches 2, 1, 3, every input requiring grad. */
    dim = 0;
    cnn_tensor *b[3] = {rand_tensor(CNN_SHAPE(2, 2, 3, 4), -1, 1, 1),
                        rand_tensor(CNN_SHAPE(1, 2, 3, 4), -1, 1, 1),
                        rand_tensor(CNN_SHAPE(3, 2, 4, 3), -1, 1, 1)};
    REQUIRE(b[0] && b[1] && b[2]);
    CHECK(gradcheck("concat dim 0", f_concat, b, 3, &dim, NULL));
    free3(b);
    /* dim -1 (the last): widths 1, 2, 3 (the third transposed from (2, 3, 3, 2)). The backward
     * takes the dim as normalised: read as given, it indexed the shape at -1. */
    dim = -1;
    cnn_tensor *c[3] = {rand_tensor(CNN_SHAPE(2, 3, 2, 1), -1, 1, 1),
                        rand_tensor(CNN_SHAPE(2, 3, 2, 2), -1, 1, 1),
                        rand_tensor(CNN_SHAPE(2, 3, 3, 2), -1, 1, 1)};
    REQUIRE(c[0] && c[1] && c[2]);
    CHECK(gradcheck("concat dim -1", f_concat, c, 3, &dim, NULL));
    free3(c);
}

/* PyTorch's legacy rule: a (0,) tensor is left out whatever the others' shapes (its gradient
 * is a (0,) tensor); only (0,) tensors give (0,) along any dim; a (0, 3) is not one of them. */
TEST(concat_leaves_out_legacy_empty_vectors)
{
    cnn_tensor *x = rand_tensor(CNN_SHAPE(2, 3, 4, 4), -1, 1, 1), *e = NULL, *z = NULL;
    cnn_tensor *e2 = NULL, *y = NULL, *s = NULL;
    CHECK_OK(cnn_tensor_empty(CNN_SHAPE(0), CNN_F32, CNN_CPU, &e));
    CHECK_OK(cnn_tensor_empty(CNN_SHAPE(0), CNN_F32, CNN_CPU, &z));
    CHECK_OK(cnn_tensor_empty(CNN_SHAPE(0, 3), CNN_F32, CNN_CPU, &e2));
    REQUIRE(x && e && z && e2);
    CHECK_OK(cnn_tensor_set_requires_grad(e, true));
    const cnn_tensor *xs[4] = {e, x, z, x};
    CHECK_OK(cnn_concat(xs, 4, 1, &y));
    REQUIRE(y);
    CHECK(shape_eq(cnn_tensor_shape(y), CNN_SHAPE(2, 6, 4, 4)));
    cnn_tensor *const xx[2] = {x, x};
    CHECK(concat_matches(xx, 1, y));
    CHECK_OK(cnn_sum(y, &s));
    CHECK_OK(cnn_backward(s));
    REQUIRE(cnn_tensor_grad(x) && cnn_tensor_grad(e));
    CHECK(shape_eq(cnn_tensor_shape(cnn_tensor_grad(e)), CNN_SHAPE(0)));
    for (int i = 0; i < 96; i++) CHECK(cnn_tensor_cdata(cnn_tensor_grad(x))[i] == 2.0f);
    cnn_tensor_free(&y);
    cnn_tensor_free(&s);
    const cnn_tensor *ee[2] = {e, z}, *ex[2] = {e2, x};
    CHECK_OK(cnn_concat(ee, 2, 5, &y));
    CHECK(y && shape_eq(cnn_tensor_shape(y), CNN_SHAPE(0)));
    cnn_tensor_free(&y);
    CHECK_ERR(cnn_concat(ex, 2, 1, &y), CNN_ERR_SHAPE);
    CHECK(strstr(cnn_last_error(), "xs[1] (2, 3, 4, 4) has rank 4 but xs[0] (0, 3) has rank 2"));
    const cnn_tensor *zx[2] = {z, x};
    CHECK_ERR(cnn_concat(zx, 2, 4, &y), CNN_ERR_SHAPE);
    CHECK(strstr(cnn_last_error(), "dim 4 is out of range for (2, 3, 4, 4)"));
    CHECK(y == NULL);
    cnn_tensor *all[4] = {x, e, z, e2};
    for (int i = 0; i < 4; i++) cnn_tensor_free(&all[i]);
}

TEST(concat_errors)
{
    cnn_tensor *a = rand_tensor(CNN_SHAPE(2, 3, 4, 4), -1, 1, 0);
    cnn_tensor *b = rand_tensor(CNN_SHAPE(2, 5, 4, 5), -1, 1, 0);
    cnn_tensor *c = rand_tensor(CNN_SHAPE(2, 3, 16), -1, 1, 0), *s = NULL, *y = NULL;
    cnn_tensor *d = rand_tensor(CNN_SHAPE(3, 3, 4, 4), -1, 1, 0);
    REQUIRE(a && b && c && d);
    CHECK_OK(cnn_tensor_full(CNN_SCALAR, 1.0f, CNN_CPU, &s));
    const cnn_tensor *ab[2] = {a, b}, *ac[2] = {a, c}, *an[2] = {a, NULL}, *ss[2] = {s, s};
    CHECK_ERR(cnn_concat(ab, 2, 1, &y), CNN_ERR_SHAPE);
    CHECK(strstr(cnn_last_error(), "xs[1] (2, 5, 4, 5)") &&
          strstr(cnn_last_error(), "(2, 3, 4, 4)") && strstr(cnn_last_error(), "dim 3"));
    CHECK_ERR(cnn_concat(ac, 2, 1, &y), CNN_ERR_SHAPE);
    CHECK(strstr(cnn_last_error(), "rank 3") && strstr(cnn_last_error(), "rank 4"));
    CHECK_ERR(cnn_concat(ab, 2, 4, &y), CNN_ERR_SHAPE);
    CHECK(strstr(cnn_last_error(), "dim 4"));
    CHECK_ERR(cnn_concat(ab, 2, -5, &y), CNN_ERR_SHAPE);
    const cnn_tensor *cc[2] = {c, c}, *ad[2] = {a, d};
    CHECK_ERR(cnn_concat(cc, 2, 3, &y), CNN_ERR_SHAPE); /* one past the last dim */
    CHECK(strstr(cnn_last_error(), "dim 3 is out of range for (2, 3, 16)"));
    CHECK_ERR(cnn_concat(ad, 2, 1, &y), CNN_ERR_SHAPE); /* the batch differs */
    CHECK(strstr(cnn_last_error(), "differ in dim 0"));
    CHECK_ERR(cnn_concat(an, 2, 1, &y), CNN_ERR_INVALID_ARG);
    CHECK(strstr(cnn_last_error(), "xs[1]"));
    CHECK_ERR(cnn_concat(ab, 0, 1, &y), CNN_ERR_INVALID_ARG);
    CHECK_ERR(cnn_concat(NULL, 2, 1, &y), CNN_ERR_INVALID_ARG);
    CHECK_ERR(cnn_concat(ss, 2, 0, &y), CNN_ERR_SHAPE);
    CHECK(strstr(cnn_last_error(), "scalar"));
    /* Empty tensors may be long along dim 1: 64 of 2^58 add up to 2^64, which an int64 size
     * cannot hold (it wrapped to 0: a (0, 0) result). */
    cnn_tensor *e = NULL;
    CHECK_OK(cnn_tensor_empty(CNN_SHAPE(0, (int64_t)1 << 58), CNN_F32, CNN_CPU, &e));
    REQUIRE(e);
    const cnn_tensor *es[64];
    for (int i = 0; i < 64; i++) es[i] = e;
    CHECK_ERR(cnn_concat(es, 64, 1, &y), CNN_ERR_SHAPE);
    CHECK(strstr(cnn_last_error(), "dim 1") && strstr(cnn_last_error(), "2^63"));
    cnn_tensor_free(&e);
    CHECK(y == NULL);
    cnn_tensor_free(&a);
    cnn_tensor_free(&b);
    cnn_tensor_free(&c);
    cnn_tensor_free(&d);
    cnn_tensor_free(&s);
}
