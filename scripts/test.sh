#!/usr/bin/env bash
# Sets everything up (scripts/setup.sh), builds with warnings as errors, and
# runs every test through CTest. Exit status is the tests'.
set -euo pipefail
cd "$(dirname "$0")/.."
export BUILD_DIR=${BUILD_DIR:-build}
export CMAKE_ARGS="${CMAKE_ARGS:-} -DCONNWATCH_WERROR=ON"
scripts/setup.sh
# Many loopback connections in the tests: raise the soft fd limit to the hard one.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
cd "$BUILD_DIR"
ctest --output-on-failure -j2 --timeout 300 "$@"
