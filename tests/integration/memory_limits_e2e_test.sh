#!/usr/bin/env bash
# The pre-flight memory estimate and AutoBatch with the real worker: a fixed batch that cannot
# fit is refused with the figures before anything is written; AutoBatch on the CPU, inside a
# memory cgroup with a limit, picks a batch that the limit bounds and whose real peak stays
# under the fraction. Exits 77 (skipped) for the cgroup part where no cgroup can be made.
set -uo pipefail
WORKER=${1:?usage: memory_limits_e2e_test.sh path/to/yolo-worker}
source "$(dirname "$0")/lib.sh"
mb() { awk -v v="$1" -v u="$2" 'BEGIN { printf "%d", (u == "GB" ? v * 1000 : v) }'; }

# Enough images that the limit, not the training set, bounds AutoBatch's batch.
n=200
"$WORKER" make-dataset shapes out="$T/data" train=$n val=8 imgsz=160 seed=2 >/dev/null || fail "no dataset"
common=(data="$T/data/data.yaml" model=yolov8n imgsz=160 epochs=1 workers=1 threads=2 plots=False
  project="$T/runs")

echo "--- a fixed batch that fits gets its estimate"
out=$("$WORKER" train "${common[@]}" batch=8 name=fixed 2>&1) || fail "training failed: $out"
line=$(grep -o 'memory estimate: batch 8 needs about [0-9.]* [MG]B above the worker.s [0-9.]* [MG]B' <<<"$out") \
  || fail "no estimate line: $out"
echo "$line"

echo "--- AutoBatch inside a memory cgroup"
limit=$((900 * 1000 * 1000))
if ! make_cgroup "$limit"; then
  echo "SKIP: this machine does not let the test make a memory cgroup"
  exit 77
fi
out=$(in_cgroup "$WORKER" train "${common[@]}" batch=-1 name=auto 2>&1) || fail "AutoBatch run failed: $out"
grep -E "AutoBatch|peak RSS" <<<"$out"
line=$(grep -o 'AutoBatch: batch [0-9]* for 60 % of the memory available: needs about [0-9.]* [MG]B above the worker.s [0-9.]* [MG]B, of [0-9.]* [MG]B available' <<<"$out") \
  || fail "no AutoBatch line: $out"
echo "$line"
read -r batch need need_u base base_u avail avail_u < <(sed -E 's/AutoBatch: batch ([0-9]+) .* about ([0-9.]+) ([MG]B) above the worker.s ([0-9.]+) ([MG]B), of ([0-9.]+) ([MG]B) available/\1 \2 \3 \4 \5 \6 \7/' <<<"$line")
# The training's own peak: AutoBatch's confirming steps may pass the budget, and are how it
# learns that a batch does not fit.
peak=$(sed -nE 's/.*peak RSS [0-9]+ MB \(([0-9]+) MB since the memory estimate\).*/\1/p' <<<"$out")
[[ -n $peak ]] || fail "no training peak RSS: $out"
avail_mb=$(mb "$avail" "$avail_u") base_mb=$(mb "$base" "$base_u")
used=$((peak - base_mb)) budget=$((avail_mb * 60 / 100))
echo "batch $batch: peak RSS $peak MB, $used MB above the worker's $base_mb MB; budget $budget MB of $avail_mb MB available under a $((limit / 1000000)) MB limit"
((avail_mb < limit / 1000000)) || fail "AutoBatch did not see the cgroup's limit ($avail_mb MB available)"
((batch > 1 && batch < n)) || fail "batch $batch: the limit, not the training set's size, should bound it"
((used <= budget)) || fail "the real peak ($used MB above the worker) passed 60 % of what was available ($budget MB)"
grep -q "^batch: $batch\$" "$T/runs/auto/args.yaml" || fail "args.yaml does not keep the chosen batch"

echo "--- in the same cgroup, a batch that cannot fit is refused with the figures, nothing written"
out=$(in_cgroup "$WORKER" train "${common[@]}" batch=64 imgsz=320 name=huge 2>&1)
rc=$?
((rc == 1)) || fail "a batch that cannot fit exited $rc: $out"
[[ $out == *"memory estimate: batch 64 needs about"*"available"*"cannot fit"*"would fit"* ]] \
  || fail "the refusal does not give the figures: $out"
grep "cannot fit" <<<"$out"
[[ ! -e $T/runs/huge ]] || fail "a refused run left a folder"
echo "PASS"
