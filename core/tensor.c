/* tensor.c — dtypes and shapes, tensor and storage lifetime, creation and filling, reading and
 * writing host values. No op math here: views with autograd live in view.c, copies between
 * tensors and devices in tensor_copy.c, ops in layers/. */
#include "internal.h"

#include <float.h>
#include <math.h>

#if CNN_WITH_CUDA
#include "../cuda/cuda_api.h"
#endif

/* ---- dtypes and shapes ------------------------------------------------------------------- */
size_t cnn_dtype_size(cnn_dtype dt)
{
    switch (dt) {
    case CNN_F32: return 4;
    case CNN_F16: return 2;
    case CNN_BF16: return 2;
    case CNN_I64: return 8;
    case CNN_I32: return 4;
    case CNN_F64: return 8;
    }
    return 0;
}

const char *cnn_dtype_name(cnn_dtype dt)
{
    switch (dt) {
    case CNN_F32: return "F32";
    case CNN_F16: return "F16";
    case CNN_BF16: return "BF16";
    case CNN_I64: return "I64";
    case CNN_I32: return "I32";
    case CNN_F64: return "F64";
    }
    return "?";
}

/* The rank a shape's loops may walk: a bad ndim (cnn_shape_validate refuses it) reads no
 * element past d[CNN_MAX_DIMS - 1]. */
static int walk_rank(cnn_shape s)
{
    return s.ndim < 0 ? 0 : s.ndim > CNN_MAX_DIMS ? CNN_MAX_DIMS : s.ndim;
}

int64_t cnn_shape_numel(cnn_shape s)
{
    s.ndim = walk_rank(s);
    /* A zero size first: an empty shape may hold sizes whose product alone overflows. */
    for (int i = 0; i < s.ndim; i++)
        if (s.d[i] == 0) return 0;
    int64_t n = 1;
    for (int i = 0; i < s.ndim; i++) n *= s.d[i];
    return n;
}

bool cnn_shape_equal(cnn_shape a, cnn_shape b)
{
    if (a.ndim != b.ndim) return false;
    for (int i = 0; i < a.ndim; i++)
        if (a.d[i] != b.d[i]) return false;
    return true;
}

cnn_status cnn_shape_validate(cnn_shape s, const char *what)
{
    CNN_CHECK(s.ndim >= 0 && s.ndim <= CNN_MAX_DIMS, CNN_ERR_SHAPE,
              "%s: rank %d is outside 0..%d", what, s.ndim, CNN_MAX_DIMS);
    for (int i = 0; i < s.ndim; i++)
        CNN_CHECK(s.d[i] >= 0, CNN_ERR_SHAPE, "%s: size %lld of dim %d is negative", what,
                  (long long)s.d[i], i);
    /* Guard against sizes whose byte count or strides would overflow (strides multiply the
     * non-zero sizes even when another size is 0). */
    double bytes = 8;
    for (int i = 0; i < s.ndim; i++) bytes *= s.d[i] ? (double)s.d[i] : 1.0;
    CNN_CHECK(bytes < 9.0e18, CNN_ERR_SHAPE, "%s: shape is too large", what);
    return CNN_OK;
}

const char *cnn_shape_str(cnn_shape s, char *buf, size_t n)
{
    size_t used = 0;
    if (n == 0) return buf;
    s.ndim = walk_rank(s);
    used += (size_t)snprintf(buf + used, n - used, "(");
    for (int i = 0; i < s.ndim && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, i ? ", %lld" : "%lld", (long long)s.d[i]);
    if (used < n) snprintf(buf + used, n - used, ")");
    return buf;
}

const char *cnn_shape_of(const cnn_tensor *t)
{
    static _Thread_local char bufs[4][64];
    static _Thread_local int next;
    char *b = bufs[next++ & 3];
    if (!t) return "(null)";
    return cnn_shape_str(t->shape, b, 64);
}

/* ---- storage ----------------------------------------------------------------------------- */
static cnn_status storage_new(size_t bytes, cnn_device device, bool pinned, const char *what,
                              cnn_storage **out)
{
    cnn_storage *s = calloc(1, sizeof *s);
    if (!s) return cnn_error(CNN_ERR_OUT_OF_MEMORY, "%s: out of host memory", what);
    s->refcount = 1;
    s->bytes = bytes;
    if (device.type == CNN_DEVICE_CPU) {
#if CNN_WITH_CUDA
        cnn_status st = pinned ? cnn_cuda_pinned_storage_alloc(s, bytes, what)
                               : cnn_cpu_storage_alloc(s, bytes, what);
#else
        cnn_status st = pinned ? cnn_error(CNN_ERR_DEVICE, "%s: pinned host memory needs CUDA, "
                                           "but libcnncuda was built without CUDA (CUDA=0)", what)
                               : cnn_cpu_storage_alloc(s, bytes, what);
#endif
        if (st != CNN_OK) {
            free(s);
            return st;
        }
    } else {
#if CNN_WITH_CUDA
        cnn_context *ctx = cnn_ctx();
        if (ctx->device.type != CNN_DEVICE_CUDA || ctx->device.index != device.index) {
            free(s);
            return cnn_error(CNN_ERR_DEVICE,
                             "%s: tensor on cuda:%d requested but the current context is on %s:%d",
                             what, device.index,
                             ctx->device.type == CNN_DEVICE_CUDA ? "cuda" : "cpu",
                             ctx->device.index);
        }
        cnn_status st = cnn_cuda_storage_alloc(ctx, s, bytes, what);
        if (st != CNN_OK) {
            free(s);
            return st;
        }
#else
        free(s);
        return cnn_error(CNN_ERR_DEVICE, "%s: CUDA tensor requested but libcnncuda was built "
                                         "without CUDA (CUDA=0)", what);
#endif
    }
    *out = s;
    return CNN_OK;
}

static void storage_release(cnn_storage *s)
{
    if (s && __atomic_sub_fetch(&s->refcount, 1, __ATOMIC_ACQ_REL) == 0) {
        if (s->release) s->release(s);
        free(s);
    }
}

/* ---- tensor lifetime --------------------------------------------------------------------- */
void cnn_contiguous_strides(cnn_shape s, size_t esize, int64_t *strides)
{
    int64_t st = (int64_t)esize;
    for (int i = s.ndim - 1; i >= 0; i--) {
        strides[i] = st;
        st *= s.d[i];
    }
}

static void set_contiguous_strides(cnn_tensor *t)
{
    cnn_contiguous_strides(t->shape, cnn_dtype_size(t->dtype), t->strides);
}

static cnn_status tensor_empty(cnn_shape shape, cnn_dtype dtype, cnn_device device, bool pinned,
                               const char *what, cnn_tensor **out)
{
    CNN_CHECK(out, CNN_ERR_INVALID_ARG, "%s: out is NULL", what);
    *out = NULL;
    CNN_TRY(cnn_shape_validate(shape, what));
    CNN_CHECK(cnn_dtype_size(dtype) > 0, CNN_ERR_INVALID_ARG, "%s: unknown dtype %d", what,
              (int)dtype);
    CNN_CHECK(device.type == CNN_DEVICE_CPU || device.type == CNN_DEVICE_CUDA,
              CNN_ERR_INVALID_ARG, "%s: unknown device type %d (CNN_CPU or CNN_CUDA(i))", what,
              (int)device.type);
    CNN_CHECK(device.type == CNN_DEVICE_CPU || device.index >= 0, CNN_ERR_INVALID_ARG,
              "%s: invalid device cuda:%d", what, device.index);
    if (device.type == CNN_DEVICE_CPU) device.index = 0; /* as cnn_context_create: one CPU */
    cnn_tensor *t = calloc(1, sizeof *t);
    if (!t) return cnn_error(CNN_ERR_OUT_OF_MEMORY, "%s: out of host memory", what);
    t->refcount = 1;
    t->dtype = dtype;
    t->device = device;
    t->shape = shape;
    for (int i = shape.ndim; i < CNN_MAX_DIMS; i++) t->shape.d[i] = 0;
    set_contiguous_strides(t);
    size_t bytes = (size_t)cnn_shape_numel(shape) * cnn_dtype_size(dtype);
    cnn_status st = storage_new(bytes, device, pinned, what, &t->storage);
    if (st != CNN_OK) {
        free(t);
        return st;
    }
    *out = t;
    return CNN_OK;
}

cnn_status cnn_tensor_empty(cnn_shape shape, cnn_dtype dtype, cnn_device device, cnn_tensor **out)
{
    return tensor_empty(shape, dtype, device, false, "tensor_empty", out);
}

cnn_status cnn_tensor_empty_for(const char *op, cnn_shape shape, cnn_dtype dtype,
                                cnn_device device, cnn_tensor **out)
{
    return tensor_empty(shape, dtype, device, false, op, out);
}

cnn_status cnn_tensor_empty_pinned(cnn_shape shape, cnn_dtype dtype, cnn_tensor **out)
{
    return tensor_empty(shape, dtype, CNN_CPU, true, "tensor_empty_pinned", out);
}

bool cnn_tensor_is_pinned(const cnn_tensor *t)
{
#if CNN_WITH_CUDA
    return t && cnn_cuda_storage_is_pinned(t->storage);
#else
    (void)t;
    return false;
#endif
}

cnn_tensor *cnn_tensor_retain(cnn_tensor *t)
{
    if (t) __atomic_add_fetch(&t->refcount, 1, __ATOMIC_RELAXED);
    return t;
}

void cnn_tensor_free(cnn_tensor **tp)
{
    if (!tp || !*tp) return;
    cnn_tensor *t = *tp;
    *tp = NULL;
    if (__atomic_sub_fetch(&t->refcount, 1, __ATOMIC_ACQ_REL) != 0) return;
    cnn_tape_unlink(t); /* its node may outlive it: see the tape's sweep */
    cnn_tensor_free(&t->grad);
    storage_release(t->storage);
    free(t);
}

cnn_status cnn_tensor_view(const cnn_tensor *t, cnn_shape shape, const int64_t *byte_strides,
                           size_t offset, cnn_tensor **out)
{
    cnn_tensor *v = calloc(1, sizeof *v);
    if (!v) return cnn_error(CNN_ERR_OUT_OF_MEMORY, "view: out of host memory");
    v->refcount = 1;
    v->dtype = t->dtype;
    v->device = t->device;
    v->shape = shape;
    for (int i = 0; i < CNN_MAX_DIMS; i++) v->strides[i] = i < shape.ndim ? byte_strides[i] : 0;
    v->storage = t->storage;
    __atomic_add_fetch(&v->storage->refcount, 1, __ATOMIC_RELAXED);
    v->offset = offset;
    *out = v;
    return CNN_OK;
}

/* ---- queries ----------------------------------------------------------------------------- */
cnn_shape cnn_tensor_shape(const cnn_tensor *t) { return t ? t->shape : CNN_SCALAR; }
int cnn_tensor_ndim(const cnn_tensor *t) { return t ? t->shape.ndim : 0; }
int64_t cnn_tensor_numel(const cnn_tensor *t) { return t ? cnn_shape_numel(t->shape) : 0; }
cnn_dtype cnn_tensor_dtype(const cnn_tensor *t) { return t ? t->dtype : CNN_F32; }
cnn_device cnn_tensor_device(const cnn_tensor *t) { return t ? t->device : CNN_CPU; }
size_t cnn_tensor_nbytes(const cnn_tensor *t)
{
    return (size_t)cnn_tensor_numel(t) * cnn_dtype_size(t->dtype);
}

int64_t cnn_tensor_dim(const cnn_tensor *t, int i)
{
    if (!t) return 0;
    if (i < 0) i += t->shape.ndim;
    return (i >= 0 && i < t->shape.ndim) ? t->shape.d[i] : 0;
}

bool cnn_tensor_is_contiguous(const cnn_tensor *t)
{
    if (!t) return false;
    int64_t st = (int64_t)cnn_dtype_size(t->dtype);
    for (int i = t->shape.ndim - 1; i >= 0; i--) {
        if (t->shape.d[i] != 1 && t->strides[i] != st) return false;
        st *= t->shape.d[i];
    }
    return true;
}

float *cnn_tensor_data(cnn_tensor *t)
{
    if (!t || t->device.type != CNN_DEVICE_CPU || t->dtype != CNN_F32 ||
        !cnn_tensor_is_contiguous(t))
        return NULL;
    return cnn_f32(t);
}

const float *cnn_tensor_cdata(const cnn_tensor *t) { return cnn_tensor_data((cnn_tensor *)t); }

/* ---- filling ----------------------------------------------------------------------------- */
cnn_status cnn_tensor_fill_(cnn_tensor *t, float value)
{
    CNN_CHECK(t, CNN_ERR_INVALID_ARG, "tensor_fill_: NULL tensor");
    CNN_CHECK(t->dtype == CNN_F32 || t->dtype == CNN_I64, CNN_ERR_UNSUPPORTED,
              "tensor_fill_: dtype %s is not supported", cnn_dtype_name(t->dtype));
    /* Into I64 the value is truncated, as PyTorch's fill_; NaN and values past the range have
     * no conversion (PyTorch refuses them too). */
    CNN_CHECK(t->dtype != CNN_I64 || (value >= -0x1p63f && value < 0x1p63f), CNN_ERR_INVALID_ARG,
              "tensor_fill_: %g does not fit an I64 tensor", value);
    int64_t n = cnn_shape_numel(t->shape);
    cnn_storage_bump(t);
    if (!cnn_tensor_is_contiguous(t)) {
        cnn_tensor *tmp = NULL;
        CNN_TRY(cnn_tensor_empty(t->shape, t->dtype, t->device, &tmp));
        cnn_status st = cnn_tensor_fill_(tmp, value);
        if (st == CNN_OK) st = cnn_tensor_copy_(t, tmp);
        cnn_tensor_free(&tmp);
        return st;
    }
    if (t->device.type == CNN_DEVICE_CPU) {
        if (t->dtype == CNN_F32) {
            float *p = cnn_f32(t);
            for (int64_t i = 0; i < n; i++) p[i] = value;
        } else {
            int64_t *p = cnn_ptr(t);
            for (int64_t i = 0; i < n; i++) p[i] = (int64_t)value;
        }
        return CNN_OK;
    }
#if CNN_WITH_CUDA
    if (t->dtype == CNN_F32) return cnn_cuda_fill_f32(cnn_ctx(), cnn_f32(t), value, n);
    int64_t *host = malloc((size_t)(n ? n : 1) * sizeof *host);
    if (!host) return cnn_error(CNN_ERR_OUT_OF_MEMORY, "tensor_fill_: out of host memory");
    for (int64_t i = 0; i < n; i++) host[i] = (int64_t)value;
    cnn_status st = cnn_tensor_write(t, host, (size_t)n);
    free(host);
    return st;
#else
    return cnn_error(CNN_ERR_DEVICE, "tensor_fill_: CUDA tensor in a build without CUDA");
#endif
}

cnn_status cnn_tensor_full(cnn_shape shape, float value, cnn_device device, cnn_tensor **out)
{
    CNN_TRY(cnn_tensor_empty(shape, CNN_F32, device, out));
    cnn_status st = cnn_tensor_fill_(*out, value);
    if (st != CNN_OK) cnn_tensor_free(out);
    return st;
}

cnn_status cnn_tensor_zeros(cnn_shape shape, cnn_device device, cnn_tensor **out)
{
    return cnn_tensor_full(shape, 0.0f, device, out);
}

cnn_status cnn_tensor_ones(cnn_shape shape, cnn_device device, cnn_tensor **out)
{
    return cnn_tensor_full(shape, 1.0f, device, out);
}

static cnn_status random_tensor(cnn_shape shape, int dist, float a, float b, cnn_device device,
                                cnn_tensor **out)
{
    CNN_TRY(cnn_tensor_empty(shape, CNN_F32, device, out));
    cnn_status st = cnn_rng_fill(cnn_f32(*out), cnn_shape_numel(shape), dist, a, b, device);
    if (st != CNN_OK) cnn_tensor_free(out);
    return st;
}

cnn_status cnn_tensor_uniform(cnn_shape shape, float low, float high, cnn_device device,
                              cnn_tensor **out)
{
    CNN_CHECK(out, CNN_ERR_INVALID_ARG, "tensor_uniform: out is NULL");
    /* As PyTorch's uniform_: finite bounds whose span a float holds (a wider one, or an
     * infinite bound, made every value infinite or NaN). */
    CNN_CHECK(isfinite(low) && isfinite(high) && low <= high &&
                  (double)high - (double)low <= FLT_MAX,
              CNN_ERR_INVALID_ARG, "tensor_uniform: need finite low <= high with high - low <= "
              "FLT_MAX, got [%g, %g)", low, high);
    return random_tensor(shape, 0, low, high, device, out);
}

cnn_status cnn_tensor_normal(cnn_shape shape, float mean, float std, cnn_device device,
                             cnn_tensor **out)
{
    CNN_CHECK(out, CNN_ERR_INVALID_ARG, "tensor_normal: out is NULL");
    /* As tensor_uniform's bounds (a NaN or infinite argument made every value NaN or
     * infinite). */
    CNN_CHECK(isfinite(mean) && isfinite(std) && std >= 0, CNN_ERR_INVALID_ARG,
              "tensor_normal: need a finite mean and a finite std >= 0, got mean %g, std %g",
              mean, std);
    return random_tensor(shape, 1, mean, std, device, out);
}

/* ---- host values in and out --------------------------------------------------------------- */
/* Whether the caller's buffer [p, p + bytes) shares memory with a CPU tensor's storage (e.g.
 * the values of a transposed view read into its own storage): then the copy goes through a
 * temporary, as cnn_tensor_copy_ does for overlapping views. */
static bool host_aliases(const cnn_tensor *t, const void *p, size_t bytes)
{
    if (t->device.type != CNN_DEVICE_CPU || !t->storage || !t->storage->data || !p || !bytes)
        return false;
    uintptr_t lo = (uintptr_t)t->storage->data, hi = lo + t->storage->bytes;
    uintptr_t plo = (uintptr_t)p, phi = plo + bytes;
    return plo < hi && lo < phi;
}

cnn_status cnn_tensor_write(cnn_tensor *t, const void *src, size_t n)
{
    CNN_CHECK(t && (src || n == 0), CNN_ERR_INVALID_ARG, "tensor_write: NULL argument");
    CNN_CHECK((int64_t)n == cnn_shape_numel(t->shape), CNN_ERR_SHAPE,
              "tensor_write: %zu values given for a tensor of shape %s (%lld elements)", n,
              cnn_shape_of(t), (long long)cnn_shape_numel(t->shape));
    size_t bytes = cnn_tensor_nbytes(t);
    if (host_aliases(t, src, bytes)) {
        void *copy = malloc(bytes);
        CNN_CHECK(copy, CNN_ERR_OUT_OF_MEMORY, "tensor_write: out of host memory");
        memcpy(copy, src, bytes);
        cnn_status st = cnn_tensor_write(t, copy, n);
        free(copy);
        return st;
    }
    cnn_tensor host = *t; /* a borrowed CPU view of the caller's buffer */
    cnn_storage hs = {.refcount = 1, .data = (void *)src, .bytes = cnn_tensor_nbytes(t)};
    host.device = CNN_CPU;
    host.storage = &hs;
    host.offset = 0;
    set_contiguous_strides(&host);
    CNN_TRY(cnn_tensor_copy_(t, &host));
#if CNN_WITH_CUDA
    /* From a pinned tensor's data the copy may still run: its block is reused only after. */
    if (t->device.type == CNN_DEVICE_CUDA) CNN_TRY(cnn_cuda_pinned_record_use_at(cnn_ctx(), src));
#endif
    return CNN_OK;
}

cnn_status cnn_tensor_read(const cnn_tensor *t, void *dst, size_t n)
{
    CNN_CHECK(t && (dst || n == 0), CNN_ERR_INVALID_ARG, "tensor_read: NULL argument");
    CNN_CHECK((int64_t)n == cnn_shape_numel(t->shape), CNN_ERR_SHAPE,
              "tensor_read: room for %zu values given for a tensor of shape %s (%lld elements)",
              n, cnn_shape_of(t), (long long)cnn_shape_numel(t->shape));
    if (host_aliases(t, dst, cnn_tensor_nbytes(t))) {
        cnn_tensor *copy = NULL;
        CNN_TRY(cnn_tensor_clone(t, &copy));
        cnn_status st = cnn_tensor_read(copy, dst, n);
        cnn_tensor_free(&copy);
        return st;
    }
    cnn_tensor host = *t;
    cnn_storage hs = {.refcount = 1, .data = dst, .bytes = cnn_tensor_nbytes(t)};
    host.device = CNN_CPU;
    host.storage = &hs;
    host.offset = 0;
    set_contiguous_strides(&host);
    return cnn_tensor_copy_(&host, t);
}

static cnn_status from_host(const char *op, cnn_shape shape, cnn_dtype dt, const void *data,
                            cnn_device device, cnn_tensor **out)
{
    CNN_CHECK(out, CNN_ERR_INVALID_ARG, "%s: out is NULL", op);
    *out = NULL;
    CNN_TRY(cnn_shape_validate(shape, op));
    CNN_CHECK(data || cnn_shape_numel(shape) == 0, CNN_ERR_INVALID_ARG, "%s: data is NULL", op);
    CNN_TRY(cnn_tensor_empty(shape, dt, device, out));
    cnn_status st = cnn_tensor_write(*out, data, (size_t)cnn_shape_numel(shape));
    if (st != CNN_OK) cnn_tensor_free(out);
    return st;
}

cnn_status cnn_tensor_from_data(cnn_shape shape, const float *data, cnn_device device,
                                cnn_tensor **out)
{
    return from_host("tensor_from_data", shape, CNN_F32, data, device, out);
}

cnn_status cnn_tensor_from_i64(cnn_shape shape, const int64_t *data, cnn_device device,
                               cnn_tensor **out)
{
    return from_host("tensor_from_i64", shape, CNN_I64, data, device, out);
}

/* ---- gradient accumulation (used by the tape and optimizers) ------------------------------ */
cnn_status cnn_tensor_accumulate_(cnn_tensor *dst, const cnn_tensor *src)
{
    CNN_ASSERT(cnn_shape_equal(dst->shape, src->shape) && dst->dtype == CNN_F32 &&
               src->dtype == CNN_F32 && cnn_tensor_is_contiguous(dst) &&
               cnn_tensor_is_contiguous(src));
    int64_t n = cnn_shape_numel(dst->shape);
    if (dst->device.type == CNN_DEVICE_CPU) {
        float *d = cnn_f32(dst);
        const float *s = cnn_f32(src);
        for (int64_t i = 0; i < n; i++) d[i] += s[i];
        return CNN_OK;
    }
#if CNN_WITH_CUDA
    return cnn_cuda_accumulate_f32(cnn_ctx(), cnn_f32(dst), cnn_f32(src), n);
#else
    return cnn_error(CNN_ERR_DEVICE, "accumulate: CUDA tensor in a build without CUDA");
#endif
}

cnn_status cnn_tensor_add_i64_(cnn_tensor *t, int64_t v)
{
    CNN_CHECK(t && t->dtype == CNN_I64 && cnn_tensor_is_contiguous(t), CNN_ERR_INVALID_ARG,
              "tensor_add_i64_: needs a contiguous I64 tensor, got %s",
              t ? cnn_shape_of(t) : "NULL");
    int64_t n = cnn_shape_numel(t->shape);
    if (t->device.type == CNN_DEVICE_CPU) {
        int64_t *p = cnn_ptr(t);
        for (int64_t i = 0; i < n; i++) p[i] += v;
        return CNN_OK;
    }
#if CNN_WITH_CUDA
    return cnn_cuda_add_i64(cnn_ctx(), cnn_ptr(t), v, n);
#else
    return cnn_error(CNN_ERR_DEVICE, "tensor_add_i64_: CUDA tensor in a build without CUDA");
#endif
}

/* ---- argument checks shared by ops ---------------------------------------------------------- */
cnn_status cnn_check_f32(const char *op, const char *name, const cnn_tensor *t)
{
    CNN_CHECK(t, CNN_ERR_INVALID_ARG, "%s: %s is NULL", op, name);
    CNN_CHECK(t->dtype == CNN_F32, CNN_ERR_UNSUPPORTED,
              "%s: %s has dtype %s; only F32 is supported", op, name, cnn_dtype_name(t->dtype));
    return CNN_OK;
}

cnn_status cnn_check_same_device(const char *op, const cnn_tensor *a, const char *an,
                                 const cnn_tensor *b, const char *bn)
{
    if (!a || !b) return CNN_OK;
    CNN_CHECK(a->device.type == b->device.type && a->device.index == b->device.index,
              CNN_ERR_DEVICE, "%s: %s is on %s:%d but %s is on %s:%d (no implicit copies)", op, an,
              a->device.type == CNN_DEVICE_CUDA ? "cuda" : "cpu", a->device.index, bn,
              b->device.type == CNN_DEVICE_CUDA ? "cuda" : "cpu", b->device.index);
    return CNN_OK;
}
