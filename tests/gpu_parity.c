/* gpu_parity.c — see gpu_parity.h. */
#include "gpu_parity.h"

void gpu_check_close(const char *what, const char *part, const cnn_tensor *got,
                     const cnn_tensor *ref, float atol, float rtol)
{
    char buf[200];
    snprintf(buf, sizeof buf, "%s: %s", what, part);
    if (!got || !on_gpu(got) || !ref) {
        cnn_test_fail(__FILE__, __LINE__, "%s: %s", buf,
                      !got ? "missing" : !ref ? "no reference" : "not on the GPU");
        return;
    }
    if (!tensors_close(buf, got, ref, atol, rtol)) cnn_test_fail(__FILE__, __LINE__, "%s", buf);
}

const char *gpu_backend_name(cnn_backend b)
{
    return b == CNN_BACKEND_CUDA ? "hand-written" : b == CNN_BACKEND_CUDNN ? "cudnn" : "auto";
}

void gpu_parity(const gp_case *c, cnn_backend backend)
{
    char what[160];
    if (backend == CNN_BACKEND_AUTO)
        snprintf(what, sizeof what, "%s", c->name);
    else
        snprintf(what, sizeof what, "%s [%s]", c->name, gpu_backend_name(backend));
    int n = c->n < GP_MAX_IN ? c->n : GP_MAX_IN;
    cnn_tensor *cx[GP_MAX_IN] = {0}, *gx[GP_MAX_IN] = {0};
    cnn_tensor *cy = NULL, *gy = NULL, *cdy = NULL, *gdy = NULL;
    for (int i = 0; i < n; i++) {
        if (c->absent[i]) continue;
        cx[i] = rand_tensor(c->in[i], c->lo, c->hi, 1);
        gx[i] = to_gpu(cx[i]);
        if (!cx[i] || !gx[i]) {
            cnn_test_fail(__FILE__, __LINE__, "%s: inputs: %s", what, cnn_last_error());
            goto done;
        }
    }
    /* The CPU reference first: a backward resets the tape the other run would be on. */
    cnn_set_backend(CNN_BACKEND_AUTO);
    if (c->f(cx, c->ud, &cy) != CNN_OK) {
        cnn_test_fail(__FILE__, __LINE__, "%s: CPU forward: %s", what, cnn_last_error());
        goto done;
    }
    cdy = rand_tensor(cnn_tensor_shape(cy), -1, 1, 0);
    gdy = to_gpu(cdy);
    if (!gdy || cnn_backward_with_grad(cy, cdy) != CNN_OK) {
        cnn_test_fail(__FILE__, __LINE__, "%s: CPU backward: %s", what, cnn_last_error());
        goto done;
    }
    cnn_set_backend(backend);
    cnn_shape shapes[GP_MAX_IN + 1];
    int ns = 0;
    shapes[ns++] = cnn_tensor_shape(cy);
    for (int i = 0; i < n; i++)
        if (!c->absent[i]) shapes[ns++] = c->in[i];
    poison_cache(shapes, ns);
    if (c->f(gx, c->ud, &gy) != CNN_OK) {
        cnn_test_fail(__FILE__, __LINE__, "%s: GPU forward: %s", what, cnn_last_error());
        goto done;
    }
    gpu_check_close(what, "y", gy, cy, c->atol, c->rtol);
    poison_cache(shapes, ns);
    if (cnn_backward_with_grad(gy, gdy) != CNN_OK) {
        cnn_test_fail(__FILE__, __LINE__, "%s: GPU backward: %s", what, cnn_last_error());
        goto done;
    }
    for (int i = 0; i < n; i++) {
        if (c->absent[i]) continue;
        char part[32];
        snprintf(part, sizeof part, "d(input %d)", i);
        gpu_check_close(what, part, cnn_tensor_grad(gx[i]), cnn_tensor_grad(cx[i]), c->atol,
                        c->rtol);
    }
done:
    cnn_set_backend(CNN_BACKEND_AUTO);
    for (int i = 0; i < GP_MAX_IN; i++) {
        cnn_tensor_free(&cx[i]);
        cnn_tensor_free(&gx[i]);
    }
    cnn_tensor_free(&cy);
    cnn_tensor_free(&gy);
    cnn_tensor_free(&cdy);
    cnn_tensor_free(&gdy);
}

void gpu_parity_both(const gp_case *c)
{
    gpu_parity(c, CNN_BACKEND_CUDA);
    gpu_parity(c, CNN_BACKEND_CUDNN);
}
