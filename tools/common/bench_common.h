/* bench_common.h — what cnnbench's parts share: options, the backend being measured, results,
 * timing with statistics, output checks, the conv shape sets and a small JSON writer. Tool code
 * only: it may print, but never exits from these helpers (the tool decides). */
#ifndef CNN_TOOLS_BENCH_H
#define CNN_TOOLS_BENCH_H

#include "cnncuda.h"
#include "stop_signal.h"

#include <stdbool.h>
#include <stdio.h>

/* ---- conv shapes ----------------------------------------------------------------------------- */
typedef struct bench_conv_shape {
    int n, c, h, w, k, r, s, stride, pad, groups;
    int count; /* how many layers of the model have this shape (1 for --shape) */
} bench_conv_shape;

/* The distinct convolutions of a zoo model (resnet50, vgg16, alexnet) at 224x224 and batch n;
 * returns how many were written (at most max), or -1 for an unknown set name. */
int bench_conv_set(const char *name, int batch, bench_conv_shape *out, int max);
/* Cross-checks a set against cnn_model_summarize of the zoo model at 224x224: number of Conv2d
 * layers, their parameters and MACs. Writes a one-line verdict into msg; true when all agree. */
bool bench_conv_set_verify(const char *name, char *msg, size_t n);
/* "N,C,H,W,K,R,S,stride,pad,groups" */
const char *bench_conv_shape_str(const bench_conv_shape *s, char *buf, size_t n);

/* ---- options --------------------------------------------------------------------------------- */
#define BENCH_MAX_SHAPES 64
typedef struct bench_opts {
    const char *mode, *model, *backend, *json, *set;
    const char *data; /* loader: an ImageNet-style folder or "fashion-mnist" */
    int warmup, iters, batch, img_size, workers;
    bool tf32, layers, list, no_peak;
    bool graph; /* model: time CUDA graph replays of the step (cnn_graph_capture) */
    bool no_fusion; /* model: every layer alone (cnn_model_set_fusion off) */
    bench_conv_shape shapes[BENCH_MAX_SHAPES];
    int n_shapes;
    int n_set_shapes; /* the first ones, from --shapes (named as the set); the rest "custom" */
    int m, n, k; /* gemm */
} bench_opts;

/* ---- the backend being measured -------------------------------------------------------------- */
typedef struct bench_env {
    const char *backend; /* "cpu", "cuda" or "cudnn" */
    cnn_device dev;
    bool gpu;
    bool tf32;
    double peak_gflops, peak_gbs; /* measured once per backend (0 when not measured) */
    double overhead_ms;           /* the timer's own cost: a one-element fill timed alone */
    cnn_tensor *flush;            /* written between repeats to flush the caches */
} bench_env;

/* ---- results --------------------------------------------------------------------------------- */
typedef struct bench_stats {
    double median, min, max; /* ms */
} bench_stats;
/* The statistics of n > 0 timings t (sorted in place). */
bench_stats bench_stats_of(double *t, int n);

typedef struct bench_result {
    char mode[16], backend[8], name[48], shape[64], pass[16], check[12], algo[24];
    double max_err;
    bench_stats t;
    double gflops, gbs, img_per_s, peak_mem_mb; /* 0: not applicable */
    double worker_img_per_s;                    /* loader: mean decode rate of one worker */
    int count;
} bench_result;

typedef struct bench_log {
    bench_result *r;
    int n, cap;
} bench_log;

/* A zeroed new row (NULL when out of memory). */
bench_result *bench_log_add(bench_log *l);
/* Prints "cnnbench: " and the message (fmt ends with its newline) for a benchmark that could
 * not run, and counts it: a JSON file is "complete" only when none failed (and no signal came). */
void bench_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int bench_error_count(void);

/* ---- timing ---------------------------------------------------------------------------------- */
/* tool_stop (stop_signal.h), set by SIGTERM / SIGINT: bench_time fails at its next repeat and
 * the modes' loops stop, so the tool can still write the results completed so far (a run cut
 * short by a time limit keeps them). */
double bench_now_ms(void);
/* Runs warmup + iters repeats of: setup (untimed, may be NULL), a cache flush (e->flush), then
 * run timed with a cnn_timer (CUDA events on the context's stream on a GPU, queued behind the
 * flush with no synchronize first, as PyTorch's script times; the host clock on the CPU), then
 * teardown (untimed, may be NULL). Each callback returns 0 on success. -1 on the first
 * failure. */
typedef int (*bench_fn)(void *ud);
int bench_time(const bench_env *e, int warmup, int iters, bench_fn setup, bench_fn run,
               bench_fn teardown, void *ud, bench_stats *st);
/* Measures e->peak_gflops (a large GEMM through cnn_linear) and e->peak_gbs (a large
 * cnn_tensor_copy_, read + write bytes) on e's device; 0 on success. */
int bench_measure_peak(bench_env *e);
/* Measures e->overhead_ms: the median time bench_time gives a one-element fill, i.e. the
 * floor under every measurement (a kernel launch between the two events on a GPU). 0 on
 * success. */
int bench_measure_overhead(bench_env *e);
/* Peak resident set size of this process in MiB, since the last bench_reset_peak_rss (which
 * sets it to the current size; so the tool's own earlier buffers are not counted). */
double bench_peak_rss_mb(void);
void bench_reset_peak_rss(void);
/* "AMD EPYC ..." from /proc/cpuinfo, or "unknown". */
void bench_cpu_name(char *buf, size_t n);

/* ---- checks ---------------------------------------------------------------------------------- */
/* Reference value of element idx and the magnitude its rounding error scales with (e.g. the
 * sum of |terms| of a dot product). */
typedef void (*bench_ref_fn)(void *ud, long idx, double *ref, double *mag);
/* Compares got[0..n) with ref at `samples` indices (0 and n-1 first, then spread; every index
 * when samples >= n): element i passes when |got - ref| <= rtol * mag + atol. `check` names the
 * check ("fwd", "bwd_data", "train", "eval" ...) for the corruption the tests ask for through the
 * environment (they prove that a wrong result is caught):
 *   CNNBENCH_CORRUPT=1       element 0 moves by 10 tolerances + 1: any check that runs flags it;
 *   CNNBENCH_CORRUPT=abs=D   the middle element (n/2) moves by D: flagged only by a check that
 *                            reads every element with a tolerance below D;
 *   CNNBENCH_CORRUPT_CHECK=NAME  limits either to the checks named NAME.
 * Returns true when all pass; *max_err gets the largest |got - ref| seen. */
bool bench_check(const char *check, const float *got, long n, long samples, bench_ref_fn ref,
                 void *ud, double rtol, double atol, double *max_err);
/* Element-wise check of a tensor (any device) against a reference tensor (any device): passes
 * when |got - ref| <= rtol * |ref| + atol_rel * max|ref|. Same corruption rule. */
bool bench_check_tensors(const char *check, const cnn_tensor *got, const cnn_tensor *ref,
                         double rtol, double atol_rel, double *max_err);
/* --graph (bench_graph.c): step(ud) is run once op by op (the warm-up a capture needs), then
 * captured into a CUDA graph; before the first timed replay, reference(ud, &r) computes what
 * the replay's *result must hold at the current weights, and after that replay *result is
 * checked against it (bench_check_tensors under the name `check`; *check_out "ok" or
 * "mismatch"). Then warmup + iters replays are timed as bench_time times a run. A refused
 * capture (an optimizer's first step) prints the library's message. 0 on success. */
typedef struct bench_graph_job {
    cnn_status (*step)(void *ud);
    cnn_status (*reference)(void *ud, cnn_tensor **out);
    void *ud;
    cnn_tensor **result; /* where step leaves its result (replaced at each step) */
    const char *check;
} bench_graph_job;
int bench_time_graph(const bench_env *e, int warmup, int iters, const bench_graph_job *g,
                     const char **check_out, double *err, bench_stats *st);
/* ||a - ref|| / ||ref|| over n values (L2; ||a - ref|| when ref is all zeros). */
double bench_rel_l2(const float *a, const float *ref, long n);
/* Whole-tensor check for values that are chaotic element by element (the deep gradients of a
 * training step: see bench_model.c): passes when bench_rel_l2(got, ref) <= bound; *err gets it.
 * The corruption rule of bench_check applies to got (a host copy it may change): =1 moves
 * element 0 by 10 bounds of ||ref|| + 1, abs=D moves the middle one by D. */
bool bench_check_rel_l2(const char *check, float *got, const float *ref, long n, double bound,
                        double *err);
/* A host copy of a tensor's values (caller frees), NULL on failure. */
float *bench_host_copy(const cnn_tensor *t);
/* Fills r->check and r->max_err from a check's outcome. */
void bench_set_check(bench_result *r, bool ok, double max_err);

/* ---- modes ----------------------------------------------------------------------------------- */
/* Each returns 0, 1 when a check failed or something could not run (reported on stderr). */
int bench_mode_conv(const bench_opts *o, bench_env *e, bench_log *l);
int bench_mode_gemm(const bench_opts *o, bench_env *e, bench_log *l);
int bench_mode_bn(const bench_opts *o, bench_env *e, bench_log *l);
int bench_mode_pool(const bench_opts *o, bench_env *e, bench_log *l);
int bench_mode_elementwise(const bench_opts *o, bench_env *e, bench_log *l);
int bench_mode_model(const bench_opts *o, bench_env *e, bench_log *l);
/* model --layers: each layer of s timed alone at o->batch on e's backend, printed with its share
 * of the whole step's step_ms, and logged as "layer" rows. */
int bench_time_layers(const bench_opts *o, bench_env *e, bench_log *l, cnn_model *m,
                      const cnn_model_summary *s, double step_ms);
int bench_mode_summary(const bench_opts *o);
/* Batches of o->data's training split through the loader (o->workers threads), delivered to
 * e's device with no other work: img/s and each worker's decode rate. */
int bench_mode_loader(const bench_opts *o, bench_env *e, bench_log *l);
/* Prints one result row of the table (the header first when r is NULL). */
void bench_print_row(const bench_env *e, const bench_result *r);

/* ---- JSON ------------------------------------------------------------------------------------ */
typedef struct bench_json {
    FILE *f;
    int depth;
    bool first[16];
    bool after_key;
} bench_json;
int bench_json_open(bench_json *j, const char *path);
void bench_json_begin(bench_json *j, char bracket); /* '{' or '[' */
void bench_json_end(bench_json *j, char bracket);   /* '}' or ']' */
void bench_json_key(bench_json *j, const char *key);
void bench_json_str(bench_json *j, const char *v);
void bench_json_num(bench_json *j, double v); /* non-finite -> null */
void bench_json_int(bench_json *j, long long v);
void bench_json_bool(bench_json *j, bool v);
/* Closes the file; 0 when everything was written. */
int bench_json_close(bench_json *j);

#endif /* CNN_TOOLS_BENCH_H */
