/* checkpoint.h — training checkpoints of train_imagenet_subset: one safetensors file holding
 * the model state (torchvision names), the optimizer state ("optim.*", not in
 * best.safetensors), the plateau scheduler state and metadata (what the model is, its input,
 * class names, progress, RNG state, best accuracy, history and the training options), written
 * atomically. Never prints or exits. */
#ifndef TR_CHECKPOINT_H
#define TR_CHECKPOINT_H

#include "cnncuda.h"
#include "train_opts.h"
#include "train_report.h"

/* What a checkpoint says about its model and input. */
typedef struct tr_model_meta {
    char model[64];
    int num_classes, in_channels;
    int img_size; /* the input height = width fed to the model */
    int geometry; /* a cnn_geometry */
    float mean[3], std[3];
    char **class_names; /* num_classes strings (owned) */
} tr_model_meta;

/* Progress of a run. epoch and batch say where training continues: batch > 0 only in a
 * checkpoint written on interruption, inside epoch `epoch` after `batch` batches. */
typedef struct tr_state {
    int64_t epoch; /* completed epochs (0-based index of the next one) */
    int64_t batch; /* batches of `epoch` already trained */
    int64_t position; /* the training loader's position after them (cnn_loader_position);
                         -1 in a checkpoint from before it was recorded */
    int64_t step;  /* optimizer steps so far */
    uint64_t rng_seed, rng_offset;
    double best_top1;     /* best validation top-1 so far (fraction) */
    int64_t best_epoch;   /* 1-based epoch of best_top1 (0: none yet) */
    int64_t bad_epochs;   /* epochs since best_top1 improved (early stopping) */
    double part_loss;     /* running training loss sum / correct / seen of an interrupted */
    int64_t part_correct; /* epoch, so that its reported numbers come out the same */
    int64_t part_seen;
    double part_seconds;
    tr_history history;
} tr_state;

void tr_model_meta_free(tr_model_meta *m);

/* Each function below returns false with a one-line reason in err (n bytes) on failure. */
/* Whether a checkpoint can hold the run's text (class names, the --data path): safetensors
 * metadata is UTF-8 text. Checked before training, so that no epoch is lost to it. */
bool tr_checkpoint_check_text(const train_opts *o, const tr_model_meta *mm, char *err,
                              size_t n);
/* Writes path atomically. opt and plateau may be NULL: best.safetensors is written without
 * them, the weights alone (torchvision's state_dict, loadable as it is) with the metadata;
 * tr_checkpoint_resumable tells the two kinds apart. */
bool tr_checkpoint_save(const char *path, cnn_model *model, const cnn_optim *opt,
                        const cnn_plateau *plateau, const train_opts *o, const tr_model_meta *mm,
                        const tr_state *s, char *err, size_t n);
/* Loads path (fully validated) and parses its model description into mm. */
bool tr_checkpoint_open(const char *path, cnn_dict **d, tr_model_meta *mm, char *err, size_t n);
/* Whether a loaded checkpoint holds the optimizer state a resumed run needs. */
bool tr_checkpoint_resumable(const cnn_dict *d);
/* Parses the progress of a loaded checkpoint (s->history is replaced). */
bool tr_checkpoint_state(const cnn_dict *d, tr_state *s, char *err, size_t n);
/* Copies the checkpoint's model tensors into model (every model tensor must be there; other
 * entries such as optimizer state are ignored). */
bool tr_checkpoint_load_model(cnn_model *model, const cnn_dict *d, char *err, size_t n);

#endif /* TR_CHECKPOINT_H */
