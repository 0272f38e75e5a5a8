/* emu_streams.cpp — CNN_EMU_LAGGING_STREAMS: a device that runs each stream's work only when
 * the host needs it. Launches, asynchronous copies and memsets, cuBLAS and cuDNN calls and graph
 * launches are checked when issued and queued on their stream; a stream's queue runs when the
 * host waits for it (cudaStreamSynchronize, an event recorded on it, its device, cudaFree and
 * cudaFreeHost, which wait for every device) or when another stream's queued work waits for one
 * of its events (cudaStreamWaitEvent). Nothing else runs early, so work that reads another
 * stream's results without an event, a wait for the wrong device or stream, and host reads
 * before a wait see stale values. Test infrastructure, as the rest of cuda_emu. */
#include "emu_internal.h"

#include <atomic>
#include <deque>
#include <map>
#include <mutex>
#include <utility>
#include <vector>

namespace {

struct item {
    uint64_t seq;
    std::function<void()> work;
};

/* Legacy and blocking streams of one device wait for each other (CUDA's legacy default
 * stream); non-blocking ones only for what they are told to. */
struct queue {
    bool blocking = false;
    std::deque<item> items;
};

using key = std::pair<int, uint64_t>; /* device, stream id (0: the legacy stream) */

struct stream_state {
    std::mutex lock; /* the queues */
    std::map<key, queue> queues;
    /* One thread runs queued work at a time (kernels run one at a time anyway); recursive, as
     * a queued wait runs another stream's work. */
    std::recursive_mutex running;
};

stream_state &Q()
{
    static stream_state *q = new stream_state; /* never destroyed: waits may run at exit */
    return *q;
}

std::atomic<uint64_t> g_seq{1};

key key_of(cudaStream_t s) { return {cnn_emu::stream_device(s), cnn_emu::stream_id(s)}; }

void run_upto(const key &k, uint64_t seq, cudaError_t &first);

/* Runs the blocking queues of k's device other than k up to seq: what the legacy stream's
 * implicit synchronization puts before a blocking queue's item. */
void run_blocking_peers(const key &k, uint64_t seq, cudaError_t &first)
{
    std::vector<key> peers;
    {
        std::lock_guard<std::mutex> hold(Q().lock);
        for (auto &kv : Q().queues)
            if (kv.first != k && kv.first.first == k.first && kv.second.blocking &&
                !kv.second.items.empty())
                peers.push_back(kv.first);
    }
    for (const key &p : peers) run_upto(p, seq, first);
}

/* Runs k's queued work issued before seq, in order; first: the first error it set. */
void run_upto(const key &k, uint64_t seq, cudaError_t &first)
{
    std::lock_guard<std::recursive_mutex> one(Q().running);
    for (;;) {
        item it;
        bool blocking;
        {
            std::lock_guard<std::mutex> hold(Q().lock);
            auto q = Q().queues.find(k);
            if (q == Q().queues.end() || q->second.items.empty() ||
                q->second.items.front().seq >= seq)
                return;
            it = std::move(q->second.items.front());
            q->second.items.pop_front();
            blocking = q->second.blocking;
        }
        if (blocking) run_blocking_peers(k, it.seq, first);
        const bool was = cnn_emu::replaying;
        cnn_emu::replaying = true; /* the work runs now, as it was checked when issued */
        it.work();
        cnn_emu::replaying = was;
        cudaError_t e = cudaGetLastError();
        if (first == cudaSuccess) first = e;
    }
}

/* The error of the work run: the last error becomes it (unless one was pending already), as a
 * fault in queued work surfaces at the next wait. */
cudaError_t finish(cudaError_t before, cudaError_t first)
{
    if (before != cudaSuccess) cnn_emu::set_error(before);
    else if (first != cudaSuccess) cnn_emu::set_error(first);
    return first;
}

} /* namespace */

namespace cnn_emu {

bool lagging_streams() { return env_flag("CNN_EMU_LAGGING_STREAMS"); }

bool deferring(cudaStream_t s)
{
    return capturing(s) || (!replaying && !checking_only && lagging_streams());
}

void queue_work(cudaStream_t s, std::function<void()> work)
{
    std::lock_guard<std::mutex> hold(Q().lock);
    queue &q = Q().queues[key_of(s)];
    q.blocking = stream_blocking(s);
    q.items.push_back(item{g_seq++, std::move(work)});
}

int defer_launch(cudaStream_t s, std::function<void()> run)
{
    if (capturing(s)) return defer(s, std::move(run));
    if (replaying || checking_only || !lagging_streams()) return 0;
    /* The launch's own checks (configuration, stream, pointer arguments) answer now, as a
     * real launch's do; only its execution waits. */
    const cudaError_t before = cudaGetLastError();
    checking_only = true;
    run();
    checking_only = false;
    const cudaError_t e = cudaGetLastError();
    finish(before, e);
    if (e == cudaSuccess) queue_work(s, std::move(run));
    return 1;
}

work_mark mark_work(cudaStream_t s)
{
    const key k = key_of(s);
    return work_mark{k.first, k.second, g_seq++};
}

bool work_pending(const work_mark &m)
{
    std::lock_guard<std::mutex> hold(Q().lock);
    auto q = Q().queues.find({m.device, m.stream});
    return q != Q().queues.end() && !q->second.items.empty() && q->second.items.front().seq < m.seq;
}

void queue_wait(cudaStream_t s, const work_mark &m)
{
    if (!work_pending(m) || capturing(s)) return;
    queue_work(s, [m] {
        cudaError_t first = cudaSuccess;
        run_upto({m.device, m.stream}, m.seq, first);
        if (first != cudaSuccess) set_error(first);
    });
}

cudaError_t run_work_upto(const work_mark &m)
{
    const cudaError_t before = cudaGetLastError();
    cudaError_t first = cudaSuccess;
    run_upto({m.device, m.stream}, m.seq, first);
    return finish(before, first);
}

cudaError_t run_stream_work(cudaStream_t s)
{
    if (s) return run_work_upto(mark_work(s));
    /* The legacy stream: its work and that of the blocking streams of the current device. */
    const cudaError_t before = cudaGetLastError();
    cudaError_t first = cudaSuccess;
    const key legacy{current_device(), 0};
    const uint64_t now = g_seq++;
    run_upto(legacy, now, first);
    run_blocking_peers(legacy, now, first);
    return finish(before, first);
}

cudaError_t run_device_work(int device)
{
    const cudaError_t before = cudaGetLastError();
    cudaError_t first = cudaSuccess;
    const uint64_t now = g_seq++;
    std::vector<key> keys;
    {
        std::lock_guard<std::mutex> hold(Q().lock);
        for (auto &kv : Q().queues)
            if ((device < 0 || kv.first.first == device) && !kv.second.items.empty())
                keys.push_back(kv.first);
    }
    for (const key &k : keys) run_upto(k, now, first);
    return finish(before, first);
}

void forget_stream(cudaStream_t s)
{
    std::lock_guard<std::mutex> hold(Q().lock);
    auto q = Q().queues.find(key_of(s));
    if (q != Q().queues.end() && q->second.items.empty()) Q().queues.erase(q);
}

} /* namespace cnn_emu */
