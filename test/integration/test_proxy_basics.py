"""Plain proxying: what reaches the origin, what reaches the client, connection reuse."""

import re
import time
import zlib

import pytest

from portway_test_lib import (HttpConn, build_request, raw_request, chunked_body, make_config, pattern_bytes,
                              raw_request)

pytestmark = pytest.mark.gateway


def _values(req, name):
    """All comma-separated values of a header at the origin, in order."""
    out = []
    for v in req.header_values(name):
        out.extend(x.strip() for x in v.split(",") if x.strip())
    return out


def _uuid_like(value):
    # Generated ids are RFC 9562 version 4 UUIDs, dashes in their places.
    return value is not None and re.fullmatch(
        r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", value) is not None


def _one(proxy, method="GET", target="/echo", headers=None, body=None, host="portway.test"):
    with HttpConn(proxy.port) as c:
        return c.roundtrip(method, target, headers=headers, body=body, host=host)


def test_get_is_proxied_to_origin(proxy, origin):
    r = _one(proxy, target="/echo")
    assert r.status == 200 and r.complete
    assert r.json()["path"] == "/echo" and r.json()["method"] == "GET"
    [req] = origin.wait_for_requests(1)
    assert req.method == "GET" and req.path == "/echo"


def test_upstream_request_is_http11(proxy, origin):
    _one(proxy, target="/echo")
    assert origin.requests[0].version == "HTTP/1.1"


def test_request_body_reaches_origin_intact(proxy, origin):
    body = pattern_bytes(200_000)
    r = _one(proxy, "POST", "/echo", body=body)
    assert r.status == 200
    [req] = origin.requests
    assert req.body_len == len(body) and req.body_crc32 == zlib.crc32(body)


def test_query_string_is_preserved(proxy, origin):
    _one(proxy, target="/echo?a=1&b=two%20words&c")
    assert origin.requests[0].target == "/echo?a=1&b=two%20words&c"


def test_upstream_status_and_body_pass_through(proxy):
    r = _one(proxy, target="/status/404")
    assert r.status == 404 and r.body == b"status 404\n"


def test_upstream_5xx_is_not_marked_as_local_error(proxy):
    r = _one(proxy, target="/status/503")
    assert r.status == 503 and r.body == b"status 503\n"
    assert not r.has_header("x-portway-error")


def test_origin_response_headers_reach_client(proxy):
    r = _one(proxy, target="/echo")
    assert r.header("x-origin-name") == "origin"
    assert r.header("content-type") == "application/json"


def test_host_header_preserved_by_default(proxy, origin):
    _one(proxy, host="api.example.com:8443")
    assert origin.requests[0].header_values("host") == ["api.example.com:8443"]


def test_x_forwarded_for_replaces_client_value(proxy, origin):
    _one(proxy, headers=[("X-Forwarded-For", "203.0.113.7")])
    assert _values(origin.requests[0], "x-forwarded-for") == ["127.0.0.1"]


def test_x_forwarded_for_set_when_absent(proxy, origin):
    _one(proxy)
    assert _values(origin.requests[0], "x-forwarded-for") == ["127.0.0.1"]


def test_x_forwarded_for_appended_when_trusted(origin, make_gateway):
    gw = make_gateway(make_config([origin.address],
                                  listener={"proxy_headers": {"trust_forwarded_for": True}}))
    _one(gw, headers=[("X-Forwarded-For", "203.0.113.7")])
    assert _values(origin.requests[0], "x-forwarded-for") == ["203.0.113.7", "127.0.0.1"]


def test_x_forwarded_for_lines_are_one_list_when_trusted(origin, make_gateway):
    gw = make_gateway(make_config([origin.address],
                                  listener={"proxy_headers": {"trust_forwarded_for": True}}))
    _one(gw, headers=[("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-For", "198.51.100.2")])
    assert _values(origin.requests[0], "x-forwarded-for") == [
        "203.0.113.7", "198.51.100.2", "127.0.0.1"]


def test_no_100_continue_for_http10_client(proxy, origin):
    body = b"x" * 10
    data = build_request("POST", "/echo", version="HTTP/1.0",
                         headers=[("Expect", "100-continue"), ("Content-Length", "10")])
    raw = raw_request(proxy.port, data + body, read_timeout=3.0)
    assert not raw.startswith(b"HTTP/1.1 100"), raw[:80]
    assert b" 100 Continue" not in raw
    assert raw.startswith(b"HTTP/1.0 200"), raw[:80]


def test_x_forwarded_proto_is_http(proxy, origin):
    _one(proxy)
    assert _values(origin.requests[0], "x-forwarded-proto") == ["http"]


def test_request_id_generated_when_absent(proxy, origin):
    with HttpConn(proxy.port) as c:
        c.roundtrip("GET", "/echo")
        c.roundtrip("GET", "/echo")
    ids = [r.header_values("x-request-id") for r in origin.requests]
    assert all(len(v) == 1 and _uuid_like(v[0]) for v in ids), ids
    assert ids[0] != ids[1]


def test_request_id_replaced_when_untrusted(proxy, origin):
    _one(proxy, headers=[("X-Request-Id", "client-chosen-id")])
    values = origin.requests[0].header_values("x-request-id")
    assert len(values) == 1 and values[0] != "client-chosen-id" and _uuid_like(values[0])


def test_request_id_kept_when_trusted(origin, make_gateway):
    gw = make_gateway(make_config([origin.address],
                                  listener={"proxy_headers": {"trust_request_id": True}}))
    _one(gw, headers=[("X-Request-Id", "client-chosen-id")])
    assert origin.requests[0].header_values("x-request-id") == ["client-chosen-id"]


def test_hop_by_hop_request_headers_removed(proxy, origin):
    r = _one(proxy, headers=[("Connection", "keep-alive"), ("Keep-Alive", "timeout=5"),
                             ("Proxy-Connection", "keep-alive"), ("TE", "gzip"),
                             ("X-End-To-End", "kept")])
    assert r.status == 200
    req = origin.requests[0]
    assert req.header("x-end-to-end") == "kept"
    assert not req.has_header("keep-alive"), req.headers
    assert not req.has_header("proxy-connection"), req.headers
    assert all("gzip" not in v for v in req.header_values("te")), req.headers


def test_trailer_request_header_removed(proxy, origin):
    # The contract lists Trailer among the hop-by-hop headers removed in both directions.
    r = _one(proxy, headers=[("Trailer", "X-Never"), ("X-End-To-End", "kept")])
    assert r.status == 200
    req = origin.requests[0]
    assert req.header("x-end-to-end") == "kept"
    assert not req.has_header("trailer"), req.headers


def test_headers_named_in_connection_removed_from_request(proxy, origin):
    _one(proxy, headers=[("Connection", "X-Client-Hop, keep-alive"), ("X-Client-Hop", "secret"),
                         ("X-End-To-End", "kept")])
    req = origin.requests[0]
    assert not req.has_header("x-client-hop")
    assert all("x-client-hop" not in v.lower() for v in req.header_values("connection"))
    assert req.header("x-end-to-end") == "kept"


def test_every_header_named_in_a_long_connection_list_removed(proxy, origin):
    # More names than the gateway keeps inline (16): the ones past that are
    # removed too.
    names = [f"X-Hop-{i}" for i in range(20)]
    _one(proxy, headers=[("Connection", ", ".join(names + ["keep-alive"]))]
         + [(n, "secret") for n in names] + [("X-End-To-End", "kept")])
    req = origin.requests[0]
    for n in names:
        assert not req.has_header(n.lower()), (n, req.headers)
    assert req.header("x-end-to-end") == "kept"


def test_upgrade_request_header_not_forwarded(proxy, origin):
    # Upgrade without the "upgrade" connection option: not an upgrade request,
    # just a hop-by-hop header that must not travel on.
    r = _one(proxy, headers=[("Upgrade", "example/1")])
    assert r.status == 200
    assert not origin.requests[0].has_header("upgrade")


def test_hop_by_hop_response_headers_removed(proxy):
    r = _one(proxy, target="/hop-by-hop")
    assert r.status == 200 and r.body == b"hop"
    assert r.header("x-end-to-end") == "kept"
    assert not r.has_header("x-origin-hop"), "header named in origin's Connection leaked"
    assert "timeout=99" not in r.header_values("keep-alive")
    assert not r.has_header("proxy-connection")
    assert all("x-origin-hop" not in v.lower() for v in r.header_values("connection"))


def test_trailer_response_header_removed(proxy):
    r = _one(proxy, target="/hop-by-hop")
    assert r.status == 200 and r.header("x-end-to-end") == "kept"
    assert not r.has_header("trailer"), r.headers


def test_upgrade_response_header_removed(origin, proxy):
    def handler(ctx):
        ctx.send_response(200, [("Upgrade", "example/1"), ("Content-Type", "text/plain")], b"ok")
        return True
    origin.handlers["/upgrade-header"] = handler
    r = _one(proxy, target="/upgrade-header")
    assert r.status == 200 and r.body == b"ok"
    assert not r.has_header("upgrade")


def test_chunked_response_is_reframed_for_client(proxy):
    r = _one(proxy, target="/chunked/100000")
    assert r.status == 200 and r.complete
    assert r.body == pattern_bytes(100000)
    te = [v.strip().lower() for v in ",".join(r.header_values("transfer-encoding")).split(",")
          if v.strip()]
    assert te in ([], ["chunked"]), f"Transfer-Encoding {te}"
    assert not (te and r.has_header("content-length"))


def test_close_delimited_response_reaches_client_complete(origin, proxy):
    def handler(ctx):
        ctx.send_raw(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n" + b"z" * 5000)
        return False  # closes: the body ends with the connection
    origin.handlers["/until-close"] = handler
    with HttpConn(proxy.port) as c:
        c.request("GET", "/until-close")
        r = c.read_response()
        assert r.complete and r.body == b"z" * 5000


def test_keepalive_reuses_one_upstream_connection(proxy, origin):
    with HttpConn(proxy.port) as c:
        for i in range(4):
            r = c.roundtrip("GET", f"/echo?i={i}")
            assert r.status == 200 and r.json()["query"] == f"i={i}"
    reqs = origin.requests
    assert len(reqs) == 4
    assert len({r.conn_id for r in reqs}) == 1, [r.conn_id for r in reqs]
    assert origin.connections_accepted == 1


def test_downstream_connection_stays_open_between_requests(proxy):
    with HttpConn(proxy.port) as c:
        assert c.roundtrip("GET", "/echo").status == 200
        assert c.is_open()
        assert c.roundtrip("GET", "/echo").status == 200


def test_pipelined_requests_answered_in_order(proxy, origin):
    data = (build_request("GET", "/delay/0.3") + build_request("GET", "/status/201")
            + build_request("GET", "/status/202"))
    with HttpConn(proxy.port) as c:
        c.send(data)
        statuses = [c.read_response().status for _ in range(3)]
    assert statuses == [200, 201, 202]
    assert [r.path for r in origin.requests] == ["/delay/0.3", "/status/201", "/status/202"]


def test_client_connection_close_is_honoured(proxy):
    with HttpConn(proxy.port) as c:
        r = c.roundtrip("GET", "/echo", headers=[("Connection", "close")])
        assert r.status == 200
        assert "close" in r.connection_tokens()
        assert c.wait_closed(3.0)


def test_http10_request_is_proxied_and_closed(proxy, origin):
    r = raw_request(proxy.port, b"GET /echo HTTP/1.0\r\n\r\n", read_timeout=5.0)
    assert r.closed
    resp = r.response()
    assert resp.status == 200 and resp.complete
    assert origin.requests[0].path == "/echo"


def test_head_response_has_no_body(proxy):
    with HttpConn(proxy.port) as c:
        r = c.roundtrip("HEAD", "/head")
        assert r.status == 200 and r.body == b""
        # The next response must parse cleanly: no stray body bytes in between.
        r2 = c.roundtrip("GET", "/status/201")
        assert r2.status == 201 and r2.body == b"status 201\n"
        assert not c.buf


def test_204_response_has_no_body(proxy):
    with HttpConn(proxy.port) as c:
        r = c.roundtrip("GET", "/204")
        assert r.status == 204 and r.header("x-status") == "no-content"
        assert not r.has_header("transfer-encoding")
        r2 = c.roundtrip("GET", "/status/201")
        assert r2.status == 201 and r2.body == b"status 201\n"


@pytest.mark.parametrize("target", ["/304", "/304?cl=1"], ids=["plain", "with-content-length"])
def test_304_response_has_no_body(proxy, target):
    with HttpConn(proxy.port) as c:
        r = c.roundtrip("GET", target, headers=[("If-None-Match", '"v1"')])
        assert r.status == 304 and r.header("etag") == '"v1"'
        assert not r.has_header("transfer-encoding")
        r2 = c.roundtrip("GET", "/status/201", timeout=3.0)
        assert r2.status == 201 and r2.body == b"status 201\n"


def test_chunked_request_body_reaches_origin(proxy, origin):
    parts = [b"first part, ", b"second part, ", pattern_bytes(50_000)]
    r = _one(proxy, "POST", "/sink", headers=[("Transfer-Encoding", "chunked")],
             body=chunked_body(parts))
    assert r.status == 200
    expected = b"".join(parts)
    assert r.json() == {"bytes": len(expected), "crc32": zlib.crc32(expected)}


def test_chunked_request_trailers_reach_origin(proxy, origin):
    r = _one(proxy, "POST", "/echo", headers=[("Transfer-Encoding", "chunked"),
                                              ("Trailer", "X-Checksum")],
             body=chunked_body([b"hello"], trailers=[("X-Checksum", "abc123")]))
    assert r.status == 200
    req = origin.requests[0]
    assert req.body == b"hello"
    assert req.trailer("x-checksum") == "abc123", (req.headers, req.trailers)


def test_expect_100_continue_gets_interim_then_final(proxy, origin):
    with HttpConn(proxy.port) as c:
        c.request("POST", "/echo", headers=[("Expect", "100-continue"), ("Content-Length", "5")])
        interim = c.read_response(interim=True, timeout=3.0)
        assert interim.status == 100, interim
        c.send(b"hello")
        final = c.read_response(timeout=5.0)
    assert final.status == 200
    assert origin.requests[0].body == b"hello"


def test_a_connection_quiet_past_the_idle_release_serves_again(proxy, origin):
    """After a second of quiet a keep-alive connection gives back its
    buffers' storage and its HTTP/1 codec (docs/operations.md, "Idle
    connections"). The next requests on it, bodies both ways, pipelined
    too, go through as on a fresh connection."""
    body = pattern_bytes(200_000)
    with HttpConn(proxy.port) as c:
        assert c.roundtrip("GET", "/echo").status == 200
        for _ in range(2):
            time.sleep(1.5)
            r = c.roundtrip("POST", "/echo", body=body)
            assert r.status == 200 and r.json()["method"] == "POST"
            assert origin.requests[-1].body_crc32 == zlib.crc32(body)
            r = c.roundtrip("GET", "/bytes/300000")
            assert r.status == 200 and len(r.body) == 300_000
        time.sleep(1.5)
        c.send(build_request("GET", "/echo?first") + build_request("GET", "/echo?second"))
        assert c.read_response().json()["path"] == "/echo"
        assert c.read_response().status == 200
        assert [q.target for q in origin.requests[-2:]] == ["/echo?first", "/echo?second"]
