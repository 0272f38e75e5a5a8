/* vgg.c — torchvision's VGG 11/13/16/19 (configs A, B, D, E), with or without batch norm:
 * module names features.N / classifier.N and initialisation as torchvision's. */
#include "model.h"

#define POOL 0
static const int cfg_a[] = {64, POOL, 128, POOL, 256, 256, POOL, 512, 512, POOL, 512, 512, POOL,
                            -1};
static const int cfg_b[] = {64, 64, POOL, 128, 128, POOL, 256, 256, POOL, 512, 512, POOL, 512,
                            512, POOL, -1};
static const int cfg_d[] = {64, 64, POOL, 128, 128, POOL, 256, 256, 256, POOL, 512, 512, 512,
                            POOL, 512, 512, 512, POOL, -1};
static const int cfg_e[] = {64, 64, POOL, 128, 128, POOL, 256, 256, 256, 256, POOL, 512, 512,
                            512, 512, POOL, 512, 512, 512, 512, POOL, -1};

/* x: (N, C, H, W), H, W >= 32 -> (N, num_classes). */
cnn_status cnn_build_vgg(cnn_model *m, const cnn_model_options *o, int depth, bool bn)
{
    const int *cfg = depth == 11 ? cfg_a : depth == 13 ? cfg_b : depth == 16 ? cfg_d
                   : depth == 19 ? cfg_e : NULL;
    CNN_CHECK(cfg, CNN_ERR_NOT_FOUND, "vgg: no configuration for depth %d", depth);
    char name[48];
    int in = m->info.in_channels, idx = 0;
    for (int i = 0; cfg[i] >= 0; i++) {
        if (cfg[i] == POOL) {
            snprintf(name, sizeof name, "features.%d", idx++);
            CNN_TRY(cnn_mdl_pool(m, name, MS_MAXPOOL, 2, 2, 0));
            continue;
        }
        snprintf(name, sizeof name, "features.%d", idx++);
        CNN_TRY(cnn_mdl_conv(m, name, in, cfg[i], 3, 1, 1, true, MI_KAIMING_OUT));
        if (bn) {
            snprintf(name, sizeof name, "features.%d", idx++);
            CNN_TRY(cnn_mdl_bn(m, name, cfg[i], 1.0f));
        }
        snprintf(name, sizeof name, "features.%d", idx++);
        CNN_TRY(cnn_mdl_act(m, name, MS_RELU));
        in = cfg[i];
    }
    CNN_TRY(cnn_mdl_adaptive_avg(m, "avgpool", 7, 7));
    CNN_TRY(cnn_mdl_act(m, "flatten", MS_FLATTEN));
    CNN_TRY(cnn_mdl_linear(m, "classifier.0", 512 * 7 * 7, 4096, MI_NORMAL_001));
    CNN_TRY(cnn_mdl_act(m, "classifier.1", MS_RELU));
    CNN_TRY(cnn_mdl_dropout(m, "classifier.2", o->dropout));
    CNN_TRY(cnn_mdl_linear(m, "classifier.3", 4096, 4096, MI_NORMAL_001));
    CNN_TRY(cnn_mdl_act(m, "classifier.4", MS_RELU));
    CNN_TRY(cnn_mdl_dropout(m, "classifier.5", o->dropout));
    return cnn_mdl_linear(m, "classifier.6", 4096, m->info.num_classes, MI_NORMAL_001);
}
