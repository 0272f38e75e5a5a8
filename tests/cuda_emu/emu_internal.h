/* emu_internal.h — what the parts of the CUDA emulator share: the runtime's error state, its
 * table of device / pinned allocations (emu_runtime.cpp), used by the launcher (emu_launch.cpp)
 * and the emulated cuDNN to check arguments, and TF32 rounding. Not seen by the library or the
 * kernels. */
#ifndef CNN_EMU_INTERNAL_H
#define CNN_EMU_INTERNAL_H

#include <cuda_runtime.h>

namespace cnn_emu {

enum mem_kind { MEM_UNKNOWN = 0, MEM_DEVICE = 1, MEM_PINNED = 2 };

/* What [p, p + bytes) lies in: one device allocation, one pinned host allocation, or neither.
 * bytes 0 accepts a pointer one past the end of an allocation. */
mem_kind memory_kind(const void *p, size_t bytes);

/* Sets the error cudaGetLastError returns next; returns e. */
cudaError_t set_error(cudaError_t e);

/* Sets the error and prints "cuda-emu: <message>" on stderr: for kernel and launch problems,
 * which a real GPU would report with no more detail than the error code. */
void report(cudaError_t e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* CNN_EMU_NO_COMPUTE=1: launches, GEMMs and cuDNN calls are checked as usual but compute
 * nothing, so a program's time is its host-side cost alone (results are garbage): for
 * measuring the runtime's per-step overhead, never for tests. */
bool no_compute();

/* Counts one call of name (a CUDA, cuBLAS or cuDNN function), listed on stderr at exit when
 * CNN_EMU_PROFILE is set: the calls that cost a real GPU host time, and whether a run reached
 * the cuDNN paths at all. */
void count_call(const char *name);

/* v rounded to TF32 (10 mantissa bits, nearest even), as tensor cores read FP32 operands
 * (the emulated cuBLAS and cuDNN in TF32 math mode). */
float to_tf32(float v);

} /* namespace cnn_emu */

#endif /* CNN_EMU_INTERNAL_H */
