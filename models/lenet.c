/* lenet.c — LeNet-5 (LeCun et al. 1998) in its common modern form: full C3 connections, plain
 * average pooling for S2/S4, F5 as a linear layer on 16*5*5 features. Composition only. */
#include "model.h"

/* x: (N, C, 32, 32), or (N, C, 28, 28) zero-padded to 32x32 by conv1's padding (as LeCun
 * padded MNIST's 28x28 digits) -> (N, num_classes). Parameters: conv1, conv2, fc1, fc2, fc3. */
cnn_status cnn_build_lenet5(cnn_model *m, const cnn_model_options *o)
{
    mstep_kind act = o->tanh ? MS_TANH : MS_RELU;
    CNN_TRY(cnn_mdl_conv(m, "conv1", m->info.in_channels, 6, 5, 1, 0, true, MI_TORCH_DEFAULT));
    cnn_mdl_last(m)->pad_to = 32;
    CNN_TRY(cnn_mdl_act(m, "act1", act));
    CNN_TRY(cnn_mdl_pool(m, "pool1", MS_AVGPOOL, 2, 2, 0));
    CNN_TRY(cnn_mdl_conv(m, "conv2", 6, 16, 5, 1, 0, true, MI_TORCH_DEFAULT));
    CNN_TRY(cnn_mdl_act(m, "act2", act));
    CNN_TRY(cnn_mdl_pool(m, "pool2", MS_AVGPOOL, 2, 2, 0));
    CNN_TRY(cnn_mdl_act(m, "flatten", MS_FLATTEN));
    CNN_TRY(cnn_mdl_linear(m, "fc1", 16 * 5 * 5, 120, MI_TORCH_DEFAULT));
    CNN_TRY(cnn_mdl_act(m, "act3", act));
    CNN_TRY(cnn_mdl_linear(m, "fc2", 120, 84, MI_TORCH_DEFAULT));
    CNN_TRY(cnn_mdl_act(m, "act4", act));
    return cnn_mdl_linear(m, "fc3", 84, m->info.num_classes, MI_TORCH_DEFAULT);
}
