/* mma.h (emulated) — the part of CUDA's WMMA API (nvcuda::wmma) the kernels use: TF32 16x16x8
 * fragments, fill, load, multiply-accumulate and store, as warp-collective calls for the CPU
 * emulator. It checks what the hardware requires and would not report: all 32 lanes call
 * together with the same pointer and ldm, pointers 32-byte aligned, ldm a multiple of 4 floats,
 * TF32 operands already rounded (__float_to_tf32). Never used by a real CUDA build. */
#ifndef CNN_EMU_MMA_H
#define CNN_EMU_MMA_H

#include "cnn_emu_kernel.h"

namespace nvcuda {
namespace wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
namespace precision {
struct tf32 {};
} /* namespace precision */
enum layout_t { mem_row_major, mem_col_major };

/* Fragments hold what the emulation needs, not the hardware's register layout (which CUDA keeps
 * opaque): every lane keeps the whole A (16x8) or B (8x16) operand, and its own 8 of the 256
 * accumulator elements (lane l: elements 8l..8l+7 in row-major order). The hardware's per-lane
 * x[] is deliberately absent, so a kernel cannot depend on a layout this header invents. */
template <class Use, int M, int N, int K, class T, class Layout = void>
class fragment;

template <class Layout>
class fragment<matrix_a, 16, 16, 8, precision::tf32, Layout> {
  public:
    float v[16 * 8]; /* v[row * 8 + k] */
};
template <class Layout>
class fragment<matrix_b, 16, 16, 8, precision::tf32, Layout> {
  public:
    float v[8 * 16]; /* v[k * 16 + col] */
};
template <>
class fragment<accumulator, 16, 16, 8, float, void> {
  public:
    float v[8]; /* this lane's elements 8 * lane + i of the row-major 16x16 tile */
};

/* Round to TF32 as cvt.rna.tf32.f32: 10 mantissa bits, to nearest, ties away from zero. */
inline float __float_to_tf32(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7f800000u) != 0x7f800000u) u = (u + 0x1000u) & ~0x1fffu;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Every lane of the warp calls with the same p and ldm; p is 32-byte aligned and ldm a
 * multiple of 4 floats, as the CUDA guide requires of load/store_matrix_sync. */
inline bool cnn_emu_wmma_args(const void *p, unsigned ldm, const char *what)
{
    uint64_t ps[32], ls[32];
    cnn_emu_warp_exchange(0xffffffffu, (uint64_t)(uintptr_t)p, ps, what);
    cnn_emu_warp_exchange(0xffffffffu, ldm, ls, what);
    for (int l = 1; l < 32; l++)
        if (ps[l] != ps[0] || ls[l] != ls[0]) {
            cnn_emu_kernel_error("%s: lanes 0 and %d pass different pointers or ldm", what, l);
            return false;
        }
    if ((uintptr_t)p % 32 != 0 || ldm % 4 != 0) {
        cnn_emu_kernel_error("%s: pointer %p must be 32-byte aligned and ldm %u a multiple of "
                             "4", what, p, ldm);
        return false;
    }
    return true;
}

inline bool cnn_emu_is_tf32(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return (u & 0x1fffu) == 0 || (u & 0x7f800000u) == 0x7f800000u;
}

/* Element (r, c) of a rows x cols matrix at p with leading dimension ldm; a TF32 operand must
 * already be rounded. */
template <class Layout>
inline float cnn_emu_wmma_at(const float *p, unsigned ldm, int r, int c, const char *what)
{
    const float f = std::is_same<Layout, row_major>::value ? p[r * ldm + c] : p[r + c * ldm];
    if (!cnn_emu_is_tf32(f))
        cnn_emu_kernel_error("%s: element (%d, %d) = %a is not TF32; round operands with "
                             "__float_to_tf32 first", what, r, c, (double)f);
    return f;
}

template <class Layout>
inline void load_matrix_sync(fragment<matrix_a, 16, 16, 8, precision::tf32, Layout> &a,
                             const float *p, unsigned ldm)
{
    if (!cnn_emu_wmma_args(p, ldm, "wmma::load_matrix_sync(matrix_a)")) return;
    for (int r = 0; r < 16; r++)
        for (int k = 0; k < 8; k++)
            a.v[r * 8 + k] = cnn_emu_wmma_at<Layout>(p, ldm, r, k, "wmma matrix_a");
}

template <class Layout>
inline void load_matrix_sync(fragment<matrix_b, 16, 16, 8, precision::tf32, Layout> &b,
                             const float *p, unsigned ldm)
{
    if (!cnn_emu_wmma_args(p, ldm, "wmma::load_matrix_sync(matrix_b)")) return;
    for (int k = 0; k < 8; k++)
        for (int c = 0; c < 16; c++)
            b.v[k * 16 + c] = cnn_emu_wmma_at<Layout>(p, ldm, k, c, "wmma matrix_b");
}

inline void fill_fragment(fragment<accumulator, 16, 16, 8, float> &c, float x)
{
    for (float &e : c.v) e = x;
}

/* d = a * b + c: each lane computes its own 8 elements, products exact (TF32 x TF32 fits FP32)
 * and added in order of k. */
template <class LA, class LB>
inline void mma_sync(fragment<accumulator, 16, 16, 8, float> &d,
                     const fragment<matrix_a, 16, 16, 8, precision::tf32, LA> &a,
                     const fragment<matrix_b, 16, 16, 8, precision::tf32, LB> &b,
                     const fragment<accumulator, 16, 16, 8, float> &c)
{
    uint64_t all[32];
    cnn_emu_warp_exchange(0xffffffffu, 0, all, "wmma::mma_sync");
    const int lane = (int)cnn_emu_lane();
    for (int i = 0; i < 8; i++) {
        const int e = 8 * lane + i, r = e / 16, col = e % 16;
        float s = c.v[i];
        for (int k = 0; k < 8; k++) s += a.v[r * 8 + k] * b.v[k * 16 + col];
        d.v[i] = s;
    }
}

inline void store_matrix_sync(float *p, const fragment<accumulator, 16, 16, 8, float> &c,
                              unsigned ldm, layout_t layout)
{
    if (!cnn_emu_wmma_args(p, ldm, "wmma::store_matrix_sync")) return;
    const int lane = (int)cnn_emu_lane();
    for (int i = 0; i < 8; i++) {
        const int e = 8 * lane + i, r = e / 16, col = e % 16;
        p[layout == mem_row_major ? r * ldm + col : r + col * ldm] = c.v[i];
    }
}

} /* namespace wmma */
} /* namespace nvcuda */

#endif /* CNN_EMU_MMA_H */
