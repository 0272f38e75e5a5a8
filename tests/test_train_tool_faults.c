/* test_train_tool_faults.c — the built train_imagenet_subset (from $CNN_TOOLS_DIR, else
 * build/bin; skipped when absent) when numbers or names go wrong: a diverging run says why and
 * what it kept; non-finite weights given to --eval-only, --pretrained and --predict are named as
 * the cause; best.safetensors holds the weights alone and --resume refuses it; a class folder
 * or --data path that is not UTF-8 is refused before the first epoch; a resume inside an epoch
 * on a training split shorter than where it stopped is refused naming both. */
#include "test.h"

#include <stb/stb_image_write.h>
#include <sys/stat.h>

#include "train_tool.h"

static bool exists(const char *dir, const char *name)
{
    char p[1024];
    struct stat sb;
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return stat(p, &sb) == 0;
}

/* A copy of checkpoint src at dst with conv1.weight all NaN. */
static bool poison(const char *src, const char *dst)
{
    cnn_dict *d = NULL;
    bool ok = cnn_safetensors_load(src, &d) == CNN_OK;
    cnn_tensor *w = ok ? cnn_dict_get(d, "conv1.weight") : NULL;
    ok = w && cnn_tensor_fill_(w, NAN) == CNN_OK && cnn_safetensors_save(dst, d) == CNN_OK;
    cnn_dict_destroy(&d);
    return ok;
}

/* A copy of checkpoint src at dst whose run stopped inside its epoch, at sample `position`. */
static bool stopped_at(const char *src, const char *dst, const char *position)
{
    cnn_dict *d = NULL;
    bool ok = cnn_safetensors_load(src, &d) == CNN_OK &&
              cnn_dict_set_meta(d, "batch", "1") == CNN_OK &&
              cnn_dict_set_meta(d, "position", position) == CNN_OK &&
              cnn_safetensors_save(dst, d) == CNN_OK;
    cnn_dict_destroy(&d);
    return ok;
}

/* How many tensors of the file at path are optimizer state ("optim.*"); -1 if unreadable. */
static int optim_tensors(const char *path)
{
    cnn_dict *d = NULL;
    if (cnn_safetensors_load(path, &d) != CNN_OK) return -1;
    int n = 0;
    for (int i = 0; i < cnn_dict_size(d); i++) n += !strncmp(cnn_dict_name(d, i), "optim.", 6);
    if (cnn_dict_get_meta(d, "optim.kind")) n++;
    cnn_dict_destroy(&d);
    return n;
}

/* A failing run's one error line (stderr) into out: it has every needle, and "-nan" never. */
static void check_error_says(const char *tool, const char *args, const char *const *needles,
                             int n_needles)
{
    char out[8192];
    int rc = run_tool_ex(tool, args, true, out, sizeof out);
    bool ok = rc != 0 && !strncmp(out, "train_imagenet_subset: ", 23) && !strstr(out, "-nan") &&
              strchr(out, '\n') == out + strlen(out) - 1;
    for (int i = 0; i < n_needles; i++) ok = ok && strstr(out, needles[i]);
    if (!ok) cnn_test_fail(__FILE__, __LINE__, "'%s': exit %d, stderr: %s", args, rc, out);
}

#define SAYS(tool, args, ...)                                                                      \
    do {                                                                                           \
        const char *const needles_[] = {__VA_ARGS__};                                              \
        check_error_says(tool, args, needles_, (int)(sizeof needles_ / sizeof *needles_));        \
    } while (0)

TEST(train_tool_divergence_and_non_finite_weights_are_named)
{
    char tool[512], dir[256], args[2048], out[16384], path[700], nan_ckpt[700];
    if (!tool_path(tool, sizeof tool)) return;
    REQUIRE(make_tmpdir(dir, sizeof dir));
    const char *tiny = "--limit-train 256 --limit-val 128 --batch 64 --epochs 1";

    /* Diverging in the first epoch: no --lr blamed wrongly, nothing saved, and said so. */
    snprintf(args, sizeof args, "%s --optimizer sgd --lr 1e30 --checkpoint-dir %s/a", tiny, dir);
    SAYS(tool, args, "training diverged", "lower --lr", "nothing was saved");
    snprintf(path, sizeof path, "%s/a", dir);
    CHECK(!exists(path, "last.safetensors") && !exists(path, "best.safetensors"));

    /* A good epoch: last.safetensors holds the optimizer state, best.safetensors the weights
     * alone; --resume refuses the latter, pointing to the former. */
    snprintf(args, sizeof args, "%s --checkpoint-dir %s/b", tiny, dir);
    int rc = run_tool(tool, args, out, sizeof out);
    if (rc != 0) printf("%s\n", out);
    REQUIRE(rc == 0);
    snprintf(path, sizeof path, "%s/b/last.safetensors", dir);
    CHECK(optim_tensors(path) > 1);
    snprintf(path, sizeof path, "%s/b/best.safetensors", dir);
    CHECK(optim_tensors(path) == 0);
    snprintf(args, sizeof args, "--resume %s/b/best.safetensors --epochs 2", dir);
    SAYS(tool, args, "holds weights only", "last.safetensors", "--pretrained");

    /* Resumed at an absurd --lr, it diverges after its own first step: the checkpoints are
     * from before. */
    snprintf(args, sizeof args, "--resume %s/b/last.safetensors --epochs 2 --lr 1e30", dir);
    SAYS(tool, args, "training diverged", "are from before it");

    /* Resumed inside an epoch on data with fewer training images than it had read: said so,
     * not as the loader's "position ... is outside the epoch's ... samples". */
    snprintf(path, sizeof path, "%s/p", dir);
    REQUIRE(mkdir(path, 0777) == 0);
    snprintf(args, sizeof args, "%s/b/last.safetensors", dir);
    snprintf(path, sizeof path, "%s/p/last.safetensors", dir);
    REQUIRE(stopped_at(args, path, "100000"));
    snprintf(args, sizeof args, "--resume %s --epochs 2", path);
    SAYS(tool, args, "the checkpoint stopped at sample 100000 of its epoch",
         "this training split has 256", "resume with the run's data");

    /* Weights that are NaN to begin with: the weights are to blame, not --lr. */
    snprintf(nan_ckpt, sizeof nan_ckpt, "%s/nan.safetensors", dir);
    REQUIRE(poison(path, nan_ckpt));
    snprintf(args, sizeof args, "--eval-only %s", nan_ckpt);
    SAYS(tool, args, "validation loss is nan", "before this run updated any weight",
         "loaded from the checkpoint");
    snprintf(args, sizeof args, "%s --pretrained %s --checkpoint-dir %s/c", tiny, nan_ckpt, dir);
    SAYS(tool, args, "the loss is nan at step 0", "started from (--pretrained)");
    /* --predict has nothing to rank. */
    unsigned char img[28 * 28];
    for (int i = 0; i < 28 * 28; i++) img[i] = (unsigned char)(i * 7);
    snprintf(path, sizeof path, "%s/shoe.png", dir);
    REQUIRE(stbi_write_png(path, 28, 28, 1, img, 28));
    snprintf(args, sizeof args, "--predict %s --checkpoint %s", path, nan_ckpt);
    SAYS(tool, args, "shoe.png", "not finite");
    remove_tree(dir);
}

/* Two classes, "ok" and the Latin-1 "caf\xe9", two images each in train and val. */
static bool make_latin1_tree(const char *root)
{
    const char *splits[] = {"train", "val"}, *classes[] = {"ok", "caf\xe9"};
    char p[700];
    if (mkdir(root, 0777)) return false;
    for (int s = 0; s < 2; s++) {
        snprintf(p, sizeof p, "%s/%s", root, splits[s]);
        if (mkdir(p, 0777)) return false;
        for (int c = 0; c < 2; c++) {
            snprintf(p, sizeof p, "%s/%s/%s", root, splits[s], classes[c]);
            if (mkdir(p, 0777)) return false;
            for (int i = 0; i < 2; i++) {
                unsigned char img[32 * 32 * 3];
                memset(img, c ? 200 : 40, sizeof img);
                snprintf(p, sizeof p, "%s/%s/%s/img%d.png", root, splits[s], classes[c], i);
                if (!stbi_write_png(p, 32, 32, 3, img, 32 * 3)) return false;
            }
        }
    }
    return true;
}

/* Checkpoints keep class names and the --data path as UTF-8 text: anything else is refused
 * before the first epoch (it used to fail saving the first checkpoint, an epoch later), and
 * nothing is made. */
TEST(train_tool_refuses_names_a_checkpoint_cannot_store)
{
    char tool[512], dir[256], data[400], args[2048], run[600];
    if (!tool_path(tool, sizeof tool)) return;
    REQUIRE(make_tmpdir(dir, sizeof dir));
    snprintf(data, sizeof data, "%s/data", dir);
    REQUIRE(make_latin1_tree(data));
    snprintf(run, sizeof run, "%s/run", dir);
    snprintf(args, sizeof args, "--data %s --img-size 32 --batch 2 --epochs 1 "
             "--checkpoint-dir %s", data, run);
    SAYS(tool, args, "caf", "UTF-8");
    CHECK(!exists(dir, "run"));
    /* Named in UTF-8, the class is fine; a --data path in Latin-1 is not. */
    char from[700], to[700];
    for (int s = 0; s < 2; s++) {
        snprintf(from, sizeof from, "%s/%s/caf\xe9", data, s ? "val" : "train");
        snprintf(to, sizeof to, "%s/%s/caf\xc3\xa9", data, s ? "val" : "train");
        REQUIRE(rename(from, to) == 0);
    }
    snprintf(to, sizeof to, "%s/d\xe9ta", dir);
    REQUIRE(rename(data, to) == 0);
    snprintf(args, sizeof args, "--data %s --img-size 32 --batch 2 --epochs 1 "
             "--checkpoint-dir %s", to, run);
    SAYS(tool, args, "UTF-8", "--data");
    CHECK(!exists(dir, "run"));
    REQUIRE(rename(to, data) == 0);
    char out[16384];
    snprintf(args, sizeof args, "--data %s --img-size 32 --batch 2 --epochs 1 "
             "--checkpoint-dir %s", data, run);
    int rc = run_tool(tool, args, out, sizeof out);
    if (rc != 0) printf("%s\n", out);
    CHECK(rc == 0 && exists(run, "best.safetensors"));
    remove_tree(dir);
}
