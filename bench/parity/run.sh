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
#      accumulation, clipping and EMA), then the weights of the training model and of the EMA
# Prints a table per comparison, worst relative difference first; exits 1 if any is outside
# its limit. About 10 minutes on 2 cores.
# Usage: bench/parity/run.sh   env: EPOCHS=40 THREADS=2 PEER_DIR=~/.cache/yolod-peer PY=/usr/bin/python3
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
HERE=$ROOT/bench/parity
SHARED_PEER=${SHARED_PEER:-$(cd .. && pwd)/shared/peer}
PEER=${PEER_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/yolod-peer}
PY=${PY:-/usr/bin/python3}
EPOCHS=${EPOCHS:-40}
THREADS=${THREADS:-2}
WORKER=build/server/worker/yolo-worker
TOOL=build/bench/parity_tool
[[ -x $WORKER && -x $TOOL ]] || scripts/build.sh

# The peer's sources and Python packages, as its run.sh sets them up.
mkdir -p "$PEER/cfg"
[[ -d $PEER/ultralytics-8.1.47 ]] || tar -xzf "$SHARED_PEER/ultralytics-8.1.47.tar.gz" -C "$PEER"
[[ -f $PEER/cfg/Arial.ttf ]] || cp /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf "$PEER/cfg/Arial.ttf"
"$PY" -c "import torch, cv2, yaml, pandas, matplotlib" 2>/dev/null ||
  { echo "the peer's Python packages are missing: run $SHARED_PEER/run.sh once" >&2; exit 1; }
export PYTHONPATH=$PEER/ultralytics-8.1.47 YOLO_CONFIG_DIR=$PEER/cfg YOLO_OFFLINE=True
export OMP_NUM_THREADS=$THREADS
peer() { "$PY" "$HERE/peer_parity.py" "$@"; }

T=${PARITY_DIR:-$(mktemp -d)}
mkdir -p "$T"
echo "parity harness: files in $T"
"$WORKER" make-dataset shapes out="$T/step-data" train=8 val=2 imgsz=320 seed=0 >/dev/null
"$WORKER" make-dataset shapes out="$T/train-data" train=64 val=16 imgsz=128 seed=0 >/dev/null
# Ultralytics resolves a relative `path:` against its own datasets folder: give it an absolute one.
"$PY" "$SHARED_PEER/resolve_data.py" "$T/train-data/data.yaml" "$T/train-data-peer.yaml"
status=0

echo -e "\n== 1. initial weights"
for seed in 0 1 2; do
  "$TOOL" init scale=n nc=3 seed=$seed out="$T/init-$seed" >/dev/null
  peer init --yolod "$T/init-$seed/init.state" --nc 3 --seed $seed || status=1
done

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
  peer step --state "$T/init-0/init.state" --yolod "$T/step-$mode.pt" || status=1
done

echo -e "\n== 3. training runs ($EPOCHS epochs, batch 8, 128 px, augmentation off, shuffled)"
NOAUG=(mosaic=0 mixup=0 hsv_h=0 hsv_s=0 hsv_v=0 degrees=0 translate=0 scale=0 shear=0
  perspective=0 flipud=0 fliplr=0 close_mosaic=0)
peer train --state "$T/init-0/init.state" --data "$T/train-data-peer.yaml" --out "$T/peer-trained.pt" \
  --project "$T/peer-runs" --epochs "$EPOCHS" --imgsz 128 --batch 8 --threads "$THREADS" \
  >"$T/peer-train.log" 2>&1 || { tail -20 "$T/peer-train.log"; exit 1; }
for mode in reference blocked; do
  env=()
  [[ $mode == reference ]] && env=(YOLO_BLOCKED_LAYOUT=0 YOLO_FUSED_BN=0)
  rm -rf "$T/runs/$mode"
  env "${env[@]}" "$WORKER" train data="$T/train-data/data.yaml" model="$T/init-0/init.pt" imgsz=128 \
    batch=8 epochs="$EPOCHS" workers=0 threads="$THREADS" val=False plots=False \
    save_period="$EPOCHS" project="$T/runs" name=$mode "${NOAUG[@]}" >"$T/yolod-train-$mode.log" 2>&1 ||
    { tail -20 "$T/yolod-train-$mode.log"; exit 1; }
  "$TOOL" export ckpt="$T/runs/$mode/weights/epoch$EPOCHS.pt" out="$T/yolod-trained-$mode.pt"
  echo -e "\n-- yolod $mode against Ultralytics"
  peer compare --yolod "$T/yolod-trained-$mode.pt" --peer "$T/peer-trained.pt" || status=1
done
exit $status
