/* gemm.c — cnn_sgemm: OpenBLAS sgemm single-threaded, split over the OpenMP team when worth it
 * (the rule and the reason are in gemm.h). */
#include "gemm.h"

#include <cblas.h>
#include <omp.h>
#include <pthread.h>
#include <stdint.h>

#include "parallel.h"

/* OpenBLAS' thread count is process-wide: it is lowered to 1 while any call of ours runs and
 * put back by the last one to leave. An OpenMP-built OpenBLAS runs single-threaded inside
 * parallel regions by itself (and its set_num_threads would change ours), a serial one has no
 * threads: for both there is nothing to do. */
static pthread_mutex_t blas_lock = PTHREAD_MUTEX_INITIALIZER;
static int blas_depth, blas_saved_threads;

void cnn_blas_serial_begin(void)
{
    if (openblas_get_parallel() != OPENBLAS_THREAD) return;
    pthread_mutex_lock(&blas_lock);
    if (blas_depth++ == 0) {
        blas_saved_threads = openblas_get_num_threads();
        if (blas_saved_threads != 1) openblas_set_num_threads(1);
    }
    pthread_mutex_unlock(&blas_lock);
}

void cnn_blas_serial_end(void)
{
    if (openblas_get_parallel() != OPENBLAS_THREAD) return;
    pthread_mutex_lock(&blas_lock);
    if (--blas_depth == 0 && blas_saved_threads != 1) openblas_set_num_threads(blas_saved_threads);
    pthread_mutex_unlock(&blas_lock);
}

static void sgemm1(bool ta, bool tb, int m, int n, int k, float alpha, const float *a, int lda,
                   const float *b, int ldb, float beta, float *c, int ldc)
{
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m,
                n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

/* Blocks narrower than this many columns (rows) lose more to OpenBLAS' packing than the
 * second thread gains. */
#define MIN_BLOCK 32

void cnn_sgemm(bool ta, bool tb, int m, int n, int k, float alpha, const float *a, int lda,
               const float *b, int ldb, float beta, float *c, int ldc)
{
    cnn_blas_serial_begin();
    const int nt = omp_in_parallel() ? 1 : omp_get_max_threads();
    const bool by_cols = n >= m;
    const int len = by_cols ? n : m;
    int parts = nt;
    if (parts > len / MIN_BLOCK) parts = len / MIN_BLOCK;
    if (parts < 2 || !cnn_par_worth((int64_t)m * n * k)) {
        sgemm1(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        cnn_blas_serial_end();
        return;
    }
    /* Block p of C's columns [j0, j1) needs op(B)'s columns j0..j1: B's columns (no
     * transpose) or its rows (transposed); rows of C likewise need op(A)'s rows. */
    #pragma omp parallel for num_threads(parts) schedule(static)
    for (int p = 0; p < parts; p++) {
        const int lo = (int)((int64_t)len * p / parts), hi = (int)((int64_t)len * (p + 1) / parts);
        if (by_cols)
            sgemm1(ta, tb, m, hi - lo, k, alpha, a, lda, tb ? b + (int64_t)lo * ldb : b + lo, ldb,
                   beta, c + lo, ldc);
        else
            sgemm1(ta, tb, hi - lo, n, k, alpha, ta ? a + lo : a + (int64_t)lo * lda, lda, b, ldb,
                   beta, c + (int64_t)lo * ldc, ldc);
    }
    cnn_blas_serial_end();
}
