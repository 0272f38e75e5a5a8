/* cuda_api.h — the plain-C face of cuda/: what core/, layers/ and data/loader.c may call.
 * Declared here, defined in the .c and .cu files of cuda/; only built (and only called) when
 * CNN_WITH_CUDA is 1. It includes no CUDA header, so nothing outside cuda/ ever does. */
#ifndef CNN_CUDA_API_H
#define CNN_CUDA_API_H

#include "../core/internal.h"

/* ---- runtime (cuda/device.c) ------------------------------------------------------------- */
/* Number of usable devices; 0 (not an error) without a GPU or driver. */
int cnn_cuda_count_devices(void);
/* Creates / releases the per-context GPU state (ctx->gpu): stream, lazily created handles. */
cnn_status cnn_cuda_context_init(cnn_context *ctx);
void cnn_cuda_context_release(cnn_context *ctx);
/* Waits for the context's stream. */
cnn_status cnn_cuda_synchronize(cnn_context *ctx);
/* The two CUDA events of a cnn_timer (core/timer.c), on ctx's device: created, recorded on
 * ctx's stream (start, or stop), read (waits for the stop event), destroyed (NULL-safe). */
cnn_status cnn_cuda_timer_create(cnn_context *ctx, void **out);
cnn_status cnn_cuda_timer_record(cnn_context *ctx, void *events, bool stop);
cnn_status cnn_cuda_timer_elapsed(void *events, double *ms);
void cnn_cuda_timer_destroy(void *events);

/* ---- CUDA graphs (cuda/graph.c) ----------------------------------------------------------- */
/* Whether ctx's stream is being captured into a graph (cnn_graph_capture); false for NULL and
 * CPU contexts. Ops whose work a replay could not repeat faithfully refuse to run then. */
bool cnn_cuda_capturing(const cnn_context *ctx);
/* Registers hook with the graph being captured on ctx: each replay calls hook(ud, false) before
 * its launch (an error refuses the replay, nothing runs) and hook(ud, true) after it. ud
 * (size bytes) is copied. */
cnn_status cnn_cuda_capture_on_replay(cnn_context *ctx, cnn_status (*hook)(void *ud, bool commit),
                                      const void *ud, size_t size);
/* Inside a capture on ctx: t (retained) stays alive until the graph is destroyed, as the
 * captured work reads or writes it and its owner might let go of it sooner. NULL: nothing. */
cnn_status cnn_cuda_capture_keep(cnn_context *ctx, cnn_tensor *t);

/* Inside a capture on ctx: n_counters Philox counters of the graph's draw (cnn_rng_draw_take).
 * *state: the graph's device tensor {seed, base} (borrowed), set from the context stream before
 * each replay, which then advances the stream by all the counters the graph took; *offset:
 * these counters' first, counted from base. */
cnn_status cnn_cuda_capture_rng(cnn_context *ctx, int64_t n_counters, const cnn_tensor **state,
                                uint64_t *offset);

/* ---- memory (cuda/allocator.c) ------------------------------------------------------------ */
/* Device memory for a storage from the caching allocator: sets s->data, s->release and
 * s->allocator. `op` names the caller for an out-of-memory message. */
cnn_status cnn_cuda_storage_alloc(cnn_context *ctx, cnn_storage *s, size_t bytes, const char *op);
/* A device storage from the allocator is about to be used by ctx's stream as well as the stream
 * that allocated it: its block will be reused only after the work queued on ctx's stream by
 * the time the storage is released has completed (one extra stream per block). */
cnn_status cnn_cuda_record_stream(cnn_context *ctx, cnn_storage *s);
/* Page-locked host memory for a CPU storage (cuda/host_alloc.c): sets s->data, s->release and
 * s->allocator. CNN_ERR_DEVICE without a GPU. */
cnn_status cnn_cuda_pinned_storage_alloc(cnn_storage *s, size_t bytes, const char *op);
bool cnn_cuda_storage_is_pinned(const cnn_storage *s);
/* An asynchronous copy on ctx's stream reads or writes pinned storage s: its block is reused
 * only after that copy is done. No-op for other storage. */
cnn_status cnn_cuda_pinned_record_use(cnn_context *ctx, cnn_storage *s);
/* The same for the pinned block that holds host address p, if one does (the caller copied
 * from a pointer into a pinned tensor's data); no-op for other memory. */
cnn_status cnn_cuda_pinned_record_use_at(cnn_context *ctx, const void *p);
/* Waits until the copies recorded on pinned storage s are done (at once for other storage),
 * and only for them: not for work queued after them. */
cnn_status cnn_cuda_pinned_wait(const cnn_storage *s);
/* Frees the cached pinned blocks no copy still uses. */
void cnn_cuda_pinned_empty_cache(void);
/* Makes `to`'s stream wait for the work queued so far on `from`'s stream (same device), and
 * records `to`'s use of each of the n device tensors' storage (cnn_cuda_record_stream). */
cnn_status cnn_cuda_stream_handoff(cnn_context *from, cnn_context *to, cnn_tensor *const *ts,
                                   int n);
/* (cuda/memcpy.c) Copies bytes between any two of host and device memory, ordered on the
 * context stream; returns once a copy into host memory has landed. Inside a graph capture a
 * copy to or from the host is CNN_ERR_UNSUPPORTED. */
cnn_status cnn_cuda_memcpy(cnn_context *ctx, void *dst, cnn_device dst_dev, const void *src,
                           cnn_device src_dev, size_t bytes);
/* The same from the device into pinned host memory, returning before it lands (under a GPU
 * context): the caller records it on the pinned storage (cnn_cuda_pinned_record_use). */
cnn_status cnn_cuda_memcpy_to_pinned(cnn_context *ctx, void *dst, const void *src,
                                     cnn_device src_dev, size_t bytes);

/* ---- basic tensor kernels (cuda/tensor_ops.cu) --------------------------------------------- */
cnn_status cnn_cuda_fill_f32(cnn_context *ctx, float *p, float value, int64_t n);
/* p[i] += v over n int64s (BN's num_batches_tracked, without a round trip to the host). */
cnn_status cnn_cuda_add_i64(cnn_context *ctx, int64_t *p, int64_t v, int64_t n);
/* dst[i] += src[i]. */
cnn_status cnn_cuda_accumulate_f32(cnn_context *ctx, float *dst, const float *src, int64_t n);
/* Element-by-element copy between two strided views of one shape (rank <= 4, element size
 * esize, strides in bytes), both in device memory. */
cnn_status cnn_cuda_strided_copy(cnn_context *ctx, void *dst, const int64_t *dst_byte_strides,
                                 const void *src, const int64_t *src_byte_strides,
                                 cnn_shape shape, size_t esize);
/* Philox stream into p: dist 0 uniform [a, b), 1 normal (mean a, std b), as core/rng.c. */
cnn_status cnn_cuda_random_f32(cnn_context *ctx, float *p, int64_t n, int dist, float a, float b,
                               cnn_rng_draw d);
/* p[0] = a, p[1] = b, on the stream (a graph's random state before a replay). */
cnn_status cnn_cuda_store_u64x2(cnn_context *ctx, uint64_t *p, uint64_t a, uint64_t b);

/* ---- Pooling, batch norm, LRN and linear (cuda/pool.cu, pool_cudnn.c, batchnorm.cu,
 * batchnorm_cudnn.c, lrn.cu, gemm_cublas.c) ----------------------------------------------------
 * Every pointer is device memory of a contiguous tensor; the layer files check shapes first. */
/* Whether a window's padded extents, reach and stride (each axis) stay far inside int, as the
 * hand-written kernels' 32-bit index arithmetic and cuDNN's int descriptors need: a padding,
 * stride or dilation near 2^30 is valid (the CPU takes it) but beyond both. */
static inline bool cnn_cuda_window_fits_int(int64_t h, int64_t w, int kh, int kw, int sh, int sw,
                                            int ph, int pw, int dh, int dw)
{
    const int64_t lim = (int64_t)1 << 30;
    return h + 2 * (int64_t)ph + (int64_t)kh * dh + sh < lim &&
           w + 2 * (int64_t)pw + (int64_t)kw * dw + sw < lim;
}

/* One 2-D pooling call over `planes` = N * C planes of (H, W), as layers/pool.c resolved it. */
typedef struct cnn_cuda_pool_geom {
    int64_t planes, h, w, oh, ow;
    int kh, kw, sh, sw, ph, pw, dh, dw;
    bool exclude_pad;
} cnn_cuda_pool_geom;
/* Max pooling with PyTorch's argmax (first maximum, NaN wins; h * W + w in the plane, -1 for a
 * window wholly in padding; idx NULL when no backward will run). Backward gathers, so it is
 * deterministic and matches the CPU. */
cnn_status cnn_cuda_max_pool2d_forward(cnn_context *ctx, const cnn_cuda_pool_geom *g,
                                       const float *x, float *y, int32_t *idx);
cnn_status cnn_cuda_max_pool2d_backward(cnn_context *ctx, const cnn_cuda_pool_geom *g,
                                        const float *dy, const int32_t *idx, float *dx);
cnn_status cnn_cuda_avg_pool2d_forward(cnn_context *ctx, const cnn_cuda_pool_geom *g,
                                       const float *x, float *y);
cnn_status cnn_cuda_avg_pool2d_backward(cnn_context *ctx, const cnn_cuda_pool_geom *g,
                                        const float *dy, float *dx);
/* Adaptive average pooling to (g->oh, g->ow); only planes, h, w, oh, ow of g are used. */
cnn_status cnn_cuda_adaptive_avg_pool2d_forward(cnn_context *ctx, const cnn_cuda_pool_geom *g,
                                                const float *x, float *y);
cnn_status cnn_cuda_adaptive_avg_pool2d_backward(cnn_context *ctx, const cnn_cuda_pool_geom *g,
                                                 const float *dy, float *dx);
/* cuDNN pooling (no dilation, output size as floor mode): max, or average including or
 * excluding the padding as g->exclude_pad says. Backward needs the forward's x and y. */
cnn_status cnn_cudnn_pool2d_forward(cnn_context *ctx, const cnn_cuda_pool_geom *g, bool max_pool,
                                    const float *x, float *y);
cnn_status cnn_cudnn_pool2d_backward(cnn_context *ctx, const cnn_cuda_pool_geom *g, bool max_pool,
                                     const float *x, const float *y, const float *dy, float *dx);

/* Batch norm over x seen as (N, C, inner), with the (4, C) statistics layout of
 * layers/batchnorm.c: rows mean_hi, mean_lo, invstd, weight. The caller writes the weight row.
 * Training: batch mean/variance (two passes, double accumulation) into rows 0..2, and rm/rv
 * (may be NULL) updated with momentum and the unbiased variance. Eval: rows from rm/rv. */
cnn_status cnn_cuda_batch_norm_stats(cnn_context *ctx, const float *x, int64_t n, int64_t c,
                                     int64_t inner, bool training, float momentum, float eps,
                                     float *rm, float *rv, float *stats);
/* y = (x - mean) * invstd * weight + bias (bias may be NULL). */
cnn_status cnn_cuda_batch_norm_forward(cnn_context *ctx, const float *x, const float *stats,
                                       const float *bias, int64_t n, int64_t c, int64_t inner,
                                       float *y);
/* dx (training: through the batch statistics), dweight, dbias; any output may be NULL. */
cnn_status cnn_cuda_batch_norm_backward(cnn_context *ctx, const float *x, const float *dy,
                                        const float *stats, int64_t n, int64_t c, int64_t inner,
                                        bool training, float *dx, float *dw, float *db);
/* cuDNN spatial batch norm, training: y, rows 0..2 of stats (cuDNN's saved mean and inverse
 * std, mean_lo 0) and rm/rv (both NULL or both given) with factor momentum. Uses the weight row
 * of stats as the scale; bias may be NULL. eps must be >= CUDNN_BN_MIN_EPSILON. */
cnn_status cnn_cudnn_batch_norm_forward_training(cnn_context *ctx, const float *x, int64_t n,
                                                 int64_t c, int64_t inner, float *stats,
                                                 const float *bias, float momentum, float eps,
                                                 float *rm, float *rv, float *y);
/* cnn_batch_norm_fold: s = weight / sqrt(rv + eps) in double per channel (weight, bias, b may
 * be NULL: 1, 0, 0); w_out (k, per) = w * s, b_out (k) = (b - rm) * s + bias. */
cnn_status cnn_cuda_batch_norm_fold(cnn_context *ctx, const float *w, const float *b,
                                    const float *rm, const float *rv, const float *weight,
                                    const float *bias, double eps, int64_t k, int64_t per,
                                    float *w_out, float *b_out);
/* cuDNN inference: y from running statistics and the weight row of stats. */
cnn_status cnn_cudnn_batch_norm_forward_inference(cnn_context *ctx, const float *x, int64_t n,
                                                  int64_t c, int64_t inner, const float *stats,
                                                  const float *bias, const float *rm,
                                                  const float *rv, float eps, float *y);
/* cuDNN training backward from the saved statistics: dx, and dw/db (may be NULL). */
cnn_status cnn_cudnn_batch_norm_backward(cnn_context *ctx, const float *x, const float *dy,
                                         const float *stats, int64_t n, int64_t c, int64_t inner,
                                         float eps, float *dx, float *dw, float *db);
/* The smallest eps cuDNN batch norm accepts (CUDNN_BN_MIN_EPSILON). */
double cnn_cudnn_bn_min_epsilon(void);

/* LRN across channels of x seen as (N, C, inner), torch.nn.LocalResponseNorm's window. The
 * backward needs a scratch buffer t of x's size. */
cnn_status cnn_cuda_lrn_forward(cnn_context *ctx, const float *x, int64_t n, int64_t c,
                                int64_t inner, int size, float alpha, float beta, float k,
                                float *y);
cnn_status cnn_cuda_lrn_backward(cnn_context *ctx, const float *x, const float *dy, int64_t n,
                                 int64_t c, int64_t inner, int size, float alpha, float beta,
                                 float k, float *t, float *dx);

/* Linear with cuBLAS sgemm (TF32 as the context says): y = x w^T + b (b may be NULL).
 * x: (n, in), w: (out, in), y: (n, out). */
cnn_status cnn_cuda_linear_forward(cnn_context *ctx, const float *x, const float *w,
                                   const float *b, int64_t n, int64_t in, int64_t out, float *y);
/* dx = dy w, dw = dy^T x, db = column sums of dy; each output may be NULL. */
cnn_status cnn_cuda_linear_backward(cnn_context *ctx, const float *x, const float *w,
                                    const float *dy, int64_t n, int64_t in, int64_t out,
                                    float *dx, float *dw, float *db);

/* ---- Convolution (cuda/conv2d.cu hand-written, cuda/conv2d_cudnn.c cuDNN) ------------------ */
/* A conv2d's geometry with every default applied, as layers/conv2d.c resolves it.
 * x: (n, c, h, w), w: (k, cg, r, s), y: (n, k, p, q); cg = c/groups, kg = k/groups. */
typedef struct cnn_cuda_conv {
    int64_t n, c, h, w, k, r, s, p, q, cg, kg;
    int sh, sw, ph, pw, dh, dw, groups;
} cnn_cuda_conv;
/* What a conv forward applies to each output element as it writes it:
 * y = act(conv + b[k] + z), b (k) and z (n, k, p, q) each NULL when absent, act ReLU or none;
 * the adds in that order (cnn_conv2d's bias, then cnn_add's). */
typedef struct cnn_cuda_epilogue {
    const float *b, *z;
    bool relu;
} cnn_cuda_epilogue;
/* Hand-written kernels (never cuDNN), exact FP32 and deterministic (no float atomics). All
 * pointers are contiguous device memory; every element of the output is written.
 * y = conv(x, w) + b (b may be NULL). */
cnn_status cnn_cuda_conv2d_forward(cnn_context *ctx, const cnn_cuda_conv *g, const float *x,
                                   const float *w, const float *b, float *y);
/* y = act(conv(x, w) + b + z): bias and ReLU applied as the GEMM stores; a residual z (with
 * the ReLU after it) in one more pass over y, which keeps the GEMM's registers (conv2d.cu). */
cnn_status cnn_cuda_conv2d_forward_fused(cnn_context *ctx, const cnn_cuda_conv *g,
                                         const float *x, const float *w,
                                         const cnn_cuda_epilogue *e, float *y);
/* The epilogue alone over a conv output already in y (after a cuDNN forward): one pass. */
cnn_status cnn_cuda_conv2d_epilogue(cnn_context *ctx, const cnn_cuda_conv *g,
                                    const cnn_cuda_epilogue *e, float *y);
/* dx: (n, c, h, w) from dy: (n, k, p, q) and w. */
cnn_status cnn_cuda_conv2d_backward_data(cnn_context *ctx, const cnn_cuda_conv *g,
                                         const float *dy, const float *w, float *dx);
/* dw: (k, cg, r, s) and db: (k), overwritten and summed over the batch; either may be NULL. */
cnn_status cnn_cuda_conv2d_backward_filter(cnn_context *ctx, const cnn_cuda_conv *g,
                                           const float *dy, const float *x, float *dw,
                                           float *db);
#if CNN_WITH_CUDNN
/* The same three through cuDNN, the algorithm found by timing once per shape/math/determinism
 * key and cached per context. CNN_ERR_UNSUPPORTED (nothing else changed) when cuDNN cannot do
 * the case, so the caller falls back to the kernels above. */
cnn_status cnn_cudnn_conv2d_forward(cnn_context *ctx, const cnn_cuda_conv *g, const float *x,
                                    const float *w, const float *b, float *y);
cnn_status cnn_cudnn_conv2d_backward_data(cnn_context *ctx, const cnn_cuda_conv *g,
                                          const float *dy, const float *w, float *dx);
cnn_status cnn_cudnn_conv2d_backward_filter(cnn_context *ctx, const cnn_cuda_conv *g,
                                            const float *dy, const float *x, float *dw,
                                            float *db);
/* Algorithm cache of ctx (conv2d_cache_cudnn.c): entries held and searches made so far. */
void cnn_cudnn_conv2d_cache_stats(const cnn_context *ctx, size_t *entries, uint64_t *searches);
/* Drops ctx's cache; cnn_cuda_context_release calls it. */
void cnn_cudnn_conv2d_cache_release(const cnn_context *ctx);
#endif

/* ---- Elementwise, activation, dropout, loss and optimizer kernels --------------------------
 * (cuda/elementwise.cu, activation.cu, dropout.cu, loss.cu, optim.cu). Raw pointers into
 * contiguous device memory (F32, labels I64), work queued on ctx's stream; nothing comes back
 * to the host except cnn_cuda_norm2_f32's one scalar. Each mirrors the CPU loop of its op. */
/* y = a + b, then a ReLU when relu. */
cnn_status cnn_cuda_add_f32(cnn_context *ctx, float *y, const float *a, const float *b, int64_t n,
                            bool relu);
/* y = alpha * x (y may be x). */
cnn_status cnn_cuda_scale_f32(cnn_context *ctx, float *y, const float *x, float alpha, int64_t n);
/* y (rows, len): every row a copy of b (len), bit for bit (the linear layer's bias). */
cnn_status cnn_cuda_repeat_rows_f32(cnn_context *ctx, float *y, const float *b, int64_t rows,
                                    int64_t len);
/* y[i] = g[0] * scale, g a one-element device array (backward of sum / mean). */
cnn_status cnn_cuda_fill_scaled_f32(cnn_context *ctx, float *y, const float *g, float scale,
                                    int64_t n);
/* out[0] = (float)(sum of x in double * scale). Two fixed stages, no atomics: the summation
 * order depends on n only, so every run gives the same bits. */
cnn_status cnn_cuda_sum_f32(cnn_context *ctx, float *out, const float *x, int64_t n,
                            double scale);
/* *norm (host) = sqrt of the sum of squares of `count` device arrays xs[i] of ns[i] floats,
 * in two fixed stages as cnn_cuda_sum_f32 (a partial sum per 65,536-element chunk, all arrays
 * in a few launches); only this scalar is copied back. */
cnn_status cnn_cuda_norm2_f32(cnn_context *ctx, const float *const *xs, const int64_t *ns,
                              int count, float *norm);
/* part (outer, len, inner) into the slab [at, at + len) of whole (outer, total, inner), or
 * (to_slab false) that slab out into part. */
cnn_status cnn_cuda_concat_copy_f32(cnn_context *ctx, float *whole, float *part, int64_t outer,
                                    int64_t total, int64_t at, int64_t len, int64_t inner,
                                    bool to_slab);
/* kind in layers/activation.c's order: 0 relu, 1 leaky_relu, 2 elu, 3 sigmoid, 4 tanh; param:
 * negative_slope or alpha. Backward reads `saved`: the output or the input, as
 * layers/activation.c saved it (the input for elu and a negative slope). */
cnn_status cnn_cuda_activation_forward(cnn_context *ctx, int kind, float param, const float *x,
                                       float *y, int64_t n);
cnn_status cnn_cuda_activation_backward(cnn_context *ctx, int kind, float param,
                                        const float *saved, const float *dy, float *dx, int64_t n);
/* y[i] = x[i] * (philox uniform i of draw d < keep_below ? scale : 0), the CPU mask (a dropped
 * NaN or inf gives NaN, as PyTorch's x * mask). */
cnn_status cnn_cuda_dropout_f32(cnn_context *ctx, const float *x, float *y, int64_t n,
                                cnn_rng_draw d, float keep_below, float scale);
/* x, y, dy, dx: (outer, k, inner), softmax (or log_softmax) over k. */
cnn_status cnn_cuda_softmax_forward(cnn_context *ctx, const float *x, float *y, int64_t outer,
                                    int64_t k, int64_t inner, bool log);
cnn_status cnn_cuda_softmax_backward(cnn_context *ctx, const float *y, const float *dy, float *dx,
                                     int64_t outer, int64_t k, int64_t inner, bool log);
/* logits, prob: (n, k); labels, per_sample: (n); loss, count: (1). per_sample gets each
 * sample's loss (0 where the label is ignore_index), *loss their mean over the *count samples
 * not ignored. Labels are not checked on the host: one outside [0, k) (other than ignore_index)
 * makes its sample's loss NaN (and its gradient row lacks the label term). */
cnn_status cnn_cuda_cross_entropy_forward(cnn_context *ctx, const float *logits,
                                          const int64_t *labels, float *prob, float *per_sample,
                                          float *loss, float *count, int64_t n, int64_t k,
                                          float label_smoothing, int64_t ignore_index);
/* dx = g[0] / count[0] * (prob - q), q the smoothed one-hot; rows of ignored samples 0. g and
 * count are one-element device arrays. */
cnn_status cnn_cuda_cross_entropy_backward(cnn_context *ctx, const float *prob,
                                           const int64_t *labels, const float *g,
                                           const float *count, float *dx, int64_t n, int64_t k,
                                           float label_smoothing, int64_t ignore_index);
/* One parameter of a fused optimizer update: p and its gradient g (n floats), its state (SGD:
 * s1 the momentum buffer or NULL, s2 unused; Adam/AdamW: s1 exp_avg, s2 exp_avg_sq), its weight
 * decay and the number of this update (1 on the first). */
typedef struct cnn_cuda_param_update {
    float *p;
    const float *g;
    float *s1, *s2;
    int64_t n;
    float wd;
    int64_t step;
    /* Adam: this step's shrink (1 - lr wd), step size (lr / bias correction 1) and
     * sqrt(bias correction 2), three floats in device memory (core/optim.c computes them). */
    const float *adam;
} cnn_cuda_param_update;
/* core/optim.c's sgd_update_f32 / adam_update_f32 applied to `count` parameters, all on ctx's
 * device, in a few launches that each cover many parameters. SGD reads its learning rate from
 * device memory (lr: one float there). */
cnn_status cnn_cuda_sgd_update_f32(cnn_context *ctx, const cnn_cuda_param_update *ps, int count,
                                   const float *lr, float momentum, float dampening,
                                   bool nesterov);
cnn_status cnn_cuda_adam_update_f32(cnn_context *ctx, const cnn_cuda_param_update *ps, int count,
                                    float beta1, float beta2, float eps, bool decoupled);
/* xs[i] *= alpha for `count` device arrays of ns[i] floats, in a few launches. */
cnn_status cnn_cuda_scale_multi_f32(cnn_context *ctx, float *const *xs, const int64_t *ns,
                                    int count, float alpha);

#endif /* CNN_CUDA_API_H */
