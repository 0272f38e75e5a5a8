/* gemm.h — the one CPU sgemm the layers call (conv2d_cpu.c, linear.c), and the rule for its
 * threads.
 *
 * OpenBLAS's pthreads build keeps a thread pool of its own: after each threaded call its workers
 * spin on sched_yield for a while, taking CPU from the OpenMP team and the data loader. On the
 * 2-core machine that was a third of LeNet-5's training time (perf: half the samples in libgomp
 * spinning and sched_yield; an epoch 8.2-10.6 s, against 5.4-5.6 s with OPENBLAS_NUM_THREADS=1).
 * So OpenBLAS only ever runs single-threaded here, and the library's one thread pool is OpenMP's:
 * a GEMM worth a team (core/parallel.h) called outside a parallel region is split over the team
 * by blocks of C's columns (or rows, when C is narrow), each block one single-threaded sgemm.
 * Inside a parallel region (the conv's per-thread sample blocks) it runs on the calling thread. */
#ifndef CNN_GEMM_H
#define CNN_GEMM_H

#include <stdbool.h>

/* C = alpha op(A) op(B) + beta C, row-major, as cblas_sgemm(CblasRowMajor, ...): op(A) is
 * (m, k), op(B) (k, n), C (m, n); lda, ldb, ldc the row strides of A, B, C as stored. The same
 * inputs and thread count give the same bits; another thread count may round differently (the
 * split moves the matrix edges, and some OpenBLAS kernels, Haswell/Zen among them, round an
 * element differently near an edge), as the library's other reductions over threads do. */
void cnn_sgemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float *a,
               int lda, const float *b, int ldb, float beta, float *c, int ldc);

/* Runs OpenBLAS single-threaded until the matching end (nests, and across threads: the last
 * end puts the caller's thread count back). cnn_sgemm does this itself around each call. */
void cnn_blas_serial_begin(void);
void cnn_blas_serial_end(void);

#endif /* CNN_GEMM_H */
