#!/usr/bin/env bash
# Installs what is missing, builds, generates the embedded shapes dataset and trains the
# default model on it with yolo-worker, then validates the best checkpoint.
# About 15 minutes on 2 cores. Usage: scripts/demo.sh [key=value arguments, e.g. epochs=5]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
WORKER=build/server/worker/yolo-worker

DATA=datasets/shapes
"$WORKER" make-dataset shapes out="$DATA" train=256 val=64 imgsz=320 seed=0
"$WORKER" train data="$DATA/data.yaml" model=yolov8n imgsz=320 batch=16 epochs=30 \
  project=runs/detect name=demo "$@" | tee /tmp/yolod-demo.log
run=$(sed -n 's/^Results saved to //p' /tmp/yolod-demo.log | tail -1)
echo
echo "Run folder: $run"
echo "  results:     $run/results.csv"
echo "  checkpoints: $run/weights/last.pt, $run/weights/best.pt"
echo "Validate again with: $WORKER val model=$run/weights/best.pt"
