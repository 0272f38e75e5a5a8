/* registry.c — the zoo's names: lookup, option checks and defaults, then the architecture
 * builder. An unknown name fails with the list of valid names; nothing here builds layers. */
#include "model.h"

typedef enum { A_LENET, A_ALEXNET, A_VGG, A_VGG_BN, A_RESNET, A_RESNET_SMALL } arch_kind;

typedef struct zoo_entry {
    const char *name;
    arch_kind arch;
    int depth;
    int classes, channels;  /* defaults */
    int input, min_input;   /* usual and smallest square input */
} zoo_entry;

/* name, architecture, depth, default classes and channels, usual and smallest input */
#define ZOO(X)                                                                                    \
    X("lenet5", A_LENET, 5, 10, 1, 32, 28)                                                        \
    X("alexnet", A_ALEXNET, 8, 1000, 3, 224, 63)                                                  \
    X("vgg11", A_VGG, 11, 1000, 3, 224, 32)                                                       \
    X("vgg11_bn", A_VGG_BN, 11, 1000, 3, 224, 32)                                                 \
    X("vgg13", A_VGG, 13, 1000, 3, 224, 32)                                                       \
    X("vgg13_bn", A_VGG_BN, 13, 1000, 3, 224, 32)                                                 \
    X("vgg16", A_VGG, 16, 1000, 3, 224, 32)                                                       \
    X("vgg16_bn", A_VGG_BN, 16, 1000, 3, 224, 32)                                                 \
    X("vgg19", A_VGG, 19, 1000, 3, 224, 32)                                                       \
    X("vgg19_bn", A_VGG_BN, 19, 1000, 3, 224, 32)                                                 \
    X("resnet18", A_RESNET, 18, 1000, 3, 224, 1)                                                  \
    X("resnet34", A_RESNET, 34, 1000, 3, 224, 1)                                                  \
    X("resnet50", A_RESNET, 50, 1000, 3, 224, 1)                                                  \
    X("resnet101", A_RESNET, 101, 1000, 3, 224, 1)                                                \
    X("resnet152", A_RESNET, 152, 1000, 3, 224, 1)                                                \
    X("resnet18_small", A_RESNET_SMALL, 18, 10, 3, 32, 1)                                         \
    X("resnet34_small", A_RESNET_SMALL, 34, 10, 3, 32, 1)                                         \
    X("resnet50_small", A_RESNET_SMALL, 50, 10, 3, 32, 1)
#define ZOO_ENTRY(n, a, d, c, ch, in, min) {n, a, d, c, ch, in, min},
#define ZOO_NAME(n, a, d, c, ch, in, min) n,
static const zoo_entry zoo[] = {ZOO(ZOO_ENTRY)};
static const char *const zoo_names[] = {ZOO(ZOO_NAME)};
#define ZOO_SIZE ((int)(sizeof zoo / sizeof zoo[0]))

const char *const *cnn_model_names(int *count)
{
    if (count) *count = ZOO_SIZE;
    return zoo_names;
}

/* Largest sizes accepted: beyond them a typo, not a model, is the likelier cause. */
#define MAX_CLASSES 1000000
#define MAX_CHANNELS 4096

cnn_status cnn_model_create_ex(const char *name, const cnn_model_options *opts, cnn_model **out)
{
    CNN_CHECK(out, CNN_ERR_INVALID_ARG, "model_create: out is NULL");
    *out = NULL;
    CNN_CHECK(name, CNN_ERR_INVALID_ARG, "model_create: name is NULL");
    cnn_model_options o = opts ? *opts : cnn_model_default_options();
    const zoo_entry *z = NULL;
    for (int i = 0; i < ZOO_SIZE; i++)
        if (strcmp(zoo[i].name, name) == 0) z = &zoo[i];
    if (!z) {
        char list[512] = "";
        size_t len = 0;
        for (int i = 0; i < ZOO_SIZE && len < sizeof list; i++)
            len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", i ? ", " : "",
                                    zoo[i].name);
        return cnn_error(CNN_ERR_NOT_FOUND, "model_create: unknown model '%s' (known: %s)", name,
                         list);
    }
    CNN_CHECK(o.num_classes >= 0 && o.num_classes <= MAX_CLASSES, CNN_ERR_INVALID_ARG,
              "%s: num_classes %d must be in 1..%d (0 for the default %d)", name, o.num_classes,
              MAX_CLASSES, z->classes);
    CNN_CHECK(o.in_channels >= 0 && o.in_channels <= MAX_CHANNELS, CNN_ERR_INVALID_ARG,
              "%s: in_channels %d must be in 1..%d (0 for the default %d)", name, o.in_channels,
              MAX_CHANNELS, z->channels);
    CNN_CHECK(o.dropout >= 0.0f && o.dropout < 1.0f, CNN_ERR_INVALID_ARG,
              "%s: dropout %g must be in [0, 1)", name, (double)o.dropout);
    cnn_model *m = NULL;
    CNN_TRY(cnn_model_alloc(name, &m));
    m->skip_init = o.skip_init;
    cnn_model_info *info = &m->info;
    info->num_classes = o.num_classes ? o.num_classes : z->classes;
    info->in_channels = o.in_channels ? o.in_channels : z->channels;
    info->input_h = info->input_w = z->input;
    info->min_h = info->min_w = z->min_input;
    bool imagenet = z->classes == 1000 && info->in_channels == 3;
    static const float in_mean[3] = {0.485f, 0.456f, 0.406f}, in_std[3] = {0.229f, 0.224f, 0.225f};
    for (int c = 0; c < 3; c++) {
        info->mean[c] = imagenet ? in_mean[c] : 0.5f;
        info->std[c] = imagenet ? in_std[c] : 0.5f;
    }
    cnn_status st = CNN_OK;
    switch (z->arch) {
    case A_LENET: st = cnn_build_lenet5(m, &o); break;
    case A_ALEXNET: st = cnn_build_alexnet(m, &o); break;
    case A_VGG:
    case A_VGG_BN: st = cnn_build_vgg(m, &o, z->depth, z->arch == A_VGG_BN); break;
    case A_RESNET:
    case A_RESNET_SMALL: st = cnn_build_resnet(m, &o, z->depth, z->arch == A_RESNET_SMALL); break;
    }
    if (st != CNN_OK) {
        cnn_model_destroy(&m);
        return cnn_error_prefix(st, "%s", name);
    }
    *out = m;
    return CNN_OK;
}

cnn_status cnn_model_create(const char *name, int num_classes, int in_channels, cnn_model **out)
{
    cnn_model_options o = cnn_model_default_options();
    o.num_classes = num_classes;
    o.in_channels = in_channels;
    return cnn_model_create_ex(name, &o, out);
}
