"""gRPC through the real gateway: python3-grpcio clients (h2c with prior
knowledge to the listener) and a Python grpc.testing.TestService +
grpc.health.v1.Health server behind a `protocol: http2` cluster. Covers the
four call shapes, large messages, metadata, statuses, deadlines and
cancellation, and the gateway's own answers as gRPC statuses (Trailers-Only).
"""

import time

import grpc
import pytest

from grpc_test_lib import (ECHO_INITIAL_KEY, ECHO_TRAILING_KEY, GRPC_REQUEST_HEADERS, SLEEP_MS_KEY,
                           PingPong, channel, grpc_frame)
from h2_test_lib import H2Client, H2Reply
from portway_test_lib import closed_port, make_config, wait_until
from tls_test_lib import make_pki

pytestmark = pytest.mark.gateway

CALL_TIMEOUT = 10.0


def grpc_config(endpoints, routes=None, filters=None, route_timeout=None, **kw):
    if routes is None:
        route = {"match": {"prefix": "/"}, "cluster": "backend"}
        if route_timeout is not None:
            route["timeout"] = route_timeout
        routes = [route]
    listener = {"filters": filters} if filters else None
    return make_config(endpoints, routes=routes, listener=listener,
                       cluster_options={"protocol": "http2"}, **kw)


@pytest.fixture
def server(make_grpc_server):
    return make_grpc_server()


@pytest.fixture
def gw(server, make_gateway):
    return make_gateway(grpc_config([server.address]))


@pytest.fixture
def stub(gw, grpc_stubs):
    with channel(gw.port) as ch:
        yield grpc_stubs.test_pb2_grpc.TestServiceStub(ch)


def metadata_dict(md):
    return {k: v for k, v in (md or ())}


# --------------------------------------------------------------------------- call shapes


def test_unary_call(stub, grpc_stubs, server):
    m = grpc_stubs.messages_pb2
    resp = stub.UnaryCall(m.SimpleRequest(response_size=314, payload=m.Payload(body=b"x" * 271)),
                          timeout=CALL_TIMEOUT)
    assert len(resp.payload.body) == 314
    assert [c.method for c in server.calls] == ["UnaryCall"]
    stub.EmptyCall(grpc_stubs.empty_pb2.Empty(), timeout=CALL_TIMEOUT)


def test_large_messages_both_ways(stub, grpc_stubs, server):
    m = grpc_stubs.messages_pb2
    size = 4 << 20
    resp = stub.UnaryCall(m.SimpleRequest(response_size=size, payload=m.Payload(body=b"q" * size)),
                          timeout=30)
    assert len(resp.payload.body) == size


def test_client_streaming(stub, grpc_stubs):
    m = grpc_stubs.messages_pb2
    sizes = [27182, 8, 1828, 45904]
    reqs = (m.StreamingInputCallRequest(payload=m.Payload(body=b"\0" * n)) for n in sizes)
    resp = stub.StreamingInputCall(reqs, timeout=CALL_TIMEOUT)
    assert resp.aggregated_payload_size == sum(sizes)


def test_server_streaming(stub, grpc_stubs):
    m = grpc_stubs.messages_pb2
    sizes = [31415, 9, 2653, 58979]
    req = m.StreamingOutputCallRequest(
        response_parameters=[m.ResponseParameters(size=n) for n in sizes])
    got = [len(r.payload.body) for r in stub.StreamingOutputCall(req, timeout=CALL_TIMEOUT)]
    assert got == sizes


def test_bidi_streaming_ping_pong(stub, grpc_stubs):
    m = grpc_stubs.messages_pb2
    sizes = [(27182, 31415), (8, 9), (1828, 2653), (45904, 58979)]
    requests = PingPong()
    responses = stub.FullDuplexCall(requests, timeout=CALL_TIMEOUT)
    for req_size, resp_size in sizes:
        requests.put(m.StreamingOutputCallRequest(
            response_parameters=[m.ResponseParameters(size=resp_size)],
            payload=m.Payload(body=b"\0" * req_size)))
        # The answer to this message must arrive before the next one is sent.
        assert len(next(responses).payload.body) == resp_size
    requests.close()
    assert list(responses) == []
    assert responses.code() == grpc.StatusCode.OK


# --------------------------------------------------------------------------- metadata, status


def test_metadata_reaches_both_sides(stub, grpc_stubs, server):
    m = grpc_stubs.messages_pb2
    _, call = stub.UnaryCall.with_call(
        m.SimpleRequest(response_size=1), timeout=CALL_TIMEOUT,
        metadata=[("x-client-meta", "from-client"), (ECHO_INITIAL_KEY, "initial-value"),
                  (ECHO_TRAILING_KEY, b"\x00\x01\xfe\xff")])
    assert server.calls[0].meta("x-client-meta") == "from-client"
    assert metadata_dict(call.initial_metadata()).get(ECHO_INITIAL_KEY) == "initial-value"
    assert metadata_dict(call.trailing_metadata()).get(ECHO_TRAILING_KEY) == b"\x00\x01\xfe\xff"


def test_server_status_and_message_pass_through(stub, grpc_stubs):
    m = grpc_stubs.messages_pb2
    message = "field \"name\" is 100% wrong: é"
    with pytest.raises(grpc.RpcError) as info:
        stub.UnaryCall(m.SimpleRequest(response_status=m.EchoStatus(code=3, message=message)),
                       timeout=CALL_TIMEOUT)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == message


# --------------------------------------------------------------------------- deadlines


def test_client_deadline_is_enforced_and_forwarded(stub, grpc_stubs, server):
    m = grpc_stubs.messages_pb2
    t0 = time.monotonic()
    with pytest.raises(grpc.RpcError) as info:
        stub.UnaryCall(m.SimpleRequest(), timeout=0.5, metadata=[(SLEEP_MS_KEY, "3000")])
    elapsed = time.monotonic() - t0
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert elapsed < 2.0, elapsed
    [call] = server.calls
    # grpc-timeout reached the server: it knew its deadline.
    assert call.time_remaining is not None and call.time_remaining <= 0.6, call
    wait_until(lambda: call.cancelled_at is not None, 3.0,
               message="the server to see the call cancelled")
    assert call.cancelled_at - call.started_at < 2.0


def test_grpc_timeout_caps_the_route_timeout(h2_origin, make_gateway):
    # The origin ignores grpc-timeout; the gateway must not wait for its 10s route timeout.
    path = "/grpc.testing.TestService/UnaryCall"
    h2_origin.handlers[path] = lambda req: H2Reply(
        200, [("content-type", "application/grpc")], grpc_frame(b""),
        trailers=[("grpc-status", "0")], delay=5.0)
    gw = make_gateway(grpc_config([h2_origin.address], route_timeout="10s"))
    t0 = time.monotonic()
    with H2Client(gw.port, timeout=8) as c:
        r = c.response(c.request("POST", path, headers=GRPC_REQUEST_HEADERS
                                 + [("grpc-timeout", "500m")], body=grpc_frame(b"")))
    elapsed = time.monotonic() - t0
    assert elapsed < 2.5, f"answered after {elapsed:.1f}s"
    status = r.trailer("grpc-status") or r.header("grpc-status")
    assert status == "4", r


def test_route_timeout_gives_deadline_exceeded(server, make_gateway, grpc_stubs):
    gw = make_gateway(grpc_config([server.address], route_timeout="500ms"))
    m = grpc_stubs.messages_pb2
    with channel(gw.port) as ch:
        stub = grpc_stubs.test_pb2_grpc.TestServiceStub(ch)
        t0 = time.monotonic()
        with pytest.raises(grpc.RpcError) as info:
            stub.UnaryCall(m.SimpleRequest(), timeout=CALL_TIMEOUT,
                           metadata=[(SLEEP_MS_KEY, "3000")])
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED, info.value
    assert time.monotonic() - t0 < 2.5


def test_client_cancel_reaches_the_server(stub, grpc_stubs, server):
    m = grpc_stubs.messages_pb2
    req = m.StreamingOutputCallRequest(response_parameters=[
        m.ResponseParameters(size=10, interval_us=100_000) for _ in range(50)])
    call = stub.StreamingOutputCall(req, timeout=CALL_TIMEOUT)
    next(call)
    next(call)
    t0 = time.monotonic()
    call.cancel()
    [rec] = server.calls_to("StreamingOutputCall")
    wait_until(lambda: rec.cancelled_at is not None, 3.0,
               message="the server to see the stream cancelled")
    assert rec.cancelled_at - t0 < 2.0
    assert rec.messages_sent < 50 and not rec.finished


# --------------------------------------------------------------------------- health


def test_health_check_answers_serving(gw, grpc_stubs):
    h = grpc_stubs.health_pb2
    with channel(gw.port) as ch:
        stub = grpc_stubs.health_pb2_grpc.HealthStub(ch)
        for service in ("", "grpc.testing.TestService"):
            resp = stub.Check(h.HealthCheckRequest(service=service), timeout=CALL_TIMEOUT)
            assert resp.status == h.HealthCheckResponse.SERVING


# --------------------------------------------------------------------------- local replies


def test_no_route_is_unimplemented(server, make_gateway, grpc_stubs):
    gw = make_gateway(grpc_config([server.address], routes=[
        {"match": {"prefix": "/nothing.Here/"}, "cluster": "backend"}]))
    with channel(gw.port) as ch:
        stub = grpc_stubs.test_pb2_grpc.TestServiceStub(ch)
        with pytest.raises(grpc.RpcError) as info:
            stub.EmptyCall(grpc_stubs.empty_pb2.Empty(), timeout=CALL_TIMEOUT)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED, info.value
    assert server.calls == []


def test_local_reply_is_trailers_only(server, make_gateway):
    gw = make_gateway(grpc_config([server.address], routes=[
        {"match": {"prefix": "/nothing.Here/"}, "cluster": "backend"}]))
    with H2Client(gw.port) as c:
        r = c.response(c.request("POST", "/grpc.testing.TestService/EmptyCall",
                                 headers=GRPC_REQUEST_HEADERS, body=grpc_frame(b"")))
    assert r.clean and r.trailers_only, r
    assert r.status == 200 and r.header("content-type", "").startswith("application/grpc"), r
    assert r.header("grpc-status") == "12", r
    assert bytes(r.body) == b""


def test_refused_upstream_is_unavailable_with_cause(make_gateway, grpc_stubs):
    gw = make_gateway(grpc_config([f"127.0.0.1:{closed_port()}"]))
    with channel(gw.port) as ch:
        stub = grpc_stubs.test_pb2_grpc.TestServiceStub(ch)
        with pytest.raises(grpc.RpcError) as info:
            stub.EmptyCall(grpc_stubs.empty_pb2.Empty(), timeout=CALL_TIMEOUT)
    e = info.value
    assert e.code() == grpc.StatusCode.UNAVAILABLE, e
    assert "upstream_connect_refused" in (e.details() or ""), e.details()
    md = metadata_dict(e.initial_metadata())
    md.update(metadata_dict(e.trailing_metadata()))
    assert md.get("x-portway-error") == "upstream_connect_refused", md


def test_retry_on_unavailable_reaches_the_healthy_server(make_grpc_server, make_gateway,
                                                         grpc_stubs):
    bad = make_grpc_server("bad", fail_with=grpc.StatusCode.UNAVAILABLE)
    good = make_grpc_server("good")
    gw = make_gateway(grpc_config([bad.address, good.address], filters=[
        {"name": "portway.retry", "config": {"retry_on": ["unavailable"], "num_retries": 1}}]))
    with channel(gw.port) as ch:
        stub = grpc_stubs.test_pb2_grpc.TestServiceStub(ch)
        for _ in range(6):
            stub.EmptyCall(grpc_stubs.empty_pb2.Empty(), timeout=CALL_TIMEOUT)
    assert len(bad.calls) >= 1, "round robin never picked the failing server"
    assert len(good.calls) == 6


def test_grpc_status_is_counted_in_stats(gw, stub, grpc_stubs):
    m = grpc_stubs.messages_pb2
    for _ in range(3):
        stub.EmptyCall(grpc_stubs.empty_pb2.Empty(), timeout=CALL_TIMEOUT)
    with pytest.raises(grpc.RpcError):
        stub.UnaryCall(m.SimpleRequest(response_status=m.EchoStatus(code=5, message="gone")),
                       timeout=CALL_TIMEOUT)
    gw.wait_stat("portway_grpc_responses_total", 3, listener="edge", grpc_status="0")
    gw.wait_stat("portway_grpc_responses_total", 1, listener="edge", grpc_status="5")
    assert gw.stat("portway_grpc_responses_total", listener="edge", grpc_status="0") == 3


# --------------------------------------------------------------------------- from a push


def test_grpc_through_a_pushed_http2_cluster_and_a_bad_push_is_rejected_with_its_path(
        make_grpc_server, make_gateway, grpc_stubs):
    from test_control_plane import ControlPlane, entry, gateway_config, listener_port
    server = make_grpc_server("pushed")
    cp = ControlPlane().start()
    try:
        def resources(window):
            return {"clusters": [{"name": "grpc", "protocol": "http2",
                                  "http2": {"initial_stream_window_bytes": window},
                                  "endpoints": [server.address]}],
                    "listeners": [{"name": "dyn", "address": "127.0.0.1:0",
                                   "protocols": ["http2"],
                                   "http2": {"max_concurrent_streams": 50},
                                   "routes": [{"match": {"prefix": "/"}, "cluster": "grpc"}]}]}
        cp.write("main.yaml", resources(1048576))
        gw = make_gateway(gateway_config(cp))
        port = listener_port(gw)
        with channel(port) as ch:
            stub = grpc_stubs.test_pb2_grpc.TestServiceStub(ch)
            stub.EmptyCall(grpc_stubs.empty_pb2.Empty(), timeout=CALL_TIMEOUT)
        assert len(server.calls) == 1
        # A window under the protocol's minimum is refused with its path;
        # the cluster keeps serving its last good version.
        cp.write("main.yaml", resources(100))
        wait_until(lambda: entry(gw, "cluster", "grpc")["rejected_version"] != "", timeout=5)
        e = entry(gw, "cluster", "grpc")
        assert e["errors"][0]["path"] == "http2.initial_stream_window_bytes", e
        with channel(port) as ch:
            stub = grpc_stubs.test_pb2_grpc.TestServiceStub(ch)
            stub.EmptyCall(grpc_stubs.empty_pb2.Empty(), timeout=CALL_TIMEOUT)
        assert len(server.calls) == 2
    finally:
        cp.stop()


# --------------------------------------------------------------------------- over TLS


@pytest.fixture(scope="module")
def grpc_pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("grpc-pki"))


def test_grpc_over_a_tls_listener(server, make_gateway, grpc_stubs, grpc_pki):
    # A gRPC client's TLS channel (ALPN h2) to the gateway, h2c behind it.
    cfg = grpc_config([server.address])
    cfg["listeners"][0]["tls"] = {"certificates": [{"cert_file": str(grpc_pki.a.cert),
                                                    "key_file": str(grpc_pki.a.key)}]}
    gw = make_gateway(cfg)
    credentials = grpc.ssl_channel_credentials(root_certificates=grpc_pki.ca.cert_pem.encode())
    with grpc.secure_channel(f"127.0.0.1:{gw.port}", credentials,
                             options=[("grpc.ssl_target_name_override", "a.test")]) as ch:
        stub = grpc_stubs.test_pb2_grpc.TestServiceStub(ch)
        m = grpc_stubs.messages_pb2
        resp = stub.UnaryCall(m.SimpleRequest(response_size=1000), timeout=CALL_TIMEOUT)
        assert len(resp.payload.body) == 1000
        got = list(stub.StreamingOutputCall(
            m.StreamingOutputCallRequest(response_parameters=[
                m.ResponseParameters(size=n) for n in (10, 20000, 30)]),
            timeout=CALL_TIMEOUT))
        assert [len(r.payload.body) for r in got] == [10, 20000, 30]
    assert [c.method for c in server.calls] == ["UnaryCall", "StreamingOutputCall"]


def tls_grpc_upstream(make_grpc_server, make_gateway, pki, protocol, ca):
    """A gRPC server on TLS (origin.test's certificate, ALPN h2) and a
    gateway whose cluster reaches it over TLS trusting `ca`."""
    server = make_grpc_server(name="grpc-tls", tls=(pki.origin.cert_pem, pki.origin.key_pem))
    gw = make_gateway(make_config([server.address], cluster_options={
        "protocol": protocol, "tls": {"ca_file": str(ca.cert), "server_name": "origin.test"}}))
    return server, gw


def test_grpc_to_a_tls_upstream_picks_h2_by_alpn(make_grpc_server, make_gateway, grpc_stubs,
                                                 grpc_pki):
    # protocol: auto: the gRPC server offers only h2 over TLS; the gateway
    # verifies it (origin.test) and speaks HTTP/2 to it.
    tls_server, gw = tls_grpc_upstream(make_grpc_server, make_gateway, grpc_pki, "auto",
                                       grpc_pki.ca)
    with channel(gw.port) as ch:
        stub = grpc_stubs.test_pb2_grpc.TestServiceStub(ch)
        m = grpc_stubs.messages_pb2
        for _ in range(3):
            resp = stub.UnaryCall(m.SimpleRequest(response_size=314), timeout=CALL_TIMEOUT)
            assert len(resp.payload.body) == 314
    assert [c.method for c in tls_server.calls] == ["UnaryCall"] * 3


def test_grpc_to_an_unverifiable_tls_upstream_is_unavailable(make_grpc_server, make_gateway,
                                                             grpc_stubs, grpc_pki):
    tls_server, gw = tls_grpc_upstream(make_grpc_server, make_gateway, grpc_pki, "http2",
                                       grpc_pki.other_ca)
    with channel(gw.port) as ch:
        stub = grpc_stubs.test_pb2_grpc.TestServiceStub(ch)
        with pytest.raises(grpc.RpcError) as e:
            stub.EmptyCall(grpc_stubs.empty_pb2.Empty(), timeout=CALL_TIMEOUT)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "upstream_tls_verify_failed" in e.value.details(), e.value.details()
    assert tls_server.calls == []
