#!/usr/bin/env bash
# The memory watchdog's costs and speed, and AutoBatch's accuracy, printed as one table:
#  1. yolod's CPU time per watchdog sample at 1 Hz while 4 workers train (the watchdog's own
#     thread time, from the memory report's counters);
#  2. the time from a threshold crossing (levels set below what the host uses) to the action
#     (the cleanup and the pressure policy request), in samples;
#  3. the pre-flight estimate and AutoBatch: predicted peak against the measured training peak
#     (VmHWM since the estimate, above the worker's memory when it measured), for fixed batches
#     and AutoBatch fractions.
# Targets: under 1 ms of CPU per sample; the action within 2 samples; predicted within 10 %.
# Usage: bench/watchdog.sh [seconds of sampling with 4 workers (default 30)]
set -euo pipefail
cd "$(dirname "$0")/.."
WINDOW=${1:-30}
B=build
[[ -x $B/server/daemon/yolod && -x $B/server/worker/yolo-worker ]] || scripts/build.sh
T=$(mktemp -d)
PID=
trap '[[ -n $PID ]] && kill -TERM $PID 2>/dev/null; wait 2>/dev/null; rm -rf "$T"' EXIT
W=$B/server/worker/yolo-worker
"$W" make-dataset shapes out="$T/small" train=64 val=8 imgsz=64 seed=0 >/dev/null
"$W" make-dataset shapes out="$T/data" train=128 val=16 imgsz=320 seed=0 >/dev/null

"$B/server/daemon/yolod" --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 --state-dir "$T/state" --worker "$W" \
  --max-running-per-device 4 --watchdog-interval 1 >"$T/yolod.log" 2>&1 &
PID=$!
for _ in $(seq 100); do [[ -s $T/state/yolod.addr ]] && break; sleep 0.1; done
CTL="$B/client/yoloctl -s $(cat "$T/state/yolod.addr")"
report() { $CTL -o json memory report | /usr/bin/python3 -c "import json,sys; r=json.load(sys.stdin); print($1)"; }

# 1. Four workers training, then a window of samples.
for _ in 1 2 3 4; do
  $CTL start-experiment --data "$T/small/data.yaml" --imgsz 64 --batch 8 --workers 0 \
    --threads 1 --plots False --epochs 1000 >/dev/null
done
for _ in $(seq 300); do
  [[ $(report "len(r.get('workers', []))") == 4 ]] && break
  sleep 0.2
done
read -r s0 c0 < <(report "int(r['watchdog']['samples']), r['watchdog'].get('sample_cpu_seconds_total', 0)")
sleep "$WINDOW"
read -r s1 c1 < <(report "int(r['watchdog']['samples']), r['watchdog'].get('sample_cpu_seconds_total', 0)")
WORKERS=$(report "len(r.get('workers', []))")
CPU_MS=$(/usr/bin/python3 -c "print(f'{($c1 - $c0) * 1000 / max($s1 - $s0, 1):.3f}')")

# 2. A crossing: levels set below the host's use; the action is the watchdog's first cleanup.
used=$(awk '/MemTotal/{t=$2} /MemAvailable/{a=$2} END{printf "%d", (t-a)*100/t}' /proc/meminfo)
t_set=$(date +%s.%N)
$CTL memory levels set "ram=1,$((used > 3 ? used - 2 : 2)),99" >/dev/null
for _ in $(seq 100); do
  report "[e for e in r.get('events', []) if e['kind'] == 'cleanup']" | grep -q message && break
  sleep 0.1
done
ACTION=$(report "[(e['kind'], e['time']) for e in r.get('events', []) if e['kind'] in ('cleanup', 'policy')]" |
  /usr/bin/python3 -c "
import ast, datetime, sys
events = ast.literal_eval(sys.stdin.read())
t = min(datetime.datetime.fromisoformat(e[1].rstrip('Z')[:26]).replace(tzinfo=datetime.timezone.utc).timestamp() for e in events)
print(f'{t - $t_set:.2f}')")
$CTL memory levels set ram=70,80,90 >/dev/null
for id in $($CTL -o json get experiments | /usr/bin/python3 -c "import json,sys; print(' '.join(e['id'] for e in json.load(sys.stdin)['experiments']))"); do
  $CTL stop "$id" >/dev/null 2>&1 || true
done
kill -TERM "$PID"
wait "$PID" 2>/dev/null || true
PID=

# 3. Predicted against measured, one run after the other (threads 2, 1 epoch).
rows=()
for args in "imgsz=320 batch=16" "imgsz=320 batch=32" "imgsz=320 batch=0.02" "imgsz=640 batch=8" \
  "imgsz=640 batch=0.03"; do
  out=$("$W" train data="$T/data/data.yaml" model=yolov8n epochs=1 workers=2 threads=2 \
    plots=False project="$T/runs" name=est exist_ok=True $args 2>&1) || { echo "$out" | tail -3; exit 1; }
  rows+=("$(/usr/bin/python3 -c "
import re, sys
out = sys.argv[1]
m = re.search(r'(AutoBatch|memory estimate): batch (\d+) .*?needs about ([0-9.]+) ([MG]B) above the worker.s ([0-9.]+) ([MG]B)', out)
p = re.search(r'peak RSS \d+ MB \((\d+) MB since the memory estimate\)', out)
mb = lambda v, u: float(v) * (1000 if u == 'GB' else 1)
pred, base, peak = mb(m.group(3), m.group(4)), mb(m.group(5), m.group(6)), float(p.group(1))
meas = peak - base
print(f'{sys.argv[2]:<22}{m.group(2):>6}{pred:>12.0f}{meas:>12.0f}{100 * (pred - meas) / meas:>+9.1f}')
" "$out" "$args")")
done

echo
printf "%-52s %s\n" "watchdog CPU per sample at 1 Hz, $WORKERS workers training" "$CPU_MS ms ($((s1 - s0)) samples in ${WINDOW} s)"
printf "%-52s %s\n" "threshold crossing to the first action (cleanup)" "$ACTION s (interval 1 s)"
echo
printf "%-22s%6s%12s%12s%9s\n" "run" batch "predicted" "measured" "error %"
printf "%s\n" "${rows[@]}"
echo "(MB above the worker's memory when it measured; measured: VmHWM since the estimate)"
