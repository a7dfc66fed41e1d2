"""Process lifecycle (SIGTERM drain, SIGHUP reload, --validate), the admin
endpoint, listener limits and timeouts, access log."""

import json
import re
import signal
import socket
import subprocess
import time

import pytest

from portway_test_lib import (HttpConn, build_request, closed_port, make_cluster, make_config, to_yaml,
                              raw_request, run_in_thread, run_validate, wait_until)

pytestmark = pytest.mark.gateway


def direct(body, **match):
    return {"match": match or {"prefix": "/"}, "direct_response": {"status": 200, "body": body}}


def fetch(gw, target="/", timeout=5.0):
    with HttpConn(gw.port, timeout=timeout) as c:
        return c.roundtrip("GET", target)


def _body_or_none(gw, target="/"):
    try:
        return fetch(gw, target, timeout=2.0).body
    except Exception:  # noqa: BLE001 - any failure means "not yet"
        return None


# --------------------------------------------------------------------------- admin


def test_ready_is_200_when_serving(proxy):
    status, _, _ = proxy.admin_get("/ready")
    assert status == 200


def test_listeners_reports_bound_addresses(proxy):
    data = proxy.admin_json("/listeners")
    [entry] = data["listeners"]
    assert entry["name"] == "edge"
    host, port = entry["address"].rsplit(":", 1)
    assert host == "127.0.0.1" and int(port) > 0
    with HttpConn(int(port)) as c:
        assert c.roundtrip("GET", "/echo").status == 200


def test_listeners_reports_every_listener(origin, make_gateway):
    second = {"name": "second", "address": "127.0.0.1:0",
              "routes": [direct("from-second")]}
    gw = make_gateway(make_config([origin.address], extra_listeners=[second]))
    names = {e["name"]: e["address"] for e in gw.admin_json("/listeners")["listeners"]}
    assert set(names) == {"edge", "second"}
    assert names["edge"] != names["second"]
    with HttpConn(gw.listener_port("second")) as c:
        assert c.roundtrip("GET", "/").body == b"from-second"


def test_clusters_reports_hosts_and_counts(proxy, origin):
    with HttpConn(proxy.port) as c:
        for _ in range(3):
            assert c.roundtrip("GET", "/echo").status == 200
    data = proxy.admin_json("/clusters")
    [cluster] = [c for c in data["clusters"] if c["name"] == "backend"]
    [host] = cluster["hosts"]
    assert host["address"] == origin.address
    assert host["health"] == "healthy"
    assert host["requests_total"] == 3
    assert host["active_requests"] == 0
    assert host["connect_failures"] == 0
    assert host["active_connections"] == 1  # the kept-alive upstream connection


def test_clusters_counts_connect_failures(make_gateway):
    dead = f"127.0.0.1:{closed_port()}"
    gw = make_gateway(make_config([dead]))
    for _ in range(2):
        assert fetch(gw).status == 502
    [cluster] = gw.admin_json("/clusters")["clusters"]
    [host] = cluster["hosts"]
    assert host["address"] == dead and host["connect_failures"] == 2


def test_clusters_shows_active_requests(proxy, origin):
    slow = run_in_thread(fetch, proxy, "/delay/1")
    origin.wait_for_requests(1)
    [host] = proxy.admin_json("/clusters")["clusters"][0]["hosts"]
    assert host["active_requests"] == 1
    assert slow.result(5.0).status == 200


def _walk_keys(value):
    if isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _walk_keys(v)
    elif isinstance(value, list):
        for v in value:
            yield from _walk_keys(v)


def _find_config(data):
    """The config itself, or the object wrapping it (e.g. {"version": 1, "bootstrap": {...}})."""
    if isinstance(data, dict):
        if "listeners" in data and "clusters" in data:
            return data
        for v in data.values():
            found = _find_config(v)
            if found is not None:
                return found
    return None


def test_config_dump_reflects_running_config(proxy, origin):
    dump = proxy.admin_json("/config_dump")
    data = _find_config(dump)
    assert data is not None, f"no listeners+clusters object in /config_dump: {dump}"
    text = json.dumps(data)
    assert [l["name"] for l in data["listeners"]] == ["edge"]
    assert [c["name"] for c in data["clusters"]] == ["backend"]
    assert origin.address in text
    keys = set(_walk_keys(dump))
    assert "connect_timeout" in keys and "drain_timeout" in keys
    camel = sorted(k for k in keys if re.search(r"[a-z][A-Z]", k))
    assert not camel, f"camelCase keys in /config_dump: {camel}"


def test_stats_count_requests_and_responses(proxy):
    with HttpConn(proxy.port) as c:
        for _ in range(3):
            c.roundtrip("GET", "/echo")
        c.roundtrip("GET", "/status/404")
    proxy.wait_stat("portway_downstream_requests_total", 4, listener="edge")
    s = proxy.stats()
    assert s.get_value("portway_downstream_requests_total", listener="edge") == 4
    assert s.get_value("portway_downstream_responses_total", listener="edge", **{"class": "2xx"}) == 3
    assert s.get_value("portway_downstream_responses_total", listener="edge", **{"class": "4xx"}) == 1
    assert s.get_value("portway_upstream_requests_total", cluster="backend") == 4
    assert s.get_value("portway_upstream_responses_total", cluster="backend", **{"class": "2xx"}) == 3
    assert s.get_value("portway_upstream_responses_total", cluster="backend", **{"class": "4xx"}) == 1
    assert s.get_value("portway_local_replies_total") == 0


def test_stats_count_per_route_and_survive_reload(origin, make_gateway):
    routes = [
        {"name": "api", "match": {"prefix": "/status"}, "cluster": "backend"},
        {"match": {"path": "/hello"}, "direct_response": {"status": 200, "body": "hi"}},
        {"match": {"prefix": "/"}, "cluster": "backend"},
    ]
    gw = make_gateway(make_config([origin.address], routes=routes))
    with HttpConn(gw.port) as c:
        assert c.roundtrip("GET", "/status/404").status == 404  # the origin's answer
        assert c.roundtrip("GET", "/hello").status == 200
        assert c.roundtrip("GET", "/echo").status == 200
        assert c.roundtrip("GET", "/echo").status == 200
    # Responses are counted when the stream finishes, which can be just
    # after the client has read the last byte: wait for that count.
    gw.wait_stat("portway_route_responses_total", 2, listener="edge", route="default/2",
                 **{"class": "2xx"})
    s = gw.stats()
    assert s.get_value("portway_downstream_requests_total", listener="edge") == 4
    assert s.get_value("portway_route_requests_total", listener="edge", route="api") == 1
    assert s.get_value("portway_route_responses_total", listener="edge", route="api",
                       **{"class": "4xx"}) == 1
    # Unnamed routes are labelled "<virtual host>/<index>".
    assert s.get_value("portway_route_requests_total", listener="edge", route="default/1") == 1
    assert s.get_value("portway_route_requests_total", listener="edge", route="default/2") == 2
    assert s.get_value("portway_route_responses_total", listener="edge", route="default/2",
                       **{"class": "2xx"}) == 2
    # A reload keeps counters of routes that keep their label.
    gw.reload(make_config([origin.address], routes=routes))
    wait_until(lambda: gw.admin_json("/config_dump").get("version") == 2, 5.0,
               message="config version 2 applied")
    with HttpConn(gw.port) as c:
        assert c.roundtrip("GET", "/status/404").status == 404
    gw.wait_stat("portway_route_requests_total", 2, listener="edge", route="api")


def test_stats_histograms_are_consistent(proxy):
    with HttpConn(proxy.port) as c:
        for _ in range(3):
            c.roundtrip("GET", "/echo")
    proxy.wait_stat("portway_upstream_request_duration_seconds_count", 3, cluster="backend")
    s = proxy.stats()
    for name, count in (("portway_upstream_request_duration_seconds", 3),
                        ("portway_upstream_connect_duration_seconds", 1)):
        assert s.get_value(name + "_count", cluster="backend") == count, name
        assert s.get_value(name + "_sum", cluster="backend") >= 0
        buckets = sorted(((float(dict(ls)["le"]), v) for ls, v in s.series(name + "_bucket").items()
                          if dict(ls).get("cluster") == "backend"))
        assert buckets and buckets[-1][0] == float("inf") and buckets[-1][1] == count, buckets
        values = [v for _, v in buckets]
        assert values == sorted(values), f"{name} buckets are not cumulative: {buckets}"


def test_stats_connection_gauges(proxy):
    c = HttpConn(proxy.port)
    c.roundtrip("GET", "/echo")
    proxy.wait_stat("portway_downstream_connections_active", 1, listener="edge")
    assert proxy.stat("portway_downstream_connections_active", listener="edge") == 1
    assert proxy.stat("portway_upstream_connections_active", cluster="backend") == 1
    c.close()
    wait_until(lambda: proxy.stat("portway_downstream_connections_active", listener="edge") == 0,
               3.0, interval=0.05, message="downstream_connections_active to drop to 0")


# --------------------------------------------------------------------------- SIGTERM


@pytest.fixture
def drain_gw(origin, make_gateway):
    return make_gateway(make_config([origin.address], drain_timeout="5s"))


def _start_inflight(gw, origin, seconds):
    before = len(origin.requests)
    c = HttpConn(gw.port, timeout=15.0)
    c.request("GET", f"/delay/{seconds}")
    origin.wait_for_requests(before + 1)
    return c


def test_sigterm_lets_inflight_request_finish_and_exits_zero(drain_gw, origin):
    c = _start_inflight(drain_gw, origin, 1)
    drain_gw.send_signal(signal.SIGTERM)
    r = c.read_response(timeout=6.0)
    c.close()
    assert r.status == 200 and r.body == b"delayed"
    assert drain_gw.wait_exit(6.0) == 0


def test_sigterm_inflight_response_has_connection_close(drain_gw, origin):
    c = _start_inflight(drain_gw, origin, 1)
    drain_gw.send_signal(signal.SIGTERM)
    r = c.read_response(timeout=6.0)
    assert r.status == 200
    assert "close" in r.connection_tokens(), r.headers
    assert c.wait_closed(3.0)
    c.close()


def test_sigterm_turns_ready_503(drain_gw, origin):
    c = _start_inflight(drain_gw, origin, 1.5)
    drain_gw.send_signal(signal.SIGTERM)
    seen = []

    def ready_503():
        try:
            status, _, _ = drain_gw.admin_get("/ready", timeout=1.0)
        except OSError as e:
            seen.append(repr(e))
            return False
        seen.append(status)
        return status == 503

    try:
        wait_until(ready_503, 1.0, interval=0.02)
    except TimeoutError:
        pytest.fail(f"/ready never answered 503 while draining; saw {seen[-5:]}")
    finally:
        c.close()


def test_sigterm_stops_accepting_new_connections(drain_gw, origin):
    c = _start_inflight(drain_gw, origin, 1.5)
    port = drain_gw.port
    drain_gw.send_signal(signal.SIGTERM)

    def rejected():
        try:
            r = raw_request(port, build_request("GET", "/echo"), read_timeout=1.0)
        except (ConnectionRefusedError, ConnectionResetError):
            return True
        return r == b"" and r.closed

    try:
        wait_until(rejected, 2.0, interval=0.05)
    except TimeoutError:
        pytest.fail("the listener still serves new connections after SIGTERM")
    assert c.read_response(timeout=5.0).status == 200
    c.close()


def test_sigterm_closes_idle_keepalive_connections(drain_gw, origin):
    idle = HttpConn(drain_gw.port)
    assert idle.roundtrip("GET", "/echo").status == 200
    busy = _start_inflight(drain_gw, origin, 1.5)
    t0 = time.monotonic()
    drain_gw.send_signal(signal.SIGTERM)
    assert idle.wait_closed(3.0), "idle keep-alive connection left open during drain"
    assert time.monotonic() - t0 < 1.4, "idle connection closed only when the drain ended"
    assert not idle.buf, f"unexpected bytes on the idle connection: {bytes(idle.buf)!r}"
    assert busy.read_response(timeout=5.0).status == 200
    idle.close()
    busy.close()


def test_sigterm_exits_promptly_when_idle(proxy):
    with HttpConn(proxy.port) as c:
        c.roundtrip("GET", "/echo")
        t0 = time.monotonic()
        proxy.send_signal(signal.SIGTERM)
        assert proxy.wait_exit(3.0) == 0
    assert time.monotonic() - t0 < 3.0


def test_drain_timeout_bounds_shutdown(origin, make_gateway):
    gw = make_gateway(make_config([origin.address], drain_timeout="1s"))
    c = _start_inflight(gw, origin, 30)
    t0 = time.monotonic()
    gw.send_signal(signal.SIGTERM)
    code = gw.wait_exit(5.0)
    elapsed = time.monotonic() - t0
    assert code == 0, f"exit code {code} after {elapsed:.1f}s"
    assert 0.8 <= elapsed < 4.0, elapsed
    try:
        r = c.read_response(timeout=2.0)
        assert not r.complete, "the abandoned request got a complete response"
    except Exception:  # noqa: BLE001 - closed/reset with nothing is what we expect
        pass
    c.close()


# --------------------------------------------------------------------------- SIGHUP


def test_sighup_good_reload_changes_direct_response(make_gateway):
    gw = make_gateway(make_config(routes=[direct("v1")]))
    assert fetch(gw).body == b"v1"
    gw.reload(make_config(routes=[direct("v2")]))
    wait_until(lambda: _body_or_none(gw) == b"v2", 5.0, message="reloaded response v2")
    assert gw.alive()
    assert gw.admin_get("/ready")[0] == 200


def test_sighup_reload_adds_cluster_and_route(make_gateway, make_origin):
    a, b = make_origin("a"), make_origin("b")
    cfg = make_config(clusters=[make_cluster("ca", [a.address])],
                      routes=[{"match": {"prefix": "/"}, "cluster": "ca"}])
    gw = make_gateway(cfg)
    assert fetch(gw, "/b/echo").header("x-origin-name") == "a"
    cfg2 = make_config(clusters=[make_cluster("ca", [a.address]), make_cluster("cb", [b.address])],
                       routes=[{"match": {"prefix": "/b/"}, "cluster": "cb"},
                               {"match": {"prefix": "/"}, "cluster": "ca"}])
    gw.reload(cfg2)

    def served_by_b():
        try:
            return fetch(gw, "/b/echo", timeout=2.0).header("x-origin-name") == "b"
        except Exception:  # noqa: BLE001
            return False

    wait_until(served_by_b, 5.0, message="route to the new cluster")
    assert fetch(gw, "/other").header("x-origin-name") == "a"


def test_config_dump_follows_reload(make_gateway):
    gw = make_gateway(make_config(routes=[direct("v1")]))
    gw.reload(make_config(routes=[direct("v2-in-dump")]))
    wait_until(lambda: _body_or_none(gw) == b"v2-in-dump", 5.0)
    assert "v2-in-dump" in json.dumps(gw.admin_json("/config_dump"))


def test_sighup_keeps_existing_connection_usable(make_gateway):
    gw = make_gateway(make_config(routes=[direct("v1")]))
    with HttpConn(gw.port) as c:
        assert c.roundtrip("GET", "/").body == b"v1"
        gw.reload(make_config(routes=[direct("v2")]))
        wait_until(lambda: _body_or_none(gw) == b"v2", 5.0)
        r = c.roundtrip("GET", "/")
        assert r.status == 200 and r.body in (b"v1", b"v2")


BAD_ROUTE_CONFIG = """\
admin: { address: 127.0.0.1:0 }
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - match: { prefx: / }
        direct_response: { status: 200, body: "broken" }
"""


def test_sighup_bad_reload_keeps_old_config(make_gateway):
    gw = make_gateway(make_config(routes=[direct("v1")]))
    gw.reload(BAD_ROUTE_CONFIG)
    try:
        wait_until(lambda: "prefx" in gw.log_text(), 5.0)
    except TimeoutError:
        pytest.fail("a rejected reload did not log its error (no 'prefx' in the logs)\n"
                    + gw.log_tail())
    assert gw.alive()
    assert fetch(gw).body == b"v1"
    assert gw.admin_get("/ready")[0] == 200


def test_sighup_unparsable_yaml_keeps_old_config(make_gateway):
    gw = make_gateway(make_config(routes=[direct("v1")]))
    gw.reload("listeners: [ { name: edge,\n  this is : not : yaml ]]]\n")
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        assert fetch(gw).body == b"v1"
        assert gw.alive()
        time.sleep(0.1)


def test_sighup_good_reload_after_bad_reload_applies(make_gateway):
    gw = make_gateway(make_config(routes=[direct("v1")]))
    gw.reload(BAD_ROUTE_CONFIG)
    wait_until(lambda: "prefx" in gw.log_text(), 5.0)
    gw.reload(make_config(routes=[direct("v3")]))
    wait_until(lambda: _body_or_none(gw) == b"v3", 5.0, message="v3 after a failed reload")


# --------------------------------------------------------------------------- --validate

FIELD_ERRORS_CONFIG = """\
admin: { address: 127.0.0.1:0 }
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - match: { prefx: / }
        cluster: backend
clusters:
  - name: backend
    endpoints: [127.0.0.1:8080]
    lb_policy: round_robn
    connect_timeout: fast
"""


def _has_error_line(stderr, path):
    pattern = re.compile(r"(?:^|\s)" + re.escape(path) + r": \S")
    return any(pattern.search(line) for line in stderr.splitlines())


def test_validate_reports_every_field_error_with_its_path(portway_binary):
    p = run_validate(FIELD_ERRORS_CONFIG, binary=portway_binary)
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    for path in ("listeners[0].routes[0].match.prefx", "clusters[0].lb_policy",
                 "clusters[0].connect_timeout"):
        assert _has_error_line(p.stderr, path), f"no '{path}: ...' line in:\n{p.stderr}"


def test_validate_reports_unknown_cluster_reference(portway_binary):
    cfg = make_config([f"127.0.0.1:{closed_port()}"], routes=[
        {"match": {"prefix": "/a"}, "cluster": "backend"},
        {"match": {"prefix": "/"}, "cluster": "missing"}])
    p = run_validate(cfg, binary=portway_binary)
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    assert _has_error_line(p.stderr, "listeners[0].routes[1].cluster"), p.stderr


def test_validate_accepts_good_config(portway_binary):
    cfg = make_config(["127.0.0.1:8080", {"address": "127.0.0.1:8081", "weight": 2}])
    p = run_validate(cfg, binary=portway_binary)
    assert p.returncode == 0, (p.stdout, p.stderr)
    assert "configuration OK" in p.stdout + p.stderr


def test_validate_does_not_bind(portway_binary):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        cfg = make_config(["127.0.0.1:8080"], listener={"address": f"127.0.0.1:{port}"})
        p = run_validate(cfg, binary=portway_binary)
    assert p.returncode == 0, (p.stdout, p.stderr)


# --------------------------------------------------------------------------- limits & timeouts


@pytest.mark.parametrize("workers", [1, 2])
def test_max_connections_limit(origin, make_gateway, workers):
    gw = make_gateway(make_config([origin.address], listener={"limits": {"max_connections": 2}}),
                      workers=workers)
    first = [HttpConn(gw.port), HttpConn(gw.port)]
    try:
        for c in first:
            assert c.roundtrip("GET", "/echo").status == 200
        try:
            extra = HttpConn(gw.port)
        except (ConnectionResetError, ConnectionRefusedError):
            extra = None  # accepted and reset at once: rejected
        if extra is not None:
            with extra:
                try:
                    extra.send(build_request("GET", "/echo"))
                except (BrokenPipeError, ConnectionResetError):
                    pass
                assert extra.wait_closed(3.0), "a connection over max_connections stayed open"
                assert not extra.buf, \
                    f"over-limit connection got a response: {bytes(extra.buf[:200])!r}"
        first[0].close()

        def new_connection_served():
            try:
                with HttpConn(gw.port, timeout=2.0) as c:
                    return c.roundtrip("GET", "/echo").status == 200
            except Exception:  # noqa: BLE001
                return False

        wait_until(new_connection_served, 3.0, message="a slot after closing a connection")
    finally:
        for c in first:
            c.close()
    assert len(origin.requests) == 3


def test_idle_timeout_closes_idle_connection(origin, make_gateway):
    gw = make_gateway(make_config([origin.address], listener={"timeouts": {"idle_timeout": "1s"}}))
    with HttpConn(gw.port) as c:
        assert c.roundtrip("GET", "/echo").status == 200
        t0 = time.monotonic()
        assert c.wait_closed(4.0), "idle connection not closed"
        elapsed = time.monotonic() - t0
    assert 0.5 <= elapsed < 3.5, elapsed


def test_idle_timeout_applies_before_first_request(make_gateway):
    gw = make_gateway(make_config(routes=[direct("x")], listener={
        "timeouts": {"idle_timeout": "1s", "request_headers_timeout": "30s"}}))
    with HttpConn(gw.port) as c:
        assert c.wait_closed(4.0), "a connection that never sent a byte was kept"
        assert not c.buf


def test_idle_timeout_does_not_cut_active_request(origin, make_gateway):
    gw = make_gateway(make_config([origin.address], listener={"timeouts": {"idle_timeout": "1s"}}))
    with HttpConn(gw.port, timeout=5.0) as c:
        r = c.roundtrip("GET", "/delay/1.8")
    assert r.status == 200


def test_request_headers_timeout_counts_from_first_byte(origin, make_gateway):
    """Slowloris: trickling header bytes does not extend request_headers_timeout."""
    gw = make_gateway(make_config([origin.address], listener={
        "timeouts": {"request_headers_timeout": "1s", "idle_timeout": "30s"}}))
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=5.0)
    got = b""
    t0 = time.monotonic()
    try:
        s.sendall(b"GET /echo HTTP/1.1\r\nHost: a\r\nX-Slow: ")
        s.settimeout(0.2)
        while time.monotonic() - t0 < 4.0:
            try:
                data = s.recv(65536)
                if not data:
                    break
                got += data
            except socket.timeout:
                pass
            except ConnectionResetError:
                break
            try:
                s.sendall(b"a")
            except (BrokenPipeError, ConnectionResetError):
                break
    finally:
        s.close()
    elapsed = time.monotonic() - t0
    assert elapsed < 3.0, "trickled headers kept the connection open past the timeout"
    assert got.startswith(b"HTTP/1.1 408"), got[:200]
    assert b"request_header_timeout" in got.lower()
    assert origin.all_requests == []


def test_access_log_writes_json_lines(origin, make_gateway, tmp_path):
    log = tmp_path / "access.log"
    gw = make_gateway(make_config([origin.address],
                                  access_log={"path": str(log), "format": "json"}))
    with HttpConn(gw.port) as c:
        c.roundtrip("GET", "/echo?first")
        c.roundtrip("GET", "/status/404")

    def two_lines():
        try:
            lines = [l for l in log.read_text().splitlines() if l.strip()]
        except FileNotFoundError:
            return None
        return lines if len(lines) >= 2 else None

    lines = wait_until(two_lines, 5.0, message="2 access-log lines")
    entries = [json.loads(l) for l in lines]
    assert len(entries) == 2
    text = json.dumps(entries)
    assert "404" in text and "/echo" in text


def _log_lines(log, n):
    def enough():
        try:
            lines = [l for l in log.read_text().splitlines() if l.strip()]
        except FileNotFoundError:
            return None
        return lines if len(lines) >= n else None

    return wait_until(enough, 5.0, message=f"{n} access-log lines")


# The text line as docs/operations.md documents it, field by field.
_TEXT_LINE_RE = re.compile(
    r'^\[(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)\] "(\S+) (\S+) HTTP/1\.1" (\d+) (\S+) '
    r'(\d+) (\d+) (\d+\.\d{3}) (\S+) "(\S+)" "(\S+)" listener=(\S+) route=(\S+) '
    r'cluster=(\S+) error=(\S+) attempts=(\d+)( replay_overflow)?$')


def test_access_log_text_line_has_the_documented_fields(make_origin, make_gateway, tmp_path):
    origin = make_origin()
    dead = f"127.0.0.1:{closed_port()}"
    log = tmp_path / "access.log"
    retry = {"name": "portway.retry",
             "config": {"retry_on": ["connect-failure"], "num_retries": 3,
                        "retry_non_idempotent": True, "max_replay_bytes": 4,
                        "backoff": {"base_interval": "1ms"}}}
    gw = make_gateway(make_config(
        clusters=[make_cluster("good", [origin.address]), make_cluster("dead", [dead])],
        routes=[{"name": "up", "match": {"prefix": "/up"}, "cluster": "good"},
                {"match": {"prefix": "/"}, "cluster": "dead"}],
        listener={"filters": [retry]},
        access_log={"path": str(log), "format": "text"}))
    with HttpConn(gw.port) as c:
        assert c.roundtrip("GET", "/up/echo").status == 200
        assert c.roundtrip("GET", "/down").status == 502
        assert c.roundtrip("POST", "/down", body=b"too long to replay").status == 502
    lines = _log_lines(log, 3)
    fields = [_TEXT_LINE_RE.match(l) for l in lines]
    assert all(fields), lines
    ok, retried, overflow = [m.groups() for m in fields]
    assert ok[1:5] == ("GET", "/up/echo", "200", "-")
    assert ok[9] == origin.address and ok[11:16] == ("edge", "up", "good", "-", "1")
    assert ok[16] is None
    # One try and three retries on the one dead host, all refused.
    assert retried[3:5] == ("502", "UCR") and retried[11:16] == (
        "edge", "default/1", "dead", "upstream_connect_refused", "4")
    assert retried[8] == "-" and retried[16] is None
    # The body was over max_replay_bytes: one attempt, and the log says why.
    assert overflow[1] == "POST" and overflow[5] == "18" and overflow[15] == "1"
    assert overflow[16] == " replay_overflow"


# --------------------------------------------------------------------------- review fixes


def test_second_instance_on_same_admin_address_refuses_to_start(origin, make_gateway, tmp_path):
    gw = make_gateway(make_config([origin.address]))
    config = make_config([origin.address])
    config["admin"] = {"address": f"127.0.0.1:{gw.admin_port}"}
    path = tmp_path / "second.yaml"
    path.write_text(to_yaml(config))
    r = subprocess.run([gw.binary, "-c", str(path), "--workers", "1"], capture_output=True,
                       text=True, timeout=10, stdin=subprocess.DEVNULL)
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "admin.address" in r.stderr and "bind" in r.stderr, r.stderr
    # The first one is untouched.
    assert gw.admin_get("/ready")[0] == 200


def test_reload_keeps_host_counters_of_unchanged_endpoints(origin, make_gateway):
    config = make_config([origin.address])
    gw = make_gateway(config)
    with HttpConn(gw.port) as c:
        for _ in range(3):
            assert c.roundtrip("GET", "/echo").status == 200

    def host_requests():
        hosts = gw.admin_json("/clusters")["clusters"][0]["hosts"]
        return hosts[0]["requests_total"]

    assert host_requests() == 3
    config["listeners"][0]["routes"].insert(
        0, {"match": {"path": "/hi"}, "direct_response": {"status": 200, "body": "hi"}})
    gw.reload(config)
    wait_until(lambda: gw.admin_json("/config_dump").get("version") == 2, 5.0,
               message="config version 2 applied")
    assert host_requests() == 3
    with HttpConn(gw.port) as c:
        assert c.roundtrip("GET", "/echo").status == 200
    assert host_requests() == 4


def test_removed_listener_drains_its_open_connections(origin, make_gateway):
    extra = {"name": "side", "address": "127.0.0.1:0",
             "routes": [{"match": {"prefix": "/"}, "cluster": "backend"}]}
    config = make_config([origin.address], extra_listeners=[extra])
    gw = make_gateway(config)
    side_port = gw.listener_port("side")
    side = HttpConn(side_port, timeout=5.0)
    assert side.roundtrip("GET", "/echo").status == 200
    config["listeners"] = config["listeners"][:1]
    gw.reload(config)
    wait_until(lambda: gw.admin_json("/config_dump").get("version") == 2, 5.0,
               message="config version 2 applied")
    # The idle keep-alive connection of the removed listener is closed, and
    # nothing accepts on its port any more.
    assert side.wait_closed(5.0), "connection of a removed listener stayed open"
    side.close()

    def refused():
        try:
            with socket.create_connection(("127.0.0.1", side_port), timeout=1.0):
                return False
        except OSError:
            return True

    wait_until(refused, 3.0, message="the removed listener's port refuses connections")


def test_unknown_log_level_is_refused(portway_binary, tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("listeners: []\n")
    r = subprocess.run([portway_binary, "-c", str(path), "--log-level", "loud"],
                       capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL)
    assert r.returncode == 2
    assert "unknown --log-level 'loud'" in r.stderr


def test_validate_creates_no_access_log_file(origin, tmp_path):
    log = tmp_path / "access.log"
    r = run_validate(make_config([origin.address], access_log={"path": str(log)}))
    assert r.returncode == 0, r.stderr
    assert not log.exists()


def test_repeated_sigterm_during_shutdown_still_exits_zero(drain_gw, origin):
    # A supervisor may repeat SIGTERM; none of them, even one arriving while
    # the process finishes exiting, may turn the clean exit into a kill.
    c = _start_inflight(drain_gw, origin, 0.3)
    deadline = time.monotonic() + 10
    while drain_gw.alive() and time.monotonic() < deadline:
        try:
            drain_gw.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            break
        # As fast as possible: the window between the drain's end and the
        # process's exit is about a millisecond.
    c.close()
    assert drain_gw.wait_exit(5.0) == 0
