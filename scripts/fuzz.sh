#!/usr/bin/env bash
# Builds the libFuzzer targets of fuzz/ with clang, AddressSanitizer and UndefinedBehavior-
# Sanitizer in build-fuzz/, and runs each for SECONDS (default 10) from its seed corpus in
# fuzz/corpus/<target>/. New inputs are kept in build-fuzz/corpus/ (the committed corpora stay
# as they are); an input that crashes is saved as build-fuzz/crashes/<target>-*, and the script
# exits 1.
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]     e.g. scripts/fuzz.sh 600 data_yaml_fuzzer
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-10}
shift || true
TARGETS=("$@")
if ((${#TARGETS[@]} == 0)); then
  TARGETS=()
  for d in fuzz/corpus/*/; do TARGETS+=("$(basename "$d")"); done
fi
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fsanitize=fuzzer-no-link"
if [[ ! -f build-fuzz/build.ninja ]]; then
  cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DYOLO_FUZZ=ON -DYOLO_BUILD_TESTS=OFF \
    -DCMAKE_CXX_FLAGS="$SAN" -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" >/dev/null
fi
ninja -C build-fuzz -j"${JOBS:-2}" "${TARGETS[@]}"
mkdir -p build-fuzz/crashes
failed=0
for t in "${TARGETS[@]}"; do
  mkdir -p "build-fuzz/corpus/$t"
  echo "== $t (${SECONDS_EACH} s)"
  if ! ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1 "build-fuzz/fuzz/$t" \
    -max_total_time="$SECONDS_EACH" -max_len=4096 -timeout=10 -rss_limit_mb=1024 \
    -artifact_prefix="build-fuzz/crashes/$t-" -print_final_stats=1 \
    "build-fuzz/corpus/$t" "fuzz/corpus/$t" >"build-fuzz/$t.log" 2>&1; then
    tail -40 "build-fuzz/$t.log"
    failed=1
  fi
  grep -E "^stat::number_of_executed_units|^stat::new_units_added" "build-fuzz/$t.log" |
    tr '\n' ' ' && echo
done
exit $failed
