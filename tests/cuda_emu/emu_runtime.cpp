/* emu_runtime.cpp — the CUDA runtime of the emulator: device and pinned memory (host memory
 * in a table of allocations), copies and memsets that check each pointer lies in memory of the
 * kind the call says, streams and events that complete at once (or lag, as
 * CNN_EMU_LAGGING_EVENTS / _COPIES / _STREAMS ask), the error state and call counts. The
 * device itself is emu_device.cpp; cuBLAS, emu_cublas.cpp. Test infrastructure: it may print
 * (emu_internal.h's report), and it never touches a real GPU. */
#include "emu_internal.h"

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

bool env_flag(const char *name)
{
    const char *v = getenv(name);
    return v && *v && strcmp(v, "0") != 0;
}

bool no_compute()
{
    static const bool v = env_flag("CNN_EMU_NO_COMPUTE");
    return v || checking_only;
}

namespace {


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

struct block {
    size_t bytes;
    mem_kind kind;
    int device; /* MEM_DEVICE: the device current at its cudaMalloc */
};

struct alloc_table {
    std::mutex lock;
    std::map<uintptr_t, block> blocks; /* by start */
    size_t device_bytes[EMU_MAX_DEVICES] = {};
};

alloc_table &T()
{
    static alloc_table *t = new alloc_table; /* never destroyed: frees may run at exit */
    return *t;
}

thread_local cudaError_t last_error = cudaSuccess;


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
    const int dev = current_device();
    if (kind == MEM_DEVICE && bytes > EMU_TOTAL_BYTES - t.device_bytes[dev])
        return set_error(cudaErrorMemoryAllocation);
    if (bytes == 0) return cudaSuccess;
    /* 256-byte aligned like cudaMalloc, and exactly `bytes` long, so that under ASan an
     * access one past the request is caught. */
    void *q = nullptr;
    if (posix_memalign(&q, 256, bytes) != 0) return set_error(cudaErrorMemoryAllocation);
    t.blocks[(uintptr_t)q] = {bytes, kind, kind == MEM_DEVICE ? dev : -1};
    if (kind == MEM_DEVICE) t.device_bytes[dev] += bytes;
    *p = q;
    return cudaSuccess;
}

cudaError_t release(void *p, mem_kind kind)
{
    if (!p) return cudaSuccess;
    alloc_table &t = T();
    std::lock_guard<std::mutex> hold(t.lock);
    auto it = t.blocks.find((uintptr_t)p);
    if (it == t.blocks.end() || it->second.kind != kind) return set_error(cudaErrorInvalidValue);
    if (kind == MEM_DEVICE) t.device_bytes[it->second.device] -= it->second.bytes;
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
    int device = current_device();
};

} /* namespace */
uint64_t stream_id(cudaStream_t s) { return s ? ((stream_obj *)s)->id : 0; }
int stream_device(cudaStream_t s) { return s ? ((stream_obj *)s)->device : current_device(); }
bool stream_blocking(cudaStream_t s) { return !s || !(((stream_obj *)s)->flags & 1); }
namespace {

/* CNN_EMU_LAGGING_EVENTS=1 (read at each query): a device that is always behind. */
bool lagging_events() { return env_flag("CNN_EMU_LAGGING_EVENTS"); }

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

/* The allocation [p, p + bytes) lies in (bytes 0: p may be one past its end), or NULL; with
 * the table's lock held. */
static const block *holding(const alloc_table &t, const void *p, size_t bytes)
{
    auto it = t.blocks.upper_bound((uintptr_t)p);
    if (it == t.blocks.begin()) return nullptr;
    --it;
    uintptr_t a = (uintptr_t)p, start = it->first, end = start + it->second.bytes;
    return a >= start && a <= end && bytes <= end - a ? &it->second : nullptr;
}

mem_kind memory_kind(const void *p, size_t bytes)
{
    alloc_table &t = T();
    std::lock_guard<std::mutex> hold(t.lock);
    const block *b = holding(t, p, bytes);
    return b ? b->kind : MEM_UNKNOWN;
}

int device_of(const void *p)
{
    alloc_table &t = T();
    std::lock_guard<std::mutex> hold(t.lock);
    const block *b = holding(t, p, 0);
    return b && b->kind == MEM_DEVICE ? b->device : -1;
}

bool foreign_device_memory(const char *fn, const void *p, int device)
{
    const int d = p ? device_of(p) : -1;
    if (d < 0 || d == device) return false;
    report(cudaErrorIllegalAddress, "%s: %p is memory of device %d, used on device %d (peer access "
           "is never enabled)", fn, p, d, device);
    return true;
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
    int device = cnn_emu::current_device(); /* the one current at its creation */
    cnn_emu::copy_mark mark; /* where the last record was, for CNN_EMU_LAGGING_COPIES */
    cnn_emu::work_mark work; /* and for CNN_EMU_LAGGING_STREAMS, */
    std::shared_ptr<std::atomic<double>> ran_ms; /* with the time its queue reached it */
};

using namespace cnn_emu;

extern "C" {

cudaError_t cudaGetLastError(void)
{
    cudaError_t e = last_error;
    last_error = cudaSuccess;
    return e;
}

cudaError_t cudaPeekAtLastError(void) { return last_error; }

cudaError_t cudaDeviceSynchronize(void)
{
    count_call("cudaDeviceSynchronize");
    cudaError_t e = capture_forbids_device_wait(false);
    if (e != cudaSuccess) return e;
    g_device_waits++;
    const cudaError_t ran = run_device_work(current_device());
    e = land_all();
    return ran != cudaSuccess ? ran : e;
}

cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes)
{
    if (!free_bytes || !total_bytes) return set_error(cudaErrorInvalidValue);
    std::lock_guard<std::mutex> hold(T().lock);
    *total_bytes = EMU_TOTAL_BYTES;
    *free_bytes = EMU_TOTAL_BYTES - T().device_bytes[current_device()];
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
    const cudaError_t ran = run_device_work(-1); /* cudaFree waits for the device */
    const cudaError_t e = release(p, MEM_DEVICE);
    return e != cudaSuccess ? e : ran;
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
    if (cudaError_t e = capture_forbids_device_wait(true)) return e;
    const cudaError_t ran = run_device_work(-1); /* it waits for the device first */
    const cudaError_t landed = land_all();
    const cudaError_t e = release(p, MEM_PINNED);
    return e != cudaSuccess ? e : ran != cudaSuccess ? ran : landed;
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
    if (cudaError_t e = run_stream_work(nullptr)) return e; /* on the legacy stream */
    return copy(dst, src, bytes, kind);
}

namespace {
/* CNN_EMU_LAGGING_STREAMS: the copy, checked, runs with its stream's queue. Pageable host
 * memory is staged as CUDA stages it: a source is read now; a destination makes the copy wait
 * for its stream and run now. A pinned destination reads 0xFF until the copy runs; a pinned
 * source is read when it runs. */
cudaError_t queue_copy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind,
                       cudaStream_t s)
{
    if (!bytes) return cudaSuccess;
    const mem_kind dk = memory_kind(dst, bytes), sk = memory_kind(src, bytes);
    if (dk == MEM_UNKNOWN) {
        if (cudaError_t e = run_stream_work(s)) return e;
        return copy(dst, src, bytes, kind);
    }
    if (sk == MEM_UNKNOWN) {
        auto staged = std::make_shared<std::vector<unsigned char>>(
            (const unsigned char *)src, (const unsigned char *)src + bytes);
        queue_work(s, [=] { memmove(dst, staged->data(), bytes); });
        return cudaSuccess;
    }
    if (dk == MEM_PINNED && sk == MEM_DEVICE) memset(dst, 0xFF, bytes);
    queue_work(s, [=] { memmove(dst, src, bytes); });
    return cudaSuccess;
}
} /* namespace */

/* A captured copy reads its source when the graph runs, as a real one does. */
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t s)
{
    count_call(copy_name(kind, true));
    if (int d = capturing(s) ? defer(s, [=] { (void)copy(dst, src, bytes, kind); }) : 0)
        return d > 0 ? cudaSuccess : cudaErrorStreamCaptureInvalidated;
    cudaError_t e = check_copy(dst, bytes, src, bytes, kind);
    if (e == cudaSuccess && !replaying && lagging_streams())
        return queue_copy(dst, src, bytes, kind, s);
    if (e != cudaSuccess || lag_copy(dst, src, bytes, stream_id(s), stream_blocking(s))) return e;
    return copy(dst, src, bytes, kind);
}

cudaError_t cudaMemcpy2DAsync(void *dst, size_t dpitch, const void *src, size_t spitch,
                              size_t width, size_t height, cudaMemcpyKind kind, cudaStream_t s)
{
    if (int d = !capturing(s) ? 0 : defer(s, [=] {
            (void)cudaMemcpy2DAsync(dst, dpitch, src, spitch, width, height, kind, nullptr);
        }))
        return d > 0 ? cudaSuccess : cudaErrorStreamCaptureInvalidated;
    if (width > dpitch || width > spitch || dpitch > 2147483647u || spitch > 2147483647u)
        return set_error(cudaErrorInvalidPitchValue);
    if (!width || !height) return cudaSuccess;
    const size_t dbytes = dpitch * (height - 1) + width, sbytes = spitch * (height - 1) + width;
    cudaError_t e = check_copy(dst, dbytes, src, sbytes, kind);
    if (e == cudaSuccess && !replaying && lagging_streams()) {
        /* CNN_EMU_LAGGING_STREAMS: queued between device buffers; else it waits for its stream
         * and runs now. */
        if (memory_kind(dst, dbytes) == MEM_DEVICE && memory_kind(src, sbytes) == MEM_DEVICE) {
            queue_work(s, [=] {
                (void)cudaMemcpy2DAsync(dst, dpitch, src, spitch, width, height, kind, nullptr);
            });
            return cudaSuccess;
        }
        e = run_stream_work(s);
    }
    for (size_t r = 0; e == cudaSuccess && r < height; r++)
        memmove((char *)dst + r * dpitch, (const char *)src + r * spitch, width);
    return e;
}

cudaError_t cudaMemcpyPeerAsync(void *dst, int dst_device, const void *src, int src_device,
                                size_t bytes, cudaStream_t s)
{
    if (dst_device < 0 || dst_device >= device_count() || src_device < 0 ||
        src_device >= device_count())
        return set_error(cudaErrorInvalidDevice);
    if (bytes && (device_of(dst) != dst_device || device_of(src) != src_device)) {
        report(cudaErrorInvalidValue, "cudaMemcpyPeerAsync: dst %p is on device %d (given %d), "
               "src %p on device %d (given %d)", dst, device_of(dst), dst_device, src,
               device_of(src), src_device);
        return cudaErrorInvalidValue;
    }
    if (!replaying && lagging_streams() && !capturing(s)) {
        queue_work(s, [=] { memmove(dst, src, bytes); });
        return cudaSuccess;
    }
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
    if (cudaError_t e = run_stream_work(nullptr)) return e; /* on the legacy stream */
    return fill(p, value, bytes);
}

cudaError_t cudaMemsetAsync(void *p, int value, size_t bytes, cudaStream_t s)
{
    /* (queued by CNN_EMU_LAGGING_STREAMS: the pointer is checked now, as CUDA checks it) */
    if (bytes && !capturing(s) && memory_kind(p, bytes) != MEM_DEVICE)
        return set_error(cudaErrorInvalidValue);
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
    (void)run_stream_work(s); /* its queued work runs (CUDA lets it finish after the destroy) */
    forget_stream(s);
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
    const cudaError_t ran = run_stream_work(s);
    e = s ? land_upto(mark_stream(stream_id(s))) : land_legacy();
    return ran != cudaSuccess ? ran : e;
}
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned)
{
    if (!e) return set_error(cudaErrorInvalidResourceHandle);
    cudaError_t err = capture_forbids_isolation(s, e->captured);
    if (err == cudaSuccess && e->recorded && !e->captured) {
        stream_waits(stream_id(s), e->mark);
        queue_wait(s, e->work);
    }
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
    if (e->device != stream_device(s)) { /* as CUDA's stream and event behaviour says */
        report(cudaErrorInvalidResourceHandle, "cudaEventRecord: an event of device %d recorded "
               "on a stream of device %d", e->device, stream_device(s));
        return cudaErrorInvalidResourceHandle;
    }
    e->captured = capturing(s);
    if (e->captured) return cudaSuccess;
    e->ms = now_ms();
    e->recorded = true;
    e->clock = s ? ((stream_obj *)s)->clock : nullptr;
    e->stream_waits_at = e->clock ? e->clock->waits.load() : 0;
    e->device_waits_at = g_device_waits;
    e->waited = false;
    e->mark = mark_stream(stream_id(s));
    e->ran_ms = nullptr;
    if (!replaying && lagging_streams()) { /* its time is when the work before it has run */
        auto t = e->ran_ms = std::make_shared<std::atomic<double>>(e->ms);
        queue_work(s, [t] { *t = now_ms(); });
    }
    e->work = mark_work(s);
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

/* The work before e's last record has run, and its copies have landed. */
static cudaError_t waited_for(cudaEvent_t e)
{
    const cudaError_t ran = run_work_upto(e->work);
    const cudaError_t landed = land_upto(e->mark);
    return ran != cudaSuccess ? ran : landed;
}

cudaError_t cudaEventQuery(cudaEvent_t e)
{
    if (!e) return set_error(cudaErrorInvalidResourceHandle);
    if (cudaError_t err = capture_forbids_unsafe()) return err;
    if (e->captured) return set_error(cudaErrorCapturedEvent);
    if (event_behind(e)) return cudaErrorNotReady;
    return e->recorded ? waited_for(e) : cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t e)
{
    count_call("cudaEventSynchronize");
    if (!e) return set_error(cudaErrorInvalidResourceHandle);
    if (cudaError_t err = capture_forbids_unsafe()) return err;
    if (e->captured) return set_error(cudaErrorCapturedEvent);
    e->waited = true;
    return e->recorded ? waited_for(e) : cudaSuccess;
}

cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end)
{
    if (!ms || !start || !end) return set_error(cudaErrorInvalidResourceHandle);
    if (!start->recorded || !end->recorded) return set_error(cudaErrorInvalidResourceHandle);
    if ((start->flags | end->flags) & cudaEventDisableTiming || start->device != end->device)
        return set_error(cudaErrorInvalidResourceHandle);
    /* Both must have completed (CUDA answers cudaErrorNotReady, as a query does): a start
     * recorded earlier on end's stream has when end has. */
    const bool same_stream = start->clock == end->clock && start->ms <= end->ms;
    if (event_behind(end) || (event_behind(start) && !same_stream) || work_pending(end->work) ||
        work_pending(start->work))
        return cudaErrorNotReady;
    const double t0 = start->ran_ms ? start->ran_ms->load() : start->ms;
    const double t1 = end->ran_ms ? end->ran_ms->load() : end->ms;
    *ms = (float)(t1 - t0);
    return cudaSuccess;
}

} /* extern "C" */
