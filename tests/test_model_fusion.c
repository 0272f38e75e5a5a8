/* test_model_fusion.c — the zoo's fusion (cnn_model_set_fusion): evaluation with each BN folded
 * into its conv and conv + add + ReLU as one op, against every layer run alone; training with
 * conv + ReLU and add + ReLU joined, bit-identical to the layers alone. The fused ops themselves
 * are pinned in test_conv.c, test_batchnorm.c and test_autograd.c. */
#include "gradcheck.h"

/* Gives every batch norm statistics and an affine map far from a fresh model's (0, 1, 1, 0), so
 * that folding them into the convs has something to get wrong. */
static void randomise_batch_norms(cnn_model *m)
{
    cnn_dict *d = cnn_model_state(m);
    for (int i = 0; i < cnn_dict_size(d); i++) {
        const char *name = cnn_dict_name(d, i);
        cnn_tensor *t = cnn_dict_at(d, i);
        if (cnn_tensor_ndim(t) != 1 || cnn_tensor_dtype(t) != CNN_F32) continue;
        const char *dot = strrchr(name, '.') ? strrchr(name, '.') : name;
        float lo = -0.5f, hi = 0.5f; /* running_mean, and biases */
        if (strcmp(dot, ".running_var") == 0 || strcmp(dot, ".weight") == 0) lo = 0.5f, hi = 2.0f;
        cnn_tensor *r = rand_tensor(cnn_tensor_shape(t), lo, hi, 0);
        CHECK_OK(cnn_tensor_copy_(t, r));
        cnn_tensor_free(&r);
    }
}

/* Evaluation logits with fusion on (BN folded into the convs, conv + add + ReLU fused) against
 * every layer run alone: equal up to rounding, and not the same bits where a BN was folded
 * (evidence that the fused path ran). */
static void check_eval_fusion(const char *name, int classes, int channels, int h, bool has_bn)
{
    cnn_model *m = NULL;
    CHECK_OK(cnn_model_create(name, classes, channels, &m));
    randomise_batch_norms(m);
    cnn_model_info info = cnn_model_get_info(m);
    cnn_tensor *x = rand_tensor(CNN_SHAPE(2, info.in_channels, h, h), -1, 1, 0);
    cnn_tensor *fused = NULL, *plain = NULL;
    bool was = cnn_set_grad_enabled(false);
    CHECK(cnn_model_fusion(m));
    CHECK_OK(cnn_model_forward(m, x, false, &fused));
    cnn_model_set_fusion(m, false);
    CHECK(!cnn_model_fusion(m));
    CHECK_OK(cnn_model_forward(m, x, false, &plain));
    cnn_set_grad_enabled(was);
    char what[64];
    snprintf(what, sizeof what, "%s fused eval", name);
    float scale = 0;
    const float *pv = cnn_tensor_cdata(plain);
    for (int64_t i = 0; i < cnn_tensor_numel(plain); i++) scale = fmaxf(scale, fabsf(pv[i]));
    CHECK(tensors_close(what, fused, plain, 1e-5f * (1 + scale), 1e-4f));
    const float *fv = cnn_tensor_cdata(fused);
    bool differ = false;
    for (int64_t i = 0; i < cnn_tensor_numel(plain); i++) differ |= fv[i] != pv[i];
    if (has_bn && !differ)
        cnn_test_fail(__FILE__, __LINE__, "%s: fused logits are the unfused bits", name);
    cnn_tensor_free(&x);
    cnn_tensor_free(&fused);
    cnn_tensor_free(&plain);
    cnn_model_destroy(&m);
}

TEST(models_fused_evaluation_matches_layers_alone)
{
    /* conv + ReLU (LeNet-5); conv + BN + ReLU, conv + BN + add + ReLU with the block's input
     * or with a downsample's output (the ResNets: basic and bottleneck blocks) */
    check_eval_fusion("lenet5", 0, 0, 28, false);
    check_eval_fusion("resnet18", 10, 0, 32, true);
    check_eval_fusion("resnet50", 10, 0, 32, true);
    check_eval_fusion("resnet18_small", 10, 1, 28, true);
}

/* In training (and with grad mode on) no BN is folded; a conv and its ReLU still run as one op,
 * which gives the bits of the two ops alone: logits, loss and every gradient identical. */
static void check_train_fusion(const char *name, int classes, int channels, int h)
{
    cnn_model *m[2] = {NULL, NULL};
    cnn_tensor *x = NULL, *labels = NULL, *y[2] = {NULL}, *loss[2] = {NULL};
    for (int f = 0; f < 2; f++) {
        cnn_manual_seed(7);
        CHECK_OK(cnn_model_create(name, classes, channels, &m[f]));
        cnn_model_set_fusion(m[f], f == 0);
    }
    cnn_model_info info = cnn_model_get_info(m[0]);
    x = rand_tensor(CNN_SHAPE(3, info.in_channels, h, h), -1, 1, 0);
    int64_t lab[3] = {0, 1, info.num_classes - 1};
    CHECK_OK(cnn_tensor_from_i64(CNN_SHAPE(3), lab, CNN_CPU, &labels));
    for (int f = 0; f < 2; f++) {
        cnn_manual_seed(11); /* the same dropout masks */
        CHECK_OK(cnn_model_forward(m[f], x, true, &y[f]));
        CHECK_OK(cnn_cross_entropy(y[f], labels, 0.0f, &loss[f]));
        CHECK_OK(cnn_backward(loss[f]));
    }
    CHECK(tensors_close("logits", y[1], y[0], 0, 0));
    CHECK(tensors_close("loss", loss[1], loss[0], 0, 0));
    cnn_dict *p0 = cnn_model_parameters(m[0]), *p1 = cnn_model_parameters(m[1]);
    for (int i = 0; i < cnn_dict_size(p0); i++)
        if (!tensors_close(cnn_dict_name(p0, i), cnn_tensor_grad(cnn_dict_at(p1, i)),
                           cnn_tensor_grad(cnn_dict_at(p0, i)), 0, 0))
            cnn_test_fail(__FILE__, __LINE__, "%s: gradient of %s differs with fusion", name,
                          cnn_dict_name(p0, i));
    cnn_tensor *all[] = {x, labels, y[0], y[1], loss[0], loss[1]};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) cnn_tensor_free(&all[i]);
    cnn_model_destroy(&m[0]);
    cnn_model_destroy(&m[1]);
}

TEST(models_fused_training_is_bit_identical)
{
    check_train_fusion("lenet5", 0, 0, 28);
    check_train_fusion("resnet18_small", 10, 1, 16);
}
