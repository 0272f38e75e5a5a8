/* test_conv_edges.c — cnn_conv2d at its edges: a non-contiguous input and NULL params, padding
 * that would overflow int, the refused shapes with their messages (of the fused op too), and an
 * inf weight's data gradient as torch gives it. The conv's values and gradients: test_conv.c. */
#include "gradcheck.h"

TEST(conv2d_non_contiguous_input_and_defaults)
{
    /* A transposed view must give the same result as its contiguous copy; NULL params means
     * stride 1, padding 0, dilation 1, groups 1. */
    cnn_tensor *base = rand_tensor(CNN_SHAPE(2, 3, 5, 6), -1, 1, 0);
    cnn_tensor *w = rand_tensor(CNN_SHAPE(4, 3, 2, 2), -1, 1, 0);
    cnn_tensor *xt = NULL, *xc = NULL, *y1 = NULL, *y2 = NULL, *y3 = NULL;
    cnn_conv2d_params zero = {.groups = 1};
    CHECK_OK(cnn_tensor_transpose(base, 2, 3, &xt));
    CHECK_OK(cnn_tensor_clone(xt, &xc));
    CHECK_OK(cnn_conv2d(xt, w, NULL, &zero, &y1));
    CHECK_OK(cnn_conv2d(xc, w, NULL, &zero, &y2));
    CHECK_OK(cnn_conv2d(xc, w, NULL, NULL, &y3));
    CHECK(cnn_tensor_dim(y1, 2) == 5 && cnn_tensor_dim(y1, 3) == 4);
    CHECK(tensors_close("transposed view", y1, y2, 0, 0));
    CHECK(tensors_close("NULL params", y3, y2, 0, 0));
    cnn_tensor_free(&base);
    cnn_tensor_free(&w);
    cnn_tensor_free(&xt);
    cnn_tensor_free(&xc);
    cnn_tensor_free(&y1);
    cnn_tensor_free(&y2);
    cnn_tensor_free(&y3);
}

static int msg_has(const char *a, const char *b)
{
    const char *m = cnn_last_error();
    int ok = strstr(m, "conv2d") && strstr(m, a) && (!b || strstr(m, b));
    if (!ok) printf("    unexpected message: %s\n", m);
    return ok;
}

/* Padding of 2^30 doubles past int: the output size is worked out in int64, and the call is
 * refused as too large (it was undefined behaviour, and in a release build a wrong reason). The
 * message names the padding and the output it gives, and the documented limit: a 64x64 kernel
 * over a 788x788 image unfolds to 4096 x 525625 values per image, past 2^31 - 1. */
TEST(conv2d_huge_padding_is_too_large_not_an_overflow)
{
    cnn_tensor *x = rand_tensor(CNN_SHAPE(1, 1, 5, 5), -1, 1, 0);
    cnn_tensor *w = rand_tensor(CNN_SHAPE(1, 1, 3, 3), -1, 1, 0), *y = NULL;
    REQUIRE(x && w);
    cnn_conv2d_params p = {.padding = {1 << 30, 0}};
    CHECK_ERR(cnn_conv2d(x, w, NULL, &p, &y), CNN_ERR_UNSUPPORTED);
    CHECK(y == NULL && strstr(cnn_last_error(), "padding (1073741824, 0)") &&
          strstr(cnn_last_error(), "gives a 2147483651 x 3 output"));
    cnn_tensor_free(&x);
    cnn_tensor_free(&w);

    x = rand_tensor(CNN_SHAPE(1, 1, 788, 788), -1, 1, 0);
    w = rand_tensor(CNN_SHAPE(1, 1, 64, 64), -1, 1, 0);
    REQUIRE(x && w);
    CHECK_ERR(cnn_conv2d(x, w, NULL, NULL, &y), CNN_ERR_UNSUPPORTED);
    CHECK(y == NULL && strstr(cnn_last_error(), "gives a 725 x 725 output") &&
          strstr(cnn_last_error(), "(4096 x 525625 values)") &&
          strstr(cnn_last_error(), "2^31 - 1"));
    cnn_tensor_free(&x);
    cnn_tensor_free(&w);
}

TEST(conv2d_shape_errors)
{
    cnn_tensor *x = rand_tensor(CNN_SHAPE(2, 3, 8, 8), -1, 1, 0);
    cnn_tensor *w64 = rand_tensor(CNN_SHAPE(64, 64, 3, 3), -1, 1, 0);
    cnn_tensor *x3 = rand_tensor(CNN_SHAPE(3, 8, 8), -1, 1, 0);
    cnn_tensor *w = rand_tensor(CNN_SHAPE(4, 3, 3, 3), -1, 1, 0);
    cnn_tensor *w6 = rand_tensor(CNN_SHAPE(6, 1, 3, 3), -1, 1, 0);
    cnn_tensor *wbig = rand_tensor(CNN_SHAPE(4, 3, 9, 3), -1, 1, 0);
    cnn_tensor *b5 = rand_tensor(CNN_SHAPE(5), -1, 1, 0);
    cnn_tensor *y = NULL;
    cnn_conv2d_params p = {.padding = {1, 1}};

    CHECK_ERR(cnn_conv2d(x, w64, NULL, &p, &y), CNN_ERR_SHAPE);
    CHECK(msg_has("(2, 3, 8, 8)", "(64, 64, 3, 3)") && msg_has("3 channels", "expects 64"));
    CHECK_ERR(cnn_conv2d(x3, w, NULL, &p, &y), CNN_ERR_SHAPE);
    CHECK(msg_has("(3, 8, 8)", "4-D"));
    CHECK_ERR(cnn_conv2d(x, x3, NULL, &p, &y), CNN_ERR_SHAPE);
    CHECK(msg_has("(3, 8, 8)", "weight"));
    CHECK_ERR(cnn_conv2d(x, wbig, NULL, NULL, &y), CNN_ERR_SHAPE); /* 8 rows < 9-tall window */
    CHECK(msg_has("(2, 3, 8, 8)", "(4, 3, 9, 3)"));
    cnn_conv2d_params dil = {.dilation = {4, 1}};                  /* window 9 rows tall */
    CHECK_ERR(cnn_conv2d(x, w, NULL, &dil, &y), CNN_ERR_SHAPE);
    CHECK(msg_has("(2, 3, 8, 8)", "(4, 3, 3, 3)"));
    cnn_conv2d_params g4 = {.groups = 4};                          /* 6 output channels */
    CHECK_ERR(cnn_conv2d(x, w6, NULL, &g4, &y), CNN_ERR_SHAPE);
    CHECK(msg_has("(6, 1, 3, 3)", "groups 4"));
    cnn_conv2d_params g2 = {.groups = 2};                          /* 3 input channels */
    CHECK_ERR(cnn_conv2d(x, w6, NULL, &g2, &y), CNN_ERR_SHAPE);
    CHECK(msg_has("(2, 3, 8, 8)", "groups 2"));
    CHECK_ERR(cnn_conv2d(x, w, b5, &p, &y), CNN_ERR_SHAPE);
    CHECK(msg_has("(5)", "(4, 3, 3, 3)"));
    cnn_tensor *x4 = rand_tensor(CNN_SHAPE(1, 4, 8, 8), -1, 1, 0); /* 4 = 1 per group x 4 */
    REQUIRE(x4);
    CHECK_ERR(cnn_conv2d(x4, w6, NULL, &g4, &y), CNN_ERR_SHAPE);
    CHECK(msg_has("6 output channels", "not divisible by groups 4"));
    cnn_tensor_free(&x4);
    cnn_conv2d_params gneg = {.groups = -3};
    CHECK_ERR(cnn_conv2d(x, w6, NULL, &gneg, &y), CNN_ERR_INVALID_ARG);
    CHECK(msg_has("groups -3 is negative", NULL));
    cnn_conv2d_params neg = {.stride = {-1, 1}};
    CHECK_ERR(cnn_conv2d(x, w, NULL, &neg, &y), CNN_ERR_INVALID_ARG);
    CHECK_ERR(cnn_conv2d(NULL, w, NULL, &p, &y), CNN_ERR_INVALID_ARG);
    CHECK_ERR(cnn_conv2d(x, NULL, NULL, &p, &y), CNN_ERR_INVALID_ARG);
    CHECK_ERR(cnn_conv2d(x, w, NULL, &p, NULL), CNN_ERR_INVALID_ARG);
    CHECK(y == NULL);
    CHECK(cnn_tape_size() == 0);

    cnn_tensor_free(&x);
    cnn_tensor_free(&w64);
    cnn_tensor_free(&x3);
    cnn_tensor_free(&w);
    cnn_tensor_free(&w6);
    cnn_tensor_free(&wbig);
    cnn_tensor_free(&b5);
}

TEST(conv2d_fused_errors)
{
    cnn_tensor *x = rand_tensor(CNN_SHAPE(2, 3, 8, 8), -1, 1, 0);
    cnn_tensor *w = rand_tensor(CNN_SHAPE(4, 3, 3, 3), -1, 1, 0);
    cnn_tensor *z_bad = rand_tensor(CNN_SHAPE(2, 4, 6, 6), -1, 1, 0); /* unpadded output size */
    cnn_tensor *z = rand_tensor(CNN_SHAPE(2, 4, 8, 8), -1, 1, 0), *y = NULL;
    cnn_conv2d_params p = {.padding = {1, 1}};
    CHECK_ERR(cnn_conv2d_fused(x, w, NULL, z_bad, CNN_ACT_RELU, &p, &y), CNN_ERR_SHAPE);
    CHECK(msg_has("z (2, 4, 6, 6)", "(2, 4, 8, 8)"));
    cnn_tensor *z_t = rand_tensor(CNN_SHAPE(4, 2, 8, 8), -1, 1, 0); /* as many elements */
    REQUIRE(z_t);
    CHECK_ERR(cnn_conv2d_fused(x, w, NULL, z_t, CNN_ACT_NONE, &p, &y), CNN_ERR_SHAPE);
    CHECK(msg_has("z (4, 2, 8, 8)", "(2, 4, 8, 8)"));
    cnn_tensor_free(&z_t);
    CHECK_ERR(cnn_conv2d_fused(x, w, NULL, z, (cnn_activation)7, &p, &y), CNN_ERR_INVALID_ARG);
    CHECK(msg_has("activation 7", NULL));
    CHECK_ERR(cnn_conv2d_fused(x, z, NULL, NULL, CNN_ACT_RELU, &p, &y), CNN_ERR_SHAPE);
    CHECK_ERR(cnn_conv2d_fused(x, w, NULL, z, CNN_ACT_RELU, &p, NULL), CNN_ERR_INVALID_ARG);
    CHECK(y == NULL);
    CHECK(cnn_tape_size() == 0);
    /* z alone (no activation) and NULL params work too */
    CHECK_OK(cnn_conv2d_fused(x, w, NULL, z, CNN_ACT_NONE, &p, &y));
    CHECK(cnn_tensor_dim(y, 1) == 4 && cnn_tensor_dim(y, 3) == 8);
    cnn_tensor_free(&y);
    cnn_tensor_free(&x);
    cnn_tensor_free(&w);
    cnn_tensor_free(&z);
    cnn_tensor_free(&z_bad);
}

/* An inf weight: dx sums w * dy over the outputs that exist only, so (torch 1.13, with and
 * without mkldnn) x (1, 16, 3, 3) of ones, w zero but w[0, 0, 0, 0] = inf, padding 1, dy ones
 * give dx[0, 0] = (inf, inf, 0, inf, inf, 0, 0, 0, 0) and 0 elsewhere. The stride-1 "dx as a
 * conv of padded dy" path (16+ channels) also multiplied that weight by dy's zero padding
 * (inf * 0 = NaN) and has to step aside for non-finite weights. */
TEST(conv2d_inf_weight_data_grad_as_torch)
{
    static float xv[16 * 9], wv[16 * 9];
    const float dyv[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    for (int i = 0; i < 16 * 9; i++) xv[i] = 1.0f;
    wv[0] = INFINITY;
    cnn_tensor *x = NULL, *w = NULL, *y = NULL, *dy = NULL;
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(1, 16, 3, 3), xv, CNN_CPU, &x));
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(1, 16, 3, 3), wv, CNN_CPU, &w));
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(1, 1, 3, 3), dyv, CNN_CPU, &dy));
    CHECK_OK(cnn_tensor_set_requires_grad(x, true));
    const cnn_conv2d_params p = {.padding = {1, 1}};
    CHECK_OK(cnn_conv2d(x, w, NULL, &p, &y));
    CHECK_OK(cnn_backward_with_grad(y, dy));
    REQUIRE(cnn_tensor_grad(x));
    const float *g = cnn_tensor_cdata(cnn_tensor_grad(x));
    const bool inf0[9] = {1, 1, 0, 1, 1, 0, 0, 0, 0};
    int bad = 0;
    for (int i = 0; i < 16 * 9; i++)
        bad += i < 9 && inf0[i] ? !(isinf(g[i]) && g[i] > 0) : g[i] != 0.0f;
    CHECK(bad == 0);
    cnn_tensor_free(&x);
    cnn_tensor_free(&w);
    cnn_tensor_free(&y);
    cnn_tensor_free(&dy);
}
