/* test_safetensors_save.c — what the safetensors writer promises beyond a round trip: the
 * header padded to a multiple of 8 bytes with fewer than 8 spaces (as the reference writer,
 * so that the data starts aligned and the file is byte for byte Python's), each tensor's bytes
 * aligned to its element size, and saves to one path from two threads at once, each atomic
 * (their temporary files are their own). The round trips, exact bytes and failed writes:
 * test_safetensors.c. */
#include "test.h"

#include <pthread.h>

#include "scratch.h"

/* The header length from the file's 8-byte little-endian prefix. */
static uint64_t header_len(const unsigned char *f)
{
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | f[i];
    return n;
}

/* Names of 1 to 16 characters move the end of the JSON through every remainder modulo 8: the
 * header is always the JSON then 0 to 7 spaces (none when the JSON ends on a multiple of 8). */
TEST(safetensors_header_padding_is_the_fewest_spaces_to_a_multiple_of_8)
{
    scratch s;
    REQUIRE(scratch_open(&s));
    int seen[8] = {0};
    for (int k = 1; k <= 16 && !cnn_test_failed(); k++) {
        char name[17];
        memset(name, 'n', (size_t)k);
        name[k] = '\0';
        cnn_dict *d = NULL;
        cnn_tensor *t = NULL;
        CHECK_OK(cnn_dict_create(&d));
        CHECK_OK(cnn_tensor_full(CNN_SHAPE(1), 1.5f, CNN_CPU, &t));
        CHECK_OK(cnn_dict_set(d, name, t));
        cnn_tensor_free(&t);
        CHECK_OK(cnn_safetensors_save(s.path, d));
        cnn_dict_destroy(&d);
        size_t n = 0;
        unsigned char *f = scratch_read(s.path, &n);
        REQUIRE(f && n >= 8);
        uint64_t len = header_len(f);
        REQUIRE(len % 8 == 0 && n == 8 + len + 4);
        uint64_t json = len;
        while (json > 0 && f[8 + json - 1] == ' ') json--;
        CHECK(json > 0 && f[8 + json - 1] == '}');
        if (len - json >= 8)
            cnn_test_fail(__FILE__, __LINE__, "name of %d: %llu-byte JSON padded with %llu "
                          "spaces", k, (unsigned long long)json,
                          (unsigned long long)(len - json));
        seen[json % 8]++;
        free(f);
    }
    for (int r = 0; r < 8; r++) CHECK(seen[r] == 2);
    scratch_close(&s);
}

/* Mixed dtypes in an order that would misalign them back to back (3 F32s, then an I64): each
 * tensor's bytes start at a multiple of its element size, the largest elements stored first
 * (the reference writer's order); the header keeps the dict's order, so the load gives the same
 * names in the same order and the same values. */
TEST(safetensors_tensors_start_at_a_multiple_of_their_element_size)
{
    scratch s;
    REQUIRE(scratch_open(&s));
    static const char *const names[6] = {"f3", "i1", "h3", "f1", "d1", "i2"};
    static const cnn_dtype dts[6] = {CNN_F32, CNN_I64, CNN_F16, CNN_F32, CNN_F64, CNN_I32};
    static const int64_t lens[6] = {3, 1, 3, 1, 1, 3};
    cnn_dict *d = NULL, *back = NULL;
    CHECK_OK(cnn_dict_create(&d));
    unsigned char bytes[64];
    for (int i = 0; i < 6; i++) {
        cnn_tensor *t = NULL;
        for (int b = 0; b < 64; b++) bytes[b] = (unsigned char)(16 * i + b % 16 + 1);
        CHECK_OK(cnn_tensor_empty(CNN_SHAPE(lens[i]), dts[i], CNN_CPU, &t));
        CHECK_OK(cnn_tensor_write(t, bytes, (size_t)lens[i]));
        CHECK_OK(cnn_dict_set(d, names[i], t));
        cnn_tensor_free(&t);
    }
    CHECK_OK(cnn_safetensors_save(s.path, d));
    size_t n = 0;
    unsigned char *f = scratch_read(s.path, &n);
    REQUIRE(f && n >= 8);
    uint64_t len = header_len(f);
    REQUIRE(8 + len <= n);
    f[8 + len] = 0; /* scratch_read leaves a spare byte */
    const char *hdr = (const char *)f + 8;
    static const uint64_t esize[6] = {4, 8, 2, 4, 8, 4};
    uint64_t order[6];
    for (int i = 0; i < 6; i++) {
        char key[16];
        snprintf(key, sizeof key, "\"%s\":", names[i]);
        const char *at = strstr(hdr, key), *offs = at ? strstr(at, "\"data_offsets\":[") : NULL;
        unsigned long long a = 1, b = 0;
        REQUIRE(offs && sscanf(offs + 16, "%llu,%llu", &a, &b) == 2);
        CHECK(b - a == esize[i] * (uint64_t)lens[i]);
        if (a % esize[i])
            cnn_test_fail(__FILE__, __LINE__, "'%s' (%llu-byte elements) starts at byte %llu",
                          names[i], (unsigned long long)esize[i], a);
        order[i] = a;
        if (i) CHECK(strstr(hdr, key) > strstr(hdr, names[i - 1])); /* dict order in the header */
    }
    /* stored by element size, largest first: i1 d1 | f3 f1 i2 | h3 */
    CHECK(order[1] == 0 && order[4] == 8 && order[0] == 16 && order[3] == 28 && order[5] == 32 &&
          order[2] == 44 && n == 8 + len + 50);
    CHECK_OK(cnn_safetensors_load(s.path, &back));
    REQUIRE(back && cnn_dict_size(back) == 6);
    for (int i = 0; i < 6; i++) {
        const cnn_tensor *t = cnn_dict_at(back, i);
        CHECK(!strcmp(cnn_dict_name(back, i), names[i]) && cnn_tensor_dtype(t) == dts[i]);
        CHECK_OK(cnn_tensor_read(t, bytes, (size_t)lens[i]));
        for (uint64_t b = 0; b < esize[i] * (uint64_t)lens[i]; b++)
            if (bytes[b] != (unsigned char)(16 * i + b % 16 + 1)) {
                cnn_test_fail(__FILE__, __LINE__, "'%s' byte %llu", names[i],
                              (unsigned long long)b);
                break;
            }
    }
    free(f);
    cnn_dict_destroy(&back);
    cnn_dict_destroy(&d);
    scratch_close(&s);
}

typedef struct saver {
    const char *path;
    const cnn_dict *d;
    int failures;
} saver;

static void *save_often(void *arg)
{
    saver *sv = arg;
    for (int i = 0; i < 40; i++) sv->failures += cnn_safetensors_save(sv->path, sv->d) != CNN_OK;
    return NULL;
}

/* Two threads save their own dicts to one path 40 times each: every save succeeds, the file is
 * then one of the two, whole, and no temporary file is left (two saves sharing a temporary
 * name would write into one file and rename each other's away). */
TEST(safetensors_saves_from_two_threads_to_one_path_are_each_atomic)
{
    scratch s;
    REQUIRE(scratch_open(&s));
    cnn_dict *d[2] = {NULL, NULL};
    for (int i = 0; i < 2; i++) {
        cnn_tensor *t = NULL;
        CHECK_OK(cnn_dict_create(&d[i]));
        CHECK_OK(cnn_tensor_full(CNN_SHAPE(64, 256), (float)(i + 1), CNN_CPU, &t));
        CHECK_OK(cnn_dict_set(d[i], i ? "second" : "first", t));
        cnn_tensor_free(&t);
    }
    saver sv[2] = {{s.path, d[0], 0}, {s.path, d[1], 0}};
    pthread_t th[2];
    REQUIRE(pthread_create(&th[0], NULL, save_often, &sv[0]) == 0);
    REQUIRE(pthread_create(&th[1], NULL, save_often, &sv[1]) == 0);
    pthread_join(th[0], NULL);
    pthread_join(th[1], NULL);
    CHECK(sv[0].failures == 0 && sv[1].failures == 0);
    CHECK(scratch_count(&s) == 1);
    cnn_dict *back = NULL;
    CHECK_OK(cnn_safetensors_load(s.path, &back));
    REQUIRE(back && cnn_dict_size(back) == 1);
    const cnn_tensor *t = cnn_dict_at(back, 0);
    float want = strcmp(cnn_dict_name(back, 0), "first") == 0 ? 1.0f : 2.0f;
    const float *v = cnn_tensor_cdata(t);
    int wrong = 0;
    for (int64_t i = 0; i < cnn_tensor_numel(t); i++) wrong += v[i] != want;
    CHECK(cnn_tensor_numel(t) == 64 * 256 && wrong == 0);
    cnn_dict_destroy(&back);
    cnn_dict_destroy(&d[0]);
    cnn_dict_destroy(&d[1]);
    scratch_close(&s);
}
