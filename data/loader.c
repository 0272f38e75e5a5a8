/* loader.c — batches from a dataset: a per-epoch permutation from (seed, epoch), worker threads
 * that decode + transform samples ahead into a bounded ring of sample slots, and an in-order
 * consumer that packs good samples into (B, C, S, S) batches. The order of samples, their
 * pixels and the batch boundaries never depend on the number of workers or on timing. For a
 * CUDA destination, batches are packed into pinned memory and sent one batch ahead on the
 * loader's own stream, so the copy runs while the caller's GPU works on the previous batch. */
#include "dataset.h"

#if CNN_WITH_CUDA
#include "../cuda/cuda_api.h"
#endif

#include "philox.h"

#include <errno.h>
#include <pthread.h>

/* One decoded sample in the ring. Owned by a worker between claim and `ready`, then by the
 * consumer until it releases the slot. */
typedef struct slot {
    float *pix;        /* C * S * S */
    int64_t k;         /* position in the epoch this slot holds */
    int64_t index;     /* dataset index */
    int64_t label;
    cnn_status status;
    bool bad_sample;   /* the failure is the file's (it cannot be read or decoded) */
    char *error;       /* message of a failed sample (malloc'd) */
    bool ready;
} slot;

typedef struct bad_entry {
    char *name, *reason;
} bad_entry;

/* The batch a CUDA loader sent ahead: device tensors whose copy may still run on the loader's
 * stream, or the end of the epoch (x NULL), or the error met while making it. */
typedef struct sent_batch {
    bool valid;
    cnn_tensor *x, *y;
    int64_t end; /* the epoch position after it */
    cnn_status status;
    bool bad_stop; /* the error is a bad sample's in strict mode */
    char *error;
} sent_batch;

struct cnn_loader {
    const cnn_dataset *ds;
    cnn_loader_options opt;
    int S, C;
    int64_t n;           /* samples per epoch */
    int64_t *base;       /* the n dataset indices used (after limit) */
    int64_t *perm;       /* this epoch's order: dataset indices */
    int64_t epoch;
    bool started;
    slot *slots;
    int64_t n_slots;

    pthread_mutex_t mu;
    pthread_cond_t cv_work;  /* workers wait for a free slot / an epoch / stop */
    pthread_cond_t cv_ready; /* the consumer waits for a slot; start_epoch for idle workers */
    pthread_t threads[CNN_LOADER_MAX_WORKERS];
    int n_threads;
    bool stop;
    uint64_t gen;        /* bumped at every epoch start: older claims are dropped */
    int64_t next_claim;  /* next epoch position a worker takes */
    int64_t consumed;    /* positions the consumer has released */
    int64_t handed;      /* the position after the last batch handed to the caller */
    bool retry;          /* the last call failed for want of memory or descriptors: the next
                            starts again at `handed`, so that no sample is lost */
    int busy;            /* workers between claim and completion */

    bad_entry *bad;
    int n_bad;
    bool *bad_seen;      /* per dataset index: already listed */
    cnn_loader_stats stats;

    cnn_context *copy_ctx; /* CUDA destination: the context whose stream does the copies */
    sent_batch ahead;
};

static void drop_ahead(cnn_loader *l)
{
    cnn_tensor_free(&l->ahead.x);
    cnn_tensor_free(&l->ahead.y);
    free(l->ahead.error);
    l->ahead = (sent_batch){0};
}

/* Decodes epoch position k into its slot; called by a worker or, with no workers, by the
 * consumer. Returns the seconds spent. */
static double fill_slot(cnn_loader *l, slot *s, int64_t k, int64_t index)
{
    double t0 = cnn_monotonic_s();
    s->k = k;
    s->index = index;
    free(s->error);
    s->error = NULL;
    s->status = cnn_dataset_fetch(l->ds, index, &l->opt.transform, l->opt.seed, l->epoch,
                                  s->pix, &s->label, &s->bad_sample);
    if (s->status != CNN_OK && !(s->error = strdup(cnn_last_error()))) {
        s->status = CNN_ERR_OUT_OF_MEMORY; /* the reason is lost: not a bad file's */
        s->bad_sample = false;
    }
    return cnn_monotonic_s() - t0;
}

typedef struct worker_arg {
    cnn_loader *l;
    int id;
} worker_arg;

static void *worker_main(void *p)
{
    worker_arg *a = p;
    cnn_loader *l = a->l;
    int id = a->id;
    free(a);
    pthread_mutex_lock(&l->mu);
    for (;;) {
        while (!l->stop && !(l->started && l->next_claim < l->n &&
                             l->next_claim < l->consumed + l->n_slots))
            pthread_cond_wait(&l->cv_work, &l->mu);
        if (l->stop) break;
        int64_t k = l->next_claim++;
        uint64_t gen = l->gen;
        slot *s = &l->slots[k % l->n_slots];
        int64_t index = l->perm[k];
        l->busy++;
        pthread_mutex_unlock(&l->mu);
        double secs = fill_slot(l, s, k, index);
        pthread_mutex_lock(&l->mu);
        l->busy--;
        l->stats.decode_seconds[id] += secs;
        if (s->status == CNN_OK) {
            l->stats.worker_images[id]++;
            l->stats.images_decoded++;
        } else {
            l->stats.bad_samples++;
        }
        if (gen == l->gen) s->ready = true;
        pthread_cond_broadcast(&l->cv_ready);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

cnn_loader_options cnn_loader_default_options(const cnn_dataset *ds, bool train, int img_size,
                                              int batch_size)
{
    cnn_loader_options o = {0};
    o.batch_size = batch_size;
    o.shuffle = train;
    o.prefetch = 2;
    o.transform = cnn_transform_default(ds, train, img_size);
    return o;
}

static void stop_workers(cnn_loader *l)
{
    pthread_mutex_lock(&l->mu);
    l->stop = true;
    pthread_cond_broadcast(&l->cv_work);
    pthread_mutex_unlock(&l->mu);
    for (int i = 0; i < l->n_threads; i++) pthread_join(l->threads[i], NULL);
    l->n_threads = 0;
}

void cnn_loader_destroy(cnn_loader **pl)
{
    if (!pl || !*pl) return;
    cnn_loader *l = *pl;
    stop_workers(l);
    drop_ahead(l);
    cnn_context_destroy(&l->copy_ctx);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv_work);
    pthread_cond_destroy(&l->cv_ready);
    for (int64_t i = 0; l->slots && i < l->n_slots; i++) {
        free(l->slots[i].pix);
        free(l->slots[i].error);
    }
    free(l->slots);
    for (int i = 0; i < l->n_bad; i++) {
        free(l->bad[i].name);
        free(l->bad[i].reason);
    }
    free(l->bad);
    free(l->bad_seen);
    free(l->base);
    free(l->perm);
    free(l);
    *pl = NULL;
}

cnn_status cnn_loader_create(const cnn_dataset *ds, const cnn_loader_options *opt,
                             cnn_loader **out)
{
    CNN_CHECK(out, CNN_ERR_INVALID_ARG, "loader_create: out is NULL");
    *out = NULL;
    CNN_CHECK(ds && opt, CNN_ERR_INVALID_ARG, "loader_create: NULL dataset or options");
    CNN_CHECK(opt->batch_size > 0, CNN_ERR_INVALID_ARG, "loader_create: batch_size %d must be > 0",
              opt->batch_size);
    CNN_CHECK(opt->num_workers >= 0 && opt->num_workers <= CNN_LOADER_MAX_WORKERS,
              CNN_ERR_INVALID_ARG, "loader_create: num_workers %d not in [0, %d]",
              opt->num_workers, CNN_LOADER_MAX_WORKERS);
    CNN_CHECK(opt->prefetch >= 0 && opt->prefetch <= 64, CNN_ERR_INVALID_ARG,
              "loader_create: prefetch %d not in [0, 64]", opt->prefetch);
    CNN_CHECK(opt->limit >= 0, CNN_ERR_INVALID_ARG,
              "loader_create: limit %lld must be >= 0 (0: every sample)", (long long)opt->limit);
    CNN_CHECK(opt->device.type == CNN_DEVICE_CPU || opt->device.type == CNN_DEVICE_CUDA,
              CNN_ERR_INVALID_ARG, "loader_create: unknown device type %d", (int)opt->device.type);
    int S = cnn_transform_output_size(ds, &opt->transform);
    if (S <= 0) return cnn_error_prefix(CNN_ERR_INVALID_ARG, "loader_create");
    CNN_TRY(cnn_transform_check(ds, &opt->transform));
    cnn_loader *l = calloc(1, sizeof *l);
    if (!l) return cnn_error(CNN_ERR_OUT_OF_MEMORY, "loader_create: out of memory");
    cnn_status st = CNN_OK;
    l->ds = ds;
    l->opt = *opt;
    if (l->opt.prefetch == 0) l->opt.prefetch = 2;
    l->S = S;
    l->C = ds->channels;
    int64_t size = ds->n;
    l->n = opt->limit > 0 && opt->limit < size ? opt->limit : size;
    /* A batch never holds more than the epoch's samples: a batch size above the data set's
     * costs no more memory than the data set (as PyTorch's DataLoader, whose batch is short). */
    int64_t per_batch = opt->batch_size < l->n ? opt->batch_size : l->n;
    l->n_slots = (int64_t)l->opt.prefetch * (per_batch > 0 ? per_batch : 1);
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv_work, NULL);
    pthread_cond_init(&l->cv_ready, NULL);
    l->base = malloc((size_t)l->n * sizeof *l->base);
    l->perm = malloc((size_t)l->n * sizeof *l->perm);
    l->bad_seen = calloc((size_t)size, sizeof *l->bad_seen);
    l->slots = calloc((size_t)l->n_slots, sizeof *l->slots);
    if (!l->base || !l->perm || !l->bad_seen || !l->slots) {
        st = cnn_error(CNN_ERR_OUT_OF_MEMORY, "loader_create: out of memory for %lld samples",
                       (long long)l->n);
        goto done;
    }
    for (int64_t k = 0; k < l->n; k++) l->base[k] = l->n == size ? k : k * size / l->n;
    size_t sample_floats = (size_t)l->C * S * S;
    for (int64_t i = 0; i < l->n_slots; i++) {
        l->slots[i].pix = malloc(sample_floats * sizeof(float));
        if (!l->slots[i].pix) {
            st = cnn_error(CNN_ERR_OUT_OF_MEMORY, "loader_create: no memory for %lld slots of "
                           "(%d, %d, %d)", (long long)l->n_slots, l->C, S, S);
            goto done;
        }
    }
    if (opt->device.type == CNN_DEVICE_CUDA) {
        /* Its own context: copies on a stream of their own, beside the caller's kernels. */
        st = cnn_context_create(opt->device, &l->copy_ctx);
        if (st != CNN_OK) {
            st = cnn_error_prefix(st, "loader_create (batches for cuda:%d)", opt->device.index);
            goto done;
        }
    }
    l->stats.n_workers = opt->num_workers > 0 ? opt->num_workers : 1;
    for (int w = 0; w < opt->num_workers; w++) {
        worker_arg *a = malloc(sizeof *a);
        if (!a) {
            st = cnn_error(CNN_ERR_OUT_OF_MEMORY, "loader_create: out of memory");
            goto done;
        }
        *a = (worker_arg){l, w};
        int rc = pthread_create(&l->threads[w], NULL, worker_main, a);
        if (rc != 0) {
            free(a);
            /* EAGAIN: the system's thread limit or memory for the thread's stack ran out. */
            st = rc == EAGAIN || rc == ENOMEM
                     ? cnn_error(CNN_ERR_OUT_OF_MEMORY, "loader_create: not enough memory (or "
                                 "threads) to start worker %d of %d: %s", w + 1,
                                 opt->num_workers, strerror(rc))
                     : cnn_error(CNN_ERR_INTERNAL, "loader_create: cannot start worker %d: %s",
                                 w + 1, strerror(rc));
            goto done;
        }
        l->n_threads++;
    }
    *out = l;
    l = NULL;
done:
    cnn_loader_destroy(&l);
    return st;
}

cnn_status cnn_loader_start_epoch_at(cnn_loader *l, int64_t epoch, int64_t position)
{
    CNN_CHECK(l, CNN_ERR_INVALID_ARG, "loader_start_epoch: loader is NULL");
    CNN_CHECK(epoch >= 0 && epoch < ((int64_t)1 << 24), CNN_ERR_INVALID_ARG,
              "loader_start_epoch: epoch %lld out of range", (long long)epoch);
    CNN_CHECK(position >= 0 && position <= l->n, CNN_ERR_INVALID_ARG,
              "loader_start_epoch: position %lld is outside the epoch's %lld samples",
              (long long)position, (long long)l->n);
    drop_ahead(l);
    pthread_mutex_lock(&l->mu);
    /* Drop what is in flight: no new claims, wait until every worker has let go of its slot. */
    l->started = false;
    l->gen++;
    while (l->busy > 0) pthread_cond_wait(&l->cv_ready, &l->mu);
    for (int64_t i = 0; i < l->n_slots; i++) l->slots[i].ready = false;
    l->epoch = epoch;
    memcpy(l->perm, l->base, (size_t)l->n * sizeof *l->perm);
    if (l->opt.shuffle) {
        /* Fisher-Yates from Philox(seed ^ tag; epoch, step): the same order for any workers. */
        uint64_t key = l->opt.seed ^ CNN_SHUFFLE_TAG, ctr = (uint64_t)epoch << 40;
        for (int64_t i = l->n - 1; i > 0; i--) {
            uint32_t r[4];
            cnn_philox4x32(key, ctr + (uint64_t)i, r);
            uint64_t x = ((uint64_t)r[0] << 32) | r[1];
            int64_t j = (int64_t)(x % (uint64_t)(i + 1));
            int64_t tmp = l->perm[i];
            l->perm[i] = l->perm[j];
            l->perm[j] = tmp;
        }
    }
    /* Positions before `position` are neither decoded nor handed out. */
    l->next_claim = l->consumed = l->handed = position;
    l->retry = false;
    l->started = true;
    pthread_cond_broadcast(&l->cv_work);
    pthread_mutex_unlock(&l->mu);
    return CNN_OK;
}

cnn_status cnn_loader_start_epoch(cnn_loader *l, int64_t epoch)
{
    return cnn_loader_start_epoch_at(l, epoch, 0);
}

int64_t cnn_loader_position(const cnn_loader *l) { return l ? l->handed : 0; }

/* Host memory for a batch: pinned when it goes on to a GPU, so that the copy is asynchronous. */
static cnn_status alloc_batch(cnn_loader *l, int64_t b, cnn_tensor **images, cnn_tensor **labels)
{
    if (l->copy_ctx) {
        CNN_TRY(cnn_tensor_empty_pinned(CNN_SHAPE(b, l->C, l->S, l->S), CNN_F32, images));
        cnn_status st = cnn_tensor_empty_pinned(CNN_SHAPE(b), CNN_I64, labels);
        if (st != CNN_OK) cnn_tensor_free(images);
        return st;
    }
    CNN_TRY(cnn_tensor_empty(CNN_SHAPE(b, l->C, l->S, l->S), CNN_F32, CNN_CPU, images));
    cnn_status st = cnn_tensor_empty(CNN_SHAPE(b), CNN_I64, CNN_CPU, labels);
    if (st != CNN_OK) cnn_tensor_free(images);
    return st;
}

/* Lists a bad sample (once per file); out of memory for the list is an error: a bad file left
 * off the list would be skipped without a word. */
static cnn_status record_bad(cnn_loader *l, const slot *s)
{
    if (l->bad_seen[s->index]) return CNN_OK;
    char name[4096];
    cnn_dataset_sample_name(l->ds, s->index, name, sizeof name);
    bad_entry *nb = realloc(l->bad, (size_t)(l->n_bad + 1) * sizeof *nb);
    if (nb) l->bad = nb;
    char *nm = nb ? strdup(name) : NULL, *why = nm ? strdup(s->error) : NULL;
    if (!why) {
        free(nm);
        return cnn_error(CNN_ERR_OUT_OF_MEMORY, "loader_next: out of memory listing the bad "
                         "sample %s", name);
    }
    nb[l->n_bad].name = nm;
    nb[l->n_bad].reason = why;
    l->n_bad++;
    l->bad_seen[s->index] = true;
    return CNN_OK;
}

/* Waits for (or, with no workers, makes) epoch position k; returns its slot. */
static slot *acquire(cnn_loader *l, int64_t k)
{
    slot *s = &l->slots[k % l->n_slots];
    if (l->n_threads == 0) {
        double secs = fill_slot(l, s, k, l->perm[k]);
        l->stats.decode_seconds[0] += secs;
        if (s->status == CNN_OK) {
            l->stats.worker_images[0]++;
            l->stats.images_decoded++;
        } else {
            l->stats.bad_samples++;
        }
        return s;
    }
    pthread_mutex_lock(&l->mu);
    while (!(s->ready && s->k == k)) pthread_cond_wait(&l->cv_ready, &l->mu);
    pthread_mutex_unlock(&l->mu);
    return s;
}

static void release(cnn_loader *l, slot *s)
{
    if (l->n_threads == 0) {
        l->consumed++;
        return;
    }
    pthread_mutex_lock(&l->mu);
    s->ready = false;
    l->consumed++;
    pthread_cond_broadcast(&l->cv_work);
    pthread_mutex_unlock(&l->mu);
}

/* The next batch of the epoch in host memory (NULLs at its end): waits for the workers.
 * *bad_stop: it failed on a bad sample in strict mode. */
static cnn_status pack_batch(cnn_loader *l, cnn_tensor **images, cnn_tensor **labels,
                             bool *bad_stop)
{
    cnn_status st = CNN_OK;
    cnn_tensor *x = NULL, *y = NULL;
    int64_t B = l->opt.batch_size, m = 0;
    size_t sample_floats = (size_t)l->C * l->S * l->S;
    /* Rows for what the epoch has left at most: the last batch, or a batch size above the data
     * set's, gets no more memory than its samples. */
    int64_t rows = l->n - l->consumed < B ? l->n - l->consumed : B;
    if (rows > 0) CNN_TRYG(alloc_batch(l, rows, &x, &y));
    while (m < B && l->consumed < l->n) {
        slot *s = acquire(l, l->consumed);
        if (s->status == CNN_OK) {
            memcpy(cnn_f32(x) + (size_t)m * sample_floats, s->pix, sample_floats * sizeof(float));
            ((int64_t *)cnn_ptr(y))[m++] = s->label;
            release(l, s);
            continue;
        }
        /* A file that cannot be read or decoded is a bad sample; any other failure (out of
         * memory or file descriptors) says nothing about the file and fails the call. */
        bool bad_file = s->bad_sample;
        if (bad_file) st = record_bad(l, s);
        if (st == CNN_OK && (l->opt.strict || !bad_file)) {
            *bad_stop = bad_file;
            st = s->error ? cnn_error(s->status, "loader_next: %s", s->error)
                          : cnn_error(s->status, "loader_next: out of memory for a sample's "
                                      "error message");
        }
        release(l, s);
        if (st != CNN_OK) goto done;
    }
    if (m == 0 || (m < B && l->opt.drop_last)) goto done; /* end of the epoch */
    if (m < B) {
        /* The epoch's last batch: a view of the first m rows (same storage, contiguous). */
        cnn_tensor *xs = NULL, *ys = NULL;
        CNN_TRYG(cnn_tensor_narrow(x, 0, 0, m, &xs));
        st = cnn_tensor_narrow(y, 0, 0, m, &ys);
        cnn_tensor_free(&x);
        cnn_tensor_free(&y);
        x = xs;
        y = ys;
        if (st != CNN_OK) goto done;
    }
    *images = x;
    *labels = y;
    x = y = NULL;
done:
    cnn_tensor_free(&x);
    cnn_tensor_free(&y);
    return st;
}

#if CNN_WITH_CUDA
/* Packs the next batch and starts its copy to the device on the loader's stream; what happened
 * (a batch, the end of the epoch or an error) waits in l->ahead for the next call. */
static void send_ahead(cnn_loader *l)
{
    cnn_tensor *hx = NULL, *hy = NULL;
    sent_batch *a = &l->ahead;
    *a = (sent_batch){.valid = true};
    a->status = pack_batch(l, &hx, &hy, &a->bad_stop);
    a->end = l->consumed;
    if (a->status == CNN_OK && hx) {
        cnn_context *caller = cnn_context_current();
        cnn_context_set_current(l->copy_ctx);
        a->status = cnn_tensor_to(hx, l->opt.device, &a->x);
        if (a->status == CNN_OK) a->status = cnn_tensor_to(hy, l->opt.device, &a->y);
        cnn_context_set_current(caller);
    }
    if (a->status != CNN_OK) {
        a->error = strdup(cnn_last_error());
        cnn_tensor_free(&a->x);
        cnn_tensor_free(&a->y);
    }
    /* The pinned blocks stay reserved until their copies are done (host_alloc.c). */
    cnn_tensor_free(&hx);
    cnn_tensor_free(&hy);
}

/* CUDA destination: hands over the batch sent ahead (ordering the caller's stream after its
 * copy), then sends the following one. */
static cnn_status next_on_device(cnn_loader *l, cnn_tensor **images, cnn_tensor **labels,
                                 bool *bad_stop)
{
    cnn_context *caller = cnn_context_current();
    cnn_device cur = cnn_current_device();
    CNN_CHECK(cur.type == CNN_DEVICE_CUDA && cur.index == l->opt.device.index, CNN_ERR_DEVICE,
              "loader_next: the loader delivers batches to cuda:%d, but the current context is "
              "on %s:%d", l->opt.device.index, cur.type == CNN_DEVICE_CUDA ? "cuda" : "cpu",
              cur.index);
    if (!l->ahead.valid) send_ahead(l);
    sent_batch b = l->ahead;
    l->ahead = (sent_batch){0};
    if (b.status != CNN_OK) {
        *bad_stop = b.bad_stop;
        if (b.bad_stop) l->handed = b.end; /* as on the host path */
        cnn_status st = cnn_error(b.status, "%s", b.error ? b.error : "loader_next failed (out "
                                  "of host memory for its message)");
        free(b.error);
        return st;
    }
    if (!b.x) return CNN_OK; /* the end of the epoch (stays so: the next call finds it again) */
    cnn_tensor *ts[2] = {b.x, b.y};
    cnn_status st = cnn_cuda_stream_handoff(l->copy_ctx, caller, ts, 2);
    if (st != CNN_OK) {
        cnn_tensor_free(&b.x);
        cnn_tensor_free(&b.y);
        return st;
    }
    *images = b.x;
    *labels = b.y;
    l->handed = b.end;
    send_ahead(l);
    return CNN_OK;
}
#endif

cnn_status cnn_loader_next(cnn_loader *l, cnn_tensor **images, cnn_tensor **labels)
{
    CNN_CHECK(images && labels, CNN_ERR_INVALID_ARG, "loader_next: images or labels is NULL");
    *images = *labels = NULL;
    CNN_CHECK(l, CNN_ERR_INVALID_ARG, "loader_next: loader is NULL");
    double t0 = cnn_monotonic_s();
    if (!l->started) CNN_TRY(cnn_loader_start_epoch(l, 0));
    /* After a failure that was not the data's, the batch that failed is made again. */
    if (l->retry) CNN_TRY(cnn_loader_start_epoch_at(l, l->epoch, l->handed));
    cnn_status st;
    bool bad_stop = false;
#if CNN_WITH_CUDA
    if (l->copy_ctx) st = next_on_device(l, images, labels, &bad_stop);
    else
#endif
    {
        st = pack_batch(l, images, labels, &bad_stop);
        /* After a strict stop too: the next call goes on after the bad sample, and so does a
         * resume from cnn_loader_position. */
        if (*images || bad_stop) l->handed = l->consumed;
    }
    l->retry = st != CNN_OK && !bad_stop;
    if (*images) l->stats.batches++;
    l->stats.wait_seconds += cnn_monotonic_s() - t0;
    return st;
}

int64_t cnn_loader_num_samples(const cnn_loader *l) { return l ? l->n : 0; }

int64_t cnn_loader_num_batches(const cnn_loader *l)
{
    if (!l) return 0;
    int64_t B = l->opt.batch_size;
    return l->opt.drop_last ? l->n / B : (l->n + B - 1) / B;
}

int cnn_loader_num_bad(const cnn_loader *l) { return l ? l->n_bad : 0; }

const char *cnn_loader_bad_name(const cnn_loader *l, int i)
{
    return l && i >= 0 && i < l->n_bad ? l->bad[i].name : NULL;
}

const char *cnn_loader_bad_reason(const cnn_loader *l, int i)
{
    return l && i >= 0 && i < l->n_bad ? l->bad[i].reason : NULL;
}

void cnn_loader_get_stats(cnn_loader *l, cnn_loader_stats *out)
{
    if (!out) return;
    memset(out, 0, sizeof *out);
    if (!l) return;
    pthread_mutex_lock(&l->mu);
    *out = l->stats;
    pthread_mutex_unlock(&l->mu);
}
