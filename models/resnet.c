/* resnet.c — torchvision's ResNet 18/34 (BasicBlock) and 50/101/152 (Bottleneck, stride on the
 * 3x3 conv: "v1.5"), plus a small-input variant (3x3 stride-1 stem, no max-pool) for 28..64
 * pixel images. Names and initialisation as torchvision's. */
#include "model.h"

/* One residual block named `b` (e.g. "layer2.0"): in -> planes * expansion channels. */
static cnn_status block(cnn_model *m, const char *b, int in, int planes, int stride,
                        bool bottleneck, float last_gamma)
{
    char n[128];
    int out = bottleneck ? planes * 4 : planes;
#define NAME(leaf) (snprintf(n, sizeof n, "%s.%s", b, leaf), n)
    CNN_TRY(cnn_mdl_res(m, "", MS_RES_SAVE));
    if (bottleneck) {
        CNN_TRY(cnn_mdl_conv(m, NAME("conv1"), in, planes, 1, 1, 0, false, MI_KAIMING_OUT));
        CNN_TRY(cnn_mdl_bn(m, NAME("bn1"), planes, 1.0f));
        CNN_TRY(cnn_mdl_act(m, NAME("relu"), MS_RELU));
        CNN_TRY(cnn_mdl_conv(m, NAME("conv2"), planes, planes, 3, stride, 1, false,
                             MI_KAIMING_OUT));
        CNN_TRY(cnn_mdl_bn(m, NAME("bn2"), planes, 1.0f));
        CNN_TRY(cnn_mdl_act(m, NAME("relu"), MS_RELU));
        CNN_TRY(cnn_mdl_conv(m, NAME("conv3"), planes, out, 1, 1, 0, false, MI_KAIMING_OUT));
        CNN_TRY(cnn_mdl_bn(m, NAME("bn3"), out, last_gamma));
    } else {
        CNN_TRY(cnn_mdl_conv(m, NAME("conv1"), in, planes, 3, stride, 1, false, MI_KAIMING_OUT));
        CNN_TRY(cnn_mdl_bn(m, NAME("bn1"), planes, 1.0f));
        CNN_TRY(cnn_mdl_act(m, NAME("relu"), MS_RELU));
        CNN_TRY(cnn_mdl_conv(m, NAME("conv2"), planes, planes, 3, 1, 1, false, MI_KAIMING_OUT));
        CNN_TRY(cnn_mdl_bn(m, NAME("bn2"), planes, last_gamma));
    }
    if (stride != 1 || in != out) {
        CNN_TRY(cnn_mdl_res(m, "", MS_RES_BRANCH));
        CNN_TRY(cnn_mdl_conv(m, NAME("downsample.0"), in, out, 1, stride, 0, false,
                             MI_KAIMING_OUT));
        CNN_TRY(cnn_mdl_bn(m, NAME("downsample.1"), out, 1.0f));
    }
    CNN_TRY(cnn_mdl_res(m, NAME("add"), MS_RES_ADD));
    return cnn_mdl_act(m, NAME("relu"), MS_RELU);
#undef NAME
}

/* x: (N, C, H, W) -> (N, num_classes); any H, W >= 1 (adaptive average pooling at the end). */
cnn_status cnn_build_resnet(cnn_model *m, const cnn_model_options *o, int depth, bool small)
{
    static const int cfg[][5] = {{18, 2, 2, 2, 2},  {34, 3, 4, 6, 3},  {50, 3, 4, 6, 3},
                                 {101, 3, 4, 23, 3}, {152, 3, 8, 36, 3}};
    const int *c = NULL;
    for (size_t i = 0; i < sizeof cfg / sizeof cfg[0]; i++)
        if (cfg[i][0] == depth) c = cfg[i];
    CNN_CHECK(c, CNN_ERR_NOT_FOUND, "resnet: no configuration for depth %d", depth);
    bool bottleneck = depth >= 50;
    float last_gamma = o->zero_init_residual ? 0.0f : 1.0f;
    if (small) {
        CNN_TRY(cnn_mdl_conv(m, "conv1", m->info.in_channels, 64, 3, 1, 1, false, MI_KAIMING_OUT));
    } else {
        CNN_TRY(cnn_mdl_conv(m, "conv1", m->info.in_channels, 64, 7, 2, 3, false, MI_KAIMING_OUT));
    }
    CNN_TRY(cnn_mdl_bn(m, "bn1", 64, 1.0f));
    CNN_TRY(cnn_mdl_act(m, "relu", MS_RELU));
    if (!small) CNN_TRY(cnn_mdl_pool(m, "maxpool", MS_MAXPOOL, 3, 2, 1));
    int in = 64;
    char name[48];
    for (int l = 0; l < 4; l++) {
        int planes = 64 << l;
        for (int b = 0; b < c[l + 1]; b++) {
            snprintf(name, sizeof name, "layer%d.%d", l + 1, b);
            CNN_TRY(block(m, name, in, planes, (b == 0 && l > 0) ? 2 : 1, bottleneck, last_gamma));
            in = bottleneck ? planes * 4 : planes;
        }
    }
    CNN_TRY(cnn_mdl_adaptive_avg(m, "avgpool", 1, 1));
    CNN_TRY(cnn_mdl_act(m, "flatten", MS_FLATTEN));
    return cnn_mdl_linear(m, "fc", in, m->info.num_classes, MI_TORCH_DEFAULT);
}
