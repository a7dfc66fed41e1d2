#!/usr/bin/env bash
# `make run`: the demo origin on 127.0.0.1:8080 and Portway on
# examples/quickstart/portway.yaml (listener 127.0.0.1:10000, admin
# 127.0.0.1:9901). Ctrl-C stops both: the gateway drains (requests in flight
# finish), then the origin stops. A second Ctrl-C stops the gateway at once.
#
# Usage: run-quickstart.sh [PORTWAY_BINARY [PORTWAY ARGS...]]
# Env:   PORTWAY_QUICKSTART_CONFIG       another config (the tests use port 0)
#        PORTWAY_QUICKSTART_ORIGIN_PORT  the demo origin's port (default 8080)
#
# Why the care: a non-interactive bash starts background jobs with SIGINT
# ignored, so the terminal's Ctrl-C never reaches the origin; only this
# script can stop it. The cleanup therefore runs on every way out (Ctrl-C,
# SIGTERM, the gateway failing to start) and never lets `set -e` cut it
# short: a failing `kill` or `wait` inside a trap would end the shell before
# the origin is stopped.
set -euo pipefail
bin=${1:-build/bin/portway}
[ $# -gt 0 ] && shift
here=$(cd "$(dirname "$0")/.." && pwd)
config=${PORTWAY_QUICKSTART_CONFIG:-$here/examples/quickstart/portway.yaml}
origin_port=${PORTWAY_QUICKSTART_ORIGIN_PORT:-8080}
python=/usr/bin/python3
[ -x "$python" ] || python=python3

origin=""
gw=""

# Stops the gateway (SIGTERM: it drains), waits for it, then stops the
# origin. Runs once; a signal arriving meanwhile (a second Ctrl-C) kills the
# gateway instead of waiting out its drain.
cleanup() {
  trap - EXIT
  trap 'hurry' INT TERM
  if [ -n "$gw" ]; then
    kill -TERM "$gw" 2>/dev/null || true
    # `wait` returns early when a trapped signal arrives; keep waiting until
    # the gateway is really gone.
    while kill -0 "$gw" 2>/dev/null; do wait "$gw" 2>/dev/null || true; done
  fi
  if [ -n "$origin" ]; then
    kill -TERM "$origin" 2>/dev/null || true
    wait "$origin" 2>/dev/null || true
  fi
}
hurry() {
  [ -n "$gw" ] && { kill -KILL "$gw" 2>/dev/null || true; }
  [ -n "$origin" ] && { kill -TERM "$origin" 2>/dev/null || true; }
}
# On a signal: clean up, then die of that same signal, so whoever started
# the script (make, a shell) sees it was interrupted.
on_signal() {
  cleanup
  trap - "$1"
  kill -s "$1" $$
  case $1 in INT) exit 130 ;; *) exit 143 ;; esac  # if the signal is ignored
}
trap cleanup EXIT
trap 'on_signal INT' INT
trap 'on_signal TERM' TERM

"$python" "$here/examples/quickstart/demo_origin.py" "$origin_port" &
origin=$!
echo "demo origin on 127.0.0.1:$origin_port; portway on $config"
echo "(the shipped config: listener 127.0.0.1:10000, admin 127.0.0.1:9901)"
echo "try: curl -i http://127.0.0.1:10000/   Ctrl-C stops both"
"$bin" -c "$config" "$@" &
gw=$!
status=0
wait "$gw" || status=$?
gw=""
exit "$status"
