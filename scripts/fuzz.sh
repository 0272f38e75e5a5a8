#!/bin/sh
# fuzz.sh — fuzzes the readers of user files (safetensors and their JSON header, IDX datasets,
# images of a folder dataset, training checkpoints) with clang's libFuzzer under ASan/UBSan,
# SECONDS each (default 60). Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
# Builds the library in build-fuzz (DEBUG=1 FUZZ=1, -O1), the harness tests/fuzz/fuzz_readers.c,
# seeds for each target (the checkpoint one from a short LeNet-5 run on Fashion-MNIST), and
# keeps each target's corpus in build-fuzz/corpus/TARGET between runs. A crash leaves its input
# in build-fuzz/crash-TARGET-* and makes the exit status 1. Needs clang (not part of make test).
set -eu
cd "$(dirname "$0")/.."
SECS=${1:-60}
[ $# -gt 0 ] && shift
TARGETS=${*:-json safetensors idx image checkpoint}
B=build-fuzz
command -v clang >/dev/null || { echo "fuzz: needs clang (Debian: apt-get install clang)" >&2; exit 2; }
JOBS=$(nproc 2>/dev/null || echo 2)

make BUILD=$B CC=clang CUDA=0 DEBUG=1 DEBUG_OPT=-O1 FUZZ=1 WARN="-Wall -Wextra -Wno-pass-failed" \
    -j"$JOBS" lib tools >/dev/null
clang -std=c11 -O1 -g -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Iinclude -Icore \
    -Itools/common tests/fuzz/fuzz_readers.c $B/obj/tools/common/checkpoint.o \
    $B/obj/tools/common/train_opts.o $B/obj/tools/common/train_report.o $B/libcnncuda.a \
    -lopenblas -lstb -lz -lm -lpthread -fopenmp -o $B/fuzz_readers

export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export ASAN_OPTIONS=detect_leaks=1
failed=0
for t in $TARGETS; do
    seeds=$B/seeds/$t corpus=$B/corpus/$t
    rm -rf "$seeds"
    mkdir -p "$seeds" "$corpus"
    if [ "$t" = checkpoint ]; then
        ck=$B/seed-run/last.safetensors
        [ -f "$ck" ] || ASAN_OPTIONS=detect_leaks=0 $B/bin/train_imagenet_subset --model lenet5 \
            --epochs 1 --limit-train 256 --limit-val 128 --optimizer adamw --schedule plateau \
            --checkpoint-dir $B/seed-run >/dev/null
        export FUZZ_CHECKPOINT=$ck
    fi
    FUZZ_TARGET=$t FUZZ_SEEDS=$seeds $B/fuzz_readers
    echo "fuzz: $t for $SECS s"
    if ! FUZZ_TARGET=$t $B/fuzz_readers -max_total_time="$SECS" -timeout=20 -rss_limit_mb=4096 \
         -max_len=8192 -print_final_stats=1 -artifact_prefix="$B/crash-$t-" "$corpus" "$seeds" \
         >"$B/fuzz-$t.log" 2>&1; then
        echo "fuzz: $t FAILED, see $B/fuzz-$t.log and $B/crash-$t-*"
        failed=1
    fi
    grep -E '^stat::number_of_executed_units|^Done' "$B/fuzz-$t.log" | tr '\n' ' '
    echo
    rm -rf "${TMPDIR:-/tmp}"/cnn-fuzz-*
done
exit $failed
