/* test_train_tool_folder.c — runs the built train_imagenet_subset (from $CNN_TOOLS_DIR, else
 * build/bin; skipped when absent) on a tiny image folder it writes: bad images skipped or fatal
 * with --strict, decoding without workers, --predict, --resume and --eval-only against renamed
 * or added classes, one class, a class name with a line break, the augmentation options, a
 * batch of one image that bad files leave for a model that cannot train on one.
 * Fashion-MNIST runs: test_train_tool.c. */
#include "test.h"

#include <stb/stb_image_write.h>
#include <sys/stat.h>
#include <unistd.h>

#include "train_tool.h"

/* Writes a tiny ImageNet-style folder under dir: classes "bottom" and "top" (a bright half),
 * 8 train and 4 val images each, plus one undecodable train/top/broken.png. */
static bool make_folder_dataset(const char *dir)
{
    const char *splits[] = {"train", "val"}, *classes[] = {"bottom", "top"};
    char p[600];
    for (int s = 0; s < 2; s++) {
        snprintf(p, sizeof p, "%s/%s", dir, splits[s]);
        if (mkdir(p, 0777)) return false;
        for (int c = 0; c < 2; c++) {
            snprintf(p, sizeof p, "%s/%s/%s", dir, splits[s], classes[c]);
            if (mkdir(p, 0777)) return false;
            for (int i = 0; i < (s ? 4 : 8); i++) {
                unsigned char img[40 * 40 * 3];
                for (int k = 0; k < 40 * 40 * 3; k++) {
                    int y = k / (40 * 3);
                    img[k] = (unsigned char)(((y < 20) == (c == 1) ? 200 : 30) + (k * 7 + i) % 25);
                }
                snprintf(p, sizeof p, "%s/%s/%s/img%d.png", dir, splits[s], classes[c], i);
                if (!stbi_write_png(p, 40, 40, 3, img, 40 * 3)) return false;
            }
        }
    }
    snprintf(p, sizeof p, "%s/train/top/broken.png", dir);
    FILE *f = fopen(p, "w");
    if (!f) return false;
    fputs("this is not a PNG file", f);
    return fclose(f) == 0;
}

/* A fresh folder under /tmp (dir) holding that dataset in dir/data (data). */
static bool folder_in_tmpdir(char *dir, size_t dn, char *data, size_t n)
{
    if (!make_tmpdir(dir, dn)) return false;
    snprintf(data, n, "%s/data", dir);
    return mkdir(data, 0777) == 0 && make_folder_dataset(data);
}

/* An image folder:
 * - a bad image is skipped and listed (exit 0), or aborts with --strict;
 * - the cosine schedule still ends on its last step though the bad image makes each epoch a
 *   batch short (the schedule follows the position in the epoch, not a count of batches);
 * - --eval-only and --resume refuse data whose classes differ from the checkpoint's by name
 *   (same count, so the labels would silently mean other classes);
 * - --predict works under a TMPDIR longer than the 40 characters it once cut it to;
 * - a class folder with a line break in its name is refused at the start (checkpoints keep
 *   the names one per line, so the run could never be resumed). */
TEST(train_tool_image_folder)
{
    char tool[512], dir[256], data[300], args[2048], env_tool[1300], path[700];
    static char out[65536];
    if (!tool_path(tool, sizeof tool)) return;
    REQUIRE(folder_in_tmpdir(dir, sizeof dir, data, sizeof data));
    snprintf(args, sizeof args,
             "--data %s --model lenet5 --img-size 32 --epochs 2 --batch 4 --workers 2 "
             "--checkpoint-dir %s/run",
             data, dir);
    int rc = run_tool(tool, args, out, sizeof out);
    if (rc != 0) printf("%s\n", out);
    CHECK(rc == 0);
    CHECK(strstr(out, "17 train / 8 val images, 2 classes, 3x32x32 input") != NULL);
    CHECK(strstr(out, "1 bad image(s) skipped in train") != NULL);
    CHECK(strstr(out, "broken.png") != NULL);
    CHECK(strstr(out, "bottom") != NULL && strstr(out, "top") != NULL);
    CHECK(strstr(out, "\ntraining data: 2 worker(s) decoded ") != NULL);
    /* Two classes: the "top-5" (always 100%) is labelled for what it is. */
    CHECK(strstr(out, " top-2 100.00%") != NULL && strstr(out, "top-5") == NULL);
    /* No workers: the training loop decodes, and the report says so. */
    snprintf(args, sizeof args,
             "--data %s --img-size 32 --epochs 1 --batch 4 --workers 0 --checkpoint-dir %s/inline",
             data, dir);
    rc = run_tool(tool, args, out, sizeof out);
    if (rc != 0 || !strstr(out, "training data: the training loop decoded (--workers 0) ") ||
        !strstr(out, "(1 bad)"))
        cnn_test_fail(__FILE__, __LINE__, "%s: exit %d, output:\n%s", args, rc, out);
    snprintf(args, sizeof args,
             "--data %s --img-size 32 --epochs 1 --batch 4 --strict "
             "--checkpoint-dir %s/strict",
             data, dir);
    check_one_line_error(tool, args, "broken.png");
    snprintf(path, sizeof path, "%s/strict", dir); /* made for the run, removed with it */
    CHECK(access(path, F_OK) != 0);

    /* 17 samples, 16 good: 4 batches of the 5 nominal. The last batch is still the cosine's
     * last step, 9 of 10 (when counted, step 7: 0.000412). Adam's default lr 0.002. */
    snprintf(path, sizeof path, "%s/run", dir);
    const double lr = last_lr(path), want = 0.002 * 0.5 * (1 + cos(M_PI * 9 / 10));
    if (!(fabs(lr - want) < 1e-9))
        cnn_test_fail(__FILE__, __LINE__, "last epoch's lr %g, want %g (cosine step 9 of 10)",
                      lr, want);

    /* Predict under a long TMPDIR (over 40 characters). */
    snprintf(path, sizeof path, "%s/a_temporary_directory_with_a_rather_long_name_0123456789",
             dir);
    REQUIRE(mkdir(path, 0777) == 0);
    snprintf(env_tool, sizeof env_tool, "TMPDIR=%s %s", path, tool);
    snprintf(args, sizeof args,
             "--predict %s/val/top/img0.png --checkpoint %s/run/best.safetensors", data, dir);
    rc = run_tool(env_tool, args, out, sizeof out);
    if (rc != 0) printf("%s\n", out);
    CHECK(rc == 0 && strstr(out, "  1. ") != NULL);
    /* A folder or a FIFO named like an image is named as given, before any is classified. */
    char odd[2][300];
    snprintf(odd[0], sizeof odd[0], "%s/folder.png", dir);
    snprintf(odd[1], sizeof odd[1], "%s/fifo.png", dir);
    REQUIRE(mkdir(odd[0], 0777) == 0 && mkfifo(odd[1], 0600) == 0);
    for (int i = 0; i < 2; i++) {
        snprintf(args, sizeof args, "--predict %s/val/top/img0.png --checkpoint "
                 "%s/run/best.safetensors %s", data, dir, odd[i]);
        snprintf(path, sizeof path, "%s: not a regular file", odd[i]);
        check_one_line_error(tool, args, path);
        snprintf(args, sizeof args, "--predict %s --checkpoint %s/run/best.safetensors", odd[i],
                 dir);
        check_one_line_error(tool, args, path);
    }

    /* The run's folder named another way ("data/") is no change worth a note; --epochs is.
     * The skipped file is named without a doubled slash. */
    snprintf(args, sizeof args, "--resume %s/run/last.safetensors --data %s/ --epochs 3", dir,
             data);
    rc = run_tool(tool, args, out, sizeof out);
    if (rc != 0 || !strstr(out, "resumed with --epochs 3 (the run's: 2): ") ||
        !strstr(out, "/data/train/top/broken.png") || strstr(out, "//"))
        cnn_test_fail(__FILE__, __LINE__, "%s: exit %d, output:\n%s", args, rc, out);

    /* Same number of classes, another name: the checkpoint's labels would mean other classes. */
    char from[700], to[700];
    snprintf(from, sizeof from, "%s/val/top", data);
    snprintf(to, sizeof to, "%s/val/upper", data);
    REQUIRE(rename(from, to) == 0);
    snprintf(args, sizeof args, "--eval-only %s/run/last.safetensors --data %s --img-size 32", dir,
             data);
    check_one_line_error(tool, args, "class 1 is 'upper', but in");
    snprintf(args, sizeof args, "--resume %s/run/last.safetensors --data %s --epochs 3", dir, data);
    check_one_line_error(tool, args, "class 1 is 'upper', but in");
    REQUIRE(rename(to, from) == 0);

    /* One class: top-k is top-1, printed once (it read "top-1 100.00% top-1 100.00%"). */
    const char *sp[2] = {"train", "val"};
    for (int i = 0; i < 2; i++) {
        snprintf(from, sizeof from, "%s/%s/bottom", data, sp[i]);
        snprintf(to, sizeof to, "%s/%s-bottom", dir, sp[i]);
        REQUIRE(rename(from, to) == 0);
    }
    snprintf(args, sizeof args,
             "--data %s --img-size 32 --epochs 1 --batch 4 --checkpoint-dir %s/one", data, dir);
    rc = run_tool(tool, args, out, sizeof out);
    if (rc != 0 || !strstr(out, "top-1 100.00%  lr") ||
        !strstr(out, "top-1 100.00%  (") || strstr(out, "top-1 100.00% top"))
        cnn_test_fail(__FILE__, __LINE__, "%s: exit %d, output:\n%s", args, rc, out);
    for (int i = 0; i < 2; i++) {
        snprintf(from, sizeof from, "%s/%s/bottom", data, sp[i]);
        snprintf(to, sizeof to, "%s/%s-bottom", dir, sp[i]);
        REQUIRE(rename(to, from) == 0);
    }

    /* A line break in a class folder's name. */
    const char *splits[2] = {"train", "val"};
    for (int i = 0; i < 2; i++) {
        snprintf(to, sizeof to, "%s/%s/new\nline", data, splits[i]);
        REQUIRE(mkdir(to, 0777) == 0);
        snprintf(args, sizeof args, "cp %s/%s/top/img0.png '%s/'", data, splits[i], to);
        REQUIRE(system(args) == 0);
    }
    snprintf(args, sizeof args,
             "--data %s --img-size 32 --epochs 1 --batch 4 --checkpoint-dir %s/nl", data, dir);
    check_one_line_error(tool, args, "line break");
    remove_tree(dir);
}

/* Adds a class folder NAME, with one image, to DATA/SPLIT; false on failure. */
static bool add_class(const char *data, const char *split, const char *name)
{
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "mkdir '%s/%s/%s' && cp '%s/%s/top/img0.png' '%s/%s/%s/'", data,
             split, name, data, split, data, split, name);
    return system(cmd) == 0;
}

/* The splits and the checkpoint must agree on the number of classes: a validation split with a
 * class more than the training split is refused at the start, and so is data with a class more
 * than the checkpoint's model for --resume and --eval-only (the labels are indices). */
TEST(train_tool_folder_class_counts_must_agree)
{
    char tool[512], dir[256], data[300], args[2048];
    static char out[65536];
    if (!tool_path(tool, sizeof tool)) return;
    REQUIRE(folder_in_tmpdir(dir, sizeof dir, data, sizeof data));
    REQUIRE(add_class(data, "val", "zebra"));
    snprintf(args, sizeof args,
             "--data %s --img-size 32 --epochs 1 --batch 4 --checkpoint-dir %s/run", data, dir);
    check_one_line_error(tool, args, "train has 2 classes, validation 3");
    snprintf(args, sizeof args, "rm -r '%s/val/zebra'", data);
    REQUIRE(system(args) == 0);
    snprintf(args, sizeof args,
             "--data %s --img-size 32 --epochs 1 --batch 4 --checkpoint-dir %s/run", data, dir);
    int rc = run_tool(tool, args, out, sizeof out);
    if (rc != 0) cnn_test_fail(__FILE__, __LINE__, "%s: exit %d, output:\n%s", args, rc, out);
    REQUIRE(add_class(data, "train", "zebra") && add_class(data, "val", "zebra"));
    snprintf(args, sizeof args, "--resume %s/run/last.safetensors --data %s --epochs 2", dir,
             data);
    check_one_line_error(tool, args, "has 3 classes, the checkpoint's model 2");
    snprintf(args, sizeof args, "--eval-only %s/run/last.safetensors --data %s", dir, data);
    check_one_line_error(tool, args, "has 3 classes, the checkpoint's model 2");
    remove_tree(dir);
}

/* ResNet-18 at 32x32 cannot train on a batch of one image (layer4's batch norm sees a 1x1 map).
 * 17 training files in batches of 5 leave 2 over, but one file is bad, so the last batch holds
 * one image: it is left out with a note, and the run ends well (before, it failed at the end of
 * its first epoch). --batch 1 is refused before the run starts. */
TEST(train_tool_a_batch_of_one_image_that_bad_files_leave_is_left_out)
{
    char tool[512], dir[256], data[300], args[2048];
    static char out[65536];
    if (!tool_path(tool, sizeof tool)) return;
    REQUIRE(folder_in_tmpdir(dir, sizeof dir, data, sizeof data));
    snprintf(args, sizeof args, "--data %s --model resnet18 --img-size 32 --epochs 2 --batch 5 "
             "--workers 0 --checkpoint-dir %s/run", data, dir);
    int rc = run_tool(tool, args, out, sizeof out);
    if (rc != 0) cnn_test_fail(__FILE__, __LINE__, "%s: exit %d, output:\n%s", args, rc, out);
    const char *note = strstr(out, "note: bad files left a batch of 1 image, which layer4.0.bn1 "
                                   "cannot train on: it is left out");
    CHECK(note);
    CHECK(note && !strstr(note + 20, "bad files left")); /* once, though each epoch leaves one */
    CHECK(!strstr(out, "training images leave 1"));
    snprintf(args, sizeof args, "--data %s --model resnet18 --img-size 32 --epochs 1 --batch 1 "
             "--checkpoint-dir %s/run2", data, dir);
    check_one_line_error(tool, args, "layer4.0.bn1 normalises a 1x1 map, which cannot be trained "
                                     "on one image: use a --batch of 2 or more");
    remove_tree(dir);
}

/* The training augmentation options reach the loader: from one seed, --hflip 0 (no flips)
 * trains other weights than the folder's default (flips half the images), and adding
 * --random-erase 1 other weights again. (--workers 0: the same draws every run.) */
TEST(train_tool_augmentation_options_reach_the_loader)
{
    char tool[512], dir[256], data[300], args[2048], path[700];
    static char out[65536];
    if (!tool_path(tool, sizeof tool)) return;
    REQUIRE(folder_in_tmpdir(dir, sizeof dir, data, sizeof data));
    const char *opts[3] = {"", "--hflip 0", "--hflip 0 --random-erase 1"};
    cnn_dict *d[3] = {NULL, NULL, NULL};
    for (int k = 0; k < 3; k++) {
        snprintf(args, sizeof args, "--data %s --img-size 32 --epochs 1 --batch 4 --workers 0 "
                 "--seed 5 %s --checkpoint-dir %s/run%d", data, opts[k], dir, k);
        int rc = run_tool(tool, args, out, sizeof out);
        if (rc != 0) cnn_test_fail(__FILE__, __LINE__, "%s: exit %d, output:\n%s", args, rc, out);
        snprintf(path, sizeof path, "%s/run%d/last.safetensors", dir, k);
        CHECK_OK(cnn_safetensors_load(path, &d[k]));
    }
    for (int k = 1; k < 3; k++) {
        const cnn_tensor *a = cnn_dict_get(d[k - 1], "conv1.weight");
        const cnn_tensor *b = cnn_dict_get(d[k], "conv1.weight");
        REQUIRE(a && b && cnn_tensor_numel(a) == cnn_tensor_numel(b));
        if (!memcmp(cnn_tensor_cdata(a), cnn_tensor_cdata(b),
                    (size_t)cnn_tensor_numel(a) * sizeof(float)))
            cnn_test_fail(__FILE__, __LINE__, "'%s' trains the weights '%s' does", opts[k],
                          opts[k - 1]);
    }
    for (int k = 0; k < 3; k++) cnn_dict_destroy(&d[k]);
    remove_tree(dir);
}
