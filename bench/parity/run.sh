#!/usr/bin/env bash
# The parity harness: yolod against Ultralytics 8.1.47 (../shared/peer) step by step, from the
# same initial weights on the same images, augmentation off.
#   1. initial weights: yolod's for seeds 0, 1, 2 against Ultralytics' for the same seeds
#   2. one training step (batch 8 at 320 px): raw outputs, loss terms, the assigner's foreground
#      and targets, BatchNorm statistics and every parameter's gradient, for each CPU layout of
#      yolod: LibTorch's ops in float32 (the reference), the fused BatchNorm in NCHW, the blocked
#      layout (the default), and the blocked layout keeping x̂ in bfloat16 (YOLO_BN_BF16=1)
#   3. whole training runs with each trainer's own loop and loader (40 epochs of 8 batches of 8
#      images at 128 px, shuffled, augmentation off: 320 iterations through warmup,
#      accumulation, clipping and EMA): how far the EMA's weights drift apart, beside how far
#      two runs drift that differ by rounding only
#   4. augmentation statistics over a few thousand training samples, default augmentation, on
#      the shapes set and the mixed-shapes set: objects per image, box sizes and aspect ratios,
#      colour statistics, with a two-sample test each
#   5. augmentation draw by draw: the visiting order and the mosaic buffer at every sample of
#      three epochs; the mosaic, affine, HSV and flips of 500 samples per kind (mosaic on and off,
#      square and mixed-size images) with yolod's random draws put through Ultralytics'
#      transforms; and one training step on augmented mosaic batches (70-100 overlapping boxes)
# Prints a table per comparison, worst relative difference first; exits 1 if any is outside
# its limit. About 30 minutes on 2 cores.
# Usage: bench/parity/run.sh [SECTION ...]   (default: 1 2 3 4 5)
#   env: EPOCHS=40 SAMPLES=4096 THREADS=2 PEER_DIR=~/.cache/yolod-peer PY=/usr/bin/python3
#        PARITY_DIR=dir (default: a new temporary folder)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
EPOCHS=${EPOCHS:-40}
SAMPLES=${SAMPLES:-4096}
THREADS=${THREADS:-2}
WORKER=build/server/worker/yolo-worker
TOOL=build/bench/parity_tool
[[ -x $WORKER && -x $TOOL ]] || scripts/build.sh

source bench/parity/peer_env.sh
export OMP_NUM_THREADS=$THREADS

T=${PARITY_DIR:-$(mktemp -d)}
mkdir -p "$T"
echo "parity harness: files in $T"
"$WORKER" make-dataset shapes out="$T/step-data" train=8 val=2 imgsz=320 seed=0 >/dev/null
"$WORKER" make-dataset shapes out="$T/train-data" train=64 val=16 imgsz=128 seed=0 >/dev/null
# Ultralytics resolves a relative `path:` against its own datasets folder: give it an absolute one.
"$PY" "$SHARED_PEER/resolve_data.py" "$T/train-data/data.yaml" "$T/train-data-peer.yaml"
status=0
SECTIONS=" ${*:-1 2 3 4 5} "
want() { [[ $SECTIONS == *" $1 "* ]]; }

for seed in 0 1 2; do
  "$TOOL" init scale=n nc=3 seed=$seed out="$T/init-$seed" >/dev/null
done
if want 1; then
echo -e "\n== 1. initial weights"
for seed in 0 1 2; do
  peer init --yolod "$T/init-$seed/init.state" --nc 3 --seed $seed || status=1
done

fi

if want 2; then
echo -e "\n== 2. one training step"
for mode in reference fused-nchw blocked blocked-bf16; do
  case $mode in
    reference) env=(YOLO_BLOCKED_LAYOUT=0 YOLO_FUSED_BN=0) ;;
    fused-nchw) env=(YOLO_BLOCKED_LAYOUT=0) ;;
    blocked) env=() ;;
    blocked-bf16) env=(YOLO_BN_BF16=1) ;;
  esac
  echo -e "\n-- $mode"
  env "${env[@]}" "$TOOL" step data="$T/step-data/data.yaml" state="$T/init-0/init.state" \
    out="$T/step-$mode.pt" imgsz=320 batch=8
  rm -f "$T/step-$mode.txt"
  peer step --state "$T/init-0/init.state" --yolod "$T/step-$mode.pt" --report "$T/step-$mode.txt" ||
    status=1
  echo "(every layer: $T/step-$mode.txt)"
done

fi

if want 3; then
echo -e "\n== 3. training runs ($EPOCHS epochs, batch 8, 128 px, augmentation off, shuffled)"
# Rounding alone makes two runs drift apart over hundreds of AdamW steps, so the yardstick is
# how far two runs drift that differ by rounding only: Ultralytics on 1 and on 2 threads, and
# yolod in its two CPU layouts. yolod against Ultralytics should drift no further.
SAVE=(1 2 3 5 10 20 "$EPOCHS")
for threads in 2 1; do
  peer train --state "$T/init-0/init.state" --data "$T/train-data-peer.yaml" \
    --out "$T/peer-t$threads" --project "$T/peer-runs" --epochs "$EPOCHS" --imgsz 128 --batch 8 \
    --threads $threads --save-epochs "${SAVE[@]}" >"$T/peer-train-t$threads.log" 2>&1 ||
    { tail -20 "$T/peer-train-t$threads.log"; exit 1; }
done
NOAUG=(mosaic=0 mixup=0 hsv_h=0 hsv_s=0 hsv_v=0 degrees=0 translate=0 scale=0 shear=0
  perspective=0 flipud=0 fliplr=0 close_mosaic=0)
for mode in reference blocked; do
  env=()
  [[ $mode == reference ]] && env=(YOLO_BLOCKED_LAYOUT=0 YOLO_FUSED_BN=0)
  rm -rf "$T/runs/$mode"
  env "${env[@]}" "$WORKER" train data="$T/train-data/data.yaml" model="$T/init-0/init.pt" \
    imgsz=128 batch=8 epochs="$EPOCHS" workers=0 threads="$THREADS" val=False plots=False \
    save_period=1 project="$T/runs" name=$mode "${NOAUG[@]}" >"$T/yolod-train-$mode.log" 2>&1 ||
    { tail -20 "$T/yolod-train-$mode.log"; exit 1; }
  for e in "${SAVE[@]}"; do
    "$TOOL" export ckpt="$T/runs/$mode/weights/epoch$e.pt" out="$T/yolod-$mode.e$e.pt"
  done
done
echo "training losses per epoch (box, cls, dfl), yolod's reference layout | Ultralytics, 2 threads:"
paste <(grep -E "^ +[0-9]+/$EPOCHS " "$T/yolod-train-reference.log" | awk '{print $1, $3, $4, $5}') \
  <(tr '\r' '\n' <"$T/peer-train-t2.log" | grep -E "^ +[0-9]+/$EPOCHS .* 8/8 \[" |
    awk '!seen[$1]++ {print $3, $4, $5}') | sed -n "1,5p;10p;20p;${EPOCHS}p"
peer diverge --epochs "${SAVE[@]}" \
  --pair "Ultralytics 1 vs 2 threads=$T/peer-t1.e{}.pt,$T/peer-t2.e{}.pt" \
    "yolod blocked vs reference=$T/yolod-blocked.e{}.pt,$T/yolod-reference.e{}.pt" \
    "yolod reference vs Ultralytics=$T/yolod-reference.e{}.pt,$T/peer-t2.e{}.pt" \
    "yolod blocked vs Ultralytics=$T/yolod-blocked.e{}.pt,$T/peer-t2.e{}.pt"

fi

# 256 training images of a kind (mixed-shapes: long side 240-640) in $T/aug-KIND.
aug_data() {
  local size=320
  [[ $1 == mixed-shapes ]] && size=640
  [[ -f $T/aug-$1-peer.yaml ]] && return
  "$WORKER" make-dataset "$1" out="$T/aug-$1" train=256 val=8 imgsz=$size seed=0 >/dev/null
  "$PY" "$SHARED_PEER/resolve_data.py" "$T/aug-$1/data.yaml" "$T/aug-$1-peer.yaml"
}

if want 4; then
echo -e "\n== 4. augmentation statistics (default augmentation, mosaic on; $SAMPLES samples each)"
# Each pipeline with augmentation seeds 0 and 1: yolod against Ultralytics for each seed, and
# each pipeline against itself across seeds, which shows what the test gives for no difference.
for kind in shapes mixed-shapes; do
  aug_data $kind
  for seed in 0 1; do
    "$TOOL" augment data="$T/aug-$kind/data.yaml" out="$T/aug-$kind-yolod-s$seed.pt" imgsz=320 \
      batch=16 samples="$SAMPLES" seed=$seed >/dev/null
    peer augment --data "$T/aug-$kind-peer.yaml" --out "$T/aug-$kind-peer-s$seed.pt" --imgsz 320 \
      --batch 16 --samples "$SAMPLES" --seed $seed >/dev/null 2>&1
  done
  for seed in 0 1; do
    echo -e "\n-- $kind, seed $seed: yolod against Ultralytics"
    peer augstats --yolod "$T/aug-$kind-yolod-s$seed.pt" --peer "$T/aug-$kind-peer-s$seed.pt" || status=1
  done
  for who in yolod peer; do
    echo -e "\n-- $kind: $who seed 0 against $who seed 1 (no difference by construction)"
    peer augstats --yolod "$T/aug-$kind-$who-s0.pt" --peer "$T/aug-$kind-$who-s1.pt" | tail -1
  done
done
fi

if want 5; then
echo -e "\n== 5. augmentation draw by draw"
aug_data shapes
aug_data mixed-shapes
echo -e "\n-- visiting order and mosaic buffer, 3 epochs of 256 images, batch 16"
"$TOOL" plan n=256 epochs=3 batch=16 out="$T/plan.pt"
peer plan --yolod "$T/plan.pt" --data "$T/aug-shapes-peer.yaml" --epochs 3 2>/dev/null || status=1
for kind in shapes mixed-shapes; do
  for mosaic in 1 0; do
    echo -e "\n-- $kind, mosaic=$mosaic: 500 samples, yolod's draws through Ultralytics' transforms"
    "$TOOL" geometry data="$T/aug-$kind/data.yaml" out="$T/geometry-$kind-$mosaic.pt" imgsz=320 \
      cases=500 mosaic=$mosaic >/dev/null
    peer geometry --yolod "$T/geometry-$kind-$mosaic.pt" --data "$T/aug-$kind-peer.yaml" \
      2>/dev/null || status=1
  done
done
"$TOOL" batches data="$T/aug-shapes/data.yaml" out="$T/batches" epochs=1 imgsz=320 batch=16 >/dev/null
for mode in reference blocked; do
  env=()
  [[ $mode == reference ]] && env=(YOLO_BLOCKED_LAYOUT=0 YOLO_FUSED_BN=0)
  for k in 0 9; do
    echo -e "\n-- one step on mosaic batch $k of epoch 0, $mode layout"
    env "${env[@]}" "$TOOL" step data="$T/aug-shapes/data.yaml" state="$T/init-0/init.state" \
      batches="$T/batches/e0.pt" index=$k out="$T/step-mosaic-$mode-$k.pt"
    peer step --state "$T/init-0/init.state" --yolod "$T/step-mosaic-$mode-$k.pt" | tail -1 || status=1
  done
done
fi
exit $status
