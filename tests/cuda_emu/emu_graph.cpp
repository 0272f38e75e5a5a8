/* emu_graph.cpp — stream capture and CUDA graphs for the emulator. While a stream is captured,
 * the work the runtime would queue on it (launches, async copies and memsets, cuBLAS and cuDNN
 * calls) is recorded as closures instead of run, and each cudaGraphLaunch runs them in order. The
 * calls a real capture refuses fail as CUDA's do and invalidate the capture: waiting for the
 * capturing stream or an event recorded in it, and allocating or waiting for the device from a
 * thread whose capture mode forbids it. Test infrastructure, as the rest of cuda_emu. */
#include "emu_internal.h"

#include <stdlib.h>
#include <string.h>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

struct CUgraph_st {
    std::vector<std::function<void()>> work;
};
struct CUgraphExec_st {
    std::vector<std::function<void()>> work;
};

namespace {

struct capture {
    cudaStreamCaptureMode mode;
    std::thread::id thread;
    bool invalid;
    CUgraph_st *graph;
};

std::mutex lock;
std::map<cudaStream_t, capture> captures; /* under lock */
std::atomic<int> n_captures{0};           /* captures.size(), read without the lock */
thread_local cudaStreamCaptureMode thread_mode = cudaStreamCaptureModeGlobal;

} /* namespace */

namespace cnn_emu {

thread_local bool replaying = false;

bool capturing(cudaStream_t s)
{
    if (!s || n_captures.load(std::memory_order_relaxed) == 0) return false;
    std::lock_guard<std::mutex> hold(lock);
    return captures.count(s) != 0;
}

int defer(cudaStream_t s, std::function<void()> work)
{
    if (!capturing(s)) {
        if (replaying || checking_only || !lagging_streams()) return 0;
        queue_work(s, std::move(work)); /* CNN_EMU_LAGGING_STREAMS */
        return 1;
    }
    std::lock_guard<std::mutex> hold(lock);
    auto it = captures.find(s);
    if (it == captures.end()) return 0;
    if (it->second.invalid) {
        set_error(cudaErrorStreamCaptureInvalidated);
        return -1;
    }
    it->second.graph->work.push_back(std::move(work));
    return 1;
}

cudaError_t capture_forbids_wait(cudaStream_t s)
{
    if (!capturing(s)) return cudaSuccess;
    std::lock_guard<std::mutex> hold(lock);
    auto it = captures.find(s);
    if (it != captures.end()) it->second.invalid = true;
    return set_error(cudaErrorStreamCaptureUnsupported);
}

/* CUDA's rule for "potentially unsafe" calls: refused while this thread captures in a mode other
 * than relaxed, or, when the thread's own mode is global, while any thread captures in global
 * mode; unless the thread exchanged its mode for relaxed. */
cudaError_t capture_forbids_unsafe()
{
    if (n_captures.load(std::memory_order_relaxed) == 0 ||
        thread_mode == cudaStreamCaptureModeRelaxed)
        return cudaSuccess;
    std::lock_guard<std::mutex> hold(lock);
    bool refused = false;
    for (auto &kv : captures) {
        capture &c = kv.second;
        bool mine = c.thread == std::this_thread::get_id();
        if ((mine && c.mode != cudaStreamCaptureModeRelaxed) ||
            (thread_mode == cudaStreamCaptureModeGlobal && c.mode == cudaStreamCaptureModeGlobal)) {
            c.invalid = true;
            refused = true;
        }
    }
    return refused ? set_error(cudaErrorStreamCaptureUnsupported) : cudaSuccess;
}

cudaError_t capture_forbids_device_wait(bool every_device)
{
    if (cudaError_t e = capture_forbids_unsafe()) return e;
    if (n_captures.load(std::memory_order_relaxed) == 0) return cudaSuccess;
    std::lock_guard<std::mutex> hold(lock);
    bool hit = false;
    for (auto &kv : captures)
        if (every_device || stream_device(kv.first) == current_device()) {
            kv.second.invalid = true;
            hit = true;
        }
    return hit ? set_error(cudaErrorStreamCaptureUnsupported) : cudaSuccess;
}

cudaError_t capture_forbids_isolation(cudaStream_t s, bool event_captured)
{
    if (event_captured || !capturing(s)) return cudaSuccess;
    std::lock_guard<std::mutex> hold(lock);
    auto it = captures.find(s);
    if (it != captures.end()) it->second.invalid = true;
    return set_error(cudaErrorStreamCaptureIsolation);
}

} /* namespace cnn_emu */

using namespace cnn_emu;

extern "C" {

cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode mode)
{
    if (!s) return set_error(cudaErrorStreamCaptureUnsupported); /* the legacy stream */
    if (mode > cudaStreamCaptureModeRelaxed) return set_error(cudaErrorInvalidValue);
    std::lock_guard<std::mutex> hold(lock);
    if (captures.count(s)) return set_error(cudaErrorIllegalState);
    captures[s] = capture{mode, std::this_thread::get_id(), false, new CUgraph_st};
    n_captures++;
    return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *graph)
{
    if (!graph) return set_error(cudaErrorInvalidValue);
    *graph = nullptr;
    std::lock_guard<std::mutex> hold(lock);
    auto it = captures.find(s);
    if (it == captures.end() || it->second.thread != std::this_thread::get_id())
        return set_error(cudaErrorIllegalState);
    capture c = it->second;
    captures.erase(it);
    n_captures--;
    /* CNN_EMU_INVALIDATE_CAPTURE=1 (read here): every capture ends as one that something
     * invalidated, for the callers' fallbacks. */
    const char *inv = getenv("CNN_EMU_INVALIDATE_CAPTURE");
    if (c.invalid || (inv && *inv && strcmp(inv, "0") != 0)) {
        delete c.graph;
        return set_error(cudaErrorStreamCaptureInvalidated);
    }
    *graph = c.graph;
    return cudaSuccess;
}

cudaError_t cudaStreamIsCapturing(cudaStream_t s, cudaStreamCaptureStatus *status)
{
    if (!status) return set_error(cudaErrorInvalidValue);
    std::lock_guard<std::mutex> hold(lock);
    auto it = captures.find(s);
    *status = it == captures.end()   ? cudaStreamCaptureStatusNone
              : it->second.invalid ? cudaStreamCaptureStatusInvalidated
                                   : cudaStreamCaptureStatusActive;
    return cudaSuccess;
}

cudaError_t cudaThreadExchangeStreamCaptureMode(cudaStreamCaptureMode *mode)
{
    if (!mode || *mode > cudaStreamCaptureModeRelaxed) return set_error(cudaErrorInvalidValue);
    cudaStreamCaptureMode old = thread_mode;
    thread_mode = *mode;
    *mode = old;
    return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t graph, unsigned long long)
{
    if (!exec || !graph) return set_error(cudaErrorInvalidValue);
    *exec = new CUgraphExec_st{graph->work};
    return cudaSuccess;
}

/* Runs a graph's recorded work; the first error any of it sets is the result, and becomes the
 * last error (unless one was pending), as a fault inside a real graph would surface at the next
 * check. */
static cudaError_t run_graph(const std::vector<std::function<void()>> &work)
{
    const cudaError_t before = cudaGetLastError();
    const bool was = replaying;
    cudaError_t e = cudaSuccess;
    replaying = true;
    for (auto &w : work) {
        w();
        cudaError_t now = cudaGetLastError();
        if (e == cudaSuccess) e = now;
    }
    replaying = was;
    if (before != cudaSuccess) set_error(before);
    else if (e != cudaSuccess) set_error(e);
    return e;
}

/* Runs the recorded work now (streams complete at once here), or with its stream's queue under
 * CNN_EMU_LAGGING_STREAMS. */
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t s)
{
    if (!exec) return set_error(cudaErrorInvalidResourceHandle);
    if (capturing(s)) return set_error(cudaErrorStreamCaptureUnsupported);
    count_call("cudaGraphLaunch");
    if (!replaying && lagging_streams()) {
        auto work = std::make_shared<const std::vector<std::function<void()>>>(exec->work);
        queue_work(s, [work] { (void)run_graph(*work); }); /* exec may be destroyed first */
        return cudaSuccess;
    }
    return run_graph(exec->work);
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec)
{
    if (!exec) return set_error(cudaErrorInvalidResourceHandle);
    delete exec;
    return cudaSuccess;
}

cudaError_t cudaGraphDestroy(cudaGraph_t graph)
{
    if (!graph) return set_error(cudaErrorInvalidResourceHandle);
    delete graph;
    return cudaSuccess;
}

} /* extern "C" */
