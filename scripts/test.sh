#!/usr/bin/env bash
# Installs what is missing, builds, checks formatting, runs the unit tests under ASan and UBSan,
# the fuzz targets for a bounded time (FUZZ_SECONDS each, default 8) and every test with ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh

echo "== clang-format"
mapfile -t sources < <(git ls-files '*.cc' '*.h' 2>/dev/null || find . -name '*.cc' -o -name '*.h')
clang-format --dry-run --Werror "${sources[@]}"

echo "== the process boundary: LibTorch only under server/worker/"
# yolod, yoloctl and common/ never include LibTorch, directly or through a worker header.
if git grep -nE '^#include [<"](torch|ATen|c10|caffe2)/|^#include "server/worker/' -- \
  common client server ':!server/worker' 2>/dev/null; then
  echo "these files cross the boundary: LibTorch belongs to yolo-worker alone" >&2
  exit 1
fi

echo "== unit tests under AddressSanitizer and UndefinedBehaviorSanitizer (build-asan/)"
scripts/sanitize.sh

echo "== fuzzers (${FUZZ_SECONDS:-8} s each; scripts/fuzz.sh SECONDS for longer runs)"
scripts/fuzz.sh "${FUZZ_SECONDS:-8}"

echo "== ctest"
cd "${BUILD_DIR:-build}"
ctest -j "$(nproc)" --output-on-failure --timeout 900
