/* test.h — the test harness: TEST()/GPU_TEST() register a test at load time (so a new
 * tests/test_*.c needs no list edited), CHECK* macros record failures with file and line.
 * Every test runs in a fresh context (CPU, or cuda:0 for GPU tests) seeded with 1234. */
#ifndef CNN_TEST_H
#define CNN_TEST_H

#include "cnncuda.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*cnn_test_fn)(void);
void cnn_test_register(const char *file, const char *name, cnn_test_fn fn, int gpu);
void cnn_test_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Marks the running test as skipped (with a reason) unless it has already failed. */
void cnn_test_skip(const char *why);
/* True when the running test has recorded a failure. */
int cnn_test_failed(void);
/* Path of a built tool (from $CNN_TOOLS_DIR, which `make test` sets, else build/bin) into buf;
 * when it is not there, marks the running test skipped and returns 0. */
int cnn_test_tool_path(const char *name, char *buf, size_t n);
/* Runs a shell command line (with any redirections it names) and captures its standard output
 * into out (truncated to n bytes, NUL-terminated); returns the exit status, or -1 when the
 * command did not exit normally. */
int cnn_test_capture(const char *cmd, char *out, size_t n);
/* For a check that could block for ever or changes the process (limits, signals): forks after
 * flushing stdio; the child (0 returned) has an alarm in `seconds` and ends with _exit(0) when
 * its checks hold. cnn_test_child_ok waits for it: true when it exited 0, else false (saying
 * which signal ended it, or its exit status). */
int cnn_test_fork(unsigned seconds);
int cnn_test_child_ok(int pid);

#define CNN_TEST_(name, gpu)                                                                      \
    static void test_##name(void);                                                                \
    __attribute__((constructor)) static void register_##name(void)                               \
    {                                                                                             \
        cnn_test_register(__FILE__, #name, test_##name, gpu);                                     \
    }                                                                                             \
    static void test_##name(void)
/* A CPU test. */
#define TEST(name) CNN_TEST_(name, 0)
/* A test that needs a CUDA device: skipped (and counted as skipped) where there is none. */
#define GPU_TEST(name) CNN_TEST_(name, 1)

/* Records a failure and goes on. */
#define CHECK(cond)                                                                               \
    do {                                                                                          \
        if (!(cond)) cnn_test_fail(__FILE__, __LINE__, "CHECK(%s)", #cond);                       \
    } while (0)
/* Records a failure and returns from the test. */
#define REQUIRE(cond)                                                                             \
    do {                                                                                          \
        if (!(cond)) {                                                                            \
            cnn_test_fail(__FILE__, __LINE__, "REQUIRE(%s)", #cond);                              \
            return;                                                                               \
        }                                                                                         \
    } while (0)
/* The call must succeed, else the test fails and returns. */
#define CHECK_OK(expr)                                                                            \
    do {                                                                                          \
        cnn_status s_ = (expr);                                                                   \
        if (s_ != CNN_OK) {                                                                       \
            cnn_test_fail(__FILE__, __LINE__, "%s -> %s: %s", #expr, cnn_status_name(s_),         \
                          cnn_last_error());                                                      \
            return;                                                                               \
        }                                                                                         \
    } while (0)
/* The call must fail with exactly `code` and leave a non-empty message. */
#define CHECK_ERR(expr, code)                                                                     \
    do {                                                                                          \
        cnn_clear_error();                                                                        \
        cnn_status s_ = (expr);                                                                   \
        if (s_ != (code))                                                                         \
            cnn_test_fail(__FILE__, __LINE__, "%s -> %s, expected %s (%s)", #expr,                \
                          cnn_status_name(s_), cnn_status_name(code), cnn_last_error());          \
        else if (!cnn_last_error()[0])                                                            \
            cnn_test_fail(__FILE__, __LINE__, "%s failed without a message", #expr);              \
    } while (0)
#define CHECK_NEAR(a, b, tol)                                                                     \
    do {                                                                                          \
        double a_ = (a), b_ = (b);                                                                \
        if (!(fabs(a_ - b_) <= (tol)))                                                            \
            cnn_test_fail(__FILE__, __LINE__, "CHECK_NEAR(%s, %s): %.9g vs %.9g (tol %g)", #a,    \
                          #b, a_, b_, (double)(tol));                                             \
    } while (0)

#endif /* CNN_TEST_H */
