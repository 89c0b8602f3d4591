#!/usr/bin/env bash
# End to end: data-parallel training with c10d (Gloo on the CPU, loopback rendezvous).
# - two ranks of 4 images train as one process of 8: the same losses, epoch by epoch, within
#   rounding (rect batches, so that both see the same images in the same batches);
# - through yolod: killing rank 1 mid-run ends the experiment FAILED with the rank and the
#   signal as the reason, and `yoloctl resume` finishes it from last.pt.
# Usage: ddp_e2e_test.sh YOLOD YOLOCTL YOLO_WORKER
set -uo pipefail
YOLOD=$1 YOLOCTL=$2 WORKER=$3
source "$(dirname "$0")/lib.sh"
STATE=$T/state
field() {
  ctl -o json describe experiment "$1" | /usr/bin/python3 -c "import json,sys; print(json.load(sys.stdin).get('$2',''))"
}

"$WORKER" make-dataset shapes out="$T/data" train=32 val=8 imgsz=64 seed=0 >/dev/null || fail "make-dataset"
COMMON=(data="$T/data/data.yaml" model=yolov8n imgsz=64 batch=8 epochs=3 rect=True workers=0
  plots=False project="$T/runs")

echo "== 2 ranks x 4 images = 1 process x 8 images"
"$WORKER" train "${COMMON[@]}" name=one threads=1 >"$T/one.log" 2>&1 || { tail "$T/one.log"; fail "one process"; }
timeout 600 "$WORKER" train "${COMMON[@]}" name=two device=cpu world_size=2 >"$T/two.log" 2>&1 ||
  { tail -20 "$T/two.log"; fail "two ranks"; }
grep -q "DDP: rank 0 of 2" "$T/two.log" || fail "no DDP line in rank 0's log"
grep -q "^\[rank 1\] " "$T/two.log" || fail "rank 1's output is not in the log, prefixed"
[[ $(find "$T/runs" -maxdepth 1 -name 'two*' | wc -l) == 1 ]] || fail "more than one run folder"
/usr/bin/python3 - "$T/runs/one/results.csv" "$T/runs/two/results.csv" <<'PY' || fail "losses differ"
import csv, sys
one, two = (list(csv.DictReader(open(p))) for p in sys.argv[1:])
assert len(one) == len(two) == 3, (len(one), len(two))
keys = [k for k in one[0] if k.startswith(("train/", "val/"))]
for a, b in zip(one, two):
    for k in keys:
        x, y = float(a[k]), float(b[k])
        print(f"epoch {a['epoch']} {k}: one process {x:.6g}, two ranks {y:.6g}")
        assert abs(x - y) <= 1e-3 * max(abs(x), 1e-3), (k, x, y)
PY

echo "== yolod: rank 1 killed -> FAILED with the reason; resume finishes"
start_yolod
ID=$(ctl start-experiment --data "$T/data/data.yaml" --imgsz 64 --workers 0 --plots False \
  --epochs 4 --batch 8 device=cpu world_size=2 | new_id)
[[ -n $ID ]] || fail "start-experiment"
wait_for 300 bash -c "[[ \$($YOLOCTL -s $SERVER -o json describe experiment $ID | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin).get(\"epochs_completed\", 0))') -ge 1 ]]" ||
  fail "no epoch done: $(ctl describe experiment "$ID")"
WPID=$(field "$ID" worker_pid)
RANK1=$(pgrep -P "$WPID" | head -1)
[[ -n $RANK1 ]] || fail "rank 0 (pid $WPID) has no child rank"
# yolod counts the experiment's memory as both ranks': the report sums rank 0 and its child.
RANK0_RSS=$(awk '/^VmRSS/ {print $2 * 1024}' "/proc/$WPID/status")
ctl -o json memory report | /usr/bin/python3 -c "
import json, sys
w = [w for w in json.load(sys.stdin).get('workers', []) if w['experiment_id'] == '$ID'][0]['process']
assert w.get('processes') == 2, w
assert int(w['rss_bytes']) > 1.5 * $RANK0_RSS, (w, $RANK0_RSS)  # two ranks of about equal size
" || fail "the memory report does not sum both ranks"
expect 0 "worker/$ID (2 processes)" ctl memory report
kill -9 "$RANK1"
wait_for 90 bash -c "$YOLOCTL -s $SERVER describe experiment $ID | grep -q FAILED" ||
  fail "after killing rank 1: $(ctl describe experiment "$ID")"
expect 0 "rank 1 (pid $RANK1) was killed by signal 9" ctl describe experiment "$ID"
kill -0 "$WPID" 2>/dev/null && fail "rank 0 still runs"
wait_for 60 ctl resume "$ID" || fail "resume refused: $(ctl resume "$ID" 2>&1)"
OUT=$(ctl logs "$ID" -f) || fail "the resumed run did not succeed: $(ctl describe experiment "$ID")"
[[ $(field "$ID" state) == SUCCEEDED ]] || fail "state after resume: $(field "$ID" state)"
RUN=$(field "$ID" run_dir)
EPOCHS=$(cut -d, -f1 "$RUN/results.csv" | tail -n +2 | tr '\n' ' ')
[[ $EPOCHS == "1 2 3 4 " ]] || fail "results.csv epochs after resume: $EPOCHS"
echo "PASS"
