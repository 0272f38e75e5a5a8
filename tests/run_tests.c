/* run_tests.c — runs every registered test (or those whose "file:name" contains an argument),
 * each in a fresh context, and ends with the line "N passed, N failed, N skipped".
 * Options: --gpu-only (only the GPU tests), --cpu-only (only the others), --exclude=TEXT (leave
 * out tests whose "file:name" contains TEXT; repeatable), --shard=K/N (of the tests the rest
 * selects, in their stable order, those at positions K, K+N, K+2N ...: N processes with K = 0
 * .. N-1 run each selected test once, as scripts/gpu-verify.sh does on a many-core machine). */
#include "test.h"

#include <stdarg.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    const char *file, *name;
    cnn_test_fn fn;
    int gpu;
} test_entry;

static test_entry *g_tests;
static int g_n, g_cap;
static int g_failed_now, g_skipped_now;
static char g_skip_reason[256];

void cnn_test_register(const char *file, const char *name, cnn_test_fn fn, int gpu)
{
    if (g_n == g_cap) {
        g_cap = g_cap ? 2 * g_cap : 256;
        g_tests = realloc(g_tests, (size_t)g_cap * sizeof *g_tests);
        if (!g_tests) {
            fprintf(stderr, "run_tests: out of memory\n");
            exit(2);
        }
    }
    const char *base = strrchr(file, '/');
    g_tests[g_n++] = (test_entry){base ? base + 1 : file, name, fn, gpu};
}

void cnn_test_fail(const char *file, int line, const char *fmt, ...)
{
    const char *base = strrchr(file, '/');
    va_list ap;
    va_start(ap, fmt);
    printf("    FAIL %s:%d: ", base ? base + 1 : file, line);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    g_failed_now++;
}

void cnn_test_skip(const char *why)
{
    g_skipped_now = 1;
    snprintf(g_skip_reason, sizeof g_skip_reason, "%s", why);
}

int cnn_test_failed(void) { return g_failed_now > 0; }

int cnn_test_tool_path(const char *name, char *buf, size_t n)
{
    const char *dir = getenv("CNN_TOOLS_DIR");
    snprintf(buf, n, "%s/%s", dir && dir[0] ? dir : "build/bin", name);
    if (access(buf, X_OK) == 0) return 1;
    char why[600];
    snprintf(why, sizeof why, "%s not built (set CNN_TOOLS_DIR)", buf);
    cnn_test_skip(why);
    return 0;
}

int cnn_test_capture(const char *cmd, char *out, size_t n)
{
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t len = 0, got;
    char chunk[4096];
    while ((got = fread(chunk, 1, sizeof chunk, p)) > 0) {
        size_t take = len + got < n - 1 ? got : n - 1 - len;
        memcpy(out + len, chunk, take);
        len += take;
    }
    out[len] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int cnn_test_fork(unsigned seconds)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) alarm(seconds);
    return (int)pid;
}

int cnn_test_child_ok(int pid)
{
    int ws = 0;
    if (waitpid((pid_t)pid, &ws, 0) != (pid_t)pid) return 0;
    if (WIFSIGNALED(ws)) printf("    the child process was ended by signal %d\n", WTERMSIG(ws));
    if (WIFEXITED(ws) && WEXITSTATUS(ws))
        printf("    the child process exited with status %d\n", WEXITSTATUS(ws));
    return WIFEXITED(ws) && WEXITSTATUS(ws) == 0;
}

static int cmp_tests(const void *a, const void *b)
{
    const test_entry *x = a, *y = b;
    int c = strcmp(x->file, y->file);
    return c ? c : strcmp(x->name, y->name);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int is_option(const char *a)
{
    return strcmp(a, "--gpu-only") == 0 || strcmp(a, "--cpu-only") == 0 ||
           strncmp(a, "--exclude=", 10) == 0 || strncmp(a, "--shard=", 8) == 0;
}

/* Whether the command line selects this test: it matches a name argument (or there is none), is
 * a GPU test under --gpu-only (not one under --cpu-only), and matches no --exclude=TEXT. */
static int selected(const char *full, int gpu, int argc, char **argv)
{
    int names = 0, named = 0;
    for (int a = 1; a < argc; a++) {
        if (strcmp(argv[a], "--gpu-only") == 0) {
            if (!gpu) return 0;
        } else if (strcmp(argv[a], "--cpu-only") == 0) {
            if (gpu) return 0;
        } else if (strncmp(argv[a], "--shard=", 8) == 0) {
            continue;
        } else if (strncmp(argv[a], "--exclude=", 10) == 0) {
            if (strstr(full, argv[a] + 10)) return 0;
        } else {
            names++;
            if (strstr(full, argv[a])) named = 1;
        }
    }
    return names == 0 || named;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    int shard = 0, shards = 1;
    for (int a = 1; a < argc; a++) {
        const char *bad = NULL;
        char end = 0;
        if (strncmp(argv[a], "--", 2) == 0 && !is_option(argv[a]))
            bad = "unknown option";
        else if (strncmp(argv[a], "--shard=", 8) == 0 &&
                 (sscanf(argv[a] + 8, "%d/%d%c", &shard, &shards, &end) != 2 || shards < 1 ||
                  shard < 0 || shard >= shards))
            bad = "a shard is K/N with 0 <= K < N:";
        if (bad) {
            fprintf(stderr, "run_tests: %s %s (usage: run_tests [--gpu-only | --cpu-only] "
                            "[--exclude=TEXT]... [--shard=K/N] [TEXT]...)\n", bad, argv[a]);
            return 2;
        }
    }
    /* Registration order depends on link order; run in a stable order instead. */
    qsort(g_tests, (size_t)g_n, sizeof *g_tests, cmp_tests);
    int gpus = cnn_cuda_device_count();
    printf("libcnncuda %s tests: %d registered, CUDA %s, %d GPU(s)\n", cnn_version(), g_n,
           cnn_built_with_cuda() ? "built" : "not built", gpus);
    int passed = 0, failed = 0, skipped = 0;
    double t_all = now_ms();
    for (int i = 0, position = 0; i < g_n; i++) {
        test_entry *t = &g_tests[i];
        char full[256];
        snprintf(full, sizeof full, "%s:%s", t->file, t->name);
        if (!selected(full, t->gpu, argc, argv)) continue;
        if (position++ % shards != shard) continue;
        if (t->gpu && gpus == 0) {
            printf("skip %s (no CUDA device)\n", full);
            skipped++;
            continue;
        }
        cnn_context *ctx = NULL;
        cnn_status st = cnn_context_create(t->gpu ? CNN_CUDA(0) : CNN_CPU, &ctx);
        if (st != CNN_OK) {
            printf("FAIL %s: cannot create context: %s\n", full, cnn_last_error());
            failed++;
            continue;
        }
        cnn_context_set_current(ctx);
        cnn_manual_seed(1234);
        cnn_clear_error();
        g_failed_now = g_skipped_now = 0;
        double t0 = now_ms();
        t->fn();
        double ms = now_ms() - t0;
        cnn_context_destroy(&ctx);
        if (g_failed_now) {
            printf("FAIL %s (%.0f ms)\n", full, ms);
            failed++;
        } else if (g_skipped_now) {
            printf("skip %s (%s)\n", full, g_skip_reason);
            skipped++;
        } else {
            printf("ok   %s (%.0f ms)\n", full, ms);
            passed++;
        }
    }
    printf("total time %.1f s\n", (now_ms() - t_all) / 1e3);
    printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    free(g_tests);
    return failed ? 1 : 0;
}
