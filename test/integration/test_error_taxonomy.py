"""Every locally generated response: its status, its x-portway-error cause, its
counter in /stats, and (for downstream errors) that nothing reached the origin."""

import time

import pytest

from portway_test_lib import (Blackhole, HttpConn, build_request, chunked_body, closed_port,
                              make_cluster, make_config, raw_request, run_in_thread, wait_until)

pytestmark = pytest.mark.gateway

LOCAL_REPLIES = "portway_local_replies_total"


def assert_local_reply(gw, resp, status, cause, counter_causes=None):
    """resp carries status + x-portway-error: cause, and the local-reply counter
    for the cause went to exactly 1. Downstream protocol errors may be counted
    under their own name or under "downstream_protocol_error"."""
    assert resp.status == status, resp
    assert resp.header("x-portway-error") == cause, resp
    causes = counter_causes or [cause]

    def count():
        return sum(gw.stat(LOCAL_REPLIES, listener="edge", cause=c) for c in causes)

    try:
        wait_until(lambda: count() >= 1, 3.0, interval=0.05)
    except TimeoutError:
        raise AssertionError(f"{LOCAL_REPLIES}{{listener=edge,cause in {causes}}} never counted; "
                             f"series: {gw.stats().series(LOCAL_REPLIES)}") from None
    assert count() == 1, gw.stats().series(LOCAL_REPLIES)


def _get(gw, target, timeout=10.0, **kw):
    with HttpConn(gw.port, timeout=timeout) as c:
        return c.roundtrip("GET", target, **kw)


# --------------------------------------------------------------------------- upstream side


def test_connect_refused_is_502(make_gateway):
    gw = make_gateway(make_config([f"127.0.0.1:{closed_port()}"]))
    assert_local_reply(gw, _get(gw, "/"), 502, "upstream_connect_refused")
    gw.wait_stat("portway_upstream_connect_failures_total", 1, cluster="backend")


def test_connect_timeout_is_504(make_gateway):
    with Blackhole() as bh:
        if not bh.ok:
            pytest.skip("cannot make a loopback port that drops SYNs on this kernel "
                        "(full accept queue is not dropping); no connect timeout to provoke")
        gw = make_gateway(make_config([bh.address], cluster_options={"connect_timeout": "0.5s"}))
        t0 = time.monotonic()
        r = _get(gw, "/")
        elapsed = time.monotonic() - t0
        assert_local_reply(gw, r, 504, "upstream_connect_timeout")
        assert 0.4 <= elapsed < 4.0, elapsed


def test_reset_before_response_is_502(proxy, origin):
    assert_local_reply(proxy, _get(proxy, "/reset"), 502, "upstream_reset_before_response")
    assert origin.wait_for_requests(1)


def test_close_before_response_is_502(proxy, origin):
    assert_local_reply(proxy, _get(proxy, "/close"), 502, "upstream_reset_before_response")


def test_malformed_status_line_is_502(proxy):
    assert_local_reply(proxy, _get(proxy, "/malformed"), 502, "upstream_malformed_response")


def test_malformed_response_closes_upstream_connection(proxy, origin):
    _get(proxy, "/malformed")
    [req] = origin.wait_for_requests(1)
    conn = origin.connection(req.conn_id)
    assert conn.closed.wait(3.0), "gateway kept the upstream connection after a malformed response"
    assert conn.closed_by == "peer"


@pytest.mark.parametrize("kind", ["space", "cr", "cr-value"])
def test_invalid_response_header_is_502(proxy, kind):
    r = _get(proxy, f"/bad-header?kind={kind}")
    assert_local_reply(proxy, r, 502, "upstream_malformed_response")


def test_invalid_response_header_closes_upstream_connection(proxy, origin):
    _get(proxy, "/bad-header")
    [req] = origin.wait_for_requests(1)
    assert origin.connection(req.conn_id).closed.wait(3.0)


def test_dns_failure_is_502(make_gateway):
    gw = make_gateway(make_config(["nonexistent.invalid:80"], cluster_options={"type": "dns"}))
    r = _get(gw, "/")
    assert_local_reply(gw, r, 502, "upstream_dns_failure")


def test_route_timeout_is_504(origin, make_gateway):
    gw = make_gateway(make_config([origin.address], routes=[
        {"match": {"prefix": "/"}, "cluster": "backend", "timeout": "0.5s"}]))
    t0 = time.monotonic()
    r = _get(gw, "/delay/5")
    elapsed = time.monotonic() - t0
    assert_local_reply(gw, r, 504, "upstream_timeout")
    assert 0.4 <= elapsed < 3.0, elapsed


def test_route_timeout_closes_upstream_connection(origin, make_gateway):
    gw = make_gateway(make_config([origin.address], routes=[
        {"match": {"prefix": "/"}, "cluster": "backend", "timeout": "0.5s"}]))
    _get(gw, "/delay/5")
    [conn] = origin.connections
    assert conn.closed.wait(2.0), "the stalled upstream request was not abandoned"


def test_no_endpoints_is_503(make_gateway):
    gw = make_gateway(make_config([]))
    assert_local_reply(gw, _get(gw, "/"), 503, "no_healthy_upstream")


def test_pool_overflow_is_503(origin, make_gateway):
    gw = make_gateway(make_config([origin.address], cluster_options={
        "connection_pool": {"max_connections": 1, "max_pending_requests": 1}}), workers=1)
    conns = [HttpConn(gw.port, timeout=10.0) for _ in range(3)]
    try:
        for i, c in enumerate(conns):
            c.request("GET", "/delay/1")
            if i == 0:
                origin.wait_for_requests(1)  # the only connection is now busy
        responses = [c.read_response(timeout=10.0) for c in conns]
    finally:
        for c in conns:
            c.close()
    statuses = sorted(r.status for r in responses)
    overflow = [r for r in responses if r.status == 503]
    assert overflow, statuses
    assert 200 in statuses, statuses
    assert all(r.header("x-portway-error") == "upstream_overflow" for r in overflow), overflow
    gw.wait_stat(LOCAL_REPLIES, len(overflow), listener="edge", cause="upstream_overflow")
    assert origin.connections_accepted == 1


def test_no_route_is_404(origin, make_gateway):
    gw = make_gateway(make_config([origin.address], routes=[
        {"match": {"path": "/only"}, "cluster": "backend"}]))
    assert_local_reply(gw, _get(gw, "/other"), 404, "no_route")
    assert origin.requests == []


# --------------------------------------------------------------------------- downstream side
# Each raw request is only a head (no body the gateway would leave unread), so
# the gateway's close after its reply is a clean FIN and the reply is not lost
# to an RST.

DOWNSTREAM_CASES = [
    # id, raw request, status, cause
    ("content-length-not-a-number",
     b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n",
     400, "invalid_content_length"),
    ("content-length-negative",
     b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
     400, "invalid_content_length"),
    ("content-length-conflicting",
     b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
     400, "invalid_content_length"),
    ("content-length-and-transfer-encoding",
     b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
     400, "content_length_and_transfer_encoding"),
    ("missing-host",
     b"GET /echo HTTP/1.1\r\nUser-Agent: t\r\n\r\n",
     400, "missing_host"),
    ("obsolete-line-folding",
     b"GET /echo HTTP/1.1\r\nHost: a\r\nX-Folded: first\r\n  second\r\n\r\n",
     400, "obsolete_line_folding"),
    ("space-in-header-name",
     b"GET /echo HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n",
     400, "invalid_header_name"),
    ("space-before-colon",
     b"GET /echo HTTP/1.1\r\nHost: a\r\nX-Foo : x\r\n\r\n",
     400, "invalid_header_name"),
    ("request-line-garbage",
     b"this is not http\r\n\r\n",
     400, "bad_request_line"),
    ("request-line-extra-token",
     b"GET /echo HTTP/1.1 extra\r\nHost: a\r\n\r\n",
     400, "bad_request_line"),
    ("request-line-bad-method",
     b"G(T /echo HTTP/1.1\r\nHost: a\r\n\r\n",
     400, "bad_request_line"),
    ("unsupported-transfer-encoding",
     b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
     501, "unsupported_transfer_encoding"),
]


def assert_rejected_downstream(gw, origin, raw, status, cause, read_timeout=5.0):
    r = raw_request(gw.port, raw, read_timeout=read_timeout)
    assert r, f"no response at all (closed={r.closed})"
    resp = r.response()
    assert_local_reply(gw, resp, status, cause,
                       counter_causes=[cause, "downstream_protocol_error"]
                       if cause not in ("request_header_timeout", "payload_too_large") else None)
    assert r.closed, "the gateway kept the connection open after a protocol error"
    assert origin.all_requests == [] and origin.bytes_received == 0, \
        f"origin saw {origin.all_requests} ({origin.bytes_received} bytes)"
    return r


@pytest.mark.parametrize("raw,status,cause", [c[1:] for c in DOWNSTREAM_CASES],
                         ids=[c[0] for c in DOWNSTREAM_CASES])
def test_downstream_protocol_error(proxy, origin, raw, status, cause):
    assert_rejected_downstream(proxy, origin, raw, status, cause)


def test_request_line_too_long_is_414(origin, make_gateway):
    gw = make_gateway(make_config([origin.address],
                                  listener={"limits": {"max_request_line_bytes": 1024}}))
    raw = build_request("GET", "/echo?" + "a" * 2000, host="a")
    assert_rejected_downstream(gw, origin, raw, 414, "uri_too_long")


def test_request_line_within_limit_is_proxied(origin, make_gateway):
    gw = make_gateway(make_config([origin.address],
                                  listener={"limits": {"max_request_line_bytes": 1024}}))
    r = _get(gw, "/echo?" + "a" * 900)
    assert r.status == 200


def test_headers_too_large_is_431(origin, make_gateway):
    gw = make_gateway(make_config([origin.address],
                                  listener={"limits": {"max_header_bytes": 2048}}))
    raw = build_request("GET", "/echo", headers=[("X-Big", "b" * 3000)], host="a")
    assert_rejected_downstream(gw, origin, raw, 431, "headers_too_large")


def test_too_many_headers_is_431(origin, make_gateway):
    gw = make_gateway(make_config([origin.address], listener={"limits": {"max_headers": 10}}))
    raw = build_request("GET", "/echo", headers=[(f"X-H{i}", "v") for i in range(20)], host="a")
    assert_rejected_downstream(gw, origin, raw, 431, "too_many_headers")


def test_headers_at_count_limit_are_proxied(origin, make_gateway):
    gw = make_gateway(make_config([origin.address], listener={"limits": {"max_headers": 10}}))
    r = _get(gw, "/echo", headers=[(f"X-H{i}", "v") for i in range(8)])  # + Host = 9
    assert r.status == 200


def test_body_over_limit_is_413(origin, make_gateway):
    gw = make_gateway(make_config([origin.address],
                                  listener={"limits": {"max_request_body_bytes": 100}}))
    raw = build_request("POST", "/sink", headers=[("Content-Length", "1000")], host="a")
    assert_rejected_downstream(gw, origin, raw, 413, "payload_too_large")


def test_chunked_body_over_limit_is_413(origin, make_gateway):
    gw = make_gateway(make_config([origin.address],
                                  listener={"limits": {"max_request_body_bytes": 100}}))
    raw = build_request("POST", "/sink", headers=[("Transfer-Encoding", "chunked")], host="a",
                        body=chunked_body([b"a" * 60, b"b" * 60, b"c" * 60]))
    r = raw_request(gw.port, raw, read_timeout=5.0)
    assert_local_reply(gw, r.response(), 413, "payload_too_large")
    assert r.closed
    assert origin.requests == [], "the origin received the whole over-limit body"


def test_body_within_limit_is_proxied(origin, make_gateway):
    gw = make_gateway(make_config([origin.address],
                                  listener={"limits": {"max_request_body_bytes": 100}}))
    with HttpConn(gw.port) as c:
        assert c.roundtrip("POST", "/sink", body=b"x" * 100).json()["bytes"] == 100


def test_request_header_timeout_is_408(origin, make_gateway):
    gw = make_gateway(make_config([origin.address],
                                  listener={"timeouts": {"request_headers_timeout": "0.5s"}}))
    partial = b"GET /echo HTTP/1.1\r\nHost: a\r\nX-Slow: "
    r = raw_request(gw.port, partial, read_timeout=5.0)
    assert 0.4 <= r.elapsed < 4.0, r.elapsed
    resp = r.response()
    assert_local_reply(gw, resp, 408, "request_header_timeout")
    assert r.closed
    assert origin.all_requests == [] and origin.bytes_received == 0


def test_stalled_request_body_is_408_stream_idle_timeout(origin, make_gateway):
    gw = make_gateway(make_config([origin.address],
                                  listener={"timeouts": {"stream_idle_timeout": "0.5s"}}))
    head = build_request("POST", "/sink", headers=[("Content-Length", "100")])
    r = raw_request(gw.port, head + b"only ten b", read_timeout=5.0)
    assert 0.4 <= r.elapsed < 4.0, r.elapsed
    assert_local_reply(gw, r.response(), 408, "stream_idle_timeout")
    assert r.closed


def test_trickled_body_that_keeps_moving_is_not_timed_out(origin, make_gateway):
    gw = make_gateway(make_config([origin.address],
                                  listener={"timeouts": {"stream_idle_timeout": "0.6s"}}))
    with HttpConn(gw.port, timeout=10.0) as c:
        c.send(build_request("POST", "/sink", headers=[("Content-Length", "8")]))
        for _ in range(8):  # 8 bytes over ~1.6 s, never idle for 0.6 s
            time.sleep(0.2)
            c.send(b"x")
        r = c.read_response(timeout=5.0)
    assert r.status == 200, r
    assert r.header("x-portway-error") is None


def test_error_connection_does_not_serve_pipelined_request(proxy, origin):
    """A request pipelined behind a bad one is never processed."""
    raw = (b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n"
           + build_request("GET", "/echo", host="a"))
    r = raw_request(proxy.port, raw, read_timeout=5.0)
    assert [x.status for x in r.responses()] == [400]
    assert r.closed
    assert origin.all_requests == []


def test_local_reply_counts_downstream_response_class(make_gateway):
    gw = make_gateway(make_config([f"127.0.0.1:{closed_port()}"]))
    for _ in range(2):
        assert _get(gw, "/").status == 502
    gw.wait_stat("portway_downstream_responses_total", 2, listener="edge", **{"class": "5xx"})
    gw.wait_stat("portway_downstream_requests_total", 2, listener="edge")


def test_overflow_does_not_block_other_requests(origin, make_gateway):
    """After the slow requests finish, the pool serves new requests again."""
    gw = make_gateway(make_config([origin.address], cluster_options={
        "connection_pool": {"max_connections": 1, "max_pending_requests": 1}}), workers=1)
    slow = run_in_thread(_get, gw, "/delay/0.5")
    origin.wait_for_requests(1)
    assert slow.result(5.0).status == 200
    assert _get(gw, "/echo").status == 200


def test_unhealthy_cluster_does_not_affect_other_cluster(origin, make_gateway):
    cfg = make_config(clusters=[make_cluster("dead", [f"127.0.0.1:{closed_port()}"]),
                                make_cluster("live", [origin.address])],
                      routes=[{"match": {"prefix": "/dead"}, "cluster": "dead"},
                              {"match": {"prefix": "/"}, "cluster": "live"}])
    gw = make_gateway(cfg)
    assert _get(gw, "/dead").status == 502
    assert _get(gw, "/echo").status == 200
