/* test_rng.c — the context RNG's draws as a stream: each draw of uniform or normal values,
 * whatever its size, takes values no other draw takes (a draw of 3 uniforms or 3 normals must
 * not leave counters that the next draw uses again), and the two normals Box-Muller makes from
 * one counter are two different values. Seeding and distributions: test_tensor.c. */
#include "test.h"

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
