/* multi_tensor.cuh — one launch over many tensors (optimizer updates, gradient clipping and
 * its norm): each block owns one chunk of MT_CHUNK elements of one tensor, and the kernel's
 * arguments say which, for up to MT_TENSORS tensors and MT_BLOCKS chunks per launch. Only .cu
 * files include it (after launch.cuh). */
#ifndef CNN_MULTI_TENSOR_CUH
#define CNN_MULTI_TENSOR_CUH

#include <stdint.h>

namespace {

constexpr int MT_TENSORS = 32;
constexpr int MT_BLOCKS = 320;
constexpr int64_t MT_CHUNK = 65536;

/* One parameter as a kernel sees it, with the per-parameter scalars the host computed. */
struct MtTensor {
    float *p;
    const float *g;
    float *s1, *s2; /* SGD: momentum buffer or NULL; Adam: exp_avg, exp_avg_sq */
    int64_t n;
    float wd;
    bool first;       /* SGD: the momentum buffer starts as the gradient */
    const float *adam; /* Adam: shrink, step_size, bc2_sqrt, in device memory */
};

/* Block b of a launch updates chunk chunk_of[b] of tensor tensor_of[b]. About 3.6 KB: within
 * the 4 KB of kernel arguments any CUDA version takes. */
struct MtArgs {
    MtTensor t[MT_TENSORS];
    unsigned char tensor_of[MT_BLOCKS];
    int chunk_of[MT_BLOCKS];
};
static_assert(sizeof(MtArgs) + 64 <= 4096, "kernel arguments over 4 KB");

/* The [begin, end) range of the chunk this block owns. */
#define MT_CHUNK_LOOP(a, t, i)                                                                    \
    const MtTensor &t = (a).t[(a).tensor_of[blockIdx.x]];                                         \
    const int64_t begin_ = (int64_t)(a).chunk_of[blockIdx.x] * MT_CHUNK;                          \
    const int64_t end_ = t.n < begin_ + MT_CHUNK ? t.n : begin_ + MT_CHUNK;                       \
    for (int64_t i = begin_ + threadIdx.x; i < end_; i += blockDim.x)

/* Packs the parameters into launches of at most MT_TENSORS tensors and MT_BLOCKS chunks, and
 * calls launch(args, blocks) for each. A parameter whose chunks overflow one launch continues
 * in the next. */
template <class Launch>
cnn_status for_each_launch(const MtTensor *ts, int count, Launch launch)
{
    MtArgs a{};
    int nt = 0, nb = 0;
    for (int i = 0; i < count; i++) {
        const int64_t chunks = (ts[i].n + MT_CHUNK - 1) / MT_CHUNK;
        for (int64_t c = 0; c < chunks; c++) {
            if (c == 0 || nt == 0) a.t[nt++] = ts[i];
            a.tensor_of[nb] = (unsigned char)(nt - 1);
            a.chunk_of[nb++] = (int)c;
            const bool last_chunk = c + 1 == chunks;
            if (nb == MT_BLOCKS || (nt == MT_TENSORS && last_chunk)) {
                CNN_TRY(launch(a, nb));
                nt = nb = 0;
            }
        }
    }
    if (nb > 0) CNN_TRY(launch(a, nb));
    return CNN_OK;
}

} /* namespace */

#endif /* CNN_MULTI_TENSOR_CUH */
