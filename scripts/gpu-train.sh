#!/usr/bin/env bash
# gpu-train.sh — the training call of a lent-GPU session: (1) Fashion-MNIST with resnet18_small
# through train_imagenet_subset, epochs chosen from a measured step rate to fit the budget, goal
# >= 95% test top-1; (2) a generated ImageNet-layout JPEG folder: the loader's decode rate per
# worker, then ResNet-50 training img/s with real decoding (16 workers) against cnnbench's
# synthetic-data step at the same batch (goal: within 10%); (3) the default run, the tool with
# no arguments (LeNet-5 on Fashion-MNIST, on the GPU; goal >= 89%). Shares gpu-bench.sh's machinery;
# changes nothing outside its build folder, /tmp and $OUT; never touches the GPU's settings.
#
# Output in $OUT (./gpu-out when unset): summary.txt (also printed last), env.txt, metrics.csv
# (the Fashion-MNIST run's per-epoch table), json.tar.gz, logs.tar.gz.
# Environment (besides gpu-bench.sh's DEPS_DEBS, TIME_BUDGET, BUILD, DRY, PY, SKIP):
#   FM_EPOCHS    Fashion-MNIST epochs (default: what fits FM_SECONDS at the measured rate)
#   FM_SECONDS   seconds for the Fashion-MNIST run (default 300, less when the budget is short)
#   FM_SHARE     the share of the measured synthetic step rate the run is planned at (default
#                0.65; less when something else shares the GPU)
#   FM_TF32      1 (default): TF32 convs for the Fashion-MNIST run; 0: exact FP32
#   R50_TF32     1: TF32 for the ResNet-50 throughput pair (default 0, FP32 as issue 6's table)
#   WORKERS      decoding threads for the JPEG runs (default 16)
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
# shellcheck source=scripts/gpu-bench.sh
. scripts/gpu-bench.sh

# field FILE MODEL PASS KEY: one number from a cnnbench JSON ("" when absent).
field() {
    "$PY" - "$@" <<'EOF' 2>/dev/null
import json, sys
path, name, pas, key = sys.argv[1:5]
for r in json.load(open(path))["results"]:
    if r["name"] == name and r["pass"] == pas and key in r:
        print("%.6g" % r[key])
        break
EOF
}

# The last "epoch N/M ... (X img/s, data wait Y%)" line of a train_imagenet_subset log:
# "N X Y" (epoch, img/s, data-wait %), or nothing.
last_epoch() {
    sed -n 's/^epoch \([0-9]*\)\/[0-9]* .*(\([0-9.]*\) img\/s, data wait \([0-9.]*\)%).*/\1 \2 \3/p' "$1" | tail -1
}

train_main() {
    gb_setup train
    trap 'gb_pack env.txt metrics.csv' EXIT
    gb_build || exit 1
    gb_env
    local T=$BIN/train_imagenet_subset dev=cuda be=cudnn workers=${WORKERS:-16}
    local fm_tf32=() r50_tf32=()
    [ "${FM_TF32:-1}" = 1 ] && fm_tf32=(--tf32)
    [ "${R50_TF32:-0}" = 1 ] && r50_tf32=(--tf32)
    if [ "$DRY" = 1 ]; then dev=cpu be=cpu workers=${WORKERS:-2}; fi

    if gb_wanted fm_rate || gb_wanted fashion_mnist; then fashion_mnist_part; fi
    if gb_wanted gen_images; then jpeg_part; fi
    if gb_wanted default_run; then default_part; fi

    gb_pack env.txt metrics.csv
    trap - EXIT
    echo "==== summary ($OUT/summary.txt; logs in logs.tar.gz)"
    cat "$SUMMARY"
    grep -qE 'FAILED|FAIL:' "$SUMMARY" && exit 1
    exit 0
}

# ---- 1. Fashion-MNIST, resnet18_small ----------------------------------------------------------
# Uses train_main's locals (T dev be workers fm_tf32 r50_tf32) through bash's dynamic scope.
# Work per image: 0.46 GMACs forward at 28x28, x3 for a training step = 2.7 GFLOP; an epoch
# (60k train + 10k test forward) is ~175 TFLOP: ~6 s at 30 TFLOP/s. The step rate measured
# here replaces that guess.
fashion_mnist_part() {
    local cal=(--batch 128 --img-size 28 --warmup 5 --iters 20)
    [ "$DRY" = 1 ] && cal=(--batch 8 --img-size 28 --warmup 0 --iters 2)
    gb_step fm_rate 60 "$BIN/cnnbench" model resnet18_small "${cal[@]}" --backend "$be" \
        "${fm_tf32[@]}" --no-peak --json "$W/fm_rate.json"
    local ips epochs secs share=${FM_SHARE:-0.65}
    ips=$(field "$W/fm_rate.json" resnet18_small train img_per_s)
    gb_wanted fashion_mnist || return 0
    # What is left after part 2 needs ~170 s (generation, loader, 3 ResNet-50 epochs, synthetic).
    secs=${FM_SECONDS:-300}
    local reserve=0
    gb_wanted gen_images && reserve=170
    local room=$(($(gb_left 100000) - reserve))
    [ "$room" -lt "$secs" ] && secs=$room
    if [ -n "${FM_EPOCHS:-}" ]; then
        epochs=$FM_EPOCHS
    elif [ "$DRY" = 1 ]; then
        epochs=2
    else
        # FM_SHARE (65%) of the synthetic rate (loader, logits read back every step,
        # validation), 60k train + 10k test images (test at ~3x the training rate), 4 to 40
        # epochs.
        epochs=$(awk -v r="${ips:-0}" -v s="$secs" -v f="$share" 'BEGIN {
            e = r > 0 ? int(s * f * r / 63333) : 15; print (e < 4 ? 4 : e > 40 ? 40 : e) }')
    fi
    local per
    per=$(awk -v r="${ips:-0}" -v f="$share" 'BEGIN { if (r > 0) printf "%.1f", 63333 / r / f; else print "?" }')
    gb_note "fashion-mnist plan: resnet18_small, synthetic rate ${ips:-?} img/s -> $epochs" \
        "epochs in <= ${secs} s (est. $per s/epoch)"
    local fm=(--data fashion-mnist --model resnet18_small --epochs "$epochs" --batch 128
        --optimizer sgd --lr 0.1 --momentum 0.9 --weight-decay 5e-4 --schedule cosine
        --warmup-epochs 1 --label-smoothing 0.1 --workers 4 --device "$dev" --seed 1
        --checkpoint-dir "$W/runs/fm")
    # Augmentation, where the tool offers it: random flips and shifts, as the 0.949 ResNet18
    # entry of the Fashion-MNIST benchmark used, and random erasing, which Zhong et al. (2017)
    # found worth 0.9 points on Fashion-MNIST with ResNet-18 (5.17% -> 4.31% error).
    local help
    help=$(timeout 20 "$T" --help 2>&1)
    [[ "$help" == *"--hflip"* ]] && fm+=(--hflip 0.5)
    [[ "$help" == *"--translate"* ]] && fm+=(--translate 0.1)
    [[ "$help" == *"--random-erase"* ]] && fm+=(--random-erase 0.5)
    [ "$DRY" = 1 ] && fm+=(--limit-train 128 --limit-val 128 --batch 32 --warmup-epochs 0)
    [ "$DRY" = 1 ] || fm+=("${fm_tf32[@]}")
    # A run an earlier call's budget cut (SIGINT: the tool saved last.safetensors) goes on from
    # its checkpoint, with the settings it keeps there; else a new run in a clean folder (the
    # tool refuses a folder holding another run's).
    if [ -n "${WORK:-}" ] && [ -f "$W/fashion_mnist.done" ]; then
        : # finished in an earlier call: gb_step keeps its results
    elif [ -n "${WORK:-}" ] && [ -f "$W/runs/fm/last.safetensors" ]; then
        gb_note "fashion-mnist: resuming the run an earlier call began"
        fm=(--resume "$W/runs/fm/last.safetensors" --workers 4 --device "$dev")
    else
        rm -rf "$W/runs/fm"
    fi
    STEP_SIGNAL=INT gb_step fashion_mnist $((secs + 30)) "$T" "${fm[@]}"
    cp "$W/runs/fm/metrics.csv" "$W/metrics.csv" 2>/dev/null
    local best final
    best=$(grep -o 'best val top-1 [0-9.]*% at epoch [0-9]*' "$W/fashion_mnist.log" | tail -1)
    final=$(grep -o '^epoch [0-9]*/[0-9]* .*top-1 [0-9.]*%' "$W/fashion_mnist.log" | tail -1 |
        sed 's/.*epoch \([0-9]*\/[0-9]*\).*top-1 \([0-9.]*%\)/epoch \1 top-1 \2/')
    read -r e fr fw <<<"$(last_epoch "$W/fashion_mnist.log")"
    gb_note "fashion-mnist: ${best:-no completed epoch}; last ${final:-none}; ${fr:-?} img/s," \
        "data wait ${fw:-?}% ($(grep -o 'wall time [0-9.]* s' "$W/fashion_mnist.log" | tail -1))"
    if [ -n "$best" ]; then
        local acc=${best#best val top-1 }
        acc=${acc%%%*}
        gb_note "fashion-mnist goal >= 95.00%: $(awk -v a="$acc" 'BEGIN { print (a >= 95 ? "MET" : "not met") }')"
    fi
}

# ---- 3. The default run ----------------------------------------------------------------------
# Exactly what `make demo` runs: train_imagenet_subset with no arguments, in its own folder (it
# writes runs/ there). It must pick the GPU by itself and reach >= 89% test top-1 (issue 5, item
# 6). DRY: one short epoch on the CPU, which only checks the plumbing.
default_part() {
    local args=() d=$W/default t=$T
    [[ $t == /* ]] || t=$PWD/$t
    [ "$DRY" = 1 ] && args=(--epochs 1 --limit-train 512 --limit-val 256)
    mkdir -p "$d"
    (cd "$d" && gb_step default_run 150 "$t" "${args[@]}")
    local head best acc
    head=$(grep -m1 '^train_imagenet_subset' "$W/default_run.log")
    best=$(grep -o 'best val top-1 [0-9.]*% at epoch [0-9]*' "$W/default_run.log" | tail -1)
    gb_note "default run: ${head#train_imagenet_subset }; ${best:-no completed epoch}" \
        "($(grep -o 'wall time [0-9.]* s' "$W/default_run.log" | tail -1))"
    if [ "$DRY" != 1 ] && [[ "$head" != *" on cuda"* ]]; then
        gb_note "default run: FAILED: it did not choose the GPU"
    fi
    if [ -n "$best" ]; then
        acc=${best#best val top-1 }
        acc=${acc%%%*}
        gb_note "default run goal >= 89.00%: $(awk -v a="$acc" 'BEGIN { print (a >= 89 ? "MET" : "not met") }')"
    fi
    # The same run with the training step replayed from a CUDA graph (--cuda-graph): the wall
    # time LeNet-5's host-bound steps save.
    [ "$DRY" = 1 ] && return 0
    (cd "$d" && gb_step default_run_graph 150 "$t" --cuda-graph)
    gb_note "default run --cuda-graph: $(grep -o 'best val top-1 [0-9.]*% at epoch [0-9]*' \
"$W/default_run_graph.log" | tail -1) ($(grep -o 'wall time [0-9.]* s' "$W/default_run_graph.log" | tail -1)); \
$(grep -m1 -e '--cuda-graph:' "$W/default_run_graph.log")"
}

# ---- 2. JPEG folder: decoding vs synthetic data ------------------------------------------------
jpeg_part() {
    local D=/tmp/cnn-imagefolder gen=(--classes 10 --train 500 --val 50 --procs "$(nproc)")
    [ "$DRY" = 1 ] && gen=(--classes 2 --train 8 --val 4 --size 160x120 --procs 2)
    # The folder an earlier call generated is kept for this one (its gen_images step is done).
    if [ ! -f "$W/gen_images.done" ] || [ ! -d "$D/train" ]; then rm -rf "$D" "$W/gen_images.done"; fi
    gb_step gen_images 90 "$PY" scripts/gen_image_folder.py "$D" "${gen[@]}"
    grep -h '^wrote' "$W/gen_images.log" | tee -a "$SUMMARY"
    local lb=(--batch 256 --warmup 3 --iters 15) rb=(--batch 256) isz=()
    if [ "$DRY" = 1 ]; then lb=(--batch 4 --warmup 1 --iters 3) rb=(--batch 4) isz=(--img-size 64); fi
    gb_step loader_cpu 45 "$BIN/cnnbench" loader "$D" --workers "$workers" "${lb[@]}" "${isz[@]}" \
        --backend cpu --json "$W/loader_cpu.json"
    grep -h '^delivered' "$W/loader_cpu.log" | sed 's/^/loader (to the CPU): /' | tee -a "$SUMMARY"
    local tr=("$T" --data "$D" --model resnet50 "${rb[@]}" --epochs 3 --optimizer sgd --lr 0.02
        --workers "$workers" --device "$dev" --seed 1 --checkpoint-dir "$W/runs/r50")
    [ "$DRY" = 1 ] && tr+=("${isz[@]}" --epochs 2)
    [ "$DRY" = 1 ] || tr+=("${r50_tf32[@]}")
    rm -rf "$W/runs/r50"
    STEP_SIGNAL=INT gb_step r50_jpeg 150 "${tr[@]}"
    grep -h '^training data:' "$W/r50_jpeg.log" | sed 's/^/resnet50 JPEG run, /' | tee -a "$SUMMARY"
    local syn=("${rb[@]}" --warmup 3 --iters 10)
    [ "$DRY" = 1 ] && syn=("${rb[@]}" "${isz[@]}" --warmup 0 --iters 2)
    gb_step r50_synthetic 90 "$BIN/cnnbench" model resnet50 "${syn[@]}" --backend "$be" \
        "${r50_tf32[@]}" --no-peak --json "$W/r50_synthetic.json"
    local real wait sy
    read -r e real wait <<<"$(last_epoch "$W/r50_jpeg.log")"
    sy=$(field "$W/r50_synthetic.json" resnet50 train img_per_s)
    local verdict
    verdict=$(awk -v a="${real:-0}" -v b="${sy:-0}" 'BEGIN { if (a > 0 && b > 0)
        printf "ratio %.3f, goal >= 0.90 %s", a / b, (a / b >= 0.9 ? "MET" : "not met")
        else print "no ratio" }')
    gb_note "resnet50 batch ${rb[1]}: JPEG folder ${real:-?} img/s (epoch ${e:-?}, data wait" \
        "${wait:-?}%), synthetic ${sy:-?} img/s: $verdict"
    gb_step loader_gpu 45 "$BIN/cnnbench" loader "$D" --workers "$workers" "${lb[@]}" "${isz[@]}" \
        --backend "$be" --json "$W/loader_gpu.json"
    grep -h '^delivered' "$W/loader_gpu.log" | sed "s/^/loader (to $dev): /" | tee -a "$SUMMARY"
    [ -n "${WORK:-}" ] || rm -rf "$D"
}

train_main "$@"
