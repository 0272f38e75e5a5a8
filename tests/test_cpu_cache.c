/* test_cpu_cache.c — the host caching allocator (core/alloc_cpu.c): which cached block an
 * allocation takes (the closest no more than 25% larger, from 64 KiB up), the caps
 * (CNN_CPU_CACHE_MB, and twice the most ever live at once for blocks not yet reused, which
 * leaves a loop repeating its sizes alone; each checked in a child process) and the peak
 * reset. */
#include "internal.h"
#include "test.h"

#include <unistd.h>

#define KIB ((int64_t)1024)

/* A CPU tensor of `kib` KiB; the size of the block behind it (what alloc_cpu.c handed out, a
 * cached block being possibly larger than asked) in *block. */
static cnn_tensor *take(int64_t kib, size_t *block)
{
    cnn_tensor *t = NULL;
    if (cnn_tensor_empty(CNN_SHAPE(kib * KIB / 4), CNN_F32, CNN_CPU, &t) != CNN_OK) {
        cnn_test_fail(__FILE__, __LINE__, "take(%lld KiB): %s", (long long)kib, cnn_last_error());
        return NULL;
    }
    *block = cnn_cpu_block_bytes(t->storage);
    return t;
}

/* Allocates `kib` KiB and frees it at once: the size of the block it got, in KiB. */
static int64_t block_kib(int64_t kib)
{
    size_t block = 0;
    cnn_tensor *t = take(kib, &block);
    cnn_tensor_free(&t);
    return (int64_t)(block / KIB);
}

/* Puts blocks of these sizes (KiB, 0-terminated) in the cache: all live at once, then freed. */
static void cache_blocks(const int64_t *kib)
{
    cnn_tensor *t[8] = {0};
    size_t block;
    for (int i = 0; kib[i] && i < 8; i++) t[i] = take(kib[i], &block);
    for (int i = 0; i < 8; i++) cnn_tensor_free(&t[i]);
}

TEST(cpu_cache_takes_the_closest_block_within_a_quarter)
{
    cnn_cpu_empty_cache();
    cache_blocks((const int64_t[]){72, 1200, 1100, 0});
    /* 64 KiB exactly is the smallest size served from the cache: 72 KiB is within 25%. */
    CHECK(block_kib(64) == 72);
    /* 1100 and 1200 KiB are both within 25% of 1 MiB: the closer one is taken. */
    size_t block = 0;
    cnn_tensor *t = take(1024, &block);
    CHECK(block == 1100 * KIB);
    cnn_tensor_free(&t);
    /* 1100 KiB is more than 25% above 868 KiB (up to 1085): a block of its own. */
    CHECK(block_kib(868) == 868);
    /* Below 64 KiB nothing comes from the cache, though 72 KiB is cached. */
    CHECK(block_kib(60) == 60);
    cnn_cpu_empty_cache();
    CHECK(block_kib(1024) == 1024);
}

/* Resetting the peak sets it to what live tensors hold now, not to zero. */
TEST(cpu_memory_peak_reset_keeps_the_live_bytes)
{
    size_t block = 0, a = 0, p = 0;
    cnn_tensor *t = take(512, &block);
    cnn_cpu_memory_stats(NULL, NULL, true);
    cnn_cpu_memory_stats(&a, &p, false);
    CHECK(a >= block && p == a);
    cnn_tensor_free(&t);
    cnn_cpu_memory_stats(&a, &p, false);
    CHECK(p >= a + block);
}

/* The checks under a 1 MiB cap, in the child process. */
static void cap_checks(void)
{
    /* A block larger than the cap is never cached. */
    cnn_cpu_empty_cache();
    CHECK(block_kib(2048) == 2048);
    CHECK(block_kib(1900) == 1900);
    /* Caching a 700 KiB block beside a 640 KiB one would pass 1 MiB: the larger cached one,
     * 640 KiB, goes, and a 600 KiB request takes the 700 KiB block. */
    cnn_cpu_empty_cache();
    cache_blocks((const int64_t[]){640, 0});
    cache_blocks((const int64_t[]){700, 0});
    CHECK(block_kib(600) == 700);
    /* Largest first: with 300 and 500 KiB cached, freeing 364 KiB drops the 500. */
    cnn_cpu_empty_cache();
    cache_blocks((const int64_t[]){300, 500, 0});
    cache_blocks((const int64_t[]){364, 0});
    CHECK(block_kib(340) == 364);
    CHECK(block_kib(420) == 420);
    /* A cached block handed out leaves the cache's total: taking the 640 KiB block and giving
     * it back, then caching 300 KiB, stays under 1 MiB and keeps both. */
    cnn_cpu_empty_cache();
    cache_blocks((const int64_t[]){640, 0});
    CHECK(block_kib(600) == 640);
    cache_blocks((const int64_t[]){300, 0});
    CHECK(block_kib(600) == 640);
    CHECK(block_kib(280) == 300);
    cnn_cpu_empty_cache();
}

/* Runs this program again on test `name` alone with CNN_TEST_CACHE_CAP_CHILD set (and `env`,
 * "" for none), which runs the checks rather than another child: each cap is read, or each
 * mark counted, once per process. */
static void run_child(const char *name, const char *env)
{
    char self[4096], cmd[4600], out[8192];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0) {
        cnn_test_fail(__FILE__, __LINE__, "readlink /proc/self/exe failed");
        return;
    }
    self[len] = 0;
    snprintf(cmd, sizeof cmd, "CNN_TEST_CACHE_CAP_CHILD=1 %s '%s' 'test_cpu_cache.c:%s' 2>&1",
             env, self, name);
    int rc = cnn_test_capture(cmd, out, sizeof out);
    if (rc != 0 || !strstr(out, "1 passed, 0 failed"))
        cnn_test_fail(__FILE__, __LINE__, "the run of %s (%s): exit %d, output:\n%s", name, env,
                      rc, out);
}

static size_t cached_bytes(void)
{
    size_t cached = 0, fresh = 0;
    cnn_cpu_cache_counts(&cached, &fresh);
    return cached;
}

static size_t fresh_blocks(void)
{
    size_t cached = 0, fresh = 0;
    cnn_cpu_cache_counts(&cached, &fresh);
    return fresh;
}

/* One pass of a chain of 16 layers, one in, one out: sizes from 256 KiB growing 1.3 times a
 * layer, which no block of another layer serves (over 25% apart), adding up to more than
 * twice the most live at once. */
static void chain_pass(void)
{
    size_t block;
    cnn_tensor *x = take(256, &block);
    int64_t kib = 256;
    for (int layer = 1; layer < 16; layer++) {
        kib = kib * 13 / 10;
        cnn_tensor *y = take(kib, &block);
        cnn_tensor_free(&x);
        x = y;
    }
    cnn_tensor_free(&x);
}

/* The high-water checks, in a child process whose most live at once starts at nothing. */
static void high_water_checks(void)
{
    /* Sizes growing 64 KiB at a time up to 16 MiB, one live at a time: none is taken again.
     * The cache keeps what fits beside the live bytes under twice the most ever live (16 MiB
     * and the process's own); before, it kept all 256 blocks, 2 GiB. */
    for (int64_t kib = 64; kib <= 16384; kib += 64) block_kib(kib);
    size_t live = 0, peak = 0;
    cnn_cpu_memory_stats(&live, &peak, false);
    CHECK(cached_bytes() > 0);
    CHECK(cached_bytes() + live <= 2 * peak);
    /* A loop repeating its sizes keeps them all and takes them again. */
    cnn_cpu_empty_cache();
    const int64_t step[] = {4096, 2048, 1024, 512, 0};
    cache_blocks(step);
    size_t cached = cached_bytes();
    CHECK(cached == (4096 + 2048 + 1024 + 512) * KIB);
    for (int i = 0; i < 3; i++) cache_blocks(step);
    CHECK(cached_bytes() == cached);
    /* So does one whose blocks add up to more than twice its most live: the first passes drop
     * blocks not yet taken again, then every block is taken again and kept (before the taken
     * blocks were spared, each pass freed the largest and allocated them again). */
    cnn_cpu_empty_cache();
    for (int pass = 0; pass < 3; pass++) chain_pass();
    size_t fresh = fresh_blocks();
    for (int pass = 0; pass < 3; pass++) chain_pass();
    CHECK(fresh_blocks() == fresh);
    cnn_cpu_empty_cache();
}

TEST(cpu_cache_stays_within_twice_the_most_ever_live)
{
    if (getenv("CNN_TEST_CACHE_CAP_CHILD")) high_water_checks();
    else run_child("cpu_cache_stays_within_twice_the_most_ever_live", "");
}

/* The checks of the 1 MiB cap run in a process started with CNN_CPU_CACHE_MB=1. */
TEST(cpu_cache_cap_drops_the_largest_blocks_first)
{
    if (getenv("CNN_TEST_CACHE_CAP_CHILD")) cap_checks();
    else run_child("cpu_cache_cap_drops_the_largest_blocks_first", "CNN_CPU_CACHE_MB=1");
}
