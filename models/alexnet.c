/* alexnet.c — torchvision's AlexNet (the one-GPU variant of "One weird trick", no LRN): module
 * names features.N / classifier.N as torchvision's, PyTorch's default initialisation. */
#include "model.h"

/* x: (N, C, H, W), H, W >= 63 -> (N, num_classes). */
cnn_status cnn_build_alexnet(cnn_model *m, const cnn_model_options *o)
{
    const minit d = MI_TORCH_DEFAULT;
    CNN_TRY(cnn_mdl_conv(m, "features.0", m->info.in_channels, 64, 11, 4, 2, true, d));
    CNN_TRY(cnn_mdl_act(m, "features.1", MS_RELU));
    CNN_TRY(cnn_mdl_pool(m, "features.2", MS_MAXPOOL, 3, 2, 0));
    CNN_TRY(cnn_mdl_conv(m, "features.3", 64, 192, 5, 1, 2, true, d));
    CNN_TRY(cnn_mdl_act(m, "features.4", MS_RELU));
    CNN_TRY(cnn_mdl_pool(m, "features.5", MS_MAXPOOL, 3, 2, 0));
    CNN_TRY(cnn_mdl_conv(m, "features.6", 192, 384, 3, 1, 1, true, d));
    CNN_TRY(cnn_mdl_act(m, "features.7", MS_RELU));
    CNN_TRY(cnn_mdl_conv(m, "features.8", 384, 256, 3, 1, 1, true, d));
    CNN_TRY(cnn_mdl_act(m, "features.9", MS_RELU));
    CNN_TRY(cnn_mdl_conv(m, "features.10", 256, 256, 3, 1, 1, true, d));
    CNN_TRY(cnn_mdl_act(m, "features.11", MS_RELU));
    CNN_TRY(cnn_mdl_pool(m, "features.12", MS_MAXPOOL, 3, 2, 0));
    CNN_TRY(cnn_mdl_adaptive_avg(m, "avgpool", 6, 6));
    CNN_TRY(cnn_mdl_act(m, "flatten", MS_FLATTEN));
    CNN_TRY(cnn_mdl_dropout(m, "classifier.0", o->dropout));
    CNN_TRY(cnn_mdl_linear(m, "classifier.1", 256 * 6 * 6, 4096, d));
    CNN_TRY(cnn_mdl_act(m, "classifier.2", MS_RELU));
    CNN_TRY(cnn_mdl_dropout(m, "classifier.3", o->dropout));
    CNN_TRY(cnn_mdl_linear(m, "classifier.4", 4096, 4096, d));
    CNN_TRY(cnn_mdl_act(m, "classifier.5", MS_RELU));
    return cnn_mdl_linear(m, "classifier.6", 4096, m->info.num_classes, d);
}
