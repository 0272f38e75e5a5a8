/* test_cuda_conv_ops.c — conv2d on device tensors through the public ops, against the CPU op
 * (cases and oracle in conv_cases.c): backend dispatch and autograd, the fallback where cuDNN
 * declines, the fused conv (+z, +ReLU) and its epilogue alone, the BN fold, and finite
 * differences of the GPU op. Outputs the ops allocate start as NaN (poison_cache). */
#include "conv_cases.h"

#if CNN_WITH_CUDA

/* cnn_conv2d + cnn_backward_with_grad on device copies, under a backend preference; all four
 * results against the CPU. */
static void check_dispatch(const conv_case *cc, cnn_backend be)
{
    conv_ref r;
    REQUIRE(make_ref(cc, &r));
    cnn_tensor *x = to_gpu(r.x), *w = to_gpu(r.w), *b = to_gpu(r.b), *dy = to_gpu(r.dy);
    cnn_tensor *y = NULL;
    REQUIRE(x && w && dy && (!cc->bias || b));
    CHECK_OK(cnn_tensor_set_requires_grad(x, true));
    CHECK_OK(cnn_tensor_set_requires_grad(w, true));
    if (b) CHECK_OK(cnn_tensor_set_requires_grad(b, true));
    cnn_set_backend(be);
    cnn_conv2d_params p = params_of(cc);
    const cnn_shape shapes[4] = {cnn_tensor_shape(r.y), cnn_tensor_shape(r.x),
                                 cnn_tensor_shape(r.w), CNN_SHAPE(cc->k)};
    poison_cache(shapes, 1);
    cnn_status st = cnn_conv2d(x, w, b, &p, &y);
    poison_cache(shapes, 4);
    if (st == CNN_OK) st = cnn_backward_with_grad(y, dy);
    cnn_set_backend(CNN_BACKEND_AUTO);
    char what[160];
    if (st != CNN_OK) {
        cnn_test_fail(__FILE__, __LINE__, "%s (backend %d): %s", cc->name, (int)be,
                      cnn_last_error());
    } else {
        snprintf(what, sizeof what, "dispatch %d %s: y", (int)be, cc->name);
        if (!close_scaled(what, y, r.y, CONV_ATOL, CONV_RTOL))
            cnn_test_fail(__FILE__, __LINE__, "%s", what);
        CHECK(cnn_tensor_device(y).type == CNN_DEVICE_CUDA);
        const cnn_tensor *got[3] = {cnn_tensor_grad(x), cnn_tensor_grad(w),
                                    b ? cnn_tensor_grad(b) : NULL};
        const cnn_tensor *want[3] = {r.dx, r.dw, r.db};
        for (int i = 0; i < (b ? 3 : 2); i++) {
            snprintf(what, sizeof what, "dispatch %d %s: grad %d", (int)be, cc->name, i);
            if (!got[i]) cnn_test_fail(__FILE__, __LINE__, "%s missing", what);
            else if (!close_scaled(what, got[i], want[i], CONV_ATOL, CONV_RTOL))
                cnn_test_fail(__FILE__, __LINE__, "%s", what);
        }
    }
    cnn_tensor_free(&x);
    cnn_tensor_free(&w);
    cnn_tensor_free(&b);
    cnn_tensor_free(&dy);
    cnn_tensor_free(&y);
    ref_free(&r);
}

GPU_TEST(cuda_conv_dispatch_autograd_matches_cpu)
{
    const int pick[] = {1, 3, 4, 8, 11};
    for (size_t i = 0; i < sizeof pick / sizeof *pick; i++) {
        check_dispatch(&conv_cases[pick[i]], CNN_BACKEND_AUTO);
        check_dispatch(&conv_cases[pick[i]], CNN_BACKEND_CUDA);
    }
}

/* Where cuDNN declines a conv (a NOT_SUPPORTED status, as a real cuDNN may for a shape, an
 * alignment or a GPU it has no engine for), the hand-written kernels compute it instead of the
 * call failing. The emulated cuDNN declines on request (CNN_EMU_CUDNN_DECLINE: Find and the
 * compute calls); on a GPU this runs as the dispatch test above. */
GPU_TEST(cuda_conv_falls_back_where_cudnn_declines)
{
    setenv("CNN_EMU_CUDNN_DECLINE", "Convolution", 1);
    const int pick[] = {1, 8};
    for (size_t i = 0; i < sizeof pick / sizeof *pick; i++)
        check_dispatch(&conv_cases[pick[i]], CNN_BACKEND_CUDNN);
    unsetenv("CNN_EMU_CUDNN_DECLINE");
}

/* cnn_conv2d_fused (z added, ReLU as `relu` says) on device copies under a backend preference,
 * outputs poisoned: y and the four gradients (x, w, b, z) against the CPU fused op's. On
 * cuDNN the epilogue is a kernel of its own after the conv; hand-written, the GEMM's store. */
static void check_fused(const conv_case *cc, cnn_backend be, bool with_z, bool relu)
{
    conv_ref r;
    REQUIRE(make_ref(cc, &r)); /* r.x, r.w, r.b, r.dy; r.y gives the output shape */
    cnn_conv2d_params p = params_of(cc);
    cnn_tensor *z = with_z ? rand_tensor(cnn_tensor_shape(r.y), -1, 1, 1) : NULL, *yc = NULL;
    const cnn_tensor *leaf[4] = {r.x, r.w, r.b, z};
    for (int i = 0; i < 4; i++)
        if (leaf[i]) cnn_tensor_zero_grad((cnn_tensor *)leaf[i]);
    const cnn_activation act = relu ? CNN_ACT_RELU : CNN_ACT_NONE;
    CHECK_OK(cnn_conv2d_fused(r.x, r.w, r.b, z, act, &p, &yc));
    CHECK_OK(cnn_backward_with_grad(yc, r.dy));
    cnn_tensor *d[4], *y = NULL, *dy = to_gpu(r.dy);
    for (int i = 0; i < 4; i++) {
        d[i] = to_gpu(leaf[i]);
        if (d[i]) CHECK_OK(cnn_tensor_set_requires_grad(d[i], true));
    }
    REQUIRE(d[0] && d[1] && (!with_z || d[3]) && dy && (!cc->bias || d[2]));
    cnn_set_backend(be);
    const cnn_shape shapes[4] = {cnn_tensor_shape(r.y), cnn_tensor_shape(r.x),
                                 cnn_tensor_shape(r.w), CNN_SHAPE(cc->k)};
    poison_cache(shapes, 1);
    cnn_status st = cnn_conv2d_fused(d[0], d[1], d[2], d[3], act, &p, &y);
    poison_cache(shapes, 4);
    if (st == CNN_OK) st = cnn_backward_with_grad(y, dy);
    cnn_set_backend(CNN_BACKEND_AUTO);
    char what[160];
    if (st != CNN_OK) {
        cnn_test_fail(__FILE__, __LINE__, "fused %s (backend %d): %s", cc->name, (int)be,
                      cnn_last_error());
    } else {
        snprintf(what, sizeof what, "fused %d relu %d %s: y", (int)be, relu, cc->name);
        if (!close_scaled(what, y, yc, CONV_ATOL, CONV_RTOL))
            cnn_test_fail(__FILE__, __LINE__, "%s", what);
        for (int i = 0; i < 4; i++) {
            if (!d[i]) continue;
            snprintf(what, sizeof what, "fused %d relu %d %s: grad %d", (int)be, relu, cc->name,
                     i);
            const cnn_tensor *got = cnn_tensor_grad(d[i]), *want = cnn_tensor_grad(leaf[i]);
            if (!got || !want) cnn_test_fail(__FILE__, __LINE__, "%s missing", what);
            else if (!close_scaled(what, got, want, CONV_ATOL, CONV_RTOL))
                cnn_test_fail(__FILE__, __LINE__, "%s", what);
        }
    }
    for (int i = 0; i < 4; i++) cnn_tensor_free(&d[i]);
    cnn_tensor_free(&y);
    cnn_tensor_free(&yc);
    cnn_tensor_free(&dy);
    cnn_tensor_free(&z);
    ref_free(&r);
}

GPU_TEST(cuda_conv_fused_matches_cpu)
{
    const int pick[] = {0, 1, 4, 6, 8, 10};
    for (size_t i = 0; i < sizeof pick / sizeof *pick; i++)
        for (int mode = 1; mode < 4; mode++) { /* z, relu, both */
            check_fused(&conv_cases[pick[i]], CNN_BACKEND_AUTO, mode & 1, mode & 2);
            check_fused(&conv_cases[pick[i]], CNN_BACKEND_CUDA, mode & 1, mode & 2);
        }
    /* z must be on the conv's device */
    cnn_tensor *xc = rand_tensor(CNN_SHAPE(1, 2, 4, 4), -1, 1, 0), *x = to_gpu(xc);
    cnn_tensor *wc = rand_tensor(CNN_SHAPE(3, 2, 1, 1), -1, 1, 0), *w = to_gpu(wc), *y = NULL;
    cnn_tensor *z = rand_tensor(CNN_SHAPE(1, 3, 4, 4), -1, 1, 0);
    CHECK_ERR(cnn_conv2d_fused(x, w, NULL, z, CNN_ACT_RELU, NULL, &y), CNN_ERR_DEVICE);
    CHECK(y == NULL);
    cnn_tensor *all[] = {xc, x, wc, w, z};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) cnn_tensor_free(&all[i]);
}

/* On the GPU too the fused op gives the bits of cnn_conv2d, cnn_add and cnn_relu run in turn,
 * under each backend, in FP32 and TF32 (the hand-written TF32 kernel's store, and the split-K
 * sum, apply the epilogue as the FP32 ones do). */
GPU_TEST(cuda_conv_fused_same_bits_as_separate_ops)
{
    const int pick[] = {1, 4, 10};
    const cnn_backend bes[] = {CNN_BACKEND_AUTO, CNN_BACKEND_CUDA};
    for (int tf = 0; tf < 2; tf++)
        for (int bi = 0; bi < 2; bi++)
            for (size_t i = 0; i < 2 * sizeof pick / sizeof *pick; i++) {
                const conv_case *cc = &conv_cases[pick[i / 2]];
                const bool with_z = i % 2; /* without: the ReLU in the GEMM's store */
                conv_ref r;
                REQUIRE(make_ref(cc, &r));
                cnn_conv2d_params p = params_of(cc);
                cnn_tensor *zc = rand_tensor(cnn_tensor_shape(r.y), -1, 1, 0);
                cnn_tensor *x = to_gpu(r.x), *w = to_gpu(r.w), *b = to_gpu(r.b);
                cnn_tensor *z = to_gpu(zc), *c = NULL, *s = NULL, *ref = NULL, *y = NULL;
                REQUIRE(x && w && z && (!cc->bias || b));
                cnn_set_tf32(tf);
                cnn_set_backend(bes[bi]);
                bool was = cnn_set_grad_enabled(false);
                CHECK_OK(cnn_conv2d(x, w, b, &p, &c));
                if (with_z) {
                    CHECK_OK(cnn_add(z, c, &s));
                } else {
                    s = cnn_tensor_retain(c);
                }
                CHECK_OK(cnn_relu(s, &ref));
                const cnn_shape shapes[1] = {cnn_tensor_shape(r.y)};
                poison_cache(shapes, 1);
                CHECK_OK(cnn_conv2d_fused(x, w, b, with_z ? z : NULL, CNN_ACT_RELU, &p, &y));
                cnn_set_grad_enabled(was);
                cnn_set_backend(CNN_BACKEND_AUTO);
                cnn_set_tf32(false);
                char what[128];
                snprintf(what, sizeof what, "fused bits, z %d tf32 %d backend %d %s", with_z, tf,
                         (int)bes[bi], cc->name);
                if (!tensors_close(what, y, ref, 0, 0))
                    cnn_test_fail(__FILE__, __LINE__, "%s", what);
                cnn_tensor *all[] = {zc, x, w, b, z, c, s, ref, y};
                for (size_t k = 0; k < sizeof all / sizeof *all; k++) cnn_tensor_free(&all[k]);
                ref_free(&r);
            }
}

/* The epilogue pass alone, y = act(y + b[k] + z) over (N, K, P, Q) with each element's channel
 * k from its row: after a cuDNN forward the ops run it with a bias, which only a cuDNN build
 * reaches through them. On the host, the same float operations in the same order: the bits. */
GPU_TEST(cuda_conv_epilogue_alone_matches_host)
{
    const cnn_cuda_conv g = {.n = 3, .c = 2, .h = 7, .w = 6, .k = 5, .r = 1, .s = 1, .p = 7,
                             .q = 6, .cg = 2, .kg = 5, .sh = 1, .sw = 1, .dh = 1, .dw = 1,
                             .groups = 1};
    enum { PQ = 7 * 6, N = 3 * 5 * PQ };
    cnn_tensor *yc = rand_tensor(CNN_SHAPE(3, 5, 7, 6), -1, 1, 0);
    cnn_tensor *bc = rand_tensor(CNN_SHAPE(5), -1, 1, 0), *zc = rand_tensor(CNN_SHAPE(N), -1, 1, 0);
    cnn_tensor *b = to_gpu(bc), *z = to_gpu(zc);
    REQUIRE(yc && b && z);
    float y0[N], bh[5], zh[N], want[N], got[N];
    REQUIRE(cnn_tensor_read(yc, y0, N) == CNN_OK && cnn_tensor_read(bc, bh, 5) == CNN_OK &&
            cnn_tensor_read(zc, zh, N) == CNN_OK);
    for (int mode = 0; mode < 4; mode++) { /* bias, bias + z, bias + ReLU, all three */
        const bool with_z = mode & 1, relu = mode & 2;
        cnn_tensor *y = to_gpu(yc);
        REQUIRE(y);
        const cnn_cuda_epilogue e = {cnn_f32(b), with_z ? cnn_f32(z) : NULL, relu};
        CHECK_OK(cnn_cuda_conv2d_epilogue(cnn_context_current(), &g, &e, cnn_f32(y)));
        CHECK_OK(cnn_tensor_read(y, got, N));
        int bad = 0;
        for (int i = 0; i < N; i++) {
            float v = y0[i] + bh[(i / PQ) % 5];
            if (with_z) v += zh[i];
            want[i] = relu && v <= 0.0f ? 0.0f : v;
            bad += memcmp(&want[i], &got[i], sizeof(float)) != 0;
        }
        if (bad)
            cnn_test_fail(__FILE__, __LINE__, "epilogue z %d relu %d: %d of %d differ", with_z,
                          relu, bad, N);
        cnn_tensor_free(&y);
    }
    cnn_tensor *all[] = {yc, bc, zc, b, z};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) cnn_tensor_free(&all[i]);
}

/* The GPU fold does the CPU's double-precision operations: the same bits. */
GPU_TEST(cuda_batch_norm_fold_matches_cpu_bits)
{
    const int k = 70;
    cnn_tensor *c[6] = {rand_tensor(CNN_SHAPE(k, 33, 3, 3), -1, 1, 0),
                        rand_tensor(CNN_SHAPE(k), -1, 1, 0), rand_tensor(CNN_SHAPE(k), -2, 2, 0),
                        rand_tensor(CNN_SHAPE(k), 0.1f, 3, 0), rand_tensor(CNN_SHAPE(k), -2, 2, 0),
                        rand_tensor(CNN_SHAPE(k), -1, 1, 0)};
    cnn_tensor *g[6], *wf = NULL, *bf = NULL, *wg = NULL, *bg = NULL;
    for (int i = 0; i < 6; i++) g[i] = to_gpu(c[i]);
    REQUIRE(g[0] && g[1] && g[2] && g[3] && g[4] && g[5]);
    for (int nb = 0; nb < 2; nb++) { /* with and without the conv bias and the BN affine */
        cnn_tensor *b = nb ? NULL : c[1], *gm = nb ? NULL : c[4], *bt = nb ? NULL : c[5];
        cnn_tensor *bd = nb ? NULL : g[1], *gmd = nb ? NULL : g[4], *btd = nb ? NULL : g[5];
        CHECK_OK(cnn_batch_norm_fold(c[0], b, c[2], c[3], gm, bt, 1e-5f, &wf, &bf));
        const cnn_shape shapes[2] = {cnn_tensor_shape(c[0]), CNN_SHAPE(k)};
        poison_cache(shapes, 2);
        CHECK_OK(cnn_batch_norm_fold(g[0], bd, g[2], g[3], gmd, btd, 1e-5f, &wg, &bg));
        CHECK(cnn_tensor_device(wg).type == CNN_DEVICE_CUDA);
        CHECK(tensors_close("gpu fold w", wg, wf, 0, 0));
        CHECK(tensors_close("gpu fold b", bg, bf, 0, 0));
        cnn_tensor_free(&wf);
        cnn_tensor_free(&bf);
        cnn_tensor_free(&wg);
        cnn_tensor_free(&bg);
    }
    for (int i = 0; i < 6; i++) {
        cnn_tensor_free(&c[i]);
        cnn_tensor_free(&g[i]);
    }
}

static cnn_status f_conv(cnn_tensor *const *in, void *ud, cnn_tensor **y)
{
    return cnn_conv2d(in[0], in[1], in[2], (const cnn_conv2d_params *)ud, y);
}

/* Finite differences of the GPU op itself (inputs on the device), under both backends. */
GPU_TEST(cuda_conv_gradcheck)
{
    const cnn_backend bes[] = {CNN_BACKEND_AUTO, CNN_BACKEND_CUDA};
    cnn_conv2d_params p = {{2, 1}, {1, 1}, {1, 1}, 2};
    for (int i = 0; i < 2; i++) {
        cnn_tensor *xc = rand_tensor(CNN_SHAPE(2, 4, 5, 6), -1, 1, 0);
        cnn_tensor *wc = rand_tensor(CNN_SHAPE(6, 2, 3, 3), -1, 1, 0);
        cnn_tensor *bc = rand_tensor(CNN_SHAPE(6), -1, 1, 0);
        cnn_tensor *in[3] = {to_gpu(xc), to_gpu(wc), to_gpu(bc)};
        cnn_tensor_free(&xc);
        cnn_tensor_free(&wc);
        cnn_tensor_free(&bc);
        REQUIRE(in[0] && in[1] && in[2]);
        for (int j = 0; j < 3; j++) CHECK_OK(cnn_tensor_set_requires_grad(in[j], true));
        cnn_set_backend(bes[i]);
        gc_opts o = {.eps = 1e-2f, .atol = 2e-3f, .rtol = 1e-2f};
        if (!gradcheck(i ? "gpu conv2d (hand-written)" : "gpu conv2d (auto)", f_conv, in, 3, &p,
                       &o))
            cnn_test_fail(__FILE__, __LINE__, "gradcheck of the GPU conv2d, backend %d",
                          (int)bes[i]);
        cnn_set_backend(CNN_BACKEND_AUTO);
        for (int j = 0; j < 3; j++) cnn_tensor_free(&in[j]);
    }
}

#endif /* CNN_WITH_CUDA */
