/* test_safetensors_limits.c — safetensors under resource limits and on files that are not
 * files: host memory running out while saving or loading (in a forked child with its address
 * space capped), and a FIFO given as the path; and the CPU allocator emptying its cache then. */
#include "test.h"

#include <malloc.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "scratch.h"

/* Whether the checks under a capped address space can run here; else marks the test skipped.
 * ASan's shadow memory needs an uncapped address space; under valgrind (which preloads its
 * vgpreload libraries) allocations come from valgrind's own reserve, which RLIMIT_AS leaves
 * alone. */
static bool address_space_can_be_capped(void)
{
#if defined(__SANITIZE_ADDRESS__)
    cnn_test_skip("needs RLIMIT_AS, which ASan cannot run under");
    return false;
#else
    const char *p = getenv("LD_PRELOAD");
    if (p && strstr(p, "vgpreload")) {
        cnn_test_skip("valgrind's allocator does not honour RLIMIT_AS");
        return false;
    }
    return true;
#endif
}

/* In a forked child: caps the address space at what the process maps now plus `room` bytes,
 * so that a larger allocation fails. Memory that is mapped already can serve an allocation
 * without new address space: free heap memory (after many tests there is plenty), so every free
 * piece of 1 MiB or more is taken first; and the unused part of a thread arena's 64 MiB heap
 * (the forked thread may be on one), so the allocation meant to fail must exceed 64 MiB.
 * False when the limit cannot be set. */
static void *volatile g_taken; /* the pieces, chained: a malloc whose result is unused may be
                                  * left out by the compiler (clang does) */

static bool cap_address_space(size_t room)
{
    malloc_trim(0);
    for (int i = 0; i < 1 << 16; i++) {
        size_t before = mallinfo2().fordblks;
        void **piece = before < ((size_t)1 << 20) ? NULL : malloc((size_t)1 << 20);
        if (!piece) break;
        *piece = g_taken;
        g_taken = piece;
        if (mallinfo2().fordblks >= before) break; /* from new memory: no such piece is left */
    }
    long pages = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return false;
    int got = fscanf(f, "%ld", &pages);
    fclose(f);
    if (got != 1) return false;
    rlim_t now = (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE);
    struct rlimit cap = {now + (rlim_t)room, now + (rlim_t)room};
    return setrlimit(RLIMIT_AS, &cap) == 0;
}

/* Host memory running out while the header is built is an error, not a hang: a child process
 * with its address space capped saves metadata too large for the header buffer to grow to.
 * (Skipped under ASan and valgrind: address_space_can_be_capped.) */
TEST(safetensors_save_out_of_memory_for_the_header)
{
    if (!address_space_can_be_capped()) return;
    scratch s;
    REQUIRE(scratch_open(&s));
    size_t n = (size_t)40 << 20;
    char *big = malloc(n + 1);
    REQUIRE(big);
    memset(big, 'a', n);
    big[n] = 0;
    cnn_dict *d = NULL;
    CHECK_OK(cnn_dict_create(&d));
    CHECK_OK(cnn_dict_set_meta(d, "k", big));
    free(big);
    int pid = cnn_test_fork(20);
    REQUIRE(pid >= 0);
    if (pid == 0) {
        /* The header buffer doubles past 32 MiB to hold the value: leave less room than that. */
        if (!cap_address_space((size_t)24 << 20)) _exit(3);
        cnn_status st = cnn_safetensors_save(s.path, d);
        _exit(st == CNN_ERR_OUT_OF_MEMORY && strstr(cnn_last_error(), "out of host memory") ? 0
                                                                                           : 1);
    }
    CHECK(cnn_test_child_ok(pid));
    CHECK(scratch_count(&s) == 0);
    cnn_dict_destroy(&d);
    scratch_close(&s);
}

/* Loading a file whose tensor does not fit in memory says so, naming the file and the tensor
 * (it once said only "tensor_empty: out of host memory"). Under a capped address space, as
 * above; skipped where address_space_can_be_capped says so. */
TEST(safetensors_load_out_of_memory_names_the_file_and_tensor)
{
    if (!address_space_can_be_capped()) return;
    scratch s;
    REQUIRE(scratch_open(&s));
    cnn_dict *d = NULL;
    cnn_tensor *t = NULL;
    CHECK_OK(cnn_dict_create(&d));
    CHECK_OK(cnn_tensor_full(CNN_SHAPE((int64_t)24 << 20), 0.5f, CNN_CPU, &t)); /* 96 MiB */
    CHECK_OK(cnn_dict_set(d, "layer4.0.conv2.weight", t));
    cnn_tensor_free(&t);
    CHECK_OK(cnn_safetensors_save(s.path, d));
    cnn_dict_destroy(&d);
    cnn_cpu_empty_cache(); /* else the load reuses the saved tensor's cached block */
    int pid = cnn_test_fork(20);
    REQUIRE(pid >= 0);
    if (pid == 0) {
        if (!cap_address_space((size_t)16 << 20)) _exit(3);
        cnn_dict *got = NULL;
        cnn_status st = cnn_safetensors_load(s.path, &got);
        const char *msg = cnn_last_error();
        bool ok = st == CNN_ERR_OUT_OF_MEMORY && !got && strstr(msg, s.path) &&
                  strstr(msg, "layer4.0.conv2.weight") && strstr(msg, "out of host memory");
        if (!ok) fprintf(stderr, "    status %d, message: %s\n", (int)st, msg);
        _exit(ok ? 0 : 1);
    }
    CHECK(cnn_test_child_ok(pid));
    scratch_close(&s);
}

/* A host allocation that fails while the cache holds blocks empties the cache and tries again
 * (core/alloc_cpu.c): in a child with its address space capped, a 100 MiB tensor fits only once
 * a cached 160 MiB block (too large to be taken for it: more than 25% larger) is given back. */
TEST(cpu_allocation_empties_the_cache_when_memory_runs_out)
{
    if (!address_space_can_be_capped()) return;
    cnn_cpu_empty_cache();
    cnn_tensor *big = NULL;
    CHECK_OK(cnn_tensor_empty(CNN_SHAPE((int64_t)40 << 20), CNN_F32, CNN_CPU, &big));
    cnn_tensor_free(&big); /* its 160 MiB block stays in the cache */
    int pid = cnn_test_fork(20);
    REQUIRE(pid >= 0);
    if (pid == 0) {
        if (!cap_address_space((size_t)32 << 20)) _exit(3);
        cnn_tensor *t = NULL;
        cnn_status st = cnn_tensor_empty(CNN_SHAPE((int64_t)25 << 20), CNN_F32, CNN_CPU, &t);
        if (st != CNN_OK) fprintf(stderr, "    %s\n", cnn_last_error());
        _exit(st == CNN_OK ? 0 : 1);
    }
    CHECK(cnn_test_child_ok(pid));
    cnn_cpu_empty_cache();
}

/* A path that names a FIFO (or another non-regular file) is refused at once: opening a FIFO
 * for reading would otherwise wait for a writer forever. */
TEST(safetensors_load_refuses_a_fifo_without_waiting)
{
    scratch s;
    REQUIRE(scratch_open(&s));
    REQUIRE(mkfifo(s.path, 0600) == 0);
    int pid = cnn_test_fork(10);
    REQUIRE(pid >= 0);
    if (pid == 0) {
        cnn_dict *d = NULL;
        cnn_status st = cnn_safetensors_load(s.path, &d);
        _exit(st == CNN_ERR_IO && d == NULL && strstr(cnn_last_error(), "not a regular file")
                  ? 0
                  : 1);
    }
    CHECK(cnn_test_child_ok(pid));
    scratch_close(&s);
}

/* Saving over a symbolic link writes its target, as open() would (the rename used to replace
 * the link with a file of its own, leaving the target as it was), and a file's permissions
 * stay (a checkpoint made private used to become readable by all at the next save). A link
 * to nothing is refused, naming the path. */
TEST(safetensors_save_writes_through_links_and_keeps_permissions)
{
    scratch s;
    REQUIRE(scratch_open(&s));
    char link[192], dangling[192];
    snprintf(link, sizeof link, "%s/link.safetensors", s.dir);
    snprintf(dangling, sizeof dangling, "%s/dangling.safetensors", s.dir);
    cnn_dict *d = NULL, *back = NULL;
    cnn_tensor *t = NULL;
    CHECK_OK(cnn_dict_create(&d));
    CHECK_OK(cnn_tensor_full(CNN_SHAPE(2), 1.0f, CNN_CPU, &t));
    REQUIRE(d && t);
    CHECK_OK(cnn_dict_set(d, "w", t));
    CHECK_OK(cnn_safetensors_save(s.path, d));
    REQUIRE(chmod(s.path, 0600) == 0);
    REQUIRE(symlink("ckpt.safetensors", link) == 0);
    CHECK_OK(cnn_tensor_fill_(t, 2.0f));
    CHECK_OK(cnn_safetensors_save(link, d));
    struct stat sb;
    CHECK(lstat(link, &sb) == 0 && S_ISLNK(sb.st_mode));
    CHECK(lstat(s.path, &sb) == 0 && S_ISREG(sb.st_mode) && (sb.st_mode & 07777) == 0600);
    CHECK_OK(cnn_safetensors_load(s.path, &back));
    float v[2] = {0, 0};
    if (back) CHECK_OK(cnn_tensor_read(cnn_dict_get(back, "w"), v, 2));
    CHECK(v[0] == 2.0f && v[1] == 2.0f);
    cnn_dict_destroy(&back);
    REQUIRE(symlink("missing/x.safetensors", dangling) == 0);
    CHECK_ERR(cnn_safetensors_save(dangling, d), CNN_ERR_IO);
    CHECK(strstr(cnn_last_error(), dangling) && strstr(cnn_last_error(), "symbolic link"));
    CHECK(scratch_count(&s) == 3); /* the file and the two links: no temporary file left */
    cnn_tensor_free(&t);
    cnn_dict_destroy(&d);
    scratch_close(&s);
}
