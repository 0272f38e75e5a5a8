/* model.c — the model object of the zoo: builders that append steps and their tensors (under
 * torchvision's names and initialisation), the forward pass over the steps, state access and
 * device moves. Composition only: no op math lives here. */
#include "model.h"

cnn_model_options cnn_model_default_options(void)
{
    return (cnn_model_options){.num_classes = 0, .in_channels = 0, .zero_init_residual = false,
                               .tanh = false, .dropout = 0.5f};
}

cnn_status cnn_model_alloc(const char *name, cnn_model **out)
{
    cnn_model *m = calloc(1, sizeof *m);
    CNN_CHECK(m, CNN_ERR_OUT_OF_MEMORY, "model_create: out of host memory");
    snprintf(m->name, sizeof m->name, "%s", name);
    m->info.name = m->name;
    m->device = CNN_CPU;
    cnn_status st = cnn_dict_create(&m->state);
    if (st == CNN_OK) st = cnn_dict_create(&m->params);
    if (st != CNN_OK) {
        cnn_model_destroy(&m);
        return st;
    }
    *out = m;
    return CNN_OK;
}

void cnn_model_destroy(cnn_model **m)
{
    if (!m || !*m) return;
    cnn_dict_destroy(&(*m)->state);
    cnn_dict_destroy(&(*m)->params);
    free((*m)->steps);
    free((*m)->no_decay);
    free(*m);
    *m = NULL;
}

/* ---- builders ------------------------------------------------------------------------------ */
static cnn_status push_step(cnn_model *m, mstep_kind kind, const char *name, mstep **out)
{
    if (m->n_steps == m->cap_steps) {
        int cap = m->cap_steps ? m->cap_steps * 2 : 64;
        mstep *s = realloc(m->steps, (size_t)cap * sizeof *s);
        CNN_CHECK(s, CNN_ERR_OUT_OF_MEMORY, "model_create: out of host memory");
        m->steps = s;
        m->cap_steps = cap;
    }
    mstep *s = &m->steps[m->n_steps++];
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->t0 = -1;
    snprintf(s->name, sizeof s->name, "%s", name);
    *out = s;
    return CNN_OK;
}

typedef enum { T_BUFFER, T_PARAM, T_PARAM_NO_DECAY } tensor_role;

/* Adds `module.leaf` to the state (and to the parameters unless a buffer), consuming t. */
static cnn_status add_tensor(cnn_model *m, const char *module, const char *leaf,
                             cnn_tensor **t, tensor_role role)
{
    char name[96];
    snprintf(name, sizeof name, "%s.%s", module, leaf);
    cnn_status st = CNN_OK;
    if (role != T_BUFFER) {
        int n = cnn_dict_size(m->params);
        if (n == m->cap_no_decay) {
            int cap = n ? 2 * n : 64;
            bool *nd = realloc(m->no_decay, (size_t)cap * sizeof *nd);
            if (!nd) {
                st = cnn_error(CNN_ERR_OUT_OF_MEMORY, "model_create: out of host memory");
                goto done;
            }
            m->no_decay = nd;
            m->cap_no_decay = cap;
        }
        CNN_TRYG(cnn_tensor_set_requires_grad(*t, true));
        CNN_TRYG(cnn_dict_set(m->params, name, *t));
        m->no_decay[n] = role == T_PARAM_NO_DECAY;
    }
    CNN_TRYG(cnn_dict_set(m->state, name, *t));
done:
    cnn_tensor_free(t);
    return st;
}

/* A conv / linear layer's weight and (b non-NULL) bias, initialised as torchvision does (see
 * minit): the one place that decides initialisation. */
static cnn_status init_layer(const cnn_model *m, cnn_shape ws, int out, minit init,
                             cnn_tensor **w, cnn_tensor **b)
{
    cnn_status st = CNN_OK;
    CNN_TRYG(cnn_tensor_empty(ws, CNN_F32, CNN_CPU, w));
    if (b) CNN_TRYG(cnn_tensor_empty(CNN_SHAPE(out), CNN_F32, CNN_CPU, b));
    if (m->skip_init) return CNN_OK;
    if (init == MI_TORCH_DEFAULT) {
        CNN_TRYG(cnn_init_default_(*w, b ? *b : NULL));
        return CNN_OK;
    }
    if (init == MI_KAIMING_OUT)
        CNN_TRYG(cnn_init_kaiming_normal_(*w, 0.0f, CNN_FAN_OUT, CNN_NONLIN_RELU));
    else
        CNN_TRYG(cnn_init_normal_(*w, 0.0f, 0.01f));
    if (b) CNN_TRYG(cnn_init_zeros_(*b));
done:
    if (st != CNN_OK) {
        cnn_tensor_free(w);
        if (b) cnn_tensor_free(b);
    }
    return st;
}

cnn_status cnn_mdl_conv(cnn_model *m, const char *name, int in_ch, int out_ch, int kernel,
                        int stride, int padding, bool bias, minit init)
{
    mstep *s = NULL;
    CNN_TRY(push_step(m, MS_CONV, name, &s));
    s->t0 = cnn_dict_size(m->state);
    s->bias = bias;
    s->in_ch = in_ch;
    s->out_ch = out_ch;
    s->kernel = kernel;
    s->conv = (cnn_conv2d_params){{stride, stride}, {padding, padding}, {1, 1}, 1};
    cnn_tensor *w = NULL, *b = NULL;
    CNN_TRY(init_layer(m, CNN_SHAPE(out_ch, in_ch, kernel, kernel), out_ch, init, &w,
                       bias ? &b : NULL));
    cnn_status st = add_tensor(m, name, "weight", &w, T_PARAM);
    if (st == CNN_OK && bias) st = add_tensor(m, name, "bias", &b, T_PARAM_NO_DECAY);
    cnn_tensor_free(&b);
    return st;
}

cnn_status cnn_mdl_bn(cnn_model *m, const char *name, int channels, float gamma)
{
    mstep *s = NULL;
    CNN_TRY(push_step(m, MS_BN, name, &s));
    s->t0 = cnn_dict_size(m->state);
    s->in_ch = s->out_ch = channels;
    cnn_tensor *t = NULL;
    CNN_TRY(cnn_tensor_full(CNN_SHAPE(channels), gamma, CNN_CPU, &t));
    CNN_TRY(add_tensor(m, name, "weight", &t, T_PARAM_NO_DECAY));
    CNN_TRY(cnn_tensor_zeros(CNN_SHAPE(channels), CNN_CPU, &t));
    CNN_TRY(add_tensor(m, name, "bias", &t, T_PARAM_NO_DECAY));
    CNN_TRY(cnn_tensor_zeros(CNN_SHAPE(channels), CNN_CPU, &t));
    CNN_TRY(add_tensor(m, name, "running_mean", &t, T_BUFFER));
    CNN_TRY(cnn_tensor_ones(CNN_SHAPE(channels), CNN_CPU, &t));
    CNN_TRY(add_tensor(m, name, "running_var", &t, T_BUFFER));
    int64_t zero = 0;
    CNN_TRY(cnn_tensor_from_i64(CNN_SCALAR, &zero, CNN_CPU, &t));
    return add_tensor(m, name, "num_batches_tracked", &t, T_BUFFER);
}

cnn_status cnn_mdl_linear(cnn_model *m, const char *name, int in_f, int out_f, minit init)
{
    mstep *s = NULL;
    CNN_TRY(push_step(m, MS_LINEAR, name, &s));
    s->t0 = cnn_dict_size(m->state);
    s->bias = true;
    s->in_ch = in_f;
    s->out_ch = out_f;
    cnn_tensor *w = NULL, *b = NULL;
    CNN_TRY(init_layer(m, CNN_SHAPE(out_f, in_f), out_f, init, &w, &b));
    cnn_status st = add_tensor(m, name, "weight", &w, T_PARAM);
    if (st == CNN_OK) st = add_tensor(m, name, "bias", &b, T_PARAM_NO_DECAY);
    cnn_tensor_free(&b);
    return st;
}

cnn_status cnn_mdl_act(cnn_model *m, const char *name, mstep_kind kind)
{
    mstep *s = NULL;
    return push_step(m, kind, name, &s);
}

cnn_status cnn_mdl_pool(cnn_model *m, const char *name, mstep_kind kind, int kernel, int stride,
                        int padding)
{
    mstep *s = NULL;
    CNN_TRY(push_step(m, kind, name, &s));
    s->kernel = kernel;
    s->pool = (cnn_pool2d_params){.kernel = {kernel, kernel}, .stride = {stride, stride},
                                  .padding = {padding, padding}, .dilation = {1, 1}};
    return CNN_OK;
}

cnn_status cnn_mdl_adaptive_avg(cnn_model *m, const char *name, int out_h, int out_w)
{
    mstep *s = NULL;
    CNN_TRY(push_step(m, MS_ADAPTIVE_AVG, name, &s));
    s->out_h = out_h;
    s->out_w = out_w;
    return CNN_OK;
}

cnn_status cnn_mdl_dropout(cnn_model *m, const char *name, float p)
{
    mstep *s = NULL;
    CNN_TRY(push_step(m, MS_DROPOUT, name, &s));
    s->p = p;
    return CNN_OK;
}

cnn_status cnn_mdl_res(cnn_model *m, const char *name, mstep_kind kind)
{
    mstep *s = NULL;
    return push_step(m, kind, name, &s);
}

cnn_status cnn_mdl_conv_params(const cnn_model *m, const mstep *s, cnn_shape in,
                               cnn_conv2d_params *p)
{
    *p = s->conv;
    if (s->pad_to <= 0 || (in.d[2] == s->pad_to && in.d[3] == s->pad_to)) return CNN_OK;
    int small = s->pad_to - 4;
    CNN_CHECK(in.d[2] == small && in.d[3] == small, CNN_ERR_SHAPE,
              "%s: input %lldx%lld must be %dx%d, or %dx%d (zero-padded to %dx%d)", m->name,
              (long long)in.d[2], (long long)in.d[3], s->pad_to, s->pad_to, small, small,
              s->pad_to, s->pad_to);
    /* Zero-padding the image by 2 and a convolution without padding equal a convolution
     * padded by 2: no padded copy of the input is needed. */
    p->padding[0] += 2;
    p->padding[1] += 2;
    return CNN_OK;
}

/* ---- forward ------------------------------------------------------------------------------- */
typedef struct fwd_regs {
    cnn_tensor *cur;    /* the running activation */
    cnn_tensor *saved;  /* the residual block's input */
    cnn_tensor *main;   /* the block's main path while the downsample path runs */
} fwd_regs;

/* One step alone; relu_after (a RES_ADD only): the ReLU step after it joins it
 * (cnn_add_relu). */
static cnn_status run_step(cnn_model *m, const mstep *s, fwd_regs *r, bool training,
                           bool relu_after)
{
    cnn_tensor *x = r->cur, *y = NULL;
#define T(k) cnn_dict_at(m->state, s->t0 + (k))
    cnn_status st = CNN_OK;
    switch (s->kind) {
    case MS_CONV: {
        cnn_conv2d_params p;
        CNN_TRY(cnn_mdl_conv_params(m, s, x->shape, &p));
        st = cnn_conv2d(x, T(0), s->bias ? T(1) : NULL, &p, &y);
        break;
    }
    case MS_BN:
        st = cnn_batch_norm(x, T(2), T(3), T(0), T(1), training, 0.1f, 1e-5f, &y);
        /* num_batches_tracked, counted on its device: no wait for the GPU per BN layer. */
        if (st == CNN_OK && training) st = cnn_tensor_add_i64_(T(4), 1);
        break;
    case MS_LINEAR: st = cnn_linear(x, T(0), T(1), &y); break;
    case MS_RELU: st = cnn_relu(x, &y); break;
    case MS_TANH: st = cnn_tanh(x, &y); break;
    case MS_MAXPOOL: st = cnn_max_pool2d(x, &s->pool, &y); break;
    case MS_AVGPOOL: st = cnn_avg_pool2d(x, &s->pool, &y); break;
    case MS_ADAPTIVE_AVG: st = cnn_adaptive_avg_pool2d(x, s->out_h, s->out_w, &y); break;
    case MS_DROPOUT: st = cnn_dropout(x, s->p, training, &y); break;
    case MS_FLATTEN: st = cnn_flatten(x, 1, &y); break;
    case MS_RES_SAVE:
        CNN_ASSERT(!r->saved && !r->main);
        r->saved = cnn_tensor_retain(x);
        return CNN_OK;
    case MS_RES_BRANCH:
        CNN_ASSERT(r->saved && !r->main);
        r->main = r->cur;
        r->cur = r->saved;
        r->saved = NULL;
        return CNN_OK;
    case MS_RES_ADD:
        CNN_ASSERT(r->saved || r->main);
        st = relu_after ? cnn_add_relu(r->main ? r->main : r->saved, x, &y)
                        : cnn_add(r->main ? r->main : r->saved, x, &y);
        cnn_tensor_free(&r->main);
        cnn_tensor_free(&r->saved);
        break;
    }
#undef T
    if (st != CNN_OK) {
        cnn_tensor_free(&y);
        return cnn_error_prefix(st, "%s: %s", m->name, s->name);
    }
    /* Dropping the input here leaves only what the ops saved for backward alive. */
    cnn_tensor_free(&r->cur);
    r->cur = y;
    return CNN_OK;
}

/* ---- fusion -------------------------------------------------------------------------------
 * A conv step and what follows it run as one cnn_conv2d_fused: a ReLU, a residual ADD (the
 * other operand is the block's saved input or its set-aside main path) with or without a ReLU
 * after it, and, in an evaluation pass with grad mode off, a batch norm folded into the conv's
 * weights first (cnn_batch_norm_fold; recomputed every pass, so it never goes stale). Without
 * the BN, the fused op gives the bits of the steps run alone, in training too; so does a
 * residual ADD and its ReLU joined (cnn_add_relu) where a BN keeps the conv apart. */
typedef struct fused_span {
    int bn;          /* the BN step folded in, or -1 */
    bool add, relu;
    int n;           /* steps it covers, the conv included */
} fused_span;

static fused_span plan_fusion(const cnn_model *m, int i, bool fold_bn)
{
    fused_span f = {-1, false, false, 1};
    int j = i + 1;
    if (m->no_fusion) return f;
    if (j < m->n_steps && m->steps[j].kind == MS_BN) {
        if (!fold_bn) return f;
        f.bn = j++;
    }
    if (j < m->n_steps && m->steps[j].kind == MS_RES_ADD) {
        f.add = true;
        j++;
    }
    if (j < m->n_steps && m->steps[j].kind == MS_RELU) {
        f.relu = true;
        j++;
    }
    f.n = j - i;
    return f;
}

static cnn_status run_fused(cnn_model *m, int i, const fused_span *f, fwd_regs *r)
{
    const mstep *s = &m->steps[i];
    cnn_tensor *w = cnn_dict_at(m->state, s->t0), *b = s->bias ? cnn_dict_at(m->state, s->t0 + 1)
                                                               : NULL;
    cnn_tensor *wf = NULL, *bf = NULL, *y = NULL;
    cnn_conv2d_params p;
    CNN_TRY(cnn_mdl_conv_params(m, s, r->cur->shape, &p));
    cnn_status st = CNN_OK;
    if (f->bn >= 0) {
        const int t = m->steps[f->bn].t0; /* weight, bias, running_mean, running_var */
#define BN(k) cnn_dict_at(m->state, t + (k))
        st = cnn_batch_norm_fold(w, b, BN(2), BN(3), BN(0), BN(1), 1e-5f, &wf, &bf);
#undef BN
    }
    if (st == CNN_OK) {
        CNN_ASSERT(!f->add || r->saved || r->main);
        const cnn_tensor *z = !f->add ? NULL : r->main ? r->main : r->saved;
        st = cnn_conv2d_fused(r->cur, wf ? wf : w, wf ? bf : b, z,
                              f->relu ? CNN_ACT_RELU : CNN_ACT_NONE, &p, &y);
    }
    cnn_tensor_free(&wf);
    cnn_tensor_free(&bf);
    if (st != CNN_OK)
        return cnn_error_prefix(st, "%s: %s%s%s%s", m->name, s->name, f->bn >= 0 ? " + bn" : "",
                                f->add ? " + add" : "", f->relu ? " + relu" : "");
    if (f->add) {
        cnn_tensor_free(&r->main);
        cnn_tensor_free(&r->saved);
    }
    cnn_tensor_free(&r->cur);
    r->cur = y;
    return CNN_OK;
}

cnn_status cnn_model_forward(cnn_model *m, const cnn_tensor *x, bool training, cnn_tensor **logits)
{
    CNN_CHECK(logits, CNN_ERR_INVALID_ARG, "model_forward: logits is NULL");
    *logits = NULL;
    CNN_CHECK(m, CNN_ERR_INVALID_ARG, "model_forward: model is NULL");
    CNN_TRY(cnn_check_f32(m->name, "x", x));
    CNN_CHECK(x->shape.ndim == 4 && x->shape.d[1] == m->info.in_channels, CNN_ERR_SHAPE,
              "%s: input %s must be (N, %d, H, W)", m->name, cnn_shape_of(x),
              m->info.in_channels);
    CNN_CHECK(x->device.type == m->device.type && x->device.index == m->device.index,
              CNN_ERR_DEVICE, "%s: input is on %s:%d but the model is on %s:%d (cnn_model_to)",
              m->name, x->device.type == CNN_DEVICE_CUDA ? "cuda" : "cpu", x->device.index,
              m->device.type == CNN_DEVICE_CUDA ? "cuda" : "cpu", m->device.index);
    CNN_CHECK(x->shape.d[0] >= 1, CNN_ERR_SHAPE, "%s: input %s holds no sample (batch size 0)",
              m->name, cnn_shape_of(x));
    /* Shapes first, so a too-small input fails before any work (no running statistic moved),
     * naming the layer. */
    CNN_TRY(cnn_mdl_shapes(m, x->shape, training, NULL, NULL));
    fwd_regs r = {cnn_tensor_retain((cnn_tensor *)x), NULL, NULL};
    cnn_status st = CNN_OK;
    const bool fold_bn = !training && !cnn_is_grad_enabled();
    for (int i = 0; i < m->n_steps && st == CNN_OK;) {
        const mstep *s = &m->steps[i];
        if (s->kind == MS_CONV) {
            const fused_span f = plan_fusion(m, i, fold_bn);
            if (f.n > 1) {
                st = run_fused(m, i, &f, &r);
                i += f.n;
                continue;
            }
        }
        /* A residual ADD that no conv took (a BN before it in training) still takes its ReLU. */
        const bool add_relu = s->kind == MS_RES_ADD && !m->no_fusion && i + 1 < m->n_steps &&
                              m->steps[i + 1].kind == MS_RELU;
        st = run_step(m, s, &r, training, add_relu);
        i += add_relu ? 2 : 1;
    }
    if (st == CNN_OK) {
        *logits = r.cur;
        r.cur = NULL;
    }
    cnn_tensor_free(&r.cur);
    cnn_tensor_free(&r.saved);
    cnn_tensor_free(&r.main);
    return st;
}

void cnn_model_set_fusion(cnn_model *m, bool on)
{
    if (m) m->no_fusion = !on;
}

bool cnn_model_fusion(const cnn_model *m) { return m && !m->no_fusion; }

/* ---- state, parameters, devices ------------------------------------------------------------ */
cnn_model_info cnn_model_get_info(const cnn_model *m)
{
    cnn_model_info none = {0};
    return m ? m->info : none;
}

cnn_dict *cnn_model_state(cnn_model *m) { return m ? m->state : NULL; }
cnn_dict *cnn_model_parameters(cnn_model *m) { return m ? m->params : NULL; }

bool cnn_model_param_no_decay(const cnn_model *m, int i)
{
    return m && i >= 0 && i < cnn_dict_size(m->params) && m->no_decay[i];
}

int64_t cnn_model_num_parameters(const cnn_model *m)
{
    int64_t n = 0;
    for (int i = 0; m && i < cnn_dict_size(m->params); i++)
        n += cnn_tensor_numel(cnn_dict_at(m->params, i));
    return n;
}

cnn_device cnn_model_device(const cnn_model *m) { return m ? m->device : CNN_CPU; }

/* Gives t the storage (and device, strides) of `src` and src t's: callers that hold t (an
 * optimizer, the parameter dict) keep a valid handle, as module.to() keeps its Parameters. */
static void swap_storage(cnn_tensor *t, cnn_tensor *src)
{
    cnn_tensor tmp = *t;
    t->storage = src->storage;
    t->offset = src->offset;
    t->device = src->device;
    memcpy(t->strides, src->strides, sizeof t->strides);
    src->storage = tmp.storage;
    src->offset = tmp.offset;
    src->device = tmp.device;
    memcpy(src->strides, tmp.strides, sizeof src->strides);
}

cnn_status cnn_model_to(cnn_model *m, cnn_device device)
{
    CNN_CHECK(m, CNN_ERR_INVALID_ARG, "model_to: model is NULL");
    if (device.type == CNN_DEVICE_CPU) device.index = 0; /* one CPU, as tensors say */
    int n = cnn_dict_size(m->state);
    cnn_tensor **moved = calloc(2 * (size_t)n + 1, sizeof *moved); /* data, grad per tensor */
    CNN_CHECK(moved, CNN_ERR_OUT_OF_MEMORY, "model_to: out of host memory");
    cnn_status st = CNN_OK;
    /* Copy everything first: a failure (e.g. out of device memory) leaves the model as it was. */
    for (int i = 0; i < n && st == CNN_OK; i++) {
        cnn_tensor *t = cnn_dict_at(m->state, i);
        if (t->device.type == device.type && t->device.index == device.index) continue;
        st = cnn_tensor_to(t, device, &moved[2 * i]);
        if (st == CNN_OK && t->grad) st = cnn_tensor_to(t->grad, device, &moved[2 * i + 1]);
        if (st != CNN_OK)
            st = cnn_error_prefix(st, "%s: model_to: %s", m->name, cnn_dict_name(m->state, i));
    }
    for (int i = 0; i < n && st == CNN_OK; i++) {
        cnn_tensor *t = cnn_dict_at(m->state, i);
        if (moved[2 * i]) swap_storage(t, moved[2 * i]);
        if (moved[2 * i + 1]) {
            cnn_tensor_free(&t->grad);
            t->grad = moved[2 * i + 1];
            moved[2 * i + 1] = NULL;
        }
    }
    if (st == CNN_OK) m->device = device;
    for (int i = 0; i < 2 * n; i++) cnn_tensor_free(&moved[i]);
    free(moved);
    return st;
}
