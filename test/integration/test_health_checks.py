"""Active health checks and the panic threshold, end to end: a real gateway
probing real origins (HTTP, raw TCP, gRPC), hosts taken out and brought back,
and what /clusters, /stats and the log say about it."""

import collections
import os
import threading
import time
from pathlib import Path

import pytest

from portway_test_lib import (FakeOrigin, HttpConn, closed_port, listen_loopback, make_config,
                              run_validate, wait_until)

pytestmark = pytest.mark.gateway

FAST_CHECK = {"interval": "200ms", "timeout": "150ms", "unhealthy_threshold": 2,
              "healthy_threshold": 2}


def _hosts(gw, cluster="backend"):
    for c in gw.admin_json("/clusters")["clusters"]:
        if c["name"] == cluster:
            return {h["address"]: h for h in c["hosts"]}
    raise AssertionError(f"no cluster {cluster}")


def _flags(host):
    return [f["flag"] for f in host["flags"]]


def _checks_settled(gw, expect, cluster="backend"):
    """Every host's active checks say `expect[address]` ("passing"/"failing")."""
    hosts = _hosts(gw, cluster)
    return all(hosts[a].get("active_checks") == [state] for a, state in expect.items())


def _names(gw, n):
    names = []
    with HttpConn(gw.port) as conn:
        for i in range(n):
            r = conn.roundtrip("GET", f"/echo?i={i}")
            assert r.status == 200, r
            names.append(r.header("x-origin-name"))
    return names


def test_dead_origin_is_taken_out_and_brought_back(make_origin, make_gateway):
    a = make_origin("a")
    b = make_origin("b")
    check = dict(FAST_CHECK, http={"path": "/healthz"})
    a.handlers["/healthz"] = lambda ctx: ctx.send_response(200, body=b"ok") or True
    b.handlers["/healthz"] = lambda ctx: ctx.send_response(200, body=b"ok") or True
    gw = make_gateway(make_config([a.address, b.address],
                                  cluster_options={"health_checks": [check]}))
    wait_until(lambda: _checks_settled(gw, {a.address: "passing", b.address: "passing"}),
               message="both hosts pass their first checks")
    assert collections.Counter(_names(gw, 10)) == {"a": 5, "b": 5}

    port = b.port
    b.stop()
    killed = time.monotonic()
    # Out within interval x unhealthy_threshold (+ one timeout and slack).
    wait_until(lambda: "active_check" in _flags(_hosts(gw)[b.address]), timeout=3.0,
               message="the dead host is marked")
    took = time.monotonic() - killed
    assert took < 0.2 * 2 + 0.15 + 0.6, took
    host = _hosts(gw)[b.address]
    assert host["health"] == "unhealthy"
    assert "active check failed 2 time(s)" in host["reason"], host
    # No retry filter, and yet no 502: nothing is sent to the dead host.
    assert _names(gw, 20) == ["a"] * 20
    assert gw.stat("portway_upstream_hosts_healthy", cluster="backend") == 1
    assert gw.stat("portway_upstream_health_checks_total", cluster="backend", result="failed") >= 2
    assert "is out of balancing: active_check" in gw.log_text()

    # Back on the same port: healthy after healthy_threshold passes.
    b2 = FakeOrigin(name="b2", port=port).start()
    try:
        b2.handlers["/healthz"] = lambda ctx: ctx.send_response(200) or True
        wait_until(lambda: _flags(_hosts(gw)[b.address]) == [], timeout=3.0,
                   message="the host comes back")
        assert "active check passed 2 time(s)" in _hosts(gw)[b.address]["reason"]
        assert collections.Counter(_names(gw, 10)) == {"a": 5, "b2": 5}
        assert "is healthy again" in gw.log_text()
    finally:
        b2.stop()


def test_expected_statuses_decide(make_origin, make_gateway):
    a = make_origin("a")
    b = make_origin("b")
    a.handlers["/hc"] = lambda ctx: ctx.send_response(503) or True
    b.handlers["/hc"] = lambda ctx: ctx.send_response(503) or True
    clusters = [
        {"name": "backend", "endpoints": [a.address],
         "health_checks": [dict(FAST_CHECK, http={"path": "/hc"})]},
        {"name": "tolerant", "endpoints": [b.address],
         "health_checks": [dict(FAST_CHECK, http={"path": "/hc",
                                                  "expected_statuses": ["200", "500-503"]})]},
    ]
    gw = make_gateway(make_config(clusters=clusters))
    wait_until(lambda: _checks_settled(gw, {a.address: "failing"})
               and _checks_settled(gw, {b.address: "passing"}, cluster="tolerant"),
               message="503 fails the default check and passes 500-503")
    assert _hosts(gw)[a.address]["reason"].endswith("status 503")
    # The check's request: GET, the path, Host = the cluster's name.
    req = next(r for r in a.requests if r.path == "/hc")
    assert req.method == "GET"
    assert req.header("host") == "backend"
    assert req.header("user-agent") == "portway-health-check"
    # The only host fails and panic is on by default: 1 of 1 unusable is
    # under 50%, so the request still goes to it.
    with HttpConn(gw.port) as conn:
        assert conn.roundtrip("GET", "/echo").status == 200
    assert gw.stat("portway_upstream_lb_panic_total", cluster="backend") >= 1


class _TcpServer:
    """Answers `reply` to a connection that sends `expect`; counts them."""

    def __init__(self, expect=b"PING\r\n", reply=b"+PONG\r\n"):
        self.sock, self.port = listen_loopback()
        self.expect, self.reply = expect, reply
        self.accepted = 0
        self.stopped = False
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self):
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        data = b""
        conn.settimeout(2.0)
        try:
            while self.expect not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                data += chunk
            conn.sendall(self.reply)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self):
        self.stopped = True
        self.sock.close()


def test_tcp_check_send_and_expect(make_gateway):
    good = _TcpServer()
    wrong = _TcpServer(reply=b"-ERR\r\n")
    dead = closed_port()
    try:
        check = dict(FAST_CHECK, tcp={"send": "PING\r\n", "expect": "PONG"})
        endpoints = [f"127.0.0.1:{good.port}", f"127.0.0.1:{wrong.port}", f"127.0.0.1:{dead}"]
        gw = make_gateway(make_config(endpoints, cluster_options={"health_checks": [check]}))
        wait_until(lambda: _checks_settled(gw, {endpoints[0]: "passing", endpoints[1]: "failing",
                                                endpoints[2]: "failing"}),
                   message="tcp verdicts")
        hosts = _hosts(gw)
        assert "closed before the expected bytes" in hosts[endpoints[1]]["reason"]
        assert "connection refused" in hosts[endpoints[2]]["reason"]
        assert good.accepted >= 1
    finally:
        good.close()
        wrong.close()


def test_tcp_connect_only_check(make_gateway):
    server = _TcpServer()
    try:
        endpoint = f"127.0.0.1:{server.port}"
        gw = make_gateway(make_config([endpoint],
                                      cluster_options={"health_checks": [dict(FAST_CHECK,
                                                                              tcp={})]}))
        wait_until(lambda: _checks_settled(gw, {endpoint: "passing"}), message="connect passes")
        server.close()
        wait_until(lambda: _checks_settled(gw, {endpoint: "failing"}), timeout=3.0,
                   message="a closed port fails")
    finally:
        server.close()


def test_timeout_fails_the_probe(make_origin, make_gateway):
    a = make_origin("a")
    check = dict(FAST_CHECK, http={"path": "/delay/1"})
    gw = make_gateway(make_config([a.address], cluster_options={"health_checks": [check]}))
    wait_until(lambda: _checks_settled(gw, {a.address: "failing"}), timeout=3.0,
               message="a slow answer fails")
    assert "no answer within 150ms" in _hosts(gw)[a.address]["reason"]


def test_panic_threshold(make_origin, make_gateway):
    origins = [make_origin(n) for n in ("a", "b", "c")]
    endpoints = [{"address": origins[0].address},
                 {"address": origins[1].address, "health_status": "UNHEALTHY"},
                 {"address": origins[2].address, "health_status": "UNHEALTHY"}]
    # 1 of 3 usable: under the default 50%, so every host takes traffic.
    gw = make_gateway(make_config(endpoints))
    hosts = _hosts(gw)
    assert _flags(hosts[origins[1].address]) == ["control_plane_unhealthy"]
    names = _names(gw, 60)  # weighted random: each host is missed with p < 1e-10
    assert set(names) == {"a", "b", "c"}, collections.Counter(names)
    cluster = next(c for c in gw.admin_json("/clusters")["clusters"] if c["name"] == "backend")
    assert cluster["panic"] is True and cluster["usable_hosts"] == 1
    assert gw.stat("portway_upstream_lb_panic_total", cluster="backend") >= 60

    # Threshold 0: no panic; the usable host takes everything.
    config = make_config(endpoints, cluster_options={"healthy_panic_threshold": 0})
    gw.reload(config)
    wait_until(lambda: not next(c for c in gw.admin_json("/clusters")["clusters"]
                                if c["name"] == "backend")["panic"], message="reloaded")
    assert _names(gw, 12) == ["a"] * 12

    # The control plane (here the config) brings them back.
    gw.reload(make_config([o.address for o in origins],
                          cluster_options={"healthy_panic_threshold": 0}))
    wait_until(lambda: all(_flags(h) == [] for h in _hosts(gw).values()), message="cleared")
    assert set(_names(gw, 12)) == {"a", "b", "c"}


def test_draining_endpoint_gets_no_new_requests(make_origin, make_gateway):
    a = make_origin("a")
    b = make_origin("b")
    gw = make_gateway(make_config([a.address, {"address": b.address,
                                               "health_status": "DRAINING"}],
                                  cluster_options={"healthy_panic_threshold": 0}))
    assert _hosts(gw)[b.address]["health"] == "draining"
    assert _names(gw, 8) == ["a"] * 8


def test_checks_keep_their_verdict_across_a_reload(make_origin, make_gateway):
    a = make_origin("a")
    b = make_origin("b")
    b.handlers["/hc"] = lambda ctx: ctx.send_response(500) or True
    a.handlers["/hc"] = lambda ctx: ctx.send_response(200) or True
    check = dict(FAST_CHECK, interval="300ms", http={"path": "/hc"})
    config = make_config([a.address, b.address], cluster_options={"health_checks": [check]})
    gw = make_gateway(config)
    wait_until(lambda: _checks_settled(gw, {a.address: "passing", b.address: "failing"}),
               message="verdicts")
    since = _hosts(gw)[b.address]["flags"][0]["since"]
    # A reload that changes something else (a route) keeps the sessions.
    config["listeners"][0]["routes"].insert(0, {"match": {"prefix": "/other"},
                                                "cluster": "backend"})
    gw.reload(config)
    time.sleep(0.1)
    host = _hosts(gw)[b.address]
    assert host["flags"][0]["since"] == since
    assert host.get("active_checks") == ["failing"]
    assert _names(gw, 6) == ["a"] * 6

    # Removing the check clears its verdict.
    del config["clusters"][0]["health_checks"]
    gw.reload(config)
    wait_until(lambda: _flags(_hosts(gw)[b.address]) == [], message="check removed")
    assert "active check was removed" in _hosts(gw)[b.address]["reason"]


def test_bad_health_config_is_rejected_with_paths():
    config = make_config(["127.0.0.1:1"], cluster_options={
        "healthy_panic_threshold": 101,
        "health_checks": [
            {"interval": "1s", "timeout": "2s", "http": {"path": "nope",
                                                       "expected_statuses": ["2xx"]}},
            {"unhealthy_threshold": 0},
            {"grpc": {}},
            {"custom": {"name": "acme.nothing"}},
        ]})
    result = run_validate(config)
    assert result.returncode != 0
    out = result.stdout + result.stderr
    for path in ("clusters[0].healthy_panic_threshold",
                 "clusters[0].health_checks[0].timeout",
                 "clusters[0].health_checks[0].http.path",
                 "clusters[0].health_checks[0].http.expected_statuses[0]",
                 "clusters[0].health_checks[1].unhealthy_threshold",
                 "clusters[0].health_checks[1]: needs one of",
                 "clusters[0].health_checks[2].grpc",
                 "clusters[0].health_checks[3].custom.name"):
        assert path in out, (path, out)


def test_grpc_health_check(make_grpc_server, make_gateway):
    server = make_grpc_server()
    address = f"127.0.0.1:{server.port}"
    clusters = [
        {"name": "grpc", "endpoints": [address], "protocol": "http2",
         "health_checks": [dict(FAST_CHECK, grpc={})]},
        {"name": "grpc-unknown-service", "endpoints": [address], "protocol": "http2",
         "health_checks": [dict(FAST_CHECK, grpc={"service": "no.such.Service"})]},
    ]
    gw = make_gateway(make_config(clusters=clusters,
                                  routes=[{"match": {"prefix": "/"}, "cluster": "grpc"}]))
    wait_until(lambda: _checks_settled(gw, {address: "passing"}, cluster="grpc")
               and _checks_settled(gw, {address: "failing"}, cluster="grpc-unknown-service"),
               message="gRPC verdicts")
    assert "grpc-status 5" in _hosts(gw, "grpc-unknown-service")[address]["reason"]
    checks = [c for c in server.calls if c.method == "Health.Check"]
    assert checks, "the server saw the checks"


def test_custom_checker_from_a_module(make_origin, make_gateway, tmp_path):
    module = Path(os.environ.get("PORTWAY_BUILD_DIR", "build")) / "test" / "modules" / \
        "file_health.so"
    if not module.exists():
        pytest.fail(f"test module {module} not built (build the whole tree first)")
    a = make_origin("a")
    b = make_origin("b")
    # Several config fields: a map, which must not make an unchanged check
    # look changed at a reload.
    check = dict(FAST_CHECK, custom={"name": "test.file_health",
                                     "config": {"dir": str(tmp_path), "x": "1", "y": "2",
                                                "z": "3"}})
    config = make_config([a.address, b.address], cluster_options={"health_checks": [check]})
    config["modules"] = [{"path": str(module.resolve())}]
    (tmp_path / str(b.port)).write_text("down")
    gw = make_gateway(config)
    wait_until(lambda: _checks_settled(gw, {a.address: "passing", b.address: "failing"}),
               message="the module's verdicts")
    assert _hosts(gw)[b.address]["reason"].endswith(f"{tmp_path}/{b.port} exists")
    assert _names(gw, 6) == ["a"] * 6
    for _ in range(5):
        gw.reload(config)
    time.sleep(0.2)
    assert "its active check changed" not in gw.log_text()
    assert _hosts(gw)[b.address].get("active_checks") == ["failing"]
    (tmp_path / str(b.port)).unlink()
    wait_until(lambda: _flags(_hosts(gw)[b.address]) == [], timeout=3.0, message="back")

    # The checker's own config errors carry the check's path.
    bad = make_config([a.address], cluster_options={"health_checks": [
        dict(FAST_CHECK, custom={"name": "test.file_health", "config": {}})]})
    bad["modules"] = [{"path": str(module.resolve())}]
    result = run_validate(bad)
    assert result.returncode != 0
    assert "clusters[0].health_checks[0].custom.config.dir: is required" in \
        result.stdout + result.stderr


def _cluster(gw, name="backend"):
    return next(c for c in gw.admin_json("/clusters")["clusters"] if c["name"] == name)


def test_an_address_listed_twice_is_two_hosts_across_reloads(make_origin, make_gateway):
    up = make_origin("up")
    dead = closed_port()
    endpoints = [f"127.0.0.1:{dead}", f"127.0.0.1:{dead}", up.address]
    check = dict(FAST_CHECK, tcp={})
    config = make_config(endpoints, cluster_options={"health_checks": [check]})
    gw = make_gateway(config)
    wait_until(lambda: _cluster(gw)["usable_hosts"] == 1, message="two dead hosts found")
    assert _cluster(gw)["panic"] is True
    gw.reload(config)  # unchanged: each host keeps its own Host, counted once
    time.sleep(0.3)
    cluster = _cluster(gw)
    assert (cluster["usable_hosts"], cluster["panic"]) == (1, True), cluster
    assert len(cluster["hosts"]) == 3


def test_removing_a_failing_host_keeps_the_healthy_gauge_right(make_origin, make_gateway):
    a = make_origin("a")
    dead = f"127.0.0.1:{closed_port()}"
    check = dict(FAST_CHECK, tcp={})
    gw = make_gateway(make_config([a.address, dead], cluster_options={"health_checks": [check]}))
    wait_until(lambda: _checks_settled(gw, {dead: "failing"}), message="dead host out")
    gw.reload(make_config([a.address], cluster_options={"health_checks": [check]}))
    wait_until(lambda: len(_hosts(gw)) == 1, message="reloaded")
    assert gw.stat("portway_upstream_hosts", cluster="backend") == 1
    assert gw.stat("portway_upstream_hosts_healthy", cluster="backend") == 1
    assert f"{dead} of cluster 'backend' is healthy again" not in gw.log_text()


def test_dns_cluster_keeps_its_hosts_when_only_health_status_changes(make_origin,
                                                                       make_gateway):
    a = make_origin("a")
    b = make_origin("b")
    b.handlers["/hc"] = lambda ctx: ctx.send_response(500) or True
    a.handlers["/hc"] = lambda ctx: ctx.send_response(200) or True
    check = dict(FAST_CHECK, http={"path": "/hc"})

    def config(status_a):
        return make_config(clusters=[{
            "name": "backend", "type": "dns", "healthy_panic_threshold": 0,
            "health_checks": [check],
            "endpoints": [{"address": f"127.0.0.1:{a.port}", "health_status": status_a},
                          {"address": f"127.0.0.1:{b.port}"}]}])

    gw = make_gateway(config("HEALTHY"))
    wait_until(lambda: _checks_settled(gw, {a.address: "passing", b.address: "failing"}),
               message="verdicts")
    gw.reload(config("DRAINING"))
    wait_until(lambda: _hosts(gw)[a.address]["health"] == "draining", message="a drains")
    # b kept its Host and its verdict: still failing, not pending.
    assert _hosts(gw)[b.address].get("active_checks") == ["failing"]
    assert "its active check" not in gw.log_text()
    with HttpConn(gw.port) as conn:
        r = conn.roundtrip("GET", "/echo")
    assert r.status == 503, r  # a drains, b fails: no usable host, no panic
