"""Self-tests of the test helpers (FakeOrigin, parsers, config writer); no gateway needed."""

import json
import socket
import struct
import threading
import time
import zlib

import pytest

from portway_test_lib import (Blackhole, HttpConn, ProtocolError, build_request, chunked_body,
                              closed_port, iter_pattern, make_config, parse_prometheus,
                              parse_response, parse_responses, pattern_bytes, pattern_crc32,
                              raw_request, to_yaml, try_parse_response, wait_until)


# --------------------------------------------------------------------------- origin


def test_echo_returns_what_was_received(origin):
    with HttpConn(origin.port) as c:
        r = c.roundtrip("POST", "/echo?a=1", headers=[("X-Test", "one"), ("X-Test", "two")],
                        body=b"hello")
    assert r.status == 200 and r.complete
    data = r.json()
    assert data["method"] == "POST"
    assert data["target"] == "/echo?a=1"
    assert data["path"] == "/echo" and data["query"] == "a=1"
    assert data["body"] == "hello" and data["body_len"] == 5
    assert ["X-Test", "one"] in data["headers"] and ["X-Test", "two"] in data["headers"]
    assert r.header("x-origin-name") == "origin"


def test_unknown_path_echoes(origin):
    with HttpConn(origin.port) as c:
        r = c.roundtrip("GET", "/some/where")
    assert r.status == 200 and r.json()["path"] == "/some/where"


def test_requests_are_recorded_with_connection_and_body_digest(origin):
    with HttpConn(origin.port) as c:
        c.roundtrip("PUT", "/echo", body=b"x" * 3000)
        local_port = c.sock.getsockname()[1]
    [req] = origin.wait_for_requests(1)
    assert req.method == "PUT" and req.path == "/echo"
    assert req.body_len == 3000 and req.body_crc32 == zlib.crc32(b"x" * 3000)
    assert req.peer_port == local_port and req.conn_id == 1
    assert req.header("host") == "portway.test"
    assert req.complete


@pytest.mark.parametrize("status", [200, 201, 404, 418, 500, 503])
def test_status_path_answers_that_status(origin, status):
    with HttpConn(origin.port) as c:
        r = c.roundtrip("GET", f"/status/{status}")
    assert r.status == status and r.body == f"status {status}\n".encode()


def test_delay_waits_before_answering(origin):
    t0 = time.monotonic()
    with HttpConn(origin.port) as c:
        r = c.roundtrip("GET", "/delay/0.3")
    elapsed = time.monotonic() - t0
    assert r.status == 200 and r.body == b"delayed"
    assert 0.28 <= elapsed < 2.0


def test_delay_notices_peer_closing(origin):
    c = HttpConn(origin.port)
    c.request("GET", "/delay/5")
    origin.wait_for_requests(1)
    c.close()
    conn = origin.connections[0]
    assert conn.closed.wait(2.0)
    assert conn.closed_by == "peer"


def test_reset_sends_rst_after_reading_request(origin):
    with HttpConn(origin.port) as c:
        c.request("GET", "/reset")
        assert c.wait_closed(3.0)
        assert c.reset, "expected an RST, got a FIN"
        assert not c.buf
    assert len(origin.wait_for_requests(1)) == 1


def test_close_closes_without_reply(origin):
    r = raw_request(origin.port, build_request("GET", "/close"), read_timeout=3.0)
    assert r.closed and r == b""


def test_malformed_sends_bad_status_line_and_keeps_connection(origin):
    with HttpConn(origin.port) as c:
        c.request("GET", "/malformed")
        time.sleep(0.2)
        assert c.is_open()
        data = c.sock.recv(1000)
        assert data.startswith(b"HTTP/1.1 abc\r\n")
        with pytest.raises(ProtocolError):
            parse_response(data)
    conn = origin.connections[0]
    assert conn.closed.wait(2.0) and conn.closed_by == "peer"


@pytest.mark.parametrize("kind,needle", [("space", b"X-Bad-Header : x"),
                                         ("cr-value", b"X-Bad: a\rb")])
def test_bad_header_sends_invalid_field(origin, kind, needle):
    r = raw_request(origin.port, build_request("GET", f"/bad-header?kind={kind}"),
                    read_timeout=0.5)
    assert needle in r
    with pytest.raises(ProtocolError):
        r.response()


def test_truncate_cl_closes_before_declared_length(origin):
    r = raw_request(origin.port, build_request("GET", "/truncate-cl"), read_timeout=3.0)
    assert r.closed
    resp = r.response()
    assert resp.status == 200 and not resp.complete and resp.body == b"0123456789"


def test_truncate_chunked_closes_without_last_chunk(origin):
    r = raw_request(origin.port, build_request("GET", "/truncate-chunked"), read_timeout=3.0)
    assert r.closed
    resp = r.response()
    assert resp.status == 200 and not resp.complete and resp.body == b"0123456789"


def test_bytes_streams_pattern_with_content_length(origin):
    n = 300_000
    with HttpConn(origin.port) as c:
        r = c.roundtrip("GET", f"/bytes/{n}")
    assert r.header("content-length") == str(n)
    assert len(r.body) == n and zlib.crc32(r.body) == pattern_crc32(n)
    # The origin's thread records the count after its last send returns,
    # which can be after the client has read everything.
    assert wait_until(lambda: origin.requests[0].response_bytes_sent == n, timeout=5), \
        origin.requests[0].response_bytes_sent


def test_chunked_streams_pattern_with_trailers(origin):
    n = 100_000
    with HttpConn(origin.port) as c:
        r = c.roundtrip("GET", f"/chunked/{n}?trailers=1")
    assert r.header("transfer-encoding") == "chunked"
    assert r.body == pattern_bytes(n)
    assert ("X-Origin-Trailer", "done") in r.trailers


def test_sink_counts_content_length_body(origin):
    body = pattern_bytes(1_000_000)
    with HttpConn(origin.port) as c:
        r = c.roundtrip("POST", "/sink", body=body)
    assert r.json() == {"bytes": len(body), "crc32": zlib.crc32(body)}


def test_sink_reads_chunked_body_and_trailers(origin):
    data = chunked_body([b"hello ", b"chunked ", b"world"], trailers=[("X-Checksum", "abc")])
    with HttpConn(origin.port) as c:
        r = c.roundtrip("POST", "/sink", headers=[("Transfer-Encoding", "chunked")], body=data)
    assert r.json()["bytes"] == len(b"hello chunked world")
    [req] = origin.requests
    assert req.body == b"hello chunked world" and req.trailer("x-checksum") == "abc"


def test_head_gets_headers_without_body(origin):
    with HttpConn(origin.port) as c:
        r = c.roundtrip("HEAD", "/head")
        assert r.status == 200 and r.header("content-length") == "5000" and r.body == b""
        r2 = c.roundtrip("GET", "/head")
        assert len(r2.body) == 5000


@pytest.mark.parametrize("path,status", [("/204", 204), ("/304", 304), ("/304?cl=1", 304)])
def test_no_body_statuses_keep_framing(origin, path, status):
    with HttpConn(origin.port) as c:
        r = c.roundtrip("GET", path)
        assert r.status == status and r.body == b""
        assert c.roundtrip("GET", "/status/201").status == 201
    assert origin.connections_accepted == 1


def test_hop_by_hop_response_headers_present_at_origin(origin):
    with HttpConn(origin.port) as c:
        r = c.roundtrip("GET", "/hop-by-hop")
    assert r.header("x-origin-hop") == "secret" and r.header("keep-alive") == "timeout=99"


def test_keep_alive_reuses_connection(origin):
    with HttpConn(origin.port) as c:
        for _ in range(3):
            assert c.roundtrip("GET", "/echo").status == 200
    reqs = origin.requests
    assert len(reqs) == 3 and {r.conn_id for r in reqs} == {1}
    assert origin.connections_accepted == 1


def test_connection_close_is_honoured(origin):
    with HttpConn(origin.port) as c:
        r = c.roundtrip("GET", "/echo", headers=[("Connection", "close")])
        assert "close" in r.connection_tokens()
        assert c.wait_closed(2.0)


def test_http10_without_keep_alive_closes(origin):
    r = raw_request(origin.port, b"GET /echo HTTP/1.0\r\n\r\n", read_timeout=3.0)
    assert r.closed and r.response().status == 200


def test_pipelined_requests_answered_in_order(origin):
    data = (build_request("GET", "/delay/0.2") + build_request("GET", "/status/201")
            + build_request("GET", "/status/202", headers=[("Connection", "close")]))
    r = raw_request(origin.port, data, read_timeout=3.0)
    assert [x.status for x in r.responses()] == [200, 201, 202]


def test_expect_100_continue_gets_interim_response(origin):
    with HttpConn(origin.port) as c:
        c.request("POST", "/echo", headers=[("Expect", "100-continue"), ("Content-Length", "5")])
        interim = c.read_response(interim=True, timeout=2.0)
        assert interim.status == 100
        c.send(b"hello")
        r = c.read_response()
    assert r.status == 200 and r.json()["body"] == "hello"


def test_expect_100_continue_can_be_disabled(make_origin):
    o = make_origin("quiet", send_100_continue=False)
    with HttpConn(o.port) as c:
        c.request("POST", "/echo", headers=[("Expect", "100-continue"), ("Content-Length", "5")])
        with pytest.raises(TimeoutError):
            c.read_response(interim=True, timeout=0.3)


def test_counts_connections(origin):
    for _ in range(3):
        raw_request(origin.port, build_request("GET", "/echo", headers=[("Connection", "close")]))
    assert origin.connections_accepted == 3
    assert len({r.conn_id for r in origin.requests}) == 3


def test_incomplete_body_is_recorded_as_incomplete(origin):
    with socket.create_connection(("127.0.0.1", origin.port)) as s:
        s.sendall(build_request("POST", "/sink", headers=[("Content-Length", "100")]) + b"abc")
        wait_until(lambda: origin.bytes_received > 0 and origin.all_requests, 2.0)
    wait_until(lambda: all(c.closed.is_set() for c in origin.connections), 2.0)
    assert origin.requests == []
    [req] = origin.all_requests
    assert not req.complete and req.body_len == 3


def test_custom_handler(origin):
    origin.handlers["/custom/"] = lambda ctx: (ctx.send_response(299, [("X-Custom", "1")],
                                                                 b"custom"), True)[1]
    with HttpConn(origin.port) as c:
        r = c.roundtrip("GET", "/custom/x")
    assert r.status == 299 and r.header("x-custom") == "1" and r.body == b"custom"


def test_bad_request_to_origin_gets_400(origin):
    r = raw_request(origin.port, b"GARBAGE\r\n\r\n", read_timeout=2.0)
    assert r.response().status == 400 and r.closed


def test_stop_is_quick_with_open_connections(make_origin):
    o = make_origin("stopper")
    c = HttpConn(o.port)
    c.request("GET", "/delay/30")
    o.wait_for_requests(1)
    t0 = time.monotonic()
    o.stop()
    assert time.monotonic() - t0 < 3.0
    c.close()


# --------------------------------------------------------------------------- helpers


def test_closed_port_refuses():
    port = closed_port()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2.0)


def test_blackhole_makes_connect_hang():
    with Blackhole() as bh:
        if not bh.ok:
            pytest.skip("kernel does not drop SYNs to a full accept queue")
        s = socket.socket()
        s.settimeout(0.3)
        t0 = time.monotonic()
        with pytest.raises((socket.timeout, TimeoutError)):
            s.connect(("127.0.0.1", bh.port))
        assert time.monotonic() - t0 >= 0.25
        s.close()


def test_pattern_is_consistent():
    n = 200_000
    assert len(pattern_bytes(n)) == n
    assert zlib.crc32(b"".join(bytes(c) for c in iter_pattern(n, 7000))) == pattern_crc32(n)
    assert pattern_bytes(70000)[65536:] == pattern_bytes(70000 - 65536)


def test_parse_response_content_length_incomplete():
    r = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    assert r.status == 200 and not r.complete and r.body == b"abc"


def test_parse_response_chunked_with_trailers():
    data = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked_body(
        [b"ab", b"cde"], trailers=[("X-T", "1")])
    r = parse_response(data)
    assert r.complete and r.body == b"abcde" and r.trailers == [("X-T", "1")]


def test_parse_response_needs_more_bytes_when_open():
    assert try_parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")[0] is None


def test_parse_response_close_delimited():
    r = parse_response(b"HTTP/1.1 200 OK\r\n\r\nall of it")
    assert r.complete and r.close_delimited and r.body == b"all of it"


def test_parse_responses_skips_interim_and_splits():
    data = (b"HTTP/1.1 100 Continue\r\n\r\n"
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na"
            b"HTTP/1.1 204 No Content\r\n\r\n"
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno")
    assert [r.status for r in parse_responses(data)] == [200, 204, 404]


def test_parse_response_rejects_space_before_colon():
    with pytest.raises(ProtocolError):
        parse_response(b"HTTP/1.1 200 OK\r\nX-A : b\r\nContent-Length: 0\r\n\r\n")


def test_build_request_adds_host_and_length():
    assert build_request("POST", "/x", body=b"abc", host="h") == (
        b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc")
    assert build_request("GET", "/", host=None) == b"GET / HTTP/1.1\r\n\r\n"


def test_parse_prometheus():
    text = """# HELP portway_downstream_requests_total x
# TYPE portway_downstream_requests_total counter
portway_downstream_requests_total{listener="edge"} 3
portway_downstream_responses_total{listener="edge",class="2xx"} 2
portway_upstream_request_time_ms_bucket{cluster="backend",le="+Inf"} 4
portway_upstream_request_time_ms_sum{cluster="backend"} 12.5
up 1
"""
    s = parse_prometheus(text)
    assert s[("portway_downstream_requests_total", (("listener", "edge"),))] == 3
    assert s[("portway_downstream_responses_total",
              (("class", "2xx"), ("listener", "edge")))] == 2
    assert s[("portway_upstream_request_time_ms_bucket",
              (("cluster", "backend"), ("le", "+Inf")))] == 4
    assert s[("up", ())] == 1


def test_to_yaml_round_trips():
    yaml = pytest.importorskip("yaml")
    cfg = make_config(["127.0.0.1:1", {"address": "127.0.0.1:2", "weight": 2}],
                      listener={"limits": {"max_headers": 10},
                                "proxy_headers": {"trust_forwarded_for": True}},
                      routes=[{"match": {"prefix": "/", "headers": [{"name": "x", "exact": "y"}]},
                               "cluster": "backend", "request_headers": {"remove": ["a"]}},
                              {"match": {"path": "/d"},
                               "direct_response": {"status": 200, "body": "a \"quoted\"\nline"}}])
    cfg["clusters"].append({"name": "empty", "endpoints": []})
    assert yaml.safe_load(to_yaml(cfg)) == cfg
    assert yaml.safe_load(to_yaml([[1, 2], {"a": []}])) == [[1, 2], {"a": []}]


def test_raw_request_reports_reset():
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)
    port = ls.getsockname()[1]

    def rst_on_accept():
        c, _ = ls.accept()
        c.recv(100)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()

    t = threading.Thread(target=rst_on_accept)
    t.start()
    r = raw_request(port, b"hi", read_timeout=2.0)
    t.join()
    ls.close()
    assert r.closed and r.reset


def test_echo_json_is_valid_for_binary_body(origin):
    with HttpConn(origin.port) as c:
        r = c.roundtrip("POST", "/echo", body=bytes(range(256)))
    data = json.loads(r.body)
    assert data["body"] is None and data["body_len"] == 256
