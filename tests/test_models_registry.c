/* test_models_registry.c — the zoo's table and bookkeeping against independent facts: each
 * name's defaults, input sizes and normalisation, torchvision's parameter counts of the models
 * test_models.c does not count, option limits, refused names and inputs, weight-decay groups and
 * buffers, fresh and zero-initialised batch norms, and the summaries of LeNet-5 (computed by
 * hand), AlexNet and ResNet-18. */
#include "gradcheck.h"

/* ---- the registry ---------------------------------------------------------------------------
 * Defaults, usual and smallest input, normalisation (ImageNet's for the 1000-class RGB
 * architectures, also at other class counts; 0.5 otherwise) and, for the models test_models.c
 * does not count, torchvision's parameter count and state_dict length (the _small ones:
 * torchvision's ResNet with conv1 = Conv2d(3, 64, 3, 1, 1), maxpool = Identity, 10 classes). */
typedef struct reg_case {
    const char *name;
    int classes, channels, input, min_input;
    bool imagenet;
    int64_t params;
    int keys;
} reg_case;

static const reg_case regs[] = {
    {"lenet5", 10, 1, 32, 28, false, 0, 0},
    {"alexnet", 1000, 3, 224, 63, true, 0, 0},
    {"vgg11", 1000, 3, 224, 32, true, 0, 0},
    {"vgg11_bn", 1000, 3, 224, 32, true, 132868840, 62},
    {"vgg13", 1000, 3, 224, 32, true, 0, 0},
    {"vgg13_bn", 1000, 3, 224, 32, true, 133053736, 76},
    {"vgg16", 1000, 3, 224, 32, true, 0, 0},
    {"vgg16_bn", 1000, 3, 224, 32, true, 0, 0},
    {"vgg19", 1000, 3, 224, 32, true, 143667240, 38},
    {"vgg19_bn", 1000, 3, 224, 32, true, 0, 0},
    {"resnet18", 1000, 3, 224, 1, true, 0, 0},
    {"resnet34", 1000, 3, 224, 1, true, 0, 0},
    {"resnet50", 1000, 3, 224, 1, true, 0, 0},
    {"resnet101", 1000, 3, 224, 1, true, 0, 0},
    {"resnet152", 1000, 3, 224, 1, true, 0, 0},
    {"resnet18_small", 10, 3, 32, 1, false, 11173962, 122},
    {"resnet34_small", 10, 3, 32, 1, false, 21282122, 218},
    {"resnet50_small", 10, 3, 32, 1, false, 23520842, 320},
};

static cnn_status create_uninit(const char *name, int classes, int channels, cnn_model **m)
{
    cnn_model_options o = cnn_model_default_options();
    o.num_classes = classes;
    o.in_channels = channels;
    o.skip_init = true;
    return cnn_model_create_ex(name, &o, m);
}

static bool normalises_as(const cnn_model_info *i, bool imagenet)
{
    static const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    for (int c = 0; c < 3; c++)
        if (i->mean[c] != (imagenet ? mean[c] : 0.5f) || i->std[c] != (imagenet ? std[c] : 0.5f))
            return false;
    return true;
}

TEST(models_registry_defaults_and_input_sizes)
{
    int n = 0;
    const char *const *names = cnn_model_names(&n);
    REQUIRE(n == (int)(sizeof regs / sizeof regs[0]));
    for (int k = 0; k < n; k++) {
        const reg_case *r = &regs[k];
        cnn_model *m = NULL;
        CHECK(strcmp(names[k], r->name) == 0);
        CHECK_OK(create_uninit(r->name, 0, 0, &m));
        cnn_model_info i = cnn_model_get_info(m);
        if (i.num_classes != r->classes || i.in_channels != r->channels || i.input_h != r->input ||
            i.input_w != r->input || i.min_h != r->min_input || i.min_w != r->min_input ||
            !normalises_as(&i, r->imagenet))
            cnn_test_fail(__FILE__, __LINE__, "%s: registry entry differs", r->name);
        if (r->params) {
            CHECK_NEAR(cnn_model_num_parameters(m), r->params, 0);
            CHECK_NEAR(cnn_dict_size(cnn_model_state(m)), r->keys, 0);
        }
        cnn_model_summary s;
        CHECK_OK(cnn_model_summarize(m, r->input, r->input, &s));
        CHECK(s.out_shape.ndim == 2 && s.out_shape.d[1] == r->classes);
        cnn_model_summary_free(&s);
        CHECK_OK(cnn_model_summarize(m, r->min_input, r->min_input, &s));
        cnn_model_summary_free(&s);
        int below = r->min_input - 1;
        if (below > 0) CHECK_ERR(cnn_model_summarize(m, below, below, &s), CNN_ERR_SHAPE);
        cnn_model_destroy(&m);
    }
    /* ImageNet's normalisation follows the architecture's data (RGB, ImageNet-sized), not the
     * class count asked for */
    cnn_model *m = NULL;
    CHECK_OK(create_uninit("resnet18", 10, 0, &m));
    cnn_model_info i = cnn_model_get_info(m);
    CHECK(normalises_as(&i, true));
    cnn_model_destroy(&m);
    CHECK_OK(create_uninit("resnet18", 0, 1, &m));
    i = cnn_model_get_info(m);
    CHECK(i.num_classes == 1000 && normalises_as(&i, false));
    cnn_model_destroy(&m);
    CHECK_OK(create_uninit("resnet18_small", 1000, 0, &m));
    i = cnn_model_get_info(m);
    CHECK(normalises_as(&i, false));
    cnn_model_destroy(&m);
}

TEST(models_option_limits)
{
    cnn_model *m = NULL;
    CHECK_OK(create_uninit("lenet5", 0, 4096, &m)); /* the largest channel count accepted */
    cnn_model_destroy(&m);
    CHECK_ERR(create_uninit("lenet5", 0, 4097, &m), CNN_ERR_INVALID_ARG);
    CHECK_ERR(create_uninit("lenet5", 1000001, 0, &m), CNN_ERR_INVALID_ARG);
    cnn_model_options o = cnn_model_default_options();
    o.dropout = -0.1f;
    CHECK_ERR(cnn_model_create_ex("alexnet", &o, &m), CNN_ERR_INVALID_ARG);
    o.dropout = 1.0f;
    CHECK_ERR(cnn_model_create_ex("alexnet", &o, &m), CNN_ERR_INVALID_ARG);
    CHECK(m == NULL);
    /* LeNet-5 pads a 28x28 image, nothing else: 28x32 and 32x28 are refused by that rule */
    CHECK_OK(create_uninit("lenet5", 0, 0, &m));
    cnn_model_summary s;
    CHECK_ERR(cnn_model_summarize(m, 28, 32, &s), CNN_ERR_SHAPE);
    CHECK(strstr(cnn_last_error(), "must be 32x32, or 28x28") != NULL);
    CHECK_ERR(cnn_model_summarize(m, 32, 28, &s), CNN_ERR_SHAPE);
    CHECK(strstr(cnn_last_error(), "must be 32x32, or 28x28") != NULL);
    cnn_model_destroy(&m);
}

/* ---- parameters, buffers and their initial values ------------------------------------------ */
/* Weight decay skips exactly the 1-d parameters (every bias, BN weight and bias); the state
 * holds beside the parameters exactly the BN buffers, none requiring grad; a fresh BN is the
 * identity (weight 1, bias 0, running mean 0, variance 1). */
TEST(models_decay_groups_buffers_and_fresh_batch_norms)
{
    static const char *names[] = {"lenet5", "alexnet", "vgg11_bn", "resnet50_small"};
    for (int k = 0; k < 4; k++) {
        cnn_model *m = NULL;
        CHECK_OK(create_uninit(names[k], 0, 0, &m));
        cnn_dict *p = cnn_model_parameters(m), *d = cnn_model_state(m);
        for (int i = 0; i < cnn_dict_size(p); i++)
            if (cnn_model_param_no_decay(m, i) != (cnn_tensor_ndim(cnn_dict_at(p, i)) == 1))
                cnn_test_fail(__FILE__, __LINE__, "%s: %s decays wrongly", names[k],
                              cnn_dict_name(p, i));
        /* one past the last parameter is no parameter (a sanitizer sees the read past it) */
        CHECK(!cnn_model_param_no_decay(m, cnn_dict_size(p)));
        for (int i = 0; i < cnn_dict_size(d); i++) {
            const char *n = cnn_dict_name(d, i);
            cnn_tensor *t = cnn_dict_at(d, i);
            bool buffer = ends_with(n, ".running_mean") || ends_with(n, ".running_var") ||
                          ends_with(n, ".num_batches_tracked");
            if (buffer == (cnn_dict_get(p, n) != NULL) || buffer == cnn_tensor_requires_grad(t))
                cnn_test_fail(__FILE__, __LINE__, "%s: %s is%s a buffer", names[k], n,
                              buffer ? "" : " not");
            char w[96];
            snprintf(w, sizeof w, "%.*s.running_var", (int)(strrchr(n, '.') - n), n);
            if (!cnn_dict_get(d, w) || ends_with(n, ".num_batches_tracked")) continue;
            float want = ends_with(n, ".weight") || ends_with(n, ".running_var") ? 1.0f : 0.0f;
            const float *v = cnn_tensor_cdata(t);
            for (int64_t c = 0; c < cnn_tensor_numel(t); c++)
                if (v[c] != want) {
                    cnn_test_fail(__FILE__, __LINE__, "%s: %s[%lld] is %g, not %g", names[k], n,
                                  (long long)c, v[c], want);
                    break;
                }
        }
        cnn_model_destroy(&m);
    }
}

/* zero_init_residual (torchvision's): the last BN of each block's main path starts at weight 0
 * (bn2 in a BasicBlock, bn3 in a Bottleneck); bn1 and the projection's BN keep 1. */
TEST(models_zero_init_residual_picks_the_last_bn)
{
    static const char *names[] = {"resnet18", "resnet50"};
    cnn_model_options o = cnn_model_default_options();
    o.zero_init_residual = true;
    o.skip_init = true;
    for (int k = 0; k < 2; k++) {
        cnn_model *m = NULL;
        CHECK_OK(cnn_model_create_ex(names[k], &o, &m));
        cnn_dict *d = cnn_model_state(m);
        const char *last = k == 0 ? ".bn2.weight" : ".bn3.weight";
        int zeroed = 0;
        for (int i = 0; i < cnn_dict_size(d); i++) {
            const char *n = cnn_dict_name(d, i);
            if (!ends_with(n, ".weight") || cnn_tensor_ndim(cnn_dict_at(d, i)) != 1) continue;
            float want = strncmp(n, "layer", 5) == 0 && ends_with(n, last) ? 0.0f : 1.0f;
            zeroed += want == 0.0f;
            const float *v = cnn_tensor_cdata(cnn_dict_at(d, i));
            if (v[0] != want || v[cnn_tensor_numel(cnn_dict_at(d, i)) - 1] != want)
                cnn_test_fail(__FILE__, __LINE__, "%s: %s starts at %g, not %g", names[k], n,
                              v[0], want);
        }
        CHECK(zeroed == (k == 0 ? 8 : 16)); /* one per block */
        cnn_model_destroy(&m);
    }
}

/* ---- the summary ------------------------------------------------------------------------------
 * LeNet-5 at 28x28 (padded to 32) by hand: torch's module types, output shapes, and parameters
 * and MACs per layer (a conv: K*C*R*S per output pixel; a linear: in*out). */
TEST(models_lenet_summary_by_hand)
{
    static const struct {
        const char *name, *type;
        int c, h;
        int64_t params, macs;
    } rows[] = {
        {"conv1", "Conv2d", 6, 28, 156, 6 * 25 * 28 * 28}, {"act1", "Tanh", 6, 28, 0, 0},
        {"pool1", "AvgPool2d", 6, 14, 0, 0}, {"conv2", "Conv2d", 16, 10, 2416, 16 * 150 * 100},
        {"act2", "Tanh", 16, 10, 0, 0}, {"pool2", "AvgPool2d", 16, 5, 0, 0},
        {"flatten", "Flatten", 400, 0, 0, 0}, {"fc1", "Linear", 120, 0, 48120, 48000},
        {"act3", "Tanh", 120, 0, 0, 0}, {"fc2", "Linear", 84, 0, 10164, 10080},
        {"act4", "Tanh", 84, 0, 0, 0}, {"fc3", "Linear", 10, 0, 850, 840},
    };
    cnn_model_options o = cnn_model_default_options();
    o.tanh = true;
    cnn_model *m = NULL;
    CHECK_OK(cnn_model_create_ex("lenet5", &o, &m));
    cnn_model_summary s;
    CHECK_OK(cnn_model_summarize(m, 28, 28, &s));
    CHECK(s.n_layers == 12 && s.total_params == 61706 && s.total_macs == 416520);
    for (int i = 0; i < s.n_layers && i < 12; i++) {
        const cnn_layer_summary *r = &s.layers[i];
        cnn_shape want = rows[i].h ? CNN_SHAPE(1, rows[i].c, rows[i].h, rows[i].h)
                                   : CNN_SHAPE(1, rows[i].c);
        if (strcmp(r->name, rows[i].name) || strcmp(r->type, rows[i].type) ||
            !shape_eq(r->out_shape, want) || r->params != rows[i].params ||
            r->macs != rows[i].macs)
            cnn_test_fail(__FILE__, __LINE__, "row %d: %s %s %lld %lld, expected %s %s %lld %lld",
                          i, r->name, r->type, (long long)r->params, (long long)r->macs,
                          rows[i].name, rows[i].type, (long long)rows[i].params,
                          (long long)rows[i].macs);
    }
    cnn_model_summary_free(&s);
    cnn_model_destroy(&m);
    /* AlexNet's and VGG's classifiers as torchvision lists them */
    static const char *cls[2][7] = {
        {"Dropout", "Linear", "ReLU", "Dropout", "Linear", "ReLU", "Linear"},
        {"Linear", "ReLU", "Dropout", "Linear", "ReLU", "Dropout", "Linear"}};
    for (int k = 0; k < 2; k++) {
        const char *name = k == 0 ? "alexnet" : "vgg11";
        CHECK_OK(create_uninit(name, 0, 0, &m));
        CHECK_OK(cnn_model_summarize(m, 224, 224, &s));
        REQUIRE(s.n_layers >= 7);
        for (int i = 0; i < 7; i++) {
            const cnn_layer_summary *r = &s.layers[s.n_layers - 7 + i];
            char want[32];
            snprintf(want, sizeof want, "classifier.%d", i);
            if (strcmp(r->name, want) || strcmp(r->type, cls[k][i]))
                cnn_test_fail(__FILE__, __LINE__, "%s: %s %s, expected %s %s", name, r->name,
                              r->type, want, cls[k][i]);
        }
        cnn_model_summary_free(&s);
        cnn_model_destroy(&m);
    }
}

/* Status of a forward pass on a random input of shape s (the output must be NULL on error). */
static cnn_status forward_status(cnn_model *m, cnn_shape s)
{
    cnn_tensor *x = rand_tensor(s, 0, 1, 0), *y = NULL;
    cnn_status st = cnn_model_forward(m, x, false, &y);
    if (st != CNN_OK) CHECK(y == NULL && cnn_last_error()[0]);
    free_tensors(&x, &y);
    return st;
}

TEST(models_registry_and_input_errors)
{
    int n = 0;
    const char *const *names = cnn_model_names(&n);
    REQUIRE(names && n == 18);
    for (int i = 0; i < n; i++) { /* every listed name builds */
        cnn_model *m = NULL;
        CHECK_OK(create_uninit(names[i], 0, 0, &m));
        cnn_model_destroy(&m);
    }
    cnn_model *m = NULL;
    CHECK_ERR(cnn_model_create("resnet51", 0, 0, &m), CNN_ERR_NOT_FOUND);
    CHECK(strstr(cnn_last_error(), "resnet51") && strstr(cnn_last_error(), "resnet50") &&
          strstr(cnn_last_error(), "lenet5"));
    CHECK_ERR(cnn_model_create(NULL, 0, 0, &m), CNN_ERR_INVALID_ARG);
    CHECK_ERR(cnn_model_create("resnet18", -1, 0, &m), CNN_ERR_INVALID_ARG);
    CHECK_ERR(cnn_model_create("resnet18", 10, -3, &m), CNN_ERR_INVALID_ARG);
    cnn_model_options o = {.dropout = 1.0f};
    CHECK_ERR(cnn_model_create_ex("vgg16", &o, &m), CNN_ERR_INVALID_ARG);
    CHECK(m == NULL);

    CHECK_OK(create_uninit("alexnet", 10, 0, &m));
    CHECK(forward_status(m, CNN_SHAPE(1, 3, 62, 62)) == CNN_ERR_SHAPE); /* 63x63 is the minimum */
    CHECK(strstr(cnn_last_error(), "alexnet") && strstr(cnn_last_error(), "features.12"));
    cnn_model_summary s;
    CHECK_ERR(cnn_model_summarize(m, 62, 62, &s), CNN_ERR_SHAPE);
    CHECK_OK(cnn_model_summarize(m, 63, 63, &s));
    /* torchvision's AlexNet: an 11x11/4 conv padded by 2, 3x3/2 max pools, dropout 0.5. */
    REQUIRE(s.n_layers > 15);
    CHECK(s.layers[0].conv.stride[0] == 4 && s.layers[0].conv.padding[0] == 2);
    CHECK(!strcmp(s.layers[2].type, "MaxPool2d") && s.layers[2].pool.kernel[1] == 3 &&
          s.layers[2].pool.stride[1] == 2 && s.layers[2].pool.padding[1] == 0);
    CHECK(shape_eq(s.layers[2].in_shape, s.layers[1].out_shape));
    CHECK(!strcmp(s.layers[15].type, "Dropout") && s.layers[15].dropout_p == 0.5f);
    CHECK(!strcmp(s.layers[14].type, "Flatten") && s.layers[14].dropout_p == 0.0f &&
          s.layers[14].pool.kernel[0] == 0 && s.layers[14].conv.stride[0] == 0);
    cnn_model_summary_free(&s);
    CHECK(forward_status(m, CNN_SHAPE(1, 1, 64, 64)) == CNN_ERR_SHAPE); /* 1 channel, not 3 */
    CHECK(forward_status(m, CNN_SHAPE(3, 64, 64)) == CNN_ERR_SHAPE);
    cnn_model_destroy(&m);
    CHECK_OK(cnn_model_create("lenet5", 0, 0, &m));
    CHECK(forward_status(m, CNN_SHAPE(1, 1, 29, 29)) == CNN_ERR_SHAPE);
    CHECK(forward_status(m, CNN_SHAPE(1, 1, 30, 30)) == CNN_ERR_SHAPE);
    CHECK(strstr(cnn_last_error(), "lenet5") && strstr(cnn_last_error(), "28x28"));
    CHECK(forward_status(m, CNN_SHAPE(0, 1, 32, 32)) == CNN_ERR_SHAPE);
    CHECK(strstr(cnn_last_error(), "batch size 0") != NULL);
    cnn_model_destroy(&m);
    cnn_model_destroy(&m); /* NULL-safe */
    /* Multiply-add counts past 64 bits are refused, not wrapped into a negative count. */
    CHECK_OK(create_uninit("resnet50", 0, 0, &m));
    CHECK_ERR(cnn_model_summarize(m, 2000000000, 2000000000, &s), CNN_ERR_INVALID_ARG);
    CHECK(strstr(cnn_last_error(), "64 bits") && s.layers == NULL);
    cnn_model_destroy(&m);
}

TEST(models_summary_rows_and_format)
{
    cnn_model *m = NULL;
    CHECK_OK(create_uninit("resnet18", 0, 0, &m));
    cnn_model_summary s;
    CHECK_OK(cnn_model_summarize(m, 224, 224, &s));
    REQUIRE(s.n_layers > 0);
    CHECK(strcmp(s.layers[0].name, "conv1") == 0 && strcmp(s.layers[0].type, "Conv2d") == 0);
    CHECK(shape_eq(s.layers[0].out_shape, CNN_SHAPE(1, 64, 112, 112)));
    CHECK(s.layers[0].macs == 64LL * 3 * 49 * 112 * 112 && s.layers[0].params == 64 * 3 * 49);
    int adds = 0;
    for (int i = 0; i < s.n_layers; i++) adds += strcmp(s.layers[i].type, "Add") == 0;
    CHECK(adds == 8);
    /* What each layer runs with: the stem's 7x7/2 pad 3, the 3x3/2 pad 1 max pool, and a
     * downsample conv's input, the block's (not the layer before it in the table). */
    CHECK(shape_eq(s.layers[0].in_shape, CNN_SHAPE(1, 3, 224, 224)));
    CHECK(s.layers[0].conv.stride[0] == 2 && s.layers[0].conv.padding[1] == 3);
    int pool = -1, down = -1;
    for (int i = 0; i < s.n_layers; i++) {
        if (!strcmp(s.layers[i].type, "MaxPool2d")) pool = i;
        if (!strcmp(s.layers[i].name, "layer2.0.downsample.0")) down = i;
    }
    REQUIRE(pool >= 0 && down > 0);
    const cnn_pool2d_params *pp = &s.layers[pool].pool;
    CHECK(pp->kernel[0] == 3 && pp->stride[0] == 2 && pp->padding[0] == 1);
    CHECK(shape_eq(s.layers[pool].in_shape, CNN_SHAPE(1, 64, 112, 112)));
    CHECK(shape_eq(s.layers[down].in_shape, CNN_SHAPE(1, 64, 56, 56)));
    CHECK(shape_eq(s.layers[down - 1].out_shape, CNN_SHAPE(1, 128, 28, 28)));
    CHECK(s.layers[down].conv.stride[0] == 2 && s.layers[down].conv.padding[0] == 0);
    size_t need = cnn_model_summary_format(&s, NULL, 0);
    char *buf = malloc(need + 1), small[16];
    REQUIRE(buf && cnn_model_summary_format(&s, buf, need + 1) == need && strlen(buf) == need);
    CHECK(strstr(buf, "layer4.1.conv2") && strstr(buf, "BatchNorm2d") && strstr(buf, "11689512"));
    CHECK(cnn_model_summary_format(&s, small, sizeof small) == need && strlen(small) == 15);
    CHECK(cnn_model_summary_format(&s, NULL, 100) == need); /* no buffer: counts, whatever n */
    CHECK(cnn_model_summary_format(NULL, small, sizeof small) == 0 && small[0] == '\0');
    free(buf);
    cnn_model_summary_free(&s);
    CHECK_ERR(cnn_model_summarize(m, 0, 224, &s), CNN_ERR_INVALID_ARG);
    cnn_model_destroy(&m);
}
