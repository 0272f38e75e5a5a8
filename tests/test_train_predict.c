/* test_train_predict.c — --predict of the training tool (tools/common/predict.c), run
 * in-process on a hand-made checkpoint whose model scores every class alike: the five classes
 * printed, their order on ties, and a file that cannot be decoded. */
#include "test.h"

#include "scratch.h"
#include "../tools/common/checkpoint.h"
#include "../tools/common/predict.h"

#include <fcntl.h>
#include <stb/stb_image_write.h>
#include <unistd.h>

static const char *const CLASSES[10] = {"c0", "c1", "c2", "c3", "c4",
                                        "c5", "c6", "c7", "c8", "c9"};

/* A lenet5 checkpoint of 10 classes with every weight and bias 0 (so every class gets
 * probability 0.1) at path; false on failure. */
static bool save_flat_checkpoint(const char *path)
{
    cnn_model *m = NULL;
    if (cnn_model_create("lenet5", 10, 1, &m) != CNN_OK) return false;
    const cnn_dict *ms = cnn_model_state(m);
    bool ok = true;
    for (int i = 0; ok && i < cnn_dict_size(ms); i++)
        ok = cnn_tensor_fill_(cnn_dict_at(ms, i), 0) == CNN_OK;
    static train_opts o;
    tr_opts_defaults(&o);
    tr_model_meta mm = {.model = "lenet5", .num_classes = 10, .in_channels = 1, .img_size = 32,
                        .mean = {0.5f, 0.5f, 0.5f}, .std = {0.25f, 0.25f, 0.25f},
                        .class_names = (char **)CLASSES};
    tr_state s = {0};
    char err[512];
    ok = ok && tr_checkpoint_save(path, m, NULL, NULL, &o, &mm, &s, err, sizeof err);
    if (!ok) printf("%s\n", err);
    cnn_model_destroy(&m);
    return ok;
}

/* Writes a 28x28 gray PNG at path (half of its bytes when cut); false on failure. */
static bool write_png(const char *path, bool cut)
{
    unsigned char img[28 * 28];
    for (int i = 0; i < 28 * 28; i++) img[i] = (unsigned char)(i * 7);
    if (!stbi_write_png(path, 28, 28, 1, img, 28)) return false;
    size_t n = 0;
    unsigned char *bytes = cut ? scratch_read(path, &n) : NULL;
    bool ok = !cut || (bytes && scratch_write(path, bytes, n / 2));
    free(bytes);
    return ok;
}

/* Runs --predict with the checkpoint ckpt on files[0..n) (n >= 1) with stdout into out
 * (size bytes, through the file tmp); returns what tr_predict returns, its error in err. Not
 * in a child: a child of a process whose OpenMP threads have started can hang in the model's
 * first parallel region. */
static bool predict_into(const char *ckpt, char **files, int n, const char *tmp, char *out,
                         size_t size, char *err, size_t en)
{
    static train_opts o;
    tr_opts_defaults(&o);
    snprintf(o.predict, sizeof o.predict, "%s", files[0]);
    snprintf(o.checkpoint, sizeof o.checkpoint, "%s", ckpt);
    o.files = files + 1;
    o.n_files = n - 1;
    err[0] = out[0] = 0;
    fflush(stdout);
    int saved = dup(STDOUT_FILENO), fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (saved < 0 || fd < 0 || dup2(fd, STDOUT_FILENO) < 0) {
        snprintf(err, en, "cannot redirect stdout to %s", tmp);
        return false;
    }
    close(fd);
    bool ok = tr_predict(&o, CNN_CPU, err, en);
    fflush(stdout);
    dup2(saved, STDOUT_FILENO);
    close(saved);
    size_t len = 0;
    char *text = (char *)scratch_read(tmp, &len);
    snprintf(out, size, "%.*s", (int)len, text ? text : "");
    free(text);
    return ok;
}

/* The top five of a file with every class at 10%: class index order. */
static void flat_top5(const char *file, char *want, size_t n)
{
    snprintf(want, n, "%s:\n", file);
    for (int k = 0; k < 5; k++) {
        size_t used = strlen(want);
        snprintf(want + used, n - used, "  %d. %-32s  10.00%%\n", k + 1, CLASSES[k]);
    }
}

/* Equal probabilities rank by class index, lowest first (as argmax and the report's top-k
 * do), and exactly five lines follow the file's name, numbered 1 to 5. */
TEST(train_predict_ties_in_class_order)
{
    scratch s;
    REQUIRE(scratch_open(&s));
    char img[200], tmp[200], out[2048], want[600], err[1024];
    snprintf(img, sizeof img, "%s/x.png", s.dir);
    snprintf(tmp, sizeof tmp, "%s/out.txt", s.dir);
    REQUIRE(write_png(img, false) && save_flat_checkpoint(s.path));
    char *files[] = {img};
    if (!predict_into(s.path, files, 1, tmp, out, sizeof out, err, sizeof err))
        cnn_test_fail(__FILE__, __LINE__, "--predict failed: %s", err);
    flat_top5(img, want, sizeof want);
    if (strcmp(out, want))
        cnn_test_fail(__FILE__, __LINE__, "--predict printed:\n%s\nwant:\n%s", out, want);
    scratch_close(&s);
}

/* A file that cannot be decoded (here a PNG cut in half) is named, the others are still
 * classified, and the whole fails: a script must not take the missing answer for success. */
TEST(train_predict_unreadable_file_fails_the_run)
{
    scratch s;
    REQUIRE(scratch_open(&s));
    char good[200], cut[200], tmp[200], out[4096], want[1200], err[1024];
    snprintf(good, sizeof good, "%s/x.png", s.dir);
    snprintf(cut, sizeof cut, "%s/cut.png", s.dir);
    snprintf(tmp, sizeof tmp, "%s/out.txt", s.dir);
    REQUIRE(write_png(good, false) && write_png(cut, true) && save_flat_checkpoint(s.path));
    char *files[] = {cut, good};
    CHECK(!predict_into(s.path, files, 2, tmp, out, sizeof out, err, sizeof err));
    CHECK(strstr(err, "some image(s) could not be read"));
    snprintf(want, sizeof want, "%s: cannot read: ", cut);
    CHECK(strstr(out, want) == out);
    flat_top5(good, want, sizeof want);
    CHECK(strstr(out, want));
    if (cnn_test_failed()) printf("error: %s\noutput:\n%s", err, out);
    scratch_close(&s);
}
