#!/usr/bin/env bash
# The training data pipeline alone (no model), yolod's against Ultralytics' (the peer's
# loader.sh, run just after each of yolod's rows on the same data): images/s for workers 0, 1, 2
# and all usable cores, imgsz 320 and 640, with and without cache=ram; batch 16, mosaic on.
# Usage: bench/loader_throughput.sh DATA_YAML      (run by hand; prints a table)
# env: IMGSZS="320 640" CACHES="none ram" WORKERS_LIST="0 1 2 <cores>" BATCHES=40 WARMUP=5
#      PEER_SCRIPTS=../shared/peer (PEER=0 skips the peer)
# "per core" divides by max(workers, 1): the loader's threads (or the calling thread) are the
# cores it keeps busy; "scaling" is images/s against workers=1's times the workers.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=$(realpath "${1:?usage: bench/loader_throughput.sh DATA_YAML}")
BIN=build/bench/loader_throughput
[[ -x $BIN ]] || ninja -C build loader_throughput >/dev/null
CORES=$(nproc)
IMGSZS=${IMGSZS:-320 640} CACHES=${CACHES:-none ram}
WORKERS_LIST=${WORKERS_LIST:-$(printf '%s\n' 0 1 2 "$CORES" | awk '!seen[$0]++' | tr '\n' ' ')}
BATCHES=${BATCHES:-40} WARMUP=${WARMUP:-5} PEER=${PEER:-1}
PEER_SCRIPTS=${PEER_SCRIPTS:-../shared/peer}
[[ $PEER == 0 || -x $PEER_SCRIPTS/loader.sh ]] || { echo "no $PEER_SCRIPTS/loader.sh (PEER=0 skips it)" >&2; exit 1; }

printf '%-6s%-6s%-8s%10s%10s%8s%10s%10s%9s\n' imgsz cache workers yolod peer ratio \
  "yolod/c" "peer/c" scaling
for imgsz in $IMGSZS; do
  for cache in $CACHES; do
    one=""
    for w in $WORKERS_LIST; do
      y=$("$BIN" data="$DATA" imgsz="$imgsz" workers="$w" cache="$cache" batch=16 \
            batches="$BATCHES" warmup="$WARMUP" | awk '/images\/s/ {print $1; exit}')
      p=-
      if [[ $PEER != 0 ]]; then
        p=$(IMGSZ=$imgsz WORKERS=$w CACHE=$cache BATCH=16 BATCHES=$BATCHES WARMUP=$WARMUP \
              "$PEER_SCRIPTS/loader.sh" "$DATA" 2>/dev/null |
            /usr/bin/python3 -c 'import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])["images_per_s"])')
      fi
      [[ $w == 1 ]] && one=$y
      /usr/bin/python3 - "$imgsz" "$cache" "$w" "$y" "$p" "$one" <<'PY'
import sys
imgsz, cache, w, y, p, one = sys.argv[1:]
w = int(w); y = float(y); cores = max(w, 1)
ratio = f"{y / float(p):.2f}" if p != "-" else "-"
pc = f"{float(p) / cores:.1f}" if p != "-" else "-"
scaling = f"{y / (float(one) * w):.2f}" if one and w > 1 else "-"
print(f"{imgsz:<6}{cache:<6}{w:<8}{y:>10.1f}{p:>10}{ratio:>8}{y / cores:>10.1f}{pc:>10}{scaling:>9}")
PY
    done
  done
done
echo "(images/s over $BATCHES batches of 16 after $WARMUP; /c: per loader core; $(nproc) cores here)"
