#!/usr/bin/env bash
# Helper for the varnishtest conformance scripts (see README.md).
#
#   start_portway.sh run   DIR BIN PORT ORIGIN_ADDR ORIGIN_PORT
#       Writes DIR/portway.yaml (listener 127.0.0.1:PORT -> cluster with the
#       single endpoint ORIGIN_ADDR:ORIGIN_PORT, admin on port 0, access log
#       off) and execs the gateway in the foreground with --workers 1.  Meant
#       to be run by a vtc `process` so varnishtest owns (and kills) it.
#       The gateway's stdout/stderr go to DIR/portway.log.
#
#   start_portway.sh wait  DIR PORT
#       Waits (<= 10 s) until the admin address file exists, GET /ready is
#       200 and GET /listeners reports the listener on 127.0.0.1:PORT.  On
#       failure prints the reason and the gateway's log; if the listener
#       port was taken by someone else it prints PORTWAY_PORT_IN_USE so the
#       runner can retry the test with another port.
#
#   start_portway.sh check DIR
#       Asserts the gateway is still alive and ready (used at the end of a
#       test: a malformed request must not take the gateway down).
set -u

cmd=${1:-}
shift || true

admin_get() { # admin_get DIR PATH -> prints "CODE BODY"
    local addr
    addr=$(cat "$1/admin-address" 2>/dev/null) || return 1
    [ -n "$addr" ] || return 1
    curl -s -m 2 -o "$1/admin-body" -w '%{http_code}' "http://$addr$2" 2>/dev/null || return 1
}

show_log() {
    echo "---- portway.log (tail) ----"
    tail -n 40 "$1/portway.log" 2>/dev/null || echo "(no log)"
    echo "----------------------------"
}

case "$cmd" in
run)
    [ $# -eq 5 ] || { echo "usage: $0 run DIR BIN PORT ORIGIN_ADDR ORIGIN_PORT" >&2; exit 2; }
    dir=$1 bin=$2 port=$3 oaddr=$4 oport=$5
    if [ ! -x "$bin" ]; then
        echo "start_portway: gateway binary not found or not executable: $bin" | tee "$dir/portway.log" >&2
        exit 127
    fi
    cat > "$dir/portway.yaml" <<YAML
admin: { address: 127.0.0.1:0 }
access_log: { path: "off" }
listeners:
  - name: edge
    address: 127.0.0.1:$port
    routes:
      - match: { prefix: / }
        cluster: backend
clusters:
  - name: backend
    endpoints: [$oaddr:$oport]
    connect_timeout: 1s
YAML
    rm -f "$dir/admin-address"
    echo $$ > "$dir/portway.pid"
    exec "$bin" -c "$dir/portway.yaml" --workers 1 \
        --admin-address-path "$dir/admin-address" >> "$dir/portway.log" 2>&1
    ;;
wait)
    [ $# -eq 2 ] || { echo "usage: $0 wait DIR PORT" >&2; exit 2; }
    dir=$1 port=$2
    pid=$(cat "$dir/portway.pid" 2>/dev/null || true)
    for _ in $(seq 1 200); do       # 200 x 50 ms = 10 s
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
            echo "start_portway: the gateway exited before it was ready"
            if grep -qi -E "address already in use|EADDRINUSE" "$dir/portway.log" 2>/dev/null; then
                echo "PORTWAY_PORT_IN_USE port=$port"
            fi
            show_log "$dir"
            exit 1
        fi
        [ -z "$pid" ] && pid=$(cat "$dir/portway.pid" 2>/dev/null || true)
        code=$(admin_get "$dir" /ready) || code=000
        if [ "$code" = 200 ]; then
            code=$(admin_get "$dir" /listeners) || code=000
            if [ "$code" = 200 ] && grep -q "127.0.0.1:$port\"" "$dir/admin-body"; then
                echo "portway ready: listener 127.0.0.1:$port, admin $(cat "$dir/admin-address")"
                exit 0
            fi
        fi
        sleep 0.05
    done
    echo "start_portway: gateway not ready after 10 s (last /ready or /listeners status: $code)"
    cat "$dir/admin-body" 2>/dev/null; echo
    if grep -qi -E "address already in use|EADDRINUSE" "$dir/portway.log" 2>/dev/null; then
        echo "PORTWAY_PORT_IN_USE port=$port"
    fi
    show_log "$dir"
    exit 1
    ;;
check)
    [ $# -eq 1 ] || { echo "usage: $0 check DIR" >&2; exit 2; }
    dir=$1
    code=$(admin_get "$dir" /ready) || code=000
    if [ "$code" != 200 ]; then
        echo "start_portway: gateway no longer ready after the test (GET /ready -> $code)"
        show_log "$dir"
        exit 1
    fi
    echo "portway still ready"
    ;;
*)
    echo "usage: $0 run|wait|check ..." >&2
    exit 2
    ;;
esac
