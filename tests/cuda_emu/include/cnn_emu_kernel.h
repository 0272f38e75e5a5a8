/* cnn_emu_kernel.h — the device side of the CUDA emulator, for the .cu files of cuda/ as C++:
 * CUDA keywords, built-in variables, vector types, intrinsics, barriers, warp shuffles and the
 * launch operator that the Makefile's rewrite of `k<<<g, b, smem, s>>>(args)` into
 * `k * cnn_emu_cfg("k", g, b, smem, s)(args)` calls. Included by cuda_runtime.h in C++ only;
 * the fibers, barriers and launch checks behind it live in emu_launch.cpp. */
#ifndef CNN_EMU_KERNEL_H
#define CNN_EMU_KERNEL_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include <functional>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>

#define __global__
#define __device__
#define __host__
#define __constant__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define CNN_EMU_STR(x) #x

struct uint3 {
    unsigned x, y, z;
};
struct dim3 {
    unsigned x, y, z;
    dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
    dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
};
struct __attribute__((aligned(16))) float4 {
    float x, y, z, w;
};
struct __attribute__((aligned(8))) float2 {
    float x, y;
};
struct __attribute__((aligned(16))) int4 {
    int x, y, z, w;
};
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
inline float2 make_float2(float x, float y) { return float2{x, y}; }
inline int4 make_int4(int x, int y, int z, int w) { return int4{x, y, z, w}; }

/* The built-in variables of the thread the emulator is running (set before every switch). */
extern uint3 threadIdx, blockIdx;
extern dim3 blockDim, gridDim;
constexpr int warpSize = 32;

/* ---- arithmetic intrinsics: the CPU's IEEE operations (the kernels are compiled with
 * -ffp-contract=off, so nothing is fused unless written as fmaf) ---------------------------- */
template <class A, class B>
inline typename std::common_type<A, B>::type min(A a, B b)
{
    return b < a ? b : a;
}
template <class A, class B>
inline typename std::common_type<A, B>::type max(A a, B b)
{
    return a < b ? b : a;
}
inline unsigned __umulhi(unsigned a, unsigned b) { return (unsigned)(((uint64_t)a * b) >> 32); }
inline int __mulhi(int a, int b) { return (int)(((int64_t)a * b) >> 32); }
template <class T>
inline T __ldg(const T *p)
{
    return *p;
}
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fsqrt_rn(float a) { return sqrtf(a); }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline float __fdividef(float a, float b) { return a / b; }
inline float __expf(float a) { return expf(a); }
inline float __logf(float a) { return logf(a); }
inline float __powf(float a, float b) { return powf(a, b); }
inline float __frcp_rn(float a) { return 1.0f / a; }
inline float rsqrtf(float a) { return 1.0f / sqrtf(a); }
inline double rsqrt(double a) { return 1.0 / sqrt(a); }
inline float __saturatef(float a) { return a < 0.0f ? 0.0f : (a > 1.0f ? 1.0f : a); }
inline int __float_as_int(float f)
{
    int i;
    memcpy(&i, &f, sizeof i);
    return i;
}
inline float __int_as_float(int i)
{
    float f;
    memcpy(&f, &i, sizeof f);
    return f;
}
inline unsigned __float_as_uint(float f) { return (unsigned)__float_as_int(f); }
inline float __uint_as_float(unsigned u) { return __int_as_float((int)u); }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __clz(int x) { return x ? __builtin_clz((unsigned)x) : 32; }
inline int __ffs(int x) { return __builtin_ffs(x); }

/* Blocks run one at a time on one OS thread, and fibers switch only at barriers: a
 * read-modify-write is atomic as it is. */
template <class T>
inline T atomicAdd(T *p, T v)
{
    T old = *p;
    *p = old + v;
    return old;
}
template <class T>
inline T atomicMax(T *p, T v)
{
    T old = *p;
    if (old < v) *p = v;
    return old;
}
template <class T>
inline T atomicMin(T *p, T v)
{
    T old = *p;
    if (v < old) *p = v;
    return old;
}
template <class T>
inline T atomicExch(T *p, T v)
{
    T old = *p;
    *p = v;
    return old;
}
template <class T>
inline T atomicCAS(T *p, T cmp, T v)
{
    T old = *p;
    if (old == cmp) *p = v;
    return old;
}
inline void __threadfence(void) {}
inline void __threadfence_block(void) {}

/* ---- barriers and warp exchange (emu_launch.cpp) -------------------------------------------- */
void __syncthreads(void);
/* Every lane named in mask passes its 8 bytes and, once all of them have arrived, gets the
 * group's 32 values (lanes outside mask left as they are). Misuse is a launch error. */
void cnn_emu_warp_exchange(unsigned mask, uint64_t mine, uint64_t all[32], const char *what);
/* The running thread's lane (0..31) in its warp. */
unsigned cnn_emu_lane(void);
/* A __shared__ array at p of n bytes was declared: counted in the kernel's static shared
 * memory, and poisoned (0xFF bytes) at the start of each block. */
void cnn_emu_shared(void *p, size_t n);
/* The kernel's __launch_bounds__ (the rewrite calls it first thing in the body): a block of
 * more threads than max_threads is refused, as cudaLaunchKernel would. */
void cnn_emu_launch_bounds(unsigned max_threads, unsigned min_blocks = 0, unsigned cluster = 0);
/* Records a launch error found inside a kernel (reported by cudaGetLastError after it). */
void cnn_emu_kernel_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The launch's dynamic shared memory (extern __shared__). */
void *cnn_emu_dynamic_shared(void);

inline void __syncwarp(unsigned mask = 0xffffffffu)
{
    uint64_t all[32];
    cnn_emu_warp_exchange(mask, 0, all, "__syncwarp");
}

template <class T>
inline uint64_t cnn_emu_bits(T v)
{
    static_assert(sizeof(T) <= 8, "warp shuffles move at most 8 bytes");
    uint64_t b = 0;
    memcpy(&b, &v, sizeof v);
    return b;
}
template <class T>
inline T cnn_emu_from_bits(uint64_t b)
{
    T v;
    memcpy(&v, &b, sizeof v);
    return v;
}
/* src: the lane to read; a source outside mask is undefined on the GPU and an error here. */
template <class T>
inline T cnn_emu_shfl(unsigned mask, T v, unsigned src, const char *what)
{
    uint64_t all[32];
    cnn_emu_warp_exchange(mask, cnn_emu_bits(v), all, what);
    if (src != cnn_emu_lane() && !(mask >> src & 1u)) {
        cnn_emu_kernel_error("%s reads lane %u, which is outside its mask 0x%08x", what, src,
                             mask);
        return v;
    }
    return cnn_emu_from_bits<T>(all[src]);
}
template <class T>
inline T __shfl_sync(unsigned mask, T v, int src, int width = 32)
{
    unsigned lane = cnn_emu_lane(), base = lane / (unsigned)width * (unsigned)width;
    return cnn_emu_shfl(mask, v, base + (unsigned)src % (unsigned)width, "__shfl_sync");
}
template <class T>
inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32)
{
    unsigned lane = cnn_emu_lane(), in = lane % (unsigned)width;
    unsigned src = in + delta < (unsigned)width ? lane + delta : lane;
    return cnn_emu_shfl(mask, v, src, "__shfl_down_sync");
}
template <class T>
inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32)
{
    unsigned lane = cnn_emu_lane(), in = lane % (unsigned)width;
    return cnn_emu_shfl(mask, v, in >= delta ? lane - delta : lane, "__shfl_up_sync");
}
template <class T>
inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32)
{
    unsigned lane = cnn_emu_lane(), src = lane ^ (unsigned)lane_mask;
    if (src / (unsigned)width != lane / (unsigned)width) src = lane;
    return cnn_emu_shfl(mask, v, src, "__shfl_xor_sync");
}
inline unsigned __ballot_sync(unsigned mask, int pred)
{
    uint64_t all[32];
    cnn_emu_warp_exchange(mask, pred != 0, all, "__ballot_sync");
    unsigned r = 0;
    for (unsigned l = 0; l < 32; l++)
        if ((mask >> l & 1u) && all[l]) r |= 1u << l;
    return r;
}
inline int __any_sync(unsigned mask, int pred) { return __ballot_sync(mask, pred) != 0; }
inline int __all_sync(unsigned mask, int pred) { return __ballot_sync(mask, pred) == mask; }

/* ---- the launch -------------------------------------------------------------------------- */
namespace cnn_emu {

struct launch_cfg {
    const char *name;
    dim3 grid, block;
    size_t smem;
    cudaStream_t stream;
};

/* Runs the grid (emu_launch.cpp): checks the configuration and the pointer arguments (device
 * memory, pinned host memory or NULL), then every block, each thread on a fiber calling
 * run(closure). Errors are reported through cudaGetLastError, as a real launch's. */
void launch(const launch_cfg &cfg, void (*run)(void *), void *closure, const void *const *ptrs,
            int nptrs);

/* Stream capture (emu_graph.cpp): whether stream s is being captured, and recording work for
 * it (see emu_internal.h). */
bool capturing(cudaStream_t s);
int defer(cudaStream_t s, std::function<void()> work);
/* A launch recorded for a capture, or checked and queued for CNN_EMU_LAGGING_STREAMS (nonzero),
 * or to be run now (0): emu_streams.cpp. */
int defer_launch(cudaStream_t s, std::function<void()> run);

template <class... Q>
struct pending {
    launch_cfg cfg;
    std::tuple<Q...> args;
};

struct cfg_builder {
    launch_cfg cfg;
    template <class... Q>
    pending<typename std::decay<Q>::type...> operator()(Q &&...q) const
    {
        return {cfg, std::tuple<typename std::decay<Q>::type...>(std::forward<Q>(q)...)};
    }
};

template <class... P>
struct closure {
    void (*f)(P...);
    std::tuple<P...> args;
    static void run(void *c)
    {
        closure *k = static_cast<closure *>(c);
        std::apply(k->f, k->args);
    }
};

template <class T>
inline void note_pointer(const T &v, const void **ptrs, int &n)
{
    if constexpr (std::is_pointer<T>::value) ptrs[n++] = (const void *)v;
    (void)v, (void)ptrs, (void)n;
}

/* The kernel's parameters are initialised from the arguments once, as cudaLaunchKernel copies
 * them; every thread then gets its own copy. */
template <class... P, class... Q>
inline void operator*(void (*f)(P...), pending<Q...> &&p)
{
    static_assert(sizeof...(P) == sizeof...(Q), "kernel launched with the wrong argument count");
    auto c = std::make_shared<closure<P...>>(
        closure<P...>{f, std::make_from_tuple<std::tuple<P...>>(std::move(p.args))});
    const launch_cfg cfg = p.cfg;
    auto run = [c, cfg] {
        const void *ptrs[sizeof...(P) + 1] = {};
        int n = 0;
        std::apply([&](const P &...a) { (note_pointer(a, ptrs, n), ...); }, c->args);
        launch(cfg, &closure<P...>::run, c.get(), ptrs, n);
    };
    /* In a capture the launch is recorded with its arguments as they are now, and run by each
     * graph launch (its checks then too); with lagging streams it is checked now and run when
     * its stream's queue runs. */
    if (defer_launch(cfg.stream, run)) return;
    run();
}

} /* namespace cnn_emu */

inline cnn_emu::cfg_builder cnn_emu_cfg(const char *name, dim3 grid, dim3 block, size_t smem = 0,
                                        cudaStream_t stream = 0)
{
    return cnn_emu::cfg_builder{{name, grid, block, smem, stream}};
}

#endif /* CNN_EMU_KERNEL_H */
