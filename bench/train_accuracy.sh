#!/usr/bin/env bash
# Accuracy from scratch over training seeds: yolov8n, imgsz 320, batch 16, 30 epochs, then
# mAP50 and mAP50-95 of best.pt on the val split, per seed, with their mean and (sample)
# standard deviation; with PEER=1 the same for Ultralytics 8.1.47 (../shared/peer/run.sh) on
# the same data with the same arguments, one run after the other.
#
# Usage: bench/train_accuracy.sh [epochs (default 30)] [extra key=value arguments for yolod]
# env:   SEEDS="0 1 2 3 4"   training seeds
#        DATASET=shapes      shapes: 256 train / 64 val square 320 px images, 3 classes;
#                            mixed: 256 / 64 non-square images of mixed sizes (long side
#                            240-640 px, aspect 1:2 to 2:1, JPEG and PNG), 5 classes
#        PEER=0 YOLOD=1      which trainers run
#        OUT=dir             keeps each run's result (a JSON file per trainer and seed): a run
#                            whose result is there is not repeated, so the table can be built
#                            over several sittings; default: a new temporary folder
#        THREADS=2 PEER_DIR=... PY=...   passed to the peer (see its run.sh)
#        WORKER=path   the yolo-worker to run (default build/...; a copy keeps a long table
#                      safe from rebuilds)
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${1:-30}
shift || true
SEEDS=${SEEDS:-0 1 2 3 4}
DATASET=${DATASET:-shapes}
PEER=${PEER:-0}
YOLOD=${YOLOD:-1}
THREADS=${THREADS:-2}
PEER_RUN=${PEER_RUN:-$(cd .. && pwd)/shared/peer/run.sh}
WORKER=${WORKER:-build/server/worker/yolo-worker}
[[ -x $WORKER ]] || scripts/build.sh
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

# The data is made once per OUT (the same bytes every time), so that two sittings, say one
# with YOLOD=0 PEER=1 and one with YOLOD=1 PEER=0 side by side, share it.
DATA=$OUT/data/data.yaml
case $DATASET in
  shapes) kind=shapes size=320 ;;
  mixed) kind=mixed-shapes size=640 ;;
  *) echo "DATASET must be shapes or mixed" >&2; exit 2 ;;
esac
[[ -f $DATA ]] ||
  "$WORKER" make-dataset $kind out="$OUT/data" train=256 val=64 imgsz=$size seed=0 >/dev/null

for seed in $SEEDS; do
  if [[ $YOLOD == 1 && ! -s $OUT/yolod-seed$seed.json ]]; then
    echo "yolod, seed $seed ($OUT/yolod-seed$seed.log)" >&2
    rm -rf "$OUT/runs/yolod-seed$seed"
    "$WORKER" train data="$DATA" model=yolov8n imgsz=320 batch=16 epochs="$EPOCHS" workers=2 \
      threads="$THREADS" seed="$seed" project="$OUT/runs" name="yolod-seed$seed" plots=False "$@" \
      >"$OUT/yolod-seed$seed.log" 2>&1 || { tail -30 "$OUT/yolod-seed$seed.log"; exit 1; }
    "$WORKER" val model="$OUT/runs/yolod-seed$seed/weights/best.pt" data="$DATA" format=json \
      >"$OUT/yolod-seed$seed.tmp" 2>/dev/null
    mv "$OUT/yolod-seed$seed.tmp" "$OUT/yolod-seed$seed.json"
  fi
  if [[ $PEER == 1 && ! -s $OUT/peer-seed$seed.json ]]; then
    echo "peer, seed $seed ($OUT/peer-seed$seed.log)" >&2
    EPOCHS=$EPOCHS VAL=1 SEED=$seed THREADS=$THREADS NAME="acc-$DATASET-seed$seed" \
      bash "$PEER_RUN" "$DATA" >"$OUT/peer-seed$seed.tmp" 2>"$OUT/peer-seed$seed.log" ||
      { tail -30 "$OUT/peer-seed$seed.log"; exit 1; }
    tail -1 "$OUT/peer-seed$seed.tmp" >"$OUT/peer-seed$seed.json" && rm "$OUT/peer-seed$seed.tmp"
  fi
done

python3 - "$OUT" "$DATASET" "$EPOCHS" $SEEDS <<'PY'
import json, os, statistics, sys
out, dataset, epochs, seeds = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
def load(who, seed):
    p = os.path.join(out, f"{who}-seed{seed}.json")
    if not os.path.exists(p):
        return None
    m = json.load(open(p))
    if who == "yolod":
        return m["metrics/mAP50(B)"], m["metrics/mAP50-95(B)"]
    return m["map50"], m["map50_95"]
rows = {who: {s: load(who, s) for s in seeds} for who in ("yolod", "peer")}
print(f"dataset {dataset}, yolov8n, imgsz 320, batch 16, {epochs} epochs; best.pt on the val split")
print(f"{'seed':<6}{'yolod mAP50':>13}{'mAP50-95':>10}{'peer mAP50':>13}{'mAP50-95':>10}")
def cell(v, k):
    return f"{v[k]:.3f}" if v else "-"
for s in seeds:
    y, p = rows["yolod"][s], rows["peer"][s]
    print(f"{s:<6}{cell(y, 0):>13}{cell(y, 1):>10}{cell(p, 0):>13}{cell(p, 1):>10}")
def stat(who, k, f):
    v = [r[k] for r in rows[who].values() if r]
    return f"{f(v):.3f}" if len(v) >= 2 else "-"
for name, f in (("mean", statistics.mean), ("std", statistics.stdev)):
    print(f"{name:<6}{stat('yolod', 0, f):>13}{stat('yolod', 1, f):>10}"
          f"{stat('peer', 0, f):>13}{stat('peer', 1, f):>10}")
print(f"(std: sample standard deviation over seeds; results in {out})")
PY
