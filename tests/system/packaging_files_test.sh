#!/usr/bin/env bash
# Checks the files the package ships against what they describe, without
# building or installing the package (no root needed):
#  - both manual pages render without a warning from man/groff;
#  - connwatchd(8) documents every flag of `connwatchd --help`, with its
#    default, and no flag the binary lacks;
#  - connwatch.yaml(5) names every key of the tables in docs/CONFIG.md;
#  - the default /etc/connwatch/connwatch.yaml passes --check-config, watches
#    nothing, includes targets.d/*.yaml, and its commented examples pass too
#    once uncommented;
#  - README.md's synopsis and flag table name every flag of --help, with its
#    default, and no other;
#  - connwatchctl(1) documents every flag of `connwatchctl --help` and of
#    its commands' --help, with its default, and no flag that neither binary
#    has; README.md's connwatchctl section names each;
#  - every path of the package the docs promise is in its file list
#    (tests/system/package_files.txt);
#  - packaging/changelog's top entry is the binary's version.
# Usage: packaging_files_test.sh SOURCE_DIR CONNWATCHD_BINARY PACKAGING_BUILD_DIR CONNWATCHCTL_BINARY
# (PACKAGING_BUILD_DIR holds the manual pages configured by packaging.cmake.)
# Exit 0 pass, 1 fail, 77 skip (man is not installed).
set -uo pipefail

src=$1
binary=$2
pkgdir=$3
ctl=$4

if ! command -v man >/dev/null; then
  echo "SKIP: man is not installed (package man-db)"
  exit 77
fi

tmp=$(mktemp -d /tmp/connwatch-pkgfiles-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
# in_list WORD ITEM...: WORD is one of the items. (Not `printf | grep -q`:
# under pipefail, grep -q exiting at the first match can kill printf with
# SIGPIPE and fail the pipeline although the word was found.)
in_list() {
  local word=$1 item
  shift
  for item in "$@"; do [ "$item" = "$word" ] && return 0; done
  return 1
}

# Renders a page as plain text; its warnings go to $tmp/warnings.
render() {
  LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -E UTF-8 -l "$1" 2>"$tmp/warnings" | col -bx
}

# 1. The pages render cleanly.
for page in connwatchd.8 connwatch.yaml.5 connwatchctl.1; do
  if [ ! -f "$pkgdir/$page" ]; then
    fail "$pkgdir/$page is missing (configured by packaging/packaging.cmake)"
    continue
  fi
  render "$pkgdir/$page" >"$tmp/$page.txt"
  if [ -s "$tmp/warnings" ]; then
    fail "$page: man/groff warnings:"
    cat "$tmp/warnings"
  else
    echo "ok: $page renders without warnings"
  fi
done

# 2. connwatchd(8) and --help agree.
help=$("$binary" --help)
mapfile -t help_flags < <(grep -oE -- '--[a-z][a-z.-]*[a-z]' <<<"$help" | sort -u)
mapfile -t man_flags < <(grep -oE -- '--[a-z][a-z.-]*[a-z]' "$tmp/connwatchd.8.txt" | sort -u)
if [ ${#help_flags[@]} -lt 8 ]; then
  fail "found only ${#help_flags[@]} flags in --help: $help"
fi
for f in "${help_flags[@]}"; do
  grep -qF -- "$f" "$tmp/connwatchd.8.txt" || fail "connwatchd(8) does not document $f"
done
for f in "${man_flags[@]}"; do
  in_list "$f" "${help_flags[@]}" ||
    fail "connwatchd(8) documents $f, which connwatchd --help does not list"
done
# Defaults, as --help shows them: "--config.file TEXT=/etc/connwatch/connwatch.yaml".
while read -r flag default; do
  grep -qF -- "$default" "$tmp/connwatchd.8.txt" ||
    fail "connwatchd(8) does not give $flag's default $default"
done < <(sed -nE 's/^ +(--[a-z.-]+) [A-Z]+(:\{[^}]*\})?=([^ ]+).*/\1 \3/p' <<<"$help")
echo "ok: connwatchd(8) and --help checked (${#help_flags[@]} flags)"

# 2b. README.md and --help agree: the synopsis and the flag table name every
#     flag, and no other; the table gives each default.
readme="$src/README.md"
synopsis=$(awk '/^## Running it/ { on = 1 } on && /^```/ { n++; next } on && n == 1 { print } n == 2 { exit }' "$readme")
mapfile -t synopsis_flags < <(grep -oE -- '--[a-z][a-z.-]*[a-z]' <<<"$synopsis" | sort -u)
mapfile -t table_flags < <(sed -nE 's/^\| `(--[a-z][a-z.-]*[a-z])` \|.*/\1/p' "$readme" | sort -u)
for f in "${help_flags[@]}"; do
  [ "$f" = --help ] && continue
  in_list "$f" "${synopsis_flags[@]}" || fail "README.md's synopsis lacks $f"
  in_list "$f" "${table_flags[@]}" || fail "README.md's flag table lacks $f"
done
for f in "${synopsis_flags[@]}" "${table_flags[@]}"; do
  in_list "$f" "${help_flags[@]}" ||
    fail "README.md documents $f, which connwatchd --help does not list"
done
while read -r flag default; do
  grep -qE -- "^\| \`${flag//./\\.}\` \| \`${default//./\\.}\` \|" "$readme" ||
    fail "README.md's flag table does not give $flag's default \`$default\`"
done < <(sed -nE 's/^ +(--[a-z.-]+) [A-Z]+(:\{[^}]*\})?=([^ ]+).*/\1 \3/p' <<<"$help")
if [ ${#table_flags[@]} -lt 8 ]; then
  fail "found only ${#table_flags[@]} flags in README.md's table"
fi
echo "ok: README.md and --help checked (${#table_flags[@]} flags in the table)"

# 2c. connwatchctl(1) and its --help agree (global flags and each command's);
#     flags of connwatchd the page mentions are allowed. README.md's
#     connwatchctl section names every flag.
ctl_help=$("$ctl" --help; for c in status events reload check-config; do "$ctl" "$c" --help; done)
mapfile -t ctl_flags < <(grep -oE -- '--[a-z][a-z.-]*[a-z]' <<<"$ctl_help" | sort -u)
mapfile -t ctl_man_flags < <(grep -oE -- '--[a-z][a-z.-]*[a-z]' "$tmp/connwatchctl.1.txt" | sort -u)
if [ ${#ctl_flags[@]} -lt 8 ]; then
  fail "found only ${#ctl_flags[@]} flags in connwatchctl's --help: $ctl_help"
fi
ctl_section=$(awk '/^## connwatchctl/ { on = 1; next } on && /^## / { exit } on { print }' "$src/README.md")
for f in "${ctl_flags[@]}"; do
  grep -qF -- "$f" "$tmp/connwatchctl.1.txt" || fail "connwatchctl(1) does not document $f"
  [ "$f" = --help ] && continue
  grep -qF -- "$f" <<<"$ctl_section" || fail "README.md's connwatchctl section lacks $f"
done
for f in "${ctl_man_flags[@]}"; do
  in_list "$f" "${ctl_flags[@]}" "${help_flags[@]}" ||
    fail "connwatchctl(1) documents $f, which neither connwatchctl nor connwatchd --help lists"
done
while read -r flag default; do
  grep -qF -- "$default" "$tmp/connwatchctl.1.txt" ||
    fail "connwatchctl(1) does not give $flag's default $default"
done < <(sed -nE 's/^ +(--[a-z.-]+) [A-Z]+(:\{[^}]*\})?=([^ ]+).*/\1 \3/p' <<<"$ctl_help")
echo "ok: connwatchctl(1), README.md and connwatchctl --help checked (${#ctl_flags[@]} flags)"

# 3. connwatch.yaml(5) names every key of docs/CONFIG.md's tables.
mapfile -t keys < <(sed -nE 's/^\| `([a-z_.]+)` \|.*/\1/p' "$src/docs/CONFIG.md" | sort -u)
if [ ${#keys[@]} -lt 15 ]; then
  fail "found only ${#keys[@]} keys in docs/CONFIG.md's tables"
fi
for k in "${keys[@]}"; do
  grep -qE -- "(^|[^a-z_])${k//./\\.}([^a-z_]|$)" "$tmp/connwatch.yaml.5.txt" ||
    fail "connwatch.yaml(5) does not mention the key $k (docs/CONFIG.md)"
done
echo "ok: connwatch.yaml(5) checked against ${#keys[@]} keys of docs/CONFIG.md"

# 4. The default configuration.
config="$src/packaging/connwatch.yaml"
if out=$("$binary" --check-config --config.file="$config" 2>&1) &&
   grep -q 'OK, 0 target(s)' <<<"$out"; then
  echo "ok: default config: $out"
else
  fail "the default config must pass --check-config and watch nothing: $out"
fi
grep -qE '^include:' "$config" && grep -qF '"targets.d/*.yaml"' "$config" ||
  fail "the default config does not include targets.d/*.yaml"
# Uncomment everything from "#global:" on: the examples must be valid.
awk '/^#global:/ { on = 1 } on && /^#(global:|defaults:|  )/ { sub(/^#/, "") } { print }' \
  "$config" >"$tmp/connwatch.yaml"
mkdir "$tmp/targets.d"
printf 'targets:\n  - name: from-targets-d\n    address: 192.0.2.7:443\n' >"$tmp/targets.d/extra.yaml"
if out=$("$binary" --check-config --config.file="$tmp/connwatch.yaml" 2>&1) &&
   grep -qE 'OK, [1-9][0-9]* target\(s\) from 2 file\(s\)' <<<"$out"; then
  echo "ok: default config, examples uncommented, plus a targets.d file: $out"
else
  fail "the default config's examples, uncommented, must pass --check-config: $out"
fi

# 5. Every path of the package that the docs, man pages, unit and shipped
#    configs promise is in the package's file list (tests/system/package_files.txt,
#    which package_test.sh holds the .deb to). Under /usr and /lib that is every
#    path naming connwatch; under /etc/connwatch the conffile and targets.d
#    (other files there are the administrator's). A glob stands for its directory.
files="$src/tests/system/package_files.txt"
checked=0
while IFS=: read -r where path; do
  path=/${path#*/}  # the character before the path, if any, off
  path=${path%%[.,;:)\`\"\']}
  path=${path%%[.,;:)\`\"\']}
  case $path in
    /usr/*connwatch* | /lib/*connwatch*) ;;
    /etc/connwatch | /etc/connwatch/ | /etc/connwatch/connwatch.yaml) ;;
    /etc/connwatch/targets.d | /etc/connwatch/targets.d/ | /etc/connwatch/targets.d/*[*?[]*) ;;
    *) continue ;;
  esac
  path=$(sed -E 's#/[^/]*[*?[].*$##; s#/$##' <<<"$path")
  checked=$((checked + 1))
  grep -qE "^[^#].* \.${path//./\\.}/?\$" "$files" ||
    fail "$where names $path, which the package does not install (tests/system/package_files.txt)"
# A path starts the line or follows a character that cannot be in one (not
# /var/lib/connwatch, the state directory systemd makes, which no package holds).
done < <(cd "$src" && grep -oHE '(^|[^A-Za-z0-9_.-])(/usr|/lib|/etc/connwatch)(/[A-Za-z0-9_.*?+@-]+)*/?' \
           README.md docs/*.md packaging/man/*.in systemd/connwatch.service systemd/connwatch@.service \
           packaging/connwatch.yaml config/example.yaml packaging/packaging.cmake | sort -u)
if [ $checked -lt 10 ]; then
  fail "found only $checked promised paths in the docs"
fi
echo "ok: $checked paths the docs promise are in the package's file list"

# 6. The changelog names the version the binaries report.
version=$("$binary" --version | sed -nE 's/^connwatchd ([^ ]+) .*/\1/p')
top=$(sed -nE '1s/^connwatch \(([^)-]+)-[^)]+\).*/\1/p' "$src/packaging/changelog")
if [ -n "$version" ] && [ "$version" = "$top" ]; then
  echo "ok: packaging/changelog's top entry is $version"
else
  fail "packaging/changelog's top entry is '$top' but connwatchd is '$version': add an entry"
fi
ctl_version=$("$ctl" --version | sed -nE 's/^connwatchctl ([^ ]+) .*/\1/p')
[ "$ctl_version" = "$version" ] || fail "connwatchctl --version says '$ctl_version', connwatchd '$version'"

if [ $failures -ne 0 ]; then
  echo "$failures check(s) failed"
  exit 1
fi
echo "all checks passed"
