"""Bodies stream through the gateway with back-pressure (bounded memory) and
truncated upstream bodies reach the client as truncations."""

import os
import socket
import threading
import time
import zlib

import pytest

from portway_test_lib import (ConnectionClosed, HttpConn, RssSampler, build_request, make_config,
                              iter_pattern, pattern_crc32, wait_until)

pytestmark = pytest.mark.gateway

BIG = os.environ.get("PORTWAY_BIG") == "1"
SIZE = (1 << 30) if BIG else (256 << 20)   # 1 GiB with PORTWAY_BIG=1, else 256 MiB
MAX_RSS_GROWTH_KB = 64 * 1024               # "a few MB" with a generous margin
TRANSFER_TIMEOUT = 300.0 if BIG else 120.0


class Crc:
    def __init__(self):
        self.crc = 0
        self.n = 0

    def __call__(self, mv):
        self.crc = zlib.crc32(mv, self.crc)
        self.n += len(mv)


@pytest.fixture
def stream_gw(origin, make_gateway):
    return make_gateway(make_config([origin.address], routes=[
        {"match": {"prefix": "/"}, "cluster": "backend", "timeout": "0s"}]))


def _send_pattern(sock, n):
    sock.settimeout(60.0)
    for piece in iter_pattern(n, 65536):
        sock.sendall(piece)


def test_large_upload_streams_with_bounded_memory(stream_gw, origin):
    expected_crc = pattern_crc32(SIZE)
    with HttpConn(stream_gw.port, timeout=TRANSFER_TIMEOUT) as c:
        assert c.roundtrip("POST", "/sink", body=b"warm-up").status == 200
        baseline = stream_gw.rss_kb()
        with RssSampler(stream_gw) as rss:
            c.send(build_request("POST", "/sink", headers=[("Content-Length", str(SIZE))]))
            _send_pattern(c.sock, SIZE)
            r = c.read_response(timeout=TRANSFER_TIMEOUT)
    assert r.status == 200, r
    assert r.json() == {"bytes": SIZE, "crc32": expected_crc}
    growth = rss.max_kb - baseline
    assert growth < MAX_RSS_GROWTH_KB, (
        f"gateway RSS grew {growth} KiB (baseline {baseline} KiB, peak {rss.max_kb} KiB, "
        f"{rss.samples} samples) while streaming {SIZE >> 20} MiB up")


def test_large_download_with_slow_reader_has_bounded_memory(stream_gw, origin):
    expected_crc = pattern_crc32(SIZE)
    with HttpConn(stream_gw.port, timeout=TRANSFER_TIMEOUT) as c:
        assert c.roundtrip("GET", "/echo").status == 200
        baseline = stream_gw.rss_kb()
        crc = Crc()
        with RssSampler(stream_gw) as rss:
            c.request("GET", f"/bytes/{SIZE}")
            head = c.read_head(timeout=10.0)
            assert head.status == 200 and head.header("content-length") == str(SIZE)
            c.read_body_stream(1 << 20, crc, timeout=10.0)
            # The client stops reading: the origin must soon be unable to send more.
            samples = [origin.body_bytes_sent]

            def plateaued():
                time.sleep(0.3)
                samples.append(origin.body_bytes_sent)
                return samples[-1] == samples[-2]

            wait_until(plateaued, 10.0, interval=0)
            sent_while_paused = samples[-1]
            rss_while_paused = stream_gw.rss_kb()
            c.read_body_stream(SIZE - crc.n, crc, timeout=TRANSFER_TIMEOUT)
    assert crc.n == SIZE and crc.crc == expected_crc
    assert sent_while_paused < 64 << 20, (
        f"origin could send {sent_while_paused >> 20} MiB while the client read 1 MiB: "
        "the gateway is not applying back-pressure")
    assert rss_while_paused - baseline < MAX_RSS_GROWTH_KB
    growth = rss.max_kb - baseline
    assert growth < MAX_RSS_GROWTH_KB, (
        f"gateway RSS grew {growth} KiB (baseline {baseline} KiB, peak {rss.max_kb} KiB) "
        f"while streaming {SIZE >> 20} MiB down")


def test_chunked_upload_reaches_origin_intact(stream_gw):
    n = 32 << 20
    with HttpConn(stream_gw.port, timeout=60.0) as c:
        c.send(build_request("POST", "/sink", headers=[("Transfer-Encoding", "chunked")]))
        c.sock.settimeout(60.0)
        for piece in iter_pattern(n, 65536):
            c.sock.sendall(b"%x\r\n" % len(piece) + bytes(piece) + b"\r\n")
        c.send(b"0\r\n\r\n")
        r = c.read_response(timeout=60.0)
    assert r.json() == {"bytes": n, "crc32": pattern_crc32(n)}


def test_chunked_download_reaches_client_intact(stream_gw):
    n = 8 << 20
    with HttpConn(stream_gw.port, timeout=60.0) as c:
        r = c.roundtrip("GET", f"/chunked/{n}", timeout=60.0)
    assert r.status == 200 and r.complete
    assert len(r.body) == n and zlib.crc32(r.body) == pattern_crc32(n)


def test_upload_is_forwarded_before_it_is_complete(stream_gw, origin):
    total, first = 8 << 20, 2 << 20
    with HttpConn(stream_gw.port, timeout=30.0) as c:
        c.send(build_request("POST", "/sink", headers=[("Content-Length", str(total))]))
        _send_pattern(c.sock, first)
        try:
            wait_until(lambda: origin.bytes_received >= first // 2, 5.0)
        except TimeoutError:
            pytest.fail(f"origin got only {origin.bytes_received} bytes of the first "
                        f"{first} sent: the gateway buffers request bodies")
        rest = b"".join(bytes(p) for p in iter_pattern(total))[first:]
        c.sock.sendall(rest)
        r = c.read_response(timeout=30.0)
    assert r.json() == {"bytes": total, "crc32": pattern_crc32(total)}


def test_download_is_forwarded_before_origin_finishes(stream_gw, origin):
    release = threading.Event()
    total, first = 2 << 20, 1 << 20
    body = b"".join(bytes(p) for p in iter_pattern(total))

    def handler(ctx):
        ctx.send_raw(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % total + body[:first])
        release.wait(10.0)
        ctx.send_raw(body[first:])
        return True

    origin.handlers["/held"] = handler
    crc = Crc()
    with HttpConn(stream_gw.port, timeout=15.0) as c:
        c.request("GET", "/held")
        try:
            head = c.read_head(timeout=5.0)
            c.read_body_stream(first, crc, timeout=5.0)
        finally:
            release.set()
        assert head.status == 200
        c.read_body_stream(total - first, crc, timeout=10.0)
    assert crc.n == total and crc.crc == zlib.crc32(body)


def _assert_truncated(port, target):
    with HttpConn(port, timeout=10.0) as c:
        c.request("GET", target)
        try:
            r = c.read_response(timeout=5.0)
        except ConnectionClosed:
            return  # closed before anything: not a complete message either
        except TimeoutError:
            pytest.fail("the gateway neither completed nor closed the truncated response")
        assert not r.complete, f"client saw a complete message for a truncated body: {r!r}"
        assert c.eof


def test_truncated_content_length_body_reaches_client_truncated(stream_gw):
    _assert_truncated(stream_gw.port, "/truncate-cl")


def test_truncated_chunked_body_reaches_client_truncated(stream_gw):
    _assert_truncated(stream_gw.port, "/truncate-chunked")


def test_gateway_serves_new_requests_after_truncation(stream_gw):
    _assert_truncated(stream_gw.port, "/truncate-cl")
    with HttpConn(stream_gw.port) as c:
        assert c.roundtrip("GET", "/echo").status == 200


def test_close_delimited_response_is_complete_for_slow_http10_client(stream_gw):
    # An HTTP/1.0 client gets a chunked upstream body re-framed as
    # close-delimited: the end of the body is the close. Reading slowly keeps
    # bytes queued in Portway when it decides to close, and every one of them
    # must still arrive before the FIN.
    size = 4 << 20
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # A small receive window keeps the kernel from absorbing the whole body.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    sock.settimeout(60)
    sock.connect(("127.0.0.1", stream_gw.port))
    try:
        sock.sendall(build_request("GET", f"/chunked/{size}", version="HTTP/1.0"))
        time.sleep(1.0)  # let the origin finish while nobody reads
        data = bytearray()
        while True:
            chunk = sock.recv(16384)
            if not chunk:
                break
            data += chunk
            time.sleep(0.002)  # a slow reader to the end: buffers stay full
    finally:
        sock.close()
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200"), head[:100]
    assert b"transfer-encoding" not in head.lower()
    assert len(body) == size, f"got {len(body)} of {size} body bytes before the close"
    assert zlib.crc32(body) == pattern_crc32(size)


def test_early_response_survives_client_still_sending(make_gateway):
    # A direct response to a large upload goes out before the body is read,
    # and Portway closes the connection. Closing with unread input must not
    # reset the connection before the client has the response.
    gw = make_gateway(make_config([], routes=[
        {"match": {"prefix": "/"}, "direct_response": {"status": 403, "body": "denied"}}]))
    sock = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
    received = bytearray()
    try:
        sock.sendall(build_request("POST", "/upload",
                                   headers=[("Content-Length", str(64 << 20))]))
        sock.settimeout(0.05)
        sent = 0
        piece = b"x" * 65536
        deadline = time.monotonic() + 10
        # Keep sending (as a client uploading would) while reading.
        while time.monotonic() < deadline:
            try:
                sent += sock.send(piece)
            except (BlockingIOError, socket.timeout):
                pass
            except (BrokenPipeError, ConnectionResetError):
                break
            try:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
            except socket.timeout:
                pass
            except ConnectionResetError:
                break
            if b"denied" in received:
                break
    finally:
        sock.close()
    assert received.startswith(b"HTTP/1.1 403"), bytes(received[:200])
    assert received.endswith(b"denied"), bytes(received[-200:])
