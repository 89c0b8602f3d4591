#!/usr/bin/env bash
# Builds the unit tests (arguments, data.yaml, paths, labels, augmentation, metrics, the trainer's
# model, loss, loader, allocator and kernels, spec checks, the experiment store, probes, yolod's
# and yoloctl's parsers) with AddressSanitizer and UndefinedBehaviorSanitizer in build-asan/ and
# runs them; any report fails the run. (The end-to-end tests run in the normal build.)
# Usage: scripts/sanitize.sh [ctest -R regex]
set -euo pipefail
cd "$(dirname "$0")/.."
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
if [[ ! -f build-asan/build.ninja ]]; then
  cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS="$SAN" \
    -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" >/dev/null
fi
TESTS=(common_tests data_tests train_tests experiments_tests memory_tests daemon_tests client_tests
  metrics_tests)
ninja -C build-asan -j"${JOBS:-2}" "${TESTS[@]}"
# Leaks are not checked: LibTorch, gRPC and protobuf keep process-wide singletons by design.
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1
for t in "${TESTS[@]}"; do
  echo "== $t"
  "build-asan/tests/$t" --gtest_brief=1 ${1:+--gtest_filter="$1"}
done
