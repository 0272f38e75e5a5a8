/* memcpy.c — copies between host and device memory, and between devices, ordered on the
 * context's stream (cnn_cuda_memcpy, cnn_cuda_memcpy_to_pinned). A copy into host memory has
 * landed when the call returns, unless it goes to pinned memory asynchronously. It allocates
 * nothing and never prints. */
#include "cuda_check.h"

/* cnn_cuda_memcpy; wait: a copy into host memory has landed on return. */
static cnn_status memcpy_ordered(cnn_context *ctx, void *dst, cnn_device dst_dev, const void *src,
                                 cnn_device src_dev, size_t bytes, bool wait)
{
    bool dst_host = dst_dev.type == CNN_DEVICE_CPU, src_host = src_dev.type == CNN_DEVICE_CPU;
    if (bytes == 0) return CNN_OK;
    if (dst_host && src_host) {
        memcpy(dst, src, bytes);
        return CNN_OK;
    }
    if (!ctx || !ctx->gpu) {
        /* A CUDA tensor read or written under a CPU context: there is no stream to order on,
         * so wait for the whole device and copy synchronously (refused where that wait would
         * break a graph capture: cnn_cuda_device_wait_begin). */
        const int dev = src_host ? dst_dev.index : src_dev.index;
        CNN_TRY(cnn_cuda_device_wait_begin(dev, "memcpy", "a CUDA tensor cannot be copied under a "
                                           "CPU context (use a CUDA context of that device)"));
        cudaError_t e = cudaSetDevice(dev);
        if (e == cudaSuccess) e = cudaDeviceSynchronize();
        if (e == cudaSuccess) e = cudaMemcpy(dst, src, bytes, cudaMemcpyDefault);
        cnn_cuda_device_wait_end(dev);
        if (e != cudaSuccess) {
            (void)cudaGetLastError();
            return cnn_error(cnn_cuda_status_of(e), "memcpy: copying %zu bytes under a CPU "
                             "context (cuda:%d) failed: %s", bytes, dev, cudaGetErrorString(e));
        }
        return CNN_OK;
    }
    cudaStream_t s;
    CNN_TRY(cnn_cuda_enter(ctx, "memcpy", &s));
    /* A captured copy from the host would read the host buffer at each replay, long after the
     * caller let go of it; one to the host would be waited for, which a capture cannot do. */
    CNN_CHECK(!(dst_host || src_host) || !cnn_cuda_capturing(ctx), CNN_ERR_UNSUPPORTED,
              "memcpy: a copy %s the host inside a graph capture (a replay would repeat it "
              "with the capture's host buffer); copy inputs into the graph's tensors before "
              "cnn_graph_replay and read results after it", src_host ? "from" : "to");
    if (!dst_host && !src_host && dst_dev.index != src_dev.index) {
        CNN_CUDA_TRY(cudaMemcpyPeerAsync(dst, dst_dev.index, src, src_dev.index, bytes, s));
    } else {
        enum cudaMemcpyKind kind = src_host   ? cudaMemcpyHostToDevice
                                   : dst_host ? cudaMemcpyDeviceToHost
                                              : cudaMemcpyDeviceToDevice;
        CNN_CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, kind, s));
    }
    /* The caller reads host memory next: it must have landed. Having waited, report a bad
     * label a kernel found meanwhile. */
    if (dst_host && wait) {
        CNN_CUDA_TRY(cudaStreamSynchronize(s));
        CNN_TRY(cnn_cuda_check_bad_label(ctx));
    }
    return CNN_OK;
}

cnn_status cnn_cuda_memcpy(cnn_context *ctx, void *dst, cnn_device dst_dev, const void *src,
                           cnn_device src_dev, size_t bytes)
{
    return memcpy_ordered(ctx, dst, dst_dev, src, src_dev, bytes, true);
}

cnn_status cnn_cuda_memcpy_to_pinned(cnn_context *ctx, void *dst, const void *src,
                                     cnn_device src_dev, size_t bytes)
{
    return memcpy_ordered(ctx, dst, CNN_CPU, src, src_dev, bytes, false);
}
