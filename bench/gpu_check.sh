#!/usr/bin/env bash
# The CUDA check, for a machine with an NVIDIA GPU and a CUDA LibTorch 2.x: configures and builds
# with -DYOLO_WITH_CUDA=ON, runs the test suite (whose end-to-end test then trains on GPU 0),
# trains yolov8n at imgsz 320, batch 16 on 256 generated images on GPU 0 with amp=True and
# amp=False, and prints a table (images/s, s/epoch, GPU memory, peak RSS, mAP50-95); then the
# memory side on the GPU: AutoBatch's predicted against measured peak, NVML and the CUDA
# allocator statistics in yolod's report, and a real CUDA out-of-memory error (another process
# takes the card after the estimate) recovered by halving the batch.
#
# Usage: bench/gpu_check.sh [build dir (default build-cuda)]
# Environment: TORCH_PREFIX (LibTorch's CMake prefix; default: the one of python3's torch),
#   YOLO_DEPS_PREFIX (an extra prefix holding the other dependencies, if not in /usr),
#   EPOCHS (default 3), JOBS (default: all CPUs), SKIP_TESTS (set: skip ctest),
#   ONLY_BUILD (set: stop once built; bench/gpu_vs_peer.sh builds this way).
#
# Seen with pip's torch 2.11.0+cu130 (which exports its own copy of std::filesystem from
# libtorch.so): tests that call std::filesystem::remove_all crash in it when the build uses a
# newer libstdc++ than torch's; the product's binaries are not affected.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build-cuda}
EPOCHS=${EPOCHS:-3}
JOBS=${JOBS:-$(nproc)}
TORCH_PREFIX=${TORCH_PREFIX:-$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')}
PREFIX="$TORCH_PREFIX${YOLO_DEPS_PREFIX:+;$YOLO_DEPS_PREFIX}"

echo "== GPU"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || exit 1
python3 -c 'import torch; print("LibTorch", torch.__version__, "CUDA", torch.version.cuda)' || true

# Newer LibTorch headers may need a newer C++ standard than the project's default.
STD=17
echo '#include <torch/torch.h>' | g++ -std=c++17 -fsyntax-only -x c++ \
  -I"$TORCH_PREFIX/../../include" -I"$TORCH_PREFIX/../../include/torch/csrc/api/include" - \
  2>/dev/null || STD=20
echo "C++ standard: $STD"

echo "== configure and build"
CUDA_ROOT=${CUDA_ROOT:-$(dirname "$(dirname "$(command -v nvcc)")")}
start=$(date +%s)
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DYOLO_WITH_CUDA=ON \
  -DYOLO_BUILD_TESTS="$([[ -n ${SKIP_TESTS:-} ]] && echo OFF || echo ON)" \
  -DCMAKE_CXX_STANDARD="$STD" -DCMAKE_PREFIX_PATH="$PREFIX" \
  -DCUDAToolkit_ROOT="$CUDA_ROOT" -DCMAKE_CUDA_COMPILER="$CUDA_ROOT/bin/nvcc" >"$BUILD.configure.log" 2>&1 ||
  { tail -40 "$BUILD.configure.log"; exit 1; }
ninja -C "$BUILD" -j"$JOBS" -k 0 >"$BUILD.build.log" 2>&1 ||
  { grep -E -A6 "error|Error" "$BUILD.build.log" | head -120; exit 1; }
echo "built in $(($(date +%s) - start)) s"
[[ -n ${ONLY_BUILD:-} ]] && exit 0

echo "== tests"
if [[ -z ${SKIP_TESTS:-} ]]; then
(cd "$BUILD" && ctest -j4 --output-on-failure --timeout 600 >"../$(basename "$BUILD").ctest.log" 2>&1)
tail -12 "$BUILD.ctest.log"
fi

echo "== training on GPU 0"
WORKER=$BUILD/server/worker/yolo-worker
T=$(mktemp -d)
"$WORKER" make-dataset shapes out="$T/data" train=256 val=64 imgsz=320 seed=0 >/dev/null || exit 1
declare -a ROWS
for amp in True False; do
  "$WORKER" train data="$T/data/data.yaml" model=yolov8n imgsz=320 batch=16 epochs="$EPOCHS" \
    device=0 amp=$amp workers=8 project="$T/runs" name="amp$amp" plots=False \
    >"$T/amp$amp.log" 2>&1 || { tail -30 "$T/amp$amp.log"; continue; }
  grep -E "GPU_mem|/$EPOCHS |all |training:" "$T/amp$amp.log" | tail -8
  ROWS+=("$amp $T/amp$amp.log $T/runs/amp$amp/results.csv")
done
python3 - "$EPOCHS" "${ROWS[@]}" <<'PY'
import csv, re, sys
epochs = int(sys.argv[1])
print(f"{'amp':<6}{'img/s':>8}{'s/epoch':>9}{'GPU_mem':>9}{'peak RSS MB':>13}{'mAP50-95':>10}")
for row in sys.argv[2:]:
    amp, log_path, csv_path = row.split()
    log = open(log_path).read()
    rows = [(float(s), float(r)) for s, r in re.findall(r"(\d+\.\d+)s (\d+\.\d+) img/s", log)]
    steady = rows[1:] or rows
    sec = sum(s for s, _ in steady) / len(steady)
    gpu = (re.findall(r"\s(\d+(?:\.\d+)?G)\s", log) or ["?"])[-1]
    rss = (re.findall(r"peak RSS (\d+) MB", log) or ["?"])[-1]
    last = list(csv.DictReader(open(csv_path)))[-1]
    m = float(last["metrics/mAP50-95(B)"])
    print(f"{amp:<6}{256 / sec:>8.1f}{sec:>9.2f}{gpu:>9}{rss:>13}{m:>10.3f}")
print(f"(yolov8n, imgsz 320, batch 16, 256 images, {epochs} epochs; speed: epochs after the first)")
PY

echo "== memory on GPU 0: AutoBatch's prediction against the step it measured"
"$WORKER" train data="$T/data/data.yaml" model=yolov8n imgsz=640 batch=-1 epochs=1 device=0 \
  workers=8 project="$T/runs" name=autobatch plots=False >"$T/autobatch.log" 2>&1 ||
  tail -20 "$T/autobatch.log"
grep -E "AutoBatch|peak RSS" "$T/autobatch.log" | cut -c1-400

echo "== yolod on GPU 0: device profile, GPU memory in the report, cleanup of the CUDA cache"
S=$T/state
"$BUILD/server/daemon/yolod" --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 --state-dir "$S" >"$T/yolod.log" 2>&1 &
YOLOD_PID=$!
for _ in $(seq 100); do [[ -s $S/yolod.addr ]] && break; sleep 0.1; done
CTL="$BUILD/client/yoloctl -s $(cat "$S/yolod.addr")"
$CTL config profiles
ID=$($CTL start-experiment data="$T/data/data.yaml" imgsz=320 epochs=20 |
  sed -n 's/^experiment \(exp-[0-9a-f]*\) created.*/\1/p')
for _ in $(seq 300); do
  $CTL -o json describe experiment "$ID" | grep -q '"progress"' && break  # training
  sleep 0.2
done
$CTL describe experiment "$ID" | grep -E "State|Device|batch=|workers=|amp="
$CTL memory report                       # NVML's GPUs, and the worker's CUDA allocator line
$CTL -o json memory report | python3 -c 'import json,sys; r=json.load(sys.stdin); print("allocator:", [w.get("cuda") for w in r.get("workers", [])]); print("gpus:", [(g["index"], g.get("usedBytes", g.get("used_bytes"))) for g in r.get("gpus", [])])'
$CTL memory cleanup --timeout-seconds 30
$CTL stop "$ID"
for _ in $(seq 300); do
  $CTL describe experiment "$ID" | grep -q "State: *STOPPED" && break
  sleep 0.2
done
$CTL describe experiment "$ID" | grep -E "State|Reason|Epochs"
echo "== a real CUDA out-of-memory: another process takes the GPU after the estimate"
# The run is estimated at batch 64; once the estimate is logged, a hog leaves about what batch
# 32 needs, so the first step at 64 runs out of CUDA memory and the worker halves the batch.
ID=$($CTL start-experiment data="$T/data/data.yaml" imgsz=640 batch=64 epochs=2 |
  sed -n 's/^experiment \(exp-[0-9a-f]*\) created.*/\1/p')
for _ in $(seq 600); do
  $CTL -o json describe experiment "$ID" | grep -q '"memory_estimate"' && break
  sleep 0.1
done
NEED32=$($CTL -o json describe experiment "$ID" | python3 -c 'import json,sys; m=json.load(sys.stdin)["memory_estimate"]; print(int(float(m.get("intercept_bytes",0)) + 32*float(m["bytes_per_image"])))')
python3 -c 'import sys,time,torch; free,_=torch.cuda.mem_get_info(0); keep=int(sys.argv[1])*13//10; x=torch.empty(max(free-keep,0),dtype=torch.uint8,device="cuda:0"); print("hog holds", x.numel()>>20, "MiB, leaves", keep>>20, "MiB", flush=True); time.sleep(120)' "$NEED32" &
HOG=$!
for _ in $(seq 1200); do
  $CTL describe experiment "$ID" | grep -qE "State: *(SUCCEEDED|FAILED)" && break
  sleep 0.2
done
kill "$HOG" 2>/dev/null
$CTL describe experiment "$ID" | grep -E "State|Reason|batch|oom_retry|oom_resume" | cut -c1-300
grep -E "out of memory|OutOfMemory" "$S/runs/$ID/train.log" | head -3 | cut -c1-300

kill -TERM "$YOLOD_PID"
wait "$YOLOD_PID"
echo "yolod exited with $?"
rm -rf "$T"
