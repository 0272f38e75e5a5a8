/* emu_internal.h — what the parts of the CUDA emulator share: the runtime's error state, its
 * table of device / pinned allocations (emu_runtime.cpp), used by the launcher (emu_launch.cpp)
 * and the emulated cuDNN to check arguments, TF32 rounding, stream capture (emu_graph.cpp),
 * lagging copies (emu_copies.cpp) and lagging streams (emu_streams.cpp). Not seen by the
 * library or the kernels. */
#ifndef CNN_EMU_INTERNAL_H
#define CNN_EMU_INTERNAL_H

#include <cuda_runtime.h>

#include <stdint.h>

#include <functional>
#include <map>

namespace cnn_emu {

enum mem_kind { MEM_UNKNOWN = 0, MEM_DEVICE = 1, MEM_PINNED = 2 };

/* What [p, p + bytes) lies in: one device allocation, one pinned host allocation, or neither.
 * bytes 0 accepts a pointer one past the end of an allocation. */
mem_kind memory_kind(const void *p, size_t bytes);

/* CNN_EMU_DEVICES (1 to 8, default 1) devices, or 0 where CUDA_VISIBLE_DEVICES="" hides them
 * (emu_device.cpp); the calling thread's current one (cudaSetDevice). */
constexpr int EMU_MAX_DEVICES = 8;
int device_count();
int current_device();
/* Each device's memory: cudaMalloc fails beyond it. */
constexpr size_t EMU_TOTAL_BYTES = (size_t)16 << 30;
/* The device whose allocation holds p (the one current at its cudaMalloc); -1 for memory that
 * is no device allocation. The device a call on stream s runs on: s's (the one current at its
 * creation), or for the legacy stream (NULL) the current one. (emu_runtime.cpp) */
int device_of(const void *p);
int stream_device(cudaStream_t s);
/* A stream's id (0: the legacy stream, NULL); whether it syncs with the legacy stream (it, and
 * those made without cudaStreamNonBlocking). */
uint64_t stream_id(cudaStream_t s);
bool stream_blocking(cudaStream_t s);
/* p, device memory, is another device's than `device`, whose kernels and libraries cannot
 * read it (no peer access is ever enabled): says so (fn: the call) and sets
 * cudaErrorIllegalAddress. False for memory of `device` and for what is no device memory. */
bool foreign_device_memory(const char *fn, const void *p, int device);

/* Sets the error cudaGetLastError returns next; returns e. */
cudaError_t set_error(cudaError_t e);

/* Sets the error and prints "cuda-emu: <message>" on stderr: for kernel and launch problems,
 * which a real GPU would report with no more detail than the error code. */
void report(cudaError_t e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* True when the environment variable `name` is set, non-empty and not "0". */
bool env_flag(const char *name);
/* CNN_EMU_NO_COMPUTE=1: launches, GEMMs and cuDNN calls are checked as usual but compute
 * nothing, so a program's time is its host-side cost alone (results are garbage): for
 * measuring the runtime's per-step overhead, never for tests. */
bool no_compute();
/* Set around a captured call's check (emu_cudnn_internal.h): no_compute() is then true. */
extern thread_local bool checking_only;

/* CNN_EMU_FAIL_MALLOC (read at each call): whether this allocation fails. Counted: device and
 * pinned allocations (cudaMalloc, cudaHostAlloc, cudaMallocHost) and the device memory that
 * cublasCreate and cudnnCreate take. "all": every one fails, as on a full GPU; "once": the next
 * one, and the variable becomes "spent"; "N" or "N,K": the Nth counted from the start of the
 * process, and the K - 1 after it. CNN_EMU_FAIL_MALLOC_COUNT=1 prints the number made at exit
 * (to size a sweep). */
bool injected_alloc_failure();

/* Counts one call of name (a CUDA, cuBLAS or cuDNN function), listed on stderr at exit when
 * CNN_EMU_PROFILE is set: the calls that cost a real GPU host time, and whether a run reached
 * the cuDNN paths at all. */
void count_call(const char *name);

/* v rounded to TF32 (10 mantissa bits, nearest even), as tensor cores read FP32 operands
 * (the emulated cuBLAS and cuDNN in TF32 math mode). */
float to_tf32(float v);
/* v rounded to BF16 (7 mantissa bits, nearest even): an emulated engine that converts its
 * inputs down. */
float to_bf16(float v);

/* Stream capture (emu_graph.cpp). capturing: stream s is being captured. defer: while it is,
 * work for s is recorded for cudaGraphLaunch instead of run: 1; 0 when s is not captured (run
 * it now); -1 when the capture was invalidated (the call fails with the error set). */
bool capturing(cudaStream_t s);
/* True on a thread while it runs a graph's recorded work: host-side call counts skip it. */
extern thread_local bool replaying;
int defer(cudaStream_t s, std::function<void()> work);
/* A wait for stream s (a NULL s: none): refused while s is captured, which invalidates the
 * capture. cudaSuccess or the error, also set as the last error. */
cudaError_t capture_forbids_wait(cudaStream_t s);
/* An allocation or device-wide wait ("potentially unsafe" in CUDA's terms): refused, as the
 * thread's and the captures' modes say, invalidating the captures that refuse it. */
cudaError_t capture_forbids_unsafe();
/* A wait for the whole device (cudaDeviceSynchronize: the current one; cudaFreeHost: every
 * one, every_device): refused while any stream of it is captured, from whichever thread and in
 * whichever mode (CUDA: "synchronize a broader handle which encompasses an active stream
 * capture, such as a device"), invalidating those captures. */
cudaError_t capture_forbids_device_wait(bool every_device);
/* Stream s waiting on an event: refused, invalidating the capture, when s is captured and the
 * event was not recorded inside a capture (a dependency on uncaptured work). */
cudaError_t capture_forbids_isolation(cudaStream_t s, bool event_captured);

/* CNN_EMU_LAGGING_COPIES=1 (emu_copies.cpp, read at each copy): asynchronous copies between
 * pinned host memory and the device land when the host waits for them. Streams are named by
 * ids (0: the legacy stream); blocking: a stream that syncs with the legacy one.
 * lag_copy: takes a (checked, uncaptured) cudaMemcpyAsync when the mode is on and one side is
 * pinned; false: copy it now. A copy into pinned memory leaves 0xFF there until it lands; one
 * from pinned memory copies now and checks at landing that its source was left alone. */
bool lagging_copies();
bool lag_copy(void *dst, const void *src, size_t bytes, uint64_t stream, bool blocking);
/* A position in a stream's work (an event's record), with the positions of other streams it
 * waited for (cudaStreamWaitEvent). */
struct copy_mark {
    uint64_t stream = 0, seq = 0;
    std::map<uint64_t, uint64_t> after;
};
copy_mark mark_stream(uint64_t stream);
void stream_waits(uint64_t stream, const copy_mark &m);
/* Landing: the copies before m (cudaEventSynchronize, a finished cudaEventQuery,
 * cudaStreamSynchronize of a stream: its mark now), those on the legacy and blocking streams
 * (cudaStreamSynchronize(0)), all (cudaDeviceSynchronize, cudaFreeHost). cudaErrorIllegalState
 * (reported) when a pinned source changed before its copy landed. */
cudaError_t land_upto(const copy_mark &m);
cudaError_t land_legacy();
cudaError_t land_all();

/* CNN_EMU_LAGGING_STREAMS=1 (emu_streams.cpp, read at each call): each stream's work is
 * checked when issued and queued, and runs only when the host waits for it.
 * deferring: work for s is to be recorded, not run: s is captured, or streams lag (but not for
 * work that runs from a queue or a graph, replaying, nor for a recorded call's checks,
 * checking_only). queue_work: appends work to s's queue.
 * defer_launch: a kernel launch on s recorded for its capture (as defer), or checked now and
 * queued (1), or to be run now (0). */
bool lagging_streams();
bool deferring(cudaStream_t s);
void queue_work(cudaStream_t s, std::function<void()> work);
int defer_launch(cudaStream_t s, std::function<void()> run);
/* A position in a stream's queue (an event's record). work_pending: work issued before it has
 * not run. queue_wait: s's later work runs after it (cudaStreamWaitEvent). */
struct work_mark {
    int device = 0;
    uint64_t stream = 0, seq = 0;
};
work_mark mark_work(cudaStream_t s);
bool work_pending(const work_mark &m);
void queue_wait(cudaStream_t s, const work_mark &m);
/* Running queued work, with the first error it set (also left as the last error): up to a
 * mark (cudaEventSynchronize, cudaEventQuery); all of s (cudaStreamSynchronize; for NULL, the
 * legacy stream and the blocking streams of the current device, as a synchronous copy waits);
 * all of a device (cudaDeviceSynchronize), or of every device for -1 (cudaFree, cudaFreeHost). */
cudaError_t run_work_upto(const work_mark &m);
cudaError_t run_stream_work(cudaStream_t s);
cudaError_t run_device_work(int device);
/* Drops s's queue once its work has run (cudaStreamDestroy). */
void forget_stream(cudaStream_t s);

} /* namespace cnn_emu */

#endif /* CNN_EMU_INTERNAL_H */
