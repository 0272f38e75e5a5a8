/* emu_launch.cpp — how the CUDA emulator runs a kernel: checks the launch as an H100 would
 * (block and grid limits, shared memory, pointer arguments), then runs the grid block by block.
 * A block's threads run one after another on a fiber; a thread that waits at __syncthreads or
 * a warp shuffle keeps its fiber and the next thread starts on a new one, so barriers are real
 * and barrier-free kernels cost one call per thread. Launches are serialised process-wide.
 * Test infrastructure: it may print. */
#include "emu_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

#include <map>
#include <mutex>
#include <string>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define EMU_ASAN 1
#else
#define EMU_ASAN 0
#endif
/* Under ThreadSanitizer each fiber is a TSan fiber too: TSan keeps a call stack per thread, and
 * switching stacks behind its back corrupts it (a SEGV inside TSan, or a hang). */
#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
#define EMU_TSAN 1
#else
#define EMU_TSAN 0
#endif

#if !defined(__x86_64__)
#error "the CUDA emulator's fiber switch is written for x86-64"
#endif

uint3 threadIdx, blockIdx;
dim3 blockDim, gridDim;

/* Saves the callee-saved registers on the current stack, stores its pointer in *save and
 * continues on the stack new_sp (as left by an earlier switch, or by make_fiber). */
extern "C" void cnn_emu_switch(void **save, void *new_sp);
asm(R"(
    .text
    .globl cnn_emu_switch
    .hidden cnn_emu_switch
    .type cnn_emu_switch, @function
cnn_emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size cnn_emu_switch, .-cnn_emu_switch
)");

namespace cnn_emu {
namespace {

/* H100 (sm_90) limits. */
constexpr unsigned MAX_THREADS = 1024, MAX_BLOCK_Z = 64, MAX_GRID_YZ = 65535;
constexpr unsigned long long MAX_GRID_X = 2147483647ull;
constexpr size_t STATIC_SMEM_MAX = 48 << 10, DYN_SMEM_DEFAULT = 48 << 10;
constexpr size_t SMEM_OPTIN_MAX = 227 << 10;
/* Kernels here keep a few hundred bytes of locals; sanitizers make frames much larger. */
constexpr size_t STACK_BYTES = EMU_ASAN ? 256 << 10 : 64 << 10, GUARD = 4096;

enum thread_state { NOT_STARTED, RUNNING, READY, BAR_WAIT, WARP_WAIT, DONE };

/* One CUDA thread of the running block. */
struct fiber {
    void *sp;    /* where its fiber stopped, while it waits */
    char *stack; /* that fiber's stack (lowest usable byte; a guard page lies below) */
    thread_state state;
    unsigned gen; /* block barrier generation it waits to pass */
    uint3 tid;
    unsigned wmask; /* warp exchange in progress: its mask, value and where to deliver */
    uint64_t wval;
    uint64_t *wout;
};

struct run_state {
    std::mutex lock;
    char *pool = nullptr;
    size_t pool_fibers = 0;
    std::vector<fiber> fibers;
    void *main_sp = nullptr;
    int cur = -1, live = 0, arrived = 0, nthreads = 0;
    int next = 0;                /* threads of the block started so far */
    /* CNN_EMU_ORDER=reverse: threads start and resume last first, and blocks run last first, so
     * that a test run both ways shows a missing barrier whose effect depends on which thread
     * runs first, or a block writing where another block writes. */
    bool reverse = getenv("CNN_EMU_ORDER") && !strcmp(getenv("CNN_EMU_ORDER"), "reverse");
    char *new_stack = nullptr;   /* the stack of the fiber being started */
    void *exit_sp = nullptr;     /* where a finished fiber's last stack pointer goes */
    unsigned gen = 0;
    unsigned warp_arrived[MAX_THREADS / 32];
    void (*run)(void *) = nullptr;
    void *closure = nullptr;
    const launch_cfg *cfg = nullptr;
    bool failed = false;         /* an error was found in this launch */
    bool divergence_said = false;
    std::vector<std::pair<void *, size_t>> shared; /* this launch's __shared__ arrays */
    size_t static_smem = 0;
    std::vector<unsigned char> dyn_smem;
    std::map<std::string, std::pair<long, double>> profile;
#if EMU_ASAN
    const void *main_bottom = nullptr;
    size_t main_size = 0;
#endif
#if EMU_TSAN
    void *tsan_main = nullptr;           /* the launching thread's own TSan context */
    std::vector<void *> tsan_fibers;     /* per pool stack, for the running block */
#endif
};

run_state &S()
{
    static run_state *s = new run_state; /* never destroyed: used from atexit */
    return *s;
}

uint3 coords(unsigned t, dim3 d)
{
    return uint3{t % d.x, t / d.x % d.y, t / (d.x * d.y)};
}

void fail(cudaError_t e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void fail(cudaError_t e, const char *fmt, ...)
{
    run_state &s = S();
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* The first error of a launch says enough; the rest would repeat it for every thread. */
    if (s.failed) {
        set_error(e);
        return;
    }
    s.failed = true;
    if (s.cur >= 0)
        report(e, "kernel %s, block (%u,%u,%u), thread (%u,%u,%u): %s", s.cfg->name, blockIdx.x,
               blockIdx.y, blockIdx.z, threadIdx.x, threadIdx.y, threadIdx.z, msg);
    else
        report(e, "kernel %s: %s", s.cfg ? s.cfg->name : "?", msg);
}

/* ---- fibers ------------------------------------------------------------------------------ */
void switch_to(void **save, void *to_sp, const void *to_bottom, size_t to_size)
{
#if EMU_ASAN
    void *fake = nullptr;
    __sanitizer_start_switch_fiber(&fake, to_bottom, to_size);
    cnn_emu_switch(save, to_sp);
    __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#else
    (void)to_size;
#if EMU_TSAN
    run_state &s = S();
    __tsan_switch_to_fiber(to_bottom ? s.tsan_fibers[((const char *)to_bottom - s.pool) /
                                                     (STACK_BYTES + GUARD)]
                                     : s.tsan_main,
                           0);
#else
    (void)to_bottom;
#endif
    cnn_emu_switch(save, to_sp);
#endif
}

/* Back to the scheduler; returns when the scheduler resumes this thread. */
void yield()
{
    run_state &s = S();
#if EMU_ASAN
    switch_to(&s.fibers[s.cur].sp, s.main_sp, s.main_bottom, s.main_size);
#else
    switch_to(&s.fibers[s.cur].sp, s.main_sp, nullptr, 0);
#endif
}

void thread_exit();

/* A fiber runs the block's threads not started yet, one after another, until one of them
 * waits (its fiber waits with it) or none is left. */
[[noreturn]] void fiber_entry()
{
    run_state &s = S();
#if EMU_ASAN
    __sanitizer_finish_switch_fiber(nullptr, &s.main_bottom, &s.main_size);
#endif
    char *stack = s.new_stack;
    while (s.next < s.nthreads) {
        const int t = s.reverse ? s.nthreads - 1 - s.next++ : s.next++;
        fiber &f = s.fibers[t];
        f.stack = stack;
        f.state = RUNNING;
        s.cur = t;
        threadIdx = f.tid;
        s.run(s.closure);
        thread_exit();
    }
#if EMU_ASAN
    __sanitizer_start_switch_fiber(nullptr, s.main_bottom, s.main_size);
#endif
#if EMU_TSAN
    __tsan_switch_to_fiber(s.tsan_main, 0);
#endif
    cnn_emu_switch(&s.exit_sp, s.main_sp);
    __builtin_unreachable();
}

/* A stack that starts in fiber_entry on its first switch: six zero registers for the switch
 * to pop, then fiber_entry as the return address, 16-byte aligned as at a call. */
void *make_fiber(char *stack)
{
    uintptr_t top = ((uintptr_t)stack + STACK_BYTES) & ~(uintptr_t)15;
    void **sp = (void **)(top - 64);
    for (int i = 0; i < 6; i++) sp[i] = nullptr;
    sp[6] = (void *)&fiber_entry;
    sp[7] = nullptr;
    return sp;
}

bool ensure_pool(size_t n)
{
    run_state &s = S();
    if (s.pool_fibers >= n) return true;
    if (s.pool) munmap(s.pool, s.pool_fibers * (STACK_BYTES + GUARD));
    s.pool = (char *)mmap(nullptr, n * (STACK_BYTES + GUARD), PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (s.pool == MAP_FAILED) {
        s.pool = nullptr;
        s.pool_fibers = 0;
        return false;
    }
    for (size_t i = 0; i < n; i++) mprotect(s.pool + i * (STACK_BYTES + GUARD), GUARD, PROT_NONE);
    s.pool_fibers = n;
    return true;
}

/* ---- barriers ---------------------------------------------------------------------------- */
/* Completes the block barrier once every live thread waits at it. Threads that exited before a
 * __syncthreads the others reach make it undefined on the GPU: an error here. */
bool barrier_complete()
{
    run_state &s = S();
    if (s.arrived == 0 || s.arrived < s.live) return false;
    if (s.live < s.nthreads && !s.divergence_said) {
        s.divergence_said = true;
        fail(cudaErrorLaunchFailure, "__syncthreads reached by %d threads while %d of the "
             "block's %d had exited (divergent barrier)", s.live, s.nthreads - s.live,
             s.nthreads);
    }
    s.arrived = 0;
    s.gen++;
    return true;
}

void thread_exit()
{
    run_state &s = S();
    s.fibers[s.cur].state = DONE;
    s.live--;
    barrier_complete();
}

void run_block()
{
    run_state &s = S();
    const int n = s.nthreads;
    for (int i = 0; i < n; i++) {
        s.fibers[i].tid = coords((unsigned)i, blockDim);
        s.fibers[i].state = NOT_STARTED;
    }
    int stacks = 0; /* fibers started: each started at least one thread, so at most n */
#if EMU_TSAN
    s.tsan_main = __tsan_get_current_fiber();
    if (s.tsan_fibers.size() < s.pool_fibers) s.tsan_fibers.resize(s.pool_fibers);
    struct tsan_cleanup {
        int &stacks;
        ~tsan_cleanup()
        {
            for (int i = 0; i < stacks; i++) __tsan_destroy_fiber(S().tsan_fibers[(size_t)i]);
        }
    } tsan_cleanup_{stacks};
#endif
    s.next = 0;
    s.live = n;
    s.arrived = 0;
    memset(s.warp_arrived, 0, sizeof s.warp_arrived);
    s.divergence_said = false;
    for (auto &a : s.shared) memset(a.first, 0xFF, a.second);
    if (!s.dyn_smem.empty()) memset(s.dyn_smem.data(), 0xFF, s.dyn_smem.size());
    while (s.live > 0) {
        bool progress = false;
        for (int k = 0; k < n; k++) {
            const int i = s.reverse ? n - 1 - k : k;
            fiber &f = s.fibers[i];
            if (f.state == BAR_WAIT && f.gen != s.gen) f.state = READY;
            if (f.state != READY) continue;
            s.cur = i;
            threadIdx = f.tid;
            f.state = RUNNING;
            switch_to(&s.main_sp, f.sp, f.stack, STACK_BYTES);
            progress = true;
        }
        while (s.next < n) {
#if EMU_TSAN
            s.tsan_fibers[(size_t)stacks] = __tsan_create_fiber(0);
#endif
            s.new_stack = s.pool + (size_t)stacks++ * (STACK_BYTES + GUARD) + GUARD;
            switch_to(&s.main_sp, make_fiber(s.new_stack), s.new_stack, STACK_BYTES);
            progress = true;
        }
        if (!progress) {
            int bar = 0, warp = 0, first = -1;
            for (int i = 0; i < n; i++) {
                bar += s.fibers[i].state == BAR_WAIT;
                warp += s.fibers[i].state == WARP_WAIT;
                if (first < 0 && s.fibers[i].state == WARP_WAIT) first = i;
            }
            s.cur = -1;
            fail(cudaErrorLaunchFailure, "block (%u,%u,%u) deadlocks: %d threads wait at "
                 "__syncthreads, %d at a warp-synchronous call (first: thread %d, mask 0x%08x), "
                 "%d exited", blockIdx.x, blockIdx.y, blockIdx.z, bar, warp, first,
                 first >= 0 ? s.fibers[first].wmask : 0u, n - s.live);
#if EMU_ASAN
            /* The abandoned fibers' frames leave poisoned shadow behind on the stacks. */
            __asan_unpoison_memory_region(s.pool, s.pool_fibers * (STACK_BYTES + GUARD));
            for (size_t i = 0; i < s.pool_fibers; i++)
                __asan_poison_memory_region(s.pool + i * (STACK_BYTES + GUARD), GUARD);
#endif
            return;
        }
    }
    s.cur = -1;
}

/* The configuration checks of cudaLaunchKernel on an H100; false (with the error set) when
 * the launch would be refused. */
bool check_config(const launch_cfg &c)
{
    const dim3 g = c.grid, b = c.block;
    unsigned long long threads = (unsigned long long)b.x * b.y * b.z;
    if (!g.x || !g.y || !g.z || !b.x || !b.y || !b.z || threads > MAX_THREADS || b.x > 1024 ||
        b.y > 1024 || b.z > MAX_BLOCK_Z || g.x > MAX_GRID_X || g.y > MAX_GRID_YZ ||
        g.z > MAX_GRID_YZ) {
        fail(cudaErrorInvalidConfiguration, "grid (%u,%u,%u) x block (%u,%u,%u) is beyond the "
             "device's limits (block <= 1024 threads, z <= 64; grid y, z <= 65535; none 0)",
             g.x, g.y, g.z, b.x, b.y, b.z);
        return false;
    }
    if (c.smem > DYN_SMEM_DEFAULT) {
        fail(cudaErrorInvalidValue, "%zu bytes of dynamic shared memory need an opt-in "
             "(cudaFuncSetAttribute) above 48 KiB, which the emulator does not model", c.smem);
        return false;
    }
    return true;
}

} /* namespace */

void launch(const launch_cfg &cfg, void (*run)(void *), void *closure, const void *const *ptrs,
            int nptrs)
{
    run_state &s = S();
    std::lock_guard<std::mutex> hold(s.lock);
    s.cfg = &cfg;
    s.cur = -1;
    s.failed = false;
    if (!check_config(cfg)) return;
    /* A launch runs on its stream's device, which must be the current one (a graph's replay
     * runs its launches where they were captured). */
    const int dev = stream_device(cfg.stream);
    if (!replaying && dev != current_device()) {
        fail(cudaErrorInvalidResourceHandle, "launched on a stream of device %d while device %d "
             "is current", dev, current_device());
        return;
    }
    for (int i = 0; i < nptrs; i++) {
        if (ptrs[i] && memory_kind(ptrs[i], 0) == MEM_UNKNOWN) {
            fail(cudaErrorIllegalAddress, "pointer argument %d (%p) is neither device nor pinned "
                 "host memory", i + 1, ptrs[i]);
            return;
        }
        const int pd = ptrs[i] ? device_of(ptrs[i]) : -1;
        if (pd >= 0 && pd != dev) {
            fail(cudaErrorIllegalAddress, "pointer argument %d (%p) is memory of device %d; the "
                 "kernel runs on device %d (peer access is never enabled)", i + 1, ptrs[i], pd,
                 dev);
            return;
        }
    }
    if (no_compute()) {
        if (!checking_only) s.profile[cfg.name].first++; /* (not a lagging launch's checks) */
        s.cfg = nullptr;
        return;
    }
    const int n = (int)(cfg.block.x * cfg.block.y * cfg.block.z);
    if (!ensure_pool((size_t)n)) {
        fail(cudaErrorLaunchOutOfResources, "no memory for %d fiber stacks", n);
        return;
    }
    timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    s.fibers.assign((size_t)n, fiber{});
    s.nthreads = n;
    s.gen = 0;
    s.run = run;
    s.closure = closure;
    s.shared.clear();
    s.static_smem = 0;
    s.dyn_smem.assign(cfg.smem, 0);
    blockDim = cfg.block;
    gridDim = cfg.grid;
    bool dead = false;
    /* Blocks run one after another, in order; reversed too under CNN_EMU_ORDER=reverse, so that
     * a block's store into another block's part of an output (which a GPU's concurrent blocks
     * race on) is not always hidden by the owner rewriting it afterwards. */
    const dim3 g = cfg.grid;
    for (unsigned z = 0; z < g.z && !dead; z++)
        for (unsigned y = 0; y < g.y && !dead; y++)
            for (unsigned x = 0; x < g.x && !dead; x++) {
                blockIdx = s.reverse ? uint3{g.x - 1 - x, g.y - 1 - y, g.z - 1 - z}
                                     : uint3{x, y, z};
                run_block();
                dead = s.live > 0;
            }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    auto &p = s.profile[cfg.name];
    p.first++;
    p.second += (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    s.cfg = nullptr;
}

/* Seconds spent in each kernel, on stderr at exit when CNN_EMU_PROFILE is set. */
static void print_profile()
{
    for (auto &k : S().profile)
        fprintf(stderr, "cuda-emu profile: %-32s %8ld launches %9.3f s\n", k.first.c_str(),
                k.second.first, k.second.second);
}

static int register_profile = getenv("CNN_EMU_PROFILE") ? atexit(print_profile) : 0;

} /* namespace cnn_emu */

using cnn_emu::S;

void __syncthreads(void)
{
    auto &s = S();
    auto &f = s.fibers[s.cur];
    f.state = cnn_emu::BAR_WAIT;
    f.gen = s.gen;
    s.arrived++;
    if (cnn_emu::barrier_complete()) {
        f.state = cnn_emu::READY;
        return;
    }
    cnn_emu::yield();
}

unsigned cnn_emu_lane(void) { return (unsigned)S().cur % 32u; }

void cnn_emu_warp_exchange(unsigned mask, uint64_t mine, uint64_t all[32], const char *what)
{
    auto &s = S();
    const int me = s.cur, base = me / 32 * 32;
    const unsigned lane = (unsigned)me % 32u;
    auto &f = s.fibers[me];
    all[lane] = mine;
    if (!(mask >> lane & 1u)) {
        cnn_emu::fail(cudaErrorLaunchFailure, "%s with mask 0x%08x called by lane %u, which is "
                      "not in it", what, mask, lane);
        return;
    }
    if (base + 32 - __builtin_clz(mask) > s.nthreads) {
        cnn_emu::fail(cudaErrorLaunchFailure, "%s with mask 0x%08x names lanes beyond the "
                      "block's %d threads", what, mask, s.nthreads);
        return;
    }
    unsigned &arrived = s.warp_arrived[me / 32];
    for (unsigned l = 0; l < 32; l++)
        if ((arrived >> l & 1u) && (mask >> l & 1u) && s.fibers[base + l].wmask != mask) {
            cnn_emu::fail(cudaErrorLaunchFailure, "%s with mask 0x%08x while lane %u waits with "
                          "mask 0x%08x", what, mask, l, s.fibers[base + l].wmask);
            return;
        }
    f.wmask = mask;
    f.wval = mine;
    f.wout = all;
    arrived |= 1u << lane;
    if ((arrived & mask) == mask) {
        for (unsigned l = 0; l < 32; l++) {
            if (!(mask >> l & 1u)) continue;
            auto &g = s.fibers[base + l];
            for (unsigned j = 0; j < 32; j++)
                if (mask >> j & 1u) g.wout[j] = s.fibers[base + j].wval;
            if (g.state == cnn_emu::WARP_WAIT) g.state = cnn_emu::READY;
        }
        arrived &= ~mask;
        return;
    }
    f.state = cnn_emu::WARP_WAIT;
    cnn_emu::yield();
}

void cnn_emu_shared(void *p, size_t n)
{
    auto &s = S();
    for (auto &a : s.shared)
        if (a.first == p) return;
    s.shared.emplace_back(p, n);
    memset(p, 0xFF, n);
    s.static_smem += n;
    if (s.static_smem > cnn_emu::STATIC_SMEM_MAX)
        cnn_emu::fail(cudaErrorInvalidValue, "%zu bytes of static __shared__ memory: over the "
                      "48 KiB a kernel may declare statically (ptxas refuses it)", s.static_smem);
    else if (s.static_smem + s.dyn_smem.size() > cnn_emu::SMEM_OPTIN_MAX)
        cnn_emu::fail(cudaErrorInvalidValue, "%zu bytes static + %zu dynamic shared memory: "
                      "over the 227 KiB of a block", s.static_smem, s.dyn_smem.size());
}

void cnn_emu_launch_bounds(unsigned max_threads, unsigned, unsigned)
{
    const unsigned n = blockDim.x * blockDim.y * blockDim.z;
    if (n > max_threads)
        cnn_emu::fail(cudaErrorLaunchOutOfResources, "block of %u threads launched, but the "
                      "kernel's __launch_bounds__ allow %u", n, max_threads);
}

void *cnn_emu_dynamic_shared(void)
{
    auto &s = S();
    return s.dyn_smem.empty() ? nullptr : s.dyn_smem.data();
}

void cnn_emu_kernel_error(const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cnn_emu::fail(cudaErrorLaunchFailure, "%s", msg);
}
