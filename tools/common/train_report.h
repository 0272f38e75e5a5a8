/* train_report.h — what the training tool measures and reports: validation statistics (loss,
 * top-1/top-5, confusion matrix, per-class precision/recall/F1), the per-epoch history with its
 * CSV and PNG renderings. Tool code: prints to the FILE it is given, never exits. */
#ifndef TR_REPORT_H
#define TR_REPORT_H

#include "cnncuda.h"

#include <stdio.h>

/* Accumulates predictions of one pass over a split. */
typedef struct tr_eval {
    int k;              /* classes */
    int64_t *confusion; /* k * k counts, [true * k + predicted] */
    int64_t n, top1, top5;
    double loss_sum; /* sum over samples of the per-sample loss */
} tr_eval;

/* false when out of memory. */
bool tr_eval_init(tr_eval *e, int num_classes);
void tr_eval_free(tr_eval *e);
/* logits: (b, k) row-major; labels: b; loss_mean: the batch's mean loss. */
void tr_eval_add(tr_eval *e, const float *logits, const int64_t *labels, int64_t b,
                 double loss_mean);
double tr_eval_loss(const tr_eval *e);
double tr_eval_top1(const tr_eval *e);
double tr_eval_top5(const tr_eval *e);
/* Prints UTF-8 text s in a column `width` terminal columns wide (a CJK character takes two),
 * padded with spaces; cut: cut at the last whole character that fits, else printed whole. */
void tr_print_cell(FILE *f, const char *s, int width, bool cut);
/* Per-class precision/recall/F1 table, then the confusion matrix: printed up to 20 classes,
 * and above when csv (the file this evaluation's matrix was written to) is NULL, else named.
 * names(i) gives class i's name. */
void tr_eval_print_report(const tr_eval *e, const char *(*names)(const void *, int),
                          const void *ctx, const char *csv, FILE *f);
/* The confusion matrix as CSV (header row of class names); false with errno set on failure. */
bool tr_eval_write_confusion_csv(const tr_eval *e, const char *(*names)(const void *, int),
                                 const void *ctx, const char *path);

/* Lists the samples a loader skipped as undecodable (nothing when there is none). */
void tr_print_bad_samples(const cnn_loader *l, const char *split, FILE *f);
/* One line on the loader's workers (`workers` as the loader was made with; 0: the training
 * loop decoded itself): images decoded, img/s per worker while decoding, bad samples, and where
 * batches went (to_gpu: copied ahead from pinned memory). */
void tr_print_data_stats(cnn_loader *l, int workers, bool to_gpu, FILE *f);

/* One epoch's row of metrics.csv. */
typedef struct tr_epoch_row {
    int epoch; /* 1-based */
    double train_loss, train_acc, val_loss, val_top1, val_top5, lr, seconds, data_wait;
} tr_epoch_row;
typedef struct tr_history {
    tr_epoch_row *rows;
    int n, cap;
} tr_history;

bool tr_history_add(tr_history *h, const tr_epoch_row *r);
void tr_history_free(tr_history *h);
/* The history as one string (rows separated by ';'), for checkpoint metadata; malloc'd, NULL
 * when out of memory. */
char *tr_history_serialize(const tr_history *h);
/* Replaces h with a string from tr_history_serialize; false when it does not parse. */
bool tr_history_parse(tr_history *h, const char *s);
/* Files the tool rewrites (metrics.csv, curves.png, confusion.csv) replace the old copy only
 * once complete: tr_replace_open opens PATH.part (its name in tmp, of n bytes; where PATH is a
 * symbolic link, the file it names takes PATH's place: the link stays, the file is replaced),
 * with the old file's permissions, and tr_replace_close syncs and closes it and, when ok and
 * every write succeeded, renames it over that file; else removes it, leaving the old one. NULL
 * or false with errno set on failure. */
FILE *tr_replace_open(const char *path, char *tmp, size_t n);
bool tr_replace_close(FILE *f, const char *tmp, bool ok);
/* metrics.csv: a header and one row per epoch; false with errno set on failure. */
bool tr_history_write_csv(const tr_history *h, const char *path);
/* curves.png: loss (train, val) and accuracy (train, val top-1, val top-5) per epoch in two
 * panels with axes and tick labels. false with a reason in err. */
bool tr_plot_curves(const tr_history *h, const char *path, char *err, size_t n);
/* The label of the grid line at v on an axis whose lines are step apart: with the decimals
 * the step needs to be shown exactly (0.25: two, 2.5: one), in exponent form for a step
 * below 1e-4. */
void tr_tick_label(double v, double step, char *buf, size_t n);

#endif /* TR_REPORT_H */
