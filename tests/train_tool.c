/* train_tool.c — running train_imagenet_subset from the tests and reading what it leaves
 * (train_tool.h). */
#include "train_tool.h"

#include "test.h"

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

double last_lr(const char *dir)
{
    char p[800], line[512], last[512] = "";
    snprintf(p, sizeof p, "%s/metrics.csv", dir);
    FILE *f = fopen(p, "r");
    if (!f) return -1;
    while (fgets(line, sizeof line, f)) memcpy(last, line, sizeof last);
    fclose(f);
    double v[7];
    if (sscanf(last, "%lf,%lf,%lf,%lf,%lf,%lf,%lf", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
               &v[6]) != 7)
        return -1;
    return v[6];
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
