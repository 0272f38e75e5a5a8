/* progress.c — progress bar / periodic progress lines for the training tool (see progress.h).
 * Only formatting and timing: it knows nothing of models or data. */
#include "progress.h"

#include <stdio.h>
#include <string.h>
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

void tr_progress_update(tr_progress *p, int64_t done, double loss, double acc)
{
    double t = tr_now_s(), el = t - p->t0;
    double frac = (double)done / (double)p->total;
    if (frac > 1) frac = 1;
    double ips = el > 0 ? (done - p->already) / el : 0;
    char eta[32];
    format_eta(ips > 0 ? (p->total - done) / ips : 0, eta, sizeof eta);
    if (p->tty) {
        if (done < p->total && t - p->last_draw < 0.1) return;
        p->last_draw = t;
        char bar[BAR_WIDTH + 1];
        int fill = (int)(frac * BAR_WIDTH);
        for (int i = 0; i < BAR_WIDTH; i++) bar[i] = i < fill ? '#' : '.';
        bar[BAR_WIDTH] = 0;
        printf("\r%s [%s] %3d%% %7.0f img/s  loss %.4f  acc %6.2f%%  ETA %s \033[K", p->label, bar,
               (int)(frac * 100), ips, loss, 100 * acc, eta);
        fflush(stdout);
        return;
    }
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
