/* test_train_tool_values.c — the built train_imagenet_subset (from $CNN_TOOLS_DIR, else
 * build/bin; skipped when absent): its numbers against their source. metrics.csv's columns hold
 * what the epoch line printed; --weight-decay reaches the weights and never the biases;
 * --predict's top five are the model's own probabilities on the file through the checkpoint's
 * normalisation. */
#include "test.h"

#include <math.h>
#include <stb/stb_image_write.h>
#include <sys/stat.h>
#include <unistd.h>

#include "train_tool.h"
#include "../tools/common/checkpoint.h"

/* metrics.csv holds, under its header's names, the numbers the epoch line printed: train loss,
 * train acc, val loss, val top-1, val top-5 and lr (to the printed precision).
 * (The other checks only ask both losses to be positive: swapped columns passed them.) */
TEST(train_tool_metrics_csv_columns_match_the_epoch_line)
{
    char tool[512], dir[256], args[1024], path[700], line[512];
    static char out[65536];
    if (!tool_path(tool, sizeof tool)) return;
    REQUIRE(make_tmpdir(dir, sizeof dir));
    snprintf(args, sizeof args, "--limit-train 128 --limit-val 64 --batch 64 --epochs 1 --seed 3 "
             "--checkpoint-dir %s/run", dir);
    int rc = run_tool(tool, args, out, sizeof out);
    if (rc != 0) printf("%s\n", out);
    REQUIRE(rc == 0);
    const char *e = strstr(out, "epoch 1/1  train loss");
    double tl, ta, vl, v1, v5, lr;
    REQUIRE(e && sscanf(e, "epoch 1/1  train loss %lf acc %lf%%  val loss %lf top-1 %lf%% top-5 "
                        "%lf%%  lr %lf", &tl, &ta, &vl, &v1, &v5, &lr) == 6);
    snprintf(path, sizeof path, "%s/run/metrics.csv", dir);
    FILE *f = fopen(path, "r");
    REQUIRE(f);
    CHECK(fgets(line, sizeof line, f) &&
          !strncmp(line, "epoch,train_loss,train_acc,val_loss,val_top1,val_top5,lr,", 57));
    double c[7] = {0};
    CHECK(fgets(line, sizeof line, f) && sscanf(line, "%lf,%lf,%lf,%lf,%lf,%lf,%lf", &c[0], &c[1],
                                                &c[2], &c[3], &c[4], &c[5], &c[6]) == 7);
    fclose(f);
    CHECK(c[0] == 1);
    CHECK_NEAR(c[1], tl, 5.1e-5);
    CHECK_NEAR(100 * c[2], ta, 5.1e-3);
    CHECK_NEAR(c[3], vl, 5.1e-5);
    CHECK_NEAR(100 * c[4], v1, 5.1e-3);
    CHECK_NEAR(100 * c[5], v5, 5.1e-3);
    CHECK_NEAR(c[6], lr, 5e-3 * lr);
    remove_tree(dir);
}

/* --weight-decay never reaches biases (nor BN parameters): after one SGD step from the same seed
 * and batch, a run with --weight-decay 0.5 has every bias bit-identical to a run without decay
 * (the first gradient does not depend on the decay) and every weight different.
 * (The tool's default decay is 0: with the rule inverted, decaying exactly the biases and
 * leaving the weights alone, every other test passed.) */
TEST(train_tool_weight_decay_skips_biases)
{
    char tool[512], dir[256], args[1024], path[2][700];
    static char out[65536];
    if (!tool_path(tool, sizeof tool)) return;
    REQUIRE(make_tmpdir(dir, sizeof dir));
    cnn_dict *d[2] = {NULL, NULL};
    for (int k = 0; k < 2; k++) {
        snprintf(args, sizeof args, "--limit-train 64 --limit-val 64 --batch 64 --epochs 1 "
                 "--optimizer sgd --lr 0.1 --weight-decay %s --seed 7 --checkpoint-dir %s/wd%d",
                 k ? "0.5" : "0", dir, k);
        int rc = run_tool(tool, args, out, sizeof out);
        if (rc != 0) printf("%s\n", out);
        REQUIRE(rc == 0);
        snprintf(path[k], sizeof path[k], "%s/wd%d/last.safetensors", dir, k);
        CHECK_OK(cnn_safetensors_load(path[k], &d[k]));
    }
    REQUIRE(d[0] && d[1]);
    int biases = 0, weights = 0;
    for (int i = 0; i < cnn_dict_size(d[0]); i++) {
        const char *n = cnn_dict_name(d[0], i);
        size_t len = strlen(n);
        bool bias = len > 5 && !strcmp(n + len - 5, ".bias");
        bool weight = len > 7 && !strcmp(n + len - 7, ".weight");
        if (strncmp(n, "optim.", 6) == 0 || (!bias && !weight)) continue;
        const cnn_tensor *a = cnn_dict_at(d[0], i), *b = cnn_dict_get(d[1], n);
        REQUIRE(b && cnn_tensor_numel(a) == cnn_tensor_numel(b));
        bool same = memcmp(cnn_tensor_cdata(a), cnn_tensor_cdata(b),
                           (size_t)cnn_tensor_numel(a) * sizeof(float)) == 0;
        bool decays = cnn_tensor_ndim(a) > 1; /* lenet5: weights 2-d or 4-d, biases 1-d */
        if (same == decays)
            cnn_test_fail(__FILE__, __LINE__, "%s is %s the run without weight decay", n,
                          same ? "the same as in" : "not the same as in");
        biases += !decays;
        weights += decays;
    }
    CHECK(biases == 5 && weights == 5);
    /* SGD with the tool's default --momentum 0.9 keeps a momentum buffer per parameter. */
    int buffers = 0;
    for (int i = 0; i < cnn_dict_size(d[0]); i++)
        buffers += strstr(cnn_dict_name(d[0], i), ".momentum_buffer") != NULL;
    CHECK(buffers == 10);
    cnn_dict_destroy(&d[0]);
    cnn_dict_destroy(&d[1]);
    remove_tree(dir);
}

/* --predict feeds the model what validation fed it: the checkpoint's geometry, mean and std
 * (Fashion-MNIST's 0.2860 / 0.3530), not the defaults of the one-class folder it reads the
 * file through (gray ImageNet 0.449 / 0.226). Its five lines are the model's five most probable
 * classes with their probabilities, as a forward pass in the test computes them.
 * (With the folder's defaults the probabilities only fell, which the other test accepted.) */
TEST(train_tool_predict_uses_the_checkpoints_normalisation)
{
    char tool[512], dir[256], args[2048], path[800], ckpt[700], cls[700], err[1024];
    static char out[65536];
    if (!tool_path(tool, sizeof tool)) return;
    REQUIRE(make_tmpdir(dir, sizeof dir));
    snprintf(args, sizeof args, "--limit-train 256 --limit-val 64 --batch 64 --epochs 1 --seed 5 "
             "--checkpoint-dir %s/run", dir);
    int rc = run_tool(tool, args, out, sizeof out);
    if (rc != 0) printf("%s\n", out);
    REQUIRE(rc == 0);
    /* a 28x28 gray probe in a one-class folder of its own, for the reference */
    unsigned char img[28 * 28];
    for (int p = 0; p < 28 * 28; p++) img[p] = (unsigned char)((p % 28) * 9 ^ (p / 28) * 5);
    snprintf(cls, sizeof cls, "%s/ref", dir);
    REQUIRE(mkdir(cls, 0777) == 0);
    snprintf(cls, sizeof cls, "%s/ref/p", dir);
    REQUIRE(mkdir(cls, 0777) == 0);
    snprintf(cls, sizeof cls, "%s/ref/p/x", dir);
    REQUIRE(mkdir(cls, 0777) == 0);
    snprintf(path, sizeof path, "%s/probe.png", cls);
    REQUIRE(stbi_write_png(path, 28, 28, 1, img, 28) != 0);
    snprintf(ckpt, sizeof ckpt, "%s/run/best.safetensors", dir);
    snprintf(args, sizeof args, "--predict %s --checkpoint %s", path, ckpt);
    rc = run_tool(tool, args, out, sizeof out);
    if (rc != 0) printf("%s\n", out);
    REQUIRE(rc == 0);

    /* the reference: the checkpoint's model on the file through its eval transform */
    cnn_dict *d = NULL;
    tr_model_meta mm = {0};
    cnn_model *m = NULL;
    cnn_dataset *ds = NULL;
    cnn_tensor *x = NULL, *logits = NULL, *prob = NULL;
    REQUIRE(tr_checkpoint_open(ckpt, &d, &mm, err, sizeof err));
    CHECK(mm.mean[0] > 0.28f && mm.mean[0] < 0.29f); /* Fashion-MNIST's, not the folder's */
    CHECK_OK(cnn_model_create(mm.model, mm.num_classes, mm.in_channels, &m));
    CHECK(m && tr_checkpoint_load_model(m, d, err, sizeof err));
    snprintf(path, sizeof path, "%s/ref", dir);
    CHECK_OK(cnn_imagefolder_create(path, "p", mm.in_channels, &ds));
    float pix[28 * 28], p[16];
    int k = mm.num_classes;
    if (m && ds && k <= 16 && mm.img_size == 28 && mm.in_channels == 1) {
        cnn_transform t = cnn_transform_default(ds, false, mm.img_size);
        t.geometry = (cnn_geometry)mm.geometry;
        memcpy(t.mean, mm.mean, sizeof t.mean);
        memcpy(t.std, mm.std, sizeof t.std);
        CHECK_OK(cnn_dataset_get(ds, 0, &t, 0, 0, pix, NULL));
        bool was = cnn_set_grad_enabled(false);
        CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(1, 1, 28, 28), pix, CNN_CPU, &x));
        CHECK_OK(cnn_model_forward(m, x, false, &logits));
        CHECK_OK(cnn_softmax(logits, 1, &prob));
        CHECK_OK(cnn_tensor_read(prob, p, (size_t)k));
        cnn_set_grad_enabled(was);
    } else {
        cnn_test_fail(__FILE__, __LINE__, "unexpected checkpoint: %s, %d classes, %dx%d x %d",
                      mm.model, k, mm.img_size, mm.img_size, mm.in_channels);
    }
    /* the tool's five lines "  r. NAME (32 columns) P%" against the reference's top five */
    int ranks = 0;
    bool used[16] = {false};
    char *save = NULL;
    for (char *l = strtok_r(out, "\n", &save); l && !cnn_test_failed(); l = strtok_r(NULL, "\n",
                                                                                     &save)) {
        int r = 0;
        if (sscanf(l, "  %d. ", &r) != 1 || strlen(l) < 5 + 32) continue;
        char name[64];
        snprintf(name, sizeof name, "%.32s", strstr(l, ". ") + 2);
        for (size_t n = strlen(name); n > 0 && name[n - 1] == ' '; n--) name[n - 1] = 0;
        double pct = atof(l + 5 + 32);
        int best = -1; /* the most probable class not listed yet (ties: lower index) */
        for (int c = 0; c < k; c++)
            if (!used[c] && (best < 0 || p[c] > p[best])) best = c;
        REQUIRE(best >= 0);
        used[best] = true;
        if (strcmp(name, mm.class_names[best]) || fabs(pct - 100.0 * p[best]) > 0.006)
            cnn_test_fail(__FILE__, __LINE__, "rank %d: predicted '%s' %.2f%%, the model gives "
                          "'%s' %.4f%%", r, name, pct, mm.class_names[best], 100.0 * p[best]);
        ranks++;
    }
    CHECK(ranks == 5);
    cnn_tensor_free(&x);
    cnn_tensor_free(&logits);
    cnn_tensor_free(&prob);
    cnn_dataset_destroy(&ds);
    cnn_model_destroy(&m);
    cnn_dict_destroy(&d);
    tr_model_meta_free(&mm);
    remove_tree(dir);
}
