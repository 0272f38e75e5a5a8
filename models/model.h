/* model.h — private to models/: the model object as a flat list of steps (conv, BN, linear,
 * activations, pools, residual save/branch/add) over tensors held in a torchvision-ordered
 * state dict, and the builders each architecture file uses. Users see only cnncuda.h. */
#ifndef CNN_MODEL_H
#define CNN_MODEL_H

#include "internal.h"

typedef enum mstep_kind {
    MS_CONV, MS_BN, MS_LINEAR, MS_RELU, MS_TANH, MS_MAXPOOL, MS_AVGPOOL, MS_ADAPTIVE_AVG,
    MS_DROPOUT, MS_FLATTEN,
    /* Residual blocks: SAVE keeps the block input, BRANCH sets the main path aside and runs
     * the following steps (the downsample) on the saved input, ADD sums the two paths. */
    MS_RES_SAVE, MS_RES_BRANCH, MS_RES_ADD
} mstep_kind;

typedef struct mstep {
    mstep_kind kind;
    char name[48];  /* torchvision module path, e.g. "layer1.0.conv1" ("" for SAVE/BRANCH) */
    int t0;         /* index of the step's first tensor in the state dict, -1 if none */
    bool bias;      /* conv / linear */
    int in_ch, out_ch, kernel; /* conv: channels and square kernel; linear: in/out features */
    cnn_conv2d_params conv;
    int pad_to;     /* conv: inputs 4 pixels smaller than pad_to x pad_to are zero-padded by 2
                       (LeNet-5: 28x28 -> 32x32) */
    cnn_pool2d_params pool;
    int out_h, out_w; /* adaptive pooling */
    float p;          /* dropout */
} mstep;

struct cnn_model {
    cnn_model_info info;
    char name[32];
    mstep *steps;
    int n_steps, cap_steps;
    cnn_dict *state;  /* parameters and buffers, torchvision's state_dict keys and order */
    cnn_dict *params; /* the trainable subset, same tensors, same order */
    bool *no_decay;   /* per params entry: a bias or a BN affine parameter */
    int cap_no_decay;
    cnn_device device;
    bool skip_init; /* conv / linear tensors allocated, not initialised */
    bool no_fusion; /* cnn_model_set_fusion(m, false): every step runs alone */
};

/* How a conv / linear layer is initialised (torchvision's choices). */
typedef enum minit {
    MI_TORCH_DEFAULT, /* weight and bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (nn.Conv2d/Linear) */
    MI_KAIMING_OUT,   /* weight N(0, 2/fan_out) (kaiming_normal_, fan_out, relu), bias 0 */
    MI_NORMAL_001     /* weight N(0, 0.01^2), bias 0 (VGG's classifier) */
} minit;

/* Builders: append a step (and its tensors to the state dict). name is the module path. */
cnn_status cnn_mdl_conv(cnn_model *m, const char *name, int in_ch, int out_ch, int kernel,
                        int stride, int padding, bool bias, minit init);
cnn_status cnn_mdl_bn(cnn_model *m, const char *name, int channels, float gamma);
cnn_status cnn_mdl_linear(cnn_model *m, const char *name, int in_f, int out_f, minit init);
cnn_status cnn_mdl_act(cnn_model *m, const char *name, mstep_kind kind); /* RELU, TANH, FLATTEN */
cnn_status cnn_mdl_pool(cnn_model *m, const char *name, mstep_kind kind, int kernel, int stride,
                        int padding);
cnn_status cnn_mdl_adaptive_avg(cnn_model *m, const char *name, int out_h, int out_w);
cnn_status cnn_mdl_dropout(cnn_model *m, const char *name, float p);
cnn_status cnn_mdl_res(cnn_model *m, const char *name, mstep_kind kind); /* SAVE, BRANCH, ADD */
/* The step appended last (to adjust e.g. pad_to). */
static inline mstep *cnn_mdl_last(cnn_model *m) { return &m->steps[m->n_steps - 1]; }

/* Architecture builders (called by registry.c on a model whose info is filled in). */
cnn_status cnn_build_lenet5(cnn_model *m, const cnn_model_options *o);
cnn_status cnn_build_alexnet(cnn_model *m, const cnn_model_options *o);
cnn_status cnn_build_vgg(cnn_model *m, const cnn_model_options *o, int depth, bool bn);
cnn_status cnn_build_resnet(cnn_model *m, const cnn_model_options *o, int depth, bool small);

/* Shape pass over the steps for input `in`: validates every step (in training, also that each
 * batch norm has more than one value per channel), names the failing one, and (rows non-NULL,
 * room for n_steps) writes one summary row per named step (summary.c). */
cnn_status cnn_mdl_shapes(const cnn_model *m, cnn_shape in, bool training,
                          cnn_layer_summary *rows, int *n_rows);
/* A conv step's parameters for an input shape (adds the padding of pad_to). */
cnn_status cnn_mdl_conv_params(const cnn_model *m, const mstep *s, cnn_shape in,
                               cnn_conv2d_params *p);

/* Model object lifetime (model.c): an empty model named `name`, and its destruction. */
cnn_status cnn_model_alloc(const char *name, cnn_model **out);

#endif /* CNN_MODEL_H */
