/* emu_cudnn_backend.cpp — the emulated cuDNN's graph (backend) API, for convolutions: descriptors
 * that keep their attributes as set and check them at finalize (types, counts, required ones,
 * the convolution's shapes), heuristics proposing engines built on emu_cudnn_conv.cpp's legacy
 * algorithms with the numerical and behaviour notes a caller must filter on, execution plans,
 * variant packs and cudnnBackendExecute. Test infrastructure: it may print ("cuda-emu:" lines),
 * and it never touches a real GPU. */
#include "emu_cudnn_internal.h"
#include "emu_internal.h"

#include <string.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <set>
#include <vector>

using namespace cnn_emu;

namespace {

struct attr {
    cudnnBackendAttributeType_t type;
    int64_t count;
    std::vector<unsigned char> bytes;
};

/* An engine: one legacy algorithm of one direction, and its notes. down_convert: it rounds x
 * and w to BF16 first (forward only). no_plan: its execution plan will not finalize. */
struct engine {
    int64_t index;
    int algo;
    bool tensor_core, nondet, runtime_compiled;
    size_t ws;
    bool down_convert = false, no_plan = false;
};

/* What an operation (graph) computes, copied at finalize: the caller may destroy the
 * descriptors it was made of. uid: the graph's x, w, y (dx, dw, dy for the backward ones). */
struct conv_op {
    int dir;
    conv_dims d;
    int64_t uid[3];
    int64_t align[3]; /* the byte alignment each tensor promised its pointer */
};

struct desc {
    cudnnBackendDescriptorType_t type;
    bool final = false;
    std::map<int, attr> attrs;
    int64_t dims[4] = {0, 0, 0, 0}, uid = 0;   /* tensor */
    int64_t align = 0;                          /* tensor */
    int64_t conv[9] = {0};                      /* convolution: pads, strides, dilations */
    conv_op op{};                               /* operation, graph, heuristics, cfg, plan */
    std::vector<engine> results;                /* heuristics */
    engine eng{};                               /* cfg, engine, plan */
    cudnnHandle_t handle = nullptr;             /* graph, plan */
};

std::mutex live_lock;
std::set<const void *> live; /* every descriptor created and not yet destroyed */

desc *of(cudnnBackendDescriptor_t d)
{
    std::lock_guard<std::mutex> g(live_lock);
    return live.count(d) ? (desc *)d : nullptr;
}

size_t elem_size(cudnnBackendAttributeType_t t)
{
    switch (t) {
    case CUDNN_TYPE_HANDLE: return sizeof(cudnnHandle_t);
    case CUDNN_TYPE_INT64: return sizeof(int64_t);
    case CUDNN_TYPE_FLOAT: return sizeof(float);
    case CUDNN_TYPE_DOUBLE: return sizeof(double);
    case CUDNN_TYPE_BOOLEAN: return sizeof(bool);
    case CUDNN_TYPE_CHAR: return sizeof(char);
    case CUDNN_TYPE_VOID_PTR: return sizeof(void *);
    case CUDNN_TYPE_BACKEND_DESCRIPTOR: return sizeof(cudnnBackendDescriptor_t);
    default: return sizeof(int); /* the enum types */
    }
}

/* The attribute's elements as set, when present with that type (count elements wanted, or
 * any count for want < 0). */
const attr *get(const desc *d, int name, cudnnBackendAttributeType_t type, int64_t want = -1)
{
    auto it = d->attrs.find(name);
    if (it == d->attrs.end() || it->second.type != type) return nullptr;
    if (want >= 0 && it->second.count != want) return nullptr;
    return &it->second;
}

template <class T> T elem(const attr *a, int64_t i)
{
    T v;
    memcpy(&v, a->bytes.data() + i * sizeof(T), sizeof(T));
    return v;
}

cudnnStatus_t bad(const char *what)
{
    say("cudnnBackendFinalize: %s", what);
    return CUDNN_STATUS_BAD_PARAM;
}

/* ---- finalize, per descriptor type ---------------------------------------------------- */
cudnnStatus_t finalize_tensor(desc *d)
{
    const attr *dt = get(d, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1);
    const attr *dims = get(d, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4);
    const attr *str = get(d, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4);
    const attr *uid = get(d, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1);
    const attr *al = get(d, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1);
    if (!dt || !dims || !str || !uid || !al)
        return bad("tensor: data type, 4 dimensions, 4 strides, unique id and alignment are "
                   "required");
    if (elem<int>(dt, 0) != CUDNN_DATA_FLOAT) return CUDNN_STATUS_NOT_SUPPORTED_DATA_TYPE;
    int64_t packed = 1;
    for (int i = 3; i >= 0; i--) {
        d->dims[i] = elem<int64_t>(dims, i);
        if (d->dims[i] <= 0) return bad("tensor: a dimension is not positive");
        if (elem<int64_t>(str, i) != packed) {
            say("cudnnBackendFinalize: tensor: the emulator takes packed NCHW strides only");
            return CUDNN_STATUS_NOT_SUPPORTED_LAYOUT;
        }
        packed *= d->dims[i];
    }
    const int64_t a = elem<int64_t>(al, 0);
    if (a < 4 || (a & (a - 1))) return bad("tensor: alignment is not a power of 2 of 4 or more");
    d->uid = elem<int64_t>(uid, 0);
    d->align = a;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t finalize_conv(desc *d)
{
    const attr *nd = get(d, CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS, CUDNN_TYPE_INT64, 1);
    const attr *ct = get(d, CUDNN_ATTR_CONVOLUTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1);
    const attr *mode = get(d, CUDNN_ATTR_CONVOLUTION_CONV_MODE, CUDNN_TYPE_CONVOLUTION_MODE, 1);
    const attr *pre = get(d, CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS, CUDNN_TYPE_INT64, 2);
    const attr *post = get(d, CUDNN_ATTR_CONVOLUTION_POST_PADDINGS, CUDNN_TYPE_INT64, 2);
    const attr *str = get(d, CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES, CUDNN_TYPE_INT64, 2);
    const attr *dil = get(d, CUDNN_ATTR_CONVOLUTION_DILATIONS, CUDNN_TYPE_INT64, 2);
    if (!nd || !ct || !mode || !pre || !post || !str || !dil || elem<int64_t>(nd, 0) != 2)
        return bad("convolution: 2 spatial dims, compute type, mode, paddings, strides and "
                   "dilations (2 each) are required");
    if (elem<int>(ct, 0) != CUDNN_DATA_FLOAT) return CUDNN_STATUS_NOT_SUPPORTED_DATA_TYPE;
    if (elem<int>(mode, 0) != CUDNN_CROSS_CORRELATION ||
        elem<int64_t>(pre, 0) != elem<int64_t>(post, 0) ||
        elem<int64_t>(pre, 1) != elem<int64_t>(post, 1)) {
        say("cudnnBackendFinalize: convolution: the emulator takes cross-correlation with equal "
            "pre and post paddings only");
        return CUDNN_STATUS_NOT_SUPPORTED;
    }
    for (int i = 0; i < 2; i++) {
        d->conv[i] = elem<int64_t>(pre, i);
        d->conv[2 + i] = elem<int64_t>(str, i);
        d->conv[4 + i] = elem<int64_t>(dil, i);
    }
    return CUDNN_STATUS_SUCCESS;
}

/* The finalized descriptor of type t that attribute name holds (nullptr: absent or wrong). */
desc *held(const desc *d, int name, cudnnBackendDescriptorType_t t)
{
    const attr *a = get(d, name, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1);
    desc *h = a ? of(elem<cudnnBackendDescriptor_t>(a, 0)) : nullptr;
    return h && h->type == t && h->final ? h : nullptr;
}

cudnnStatus_t finalize_op(desc *d, int dir)
{
    static const int names[3][6] = {
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
    desc *t[3];
    for (int i = 0; i < 3; i++)
        if (!(t[i] = held(d, names[dir][i], CUDNN_BACKEND_TENSOR_DESCRIPTOR)))
            return bad("convolution operation: its three finalized tensors are required");
    desc *cv = held(d, names[dir][3], CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR);
    if (!cv) return bad("convolution operation: a finalized convolution is required");
    const attr *alpha = get(d, names[dir][4], CUDNN_TYPE_FLOAT, 1);
    const attr *beta = get(d, names[dir][5], CUDNN_TYPE_FLOAT, 1);
    if ((alpha && elem<float>(alpha, 0) != 1.0f) || (beta && elem<float>(beta, 0) != 0.0f)) {
        say("cudnnBackendFinalize: the emulator runs alpha 1, beta 0 only");
        return CUDNN_STATUS_NOT_SUPPORTED;
    }
    const int64_t *x = t[0]->dims, *w = t[1]->dims, *y = t[2]->dims;
    d->op.dir = dir;
    d->op.d = conv_dims{x[0], x[1], x[2], x[3], w[0], w[1], w[2], w[3], y[2], y[3],
                        cv->conv[0], cv->conv[1], cv->conv[2], cv->conv[3], cv->conv[4],
                        cv->conv[5]};
    if (y[0] != x[0] || y[1] != w[0]) return bad("convolution operation: y's N or K is off");
    for (int i = 0; i < 3; i++) {
        d->op.uid[i] = t[i]->uid;
        d->op.align[i] = t[i]->align;
    }
    if (d->op.uid[0] == d->op.uid[1] || d->op.uid[0] == d->op.uid[2] ||
        d->op.uid[1] == d->op.uid[2])
        return bad("convolution operation: two tensors share a unique id");
    return conv_check("cudnnBackendFinalize", d->op.d);
}

/* The engines proposed for an operation: first twelve whose plans fail as real ones' may
 * (80-85 will not finalize, 86-91 want more workspace than any GPU has: a search that counted
 * these against its timing budget would find nothing), then those a careful caller must pass
 * over (compiled at run time; forward inputs rounded to BF16; TF32 tensor cores; atomics),
 * then the plain ones; the fallback list is one deterministic engine, which mode A also
 * lists. */
std::vector<engine> engines_for(const conv_op &op, cudnnBackendHeurMode_t mode)
{
    static const int order[3][3] = {{1, 0, 2}, {0, 1, -1}, {3, 0, 1}};
    static const int plain[3] = {0, 1, 1}; /* deterministic: IMPLICIT_GEMM, ALGO_1, ALGO_1 */
    std::vector<engine> out;
    size_t ws = 0;
    bool det = false;
    if (mode == CUDNN_HEUR_MODE_FALLBACK) {
        if (conv_algo(op.dir, op.d, plain[op.dir], &ws, &det))
            out.push_back({plain[op.dir], plain[op.dir], false, !det, false, ws});
        return out;
    }
    if (!conv_algo(op.dir, op.d, plain[op.dir], &ws, &det)) return out;
    for (int64_t i = 80; i < 92; i++) {
        engine e{i, plain[op.dir], false, !det, false, i < 86 ? ws : (size_t)1 << 50};
        e.no_plan = i < 86;
        out.push_back(e);
    }
    out.push_back({99, plain[op.dir], false, !det, true, ws});
    if (op.dir == 0) {
        engine e{97, plain[0], false, !det, false, ws};
        e.down_convert = true;
        out.push_back(e);
    }
    for (int a : order[op.dir])
        if (a >= 0 && conv_algo(op.dir, op.d, a, &ws, &det))
            out.push_back({a, a, op.dir == 0 && a == 1, !det, false, ws});
    return out;
}

cudnnStatus_t finalize(desc *d)
{
    switch (d->type) {
    case CUDNN_BACKEND_TENSOR_DESCRIPTOR: return finalize_tensor(d);
    case CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR: return finalize_conv(d);
    case CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR: return finalize_op(d, 0);
    case CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_DATA_DESCRIPTOR: return finalize_op(d, 1);
    case CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_FILTER_DESCRIPTOR:
        return finalize_op(d, 2);
    case CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR: {
        const attr *ops = get(d, CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1);
        const attr *h = get(d, CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1);
        desc *op = ops ? of(elem<cudnnBackendDescriptor_t>(ops, 0)) : nullptr;
        if (!op || !op->final || !h || !elem<cudnnHandle_t>(h, 0))
            return bad("operation graph: one finalized convolution operation and a handle");
        d->op = op->op;
        d->handle = elem<cudnnHandle_t>(h, 0);
        return CUDNN_STATUS_SUCCESS;
    }
    case CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR: {
        desc *g = held(d, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH,
                       CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR);
        const attr *mode = get(d, CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1);
        if (!g || !mode) return bad("heuristics: a finalized operation graph and a mode");
        d->op = g->op;
        d->results = engines_for(g->op, (cudnnBackendHeurMode_t)elem<int>(mode, 0));
        return CUDNN_STATUS_SUCCESS;
    }
    case CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR: {
        desc *cfg = held(d, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG,
                         CUDNN_BACKEND_ENGINECFG_DESCRIPTOR);
        const attr *h = get(d, CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1);
        if (!cfg || !h || !elem<cudnnHandle_t>(h, 0))
            return bad("execution plan: a handle and an engine configuration from heuristics");
        if (cfg->eng.no_plan) return CUDNN_STATUS_NOT_SUPPORTED_SHAPE;
        d->op = cfg->op;
        d->eng = cfg->eng;
        d->handle = elem<cudnnHandle_t>(h, 0);
        return CUDNN_STATUS_SUCCESS;
    }
    case CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR: {
        const attr *u = get(d, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64);
        const attr *p = get(d, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR);
        if (!u || !p || u->count != p->count)
            return bad("variant pack: as many unique ids as data pointers");
        return CUDNN_STATUS_SUCCESS;
    }
    default:
        say("cudnnBackendFinalize: descriptor type %d is made by cuDNN (heuristics), or not "
            "emulated", (int)d->type);
        return CUDNN_STATUS_NOT_SUPPORTED;
    }
}

cudnnStatus_t execute(const conv_op &op, const engine &eng, const void *x, const void *w,
                      const void *y, void *ws)
{
    const char *fn = "cudnnBackendExecute";
    if (declines(fn)) return CUDNN_STATUS_NOT_SUPPORTED_SHAPE;
    const void *in0 = op.dir == 1 ? y : x, *in1 = op.dir == 2 ? y : w;
    void *out = (void *)(op.dir == 0 ? y : op.dir == 1 ? x : w);
    if (eng.down_convert) {
        /* x and w rounded to BF16 in place for the call, then put back. */
        float *xf = (float *)x, *wf = (float *)w;
        const int64_t nx = op.d.n * op.d.c * op.d.h * op.d.w,
                      nw = op.d.k * op.d.cg * op.d.r * op.d.s;
        std::vector<float> xs(xf, xf + nx), wsv(wf, wf + nw);
        for (int64_t i = 0; i < nx; i++) xf[i] = to_bf16(xf[i]);
        for (int64_t i = 0; i < nw; i++) wf[i] = to_bf16(wf[i]);
        cudnnStatus_t e = conv_run(fn, op.dir, op.d, eng.algo, false, in0, in1, out, ws,
                                   ws ? eng.ws : 0);
        std::copy(xs.begin(), xs.end(), xf);
        std::copy(wsv.begin(), wsv.end(), wf);
        return e;
    }
    /* A non-deterministic engine is its legacy algorithm: its sums change order per call. */
    return conv_run(fn, op.dir, op.d, eng.algo, eng.tensor_core, in0, in1, out, ws,
                    ws ? eng.ws : 0);
}

} /* namespace */

extern "C" {

cudnnStatus_t cudnnBackendCreateDescriptor(cudnnBackendDescriptorType_t t,
                                           cudnnBackendDescriptor_t *out)
{
    count_call("cudnnBackendCreateDescriptor");
    if (!out) return CUDNN_STATUS_BAD_PARAM_NULL_POINTER;
    desc *d = new desc;
    d->type = t;
    std::lock_guard<std::mutex> g(live_lock);
    live.insert(d);
    *out = d;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnBackendDestroyDescriptor(cudnnBackendDescriptor_t p)
{
    std::lock_guard<std::mutex> g(live_lock);
    if (!live.erase(p)) {
        say("cudnnBackendDestroyDescriptor: %p is no live descriptor", p);
        return CUDNN_STATUS_BAD_PARAM;
    }
    delete (desc *)p;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnBackendSetAttribute(cudnnBackendDescriptor_t p, cudnnBackendAttributeName_t name,
                                       cudnnBackendAttributeType_t type, int64_t count,
                                       const void *elems)
{
    desc *d = of(p);
    if (!d || count < 0 || (count > 0 && !elems)) {
        say("cudnnBackendSetAttribute: attribute %d: no live descriptor, or no elements",
            (int)name);
        return CUDNN_STATUS_BAD_PARAM;
    }
    if (d->final) {
        say("cudnnBackendSetAttribute: attribute %d set after finalize", (int)name);
        return CUDNN_STATUS_BAD_PARAM;
    }
    attr a{type, count, std::vector<unsigned char>((size_t)count * elem_size(type))};
    if (count) memcpy(a.bytes.data(), elems, a.bytes.size());
    d->attrs[name] = std::move(a);
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnBackendFinalize(cudnnBackendDescriptor_t p)
{
    desc *d = of(p);
    if (!d || d->final) return CUDNN_STATUS_BAD_PARAM;
    cudnnStatus_t e = finalize(d);
    d->final = e == CUDNN_STATUS_SUCCESS;
    return e;
}

cudnnStatus_t cudnnBackendGetAttribute(cudnnBackendDescriptor_t const p,
                                       cudnnBackendAttributeName_t name,
                                       cudnnBackendAttributeType_t type, int64_t requested,
                                       int64_t *count, void *elems)
{
    desc *d = of(p);
    if (!d || !d->final || !count || requested < 0 || (requested > 0 && !elems)) {
        say("cudnnBackendGetAttribute: attribute %d of no live finalized descriptor", (int)name);
        return CUDNN_STATUS_BAD_PARAM;
    }
    if (d->type == CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR && name == CUDNN_ATTR_ENGINEHEUR_RESULTS &&
        type == CUDNN_TYPE_BACKEND_DESCRIPTOR) {
        const int64_t n = (int64_t)d->results.size();
        *count = requested == 0 ? n : std::min(requested, n);
        for (int64_t i = 0; requested > 0 && i < *count; i++) {
            desc *cfg = of(((cudnnBackendDescriptor_t *)elems)[i]);
            if (!cfg || cfg->type != CUDNN_BACKEND_ENGINECFG_DESCRIPTOR)
                return CUDNN_STATUS_BAD_PARAM;
            cfg->op = d->op;
            cfg->eng = d->results[(size_t)i];
            cfg->final = true;
        }
        return CUDNN_STATUS_SUCCESS;
    }
    if (d->type == CUDNN_BACKEND_ENGINECFG_DESCRIPTOR && name == CUDNN_ATTR_ENGINECFG_ENGINE &&
        type == CUDNN_TYPE_BACKEND_DESCRIPTOR && requested >= 1) {
        desc *eng = of(*(cudnnBackendDescriptor_t *)elems);
        if (!eng || eng->type != CUDNN_BACKEND_ENGINE_DESCRIPTOR) return CUDNN_STATUS_BAD_PARAM;
        eng->op = d->op;
        eng->eng = d->eng;
        eng->final = true;
        *count = 1;
        return CUDNN_STATUS_SUCCESS;
    }
    if (d->type == CUDNN_BACKEND_ENGINE_DESCRIPTOR) {
        if (name == CUDNN_ATTR_ENGINE_GLOBAL_INDEX && type == CUDNN_TYPE_INT64 && requested >= 1) {
            *(int64_t *)elems = d->eng.index;
            *count = 1;
            return CUDNN_STATUS_SUCCESS;
        }
        std::vector<int> notes;
        if (name == CUDNN_ATTR_ENGINE_NUMERICAL_NOTE && type == CUDNN_TYPE_NUMERICAL_NOTE) {
            if (d->eng.tensor_core) notes.push_back(CUDNN_NUMERICAL_NOTE_TENSOR_CORE);
            if (d->eng.nondet) notes.push_back(CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC);
            if (d->eng.down_convert) notes.push_back(CUDNN_NUMERICAL_NOTE_DOWN_CONVERT_INPUTS);
        } else if (name == CUDNN_ATTR_ENGINE_BEHAVIOR_NOTE && type == CUDNN_TYPE_BEHAVIOR_NOTE) {
            if (d->eng.runtime_compiled) notes.push_back(CUDNN_BEHAVIOR_NOTE_RUNTIME_COMPILATION);
        } else {
            return CUDNN_STATUS_NOT_SUPPORTED;
        }
        *count = std::min(requested, (int64_t)notes.size());
        if (requested == 0) *count = (int64_t)notes.size();
        for (int64_t i = 0; i < *count && requested > 0; i++) ((int *)elems)[i] = notes[(size_t)i];
        return CUDNN_STATUS_SUCCESS;
    }
    if (d->type == CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR &&
        name == CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE && type == CUDNN_TYPE_INT64 &&
        requested >= 1) {
        *(int64_t *)elems = (int64_t)d->eng.ws;
        *count = 1;
        return CUDNN_STATUS_SUCCESS;
    }
    say("cudnnBackendGetAttribute: attribute %d of descriptor type %d is not emulated", (int)name,
        (int)d->type);
    return CUDNN_STATUS_NOT_SUPPORTED;
}

cudnnStatus_t cudnnBackendExecute(cudnnHandle_t h, cudnnBackendDescriptor_t plan_p,
                                  cudnnBackendDescriptor_t pack_p)
{
    desc *plan = of(plan_p), *pack = of(pack_p);
    const char *fn = "cudnnBackendExecute";
    if (!h || !plan || !pack || plan->type != CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR ||
        pack->type != CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR || !plan->final || !pack->final) {
        say("%s: a handle, a finalized execution plan and a finalized variant pack are required",
            fn);
        return CUDNN_STATUS_BAD_PARAM;
    }
    /* The pointers the pack gives the graph's three tensors, and its workspace. */
    const attr *u = get(pack, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64);
    const attr *p = get(pack, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR);
    const attr *wa = get(pack, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1);
    void *ptr[3] = {nullptr, nullptr, nullptr};
    for (int t = 0; t < 3; t++)
        for (int64_t i = 0; i < u->count; i++)
            if (elem<int64_t>(u, i) == plan->op.uid[t]) ptr[t] = elem<void *>(p, i);
    if (!ptr[0] || !ptr[1] || !ptr[2]) {
        say("%s: the variant pack lacks a pointer for one of the graph's tensors", fn);
        return CUDNN_STATUS_BAD_PARAM;
    }
    /* As cuDNN: a pointer less aligned than its tensor's CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT. */
    for (int t = 0; t < 3; t++)
        if ((uintptr_t)ptr[t] % (uintptr_t)plan->op.align[t]) {
            say("%s: tensor %lld's pointer %p is not %lld-byte aligned", fn,
                (long long)plan->op.uid[t], ptr[t], (long long)plan->op.align[t]);
            return CUDNN_STATUS_BAD_PARAM_MISALIGNED_POINTER;
        }
    void *ws = wa ? elem<void *>(wa, 0) : nullptr;
    if (plan->eng.ws && !on_device(fn, "workspace", ws, plan->eng.ws))
        return CUDNN_STATUS_BAD_PARAM;
    const conv_op op = plan->op;
    const engine eng = plan->eng;
    if (deferring(h->stream))
        return capture_call(h->stream, [=](cudnnHandle_t) {
            return execute(op, eng, ptr[0], ptr[1], ptr[2], ws);
        });
    count_call(fn);
    return execute(op, eng, ptr[0], ptr[1], ptr[2], ws);
}

} /* extern "C" */
