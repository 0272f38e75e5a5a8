/* stop_signal.c — the tools' stop signals (stop_signal.h). Signals within a second of the first
 * count as that one: `timeout` sends its signal to the command and then to the command's process
 * group, so a timed-out command gets it twice, and a one-shot handler would let the second kill
 * it before it saved its work. Only async-signal-safe calls in the handler. A signal sent to the
 * process is handled by any one of its threads (the loader's workers, OpenMP's, OpenBLAS'), and
 * sa_mask blocks it only in the thread already in the handler: two handlers may run at once, so
 * their state is lock-free atomics (which handlers may use). */
#include "stop_signal.h"

#include <string.h>
#include <time.h>

atomic_int tool_stop;
static atomic_llong g_first_ns; /* when the first stop signal came (CLOCK_MONOTONIC); 0: none */

static void on_stop(int sig)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long long ns = (long long)now.tv_sec * 1000000000 + now.tv_nsec, first = 0;
    if (atomic_compare_exchange_strong(&g_first_ns, &first, ns)) {
        tool_stop = 1;
        return;
    }
    if (ns - first < 1000000000) return;
    signal(sig, SIG_DFL);
    raise(sig);
}

void tool_catch_stop_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    /* The work stops at its own next check, so a call the signal lands in goes on: without
     * SA_RESTART a write to a pipe (stdout through `tee`) could fail with EINTR and lose
     * output, and a read of a file on a network filesystem count as a bad image. */
    sa.sa_flags = SA_RESTART;
    /* One handler at a time per thread (other threads may still take one: see above). */
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGINT);
    sigaddset(&sa.sa_mask, SIGTERM);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}
