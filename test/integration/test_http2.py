"""HTTP/2 through the real gateway: h2c with prior knowledge downstream (the
listener's `protocols`), HTTP/2 upstream (cluster `protocol: http2`), the
RFC 9113 rules the gateway enforces, its abuse limits (listener `http2:`),
flow control and GOAWAY on drain.

Clients are h2_test_lib.H2Client (h2's state machine, strict on what it
receives) and RawH2Conn (hand-built frames, for violations and floods).
"""

import os
import signal
import threading
import time
import zlib

import pytest

from h2_test_lib import (CANCEL, ENHANCE_YOUR_CALM, MAX_STREAM_ID, PREFACE, PROTOCOL_ERROR,
                         REFUSED_STREAM, SETTINGS_MAX_CONCURRENT_STREAMS, H2Client, RawH2Conn)
from portway_test_lib import (HttpConn, RssSampler, make_config, pattern_crc32, raw_request,
                              wait_until)

pytestmark = pytest.mark.gateway


def h2_config(endpoints, http2=None, protocols=None, cluster_protocol=None, routes=None,
              **kw):
    listener = dict(kw.pop("listener", {}))
    if protocols is not None:
        listener["protocols"] = protocols
    if http2 is not None:
        listener["http2"] = http2
    cluster_options = dict(kw.pop("cluster_options", {}))
    if cluster_protocol is not None:
        cluster_options["protocol"] = cluster_protocol
    return make_config(endpoints, listener=listener, cluster_options=cluster_options,
                       routes=routes, **kw)


def http2_stat(gw, name):
    return gw.stat(f"portway_http2_{name}_total", listener="edge")


def assert_serves_new_connection(gw):
    with H2Client(gw.port) as c:
        r = c.response(c.request("GET", "/echo"))
    assert r.status == 200 and r.clean, r


# --------------------------------------------------------------------------- h2c -> HTTP/1.1


def test_h2c_get_reaches_http11_origin_as_http11(origin, make_gateway):
    gw = make_gateway(h2_config([origin.address]))
    with H2Client(gw.port) as c:
        r = c.response(c.request("GET", "/echo?x=1", headers=[("x-client", "h2")],
                                 authority="app.example:8080"))
    assert r.status == 200 and r.clean, r
    assert r.header("content-type") == "application/json"
    seen = origin.requests
    assert len(seen) == 1
    req = seen[0]
    assert req.version == "HTTP/1.1" and req.method == "GET" and req.target == "/echo?x=1"
    assert req.header("host") == "app.example:8080"
    assert req.header("x-client") == "h2"
    assert not any(n.startswith(":") for n, _ in req.headers), req.headers
    assert r.json()["target"] == "/echo?x=1"


def test_h2c_post_with_content_length_reaches_origin(origin, make_gateway):
    gw = make_gateway(h2_config([origin.address]))
    body = b"hello from h2 " * 100
    with H2Client(gw.port) as c:
        r = c.response(c.request("POST", "/echo", headers=[("content-length", str(len(body)))],
                                 body=body))
    assert r.status == 200 and r.clean, r
    req = origin.requests[0]
    assert req.method == "POST" and req.body == body
    assert req.header("content-length") == str(len(body))
    assert r.json()["body"] == body.decode()


def test_h2c_post_without_content_length_reaches_origin_framed(origin, make_gateway):
    gw = make_gateway(h2_config([origin.address]))
    body = b"".join(b"%05d," % i for i in range(20000))   # 120 000 bytes, several DATA frames
    with H2Client(gw.port) as c:
        r = c.response(c.request("POST", "/sink", body=body), timeout=10)
    assert r.status == 200 and r.clean, r
    assert r.json() == {"bytes": len(body), "crc32": zlib.crc32(body)}
    req = origin.requests[0]
    # Without a content-length the gateway frames the body for HTTP/1.1 itself.
    assert (req.header("transfer-encoding", "").lower() == "chunked"
            or req.header("content-length") == str(len(body))), req.headers


def test_h2c_client_gets_status_headers_and_body(origin, make_gateway):
    origin.handlers["/teapot"] = lambda ctx: (ctx.send_response(
        418, [("X-Tea", "earl grey"), ("Content-Type", "text/plain")], b"short and stout"), True)[1]
    gw = make_gateway(h2_config([origin.address]))
    with H2Client(gw.port) as c:
        r = c.response(c.request("GET", "/teapot"))
    assert r.status == 418 and r.clean, r
    assert r.header("x-tea") == "earl grey"
    assert bytes(r.body) == b"short and stout"


def test_hop_by_hop_response_headers_are_not_sent_over_h2(origin, make_gateway):
    # H2Client validates inbound headers: a connection-specific field in the
    # response would raise in h2 before this test's asserts.
    gw = make_gateway(h2_config([origin.address]))
    with H2Client(gw.port) as c:
        r = c.response(c.request("GET", "/hop-by-hop"))
    assert r.status == 200 and r.clean, r
    names = {n for n, _ in r.headers}
    assert not names & {"connection", "keep-alive", "proxy-connection", "upgrade",
                        "transfer-encoding", "x-origin-hop"}, r.headers
    assert r.header("x-end-to-end") == "kept"


def test_http11_still_served_on_the_same_port(origin, make_gateway):
    gw = make_gateway(h2_config([origin.address], protocols=["http1", "http2"]))
    with HttpConn(gw.port) as c:
        r = c.roundtrip("GET", "/echo")
    assert r.status == 200 and r.version == "HTTP/1.1"
    with H2Client(gw.port) as c:
        assert c.response(c.request("GET", "/echo")).status == 200
    assert len(origin.requests) == 2


def test_http1_only_listener_refuses_the_h2_preface(origin, make_gateway):
    gw = make_gateway(h2_config([origin.address], protocols=["http1"]))
    # Whatever comes back is an HTTP/1 error and the end of the connection.
    got = raw_request(gw.port, PREFACE, read_timeout=3.0)
    assert got.closed
    if got:
        r = got.response()
        assert r.status is not None and r.status >= 400, bytes(got[:200])
    assert origin.all_requests == [] and origin.connections_accepted == 0
    with HttpConn(gw.port) as c:
        assert c.roundtrip("GET", "/echo").status == 200


# --------------------------------------------------------------------------- streams


def test_fifty_concurrent_streams_are_answered_independently(origin, make_gateway):
    gw = make_gateway(h2_config([origin.address]))
    with H2Client(gw.port, timeout=15) as c:
        sids = {}
        for i in range(50):
            body = f"body-{i}-".encode() * (i + 1)
            sid = c.request("POST", f"/echo/{i}", headers=[("x-index", str(i))], body=body)
            sids[sid] = (i, body)
        c.read_until(lambda: all(c.streams[s].done for s in sids), timeout=15,
                     what="50 streams to end")
    for sid, (i, body) in sids.items():
        r = c.streams[sid]
        assert r.status == 200 and r.clean, r
        data = r.json()
        assert data["path"] == f"/echo/{i}" and data["body"] == body.decode()
        assert ["x-index", str(i)] in [[n.lower(), v] for n, v in data["headers"]]
    assert len(origin.requests) == 50
    gw.wait_stat("portway_http2_streams_total", 50, listener="edge")


def test_max_concurrent_streams_is_advertised(origin, make_gateway):
    gw = make_gateway(h2_config([origin.address], http2={"max_concurrent_streams": 5}))
    with RawH2Conn(gw.port) as rc:
        settings = rc.wait_settings()
    assert settings.get(SETTINGS_MAX_CONCURRENT_STREAMS) == 5, settings


def test_stream_over_acknowledged_max_concurrent_streams_ends_the_connection(origin, make_gateway):
    # RFC 9113 5.1.2 lets the endpoint choose; nghttp2 treats a client that
    # exceeds a limit it has acknowledged as broken (connection error
    # PROTOCOL_ERROR). The extra stream never reaches the origin.
    gw = make_gateway(h2_config([origin.address], http2={"max_concurrent_streams": 5}))
    with RawH2Conn(gw.port, timeout=10) as rc:
        rc.wait_settings()
        first = [rc.send_request("GET", "/delay/1") for _ in range(5)]
        origin.wait_for_requests(5)
        extra = rc.send_request("GET", "/echo")
        rc.read(lambda: rc.goaways, timeout=6)
    assert rc.goaways and rc.goaways[-1].error_code == PROTOCOL_ERROR, rc.goaway_codes()
    assert rc.streams[extra].status is None
    assert [r.path for r in origin.requests] == ["/delay/1"] * 5
    assert http2_stat(gw, "goaway_sent") >= 1
    # The gateway serves the next connection.
    with H2Client(gw.port) as c:
        assert c.response(c.request("GET", "/echo")).status == 200


# --------------------------------------------------------------------------- RFC 9113 rules


def _pseudo(method="GET", path="/echo"):
    return [(":method", method), (":scheme", "http"), (":authority", "portway.test"),
            (":path", path)]


MALFORMED_REQUESTS = {
    "missing_path": [(":method", "GET"), (":scheme", "http"), (":authority", "portway.test")],
    "missing_method": [(":scheme", "http"), (":authority", "portway.test"), (":path", "/echo")],
    "uppercase_header_name": _pseudo() + [("X-Upper", "1")],
    "connection_header": _pseudo() + [("connection", "keep-alive")],
    "transfer_encoding_header": _pseudo() + [("transfer-encoding", "chunked")],
    "keep_alive_header": _pseudo() + [("keep-alive", "timeout=5")],
    "upgrade_header": _pseudo() + [("upgrade", "websocket")],
    "te_other_than_trailers": _pseudo() + [("te", "gzip")],
    "pseudo_header_after_regular_header": [(":method", "GET"), (":scheme", "http"),
                                           ("x-early", "1"), (":authority", "portway.test"),
                                           (":path", "/echo")],
}


def assert_refused(rc, sid):
    r = rc.streams.get(sid)
    refused = (r is not None and (r.reset_code is not None or (r.status == 400)))
    refused = refused or bool(rc.goaways) or rc.closed
    assert refused, f"stream not refused: {r!r} goaways={rc.goaway_codes()}"
    assert not (r is not None and r.status is not None and 200 <= r.status < 300), r
    if r is not None and r.reset_code is not None:
        assert r.reset_code == PROTOCOL_ERROR, r


@pytest.mark.parametrize("case", sorted(MALFORMED_REQUESTS))
def test_malformed_request_is_refused_and_not_forwarded(case, origin, make_gateway):
    gw = make_gateway(h2_config([origin.address]))
    with RawH2Conn(gw.port) as rc:
        rc.send_headers(1, MALFORMED_REQUESTS[case])
        rc.read(lambda: rc.streams[1].done or bool(rc.goaways), timeout=3)
        assert_refused(rc, 1)
    time.sleep(0.2)
    assert origin.all_requests == [], origin.all_requests
    assert_serves_new_connection(gw)


def test_te_trailers_is_accepted(origin, make_gateway):
    gw = make_gateway(h2_config([origin.address]))
    with RawH2Conn(gw.port) as rc:
        rc.send_headers(1, _pseudo() + [("te", "trailers")])
        r = rc.response(1, timeout=5)
    assert r.status == 200 and r.clean, r


def test_body_shorter_than_content_length_is_refused(origin, make_gateway):
    gw = make_gateway(h2_config([origin.address]))
    with RawH2Conn(gw.port) as rc:
        rc.send_headers(1, _pseudo("POST") + [("content-length", "10")], end_stream=False)
        rc.send_frames(rc.data_frame(1, b"12345", end_stream=True))
        rc.read(lambda: rc.streams[1].done or bool(rc.goaways), timeout=3)
        r = rc.streams[1]
        assert not (r.status == 200 and r.clean), r
        assert_refused(rc, 1)
    time.sleep(0.2)
    assert origin.requests == [], "the origin received a complete request"
    assert_serves_new_connection(gw)


def test_body_longer_than_content_length_is_refused(origin, make_gateway):
    gw = make_gateway(h2_config([origin.address]))
    with RawH2Conn(gw.port) as rc:
        rc.send_headers(1, _pseudo("POST") + [("content-length", "10")], end_stream=False)
        rc.send_frames(rc.data_frame(1, b"0123456789abcdefghij", end_stream=True))
        rc.read(lambda: rc.streams[1].done or bool(rc.goaways), timeout=3)
        r = rc.streams[1]
        assert not (r.status == 200 and r.clean), r
        assert_refused(rc, 1)
    time.sleep(0.2)
    assert all(req.body_len <= 10 for req in origin.all_requests), origin.all_requests
    assert_serves_new_connection(gw)


def test_oversized_header_block_is_refused_and_not_forwarded(origin, make_gateway):
    gw = make_gateway(h2_config([origin.address], http2={"max_header_list_bytes": 8192}))
    with RawH2Conn(gw.port) as rc:
        rc.wait_settings()
        rc.send_headers(1, _pseudo() + [(f"x-big-{i}", "v" * 1000) for i in range(16)])
        rc.read(lambda: rc.streams[1].done or bool(rc.goaways), timeout=3)
        r = rc.streams[1]
        refused = r.status == 431 or r.reset_code is not None or bool(rc.goaways) or rc.closed
        assert refused and not (r.status is not None and r.status < 300), (r, rc.goaway_codes())
    time.sleep(0.2)
    assert origin.all_requests == []
    assert http2_stat(gw, "header_overflow") >= 1
    assert_serves_new_connection(gw)


# --------------------------------------------------------------------------- HTTP/2 upstream


def test_request_trailers_reach_h2_origin(h2_origin, make_gateway):
    gw = make_gateway(h2_config([h2_origin.address], cluster_protocol="http2"))
    with H2Client(gw.port) as c:
        r = c.response(c.request("POST", "/echo", headers=[("te", "trailers")], body=b"payload",
                                 trailers=[("x-checksum", "abc123")]))
    assert r.status == 200 and r.clean, r
    [req] = h2_origin.requests
    assert bytes(req.body) == b"payload"
    assert req.trailer("x-checksum") == "abc123", req.trailers


def test_response_trailers_reach_h2_client(h2_origin, make_gateway):
    gw = make_gateway(h2_config([h2_origin.address], cluster_protocol="http2"))
    with H2Client(gw.port) as c:
        r = c.response(c.request("GET", "/echo?trailers=1", headers=[("te", "trailers")]))
    assert r.status == 200 and r.clean, r
    assert r.json()["path"] == "/echo?trailers=1"
    assert r.trailer("x-origin-trailer") == "done", r.trailers


def test_http11_client_through_h2_upstream(h2_origin, make_gateway):
    gw = make_gateway(h2_config([h2_origin.address], cluster_protocol="http2"))
    with HttpConn(gw.port) as c:
        r = c.roundtrip("POST", "/echo", headers=[("X-Client", "h1")], body=b"abc",
                        host="svc.example")
    assert r.status == 200 and r.complete, r
    data = r.json()
    assert data["method"] == "POST" and data["path"] == "/echo"
    assert data["authority"] == "svc.example"
    assert data["body"] == "abc"
    assert ["x-client", "h1"] in data["headers"]
    assert not h2_origin.protocol_errors, h2_origin.protocol_errors


def test_h2_upstream_multiplexes_on_one_connection(h2_origin, make_gateway):
    gw = make_gateway(h2_config([h2_origin.address], cluster_protocol="http2",
                                cluster_options={"http2": {"max_concurrent_streams": 100}}))
    with HttpConn(gw.port) as c:
        assert c.roundtrip("GET", "/echo").status == 200
    results = []

    def one(i):
        with HttpConn(gw.port, timeout=10) as c:
            for _ in range(2):
                results.append(c.roundtrip("GET", f"/delay/0.3?i={i}").status)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert results == [200] * 40, results
    assert h2_origin.connections_accepted == 1, h2_origin.connections_accepted
    assert len(h2_origin.requests) == 41


# --------------------------------------------------------------------------- abuse


def test_rapid_reset_gets_goaway_enhance_your_calm(origin, make_gateway):
    gw = make_gateway(h2_config([origin.address], http2={
        "stream_reset_burst": 10, "stream_reset_rate_per_second": 1}))
    with RawH2Conn(gw.port, timeout=5) as rc:
        rc.wait_settings()
        for _ in range(500):
            sid = rc.send_request("GET", "/delay/2")
            if not rc.send_frames(rc.rst_frame(sid, CANCEL)):
                break
            if sid % 20 == 1 and rc.read(lambda: bool(rc.goaways) or rc.closed, timeout=0.001):
                break
        assert rc.wait_goaway_or_close(5), "no GOAWAY after 500 opened-and-reset streams"
        assert rc.goaways, "closed without a GOAWAY"
        assert rc.goaway.error_code == ENHANCE_YOUR_CALM, rc.goaway_codes()
        assert sid < 2 * 200, f"the gateway let {sid // 2 + 1} resets through a burst of 10"
    # Counted on the worker as the connection ends, which may be a moment
    # after the client saw the GOAWAY (slow under sanitizers).
    assert wait_until(lambda: http2_stat(gw, "flood") >= 1, timeout=5)
    assert wait_until(lambda: http2_stat(gw, "rx_reset") >= 10, timeout=5)
    assert wait_until(lambda: http2_stat(gw, "goaway_sent") >= 1, timeout=5)
    assert_serves_new_connection(gw)


def test_continuation_flood_ends_the_connection(origin, make_gateway):
    gw = make_gateway(h2_config([origin.address]))
    sent = 0
    with RawH2Conn(gw.port, timeout=5) as rc:
        rc.wait_settings()
        rc.send_frames(rc.headers_frame(1, _pseudo(), end_headers=False))
        batch = rc.continuation_frame(1, b"").serialize() * 100
        while sent < 100000:
            if not rc.send_raw(batch):
                break
            sent += 100
            if rc.read(lambda: bool(rc.goaways) or rc.closed, timeout=0.001):
                break
        assert rc.wait_goaway_or_close(5), f"connection alive after {sent} CONTINUATION frames"
        if rc.goaways:
            assert rc.goaway.error_code in (ENHANCE_YOUR_CALM, PROTOCOL_ERROR), rc.goaway_codes()
    assert sent < 100000
    assert origin.all_requests == []
    assert http2_stat(gw, "flood") + http2_stat(gw, "header_overflow") >= 1
    assert_serves_new_connection(gw)


def test_ping_flood_without_reading_gets_goaway(origin, make_gateway):
    gw = make_gateway(h2_config([origin.address], http2={"max_outbound_control_frames": 50}))
    total = 200000
    with RawH2Conn(gw.port, timeout=3, rcvbuf=4096) as rc:
        rc.wait_settings()
        batch = rc.ping_frame(b"flood!!!").serialize() * 1000
        sent = 0
        while sent < total and rc.send_raw(batch):
            sent += 1000
        # Now read: the PING ACKs the gateway did write, then its GOAWAY
        # (or, if it had to cut the connection, the end of it).
        rc.auto_ping = False
        assert rc.read(lambda: bool(rc.goaways) or rc.closed, timeout=10), \
            "connection still open after the flood"
        acks = sum(1 for f in rc.frames if type(f).__name__ == "PingFrame")
        if rc.goaways:
            assert rc.goaway.error_code == ENHANCE_YOUR_CALM, rc.goaway_codes()
    assert acks < total, "every PING was answered: no flood limit"
    assert http2_stat(gw, "flood") >= 1
    assert_serves_new_connection(gw)


def test_empty_data_frame_flood_gets_goaway(origin, make_gateway):
    gw = make_gateway(h2_config([origin.address], http2={"max_empty_data_frames": 10}))
    with RawH2Conn(gw.port, timeout=5) as rc:
        rc.wait_settings()
        sid = rc.send_request("POST", "/sink", end_stream=False)
        rc.send_raw(rc.data_frame(sid, b"").serialize() * 50)
        assert rc.wait_goaway_or_close(5), "no GOAWAY after 50 empty DATA frames"
        assert rc.goaways, "closed without a GOAWAY"
        assert rc.goaway.error_code == ENHANCE_YOUR_CALM, rc.goaway_codes()
    assert http2_stat(gw, "flood") >= 1
    assert_serves_new_connection(gw)


# --------------------------------------------------------------------------- flow control


FLOW_BODY = 64 << 20
SETTINGS_INITIAL_WINDOW_SIZE = 0x4


def _hold_then_drain(gw, origin, c, hold):
    """Requests FLOW_BODY bytes, lets `hold(c, r)` stall the client, checks the
    origin is held back and the gateway's RSS stays flat, then reads the rest.
    Returns (response, bytes, crc, origin bytes sent while held, RSS growth
    while held, peak RSS growth) with RSS in KiB."""
    warm = c.request("GET", "/echo")
    c.response(warm)
    c.ack_all()
    baseline = gw.rss_kb()
    with RssSampler(gw) as rss:
        sid = c.request("GET", f"/bytes/{FLOW_BODY}")
        r = c.streams[sid]
        c.read_until(lambda: len(r.body) >= 60000, timeout=10, what="the first bytes")
        samples = [origin.body_bytes_sent]

        def plateaued():
            hold(c, r)
            samples.append(origin.body_bytes_sent)
            return samples[-1] == samples[-2]

        wait_until(plateaued, 20.0, interval=0, message="the origin to be held back")
        held = samples[-1]
        rss_held = gw.rss_kb() - baseline
        seen_while_held = len(r.body)
        c.auto_ack = True
        c.ack_all()
        crc = zlib.crc32(bytes(r.body))
        got = len(r.body)
        r.body = bytearray()

        def drained():
            nonlocal crc, got
            if r.body:
                crc = zlib.crc32(r.body, crc)
                got += len(r.body)
                r.body = bytearray()
            return r.done

        c.read_until(drained, timeout=120, what="the whole body")
        drained()
    return r, got, crc, held, rss_held, rss.max_kb - baseline, seen_while_held


def _flow_gateway(origin, make_gateway):
    return make_gateway(h2_config([origin.address], routes=[
        {"match": {"prefix": "/"}, "cluster": "backend", "timeout": "0s"}]))


def _assert_flow(r, got, crc, held, rss_held, rss_peak):
    assert r.status == 200 and r.clean, r
    assert got == FLOW_BODY and crc == pattern_crc32(FLOW_BODY)
    assert held < 40 << 20, (f"the origin sent {held >> 20} MiB of {FLOW_BODY >> 20} MiB while "
                             "the client was stalled: no back-pressure")
    assert rss_held < 8 * 1024, f"gateway RSS grew {rss_held} KiB while the client was stalled"
    if os.environ.get("PORTWAY_SANITIZED"):
        # ASan keeps freed memory in quarantine (256 MB): the peak says
        # nothing about Portway's buffering there.
        print(f"RSS peak not checked under a sanitizer ({rss_peak} KiB)")
        return
    assert rss_peak < 16 * 1024, f"gateway RSS peaked {rss_peak} KiB over its baseline"


def test_unread_response_is_not_buffered_by_the_gateway(origin, make_gateway):
    """The client reads the socket but grants no credit past the initial
    65 535-byte windows: the stream window must hold the origin back."""
    gw = _flow_gateway(origin, make_gateway)

    def hold(c, r):
        try:
            c.read_until(lambda: False, timeout=0.5)
        except TimeoutError:
            pass

    with H2Client(gw.port, timeout=60, auto_ack=False) as c:
        r, got, crc, held, rss_held, rss_peak, seen = _hold_then_drain(gw, origin, c, hold)
    assert seen <= 65535, f"the gateway sent {seen} bytes into a 65 535-byte window"
    _assert_flow(r, got, crc, held, rss_held, rss_peak)


def test_unread_socket_is_not_buffered_by_the_gateway(origin, make_gateway):
    """The client opens its windows wide (2^31-1) and then stops reading the
    socket: the gateway may not soak up what the socket will not take."""
    gw = _flow_gateway(origin, make_gateway)
    with H2Client(gw.port, timeout=60,
                  settings={SETTINGS_INITIAL_WINDOW_SIZE: MAX_STREAM_ID}) as c:
        c.conn.increment_flow_control_window(MAX_STREAM_ID - 65535)
        c.flush()
        r, got, crc, held, rss_held, rss_peak, _ = _hold_then_drain(
            gw, origin, c, lambda c, r: time.sleep(0.5))
    _assert_flow(r, got, crc, held, rss_held, rss_peak)


# --------------------------------------------------------------------------- drain


def _inflight_then_sigterm(origin, make_gateway):
    gw = make_gateway(h2_config([origin.address], drain_timeout="5s"))
    rc = RawH2Conn(gw.port, timeout=10)
    rc.wait_settings()
    sid = rc.send_request("GET", "/delay/1.5")
    origin.wait_for_requests(1)
    gw.send_signal(signal.SIGTERM)
    # A graceful GOAWAY may come first with the maximum stream id; wait for the
    # one that names the last stream the gateway will process.
    got = rc.read(lambda: any(g.last_stream_id < MAX_STREAM_ID for g in rc.goaways), timeout=3)
    return gw, rc, sid, got


def test_sigterm_sends_goaway_and_finishes_the_inflight_stream(origin, make_gateway):
    gw, rc, sid, got = _inflight_then_sigterm(origin, make_gateway)
    with rc:
        assert got, f"no final GOAWAY within 3s of SIGTERM; goaways {rc.goaway_codes()}"
        assert rc.goaway.error_code == 0 and rc.goaway.last_stream_id >= sid, rc.goaway
        r = rc.response(sid, timeout=5)
    assert r.status == 200 and r.clean and bytes(r.body) == b"delayed", r
    assert gw.wait_exit(6.0) == 0


def test_stream_opened_after_goaway_is_not_accepted(origin, make_gateway):
    gw, rc, sid, got = _inflight_then_sigterm(origin, make_gateway)
    with rc:
        assert got, "no final GOAWAY within 3s of SIGTERM"
        late = rc.send_request("GET", "/echo")
        assert late > rc.goaway.last_stream_id
        rc.read(lambda: rc.streams[sid].done and rc.streams[late].done, timeout=5)
        assert rc.streams[sid].status == 200
        late_r = rc.streams[late]
    assert late_r.status is None, late_r
    assert [r.path for r in origin.all_requests] == ["/delay/1.5"]
    assert gw.wait_exit(6.0) == 0


def test_http2_config_errors_have_paths():
    from portway_test_lib import run_validate
    r = run_validate({
        "listeners": [{"name": "edge", "address": "127.0.0.1:0",
                       "protocols": ["http2", "http2"],
                       "http2": {"max_header_list_bytes": 10, "initial_stream_window_bytes": 1},
                       "routes": [{"match": {"prefix": "/"}, "cluster": "b"}]}],
        "clusters": [{"name": "b", "endpoints": ["127.0.0.1:1"]},
                     {"name": "c", "protocol": "http2", "endpoints": ["127.0.0.1:1"],
                      "http2": {"initial_connection_window_bytes": 4294967295}}]})
    assert r.returncode != 0
    out = r.stdout + r.stderr
    for path in ("listeners[0].protocols[1]", "listeners[0].http2.max_header_list_bytes",
                 "listeners[0].http2.initial_stream_window_bytes",
                 "clusters[1].http2.initial_connection_window_bytes"):
        assert path in out, (path, out)
    r = run_validate({"clusters": [{"name": "b", "protocol": "http3",
                                    "endpoints": ["127.0.0.1:1"]}]})
    assert r.returncode != 0
    assert "clusters[0].protocol: unknown value 'http3'" in r.stdout + r.stderr


def test_access_log_names_the_protocol(origin, make_gateway):
    gw = make_gateway(h2_config([origin.address]))
    with H2Client(gw.port) as c:
        assert c.response(c.request("GET", "/echo")).status == 200
    assert raw_request(gw.port, b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    wait_until(lambda: '"GET /echo HTTP/2" 200' in gw.stdout_text()
               and '"GET /echo HTTP/1.1" 200' in gw.stdout_text(), timeout=5,
               message="both access log lines")


# --------------------------------------------------------------------------- review regressions

def _frame(ftype, flags, sid, payload=b""):
    import struct
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload


def _read_frames(sock, until, timeout=8.0):
    """Reads frames until until(frames) is true or the peer closes; returns
    (frames, closed). Each frame is (type, flags, stream id, payload)."""
    import socket as _socket
    frames, buf, closed = [], b"", False
    deadline = time.time() + timeout
    sock.settimeout(0.2)
    while time.time() < deadline and not until(frames):
        try:
            d = sock.recv(65535)
        except _socket.timeout:
            continue
        if not d:
            closed = True
            break
        buf += d
        while len(buf) >= 9:
            n = int.from_bytes(buf[:3], "big")
            if len(buf) < 9 + n:
                break
            frames.append((buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7fffffff,
                           buf[9:9 + n]))
            buf = buf[9 + n:]
    return frames, closed


def test_request_body_after_a_finished_response_is_dropped_safely(make_gateway):
    # The response (a direct reply) finishes while the request body is
    # still coming and the client's window holds the response back: the
    # stream outlives its request. Under ASan this was a use-after-free.
    import hpack, socket, struct
    routes = [{"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": "hello"}}]
    gw = make_gateway(make_config(None, routes=routes))
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
    s.sendall(PREFACE + _frame(4, 0, 0, struct.pack(">HI", 4, 0)))  # INITIAL_WINDOW_SIZE 0
    hb = hpack.Encoder().encode([(":method", "POST"), (":path", "/x"), (":scheme", "http"),
                                 (":authority", "a")])
    s.sendall(_frame(1, 0x4, 1, hb))
    _read_frames(s, lambda f: any(t == 1 and sid == 1 for t, _, sid, _ in f), timeout=3)
    for _ in range(5):
        s.sendall(_frame(0, 0, 1, b"y" * 1000))
    s.sendall(_frame(0, 0x1, 1, b"z"))
    time.sleep(0.3)
    # Open the window: the body arrives whole.
    s.sendall(_frame(4, 0, 0, struct.pack(">HI", 4, 65535)))
    frames, _ = _read_frames(s, lambda f: any(t == 0 and fl & 1 for t, fl, _, _ in f))
    assert b"".join(p for t, _, sid, p in frames if t == 0 and sid == 1) == b"hello"
    s.close()
    with H2Client(gw.port) as c:
        assert c.response(c.request("GET", "/")).status == 200


def _slow_origin(body_size):
    import socket
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)

    def serve():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return

            def answer(c=c):
                try:
                    c.recv(65535)
                    time.sleep(0.8)
                    c.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % body_size
                              + b"x" * body_size)
                    time.sleep(5)
                except OSError:
                    pass
            threading.Thread(target=answer, daemon=True).start()
    threading.Thread(target=serve, daemon=True).start()
    return srv


@pytest.mark.parametrize("how", ["sigterm", "client_goaway"])
def test_a_response_held_by_flow_control_is_not_cut_when_the_connection_closes(make_gateway, how):
    import hpack, socket, struct
    srv = _slow_origin(1000)
    try:
        gw = make_gateway(make_config([f"127.0.0.1:{srv.getsockname()[1]}"], drain_timeout="5s"))
        s = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
        s.sendall(PREFACE + _frame(4, 0, 0, struct.pack(">HI", 4, 100)))  # 100-byte windows
        hb = hpack.Encoder().encode([(":method", "GET"), (":path", "/big"), (":scheme", "http"),
                                     (":authority", "a")])
        s.sendall(_frame(1, 0x5, 1, hb))
        time.sleep(0.3)
        if how == "client_goaway":
            s.sendall(_frame(7, 0, 0, struct.pack(">II", 0, 0)))
        else:
            gw.proc.send_signal(signal.SIGTERM)
        got = {"body": 0, "end": False}

        def done(frames):
            for t, fl, sid, p in frames[done.seen:]:
                if t == 0 and sid == 1:
                    got["body"] += len(p)
                    got["end"] |= bool(fl & 1)
                    # Credit for the next 100 bytes, stream and connection.
                    s.sendall(_frame(8, 0, 1, struct.pack(">I", len(p)))
                              + _frame(8, 0, 0, struct.pack(">I", len(p))))
            done.seen = len(frames)
            return got["end"]
        done.seen = 0
        _read_frames(s, done, timeout=10)
        assert got == {"body": 1000, "end": True}
        s.close()
    finally:
        srv.close()


def test_pings_do_not_shorten_an_idle_http2_connection(origin, make_gateway):
    import socket, struct
    gw = make_gateway(h2_config([origin.address], listener={
        "timeouts": {"request_headers_timeout": "1s", "idle_timeout": "3s"}}))
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
    s.sendall(PREFACE + _frame(4, 0, 0))
    s.sendall(_frame(6, 0, 0, b"12345678"))  # PING
    t0 = time.time()
    frames, closed = _read_frames(s, lambda f: False, timeout=6)
    took = time.time() - t0
    assert closed, "idle connection never closed"
    assert took > 2.5, f"closed after {took:.2f}s: the request-headers timeout, not the idle one"
    # An idle close says goodbye: a final GOAWAY with NO_ERROR.
    goaways = [p for t, _, _, p in frames if t == 7]
    assert goaways and int.from_bytes(goaways[-1][4:8], "big") == 0


def test_an_http2_upstream_opens_connections_for_requests_its_limits_leave_waiting(make_gateway):
    from h2_test_lib import H2Origin
    import urllib.request
    o = H2Origin()
    o.start()
    try:
        gw = make_gateway(make_config([o.address], cluster_options={
            "protocol": "http2", "connection_pool": {"max_requests_per_connection": 1}}))
        took = []

        def get():
            t = time.time()
            with urllib.request.urlopen(f"http://127.0.0.1:{gw.port}/delay/0.5", timeout=20) as r:
                assert r.status == 200
            took.append(time.time() - t)
        threads = [threading.Thread(target=get) for _ in range(8)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        assert len(took) == 8 and max(took) < 0.95, took
    finally:
        o.stop()


def test_a_listener_removed_by_a_reload_sends_goaway_and_finishes_its_streams(origin,
                                                                                make_gateway):
    other = {"name": "other", "address": "127.0.0.1:0",
             "routes": [{"match": {"prefix": "/"}, "cluster": "backend"}]}
    config = h2_config([origin.address], extra_listeners=[other])
    gw = make_gateway(config)
    port = gw.listener_port("other")
    with RawH2Conn(port, timeout=10) as rc:
        rc.wait_settings()
        sid = rc.send_request("GET", "/delay/1")
        origin.wait_for_requests(1)
        gw.reload(h2_config([origin.address]))
        assert rc.read(lambda: any(g.last_stream_id < MAX_STREAM_ID for g in rc.goaways),
                       timeout=5), rc.goaway_codes()
        assert rc.goaway.error_code == 0 and rc.goaway.last_stream_id >= sid
        r = rc.response(sid, timeout=5)
    assert r.status == 200 and r.clean, r


# --------------------------------------------------------------------------- mutated frames

def test_mutated_frame_streams_never_take_the_gateway_down(origin, make_gateway):
    """A seeded soup of valid frames with bytes flipped, truncated, repeated
    and interleaved: whatever the codec makes of it, the gateway (under ASan
    in make test-asan) stays up and serves the next client. Not a fuzzer;
    a regression net for the codec's callbacks, reproducible by seed."""
    import hpack, random, socket, struct
    seed = int(os.environ.get("PORTWAY_H2_SOUP_SEED", "20261205"))
    rng = random.Random(seed)
    gw = make_gateway(h2_config([origin.address], http2={
        "max_concurrent_streams": 8, "max_header_list_bytes": 4096,
        "stream_reset_burst": 20, "max_empty_data_frames": 5}))
    enc = [hpack.Encoder()]

    def headers(sid, end, path="/echo"):
        block = enc[0].encode([(":method", rng.choice(["GET", "POST", "HEAD"])), (":path", path),
                            (":scheme", "http"), (":authority", "a"),
                            ("x-n", str(rng.randrange(1000)))])
        return _frame(1, 0x4 | (0x1 if end else 0), sid, block)

    def soup():
        enc[0] = hpack.Encoder()  # a connection's own HPACK state
        frames = [_frame(4, 0, 0, struct.pack(">HI", 4, rng.choice([0, 100, 65535])))]
        sid = 1
        for _ in range(rng.randrange(1, 30)):
            kind = rng.randrange(9)
            if kind == 0:
                frames.append(headers(sid, True))
                sid += 2
            elif kind == 1:
                frames.append(headers(sid, False))
                frames.append(_frame(0, rng.choice([0, 1]), sid, b"x" * rng.randrange(0, 300)))
                sid += 2
            elif kind == 2:
                frames.append(_frame(3, 0, max(1, sid - 2), struct.pack(">I", rng.randrange(14))))
            elif kind == 3:
                frames.append(_frame(8, 0, rng.choice([0, max(1, sid - 2)]),
                                     struct.pack(">I", rng.randrange(1, 1 << 20))))
            elif kind == 4:
                frames.append(_frame(6, 0, 0, bytes(8)))
            elif kind == 5:
                frames.append(_frame(9, rng.choice([0, 4]), max(1, sid - 2),
                                     bytes(rng.randrange(20))))
            elif kind == 6:
                frames.append(_frame(rng.randrange(0, 12), rng.randrange(256),
                                     rng.randrange(0, 12), bytes(rng.randrange(30))))
            elif kind == 7:
                frames.append(_frame(1, 0x5, sid, bytes(rng.randrange(1, 40))))
                sid += 2
            else:
                frames.append(_frame(7, 0, 0, struct.pack(">II", sid, rng.randrange(14))))
        data = bytearray(PREFACE + b"".join(frames))
        for _ in range(rng.randrange(0, 4)):
            i = rng.randrange(len(PREFACE), len(data))
            data[i] = rng.randrange(256)
        if rng.random() < 0.2:
            data = data[:rng.randrange(len(PREFACE), len(data) + 1)]
        return bytes(data)

    for i in range(150):
        s = socket.create_connection(("127.0.0.1", gw.port), timeout=2)
        try:
            data = soup()
            cut = rng.randrange(len(data) + 1)
            s.sendall(data[:cut])
            s.sendall(data[cut:])
            s.settimeout(0.1)
            try:
                while s.recv(65536):
                    pass
            except OSError:
                pass
        finally:
            s.close()
        assert gw.proc.poll() is None, f"gateway died at case {i} (seed {seed})"
    # The soup reached the origin too, not only the codec's error paths.
    assert len(origin.all_requests) > 10, len(origin.all_requests)
    print(f"seed {seed}: the origin saw {len(origin.all_requests)} requests")
    with H2Client(gw.port) as c:
        assert c.response(c.request("GET", "/echo")).status == 200
