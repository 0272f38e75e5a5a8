/* test_loader.c — the threaded loader: every sample once per epoch (with and without
 * drop_last), identical batches for 0, 1 and 3 workers, bad files skipped and listed, strict
 * mode, limit, statistics, restart and destroy in the middle of an epoch, and starting an
 * epoch at a position (resume). */
#include "test.h"

#include <unistd.h>

#include "data_fixtures.h"

/* The dataset index of a sample from its first pixel (raw transform: mean 0, std 1): the
 * synthetic dataset stores (i * 37) & 255 there, and 173 is 37's inverse modulo 256. (A search
 * loop over i is miscompiled by Debian's clang 14 at -O2: it never matches.) */
int data_test_sample_of(const float *pix)
{
    int v = (int)lrintf(pix[0] * 255.0f);
    return v >= 0 && v < 256 ? (v * 173) & 255 : -1;
}

cnn_loader_options data_test_raw_options(const cnn_dataset *ds, bool train, int batch,
                                         int workers)
{
    cnn_loader_options o = cnn_loader_default_options(ds, train, 12, batch);
    o.num_workers = workers;
    o.seed = 2024;
    for (int c = 0; c < 3; c++) {
        o.transform.mean[c] = 0;
        o.transform.std[c] = 1;
    }
    return o;
}

/* Runs one epoch; counts how often each sample index appears and the batch sizes. */
static int run_epoch(cnn_loader *l, int64_t epoch, int *seen, int n_seen, int *sizes, int max_b)
{
    if (cnn_loader_start_epoch(l, epoch) != CNN_OK) return -1;
    int nb = 0;
    for (;;) {
        cnn_tensor *x = NULL, *y = NULL;
        if (cnn_loader_next(l, &x, &y) != CNN_OK) return -1;
        if (!x) break;
        int64_t b = cnn_tensor_dim(x, 0);
        if (cnn_tensor_dim(y, 0) != b || cnn_tensor_dtype(y) != CNN_I64) return -1;
        const float *p = cnn_tensor_cdata(x);
        int64_t labels[64];
        if (b > 64 || cnn_tensor_read(y, labels, (size_t)b) != CNN_OK) return -1;
        for (int64_t i = 0; i < b; i++) {
            int s = data_test_sample_of(p + i * 144);
            if (s < 0 || s >= n_seen || labels[i] != s % 3) return -1;
            seen[s]++;
        }
        if (nb < max_b) sizes[nb] = (int)b;
        nb++;
        cnn_tensor_free(&x);
        cnn_tensor_free(&y);
    }
    return nb;
}

TEST(loader_every_sample_once_per_epoch)
{
    cnn_dataset *ds = data_test_synthetic(37, 12, 12);
    REQUIRE(ds);
    for (int drop = 0; drop <= 1; drop++) {
        cnn_loader_options o = data_test_raw_options(ds, false, 5, 2);
        o.shuffle = true;
        o.drop_last = drop;
        cnn_loader *l = NULL;
        CHECK_OK(cnn_loader_create(ds, &o, &l));
        CHECK(cnn_loader_num_samples(l) == 37);
        CHECK(cnn_loader_num_batches(l) == (drop ? 7 : 8));
        for (int epoch = 0; epoch < 2; epoch++) {
            int seen[37] = {0}, sizes[16] = {0};
            int nb = run_epoch(l, epoch, seen, 37, sizes, 16);
            REQUIRE(nb == (drop ? 7 : 8));
            int total = 0, twice = 0;
            for (int i = 0; i < 37; i++) {
                total += seen[i];
                twice += seen[i] > 1;
            }
            CHECK(twice == 0);
            CHECK(total == (drop ? 35 : 37));
            for (int b = 0; b < 7; b++) CHECK(sizes[b] == 5);
            if (!drop) CHECK(sizes[7] == 2);
        }
        cnn_loader_destroy(&l);
        CHECK(l == NULL);
    }
    cnn_dataset_destroy(&ds);
}

/* A batch size far above the data set's gives one short batch per epoch and costs memory for
 * the samples only, as PyTorch's DataLoader (before, slots for the whole batch size were
 * allocated up front: 2^30 of them for 37 samples). */
TEST(loader_batch_larger_than_the_data_set)
{
    cnn_dataset *ds = data_test_synthetic(37, 12, 12);
    REQUIRE(ds);
    cnn_loader_options o = data_test_raw_options(ds, false, 1 << 30, 2);
    cnn_loader *l = NULL;
    CHECK_OK(cnn_loader_create(ds, &o, &l));
    REQUIRE(l);
    CHECK(cnn_loader_num_batches(l) == 1);
    int seen[37] = {0}, sizes[2] = {0};
    CHECK(run_epoch(l, 0, seen, 37, sizes, 2) == 1 && sizes[0] == 37);
    cnn_loader_destroy(&l);
    cnn_dataset_destroy(&ds);
}

/* All batches of two epochs, concatenated (images then labels per batch). */
static float *collect(const cnn_dataset *ds, int workers, int prefetch, size_t *n_out)
{
    cnn_loader_options o = data_test_raw_options(ds, true, 4, workers);
    o.prefetch = prefetch;
    o.transform.hflip_p = 0.5f;
    o.transform.brightness = o.transform.contrast = 0.3f;
    o.transform.affine_degrees = 10;
    o.transform.affine_translate = 0.1f;
    o.transform.geometry = CNN_GEOM_CROP;
    o.transform.img_size = 10;
    cnn_loader *l = NULL;
    if (cnn_loader_create(ds, &o, &l) != CNN_OK) return NULL;
    size_t cap = 2 * (23 * (100 + 1) + 6), n = 0;
    float *all = malloc(cap * sizeof *all);
    for (int epoch = 0; epoch < 2 && all; epoch++) {
        cnn_loader_start_epoch(l, epoch);
        for (;;) {
            cnn_tensor *x = NULL, *y = NULL;
            if (cnn_loader_next(l, &x, &y) != CNN_OK || !x) break;
            int64_t b = cnn_tensor_dim(x, 0);
            memcpy(all + n, cnn_tensor_cdata(x), (size_t)b * 100 * sizeof *all);
            n += (size_t)b * 100;
            int64_t lab[4];
            cnn_tensor_read(y, lab, (size_t)b);
            for (int64_t i = 0; i < b; i++) all[n++] = (float)lab[i];
            all[n++] = -1; /* batch boundary */
            cnn_tensor_free(&x);
            cnn_tensor_free(&y);
        }
    }
    cnn_loader_destroy(&l);
    *n_out = n;
    return all;
}

TEST(loader_same_batches_for_any_worker_count)
{
    cnn_dataset *ds = data_test_synthetic(23, 12, 12);
    REQUIRE(ds);
    size_t n0 = 0, n1 = 0, n3 = 0;
    float *a = collect(ds, 0, 2, &n0), *b = collect(ds, 1, 1, &n1), *c = collect(ds, 3, 3, &n3);
    REQUIRE(a && b && c);
    CHECK(n0 == 2 * (23 * 101 + 6));
    CHECK(n0 == n1 && n0 == n3);
    CHECK(memcmp(a, b, n0 * sizeof *a) == 0);
    CHECK(memcmp(a, c, n0 * sizeof *a) == 0);
    /* The two epochs differ (another permutation and other crops). */
    size_t half = n0 / 2;
    CHECK(memcmp(a, a + half, half * sizeof *a) != 0);
    free(a);
    free(b);
    free(c);
    cnn_dataset_destroy(&ds);
}

TEST(loader_skips_and_lists_bad_files)
{
    char root[64];
    REQUIRE(data_test_make_tree(root) == 0);
    cnn_dataset *ds = NULL;
    CHECK_OK(cnn_imagefolder_create(root, "train", 3, &ds));
    for (int workers = 0; workers <= 2; workers += 2) {
        cnn_loader_options o = cnn_loader_default_options(ds, false, 8, 3);
        o.num_workers = workers;
        o.shuffle = true;
        for (int c = 0; c < 3; c++) {
            o.transform.mean[c] = 0;
            o.transform.std[c] = 1;
        }
        cnn_loader *l = NULL;
        CHECK_OK(cnn_loader_create(ds, &o, &l));
        for (int epoch = 0; epoch < 2; epoch++) {
            CHECK_OK(cnn_loader_start_epoch(l, epoch));
            int sizes[8] = {0}, nb = 0, hist[4] = {0};
            for (;;) {
                cnn_tensor *x = NULL, *y = NULL;
                CHECK_OK(cnn_loader_next(l, &x, &y));
                if (!x) break;
                int64_t b = cnn_tensor_dim(x, 0), lab[3];
                REQUIRE(nb < 8 && b <= 3);
                CHECK(cnn_tensor_dim(x, 1) == 3 && cnn_tensor_dim(x, 2) == 8);
                sizes[nb++] = (int)b;
                CHECK_OK(cnn_tensor_read(y, lab, (size_t)b));
                for (int64_t i = 0; i < b; i++) {
                    REQUIRE(lab[i] >= 0 && lab[i] < 4);
                    hist[lab[i]]++;
                    float v = cnn_tensor_cdata(x)[i * 192 + 100] * 255.0f;
                    CHECK(fabsf(v - data_test_class_value[lab[i]]) < 3);
                }
                cnn_tensor_free(&x);
                cnn_tensor_free(&y);
            }
            /* 7 good samples: full batches, the last smaller. */
            CHECK(nb == 3 && sizes[0] == 3 && sizes[1] == 3 && sizes[2] == 1);
            CHECK(hist[0] == 2 && hist[1] == 3 && hist[2] == 0 && hist[3] == 2);
        }
        REQUIRE(cnn_loader_num_bad(l) == 3); /* each file once, though met in two epochs */
        int found = 0;
        for (int i = 0; i < 3; i++) {
            const char *name = cnn_loader_bad_name(l, i), *why = cnn_loader_bad_reason(l, i);
            REQUIRE(name && why);
            CHECK(strstr(why, name) != NULL);
            if (strstr(name, "trunc.jpg"))
                found += strstr(why, "cannot decode") && strstr(why, "truncated JPEG");
            const bool other = strstr(why, "not a JPEG, PNG, BMP or PNM") != NULL;
            if (strstr(name, "zero.jpg") || strstr(name, "text.jpg")) found += other;
        }
        CHECK(found == 3);
        CHECK(cnn_loader_bad_name(l, 3) == NULL);
        cnn_loader_stats st;
        cnn_loader_get_stats(l, &st);
        CHECK(st.images_decoded == 14 && st.bad_samples == 6 && st.batches == 6);
        CHECK(st.n_workers == (workers ? workers : 1));
        int64_t per_worker = 0;
        for (int w = 0; w < st.n_workers; w++) per_worker += st.worker_images[w];
        CHECK(per_worker == 14);
        double secs = 0;
        for (int w = 0; w < st.n_workers; w++) secs += st.decode_seconds[w];
        CHECK(secs > 0 && st.wait_seconds > 0);
        cnn_loader_destroy(&l);
    }
    cnn_dataset_destroy(&ds);
    data_test_remove_tree(root);
}

TEST(loader_strict_mode_names_the_bad_file)
{
    char root[64];
    REQUIRE(data_test_make_tree(root) == 0);
    cnn_dataset *ds = NULL;
    CHECK_OK(cnn_imagefolder_create(root, "train", 1, &ds));
    cnn_loader_options o = cnn_loader_default_options(ds, false, 8, 3);
    o.num_workers = 1;
    o.strict = true;
    cnn_loader *l = NULL;
    CHECK_OK(cnn_loader_create(ds, &o, &l));
    cnn_tensor *x = NULL, *y = NULL;
    /* Samples 0, 1 are good, 2 (B_dog/trunc.jpg) is not: the first batch fails. */
    CHECK_ERR(cnn_loader_next(l, &x, &y), CNN_ERR_FORMAT);
    CHECK(strstr(cnn_last_error(), "B_dog/trunc.jpg") != NULL);
    CHECK(x == NULL && y == NULL);
    /* The position is past the bad sample, where the next call goes on: a resume there gives
     * the batch that call gives (it said 0, and a resume met the bad file again). */
    CHECK(cnn_loader_position(l) == 3);
    CHECK_OK(cnn_loader_start_epoch_at(l, 0, cnn_loader_position(l)));
    /* The next call goes on with samples 3, 4, 5 (a_cat, label 1). */
    CHECK_OK(cnn_loader_next(l, &x, &y));
    REQUIRE(x && cnn_tensor_dim(x, 0) == 3 && cnn_tensor_dim(x, 1) == 1);
    int64_t lab[3];
    CHECK_OK(cnn_tensor_read(y, lab, 3));
    CHECK(lab[0] == 1 && lab[1] == 1 && lab[2] == 1);
    cnn_tensor_free(&x);
    cnn_tensor_free(&y);
    CHECK_ERR(cnn_loader_next(l, &x, &y), CNN_ERR_FORMAT);
    CHECK(strstr(cnn_last_error(), "a_cat/zero.jpg") != NULL);
    CHECK(cnn_loader_num_bad(l) == 2);
    cnn_loader_destroy(&l);
    cnn_dataset_destroy(&ds);
    data_test_remove_tree(root);
}

TEST(loader_limit_restart_and_destroy_mid_epoch)
{
    cnn_dataset *ds = data_test_synthetic(40, 12, 12);
    REQUIRE(ds);
    cnn_loader_options o = data_test_raw_options(ds, false, 4, 3);
    o.limit = 10;
    cnn_loader *l = NULL;
    CHECK_OK(cnn_loader_create(ds, &o, &l));
    CHECK(cnn_loader_num_samples(l) == 10 && cnn_loader_num_batches(l) == 3);
    int seen[40] = {0}, sizes[4];
    CHECK(run_epoch(l, 0, seen, 40, sizes, 4) == 3);
    for (int i = 0; i < 40; i++) CHECK(seen[i] == (i % 4 == 0 ? 1 : 0));
    cnn_loader_destroy(&l);

    /* Restart in the middle of an epoch, then finish a full one. */
    o = data_test_raw_options(ds, false, 4, 3);
    o.shuffle = true;
    CHECK_OK(cnn_loader_create(ds, &o, &l));
    cnn_tensor *x = NULL, *y = NULL;
    CHECK_OK(cnn_loader_next(l, &x, &y));
    REQUIRE(x);
    cnn_tensor_free(&x);
    cnn_tensor_free(&y);
    memset(seen, 0, sizeof seen);
    CHECK(run_epoch(l, 3, seen, 40, sizes, 4) == 10);
    for (int i = 0; i < 40; i++) CHECK(seen[i] == 1);
    /* Destroy while workers are decoding ahead. */
    CHECK_OK(cnn_loader_start_epoch(l, 4));
    CHECK_OK(cnn_loader_next(l, &x, &y));
    cnn_tensor_free(&x);
    cnn_tensor_free(&y);
    cnn_loader_destroy(&l);
    /* And right after creation, before any epoch. */
    CHECK_OK(cnn_loader_create(ds, &o, &l));
    cnn_loader_destroy(&l);

    o.batch_size = 0;
    CHECK_ERR(cnn_loader_create(ds, &o, &l), CNN_ERR_INVALID_ARG);
    o.batch_size = 4;
    o.num_workers = CNN_LOADER_MAX_WORKERS + 1;
    CHECK_ERR(cnn_loader_create(ds, &o, &l), CNN_ERR_INVALID_ARG);
    o.num_workers = 0;
    /* Each bad field named alone, with its valid range. */
    cnn_loader_options bad = o;
    bad.prefetch = -3;
    CHECK_ERR(cnn_loader_create(ds, &bad, &l), CNN_ERR_INVALID_ARG);
    CHECK(strstr(cnn_last_error(), "prefetch -3 not in [0, 64]") &&
          !strstr(cnn_last_error(), "limit"));
    bad = o;
    bad.limit = -5;
    CHECK_ERR(cnn_loader_create(ds, &bad, &l), CNN_ERR_INVALID_ARG);
    CHECK(strstr(cnn_last_error(), "limit -5 must be >= 0") &&
          !strstr(cnn_last_error(), "prefetch"));
    bad = o;
    bad.transform.img_size = 100000;
    CHECK_ERR(cnn_loader_create(ds, &bad, &l), CNN_ERR_INVALID_ARG);
    CHECK(strstr(cnn_last_error(), "img_size 100000 not in [0, 16384]"));
    o.transform.std[0] = -1;
    CHECK_ERR(cnn_loader_create(ds, &o, &l), CNN_ERR_INVALID_ARG);
    CHECK(l == NULL);
    cnn_dataset_destroy(&ds);
}

/* The batches of `epoch` from `position` on, appended to buf (images then labels per batch);
 * pos[i] gets the position after batch i. Returns the number of batches, -1 on error. */
static int batches_from(cnn_loader *l, int64_t epoch, int64_t position, float *buf, size_t *n,
                        int64_t *pos, int max_b)
{
    if (cnn_loader_start_epoch_at(l, epoch, position) != CNN_OK) return -1;
    if (cnn_loader_position(l) != position) return -1;
    int nb = 0;
    *n = 0;
    for (;;) {
        cnn_tensor *x = NULL, *y = NULL;
        if (cnn_loader_next(l, &x, &y) != CNN_OK) return -1;
        if (!x) break;
        int64_t b = cnn_tensor_dim(x, 0), lab[3];
        if (nb == max_b || b > 3 || cnn_tensor_read(y, lab, (size_t)b) != CNN_OK) return -1;
        memcpy(buf + *n, cnn_tensor_cdata(x), (size_t)b * 192 * sizeof *buf);
        *n += (size_t)b * 192;
        for (int64_t i = 0; i < b; i++) buf[(*n)++] = (float)lab[i];
        pos[nb++] = cnn_loader_position(l);
        cnn_tensor_free(&x);
        cnn_tensor_free(&y);
    }
    return nb;
}

/* Resuming inside an epoch: started at the position after batch k of an uninterrupted epoch,
 * the loader hands out exactly that epoch's later batches, and (without workers, where decoding
 * is observable per position) decodes none of the samples before the position. */
TEST(loader_starts_an_epoch_at_a_position_without_decoding_what_is_before)
{
    char root[64];
    REQUIRE(data_test_make_tree(root) == 0);
    cnn_dataset *ds = NULL;
    CHECK_OK(cnn_imagefolder_create(root, "train", 3, &ds));
    enum { CAP = 8 * 3 * 193 };
    float *all = malloc(CAP * sizeof *all), *rest = malloc(CAP * sizeof *rest);
    REQUIRE(all && rest);
    for (int workers = 0; workers <= 2; workers += 2) {
        cnn_loader_options o = cnn_loader_default_options(ds, true, 8, 3);
        o.num_workers = workers;
        o.transform.hflip_p = 0.5f;
        cnn_loader *l = NULL;
        CHECK_OK(cnn_loader_create(ds, &o, &l));
        int64_t pos[8], pos2[8];
        size_t n_all = 0, n_rest = 0;
        int nb = batches_from(l, 1, 0, all, &n_all, pos, 8);
        cnn_loader_destroy(&l);
        REQUIRE(nb == 3); /* 10 files, 3 bad: 3 + 3 + 1 */
        CHECK(pos[0] >= 3 && pos[0] < pos[1] && pos[1] < pos[2] && pos[2] <= 10);
        size_t at = 0; /* floats of the batches before k */
        for (int k = 0; k <= nb; k++) {
            int64_t start = k ? pos[k - 1] : 0;
            CHECK_OK(cnn_loader_create(ds, &o, &l));
            int got = batches_from(l, 1, start, rest, &n_rest, pos2, 8);
            CHECK(got == nb - k);
            CHECK(n_rest == n_all - at);
            CHECK(memcmp(rest, all + at, n_rest * sizeof *rest) == 0);
            for (int i = 0; i < got; i++) CHECK(pos2[i] == pos[k + i]);
            cnn_loader_stats st;
            cnn_loader_get_stats(l, &st);
            if (workers == 0) CHECK(st.images_decoded + st.bad_samples == 10 - start);
            cnn_loader_destroy(&l);
            if (k < nb) at += (size_t)(k < 2 ? 3 : 1) * 193;
        }
    }
    cnn_loader *l = NULL;
    cnn_loader_options o = cnn_loader_default_options(ds, true, 8, 3);
    CHECK_OK(cnn_loader_create(ds, &o, &l));
    CHECK_ERR(cnn_loader_start_epoch_at(l, 0, 11), CNN_ERR_INVALID_ARG);
    CHECK_ERR(cnn_loader_start_epoch_at(l, 0, -1), CNN_ERR_INVALID_ARG);
    CHECK_OK(cnn_loader_start_epoch_at(l, 0, 10)); /* the end: no batch left */
    cnn_tensor *x = NULL, *y = NULL;
    CHECK_OK(cnn_loader_next(l, &x, &y));
    CHECK(x == NULL && y == NULL);
    cnn_loader_destroy(&l);
    free(all);
    free(rest);
    cnn_dataset_destroy(&ds);
    data_test_remove_tree(root);
}

/* The sample order of one epoch (raw eval transform, one batch of all n) into order. */
static bool epoch_order(cnn_loader *l, int64_t epoch, int n, int *order)
{
    cnn_tensor *x = NULL, *y = NULL;
    bool ok = cnn_loader_start_epoch(l, epoch) == CNN_OK && cnn_loader_next(l, &x, &y) == CNN_OK &&
              x && cnn_tensor_dim(x, 0) == n;
    for (int i = 0; ok && i < n; i++)
        order[i] = data_test_sample_of(cnn_tensor_cdata(x) + i * 144);
    cnn_tensor_free(&x);
    cnn_tensor_free(&y);
    return ok;
}

/* Shuffling draws a new uniform permutation every epoch (Fisher-Yates: a sample may stay in
 * place, so both orders of two samples occur), and no shuffle keeps the dataset's order. */
TEST(loader_shuffles_anew_each_epoch)
{
    cnn_dataset *ds = data_test_synthetic(37, 12, 12);
    REQUIRE(ds);
    cnn_loader_options o = data_test_raw_options(ds, false, 37, 0);
    o.shuffle = true;
    cnn_loader *l = NULL;
    CHECK_OK(cnn_loader_create(ds, &o, &l));
    int a[37], b[37];
    REQUIRE(epoch_order(l, 0, 37, a) && epoch_order(l, 1, 37, b));
    CHECK(memcmp(a, b, sizeof a) != 0);
    cnn_loader_destroy(&l);
    o.shuffle = false;
    CHECK_OK(cnn_loader_create(ds, &o, &l));
    REQUIRE(epoch_order(l, 3, 37, a));
    for (int i = 0; i < 37; i++) CHECK(a[i] == i);
    cnn_loader_destroy(&l);
    cnn_dataset_destroy(&ds);

    ds = data_test_synthetic(2, 12, 12);
    REQUIRE(ds);
    o = data_test_raw_options(ds, false, 2, 0);
    o.shuffle = true;
    CHECK_OK(cnn_loader_create(ds, &o, &l));
    int kept = 0, swapped = 0;
    for (int e = 0; e < 16; e++) {
        REQUIRE(epoch_order(l, e, 2, a));
        kept += a[0] == 0 && a[1] == 1;
        swapped += a[0] == 1 && a[1] == 0;
    }
    CHECK(kept > 0 && swapped > 0 && kept + swapped == 16);
    cnn_loader_destroy(&l);
    cnn_dataset_destroy(&ds);
}

/* A file that cannot be read any more (removed after the listing: an I/O error, not a format
 * error) is skipped and listed like an undecodable one, unless strict. */
TEST(loader_skips_a_file_that_went_away)
{
    char root[64], path[128];
    REQUIRE(data_test_make_tree(root) == 0);
    cnn_dataset *ds = NULL;
    CHECK_OK(cnn_imagefolder_create(root, "train", 3, &ds));
    snprintf(path, sizeof path, "%s/train/d_fish/img0.jpg", root);
    CHECK(unlink(path) == 0);
    cnn_loader_options o = cnn_loader_default_options(ds, false, 8, 16);
    o.num_workers = 0;
    cnn_loader *l = NULL;
    CHECK_OK(cnn_loader_create(ds, &o, &l));
    cnn_tensor *x = NULL, *y = NULL;
    CHECK_OK(cnn_loader_next(l, &x, &y));
    CHECK(x && cnn_tensor_dim(x, 0) == 6); /* 7 good files, one gone */
    cnn_tensor_free(&x);
    cnn_tensor_free(&y);
    bool listed = false;
    for (int i = 0; i < cnn_loader_num_bad(l); i++)
        listed |= strstr(cnn_loader_bad_name(l, i), "d_fish/img0.jpg") &&
                  strstr(cnn_loader_bad_reason(l, i), "cannot read");
    CHECK(listed && cnn_loader_num_bad(l) == 4);
    cnn_loader_destroy(&l);
    o.strict = true;
    CHECK_OK(cnn_loader_create(ds, &o, &l));
    CHECK_OK(cnn_loader_start_epoch_at(l, 0, 7)); /* d_fish/img0.jpg first */
    CHECK_ERR(cnn_loader_next(l, &x, &y), CNN_ERR_IO);
    CHECK(strstr(cnn_last_error(), "d_fish/img0.jpg") != NULL);
    cnn_loader_destroy(&l);
    cnn_dataset_destroy(&ds);
    data_test_remove_tree(root);
}
