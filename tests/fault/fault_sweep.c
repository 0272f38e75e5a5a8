/* fault_sweep.c — makes one of the library's calls fail, for every k the k-th, in the
 * scenarios of scenarios.c, and checks each outcome. Two kinds of failure:
 *   alloc  the k-th heap allocation (malloc, calloc, realloc, aligned_alloc, strdup, strndup,
 *          and pthread_create, whose thread needs a stack): the host ran out of memory;
 *   io     the k-th file-system call: the disk is full or failing ("/io": open refused,
 *          read and write errors, ENOSPC, a failed fsync, rename or readdir), or the process is
 *          out of file descriptors or memory for a stream ("/io-limits": EMFILE, ENOMEM).
 * What a library owes its user then:
 *   - no crash, no abort, no hang, no file descriptor or memory leaked (LeakSanitizer, when
 *     built with DEBUG=1);
 *   - the call returns the status that names the cause (CNN_ERR_OUT_OF_MEMORY saying memory ran
 *     out; CNN_ERR_IO with the system's reason, e.g. "No space left on device"), never a
 *     misleading one ("corrupt file", "bad image");
 *   - a failure the library absorbs (a retry, an optional cache) leaves the result unchanged;
 *     a file the disk cannot read may be listed as a bad sample with that reason, but a good
 *     file that the process could not open (out of memory or descriptors) must not be;
 *   - what the API promises to leave untouched on failure is untouched (parameters after
 *     cnn_optim_step, a model after cnn_model_load, an old checkpoint after a save);
 *   - the same scenario run again without a failure gives the first run's result bit for bit.
 * Built by `make check-alloc-failures` / `make check-io-failures` with -Wl,--wrap for those
 * functions, so that only the library's own calls (and this program's) go through the counters
 * below; OpenMP, OpenBLAS, zlib and libc inside themselves call the real ones. Not part of
 * run_tests: the wrapping needs its own link. In a CUDA build (the emulator's too) the scenarios
 * run again with everything on cuda:0, so the library's host code for the GPU fails too; on the
 * emulator, which counts the GPU's allocations, alloc runs twice more with those failing
 * instead. Prints "N passed, N failed" as the suite does. */
#include "scenarios.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

/* ---- the counters: only calls of the kind swept, made while armed, count; the k-th fails -- */
enum { KIND_ALLOC, KIND_IO, KIND_IO_LIMITS };
static int g_kind;
static atomic_long g_count, g_fail_at;
static atomic_int g_armed, g_failed, g_errno; /* g_errno: the reason given for the failure */

static const char *_Atomic g_call; /* the name of the call failed */

static int fail_call(const char *call, int kind, int err)
{
    if (kind != g_kind || !atomic_load(&g_armed)) return 0;
    long c = atomic_fetch_add(&g_count, 1) + 1;
    if (c != atomic_load(&g_fail_at)) return 0;
    atomic_store(&g_call, call);
    atomic_store(&g_errno, err);
    atomic_store(&g_failed, 1);
    errno = err;
    return 1;
}

static atomic_int g_paused;
void fault_pause(void) { atomic_store(&g_paused, atomic_exchange(&g_armed, 0)); }
void fault_resume(void) { atomic_store(&g_armed, atomic_load(&g_paused)); }

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t m);
void *__real_realloc(void *p, size_t n);
void *__real_aligned_alloc(size_t a, size_t n);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);
#define fail_now(kind, err) fail_call(__func__ + 7, kind, err) /* "__wrap_" */
#define ALLOC_FAILS() fail_now(KIND_ALLOC, ENOMEM)
void *__wrap_malloc(size_t n) { return ALLOC_FAILS() ? NULL : __real_malloc(n); }
void *__wrap_calloc(size_t n, size_t m) { return ALLOC_FAILS() ? NULL : __real_calloc(n, m); }
void *__wrap_realloc(void *p, size_t n) { return ALLOC_FAILS() ? NULL : __real_realloc(p, n); }
void *__wrap_aligned_alloc(size_t a, size_t n)
{
    return ALLOC_FAILS() ? NULL : __real_aligned_alloc(a, n);
}
char *__wrap_strdup(const char *s) { return ALLOC_FAILS() ? NULL : __real_strdup(s); }
char *__wrap_strndup(const char *s, size_t n)
{
    return ALLOC_FAILS() ? NULL : __real_strndup(s, n);
}
/* A thread's stack is an allocation too: pthread_create fails with EAGAIN when it cannot have
 * one. */
int __real_pthread_create(pthread_t *t, const pthread_attr_t *a, void *(*f)(void *), void *arg);
int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *a, void *(*f)(void *), void *arg)
{
    return ALLOC_FAILS() ? EAGAIN : __real_pthread_create(t, a, f, arg);
}

/* The file-system calls the library makes, each failing as a full or failing disk makes it
 * (KIND_IO) or, for those that take a descriptor or memory, as a process out of them does
 * (KIND_IO_LIMITS). A stream whose read or write was failed keeps reporting ferror, as a real
 * one does. */
int __real_open(const char *path, int flags, ...);
FILE *__real_fdopen(int fd, const char *mode);
size_t __real_fread(void *p, size_t size, size_t n, FILE *f);
size_t __real_fwrite(const void *p, size_t size, size_t n, FILE *f);
int __real_fflush(FILE *f);
int __real_fsync(int fd);
int __real_fclose(FILE *f);
int __real_ferror(FILE *f);
int __real_fseeko(FILE *f, off_t off, int whence);
int __real_fstat(int fd, struct stat *sb);
int __real_stat(const char *path, struct stat *sb);
int __real_rename(const char *from, const char *to);
DIR *__real_opendir(const char *path);
struct dirent *__real_readdir(DIR *d);
gzFile __real_gzdopen(int fd, const char *mode);
int __real_gzread(gzFile f, void *buf, unsigned n);

/* The stream whose read or write was failed (a run fails one call, so one stream at most),
 * until it is closed. */
static FILE *_Atomic g_failed_stream;

int __wrap_open(const char *path, int flags, ...)
{
    mode_t mode = 0;
    if (flags & O_CREAT) {
        va_list ap;
        va_start(ap, flags);
        mode = (mode_t)va_arg(ap, int);
        va_end(ap);
    }
    if (fail_now(KIND_IO, (flags & O_CREAT) ? ENOSPC : EACCES) ||
        fail_now(KIND_IO_LIMITS, EMFILE))
        return -1;
    return __real_open(path, flags, mode);
}
FILE *__wrap_fdopen(int fd, const char *mode)
{
    return fail_now(KIND_IO_LIMITS, ENOMEM) ? NULL : __real_fdopen(fd, mode);
}
size_t __wrap_fread(void *p, size_t size, size_t n, FILE *f)
{
    if (!fail_now(KIND_IO, EIO)) return __real_fread(p, size, n, f);
    atomic_store(&g_failed_stream, f);
    return 0;
}
size_t __wrap_fwrite(const void *p, size_t size, size_t n, FILE *f)
{
    if (!fail_now(KIND_IO, ENOSPC)) return __real_fwrite(p, size, n, f);
    atomic_store(&g_failed_stream, f);
    return 0;
}
int __wrap_ferror(FILE *f) { return f == atomic_load(&g_failed_stream) || __real_ferror(f); }
int __wrap_fflush(FILE *f) { return fail_now(KIND_IO, ENOSPC) ? EOF : __real_fflush(f); }
int __wrap_fsync(int fd) { return fail_now(KIND_IO, EIO) ? -1 : __real_fsync(fd); }
/* The stream is closed either way, as fclose does when its final flush fails. */
int __wrap_fclose(FILE *f)
{
    FILE *was = f;
    atomic_compare_exchange_strong(&g_failed_stream, &was, NULL);
    int rc = __real_fclose(f);
    return fail_now(KIND_IO, ENOSPC) ? EOF : rc;
}
int __wrap_fseeko(FILE *f, off_t off, int whence)
{
    return fail_now(KIND_IO, EIO) ? -1 : __real_fseeko(f, off, whence);
}
int __wrap_fstat(int fd, struct stat *sb)
{
    return fail_now(KIND_IO, EIO) ? -1 : __real_fstat(fd, sb);
}
int __wrap_stat(const char *path, struct stat *sb)
{
    return fail_now(KIND_IO, EIO) ? -1 : __real_stat(path, sb);
}
int __wrap_rename(const char *from, const char *to)
{
    return fail_now(KIND_IO, EIO) ? -1 : __real_rename(from, to);
}
DIR *__wrap_opendir(const char *path)
{
    if (fail_now(KIND_IO, EACCES) || fail_now(KIND_IO_LIMITS, EMFILE)) return NULL;
    return __real_opendir(path);
}
struct dirent *__wrap_readdir(DIR *d) { return fail_now(KIND_IO, EIO) ? NULL : __real_readdir(d); }
gzFile __wrap_gzdopen(int fd, const char *mode)
{
    return fail_now(KIND_IO_LIMITS, ENOMEM) ? NULL : __real_gzdopen(fd, mode);
}
/* zlib's read error: -1, with errno set (gzerror then says Z_ERRNO for a real one). */
int __wrap_gzread(gzFile f, void *buf, unsigned n)
{
    return fail_now(KIND_IO, EIO) ? -1 : __real_gzread(f, buf, n);
}

/* LeakSanitizer's on-demand check, present in ASan builds (DEBUG=1) only. */
int __lsan_do_recoverable_leak_check(void) __attribute__((weak));
/* The CUDA emulator's count of device, pinned and handle allocations (CUDA_EMU=1 builds only),
 * whose CNN_EMU_FAIL_MALLOC=N,K fails the N-th and the K-1 after it: out of GPU memory from the
 * k-th allocation of a run on. */
long cnn_emu_alloc_count(void) __attribute__((weak));
/* The sweep fails GPU allocations, not the host's: 1 the k-th and every one after it (a full
 * GPU), 2 the k-th only (the allocator's retry after emptying its cache must absorb it). */
static int g_fail_device;

/* ---- the sweep ----------------------------------------------------------------------------- */
static int g_passed, g_failed_count;

/* The bytes live tensors hold on cuda:0 (0 for a CPU pass). */
static size_t device_allocated(void)
{
    cnn_cuda_memory_stats ms = {0};
    if (g_dev.type != CNN_DEVICE_CUDA || cnn_cuda_get_memory_stats(0, &ms) != CNN_OK) return 0;
    return ms.allocated_bytes;
}

/* The process's open file descriptors. */
static int open_fds(void)
{
    DIR *d = __real_opendir("/proc/self/fd");
    int n = 0;
    if (!d) return -1;
    while (__real_readdir(d)) n++;
    closedir(d);
    return n;
}

/* One run of a scenario with call fail_at failing (0: none): the host's fail_at-th of the kind
 * swept, or the GPU's (g_fail_device). *count: the calls of the kind the run made. */
static cnn_status run_armed(scenario_fn fn, long fail_at, double *sum, long *count)
{
    cnn_cpu_empty_cache(); /* every run starts from the same cold caches */
    if (g_dev.type == CNN_DEVICE_CUDA) (void)cnn_cuda_empty_cache();
    g_broken[0] = 0;
    g_extra_bad[0] = 0;
    size_t live = device_allocated();
    int fds = open_fds();
    long base = g_fail_device ? cnn_emu_alloc_count() : 0;
    char spec[64];
    snprintf(spec, sizeof spec, "%ld,%ld", base + fail_at, g_fail_device == 1 ? 1L << 40 : 1);
    if (g_fail_device && fail_at) setenv("CNN_EMU_FAIL_MALLOC", spec, 1);
    atomic_store(&g_count, 0);
    atomic_store(&g_failed, 0);
    atomic_store(&g_call, NULL);
    atomic_store(&g_failed_stream, NULL);
    atomic_store(&g_fail_at, g_fail_device ? 0 : fail_at);
    atomic_store(&g_armed, 1);
    cnn_status st = fn(sum);
    atomic_store(&g_armed, 0);
    if (g_fail_device) {
        unsetenv("CNN_EMU_FAIL_MALLOC");
        long made = cnn_emu_alloc_count() - base;
        atomic_store(&g_failed, fail_at > 0 && made >= fail_at);
        atomic_store(&g_call, "a GPU allocation");
        atomic_store(&g_count, made);
    }
    if (count) *count = atomic_load(&g_count);
    if (device_allocated() != live)
        broken("tensors of %zu bytes are left on cuda:0 after the run",
               device_allocated() - live);
    if (open_fds() != fds) broken("%d file descriptors are left open", open_fds() - fds);
    return st;
}

/* Whether an error's status and message name the failure planted: out of memory, or the
 * system's reason for the failed file-system call. */
int fault_names_the_cause(cnn_status s, const char *msg)
{
    int err = atomic_load(&g_errno);
    if (g_kind == KIND_ALLOC || g_fail_device || err == ENOMEM)
        return s == CNN_ERR_OUT_OF_MEMORY && strcasestr(msg, "memory") != NULL;
    return s == CNN_ERR_IO && strstr(msg, strerror(err)) != NULL;
}

/* Whether the bad files listed besides the planted one are allowed: only for a file-system
 * failure that is the file's (it could not be read), and only with that reason. */
static int extra_bad_allowed(void)
{
    if (!g_extra_bad[0]) return 1;
    if (g_kind != KIND_IO || !atomic_load(&g_failed)) return 0;
    const char *why = strerror(atomic_load(&g_errno));
    for (const char *line = g_extra_bad; *line;) {
        const char *end = strchr(line, '\n');
        char one[512];
        snprintf(one, sizeof one, "%.*s", (int)(end - line), line);
        if (!strstr(one, why)) return 0;
        line = end + 1;
    }
    return 1;
}

/* Fails call k for every k the clean run makes (every `stride`-th beyond the first 400 when
 * there are many; at most `tries` values of k spread over them, for a slow scenario), and
 * checks each outcome. */
static void sweep(const char *name, scenario_fn fn, int tries)
{
    double ref = NAN;
    long n = 0;
    /* A first run makes what a context keeps once made (handles, lazily allocated buffers);
     * the second is the reference. */
    cnn_status st = run_armed(fn, 0, &ref, &n);
    if (st == CNN_OK) st = run_armed(fn, 0, &ref, &n);
    if (st != CNN_OK || g_broken[0] || g_extra_bad[0]) {
        printf("FAIL %s: the run without failures: %s %s %s\n", name,
               st ? cnn_last_error() : "", g_broken, g_extra_bad);
        g_failed_count++;
        return;
    }
    long stride = n > 400 ? 1 + (n - 400) / 400 : 1, first = 400;
    if (tries) {
        first = 0;
        stride = n > tries ? n / tries : 1;
    }
    int problems = 0, absorbed = 0, listed = 0, tried = 0;
    for (long k = 1; k <= n && problems < 5; k += (k < first ? 1 : stride)) {
        double sum = NAN;
        cnn_status s = run_armed(fn, k, &sum, NULL);
        tried++;
        int hit = atomic_load(&g_failed);
        char what[2600] = "";
        if (g_broken[0]) {
            snprintf(what, sizeof what, "%s", g_broken);
        } else if (!extra_bad_allowed()) {
            snprintf(what, sizeof what, "a file was listed as bad for a reason not its own:\n%s",
                     g_extra_bad);
        } else if (s == CNN_OK && hit && sum != ref && !g_extra_bad[0]) {
            snprintf(what, sizeof what, "the failure was absorbed but the result changed");
        } else if (s != CNN_OK && !hit) {
            snprintf(what, sizeof what, "an error without a call failing: %s", cnn_last_error());
        } else if (s != CNN_OK && !fault_names_the_cause(s, cnn_last_error())) {
            snprintf(what, sizeof what, "%s \"%s\" does not name the cause (%s)",
                     cnn_status_name(s), cnn_last_error(),
                     g_kind == KIND_ALLOC ? "out of memory" : strerror(atomic_load(&g_errno)));
        }
        absorbed += s == CNN_OK && hit && !g_extra_bad[0];
        listed += s == CNN_OK && hit && g_extra_bad[0];
        if (!what[0] && __lsan_do_recoverable_leak_check && __lsan_do_recoverable_leak_check())
            snprintf(what, sizeof what, "memory leaked (LeakSanitizer's report above)");
        if (!what[0]) {
            double again = NAN;
            cnn_status s2 = run_armed(fn, 0, &again, NULL);
            if (s2 != CNN_OK)
                snprintf(what, sizeof what, "the run after it failed: %s", cnn_last_error());
            else if (again != ref)
                snprintf(what, sizeof what, "the run after it gave another result (%.9g, not %.9g)",
                         again, ref);
        }
        if (what[0]) {
            printf("  %s, call %ld of %ld (%s) failed: %s\n", name, k, n,
                   atomic_load(&g_call) ? atomic_load(&g_call) : "?", what);
            problems++;
        }
    }
    if (problems) {
        printf("FAIL %s (%d problems shown)\n", name, problems);
        g_failed_count++;
    } else {
        printf("ok   %s: %ld %s, %d failed one at a time (%d absorbed", name, n,
               g_kind == KIND_ALLOC ? "allocations" : "file-system calls", tried, absorbed);
        if (listed) printf(", %d skipped as a bad file", listed);
        printf(")\n");
        g_passed++;
    }
    fflush(stdout);
}

static int usage(void)
{
    fprintf(stderr, "usage: fault_sweep alloc|io [NAME...]   sweep the scenarios whose names "
            "contain a NAME (all without one)\n"
            "       fault_sweep alloc|io --at K NAME    one run with call K failing\n");
    return 2;
}

int main(int argc, char **argv)
{
    if (argc < 2 || (strcmp(argv[1], "alloc") && strcmp(argv[1], "io"))) return usage();
    const bool io = !strcmp(argv[1], "io");
    argc--;
    argv++;
    /* One thread: the k-th call is then the same one in every run. */
    omp_set_num_threads(1);
    snprintf(g_dir, sizeof g_dir, "/tmp/cnn-faults-XXXXXX");
    if (!mkdtemp(g_dir) || !setup_files()) {
        fprintf(stderr, "fault_sweep: cannot write the scratch files under /tmp\n");
        return 2;
    }
    static const struct {
        const char *name;
        scenario_fn fn;
        int tries;     /* 0: every call (sampled past the first 400) */
        bool cpu_only; /* too slow for the CUDA emulator (about 30 s a run under ASan) */
        bool files;    /* reads or writes files: swept for io */
    } all[] = {{"ops_step", ops_step, 0, false, false},
               {"model_io", model_io, 0, false, true},
               {"resnet", resnet, 60, true, false},
               {"idx_data", idx_data, 0, false, true},
               {"folder_data", folder_data, 0, false, true},
               {"folder_data_threads", folder_data_threads, 0, false, true},
               {"folder_data_retry", folder_data_retry, 0, false, true}};
    /* Every scenario on the CPU, then on cuda:0 if there is one (on the CUDA emulator too: the
     * library's host code for the GPU is what fails there). */
    int n_dev = cnn_cuda_device_count() > 0 ? 2 : 1;
    cnn_context *gpu = NULL;
    if (n_dev == 2 && cnn_context_create(CNN_CUDA(0), &gpu) != CNN_OK) {
        fprintf(stderr, "fault_sweep: cuda:0: %s\n", cnn_last_error());
        return 2;
    }
    /* Deterministic algorithms only, so that a run gives the same bits every time: cuDNN's
     * others (atomics) need not. */
    cnn_context_set_current(gpu);
    if (gpu) cnn_set_deterministic(true);
    /* --at K NAME: one run with call K failing, and what it returned (to look into a problem
     * the sweep showed). */
    bool at = argc == 4 && !strcmp(argv[1], "--at");
    if (!at && !__lsan_do_recoverable_leak_check)
        printf("(not an ASan build: leaks are not checked; build with DEBUG=1 for that)\n");
    int found = 0;
    /* Passes, alloc: the CPU; cuda:0 with host allocations failing; cuda:0 with the GPU's
     * failing, from the k-th on and the k-th alone (the emulator's only: it can count them).
     * io: the CPU and cuda:0, each with the disk failing, then with the process's limits. */
    static const struct {
        const char *suffix;
        int kind, on_gpu, fail_device;
    } passes[2][4] = {{{"", KIND_ALLOC, 0, 0},
                       {"@cuda:0", KIND_ALLOC, 1, 0},
                       {"@cuda:0/gpu-full", KIND_ALLOC, 1, 1},
                       {"@cuda:0/gpu-once", KIND_ALLOC, 1, 2}},
                      {{"/io", KIND_IO, 0, 0},
                       {"/io-limits", KIND_IO_LIMITS, 0, 0},
                       {"@cuda:0/io", KIND_IO, 1, 0},
                       {"@cuda:0/io-limits", KIND_IO_LIMITS, 1, 0}}};
    int n_pass = n_dev == 1 ? (io ? 2 : 1) : io || cnn_emu_alloc_count ? 4 : 2;
    for (int pass = 0; pass < n_pass; pass++) {
        const int dv = passes[io][pass].on_gpu;
        g_kind = passes[io][pass].kind;
        g_dev = dv ? CNN_CUDA(0) : CNN_CPU;
        g_fail_device = passes[io][pass].fail_device;
        cnn_context_set_current(dv ? gpu : NULL);
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
            if ((dv && all[i].cpu_only) || (io && !all[i].files)) continue;
            char name[64];
            snprintf(name, sizeof name, "%s%s", all[i].name, passes[io][pass].suffix);
            if (at) {
                if (strcmp(name, argv[3])) continue;
                found = 1;
                double sum = NAN; /* first a clean run, as the sweep makes */
                cnn_status st = run_armed(all[i].fn, 0, &sum, NULL);
                if (st == CNN_OK) st = run_armed(all[i].fn, atol(argv[2]), &sum, NULL);
                printf("%s with call %s (%s) failing: %s \"%s\", result %.9g%s%s%s%s\n", name,
                       argv[2], atomic_load(&g_call) ? atomic_load(&g_call) : "none",
                       cnn_status_name(st), st ? cnn_last_error() : "", sum,
                       g_broken[0] ? "; " : "", g_broken, g_extra_bad[0] ? "; listed bad:\n" : "",
                       g_extra_bad);
                continue;
            }
            int chosen = argc < 2;
            for (int a = 1; a < argc; a++) chosen |= strstr(name, argv[a]) != NULL;
            if (chosen) sweep(name, all[i].fn, all[i].tries);
            found |= chosen;
        }
    }
    cnn_context_set_current(NULL);
    cnn_context_destroy(&gpu);
    if (!found) fprintf(stderr, "fault_sweep: no scenario's name is or contains '%s'\n",
                        argv[at ? 3 : 1]);
    char cmd[96];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "fault_sweep: could not remove %s\n", g_dir);
    if (at || !found) return found ? 0 : 2;
    printf("%d passed, %d failed\n", g_passed, g_failed_count);
    return g_failed_count ? 1 : 0;
}
