/* conv2d_cudnn.c — conv2d through cuDNN: NCHW float descriptors, the algorithm chosen by timing
 * (cudnnFind*AlgorithmEx; also, as asked, cuBLAS GEMMs for 1x1 convs and the graph API's
 * engines) once per key and kept per context (conv2d_cache_cudnn.c; cnn_conv2d_cudnn_algo names
 * the choice), workspace from the caching allocator under a cap. Built only with CUDNN=1. It
 * answers CNN_ERR_UNSUPPORTED where cuDNN cannot do a case (the caller then uses cuda/conv2d.cu,
 * which overwrites the whole output); it never prints. */
#include "cuda_check.h"

#include <limits.h>
#include <pthread.h>

/* cuDNN 9 marks its whole v7-style convolution API deprecated, yet ships it in every 9.x; it is
 * used instead of the graph API so that the same calls run on each cuDNN 9 release (the GPU
 * machines have 9.14, this build 9.19). */
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

enum { DIR_FORWARD, DIR_DATA, DIR_FILTER };
static const char *const dir_name[] = {"forward", "backward-data", "backward-filter"};

static size_t workspace_cap(void);
static int engines_mode(void);
static int gemm_preference(void);

/* The key of one call: the geometry plus the context's device, math/determinism flags, the
 * buffers' alignment and the environment's settings for the search. */
static void key_of(const cnn_context *ctx, const cnn_cuda_conv *g, int dir, bool aligned,
                   cnn_conv_algo_key *key)
{
    memset(key, 0, sizeof *key);
    key->aligned = aligned;
    key->device = ctx->device.index;
    key->dir = dir;
    key->tf32 = ctx->tf32;
    key->deterministic = ctx->deterministic;
    key->n = g->n, key->c = g->c, key->h = g->h, key->w = g->w;
    key->k = g->k, key->r = g->r, key->s = g->s;
    key->sh = g->sh, key->sw = g->sw, key->ph = g->ph, key->pw = g->pw;
    key->dh = g->dh, key->dw = g->dw, key->groups = g->groups;
    key->cap = workspace_cap();
    key->engines = engines_mode();
    key->gemm_pref = gemm_preference();
}

/* ---- descriptors --------------------------------------------------------------------------- */
typedef struct conv_descs {
    cudnnTensorDescriptor_t x, y; /* x: (N, C, H, W), y: (N, K, P, Q) */
    cudnnFilterDescriptor_t w;    /* (K, C/groups, R, S) */
    cudnnConvolutionDescriptor_t conv;
} conv_descs;

/* A parameter cuDNN rejects is a case it cannot do, not a failure. */
static cnn_status setup_status_of(cudnnStatus_t e)
{
    return (e >= 2000 && e < 4000) ? CNN_ERR_UNSUPPORTED : cnn_cudnn_status_of(e);
}
#define SETUP_TRY(stmt)                                                                           \
    CNN_CUDA_CHECK_GEN(stmt, cudnnStatus_t, CUDNN_STATUS_SUCCESS, setup_status_of,                \
                       cudnnGetErrorString, st = cnn_cs_; goto done)

static void descs_free(conv_descs *d)
{
    if (d->x) (void)cudnnDestroyTensorDescriptor(d->x);
    if (d->y) (void)cudnnDestroyTensorDescriptor(d->y);
    if (d->w) (void)cudnnDestroyFilterDescriptor(d->w);
    if (d->conv) (void)cudnnDestroyConvolutionDescriptor(d->conv);
    memset(d, 0, sizeof *d);
}

static cnn_status descs_make(const cnn_cuda_conv *g, cudnnMathType_t math, conv_descs *d)
{
    cnn_status st = CNN_OK;
    memset(d, 0, sizeof *d);
    /* The v7 API takes int dimensions and strides: tensors of 2^31 elements are beyond it. */
    CNN_CHECK(g->n * g->c * g->h * g->w < INT_MAX && g->n * g->k * g->p * g->q < INT_MAX &&
                  g->k * g->cg * g->r * g->s < INT_MAX,
              CNN_ERR_UNSUPPORTED, "conv2d: cuDNN takes tensors under 2^31 elements");
    CNN_CHECK(cnn_cuda_window_fits_int(g->h, g->w, (int)g->r, (int)g->s, g->sh, g->sw, g->ph,
                                       g->pw, g->dh, g->dw),
              CNN_ERR_UNSUPPORTED, "conv2d: padding, stride or dilation near 2^30 is not given "
              "to cuDNN");
    CNN_CUDNN_TRYG(cudnnCreateTensorDescriptor(&d->x));
    CNN_CUDNN_TRYG(cudnnCreateTensorDescriptor(&d->y));
    CNN_CUDNN_TRYG(cudnnCreateFilterDescriptor(&d->w));
    CNN_CUDNN_TRYG(cudnnCreateConvolutionDescriptor(&d->conv));
    SETUP_TRY(cudnnSetTensor4dDescriptor(d->x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, (int)g->n,
                                         (int)g->c, (int)g->h, (int)g->w));
    SETUP_TRY(cudnnSetTensor4dDescriptor(d->y, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, (int)g->n,
                                         (int)g->k, (int)g->p, (int)g->q));
    SETUP_TRY(cudnnSetFilter4dDescriptor(d->w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, (int)g->k,
                                         (int)g->cg, (int)g->r, (int)g->s));
    SETUP_TRY(cudnnSetConvolution2dDescriptor(d->conv, g->ph, g->pw, g->sh, g->sw, g->dh, g->dw,
                                              CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    SETUP_TRY(cudnnSetConvolutionGroupCount(d->conv, g->groups));
    SETUP_TRY(cudnnSetConvolutionMathType(d->conv, math));
done:
    if (st != CNN_OK) descs_free(d);
    return st;
}

/* ---- workspace ------------------------------------------------------------------------------ */
/* The cap on any one convolution's workspace: CNN_CUDNN_WORKSPACE_MB, default 1 GiB. PyTorch
 * (cudnn.benchmark) sets no cap, so a low one could leave cuDNN's fastest algorithm for a
 * large-batch shape out of the choice; 1 GiB is transient and small beside an 80 GB GPU. */
static size_t workspace_cap(void)
{
    const char *v = getenv("CNN_CUDNN_WORKSPACE_MB");
    char *end = NULL;
    long mb = v ? strtol(v, &end, 10) : -1;
    if (!v || end == v || mb < 0) mb = 1024;
    return (size_t)mb << 20;
}

/* A device buffer of `bytes` from the caching allocator (a float tensor, so the block returns
 * to the cache when freed); *ws NULL and *p NULL for 0 bytes. */
static cnn_status workspace_get(cnn_context *ctx, size_t bytes, const char *what, cnn_tensor **ws,
                                void **p)
{
    *ws = NULL;
    *p = NULL;
    if (bytes == 0) return CNN_OK;
    cnn_shape s = CNN_SHAPE((int64_t)((bytes + 3) / 4));
    cnn_status st = cnn_tensor_empty(s, CNN_F32, ctx->device, ws);
    if (st == CNN_ERR_OUT_OF_MEMORY)
        return cnn_error_prefix(st, "conv2d: cuDNN %s workspace of %zu bytes", what, bytes);
    CNN_TRY(st);
    *p = cnn_ptr(*ws);
    return CNN_OK;
}

/* ---- algorithm search ------------------------------------------------------------------------ */
/* The fields shared by the three cudnnConvolution*AlgoPerf_t structs. */
typedef struct perf {
    int algo;
    float time; /* ms, as the search measured it */
    cudnnStatus_t status;
    size_t memory;
    cudnnDeterminism_t determinism;
    cudnnMathType_t math;
} perf;

typedef struct conv_call {
    cnn_context *ctx;
    cudnnHandle_t h;
    const cnn_cuda_conv *g;
    int dir;
    conv_descs d;
    const float *in0, *in1; /* forward: x, w; data: dy, w; filter: x, dy */
    float *out;             /* y, dx or dw */
} conv_call;

static size_t algo_workspace(const conv_call *c, int algo)
{
    size_t b = 0;
    cudnnStatus_t e;
    if (c->dir == DIR_FORWARD)
        e = cudnnGetConvolutionForwardWorkspaceSize(c->h, c->d.x, c->d.w, c->d.conv, c->d.y,
                                                    (cudnnConvolutionFwdAlgo_t)algo, &b);
    else if (c->dir == DIR_DATA)
        e = cudnnGetConvolutionBackwardDataWorkspaceSize(c->h, c->d.w, c->d.y, c->d.conv, c->d.x,
                                                         (cudnnConvolutionBwdDataAlgo_t)algo, &b);
    else
        e = cudnnGetConvolutionBackwardFilterWorkspaceSize(
            c->h, c->d.x, c->d.y, c->d.conv, c->d.w, (cudnnConvolutionBwdFilterAlgo_t)algo, &b);
    return e == CUDNN_STATUS_SUCCESS ? b : 0;
}

#define N_ALGOS 8 /* >= each direction's CUDNN_CONVOLUTION_*_ALGO_COUNT */

/* CNN_CONV1X1=gemm|cudnn forces the choice for 1x1 convolutions (for tests and comparisons);
 * unset or anything else: the faster. 1 gemm, -1 cuDNN, 0 by time. */
static int gemm_preference(void)
{
    const char *v = getenv("CNN_CONV1X1");
    return !v ? 0 : !strcmp(v, "gemm") ? 1 : !strcmp(v, "cudnn") ? -1 : 0;
}

/* CNN_CUDNN_ENGINES: whether the search also times the graph API's engines, which the legacy
 * API lacks some of. Unset or 0: no (legacy algorithms only, the default until the engines are
 * measured on a GPU); 1: yes, the fastest of all is kept; only: the engines alone; first: the
 * heuristics' first acceptable engine, untimed (tests). */
enum { ENGINES_OFF, ENGINES_TIMED, ENGINES_ONLY, ENGINES_FIRST };
static int engines_mode(void)
{
    const char *v = getenv("CNN_CUDNN_ENGINES");
    if (!v) return ENGINES_OFF;
    return !strcmp(v, "1") ? ENGINES_TIMED : !strcmp(v, "only") ? ENGINES_ONLY
                                       : !strcmp(v, "first") ? ENGINES_FIRST : ENGINES_OFF;
}

/* cuDNN's own flag, and the algorithms its documentation names non-deterministic (atomics):
 * backward-data ALGO_0, backward-filter ALGO_0 and ALGO_3, excluded even if a release mislabels
 * them. */
static bool deterministic_algo(int dir, const perf *p)
{
    if (p->determinism != CUDNN_DETERMINISTIC) return false;
    if (dir == DIR_DATA) return p->algo != CUDNN_CONVOLUTION_BWD_DATA_ALGO_0;
    if (dir == DIR_FILTER)
        return p->algo != CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0 &&
               p->algo != CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3;
    return true;
}

/* Runs legacy algorithm `algo` for the call with alpha 1, beta 0, under `math` (ws: ws_bytes of
 * workspace). */
static cnn_status run_legacy(conv_call *c, int algo, cudnnMathType_t math, void *ws,
                             size_t ws_bytes)
{
    cnn_status st = CNN_OK;
    const float one = 1.0f, zero = 0.0f;
    CNN_CUDNN_TRYG(cudnnSetConvolutionMathType(c->d.conv, math));
    if (c->dir == DIR_FORWARD)
        CNN_CUDNN_RUN_TRYG(cudnnConvolutionForward(c->h, &one, c->d.x, c->in0, c->d.w, c->in1,
                                                   c->d.conv, (cudnnConvolutionFwdAlgo_t)algo, ws,
                                                   ws_bytes, &zero, c->d.y, c->out));
    else if (c->dir == DIR_DATA)
        CNN_CUDNN_RUN_TRYG(cudnnConvolutionBackwardData(
            c->h, &one, c->d.w, c->in1, c->d.y, c->in0, c->d.conv,
            (cudnnConvolutionBwdDataAlgo_t)algo, ws, ws_bytes, &zero, c->d.x, c->out));
    else
        CNN_CUDNN_RUN_TRYG(cudnnConvolutionBackwardFilter(
            c->h, &one, c->d.x, c->in0, c->d.y, c->in1, c->d.conv,
            (cudnnConvolutionBwdFilterAlgo_t)algo, ws, ws_bytes, &zero, c->d.w, c->out));
done:
    return st;
}

/* The time of the legacy algorithm the search chose, measured as the other candidates' are
 * (cudnnFind's own figure comes from another method of timing). */
typedef struct legacy_run {
    conv_call *c;
    const cnn_conv_algo_entry *e;
    void *ws;
} legacy_run;

static cnn_status run_legacy_entry(void *ud)
{
    const legacy_run *r = ud;
    return run_legacy(r->c, r->e->algo, r->e->math, r->ws, r->e->workspace);
}

/* The GEMM path's time on the call's own buffers (the output is overwritten, as the search's
 * runs overwrite it). ws: the search's workspace when large enough, else one of its own. */
typedef struct gemm_run {
    conv_call *c;
    void *ws;
    size_t ws_bytes;
} gemm_run;

static cnn_status run_gemm(void *ud)
{
    gemm_run *r = ud;
    return cnn_cuda_conv1x1_gemm(r->c->ctx, r->c->g, r->c->dir, r->c->in0, r->c->in1, r->c->out,
                                 r->ws, r->ws_bytes);
}

static cnn_status time_gemm(conv_call *c, void *ws, size_t ws_bytes, float *ms)
{
    cnn_tensor *own = NULL;
    if (!ws && ws_bytes) CNN_TRY(workspace_get(c->ctx, ws_bytes, "GEMM", &own, &ws));
    gemm_run r = {c, ws, ws_bytes};
    cnn_status st = cnn_cuda_time_mean(c->ctx, "conv2d", run_gemm, &r, ms);
    cnn_tensor_free(&own);
    return st;
}

/* Times cuDNN's legacy algorithms for the call, fastest first, into p[0, *n). */
static cnn_status find_legacy(conv_call *c, void *wp, size_t ws_bytes, perf *p, int *n)
{
    cnn_status st = CNN_OK;
    const int count = c->dir == DIR_FORWARD ? CUDNN_CONVOLUTION_FWD_ALGO_COUNT
                      : c->dir == DIR_DATA  ? CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT
                                            : CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT;
    if (c->dir == DIR_FORWARD) {
        cudnnConvolutionFwdAlgoPerf_t r[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
        CNN_CUDNN_RUN_TRYG(cudnnFindConvolutionForwardAlgorithmEx(
            c->h, c->d.x, c->in0, c->d.w, c->in1, c->d.conv, c->d.y, c->out, count, n, r, wp,
            ws_bytes));
        for (int i = 0; i < *n; i++)
            p[i] = (perf){r[i].algo, r[i].time, r[i].status, r[i].memory, r[i].determinism,
                          r[i].mathType};
    } else if (c->dir == DIR_DATA) {
        cudnnConvolutionBwdDataAlgoPerf_t r[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
        CNN_CUDNN_RUN_TRYG(cudnnFindConvolutionBackwardDataAlgorithmEx(
            c->h, c->d.w, c->in1, c->d.y, c->in0, c->d.conv, c->d.x, c->out, count, n, r, wp,
            ws_bytes));
        for (int i = 0; i < *n; i++)
            p[i] = (perf){r[i].algo, r[i].time, r[i].status, r[i].memory, r[i].determinism,
                          r[i].mathType};
    } else {
        cudnnConvolutionBwdFilterAlgoPerf_t r[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
        CNN_CUDNN_RUN_TRYG(cudnnFindConvolutionBackwardFilterAlgorithmEx(
            c->h, c->d.x, c->in0, c->d.y, c->in1, c->d.conv, c->d.w, c->out, count, n, r, wp,
            ws_bytes));
        for (int i = 0; i < *n; i++)
            p[i] = (perf){r[i].algo, r[i].time, r[i].status, r[i].memory, r[i].determinism,
                          r[i].mathType};
    }
done:
    return st;
}

/* Times every candidate on the call's own buffers (the output is overwritten, as the real call
 * will do again) and keeps the fastest acceptable one: cuDNN's legacy algorithms (with a
 * workspace as large as the hungriest one under the cap; those that succeeded, fit the cap,
 * are deterministic when asked, stay off the tensor cores unless TF32 is on, and never convert
 * float data to FP16), the 1x1 conv as cuBLAS GEMMs, and, as CNN_CUDNN_ENGINES asks, the
 * graph API's engines. */
static cnn_status search(conv_call *c, const cnn_conv_algo_key *key, cnn_conv_algo_entry *out)
{
    const size_t cap = key->cap;
    const int engines = key->engines;
    const bool legacy = engines != ENGINES_ONLY && engines != ENGINES_FIRST;
    const int counts[] = {CUDNN_CONVOLUTION_FWD_ALGO_COUNT, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT,
                          CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT};
    size_t ws_bytes = 0;
    for (int a = 0; legacy && a < counts[c->dir]; a++) {
        size_t b = algo_workspace(c, a);
        if (b <= cap && b > ws_bytes) ws_bytes = b;
    }
    cnn_tensor *ws = NULL;
    void *wp = NULL;
    CNN_TRY(workspace_get(c->ctx, ws_bytes, "search", &ws, &wp));

    cnn_status st = CNN_OK;
    perf p[N_ALGOS];
    int n = 0;
    if (legacy) {
        st = find_legacy(c, wp, ws_bytes, p, &n);
        /* cuDNN declining the legacy search still leaves its graph-API engines to ask. */
        if (st == CNN_ERR_UNSUPPORTED && engines != ENGINES_OFF) {
            cnn_clear_error();
            st = CNN_OK;
            n = 0;
        }
        if (st != CNN_OK) goto done;
    }
    /* Results come sorted by time: the first acceptable one is the fastest. */
    bool oom = false, found = false;
    float best_ms = 0;
    for (int i = 0; i < n && i < N_ALGOS && !found; i++) {
        if (p[i].status != CUDNN_STATUS_SUCCESS) {
            /* An algorithm that wanted more than the cap is not an out-of-memory. */
            oom |= cnn_cudnn_status_of(p[i].status) == CNN_ERR_OUT_OF_MEMORY &&
                   algo_workspace(c, p[i].algo) <= ws_bytes;
            continue;
        }
        /* The larger of what the search used and what cuDNN says the algorithm needs: some
         * releases reported the two differently. */
        const size_t asked = algo_workspace(c, p[i].algo);
        const size_t need = asked > p[i].memory ? asked : p[i].memory;
        if (need > ws_bytes) continue;
        if (key->deterministic && !deterministic_algo(c->dir, &p[i])) continue;
        /* TF32 only when asked; FP16 conversion of float data never (the engines' rule). */
        if (!key->tf32 && p[i].math != CUDNN_DEFAULT_MATH && p[i].math != CUDNN_FMA_MATH) continue;
        if (p[i].math == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION) continue;
        *out = (cnn_conv_algo_entry){.key = *key, .algo = p[i].algo, .math = p[i].math,
                                     .workspace = need};
        best_ms = p[i].time;
        found = true;
    }
    const bool gemm = legacy && cnn_cuda_conv1x1_gemm_fits(c->g);
    if (found && (gemm || engines != ENGINES_OFF)) {
        /* Timed again as the GEMMs and engines are, with the math it will run with. */
        cnn_conv_algo_entry run = *out;
        run.math = key->tf32 ? out->math : CUDNN_FMA_MATH;
        legacy_run r = {c, &run, wp};
        CNN_TRYG(cnn_cuda_time_mean(c->ctx, "conv2d", run_legacy_entry, &r, &best_ms));
    }
    /* A 1x1 convolution may also run as cuBLAS GEMMs (conv2d_gemm.c): timed here the same way,
     * and kept when faster. */
    if (gemm) {
        float gemm_ms = 0;
        const size_t gws = cnn_cuda_conv1x1_gemm_workspace(c->g, c->dir, cap);
        CNN_TRYG(time_gemm(c, gws <= ws_bytes ? wp : NULL, gws, &gemm_ms));
        if (!found || key->gemm_pref > 0 || (key->gemm_pref == 0 && gemm_ms < best_ms)) {
            *out = (cnn_conv_algo_entry){.key = *key, .algo = CNN_CONV_ALGO_GEMM,
                                         .math = CUDNN_DEFAULT_MATH, .workspace = gws};
            best_ms = gemm_ms;
            found = true;
        }
    }
    if (engines != ENGINES_OFF) {
        const cnn_cudnn_engine_call ec = {
            .ctx = c->ctx, .h = c->h, .g = c->g, .dir = c->dir, .tf32 = key->tf32,
            .deterministic = key->deterministic, .aligned = key->aligned, .cap = cap,
            .in0 = c->in0, .in1 = c->in1, .out = c->out};
        cnn_cudnn_plan *plan = NULL;
        float ms = 0;
        bool engine_oom = false;
        cnn_cudnn_engine_search(&ec, engines == ENGINES_FIRST, &plan, &ms, &engine_oom);
        oom |= engine_oom;
        if (plan && (!found || ms < best_ms)) {
            *out = (cnn_conv_algo_entry){.key = *key, .algo = CNN_CONV_ALGO_ENGINE,
                                         .math = CUDNN_DEFAULT_MATH,
                                         .workspace = cnn_cudnn_plan_workspace(plan),
                                         .plan = plan};
            found = true;
        } else {
            cnn_cudnn_plan_free(plan);
        }
    }
    if (found) goto done;
    if (oom)
        st = cnn_error(CNN_ERR_OUT_OF_MEMORY, "conv2d: cuDNN %s %s search ran out of GPU memory",
                       dir_name[c->dir], legacy ? "algorithm" : "engine");
    else
        st = cnn_error(CNN_ERR_UNSUPPORTED, "conv2d: cuDNN has no %s%s %s for this case "
                       "within a %zu-byte workspace", key->deterministic ? "deterministic " : "",
                       dir_name[c->dir], legacy ? "algorithm" : "graph-API engine", cap);
done:
    cnn_tensor_free(&ws);
    return st;
}

/* Sets up, finds (or recalls) the algorithm, and runs one direction with alpha 1, beta 0. */
static cnn_status run_conv(cnn_context *ctx, const cnn_cuda_conv *g, int dir, const float *in0,
                           const float *in1, float *out)
{
    cudaStream_t stream;
    CNN_TRY(cnn_cuda_enter(ctx, "conv2d", &stream));
    conv_call c = {.ctx = ctx, .g = g, .dir = dir, .in0 = in0, .in1 = in1, .out = out};
    CNN_TRY(cnn_cuda_cudnn(ctx, &c.h));
    cnn_conv_algo_key key;
    key_of(ctx, g, dir, (((uintptr_t)in0 | (uintptr_t)in1 | (uintptr_t)out) & 15) == 0, &key);
    cnn_conv_algo_entry e;
    const bool cached = cnn_conv_algo_cache_find(ctx, &key, &e);
    /* The legacy descriptors serve the search and the legacy algorithms; a cached GEMM or
     * engine choice runs without them. Exact FP32 unless TF32 is on: FMA math keeps cuDNN off
     * the tensor cores. With TF32 the default math, as PyTorch's allow_tf32 uses: it permits
     * TF32 tensor cores for float data on Ampere and later, and the search reports which math
     * each algorithm ran with. */
    if (!cached || (e.algo != CNN_CONV_ALGO_GEMM && e.algo != CNN_CONV_ALGO_ENGINE))
        CNN_TRY(descs_make(g, ctx->tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH, &c.d));

    cnn_status st = CNN_OK;
    cnn_tensor *ws = NULL;
    void *wp = NULL;
    cnn_cudnn_plan *uncached = NULL; /* a plan the cache could not keep: freed after the run */
    if (!cached) {
        /* Not CNN_ERR_UNSUPPORTED, which would send the call to the hand-written kernel. */
        if (cnn_cuda_capturing(ctx)) {
            st = cnn_error(CNN_ERR_INVALID_ARG, "conv2d: cuDNN's algorithm search for this %s "
                           "case would run inside a graph capture (it times algorithms and "
                           "waits for the GPU); run the captured function once before capturing "
                           "it", dir_name[dir]);
            goto done;
        }
        /* A refusal is kept too (algo -1): searching again on every call would time every
         * algorithm each time only to fall back again. An out-of-memory is not kept. */
        st = search(&c, &key, &e);
        if (st == CNN_ERR_UNSUPPORTED) e = (cnn_conv_algo_entry){.key = key, .algo = -1};
        if ((st == CNN_OK || st == CNN_ERR_UNSUPPORTED) && !cnn_conv_algo_cache_put(ctx, &e))
            uncached = e.plan;
        if (st != CNN_OK) goto done;
    }
    if (e.algo < 0) {
        st = cnn_error(CNN_ERR_UNSUPPORTED, "conv2d: cuDNN declined this %s case earlier",
                       dir_name[dir]);
        goto done;
    }
    /* With TF32 on, run with the math type that was timed. Exact FP32 keeps FMA math even when
     * the search reports the default one, which would let Ampere and later GPUs use TF32. */
    CNN_TRYG(workspace_get(ctx, e.workspace, dir_name[dir], &ws, &wp));
    if (e.algo == CNN_CONV_ALGO_GEMM) {
        st = cnn_cuda_conv1x1_gemm(ctx, g, dir, in0, in1, out, wp, e.workspace);
        goto done;
    }
    if (e.algo == CNN_CONV_ALGO_ENGINE) {
        st = cnn_cudnn_plan_run(c.h, e.plan, dir, in0, in1, out, wp);
        goto done;
    }
    st = run_legacy(&c, e.algo, key.tf32 ? e.math : CUDNN_FMA_MATH, wp, e.workspace);
done:
    /* Freed at once: the allocator hands the block out again only to later work on this
     * stream, ordered after this call. */
    cnn_tensor_free(&ws);
    descs_free(&c.d);
    cnn_cudnn_plan_free(uncached);
    return st;
}

/* A (1, K, 1, 1) descriptor for the bias and its gradient. */
static cnn_status bias_desc(const cnn_cuda_conv *g, cudnnTensorDescriptor_t *d)
{
    cnn_status st = CNN_OK;
    CNN_CUDNN_TRY(cudnnCreateTensorDescriptor(d));
    SETUP_TRY(cudnnSetTensor4dDescriptor(*d, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, (int)g->k, 1,
                                         1));
    return CNN_OK;
done:
    (void)cudnnDestroyTensorDescriptor(*d);
    *d = NULL;
    return st;
}

cnn_status cnn_cudnn_conv2d_forward(cnn_context *ctx, const cnn_cuda_conv *g, const float *x,
                                    const float *w, const float *b, float *y)
{
    CNN_TRY(run_conv(ctx, g, DIR_FORWARD, x, w, y));
    if (!b) return CNN_OK;
    cnn_status st = CNN_OK;
    cudnnHandle_t h;
    cudnnTensorDescriptor_t bd = NULL, yd = NULL;
    CNN_TRY(cnn_cuda_cudnn(ctx, &h));
    CNN_TRY(bias_desc(g, &bd));
    CNN_CUDNN_TRYG(cudnnCreateTensorDescriptor(&yd));
    CNN_CUDNN_TRYG(cudnnSetTensor4dDescriptor(yd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, (int)g->n,
                                          (int)g->k, (int)g->p, (int)g->q));
    const float one = 1.0f;
    CNN_CUDNN_TRYG(cudnnAddTensor(h, &one, bd, b, &one, yd, y));
done:
    (void)cudnnDestroyTensorDescriptor(bd);
    if (yd) (void)cudnnDestroyTensorDescriptor(yd);
    return st;
}

cnn_status cnn_cudnn_conv2d_backward_data(cnn_context *ctx, const cnn_cuda_conv *g,
                                          const float *dy, const float *w, float *dx)
{
    return run_conv(ctx, g, DIR_DATA, dy, w, dx);
}

cnn_status cnn_cudnn_conv2d_backward_filter(cnn_context *ctx, const cnn_cuda_conv *g,
                                            const float *dy, const float *x, float *dw,
                                            float *db)
{
    if (dw) CNN_TRY(run_conv(ctx, g, DIR_FILTER, x, dy, dw));
    if (!db) return CNN_OK;
    cnn_status st = CNN_OK;
    cudaStream_t stream;
    cudnnHandle_t h;
    cudnnTensorDescriptor_t bd = NULL, yd = NULL;
    CNN_TRY(cnn_cuda_enter(ctx, "conv2d backward", &stream));
    CNN_TRY(cnn_cuda_cudnn(ctx, &h));
    CNN_TRY(bias_desc(g, &bd));
    CNN_CUDNN_TRYG(cudnnCreateTensorDescriptor(&yd));
    CNN_CUDNN_TRYG(cudnnSetTensor4dDescriptor(yd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, (int)g->n,
                                          (int)g->k, (int)g->p, (int)g->q));
    const float one = 1.0f, zero = 0.0f;
    CNN_CUDNN_TRYG(cudnnConvolutionBackwardBias(h, &one, yd, dy, &zero, bd, db));
done:
    (void)cudnnDestroyTensorDescriptor(bd);
    if (yd) (void)cudnnDestroyTensorDescriptor(yd);
    return st;
}

/* ---- what the cache chose (cnn_conv2d_cudnn_algo) ------------------------------------------ */
const char *cnn_conv2d_cudnn_algo(const cnn_tensor *x, const cnn_tensor *w,
                                  const cnn_conv2d_params *p, int pass)
{
    static const cnn_conv2d_params defaults;
    if (!p) p = &defaults;
    cnn_context *ctx = cnn_ctx();
    if (!x || !w || pass < DIR_FORWARD || pass > DIR_FILTER || !ctx->gpu || !cnn_on_cuda(x) ||
        x->device.index != ctx->device.index || x->shape.ndim != 4 || w->shape.ndim != 4)
        return NULL;
    /* The geometry exactly as layers/conv2d.c resolves it for the cuDNN call (p and q are not
     * part of the key: the other sizes fix them). */
    cnn_cuda_conv g = {.n = x->shape.d[0], .c = x->shape.d[1], .h = x->shape.d[2],
                       .w = x->shape.d[3], .k = w->shape.d[0], .r = w->shape.d[2],
                       .s = w->shape.d[3], .cg = w->shape.d[1],
                       .sh = p->stride[0] ? p->stride[0] : 1, .sw = p->stride[1] ? p->stride[1] : 1,
                       .ph = p->padding[0], .pw = p->padding[1],
                       .dh = p->dilation[0] ? p->dilation[0] : 1,
                       .dw = p->dilation[1] ? p->dilation[1] : 1,
                       .groups = p->groups ? p->groups : 1};
    /* The alignment of x's and w's data stands for the call's: the other buffer (an output or a
     * gradient) is a fresh allocation. */
    const bool aligned = (((uintptr_t)cnn_ptr(x) | (uintptr_t)cnn_ptr(w)) & 15) == 0;
    cnn_conv_algo_key key;
    cnn_conv_algo_entry e;
    key_of(ctx, &g, pass, aligned, &key);
    if (!cnn_conv_algo_cache_find(ctx, &key, &e) || e.algo < 0) return NULL;
    return e.algo == CNN_CONV_ALGO_ENGINE ? cnn_cudnn_plan_name(e.plan)
                                          : cnn_conv_algo_name(pass, e.algo);
}
