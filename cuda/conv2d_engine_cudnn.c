/* conv2d_engine_cudnn.c — one convolution direction through cuDNN's graph (backend) API: its
 * one-operation graph, the engine configurations cuDNN's heuristics propose (modes A, then
 * FALLBACK), each made into an execution plan and timed on the call's own buffers. The fastest
 * acceptable plan is what conv2d_cudnn.c's search weighs against the legacy algorithms: PyTorch
 * reaches cuDNN this way, through engines the legacy API does not offer. Only calls that
 * cuDNN 9.0 already had are used. CUDNN=1 builds only; it never prints. */
#include "cuda_check.h"

#include <stdio.h>

/* cuDNN 9.19 marks CUDNN_ATTR_OPERATIONGRAPH_HANDLE and CUDNN_ATTR_EXECUTION_PLAN_HANDLE
 * deprecated; 9.0 requires them, and what replaces them is newer than 9.0 (the GPU machines have
 * 9.14), so they stay. */
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

/* The tensors' unique ids in the graph and the variant pack. */
enum { UID_X = 'x', UID_W = 'w', UID_Y = 'y' };

/* Per mode, the heuristics' first MAX_CONFIGS configurations are read (likeliest first; many
 * may be unacceptable: TF32 ones lead for float data on recent GPUs). Per call, at most
 * MAX_TIMED plans that ran are timed, out of at most MAX_TRIED acceptable configurations made
 * into plans (a configuration the heuristics propose may still fail to finalize or to run, or
 * want more workspace than the cap: that costs a try, not a timing). */
#define MAX_CONFIGS 64
#define MAX_TIMED 12
#define MAX_TRIED 32

struct cnn_cudnn_plan {
    cudnnBackendDescriptor_t plan;
    size_t workspace;
    char name[32]; /* "ENGINE_<global index>" */
};

void cnn_cudnn_plan_free(cnn_cudnn_plan *p)
{
    if (!p) return;
    if (p->plan) (void)cudnnBackendDestroyDescriptor(p->plan);
    free(p);
}

size_t cnn_cudnn_plan_workspace(const cnn_cudnn_plan *p) { return p ? p->workspace : 0; }
const char *cnn_cudnn_plan_name(const cnn_cudnn_plan *p) { return p ? p->name : "NONE"; }

/* ---- building the graph: every descriptor made here is destroyed before returning ------------ */
#define N_DESCS 6
typedef struct graph_descs {
    cudnnBackendDescriptor_t d[N_DESCS]; /* x, w, y, conv, op, graph */
} graph_descs;

static void graph_free(graph_descs *gd)
{
    for (int i = 0; i < N_DESCS; i++)
        if (gd->d[i]) (void)cudnnBackendDestroyDescriptor(gd->d[i]);
    memset(gd, 0, sizeof *gd);
}

static cudnnStatus_t set_i64(cudnnBackendDescriptor_t d, cudnnBackendAttributeName_t a, int64_t n,
                             const int64_t *v)
{
    return cudnnBackendSetAttribute(d, a, CUDNN_TYPE_INT64, n, v);
}

static cudnnStatus_t set_desc(cudnnBackendDescriptor_t d, cudnnBackendAttributeName_t a,
                              cudnnBackendDescriptor_t v)
{
    return cudnnBackendSetAttribute(d, a, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &v);
}

/* A packed NCHW float tensor. */
static cudnnStatus_t tensor_desc(int64_t uid, const int64_t dims[4], int64_t align,
                                 cudnnBackendDescriptor_t *out)
{
    const cudnnDataType_t f = CUDNN_DATA_FLOAT;
    const int64_t strides[4] = {dims[1] * dims[2] * dims[3], dims[2] * dims[3], dims[3], 1};
    cudnnStatus_t e = cudnnBackendCreateDescriptor(CUDNN_BACKEND_TENSOR_DESCRIPTOR, out);
    if (!e) e = cudnnBackendSetAttribute(*out, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE,
                                         1, &f);
    if (!e) e = set_i64(*out, CUDNN_ATTR_TENSOR_DIMENSIONS, 4, dims);
    if (!e) e = set_i64(*out, CUDNN_ATTR_TENSOR_STRIDES, 4, strides);
    if (!e) e = set_i64(*out, CUDNN_ATTR_TENSOR_UNIQUE_ID, 1, &uid);
    if (!e) e = set_i64(*out, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, 1, &align);
    if (!e) e = cudnnBackendFinalize(*out);
    return e;
}

/* The finalized operation graph of direction dir over g (groups: the filter's C/groups). */
static cudnnStatus_t graph_make(cudnnHandle_t h, const cnn_cuda_conv *g, int dir, int64_t align,
                                graph_descs *gd)
{
    enum { X, W, Y, CONV, OP, GRAPH };
    memset(gd, 0, sizeof *gd);
    const int64_t xd[4] = {g->n, g->c, g->h, g->w}, wd[4] = {g->k, g->cg, g->r, g->s},
                  yd[4] = {g->n, g->k, g->p, g->q};
    cudnnStatus_t e = tensor_desc(UID_X, xd, align, &gd->d[X]);
    if (!e) e = tensor_desc(UID_W, wd, align, &gd->d[W]);
    if (!e) e = tensor_desc(UID_Y, yd, align, &gd->d[Y]);
    if (e) return e;

    const int64_t two = 2, dil[2] = {g->dh, g->dw}, str[2] = {g->sh, g->sw},
                  pad[2] = {g->ph, g->pw};
    const cudnnDataType_t f = CUDNN_DATA_FLOAT;
    const cudnnConvolutionMode_t mode = CUDNN_CROSS_CORRELATION;
    cudnnBackendDescriptor_t cv = NULL;
    e = cudnnBackendCreateDescriptor(CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR, &gd->d[CONV]);
    cv = gd->d[CONV];
    if (!e) e = set_i64(cv, CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS, 1, &two);
    if (!e) e = cudnnBackendSetAttribute(cv, CUDNN_ATTR_CONVOLUTION_COMP_TYPE,
                                         CUDNN_TYPE_DATA_TYPE, 1, &f);
    if (!e) e = cudnnBackendSetAttribute(cv, CUDNN_ATTR_CONVOLUTION_CONV_MODE,
                                         CUDNN_TYPE_CONVOLUTION_MODE, 1, &mode);
    if (!e) e = set_i64(cv, CUDNN_ATTR_CONVOLUTION_DILATIONS, 2, dil);
    if (!e) e = set_i64(cv, CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES, 2, str);
    if (!e) e = set_i64(cv, CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS, 2, pad);
    if (!e) e = set_i64(cv, CUDNN_ATTR_CONVOLUTION_POST_PADDINGS, 2, pad);
    if (!e) e = cudnnBackendFinalize(cv);
    if (e) return e;

    /* Per direction: the operation's type and its attributes for x, w, y (as the graph names
     * them: backward-data writes dx into x's place, backward-filter dw into w's). */
    static const cudnnBackendDescriptorType_t op_type[3] = {
        CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR,
        CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_DATA_DESCRIPTOR,
        CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_FILTER_DESCRIPTOR};
    static const cudnnBackendAttributeName_t attr[3][6] = {
        {CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W,
         CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y,
         CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC,
         CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA,
         CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_BETA},
        {CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DX, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_W,
         CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DY,
         CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_CONV_DESC,
         CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_ALPHA,
         CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_BETA},
        {CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_X,
         CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DW,
         CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DY,
         CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_CONV_DESC,
         CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_ALPHA,
         CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_BETA}};
    const float alpha = 1.0f, beta = 0.0f;
    cudnnBackendDescriptor_t op = NULL;
    e = cudnnBackendCreateDescriptor(op_type[dir], &gd->d[OP]);
    op = gd->d[OP];
    for (int i = 0; i < 4 && !e; i++) e = set_desc(op, attr[dir][i], gd->d[i]);
    if (!e) e = cudnnBackendSetAttribute(op, attr[dir][4], CUDNN_TYPE_FLOAT, 1, &alpha);
    if (!e) e = cudnnBackendSetAttribute(op, attr[dir][5], CUDNN_TYPE_FLOAT, 1, &beta);
    if (!e) e = cudnnBackendFinalize(op);
    if (e) return e;

    e = cudnnBackendCreateDescriptor(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR, &gd->d[GRAPH]);
    if (!e) e = set_desc(gd->d[GRAPH], CUDNN_ATTR_OPERATIONGRAPH_OPS, op);
    if (!e) e = cudnnBackendSetAttribute(gd->d[GRAPH], CUDNN_ATTR_OPERATIONGRAPH_HANDLE,
                                         CUDNN_TYPE_HANDLE, 1, &h);
    if (!e) e = cudnnBackendFinalize(gd->d[GRAPH]);
    return e;
}

/* ---- engine configurations ------------------------------------------------------------------- */
/* Up to max configurations heuristics `mode` proposes for the graph, into cfg[0, *n): created
 * here, destroyed by the caller. */
static cudnnStatus_t heuristics(cudnnBackendDescriptor_t graph, cudnnBackendHeurMode_t mode,
                                cudnnBackendDescriptor_t *cfg, int max, int *n)
{
    *n = 0;
    cudnnBackendDescriptor_t heur = NULL;
    int64_t avail = 0, got = 0;
    cudnnStatus_t e = cudnnBackendCreateDescriptor(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR, &heur);
    if (!e) e = set_desc(heur, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, graph);
    if (!e) e = cudnnBackendSetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE,
                                         1, &mode);
    if (!e) e = cudnnBackendFinalize(heur);
    if (!e) e = cudnnBackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                         CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &avail, NULL);
    if (!e && avail > max) avail = max;
    for (int i = 0; !e && i < avail; i++) {
        e = cudnnBackendCreateDescriptor(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR, &cfg[i]);
        if (!e) *n = i + 1;
    }
    if (!e && avail > 0)
        e = cudnnBackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                     CUDNN_TYPE_BACKEND_DESCRIPTOR, avail, &got, cfg);
    /* Descriptors cuDNN did not fill (all of them when it failed) are not handed on. */
    const int filled = e ? 0 : (int)(got < *n ? got : *n);
    for (int i = filled; i < *n; i++) (void)cudnnBackendDestroyDescriptor(cfg[i]);
    *n = filled;
    if (heur) (void)cudnnBackendDestroyDescriptor(heur);
    return e;
}

/* Whether the configuration's engine may run here: tensor cores on float data (TF32) only when
 * tf32; never inputs converted down (FP16/BF16 for float data: PyTorch passes over these too,
 * TF32 or not) nor a reduction in less than FP32; nothing non-deterministic when asked; and no
 * engine compiled at run time (seconds of NVRTC per shape, in the middle of a training step).
 * Its global index names it. */
static bool acceptable(cudnnBackendDescriptor_t cfg, bool tf32, bool deterministic,
                       int64_t *index)
{
    cudnnBackendDescriptor_t eng = NULL;
    cudnnBackendNumericalNote_t notes[CUDNN_NUMERICAL_NOTE_TYPE_COUNT];
    cudnnBackendBehaviorNote_t behav[CUDNN_BEHAVIOR_NOTE_TYPE_COUNT];
    int64_t n_notes = 0, n_behav = 0, one = 0;
    bool ok = false;
    cudnnStatus_t e = cudnnBackendCreateDescriptor(CUDNN_BACKEND_ENGINE_DESCRIPTOR, &eng);
    if (!e) e = cudnnBackendGetAttribute(cfg, CUDNN_ATTR_ENGINECFG_ENGINE,
                                         CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &one, &eng);
    if (!e) e = cudnnBackendGetAttribute(eng, CUDNN_ATTR_ENGINE_GLOBAL_INDEX, CUDNN_TYPE_INT64, 1,
                                         &one, index);
    if (!e) e = cudnnBackendGetAttribute(eng, CUDNN_ATTR_ENGINE_NUMERICAL_NOTE,
                                         CUDNN_TYPE_NUMERICAL_NOTE,
                                         CUDNN_NUMERICAL_NOTE_TYPE_COUNT, &n_notes, notes);
    if (!e) e = cudnnBackendGetAttribute(eng, CUDNN_ATTR_ENGINE_BEHAVIOR_NOTE,
                                         CUDNN_TYPE_BEHAVIOR_NOTE,
                                         CUDNN_BEHAVIOR_NOTE_TYPE_COUNT, &n_behav, behav);
    if (!e) {
        ok = true;
        for (int64_t i = 0; i < n_notes && i < CUDNN_NUMERICAL_NOTE_TYPE_COUNT; i++) {
            const cudnnBackendNumericalNote_t t = notes[i];
            if ((!tf32 && t == CUDNN_NUMERICAL_NOTE_TENSOR_CORE) ||
                t == CUDNN_NUMERICAL_NOTE_DOWN_CONVERT_INPUTS ||
                t == CUDNN_NUMERICAL_NOTE_REDUCED_PRECISION_REDUCTION)
                ok = false;
            if (deterministic && t == CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC) ok = false;
        }
        for (int64_t i = 0; i < n_behav && i < CUDNN_BEHAVIOR_NOTE_TYPE_COUNT; i++)
            if (behav[i] == CUDNN_BEHAVIOR_NOTE_RUNTIME_COMPILATION) ok = false;
    }
    if (eng) (void)cudnnBackendDestroyDescriptor(eng);
    return ok;
}

/* The execution plan of one configuration, or NULL where cuDNN cannot make one. */
static cnn_cudnn_plan *plan_make(cudnnHandle_t h, cudnnBackendDescriptor_t cfg, int64_t index,
                                 bool *oom)
{
    cnn_cudnn_plan *p = calloc(1, sizeof *p);
    if (!p) {
        *oom = true;
        return NULL;
    }
    int64_t ws = 0, one = 0;
    cudnnStatus_t e = cudnnBackendCreateDescriptor(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR,
                                                   &p->plan);
    if (!e) e = cudnnBackendSetAttribute(p->plan, CUDNN_ATTR_EXECUTION_PLAN_HANDLE,
                                         CUDNN_TYPE_HANDLE, 1, &h);
    if (!e) e = set_desc(p->plan, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, cfg);
    if (!e) e = cudnnBackendFinalize(p->plan);
    if (!e) e = cudnnBackendGetAttribute(p->plan, CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE,
                                         CUDNN_TYPE_INT64, 1, &one, &ws);
    if (e || ws < 0) {
        *oom |= e && cnn_cudnn_status_of(e) == CNN_ERR_OUT_OF_MEMORY;
        cnn_cudnn_plan_free(p);
        return NULL;
    }
    p->workspace = (size_t)ws;
    snprintf(p->name, sizeof p->name, "ENGINE_%lld", (long long)index);
    return p;
}

/* ---- running a plan -------------------------------------------------------------------------- */
cnn_status cnn_cudnn_plan_run(cudnnHandle_t h, const cnn_cudnn_plan *p, int dir, const float *in0,
                              const float *in1, float *out, void *ws)
{
    /* The graph's x, w, y from the call's in0, in1, out (forward: x, w -> y; backward-data:
     * dy, w -> dx; backward-filter: x, dy -> dw). */
    void *ptr[3];
    const int64_t uid[3] = {UID_X, UID_W, UID_Y};
    if (dir == 0) ptr[0] = (void *)in0, ptr[1] = (void *)in1, ptr[2] = out;
    else if (dir == 1) ptr[0] = out, ptr[1] = (void *)in1, ptr[2] = (void *)in0;
    else ptr[0] = (void *)in0, ptr[1] = out, ptr[2] = (void *)in1;
    cnn_status st = CNN_OK;
    cudnnBackendDescriptor_t vp = NULL;
    CNN_CUDNN_TRYG(cudnnBackendCreateDescriptor(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, &vp));
    CNN_CUDNN_TRYG(cudnnBackendSetAttribute(vp, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS,
                                            CUDNN_TYPE_INT64, 3, uid));
    CNN_CUDNN_TRYG(cudnnBackendSetAttribute(vp, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS,
                                            CUDNN_TYPE_VOID_PTR, 3, ptr));
    CNN_CUDNN_TRYG(cudnnBackendSetAttribute(vp, CUDNN_ATTR_VARIANT_PACK_WORKSPACE,
                                            CUDNN_TYPE_VOID_PTR, 1, &ws));
    CNN_CUDNN_TRYG(cudnnBackendFinalize(vp));
    CNN_CUDNN_RUN_TRYG(cudnnBackendExecute(h, p->plan, vp));
done:
    if (vp) (void)cudnnBackendDestroyDescriptor(vp);
    return st;
}

typedef struct plan_run {
    const cnn_cudnn_engine_call *c;
    const cnn_cudnn_plan *p;
    void *ws;
} plan_run;

static cnn_status run_plan(void *ud)
{
    const plan_run *r = ud;
    return cnn_cudnn_plan_run(r->c->h, r->p, r->c->dir, r->c->in0, r->c->in1, r->c->out, r->ws);
}

/* ---- the search ------------------------------------------------------------------------------ */
/* Runs a plan on the call's buffers, and (timed) gives its time. A plan whose workspace or run
 * fails is passed over by the search (a GPU that has failed makes the legacy search or the
 * call fail next, with the cause), but an out-of-memory is told to the caller. */
static cnn_status runs(const cnn_cudnn_engine_call *c, const cnn_cudnn_plan *p, bool timed,
                       float *ms)
{
    cnn_tensor *ws = NULL;
    const int64_t words = (int64_t)((p->workspace + 3) / 4);
    CNN_TRY(cnn_tensor_empty_for("conv2d", CNN_SHAPE(words > 0 ? words : 1), CNN_F32,
                                 c->ctx->device, &ws));
    plan_run r = {c, p, cnn_ptr(ws)};
    cnn_status st = timed ? cnn_cuda_time_mean(c->ctx, "conv2d", run_plan, &r, ms) : run_plan(&r);
    cnn_tensor_free(&ws);
    return st;
}

void cnn_cudnn_engine_search(const cnn_cudnn_engine_call *c, bool first_only,
                             cnn_cudnn_plan **best, float *best_ms, bool *oom)
{
    *best = NULL;
    *best_ms = 0;
    *oom = false;
    graph_descs gd;
    /* A graph cuDNN will not build (a sub-library or a shape it lacks) leaves the legacy
     * algorithms alone in the choice. */
    if (graph_make(c->h, c->g, c->dir, c->aligned ? 16 : 4, &gd) != CUDNN_STATUS_SUCCESS) {
        graph_free(&gd);
        return;
    }
    const cudnnBackendHeurMode_t modes[2] = {CUDNN_HEUR_MODE_A, CUDNN_HEUR_MODE_FALLBACK};
    /* The engines whose plans ran: the fallback list repeats mode A's engines, and one that
     * ran is not timed again (mode A may list one engine with several knob settings: each is
     * tried). */
    int64_t ran[MAX_TIMED];
    int n_ran = 0, tried = 0;
    for (int m = 0; m < 2 && n_ran < MAX_TIMED && tried < MAX_TRIED && !(first_only && *best);
         m++) {
        cudnnBackendDescriptor_t cfg[MAX_CONFIGS];
        int n = 0;
        (void)heuristics(gd.d[N_DESCS - 1], modes[m], cfg, MAX_CONFIGS, &n);
        for (int i = 0; i < n && n_ran < MAX_TIMED && tried < MAX_TRIED &&
                        !(first_only && *best);
             i++) {
            int64_t index = -1;
            if (!acceptable(cfg[i], c->tf32, c->deterministic, &index)) continue;
            bool again = false;
            for (int k = 0; m > 0 && k < n_ran; k++) again |= ran[k] == index;
            if (again) continue;
            tried++;
            cnn_cudnn_plan *p = plan_make(c->h, cfg[i], index, oom);
            float ms = 0;
            cnn_status rs = p && p->workspace <= c->cap ? runs(c, p, !first_only, &ms)
                                                        : CNN_ERR_UNSUPPORTED;
            if (rs != CNN_OK) {
                *oom |= rs == CNN_ERR_OUT_OF_MEMORY;
                cnn_cudnn_plan_free(p);
                continue;
            }
            ran[n_ran++] = index;
            if (!*best || ms < *best_ms) {
                cnn_cudnn_plan_free(*best);
                *best = p;
                *best_ms = ms;
            } else {
                cnn_cudnn_plan_free(p);
            }
        }
        for (int i = 0; i < n; i++) (void)cudnnBackendDestroyDescriptor(cfg[i]);
    }
    graph_free(&gd);
    /* What failed on the way is no error of the call's. */
    cnn_clear_error();
}
