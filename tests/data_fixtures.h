/* data_fixtures.h — the data sets the data tests share, each defined beside the tests that
 * describe it: IDX files, synthetic IDX data sets and a transform that keeps them as they are
 * (test_augment.c), loader options that hand their samples out as they are (test_loader.c),
 * the small image-folder tree with bad files, a one-class folder and the image and byte writers
 * (test_imagefolder.c). */
#ifndef CNN_TEST_DATA_FIXTURES_H
#define CNN_TEST_DATA_FIXTURES_H

#include "cnncuda.h"

/* Writes dir/img and dir/lab: n images rows x cols with pixel (i, y, x) = (i*37 + y*cols + x)
 * mod 256 and label i mod 3, their paths into img and lab. Returns 0 on success. */
int data_test_write_idx(const char *dir, int n, int rows, int cols, char *img, char *lab);
/* n such images, loaded as a data set and their files removed; NULL on failure. */
cnn_dataset *data_test_synthetic(int n, int rows, int cols);
/* A training transform that leaves such an image of size S as it is: a full-image crop (scale 1,
 * ratio 1), no flip, mean 0 and std 1; a test turns on the augmentation it checks. */
cnn_transform data_test_identity_transform(const cnn_dataset *ds, int S);

/* The index of a synthetic sample from its first pixel under such a transform, -1 if none; the
 * default loader options for 12 x 12 images of the training or the eval transform (shuffled for
 * training only) with mean 0 and std 1, so pixels stay as stored, and seed 2024
 * (test_loader.c). */
int data_test_sample_of(const float *pix);
cnn_loader_options data_test_raw_options(const cnn_dataset *ds, bool train, int batch,
                                         int workers);

/* Writes ROOT/train/<4 classes>/... (7 good images in 3 classes, 3 bad files; the list is at
 * the definition) under a new /tmp folder whose path is put in root (>= 64 bytes); 0 on
 * success. data_test_remove_tree removes such a tree. */
int data_test_make_tree(char *root);
void data_test_remove_tree(const char *root);
/* The gray level of every image of class i (-1: the empty class). */
extern const int data_test_class_value[4];
/* dir/name: a w x h image of `comp` channels, every byte `value`, as PNG, BMP or JPEG by its
 * extension; dir/name holding the n bytes at data. 0 on success, -1 on failure. */
int data_test_write_image(const char *dir, const char *name, int w, int h, int comp, int value);
int data_test_write_bytes(const char *dir, const char *name, const void *data, size_t n);
/* A new folder root (>= 64 bytes) holding root/split/k/, whose path goes into dir (n bytes); 0
 * on success. */
int data_test_one_class_folder(char *root, const char *split, char *dir, size_t n);

#endif /* CNN_TEST_DATA_FIXTURES_H */
