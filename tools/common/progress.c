/* progress.c — progress bar / periodic progress lines for the training tool (see progress.h).
 * Only formatting and timing: it knows nothing of models or data. */
#include "progress.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define BAR_WIDTH 24

double tr_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

void tr_progress_start(tr_progress *p, const char *label, int64_t total, int64_t already)
{
    memset(p, 0, sizeof *p);
    snprintf(p->label, sizeof p->label, "%s", label);
    p->tty = isatty(STDOUT_FILENO);
    p->total = total > 0 ? total : 1;
    p->already = already;
    p->next_tenth = (int)(already * 10 / p->total) + 1;
    p->t0 = tr_now_s();
}

static void format_eta(double s, char *buf, size_t n)
{
    int t = (int)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, n, "%d:%02d:%02d", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(buf, n, "%d:%02d", t / 60, t % 60);
}

/* The fraction of the epoch done, the images per second of this invocation and the ETA. */
static double rates(const tr_progress *p, int64_t done, double t, double *ips, char *eta,
                    size_t n)
{
    double el = t - p->t0, frac = (double)done / (double)p->total;
    *ips = el > 0 ? (done - p->already) / el : 0;
    format_eta(*ips > 0 ? (p->total - done) / *ips : 0, eta, n);
    return frac > 1 ? 1 : frac;
}

void tr_progress_bar_line(const tr_progress *p, int64_t done, double loss, double acc, int cols,
                          char *buf, size_t n)
{
    double ips;
    char eta[32], speed[32], tail[96];
    double frac = rates(p, done, tr_now_s(), &ips, eta, sizeof eta);
    snprintf(speed, sizeof speed, " %.0f img/s", ips);
    snprintf(tail, sizeof tail, "  loss %.4f  acc %6.2f%%  ETA %s", loss, 100 * acc, eta);
    /* The line must fit one row less one column: a wrapped line leaves a row behind at each
     * redraw. The bar shrinks first (to 8), then the speed goes, then the end is cut: at 80
     * columns everything shows for a label like "epoch 3/12" (not for "epoch 123/1000" with
     * an ETA in hours). */
    int room = (cols > 1 ? cols : 80) - 1;
    int fixed = (int)(strlen(p->label) + strlen(" [] 100%") + strlen(tail));
    bool with_speed = fixed + 8 + (int)strlen(speed) <= room;
    int width = room - fixed - (with_speed ? (int)strlen(speed) : 0);
    width = width > BAR_WIDTH ? BAR_WIDTH : width < 8 ? 8 : width;
    char bar[BAR_WIDTH + 1];
    int fill = (int)(frac * width);
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
    bar[width] = 0;
    snprintf(buf, n, "%s [%s] %3d%%%s%s", p->label, bar, (int)(frac * 100),
             with_speed ? speed : "", tail);
    if (strlen(buf) > (size_t)room) buf[room] = 0;
}

/* The terminal's width in columns: the window's, else $COLUMNS, else 80. */
static int terminal_cols(void)
{
    struct winsize ws;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
    const char *c = getenv("COLUMNS");
    int v = c ? atoi(c) : 0;
    return v > 0 ? v : 80;
}

void tr_progress_update(tr_progress *p, int64_t done, double loss, double acc)
{
    double t = tr_now_s(), ips;
    if (p->tty) {
        if (done < p->total && t - p->last_draw < 0.1) return;
        p->last_draw = t;
        char line[256];
        tr_progress_bar_line(p, done, loss, acc, terminal_cols(), line, sizeof line);
        printf("\r%s\033[K", line);
        fflush(stdout);
        return;
    }
    char eta[32];
    double frac = rates(p, done, t, &ips, eta, sizeof eta);
    int tenth = (int)(frac * 10 + 1e-9);
    if (tenth >= p->next_tenth) {
        if (tenth < 10)
            printf("%s %3d%% %6lld/%lld  %7.0f img/s  loss %.4f  acc %6.2f%%  ETA %s\n", p->label,
                   tenth * 10, (long long)done, (long long)p->total, ips, loss, 100 * acc, eta);
        p->next_tenth = tenth + 1;
    }
    fflush(stdout);
}

void tr_progress_end(tr_progress *p)
{
    if (p->tty) {
        printf("\r\033[K");
        fflush(stdout);
    }
}
