#!/usr/bin/env bash
# Checks systemd/connwatch.service without installing it:
#  - `systemd-analyze verify` accepts it (on a copy whose ExecStart and
#    ExecReload run the build's binary, since /usr/bin/connwatchd may not exist;
#    the installed unit is verified by tests/system/package_test.sh);
#  - its ExecStart command line is accepted by the binary, and its ExecReload
#    check, run against a daemon started with other flags, checks the files
#    that daemon reads (as root: the check enters the daemon's namespace);
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

# 2. ExecStart= is accepted by the binary (run with --check-config on the
#    packaged default config, so nothing starts).
while IFS= read -r line; do
  read -r -a argv <<<"${line#ExecStart=}"
  args=("$binary")
  for a in "${argv[@]:1}"; do
    case $a in
      --config.file=*) args+=("--config.file=$src/packaging/connwatch.yaml") ;;
      *) args+=("$a") ;;
    esac
  done
  if out=$("${args[@]}" --check-config 2>&1); then
    echo "ok: ExecStart accepted: ${line#ExecStart=}"
  else
    fail "ExecStart is not accepted by the binary: $line"
    echo "$out"
  fi
done < <(grep -E '^ExecStart=/usr/bin/connwatchd' "$unit")

# 3. ExecReload= checks what the running daemon reads, with its flags: a
#    daemon runs with a config and a web config at non-default places (as a
#    drop-in would start it); the reload check, run as systemd runs it
#    (${MAINPID} and $$ substituted, words split by its quoting rules, which
#    match the shell's for this line), passes, then fails for a broken config
#    and for a web key that does not match its certificate.
check_line=$(grep -E '^ExecReload=' "$unit" | head -n 1)
check_line=${check_line#ExecReload=}
[[ -n "$check_line" && $check_line != /bin/kill* ]] || fail "the unit has no ExecReload= check before the SIGHUP"
grep -qxF 'ExecReload=/bin/kill -HUP $MAINPID' "$unit" || fail "the unit does not send SIGHUP on reload"
mkdir -p "$tmp/moved"
printf 'targets: []\n' >"$tmp/moved/watch.yaml"
have_tls=0
if command -v openssl >/dev/null; then
  for n in a b; do
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
      -subj /CN=localhost -keyout "$tmp/moved/$n.key" -out "$tmp/moved/$n.crt" >/dev/null 2>&1
  done
  printf 'tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n' >"$tmp/moved/web.yml"
  have_tls=1
else
  printf '' >"$tmp/moved/web.yml"  # an empty web config is valid
fi
"$binary" --config.file="$tmp/moved/watch.yaml" --web.config.file="$tmp/moved/web.yml" \
  --web.listen-address=127.0.0.1:0 >"$tmp/daemon.log" 2>&1 &
daemon=$!
trap 'kill "$daemon" 2>/dev/null; wait "$daemon" 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 100); do grep -q 'msg=listening' "$tmp/daemon.log" && break; sleep 0.05; done
grep -q 'msg=listening' "$tmp/daemon.log" || fail "the daemon did not start: $(cat "$tmp/daemon.log")"
reload_check() {  # runs the ExecReload= check for the daemon; its exit status
  local cmd=${check_line#+}  # "+": full privileges, as this test has
  cmd=${cmd//\/usr\/bin\/connwatchd/$binary}
  cmd=${cmd//'${MAINPID}'/$daemon}
  cmd=${cmd//'%%'/'%'}
  cmd=${cmd//'$$'/'$'}
  eval "local -a words=($cmd)"
  MAINPID=$daemon "${words[@]}" >"$tmp/reload.out" 2>&1
}
# The check must fail for `what`, naming it (`expected`, a grep pattern).
reload_check_fails() {
  local what=$1 expected=$2
  if reload_check; then
    fail "ExecReload's check passes $what"
  elif grep -q -- "$expected" "$tmp/reload.out"; then
    echo "ok: ExecReload fails for $what"
  else
    fail "ExecReload's check failed for $what without naming it: $(cat "$tmp/reload.out")"
  fi
}
if [ "$(id -u)" -ne 0 ] && [[ $check_line == +* ]]; then
  echo "skipped: the ExecReload check (it enters the daemon's namespace with nsenter: needs root)"
elif reload_check && grep -qF "$tmp/moved/watch.yaml: OK" "$tmp/reload.out"; then
  echo "ok: ExecReload checks the running daemon's --config.file and --web.config.file: $(tr '\n' ' ' <"$tmp/reload.out")"
  printf 'targets:\n  - adress: 192.0.2.1:80\n' >"$tmp/moved/watch.yaml"
  reload_check_fails "a broken config at the running daemon's --config.file" 'unknown key "adress"'
  printf 'targets: []\n' >"$tmp/moved/watch.yaml"
  if [ $have_tls -eq 1 ]; then
    printf 'tls_server_config:\n  cert_file: a.crt\n  key_file: b.key\n' >"$tmp/moved/web.yml"
    reload_check_fails "a web config whose key does not match its certificate" 'does not match the certificate'
  else
    echo "skipped: the web config part of ExecReload (no openssl)"
  fi
else
  fail "ExecReload's check fails for a good config, or checks another file: $(cat "$tmp/reload.out")"
fi
kill "$daemon" 2>/dev/null
wait "$daemon" 2>/dev/null

for key in 'Type=notify' 'WatchdogSec=' 'ExecReload=/bin/kill -HUP $MAINPID' 'Restart=on-failure' \
           'LimitNOFILE=262144' 'DynamicUser=yes' 'RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX'; do
  grep -qF -- "$key" "$unit" || fail "the unit lacks $key"
done

# 4. The exposure level.
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
