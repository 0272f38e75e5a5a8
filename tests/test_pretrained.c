/* test_pretrained.c — cnn_model_load_pretrained, the start of fine-tuning: weights of a model
 * trained for other classes (the classifier stays fresh) or for RGB input (the first conv
 * summed for a gray model), and the refusals that leave the model unchanged. */
#include "gradcheck.h"

#include <unistd.h>

/* Whether two float or int64 tensors hold the same bytes. */
static int same_values(const cnn_tensor *a, const cnn_tensor *b)
{
    int64_t n = cnn_tensor_numel(a);
    if (n != cnn_tensor_numel(b) || cnn_tensor_dtype(a) != cnn_tensor_dtype(b)) return 0;
    size_t bytes = (size_t)n * 8;
    char *x = malloc(bytes), *y = malloc(bytes);
    int same = x && y && cnn_tensor_read(a, x, (size_t)n) == CNN_OK &&
               cnn_tensor_read(b, y, (size_t)n) == CNN_OK &&
               memcmp(x, y, (size_t)n * (cnn_tensor_dtype(a) == CNN_F32 ? 4 : 8)) == 0;
    free(x);
    free(y);
    return same;
}

/* Every tensor of m equal to the one of the same name in ref (names in skip excepted). */
static int all_equal(cnn_model *m, const cnn_dict *ref, const char *skip)
{
    const cnn_dict *d = cnn_model_state(m);
    for (int i = 0; i < cnn_dict_size(d); i++) {
        const char *name = cnn_dict_name(d, i);
        if (skip && strstr(skip, name)) continue;
        if (!same_values(cnn_dict_at(d, i), cnn_dict_get(ref, name))) {
            cnn_test_fail(__FILE__, __LINE__, "tensor %s differs", name);
            return 0;
        }
    }
    return 1;
}

/* A deep copy of m's state, to compare with later. */
static cnn_dict *snapshot(cnn_model *m)
{
    cnn_dict *d = NULL;
    if (cnn_dict_create(&d) != CNN_OK) return NULL;
    const cnn_dict *s = cnn_model_state(m);
    for (int i = 0; i < cnn_dict_size(s); i++) {
        cnn_tensor *c = NULL;
        if (cnn_tensor_clone(cnn_dict_at(s, i), &c) != CNN_OK ||
            cnn_dict_set(d, cnn_dict_name(s, i), c) != CNN_OK) {
            cnn_tensor_free(&c);
            cnn_dict_destroy(&d);
            return NULL;
        }
        cnn_tensor_free(&c);
    }
    return d;
}

static cnn_model *model(const char *name, int classes, int channels, uint64_t seed)
{
    cnn_manual_seed(seed);
    cnn_model *m = NULL;
    return cnn_model_create(name, classes, channels, &m) == CNN_OK ? m : NULL;
}

static void temp_path(char *path, const char *tag)
{
    snprintf(path, 64, "/tmp/cnn_pretrained_%s_%d.safetensors", tag, (int)getpid());
}

TEST(pretrained_new_classes_keep_a_fresh_classifier)
{
    char path[64];
    temp_path(path, "rgb");
    cnn_model *a = model("resnet18", 1000, 3, 1), *b = model("resnet18", 10, 3, 2);
    REQUIRE(a && b);
    CHECK_OK(cnn_model_save(a, path));
    cnn_dict *ref = snapshot(a), *b0 = snapshot(b);
    REQUIRE(ref && b0);
    cnn_pretrained_report r;
    CHECK_OK(cnn_model_load_pretrained(b, path, &r));
    CHECK(r.n_loaded == cnn_dict_size(cnn_model_state(b)) - 2 && r.n_fresh == 2);
    CHECK(r.file_classes == 1000 && !strcmp(r.fresh, "fc.weight, fc.bias") && !r.adapted[0]);
    CHECK(all_equal(b, ref, "fc.weight fc.bias"));
    cnn_dict *bs = cnn_model_state(b);
    CHECK(same_values(cnn_dict_get(bs, "fc.weight"), cnn_dict_get(b0, "fc.weight")));
    CHECK(same_values(cnn_dict_get(bs, "fc.bias"), cnn_dict_get(b0, "fc.bias")));
    /* The same classes: everything loads, the classifier too. */
    cnn_model *c = model("resnet18", 1000, 3, 3);
    REQUIRE(c);
    CHECK_OK(cnn_model_load_pretrained(c, path, &r));
    CHECK(r.n_fresh == 0 && r.file_classes == 0 && !r.fresh[0]);
    CHECK(r.n_loaded == cnn_dict_size(cnn_model_state(c)));
    CHECK(all_equal(c, ref, NULL));
    /* LeNet-5's classifier is its last linear layer, whatever its name. */
    cnn_model *v = model("lenet5", 10, 1, 4), *w = model("lenet5", 3, 1, 5);
    REQUIRE(v && w);
    CHECK_OK(cnn_model_save(v, path));
    CHECK_OK(cnn_model_load_pretrained(w, path, &r));
    CHECK(r.n_fresh == 2 && r.file_classes == 10 && r.n_loaded == 8);
    remove(path);
    cnn_dict_destroy(&ref);
    cnn_dict_destroy(&b0);
    cnn_model_destroy(&a);
    cnn_model_destroy(&b);
    cnn_model_destroy(&c);
    cnn_model_destroy(&v);
    cnn_model_destroy(&w);
}

/* A gray image through the adapted model gives what the RGB model gives on that image in all
 * three channels: the first conv's filters summed over R, G and B. */
TEST(pretrained_gray_model_sums_the_rgb_filters)
{
    char path[64];
    temp_path(path, "gray");
    cnn_model *rgb = model("resnet18_small", 10, 3, 6), *gray = model("resnet18_small", 10, 1, 7);
    REQUIRE(rgb && gray);
    CHECK_OK(cnn_model_save(rgb, path));
    cnn_pretrained_report r;
    CHECK_OK(cnn_model_load_pretrained(gray, path, &r));
    CHECK(!strcmp(r.adapted, "conv1.weight") && r.n_fresh == 0);
    CHECK(r.n_loaded == cnn_dict_size(cnn_model_state(gray)));
    const cnn_tensor *w3 = cnn_dict_get(cnn_model_state(rgb), "conv1.weight");
    const cnn_tensor *w1 = cnn_dict_get(cnn_model_state(gray), "conv1.weight");
    float a[64 * 3 * 9], g[64 * 9];
    REQUIRE(cnn_tensor_numel(w3) == 64 * 3 * 9 && cnn_tensor_numel(w1) == 64 * 9);
    CHECK_OK(cnn_tensor_read(w3, a, 64 * 3 * 9));
    CHECK_OK(cnn_tensor_read(w1, g, 64 * 9));
    int bad = 0;
    for (int k = 0; k < 64; k++)
        for (int j = 0; j < 9; j++)
            bad += g[k * 9 + j] != a[(k * 3) * 9 + j] + a[(k * 3 + 1) * 9 + j] +
                                       a[(k * 3 + 2) * 9 + j];
    CHECK(bad == 0);
    cnn_tensor *x1 = rand_tensor(CNN_SHAPE(2, 1, 12, 12), 0, 1, 0), *x3 = NULL;
    cnn_tensor *y1 = NULL, *y3 = NULL;
    const cnn_tensor *parts[3] = {x1, x1, x1};
    CHECK_OK(cnn_concat(parts, 3, 1, &x3));
    bool was = cnn_set_grad_enabled(false);
    CHECK_OK(cnn_model_forward(gray, x1, false, &y1));
    CHECK_OK(cnn_model_forward(rgb, x3, false, &y3));
    cnn_set_grad_enabled(was);
    CHECK(tensors_close("gray vs RGB logits", y1, y3, 1e-5f, 1e-4f));
    remove(path);
    cnn_tensor_free(&x1);
    cnn_tensor_free(&x3);
    cnn_tensor_free(&y1);
    cnn_tensor_free(&y3);
    cnn_model_destroy(&rgb);
    cnn_model_destroy(&gray);
}

/* Weights of another architecture, a reshaped inner tensor or a tensor the model lacks are
 * refused, naming the tensor, and the model keeps every value; a training checkpoint's
 * optimizer state is not "another architecture". */
TEST(pretrained_refuses_other_architectures_and_changes_nothing)
{
    char path[64];
    temp_path(path, "arch");
    cnn_model *m = model("resnet18", 10, 3, 8), *r34 = model("resnet34", 10, 3, 9);
    cnn_model *lenet = model("lenet5", 10, 3, 10);
    REQUIRE(m && r34 && lenet);
    cnn_dict *m0 = snapshot(m);
    REQUIRE(m0);
    CHECK_OK(cnn_model_save(r34, path));
    CHECK_ERR(cnn_model_load_pretrained(m, path, NULL), CNN_ERR_NOT_FOUND);
    CHECK(strstr(cnn_last_error(), "layer1.2.") && strstr(cnn_last_error(), "lacks"));
    CHECK_OK(cnn_model_save(lenet, path));
    CHECK_ERR(cnn_model_load_pretrained(m, path, NULL), CNN_ERR_SHAPE);
    CHECK(strstr(cnn_last_error(), "'conv1.weight' is (6, 3, 5, 5) in the file"));
    CHECK_ERR(cnn_model_load_pretrained(lenet, "/nonexistent/w.safetensors", NULL), CNN_ERR_IO);
    /* m's own weights with an inner conv reshaped, then with an extra tensor. */
    cnn_dict *d = snapshot(m);
    REQUIRE(d);
    cnn_tensor *odd = rand_tensor(CNN_SHAPE(64, 64, 1, 1), -1, 1, 0);
    CHECK_OK(cnn_dict_set(d, "layer1.0.conv2.weight", odd));
    CHECK_OK(cnn_safetensors_save(path, d));
    CHECK_ERR(cnn_model_load_pretrained(m, path, NULL), CNN_ERR_SHAPE);
    CHECK(strstr(cnn_last_error(), "layer1.0.conv2.weight") && strstr(cnn_last_error(), path));
    cnn_dict_destroy(&d);
    d = snapshot(m);
    REQUIRE(d);
    CHECK_OK(cnn_dict_set(d, "extra.weight", odd));
    CHECK_OK(cnn_safetensors_save(path, d));
    CHECK_ERR(cnn_model_load_pretrained(m, path, NULL), CNN_ERR_NOT_FOUND);
    CHECK(strstr(cnn_last_error(), "'extra.weight'"));
    /* A classifier that differs in more than its class count is another model's, not fresh. */
    cnn_dict_destroy(&d);
    d = snapshot(m);
    REQUIRE(d);
    cnn_tensor *wide = rand_tensor(CNN_SHAPE(7, 511), -1, 1, 0);
    CHECK_OK(cnn_dict_set(d, "fc.weight", wide));
    cnn_tensor_free(&wide);
    CHECK_OK(cnn_safetensors_save(path, d));
    CHECK_ERR(cnn_model_load_pretrained(m, path, NULL), CNN_ERR_SHAPE);
    CHECK(strstr(cnn_last_error(), "'fc.weight' is (7, 511) in the file"));
    CHECK(all_equal(m, m0, NULL));
    /* Optimizer state beside the weights (a training checkpoint) is ignored. */
    cnn_dict_destroy(&d);
    d = snapshot(m);
    REQUIRE(d);
    CHECK_OK(cnn_dict_set(d, "optim.fc.weight.momentum_buffer", odd));
    cnn_model *five = model("resnet18", 5, 3, 11);
    REQUIRE(five);
    CHECK_OK(cnn_safetensors_save(path, d));
    cnn_pretrained_report r;
    CHECK_OK(cnn_model_load_pretrained(five, path, &r));
    CHECK(r.n_fresh == 2 && r.file_classes == 10);
    remove(path);
    CHECK_ERR(cnn_model_load_pretrained(m, path, NULL), CNN_ERR_IO);
    CHECK_ERR(cnn_model_load_pretrained(NULL, path, NULL), CNN_ERR_INVALID_ARG);
    CHECK(all_equal(m, m0, NULL));
    cnn_tensor_free(&odd);
    cnn_dict_destroy(&d);
    cnn_dict_destroy(&m0);
    cnn_model_destroy(&m);
    cnn_model_destroy(&r34);
    cnn_model_destroy(&five);
    cnn_model_destroy(&lenet);
}

/* A file without the batch norms' num_batches_tracked counters (torchvision's older weights)
 * loads, the counters kept; a first conv whose input channels are neither the file's 3 nor 1 is
 * refused as a shape mismatch, not summed. cnn_model_load's refusals name the model and file. */
TEST(pretrained_without_counters_and_other_input_channels)
{
    char path[64];
    temp_path(path, "counters");
    cnn_model *src = model("resnet18_small", 10, 3, 12), *dst = model("resnet18_small", 10, 3, 13);
    cnn_model *two = model("resnet18_small", 10, 2, 14);
    REQUIRE(src && dst && two);
    const cnn_dict *s = cnn_model_state(src);
    cnn_dict *d = NULL;
    CHECK_OK(cnn_dict_create(&d));
    for (int i = 0; i < cnn_dict_size(s); i++)
        if (!strstr(cnn_dict_name(s, i), "num_batches_tracked"))
            CHECK_OK(cnn_dict_set(d, cnn_dict_name(s, i), cnn_dict_at(s, i)));
    REQUIRE(cnn_dict_size(d) < cnn_dict_size(s));
    CHECK_OK(cnn_safetensors_save(path, d));
    cnn_pretrained_report r;
    CHECK_OK(cnn_model_load_pretrained(dst, path, &r));
    CHECK(r.n_loaded == cnn_dict_size(d) && r.n_fresh == 0 && !r.adapted[0]);
    CHECK(all_equal(dst, s, NULL));
    CHECK_OK(cnn_model_save(src, path));
    CHECK_ERR(cnn_model_load_pretrained(two, path, NULL), CNN_ERR_SHAPE);
    CHECK(strstr(cnn_last_error(), "'conv1.weight' is (64, 3, 3, 3) in the file but "
                                   "(64, 2, 3, 3) in the model"));
    CHECK_ERR(cnn_model_load(two, path, true, NULL), CNN_ERR_SHAPE);
    CHECK(strstr(cnn_last_error(), "resnet18_small: loading ") &&
          strstr(cnn_last_error(), path));
    remove(path);
    cnn_dict_destroy(&d);
    cnn_model_destroy(&src);
    cnn_model_destroy(&dst);
    cnn_model_destroy(&two);
}

/* A model already on the GPU takes the file's values there, the summed first conv too. */
GPU_TEST(pretrained_into_a_model_on_the_gpu)
{
    char path[64];
    temp_path(path, "gpu");
    cnn_model *rgb = model("resnet18_small", 10, 3, 12), *gray = model("resnet18_small", 4, 1, 13);
    cnn_model *ref = model("resnet18_small", 4, 1, 13);
    REQUIRE(rgb && gray && ref);
    CHECK_OK(cnn_model_save(rgb, path));
    cnn_pretrained_report r;
    CHECK_OK(cnn_model_load_pretrained(ref, path, &r)); /* on the CPU */
    CHECK_OK(cnn_model_to(gray, CNN_CUDA(0)));
    CHECK_OK(cnn_model_load_pretrained(gray, path, &r));
    CHECK(r.n_fresh == 2 && !strcmp(r.adapted, "conv1.weight"));
    CHECK(cnn_tensor_device(cnn_dict_get(cnn_model_state(gray), "conv1.weight")).type ==
          CNN_DEVICE_CUDA);
    CHECK(all_equal(gray, cnn_model_state(ref), NULL)); /* fc: the same seed's initialisation */
    remove(path);
    cnn_model_destroy(&rgb);
    cnn_model_destroy(&gray);
    cnn_model_destroy(&ref);
}
