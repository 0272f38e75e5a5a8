/* test_dtype.c — the float formats: F16/BF16 <-> F32 against an oracle that finds the nearest
 * value by search (and against the compiler's _Float16 where it has one), F64, then
 * cnn_tensor_to_dtype, and F16/BF16/F64 weights loaded into an F32 model (cnn_dict_load,
 * cnn_model_load, cnn_model_load_pretrained); to an integer dtype, the range's exclusive bounds.
 * PyTorch's own conversions: test_torch_parity.c. */
#include "../core/internal.h"
#include "test.h"

#include <stdint.h>
#include <unistd.h>

/* ---- the oracle ------------------------------------------------------------------------------
 * A format with `man` mantissa bits and exponent bias `bias`: the value of a non-negative code
 * below the infinity code, by arithmetic rather than bit moves. */
typedef struct { int man, bias; uint16_t inf; } fmt;
static const fmt F16 = {10, 15, 0x7c00}, BF16 = {7, 127, 0x7f80};

/* The infinity code's "value" by the same formula is the power of two past the largest value. */
static double value_of(fmt f, uint32_t code)
{
    const uint32_t e = code >> f.man, m = code & ((1u << f.man) - 1);
    return e ? ldexp((double)((1u << f.man) + m), (int)e - f.bias - f.man)
             : ldexp((double)m, 1 - f.bias - f.man);
}

/* The code nearest to a finite |x| (ties to the even code); rounding past the largest value
 * reaches the infinity code, as it should. */
static uint16_t nearest(fmt f, double ax)
{
    uint32_t lo = 0, hi = f.inf;
    if (ax >= value_of(f, hi)) return f.inf;
    while (hi - lo > 1) { /* value(lo) <= ax < value(hi) */
        uint32_t mid = (lo + hi) / 2;
        if (value_of(f, mid) <= ax) lo = mid;
        else hi = mid;
    }
    double dl = ax - value_of(f, lo), dh = value_of(f, hi) - ax;
    return (uint16_t)(dl < dh || (dl == dh && !(lo & 1)) ? lo : hi);
}

static uint16_t oracle_from_f32(fmt f, float x)
{
    return (uint16_t)((signbit(x) ? 0x8000u : 0u) | nearest(f, fabs((double)x)));
}

static float f32_of(uint32_t bits)
{
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static uint32_t bits_of(float f)
{
    uint32_t b;
    memcpy(&b, &f, 4);
    return b;
}

/* Whether a conversion's result is right: equal bits, or both NaN. */
static bool same(uint32_t got, uint32_t want, bool got_nan, bool want_nan)
{
    return got_nan || want_nan ? got_nan && want_nan : got == want;
}

TEST(every_f16_and_bf16_code_converts_to_the_f32_of_its_value)
{
    int bad = 0;
    for (uint32_t c = 0; c < 65536; c++) {
        const uint32_t s = c & 0x8000u, a = c & 0x7fffu;
        /* F16: finite codes by value; 0x7c00 infinity; above it NaN with the payload kept and
         * the quiet bit set, as torch's .float() gives (0x7c01 -> 0x7fc02000). */
        float want = a < 0x7c00u ? (float)value_of(F16, a) : a == 0x7c00u ? INFINITY : NAN;
        float got = cnn_f16_to_f32((uint16_t)c);
        if (s) want = -want;
        if (!same(bits_of(got), bits_of(want), isnan(got), isnan(want)) ||
            (a > 0x7c00u && (bits_of(got) & 0x7fffffu) != (((a & 0x3ffu) << 13) | 0x400000u))) {
            if (bad++ < 5) cnn_test_fail(__FILE__, __LINE__, "F16 %04x -> %a", c, got);
        }
        float bwant = a < 0x7f80u ? (float)value_of(BF16, a) : a == 0x7f80u ? INFINITY : NAN;
        float bgot = cnn_bf16_to_f32((uint16_t)c);
        if (s) bwant = -bwant;
        if (!same(bits_of(bgot), bits_of(bwant), isnan(bgot), isnan(bwant)) && bad++ < 5)
            cnn_test_fail(__FILE__, __LINE__, "BF16 %04x -> %a", c, bgot);
#ifdef __FLT16_MAX__
        _Float16 h;
        memcpy(&h, &(uint16_t){(uint16_t)c}, 2);
        if (!same(bits_of(got), bits_of((float)h), isnan(got), isnan((float)h)) && bad++ < 5)
            cnn_test_fail(__FILE__, __LINE__, "F16 %04x -> %a, _Float16 says %a", c, got,
                          (float)h);
#endif
    }
    CHECK(bad == 0);
}

/* One F32 pattern to F16 and BF16, against the search oracle (and _Float16 where the compiler
 * has it); NaN must stay NaN. */
static void check_from_f32(uint32_t bits, int *bad)
{
    const float x = f32_of(bits);
    const uint16_t h = cnn_f32_to_f16(x), b = cnn_f32_to_bf16(x);
    const bool nan = isnan(x);
    if (nan ? (h & 0x7fffu) <= 0x7c00u || (h >> 15) != (bits >> 31)
            : h != oracle_from_f32(F16, x)) {
        if ((*bad)++ < 5) cnn_test_fail(__FILE__, __LINE__, "%08x -> F16 %04x", bits, h);
    }
    if (nan ? b != 0x7fc0u : b != oracle_from_f32(BF16, x)) {
        if ((*bad)++ < 5) cnn_test_fail(__FILE__, __LINE__, "%08x -> BF16 %04x", bits, b);
    }
#ifdef __FLT16_MAX__
    _Float16 ref = (_Float16)x;
    uint16_t rb;
    memcpy(&rb, &ref, 2);
    if (!nan && h != rb && (*bad)++ < 5)
        cnn_test_fail(__FILE__, __LINE__, "%08x -> F16 %04x, _Float16 says %04x", bits, h, rb);
#endif
}

/* Every pattern of the top 20 bits (sign, exponent, the mantissa bits F16 keeps and its
 * rounding bit) with low bits below, at and above a tie, then random patterns. */
TEST(f32_rounds_to_the_nearest_f16_and_bf16_ties_to_even)
{
    /* F16's rounding bit is bit 12 (higher for its subnormals), BF16's bit 15: both in the
     * top 20; the low 12 are the sticky bits below. */
    static const uint32_t low[] = {0, 1, 0x7ff, 0x800, 0x801, 0xfff};
    int bad = 0;
    for (uint32_t top = 0; top < (1u << 20) && bad < 5; top++)
        for (size_t i = 0; i < sizeof low / sizeof *low; i++)
            check_from_f32(top << 12 | low[i], &bad);
    uint64_t s = 0x9e3779b97f4a7c15u;
    for (int i = 0; i < 1000000 && bad < 5; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        check_from_f32((uint32_t)s, &bad);
    }
    /* The edges by name: F16's largest, the tie past it, its smallest subnormal and half of it
     * (a tie to 0), and BF16's largest F32 neighbour. */
    CHECK(cnn_f32_to_f16(65504.0f) == 0x7bff && cnn_f32_to_f16(65519.99f) == 0x7bff);
    CHECK(cnn_f32_to_f16(65520.0f) == 0x7c00 && cnn_f32_to_f16(-INFINITY) == 0xfc00);
    CHECK(cnn_f32_to_f16(0x1p-24f) == 0x0001 && cnn_f32_to_f16(0x1p-25f) == 0x0000);
    CHECK(cnn_f32_to_f16(0x1.8p-25f) == 0x0001 && cnn_f32_to_f16(-0.0f) == 0x8000);
    CHECK(cnn_f32_to_bf16(f32_of(0x7f7fffffu)) == 0x7f80 && cnn_f32_to_bf16(1.0f) == 0x3f80);
    CHECK(cnn_f32_to_bf16(f32_of(0x3f808000u)) == 0x3f80); /* tie, even below */
    CHECK(cnn_f32_to_bf16(f32_of(0x3f818000u)) == 0x3f82); /* tie, even above */
    CHECK(bad == 0);
}

/* ---- tensors ------------------------------------------------------------------------------- */
static const float SPECIAL[8] = {1.0f, -2.5f, 65520.0f, 0x1p-25f, 1e-30f, -0.0f, 3.14159265f,
                                 1.0009765625f};

TEST(tensor_to_dtype_converts_float_formats)
{
    cnn_tensor *x = NULL, *t = NULL, *h = NULL, *b = NULL, *back = NULL, *i64 = NULL;
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(2, 4), SPECIAL, CNN_CPU, &x));
    /* A transposed view converts in logical order. */
    CHECK_OK(cnn_tensor_transpose(x, 0, 1, &t));
    CHECK_OK(cnn_tensor_to_dtype(t, CNN_F16, &h));
    CHECK_OK(cnn_tensor_to_dtype(t, CNN_BF16, &b));
    REQUIRE(cnn_tensor_dtype(h) == CNN_F16 &&
            cnn_shape_equal(cnn_tensor_shape(h), CNN_SHAPE(4, 2)));
    uint16_t hv[8], bv[8];
    CHECK_OK(cnn_tensor_read(h, hv, 8));
    CHECK_OK(cnn_tensor_read(b, bv, 8));
    for (int i = 0; i < 8; i++) {
        const float v = SPECIAL[(i % 2) * 4 + i / 2];
        CHECK(hv[i] == cnn_f32_to_f16(v) && bv[i] == cnn_f32_to_bf16(v));
    }
    CHECK(hv[4] == 0x7c00 && hv[6] == 0x0000); /* 65520 -> inf; 2^-25 -> 0 */
    /* Back to F32 exactly; F16 <-> BF16 goes through F32. */
    CHECK_OK(cnn_tensor_to_dtype(h, CNN_F32, &back));
    for (int i = 0; i < 8; i++)
        CHECK(bits_of(cnn_tensor_cdata(back)[i]) == bits_of(cnn_f16_to_f32(hv[i])));
    cnn_tensor_free(&back);
    CHECK_OK(cnn_tensor_to_dtype(h, CNN_BF16, &back));
    uint16_t hb[8];
    CHECK_OK(cnn_tensor_read(back, hb, 8));
    for (int i = 0; i < 8; i++) CHECK(hb[i] == cnn_f32_to_bf16(cnn_f16_to_f32(hv[i])));
    cnn_tensor_free(&back);
    /* The same dtype is a contiguous copy. */
    CHECK_OK(cnn_tensor_to_dtype(t, CNN_F32, &back));
    CHECK(cnn_tensor_is_contiguous(back) && cnn_tensor_cdata(back)[1] == SPECIAL[4]);
    cnn_tensor_free(&back);
    const int64_t iv[2] = {1, 2};
    CHECK_OK(cnn_tensor_from_i64(CNN_SHAPE(2), iv, CNN_CPU, &i64));
    CHECK_ERR(cnn_tensor_to_dtype(NULL, CNN_F16, &back), CNN_ERR_INVALID_ARG);
    CHECK_ERR(cnn_tensor_to_dtype(i64, (cnn_dtype)17, &back), CNN_ERR_INVALID_ARG);
    CHECK(back == NULL);
    cnn_tensor *all[] = {x, t, h, b, i64};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) cnn_tensor_free(&all[i]);
}

/* Signalling NaNs convert as torch's .float(): F16's quieted (0x7c01 -> 0x7fc02000), BF16's
 * bits kept (0x7f81 -> 0x7f810000), whatever the build: through a long double, an -O0 build
 * quieted BF16's and an -O3 build kept F16's. */
TEST(tensor_to_dtype_signalling_nans_as_torch)
{
    const uint16_t hv[3] = {0x7c01, 0xfc01, 0x7d55}, bv[2] = {0x7f81, 0xffa5};
    const uint32_t hwant[3] = {0x7fc02000u, 0xffc02000u, 0x7feaa000u};
    const uint32_t bwant[2] = {0x7f810000u, 0xffa50000u};
    cnn_tensor *h = NULL, *b = NULL, *hf = NULL, *bf = NULL;
    CHECK_OK(cnn_tensor_empty(CNN_SHAPE(3), CNN_F16, CNN_CPU, &h));
    CHECK_OK(cnn_tensor_empty(CNN_SHAPE(2), CNN_BF16, CNN_CPU, &b));
    CHECK_OK(cnn_tensor_write(h, hv, 3));
    CHECK_OK(cnn_tensor_write(b, bv, 2));
    CHECK_OK(cnn_tensor_to_dtype(h, CNN_F32, &hf));
    CHECK_OK(cnn_tensor_to_dtype(b, CNN_F32, &bf));
    for (int i = 0; hf && i < 3; i++)
        if (bits_of(cnn_tensor_cdata(hf)[i]) != hwant[i])
            cnn_test_fail(__FILE__, __LINE__, "F16 %04x -> %08x, torch %08x", hv[i],
                          bits_of(cnn_tensor_cdata(hf)[i]), hwant[i]);
    for (int i = 0; bf && i < 2; i++)
        if (bits_of(cnn_tensor_cdata(bf)[i]) != bwant[i])
            cnn_test_fail(__FILE__, __LINE__, "BF16 %04x -> %08x, torch %08x", bv[i],
                          bits_of(cnn_tensor_cdata(bf)[i]), bwant[i]);
    cnn_tensor *all[] = {h, b, hf, bf};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) cnn_tensor_free(&all[i]);
}

/* Integers convert as PyTorch's casts: to a float format rounded once (an I64 past 2^24 to F32
 * to nearest even, not through a double), from one truncated toward zero; a value the integer
 * cannot hold is an error naming it, where PyTorch's result is undefined. */
TEST(tensor_to_dtype_converts_integers_as_casts_and_refuses_what_does_not_fit)
{
    static const int64_t iv[6] = {-7, 0, 16777217, INT64_MAX, INT64_MIN, (1LL << 53) + 1};
    static const float fv[8] = {2.9f, -2.9f, -0.0f, 2147483520.0f, -2147483648.0f, 1e10f,
                                0x1.fffffep62f, -0x1p63f};
    cnn_tensor *i64 = NULL, *f = NULL, *out = NULL, *i32 = NULL, *back = NULL, *d = NULL;
    CHECK_OK(cnn_tensor_from_i64(CNN_SHAPE(6), iv, CNN_CPU, &i64));
    CHECK_OK(cnn_tensor_to_dtype(i64, CNN_F32, &out));
    for (int i = 0; i < 6; i++) CHECK(cnn_tensor_cdata(out)[i] == (float)iv[i]);
    CHECK(cnn_tensor_cdata(out)[2] == 16777216.0f); /* the tie to even */
    cnn_tensor_free(&out);
    CHECK_OK(cnn_tensor_to_dtype(i64, CNN_F64, &d));
    double dv[6];
    CHECK_OK(cnn_tensor_read(d, dv, 6));
    for (int i = 0; i < 6; i++) CHECK(dv[i] == (double)iv[i]);
    /* F32 to I64 and I32: truncated; 1e10 does not fit I32, and back to I64 round trips. */
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(8), fv, CNN_CPU, &f));
    CHECK_OK(cnn_tensor_to_dtype(f, CNN_I64, &out));
    int64_t got[8];
    CHECK_OK(cnn_tensor_read(out, got, 8));
    for (int i = 0; i < 8; i++) CHECK(got[i] == (int64_t)fv[i]);
    CHECK(got[0] == 2 && got[1] == -2 && got[2] == 0 && got[7] == INT64_MIN);
    cnn_tensor_free(&out);
    CHECK_ERR(cnn_tensor_to_dtype(f, CNN_I32, &out), CNN_ERR_INVALID_ARG);
    CHECK(out == NULL && strstr(cnn_last_error(), "element 5") && strstr(cnn_last_error(), "I32"));
    /* I64 to I32 checks the range the same way. */
    CHECK_ERR(cnn_tensor_to_dtype(i64, CNN_I32, &i32), CNN_ERR_INVALID_ARG);
    CHECK(strstr(cnn_last_error(), "element 3"));
    const int64_t small[3] = {-5, 7, INT32_MIN};
    cnn_tensor *s = NULL;
    CHECK_OK(cnn_tensor_from_i64(CNN_SHAPE(3), small, CNN_CPU, &s));
    CHECK_OK(cnn_tensor_to_dtype(s, CNN_I32, &i32));
    CHECK_OK(cnn_tensor_to_dtype(i32, CNN_I64, &back));
    int64_t rt[3];
    CHECK_OK(cnn_tensor_read(back, rt, 3));
    CHECK(rt[0] == -5 && rt[1] == 7 && rt[2] == INT32_MIN);
    /* NaN and infinity fit no integer. */
    const float nf[2] = {1.0f, NAN};
    cnn_tensor *n = NULL, *ni = NULL;
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(2), nf, CNN_CPU, &n));
    CHECK_ERR(cnn_tensor_to_dtype(n, CNN_I64, &ni), CNN_ERR_INVALID_ARG);
    CHECK(ni == NULL && strstr(cnn_last_error(), "element 1"));
    cnn_tensor *all[] = {i64, f, out, i32, back, d, s, n};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) cnn_tensor_free(&all[i]);
}

/* F64: to F32 as C's cast rounds (to nearest even), to the half formats through F32 (double
 * rounding, as PyTorch's double to half), from F32 exactly. */
TEST(f64_converts_to_f32_by_rounding_once_and_to_the_half_formats_through_f32)
{
    static const double v[] = {1.0 + 0x1p-30, 1.0 + 0x1p-24 + 0x1p-40, 1e300, -1e-300, -0.0,
                               3.4028235677973366e38, 0x1.ffffffp127, 1.0 + 0x1p-11 + 0x1p-30,
                               1e-45, 65519.999, 0.1};
    const int n = (int)(sizeof v / sizeof *v);
    cnn_tensor *h = NULL, *d = NULL, *f = NULL, *f16 = NULL, *back = NULL;
    CHECK_OK(cnn_tensor_empty(CNN_SHAPE(n + 1), CNN_F64, CNN_CPU, &d));
    double dv[16];
    memcpy(dv, v, sizeof v);
    dv[n] = NAN;
    CHECK_OK(cnn_tensor_write(d, dv, (size_t)n + 1));
    CHECK_OK(cnn_tensor_to_dtype(d, CNN_F32, &f));
    CHECK_OK(cnn_tensor_to_dtype(d, CNN_F16, &f16));
    uint16_t hv[16];
    CHECK_OK(cnn_tensor_read(f16, hv, (size_t)n + 1));
    for (int i = 0; i < n; i++) {
        const float want = (float)v[i];
        CHECK(bits_of(cnn_tensor_cdata(f)[i]) == bits_of(want));
        CHECK(hv[i] == cnn_f32_to_f16(want));
    }
    CHECK(isnan(cnn_tensor_cdata(f)[n]) && (hv[n] & 0x7fff) > 0x7c00);
    CHECK(cnn_tensor_cdata(f)[0] == 1.0f && isinf(cnn_tensor_cdata(f)[2]));
    CHECK(bits_of(cnn_tensor_cdata(f)[3]) == 0x80000000u && isinf(cnn_tensor_cdata(f)[6]));
    /* 1 + 2^-11 + 2^-30: above F16's tie at 1 + 2^-11, but F32 rounds it onto the tie first. */
    CHECK(hv[7] == 0x3c00);
    /* F32 -> F64 -> F32 changes nothing. */
    CHECK_OK(cnn_tensor_to_dtype(f, CNN_F64, &h));
    CHECK_OK(cnn_tensor_to_dtype(h, CNN_F32, &back));
    CHECK(memcmp(cnn_tensor_cdata(back), cnn_tensor_cdata(f), (size_t)(n + 1) * 4) == 0);
    cnn_tensor *all[] = {h, d, f, f16, back};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) cnn_tensor_free(&all[i]);
}

GPU_TEST(tensor_to_dtype_refuses_a_cuda_tensor_and_loads_convert_across_devices)
{
    cnn_tensor *x = NULL, *g = NULL, *h = NULL, *out = NULL, *gh = NULL, *dst = NULL;
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(8), SPECIAL, CNN_CPU, &x));
    CHECK_OK(cnn_tensor_to(x, CNN_CUDA(0), &g));
    CHECK_ERR(cnn_tensor_to_dtype(g, CNN_F16, &out), CNN_ERR_UNSUPPORTED);
    CHECK(strstr(cnn_last_error(), "cuda:0"));
    CHECK_OK(cnn_tensor_to_dtype(x, CNN_F16, &h));
    /* F16 on the CPU into an F32 tensor on the GPU, and F16 on the GPU into one on the CPU. */
    CHECK_OK(cnn_tensor_to(h, CNN_CUDA(0), &gh));
    CHECK_OK(cnn_tensor_zeros(CNN_SHAPE(8), CNN_CPU, &dst));
    cnn_dict *d = NULL, *s = NULL;
    CHECK_OK(cnn_dict_create(&d));
    CHECK_OK(cnn_dict_create(&s));
    CHECK_OK(cnn_dict_set(d, "a", g));
    CHECK_OK(cnn_dict_set(d, "b", dst));
    CHECK_OK(cnn_dict_set(s, "a", h));
    CHECK_OK(cnn_dict_set(s, "b", gh));
    CHECK_OK(cnn_dict_load(d, s, true, NULL));
    float ga[8];
    CHECK_OK(cnn_tensor_read(g, ga, 8));
    for (int i = 0; i < 8; i++) {
        const float want = cnn_f16_to_f32(cnn_f32_to_f16(SPECIAL[i]));
        CHECK(bits_of(ga[i]) == bits_of(want));
        CHECK(bits_of(cnn_tensor_cdata(dst)[i]) == bits_of(want));
    }
    cnn_dict_destroy(&d);
    cnn_dict_destroy(&s);
    cnn_tensor *all[] = {x, g, h, gh, dst};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) cnn_tensor_free(&all[i]);
}

/* ---- weights in other formats into a model -------------------------------------------------- */
/* m's state with every float tensor in dtype dt (buffers of other dtypes as they are). */
static cnn_dict *state_as(cnn_model *m, cnn_dtype dt)
{
    const cnn_dict *st = cnn_model_state(m);
    cnn_dict *d = NULL;
    if (cnn_dict_create(&d) != CNN_OK) return NULL;
    for (int i = 0; i < cnn_dict_size(st); i++) {
        const cnn_tensor *t = cnn_dict_at(st, i);
        cnn_tensor *c = NULL;
        cnn_status s = cnn_tensor_dtype(t) == CNN_F32 ? cnn_tensor_to_dtype(t, dt, &c)
                                                      : cnn_tensor_clone(t, &c);
        if (s == CNN_OK) s = cnn_dict_set(d, cnn_dict_name(st, i), c);
        cnn_tensor_free(&c);
        if (s != CNN_OK) {
            cnn_dict_destroy(&d);
            return NULL;
        }
    }
    return d;
}

/* Every F32 tensor of m equal, bit for bit, to src's tensor converted to F32 (a conversion the
 * tests above check). */
static int holds_converted(cnn_model *m, const cnn_dict *src)
{
    const cnn_dict *st = cnn_model_state(m);
    int ok = 1;
    for (int i = 0; ok && i < cnn_dict_size(st); i++) {
        const cnn_tensor *t = cnn_dict_at(st, i), *s = cnn_dict_get(src, cnn_dict_name(st, i));
        if (cnn_tensor_dtype(t) != CNN_F32) continue;
        cnn_tensor *want = NULL;
        ok = s && cnn_tensor_to_dtype(s, CNN_F32, &want) == CNN_OK &&
             memcmp(cnn_tensor_cdata(want), cnn_tensor_cdata(t),
                    (size_t)cnn_tensor_numel(t) * 4) == 0;
        cnn_tensor_free(&want);
        if (!ok) cnn_test_fail(__FILE__, __LINE__, "tensor %s", cnn_dict_name(st, i));
    }
    return ok;
}

TEST(weights_in_other_float_formats_load_into_an_f32_model)
{
    char dir[] = "/tmp/cnn_dtype_XXXXXX", path[64];
    REQUIRE(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/w.safetensors", dir);
    cnn_model *src = NULL, *m = NULL;
    cnn_manual_seed(7);
    CHECK_OK(cnn_model_create("resnet18_small", 10, 1, &src));
    cnn_manual_seed(8);
    CHECK_OK(cnn_model_create("resnet18_small", 10, 1, &m));
    const cnn_dtype dts[3] = {CNN_F16, CNN_BF16, CNN_F64};
    for (int k = 0; k < 3; k++) {
        cnn_dict *d = state_as(src, dts[k]);
        REQUIRE(d);
        /* In memory, then through a file (a checkpoint's load is strict). */
        CHECK_OK(cnn_dict_load((cnn_dict *)cnn_model_state(m), d, true, NULL));
        CHECK(holds_converted(m, d));
        CHECK_OK(cnn_safetensors_save(path, d));
        cnn_manual_seed(9);
        cnn_model_destroy(&m);
        CHECK_OK(cnn_model_create("resnet18_small", 10, 1, &m));
        CHECK_OK(cnn_model_load(m, path, true, NULL));
        CHECK(holds_converted(m, d));
        /* num_batches_tracked (I64) came across as it was. */
        const cnn_tensor *nbt = cnn_dict_get(cnn_model_state(m), "bn1.num_batches_tracked");
        CHECK(nbt && cnn_tensor_dtype(nbt) == CNN_I64);
        cnn_dict_destroy(&d);
    }
    unlink(path);
    rmdir(dir);
    cnn_model_destroy(&src);
    cnn_model_destroy(&m);
}

/* An I64 buffer given as an F16 infinity is refused (no integer holds it), after the float
 * tensor before it was converted, and nothing changes; so is a strict load with a name
 * missing. */
TEST(a_load_that_fails_after_converting_changes_nothing)
{
    cnn_tensor *w = NULL, *n = NULL, *wf = NULL, *w16 = NULL, *nf = NULL, *n16 = NULL;
    const int64_t one = 1;
    CHECK_OK(cnn_tensor_zeros(CNN_SHAPE(8), CNN_CPU, &w));
    CHECK_OK(cnn_tensor_from_i64(CNN_SHAPE(1), &one, CNN_CPU, &n));
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(8), SPECIAL, CNN_CPU, &wf));
    CHECK_OK(cnn_tensor_to_dtype(wf, CNN_F16, &w16));
    CHECK_OK(cnn_tensor_full(CNN_SHAPE(1), INFINITY, CNN_CPU, &nf));
    CHECK_OK(cnn_tensor_to_dtype(nf, CNN_F16, &n16));
    cnn_dict *d = NULL, *s = NULL, *s2 = NULL;
    CHECK_OK(cnn_dict_create(&d));
    CHECK_OK(cnn_dict_create(&s));
    CHECK_OK(cnn_dict_create(&s2));
    CHECK_OK(cnn_dict_set(d, "w", w));
    CHECK_OK(cnn_dict_set(d, "n", n));
    CHECK_OK(cnn_dict_set(s, "w", w16));
    CHECK_OK(cnn_dict_set(s, "n", n16));
    CHECK_ERR(cnn_dict_load(d, s, false, NULL), CNN_ERR_INVALID_ARG);
    CHECK(strstr(cnn_last_error(), "'n'") && strstr(cnn_last_error(), "F16") &&
          strstr(cnn_last_error(), "I64") && strstr(cnn_last_error(), "inf"));
    for (int i = 0; i < 8; i++) CHECK(cnn_tensor_cdata(w)[i] == 0.0f);
    CHECK_OK(cnn_dict_set(s2, "w", w16));
    CHECK_ERR(cnn_dict_load(d, s2, true, NULL), CNN_ERR_NOT_FOUND);
    for (int i = 0; i < 8; i++) CHECK(cnn_tensor_cdata(w)[i] == 0.0f);
    cnn_load_report r;
    CHECK_OK(cnn_dict_load(d, s2, false, &r));
    CHECK(r.n_missing == 1 && !strcmp(r.missing, "n"));
    CHECK(cnn_tensor_cdata(w)[0] == 1.0f && isinf(cnn_tensor_cdata(w)[2]));
    cnn_dict_destroy(&d);
    cnn_dict_destroy(&s);
    cnn_dict_destroy(&s2);
    cnn_tensor *all[] = {w, n, wf, w16, nf, n16};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) cnn_tensor_free(&all[i]);
}

/* A model's whole state made half precision, as `{k: v.half() for k, v in sd.items()}` does,
 * counters included, loads: the counters convert back to I64 (PyTorch's load_state_dict copies
 * across dtypes too). A file without the counters (PyTorch before 0.4.1) loads strictly, into
 * a model and as pretrained weights, each counter keeping its value. */
TEST(counters_in_another_dtype_convert_and_missing_counters_keep_their_value)
{
    char dir[] = "/tmp/cnn_dtype_XXXXXX", path[64];
    REQUIRE(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/w.safetensors", dir);
    cnn_model *src = NULL, *m = NULL;
    cnn_manual_seed(4);
    CHECK_OK(cnn_model_create("resnet18_small", 10, 1, &src));
    CHECK_OK(cnn_model_create("resnet18_small", 10, 1, &m));
    const cnn_dict *st = cnn_model_state(src);
    cnn_dict *half = NULL, *old = NULL;
    CHECK_OK(cnn_dict_create(&half));
    CHECK_OK(cnn_dict_create(&old));
    int counters = 0;
    for (int i = 0; i < cnn_dict_size(st); i++) {
        const char *name = cnn_dict_name(st, i);
        const cnn_tensor *t = cnn_dict_at(st, i);
        cnn_tensor *c = NULL;
        if (cnn_tensor_dtype(t) == CNN_I64) {
            const int64_t steps = 300 + i;
            CHECK_OK(cnn_tensor_write((cnn_tensor *)t, &steps, 1));
            counters++;
        } else {
            CHECK_OK(cnn_dict_set(old, name, (cnn_tensor *)t));
        }
        CHECK_OK(cnn_tensor_to_dtype(t, CNN_F16, &c));
        CHECK_OK(cnn_dict_set(half, name, c));
        cnn_tensor_free(&c);
    }
    REQUIRE(counters > 10);
    CHECK_OK(cnn_safetensors_save(path, half));
    CHECK_OK(cnn_model_load(m, path, true, NULL));
    int bad = 0;
    for (int i = 0; i < cnn_dict_size(st); i++) {
        const cnn_tensor *t = cnn_dict_at(st, i), *got = cnn_dict_at(cnn_model_state(m), i);
        if (cnn_tensor_dtype(t) != CNN_I64) continue;
        int64_t a, b;
        CHECK_OK(cnn_tensor_read(t, &a, 1));
        CHECK_OK(cnn_tensor_read(got, &b, 1));
        bad += cnn_tensor_dtype(got) != CNN_I64 || a != b;
    }
    CHECK(bad == 0);
    /* Without counters: strict loads keep m's (the values just loaded), with none reported. */
    CHECK_OK(cnn_safetensors_save(path, old));
    const int64_t mine = 77;
    cnn_tensor *c0 = cnn_dict_get(cnn_model_state(m), "bn1.num_batches_tracked");
    REQUIRE(c0);
    CHECK_OK(cnn_tensor_write(c0, &mine, 1));
    cnn_load_report r;
    CHECK_OK(cnn_model_load(m, path, true, &r));
    CHECK(r.n_missing == 0 && r.n_unexpected == 0);
    int64_t kept = 0;
    CHECK_OK(cnn_tensor_read(c0, &kept, 1));
    CHECK(kept == 77);
    cnn_pretrained_report pr;
    CHECK_OK(cnn_model_load_pretrained(m, path, &pr));
    CHECK(pr.n_loaded == cnn_dict_size(old) && pr.n_fresh == 0);
    CHECK_OK(cnn_tensor_read(c0, &kept, 1));
    CHECK(kept == 77);
    /* Only the counters: a missing weight is still missing. */
    cnn_dict *less = NULL;
    CHECK_OK(cnn_dict_create(&less));
    for (int i = 0; i < cnn_dict_size(old); i++)
        if (strcmp(cnn_dict_name(old, i), "bn1.weight"))
            CHECK_OK(cnn_dict_set(less, cnn_dict_name(old, i), cnn_dict_at(old, i)));
    CHECK_OK(cnn_safetensors_save(path, less));
    cnn_dict_destroy(&less);
    CHECK_ERR(cnn_model_load(m, path, true, &r), CNN_ERR_NOT_FOUND);
    CHECK(strstr(cnn_last_error(), "bn1.weight") && !strstr(cnn_last_error(), "num_batches"));
    cnn_dict_destroy(&half);
    cnn_dict_destroy(&old);
    unlink(path);
    rmdir(dir);
    cnn_model_destroy(&src);
    cnn_model_destroy(&m);
}

/* Pretrained BF16 weights of an RGB model into a gray one: the first conv summed over its
 * three input channels in F32, the rest converted. */
TEST(pretrained_half_precision_weights_adapt_to_a_gray_model)
{
    char dir[] = "/tmp/cnn_dtype_XXXXXX", path[64];
    REQUIRE(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/rgb.safetensors", dir);
    cnn_model *rgb = NULL, *gray = NULL;
    cnn_manual_seed(3);
    CHECK_OK(cnn_model_create("resnet18_small", 10, 3, &rgb));
    CHECK_OK(cnn_model_create("resnet18_small", 10, 1, &gray));
    cnn_dict *d = state_as(rgb, CNN_BF16);
    REQUIRE(d);
    CHECK_OK(cnn_safetensors_save(path, d));
    cnn_pretrained_report r;
    CHECK_OK(cnn_model_load_pretrained(gray, path, &r));
    CHECK(!strcmp(r.adapted, "conv1.weight") && r.n_fresh == 0);
    const cnn_tensor *w3 = cnn_dict_get(d, "conv1.weight");
    const cnn_tensor *w1 = cnn_dict_get(cnn_model_state(gray), "conv1.weight");
    REQUIRE(w3 && w1);
    const int64_t k = cnn_tensor_dim(w1, 0), rs = cnn_tensor_numel(w1) / k;
    uint16_t *h = malloc((size_t)cnn_tensor_numel(w3) * 2);
    REQUIRE(h);
    CHECK_OK(cnn_tensor_read(w3, h, (size_t)cnn_tensor_numel(w3)));
    int bad = 0;
    for (int64_t i = 0; i < k; i++)
        for (int64_t j = 0; j < rs; j++) {
            float want = cnn_bf16_to_f32(h[(i * 3 + 0) * rs + j]) +
                         cnn_bf16_to_f32(h[(i * 3 + 1) * rs + j]) +
                         cnn_bf16_to_f32(h[(i * 3 + 2) * rs + j]);
            bad += bits_of(cnn_tensor_cdata(w1)[i * rs + j]) != bits_of(want);
        }
    CHECK(bad == 0);
    free(h);
    const cnn_tensor *fc = cnn_dict_get(cnn_model_state(gray), "fc.weight");
    const cnn_tensor *fc16 = cnn_dict_get(d, "fc.weight");
    uint16_t f0;
    cnn_tensor *one = NULL;
    REQUIRE(fc && fc16);
    CHECK_OK(cnn_tensor_narrow(fc16, 0, 0, 1, &one));
    cnn_tensor *first = NULL;
    CHECK_OK(cnn_tensor_narrow(one, 1, 0, 1, &first));
    CHECK_OK(cnn_tensor_read(first, &f0, 1));
    CHECK(bits_of(cnn_tensor_cdata(fc)[0]) == bits_of(cnn_bf16_to_f32(f0)));
    cnn_tensor_free(&first);
    cnn_tensor_free(&one);
    cnn_dict_destroy(&d);
    unlink(path);
    rmdir(dir);
    cnn_model_destroy(&rgb);
    cnn_model_destroy(&gray);
}

/* To an integer, a value converts when its truncation toward zero fits, as C's and PyTorch's
 * casts (torch 1.13: float64 -2147483648.5 -> int32 -2147483648, 2147483647.5 -> 2147483647);
 * 2^63 does not fit I64 (the cast is undefined there; x86 gives INT64_MIN) and is refused.
 * Both bounds are exclusive: one off accepted 2^63 as INT64_MIN, or refused -2147483648.5. */
TEST(tensor_to_dtype_integer_range_edges)
{
    cnn_tensor *f = NULL, *i = NULL, *d = NULL, *o = NULL;
    const float top = 0x1p63f;
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(1), &top, CNN_CPU, &f));
    CHECK_ERR(cnn_tensor_to_dtype(f, CNN_I64, &i), CNN_ERR_INVALID_ARG);
    CHECK(i == NULL && strstr(cnn_last_error(), "element 0") != NULL);
    const double edges[2] = {-2147483648.5, 2147483647.5};
    CHECK_OK(cnn_tensor_empty(CNN_SHAPE(2), CNN_F64, CNN_CPU, &d));
    CHECK_OK(cnn_tensor_write(d, edges, 2));
    CHECK_OK(cnn_tensor_to_dtype(d, CNN_I32, &o));
    int32_t got[2] = {0, 0};
    if (o) CHECK_OK(cnn_tensor_read(o, got, 2));
    CHECK(got[0] == INT32_MIN && got[1] == INT32_MAX);
    cnn_tensor *all[] = {f, i, d, o};
    for (size_t k = 0; k < sizeof all / sizeof *all; k++) cnn_tensor_free(&all[k]);
}
