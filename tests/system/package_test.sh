#!/usr/bin/env bash
# Builds the Debian package with CPack, checks its contents, lints it,
# installs it with dpkg, checks the installed daemon, unit and conffile,
# then purges it and checks that nothing is left.
#
# It changes the system (dpkg -i / --purge), so it needs root: it is skipped
# (exit 77) otherwise. It refuses to run (fails) when a connwatch package is
# already installed, rather than replace and purge it. Where systemd is PID 1
# the maintainer scripts start the service; elsewhere (containers, CI) they
# only enable it, and this test checks both cases.
#
# Usage: package_test.sh SOURCE_DIR BUILD_DIR DEBIAN_VERSION
set -uo pipefail

src=$1
build=$2
deb_version=$3

if [ "$(id -u)" -ne 0 ]; then
  echo "SKIP: the package test installs and purges a .deb, which needs root"
  exit 77
fi
for tool in cpack dpkg-deb dpkg-shlibdeps lintian; do
  if ! command -v "$tool" >/dev/null; then
    echo "FAIL: $tool is not installed: run scripts/setup.sh"
    exit 1
  fi
done
if dpkg-query -W -f='${Status}' connwatch 2>/dev/null | grep -qv 'not-installed'; then
  echo "FAIL: a connwatch package is already on this machine ($(dpkg-query -W connwatch));"
  echo "      this test would replace and purge it. Remove it first: dpkg --purge connwatch"
  exit 1
fi

tmp=$(mktemp -d /tmp/connwatch-package-XXXXXX)
installed=0
cleanup() {
  if [ $installed -eq 1 ]; then dpkg --purge connwatch >/dev/null 2>&1 || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
export DEBIAN_FRONTEND=noninteractive
arch=$(dpkg --print-architecture)
deb="$tmp/connwatch_${deb_version}_${arch}.deb"

# --- Build --------------------------------------------------------------------
if ! (cd "$build" && cpack -G DEB -B "$tmp" >"$tmp/cpack.log" 2>&1) || [ ! -f "$deb" ]; then
  echo "FAIL: cpack did not make $deb:"
  cat "$tmp/cpack.log"
  ls "$tmp"
  exit 1
fi
echo "ok: built $(basename "$deb") ($(stat -c %s "$deb") bytes)"

# --- Contents -----------------------------------------------------------------
# Every path, with its mode and owner, exactly (tests/system/package_files.txt).
grep -v '^#' "$src/tests/system/package_files.txt" >"$tmp/expected-files"
dpkg-deb -c "$deb" | awk '{ print $1, $2, $6 }' | sort -k3 >"$tmp/actual-files"
if diff -u "$tmp/expected-files" "$tmp/actual-files" >"$tmp/files.diff"; then
  echo "ok: file list, modes and owners"
else
  fail "file list (- expected, + in the package):"
  cat "$tmp/files.diff"
fi

conffiles=$(dpkg-deb -I "$deb" conffiles 2>&1)
[ "$conffiles" = "/etc/connwatch/connwatch.yaml" ] || fail "conffiles is '$conffiles'"
mkdir "$tmp/control"
dpkg-deb --ctrl-tarfile "$deb" | tar -x -C "$tmp/control"
for script in postinst prerm postrm; do
  [ -x "$tmp/control/$script" ] || fail "no executable $script in the control archive"
done
[ ! -e "$tmp/control/preinst" ] || fail "unexpected preinst"
field() { dpkg-deb -f "$deb" "$1"; }
[ "$(field Package)" = connwatch ] || fail "Package is '$(field Package)'"
[ "$(field Version)" = "$deb_version" ] || fail "Version is '$(field Version)', expected $deb_version"
[ "$(field Architecture)" = "$arch" ] || fail "Architecture is '$(field Architecture)'"
[ "$(field Section)" = net ] || fail "Section is '$(field Section)'"
depends=$(field Depends)
# Exactly the packages docs/PACKAGING.md lists ("today: libc-ares2, ...").
actual_deps=$(sed -E 's/ \([^)]*\)//g; s/, /\n/g' <<<"$depends" | sort)
documented_deps=$(tr '\n' ' ' <"$src/docs/PACKAGING.md" |
  sed -nE 's/.*links \(`CPACK_DEBIAN_PACKAGE_SHLIBDEPS`\); today: (.*), each with the minimal.*/\1/p' |
  sed -E 's/,? and /, /; s/ +/ /g; s/, /\n/g' | sort)
if [ -z "$documented_deps" ]; then
  fail "docs/PACKAGING.md: no \"today: ...\" list of Depends found"
elif [ "$actual_deps" != "$documented_deps" ]; then
  fail "Depends differs from docs/PACKAGING.md's list (- documented, + in the package):
$(diff <(echo "$documented_deps") <(echo "$actual_deps") | grep '^[<>]' | sed 's/^</-/; s/^>/+/')"
fi
echo "ok: control: $(field Package) $(field Version) $(field Architecture); Depends: $depends"
# The shipped unit and config are the sources, byte for byte.
mkdir "$tmp/data"
dpkg-deb -x "$deb" "$tmp/data"
cmp -s "$tmp/data/lib/systemd/system/connwatch.service" "$src/systemd/connwatch.service" ||
  fail "the packaged unit differs from systemd/connwatch.service"
cmp -s "$tmp/data/lib/systemd/system/connwatch@.service" "$src/systemd/connwatch@.service" ||
  fail "the packaged templated unit differs from systemd/connwatch@.service"
cmp -s "$tmp/data/etc/connwatch/connwatch.yaml" "$src/packaging/connwatch.yaml" ||
  fail "the packaged config differs from packaging/connwatch.yaml"
cmp -s "$tmp/data/usr/share/connwatch/connwatch.schema.json" "$src/config/connwatch.schema.json" ||
  fail "the packaged schema differs from config/connwatch.schema.json"
# The example is the source's, but for the schema it points to: the installed one.
sed 's#\$schema=./connwatch.schema.json#$schema=/usr/share/connwatch/connwatch.schema.json#' \
  "$src/config/example.yaml" | cmp -s - "$tmp/data/usr/share/doc/connwatch/examples/example.yaml" ||
  fail "the packaged example.yaml is not config/example.yaml with the installed schema's path"
for f in etc/connwatch/connwatch.yaml usr/share/doc/connwatch/examples/example.yaml; do
  schema=$(sed -nE '1s/^# yaml-language-server: \$schema=(.*)$/\1/p' "$tmp/data/$f")
  [ -n "$schema" ] && [ -f "$tmp/data$schema" ] ||
    fail "/$f points editors at the schema '$schema', which the package does not hold"
done

# --- Lint ---------------------------------------------------------------------
# Errors fail; so do warnings, except those docs/PACKAGING.md explains.
allowed_warnings='initial-upload-closes-no-bugs'
lintian --tag-display-limit 0 --color never "$deb" >"$tmp/lintian.log" 2>&1
echo "lintian:"
sed 's/^/  /' "$tmp/lintian.log"
if grep -q '^E: ' "$tmp/lintian.log"; then
  fail "lintian reports errors"
fi
unexpected=$(grep '^W: ' "$tmp/lintian.log" | grep -vE "^W: connwatch: ($allowed_warnings)( |$)")
[ -z "$unexpected" ] || fail "lintian warnings not listed in docs/PACKAGING.md: $unexpected"

# --- Install ------------------------------------------------------------------
installed=1
if ! dpkg -i "$deb" </dev/null >"$tmp/dpkg-i.log" 2>&1; then
  fail "dpkg -i:"
  cat "$tmp/dpkg-i.log"
  exit 1
fi
status=$(dpkg-query -W -f='${Status} ${Version}' connwatch)
[ "$status" = "install ok installed $deb_version" ] || fail "after dpkg -i: $status"
echo "ok: installed ($status)"

if out=$(/usr/bin/connwatchd --version 2>&1) && [[ $out == "connwatchd ${deb_version%-*} "* ]]; then
  echo "ok: $out"
else
  fail "/usr/bin/connwatchd --version: $out"
fi
if out=$(/usr/bin/connwatchctl --version 2>&1) && [[ $out == "connwatchctl ${deb_version%-*} "* ]]; then
  echo "ok: $out"
else
  fail "/usr/bin/connwatchctl --version: $out"
fi
# The client's check is the daemon's: the same line for the installed config.
if out=$(/usr/bin/connwatchctl check-config /etc/connwatch/connwatch.yaml 2>&1) &&
   [ "$out" = "/etc/connwatch/connwatch.yaml: OK, 0 target(s) from 1 file(s)" ]; then
  echo "ok: connwatchctl check-config: $out"
else
  fail "connwatchctl check-config on the installed config: $out"
fi
# Without --config.file: the default path is the installed file.
if out=$(/usr/bin/connwatchd --check-config 2>&1) &&
   [ "$out" = "/etc/connwatch/connwatch.yaml: OK, 0 target(s) from 1 file(s)" ]; then
  echo "ok: $out"
else
  fail "connwatchd --check-config on the installed config: $out"
fi
[ -d /etc/connwatch/targets.d ] || fail "/etc/connwatch/targets.d is missing"
# The installed unit, with its Documentation= pages looked up by man.
if out=$(systemd-analyze verify --recursive-errors=no /lib/systemd/system/connwatch.service 2>&1) &&
   [ -z "$out" ]; then
  echo "ok: systemd-analyze verify of the installed unit, man pages included"
else
  fail "systemd-analyze verify /lib/systemd/system/connwatch.service: $out"
fi
for page in connwatchd.8 connwatch.yaml.5 connwatchctl.1; do
  man -w "${page%.*}" >/dev/null 2>&1 || fail "man cannot find ${page}"
done
# postinst enabled the unit (deb-systemd-helper works without a running
# systemd); where systemd runs it also started it.
wants=/etc/systemd/system/multi-user.target.wants/connwatch.service
[ -L "$wants" ] || fail "postinst did not enable the unit ($wants is missing)"
if [ -d /run/systemd/system ]; then
  # deb-systemd-invoke start waited for the job, i.e. for READY=1.
  active=$(systemctl is-active connwatch.service 2>&1)
  [ "$active" = active ] ||
    fail "systemd runs, but connwatch.service is '$active' after install: $(systemctl status connwatch.service 2>&1 | tail -n 20)"
  echo "ok: systemd runs here; connwatch.service is $active"
else
  echo "ok: systemd is not PID 1 here: the unit is enabled, not started"
fi

# The conffile survives a reinstall (the same as an upgrade that does not
# change it): dpkg keeps the administrator's edit without asking.
echo "# edited by the administrator" >>/etc/connwatch/connwatch.yaml
printf 'targets:\n  - address: 192.0.2.9:22\n' >/etc/connwatch/targets.d/site.yaml
if ! dpkg -i "$deb" </dev/null >"$tmp/dpkg-i2.log" 2>&1; then
  fail "dpkg -i over the installed package:"
  cat "$tmp/dpkg-i2.log"
fi
tail -n 1 /etc/connwatch/connwatch.yaml | grep -qx '# edited by the administrator' ||
  fail "reinstalling overwrote the edited /etc/connwatch/connwatch.yaml"
out=$(/usr/bin/connwatchd --check-config 2>&1)
[ "$out" = "/etc/connwatch/connwatch.yaml: OK, 1 target(s) from 2 file(s)" ] ||
  fail "the targets.d file is not included: $out"
echo "ok: reinstall kept the edited conffile; targets.d is included"

# --- Purge --------------------------------------------------------------------
if ! dpkg --purge connwatch </dev/null >"$tmp/dpkg-purge.log" 2>&1; then
  fail "dpkg --purge:"
  cat "$tmp/dpkg-purge.log"
fi
installed=0
status=$(dpkg-query -W -f='${Status}' connwatch 2>/dev/null)
[ -z "$status" ] || [ "$status" = "unknown ok not-installed" ] || fail "after purge: $status"
for path in /etc/connwatch /usr/bin/connwatchd /usr/bin/connwatchctl \
            /lib/systemd/system/connwatch.service /lib/systemd/system/connwatch@.service \
            /usr/share/man/man8/connwatchd.8.gz /usr/share/man/man1/connwatchctl.1.gz /usr/share/doc/connwatch "$wants" \
            /var/lib/systemd/deb-systemd-helper-enabled/connwatch.service.dsh-also; do
  if [ -e "$path" ] || [ -L "$path" ]; then fail "$path is still there after purge"; fi
done
echo "ok: purged; nothing left"

if [ $failures -ne 0 ]; then
  echo "$failures check(s) failed"
  exit 1
fi
echo "all checks passed"
