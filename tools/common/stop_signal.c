/* stop_signal.c — the tools' stop signals (stop_signal.h). Signals within a second of the first
 * count as that one: `timeout` sends its signal to the command and then to the command's process
 * group, so a timed-out command gets it twice, and a one-shot handler would let the second kill
 * it before it saved its work. Only async-signal-safe calls in the handler. */
#include "stop_signal.h"

#include <string.h>
#include <time.h>

volatile sig_atomic_t tool_stop;
static struct timespec g_first; /* when the first stop signal came */

static void on_stop(int sig)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (!tool_stop) {
        g_first = now;
        tool_stop = 1;
        return;
    }
    const double since = (double)(now.tv_sec - g_first.tv_sec) +
                         1e-9 * (double)(now.tv_nsec - g_first.tv_nsec);
    if (since < 1.0) return;
    signal(sig, SIG_DFL);
    raise(sig);
}

void tool_catch_stop_signals(int term)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    /* One handler at a time: g_first is written by the first only. */
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGINT);
    sigaddset(&sa.sa_mask, SIGTERM);
    sigaction(SIGINT, &sa, NULL);
    if (term) sigaction(SIGTERM, &sa, NULL);
}
