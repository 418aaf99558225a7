#!/usr/bin/env bash
# Runs connwatchd as the systemd service, sandbox and all, under a real
# systemd: boots a throwaway container (systemd-nspawn) whose /usr is the
# host's with the build's install tree laid over it, and whose /etc holds only
# what the daemon and systemd need. Nothing on the host changes.
#
# Checks: `systemctl start` returns once READY=1 came; targets reached by
# address and by name (/etc/hosts through c-ares) come up; STATUS= shows them;
# /metrics answers, process_start_time_seconds is sane (/proc/stat readable);
# a `systemctl restart` keeps every target's state (StateDirectory=);
# `systemctl reload` with a broken file fails and the service runs on; with a
# good file it applies it; with a drop-in that moves the config, reload checks
# the moved file (not the default path); TLS works with the key handed over
# by LoadCredential= from /etc/credstore (the recipe in docs/SYSTEMD.md), and
# reload checks that web config too; a stopped (stuck) daemon is killed by the
# watchdog and restarted; `systemctl stop` ends it cleanly.
#
# Needs root and systemd-nspawn (package systemd-container); skipped (77)
# otherwise. Usage: service_test.sh BUILD_DIR (what `cmake --install` installs
# from it is what the package holds).
set -uo pipefail

build=$1

if [ "$(id -u)" -ne 0 ]; then
  echo "SKIP: booting a container needs root"
  exit 77
fi
if ! command -v systemd-nspawn >/dev/null; then
  echo "SKIP: systemd-nspawn is not installed (package systemd-container)"
  exit 77
fi

tmp=$(mktemp -d /tmp/connwatch-service-XXXXXX)
root=$tmp/root
stage=$tmp/stage
machine=connwatch-test-$$
nspawn_pid=""
leader=""
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

cleanup() {
  if [ -n "$nspawn_pid" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
    [ -n "$leader" ] && kill -RTMIN+4 "$leader" 2>/dev/null  # systemd: poweroff
    for _ in $(seq 100); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$nspawn_pid" 2>/dev/null
    wait "$nspawn_pid" 2>/dev/null
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

# Runs a command inside the container (all its namespaces).
in_ct() { nsenter -t "$leader" -a "$@"; }
prop() { in_ct systemctl show connwatch.service -p "$1" --value; }
# Polls `condition` (a shell command) for up to $1 seconds.
wait_until() {
  local seconds=$1
  shift
  local deadline=$((SECONDS + seconds))
  until "$@"; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.1
  done
}
http_get() {  # path -> response on stdout; HTTP/1.0 over bash's /dev/tcp
  nsenter -t "$leader" -n bash -c \
    'exec 3<>/dev/tcp/127.0.0.1/9798 && printf "GET %s HTTP/1.0\r\n\r\n" "$1" >&3 && cat <&3' _ "$1"
}

# --- The tree the package installs, laid over /usr ------------------------------
if ! DESTDIR=$stage cmake --install "$build" --prefix /usr >"$tmp/install.log" 2>&1; then
  echo "FAIL: cmake --install:"
  cat "$tmp/install.log"
  exit 1
fi
# A merged-/usr root: the unit's /lib/systemd/system is /usr/lib/systemd/system.
mkdir -p "$stage/usr/lib/systemd/system"
mv "$stage/lib/systemd/system/connwatch.service" "$stage/usr/lib/systemd/system/"

mkdir -p "$root"/{usr,etc,var/lib,var/log,var/tmp,tmp,run,proc,sys,dev,root}
for d in bin sbin lib lib64; do [ -L "/$d" ] && ln -s "usr/$d" "$root/$d"; done
cp /usr/lib/os-release "$root/etc/os-release"  # checked by nspawn before /usr is mounted
cp /etc/passwd /etc/group /etc/nsswitch.conf "$root/etc/"
[ -f /etc/ld.so.cache ] && cp /etc/ld.so.cache "$root/etc/"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
printf 'nameserver 127.0.0.1\n' >"$root/etc/resolv.conf"
: >"$root/etc/machine-id"
cp -a "$stage/etc/connwatch" "$root/etc/connwatch"
# Two targets: the daemon's own listener by address, and by name.
cat >"$root/etc/connwatch/targets.d/local.yaml" <<'EOF'
targets:
  - name: self
    address: 127.0.0.1:9798
    startup_jitter: 0s
  - name: byname
    address: localhost:9798
    startup_jitter: 0s
EOF

# --- Boot -------------------------------------------------------------------------
systemd-nspawn -q -D "$root" --overlay-ro="/usr:$stage/usr:/usr" --private-network \
  --register=no --keep-unit --console=passive -M "$machine" \
  -b -- systemd.unit=multi-user.target >"$tmp/console.log" 2>&1 &
nspawn_pid=$!
find_leader() {
  kill -0 "$nspawn_pid" 2>/dev/null || return 0
  leader=$(pgrep -P "$nspawn_pid" | head -n 1)
  [ -n "$leader" ] && [ "$(cat "/proc/$leader/comm" 2>/dev/null)" = systemd ]
}
# The unit is not started at boot: a container that does not boot says
# something about this machine (no cgroups, no privileges), not about connwatch.
if ! wait_until 20 find_leader || [ -z "$leader" ]; then
  echo "SKIP: systemd-nspawn cannot boot a container here:"
  cat "$tmp/console.log"
  exit 77
fi
booted() {
  local s
  s=$(in_ct systemctl is-system-running 2>/dev/null)
  [ "$s" = running ] || [ "$s" = degraded ]
}
if ! wait_until 60 booted; then
  echo "SKIP: the container's systemd did not finish booting:"
  in_ct systemctl list-jobs --no-pager
  in_ct systemctl --failed --no-pager
  exit 77
fi
echo "ok: container booted ($(in_ct systemctl is-system-running))"

# --- Start ------------------------------------------------------------------------
if out=$(in_ct systemctl start connwatch.service 2>&1); then
  echo "ok: systemctl start returned (READY=1 received): $(prop ActiveState)/$(prop SubState)"
else
  fail "systemctl start: $out"
  in_ct journalctl -u connwatch.service --no-pager | tail -n 30
  exit 1
fi
status_is() { [ "$(prop StatusText)" = "$1" ]; }
if wait_until 10 status_is "2/2 targets up"; then
  echo "ok: STATUS=2/2 targets up (by address and by name through /etc/hosts)"
else
  fail "StatusText is '$(prop StatusText)', expected '2/2 targets up'"
fi
[ "$(prop User)" = connwatch ] || fail "User is '$(prop User)'"
[ "$(prop LimitNOFILE)" = 262144 ] || fail "LimitNOFILE is '$(prop LimitNOFILE)'"
metrics=$(http_get /metrics)
grep -q '^connwatch_target_up{target="byname"} 1' <<<"$metrics" ||
  fail "/metrics lacks connwatch_target_up{target=\"byname\"} 1: $(head -c 400 <<<"$metrics")"
start=$(sed -nE 's/^process_start_time_seconds ([0-9.e+]+)$/\1/p' <<<"$metrics")
now=$(date +%s)
if [ -n "$start" ] && awk -v s="$start" -v n="$now" 'BEGIN { exit !(s > n - 600 && s <= n + 1) }'; then
  echo "ok: /metrics answers; process_start_time_seconds=$start (now $now)"
else
  fail "process_start_time_seconds is '$start', now is $now"
fi

# --- State across a restart (StateDirectory=, --storage.path) -----------------------
# The sandbox lets the daemon write /var/lib/connwatch and nothing else; a
# restart (SIGTERM: saved) restores both targets and their counters go on.
connects() { http_get /metrics | sed -nE 's/^connwatch_target_connects_total\{target="self"\} ([0-9]+)\r?$/\1/p'; }
before=$(connects)
if in_ct systemctl restart connwatch.service && wait_until 10 status_is "2/2 targets up"; then
  restored=$(in_ct journalctl -u connwatch.service --no-pager -o cat | grep 'msg="state restored"' | tail -n 1)
  after=$(connects)
  owner=$(in_ct stat -c %U /var/lib/connwatch/state.json 2>&1)
  if grep -q ' restored=2 ' <<<"$restored" && [ -n "$before" ] && [ "${after:-0}" -gt "$before" ] &&
     [ "$owner" = connwatch ]; then
    echo "ok: systemctl restart kept the state: connects of self $before -> $after; $restored"
  else
    fail "state across systemctl restart: connects $before -> $after, owner '$owner', line '$restored'"
    in_ct journalctl -u connwatch.service --no-pager | grep -i state | tail -n 5
  fi
else
  fail "systemctl restart: $(prop ActiveState) '$(prop StatusText)'"
fi

# --- Reload -----------------------------------------------------------------------
printf 'targets:\n  - name: broken\n    adress: 127.0.0.1:1\n' >"$root/etc/connwatch/targets.d/broken.yaml"
if in_ct systemctl reload connwatch.service >/dev/null 2>&1; then
  fail "systemctl reload succeeded with a broken file"
else
  echo "ok: systemctl reload fails on a broken file"
fi
[ "$(prop ActiveState)" = active ] || fail "the service is $(prop ActiveState) after a failed reload"
journal_has_error() { in_ct journalctl -u connwatch.service --no-pager | grep 'unknown key "adress"' >/dev/null; }
wait_until 5 journal_has_error || fail "the journal does not show the config error"
rm "$root/etc/connwatch/targets.d/broken.yaml"
printf 'targets:\n  - name: third\n    address: 127.0.0.1:9798\n    startup_jitter: 0s\n' \
  >"$root/etc/connwatch/targets.d/third.yaml"
if out=$(in_ct systemctl reload connwatch.service 2>&1) && wait_until 10 status_is "3/3 targets up"; then
  echo "ok: systemctl reload applied a new target: $(prop StatusText)"
else
  fail "reload with a good file: $out; StatusText '$(prop StatusText)'"
fi

# --- A drop-in that moves the config (docs/SYSTEMD.md): reload follows it ---------
mkdir -p "$root/etc/systemd/system/connwatch.service.d" "$root/etc/connwatch/site"
printf 'targets:\n  - name: moved\n    address: 127.0.0.1:9798\n    startup_jitter: 0s\n' \
  >"$root/etc/connwatch/site/watch.yaml"
cat >"$root/etc/systemd/system/connwatch.service.d/flags.conf" <<'EOF2'
[Service]
ExecStart=
ExecStart=/usr/bin/connwatchd --config.file=/etc/connwatch/site/watch.yaml --log.level=warn
EOF2
in_ct systemctl daemon-reload
if out=$(in_ct systemctl restart connwatch.service 2>&1) && wait_until 10 status_is "1/1 targets up"; then
  echo "ok: started from a drop-in with --config.file=/etc/connwatch/site/watch.yaml"
else
  fail "restart with the flags drop-in: $out; StatusText '$(prop StatusText)'"
fi
# The default path is broken, the running config is fine: the reload passes.
cp "$root/etc/connwatch/connwatch.yaml" "$tmp/default.yaml"
printf 'targets:\n  - adress: 127.0.0.1:1\n' >"$root/etc/connwatch/connwatch.yaml"
printf '  - name: moved-2\n    address: 127.0.0.1:9798\n    startup_jitter: 0s\n' \
  >>"$root/etc/connwatch/site/watch.yaml"
if out=$(in_ct systemctl reload connwatch.service 2>&1) && wait_until 10 status_is "2/2 targets up"; then
  echo "ok: reload checks the running --config.file, not the default path: $(prop StatusText)"
else
  fail "reload with the moved config: $out; StatusText '$(prop StatusText)' $(in_ct journalctl -u connwatch --no-pager | tail -n 5)"
fi
cp "$tmp/default.yaml" "$root/etc/connwatch/connwatch.yaml"
printf '  - adress: 127.0.0.1:1\n' >>"$root/etc/connwatch/site/watch.yaml"
if in_ct systemctl reload connwatch.service >/dev/null 2>&1; then
  fail "systemctl reload succeeded with a broken file at the running --config.file"
else
  echo "ok: reload fails for a broken file at the running --config.file"
fi
[ "$(prop ActiveState)" = active ] || fail "the service is $(prop ActiveState) after a failed reload"
rm -r "$root/etc/systemd/system/connwatch.service.d/flags.conf" "$root/etc/connwatch/site"
in_ct systemctl daemon-reload

# --- TLS with the key handed over as a credential (docs/SYSTEMD.md) ---------------
# The key and certificate live in /etc/credstore (root only), which purging
# the package leaves alone; web.yaml is configuration in /etc/connwatch.
if command -v openssl >/dev/null; then
  etc=$root/etc/connwatch
  store=$root/etc/credstore
  mkdir -p -m 700 "$store"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -keyout "$store/connwatch.tls.key" -out "$store/connwatch.tls.crt" >/dev/null 2>&1
  chmod 600 "$store/connwatch.tls.key"  # root only: the dynamic user cannot read it in place
  printf 'tls_server_config:\n  cert_file: %s\n  key_file: %s\n' \
    /run/credentials/connwatch.service/tls.crt /run/credentials/connwatch.service/tls.key \
    >"$etc/web.yaml"
  mkdir -p "$root/etc/systemd/system/connwatch.service.d"
  cat >"$root/etc/systemd/system/connwatch.service.d/tls.conf" <<'EOF2'
[Service]
LoadCredential=tls.crt:/etc/credstore/connwatch.tls.crt
LoadCredential=tls.key:/etc/credstore/connwatch.tls.key
ExecStart=
ExecStart=/usr/bin/connwatchd --config.file=/etc/connwatch/connwatch.yaml --web.config.file=/etc/connwatch/web.yaml
EOF2
  in_ct systemctl daemon-reload
  if out=$(in_ct systemctl restart connwatch.service 2>&1) &&
     hs=$(nsenter -t "$leader" -n openssl s_client -connect 127.0.0.1:9798 -brief </dev/null 2>&1) &&
     grep -q 'Protocol version' <<<"$hs"; then
    echo "ok: TLS with LoadCredential= from /etc/credstore ($(grep 'Protocol version' <<<"$hs"))"
  else
    fail "TLS with LoadCredential=: $out $hs $(in_ct journalctl -u connwatch --no-pager | tail -n 5)"
  fi
  # The reload check reads the web config the daemon runs with (and the
  # credentials it names): a key that is not there fails the reload.
  if out=$(in_ct systemctl reload connwatch.service 2>&1); then
    echo "ok: reload with the web config passes its check"
  else
    fail "reload with a good web config: $out $(in_ct journalctl -u connwatch --no-pager | tail -n 5)"
  fi
  sed -i 's#tls.key$#missing.key#' "$etc/web.yaml"
  journal_names_missing_key() {
    in_ct journalctl -u connwatch.service --no-pager | grep 'cannot read "/run/credentials/connwatch.service/missing.key"' >/dev/null
  }
  if in_ct systemctl reload connwatch.service >/dev/null 2>&1; then
    fail "systemctl reload succeeded with a broken --web.config.file"
  elif wait_until 5 journal_names_missing_key; then
    echo "ok: reload fails for a broken web config of the running daemon (the journal names the missing key)"
  else
    fail "the reload failed, but the journal does not name the missing key: $(in_ct journalctl -u connwatch --no-pager | tail -n 5)"
  fi
  rm "$root/etc/systemd/system/connwatch.service.d/tls.conf" "$etc/web.yaml"
  in_ct systemctl daemon-reload
else
  echo "skipped: TLS (no openssl)"
fi

# --- Watchdog ---------------------------------------------------------------------
# A short watchdog, then a daemon frozen as a stuck loop would be.
mkdir -p "$root/etc/systemd/system/connwatch.service.d"
printf '[Service]\nWatchdogSec=1s\nTimeoutAbortSec=2s\n' \
  >"$root/etc/systemd/system/connwatch.service.d/watchdog.conf"
in_ct systemctl daemon-reload
in_ct systemctl restart connwatch.service
pid=$(prop MainPID)
restarts=$(prop NRestarts)
host_pid=""
for p in $(pgrep -x connwatchd); do
  grep -qE "^NSpid:.*[[:space:]]$pid\$" "/proc/$p/status" 2>/dev/null &&
    [ "$(readlink "/proc/$p/ns/pid")" = "$(readlink "/proc/$leader/ns/pid")" ] && host_pid=$p
done
if [ -z "$host_pid" ]; then
  fail "cannot find the daemon (pid $pid in the container) from the host"
else
  # Pinging every 500 ms, it outlives three watchdog intervals.
  stays_up() { [ "$(prop NRestarts)" = "$restarts" ] && [ "$(prop MainPID)" = "$pid" ]; }
  deadline=$((SECONDS + 3))
  while [ $SECONDS -lt $deadline ] && stays_up; do sleep 0.1; done
  stays_up || fail "restarted with a 1 s watchdog while healthy: $(in_ct journalctl -u connwatch --no-pager | tail -n 5)"
  kill -STOP "$host_pid"
  restarted() { [ "$(prop NRestarts)" -gt "$restarts" ] && [ "$(prop ActiveState)" = active ]; }
  if wait_until 15 restarted; then
    echo "ok: a frozen daemon is killed by the watchdog and restarted ($(prop NRestarts) restart(s))"
  else
    fail "no watchdog restart: $(in_ct journalctl -u connwatch --no-pager | tail -n 8)"
  fi
  # journald may not have written the line yet.
  journal_has_timeout() { in_ct journalctl -u connwatch --no-pager | grep 'Watchdog timeout' >/dev/null; }
  wait_until 5 journal_has_timeout || fail "the journal does not show the watchdog timeout"
fi

# --- Stop ---------------------------------------------------------------------------
in_ct systemctl stop connwatch.service
result="$(prop Result) $(prop ExecMainStatus) $(prop ActiveState)"
[ "$result" = "success 0 inactive" ] || fail "after stop: Result ExecMainStatus ActiveState = $result"
echo "ok: systemctl stop: $result"

if [ $failures -ne 0 ]; then
  echo "$failures check(s) failed"
  exit 1
fi
echo "all checks passed"
