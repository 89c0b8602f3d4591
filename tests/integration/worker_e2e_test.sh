#!/usr/bin/env bash
# End to end with the real yolo-worker binary: generate a tiny dataset, train, refuse to
# overwrite a run, survive SIGKILL and resume, validate as JSON, and reject bad input.
set -euo pipefail
WORKER=${1:?usage: worker_e2e_test.sh path/to/yolo-worker}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
common=(imgsz=64 batch=8 workers=1 threads=1 project="$T/runs")

# Waits up to $2 seconds for command $1 to succeed.
wait_for() {
  local deadline=$((SECONDS + $2))
  until eval "$1"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
}

"$WORKER" make-dataset shapes out="$T/data" train=16 val=8 imgsz=64 seed=1 >/dev/null
[[ -f $T/data/data.yaml ]] || fail "no data.yaml"

echo "--- train 2 epochs"
"$WORKER" train data="$T/data/data.yaml" model=yolov8n epochs=2 name=e2e "${common[@]}" >"$T/train.log" 2>&1 \
  || { cat "$T/train.log"; fail "training failed"; }
run="$T/runs/e2e"
for f in results.csv args.yaml weights/last.pt weights/best.pt; do
  [[ -s $run/$f ]] || fail "missing $f"
done
[[ $(head -1 "$run/results.csv") == epoch,time,train/box_loss,train/cls_loss,train/dfl_loss,metrics/precision\(B\),metrics/recall\(B\),metrics/mAP50\(B\),metrics/mAP50-95\(B\),val/box_loss,val/cls_loss,val/dfl_loss,lr/pg0,lr/pg1,lr/pg2 ]] \
  || fail "results.csv header: $(head -1 "$run/results.csv")"
[[ $(tail -n +2 "$run/results.csv" | cut -d, -f1 | tr '\n' ' ') == "1 2 " ]] || fail "results.csv epochs"
grep -q "^epochs: 2" "$run/args.yaml" || fail "args.yaml"
ls "$run/weights" | grep -q tmp && fail "temp files left in weights/"

echo "--- an existing run folder is not overwritten"
"$WORKER" train data="$T/data/data.yaml" model=yolov8n epochs=1 name=e2e val=false "${common[@]}" >"$T/train2.log" 2>&1 \
  || { cat "$T/train2.log"; fail "second run failed"; }
[[ -f $T/runs/e2e2/weights/last.pt ]] || fail "second run did not go to e2e2"
[[ $(tail -n +2 "$run/results.csv" | wc -l) == 2 ]] || fail "first run was touched"

echo "--- SIGKILL, then resume"
"$WORKER" train data="$T/data/data.yaml" model=yolov8n epochs=4 name=kill "${common[@]}" >"$T/kill.log" 2>&1 &
pid=$!
wait_for "[[ -f $T/runs/kill/weights/last.pt ]]" 120 || { cat "$T/kill.log"; fail "no checkpoint before kill"; }
kill -9 "$pid"
wait "$pid" 2>/dev/null || true
done_epochs=$(tail -n +2 "$T/runs/kill/results.csv" | wc -l)
((done_epochs < 4)) || fail "run finished before the kill; nothing tested"
"$WORKER" train resume=True model="$T/runs/kill/weights/last.pt" >"$T/resume.log" 2>&1 \
  || { cat "$T/resume.log"; fail "resume failed"; }
grep -q "Resuming training" "$T/resume.log" || fail "resume did not resume"
[[ $(tail -n +2 "$T/runs/kill/results.csv" | cut -d, -f1 | tr '\n' ' ') == "1 2 3 4 " ]] \
  || fail "after resume results.csv epochs are: $(tail -n +2 "$T/runs/kill/results.csv" | cut -d, -f1 | tr '\n' ' ')"
if "$WORKER" train resume=True model="$T/runs/kill/weights/last.pt" >"$T/again.log" 2>&1; then
  fail "resuming a finished run succeeded"
fi
grep -q "finished" "$T/again.log" || fail "no clear error for a finished run"

echo "--- val as JSON"
"$WORKER" val model="$run/weights/best.pt" data="$T/data/data.yaml" format=json threads=1 >"$T/val.json" 2>"$T/val.err" \
  || { cat "$T/val.err"; fail "val failed"; }
python3 - "$T/val.json" <<'PY'
import json, sys
lines = [l for l in open(sys.argv[1]) if l.strip()]
assert len(lines) == 1, lines
m = json.loads(lines[0])
for k in ("metrics/precision(B)", "metrics/recall(B)", "metrics/mAP50(B)", "metrics/mAP50-95(B)"):
    assert 0.0 <= m[k] <= 1.0, (k, m[k])
assert m["images"] == 8, m
assert m["instances"] > 0, m
PY

echo "--- bad input is a clear error"
set +e
"$WORKER" train data="$T/data/data.yaml" epochz=3 >/dev/null 2>"$T/err"; rc=$?
set -e
[[ $rc == 2 ]] && grep -q "epochz" "$T/err" || fail "unknown key: rc=$rc $(cat "$T/err")"
set +e
"$WORKER" train data="$T/nope.yaml" epochs=1 "${common[@]}" >/dev/null 2>"$T/err"; rc=$?
set -e
[[ $rc != 0 ]] && grep -q "nope.yaml" "$T/err" || fail "missing data: rc=$rc $(cat "$T/err")"

echo "--- info"
"$WORKER" info model=yolov8n nc=80 imgsz=640 | grep -q "225 layers, 3,157,200 parameters" || fail "info"
echo "worker end to end: 1 passed, 0 failed"
