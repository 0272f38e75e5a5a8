/* bench_tool.c — see bench_tool.h. */
#include "bench_tool.h"

#include "test.h"

bool bench_path(char *buf, size_t n) { return cnn_test_tool_path("cnnbench", buf, n); }

int run_cmd(const char *cmd, char *out, size_t n)
{
    char full[4096];
    snprintf(full, sizeof full, "%s 2>&1", cmd);
    return cnn_test_capture(full, out, n);
}

int run_bench(const char *tool, const char *env, const char *args, char *out, size_t n)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s %s %s%s", env, tool, args,
             strstr(args, "--warmup") ? " --no-peak" : "");
    return run_cmd(cmd, out, n);
}

bool have_python(void)
{
    return system("python3 -c 'import json' >/dev/null 2>&1") == 0;
}

int count_of(const char *s, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(s, needle); p; p = strstr(p + 1, needle)) n++;
    return n;
}

char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    return buf;
}
