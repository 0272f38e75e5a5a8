/* test_pool.c — max, average and adaptive average pooling: output sizes worked out by hand
 * (ceil_mode included), forward against naive loops written independently here, argmax routing
 * on ties, gradchecks of every configuration, and argument errors. */
#include "gradcheck.h"
#include <limits.h>

typedef struct {
    int h, w;
    cnn_pool2d_params p;
    int oh, ow; /* expected output size, worked out by hand from PyTorch's rule */
} pool_case;

static const pool_case max_cases[] = {
    {4, 4, {{3, 3}, {2, 2}, {0, 0}, {0, 0}, true, false}, 2, 2},
    /* H: the 4th window would start at 6 >= 5 + 1 (in the right padding) and is dropped. */
    {5, 7, {{2, 3}, {2, 2}, {1, 1}, {0, 0}, true, false}, 3, 4},
    {6, 5, {{3, 3}, {1, 2}, {1, 1}, {2, 2}, false, false}, 4, 2},
    {7, 6, {{3, 2}, {3, 1}, {1, 0}, {1, 2}, true, false}, 3, 4},
    {5, 5, {{2, 2}, {0, 0}, {0, 0}, {0, 0}, true, false}, 3, 3},
    {3, 5, {{1, 3}, {1, 1}, {0, 1}, {0, 0}, false, false}, 3, 5},
};

/* A (planes, h, w) tensor whose values are a scrambled permutation spaced 0.05 apart, so no
 * window has ties and a finite-difference step of 1e-2 never changes which element wins. */
static cnn_tensor *distinct_tensor(cnn_shape s, int requires_grad)
{
    int64_t n = 1;
    for (int i = 0; i < s.ndim; i++) n *= s.d[i];
    float *v = malloc((size_t)n * sizeof *v);
    for (int64_t i = 0; i < n; i++) v[i] = (float)((i * 7919) % n) * 0.05f - 0.025f * (float)n;
    cnn_tensor *t = NULL;
    if (cnn_tensor_from_data(s, v, CNN_CPU, &t) == CNN_OK && requires_grad)
        cnn_tensor_set_requires_grad(t, true);
    free(v);
    return t;
}

static int eff(int v, int dflt) { return v ? v : dflt; }

/* Naive max pooling over every kernel tap, taps outside the input skipped, first max wins. */
static void ref_max_pool(const float *x, int planes, int h, int w, const cnn_pool2d_params *p,
                         int oh, int ow, float *y)
{
    int sh = eff(p->stride[0], p->kernel[0]), sw = eff(p->stride[1], p->kernel[1]);
    int dh = eff(p->dilation[0], 1), dw = eff(p->dilation[1], 1);
    for (int pl = 0; pl < planes; pl++)
        for (int i = 0; i < oh; i++)
            for (int j = 0; j < ow; j++) {
                float best = -INFINITY;
                for (int a = 0; a < p->kernel[0]; a++)
                    for (int b = 0; b < p->kernel[1]; b++) {
                        int r = i * sh - p->padding[0] + a * dh;
                        int c = j * sw - p->padding[1] + b * dw;
                        if (r >= 0 && r < h && c >= 0 && c < w && x[(pl * h + r) * w + c] > best)
                            best = x[(pl * h + r) * w + c];
                    }
                y[(pl * oh + i) * ow + j] = best;
            }
}

/* Naive average pooling: taps inside the padded input (and not past it, which only ceil_mode
 * windows reach) count in the include-pad divisor, taps inside the input in the other. */
static void ref_avg_pool(const float *x, int planes, int h, int w, const cnn_pool2d_params *p,
                         int oh, int ow, float *y)
{
    int sh = eff(p->stride[0], p->kernel[0]), sw = eff(p->stride[1], p->kernel[1]);
    for (int pl = 0; pl < planes; pl++)
        for (int i = 0; i < oh; i++)
            for (int j = 0; j < ow; j++) {
                double s = 0;
                int in_padded = 0, in_input = 0;
                for (int a = 0; a < p->kernel[0]; a++)
                    for (int b = 0; b < p->kernel[1]; b++) {
                        int r = i * sh - p->padding[0] + a, c = j * sw - p->padding[1] + b;
                        if (r < h + p->padding[0] && c < w + p->padding[1]) in_padded++;
                        if (r >= 0 && r < h && c >= 0 && c < w) {
                            in_input++;
                            s += x[(pl * h + r) * w + c];
                        }
                    }
                int div = p->exclude_pad ? in_input : in_padded;
                y[(pl * oh + i) * ow + j] = div ? (float)(s / div) : 0.0f;
            }
}

static cnn_status f_max(cnn_tensor *const *in, void *ud, cnn_tensor **y)
{
    return cnn_max_pool2d(in[0], ud, y);
}
static cnn_status f_avg(cnn_tensor *const *in, void *ud, cnn_tensor **y)
{
    return cnn_avg_pool2d(in[0], ud, y);
}

/* Runs op on x (2, 3, h, w) for the case: size, values against ref, then a gradcheck. */
static void check_pool_case(const char *what, const pool_case *pc, gc_fn f,
                            void (*ref)(const float *, int, int, int, const cnn_pool2d_params *,
                                        int, int, float *))
{
    cnn_tensor *x = distinct_tensor(CNN_SHAPE(2, 3, pc->h, pc->w), 1), *y = NULL, *want = NULL;
    REQUIRE(x);
    CHECK_OK(f(&x, (void *)&pc->p, &y));
    int size_ok = cnn_tensor_ndim(y) == 4 && cnn_tensor_dim(y, 0) == 2 &&
                  cnn_tensor_dim(y, 1) == 3 && cnn_tensor_dim(y, 2) == pc->oh &&
                  cnn_tensor_dim(y, 3) == pc->ow;
    CHECK(size_ok);
    if (!size_ok) {
        printf("    %s %dx%d: got output %lldx%lld, expected %dx%d\n", what, pc->h, pc->w,
               (long long)cnn_tensor_dim(y, 2), (long long)cnn_tensor_dim(y, 3), pc->oh, pc->ow);
    } else {
        float *yv = malloc((size_t)(6 * pc->oh * pc->ow) * sizeof *yv);
        ref(cnn_tensor_cdata(x), 6, pc->h, pc->w, &pc->p, pc->oh, pc->ow, yv);
        CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(2, 3, pc->oh, pc->ow), yv, CNN_CPU, &want));
        free(yv);
        CHECK(tensors_close(what, y, want, 1e-5f, 1e-5f));
        CHECK(gradcheck(what, f, &x, 1, (void *)&pc->p, NULL));
    }
    cnn_tape_reset();
    cnn_tensor_free(&x);
    cnn_tensor_free(&y);
    cnn_tensor_free(&want);
}

/* A kernel of INT_MAX with padding INT_MAX / 2 over a 4x4 input: every window holds the whole
 * plane, so a (2, 3, 4, 4) output of the plane's max, as PyTorch gives (the work estimate for the
 * threading decision overflowed int64 here). */
TEST(pool_kernel_near_int_max)
{
    cnn_tensor *x = distinct_tensor(CNN_SHAPE(2, 3, 4, 4), 0), *y = NULL;
    REQUIRE(x);
    cnn_pool2d_params p = {.kernel = {INT_MAX, INT_MAX}, .stride = {1, 1},
                           .padding = {INT_MAX / 2, INT_MAX / 2}};
    CHECK_OK(cnn_max_pool2d(x, &p, &y));
    REQUIRE(y && cnn_tensor_numel(y) == 96);
    const float *px = cnn_tensor_cdata(x), *py = cnn_tensor_cdata(y);
    for (int pl = 0; pl < 6; pl++) {
        float m = px[pl * 16];
        for (int i = 1; i < 16; i++) m = fmaxf(m, px[pl * 16 + i]);
        for (int i = 0; i < 16; i++) CHECK(py[pl * 16 + i] == m);
    }
    cnn_tensor_free(&y);
    CHECK_OK(cnn_avg_pool2d(x, &p, &y));
    CHECK(y && cnn_tensor_numel(y) == 96);
    cnn_tensor_free(&y);
    cnn_tensor_free(&x);
}

TEST(maxpool_known_4x4_k3_s2_ceil)
{
    float xv[16];
    for (int i = 0; i < 16; i++) xv[i] = (float)i;
    cnn_tensor *x = NULL, *y = NULL;
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(1, 1, 4, 4), xv, CNN_CPU, &x));
    cnn_pool2d_params p = {.kernel = {3, 3}, .stride = {2, 2}, .ceil_mode = true};
    CHECK_OK(cnn_max_pool2d(x, &p, &y));
    REQUIRE(cnn_tensor_dim(y, 2) == 2 && cnn_tensor_dim(y, 3) == 2);
    const float want[4] = {10, 11, 14, 15};
    for (int i = 0; i < 4; i++) CHECK(cnn_tensor_cdata(y)[i] == want[i]);
    cnn_tensor_free(&y);
    p.ceil_mode = false;
    CHECK_OK(cnn_max_pool2d(x, &p, &y));
    REQUIRE(cnn_tensor_numel(y) == 1);
    CHECK(cnn_tensor_cdata(y)[0] == 10);
    cnn_tensor_free(&x);
    cnn_tensor_free(&y);
}

TEST(maxpool_matches_naive_and_gradchecks)
{
    for (size_t i = 0; i < sizeof max_cases / sizeof *max_cases; i++)
        check_pool_case("max_pool2d", &max_cases[i], f_max, ref_max_pool);
}

TEST(maxpool_ties_route_to_first_max_and_nan_wins)
{
    float xv[6] = {1, 1, 1, 2, 2, 0}; /* (1, 2, 3): plane 0 all ties, plane 1 a tie then less */
    cnn_tensor *x = NULL, *y = NULL, *dy = NULL;
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(2, 1, 3), xv, CNN_CPU, &x));
    CHECK_OK(cnn_tensor_set_requires_grad(x, true));
    cnn_pool2d_params p = {.kernel = {1, 2}, .stride = {1, 1}};
    CHECK_OK(cnn_max_pool2d(x, &p, &y)); /* rank 3 in, rank 3 out: (2, 1, 2) */
    REQUIRE(cnn_tensor_ndim(y) == 3 && cnn_tensor_dim(y, 2) == 2);
    CHECK_OK(cnn_tensor_ones(CNN_SHAPE(2, 1, 2), CNN_CPU, &dy));
    CHECK_OK(cnn_backward_with_grad(y, dy));
    REQUIRE(cnn_tensor_grad(x));
    const float want[6] = {1, 1, 0, 1, 1, 0};
    for (int i = 0; i < 6; i++) CHECK(cnn_tensor_cdata(cnn_tensor_grad(x))[i] == want[i]);
    cnn_tensor_free(&y);
    xv[1] = NAN;
    cnn_tensor_free(&x);
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(2, 1, 3), xv, CNN_CPU, &x));
    CHECK_OK(cnn_max_pool2d(x, &p, &y));
    CHECK(isnan(cnn_tensor_cdata(y)[0]) && isnan(cnn_tensor_cdata(y)[1]));
    CHECK(cnn_tensor_cdata(y)[2] == 2);
    cnn_tensor_free(&x);
    cnn_tensor_free(&y);
    cnn_tensor_free(&dy);
}

TEST(maxpool_window_over_padding_only_gives_minus_inf_and_no_gradient)
{
    /* kernel 2, padding 1, dilation 3 over H = 2: the one window's taps sit at rows -1 and 2,
     * both outside the input (PyTorch also yields -inf here). */
    cnn_tensor *x = rand_tensor(CNN_SHAPE(1, 1, 2, 2), -1, 1, 1), *y = NULL, *dy = NULL;
    REQUIRE(x);
    cnn_pool2d_params p = {
        .kernel = {2, 1}, .stride = {1, 1}, .padding = {1, 0}, .dilation = {3, 1}};
    CHECK_OK(cnn_max_pool2d(x, &p, &y));
    REQUIRE(cnn_tensor_dim(y, 2) == 1 && cnn_tensor_dim(y, 3) == 2);
    CHECK(isinf(cnn_tensor_cdata(y)[0]) && cnn_tensor_cdata(y)[0] < 0);
    CHECK(isinf(cnn_tensor_cdata(y)[1]) && cnn_tensor_cdata(y)[1] < 0);
    CHECK_OK(cnn_tensor_ones(CNN_SHAPE(1, 1, 1, 2), CNN_CPU, &dy));
    CHECK_OK(cnn_backward_with_grad(y, dy));
    REQUIRE(cnn_tensor_grad(x));
    for (int i = 0; i < 4; i++) CHECK(cnn_tensor_cdata(cnn_tensor_grad(x))[i] == 0);
    cnn_tensor_free(&x);
    cnn_tensor_free(&y);
    cnn_tensor_free(&dy);
}

static const pool_case avg_cases[] = {
    {4, 4, {{3, 3}, {2, 2}, {1, 1}, {0, 0}, true, false}, 3, 3},
    {4, 4, {{3, 3}, {2, 2}, {1, 1}, {0, 0}, true, true}, 3, 3},
    {5, 7, {{2, 3}, {2, 2}, {1, 1}, {0, 0}, true, false}, 3, 4},
    {5, 7, {{2, 3}, {2, 2}, {1, 1}, {0, 0}, false, true}, 3, 4},
    {6, 5, {{3, 2}, {1, 0}, {1, 0}, {0, 0}, false, false}, 6, 2},
    {5, 5, {{2, 2}, {0, 0}, {0, 0}, {0, 0}, true, false}, 3, 3},
    {7, 3, {{4, 3}, {3, 1}, {2, 1}, {0, 0}, true, true}, 3, 3},
    /* 2x2 at stride 2 inside the input: the fast path (an odd last row and column left out) */
    {6, 8, {{2, 2}, {2, 2}, {0, 0}, {0, 0}, false, false}, 3, 4},
    {7, 9, {{2, 2}, {0, 0}, {0, 0}, {0, 0}, false, true}, 3, 4},
    /* 2x2 at stride 2 with ceil_mode on one odd axis only: the last row (column) of windows
     * runs past the input, so not the fast path */
    {5, 6, {{2, 2}, {0, 0}, {0, 0}, {0, 0}, true, false}, 3, 3},
    {6, 5, {{2, 2}, {0, 0}, {0, 0}, {0, 0}, true, true}, 3, 3},
};

/* The 2x2 fast path gives the bits of the generic loops' order: (((x00 + x01) + x10) + x11) / 4
 * summed in double forward, dy / 4 to each covered pixel (0 elsewhere) backward, on a batch
 * large enough for the threaded loops. */
TEST(avgpool_2x2_fast_path_bits)
{
    const int64_t n = 64, c = 6, h = 29, w = 27, oh = 14, ow = 13;
    cnn_tensor *x = rand_tensor(CNN_SHAPE(n, c, h, w), -1, 1, 1), *y = NULL;
    cnn_pool2d_params p = {.kernel = {2, 2}};
    CHECK_OK(cnn_avg_pool2d(x, &p, &y));
    REQUIRE(cnn_tensor_dim(y, 2) == oh && cnn_tensor_dim(y, 3) == ow);
    cnn_tensor *dy = rand_tensor(cnn_tensor_shape(y), -1, 1, 0);
    CHECK_OK(cnn_backward_with_grad(y, dy));
    const float *xv = cnn_tensor_cdata(x), *yv = cnn_tensor_cdata(y), *dyv = cnn_tensor_cdata(dy);
    const float *dx = cnn_tensor_cdata(cnn_tensor_grad(x));
    int bad = 0;
    for (int64_t pl = 0; pl < n * c; pl++)
        for (int64_t i = 0; i < h; i++)
            for (int64_t j = 0; j < w; j++) {
                const float *xp = xv + pl * h * w;
                const int64_t a = i / 2, b = j / 2;
                const bool in = a < oh && b < ow;
                if (in && i % 2 == 0 && j % 2 == 0) {
                    double s = 0;
                    s += xp[i * w + j];
                    s += xp[i * w + j + 1];
                    s += xp[(i + 1) * w + j];
                    s += xp[(i + 1) * w + j + 1];
                    bad += yv[(pl * oh + a) * ow + b] != (float)(s / 4);
                }
                const float share = in ? dyv[(pl * oh + a) * ow + b] / 4.0f : 0.0f;
                bad += dx[pl * h * w + i * w + j] != share;
            }
    CHECK(bad == 0);
    cnn_tensor_free(&x);
    cnn_tensor_free(&y);
    cnn_tensor_free(&dy);
}

TEST(avgpool_known_ceil_divisors)
{
    /* PyTorch's avg_pool2d(ones(1, 1, 4, 4), 3, 2, 1, ceil_mode=True): windows are clipped to
     * the padded input before the divisor is taken, so the last row/column divides by 6 or 4. */
    cnn_tensor *x = NULL, *y = NULL;
    CHECK_OK(cnn_tensor_ones(CNN_SHAPE(1, 1, 4, 4), CNN_CPU, &x));
    cnn_pool2d_params p = {.kernel = {3, 3}, .stride = {2, 2}, .padding = {1, 1},
                           .ceil_mode = true};
    CHECK_OK(cnn_avg_pool2d(x, &p, &y));
    REQUIRE(cnn_tensor_dim(y, 2) == 3 && cnn_tensor_dim(y, 3) == 3);
    const double want[9] = {4.0 / 9, 6.0 / 9, 2.0 / 6,
                            6.0 / 9, 1.0,     3.0 / 6,
                            2.0 / 6, 3.0 / 6, 1.0 / 4};
    for (int i = 0; i < 9; i++) CHECK_NEAR(cnn_tensor_cdata(y)[i], want[i], 1e-6);
    cnn_tensor_free(&y);
    p.exclude_pad = true; /* count_include_pad=False: every window averages only ones */
    CHECK_OK(cnn_avg_pool2d(x, &p, &y));
    for (int i = 0; i < 9; i++) CHECK_NEAR(cnn_tensor_cdata(y)[i], 1.0, 1e-6);
    cnn_tensor_free(&x);
    cnn_tensor_free(&y);
}

TEST(avgpool_matches_naive_and_gradchecks)
{
    for (size_t i = 0; i < sizeof avg_cases / sizeof *avg_cases; i++)
        check_pool_case("avg_pool2d", &avg_cases[i], f_avg, ref_avg_pool);
}

TEST(adaptive_non_divisible_5x7_to_3x2)
{
    float xv[35];
    for (int i = 0; i < 35; i++) xv[i] = (float)(i * i % 11);
    cnn_tensor *x = NULL, *y = NULL;
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(1, 1, 5, 7), xv, CNN_CPU, &x));
    CHECK_OK(cnn_adaptive_avg_pool2d(x, 3, 2, &y));
    REQUIRE(cnn_tensor_dim(y, 2) == 3 && cnn_tensor_dim(y, 3) == 2);
    /* start = floor(i * in / out), end = ceil((i + 1) * in / out), by hand: */
    const int rows[3][2] = {{0, 2}, {1, 4}, {3, 5}}, cols[2][2] = {{0, 4}, {3, 7}};
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 2; j++) {
            double s = 0;
            int n = 0;
            for (int r = rows[i][0]; r < rows[i][1]; r++)
                for (int c = cols[j][0]; c < cols[j][1]; c++, n++) s += xv[r * 7 + c];
            CHECK_NEAR(cnn_tensor_cdata(y)[i * 2 + j], s / n, 1e-5);
        }
    cnn_tensor_free(&x);
    cnn_tensor_free(&y);
}

TEST(adaptive_global_and_divisible_match_mean_and_avgpool)
{
    cnn_tensor *x = rand_tensor(CNN_SHAPE(2, 3, 4, 6), -1, 1, 0), *y = NULL, *a = NULL;
    REQUIRE(x);
    CHECK_OK(cnn_adaptive_avg_pool2d(x, 1, 1, &y));
    REQUIRE(cnn_tensor_numel(y) == 6 && cnn_tensor_dim(y, 2) == 1);
    for (int pl = 0; pl < 6; pl++) {
        double s = 0;
        for (int i = 0; i < 24; i++) s += cnn_tensor_cdata(x)[pl * 24 + i];
        CHECK_NEAR(cnn_tensor_cdata(y)[pl], s / 24, 1e-6);
    }
    cnn_tensor_free(&y);
    CHECK_OK(cnn_adaptive_avg_pool2d(x, 2, 3, &y));
    cnn_pool2d_params p = {.kernel = {2, 2}};
    CHECK_OK(cnn_avg_pool2d(x, &p, &a));
    CHECK(tensors_close("adaptive 4x6->2x3 vs avg_pool 2x2", y, a, 1e-6f, 1e-6f));
    cnn_tensor_free(&x);
    cnn_tensor_free(&y);
    cnn_tensor_free(&a);
}

static cnn_status f_adaptive(cnn_tensor *const *in, void *ud, cnn_tensor **y)
{
    const int *o = ud;
    return cnn_adaptive_avg_pool2d(in[0], o[0], o[1], y);
}

TEST(adaptive_gradcheck)
{
    const int outs[4][2] = {{3, 2}, {1, 1}, {4, 5}, {2, 7}};
    cnn_tensor *x = rand_tensor(CNN_SHAPE(2, 2, 5, 7), -1, 1, 1);
    for (int i = 0; i < 4; i++)
        CHECK(gradcheck("adaptive_avg_pool2d", f_adaptive, &x, 1, (void *)outs[i], NULL));
    cnn_tensor_free(&x);
    cnn_tensor *x3 = rand_tensor(CNN_SHAPE(3, 3, 3), -1, 1, 1); /* (C, H, W), upsampling to 5x4 */
    int up[2] = {5, 4};
    CHECK(gradcheck("adaptive_avg_pool2d rank 3", f_adaptive, &x3, 1, up, NULL));
    cnn_tensor_free(&x3);
}

TEST(pool_errors)
{
    cnn_tensor *x = rand_tensor(CNN_SHAPE(1, 2, 4, 4), -1, 1, 0);
    cnn_tensor *x2 = rand_tensor(CNN_SHAPE(4, 4), -1, 1, 0);
    cnn_tensor *y = NULL;
    REQUIRE(x && x2);
    cnn_pool2d_params ok = {.kernel = {2, 2}};
    CHECK_ERR(cnn_max_pool2d(NULL, &ok, &y), CNN_ERR_INVALID_ARG);
    CHECK_ERR(cnn_max_pool2d(x, NULL, &y), CNN_ERR_INVALID_ARG);
    CHECK_ERR(cnn_max_pool2d(x, &ok, NULL), CNN_ERR_INVALID_ARG);
    CHECK_ERR(cnn_max_pool2d(x2, &ok, &y), CNN_ERR_SHAPE);
    CHECK(strstr(cnn_last_error(), "max_pool2d") && strstr(cnn_last_error(), "(4, 4)"));
    cnn_pool2d_params pad = {.kernel = {3, 3}, .padding = {2, 0}};
    CHECK_ERR(cnn_max_pool2d(x, &pad, &y), CNN_ERR_INVALID_ARG);
    CHECK(strstr(cnn_last_error(), "half"));
    CHECK_ERR(cnn_avg_pool2d(x, &pad, &y), CNN_ERR_INVALID_ARG);
    cnn_pool2d_params pad_w = {.kernel = {3, 3}, .padding = {0, 2}}; /* the width's rule too */
    CHECK_ERR(cnn_max_pool2d(x, &pad_w, &y), CNN_ERR_INVALID_ARG);
    CHECK(strstr(cnn_last_error(), "padding (0, 2)"));
    CHECK_ERR(cnn_avg_pool2d(x, &pad_w, &y), CNN_ERR_INVALID_ARG);
    cnn_pool2d_params big = {.kernel = {5, 5}, .padding = {0, 0}};
    CHECK_ERR(cnn_max_pool2d(x, &big, &y), CNN_ERR_SHAPE);
    CHECK(strstr(cnn_last_error(), "(1, 2, 4, 4)"));
    CHECK_ERR(cnn_avg_pool2d(x, &big, &y), CNN_ERR_SHAPE);
    cnn_pool2d_params dil = {.kernel = {2, 2}, .dilation = {4, 4}};
    CHECK_ERR(cnn_max_pool2d(x, &dil, &y), CNN_ERR_SHAPE); /* effective kernel 5 > 4 */
    cnn_pool2d_params dil2 = {.kernel = {2, 2}, .dilation = {2, 2}};
    CHECK_OK(cnn_max_pool2d(x, &dil2, &y));
    cnn_tensor_free(&y);
    CHECK_ERR(cnn_avg_pool2d(x, &dil2, &y), CNN_ERR_INVALID_ARG);
    cnn_pool2d_params neg = {.kernel = {2, 2}, .stride = {-1, 1}};
    CHECK_ERR(cnn_max_pool2d(x, &neg, &y), CNN_ERR_INVALID_ARG);
    cnn_pool2d_params zero = {.kernel = {0, 2}};
    CHECK_ERR(cnn_avg_pool2d(x, &zero, &y), CNN_ERR_INVALID_ARG);
    CHECK_ERR(cnn_adaptive_avg_pool2d(x, -1, 2, &y), CNN_ERR_INVALID_ARG);
    CHECK_OK(cnn_adaptive_avg_pool2d(x, 0, 2, &y)); /* 0 is a size: empty, as torch's forward */
    CHECK(y && cnn_tensor_dim(y, 1) == 2 && cnn_tensor_dim(y, 2) == 0 && cnn_tensor_dim(y, 3) == 2);
    cnn_tensor_free(&y);
    CHECK_ERR(cnn_adaptive_avg_pool2d(x2, 1, 1, &y), CNN_ERR_SHAPE);
    CHECK_ERR(cnn_adaptive_avg_pool2d(NULL, 1, 1, &y), CNN_ERR_INVALID_ARG);
    CHECK(y == NULL);
    cnn_tensor_free(&x);
    cnn_tensor_free(&x2);
}

/* Big enough for the OpenMP paths: forward against the naive loops, sampled gradchecks. */
TEST(pool_large_parallel_matches_naive)
{
    const cnn_pool2d_params mp = {{3, 3}, {2, 2}, {1, 1}, {0, 0}, false, false};
    const cnn_pool2d_params ap = {{3, 3}, {2, 2}, {1, 1}, {0, 0}, false, true};
    cnn_tensor *x = distinct_tensor(CNN_SHAPE(2, 8, 40, 41), 1), *y = NULL, *want = NULL;
    REQUIRE(x);
    float *yv = malloc((size_t)(16 * 20 * 21) * sizeof *yv);
    gc_opts o = {.max_checks = 40};
    for (int k = 0; k < 2; k++) {
        const cnn_pool2d_params *p = k ? &ap : &mp;
        (k ? ref_avg_pool : ref_max_pool)(cnn_tensor_cdata(x), 16, 40, 41, p, 20, 21, yv);
        CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(2, 8, 20, 21), yv, CNN_CPU, &want));
        CHECK_OK((k ? cnn_avg_pool2d : cnn_max_pool2d)(x, p, &y));
        CHECK(tensors_close(k ? "avg_pool2d large" : "max_pool2d large", y, want, 1e-5f, 1e-5f));
        CHECK(gradcheck("pool large", k ? f_avg : f_max, &x, 1, (void *)p, &o));
        cnn_tensor_free(&y);
        cnn_tensor_free(&want);
    }
    int out[2] = {7, 9};
    CHECK(gradcheck("adaptive large", f_adaptive, &x, 1, out, &o));
    free(yv);
    cnn_tensor_free(&x);
}

/* Naive max pooling with PyTorch's argmax rule (`v > best || isnan(v)`, taps in row-major
 * order): y and the gradient dy routes back, dx[argmax] += dy. */
static void ref_max_pool_route(const float *x, int h, int w, const cnn_pool2d_params *p, int oh,
                               int ow, const float *dy, float *y, float *dx)
{
    int sh = eff(p->stride[0], p->kernel[0]), sw = eff(p->stride[1], p->kernel[1]);
    int dh = eff(p->dilation[0], 1), dw = eff(p->dilation[1], 1);
    memset(dx, 0, sizeof(float) * (size_t)(h * w));
    for (int i = 0; i < oh; i++)
        for (int j = 0; j < ow; j++) {
            float best = -INFINITY;
            int bi = -1;
            for (int a = 0; a < p->kernel[0]; a++)
                for (int b = 0; b < p->kernel[1]; b++) {
                    int r = i * sh - p->padding[0] + a * dh, c = j * sw - p->padding[1] + b * dw;
                    if (r < 0 || r >= h || c < 0 || c >= w) continue;
                    float v = x[r * w + c];
                    if (bi < 0) bi = r * w + c; /* the first tap, kept if nothing beats -inf */
                    if (v > best || isnan(v)) {
                        best = v;
                        bi = r * w + c;
                    }
                }
            y[i * ow + j] = best;
            if (bi >= 0) dx[bi] += dy[i * ow + j];
        }
}

/* Rows wide enough for several vectorised runs of outputs (and their scalar borders), values
 * from a few levels so that windows tie, with NaNs and -infs: y bit for bit and the argmax
 * (through the gradient, each dy distinct) against the naive loops, over strides, paddings,
 * dilations and ceil mode. */
TEST(maxpool_runs_match_naive_with_ties_nan_and_inf)
{
    const cnn_pool2d_params ps[] = {
        {{3, 3}, {2, 2}, {1, 1}, {0, 0}, false, false},
        {{2, 2}, {2, 2}, {0, 0}, {0, 0}, false, false},
        {{3, 3}, {1, 1}, {1, 1}, {0, 0}, false, false},
        {{2, 3}, {1, 3}, {1, 1}, {1, 2}, true, false},
        {{1, 4}, {1, 3}, {0, 2}, {1, 1}, true, false},
        {{3, 2}, {2, 1}, {0, 1}, {2, 1}, false, false},
    };
    const int h = 9, w = 203;
    float *xv = malloc(sizeof(float) * h * w), *yv = malloc(sizeof(float) * h * w);
    float *dyv = malloc(sizeof(float) * h * w), *dxv = malloc(sizeof(float) * h * w);
    uint64_t s = 12345;
    for (int i = 0; i < h * w; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        int r = (int)(s >> 59); /* 0..31 */
        xv[i] = r == 0 ? NAN : r == 1 ? -INFINITY : (float)(r % 4);
    }
    for (size_t c = 0; c < sizeof ps / sizeof *ps; c++) {
        cnn_tensor *x = NULL, *y = NULL, *dy = NULL;
        REQUIRE(cnn_tensor_from_data(CNN_SHAPE(1, 1, h, w), xv, CNN_CPU, &x) == CNN_OK);
        CHECK_OK(cnn_tensor_set_requires_grad(x, true));
        CHECK_OK(cnn_max_pool2d(x, &ps[c], &y));
        REQUIRE(y);
        int oh = (int)cnn_tensor_dim(y, 2), ow = (int)cnn_tensor_dim(y, 3);
        for (int i = 0; i < oh * ow; i++) dyv[i] = (float)(i + 1);
        ref_max_pool_route(xv, h, w, &ps[c], oh, ow, dyv, yv, dxv);
        int bad = 0;
        for (int i = 0; i < oh * ow; i++) {
            float got = cnn_tensor_cdata(y)[i];
            bad += isnan(yv[i]) ? !isnan(got) : memcmp(&got, &yv[i], sizeof got) != 0;
        }
        CHECK(bad == 0);
        CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(1, 1, oh, ow), dyv, CNN_CPU, &dy));
        CHECK_OK(cnn_backward_with_grad(y, dy));
        REQUIRE(cnn_tensor_grad(x));
        int bad_dx = 0;
        for (int i = 0; i < h * w; i++) bad_dx += cnn_tensor_cdata(cnn_tensor_grad(x))[i] != dxv[i];
        CHECK(bad_dx == 0);
        if (bad || bad_dx)
            fprintf(stderr, "  case %zu: %d outputs, %d gradients differ\n", c, bad, bad_dx);
        cnn_tensor_free(&x);
        cnn_tensor_free(&y);
        cnn_tensor_free(&dy);
    }
    free(xv);
    free(yv);
    free(dyv);
    free(dxv);
}
