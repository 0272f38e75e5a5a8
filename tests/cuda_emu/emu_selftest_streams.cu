/* emu_selftest_streams.cu — the emulator's self-test, part two (emu_selftest.cu runs it): stream
 * capture and graphs, events (lagging ones too), copies that land only when waited for
 * (CNN_EMU_LAGGING_COPIES), with CNN_EMU_DEVICES=2 the rules of several devices, and streams
 * whose work runs only when waited for (CNN_EMU_LAGGING_STREAMS). */
#include <cuda_runtime.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "emu_selftest.h"

static __global__ void iota_kernel(int *out, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = i;
}

/* Stream capture: work given to a capturing stream is recorded, not run, and runs at each graph
 * launch with the arguments it had at capture; what a capture forbids fails and invalidates it. */
static __global__ void add_kernel(int *x, int v) { x[threadIdx.x] += v; }

void check_capture(int *d)
{
    cudaStream_t s;
    cudaGraph_t g = nullptr;
    cudaGraphExec_t e = nullptr;
    int h[4] = {0}, one = 1, v = 5;
    EXPECT(cudaStreamCreateWithFlags(&s, 1) == cudaSuccess);
    EXPECT(cudaMemset(d, 0, 4 * sizeof(int)) == cudaSuccess);
    EXPECT(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal) == cudaSuccess);
    enum cudaStreamCaptureStatus st;
    EXPECT(cudaStreamIsCapturing(s, &st) == cudaSuccess && st == cudaStreamCaptureStatusActive);
    add_kernel<<<1, 4, 0, s>>>(d, v);
    v = 100; /* the launch keeps the 5 it was given */
    EXPECT(cudaMemcpyAsync(d + 1, &one, sizeof one, cudaMemcpyHostToDevice, s) == cudaSuccess);
    /* relaxed mode lets this thread allocate */
    enum cudaStreamCaptureMode m = cudaStreamCaptureModeRelaxed;
    void *p = nullptr;
    EXPECT(cudaThreadExchangeStreamCaptureMode(&m) == cudaSuccess);
    EXPECT(cudaMalloc(&p, 64) == cudaSuccess && cudaFree(p) == cudaSuccess);
    EXPECT(cudaThreadExchangeStreamCaptureMode(&m) == cudaSuccess);
    EXPECT(cudaStreamEndCapture(s, &g) == cudaSuccess && g);
    EXPECT(cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost) == cudaSuccess);
    EXPECT(h[0] == 0 && h[1] == 0); /* nothing ran yet */
    EXPECT(cudaGraphInstantiate(&e, g, 0) == cudaSuccess);
    for (int k = 0; k < 2; k++) EXPECT(cudaGraphLaunch(e, s) == cudaSuccess);
    EXPECT(cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost) == cudaSuccess);
    EXPECT(h[0] == 10 && h[1] == 1 && h[2] == 10 && h[3] == 10); /* the copy came last */
    EXPECT(cudaGraphExecDestroy(e) == cudaSuccess && cudaGraphDestroy(g) == cudaSuccess);
    /* Forbidden while capturing in thread-local mode: a wait for the stream, an allocation, a
     * synchronous copy; each invalidates the capture, which then ends in an error. */
    for (int k = 0; k < 3; k++) {
        EXPECT(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal) == cudaSuccess);
        cudaError_t r = k == 0   ? cudaStreamSynchronize(s)
                        : k == 1 ? cudaMalloc(&p, 64)
                                 : cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost);
        EXPECT(r == cudaErrorStreamCaptureUnsupported);
        EXPECT(cudaGetLastError() == cudaErrorStreamCaptureUnsupported);
        EXPECT(cudaStreamIsCapturing(s, &st) == cudaSuccess &&
               st == cudaStreamCaptureStatusInvalidated);
        EXPECT(cudaStreamEndCapture(s, &g) == cudaErrorStreamCaptureInvalidated && !g);
        (void)cudaGetLastError();
    }
    EXPECT(cudaStreamBeginCapture(nullptr, cudaStreamCaptureModeGlobal) ==
           cudaErrorStreamCaptureUnsupported); /* the legacy stream */
    (void)cudaGetLastError();
    setenv("CNN_EMU_INVALIDATE_CAPTURE", "1", 1); /* every capture fails at its end */
    EXPECT(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal) == cudaSuccess);
    add_kernel<<<1, 4, 0, s>>>(d, 1);
    EXPECT(cudaStreamEndCapture(s, &g) == cudaErrorStreamCaptureInvalidated && !g);
    (void)cudaGetLastError();
    unsetenv("CNN_EMU_INVALIDATE_CAPTURE");
    EXPECT(cudaStreamIsCapturing(s, &st) == cudaSuccess && st == cudaStreamCaptureStatusNone);
    EXPECT(cudaStreamDestroy(s) == cudaSuccess);
}

/* Events as CUDA times them: an elapsed time needs two timing events that have completed; with
 * CNN_EMU_LAGGING_EVENTS nothing completes until it (or its stream, or the device) is waited for,
 * and a start recorded earlier on the end's stream completes with the end. */
void check_events(void)
{
    cudaStream_t s, s2;
    cudaEvent_t a, b, untimed;
    float ms = -1;
    EXPECT(cudaStreamCreateWithFlags(&s, 1) == cudaSuccess);
    EXPECT(cudaStreamCreateWithFlags(&s2, 1) == cudaSuccess);
    EXPECT(cudaEventCreate(&a) == cudaSuccess && cudaEventCreate(&b) == cudaSuccess);
    EXPECT(cudaEventCreateWithFlags(&untimed, cudaEventDisableTiming) == cudaSuccess);
    setenv("CNN_EMU_LAGGING_EVENTS", "1", 1);
    EXPECT(cudaEventRecord(a, s) == cudaSuccess && cudaEventRecord(untimed, s) == cudaSuccess);
    EXPECT(cudaEventRecord(b, s) == cudaSuccess);
    EXPECT(cudaEventQuery(b) == cudaErrorNotReady);
    EXPECT(cudaEventElapsedTime(&ms, a, b) == cudaErrorNotReady && ms == -1);
    EXPECT(cudaGetLastError() == cudaSuccess); /* an answer, not an error */
    EXPECT(cudaEventSynchronize(b) == cudaSuccess);
    EXPECT(cudaEventElapsedTime(&ms, a, b) == cudaSuccess && ms >= 0);
    EXPECT(cudaEventSynchronize(untimed) == cudaSuccess);
    EXPECT(cudaEventElapsedTime(&ms, a, untimed) == cudaErrorInvalidResourceHandle);
    (void)cudaGetLastError();
    /* a start on another stream completes on its own */
    EXPECT(cudaEventRecord(a, s2) == cudaSuccess && cudaEventRecord(b, s) == cudaSuccess);
    EXPECT(cudaEventSynchronize(b) == cudaSuccess);
    EXPECT(cudaEventElapsedTime(&ms, a, b) == cudaErrorNotReady);
    EXPECT(cudaStreamSynchronize(s2) == cudaSuccess);
    EXPECT(cudaEventElapsedTime(&ms, a, b) == cudaSuccess);
    unsetenv("CNN_EMU_LAGGING_EVENTS");
    EXPECT(cudaEventDestroy(a) == cudaSuccess && cudaEventDestroy(b) == cudaSuccess);
    EXPECT(cudaEventDestroy(untimed) == cudaSuccess);
    EXPECT(cudaStreamDestroy(s) == cudaSuccess && cudaStreamDestroy(s2) == cudaSuccess);
}

/* CNN_EMU_LAGGING_COPIES: a copy into pinned memory lands when the host waits for it (its
 * stream, an event after it, a stream that waited for such an event, the device), with what
 * its source held when it was issued; pageable copies stay synchronous; a pinned source changed
 * before its copy was waited for is reported at the wait. */
void check_lagging_copies(int *d)
{
    cudaStream_t s, s2;
    cudaEvent_t ev, ev2;
    float *pin = nullptr, h[4] = {1, 2, 3, 4};
    EXPECT(cudaStreamCreateWithFlags(&s, 1) == cudaSuccess);
    EXPECT(cudaStreamCreateWithFlags(&s2, 1) == cudaSuccess);
    EXPECT(cudaEventCreate(&ev) == cudaSuccess && cudaEventCreate(&ev2) == cudaSuccess);
    EXPECT(cudaHostAlloc((void **)&pin, sizeof h, 0) == cudaSuccess);
    EXPECT(cudaMemcpy(d, h, sizeof h, cudaMemcpyHostToDevice) == cudaSuccess);
    setenv("CNN_EMU_LAGGING_COPIES", "1", 1);
    EXPECT(cudaMemcpyAsync(pin, d, sizeof h, cudaMemcpyDeviceToHost, s) == cudaSuccess);
    EXPECT(isnan(pin[0]) && isnan(pin[3]));
    EXPECT(cudaStreamSynchronize(s2) == cudaSuccess && isnan(pin[0])); /* another stream */
    EXPECT(cudaStreamSynchronize(0) == cudaSuccess && isnan(pin[0]));  /* s is non-blocking */
    EXPECT(cudaStreamSynchronize(s) == cudaSuccess && pin[0] == 1 && pin[3] == 4);
    /* an event after the copy lands it; one before does not */
    EXPECT(cudaMemcpyAsync(pin, d, sizeof h, cudaMemcpyDeviceToHost, s) == cudaSuccess);
    EXPECT(cudaEventRecord(ev, s) == cudaSuccess && isnan(pin[1]));
    EXPECT(cudaEventSynchronize(ev) == cudaSuccess && pin[1] == 2);
    EXPECT(cudaEventRecord(ev, s) == cudaSuccess);
    EXPECT(cudaMemcpyAsync(pin, d, sizeof h, cudaMemcpyDeviceToHost, s) == cudaSuccess);
    EXPECT(cudaEventSynchronize(ev) == cudaSuccess && cudaEventQuery(ev) == cudaSuccess);
    EXPECT(isnan(pin[1]));
    EXPECT(cudaDeviceSynchronize() == cudaSuccess && pin[1] == 2);
    /* through another stream that waited for an event after the copy; stream order: the
     * source as it was when the copy was issued */
    EXPECT(cudaMemcpyAsync(pin, d, sizeof h, cudaMemcpyDeviceToHost, s) == cudaSuccess);
    EXPECT(cudaMemsetAsync(d, 0, sizeof h, s) == cudaSuccess);
    EXPECT(cudaEventRecord(ev, s) == cudaSuccess && cudaStreamWaitEvent(s2, ev, 0) == cudaSuccess);
    EXPECT(cudaEventRecord(ev2, s2) == cudaSuccess && isnan(pin[2]));
    EXPECT(cudaEventQuery(ev2) == cudaSuccess && pin[2] == 3);
    /* from pinned memory: the source must be left alone until the copy is waited for */
    pin[0] = 5;
    EXPECT(cudaMemcpyAsync(d, pin, sizeof h, cudaMemcpyHostToDevice, s) == cudaSuccess);
    pin[0] = 6;
    EXPECT(cudaStreamSynchronize(s) == cudaErrorIllegalState);
    EXPECT(cudaGetLastError() == cudaErrorIllegalState);
    EXPECT(cudaMemcpyAsync(d, pin, sizeof h, cudaMemcpyHostToDevice, s) == cudaSuccess);
    EXPECT(cudaStreamSynchronize(s) == cudaSuccess);
    /* pageable memory: at once */
    float back[4] = {0, 0, 0, 0};
    EXPECT(cudaMemcpyAsync(back, d, sizeof back, cudaMemcpyDeviceToHost, s) == cudaSuccess);
    EXPECT(back[0] == 6 && back[3] == 4);
    EXPECT(cudaMemcpyAsync(pin, d, sizeof h, cudaMemcpyDeviceToHost, s) == cudaSuccess);
    EXPECT(cudaFreeHost(pin) == cudaSuccess); /* waits for the device: lands before the free */
    unsetenv("CNN_EMU_LAGGING_COPIES");
    EXPECT(cudaHostAlloc((void **)&pin, sizeof h, 0) == cudaSuccess);
    EXPECT(cudaMemcpyAsync(pin, d, sizeof h, cudaMemcpyDeviceToHost, s) == cudaSuccess);
    EXPECT(pin[0] == 6); /* without the mode: at once */
    EXPECT(cudaFreeHost(pin) == cudaSuccess);
    EXPECT(cudaEventDestroy(ev) == cudaSuccess && cudaEventDestroy(ev2) == cudaSuccess);
    EXPECT(cudaStreamDestroy(s) == cudaSuccess && cudaStreamDestroy(s2) == cudaSuccess);
}

/* With CNN_EMU_DEVICES=2 (else nothing to check): memory belongs to the device current at its
 * cudaMalloc; a kernel runs on its stream's device, which must be the current one, and reads
 * no other device's memory; an event is recorded only on a stream of its own device, waited
 * for from any; cudaMemcpyPeerAsync checks both sides; a device's wait invalidates the
 * captures of that device only; each device counts its own memory. */
void check_devices(int *d)
{
    int n = 0, h[64] = {0};
    if (cudaGetDeviceCount(&n) != cudaSuccess || n < 2) return;
    int *d1 = nullptr;
    cudaStream_t s0, s1;
    cudaEvent_t e0, e1;
    cudaGraph_t g = nullptr;
    size_t free_b = 0, total_b = 0;
    EXPECT(cudaStreamCreateWithFlags(&s0, 1) == cudaSuccess && cudaEventCreate(&e0) == cudaSuccess);
    EXPECT(cudaSetDevice(1) == cudaSuccess);
    EXPECT(cudaMalloc((void **)&d1, 64 * sizeof(int)) == cudaSuccess);
    EXPECT(cudaMemGetInfo(&free_b, &total_b) == cudaSuccess && total_b - free_b == 256);
    EXPECT(cudaStreamCreateWithFlags(&s1, 1) == cudaSuccess && cudaEventCreate(&e1) == cudaSuccess);
    iota_kernel<<<1, 64, 0, s1>>>(d1, 64);
    EXPECT(last() == cudaSuccess);
    iota_kernel<<<1, 64, 0, s1>>>(d, 64); /* device 0's memory, on device 1 */
    EXPECT(last() == cudaErrorIllegalAddress);
    iota_kernel<<<1, 64, 0, s0>>>(d, 64); /* device 0's stream while device 1 is current */
    EXPECT(last() == cudaErrorInvalidResourceHandle);
    EXPECT(cudaEventRecord(e1, s1) == cudaSuccess);
    EXPECT(cudaEventRecord(e0, s1) == cudaErrorInvalidResourceHandle && last());
    EXPECT(cudaStreamWaitEvent(s0, e1, 0) == cudaSuccess);
    EXPECT(cudaEventSynchronize(e1) == cudaSuccess);
    EXPECT(cudaMemcpyPeerAsync(d, 1, d1, 1, sizeof h, s1) == cudaErrorInvalidValue && last());
    EXPECT(cudaMemcpyPeerAsync(d, 0, d1, 1, sizeof h, s1) == cudaSuccess);
    EXPECT(cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost) == cudaSuccess && h[63] == 63);
    EXPECT(cudaStreamBeginCapture(s1, cudaStreamCaptureModeRelaxed) == cudaSuccess);
    EXPECT(cudaSetDevice(0) == cudaSuccess && cudaDeviceSynchronize() == cudaSuccess);
    EXPECT(cudaSetDevice(1) == cudaSuccess);
    EXPECT(cudaDeviceSynchronize() == cudaErrorStreamCaptureUnsupported && last());
    EXPECT(cudaStreamEndCapture(s1, &g) == cudaErrorStreamCaptureInvalidated && last());
    EXPECT(cudaFree(d1) == cudaSuccess && cudaMemGetInfo(&free_b, &total_b) == cudaSuccess &&
           free_b == total_b);
    EXPECT(cudaEventDestroy(e1) == cudaSuccess && cudaStreamDestroy(s1) == cudaSuccess);
    EXPECT(cudaSetDevice(0) == cudaSuccess);
    EXPECT(cudaEventDestroy(e0) == cudaSuccess && cudaStreamDestroy(s0) == cudaSuccess);
}

/* CNN_EMU_LAGGING_STREAMS: each stream's work runs only when the host waits for it (the stream,
 * an event after the work, the device, a cudaFree) or when queued work of another stream waits
 * for one of its events; synchronous copies wait for the legacy stream only. A launch's
 * configuration answers at once, a fault in queued work at the wait; a graph launch is queued
 * too; pageable memory is staged (a source read at once, a destination waits for the stream). */
static __global__ void scale_kernel(int *x, int v) { x[threadIdx.x] *= v; }
static __global__ void diverge_kernel(void)
{
    if (threadIdx.x == 0) __syncthreads();
}

void check_lagging_streams(int *d)
{
    cudaStream_t a, b;
    cudaEvent_t ev, t0;
    cudaGraph_t g = nullptr;
    cudaGraphExec_t ge = nullptr;
    int *pin = nullptr, *tmp = nullptr, h[4] = {0}, n = 0;
    float ms = 0;
    EXPECT(cudaStreamCreateWithFlags(&a, 1) == cudaSuccess);
    EXPECT(cudaStreamCreateWithFlags(&b, 1) == cudaSuccess);
    EXPECT(cudaEventCreate(&ev) == cudaSuccess && cudaEventCreate(&t0) == cudaSuccess);
    EXPECT(cudaHostAlloc((void **)&pin, sizeof h, 0) == cudaSuccess);
    EXPECT(cudaMemset(d, 0, sizeof h) == cudaSuccess);
    setenv("CNN_EMU_LAGGING_STREAMS", "1", 1);
    iota_kernel<<<1, 4, 0, a>>>(d, 4);
    EXPECT(last() == cudaSuccess);
    EXPECT(cudaMemcpyAsync(pin, d, sizeof h, cudaMemcpyDeviceToHost, a) == cudaSuccess);
    EXPECT(pin[0] == -1 && pin[3] == -1);
    EXPECT(cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost) == cudaSuccess && h[3] == 0);
    EXPECT(cudaStreamSynchronize(b) == cudaSuccess && pin[3] == -1);
    EXPECT(cudaStreamSynchronize(a) == cudaSuccess && pin[0] == 0 && pin[3] == 3);
    /* b's work reads a's results without an event: it runs first */
    add_kernel<<<1, 4, 0, a>>>(d, 10);
    scale_kernel<<<1, 4, 0, b>>>(d, 2);
    EXPECT(cudaStreamSynchronize(b) == cudaSuccess && cudaStreamSynchronize(a) == cudaSuccess);
    EXPECT(cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost) == cudaSuccess && h[3] == 16);
    add_kernel<<<1, 4, 0, a>>>(d, 10);
    EXPECT(cudaEventRecord(ev, a) == cudaSuccess && cudaStreamWaitEvent(b, ev, 0) == cudaSuccess);
    scale_kernel<<<1, 4, 0, b>>>(d, 2);
    EXPECT(cudaStreamSynchronize(b) == cudaSuccess);
    EXPECT(cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost) == cudaSuccess && h[3] == 52);
    /* events */
    EXPECT(cudaEventRecord(t0, a) == cudaSuccess);
    add_kernel<<<1, 4, 0, a>>>(d, 1);
    EXPECT(cudaEventRecord(ev, a) == cudaSuccess);
    EXPECT(cudaEventElapsedTime(&ms, t0, ev) == cudaErrorNotReady);
    EXPECT(cudaEventQuery(ev) == cudaSuccess && cudaEventElapsedTime(&ms, t0, ev) == cudaSuccess);
    EXPECT(cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost) == cudaSuccess && h[3] == 53);
    /* an event's time is when its queue reached it: the host's 20 ms between the records are
     * no work of the stream */
    EXPECT(cudaEventRecord(t0, a) == cudaSuccess);
    usleep(20000);
    EXPECT(cudaEventRecord(ev, a) == cudaSuccess && cudaEventSynchronize(ev) == cudaSuccess);
    EXPECT(cudaEventElapsedTime(&ms, t0, ev) == cudaSuccess && ms >= 0 && ms < 10);
    /* errors */
    iota_kernel<<<1, 2048, 0, a>>>(d, 4);
    EXPECT(last() == cudaErrorInvalidConfiguration);
    diverge_kernel<<<1, 2, 0, a>>>();
    EXPECT(last() == cudaSuccess);
    EXPECT(cudaStreamSynchronize(a) == cudaErrorLaunchFailure && last() == cudaErrorLaunchFailure);
    /* a device's wait leaves another device's work queued */
    add_kernel<<<1, 4, 0, a>>>(d, 1);
    if (cudaGetDeviceCount(&n) == cudaSuccess && n >= 2) {
        EXPECT(cudaSetDevice(1) == cudaSuccess && cudaDeviceSynchronize() == cudaSuccess);
        EXPECT(cudaSetDevice(0) == cudaSuccess);
        EXPECT(cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost) == cudaSuccess && h[3] == 53);
    }
    EXPECT(cudaDeviceSynchronize() == cudaSuccess);
    EXPECT(cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost) == cudaSuccess && h[3] == 54);
    /* a graph launch */
    EXPECT(cudaStreamBeginCapture(b, cudaStreamCaptureModeThreadLocal) == cudaSuccess);
    add_kernel<<<1, 4, 0, b>>>(d, 1);
    EXPECT(cudaStreamEndCapture(b, &g) == cudaSuccess && cudaGraphInstantiate(&ge, g, 0) == 0);
    EXPECT(cudaGraphLaunch(ge, b) == cudaSuccess);
    EXPECT(cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost) == cudaSuccess && h[3] == 54);
    EXPECT(cudaStreamSynchronize(b) == cudaSuccess);
    EXPECT(cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost) == cudaSuccess && h[3] == 55);
    EXPECT(cudaGraphExecDestroy(ge) == cudaSuccess && cudaGraphDestroy(g) == cudaSuccess);
    /* cudaFree waits for the device */
    add_kernel<<<1, 4, 0, a>>>(d, 1);
    EXPECT(cudaMalloc((void **)&tmp, 16) == cudaSuccess && cudaFree(tmp) == cudaSuccess);
    EXPECT(cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost) == cudaSuccess && h[3] == 56);
    /* pageable memory: a destination waits for the stream, a source is read at once */
    add_kernel<<<1, 4, 0, a>>>(d, 1);
    EXPECT(cudaMemcpyAsync(h, d, sizeof h, cudaMemcpyDeviceToHost, a) == cudaSuccess);
    EXPECT(h[3] == 57);
    int src[4] = {100, 101, 102, 103};
    EXPECT(cudaMemcpyAsync(d, src, sizeof src, cudaMemcpyHostToDevice, a) == cudaSuccess);
    src[0] = 7;
    EXPECT(cudaStreamSynchronize(a) == cudaSuccess);
    EXPECT(cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost) == cudaSuccess && h[0] == 100);
    unsetenv("CNN_EMU_LAGGING_STREAMS");
    EXPECT(cudaFreeHost(pin) == cudaSuccess);
    EXPECT(cudaEventDestroy(ev) == cudaSuccess && cudaEventDestroy(t0) == cudaSuccess);
    EXPECT(cudaStreamDestroy(a) == cudaSuccess && cudaStreamDestroy(b) == cudaSuccess);
}
