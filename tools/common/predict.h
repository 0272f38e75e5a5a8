/* predict.h — the --predict mode of train_imagenet_subset: a checkpoint's model applied to
 * image files, printing the top-5 classes with probabilities per file. */
#ifndef TR_PREDICT_H
#define TR_PREDICT_H

#include "cnncuda.h"
#include "train_opts.h"

/* Classifies o->predict and o->files[0 .. o->n_files) with the model of o->checkpoint on dev.
 * A file that cannot be decoded is reported on stdout and makes the result false; any other
 * failure returns false at once. err receives a one-line reason. */
bool tr_predict(const train_opts *o, cnn_device dev, char *err, size_t n);

#endif /* TR_PREDICT_H */
