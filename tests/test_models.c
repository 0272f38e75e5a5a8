/* test_models.c — the zoo: torchvision's parameter counts, state_dict keys, MACs and init;
 * shapes and gradients of every model; residual wiring; train/eval behaviour; checkpoints and
 * load errors; SGD steps that must lower the loss. Small inputs keep it fast on 2 cores. The
 * zoo on the GPU is in test_models_gpu.c. */
#include "gradcheck.h"

#include <malloc.h>
#include <unistd.h>

typedef struct zoo_case {
    const char *name;
    int classes;
    int64_t params;  /* torchvision's count at `classes` outputs and its default channels */
    int keys;        /* len(model.state_dict()), num_batches_tracked included */
    double gmacs;    /* conv + linear multiply-accumulates at 224x224, in G (0: not checked) */
} zoo_case;

static const zoo_case cases[] = {
    {"lenet5", 10, 61706, 10, 0},                 {"alexnet", 1000, 61100840, 16, 0.714},
    {"vgg11", 1000, 132863336, 22, 7.609},        {"vgg13", 1000, 133047848, 26, 11.308},
    {"vgg16", 1000, 138357544, 32, 15.470},       {"vgg16_bn", 1000, 138365992, 97, 15.470},
    {"vgg19_bn", 1000, 143678248, 118, 19.632},   {"resnet18", 1000, 11689512, 122, 1.814},
    {"resnet34", 1000, 21797672, 218, 3.664},     {"resnet50", 1000, 25557032, 320, 4.089},
    {"resnet101", 1000, 44549160, 626, 7.801},    {"resnet152", 1000, 60192808, 932, 11.514},
};
#define N_CASES ((int)(sizeof cases / sizeof cases[0]))

/* Models whose weights a test never reads are created without initialising them. */
static cnn_status create_uninit(const char *name, int classes, cnn_model **m)
{
    cnn_model_options o = cnn_model_default_options();
    o.num_classes = classes;
    o.skip_init = true;
    return cnn_model_create_ex(name, &o, m);
}

TEST(models_counts_keys_and_macs_match_torchvision)
{
    for (int c = 0; c < N_CASES && !cnn_test_failed(); c++) {
        const zoo_case *z = &cases[c];
        cnn_model *m = NULL;
        CHECK_OK(create_uninit(z->name, z->classes, &m));
        CHECK_NEAR(cnn_model_num_parameters(m), z->params, 0);
        CHECK_NEAR(cnn_dict_size(cnn_model_state(m)), z->keys, 0);
        cnn_model_info info = cnn_model_get_info(m);
        CHECK(strcmp(info.name, z->name) == 0 && info.num_classes == z->classes);
        cnn_model_summary s;
        CHECK_OK(cnn_model_summarize(m, info.input_h, info.input_w, &s));
        CHECK(s.total_params == z->params && shape_eq(s.out_shape, CNN_SHAPE(1, z->classes)));
        if (z->gmacs > 0) CHECK_NEAR(s.total_macs / 1e9, z->gmacs, 0.002 * z->gmacs); /* 224 */
        cnn_model_summary_free(&s);
        cnn_model_destroy(&m);
    }
}

/* torchvision's key at index i of the state dict (i -1: anywhere), of that shape (K: any). */
typedef struct { const char *model; int i; const char *key; cnn_shape shape; } key_case;
#define K(model, i, key) {model, i, key, {-1, {0}}}
#define S(model, i, key, ...) {model, i, key, CNN_SHAPE(__VA_ARGS__)}
static const key_case keys[] = {
    S("resnet18", 0, "conv1.weight", 64, 3, 7, 7), K("resnet18", 1, "bn1.weight"),
    K("resnet18", 2, "bn1.bias"), K("resnet18", 3, "bn1.running_mean"),
    K("resnet18", 4, "bn1.running_var"), K("resnet18", 5, "bn1.num_batches_tracked"),
    K("resnet18", 6, "layer1.0.conv1.weight"), K("resnet18", 12, "layer1.0.conv2.weight"),
    K("resnet18", 30, "layer2.0.conv1.weight"), K("resnet18", 121, "fc.bias"),
    S("resnet18", 42, "layer2.0.downsample.0.weight", 128, 64, 1, 1),
    K("resnet18", 45, "layer2.0.downsample.1.running_mean"),
    S("resnet18", 120, "fc.weight", 1000, 512),
    S("resnet18", -1, "layer4.1.conv2.weight", 512, 512, 3, 3),
    K("resnet50", 6, "layer1.0.conv1.weight"), K("resnet50", 24, "layer1.0.downsample.0.weight"),
    K("resnet50", 319, "fc.bias"), S("resnet50", -1, "layer1.0.conv3.weight", 256, 64, 1, 1),
    S("resnet50", -1, "layer2.0.conv2.weight", 128, 128, 3, 3),
    S("resnet50", -1, "layer4.2.bn3.running_var", 2048), S("resnet50", -1, "fc.weight", 1000, 2048),
    K("vgg16_bn", 0, "features.0.weight"), K("vgg16_bn", 2, "features.1.weight"),
    K("vgg16_bn", 6, "features.1.num_batches_tracked"), K("vgg16_bn", 7, "features.3.weight"),
    K("vgg16_bn", 96, "classifier.6.bias"), S("vgg16_bn", -1, "features.40.weight", 512, 512, 3, 3),
    S("vgg16_bn", -1, "classifier.0.weight", 4096, 25088), K("vgg16", 0, "features.0.weight"),
    K("vgg16", 2, "features.2.weight"), K("vgg16", 25, "features.28.bias"),
    K("vgg16", 26, "classifier.0.weight"), K("vgg16", 28, "classifier.3.weight"),
    K("vgg16", 31, "classifier.6.bias"), S("alexnet", 0, "features.0.weight", 64, 3, 11, 11),
    K("alexnet", 3, "features.3.bias"), K("alexnet", 4, "features.6.weight"),
    K("alexnet", 6, "features.8.weight"), K("alexnet", 8, "features.10.weight"),
    S("alexnet", 10, "classifier.1.weight", 4096, 9216), K("alexnet", 12, "classifier.4.weight"),
    K("alexnet", 15, "classifier.6.bias"), S("lenet5", 0, "conv1.weight", 6, 1, 5, 5),
    K("lenet5", 9, "fc3.bias"), S("lenet5", -1, "fc1.weight", 120, 400),
};

static int key_ok(cnn_dict *d, const key_case *k)
{
    const char *n = k->i >= 0 ? cnn_dict_name(d, k->i) : k->key;
    cnn_tensor *t = cnn_dict_get(d, k->key);
    bool shape_ok = t && (k->shape.ndim < 0 || shape_eq(cnn_tensor_shape(t), k->shape));
    if (n && strcmp(n, k->key) == 0 && shape_ok) return 1;
    printf("    %s: key %d is '%s', expected '%s' (or a wrong shape)\n", k->model, k->i,
           n ? n : "(none)", k->key);
    return 0;
}

TEST(models_state_keys_follow_torchvision_order)
{
    static const char *models[] = {"resnet18", "resnet50", "vgg16_bn", "vgg16", "alexnet",
                                   "lenet5"};
    for (int k = 0; k < 6; k++) {
        cnn_model *m = NULL;
        CHECK_OK(create_uninit(models[k], 0, &m));
        cnn_dict *d = cnn_model_state(m);
        for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
            if (strcmp(keys[i].model, models[k]) == 0) CHECK(key_ok(d, &keys[i]));
        if (k == 1) CHECK(cnn_dict_get(d, "layer1.1.downsample.0.weight") == NULL);
        if (k == 0) {
            cnn_tensor *nbt = cnn_dict_get(d, "bn1.num_batches_tracked");
            CHECK(nbt && cnn_tensor_dtype(nbt) == CNN_I64 && cnn_tensor_ndim(nbt) == 0);
            CHECK(nbt && !cnn_tensor_requires_grad(nbt));
            CHECK(cnn_tensor_requires_grad(cnn_dict_get(d, "bn1.weight")));
            /* no-decay group: biases and BN affine parameters */
            cnn_dict *p = cnn_model_parameters(m);
            for (int i = 0; i < cnn_dict_size(p); i++) {
                const char *n = cnn_dict_name(p, i);
                bool want = strstr(n, "bias") || strstr(n, "bn") || strstr(n, "downsample.1");
                CHECK(cnn_model_param_no_decay(m, i) == want);
            }
            CHECK(!cnn_model_param_no_decay(m, -1) && !cnn_model_param_no_decay(m, 1000));
        }
        cnn_model_destroy(&m);
    }
}

/* Standard deviation (max_abs: largest magnitude instead) of a state tensor's values. */
static double stat(cnn_model *m, const char *name, bool max_abs)
{
    const cnn_tensor *t = cnn_dict_get(cnn_model_state(m), name);
    const float *v = cnn_tensor_cdata(t);
    int64_t n = cnn_tensor_numel(t);
    double s = 0, s2 = 0, mx = 0;
    for (int64_t i = 0; i < n; i++) {
        s += v[i];
        s2 += (double)v[i] * v[i];
        mx = fmax(mx, fabs(v[i]));
    }
    return max_abs ? mx : sqrt(s2 / n - (s / n) * (s / n));
}

static float max_abs_diff(const cnn_tensor *a, const cnn_tensor *b)
{
    float m = 0;
    const float *pa = cnn_tensor_cdata(a), *pb = cnn_tensor_cdata(b);
    for (int64_t i = 0; i < cnn_tensor_numel(a); i++) m = fmaxf(m, fabsf(pa[i] - pb[i]));
    return m;
}

static int64_t read_i64(const cnn_tensor *t)
{
    int64_t v = -1;
    cnn_tensor_read(t, &v, 1);
    return v;
}

/* Checks of one model's initialisation (torchvision's) and train/eval behaviour. */
static void extra_checks(cnn_model *m)
{
    const char *name = cnn_model_get_info(m).name;
    if (strcmp(name, "vgg16") == 0) { /* conv kaiming normal (fan_out), linear N(0, 0.01) */
        CHECK_NEAR(stat(m, "classifier.6.weight", false), 0.01, 4e-4);
        CHECK_NEAR(stat(m, "classifier.0.weight", false), 0.01, 4e-4);
        CHECK(stat(m, "classifier.3.bias", true) == 0 && stat(m, "features.0.bias", true) == 0);
        CHECK_NEAR(stat(m, "features.2.weight", false), sqrt(2.0 / 576), 0.03 * sqrt(2.0 / 576));
    } else if (strcmp(name, "resnet18_small") == 0) { /* fc: nn.Linear's default */
        CHECK_NEAR(stat(m, "layer3.0.conv2.weight", false), sqrt(2.0 / 2304), 0.0006);
        /* convs: kaiming_normal_ with fan_out, seen where fan_in differs (128 out of 64 in: fan
         * in would give 0.177) and in a normal's tails (a uniform's end at sqrt(3) std) */
        const double ds = stat(m, "layer2.0.downsample.0.weight", false);
        CHECK_NEAR(ds, sqrt(2.0 / 128), 0.03 * sqrt(2.0 / 128));
        CHECK(stat(m, "layer3.0.conv2.weight", true) > 3 * sqrt(2.0 / 2304));
        CHECK(stat(m, "fc.weight", true) <= (float)(1 / sqrt(512.0)));
        CHECK(stat(m, "fc.weight", false) > 0.5 / sqrt(3 * 512.0));
    } else if (strcmp(name, "lenet5") == 0) { /* PyTorch's defaults everywhere */
        CHECK(stat(m, "fc1.weight", true) <= 0.05 && stat(m, "fc1.weight", true) > 0.045);
        CHECK_NEAR(stat(m, "fc1.weight", false), 1 / sqrt(1200.0), 0.03 / sqrt(1200.0));
        CHECK(stat(m, "conv1.bias", true) <= (float)(1 / sqrt(25.0)) &&
              stat(m, "conv1.bias", false) > 0);
    } else if (strcmp(name, "alexnet") == 0) { /* nn.Linear's default; dropout in training */
        /* the bound as a float, as torch's: 1/96 rounds up */
        CHECK(stat(m, "classifier.1.weight", true) <= (float)(1 / sqrt(9216.0)));
        CHECK_NEAR(stat(m, "classifier.1.weight", false), 1 / sqrt(3 * 9216.0), 2e-5);
        cnn_tensor *x = rand_tensor(CNN_SHAPE(2, 3, 63, 63), 0, 1, 0), *y1 = NULL, *y2 = NULL;
        cnn_tensor *y3 = NULL;
        bool was = cnn_set_grad_enabled(false);
        CHECK_OK(cnn_model_forward(m, x, false, &y1));
        CHECK_OK(cnn_model_forward(m, x, false, &y2));
        CHECK_OK(cnn_model_forward(m, x, true, &y3));
        cnn_set_grad_enabled(was);
        CHECK(max_abs_diff(y1, y2) == 0.0f && max_abs_diff(y1, y3) > 0.0f);
        free_tensors(&x, &y1, &y2, &y3);
    }
}

/* Forward at a small input, cross-entropy, backward: logits of the right shape, and a
 * gradient of the parameter's shape reaching every parameter. */
static void forward_backward(const char *name, int classes, int channels, int h)
{
    cnn_model *m = NULL;
    cnn_tensor *x = NULL, *y = NULL, *labels = NULL, *loss = NULL;
    /* Host memory from malloc comes filled with 0x5a bytes while the model is built (glibc's
     * M_PERTURB; ASan fills it too), so a parameter its initialisation forgets to set is
     * garbage that extra_checks sees, not a zero left by chance. */
    mallopt(M_PERTURB, 0xa5);
    CHECK_OK(cnn_model_create(name, classes, channels, &m));
    mallopt(M_PERTURB, 0);
    cnn_model_info info = cnn_model_get_info(m);
    x = rand_tensor(CNN_SHAPE(2, info.in_channels, h, h), -1, 1, 0);
    int64_t lab[2] = {0, info.num_classes - 1};
    CHECK_OK(cnn_tensor_from_i64(CNN_SHAPE(2), lab, CNN_CPU, &labels));
    CHECK_OK(cnn_model_forward(m, x, true, &y));
    CHECK(shape_eq(cnn_tensor_shape(y), CNN_SHAPE(2, info.num_classes)));
    CHECK_OK(cnn_cross_entropy(y, labels, 0.0f, &loss));
    CHECK_OK(cnn_backward(loss));
    CHECK(cnn_tape_size() == 0);
    cnn_dict *p = cnn_model_parameters(m);
    int missing = 0;
    double gsum = 0;
    for (int i = 0; i < cnn_dict_size(p); i++) {
        cnn_tensor *t = cnn_dict_at(p, i), *g = cnn_tensor_grad(t);
        if (!g || !shape_eq(cnn_tensor_shape(g), cnn_tensor_shape(t))) {
            if (missing++ < 3) printf("    %s: no gradient of the right shape for %s\n", name,
                                      cnn_dict_name(p, i));
            continue;
        }
        const float *gd = cnn_tensor_cdata(g);
        for (int64_t k = 0; k < cnn_tensor_numel(g); k++) gsum += fabs(gd[k]);
    }
    CHECK(missing == 0);
    CHECK(isfinite(gsum) && gsum > 0);
    extra_checks(m);
    free_tensors(&x, &y, &labels, &loss);
    cnn_model_destroy(&m);
}

TEST(models_lenet_alexnet_vgg_forward_backward)
{
    forward_backward("lenet5", 0, 0, 28);
    forward_backward("lenet5", 0, 0, 32);
    forward_backward("alexnet", 10, 0, 63);
    forward_backward("vgg16", 10, 0, 32);
    forward_backward("vgg16_bn", 10, 0, 32);
}

TEST(models_resnet_forward_backward)
{
    forward_backward("resnet18", 10, 0, 32);
    forward_backward("resnet34", 10, 0, 32);
    forward_backward("resnet50", 10, 0, 32);
    forward_backward("resnet18_small", 10, 1, 28);
}

TEST(models_deep_resnet_forward_backward)
{
    forward_backward("resnet101", 10, 0, 32);
    forward_backward("resnet152", 10, 0, 32);
    forward_backward("resnet50_small", 10, 3, 16);
}

/* One 32x32 image through ResNet-18 in training reaches layer4 at 1x1: one value per channel,
 * which batch norm refuses in training (as torch). The shape pass refuses it first, naming the
 * layer, so no earlier batch norm has moved its running statistics (torch's have: there the
 * first layers ran). In evaluation the same input runs. */
TEST(models_training_batch_of_one_refused_before_any_statistic_moves)
{
    cnn_model *m = NULL;
    CHECK_OK(create_uninit("resnet18", 10, &m));
    REQUIRE(m);
    cnn_dict *st = cnn_model_state(m);
    cnn_tensor *rm = cnn_dict_get(st, "bn1.running_mean");
    cnn_tensor *nbt = cnn_dict_get(st, "bn1.num_batches_tracked");
    REQUIRE(rm && nbt);
    float before[64], after[64];
    int64_t count = -1;
    CHECK_OK(cnn_tensor_read(rm, before, 64));
    cnn_tensor *x = rand_tensor(CNN_SHAPE(1, 3, 32, 32), 0, 1, 0), *y = NULL;
    CHECK_ERR(cnn_model_forward(m, x, true, &y), CNN_ERR_SHAPE);
    CHECK(y == NULL && strstr(cnn_last_error(), "layer4.0.bn1") &&
          strstr(cnn_last_error(), "more than 1 value per channel"));
    CHECK_OK(cnn_tensor_read(rm, after, 64));
    CHECK_OK(cnn_tensor_read(nbt, &count, 1));
    CHECK(!memcmp(before, after, sizeof before) && count == 0);
    cnn_tape_reset();
    bool was = cnn_set_grad_enabled(false);
    CHECK_OK(cnn_model_forward(m, x, false, &y));
    cnn_set_grad_enabled(was);
    free_tensors(&x, &y);
    cnn_model_destroy(&m);
}

TEST(models_lenet_pads_28_to_32)
{
    /* A 28x28 image must give exactly what its zero-padded 32x32 version gives. */
    cnn_model *m = NULL;
    CHECK_OK(cnn_model_create("lenet5", 0, 0, &m));
    cnn_tensor *x28 = rand_tensor(CNN_SHAPE(2, 1, 28, 28), 0, 1, 0), *x32 = NULL, *y28 = NULL;
    cnn_tensor *y32 = NULL;
    CHECK_OK(cnn_tensor_zeros(CNN_SHAPE(2, 1, 32, 32), CNN_CPU, &x32));
    for (int r = 0; r < 2 * 28; r++) /* row r % 28 of image r / 28 */
        memcpy(cnn_tensor_data(x32) + (r / 28) * 1024 + (r % 28 + 2) * 32 + 2,
               cnn_tensor_cdata(x28) + r * 28, 28 * sizeof(float));
    CHECK_OK(cnn_model_forward(m, x28, false, &y28));
    CHECK_OK(cnn_model_forward(m, x32, false, &y32));
    CHECK(max_abs_diff(y28, y32) < 1e-6f);
    cnn_model_summary sum;
    CHECK_OK(cnn_model_summarize(m, 28, 28, &sum));
    REQUIRE(sum.total_params == 61706 && sum.n_layers > 2);
    CHECK(shape_eq(sum.layers[0].out_shape, CNN_SHAPE(1, 6, 28, 28)));
    CHECK(strcmp(sum.layers[1].type, "ReLU") == 0);
    /* The conv as it runs on a 28x28 image: padded by 2 (the zero-padding to 32x32). */
    CHECK(shape_eq(sum.layers[0].in_shape, CNN_SHAPE(1, 1, 28, 28)));
    CHECK(sum.layers[0].conv.padding[0] == 2 && sum.layers[0].conv.padding[1] == 2);
    cnn_model_summary_free(&sum);
    CHECK_OK(cnn_model_summarize(m, 32, 32, &sum));
    CHECK(sum.layers[0].conv.padding[0] == 0 && sum.layers[0].conv.padding[1] == 0);
    cnn_model_summary_free(&sum);
    cnn_model_destroy(&m);
    cnn_model_options o = cnn_model_default_options(); /* LeCun's tanh */
    o.tanh = true;
    CHECK_OK(cnn_model_create_ex("lenet5", &o, &m));
    CHECK_OK(cnn_model_summarize(m, 32, 32, &sum));
    CHECK(sum.n_layers > 2 && strcmp(sum.layers[1].type, "Tanh") == 0);
    cnn_model_summary_free(&sum);
    cnn_model_destroy(&m);
    free_tensors(&x28, &x32, &y28, &y32);
}

TEST(models_zero_init_residual)
{
    cnn_model_options o = cnn_model_default_options();
    o.zero_init_residual = true;
    o.skip_init = true; /* batch-norm parameters are set all the same */
    cnn_model *m = NULL;
    CHECK_OK(cnn_model_create_ex("resnet50_small", &o, &m));
    cnn_dict *d = cnn_model_state(m);
    for (int i = 0; i < cnn_dict_size(d) && !cnn_test_failed(); i++) {
        const char *n = cnn_dict_name(d, i); /* every BN weight: 0 for bn3, else 1 */
        if (!strstr(n, "bn") || !strstr(n, ".weight")) continue;
        const float *v = cnn_tensor_cdata(cnn_dict_at(d, i));
        for (int64_t k = 0; k < cnn_tensor_numel(cnn_dict_at(d, i)); k++)
            CHECK(v[k] == (strstr(n, "bn3") ? 0.0f : 1.0f));
    }
    cnn_model_destroy(&m);
}

/* With zero_init_residual each block's branch ends in a BN of weight 0 and adds nothing, so a
 * fresh model in eval (BN: x / sqrt(1 + eps)) is the stem, relu(BN(downsample)) at each stage's
 * first block (the other blocks pass relu(x) = x through), pooling and fc: composed here by
 * hand, it checks the residual wiring. Then: BN running statistics move only in training. */
TEST(models_resnet_wiring_and_batchnorm_modes)
{
    cnn_model_options o = cnn_model_default_options();
    o.zero_init_residual = true;
    cnn_model *m = NULL;
    CHECK_OK(cnn_model_create_ex("resnet18_small", &o, &m));
    cnn_dict *d = cnn_model_state(m);
    bool was = cnn_set_grad_enabled(false);
    cnn_tensor *x = rand_tensor(CNN_SHAPE(2, 3, 8, 8), -1, 1, 0), *y = NULL, *h = NULL, *t = NULL;
    CHECK_OK(cnn_model_forward(m, x, false, &y));
    cnn_conv2d_params stem = {{1, 1}, {1, 1}, {1, 1}, 1}, ds = {{2, 2}, {0, 0}, {1, 1}, 1};
    CHECK_OK(cnn_conv2d(x, cnn_dict_get(d, "conv1.weight"), NULL, &stem, &h));
    for (int l = 1; l <= 4; l++) { /* h: the stage's input, then its output */
        char n[48];
        snprintf(n, sizeof n, "layer%d.0.downsample.0.weight", l);
        if (l > 1) {
            CHECK_OK(cnn_conv2d(h, cnn_dict_get(d, n), NULL, &ds, &t));
            free_tensors(&h);
            h = t;
        }
        CHECK_OK(cnn_scale(h, 1 / sqrtf(1 + 1e-5f), &t));
        free_tensors(&h);
        CHECK_OK(cnn_relu(t, &h));
        free_tensors(&t);
    }
    CHECK_OK(cnn_adaptive_avg_pool2d(h, 1, 1, &t));
    free_tensors(&h);
    CHECK_OK(cnn_flatten(t, 1, &h));
    free_tensors(&t);
    CHECK_OK(cnn_linear(h, cnn_dict_get(d, "fc.weight"), cnn_dict_get(d, "fc.bias"), &t));
    CHECK(tensors_close("resnet18_small wiring", y, t, 1e-5f, 1e-4f));
    free_tensors(&h, &t);

    cnn_tensor *rm = cnn_dict_get(d, "bn1.running_mean"), *rm0 = NULL;
    cnn_tensor *nbt = cnn_dict_get(d, "layer3.0.downsample.1.num_batches_tracked");
    CHECK_OK(cnn_tensor_clone(rm, &rm0));
    CHECK_OK(cnn_model_forward(m, x, false, &h));
    CHECK(max_abs_diff(y, h) == 0.0f); /* eval is deterministic and changes nothing */
    CHECK(max_abs_diff(rm, rm0) == 0.0f && read_i64(nbt) == 0);
    free_tensors(&h);
    CHECK_OK(cnn_model_forward(m, x, true, &h));
    CHECK(max_abs_diff(rm, rm0) > 0.0f && read_i64(nbt) == 1);
    CHECK(read_i64(cnn_dict_get(d, "bn1.num_batches_tracked")) == 1);
    CHECK_OK(cnn_model_forward(m, x, true, &t));
    CHECK(read_i64(nbt) == 2 && max_abs_diff(rm, rm0) > 0.0f);
    free_tensors(&y);
    CHECK_OK(cnn_model_forward(m, x, false, &y)); /* batch statistics differ from running ones */
    CHECK(max_abs_diff(t, y) > 1e-4f && read_i64(nbt) == 2);
    cnn_set_grad_enabled(was);
    free_tensors(&x, &y, &h, &t, &rm0);
    cnn_model_destroy(&m);
}

TEST(models_to_keeps_handles_values_and_grads)
{
    cnn_model *m = NULL;
    CHECK_OK(cnn_model_create("lenet5", 0, 0, &m));
    cnn_tensor *w = cnn_dict_get(cnn_model_state(m), "conv1.weight");
    cnn_tensor *c = NULL, *x = rand_tensor(CNN_SHAPE(2, 1, 28, 28), 0, 1, 0), *y = NULL, *s = NULL;
    CHECK_OK(cnn_tensor_clone(w, &c));
    CHECK_OK(cnn_model_forward(m, x, true, &y));
    CHECK_OK(cnn_sum(y, &s));
    CHECK_OK(cnn_backward(s));
    cnn_tensor *g = cnn_tensor_grad(w);
    CHECK(g != NULL);
    CHECK_OK(cnn_model_to(m, CNN_CPU)); /* already there: nothing changes */
    CHECK(cnn_dict_get(cnn_model_state(m), "conv1.weight") == w && cnn_tensor_grad(w) == g);
    CHECK(w == cnn_dict_get(cnn_model_parameters(m), "conv1.weight"));
    CHECK(cnn_model_device(m).type == CNN_DEVICE_CPU);
    if (cnn_cuda_device_count() == 0) CHECK_ERR(cnn_model_to(m, CNN_CUDA(0)), CNN_ERR_DEVICE);
    CHECK(cnn_tensor_device(w).type == CNN_DEVICE_CPU && max_abs_diff(w, c) == 0.0f);
    CHECK(cnn_model_device(m).type == CNN_DEVICE_CPU && cnn_tensor_grad(w) == g);
    /* A CPU index other than 0 is the one CPU, as for tensors: nothing moves, forward works. */
    const void *data = cnn_tensor_data(w);
    CHECK_OK(cnn_model_to(m, (cnn_device){CNN_DEVICE_CPU, 4}));
    CHECK(cnn_tensor_data(w) == data && cnn_model_device(m).index == 0);
    cnn_tensor_free(&y);
    CHECK_OK(cnn_model_forward(m, x, false, &y));
    free_tensors(&c, &x, &y, &s);
    cnn_model_destroy(&m);
}

/* A few plain SGD steps on one fixed batch: the loss must go down. */
static void sgd_steps(const char *name, int channels, int h, int steps, float lr, float *first,
                      float *last)
{
    cnn_model *m = NULL;
    *first = *last = NAN;
    CHECK_OK(cnn_model_create(name, 10, channels, &m));
    cnn_tensor *x = rand_tensor(CNN_SHAPE(8, channels, h, h), -1, 1, 0), *labels = NULL;
    int64_t lab[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    CHECK_OK(cnn_tensor_from_i64(CNN_SHAPE(8), lab, CNN_CPU, &labels));
    cnn_dict *p = cnn_model_parameters(m);
    for (int step = 0; step < steps; step++) {
        cnn_tensor *y = NULL, *loss = NULL;
        CHECK_OK(cnn_model_forward(m, x, true, &y));
        CHECK_OK(cnn_cross_entropy(y, labels, 0.0f, &loss));
        CHECK_OK(cnn_tensor_read(loss, last, 1));
        if (step == 0) *first = *last;
        CHECK_OK(cnn_backward(loss));
        for (int i = 0; i < cnn_dict_size(p); i++) {
            cnn_tensor *t = cnn_dict_at(p, i);
            const float *g = cnn_tensor_cdata(cnn_tensor_grad(t));
            float *w = cnn_tensor_data(t);
            for (int64_t k = 0; k < cnn_tensor_numel(t); k++) w[k] -= lr * g[k];
            cnn_tensor_zero_grad(t);
        }
        free_tensors(&y, &loss);
    }
    free_tensors(&x, &labels);
    cnn_model_destroy(&m);
}

TEST(models_sgd_lowers_the_loss)
{
    float first, last;
    sgd_steps("lenet5", 1, 28, 60, 0.3f, &first, &last);
    if (!(last < 0.5f * first)) printf("    lenet5: loss %.4f -> %.4f\n", first, last);
    CHECK(isfinite(first) && last < 0.5f * first);
    sgd_steps("resnet18_small", 3, 16, 3, 0.02f, &first, &last);
    if (!(last < 0.5f * first)) printf("    resnet18_small: loss %.4f -> %.4f\n", first, last);
    CHECK(isfinite(first) && last < 0.5f * first);
}

static int same_values(const cnn_tensor *a, const cnn_tensor *b)
{
    size_t n = (size_t)cnn_tensor_numel(a);
    void *va = malloc(n * 8), *vb = malloc(n * 8);
    int same = va && vb && cnn_tensor_dtype(a) == cnn_tensor_dtype(b) &&
               cnn_tensor_read(a, va, n) == CNN_OK && cnn_tensor_read(b, vb, n) == CNN_OK &&
               memcmp(va, vb, n * (cnn_tensor_dtype(a) == CNN_I64 ? 8 : 4)) == 0;
    free(va);
    free(vb);
    return same;
}

TEST(models_checkpoint_round_trip_and_load_errors)
{
    cnn_model *a = NULL, *b = NULL;
    CHECK_OK(cnn_model_create("resnet18_small", 10, 0, &a));
    CHECK_OK(create_uninit("resnet18_small", 10, &b));
    cnn_tensor *x = rand_tensor(CNN_SHAPE(2, 3, 8, 8), 0, 1, 0), *ya = NULL, *yb = NULL;
    CHECK_OK(cnn_model_forward(a, x, true, &ya)); /* running stats and counters move */
    char path[64];
    snprintf(path, sizeof path, "/tmp/cnn_test_models_%d.safetensors", (int)getpid());
    CHECK_OK(cnn_model_save(a, path));
    CHECK_OK(cnn_model_load(b, path, true, NULL));
    cnn_dict *da = cnn_model_state(a), *db = cnn_model_state(b), *src = NULL;
    REQUIRE(cnn_dict_size(da) == cnn_dict_size(db));
    for (int i = 0; i < cnn_dict_size(da); i++) /* bit-exact, names and order kept */
        CHECK(same_values(cnn_dict_at(da, i), cnn_dict_at(db, i)) &&
              strcmp(cnn_dict_name(da, i), cnn_dict_name(db, i)) == 0);
    CHECK(read_i64(cnn_dict_get(db, "layer2.1.bn2.num_batches_tracked")) == 1);
    cnn_tensor_free(&ya);
    CHECK_OK(cnn_model_forward(a, x, false, &ya));
    CHECK_OK(cnn_model_forward(b, x, false, &yb));
    CHECK(max_abs_diff(ya, yb) == 0.0f);

    /* mis-shaped: an error naming the tensor, nothing changed */
    CHECK_OK(cnn_safetensors_load(path, &src));
    cnn_tensor *bad = NULL, *good = cnn_tensor_retain(cnn_dict_get(src, "fc.weight"));
    CHECK_OK(cnn_tensor_zeros(CNN_SHAPE(11, 512), CNN_CPU, &bad));
    CHECK_OK(cnn_dict_set(src, "fc.weight", bad));
    CHECK_ERR(cnn_dict_load(db, src, false, NULL), CNN_ERR_SHAPE);
    CHECK(strstr(cnn_last_error(), "fc.weight"));
    CHECK_OK(cnn_dict_set(src, "fc.weight", good));
    /* extra */
    CHECK_OK(cnn_dict_set(src, "fc.extra", bad));
    cnn_load_report r;
    CHECK_ERR(cnn_dict_load(db, src, true, &r), CNN_ERR_NOT_FOUND);
    CHECK(r.n_unexpected == 1 && strstr(r.unexpected, "fc.extra"));
    CHECK_OK(cnn_dict_load(db, src, false, &r));
    /* missing: a dict without layer1.0.bn1.running_var */
    cnn_dict *part = NULL;
    CHECK_OK(cnn_dict_create(&part));
    for (int i = 0; i < cnn_dict_size(da); i++)
        if (strcmp(cnn_dict_name(da, i), "layer1.0.bn1.running_var"))
            CHECK_OK(cnn_dict_set(part, cnn_dict_name(da, i), cnn_dict_at(da, i)));
    CHECK_ERR(cnn_dict_load(db, part, true, &r), CNN_ERR_NOT_FOUND);
    CHECK(r.n_missing == 1 && strstr(r.missing, "layer1.0.bn1.running_var"));
    CHECK_OK(cnn_dict_load(db, part, false, &r));
    CHECK(r.n_missing == 1 && r.n_unexpected == 0);
    cnn_tensor_free(&yb);
    CHECK_OK(cnn_model_forward(b, x, false, &yb));
    CHECK(max_abs_diff(ya, yb) == 0.0f);
    remove(path);
    CHECK_ERR(cnn_model_load(b, path, true, NULL), CNN_ERR_IO);
    cnn_dict_destroy(&part);
    cnn_dict_destroy(&src);
    free_tensors(&x, &ya, &yb, &bad, &good);
    cnn_model_destroy(&a);
    cnn_model_destroy(&b);
}
