/* bench_shapes.c — the distinct convolutions of ResNet-50, VGG-16 and AlexNet at 224x224 (the
 * zoo's summary has output shapes but not kernel/stride/padding, so they are tabled here) and
 * a cross-check of each table against cnn_model_summarize. No timing here. */
#include "bench_common.h"

#include <string.h>

typedef struct set_row {
    int c, h, k, r, stride, pad, count; /* square inputs and kernels, groups 1 */
} set_row;

/* torchvision ResNet-50 (v1.5: stride on the 3x3), in order of first use. */
static const set_row resnet50[] = {
    {3, 224, 64, 7, 2, 3, 1},
    {64, 56, 64, 1, 1, 0, 1},     {64, 56, 64, 3, 1, 1, 3},    {64, 56, 256, 1, 1, 0, 4},
    {256, 56, 64, 1, 1, 0, 2},
    {256, 56, 128, 1, 1, 0, 1},   {128, 56, 128, 3, 2, 1, 1},  {128, 28, 512, 1, 1, 0, 4},
    {256, 56, 512, 1, 2, 0, 1},   {512, 28, 128, 1, 1, 0, 3},  {128, 28, 128, 3, 1, 1, 3},
    {512, 28, 256, 1, 1, 0, 1},   {256, 28, 256, 3, 2, 1, 1},  {256, 14, 1024, 1, 1, 0, 6},
    {512, 28, 1024, 1, 2, 0, 1},  {1024, 14, 256, 1, 1, 0, 5}, {256, 14, 256, 3, 1, 1, 5},
    {1024, 14, 512, 1, 1, 0, 1},  {512, 14, 512, 3, 2, 1, 1},  {512, 7, 2048, 1, 1, 0, 3},
    {1024, 14, 2048, 1, 2, 0, 1}, {2048, 7, 512, 1, 1, 0, 2},  {512, 7, 512, 3, 1, 1, 2},
};
static const set_row vgg16[] = {
    {3, 224, 64, 3, 1, 1, 1},   {64, 224, 64, 3, 1, 1, 1},  {64, 112, 128, 3, 1, 1, 1},
    {128, 112, 128, 3, 1, 1, 1}, {128, 56, 256, 3, 1, 1, 1}, {256, 56, 256, 3, 1, 1, 2},
    {256, 28, 512, 3, 1, 1, 1}, {512, 28, 512, 3, 1, 1, 2}, {512, 14, 512, 3, 1, 1, 3},
};
static const set_row alexnet[] = {
    {3, 224, 64, 11, 4, 2, 1}, {64, 27, 192, 5, 1, 2, 1}, {192, 13, 384, 3, 1, 1, 1},
    {384, 13, 256, 3, 1, 1, 1}, {256, 13, 256, 3, 1, 1, 1},
};

static const set_row *find_set(const char *name, int *n)
{
#define SET(x)                                                                                    \
    if (!strcmp(name, #x)) {                                                                      \
        *n = (int)(sizeof x / sizeof *x);                                                         \
        return x;                                                                                 \
    }
    SET(resnet50)
    SET(vgg16)
    SET(alexnet)
#undef SET
    return NULL;
}

int bench_conv_set(const char *name, int batch, bench_conv_shape *out, int max)
{
    int n;
    const set_row *rows = find_set(name, &n);
    if (!rows) return -1;
    if (n > max) n = max;
    for (int i = 0; i < n; i++) {
        const set_row *s = &rows[i];
        out[i] = (bench_conv_shape){batch, s->c, s->h, s->h, s->k, s->r, s->r, s->stride, s->pad,
                                    1, s->count};
    }
    return n;
}

const char *bench_conv_shape_str(const bench_conv_shape *s, char *buf, size_t n)
{
    snprintf(buf, n, "%d,%d,%d,%d,%d,%d,%d,%d,%d,%d", s->n, s->c, s->h, s->w, s->k, s->r, s->s,
             s->stride, s->pad, s->groups);
    return buf;
}

bool bench_conv_set_verify(const char *name, char *msg, size_t n)
{
    int rows;
    const set_row *t = find_set(name, &rows);
    if (!t) {
        snprintf(msg, n, "unknown shape set '%s'", name);
        return false;
    }
    long long tab_layers = 0, tab_params = 0, tab_macs = 0;
    for (int i = 0; i < rows; i++) {
        long long p = (t[i].h + 2LL * t[i].pad - t[i].r) / t[i].stride + 1;
        tab_layers += t[i].count;
        tab_params += (long long)t[i].count * t[i].k * t[i].c * t[i].r * t[i].r;
        tab_macs += (long long)t[i].count * t[i].k * p * p * t[i].c * t[i].r * t[i].r;
    }
    cnn_model_options mo = cnn_model_default_options();
    mo.skip_init = true; /* only shapes are needed */
    cnn_model *m = NULL;
    cnn_model_summary s = {0};
    if (cnn_model_create_ex(name, &mo, &m) != CNN_OK || cnn_model_summarize(m, 224, 224, &s)) {
        snprintf(msg, n, "%s: %s", name, cnn_last_error());
        cnn_model_destroy(&m);
        return false;
    }
    long long zoo_layers = 0, zoo_params = 0, zoo_macs = 0;
    for (int i = 0; i < s.n_layers; i++) {
        if (strcmp(s.layers[i].type, "Conv2d")) continue;
        zoo_layers++;
        zoo_params += s.layers[i].params;
        zoo_macs += s.layers[i].macs;
    }
    /* Conv biases (VGG, AlexNet) are parameters the table does not count. */
    long long zoo_weights = zoo_params;
    if (strcmp(name, "resnet50"))
        for (int i = 0; i < rows; i++) zoo_weights -= (long long)t[i].count * t[i].k;
    cnn_model_summary_free(&s);
    cnn_model_destroy(&m);
    bool ok = zoo_layers == tab_layers && zoo_weights == tab_params && zoo_macs == tab_macs;
    snprintf(msg, n, "%s conv table %s the zoo summary: %lld/%lld convs, %lld/%lld weights, "
             "%lld/%lld MACs (table/zoo)", name, ok ? "verified against" : "DIFFERS from",
             tab_layers, zoo_layers, tab_params, zoo_weights, tab_macs, zoo_macs);
    return ok;
}
