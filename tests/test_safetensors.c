/* test_safetensors.c — safetensors checkpoints: bit-exact round trips, the exact bytes of the
 * format (ours and Python's writer), a corpus of corrupt files and random corruptions, atomic
 * writes, and loading a checkpoint into a model's dict. Files go to a fresh /tmp folder
 * (scratch.h). Running out of memory and non-regular files: test_safetensors_limits.c. */
#include "test.h"

#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "scratch.h"

/* ---- helpers ----------------------------------------------------------------------------- */
static int same_file(const char *path, const unsigned char *bytes, size_t n)
{
    size_t m;
    unsigned char *now = scratch_read(path, &m);
    int same = now && m == n && memcmp(now, bytes, n) == 0;
    free(now);
    return same;
}

/* Header JSON of one tensor description, and of files holding tensors named a (and b). */
#define INFO(dt, shape, offs) "{\"dtype\":\"" dt "\",\"shape\":" shape ",\"data_offsets\":" offs "}"
#define ONE(dt, shape, offs) "{\"a\":" INFO(dt, shape, offs) "}"
#define TWO(a, b) "{\"a\":" a ",\"b\":" b "}"

static cnn_tensor *raw_tensor(cnn_shape s, cnn_dtype dt, const void *bytes)
{
    cnn_tensor *t = NULL;
    if (cnn_tensor_empty(s, dt, CNN_CPU, &t) != CNN_OK) return NULL;
    if (cnn_tensor_write(t, bytes, (size_t)cnn_tensor_numel(t)) != CNN_OK) cnn_tensor_free(&t);
    return t;
}

/* Same names in the same order, dtypes, shapes, bytes and metadata. */
static int dicts_identical(const cnn_dict *a, const cnn_dict *b)
{
    if (cnn_dict_size(a) != cnn_dict_size(b) || cnn_dict_meta_size(a) != cnn_dict_meta_size(b))
        return 0;
    for (int i = 0; i < cnn_dict_size(a); i++) {
        const cnn_tensor *x = cnn_dict_at(a, i), *y = cnn_dict_at(b, i);
        if (strcmp(cnn_dict_name(a, i), cnn_dict_name(b, i)) != 0) return 0;
        char sx[64], sy[64];
        cnn_shape_str(cnn_tensor_shape(x), sx, sizeof sx);
        cnn_shape_str(cnn_tensor_shape(y), sy, sizeof sy);
        if (cnn_tensor_dtype(x) != cnn_tensor_dtype(y) || strcmp(sx, sy) != 0 ||
            cnn_tensor_device(y).type != CNN_DEVICE_CPU)
            return 0;
        /* Zeroed room for 8 bytes (the largest element) per element: buffers compare whole. */
        size_t n = (size_t)cnn_tensor_numel(x);
        unsigned char *bx = calloc(8, n + 1), *by = calloc(8, n + 1);
        int same = bx && by && cnn_tensor_read(x, bx, n) == CNN_OK &&
                   cnn_tensor_read(y, by, n) == CNN_OK && memcmp(bx, by, 8 * n) == 0;
        free(bx), free(by);
        if (!same) return 0;
    }
    for (int i = 0; i < cnn_dict_meta_size(a); i++) {
        const char *v = cnn_dict_get_meta(b, cnn_dict_meta_key(a, i));
        if (!v || strcmp(v, cnn_dict_meta_value(a, i)) != 0) return 0;
    }
    return 1;
}

static void put(cnn_dict *d, const char *name, cnn_tensor *t)
{
    if (t && cnn_dict_set(d, name, t) != CNN_OK) cnn_test_fail(__FILE__, __LINE__, "dict_set");
    if (!t) cnn_test_fail(__FILE__, __LINE__, "tensor for '%s' not created", name);
    cnn_tensor_free(&t);
}

static cnn_tensor *arange(cnn_shape s, float start)
{
    int64_t n = 1;
    for (int i = 0; i < s.ndim; i++) n *= s.d[i];
    float *v = malloc((size_t)(n ? n : 1) * sizeof *v);
    for (int64_t i = 0; i < n; i++) v[i] = start + 0.25f * (float)i;
    cnn_tensor *t = NULL;
    cnn_tensor_from_data(s, v, CNN_CPU, &t);
    free(v);
    return t;
}

/* A dict exercising every supported dtype, ranks 0-4, a view, an empty tensor and odd names. */
static cnn_dict *sample_dict(void)
{
    cnn_dict *d = NULL;
    if (cnn_dict_create(&d) != CNN_OK) return NULL;
    float s = 3.5f;
    put(d, "scalar", raw_tensor(CNN_SCALAR, CNN_F32, &s));
    put(d, "conv1.weight", arange(CNN_SHAPE(2, 1, 3, 2), -1.0f));
    put(d, "fc.weight", arange(CNN_SHAPE(3, 4), 0.5f));
    put(d, "vec", arange(CNN_SHAPE(5), 2.0f));
    put(d, "cube", arange(CNN_SHAPE(2, 3, 4), 7.0f));
    uint32_t special[6] = {0x7fc00001u, 0x7f800000u, 0xff800000u, 0x80000000u, 0x00000001u,
                           0x3f800000u}; /* NaN payload, +-inf, -0, denormal, 1 */
    put(d, "bits", raw_tensor(CNN_SHAPE(6), CNN_F32, special));
    int64_t nbt = 12345678901LL;
    put(d, "bn1.num_batches_tracked", raw_tensor(CNN_SCALAR, CNN_I64, &nbt));
    int64_t lab[3] = {-1, 0, INT64_MAX};
    put(d, "labels", raw_tensor(CNN_SHAPE(3), CNN_I64, lab));
    int32_t idx[4] = {-7, 0, 1, INT32_MAX};
    put(d, "idx", raw_tensor(CNN_SHAPE(2, 2), CNN_I32, idx));
    uint16_t half[3] = {0x3c00, 0xc000, 0x7bff}, bf[2] = {0x3f80, 0xbf80};
    put(d, "half", raw_tensor(CNN_SHAPE(3), CNN_F16, half));
    put(d, "bf16", raw_tensor(CNN_SHAPE(1, 2), CNN_BF16, bf));
    cnn_tensor *base = arange(CNN_SHAPE(3, 4), 100.0f), *tr = NULL, *nr = NULL;
    if (base && cnn_tensor_transpose(base, 0, 1, &tr) == CNN_OK)
        cnn_tensor_narrow(tr, 0, 1, 2, &nr); /* (2, 3), strided */
    cnn_tensor_free(&base);
    cnn_tensor_free(&tr);
    put(d, "view", nr);
    put(d, "empty", raw_tensor(CNN_SHAPE(0, 3), CNN_F32, NULL));
    put(d, "odd \"name\" \\ \t/\xc3\xa9\xf0\x9f\x98\x80", arange(CNN_SHAPE(1), 9.0f));
    cnn_dict_set_meta(d, "format", "pt");
    cnn_dict_set_meta(d, "epoch", "7");
    cnn_dict_set_meta(d, "note \xe2\x9c\x93", "line1\nline2 \"quoted\" \x01");
    return d;
}

/* ---- round trips and exact bytes --------------------------------------------------------- */
TEST(safetensors_round_trip_bit_exact)
{
    scratch s;
    REQUIRE(scratch_open(&s));
    cnn_dict *d = sample_dict(), *back = NULL;
    REQUIRE(d);
    CHECK(!cnn_tensor_is_contiguous(cnn_dict_get(d, "view")));
    CHECK_OK(cnn_safetensors_save(s.path, d));
    CHECK_OK(cnn_safetensors_load(s.path, &back));
    REQUIRE(back);
    CHECK(dicts_identical(d, back));
    float v[6];
    CHECK_OK(cnn_tensor_read(cnn_dict_get(back, "view"), v, 6));
    CHECK(v[0] == 100.25f && v[1] == 101.25f && v[3] == 100.5f); /* base^T rows 1..2 */
    CHECK(cnn_tensor_ndim(cnn_dict_get(back, "scalar")) == 0 &&
          cnn_tensor_numel(cnn_dict_get(back, "empty")) == 0);
    CHECK(scratch_count(&s) == 1); /* no temporary file left behind */
    /* Saving what was loaded gives the same file, byte for byte. */
    size_t n1;
    unsigned char *b1 = scratch_read(s.path, &n1);
    CHECK_OK(cnn_safetensors_save(s.path, back));
    CHECK(b1 && same_file(s.path, b1, n1));
    free(b1);
    cnn_dict_destroy(&back), cnn_dict_destroy(&d);
    scratch_close(&s);
}

/* The bytes Python's safetensors writes for save_file({"weight": (2, 2) f32, "bias": (1) f32,
 * "step": i64 scalar, "bf": (1) bf16, "h": (2) f16}, metadata={"format": "pt"}), computed
 * from the spec: compact JSON with metadata first, tensors sorted by dtype alignment (largest
 * first) then name and stored back to back, the header padded with spaces to a multiple of 8.
 * We load them, and our writer, given the same dict in the same order, writes the same bytes. */
TEST(safetensors_python_bytes_both_ways)
{
    scratch s;
    REQUIRE(scratch_open(&s));
    char hdr[512];
    snprintf(hdr, sizeof hdr, "%s",
             "{\"__metadata__\":{\"format\":\"pt\"},\"step\":" INFO("I64", "[]", "[0,8]")
             ",\"bias\":" INFO("F32", "[1]", "[8,12]")
             ",\"weight\":" INFO("F32", "[2,2]", "[12,28]")
             ",\"bf\":" INFO("BF16", "[1]", "[28,30]") ",\"h\":" INFO("F16", "[2]", "[30,34]") "}");
    while (strlen(hdr) % 8) strcat(hdr, " ");
    struct __attribute__((packed)) {
        int64_t step;
        float bias, w[4];
        uint16_t bf, h[2];
    } data = {3, 0.5f, {1, 2, 3, 4}, 0x3f80, {0x3c00, 0xc000}};
    CHECK(sizeof data == 34);
    REQUIRE(scratch_put_file(s.path, hdr, &data, sizeof data));
    cnn_dict *d = NULL;
    CHECK_OK(cnn_safetensors_load(s.path, &d));
    REQUIRE(cnn_dict_size(d) == 5);
    const char *order[5] = {"step", "bias", "weight", "bf", "h"};
    for (int i = 0; i < 5; i++) CHECK(strcmp(cnn_dict_name(d, i), order[i]) == 0);
    CHECK(strcmp(cnn_dict_get_meta(d, "format"), "pt") == 0);
    cnn_tensor *t = cnn_dict_get(d, "step");
    int64_t sv = 0;
    uint16_t hb[2] = {0};
    CHECK(cnn_tensor_dtype(t) == CNN_I64 && cnn_tensor_ndim(t) == 0);
    CHECK_OK(cnn_tensor_read(t, &sv, 1));
    t = cnn_dict_get(d, "weight");
    CHECK(sv == 3 && cnn_tensor_dim(t, 0) == 2 && cnn_tensor_dim(t, 1) == 2);
    CHECK(memcmp(cnn_tensor_cdata(t), data.w, 16) == 0);
    CHECK(cnn_tensor_cdata(cnn_dict_get(d, "bias"))[0] == 0.5f);
    CHECK(cnn_tensor_dtype(cnn_dict_get(d, "h")) == CNN_F16 &&
          cnn_tensor_dtype(cnn_dict_get(d, "bf")) == CNN_BF16);
    CHECK_OK(cnn_tensor_read(cnn_dict_get(d, "h"), hb, 2));
    CHECK(hb[0] == 0x3c00 && hb[1] == 0xc000);
    size_t n;
    unsigned char *python = scratch_read(s.path, &n);
    CHECK_OK(cnn_safetensors_save(s.path, d));
    CHECK(python && same_file(s.path, python, n));
    free(python);
    cnn_dict_destroy(&d);

    /* Pretty-printed JSON, escaped names, null metadata and unknown fields are all valid. */
    const char *pretty = " {\n  \"__metadata__\" : null,\n"
                         "  \"caf\\u00e9 \\ud83d\\ude00 \\\"q\\\"\":"
                         " { \"shape\" : [ 1 ], \"extra\": {\"x\": [true, false, null, -1.5e3]},"
                         " \"data_offsets\" : [ 0 , 4 ], \"dtype\" : \"F32\" }\n}\t\r\n";
    REQUIRE(scratch_put_file(s.path, pretty, &data.bias, 4));
    CHECK_OK(cnn_safetensors_load(s.path, &d));
    CHECK(cnn_dict_size(d) == 1 && cnn_dict_meta_size(d) == 0);
    CHECK(strcmp(cnn_dict_name(d, 0), "caf\xc3\xa9 \xf0\x9f\x98\x80 \"q\"") == 0);
    cnn_dict_destroy(&d);
    scratch_close(&s);
}

/* ---- corrupt and unsupported files ------------------------------------------------------- */
typedef struct bad_case {
    const char *what, *header;
    size_t data_len;
    cnn_status want;
    const char *needle; /* a substring the message must contain */
} bad_case;

#define FMT CNN_ERR_FORMAT
#define UNSUP CNN_ERR_UNSUPPORTED
static const bad_case BAD[] = {
    {"unterminated object", "{\"a\":", 0, FMT, "JSON"},
    {"unterminated string", "{\"a\":\"xyz", 0, FMT, "unterminated string"},
    {"bad escape", "{\"a\\q\":1}", 0, FMT, "escape"},
    {"bad \\u escape", "{\"\\u12G4\":1}", 0, FMT, "\\u"},
    {"short \\u escape", "{\"\\u12\":1}", 0, FMT, "\\u"},
    {"lone high surrogate", "{\"\\ud800x\":1}", 0, FMT, "surrogate"},
    {"lone low surrogate", "{\"\\udc00\":1}", 0, FMT, "surrogate"},
    {"trailing garbage", "{} x", 0, FMT, "trailing"},
    {"trailing comma", "{\"a\":1,}", 0, FMT, "JSON"},
    {"raw control char", "{\"a\tb\":1}", 0, FMT, "control"},
    {"invalid UTF-8", "{\"\xff\":1}", 0, FMT, "UTF-8"},
    {"overlong UTF-8", "{\"\xc0\xaf\":1}", 0, FMT, "UTF-8"},
    {"bad literal", "{\"__metadata__\":nul}", 0, FMT, "literal"},
    {"leading zero", ONE("F32", "[01]", "[0,4]"), 4, FMT, "JSON"},
    {"empty header", "", 0, FMT, "JSON"}, {"root is an array", "[]", 0, FMT, "object"},
    {"root is a string", "\"x\"", 0, FMT, "object"},
    {"tensor not an object", "{\"a\":[1]}", 0, FMT, "'a'"},
    {"missing dtype", "{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, FMT, "dtype"},
    {"dtype a number", "{\"a\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, FMT,
     "dtype"},
    {"unknown dtype", ONE("F33", "[1]", "[0,4]"), 4, FMT, "F33"},
    {"missing shape", "{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, FMT, "shape"},
    {"shape not an array", ONE("F32", "1", "[0,4]"), 4, FMT, "shape"},
    {"negative shape", ONE("F32", "[-1]", "[0,4]"), 4, FMT, "non-negative"},
    {"fractional shape", ONE("F32", "[1.5]", "[0,4]"), 4, FMT, "1.5"},
    {"exponent shape", ONE("F32", "[1e0]", "[0,4]"), 4, FMT, "non-negative"},
    {"string shape", ONE("F32", "[\"1\"]", "[0,4]"), 4, FMT, "non-negative"},
    {"shape beyond u64", ONE("F32", "[18446744073709551616]", "[0,4]"), 4, FMT, "non-negative"},
    {"numel overflow", ONE("F32", "[4294967296,4294967296,2]", "[0,4]"), 4, FMT, "overflow"},
    {"byte size overflow", ONE("F32", "[4611686018427387904]", "[0,4]"), 4, FMT, "overflow"},
    {"missing offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, FMT, "data_offsets"},
    {"three offsets", ONE("F32", "[1]", "[0,4,4]"), 4, FMT, "data_offsets"},
    {"negative offset", ONE("F32", "[1]", "[-4,0]"), 4, FMT, "data_offsets"},
    {"end before begin", ONE("F32", "[1]", "[4,0]"), 4, FMT, "end before"},
    {"wrong byte length", ONE("F32", "[2]", "[0,4]"), 4, FMT, "need 8"},
    {"odd sub-byte size", ONE("F4", "[3]", "[0,2]"), 2, FMT, "whole bytes"},
    {"offsets past the end", ONE("F32", "[2]", "[0,8]"), 4, FMT, "past the end"},
    {"overlap", TWO(INFO("F32", "[2]", "[0,8]"), INFO("F32", "[2]", "[4,12]")), 12, FMT, "overlap"},
    {"shared bytes", TWO(INFO("F32", "[1]", "[0,4]"), INFO("I32", "[1]", "[0,4]")), 4, FMT,
     "overlap"},
    {"hole", TWO(INFO("F32", "[1]", "[0,4]"), INFO("F32", "[1]", "[8,12]")), 12, FMT, "hole"},
    {"hole at the start", ONE("F32", "[1]", "[4,8]"), 8, FMT, "hole"},
    {"data not covered", ONE("F32", "[1]", "[0,4]"), 8, FMT, "cover 4 bytes"},
    {"data but no tensors", "{}", 4, FMT, "cover 0 bytes"},
    {"duplicate names", "{\"a\":" INFO("F32", "[1]", "[0,4]") ",\"a\":" INFO("F32", "[1]", "[4,8]")
     "}", 8, FMT, "twice"},
    {"duplicate field", "{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],"
     "\"data_offsets\":[0,4]}}", 4, FMT, "twice"},
    {"metadata value a number", "{\"__metadata__\":{\"epoch\":3}}", 0, FMT, "epoch"},
    {"metadata value null", "{\"__metadata__\":{\"epoch\":null}}", 0, FMT, "string"},
    {"metadata an array", "{\"__metadata__\":[\"a\"]}", 0, FMT, "__metadata__"},
    {"metadata twice", "{\"__metadata__\":{},\"__metadata__\":{}}", 0, FMT, "twice"},
    {"metadata key twice", "{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, FMT, "twice"},
    {"U64 is unsupported", ONE("U64", "[1]", "[0,8]"), 8, UNSUP, "U64"},
    {"U8 is unsupported", ONE("U8", "[3]", "[0,3]"), 3, UNSUP, "U8"},
    {"BOOL is unsupported", ONE("BOOL", "[]", "[0,1]"), 1, UNSUP, "BOOL"},
    {"rank 5 is unsupported", ONE("F32", "[1,1,1,1,2]", "[0,8]"), 8, UNSUP, "rank 5"},
    {"empty, huge strides", ONE("F32", "[4611686018427387904,0,2]", "[0,0]"), 0, UNSUP, "strides"},
    {"NUL in a name", "{\"a\\u0000b\":" INFO("F32", "[1]", "[0,4]") "}", 4, UNSUP, "U+0000"},
    {"corrupt beats unsupported", ONE("U64", "[1]", "[0,8]"), 12, FMT, "cover 8 bytes"},
};

static void expect_rejected(const char *path, const char *what, cnn_status want, const char *needle)
{
    cnn_dict *d = (cnn_dict *)&d; /* any non-NULL value: a failed load must reset it */
    cnn_clear_error();
    cnn_status st = cnn_safetensors_load(path, &d);
    const char *msg = cnn_last_error();
    if (st != want)
        cnn_test_fail(__FILE__, __LINE__, "%s: got %s, want %s (%s)", what, cnn_status_name(st),
                      cnn_status_name(want), msg);
    if (!msg[0] || !strstr(msg, path) || (needle && !strstr(msg, needle)))
        cnn_test_fail(__FILE__, __LINE__, "%s: message lacks the path or '%s': \"%s\"", what,
                      needle ? needle : "", msg);
    if (st != CNN_OK && d)
        cnn_test_fail(__FILE__, __LINE__, "%s: *out is not NULL after a failure", what);
    if (st == CNN_OK) cnn_dict_destroy(&d);
}

TEST(safetensors_rejects_corrupt_files)
{
    scratch s;
    REQUIRE(scratch_open(&s));
    for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
        REQUIRE(scratch_put_file(s.path, BAD[i].header, NULL, BAD[i].data_len));
        expect_rejected(s.path, BAD[i].what, BAD[i].want, BAD[i].needle);
    }
    /* Nesting far deeper than any header needs. */
    char deep[600] = "{\"a\":";
    for (int i = 0; i < 200; i++) strcat(deep, "[");
    for (int i = 0; i < 200; i++) strcat(deep, "]");
    strcat(deep, "}");
    REQUIRE(scratch_put_file(s.path, deep, NULL, 0));
    expect_rejected(s.path, "nesting too deep", CNN_ERR_FORMAT, "deep");
    /* Broken length prefixes: 1000 with 12 bytes after it, 200,000,000, 2^64 - 1. */
    const struct { const char *what, *bytes; size_t n; const char *needle; } pre[] = {
        {"empty file", "", 0, "shorter than"}, {"5-byte file", "\x02\0\0\0\0", 5, "shorter than"},
        {"header past the end", "\xe8\x03\0\0\0\0\0\0{}          ", 20, "larger than"},
        {"absurd header length", "\0\xc2\xeb\x0b\0\0\0\0{}      ", 16, "absurd"},
        {"2^64-1 header length", "\xff\xff\xff\xff\xff\xff\xff\xff{}", 10, "absurd"}};
    for (size_t i = 0; i < sizeof pre / sizeof pre[0]; i++) {
        REQUIRE(scratch_write(s.path, pre[i].bytes, pre[i].n));
        expect_rejected(s.path, pre[i].what, CNN_ERR_FORMAT, pre[i].needle);
    }
    /* Resource caps: over 2^20 JSON values (a huge shape) or over 65536 tensors. */
    size_t cap = 4u << 20, len = 0;
    char *big = malloc(cap);
    REQUIRE(big);
    len = (size_t)sprintf(big, "{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,0],\"shape\":[");
    for (int i = 0; i < 1100000; i++) big[len++] = '0', big[len++] = ',';
    strcpy(big + len, "0]}}");
    REQUIRE(scratch_put_file(s.path, big, NULL, 0));
    expect_rejected(s.path, "2^20 values", CNN_ERR_UNSUPPORTED, "values");
    len = (size_t)sprintf(big, "{");
    for (int i = 0; i <= 65536; i++)
        len += (size_t)sprintf(big + len, "%s\"t%d\":" INFO("F32", "[0]", "[0,0]"),
                               i ? "," : "", i);
    strcpy(big + len, "}");
    REQUIRE(scratch_put_file(s.path, big, NULL, 0));
    expect_rejected(s.path, "65537 tensors", CNN_ERR_UNSUPPORTED, "65537 tensors");
    free(big);
    /* Not a file at all. */
    expect_rejected(s.dir, "a directory", CNN_ERR_IO, NULL);
    char missing[200];
    snprintf(missing, sizeof missing, "%s/none.safetensors", s.dir);
    expect_rejected(missing, "a missing file", CNN_ERR_IO, "No such file");
    scratch_close(&s);
}

/* Every truncation of a valid file is rejected; random byte changes in the header are
 * rejected or, when they happen to keep it valid, loaded; none may crash or leak. */
TEST(safetensors_random_corruptions)
{
    scratch s;
    REQUIRE(scratch_open(&s));
    cnn_dict *d = sample_dict();
    CHECK_OK(cnn_safetensors_save(s.path, d));
    cnn_dict_destroy(&d);
    size_t n;
    unsigned char *good = scratch_read(s.path, &n), *bad = malloc(n);
    REQUIRE(good && bad && n > 64);
    uint64_t hl = 0, rng = 0x9e3779b97f4a7c15ull;
    for (int i = 7; i >= 0; i--) hl = (hl << 8) | good[i]; /* the header length */
    int rejected = 0;
    for (int c = 0; c < 200; c++) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        uint32_t r = (uint32_t)(rng >> 33);
        memcpy(bad, good, n);
        size_t len = n;
        int kind = c % 4;
        if (kind == 0) len = r % n; /* truncation */
        if (kind == 1) bad[8 + r % hl] ^= (unsigned char)(1u << (r >> 24 & 7)); /* header bit */
        if (kind == 2) bad[r % (8 + hl)] = (unsigned char)(r >> 16); /* prefix or header byte */
        for (int k = 0; kind == 3 && k < 4; k++) { /* several bytes anywhere */
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            bad[(rng >> 33) % n] = (unsigned char)(rng >> 20);
        }
        REQUIRE(scratch_write(s.path, bad, len));
        cnn_dict *out = NULL;
        cnn_clear_error();
        cnn_status st = cnn_safetensors_load(s.path, &out);
        if (kind == 0 && st != CNN_ERR_FORMAT)
            cnn_test_fail(__FILE__, __LINE__, "truncation to %zu of %zu bytes: %s (%s)", len, n,
                          cnn_status_name(st), cnn_last_error());
        CHECK(st == CNN_OK ? out != NULL : out == NULL && cnn_last_error()[0] != '\0');
        CHECK(st == CNN_OK || st == CNN_ERR_FORMAT || st == CNN_ERR_UNSUPPORTED);
        rejected += st != CNN_OK;
        cnn_dict_destroy(&out);
    }
    CHECK(rejected >= 100); /* at least every truncation */
    free(good), free(bad);
    scratch_close(&s);
}

/* ---- atomic writes ----------------------------------------------------------------------- */
TEST(safetensors_atomic_write)
{
    scratch s;
    REQUIRE(scratch_open(&s));
    cnn_dict *old = sample_dict(), *big = NULL, *back = NULL;
    REQUIRE(old);
    char missing[200];
    snprintf(missing, sizeof missing, "%s/no/such/dir/x.safetensors", s.dir);
    CHECK_ERR(cnn_safetensors_save(missing, old), CNN_ERR_IO);
    CHECK(strstr(cnn_last_error(), missing) && strstr(cnn_last_error(), "No such file"));
    CHECK_ERR(cnn_safetensors_save(s.dir, old), CNN_ERR_IO); /* a directory is in the way */
    CHECK(scratch_count(&s) == 0);
    CHECK_OK(cnn_safetensors_save(s.path, old));
    size_t n_old;
    unsigned char *before = scratch_read(s.path, &n_old);
    REQUIRE(before);
    /* A write that fails half way (the file-size limit makes write() return EFBIG) must
     * leave the old file untouched and no temporary file behind. */
    CHECK_OK(cnn_dict_create(&big));
    cnn_tensor *t = NULL;
    CHECK_OK(cnn_tensor_zeros(CNN_SHAPE(256, 1024), CNN_CPU, &t));
    put(big, "big", t);
    struct rlimit saved, small = {64 * 1024, 0};
    REQUIRE(getrlimit(RLIMIT_FSIZE, &saved) == 0);
    small.rlim_max = saved.rlim_max;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    REQUIRE(setrlimit(RLIMIT_FSIZE, &small) == 0);
    cnn_clear_error();
    cnn_status st = cnn_safetensors_save(s.path, big);
    setrlimit(RLIMIT_FSIZE, &saved);
    signal(SIGXFSZ, prev);
    CHECK(st == CNN_ERR_IO);
    CHECK(strstr(cnn_last_error(), s.path) != NULL);
    CHECK(scratch_count(&s) == 1);
    CHECK(same_file(s.path, before, n_old));
    /* Dicts the format cannot hold are refused before anything is written. */
    const char *bad_names[2] = {"bad\xff", "__metadata__"};
    for (int i = 0; i < 2; i++) {
        cnn_dict *odd = NULL;
        float one = 1.0f;
        CHECK_OK(cnn_dict_create(&odd));
        put(odd, bad_names[i], raw_tensor(CNN_SHAPE(1), CNN_F32, &one));
        CHECK_ERR(cnn_safetensors_save(s.path, odd), CNN_ERR_INVALID_ARG);
        cnn_dict_destroy(&odd);
    }
    CHECK(same_file(s.path, before, n_old));
    free(before);
    /* A successful save replaces the old file. */
    CHECK_OK(cnn_safetensors_save(s.path, big));
    CHECK_OK(cnn_safetensors_load(s.path, &back));
    CHECK(dicts_identical(big, back));
    CHECK(scratch_count(&s) == 1);
    CHECK_ERR(cnn_safetensors_save(NULL, big), CNN_ERR_INVALID_ARG);
    CHECK_ERR(cnn_safetensors_save(s.path, NULL), CNN_ERR_INVALID_ARG);
    CHECK_ERR(cnn_safetensors_load(s.path, NULL), CNN_ERR_INVALID_ARG);
    cnn_dict_destroy(&back), cnn_dict_destroy(&big), cnn_dict_destroy(&old);
    scratch_close(&s);
}

/* ---- loading a checkpoint into a model's dict -------------------------------------------- */
/* fc.weight (w_rows, 3) = fill, fc.bias = fill + 1, bn.running_mean = fill + 2. */
static cnn_dict *model_dict(float fill, int64_t steps, int w_rows)
{
    cnn_dict *d = NULL;
    if (cnn_dict_create(&d) != CNN_OK) return NULL;
    const char *names[3] = {"fc.weight", "fc.bias", "bn.running_mean"};
    for (int i = 0; i < 3; i++) {
        cnn_tensor *t = NULL;
        cnn_tensor_full(i ? CNN_SHAPE(3) : CNN_SHAPE(w_rows, 3), fill + (float)i, CNN_CPU, &t);
        put(d, names[i], t);
    }
    put(d, "bn.num_batches_tracked", raw_tensor(CNN_SCALAR, CNN_I64, &steps));
    return d;
}

/* Saves d (and destroys it), then loads the file back. */
static cnn_dict *through_file(const char *path, cnn_dict *d)
{
    cnn_dict *out = NULL;
    if (cnn_safetensors_save(path, d) != CNN_OK || cnn_safetensors_load(path, &out) != CNN_OK)
        cnn_test_fail(__FILE__, __LINE__, "save/load of '%s': %s", path, cnn_last_error());
    cnn_dict_destroy(&d);
    return out;
}

static float first(const cnn_dict *d, const char *name)
{
    const float *p = cnn_tensor_cdata(cnn_dict_get(d, name));
    return p ? p[0] : NAN;
}

TEST(safetensors_into_model_dict_strict_and_not)
{
    scratch s;
    REQUIRE(scratch_open(&s));
    cnn_dict *ckpt = model_dict(5.0f, 42, 2), *model = model_dict(0.0f, 0, 2),
             *file = through_file(s.path, model_dict(5.0f, 42, 2));
    REQUIRE(ckpt && model && file);
    cnn_load_report rep;
    CHECK_OK(cnn_dict_load(model, file, true, &rep));
    CHECK(rep.n_missing == 0 && rep.n_unexpected == 0);
    CHECK(dicts_identical(model, ckpt));
    cnn_dict_destroy(&file), cnn_dict_destroy(&model);
    /* A checkpoint without fc.bias and with an extra tensor. */
    cnn_dict *partial = NULL;
    CHECK_OK(cnn_dict_create(&partial));
    for (int i = 0; i < cnn_dict_size(ckpt); i++)
        if (strcmp(cnn_dict_name(ckpt, i), "fc.bias") != 0)
            CHECK_OK(cnn_dict_set(partial, cnn_dict_name(ckpt, i), cnn_dict_at(ckpt, i)));
    put(partial, "head.extra", arange(CNN_SHAPE(1), 9.0f));
    file = through_file(s.path, partial);
    model = model_dict(0.0f, 0, 2);
    REQUIRE(file && model);
    CHECK_ERR(cnn_dict_load(model, file, true, &rep), CNN_ERR_NOT_FOUND);
    CHECK(strstr(cnn_last_error(), "fc.bias") && strstr(cnn_last_error(), "head.extra"));
    CHECK(first(model, "fc.weight") == 0.0f); /* strict failure changes nothing */
    CHECK_OK(cnn_dict_load(model, file, false, &rep));
    CHECK(rep.n_missing == 1 && strcmp(rep.missing, "fc.bias") == 0);
    CHECK(rep.n_unexpected == 1 && strcmp(rep.unexpected, "head.extra") == 0);
    CHECK(first(model, "fc.weight") == 5.0f && first(model, "fc.bias") == 1.0f); /* kept */
    int64_t steps = 0;
    CHECK_OK(cnn_tensor_read(cnn_dict_get(model, "bn.num_batches_tracked"), &steps, 1));
    CHECK(steps == 42);
    cnn_dict_destroy(&file), cnn_dict_destroy(&model);

    /* A mis-shaped tensor is an error in both modes, and nothing is copied. */
    file = through_file(s.path, model_dict(7.0f, 1, 4));
    model = model_dict(0.0f, 0, 2);
    REQUIRE(file && model);
    CHECK_ERR(cnn_dict_load(model, file, true, NULL), CNN_ERR_SHAPE);
    CHECK(strstr(cnn_last_error(), "fc.weight") != NULL);
    CHECK_ERR(cnn_dict_load(model, file, false, NULL), CNN_ERR_SHAPE);
    CHECK(first(model, "fc.bias") == 1.0f && first(model, "bn.running_mean") == 2.0f);
    cnn_dict_destroy(&file), cnn_dict_destroy(&model), cnn_dict_destroy(&ckpt);
    scratch_close(&s);
}
