/* test_idx.c — the IDX reader against facts of the real Fashion-MNIST files, the pad-to-32
 * pipeline, the population std, the side limit, and corrupt / truncated / mismatched IDX files
 * written by the test. */
#include "test.h"

#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "data_fixtures.h"

/* Where the library looks for Fashion-MNIST: $CNN_FASHION_MNIST_DIR, else Debian's folder. */
static const char *fmnist_dir(void)
{
    const char *d = getenv("CNN_FASHION_MNIST_DIR");
    return d && *d ? d : "/usr/share/datasets/fashion-mnist";
}

/* fmnist_dir()/name, written into buf. */
static const char *fmnist_file(const char *name, char *buf, size_t n)
{
    snprintf(buf, n, "%s/%s", fmnist_dir(), name);
    return buf;
}

/* True when the files are there; else the test is skipped, naming the folder. */
static bool have_fashion_mnist(void)
{
    char a[512], b[512];
    if (access(fmnist_file("train-images-idx3-ubyte.gz", a, sizeof a), R_OK) == 0 &&
        access(fmnist_file("t10k-labels-idx1-ubyte.gz", b, sizeof b), R_OK) == 0)
        return true;
    snprintf(a, sizeof a, "Fashion-MNIST not installed in %s", fmnist_dir());
    cnn_test_skip(a);
    return false;
}

TEST(idx_fashion_mnist_train_facts)
{
    if (!have_fashion_mnist()) return;
    cnn_dataset *ds = NULL;
    CHECK_OK(cnn_fashion_mnist_create(NULL, true, 1, &ds));
    CHECK(cnn_dataset_size(ds) == 60000);
    int h = 0, w = 0;
    CHECK(cnn_dataset_native_size(ds, &h, &w) == 28 && h == 28 && w == 28);
    CHECK(cnn_dataset_channels(ds) == 1);
    REQUIRE(cnn_dataset_num_classes(ds) == 10);
    CHECK(strcmp(cnn_dataset_class_name(ds, 0), "T-shirt/top") == 0);
    CHECK(strcmp(cnn_dataset_class_name(ds, 9), "Ankle boot") == 0);
    CHECK(cnn_dataset_class_name(ds, 10) == NULL);
    int64_t hist[10] = {0};
    for (int64_t i = 0; i < cnn_dataset_size(ds); i++) {
        int64_t y = cnn_dataset_label(ds, i);
        REQUIRE(y >= 0 && y < 10);
        hist[y]++;
    }
    for (int c = 0; c < 10; c++) CHECK(hist[c] == 6000);
    CHECK(cnn_dataset_label(ds, 60000) == -1);
    const int64_t first[10] = {9, 0, 0, 3, 0, 2, 7, 2, 5, 5};
    for (int i = 0; i < 10; i++) CHECK(cnn_dataset_label(ds, i) == first[i]);
    /* Image 0 at its native size, unnormalised: its bytes sum to 76247. */
    cnn_transform t = cnn_transform_default(ds, false, 0);
    t.mean[0] = 0;
    t.std[0] = 1;
    float img[28 * 28];
    CHECK_OK(cnn_dataset_get(ds, 0, &t, 0, 0, img, NULL));
    double sum = 0;
    for (int p = 0; p < 28 * 28; p++) sum += img[p] * 255.0;
    CHECK_NEAR(sum, 76247, 0.05);
    float mean[3], std[3];
    cnn_dataset_mean_std(ds, mean, std);
    CHECK_NEAR(mean[0], 0.2860, 1e-6);
    CHECK_NEAR(std[0], 0.3530, 1e-6);
    cnn_dataset_destroy(&ds);
    CHECK(ds == NULL);
}

TEST(idx_fashion_mnist_test_split_and_stats)
{
    if (!have_fashion_mnist()) return;
    cnn_dataset *ds = NULL;
    CHECK_OK(cnn_fashion_mnist_create(fmnist_dir(), false, 3, &ds));
    CHECK(cnn_dataset_size(ds) == 10000);
    CHECK(cnn_dataset_channels(ds) == 3);
    int64_t hist[10] = {0};
    for (int64_t i = 0; i < 10000; i++) hist[cnn_dataset_label(ds, i)]++;
    for (int c = 0; c < 10; c++) CHECK(hist[c] == 1000);
    cnn_dataset_destroy(&ds);
    /* The generic reader computes the statistics itself: the known train values. */
    char images[512], labels[512];
    CHECK_OK(cnn_idx_dataset_create(
        fmnist_file("train-images-idx3-ubyte.gz", images, sizeof images),
        fmnist_file("train-labels-idx1-ubyte.gz", labels, sizeof labels), 1, &ds));
    float mean[3], std[3];
    cnn_dataset_mean_std(ds, mean, std);
    CHECK_NEAR(mean[0], 0.2860, 5e-4);
    CHECK_NEAR(std[0], 0.3530, 5e-4);
    char name[256];
    CHECK(strstr(cnn_dataset_sample_name(ds, 7, name, sizeof name), "train-images") != NULL);
    CHECK(strstr(name, "[7]") != NULL);
    cnn_dataset_destroy(&ds);
}

/* Writes an IDX file (gzip when gz) with the given header and n data bytes of value v. */
static void write_idx(const char *path, bool gz, const unsigned char *head, int hlen, int64_t n)
{
    unsigned char *buf = malloc((size_t)hlen + (size_t)n);
    memcpy(buf, head, (size_t)hlen);
    for (int64_t i = 0; i < n; i++) buf[hlen + i] = (unsigned char)(i % 10);
    if (gz) {
        gzFile f = gzopen(path, "wb");
        gzwrite(f, buf, (unsigned)(hlen + n));
        gzclose(f);
    } else {
        FILE *f = fopen(path, "wb");
        fwrite(buf, 1, (size_t)(hlen + n), f);
        fclose(f);
    }
    free(buf);
}

static void be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* Every pixel 7: the mean is 7/255 and the spread none, so std is the 1.0 fallback (the data set
 * then normalises to x - mean), not the 3.3e-10 a one-pass E[x^2] - mean^2 left, which turned
 * the zero padding into -8.3e7. */
TEST(idx_constant_images_have_no_spread)
{
    char dir[] = "/tmp/cnn_idx_XXXXXX";
    REQUIRE(mkdtemp(dir));
    char img[256], lab[256];
    snprintf(img, sizeof img, "%s/img", dir);
    snprintf(lab, sizeof lab, "%s/lab", dir);
    unsigned char buf[16 + 4 * 28 * 28] = {0, 0, 8, 3}, lh[8] = {0, 0, 8, 1};
    be32(buf + 4, 4);
    be32(buf + 8, 28);
    be32(buf + 12, 28);
    memset(buf + 16, 7, 4 * 28 * 28);
    be32(lh + 4, 4);
    FILE *f = fopen(img, "wb");
    REQUIRE(f);
    CHECK(fwrite(buf, 1, sizeof buf, f) == sizeof buf && fclose(f) == 0);
    write_idx(lab, false, lh, 8, 4);
    cnn_dataset *ds = NULL;
    CHECK_OK(cnn_idx_dataset_create(img, lab, 1, &ds));
    float mean[3], std[3];
    cnn_dataset_mean_std(ds, mean, std);
    CHECK_NEAR(mean[0], 7 / 255.0, 1e-7);
    CHECK(std[0] == 1.0f);
    cnn_dataset_destroy(&ds);
    remove(img);
    remove(lab);
    rmdir(dir);
}

TEST(idx_corrupt_files_are_format_errors)
{
    char dir[] = "/tmp/cnn_idx_XXXXXX";
    REQUIRE(mkdtemp(dir));
    char img[256], lab[256], bad[256];
    snprintf(img, sizeof img, "%s/img.gz", dir);
    snprintf(lab, sizeof lab, "%s/lab", dir);
    snprintf(bad, sizeof bad, "%s/bad", dir);
    unsigned char ih[16] = {0, 0, 8, 3}, lh[8] = {0, 0, 8, 1};
    be32(ih + 4, 5);
    be32(ih + 8, 4);
    be32(ih + 12, 2);
    be32(lh + 4, 5);
    write_idx(img, true, ih, 16, 5 * 4 * 2);
    write_idx(lab, false, lh, 8, 5);
    cnn_dataset *ds = NULL;
    CHECK_OK(cnn_idx_dataset_create(img, lab, 1, &ds));
    CHECK(cnn_dataset_size(ds) == 5 && cnn_dataset_num_classes(ds) == 5);
    int h = 0, w = 0;
    cnn_dataset_native_size(ds, &h, &w);
    CHECK(h == 4 && w == 2);
    /* A non-square image with img_size 0 has no output size; 6x6 pads 1 row and 2 columns. */
    cnn_transform t = cnn_transform_default(ds, false, 0);
    float out[36];
    CHECK_ERR(cnn_dataset_get(ds, 0, &t, 0, 0, out, NULL), CNN_ERR_INVALID_ARG);
    t = cnn_transform_default(ds, false, 6);
    t.mean[0] = 0;
    t.std[0] = 1;
    int64_t y = -1;
    CHECK_OK(cnn_dataset_get(ds, 1, &t, 0, 0, out, &y));
    CHECK(y == 1);
    CHECK(out[0] == 0 && out[1 * 6 + 1] == 0 && out[1 * 6 + 4] == 0 && out[35] == 0);
    /* Sample 1 starts at byte 8 of the data: values (8 + k) % 10. */
    CHECK_NEAR(out[1 * 6 + 2], 8 / 255.0, 1e-6);
    CHECK_NEAR(out[1 * 6 + 3], 9 / 255.0, 1e-6);
    CHECK_NEAR(out[2 * 6 + 2], 0, 1e-6);
    CHECK_NEAR(out[4 * 6 + 3], 5 / 255.0, 1e-6);
    CHECK_ERR(cnn_dataset_get(ds, 5, &t, 0, 0, out, NULL), CNN_ERR_INVALID_ARG);
    cnn_dataset_destroy(&ds);

    /* Truncated data (gzip and plain). */
    write_idx(bad, true, ih, 16, 5 * 4 * 2 - 1);
    CHECK_ERR(cnn_idx_dataset_create(bad, lab, 1, &ds), CNN_ERR_FORMAT);
    CHECK(strstr(cnn_last_error(), bad) && strstr(cnn_last_error(), "truncated"));
    CHECK(ds == NULL);
    /* A gzip stream cut short, and one whose compressed bytes were changed. */
    write_idx(bad, true, ih, 16, 40);
    unsigned char zb[256];
    FILE *gz = fopen(bad, "rb");
    size_t zn = gz ? fread(zb, 1, sizeof zb, gz) : 0;
    if (gz) fclose(gz);
    CHECK(zn > 30 && zn < sizeof zb);
    CHECK(truncate(bad, (off_t)zn - 12) == 0); /* into the deflate data, before the trailer */
    CHECK_ERR(cnn_idx_dataset_create(bad, lab, 1, &ds), CNN_ERR_FORMAT);
    CHECK(strstr(cnn_last_error(), bad) && strstr(cnn_last_error(), "truncated"));
    CHECK(strstr(cnn_last_error(), "<fd:") == NULL); /* zlib's name for the stream */
    for (size_t i = 12; i < zn - 8; i++) zb[i] ^= 0x5a;
    gz = fopen(bad, "wb");
    CHECK(gz && fwrite(zb, 1, zn, gz) == zn);
    if (gz) fclose(gz);
    CHECK_ERR(cnn_idx_dataset_create(bad, lab, 1, &ds), CNN_ERR_FORMAT);
    CHECK(strstr(cnn_last_error(), bad) && strstr(cnn_last_error(), "is corrupt: "));
    CHECK(strstr(cnn_last_error(), "<fd:") == NULL);
    CHECK(ds == NULL);
    write_idx(bad, false, lh, 8, 3);
    CHECK_ERR(cnn_idx_dataset_create(img, bad, 1, &ds), CNN_ERR_FORMAT);
    CHECK(strstr(cnn_last_error(), bad) != NULL);
    write_idx(bad, false, ih, 10, 0);
    CHECK_ERR(cnn_idx_dataset_create(bad, lab, 1, &ds), CNN_ERR_FORMAT);
    /* Wrong magic: an image file given as labels, and a bad type byte. */
    CHECK_ERR(cnn_idx_dataset_create(img, img, 1, &ds), CNN_ERR_FORMAT);
    CHECK(strstr(cnn_last_error(), "magic") != NULL);
    unsigned char wrong[16];
    memcpy(wrong, ih, 16);
    wrong[2] = 0x0D;
    write_idx(bad, false, wrong, 16, 40);
    CHECK_ERR(cnn_idx_dataset_create(bad, lab, 1, &ds), CNN_ERR_FORMAT);
    /* Counts that disagree, and bytes after the data. */
    unsigned char lh4[8] = {0, 0, 8, 1};
    be32(lh4 + 4, 4);
    write_idx(bad, false, lh4, 8, 4);
    CHECK_ERR(cnn_idx_dataset_create(img, bad, 1, &ds), CNN_ERR_FORMAT);
    CHECK(strstr(cnn_last_error(), "5 images") && strstr(cnn_last_error(), "4 labels"));
    /* (5 labels and a sixth byte: with a count of 4 the count check alone would refuse it.) */
    write_idx(bad, false, lh, 8, 6);
    CHECK_ERR(cnn_idx_dataset_create(img, bad, 1, &ds), CNN_ERR_FORMAT);
    CHECK(strstr(cnn_last_error(), "bytes after its 5 data bytes") != NULL);
    /* A zero dimension (0 rows: no data bytes at all) is not a dataset. */
    unsigned char zero[16];
    memcpy(zero, ih, 16);
    be32(zero + 8, 0);
    write_idx(bad, false, zero, 16, 0);
    CHECK_ERR(cnn_idx_dataset_create(bad, lab, 1, &ds), CNN_ERR_FORMAT);
    CHECK(strstr(cnn_last_error(), "has dim 1 = 0") != NULL);
    CHECK(ds == NULL);
    /* Dims whose product overflows 64 bits (each is 2^28), and a header that claims 4 GiB over
     * 40 bytes of data: refused as claimed or truncated, without reading on. */
    unsigned char huge[16] = {0, 0, 8, 3};
    be32(huge + 4, 1u << 28);
    be32(huge + 8, 1u << 28);
    be32(huge + 12, 1u << 28);
    write_idx(bad, false, huge, 16, 40);
    CHECK_ERR(cnn_idx_dataset_create(bad, lab, 1, &ds), CNN_ERR_FORMAT);
    CHECK(strstr(cnn_last_error(), "claims more than") != NULL);
    be32(huge + 8, 1u << 4);
    be32(huge + 12, 1u << 0);
    write_idx(bad, true, huge, 16, 40);
    CHECK_ERR(cnn_idx_dataset_create(bad, lab, 1, &ds), CNN_ERR_FORMAT);
    CHECK(strstr(cnn_last_error(), "truncated: 40 of 4294967296 data bytes") != NULL);
    CHECK(ds == NULL);
    /* Fashion-MNIST files whose labels reach 10 (an eleventh class) are refused. */
    char fimg[300], flab[300];
    snprintf(fimg, sizeof fimg, "%s/train-images-idx3-ubyte.gz", dir);
    snprintf(flab, sizeof flab, "%s/train-labels-idx1-ubyte.gz", dir);
    write_idx(fimg, true, ih, 16, 5 * 4 * 2);
    unsigned char flh[13] = {0, 0, 8, 1, 0, 0, 0, 5, 0, 9, 10, 3, 4};
    write_idx(flab, true, flh, 13, 0);
    CHECK_ERR(cnn_fashion_mnist_create(dir, true, 1, &ds), CNN_ERR_FORMAT);
    CHECK(strstr(cnn_last_error(), "labels up to 10") != NULL);
    flh[10] = 9;
    write_idx(flab, true, flh, 13, 0);
    CHECK_OK(cnn_fashion_mnist_create(dir, true, 1, &ds));
    CHECK(cnn_dataset_num_classes(ds) == 10 && cnn_dataset_label(ds, 2) == 9);
    cnn_dataset_destroy(&ds);
    unlink(fimg);
    unlink(flab);
    /* Missing file, bad channel count. */
    snprintf(bad, sizeof bad, "%s/missing", dir);
    CHECK_ERR(cnn_idx_dataset_create(bad, lab, 1, &ds), CNN_ERR_IO);
    CHECK(strstr(cnn_last_error(), bad) != NULL);
    CHECK_ERR(cnn_idx_dataset_create(img, lab, 2, &ds), CNN_ERR_INVALID_ARG);
    CHECK_ERR(cnn_fashion_mnist_create(dir, true, 1, &ds), CNN_ERR_IO);
    CHECK(ds == NULL);

    /* A folder, and a FIFO (which used to block the open until a writer came: checked in a
     * child that an alarm ends). */
    CHECK_ERR(cnn_idx_dataset_create(dir, lab, 1, &ds), CNN_ERR_IO);
    CHECK(strstr(cnn_last_error(), "not a regular file") != NULL);
    snprintf(bad, sizeof bad, "%s/fifo", dir);
    REQUIRE(mkfifo(bad, 0600) == 0);
    int pid = cnn_test_fork(10);
    REQUIRE(pid >= 0);
    if (pid == 0) {
        cnn_status st = cnn_idx_dataset_create(img, bad, 1, &ds);
        _exit(st == CNN_ERR_IO && strstr(cnn_last_error(), "not a regular file") ? 0 : 1);
    }
    CHECK(cnn_test_child_ok(pid));
    unlink(bad);

    snprintf(bad, sizeof bad, "%s/bad", dir);
    unlink(img);
    unlink(lab);
    unlink(bad);
    rmdir(dir);
}

TEST(idx_fashion_mnist_test_epoch_through_the_loader)
{
    if (!have_fashion_mnist()) return;
    cnn_dataset *ds = NULL;
    CHECK_OK(cnn_fashion_mnist_create(NULL, false, 1, &ds));
    cnn_loader_options o = cnn_loader_default_options(ds, false, 32, 500);
    o.num_workers = 2;
    cnn_loader *l = NULL;
    CHECK_OK(cnn_loader_create(ds, &o, &l));
    int64_t hist[10] = {0}, first = -1;
    int batches = 0;
    for (;;) {
        cnn_tensor *x = NULL, *y = NULL;
        CHECK_OK(cnn_loader_next(l, &x, &y));
        if (!x) break;
        batches++;
        CHECK(cnn_tensor_dim(x, 0) == 500 && cnn_tensor_dim(x, 1) == 1 &&
              cnn_tensor_dim(x, 2) == 32 && cnn_tensor_dim(x, 3) == 32);
        int64_t lab[500];
        CHECK_OK(cnn_tensor_read(y, lab, 500));
        if (first < 0) {
            first = lab[0];
            /* Padding normalises to (0 - 0.2860) / 0.3530. */
            CHECK_NEAR(cnn_tensor_cdata(x)[0], -0.2860 / 0.3530, 1e-5);
        }
        for (int i = 0; i < 500; i++) hist[lab[i]]++;
        cnn_tensor_free(&x);
        cnn_tensor_free(&y);
    }
    CHECK(batches == 20 && first == 9);
    for (int c = 0; c < 10; c++) CHECK(hist[c] == 1000);
    cnn_loader_destroy(&l);
    cnn_dataset_destroy(&ds);
}

/* The generic IDX reader's std is the population std over every pixel (numpy's default, ddof
 * 0; the convention of the published normalisation constants): one 1x2 image of bytes 0 and 1
 * has mean 0.5 / 255 and std 0.5 / 255 (the sample std, ddof 1, would be 0.707 / 255).
 * (At Fashion-MNIST's 47M pixels the two agree to 1e-8, below every other test's tolerance.) */
TEST(idx_std_is_the_population_std)
{
    char dir[] = "/tmp/cnn_round2_idx_XXXXXX", img[256], lab[256];
    REQUIRE(mkdtemp(dir));
    REQUIRE(data_test_write_idx(dir, 1, 1, 2, img, lab) == 0);
    cnn_dataset *ds = NULL;
    CHECK_OK(cnn_idx_dataset_create(img, lab, 1, &ds));
    float mean[3] = {0}, std[3] = {0};
    if (ds) cnn_dataset_mean_std(ds, mean, std);
    CHECK_NEAR(mean[0], 0.5 / 255, 1e-8);
    CHECK_NEAR(std[0], 0.5 / 255, 1e-8);
    cnn_dataset_destroy(&ds);
    unlink(img);
    unlink(lab);
    rmdir(dir);
}

/* Images may be up to 65536 pixels a side on each axis: one image of 1 x 65536 loads, and
 * 1 x 65537 or 65537 x 1 is a format error naming the size (the check covers both axes). */
TEST(idx_sides_up_to_65536_on_both_axes)
{
    static const int shapes[3][2] = {{1, 65536}, {1, 65537}, {65537, 1}}; /* rows, cols */
    char dir[] = "/tmp/cnn_idx_side_XXXXXX", img[256], lab[256];
    REQUIRE(mkdtemp(dir));
    for (int s = 0; s < 3; s++) {
        REQUIRE(data_test_write_idx(dir, 1, shapes[s][0], shapes[s][1], img, lab) == 0);
        cnn_dataset *ds = NULL;
        if (s == 0) {
            CHECK_OK(cnn_idx_dataset_create(img, lab, 1, &ds));
            int h = 0, w = 0;
            cnn_dataset_native_size(ds, &h, &w);
            CHECK(h == 1 && w == 65536);
        } else {
            CHECK_ERR(cnn_idx_dataset_create(img, lab, 1, &ds), CNN_ERR_FORMAT);
            CHECK(ds == NULL && strstr(cnn_last_error(), "65537"));
        }
        cnn_dataset_destroy(&ds);
    }
    unlink(img);
    unlink(lab);
    rmdir(dir);
}
