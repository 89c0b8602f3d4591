#!/usr/bin/env bash
# Cross-training: which half of a trainer, its data pipeline or its training loop, makes the
# accuracy. For each seed, the training batches of a whole run (30 epochs, mosaic closing at 10)
# are written by yolod's loader (`parity_tool batches`) and by Ultralytics' (`peer_parity.py
# batches`), and Ultralytics' trainer is trained on each set from the seed's initial weights
# (the same in both trainers); yolod's own run on its own batches is the run of
# bench/train_accuracy.sh with that seed. Two trainings at a time, one thread each; the batches
# (2.2 GB per set at 256 images) are removed once trained on.
# Prints mAP50-95 per seed of the best epoch: Ultralytics' trainer on yolod's batches and on its
# own, beside both trainers' own runs where OUT holds them.
# Usage: bench/parity/cross_train.sh   env: SEEDS="0 1" EPOCHS=30 OUT=dir (a train_accuracy.sh
#        folder: its data/ is used, made if missing) PEER_DIR=~/.cache/yolod-peer PY=/usr/bin/python3
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
SEEDS=${SEEDS:-0 1}
EPOCHS=${EPOCHS:-30}
OUT=${OUT:-$(mktemp -d)}
WORKER=build/server/worker/yolo-worker
TOOL=build/bench/parity_tool
[[ -x $WORKER && -x $TOOL ]] || scripts/build.sh
source bench/parity/peer_env.sh
mkdir -p "$OUT/cross"
OUT=$(cd "$OUT" && pwd)
[[ -f $OUT/data/data.yaml ]] ||
  "$WORKER" make-dataset shapes out="$OUT/data" train=256 val=64 imgsz=320 seed=0 >/dev/null
"$PY" "$SHARED_PEER/resolve_data.py" "$OUT/data/data.yaml" "$OUT/cross/data-peer.yaml"
export OMP_NUM_THREADS=1

for seed in $SEEDS; do
  C=$OUT/cross
  pids=()
  for source in yolod peer; do
    [[ -s $C/replay-$source-s$seed/results.csv && -f $C/replay-$source-s$seed/done ]] && continue
    if [[ $source == yolod ]]; then
      "$TOOL" batches data="$OUT/data/data.yaml" out="$C/batches-$source-s$seed" epochs="$EPOCHS" \
        imgsz=320 batch=16 seed="$seed" threads=1 >/dev/null
    else
      peer batches --data "$C/data-peer.yaml" --out "$C/batches-$source-s$seed" --epochs "$EPOCHS" \
        --seed "$seed" >/dev/null 2>&1
    fi
    echo "Ultralytics' trainer on $source's batches, seed $seed ($C/replay-$source-s$seed.log)" >&2
    (peer replay --batches "$C/batches-$source-s$seed" --data "$C/data-peer.yaml" --project "$C" \
       --name "replay-$source-s$seed" --seed "$seed" --epochs "$EPOCHS" \
       >"$C/replay-$source-s$seed.log" 2>&1 &&
       touch "$C/replay-$source-s$seed/done"; rm -rf "$C/batches-$source-s$seed") &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
done

python3 - "$OUT" $SEEDS <<'PY'
import csv, json, os, sys
out, seeds = sys.argv[1], sys.argv[2:]
def best(path):  # mAP50-95 of the epoch of best fitness (0.1 mAP50 + 0.9 mAP50-95)
    if not os.path.exists(path):
        return None
    rows = [{k.strip(): float(v) for k, v in r.items()} for r in csv.DictReader(open(path))]
    r = max(rows, key=lambda r: 0.1 * r["metrics/mAP50(B)"] + 0.9 * r["metrics/mAP50-95(B)"])
    return r["metrics/mAP50-95(B)"]
def own(who, seed):
    p = os.path.join(out, f"{who}-seed{seed}.json")
    if not os.path.exists(p):
        return None
    m = json.load(open(p))
    return m["metrics/mAP50-95(B)"] if who == "yolod" else m["map50_95"]
f = lambda v: f"{v:.3f}" if v is not None else "-"
print("mAP50-95 of the best epoch; columns: trainer on batches")
print(f"{'seed':<6}{'yolod on yolod':>16}{'Ultr. on yolod':>16}{'Ultr. on Ultr.':>16}{'Ultr. own run':>15}")
for s in seeds:
    print(f"{s:<6}{f(own('yolod', s)):>16}{f(best(f'{out}/cross/replay-yolod-s{s}/results.csv')):>16}"
          f"{f(best(f'{out}/cross/replay-peer-s{s}/results.csv')):>16}{f(own('peer', s)):>15}")
PY
