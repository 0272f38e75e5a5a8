/* bench_ops.c — the kernel modes of cnnbench (conv, gemm, bn, pool, elementwise): each op runs
 * through the public API on the backend under test, its output is checked once before timing
 * (direct double loops here, or the CPU library for GPU backward passes), then timed. */
#include "bench_job.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- forward functions ----------------------------------------------------------------------- */
static cnn_status fwd_conv(op_job *j, cnn_tensor **in, cnn_tensor **y)
{
    return cnn_conv2d(in[0], in[1], NULL, &j->cp, y);
}
static cnn_status fwd_linear(op_job *j, cnn_tensor **in, cnn_tensor **y)
{
    (void)j;
    return cnn_linear(in[0], in[1], NULL, y);
}
static cnn_status fwd_bn(op_job *j, cnn_tensor **in, cnn_tensor **y)
{
    (void)j;
    return cnn_batch_norm(in[0], in[3], in[4], in[1], in[2], true, 0.1f, 1e-5f, y);
}
static cnn_status fwd_pool(op_job *j, cnn_tensor **in, cnn_tensor **y)
{
    return j->avg ? cnn_avg_pool2d(in[0], &j->pp, y) : cnn_max_pool2d(in[0], &j->pp, y);
}
static cnn_status fwd_ew(op_job *j, cnn_tensor **in, cnn_tensor **y)
{
    return j->add ? cnn_add(in[0], in[1], y) : cnn_relu(in[0], y);
}

/* ---- conv ------------------------------------------------------------------------------------ */
static int out_size(int in, int k, int stride, int pad) { return (in + 2 * pad - k) / stride + 1; }

static void conv_ref_at(void *ud, long idx, double *ref, double *mag)
{
    const op_job *j = ud;
    const bench_conv_shape *s = &j->cs;
    const int P = out_size(s->h, s->r, s->stride, s->pad),
              Q = out_size(s->w, s->s, s->stride, s->pad);
    const int cg = s->c / s->groups, kg = s->k / s->groups;
    double acc = 0, m = 0;
    if (j->pass == P_FWD) {
        int q = (int)(idx % Q), p = (int)(idx / Q % P), k = (int)(idx / ((long)P * Q) % s->k);
        int n = (int)(idx / ((long)P * Q * s->k));
        for (int c = 0; c < cg; c++)
            for (int r = 0; r < s->r; r++)
                for (int u = 0; u < s->s; u++) {
                    int hh = p * s->stride - s->pad + r, ww = q * s->stride - s->pad + u;
                    if (hh < 0 || hh >= s->h || ww < 0 || ww >= s->w) continue;
                    double v =
                        (double)
                            j->hx[(((long)n * s->c + (k / kg) * cg + c) * s->h + hh) * s->w + ww] *
                        j->hw[(((long)k * cg + c) * s->r + r) * s->s + u];
                    acc += v;
                    m += fabs(v);
                }
    } else if (j->pass == P_BWD_DATA) {
        int ww = (int)(idx % s->w), hh = (int)(idx / s->w % s->h),
            c = (int)(idx / ((long)s->w * s->h) % s->c);
        int n = (int)(idx / ((long)s->w * s->h * s->c)), g = c / cg;
        for (int k = g * kg; k < (g + 1) * kg; k++)
            for (int r = 0; r < s->r; r++)
                for (int u = 0; u < s->s; u++) {
                    int ph = hh + s->pad - r, pw = ww + s->pad - u;
                    if (ph < 0 || pw < 0 || ph % s->stride || pw % s->stride) continue;
                    int p = ph / s->stride, q = pw / s->stride;
                    if (p >= P || q >= Q) continue;
                    double v = (double)j->hdy[(((long)n * s->k + k) * P + p) * Q + q] *
                               j->hw[(((long)k * cg + c % cg) * s->r + r) * s->s + u];
                    acc += v;
                    m += fabs(v);
                }
    } else {
        int u = (int)(idx % s->s), r = (int)(idx / s->s % s->r),
            c = (int)(idx / ((long)s->s * s->r) % cg);
        int k = (int)(idx / ((long)s->s * s->r * cg)), cin = (k / kg) * cg + c;
        for (int n = 0; n < s->n; n++)
            for (int p = 0; p < P; p++)
                for (int q = 0; q < Q; q++) {
                    int hh = p * s->stride - s->pad + r, ww = q * s->stride - s->pad + u;
                    if (hh < 0 || hh >= s->h || ww < 0 || ww >= s->w) continue;
                    double v = (double)j->hdy[(((long)n * s->k + k) * P + p) * Q + q] *
                               j->hx[(((long)n * s->c + cin) * s->h + hh) * s->w + ww];
                    acc += v;
                    m += fabs(v);
                }
    }
    *ref = acc;
    *mag = m;
}

static int conv_naive(op_job *j, int pass, int out, const float *got, long n, double *max_err)
{
    (void)out; /* one output per pass */
    const bench_conv_shape *s = &j->cs;
    /* Backward-filter points each cost N*P*Q MACs: keep the check to ~50 M MACs. */
    long per = (long)s->n * out_size(s->h, s->r, s->stride, s->pad) *
               out_size(s->w, s->s, s->stride, s->pad);
    long samples = pass == P_BWD_FILTER ? 50000000L / (per ? per : 1) : 2048;
    if (samples < 16) samples = 16;
    return bench_check(bench_pass_names[pass], got, n, samples, conv_ref_at, j, j->rtol, 1e-5,
                       max_err);
}

int bench_mode_conv(const bench_opts *o, bench_env *e, bench_log *l)
{
    int rc = 0;
    bench_print_row(e, NULL);
    for (int i = 0; i < o->n_shapes && !tool_stop; i++) {
        const bench_conv_shape *s = &o->shapes[i];
        op_job j = {.fwd = fwd_conv,
                    .naive = conv_naive,
                    .n_in = 2,
                    .cs = *s,
                    .grad_mask = {0, 1, 2, 0},
                    .rtol = !e->gpu ? 2e-5 : e->tf32 ? 3e-3 : 2e-4,
                    .cp = {.stride = {s->stride, s->stride},
                           .padding = {s->pad, s->pad},
                           .groups = s->groups}};
        char shape[64];
        bench_conv_shape_str(s, shape, sizeof shape);
        const int P = out_size(s->h, s->r, s->stride, s->pad),
                  Q = out_size(s->w, s->s, s->stride, s->pad);
        if (P < 1 || Q < 1) {
            bench_error("conv %s: empty output\n", shape);
            rc = 1;
            continue;
        }
        if (bench_rand_on(e, CNN_SHAPE(s->n, s->c, s->h, s->w), -1, 1, &j.in[0]) ||
            bench_rand_on(e, CNN_SHAPE(s->k, s->c / s->groups, s->r, s->s), -1, 1, &j.in[1]) ||
            bench_rand_on(e, CNN_SHAPE(s->n, s->k, P, Q), -1, 1, &j.dy) ||
            !(j.hx = bench_host_copy(j.in[0])) || !(j.hw = bench_host_copy(j.in[1])) ||
            !(j.hdy = bench_host_copy(j.dy))) {
            bench_error("conv %s: %s\n", shape, cnn_last_error());
            bench_job_free(&j);
            rc = 1;
            continue;
        }
        const double f = 2.0 * s->n * s->k * P * Q * (double)(s->c / s->groups) * s->r * s->s;
        const double bx = 4.0 * s->n * s->c * s->h * s->w,
                     bw = 4.0 * s->k * s->c / s->groups * s->r * s->s,
                     by = 4.0 * s->n * s->k * P * Q;
        const double flops[N_PASSES] = {f, f, f, 0},
                     bytes[N_PASSES] = {bx + bw + by, by + bw + bx, bx + by + bw, 0};
        const int passes[] = {P_FWD, P_BWD_DATA, P_BWD_FILTER};
        rc |= bench_run_job(o, e, l, &j, "conv", i < o->n_set_shapes ? o->set : "custom", shape,
                            s->count, passes, 3, flops, bytes);
        bench_job_free(&j);
    }
    return rc;
}

/* ---- gemm (cnn_linear: y = x w^T) ------------------------------------------------------------ */
static void gemm_ref_at(void *ud, long idx, double *ref, double *mag)
{
    const op_job *j = ud;
    const int N = j->cs.k, K = j->cs.c; /* y: (M, N), x: (M, K), w: (N, K) */
    long i = idx / N, jj = idx % N;
    double acc = 0, m = 0;
    for (int k = 0; k < K; k++) {
        double v = (double)j->hx[i * K + k] * j->hw[jj * K + k];
        acc += v;
        m += fabs(v);
    }
    *ref = acc;
    *mag = m;
}

static int gemm_naive(op_job *j, int pass, int out, const float *got, long n, double *max_err)
{
    (void)out; /* one output per pass */
    return bench_check(bench_pass_names[pass], got, n, 2048, gemm_ref_at, j, j->rtol, 1e-5,
                       max_err);
}

int bench_mode_gemm(const bench_opts *o, bench_env *e, bench_log *l)
{
    op_job j = {.fwd = fwd_linear,
                .naive = gemm_naive,
                .n_in = 2,
                .cs = {.n = o->m, .k = o->n, .c = o->k},
                .rtol = !e->gpu ? 2e-5 : e->tf32 ? 3e-3 : 2e-4};
    char shape[64];
    snprintf(shape, sizeof shape, "%d,%d,%d", o->m, o->n, o->k);
    bench_print_row(e, NULL);
    if (bench_rand_on(e, CNN_SHAPE(o->m, o->k), -1, 1, &j.in[0]) ||
        bench_rand_on(e, CNN_SHAPE(o->n, o->k), -1, 1, &j.in[1]) ||
        !(j.hx = bench_host_copy(j.in[0])) || !(j.hw = bench_host_copy(j.in[1]))) {
        bench_error("gemm %s: %s\n", shape, cnn_last_error());
        bench_job_free(&j);
        return 1;
    }
    const double flops[N_PASSES] = {2.0 * o->m * o->n * (double)o->k};
    const double bytes[N_PASSES] = {
        4.0 * ((double)o->m * o->k + (double)o->n * o->k + (double)o->m * o->n)};
    const int passes[] = {P_FWD};
    int rc = bench_run_job(o, e, l, &j, "gemm", "sgemm", shape, 1, passes, 1, flops, bytes);
    bench_job_free(&j);
    return rc;
}

/* ---- batch norm (training mode, affine) ------------------------------------------------------ */
typedef struct bn_ref {
    op_job *j;
    double *mean, *invstd;
    long hw;
    int c;
} bn_ref;

static void bn_ref_at(void *ud, long idx, double *ref, double *mag)
{
    const bn_ref *b = ud;
    int c = (int)(idx / b->hw % b->c);
    double xh = (b->j->hx[idx] - b->mean[c]) * b->invstd[c];
    *ref = xh * b->j->hw[c] + b->j->hw[b->c + c];
    *mag = fabs(xh * b->j->hw[c]) + fabs(b->j->hw[b->c + c]);
}

/* Batch statistics in double: mean and 1 / sqrt(biased var + 1e-5) per channel. */
static bool bn_stats(const op_job *j, bn_ref *b)
{
    const int c = (int)j->cs.c;
    b->mean = calloc((size_t)c, sizeof(double));
    b->invstd = calloc((size_t)c, sizeof(double));
    if (!b->mean || !b->invstd) return false;
    const long n = (long)j->cs.n * c * b->hw, m = (long)j->cs.n * b->hw;
    for (long i = 0; i < n; i++) b->mean[i / b->hw % c] += j->hx[i];
    for (int k = 0; k < c; k++) b->mean[k] /= (double)m;
    for (long i = 0; i < n; i++) {
        double d = j->hx[i] - b->mean[i / b->hw % c];
        b->invstd[i / b->hw % c] += d * d;
    }
    for (int k = 0; k < c; k++) b->invstd[k] = 1.0 / sqrt(b->invstd[k] / (double)m + 1e-5);
    return true;
}

/* Training-mode backward, per channel over its m values: dbeta = sum dy, dgamma = sum dy xh,
 * dx = gamma invstd / m (m dy - dbeta - xh dgamma); sums[4c]: dbeta, dgamma and the sums of
 * their terms' magnitudes. Outputs in job_outputs' order: dx, dgamma, dbeta. */
typedef struct bn_bwd_ref {
    bn_ref b;
    double *sums;
    int out;
} bn_bwd_ref;

static void bn_bwd_ref_at(void *ud, long idx, double *ref, double *mag)
{
    const bn_bwd_ref *r = ud;
    const op_job *j = r->b.j;
    const int C = r->b.c;
    const double *db = r->sums, *dg = r->sums + C, *adb = r->sums + 2 * C, *adg = r->sums + 3 * C;
    if (r->out > 0) { /* dgamma, dbeta: one per channel */
        *ref = r->out == 1 ? dg[idx] : db[idx];
        *mag = r->out == 1 ? adg[idx] : adb[idx];
        return;
    }
    const int c = (int)(idx / r->b.hw % C);
    const double m = (double)j->cs.n * r->b.hw, xh = (j->hx[idx] - r->b.mean[c]) * r->b.invstd[c];
    const double k = j->hw[c] * r->b.invstd[c] / m;
    *ref = k * (m * j->hdy[idx] - db[c] - xh * dg[c]);
    *mag = fabs(k) * (m * fabs(j->hdy[idx]) + adb[c] + fabs(xh) * adg[c]);
}

static int bn_naive(op_job *j, int pass, int out, const float *got, long n, double *max_err)
{
    const int c = (int)j->cs.c;
    bn_bwd_ref r = {{j, NULL, NULL, (long)j->cs.h * j->cs.w, c}, NULL, out};
    int ok = 0;
    if (!bn_stats(j, &r.b)) goto done;
    if (pass == P_FWD) {
        const char *name = bench_pass_names[pass];
        ok = bench_check(name, got, n, n, bn_ref_at, &r.b, j->rtol, 1e-5, max_err);
        goto done;
    }
    if (!j->hdy || !(r.sums = calloc(4 * (size_t)c, sizeof(double)))) goto done;
    const long total = (long)j->cs.n * c * r.b.hw;
    for (long i = 0; i < total; i++) {
        const int ch = (int)(i / r.b.hw % c);
        const double dy = j->hdy[i], xh = (j->hx[i] - r.b.mean[ch]) * r.b.invstd[ch];
        r.sums[ch] += dy;
        r.sums[c + ch] += dy * xh;
        r.sums[2 * c + ch] += fabs(dy);
        r.sums[3 * c + ch] += fabs(dy * xh);
    }
    ok = bench_check(bench_pass_names[pass], got, n, n, bn_bwd_ref_at, &r, j->rtol, 1e-5, max_err);
done:
    free(r.b.mean);
    free(r.b.invstd);
    free(r.sums);
    return ok;
}

int bench_mode_bn(const bench_opts *o, bench_env *e, bench_log *l)
{
    const int shapes[][3] = {{64, 112, 112}, {256, 56, 56}, {1024, 14, 14}};
    int rc = 0;
    bench_print_row(e, NULL);
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes && !tool_stop; i++) {
        const int n = o->batch, c = shapes[i][0], h = shapes[i][1];
        op_job j = {.fwd = fwd_bn,
                    .naive = bn_naive,
                    .n_in = 5,
                    .cs = {.n = n, .c = c, .h = h, .w = h},
                    .grad_mask = {0, 0, 0, 7},
                    .rtol = 1e-4};
        char shape[64];
        snprintf(shape, sizeof shape, "%d,%d,%d,%d", n, c, h, h);
        if (bench_rand_on(e, CNN_SHAPE(n, c, h, h), -1, 1, &j.in[0]) ||
            bench_rand_on(e, CNN_SHAPE(c), 0.5f, 1.5f, &j.in[1]) ||
            bench_rand_on(e, CNN_SHAPE(c), -1, 1, &j.in[2]) ||
            cnn_tensor_zeros(CNN_SHAPE(c), e->dev, &j.in[3]) ||
            cnn_tensor_ones(CNN_SHAPE(c), e->dev, &j.in[4]) ||
            bench_rand_on(e, CNN_SHAPE(n, c, h, h), -1, 1, &j.dy) ||
            !(j.hx = bench_host_copy(j.in[0])) || !(j.hdy = bench_host_copy(j.dy)) ||
            !(j.hw = malloc(2 * (size_t)c * sizeof(float))) ||
            cnn_tensor_read(j.in[1], j.hw, (size_t)c) ||
            cnn_tensor_read(j.in[2], j.hw + c, (size_t)c)) {
            bench_error("bn %s: %s\n", shape, cnn_last_error());
            rc = 1;
        } else {
            /* Bytes of the minimal traffic: forward reads x twice (statistics, normalise) and
             * writes y; backward reads x, dy twice and writes dx. */
            const double nb = 4.0 * n * c * (double)h * h;
            const double flops[N_PASSES] = {0}, bytes[N_PASSES] = {3 * nb, 0, 0, 5 * nb};
            const int passes[] = {P_FWD, P_BWD};
            rc |= bench_run_job(o, e, l, &j, "bn", "batch_norm", shape, 1, passes, 2, flops, bytes);
        }
        bench_job_free(&j);
    }
    return rc;
}

/* ---- pooling --------------------------------------------------------------------------------- */
static void pool_ref_at(void *ud, long idx, double *ref, double *mag)
{
    const op_job *j = ud;
    const bench_conv_shape *s = &j->cs; /* c, h, w and the window in r, stride, pad */
    const int P = out_size(s->h, s->r, s->stride, s->pad),
              Q = out_size(s->w, s->r, s->stride, s->pad);
    int q = (int)(idx % Q), p = (int)(idx / Q % P);
    long plane = idx / ((long)P * Q);
    double best = -INFINITY, sum = 0;
    for (int r = 0; r < s->r; r++)
        for (int u = 0; u < s->r; u++) {
            int hh = p * s->stride - s->pad + r, ww = q * s->stride - s->pad + u;
            if (hh < 0 || hh >= s->h || ww < 0 || ww >= s->w) continue;
            double v = j->hx[(plane * s->h + hh) * s->w + ww];
            best = fmax(best, v);
            sum += v;
        }
    *ref = j->avg ? sum / (s->r * s->r) : best; /* count_include_pad, PyTorch's default */
    *mag = fabs(*ref) + 1;
}

/* dx at input idx, gathered: the outputs whose windows hold it; for max pooling only those
 * whose maximum it is (the first in the window's order, as PyTorch), each giving its dy; for
 * average pooling every one, dy / window size. */
static void pool_bwd_ref_at(void *ud, long idx, double *ref, double *mag)
{
    const op_job *j = ud;
    const bench_conv_shape *s = &j->cs;
    const int P = out_size(s->h, s->r, s->stride, s->pad),
              Q = out_size(s->w, s->r, s->stride, s->pad);
    const int w = (int)(idx % s->w), h = (int)(idx / s->w % s->h);
    const long plane = idx / ((long)s->h * s->w);
    double acc = 0, m = 0;
    for (int p = 0; p < P; p++) {
        const int h0 = p * s->stride - s->pad;
        if (h < h0 || h >= h0 + s->r) continue;
        for (int q = 0; q < Q; q++) {
            const int w0 = q * s->stride - s->pad;
            if (w < w0 || w >= w0 + s->r) continue;
            const double dy = j->hdy[(plane * P + p) * Q + q];
            if (!j->avg) {
                long best = -1;
                for (int r = 0; r < s->r; r++)
                    for (int u = 0; u < s->r; u++) {
                        const int hh = h0 + r, ww = w0 + u;
                        if (hh < 0 || hh >= s->h || ww < 0 || ww >= s->w) continue;
                        const long at = (plane * s->h + hh) * s->w + ww;
                        if (best < 0 || j->hx[at] > j->hx[best]) best = at;
                    }
                if (best != idx) continue;
                acc += dy;
            } else {
                acc += dy / (s->r * s->r); /* count_include_pad */
            }
            m += fabs(dy);
        }
    }
    *ref = acc;
    *mag = m + 1e-30;
}

static int pool_naive(op_job *j, int pass, int out, const float *got, long n, double *max_err)
{
    (void)out; /* one output per pass */
    const char *name = bench_pass_names[pass];
    if (pass == P_FWD) return bench_check(name, got, n, n, pool_ref_at, j, 1e-6, 1e-6, max_err);
    return j->hdy ? bench_check(name, got, n, 4096, pool_bwd_ref_at, j, 1e-6, 1e-7, max_err) : 0;
}

int bench_mode_pool(const bench_opts *o, bench_env *e, bench_log *l)
{
    /* ResNet's stem max-pool, VGG's 2x2 max-pool, and a 2x2 average pool. */
    const struct {
        int c, h, k, stride, pad;
        bool avg;
        const char *name;
    } cases[] = {{64, 112, 3, 2, 1, false, "max_pool"},
                 {128, 112, 2, 2, 0, false, "max_pool"},
                 {256, 56, 2, 2, 0, true, "avg_pool"}};
    int rc = 0;
    bench_print_row(e, NULL);
    for (size_t i = 0; i < sizeof cases / sizeof *cases && !tool_stop; i++) {
        const int n = o->batch, c = cases[i].c, h = cases[i].h, k = cases[i].k;
        const int P = out_size(h, k, cases[i].stride, cases[i].pad);
        op_job j = {.fwd = fwd_pool,
                    .naive = pool_naive,
                    .n_in = 1,
                    .avg = cases[i].avg,
                    .cs = {.n = n,
                           .c = c,
                           .h = h,
                           .w = h,
                           .r = k,
                           .stride = cases[i].stride,
                           .pad = cases[i].pad},
                    .pp = {.kernel = {k, k},
                           .stride = {cases[i].stride, cases[i].stride},
                           .padding = {cases[i].pad, cases[i].pad}},
                    .grad_mask = {0, 0, 0, 1},
                    .rtol = 1e-5};
        char shape[64];
        snprintf(shape, sizeof shape, "%d,%d,%d,%d,k%d,s%d,p%d", n, c, h, h, k, cases[i].stride,
                 cases[i].pad);
        if (bench_rand_on(e, CNN_SHAPE(n, c, h, h), -1, 1, &j.in[0]) ||
            bench_rand_on(e, CNN_SHAPE(n, c, P, P), -1, 1, &j.dy) ||
            !(j.hx = bench_host_copy(j.in[0])) || !(j.hdy = bench_host_copy(j.dy))) {
            bench_error("pool %s: %s\n", shape, cnn_last_error());
            rc = 1;
        } else {
            const double bx = 4.0 * n * c * (double)h * h, by = 4.0 * n * c * (double)P * P;
            const double flops[N_PASSES] = {0}, bytes[N_PASSES] = {bx + by, 0, 0, bx + by};
            const int passes[] = {P_FWD, P_BWD};
            rc |= bench_run_job(o, e, l, &j, "pool", cases[i].name, shape, 1, passes, 2, flops,
                                bytes);
        }
        bench_job_free(&j);
    }
    return rc;
}

/* ---- elementwise: relu (forward, backward) and add ------------------------------------------- */
typedef struct ew_ref {
    const op_job *j;
    const float *hb;
} ew_ref;

static void ew_ref_at(void *ud, long idx, double *ref, double *mag)
{
    const ew_ref *w = ud;
    const op_job *j = w->j;
    if (j->add)
        *ref = (double)j->hx[idx] + w->hb[idx];
    else if (j->pass == P_FWD)
        *ref = j->hx[idx] > 0 ? j->hx[idx] : 0;
    else
        *ref = j->hx[idx] > 0 ? j->hdy[idx] : 0;
    *mag = fabs(*ref) + 1;
}

static int ew_naive(op_job *j, int pass, int out, const float *got, long n, double *max_err)
{
    (void)out; /* one output per pass */
    ew_ref w = {j, j->hw};
    return bench_check(bench_pass_names[pass], got, n, n, ew_ref_at, &w, 1e-6, 1e-7, max_err);
}

int bench_mode_elementwise(const bench_opts *o, bench_env *e, bench_log *l)
{
    /* A ResNet stage-1 activation: (N, 256, 56, 56). */
    const int n = o->batch;
    const double ne = (double)n * 256 * 56 * 56, nb = 4 * ne;
    int rc = 0;
    bench_print_row(e, NULL);
    char shape[64];
    snprintf(shape, sizeof shape, "%d,256,56,56", n);
    for (int add = 0; add < 2 && !tool_stop; add++) {
        op_job j = {.fwd = fwd_ew,
                    .naive = ew_naive,
                    .n_in = add ? 2 : 1,
                    .add = add,
                    .grad_mask = {0, 0, 0, 1}};
        if (bench_rand_on(e, CNN_SHAPE(n, 256, 56, 56), -1, 1, &j.in[0]) ||
            (add && bench_rand_on(e, CNN_SHAPE(n, 256, 56, 56), -1, 1, &j.in[1])) ||
            bench_rand_on(e, CNN_SHAPE(n, 256, 56, 56), -1, 1, &j.dy) ||
            !(j.hx = bench_host_copy(j.in[0])) || (add && !(j.hw = bench_host_copy(j.in[1]))) ||
            !(j.hdy = bench_host_copy(j.dy))) {
            bench_error("elementwise %s: %s\n", shape, cnn_last_error());
            rc = 1;
        } else {
            const double flops[N_PASSES] = {0};
            const double bytes[N_PASSES] = {add ? 3 * nb : 2 * nb, 0, 0, 3 * nb};
            const int passes[] = {P_FWD, P_BWD};
            rc |= bench_run_job(o, e, l, &j, "elementwise", add ? "add" : "relu", shape, 1, passes,
                          add ? 1 : 2, flops, bytes);
        }
        bench_job_free(&j);
    }
    return rc;
}
