/* test_rng.c — the context RNG's draws as a stream: each draw of uniform or normal values,
 * whatever its size, takes values no other draw takes (a draw of 3 uniforms or 3 normals must
 * not leave counters that the next draw uses again), and the two normals Box-Muller makes from
 * one counter are two different values; U[low, high) never gives high, on the CPU and the GPU;
 * and the data augmentation's per-sample streams are not the context's stream under the same
 * seed. Philox4x32-10 gives Random123's known answer, and each normal is Box-Muller on its own
 * two words. Seeding and distributions: test_tensor.c. */
#include "test.h"

#include "data_fixtures.h"
#include "philox.h"

#include <float.h>

/* Draws `rounds` tensors of n values each after seeding, and fails on any value seen twice. */
static void draws_never_repeat(bool normal, int64_t n, int rounds)
{
    float *all = malloc((size_t)(n * rounds) * sizeof *all);
    if (!all) {
        cnn_test_fail(__FILE__, __LINE__, "out of memory");
        return;
    }
    cnn_manual_seed(99);
    for (int r = 0; r < rounds; r++) {
        cnn_tensor *t = NULL;
        CHECK_OK(normal ? cnn_tensor_normal(CNN_SHAPE(n), 0.0f, 1.0f, CNN_CPU, &t)
                        : cnn_tensor_uniform(CNN_SHAPE(n), 0.0f, 1.0f, CNN_CPU, &t));
        memcpy(all + r * n, cnn_tensor_cdata(t), (size_t)n * sizeof *all);
        cnn_tensor_free(&t);
    }
    for (int64_t i = 0; i < n * rounds; i++)
        for (int64_t j = i + 1; j < n * rounds; j++)
            if (all[i] == all[j]) {
                cnn_test_fail(__FILE__, __LINE__, "%s draws of %lld: value %lld equals value "
                              "%lld (%g)", normal ? "normal" : "uniform", (long long)n,
                              (long long)i, (long long)j, all[i]);
                free(all);
                return;
            }
    free(all);
}

TEST(rng_draws_of_any_size_take_fresh_values)
{
    const int64_t sizes[6] = {1, 2, 3, 5, 6, 7};
    for (int k = 0; k < 6; k++) {
        draws_never_repeat(false, sizes[k], 6);
        draws_never_repeat(true, sizes[k], 6);
    }
    draws_never_repeat(true, 400, 1); /* within one draw: the pairs of one counter differ */
}

/* Restoring the state before two draws and drawing them again in one call gives the same
 * values when the first draw fills whole counters (8 uniforms, 4 normals): no value is lost
 * or reused between draws. */
TEST(rng_two_draws_equal_one_draw_of_both_on_whole_counters)
{
    for (int normal = 0; normal < 2; normal++) {
        const int64_t n1 = normal ? 4 : 8, n2 = 5;
        uint64_t seed, off;
        cnn_manual_seed(7);
        cnn_rng_get_state(&seed, &off);
        cnn_tensor *a = NULL, *b = NULL, *both = NULL;
        CHECK_OK(normal ? cnn_tensor_normal(CNN_SHAPE(n1), 0.0f, 1.0f, CNN_CPU, &a)
                        : cnn_tensor_uniform(CNN_SHAPE(n1), 0.0f, 1.0f, CNN_CPU, &a));
        CHECK_OK(normal ? cnn_tensor_normal(CNN_SHAPE(n2), 0.0f, 1.0f, CNN_CPU, &b)
                        : cnn_tensor_uniform(CNN_SHAPE(n2), 0.0f, 1.0f, CNN_CPU, &b));
        cnn_rng_set_state(seed, off);
        CHECK_OK(normal ? cnn_tensor_normal(CNN_SHAPE(n1 + n2), 0.0f, 1.0f, CNN_CPU, &both)
                        : cnn_tensor_uniform(CNN_SHAPE(n1 + n2), 0.0f, 1.0f, CNN_CPU, &both));
        REQUIRE(a && b && both);
        CHECK(memcmp(cnn_tensor_cdata(both), cnn_tensor_cdata(a), (size_t)n1 * 4) == 0);
        CHECK(memcmp(cnn_tensor_cdata(both) + n1, cnn_tensor_cdata(b), (size_t)n2 * 4) == 0);
        cnn_tensor_free(&a);
        cnn_tensor_free(&b);
        cnn_tensor_free(&both);
    }
}

/* a + (b - a) * u rounds onto b for some u < 1: U[1, 1.0001) did in about 6 of 10,000 draws. */
static void uniform_excludes_high(cnn_device dev)
{
    const int64_t n = 1 << 20;
    cnn_tensor *t = NULL;
    cnn_manual_seed(5);
    CHECK_OK(cnn_tensor_uniform(CNN_SHAPE(n), 1.0f, 1.0001f, dev, &t));
    float *v = malloc((size_t)n * sizeof *v);
    REQUIRE(t && v);
    CHECK_OK(cnn_tensor_read(t, v, (size_t)n));
    int64_t out = 0, top = 0;
    for (int64_t i = 0; i < n; i++) {
        out += !(v[i] >= 1.0f && v[i] < 1.0001f);
        top += v[i] == nextafterf(1.0001f, 0.0f);
    }
    if (out) cnn_test_fail(__FILE__, __LINE__, "%lld of %lld draws outside [1, 1.0001)",
                           (long long)out, (long long)n);
    CHECK(top > 0); /* the draws that rounded up, and a few that land there anyway */
    free(v);
    cnn_tensor_free(&t);
}

TEST(rng_uniform_never_gives_high)
{
    uniform_excludes_high(CNN_CPU);
}

GPU_TEST(cuda_rng_uniform_never_gives_high_and_matches_cpu)
{
    uniform_excludes_high(CNN_CUDA(0));
    cnn_tensor *c = NULL, *g = NULL, *h = NULL;
    cnn_manual_seed(5);
    CHECK_OK(cnn_tensor_uniform(CNN_SHAPE(100003), 1.0f, 1.0001f, CNN_CPU, &c));
    cnn_manual_seed(5);
    CHECK_OK(cnn_tensor_uniform(CNN_SHAPE(100003), 1.0f, 1.0001f, CNN_CUDA(0), &g));
    CHECK_OK(cnn_tensor_to(g, CNN_CPU, &h));
    REQUIRE(c && h);
    CHECK(memcmp(cnn_tensor_cdata(c), cnn_tensor_cdata(h), 100003 * sizeof(float)) == 0);
    cnn_tensor_free(&c);
    cnn_tensor_free(&g);
    cnn_tensor_free(&h);
}

/* The training tool seeds the context (weights, dropout) and the loader with one number. Sample
 * i's augmentation draws j = 0, 1, ... once took the words of the context's counters 256 i on,
 * i.e. its uniform values 1024 i + j: the flips of 256 samples agreed with one of those values
 * 256 times in 256. Independent streams agree about 128 times. */
TEST(rng_augmentation_streams_are_not_the_context_stream)
{
    const int n = 256;
    cnn_dataset *ds = data_test_synthetic(n, 16, 16);
    REQUIRE(ds);
    cnn_transform t = cnn_transform_default(ds, true, 16), plain;
    t.hflip_p = 0.5f;
    plain = t;
    plain.hflip_p = 0;
    bool flipped[256];
    float a[256], b[256];
    for (int i = 0; i < n; i++) {
        CHECK_OK(cnn_dataset_get(ds, i, &t, 11, 0, a, NULL));
        CHECK_OK(cnn_dataset_get(ds, i, &plain, 11, 0, b, NULL));
        flipped[i] = memcmp(a, b, sizeof a) != 0;
    }
    cnn_manual_seed(11);
    cnn_tensor *u = NULL;
    CHECK_OK(cnn_tensor_uniform(CNN_SHAPE(1024 * n), 0.0f, 1.0f, CNN_CPU, &u));
    REQUIRE(u);
    const float *uv = cnn_tensor_cdata(u);
    int most = 0, flips = 0;
    for (int i = 0; i < n; i++) flips += flipped[i];
    for (int j = 0; j < 16; j++) {
        int agree = 0;
        for (int i = 0; i < n; i++) agree += flipped[i] == (uv[1024 * i + j] < 0.5f);
        most = agree > most ? agree : most;
    }
    if (flips < 80 || flips > 176 || most > 200)
        cnn_test_fail(__FILE__, __LINE__, "%d of %d samples flipped; a context draw agreed with "
                      "the flips %d times", flips, n, most);
    cnn_tensor_free(&u);
    cnn_dataset_destroy(&ds);
}

/* Random123's known answer for Philox4x32-10 (counter 0, key 0): a generator with fewer rounds
 * or another multiplier or key constant still looks random to every other test here. */
TEST(rng_philox_gives_random123s_known_answer)
{
    uint32_t r[4];
    cnn_philox4x32(0, 0, r);
    CHECK(r[0] == 0x6627e8d5u && r[1] == 0xe169c58du && r[2] == 0xbc57ac4cu &&
          r[3] == 0x9b00dbd8u);
}

/* Normal i is Box-Muller on words 2 (i % 2) and 2 (i % 2) + 1 of counter offset + i / 2, with
 * u1 = (top 24 bits + 1) / 2^24 in (0, 1] (the CUDA kernel computes the same). Guards against
 * the two normals of a counter sharing a word (lanes i % 2 and i % 2 + 1: still two different
 * values, but dependent ones) and against u1 in [0, 1), whose 0 gives an infinite normal; its
 * values differ from these by several ulps where u1 is small. */
TEST(rng_normal_is_box_muller_on_two_words_of_its_own)
{
    const int64_t n = 4096;
    uint64_t seed, offset;
    cnn_manual_seed(21);
    cnn_rng_get_state(&seed, &offset);
    cnn_tensor *t = NULL;
    CHECK_OK(cnn_tensor_normal(CNN_SHAPE(n), 0.0f, 1.0f, CNN_CPU, &t));
    REQUIRE(t);
    const float *v = cnn_tensor_cdata(t);
    int64_t bad = 0, first = -1;
    for (int64_t i = 0; i < n; i++) {
        uint32_t r[4];
        cnn_philox4x32(seed, offset + (uint64_t)i / 2, r);
        const int lane = (int)(i % 2) * 2;
        const float u1 = ((float)(r[lane] >> 8) + 1.0f) * (1.0f / 16777216.0f);
        const float u2 = cnn_u32_to_unit(r[lane + 1]);
        const float want = sqrtf(-2.0f * logf(u1)) * cosf(6.2831853071795864f * u2);
        if (!(fabsf(v[i] - want) <= 4 * FLT_EPSILON * fabsf(want) + 1e-7f)) {
            bad++;
            first = first < 0 ? i : first;
        }
    }
    if (bad)
        cnn_test_fail(__FILE__, __LINE__, "%lld of %lld normals differ from Box-Muller on their "
                      "words (first: %lld)", (long long)bad, (long long)n, (long long)first);
    cnn_tensor_free(&t);
}
