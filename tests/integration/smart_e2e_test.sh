#!/usr/bin/env bash
# End to end: smart training. `start-experiment --smart` trains in rounds, each a fresh
# yolo-worker resuming last.pt; the record has each round's peak and end RSS and yolod's RSS
# back at its baseline after each; where no gradients are pending at epoch ends the rounds
# train exactly as one run (results.csv equal but for time); rounds without a better fitness
# end the run after `--patience` of them, finished by a last worker; bad input names the field.
# Usage: smart_e2e_test.sh YOLOD YOLOCTL YOLO_WORKER
set -uo pipefail
YOLOD=$1 YOLOCTL=$2 WORKER=$3
source "$(dirname "$0")/lib.sh"

STATE=$T/state
# All columns of results.csv but time (the second).
results() { cut -d, -f1,3- "$STATE/runs/$1/results.csv"; }

"$WORKER" make-dataset shapes out="$T/data" train=32 val=8 imgsz=96 seed=0 >/dev/null ||
  fail "make-dataset"
# batch 8 x accumulation 1 (nbs 8) divides the 32 images: no gradient is pending at an epoch end.
TRAIN=(--data "$T/data/data.yaml" --imgsz 64 --workers 2 --plots False --batch 8 --nbs 8 --seed 1)
start_yolod

echo "== bad input names the field"
expect 2 "smart.round_epochs" ctl start-experiment "${TRAIN[@]}" --smart --round-epochs -1
expect 2 "disagrees with epochs=3" ctl start-experiment "${TRAIN[@]}" --epochs 3 --smart --max-total-epochs 5
expect 2 "need --smart" ctl start-experiment "${TRAIN[@]}" --round-epochs 2
expect 2 "save=True" ctl start-experiment "${TRAIN[@]}" --save False --smart
expect 2 "round_end" ctl start-experiment "${TRAIN[@]}" round_end=2
expect 2 "--patience" ctl start-experiment "${TRAIN[@]}" --smart --patience x

echo "== rounds of 2 for 5 epochs: three workers, the same training as one run"
SMART=$(ctl start-experiment "${TRAIN[@]}" --smart --max-total-epochs 5 --round-epochs 2 --patience 3 --follow | new_id)
[[ -n $SMART ]] || fail "no smart experiment"
json "$SMART" "e['state'], e['reason']" | grep -q "SUCCEEDED.*smart: finished 5 epochs in 3 rounds" ||
  fail "smart run: $(ctl describe experiment "$SMART")"
[[ $(json "$SMART" "e['rounds']") == 3 ]] || fail "rounds: $(json "$SMART" "e['rounds']")"
[[ $(json "$SMART" "[(r['first_epoch'], r['last_epoch']) for r in e['smart_rounds']]") == "[(1, 2), (3, 4), (5, 5)]" ]] ||
  fail "the rounds' epochs: $(json "$SMART" "e['smart_rounds']")"
# Each round: the worker's peak (the kernel's count) at least its end RSS, both real; yolod's
# RSS after the cleanup within 16 MB of where it was before round 1.
json "$SMART" "all(int(r['worker_peak_rss_bytes']) >= int(r['worker_end_rss_bytes']) > 50e6 and
  abs(int(r['yolod_rss_after_bytes']) - int(e['smart_rounds'][0]['yolod_rss_before_bytes'])) < 16e6
  and int(r['host_available_after_bytes']) > 0 for r in e['smart_rounds'])" | grep -q True ||
  fail "the rounds' memory: $(json "$SMART" "e['smart_rounds']")"
[[ $(json "$SMART" "len([a for a in e['memory_actions'] if a['kind'] == 'round'])") == 3 ]] ||
  fail "a round memory action each: $(json "$SMART" "e['memory_actions']")"
grep -q "yolod: memory: round 2 (epochs 3-4 of 5.*memory report: RAM ok" "$STATE/runs/$SMART/train.log" ||
  fail "train.log has no report between rounds"
[[ $(grep -c "round_end=[24]: this round is done" "$STATE/runs/$SMART/train.log") == 2 ]] ||
  fail "train.log: two rounds ended by round_end"
expect 0 "ROUND" ctl describe experiment "$SMART"
PLAIN=$(ctl start-experiment "${TRAIN[@]}" --epochs 5 --follow | new_id)
[[ $(json "$PLAIN" "e['state']") == SUCCEEDED ]] || fail "plain run: $(ctl describe experiment "$PLAIN")"
[[ "$(results "$SMART")" == "$(results "$PLAIN")" ]] ||
  fail "the rounds trained otherwise than one run: $(diff <(results "$SMART") <(results "$PLAIN"))"
grep -q "Optimizer stripped" "$STATE/runs/$SMART/train.log" || fail "the last round did not finish the run"

echo "== stopped inside a round: resumed to the same round's end"
STOPPED=$(ctl start-experiment "${TRAIN[@]}" --smart --max-total-epochs 10 --round-epochs 5 | new_id)
trained() { [[ $(json "$1" "e.get('epochs_completed', 0) >= 1") == True ]]; }
wait_for 120 trained "$STOPPED" ||
  fail "the smart run did not train: $(ctl describe experiment "$STOPPED")"
expect 0 "" ctl stop "$STOPPED"
wait_for 60 bash -c "'$YOLOCTL' -s '$SERVER' get experiments | grep '$STOPPED' | grep -q STOPPED" ||
  fail "not stopped: $(ctl describe experiment "$STOPPED")"
# (Stopped before epoch 5 on this machine: an epoch takes about half a second.)
json "$STOPPED" "e['smart_round']['last_epoch'], len(e.get('smart_rounds', []))" | grep -q "^5 0$" ||
  fail "the round in progress: $(json "$STOPPED" "e.get('smart_round'), e.get('smart_rounds')")"
expect 0 "" ctl resume "$STOPPED" --follow
[[ $(json "$STOPPED" "[(r['first_epoch'], r['last_epoch']) for r in e['smart_rounds']]") == "[(1, 5), (6, 10)]" ]] ||
  fail "rounds after the stop: $(ctl describe experiment "$STOPPED")"
json "$STOPPED" "e['state'], e['rounds'] >= 3" | grep -q "SUCCEEDED True" || fail "after the resume: $(ctl describe experiment "$STOPPED")"

echo "== patience: no better fitness for a round ends the run, finished by a last worker"
cat >"$T/smart.yaml" <<YAML
- {data: $T/data/data.yaml, imgsz: 64, workers: 2, plots: False, batch: 8, seed: 1,
   smart: {max_total_epochs: 10, round_epochs: 1, patience: 1}}
YAML
sed "s/patience: 1/rounds: 1/" "$T/smart.yaml" >"$T/bad.yaml"
expect 2 "smart.rounds" ctl start-experiment -f "$T/bad.yaml"
PAT=$(ctl start-experiment -f "$T/smart.yaml" | new_id)
[[ -n $PAT ]] || fail "no patience experiment"
wait_for 300 bash -c "'$YOLOCTL' -s '$SERVER' get experiments | grep '$PAT' | grep -q SUCCEEDED" ||
  fail "patience run: $(ctl describe experiment "$PAT")"
# Fitness is 0 in the first epochs of so small a run: round 1 sets the best, round 2 does not
# raise it.
json "$PAT" "e['reason']" | grep -q "smart: ended after epoch 2 of 10: the best fitness (0.00000) did not improve for 1 rounds" ||
  fail "patience reason: $(json "$PAT" "e['reason']")"
[[ $(json "$PAT" "e['rounds'], len(e['smart_rounds'])") == "3 2" ]] ||
  fail "two training rounds and a finishing one: $(json "$PAT" "e['rounds'], len(e['smart_rounds'])") $(ctl describe experiment "$PAT")"
grep -q "round_end=2: .* holds epoch 2 already; finishing the run there" "$STATE/runs/$PAT/train.log" ||
  fail "the last worker did not only finish"
grep -q "Optimizer stripped" "$STATE/runs/$PAT/train.log" || fail "the run was not finished"
echo "PASS"
