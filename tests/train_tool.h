/* train_tool.h — what the tests of the built train_imagenet_subset share (test_train_tool.c,
 * test_train_resume.c): finding and running the tool, scratch folders, reading what a run
 * leaves. */
#ifndef CNN_TEST_TRAIN_TOOL_H
#define CNN_TEST_TRAIN_TOOL_H

#include <stdbool.h>
#include <stddef.h>

/* Fashion-MNIST subsets small enough for a test run. */
#define SUBSET "--limit-train 2000 --limit-val 500"

/* The tool's path into buf; false (test skipped) when it is not built. */
bool tool_path(char *buf, size_t n);

/* Runs "tool args" with stdout and stderr (or stderr only) captured into out (n bytes,
 * truncated); returns the exit status, or -1 when it did not exit normally. Runs on the CPU
 * unless args name a device: the exactness checks are CPU claims. */
int run_tool_ex(const char *tool, const char *args, bool stderr_only, char *out, size_t n);
int run_tool(const char *tool, const char *args, char *out, size_t n);

/* Runs the tool with args (an argv list, NULL-terminated) and sends signal sig when a line of
 * its output contains `at`; its output in out. Returns the wait status (-1: `at` never came). */
int run_and_interrupt(const char *tool, char *const *args, const char *at, int sig, char *out,
                      size_t cap);

/* A failing run: non-zero exit and exactly one line "train_imagenet_subset: ..." on stderr,
 * holding needle (a test failure otherwise). */
void check_one_line_error(const char *tool, const char *args, const char *needle);

/* A fresh folder under /tmp into buf; false on failure. remove_tree removes one. */
bool make_tmpdir(char *buf, size_t n);
void remove_tree(const char *dir);

/* The metadata value KEY of the safetensors file PATH into buf ("" when absent). */
const char *meta_of(const char *path, const char *key, char *buf, size_t n);

/* Row `row` (0: the first epoch's; -1: the last) of DIR/metrics.csv, its 7 first columns (epoch,
 * train loss, train acc, val loss, val top-1, val top-5, lr) into v; false when there is none. */
bool metrics_row(const char *dir, int row, double v[7]);

/* The learning rate in the last row of DIR/metrics.csv (its 7th column), or -1. */
double last_lr(const char *dir);

#endif /* CNN_TEST_TRAIN_TOOL_H */
