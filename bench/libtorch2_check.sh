#!/usr/bin/env bash
# Data-parallel training against a LibTorch 2.x, on this CPU machine, without touching the system:
# 1. fetches Debian's libtorch 2.x (SUITE=trixie: 2.6) with everything it loads at run time, its
#    C library included, into DIR/root through a private apt configuration;
# 2. builds yolo-worker against it (DIR/build; LibTorch's own layout, since that LibTorch links
#    another oneDNN) and points the binary at DIR/root's loader and libraries (patchelf);
# 3. runs tests/integration/ddp_e2e_test.sh with that worker and this checkout's yolod and
#    yoloctl (build/): 2 ranks with Gloo give one process's losses; a killed rank fails the
#    experiment, which resumes;
# 4. with CUDA_HEADERS=1, compiles distributed.cc's NCCL path (syntax only) against that
#    LibTorch's headers and Debian's CUDA and NCCL headers (about 1 GB to fetch).
# Usage: bench/libtorch2_check.sh [DIR (default /tmp/yolod-libtorch2)]
# Environment: SUITE=trixie (or sid, the newest), JOBS=2, CUDA_HEADERS (set to 1: step 4).
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=$PWD
DIR=$(realpath -m "${1:-/tmp/yolod-libtorch2}")
SUITE=${SUITE:-trixie} JOBS=${JOBS:-2}
mkdir -p "$DIR"/{apt/lists/partial,apt/cache/archives/partial,debs,root}
[[ -x build/server/daemon/yolod && -x build/client/yoloctl ]] || scripts/build.sh
command -v patchelf >/dev/null || { echo "needs patchelf (scripts/setup.sh installs it)" >&2; exit 1; }

echo "== Debian $SUITE's LibTorch into $DIR/root"
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
echo "deb [signed-by=$KEYRING] http://deb.debian.org/debian $SUITE main contrib non-free" \
  >"$DIR/apt/sources.list"
: >"$DIR/apt/status"
APT=(-o Dir::Etc::SourceList="$DIR/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
  -o Dir::State::Lists="$DIR/apt/lists" -o Dir::Cache="$DIR/apt/cache"
  -o Dir::State::status="$DIR/apt/status" -o Debug::NoLocking=1 -o APT::Install-Recommends=0 -o APT::Sandbox::User=root)
apt-get "${APT[@]}" update -qq
RUNTIME=$(apt-cache "${APT[@]}" depends libtorch-dev | sed -n 's/^ *Depends: \(libtorch[0-9.]*\)$/\1/p')
[[ -n $RUNTIME ]] || { echo "no libtorch runtime package in $SUITE" >&2; exit 1; }
# With an empty status file apt plans the whole closure, C library and all.
apt-get "${APT[@]}" --print-uris -qq install "$RUNTIME" libopenblas0-pthread >"$DIR/uris.txt"
(cd "$DIR/debs" && sed "s/'//g" "$DIR/uris.txt" | awk '{print $1}' |
  xargs -n 8 -P 4 curl -sSfL --remote-name-all &&
  apt-get "${APT[@]}" download -qq libtorch-dev libgloo-dev)
for f in "$DIR"/debs/*.deb; do dpkg -x "$f" "$DIR/root"; done
R=$DIR/root/usr
VERSION=$(awk '/define TORCH_VERSION_(MAJOR|MINOR|PATCH) / {printf "%s%s", s, $3; s="."}' \
  "$R/include/torch/csrc/api/include/torch/version.h")
echo "LibTorch $VERSION, $(ls "$DIR"/debs | wc -l) packages"
STD=17
echo '#include <torch/torch.h>' | g++ -std=c++17 -fsyntax-only -x c++ -I"$R/include" \
  -I"$R/include/torch/csrc/api/include" - 2>/dev/null || STD=20

echo "== yolo-worker against LibTorch $VERSION (C++$STD)"
LIBS=$R/lib/x86_64-linux-gnu
cmake -S "$SRC" -B "$DIR/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DYOLO_BUILD_TESTS=OFF \
  -DCMAKE_CXX_STANDARD=$STD -DCMAKE_PREFIX_PATH="$R" -DDNNL_LIBRARY=OFF \
  -DCMAKE_CXX_COMPILER_LAUNCHER=ccache \
  "-DCMAKE_EXE_LINKER_FLAGS=-Wl,--allow-shlib-undefined -Wl,-rpath-link=$LIBS" >"$DIR/configure.log" 2>&1
ninja -C "$DIR/build" -j"$JOBS" yolo-worker >"$DIR/build.log" || { tail -40 "$DIR/build.log"; exit 1; }
WORKER=$DIR/yolo-worker
cp "$DIR/build/server/worker/yolo-worker" "$WORKER"
patchelf --set-interpreter "$R/lib64/ld-linux-x86-64.so.2" --force-rpath \
  --set-rpath "$LIBS:/usr/lib/x86_64-linux-gnu" "$WORKER"

echo "== tests/integration/ddp_e2e_test.sh with that worker"
bash tests/integration/ddp_e2e_test.sh build/server/daemon/yolod build/client/yoloctl "$WORKER"

if [[ ${CUDA_HEADERS:-} == 1 ]]; then
  echo "== distributed.cc's NCCL path against LibTorch $VERSION's headers"
  mkdir -p "$DIR/cuda/c10/cuda/impl"
  (cd "$DIR/debs" && apt-get "${APT[@]}" download -qq nvidia-cuda-dev libnccl-dev libcub-dev \
    libcu++-dev libthrust-dev)
  for p in nvidia-cuda-dev libnccl-dev libcub-dev libcu++-dev libthrust-dev; do
    dpkg -x "$DIR"/debs/${p}_*.deb "$DIR/cuda"
  done
  # A CPU LibTorch ships c10/cuda without the header its CUDA build generates.
  printf '#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n' \
    >"$DIR/cuda/c10/cuda/impl/cuda_cmake_macros.h"
  g++ -std=c++$STD -fsyntax-only -DUSE_C10D_GLOO -DUSE_C10D_NCCL -DUSE_DISTRIBUTED -DUSE_CUDA \
    -I"$R/include" -I"$R/include/torch/csrc/api/include" -I"$DIR/cuda" -I"$DIR/cuda/usr/include" \
    -I"$SRC" -DYOLO_EXPECT_NCCL "$SRC/server/worker/train/distributed.cc"
  echo "NCCL path: compiles"
fi
echo "PASS: LibTorch $VERSION"
