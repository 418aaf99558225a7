#!/usr/bin/env bash
# Checks systemd/connwatch@.service, the templated unit of a fleet on one host
# (docs/FLEET.md), without installing it:
#  - apart from its header, Description=, EnvironmentFile=, ExecStart= and
#    StateDirectory= (each instance keeps its state apart), it
#    is connwatch.service line for line (the sandbox, notify, watchdog and
#    reload check cannot drift apart);
#  - `systemd-analyze verify` accepts an instance of it (connwatch@1-4);
#  - its ExecStart=, expanded as systemd expands it for an instance, runs
#    connwatchd with --shard=I/N and port 9800+I (and the fleet.env overrides),
#    the real binary accepts that command line, and a bad instance name is
#    refused with the --shard error;
#  - `systemd-analyze security --offline=yes` rates it 1.5 or lower.
# Usage: template_unit_test.sh SOURCE_DIR CONNWATCHD_BINARY
# Exit 0 pass, 1 fail, 77 skip (no systemd-analyze).
set -uo pipefail

src=$1
binary=$2
unit="$src/systemd/connwatch@.service"
plain="$src/systemd/connwatch.service"
max_exposure=1.5

if ! command -v systemd-analyze >/dev/null; then
  echo "SKIP: systemd-analyze is not installed (package systemd)"
  exit 77
fi

tmp=$(mktemp -d /tmp/connwatch-template-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# 1. The same unit but for the fleet lines.
settings() {  # the unit's settings, without comments and the lines a shard changes
  grep -vE '^(#|$|Description=|EnvironmentFile=|ExecStart=|StateDirectory=)' "$1"
}
if out=$(diff <(settings "$plain") <(settings "$unit")); then
  echo "ok: connwatch@.service has the settings of connwatch.service"
else
  fail "connwatch@.service and connwatch.service differ beyond the fleet lines:"
  echo "$out"
fi

# 1b. Each instance its own state directory, and the daemon told to use it.
if grep -qxF 'StateDirectory=connwatch/%i' "$unit" && grep -qxF 'StateDirectory=connwatch' "$plain"; then
  echo "ok: StateDirectory= connwatch (plain) and connwatch/%i (each instance)"
else
  fail "StateDirectory= is not connwatch/%i in the template and connwatch in the plain unit"
fi

# 2. verify an instance, on a copy that runs the build's binary.
sed -e "s#/usr/bin/connwatchd#$binary#g" "$unit" >"$tmp/connwatch@.service"
out=$(systemd-analyze verify --man=no --recursive-errors=no "$tmp/connwatch@1-4.service" 2>&1)
rc=$?
if [ $rc -ne 0 ] || [ -n "$out" ]; then
  fail "systemd-analyze verify connwatch@1-4.service (exit $rc):"
  echo "$out"
else
  echo "ok: systemd-analyze verify connwatch@1-4.service"
fi

# 3. ExecStart= for instance `$1` (the escaped name, I-N), with systemd's
#    specifiers and escapes expanded (%I is the name unescaped: - becomes /),
#    run with `$2` as connwatchd; its output.
start_line=$(grep -E '^ExecStart=' "$unit")
run_instance() {
  local name=$1 program=$2 cmd=${start_line#ExecStart=}
  cmd=${cmd//'%I'/${name//-//}}
  cmd=${cmd//'%i'/$name}
  cmd=${cmd//'%%'/'%'}
  cmd=${cmd//'$$'/'$'}
  cmd=${cmd//\/usr\/bin\/connwatchd/$program}
  eval "local -a words=($cmd)"
  "${words[@]}" 2>&1
}
printf '#!/bin/sh\nfor a in "$@"; do printf "%%s\\n" "$a"; done\n' >"$tmp/print-args"
chmod +x "$tmp/print-args"
expect_args() {  # name, expected arguments (one a line), then env assignments
  local name=$1 expected=$2
  shift 2
  local got
  got=$(env "$@" bash -c "$(declare -f run_instance); start_line=$(printf '%q' "$start_line"); run_instance $name $tmp/print-args")
  if [ "$got" = "$expected" ]; then
    echo "ok: connwatch@$name runs connwatchd $(tr '\n' ' ' <<<"$got")${*:+($*)}"
  else
    fail "connwatch@$name ${*:+with $* }runs connwatchd with"
    echo "$got"
    echo "expected:"
    echo "$expected"
  fi
}
expect_args 1-4 $'--config.file=/etc/connwatch/connwatch.yaml\n--shard=1/4\n--web.listen-address=:9801\n--storage.path=/var/lib/connwatch/1-4'
expect_args 11-12 $'--config.file=/etc/connwatch/connwatch.yaml\n--shard=11/12\n--web.listen-address=:9811\n--storage.path=/var/lib/connwatch/11-12'
expect_args 0-2 $'--config.file=/srv/c.yaml\n--shard=0/2\n--web.listen-address=:10000\n--storage.path=/var/lib/connwatch/0-2\n--log.level=debug\n--web.enable-lifecycle' \
  CONNWATCH_CONFIG=/srv/c.yaml CONNWATCH_PORT_BASE=10000 'CONNWATCHD_ARGS=--log.level=debug --web.enable-lifecycle'

# The real binary takes that command line (with --check-config, so nothing starts).
if out=$(CONNWATCH_CONFIG="$src/packaging/connwatch.yaml" CONNWATCHD_ARGS=--check-config \
         run_instance 1-4 "$binary"); then
  echo "ok: connwatchd accepts connwatch@1-4's command line: $out"
else
  fail "connwatchd refuses connwatch@1-4's command line: $out"
fi
for bad in 4-4 1 x-4; do
  if out=$(CONNWATCH_CONFIG="$src/packaging/connwatch.yaml" CONNWATCHD_ARGS=--check-config \
           run_instance "$bad" "$binary"); then
    fail "connwatch@$bad starts: $out"
  elif grep -q -- '--shard' <<<"$out"; then
    echo "ok: connwatch@$bad is refused: $(head -n 1 <<<"$out")"
  else
    fail "connwatch@$bad is refused without naming --shard: $out"
  fi
done

# 4. The exposure level, as for connwatch.service.
report=$(systemd-analyze security --offline=yes --no-pager "$tmp/connwatch@1-4.service" 2>&1)
level=$(sed -nE 's/.*Overall exposure level for connwatch@1-4\.service: ([0-9]+\.[0-9]+).*/\1/p' <<<"$report")
if [ -z "$level" ]; then
  fail "no 'Overall exposure level' line in systemd-analyze security's output:"
  echo "$report"
elif awk -v l="$level" -v m="$max_exposure" 'BEGIN { exit !(l <= m) }'; then
  echo "ok: exposure $level <= $max_exposure"
else
  fail "exposure $level is above $max_exposure; what is exposed:"
  grep -F '✗' <<<"$report"
fi

if [ $failures -ne 0 ]; then
  echo "$failures check(s) failed"
  exit 1
fi
echo "all checks passed"
