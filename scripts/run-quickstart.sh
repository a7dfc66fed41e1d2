#!/usr/bin/env bash
# `make run`: the demo origin on 127.0.0.1:8080 and Portway on
# examples/quickstart/portway.yaml (listener 127.0.0.1:10000, admin
# 127.0.0.1:9901). Ctrl-C stops both.
set -euo pipefail
bin=${1:-build/bin/portway}
here=$(cd "$(dirname "$0")/.." && pwd)
python=/usr/bin/python3
[ -x "$python" ] || python=python3
"$python" "$here/examples/quickstart/demo_origin.py" 8080 &
origin=$!
trap 'kill $origin 2>/dev/null || true' EXIT
echo "demo origin on 127.0.0.1:8080; portway on 127.0.0.1:10000, admin on 127.0.0.1:9901"
echo "try: curl -i http://127.0.0.1:10000/"
"$bin" -c "$here/examples/quickstart/portway.yaml" &
gw=$!
trap 'kill $gw 2>/dev/null; wait $gw 2>/dev/null; kill $origin 2>/dev/null || true' EXIT INT TERM
wait $gw
