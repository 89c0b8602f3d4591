#!/usr/bin/env bash
# The control plane's costs: yolod's CPU and RSS when idle, and GetMemoryReport latency (p50,
# p90, p99, max over many calls) while an experiment trains yolov8n at 320 px on both cores.
# Usage: bench/control_plane.sh [calls (default 2000)] [idle seconds (default 20)]
set -euo pipefail
cd "$(dirname "$0")/.."
CALLS=${1:-2000}
IDLE=${2:-20}
B=build
[[ -x $B/bench/memory_report_latency && -x $B/server/daemon/yolod ]] || scripts/build.sh
T=$(mktemp -d)
"$B/server/daemon/yolod" --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 --state-dir "$T/state" >"$T/yolod.log" 2>&1 &
PID=$!
trap 'kill -TERM $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$T"' EXIT
for _ in $(seq 100); do [[ -s $T/state/yolod.addr ]] && break; sleep 0.1; done
S=$(cat "$T/state/yolod.addr")
CTL="$B/client/yoloctl -s $S"
"$B/server/worker/yolo-worker" make-dataset shapes out="$T/data" train=256 val=64 imgsz=320 \
  seed=0 >/dev/null

sleep 2  # let start-up settle before the idle window
ticks() { awk '{print $14 + $15}' "/proc/$PID/stat"; }
t0=$(ticks); sleep "$IDLE"; t1=$(ticks)
HZ=$(getconf CLK_TCK)
IDLE_CPU=$(python3 -c "print(f'{100 * ($t1 - $t0) / $HZ / $IDLE:.3f}')")
IDLE_RSS=$(awk '/VmRSS/ {print $2 / 1024}' "/proc/$PID/status")
IDLE_LAT=$("$B/bench/memory_report_latency" "$S" "$CALLS")

ID=$($CTL start-experiment data="$T/data/data.yaml" model=yolov8n imgsz=320 batch=16 epochs=50 |
  sed -n 's/^experiment \(exp-[0-9a-f]*\) created.*/\1/p')
for _ in $(seq 300); do
  $CTL -o json memory report | grep -q experiment_id && break
  sleep 0.2
done
sleep 5  # into the first epoch: both cores busy with training
BUSY_LAT=$("$B/bench/memory_report_latency" "$S" "$CALLS")
BUSY_RSS=$(awk '/VmRSS/ {print $2 / 1024}' "/proc/$PID/status")
$CTL stop "$ID" >/dev/null

printf "%-36s %10s %10s %10s %10s %12s\n" "GetMemoryReport latency (ms)" calls p50 p99 max "yolod RSS MB"
read -r n p50 p90 p99 max <<<"$IDLE_LAT"
printf "%-36s %10s %10s %10s %10s %12.1f\n" "yolod idle" "$n" "$p50" "$p99" "$max" "$IDLE_RSS"
read -r n p50 p90 p99 max <<<"$BUSY_LAT"
printf "%-36s %10s %10s %10s %10s %12.1f\n" "while yolov8n trains (2 cores busy)" "$n" "$p50" "$p99" "$max" "$BUSY_RSS"
echo "yolod idle CPU over ${IDLE} s: ${IDLE_CPU} % of one core; idle RSS ${IDLE_RSS} MB"
echo "(targets: p99 < 5 ms on loopback; idle < 1 % of a core and < 50 MB)"
