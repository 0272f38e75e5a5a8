/* test_cuda_conv.c — the conv2d launchers on the GPU, hand-written kernels and cuDNN, against
 * the CPU reference (cnn_conv2d) on fresh random inputs of awkward shapes (conv_cases.c):
 * forward, backward-data, backward-filter and the bias gradient, FP32 and TF32; deterministic
 * mode; shapes at the int limit. GPU outputs are poisoned with NaN first, and the hand-written
 * launchers also run on buffers guarded past their ends (nothing read or written there). cuDNN's
 * algorithm search is tested in test_cuda_conv_search.c, the public ops on device tensors in
 * test_cuda_conv_ops.c. */
#include "conv_cases.h"

#include <limits.h>
#include <stdint.h>

#if CNN_WITH_CUDA

/* v rounded to TF32 as a tensor core's operand: 10 mantissa bits, nearest, ties away. */
static float tf32_round(float v)
{
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    u = (u + 0x1000u) & ~0x1fffu;
    memcpy(&v, &u, sizeof v);
    return v;
}

/* A CPU copy of t that requires grad, its elements rounded to TF32 when asked. */
static cnn_tensor *cpu_copy(const cnn_tensor *t, bool tf32)
{
    if (!t) return NULL;
    const int64_t n = cnn_tensor_numel(t);
    float *v = malloc((size_t)(n ? n : 1) * sizeof *v);
    cnn_tensor *c = NULL;
    if (v && cnn_tensor_read(t, v, (size_t)n) == CNN_OK) {
        for (int64_t i = 0; tf32 && i < n; i++) v[i] = tf32_round(v[i]);
        if (cnn_tensor_from_data(cnn_tensor_shape(t), v, CNN_CPU, &c) != CNN_OK ||
            cnn_tensor_set_requires_grad(c, true) != CNN_OK)
            cnn_tensor_free(&c);
    }
    free(v);
    return c;
}

/* What a TF32 GEMM computes from r's inputs: the CPU op on x, w and dy rounded to TF32 (the
 * products are then exact and only the FP32 sums round); the bias is added unrounded. */
static int make_ref_tf32(const conv_case *cc, const conv_ref *r, conv_ref *rr)
{
    memset(rr, 0, sizeof *rr);
    rr->x = cpu_copy(r->x, true);
    rr->w = cpu_copy(r->w, true);
    rr->b = cpu_copy(r->b, false);
    rr->dy = cpu_copy(r->dy, true);
    if (!rr->x || !rr->w || !rr->dy || (r->b && !rr->b)) return 0;
    return ref_compute(cc, rr);
}

GPU_TEST(cuda_conv_hand_written_matches_cpu)
{
    for (int i = 0; i < n_conv_cases; i++)
        check_impl(&conv_cases[i], &conv_hand, CONV_ATOL, CONV_RTOL);
}

GPU_TEST(cuda_conv_cudnn_matches_cpu)
{
#if CNN_WITH_CUDNN
    for (int i = 0; i < n_conv_cases; i++)
        check_impl(&conv_cases[i], &conv_dnn, CONV_ATOL, CONV_RTOL);
#else
    cnn_test_skip("built without cuDNN");
#endif
}

/* max |got - ref| / max(1, max|ref|), or -1 if a read fails. */
static float scaled_max_diff(const cnn_tensor *got, const cnn_tensor *ref)
{
    const int64_t n = cnn_tensor_numel(ref);
    const size_t bytes = (size_t)(n ? n : 1) * sizeof(float);
    float *a = malloc(bytes), *b = malloc(bytes);
    float d = -1.0f, mx = 1.0f;
    if (a && b && cnn_tensor_read(got, a, (size_t)n) == CNN_OK &&
        cnn_tensor_read(ref, b, (size_t)n) == CNN_OK) {
        d = 0.0f;
        for (int64_t i = 0; i < n; i++) {
            d = fmaxf(d, fabsf(a[i] - b[i]));
            mx = fmaxf(mx, fabsf(b[i]));
        }
        d /= mx;
    }
    free(a);
    free(b);
    return d;
}

/* TF32 hand-written GEMMs against the CPU op on TF32-rounded operands: only the FP32 sums differ
 * (in order, and a tensor core's accumulation), so 5e-5 * max|ref| + 1e-3 * |ref| holds, while
 * rounding just one operand, or none, is off by ~3e-4 * max|ref| and fails. The bias gradient,
 * depthwise convs and backward data with Cg <= 4 (direct kernels) stay exact FP32. */
#define TF32_ATOL 5e-5f

static void check_hand_tf32(const conv_case *cc)
{
    conv_ref r, rr;
    conv_out o;
    memset(&rr, 0, sizeof rr);
    if (!make_ref(cc, &r) || !make_ref_tf32(cc, &r, &rr)) {
        cnn_test_fail(__FILE__, __LINE__, "%s: reference failed: %s", cc->name, cnn_last_error());
    } else if (conv_run(cc, &conv_hand, &r, &o)) {
        const bool gemm = cc->c / cc->groups > 1;
        const conv_ref *e = gemm ? &rr : &r;
        const float atol = gemm ? TF32_ATOL : CONV_ATOL;
        conv_compare("hand-written tf32", cc, "y", o.y, e->y, atol, CONV_RTOL);
        /* backward data with Cg <= 4 is a direct gather, exact FP32 */
        const bool dx_gemm = cc->c / cc->groups > 4;
        conv_compare("hand-written tf32", cc, "dx", o.dx, dx_gemm ? rr.dx : r.dx,
                     dx_gemm ? TF32_ATOL : CONV_ATOL, CONV_RTOL);
        conv_compare("hand-written tf32", cc, "dw", o.dw, e->dw, atol, CONV_RTOL);
        if (r.b) conv_compare("hand-written tf32", cc, "db", o.db, r.db, CONV_ATOL, CONV_RTOL);
        /* And TF32 was really used: y is measurably off the exact FP32 result. */
        const float d = scaled_max_diff(o.y, r.y);
        if (gemm && !(d > 2 * CONV_ATOL))
            cnn_test_fail(__FILE__, __LINE__, "hand-written tf32 %s: y is within %g of exact FP32 "
                          "(TF32 not used?)", cc->name, d);
        conv_out_free(&o);
    }
    ref_free(&rr);
    ref_free(&r);
}

/* With TF32 on, the hand-written GEMMs run on the tensor cores (every case), and cuDNN may:
 * its tolerance covers TF32's own error (~1e-4 of max|ref| over a sum of 3000 random-sign
 * terms): 2e-3 * max|ref| + 5e-3 * |ref|. */
GPU_TEST(cuda_conv_tf32)
{
    cnn_set_tf32(true);
    for (int i = 0; i < n_conv_cases; i++) check_hand_tf32(&conv_cases[i]);
#if CNN_WITH_CUDNN
    check_impl(&conv_cases[10], &conv_dnn, 2e-3f, 5e-3f);
    check_impl(&conv_cases[9], &conv_dnn, 2e-3f, 5e-3f);
#endif
    cnn_set_tf32(false);
}

/* Only the bias gradient (dw NULL) writes db and nothing else. */
GPU_TEST(cuda_conv_bias_grad_alone)
{
    conv_ref r;
    REQUIRE(make_ref(&conv_cases[1], &r));
    cnn_tensor *dy = to_gpu(r.dy), *db = nan_gpu(CNN_SHAPE(conv_cases[1].k));
    REQUIRE(dy && db);
    CHECK_OK(cnn_cuda_conv2d_backward_filter(cnn_context_current(), &r.g, dev_f32(dy), NULL, NULL,
                                             cnn_f32(db)));
    CHECK(close_scaled("hand-written db", db, r.db, CONV_ATOL, CONV_RTOL));
#if CNN_WITH_CUDNN
    CHECK_OK(cnn_tensor_fill_(db, NAN));
    CHECK_OK(cnn_cudnn_conv2d_backward_filter(cnn_context_current(), &r.g, dev_f32(dy), NULL, NULL,
                                              cnn_f32(db)));
    CHECK(close_scaled("cudnn db", db, r.db, CONV_ATOL, CONV_RTOL));
#endif
    cnn_tensor_free(&dy);
    cnn_tensor_free(&db);
    ref_free(&r);
}

/* ---- nothing read or written past the buffers ---------------------------------------------- */
/* The value the guard after an output holds: no kernel computes it from these inputs. */
#define GUARD_OUT 7.0f

/* A device buffer of 2n floats: src's n values (NaN when src is NULL), then n copies of guard;
 * NULL on failure. */
static cnn_tensor *guarded_gpu(const cnn_tensor *src, int64_t n, float guard)
{
    float *v = malloc((size_t)(2 * n) * sizeof *v);
    cnn_tensor *t = NULL;
    if (!v) return NULL;
    const bool ok = !src || cnn_tensor_read(src, v, (size_t)n) == CNN_OK;
    for (int64_t i = 0; !src && i < n; i++) v[i] = NAN;
    for (int64_t i = n; i < 2 * n; i++) v[i] = guard;
    if (ok && cnn_tensor_from_data(CNN_SHAPE(2 * n), v, CNN_CUDA(0), &t) != CNN_OK) t = NULL;
    free(v);
    return t;
}

/* Output `name` of case cc, in buf (guarded_gpu of ref's size): the guard still holds GUARD_OUT
 * everywhere, and the values before it agree with ref (conv_compare). */
static void check_guarded(const char *tag, const conv_case *cc, const char *name,
                          const cnn_tensor *buf, const cnn_tensor *ref, float atol, float rtol)
{
    const int64_t n = cnn_tensor_numel(ref);
    float *v = malloc((size_t)(2 * n) * sizeof *v);
    cnn_tensor *got = NULL;
    if (!v || cnn_tensor_read(buf, v, (size_t)(2 * n)) != CNN_OK ||
        cnn_tensor_from_data(cnn_tensor_shape(ref), v, CNN_CPU, &got) != CNN_OK) {
        cnn_test_fail(__FILE__, __LINE__, "%s %s %s: read: %s", tag, cc->name, name,
                      cnn_last_error());
        free(v);
        return;
    }
    int64_t past = 0, first = -1;
    for (int64_t i = n; i < 2 * n; i++)
        if (v[i] != GUARD_OUT && past++ == 0) first = i - n;
    if (past)
        cnn_test_fail(__FILE__, __LINE__, "%s %s: %lld elements written past the end of %s "
                      "(the first at %lld past it: %g)", tag, cc->name, (long long)past, name,
                      (long long)first, v[n + first]);
    conv_compare(tag, cc, name, got, ref, atol, rtol);
    cnn_tensor_free(&got);
    free(v);
}

/* The hand-written launchers on buffers that go on past their tensors: each input followed by
 * NaN, each output by GUARD_OUT. A kernel that reads past an input (the last step of a GEMM's
 * depth when it is not a multiple of 8, a tile's rows past M) gets NaN, which reaches a result
 * even when multiplied by a masked zero; one that stores past an output (a tile's row M, or its
 * column NC) changes the guard. The outputs of conv_run are tensors of their own, where such a
 * store lands in the allocator's rounding or in the next output, which a later launch rewrites
 * (the emulator runs the blocks in order; a GPU runs them at once, and they race). FP32 and TF32
 * (the tensor-core kernel has its own stores); cuDNN is outside what this checks. */
GPU_TEST(cuda_conv_touches_nothing_past_its_buffers)
{
    cnn_context *ctx = cnn_context_current();
    for (int tf32 = 0; tf32 < 2; tf32++) {
        cnn_set_tf32(tf32 == 1);
        const char *tag = tf32 ? "hand-written tf32, guarded" : "hand-written, guarded";
        /* TF32's own error, as cuda_conv_tf32's cuDNN bound: the guards are the point here */
        const float atol = tf32 ? 2e-3f : CONV_ATOL, rtol = tf32 ? 5e-3f : CONV_RTOL;
        for (int i = 0; i < n_conv_cases; i++) {
            const conv_case *cc = &conv_cases[i];
            conv_ref r;
            if (!make_ref(cc, &r)) {
                cnn_test_fail(__FILE__, __LINE__, "%s: reference: %s", cc->name,
                              cnn_last_error());
                ref_free(&r);
                continue;
            }
            const int64_t nx = cnn_tensor_numel(r.x), nw = cnn_tensor_numel(r.w);
            const int64_t ny = cnn_tensor_numel(r.y), nb = cc->k;
            cnn_tensor *x = guarded_gpu(r.x, nx, NAN), *w = guarded_gpu(r.w, nw, NAN);
            cnn_tensor *b = r.b ? guarded_gpu(r.b, nb, NAN) : NULL;
            cnn_tensor *dy = guarded_gpu(r.dy, ny, NAN), *y = guarded_gpu(NULL, ny, GUARD_OUT);
            cnn_tensor *dx = guarded_gpu(NULL, nx, GUARD_OUT);
            cnn_tensor *dw = guarded_gpu(NULL, nw, GUARD_OUT);
            cnn_tensor *db = guarded_gpu(NULL, nb, GUARD_OUT);
            if (x && w && dy && y && dx && dw && db && (b || !r.b)) {
                CHECK_OK(cnn_cuda_conv2d_forward(ctx, &r.g, cnn_f32(x), cnn_f32(w), dev_f32(b),
                                                 cnn_f32(y)));
                CHECK_OK(cnn_cuda_conv2d_backward_data(ctx, &r.g, cnn_f32(dy), cnn_f32(w),
                                                       cnn_f32(dx)));
                CHECK_OK(cnn_cuda_conv2d_backward_filter(ctx, &r.g, cnn_f32(dy), cnn_f32(x),
                                                         cnn_f32(dw), b ? cnn_f32(db) : NULL));
                check_guarded(tag, cc, "y", y, r.y, atol, rtol);
                check_guarded(tag, cc, "dx", dx, r.dx, atol, rtol);
                check_guarded(tag, cc, "dw", dw, r.dw, atol, rtol);
                if (r.b) check_guarded(tag, cc, "db", db, r.db, CONV_ATOL, CONV_RTOL);
            } else {
                cnn_test_fail(__FILE__, __LINE__, "%s: setup: %s", cc->name, cnn_last_error());
            }
            cnn_tensor *all[] = {x, w, b, dy, y, dx, dw, db};
            for (size_t k = 0; k < sizeof all / sizeof *all; k++) cnn_tensor_free(&all[k]);
            ref_free(&r);
        }
    }
    cnn_set_tf32(false);
}

GPU_TEST(cuda_conv_deterministic_is_bitwise_repeatable)
{
    cnn_set_deterministic(true);
    check_bitwise_repeat(&conv_hand, &conv_cases[10]);
#if CNN_WITH_CUDNN
    check_bitwise_repeat(&conv_dnn, &conv_cases[10]);
#endif
    cnn_set_deterministic(false);
}

/* Within 256 of 2^31 elements the kernels' int loops would step past INT_MAX (the filter and
 * bias sums over N*P*Q, the GEMM's depth and tile counts), reachable with one output channel:
 * such shapes are refused before any memory is touched (the pointers here are never read), as
 * CNN_ERR_UNSUPPORTED, which the layers answer with cuDNN where it is built. */
GPU_TEST(cuda_conv_refuses_shapes_at_the_int_limit)
{
    cnn_context *ctx = cnn_context_current();
    float *no = (float *)(uintptr_t)0x1000; /* never dereferenced: refused first */
    /* x (2, 1, 1, 2^30 - 1), 1x1 weight, one output channel: N*P*Q = 2^31 - 2 */
    const int64_t w = ((int64_t)1 << 30) - 1;
    cnn_cuda_conv g = {.n = 2, .c = 1, .h = 1, .w = w, .k = 1, .r = 1, .s = 1, .p = 1, .q = w,
                       .cg = 1, .kg = 1, .sh = 1, .sw = 1, .dh = 1, .dw = 1, .groups = 1};
    CHECK_ERR(cnn_cuda_conv2d_forward(ctx, &g, no, no, NULL, no), CNN_ERR_UNSUPPORTED);
    CHECK_ERR(cnn_cuda_conv2d_backward_filter(ctx, &g, no, no, no, no), CNN_ERR_UNSUPPORTED);
    CHECK_ERR(cnn_cuda_conv2d_backward_data(ctx, &g, no, no, no), CNN_ERR_UNSUPPORTED);
    /* a GEMM depth of 2^31 - 3: x (1, 2^31 - 3, 1, 1), w (1, 2^31 - 3, 1, 1) */
    const int64_t c = ((int64_t)1 << 31) - 3;
    cnn_cuda_conv d = {.n = 1, .c = c, .h = 1, .w = 1, .k = 1, .r = 1, .s = 1, .p = 1, .q = 1,
                       .cg = c, .kg = 1, .sh = 1, .sw = 1, .dh = 1, .dw = 1, .groups = 1};
    CHECK_ERR(cnn_cuda_conv2d_forward(ctx, &d, no, no, NULL, no), CNN_ERR_UNSUPPORTED);
    CHECK(strstr(cnn_last_error(), "under 2^31") != NULL);
    /* Padding and stride near INT_MAX over a 4x4 input (a 3x3 output, valid on the CPU): the
     * kernels' int index arithmetic wrapped (out-of-bounds reads in backward data). */
    cnn_cuda_conv e = {.n = 1, .c = 3, .h = 4, .w = 4, .k = 2, .r = 1, .s = 1, .p = 3, .q = 3,
                       .cg = 3, .kg = 2, .sh = INT_MAX, .sw = INT_MAX, .ph = INT_MAX,
                       .pw = INT_MAX, .dh = 1, .dw = 1, .groups = 1};
    CHECK_ERR(cnn_cuda_conv2d_backward_data(ctx, &e, no, no, no), CNN_ERR_UNSUPPORTED);
    CHECK(strstr(cnn_last_error(), "32 bits") != NULL);
    CHECK_ERR(cnn_cuda_conv2d_forward(ctx, &e, no, no, NULL, no), CNN_ERR_UNSUPPORTED);
    CHECK_ERR(cnn_cuda_conv2d_backward_filter(ctx, &e, no, no, no, no), CNN_ERR_UNSUPPORTED);
}

/* A stride far above the input: backward data ran one (empty) GEMM phase per stride phase,
 * 2^40 of them here, where only the 4x4 phases that hold pixels need one. */
GPU_TEST(cuda_conv_huge_stride_matches_cpu)
{
    const conv_case cc = {"1x1 stride 2^20, 5 channels", 1, 5, 4, 4, 2, 1, 1, 1 << 20, 1 << 20,
                          0, 0, 1, 1, 1, 1};
    check_impl(&cc, &conv_hand, CONV_ATOL, CONV_RTOL);
#if CNN_WITH_CUDNN
    check_impl(&cc, &conv_dnn, CONV_ATOL, CONV_RTOL);
#endif
}

/* Without a GPU this runs: the launchers refuse a CPU context before touching CUDA. */
TEST(cuda_conv_launchers_refuse_cpu_context)
{
    cnn_context *cpu = cnn_context_current();
    if (cnn_current_device().type != CNN_DEVICE_CPU) {
        cnn_test_skip("current context is on a GPU");
        return;
    }
    cnn_cuda_conv g = {.n = 1, .c = 1, .h = 3, .w = 3, .k = 1, .r = 1, .s = 1, .p = 3, .q = 3,
                       .cg = 1, .kg = 1, .sh = 1, .sw = 1, .dh = 1, .dw = 1, .groups = 1};
    float buf[9] = {0};
    CHECK_ERR(cnn_cuda_conv2d_forward(cpu, &g, buf, buf, NULL, buf), CNN_ERR_DEVICE);
    CHECK(strstr(cnn_last_error(), "conv2d") != NULL);
    CHECK_ERR(cnn_cuda_conv2d_backward_data(cpu, &g, buf, buf, buf), CNN_ERR_DEVICE);
    CHECK_ERR(cnn_cuda_conv2d_backward_filter(cpu, &g, buf, buf, buf, buf), CNN_ERR_DEVICE);
#if CNN_WITH_CUDNN
    CHECK_ERR(cnn_cudnn_conv2d_forward(cpu, &g, buf, buf, NULL, buf), CNN_ERR_DEVICE);
    size_t e = 1;
    uint64_t s = 1;
    cnn_cudnn_conv2d_cache_stats(cpu, &e, &s);
    CHECK(e == 0 && s == 0);
#endif
}

#endif /* CNN_WITH_CUDA */
