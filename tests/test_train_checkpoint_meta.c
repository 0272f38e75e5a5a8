/* test_train_checkpoint_meta.c — the readers of the training tool's checkpoints
 * (tools/common/checkpoint.c), tested directly on hand-made metadata and tensor sets: what a
 * resumed run or --predict must refuse rather than read wrongly. */
#include "test.h"

#include "scratch.h"
#include "../tools/common/checkpoint.h"

/* A dict holding the progress metadata of a run interrupted after `batch` batches at loader
 * position `position` ("" leaves the key out), rng_seed as given. NULL on failure. */
static cnn_dict *state_dict(const char *batch, const char *position, const char *rng_seed)
{
    static const char *const fixed[][2] = {
        {"epoch", "1"},          {"step", "7"},           {"rng_offset", "12"},
        {"best_top1", "0.5"},    {"best_epoch", "1"},     {"bad_epochs", "0"},
        {"part_loss", "1.25"},   {"part_correct", "3"},   {"part_seen", "8"},
        {"part_seconds", "0.5"}, {"history", "1,2,0.5,1.5,0.5,0.75,0.01,3,0.1"},
    };
    cnn_dict *d = NULL;
    if (cnn_dict_create(&d) != CNN_OK) return NULL;
    bool ok = cnn_dict_set_meta(d, "batch", batch) == CNN_OK &&
              cnn_dict_set_meta(d, "rng_seed", rng_seed) == CNN_OK &&
              (!position[0] || cnn_dict_set_meta(d, "position", position) == CNN_OK);
    for (size_t i = 0; ok && i < sizeof fixed / sizeof fixed[0]; i++)
        ok = cnn_dict_set_meta(d, fixed[i][0], fixed[i][1]) == CNN_OK;
    if (!ok) cnn_dict_destroy(&d);
    return d;
}

/* Whether tr_checkpoint_state reads the metadata; when not, err must name `bad`. */
static bool state_reads(const char *batch, const char *position, const char *rng_seed,
                        const char *bad, int line)
{
    cnn_dict *d = state_dict(batch, position, rng_seed);
    if (!d) {
        cnn_test_fail(__FILE__, line, "cannot build the metadata");
        return false;
    }
    tr_state s = {0};
    char err[512] = "", want[64];
    bool ok = tr_checkpoint_state(d, &s, err, sizeof err);
    snprintf(want, sizeof want, "'%s'", bad ? bad : "");
    if (!ok && (!bad || !strstr(err, want)))
        cnn_test_fail(__FILE__, line, "batch %s position %s rng_seed %s: %s", batch, position,
                      rng_seed, err);
    tr_history_free(&s.history);
    cnn_dict_destroy(&d);
    return ok;
}

/* A checkpoint written mid-epoch (batch > 0) has the loader past at least one sample: a
 * position of 0 there would make the resumed run read the epoch's first batches again. A
 * seed is unsigned: "-1" (which strtoull takes as 2^64 - 1) is malformed, not a huge seed. */
TEST(train_checkpoint_state_refuses_impossible_progress)
{
    CHECK(state_reads("3", "192", "42", NULL, __LINE__));
    CHECK(state_reads("0", "0", "42", NULL, __LINE__));
    CHECK(state_reads("3", "", "42", NULL, __LINE__)); /* older checkpoints: no position */
    CHECK(!state_reads("3", "0", "42", "position", __LINE__));
    CHECK(!state_reads("0", "-1", "42", "position", __LINE__));
    CHECK(!state_reads("3", "192", "-1", "rng_seed", __LINE__));
    CHECK(state_reads("3", "192", "18446744073709551615", NULL, __LINE__));
    /* counts up to 2^53: a batch of INT64_MAX would overflow as the run counts on */
    CHECK(state_reads("3", "9007199254740992", "42", NULL, __LINE__));
    CHECK(!state_reads("3", "9007199254740993", "42", "position", __LINE__));
    CHECK(!state_reads("9223372036854775807", "192", "42", "batch", __LINE__));
}

/* Saves a checkpoint of metadata alone (a lenet5 of 3 classes, 1 channel, 32x32) with the
 * given class_names and in_channels into path; false on failure. */
static bool save_meta(const char *path, const char *names, const char *in_channels)
{
    const char *const kv[][2] = {
        {"format", "cnncuda-train/1"}, {"model", "lenet5"},       {"num_classes", "3"},
        {"in_channels", in_channels},  {"img_size", "32"},        {"geometry", "0"},
        {"mean", "0.5,0.5,0.5"},       {"std", "0.25,0.25,0.25"}, {"class_names", names},
    };
    cnn_dict *d = NULL;
    if (cnn_dict_create(&d) != CNN_OK) return false;
    bool ok = true;
    for (size_t i = 0; ok && i < sizeof kv / sizeof kv[0]; i++)
        ok = cnn_dict_set_meta(d, kv[i][0], kv[i][1]) == CNN_OK;
    ok = ok && cnn_safetensors_save(path, d) == CNN_OK;
    cnn_dict_destroy(&d);
    return ok;
}

/* Opens path; when it fails, err must name `bad`. */
static bool opens(const char *path, const char *bad, tr_model_meta *mm, int line)
{
    cnn_dict *d = NULL;
    char err[1024] = "", want[64];
    bool ok = tr_checkpoint_open(path, &d, mm, err, sizeof err);
    snprintf(want, sizeof want, "'%s'", bad ? bad : "");
    if (!ok && (!bad || !strstr(err, want)))
        cnn_test_fail(__FILE__, line, "unexpected error: %s", err);
    cnn_dict_destroy(&d);
    return ok;
}

/* class_names must give exactly num_classes names: with one too few, --predict would print an
 * empty name (or read past the list) for the last class; with one too many, the names belong
 * to another model. in_channels is read within the range checkpoints may hold, 1 to 4. */
TEST(train_checkpoint_open_checks_names_and_channels)
{
    scratch s;
    REQUIRE(scratch_open(&s));
    const char *path = s.path;
    tr_model_meta mm;
    REQUIRE(save_meta(path, "shirt\nshoe\nbag", "1"));
    if (opens(path, NULL, &mm, __LINE__)) {
        CHECK(mm.num_classes == 3 && mm.in_channels == 1 && !strcmp(mm.model, "lenet5"));
        CHECK(!strcmp(mm.class_names[0], "shirt") && !strcmp(mm.class_names[2], "bag"));
        tr_model_meta_free(&mm);
    }
    REQUIRE(save_meta(path, "shirt\nshoe", "1"));
    CHECK(!opens(path, "class_names", &mm, __LINE__));
    REQUIRE(save_meta(path, "shirt\nshoe\nbag\nhat", "1"));
    CHECK(!opens(path, "class_names", &mm, __LINE__));
    REQUIRE(save_meta(path, "shirt\nshoe\nbag", "4"));
    if (opens(path, NULL, &mm, __LINE__)) tr_model_meta_free(&mm);
    REQUIRE(save_meta(path, "shirt\nshoe\nbag", "5"));
    CHECK(!opens(path, "in_channels", &mm, __LINE__));
    REQUIRE(save_meta(path, "shirt\nshoe\nbag", "0"));
    CHECK(!opens(path, "in_channels", &mm, __LINE__));
    scratch_close(&s);
}

/* A checkpoint lacking one of the model's tensors (cut, or of another variant) is refused
 * naming what is missing: loaded anyway, that tensor would keep its fresh initialisation
 * and a resumed run or --predict would use a half-trained model without a word. */
TEST(train_checkpoint_missing_model_tensor_is_refused)
{
    cnn_model *m = NULL;
    cnn_dict *d = NULL;
    CHECK_OK(cnn_model_create("lenet5", 10, 1, &m));
    CHECK_OK(cnn_dict_create(&d));
    const cnn_dict *ms = cnn_model_state(m);
    int n = cnn_dict_size(ms);
    for (int i = 0; i + 1 < n; i++)
        CHECK_OK(cnn_dict_set(d, cnn_dict_name(ms, i), cnn_dict_at(ms, i)));
    char err[512] = "";
    CHECK(!tr_checkpoint_load_model(m, d, err, sizeof err));
    if (!strstr(err, "lacks 1 model tensor(s)") || !strstr(err, cnn_dict_name(ms, n - 1)))
        cnn_test_fail(__FILE__, __LINE__, "error: '%s'", err);
    CHECK_OK(cnn_dict_set(d, cnn_dict_name(ms, n - 1), cnn_dict_at(ms, n - 1)));
    CHECK(tr_checkpoint_load_model(m, d, err, sizeof err));
    cnn_dict_destroy(&d);
    cnn_model_destroy(&m);
}
