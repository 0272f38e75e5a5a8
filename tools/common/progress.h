/* progress.h — the per-epoch progress display of the training tool: a bar redrawn in place on a
 * terminal, plain lines at every tenth of the epoch otherwise (logs, pipes). Prints to stdout. */
#ifndef TR_PROGRESS_H
#define TR_PROGRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct tr_progress {
    char label[32];
    bool tty;
    int64_t total, already;
    int next_tenth;
    double t0, last_draw;
} tr_progress;

/* Starts an epoch of `total` images of which `already` were done before (a resumed epoch);
 * label e.g. "epoch 3/10". */
void tr_progress_start(tr_progress *p, const char *label, int64_t total, int64_t already);
/* `done` images so far, with the running mean loss and accuracy (0..1). */
void tr_progress_update(tr_progress *p, int64_t done, double loss, double acc);
/* The bar's line for a terminal `cols` columns wide (no "\r"): label, bar, percentage, speed,
 * loss, accuracy and ETA in at most cols - 1 characters (the bar shortened to 8, then the
 * speed dropped, then the end cut to fit), so that a redraw in place never wraps. */
void tr_progress_bar_line(const tr_progress *p, int64_t done, double loss, double acc, int cols,
                          char *buf, size_t n);
/* Clears the bar (terminal) so that the epoch summary starts on a clean line. */
void tr_progress_end(tr_progress *p);

/* Seconds on a monotonic clock (for intervals). */
double tr_now_s(void);

#endif /* TR_PROGRESS_H */
