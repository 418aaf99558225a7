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
# The unit and integration suite again under AddressSanitizer+UBSan and under
# ThreadSanitizer (scripts/sanitize.sh). Two tests bound wall time (an alias
# bomb, a SIGHUP sent 50 ms into start-up), which says nothing under a
# sanitizer's slowdown. SKIP_SANITIZERS=1 skips.
if [ "${SKIP_SANITIZERS:-0}" != 1 ] && [ $# -eq 0 ]; then
  scripts/sanitize.sh -E 'AliasAmplificationIsBounded|SighupDuringStartupDoesNotKill'
fi
