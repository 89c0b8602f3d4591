#!/usr/bin/env bash
# Training throughput of yolov8n at imgsz 320, batch 16, on 256 generated 320 px images:
# images per second (validation excluded), seconds per epoch and the process's peak RSS.
# Usage: bench/train_throughput.sh [epochs (default 3)] [extra key=value arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${1:-3}
shift || true
WORKER=build/server/worker/yolo-worker
[[ -x $WORKER ]] || scripts/build.sh
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
"$WORKER" make-dataset shapes out="$T/data" train=256 val=64 imgsz=320 seed=0 >/dev/null
/usr/bin/time -f "%M" -o "$T/maxrss" "$WORKER" train data="$T/data/data.yaml" model=yolov8n \
  imgsz=320 batch=16 epochs="$EPOCHS" workers=2 project="$T/runs" name=bench plots=False "$@" \
  >"$T/log" 2>&1 || { cat "$T/log"; exit 1; }
# Per-epoch lines end in "<seconds>s <images/s> img/s"; the first epoch includes warm-up.
python3 - "$T/log" "$T/maxrss" "$EPOCHS" <<'PY'
import re, sys
log, maxrss, epochs = open(sys.argv[1]).read(), int(open(sys.argv[2]).read().split()[-1]), int(sys.argv[3])
rows = [(float(s), float(r)) for s, r in re.findall(r"(\d+\.\d+)s (\d+\.\d+) img/s", log)]
steady = rows[1:] or rows
sec = sum(s for s, _ in steady) / len(steady)
print(f"{'model':<10}{'imgsz':>6}{'batch':>6}{'epochs':>7}{'img/s':>8}{'s/epoch':>9}{'peak RSS MB':>13}")
print(f"{'yolov8n':<10}{320:>6}{16:>6}{epochs:>7}{256 / sec:>8.2f}{sec:>9.1f}{maxrss / 1024:>13.0f}")
print("(img/s and s/epoch: epochs after the first, training only; peak RSS: whole process)")
PY
