/* emu_selftest.cu — checks the CUDA emulator itself (make check-cuda-emu runs it): that it
 * refuses what an H100 refuses (block and grid limits, shared memory, host pointers, copies of
 * the wrong kind, absurd allocations, elapsed times of unfinished or untimed events), that
 * barriers and warp shuffles compute what they do on a GPU, and that misuse (deadlock,
 * divergent barrier, bad masks) is reported, not hung on; streams, events, capture and several
 * devices are emu_selftest_streams.cu's. Built only with CUDA_EMU=1; it ends with "N passed, N
 * failed" like the main suite. */
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emu_selftest.h"

int passed, failed;

/* ---- kernels ------------------------------------------------------------------------------ */
__global__ void fill_kernel(int *out, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = i;
}

/* Tree reduction over a 1024-thread block through shared memory and __syncthreads. */
__global__ void block_sum_kernel(const int *x, int *out)
{
    __shared__ int sh[1024];
    sh[threadIdx.x] = x[blockIdx.x * 1024 + threadIdx.x];
    __syncthreads();
    for (int s = 512; s > 0; s >>= 1) {
        if ((int)threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
        __syncthreads();
    }
    if (threadIdx.x == 0) out[blockIdx.x] = sh[0];
}

/* Warp sums by __shfl_down_sync and __shfl_xor_sync, a broadcast and a ballot. */
__global__ void warp_kernel(const int *x, int *down, int *xr, int *bcast, unsigned *ballot)
{
    int t = threadIdx.x, v = x[t], w = v;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    for (int o = 16; o > 0; o >>= 1) w += __shfl_xor_sync(0xffffffffu, w, o);
    int b = __shfl_sync(0xffffffffu, x[t], 5);
    unsigned bal = __ballot_sync(0xffffffffu, x[t] % 3 == 0);
    if (t % 32 == 0) down[t / 32] = v;
    xr[t] = w;
    bcast[t] = b;
    ballot[t] = bal;
}

/* Each half-warp shuffles with its own mask. */
__global__ void half_warp_kernel(int *out)
{
    unsigned lane = threadIdx.x % 32, mask = lane < 16 ? 0x0000ffffu : 0xffff0000u;
    out[threadIdx.x] = __shfl_sync(mask, (int)threadIdx.x, 0, 16);
}

/* Every thread 0 stores its block's linear index in out[0]: the last block to run wins. */
__global__ void last_block_kernel(int *out)
{
    if (threadIdx.x == 0)
        out[0] = (int)(blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z));
}

/* Reads shared memory nobody wrote: the emulator poisons it, so it is -1 (0xFFFFFFFF). */
__global__ void unwritten_shared_kernel(int *out)
{
    __shared__ int sh[64];
    __syncthreads();
    out[threadIdx.x] = sh[threadIdx.x];
    __syncthreads();
    sh[threadIdx.x] = 7; /* overwritten with poison before the next block */
}

__global__ void big_static_shared_kernel(float *out)
{
    __shared__ float sh[13000]; /* 52000 bytes: more than 48 KiB of static shared memory */
    sh[threadIdx.x] = 1.0f;
    __syncthreads();
    out[threadIdx.x] = sh[threadIdx.x];
}

__global__ void dynamic_shared_kernel(int *out)
{
    extern __shared__ int dyn[];
    dyn[threadIdx.x] = (int)threadIdx.x * 2;
    __syncthreads();
    out[threadIdx.x] = dyn[blockDim.x - 1 - threadIdx.x];
}

__global__ void __launch_bounds__(64) bounded_kernel(int *out)
{
    out[threadIdx.x] = 1;
}

/* Thread 0 leaves before a barrier the others wait at: undefined on a GPU. */
__global__ void divergent_barrier_kernel(int *out)
{
    if (threadIdx.x == 0) return;
    __syncthreads();
    out[threadIdx.x] = 1;
}

/* Half the warp waits at __syncthreads, the other half at __syncwarp for them: a deadlock. */
__global__ void deadlock_kernel(int *out)
{
    if (threadIdx.x < 16) __syncthreads();
    else __syncwarp();
    out[threadIdx.x] = 1;
}

/* A full-warp shuffle in a block of 16 threads names lanes that do not exist. */
__global__ void missing_lanes_kernel(int *out)
{
    out[threadIdx.x] = __shfl_down_sync(0xffffffffu, (int)threadIdx.x, 1);
}

/* One 16x16x8 TF32 WMMA product, c = a (16x8, column-major) * b (8x16, row-major), through
 * shared memory, in a block of `blockDim.x` threads. mode 0: operands rounded first; 1: not
 * rounded; 2: a misaligned matrix_a pointer; 3: half the warp calls. c: 16x16 column-major. */
__global__ void wmma_kernel(const float *a, const float *b, float *c, int mode)
{
    namespace wmma = nvcuda::wmma;
    __shared__ __align__(32) float as[16 * 8 + 8];
    __shared__ __align__(32) float bs[8 * 16];
    for (int i = threadIdx.x; i < 128; i += blockDim.x) {
        as[i] = mode == 1 ? a[i] : wmma::__float_to_tf32(a[i]);
        bs[i] = wmma::__float_to_tf32(b[i]);
    }
    __syncthreads();
    if (mode == 3 && threadIdx.x >= 16) return;
    wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::col_major> fa;
    wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fb;
    wmma::fragment<wmma::accumulator, 16, 16, 8, float> fc;
    wmma::fill_fragment(fc, 0.5f);
    wmma::load_matrix_sync(fa, mode == 2 ? as + 4 : as, 16);
    wmma::load_matrix_sync(fb, bs, 16);
    wmma::mma_sync(fc, fa, fb, fc);
    wmma::store_matrix_sync(c, fc, 16, wmma::mem_col_major);
}

/* ---- checks ------------------------------------------------------------------------------- */
static void check_limits(int *d)
{
    fill_kernel<<<1, 1024>>>(d, 1024);
    EXPECT(last() == cudaSuccess);
    fill_kernel<<<1, 1025>>>(d, 1024);
    EXPECT(last() == cudaErrorInvalidConfiguration);
    fill_kernel<<<1, dim3(32, 32, 2)>>>(d, 1024);
    EXPECT(last() == cudaErrorInvalidConfiguration);
    fill_kernel<<<1, dim3(1, 1, 65)>>>(d, 1024);
    EXPECT(last() == cudaErrorInvalidConfiguration);
    fill_kernel<<<dim3(1, 65536), 32>>>(d, 1024);
    EXPECT(last() == cudaErrorInvalidConfiguration);
    fill_kernel<<<dim3(1, 1, 65536), 32>>>(d, 1024);
    EXPECT(last() == cudaErrorInvalidConfiguration);
    fill_kernel<<<0, 32>>>(d, 1024);
    EXPECT(last() == cudaErrorInvalidConfiguration);
    fill_kernel<<<1, 0>>>(d, 1024);
    EXPECT(last() == cudaErrorInvalidConfiguration);
    /* a negative block count converts to a huge unsigned one, as it does with nvcc */
    fill_kernel<<<-1, 32>>>(d, 1024);
    EXPECT(last() == cudaErrorInvalidConfiguration);
    dynamic_shared_kernel<<<1, 32, 64 << 10>>>(d);
    EXPECT(last() == cudaErrorInvalidValue);
    big_static_shared_kernel<<<1, 32>>>((float *)d);
    EXPECT(last() == cudaErrorInvalidValue);
    bounded_kernel<<<1, 64>>>(d);
    EXPECT(last() == cudaSuccess);
    bounded_kernel<<<1, 128>>>(d);
    EXPECT(last() == cudaErrorLaunchOutOfResources);
    int host[4];
    fill_kernel<<<1, 4>>>(host, 4);
    EXPECT(last() == cudaErrorIllegalAddress);
    fill_kernel<<<1, 4>>>(d + 1024, 0); /* one past the end of the allocation is a pointer */
    EXPECT(last() == cudaSuccess);
}

static void check_results(int *d)
{
    enum { BLOCKS = 3, N = BLOCKS * 1024 };
    int h[N], got[N];
    int *x = nullptr, *o1 = nullptr, *o2 = nullptr, *o3 = nullptr;
    unsigned *o4 = nullptr;
    EXPECT(cudaMalloc((void **)&x, sizeof h) == cudaSuccess);
    EXPECT(cudaMalloc((void **)&o1, sizeof h) == cudaSuccess);
    EXPECT(cudaMalloc((void **)&o2, sizeof h) == cudaSuccess);
    EXPECT(cudaMalloc((void **)&o3, sizeof h) == cudaSuccess);
    EXPECT(cudaMalloc((void **)&o4, sizeof h) == cudaSuccess);
    for (int i = 0; i < N; i++) h[i] = (i * 7919) % 1000 - 300;
    cudaMemcpy(x, h, sizeof h, cudaMemcpyHostToDevice);

    block_sum_kernel<<<BLOCKS, 1024>>>(x, o1);
    EXPECT(last() == cudaSuccess);
    cudaMemcpy(got, o1, BLOCKS * sizeof(int), cudaMemcpyDeviceToHost);
    for (int b = 0; b < BLOCKS; b++) {
        int want = 0;
        for (int i = 0; i < 1024; i++) want += h[b * 1024 + i];
        EXPECT(got[b] == want);
    }

    warp_kernel<<<1, 1024>>>(x, o1, o2, o3, o4);
    EXPECT(last() == cudaSuccess);
    int down[32], xr[1024], bc[1024];
    unsigned bal[1024];
    cudaMemcpy(down, o1, sizeof down, cudaMemcpyDeviceToHost);
    cudaMemcpy(xr, o2, sizeof xr, cudaMemcpyDeviceToHost);
    cudaMemcpy(bc, o3, sizeof bc, cudaMemcpyDeviceToHost);
    cudaMemcpy(bal, o4, sizeof bal, cudaMemcpyDeviceToHost);
    int bad = 0;
    for (int w = 0; w < 32; w++) {
        int sum = 0;
        unsigned want_bal = 0;
        for (int l = 0; l < 32; l++) {
            sum += h[w * 32 + l];
            if (h[w * 32 + l] % 3 == 0) want_bal |= 1u << l;
        }
        bad += down[w] != sum;
        for (int l = 0; l < 32; l++)
            bad += xr[w * 32 + l] != sum || bc[w * 32 + l] != h[w * 32 + 5] ||
                   bal[w * 32 + l] != want_bal;
    }
    EXPECT(bad == 0);

    half_warp_kernel<<<1, 64>>>(o1);
    EXPECT(last() == cudaSuccess);
    cudaMemcpy(got, o1, 64 * sizeof(int), cudaMemcpyDeviceToHost);
    bad = 0;
    for (int t = 0; t < 64; t++) bad += got[t] != t / 16 * 16;
    EXPECT(bad == 0);

    unwritten_shared_kernel<<<2, 64>>>(o1);
    EXPECT(last() == cudaSuccess);
    cudaMemcpy(got, o1, 64 * sizeof(int), cudaMemcpyDeviceToHost);
    bad = 0;
    for (int t = 0; t < 64; t++) bad += got[t] != -1;
    EXPECT(bad == 0);

    /* The blocks run in order, last first under CNN_EMU_ORDER=reverse (see emu_launch.cpp). */
    const bool reverse = getenv("CNN_EMU_ORDER") && !strcmp(getenv("CNN_EMU_ORDER"), "reverse");
    last_block_kernel<<<dim3(3, 2, 2), 32>>>(o1);
    EXPECT(last() == cudaSuccess);
    cudaMemcpy(got, o1, sizeof(int), cudaMemcpyDeviceToHost);
    EXPECT(got[0] == (reverse ? 0 : 11));

    dynamic_shared_kernel<<<1, 256, 256 * sizeof(int)>>>(o1);
    EXPECT(last() == cudaSuccess);
    cudaMemcpy(got, o1, 256 * sizeof(int), cudaMemcpyDeviceToHost);
    bad = 0;
    for (int t = 0; t < 256; t++) bad += got[t] != (255 - t) * 2;
    EXPECT(bad == 0);

    (void)d;
    cudaFree(x);
    cudaFree(o1);
    cudaFree(o2);
    cudaFree(o3);
    cudaFree(o4);
}

static void check_misuse(int *d)
{
    divergent_barrier_kernel<<<1, 64>>>(d);
    EXPECT(last() == cudaErrorLaunchFailure);
    deadlock_kernel<<<2, 32>>>(d);
    EXPECT(last() == cudaErrorLaunchFailure);
    missing_lanes_kernel<<<1, 16>>>(d);
    EXPECT(last() == cudaErrorLaunchFailure);
    /* the emulator is usable after each */
    fill_kernel<<<4, 256>>>(d, 1024);
    EXPECT(last() == cudaSuccess);
    int h[1024];
    EXPECT(cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost) == cudaSuccess);
    EXPECT(h[0] == 0 && h[1023] == 1023);
}

static void check_memory(int *d)
{
    int h[8] = {0};
    void *p = nullptr;
    EXPECT(cudaMalloc(&p, (size_t)1 << 50) == cudaErrorMemoryAllocation);
    EXPECT(p == nullptr);
    EXPECT(cudaGetLastError() == cudaErrorMemoryAllocation);
    EXPECT(cudaGetLastError() == cudaSuccess);
    EXPECT(cudaMemcpy(h, h + 4, 4 * sizeof(int), cudaMemcpyHostToDevice) == cudaErrorInvalidValue);
    EXPECT(cudaMemcpy(h, d, 8 * sizeof(int), cudaMemcpyHostToDevice) == cudaErrorInvalidValue);
    EXPECT(cudaMemcpy(h, d + 1020, 8 * sizeof(int), cudaMemcpyDeviceToHost) ==
           cudaErrorInvalidValue); /* runs past the end of d */
    EXPECT(cudaMemcpy(h, d, 8 * sizeof(int), cudaMemcpyDeviceToHost) == cudaSuccess);
    EXPECT(cudaMemset(h, 0, sizeof h) == cudaErrorInvalidValue);
    EXPECT(cudaFree(h) == cudaErrorInvalidValue);
    cudaGetLastError();
    void *pinned = nullptr;
    EXPECT(cudaHostAlloc(&pinned, 4096, cudaHostAllocPortable) == cudaSuccess);
    fill_kernel<<<1, 32>>>((int *)pinned, 32); /* pinned host memory is reachable */
    EXPECT(last() == cudaSuccess && ((int *)pinned)[31] == 31);
    EXPECT(cudaFree(pinned) == cudaErrorInvalidValue);
    cudaGetLastError();
    EXPECT(cudaFreeHost(pinned) == cudaSuccess);
    EXPECT(cudaMemcpy2DAsync(d, 16, h, 32, 20, 2, cudaMemcpyHostToDevice, 0) ==
           cudaErrorInvalidPitchValue);
    cudaGetLastError();
    size_t free_b = 0, total_b = 0;
    EXPECT(cudaMemGetInfo(&free_b, &total_b) == cudaSuccess && free_b < total_b);
    int v = 0;
    EXPECT(cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, 0) == cudaSuccess &&
           v == 132);
    int n = 0;
    EXPECT(cudaGetDeviceCount(&n) == cudaSuccess && cudaSetDevice(n) == cudaErrorInvalidDevice);
    cudaGetLastError();
}

static void check_cublas(void)
{
    enum { M = 5, N = 3, K = 7 };
    float a[M * K], b[K * N], c[M * N], want[M * N];
    for (int i = 0; i < M * K; i++) a[i] = 1.0f + (float)i / 3.0f;
    for (int i = 0; i < K * N; i++) b[i] = 1.0f - (float)i / 7.0f;
    /* column-major: C (M, N) = A (M, K) B (K, N) */
    for (int j = 0; j < N; j++)
        for (int i = 0; i < M; i++) {
            double s = 0;
            for (int k = 0; k < K; k++) s += (double)a[k * M + i] * b[j * K + k];
            want[j * M + i] = (float)s;
        }
    float *da, *db, *dc;
    cudaMalloc((void **)&da, sizeof a);
    cudaMalloc((void **)&db, sizeof b);
    cudaMalloc((void **)&dc, sizeof c);
    cudaMemcpy(da, a, sizeof a, cudaMemcpyHostToDevice);
    cudaMemcpy(db, b, sizeof b, cudaMemcpyHostToDevice);
    cublasHandle_t h;
    EXPECT(cublasCreate(&h) == CUBLAS_STATUS_SUCCESS);
    const float one = 1.0f, zero = 0.0f;
    EXPECT(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, M, N, K, &one, da, M, db, K, &zero, dc, M) ==
           CUBLAS_STATUS_SUCCESS);
    cudaMemcpy(c, dc, sizeof c, cudaMemcpyDeviceToHost);
    double err = 0, err32 = 0;
    for (int i = 0; i < M * N; i++) err = fmax(err, fabs((double)c[i] - want[i]));
    EXPECT(err < 1e-4);
    cublasSetMathMode(h, CUBLAS_TF32_TENSOR_OP_MATH);
    cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, M, N, K, &one, da, M, db, K, &zero, dc, M);
    cudaMemcpy(c, dc, sizeof c, cudaMemcpyDeviceToHost);
    for (int i = 0; i < M * N; i++) err32 = fmax(err32, fabs((double)c[i] - want[i]));
    EXPECT(err32 > 1e-4 && err32 < 0.1); /* TF32 rounding shows, within its precision */
    EXPECT(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, M, N, K, &one, da, M - 1, db, K, &zero, dc,
                       M) == CUBLAS_STATUS_INVALID_VALUE);
    EXPECT(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, M, N, K, &one, a, M, db, K, &zero, dc, M) ==
           CUBLAS_STATUS_EXECUTION_FAILED); /* a host operand */
    cudaGetLastError();
    cublasDestroy(h);
    cudaFree(da);
    cudaFree(db);
    cudaFree(dc);
}

/* The emulated WMMA: TF32 rounding to nearest with ties away (cvt.rna), exact products summed
 * after the accumulator's start value, and its refusals. */
static void check_wmma(void)
{
    namespace wmma = nvcuda::wmma;
    EXPECT(wmma::__float_to_tf32(__uint_as_float(0x3f801000u)) == __uint_as_float(0x3f802000u));
    EXPECT(wmma::__float_to_tf32(__uint_as_float(0xbf801000u)) == __uint_as_float(0xbf802000u));
    EXPECT(wmma::__float_to_tf32(__uint_as_float(0x3f800fffu)) == 1.0f);
    EXPECT(isinf(wmma::__float_to_tf32(INFINITY)));
    float ha[128], hb[128], hc[256], want[256];
    for (int i = 0; i < 128; i++) {
        ha[i] = sinf(0.37f * (float)i + 0.1f);
        hb[i] = cosf(0.53f * (float)i);
    }
    for (int r = 0; r < 16; r++)
        for (int col = 0; col < 16; col++) {
            float s = 0.5f;
            for (int k = 0; k < 8; k++)
                s += wmma::__float_to_tf32(ha[r + 16 * k]) *
                     wmma::__float_to_tf32(hb[k * 16 + col]);
            want[r + 16 * col] = s;
        }
    float *da = nullptr, *db = nullptr, *dc = nullptr;
    EXPECT(cudaMalloc((void **)&da, sizeof ha) == cudaSuccess);
    EXPECT(cudaMalloc((void **)&db, sizeof hb) == cudaSuccess);
    EXPECT(cudaMalloc((void **)&dc, sizeof hc) == cudaSuccess);
    cudaMemcpy(da, ha, sizeof ha, cudaMemcpyHostToDevice);
    cudaMemcpy(db, hb, sizeof hb, cudaMemcpyHostToDevice);
    wmma_kernel<<<1, 32>>>(da, db, dc, 0);
    EXPECT(last() == cudaSuccess);
    EXPECT(cudaMemcpy(hc, dc, sizeof hc, cudaMemcpyDeviceToHost) == cudaSuccess);
    EXPECT(memcmp(hc, want, sizeof hc) == 0);
    /* The same product from the second warp of a block. */
    wmma_kernel<<<1, 64>>>(da, db, dc, 0);
    EXPECT(last() == cudaSuccess);
    wmma_kernel<<<1, 32>>>(da, db, dc, 1); /* unrounded operand */
    EXPECT(last() == cudaErrorLaunchFailure);
    wmma_kernel<<<1, 32>>>(da, db, dc, 2); /* misaligned pointer */
    EXPECT(last() == cudaErrorLaunchFailure);
    wmma_kernel<<<1, 32>>>(da, db, dc, 3); /* half a warp */
    EXPECT(last() == cudaErrorLaunchFailure);
    cudaFree(da);
    cudaFree(db);
    cudaFree(dc);
}

int main(void)
{
    setvbuf(stdout, nullptr, _IOLBF, 0);
    int n = 0;
    const char *devs = getenv("CNN_EMU_DEVICES");
    EXPECT(cudaGetDeviceCount(&n) == cudaSuccess && n == (devs ? atoi(devs) : 1));
    int *d = nullptr;
    EXPECT(cudaMalloc((void **)&d, 1024 * sizeof(int)) == cudaSuccess);
    printf("emu_selftest: the \"cuda-emu:\" lines below are the errors it provokes\n");
    check_limits(d);
    check_results(d);
    check_misuse(d);
    check_memory(d);
    check_cublas();
    check_wmma();
    check_capture(d);
    check_events();
    check_lagging_copies(d);
    check_devices(d);
    check_lagging_streams(d);
    cudaFree(d);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
