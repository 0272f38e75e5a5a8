/* test_train_synthetic.c — the whole stack end to end on a fixed synthetic task: a small conv
 * net (conv, batch norm, relu, max/avg pool, linear, cross-entropy) trained with Adam learns
 * which quadrant of a noisy 16x16 image holds a bright blob. Loss must fall and held-out
 * accuracy must reach 95%. */
#include "gradcheck.h"

enum { IMG = 16, NCLS = 4 };

typedef struct {
    cnn_tensor *w1, *g1, *b1, *rm1, *rv1, *w2, *b2, *w3, *b3;
} quad_net;

/* Fills a batch: blob of radius ~2 at a random spot inside quadrant = label, plus noise. */
static void quad_batch(unsigned *seed, int n, float *x, int64_t *y)
{
    for (int i = 0; i < n; i++) {
        int q = rand_r(seed) % NCLS;
        int cy = (q / 2) * 8 + 2 + rand_r(seed) % 4, cx = (q % 2) * 8 + 2 + rand_r(seed) % 4;
        for (int r = 0; r < IMG; r++)
            for (int c = 0; c < IMG; c++) {
                float d2 = (float)((r - cy) * (r - cy) + (c - cx) * (c - cx));
                float noise = 0.6f * ((float)rand_r(seed) / (float)RAND_MAX - 0.5f);
                x[(i * IMG + r) * IMG + c] = (d2 <= 4.0f ? 1.0f : 0.0f) + noise;
            }
        y[i] = q;
    }
}

static cnn_status quad_forward(quad_net *m, const cnn_tensor *x, bool training, cnn_tensor **logits)
{
    cnn_conv2d_params c1 = {.padding = {1, 1}}, c2 = {.stride = {2, 2}, .padding = {1, 1}};
    cnn_pool2d_params mp = {.kernel = {2, 2}}, ap = {.kernel = {2, 2}};
    cnn_tensor *t[8] = {0};
    cnn_status st = cnn_conv2d(x, m->w1, NULL, &c1, &t[0]);              /* (N, 8, 16, 16) */
    if (!st) st = cnn_batch_norm(t[0], m->rm1, m->rv1, m->g1, m->b1, training, 0.1f, 1e-5f, &t[1]);
    if (!st) st = cnn_relu(t[1], &t[2]);
    if (!st) st = cnn_max_pool2d(t[2], &mp, &t[3]);                      /* (N, 8, 8, 8) */
    if (!st) st = cnn_conv2d(t[3], m->w2, m->b2, &c2, &t[4]);            /* (N, 16, 4, 4) */
    if (!st) st = cnn_relu(t[4], &t[5]);
    if (!st) st = cnn_avg_pool2d(t[5], &ap, &t[6]);                      /* (N, 16, 2, 2) */
    if (!st) st = cnn_flatten(t[6], 1, &t[7]);                           /* (N, 64) */
    if (!st) st = cnn_linear(t[7], m->w3, m->b3, logits);                /* (N, 4) */
    for (int i = 0; i < 8; i++) cnn_tensor_free(&t[i]);
    return st;
}

TEST(small_convnet_learns_synthetic_task)
{
    quad_net m = {0};
    CHECK_OK(cnn_tensor_empty(CNN_SHAPE(8, 1, 3, 3), CNN_F32, CNN_CPU, &m.w1));
    CHECK_OK(cnn_tensor_ones(CNN_SHAPE(8), CNN_CPU, &m.g1));
    CHECK_OK(cnn_tensor_zeros(CNN_SHAPE(8), CNN_CPU, &m.b1));
    CHECK_OK(cnn_tensor_zeros(CNN_SHAPE(8), CNN_CPU, &m.rm1));
    CHECK_OK(cnn_tensor_ones(CNN_SHAPE(8), CNN_CPU, &m.rv1));
    CHECK_OK(cnn_tensor_empty(CNN_SHAPE(16, 8, 3, 3), CNN_F32, CNN_CPU, &m.w2));
    CHECK_OK(cnn_tensor_empty(CNN_SHAPE(16), CNN_F32, CNN_CPU, &m.b2));
    CHECK_OK(cnn_tensor_empty(CNN_SHAPE(NCLS, 64), CNN_F32, CNN_CPU, &m.w3));
    CHECK_OK(cnn_tensor_empty(CNN_SHAPE(NCLS), CNN_F32, CNN_CPU, &m.b3));
    CHECK_OK(cnn_init_kaiming_normal_(m.w1, 0, CNN_FAN_OUT, CNN_NONLIN_RELU));
    CHECK_OK(cnn_init_default_(m.w2, m.b2));
    CHECK_OK(cnn_init_default_(m.w3, m.b3));
    cnn_optim_config cfg = cnn_optim_defaults(CNN_OPTIM_ADAM);
    cfg.lr = 0.01f;
    cnn_optim *opt = NULL;
    CHECK_OK(cnn_optim_create(&cfg, &opt));
    cnn_tensor *params[] = {m.w1, m.g1, m.b1, m.w2, m.b2, m.w3, m.b3};
    for (int i = 0; i < 7; i++) {
        char name[16];
        snprintf(name, sizeof name, "p%d", i);
        CHECK_OK(cnn_tensor_set_requires_grad(params[i], true));
        CHECK_OK(cnn_optim_add_param(opt, name, params[i], true));
    }
    enum { B = 32, STEPS = 120, NTEST = 256 };
    static float x[NTEST * IMG * IMG];
    int64_t y[NTEST];
    unsigned seed = 7;
    double first_loss = 0, last_loss = 0;
    for (int step = 0; step < STEPS && !cnn_test_failed(); step++) {
        quad_batch(&seed, B, x, y);
        cnn_tensor *xt = NULL, *yt = NULL, *logits = NULL, *loss = NULL;
        CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(B, 1, IMG, IMG), x, CNN_CPU, &xt));
        CHECK_OK(cnn_tensor_from_i64(CNN_SHAPE(B), y, CNN_CPU, &yt));
        CHECK_OK(quad_forward(&m, xt, true, &logits));
        CHECK_OK(cnn_cross_entropy(logits, yt, 0.0f, &loss));
        cnn_optim_zero_grad(opt);
        CHECK_OK(cnn_backward(loss));
        CHECK_OK(cnn_optim_step(opt));
        float l;
        CHECK_OK(cnn_tensor_read(loss, &l, 1));
        if (step < 10) first_loss += l / 10;
        if (step >= STEPS - 10) last_loss += l / 10;
        cnn_tensor_free(&xt);
        cnn_tensor_free(&yt);
        cnn_tensor_free(&logits);
        cnn_tensor_free(&loss);
    }
    CHECK(last_loss < first_loss / 4);
    /* Held-out accuracy in eval mode (batch-norm running statistics, no tape). */
    quad_batch(&seed, NTEST, x, y);
    cnn_tensor *xt = NULL, *logits = NULL;
    bool was = cnn_set_grad_enabled(false);
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(NTEST, 1, IMG, IMG), x, CNN_CPU, &xt));
    CHECK_OK(quad_forward(&m, xt, false, &logits));
    cnn_set_grad_enabled(was);
    CHECK(cnn_tape_size() == 0);
    const float *lg = cnn_tensor_cdata(logits);
    int correct = 0;
    for (int i = 0; i < NTEST; i++) {
        int best = 0;
        for (int k = 1; k < NCLS; k++)
            if (lg[i * NCLS + k] > lg[i * NCLS + best]) best = k;
        correct += best == y[i];
    }
    double acc = (double)correct / NTEST;
    if (acc < 0.95)
        printf("    held-out accuracy %.3f (loss %.3f -> %.3f)\n", acc, first_loss, last_loss);
    CHECK(acc >= 0.95);
    cnn_tensor_free(&xt);
    cnn_tensor_free(&logits);
    cnn_optim_destroy(&opt);
    for (int i = 0; i < 7; i++) cnn_tensor_free(&params[i]);
    cnn_tensor_free(&m.rm1);
    cnn_tensor_free(&m.rv1);
}
