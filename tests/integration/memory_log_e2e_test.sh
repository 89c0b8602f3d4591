#!/usr/bin/env bash
# End to end: memory logs. A running experiment's memory_log_*.json in its run folder is valid
# JSON while it runs and after yolod is SIGKILLed; it holds the samples (RAM against the limit,
# the level, the worker's RSS) and the events (epoch ends, memory actions, state changes).
# `yoloctl memory analyze` gives the statistics, the leak verdict (a leak injected with
# fault_leak_mb is found) and the time at each level, and draws a PNG with PLplot; a truncated
# or foreign file is refused by name. `memory monitor --plot-interval` writes a log and a PNG.
# Usage: memory_log_e2e_test.sh YOLOD YOLOCTL YOLO_WORKER
set -uo pipefail
YOLOD=$1 YOLOCTL=$2 WORKER=$3
source "$(dirname "$0")/lib.sh"

STATE=$T/state
PY=/usr/bin/python3
log_of() { ls "$STATE/runs/$1"/memory_log_*.json 2>/dev/null | head -1; }
has_log() { [[ -n $(log_of "$1") ]]; }
# logq FILE EXPRESSION_ON_l: a value of the log, read with Python's own JSON parser.
logq() { $PY -c "import json,sys; l=json.load(open(sys.argv[1])); print($2)" "$1"; }
is_png() { [[ $(head -c 8 "$1" | od -An -tx1 | tr -d ' \n') == 89504e470d0a1a0a ]]; }

"$WORKER" make-dataset shapes out="$T/data" train=32 val=8 imgsz=96 seed=0 >/dev/null ||
  fail "make-dataset"
TRAIN=(--data "$T/data/data.yaml" --imgsz 64 --workers 2 --plots False --batch 8)
start_yolod --memory-log-interval 0.5 --watchdog-interval 0.25 --enable-fault-injection

echo "== a leaking run: its log while it runs, then its analysis"
ID=$(ctl start-experiment "${TRAIN[@]}" --epochs 9 fault_leak_mb=40 | new_id)
[[ -n $ID ]] || fail "no id"
wait_for 60 has_log "$ID" || fail "no memory log in the run folder"
LOG=$(log_of "$ID")
[[ $(basename "$LOG") =~ ^memory_log_[0-9]{8}_[0-9]{6}\.json$ ]] || fail "log name: $LOG"
wait_for 60 bash -c "$PY -c \"import json; l=json.load(open('$LOG')); assert len(l['samples']) >= 3\"" ||
  fail "the log has no samples while the run trains"
# Warning level for a while: the samples say so and the policy is an event of the log.
ctl memory levels set "ram=1,$(($(used_pct) > 3 ? $(used_pct) - 2 : 2)),99" >/dev/null
wait_for 60 bash -c "'$YOLOCTL' -s '$SERVER' -o json describe experiment '$ID' | grep -q policy_applied" ||
  fail "no policy under the warning level"
ctl memory levels set ram=70,80,90 >/dev/null
wait_for 180 bash -c "'$YOLOCTL' -s '$SERVER' get experiments | grep '$ID' | grep -q SUCCEEDED" ||
  fail "the run did not finish: $(ctl describe experiment "$ID")"
sleep 1  # the last write after the final state
[[ $(logq "$LOG" "l['schema'], l['version'], l['experiment_id']") == "yolod.memory_log 1 $ID" ]] ||
  fail "header: $(head -c 400 "$LOG")"
# RSS where the worker could be read (from its first moments on), RAM against the limit.
logq "$LOG" "all(s.get('rss_bytes', 1) > 0 and s['ram_limit_bytes'] >= s['ram_used_bytes'] > 0 for s in l['samples']) and max(s.get('rss_bytes', 0) for s in l['samples']) > 50e6" | grep -q True ||
  fail "samples: $(head -c 1500 "$LOG")"
logq "$LOG" "sorted(set(s['ram_level'] for s in l['samples']))" | grep -q "warning" || fail "no sample at the warning level"
[[ $(logq "$LOG" "len([e for e in l['events'] if e['kind'] == 'epoch' and e['rss_bytes'] > 0])") == 9 ]] ||
  fail "epoch events: $(logq "$LOG" "l['events']")"
for kind in estimate policy policy_applied leak_suspected state exit; do
  logq "$LOG" "[e['kind'] for e in l['events']]" | grep -q "'$kind'" || fail "no $kind event: $(logq "$LOG" "l['events']")"
done
logq "$LOG" "l['events'][-1]['message']" | grep -q "^SUCCEEDED" || fail "the last event is not the end"
expect 0 "leak suspected: RSS grows" ctl memory analyze --log-file "$LOG"
OUT=$(ctl memory analyze --log-file "$LOG")
for want in "experiment $ID" "MIN" "P95" "RAM used of limit" "RSS" "trend: RAM used" "warning"; do
  [[ $OUT == *"$want"* ]] || fail "analyze does not show '$want': $OUT"
done
ctl -o json memory analyze --log-file "$LOG" --plot "$T/run.png" >"$T/analysis.json" 2>/dev/null ||
  fail "analyze -o json --plot"
[[ $($PY -c "import json; a=json.load(open('$T/analysis.json')); print(a['leak']['suspected'], a['ram_level_seconds']['warning'] > 0, a['rss_bytes']['max'] >= a['rss_bytes']['p95'] >= a['rss_bytes']['min'] > 0)") == "True True True" ]] ||
  fail "analysis json: $(cat "$T/analysis.json")"
is_png "$T/run.png" || fail "no PNG plot"
[[ $(stat -c %s "$T/run.png") -gt 10000 ]] || fail "the plot is nearly empty"

echo "== bad logs are refused by name"
head -c 700 "$LOG" >"$T/truncated.json"
expect 2 "truncated" ctl memory analyze --log-file "$T/truncated.json"
echo '{"samples": []}' >"$T/foreign.json"
expect 2 "not a yolod memory log" ctl memory analyze --log-file "$T/foreign.json"
expect 2 "$T/missing.json" ctl memory analyze --log-file "$T/missing.json"
sed 's/"version": 1/"version": 9/' "$LOG" >"$T/newer.json"
expect 2 "version 9" ctl memory analyze --log-file "$T/newer.json"
expect 2 "required" ctl memory analyze
# The plot replaces a regular file only: not a FIFO (nor a device: yoloctl may run as root), not
# the log itself.
mkfifo "$T/fifo.png"
expect 2 "not a regular file" ctl memory analyze --log-file "$LOG" --plot "$T/fifo.png"
[[ -p $T/fifo.png ]] || fail "the FIFO was replaced"
expect 2 "the memory log itself" ctl memory analyze --log-file "$LOG" --plot "$LOG"

echo "== yolod killed while a run logs: the log is whole"
ID2=$(ctl start-experiment "${TRAIN[@]}" --epochs 300 | new_id)
wait_for 60 has_log "$ID2" || fail "no memory log for the second run"
LOG2=$(log_of "$ID2")
wait_for 60 bash -c "$PY -c \"import json; l=json.load(open('$LOG2')); assert len(l['samples']) >= 4\"" ||
  fail "no samples in the second log"
kill -9 "$YOLOD_PID"
pkill -9 -f "yolo-worker.*$ID2" 2>/dev/null
sleep 0.5
logq "$LOG2" "len(l['samples']) >= 4" | grep -q True || fail "the log is not valid JSON after SIGKILL"
expect 0 "samples over" ctl memory analyze --log-file "$LOG2"

echo "== memory monitor: a log and a PNG refreshed while it runs"
start_yolod
mkdir -p "$T/mon"
ctl memory monitor --duration 2.5 --interval 0.5 --plot-interval 1 --out-dir "$T/mon" >/dev/null 2>"$T/mon.err" ||
  fail "monitor: $(cat "$T/mon.err")"
MON=$(ls "$T"/mon/memory_log_*.json 2>/dev/null | head -1)
[[ -n $MON ]] || fail "monitor wrote no log: $(cat "$T/mon.err")"
[[ $(logq "$MON" "l['source'], len(l['samples']) >= 3") == "yoloctl memory monitor True" ]] || fail "monitor log: $(cat "$MON")"
is_png "${MON%.json}.png" || fail "monitor drew no PNG: $(cat "$T/mon.err")"
expect 0 "yoloctl memory monitor" ctl memory analyze --log-file "$MON"
echo "PASS"
