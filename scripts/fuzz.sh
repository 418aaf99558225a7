#!/usr/bin/env bash
# Builds the libFuzzer targets in fuzz/ with clang (+ AddressSanitizer and
# UndefinedBehaviorSanitizer) into build-fuzz/ and runs each for a while,
# starting from its seed corpus in tests/fuzz-corpus/<name>/.
#
#   scripts/fuzz.sh                 every fuzzer, 30 s each (CI)
#   scripts/fuzz.sh 300             every fuzzer, 5 minutes each
#   scripts/fuzz.sh 300 config http only those (names without _fuzzer)
#   scripts/fuzz.sh --build-only    build them, run none
#
# Two fuzzers run at a time (JOBS, default 2). New inputs go to a scratch
# corpus in build-fuzz/corpus/<name>/ (the seeds stay as they are); a crash,
# leak, timeout or out-of-memory leaves its input in build-fuzz/artifacts/ and
# fails the run. Reproduce one with: build-fuzz/<name>_fuzzer <file>.
# Needs clang and libFuzzer (Debian: clang, libclang-rt-14-dev).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD_ONLY=0
if [ "${1:-}" = --build-only ]; then
  BUILD_ONLY=1
  shift
fi
SECONDS_EACH=${1:-30}
shift || true
JOBS=${JOBS:-2}
BUILD=build-fuzz

CLANGXX=${CLANGXX:-clang++}
if ! command -v "$CLANGXX" >/dev/null; then
  echo "fuzz: $CLANGXX not found (apt-get install clang libclang-rt-14-dev)" >&2
  exit 1
fi

# CMakeLists.txt includes fuzz/fuzz.cmake at its end; until it does, inject it.
extra=(-UCMAKE_PROJECT_INCLUDE)  # drop one a previous run may have cached
if ! grep -q "fuzz/fuzz.cmake" CMakeLists.txt; then
  extra=(-DCMAKE_PROJECT_INCLUDE="$ROOT/fuzz/fuzz.cmake")
fi
echo "fuzz: building $BUILD/ with $CLANGXX"
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-g1 -O1" \
  -DCMAKE_C_COMPILER="${CLANGXX%++}" -DCMAKE_CXX_COMPILER="$CLANGXX" \
  -DCONNWATCH_FUZZ=ON -DCONNWATCH_SANITIZE=address,undefined -DCONNWATCH_TESTS=OFF \
  "${extra[@]}" >/dev/null
cmake --build "$BUILD" -j"$JOBS" --target fuzzers
if [ "$BUILD_ONLY" = 1 ]; then
  echo "fuzz: built into $BUILD/"
  exit 0
fi

if [ $# -gt 0 ]; then
  names=("$@")
else
  names=()
  for f in fuzz/*_fuzzer.cc; do
    n=$(basename "$f" .cc)
    names+=("${n%_fuzzer}")
  done
fi

export ASAN_OPTIONS="halt_on_error=1:abort_on_error=1:detect_leaks=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
mkdir -p "$BUILD/artifacts" "$BUILD/logs"

run_one() {
  local name=$1
  local corpus=$BUILD/corpus/$name
  mkdir -p "$corpus"
  local start
  start=$(date +%s)
  if "$BUILD/${name}_fuzzer" -max_total_time="$SECONDS_EACH" -timeout=25 -rss_limit_mb=2048 \
       -print_final_stats=1 -artifact_prefix="$BUILD/artifacts/$name-" \
       "$corpus" "tests/fuzz-corpus/$name" >"$BUILD/logs/$name.log" 2>&1; then
    local execs
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$BUILD/logs/$name.log")
    echo "fuzz: $name: OK, ${execs:-?} executions in $(( $(date +%s) - start ))s"
  else
    echo "fuzz: $name: FAILED after $(( $(date +%s) - start ))s; log $BUILD/logs/$name.log:"
    grep -E "ERROR|SUMMARY|runtime error|Test unit written|#[0-9]+ 0x" "$BUILD/logs/$name.log" | head -40
    return 1
  fi
}

status=0
pids=()
for name in "${names[@]}"; do
  if [ ! -x "$BUILD/${name}_fuzzer" ]; then
    echo "fuzz: no fuzzer named $name" >&2
    status=1
    continue
  fi
  run_one "$name" &
  pids+=($!)
  if [ ${#pids[@]} -ge "$JOBS" ]; then
    wait "${pids[0]}" || status=1
    pids=("${pids[@]:1}")
  fi
done
for p in "${pids[@]}"; do wait "$p" || status=1; done
[ $status -eq 0 ] && echo "fuzz: all passed" || echo "fuzz: FAILED"
exit $status
