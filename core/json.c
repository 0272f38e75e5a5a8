/* json.c — a strict recursive-descent JSON reader with a depth bound, and the small buffer
 * helpers the safetensors writer uses. It reads untrusted bytes, so every step checks bounds;
 * it never prints and knows nothing about tensors. */
#include "json.h"

typedef struct parser {
    const char *s;
    size_t len, pos;
    int depth, max_depth;
    size_t n_values, max_values;
} parser;

static cnn_status fail(const parser *p, const char *what)
{
    return cnn_error(CNN_ERR_FORMAT, "invalid JSON: %s at byte %zu", what, p->pos);
}

static cnn_status oom(void)
{
    return cnn_error(CNN_ERR_OUT_OF_MEMORY, "JSON: out of host memory");
}

bool cnn_utf8_valid(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        int extra;
        unsigned cp, min;
        if (c >= 0xC2 && c <= 0xDF) extra = 1, cp = c & 0x1F, min = 0x80;
        else if (c >= 0xE0 && c <= 0xEF) extra = 2, cp = c & 0x0F, min = 0x800;
        else if (c >= 0xF0 && c <= 0xF4) extra = 3, cp = c & 0x07, min = 0x10000;
        else return false;
        if (n - i <= (size_t)extra) return false;
        for (int k = 1; k <= extra; k++) {
            unsigned cc = s[i + (size_t)k];
            if ((cc & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (cc & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        i += (size_t)extra + 1;
    }
    return true;
}

static void skip_ws(parser *p)
{
    while (p->pos < p->len) {
        char c = p->s[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        p->pos++;
    }
}

static int hex4(const char *s)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        int d = (c >= '0' && c <= '9') ? c - '0'
                : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

static size_t put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* p->pos is at the opening quote. The decoded text is never longer than the raw text, so one
 * allocation of the raw span suffices. */
static cnn_status parse_string(parser *p, char **out, size_t *out_len)
{
    size_t start = ++p->pos, end = start;
    while (end < p->len && p->s[end] != '"') end += p->s[end] == '\\' ? 2 : 1;
    if (end >= p->len) return fail(p, "unterminated string");
    char *o = malloc(end - start + 1);
    if (!o) return oom();
    size_t n = 0;
    while (p->pos < end) {
        unsigned char c = (unsigned char)p->s[p->pos];
        if (c < 0x20) {
            free(o);
            return fail(p, "control character in string");
        }
        if (c != '\\') {
            o[n++] = (char)c;
            p->pos++;
            continue;
        }
        char e = p->s[p->pos + 1];
        const char *simple = strchr("\"\\/bfnrt", e);
        if (e && simple) {
            static const char repl[] = "\"\\/\b\f\n\r\t";
            o[n++] = repl[simple - "\"\\/bfnrt"];
            p->pos += 2;
            continue;
        }
        if (e != 'u') {
            free(o);
            return fail(p, "invalid escape in string");
        }
        int cp = end - p->pos >= 6 ? hex4(p->s + p->pos + 2) : -1;
        if (cp < 0) {
            free(o);
            return fail(p, "invalid \\u escape in string");
        }
        p->pos += 6;
        if (cp >= 0xDC00 && cp <= 0xDFFF) {
            free(o);
            return fail(p, "unpaired low surrogate in \\u escape");
        }
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            int lo = (end - p->pos >= 6 && p->s[p->pos] == '\\' && p->s[p->pos + 1] == 'u')
                         ? hex4(p->s + p->pos + 2) : -1;
            if (lo < 0xDC00 || lo > 0xDFFF) {
                free(o);
                return fail(p, "unpaired high surrogate in \\u escape");
            }
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            p->pos += 6;
        }
        n += put_utf8(o + n, (unsigned)cp);
    }
    o[n] = '\0';
    p->pos = end + 1;
    *out = o;
    *out_len = n;
    return CNN_OK;
}

static bool is_digit(const parser *p)
{
    return p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9';
}

static cnn_status parse_number(parser *p, cnn_json *v)
{
    size_t start = p->pos;
    if (p->s[p->pos] == '-') p->pos++;
    if (!is_digit(p)) return fail(p, "invalid number");
    if (p->s[p->pos] == '0') p->pos++;
    else
        while (is_digit(p)) p->pos++;
    if (p->pos < p->len && p->s[p->pos] == '.') {
        p->pos++;
        if (!is_digit(p)) return fail(p, "invalid number");
        while (is_digit(p)) p->pos++;
    }
    if (p->pos < p->len && (p->s[p->pos] == 'e' || p->s[p->pos] == 'E')) {
        p->pos++;
        if (p->pos < p->len && (p->s[p->pos] == '+' || p->s[p->pos] == '-')) p->pos++;
        if (!is_digit(p)) return fail(p, "invalid number");
        while (is_digit(p)) p->pos++;
    }
    v->len = p->pos - start;
    v->str = malloc(v->len + 1);
    if (!v->str) return oom();
    memcpy(v->str, p->s + start, v->len);
    v->str[v->len] = '\0';
    return CNN_OK;
}

static bool literal(parser *p, const char *word)
{
    size_t n = strlen(word);
    if (p->len - p->pos < n || memcmp(p->s + p->pos, word, n) != 0) return false;
    p->pos += n;
    return true;
}

static cnn_status parse_value(parser *p, cnn_json **out);

/* Parses the members of an array or object; p->pos is at the opening bracket. */
static cnn_status parse_container(parser *p, cnn_json *v, bool object)
{
    char close = object ? '}' : ']';
    if (++p->depth > p->max_depth) return fail(p, "nesting too deep");
    p->pos++;
    skip_ws(p);
    cnn_json **tail = &v->child;
    if (p->pos < p->len && p->s[p->pos] == close) {
        p->pos++;
        p->depth--;
        return CNN_OK;
    }
    for (;;) {
        char *key = NULL;
        size_t key_len = 0;
        if (object) {
            skip_ws(p);
            if (p->pos >= p->len || p->s[p->pos] != '"') return fail(p, "expected a string key");
            CNN_TRY(parse_string(p, &key, &key_len));
            skip_ws(p);
            if (p->pos >= p->len || p->s[p->pos] != ':') {
                free(key);
                return fail(p, "expected ':' after key");
            }
            p->pos++;
        }
        cnn_json *child = NULL;
        cnn_status st = parse_value(p, &child);
        if (!child) {
            free(key);
            return st;
        }
        /* Linked even when it failed half-built, so freeing the root frees it. */
        child->key = key;
        child->key_len = key_len;
        *tail = child;
        tail = &child->next;
        v->n_children++;
        CNN_TRY(st);
        skip_ws(p);
        if (p->pos >= p->len) return fail(p, object ? "unterminated object" : "unterminated array");
        char c = p->s[p->pos++];
        if (c == close) break;
        if (c != ',') {
            p->pos--;
            return fail(p, object ? "expected ',' or '}'" : "expected ',' or ']'");
        }
    }
    p->depth--;
    return CNN_OK;
}

static cnn_status parse_value(parser *p, cnn_json **out)
{
    skip_ws(p);
    if (p->pos >= p->len) return fail(p, "unexpected end of text");
    if (++p->n_values > p->max_values)
        return cnn_error(CNN_ERR_UNSUPPORTED, "JSON: more than %zu values", p->max_values);
    cnn_json *v = calloc(1, sizeof *v);
    if (!v) return oom();
    *out = v; /* linked before filling, so the caller frees it on any failure */
    char c = p->s[p->pos];
    switch (c) {
    case '{':
        v->type = CNN_JSON_OBJECT;
        return parse_container(p, v, true);
    case '[':
        v->type = CNN_JSON_ARRAY;
        return parse_container(p, v, false);
    case '"':
        v->type = CNN_JSON_STRING;
        return parse_string(p, &v->str, &v->len);
    case 't':
    case 'f':
        v->type = CNN_JSON_BOOL;
        v->len = c == 't';
        if (!literal(p, c == 't' ? "true" : "false")) return fail(p, "invalid literal");
        return CNN_OK;
    case 'n':
        v->type = CNN_JSON_NULL;
        if (!literal(p, "null")) return fail(p, "invalid literal");
        return CNN_OK;
    default:
        v->type = CNN_JSON_NUMBER;
        if (c == '-' || (c >= '0' && c <= '9')) return parse_number(p, v);
        return fail(p, "unexpected character");
    }
}

cnn_status cnn_json_parse(const char *text, size_t len, int max_depth, size_t max_values,
                          cnn_json **out)
{
    CNN_CHECK(out && (text || len == 0), CNN_ERR_INVALID_ARG, "json_parse: NULL argument");
    *out = NULL;
    if (!cnn_utf8_valid(text, len))
        return cnn_error(CNN_ERR_FORMAT, "invalid JSON: text is not valid UTF-8");
    parser p = {.s = text, .len = len, .max_depth = max_depth, .max_values = max_values};
    cnn_json *root = NULL;
    cnn_status st = parse_value(&p, &root);
    if (st == CNN_OK) {
        skip_ws(&p);
        if (p.pos != p.len) st = fail(&p, "trailing characters after the value");
    }
    if (st != CNN_OK) {
        cnn_json_free(&root);
        return st;
    }
    *out = root;
    return CNN_OK;
}

void cnn_json_free(cnn_json **j)
{
    if (!j) return;
    cnn_json *v = *j;
    *j = NULL;
    while (v) {
        cnn_json *next = v->next;
        cnn_json_free(&v->child);
        free(v->str);
        free(v->key);
        free(v);
        v = next;
    }
}

bool cnn_json_get_u64(const cnn_json *j, uint64_t *out)
{
    if (!j || j->type != CNN_JSON_NUMBER || j->len == 0) return false;
    uint64_t v = 0;
    for (size_t i = 0; i < j->len; i++) {
        char c = j->str[i];
        if (c < '0' || c > '9') return false;
        unsigned d = (unsigned)(c - '0');
        if (v > (UINT64_MAX - d) / 10) return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

const char *cnn_json_type_name(const cnn_json *j)
{
    if (!j) return "nothing";
    switch (j->type) {
    case CNN_JSON_NULL: return "null";
    case CNN_JSON_BOOL: return "a boolean";
    case CNN_JSON_NUMBER: return "a number";
    case CNN_JSON_STRING: return "a string";
    case CNN_JSON_ARRAY: return "an array";
    case CNN_JSON_OBJECT: return "an object";
    }
    return "?";
}

/* ---- writing ----------------------------------------------------------------------------- */
static bool buf_reserve(cnn_buf *b, size_t extra)
{
    if (b->oom) return false;
    if (b->len + extra + 1 <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1) cap *= 2;
    char *d = realloc(b->data, cap);
    if (!d) {
        b->oom = true;
        return false;
    }
    b->data = d;
    b->cap = cap;
    return true;
}

void cnn_buf_append(cnn_buf *b, const char *s, size_t n)
{
    if (!buf_reserve(b, n)) return;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void cnn_buf_printf(cnn_buf *b, const char *fmt, ...)
{
    char small[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->oom = true;
        return;
    }
    if ((size_t)n < sizeof small) {
        cnn_buf_append(b, small, (size_t)n);
        return;
    }
    if (!buf_reserve(b, (size_t)n)) return;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void cnn_buf_json_string(cnn_buf *b, const char *s)
{
    cnn_buf_append(b, "\"", 1);
    for (const char *c = s; *c; c++) {
        unsigned char u = (unsigned char)*c;
        switch (u) {
        case '"': cnn_buf_append(b, "\\\"", 2); break;
        case '\\': cnn_buf_append(b, "\\\\", 2); break;
        case '\b': cnn_buf_append(b, "\\b", 2); break;
        case '\f': cnn_buf_append(b, "\\f", 2); break;
        case '\n': cnn_buf_append(b, "\\n", 2); break;
        case '\r': cnn_buf_append(b, "\\r", 2); break;
        case '\t': cnn_buf_append(b, "\\t", 2); break;
        default:
            if (u < 0x20) cnn_buf_printf(b, "\\u%04x", u);
            else cnn_buf_append(b, c, 1);
        }
    }
    cnn_buf_append(b, "\"", 1);
}

void cnn_buf_free(cnn_buf *b)
{
    free(b->data);
    *b = (cnn_buf){0};
}
