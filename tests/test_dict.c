/* test_dict.c — cnn_dict on its own: the names it refuses, a name set again replacing its
 * entry in place, a load that fails on a dtype and changes nothing, a (1,) tensor loading into
 * a scalar, and the missing/unexpected lists of its load report, which hold whole names in
 * order and end with "..." when they no longer fit in their 1024 bytes; and indices past the
 * entries; cnn_dict_move_into replacing by name and growing to any size. */
#include "internal.h" /* cnn_dict_move_into, a tensor's refcount */
#include "test.h"

static cnn_tensor *filled(cnn_shape s, float v)
{
    cnn_tensor *t = NULL;
    if (cnn_tensor_full(s, v, CNN_CPU, &t) != CNN_OK) return NULL;
    return t;
}

/* A state-dict key is never empty (nor NULL). */
TEST(dict_refuses_empty_and_null_names)
{
    cnn_dict *d = NULL;
    cnn_tensor *t = filled(CNN_SHAPE(2), 1.0f);
    CHECK_OK(cnn_dict_create(&d));
    REQUIRE(t && d);
    CHECK_ERR(cnn_dict_set(d, "", t), CNN_ERR_INVALID_ARG);
    CHECK_ERR(cnn_dict_set(d, NULL, t), CNN_ERR_INVALID_ARG);
    CHECK_ERR(cnn_dict_set(d, "w", NULL), CNN_ERR_INVALID_ARG);
    CHECK(cnn_dict_size(d) == 0);
    CHECK_OK(cnn_dict_set(d, "w", t));
    CHECK(cnn_dict_size(d) == 1 && cnn_dict_get(d, "w") == t && cnn_dict_get(d, "") == NULL);
    cnn_tensor_free(&t);
    cnn_dict_destroy(&d);
}

/* A tensor of another dtype converts, as PyTorch's load_state_dict copies across dtypes; one
 * whose value the destination's dtype cannot hold (NaN into I64) fails the load before the
 * tensor ahead of it is copied (the header: "nothing is changed"). */
TEST(dict_load_converts_dtypes_and_fails_before_copying_anything)
{
    cnn_dict *dst = NULL, *src = NULL;
    CHECK_OK(cnn_dict_create(&dst));
    CHECK_OK(cnn_dict_create(&src));
    REQUIRE(dst && src);
    const int64_t v[2] = {3, 4};
    const float bad[2] = {3.0f, NAN}, good[2] = {3.7f, -1.2f};
    cnn_tensor *w = filled(CNN_SHAPE(2), 0.0f), *w1 = filled(CNN_SHAPE(2), 1.0f);
    cnn_tensor *b = NULL, *bf = NULL;
    CHECK_OK(cnn_tensor_from_i64(CNN_SHAPE(2), v, CNN_CPU, &b));
    CHECK_OK(cnn_tensor_from_data(CNN_SHAPE(2), bad, CNN_CPU, &bf));
    REQUIRE(w && b && w1 && bf);
    CHECK_OK(cnn_dict_set(dst, "w", w));
    CHECK_OK(cnn_dict_set(dst, "b", b));
    CHECK_OK(cnn_dict_set(src, "w", w1));
    CHECK_OK(cnn_dict_set(src, "b", bf));
    CHECK_ERR(cnn_dict_load(dst, src, true, NULL), CNN_ERR_INVALID_ARG);
    CHECK(strstr(cnn_last_error(), "'b'") && strstr(cnn_last_error(), "I64"));
    CHECK_ERR(cnn_dict_load(dst, src, false, NULL), CNN_ERR_INVALID_ARG);
    CHECK(cnn_tensor_cdata(w)[0] == 0.0f && cnn_tensor_cdata(w)[1] == 0.0f);
    int64_t got[2];
    CHECK_OK(cnn_tensor_read(b, got, 2));
    CHECK(got[0] == 3 && got[1] == 4);
    CHECK_OK(cnn_tensor_write(bf, good, 2));
    CHECK_OK(cnn_dict_load(dst, src, true, NULL));
    CHECK_OK(cnn_tensor_read(b, got, 2));
    CHECK(got[0] == 3 && got[1] == -1 && cnn_tensor_cdata(w)[1] == 1.0f);
    cnn_tensor *all[4] = {w, b, w1, bf};
    for (int i = 0; i < 4; i++) cnn_tensor_free(&all[i]);
    cnn_dict_destroy(&dst);
    cnn_dict_destroy(&src);
}

/* A (1,) tensor loads into a scalar, as PyTorch's load_state_dict keeps 0.3 files loading (a
 * (1,) num_batches_tracked), converting its dtype on the way; (2,) and a scalar into (1,) are
 * shape errors that change nothing. */
TEST(dict_load_takes_a_one_element_vector_into_a_scalar)
{
    cnn_dict *dst = NULL, *src = NULL;
    cnn_tensor *nbt = NULL, *one = filled(CNN_SHAPE(1), 7.0f), *two = filled(CNN_SHAPE(2), 5.0f);
    cnn_tensor *w = filled(CNN_SHAPE(1), 0.0f), *sc = filled(CNN_SCALAR, 2.0f);
    const int64_t zero = 0;
    CHECK_OK(cnn_tensor_from_i64(CNN_SCALAR, &zero, CNN_CPU, &nbt));
    CHECK_OK(cnn_dict_create(&dst));
    CHECK_OK(cnn_dict_create(&src));
    REQUIRE(dst && src && nbt && one && two && w && sc);
    CHECK_OK(cnn_dict_set(dst, "bn.num_batches_tracked", nbt));
    CHECK_OK(cnn_dict_set(src, "bn.num_batches_tracked", one));
    CHECK_OK(cnn_dict_load(dst, src, true, NULL));
    int64_t got = -1;
    CHECK_OK(cnn_tensor_read(nbt, &got, 1));
    CHECK(got == 7 && cnn_tensor_ndim(nbt) == 0);
    CHECK_OK(cnn_dict_set(src, "bn.num_batches_tracked", two));
    CHECK_ERR(cnn_dict_load(dst, src, true, NULL), CNN_ERR_SHAPE);
    CHECK(strstr(cnn_last_error(), "num_batches_tracked") && strstr(cnn_last_error(), "(2)"));
    CHECK_OK(cnn_tensor_read(nbt, &got, 1));
    CHECK(got == 7);
    /* Not the other way round: a scalar does not load into a (1,) tensor. */
    cnn_dict_destroy(&dst);
    cnn_dict_destroy(&src);
    CHECK_OK(cnn_dict_create(&dst));
    CHECK_OK(cnn_dict_create(&src));
    REQUIRE(dst && src);
    CHECK_OK(cnn_dict_set(dst, "w", w));
    CHECK_OK(cnn_dict_set(src, "w", sc));
    CHECK_ERR(cnn_dict_load(dst, src, true, NULL), CNN_ERR_SHAPE);
    CHECK(cnn_tensor_cdata(w)[0] == 0.0f);
    cnn_tensor *all[5] = {nbt, one, two, w, sc};
    for (int i = 0; i < 5; i++) cnn_tensor_free(&all[i]);
    cnn_dict_destroy(&dst);
    cnn_dict_destroy(&src);
}

/* The list is the names joined by ", ", in order; cut short, it ends with the item "..." and
 * everything before it is whole names: exactly `whole` of them (-1: not cut, all n). */
static void check_list(const char *list, char *const *names, int n, int whole, const char *what)
{
    size_t len = strlen(list);
    if (len >= 1024) cnn_test_fail(__FILE__, __LINE__, "%s: %zu bytes", what, len);
    const char *p = list;
    int i = 0;
    for (;; i++) {
        const char *sep = strstr(p, ", ");
        size_t n_item = sep ? (size_t)(sep - p) : strlen(p);
        if (n_item == 3 && strncmp(p, "...", 3) == 0 && !sep) { /* cut short, at the end */
            if (i != whole)
                cnn_test_fail(__FILE__, __LINE__, "%s: cut after %d names, not %d", what, i,
                              whole);
            return;
        }
        if (i >= n || strlen(names[i]) != n_item || strncmp(p, names[i], n_item) != 0) {
            cnn_test_fail(__FILE__, __LINE__, "%s: item %d is not the name expected (list "
                          "ends \"%s\")", what, i, len > 12 ? list + len - 12 : list);
            return;
        }
        if (!sep) break;
        p = sep + 2;
    }
    if (i != n - 1 || whole != -1)
        cnn_test_fail(__FILE__, __LINE__, "%s: %d of %d names and no \"...\" (want %d)", what,
                      i + 1, n, whole);
}

/* Loads an empty dict into one holding tensors under `names`: all are missing, listed as
 * check_list expects (`whole` names before "...", -1 for all). */
static void missing_list_of(char *const *names, int n, int whole, const char *what)
{
    cnn_dict *dst = NULL, *src = NULL;
    cnn_tensor *t = filled(CNN_SHAPE(1), 0.0f);
    if (cnn_dict_create(&dst) != CNN_OK || cnn_dict_create(&src) != CNN_OK || !t) {
        cnn_test_fail(__FILE__, __LINE__, "%s: setup", what);
    } else {
        for (int i = 0; i < n; i++) CHECK_OK(cnn_dict_set(dst, names[i], t));
        cnn_load_report r;
        CHECK_OK(cnn_dict_load(dst, src, false, &r));
        CHECK(r.n_missing == n && r.n_unexpected == 0);
        check_list(r.missing, names, n, whole, what);
        /* The other way round, the same names are unexpected. */
        CHECK_OK(cnn_dict_load(src, dst, false, &r));
        CHECK(r.n_unexpected == n && r.n_missing == 0);
        check_list(r.unexpected, names, n, whole, what);
    }
    cnn_tensor_free(&t);
    cnn_dict_destroy(&dst);
    cnn_dict_destroy(&src);
}

static char *name_of(char c, size_t len)
{
    char *s = malloc(len + 1);
    if (s) memset(s, c, len), s[len] = '\0';
    return s;
}

TEST(dict_load_report_lists_whole_names_then_dots)
{
    char what[64];
    /* A first name that leaves 2 to 9 bytes of the 1024: a name goes in only if ", ..." and
     * the NUL (6 bytes) still fit after it, so 1015 bytes take the second name too ("b", 3
     * bytes with its separator), 1016 to 1018 only the first, 1019 and more none ("..."). */
    for (size_t first = 1015; first <= 1022; first++) {
        char *names[3] = {name_of('a', first), name_of('b', 1), name_of('c', 1)};
        REQUIRE(names[0] && names[1] && names[2]);
        snprintf(what, sizeof what, "first name of %zu bytes", first);
        missing_list_of(names, 3, first == 1015 ? 2 : first <= 1018 ? 1 : 0, what);
        for (int i = 0; i < 3; i++) free(names[i]);
    }
    /* A name too long to fit, then a short one that would: the list stays cut at the first. */
    char *gap[3] = {name_of('a', 500), name_of('b', 600), name_of('c', 1)};
    REQUIRE(gap[0] && gap[1] && gap[2]);
    missing_list_of(gap, 3, 1, "long name then a short one");
    for (int i = 0; i < 3; i++) free(gap[i]);
    /* Twelve 99-byte names: ten fit. Three short ones: all fit, no dots. */
    char *many[12];
    for (int i = 0; i < 12; i++) {
        many[i] = name_of('k', 99);
        REQUIRE(many[i]);
        many[i][0] = (char)('A' + i);
    }
    missing_list_of(many, 12, 10, "twelve 99-byte names");
    for (int i = 0; i < 12; i++) free(many[i]);
    char *few[3] = {"x", "y.weight", "z"};
    missing_list_of(few, 3, -1, "three short names");
}

/* Indices outside [0, size) give NULL, for entries and for metadata; index size is a slot the
 * dict has allocated but not filled (the first cnn_dict_set makes room for 32), so a bound off
 * by one reads an uninitialised pointer: valgrind (make check-valgrind) reports it. */
TEST(dict_indices_outside_the_entries_give_null)
{
    cnn_dict *d = NULL;
    cnn_tensor *t = filled(CNN_SHAPE(1), 2.0f);
    CHECK_OK(cnn_dict_create(&d));
    REQUIRE(t && d);
    CHECK(cnn_dict_name(d, 0) == NULL && cnn_dict_at(d, 0) == NULL);
    CHECK_OK(cnn_dict_set(d, "w", t));
    CHECK_OK(cnn_dict_set_meta(d, "k", "v"));
    CHECK(cnn_dict_size(d) == 1 && cnn_dict_meta_size(d) == 1);
    CHECK(!strcmp(cnn_dict_name(d, 0), "w") && cnn_dict_at(d, 0) == t);
    CHECK(cnn_dict_name(d, 1) == NULL && cnn_dict_at(d, 1) == NULL);
    CHECK(cnn_dict_name(d, -1) == NULL && cnn_dict_at(d, -1) == NULL);
    CHECK(!strcmp(cnn_dict_meta_key(d, 0), "k") && !strcmp(cnn_dict_meta_value(d, 0), "v"));
    CHECK(cnn_dict_meta_key(d, 1) == NULL && cnn_dict_meta_value(d, 1) == NULL);
    CHECK(cnn_dict_meta_key(d, -1) == NULL && cnn_dict_meta_value(d, -1) == NULL);
    cnn_tensor_free(&t);
    cnn_dict_destroy(&d);
}

/* Metadata is JSON text in a file: a key or value that is not UTF-8 is refused when set (the
 * caller can still say which), not when the dict is saved. */
TEST(dict_set_meta_refuses_text_that_is_not_utf8)
{
    cnn_dict *d = NULL;
    CHECK_OK(cnn_dict_create(&d));
    REQUIRE(d);
    CHECK_ERR(cnn_dict_set_meta(d, "classes", "caf\xe9"), CNN_ERR_INVALID_ARG);
    CHECK(strstr(cnn_last_error(), "'classes'") && strstr(cnn_last_error(), "UTF-8"));
    CHECK_ERR(cnn_dict_set_meta(d, "k\xff", "v"), CNN_ERR_INVALID_ARG);
    CHECK_ERR(cnn_dict_set_meta(d, "surrogate", "\xed\xa0\x80"), CNN_ERR_INVALID_ARG);
    CHECK(cnn_dict_meta_size(d) == 0);
    CHECK_OK(cnn_dict_set_meta(d, "classes", "caf\xc3\xa9"));
    CHECK(!strcmp(cnn_dict_get_meta(d, "classes"), "caf\xc3\xa9"));
    cnn_dict_destroy(&d);
}

/* Setting a name again replaces its tensor where it stands, whichever entry it is (the first
 * one too): one entry per name, in the order the names were first set, each holding the
 * latest tensor. */
TEST(dict_set_again_replaces_any_entry_in_place)
{
    cnn_dict *d = NULL;
    cnn_tensor *t[3] = {filled(CNN_SHAPE(1), 1.0f), filled(CNN_SHAPE(1), 2.0f),
                        filled(CNN_SHAPE(1), 3.0f)};
    CHECK_OK(cnn_dict_create(&d));
    REQUIRE(d && t[0] && t[1] && t[2]);
    CHECK_OK(cnn_dict_set(d, "a", t[0]));
    CHECK_OK(cnn_dict_set(d, "b", t[1]));
    CHECK_OK(cnn_dict_set(d, "a", t[2]));
    CHECK_OK(cnn_dict_set(d, "b", t[0]));
    CHECK(cnn_dict_size(d) == 2);
    CHECK(!strcmp(cnn_dict_name(d, 0), "a") && !strcmp(cnn_dict_name(d, 1), "b"));
    CHECK(cnn_dict_get(d, "a") == t[2] && cnn_dict_at(d, 0) == t[2]);
    CHECK(cnn_dict_get(d, "b") == t[0] && cnn_dict_at(d, 1) == t[0]);
    for (int i = 0; i < 3; i++) cnn_tensor_free(&t[i]);
    cnn_dict_destroy(&d);
}

/* cnn_dict_move_into (internal): an entry or metadata of the same name is replaced in place
 * (the old tensor let go of), the others are appended in src's order, src is left empty, and
 * dst grows however many it takes (here past twice its capacity in one move). */
TEST(dict_move_into_replaces_by_name_and_grows_to_any_size)
{
    cnn_dict *dst = NULL, *src = NULL;
    cnn_tensor *old = filled(CNN_SHAPE(2), -1.0f), *neu = filled(CNN_SHAPE(2), -2.0f);
    REQUIRE(old && neu);
    CHECK_OK(cnn_dict_create(&dst));
    CHECK_OK(cnn_dict_create(&src));
    CHECK_OK(cnn_dict_set(dst, "a", old));
    CHECK_OK(cnn_dict_set_meta(dst, "k", "old"));
    char name[16], val[16];
    for (int i = 0; i < 100; i++) {
        cnn_tensor *t = filled(CNN_SHAPE(1), (float)i);
        REQUIRE(t);
        snprintf(name, sizeof name, "n%d", i);
        CHECK_OK(cnn_dict_set(src, name, t));
        cnn_tensor_free(&t);
        snprintf(name, sizeof name, "m%d", i);
        snprintf(val, sizeof val, "v%d", i);
        CHECK_OK(cnn_dict_set_meta(src, name, val));
    }
    CHECK_OK(cnn_dict_set(src, "a", neu));
    CHECK_OK(cnn_dict_set_meta(src, "k", "new"));
    CHECK(old->refcount == 2);
    CHECK_OK(cnn_dict_move_into(dst, src));
    CHECK(old->refcount == 1); /* dst let go of the tensor it replaced */
    CHECK(cnn_dict_size(src) == 0 && cnn_dict_meta_size(src) == 0);
    REQUIRE(cnn_dict_size(dst) == 101 && cnn_dict_meta_size(dst) == 101);
    CHECK(!strcmp(cnn_dict_name(dst, 0), "a") && cnn_dict_at(dst, 0) == neu);
    CHECK(!strcmp(cnn_dict_meta_key(dst, 0), "k") && !strcmp(cnn_dict_meta_value(dst, 0), "new"));
    for (int i = 0; i < 100; i++) {
        snprintf(name, sizeof name, "n%d", i);
        CHECK(!strcmp(cnn_dict_name(dst, i + 1), name) &&
              cnn_tensor_cdata(cnn_dict_at(dst, i + 1))[0] == (float)i);
        snprintf(name, sizeof name, "m%d", i);
        snprintf(val, sizeof val, "v%d", i);
        CHECK(!strcmp(cnn_dict_meta_key(dst, i + 1), name) &&
              !strcmp(cnn_dict_get_meta(dst, name), val));
    }
    cnn_dict_destroy(&src);
    cnn_dict_destroy(&dst);
    cnn_tensor_free(&old);
    cnn_tensor_free(&neu);
}
