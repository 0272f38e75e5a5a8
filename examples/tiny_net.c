/* tiny_net.c — a first libcnncuda program: a two-layer conv net built from ops, trained with
 * SGD to tell horizontal bars from vertical ones. Build against an installed library with
 *   cc tiny_net.c $(pkg-config --cflags --libs cnncuda) -o tiny_net
 * (a PREFIX other than /usr/local: PKG_CONFIG_PATH=PREFIX/lib/pkgconfig, -Wl,-rpath,PREFIX/lib)
 */
#define _POSIX_C_SOURCE 200809L /* rand_r */
#include <cnncuda.h>

#include <stdio.h>
#include <stdlib.h>

#define TRY(call)                                                                        \
    do {                                                                                 \
        if ((call) != CNN_OK) {                                                          \
            fprintf(stderr, "tiny_net: %s\n", cnn_last_error());                        \
            exit(1);                                                                     \
        }                                                                                \
    } while (0)

enum { B = 32, S = 12 };

/* A batch of S x S images, each with one bright bar: label 0 horizontal, 1 vertical. */
static void make_batch(unsigned *seed, float *x, int64_t *y)
{
    for (int i = 0; i < B; i++) {
        int vertical = rand_r(seed) % 2, pos = rand_r(seed) % S;
        for (int r = 0; r < S; r++)
            for (int c = 0; c < S; c++) {
                float noise = 0.2f * ((float)rand_r(seed) / (float)RAND_MAX - 0.5f);
                x[i * S * S + r * S + c] = ((vertical ? c : r) == pos) + noise;
            }
        y[i] = vertical;
    }
}

int main(void)
{
    cnn_manual_seed(0);
    /* Parameters: conv 1->8 (3x3), linear 8*6*6 -> 2, PyTorch's default init. */
    cnn_tensor *w1, *b1, *w2, *b2;
    TRY(cnn_tensor_empty(CNN_SHAPE(8, 1, 3, 3), CNN_F32, CNN_CPU, &w1));
    TRY(cnn_tensor_empty(CNN_SHAPE(8), CNN_F32, CNN_CPU, &b1));
    TRY(cnn_tensor_empty(CNN_SHAPE(2, 8 * 6 * 6), CNN_F32, CNN_CPU, &w2));
    TRY(cnn_tensor_empty(CNN_SHAPE(2), CNN_F32, CNN_CPU, &b2));
    TRY(cnn_init_default_(w1, b1));
    TRY(cnn_init_default_(w2, b2));
    cnn_optim_config cfg = cnn_optim_defaults(CNN_OPTIM_SGD);
    cfg.lr = 0.1f;
    cfg.momentum = 0.9f;
    cnn_optim *opt;
    TRY(cnn_optim_create(&cfg, &opt));
    cnn_tensor *params[4] = {w1, b1, w2, b2};
    const char *names[4] = {"conv.weight", "conv.bias", "fc.weight", "fc.bias"};
    for (int i = 0; i < 4; i++) {
        TRY(cnn_tensor_set_requires_grad(params[i], true));
        TRY(cnn_optim_add_param(opt, names[i], params[i], true));
    }

    float xb[B * S * S];
    int64_t yb[B];
    unsigned seed = 42;
    cnn_conv2d_params conv = {.padding = {1, 1}};
    cnn_pool2d_params pool = {.kernel = {2, 2}};
    float accuracy = 0;
    for (int step = 1; step <= 60; step++) {
        make_batch(&seed, xb, yb);
        cnn_tensor *x, *y, *h1, *a1, *p1, *f, *logits, *loss;
        TRY(cnn_tensor_from_data(CNN_SHAPE(B, 1, S, S), xb, CNN_CPU, &x));
        TRY(cnn_tensor_from_i64(CNN_SHAPE(B), yb, CNN_CPU, &y));
        TRY(cnn_conv2d(x, w1, b1, &conv, &h1));   /* (B, 8, 12, 12) */
        TRY(cnn_relu(h1, &a1));
        TRY(cnn_max_pool2d(a1, &pool, &p1));       /* (B, 8, 6, 6) */
        TRY(cnn_flatten(p1, 1, &f));               /* (B, 288) */
        TRY(cnn_linear(f, w2, b2, &logits));       /* (B, 2) */
        TRY(cnn_cross_entropy(logits, y, 0.0f, &loss));
        cnn_optim_zero_grad(opt);
        TRY(cnn_backward(loss));
        TRY(cnn_optim_step(opt));

        float l, out[B * 2];
        TRY(cnn_tensor_read(loss, &l, 1));
        TRY(cnn_tensor_read(logits, out, B * 2));
        int correct = 0;
        for (int i = 0; i < B; i++) correct += (out[2 * i + 1] > out[2 * i]) == yb[i];
        accuracy = (float)correct / B;
        if (step % 10 == 0) printf("step %2d  loss %.4f  batch accuracy %.2f\n", step, l, accuracy);
        cnn_tensor *tmp[] = {x, y, h1, a1, p1, f, logits, loss};
        for (int i = 0; i < 8; i++) cnn_tensor_free(&tmp[i]);
    }
    cnn_optim_destroy(&opt);
    for (int i = 0; i < 4; i++) cnn_tensor_free(&params[i]);
    return accuracy >= 0.9f ? 0 : 1;
}
