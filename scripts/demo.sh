#!/usr/bin/env bash
# The main job on the embedded default: installs what is missing, builds, generates the shapes
# dataset, starts yolod with a temporary state dir, trains yolov8n on it through
# `yoloctl start-experiment --follow`, prints the memory report and stops the daemon cleanly.
# About 15 minutes on 2 cores. Usage: scripts/demo.sh [key=value trainer arguments, e.g. epochs=5]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
BIN=build
WORKER=$BIN/server/worker/yolo-worker
YOLOD=$BIN/server/daemon/yolod
YOLOCTL=$BIN/client/yoloctl

DATA=datasets/shapes
[[ -f $DATA/data.yaml ]] ||
  "$WORKER" make-dataset shapes out="$DATA" train=256 val=64 imgsz=320 seed=0
STATE=$(mktemp -d /tmp/yolod-demo.XXXXXX)
"$YOLOD" --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 --state-dir "$STATE" >"$STATE/yolod.out" 2>&1 &
YOLOD_PID=$!
stop_daemon() {
  if kill -0 "$YOLOD_PID" 2>/dev/null; then
    kill -TERM "$YOLOD_PID"
    wait "$YOLOD_PID" && echo "yolod stopped cleanly" || echo "yolod exited with code $?"
  fi
}
trap stop_daemon EXIT
for _ in $(seq 100); do [[ -s $STATE/yolod.addr ]] && break; sleep 0.1; done
[[ -s $STATE/yolod.addr ]] || { cat "$STATE/yolod.out"; exit 1; }
export YOLOD_SERVER=$(cat "$STATE/yolod.addr")
echo "yolod is serving on $YOLOD_SERVER (state dir $STATE)"

set +e
# Later key=value words win, so "$@" overrides these.
"$YOLOCTL" start-experiment --name demo --follow data="$DATA/data.yaml" model=yolov8n imgsz=320 \
  batch=16 epochs=30 "$@" | tee "$STATE/follow.log"
rc=${PIPESTATUS[0]}
set -e
id=$(sed -n 's/^experiment \(exp-[0-9a-f]*\) created.*/\1/p' "$STATE/follow.log" | head -1)
echo
"$YOLOCTL" memory report
if [[ -n $id ]]; then
  echo
  "$YOLOCTL" describe experiment "$id"
  echo
  echo "Run folder: $STATE/runs/$id (results.csv, weights/last.pt, weights/best.pt, train.log)"
fi
exit "$rc"
