/* train_graph.c — train_imagenet_subset's --cuda-graph: the training step is captured once into a
 * CUDA graph and replayed for every batch of the captured size; each batch is copied into the
 * graph's input tensors, and the graph's logits and loss go to the host as an op-by-op step's
 * do. Failures end the process through tr_die, as in train_run.c. */
#include "train_run.h"

#include <stdio.h>

/* What is captured: one whole training step. */
static cnn_status graph_body(void *ud)
{
    tr_run *r = ud;
    cnn_tensor_free(&r->g_logits);
    cnn_tensor_free(&r->g_loss);
    cnn_status st = cnn_model_forward(r->model, r->g_images, true, &r->g_logits);
    if (!st) st = cnn_cross_entropy(r->g_logits, r->g_labels, r->o.label_smoothing, &r->g_loss);
    if (!st) st = cnn_backward(r->g_loss);
    if (!st) st = cnn_optim_step(r->opt);
    cnn_optim_zero_grad(r->opt);
    cnn_tape_reset();
    return st;
}

static bool same_shape(const cnn_tensor *a, const cnn_tensor *b)
{
    cnn_shape x = cnn_tensor_shape(a), y = cnn_tensor_shape(b);
    if (x.ndim != y.ndim) return false;
    for (int i = 0; i < x.ndim; i++)
        if (x.d[i] != y.d[i]) return false;
    return true;
}

bool tr_graph_step(tr_run *r, cnn_tensor *images, cnn_tensor *labels, cnn_tensor **logits,
                   cnn_tensor **loss)
{
    if (!r->o.cuda_graph || r->graph_state < 0 || r->dev.type != CNN_DEVICE_CUDA) return false;
    if (r->graph_state == 0) {
        r->graph_state = 1;
        return false;
    }
    if (r->graph && !same_shape(images, r->g_images)) return false;
    if (!r->graph) {
        TR_LIB(cnn_tensor_clone(images, &r->g_images), "--cuda-graph inputs");
        TR_LIB(cnn_tensor_clone(labels, &r->g_labels), "--cuda-graph inputs");
        if (cnn_graph_capture(graph_body, r, &r->graph) != CNN_OK) {
            printf("--cuda-graph: %s; training op by op\n", cnn_last_error());
            tr_run_drop_graph(r);
            r->graph_state = -1;
            return false;
        }
        r->graph_state = 2;
        printf("--cuda-graph: training step captured; replayed for each batch of %lld\n",
               (long long)cnn_tensor_dim(images, 0));
    } else {
        TR_LIB(cnn_tensor_copy_(r->g_images, images), "--cuda-graph inputs");
        TR_LIB(cnn_tensor_copy_(r->g_labels, labels), "--cuda-graph inputs");
    }
    TR_LIB(cnn_graph_replay(r->graph), "--cuda-graph replay");
    *logits = cnn_tensor_retain(r->g_logits);
    *loss = cnn_tensor_retain(r->g_loss);
    return true;
}

void tr_run_drop_graph(tr_run *r)
{
    cnn_graph_destroy(&r->graph);
    cnn_tensor_free(&r->g_images);
    cnn_tensor_free(&r->g_labels);
    cnn_tensor_free(&r->g_logits);
    cnn_tensor_free(&r->g_loss);
}
