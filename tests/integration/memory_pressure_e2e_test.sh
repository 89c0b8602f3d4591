#!/usr/bin/env bash
# End to end under real memory pressure: a forced cleanup frees the RAM cache of a running
# cache=ram experiment, measurably; a bounded load from stress-ng raises yolod's RAM level and it
# falls back once the load is gone. The load runs in a memory cgroup of the test's own with
# yolod (so the cgroup's limit is the effective one) where the machine lets it make one, else
# on the host with levels set just above what the host uses and a size from MemAvailable. In a
# cgroup with a limit, a worker that outgrows it is killed by the kernel: yolod counts the OOM
# kill and resumes the run at half the batch.
# Usage: memory_pressure_e2e_test.sh YOLOD YOLOCTL YOLO_WORKER
set -uo pipefail
YOLOD=$1 YOLOCTL=$2 WORKER=$3
source "$(dirname "$0")/lib.sh"
command -v stress-ng >/dev/null || fail "stress-ng is not installed (scripts/setup.sh installs it)"
report() { ctl -o json memory report | /usr/bin/python3 -c "import json,sys; r=json.load(sys.stdin); print($1)"; }
level_is() { report "r['ram']['level']" | grep -q -- "$1"; }

echo "== a forced cleanup frees the RAM cache of a running cache=ram experiment"
"$WORKER" make-dataset shapes out="$T/data" train=192 val=8 imgsz=320 seed=1 >/dev/null || fail "make-dataset"
STATE=$T/cache
start_yolod
ID=$(ctl start-experiment --data "$T/data/data.yaml" --imgsz 320 --workers 1 --batch 8 --cache ram \
  --plots False --epochs 300 | new_id)
[[ -n $ID ]] || fail "no experiment"
# 192 images resized to 320 px: about 59 MB of pixels once the cache is filled.
wait_for 180 bash -c "$YOLOCTL -s $SERVER -o json describe experiment $ID | grep -q '\"progress\"'" ||
  fail "the experiment did not start training"
OUT=$(ctl -o json memory cleanup --timeout-seconds 60) || fail "cleanup: $OUT"
freed=$(/usr/bin/python3 -c "
import json, re, sys
r = [x for x in json.loads(sys.argv[1])['results'] if x['component'] == 'worker/$ID'][0]
m = re.search(r'dataset cache ([0-9.]+) MB', r['detail'])
print(int(r.get('freed_bytes', 0)) // 1000000, m and float(m.group(1)) or 0)" "$OUT") || fail "cleanup output: $OUT"
read -r rss_freed cache_freed <<<"$freed"
echo "worker RSS freed $rss_freed MB, of which the dataset cache $cache_freed MB"
/usr/bin/python3 -c "import sys; sys.exit(not (float('$cache_freed') >= 50))" || fail "the cache freed only $cache_freed MB: $OUT"
((rss_freed >= 50)) || fail "RSS went down by only $rss_freed MB: $OUT"
expect 0 "" ctl stop "$ID"
kill -TERM "$YOLOD_PID"
wait "$YOLOD_PID" 2>/dev/null

echo "== a bounded stress-ng load raises the RAM level, which falls once it is gone"
STATE=$T/pressure
limit=$((1000 * 1000 * 1000))
if make_cgroup "$limit"; then
  echo "in a memory cgroup of ${limit} bytes ($CGROUP)"
  YOLOD_WRAP=in_cgroup start_yolod --watchdog-interval 0.2
  load=$((limit * 84 / 100 / 1000000))M  # yolod's own memory puts it above 80 %: warning
  in_cgroup stress-ng --vm 1 --vm-bytes "$load" --vm-keep --timeout 120 >"$T/stress.log" 2>&1 &
else
  echo "no memory cgroup here: on the host, with levels just above its use"
  start_yolod --watchdog-interval 0.2
  used=$(awk '/MemTotal/{t=$2} /MemAvailable/{a=$2} END{printf "%d", (t-a)*100/t}' /proc/meminfo)
  ((used <= 80)) || { echo "SKIP: the host uses $used % of its RAM already"; exit 77; }
  # Far enough above its use that the level can fall back (5 points of hysteresis), and a
  # load of 10 % of RAM to pass them.
  expect 0 "" ctl memory levels set "ram=$((used + 6)),$((used + 7)),99"
  load=$(awk '/MemTotal/{t=$2} /MemAvailable/{a=$2} END{s=t*0.10; if (s > a/2) s=a/2; printf "%dK", s}' /proc/meminfo)
  stress-ng --vm 1 --vm-bytes "$load" --vm-keep --timeout 120 >"$T/stress.log" 2>&1 &
fi
STRESS=$!
PIDS+=("$STRESS")
wait_for 60 level_is "MEMORY_WARNING\|MEMORY_DANGER" ||
  fail "the level did not rise under a $load load: $(ctl memory report | head -12)"
echo "under $load: $(report "r['ram']['level'], round(r['ram']['used_ratio'] * 100, 1), '% of', int(r['ram']['limit_bytes']) // 1000000, 'MB'")"
report "[e['message'] for e in r.get('events', [])]" | grep -q "ok -> \(notice\|warning\|danger\)" ||
  fail "no level event: $(report "r.get('events')")"
kill -TERM "$STRESS"
wait "$STRESS" 2>/dev/null
wait_for 60 level_is "MEMORY_OK" || fail "the level did not fall back: $(ctl memory report | head -12)"
echo "after the load: $(report "r['ram']['level']")"
kill -TERM "$YOLOD_PID"
wait "$YOLOD_PID" 2>/dev/null

echo "== the kernel's OOM killer in a cgroup: the kill is counted, the run resumed at half the batch"
if make_cgroup $((900 * 1000 * 1000)); then
  STATE=$T/oomkill
  "$WORKER" make-dataset shapes out="$T/small" train=16 val=4 imgsz=64 seed=0 >/dev/null || fail "make-dataset"
  # The injected leak (150 MB an epoch) outgrows the limit in a few epochs, faster than the
  # watchdog's danger grace: the kernel, not yolod, kills the worker.
  YOLOD_WRAP=in_cgroup start_yolod --enable-fault-injection --danger-grace 600
  ID=$(ctl start-experiment --data "$T/small/data.yaml" --imgsz 64 --workers 0 --batch 8 \
    --plots False --epochs 300 --fault_leak_mb 150 | new_id)
  [[ -n $ID ]] || fail "no experiment"
  says() { ctl -o json describe experiment "$1" | /usr/bin/python3 -c "import json,sys; e=json.load(sys.stdin); print($2)" | grep -q -- "$3"; }
  wait_for 180 says "$ID" "e.get('oom_resumes', 0) >= 1" True ||
    fail "no resume after the kernel's kill: $(ctl describe experiment "$ID" | head -30)"
  # Half the batch the worker had when killed: 8, or 4 where the warning level's policy halved it
  # at an epoch boundary before the kill (the watchdog may see the leak pass 80 % first).
  says "$ID" "[a['message'] for a in e['memory_actions'] if a['kind'] == 'oom_resume'][0]" \
    "killed by signal 9.*the cgroup counted an OOM kill.*batch \(8 -> 4\|4 -> 2\)" ||
    fail "the resume does not say the kernel killed it: $(ctl describe experiment "$ID" | sed -n '/Events:/,$p')"
  echo "$(ctl -o json describe experiment "$ID" | /usr/bin/python3 -c "import json,sys; e=json.load(sys.stdin); print([a['message'] for a in e['memory_actions'] if a['kind'] == 'oom_resume'][0])")"
  ctl stop "$ID" >/dev/null 2>&1
  kill -TERM "$YOLOD_PID"
  wait "$YOLOD_PID" 2>/dev/null
else
  echo "SKIP (this part): no memory cgroup here"
fi
echo "PASS"
