/* bench_graph.c — cnnbench --graph: a step captured once into a CUDA graph (cnn_graph_capture)
 * and timed as replays, after one replay's result was checked against the same step computed
 * op by op. Times what bench_time times (CUDA events around each repeat, caches flushed). */
#include "bench_common.h"

#include <stdio.h>
#include <stdlib.h>

static int replay_run(void *ud) { return cnn_graph_replay(ud) != CNN_OK; }

int bench_time_graph(const bench_env *e, int warmup, int iters, const bench_graph_job *g,
                     const char **check_out, double *err, bench_stats *st)
{
    cnn_graph *graph = NULL;
    cnn_tensor *want = NULL;
    int rc = 1;
    /* The warm-up a capture needs: cuDNN's searches, the optimizer's state, helper buffers. */
    cnn_status s = g->step(g->ud);
    if (s == CNN_OK) s = cnn_graph_capture(g->step, g->ud, &graph);
    /* The replay draws (dropout masks) from where the reference drew. */
    uint64_t seed, offset;
    cnn_rng_get_state(&seed, &offset);
    if (s == CNN_OK) s = g->reference(g->ud, &want);
    cnn_rng_set_state(seed, offset);
    if (s == CNN_OK) s = cnn_graph_replay(graph);
    if (s != CNN_OK) {
        bench_error("--graph: %s\n", cnn_last_error());
        goto done;
    }
    *check_out = bench_check_tensors(g->check, *g->result, want, 1e-4, 1e-4, err) ? "ok"
                                                                                  : "mismatch";
    rc = bench_time(e, warmup, iters, NULL, replay_run, NULL, graph, st);
done:
    cnn_tensor_free(&want);
    cnn_graph_destroy(&graph);
    return rc;
}
