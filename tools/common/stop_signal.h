/* stop_signal.h — Ctrl-C / SIGTERM for the tools: the first signal asks the work to stop at its
 * next safe point; another one, a second or more later, ends the process at once. */
#ifndef CNN_TOOLS_STOP_SIGNAL_H
#define CNN_TOOLS_STOP_SIGNAL_H

#include <signal.h>
#include <stdatomic.h>

/* Set (to 1) by the first stop signal, in whichever thread handles it. */
extern atomic_int tool_stop;

/* Catches SIGINT and SIGTERM. */
void tool_catch_stop_signals(void);

#endif
