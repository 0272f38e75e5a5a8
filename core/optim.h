/* optim.h — the optimizer's state, shared by optim.c (configuration, parameters, steps) and
 * optim_state.c (state dicts). Internal to core/: the public API is in include/cnncuda/nn.h. */
#ifndef CNN_OPTIM_H
#define CNN_OPTIM_H

#include "internal.h"

/* State-dict keys are "optim.<name>.<suffix>", at most OPTIM_KEY_MAX - 1 characters; the
 * longest suffix is "momentum_buffer", so a parameter name has at most OPTIM_NAME_MAX. */
#define OPTIM_KEY_MAX 512
#define OPTIM_NAME_MAX (OPTIM_KEY_MAX - 1 - (int)(sizeof "optim..momentum_buffer" - 1))

typedef struct {
    char *name;
    cnn_tensor *p;
    bool decay;
    int64_t step;  /* updates this parameter has had (PyTorch's state['step']) */
    cnn_tensor *s1; /* SGD: momentum_buffer; Adam/AdamW: exp_avg */
    cnn_tensor *s2; /* Adam/AdamW: exp_avg_sq */
} optim_param;

struct cnn_optim {
    cnn_optim_config cfg;
    optim_param *ps;
    int n, cap;
    int64_t steps;
    /* SGD on CUDA reads the learning rate from here (one float on the context's device), so a
     * step captured in a CUDA graph follows cnn_optim_set_lr; lr_dev_value is what it holds. */
    cnn_tensor *lr_dev;
    float lr_dev_value;
    /* Adam on CUDA reads each parameter's per-step scalars from here (3 floats per parameter,
     * adam_scalars), written before each step (or replay) on the stream. */
    cnn_tensor *adam_dev;
};

#endif /* CNN_OPTIM_H */
