#!/usr/bin/env bash
# The one command that installs what is missing, builds, and runs every test:
#   scripts/test.sh
# Build folder: $HFVFS_BUILD_DIR (default ./build). Extra ctest arguments pass through.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${HFVFS_BUILD_DIR:-build}

scripts/install-deps.sh
scripts/check-format.sh

cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$(nproc)"
cd "$build"
# Figures are measured by bench/, not asserted by timed tests: the `bench` label is left out.
ctest --output-on-failure -j2 --timeout 900 -LE bench "$@"
