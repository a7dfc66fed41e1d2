#!/usr/bin/env bash
# Runs every HTTP/1 conformance script (*.vtc) in this directory, or the ones
# given as arguments, against the Portway binary, one varnishtest invocation
# per script. See README.md.
#
#   test/conformance/run.sh [--bin PATH] [--keep] [FILE.vtc ...]
#
#   --bin PATH   gateway binary (default: $PORTWAY_BIN, else build/bin/portway)
#   --keep       keep varnishtest's temporary directories of failed tests (-l)
#
# Prints one line per script and ends with "N passed, M failed"; exits 1 if
# any script failed, 2 on a usage or set-up error.
set -u

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=${PORTWAY_BIN:-$root/build/bin/portway}
keep=""
files=()
while [ $# -gt 0 ]; do
    case "$1" in
    --bin) bin=$2; shift 2 ;;
    --bin=*) bin=${1#--bin=}; shift ;;
    --keep) keep="-l"; shift ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    -*) echo "unknown option: $1" >&2; exit 2 ;;
    *) files+=("$1"); shift ;;
    esac
done
[ ${#files[@]} -eq 0 ] && files=("$here"/*.vtc)

missing=()
command -v varnishtest >/dev/null || missing+=(varnish)
command -v curl >/dev/null || missing+=(curl)
[ -x /usr/bin/python3 ] || missing+=(python3)
if [ ${#missing[@]} -gt 0 ]; then
    echo "missing tools; install with: apt-get install -y ${missing[*]}" >&2
    exit 2
fi
case "$bin" in /*) ;; *) bin=$(pwd)/$bin ;; esac
if [ ! -x "$bin" ]; then
    echo "portway binary not found: $bin (build it first, or pass --bin / PORTWAY_BIN)" >&2
    exit 2
fi

free_port() {
    /usr/bin/python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

logdir=$(mktemp -d "${TMPDIR:-/tmp}/portway-conformance.XXXXXX")
passed=0 failed=0
failed_names=()
for f in "${files[@]}"; do
    name=$(basename "$f" .vtc)
    log="$logdir/$name.log"
    # The listener port is reserved here (bind port 0, release) and handed to
    # the gateway; if someone grabs it in between, start_portway.sh prints
    # PORTWAY_PORT_IN_USE and the script is retried with a fresh port.
    for attempt in 1 2 3; do
        port=$(free_port)
        start=$(date +%s.%N)
        varnishtest -v -j1 -t 30 $keep \
            -Dportway_bin="$bin" -Dportway_port="$port" \
            -Dportway_sock="127.0.0.1 $port" "$f" > "$log" 2>&1
        rc=$?
        secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
        if [ $rc -ne 0 ] && grep -q PORTWAY_PORT_IN_USE "$log" && [ $attempt -lt 3 ]; then
            echo "retry $name: listener port $port was taken"
            continue
        fi
        break
    done
    if [ $rc -eq 0 ]; then
        passed=$((passed + 1))
        printf 'PASS  %-45s %5ss\n' "$name" "$secs"
    else
        failed=$((failed + 1))
        failed_names+=("$name")
        printf 'FAIL  %-45s %5ss  (log: %s)\n' "$name" "$secs" "$log"
        # The first failing line says why; the full log is kept.
        grep -m 3 -E '^-{4} ' "$log" | sed 's/^/      /'
    fi
done

if [ $failed -eq 0 ]; then
    rm -rf "$logdir"
else
    echo "failed: ${failed_names[*]}"
    echo "logs: $logdir"
fi
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
