#!/usr/bin/env bash
# Sets everything up (scripts/setup.sh), builds with warnings as errors, and
# runs every test through CTest. Exit status is the tests'.
#
# With no arguments (a whole run, what CI runs), also:
#  - the unit and integration suite again under AddressSanitizer+UBSan and
#    under ThreadSanitizer (scripts/sanitize.sh; SKIP_SANITIZERS=1 skips);
#  - every libFuzzer target for 15 s from its seed corpus (scripts/fuzz.sh;
#    SKIP_FUZZ=1 skips).
# The tests wait on sockets, timers and child processes most of the time (the
# main suite uses about a third of one core), while the builds need both
# cores: so each of those builds runs in the background at the lowest CPU
# priority (nice 19) during the tests before it, and the tests keep the CPU
# whenever they want it. A background build's output goes to
# $BUILD_DIR/background-<name>.log and is shown if it fails.
# With arguments, only CTest runs in $BUILD_DIR, with them: `scripts/test.sh -R Probe`.
set -euo pipefail
cd "$(dirname "$0")/.."
export BUILD_DIR=${BUILD_DIR:-build}
export CMAKE_ARGS="${CMAKE_ARGS:-} -DCONNWATCH_WERROR=ON"
scripts/setup.sh
# Many loopback connections in the tests: raise the soft fd limit to the hard one.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

if [ $# -gt 0 ]; then
  (cd "$BUILD_DIR" && ctest --output-on-failure -j2 --timeout 300 "$@")
  exit
fi

steps=()
if [ "${SKIP_SANITIZERS:-0}" != 1 ]; then steps+=(asan tsan); fi
if [ "${SKIP_FUZZ:-0}" != 1 ]; then steps+=(fuzz); fi

bg_pid=""
bg_log=""
start_build() {
  bg_log=$BUILD_DIR/background-$1.log
  echo "test: building $1 in the background at nice 19 (log: $bg_log)"
  case $1 in
    asan | tsan) nice -n 19 scripts/sanitize.sh --build-only "$1" >"$bg_log" 2>&1 & ;;
    fuzz) nice -n 19 scripts/fuzz.sh --build-only >"$bg_log" 2>&1 & ;;
  esac
  bg_pid=$!
}
finish_build() {
  local start
  start=$(date +%s)
  if ! wait "$bg_pid"; then
    echo "test: the $1 build FAILED; the end of $bg_log:"
    tail -60 "$bg_log"
    return 1
  fi
  echo "test: $1 built (waited $(( $(date +%s) - start ))s for it after the tests before it)"
}
run_step() {
  case $1 in
    asan | tsan) scripts/sanitize.sh --test-only "$1" ;;
    fuzz) scripts/fuzz.sh 15 ;;
  esac
}

status=0
if [ ${#steps[@]} -gt 0 ]; then start_build "${steps[0]}"; fi
start=$(date +%s)
(cd "$BUILD_DIR" && ctest --output-on-failure -j2 --timeout 300) || status=1
echo "test: the main suite took $(( $(date +%s) - start ))s"
for i in "${!steps[@]}"; do
  step=${steps[$i]}
  if ! finish_build "$step"; then
    status=1
    break
  fi
  if [ $((i + 1)) -lt ${#steps[@]} ]; then start_build "${steps[$((i + 1))]}"; fi
  run_step "$step" || status=1
done
if [ $status -eq 0 ]; then echo "test: all passed"; else echo "test: FAILED"; fi
exit $status
