#!/usr/bin/env bash
# Installs what is missing, builds, checks formatting and runs every test with ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh

echo "== clang-format"
mapfile -t sources < <(git ls-files '*.cc' '*.h' 2>/dev/null || find . -name '*.cc' -o -name '*.h')
clang-format --dry-run --Werror "${sources[@]}"

echo "== ctest"
cd "${BUILD_DIR:-build}"
ctest -j "$(nproc)" --output-on-failure --timeout 900
