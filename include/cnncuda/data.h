/* cnncuda/data.h — datasets (IDX, image folders), transforms and augmentation, the
 * threaded loader.
 * A part of the public API: users include cnncuda.h, which includes every part and states
 * the ownership, error and thread rules. */
#ifndef CNNCUDA_DATA_H
#define CNNCUDA_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------
 * Datasets and data loading (data/). A dataset maps an index to (image, label); a transform
 * turns the decoded image into a normalised (C, H, W) float image; a loader shuffles, decodes
 * on worker threads and hands out batches (on the CPU, or copied ahead to a CUDA device). All
 * randomness comes from (seed, epoch, sample index), so a seed gives the same batches whatever
 * the number of workers.
 * ---------------------------------------------------------------------------------------- */
typedef struct cnn_dataset cnn_dataset;

/* IDX files (MNIST layout), plain or gzip: images (N, rows, cols) ubyte and labels (N) ubyte.
 * Everything is read and validated up front (magic, dims, sizes, same N in both files); a bad
 * file gives CNN_ERR_IO / CNN_ERR_FORMAT naming it. num_classes = max label + 1; mean/std
 * computed over all pixels. channels: 1 (the stored gray), or 3 to repeat the gray plane. */
cnn_status cnn_idx_dataset_create(const char *images_path, const char *labels_path, int channels,
                                  cnn_dataset **out);
/* Fashion-MNIST from root (NULL: $CNN_FASHION_MNIST_DIR, else /usr/share/datasets/fashion-mnist,
 * where Debian's dataset-fashion-mnist puts it) holding
 * {train,t10k}-{images-idx3,labels-idx1}-ubyte.gz: the train (60,000) or test (10,000) split,
 * with its 10 class names and the train split's mean/std (0.2860, 0.3530) for both splits. */
cnn_status cnn_fashion_mnist_create(const char *root, bool train, int channels, cnn_dataset **out);
/* An ImageNet-style folder ROOT/<split>/<class>/<image files> (split e.g. "train" or "val").
 * Classes are the sub-folders sorted by name as Python sorts them (by code point of the UTF-8
 * name, a byte outside valid UTF-8 as U+DC00 + byte), labels 0..K-1 in that order. A class's
 * files are those in its folder and in every folder below it (links followed, but not one back
 * to a folder above), in torchvision ImageFolder's order: folder by folder in the order of
 * their paths, files sorted within each. Files without an image extension (jpg jpeg png bmp
 * ppm pgm pbm pnm, any case; torchvision's list leaves out pbm and pnm and has tif, tiff and
 * webp, not read here) are ignored and named in a warning; hidden entries (names starting
 * with '.', such as macOS's ._ files) are skipped. Images are decoded (stb_image; Netpbm files
 * by the library itself) when a sample is fetched, so a bad file shows up then, per sample: only
 * JPEG, PNG, BMP and Netpbm (PBM, PGM, PPM; samples scaled from their maxval to 0..255, a PBM's 1
 * black) content is decoded, told by its first bytes, up to 32768 pixels a side and 2^26 in
 * all. channels: 3 (RGB) or 1 (gray); other
 * channel layouts of the source are converted. Errors: missing root or split folder
 * (CNN_ERR_IO), no class folder or no image at all (CNN_ERR_NOT_FOUND). An empty class folder
 * is allowed and kept (its label exists with no sample) and listed in the warnings. Mean/std
 * are ImageNet's. */
cnn_status cnn_imagefolder_create(const char *root, const char *split, int channels,
                                  cnn_dataset **out);
/* Whether an image folder lists a file of this name (an image extension, any case). */
bool cnn_imagefolder_is_image_name(const char *file_name);
void cnn_dataset_destroy(cnn_dataset **ds);

/* Number of samples and of classes (0 for NULL). */
int64_t cnn_dataset_size(const cnn_dataset *ds);
int cnn_dataset_num_classes(const cnn_dataset *ds);
/* Name of class i (a folder name, or Fashion-MNIST's "T-shirt/top" ...), borrowed; NULL when
 * out of range. */
const char *cnn_dataset_class_name(const cnn_dataset *ds, int i);
/* Label of sample i, or -1 when out of range. Needs no decoding. */
int64_t cnn_dataset_label(const cnn_dataset *ds, int64_t i);
/* Channels of every image the dataset hands out (1 or 3). */
int cnn_dataset_channels(const cnn_dataset *ds);
/* Stored image size of datasets that have one (IDX: 28 x 28) in *height, *width (may be NULL);
 * returns the side when square, else 0 (folders: sizes vary, all 0). */
int cnn_dataset_native_size(const cnn_dataset *ds, int *height, int *width);
/* Per-channel mean/std of the pixels scaled to [0, 1] used by the default normalisation (std 1
 * where the pixels do not vary at all, so that normalising only centres them). */
void cnn_dataset_mean_std(const cnn_dataset *ds, float mean[3], float std[3]);
/* Writes a name for sample i (its file path, or "file[i]" for IDX) into buf; returns buf. */
const char *cnn_dataset_sample_name(const cnn_dataset *ds, int64_t i, char *buf, size_t n);
/* Things found while opening the dataset that are not errors (empty class folders, ignored
 * files): count and i-th message (borrowed). */
int cnn_dataset_num_warnings(const cnn_dataset *ds);
const char *cnn_dataset_warning(const cnn_dataset *ds, int i);

/* How a sample becomes a (C, img_size, img_size) float image. Steps in order: geometry ->
 * random affine -> horizontal flip -> colour jitter -> normalise ((x - mean) / std, x in
 * [0, 1]) -> random erasing. The random steps run only when `train` is true. */
typedef enum cnn_geometry {
    /* train: torchvision RandomResizedCrop(img_size, scale, ratio) (10 tries, then centre
     * crop); eval: Resize(round(img_size / eval_crop_ratio)) of the shorter side + CenterCrop */
    CNN_GEOM_CROP = 0,
    /* Zero-pad (centred) up to img_size when the image is smaller by an even amount of at most
     * 8 per axis, 4 a side (28 -> 32 for LeNet), else resize to img_size x img_size (28 -> 64
     * for AlexNet: padded, the image would fill a fifth of it); the same in train and eval */
    CNN_GEOM_PAD_OR_RESIZE = 1
} cnn_geometry;
typedef struct cnn_transform {
    int img_size;            /* output height = width, at most 16384; 0: the dataset's native
                              * size (IDX) */
    bool train;              /* random augmentation on (training) or off (evaluation) */
    cnn_geometry geometry;
    float scale[2];          /* RandomResizedCrop area fraction range (0.08, 1) */
    float ratio[2];          /* RandomResizedCrop aspect range (3/4, 4/3) */
    float eval_crop_ratio;   /* crop / resize ratio in eval (0.875) */
    float hflip_p;           /* probability of a horizontal flip (0.5 for photos, 0 for digits) */
    float brightness, contrast, saturation; /* ColorJitter factors; 0: off */
    float affine_degrees;    /* RandomAffine (nearest neighbour, zero fill, as torchvision's
                              * default): rotation in [-deg, deg]; all three 0: off */
    float affine_translate;  /* max shift as a fraction of the size, per axis */
    float affine_scale[2];   /* scale range; (0, 0) means (1, 1) */
    float mean[3], std[3];   /* per output channel */
    /* torchvision RandomErasing(p, scale, ratio, value=0) after normalising: with probability
     * erase_p, a box of erase_scale of the area and aspect (h / w) in erase_ratio is set to 0
     * (the mean) in every channel. erase_p 0: off; a zero range means the default (0.02, 0.33)
     * for scale, (0.3, 3.3) for ratio. */
    float erase_p;
    float erase_scale[2];
    float erase_ratio[2];
} cnn_transform;
/* The default pipeline for a dataset: folders -> CNN_GEOM_CROP, hflip 0.5 in training, no
 * jitter; IDX -> CNN_GEOM_PAD_OR_RESIZE, no flip, no affine. Mean/std from the dataset.
 * img_size 0 keeps an IDX dataset's native size (a folder needs img_size > 0). */
cnn_transform cnn_transform_default(const cnn_dataset *ds, bool train, int img_size);
/* Sample i decoded and transformed into out[C * S * S] (S = img_size, or the native size),
 * with its label in *label (may be NULL). Randomness from (seed, epoch, i) only (0 <= epoch <
 * 2^24). A file that cannot be decoded gives CNN_ERR_FORMAT / CNN_ERR_IO naming it and
 * stb_image's reason. Thread-safe: several threads may fetch from one dataset. */
cnn_status cnn_dataset_get(const cnn_dataset *ds, int64_t i, const cnn_transform *t,
                           uint64_t seed, int64_t epoch, float *out, int64_t *label);
/* Output size S of a transform on a dataset (0 with an error if it has none). */
int cnn_transform_output_size(const cnn_dataset *ds, const cnn_transform *t);

typedef struct cnn_loader cnn_loader;
typedef struct cnn_loader_options {
    int batch_size;        /* > 0 */
    bool shuffle;          /* a new permutation every epoch, from (seed, epoch) */
    bool drop_last;        /* drop a final batch smaller than batch_size */
    int num_workers;       /* decoding threads (<= CNN_LOADER_MAX_WORKERS); 0: decode inside
                              cnn_loader_next on the calling thread */
    int prefetch;          /* batches decoded ahead of the consumer; 0 means 2 */
    int64_t limit;         /* > 0: use only `limit` samples, spread evenly over the dataset
                              (indices floor(k * size / limit)), so the classes appear about
                              in proportion (one smaller than size / limit may not at all) */
    uint64_t seed;
    bool strict;           /* a bad sample fails cnn_loader_next instead of being skipped */
    cnn_transform transform;
    cnn_device device;     /* where batches are delivered (default, zero: the CPU). For a CUDA
                              device, batches are packed into pinned host memory and copied on
                              the loader's own stream one batch ahead, overlapping the caller's
                              GPU work; cnn_loader_next must then be called with a current
                              context on that device (its stream waits for the copy). */
} cnn_loader_options;
#define CNN_LOADER_MAX_WORKERS 64
/* Options with batch_size, shuffle = train, the dataset's default transform and everything
 * else zero (no workers, prefetch 2, not strict, all samples, seed 0). */
cnn_loader_options cnn_loader_default_options(const cnn_dataset *ds, bool train, int img_size,
                                              int batch_size);
/* New loader over ds (borrowed: keep it alive until the loader is destroyed). Starts its
 * workers, which wait for the first epoch. */
cnn_status cnn_loader_create(const cnn_dataset *ds, const cnn_loader_options *opt,
                             cnn_loader **out);
/* Stops and joins the workers (safe at any point of an epoch) and frees everything. */
void cnn_loader_destroy(cnn_loader **l);
/* Starts (or restarts, dropping what was prefetched) epoch `epoch` (0 <= epoch < 2^24): its
 * permutation and augmentation draws depend on (seed, epoch). cnn_loader_next starts epoch 0 if
 * none was. */
cnn_status cnn_loader_start_epoch(cnn_loader *l, int64_t epoch);
/* Starts epoch `epoch` at a position in its order (0 <= position <= samples per epoch): the
 * samples before it are neither decoded nor handed out, so the batches that follow are those an
 * uninterrupted epoch would give after cnn_loader_position returned `position`. For resuming
 * inside an epoch (bad samples met before the position are not listed again). */
cnn_status cnn_loader_start_epoch_at(cnn_loader *l, int64_t epoch, int64_t position);
/* The position in the current epoch's order just after the last batch handed out (bad samples
 * skipped included), or after the bad sample that failed a strict call (where the next call
 * goes on); 0 at the start of an epoch. */
int64_t cnn_loader_position(const cnn_loader *l);
/* The next batch: new tensors images (B, C, S, S) F32 and labels (B) I64 on the options'
 * device (the CPU unless set). At the end of the epoch both are set to NULL and CNN_OK is
 * returned (again on every later call, until cnn_loader_start_epoch). Bad samples
 * (undecodable files) are skipped and recorded: the batch is completed from the following
 * samples, so every batch has batch_size samples except the epoch's last, which may be smaller
 * (or dropped with drop_last). With `strict`, a bad sample makes this call fail with
 * CNN_ERR_FORMAT (or CNN_ERR_IO) naming the file; the partial batch is discarded and the next
 * call goes on with the following samples. Any other failure is not the data's: running out
 * of memory (host or device: CNN_ERR_OUT_OF_MEMORY) or of file descriptors (CNN_ERR_IO, "Too
 * many open files") fails the call, strict or not, without listing the sample it met as bad,
 * and the next call makes the same batch again: once memory is freed, the epoch goes on as if
 * the failure had not happened. */
cnn_status cnn_loader_next(cnn_loader *l, cnn_tensor **images, cnn_tensor **labels);
/* Samples per epoch (after `limit`) and batches per epoch if no sample is bad. */
int64_t cnn_loader_num_samples(const cnn_loader *l);
int64_t cnn_loader_num_batches(const cnn_loader *l);
/* Bad samples met so far (each file once, in the order met): count, path, reason. A loader
 * with a device packs the next batch as it hands one out, so its list runs a batch ahead of the
 * batches returned. Borrowed, valid until the loader is destroyed; call from the thread that
 * calls cnn_loader_next. */
int cnn_loader_num_bad(const cnn_loader *l);
const char *cnn_loader_bad_name(const cnn_loader *l, int i);
const char *cnn_loader_bad_reason(const cnn_loader *l, int i);

typedef struct cnn_loader_stats {
    int64_t images_decoded;   /* good samples decoded (including prefetched, not yet handed out) */
    int64_t bad_samples;      /* samples that failed to decode */
    int64_t batches;          /* batches handed out */
    int n_workers;            /* entries used below: num_workers, or 1 for the calling thread */
    double decode_seconds[CNN_LOADER_MAX_WORKERS]; /* time spent decoding + transforming */
    int64_t worker_images[CNN_LOADER_MAX_WORKERS]; /* => images / second per worker */
    double wait_seconds;      /* wall time spent inside cnn_loader_next (waiting for data) */
} cnn_loader_stats;
/* Counters since the loader was created. */
void cnn_loader_get_stats(cnn_loader *l, cnn_loader_stats *out);

#ifdef __cplusplus
}
#endif
#endif /* CNNCUDA_DATA_H */
