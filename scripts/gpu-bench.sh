#!/usr/bin/env bash
# gpu-bench.sh — the benchmark call of a lent-GPU session (after scripts/gpu-verify.sh): cnnbench
# and bench/torch_reference.py side by side on the same GPU, most important numbers first, so a
# run cut short still brings back the ones that matter. Changes nothing outside its build
# folder, /tmp and $OUT; never touches the GPU's settings.
#
# Order: conv over ResNet-50's shapes at batch 64 (cuDNN, hand-written, PyTorch; FP32), the
# hand-written/cuDNN ratios per pass; models train + infer with peak memory (resnet50 b256,
# vgg16 b64, alexnet b256, lenet5 b256 32x32) against PyTorch, and lenet5 and resnet50 as CUDA
# graph replays (--graph); bn, pool, gemm, elementwise;
# then TF32 (conv and models); then ResNet-50 on the hand-written kernels and its per-layer
# breakdown. Each step gets at most what is left of TIME_BUDGET; a step cut short is reported
# and the next one starts.
#
# Output in $OUT (./gpu-out when unset), at most 5 files: summary.txt (also printed last),
# tables.md (compare / conv_ratio markdown tables), env.txt, json.tar.gz (every JSON), logs.tar.gz
# (every step's full output).
# Environment:
#   DEPS_DEBS    folder of .deb files (scripts/fetch-gpu-deps.sh: .deps), unpacked privately
#   TIME_BUDGET  seconds for the whole script (default 560); BUILD: build folder (build-gpu)
#   DRY=1        a run on this CPU machine: CUDA=0 build (default folder build-dry), --backend
#                cpu, torch --device cpu, tiny sizes; checks that everything runs end to end
#   PY           the python with torch (default: python3, else /usr/bin/python3)
#   SKIP         words of steps to leave out, e.g. "tf32 layers" (a word may be a pattern:
#                "ops_*")
#   ONLY         when set, words of the only steps that run (patterns too, e.g. "*model_vgg16")
#   WORK         work folder to use and keep (default: a fresh /tmp/cnn-bench); runs sharing it
#                see each other's JSON, and tables.md collects all their tables
#   PREBUILT=1   the build folder is already built on this machine (scripts/gpu-session.sh):
#                no make, only a check that the tools are there

# ---- shared with scripts/gpu-train.sh, which sources this file for the functions ----------------
gb_note() { echo "$*" | tee -a "$SUMMARY"; }

# Seconds left of the budget (minus what packing needs), at most $1.
gb_left() {
    local l=$((BUDGET - RESERVE - ($(date +%s) - START)))
    [ "$l" -gt "$1" ] && l=$1
    echo "$l"
}

# gb_wanted NAME: whether step NAME runs: it matches no word of SKIP and, when ONLY is set, one
# of ONLY's (words are shell patterns).
gb_wanted() {
    local w skip only
    read -ra skip <<<"${SKIP:-}"
    read -ra only <<<"${ONLY:-}"
    for w in "${skip[@]}"; do
        # shellcheck disable=SC2053 # the word is a pattern on purpose
        [[ $1 == $w ]] && return 1
    done
    [ ${#only[@]} -eq 0 ] && return 0
    for w in "${only[@]}"; do
        # shellcheck disable=SC2053
        [[ $1 == $w ]] && return 0
    done
    return 1
}

# gb_step NAME CAP CMD...: runs CMD with at most min(CAP, what is left) seconds (SIGTERM, then
# SIGKILL 5 s later; STEP_SIGNAL overrides the first), output in $W/NAME.log; one summary line.
# A step that SKIP or ONLY leaves out returns 0 and says so only for SKIP. In a work folder
# shared by several calls (WORK, scripts/gpu-session.sh), a step that ended well in an earlier
# call is not run again ($W/NAME.done; RERUN=1 runs it anyway): a part that a call's budget cut
# goes on in the next call from the step it had reached, its earlier results kept.
gb_step() {
    local name=$1 cap=$2 l t0 rc
    shift 2
    if ! gb_wanted "$name"; then
        [ -z "${ONLY:-}" ] && gb_note "$name: skipped (SKIP)"
        return 0
    fi
    if [ -n "${WORK:-}" ] && [ -f "$W/$name.done" ] && [ "${RERUN:-0}" != 1 ]; then
        gb_note "$name: ok in an earlier call (kept, not run again)"
        return 0
    fi
    # An earlier call's JSON of a step that fails now must not pair as this call's result.
    rm -f "$W/$name.done" "$W/$name.json"
    RAN_NOW="${RAN_NOW:-} $name "
    l=$(gb_left "$cap")
    if [ "$l" -lt "${MIN_STEP:-8}" ]; then
        gb_note "$name: skipped (out of time)"
        return 124
    fi
    t0=$(date +%s)
    timeout -k 5 -s "${STEP_SIGNAL:-TERM}" "$l" "$@" >"$W/$name.log" 2>&1
    rc=$?
    case $rc in
    0)
        gb_note "$name: ok ($(($(date +%s) - t0)) s)"
        [ -n "${WORK:-}" ] && : >"$W/$name.done"
        ;;
    124 | 137) gb_note "$name: CUT SHORT after $(($(date +%s) - t0)) s (limit $l s)" ;;
    *) gb_note "$name: FAILED exit $rc ($(($(date +%s) - t0)) s): $(grep -v '^\s*$' "$W/$name.log" | tail -1 | cut -c1-200)" ;;
    esac
    return $rc
}

# The python that has torch: $PY, python3, or Debian's /usr/bin/python3.
gb_python() {
    local p
    for p in ${PY:-} python3 /usr/bin/python3; do
        if timeout 120 "$p" -c 'import torch, torchvision' >/dev/null 2>&1; then
            echo "$p"
            return 0
        fi
    done
    echo python3
}

# Unpacks DEPS_DEBS (once per machine) and points the build and the runtime at it.
# shellcheck source=scripts/deps-root.sh
. "$(dirname "${BASH_SOURCE[0]}")/deps-root.sh"
gb_deps() {
    unpack_deps || return 1
    if [ -n "${DEPS_ROOT:-}" ]; then
        export DEPS_ROOT
        export CNN_FASHION_MNIST_DIR="${CNN_FASHION_MNIST_DIR:-$DEPS_ROOT/usr/share/datasets/fashion-mnist}"
        local l1="$DEPS_ROOT/usr/lib/x86_64-linux-gnu"
        export LD_LIBRARY_PATH="$l1:$l1/openblas-pthread${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    fi
}

# gb_setup NAME: the clock, the work folder /tmp/cnn-NAME, deps, python, build folder.
gb_setup() {
    START=$(date +%s)
    BUDGET=${TIME_BUDGET:-560}
    RESERVE=12
    DRY=${DRY:-0}
    OUT=${OUT:-$PWD/gpu-out}
    # WORK: a work folder shared by several runs (scripts/gpu-session.sh), kept; else a fresh one.
    W=${WORK:-/tmp/cnn-$1}
    [ -n "${WORK:-}" ] || rm -rf "$W"
    mkdir -p "$W" "$OUT"
    SUMMARY=$W/summary.txt
    : >"$SUMMARY"
    JOBS=${JOBS:-$(nproc)}
    if [ "$DRY" = 1 ]; then BUILD_DIR=${BUILD:-build-dry}; else BUILD_DIR=${BUILD:-build-gpu}; fi
    BIN=$BUILD_DIR/bin
    export PATH="/usr/local/cuda/bin:$PATH"
    export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
    PY=$(gb_python)
    gb_deps || gb_note "FAIL: unpacking $DEPS_DEBS"
    gb_note "$1 on ${HOSTNAME:-$(uname -n)} at $(date -u +%FT%TZ), budget ${BUDGET} s, DRY=$DRY, build $BUILD_DIR, python $PY"
}

# Builds the tools: on the GPU through gpu-verify.sh (sm_90, same flags as the test run; make
# rebuilds nothing when call 1 left build-gpu on this machine), CUDA=0 in a dry run.
gb_build() {
    if [ "${PREBUILT:-0}" = 1 ]; then
        :
    elif [ "$DRY" = 1 ]; then
        ONLY="" SKIP="" gb_step build 400 make BUILD="$BUILD_DIR" CUDA=0 -j"$JOBS" tools tests
    else
        ONLY="" SKIP="" gb_step build 300 env STEPS=build OUT="$W/verify" BUILD="$BUILD_DIR" \
            TIME_BUDGET="$(gb_left 300)" scripts/gpu-verify.sh
    fi
    [ -x "$BIN/cnnbench" ] || {
        gb_note "FAIL: $BIN/cnnbench was not built (see build.log)"
        return 1
    }
}

# What machine this is: GPU, driver, CUDA, cuDNN, torch.
gb_env() {
    # Once per work folder (a shared one already has it).
    if [ -s "$W/env.txt" ]; then return 0; fi
    {
        echo "== date"; date -u
        echo "== nvidia-smi"; timeout 20 nvidia-smi 2>&1 || echo "no nvidia-smi"
        timeout 20 nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit \
            --format=csv 2>&1
        echo "== nvcc"; nvcc --version 2>&1 | tail -2
        echo "== cpu"; nproc; grep -m1 'model name' /proc/cpuinfo
        echo "== torch"
        timeout 120 "$PY" -c 'import torch, torchvision; print(torch.__version__, torchvision.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version(), torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU")' 2>&1
        echo "== build"; grep -h -m1 '^libcnncuda:' "$W/verify/build.log" "$W/build.log" \
            ${BUILD_LOG:+"$BUILD_LOG"} 2>/dev/null | head -1
    } >"$W/env.txt" 2>&1
    gb_note "gpu: $(timeout 20 nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1)"
    gb_note "torch: $(grep -A1 '^== torch' "$W/env.txt" | tail -1)"
}

# gb_pack FILE...: what goes back: the summary and FILEs from $W, the JSONs and the logs tarred.
gb_pack() {
    local f
    for f in "$@"; do [ -f "$W/$f" ] && cp "$W/$f" "$OUT/"; done
    (cd "$W" && ls ./*.json >/dev/null 2>&1 && tar czf "$OUT/json.tar.gz" ./*.json)
    (cd "$W" && tar czf "$OUT/logs.tar.gz" --exclude='*.json' --exclude='*.tar.gz' \
        --exclude='data' --exclude='runs' --exclude='*.safetensors' . 2>/dev/null)
    cp "$SUMMARY" "$OUT/summary.txt"
}

# ---- the benchmark run ----------------------------------------------------------------------------
# ours NAME CAP ARGS...: cnnbench ARGS --json $W/NAME.json.
ours() {
    local name=$1 cap=$2
    shift 2
    gb_step "$name" "$cap" "$BIN/cnnbench" "$@" --json "$W/$name.json"
}

# theirs NAME CAP ARGS...: torch_reference.py ARGS --json $W/NAME.json.
theirs() {
    local name=$1 cap=$2
    shift 2
    gb_step "$name" "$cap" "$PY" bench/torch_reference.py "$@" --device "$TDEV" \
        --json "$W/$name.json"
}

# pair A B TITLE: compare's brief lines into the summary, its markdown table into tables.md
# (once: not again when both steps were kept from an earlier call, which wrote it).
pair() {
    # Only for a step of this run (a shared WORK holds earlier runs' JSON too).
    { gb_wanted "$1" || gb_wanted "$2"; } || return 0
    [ -f "$W/$1.json" ] && [ -f "$W/$2.json" ] || return 0
    [[ "${RAN_NOW:-}" == *" $1 "* || "${RAN_NOW:-}" == *" $2 "* ]] && {
        echo "### $3"
        echo
        bench/compare --markdown "$W/$1.json" "$W/$2.json"
        echo
    } >>"$W/tables.md" 2>&1
    bench/compare --brief "$W/$1.json" "$W/$2.json" 2>&1 | tee -a "$SUMMARY"
}

# layer_types NAME: the per-type totals of a --layers step of this run into the summary.
layer_types() {
    gb_wanted "$1" || return 0
    grep -hE '^(per type|layers timed alone)' "$W/$1.log" 2>/dev/null | cut -c1-700 |
        tee -a "$SUMMARY"
}

# ratio FILES...: the hand-written/cuDNN conv ratios per pass.
ratio() {
    local f have=()
    gb_wanted "$1" || return 0
    local now=0
    for f in "$@"; do
        [ -f "$W/$f.json" ] && have+=("$W/$f.json")
        [[ "${RAN_NOW:-}" == *" $f "* ]] && now=1
    done
    # Both backends' files, or no ratio (one alone would pair its rows with themselves in
    # a dry run, where both backends are the CPU).
    [ ${#have[@]} -eq $# ] || return 0
    [ "$now" = 1 ] && {
        echo "### hand-written / cuDNN conv throughput"
        echo
        bench/conv_ratio --markdown --num "$HAND" --den "$FAST" "${have[@]}"
        echo
    } >>"$W/tables.md" 2>&1
    bench/conv_ratio --num "$HAND" --den "$FAST" "${have[@]}" 2>&1 | grep -E '^(fwd|bwd_data|bwd_filter):' |
        tee -a "$SUMMARY"
}

bench_main() {
    set -uo pipefail
    cd "$(dirname "$0")/.." || exit 1
    gb_setup bench
    trap 'gb_pack tables.md env.txt' EXIT
    gb_build || exit 1
    gb_env
    local cb r50 mb vb ab lb sz vsz asz it mit oit lit tf32
    if [ "$DRY" = 1 ]; then
        # TF32 is a GPU math mode: cnnbench refuses --tf32 with the cpu backend.
        FAST=cpu HAND=cpu GPUS=cpu TDEV=cpu tf32=()
        cb=1 mb=2 vb=1 ab=2 lb=8 sz=(--img-size 64) vsz=(--img-size 32) asz=(--img-size 64)
        it=(--warmup 0 --iters 1) mit=(--warmup 1 --iters 2) oit=(--warmup 0 --iters 1)
        lit=(--warmup 1 --iters 2)
        r50=(--shapes resnet50 --batch 1)
    else
        FAST=cudnn HAND=cuda GPUS=gpu TDEV=cuda tf32=(--tf32)
        cb=64 mb=256 vb=64 ab=256 lb=256 sz=() vsz=() asz=()
        it=(--warmup 2 --iters 10) mit=(--warmup 3 --iters 10) oit=(--warmup 3 --iters 20)
        lit=(--warmup 10 --iters 100)
        r50=(--shapes resnet50 --batch "$cb")
    fi
    # 1. conv, FP32: ours (cuDNN, hand-written) and PyTorch; the ratios.
    ours conv_r50_cudnn 150 conv "${r50[@]}" --backend "$FAST" "${it[@]}"
    theirs torch_conv_r50 90 conv "${r50[@]}" "${it[@]}"
    pair conv_r50_cudnn torch_conv_r50 "conv, ResNet-50 shapes, batch $cb, FP32: cuDNN vs PyTorch"
    ours conv_r50_cuda 180 conv "${r50[@]}" --backend "$HAND" "${it[@]}"
    ratio conv_r50_cuda conv_r50_cudnn
    # The cuDNN search with the graph API's engines as candidates too (CNN_CUDNN_ENGINES=1, off
    # by default), per shape against PyTorch (which reaches cuDNN that way).
    gb_step conv_r50_engines 150 env CNN_CUDNN_ENGINES=1 "$BIN/cnnbench" conv "${r50[@]}" \
        --backend "$FAST" "${it[@]}" --json "$W/conv_r50_engines.json"
    pair conv_r50_engines torch_conv_r50 "conv, ResNet-50 shapes, batch $cb, FP32: cuDNN with graph-API engines vs PyTorch"
    # The same search on the cuDNN that PyTorch loads (its wheel's own, 9.19 on 2026-12-04, where
    # ours loads the system's 9.14): whether what is left of the per-shape gap is the library's
    # version or our dispatch. The JSON's cudnn_version says which one ran.
    if [ "$DRY" != 1 ] && gb_wanted conv_r50_torch_cudnn; then
        local tdir
        tdir=$(timeout 120 "$PY" -c 'import torch; torch.backends.cudnn.version()
import os; print(next((os.path.dirname(l.split()[-1]) for l in open("/proc/self/maps")
    if "/libcudnn.so" in l), ""))' 2>/dev/null)
        if [ -n "$tdir" ]; then
            gb_step conv_r50_torch_cudnn 150 env LD_LIBRARY_PATH="$tdir:${LD_LIBRARY_PATH:-}" \
                CNN_CUDNN_ENGINES=1 "$BIN/cnnbench" conv "${r50[@]}" --backend "$FAST" "${it[@]}" \
                --json "$W/conv_r50_torch_cudnn.json"
            pair conv_r50_torch_cudnn torch_conv_r50 "conv, ResNet-50 shapes, batch $cb, FP32: cuDNN with engines, on PyTorch's cuDNN ($tdir), vs PyTorch"
        else
            gb_note "conv_r50_torch_cudnn: PyTorch's libcudnn not found"
        fi
    fi
    # 2. models, FP32 (peak memory from the train row).
    local m b s
    for m in resnet50 vgg16 alexnet lenet5; do
        case $m in
        resnet50) b=$mb s=("${sz[@]}") ;;
        vgg16) b=$vb s=("${vsz[@]}") ;;
        alexnet) b=$ab s=("${asz[@]}") ;;
        lenet5) b=$lb s=() ;;
        esac
        local i=("${mit[@]}")
        [ $m = lenet5 ] && i=("${lit[@]}")
        ours "model_$m" 120 model $m --batch "$b" "${s[@]}" --backend "$FAST" "${i[@]}"
        theirs "torch_model_$m" 90 model $m --batch "$b" "${s[@]}" "${i[@]}"
        pair "model_$m" "torch_model_$m" "$m train + infer, batch $b, FP32"
    done
    # CUDA graphs (cnnbench --graph, cnn_graph_capture): the step captured once and replayed,
    # without the host's cost per op; LeNet-5 (the 3x goal is about host time) and ResNet-50.
    if [ "$DRY" = 1 ]; then
        gb_note "model_lenet5_graph, model_resnet50_graph: not in a DRY run (CUDA graphs need a GPU)"
    else
        ours model_lenet5_graph 60 model lenet5 --batch "$lb" --backend "$FAST" --graph "${lit[@]}"
        pair model_lenet5_graph torch_model_lenet5 "lenet5 train + infer, batch $lb, FP32, CUDA graph replays"
        ours model_resnet50_graph 120 model resnet50 --batch "$mb" "${sz[@]}" --backend "$FAST" --graph "${mit[@]}"
        pair model_resnet50_graph torch_model_resnet50 "resnet50 train + infer, batch $mb, FP32, CUDA graph replays"
    fi
    # Training behind PyTorch's on the H200 (2026-12-04: ResNet-50 0.79x, AlexNet 0.57x, where
    # inference was level): whether cuDNN's 1 GiB workspace cap (PyTorch sets none) left its
    # fastest backward algorithms out at these batches, whether the graph API's engines (as
    # PyTorch reaches cuDNN) do better, and where AlexNet's step time goes.
    local v setting what
    for v in ws16g engines; do
        setting=CNN_CUDNN_WORKSPACE_MB=16384 what="16 GiB workspace cap"
        [ $v = engines ] && setting=CNN_CUDNN_ENGINES=1 what="graph-API engines"
        for m in resnet50 alexnet; do
            b=$mb s=("${sz[@]}")
            [ $m = alexnet ] && b=$ab s=("${asz[@]}")
            gb_step "model_${m}_$v" 120 env "$setting" "$BIN/cnnbench" model $m --batch "$b" \
                "${s[@]}" --backend "$FAST" "${mit[@]}" --json "$W/model_${m}_$v.json"
            pair "model_${m}_$v" "torch_model_$m" "$m train + infer, batch $b, FP32, $what"
        done
    done
    ours model_alexnet_layers 90 model alexnet --batch "$ab" "${asz[@]}" --backend "$FAST" \
        --layers "${mit[@]}"
    layer_types model_alexnet_layers
    theirs torch_model_alexnet_layers 90 model alexnet --batch "$ab" "${asz[@]}" --layers "${mit[@]}"
    pair model_alexnet_layers torch_model_alexnet_layers "alexnet layer by layer, batch $ab, FP32"
    # What fusion gains (conv + add + ReLU in one op; BN folded in inference): ResNet-50 with
    # every layer alone.
    ours model_resnet50_nofuse 120 model resnet50 --batch "$mb" "${sz[@]}" --backend "$FAST" --no-fusion "${mit[@]}"
    pair model_resnet50_nofuse torch_model_resnet50 "resnet50 train + infer, batch $mb, FP32, no fusion"
    # LeNet-5's step is mostly host time (the >= 3x goal): on the hand-written kernels it makes
    # no cuDNN calls, so the two rows show what cuDNN's host cost per call adds.
    ours model_lenet5_cuda 60 model lenet5 --batch "$lb" --backend "$HAND" "${lit[@]}"
    pair model_lenet5_cuda torch_model_lenet5 "lenet5 train + infer, batch $lb, FP32, hand-written kernels"
    # 3. the other kernels, both GPU backends.
    local k
    for k in bn pool gemm elementwise; do
        local extra=(--batch "$cb")
        [ $k = gemm ] && extra=(--mnk "$([ "$DRY" = 1 ] && echo 128,128,128 || echo 8192,8192,8192)")
        ours "ops_$k" 60 $k --backend "$GPUS" "${extra[@]}" "${oit[@]}"
        theirs "torch_ops_$k" 45 $k "${extra[@]}" "${oit[@]}"
        pair "ops_$k" "torch_ops_$k" "$k, FP32"
    done
    # 4. TF32: conv (both backends) and the big models.
    if [[ " ${SKIP:-} " != *" tf32 "* ]]; then
        ours conv_r50_cudnn_tf32 150 conv "${r50[@]}" --backend "$FAST" "${tf32[@]}" "${it[@]}"
        theirs torch_conv_r50_tf32 90 conv "${r50[@]}" "${tf32[@]}" "${it[@]}"
        pair conv_r50_cudnn_tf32 torch_conv_r50_tf32 "conv, ResNet-50 shapes, batch $cb, TF32: cuDNN vs PyTorch"
        for m in resnet50 vgg16 alexnet; do
            case $m in
            resnet50) b=$mb s=("${sz[@]}") ;;
            vgg16) b=$vb s=("${vsz[@]}") ;;
            alexnet) b=$ab s=("${asz[@]}") ;;
            esac
            ours "model_${m}_tf32" 100 model $m --batch "$b" "${s[@]}" --backend "$FAST" "${tf32[@]}" "${mit[@]}"
            theirs "torch_model_${m}_tf32" 80 model $m --batch "$b" "${s[@]}" "${tf32[@]}" "${mit[@]}"
            pair "model_${m}_tf32" "torch_model_${m}_tf32" "$m train + infer, batch $b, TF32"
        done
        ours conv_r50_cuda_tf32 180 conv "${r50[@]}" --backend "$HAND" "${tf32[@]}" "${it[@]}"
        ratio conv_r50_cuda_tf32 conv_r50_cudnn_tf32
    fi
    # 5. ResNet-50 on the hand-written kernels end to end, and where its step goes.
    ours model_resnet50_cuda 120 model resnet50 --batch "$mb" "${sz[@]}" --backend "$HAND" "${mit[@]}"
    pair model_resnet50_cuda torch_model_resnet50 "resnet50 train + infer, batch $mb, FP32, hand-written kernels"
    ours layers 150 model resnet50 --batch "$cb" "${sz[@]}" --backend "$FAST" --layers "${mit[@]}"
    layer_types layers
    theirs torch_layers 120 model resnet50 --batch "$cb" "${sz[@]}" --layers "${mit[@]}"
    pair layers torch_layers "resnet50 layer by layer, batch $cb, FP32"
    # AlexNet's layers on the hand-written kernels: beside the cuDNN rows above, which of the
    # two pools (and bias gradients, in the conv rows) is faster.
    ours model_alexnet_layers_hand 90 model alexnet --batch "$ab" "${asz[@]}" --backend "$HAND" \
        --layers "${mit[@]}"
    layer_types model_alexnet_layers_hand
    pair model_alexnet_layers_hand torch_model_alexnet_layers "alexnet layer by layer, batch $ab, FP32, hand-written kernels"
    gb_pack tables.md env.txt
    trap - EXIT
    echo "==== summary ($OUT/summary.txt; full tables in tables.md, JSON in json.tar.gz)"
    cat "$SUMMARY"
    grep -qE 'FAILED|MISMATCH|FAIL:' "$SUMMARY" && exit 1
    exit 0
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then bench_main "$@"; fi
