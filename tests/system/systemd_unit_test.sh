#!/usr/bin/env bash
# Checks systemd/connwatch.service without installing it:
#  - `systemd-analyze verify` accepts it (on a copy whose ExecStart and
#    ExecReload run the build's binary, since /usr/bin/connwatchd may not exist;
#    the installed unit is verified by tests/system/package_test.sh);
#  - its ExecStart and ExecReload command lines are accepted by the binary;
#  - `systemd-analyze security --offline=yes` rates it 1.5 or lower
#    (docs/SYSTEMD.md records the level).
# Usage: systemd_unit_test.sh SOURCE_DIR CONNWATCHD_BINARY
# Exit 0 pass, 1 fail, 77 skip (no systemd-analyze).
set -uo pipefail

src=$1
binary=$2
unit="$src/systemd/connwatch.service"
max_exposure=1.5

if ! command -v systemd-analyze >/dev/null; then
  echo "SKIP: systemd-analyze is not installed (package systemd)"
  exit 77
fi

tmp=$(mktemp -d /tmp/connwatch-unit-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# 1. verify, on a copy that runs the build's binary. The copy keeps the
#    name connwatch.service; Documentation= man pages are checked after
#    install (they are not installed here).
sed -e "s#/usr/bin/connwatchd#$binary#g" "$unit" >"$tmp/connwatch.service"
out=$(systemd-analyze verify --man=no --recursive-errors=no "$tmp/connwatch.service" 2>&1)
rc=$?
if [ $rc -ne 0 ] || [ -n "$out" ]; then
  fail "systemd-analyze verify (exit $rc):"
  echo "$out"
else
  echo "ok: systemd-analyze verify"
fi

# 2. The command lines of the unit parse: run each with --check-config on
#    the packaged default config (so nothing starts).
while IFS= read -r line; do
  cmd=${line#*=}
  case $cmd in
    /usr/bin/connwatchd*) ;;
    *) continue ;;  # /bin/kill -HUP $MAINPID
  esac
  read -r -a argv <<<"$cmd"
  argv[0]=$binary
  args=()
  for a in "${argv[@]}"; do
    case $a in
      --config.file=*) args+=("--config.file=$src/packaging/connwatch.yaml") ;;
      --check-config) ;;
      *) args+=("$a") ;;
    esac
  done
  if out=$("${args[@]}" --check-config 2>&1); then
    echo "ok: ${line%%=*} accepted: $cmd"
  else
    fail "${line%%=*} is not accepted by the binary: $cmd"
    echo "$out"
  fi
done < <(grep -E '^(ExecStart|ExecReload)=' "$unit")

for key in 'Type=notify' 'WatchdogSec=' 'ExecReload=/bin/kill -HUP $MAINPID' 'Restart=on-failure' \
           'LimitNOFILE=262144' 'DynamicUser=yes' 'RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX'; do
  grep -qF -- "$key" "$unit" || fail "the unit lacks $key"
done

# 3. The exposure level.
report=$(systemd-analyze security --offline=yes --no-pager "$unit" 2>&1)
overall=$(grep -E 'Overall exposure level for connwatch.service:' <<<"$report")
level=$(sed -nE 's/.*Overall exposure level for connwatch\.service: ([0-9]+\.[0-9]+).*/\1/p' <<<"$overall")
if [ -z "$level" ]; then
  fail "no 'Overall exposure level' line in systemd-analyze security's output:"
  echo "$report"
elif awk -v l="$level" -v m="$max_exposure" 'BEGIN { exit !(l <= m) }'; then
  echo "ok: exposure $level <= $max_exposure ($overall)"
else
  fail "exposure $level is above $max_exposure; what is exposed:"
  grep -F '✗' <<<"$report"
fi

if [ $failures -ne 0 ]; then
  echo "$failures check(s) failed"
  exit 1
fi
echo "all checks passed"
