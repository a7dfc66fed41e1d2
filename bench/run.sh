#!/usr/bin/env bash
# Side-by-side benchmark: Portway vs nginx vs HAProxy, plus Portway with a
# filter chain (portway+chain) against bare Portway (see bench/README.md).
#
#   bench/run.sh [--only portway,portway+chain,portway+cache,nginx,nginx+cache,haproxy]
#                [--rows h1,h2,tls,cache,work]
#                [--loadgen h2load|wrk]
#
# Environment: BENCH_ROUNDS (default 5), BENCH_QUICK=1 (one round, smaller
# counts: a smoke test), BENCH_CHAIN=0 (skip portway+chain), BENCH_H2=0 (skip
# the HTTP/2 rows), BENCH_TLS=0 (skip the TLS rows), BENCH_CACHE=0 (skip the
# cache rows), BENCH_WORK=0 (skip the workload rows: 20 headers, 1,000 routes,
# 1 MiB body, 10,000 idle connections), BENCH_ROWS / --rows
# h1,h2,tls,cache,work (which row groups; e.g. --rows tls for the TLS rows
# alone), PORTWAY_BIN
# (default build/bin/portway), BENCH_PROXY_CPU / BENCH_LOAD_CPU (default 0 / 1).
#
# Installs nothing: if a tool is missing it prints the apt-get line and exits 1.
# Everything runs on 127.0.0.1 with bounded request counts; every process it
# starts is killed on exit.
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

missing=()
need() { command -v "$1" >/dev/null 2>&1 || missing+=("$2"); }
need nginx nginx
need haproxy haproxy
need h2load nghttp2-client
need nghttpd nghttp2-server  # the h2c origin of the HTTP/2 upstream rows
need wrk wrk
need openssl openssl  # the TLS rows' certificate and checks
need valgrind valgrind
need callgrind_control valgrind
need perf linux-perf
need taskset util-linux
[ -x /usr/bin/python3 ] || missing+=(python3)
if [ ${#missing[@]} -gt 0 ]; then
    pkgs=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
    echo "bench: missing tools. Install them with:" >&2
    echo "  apt-get install -y ${pkgs% }" >&2
    exit 1
fi
if [ "$(nproc)" -lt 2 ]; then
    echo "bench: warning: fewer than 2 CPUs; proxy and load generator will share one" >&2
fi

# 10,000 idle connections (the workload rows) plus load: raise the descriptor
# limit for us and for the proxies we start. idle_conns.py holds 10,000
# client sockets and the proxy 10,000 plus its upstream ones and listeners.
want=16384
cur=$(ulimit -n)
if [ "$cur" != unlimited ] && [ "$cur" -lt "$want" ]; then
    hard=$(ulimit -Hn)
    if [ "$hard" != unlimited ] && [ "$hard" -lt "$want" ]; then
        ulimit -Hn "$want" 2>/dev/null || want=$hard
    fi
    ulimit -n "$want" 2>/dev/null || echo "bench: warning: could not raise ulimit -n to $want" >&2
fi

BENCH_TMP=$(mktemp -d "${TMPDIR:-/tmp}/portway-bench.XXXXXX")
export BENCH_TMP
py_pid=""
cleanup() {
    # bench.py stops its own children; this is the safety net for a hard
    # kill of bench.py: kill the process groups it recorded, by id.
    [ -n "$py_pid" ] && kill "$py_pid" 2>/dev/null && wait "$py_pid" 2>/dev/null
    if [ -f "$BENCH_TMP/pids" ]; then
        while read -r pid; do
            kill -KILL -- "-$pid" 2>/dev/null
        done < "$BENCH_TMP/pids"
    fi
    rm -rf "$BENCH_TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

/usr/bin/python3 "$here/bench.py" "$@" &
py_pid=$!
wait "$py_pid"
rc=$?
py_pid=""
[ $rc -ne 0 ] && exit $rc
# The control plane: push-to-live time for 1 / 1,000 / 10,000 clusters and
# RSS per cluster (BENCH_CP=0 skips it).
if [ "${BENCH_CP:-1}" != 0 ]; then
    /usr/bin/python3 "$here/control_plane.py" &
    py_pid=$!
    wait "$py_pid"
    rc=$?
    py_pid=""
fi
exit $rc
