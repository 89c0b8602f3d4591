#!/usr/bin/env bash
# Installs every Debian package that yolod's build, tests and demo need. Idempotent: when
# everything is already installed it changes nothing and does not touch the network.
set -euo pipefail

PACKAGES=(
  # build tools
  build-essential cmake ninja-build ccache pkg-config clang-format git
  # training: LibTorch (CPU), a fast BLAS for it, the headers of the oneDNN it uses (we call it
  # directly for convolutions), OpenCV for images, YAML, CLI parsing, logs
  libtorch-dev libopenblas0-pthread libdnnl-dev libopencv-dev libyaml-cpp-dev libcli11-dev
  libspdlog-dev libfmt-dev
  # JPEG decoding straight into BGR at a reduced scale (libjpeg-turbo's API)
  libjpeg62-turbo-dev
  # data-parallel training: the Gloo headers under LibTorch's c10d (libtorch links libgloo0)
  libgloo-dev
  # JSON that is not an API message (protobuf's JSON mapping serves those)
  nlohmann-json3-dev
  # control plane: gRPC, protobuf, abseil, Prometheus exposition
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libabsl-dev
  prometheus-cpp-dev libssl-dev
  # the status page's charts (embedded at build time); tests: its browser, Alertmanager, Compose
  libjs-chart.js chromium prometheus-alertmanager docker-compose
  # memory plots in yoloctl: PLplot and its cairo PNG device
  libplplot-dev plplot-driver-cairo
  # tests and benchmarks; clang and its runtime for the fuzz targets (libFuzzer, sanitizers)
  googletest libgtest-dev libgmock-dev libbenchmark-dev clang libclang-rt-14-dev
  prometheus python3-grpcio python3-protobuf stress-ng openssl
  # scripts; patchelf for bench/libtorch2_check.sh (the worker on a private LibTorch 2.x)
  python3 time patchelf
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  exit 0
fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  SUDO="sudo"
fi
echo "setup: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
