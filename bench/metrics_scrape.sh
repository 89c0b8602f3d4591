#!/usr/bin/env bash
# What a Prometheus scrape of yolod costs, with 4 experiments training and an hour's worth of
# history in the status board (well, what has accrued in WARMUP seconds): the latency of GET
# /metrics (median and p99 over SCRAPES back-to-back scrapes, measured by curl), its size, and
# yolod's CPU time per scrape (yolod's utime+stime over the scrapes, less the same span idle),
# with what that is as a share of one core at a 15 s scrape interval. Also GET /api/status.
# Targets: a scrape under 10 ms and 200 KB.
# Usage: bench/metrics_scrape.sh [SCRAPES (default 200)] [WARMUP seconds (default 60)]
set -euo pipefail
cd "$(dirname "$0")/.."
SCRAPES=${1:-200}
WARMUP=${2:-60}
B=build
[[ -x $B/server/daemon/yolod && -x $B/server/worker/yolo-worker ]] || scripts/build.sh
T=$(mktemp -d)
PID=
trap '[[ -n $PID ]] && kill -TERM $PID 2>/dev/null; wait 2>/dev/null; rm -rf "$T"' EXIT
W=$B/server/worker/yolo-worker
"$W" make-dataset shapes out="$T/data" train=64 val=8 imgsz=64 seed=0 >/dev/null
"$B/server/daemon/yolod" --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 --state-dir "$T/state" \
  --worker "$W" --max-running-per-device 4 >"$T/yolod.log" 2>&1 &
PID=$!
for _ in $(seq 100); do [[ -s $T/state/metrics.addr ]] && break; sleep 0.1; done
CTL="$B/client/yoloctl -s $(cat "$T/state/yolod.addr")"
M=http://$(cat "$T/state/metrics.addr")
for i in 1 2 3 4; do
  $CTL start-experiment --data "$T/data/data.yaml" --imgsz 64 --batch 8 --workers 1 --epochs 1000 \
    --plots False --name "scrape-$i" >/dev/null
done
sleep "$WARMUP"
running=$($CTL get experiments | grep -c RUNNING || true)
cpu() { awk '{print $14 + $15}' "/proc/$PID/stat"; }  # clock ticks
# scrapes URL N: one latency (seconds) per line.
scrapes() { for _ in $(seq "$2"); do curl -s -o /dev/null -w '%{time_total}\n' "$1"; done; }
curl -s "$M/metrics" >"$T/scrape.txt"
curl -s "$M/api/status" >"$T/status.json"
start=$(date +%s.%N); c0=$(cpu)
scrapes "$M/metrics" "$SCRAPES" >"$T/lat.txt"
c1=$(cpu); end=$(date +%s.%N)
span=$(echo "$end - $start" | bc -l)
c2=$(cpu); sleep "$span"; c3=$(cpu)  # the same span without scrapes
scrapes "$M/api/status" 50 >"$T/status_lat.txt"
TICK=$(getconf CLK_TCK)
/usr/bin/python3 - "$T" "$SCRAPES" "$c0" "$c1" "$c2" "$c3" "$TICK" "$running" <<'PY'
import os, statistics, sys
t, n, c0, c1, c2, c3, tick, running = sys.argv[1], int(sys.argv[2]), *map(float, sys.argv[3:7]), int(sys.argv[7]), sys.argv[8]
lat = sorted(float(x) * 1000 for x in open(f"{t}/lat.txt"))
status = sorted(float(x) * 1000 for x in open(f"{t}/status_lat.txt"))
size = os.path.getsize(f"{t}/scrape.txt")
series = sum(1 for l in open(f"{t}/scrape.txt") if l and not l.startswith("#"))
cpu_ms = max((c1 - c0) - (c3 - c2), 0) / tick * 1000 / n
p99 = lambda v: v[min(len(v) - 1, int(len(v) * 0.99))]
print(f"experiments running: {running}; {n} scrapes back to back")
print(f"| measure | value | target |")
print(f"|---|---|---|")
print(f"| /metrics latency, median | {statistics.median(lat):.2f} ms | < 10 ms |")
print(f"| /metrics latency, p99 | {p99(lat):.2f} ms | < 10 ms |")
print(f"| /metrics size | {size / 1000:.1f} KB ({series} series) | < 200 KB |")
print(f"| yolod CPU per scrape | {cpu_ms:.2f} ms | |")
print(f"| CPU at a 15 s interval | {cpu_ms / 15000 * 100:.4f} % of a core | |")
print(f"| /api/status latency, median | {statistics.median(status):.2f} ms | |")
print(f"| /api/status size | {os.path.getsize(f'{t}/status.json') / 1000:.1f} KB | |")
PY
