#!/usr/bin/env bash
# Hardening, end to end against real yolod processes: hostile and careless requests
# (hostile_client.py), a forged worker, private state files, a run_dir edited on disk, the
# order of arrival across a restart, a token file others can read, and a full disk.
# Usage: hardening_e2e_test.sh YOLOD YOLOCTL YOLO_WORKER PROTO_DIR
set -uo pipefail
YOLOD=$1 YOLOCTL=$2 WORKER=$3 PROTO_DIR=$4
source "$(dirname "$0")/lib.sh"
MOUNTED=""
on_exit() { [[ -n $MOUNTED ]] && umount "$MOUNTED" 2>/dev/null; }

stop_yolod() { kill -TERM "$YOLOD_PID"; wait "$YOLOD_PID"; }
mode() { stat -c %a "$1"; }

"$WORKER" make-dataset shapes out="$T/data" train=16 val=8 imgsz=96 seed=0 >/dev/null ||
  fail "make-dataset"
DATA=$T/data/data.yaml
mkdir -p "$T/py" "$T/scratch"
protoc --proto_path="$PROTO_DIR" --python_out="$T/py" --grpc_out="$T/py" \
  --plugin=protoc-gen-grpc=/usr/bin/grpc_python_plugin "$PROTO_DIR"/yolo/v1/*.proto ||
  fail "protoc for Python"

echo "== hostile requests: clear errors, other clients answered meanwhile"
STATE=$T/state
start_yolod
OUT=$(PYTHONPATH=$T/py timeout 300 /usr/bin/python3 "$(dirname "$0")/hostile_client.py" \
  "$SERVER" "$STATE" "$DATA" "$T/scratch" "$YOLOD_PID" 2>&1) || fail "hostile client: $OUT"
ORDER=$(echo "$OUT" | sed -n 's/^order: //p')
[[ -n $ORDER ]] || fail "no order printed: $OUT"
kill -0 "$YOLOD_PID" || fail "yolod died"
grep -q "refused a connection from pid" "$T/yolod.log" || fail "the forged worker was not logged"

echo "== state files are private"
ID=${ORDER%% *}
wait_for 120 bash -c "$YOLOCTL -s $SERVER -o json describe experiment $ID | grep -q SUCCEEDED" ||
  fail "victim did not finish"
[[ $(mode "$STATE") == 700 && $(mode "$STATE/runs") == 700 && $(mode "$STATE/runs/$ID") == 700 ]] ||
  fail "folders: $(mode "$STATE") $(mode "$STATE/runs") $(mode "$STATE/runs/$ID")"
for f in runs/$ID/experiment.json runs/$ID/train.log runs/$ID/weights/last.pt logs/yolod.log \
  worker.sock yolod.addr; do
  [[ $(mode "$STATE/$f") == 600 ]] || fail "$f is $(mode "$STATE/$f")"
done

echo "== a run_dir edited on disk is not trusted; the order of arrival survives a restart"
mkdir -p "$T/victim" && touch "$T/victim/precious"
/usr/bin/python3 - "$STATE/runs/$ID/experiment.json" "$T/victim" <<'PY' || fail "edit"
import json, sys
d = json.load(open(sys.argv[1])); d["run_dir"] = sys.argv[2]; json.dump(d, open(sys.argv[1], "w"))
PY
stop_yolod
start_yolod
LISTED=$(ctl -o json get experiments | /usr/bin/python3 -c \
  "import json,sys; print(' '.join(e['id'] for e in json.load(sys.stdin)['experiments']))")
[[ $LISTED == "$ORDER" ]] || fail "order after restart: '$LISTED', expected '$ORDER'"
expect 0 "$STATE/runs/$ID" ctl describe experiment "$ID"
expect 0 "" ctl delete "$ID"
[[ -f $T/victim/precious ]] || fail "Delete followed the edited run_dir"
[[ ! -e $STATE/runs/$ID ]] || fail "the run folder is still there"
stop_yolod

echo "== a token file that others may read is refused"
echo secret-token >"$T/token" && chmod 644 "$T/token"
expect 2 "chmod 600" "$YOLOD" --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 --state-dir "$T/tok" --worker "$WORKER" \
  --token-file "$T/token"

echo "== a full disk: the start fails and says so, nothing half-written, a restart is true"
mkdir -p "$T/small"
if mount -t tmpfs -o size=6m tmpfs "$T/small" 2>/dev/null; then
  MOUNTED=$T/small
  STATE=$T/small/state
  start_yolod
  # Training fills the disk: the worker must say why it failed.
  ID=$(ctl start-experiment --data "$DATA" --imgsz 64 --epochs 3 --workers 0 --plots False |
    sed -n 's/^experiment \(exp-[0-9a-f]*\) created.*/\1/p')
  [[ -n $ID ]] || fail "no experiment started"
  wait_for 180 bash -c "$YOLOCTL -s $SERVER -o json describe experiment $ID | grep -q '\"FAILED\"'" ||
    fail "the experiment on a full disk did not fail: $(ctl describe experiment "$ID")"
  expect 0 "no space left on device writing" ctl describe experiment "$ID"
  expect 0 "exit code 1" ctl describe experiment "$ID"
  # Fill what is left: a new experiment cannot be saved, so it is not confirmed.
  dd if=/dev/zero of="$T/small/filler" bs=64k 2>/dev/null
  expect 2 "No space left on device" ctl start-experiment --data "$DATA" --epochs 1
  ls "$STATE/runs" | grep -v "^$ID\$" | grep -q . && fail "a half-made experiment is left"
  find "$STATE" -name "*.tmp.*" | grep -q . && fail "temp files left: $(find "$STATE" -name '*.tmp.*')"
  stop_yolod
  rm -f "$T/small/filler"
  start_yolod
  [[ $(ctl -o json get experiments | grep -c '"id"') == 1 ]] || fail "after restart: $(ctl get experiments)"
  stop_yolod
else
  echo "SKIP: cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN)"
fi
echo "PASS"
