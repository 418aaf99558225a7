#!/usr/bin/env bash
# Installs what connwatch needs to build and test (Debian 12 / Ubuntu), then
# configures and builds it into build/. Installs only what is missing.
#   scripts/setup.sh            build everything
# Environment: BUILD_DIR (default build), CMAKE_ARGS (extra cmake flags),
# BUILD_TARGETS (default: everything; the demo builds only what it runs).
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  build-essential cmake pkg-config git
  libev-dev libyaml-cpp-dev prometheus-cpp-dev libmicrohttpd-dev libc-ares-dev
  libre2-dev zlib1g-dev nlohmann-json3-dev libcli11-dev libsystemd-dev libgtest-dev libgmock-dev
  # connwatchctl: HTTP and TLS to the daemon
  libcurl4-openssl-dev
  prometheus   # for promtool, which checks /metrics in the tests
  iproute2 procps
  # --web.config.file: TLS with GnuTLS (libmicrohttpd's), bcrypt with
  # libxcrypt; the tests' TLS client is OpenSSL's and the openssl command
  # makes their certificates; the config schema check
  libgnutls28-dev libssl-dev libcrypt-dev openssl python3-jsonschema python3-yaml
  # the service unit and the Debian package (tests labelled system, package):
  # systemd-analyze, a container to run the unit in, cpack's dpkg-shlibdeps and
  # file, the linter, and man to render the manual pages
  systemd systemd-container dpkg-dev file lintian man-db
  # the libFuzzer targets (scripts/fuzz.sh): clang and its runtime libraries
  clang libclang-rt-dev
  # tests/clock_step_test.cc steps the daemon's wall clock with libfaketime;
  # the fault suite's REJECT router uses nft (tests/system)
  faketime nftables
  # the status page's browser test (tests/system/status_page_test.py): headless
  # Chromium driven over the DevTools protocol by python3-websocket
  chromium python3-websocket
  # tests/dns_test.cc: a real DNS server on a loopback port for re-resolution
  dnsmasq-base
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  # --no-install-recommends keeps the prometheus package from pulling in extras.
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

BUILD_DIR=${BUILD_DIR:-build}
# shellcheck disable=SC2086
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo ${CMAKE_ARGS:-} >/dev/null
if [ -n "${BUILD_TARGETS:-}" ]; then
  # shellcheck disable=SC2086
  cmake --build "$BUILD_DIR" -j"$(nproc)" --target ${BUILD_TARGETS}
else
  cmake --build "$BUILD_DIR" -j"$(nproc)"
fi
echo "setup: built into $BUILD_DIR/"
