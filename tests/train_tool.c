/* train_tool.c — running train_imagenet_subset from the tests and reading what it leaves
 * (train_tool.h). */
#include "train_tool.h"

#include "test.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

bool tool_path(char *buf, size_t n)
{
    return cnn_test_tool_path("train_imagenet_subset", buf, n);
}

int run_tool_ex(const char *tool, const char *args, bool stderr_only, char *out, size_t n)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s %s%s %s", tool, strstr(args, "--device") ? "" : "--device cpu ",
             args, stderr_only ? "2>&1 >/dev/null" : "2>&1");
    return cnn_test_capture(cmd, out, n);
}

int run_tool(const char *tool, const char *args, char *out, size_t n)
{
    return run_tool_ex(tool, args, false, out, n);
}

bool make_tmpdir(char *buf, size_t n)
{
    snprintf(buf, n, "/tmp/cnn_train_test.XXXXXX");
    return mkdtemp(buf) != NULL;
}

void remove_tree(const char *dir)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) printf("    note: could not remove %s\n", dir);
}

const char *meta_of(const char *path, const char *key, char *buf, size_t n)
{
    cnn_dict *d = NULL;
    buf[0] = 0;
    if (cnn_safetensors_load(path, &d) == CNN_OK && cnn_dict_get_meta(d, key))
        snprintf(buf, n, "%s", cnn_dict_get_meta(d, key));
    cnn_dict_destroy(&d);
    return buf;
}

bool metrics_row(const char *dir, int row, double v[7])
{
    char p[800], line[512], want[512] = "";
    snprintf(p, sizeof p, "%s/metrics.csv", dir);
    FILE *f = fopen(p, "r");
    if (!f) return false;
    for (int k = -1; fgets(line, sizeof line, f); k++) /* k: the row (-1: the header) */
        if (row < 0 || k == row) memcpy(want, line, sizeof want);
    fclose(f);
    return sscanf(want, "%lf,%lf,%lf,%lf,%lf,%lf,%lf", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
                  &v[6]) == 7;
}

double last_lr(const char *dir)
{
    double v[7];
    return metrics_row(dir, -1, v) ? v[6] : -1;
}

void check_one_line_error(const char *tool, const char *args, const char *needle)
{
    char out[8192];
    int rc = run_tool_ex(tool, args, true, out, sizeof out);
    if (rc == 0) cnn_test_fail(__FILE__, __LINE__, "'%s' exited 0", args);
    if (strncmp(out, "train_imagenet_subset: ", 23) != 0 ||
        strchr(out, '\n') != out + strlen(out) - 1)
        cnn_test_fail(__FILE__, __LINE__, "'%s' printed not one error line: %s", args, out);
    if (!strstr(out, needle))
        cnn_test_fail(__FILE__, __LINE__, "'%s': reason lacks '%s': %s", args, needle, out);
}

int run_and_interrupt(const char *tool, char *const *args, const char *at, int sig, char *out,
                      size_t cap)
{
    int fds[2];
    if (pipe(fds) != 0) return -1;
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        dup2(fds[1], STDOUT_FILENO);
        dup2(fds[1], STDERR_FILENO);
        close(fds[0]);
        close(fds[1]);
        execv(tool, args);
        _exit(127);
    }
    close(fds[1]);
    FILE *f = fdopen(fds[0], "r");
    char line[1024];
    size_t len = 0;
    bool sent = false;
    out[0] = 0;
    while (f && fgets(line, sizeof line, f)) {
        if (len + strlen(line) < cap) {
            memcpy(out + len, line, strlen(line) + 1);
            len += strlen(line);
        }
        if (!sent && strstr(line, at)) {
            kill(pid, sig);
            sent = true;
        }
    }
    if (f) fclose(f);
    int st = 0;
    waitpid(pid, &st, 0);
    return sent ? st : -1;
}
