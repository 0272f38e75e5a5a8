/* fuzz_readers.c — libFuzzer targets for everything that reads a file a user hands us: the JSON
 * of a safetensors header, safetensors files, IDX datasets, images in a folder dataset (decode
 * and every augmentation step) and training checkpoints (model, options, progress, optimizer
 * and scheduler state). Run through scripts/fuzz.sh, which builds this with clang under
 * ASan/UBSan; not part of `make test`.
 *
 * One binary serves every target: FUZZ_TARGET names it. FUZZ_SEEDS=DIR makes the binary write
 * that target's seed inputs into DIR and exit. The checkpoint target fuzzes only the header:
 * each input is a JSON header put in front of the tensor bytes of FUZZ_CHECKPOINT (a real
 * checkpoint of a LeNet-5 run), whose header is the seed. */
#include "cnncuda.h"
#include "checkpoint.h"
#include "json.h"

#include <stb/stb_image_write.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

static char g_dir[256];            /* this process's scratch folder */
static unsigned char *g_blob;      /* FUZZ_CHECKPOINT's tensor bytes */
static size_t g_blob_n;

static void put_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n) {
        fprintf(stderr, "fuzz: cannot write %s\n", path);
        abort();
    }
    fclose(f);
}

static unsigned char *get_file(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    rewind(f);
    unsigned char *p = malloc(*n ? *n : 1);
    if (p && fread(p, 1, *n, f) != *n) {
        free(p);
        p = NULL;
    }
    fclose(f);
    return p;
}

/* ---- targets ------------------------------------------------------------------------------ */
static void fuzz_json(const uint8_t *d, size_t n)
{
    cnn_json *j = NULL;
    if (cnn_json_parse((const char *)d, n, 16, 4096, &j) == CNN_OK) cnn_json_free(&j);
}

static void fuzz_safetensors(const uint8_t *d, size_t n)
{
    char path[300];
    snprintf(path, sizeof path, "%s/x.safetensors", g_dir);
    put_file(path, d, n);
    cnn_dict *dict = NULL;
    if (cnn_safetensors_load(path, &dict) == CNN_OK) cnn_dict_destroy(&dict);
}

/* Input: a 2-byte little-endian length k, then the images file, then the labels file (the
 * last k bytes). Three samples are fetched through the training transform. */
static void fuzz_idx(const uint8_t *d, size_t n)
{
    if (n < 2) return;
    size_t k = d[0] + (size_t)d[1] * 256;
    d += 2;
    n -= 2;
    if (k > n) k = n;
    char pi[300], pl[300];
    snprintf(pi, sizeof pi, "%s/images", g_dir);
    snprintf(pl, sizeof pl, "%s/labels", g_dir);
    put_file(pi, d, n - k);
    put_file(pl, d + n - k, k);
    cnn_dataset *ds = NULL;
    if (cnn_idx_dataset_create(pi, pl, 1, &ds) != CNN_OK) return;
    cnn_transform t = cnn_transform_default(ds, true, 0);
    t.affine_degrees = 15;
    t.erase_p = 0.5f;
    int s = cnn_transform_output_size(ds, &t);
    float *out = s > 0 && s <= 1024 ? malloc(sizeof(float) * (size_t)s * (size_t)s) : NULL;
    for (int64_t i = 0; out && i < cnn_dataset_size(ds) && i < 3; i++)
        cnn_dataset_get(ds, i, &t, 1, 0, out, NULL);
    free(out);
    cnn_dataset_destroy(&ds);
}

/* Input: one image file, fetched as gray and as RGB, in training (every augmentation on) and
 * in evaluation. */
static void fuzz_image(const uint8_t *d, size_t n)
{
    char path[300];
    snprintf(path, sizeof path, "%s/root/train/a/x.jpg", g_dir);
    put_file(path, d, n);
    snprintf(path, sizeof path, "%s/root", g_dir);
    float out[3 * 24 * 24];
    for (int ch = 1; ch <= 3; ch += 2) {
        cnn_dataset *ds = NULL;
        if (cnn_imagefolder_create(path, "train", ch, &ds) != CNN_OK) abort(); /* the file exists */
        for (int train = 0; train < 2; train++) {
            cnn_transform t = cnn_transform_default(ds, train, 24);
            t.brightness = t.contrast = t.saturation = 0.4f;
            t.affine_degrees = 10;
            t.affine_translate = 0.1f;
            t.erase_p = 0.5f;
            cnn_dataset_get(ds, 0, &t, 7, 0, out, NULL);
        }
        cnn_dataset_destroy(&ds);
    }
}

/* Input: a checkpoint's JSON header, over FUZZ_CHECKPOINT's tensor bytes; what the training
 * tool does on --resume, up to the optimizer and scheduler state. */
static void fuzz_checkpoint(const uint8_t *d, size_t n)
{
    char path[300], err[2048];
    snprintf(path, sizeof path, "%s/x.safetensors", g_dir);
    FILE *f = fopen(path, "wb");
    uint64_t len = n; /* little-endian machine, as safetensors' length is */
    if (!f || fwrite(&len, 8, 1, f) != 1 || fwrite(d, 1, n, f) != n ||
        fwrite(g_blob, 1, g_blob_n, f) != g_blob_n)
        abort();
    fclose(f);
    cnn_dict *dict = NULL;
    cnn_model *model = NULL;
    tr_model_meta mm = {0};
    tr_state st = {0};
    train_opts o;
    tr_opts_defaults(&o);
    if (!tr_checkpoint_open(path, &dict, &mm, err, sizeof err) ||
        !tr_opts_from_meta(&o, dict, true, err, sizeof err, NULL, 0) || !tr_opts_validate(&o, err, sizeof err))
        goto out;
    /* Other models are as valid, but creating a ResNet-152 per input would be all we did. */
    if (strcmp(mm.model, "lenet5") || mm.num_classes > 100) goto out;
    if (cnn_model_create(mm.model, mm.num_classes, mm.in_channels, &model) != CNN_OK ||
        !tr_checkpoint_load_model(model, dict, err, sizeof err) ||
        !tr_checkpoint_state(dict, &st, err, sizeof err))
        goto out;
    cnn_optim_kind kind = !strcmp(o.optimizer, "sgd")    ? CNN_OPTIM_SGD
                          : !strcmp(o.optimizer, "adam") ? CNN_OPTIM_ADAM
                                                         : CNN_OPTIM_ADAMW;
    cnn_optim_config c = cnn_optim_defaults(kind);
    cnn_optim *opt = NULL;
    if (cnn_optim_create(&c, &opt) == CNN_OK) {
        cnn_dict *p = cnn_model_parameters(model);
        for (int i = 0; i < cnn_dict_size(p); i++)
            cnn_optim_add_param(opt, cnn_dict_name(p, i), cnn_dict_at(p, i), true);
        cnn_optim_load_state_dict(opt, dict);
        cnn_optim_destroy(&opt);
    }
    cnn_plateau_config pc = cnn_sched_plateau_defaults();
    cnn_plateau *plateau = NULL;
    if (cnn_sched_plateau_create(&pc, 0.1, &plateau) == CNN_OK) {
        cnn_sched_plateau_load_state_dict(plateau, dict);
        cnn_sched_plateau_destroy(&plateau);
    }
out:
    tr_history_free(&st.history);
    cnn_model_destroy(&model);
    tr_model_meta_free(&mm);
    cnn_dict_destroy(&dict);
}

/* ---- seeds -------------------------------------------------------------------------------- */
static void seed(const char *dir, const char *name, const void *p, size_t n)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    put_file(path, p, n);
}

/* A small safetensors file written by the library itself: tensors of two dtypes and shapes
 * (an empty one included) and metadata. Returns its bytes. */
static unsigned char *safetensors_seed(size_t *n)
{
    char path[300];
    snprintf(path, sizeof path, "%s/seed.safetensors", g_dir);
    cnn_dict *d = NULL;
    cnn_tensor *a = NULL, *b = NULL, *e = NULL;
    const float av[6] = {1, 2, 3, 4, 5, 6};
    if (cnn_dict_create(&d) != CNN_OK ||
        cnn_tensor_from_data(CNN_SHAPE(2, 3), av, CNN_CPU, &a) != CNN_OK ||
        cnn_tensor_zeros(CNN_SHAPE(4), CNN_CPU, &b) != CNN_OK ||
        cnn_tensor_empty(CNN_SHAPE(0, 3), CNN_I64, CNN_CPU, &e) != CNN_OK ||
        cnn_dict_set(d, "layer.weight", a) != CNN_OK ||
        cnn_dict_set(d, "layer.bias", b) != CNN_OK || cnn_dict_set(d, "empty", e) != CNN_OK ||
        cnn_dict_set_meta(d, "format", "pt") != CNN_OK || cnn_safetensors_save(path, d) != CNN_OK) {
        fprintf(stderr, "fuzz: seed: %s\n", cnn_last_error());
        abort();
    }
    cnn_tensor_free(&a);
    cnn_tensor_free(&b);
    cnn_tensor_free(&e);
    cnn_dict_destroy(&d);
    return get_file(path, n);
}

static void idx_seed(const char *dir, const char *name, int count, int rows, int cols, bool gz)
{
    size_t ni = 16 + (size_t)count * rows * cols, nl = 8 + (size_t)count;
    unsigned char *img = calloc(ni, 1), *lab = calloc(nl, 1);
    const unsigned char hi[4] = {0, 0, 8, 3}, hl[4] = {0, 0, 8, 1};
    memcpy(img, hi, 4);
    memcpy(lab, hl, 4);
    const int dims[3] = {count, rows, cols};
    for (int k = 0; k < 3; k++)
        for (int b = 0; b < 4; b++) img[4 + 4 * k + b] = (unsigned char)(dims[k] >> (24 - 8 * b));
    memcpy(lab + 4, img + 4, 4);
    for (size_t i = 16; i < ni; i++) img[i] = (unsigned char)(i * 37);
    for (int i = 0; i < count; i++) lab[8 + i] = (unsigned char)(i % 10);
    unsigned char *in = malloc(2 + 2 * (ni + nl) + 64);
    size_t li = ni, ll = nl;
    unsigned char *pi = img, *pl = lab, *zi = NULL, *zl = NULL;
    if (gz) { /* gzip members, as the .gz files of the datasets are */
        char path[300];
        snprintf(path, sizeof path, "%s/seed.gz", g_dir);
        gzFile f = gzopen(path, "wb");
        gzwrite(f, img, (unsigned)ni);
        gzclose(f);
        pi = zi = get_file(path, &li);
        f = gzopen(path, "wb");
        gzwrite(f, lab, (unsigned)nl);
        gzclose(f);
        pl = zl = get_file(path, &ll);
    }
    in[0] = (unsigned char)(ll & 255);
    in[1] = (unsigned char)(ll >> 8);
    memcpy(in + 2, pi, li);
    memcpy(in + 2 + li, pl, ll);
    seed(dir, name, in, 2 + li + ll);
    free(zi);
    free(zl);
    free(in);
    free(img);
    free(lab);
}

static void write_seeds(const char *target, const char *dir)
{
    if (!strcmp(target, "json") || !strcmp(target, "safetensors")) {
        size_t n;
        unsigned char *p = safetensors_seed(&n);
        uint64_t h = 0;
        memcpy(&h, p, 8);
        if (!strcmp(target, "json")) {
            seed(dir, "header", p + 8, (size_t)h);
            const char *s =
                "[1, -2.5e3, \"a\\u00e9\\ud83d\\ude00\", true, false, null, {\"k\": []}]";
            seed(dir, "values", s, strlen(s));
        } else {
            seed(dir, "file", p, n);
        }
        free(p);
    } else if (!strcmp(target, "idx")) {
        idx_seed(dir, "plain", 2, 28, 28, false);
        idx_seed(dir, "gzip", 3, 5, 7, true);
    } else if (!strcmp(target, "image")) {
        unsigned char px[13 * 10 * 4];
        for (size_t i = 0; i < sizeof px; i++) px[i] = (unsigned char)(i * 101 + (i >> 3));
        char path[600];
        for (int comp = 1; comp <= 4; comp++) {
            snprintf(path, sizeof path, "%s/c%d.png", dir, comp);
            stbi_write_png(path, 13, 10, comp, px, 13 * comp);
            snprintf(path, sizeof path, "%s/c%d.bmp", dir, comp);
            stbi_write_bmp(path, 13, 10, comp, px);
            snprintf(path, sizeof path, "%s/c%d.jpg", dir, comp);
            stbi_write_jpg(path, 13, 10, comp, px, 60);
        }
        /* Netpbm: raw 8- and 16-bit, plain, and both bitmaps. */
        static const char *const pnm[][2] = {
            {"raw.ppm", "P6\n# c\n3 2\n255\n"}, {"wide.pgm", "P5 3 2 1023\n"},
            {"plain.ppm", "P3 2 1 15 0 1 2 3 4 15\n"}, {"raw.pbm", "P4 13 2\n"},
            {"plain.pbm", "P1 3 2 010\n1 1 0\n"}};
        for (int k = 0; k < 5; k++) {
            unsigned char f[64];
            const size_t h = strlen(pnm[k][1]), raster = k < 2 ? 18 : k == 3 ? 4 : 0;
            memcpy(f, pnm[k][1], h);
            memcpy(f + h, px, raster);
            seed(dir, pnm[k][0], f, h + raster);
        }
    } /* checkpoint: its seed, the header, was written by LLVMFuzzerInitialize */
}

/* ---- libFuzzer entry points --------------------------------------------------------------- */
typedef void (*target_fn)(const uint8_t *, size_t);
static target_fn g_target;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *t = getenv("FUZZ_TARGET"), *seeds = getenv("FUZZ_SEEDS");
    static const struct { const char *name; target_fn fn; } targets[] = {
        {"json", fuzz_json},   {"safetensors", fuzz_safetensors}, {"idx", fuzz_idx},
        {"image", fuzz_image}, {"checkpoint", fuzz_checkpoint}};
    for (size_t i = 0; t && i < sizeof targets / sizeof *targets; i++)
        if (!strcmp(t, targets[i].name)) g_target = targets[i].fn;
    if (!g_target) {
        fprintf(stderr, "fuzz: set FUZZ_TARGET to json, safetensors, idx, image or checkpoint\n");
        exit(2);
    }
    snprintf(g_dir, sizeof g_dir, "%s/cnn-fuzz-%d", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp",
             (int)getpid());
    char p[300];
    mkdir(g_dir, 0755);
    snprintf(p, sizeof p, "%s/root", g_dir);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/root/train", g_dir);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/root/train/a", g_dir);
    mkdir(p, 0755);
    if (g_target == fuzz_checkpoint) {
        const char *ck = getenv("FUZZ_CHECKPOINT");
        size_t n = 0;
        unsigned char *file = ck ? get_file(ck, &n) : NULL;
        uint64_t h = 0;
        if (file && n >= 8) memcpy(&h, file, 8);
        if (!file || n < 8 || h > n - 8) {
            fprintf(stderr, "fuzz: FUZZ_CHECKPOINT must name a checkpoint file\n");
            exit(2);
        }
        g_blob_n = n - 8 - (size_t)h;
        g_blob = malloc(g_blob_n ? g_blob_n : 1);
        memcpy(g_blob, file + 8 + h, g_blob_n);
        if (seeds) seed(seeds, "header", file + 8, (size_t)h);
        free(file);
    }
    if (seeds) {
        write_seeds(t, seeds);
        exit(0);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    g_target(d, n);
    return 0;
}
