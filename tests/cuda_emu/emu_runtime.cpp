/* emu_runtime.cpp — the CUDA runtime and cuBLAS of the emulator: one "Emulated GPU" (sm_90,
 * 132 SMs, 16 GiB) whose memory is host memory, streams and events that complete at once (or
 * lag, as CNN_EMU_LAGGING_EVENTS / _COPIES ask), and copies that check each pointer lies in
 * memory of the kind the call says. Test
 * infrastructure: it may print (emu_internal.h's report), and it never touches a real GPU. */
#include "emu_internal.h"

#include <cublas_v2.h>

#include <cblas.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <atomic>
#include <memory>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace cnn_emu {
thread_local bool checking_only = false;

bool no_compute()
{
    static const bool v = getenv("CNN_EMU_NO_COMPUTE") && strcmp(getenv("CNN_EMU_NO_COMPUTE"), "0");
    return v || checking_only;
}

namespace {

constexpr size_t TOTAL_BYTES = (size_t)16 << 30;

/* count_call's table (CNN_EMU_PROFILE), printed at exit beside the launcher's kernel profile. */
struct call_counts {
    std::mutex lock;
    std::map<std::string, long> n;
};

call_counts &C()
{
    static call_counts *c = new call_counts; /* never destroyed: used from atexit */
    return *c;
}

void print_calls()
{
    for (auto &k : C().n)
        fprintf(stderr, "cuda-emu profile: %-40s %8ld calls\n", k.first.c_str(), k.second);
}

const bool counting_calls = getenv("CNN_EMU_PROFILE") && atexit(print_calls) == 0;

const char *copy_name(cudaMemcpyKind kind, bool async)
{
    switch (kind) {
    case cudaMemcpyHostToDevice: return async ? "cudaMemcpyAsync H2D" : "cudaMemcpy H2D";
    case cudaMemcpyDeviceToHost: return async ? "cudaMemcpyAsync D2H" : "cudaMemcpy D2H";
    case cudaMemcpyDeviceToDevice: return async ? "cudaMemcpyAsync D2D" : "cudaMemcpy D2D";
    default: return async ? "cudaMemcpyAsync (other)" : "cudaMemcpy (other)";
    }
}

struct alloc_table {
    std::mutex lock;
    std::map<uintptr_t, std::pair<size_t, mem_kind>> blocks; /* start -> (bytes, kind) */
    size_t device_bytes = 0;
};

alloc_table &T()
{
    static alloc_table *t = new alloc_table; /* never destroyed: frees may run at exit */
    return *t;
}

thread_local cudaError_t last_error = cudaSuccess;
thread_local int current_device = 0;

/* CUDA_VISIBLE_DEVICES="" hides the device, as it would a real one. */
int device_count()
{
    const char *v = getenv("CUDA_VISIBLE_DEVICES");
    return v && !*v ? 0 : 1;
}

std::atomic<long> n_allocs{0};
void print_allocs()
{
    fprintf(stderr, "cuda-emu: %ld device/pinned allocations\n", n_allocs.load());
}

} /* namespace */

/* The allocations counted so far, as CNN_EMU_FAIL_MALLOC=N counts them (for a sweep that fails
 * the k-th allocation of a run: tests/fault/fault_sweep.c). */
extern "C" long cnn_emu_alloc_count(void) { return n_allocs.load(); }

bool injected_alloc_failure()
{
    static const bool counting = getenv("CNN_EMU_FAIL_MALLOC_COUNT") && atexit(print_allocs) == 0;
    (void)counting;
    const long n = ++n_allocs;
    const char *v = getenv("CNN_EMU_FAIL_MALLOC");
    if (!v || !*v) return false;
    if (!strcmp(v, "all")) return true;
    if (!strcmp(v, "once")) {
        setenv("CNN_EMU_FAIL_MALLOC", "spent", 1);
        return true;
    }
    char *end;
    const long first = strtol(v, &end, 10), count = *end == ',' ? strtol(end + 1, nullptr, 10) : 1;
    return first > 0 && n >= first && n < first + count;
}

namespace {

cudaError_t alloc(void **p, size_t bytes, mem_kind kind)
{
    if (!p) return set_error(cudaErrorInvalidValue);
    *p = nullptr;
    if (kind == MEM_DEVICE && !device_count()) return set_error(cudaErrorNoDevice);
    if (injected_alloc_failure()) return set_error(cudaErrorMemoryAllocation);
    alloc_table &t = T();
    std::lock_guard<std::mutex> hold(t.lock);
    if (kind == MEM_DEVICE && bytes > TOTAL_BYTES - t.device_bytes)
        return set_error(cudaErrorMemoryAllocation);
    if (bytes == 0) return cudaSuccess;
    /* 256-byte aligned like cudaMalloc, and exactly `bytes` long, so that under ASan an
     * access one past the request is caught. */
    void *q = nullptr;
    if (posix_memalign(&q, 256, bytes) != 0) return set_error(cudaErrorMemoryAllocation);
    t.blocks[(uintptr_t)q] = {bytes, kind};
    if (kind == MEM_DEVICE) t.device_bytes += bytes;
    *p = q;
    return cudaSuccess;
}

cudaError_t release(void *p, mem_kind kind)
{
    if (!p) return cudaSuccess;
    alloc_table &t = T();
    std::lock_guard<std::mutex> hold(t.lock);
    auto it = t.blocks.find((uintptr_t)p);
    if (it == t.blocks.end() || it->second.second != kind) return set_error(cudaErrorInvalidValue);
    if (kind == MEM_DEVICE) t.device_bytes -= it->second.first;
    t.blocks.erase(it);
    free(p);
    return cudaSuccess;
}

/* The copy's destination and source ranges must lie in the kinds `kind` names (host memory may
 * be pinned); cudaMemcpyDefault takes any (unified addressing). */
cudaError_t check_copy(void *dst, size_t dbytes, const void *src, size_t sbytes,
                       cudaMemcpyKind kind)
{
    if (kind > cudaMemcpyDefault) return set_error(cudaErrorInvalidMemcpyDirection);
    if (dbytes == 0 || kind == cudaMemcpyDefault) return cudaSuccess;
    if (!dst || !src) return set_error(cudaErrorInvalidValue);
    const bool dev_src = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
    const bool dev_dst = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
    if ((memory_kind(src, sbytes) == MEM_DEVICE) != dev_src ||
        (memory_kind(dst, dbytes) == MEM_DEVICE) != dev_dst) {
        report(cudaErrorInvalidValue, "copy of kind %d from %p (%zu bytes) to %p (%zu bytes): a "
               "range is not (wholly) in memory of that kind", (int)kind, src, sbytes, dst,
               dbytes);
        return cudaErrorInvalidValue;
    }
    return cudaSuccess;
}

/* How often a stream was waited for (or destroyed), for CNN_EMU_LAGGING_EVENTS: an event
 * recorded there is "done" once this count moved on. Shared with the events, which may
 * outlive the stream. */
struct stream_clock {
    std::atomic<uint64_t> waits{0};
};
std::atomic<uint64_t> g_device_waits{0}; /* cudaDeviceSynchronize calls */

std::atomic<uint64_t> g_stream_ids{1}; /* 0 is the legacy stream (CNN_EMU_LAGGING_COPIES) */

struct stream_obj {
    unsigned flags;
    std::shared_ptr<stream_clock> clock = std::make_shared<stream_clock>();
    uint64_t id = g_stream_ids++;
};

uint64_t stream_id(cudaStream_t s) { return s ? ((stream_obj *)s)->id : 0; }
bool stream_blocking(cudaStream_t s) { return !s || !(((stream_obj *)s)->flags & 1); }

/* CNN_EMU_LAGGING_EVENTS=1 (read at each query): a device that is always behind. */
bool lagging_events()
{
    const char *v = getenv("CNN_EMU_LAGGING_EVENTS");
    return v && *v && strcmp(v, "0") != 0;
}

double now_ms()
{
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return 1e3 * (double)ts.tv_sec + 1e-6 * (double)ts.tv_nsec;
}

} /* namespace */

void count_call(const char *name)
{
    if (!counting_calls || replaying) return;
    std::lock_guard<std::mutex> hold(C().lock);
    C().n[name]++;
}

mem_kind memory_kind(const void *p, size_t bytes)
{
    alloc_table &t = T();
    std::lock_guard<std::mutex> hold(t.lock);
    auto it = t.blocks.upper_bound((uintptr_t)p);
    if (it == t.blocks.begin()) return MEM_UNKNOWN;
    --it;
    uintptr_t a = (uintptr_t)p, start = it->first, end = start + it->second.first;
    return a >= start && a <= end && bytes <= end - a ? it->second.second : MEM_UNKNOWN;
}

cudaError_t set_error(cudaError_t e)
{
    last_error = e;
    return e;
}

void report(cudaError_t e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "cuda-emu: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (%s)\n", cudaGetErrorName(e));
    va_end(ap);
    set_error(e);
}

} /* namespace cnn_emu */

struct CUevent_st {
    double ms;
    bool recorded;
    bool captured; /* last recorded in a capturing stream: no time, nothing to wait for */
    /* For CNN_EMU_LAGGING_EVENTS: the stream's clock (none for the legacy stream) and its
     * count and the device's at the last record; waited: cudaEventSynchronize since. */
    std::shared_ptr<cnn_emu::stream_clock> clock;
    uint64_t stream_waits_at = 0, device_waits_at = 0;
    bool waited = false;
    unsigned flags = 0; /* cudaEventDisableTiming: no elapsed time */
    cnn_emu::copy_mark mark; /* where the last record was, for CNN_EMU_LAGGING_COPIES */
};
struct cublasContext {
    cublasMath_t mode;
    cudaStream_t stream;
};

using namespace cnn_emu;

extern "C" {

const char *cudaGetErrorName(cudaError_t e)
{
    switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidPitchValue: return "cudaErrorInvalidPitchValue";
    case cudaErrorInvalidMemcpyDirection: return "cudaErrorInvalidMemcpyDirection";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorNotReady: return "cudaErrorNotReady";
    case cudaErrorIllegalAddress: return "cudaErrorIllegalAddress";
    case cudaErrorLaunchOutOfResources: return "cudaErrorLaunchOutOfResources";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    case cudaErrorIllegalState: return "cudaErrorIllegalState";
    case cudaErrorStreamCaptureUnsupported: return "cudaErrorStreamCaptureUnsupported";
    case cudaErrorStreamCaptureInvalidated: return "cudaErrorStreamCaptureInvalidated";
    case cudaErrorStreamCaptureIsolation: return "cudaErrorStreamCaptureIsolation";
    case cudaErrorStreamCaptureImplicit: return "cudaErrorStreamCaptureImplicit";
    case cudaErrorCapturedEvent: return "cudaErrorCapturedEvent";
    }
    return "cudaErrorUnknown";
}

const char *cudaGetErrorString(cudaError_t e)
{
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidPitchValue: return "invalid pitch argument";
    case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorIllegalAddress: return "an illegal memory access was encountered";
    case cudaErrorLaunchOutOfResources: return "too many resources requested for launch";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
    case cudaErrorIllegalState: return "the operation cannot be performed in the present state";
    case cudaErrorStreamCaptureUnsupported:
        return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated:
        return "operation failed due to a previous error during capture";
    case cudaErrorStreamCaptureIsolation:
        return "dependency created on uncaptured work in another stream";
    case cudaErrorStreamCaptureImplicit:
        return "operation would make the legacy stream depend on a capturing blocking stream";
    case cudaErrorCapturedEvent:
        return "operation not permitted on an event last recorded in a capturing stream";
    }
    return "unknown error";
}

cudaError_t cudaGetLastError(void)
{
    cudaError_t e = last_error;
    last_error = cudaSuccess;
    return e;
}

cudaError_t cudaPeekAtLastError(void) { return last_error; }

cudaError_t cudaGetDeviceCount(int *count)
{
    if (!count) return set_error(cudaErrorInvalidValue);
    *count = device_count();
    return *count ? cudaSuccess : set_error(cudaErrorNoDevice);
}

/* 13.0, the toolkit this emulates. */
cudaError_t cudaDriverGetVersion(int *version)
{
    if (!version) return set_error(cudaErrorInvalidValue);
    *version = 13000;
    return cudaSuccess;
}

cudaError_t cudaRuntimeGetVersion(int *version) { return cudaDriverGetVersion(version); }

cudaError_t cudaGetDeviceProperties(struct cudaDeviceProp *prop, int device)
{
    if (!prop) return set_error(cudaErrorInvalidValue);
    if (device < 0 || device >= device_count()) return set_error(cudaErrorInvalidDevice);
    memset(prop, 0, sizeof *prop);
    snprintf(prop->name, sizeof prop->name, "Emulated GPU (cuda-emu, sm_90)");
    prop->totalGlobalMem = TOTAL_BYTES;
    prop->sharedMemPerBlock = 48 << 10;
    prop->sharedMemPerBlockOptin = 227 << 10;
    prop->sharedMemPerMultiprocessor = 228 << 10;
    prop->regsPerBlock = 65536;
    prop->warpSize = 32;
    prop->memPitch = 2147483647;
    prop->maxThreadsPerBlock = 1024;
    prop->maxThreadsDim[0] = prop->maxThreadsDim[1] = 1024;
    prop->maxThreadsDim[2] = 64;
    prop->maxGridSize[0] = 2147483647;
    prop->maxGridSize[1] = prop->maxGridSize[2] = 65535;
    prop->maxThreadsPerMultiProcessor = 2048;
    prop->clockRate = 1980000;
    prop->major = 9;
    prop->minor = 0;
    prop->multiProcessorCount = 132;
    prop->l2CacheSize = 50 << 20;
    prop->memoryBusWidth = 5120;
    prop->unifiedAddressing = 1;
    return cudaSuccess;
}

cudaError_t cudaSetDevice(int device)
{
    if (device < 0 || device >= device_count()) return set_error(cudaErrorInvalidDevice);
    current_device = device;
    return cudaSuccess;
}

cudaError_t cudaGetDevice(int *device)
{
    if (!device) return set_error(cudaErrorInvalidValue);
    *device = current_device;
    return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int *value, cudaDeviceAttr attr, int device)
{
    if (!value) return set_error(cudaErrorInvalidValue);
    if (device < 0 || device >= device_count()) return set_error(cudaErrorInvalidDevice);
    switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock: *value = 1024; break;
    case cudaDevAttrMaxBlockDimX: *value = 1024; break;
    case cudaDevAttrMaxBlockDimY: *value = 1024; break;
    case cudaDevAttrMaxBlockDimZ: *value = 64; break;
    case cudaDevAttrMaxGridDimX: *value = 2147483647; break;
    case cudaDevAttrMaxGridDimY: *value = 65535; break;
    case cudaDevAttrMaxGridDimZ: *value = 65535; break;
    case cudaDevAttrMaxSharedMemoryPerBlock: *value = 48 << 10; break;
    case cudaDevAttrWarpSize: *value = 32; break;
    case cudaDevAttrMaxPitch: *value = 2147483647; break;
    case cudaDevAttrClockRate: *value = 1980000; break;
    case cudaDevAttrMultiProcessorCount: *value = 132; break;
    case cudaDevAttrL2CacheSize: *value = 50 << 20; break;
    case cudaDevAttrMaxThreadsPerMultiProcessor: *value = 2048; break;
    case cudaDevAttrComputeCapabilityMajor: *value = 9; break;
    case cudaDevAttrComputeCapabilityMinor: *value = 0; break;
    case cudaDevAttrMaxSharedMemoryPerMultiprocessor: *value = 228 << 10; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = 227 << 10; break;
    default: return set_error(cudaErrorInvalidValue);
    }
    return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize(void)
{
    count_call("cudaDeviceSynchronize");
    cudaError_t e = capture_forbids_device_wait();
    if (e == cudaSuccess) g_device_waits++;
    return e == cudaSuccess ? land_all() : e;
}

cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes)
{
    if (!free_bytes || !total_bytes) return set_error(cudaErrorInvalidValue);
    std::lock_guard<std::mutex> hold(T().lock);
    *total_bytes = TOTAL_BYTES;
    *free_bytes = TOTAL_BYTES - T().device_bytes;
    return cudaSuccess;
}

cudaError_t cudaMalloc(void **p, size_t bytes)
{
    count_call("cudaMalloc");
    if (cudaError_t e = capture_forbids_unsafe()) return e;
    return alloc(p, bytes, MEM_DEVICE);
}
cudaError_t cudaFree(void *p)
{
    count_call("cudaFree");
    if (cudaError_t e = capture_forbids_unsafe()) return e;
    return release(p, MEM_DEVICE);
}
cudaError_t cudaHostAlloc(void **p, size_t bytes, unsigned flags)
{
    if (flags > 7) return set_error(cudaErrorInvalidValue);
    if (cudaError_t e = capture_forbids_unsafe()) return e;
    return alloc(p, bytes, MEM_PINNED);
}
cudaError_t cudaMallocHost(void **p, size_t bytes) { return cudaHostAlloc(p, bytes, 0); }
cudaError_t cudaFreeHost(void *p)
{
    if (cudaError_t e = capture_forbids_device_wait()) return e;
    cudaError_t landed = land_all(); /* it waits for the device first */
    cudaError_t e = release(p, MEM_PINNED);
    return e == cudaSuccess ? landed : e;
}

namespace {
cudaError_t copy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind)
{
    cudaError_t e = check_copy(dst, bytes, src, bytes, kind);
    if (e == cudaSuccess && bytes) memmove(dst, src, bytes);
    return e;
}
} /* namespace */

cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind)
{
    count_call(copy_name(kind, false));
    if (cudaError_t e = capture_forbids_unsafe()) return e;
    return copy(dst, src, bytes, kind);
}

/* A captured copy reads its source when the graph runs, as a real one does. */
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t s)
{
    count_call(copy_name(kind, true));
    if (int d = defer(s, [=] { (void)copy(dst, src, bytes, kind); }))
        return d > 0 ? cudaSuccess : cudaErrorStreamCaptureInvalidated;
    cudaError_t e = check_copy(dst, bytes, src, bytes, kind);
    if (e != cudaSuccess || lag_copy(dst, src, bytes, stream_id(s), stream_blocking(s))) return e;
    return copy(dst, src, bytes, kind);
}

cudaError_t cudaMemcpy2DAsync(void *dst, size_t dpitch, const void *src, size_t spitch,
                              size_t width, size_t height, cudaMemcpyKind kind, cudaStream_t s)
{
    if (int d = defer(s, [=] {
            (void)cudaMemcpy2DAsync(dst, dpitch, src, spitch, width, height, kind, nullptr);
        }))
        return d > 0 ? cudaSuccess : cudaErrorStreamCaptureInvalidated;
    if (width > dpitch || width > spitch || dpitch > 2147483647u || spitch > 2147483647u)
        return set_error(cudaErrorInvalidPitchValue);
    if (!width || !height) return cudaSuccess;
    cudaError_t e = check_copy(dst, dpitch * (height - 1) + width, src,
                               spitch * (height - 1) + width, kind);
    for (size_t r = 0; e == cudaSuccess && r < height; r++)
        memmove((char *)dst + r * dpitch, (const char *)src + r * spitch, width);
    return e;
}

cudaError_t cudaMemcpyPeerAsync(void *dst, int dst_device, const void *src, int src_device,
                                size_t bytes, cudaStream_t)
{
    if (dst_device < 0 || dst_device >= device_count() || src_device < 0 ||
        src_device >= device_count())
        return set_error(cudaErrorInvalidDevice);
    return cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice);
}

namespace {
cudaError_t fill(void *p, int value, size_t bytes)
{
    if (bytes && memory_kind(p, bytes) != MEM_DEVICE) return set_error(cudaErrorInvalidValue);
    if (bytes) memset(p, value, bytes);
    return cudaSuccess;
}
} /* namespace */

cudaError_t cudaMemset(void *p, int value, size_t bytes)
{
    if (cudaError_t e = capture_forbids_unsafe()) return e;
    return fill(p, value, bytes);
}

cudaError_t cudaMemsetAsync(void *p, int value, size_t bytes, cudaStream_t s)
{
    if (int d = defer(s, [=] { (void)fill(p, value, bytes); }))
        return d > 0 ? cudaSuccess : cudaErrorStreamCaptureInvalidated;
    return fill(p, value, bytes);
}

cudaError_t cudaStreamCreate(cudaStream_t *s) { return cudaStreamCreateWithFlags(s, 0); }

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags)
{
    if (!s || flags > 1) return set_error(cudaErrorInvalidValue);
    stream_obj *o = new stream_obj{flags};
    *s = (cudaStream_t)o;
    return cudaSuccess;
}

cudaError_t cudaStreamDestroy(cudaStream_t s)
{
    if (!s) return set_error(cudaErrorInvalidResourceHandle);
    ((stream_obj *)s)->clock->waits++; /* its work completes, as CUDA's does after a destroy */
    delete (stream_obj *)s;
    return cudaSuccess;
}

/* Work completes when it is issued, so a wait has nothing to wait for. */
cudaError_t cudaStreamSynchronize(cudaStream_t s)
{
    count_call("cudaStreamSynchronize");
    cudaError_t e = capture_forbids_wait(s);
    if (e == cudaSuccess && s) ((stream_obj *)s)->clock->waits++;
    if (e == cudaSuccess && !s) g_device_waits++; /* the legacy stream waits for all others */
    if (e != cudaSuccess) return e;
    return s ? land_upto(mark_stream(stream_id(s))) : land_legacy();
}
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned)
{
    if (!e) return set_error(cudaErrorInvalidResourceHandle);
    cudaError_t err = capture_forbids_isolation(s, e->captured);
    if (err == cudaSuccess && e->recorded && !e->captured) stream_waits(stream_id(s), e->mark);
    return err;
}

cudaError_t cudaEventCreate(cudaEvent_t *e) { return cudaEventCreateWithFlags(e, 0); }

cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned flags)
{
    if (!e || flags > 7) return set_error(cudaErrorInvalidValue);
    *e = new CUevent_st{};
    (*e)->flags = flags;
    return cudaSuccess;
}

cudaError_t cudaEventDestroy(cudaEvent_t e)
{
    if (!e) return set_error(cudaErrorInvalidResourceHandle);
    delete e;
    return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s)
{
    if (!e) return set_error(cudaErrorInvalidResourceHandle);
    e->captured = capturing(s);
    if (e->captured) return cudaSuccess;
    e->ms = now_ms();
    e->recorded = true;
    e->clock = s ? ((stream_obj *)s)->clock : nullptr;
    e->stream_waits_at = e->clock ? e->clock->waits.load() : 0;
    e->device_waits_at = g_device_waits;
    e->waited = false;
    e->mark = mark_stream(stream_id(s));
    return cudaSuccess;
}

/* Whether the work before e's last record is still running, as CNN_EMU_LAGGING_EVENTS models
 * a device: until e, its stream or the device is waited for. */
static bool event_behind(const CUevent_st *e)
{
    return lagging_events() && e->recorded && !e->waited &&
           e->device_waits_at == g_device_waits &&
           (!e->clock || e->clock->waits == e->stream_waits_at);
}

cudaError_t cudaEventQuery(cudaEvent_t e)
{
    if (!e) return set_error(cudaErrorInvalidResourceHandle);
    if (cudaError_t err = capture_forbids_unsafe()) return err;
    if (e->captured) return set_error(cudaErrorCapturedEvent);
    if (event_behind(e)) return cudaErrorNotReady;
    return e->recorded ? land_upto(e->mark) : cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t e)
{
    count_call("cudaEventSynchronize");
    if (!e) return set_error(cudaErrorInvalidResourceHandle);
    if (cudaError_t err = capture_forbids_unsafe()) return err;
    if (e->captured) return set_error(cudaErrorCapturedEvent);
    e->waited = true;
    return e->recorded ? land_upto(e->mark) : cudaSuccess;
}

cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end)
{
    if (!ms || !start || !end) return set_error(cudaErrorInvalidResourceHandle);
    if (!start->recorded || !end->recorded) return set_error(cudaErrorInvalidResourceHandle);
    if ((start->flags | end->flags) & cudaEventDisableTiming)
        return set_error(cudaErrorInvalidResourceHandle);
    /* Both must have completed (CUDA answers cudaErrorNotReady, as a query does): a start
     * recorded earlier on end's stream has when end has. */
    const bool same_stream = start->clock == end->clock && start->ms <= end->ms;
    if (event_behind(end) || (event_behind(start) && !same_stream)) return cudaErrorNotReady;
    *ms = (float)(end->ms - start->ms);
    return cudaSuccess;
}

/* ---- cuBLAS ------------------------------------------------------------------------------ */
const char *cublasGetStatusString(cublasStatus_t s)
{
    switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    }
    return "CUBLAS_STATUS_UNKNOWN";
}

cublasStatus_t cublasCreate(cublasHandle_t *h)
{
    if (!h) return CUBLAS_STATUS_INVALID_VALUE;
    if (!device_count()) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (injected_alloc_failure()) return CUBLAS_STATUS_ALLOC_FAILED; /* its workspace */
    *h = new cublasContext{CUBLAS_DEFAULT_MATH, nullptr};
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy(cublasHandle_t h)
{
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    delete h;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s)
{
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    h->stream = s;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t mode)
{
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (mode > CUBLAS_TF32_TENSOR_OP_MATH) return CUBLAS_STATUS_INVALID_VALUE;
    h->mode = mode;
    return CUBLAS_STATUS_SUCCESS;
}

} /* extern "C" */

/* v with its `drop` lowest mantissa bits rounded away, to nearest even (inf and NaN kept). */
static float round_mantissa(float v, int drop)
{
    uint32_t u, half = (1u << (drop - 1)) - 1u, mask = (1u << drop) - 1u;
    memcpy(&u, &v, sizeof u);
    if ((u & 0x7f800000u) != 0x7f800000u) u = (u + half + ((u >> drop) & 1u)) & ~mask;
    memcpy(&v, &u, sizeof v);
    return v;
}

float cnn_emu::to_tf32(float v) { return round_mantissa(v, 13); }
float cnn_emu::to_bf16(float v) { return round_mantissa(v, 16); }

namespace {

/* A column-major (rows, cols) operand with leading dimension ld, checked to lie in device
 * memory, rounded to TF32 into tmp when asked. */
bool operand(const float *p, int rows, int cols, int ld, bool tf32, std::vector<float> &tmp,
             const float **out)
{
    if (rows == 0 || cols == 0) {
        *out = p;
        return true;
    }
    size_t span = ((size_t)ld * (size_t)(cols - 1) + (size_t)rows) * sizeof(float);
    if (memory_kind(p, span) != MEM_DEVICE) return false;
    *out = p;
    if (tf32) {
        tmp.assign(p, p + span / sizeof(float));
        for (float &v : tmp) v = to_tf32(v);
        *out = tmp.data();
    }
    return true;
}

} /* namespace */

extern "C" cublasStatus_t cublasSgemm(cublasHandle_t h, cublasOperation_t ta,
                                      cublasOperation_t tb, int m, int n, int k,
                                      const float *alpha, const float *a, int lda, const float *b,
                                      int ldb, const float *beta, float *c, int ldc)
{
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    count_call("cublasSgemm");
    const bool at = ta != CUBLAS_OP_N, bt = tb != CUBLAS_OP_N;
    const int ar = at ? k : m, ac = at ? m : k, br = bt ? n : k, bc = bt ? k : n;
    if (m < 0 || n < 0 || k < 0 || !alpha || !beta || lda < (ar > 1 ? ar : 1) ||
        ldb < (br > 1 ? br : 1) || ldc < (m > 1 ? m : 1))
        return CUBLAS_STATUS_INVALID_VALUE;
    if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
    if (capturing(h->stream)) {
        /* Host scalars and the math mode are read at capture, as cuBLAS does. */
        const float al = *alpha, be = *beta;
        const cublasMath_t mode = h->mode;
        int d = defer(h->stream, [=] {
            cublasContext now{mode, nullptr};
            (void)cublasSgemm(&now, ta, tb, m, n, k, &al, a, lda, b, ldb, &be, c, ldc);
        });
        if (d) return d > 0 ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_EXECUTION_FAILED;
    }
    const bool tf32 = h->mode == CUBLAS_TF32_TENSOR_OP_MATH;
    std::vector<float> ta32, tb32;
    const float *pa, *pb;
    float *pc = c;
    if (!operand(a, ar, ac, lda, tf32, ta32, &pa) || !operand(b, br, bc, ldb, tf32, tb32, &pb) ||
        memory_kind(pc, ((size_t)ldc * (size_t)(n - 1) + (size_t)m) * sizeof(float)) !=
            MEM_DEVICE) {
        report(cudaErrorIllegalAddress, "cublasSgemm: an operand is not (wholly) in device "
               "memory (m %d, n %d, k %d, lda %d, ldb %d, ldc %d)", m, n, k, lda, ldb, ldc);
        return CUBLAS_STATUS_EXECUTION_FAILED;
    }
    if (no_compute()) return CUBLAS_STATUS_SUCCESS;
    if (k == 0) {
        for (int j = 0; j < n; j++)
            for (int i = 0; i < m; i++) {
                float &v = pc[(size_t)j * ldc + i];
                v = *beta == 0.0f ? 0.0f : *beta * v;
            }
        return CUBLAS_STATUS_SUCCESS;
    }
    cblas_sgemm(CblasColMajor, at ? CblasTrans : CblasNoTrans, bt ? CblasTrans : CblasNoTrans, m,
                n, k, *alpha, pa, lda, pb, ldb, *beta, pc, ldc);
    return CUBLAS_STATUS_SUCCESS;
}

extern "C" cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t h, cublasOperation_t ta,
                                                    cublasOperation_t tb, int m, int n, int k,
                                                    const float *alpha, const float *a, int lda,
                                                    long long stride_a, const float *b, int ldb,
                                                    long long stride_b, const float *beta,
                                                    float *c, int ldc, long long stride_c,
                                                    int batch)
{
    if (batch < 0) return CUBLAS_STATUS_INVALID_VALUE;
    for (int i = 0; i < batch; i++) {
        cublasStatus_t s = cublasSgemm(h, ta, tb, m, n, k, alpha, a + i * stride_a, lda,
                                       b + i * stride_b, ldb, beta, c + i * stride_c, ldc);
        if (s != CUBLAS_STATUS_SUCCESS) return s;
    }
    return CUBLAS_STATUS_SUCCESS;
}

extern "C" cublasStatus_t cublasSgemv(cublasHandle_t h, cublasOperation_t t, int m, int n,
                                      const float *alpha, const float *a, int lda, const float *x,
                                      int incx, const float *beta, float *y, int incy)
{
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    count_call("cublasSgemv");
    if (m < 0 || n < 0 || !alpha || !beta || lda < (m > 1 ? m : 1) || incx == 0 || incy == 0)
        return CUBLAS_STATUS_INVALID_VALUE;
    const int xl = t == CUBLAS_OP_N ? n : m, yl = t == CUBLAS_OP_N ? m : n;
    if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
    if (capturing(h->stream)) {
        const float al = *alpha, be = *beta;
        const cublasMath_t mode = h->mode;
        int d = defer(h->stream, [=] {
            cublasContext now{mode, nullptr};
            (void)cublasSgemv(&now, t, m, n, &al, a, lda, x, incx, &be, y, incy);
        });
        if (d) return d > 0 ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_EXECUTION_FAILED;
    }
    std::vector<float> unused;
    const float *pa;
    const size_t xs = ((size_t)(xl - 1) * (size_t)abs(incx) + 1) * sizeof(float);
    const size_t ys = ((size_t)(yl - 1) * (size_t)abs(incy) + 1) * sizeof(float);
    if (!operand(a, m, n, lda, false, unused, &pa) || memory_kind(x, xs) != MEM_DEVICE ||
        memory_kind(y, ys) != MEM_DEVICE) {
        report(cudaErrorIllegalAddress, "cublasSgemv: an operand is not (wholly) in device "
               "memory (m %d, n %d, lda %d)", m, n, lda);
        return CUBLAS_STATUS_EXECUTION_FAILED;
    }
    if (no_compute()) return CUBLAS_STATUS_SUCCESS;
    /* cuBLAS GEMV ignores TF32 mode: exact FP32, as cblas. */
    cblas_sgemv(CblasColMajor, t == CUBLAS_OP_N ? CblasNoTrans : CblasTrans, m, n, *alpha, pa,
                lda, x, incx, *beta, y, incy);
    return CUBLAS_STATUS_SUCCESS;
}
