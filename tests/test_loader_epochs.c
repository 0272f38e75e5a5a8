/* test_loader_epochs.c — which samples an epoch holds and in what order: a limit picks one
 * subset spread over the data set and keeps it for every epoch (it is applied before the
 * shuffle, which only orders it), the seed chooses the order, and a restart in the middle of
 * an epoch hands out none of the samples its workers had decoded ahead for the old one. The
 * loader's batches, workers, bad files and resume: test_loader.c. */
#include "test.h"

#include <unistd.h>

#include "data_fixtures.h"

/* The samples of `epoch` in the order handed out, batch after batch; their count, -1 on error. */
static int order_of(cnn_loader *l, int64_t epoch, int *order, int max)
{
    if (cnn_loader_start_epoch(l, epoch) != CNN_OK) return -1;
    int n = 0;
    for (;;) {
        cnn_tensor *x = NULL, *y = NULL;
        if (cnn_loader_next(l, &x, &y) != CNN_OK) return -1;
        if (!x) break;
        for (int64_t i = 0; i < cnn_tensor_dim(x, 0) && n <= max; i++, n++)
            if (n < max) order[n] = data_test_sample_of(cnn_tensor_cdata(x) + i * 144);
        cnn_tensor_free(&x);
        cnn_tensor_free(&y);
    }
    return n <= max ? n : -1;
}

/* --limit-train 10 of 40 with shuffling: every epoch holds the same 10 samples, spread over the
 * data set (0, 4, ..., 36, as without shuffling), in an order drawn anew. Drawing the 10 from
 * a shuffle of all 40 would train each epoch on another subset. */
TEST(loader_limit_keeps_one_spread_subset_that_each_epoch_shuffles)
{
    cnn_dataset *ds = data_test_synthetic(40, 12, 12);
    REQUIRE(ds);
    cnn_loader_options o = data_test_raw_options(ds, false, 4, 2);
    o.shuffle = true;
    o.limit = 10;
    cnn_loader *l = NULL;
    CHECK_OK(cnn_loader_create(ds, &o, &l));
    int first[10], order[10], differ = 0;
    for (int e = 0; e < 4; e++) {
        REQUIRE(order_of(l, e, order, 10) == 10);
        int seen[40] = {0};
        for (int i = 0; i < 10; i++) {
            REQUIRE(order[i] >= 0 && order[i] < 40);
            seen[order[i]]++;
        }
        for (int i = 0; i < 40; i++) CHECK(seen[i] == (i % 4 == 0));
        if (e == 0) memcpy(first, order, sizeof first);
        else differ += memcmp(first, order, sizeof first) != 0;
    }
    CHECK(differ > 0);
    cnn_loader_destroy(&l);
    cnn_dataset_destroy(&ds);
}

/* The seed is part of the shuffle: seeds 1 and 2 order an epoch differently, and seed 1 again
 * gives seed 1's order (runs with --seed differ, a rerun with the same seed does not). */
TEST(loader_seed_chooses_the_shuffle)
{
    cnn_dataset *ds = data_test_synthetic(37, 12, 12);
    REQUIRE(ds);
    int order[3][37];
    const uint64_t seeds[3] = {1, 2, 1};
    for (int k = 0; k < 3; k++) {
        cnn_loader_options o = data_test_raw_options(ds, false, 37, 0);
        o.seed = seeds[k];
        o.shuffle = true;
        cnn_loader *l = NULL;
        CHECK_OK(cnn_loader_create(ds, &o, &l));
        REQUIRE(l && order_of(l, 0, order[k], 37) == 37);
        cnn_loader_destroy(&l);
    }
    CHECK(memcmp(order[0], order[1], sizeof order[0]) != 0);
    CHECK(memcmp(order[0], order[2], sizeof order[0]) == 0);
    cnn_dataset_destroy(&ds);
}

/* The batches of epoch from position on, images then labels, into buf (cap floats); the
 * floats written, or 0 on error. */
static size_t epoch_values(cnn_loader *l, int64_t epoch, int64_t position, float *buf, size_t cap)
{
    if (cnn_loader_start_epoch_at(l, epoch, position) != CNN_OK) return 0;
    size_t n = 0;
    for (;;) {
        cnn_tensor *x = NULL, *y = NULL;
        if (cnn_loader_next(l, &x, &y) != CNN_OK) return 0;
        if (!x) break;
        int64_t b = cnn_tensor_dim(x, 0), nx = cnn_tensor_numel(x), lab[4];
        if (b > 4 || n + (size_t)(nx + b) > cap || cnn_tensor_read(y, lab, (size_t)b) != CNN_OK)
            return 0;
        memcpy(buf + n, cnn_tensor_cdata(x), (size_t)nx * sizeof *buf);
        n += (size_t)nx;
        for (int64_t i = 0; i < b; i++) buf[n++] = (float)lab[i];
        cnn_tensor_free(&x);
        cnn_tensor_free(&y);
    }
    return n;
}

/* A restart after one batch, once the worker has decoded 16 samples ahead for the old epoch
 * (positions 4 to 19), at position 2 of the next: its batches are its own, as a loader without
 * workers gives them. A slot left marked ready from the old epoch at a position the new one
 * reaches (4, in its first batch) would be packed before the worker decodes it again; the
 * training transform (random crops of 96 x 96 images to 32 x 32) keeps the worker behind. */
TEST(loader_restart_hands_out_nothing_decoded_for_the_old_epoch)
{
    cnn_dataset *ds = data_test_synthetic(40, 96, 96);
    REQUIRE(ds);
    cnn_loader_options o = cnn_loader_default_options(ds, true, 32, 4);
    o.seed = 7;
    cnn_loader *ref = NULL, *l = NULL;
    CHECK_OK(cnn_loader_create(ds, &o, &ref));
    o.num_workers = 1;
    o.prefetch = 4;
    CHECK_OK(cnn_loader_create(ds, &o, &l));
    const size_t cap = 38 * (32 * 32 + 1);
    float *want = malloc(cap * sizeof *want), *got = malloc(cap * sizeof *got);
    REQUIRE(ref && l && want && got);
    for (int e = 0; e < 8 && !cnn_test_failed(); e += 2) {
        cnn_tensor *x = NULL, *y = NULL;
        REQUIRE(epoch_values(ref, e + 1, 2, want, cap) == cap);
        CHECK_OK(cnn_loader_start_epoch(l, e));
        CHECK_OK(cnn_loader_next(l, &x, &y));
        cnn_tensor_free(&x);
        cnn_tensor_free(&y);
        usleep(20000); /* time for the worker to fill the ring */
        REQUIRE(epoch_values(l, e + 1, 2, got, cap) == cap);
        CHECK(memcmp(want, got, cap * sizeof *want) == 0);
    }
    free(want);
    free(got);
    cnn_loader_destroy(&l);
    cnn_loader_destroy(&ref);
    cnn_dataset_destroy(&ds);
}
