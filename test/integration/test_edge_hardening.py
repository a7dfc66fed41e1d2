"""Edge hardening: what a hostile or careless client, a squatting process or
an exhausted file-descriptor table must not be able to do to the gateway
(issue 8). Each test failed before the behaviour it names existed."""

import os
import resource
import socket
import stat
import time

import pytest

from portway_test_lib import (Gateway, GatewayError, HttpConn, build_request, make_config,
                              portway_bin, raw_request, wait_until)

pytestmark = pytest.mark.gateway


def _status_line(raw):
    return bytes(raw).split(b"\r\n", 1)[0]


# ------------------------------------------------------------ malformed input


def test_malformed_second_request_on_keep_alive_gets_the_same_400(origin, make_gateway):
    gw = make_gateway(make_config([origin.address]))
    bad = b"GET /x HTTP/1.1\r\nHost: a\r\nBad Header: v\r\n\r\n"
    fresh = raw_request(gw.port, bad, read_timeout=3.0).response()
    assert fresh.status == 400 and fresh.header("x-portway-error") == "invalid_header_name"

    raw = raw_request(gw.port, build_request("GET", "/ok") + bad, read_timeout=3.0)
    responses = raw.responses()
    assert [r.status for r in responses] == [200, 400], raw
    assert responses[1].header("x-portway-error") == "invalid_header_name"
    assert "close" in responses[1].connection_tokens()
    assert [r.path for r in origin.requests] == ["/ok"]  # neither 400 reached the origin


@pytest.mark.parametrize("target,cause", [
    ("http://user:pw@backend.test/", "invalid_host"),
    ("http://backend.test:99999/", "invalid_host"),
    ("http://backend.test:abc/", "invalid_host"),
    ("ftp://backend.test/", "invalid_target"),
    ("relative/path", "invalid_target"),
])
def test_absolute_form_authority_is_validated_like_host(origin, make_gateway, target, cause):
    gw = make_gateway(make_config([origin.address]))
    raw = raw_request(gw.port, f"GET {target} HTTP/1.1\r\nHost: backend.test\r\n\r\n".encode(),
                      read_timeout=3.0)
    r = raw.response()
    assert r.status == 400 and r.header("x-portway-error") == cause, raw
    assert origin.requests == []


def test_absolute_form_routes_by_the_authority_it_forwards(make_origin, make_gateway):
    a, b = make_origin("a"), make_origin("b")
    config = make_config(virtual_hosts=[
        {"name": "a", "domains": ["a.test"], "routes": [{"match": {"prefix": "/"}, "cluster": "a"}]},
        {"name": "b", "domains": ["b.test"], "routes": [{"match": {"prefix": "/"}, "cluster": "b"}]},
    ], clusters=[{"name": "a", "endpoints": [a.address]}, {"name": "b", "endpoints": [b.address]}])
    gw = make_gateway(config)
    # RFC 9112 3.2.2: the target's authority wins over Host, for routing and
    # for what the upstream is told alike.
    raw = raw_request(gw.port, b"GET http://b.test/p HTTP/1.1\r\nHost: a.test\r\n\r\n",
                      read_timeout=3.0)
    assert raw.response().status == 200, raw
    assert a.requests == []
    (req,) = b.requests
    assert req.header("host") == "b.test" and req.target == "/p"
    # No path but a query: the path is "/" (RFC 9112 3.2.2).
    raw = raw_request(gw.port, b"GET http://b.test?x=1 HTTP/1.1\r\nHost: a.test\r\n\r\n",
                      read_timeout=3.0)
    assert raw.response().status == 200, raw
    assert b.requests[-1].target == "/?x=1"


def test_tls_client_hello_on_a_plaintext_port_gets_400_at_once(origin, make_gateway):
    gw = make_gateway(make_config([origin.address]))
    hello = bytes([0x16, 0x03, 0x01, 0x00, 0xc8, 0x01, 0x00, 0x00, 0xc4, 0x03, 0x03]) + os.urandom(32)
    start = time.monotonic()
    raw = raw_request(gw.port, hello, read_timeout=5.0)
    elapsed = time.monotonic() - start
    r = raw.response()
    assert r.status == 400 and r.header("x-portway-error") == "bad_request_line", raw
    # The request-headers timeout is 10 s; the answer must not wait for it.
    assert elapsed < 2.0, f"answered after {elapsed:.2f}s"


# --------------------------------------------------------------- identity headers


def test_headers_with_underscores_are_dropped_by_default(origin, make_gateway):
    gw = make_gateway(make_config([origin.address]))
    with HttpConn(gw.port) as c:
        r = c.roundtrip("GET", "/", headers=[("X_Forwarded_For", "6.6.6.6"), ("X-Kept", "1")])
    assert r.status == 200
    (req,) = origin.requests
    assert not req.has_header("x_forwarded_for") and req.header("x-kept") == "1"
    assert req.header("x-forwarded-for") == "127.0.0.1"


def test_headers_with_underscores_allow_and_reject(origin, make_gateway):
    allow = make_gateway(make_config([origin.address], listener={"headers_with_underscores": "allow"}))
    with HttpConn(allow.port) as c:
        assert c.roundtrip("GET", "/", headers=[("X_Custom", "v")]).status == 200
    assert origin.requests[0].header("x_custom") == "v"

    origin.clear()
    reject = make_gateway(make_config([origin.address],
                                      listener={"headers_with_underscores": "reject"}))
    with HttpConn(reject.port) as c:
        r = c.roundtrip("GET", "/", headers=[("X_Custom", "v")])
    assert r.status == 400 and r.header("x-portway-error") == "header_name_with_underscore"
    assert origin.requests == []


def test_forwarded_and_x_real_ip_from_untrusted_clients_are_replaced(origin, make_gateway):
    gw = make_gateway(make_config([origin.address]))
    with HttpConn(gw.port) as c:
        c.roundtrip("GET", "/", headers=[("Forwarded", "for=6.6.6.6"), ("X-Real-IP", "6.6.6.6")])
    (req,) = origin.requests
    assert req.header_values("forwarded") == ["for=127.0.0.1;proto=http"]
    assert req.header_values("x-real-ip") == ["127.0.0.1"]


def test_forwarded_from_trusted_proxies_is_appended_to(origin, make_gateway):
    gw = make_gateway(make_config([origin.address],
                                  listener={"proxy_headers": {"trust_forwarded_for": True}}))
    with HttpConn(gw.port) as c:
        c.roundtrip("GET", "/", headers=[("Forwarded", "for=203.0.113.7"),
                                         ("X-Real-IP", "203.0.113.7")])
    (req,) = origin.requests
    assert req.header_values("forwarded") == ["for=203.0.113.7, for=127.0.0.1;proto=http"]
    assert req.header_values("x-real-ip") == ["203.0.113.7"]


def test_an_upstreams_x_portway_error_never_reaches_the_client(origin, make_gateway):
    def lying(ctx):
        ctx.send_response(200, headers=[("X-Portway-Error", "upstream_connect_refused")],
                          body=b"fine")
        return True
    origin.handlers["/lying"] = lying
    gw = make_gateway(make_config([origin.address]))
    with HttpConn(gw.port) as c:
        r = c.roundtrip("GET", "/lying")
    assert r.status == 200 and r.body == b"fine"
    assert not r.has_header("x-portway-error")


# ------------------------------------------------------------------ sockets


def test_a_port_another_process_holds_is_refused_not_shared(origin, make_gateway, tmp_path):
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    squatter.bind(("127.0.0.1", 0))
    squatter.listen(16)
    port = squatter.getsockname()[1]
    try:
        config = make_config([origin.address], listener={"address": f"127.0.0.1:{port}"})
        refused = Gateway(config)
        with pytest.raises(GatewayError) as failed:
            refused.start()
        assert "Address already in use" in str(failed.value)
        assert refused.proc.returncode == 1

        # The same through a reload: the new listener is refused, the old
        # config keeps serving.
        gw = make_gateway(make_config([origin.address]))
        extra = {"name": "squatted", "address": f"127.0.0.1:{port}",
                 "routes": [{"match": {"prefix": "/"}, "cluster": "backend"}]}
        gw.reload(make_config([origin.address], extra_listeners=[extra]))
        wait_until(lambda: "Address already in use" in gw.log_text(), 5.0)
        assert "squatted" not in gw.listeners()
        with HttpConn(gw.port) as c:
            assert c.roundtrip("GET", "/").status == 200
    finally:
        squatter.close()


def test_a_renamed_listener_takes_over_its_own_port(origin, make_gateway):
    gw = make_gateway(make_config([origin.address]))
    port = gw.port
    renamed = make_config([origin.address])
    renamed["listeners"][0].update({"name": "edge2", "address": f"127.0.0.1:{port}"})
    gw.reload(renamed)
    wait_until(lambda: "edge2" in gw.admin_json("/listeners")["listeners"][0]["name"], 5.0)

    # While the old listener's socket closes, a connection the kernel had
    # queued on it is reset (operations.md); after that edge2 serves alone.
    def served():
        try:
            with HttpConn(port, timeout=2.0) as c:
                return c.roundtrip("GET", "/").status == 200
        except Exception:  # a reset, while the old socket goes
            return False
    wait_until(served, 5.0, interval=0.1, message="edge2 serving on the old port")


def _cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_out_of_file_descriptors_pauses_accepting_instead_of_spinning(origin, make_gateway,
                                                                       tmp_path):
    # The soft and hard limits both 64: raising soft to hard gains nothing.
    wrapper = tmp_path / "portway-64fds"
    wrapper.write_text(f"#!/bin/sh\nulimit -n 64\nexec {portway_bin()} \"$@\"\n")
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    gw = make_gateway(make_config([origin.address]), binary=str(wrapper))
    assert "file descriptor limit (64) is below" in gw.log_text()

    clients = []
    try:
        for _ in range(120):
            s = socket.create_connection(("127.0.0.1", gw.port), timeout=2)
            clients.append(s)
        # The admin port cannot accept either now: the log tells.
        wait_until(lambda: "cannot accept: Too many open files" in gw.log_text(), 5.0)
        before = _cpu_seconds(gw.pid)
        time.sleep(1.0)
        used = _cpu_seconds(gw.pid) - before
        # Spinning burns the whole second; pausing 100 ms at a time costs
        # a few accept() calls.
        assert used < 0.3, f"gateway used {used:.2f}s of CPU in 1s while out of descriptors"
    finally:
        for s in clients:
            s.close()
    gw.wait_stat("portway_downstream_accept_errors_total", 1, timeout=10.0, listener="edge")
    # Rate-limited: one line per worker per 10 s however often it happened.
    assert gw.log_text().count("cannot accept") <= 2, gw.log_tail()
    # Descriptors free up: accepting resumes and requests are served.
    def served():
        try:
            with HttpConn(gw.port, timeout=2.0) as c:
                return c.roundtrip("GET", "/").status == 200
        except OSError:
            return False
    wait_until(served, 10.0, interval=0.2, message="a request served after descriptors freed")


def test_start_raises_the_soft_file_limit_to_the_hard_limit(origin, make_gateway, tmp_path):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard < 2048:
        pytest.skip(f"needs a hard RLIMIT_NOFILE of at least 2048 (have {hard})")
    wrapper = tmp_path / "portway-soft1024"
    wrapper.write_text(f"#!/bin/sh\nulimit -S -n 1024\nexec {portway_bin()} \"$@\"\n")
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    gw = make_gateway(make_config([origin.address]), binary=str(wrapper))
    with open(f"/proc/{gw.pid}/limits") as f:
        line = next(l for l in f if l.startswith("Max open files"))
    assert int(line.split()[3]) == hard, line
