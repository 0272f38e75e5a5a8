/* bench_tool.h — what the tests of the built cnnbench and of the bench/ scripts share
 * (test_cnnbench.c, test_bench_scripts.c): finding and running the tool, running a command,
 * reading what it wrote. */
#ifndef CNN_TEST_BENCH_TOOL_H
#define CNN_TEST_BENCH_TOOL_H

#include <stdbool.h>
#include <stddef.h>

/* cnnbench's path into buf; false (the test skipped) when it is not built. */
bool bench_path(char *buf, size_t n);
/* Runs a shell command with stdout and stderr captured into out (truncated to n); returns the
 * exit status, or -1 when it did not exit normally. */
int run_cmd(const char *cmd, char *out, size_t n);
/* Runs "env tool args" as run_cmd does (with --no-peak added where args time something). */
int run_bench(const char *tool, const char *env, const char *args, char *out, size_t n);
/* Whether a python3 is on the PATH. */
bool have_python(void);
/* How many times needle occurs in s. */
int count_of(const char *s, const char *needle);
/* The first 64 KiB of a file, in a static buffer (NULL when it cannot be opened). */
char *slurp(const char *path);

#endif /* CNN_TEST_BENCH_TOOL_H */
