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
(cd "$BUILD_DIR" && ctest --output-on-failure -j2 --timeout 300 "$@")
# With no arguments (a whole run), also:
#  - the unit and integration suite again under AddressSanitizer+UBSan and
#    under ThreadSanitizer (scripts/sanitize.sh; SKIP_SANITIZERS=1 skips);
#  - every libFuzzer target for 15 s from its seed corpus (scripts/fuzz.sh;
#    SKIP_FUZZ=1 skips).
if [ $# -eq 0 ]; then
  if [ "${SKIP_SANITIZERS:-0}" != 1 ]; then scripts/sanitize.sh; fi
  if [ "${SKIP_FUZZ:-0}" != 1 ]; then scripts/fuzz.sh 15; fi
fi
