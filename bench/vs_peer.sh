#!/usr/bin/env bash
# yolod against Ultralytics 8.1.47 (the peer, ../shared/peer), one after the other on the same
# generated dataset with the same model, imgsz, batch and threads: training images/s, peak RSS
# and seconds per epoch, and the data pipeline alone (workers=0, one core) for both.
# Usage: bench/vs_peer.sh                       (run by hand; prints one table)
# env (defaults): MODEL=yolov8n IMGSZ=320 BATCH=16 EPOCHS=3 THREADS=2 WORKERS=2 TRAIN=256
#   SRC=IMGSZ (side of the generated source images; e.g. SRC=640 trains 640 px images at 320)
#   DEVICE=cpu AMP=0 PY=/usr/bin/python3 (the peer's; on a GPU machine: DEVICE=0 AMP=1 PY=python3)
#   PEER_SCRIPTS=../shared/peer   LOADER=1 (0: skip the loader rows)   KEEP=DIR (keep the files)
#   BUILD=build (yolod's build folder; e.g. build-cuda from bench/gpu_check.sh)
# Training images/s: epochs after the first, training only (both sides count data loading and
# exclude validation). Peak RSS: yolod's process (ru_maxrss); the peer's process tree sampled
# every 0.2 s by run.sh, the whole run including the final validation for both. On a GPU
# (DEVICE=N), nvidia-smi samples GPU N every 0.2 s during each run, the same way for both: the
# peak of its used memory above what was used before the run, and the mean utilisation over the
# run's samples (start-up and the last validation included).
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${MODEL:-yolov8n} IMGSZ=${IMGSZ:-320} BATCH=${BATCH:-16} EPOCHS=${EPOCHS:-3}
THREADS=${THREADS:-2} WORKERS=${WORKERS:-2} TRAIN=${TRAIN:-256} SRC=${SRC:-$IMGSZ}
DEVICE=${DEVICE:-cpu} AMP=${AMP:-0} LOADER=${LOADER:-1}
PEER_SCRIPTS=$(realpath "${PEER_SCRIPTS:-../shared/peer}")
BUILD=${BUILD:-build}
WORKER=$BUILD/server/worker/yolo-worker LOADER_BIN=$BUILD/bench/loader_throughput
[[ -x $WORKER && -x $LOADER_BIN ]] || ninja -C "$BUILD" yolo-worker loader_throughput >/dev/null
[[ -x $PEER_SCRIPTS/run.sh ]] || { echo "no peer at $PEER_SCRIPTS (PEER_SCRIPTS=...)" >&2; exit 1; }
if [[ -n ${KEEP:-} ]]; then T=$KEEP; mkdir -p "$T"; else T=$(mktemp -d); fi
trap 'gpu_stop; [[ -n ${KEEP:-} ]] || rm -rf "$T"' EXIT
log() { echo "[vs_peer] $*" >&2; }
# GPU sampling: gpu_watch NAME starts it, gpu_stop ends it; nothing on the CPU.
GPU_PID=
gpu_watch() {
  [[ $DEVICE == cpu ]] && return 0
  nvidia-smi -i "$DEVICE" --query-gpu=memory.used --format=csv,noheader,nounits >"$T/gpu.$1.base"
  nvidia-smi -i "$DEVICE" --query-gpu=memory.used,utilization.gpu --format=csv,noheader,nounits \
    -lms 200 >"$T/gpu.$1.csv" &
  GPU_PID=$!
}
gpu_stop() {
  if [[ -n $GPU_PID ]]; then kill "$GPU_PID" 2>/dev/null; wait "$GPU_PID" 2>/dev/null || true; fi
  GPU_PID=
}

"$WORKER" make-dataset shapes out="$T/data" train="$TRAIN" val=64 imgsz="$IMGSZ" \
  width="$SRC" height="$SRC" seed=0 >/dev/null
DATA=$T/data/data.yaml
amp=False; [[ $AMP == 1 ]] && amp=True

log "yolod: $MODEL imgsz=$IMGSZ batch=$BATCH epochs=$EPOCHS threads=$THREADS workers=$WORKERS device=$DEVICE"
gpu_watch yolod
/usr/bin/time -f "%M" -o "$T/yolod.maxrss" "$WORKER" train data="$DATA" model="$MODEL" \
  imgsz="$IMGSZ" batch="$BATCH" epochs="$EPOCHS" workers="$WORKERS" threads="$THREADS" \
  device="$DEVICE" amp="$amp" val=False plots=False project="$T/runs" name=yolod \
  >"$T/yolod.log" 2>&1 || { tail -30 "$T/yolod.log" >&2; exit 1; }
gpu_stop
log "peer: the same"
gpu_watch peer
EPOCHS=$EPOCHS BATCH=$BATCH IMGSZ=$IMGSZ MODEL=$MODEL.yaml THREADS=$THREADS VAL=0 \
  DEVICE=$DEVICE AMP=$AMP NAME=vs_peer "$PEER_SCRIPTS/run.sh" "$DATA" >"$T/peer.json" 2>"$T/peer.log" ||
  { tail -30 "$T/peer.log" >&2; exit 1; }
gpu_stop

: >"$T/loader.txt"
if [[ $LOADER == 1 ]]; then
  log "loaders alone, workers=0"
  y=$("$LOADER_BIN" data="$DATA" imgsz="$IMGSZ" workers=0 batch=16 | awk '{print $1; exit}')
  p=$(IMGSZ=$IMGSZ WORKERS=0 BATCH=16 "$PEER_SCRIPTS/loader.sh" "$DATA" 2>/dev/null | tail -1)
  echo "$y $p" >"$T/loader.txt"
fi

/usr/bin/python3 - "$T" "$EPOCHS" "$TRAIN" <<'PY'
import json, re, sys
t, epochs, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
log = open(f"{t}/yolod.log").read()
rows = [(float(s), float(r)) for s, r in re.findall(r"(\d+\.\d+)s (\d+\.\d+) img/s", log)]
steady = rows[1:] or rows
y_epoch = sum(s for s, _ in steady) / len(steady)
y_ips = n / y_epoch
y_rss = int(open(f"{t}/yolod.maxrss").read().split()[-1]) / 1024
p = json.loads(open(f"{t}/peer.json").read().strip().splitlines()[-1])
p_ips, p_rss = p["imgs_per_s"], p["peak_rss_mb"]
p_epoch = n / p_ips
print(f"{'':<28}{'yolod':>10}{'peer':>10}{'yolod/peer':>12}")
print(f"{'training images/s':<28}{y_ips:>10.2f}{p_ips:>10.2f}{y_ips / p_ips:>12.2f}")
print(f"{'seconds per epoch':<28}{y_epoch:>10.1f}{p_epoch:>10.1f}{y_epoch / p_epoch:>12.2f}")
print(f"{'peak RSS MB':<28}{y_rss:>10.0f}{p_rss:>10.0f}{y_rss / p_rss:>12.2f}")
def gpu(name):
    try:
        base = float(open(f"{t}/gpu.{name}.base").read().split()[0])
        rows = [l.split(",") for l in open(f"{t}/gpu.{name}.csv") if "," in l]
        used = [float(m) for m, _ in rows]
        util = [float(u) for _, u in rows]
        return max(used) - base, sum(util) / len(util)
    except (OSError, ValueError, IndexError, ZeroDivisionError):
        return None
y_g, p_g = gpu("yolod"), gpu("peer")
if y_g and p_g:
    print(f"{'GPU memory peak MiB':<28}{y_g[0]:>10.0f}{p_g[0]:>10.0f}{y_g[0] / max(p_g[0], 1):>12.2f}")
    print(f"{'GPU utilisation %':<28}{y_g[1]:>10.1f}{p_g[1]:>10.1f}{y_g[1] / max(p_g[1], 1e-9):>12.2f}")
line = open(f"{t}/loader.txt").read().split(maxsplit=1)
if line:
    y_l, p_l = float(line[0]), json.loads(line[1])["images_per_s"]
    print(f"{'loader alone, 1 core, img/s':<28}{y_l:>10.1f}{p_l:>10.1f}{y_l / p_l:>12.2f}")
PY
# The lead depends on the vector unit: oneDNN's Winograd convolutions need AVX-512.
isa=AVX2; grep -qw avx512f /proc/cpuinfo && isa=AVX-512
grep -qw avx2 /proc/cpuinfo || isa="no AVX2"
echo "(training: epochs 2..$EPOCHS of $TRAIN images, validation excluded; $(nproc) cores, $isa)"
