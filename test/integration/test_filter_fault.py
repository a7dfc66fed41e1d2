"""portway.fault through the real gateway: aborts, delays, header overrides,
and config errors reported with the filter's path."""

import time

import pytest

from portway_test_lib import HttpConn, make_config, run_validate

pytestmark = pytest.mark.gateway


def fault_gateway(make_gateway, origin, config):
    return make_gateway(make_config([origin.address], listener={
        "filters": [{"name": "portway.fault", "config": config}]}))


def test_configured_abort_answers_without_reaching_the_origin(origin, make_gateway):
    gw = fault_gateway(make_gateway, origin, {"abort": {"status": 503}})
    with HttpConn(gw.port) as c:
        r = c.roundtrip("GET", "/echo")
    assert r.status == 503
    assert r.header("x-portway-error") == "fault_abort"
    assert r.body == b"fault_abort\n"
    assert origin.all_requests == []
    gw.wait_stat("portway_local_replies_total", 1, listener="edge", cause="filter_local_reply")


def test_zero_percent_abort_never_fires(origin, make_gateway):
    gw = fault_gateway(make_gateway, origin, {"abort": {"status": 500, "percentage": 0}})
    with HttpConn(gw.port) as c:
        for _ in range(20):
            assert c.roundtrip("GET", "/echo").status == 200
    assert len(origin.requests) == 20


def test_configured_delay_holds_the_request(origin, make_gateway):
    gw = fault_gateway(make_gateway, origin, {"delay": {"fixed_delay": "300ms"}})
    with HttpConn(gw.port) as c:
        start = time.monotonic()
        r = c.roundtrip("GET", "/echo")
        elapsed = time.monotonic() - start
    assert r.status == 200
    assert 0.28 <= elapsed < 3.0, elapsed


def test_header_overrides_choose_the_fault_and_never_reach_the_origin(origin, make_gateway):
    gw = fault_gateway(make_gateway, origin, {"header_overrides": True})
    with HttpConn(gw.port) as c:
        r = c.roundtrip("GET", "/echo", headers=[("x-portway-fault-abort", "502")])
        assert r.status == 502 and r.header("x-portway-error") == "fault_abort"
        start = time.monotonic()
        r = c.roundtrip("GET", "/echo", headers=[("x-portway-fault-delay", "200")])
        assert r.status == 200 and time.monotonic() - start >= 0.18
        r = c.roundtrip("GET", "/echo")
        assert r.status == 200
    assert len(origin.requests) == 2
    for req in origin.requests:
        assert not req.has_header("x-portway-fault-delay")
        assert not req.has_header("x-portway-fault-abort")


def test_headers_do_nothing_without_header_overrides(origin, make_gateway):
    gw = fault_gateway(make_gateway, origin, {"delay": {"fixed_delay": "1ms", "percentage": 0}})
    with HttpConn(gw.port) as c:
        r = c.roundtrip("GET", "/echo", headers=[("x-portway-fault-abort", "503")])
    assert r.status == 200


def test_delay_then_abort_and_request_body_is_not_forwarded(origin, make_gateway):
    gw = fault_gateway(make_gateway, origin,
                       {"delay": {"fixed_delay": "100ms"}, "abort": {"status": 429, "body": "slow down"}})
    with HttpConn(gw.port) as c:
        r = c.roundtrip("POST", "/sink", body=b"x" * 10000)
    assert r.status == 429 and r.body == b"slow down"
    assert origin.all_requests == []


def test_bad_fault_config_is_rejected_with_paths(origin):
    config = make_config([origin.address], listener={"filters": [
        {"name": "portway.fault", "config": {"abort": {"status": 700}}},
        {"name": "portway.fault", "config": {"delay": {"fixd_delay": "1s"}}},
        {"name": "portway.nope"},
    ]})
    r = run_validate(config)
    assert r.returncode == 1
    assert "listeners[0].filters[0].config.abort.status: must be between 200 and 599" in r.stderr
    assert "listeners[0].filters[1].config.delay.fixd_delay: unknown field" in r.stderr
    assert "listeners[0].filters[2].name: unknown filter 'portway.nope'" in r.stderr, r.stderr


def test_route_can_disable_or_reconfigure_a_listener_filter(origin, make_gateway):
    config = make_config([origin.address], routes=[
        {"match": {"prefix": "/open"}, "cluster": "backend",
         "filters": [{"name": "portway.fault", "disabled": True}]},
        {"match": {"prefix": "/teapot"}, "cluster": "backend",
         "filters": [{"name": "portway.fault", "config": {"abort": {"status": 418}}}]},
        {"match": {"prefix": "/"}, "cluster": "backend"},
    ], listener={"filters": [{"name": "portway.fault", "config": {"abort": {"status": 503}}}]})
    gw = make_gateway(config)
    with HttpConn(gw.port) as c:
        assert c.roundtrip("GET", "/open/x").status == 200
        assert c.roundtrip("GET", "/teapot").status == 418
        assert c.roundtrip("GET", "/other").status == 503
    assert [r.path for r in origin.requests] == ["/open/x"]


def test_bad_route_filter_overrides_are_rejected_with_paths(origin):
    config = make_config([origin.address], routes=[
        {"match": {"prefix": "/a"}, "cluster": "backend",
         "filters": [{"name": "portway.retry", "disabled": True}]},
        {"match": {"prefix": "/b"}, "cluster": "backend",
         "filters": [{"name": "portway.fault", "config": {"abort": {"status": 99}}}]},
        {"match": {"prefix": "/c"}, "cluster": "backend",
         "filters": [{"name": "portway.fault"}]},
    ], listener={"filters": [{"name": "portway.fault", "config": {"abort": {"status": 503}}}]})
    r = run_validate(config)
    assert r.returncode == 1
    assert ("listeners[0].routes[0].filters[0].name: 'portway.retry' is not in this listener's "
            "filters") in r.stderr, r.stderr
    assert ("listeners[0].routes[1].filters[0].config.abort.status: must be between 200 and 599"
            in r.stderr), r.stderr
    assert "listeners[0].routes[2].filters[0]: needs disabled: true or a config" in r.stderr
