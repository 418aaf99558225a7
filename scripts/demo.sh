#!/usr/bin/env bash
# Sets everything up, then runs connwatchd on the embedded demo: the test peer
# cycles its connections through hold, FIN, RST, refused and recovery, and
# connwatchd reports each as it happens. Ctrl-C stops both.
#   Events:   printed below as they happen
#   Metrics:  curl -s localhost:9798/metrics | grep connwatch_target
#   API:      curl -s localhost:9798/api/v1/targets
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_TARGETS="connwatchd connwatch-peer" scripts/setup.sh
BUILD_DIR=${BUILD_DIR:-build}

"$BUILD_DIR/connwatch-peer" --demo --phase 4s \
  --listen 127.0.0.1:17001 --listen 127.0.0.1:17002 &
demo_peer=$!
"$BUILD_DIR/connwatch-peer" --mode echo --heartbeat 'PING\r\n=+PONG\r\n' \
  --listen 127.0.0.1:17003 &
echo_peer=$!
trap 'kill $demo_peer $echo_peer 2>/dev/null || true' EXIT

# The demo's state (counters, last reasons, history, events) survives a
# restart of the demo in $BUILD_DIR/demo-state; rm -r it to start afresh.
mkdir -p "$BUILD_DIR/demo-state"
echo "demo: connwatchd on http://127.0.0.1:9798/ (metrics at /metrics, targets at /api/v1/targets)"
"$BUILD_DIR/connwatchd" --config.file=config/demo.yaml --web.listen-address=127.0.0.1:9798 \
  --web.enable-lifecycle --storage.path="$BUILD_DIR/demo-state"
