/* test_cuda_optim.c — the fused CUDA optimizer updates (SGD with momentum / Nesterov /
 * dampening, Adam, AdamW) and gradient-norm clipping against the CPU reference, on a few
 * parameters over several steps and on many parameters of awkward sizes that take several
 * multi-tensor launches. GPU tests only: skipped (and counted as skipped) without a device.
 * Tolerances are |gpu - cpu| <= abs + rel * |cpu|. */
#include "gradcheck.h"

#include <stdio.h>

/* The kernels use the CPU's float operations in the CPU's order; the tolerance only keeps a
 * last-ulp difference in a host-side scalar from failing a test. */
#define EW_ATOL 1e-6f
#define EW_RTOL 1e-5f

/* ---- a few parameters --------------------------------------------------------------------- */
#define N_PARAMS 3
static const cnn_shape k_param_shapes[N_PARAMS] = {{4, {3, 5, 7, 11}}, {1, {513}}, {1, {1}}};

/* Parameters with the same values on both devices. */
static int make_params(cnn_tensor **pc, cnn_tensor **pg)
{
    for (int i = 0; i < N_PARAMS; i++) {
        pc[i] = rand_tensor(k_param_shapes[i], -1, 1, 1);
        pg[i] = pc[i] ? to_gpu(pc[i]) : NULL;
        if (!pg[i]) return 0;
    }
    return 1;
}

/* Sets the gradient of every parameter to fresh random values, the same on both devices (a
 * backward from a leaf seeds its .grad). */
static int set_grads(cnn_tensor **pc, cnn_tensor **pg, float scale)
{
    int ok = 1;
    for (int i = 0; i < N_PARAMS; i++) {
        cnn_tensor_zero_grad(pc[i]);
        cnn_tensor_zero_grad(pg[i]);
        cnn_tensor *g = rand_tensor(k_param_shapes[i], -scale, scale, 0);
        cnn_tensor *gg = g ? to_gpu(g) : NULL;
        ok = ok && gg && cnn_backward_with_grad(pc[i], g) == CNN_OK &&
             cnn_backward_with_grad(pg[i], gg) == CNN_OK;
        cnn_tensor_free(&g);
        cnn_tensor_free(&gg);
    }
    return ok;
}

static void free_params(cnn_tensor **pc, cnn_tensor **pg)
{
    for (int i = 0; i < N_PARAMS; i++) {
        cnn_tensor_free(&pc[i]);
        cnn_tensor_free(&pg[i]);
    }
}

/* Five steps of one optimizer on both devices; parameters and state must agree (the kernels
 * use the CPU's float operations in the CPU's order, so they should be exact; the tolerance only
 * keeps a last-ulp libm difference in the host-side scalars from failing the test). */
static void check_optim_tol(const cnn_optim_config *cfg, const char *what, float atol,
                            float rtol)
{
    static const char *names[N_PARAMS] = {"conv.weight", "conv.bias", "scale"};
    cnn_tensor *pc[N_PARAMS] = {0}, *pg[N_PARAMS] = {0};
    cnn_optim *oc = NULL, *og = NULL;
    cnn_dict *dc = NULL, *dg = NULL;
    char name[128];
    if (!make_params(pc, pg)) {
        cnn_test_fail(__FILE__, __LINE__, "%s: parameters: %s", what, cnn_last_error());
        goto out;
    }
    if (cnn_optim_create(cfg, &oc) != CNN_OK || cnn_optim_create(cfg, &og) != CNN_OK) {
        cnn_test_fail(__FILE__, __LINE__, "%s: create: %s", what, cnn_last_error());
        goto out;
    }
    for (int i = 0; i < N_PARAMS; i++) {
        /* The bias is exempt from weight decay, as a model's biases usually are. */
        CHECK(cnn_optim_add_param(oc, names[i], pc[i], i != 1) == CNN_OK);
        CHECK(cnn_optim_add_param(og, names[i], pg[i], i != 1) == CNN_OK);
    }
    for (int step = 0; step < 5; step++) {
        /* A learning rate that changes between steps (as a schedule's does) must reach the
         * GPU's update too (SGD's lives in device memory). */
        const float lr = cfg->lr * (step % 2 ? 0.5f : 1.0f);
        CHECK(cnn_optim_set_lr(oc, lr) == CNN_OK && cnn_optim_set_lr(og, lr) == CNN_OK);
        if (!set_grads(pc, pg, 1.0f)) {
            cnn_test_fail(__FILE__, __LINE__, "%s: gradients: %s", what, cnn_last_error());
            goto out;
        }
        if (cnn_optim_step(oc) != CNN_OK || cnn_optim_step(og) != CNN_OK) {
            cnn_test_fail(__FILE__, __LINE__, "%s: step %d: %s", what, step, cnn_last_error());
            goto out;
        }
    }
    for (int i = 0; i < N_PARAMS; i++) {
        snprintf(name, sizeof name, "%s: %s after 5 steps", what, names[i]);
        if (!on_gpu(pg[i]) || !tensors_close(name, pg[i], pc[i], atol, rtol))
            cnn_test_fail(__FILE__, __LINE__, "%s", name);
    }
    /* The state lives on the parameter's device and matches the CPU's. */
    if (cnn_dict_create(&dc) != CNN_OK || cnn_dict_create(&dg) != CNN_OK ||
        cnn_optim_state_dict(oc, dc) != CNN_OK || cnn_optim_state_dict(og, dg) != CNN_OK) {
        cnn_test_fail(__FILE__, __LINE__, "%s: state dicts: %s", what, cnn_last_error());
        goto out;
    }
    CHECK(cnn_dict_size(dc) == cnn_dict_size(dg));
    for (int i = 0; i < cnn_dict_size(dc); i++) {
        const cnn_tensor *tg = cnn_dict_get(dg, cnn_dict_name(dc, i));
        snprintf(name, sizeof name, "%s: state %s", what, cnn_dict_name(dc, i));
        if (!tg || !on_gpu(tg) || !tensors_close(name, tg, cnn_dict_at(dc, i), atol, rtol))
            cnn_test_fail(__FILE__, __LINE__, "%s", name);
    }
out:
    cnn_dict_destroy(&dc);
    cnn_dict_destroy(&dg);
    cnn_optim_destroy(&oc);
    cnn_optim_destroy(&og);
    free_params(pc, pg);
}

static void check_optim(const cnn_optim_config *cfg, const char *what)
{
    check_optim_tol(cfg, what, EW_ATOL, EW_RTOL);
}

GPU_TEST(cuda_sgd_matches_cpu_over_5_steps)
{
    cnn_optim_config c = cnn_optim_defaults(CNN_OPTIM_SGD);
    c.lr = 0.1f;
    check_optim(&c, "sgd plain");
    c.weight_decay = 1e-2f;
    check_optim(&c, "sgd wd");
    c.momentum = 0.9f;
    check_optim(&c, "sgd momentum wd");
    c.dampening = 0.5f;
    check_optim(&c, "sgd momentum dampening wd");
    c.dampening = 0.0f;
    c.nesterov = true;
    check_optim(&c, "sgd nesterov wd");
    /* A CUDA parameter stepped under a CPU context is refused before anything changes. */
    cnn_tensor *p = NULL, *g = NULL;
    cnn_optim *o = NULL;
    float v[5] = {0};
    CHECK_OK(cnn_tensor_full(CNN_SHAPE(5), 2.0f, CNN_CUDA(0), &p));
    CHECK_OK(cnn_tensor_set_requires_grad(p, true));
    CHECK_OK(cnn_tensor_full(CNN_SHAPE(5), 1.0f, CNN_CUDA(0), &g));
    CHECK_OK(cnn_backward_with_grad(p, g));
    CHECK_OK(cnn_optim_create(&c, &o));
    CHECK_OK(cnn_optim_add_param(o, "p", p, true));
    cnn_context *ctx = cnn_context_current();
    cnn_context_set_current(NULL);
    cnn_status st = cnn_optim_step(o);
    cnn_context_set_current(ctx);
    CHECK(st == CNN_ERR_DEVICE);
    CHECK_OK(cnn_tensor_read(p, v, 5));
    CHECK(v[0] == 2.0f && v[4] == 2.0f);
    cnn_optim_destroy(&o);
    cnn_tensor_free(&p);
    cnn_tensor_free(&g);
}

GPU_TEST(cuda_adam_adamw_match_cpu_over_5_steps)
{
    cnn_optim_config c = cnn_optim_defaults(CNN_OPTIM_ADAMW);
    c.lr = 1e-2f;
    c.weight_decay = 0.1f;
    check_optim(&c, "adamw");
    c = cnn_optim_defaults(CNN_OPTIM_ADAM);
    c.lr = 1e-2f;
    check_optim(&c, "adam");
    c.weight_decay = 1e-2f;
    check_optim(&c, "adam l2");
    /* eps near sqrt(v_hat) (the gradients are O(1)): added after the bias correction, not
     * before it (1e-8 cannot show where it goes) */
    c.eps = 0.1f;
    check_optim(&c, "adam l2 eps 0.1");
    /* 1 - beta1 >= 0.5 takes lerp's other form, m = g - (g - m) * beta1 */
    c.beta1 = 0.3f;
    check_optim(&c, "adam l2 eps 0.1 beta1 0.3");
    c = cnn_optim_defaults(CNN_OPTIM_ADAMW);
    c.lr = 1e-2f;
    c.beta1 = 0.3f;
    c.eps = 0.1f;
    check_optim(&c, "adamw eps 0.1 beta1 0.3");
}

/* The host computes each parameter's scalars as the CPU path does (the same double operations
 * and libm calls), and the kernels apply them with the CPU loop's float operations, each an _rn
 * intrinsic in the same order: parameters and state are the CPU's bits. A reordered product or
 * lerp's other form is off by an ulp, which the tolerance of the tests above lets through. */
GPU_TEST(cuda_optimizers_give_the_cpu_bits)
{
    cnn_optim_config c = cnn_optim_defaults(CNN_OPTIM_SGD);
    c.lr = 0.1f;
    c.weight_decay = 1e-2f;
    c.momentum = 0.9f;
    c.dampening = 0.5f;
    check_optim_tol(&c, "sgd momentum dampening wd, bits", 0, 0);
    c.dampening = 0.0f;
    c.nesterov = true;
    check_optim_tol(&c, "sgd nesterov wd, bits", 0, 0);
    c = cnn_optim_defaults(CNN_OPTIM_ADAM);
    c.lr = 1e-2f;
    c.weight_decay = 1e-2f;
    check_optim_tol(&c, "adam l2, bits", 0, 0);
    c.beta1 = 0.3f;
    check_optim_tol(&c, "adam l2 beta1 0.3, bits", 0, 0);
    /* 1 - beta1 = 0.5 exactly, the boundary between lerp's two forms: torch.lerp (and the CPU)
     * takes the second at weight 0.5, and the first form's bits differ there */
    c.beta1 = 0.5f;
    check_optim_tol(&c, "adam l2 beta1 0.5, bits", 0, 0);
    c = cnn_optim_defaults(CNN_OPTIM_ADAMW);
    c.lr = 1e-2f;
    c.weight_decay = 0.1f;
    check_optim_tol(&c, "adamw, bits", 0, 0);
}

GPU_TEST(cuda_clip_grad_norm_matches_cpu)
{
    cnn_tensor *pc[N_PARAMS + 1] = {0}, *pg[N_PARAMS + 1] = {0};
    REQUIRE(make_params(pc, pg));
    REQUIRE(set_grads(pc, pg, 2.0f));
    /* A NULL entry is skipped, as on the CPU. */
    float nc = 0, ng = 0;
    CHECK_OK(cnn_clip_grad_norm(pc, N_PARAMS + 1, 1e6f, &nc));
    CHECK_OK(cnn_clip_grad_norm(pg, N_PARAMS + 1, 1e6f, &ng));
    CHECK(nc > 1.0f);
    CHECK_NEAR(ng, nc, 1e-6 * nc);
    for (int i = 0; i < N_PARAMS; i++) /* max_norm above the norm: nothing changes */
        CHECK(tensors_close("unclipped", cnn_tensor_grad(pg[i]), cnn_tensor_grad(pc[i]), 0, 0));
    CHECK_OK(cnn_clip_grad_norm(pc, N_PARAMS + 1, 0.5f, &nc));
    CHECK_OK(cnn_clip_grad_norm(pg, N_PARAMS + 1, 0.5f, &ng));
    CHECK_NEAR(ng, nc, 1e-6 * nc);
    for (int i = 0; i < N_PARAMS; i++)
        CHECK(tensors_close("clipped grad", cnn_tensor_grad(pg[i]), cnn_tensor_grad(pc[i]),
                            EW_ATOL, EW_RTOL));
    /* The clipped gradients have norm max_norm (to float accuracy). */
    CHECK_OK(cnn_clip_grad_norm(pg, N_PARAMS, 1e6f, &ng));
    CHECK_NEAR(ng, 0.5, 1e-5);
    /* Gradients on two devices cannot be clipped together. */
    cnn_tensor *mixed[2] = {pc[0], pg[1]};
    CHECK_ERR(cnn_clip_grad_norm(mixed, 2, 1.0f, NULL), CNN_ERR_DEVICE);
    free_params(pc, pg);
}

/* ---- many parameters ---------------------------------------------------------------------- */
/* 70 parameters whose sizes straddle the 65,536-element chunks (and one empty), more than one
 * launch holds (32 tensors, 320 chunks): 330 chunks come from the largest alone. Each step some
 * parameters get no gradient, so their update counts differ (the first SGD step and Adam's bias
 * correction are per parameter), and every other one is exempt from weight decay. */
#define MANY 70

static int64_t many_size(int i)
{
    static const int64_t sizes[] = {1, 7, 65535, 65536, 65537, 300001, 1000, 0, 4099, 131072};
    return i == MANY - 1 ? 330 * 65536 - 5 : sizes[i % 10];
}

/* Parameter i has a gradient at step s unless (i + s) % 5 == 0. */
static bool has_grad_at(int i, int s) { return (i + s) % 5 != 0; }

static void check_many(const cnn_optim_config *cfg, const char *what)
{
    cnn_tensor *pc[MANY] = {0}, *pg[MANY] = {0};
    cnn_optim *oc = NULL, *og = NULL;
    char name[160];
    REQUIRE(cnn_optim_create(cfg, &oc) == CNN_OK && cnn_optim_create(cfg, &og) == CNN_OK);
    for (int i = 0; i < MANY; i++) {
        pc[i] = rand_tensor(CNN_SHAPE(many_size(i)), -1, 1, 1);
        pg[i] = pc[i] ? to_gpu(pc[i]) : NULL;
        snprintf(name, sizeof name, "p%d", i);
        if (!pg[i] || cnn_optim_add_param(oc, name, pc[i], i % 2 == 0) != CNN_OK ||
            cnn_optim_add_param(og, name, pg[i], i % 2 == 0) != CNN_OK) {
            cnn_test_fail(__FILE__, __LINE__, "%s: parameter %d: %s", what, i, cnn_last_error());
            goto out;
        }
    }
    for (int s = 0; s < 3; s++) {
        for (int i = 0; i < MANY; i++) {
            cnn_tensor_zero_grad(pc[i]);
            cnn_tensor_zero_grad(pg[i]);
            if (!has_grad_at(i, s)) continue;
            cnn_tensor *g = rand_tensor(CNN_SHAPE(many_size(i)), -1, 1, 0), *gg = to_gpu(g);
            bool ok = gg && cnn_backward_with_grad(pc[i], g) == CNN_OK &&
                      cnn_backward_with_grad(pg[i], gg) == CNN_OK;
            cnn_tensor_free(&g);
            cnn_tensor_free(&gg);
            if (!ok) {
                cnn_test_fail(__FILE__, __LINE__, "%s: gradient %d: %s", what, i,
                              cnn_last_error());
                goto out;
            }
        }
        if (cnn_optim_step(oc) != CNN_OK || cnn_optim_step(og) != CNN_OK) {
            cnn_test_fail(__FILE__, __LINE__, "%s: step %d: %s", what, s, cnn_last_error());
            goto out;
        }
    }
    for (int i = 0; i < MANY; i++) {
        snprintf(name, sizeof name, "%s: parameter %d (%lld elements)", what, i,
                 (long long)many_size(i));
        if (!on_gpu(pg[i]) || !tensors_close(name, pg[i], pc[i], EW_ATOL, EW_RTOL)) {
            cnn_test_fail(__FILE__, __LINE__, "%s", name);
            break;
        }
    }
out:
    cnn_optim_destroy(&oc);
    cnn_optim_destroy(&og);
    for (int i = 0; i < MANY; i++) {
        cnn_tensor_free(&pc[i]);
        cnn_tensor_free(&pg[i]);
    }
}

GPU_TEST(cuda_optimizers_match_cpu_on_70_parameters_in_several_launches)
{
    cnn_optim_config c = cnn_optim_defaults(CNN_OPTIM_SGD);
    c.lr = 0.1f;
    c.momentum = 0.9f;
    c.weight_decay = 1e-2f;
    check_many(&c, "sgd momentum wd");
    c.momentum = 0.0f;
    check_many(&c, "sgd wd");
    c = cnn_optim_defaults(CNN_OPTIM_ADAMW);
    c.lr = 1e-2f;
    c.weight_decay = 0.1f;
    check_many(&c, "adamw");
    c = cnn_optim_defaults(CNN_OPTIM_ADAM);
    c.weight_decay = 1e-2f;
    check_many(&c, "adam l2");
}

/* clip_grad_norm over the 70 parameters above (sizes straddling the chunks, one empty, one of
 * 330 chunks, some without a gradient): the norm takes several multi-tensor launches and must
 * still equal the CPU's, and so must the clipped gradients. */
GPU_TEST(cuda_clip_grad_norm_over_70_parameters_in_several_launches)
{
    cnn_tensor *pc[MANY] = {0}, *pg[MANY] = {0};
    for (int i = 0; i < MANY && !cnn_test_failed(); i++) {
        pc[i] = rand_tensor(CNN_SHAPE(many_size(i)), -1, 1, 1);
        pg[i] = pc[i] ? to_gpu(pc[i]) : NULL;
        REQUIRE(pc[i] && pg[i]);
        if (!has_grad_at(i, 0)) continue;
        cnn_tensor *g = rand_tensor(CNN_SHAPE(many_size(i)), -1, 1, 0), *gg = to_gpu(g);
        CHECK(gg && cnn_backward_with_grad(pc[i], g) == CNN_OK &&
              cnn_backward_with_grad(pg[i], gg) == CNN_OK);
        cnn_tensor_free(&g);
        cnn_tensor_free(&gg);
    }
    float nc = 0, ng = 0;
    CHECK_OK(cnn_clip_grad_norm(pc, MANY, 1.0f, &nc));
    CHECK_OK(cnn_clip_grad_norm(pg, MANY, 1.0f, &ng));
    CHECK(nc > 1000.0f); /* about sqrt(21.6M / 3) */
    CHECK_NEAR(ng, nc, 1e-6 * nc);
    for (int i = 0; i < MANY && !cnn_test_failed(); i++) {
        if (!has_grad_at(i, 0)) continue;
        char what[64];
        snprintf(what, sizeof what, "clipped gradient %d", i);
        CHECK(tensors_close(what, cnn_tensor_grad(pg[i]), cnn_tensor_grad(pc[i]), EW_ATOL,
                            EW_RTOL));
    }
    for (int i = 0; i < MANY; i++) {
        cnn_tensor_free(&pc[i]);
        cnn_tensor_free(&pg[i]);
    }
}

/* ---- a model moved between devices -------------------------------------------------------- */
/* One training step of m on dev: forward, cross-entropy, backward, update. */
static cnn_status model_step(cnn_model *m, cnn_optim *opt, cnn_device dev, const float *xv,
                             const int64_t *lv)
{
    cnn_tensor *xh = NULL, *lh = NULL, *x = NULL, *lab = NULL, *logits = NULL, *loss = NULL;
    cnn_status st = cnn_tensor_from_data(CNN_SHAPE(4, 1, 28, 28), xv, CNN_CPU, &xh);
    if (st == CNN_OK) st = cnn_tensor_from_i64(CNN_SHAPE(4), lv, CNN_CPU, &lh);
    if (st == CNN_OK) st = cnn_tensor_to(xh, dev, &x);
    if (st == CNN_OK) st = cnn_tensor_to(lh, dev, &lab);
    if (st == CNN_OK) st = cnn_model_to(m, dev);
    if (st == CNN_OK) st = cnn_model_forward(m, x, true, &logits);
    if (st == CNN_OK) st = cnn_cross_entropy(logits, lab, 0.0f, &loss);
    if (st == CNN_OK) st = cnn_backward(loss);
    if (st == CNN_OK) st = cnn_optim_step(opt);
    cnn_optim_zero_grad(opt);
    cnn_tensor *all[6] = {xh, lh, x, lab, logits, loss};
    for (int i = 0; i < 6; i++) cnn_tensor_free(&all[i]);
    return st;
}

/* cnn_model_to after the optimizer has state: the state follows each parameter to its new
 * device (it stayed behind before, and the next step read device memory on the host), and
 * four steps on GPU, CPU, GPU, CPU end where four CPU steps do. SGD with momentum (one state
 * tensor per parameter) and AdamW (two). */
GPU_TEST(cuda_optimizer_state_follows_a_moved_model)
{
    float *xv = malloc(4 * 28 * 28 * sizeof *xv);
    REQUIRE(xv);
    unsigned seed = 11;
    for (int i = 0; i < 4 * 28 * 28; i++) xv[i] = (float)rand_r(&seed) / (float)RAND_MAX - 0.5f;
    const int64_t lv[4] = {3, 1, 4, 1};
    const cnn_device path[4] = {CNN_CUDA(0), CNN_CPU, CNN_CUDA(0), CNN_CPU};
    for (int kind = 0; kind < 2 && !cnn_test_failed(); kind++) {
        cnn_optim_config cfg = cnn_optim_defaults(kind ? CNN_OPTIM_ADAMW : CNN_OPTIM_SGD);
        cfg.lr = 0.01f;
        if (!kind) cfg.momentum = 0.9f;
        cnn_model *m[2] = {0};
        cnn_optim *opt[2] = {0};
        for (int r = 0; r < 2; r++) { /* 0: stays on the CPU; 1: moves */
            cnn_manual_seed(5);
            CHECK_OK(cnn_model_create("lenet5", 10, 1, &m[r]));
            CHECK_OK(cnn_optim_create(&cfg, &opt[r]));
            CHECK_OK(cnn_optim_add_dict(opt[r], cnn_model_state(m[r]), false));
        }
        for (int s = 0; s < 4 && !cnn_test_failed(); s++) {
            CHECK_OK(model_step(m[0], opt[0], CNN_CPU, xv, lv));
            CHECK_OK(model_step(m[1], opt[1], path[s], xv, lv));
            /* Every state tensor is where its parameter now is (the emulator's device memory is
             * host memory, so only this tells a state left behind). */
            cnn_dict *st = NULL;
            CHECK_OK(cnn_dict_create(&st));
            CHECK_OK(cnn_optim_state_dict(opt[1], st));
            int n_state = 0;
            for (int i = 0; i < cnn_dict_size(st); i++) {
                const cnn_tensor *t = cnn_dict_at(st, i);
                if (cnn_tensor_dtype(t) != CNN_F32) continue;
                n_state++;
                if (on_gpu(t) != (path[s].type == CNN_DEVICE_CUDA))
                    cnn_test_fail(__FILE__, __LINE__, "step %d: %s is on the %s", s + 1,
                                  cnn_dict_name(st, i), on_gpu(t) ? "GPU" : "CPU");
            }
            CHECK(n_state == (kind ? 2 : 1) * 10); /* LeNet-5: 10 parameters */
            cnn_dict_destroy(&st);
        }
        const cnn_dict *d0 = cnn_model_state(m[0]), *d1 = cnn_model_state(m[1]);
        for (int i = 0; i < cnn_dict_size(d0) && !cnn_test_failed(); i++) {
            char what[160];
            snprintf(what, sizeof what, "%s after 4 steps (%s)", cnn_dict_name(d0, i),
                     kind ? "adamw" : "sgd");
            if (!tensors_close(what, cnn_dict_at(d1, i), cnn_dict_at(d0, i), 1e-4f, 1e-3f))
                cnn_test_fail(__FILE__, __LINE__, "%s differs", what);
        }
        for (int r = 0; r < 2; r++) {
            cnn_optim_destroy(&opt[r]);
            cnn_model_destroy(&m[r]);
        }
    }
    free(xv);
}
