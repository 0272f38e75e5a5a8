/* timer.c — cnn_timer: elapsed time of work queued on a context, from CUDA events on the
 * context's stream (cuda/device.c) or from the host clock on a CPU context. It measures only;
 * it never synchronises anything but its own stop point. */
#include "internal.h"

#if CNN_WITH_CUDA
#include "../cuda/cuda_api.h"
#endif

#include <time.h>

struct cnn_timer {
    cnn_device device;
    void *events;         /* the CUDA events (cuda/device.c), NULL on the CPU */
    double t0, t1;        /* host clock, milliseconds */
    bool started, stopped;
};

double cnn_monotonic_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

cnn_status cnn_timer_create(cnn_timer **out)
{
    CNN_CHECK(out, CNN_ERR_INVALID_ARG, "timer_create: out is NULL");
    *out = NULL;
    cnn_timer *t = calloc(1, sizeof *t);
    if (!t) return cnn_error(CNN_ERR_OUT_OF_MEMORY, "timer_create: out of host memory");
    cnn_context *ctx = cnn_ctx();
    t->device = ctx->device;
#if CNN_WITH_CUDA
    if (ctx->device.type == CNN_DEVICE_CUDA) {
        cnn_status st = cnn_cuda_timer_create(ctx, &t->events);
        if (st != CNN_OK) {
            free(t);
            return st;
        }
    }
#endif
    *out = t;
    return CNN_OK;
}

void cnn_timer_destroy(cnn_timer **tp)
{
    if (!tp || !*tp) return;
#if CNN_WITH_CUDA
    cnn_cuda_timer_destroy((*tp)->events);
#endif
    free(*tp);
    *tp = NULL;
}

/* Records one end of the interval: a CUDA event on the current stream, or the host clock. */
static cnn_status mark(cnn_timer *t, bool stop, const char *op)
{
    CNN_CHECK(t, CNN_ERR_INVALID_ARG, "%s: timer is NULL", op);
    cnn_context *ctx = cnn_ctx();
    CNN_CHECK(ctx->device.type == t->device.type && ctx->device.index == t->device.index,
              CNN_ERR_DEVICE, "%s: the timer is for %s:%d but the current context is on %s:%d", op,
              t->device.type == CNN_DEVICE_CUDA ? "cuda" : "cpu", t->device.index,
              ctx->device.type == CNN_DEVICE_CUDA ? "cuda" : "cpu", ctx->device.index);
#if CNN_WITH_CUDA
    if (t->events) CNN_TRY(cnn_cuda_timer_record(ctx, t->events, stop));
#endif
    if (!t->events) *(stop ? &t->t1 : &t->t0) = 1e3 * cnn_monotonic_s();
    if (stop) {
        t->stopped = t->started;
    } else {
        t->started = true;
        t->stopped = false;
    }
    return CNN_OK;
}

cnn_status cnn_timer_start(cnn_timer *t) { return mark(t, false, "timer_start"); }
cnn_status cnn_timer_stop(cnn_timer *t) { return mark(t, true, "timer_stop"); }

cnn_status cnn_timer_elapsed_ms(cnn_timer *t, double *ms)
{
    CNN_CHECK(t && ms, CNN_ERR_INVALID_ARG, "timer_elapsed_ms: NULL argument");
    CNN_CHECK(t->started && t->stopped, CNN_ERR_INVALID_ARG,
              "timer_elapsed_ms: the timer was not started and then stopped");
#if CNN_WITH_CUDA
    if (t->events) return cnn_cuda_timer_elapsed(t->events, ms);
#endif
    *ms = t->t1 - t->t0;
    return CNN_OK;
}
