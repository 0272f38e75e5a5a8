/* emu_cudnn_conv.cpp — the emulated cuDNN's convolutions (include/cudnn.h): descriptors checked
 * against each other with cuDNN's output formula, a few algorithms per direction with their
 * own workspaces and determinism, cudnnFind*AlgorithmEx, and the compute calls with alpha/beta,
 * groups, dilation and (CUDNN_CONVOLUTION) the flipped filter, on the CPU with plain loops.
 * Test infrastructure: it may print ("cuda-emu:" lines), and it never touches a real GPU. */
#include "emu_cudnn_internal.h"
#include "emu_internal.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include <algorithm>
#include <vector>

using namespace cnn_emu;

namespace {

/* ---- the emulated algorithms --------------------------------------------------------------
 * Each direction offers a few; the rest answer NOT_SUPPORTED. Times are fixed and chosen so
 * that the fastest one needs a workspace and, backward, is non-deterministic: the library's
 * workspace path and its deterministic filter both run. */
struct algo_info {
    bool supported;
    size_t workspace;
    cudnnDeterminism_t det;
    float ms;
};

algo_info fwd_algo(const geom &g, int a)
{
    switch (a) {
    case CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM: return {true, 0, CUDNN_DETERMINISTIC, 0.30f};
    case CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM:
        return {true, (size_t)g.cg * g.r * g.s * sizeof(int) + 256, CUDNN_DETERMINISTIC, 0.10f};
    case CUDNN_CONVOLUTION_FWD_ALGO_GEMM:
        return {true, col_bytes(g), CUDNN_DETERMINISTIC, 0.20f};
    default: return {false, 0, CUDNN_DETERMINISTIC, 0.0f};
    }
}

algo_info data_algo(const geom &g, int a)
{
    switch (a) {
    case CUDNN_CONVOLUTION_BWD_DATA_ALGO_0: return {true, 0, CUDNN_NON_DETERMINISTIC, 0.10f};
    case CUDNN_CONVOLUTION_BWD_DATA_ALGO_1:
        return {true, col_bytes(g), CUDNN_DETERMINISTIC, 0.20f};
    default: return {false, 0, CUDNN_DETERMINISTIC, 0.0f};
    }
}

algo_info filter_algo(const geom &g, int a)
{
    switch (a) {
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0: return {true, 0, CUDNN_NON_DETERMINISTIC, 0.15f};
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1:
        return {true, col_bytes(g), CUDNN_DETERMINISTIC, 0.20f};
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3:
        return {true, (size_t)g.k * g.cg * g.r * g.s * sizeof(float), CUDNN_NON_DETERMINISTIC,
                0.10f};
    default: return {false, 0, CUDNN_DETERMINISTIC, 0.0f};
    }
}

enum { DIR_FWD, DIR_DATA, DIR_FILTER };
const int algo_count[] = {CUDNN_CONVOLUTION_FWD_ALGO_COUNT, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT,
                          CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT};

algo_info info_of(int dir, const geom &g, int a)
{
    return dir == DIR_FWD ? fwd_algo(g, a) : dir == DIR_DATA ? data_algo(g, a) : filter_algo(g, a);
}

/* The math an algorithm runs with: FMA stays FMA (exact FP32); otherwise the forward implicit
 * precomputed GEMM uses the TF32 tensor cores (reported as TENSOR_OP_MATH), the rest FP32
 * (reported as DEFAULT_MATH). */
cudnnMathType_t math_of(int dir, int a, cudnnMathType_t desc)
{
    if (desc == CUDNN_FMA_MATH) return CUDNN_FMA_MATH;
    if (dir == DIR_FWD && a == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM)
        return CUDNN_TENSOR_OP_MATH;
    return CUDNN_DEFAULT_MATH;
}

/* Runs algorithm a of direction dir after checking it exists and its workspace is enough. */
cudnnStatus_t run_algo(const char *fn, int dir, const geom &g, cudnnMathType_t desc_math, int a,
                       const float *in0, const float *in1, float alpha, float beta, float *out,
                       void *ws, size_t ws_bytes)
{
    if (a < 0 || a >= algo_count[dir]) {
        say("%s: algorithm %d does not exist", fn, a);
        return CUDNN_STATUS_BAD_PARAM;
    }
    const algo_info ai = info_of(dir, g, a);
    if (!ai.supported) return CUDNN_STATUS_NOT_SUPPORTED;
    if (ws_bytes < ai.workspace) {
        say("%s: algorithm %d needs %zu bytes of workspace, given %zu", fn, a, ai.workspace,
            ws_bytes);
        return CUDNN_STATUS_BAD_PARAM;
    }
    if (ai.workspace && !on_device(fn, "workspace", ws, ai.workspace))
        return CUDNN_STATUS_BAD_PARAM;
    if (no_compute()) return CUDNN_STATUS_SUCCESS;
    /* Scribble on the workspace, as a real algorithm would: nothing may rely on its content. */
    if (ai.workspace) memset(ws, 0xA5, ai.workspace);
    const bool nondet = ai.det == CUDNN_NON_DETERMINISTIC;
    if (dir == DIR_FWD) {
        if (math_of(dir, a, desc_math) == CUDNN_TENSOR_OP_MATH) {
            std::vector<float> xt(in0, in0 + x_bytes(g) / 4), wt(in1, in1 + w_bytes(g) / 4);
            for (float &v : xt) v = to_tf32(v);
            for (float &v : wt) v = to_tf32(v);
            conv_fwd(g, xt.data(), wt.data(), alpha, beta, out);
        } else {
            conv_fwd(g, in0, in1, alpha, beta, out);
        }
    } else if (dir == DIR_DATA) {
        conv_bwd_data(g, in0, in1, alpha, beta, out, nondet);
    } else {
        conv_bwd_filter(g, in0, in1, alpha, beta, out, nondet);
    }
    return CUDNN_STATUS_SUCCESS;
}

struct perf {
    int algo;
    cudnnStatus_t status;
    float time;
    size_t memory;
    cudnnDeterminism_t det;
    cudnnMathType_t math;
};

/* cudnnFind*AlgorithmEx: every algorithm is run on the caller's buffers (alpha 1, beta 0) with
 * the caller's workspace; the results come back successes first, fastest first. */
cudnnStatus_t find(const char *fn, int dir, const geom &g, cudnnMathType_t desc_math,
                   const float *in0, const float *in1, float *out, int requested, int *returned,
                   std::vector<perf> &res, void *ws, size_t ws_bytes)
{
    if (requested <= 0 || !returned) {
        say("%s: requestedAlgoCount %d, returnedAlgoCount %p", fn, requested, (void *)returned);
        return CUDNN_STATUS_BAD_PARAM;
    }
    if (ws_bytes && !on_device(fn, "workspace", ws, ws_bytes)) return CUDNN_STATUS_BAD_PARAM;
    res.clear();
    for (int a = 0; a < algo_count[dir]; a++) {
        const algo_info ai = info_of(dir, g, a);
        perf p = {a, CUDNN_STATUS_SUCCESS, ai.ms, ai.workspace, ai.det, math_of(dir, a, desc_math)};
        if (!ai.supported) {
            p.status = CUDNN_STATUS_NOT_SUPPORTED;
            p.time = -1.0f;
            p.memory = 0;
        } else if (ai.workspace > ws_bytes) {
            /* "workspace insufficient": cuDNN 9's ALLOC_FAILED alias */
            p.status = CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED;
            p.time = -1.0f;
        } else {
            cudnnStatus_t e = run_algo(fn, dir, g, desc_math, a, in0, in1, 1.0f, 0.0f, out, ws,
                                       ws_bytes);
            if (e != CUDNN_STATUS_SUCCESS) return e;
        }
        res.push_back(p);
    }
    std::stable_sort(res.begin(), res.end(), [](const perf &l, const perf &r) {
        const bool lo = l.status == CUDNN_STATUS_SUCCESS, ro = r.status == CUDNN_STATUS_SUCCESS;
        if (lo != ro) return lo;
        return lo && l.time < r.time;
    });
    *returned = std::min(requested, (int)res.size());
    return CUDNN_STATUS_SUCCESS;
}

template <typename T> void put_perf(const std::vector<perf> &res, int n, T *out)
{
    for (int i = 0; i < n; i++) {
        memset(&out[i], 0, sizeof out[i]);
        out[i].algo = (decltype(out[i].algo))res[i].algo;
        out[i].status = res[i].status;
        out[i].time = res[i].time;
        out[i].memory = res[i].memory;
        out[i].determinism = res[i].det;
        out[i].mathType = res[i].math;
    }
}


} /* namespace */

extern "C" {

/* ---- convolution ------------------------------------------------------------------------- */
#define CONV_SETUP(fn, xd, wd, yd)                                                                \
    geom g;                                                                                       \
    if (!h) return CUDNN_STATUS_BAD_PARAM;                                                        \
    if (cudnnStatus_t e_ = conv_geom(fn, xd, wd, conv, yd, &g)) return e_

cudnnStatus_t cudnnGetConvolutionForwardWorkspaceSize(
    cudnnHandle_t h, const cudnnTensorDescriptor_t xd, const cudnnFilterDescriptor_t wd,
    const cudnnConvolutionDescriptor_t conv, const cudnnTensorDescriptor_t yd,
    cudnnConvolutionFwdAlgo_t algo, size_t *bytes)
{
    CONV_SETUP("cudnnGetConvolutionForwardWorkspaceSize", xd, wd, yd);
    if (!bytes || (unsigned)algo >= CUDNN_CONVOLUTION_FWD_ALGO_COUNT) return CUDNN_STATUS_BAD_PARAM;
    const algo_info ai = fwd_algo(g, algo);
    if (!ai.supported) return CUDNN_STATUS_NOT_SUPPORTED;
    *bytes = ai.workspace;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetConvolutionBackwardDataWorkspaceSize(
    cudnnHandle_t h, const cudnnFilterDescriptor_t wd, const cudnnTensorDescriptor_t dyd,
    const cudnnConvolutionDescriptor_t conv, const cudnnTensorDescriptor_t dxd,
    cudnnConvolutionBwdDataAlgo_t algo, size_t *bytes)
{
    CONV_SETUP("cudnnGetConvolutionBackwardDataWorkspaceSize", dxd, wd, dyd);
    if (!bytes || (unsigned)algo >= CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT)
        return CUDNN_STATUS_BAD_PARAM;
    const algo_info ai = data_algo(g, algo);
    if (!ai.supported) return CUDNN_STATUS_NOT_SUPPORTED;
    *bytes = ai.workspace;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetConvolutionBackwardFilterWorkspaceSize(
    cudnnHandle_t h, const cudnnTensorDescriptor_t xd, const cudnnTensorDescriptor_t dyd,
    const cudnnConvolutionDescriptor_t conv, const cudnnFilterDescriptor_t dwd,
    cudnnConvolutionBwdFilterAlgo_t algo, size_t *bytes)
{
    CONV_SETUP("cudnnGetConvolutionBackwardFilterWorkspaceSize", xd, dwd, dyd);
    if (!bytes || (unsigned)algo >= CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT)
        return CUDNN_STATUS_BAD_PARAM;
    const algo_info ai = filter_algo(g, algo);
    if (!ai.supported) return CUDNN_STATUS_NOT_SUPPORTED;
    *bytes = ai.workspace;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnFindConvolutionForwardAlgorithmEx(
    cudnnHandle_t h, const cudnnTensorDescriptor_t xd, const void *x,
    const cudnnFilterDescriptor_t wd, const void *w, const cudnnConvolutionDescriptor_t conv,
    const cudnnTensorDescriptor_t yd, void *y, const int requested, int *returned,
    cudnnConvolutionFwdAlgoPerf_t *perf_out, void *ws, size_t ws_bytes)
{
    const char *fn = "cudnnFindConvolutionForwardAlgorithmEx";
    count_call(fn);
    if (h) (void)run_stream_work(h->stream); /* it runs after the stream's work, and blocks */
    if (declines(fn)) return CUDNN_STATUS_NOT_SUPPORTED_SHAPE;
    CONV_SETUP(fn, xd, wd, yd);
    if (!perf_out) return CUDNN_STATUS_BAD_PARAM;
    if (!on_device(fn, "x", x, x_bytes(g)) || !on_device(fn, "w", w, w_bytes(g)) ||
        !on_device(fn, "y", y, y_bytes(g)))
        return CUDNN_STATUS_BAD_PARAM;
    std::vector<perf> res;
    cudnnStatus_t e = find(fn, DIR_FWD, g, conv->math, (const float *)x, (const float *)w,
                           (float *)y, requested, returned, res, ws, ws_bytes);
    if (e == CUDNN_STATUS_SUCCESS) put_perf(res, *returned, perf_out);
    return e;
}

cudnnStatus_t cudnnFindConvolutionBackwardDataAlgorithmEx(
    cudnnHandle_t h, const cudnnFilterDescriptor_t wd, const void *w,
    const cudnnTensorDescriptor_t dyd, const void *dy, const cudnnConvolutionDescriptor_t conv,
    const cudnnTensorDescriptor_t dxd, void *dx, const int requested, int *returned,
    cudnnConvolutionBwdDataAlgoPerf_t *perf_out, void *ws, size_t ws_bytes)
{
    const char *fn = "cudnnFindConvolutionBackwardDataAlgorithmEx";
    count_call(fn);
    if (h) (void)run_stream_work(h->stream); /* it runs after the stream's work, and blocks */
    if (declines(fn)) return CUDNN_STATUS_NOT_SUPPORTED_SHAPE;
    CONV_SETUP(fn, dxd, wd, dyd);
    if (!perf_out) return CUDNN_STATUS_BAD_PARAM;
    if (!on_device(fn, "w", w, w_bytes(g)) || !on_device(fn, "dy", dy, y_bytes(g)) ||
        !on_device(fn, "dx", dx, x_bytes(g)))
        return CUDNN_STATUS_BAD_PARAM;
    std::vector<perf> res;
    cudnnStatus_t e = find(fn, DIR_DATA, g, conv->math, (const float *)dy, (const float *)w,
                           (float *)dx, requested, returned, res, ws, ws_bytes);
    if (e == CUDNN_STATUS_SUCCESS) put_perf(res, *returned, perf_out);
    return e;
}

cudnnStatus_t cudnnFindConvolutionBackwardFilterAlgorithmEx(
    cudnnHandle_t h, const cudnnTensorDescriptor_t xd, const void *x,
    const cudnnTensorDescriptor_t dyd, const void *dy, const cudnnConvolutionDescriptor_t conv,
    const cudnnFilterDescriptor_t dwd, void *dw, const int requested, int *returned,
    cudnnConvolutionBwdFilterAlgoPerf_t *perf_out, void *ws, size_t ws_bytes)
{
    const char *fn = "cudnnFindConvolutionBackwardFilterAlgorithmEx";
    count_call(fn);
    if (h) (void)run_stream_work(h->stream); /* it runs after the stream's work, and blocks */
    if (declines(fn)) return CUDNN_STATUS_NOT_SUPPORTED_SHAPE;
    CONV_SETUP(fn, xd, dwd, dyd);
    if (!perf_out) return CUDNN_STATUS_BAD_PARAM;
    if (!on_device(fn, "x", x, x_bytes(g)) || !on_device(fn, "dy", dy, y_bytes(g)) ||
        !on_device(fn, "dw", dw, w_bytes(g)))
        return CUDNN_STATUS_BAD_PARAM;
    std::vector<perf> res;
    cudnnStatus_t e = find(fn, DIR_FILTER, g, conv->math, (const float *)x, (const float *)dy,
                           (float *)dw, requested, returned, res, ws, ws_bytes);
    if (e == CUDNN_STATUS_SUCCESS) put_perf(res, *returned, perf_out);
    return e;
}

cudnnStatus_t cudnnConvolutionForward(cudnnHandle_t h, const void *alpha,
                                      const cudnnTensorDescriptor_t xd, const void *x,
                                      const cudnnFilterDescriptor_t wd, const void *w,
                                      const cudnnConvolutionDescriptor_t conv,
                                      cudnnConvolutionFwdAlgo_t algo, void *ws, size_t ws_bytes,
                                      const void *beta, const cudnnTensorDescriptor_t yd, void *y)
{
    if (h && deferring(h->stream)) {
        auto al = snap_scalar(alpha), be = snap_scalar(beta);
        auto XD = snap(xd), YD = snap(yd);
        auto WD = snap(wd);
        auto CV = snap(conv);
        return capture_call(h->stream, [=](cudnnHandle_t now) {
            return cudnnConvolutionForward(now, al.get(), XD.get(), x, WD.get(), w, CV.get(),
                                           algo, ws, ws_bytes, be.get(), YD.get(), y);
        });
    }
    const char *fn = "cudnnConvolutionForward";
    count_call(fn);
    if (declines(fn)) return CUDNN_STATUS_NOT_SUPPORTED_SHAPE;
    CONV_SETUP(fn, xd, wd, yd);
    if (!scalars(fn, alpha, beta) || !on_device(fn, "x", x, x_bytes(g)) ||
        !on_device(fn, "w", w, w_bytes(g)) || !on_device(fn, "y", y, y_bytes(g)))
        return CUDNN_STATUS_BAD_PARAM;
    return run_algo(fn, DIR_FWD, g, conv->math, algo, (const float *)x, (const float *)w,
                    *(const float *)alpha, *(const float *)beta, (float *)y, ws, ws_bytes);
}

cudnnStatus_t cudnnConvolutionBackwardData(cudnnHandle_t h, const void *alpha,
                                           const cudnnFilterDescriptor_t wd, const void *w,
                                           const cudnnTensorDescriptor_t dyd, const void *dy,
                                           const cudnnConvolutionDescriptor_t conv,
                                           cudnnConvolutionBwdDataAlgo_t algo, void *ws,
                                           size_t ws_bytes, const void *beta,
                                           const cudnnTensorDescriptor_t dxd, void *dx)
{
    if (h && deferring(h->stream)) {
        auto al = snap_scalar(alpha), be = snap_scalar(beta);
        auto DYD = snap(dyd), DXD = snap(dxd);
        auto WD = snap(wd);
        auto CV = snap(conv);
        return capture_call(h->stream, [=](cudnnHandle_t now) {
            return cudnnConvolutionBackwardData(now, al.get(), WD.get(), w, DYD.get(), dy,
                                                CV.get(), algo, ws, ws_bytes, be.get(),
                                                DXD.get(), dx);
        });
    }
    const char *fn = "cudnnConvolutionBackwardData";
    count_call(fn);
    if (declines(fn)) return CUDNN_STATUS_NOT_SUPPORTED_SHAPE;
    CONV_SETUP(fn, dxd, wd, dyd);
    if (!scalars(fn, alpha, beta) || !on_device(fn, "w", w, w_bytes(g)) ||
        !on_device(fn, "dy", dy, y_bytes(g)) || !on_device(fn, "dx", dx, x_bytes(g)))
        return CUDNN_STATUS_BAD_PARAM;
    return run_algo(fn, DIR_DATA, g, conv->math, algo, (const float *)dy, (const float *)w,
                    *(const float *)alpha, *(const float *)beta, (float *)dx, ws, ws_bytes);
}

cudnnStatus_t cudnnConvolutionBackwardFilter(cudnnHandle_t h, const void *alpha,
                                             const cudnnTensorDescriptor_t xd, const void *x,
                                             const cudnnTensorDescriptor_t dyd, const void *dy,
                                             const cudnnConvolutionDescriptor_t conv,
                                             cudnnConvolutionBwdFilterAlgo_t algo, void *ws,
                                             size_t ws_bytes, const void *beta,
                                             const cudnnFilterDescriptor_t dwd, void *dw)
{
    if (h && deferring(h->stream)) {
        auto al = snap_scalar(alpha), be = snap_scalar(beta);
        auto XD = snap(xd), DYD = snap(dyd);
        auto DWD = snap(dwd);
        auto CV = snap(conv);
        return capture_call(h->stream, [=](cudnnHandle_t now) {
            return cudnnConvolutionBackwardFilter(now, al.get(), XD.get(), x, DYD.get(), dy,
                                                  CV.get(), algo, ws, ws_bytes, be.get(),
                                                  DWD.get(), dw);
        });
    }
    const char *fn = "cudnnConvolutionBackwardFilter";
    count_call(fn);
    if (declines(fn)) return CUDNN_STATUS_NOT_SUPPORTED_SHAPE;
    CONV_SETUP(fn, xd, dwd, dyd);
    if (!scalars(fn, alpha, beta) || !on_device(fn, "x", x, x_bytes(g)) ||
        !on_device(fn, "dy", dy, y_bytes(g)) || !on_device(fn, "dw", dw, w_bytes(g)))
        return CUDNN_STATUS_BAD_PARAM;
    return run_algo(fn, DIR_FILTER, g, conv->math, algo, (const float *)x, (const float *)dy,
                    *(const float *)alpha, *(const float *)beta, (float *)dw, ws, ws_bytes);
}

/* db = alpha * (sum of dy over N, H, W) + beta * db; db is (1, K, 1, 1). */
cudnnStatus_t cudnnConvolutionBackwardBias(cudnnHandle_t h, const void *alpha,
                                           const cudnnTensorDescriptor_t dyd, const void *dy,
                                           const void *beta, const cudnnTensorDescriptor_t dbd,
                                           void *db)
{
    if (h && deferring(h->stream)) {
        auto al = snap_scalar(alpha), be = snap_scalar(beta);
        auto DYD = snap(dyd), DBD = snap(dbd);
        return capture_call(h->stream, [=](cudnnHandle_t now) {
            return cudnnConvolutionBackwardBias(now, al.get(), DYD.get(), dy, be.get(), DBD.get(),
                                                db);
        });
    }
    const char *fn = "cudnnConvolutionBackwardBias";
    count_call(fn);
    if (declines(fn)) return CUDNN_STATUS_NOT_SUPPORTED_SHAPE;
    if (!h || !ready(dyd) || !ready(dbd) || !scalars(fn, alpha, beta))
        return CUDNN_STATUS_BAD_PARAM;
    if (dbd->n != 1 || dbd->c != dyd->c || dbd->h != 1 || dbd->w != 1) {
        say("%s: db (%d, %d, %d, %d) for dy with %d channels", fn, dbd->n, dbd->c, dbd->h,
            dbd->w, dyd->c);
        return CUDNN_STATUS_BAD_PARAM;
    }
    if (!on_device(fn, "dy", dy, numel(dyd) * 4) || !on_device(fn, "db", db, numel(dbd) * 4))
        return CUDNN_STATUS_BAD_PARAM;
    if (no_compute()) return CUDNN_STATUS_SUCCESS;
    const float *p = (const float *)dy;
    const size_t hw = (size_t)dyd->h * dyd->w;
    for (int c = 0; c < dyd->c; c++) {
        double acc = 0;
        for (int n = 0; n < dyd->n; n++)
            for (size_t i = 0; i < hw; i++) acc += p[((size_t)n * dyd->c + c) * hw + i];
        blend((float *)db + c, acc, *(const float *)alpha, *(const float *)beta);
    }
    return CUDNN_STATUS_SUCCESS;
}

} /* extern "C" */

/* ---- for the graph API (emu_cudnn_backend.cpp) ------------------------------------------- */
namespace cnn_emu {

/* The geometry of d, checked as the legacy descriptors are (the same descriptors, made here). */
static cudnnStatus_t geom_of(const char *fn, const conv_dims &d, geom *g)
{
    const int64_t v[] = {d.n, d.c, d.h, d.w, d.k, d.cg, d.r, d.s, d.p, d.q,
                         d.ph, d.pw, d.sh, d.sw, d.dh, d.dw};
    for (int64_t x : v)
        if (x < 0 || x > 0x7fffffff) {
            say("%s: a size or stride of %lld is beyond int", fn, (long long)x);
            return CUDNN_STATUS_NOT_SUPPORTED_SHAPE;
        }
    if (d.cg <= 0 || d.c % d.cg != 0 || d.sh < 1 || d.sw < 1 || d.dh < 1 || d.dw < 1) {
        say("%s: x has %lld channels, the filter %lld per group; strides %lld, %lld, "
            "dilations %lld, %lld", fn, (long long)d.c, (long long)d.cg, (long long)d.sh,
            (long long)d.sw, (long long)d.dh, (long long)d.dw);
        return CUDNN_STATUS_BAD_PARAM;
    }
    const cudnnTensorStruct x{true, (int)d.n, (int)d.c, (int)d.h, (int)d.w};
    const cudnnTensorStruct y{true, (int)d.n, (int)d.k, (int)d.p, (int)d.q};
    const cudnnFilterStruct w{true, (int)d.k, (int)d.cg, (int)d.r, (int)d.s};
    const cudnnConvolutionStruct cv{true, (int)d.ph, (int)d.pw, (int)d.sh, (int)d.sw,
                                    (int)d.dh, (int)d.dw, CUDNN_CROSS_CORRELATION,
                                    (int)(d.c / d.cg), CUDNN_DEFAULT_MATH};
    return conv_geom(fn, &x, &w, &cv, &y, g);
}

cudnnStatus_t conv_check(const char *fn, const conv_dims &d)
{
    geom g;
    return geom_of(fn, d, &g);
}

bool conv_algo(int dir, const conv_dims &d, int algo, size_t *ws, bool *deterministic)
{
    geom g;
    if (geom_of("conv_algo", d, &g) != CUDNN_STATUS_SUCCESS || algo < 0 ||
        algo >= algo_count[dir])
        return false;
    const algo_info ai = info_of(dir, g, algo);
    *ws = ai.workspace;
    *deterministic = ai.det == CUDNN_DETERMINISTIC;
    return ai.supported;
}

cudnnStatus_t conv_run(const char *fn, int dir, const conv_dims &d, int algo, bool tensor_core,
                       const void *in0, const void *in1, void *out, void *ws, size_t ws_bytes)
{
    geom g;
    cudnnStatus_t e = geom_of(fn, d, &g);
    if (e != CUDNN_STATUS_SUCCESS) return e;
    /* Operand sizes per direction: forward x, w -> y; backward-data dy, w -> dx;
     * backward-filter x, dy -> dw. */
    const size_t sizes[3][3] = {{x_bytes(g), w_bytes(g), y_bytes(g)},
                                {y_bytes(g), w_bytes(g), x_bytes(g)},
                                {x_bytes(g), y_bytes(g), w_bytes(g)}};
    if (!on_device(fn, "input 0", in0, sizes[dir][0]) ||
        !on_device(fn, "input 1", in1, sizes[dir][1]) ||
        !on_device(fn, "output", out, sizes[dir][2]))
        return CUDNN_STATUS_BAD_PARAM;
    return run_algo(fn, dir, g, tensor_core ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH, algo,
                    (const float *)in0, (const float *)in1, 1.0f, 0.0f, (float *)out, ws, ws_bytes);
}

} /* namespace cnn_emu */

