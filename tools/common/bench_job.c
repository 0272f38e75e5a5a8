/* bench_job.c — one op of cnnbench's kernel modes, run as a job (bench_job.h): the timed
 * callbacks of each pass, the check of its outputs before timing (direct loops, or the CPU
 * library on copies of the inputs), and the timed rows it adds to the table. No op here. */
#include "bench_job.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *const bench_pass_names[N_PASSES] = {"fwd", "bwd_data", "bwd_filter", "bwd"};

/* ---- timed callbacks ------------------------------------------------------------------------- */
/* Backward passes need a recorded forward first (untimed); which inputs require grad picks
 * the pass (x alone: backward-data, w alone: backward-filter). */
static int job_setup(void *ud)
{
    op_job *j = ud;
    if (j->pass == P_FWD) return 0;
    return j->fwd(j, j->in, &j->y) != CNN_OK;
}

static int job_run(void *ud)
{
    op_job *j = ud;
    cnn_status st;
    if (j->pass == P_FWD) {
        bool was = cnn_set_grad_enabled(false);
        st = j->fwd(j, j->in, &j->y);
        cnn_set_grad_enabled(was);
    } else {
        st = cnn_backward_with_grad(j->y, j->dy);
    }
    if (st != CNN_OK)
        bench_error("%s: %s\n", bench_pass_names[j->pass], cnn_last_error());
    return st != CNN_OK;
}

static int job_teardown(void *ud)
{
    op_job *j = ud;
    cnn_tensor_free(&j->y);
    for (int i = 0; i < j->n_in; i++) cnn_tensor_zero_grad(j->in[i]);
    cnn_tape_reset();
    return 0;
}

static void job_set_grads(op_job *j, int pass)
{
    j->pass = pass;
    for (int i = 0; i < j->n_in; i++)
        cnn_tensor_set_requires_grad(j->in[i], (j->grad_mask[pass] >> i) & 1);
}

void bench_job_free(op_job *j)
{
    for (int i = 0; i < 5; i++) cnn_tensor_free(&j->in[i]);
    cnn_tensor_free(&j->dy);
    cnn_tensor_free(&j->y);
    free(j->hx);
    free(j->hw);
    free(j->hdy);
    cnn_tape_reset();
}

/* The pass's outputs: y for the forward, the gradients of the inputs that need one. */
static int job_outputs(op_job *j, cnn_tensor **out, int max)
{
    if (j->pass == P_FWD) {
        out[0] = j->y;
        return 1;
    }
    int n = 0;
    for (int i = 0; i < j->n_in && n < max; i++)
        if ((j->grad_mask[j->pass] >> i) & 1) out[n++] = cnn_tensor_grad(j->in[i]);
    return n;
}

/* Runs the pass once untimed and checks its outputs: direct loops where the op has them,
 * else (GPU) the same pass through the CPU library on copies of the inputs, else n/a. */
static void job_check(op_job *j, const bench_env *e, bench_result *r)
{
    cnn_tensor *outs[5], *refs[5] = {0};
    bool ok = false;
    double err = INFINITY;
    op_job c = *j;
    memset(c.in, 0, sizeof c.in);
    c.dy = c.y = NULL;
    c.hx = c.hw = c.hdy = NULL;
    if (job_setup(j) || job_run(j)) goto done;
    int n = job_outputs(j, outs, 5);
    ok = true;
    err = 0;
    for (int i = 0; i < n && ok; i++) {
        float *got = outs[i] ? bench_host_copy(outs[i]) : NULL;
        double e1 = INFINITY;
        int v =
            got && j->naive ? j->naive(j, j->pass, i, got, (long)cnn_tensor_numel(outs[i]), &e1)
                             : -1;
        free(got);
        if (!outs[i]) v = 0;
        if (v < 0 && !e->gpu) {
            snprintf(r->check, sizeof r->check, "n/a");
            job_teardown(j);
            return;
        }
        if (v < 0) {
            /* Reference: the CPU library (gradient-checked) on the same input values. */
            if (!c.in[0]) {
                for (int k = 0; k < j->n_in; k++)
                    if (cnn_tensor_to(j->in[k], CNN_CPU, &c.in[k])) goto done;
                if (j->dy && cnn_tensor_to(j->dy, CNN_CPU, &c.dy)) goto done;
                job_set_grads(&c, j->pass);
                if (job_setup(&c) || job_run(&c)) goto done;
                job_outputs(&c, refs, 5);
            }
            v = refs[i] && bench_check_tensors(bench_pass_names[j->pass], outs[i], refs[i],
                                               j->rtol * 50, j->rtol * 5, &e1);
        }
        ok = ok && v;
        err = fmax(err, e1);
    }
done:
    bench_set_check(r, ok, err);
    job_teardown(j);
    if (c.in[0]) job_teardown(&c);
    for (int i = 0; i < 5; i++) cnn_tensor_free(&c.in[i]);
    cnn_tensor_free(&c.dy);
}

int bench_run_job(const bench_opts *o, bench_env *e, bench_log *l, op_job *j, const char *mode,
            const char *name, const char *shape, int count, const int *passes, int np,
            const double *flops, const double *bytes)
{
    int rc = 0;
    for (int i = 0; i < np && !tool_stop; i++) {
        int p = passes[i];
        bench_result *r = bench_log_add(l);
        if (!r) return 1;
        snprintf(r->mode, sizeof r->mode, "%s", mode);
        snprintf(r->backend, sizeof r->backend, "%s", e->backend);
        snprintf(r->name, sizeof r->name, "%s", name);
        snprintf(r->shape, sizeof r->shape, "%s", shape);
        snprintf(r->pass, sizeof r->pass, "%s", bench_pass_names[p]);
        r->count = count;
        job_set_grads(j, p);
        job_check(j, e, r);
        if (strcmp(r->check, "ok") && strcmp(r->check, "n/a")) rc = 1;
        if (bench_time(e, o->warmup, o->iters, job_setup, job_run, job_teardown, j, &r->t)) {
            if (!tool_stop)
                bench_error("%s %s %s %s failed: %s\n", mode, name, shape,
                        bench_pass_names[p], cnn_last_error());
            job_teardown(j);
            l->n--;
            rc = 1;
            continue;
        }
        r->gflops = flops[p] / (r->t.median * 1e6);
        r->gbs = bytes[p] / (r->t.median * 1e6);
        if (!strcmp(mode, "conv") && e->gpu) {
            /* What the timed runs used: cuDNN's cached choice for this key (passes 0, 1, 2 are
             * the API's), or none cached: the hand-written kernels ran. */
            const char *a = strcmp(e->backend, "cudnn")
                                ? NULL
                                : cnn_conv2d_cudnn_algo(j->in[0], j->in[1], &j->cp, p);
            snprintf(r->algo, sizeof r->algo, "%s", a ? a : "hand-written");
        }
        bench_print_row(e, r);
    }
    return rc;
}

int bench_rand_on(const bench_env *e, cnn_shape s, float lo, float hi, cnn_tensor **out)
{
    cnn_tensor *t = NULL;
    if (cnn_tensor_uniform(s, lo, hi, CNN_CPU, &t)) return -1;
    if (!e->gpu) return *out = t, 0;
    cnn_status st = cnn_tensor_to(t, e->dev, out);
    cnn_tensor_free(&t);
    return st != CNN_OK;
}
