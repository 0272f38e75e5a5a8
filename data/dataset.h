/* dataset.h — what the dataset kinds (idx.c, imagefolder.c) share with the per-sample pipeline
 * (augment.c) and the loader (loader.c): the dataset struct and its decode hook. Private to
 * data/; users only see the opaque cnn_dataset of cnncuda.h. */
#ifndef CNN_DATA_DATASET_H
#define CNN_DATA_DATASET_H

#include "internal.h"

#include <math.h>

/* A decoded image: h rows of w pixels of `channels` interleaved bytes (HWC). `owned` says
 * whether pix must be freed (with free) after use; IDX images point into the loaded file. */
typedef struct cnn_image_u8 {
    unsigned char *pix;
    int h, w, channels;
    bool owned;
} cnn_image_u8;

typedef struct cnn_dataset_ops {
    /* Decodes sample i with ds->channels channels. Fails with IO / FORMAT naming the file, or
     * OUT_OF_MEMORY; sets *process_fault for an IO failure that is the process's, not the
     * file's (out of file descriptors). */
    cnn_status (*decode)(const cnn_dataset *ds, int64_t i, cnn_image_u8 *img,
                         bool *process_fault);
    /* Writes the sample's name (a path, or "file[i]") into buf. */
    void (*sample_name)(const cnn_dataset *ds, int64_t i, char *buf, size_t n);
    /* Frees what impl holds (the common fields are freed by cnn_dataset_destroy). */
    void (*destroy_impl)(void *impl);
} cnn_dataset_ops;

struct cnn_dataset {
    const cnn_dataset_ops *ops;
    void *impl;
    int64_t n;
    int num_classes;
    int channels;
    char **class_names;      /* num_classes strings */
    int64_t *labels;         /* n labels */
    int native_h, native_w;  /* 0 when images differ in size */
    float mean[3], std[3];
    char **warnings;
    int n_warnings;
};

/* A zeroed dataset with ops set, or NULL (out of memory). */
cnn_dataset *cnn_dataset_alloc(const cnn_dataset_ops *ops);
/* Appends a formatted warning (dropped silently if memory runs out: warnings are advisory). */
void cnn_dataset_warn(cnn_dataset *ds, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* cnn_dataset_get, also saying whether a failure is the sample's (its file cannot be read or
 * decoded: a bad sample, which the loader may skip) or the process's (out of memory or file
 * descriptors: the loader's call fails, strict or not). */
cnn_status cnn_dataset_fetch(const cnn_dataset *ds, int64_t i, const cnn_transform *t,
                             uint64_t seed, int64_t epoch, float *out, int64_t *label,
                             bool *bad_sample);
/* Checks a transform's fields against a dataset (ranges, std > 0 per channel). */
cnn_status cnn_transform_check(const cnn_dataset *ds, const cnn_transform *t);
/* strdup that reports out of memory as a status. */
cnn_status cnn_data_strdup(const char *s, const char *what, char **out);

/* image_decode.c: stb_image's JPEG, PNG and BMP decoders with zero-filled allocations, and
 * image_pnm.c's PBM/PGM/PPM. Why a file's content must not reach them (NULL when it may); the
 * header's size (false if unreadable); the pixels as channels x uint8, interleaved (NULL with a
 * reason in *why: CNN_IMAGE_OUT_OF_MEMORY when memory ran out, which says nothing about the
 * file), released with free() or cnn_image_free. */
#define CNN_IMAGE_OUT_OF_MEMORY "out of memory"

/* The random streams of the data pipeline: Philox keyed by the seed tagged, so that neither
 * draws the words of the context's stream (weights, dropout), which the training tool seeds
 * with the same number. The augmentation: 256 counters per sample from
 * cnn_augment_counter(epoch, index); the loader's shuffle: counters from epoch << 40. */
#define CNN_AUGMENT_TAG 0x4155474D454E54ull /* "AUGMENT" */
#define CNN_SHUFFLE_TAG 0x53485546464C45ull /* "SHUFFLE" */
static inline uint64_t cnn_augment_counter(int64_t epoch, int64_t i)
{
    return ((uint64_t)epoch << 40) + ((uint64_t)i << 8);
}
const char *cnn_image_refusal(const unsigned char *file, size_t len);
bool cnn_image_info(const unsigned char *file, size_t len, int *w, int *h);
unsigned char *cnn_image_decode(const unsigned char *file, size_t len, int channels, int *w,
                                int *h, const char **why);
void cnn_image_free(unsigned char *pix);

/* image_pnm.c: the same for Netpbm files ("P1".."P6" and a blank: cnn_pnm_is). Decoded to
 * channels 0 (as the file has them), 1 or 3; *native: the channels pix holds (3 for a PPM asked
 * for 1, which the caller makes gray); malloc'd. */
bool cnn_pnm_is(const unsigned char *file, size_t len);
const char *cnn_pnm_refusal(const unsigned char *file, size_t len);
bool cnn_pnm_info(const unsigned char *file, size_t len, int *w, int *h);
unsigned char *cnn_pnm_decode(const unsigned char *file, size_t len, int channels, int *w,
                              int *h, int *native, const char **why);

/* resample.c: resizes the h x w window at src (rows `stride` bytes apart, C interleaved
 * channels) to oh x ow as PIL's BILINEAR resize does (torchvision's Resize and
 * RandomResizedCrop), into dst (oh * ow * C bytes). box (y0, x0, y1, x1), in source pixels,
 * picks the part that spans the output (PIL's `box`; NULL: the whole window); the filter reads
 * the window only. */
cnn_status cnn_image_resample(const unsigned char *src, int h, int w, size_t stride, int C,
                              const double *box, unsigned char *dst, int oh, int ow);

#endif /* CNN_DATA_DATASET_H */
