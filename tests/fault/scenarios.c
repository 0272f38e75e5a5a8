/* scenarios.c — what fault_sweep.c runs with a failure planted: ops and autograd with SGD and
 * AdamW, LeNet-5 checkpoints through safetensors (with optimizer and scheduler state, and as
 * pretrained weights), a ResNet built and run, an IDX loader, and an image-folder loader on the
 * calling thread, on two workers, and asked again after a failed batch, over files setup_files
 * writes. Each checks the promises the API makes for a failed call (parameters, models and old
 * files untouched, an optimizer or scheduler whose load failed as it was, no stray files, a
 * retried batch the same). */
#include "scenarios.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include <stb/stb_image_write.h>

char g_dir[64];
cnn_device g_dev;
char g_broken[512];
char g_extra_bad[2048];

void broken(const char *fmt, ...)
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
cnn_status ops_step(double *sum)
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
    fault_pause();
    FILE *f = fopen(path, "wb");
    if (f) {
        fputs("old", f);
        fclose(f);
    }
    fault_resume();
}

static int is_old(const char *path)
{
    char b[8] = {0};
    fault_pause();
    FILE *f = fopen(path, "rb");
    size_t n = f ? fread(b, 1, sizeof b - 1, f) : 0;
    if (f) fclose(f);
    fault_resume();
    return n == 3 && !strcmp(b, "old");
}

static int entries(const char *dir)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "ls -A %s | wc -l", dir);
    fault_pause();
    FILE *p = popen(cmd, "r");
    int n = -1;
    if (p) {
        if (fscanf(p, "%d", &n) != 1) n = -1;
        pclose(p);
    }
    fault_resume();
    return n;
}

/* A LeNet-5 training step, then its weights and its optimizer's and scheduler's state through
 * safetensors files into a second model and optimizer, and the weights as pretrained ones into a
 * third model, then as F16 into that one again. */
cnn_status model_io(double *sum)
{
    cnn_status st = CNN_OK;
    cnn_model *m = NULL, *m2 = NULL, *m3 = NULL;
    cnn_optim *opt = NULL, *opt2 = NULL;
    cnn_plateau *pl = NULL, *pl2 = NULL;
    cnn_dict *d = NULL, *d2 = NULL, *d3 = NULL;
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
    /* The one exception the API states: only the folder's fsync failed, after the rename. */
    bool in_place = st != CNN_OK && strstr(cnn_last_error(), "the new file is in place");
    if (st != CNN_OK && !in_place && !is_old(wpath))
        broken("a failed cnn_model_save did not keep the old file");
    TRY(st);
    TRY(cnn_dict_create(&d));
    st = cnn_optim_state_dict(opt, d);
    if (st != CNN_OK && (cnn_dict_size(d) || cnn_dict_meta_size(d)))
        broken("a failed cnn_optim_state_dict left part of the state in the dict");
    TRY(st);
    const int n_state = cnn_dict_size(d), n_meta = cnn_dict_meta_size(d);
    st = cnn_sched_plateau_state_dict(pl, d);
    if (st != CNN_OK && (cnn_dict_size(d) != n_state || cnn_dict_meta_size(d) != n_meta))
        broken("a failed cnn_sched_plateau_state_dict changed the dict");
    TRY(st);
    st = cnn_safetensors_save(spath, d);
    in_place = st != CNN_OK && strstr(cnn_last_error(), "the new file is in place");
    if (st != CNN_OK && !in_place && !is_old(spath))
        broken("a failed cnn_safetensors_save changed the file");
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
    /* m's weights in F16, converted back to F32 as they load into m3. */
    TRY(cnn_dict_create(&d3));
    for (int i = 0; i < cnn_dict_size(cnn_model_state(m)); i++) {
        cnn_tensor *host = NULL, *half = NULL;
        st = cnn_tensor_to(cnn_dict_at(cnn_model_state(m), i), CNN_CPU, &host);
        if (st == CNN_OK) st = cnn_tensor_to_dtype(host, CNN_F16, &half);
        if (st == CNN_OK) st = cnn_dict_set(d3, cnn_dict_name(cnn_model_state(m), i), half);
        cnn_tensor_free(&host);
        cnn_tensor_free(&half);
        TRY(st);
    }
    double before = dict_checksum(cnn_model_state(m3));
    st = cnn_dict_load(cnn_model_state(m3), d3, true, NULL);
    if (st != CNN_OK && dict_checksum(cnn_model_state(m3)) != before)
        broken("a failed cnn_dict_load of F16 weights changed the model");
    TRY(st);
    TRY(cnn_safetensors_load(spath, &d2));
    TRY(cnn_optim_create(&cfg, &opt2));
    TRY(cnn_optim_add_dict(opt2, cnn_model_parameters(m2), false));
    st = cnn_optim_load_state_dict(opt2, d2);
    if (st != CNN_OK && (cnn_optim_step_count(opt2) != 0 || cnn_optim_get_lr(opt2) != cfg.lr))
        broken("a failed cnn_optim_load_state_dict changed the optimizer");
    TRY(st);
    TRY(cnn_sched_plateau_create(&pc, 1.0f, &pl2));
    st = cnn_sched_plateau_load_state_dict(pl2, d2);
    if (st != CNN_OK && cnn_sched_plateau_get_lr(pl2) != 1.0f)
        broken("a failed cnn_sched_plateau_load_state_dict changed the scheduler");
    TRY(st);
    *sum = dict_checksum(cnn_model_state(m2)) + dict_checksum(cnn_model_state(m3)) +
           pr.n_loaded + cnn_optim_get_lr(opt2) +
           (double)cnn_optim_step_count(opt2) + cnn_sched_plateau_get_lr(pl2);
done:
    cnn_tape_reset();
    cnn_tensor *ts[] = {x, y, logits, loss};
    for (int i = 0; i < 4; i++) cnn_tensor_free(&ts[i]);
    cnn_dict_destroy(&d);
    cnn_dict_destroy(&d2);
    cnn_dict_destroy(&d3);
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
cnn_status resnet(double *sum)
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

/* Every batch of one epoch from a loader over ds, with the transform tr; *bad: the bad files
 * listed, and those other than the planted one (".../f.jpg") in g_extra_bad. With `retry`, a
 * failed cnn_loader_next (which must name its cause) is called again once: the loader promises
 * the same batch, so the epoch must give the same result as one without a failure. */
static cnn_status one_epoch(const cnn_dataset *ds, const cnn_transform *tr, int workers,
                            bool retry, double *sum, int *bad)
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
        st = cnn_loader_next(ld, &im, &lb);
        if (st != CNN_OK && retry) {
            retry = false;
            if (!fault_names_the_cause(st, cnn_last_error()))
                broken("cnn_loader_next: %s \"%s\" does not name the cause", cnn_status_name(st),
                       cnn_last_error());
            continue;
        }
        TRY(st);
        if (!im) break;
        *sum += checksum(im);
        cnn_tensor_free(&im);
        cnn_tensor_free(&lb);
    }
    *bad = cnn_loader_num_bad(ld);
    for (int i = 0; i < *bad; i++) {
        const char *name = cnn_loader_bad_name(ld, i);
        size_t len = strlen(name), used = strlen(g_extra_bad);
        if (len >= 6 && !strcmp(name + len - 6, "/f.jpg")) continue;
        snprintf(g_extra_bad + used, sizeof g_extra_bad - used, "%s: %s\n", name,
                 cnn_loader_bad_reason(ld, i));
    }
done:
    cnn_tensor_free(&im);
    cnn_tensor_free(&lb);
    cnn_loader_destroy(&ld);
    return st;
}

/* An IDX dataset (gzip) through the loader, with affine and erasing augmentation. */
cnn_status idx_data(double *sum)
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
    TRY(one_epoch(ds, &tr, 0, false, sum, &bad));
    *sum += 1000.0 * bad;
done:
    cnn_dataset_destroy(&ds);
    return st;
}

/* An image folder (PNG, JPEG, BMP, and one file that is not an image) through the loader with
 * crops, flips and colour jitter, decoding on the calling thread (workers 0) or on two workers;
 * with `retry`, a failed batch is asked for again. */
static cnn_status folder_data_workers(double *sum, int workers, bool retry)
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
    TRY(one_epoch(ds, &tr, workers, retry, sum, &bad));
    *sum += 1000.0 * bad;
    int extra = 0;
    for (const char *c = g_extra_bad; *c; c++) extra += *c == '\n';
    if (bad - extra != 1) broken("the loader did not list the bad file planted (f.jpg)");
done:
    cnn_dataset_destroy(&ds);
    return st;
}
cnn_status folder_data(double *sum) { return folder_data_workers(sum, 0, false); }
cnn_status folder_data_threads(double *sum) { return folder_data_workers(sum, 2, false); }
cnn_status folder_data_retry(double *sum) { return folder_data_workers(sum, 2, true); }

/* ---- the files the data scenarios read, written before anything is armed ------------------ */
int setup_files(void)
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

