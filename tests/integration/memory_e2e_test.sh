#!/usr/bin/env bash
# End to end: the memory watchdog of a real yolod acting on real yolo-worker runs. Levels set
# below what the host uses make the next epoch of a running experiment apply the pressure
# policy and say why; the danger level holds new starts and stops the newest run with a
# checkpoint, which resumes by itself once memory is back to ok. With fault injection: an
# out-of-memory error is retried at half the batch, a leak is flagged and a clean run is not,
# and a worker SIGKILLed as the OOM killer kills is resumed at half the batch. AutoBatch's choice
# is kept in the record, and a batch that cannot fit fails with the figures.
# Usage: memory_e2e_test.sh YOLOD YOLOCTL YOLO_WORKER
set -uo pipefail
YOLOD=$1 YOLOCTL=$2 WORKER=$3
source "$(dirname "$0")/lib.sh"

STATE=$T/state
# says ID EXPRESSION PATTERN: the value matches (for wait_for, which runs it again each time).
says() { json "$1" "$2" | grep -q -- "$3"; }
report_says() { "$YOLOCTL" -s "$SERVER" -o json memory report | grep -q -- "$1"; }

"$WORKER" make-dataset shapes out="$T/data" train=32 val=8 imgsz=96 seed=0 >/dev/null ||
  fail "make-dataset"
DATA=$T/data/data.yaml
TRAIN=(--data "$DATA" --imgsz 64 --workers 2 --plots False --batch 8 --cache ram)

echo "== the levels: shown, refused when not increasing, set at run time"
start_yolod --watchdog-interval 0.2 --danger-grace 2
expect 0 "70" ctl memory levels
expect 0 '"danger_percent": 95' ctl memory levels -o json
expect 2 "ram" ctl memory levels set ram=80,70,90
expect 2 "expected ram=" ctl memory levels set disk=1,2,3
expect 0 "ram 60,70,80" ctl memory levels set ram=60,70,80
expect 0 "RAM" ctl memory report
ctl memory levels set ram=70,80,90 >/dev/null

echo "== warning: the next epoch of a running experiment applies the policy and says why"
ID=$(ctl start-experiment "${TRAIN[@]}" --epochs 300 | new_id)
[[ -n $ID ]] || fail "no id"
wait_for 120 says "$ID" "e.get('epochs_completed', 0) > 0" True ||
  fail "the experiment did not train: $(ctl describe experiment "$ID")"
expect 0 "" ctl memory levels set "$(warning_levels)"
wait_for 120 says "$ID" "e.get('memory_policy', '')" "batch 8 -> 4" ||
  fail "the policy was not applied: $(ctl describe experiment "$ID")"
json "$ID" "[a['kind'] for a in e['memory_actions']]" | grep -q "'policy', 'policy_applied'" ||
  fail "memory actions: $(json "$ID" "e['memory_actions']")"
json "$ID" "[a['message'] for a in e['memory_actions'] if a['kind'] == 'policy'][0]" | grep -q "warning level" ||
  fail "the policy request does not say why"
wait_for 20 grep -q "memory policy after epoch" "$STATE/runs/$ID/train.log" ||
  fail "train.log does not show the policy"
grep -q "yolod: memory: pressure policy requested" "$STATE/runs/$ID/train.log" ||
  fail "train.log does not show yolod's request"
expect 0 "cleanup" ctl memory report
expect 0 "$ID: batch 4 -> 2 frees about" ctl memory report  # a recommendation, sized by its estimate

echo "== danger: new starts are held, the newest run is stopped with a checkpoint, then resumed"
expect 0 "" ctl memory levels set "$(danger_levels)"
wait_for 30 report_says '"starts_held": true' ||
  fail "starts are not held at danger: $(ctl memory report)"
expect 2 "held" ctl start-experiment "${TRAIN[@]}" --epochs 1
wait_for 120 says "$ID" "e['state']" STOPPED ||
  fail "the newest run was not stopped: $(ctl describe experiment "$ID")"
[[ $(json "$ID" "e.get('stopped_for_memory', False)") == True ]] || fail "not marked stopped_for_memory"
json "$ID" "e['reason']" | grep -q "memory watchdog" || fail "the reason does not say why"
test -s "$STATE/runs/$ID/weights/last.pt" || fail "no checkpoint after the memory stop"
expect 0 "" ctl memory levels set ram=97,98,99
wait_for 60 says "$ID" "e['state']" RUNNING ||
  fail "the run was not resumed at ok: $(ctl describe experiment "$ID")"
json "$ID" "[a['kind'] for a in e['memory_actions']]" | grep -q "'stop', 'resume'" ||
  fail "memory actions: $(json "$ID" "e['memory_actions']")"
expect 0 "" ctl stop "$ID"
expect 2 "enable-fault-injection" ctl start-experiment "${TRAIN[@]}" --epochs 2 --fault_oom_epoch 2
kill -TERM "$YOLOD_PID"
wait "$YOLOD_PID" 2>/dev/null

echo "== an out-of-memory error in epoch 2 is retried at half the batch, and the run SUCCEEDS"
STATE=$T/faults
start_yolod --enable-fault-injection --danger-grace 0
FAST=(--data "$DATA" --imgsz 64 --workers 0 --plots False --batch 8)
expect 0 "SUCCEEDED" ctl start-experiment "${FAST[@]}" --epochs 3 --fault_oom_epoch 2 --follow
ID=$(ctl -o json get experiments | /usr/bin/python3 -c "import json,sys; print(json.load(sys.stdin)['experiments'][-1]['id'])")
says "$ID" "[(a['kind'], a.get('batch_before', 0), a.get('batch_after', 0)) for a in e['memory_actions']]" \
  "('oom_retry', 8, 4)" || fail "no OOM retry: $(json "$ID" "e.get('memory_actions')")"
says "$ID" "e['batch']" "^4$" || fail "the batch is not 4 after the retry"
says "$ID" "int(e['memory_before']['yolod_rss_bytes']) > 0 and int(e['memory_after']['host_available_bytes']) > 0" \
  True || fail "no memory before and after the round: $(json "$ID" "e.get('memory_after')")"
grep -q "out of memory in epoch 2 .*retry 1 of 3 from its start at batch 8 -> 4" \
  "$STATE/runs/$ID/train.log" || fail "train.log does not show the retry"

echo "== a suspected leak is flagged (and a clean run is not)"
expect 0 "SUCCEEDED" ctl start-experiment "${FAST[@]}" --epochs 8 --fault_leak_mb 60 --follow
LEAK=$(ctl -o json get experiments | /usr/bin/python3 -c "import json,sys; print(json.load(sys.stdin)['experiments'][-1]['id'])")
says "$LEAK" "e['rss_trend'].get('leak_suspected', False)" True ||
  fail "the leak was not flagged: $(json "$LEAK" "e.get('rss_trend')")"
says "$LEAK" "[a['message'] for a in e['memory_actions'] if a['kind'] == 'leak_suspected']" \
  "MB per epoch" || fail "no leak event"
grep -q "yolod: memory: memory leak suspected" "$STATE/runs/$LEAK/train.log" ||
  fail "train.log does not show the leak"
expect 0 "SUCCEEDED" ctl start-experiment "${FAST[@]}" --epochs 8 --follow
CLEAN=$(ctl -o json get experiments | /usr/bin/python3 -c "import json,sys; print(json.load(sys.stdin)['experiments'][-1]['id'])")
says "$CLEAN" "e['rss_trend'].get('leak_suspected', False)" False ||
  fail "a clean run was flagged: $(json "$CLEAN" "e.get('rss_trend')")"

echo "== a worker SIGKILLed as the OOM killer kills is resumed at half the batch"
ID=$(ctl start-experiment "${FAST[@]}" --epochs 300 | new_id)
wait_for 120 says "$ID" "e.get('epochs_completed', 0) > 0" True || fail "it did not train"
PID=$(json "$ID" "e['worker_pid']")
kill -KILL "$PID"
wait_for 60 says "$ID" "e.get('oom_resumes', 0)" "^1$" ||
  fail "not resumed after SIGKILL: $(ctl describe experiment "$ID")"
wait_for 60 says "$ID" "e['state']" RUNNING || fail "the resumed round does not run"
says "$ID" "e['batch']" "^4$" || fail "the resume is not at half the batch"
says "$ID" "[a['kind'] for a in e['memory_actions']]" "oom_resume" || fail "no oom_resume action"
wait_for 60 says "$ID" "e['worker_pid'] != $PID" True || fail "no new worker"
echo "== killed again until yolod's resumes are spent: FAILED, with every batch it tried"
PID=$(json "$ID" "e['worker_pid']")
kill -KILL "$PID"
wait_for 60 says "$ID" "e.get('oom_resumes', 0)" "^2$" || fail "not resumed a second time"
wait_for 60 says "$ID" "e['state'] == 'RUNNING' and e['worker_pid'] != $PID" True ||
  fail "no third worker: $(ctl describe experiment "$ID")"
kill -KILL "$(json "$ID" "e['worker_pid']")"
wait_for 60 says "$ID" "e['state']" FAILED || fail "not FAILED once the resumes were spent"
says "$ID" "e['reason']" "batches tried: 8 -> 4, 4 -> 2; no resume left (--oom-retries 2)" ||
  fail "the reason does not list the batches tried: $(json "$ID" "e['reason']")"

echo "== AutoBatch: the batch it chose and its fit are in the record; a batch that cannot fit FAILS with the figures"
expect 0 "SUCCEEDED" ctl start-experiment --data "$DATA" --imgsz 64 --workers 0 --plots False --epochs 1 --batch -1 --follow
AUTO=$(ctl -o json get experiments | /usr/bin/python3 -c "import json,sys; print(json.load(sys.stdin)['experiments'][-1]['id'])")
says "$AUTO" "e['memory_estimate']['autobatch'] and int(e['memory_estimate']['batch']) == e['batch'] > 1 and len(e['memory_estimate']['steps']) >= 3" \
  True || fail "no AutoBatch choice in the record: $(json "$AUTO" "e.get('memory_estimate')")"
says "$AUTO" "[a['kind'] for a in e['memory_actions']]" "autobatch" || fail "no autobatch event"
expect 0 "AutoBatch: batch" ctl describe experiment "$AUTO"
# As many images as it takes for one batch of them at 640 px to need more than this host's RAM:
# a step of yolov8n needs about 80 MB an image there, so one image per 40 MB asks for twice it.
n=$(awk '/MemTotal/{n = int($2 / 1024 / 40); print (n < 512 ? 512 : n)}' /proc/meminfo)
"$WORKER" make-dataset shapes out="$T/big" train="$n" val=4 imgsz=64 seed=0 >/dev/null || fail "make-dataset"
BIG=$(ctl start-experiment --data "$T/big/data.yaml" --imgsz 640 --workers 0 --plots False --batch "$n" --epochs 1 | new_id)
wait_for 120 says "$BIG" "e['state']" FAILED || fail "a batch that cannot fit was not refused: $(ctl describe experiment "$BIG")"
says "$BIG" "e['reason']" "cannot fit.*batch=[0-9]* would fit" || fail "the refusal lacks the figures: $(json "$BIG" "e['reason']")"
kill -TERM "$YOLOD_PID"
wait "$YOLOD_PID" 2>/dev/null
echo "PASS"
