#!/usr/bin/env bash
# Builds the unit and integration tests (connwatch_tests, with the connwatchd
# and connwatch-peer binaries they start) under sanitizers and runs them:
#   build-asan: AddressSanitizer + UndefinedBehaviorSanitizer (+ LeakSanitizer)
#   build-tsan: ThreadSanitizer (HTTP threads and the event loop share snapshots)
# Each in its own build dir, Debug at -O1 -g1 (line tables are enough for
# symbolized stacks and build faster than -g). Tests labelled "system" or
# "package" are left out (they need namespaces, systemd or dpkg, not a
# sanitizer), and so are the benchmark smokes labelled "bench" (they measure
# the normal build: memory and time mean nothing under a sanitizer). The
# first report fails the run; suppressions live in tests/sanitizers/, each
# with its reason.
#
#   scripts/sanitize.sh            both variants
#   scripts/sanitize.sh asan       one of them (asan | tsan)
#   scripts/sanitize.sh tsan -R Monitor     extra args go to ctest
#   scripts/sanitize.sh --build-only asan   only build (scripts/test.sh builds
#   scripts/sanitize.sh --test-only asan    one variant while tests run, then
#                                           runs it without building again)
#
# Environment: CXX (compiler, default g++), JOBS (build and ctest jobs,
# default 2). Run scripts/setup.sh first on a fresh machine (it installs the
# build dependencies; this script installs nothing).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
JOBS=${JOBS:-2}
VARIANTS=(asan tsan)
PHASE=all
case ${1:-} in
  --build-only) PHASE=build; shift ;;
  --test-only) PHASE="test"; shift ;;
esac
if [ $# -gt 0 ] && { [ "$1" = asan ] || [ "$1" = tsan ]; }; then
  VARIANTS=("$1")
  shift
fi

# Many loopback connections in the tests: raise the soft fd limit to the hard one.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

SUPP=$ROOT/tests/sanitizers
# halt_on_error everywhere: a report fails the test that caused it. The
# options reach connwatchd and connwatch-peer too, since the tests start them.
export ASAN_OPTIONS="halt_on_error=1:abort_on_error=0:detect_leaks=1:strict_string_checks=1:check_initialization_order=1:detect_stack_use_after_return=1:suppressions=$SUPP/asan.supp"
export LSAN_OPTIONS="suppressions=$SUPP/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:suppressions=$SUPP/ubsan.supp"
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:history_size=4:suppressions=$SUPP/tsan.supp"

status=0
for v in "${VARIANTS[@]}"; do
  case $v in
    asan) sanitize=address,undefined ;;
    tsan) sanitize=thread ;;
  esac
  dir=build-$v
  if [ "$PHASE" != test ]; then
    echo "sanitize: $v: configuring and building $dir/ ($sanitize)"
    start=$(date +%s)
    cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-g1 -O1" \
      -DCMAKE_CXX_COMPILER="${CXX:-g++}" -DCONNWATCH_SANITIZE="$sanitize" >/dev/null
    cmake --build "$dir" -j"$JOBS" --target connwatch_tests
    echo "sanitize: $v: built in $(( $(date +%s) - start ))s"
  fi
  [ "$PHASE" = build ] && continue
  echo "sanitize: $v: running unit and integration tests"
  start=$(date +%s)
  if (cd "$dir" && ctest --output-on-failure -j"$JOBS" --timeout 600 -LE 'system|package|bench' "$@"); then
    echo "sanitize: $v: passed in $(( $(date +%s) - start ))s"
  else
    echo "sanitize: $v: FAILED (see the sanitizer report above)"
    status=1
  fi
done
exit $status
