/* dtype.c — the half-precision storage formats (IEEE binary16 "F16" and bfloat16 "BF16")
 * to and from F32, bit for bit as PyTorch converts them, and cnn_tensor_to_dtype between any
 * two dtypes. The half formats' conversions use integer arithmetic only, so no FPU mode or
 * compiler option changes a result. */
#include "internal.h"

float cnn_f16_to_f32(uint16_t h)
{
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu,
                   man = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0x1f) {
        /* infinity, or NaN with its payload, quieted as c10's conversion (and the FPU's) does */
        bits = sign | 0x7f800000u | (man << 13) | (man ? 0x00400000u : 0);
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (man << 13); /* rebias 15 -> 127 */
    } else if (man == 0) {
        bits = sign;
    } else { /* subnormal: man * 2^-24, normal in F32: shift the leading 1 into place */
        int e = 113; /* F32 biased exponent of 2^-14, the smallest normal F16 */
        uint32_t m = man;
        while (!(m & 0x400u)) m <<= 1, e--;
        bits = sign | ((uint32_t)e << 23) | ((m & 0x3ffu) << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* q + 1 when the `drop` low bits of m are above half of 1 << drop, or exactly half and q odd. */
static uint32_t round_even(uint32_t m, int drop)
{
    const uint32_t q = m >> drop, rem = m & ((1u << drop) - 1), half = 1u << (drop - 1);
    return q + (rem > half || (rem == half && (q & 1)));
}

uint16_t cnn_f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    const uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    const uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return sign | 0x7e00u; /* NaN: quiet, as PyTorch's c10::Half */
    if (ax >= 0x477ff000u) return sign | 0x7c00u; /* >= 65520 rounds past 65504: infinity */
    if (ax >= 0x38800000u) /* normal: drop 13 mantissa bits; a carry moves into the exponent */
        return sign | (uint16_t)(round_even(ax - 0x38000000u, 13));
    const uint32_t e = ax >> 23; /* below 2^-14: subnormal (or 0) in F16 */
    if (e < 102) return sign;    /* <= 2^-25, half the smallest subnormal: ties to even 0 */
    /* (m * 2^(e - 150)) / 2^-24 = m >> (126 - e); 1024 there is the smallest normal. */
    return sign | (uint16_t)round_even((ax & 0x7fffffu) | 0x800000u, (int)(126 - e));
}

float cnn_bf16_to_f32(uint16_t b)
{
    const uint32_t bits = (uint32_t)b << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

uint16_t cnn_f32_to_bf16(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    if ((x & 0x7fffffffu) > 0x7f800000u) return 0x7fc0u; /* NaN, as c10::BFloat16 */
    return (uint16_t)(((uint64_t)x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

bool cnn_dtype_is_float(cnn_dtype dt)
{
    return dt == CNN_F32 || dt == CNN_F16 || dt == CNN_BF16 || dt == CNN_F64;
}

/* A value of any dtype, exactly, as a long double (whose 64-bit mantissa on x86-64 holds every
 * I64; elsewhere it is at least a double). */
static long double load_value(const char *p, cnn_dtype dt)
{
    uint16_t h;
    float f;
    double d;
    int64_t l;
    int32_t i;
    switch (dt) {
    case CNN_F16: memcpy(&h, p, 2); return cnn_f16_to_f32(h);
    case CNN_BF16: memcpy(&h, p, 2); return cnn_bf16_to_f32(h);
    case CNN_F64: memcpy(&d, p, 8); return d;
    case CNN_I64: memcpy(&l, p, 8); return (long double)l;
    case CNN_I32: memcpy(&i, p, 4); return i;
    default: memcpy(&f, p, 4); return f;
    }
}

/* Stores v in format dt: to F64 rounded once, else rounded to F32 first (PyTorch's double to
 * half also goes through float) and from there to a half format; to an integer truncated toward
 * zero, as C's and PyTorch's casts, false when v is NaN, infinite or out of the integer's
 * range (where those casts are undefined). */
static bool store_value(char *p, cnn_dtype dt, long double v)
{
    const float f = (float)v;
    const double d = (double)v;
    uint16_t h;
    switch (dt) {
    case CNN_F16: h = cnn_f32_to_f16(f); memcpy(p, &h, 2); return true;
    case CNN_BF16: h = cnn_f32_to_bf16(f); memcpy(p, &h, 2); return true;
    case CNN_F64: memcpy(p, &d, 8); return true;
    case CNN_I64: {
        /* -2^63 <= v < 2^63, both bounds exact in any long double */
        if (!(v >= -0x1p63L && v < 0x1p63L)) return false;
        const int64_t l = (int64_t)v;
        memcpy(p, &l, 8);
        return true;
    }
    case CNN_I32: {
        if (!(v > -0x1p31L - 1 && v < 0x1p31L)) return false;
        const int32_t i = (int32_t)v;
        memcpy(p, &i, 4);
        return true;
    }
    default: memcpy(p, &f, 4); return true;
    }
}

/* F32, F16 and BF16 convert among themselves through F32 bit patterns only: a long double on
 * the way may quiet a signalling NaN or not, as the optimiser folds it (BF16 to F32 keeps the
 * bits in PyTorch). */
static bool is_f32_family(cnn_dtype dt) { return dt == CNN_F32 || dt == CNN_F16 || dt == CNN_BF16; }

static float load_f32(const char *p, cnn_dtype dt)
{
    uint16_t h;
    float f;
    if (dt == CNN_F32) {
        memcpy(&f, p, 4);
        return f;
    }
    memcpy(&h, p, 2);
    return dt == CNN_F16 ? cnn_f16_to_f32(h) : cnn_bf16_to_f32(h);
}

static void store_f32(char *p, cnn_dtype dt, float f)
{
    if (dt == CNN_F32) {
        memcpy(p, &f, 4);
        return;
    }
    uint16_t h = dt == CNN_F16 ? cnn_f32_to_f16(f) : cnn_f32_to_bf16(f);
    memcpy(p, &h, 2);
}

cnn_status cnn_tensor_to_dtype(const cnn_tensor *t, cnn_dtype dtype, cnn_tensor **out)
{
    CNN_CHECK(t && out, CNN_ERR_INVALID_ARG, "tensor_to_dtype: NULL argument");
    *out = NULL;
    if (t->dtype == dtype) return cnn_tensor_clone(t, out);
    CNN_CHECK((unsigned)dtype <= CNN_F64, CNN_ERR_INVALID_ARG,
              "tensor_to_dtype: %d is not a dtype", (int)dtype);
    CNN_CHECK(t->device.type == CNN_DEVICE_CPU, CNN_ERR_UNSUPPORTED, "tensor_to_dtype: the "
              "tensor is on cuda:%d; conversions run on the CPU (cnn_tensor_to it first)",
              t->device.index);
    cnn_tensor *c = NULL;
    CNN_TRY(cnn_contig(t, &c));
    cnn_status st = cnn_tensor_empty(t->shape, dtype, CNN_CPU, out);
    if (st == CNN_OK) {
        const char *src = cnn_ptr(c);
        char *dst = cnn_ptr(*out);
        const size_t ss = cnn_dtype_size(t->dtype), ds = cnn_dtype_size(dtype);
        const int64_t n = cnn_shape_numel(t->shape);
        const bool f32_family = is_f32_family(t->dtype) && is_f32_family(dtype);
        for (int64_t i = 0; f32_family && i < n; i++)
            store_f32(dst + (size_t)i * ds, dtype, load_f32(src + (size_t)i * ss, t->dtype));
        for (int64_t i = 0; !f32_family && i < n && st == CNN_OK; i++) {
            const long double v = load_value(src + (size_t)i * ss, t->dtype);
            if (!store_value(dst + (size_t)i * ds, dtype, v))
                st = cnn_error(CNN_ERR_INVALID_ARG, "tensor_to_dtype: %s to %s: element %lld "
                               "(%Lg) is not a number %s can hold", cnn_dtype_name(t->dtype),
                               cnn_dtype_name(dtype), (long long)i, v, cnn_dtype_name(dtype));
        }
        if (st != CNN_OK) cnn_tensor_free(out);
    }
    cnn_tensor_free(&c);
    return st;
}
