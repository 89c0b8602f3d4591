#!/usr/bin/env bash
# What each memory optimisation of the guide's table costs and saves, measured: peak RSS and
# training images/s of yolov8n against the default, one run after the other on the same data.
# Rows: the default here (cache=ram, batch 16, workers 8, the CPU cache emptied around every
# validation), cache off, batch halved (8, accumulation doubled), workers 8 -> 2, and the
# periodic cleanup turned off (YOLO_EPOCH_CLEANUP=0), to show what it saves.
# Usage: bench/memory_tradeoffs.sh [epochs (default 2)] [images (default 512)] [imgsz (default 320)]
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${1:-2}
IMAGES=${2:-512}
IMGSZ=${3:-320}
W=build/server/worker/yolo-worker
[[ -x $W ]] || scripts/build.sh
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
# Sources twice the training size, as real photos are larger than imgsz.
"$W" make-dataset shapes out="$T/data" train="$IMAGES" val=32 imgsz=$((IMGSZ * 2)) seed=0 >/dev/null

run() {  # run NAME ENV... -- ARGS...
  local name=$1; shift
  local envs=()
  while [[ $1 != -- ]]; do envs+=("$1"); shift; done
  shift
  local out
  out=$(env "${envs[@]}" "$W" train data="$T/data/data.yaml" model=yolov8n imgsz="$IMGSZ" \
    epochs="$EPOCHS" threads=2 plots=False project="$T/runs" name="$name" "$@" 2>&1) ||
    { echo "$out" | tail -5 >&2; exit 1; }
  /usr/bin/python3 -c "
import re, sys
out = sys.argv[1]
ips = float(re.search(r'training: ([0-9.]+) images/s', out).group(1))
rss = float(re.search(r'peak RSS ([0-9]+) MB', out).group(1))
print(f'{ips} {rss}')" "$out"
}

# key, label, the environment and the arguments of each row
rows=(default nocache batch8 workers2 noclean)
declare -A LABEL=([default]="default" [nocache]="cache off" [batch8]="batch 16 -> 8"
  [workers2]="workers 8 -> 2" [noclean]="no periodic cleanup")
declare -A ENVS=([default]=YOLO_EPOCH_CLEANUP=1 [nocache]=YOLO_EPOCH_CLEANUP=1
  [batch8]=YOLO_EPOCH_CLEANUP=1 [workers2]=YOLO_EPOCH_CLEANUP=1 [noclean]=YOLO_EPOCH_CLEANUP=0)
declare -A ARGS=([default]="cache=ram batch=16 workers=8" [nocache]="cache=False batch=16 workers=8"
  [batch8]="cache=ram batch=8 workers=8" [workers2]="cache=ram batch=16 workers=2"
  [noclean]="cache=ram batch=16 workers=8")
declare -A IPS RSS
for k in "${rows[@]}"; do
  # shellcheck disable=SC2086  # the arguments are words
  read -r IPS[$k] RSS[$k] < <(run "$k" "${ENVS[$k]}" -- ${ARGS[$k]})
done

echo
echo "yolov8n, imgsz $IMGSZ, $IMAGES images of $((IMGSZ * 2)) px, $EPOCHS epochs, 2 threads"
printf "%-22s%14s%12s%12s%11s\n" "optimisation" "peak RSS MB" "vs default" "images/s" "vs default"
for k in "${rows[@]}"; do
  /usr/bin/python3 -c "
r, rss, ips, brss, bips = '${LABEL[$k]}', ${RSS[$k]}, ${IPS[$k]}, ${RSS[default]}, ${IPS[default]}
print(f'{r:<22}{rss:>14.0f}{100 * (rss - brss) / brss:>+11.1f}%{ips:>12.2f}{100 * (ips - bips) / bips:>+10.1f}%')"
done
