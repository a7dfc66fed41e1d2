#!/usr/bin/python3
"""RSS per idle keep-alive connection.

Opens N connections to 127.0.0.1:PORT one after another; on each it sends one
GET, reads the whole response and leaves the connection open and idle.
Reports the VmRSS of process PID before and after, as JSON on stdout.

Connections are opened sequentially so the proxy needs a single upstream
connection: the delta is the cost of idle downstream connections only.
"""
import argparse
import json
import select
import socket
import sys
import time


def vmrss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def get(sock):
    sock.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("connection closed before the response head")
        buf += chunk
    head, body = buf.split(b"\r\n\r\n", 1)
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("connection closed inside the response body")
        body += chunk
    return status


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("-n", type=int, default=1000)
    # Past Portway's idle release (1 s after a connection's last response it
    # gives back its buffers' storage and HTTP/1 codec): the reading is what
    # a connection idle for a while holds, for every proxy alike.
    ap.add_argument("--settle", type=float, default=2.0)
    a = ap.parse_args()

    addr = ("127.0.0.1", a.port)
    # Warm-up on a throw-away connection: lets the proxy open its upstream
    # connection and touch its request path before the baseline.
    with socket.create_connection(addr, timeout=10) as s:
        for _ in range(5):
            if get(s) != 200:
                raise SystemExit("warm-up request failed")
    time.sleep(a.settle)
    before = vmrss_kb(a.pid)

    conns = []
    bad = 0
    t0 = time.monotonic()
    for _ in range(a.n):
        s = socket.create_connection(addr, timeout=10)
        if get(s) != 200:
            bad += 1
        conns.append(s)
    open_secs = time.monotonic() - t0
    time.sleep(a.settle)
    after = vmrss_kb(a.pid)

    # Every connection must still be open (a proxy that closed idle
    # connections would look cheap). poll, not select: descriptors past
    # 1023 (thousands of connections) are out of select's range.
    poller = select.poll()
    by_fd = {s.fileno(): s for s in conns}
    for fd in by_fd:
        poller.register(fd, select.POLLIN)
    readable = [by_fd[fd] for fd, _ in poller.poll(0)]
    closed = 0
    for s in readable:
        try:
            if s.recv(1, socket.MSG_PEEK) == b"":
                closed += 1
        except OSError:
            closed += 1
    for s in conns:
        s.close()
    json.dump({
        "connections": a.n,
        "non_200": bad,
        "closed_by_peer": closed,
        "rss_before_kb": before,
        "rss_after_kb": after,
        "bytes_per_connection": (after - before) * 1024 / a.n,
        "open_seconds": round(open_secs, 3),
    }, sys.stdout)
    print()


if __name__ == "__main__":
    main()
