/* summary.c — a model's steps walked over shapes only: validates an input size before any
 * work, and gives the per-layer output shapes, parameter counts and MACs of the summary.
 * It touches no tensor data. */
#include "model.h"

static const char *type_name(mstep_kind k)
{
    switch (k) {
    case MS_CONV: return "Conv2d";
    case MS_BN: return "BatchNorm2d";
    case MS_LINEAR: return "Linear";
    case MS_RELU: return "ReLU";
    case MS_TANH: return "Tanh";
    case MS_MAXPOOL: return "MaxPool2d";
    case MS_AVGPOOL: return "AvgPool2d";
    case MS_ADAPTIVE_AVG: return "AdaptiveAvgPool2d";
    case MS_DROPOUT: return "Dropout";
    case MS_FLATTEN: return "Flatten";
    case MS_RES_ADD: return "Add";
    default: return "";
    }
}

/* a * b * c * d into *r; false when it passes int64 (sizes summaries are asked for, past
 * ~10^7 pixels a side). */
static bool mul4(int64_t a, int64_t b, int64_t c, int64_t d, int64_t *r)
{
    return !__builtin_mul_overflow(a, b, r) && !__builtin_mul_overflow(*r, c, r) &&
           !__builtin_mul_overflow(*r, d, r);
}

static cnn_status step_shape(const cnn_model *m, const mstep *s, cnn_shape in, bool training,
                             cnn_shape *out, int64_t *params, int64_t *macs)
{
    char b[64], c[64];
    *out = in;
    *params = *macs = 0;
    bool spatial = s->kind == MS_CONV || s->kind == MS_MAXPOOL || s->kind == MS_AVGPOOL ||
                   s->kind == MS_ADAPTIVE_AVG || s->kind == MS_FLATTEN;
    CNN_CHECK(!spatial || in.ndim == 4, CNN_ERR_SHAPE, "%s: %s (%s) needs a 4-d input, got %s",
              m->name, s->name, type_name(s->kind), cnn_shape_str(in, b, sizeof b));
    switch (s->kind) {
    case MS_CONV: {
        CNN_CHECK(in.d[1] == s->in_ch, CNN_ERR_SHAPE, "%s: %s expects %d input channels, got %s",
                  m->name, s->name, s->in_ch, cnn_shape_str(in, b, sizeof b));
        cnn_conv2d_params p;
        CNN_TRY(cnn_mdl_conv_params(m, s, in, &p));
        *out = CNN_SHAPE(in.d[0], s->out_ch,
                         cnn_window_out(in.d[2], s->kernel, p.stride[0], p.padding[0], 1, false),
                         cnn_window_out(in.d[3], s->kernel, p.stride[1], p.padding[1], 1, false));
        int64_t w = (int64_t)s->out_ch * s->in_ch * s->kernel * s->kernel;
        *params = w + (s->bias ? s->out_ch : 0);
        CNN_CHECK(mul4(w, out->d[0], out->d[2], out->d[3], macs), CNN_ERR_INVALID_ARG,
                  "%s: %s: the multiply-add count for %s passes 64 bits", m->name, s->name,
                  cnn_shape_str(in, b, sizeof b));
        break;
    }
    case MS_BN: {
        CNN_CHECK(in.ndim >= 2 && in.d[1] == s->in_ch, CNN_ERR_SHAPE,
                  "%s: %s expects %d channels, got %s", m->name, s->name, s->in_ch,
                  cnn_shape_str(in, b, sizeof b));
        /* As cnn_batch_norm refuses it, but before any layer has run: a failing training pass
         * would have updated the running statistics of every batch norm before this one. */
        int64_t per_channel = in.d[0];
        for (int i = 2; i < in.ndim; i++) per_channel *= in.d[i];
        CNN_CHECK(!training || per_channel > 1, CNN_ERR_SHAPE,
                  "%s: %s: batch_norm: expected more than 1 value per channel when training, got "
                  "input of shape %s", m->name, s->name, cnn_shape_str(in, b, sizeof b));
        *params = 2 * (int64_t)s->in_ch;
        break;
    }
    case MS_LINEAR:
        CNN_CHECK(in.ndim == 2 && in.d[1] == s->in_ch, CNN_ERR_SHAPE,
                  "%s: %s expects (N, %d) features, got %s", m->name, s->name, s->in_ch,
                  cnn_shape_str(in, b, sizeof b));
        *out = CNN_SHAPE(in.d[0], s->out_ch);
        *params = (int64_t)s->in_ch * s->out_ch + s->out_ch;
        CNN_CHECK(mul4(s->in_ch, s->out_ch, in.d[0], 1, macs), CNN_ERR_INVALID_ARG,
                  "%s: %s: the multiply-add count for %s passes 64 bits", m->name, s->name,
                  cnn_shape_str(in, b, sizeof b));
        break;
    case MS_MAXPOOL:
    case MS_AVGPOOL: {
        const cnn_pool2d_params *p = &s->pool;
        for (int i = 0; i < 2; i++) {
            int dil = s->kind == MS_MAXPOOL ? p->dilation[i] : 1;
            out->d[2 + i] = cnn_window_out(in.d[2 + i], p->kernel[i], p->stride[i],
                                           p->padding[i], dil, p->ceil_mode);
        }
        break;
    }
    case MS_ADAPTIVE_AVG:
        out->d[2] = s->out_h;
        out->d[3] = s->out_w;
        break;
    case MS_FLATTEN: *out = CNN_SHAPE(in.d[0], in.d[1] * in.d[2] * in.d[3]); break;
    default: break;
    }
    for (int i = 0; i < out->ndim; i++)
        CNN_CHECK(out->d[i] >= 1, CNN_ERR_SHAPE, "%s: input too small: %s (%s) maps %s to %s "
                  "(the smallest input is %dx%d)", m->name, s->name, type_name(s->kind),
                  cnn_shape_str(in, b, sizeof b), cnn_shape_str(*out, c, sizeof c),
                  m->info.min_h, m->info.min_w);
    return CNN_OK;
}

cnn_status cnn_mdl_shapes(const cnn_model *m, cnn_shape in, bool training,
                          cnn_layer_summary *rows, int *n_rows)
{
    cnn_shape cur = in, saved = CNN_SCALAR, main_path = CNN_SCALAR;
    bool have_saved = false, have_main = false;
    int nr = 0;
    for (int i = 0; i < m->n_steps; i++) {
        const mstep *s = &m->steps[i];
        cnn_shape out = cur;
        int64_t params = 0, macs = 0;
        if (s->kind == MS_RES_SAVE) {
            saved = cur;
            have_saved = true;
            continue;
        }
        if (s->kind == MS_RES_BRANCH) {
            CNN_ASSERT(have_saved && !have_main);
            main_path = cur;
            cur = saved;
            have_main = true;
            have_saved = false;
            continue;
        }
        if (s->kind == MS_RES_ADD) {
            CNN_ASSERT(have_saved || have_main);
            CNN_ASSERT(cnn_shape_equal(have_main ? main_path : saved, cur));
            have_main = have_saved = false;
        } else {
            CNN_TRY(step_shape(m, s, cur, training, &out, &params, &macs));
        }
        if (rows) {
            cnn_layer_summary *r = &rows[nr];
            memset(r, 0, sizeof *r);
            snprintf(r->name, sizeof r->name, "%s", s->name);
            snprintf(r->type, sizeof r->type, "%s", type_name(s->kind));
            r->out_shape = out;
            r->params = params;
            r->macs = macs;
            r->in_shape = cur;
            if (s->kind == MS_CONV) CNN_TRY(cnn_mdl_conv_params(m, s, cur, &r->conv));
            if (s->kind == MS_MAXPOOL || s->kind == MS_AVGPOOL) r->pool = s->pool;
            if (s->kind == MS_DROPOUT) r->dropout_p = s->p;
        }
        nr++;
        cur = out;
    }
    if (n_rows) *n_rows = nr;
    return CNN_OK;
}

cnn_status cnn_model_summarize(const cnn_model *m, int height, int width, cnn_model_summary *out)
{
    CNN_CHECK(m && out, CNN_ERR_INVALID_ARG, "model_summarize: NULL argument");
    memset(out, 0, sizeof *out);
    CNN_CHECK(height > 0 && width > 0, CNN_ERR_INVALID_ARG,
              "%s: summary input size %dx%d must be positive", m->name, height, width);
    cnn_layer_summary *rows = calloc((size_t)m->n_steps + 1, sizeof *rows);
    CNN_CHECK(rows, CNN_ERR_OUT_OF_MEMORY, "model_summarize: out of host memory");
    cnn_shape in = CNN_SHAPE(1, m->info.in_channels, height, width);
    int n = 0;
    cnn_status st = cnn_mdl_shapes(m, in, false, rows, &n);
    if (st != CNN_OK) {
        free(rows);
        return st;
    }
    out->layers = rows;
    out->n_layers = n;
    out->in_shape = in;
    out->out_shape = n ? rows[n - 1].out_shape : in;
    for (int i = 0; i < n; i++) {
        out->total_params += rows[i].params;
        if (__builtin_add_overflow(out->total_macs, rows[i].macs, &out->total_macs)) {
            cnn_model_summary_free(out);
            return cnn_error(CNN_ERR_INVALID_ARG, "%s: the multiply-add count at %dx%d passes "
                             "64 bits", m->name, height, width);
        }
    }
    return CNN_OK;
}

void cnn_model_summary_free(cnn_model_summary *s)
{
    if (!s) return;
    free(s->layers);
    memset(s, 0, sizeof *s);
}

/* snprintf that keeps counting the needed length once buf is full. */
static void put(char *buf, size_t n, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void put(char *buf, size_t n, size_t *len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(*len < n ? buf + *len : NULL, *len < n ? n - *len : 0, fmt, ap);
    va_end(ap);
    if (k > 0) *len += (size_t)k;
}

size_t cnn_model_summary_format(const cnn_model_summary *s, char *buf, size_t n)
{
    size_t len = 0;
    char b[64];
    if (buf && n) buf[0] = '\0';
    if (!s) return 0;
    if (!buf) n = 0;
    put(buf, n, &len, "%-32s %-18s %-20s %12s %16s\n", "layer", "type", "output", "params", "MACs");
    for (int i = 0; i < s->n_layers; i++) {
        const cnn_layer_summary *r = &s->layers[i];
        put(buf, n, &len, "%-32s %-18s %-20s %12lld %16lld\n", r->name, r->type,
            cnn_shape_str(r->out_shape, b, sizeof b), (long long)r->params, (long long)r->macs);
    }
    put(buf, n, &len, "input %s: %lld parameters, %lld MACs (%.2f G)\n",
        cnn_shape_str(s->in_shape, b, sizeof b), (long long)s->total_params,
        (long long)s->total_macs, (double)s->total_macs / 1e9);
    return len;
}
