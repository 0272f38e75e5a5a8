/* test_json.c — the JSON reader and string writer of core/json.c on their own: every character
 * survives the writer then the reader (control characters escaped, none written raw), each
 * escape decodes as RFC 8259 says, and a refusal names the byte where the text goes wrong.
 * Whole safetensors headers: test_safetensors_header.c. */
#include "json.h"
#include "test.h"

/* Every character from U+0001 to U+007F, then multi-byte ones, written as a JSON string and
 * read back: the same bytes, and no byte below 0x20 in the text (the reader refuses those raw,
 * so a control character the writer forgot to escape makes a file no reader can load). */
TEST(json_strings_survive_the_writer_then_the_reader)
{
    char s[160];
    int n = 0;
    for (int c = 1; c < 0x80; c++) s[n++] = (char)c;
    strcpy(s + n, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
    n = (int)strlen(s);
    cnn_buf b = {0};
    cnn_buf_json_string(&b, s);
    REQUIRE(!b.oom && b.data);
    for (size_t i = 0; i < b.len; i++)
        if ((unsigned char)b.data[i] < 0x20)
            cnn_test_fail(__FILE__, __LINE__, "byte 0x%02x written raw at %zu",
                          (unsigned char)b.data[i], i);
    cnn_json *j = NULL;
    CHECK_OK(cnn_json_parse(b.data, b.len, 4, 16, &j));
    REQUIRE(j && j->type == CNN_JSON_STRING);
    CHECK(j->len == (size_t)n && memcmp(j->str, s, (size_t)n) == 0);
    for (int i = 0; i < n && i < (int)j->len; i++)
        if (j->str[i] != s[i])
            cnn_test_fail(__FILE__, __LINE__, "character 0x%02x read back as 0x%02x",
                          (unsigned char)s[i], (unsigned char)j->str[i]);
    cnn_json_free(&j);
    cnn_buf_free(&b);
}

/* The two-character escapes, \u escapes (one at the very end of the string) and a surrogate
 * pair, each to its own bytes. */
TEST(json_escapes_decode_to_their_characters)
{
    const char text[] = "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u0041\\ud83d\\ude00\\u00e9\"";
    const char want[] = "\"\\/\b\f\n\r\tA\xf0\x9f\x98\x80\xc3\xa9";
    cnn_json *j = NULL;
    CHECK_OK(cnn_json_parse(text, strlen(text), 4, 16, &j));
    REQUIRE(j && j->type == CNN_JSON_STRING);
    CHECK(j->len == strlen(want) && memcmp(j->str, want, strlen(want)) == 0);
    cnn_json_free(&j);
}

/* A refusal says where: the byte of the character that breaks the grammar (0-based), so that
 * a user can find it in a header dumped with a hex viewer. */
TEST(json_errors_name_the_byte_where_the_text_goes_wrong)
{
    static const struct { const char *text, *needle; } cases[] = {
        {"[1;2]", "expected ',' or ']' at byte 2"},
        {"{\"a\":1;}", "expected ',' or '}' at byte 6"},
        {"{\"a\" 1}", "expected ':' after key at byte 5"},
        {"[01]", "expected ',' or ']' at byte 2"},
        {"[1,]", "unexpected character at byte 3"},
        {"[1] x", "trailing characters after the value at byte 4"},
        {"[1, 2", "unterminated array at byte 5"},
        {"\"a\\x\"", "invalid escape in string at byte 2"},
        {"\"a\x01\"", "control character in string at byte 2"},
        {"[nul]", "invalid literal at byte 1"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cnn_json *j = NULL;
        cnn_clear_error();
        cnn_status st = cnn_json_parse(cases[i].text, strlen(cases[i].text), 4, 16, &j);
        if (st != CNN_ERR_FORMAT || j || !strstr(cnn_last_error(), cases[i].needle))
            cnn_test_fail(__FILE__, __LINE__, "'%s': got %s \"%s\", want \"%s\"",
                          cases[i].text, cnn_status_name(st), cnn_last_error(),
                          cases[i].needle);
        cnn_json_free(&j);
    }
}
