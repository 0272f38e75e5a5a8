/* train_run.h — what a run of train_imagenet_subset holds, and building it: the device context,
 * the datasets, the model, the optimizer and the loaders, for a new run, a --resume or
 * --eval-only, and its --cuda-graph step (train_graph.c); not the epoch loop. Unlike the other
 * tools/common code these functions end the process on failure (tr_die): they serve that tool's
 * main flow only. */
#ifndef TR_RUN_H
#define TR_RUN_H

#include "cnncuda.h"
#include "checkpoint.h"
#include "train_opts.h"
#include "train_report.h"

#define TR_TOOL "train_imagenet_subset"

/* The tool's fatal error: one line "train_imagenet_subset: <message>" on stderr, exit status 1. */
void tr_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* A failed library call: its message names the op and the values. */
#define TR_LIB(call, what)                                                                         \
    do {                                                                                           \
        if ((call) != CNN_OK) tr_die("%s: %s", what, cnn_last_error());                            \
    } while (0)

/* Everything a run holds; freed by tr_run_free. */
typedef struct tr_run {
    train_opts o;
    cnn_device dev;
    cnn_context *ctx;
    cnn_dataset *train_ds, *val_ds;
    cnn_loader *train_ld, *val_ld;
    cnn_model *model;
    cnn_optim *opt;
    cnn_plateau *plateau;
    tr_model_meta mm;
    tr_state st;
    tr_eval last_eval;
    char dir[TR_PATH_MAX];
    int64_t steps_per_epoch;
    /* A batch norm that normalises a 1x1 map at this input size (cannot train on one image),
     * or ""; one_image_noted: a batch of one image was left out and the run said so. */
    char bn_1x1[48];
    bool one_image_noted;
    int64_t first_step; /* r->st.step when this process started training */
    bool best_repaired; /* a resumed run wrote the best.safetensors its last epoch had missed */
    float *host_logits; /* batch x num_classes, for metrics */
    /* --cuda-graph (train_graph.c): the captured training step, the tensors it reads
     * (each batch is copied in) and writes; graph_state 0: the next step warms up op by op,
     * 1: the next captures, 2: replaying, -1: off (the capture was refused). */
    cnn_graph *graph;
    cnn_tensor *g_images, *g_labels, *g_logits, *g_loss;
    int graph_state;
} tr_run;

/* argv[0], quoted for a shell: the tool's name in the commands it prints (--resume ...), as the
 * user started it, so that they run when pasted. */
void tr_set_invocation(const char *argv0);
const char *tr_invocation(void);
/* Removes the folder this run made for its outputs if it is still empty (a run stopped before
 * its first step). */
void tr_run_remove_new_dir(void);

/* r->dev and its context (made current) from r->o's --device, --backend and --tf32. */
void tr_run_setup_device(tr_run *r);
/* A training run on r->dev: a new one (datasets, model from --model or --pretrained, optimizer)
 * or, with --resume, the checkpoint's options, model, optimizer, schedule, progress and RNG
 * state, its classes checked against the data's. Then the checkpoint folder (made), both
 * loaders and r->steps_per_epoch. */
void tr_run_open_train(tr_run *r);
/* --eval-only: the checkpoint's model on r->dev, the validation split (its classes checked
 * against the checkpoint's) and its loader. */
void tr_run_open_eval(tr_run *r);
/* --cuda-graph (train_graph.c): one training step through the graph (*logits, *loss: new
 * handles on the graph's outputs); false when this step is to run op by op instead: without
 * --cuda-graph, the first step (the warm-up a capture needs), a batch of another size, or after
 * the capture was refused. */
bool tr_graph_step(tr_run *r, cnn_tensor *images, cnn_tensor *labels, cnn_tensor **logits,
                   cnn_tensor **loss);
/* Releases the --cuda-graph graph and its tensors (all NULL after). */
void tr_run_drop_graph(tr_run *r);
void tr_run_free(tr_run *r);

#endif /* TR_RUN_H */
