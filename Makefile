# libcnncuda — build the library, tools and tests. `make help` lists the targets.
# Flags: CUDA=0|1 and CUDNN=0|1 (auto-detected), DEBUG=1 (-O0 -g, ASan+UBSan), CUDA_ARCH=,
# PREFIX= (install; libdir= and includedir= too), BUILD= (output folder, default build). CFLAGS,
# CPPFLAGS and LDFLAGS (from the command line or the environment) are added after the library's
# own flags. A BUILD folder remembers its settings: built again with other ones, everything in
# it is rebuilt.

BUILD   ?= build
# Installation folders, by their GNU names too (prefix= is PREFIX=). Absolute paths without
# spaces: cnncuda.pc names them, and pkg-config has no way to quote a space.
prefix     ?= /usr/local
PREFIX     ?= $(prefix)
libdir     ?= $(PREFIX)/lib
includedir ?= $(PREFIX)/include
pkgconfigdir ?= $(libdir)/pkgconfig
CC      ?= cc
DEBUG   ?= 0

# ---- what is on this machine -------------------------------------------------------------
# CUDA_EMU=1: the CUDA code built against the CPU emulator in tests/cuda_emu (fake runtime and
# cuBLAS, kernels compiled as C++ by g++), so the GPU tests run on a machine without a GPU.
CUDA_EMU ?= 0
# With CUDNN=1 the cuDNN paths run on the emulated cuDNN too (tests/cuda_emu/emu_cudnn*.cpp);
# CUDNN defaults to 0 there, and no real libcudnn is linked either way.
ifeq ($(CUDA_EMU),1)
  CUDA  := 1
  ifneq ($(CUDNN),1)
    CUDNN := 0
  endif
endif
CUDA_HOME ?= /usr/local/cuda
NVCC      ?= $(shell command -v nvcc 2>/dev/null || (test -x $(CUDA_HOME)/bin/nvcc && echo $(CUDA_HOME)/bin/nvcc))
ifeq ($(origin CUDA),undefined)
  CUDA := $(if $(NVCC),1,0)
endif
CUDNN_H := $(firstword $(wildcard $(CUDA_HOME)/include/cudnn.h /usr/include/cudnn.h /usr/include/x86_64-linux-gnu/cudnn.h))
ifeq ($(origin CUDNN),undefined)
  CUDNN := $(if $(and $(filter 1,$(CUDA)),$(CUDNN_H)),1,0)
endif
ifeq ($(CUDA),0)
  CUDNN := 0
endif
# Default: Ampere (sm_80) and Hopper (sm_90) machine code, plus sm_90 PTX for newer GPUs.
CUDA_ARCH ?= -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 \
             -gencode arch=compute_90,code=compute_90

CUDA_NOTE := $(if $(filter 1,$(CUDA)),found ($(NVCC)),not found / disabled)
CUDNN_NOTE := $(if $(filter 1,$(CUDNN)),found ($(CUDNN_H)),not found / disabled)
ifeq ($(CUDA_EMU),1)
  CUDA_NOTE := emulated on the CPU (tests/cuda_emu)
  CUDNN_NOTE := $(if $(filter 1,$(CUDNN)),emulated on the CPU (tests/cuda_emu),disabled)
endif
$(info libcnncuda: CUDA $(CUDA_NOTE) | cuDNN $(CUDNN_NOTE) | DEBUG=$(DEBUG))

# AVX2 + FMA (every x86-64 server of the last decade); override with CPU_ARCH=-march=native.
CPU_ARCH ?= -march=x86-64-v3

# ---- flags -------------------------------------------------------------------------------
WARN     ?= -Wall -Wextra
# CPPFLAGS_EXTRA / LDFLAGS_EXTRA: extra include and library paths, e.g. for dependencies
# unpacked into a folder on a machine without them installed (scripts/gpu-verify.sh).
# OpenBLAS's own cblas.h (with openblas_get_parallel and OPENBLAS_THREAD), wherever the system's
# alternatives point <cblas.h>: with Debian's netlib libblas-dev chosen there, it lacks them.
OPENBLAS_CFLAGS := $(shell pkg-config --cflags openblas 2>/dev/null)
CNN_CPPFLAGS := -Iinclude -Icore -DCNN_WITH_CUDA=$(CUDA) -DCNN_WITH_CUDNN=$(CUDNN) -D_GNU_SOURCE \
                $(OPENBLAS_CFLAGS) $(CPPFLAGS_EXTRA)
CNN_LDFLAGS := $(LDFLAGS_EXTRA)
CNN_CFLAGS := -std=c11 $(WARN) -fPIC -fopenmp -pthread -MMD -MP
LDLIBS   := -lopenblas -lstb -lz -lm -lpthread -fopenmp
# FUZZ=1 (clang, with DEBUG=1): libFuzzer's coverage instrumentation too, for scripts/fuzz.sh.
DEBUG_OPT ?= -O0
ifeq ($(FUZZ),1)
  CNN_CFLAGS += -fsanitize=fuzzer-no-link
endif
ifeq ($(DEBUG),1)
  # Undefined behaviour stops the run (UBSan would otherwise print a line and go on, and a passing
  # suite could hide it).
  CNN_CFLAGS += $(DEBUG_OPT) -g -fsanitize=address,undefined -fno-sanitize-recover=undefined \
                -fno-omit-frame-pointer -DCNN_KEEP_STB_ASSERTS
  CNN_LDFLAGS += -fsanitize=address,undefined
else
  CNN_CFLAGS += -O3 $(CPU_ARCH) -g1
endif
# stb_image keeps a file's palette in a stack array, and a pixel index past the palette read
# whatever the stack held: data/image_decode.c is built with zero-initialised locals (gcc >= 12,
# clang >= 16; clang 14-15 want the second spelling), so such pixels are black every time.
STB_ZERO_INIT := $(shell for f in "-ftrivial-auto-var-init=zero" \
    "-ftrivial-auto-var-init=zero -enable-trivial-auto-var-init-zero-knowing-it-will-be-removed-from-clang"; \
    do echo 'int main(void){return 0;}' | $(CC) $$f -Werror -x c -c -o /dev/null - 2>/dev/null \
    && { echo "$$f"; break; }; done)
ifeq ($(STB_ZERO_INIT),)
  $(warning $(CC) cannot zero-initialise locals: palette images whose pixels index past their \
    palette may decode differently from run to run)
endif
$(BUILD)/obj/data/image_decode.o: CNN_CFLAGS += $(STB_ZERO_INIT)
NVFLAGS := -std=c++17 -O3 -Xcompiler -fPIC -Xcompiler -Wall $(CUDA_ARCH) -Iinclude -Icore $(CPPFLAGS_EXTRA) \
           -DCNN_WITH_CUDA=1 -DCNN_WITH_CUDNN=$(CUDNN) -MMD -MP
ifeq ($(CUDA_EMU),1)
  CNN_CPPFLAGS += -Itests/cuda_emu/include
  LDLIBS   += -lstdc++
else ifeq ($(CUDA),1)
  CUDA_LIB := $(CUDA_HOME)/lib64
  CNN_CPPFLAGS += -I$(CUDA_HOME)/include
  # nvcc's launch stubs need the C++ runtime.
  # (-Xlinker -rpath=: the spelling gcc, clang and nvcc all take, for cnncuda.pc's users.)
  LDLIBS   += -L$(CUDA_LIB) -Xlinker -rpath=$(CUDA_LIB) -lcublas -lcudart -lstdc++
  ifeq ($(CUDNN),1)
    LDLIBS += -lcudnn
  endif
endif

# A plain `make` builds everything: the config stamp's rule below is the first in the file and
# would otherwise be the default goal (make built the stamp alone and said it was up to date).
.DEFAULT_GOAL := all

# What a build folder was built with ($(BUILD)/config.stamp, rewritten only when it changes):
# every object depends on it, so `make CUDA=0` then `make` rebuilds all, and never mixes.
CONFIG := CC=$(CC) CXX=$(CXX) NVCC=$(NVCC) CUDA=$(CUDA) CUDNN=$(CUDNN) CUDA_EMU=$(CUDA_EMU) \
          DEBUG=$(DEBUG) DEBUG_OPT=$(DEBUG_OPT) FUZZ=$(FUZZ) CPU_ARCH=$(CPU_ARCH) \
          CUDA_ARCH=$(CUDA_ARCH) WARN=$(WARN) CPPFLAGS_EXTRA=$(CPPFLAGS_EXTRA) CFLAGS=$(CFLAGS) \
          CPPFLAGS=$(CPPFLAGS)
CONFIG_STAMP := $(BUILD)/config.stamp
# (Not for goals that compile nothing of the folder: check-example with CC=clang would otherwise
# mark it as clang's, and the next plain make would rebuild it all. Nor for `make -n`, which
# only prints.)
DRY_RUN := $(findstring n,$(firstword -$(MAKEFLAGS)))
ifeq ($(DRY_RUN)$(filter clean distclean help layout check-layout deps uninstall check-example \
               check-header,$(MAKECMDGOALS)),)
  $(shell mkdir -p $(BUILD) && { [ "$$(cat $(CONFIG_STAMP) 2>/dev/null)" = '$(CONFIG)' ] || \
    printf '%s\n' '$(CONFIG)' > $(CONFIG_STAMP); })
endif
$(CONFIG_STAMP):
	@mkdir -p $(@D) && printf '%s\n' '$(CONFIG)' > $@
# `make -n` with another configuration shows the full rebuild a real make would run.
ifneq ($(DRY_RUN),)
  ifneq ($(strip $(shell cat $(CONFIG_STAMP) 2>/dev/null)),$(strip $(CONFIG)))
    .PHONY: $(CONFIG_STAMP)
  endif
endif

# ---- sources -----------------------------------------------------------------------------
LIB_SRC := $(wildcard core/*.c layers/*.c models/*.c data/*.c)
ifeq ($(CUDA),1)
  CUDA_C  := $(wildcard cuda/*.c)
  ifeq ($(CUDNN),0)
    CUDA_C := $(filter-out %_cudnn.c,$(CUDA_C))
  endif
  LIB_SRC += $(CUDA_C)
  CU_SRC  := $(wildcard cuda/*.cu)
endif
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/obj/%.o) $(CU_SRC:%.cu=$(BUILD)/obj/%.cu.o)
ifeq ($(CUDA_EMU),1)
  LIB_OBJ += $(patsubst %.cpp,$(BUILD)/obj/%.o,$(wildcard tests/cuda_emu/*.cpp))
endif
# Each tools/NAME.c is a program build/bin/NAME; tools/common/*.c is linked into every tool.
TOOL_SRC := $(wildcard tools/*.c)
TOOLS    := $(TOOL_SRC:tools/%.c=$(BUILD)/bin/%)
TOOL_COMMON_OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard tools/common/*.c))
TEST_SRC := $(wildcard tests/*.c)
TEST_OBJ := $(TEST_SRC:%.c=$(BUILD)/obj/%.o)
TEST_BIN := $(BUILD)/tests/run_tests

.PHONY: all lib tools tests test install uninstall deps demo clean distclean help check-example \
        check-valgrind check-exports check-header check-tsan layout check-layout \
        check-alloc-failures check-io-failures
# Keep the files make would otherwise treat as intermediate (and delete): the emulator's
# rewritten kernels and the tools' objects. (A bare .SECONDARY: made every target secondary,
# and then a missing object older than the archive was not rebuilt.)
.SECONDARY: $(patsubst %.cu,$(BUILD)/emu-src/%.cpp,$(wildcard cuda/*.cu)) \
            $(TOOL_SRC:tools/%.c=$(BUILD)/obj/tools/%.o)
all: lib tools tests

lib: $(BUILD)/libcnncuda.a $(BUILD)/libcnncuda.so
tools: $(TOOLS)
tests: $(TEST_BIN)

$(BUILD)/obj/%.o: %.c $(CONFIG_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CNN_CPPFLAGS) $(CPPFLAGS) $(CNN_CFLAGS) $(CFLAGS) -c $< -o $@

ifeq ($(CUDA_EMU),1)
# The kernels as C++ (tests/cuda_emu/emu_rewrite.pl): `__shared__` arrays become statics that
# the emulator registers, and `k<<<cfg>>>(args)` a call of its launcher.
EMU_CXXFLAGS := -std=c++17 -fPIC -pthread -Wall -Wno-unknown-pragmas -ffp-contract=off \
                -fno-strict-aliasing -MMD -MP
ifeq ($(DEBUG),1)
  EMU_CXXFLAGS += -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=undefined \
                  -fno-omit-frame-pointer
else
  EMU_CXXFLAGS += -O2 $(CPU_ARCH) -g1
endif
# Headers with kernels (cuda/*.cuh) are rewritten too, and found before the originals.
EMU_CUH := $(patsubst %,$(BUILD)/emu-src/%,$(wildcard cuda/*.cuh))
$(BUILD)/emu-src/%.cpp: %.cu tests/cuda_emu/emu_rewrite.pl
	@mkdir -p $(dir $@)
	perl -0777 -p tests/cuda_emu/emu_rewrite.pl $< > $@
$(BUILD)/emu-src/%.cuh: %.cuh tests/cuda_emu/emu_rewrite.pl
	@mkdir -p $(dir $@)
	perl -0777 -p tests/cuda_emu/emu_rewrite.pl $< > $@

$(BUILD)/obj/%.cu.o: $(BUILD)/emu-src/%.cpp $(EMU_CUH) $(CONFIG_STAMP)
	@mkdir -p $(dir $@)
	$(CXX) $(CNN_CPPFLAGS) $(CPPFLAGS) -I$(dir $*) $(EMU_CXXFLAGS) -c $< -o $@

$(BUILD)/obj/tests/cuda_emu/%.o: tests/cuda_emu/%.cpp $(CONFIG_STAMP)
	@mkdir -p $(dir $@)
	$(CXX) $(CNN_CPPFLAGS) $(CPPFLAGS) $(EMU_CXXFLAGS) -Wextra -c $< -o $@

emu-selftest: $(BUILD)/tests/emu_selftest
EMU_SELFTEST_OBJ := $(BUILD)/obj/tests/cuda_emu/emu_selftest.cu.o \
                    $(BUILD)/obj/tests/cuda_emu/emu_selftest_streams.cu.o
$(BUILD)/tests/emu_selftest: $(EMU_SELFTEST_OBJ) $(BUILD)/libcnncuda.a
	@mkdir -p $(dir $@)
	$(CC) $(CNN_CFLAGS) $(CFLAGS) -o $@ $(EMU_SELFTEST_OBJ) $(BUILD)/libcnncuda.a $(CNN_LDFLAGS) \
	  $(LDFLAGS) $(LDLIBS)
-include $(EMU_SELFTEST_OBJ:.o=.d)
else
$(BUILD)/obj/%.cu.o: %.cu $(CONFIG_STAMP)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVFLAGS) -c $< -o $@
endif

$(BUILD)/libcnncuda.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

# The shared library exports the API of include/cnncuda/*.h and nothing else (internal helpers
# such as mdl_conv or cnn_sgemm would otherwise be interposed by a user's own function of that
# name): the names declared there, as a linker version script. It also records the libraries it
# was linked with, for cnncuda.pc.
$(BUILD)/cnncuda.map: include/cnncuda.h $(wildcard include/cnncuda/*.h)
	@mkdir -p $(dir $@)
	{ echo '{ global:'; $(CC) -E -P -Iinclude include/cnncuda.h | tr '\n' ' ' | \
	  grep -oE 'cnn_[A-Za-z0-9_]+ *\([^*]' | sed -E 's/ *\(.$$//' | sort -u | sed 's/$$/;/'; \
	  echo 'local: *; };'; } > $@
# stb_image is compiled into the library (data/image_decode.c): -lstb is for the tools and tests.
LIB_LDLIBS = $(filter-out -lstb,$(LDLIBS))
$(BUILD)/libcnncuda.so: $(LIB_OBJ) $(BUILD)/cnncuda.map
	$(CC) -shared -o $@ $(LIB_OBJ) $(CNN_LDFLAGS) $(LDFLAGS) $(LIB_LDLIBS) -Wl,-soname,libcnncuda.so.0 \
	  -Wl,--version-script=$(BUILD)/cnncuda.map
	@# what cnncuda.pc lists: -fopenmp becomes the OpenMP runtime the library was linked to (clang
	@# would read -fopenmp as libomp, nvcc refuses it), as readelf names it
	omp=$$(readelf -d $@ | sed -n 's/.*Shared library: \[lib\(g*omp\)\.so.*/\1/p' | head -n 1); \
	  echo '$(LIB_LDLIBS)' | sed "s/-fopenmp/$${omp:+-l$$omp}/" > $(BUILD)/libcnncuda.libs

$(BUILD)/bin/%: $(BUILD)/obj/tools/%.o $(TOOL_COMMON_OBJ) $(BUILD)/libcnncuda.a
	@mkdir -p $(dir $@)
	$(CC) $(CNN_CFLAGS) $(CFLAGS) -o $@ $< $(TOOL_COMMON_OBJ) $(BUILD)/libcnncuda.a $(CNN_LDFLAGS) $(LDFLAGS) $(LDLIBS)

# The tests link the tools' common code too, to test its parts (train_report.c) directly.
$(TEST_BIN): $(TEST_OBJ) $(TOOL_COMMON_OBJ) $(BUILD)/libcnncuda.a
	@mkdir -p $(dir $@)
	$(CC) $(CNN_CFLAGS) $(CFLAGS) -o $@ $(TEST_OBJ) $(TOOL_COMMON_OBJ) $(BUILD)/libcnncuda.a $(CNN_LDFLAGS) $(LDFLAGS) $(LDLIBS)

# Runs the whole suite; the last line reads "N passed, N failed, N skipped".
# TESTS=substring runs only the matching tests.
test: $(TEST_BIN) $(TOOLS)
	CNN_TOOLS_DIR=$(BUILD)/bin $(TEST_BIN) $(TESTS)

# The file-reading tests (checkpoints, datasets) under valgrind: any memory error or definite
# leak fails. (OpenMP's thread stacks show as "possibly lost" and are not counted.) Run it on a
# CUDA=0 build: libcudart's dlopen of the driver trips valgrind's false positives inside ld.so.
VALGRIND_TESTS ?= test_safetensors.c: test_safetensors_limits.c: test_safetensors_header.c: \
  test_dict.c: test_idx.c: test_imagefolder.c: test_image_decode.c: test_image_pnm.c: \
  test_loader.c: test_augment.c:
check-valgrind: $(TEST_BIN)
	valgrind --quiet --leak-check=full --errors-for-leak-kinds=definite,indirect \
	  --error-exitcode=3 $(TEST_BIN) $(VALGRIND_TESTS)

# The library's calls made to fail one at a time, in scenarios over the whole API
# (tests/fault/): each must end in an error that names the cause or an unchanged result, with
# nothing leaked (run it in an ASan build, DEBUG=1) and nothing corrupted. The program is linked
# with --wrap so that the library's own calls go through its counters.
#   check-alloc-failures: the heap allocations (malloc, calloc, realloc, aligned_alloc, strdup,
#     strndup, pthread_create). With a GPU (or on the CUDA emulator) the scenarios run again on
#     cuda:0 ("ops_step@cuda:0"), and on the emulator with the GPU's allocations failing
#     ("/gpu-full", "/gpu-once").
#   check-io-failures: the file-system calls, as a full or failing disk fails them ("/io") and
#     as a process out of file descriptors does ("/io-limits").
# ALLOC_FAILURES= / IO_FAILURES= (parts of scenario names, e.g. model_io or @cuda) narrow them.
FAULT_WRAP := $(foreach f,malloc calloc realloc aligned_alloc strdup strndup pthread_create \
                open fdopen fread fwrite ferror fflush fsync fclose fseeko fstat stat rename \
                opendir readdir gzdopen gzread,-Wl,--wrap=$(f))
FAULT_OBJ := $(BUILD)/obj/tests/fault/fault_sweep.o $(BUILD)/obj/tests/fault/scenarios.o
$(BUILD)/tests/fault_sweep: $(FAULT_OBJ) $(BUILD)/libcnncuda.a
	@mkdir -p $(dir $@)
	$(CC) $(CNN_CFLAGS) $(CFLAGS) -o $@ $(FAULT_OBJ) $(BUILD)/libcnncuda.a $(CNN_LDFLAGS) $(LDFLAGS) $(LDLIBS) \
	  $(FAULT_WRAP)
check-alloc-failures: $(BUILD)/tests/fault_sweep
	OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 $< alloc $(ALLOC_FAILURES)
check-io-failures: $(BUILD)/tests/fault_sweep
	OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 $< io $(IO_FAILURES)

# The tests where threads meet (the loader's workers, contexts on two threads, the tools' stop
# signals) under ThreadSanitizer, in build-tsan: any report fails. OpenMP and OpenBLAS run one
# thread (libgomp is not instrumented: its barriers would read as races). Reports from the
# tools the tests start go to build-tsan/tsan-logs.
TSAN_TESTS ?= loader two_ context sigint sigterm stop
check-tsan:
	$(MAKE) BUILD=build-tsan CUDA=0 CC="$(CC) -fsanitize=thread" LDFLAGS_EXTRA=-fsanitize=thread \
	  -j2 tests tools
	rm -rf build-tsan/tsan-logs && mkdir -p build-tsan/tsan-logs
	rc=0; OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 \
	  TSAN_OPTIONS=log_path=$(CURDIR)/build-tsan/tsan-logs/tsan CNN_TOOLS_DIR=build-tsan/bin \
	  build-tsan/tests/run_tests $(TSAN_TESTS) || rc=$$?; \
	if ls build-tsan/tsan-logs/* >/dev/null 2>&1; then cat build-tsan/tsan-logs/*; \
	  echo "check-tsan: ThreadSanitizer reported the above"; exit 1; fi; exit $$rc

# The GPU tests without a GPU, on the CPU emulator (tests/cuda_emu). check-cuda-emu, in
# build-emu: its self-test, the GPU tests, the same with each block's threads run last first
# (a missing barrier shows in one order or the other), copies to and from pinned memory
# landing only when waited for (CNN_EMU_LAGGING_COPIES: a missing wait reads 0xFF) and two
# devices (CNN_EMU_DEVICES=2: the multi-device tests run, and a kernel on the wrong device or
# reading the other's memory fails), each stream's work run only when the host waits for it
# (CNN_EMU_LAGGING_STREAMS: work that reads another stream's results without an event sees
# stale ones), and the no-device paths with the device hidden.
# check-cuda-emu-asan, in build-emu-dbg under ASan/UBSan (the memcheck available here): the
# self-test and the GPU tests. EMU_GPU_TESTS= (run_tests arguments) narrows the GPU-test runs.
.PHONY: check-cuda-emu check-cuda-emu-asan check-cuda-emu-cudnn check-cuda-emu-tsan emu-selftest
EMU_FLAGS     := CUDA_EMU=1 CUDA=1 CUDNN=0
EMU_GPU_TESTS ?= --gpu-only
check-cuda-emu:
	$(MAKE) BUILD=build-emu $(EMU_FLAGS) all emu-selftest
	build-emu/tests/emu_selftest
	CNN_EMU_ORDER=reverse CNN_EMU_DEVICES=2 build-emu/tests/emu_selftest
	CNN_TOOLS_DIR=build-emu/bin build-emu/tests/run_tests $(EMU_GPU_TESTS)
	CNN_EMU_ORDER=reverse CNN_EMU_LAGGING_COPIES=1 CNN_EMU_DEVICES=2 CNN_TOOLS_DIR=build-emu/bin \
	  build-emu/tests/run_tests $(EMU_GPU_TESTS)
	CNN_EMU_LAGGING_STREAMS=1 CNN_EMU_DEVICES=2 CNN_TOOLS_DIR=build-emu/bin \
	  build-emu/tests/run_tests $(EMU_GPU_TESTS)
	CUDA_VISIBLE_DEVICES= CNN_TOOLS_DIR=build-emu/bin build-emu/tests/run_tests absent without_gpu
check-cuda-emu-asan:
	$(MAKE) BUILD=build-emu-dbg $(EMU_FLAGS) DEBUG=1 all emu-selftest
	build-emu-dbg/tests/emu_selftest
	CNN_TOOLS_DIR=build-emu-dbg/bin build-emu-dbg/tests/run_tests $(EMU_GPU_TESTS)
# check-cuda-emu-tsan, in build-emu-tsan under ThreadSanitizer: the GPU tests where threads meet
# (the emulator runs the host code of cuda/ for real: allocator, pinned memory, contexts), with
# lagging streams (one thread's wait runs the work another thread queued).
EMU_TSAN_TESTS ?= two_threads cuda_loader cuda_copy_start cuda_pinned_copies_land another_thread \
                  cuda_tensors_cross_devices cuda_release_during cuda_pinned_empty_cache
check-cuda-emu-tsan:
	$(MAKE) BUILD=build-emu-tsan $(EMU_FLAGS) CC="$(CC) -fsanitize=thread" \
	  CXX="$(CXX) -fsanitize=thread" LDFLAGS_EXTRA=-fsanitize=thread tests tools
	OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 CNN_EMU_LAGGING_STREAMS=1 CNN_EMU_DEVICES=2 \
	  CNN_TOOLS_DIR=build-emu-tsan/bin build-emu-tsan/tests/run_tests --gpu-only $(EMU_TSAN_TESTS)
# check-cuda-emu-cudnn, in build-emu-cudnn: the same GPU tests with CUDNN=1 on the emulated
# cuDNN (tests/cuda_emu/emu_cudnn*.cpp), so the cuDNN paths (cuda/*_cudnn.c) run without a GPU;
# with two devices, so the multi-device tests reach them on the second device too, and with
# lagging streams (each cuDNN call computes when the host waits for its stream).
check-cuda-emu-cudnn:
	$(MAKE) BUILD=build-emu-cudnn CUDA_EMU=1 CUDA=1 CUDNN=1 all emu-selftest
	build-emu-cudnn/tests/emu_selftest
	CNN_EMU_DEVICES=2 CNN_EMU_LAGGING_STREAMS=1 CNN_TOOLS_DIR=build-emu-cudnn/bin \
	  build-emu-cudnn/tests/run_tests $(EMU_GPU_TESTS)

# The install folders must be absolute and without spaces (see prefix above); DESTDIR (staging)
# may be anything. A sanitizer build's users must link the sanitizers too: cnncuda.pc says so.
comma := ,
INSTALL_SAN := $(if $(filter 1,$(DEBUG)),-fsanitize=address$(comma)undefined)
define check_install_dirs
	@for d in '$(PREFIX)' '$(libdir)' '$(includedir)' '$(pkgconfigdir)'; do \
	  case "$$d" in *[[:space:]]*) echo "$@: '$$d' has a space: pkg-config cannot name it" >&2; \
	    exit 1;; /*) ;; *) echo "$@: '$$d' is not an absolute path" >&2; exit 1;; esac; done
endef
install: lib
	$(check_install_dirs)
	install -d "$(DESTDIR)$(includedir)/cnncuda" "$(DESTDIR)$(libdir)" "$(DESTDIR)$(pkgconfigdir)"
	install -m 644 include/cnncuda.h "$(DESTDIR)$(includedir)/"
	install -m 644 include/cnncuda/*.h "$(DESTDIR)$(includedir)/cnncuda/"
	install -m 644 $(BUILD)/libcnncuda.a "$(DESTDIR)$(libdir)/"
	install -m 755 $(BUILD)/libcnncuda.so "$(DESTDIR)$(libdir)/libcnncuda.so.0"
	ln -sf libcnncuda.so.0 "$(DESTDIR)$(libdir)/libcnncuda.so"
	printf 'prefix=%s\nlibdir=%s\nincludedir=%s\n\nName: cnncuda\nDescription: convolutional networks in C with CUDA/cuDNN\nVersion: 0.1.0\nLibs: -L$${libdir} -lcnncuda%s\nLibs.private: %s\nCflags: -I$${includedir}\n' \
	  '$(PREFIX)' '$(libdir)' '$(includedir)' '$(if $(INSTALL_SAN), $(INSTALL_SAN))' \
	  "$$(cat $(BUILD)/libcnncuda.libs)" > "$(DESTDIR)$(pkgconfigdir)/cnncuda.pc"
	@# cnncuda-static: the archive named in full (-lcnncuda would find the .so beside it, and a
	@# linker without --as-needed then makes the program need libcnncuda.so.0 after all)
	printf 'prefix=%s\nlibdir=%s\nincludedir=%s\n\nName: cnncuda-static\nDescription: convolutional networks in C with CUDA/cuDNN, linked statically\nVersion: 0.1.0\nLibs: $${libdir}/libcnncuda.a %s\nCflags: -I$${includedir}\n' \
	  '$(PREFIX)' '$(libdir)' '$(includedir)' \
	  "$(if $(INSTALL_SAN),$(INSTALL_SAN) )$$(cat $(BUILD)/libcnncuda.libs)" \
	  > "$(DESTDIR)$(pkgconfigdir)/cnncuda-static.pc"
	@# the loader's cache, so that programs find libcnncuda.so.0 in /usr/local/lib at once
	@test -n "$(DESTDIR)" || ldconfig 2>/dev/null || true

uninstall:
	$(check_install_dirs)
	rm -f "$(DESTDIR)$(includedir)/cnncuda.h" "$(DESTDIR)$(libdir)/libcnncuda.a" \
	  "$(DESTDIR)$(libdir)/libcnncuda.so" "$(DESTDIR)$(libdir)/libcnncuda.so.0" \
	  "$(DESTDIR)$(pkgconfigdir)/cnncuda.pc" "$(DESTDIR)$(pkgconfigdir)/cnncuda-static.pc"
	for h in include/cnncuda/*.h; do rm -f "$(DESTDIR)$(includedir)/cnncuda/$${h##*/}"; done
	-rmdir "$(DESTDIR)$(includedir)/cnncuda" 2>/dev/null

# The shared library exports exactly the functions the public header declares, and the static
# one defines no global name outside the cnn_ prefix (kernels are static or in an anonymous
# namespace, which nvcc names per file), so a user's own `fill_f32_kernel` cannot clash with ours.
check-exports: $(BUILD)/libcnncuda.so $(BUILD)/libcnncuda.a $(BUILD)/cnncuda.map
	@nm -D --defined-only $(BUILD)/libcnncuda.so | awk '{print $$3}' | sort -u > $(BUILD)/exports.txt
	@grep -o 'cnn_[a-z0-9_]*' $(BUILD)/cnncuda.map | sort -u | diff - $(BUILD)/exports.txt && \
	  echo "check-exports: $$(wc -l < $(BUILD)/exports.txt) symbols, all declared in include/cnncuda/"
	@nm -g --defined-only $(BUILD)/libcnncuda.a | awk 'NF == 3 && $$3 !~ /^cnn_/ && \
	  $$3 !~ /_GLOBAL__N_/ && $$3 != "DW.ref.__gxx_personality_v0"' | c++filt > $(BUILD)/stray.txt
	@if [ -s $(BUILD)/stray.txt ]; then \
	  echo "check-exports: libcnncuda.a defines global names outside cnn_:"; cat $(BUILD)/stray.txt; \
	  exit 1; fi; echo "check-exports: libcnncuda.a defines no global name outside cnn_"
	@# and calls nothing that aborts (stb_image's asserts are compiled out but for DEBUG=1)
	@if [ "$(DEBUG)" != 1 ] && nm -u $(BUILD)/libcnncuda.a | grep -qw '__assert_fail\|abort'; then \
	  echo "check-exports: libcnncuda.a calls assert or abort"; exit 1; fi

# The public header on its own: C99 and C++11, pedantic, warnings as errors (CNN_SHAPE and the
# device macros have a C++ form: no compound literals, and a size_t size is no narrowing error).
check-header:
	@mkdir -p $(BUILD)
	@printf '#include <cnncuda.h>\nint main(void) { cnn_shape s = CNN_SHAPE(2, sizeof(float)); cnn_device d = CNN_CPU; return (int)s.d[0] - 2 + (int)d.type; }\n' > $(BUILD)/header_check.c
	$(CC) -std=c99 -pedantic -Wall -Wextra -Werror -Iinclude $(BUILD)/header_check.c -o /dev/null -c
	$(CXX) -x c++ -std=c++11 -pedantic -Wall -Wextra -Werror -Iinclude $(BUILD)/header_check.c -o /dev/null -c
	@echo "check-header: include/cnncuda.h compiles as C99 and C++11"

# LAYOUT.md, the map of the source tree, from each file's header comment (scripts/layout.py);
# check-layout fails when a file was added, removed or re-described without `make layout`.
layout:
	@python3 scripts/layout.py && echo "layout: LAYOUT.md written"
check-layout:
	@python3 scripts/layout.py --check

# Builds examples/*.c against an installed copy (make install PREFIX=... first), through
# pkg-config exactly as a user would, and runs each: linked to the shared library (cnncuda),
# then statically (cnncuda-static, with --no-as-needed so that a stray -lcnncuda would show as
# a dependency on libcnncuda.so.0, which the check refuses).
check-example:
	@mkdir -p $(BUILD)/examples
	@for f in examples/*.c; do \
	  b=$(BUILD)/examples/$$(basename $$f .c); \
	  PKG_CONFIG_PATH='$(pkgconfigdir)'; export PKG_CONFIG_PATH; \
	  echo "$(CC) $$f \$$(pkg-config --cflags --libs cnncuda) -Wl,-rpath,$(libdir) -o $$b"; \
	  $(CC) -std=c11 -Wall -Wextra -Werror $$f $$(pkg-config --cflags --libs cnncuda) \
	    -Wl,-rpath,'$(libdir)' -o $$b && $$b || exit 1; \
	  echo "$(CC) $$f \$$(pkg-config --cflags --libs cnncuda-static) -o $$b-static"; \
	  $(CC) -std=c11 -Wall -Wextra -Werror -Wl,--no-as-needed $$f \
	    $$(pkg-config --cflags --libs cnncuda-static) -o $$b-static || exit 1; \
	  if readelf -d $$b-static | grep -q 'libcnncuda'; then \
	    echo "check-example: $$b-static needs libcnncuda.so"; exit 1; fi; \
	  $$b-static > /dev/null || exit 1; \
	done

# Installs the Debian packages the build and the default demo need (only the missing ones).
deps:
	@sh scripts/install-deps.sh

# Trains the default model (LeNet-5 on Fashion-MNIST, GPU if present) from a fresh checkout.
demo: deps
	$(MAKE) all
	$(BUILD)/bin/train_imagenet_subset

clean:
	rm -rf $(BUILD)

# Every build folder, the check targets' fixed ones (build-emu, build-tsan, ...) included.
distclean:
	rm -rf build build-*

help:
	@echo "make [all|lib|tools|tests|test|install|uninstall|deps|demo|clean|distclean] [CUDA=0|1] [CUDNN=0|1] [DEBUG=1] [CUDA_ARCH=...] [PREFIX=...] [libdir=...] [includedir=...] [DESTDIR=...]"
	@echo "checks: check-example PREFIX=... check-exports check-header check-layout check-valgrind check-tsan check-alloc-failures check-io-failures check-cuda-emu check-cuda-emu-cudnn check-cuda-emu-asan check-cuda-emu-tsan"
	@echo "docs: layout (LAYOUT.md from the files' header comments)"

-include $(LIB_OBJ:.o=.d) $(TEST_OBJ:.o=.d) $(FAULT_OBJ:.o=.d) $(TOOL_SRC:tools/%.c=$(BUILD)/obj/tools/%.d) \
         $(TOOL_COMMON_OBJ:.o=.d)
