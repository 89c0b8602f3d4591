#!/usr/bin/env bash
# yolod against the peer on a GPU, for a machine with an NVIDIA GPU and a CUDA LibTorch 2.x:
# 1. builds with bench/gpu_check.sh (tests skipped), unless the build folder has the binaries;
# 2. data-parallel training against that LibTorch: tests/integration/ddp_e2e_test.sh on the CPU
#    (2 ranks with Gloo give one process's losses; a killed rank fails the experiment, which
#    resumes), and with two GPUs or more a 2-rank run with NCCL on GPUs 0 and 1;
# 3. bench/vs_peer.sh on GPU 0 for each model at 640 px, batch 64, AMP on: training images/s,
#    peak RSS, GPU memory peak and GPU utilisation for both, one table per model.
# Usage: bench/gpu_vs_peer.sh [build dir (default build-cuda)]
# Environment (defaults): PEER_SCRIPTS (the peer's folder; ../shared/peer does not travel to a
#   GPU machine, so copy it into an ignored folder of the checkout and name that), PY=python3,
#   MODELS="yolov8n yolov8s" IMGSZ=640 BATCH=64 TRAIN=1024 EPOCHS=3 WORKERS=8 THREADS=8,
#   SKIP_DDP (set: skip step 2); TORCH_PREFIX and YOLO_DEPS_PREFIX as for bench/gpu_check.sh.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build-cuda}
MODELS=${MODELS:-yolov8n yolov8s}
export PY=${PY:-python3} SKIP_APT=1

echo "== build ($BUILD)"
if [[ ! -x $BUILD/server/worker/yolo-worker || ! -x $BUILD/bench/loader_throughput ]]; then
  SKIP_TESTS=1 ONLY_BUILD=1 bench/gpu_check.sh "$BUILD" || exit 1
fi
nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv,noheader
"$PY" -c 'import torch; print("PyTorch", torch.__version__, "CUDA", torch.version.cuda)'

if [[ -z ${SKIP_DDP:-} ]]; then
  echo "== data-parallel: 2 ranks, Gloo on the CPU, this LibTorch"
  start=$(date +%s)
  bash tests/integration/ddp_e2e_test.sh "$BUILD/server/daemon/yolod" "$BUILD/client/yoloctl" \
    "$BUILD/server/worker/yolo-worker" 2>&1 | tail -15
  echo "ddp_e2e_test.sh: exit ${PIPESTATUS[0]} in $(($(date +%s) - start)) s"
  if (($(nvidia-smi -L | wc -l) >= 2)); then
    echo "== data-parallel: 2 ranks, NCCL on GPUs 0 and 1"
    T=$(mktemp -d)
    W=$BUILD/server/worker/yolo-worker
    "$W" make-dataset shapes out="$T/data" train=256 val=32 imgsz=320 seed=0 >/dev/null
    "$W" train data="$T/data/data.yaml" model=yolov8n imgsz=320 batch=32 epochs=2 device=0,1 \
      workers=4 plots=False project="$T/runs" name=nccl >"$T/nccl.log" 2>&1
    echo "2 GPUs: exit $?"
    grep -E "DDP:|img/s|all " "$T/nccl.log" | tail -6
    rm -rf "$T"
  else
    echo "(one GPU: NCCL takes one GPU per rank, so the NCCL run needs two)"
  fi
fi

for model in $MODELS; do
  echo "== $model, ${IMGSZ:-640} px, batch ${BATCH:-64}, AMP, GPU 0"
  BUILD=$BUILD DEVICE=0 AMP=1 MODEL=$model IMGSZ=${IMGSZ:-640} BATCH=${BATCH:-64} \
    TRAIN=${TRAIN:-1024} EPOCHS=${EPOCHS:-3} WORKERS=${WORKERS:-8} THREADS=${THREADS:-8} LOADER=0 \
    bench/vs_peer.sh
done
