/* launch.cuh — the launch shape every simple kernel in cuda/ shares: 256-thread blocks and a
 * grid-stride loop over 64-bit indices, with enough blocks to fill any current GPU and never
 * more than the work needs. Only .cu files include it. */
#ifndef CNN_LAUNCH_CUH
#define CNN_LAUNCH_CUH

#include <stdint.h>

#define THREADS 256

static inline unsigned grid_for(int64_t n)
{
    int64_t blocks = (n + THREADS - 1) / THREADS;
    return (unsigned)(blocks < 8192 ? blocks : 8192);
}

#define GRID_STRIDE_LOOP(i, n)                                                                    \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);                     \
         i += (int64_t)gridDim.x * blockDim.x)

#endif /* CNN_LAUNCH_CUH */
