/* conv2d_cpu.h — what layers/conv2d.c (shape rules, backend choice, autograd) and
 * layers/conv2d_cpu.c (the CPU kernels) share: the resolved geometry, the epilogue, and the three
 * CPU passes. Private to the library. */
#ifndef CNN_CONV2D_CPU_H
#define CNN_CONV2D_CPU_H

#include "internal.h"

/* Everything a kernel needs, resolved once (defaults applied) and packed into the tape node. */
typedef struct conv_geom {
    int64_t n, c, h, w;      /* input */
    int64_t k, r, s;         /* weight: (K, C/groups, R, S) */
    int64_t p, q;            /* output height, width */
    int64_t cg, kg;          /* channels per group: in, out */
    int sh, sw, ph, pw, dh, dw, groups;
} conv_geom;
_Static_assert(sizeof(conv_geom) <= CNN_NODE_PARAM_BYTES, "conv_geom must fit a tape node");

/* What the forward applies to each output element as it writes it: y = act(conv + b + z), b[k]
 * per output channel (NULL: none), z of y's shape (NULL: none), act ReLU or none. The order of
 * the adds is cnn_conv2d's bias, then cnn_add's, so the fused op matches the three ops in turn
 * bit for bit. */
typedef struct conv_epi {
    const float *b, *z;
    bool relu;
} conv_epi;

/* x: (N, C, H, W), w: (K, Cg, R, S) -> y: (N, K, P, Q) = act(conv + b + z) (conv_epi). */
cnn_status cnn_conv2d_cpu_forward(const conv_geom *g, const float *x, const float *w,
                                  const conv_epi *e, float *y);

/* dy: (N, K, P, Q), w: (K, Cg, R, S) -> dx: (N, C, H, W), every element written. */
cnn_status cnn_conv2d_cpu_backward_data(const conv_geom *g, const float *dy, const float *w,
                                        float *dx);

/* dy: (N, K, P, Q), x: (N, C, H, W) -> dw: (K, Cg, R, S) (overwritten) and db: (K) (overwritten,
 * when not NULL), both summed over the batch. dw may be NULL when only db is wanted. */
cnn_status cnn_conv2d_cpu_backward_filter(const conv_geom *g, const float *dy, const float *x,
                                          float *dw, float *db);

#endif /* CNN_CONV2D_CPU_H */
