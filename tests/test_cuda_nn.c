/* test_cuda_nn.c — pooling, batch norm and LRN on the GPU against the CPU reference, through
 * the public ops, once with the hand-written kernels (CNN_BACKEND_CUDA) and once with cuDNN where
 * it applies (CNN_BACKEND_CUDNN): forward, every gradient, BN running stats, on fresh random
 * inputs of awkward shapes. GPU outputs start as NaN (see poison_cache). Linear (cuBLAS):
 * test_cuda_linear.c. */
#include "gpu_parity.h"

#include <limits.h>
#include <stdint.h>

/* ---- pooling ------------------------------------------------------------------------------ */
typedef struct pool_ud {
    int kind; /* 0 max, 1 avg, 2 adaptive */
    cnn_pool2d_params p;
    int oh, ow;
} pool_ud;

static cnn_status pool_f(cnn_tensor *const *in, void *ud, cnn_tensor **y)
{
    const pool_ud *u = ud;
    if (u->kind == 0) return cnn_max_pool2d(in[0], &u->p, y);
    if (u->kind == 1) return cnn_avg_pool2d(in[0], &u->p, y);
    return cnn_adaptive_avg_pool2d(in[0], u->oh, u->ow, y);
}

/* The GPU kernels repeat the CPU's operations in the CPU's order (the gather backward sums the
 * windows in the order the CPU scatters them), and cuDNN differs at most by rounding of one
 * division: a tight tolerance. */
#define POOL_ATOL 1e-6f
#define POOL_RTOL 1e-5f

static void pool_case(const char *name, cnn_shape s, int kind, cnn_pool2d_params p)
{
    pool_ud u = {kind, p, 0, 0};
    gp_case oc = {name, pool_f, &u, 1, {s}, {false}, -2, 2, POOL_ATOL, POOL_RTOL};
    gpu_parity_both(&oc);
}

static void adaptive_case(const char *name, cnn_shape s, int oh, int ow)
{
    pool_ud u = {.kind = 2, .oh = oh, .ow = ow};
    gp_case oc = {name, pool_f, &u, 1, {s}, {false}, -2, 2, POOL_ATOL, POOL_RTOL};
    gpu_parity_both(&oc);
}

#define PP(kh, kw, sh, sw, ph, pw, dh, dw, ceil, excl)                                            \
    ((cnn_pool2d_params){{kh, kw}, {sh, sw}, {ph, pw}, {dh, dw}, ceil, excl})

GPU_TEST(cuda_max_pool_matches_cpu)
{
    pool_case("max 3x3/2 pad 1", CNN_SHAPE(2, 5, 13, 11), 0,
              PP(3, 3, 2, 2, 1, 1, 0, 0, 0, 0));
    pool_case("max 2x2 default stride", CNN_SHAPE(1, 3, 9, 8), 0,
              PP(2, 2, 0, 0, 0, 0, 0, 0, 0, 0));
    pool_case("max 3x3/2 ceil_mode", CNN_SHAPE(2, 4, 14, 9), 0,
              PP(3, 3, 2, 2, 0, 0, 0, 0, 1, 0));
    pool_case("max ceil_mode pad 1", CNN_SHAPE(1, 3, 10, 7), 0,
              PP(3, 2, 2, 2, 1, 1, 0, 0, 1, 0));
    pool_case("max dilation 2", CNN_SHAPE(2, 3, 12, 13), 0,
              PP(3, 3, 1, 2, 1, 1, 2, 2, 0, 0));
    pool_case("max overlapping 3x3/1", CNN_SHAPE(1, 2, 7, 6), 0,
              PP(3, 3, 1, 1, 1, 1, 0, 0, 0, 0));
    pool_case("max (C, H, W) input", CNN_SHAPE(6, 11, 10), 0,
              PP(2, 3, 2, 1, 1, 0, 0, 0, 0, 0));
    pool_case("max 520 channels", CNN_SHAPE(1, 520, 7, 7), 0,
              PP(3, 3, 2, 2, 1, 1, 0, 0, 0, 0));
    /* a stride of 2^30 takes the kernels' 64-bit indexing (pool.cu's use_int32) */
    pool_case("max stride 2^30", CNN_SHAPE(1, 3, 5, 4), 0, PP(2, 2, 1 << 30, 1, 0, 0, 0, 0, 0, 0));
}

GPU_TEST(cuda_avg_pool_matches_cpu)
{
    pool_case("avg 3x3/2 pad 1 incl", CNN_SHAPE(2, 5, 13, 11), 1,
              PP(3, 3, 2, 2, 1, 1, 0, 0, 0, 0));
    pool_case("avg 3x3/2 pad 1 excl", CNN_SHAPE(2, 5, 13, 11), 1,
              PP(3, 3, 2, 2, 1, 1, 0, 0, 0, 1));
    pool_case("avg 2x2", CNN_SHAPE(1, 3, 9, 8), 1,
              PP(2, 2, 0, 0, 0, 0, 0, 0, 0, 0));
    pool_case("avg ceil_mode incl", CNN_SHAPE(2, 3, 10, 7), 1,
              PP(3, 3, 2, 2, 1, 1, 0, 0, 1, 0));
    pool_case("avg ceil_mode excl", CNN_SHAPE(2, 3, 10, 7), 1,
              PP(3, 3, 2, 2, 1, 1, 0, 0, 1, 1));
    pool_case("avg asymmetric", CNN_SHAPE(1, 4, 9, 12), 1,
              PP(2, 4, 1, 3, 1, 2, 0, 0, 0, 1));
    pool_case("avg 513 channels", CNN_SHAPE(1, 513, 5, 6), 1,
              PP(2, 2, 2, 2, 0, 0, 0, 0, 1, 0));
    pool_case("avg stride 2^30", CNN_SHAPE(1, 3, 5, 4), 1, PP(2, 2, 1, 1 << 30, 1, 1, 0, 0, 0, 1));
}

/* Windows far past int: a 46341x46341 average's divisor (2^31.0000...) overflowed the 32-bit
 * kernel and came out negative, and INT_MAX windows are beyond cuDNN's int descriptors (both
 * backends then take the 64-bit kernels). The values are ~1e-8, so the bound is relative only. */
GPU_TEST(cuda_pool_windows_past_int)
{
    const cnn_pool2d_params wide[3] = {PP(46341, 46341, 1, 1, 23170, 23170, 0, 0, 0, 0),
                                       PP(INT_MAX, INT_MAX, 1, 1, INT_MAX / 2, INT_MAX / 2, 0, 0,
                                          0, 0),
                                       PP(INT_MAX, INT_MAX, 1, 1, INT_MAX / 2, INT_MAX / 2, 0, 0,
                                          0, 0)};
    const int kinds[3] = {1, 1, 0};
    for (int i = 0; i < 3; i++) {
        pool_ud u = {kinds[i], wide[i], 0, 0};
        gp_case oc = {i == 0 ? "avg 46341^2 window" : i == 1 ? "avg INT_MAX window"
                                                             : "max INT_MAX window",
                      pool_f, &u, 1, {CNN_SHAPE(1, 2, 4, 4)}, {false}, 0.5f, 2, 0.0f, 1e-5f};
        gpu_parity_both(&oc);
    }
}

GPU_TEST(cuda_adaptive_avg_pool_matches_cpu)
{
    adaptive_case("adaptive 13x11 -> 5x4", CNN_SHAPE(2, 3, 13, 11), 5, 4);
    adaptive_case("adaptive global", CNN_SHAPE(1, 600, 7, 7), 1, 1);
    adaptive_case("adaptive upsampling 3x2 -> 7x5", CNN_SHAPE(2, 2, 3, 2), 7, 5);
    adaptive_case("adaptive (C, H, W) 6x6", CNN_SHAPE(4, 15, 9), 6, 6);
}

/* got against ref element by element: both NaN, or equal (the infinities), or
 * |got - ref| <= atol + rtol * |ref|. tensors_close counts NaN and inf as mismatches. */
static int same_or_close(const char *what, const cnn_tensor *got, const cnn_tensor *ref,
                         float atol, float rtol)
{
    const int64_t n = cnn_tensor_numel(ref);
    const size_t sz = (size_t)(n ? n : 1) * sizeof(float);
    float *a = malloc(sz), *b = malloc(sz);
    int bad = !a || !b || !got || cnn_tensor_numel(got) != n ||
              cnn_tensor_read(got, a, (size_t)n) != CNN_OK ||
              cnn_tensor_read(ref, b, (size_t)n) != CNN_OK;
    for (int64_t i = 0; !bad && i < n; i++) {
        const bool ok = (isnan(a[i]) && isnan(b[i])) || a[i] == b[i] ||
                        fabsf(a[i] - b[i]) <= atol + rtol * fabsf(b[i]);
        if (!ok) {
            printf("    %s: [%lld] got %.7g expected %.7g\n", what, (long long)i, a[i], b[i]);
            bad = 1;
        }
    }
    free(a);
    free(b);
    return !bad;
}

/* Max pooling where the maximum is not unique or not a number: values on a grid of 0.5 (many
 * tied maxima), a few NaNs, and a corner of -inf that fills a padded window. The CPU's rules
 * (PyTorch's): y is the first maximum in window order, NaN where the window holds one, -inf for
 * a window of -inf, and the gradient goes to that element (the first of tied maxima, the NaN,
 * the first -inf). Random inputs have no ties, NaN or -inf, so the cases above cannot tell
 * these rules apart. Hand-written kernels only: cuDNN documents no choice among ties. */
GPU_TEST(cuda_max_pool_ties_nan_and_minus_inf_as_cpu)
{
    const cnn_shape s = CNN_SHAPE(2, 3, 9, 8);
    const cnn_pool2d_params ps[] = {PP(3, 3, 2, 2, 1, 1, 0, 0, 0, 0),
                                    PP(3, 3, 1, 2, 1, 1, 2, 2, 0, 0)};
    const int64_t n = 2 * 3 * 9 * 8;
    float v[2 * 3 * 9 * 8];
    cnn_tensor *r = rand_tensor(s, -2, 2, 0);
    REQUIRE(r && cnn_tensor_read(r, v, (size_t)n) == CNN_OK);
    cnn_tensor_free(&r);
    for (int64_t i = 0; i < n; i++) v[i] = i % 37 == 5 ? NAN : roundf(2 * v[i]) / 2;
    for (int h = 0; h < 2; h++)
        for (int w = 0; w < 2; w++) v[h * 8 + w] = -INFINITY; /* plane 0's top-left corner */
    for (size_t k = 0; k < sizeof ps / sizeof *ps; k++) {
        cnn_tensor *xc = NULL, *xg = NULL, *yc = NULL, *yg = NULL, *dc = NULL, *dg = NULL;
        CHECK_OK(cnn_tensor_from_data(s, v, CNN_CPU, &xc));
        CHECK_OK(cnn_tensor_set_requires_grad(xc, true));
        CHECK_OK(cnn_max_pool2d(xc, &ps[k], &yc));
        dc = rand_tensor(cnn_tensor_shape(yc), -1, 1, 0);
        xg = to_gpu(xc);
        dg = to_gpu(dc);
        REQUIRE(xg && dg);
        CHECK_OK(cnn_backward_with_grad(yc, dc));
        cnn_set_backend(CNN_BACKEND_CUDA);
        cnn_shape shapes[2] = {cnn_tensor_shape(yc), s};
        poison_cache(shapes, 2);
        cnn_status st = cnn_max_pool2d(xg, &ps[k], &yg);
        poison_cache(shapes, 2);
        if (st == CNN_OK) st = cnn_backward_with_grad(yg, dg);
        cnn_set_backend(CNN_BACKEND_AUTO);
        CHECK_OK(st);
        char what[64];
        snprintf(what, sizeof what, "max pool ties/NaN/-inf, params %zu: y", k);
        CHECK(same_or_close(what, yg, yc, POOL_ATOL, POOL_RTOL));
        snprintf(what, sizeof what, "max pool ties/NaN/-inf, params %zu: dx", k);
        CHECK(same_or_close(what, cnn_tensor_grad(xg), cnn_tensor_grad(xc), POOL_ATOL, POOL_RTOL));
        cnn_tensor *all[] = {xc, xg, yc, yg, dc, dg};
        for (size_t i = 0; i < sizeof all / sizeof *all; i++) cnn_tensor_free(&all[i]);
    }
}

/* ---- LRN ---------------------------------------------------------------------------------- */
typedef struct lrn_ud {
    int size;
    float alpha, beta, k;
} lrn_ud;

static cnn_status lrn_f(cnn_tensor *const *in, void *ud, cnn_tensor **y)
{
    const lrn_ud *u = ud;
    return cnn_lrn(in[0], u->size, u->alpha, u->beta, u->k, y);
}

/* Same operations and order as the CPU; only powf may differ by an ulp or two. */
#define LRN_ATOL 1e-5f
#define LRN_RTOL 1e-4f

static void lrn_case(const char *name, cnn_shape s, lrn_ud u)
{
    gp_case oc = {name, lrn_f, &u, 1, {s}, {false}, -2, 2, LRN_ATOL, LRN_RTOL};
    gpu_parity_both(&oc);
}

GPU_TEST(cuda_lrn_matches_cpu)
{
    lrn_case("lrn AlexNet 5", CNN_SHAPE(2, 13, 9, 7), (lrn_ud){5, 1e-4f, 0.75f, 2.0f});
    lrn_case("lrn even size 4", CNN_SHAPE(1, 6, 5, 5), (lrn_ud){4, 0.5f, 0.75f, 1.0f});
    lrn_case("lrn (N, C, L), size > C", CNN_SHAPE(3, 5, 11), (lrn_ud){7, 2.0f, 0.6f, 1.5f});
    lrn_case("lrn 520 channels", CNN_SHAPE(1, 520, 3, 3), (lrn_ud){5, 1e-4f, 0.75f, 2.0f});
}

/* A finite-difference check on the GPU itself (gradcheck reads and writes device tensors). */
GPU_TEST(cuda_lrn_and_avg_pool_gradcheck_on_gpu)
{
    lrn_ud u = {3, 0.3f, 0.75f, 1.0f};
    cnn_tensor *c = rand_tensor(CNN_SHAPE(2, 5, 3, 4), -1, 1, 1);
    cnn_tensor *g = to_gpu(c);
    REQUIRE(g);
    gc_opts o = {.eps = 1e-2f, .atol = 2e-3f, .rtol = 2e-2f};
    CHECK(gradcheck("lrn on cuda", lrn_f, &g, 1, &u, &o));
    pool_ud pu = {1, PP(3, 3, 2, 2, 1, 1, 0, 0, 1, 1), 0, 0};
    cnn_set_backend(CNN_BACKEND_CUDA);
    CHECK(gradcheck("avg_pool2d on cuda", pool_f, &g, 1, &pu, &o));
    cnn_set_backend(CNN_BACKEND_AUTO);
    cnn_tensor_free(&c);
    cnn_tensor_free(&g);
}

/* ---- batch norm --------------------------------------------------------------------------- */
typedef struct bn_ud {
    bool training;
    float momentum, eps;
    cnn_tensor *rm, *rv; /* on the device of the run, or NULL */
} bn_ud;

static cnn_status bn_f(cnn_tensor *const *in, void *ud, cnn_tensor **y)
{
    bn_ud *u = ud;
    return cnn_batch_norm(in[0], u->rm, u->rv, in[1], in[2], u->training, u->momentum, u->eps, y);
}

/* Statistics are double sums on both sides (cuDNN: its own float reductions), so the outputs
 * agree to a few float roundings of O(1) values; running stats are O(1) as well. */
#define BN_ATOL 1e-4f
#define BN_RTOL 1e-3f

typedef struct bn_case {
    const char *name;
    cnn_shape x;
    bool affine, bias, running, training;
    float eps;
} bn_case;

/* One case: CPU, then GPU with `backend`, on the same fresh inputs and running stats, comparing
 * y, the running stats after the update, dx, dweight and dbias. */
static void bn_run(const bn_case *bc, cnn_backend backend)
{
    char what[160];
    snprintf(what, sizeof what, "%s [%s]", bc->name, gpu_backend_name(backend));
    int64_t c = bc->x.d[1];
    cnn_tensor *cx[3] = {0}, *gx[3] = {0}, *cy = NULL, *gy = NULL, *cdy = NULL, *gdy = NULL;
    bn_ud cu = {bc->training, 0.1f, bc->eps, NULL, NULL}, gu = cu;
    if (bc->running || !bc->training) {
        cu.rm = rand_tensor(CNN_SHAPE(c), -0.5f, 0.5f, 0);
        cu.rv = rand_tensor(CNN_SHAPE(c), 0.5f, 1.5f, 0);
        gu.rm = to_gpu(cu.rm);
        gu.rv = to_gpu(cu.rv);
    }
    cx[0] = rand_tensor(bc->x, -1, 3, 1);
    if (bc->affine) cx[1] = rand_tensor(CNN_SHAPE(c), 0.5f, 1.5f, 1);
    if (bc->bias) cx[2] = rand_tensor(CNN_SHAPE(c), -1, 1, 1);
    for (int i = 0; i < 3; i++) gx[i] = to_gpu(cx[i]);
    cdy = rand_tensor(bc->x, -1, 1, 0);
    gdy = to_gpu(cdy);
    if (!gx[0] || !gdy || (bc->affine && !gx[1]) || (bc->bias && !gx[2]) || (cu.rm && !gu.rv)) {
        cnn_test_fail(__FILE__, __LINE__, "%s: setup: %s", what, cnn_last_error());
        goto done;
    }
    cnn_set_backend(CNN_BACKEND_AUTO);
    if (bn_f(cx, &cu, &cy) != CNN_OK || cnn_backward_with_grad(cy, cdy) != CNN_OK) {
        cnn_test_fail(__FILE__, __LINE__, "%s: CPU reference: %s", what, cnn_last_error());
        goto done;
    }
    cnn_set_backend(backend);
    cnn_shape shapes[2] = {bc->x, CNN_SHAPE(4, c)};
    poison_cache(shapes, 2);
    if (bn_f(gx, &gu, &gy) != CNN_OK) {
        cnn_test_fail(__FILE__, __LINE__, "%s: GPU forward: %s", what, cnn_last_error());
        goto done;
    }
    gpu_check_close(what, "y", gy, cy, BN_ATOL, BN_RTOL);
    if (cu.rm) {
        gpu_check_close(what, "running_mean", gu.rm, cu.rm, 1e-5f, 1e-4f);
        gpu_check_close(what, "running_var", gu.rv, cu.rv, 1e-5f, 1e-4f);
    }
    poison_cache(shapes, 2);
    if (cnn_backward_with_grad(gy, gdy) != CNN_OK) {
        cnn_test_fail(__FILE__, __LINE__, "%s: GPU backward: %s", what, cnn_last_error());
        goto done;
    }
    const char *names[3] = {"dx", "dweight", "dbias"};
    for (int i = 0; i < 3; i++)
        if (cx[i])
            gpu_check_close(what, names[i], cnn_tensor_grad(gx[i]), cnn_tensor_grad(cx[i]),
                            BN_ATOL, BN_RTOL);
done:
    cnn_set_backend(CNN_BACKEND_AUTO);
    for (int i = 0; i < 3; i++) {
        cnn_tensor_free(&cx[i]);
        cnn_tensor_free(&gx[i]);
    }
    cnn_tensor_free(&cy);
    cnn_tensor_free(&gy);
    cnn_tensor_free(&cdy);
    cnn_tensor_free(&gdy);
    cnn_tensor_free(&cu.rm);
    cnn_tensor_free(&cu.rv);
    cnn_tensor_free(&gu.rm);
    cnn_tensor_free(&gu.rv);
}

GPU_TEST(cuda_batch_norm_matches_cpu)
{
    const bn_case cases[] = {
        {"bn train 4-D affine", CNN_SHAPE(3, 5, 7, 9), true, true, true, true, 1e-5f},
        {"bn train batch 1", CNN_SHAPE(1, 7, 5, 3), true, true, true, true, 1e-5f},
        {"bn train (N, C)", CNN_SHAPE(9, 13), true, true, true, true, 1e-5f},
        {"bn train (N, C, L) no affine", CNN_SHAPE(4, 6, 11), false, false, true, true, 1e-3f},
        {"bn train weight only", CNN_SHAPE(2, 3, 5, 5), true, false, false, true, 1e-5f},
        {"bn train 520 channels", CNN_SHAPE(2, 520, 3, 3), true, true, true, true, 1e-5f},
        {"bn train long channel", CNN_SHAPE(8, 3, 33, 31), true, true, true, true, 1e-5f},
        /* A channel's sums split over blocks (cuda/batchnorm.cu): 10 splits whose bounds fall
         * inside rows, and one channel in 45 splits. */
        {"bn train split mid-row", CNN_SHAPE(4, 2, 100, 101), true, true, true, true, 1e-5f},
        {"bn train one channel 45 splits", CNN_SHAPE(2, 1, 300, 301), true, true, true, true,
         1e-5f},
        {"bn eval split channel", CNN_SHAPE(4, 2, 100, 101), true, true, true, false, 1e-5f},
        {"bn eval 4-D", CNN_SHAPE(3, 5, 7, 9), true, true, true, false, 1e-5f},
        {"bn eval (N, C) no affine", CNN_SHAPE(5, 17), false, false, true, false, 1e-5f},
        {"bn train eps 0", CNN_SHAPE(3, 4, 5, 6), true, true, true, true, 0.0f},
        /* eps comparable to the variance (about 1.3 for x uniform in [-1, 3), 0.5 to 1.5 for
         * the running one): whether it is added under the square root shows, as 1e-5 cannot */
        {"bn train eps 0.5", CNN_SHAPE(3, 4, 5, 6), true, true, true, true, 0.5f},
        {"bn eval eps 0.5", CNN_SHAPE(3, 4, 5, 6), true, true, true, false, 0.5f},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        bn_run(&cases[i], CNN_BACKEND_CUDA);
        bn_run(&cases[i], CNN_BACKEND_CUDNN);
    }
}

/* Batch norm of a view whose storage goes on past it, NaN there: the statistics and the
 * backward's sums read each channel's n * inner values and nothing after them (a split's end is
 * clamped to its channel's; here 45 splits of 4014 would reach 30 values past the end). A
 * tensor of its own hides such a read in the allocator's slack. Forward, running stats, and the
 * weight and bias gradients (the backward's sums over x) against the CPU on the same view. */
GPU_TEST(cuda_batch_norm_reads_nothing_past_its_input)
{
    enum { C = 1, H = 300, W = 301, PLANE = C * H * W };
    float *v = malloc(3 * (size_t)PLANE * sizeof *v);
    cnn_tensor *r = rand_tensor(CNN_SHAPE(3, C, H, W), -1, 3, 0), *bigc = NULL, *bigg = NULL;
    REQUIRE(v && r && cnn_tensor_read(r, v, 3 * (size_t)PLANE) == CNN_OK);
    for (int i = 2 * PLANE; i < 3 * PLANE; i++) v[i] = NAN; /* the sample past the view */
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(3, C, H, W), v, CNN_CPU, &bigc));
    free(v);
    cnn_tensor_free(&r);
    REQUIRE(bigc && (bigg = to_gpu(bigc)) != NULL);
    cnn_tensor *xc = NULL, *xg = NULL, *yc = NULL, *yg = NULL;
    cnn_tensor *dc = rand_tensor(CNN_SHAPE(2, C, H, W), -1, 1, 0);
    cnn_tensor *wc = rand_tensor(CNN_SHAPE(C), 0.5f, 1.5f, 1);
    cnn_tensor *bc = rand_tensor(CNN_SHAPE(C), -1, 1, 1);
    cnn_tensor *wg = to_gpu(wc), *bg = to_gpu(bc), *dg = to_gpu(dc);
    bn_ud cu = {true, 0.1f, 1e-5f, rand_tensor(CNN_SHAPE(C), -0.5f, 0.5f, 0),
                rand_tensor(CNN_SHAPE(C), 0.5f, 1.5f, 0)};
    bn_ud gu = {true, 0.1f, 1e-5f, to_gpu(cu.rm), to_gpu(cu.rv)};
    CHECK_OK(cnn_tensor_narrow(bigc, 0, 0, 2, &xc));
    CHECK_OK(cnn_tensor_narrow(bigg, 0, 0, 2, &xg));
    REQUIRE(xc && xg && wg && bg && dg && gu.rm && gu.rv);
    cnn_tensor *inc[3] = {xc, wc, bc}, *ing[3] = {xg, wg, bg};
    CHECK_OK(bn_f(inc, &cu, &yc));
    CHECK_OK(cnn_backward_with_grad(yc, dc));
    cnn_set_backend(CNN_BACKEND_CUDA);
    cnn_status st = bn_f(ing, &gu, &yg);
    if (st == CNN_OK) st = cnn_backward_with_grad(yg, dg);
    cnn_set_backend(CNN_BACKEND_AUTO);
    CHECK_OK(st);
    const char *what = "bn of a view followed by NaN";
    gpu_check_close(what, "y", yg, yc, BN_ATOL, BN_RTOL);
    gpu_check_close(what, "running_mean", gu.rm, cu.rm, 1e-5f, 1e-4f);
    gpu_check_close(what, "running_var", gu.rv, cu.rv, 1e-5f, 1e-4f);
    gpu_check_close(what, "dweight", cnn_tensor_grad(wg), cnn_tensor_grad(wc), BN_ATOL, BN_RTOL);
    gpu_check_close(what, "dbias", cnn_tensor_grad(bg), cnn_tensor_grad(bc), BN_ATOL, BN_RTOL);
    cnn_tensor *all[] = {bigc, bigg, xc, xg, yc, yg, dc, dg, wc, wg, bc, bg,
                         cu.rm, cu.rv, gu.rm, gu.rv};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) cnn_tensor_free(&all[i]);
}

/* Where cuDNN declines (a NOT_SUPPORTED status, as a real cuDNN may for a shape, an alignment
 * or a GPU it has no engine for), batch norm and pooling run the hand-written kernels instead of
 * failing (those statuses were CNN_ERR_CUDA, which the layers do not fall back from). The
 * emulated cuDNN declines on request; on a GPU this runs as the cuDNN cases above. */
GPU_TEST(cuda_bn_and_pool_fall_back_where_cudnn_declines)
{
    setenv("CNN_EMU_CUDNN_DECLINE", "BatchNormalization,PoolingForward", 1);
    const bn_case bn[] = {
        {"declined bn train", CNN_SHAPE(3, 5, 7, 9), true, true, true, true, 1e-5f},
        {"declined bn eval", CNN_SHAPE(3, 5, 7, 9), true, true, true, false, 1e-5f},
    };
    for (int i = 0; i < 2; i++) bn_run(&bn[i], CNN_BACKEND_CUDNN);
    pool_case("declined max 3x3/2 pad 1", CNN_SHAPE(2, 5, 13, 11), 0,
              PP(3, 3, 2, 2, 1, 1, 0, 0, 0, 0));
    pool_case("declined avg 3x3/2 pad 1", CNN_SHAPE(2, 5, 13, 11), 1,
              PP(3, 3, 2, 2, 1, 1, 0, 0, 0, 1));
    unsetenv("CNN_EMU_CUDNN_DECLINE");
}

/* Arguments on different devices are refused, naming both. */
GPU_TEST(cuda_nn_device_mismatch_is_refused)
{
    cnn_tensor *x = NULL, *w = NULL, *y = NULL;
    CHECK_OK(cnn_tensor_ones(CNN_SHAPE(2, 3, 4, 4), CNN_CUDA(0), &x));
    CHECK_OK(cnn_tensor_ones(CNN_SHAPE(3), CNN_CPU, &w));
    CHECK_ERR(cnn_batch_norm(x, NULL, NULL, w, NULL, true, 0.1f, 1e-5f, &y), CNN_ERR_DEVICE);
    CHECK(y == NULL);
    cnn_tensor_free(&x);
    cnn_tensor_free(&w);
}
