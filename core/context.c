/* context.c — per-thread contexts: device, grad mode, backend preference, math modes, RNG and
 * the tape. The only mutable state of the library besides the thread-local current context is
 * its process-wide caches (the CPU, device and pinned allocators, cuDNN's algorithm choices),
 * each behind its own lock. */
#include "internal.h"

#include <pthread.h>

#if CNN_WITH_CUDA
#include "../cuda/cuda_api.h"
#endif

static _Thread_local cnn_context *g_current;
static _Thread_local cnn_context *g_default; /* the thread's own CPU context, made lazily */
static pthread_key_t g_default_key;
static pthread_once_t g_key_once = PTHREAD_ONCE_INIT;

static bool env_flag(const char *name)
{
    const char *v = getenv(name);
    return v && *v && strcmp(v, "0") != 0;
}

static void context_defaults(cnn_context *c, cnn_device device)
{
    memset(c, 0, sizeof *c);
    c->tape.gen = c->tape.first_gen = cnn_tape_new_gen();
    c->device = device;
    c->grad_enabled = true;
    c->backend = CNN_BACKEND_AUTO;
    const char *b = getenv("CNN_BACKEND");
    if (b && strcmp(b, "cuda") == 0) c->backend = CNN_BACKEND_CUDA;
    if (b && strcmp(b, "cudnn") == 0) c->backend = CNN_BACKEND_CUDNN;
    if (b && strcmp(b, "cpu") == 0) c->backend = CNN_BACKEND_CPU;
    c->tf32 = env_flag("CNN_TF32");
    c->deterministic = env_flag("CNN_DETERMINISTIC");
    c->rng_seed = 0x2545F4914F6CDD1DULL;
}

static void free_context(cnn_context *c)
{
    cnn_tape_destroy(&c->tape);
#if CNN_WITH_CUDA
    if (c->gpu) cnn_cuda_context_release(c);
#endif
    free(c);
}

static void default_destructor(void *p)
{
    if (p) free_context(p);
}

static void make_key(void) { pthread_key_create(&g_default_key, default_destructor); }

cnn_context *cnn_ctx_if_set(void) { return g_current; }

cnn_context *cnn_ctx(void)
{
    if (g_current) return g_current;
    if (!g_default) {
        /* A failed allocation here leaves no context to report through; fall back to a static
         * one so callers still get a usable (if shared-by-this-thread) CPU context. */
        static _Thread_local cnn_context fallback;
        cnn_context *c = malloc(sizeof *c);
        if (!c) {
            context_defaults(&fallback, CNN_CPU);
            return &fallback;
        }
        context_defaults(c, CNN_CPU);
        pthread_once(&g_key_once, make_key);
        pthread_setspecific(g_default_key, c);
        g_default = c;
    }
    return g_default;
}

int cnn_cuda_device_count(void)
{
#if CNN_WITH_CUDA
    return cnn_cuda_count_devices();
#else
    return 0;
#endif
}

bool cnn_built_with_cuda(void) { return CNN_WITH_CUDA; }
bool cnn_built_with_cudnn(void) { return CNN_WITH_CUDNN; }

cnn_status cnn_context_create(cnn_device device, cnn_context **out)
{
    CNN_CHECK(out, CNN_ERR_INVALID_ARG, "context_create: out is NULL");
    *out = NULL;
    if (device.type == CNN_DEVICE_CUDA) {
#if CNN_WITH_CUDA
        int n = cnn_cuda_count_devices();
        CNN_CHECK(n > 0, CNN_ERR_DEVICE, "context_create: no CUDA device is available (no GPU or "
                                         "no driver)");
        CNN_CHECK(device.index >= 0 && device.index < n, CNN_ERR_DEVICE,
                  "context_create: cuda:%d requested but %d device(s) are present", device.index,
                  n);
#else
        return cnn_error(CNN_ERR_DEVICE, "context_create: cuda:%d requested but libcnncuda was "
                                         "built without CUDA (CUDA=0)", device.index);
#endif
    } else {
        CNN_CHECK(device.type == CNN_DEVICE_CPU, CNN_ERR_INVALID_ARG,
                  "context_create: unknown device type %d", (int)device.type);
        device.index = 0;
    }
    cnn_context *c = malloc(sizeof *c);
    if (!c) return cnn_error(CNN_ERR_OUT_OF_MEMORY, "context_create: out of host memory");
    context_defaults(c, device);
#if CNN_WITH_CUDA
    if (device.type == CNN_DEVICE_CUDA) {
        cnn_status st = cnn_cuda_context_init(c);
        if (st != CNN_OK) {
            free(c);
            return st;
        }
    }
#endif
    *out = c;
    return CNN_OK;
}

void cnn_context_destroy(cnn_context **ctx)
{
    if (!ctx || !*ctx) return;
    if (g_current == *ctx) g_current = NULL;
    free_context(*ctx);
    *ctx = NULL;
}

void cnn_context_set_current(cnn_context *ctx) { g_current = ctx; }
cnn_context *cnn_context_current(void) { return cnn_ctx(); }
cnn_device cnn_current_device(void) { return cnn_ctx()->device; }

bool cnn_set_grad_enabled(bool enabled)
{
    cnn_context *c = cnn_ctx();
    bool old = c->grad_enabled;
    c->grad_enabled = enabled;
    return old;
}
bool cnn_is_grad_enabled(void) { return cnn_ctx()->grad_enabled; }
void cnn_set_backend(cnn_backend backend)
{
    /* A value outside the enum (a cast integer) would be taken as "not cuDNN" by every op. */
    int b = (int)backend;
    if (b >= CNN_BACKEND_AUTO && b <= CNN_BACKEND_CPU) cnn_ctx()->backend = backend;
}
cnn_backend cnn_get_backend(void) { return cnn_ctx()->backend; }
void cnn_set_deterministic(bool on) { cnn_ctx()->deterministic = on; }
bool cnn_is_deterministic(void) { return cnn_ctx()->deterministic; }
void cnn_set_tf32(bool on) { cnn_ctx()->tf32 = on; }
bool cnn_is_tf32(void) { return cnn_ctx()->tf32; }

cnn_status cnn_synchronize(void)
{
#if CNN_WITH_CUDA
    cnn_context *c = cnn_ctx();
    if (c->device.type == CNN_DEVICE_CUDA) return cnn_cuda_synchronize(c);
#endif
    return CNN_OK;
}

#if !CNN_WITH_CUDA
/* A CPU-only build has no device memory: the statistics calls answer as for a missing GPU. */
cnn_status cnn_cuda_get_memory_stats(int device, cnn_cuda_memory_stats *out)
{
    if (out) memset(out, 0, sizeof *out);
    return cnn_error(CNN_ERR_DEVICE, "cuda_get_memory_stats: cuda:%d requested but libcnncuda "
                                     "was built without CUDA (CUDA=0)", device);
}

void cnn_cuda_reset_peak_memory(int device) { (void)device; }

cnn_status cnn_cuda_empty_cache(void) { return CNN_OK; }

cnn_status cnn_cuda_device_name(int device, char *buf, size_t size)
{
    CNN_CHECK(buf && size > 0, CNN_ERR_INVALID_ARG, "cuda_device_name: buf is NULL or size is 0");
    buf[0] = '\0';
    return cnn_error(CNN_ERR_DEVICE, "cuda_device_name: cuda:%d requested but libcnncuda was "
                                     "built without CUDA (CUDA=0)", device);
}

cnn_status cnn_graph_capture(cnn_status (*fn)(void *ud), void *ud, cnn_graph **out)
{
    (void)fn;
    (void)ud;
    if (out) *out = NULL;
    return cnn_error(CNN_ERR_DEVICE, "graph_capture: CUDA graphs need a CUDA context, and "
                                     "libcnncuda was built without CUDA (CUDA=0)");
}

cnn_status cnn_graph_replay(cnn_graph *g)
{
    (void)g;
    return cnn_error(CNN_ERR_DEVICE, "graph_replay: libcnncuda was built without CUDA (CUDA=0)");
}

void cnn_graph_destroy(cnn_graph **g)
{
    if (g) *g = NULL;
}

cnn_status cnn_cuda_versions(int *driver, int *runtime, size_t *cudnn)
{
    if (driver) *driver = 0;
    if (runtime) *runtime = 0;
    if (cudnn) *cudnn = 0;
    return cnn_error(CNN_ERR_DEVICE, "cuda_versions: libcnncuda was built without CUDA (CUDA=0)");
}
#endif

#if !CNN_WITH_CUDNN
/* Without cuDNN (CPU-only builds included) no conv2d ever has a cuDNN algorithm. */
const char *cnn_conv2d_cudnn_algo(const cnn_tensor *x, const cnn_tensor *w,
                                  const cnn_conv2d_params *p, int pass)
{
    (void)x;
    (void)w;
    (void)p;
    (void)pass;
    return NULL;
}
#endif
