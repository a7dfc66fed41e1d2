"""portway.health_check through the real gateway: the local answer, pass
through with a cached upstream status, cluster_min_healthy_percent from
endpoint health_status, and the drain: on SIGTERM the health path fails at
once while the listener still accepts and serves for drain_delay, then the
listener closes and the process exits 0."""

import signal
import time

import pytest

from portway_test_lib import (REPO_ROOT, HttpConn, build_request, closed_port, make_cluster,
                              make_config, raw_request, run_validate, wait_until)

pytestmark = pytest.mark.gateway


def health_config(endpoints, filter_config, clusters=None, **kwargs):
    return make_config(endpoints, clusters=clusters, listener={
        "filters": [{"name": "portway.health_check", "config": filter_config}]}, **kwargs)


def get(port, target, method="GET"):
    """One request on a new connection (the way load balancers check)."""
    with HttpConn(port, timeout=3.0) as c:
        return c.roundtrip(method, target)


def test_answers_ok_locally_and_passes_everything_else(origin, make_gateway):
    gw = make_gateway(health_config([origin.address], {"path": "/healthz"}))
    r = get(gw.port, "/healthz")
    assert r.status == 200 and r.body == b"OK\n"
    assert r.header("x-portway-health") == "ok"
    assert r.header("x-portway-error") is None
    r = get(gw.port, "/healthz?from=lb")
    assert r.status == 200 and r.body == b"OK\n"
    with HttpConn(gw.port) as c:
        r = c.roundtrip("HEAD", "/healthz")
        assert r.status == 200 and r.body == b""
        assert r.header("x-portway-health") == "ok"
        # Keep-alive holds after a HEAD answered locally.
        assert c.roundtrip("GET", "/healthz").body == b"OK\n"
    assert origin.all_requests == []
    r = get(gw.port, "/healthz/deeper")
    assert r.status == 200 and r.header("x-portway-health") is None
    assert [q.path for q in origin.requests] == ["/healthz/deeper"]


# The origin counts the checks that reach it: with cache_time 2s, a burst of
# checks over two workers costs one upstream request, the cached answers
# carry the upstream's status, and the first check after cache_time goes
# upstream again.
def test_pass_through_caches_the_upstream_status(origin, make_gateway):
    gw = make_gateway(health_config([origin.address], {
        "path": "/status/503", "pass_through": True, "cache_time": "2s"}), workers=2)
    t0 = time.monotonic()
    first = get(gw.port, "/status/503")
    assert first.status == 503 and first.body == b"status 503\n"
    assert first.header("x-portway-health") is None  # the upstream's own answer
    for _ in range(8):
        r = get(gw.port, "/status/503")
        assert r.status == 503, r
        assert r.header("x-portway-health") == "cached"
        assert r.header("x-portway-error") is None
    hits = [q for q in origin.requests if q.path == "/status/503"]
    assert len(hits) == 1, f"{len(hits)} checks reached the origin within cache_time"
    assert time.monotonic() - t0 < 2.0, "the burst took longer than cache_time; inconclusive"

    def went_upstream_again():
        r = get(gw.port, "/status/503")
        return r.header("x-portway-health") is None

    wait_until(went_upstream_again, timeout=5.0, interval=0.1, message="cache expiry")
    assert time.monotonic() - t0 >= 1.9
    assert len([q for q in origin.requests if q.path == "/status/503"]) == 2


def test_pass_through_without_cache_time_always_goes_upstream(origin, make_gateway):
    gw = make_gateway(health_config([origin.address],
                                    {"path": "/healthz", "pass_through": True}))
    for _ in range(3):
        r = get(gw.port, "/healthz")
        assert r.status == 200 and r.header("x-portway-health") is None
    assert [q.path for q in origin.requests] == ["/healthz"] * 3


def test_cluster_below_min_healthy_percent_fails_until_a_reload_heals_it(origin, make_gateway):
    down = {"address": f"127.0.0.1:{closed_port()}", "health_status": "UNHEALTHY"}
    filter_config = {"path": "/healthz", "cluster_min_healthy_percent": {"backend": 60}}
    gw = make_gateway(health_config(None, filter_config,
                                    clusters=[make_cluster("backend", [origin.address, down])]))
    r = get(gw.port, "/healthz")
    assert r.status == 503, r
    assert r.header("x-portway-error") == "health_check_cluster_unhealthy"
    assert r.header("x-portway-health") == "cluster_unhealthy"
    assert b"cluster backend has 1 of 2 hosts usable (50.0%), below 60%" in r.body, r.body
    # Normal traffic is not affected: the usable host serves it.
    assert get(gw.port, "/echo").status == 200

    # The same endpoints, the second one no longer UNHEALTHY.
    healed = dict(down, health_status="HEALTHY")
    gw.reload(health_config(None, filter_config,
                            clusters=[make_cluster("backend", [origin.address, healed])]))
    wait_until(lambda: get(gw.port, "/healthz").status == 200, timeout=5.0,
               message="the health check to pass after the reload")
    assert get(gw.port, "/healthz").body == b"OK\n"

    # And back: marked UNHEALTHY again by a reload.
    gw.reload(health_config(None, filter_config,
                            clusters=[make_cluster("backend", [origin.address, down])]))
    wait_until(lambda: get(gw.port, "/healthz").status == 503, timeout=5.0,
               message="the health check to fail after the reload")


def test_unknown_cluster_counts_as_zero_percent(origin, make_gateway):
    gw = make_gateway(health_config([origin.address], {
        "path": "/healthz", "cluster_min_healthy_percent": {"backend": 100, "ghost": 1}}))
    r = get(gw.port, "/healthz")
    assert r.status == 503
    assert b"cluster ghost is not configured" in r.body, r.body


# The end to end the issue asks for: drain_delay 2s. After SIGTERM the health
# path answers 503 at once, while the listener still accepts new connections
# and serves normal requests (keep-alive intact); then the listener closes
# and the process exits 0.
def test_sigterm_fails_the_health_check_before_the_listener_closes(origin, make_gateway):
    gw = make_gateway(health_config([origin.address], {"path": "/healthz"},
                                    drain_timeout="3s") | {"drain_delay": "2s"})
    port = gw.port
    assert get(port, "/healthz").status == 200
    kept = HttpConn(port)
    assert kept.roundtrip("GET", "/echo").status == 200

    t0 = time.monotonic()
    gw.send_signal(signal.SIGTERM)
    wait_until(lambda: get(port, "/healthz").status == 503, timeout=1.0, interval=0.02,
               message="the health check to fail after SIGTERM")
    r = get(port, "/healthz")
    assert r.status == 503 and r.header("x-portway-health") == "draining"
    assert r.header("x-portway-error") == "health_check_draining"
    status, _, _ = gw.admin_get("/ready")
    assert status == 503

    # Still within drain_delay: a new connection is accepted and served, and
    # a kept-alive one stays usable without Connection: close.
    before = len(origin.requests)
    r = get(port, "/echo")
    assert r.status == 200 and len(origin.requests) == before + 1
    r = kept.roundtrip("GET", "/echo")
    assert r.status == 200 and "close" not in r.connection_tokens(), r.headers
    assert time.monotonic() - t0 < 1.8, "the checks above took too long to be inside the delay"

    def refused():
        try:
            r = raw_request(port, build_request("GET", "/echo"), read_timeout=1.0)
        except (ConnectionRefusedError, ConnectionResetError):
            return True
        return r == b"" and r.closed

    wait_until(refused, timeout=5.0, interval=0.05, message="the listener to close")
    closed_after = time.monotonic() - t0
    assert closed_after >= 1.9, f"the listener closed {closed_after:.2f}s after SIGTERM"
    assert gw.wait_exit(6.0) == 0
    kept.close()
    log = gw.log_text()
    assert "listeners keep serving for 2000ms (drain_delay)" in log, gw.log_tail()
    assert "listeners closed, no new connections" in log


def test_second_sigterm_skips_the_rest_of_drain_delay(origin, make_gateway):
    gw = make_gateway(health_config([origin.address], {"path": "/healthz"})
                      | {"drain_delay": "60s"})
    port = gw.port
    t0 = time.monotonic()
    gw.send_signal(signal.SIGTERM)
    wait_until(lambda: get(port, "/healthz").status == 503, timeout=1.0, interval=0.02,
               message="the health check to fail after SIGTERM")
    assert get(port, "/echo").status == 200  # the delay is running
    gw.send_signal(signal.SIGTERM)
    assert gw.wait_exit(5.0) == 0
    assert time.monotonic() - t0 < 6.0
    assert "second signal, skipping the rest of drain_delay" in gw.log_text()


def test_bad_health_check_config_is_rejected_with_paths(origin):
    config = make_config([origin.address], listener={"filters": [
        {"name": "portway.health_check", "config": {"pass_through": True}},
        {"name": "portway.health_check", "config": {"path": "healthz"}},
        {"name": "portway.health_check",
         "config": {"path": "/h", "cluster_min_healthy_percent": {"backend": 150}}},
    ]})
    r = run_validate(config)
    assert r.returncode == 1
    assert "listeners[0].filters[0].config.path: is required" in r.stderr, r.stderr
    assert "listeners[0].filters[1].config.path: must start with" in r.stderr, r.stderr
    assert ("listeners[0].filters[2].config.cluster_min_healthy_percent[backend]: "
            "must be between 0 and 100, got 150") in r.stderr, r.stderr


def test_example_config_validates():
    r = run_validate((REPO_ROOT / "examples" / "health_check" / "portway.yaml").read_text())
    assert r.returncode == 0, r.stderr
