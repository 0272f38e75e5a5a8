/* test_safetensors_header.c — the edges of reading a safetensors header, each on both sides
 * of its bound: the length prefix against the file size, names compared whole (a prefix, an
 * embedded U+0000), an empty name, sizes beside a zero, and the strict JSON of the reference
 * reader (serde_json): UTF-8 without surrogates, overlong forms or code points past U+10FFFF,
 * numbers with digits after '.', commas between members, the 64-level nesting bound and the
 * 2^20-value cap; a UTF-8 sequence cut by the end of the text; and tensors listed in another
 * order than their data's.
 * The corpus of corrupt files: test_safetensors.c. */
#include "json.h"
#include "test.h"

#include "scratch.h"

#define F32_1(name, off) "\"" name "\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":" off "}"
#define META(v) "{\"__metadata__\":{\"k\":\"" v "\"}}"
#define E10 "[],[],[],[],[],[],[],[],[],[]"
#define WITH_X(x) "{\"a\":{\"dtype\":\"F32\",\"x\":" x ",\"shape\":[1],\"data_offsets\":[0,4]}}"

typedef struct header_case {
    const char *what, *header;
    size_t data_len;
    cnn_status want;
    const char *needle; /* for a refusal: in the message; else NULL */
    int n_tensors;      /* for a load */
} header_case;

static const header_case CASES[] = {
    /* Names are compared whole: a prefix is another name, and a key that is a known one
     * followed by U+0000 is not that key. "__metadata__\0x" is a tensor without fields. */
    {"a and ab, k and k2", "{\"__metadata__\":{\"k\":\"1\",\"k2\":\"2\"}," F32_1("ab", "[0,4]")
     "," F32_1("a", "[4,8]") "}", 8, CNN_OK, NULL, 2},
    {"dtype and a NUL is an unknown field", "{\"a\":{\"dtype\":\"F32\",\"dtype\\u0000x\":\"I64\","
     "\"shape\":[1],\"data_offsets\":[0,4]}}", 4, CNN_OK, NULL, 1},
    {"__metadata__ and a NUL", "{\"__metadata__\\u0000x\":{\"k\":\"v\"}}", 0, CNN_ERR_FORMAT,
     "missing field", 0},
    /* Valid for the format, but no dict key; sizes beside a zero still need int64 strides,
     * whichever side of the zero they stand. */
    {"empty name", "{" F32_1("", "[0,4]") "}", 4, CNN_ERR_UNSUPPORTED, "empty name", 0},
    {"zero, then 2^62", "{\"a\":{\"dtype\":\"F32\",\"shape\":[0,4611686018427387904,2],"
     "\"data_offsets\":[0,0]}}", 0, CNN_ERR_UNSUPPORTED, "strides", 0},
    /* UTF-8: an encoded UTF-16 surrogate (U+D800), an overlong '/', U+110000; U+10FFFF is
     * the last code point. */
    {"encoded surrogate", META("\xed\xa0\x80"), 0, CNN_ERR_FORMAT, "UTF-8", 0},
    {"overlong 3-byte form", META("\xe0\x80\xaf"), 0, CNN_ERR_FORMAT, "UTF-8", 0},
    {"past U+10FFFF", META("\xf4\x90\x80\x80"), 0, CNN_ERR_FORMAT, "UTF-8", 0},
    {"U+10FFFF", META("\xf4\x8f\xbf\xbf"), 0, CNN_OK, NULL, 0},
    /* Numbers: digits must follow '.', 'e' and its sign (serde_json); unknown fields are
     * parsed as strictly as the others. */
    {"1.", WITH_X("1."), 4, CNN_ERR_FORMAT, "invalid number", 0},
    {"1.e5", WITH_X("1.e5"), 4, CNN_ERR_FORMAT, "invalid number", 0},
    {"1e", WITH_X("1e"), 4, CNN_ERR_FORMAT, "invalid number", 0},
    {"1e+", WITH_X("1e+"), 4, CNN_ERR_FORMAT, "invalid number", 0},
    {"valid numbers", WITH_X("[1.5,1e5,1E-2,0.0,-0]"), 4, CNN_OK, NULL, 1},
    /* Members are separated by commas only; 70 empty arrays side by side are one level. */
    {"semicolon between members", WITH_X("[1;2]"), 4, CNN_ERR_FORMAT, "expected ','", 0},
    {"70 empty arrays", WITH_X("[" E10 "," E10 "," E10 "," E10 "," E10 "," E10 "," E10 "]"), 4,
     CNN_OK, NULL, 1},
    {"length exactly to the end", "{}", 0, CNN_OK, NULL, 0},
};

/* Writes header + data_len filler bytes and loads the file: refused with want and a message
 * holding needle, or loaded with n_tensors. */
static void check_case(const char *path, const header_case *c)
{
    cnn_dict *d = NULL;
    if (!scratch_put_file(path, c->header, NULL, c->data_len)) {
        cnn_test_fail(__FILE__, __LINE__, "%s: cannot write %s", c->what, path);
        return;
    }
    cnn_clear_error();
    cnn_status st = cnn_safetensors_load(path, &d);
    bool ok = st == c->want && (st == CNN_OK ? cnn_dict_size(d) == c->n_tensors
                                             : strstr(cnn_last_error(), c->needle) != NULL);
    if (!ok)
        cnn_test_fail(__FILE__, __LINE__, "%s: got %s \"%s\" (%d tensors), want %s", c->what,
                      cnn_status_name(st), cnn_last_error(), cnn_dict_size(d),
                      cnn_status_name(c->want));
    cnn_dict_destroy(&d);
}

TEST(safetensors_header_edges)
{
    scratch s;
    REQUIRE(scratch_open(&s));
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) check_case(s.path, &CASES[i]);
    scratch_close(&s);
}

/* A 7-byte file is too short for the length; a length 1 or 8 bytes past the 2 that follow it
 * is refused as a format error before anything is read (not as a short read). */
TEST(safetensors_length_prefix_against_the_file_size)
{
    scratch s;
    REQUIRE(scratch_open(&s));
    const unsigned char seven[7] = {2};
    for (int len = 0; len <= 10; len += len ? 7 : 3) {
        unsigned char b[10] = {(unsigned char)len, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
        CHECK(scratch_write(s.path, len ? b : seven, len ? sizeof b : sizeof seven));
        const char *needle = len ? "larger than the 2 bytes" : "shorter than the 8-byte";
        cnn_dict *d = NULL;
        cnn_status st = cnn_safetensors_load(s.path, &d);
        if (st != CNN_ERR_FORMAT || !strstr(cnn_last_error(), needle))
            cnn_test_fail(__FILE__, __LINE__, "length %d: got %s \"%s\"", len,
                          cnn_status_name(st), cnn_last_error());
        cnn_dict_destroy(&d);
    }
    scratch_close(&s);
}

/* The format asks only that the offsets tile the data: a header may list "a" first while b's
 * bytes come first (a reader that took the data in header order swapped the two). */
TEST(safetensors_header_order_need_not_be_data_order)
{
    scratch s;
    REQUIRE(scratch_open(&s));
    char hdr[256] = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]},"
                    "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
    while (strlen(hdr) % 8) strcat(hdr, " ");
    const float data[2] = {2.0f, 1.0f}; /* b's bytes, then a's */
    REQUIRE(scratch_put_file(s.path, hdr, data, sizeof data));
    cnn_dict *d = NULL;
    CHECK_OK(cnn_safetensors_load(s.path, &d));
    REQUIRE(d && cnn_dict_get(d, "a") && cnn_dict_get(d, "b"));
    CHECK(cnn_tensor_cdata(cnn_dict_get(d, "a"))[0] == 1.0f);
    CHECK(cnn_tensor_cdata(cnn_dict_get(d, "b"))[0] == 2.0f);
    cnn_dict_destroy(&d);
    scratch_close(&s);
}

/* The root object is level 1: an unknown field nested to level 64 loads, to level 65 not.
 * A header of exactly 2^20 JSON values loads, one more is refused; the values: the root, the
 * tensor's object, its dtype, shape (one number), data_offsets (two) and an unknown array. */
TEST(safetensors_header_depth_and_value_caps)
{
    scratch s;
    REQUIRE(scratch_open(&s));
    const size_t fixed = 9, cap = (size_t)1 << 20;
    char *hdr = malloc(2 * cap + 128);
    REQUIRE(hdr);
    for (int levels = 64; levels <= 65; levels++) {
        strcpy(hdr, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":");
        for (int i = 2; i < levels; i++) strcat(hdr, "[");
        for (int i = 2; i < levels; i++) strcat(hdr, "]");
        strcat(hdr, "}}");
        header_case c = {levels == 64 ? "64 levels" : "65 levels", hdr, 4,
                         levels == 64 ? CNN_OK : CNN_ERR_FORMAT, "deep", 1};
        check_case(s.path, &c);
    }
    for (size_t extra = 0; extra <= 1; extra++) {
        size_t len = (size_t)sprintf(hdr, "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],"
                                     "\"data_offsets\":[0,0],\"x\":[");
        for (size_t i = 0; i < cap - fixed + extra; i++) hdr[len++] = '0', hdr[len++] = ',';
        strcpy(hdr + len - 1, "]}}");
        header_case c = {extra ? "2^20 + 1 values" : "2^20 values", hdr, 0,
                         extra ? CNN_ERR_UNSUPPORTED : CNN_OK, "values", 1};
        check_case(s.path, &c);
    }
    free(hdr);
    scratch_close(&s);
}

/* A multi-byte UTF-8 sequence cut by the end of the text is invalid, whatever byte lies past
 * the end (here the continuation bytes that would complete it: the check must not read them). */
TEST(utf8_sequence_cut_by_the_end_is_invalid)
{
    const char e_acute[] = "\xc3\xa9", euro[] = "\xe2\x82\xac", emoji[] = "\xf0\x9f\x98\x80";
    CHECK(cnn_utf8_valid(e_acute, 2) && cnn_utf8_valid(euro, 3) && cnn_utf8_valid(emoji, 4));
    CHECK(!cnn_utf8_valid(e_acute, 1));
    CHECK(!cnn_utf8_valid(euro, 1) && !cnn_utf8_valid(euro, 2));
    CHECK(!cnn_utf8_valid(emoji, 1) && !cnn_utf8_valid(emoji, 2) && !cnn_utf8_valid(emoji, 3));
    CHECK(cnn_utf8_valid("a\xc3\xa9", 3) && !cnn_utf8_valid("a\xc3\xa9", 2));
}
