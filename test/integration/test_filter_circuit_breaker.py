"""portway.circuit_breaker through the real gateway: concurrency limits
(503 upstream_overflow), the cluster breaker (opens, fails fast, half-opens,
closes; fallback cluster). Per-host ejection is the cluster's outlier_detection
(test_outlier.py); the old per-host breaker settings are rejected."""

import threading
import time

import pytest

from portway_test_lib import (HttpConn, closed_port, make_cluster, make_config, run_validate,
                              wait_until)

pytestmark = pytest.mark.gateway


def breaker_config(endpoints, breaker, *, retry=None, **kw):
    filters = []
    if retry is not None:
        filters.append({"name": "portway.retry", "config": retry})
    filters.append({"name": "portway.circuit_breaker", "config": breaker})
    return make_config(endpoints, listener={"filters": filters}, **kw)


def switchable(origin, status):
    """/svc answers `state["status"]`; the test flips it."""
    state = {"status": status}
    origin.handlers["/svc"] = lambda ctx: (
        ctx.send_response(state["status"], body=b"svc"), True)[1]
    return state


def cb_state(gw, cluster="backend"):
    for c in gw.admin_json("/clusters")["clusters"]:
        if c["name"] == cluster:
            return c.get("filters", {}).get("portway.circuit_breaker")
    raise AssertionError(f"no cluster {cluster} in /clusters")


def get(gw, path="/svc"):
    with HttpConn(gw.port) as c:
        return c.roundtrip("GET", path)


def test_breaker_opens_fails_fast_half_opens_and_closes(origin, make_gateway):
    state = switchable(origin, 503)
    gw = make_gateway(breaker_config([origin.address], {
        "consecutive_failures": 3, "open_duration": "400ms", "host": {"disabled": True}}))
    for _ in range(3):
        r = get(gw)
        assert r.status == 503 and r.header("x-portway-error") is None  # the origin's own
    assert len(origin.requests) == 3
    # Open: an immediate 503 that says why, and the origin is spared.
    r = get(gw)
    assert r.status == 503 and r.header("x-portway-error") == "circuit_open", r.body
    assert b"breaker for cluster backend is open" in r.body
    assert len(origin.requests) == 3
    view = cb_state(gw)
    assert view["state"] == "open" and view["reason"] == "3 consecutive failures", view
    assert 0 < view["half_open_in_ms"] <= 400
    assert gw.stat("portway_circuit_breaker_state", cluster="backend") == 1
    assert gw.stat("portway_circuit_breaker_rejected_total", cluster="backend") == 1
    # Counted as the stream completes, just after the client has its answer.
    gw.wait_stat("portway_local_replies_total", 1, listener="edge", cause="circuit_open")
    assert "circuit breaker for cluster backend: closed -> open (3 consecutive failures)" in \
        gw.log_text()

    # The upstream recovers; after open_duration one probe goes through and
    # its success closes the breaker.
    state["status"] = 200
    time.sleep(0.45)
    assert get(gw).status == 200
    assert cb_state(gw)["state"] == "closed"
    assert gw.stat("portway_circuit_breaker_state", cluster="backend") == 0
    log = gw.log_text()
    assert "backend: open -> half_open" in log and "backend: half_open -> closed" in log
    for _ in range(3):
        assert get(gw).status == 200


def test_failed_probe_reopens_for_longer(origin, make_gateway):
    switchable(origin, 502)
    gw = make_gateway(breaker_config([origin.address], {
        "consecutive_failures": 1, "open_duration": "200ms", "max_open_duration": "1s",
        "host": {"disabled": True}}))
    assert get(gw).status == 502
    assert cb_state(gw)["open_duration_ms"] == 200
    time.sleep(0.25)
    assert get(gw).status == 502  # the probe, failing
    view = cb_state(gw)
    assert view["state"] == "open" and view["reason"] == "a half-open probe failed"
    assert view["open_duration_ms"] == 400
    assert get(gw).header("x-portway-error") == "circuit_open"
    assert gw.stat("portway_circuit_breaker_opened_total", cluster="backend",
                   scope="cluster") == 2


def test_open_cluster_falls_back(origin, make_gateway):
    dead = f"127.0.0.1:{closed_port()}"
    config = breaker_config(None, {
        "consecutive_failures": 2, "open_duration": "30s", "fallback_cluster": "backup",
        "host": {"disabled": True}},
        clusters=[make_cluster("backend", [dead]), make_cluster("backup", [origin.address])])
    gw = make_gateway(config)
    for _ in range(2):
        r = get(gw, "/echo")
        assert r.status == 502 and r.header("x-portway-error") == "upstream_connect_refused"
    assert len(origin.requests) == 0
    for _ in range(3):
        assert get(gw, "/echo").status == 200
    assert len(origin.requests) == 3
    assert gw.stat("portway_circuit_breaker_fallback_total", cluster="backend") == 3
    assert "cluster=backup" in gw.log_text()  # the access log names where it went


def test_a_failing_host_is_ejected_by_outlier_detection(origin, make_origin, make_gateway):
    # What the per-host breakers did is the cluster's outlier_detection now:
    # the breaker keeps the limits and the cluster breaker.
    bad = make_origin("bad")
    bad.handlers["/svc"] = lambda ctx: (ctx.send_response(503, body=b"bad"), True)[1]
    switchable(origin, 200)
    gw = make_gateway(breaker_config([bad.address, origin.address], {
        "cluster_breaker_disabled": True, "host": {"disabled": True}},
        cluster_options={"outlier_detection": {
            "consecutive_5xx": 2, "base_ejection_time": "30s", "max_ejection_percent": 50}}))
    # Round robin sends every other request to the bad host until its
    # second 503 crosses the threshold.
    statuses = []
    while len(bad.requests) < 2 and len(statuses) < 10:
        statuses.append(get(gw).status)
    assert len(bad.requests) == 2 and statuses.count(503) == 2, statuses
    # The main thread ejects it a moment after the worker saw the crossing
    # (a request in between may still go there); from then on only the good
    # one is used.
    def ejected():
        for c in gw.admin_json("/clusters")["clusters"]:
            for h in c["hosts"]:
                if h["address"] == bad.address:
                    return any(f["flag"] == "outlier" for f in h["flags"])
        return False
    wait_until(ejected, 3, message="the bad host ejected")
    sent_to_bad = len(bad.requests)
    statuses = [get(gw).status for _ in range(10)]
    # Workers learn of it by a post that may trail a request already read.
    assert len(bad.requests) <= sent_to_bad + 1, statuses
    assert statuses[-8:] == [200] * 8, statuses
    assert gw.stat("portway_upstream_outlier_ejections_total", cluster="backend") == 1
    assert "hosts" not in cb_state(gw)  # the breaker's view has no hosts any more


def test_host_breaker_settings_point_to_outlier_detection(origin):
    r = run_validate(breaker_config([origin.address], {
        "host": {"breaker": {"consecutive_failures": 2}}}))
    assert r.returncode == 1
    assert "listeners[0].filters[0].config.host.breaker: per-host breakers are gone" in r.stderr, \
        r.stderr
    assert "outlier_detection" in r.stderr and "docs/filters/health_check.md" in r.stderr
    # Turning them off, as configs did, still loads: there is nothing to turn off.
    r = run_validate(breaker_config([origin.address], {"host": {"disabled": True}}))
    assert r.returncode == 0, r.stderr


def parallel(gw, n, path="/slow"):
    """Sends n requests at once; returns their responses in order."""
    out = [None] * n

    def one(i):
        with HttpConn(gw.port, timeout=10) as c:
            out[i] = c.roundtrip("GET", path)
    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
        time.sleep(0.05)
    for t in threads:
        t.join()
    return out


def slow_handler(origin, seconds):
    def handler(ctx):
        time.sleep(seconds)
        ctx.send_response(200, body=b"slow")
        return True
    origin.handlers["/slow"] = handler


def test_max_requests_overflows_with_503(origin, make_gateway):
    slow_handler(origin, 1.0)
    gw = make_gateway(breaker_config([origin.address], {"max_requests": 2}))
    responses = parallel(gw, 3)
    assert [r.status for r in responses] == [200, 200, 503]
    assert responses[2].header("x-portway-error") == "upstream_overflow"
    assert b"max_requests (2) reached" in responses[2].body
    assert gw.stat("portway_upstream_limit_overflow_total", cluster="backend",
                   limit="max_requests") == 1
    assert len(origin.requests) == 2
    # The count goes down as requests end: the next one is served.
    assert get(gw, "/echo").status == 200


def test_max_connections_queues_and_max_pending_overflows(origin, make_gateway):
    slow_handler(origin, 0.6)
    gw = make_gateway(breaker_config([origin.address], {
        "max_connections": 1, "max_pending_requests": 1}))
    responses = parallel(gw, 3)
    # One connection: the second request waits for it, the third finds the
    # queue full.
    assert [r.status for r in responses] == [200, 200, 503], [r.status for r in responses]
    assert responses[2].header("x-portway-error") == "upstream_overflow"
    assert b"max_pending_requests (1) reached" in responses[2].body
    assert len(origin.connections) == 1
    assert gw.stat("portway_upstream_limit_overflow_total", cluster="backend",
                   limit="max_pending_requests") == 1


def test_max_retries_bounds_retries_in_flight(origin, make_gateway):
    # A retry counts as in flight from the moment it is asked for until its
    # attempt ends. The back-off is full jitter (uniform in [0, ceiling]),
    # so it cannot hold a retry in flight for any known time: the test once
    # assumed "each retry waits 600ms of back-off" and failed whenever the
    # draw was short (about 1 run in 20). Instead the retry's own attempt is
    # held: /first answers 503 once and then takes 800ms, so the first
    # request's retry is in flight for at least 800ms whatever the back-off.
    hits = {"first": 0}
    lock = threading.Lock()

    def first_handler(ctx):
        with lock:
            hits["first"] += 1
            n = hits["first"]
        if n > 1:
            time.sleep(0.8)
            ctx.send_response(200, body=b"retried")
        else:
            ctx.send_response(503, body=b"first try")
        return True
    origin.handlers["/first"] = first_handler
    origin.handlers["/second"] = lambda ctx: (ctx.send_response(503, body=b"no"), True)[1]
    gw = make_gateway(breaker_config([origin.address], {"max_retries": 1},
                                     retry={"retry_on": ["gateway-error"], "num_retries": 1,
                                            "backoff": {"base_interval": "10ms",
                                                        "max_interval": "10ms"}}))
    results = {}

    def first():
        results["first"] = get(gw, "/first")
    t = threading.Thread(target=first)
    t.start()
    wait_until(lambda: gw.stat("portway_upstream_retries_active", cluster="backend") == 1,
               timeout=3)
    # The second request's retry is refused: the limit is taken. The client
    # gets the attempt's own result, the origin's 503, at once.
    start = time.monotonic()
    r = get(gw, "/second")
    assert r.status == 503 and r.body == b"no", (r.status, r.body)
    assert time.monotonic() - start < 0.5  # not retried
    t.join()
    assert results["first"].status == 200 and results["first"].body == b"retried"
    assert hits["first"] == 2
    assert gw.stat("portway_upstream_limit_overflow_total", cluster="backend",
                   limit="max_retries") == 1
    assert gw.stat("portway_upstream_retries_active", cluster="backend") == 0


def test_a_lone_request_is_not_limited_by_its_own_retry(make_gateway):
    # max_retries 1 bounds retries in flight across requests; one request
    # retrying twice in a row never has more than one in flight.
    gw = make_gateway(breaker_config([f"127.0.0.1:{closed_port()}"], {"max_retries": 1},
                                     retry={"num_retries": 2}))
    assert get(gw).header("x-portway-error") == "upstream_connect_refused"
    assert gw.stat("portway_retry_attempts_total", filter="portway.retry") == 2
    assert gw.stat("portway_upstream_limit_overflow_total", cluster="backend",
                   limit="max_retries") == 0


def test_bad_breaker_config_is_rejected_with_paths(origin):
    r = run_validate(breaker_config([origin.address], {
        "failure_rate_threshold": 120, "failure_on": ["sad"]}))
    assert r.returncode == 1
    assert "listeners[0].filters[0].config.failure_rate_threshold: must be a percentage" \
        in r.stderr, r.stderr
    r = run_validate(breaker_config([origin.address], {"max_requests": "many"}))
    assert r.returncode == 1
    assert "listeners[0].filters[0].config.max_requests" in r.stderr, r.stderr


def test_example_configs_validate():
    import pathlib
    import subprocess
    from portway_test_lib import portway_bin
    examples = sorted(pathlib.Path(__file__).resolve().parents[2].glob("examples/*/portway.yaml"))
    assert any(p.parent.name == "resilience" for p in examples), examples
    for path in examples:
        if "modules:" in path.read_text():
            continue  # needs its module built first: test_modules.py covers it
        r = subprocess.run([portway_bin(), "--validate", "-c", str(path)], capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == 0, (path, r.stderr)
