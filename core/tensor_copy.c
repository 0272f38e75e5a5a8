/* tensor_copy.c — copies of tensor values between views, devices and pinned host memory
 * (strided, overlap-safe, synchronous or queued), and contiguous/clone/to built on them. It
 * allocates tensors only as copy targets, holds no op math, and leaves host buffers to tensor.c. */
#include "internal.h"

#if CNN_WITH_CUDA
#include "../cuda/cuda_api.h"
#endif

/* ---- copies ------------------------------------------------------------------------------ */
/* Host strided copy, element by element over a rank <= 4 index space. */
static void cpu_strided_copy(char *dst, const int64_t *ds, const char *src, const int64_t *ss,
                             cnn_shape shape, size_t esize)
{
    int64_t d[4] = {1, 1, 1, 1}, dst4[4] = {0}, src4[4] = {0};
    int off = 4 - shape.ndim;
    for (int i = 0; i < shape.ndim; i++) {
        d[off + i] = shape.d[i];
        dst4[off + i] = ds[i];
        src4[off + i] = ss[i];
    }
    for (int64_t a = 0; a < d[0]; a++)
        for (int64_t b = 0; b < d[1]; b++)
            for (int64_t c = 0; c < d[2]; c++) {
                char *dp = dst + a * dst4[0] + b * dst4[1] + c * dst4[2];
                const char *sp = src + a * src4[0] + b * src4[1] + c * src4[2];
                if (esize == 4 && dst4[3] == 4 && src4[3] == 4) {
                    memcpy(dp, sp, (size_t)d[3] * 4);
                    continue;
                }
                for (int64_t e = 0; e < d[3]; e++)
                    memcpy(dp + e * dst4[3], sp + e * src4[3], esize);
            }
}

/* The rule of both copies: two tensors of one shape and dtype. */
static cnn_status check_copy(const char *op, const cnn_tensor *dst, const cnn_tensor *src)
{
    CNN_CHECK(dst && src, CNN_ERR_INVALID_ARG, "%s: NULL tensor", op);
    CNN_CHECK(cnn_shape_equal(dst->shape, src->shape), CNN_ERR_SHAPE,
              "%s: destination %s and source %s differ in shape", op, cnn_shape_of(dst),
              cnn_shape_of(src));
    CNN_CHECK(dst->dtype == src->dtype, CNN_ERR_SHAPE, "%s: destination dtype %s, source dtype %s",
              op, cnn_dtype_name(dst->dtype), cnn_dtype_name(src->dtype));
    return CNN_OK;
}

/* The bytes [lo, hi) a non-empty view spans in its storage (strides are never negative). */
static void view_span(const cnn_tensor *t, size_t *lo, size_t *hi)
{
    size_t last = 0;
    for (int i = 0; i < t->shape.ndim; i++)
        last += (size_t)(t->shape.d[i] - 1) * (size_t)t->strides[i];
    *lo = t->offset;
    *hi = t->offset + last + cnn_dtype_size(t->dtype);
}

/* Two views of one storage (and one shape) whose spans meet, unless they are the very same view. */
static bool may_overlap(const cnn_tensor *a, const cnn_tensor *b)
{
    if (a->storage != b->storage) return false;
    bool same = a->offset == b->offset;
    for (int i = 0; i < a->shape.ndim; i++) same = same && a->strides[i] == b->strides[i];
    if (same) return false;
    size_t alo, ahi, blo, bhi;
    view_span(a, &alo, &ahi);
    view_span(b, &blo, &bhi);
    return alo < bhi && blo < ahi;
}

cnn_status cnn_tensor_copy_(cnn_tensor *dst, const cnn_tensor *src)
{
    CNN_TRY(check_copy("tensor_copy_", dst, src));
    cnn_storage_bump(dst);
    size_t es = cnn_dtype_size(src->dtype);
    if (cnn_shape_numel(src->shape) == 0) return CNN_OK;
    if (may_overlap(dst, src)) {
        /* dst gets src's values as they were: through a copy, or the elements written first
         * would be read again (a row shifted by one would repeat its first value). */
        cnn_tensor *tmp = NULL;
        CNN_TRY(cnn_tensor_clone(src, &tmp));
        cnn_status st = cnn_tensor_copy_(dst, tmp);
        cnn_tensor_free(&tmp);
        return st;
    }
    bool same_dev = dst->device.type == src->device.type && dst->device.index == src->device.index;
    if (same_dev && dst->device.type == CNN_DEVICE_CPU) {
        cpu_strided_copy(cnn_ptr(dst), dst->strides, cnn_ptr(src), src->strides, src->shape, es);
        return CNN_OK;
    }
#if CNN_WITH_CUDA
    cnn_context *ctx = cnn_ctx();
    if (same_dev)
        return cnn_cuda_strided_copy(ctx, cnn_ptr(dst), dst->strides, cnn_ptr(src), src->strides,
                                     src->shape, es);
    /* Across devices: both sides contiguous, then one memcpy. */
    cnn_status st = CNN_OK;
    cnn_tensor *s = NULL, *tmp = NULL;
    CNN_TRYG(cnn_contig(src, &s));
    if (!cnn_tensor_is_contiguous(dst))
        CNN_TRYG(cnn_tensor_empty(src->shape, src->dtype, dst->device, &tmp));
    cnn_tensor *to = tmp ? tmp : dst;
    CNN_TRYG(cnn_cuda_memcpy(ctx, cnn_ptr(to), to->device, cnn_ptr(s), s->device,
                             cnn_tensor_nbytes(s)));
    /* From pinned memory the copy is still running: keep its block from reuse until done
     * (a copy into host memory has landed already). */
    CNN_TRYG(cnn_cuda_pinned_record_use(ctx, s->storage));
    if (tmp) CNN_TRYG(cnn_tensor_copy_(dst, tmp));
done:
    cnn_tensor_free(&s);
    cnn_tensor_free(&tmp);
    return st;
#else
    return cnn_error(CNN_ERR_DEVICE, "tensor_copy_: CUDA tensor in a build without CUDA");
#endif
}

cnn_status cnn_tensor_copy_start_(cnn_tensor *dst, const cnn_tensor *src)
{
    CNN_TRY(check_copy("tensor_copy_start_", dst, src));
    cnn_storage_bump(dst);
    if (src->device.type == CNN_DEVICE_CPU) return cnn_tensor_copy_(dst, src);
    CNN_CHECK(cnn_tensor_is_pinned(dst) && cnn_tensor_is_contiguous(dst), CNN_ERR_INVALID_ARG,
              "tensor_copy_start_: the destination of a copy from the GPU must be a contiguous "
              "pinned CPU tensor (cnn_tensor_empty_pinned)");
#if CNN_WITH_CUDA
    cnn_context *ctx = cnn_ctx();
    cnn_tensor *s = NULL;
    CNN_TRY(cnn_contig(src, &s));
    /* The device copy (if one was made) is released at once: its memory is reused only by
     * work queued after this copy on the same stream. */
    cnn_status st = cnn_cuda_memcpy_to_pinned(ctx, cnn_ptr(dst), cnn_ptr(s), s->device,
                                              cnn_tensor_nbytes(s));
    if (st == CNN_OK) st = cnn_cuda_pinned_record_use(ctx, dst->storage);
    cnn_tensor_free(&s);
    return st;
#else
    return cnn_error(CNN_ERR_DEVICE, "tensor_copy_start_: CUDA tensor in a build without CUDA");
#endif
}

cnn_status cnn_tensor_wait(const cnn_tensor *t)
{
    CNN_CHECK(t, CNN_ERR_INVALID_ARG, "tensor_wait: NULL tensor");
#if CNN_WITH_CUDA
    if (cnn_tensor_is_pinned(t)) return cnn_cuda_pinned_wait(t->storage);
#endif
    return CNN_OK;
}

cnn_status cnn_contig(const cnn_tensor *t, cnn_tensor **out)
{
    if (cnn_tensor_is_contiguous(t)) {
        *out = cnn_tensor_retain((cnn_tensor *)t);
        return CNN_OK;
    }
    CNN_TRY(cnn_tensor_empty(t->shape, t->dtype, t->device, out));
    cnn_status st = cnn_tensor_copy_(*out, t);
    if (st != CNN_OK) cnn_tensor_free(out);
    return st;
}

cnn_status cnn_tensor_contiguous(const cnn_tensor *t, cnn_tensor **out)
{
    CNN_CHECK(t && out, CNN_ERR_INVALID_ARG, "tensor_contiguous: NULL argument");
    /* A copy made for autograd is recorded (as PyTorch's contiguous()): a reshape to the same
     * shape copies a non-contiguous tensor and passes gradients back to it. */
    if (!cnn_tensor_is_contiguous(t) && cnn_should_record(&t, 1))
        return cnn_tensor_reshape(t, t->shape, out);
    return cnn_contig(t, out);
}

cnn_status cnn_tensor_clone(const cnn_tensor *t, cnn_tensor **out)
{
    CNN_CHECK(t && out, CNN_ERR_INVALID_ARG, "tensor_clone: NULL argument");
    return cnn_tensor_to(t, t->device, out);
}

cnn_status cnn_tensor_to(const cnn_tensor *t, cnn_device device, cnn_tensor **out)
{
    CNN_CHECK(t && out, CNN_ERR_INVALID_ARG, "tensor_to: NULL argument");
    CNN_TRY(cnn_tensor_empty(t->shape, t->dtype, device, out));
    cnn_status st = cnn_tensor_copy_(*out, t);
    if (st != CNN_OK) cnn_tensor_free(out);
    return st;
}
