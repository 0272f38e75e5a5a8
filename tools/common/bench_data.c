/* bench_data.c — cnnbench's `loader` mode: how fast the data loader delivers training batches
 * (decode, augment, batch, and on a GPU backend the pinned copy to the device) with a consumer
 * that does no other work, and each worker's own decode rate. Public API only; no timing of
 * any model here. */
#include "bench_common.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Next batch, wrapping into the following epoch when one ends; 0 on success, -1 on a failure
 * (cnn_last_error), 1 for an epoch without a single batch: every image was bad. */
static int next_batch(cnn_loader *ld, int64_t *epoch, cnn_tensor **images, cnn_tensor **labels)
{
    for (int tries = 0; tries < 2; tries++) {
        if (cnn_loader_next(ld, images, labels) != CNN_OK) return -1;
        if (*images) return 0;
        if (cnn_loader_start_epoch(ld, ++*epoch) != CNN_OK) return -1;
    }
    return 1;
}

/* The training images of DATA: Fashion-MNIST's, DATA/train of an ImageNet-style folder, or,
 * when DATA is a folder without train/, DATA itself as a split (DATA/<class>/<images>), opened
 * as the split of its parent folder; *as_split says which. */
static cnn_status open_train(const char *data, cnn_dataset **ds, bool *as_split)
{
    char root[4096], train[4096 + 8];
    struct stat sb;
    *as_split = false;
    if (!strcmp(data, "fashion-mnist")) return cnn_fashion_mnist_create(NULL, true, 1, ds);
    snprintf(train, sizeof train, "%s/train", data);
    if (stat(data, &sb) != 0 || !S_ISDIR(sb.st_mode) || stat(train, &sb) == 0 ||
        strlen(data) >= sizeof root)
        return cnn_imagefolder_create(data, "train", 3, ds);
    *as_split = true;
    snprintf(root, sizeof root, "%s", data);
    size_t len = strlen(root);
    while (len > 1 && root[len - 1] == '/') root[--len] = 0;
    char *slash = strrchr(root, '/');
    if (!slash) return cnn_imagefolder_create(".", root, 3, ds);
    *slash = 0;
    return cnn_imagefolder_create(slash == root ? "/" : root, slash + 1, 3, ds);
}

int bench_mode_loader(const bench_opts *o, bench_env *e, bench_log *l)
{
    const bool fmnist = !strcmp(o->data, "fashion-mnist");
    cnn_dataset *ds = NULL;
    cnn_loader *ld = NULL;
    double *t = NULL;
    int rc = 1;
    bool as_split;
    if (open_train(o->data, &ds, &as_split) != CNN_OK) {
        bench_error("loader %s: %s%s\n", o->data,
                as_split ? "no train/ folder in it, and read as a split folder: " : "",
                cnn_last_error());
        return 1;
    }
    /* The training pipeline as train_imagenet_subset builds it: default augmentation, the
     * model's usual size for folders (224) unless --img-size, Fashion-MNIST's own 28. */
    const int size = o->img_size ? o->img_size : fmnist ? 0 : 224;
    cnn_loader_options lo = cnn_loader_default_options(ds, true, size, o->batch);
    lo.num_workers = o->workers;
    lo.seed = 1;
    lo.device = e->dev;
    int64_t epoch = 0;
    if (cnn_loader_create(ds, &lo, &ld) != CNN_OK || cnn_loader_start_epoch(ld, 0) != CNN_OK ||
        !(t = malloc((size_t)o->iters * sizeof *t))) {
        bench_error("loader %s: %s\n", o->data, cnn_last_error());
        goto done;
    }
    int s = cnn_transform_output_size(ds, &lo.transform), c = cnn_dataset_channels(ds);
    printf("data %s: %lld training images, %d workers, batch %d, %dx%dx%d, delivered to %s\n",
           o->data, (long long)cnn_dataset_size(ds), o->workers, o->batch, c, s, s,
           e->gpu ? "the GPU (pinned copy)" : "the CPU");
    cnn_loader_stats s0, s1;
    double t0 = 0;
    int64_t images = 0;
    for (int i = 0; i < o->warmup + o->iters; i++) {
        if (tool_stop) goto done;
        if (i == o->warmup) {
            /* Steady state from here: the workers' counters and the clock restart. */
            cnn_loader_get_stats(ld, &s0);
            t0 = bench_now_ms();
        }
        cnn_tensor *x = NULL, *y = NULL;
        double b0 = bench_now_ms();
        int got = next_batch(ld, &epoch, &x, &y);
        if (got > 0) {
            int nb = cnn_loader_num_bad(ld);
            bench_error("loader %s: not one training image could be read (%d bad)%s%s\n",
                        o->data, nb, nb ? "; the first failure: " : "",
                        nb ? cnn_loader_bad_reason(ld, 0) : "");
            goto done;
        }
        if (got || (e->gpu && cnn_synchronize() != CNN_OK)) {
            bench_error("loader %s: %s\n", o->data, cnn_last_error());
            cnn_tensor_free(&x);
            cnn_tensor_free(&y);
            goto done;
        }
        if (i >= o->warmup) {
            t[i - o->warmup] = bench_now_ms() - b0;
            images += cnn_tensor_dim(x, 0);
        }
        cnn_tensor_free(&x);
        cnn_tensor_free(&y);
    }
    const double wall = bench_now_ms() - t0;
    cnn_loader_get_stats(ld, &s1);
    bench_result *r = bench_log_add(l);
    if (!r) goto done;
    snprintf(r->mode, sizeof r->mode, "loader");
    snprintf(r->backend, sizeof r->backend, "%s", e->backend);
    snprintf(r->name, sizeof r->name, "%s", fmnist ? "fashion-mnist" : "imagefolder");
    snprintf(r->shape, sizeof r->shape, "%d,%d,%d,%d,w%d", o->batch, c, s, s, o->workers);
    snprintf(r->pass, sizeof r->pass, "train");
    snprintf(r->check, sizeof r->check, "n/a");
    r->t = bench_stats_of(t, o->iters);
    r->img_per_s = wall > 0 ? images / (wall * 1e-3) : 0;
    r->gbs = wall > 0 ? 4.0 * images * c * s * s / (wall * 1e6) : 0;
    r->count = 1;
    bench_print_row(e, NULL);
    bench_print_row(e, r);
    /* Each worker's rate while it was decoding: their sum is what the loader could deliver
     * to a consumer that never lets the prefetch queue fill up. */
    /* The mean is over the workers that decoded anything in the timed part: one that found
     * the queue full throughout has no rate, not a rate of 0. */
    double lo_rate = INFINITY, hi_rate = 0, sum = 0;
    int64_t decoded = 0;
    int active = 0;
    for (int w = 0; w < s1.n_workers; w++) {
        int64_t n = s1.worker_images[w] - s0.worker_images[w];
        double secs = s1.decode_seconds[w] - s0.decode_seconds[w];
        decoded += n;
        if (n <= 0 || secs <= 0) continue;
        double rate = n / secs;
        active++;
        sum += rate;
        lo_rate = fmin(lo_rate, rate);
        hi_rate = fmax(hi_rate, rate);
    }
    const int na = active > 0 ? active : 1;
    printf("delivered %.1f img/s (%lld images in %.3f s); per-worker decode %.1f img/s mean "
           "(min %.1f, max %.1f) over %d of %d worker(s) that decoded, %.1f img/s together; "
           "%lld decoded, %lld bad\n",
           r->img_per_s, (long long)images, wall * 1e-3, sum / na, active ? lo_rate : 0, hi_rate,
           active, s1.n_workers, sum, (long long)decoded,
           (long long)(s1.bad_samples - s0.bad_samples));
    r->worker_img_per_s = sum / na;
    rc = 0;
done:
    free(t);
    cnn_loader_destroy(&ld);
    cnn_dataset_destroy(&ds);
    return rc;
}
