"""Self-tests of the HTTP/2 and gRPC test helpers (h2_test_lib, grpc_test_lib)
against each other, nghttpd and a plain grpc server; no gateway needed."""

import shutil
import socket
import subprocess
import time

import grpc
import pytest

from grpc_test_lib import (ECHO_INITIAL_KEY, GRPC_REQUEST_HEADERS, SLEEP_MS_KEY, channel,
                           grpc_frame)
from h2_test_lib import (CANCEL, ENHANCE_YOUR_CALM, INTERNAL_ERROR, PROTOCOL_ERROR,
                         SETTINGS_MAX_CONCURRENT_STREAMS, H2Client, H2Reply, RawH2Conn)
from portway_test_lib import closed_port, pattern_bytes, wait_until


# --------------------------------------------------------------------------- H2Origin + clients


def test_h2_origin_echoes_body_and_trailers_both_ways(h2_origin):
    with H2Client(h2_origin.port) as c:
        r = c.response(c.request("POST", "/echo?trailers=1", headers=[("x-a", "1")],
                                 body=b"hello", trailers=[("x-t", "v")]))
    assert r.status == 200 and r.clean
    data = r.json()
    assert data["body"] == "hello" and data["trailers"] == [["x-t", "v"]]
    assert ["x-a", "1"] in data["headers"] and data["authority"] == "portway.test"
    assert r.trailers == [("x-origin-trailer", "done"), ("x-echo-x-t", "v")]
    assert h2_origin.requests[0].trailer("x-t") == "v"


def test_h2_origin_serves_concurrent_streams_and_delays_independently(h2_origin):
    with H2Client(h2_origin.port) as c:
        slow = c.request("GET", "/delay/0.5")
        fast = [c.request("GET", f"/bytes/{100000 + i}") for i in range(10)]
        t0 = time.monotonic()
        c.read_until(lambda: all(c.streams[s].done for s in fast), what="fast streams")
        assert time.monotonic() - t0 < 0.4
        assert not c.streams[slow].done
        assert bytes(c.response(slow).body) == b"delayed"
    for i, s in enumerate(fast):
        assert bytes(c.streams[s].body) == pattern_bytes(100000 + i)
    assert h2_origin.connections_accepted == 1


def test_client_without_acks_holds_the_origin_to_the_window(h2_origin):
    with H2Client(h2_origin.port, auto_ack=False) as c:
        sid = c.request("GET", f"/bytes/{4 << 20}")
        r = c.streams[sid]
        c.read_until(lambda: len(r.body) >= 65535, what="the first window")
        time.sleep(0.3)
        try:
            c.read_until(lambda: False, timeout=0.3)
        except TimeoutError:
            pass
        assert len(r.body) == 65535 and h2_origin.body_bytes_sent == 65535
        c.auto_ack = True
        c.ack_all()
        c.response(sid, timeout=10)
    assert r.clean and bytes(r.body) == pattern_bytes(4 << 20)


def test_raw_conn_sends_headers_exactly_as_given(h2_origin):
    # h2 (the origin's stack) refuses an uppercase field name: the raw
    # client did not normalize it.
    with RawH2Conn(h2_origin.port) as rc:
        rc.send_headers(1, [(":method", "GET"), (":scheme", "http"), (":authority", "a"),
                            (":path", "/echo"), ("X-Upper", "1")])
        rc.read(lambda: bool(rc.goaways) or rc.streams[1].done, timeout=3)
    assert h2_origin.protocol_errors or rc.goaways or rc.streams[1].reset_code == PROTOCOL_ERROR


def test_raw_conn_reads_responses_trailers_and_trailers_only(h2_origin):
    h2_origin.handlers["/only"] = lambda req: H2Reply(200, [("grpc-status", "12")], body=None)
    with RawH2Conn(h2_origin.port) as rc:
        a = rc.send_request("POST", "/echo?trailers=1", body=b"xyz")
        b = rc.send_request("GET", "/bytes/300000")
        ra, rb = rc.response(a), rc.response(b)
        assert rc.remote_settings
    assert ra.json()["body"] == "xyz" and ra.trailer("x-origin-trailer") == "done"
    assert rb.clean and bytes(rb.body) == pattern_bytes(300000)
    with H2Client(h2_origin.port) as c:
        r = c.response(c.request("GET", "/only"))
    assert r.clean and r.trailers_only and r.header("grpc-status") == "12"
    with H2Client(h2_origin.port) as c:
        r = c.response(c.request("GET", "/status/201"))
    assert r.clean and not r.trailers_only


# --------------------------------------------------------------------------- abuse clients vs nghttpd


@pytest.fixture
def nghttpd(tmp_path):
    exe = shutil.which("nghttpd")
    if exe is None:
        pytest.fail("nghttpd not found: apt-get install -y nghttp2-server (scripts/deps.sh test)")
    (tmp_path / "index.html").write_text("hi\n")
    port = closed_port()
    proc = subprocess.Popen([exe, "--no-tls", "-m", "3", "-d", str(tmp_path), str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def up():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            return False

    try:
        wait_until(up, 5.0, message="nghttpd to listen")
        yield port
    finally:
        proc.terminate()
        proc.wait(5)


def test_raw_conn_sees_the_peer_advertised_limit(nghttpd):
    with RawH2Conn(nghttpd) as rc:
        assert rc.wait_settings().get(SETTINGS_MAX_CONCURRENT_STREAMS) == 3


def test_rapid_reset_client_trips_nghttp2(nghttpd):
    with RawH2Conn(nghttpd) as rc:
        rc.wait_settings()
        for _ in range(3000):
            sid = rc.send_request("GET", "/index.html", end_stream=False)
            if not rc.send_frames(rc.rst_frame(sid, CANCEL)):
                break
        assert rc.wait_goaway_or_close(5)
    # nghttp2's own rapid-reset guard answers INTERNAL_ERROR.
    assert rc.goaway_codes() and rc.goaway_codes()[-1] in (INTERNAL_ERROR, ENHANCE_YOUR_CALM)


def test_ping_flood_client_trips_nghttp2(nghttpd):
    with RawH2Conn(nghttpd, timeout=3, rcvbuf=4096) as rc:
        rc.wait_settings()
        batch = rc.ping_frame(b"flood!!!").serialize() * 1000
        for _ in range(200):
            if not rc.send_raw(batch):
                break
        rc.auto_ping = False
        assert rc.read(lambda: bool(rc.goaways) or rc.closed, timeout=10)
    acks = sum(1 for f in rc.frames if type(f).__name__ == "PingFrame")
    assert acks < 200000


def test_continuation_flood_client_trips_nghttp2(nghttpd):
    with RawH2Conn(nghttpd) as rc:
        rc.wait_settings()
        rc.send_frames(rc.headers_frame(1, [(":method", "GET"), (":scheme", "http"),
                                            (":authority", "a"), (":path", "/")],
                                        end_headers=False))
        for _ in range(1000):
            if not rc.send_raw(rc.continuation_frame(1, b"").serialize() * 100):
                break
            if rc.read(lambda: bool(rc.goaways) or rc.closed, timeout=0.001):
                break
        assert rc.wait_goaway_or_close(5)


# --------------------------------------------------------------------------- gRPC


def test_grpc_stubs_and_server_answer_directly(grpc_stubs, make_grpc_server):
    srv = make_grpc_server()
    m = grpc_stubs.messages_pb2
    with channel(srv.port) as ch:
        stub = grpc_stubs.test_pb2_grpc.TestServiceStub(ch)
        resp, call = stub.UnaryCall.with_call(m.SimpleRequest(response_size=7), timeout=5,
                                              metadata=[(ECHO_INITIAL_KEY, "v")])
        assert len(resp.payload.body) == 7
        assert dict(call.initial_metadata())[ECHO_INITIAL_KEY] == "v"
        health = grpc_stubs.health_pb2_grpc.HealthStub(ch)
        assert health.Check(grpc_stubs.health_pb2.HealthCheckRequest(), timeout=5).status == 1
        with pytest.raises(grpc.RpcError) as info:
            stub.UnaryCall(m.SimpleRequest(), timeout=0.3, metadata=[(SLEEP_MS_KEY, "2000")])
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    rec = srv.calls_to("UnaryCall")[-1]
    wait_until(lambda: rec.cancelled_at is not None, 3.0, message="cancellation recorded")


def test_failing_grpc_server_answers_trailers_only(grpc_stubs, make_grpc_server):
    srv = make_grpc_server("bad", fail_with=grpc.StatusCode.UNAVAILABLE)
    with H2Client(srv.port) as c:
        r = c.response(c.request("POST", "/grpc.testing.TestService/EmptyCall",
                                 headers=GRPC_REQUEST_HEADERS, body=grpc_frame(b"")))
    assert r.clean and r.trailers_only and r.header("grpc-status") == "14", r
