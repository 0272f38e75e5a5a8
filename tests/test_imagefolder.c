/* test_imagefolder.c — the folder dataset on a small tree the test writes itself (mixed PNG /
 * JPEG / BMP, gray and RGB, several sizes, bad files, an empty class): listing, order, labels,
 * decoding and its errors; links that loop back or lead nowhere, FIFOs, the side limit. The
 * tree builder and the file writers are shared with test_loader.c and test_image_decode.c
 * (data_fixtures.h). */
#include "test.h"

#include <ftw.h>
#include <math.h>
#include <stb/stb_image_write.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "data_fixtures.h"
#include "scratch.h"

/* Every image of a class has one gray level, so labels can be checked from pixels. */
const int data_test_class_value[4] = {40, 120, -1, 200};

int data_test_write_image(const char *dir, const char *name, int w, int h, int comp, int value)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    unsigned char *p = malloc((size_t)w * h * comp);
    if (!p) return -1;
    memset(p, value, (size_t)w * h * comp);
    const char *ext = strrchr(name, '.');
    int ok = 0;
    if (strcmp(ext, ".png") == 0) ok = stbi_write_png(path, w, h, comp, p, w * comp);
    else if (strcmp(ext, ".bmp") == 0) ok = stbi_write_bmp(path, w, h, comp, p);
    else ok = stbi_write_jpg(path, w, h, comp, p, 95);
    free(p);
    return ok ? 0 : -1;
}

int data_test_write_bytes(const char *dir, const char *name, const void *data, size_t n)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = n ? fwrite(data, 1, n, f) : 0;
    fclose(f);
    return w == n ? 0 : -1;
}

int data_test_one_class_folder(char *root, const char *split, char *dir, size_t n)
{
    strcpy(root, "/tmp/cnn_folder_XXXXXX");
    if (!mkdtemp(root)) return -1;
    snprintf(dir, n, "%s/%s", root, split);
    if (mkdir(dir, 0755) != 0) return -1;
    snprintf(dir, n, "%s/%s/k", root, split);
    return mkdir(dir, 0755);
}

/* A noisy 64x64 JPEG cut to three quarters of its length (inside the entropy-coded data). */
static int write_truncated_jpeg(const char *dir, const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    unsigned char p[64 * 64 * 3];
    for (int i = 0; i < 64 * 64 * 3; i++) p[i] = (unsigned char)((i * 7919) >> 3);
    if (!stbi_write_jpg(path, 64, 64, 3, p, 90)) return -1;
    struct stat sb;
    if (stat(path, &sb) != 0) return -1;
    return truncate(path, sb.st_size * 3 / 4);
}

/* Writes ROOT/train/{B_dog, a_cat, c_empty, d_fish}/... under a new /tmp folder whose path is
 * put in root (>= 64 bytes). Samples in order (strcmp of class, then file):
 *   0 B_dog/img0.png gray 33x17   1 B_dog/img1.jpg RGB 50x60   2 B_dog/trunc.jpg (bad)
 *   3 a_cat/img0.png RGB 20x30    4 a_cat/img1.jpg gray 40x25  5 a_cat/img2.bmp RGB 16x16
 *   6 a_cat/zero.jpg (0 bytes)    7 d_fish/img0.jpg RGB 24x24  8 d_fish/img1.png gray 9x12
 *   9 d_fish/text.jpg (text)
 * plus B_dog/notes.txt (ignored) and the empty class c_empty (label 2). */
int data_test_make_tree(char *root)
{
    strcpy(root, "/tmp/cnn_folder_XXXXXX");
    if (!mkdtemp(root)) return -1;
    char dir[512];
    int rc = 0;
    snprintf(dir, sizeof dir, "%s/train", root);
    rc |= mkdir(dir, 0755);
    const char *classes[4] = {"d_fish", "B_dog", "c_empty", "a_cat"};
    for (int c = 0; c < 4; c++) {
        snprintf(dir, sizeof dir, "%s/train/%s", root, classes[c]);
        rc |= mkdir(dir, 0755);
    }
    snprintf(dir, sizeof dir, "%s/train/B_dog", root);
    rc |= data_test_write_image(dir, "img0.png", 33, 17, 1, 40);
    rc |= data_test_write_image(dir, "img1.jpg", 50, 60, 3, 40);
    rc |= write_truncated_jpeg(dir, "trunc.jpg");
    rc |= data_test_write_bytes(dir, "notes.txt", "not an image\n", 13);
    snprintf(dir, sizeof dir, "%s/train/a_cat", root);
    rc |= data_test_write_image(dir, "img0.png", 20, 30, 3, 120);
    rc |= data_test_write_image(dir, "img1.jpg", 40, 25, 1, 120);
    rc |= data_test_write_image(dir, "img2.bmp", 16, 16, 3, 120);
    rc |= data_test_write_bytes(dir, "zero.jpg", "", 0);
    snprintf(dir, sizeof dir, "%s/train/d_fish", root);
    rc |= data_test_write_image(dir, "img0.jpg", 24, 24, 3, 200);
    rc |= data_test_write_image(dir, "img1.png", 9, 12, 1, 200);
    rc |= data_test_write_bytes(dir, "text.jpg", "hello, I am not a JPEG\n", 23);
    return rc ? -1 : 0;
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

void data_test_remove_tree(const char *root) { nftw(root, remove_entry, 16, FTW_DEPTH | FTW_PHYS); }

TEST(imagefolder_lists_sorted_classes_and_files)
{
    char root[64];
    REQUIRE(data_test_make_tree(root) == 0);
    cnn_dataset *ds = NULL;
    CHECK_OK(cnn_imagefolder_create(root, "train", 3, &ds));
    CHECK(cnn_dataset_size(ds) == 10);
    REQUIRE(cnn_dataset_num_classes(ds) == 4);
    const char *names[4] = {"B_dog", "a_cat", "c_empty", "d_fish"};
    for (int c = 0; c < 4; c++) CHECK(strcmp(cnn_dataset_class_name(ds, c), names[c]) == 0);
    const int64_t labels[10] = {0, 0, 0, 1, 1, 1, 1, 3, 3, 3};
    const char *files[10] = {"B_dog/img0.png", "B_dog/img1.jpg", "B_dog/trunc.jpg",
                             "a_cat/img0.png", "a_cat/img1.jpg", "a_cat/img2.bmp",
                             "a_cat/zero.jpg", "d_fish/img0.jpg", "d_fish/img1.png",
                             "d_fish/text.jpg"};
    char name[512];
    for (int i = 0; i < 10; i++) {
        CHECK(cnn_dataset_label(ds, i) == labels[i]);
        cnn_dataset_sample_name(ds, i, name, sizeof name);
        size_t a = strlen(name), b = strlen(files[i]);
        CHECK(a > b && strcmp(name + a - b, files[i]) == 0);
    }
    CHECK(cnn_dataset_native_size(ds, NULL, NULL) == 0);
    /* The empty class and the ignored text file are reported, not errors. */
    REQUIRE(cnn_dataset_num_warnings(ds) == 2);
    bool empty_seen = false, ignored_seen = false;
    for (int i = 0; i < 2; i++) {
        const char *w = cnn_dataset_warning(ds, i);
        if (strstr(w, "c_empty") && strstr(w, "no images")) empty_seen = true;
        if (strstr(w, "B_dog") && strstr(w, "ignored 1")) ignored_seen = true;
    }
    CHECK(empty_seen && ignored_seen);
    CHECK(cnn_dataset_warning(ds, 2) == NULL);
    cnn_dataset_destroy(&ds);
    /* A root given with trailing slashes names its files with single ones. */
    char slashed[80];
    snprintf(slashed, sizeof slashed, "%s//", root);
    CHECK_OK(cnn_imagefolder_create(slashed, "train", 3, &ds));
    cnn_dataset_sample_name(ds, 0, name, sizeof name);
    CHECK(strncmp(name, root, strlen(root)) == 0 && !strstr(name, "//") &&
          strstr(name, "/train/B_dog/img0.png"));
    cnn_dataset_destroy(&ds);
    data_test_remove_tree(root);
}

TEST(imagefolder_decodes_good_files_and_names_bad_ones)
{
    char root[64];
    REQUIRE(data_test_make_tree(root) == 0);
    for (int channels = 1; channels <= 3; channels += 2) {
        cnn_dataset *ds = NULL;
        CHECK_OK(cnn_imagefolder_create(root, "train", channels, &ds));
        CHECK(cnn_dataset_channels(ds) == channels);
        cnn_transform t = cnn_transform_default(ds, false, 8);
        for (int c = 0; c < 3; c++) {
            t.mean[c] = 0;
            t.std[c] = 1;
        }
        float out[3 * 64];
        for (int64_t i = 0; i < 10; i++) {
            int64_t y = -1;
            cnn_status st = cnn_dataset_get(ds, i, &t, 7, 0, out, &y);
            char name[512];
            cnn_dataset_sample_name(ds, i, name, sizeof name);
            if (i == 2 || i == 6 || i == 9) {
                CHECK(st == CNN_ERR_FORMAT);
                CHECK(strstr(cnn_last_error(), name) != NULL);
                /* The path, then stb_image's reason, or ours for what is no image at all. */
                const char *why = i == 2 ? "): " : "): not a JPEG, PNG, BMP or PNM file";
                CHECK(strstr(cnn_last_error(), why) != NULL);
                continue;
            }
            CHECK(st == CNN_OK);
            CHECK(y == cnn_dataset_label(ds, i));
            float v = data_test_class_value[y] / 255.0f, worst = 0;
            for (int p = 0; p < channels * 64; p++) worst = fmaxf(worst, fabsf(out[p] - v));
            if (worst > 3 / 255.0f) cnn_test_fail(__FILE__, __LINE__, "%s: off by %g", name, worst);
        }
        cnn_dataset_destroy(&ds);
    }
    data_test_remove_tree(root);
}

/* One channel from colour files is PIL's convert('L'): L = (19595 R + 38470 G + 7471 B + 2^15)
 * >> 16 of the decoded RGB. stb_image's own gray truncated other weights (1 level off) and kept a
 * JPEG's Y plane (for saturated colours, tens of levels from PIL's). */
static void gray_of_rgb(const char *name)
{
    unsigned char rgb[4 * 4 * 3];
    for (int i = 0; i < 16; i++) {
        const unsigned char px[6][3] = {{0, 255, 0}, {0, 0, 255}, {255, 0, 0},
                                        {200, 100, 50}, {255, 0, 255}, {13, 77, 250}};
        for (int c = 0; c < 3; c++) rgb[i * 3 + c] = px[i % 6][c];
    }
    char root[64], dir[128], path[192];
    strcpy(root, "/tmp/cnn_gray_XXXXXX");
    REQUIRE(mkdtemp(root));
    snprintf(dir, sizeof dir, "%s/train", root);
    REQUIRE(mkdir(dir, 0755) == 0);
    snprintf(dir, sizeof dir, "%s/train/a", root);
    REQUIRE(mkdir(dir, 0755) == 0);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    const bool png = strstr(name, ".png") != NULL;
    REQUIRE(png ? stbi_write_png(path, 4, 4, 3, rgb, 12) : stbi_write_jpg(path, 4, 4, 3, rgb, 90));
    cnn_dataset *gray = NULL, *color = NULL;
    CHECK_OK(cnn_imagefolder_create(root, "train", 1, &gray));
    CHECK_OK(cnn_imagefolder_create(root, "train", 3, &color));
    REQUIRE(gray && color);
    float g[16], c[48];
    cnn_transform tg = cnn_transform_default(gray, false, 4), tc = cnn_transform_default(color,
                                                                                      false, 4);
    tg.geometry = tc.geometry = CNN_GEOM_PAD_OR_RESIZE; /* 4x4 at 4: the pixels as they are */
    for (int k = 0; k < 3; k++) {
        tg.mean[k] = tc.mean[k] = 0.0f;
        tg.std[k] = tc.std[k] = 1.0f;
    }
    CHECK_OK(cnn_dataset_get(gray, 0, &tg, 0, 0, g, NULL));
    CHECK_OK(cnn_dataset_get(color, 0, &tc, 0, 0, c, NULL));
    int off = 0;
    for (int i = 0; i < 16; i++) {
        unsigned r = (unsigned)lrintf(c[i] * 255), gg = (unsigned)lrintf(c[16 + i] * 255),
                 b = (unsigned)lrintf(c[32 + i] * 255);
        if (png) CHECK(r == rgb[i * 3] && gg == rgb[i * 3 + 1] && b == rgb[i * 3 + 2]);
        unsigned want = (19595 * r + 38470 * gg + 7471 * b + 0x8000) >> 16;
        off += (unsigned)lrintf(g[i] * 255) != want;
    }
    if (off) cnn_test_fail(__FILE__, __LINE__, "%s: %d of 16 gray pixels differ from PIL's", name,
                           off);
    cnn_dataset_destroy(&gray);
    cnn_dataset_destroy(&color);
    data_test_remove_tree(root);
}

TEST(imagefolder_gray_from_colour_is_pils)
{
    gray_of_rgb("c.png");
    gray_of_rgb("c.jpg");
}

TEST(imagefolder_image_names)
{
    CHECK(cnn_imagefolder_is_image_name("a.jpg") && cnn_imagefolder_is_image_name("b.JPEG") &&
          cnn_imagefolder_is_image_name("dir/c.png") && cnn_imagefolder_is_image_name("d.Bmp"));
    CHECK(!cnn_imagefolder_is_image_name("e.gif") && !cnn_imagefolder_is_image_name("f.hdr") &&
          !cnn_imagefolder_is_image_name("jpg") && !cnn_imagefolder_is_image_name("g.jpg.txt") &&
          !cnn_imagefolder_is_image_name(NULL));
}

/* As torchvision's ImageFolder (os.walk with followlinks=True), a class folder's sub-folders are
 * walked: files folder by folder in the order of the folders' paths (k/sub-x before k/sub/deep, as
 * '-' < '/'), sorted within each; links are followed, except one back to a folder being walked or
 * above the class folder (torchvision would loop); hidden entries (macOS's ._ files, .git) are
 * skipped; the warning about ignored entries names the folder and the first of them. */
TEST(imagefolder_walks_sub_folders_in_torchvisions_order)
{
    char root[64], dir[512], path[600], target[600];
    strcpy(root, "/tmp/cnn_folder_XXXXXX");
    REQUIRE(mkdtemp(root));
    const char *dirs[] = {"train", "train/k", "train/k/sub", "train/k/sub-x", "train/k/sub/deep",
                          "train/k/.git", "train/only_nested", "train/only_nested/2019"};
    for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++) {
        snprintf(dir, sizeof dir, "%s/%s", root, dirs[i]);
        REQUIRE(mkdir(dir, 0755) == 0);
    }
    const char *files[] = {"k/b.png", "k/sub/a.png", "k/sub-x/c.png", "k/sub/deep/d.png",
                           "only_nested/2019/e.png"};
    const char *hidden[] = {"k/._b.png", "k/.git/f.png"};
    for (int i = 0; i < 5 + 2; i++) {
        const char *f = i < 5 ? files[i] : hidden[i - 5];
        snprintf(dir, sizeof dir, "%s/train/%s", root, f);
        *strrchr(dir, '/') = 0;
        REQUIRE(data_test_write_image(dir, strrchr(f, '/') + 1, 8, 8, 3, 50) == 0);
    }
    snprintf(dir, sizeof dir, "%s/train/k", root);
    REQUIRE(data_test_write_bytes(dir, "notes.txt", "x", 1) == 0);
    snprintf(path, sizeof path, "%s/train/k/sub/deep/up", root);
    snprintf(target, sizeof target, "%s/train/k", root);
    REQUIRE(symlink(target, path) == 0); /* a loop: k/sub/deep/up -> k */
    snprintf(path, sizeof path, "%s/train/k/sub/linked.png", root);
    snprintf(target, sizeof target, "%s/train/k/b.png", root);
    REQUIRE(symlink(target, path) == 0); /* a linked file counts */
    /* Links up to the split folder and to the root, above the class folder: followed, class
     * only_nested took in k's images (and everything under the root) as its own. */
    snprintf(path, sizeof path, "%s/train/only_nested/up", root);
    snprintf(target, sizeof target, "%s/train", root);
    REQUIRE(symlink(target, path) == 0);
    snprintf(path, sizeof path, "%s/train/only_nested/2019/top", root);
    REQUIRE(symlink(root, path) == 0);

    cnn_dataset *ds = NULL;
    CHECK_OK(cnn_imagefolder_create(root, "train", 3, &ds));
    REQUIRE(ds && cnn_dataset_size(ds) == 6 && cnn_dataset_num_classes(ds) == 2);
    const char *want[6] = {"k/b.png", "k/sub/a.png", "k/sub/linked.png", "k/sub-x/c.png",
                           "k/sub/deep/d.png", "only_nested/2019/e.png"};
    char name[600];
    for (int i = 0; i < 6; i++) {
        cnn_dataset_sample_name(ds, i, name, sizeof name);
        snprintf(path, sizeof path, "%s/train/%s", root, want[i]);
        CHECK(strcmp(name, path) == 0);
        CHECK(cnn_dataset_label(ds, i) == (i < 5 ? 0 : 1));
    }
    bool ignored = false, loop = false, loops_up = false;
    for (int i = 0; cnn_dataset_warning(ds, i); i++) {
        const char *w = cnn_dataset_warning(ds, i);
        CHECK(!strstr(w, "no images")); /* only_nested has one, below it */
        ignored |= strstr(w, "ignored 1 entry") && strstr(w, "'notes.txt'") &&
                   strstr(w, "/train/k'") != NULL;
        loop |= strstr(w, "1 link") && strstr(w, "/train/k'") && strstr(w, "back to a folder");
        loops_up |= strstr(w, "2 links") && strstr(w, "/train/only_nested'") != NULL;
    }
    CHECK(ignored && loop && loops_up);
    cnn_dataset_destroy(&ds);
    data_test_remove_tree(root);
}

/* Names sort as Python's sorted() sorts os.scandir's str names, as torchvision's ImageFolder
 * lists classes and files: by code point, with each byte that is not UTF-8 read as U+DC00 + b
 * (surrogateescape). The order below is torchvision 0.14's find_classes on these folders; a
 * byte-wise strcmp put "\xC3" and "\xC3x" before "é" (\xC3\xA9) and "\xE4\xB8" before U+4E00. */
TEST(imagefolder_sorts_names_as_python_does)
{
    static const char *const want[] = {"z",            "\xC3\xA9",     "\xE4\xB8\x80",
                                       "\xC3",         "\xC3x",        "\xE4\xB8",
                                       "\xED\xA0\x80", "\xEF\xBC\xA1", "\xF0\x9F\x98\x80"};
    enum { K = sizeof want / sizeof *want };
    char root[64], dir[512];
    strcpy(root, "/tmp/cnn_folder_XXXXXX");
    REQUIRE(mkdtemp(root));
    snprintf(dir, sizeof dir, "%s/train", root);
    REQUIRE(mkdir(dir, 0755) == 0);
    for (int i = K - 1; i >= 0; i--) { /* made in reverse, so that no listing order helps */
        snprintf(dir, sizeof dir, "%s/train/%s", root, want[i]);
        REQUIRE(mkdir(dir, 0755) == 0);
        REQUIRE(data_test_write_image(dir, "a.png", 8, 8, 3, 50) == 0);
    }
    /* Within a class, files in the same order. */
    char file[32], name[600];
    for (int i = K - 1; i >= 0; i--) {
        snprintf(file, sizeof file, "%s.png", want[i]);
        snprintf(dir, sizeof dir, "%s/train/z", root);
        REQUIRE(data_test_write_image(dir, file, 8, 8, 3, 50) == 0);
    }
    cnn_dataset *ds = NULL;
    CHECK_OK(cnn_imagefolder_create(root, "train", 3, &ds));
    REQUIRE(ds && cnn_dataset_num_classes(ds) == K && cnn_dataset_size(ds) == 2 * K);
    for (int i = 0; i < K; i++) {
        if (strcmp(cnn_dataset_class_name(ds, i), want[i]))
            cnn_test_fail(__FILE__, __LINE__, "class %d is '%s', want '%s'", i,
                          cnn_dataset_class_name(ds, i), want[i]);
        /* Class "z" holds a.png and then the K named files, "z.png" first. */
        cnn_dataset_sample_name(ds, 1 + i, name, sizeof name);
        snprintf(dir, sizeof dir, "%s/train/z/%s.png", root, want[i]);
        CHECK(strcmp(name, dir) == 0);
    }
    cnn_dataset_destroy(&ds);
    data_test_remove_tree(root);
}

TEST(imagefolder_missing_or_empty_roots_are_errors)
{
    char root[64], dir[512];
    strcpy(root, "/tmp/cnn_folder_XXXXXX");
    REQUIRE(mkdtemp(root));
    cnn_dataset *ds = NULL;
    snprintf(dir, sizeof dir, "%s/nowhere", root);
    CHECK_ERR(cnn_imagefolder_create(dir, "train", 3, &ds), CNN_ERR_IO);
    CHECK(strstr(cnn_last_error(), dir) && strstr(cnn_last_error(), "does not exist"));
    CHECK_ERR(cnn_imagefolder_create(root, "train", 3, &ds), CNN_ERR_IO);
    CHECK(strstr(cnn_last_error(), "train") && strstr(cnn_last_error(), "does not exist"));
    snprintf(dir, sizeof dir, "%s/train", root);
    FILE *f = fopen(dir, "w"); /* a file where the split folder should be: said so */
    REQUIRE(f);
    fclose(f);
    CHECK_ERR(cnn_imagefolder_create(root, "train", 3, &ds), CNN_ERR_IO);
    CHECK(strstr(cnn_last_error(), "train' is not a folder"));
    REQUIRE(remove(dir) == 0);
    REQUIRE(mkdir(dir, 0755) == 0);
    CHECK_ERR(cnn_imagefolder_create(root, "train", 3, &ds), CNN_ERR_NOT_FOUND);
    CHECK(strstr(cnn_last_error(), "no class folders") != NULL);
    snprintf(dir, sizeof dir, "%s/train/only", root);
    REQUIRE(mkdir(dir, 0755) == 0);
    CHECK_ERR(cnn_imagefolder_create(root, "train", 3, &ds), CNN_ERR_NOT_FOUND);
    CHECK(strstr(cnn_last_error(), "no image files") != NULL);
    CHECK_ERR(cnn_imagefolder_create(root, "train", 2, &ds), CNN_ERR_INVALID_ARG);
    CHECK_ERR(cnn_imagefolder_create(NULL, "train", 3, &ds), CNN_ERR_INVALID_ARG);
    CHECK(ds == NULL);
    data_test_remove_tree(root);
}

/* Two classes or two files are sorted too (whatever order the folder lists them in: pairs
 * made in both orders), and an RGB folder normalises with ImageNet's mean and std in RGB order
 * (a gray one with their luma-weighted values). */
TEST(imagefolder_sorts_pairs_and_gives_imagenet_statistics)
{
    char root[64], dir[256];
    strcpy(root, "/tmp/cnn_pairs_XXXXXX");
    REQUIRE(mkdtemp(root));
    const char *pairs[6][2] = {{"b", "a"}, {"c", "d"}, {"y", "x"},
                               {"m", "n"}, {"q", "p"}, {"g", "h"}};
    int rc = 0;
    for (int s = 0; s < 6; s++) {
        snprintf(dir, sizeof dir, "%s/s%d", root, s);
        rc |= mkdir(dir, 0755);
        for (int c = 0; c < 2; c++) {
            snprintf(dir, sizeof dir, "%s/s%d/%s", root, s, pairs[s][c]);
            rc |= mkdir(dir, 0755);
            rc |= data_test_write_image(dir, s % 2 ? "i1.png" : "i2.png", 2, 2, 1, 10);
            rc |= data_test_write_image(dir, s % 2 ? "i2.png" : "i1.png", 2, 2, 1, 10);
        }
    }
    REQUIRE(rc == 0);
    char split[8], name[512];
    for (int s = 0; s < 6; s++) {
        snprintf(split, sizeof split, "s%d", s);
        cnn_dataset *ds = NULL;
        CHECK_OK(cnn_imagefolder_create(root, split, s % 2 ? 3 : 1, &ds));
        if (!ds) continue;
        const bool asc = strcmp(pairs[s][0], pairs[s][1]) < 0;
        CHECK(!strcmp(cnn_dataset_class_name(ds, 0), pairs[s][asc ? 0 : 1]));
        CHECK(!strcmp(cnn_dataset_class_name(ds, 1), pairs[s][asc ? 1 : 0]));
        for (int i = 0; i < 4; i++) {
            cnn_dataset_sample_name(ds, i, name, sizeof name);
            CHECK(strstr(name, i % 2 ? "/i2.png" : "/i1.png") != NULL);
        }
        float mean[3], std[3];
        cnn_dataset_mean_std(ds, mean, std);
        const float rgb_mean[3] = {0.485f, 0.456f, 0.406f}, rgb_std[3] = {0.229f, 0.224f, 0.225f};
        for (int c = 0; c < 3; c++) {
            CHECK(mean[c] == (s % 2 ? rgb_mean[c] : 0.449f));
            CHECK(std[c] == (s % 2 ? rgb_std[c] : 0.226f));
        }
        cnn_dataset_destroy(&ds);
    }
    data_test_remove_tree(root);
}

/* A link to the very folder being walked (k/self -> k) is a loop too: not followed, warned
 * about, its files listed once. A dangling link named like an image (k/gone.png -> nothing) is
 * an ignored entry, named in the warning, not a sample and not silently dropped.
 * (A loop check that skipped the folder itself listed k's image twice, as k/a.png and
 * k/self/a.png.) */
TEST(imagefolder_self_link_and_dangling_link)
{
    char root[64], dir[300], link[400], target[400];
    strcpy(root, "/tmp/cnn_round2_XXXXXX");
    REQUIRE(mkdtemp(root));
    snprintf(dir, sizeof dir, "%s/train", root);
    REQUIRE(mkdir(dir, 0755) == 0);
    snprintf(dir, sizeof dir, "%s/train/k", root);
    REQUIRE(mkdir(dir, 0755) == 0);
    REQUIRE(data_test_write_image(dir, "a.png", 8, 8, 3, 50) == 0);
    snprintf(link, sizeof link, "%s/self", dir);
    REQUIRE(symlink(dir, link) == 0);
    snprintf(link, sizeof link, "%s/gone.png", dir);
    snprintf(target, sizeof target, "%s/nowhere.png", root);
    REQUIRE(symlink(target, link) == 0);
    cnn_dataset *ds = NULL;
    CHECK_OK(cnn_imagefolder_create(root, "train", 3, &ds));
    if (ds) {
        CHECK(cnn_dataset_size(ds) == 1 && cnn_dataset_num_classes(ds) == 1);
        bool loop = false, ignored = false;
        for (int i = 0; cnn_dataset_warning(ds, i); i++) {
            const char *w = cnn_dataset_warning(ds, i);
            loop |= strstr(w, "1 link") && strstr(w, "back to a folder");
            ignored |= strstr(w, "ignored 1 entry") && strstr(w, "'gone.png'");
        }
        CHECK(loop && ignored);
        if (cnn_test_failed())
            for (int i = 0; cnn_dataset_warning(ds, i); i++)
                printf("    warning: %s\n", cnn_dataset_warning(ds, i));
    }
    cnn_dataset_destroy(&ds);
    data_test_remove_tree(root);
}

/* Three ignored entries are all named in the warning (the first three are; a fourth would be
 * "..."), and a FIFO named like an image is one of them: only regular files are samples. An
 * overlong UTF-8 form ("\xC1\x81", 'A' in two bytes) is not decoded: Python reads both bytes
 * as U+DCC1 U+DC81 (surrogateescape), which sort after "k", where 'A' would sort first. */
TEST(imagefolder_fifo_overlong_name_and_three_ignored_entries)
{
    char root[64], dir[300], path[400];
    REQUIRE(data_test_one_class_folder(root, "train", dir, sizeof dir) == 0);
    snprintf(path, sizeof path, "%s/train/\xC1\x81", root);
    REQUIRE(mkdir(path, 0755) == 0);
    REQUIRE(data_test_write_image(path, "a.png", 8, 8, 3, 50) == 0);
    REQUIRE(data_test_write_image(dir, "a.png", 8, 8, 3, 50) == 0);
    REQUIRE(data_test_write_bytes(dir, "x.txt", "x", 1) == 0);
    REQUIRE(data_test_write_bytes(dir, "y.txt", "y", 1) == 0);
    snprintf(path, sizeof path, "%s/f.png", dir);
    REQUIRE(mkfifo(path, 0644) == 0);
    cnn_dataset *ds = NULL;
    CHECK_OK(cnn_imagefolder_create(root, "train", 3, &ds));
    if (ds) {
        CHECK(cnn_dataset_size(ds) == 2 && cnn_dataset_num_classes(ds) == 2);
        CHECK(strcmp(cnn_dataset_class_name(ds, 0), "k") == 0);
        CHECK(strcmp(cnn_dataset_class_name(ds, 1), "\xC1\x81") == 0);
        bool named = false;
        for (int i = 0; cnn_dataset_warning(ds, i); i++) {
            const char *w = cnn_dataset_warning(ds, i);
            named |= strstr(w, "ignored 3 entries") && strstr(w, "'f.png'") &&
                     strstr(w, "'x.txt'") && strstr(w, "'y.txt'") && !strstr(w, "...");
        }
        CHECK(named);
    }
    cnn_dataset_destroy(&ds);
    data_test_remove_tree(root);
}

/* The size limit lets an image of 32768 pixels a side through and refuses 32769 (a per-sample
 * format error naming the size), checked on 1-pixel-high PNGs. */
TEST(imagefolder_side_limit_is_32768_inclusive)
{
    char root[64], dir[300];
    REQUIRE(data_test_one_class_folder(root, "train", dir, sizeof dir) == 0);
    REQUIRE(data_test_write_image(dir, "a.png", 32768, 1, 1, 77) == 0);
    REQUIRE(data_test_write_image(dir, "b.png", 32769, 1, 1, 77) == 0);
    cnn_dataset *ds = NULL;
    CHECK_OK(cnn_imagefolder_create(root, "train", 1, &ds));
    if (ds) {
        cnn_transform t = cnn_transform_default(ds, false, 8);
        t.mean[0] = 0;
        t.std[0] = 1;
        float out[64];
        CHECK_OK(cnn_dataset_get(ds, 0, &t, 0, 0, out, NULL));
        CHECK_NEAR(out[0] * 255.0, 77, 1e-3);
        CHECK_ERR(cnn_dataset_get(ds, 1, &t, 0, 0, out, NULL), CNN_ERR_FORMAT);
        CHECK(strstr(cnn_last_error(), "32769 x 1"));
    }
    cnn_dataset_destroy(&ds);
    data_test_remove_tree(root);
}
