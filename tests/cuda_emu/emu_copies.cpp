/* emu_copies.cpp — CNN_EMU_LAGGING_COPIES: asynchronous copies between pinned host memory and
 * the device that land when the host learns they finished, not when they are issued. A copy
 * into pinned memory leaves its destination filled with 0xFF (NaN as float, -1 as int64) until
 * the host waits for it: its stream, an event recorded after it (or on a stream that waited for
 * such an event), or the device; then it writes what the source held when it was issued (stream
 * order). A copy from pinned memory reads its source at once, but if the host changes that
 * source before waiting for the copy, the wait reports the race. Copies to or from pageable
 * memory stay synchronous, as CUDA's are. Test infrastructure, as the rest of cuda_emu. */
#include "emu_internal.h"

#include <string.h>

#include <atomic>
#include <map>
#include <mutex>
#include <vector>

namespace {

struct pending_copy {
    void *host;                /* pinned: the destination (to host) or the source (to device) */
    bool to_host;
    std::vector<unsigned char> data; /* what lands, or what the source must still hold */
    uint64_t stream, seq;
    bool blocking; /* on a stream that syncs with the legacy stream (or on the legacy stream) */
};

struct copy_state {
    std::mutex lock;
    std::vector<pending_copy> pending;
    std::map<uint64_t, std::map<uint64_t, uint64_t>> after; /* stream -> what it waited for */
};

copy_state &S()
{
    static copy_state *s = new copy_state; /* never destroyed: waits may run at exit */
    return *s;
}

std::atomic<uint64_t> g_seq{1};

/* Lands the pending copies `done` says have finished (S().lock held). A copy from pinned memory
 * whose source changed meanwhile is reported, and so is the wait: cudaErrorIllegalState. */
template <typename F> cudaError_t land(F done)
{
    cudaError_t e = cudaSuccess;
    auto &v = S().pending;
    for (size_t i = 0; i < v.size();) {
        pending_copy &p = v[i];
        if (!done(p)) {
            i++;
            continue;
        }
        if (p.to_host) {
            memcpy(p.host, p.data.data(), p.data.size());
        } else if (memcmp(p.host, p.data.data(), p.data.size()) != 0) {
            cnn_emu::report(cudaErrorIllegalState, "the pinned source of a host-to-device copy "
                            "(%p, %zu bytes) changed before the copy was waited for",
                            p.host, p.data.size());
            e = cudaErrorIllegalState;
        }
        v.erase(v.begin() + (long)i);
    }
    return e;
}

} /* namespace */

namespace cnn_emu {

bool lagging_copies() { return env_flag("CNN_EMU_LAGGING_COPIES"); }

bool lag_copy(void *dst, const void *src, size_t bytes, uint64_t stream, bool blocking)
{
    if (!bytes || !lagging_copies()) return false;
    const mem_kind d = memory_kind(dst, bytes), s = memory_kind(src, bytes);
    const bool to_host = d == MEM_PINNED && s == MEM_DEVICE;
    if (!to_host && !(d == MEM_DEVICE && s == MEM_PINNED)) return false;
    std::lock_guard<std::mutex> hold(S().lock);
    /* Stream order: a copy from host memory that an earlier copy on its stream writes reads
     * what that one brought (which then has landed); an earlier copy on another stream races. */
    if (!to_host)
        (void)land([&](const pending_copy &q) {
            return q.to_host && q.stream == stream && (char *)q.host < (const char *)src + bytes &&
                   (const char *)src < (char *)q.host + q.data.size();
        });
    pending_copy p{to_host ? dst : (void *)src, to_host, {}, stream, g_seq++, blocking};
    p.data.assign((const unsigned char *)src, (const unsigned char *)src + bytes);
    if (to_host)
        memset(dst, 0xFF, bytes); /* lands in order after any earlier copy into the same range */
    else
        memmove(dst, src, bytes);
    S().pending.push_back(std::move(p));
    return true;
}

copy_mark mark_stream(uint64_t stream)
{
    std::lock_guard<std::mutex> hold(S().lock);
    copy_mark m{stream, g_seq++, {}};
    auto it = S().after.find(stream);
    if (it != S().after.end()) m.after = it->second;
    return m;
}

void stream_waits(uint64_t stream, const copy_mark &m)
{
    std::lock_guard<std::mutex> hold(S().lock);
    auto &a = S().after[stream];
    uint64_t &own = a[m.stream];
    if (own < m.seq) own = m.seq;
    for (auto &kv : m.after) {
        uint64_t &x = a[kv.first];
        if (x < kv.second) x = kv.second;
    }
}

cudaError_t land_upto(const copy_mark &m)
{
    std::lock_guard<std::mutex> hold(S().lock);
    return land([&](const pending_copy &p) {
        auto it = m.after.find(p.stream);
        return (p.stream == m.stream && p.seq < m.seq) ||
               (it != m.after.end() && p.seq < it->second);
    });
}

cudaError_t land_legacy()
{
    std::lock_guard<std::mutex> hold(S().lock);
    return land([](const pending_copy &p) { return p.blocking; });
}

cudaError_t land_all()
{
    std::lock_guard<std::mutex> hold(S().lock);
    return land([](const pending_copy &) { return true; });
}

} /* namespace cnn_emu */
