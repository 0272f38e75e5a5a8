/* test_torch_zoo.c — each zoo model against torchvision's, both ways: our weights saved and
 * loaded strictly by torchvision give our logits, and torchvision's weights loaded into ours give
 * its logits, loss, BN buffers and gradients (scripts/torch_crosscheck.py, check "zoo"); and
 * scripts/torchvision_weights.py's files load for fine-tuning. Skipped without torch. */
#include "torch_xref.h"

#define ZOO_OK(expr)                                                                              \
    do { if ((expr) != CNN_OK) { cnn_test_fail(__FILE__, __LINE__, "%s: %s: %s", name, #expr,      \
                                               cnn_last_error()); goto done; } } while (0)

/* Tolerances abs + rel * |ref| for logits, loss and BN buffers, and for gradients (float32
 * sums in another order through up to 150 layers). `fast`: run by default; the others only
 * with CNN_TORCH_ALL=1 (VGG-16's files are over 500 MB; the deep ResNets take long). */
typedef struct zoo_tol { const char *name; double abs, rel, gabs, grel; bool fast; } zoo_tol;
static const zoo_tol ZOO_TOL[] = {
    {"alexnet", 1e-5, 1e-4, 1e-6, 1e-3, true},   {"resnet18", 1e-4, 1e-4, 1e-4, 1e-3, true},
    {"vgg16", 1e-5, 1e-4, 1e-5, 1e-3, false},    {"vgg16_bn", 1e-4, 1e-4, 2e-4, 1e-3, false},
    {"resnet34", 1e-4, 1e-4, 1e-4, 1e-3, false}, {"resnet50", 1e-4, 1e-4, 1e-4, 1e-3, false},
    {"resnet101", 1e-4, 1e-4, 1e-4, 1e-3, false}, {"resnet152", 1e-4, 1e-4, 1e-4, 1e-3, false}};

/* Our model at 10 classes, dropout 0 (so training-mode forwards are deterministic). */
static cnn_status zoo_model(const char *name, bool skip_init, cnn_model **m)
{
    cnn_model_options o = cnn_model_default_options();
    o.num_classes = 10, o.dropout = 0.0f, o.skip_init = skip_init;
    return cnn_model_create_ex(name, &o, m);
}

/* CLOSE against reference `key`, widened by 4x "err.<key>" where the script wrote one: how far
 * torch's own float32 run is from float64 references (deep models). */
static void zoo_close(const xref *r, const char *name, const char *key, const cnn_tensor *ours,
                      double abs, double rel)
{
    double err = 0.0; /* stays 0 where there is no err.<key> */
    ref_values(ref_get(r, "err.%s", key), &err, 1);
    if (err > 0.0)
        close_to(__FILE__, __LINE__, ours, ref_get(r, "%s", key), abs + 4.0 * err, rel,
                 "%s %s (float64 reference; torch's float32 off by %.2g)", name, key, err);
    else
        close_to(__FILE__, __LINE__, ours, ref_get(r, "%s", key), abs, rel, "%s %s", name, key);
}

/* Ours -> torchvision, first half: our initialisation, BN running statistics moved by one
 * training-mode forward, saved with cnn_model_save with the input; *logits gets our eval logits
 * for the script's torchvision (strict=True) to reproduce as "rev_logits". */
static bool zoo_save_ours(const xref *r, const char *name, cnn_tensor **logits)
{
    cnn_model *m = NULL;
    cnn_tensor *x = NULL;
    cnn_dict *in = NULL;
    char path[128];
    bool ok = false, prev = cnn_set_grad_enabled(false);
    cnn_manual_seed(7);
    ZOO_OK(zoo_model(name, false, &m));
    ZOO_OK(cnn_tensor_normal(CNN_SHAPE(2, 3, 64, 64), 0.0f, 1.0f, CNN_CPU, &x)); /* AlexNet: 63+ */
    ZOO_OK(cnn_model_forward(m, x, true, logits));
    cnn_tensor_free(logits);
    ZOO_OK(cnn_model_forward(m, x, false, logits));
    snprintf(path, sizeof path, "%s/ours.safetensors", r->dir);
    ZOO_OK(cnn_model_save(m, path));
    ZOO_OK(cnn_dict_create(&in));
    ZOO_OK(cnn_dict_set(in, "x", x));
    snprintf(path, sizeof path, "%s/input.safetensors", r->dir);
    ZOO_OK(cnn_safetensors_save(path, in));
    ok = true;
done:
    cnn_set_grad_enabled(prev);
    cnn_dict_destroy(&in);
    cnn_tensor_free(&x);
    cnn_model_destroy(&m);
    return ok;
}

/* torchvision's weights -> ours (strict): eval logits, training-mode logits, the CE loss, the
 * BN buffers after that step ("after.<key>", num_batches_tracked included) and the gradients
 * of the parameters torch wrote as "grad.<key>", of that loss or (where the script says
 * grad_in_eval: the deeper BN nets, see GRAD_IN_EVAL there) of the eval-mode loss after it. */
static void zoo_from_torch(const xref *r, const char *name, const zoo_tol *t)
{
    cnn_model *m = NULL;
    cnn_tensor *logits = NULL, *loss = NULL, *x = ref_get(r, "x"), *y = ref_get(r, "y");
    char path[128];
    double in_eval = 0.0;
    snprintf(path, sizeof path, "%s/weights.safetensors", r->dir);
    ZOO_OK(zoo_model(name, true, &m));
    ZOO_OK(cnn_model_load(m, path, true, NULL));
    bool prev = cnn_set_grad_enabled(false);
    cnn_status s = cnn_model_forward(m, x, false, &logits);
    cnn_set_grad_enabled(prev);
    ZOO_OK(s);
    zoo_close(r, name, "logits_eval", logits, t->abs, t->rel);
    cnn_tensor_free(&logits);
    ZOO_OK(cnn_model_forward(m, x, true, &logits));
    zoo_close(r, name, "logits_train", logits, t->abs, t->rel);
    ZOO_OK(cnn_cross_entropy(logits, y, 0.0f, &loss));
    zoo_close(r, name, "loss", loss, t->abs, t->rel);
    if (ref_values(ref_get(r, "grad_in_eval"), &in_eval, 1) && in_eval != 0.0) {
        cnn_tensor_free(&loss);
        cnn_tensor_free(&logits);
        cnn_tape_reset();
        ZOO_OK(cnn_model_forward(m, x, false, &logits));
        ZOO_OK(cnn_cross_entropy(logits, y, 0.0f, &loss));
    }
    ZOO_OK(cnn_backward(loss));
    cnn_dict *state = cnn_model_state(m);
    for (int i = 0; i < cnn_dict_size(r->ref); i++) {
        const char *k = cnn_dict_name(r->ref, i);
        bool g = strncmp(k, "grad.", 5) == 0;
        if (!g && strncmp(k, "after.", 6) != 0) continue;
        cnn_tensor *ours = cnn_dict_get(state, k + (g ? 5 : 6));
        zoo_close(r, name, k, ours && g ? cnn_tensor_grad(ours) : ours, g ? t->gabs : t->abs,
                  g ? t->grel : t->rel);
    }
done:
    cnn_tensor_free(&loss);
    cnn_tensor_free(&logits);
    cnn_model_destroy(&m);
}

/* Both directions for one model, with one run of the script. */
static void zoo_check(const char *name)
{
    const zoo_tol *t = NULL;
    const char *all = getenv("CNN_TORCH_ALL");
    for (size_t i = 0; i < sizeof ZOO_TOL / sizeof ZOO_TOL[0]; i++)
        if (strcmp(ZOO_TOL[i].name, name) == 0) t = &ZOO_TOL[i];
    REQUIRE(t);
    if (!t->fast && !(all && strcmp(all, "1") == 0)) {
        cnn_test_skip("a long check: set CNN_TORCH_ALL=1");
        return;
    }
    xref r;
    cnn_tensor *ours = NULL;
    if (xref_open(&r) && zoo_save_ours(&r, name, &ours) && xref_script(&r, "zoo", name)) {
        CLOSE(ours, ref_get(&r, "rev_logits"), t->abs, t->rel, "%s ours -> torchvision logits",
              name);
        zoo_from_torch(&r, name, t);
    }
    cnn_tensor_free(&ours);
    xref_done(&r);
}

#define ZOO_TEST(model) TEST(torch_zoo_##model) { zoo_check(#model); }
ZOO_TEST(alexnet) ZOO_TEST(resnet18) ZOO_TEST(vgg16) ZOO_TEST(vgg16_bn) ZOO_TEST(resnet34)
ZOO_TEST(resnet50) ZOO_TEST(resnet101) ZOO_TEST(resnet152)

/* scripts/torchvision_weights.py writes torchvision's own state_dict (random weights here: no
 * network): it loads strictly into the same model, and for fine-tuning into one with other
 * classes and gray input. */
TEST(torch_weights_script_feeds_fine_tuning)
{
    xref r;
    char script[512], cmd[1400], out[4096], path[128];
    if (!xref_open(&r)) return;
    if (!script_path("torchvision_weights.py", script, sizeof script)) {
        cnn_test_fail(__FILE__, __LINE__, "%s not found (set CNN_SOURCE_DIR)", script);
        xref_done(&r);
        return;
    }
    snprintf(path, sizeof path, "%s/resnet18.safetensors", r.dir);
    snprintf(cmd, sizeof cmd, "'%s' '%s' resnet18 '%s' --weights none 2>&1", torch_python(),
             script, path);
    int rc = cnn_test_capture(cmd, out, sizeof out);
    if (rc != 0) cnn_test_fail(__FILE__, __LINE__, "%s exited with %d: %s", cmd, rc, out);
    CHECK(strstr(out, "122 tensors") != NULL);
    cnn_model *same = NULL, *gray10 = NULL;
    CHECK_OK(cnn_model_create("resnet18", 1000, 3, &same));
    CHECK_OK(cnn_model_create("resnet18", 10, 1, &gray10));
    if (same && gray10) {
        CHECK_OK(cnn_model_load(same, path, true, NULL));
        cnn_pretrained_report pr;
        CHECK_OK(cnn_model_load_pretrained(gray10, path, &pr));
        CHECK(pr.n_fresh == 2 && pr.file_classes == 1000 && !strcmp(pr.adapted, "conv1.weight"));
        CHECK(pr.n_loaded == cnn_dict_size(cnn_model_state(gray10)) - 2);
    }
    cnn_model_destroy(&same);
    cnn_model_destroy(&gray10);
    xref_done(&r);
}
