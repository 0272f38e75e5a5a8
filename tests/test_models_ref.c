/* test_models_ref.c — the zoo against an independent description of each network: the layer
 * sequence of torchvision's module (LeNet-5: its common modern form) written out here, with
 * strides, paddings, pools, activations, dropout places, BN eps 1e-5 and momentum 0.1, and run
 * with the ops on the model's own weights: evaluation (fused and not), training (the same
 * dropout masks), gradients, running statistics. The registry, parameter groups, initial values
 * and summary rows are in test_models_registry.c. */
#include "gradcheck.h"

#include <stdarg.h>

/* ---- a reference forward from a layer list -------------------------------------------------
 * One layer a line, space-separated: "c NAME S P" conv NAME.weight (NAME.bias when the state has
 * one), stride S, padding P; "b NAME" batch norm (eps 1e-5, momentum 0.1); "r" ReLU; "t" tanh;
 * "m K S P" max pool; "a K S" average pool; "g H W" adaptive average pool; "f" flatten; "d"
 * dropout of the model's p; "l NAME" linear; "s" / "j" / "+" a residual block's start, the
 * start of its projection (on the block input), and the sum of the two paths. */
typedef struct ref_run {
    cnn_dict *st;   /* by torchvision's names: the model's parameters, copies of its buffers */
    bool training;
    float p;        /* dropout */
    cnn_tensor *x, *saved, *main;
} ref_run;

static cnn_tensor *ref_get(ref_run *r, const char *name, const char *leaf)
{
    char k[96];
    snprintf(k, sizeof k, "%s.%s", name, leaf);
    return cnn_dict_get(r->st, k);
}

static cnn_status ref_layer(ref_run *r, const char *line)
{
    char op[4] = "", name[48] = "";
    int a = 0, b = 0, c = 0;
    cnn_tensor *y = NULL;
    cnn_status st = CNN_OK;
    sscanf(line, "%3s", op);
    if (op[0] == 'c' || op[0] == 'b' || op[0] == 'l') sscanf(line, "%*s %47s %d %d", name, &a, &b);
    else sscanf(line, "%*s %d %d %d", &a, &b, &c);
    if (op[0] != 'c' && op[0] != 'b' && op[0] != 'l' && strchr("rtmagfdsj+", op[0]) == NULL) {
        printf("    reference: bad layer '%s'\n", line);
        return CNN_ERR_INVALID_ARG;
    }
    if (op[0] == 'c') {
        cnn_tensor *w = ref_get(r, name, "weight");
        if (!w) printf("    reference: the model has no %s.weight\n", name);
        if (!w) return CNN_ERR_NOT_FOUND;
        cnn_conv2d_params p = {{a, a}, {b, b}, {1, 1}, 1};
        st = cnn_conv2d(r->x, w, ref_get(r, name, "bias"), &p, &y);
    } else if (op[0] == 'b') {
        st = cnn_batch_norm(r->x, ref_get(r, name, "running_mean"), ref_get(r, name, "running_var"),
                            ref_get(r, name, "weight"), ref_get(r, name, "bias"), r->training,
                            0.1f, 1e-5f, &y);
    } else if (op[0] == 'l') {
        st = cnn_linear(r->x, ref_get(r, name, "weight"), ref_get(r, name, "bias"), &y);
    } else if (op[0] == 'r') {
        st = cnn_relu(r->x, &y);
    } else if (op[0] == 't') {
        st = cnn_tanh(r->x, &y);
    } else if (op[0] == 'm' || op[0] == 'a') {
        cnn_pool2d_params p = {.kernel = {a, a}, .stride = {b, b}, .padding = {c, c}};
        st = op[0] == 'm' ? cnn_max_pool2d(r->x, &p, &y) : cnn_avg_pool2d(r->x, &p, &y);
    } else if (op[0] == 'g') {
        st = cnn_adaptive_avg_pool2d(r->x, a, b, &y);
    } else if (op[0] == 'f') {
        st = cnn_flatten(r->x, 1, &y);
    } else if (op[0] == 'd') {
        st = cnn_dropout(r->x, r->p, r->training, &y);
    } else if (op[0] == 's') {
        r->saved = cnn_tensor_retain(r->x);
        return CNN_OK;
    } else if (op[0] == 'j') {
        r->main = r->x;
        r->x = r->saved;
        r->saved = NULL;
        return CNN_OK;
    } else {
        st = cnn_add(r->main ? r->main : r->saved, r->x, &y);
        free_tensors(&r->main, &r->saved);
    }
    if (st != CNN_OK) printf("    reference: '%s' failed\n", line);
    if (st != CNN_OK) return st;
    cnn_tensor_free(&r->x);
    r->x = y;
    return CNN_OK;
}

/* Appends one line to a growing layer list. */
static void put_layer(char *buf, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void put_layer(char *buf, size_t n, const char *fmt, ...)
{
    size_t len = strlen(buf);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + len, n - len, fmt, ap);
    va_end(ap);
    len = strlen(buf);
    if (len + 1 < n) strcat(buf, "\n");
}

/* torchvision's networks as layer lists (act: "r" or "t"; LeNet-5's conv1 pads a 28x28 input by
 * 2, as LeCun padded MNIST). */
static void lenet_layers(char *l, size_t n, const char *act, int pad)
{
    put_layer(l, n, "c conv1 1 %d\n%s\na 2 2\nc conv2 1 0\n%s\na 2 2\nf", pad, act, act);
    put_layer(l, n, "l fc1\n%s\nl fc2\n%s\nl fc3", act, act);
}

static void alexnet_layers(char *l, size_t n)
{
    put_layer(l, n, "c features.0 4 2\nr\nm 3 2 0\nc features.3 1 2\nr\nm 3 2 0");
    put_layer(l, n, "c features.6 1 1\nr\nc features.8 1 1\nr\nc features.10 1 1\nr\nm 3 2 0");
    put_layer(l, n, "g 6 6\nf\nd\nl classifier.1\nr\nd\nl classifier.4\nr\nl classifier.6");
}

/* cfg: torchvision's cfgs["A"] etc., "M" a max pool. */
static void vgg_layers(char *l, size_t n, const char *cfg, bool bn)
{
    char c[128];
    int i = 0;
    snprintf(c, sizeof c, "%s", cfg);
    for (char *t = strtok(c, " "); t; t = strtok(NULL, " ")) {
        if (t[0] == 'M') {
            put_layer(l, n, "m 2 2 0");
            i++;
            continue;
        }
        put_layer(l, n, "c features.%d 1 1", i++);
        if (bn) put_layer(l, n, "b features.%d", i++);
        put_layer(l, n, "r");
        i++;
    }
    put_layer(l, n, "g 7 7\nf\nl classifier.0\nr\nd\nl classifier.3\nr\nd\nl classifier.6");
}

/* torchvision's ResNet: BasicBlock / Bottleneck (stride on the 3x3, "v1.5"), a projection where
 * the stride or the width changes; small: a 3x3 stride-1 stem and no max pool. */
static void resnet_layers(char *l, size_t n, const int blocks[4], bool bottleneck, bool small)
{
    put_layer(l, n, small ? "c conv1 1 1\nb bn1\nr" : "c conv1 2 3\nb bn1\nr\nm 3 2 1");
    int inplanes = 64, exp = bottleneck ? 4 : 1;
    for (int s = 0; s < 4; s++) {
        int planes = 64 << s;
        for (int b = 0; b < blocks[s]; b++) {
            char p[32];
            int stride = s > 0 && b == 0 ? 2 : 1;
            snprintf(p, sizeof p, "layer%d.%d", s + 1, b);
            put_layer(l, n, "s");
            if (bottleneck)
                put_layer(l, n, "c %s.conv1 1 0\nb %s.bn1\nr\nc %s.conv2 %d 1\nb %s.bn2\nr\n"
                          "c %s.conv3 1 0\nb %s.bn3", p, p, p, stride, p, p, p);
            else
                put_layer(l, n, "c %s.conv1 %d 1\nb %s.bn1\nr\nc %s.conv2 1 1\nb %s.bn2", p,
                          stride, p, p, p);
            if (stride != 1 || inplanes != planes * exp)
                put_layer(l, n, "j\nc %s.downsample.0 %d 0\nb %s.downsample.1", p, stride, p);
            put_layer(l, n, "+\nr");
            inplanes = planes * exp;
        }
    }
    put_layer(l, n, "g 1 1\nf\nl fc");
}

/* Runs a layer list on x with the tensors of st. */
static cnn_status ref_forward(cnn_dict *st, const char *layers, const cnn_tensor *x, bool training,
                              float p, cnn_tensor **y)
{
    ref_run r = {st, training, p, cnn_tensor_retain((cnn_tensor *)x), NULL, NULL};
    cnn_status s = CNN_OK;
    for (const char *l = layers; *l && s == CNN_OK;) {
        char line[96];
        size_t len = strcspn(l, "\n");
        snprintf(line, sizeof line, "%.*s", (int)len, l);
        s = ref_layer(&r, line);
        l += len + (l[len] == '\n');
    }
    *y = s == CNN_OK ? r.x : NULL;
    if (s != CNN_OK) cnn_tensor_free(&r.x);
    free_tensors(&r.saved, &r.main);
    return s;
}

/* Conv and linear weights of a model made with skip_init: U(-a, a) with a = sqrt(6 / fan_in)
 * (the ReLU-preserving scale), biases U(-0.1, 0.1), from a hash of the index (fast for VGG's
 * hundred million). BN tensors are set by randomise_batch_norms. */
static void fill_weights(cnn_model *m)
{
    cnn_dict *d = cnn_model_state(m);
    for (int i = 0; i < cnn_dict_size(d); i++) {
        cnn_tensor *t = cnn_dict_at(d, i);
        if (cnn_tensor_dtype(t) != CNN_F32) continue;
        int64_t n = cnn_tensor_numel(t), fan_in = n / cnn_tensor_shape(t).d[0];
        float a = cnn_tensor_ndim(t) > 1 ? sqrtf(6.0f / (float)fan_in) : 0.1f;
        float *v = cnn_tensor_data(t);
        for (int64_t k = 0; k < n; k++) {
            uint32_t hsh = (uint32_t)(k + 7919 * i) * 2654435761u;
            v[k] = a * ((float)(hsh >> 8) / (float)(1u << 23) - 1.0f);
        }
    }
}

/* Batch norms whose eps matters: running_var U(1e-4, 4e-4) (so 1e-5 is a few percent of it)
 * and weight sqrt(running_var) * U(0.7, 1.4), which keeps activations of unit size. */
static void randomise_batch_norms(cnn_model *m)
{
    cnn_dict *d = cnn_model_state(m);
    for (int i = 0; i < cnn_dict_size(d); i++) {
        const char *name = cnn_dict_name(d, i);
        if (!ends_with(name, ".running_var")) continue;
        char k[96];
        size_t stem = strlen(name) - strlen("running_var");
        cnn_tensor *var = cnn_dict_at(d, i), *t[3];
        const char *leaf[3] = {"weight", "bias", "running_mean"};
        for (int j = 0; j < 3; j++) {
            snprintf(k, sizeof k, "%.*s%s", (int)stem, name, leaf[j]);
            t[j] = cnn_dict_get(d, k);
        }
        REQUIRE(t[0] && t[1] && t[2]);
        float *v = cnn_tensor_data(var), *w = cnn_tensor_data(t[0]), *b = cnn_tensor_data(t[1]);
        float *mu = cnn_tensor_data(t[2]);
        for (int64_t c = 0; c < cnn_tensor_numel(var); c++) {
            float u[4];
            for (int j = 0; j < 4; j++) u[j] = (float)rand() / (float)RAND_MAX;
            v[c] = 1e-4f + 3e-4f * u[0];
            w[c] = sqrtf(v[c]) * (0.7f + 0.7f * u[1]);
            b[c] = 0.4f * u[2] - 0.2f;
            mu[c] = 0.2f * u[3] - 0.1f;
        }
    }
}

/* The model's state with its own parameters and copies of its buffers (which a training-mode
 * reference pass updates). */
static cnn_dict *ref_state(cnn_model *m)
{
    cnn_dict *d = cnn_model_state(m), *r = NULL;
    if (cnn_dict_create(&r) != CNN_OK) return NULL;
    for (int i = 0; i < cnn_dict_size(d); i++) {
        cnn_tensor *t = cnn_dict_at(d, i), *c = NULL;
        bool buffer = !cnn_tensor_requires_grad(t);
        if (buffer && cnn_tensor_clone(t, &c) != CNN_OK) break;
        cnn_dict_set(r, cnn_dict_name(d, i), buffer ? c : t);
        cnn_tensor_free(&c);
    }
    return r;
}

static bool close_scaled(const char *what, const cnn_tensor *y, const cnn_tensor *ref)
{
    float scale = 0;
    const float *v = cnn_tensor_cdata(ref);
    for (int64_t i = 0; i < cnn_tensor_numel(ref); i++) scale = fmaxf(scale, fabsf(v[i]));
    return tensors_close(what, y, ref, 1e-4f * (1 + scale), 1e-3f);
}

/* The model against the layer list: evaluation with grad mode off (the fused path: BN folded
 * into the convs) and on (every layer alone), the parameter gradients of the latter, and a
 * training-mode pass (batch statistics, the same dropout masks from the same seed) with the
 * running statistics and num_batches_tracked it leaves. */
static void check_against_layers(const char *name, const cnn_model_options *o, int h,
                                 const char *layers, bool grads)
{
    cnn_model *m = NULL;
    cnn_model_options so = *o;
    so.skip_init = true;
    CHECK_OK(cnn_model_create_ex(name, &so, &m));
    fill_weights(m);
    randomise_batch_norms(m);
    cnn_dict *st = ref_state(m), *p = cnn_model_parameters(m), *d = cnn_model_state(m);
    cnn_model_info info = cnn_model_get_info(m);
    cnn_tensor *x = rand_tensor(CNN_SHAPE(2, info.in_channels, h, h), -1, 1, 0);
    cnn_tensor *y = NULL, *yr = NULL, *s = NULL, **g = calloc(cnn_dict_size(p), sizeof *g);
    char what[96];
    REQUIRE(st && g);
    for (int pass = 0; pass < 3 && !cnn_test_failed(); pass++) {
        bool training = pass == 2, was = cnn_set_grad_enabled(pass > 0);
        snprintf(what, sizeof what, "%s %s", name,
                 pass == 0 ? "eval, fused" : pass == 1 ? "eval, grad on" : "training");
        cnn_manual_seed(5);
        cnn_status s1 = cnn_model_forward(m, x, training, &y);
        const bool backward = pass == 1 && grads;
        if (s1 == CNN_OK && backward) s1 = cnn_sum(y, &s);
        if (s1 == CNN_OK && backward) s1 = cnn_backward(s);
        for (int i = 0; s1 == CNN_OK && backward && i < cnn_dict_size(p); i++) {
            cnn_tensor *t = cnn_dict_at(p, i);
            if (!cnn_tensor_grad(t) || cnn_tensor_clone(cnn_tensor_grad(t), &g[i]) != CNN_OK)
                cnn_test_fail(__FILE__, __LINE__, "%s: no gradient for %s", what,
                              cnn_dict_name(p, i));
            cnn_tensor_zero_grad(t);
        }
        cnn_tensor_free(&s);
        cnn_manual_seed(5);
        cnn_status s2 = CNN_OK;
        if (!cnn_test_failed()) s2 = ref_forward(st, layers, x, training, o->dropout, &yr);
        if (s2 == CNN_OK && backward && yr) s2 = cnn_sum(yr, &s);
        if (s2 == CNN_OK && backward && yr) s2 = cnn_backward(s);
        cnn_tape_reset();
        cnn_set_grad_enabled(was);
        if (s1 != CNN_OK || s2 != CNN_OK)
            cnn_test_fail(__FILE__, __LINE__, "%s: %s", what, cnn_last_error());
        else if (!cnn_test_failed() && !close_scaled(what, y, yr))
            cnn_test_fail(__FILE__, __LINE__, "%s: logits differ from torchvision's layers", what);
        for (int i = 0; i < cnn_dict_size(p) && backward && g[i] && !cnn_test_failed(); i++) {
            snprintf(what, sizeof what, "%s eval gradient of %s", name, cnn_dict_name(p, i));
            CHECK(close_scaled(what, g[i], cnn_tensor_grad(cnn_dict_at(p, i))));
        }
        free_tensors(&y, &yr, &s);
    }
    for (int i = 0; i < cnn_dict_size(d) && !cnn_test_failed(); i++) { /* after training */
        const char *k = cnn_dict_name(d, i);
        if (ends_with(k, ".num_batches_tracked")) {
            int64_t n = -1;
            cnn_tensor_read(cnn_dict_at(d, i), &n, 1);
            if (n != 1) cnn_test_fail(__FILE__, __LINE__, "%s: %s is %lld", name, k, (long long)n);
        } else if (ends_with(k, ".running_mean") || ends_with(k, ".running_var")) {
            snprintf(what, sizeof what, "%s %s", name, k);
            CHECK(tensors_close(what, cnn_dict_at(d, i), cnn_dict_get(st, k), 1e-6f, 1e-4f));
        }
    }
    for (int i = 0; i < cnn_dict_size(p); i++) cnn_tensor_free(&g[i]);
    free(g);
    cnn_tensor_free(&x);
    cnn_dict_destroy(&st);
    cnn_model_destroy(&m);
}

static cnn_model_options opts(int classes, bool tanh_act)
{
    cnn_model_options o = cnn_model_default_options();
    o.num_classes = classes;
    o.tanh = tanh_act;
    return o;
}

TEST(models_ref_lenet_alexnet_vgg_match_their_layers)
{
    static char l[4096];
    cnn_model_options o = opts(0, false);
    l[0] = '\0', lenet_layers(l, sizeof l, "r", 2);
    check_against_layers("lenet5", &o, 28, l, true);
    o = opts(0, true);
    l[0] = '\0', lenet_layers(l, sizeof l, "t", 0);
    check_against_layers("lenet5", &o, 32, l, false);
    o = opts(10, false);
    o.dropout = 0.25f; /* not the default 0.5: the option must reach every dropout */
    l[0] = '\0', alexnet_layers(l, sizeof l);
    check_against_layers("alexnet", &o, 67, l, false);
    l[0] = '\0', vgg_layers(l, sizeof l, "64 M 128 M 256 256 M 512 512 M 512 512 M", true);
    check_against_layers("vgg11_bn", &o, 32, l, false);
}

TEST(models_ref_resnets_match_their_layers)
{
    static char l[16384];
    static const int r18[4] = {2, 2, 2, 2}, r50[4] = {3, 4, 6, 3};
    cnn_model_options o = opts(10, false);
    l[0] = '\0', resnet_layers(l, sizeof l, r18, false, false);
    check_against_layers("resnet18", &o, 40, l, false);
    l[0] = '\0', resnet_layers(l, sizeof l, r18, false, true);
    check_against_layers("resnet18_small", &o, 12, l, true);
    l[0] = '\0', resnet_layers(l, sizeof l, r50, true, false);
    check_against_layers("resnet50", &o, 32, l, false);
    l[0] = '\0', resnet_layers(l, sizeof l, r50, true, true);
    check_against_layers("resnet50_small", &o, 8, l, false);
}
