/* test_timer.c — cnn_timer: host time on the CPU; on the GPU, CUDA events around the work
 * queued on the context's stream, and an elapsed time that waits for that work (the emulator's
 * CNN_EMU_LAGGING_EVENTS device, always behind, shows a missing wait). */
#include "gradcheck.h"

#include <stdlib.h>
#include <time.h>

TEST(timer_on_the_cpu_measures_host_time)
{
    cnn_timer *t = NULL;
    double ms = -1;
    CHECK_OK(cnn_timer_create(&t));
    CHECK_ERR(cnn_timer_elapsed_ms(t, &ms), CNN_ERR_INVALID_ARG); /* never started */
    CHECK_OK(cnn_timer_start(t));
    CHECK_ERR(cnn_timer_elapsed_ms(t, &ms), CNN_ERR_INVALID_ARG); /* not stopped */
    struct timespec nap = {0, 20 * 1000 * 1000};
    nanosleep(&nap, NULL);
    CHECK_OK(cnn_timer_stop(t));
    CHECK_OK(cnn_timer_elapsed_ms(t, &ms));
    CHECK(ms >= 19.0 && ms < 2000.0);
    /* Started again: not stopped since, so no interval (not the stop before minus the start). */
    CHECK_OK(cnn_timer_start(t));
    CHECK_ERR(cnn_timer_elapsed_ms(t, &ms), CNN_ERR_INVALID_ARG);
    CHECK_ERR(cnn_timer_elapsed_ms(NULL, &ms), CNN_ERR_INVALID_ARG);
    CHECK_ERR(cnn_timer_elapsed_ms(t, NULL), CNN_ERR_INVALID_ARG);
    CHECK_ERR(cnn_timer_start(NULL), CNN_ERR_INVALID_ARG);
    cnn_timer_destroy(&t);
    CHECK(t == NULL);
    cnn_timer_destroy(&t); /* NULL-safe */
}

GPU_TEST(cuda_timer_measures_queued_work_on_the_stream)
{
    cnn_timer *t = NULL;
    cnn_tensor *x = NULL;
    double empty = -1, busy = -1;
    CHECK_OK(cnn_timer_create(&t));
    CHECK_OK(cnn_tensor_empty(CNN_SHAPE(64 << 20), CNN_F32, CNN_CUDA(0), &x));
    CHECK_OK(cnn_synchronize());
    CHECK_OK(cnn_timer_start(t));
    CHECK_OK(cnn_timer_stop(t));
    CHECK_OK(cnn_timer_elapsed_ms(t, &empty));
    CHECK_OK(cnn_timer_start(t));
    for (int i = 0; i < 20; i++) CHECK_OK(cnn_tensor_fill_(x, (float)i));
    CHECK_OK(cnn_timer_stop(t));
    CHECK_OK(cnn_timer_elapsed_ms(t, &busy)); /* waits for the stop event */
    printf("  empty interval %.4f ms, 20 fills of 256 MiB %.3f ms\n", empty, busy);
    CHECK(empty >= 0 && empty < 1.0);
    CHECK(busy > empty);
    float last = 0;
    cnn_tensor *one = NULL;
    CHECK_OK(cnn_tensor_narrow(x, 0, 0, 1, &one));
    CHECK_OK(cnn_tensor_read(one, &last, 1));
    CHECK(last == 19.0f);
    /* Under a CPU context the CUDA timer refuses rather than mixing clocks. */
    cnn_context *gpu = cnn_context_current();
    cnn_context_set_current(NULL);
    CHECK_ERR(cnn_timer_start(t), CNN_ERR_DEVICE);
    cnn_context_set_current(gpu);
    cnn_tensor_free(&one);
    cnn_tensor_free(&x);
    cnn_timer_destroy(&t);
}

/* The elapsed time waits for the stop event: on a device that is always behind (the emulator's
 * CNN_EMU_LAGGING_EVENTS, where an event completes only once it, its stream or the device is
 * waited for) it is still given, where CUDA would answer "not ready" to an unwaited stop. */
GPU_TEST(cuda_timer_waits_for_its_stop_event)
{
    if (!emulated_gpu()) {
        cnn_test_skip("needs the CUDA emulator's CNN_EMU_LAGGING_EVENTS");
        return;
    }
    cnn_timer *t = NULL;
    cnn_tensor *x = NULL;
    double ms = -1;
    CHECK_OK(cnn_timer_create(&t));
    CHECK_OK(cnn_tensor_empty(CNN_SHAPE(1024), CNN_F32, CNN_CUDA(0), &x));
    setenv("CNN_EMU_LAGGING_EVENTS", "1", 1);
    CHECK_OK(cnn_timer_start(t));
    CHECK_OK(cnn_tensor_fill_(x, 1.0f));
    CHECK_OK(cnn_timer_stop(t));
    cnn_status st = cnn_timer_elapsed_ms(t, &ms);
    unsetenv("CNN_EMU_LAGGING_EVENTS");
    CHECK(st == CNN_OK && ms >= 0);
    if (st != CNN_OK) printf("  %s\n", cnn_last_error());
    cnn_tensor_free(&x);
    cnn_timer_destroy(&t);
}
