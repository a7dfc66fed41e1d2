"""Regressions found in review: each reproduces a bug that once existed in
the data path (see the commit that fixed it)."""

import socket
import threading
import time

import pytest

from portway_test_lib import (HttpConn, build_request, closed_port, make_config, raw_request,
                              wait_until)

pytestmark = pytest.mark.gateway


def test_bytes_after_a_response_never_reach_the_next_request(origin, make_gateway):
    # The origin sends a second, unrequested response in the same write.
    def poison(ctx):
        ctx.send_raw(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                     b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nPOISON")
        return True
    origin.handlers["/poison"] = poison
    gw = make_gateway(make_config([origin.address]))
    with HttpConn(gw.port) as a:
        assert a.roundtrip("GET", "/poison").body == b"ok"
    time.sleep(0.1)
    with HttpConn(gw.port) as b:
        r = b.roundtrip("GET", "/echo")
    assert r.status == 200 and b"POISON" not in r.body


def test_unsolicited_bytes_on_an_idle_upstream_connection_retire_it(origin, make_gateway):
    def then_junk(ctx):
        ctx.send_response(200, body=b"clean")
        threading.Timer(0.05, lambda: ctx.send_raw(b"junk")).start()
        return True
    origin.handlers["/junk"] = then_junk
    gw = make_gateway(make_config([origin.address], listener={
        "timeouts": {"stream_idle_timeout": "3s"}}))
    with HttpConn(gw.port) as c:
        assert c.roundtrip("GET", "/junk").status == 200
    time.sleep(0.2)
    start = time.monotonic()
    with HttpConn(gw.port) as c:
        r = c.roundtrip("GET", "/echo")
    assert r.status == 200 and time.monotonic() - start < 1.0


def test_pipelined_requests_answered_locally_are_all_answered(make_gateway):
    gw = make_gateway(make_config([], routes=[
        {"match": {"path": "/hello"}, "direct_response": {"status": 200, "body": "hi"}}]))
    req = build_request("GET", "/hello") + build_request("GET", "/nope") + build_request(
        "GET", "/hello")
    raw = raw_request(gw.port, req, read_timeout=2.0)
    assert raw.count(b"HTTP/1.1 200") == 2 and raw.count(b"HTTP/1.1 404") == 1, raw


def test_every_waiting_request_gets_an_answer_after_connect_failures(make_gateway):
    gw = make_gateway(make_config([f"127.0.0.1:{closed_port()}"], cluster_options={
        "connection_pool": {"max_connections": 1}}, listener={
        "timeouts": {"stream_idle_timeout": "5s"}}))
    results = []

    def one():
        with HttpConn(gw.port, timeout=5.0) as c:
            r = c.roundtrip("GET", "/x")
            results.append((r.status, r.header("x-portway-error")))

    threads = [threading.Thread(target=one) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(6)
    assert results == [(502, "upstream_connect_refused")] * 3


def test_cut_close_delimited_body_ends_in_a_reset_for_http10(origin, make_gateway):
    def cut(ctx):
        ctx.send_raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3e8\r\n" + b"x" * 1000
                     + b"\r\n")
        time.sleep(0.1)
        ctx.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        ctx.sock.close()
        return False
    origin.handlers["/cut"] = cut
    gw = make_gateway(make_config([origin.address]))
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
    s.sendall(build_request("GET", "/cut", version="HTTP/1.0"))
    data = b""
    reset = False
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except ConnectionResetError:
        reset = True
    s.close()
    # A FIN would make the 1000 bytes look like the whole body.
    assert data.startswith(b"HTTP/1.0 200")
    assert reset, "a cut close-delimited body ended with a clean FIN"


def test_connect_is_refused_with_501(origin, make_gateway):
    gw = make_gateway(make_config([origin.address]))
    raw = raw_request(gw.port, b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
                      read_timeout=2.0)
    assert raw.startswith(b"HTTP/1.1 501")
    assert b"x-portway-error: connect_not_supported" in raw
    assert origin.all_requests == []


def test_large_buffered_upload_arrives_exactly_once(origin, make_gateway):
    # A body larger than what one write takes goes out whole, once.
    size = 4 << 20
    gw = make_gateway(make_config([origin.address], listener={
        "limits": {"buffer_limit_bytes": 8 << 20}}))
    with HttpConn(gw.port, timeout=30) as c:
        r = c.roundtrip("POST", "/sink", body=b"y" * size)
    assert r.status == 200
    assert r.json()["bytes"] == size
