/* test_linear.c — cnn_linear: forward against a naive loop, finite-difference gradients of x, w
 * and b (with and without bias, batch 1), and the shape errors with their messages. */
#include "gradcheck.h"

static cnn_status f_linear(cnn_tensor *const *in, void *ud, cnn_tensor **y)
{
    (void)ud;
    return cnn_linear(in[0], in[1], in[2], y);
}

/* Gradchecks a linear layer of the given sizes; the step is large because y is linear in each
 * input, which keeps float rounding out of the comparison. */
static int linear_grads_match(const char *what, int n, int in, int out, int bias)
{
    cnn_tensor *t[3] = {rand_tensor(CNN_SHAPE(n, in), -1, 1, 1),
                        rand_tensor(CNN_SHAPE(out, in), -1, 1, 1),
                        bias ? rand_tensor(CNN_SHAPE(out), -1, 1, 1) : NULL};
    gc_opts o = {.eps = 0.25f, .atol = 1e-3f, .rtol = 1e-3f};
    int ok = gradcheck(what, f_linear, t, 3, NULL, &o);
    for (int i = 0; i < 3; i++) cnn_tensor_free(&t[i]);
    return ok;
}

TEST(linear_gradcheck)
{
    CHECK(linear_grads_match("linear 3x5 -> 4", 3, 5, 4, 1));
    CHECK(linear_grads_match("linear no bias", 3, 5, 4, 0));
    CHECK(linear_grads_match("linear batch 1", 1, 7, 3, 1));
    CHECK(linear_grads_match("linear 1 -> 1", 2, 1, 1, 1));
}

TEST(linear_forward_matches_naive)
{
    const int sizes[][3] = {{1, 1, 1}, {3, 5, 4}, {17, 33, 9}, {64, 300, 130}};
    for (int t = 0; t < 4; t++) {
        int n = sizes[t][0], in = sizes[t][1], out = sizes[t][2];
        for (int bias = 0; bias < 2; bias++) {
            cnn_tensor *x = rand_tensor(CNN_SHAPE(n, in), -1, 1, 0);
            cnn_tensor *w = rand_tensor(CNN_SHAPE(out, in), -1, 1, 0);
            cnn_tensor *b = bias ? rand_tensor(CNN_SHAPE(out), -1, 1, 0) : NULL;
            cnn_tensor *y = NULL, *ref = NULL;
            CHECK_OK(cnn_linear(x, w, b, &y));
            REQUIRE(cnn_tensor_dim(y, 0) == n && cnn_tensor_dim(y, 1) == out);
            const float *px = cnn_tensor_cdata(x), *pw = cnn_tensor_cdata(w);
            float *yr = malloc((size_t)n * out * sizeof *yr);
            for (int i = 0; i < n; i++)
                for (int o = 0; o < out; o++) {
                    double acc = b ? cnn_tensor_cdata(b)[o] : 0;
                    for (int j = 0; j < in; j++) acc += (double)px[i * in + j] * pw[o * in + j];
                    yr[i * out + o] = (float)acc;
                }
            CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(n, out), yr, CNN_CPU, &ref));
            CHECK(tensors_close("linear forward", y, ref, 1e-4f, 1e-4f));
            free(yr);
            cnn_tensor_free(&x);
            cnn_tensor_free(&w);
            cnn_tensor_free(&b);
            cnn_tensor_free(&y);
            cnn_tensor_free(&ref);
        }
    }
}

TEST(linear_shape_errors)
{
    cnn_tensor *x = rand_tensor(CNN_SHAPE(2, 5), -1, 1, 0);
    cnn_tensor *x4 = rand_tensor(CNN_SHAPE(2, 5, 1, 1), -1, 1, 0);
    cnn_tensor *w = rand_tensor(CNN_SHAPE(3, 6), -1, 1, 0);
    cnn_tensor *w_ok = rand_tensor(CNN_SHAPE(3, 5), -1, 1, 0);
    cnn_tensor *b = rand_tensor(CNN_SHAPE(4), -1, 1, 0);
    cnn_tensor *y = NULL;
    CHECK_ERR(cnn_linear(x, w, NULL, &y), CNN_ERR_SHAPE);
    CHECK(strstr(cnn_last_error(), "(2, 5)") && strstr(cnn_last_error(), "(3, 6)"));
    CHECK_ERR(cnn_linear(x4, w_ok, NULL, &y), CNN_ERR_SHAPE);
    CHECK(strstr(cnn_last_error(), "(2, 5, 1, 1)"));
    CHECK_ERR(cnn_linear(x, b, NULL, &y), CNN_ERR_SHAPE);
    CHECK(strstr(cnn_last_error(), "weight") && strstr(cnn_last_error(), "(4)"));
    CHECK_ERR(cnn_linear(x, w_ok, b, &y), CNN_ERR_SHAPE);
    CHECK(strstr(cnn_last_error(), "(4)") && strstr(cnn_last_error(), "(3, 5)"));
    CHECK_ERR(cnn_linear(NULL, w_ok, NULL, &y), CNN_ERR_INVALID_ARG);
    CHECK_ERR(cnn_linear(x, w_ok, NULL, NULL), CNN_ERR_INVALID_ARG);
    CHECK(y == NULL);
    cnn_tensor_free(&x);
    cnn_tensor_free(&x4);
    cnn_tensor_free(&w);
    cnn_tensor_free(&w_ok);
    cnn_tensor_free(&b);
}
