/* cnncuda/nn.h — ops, state dicts and safetensors checkpoints, the model zoo, optimizers,
 * LR schedules and initialisers.
 * A part of the public API: users include cnncuda.h, which includes every part and states
 * the ownership, error and thread rules. */
#ifndef CNNCUDA_NN_H
#define CNNCUDA_NN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------
 * Ops (semantics, argument order and defaults as PyTorch's torch.nn.functional). Shapes are
 * (N, C, H, W) for images. Each returns a new output tensor through *y and records itself on
 * the tape when grad mode is on and an input requires grad. Inputs must share a device.
 * ---------------------------------------------------------------------------------------- */
typedef struct cnn_conv2d_params {
    int stride[2];   /* (h, w); 0 means 1 */
    int padding[2];
    int dilation[2]; /* 0 means 1 */
    int groups;      /* 0 means 1 */
} cnn_conv2d_params;
/* x: (N, C, H, W), w: (K, C/groups, R, S), b: (K) or NULL -> y: (N, K, P, Q). p NULL: all
 * defaults (stride 1, no padding). Limit: per image, (C/groups)·R·S·P·Q (the unfolded input of
 * one GEMM) and K·(C/groups)·R·S must be below 2^31 (for a 64-channel 3x3 conv, outputs up to
 * about 1930 x 1930); a larger conv is CNN_ERR_UNSUPPORTED, not run. */
cnn_status cnn_conv2d(const cnn_tensor *x, const cnn_tensor *w, const cnn_tensor *b,
                      const cnn_conv2d_params *p, cnn_tensor **y);
/* The activations a fused op can end with. */
typedef enum cnn_activation { CNN_ACT_NONE = 0, CNN_ACT_RELU = 1 } cnn_activation;
/* y = act(conv2d(x, w, b) + z) as one op: z (NULL, or of y's shape (N, K, P, Q)) is added and
 * the activation applied as the output is written, so y crosses memory once instead of three
 * times (a ResNet block's last conv, residual add and ReLU; a conv and its ReLU). The same bits
 * as cnn_conv2d, cnn_add(z, .) and cnn_relu in turn; differentiable in x, w, b and z. */
cnn_status cnn_conv2d_fused(const cnn_tensor *x, const cnn_tensor *w, const cnn_tensor *b,
                            const cnn_tensor *z, cnn_activation act, const cnn_conv2d_params *p,
                            cnn_tensor **y);
/* x: (N, in), w: (out, in), b: (out) or NULL -> y: (N, out) = x w^T + b. Any of N, in, out
 * may be 0, as in PyTorch: with in 0, y is b in every row (zeros without b). */
cnn_status cnn_linear(const cnn_tensor *x, const cnn_tensor *w, const cnn_tensor *b,
                      cnn_tensor **y);

/* Batch norm over (N, C), (N, C, L) or (N, C, H, W), per channel C. training: batch
 * statistics, and running_mean/var (if given) updated with `momentum` (running_var with the
 * unbiased batch variance, as PyTorch). Eval: running statistics, which must then be given
 * (CNN_ERR_INVALID_ARG without: F.batch_norm would use the batch's). weight/bias NULL: no
 * affine. */
cnn_status cnn_batch_norm(const cnn_tensor *x, cnn_tensor *running_mean, cnn_tensor *running_var,
                          const cnn_tensor *weight, const cnn_tensor *bias, bool training,
                          float momentum, float eps, cnn_tensor **y);

/* Folds an eval-mode batch norm into the conv (or linear layer) before it, as PyTorch's
 * fuse_conv_bn_weights: with s = weight / sqrt(running_var + eps) per output channel k,
 * w_out[k] = w[k] * s[k] and b_out = (b - running_mean) * s + bias (b NULL: 0; weight / bias
 * NULL: 1 / 0), so that conv2d(x, w_out, b_out) is batch_norm(conv2d(x, w, b)) in eval mode up
 * to rounding (s is computed in double). w: (K, ...); the others (K). New tensors on w's
 * device, not recorded on the tape. */
cnn_status cnn_batch_norm_fold(const cnn_tensor *w, const cnn_tensor *b,
                               const cnn_tensor *running_mean, const cnn_tensor *running_var,
                               const cnn_tensor *weight, const cnn_tensor *bias, float eps,
                               cnn_tensor **w_out, cnn_tensor **b_out);

typedef struct cnn_pool2d_params {
    int kernel[2];
    int stride[2];     /* 0 means = kernel (PyTorch's default) */
    int padding[2];
    int dilation[2];   /* max pool only; 0 means 1 */
    bool ceil_mode;
    /* avg pool only: true = PyTorch's count_include_pad=False. Zero (the default) counts the
     * padding in the divisor, as PyTorch's default count_include_pad=True does. */
    bool exclude_pad;
} cnn_pool2d_params;
/* p is required (it holds the window). */
cnn_status cnn_max_pool2d(const cnn_tensor *x, const cnn_pool2d_params *p, cnn_tensor **y);
cnn_status cnn_avg_pool2d(const cnn_tensor *x, const cnn_pool2d_params *p, cnn_tensor **y);
/* Adaptive average pooling to (out_h, out_w); (1, 1) is global average pooling. */
cnn_status cnn_adaptive_avg_pool2d(const cnn_tensor *x, int out_h, int out_w, cnn_tensor **y);

/* As torch.relu: NaN stays NaN (and passes its gradient), so a diverging net shows it. */
cnn_status cnn_relu(const cnn_tensor *x, cnn_tensor **y);
/* The others as torch.nn.functional's: leaky_relu (x > 0 ? x : slope * x), elu (x > 0 ? x :
 * alpha * (exp(x) - 1)), sigmoid, tanh. */
cnn_status cnn_leaky_relu(const cnn_tensor *x, float negative_slope, cnn_tensor **y);
cnn_status cnn_elu(const cnn_tensor *x, float alpha, cnn_tensor **y);
cnn_status cnn_sigmoid(const cnn_tensor *x, cnn_tensor **y);
cnn_status cnn_tanh(const cnn_tensor *x, cnn_tensor **y);
/* Inverted dropout: in training, zero with probability p and scale the rest by 1/(1-p), as
 * PyTorch's x * mask / (1 - p) (a dropped NaN or inf gives NaN); identity (a new reference) in
 * eval. Draws from the context RNG. */
cnn_status cnn_dropout(const cnn_tensor *x, float p, bool training, cnn_tensor **y);

/* y = a + b (same shape). */
cnn_status cnn_add(const cnn_tensor *a, const cnn_tensor *b, cnn_tensor **y);
/* y = relu(a + b) in one pass (a residual join): the bits of cnn_add then cnn_relu. */
cnn_status cnn_add_relu(const cnn_tensor *a, const cnn_tensor *b, cnn_tensor **y);
/* y = a * alpha (scalar). */
cnn_status cnn_scale(const cnn_tensor *a, float alpha, cnn_tensor **y);
/* Concatenation of n tensors along dim (1 = channels); other dims must match. As torch.cat, a
 * 1-D tensor of size 0 is left out whatever the others' shapes (its gradient is of size 0). */
cnn_status cnn_concat(const cnn_tensor *const *xs, int n, int dim, cnn_tensor **y);
/* Flattens dims start_dim.. into one (torch.flatten(x, start_dim)): as cnn_tensor_reshape, a
 * view of a contiguous x, else a copy (torch.flatten also views a non-contiguous x where its
 * strides allow; do not count on either aliasing x). */
cnn_status cnn_flatten(const cnn_tensor *x, int start_dim, cnn_tensor **y);
/* Sum / mean of all elements -> a scalar (rank 0). */
cnn_status cnn_sum(const cnn_tensor *x, cnn_tensor **y);
cnn_status cnn_mean(const cnn_tensor *x, cnn_tensor **y);

/* Softmax / log-softmax along dim (negative counts from the end). */
cnn_status cnn_softmax(const cnn_tensor *x, int dim, cnn_tensor **y);
cnn_status cnn_log_softmax(const cnn_tensor *x, int dim, cnn_tensor **y);
/* Cross-entropy of logits (N, K) against I64 labels (N) in [0, K), with label smoothing in
 * [0, 1], averaged over the samples whose label is not ignore_index -> a scalar (NaN when none
 * is left), as torch.nn.functional.cross_entropy. cnn_cross_entropy ignores CNN_IGNORE_INDEX
 * (-100, PyTorch's default). Any other label outside [0, K) is CNN_ERR_INVALID_ARG on the CPU.
 * On a GPU the kernel finds it without waiting for the device: the loss is NaN, and the next call
 * that waits for the device anyway (cnn_tensor_read, cnn_tensor_to the CPU, cnn_synchronize)
 * returns CNN_ERR_INVALID_ARG naming the label and sample, once. An ignored sample's logits get
 * a zero gradient, even non-finite ones (PyTorch's is NaN where the row holds a NaN or is all
 * -inf). */
#define CNN_IGNORE_INDEX (-100)
cnn_status cnn_cross_entropy(const cnn_tensor *logits, const cnn_tensor *labels,
                             float label_smoothing, cnn_tensor **loss);
cnn_status cnn_cross_entropy_ignore(const cnn_tensor *logits, const cnn_tensor *labels,
                                    float label_smoothing, int64_t ignore_index, cnn_tensor **loss);
/* Local response normalisation across channels (torch.nn.LocalResponseNorm):
 * y = x / (k + alpha/size * sum over `size` neighbouring channels of x^2)^beta. */
cnn_status cnn_lrn(const cnn_tensor *x, int size, float alpha, float beta, float k, cnn_tensor **y);

/* ------------------------------------------------------------------------------------------
 * Named tensor sets (state dicts) and safetensors checkpoints
 * ---------------------------------------------------------------------------------------- */
/* An ordered map name -> tensor (each retained), plus string metadata (key -> value). */
typedef struct cnn_dict cnn_dict;
cnn_status cnn_dict_create(cnn_dict **out);
void cnn_dict_destroy(cnn_dict **d);
/* Adds or replaces an entry; the dict takes its own reference to t. */
cnn_status cnn_dict_set(cnn_dict *d, const char *name, cnn_tensor *t);
/* The tensor under name, or NULL. Borrowed. */
cnn_tensor *cnn_dict_get(const cnn_dict *d, const char *name);
/* Entries in insertion order: count, i-th name, i-th tensor (borrowed). */
int cnn_dict_size(const cnn_dict *d);
const char *cnn_dict_name(const cnn_dict *d, int i);
cnn_tensor *cnn_dict_at(const cnn_dict *d, int i);
/* String metadata (safetensors' __metadata__): set (copies; key and value must be UTF-8
 * text, else CNN_ERR_INVALID_ARG naming the key), get (borrowed or NULL), list. */
cnn_status cnn_dict_set_meta(cnn_dict *d, const char *key, const char *value);
const char *cnn_dict_get_meta(const cnn_dict *d, const char *key);
int cnn_dict_meta_size(const cnn_dict *d);
const char *cnn_dict_meta_key(const cnn_dict *d, int i);
const char *cnn_dict_meta_value(const cnn_dict *d, int i);

/* What cnn_dict_load found: names in the destination with no source tensor (missing) and
 * names in the source with no destination (unexpected), as PyTorch's load_state_dict. */
typedef struct cnn_load_report {
    int n_missing, n_unexpected;
    char missing[1024];    /* comma-separated, truncated with "..." */
    char unexpected[1024];
} cnn_load_report;
/* Copies src's values into dst's tensors of the same names (any devices; shapes must match,
 * else CNN_ERR_SHAPE naming the tensor; another dtype converts as cnn_tensor_to_dtype does, as
 * PyTorch's load_state_dict: F16, BF16 or F64 weights into an F32 model, an F32 or F16 counter
 * into an I64 one, and a value the dtype cannot hold is an error naming the tensor); a (1,)
 * tensor loads into a scalar, as PyTorch loads files of its 0.3 (PyTorch takes the first
 * element of any longer one too, silently; here that is a shape error). On any error nothing
 * is changed. strict: missing or unexpected names are an error (CNN_ERR_NOT_FOUND). A missing
 * "*.num_batches_tracked" (files from before PyTorch 0.4.1) is not missing: the tensor keeps
 * its value, as in PyTorch. report may be NULL. */
cnn_status cnn_dict_load(cnn_dict *dst, const cnn_dict *src, bool strict, cnn_load_report *report);

/* Writes a dict (tensors + metadata) as a safetensors file: temporary file (PATH.tmp.<pid>.<tid>,
 * which a process killed while writing leaves behind), fsync, rename, fsync of the folder. On
 * any error (CNN_ERR_IO with the system's reason, e.g. "No space left on device") the file at
 * path is as it was and no temporary file is left, with one exception that the message states:
 * "the new file is in place" when only the last fsync failed. A path that is a symbolic link
 * is written through (its target replaced, the temporary file beside the target); the new file
 * keeps the old one's permissions. The header lists the tensors in dict order; their bytes are
 * stored largest element first, dict order among equal sizes (Python's writer also sorts by
 * dtype, then by name), so each starts at a multiple of its element size. */
cnn_status cnn_safetensors_save(const char *path, const cnn_dict *d);
/* Reads and fully validates a safetensors file into a new dict of CPU tensors. */
cnn_status cnn_safetensors_load(const char *path, cnn_dict **out);

/* ------------------------------------------------------------------------------------------
 * Models: the zoo (LeNet-5, AlexNet, VGG, ResNet), torchvision's architectures, initialisation
 * and state_dict names, so that torchvision weights (converted to safetensors) load directly.
 * ---------------------------------------------------------------------------------------- */
typedef struct cnn_model cnn_model;

/* Start from cnn_model_default_options() and change what you need. */
typedef struct cnn_model_options {
    int num_classes;         /* 0: the default (1000; LeNet-5 and the _small ResNets: 10) */
    int in_channels;         /* 0: the architecture's default (3; LeNet-5: 1) */
    bool zero_init_residual; /* ResNet: the last BN of each block starts with weight 0 */
    bool tanh;               /* LeNet-5: tanh activations (LeCun 1998) instead of ReLU */
    float dropout;           /* AlexNet / VGG classifier dropout probability, in [0, 1)
                              * (default 0.5) */
    bool skip_init;          /* conv / linear weights left uninitialised (no RNG, no fill):
                                for loading a checkpoint right after creation */
} cnn_model_options;
cnn_model_options cnn_model_default_options(void);

/* What a model is and what it expects as input. */
typedef struct cnn_model_info {
    const char *name;         /* the zoo name, e.g. "resnet50" (borrowed from the model) */
    int num_classes, in_channels;
    int input_h, input_w;     /* the usual input size (224 for ImageNet models) */
    int min_h, min_w;         /* the smallest input the architecture accepts */
    float mean[3], std[3];    /* per-channel input normalisation (ImageNet's for ImageNet
                                 models with 3 channels, else 0.5 / 0.5) */
} cnn_model_info;

/* The zoo's names (a borrowed static array of *count entries): lenet5, alexnet, vgg11..vgg19
 * and their _bn variants, resnet18..resnet152, and resnet18_small / resnet34_small /
 * resnet50_small (3x3 stride-1 stem, no max-pool: for 28..64-pixel images). */
const char *const *cnn_model_names(int *count);
/* New model with torchvision's initialisation (from the context RNG), tensors on the CPU.
 * num_classes / in_channels 0 take the defaults. Unknown name: CNN_ERR_NOT_FOUND listing the
 * valid names. LeNet-5 takes 32x32 inputs, or 28x28 ones (zero-padded by 2 inside the model). */
cnn_status cnn_model_create(const char *name, int num_classes, int in_channels, cnn_model **out);
cnn_status cnn_model_create_ex(const char *name, const cnn_model_options *opts, cnn_model **out);
void cnn_model_destroy(cnn_model **m);
/* x: (N, in_channels, H, W) -> new logits (N, num_classes), recorded on the tape. training:
 * batch norm uses batch statistics and updates running_mean / running_var (momentum 0.1, eps
 * 1e-5) and num_batches_tracked; dropout is on. Eval: running statistics, no dropout. The
 * parameters require grad, so an evaluation pass should turn grad mode off to record nothing. */
cnn_status cnn_model_forward(cnn_model *m, const cnn_tensor *x, bool training, cnn_tensor **logits);
/* Fusion (on by default): cnn_model_forward runs each conv together with the ReLU and the
 * residual add after it (cnn_conv2d_fused: the same bits as the layers run alone), and in an
 * evaluation pass with grad mode off folds each batch norm into the conv before it
 * (cnn_batch_norm_fold: the same logits up to rounding, fewer passes over the activations).
 * Off: every layer runs as built (to compare, or to time the layers alone). */
void cnn_model_set_fusion(cnn_model *m, bool on);
/* Whether fusion is on (false for NULL). */
bool cnn_model_fusion(const cnn_model *m);
/* The model's name, classes, channels, input sizes and normalisation (all zero for NULL). */
cnn_model_info cnn_model_get_info(const cnn_model *m);
/* Parameters and buffers under torchvision's state_dict keys, in its order (borrowed): load
 * weights with cnn_dict_load(cnn_model_state(m), src, strict, report). */
cnn_dict *cnn_model_state(cnn_model *m);
/* The trainable parameters only, same tensors and order (borrowed). */
cnn_dict *cnn_model_parameters(cnn_model *m);
/* True for the i-th trainable parameter when it is a bias or a batch-norm weight/bias (the
 * usual no-weight-decay group). */
bool cnn_model_param_no_decay(const cnn_model *m, int i);
/* Number of trainable scalars (num_batches_tracked and running stats are buffers). */
int64_t cnn_model_num_parameters(const cnn_model *m);
/* Moves every parameter and buffer (and gradient) to device, keeping the tensor handles, as
 * module.to() does; a CUDA device must be the current context's. Call it between steps (not
 * with a recorded forward pending). On failure nothing moves. */
cnn_status cnn_model_to(cnn_model *m, cnn_device device);
/* Where the parameters are (CNN_CPU for NULL). */
cnn_device cnn_model_device(const cnn_model *m);
/* Writes / reads the state as safetensors (writing as cnn_safetensors_save does, in the
 * state's dtypes: F32, and I64 for the batch norms' num_batches_tracked; reading: strict or
 * not, other dtypes converted, see cnn_dict_load). */
cnn_status cnn_model_save(const cnn_model *m, const char *path);
cnn_status cnn_model_load(cnn_model *m, const char *path, bool strict, cnn_load_report *report);

/* What cnn_model_load_pretrained did. */
typedef struct cnn_pretrained_report {
    int n_loaded;      /* model tensors set from the file */
    int n_fresh;       /* classifier tensors left as initialised (the file's class count differs) */
    int file_classes;  /* that class count (0 when the classifier came from the file) */
    char fresh[128];   /* their names, comma-separated */
    char adapted[64];  /* the first conv's weight when summed over the file's 3 input channels */
} cnn_pretrained_report;
/* Starts a model from another one's weights, to fine-tune it: a torchvision state_dict saved as
 * safetensors (scripts/torchvision_weights.py; F32, or other dtypes converted as cnn_dict_load
 * does), or a checkpoint of this library's tools (its optimizer state, "optim.*", is
 * ignored). Every parameter and buffer of m must be in the file with its shape (a missing
 * num_batches_tracked keeps its value, as cnn_dict_load), except that
 *  - the classifier (the last linear layer's weight and bias) stays as initialised when the
 *    file has another number of classes (new classes: the usual fine-tuning), and
 *  - the first conv's weight of a 1-channel model is summed over the file's 3 input channels
 *    (gray = R = G = B, as timm adapts pretrained weights to grayscale input).
 * A tensor missing, shaped otherwise, or one in the file that m lacks (another architecture) is
 * CNN_ERR_NOT_FOUND / CNN_ERR_SHAPE naming it, and m is left unchanged. report may be NULL. */
cnn_status cnn_model_load_pretrained(cnn_model *m, const char *path,
                                     cnn_pretrained_report *report);

/* Per-layer summary for one image of height x width, computed from shapes alone. MACs count
 * the multiply-accumulates of conv and linear layers (bias adds excluded), as torchvision's
 * model table does (ResNet-50: 4.09 G at 224x224); batch norm, activations, pooling and
 * residual adds count 0. */
typedef struct cnn_layer_summary {
    char name[48];       /* module path, e.g. "layer1.0.conv1" */
    char type[24];       /* "Conv2d", "BatchNorm2d", "ReLU", "Add", ... */
    cnn_shape out_shape; /* for a batch of 1 */
    int64_t params;      /* trainable scalars of this layer */
    int64_t macs;
    /* What the layer runs with, so that it can be rebuilt alone (cnnbench --layers); zeros
     * where a field does not apply. */
    cnn_shape in_shape;     /* for a batch of 1 (an Add: each of its two inputs) */
    cnn_conv2d_params conv; /* Conv2d, at this input size (LeNet-5's zero-padding of a 28x28
                               image to 32x32 included); the kernel is the weight's R x S */
    cnn_pool2d_params pool; /* MaxPool2d, AvgPool2d */
    float dropout_p;        /* Dropout */
} cnn_layer_summary;
typedef struct cnn_model_summary {
    int n_layers;
    cnn_layer_summary *layers;
    cnn_shape in_shape, out_shape;
    int64_t total_params, total_macs;
} cnn_model_summary;
/* Fills *out (release with cnn_model_summary_free). Too small an input: CNN_ERR_SHAPE naming
 * the layer where it fails. */
cnn_status cnn_model_summarize(const cnn_model *m, int height, int width, cnn_model_summary *out);
void cnn_model_summary_free(cnn_model_summary *s);
/* Formats a summary as a table into buf (truncated to n, NUL-terminated); returns the length
 * it needs without the NUL, as snprintf: pass n = that + 1. */
size_t cnn_model_summary_format(const cnn_model_summary *s, char *buf, size_t n);

/* ------------------------------------------------------------------------------------------
 * Optimizers, LR schedules and initialisers (torch.optim, torch.optim.lr_scheduler,
 * torch.nn.utils.clip_grad_norm_, torch.nn.init: same formulas, defaults and argument order)
 * ---------------------------------------------------------------------------------------- */
typedef enum cnn_optim_kind { CNN_OPTIM_SGD = 0, CNN_OPTIM_ADAM, CNN_OPTIM_ADAMW } cnn_optim_kind;
typedef struct cnn_optim_config {
    cnn_optim_kind kind;
    float lr;           /* >= 0 */
    float momentum;     /* SGD: >= 0 */
    float dampening;    /* SGD */
    bool nesterov;      /* SGD: needs momentum > 0 and dampening 0 */
    float weight_decay; /* >= 0; SGD/Adam: L2 added to the gradient; AdamW: decoupled */
    float beta1, beta2; /* Adam/AdamW: in [0, 1) */
    float eps;          /* Adam/AdamW: >= 0, added after sqrt(v_hat) */
} cnn_optim_config;
typedef struct cnn_optim cnn_optim;

/* PyTorch's defaults for a kind: lr 1e-3; Adam betas (0.9, 0.999), eps 1e-8; AdamW weight
 * decay 1e-2; everything else 0/false. */
cnn_optim_config cnn_optim_defaults(cnn_optim_kind kind);
/* New optimizer with no parameters. Bad hyper-parameters -> CNN_ERR_INVALID_ARG. */
cnn_status cnn_optim_create(const cnn_optim_config *cfg, cnn_optim **out);
void cnn_optim_destroy(cnn_optim **opt);
/* Adds a leaf F32 contiguous parameter under a unique name (in its state-dict keys: UTF-8, at
 * most 489 bytes); the optimizer retains it. apply_weight_decay false exempts it from weight decay
 * (e.g. BN weights, biases). */
cnn_status cnn_optim_add_param(cnn_optim *opt, const char *name, cnn_tensor *param,
                               bool apply_weight_decay);
/* Adds every tensor of d that requires grad, under its dict name; tensors of rank <= 1 (biases,
 * BN weights) get weight decay only if decay_1d. */
cnn_status cnn_optim_add_dict(cnn_optim *opt, const cnn_dict *d, bool decay_1d);
/* One update of every parameter that has a gradient (those whose grad is NULL are skipped).
 * On failure no parameter has changed. */
cnn_status cnn_optim_step(cnn_optim *opt);
/* Drops every parameter's gradient (PyTorch's zero_grad(set_to_none=True)). */
void cnn_optim_zero_grad(cnn_optim *opt);
/* The learning rate from the next step on (a negative or non-finite
 * lr: CNN_ERR_INVALID_ARG, unchanged); get: the current one, NaN for a NULL optimizer. */
cnn_status cnn_optim_set_lr(cnn_optim *opt, float lr);
float cnn_optim_get_lr(const cnn_optim *opt);
/* Number of cnn_optim_step calls so far (restored by cnn_optim_load_state_dict). */
int64_t cnn_optim_step_count(const cnn_optim *opt);
/* Adds the optimizer's state to d (copies): tensors "optim.<param>.momentum_buffer" (SGD with
 * momentum) or "optim.<param>.exp_avg" / ".exp_avg_sq" (Adam/AdamW), and metadata
 * "optim.kind", "optim.lr", "optim.step" and "optim.<param>.step". On failure d is unchanged. */
cnn_status cnn_optim_state_dict(const cnn_optim *opt, cnn_dict *d);
/* Restores what cnn_optim_state_dict wrote (entries of d outside "optim." are ignored): kind must
 * match, every parameter needs its state, shapes must match, no unknown "optim.<name>" entries. lr
 * (finite, >= 0) and step counts (integers 0 to 2^53) are restored too. A state tensor the
 * optimizer already has (same shape and device) takes the values in place, or is zeroed in place
 * where d says its parameter had no step yet, so a CUDA graph that captured a step goes on from
 * the loaded state (for SGD with dampening, a replay then starts the momentum at (1 - dampening) *
 * grad where an op-by-op step starts it at grad). On a bad d nothing is changed. */
cnn_status cnn_optim_load_state_dict(cnn_optim *opt, const cnn_dict *d);

/* torch.nn.utils.clip_grad_norm_: total = L2 norm over all gradients (NULL grads skipped, the
 * params array may hold NULLs); every gradient is multiplied by min(1, max_norm / (total +
 * 1e-6)). total_norm may be NULL. The squares are summed in double, so the norm is right
 * where PyTorch's float32 one over- or underflows (gradients beyond about 1.8e19, where PyTorch's
 * norm is inf and every gradient becomes 0, or below about 1e-19); a negative max_norm is an
 * error. */
cnn_status cnn_clip_grad_norm(cnn_tensor *const *params, int n, float max_norm, float *total_norm);
/* The same over an optimizer's parameters. */
cnn_status cnn_optim_clip_grad_norm(cnn_optim *opt, float max_norm, float *total_norm);

/* Learning-rate schedules as pure functions of t, the number of completed epochs (or steps),
 * PyTorch's last_epoch. StepLR: base * gamma^floor(t / step_size). */
cnn_status cnn_sched_step_lr(float base_lr, int step_size, float gamma, int64_t t, float *lr);
/* MultiStepLR: base * gamma^(number of milestones <= t); milestones in any order. */
cnn_status cnn_sched_multistep_lr(float base_lr, const int64_t *milestones, int n, float gamma,
                                  int64_t t, float *lr);
/* Linear warmup then cosine annealing over `total` units (warmup counts inside total), with
 * T = total - warmup:
 *   t < warmup:          base * (t + 1) / warmup
 *   warmup <= t < total: eta_min + (base - eta_min) * (1 + cos(pi * (t - warmup) / T)) / 2
 *                        (CosineAnnealingLR's closed form with T_max = T)
 *   t >= total:          eta_min (where PyTorch's closed form would rise again).
 * warmup 0 is plain CosineAnnealingLR(T_max = total). Needs 0 <= warmup < total. */
cnn_status cnn_sched_cosine_lr(float base_lr, int64_t warmup, int64_t total, float eta_min,
                               int64_t t, float *lr);

/* ReduceLROnPlateau: stateful, driven by a validation metric once per epoch. */
typedef enum cnn_plateau_mode { CNN_PLATEAU_MIN = 0, CNN_PLATEAU_MAX } cnn_plateau_mode;
typedef struct cnn_plateau_config {
    cnn_plateau_mode mode;
    float factor;        /* in (0, 1): new lr = max(lr * factor, min_lr) */
    int patience;        /* bad epochs tolerated before a reduction */
    float threshold;     /* improvement needed to count as better */
    bool threshold_abs;  /* false: 'rel' (best * (1 -+ threshold)); true: 'abs' (best -+ it) */
    int cooldown;        /* epochs after a reduction during which bad epochs are not counted */
    float min_lr;
    float eps;           /* reductions smaller than eps are skipped */
} cnn_plateau_config;
typedef struct cnn_plateau cnn_plateau;
/* PyTorch's defaults: min, factor 0.1, patience 10, threshold 1e-4 rel, cooldown 0, min_lr 0,
 * eps 1e-8. */
cnn_plateau_config cnn_sched_plateau_defaults(void);
/* A scheduler starting at initial_lr; CNN_ERR_INVALID_ARG for an unknown mode, a factor outside
 * (0, 1), negative patience, cooldown, threshold, min_lr or eps, or a negative or non-finite
 * initial_lr. */
cnn_status cnn_sched_plateau_create(const cnn_plateau_config *cfg, float initial_lr,
                                    cnn_plateau **out);
void cnn_sched_plateau_destroy(cnn_plateau **p);
/* Feeds one epoch's metric; *lr (may be NULL) receives the lr to use next, which is also set on
 * opt when opt is not NULL. */
cnn_status cnn_sched_step_metric(cnn_plateau *p, float metric, cnn_optim *opt, float *lr);
/* The lr the scheduler holds now (NaN for NULL). */
float cnn_sched_plateau_get_lr(const cnn_plateau *p);
/* The scheduler's state (lr, best, bad-epoch and cooldown counters, epoch) as metadata
 * "sched.plateau.*" of d, and back (validated: an lr a float holds, >= 0; best not NaN; counts
 * integers 0 to 2^53; on failure nothing is changed, d or the scheduler). */
cnn_status cnn_sched_plateau_state_dict(const cnn_plateau *p, cnn_dict *d);
cnn_status cnn_sched_plateau_load_state_dict(cnn_plateau *p, const cnn_dict *d);

/* Initialisers (torch.nn.init), in place on any tensor, drawing from the context RNG. */
typedef enum cnn_fan_mode { CNN_FAN_IN = 0, CNN_FAN_OUT } cnn_fan_mode;
typedef enum cnn_nonlinearity {
    CNN_NONLIN_LINEAR = 0, /* also conv and identity: gain 1 */
    CNN_NONLIN_SIGMOID,    /* 1 */
    CNN_NONLIN_TANH,       /* 5/3 */
    CNN_NONLIN_RELU,       /* sqrt(2) */
    CNN_NONLIN_LEAKY_RELU, /* sqrt(2 / (1 + slope^2)) */
    CNN_NONLIN_SELU        /* 3/4 */
} cnn_nonlinearity;
/* torch.nn.init.calculate_gain; param is leaky_relu's negative slope (ignored otherwise). */
cnn_status cnn_init_gain(cnn_nonlinearity nl, float param, float *gain);
/* fan_in = size(1) * receptive field, fan_out = size(0) * receptive field (rank >= 2). */
cnn_status cnn_init_fans(const cnn_tensor *t, int64_t *fan_in, int64_t *fan_out);
cnn_status cnn_init_uniform_(cnn_tensor *t, float low, float high);
cnn_status cnn_init_normal_(cnn_tensor *t, float mean, float std);
cnn_status cnn_init_constant_(cnn_tensor *t, float value);
cnn_status cnn_init_zeros_(cnn_tensor *t);
cnn_status cnn_init_ones_(cnn_tensor *t);
/* Kaiming: std = gain(nl, a) / sqrt(fan); uniform bound sqrt(3) * std. PyTorch's defaults are
 * a = 0, CNN_FAN_IN, CNN_NONLIN_LEAKY_RELU. A tensor without elements is left as it is,
 * whatever the other arguments (as in PyTorch). */
cnn_status cnn_init_kaiming_uniform_(cnn_tensor *t, float a, cnn_fan_mode mode,
                                     cnn_nonlinearity nl);
cnn_status cnn_init_kaiming_normal_(cnn_tensor *t, float a, cnn_fan_mode mode,
                                    cnn_nonlinearity nl);
/* Xavier/Glorot: std = gain * sqrt(2 / (fan_in + fan_out)); uniform bound sqrt(3) * std. */
cnn_status cnn_init_xavier_uniform_(cnn_tensor *t, float gain);
cnn_status cnn_init_xavier_normal_(cnn_tensor *t, float gain);
/* PyTorch's default Conv2d/Linear init: weight ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (kaiming
 * uniform with a = sqrt(5)), bias (may be NULL) ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)). */
cnn_status cnn_init_default_(cnn_tensor *weight, cnn_tensor *bias);

#ifdef __cplusplus
}
#endif
#endif /* CNNCUDA_NN_H */
