#!/usr/bin/env bash
# Configures and builds yolod (Release with debug info, Ninja, ccache) into build/.
# Usage: scripts/build.sh [extra cmake arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
JOBS=${JOBS:-$(nproc)}
export CCACHE_DIR=${CCACHE_DIR:-$HOME/.cache/ccache}
# Paths relative to the checkout, so that another clone of the repository hits the cache.
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$PWD}
cmake -S . -B "$BUILD_DIR" -G Ninja -DYOLO_BUILD_TESTS=ON "$@" >/dev/null
ninja -C "$BUILD_DIR" -j "$JOBS"
