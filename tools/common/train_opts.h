/* train_opts.h — the command line of train_imagenet_subset: one table of options gives the
 * parser, --help (with defaults) and the copy of the options kept in checkpoints. Tool code
 * only: it may print, but never exits; the caller decides. */
#ifndef TRAIN_OPTS_H
#define TRAIN_OPTS_H

#include "cnncuda.h"

#include <stdio.h>

#define TR_PATH_MAX 1024
#define TR_MAX_OPTS 40
/* The largest --batch (a batch of 65536 224x224 RGB images is 39 GB of floats). */
#define TR_BATCH_MAX 65536
#define TR_BATCH_MAX_STR "65536"
/* Room for a path of up to TR_PATH_MAX + 32 bytes quoted by tr_shell_quote. */
#define TR_QUOTED_MAX (4 * (TR_PATH_MAX + 32) + 3)

typedef struct train_opts {
    char data[TR_PATH_MAX];
    char model[64];
    int epochs;
    int batch;
    float lr;
    char optimizer[16];
    float momentum;
    float weight_decay;
    char schedule[16];
    int warmup_epochs;
    float label_smoothing;
    int img_size;
    float hflip;     /* -1: the dataset's default */
    float translate;
    float rotate;       /* degrees */
    float zoom;         /* scale in [1 - zoom, 1 + zoom] */
    float color_jitter; /* brightness = contrast = saturation */
    float random_erase;
    int workers;
    char device[16];
    char backend[16];
    int tf32;
    int cuda_graph;
    int64_t seed;
    int64_t limit_train, limit_val;
    char checkpoint_dir[TR_PATH_MAX];
    char resume[TR_PATH_MAX];
    char eval_only[TR_PATH_MAX];
    char pretrained[TR_PATH_MAX];
    int early_stop;
    int stop_after;
    int strict;
    char predict[TR_PATH_MAX];
    char checkpoint[TR_PATH_MAX];
    int help;
    /* --predict's further image files (borrowed from argv) */
    int n_files;
    char **files;
    /* given[i]: option i of the table was on the command line (it wins over a checkpoint) */
    bool given[TR_MAX_OPTS];
} train_opts;

/* Fills every field with its default. */
void tr_opts_defaults(train_opts *o);
/* Parses argv over the defaults. On a bad command line returns false with a one-line reason in
 * err. o->files points into argv. */
bool tr_opts_parse(train_opts *o, int argc, char **argv, char *err, size_t n);
/* Cross-checks the values (ranges, known names); false with a reason in err. */
bool tr_opts_validate(const train_opts *o, char *err, size_t n);
/* The CUDA device a --device value names: 0 for "cuda", N for "cuda:N" (up to three digits);
 * -1 for anything else ("auto", "cpu", a malformed name). */
int tr_device_index(const char *device);
/* The training augmentation options (--hflip, --translate, --rotate, --zoom, --color-jitter,
 * --random-erase) set on a training transform. --hflip -1, --zoom 0 and --color-jitter 0 leave
 * the transform's own values (a folder's flip 0.5); the others are set as given (their
 * defaults, 0, turn them off, as the dataset defaults do). */
void tr_opts_augment(const train_opts *o, cnn_transform *t);
/* Prints the usage with every option and its default. */
void tr_opts_usage(FILE *f);
/* Stores the training options as metadata "opt.<name>" of d. */
cnn_status tr_opts_to_meta(const train_opts *o, cnn_dict *d);
/* Restores from a checkpoint's metadata each training option not given on the command line.
 * false with a reason in err for a value that does not parse, and for a --model (and, when
 * resume, an --optimizer, --schedule, --limit-train or --seed) given that differs from the
 * checkpoint's. When resume, the other options given with another value than the run's are
 * listed in notes (nn bytes; may be NULL), e.g. "--lr 0.003 (the run's: 0.002)". */
bool tr_opts_from_meta(train_opts *o, const cnn_dict *d, bool resume, char *err, size_t n,
                       char *notes, size_t nn);
/* Whether the option --name was on the command line. */
bool tr_opts_given(const train_opts *o, const char *name);
/* mkdir -p path; false with a reason in err. */
bool tr_make_dirs(const char *path, char *err, size_t n);
/* Creates path (its parents as needed) as a folder that did not exist: if taken, path gets a
 * suffix -2, -3, ... (path has room for size bytes). false with a reason in err. */
bool tr_make_new_dir(char *path, size_t size, char *err, size_t n);
/* Whether path is a folder this process can create files in; false with a reason in err. */
bool tr_check_writable_dir(const char *path, char *err, size_t n);
/* The folder of a file's path into out: "." for a bare name, "/" for one at the root. */
void tr_dir_of(const char *path, char *out, size_t n);
/* Whether path may take this run's checkpoints: false, with a reason and the way out in err,
 * when it already holds another run's (last.safetensors or best.safetensors), which the run
 * would overwrite. resume: the checkpoint this run continues (NULL or ""), whose own folder
 * is this run's. */
bool tr_check_unused_dir(const char *path, const char *resume, char *err, size_t n);
/* s as one word for a POSIX shell into buf (n bytes): as it is when every character is plain
 * (letters, digits, %+,-./:=@_), else in single quotes, each ' written '\''. Returns buf. */
const char *tr_shell_quote(const char *s, char *buf, size_t n);
/* " --device cuda:1 --backend cuda ...": the options given that a checkpoint does not keep
 * (device, backend, workers, cuda-graph), for the command that resumes the run as it ran.
 * Returns buf ("" when none was given). */
const char *tr_opts_runtime_args(const train_opts *o, char *buf, size_t n);
/* Prints the training options, a few to a line. */
void tr_opts_print(const train_opts *o, FILE *f);

#endif /* TRAIN_OPTS_H */
