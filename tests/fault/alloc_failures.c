/* alloc_failures.c — makes the library's k-th heap allocation fail, for every k, in scenarios
 * over the API (ops, autograd, optimizers, models, checkpoints, datasets and loaders), and
 * checks each outcome. What a library owes its user when the host runs out of
 * memory:
 *   - no crash, no abort, no hang;
 *   - the call returns CNN_ERR_OUT_OF_MEMORY with a message that says memory ran out, not a
 *     misleading status or message ("corrupt file", "bad image");
 *   - a failure the library absorbs (a retry, an optional cache) leaves the result unchanged;
 *   - nothing leaks (LeakSanitizer, when built with DEBUG=1);
 *   - what the API promises to leave untouched on failure is untouched (parameters after
 *     cnn_optim_step, a model after cnn_model_load, an old checkpoint after cnn_safetensors_save);
 *   - the same scenario run again without a failure gives the first run's result bit for bit.
 * Built by `make check-alloc-failures` with -Wl,--wrap for malloc, calloc, realloc,
 * aligned_alloc, strdup, strndup and pthread_create, so that only the library's own calls (and
 * this file's) go through the counters below; OpenMP, OpenBLAS and zlib allocate as usual. Not
 * part of run_tests: the wrapping needs its own link. In a CUDA build (the emulator's too) the
 * scenarios run again with everything on cuda:0, so the library's host code for the GPU fails
 * too; on the emulator, which counts the GPU's allocations, they run twice more with those
 * failing instead. Prints "N passed, N failed" as the suite does. */
#include "cnncuda.h"

#include <errno.h>
#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <stb/stb_image_write.h>

/* ---- the counters: only allocations made while armed count, and the fail_at-th fails ------ */
static atomic_long g_count, g_fail_at;
static atomic_int g_armed, g_failed;

static int fail_now(void)
{
    if (!atomic_load(&g_armed)) return 0;
    long c = atomic_fetch_add(&g_count, 1) + 1;
    if (c != atomic_load(&g_fail_at)) return 0;
    atomic_store(&g_failed, 1);
    return 1;
}

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t m);
void *__real_realloc(void *p, size_t n);
void *__real_aligned_alloc(size_t a, size_t n);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);
void *__wrap_malloc(size_t n) { return fail_now() ? NULL : __real_malloc(n); }
void *__wrap_calloc(size_t n, size_t m) { return fail_now() ? NULL : __real_calloc(n, m); }
void *__wrap_realloc(void *p, size_t n) { return fail_now() ? NULL : __real_realloc(p, n); }
void *__wrap_aligned_alloc(size_t a, size_t n)
{
    return fail_now() ? NULL : __real_aligned_alloc(a, n);
}
char *__wrap_strdup(const char *s) { return fail_now() ? NULL : __real_strdup(s); }
char *__wrap_strndup(const char *s, size_t n) { return fail_now() ? NULL : __real_strndup(s, n); }
/* A thread's stack is an allocation too: pthread_create fails with EAGAIN when it cannot have
 * one. */
int __real_pthread_create(pthread_t *t, const pthread_attr_t *a, void *(*f)(void *), void *arg);
int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *a, void *(*f)(void *), void *arg)
{
    return fail_now() ? EAGAIN : __real_pthread_create(t, a, f, arg);
}

/* LeakSanitizer's on-demand check, present in ASan builds (DEBUG=1) only. */
int __lsan_do_recoverable_leak_check(void) __attribute__((weak));
/* The CUDA emulator's count of device, pinned and handle allocations (CUDA_EMU=1 builds only),
 * whose CNN_EMU_FAIL_MALLOC=N,K fails the N-th and the K-1 after it: out of GPU memory from the
 * k-th allocation of a run on. */
long cnn_emu_alloc_count(void) __attribute__((weak));
/* The sweep fails GPU allocations, not the host's: 1 the k-th and every one after it (a full
 * GPU), 2 the k-th only (the allocator's retry after emptying its cache must absorb it). */
static int g_fail_device;

/* ---- scenarios ----------------------------------------------------------------------------- */
static char g_dir[64];  /* this run's scratch folder */
static cnn_device g_dev; /* where the scenarios put their tensors, models and batches */

/* A scenario does its work, frees everything and returns the first error; *sum is a checksum of
 * its result. It may add a line to g_broken when a promise of the API does not hold. */
typedef cnn_status (*scenario_fn)(double *sum);
static char g_broken[512];

static void broken(const char *fmt, ...)
{
    if (g_broken[0]) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_broken, sizeof g_broken, fmt, ap);
    va_end(ap);
}

#define TRY(call)                                                                                 \
    do {                                                                                          \
        if ((st = (call)) != CNN_OK) goto done;                                                   \
    } while (0)

static double checksum(const cnn_tensor *t)
{
    static float buf[1 << 16];
    int64_t n = cnn_tensor_numel(t);
    if (!t || cnn_tensor_dtype(t) != CNN_F32 || n > (int64_t)(sizeof buf / sizeof buf[0]))
        return NAN;
    if (cnn_tensor_read(t, buf, n) != CNN_OK) return NAN;
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += buf[i] * (double)((i % 7) + 1);
    return s;
}

static double dict_checksum(const cnn_dict *d)
{
    double s = 0;
    for (int i = 0; i < cnn_dict_size(d); i++)
        if (cnn_tensor_dtype(cnn_dict_at(d, i)) == CNN_F32) s += checksum(cnn_dict_at(d, i));
    return s;
}

/* Ops through the tape: conv, batch norm, ReLU, LRN, both pools, concat, dropout, the fused
 * conv, adaptive pooling, linear, cross-entropy; backward; clipping; SGD with momentum, then
 * AdamW. */
static cnn_status ops_step(double *sum)
{
    cnn_status st = CNN_OK;
    enum { NT = 24, NU = 13 };
    cnn_tensor *t[NT] = {0}, *u[NU] = {0};
    cnn_optim *opt[2] = {0};
    cnn_manual_seed(7);
    cnn_tensor **x = &t[0], **w1 = &t[1], **b1 = &t[2], **g = &t[3], **be = &t[4], **rm = &t[5],
               **rv = &t[6], **w2 = &t[7], **w3 = &t[8], **b3 = &t[9], **y = &t[10];
    TRY(cnn_tensor_normal(CNN_SHAPE(2, 3, 9, 9), 0, 1, g_dev, x));
    TRY(cnn_tensor_normal(CNN_SHAPE(4, 3, 3, 3), 0, 0.3f, g_dev, w1));
    TRY(cnn_tensor_normal(CNN_SHAPE(4), 0, 0.1f, g_dev, b1));
    TRY(cnn_tensor_ones(CNN_SHAPE(4), g_dev, g));
    TRY(cnn_tensor_zeros(CNN_SHAPE(4), g_dev, be));
    TRY(cnn_tensor_zeros(CNN_SHAPE(4), g_dev, rm));
    TRY(cnn_tensor_ones(CNN_SHAPE(4), g_dev, rv));
    TRY(cnn_tensor_normal(CNN_SHAPE(6, 8, 3, 3), 0, 0.2f, g_dev, w2));
    TRY(cnn_tensor_normal(CNN_SHAPE(5, 6), 0, 0.3f, g_dev, w3));
    TRY(cnn_tensor_zeros(CNN_SHAPE(5), g_dev, b3));
    int64_t labels[2] = {1, 4};
    TRY(cnn_tensor_from_i64(CNN_SHAPE(2), labels, g_dev, y));
    cnn_tensor *params[7] = {*w1, *b1, *g, *be, *w2, *w3, *b3};
    for (int i = 0; i < 7; i++) TRY(cnn_tensor_set_requires_grad(params[i], true));

    cnn_conv2d_params pad1 = {.padding = {1, 1}};
    cnn_pool2d_params pool = {.kernel = {2, 2}};
    TRY(cnn_conv2d(*x, *w1, *b1, &pad1, &t[11]));                               /* 2,4,9,9 */
    TRY(cnn_batch_norm(t[11], *rm, *rv, *g, *be, true, 0.1f, 1e-5f, &t[12]));
    TRY(cnn_relu(t[12], &t[13]));
    TRY(cnn_lrn(t[13], 3, 1e-2f, 0.75f, 1.0f, &t[14]));
    TRY(cnn_max_pool2d(t[14], &pool, &t[15]));                                 /* 2,4,4,4 */
    TRY(cnn_avg_pool2d(t[14], &pool, &t[16]));
    const cnn_tensor *cat[2] = {t[15], t[16]};
    TRY(cnn_concat(cat, 2, 1, &t[17]));                                        /* 2,8,4,4 */
    TRY(cnn_dropout(t[17], 0.25f, true, &t[18]));
    TRY(cnn_conv2d_fused(t[18], *w2, NULL, NULL, CNN_ACT_RELU, &pad1, &t[19])); /* 2,6,4,4 */
    TRY(cnn_adaptive_avg_pool2d(t[19], 1, 1, &t[20]));
    TRY(cnn_flatten(t[20], 1, &t[21]));
    TRY(cnn_linear(t[21], *w3, *b3, &t[22]));
    TRY(cnn_cross_entropy(t[22], *y, 0.1f, &t[23]));
    /* Views, copies and the other element-wise ops, on the side of the loss. */
    TRY(cnn_tensor_transpose(t[22], 0, 1, &u[0]));
    TRY(cnn_tensor_contiguous(u[0], &u[1]));
    TRY(cnn_softmax(u[1], 0, &u[2]));
    TRY(cnn_log_softmax(t[22], 1, &u[3]));
    TRY(cnn_tensor_narrow(u[3], 1, 1, 3, &u[4]));
    TRY(cnn_sum(u[4], &u[5]));
    TRY(cnn_add_relu(t[21], t[21], &u[6]));
    TRY(cnn_elu(u[6], 1.0f, &u[7]));
    TRY(cnn_sigmoid(u[7], &u[8]));
    TRY(cnn_tanh(u[8], &u[9]));
    TRY(cnn_leaky_relu(u[9], 0.1f, &u[10]));
    TRY(cnn_scale(u[10], 3.0f, &u[11]));
    TRY(cnn_tensor_clone(u[11], &u[12]));
    TRY(cnn_backward(t[23]));
    TRY(cnn_clip_grad_norm(params, 7, 1.0f, NULL));

    cnn_optim_config cfg[2] = {cnn_optim_defaults(CNN_OPTIM_SGD),
                               cnn_optim_defaults(CNN_OPTIM_ADAMW)};
    cfg[0].lr = 0.1f;
    cfg[0].momentum = 0.9f;
    static const char *names[7] = {"c1.w", "c1.b", "bn.w", "bn.b", "c2.w", "fc.w", "fc.b"};
    for (int o = 0; o < 2; o++) {
        TRY(cnn_optim_create(&cfg[o], &opt[o]));
        for (int i = 0; i < 7; i++) TRY(cnn_optim_add_param(opt[o], names[i], params[i], i != 1));
        double before = 0;
        for (int i = 0; i < 7; i++) before += checksum(params[i]);
        st = cnn_optim_step(opt[o]);
        if (st != CNN_OK) {
            double after = 0;
            for (int i = 0; i < 7; i++) after += checksum(params[i]);
            if (after != before) broken("cnn_optim_step failed and changed parameters");
            goto done;
        }
    }
    *sum = checksum(t[23]) + checksum(*rm) + checksum(*rv) + checksum(u[2]) + checksum(u[5]) +
           checksum(u[12]);
    for (int i = 0; i < 7; i++) *sum += checksum(params[i]);
done:
    cnn_tape_reset();
    for (int o = 0; o < 2; o++) cnn_optim_destroy(&opt[o]);
    for (int i = 0; i < NT; i++) cnn_tensor_free(&t[i]);
    for (int i = 0; i < NU; i++) cnn_tensor_free(&u[i]);
    return st;
}

/* Writes "old" at path: the file a failed save must leave as it was. */
static void put_old(const char *path)
{
    FILE *f = fopen(path, "wb");
    if (f) {
        fputs("old", f);
        fclose(f);
    }
}

static int is_old(const char *path)
{
    char b[8] = {0};
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    size_t n = fread(b, 1, sizeof b - 1, f);
    fclose(f);
    return n == 3 && !strcmp(b, "old");
}

static int entries(const char *dir)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "ls -A %s | wc -l", dir);
    FILE *p = popen(cmd, "r");
    int n = -1;
    if (p) {
        if (fscanf(p, "%d", &n) != 1) n = -1;
        pclose(p);
    }
    return n;
}

/* A LeNet-5 training step, then its weights and its optimizer's and scheduler's state through
 * safetensors files into a second model and optimizer, and the weights as pretrained ones into a
 * third model. */
static cnn_status model_io(double *sum)
{
    cnn_status st = CNN_OK;
    cnn_model *m = NULL, *m2 = NULL, *m3 = NULL;
    cnn_optim *opt = NULL, *opt2 = NULL;
    cnn_plateau *pl = NULL, *pl2 = NULL;
    cnn_dict *d = NULL, *d2 = NULL;
    cnn_tensor *x = NULL, *y = NULL, *logits = NULL, *loss = NULL;
    char wpath[128], spath[128];
    snprintf(wpath, sizeof wpath, "%s/io/weights.safetensors", g_dir);
    snprintf(spath, sizeof spath, "%s/io/state.safetensors", g_dir);
    put_old(wpath);
    put_old(spath);
    cnn_manual_seed(3);
    TRY(cnn_model_create("lenet5", 10, 1, &m));
    TRY(cnn_model_to(m, g_dev));
    TRY(cnn_tensor_normal(CNN_SHAPE(2, 1, 32, 32), 0, 1, g_dev, &x));
    int64_t labels[2] = {3, 8};
    TRY(cnn_tensor_from_i64(CNN_SHAPE(2), labels, g_dev, &y));
    TRY(cnn_model_forward(m, x, true, &logits));
    TRY(cnn_cross_entropy(logits, y, 0, &loss));
    TRY(cnn_backward(loss));
    cnn_optim_config cfg = cnn_optim_defaults(CNN_OPTIM_SGD);
    cfg.lr = 0.05f;
    cfg.momentum = 0.9f;
    TRY(cnn_optim_create(&cfg, &opt));
    TRY(cnn_optim_add_dict(opt, cnn_model_parameters(m), false));
    TRY(cnn_optim_step(opt));
    cnn_plateau_config pc = cnn_sched_plateau_defaults();
    TRY(cnn_sched_plateau_create(&pc, cfg.lr, &pl));
    TRY(cnn_sched_step_metric(pl, 0.5f, opt, NULL));

    st = cnn_model_save(m, wpath);
    if (st != CNN_OK && !is_old(wpath)) broken("a failed cnn_model_save did not keep the old file");
    TRY(st);
    TRY(cnn_dict_create(&d));
    TRY(cnn_optim_state_dict(opt, d));
    TRY(cnn_sched_plateau_state_dict(pl, d));
    st = cnn_safetensors_save(spath, d);
    if (st != CNN_OK && !is_old(spath)) broken("a failed cnn_safetensors_save changed the file");
    TRY(st);

    cnn_manual_seed(4);
    TRY(cnn_model_create("lenet5", 10, 1, &m2));
    TRY(cnn_model_to(m2, g_dev));
    double fresh = dict_checksum(cnn_model_state(m2));
    st = cnn_model_load(m2, wpath, true, NULL);
    if (st != CNN_OK && dict_checksum(cnn_model_state(m2)) != fresh)
        broken("a failed cnn_model_load changed the model");
    TRY(st);
    TRY(cnn_model_create("lenet5", 10, 1, &m3));
    cnn_pretrained_report pr;
    TRY(cnn_model_load_pretrained(m3, wpath, &pr));
    TRY(cnn_safetensors_load(spath, &d2));
    TRY(cnn_optim_create(&cfg, &opt2));
    TRY(cnn_optim_add_dict(opt2, cnn_model_parameters(m2), false));
    TRY(cnn_optim_load_state_dict(opt2, d2));
    TRY(cnn_sched_plateau_create(&pc, 1.0f, &pl2));
    TRY(cnn_sched_plateau_load_state_dict(pl2, d2));
    *sum = dict_checksum(cnn_model_state(m2)) + dict_checksum(cnn_model_state(m3)) +
           pr.n_loaded + cnn_optim_get_lr(opt2) +
           (double)cnn_optim_step_count(opt2) + cnn_sched_plateau_get_lr(pl2);
done:
    cnn_tape_reset();
    cnn_tensor *ts[] = {x, y, logits, loss};
    for (int i = 0; i < 4; i++) cnn_tensor_free(&ts[i]);
    cnn_dict_destroy(&d);
    cnn_dict_destroy(&d2);
    cnn_sched_plateau_destroy(&pl);
    cnn_sched_plateau_destroy(&pl2);
    cnn_optim_destroy(&opt);
    cnn_optim_destroy(&opt2);
    cnn_model_destroy(&m);
    cnn_model_destroy(&m2);
    cnn_model_destroy(&m3);
    char io[96];
    snprintf(io, sizeof io, "%s/io", g_dir);
    if (entries(io) != 2) broken("%s holds %d files after the run, not 2", io, entries(io));
    return st;
}

/* A ResNet with bottleneck blocks (batch norm, residual joins, fusion) built, summarised,
 * run forward and backward once in training mode and once in evaluation (batch norm folded). */
static cnn_status resnet(double *sum)
{
    cnn_status st = CNN_OK;
    cnn_model *m = NULL;
    cnn_model_summary s = {0};
    cnn_tensor *x = NULL, *a = NULL, *l = NULL, *b = NULL;
    cnn_manual_seed(5);
    TRY(cnn_model_create("resnet18_small", 4, 1, &m));
    TRY(cnn_model_to(m, g_dev));
    TRY(cnn_model_summarize(m, 4, 4, &s));
    char text[64];
    size_t len = cnn_model_summary_format(&s, text, sizeof text);
    TRY(cnn_tensor_normal(CNN_SHAPE(2, 1, 4, 4), 0, 1, g_dev, &x));
    TRY(cnn_model_forward(m, x, true, &a));
    TRY(cnn_mean(a, &l));
    TRY(cnn_backward(l));
    bool was = cnn_is_grad_enabled();
    cnn_set_grad_enabled(false);
    st = cnn_model_forward(m, x, false, &b);
    cnn_set_grad_enabled(was);
    TRY(st);
    *sum = checksum(a) + checksum(b) + (double)len + (double)s.total_macs +
           checksum(cnn_tensor_grad(cnn_dict_at(cnn_model_parameters(m), 0)));
done:
    cnn_tape_reset();
    cnn_model_summary_free(&s);
    cnn_tensor *ts[] = {x, a, l, b};
    for (int i = 0; i < 4; i++) cnn_tensor_free(&ts[i]);
    cnn_model_destroy(&m);
    return st;
}

static char g_first_bad[512]; /* one_epoch's first bad sample, for a failed check's message */

/* Every batch of one epoch from a loader over ds, with the transform tr. */
static cnn_status one_epoch(const cnn_dataset *ds, const cnn_transform *tr, int workers,
                            double *sum, int *bad)
{
    cnn_status st = CNN_OK;
    cnn_loader *ld = NULL;
    cnn_tensor *im = NULL, *lb = NULL;
    cnn_loader_options o = cnn_loader_default_options(ds, true, tr->img_size, 4);
    o.transform = *tr;
    o.num_workers = workers;
    o.device = g_dev;
    o.seed = 11;
    TRY(cnn_loader_create(ds, &o, &ld));
    TRY(cnn_loader_start_epoch(ld, 1));
    for (;;) {
        TRY(cnn_loader_next(ld, &im, &lb));
        if (!im) break;
        *sum += checksum(im);
        cnn_tensor_free(&im);
        cnn_tensor_free(&lb);
    }
    *bad = cnn_loader_num_bad(ld);
    snprintf(g_first_bad, sizeof g_first_bad, "%s", *bad ? cnn_loader_bad_reason(ld, 0) : "");
done:
    cnn_tensor_free(&im);
    cnn_tensor_free(&lb);
    cnn_loader_destroy(&ld);
    return st;
}

/* An IDX dataset (gzip) through the loader, with affine and erasing augmentation. */
static cnn_status idx_data(double *sum)
{
    cnn_status st = CNN_OK;
    cnn_dataset *ds = NULL;
    char img[128], lab[128];
    snprintf(img, sizeof img, "%s/idx/images.gz", g_dir);
    snprintf(lab, sizeof lab, "%s/idx/labels", g_dir);
    TRY(cnn_idx_dataset_create(img, lab, 1, &ds));
    cnn_transform tr = cnn_transform_default(ds, true, 32);
    tr.affine_degrees = 10;
    tr.affine_translate = 0.1f;
    tr.erase_p = 0.5f;
    int bad = 0;
    *sum = 0;
    TRY(one_epoch(ds, &tr, 0, sum, &bad));
    *sum += 1000.0 * bad;
done:
    cnn_dataset_destroy(&ds);
    return st;
}

/* An image folder (PNG, JPEG, BMP, and one file that is not an image) through the loader with
 * crops, flips and colour jitter, decoding on the calling thread (workers 0) or on two workers. */
static cnn_status folder_data_workers(double *sum, int workers)
{
    cnn_status st = CNN_OK;
    cnn_dataset *ds = NULL;
    char root[96];
    snprintf(root, sizeof root, "%s/folder", g_dir);
    TRY(cnn_imagefolder_create(root, "train", 3, &ds));
    cnn_transform tr = cnn_transform_default(ds, true, 12);
    tr.brightness = tr.contrast = tr.saturation = 0.3f;
    int bad = 0;
    *sum = 0;
    TRY(one_epoch(ds, &tr, workers, sum, &bad));
    *sum += 1000.0 * bad;
    if (bad != 1)
        broken("the loader counted %d bad files, not the one planted (the first: %s)", bad,
               g_first_bad);
done:
    cnn_dataset_destroy(&ds);
    return st;
}
static cnn_status folder_data(double *sum) { return folder_data_workers(sum, 0); }
static cnn_status folder_data_threads(double *sum) { return folder_data_workers(sum, 2); }

/* ---- the files the data scenarios read, written before anything is armed ------------------ */
static int setup_files(void)
{
    char p[160];
    snprintf(p, sizeof p, "%s/io", g_dir);
    if (mkdir(p, 0700)) return 0;
    snprintf(p, sizeof p, "%s/idx", g_dir);
    if (mkdir(p, 0700)) return 0;
    enum { N = 10 };
    unsigned char head[16] = {0, 0, 8, 3, 0, 0, 0, N, 0, 0, 0, 28, 0, 0, 0, 28};
    static unsigned char px[N * 28 * 28];
    for (size_t i = 0; i < sizeof px; i++) px[i] = (unsigned char)(i * 37 + i / 29);
    snprintf(p, sizeof p, "%s/idx/images.gz", g_dir);
    gzFile gz = gzopen(p, "wb");
    if (!gz || gzwrite(gz, head, 16) != 16 || gzwrite(gz, px, sizeof px) != (int)sizeof px)
        return 0;
    gzclose(gz);
    unsigned char lhead[8] = {0, 0, 8, 1, 0, 0, 0, N}, lab[N];
    for (int i = 0; i < N; i++) lab[i] = (unsigned char)(i % 10);
    snprintf(p, sizeof p, "%s/idx/labels", g_dir);
    FILE *f = fopen(p, "wb");
    if (!f || fwrite(lhead, 1, 8, f) != 8 || fwrite(lab, 1, N, f) != N) return 0;
    fclose(f);

    static const char *dirs[] = {"folder", "folder/train", "folder/train/ant", "folder/train/bee"};
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s/%s", g_dir, dirs[i]);
        if (mkdir(p, 0700)) return 0;
    }
    static unsigned char rgb[20 * 15 * 3];
    for (size_t i = 0; i < sizeof rgb; i++) rgb[i] = (unsigned char)(i * 13 + i / 45);
    static const char *files[] = {"ant/a.png", "ant/b.jpg", "ant/c.bmp", "bee/d.jpg",
                                  "bee/e.png", "bee/g.png"};
    for (int i = 0; i < 6; i++) {
        snprintf(p, sizeof p, "%s/folder/train/%s", g_dir, files[i]);
        const char *ext = strrchr(p, '.');
        int ok = !strcmp(ext, ".png")   ? stbi_write_png(p, 20, 15, 3, rgb, 60)
                 : !strcmp(ext, ".bmp") ? stbi_write_bmp(p, 20, 15, 3, rgb)
                                        : stbi_write_jpg(p, 20, 15, 3, rgb, 90);
        if (!ok) return 0;
    }
    snprintf(p, sizeof p, "%s/folder/train/bee/f.jpg", g_dir); /* not an image */
    f = fopen(p, "wb");
    if (!f || fputs("this is text, not a JPEG\n", f) < 0) return 0;
    fclose(f);
    return 1;
}

/* ---- the sweep ----------------------------------------------------------------------------- */
static int g_passed, g_failed_count;

/* The bytes live tensors hold on cuda:0 (0 for a CPU pass). */
static size_t device_allocated(void)
{
    cnn_cuda_memory_stats ms = {0};
    if (g_dev.type != CNN_DEVICE_CUDA || cnn_cuda_get_memory_stats(0, &ms) != CNN_OK) return 0;
    return ms.allocated_bytes;
}

/* One run of a scenario with allocation fail_at failing (0: none): the host's fail_at-th, or
 * the GPU's (g_fail_device). *count: the allocations of the kind the run made. */
static cnn_status run_armed(scenario_fn fn, long fail_at, double *sum, long *count)
{
    cnn_cpu_empty_cache(); /* every run starts from the same cold caches */
    if (g_dev.type == CNN_DEVICE_CUDA) (void)cnn_cuda_empty_cache();
    g_broken[0] = 0;
    size_t live = device_allocated();
    long base = g_fail_device ? cnn_emu_alloc_count() : 0;
    char spec[64];
    snprintf(spec, sizeof spec, "%ld,%ld", base + fail_at, g_fail_device == 1 ? 1L << 40 : 1);
    if (g_fail_device && fail_at) setenv("CNN_EMU_FAIL_MALLOC", spec, 1);
    atomic_store(&g_count, 0);
    atomic_store(&g_failed, 0);
    atomic_store(&g_fail_at, g_fail_device ? 0 : fail_at);
    atomic_store(&g_armed, 1);
    cnn_status st = fn(sum);
    atomic_store(&g_armed, 0);
    if (g_fail_device) {
        unsetenv("CNN_EMU_FAIL_MALLOC");
        long made = cnn_emu_alloc_count() - base;
        atomic_store(&g_failed, fail_at > 0 && made >= fail_at);
        atomic_store(&g_count, made);
    }
    if (count) *count = atomic_load(&g_count);
    if (device_allocated() != live)
        broken("tensors of %zu bytes are left on cuda:0 after the run",
               device_allocated() - live);
    return st;
}

static int mentions_memory(const char *msg)
{
    return strcasestr(msg, "memory") != NULL;
}

/* Fails allocation k for every k the clean run makes (every `stride`-th beyond the first 400
 * when there are many; at most `tries` values of k spread over them, for a slow scenario), and
 * checks each outcome. */
static void sweep(const char *name, scenario_fn fn, int tries)
{
    double ref = NAN;
    long n = 0;
    /* A first run makes what a context keeps once made (handles, lazily allocated buffers);
     * the second is the reference. */
    cnn_status st = run_armed(fn, 0, &ref, &n);
    if (st == CNN_OK) st = run_armed(fn, 0, &ref, &n);
    if (st != CNN_OK || g_broken[0]) {
        printf("FAIL %s: the run without failures: %s %s\n", name,
               st ? cnn_last_error() : "", g_broken);
        g_failed_count++;
        return;
    }
    long stride = n > 400 ? 1 + (n - 400) / 400 : 1, first = 400;
    if (tries) {
        first = 0;
        stride = n > tries ? n / tries : 1;
    }
    int problems = 0, absorbed = 0, tried = 0;
    for (long k = 1; k <= n && problems < 5; k += (k < first ? 1 : stride)) {
        double sum = NAN;
        cnn_status s = run_armed(fn, k, &sum, NULL);
        tried++;
        int hit = atomic_load(&g_failed);
        char what[640] = "";
        if (g_broken[0]) {
            snprintf(what, sizeof what, "%s", g_broken);
        } else if (s == CNN_OK && hit && sum != ref) {
            snprintf(what, sizeof what, "the failure was absorbed but the result changed");
        } else if (s != CNN_OK && !hit) {
            snprintf(what, sizeof what, "an error without an allocation failing: %s",
                     cnn_last_error());
        } else if (s != CNN_OK &&
                   (s != CNN_ERR_OUT_OF_MEMORY || !mentions_memory(cnn_last_error()))) {
            snprintf(what, sizeof what, "%s \"%s\" does not say memory ran out",
                     cnn_status_name(s), cnn_last_error());
        }
        absorbed += s == CNN_OK && hit;
        if (!what[0] && __lsan_do_recoverable_leak_check && __lsan_do_recoverable_leak_check())
            snprintf(what, sizeof what, "memory leaked (LeakSanitizer's report above)");
        if (!what[0]) {
            double again = NAN;
            cnn_status s2 = run_armed(fn, 0, &again, NULL);
            if (s2 != CNN_OK)
                snprintf(what, sizeof what, "the run after it failed: %s", cnn_last_error());
            else if (again != ref)
                snprintf(what, sizeof what, "the run after it gave another result (%.9g, not %.9g)",
                         again, ref);
        }
        if (what[0]) {
            printf("  %s, allocation %ld of %ld failed: %s\n", name, k, n, what);
            problems++;
        }
    }
    if (problems) {
        printf("FAIL %s (%d problems shown)\n", name, problems);
        g_failed_count++;
    } else {
        printf("ok   %s: %ld allocations, %d failed one at a time (%d absorbed)\n", name, n, tried,
               absorbed);
        g_passed++;
    }
    fflush(stdout);
}

int main(int argc, char **argv)
{
    /* One thread: the k-th allocation is then the same one in every run. */
    omp_set_num_threads(1);
    snprintf(g_dir, sizeof g_dir, "/tmp/cnn-allocfail-XXXXXX");
    if (!mkdtemp(g_dir) || !setup_files()) {
        fprintf(stderr, "alloc_failures: cannot write the scratch files under /tmp\n");
        return 2;
    }
    static const struct {
        const char *name;
        scenario_fn fn;
        int tries;     /* 0: every allocation (sampled past the first 400) */
        bool cpu_only; /* too slow for the CUDA emulator (about 30 s a run under ASan) */
    } all[] = {{"ops_step", ops_step, 0, false},
               {"model_io", model_io, 0, false},
               {"resnet", resnet, 60, true},
               {"idx_data", idx_data, 0, false},
               {"folder_data", folder_data, 0, false},
               {"folder_data_threads", folder_data_threads, 0, false}};
    /* Every scenario on the CPU, then on cuda:0 if there is one (on the CUDA emulator too: the
     * library's host code for the GPU is what fails there). */
    int n_dev = cnn_cuda_device_count() > 0 ? 2 : 1;
    cnn_context *gpu = NULL;
    if (n_dev == 2 && cnn_context_create(CNN_CUDA(0), &gpu) != CNN_OK) {
        fprintf(stderr, "alloc_failures: cuda:0: %s\n", cnn_last_error());
        return 2;
    }
    /* Deterministic algorithms only, so that a run gives the same bits every time: cuDNN's
     * others (atomics) need not. */
    cnn_context_set_current(gpu);
    if (gpu) cnn_set_deterministic(true);
    /* --at K NAME: one run with allocation K failing, and what it returned (to look into a
     * problem the sweep showed). */
    bool at = argc == 4 && !strcmp(argv[1], "--at");
    if (!at && !__lsan_do_recoverable_leak_check)
        printf("(not an ASan build: leaks are not checked; build with DEBUG=1 for that)\n");
    int found = 0;
    /* Passes: the CPU; cuda:0 with host allocations failing; cuda:0 with the GPU's failing,
     * from the k-th on and the k-th alone (the emulator's only: it can count them). */
    int n_pass = n_dev == 2 ? (cnn_emu_alloc_count ? 4 : 2) : 1;
    static const char *const suffix[4] = {"", "@cuda:0", "@cuda:0/gpu-full", "@cuda:0/gpu-once"};
    for (int pass = 0; pass < n_pass; pass++) {
        int dv = pass > 0;
        g_dev = dv ? CNN_CUDA(0) : CNN_CPU;
        g_fail_device = pass >= 2 ? pass - 1 : 0;
        cnn_context_set_current(dv ? gpu : NULL);
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
            if (dv && all[i].cpu_only) continue;
            char name[64];
            snprintf(name, sizeof name, "%s%s", all[i].name, suffix[pass]);
            if (at) {
                if (strcmp(name, argv[3])) continue;
                found = 1;
                double sum = NAN; /* first a clean run, as the sweep makes */
                cnn_status st = run_armed(all[i].fn, 0, &sum, NULL);
                if (st == CNN_OK) st = run_armed(all[i].fn, atol(argv[2]), &sum, NULL);
                printf("%s with allocation %s failing: %s \"%s\", result %.9g%s%s\n", name,
                       argv[2], cnn_status_name(st), st ? cnn_last_error() : "", sum,
                       g_broken[0] ? "; " : "", g_broken);
                continue;
            }
            int chosen = argc < 2;
            for (int a = 1; a < argc; a++) chosen |= strstr(name, argv[a]) != NULL;
            if (chosen) sweep(name, all[i].fn, all[i].tries);
            found |= chosen;
        }
    }
    cnn_context_set_current(NULL);
    cnn_context_destroy(&gpu);
    if (!found) fprintf(stderr, "alloc_failures: no scenario's name is or contains '%s'\n",
                        argv[at ? 3 : 1]);
    char cmd[96];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "alloc_failures: could not remove %s\n", g_dir);
    if (at || !found) return found ? 0 : 2;
    printf("%d passed, %d failed\n", g_passed, g_failed_count);
    return g_failed_count ? 1 : 0;
}
