/* bench_job.h — how cnnbench's kernel modes (bench_ops.c) run one op: the job (inputs, pass,
 * checks), its timed callbacks, the check before timing and the table rows (bench_job.c). Only
 * the kernel modes use it. */
#ifndef BENCH_JOB_H
#define BENCH_JOB_H

#include "bench_common.h"

enum { P_FWD, P_BWD_DATA, P_BWD_FILTER, P_BWD, N_PASSES };
/* "fwd", "bwd_data", "bwd_filter", "bwd": the table's pass column and the checks' names. */
extern const char *const bench_pass_names[N_PASSES];

typedef struct op_job op_job;
/* An op on the backend under test: inputs in[], the pass being timed and its output. */
struct op_job {
    cnn_status (*fwd)(op_job *j, cnn_tensor **in, cnn_tensor **y);
    /* Direct-loop check of a pass's output `out` (job_outputs' order) on host copies; -1 when
     * the op has none for it. */
    int (*naive)(op_job *j, int pass, int out, const float *got, long n, double *max_err);
    cnn_tensor *in[5], *dy, *y;
    int n_in;
    unsigned grad_mask[N_PASSES]; /* which inputs need a gradient in each pass */
    int pass;
    bench_conv_shape cs;
    cnn_conv2d_params cp;
    cnn_pool2d_params pp;
    bool avg, add;
    double rtol; /* of the sum of |terms|; GPU fp32 leaves room for Winograd/FFT algorithms */
    float *hx, *hw, *hdy; /* host copies for the naive checks */
};

/* Frees a job's tensors and host copies. */
void bench_job_free(op_job *j);

/* Checks and times every pass in `passes` of a job and logs one row per pass. flops/bytes:
 * per pass, for GFLOP/s and GB/s (0: not printed). */
int bench_run_job(const bench_opts *o, bench_env *e, bench_log *l, op_job *j, const char *mode,
            const char *name, const char *shape, int count, const int *passes, int np,
            const double *flops, const double *bytes);

/* Random inputs (uniform, never zeros, so no kernel can shortcut them), drawn on the CPU so
 * that every backend sees the same values, then moved to the device. */
int bench_rand_on(const bench_env *e, cnn_shape s, float lo, float hi, cnn_tensor **out);

#endif /* BENCH_JOB_H */
