#!/usr/bin/env bash
# gpu-session.sh — the device call of a session with a lent GPU, sized for the 15 minutes of device
# time a task gets (the machine's start and the transfers count too, so one call of about 9
# minutes, and a second short one while the machine is still warm). It runs the other gpu-*.sh
# scripts in parts, most needed first, each with its share of one time budget:
#
#   build    scripts/gpu-verify.sh STEPS=build: sm_90, the tests and the tools
#   fm       Fashion-MNIST with resnet18_small to >= 95% (scripts/gpu-train.sh), FM_EPOCHS
#            (default 32) epochs ALONGSIDE verify: neither times anything but the run's own
#            minutes, which are stated as such
#   verify   the whole suite (CPU tests in 4 processes, then the GPU tests), then
#            compute-sanitizer memcheck on the GPU tests
#   default  the training tool with no arguments (LeNet-5 on Fashion-MNIST, on the GPU, >= 89%;
#            scripts/gpu-train.sh), ALONGSIDE verify too when both run (it times nothing)
#   memcheck memcheck alone (for a call after one whose verify ran out of time there)
#   bench    cnnbench and PyTorch side by side (scripts/gpu-bench.sh): training and inference
#            of ResNet-50 at batch 256 (speed and peak memory), VGG16, AlexNet, LeNet-5
#   conv     conv over ResNet-50's shapes at batch 64: cuDNN, hand-written, PyTorch; cuDNN
#            with the graph API's engines too (CNN_CUDNN_ENGINES=1), and so ResNet-50 and
#            AlexNet
#   jpeg     a generated JPEG folder: decoding rate, ResNet-50 with real decoding vs synthetic
#   extra    memcheck of the zoo's 224x224 GPU steps, bn/pool/gemm/elementwise, TF32,
#            ResNet-50 on the hand-written kernels, its per-layer times
#
# A part that does not fit what is left, or one of whose steps was cut or skipped for time, is
# listed on the last line ("not run: ..."), to be given as PARTS to the next call. Output in $OUT (./gpu-out when unset), at most 5 files, rewritten
# after every part so a call cut short still brings back what was done: summary.txt (also
# printed last), tables.md, metrics.csv, env.txt, results.tar.gz (every part's logs and JSON).
# Environment:
#   PARTS        which parts run (default "build fm verify default bench conv jpeg extra"; build always runs
#                first when the tools are missing)
#   TIME_BUDGET  seconds for the whole call (default 540: under a 600 s timeout_s, with room to
#                pack); DEPS_DEBS, BUILD, PY as for the other scripts
#   DRY=1        a run on a machine without a GPU: checks the script end to end at tiny sizes
#   FRESH=1      forget what an earlier call on this machine left in /tmp/cnn-session
# Usage (device tool, carry [".deps"]):
#   DEPS_DEBS=.deps scripts/gpu-session.sh                          first call, timeout_s 600
#   PARTS="jpeg extra" TIME_BUDGET=<seconds left - 40> DEPS_DEBS=.deps scripts/gpu-session.sh
#                           if time is left (jpeg needs 115 s of it; extra 75 for each of its two)
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

START=$(date +%s)
BUDGET=${TIME_BUDGET:-540}
OUT=${OUT:-$PWD/gpu-out}
DRY=${DRY:-0}
PARTS=" ${PARTS:-build fm verify default bench conv jpeg extra} "
# The work folder outlives a call on a machine still warm: a second call's comparisons pair
# with the first's results, and a step that ended well there is not run again (gpu-bench.sh's
# gb_step), so a part the first call cut goes on from where it was; a Fashion-MNIST run cut
# resumes from its checkpoint. FRESH=1 empties it.
W=/tmp/cnn-session
[ "${FRESH:-0}" = 1 ] && rm -rf "$W"
mkdir -p "$W" "$OUT"
S=$W/summary.txt
: >"$S"
export BUILD=${BUILD:-build-gpu}
NOT_RUN=""
L=0
status=0

say() { echo "$*" | tee -a "$S"; }
left() { echo $((BUDGET - ($(date +%s) - START))); }
wanted() { [[ "$PARTS" == *" $1 "* ]]; }

# What goes back; called after every part. The archive is written aside and moved into place,
# so a call killed while packing still leaves the previous one whole.
pack() {
    cp "$S" "$OUT/summary.txt"
    [ -f "$W/bench-work/tables.md" ] && cp "$W/bench-work/tables.md" "$OUT/"
    [ -f "$W/train-work/metrics.csv" ] && cp "$W/train-work/metrics.csv" "$OUT/"
    if [ -f "$W/verify/env.txt" ]; then cp "$W/verify/env.txt" "$OUT/"
    elif [ -f "$W/build/env.txt" ]; then cp "$W/build/env.txt" "$OUT/"; fi
    tar czf "/tmp/cnn-session-results.tar.gz" -C "$W" --exclude='runs' \
        --exclude='*.safetensors' --exclude='data' . 2>/dev/null &&
        mv -f /tmp/cnn-session-results.tar.gz "$OUT/results.tar.gz"
}

# budget_for NAME CAP [MIN]: sets L to the seconds NAME gets, min(CAP, what is left less 15 s to
# pack); false (and NAME's part joins NOT_RUN) when that is under MIN (default 30) seconds.
budget_for() {
    L=$(($(left) - 15))
    [ "$L" -gt "$2" ] && L=$2
    if [ "$L" -lt "${3:-30}" ]; then
        say "== $1: not run (out of time)"
        [[ " $NOT_RUN " == *" ${1%%_*} "* ]] || NOT_RUN="$NOT_RUN ${1%%_*}"
        return 1
    fi
}

# part NAME CAP[:MIN] SCRIPT [VAR=VALUE...]: SCRIPT with its share of the budget (see
# budget_for), OUT=$W/NAME; its summary joins ours. The script keeps to its budget itself; the
# outer timeout is for a command in it that hangs (a GPU query, say).
part() {
    local name=$1 cap=${2%:*} min=30 script=$3 t0 rc
    [[ $2 == *:* ]] && min=${2#*:}
    shift 3
    budget_for "$name" "$cap" "$min" || return 0
    say "== $name (budget $L s, at $(($(date +%s) - START)) s)"
    t0=$(date +%s)
    timeout -k 10 $((L + 30)) env "$@" TIME_BUDGET="$L" OUT="$W/$name" DRY="$DRY" \
        "scripts/$script" >"$W/$name.log" 2>&1
    rc=$?
    finish_part "$name" "$rc" "$t0"
}

finish_part() {
    local name=$1 rc=$2 t0=$3
    [ -f "$W/$name/summary.txt" ] && sed 's/^/  /' "$W/$name/summary.txt" | tee -a "$S"
    say "   $name: exit $rc after $(($(date +%s) - t0)) s"
    [ "$rc" -eq 0 ] || status=1
    # A step of it cut short or skipped for time: the part is for the next call too (verify
    # says itself which of its steps is).
    if [ "${name%%_*}" != build ] && [ "$name" != verify ] &&
        grep -qE 'skipped \(out of time\)|not run \(out of time\)|CUT SHORT|exit 124: out of time' \
            "$W/$name/summary.txt" 2>/dev/null; then
        [[ " $NOT_RUN " == *" ${name%%_*} "* ]] || NOT_RUN="$NOT_RUN ${name%%_*}"
    fi
    pack
}

say "gpu-session on ${HOSTNAME:-$(uname -n)} at $(date -u +%FT%TZ): budget $BUDGET s, parts$PARTS, DRY=$DRY"
say "gpu: $(timeout 20 nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1)"

# The .deb files are unpacked once, here: parts run side by side, and each unpacking its own
# would rewrite libraries and data files while the others load them.
# shellcheck source=scripts/deps-root.sh
. "$(dirname "${BASH_SOURCE[0]}")/deps-root.sh"
unpack_deps || say "a package of $DEPS_DEBS did not unpack"

BENCH=(WORK="$W/bench-work" PREBUILT=1 BUILD_LOG="$W/build/build.log")
TRAIN=(WORK="$W/train-work" PREBUILT=1 BUILD_LOG="$W/build/build.log")
VERIFY=(DRY="$DRY")
VSTEPS="tests memcheck"
if [ "$DRY" = 1 ]; then
    # No GPU: the verify build (CUDA, sm_90) still compiles; the tools run on a CPU build, made
    # in the build part; no sanitizer.
    BENCH=(WORK="$W/bench-work" BUILD=build-dry PREBUILT=1)
    TRAIN=(WORK="$W/train-work" BUILD=build-dry PREBUILT=1)
    VERIFY=(DRY=1 TESTS_ARGS="idx_fashion cuda_roundtrip")
    VSTEPS=tests
fi

# ---- build ------------------------------------------------------------------------------------
if wanted build || [ ! -x "$BUILD/tests/run_tests" ] || [ ! -x "$BUILD/bin/cnnbench" ]; then
    part build 200 gpu-verify.sh STEPS=build "${VERIFY[@]}"
    if [ "$DRY" = 1 ]; then
        part build_dry 400 gpu-bench.sh WORK="$W/build-dry" BUILD=build-dry ONLY=none
    fi
    if [ ! -x "$BUILD/tests/run_tests" ]; then
        say "RESULT: the build failed; nothing else can run"
        pack
        exit 1
    fi
fi

# ---- fm alongside verify ----------------------------------------------------------------------
fm_pid=""
if wanted fm && wanted verify; then
    # In the background for as long as verify is planned to take. FM_EPOCHS, not a rate measured
    # first: that step spent its 40 s starting torch on the H200 (2026-12-04) and measured
    # nothing; the run itself went at 5.1 s an epoch there beside verify (15 epochs in 77 s,
    # 94.78%), so 32 epochs take about 165 s.
    if budget_for fm 250; then
        say "== fm (budget $L s, alongside verify, at $(($(date +%s) - START)) s)"
        fm_t0=$(date +%s)
        fm_epochs=${FM_EPOCHS:-32}
        [ "$DRY" = 1 ] && fm_epochs=2
        timeout -k 10 $((L + 30)) env "${TRAIN[@]}" ONLY=fashion_mnist FM_EPOCHS="$fm_epochs" \
            TIME_BUDGET="$L" OUT="$W/fm" DRY="$DRY" scripts/gpu-train.sh >"$W/fm.log" 2>&1 &
        fm_pid=$!
    fi
elif wanted fm; then
    part fm 260 gpu-train.sh ONLY="fm_rate fashion_mnist" "${TRAIN[@]}"
fi
# The default run: beside verify when both run, else on its own.
default_pid=""
if wanted default && wanted verify; then
    if budget_for default 170 60; then
        say "== default (budget $L s, alongside verify, at $(($(date +%s) - START)) s)"
        default_t0=$(date +%s)
        timeout -k 10 $((L + 30)) env "${TRAIN[@]}" WORK="$W/default-work" \
            ONLY="default_run default_run_graph" TIME_BUDGET="$L" OUT="$W/default" DRY="$DRY" \
            scripts/gpu-train.sh >"$W/default.log" 2>&1 &
        default_pid=$!
    fi
elif wanted default; then
    part default 170:60 gpu-train.sh ONLY="default_run default_run_graph" "${TRAIN[@]}" WORK="$W/default-work"
fi
if wanted verify; then
    part verify 250 gpu-verify.sh STEPS="$VSTEPS" "${VERIFY[@]}"
    # A step the budget cut short is for the next call: the suite again, or memcheck alone.
    if grep -q "^tests: .*out of time" "$W/verify/summary.txt" 2>/dev/null; then
        NOT_RUN="$NOT_RUN verify"
    elif grep -qE "^memcheck(_oom)?[ :].*out of time" "$W/verify/summary.txt" 2>/dev/null; then
        NOT_RUN="$NOT_RUN memcheck"
    fi
fi
wanted memcheck && part memcheck 200:60 gpu-verify.sh STEPS=memcheck "${VERIFY[@]}"
if [ -n "$default_pid" ]; then
    wait "$default_pid"
    finish_part default $? "$default_t0"
fi
if [ -n "$fm_pid" ]; then
    wait "$fm_pid"
    finish_part fm $? "$fm_t0"
fi

# ---- benchmarks, alone on the machine -----------------------------------------------------------
wanted bench && part bench 220:60 gpu-bench.sh "${BENCH[@]}" \
    ONLY="model_resnet50 torch_model_resnet50 model_vgg16 torch_model_vgg16 model_alexnet \
torch_model_alexnet model_lenet5 torch_model_lenet5 model_lenet5_graph model_lenet5_cuda \
model_alexnet_ws16g model_alexnet_layers torch_model_alexnet_layers model_resnet50_ws16g"
wanted conv && part conv 400:60 gpu-bench.sh "${BENCH[@]}" \
    ONLY="conv_r50_cudnn torch_conv_r50 conv_r50_cuda conv_r50_engines model_resnet50_engines \
model_alexnet_engines"
wanted jpeg && part jpeg 170:100 gpu-train.sh ONLY="gen_images loader_cpu r50_jpeg r50_synthetic loader_gpu" "${TRAIN[@]}"
if wanted extra; then
    if [ "$DRY" = 1 ]; then
        say "== extra: memcheck_models needs compute-sanitizer and a GPU (not in a DRY run)"
    else
        part extra_memcheck 150:60 gpu-verify.sh STEPS=memcheck_models
    fi
    part extra 200:60 gpu-bench.sh "${BENCH[@]}" \
        ONLY="model_resnet50_graph conv_r50_torch_cudnn ops_* torch_ops_* *_tf32 model_resnet50_cuda \
model_resnet50_nofuse layers torch_layers model_alexnet_layers_hand"
fi

[ -n "$NOT_RUN" ] && say "not run:$NOT_RUN (give these as PARTS to the next call)"
if [ "$status" -eq 0 ]; then say "RESULT: every part that ran passed ($(($(date +%s) - START)) s)"; else say "RESULT: FAILED (see the parts above; $(($(date +%s) - START)) s)"; fi
pack
exit "$status"
