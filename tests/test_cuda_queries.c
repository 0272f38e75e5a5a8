/* test_cuda_queries.c — the device and library queries: cnn_cuda_device_name, cnn_cuda_versions
 * and cnn_conv2d_cudnn_algo. CPU tests pin how they fail (or answer NULL) without a GPU; GPU
 * tests that they name the device and the algorithm the cuDNN cache chose for each pass. */
#include "test.h"

TEST(cuda_device_name_refuses_missing_devices)
{
    char buf[64] = "unchanged";
    int n = cnn_cuda_device_count();
    CHECK_ERR(cnn_cuda_device_name(n, buf, sizeof buf), CNN_ERR_DEVICE);
    CHECK(buf[0] == '\0');
    CHECK(strstr(cnn_last_error(), "cuda_device_name") != NULL);
    CHECK_ERR(cnn_cuda_device_name(-1, buf, sizeof buf), CNN_ERR_DEVICE);
    CHECK_ERR(cnn_cuda_device_name(0, NULL, 16), CNN_ERR_INVALID_ARG);
    CHECK_ERR(cnn_cuda_device_name(0, buf, 0), CNN_ERR_INVALID_ARG);
}

TEST(cuda_versions_report_the_libraries)
{
    int driver = -1, runtime = -1;
    size_t dnn = 1;
    if (!cnn_built_with_cuda()) {
        CHECK_ERR(cnn_cuda_versions(&driver, &runtime, &dnn), CNN_ERR_DEVICE);
        CHECK(driver == 0 && runtime == 0 && dnn == 0);
        return;
    }
    CHECK_OK(cnn_cuda_versions(&driver, &runtime, &dnn));
    CHECK(driver >= 0);
    CHECK(runtime >= 10000);
    CHECK(cnn_built_with_cudnn() ? dnn >= 90000 : dnn == 0);
    CHECK_OK(cnn_cuda_versions(NULL, NULL, NULL));
}

/* CPU tensors never go through cuDNN, and bad arguments are not a choice either. */
TEST(conv2d_cudnn_algo_is_null_off_the_gpu)
{
    cnn_tensor *x = NULL, *w = NULL, *y = NULL;
    cnn_conv2d_params p = {.padding = {1, 1}};
    CHECK_OK(cnn_tensor_uniform(CNN_SHAPE(1, 2, 5, 5), -1, 1, CNN_CPU, &x));
    CHECK_OK(cnn_tensor_uniform(CNN_SHAPE(3, 2, 3, 3), -1, 1, CNN_CPU, &w));
    CHECK_OK(cnn_conv2d(x, w, NULL, &p, &y));
    for (int pass = 0; pass < 3; pass++) CHECK(cnn_conv2d_cudnn_algo(x, w, &p, pass) == NULL);
    CHECK(cnn_conv2d_cudnn_algo(NULL, w, &p, 0) == NULL);
    CHECK(cnn_conv2d_cudnn_algo(x, w, &p, 3) == NULL);
    CHECK(cnn_conv2d_cudnn_algo(x, w, NULL, -1) == NULL);
    cnn_tensor_free(&x);
    cnn_tensor_free(&w);
    cnn_tensor_free(&y);
}

GPU_TEST(cuda_device_name_and_versions)
{
    char name[256], small[4];
    CHECK_OK(cnn_cuda_device_name(0, name, sizeof name));
    CHECK(strlen(name) > 0);
    CHECK_OK(cnn_cuda_device_name(0, small, sizeof small));
    CHECK(strlen(small) == (strlen(name) < 3 ? strlen(name) : 3));
    CHECK(strncmp(small, name, strlen(small)) == 0);
    int driver = 0, runtime = 0;
    size_t dnn = 0;
    CHECK_OK(cnn_cuda_versions(&driver, &runtime, &dnn));
    CHECK(driver >= 10000 && runtime >= 10000);
    if (cnn_built_with_cudnn()) CHECK(dnn >= 90000);
    printf("  cuda:0 \"%s\", driver %d, runtime %d, cuDNN %zu\n", name, driver, runtime, dnn);
}

/* No choice before the first call; one per pass after a forward and backward through cuDNN;
 * none for a key that differs in padding or in the TF32 flag. */
GPU_TEST(conv2d_cudnn_algo_names_the_cached_choice)
{
    if (!cnn_built_with_cudnn()) {
        cnn_test_skip("built without cuDNN");
        return;
    }
    static const char *const pass_name[] = {"forward", "backward data", "backward filter"};
    cnn_set_backend(CNN_BACKEND_CUDNN);
    cnn_tensor *x = NULL, *w = NULL, *y = NULL, *loss = NULL;
    cnn_conv2d_params p = {.stride = {1, 1}, .padding = {1, 1}};
    CHECK_OK(cnn_tensor_uniform(CNN_SHAPE(2, 3, 9, 9), -1, 1, CNN_CUDA(0), &x));
    CHECK_OK(cnn_tensor_uniform(CNN_SHAPE(4, 3, 3, 3), -1, 1, CNN_CUDA(0), &w));
    CHECK_OK(cnn_tensor_set_requires_grad(x, true));
    CHECK_OK(cnn_tensor_set_requires_grad(w, true));
    for (int pass = 0; pass < 3; pass++) CHECK(cnn_conv2d_cudnn_algo(x, w, &p, pass) == NULL);
    CHECK_OK(cnn_conv2d(x, w, NULL, &p, &y));
    CHECK(cnn_conv2d_cudnn_algo(x, w, &p, 0) != NULL);
    CHECK(cnn_conv2d_cudnn_algo(x, w, &p, 1) == NULL);
    CHECK_OK(cnn_sum(y, &loss));
    CHECK_OK(cnn_backward(loss));
    for (int pass = 0; pass < 3; pass++) {
        const char *name = cnn_conv2d_cudnn_algo(x, w, &p, pass);
        CHECK(name && name[0]);
        printf("  %s: %s\n", pass_name[pass], name ? name : "(none)");
    }
    cnn_conv2d_params other = p;
    other.padding[0] = 0;
    CHECK(cnn_conv2d_cudnn_algo(x, w, &other, 0) == NULL);
    cnn_set_tf32(true);
    CHECK(cnn_conv2d_cudnn_algo(x, w, &p, 0) == NULL);
    cnn_set_tf32(false);
    CHECK(cnn_conv2d_cudnn_algo(x, w, &p, 3) == NULL);
    cnn_tensor_free(&x);
    cnn_tensor_free(&w);
    cnn_tensor_free(&y);
    cnn_tensor_free(&loss);
}
