"""Outlier detection through the real gateway (docs/filters/health_check.md,
"Outlier detection"): a host that keeps failing is ejected (flag in
/clusters, metrics), gets no traffic while ejected, and comes back when its
ejection time is over; a success ends a streak; connect failures count as
local-origin failures; a SIGHUP'd config turns it on, keeps an ejection
across a reload, and a bad field is rejected with its YAML path."""

import pytest

from portway_test_lib import HttpConn, closed_port, make_config, run_validate, wait_until

pytestmark = pytest.mark.gateway


def get(gw, path="/svc"):
    with HttpConn(gw.port) as c:
        return c.roundtrip("GET", path)


def answering(origin, status):
    """/svc answers `state["status"]`; the test may flip it."""
    state = {"status": status}
    origin.handlers["/svc"] = lambda ctx: (
        ctx.send_response(state["status"], body=b"svc"), True)[1]
    return state


def host_view(gw, address, cluster="backend"):
    for c in gw.admin_json("/clusters")["clusters"]:
        if c["name"] == cluster:
            for h in c["hosts"]:
                if h["address"] == address:
                    return h
    raise AssertionError(f"no host {address} in cluster {cluster}")


def flags(gw, address):
    return [f["flag"] for f in host_view(gw, address)["flags"]]


def config_with(endpoints, outlier=None):
    options = {"lb_policy": "round_robin"}
    if outlier is not None:
        options["outlier_detection"] = outlier
    return make_config(endpoints, cluster_options=options)


def test_consecutive_5xx_ejects_and_time_brings_the_host_back(make_origin, make_gateway):
    bad, good = make_origin("bad"), make_origin("good")
    answering(bad, 503)
    answering(good, 200)
    gw = make_gateway(config_with([bad.address, good.address], {
        "consecutive_5xx": 3, "base_ejection_time": "1500ms", "max_ejection_percent": 50}))
    assert "outlier" in host_view(gw, bad.address)  # the cluster has detection
    # Round robin: every other request goes to the bad host until its third
    # 503 in a row.
    statuses = [get(gw).status for _ in range(6)]
    assert statuses.count(503) == 3 and len(bad.requests) == 3, statuses
    wait_until(lambda: "outlier" in flags(gw, bad.address), 3, message="the bad host ejected")
    view = host_view(gw, bad.address)
    assert view["health"] == "unhealthy"
    assert view["reason"].startswith("3 consecutive_5xx; ejected for 1500ms"), view
    assert view["outlier"]["ejected"] is True and view["outlier"]["times_ejected"] == 1, view
    assert view["outlier"]["ejected_until"], view
    assert host_view(gw, good.address)["outlier"]["ejected"] is False
    assert gw.stat("portway_upstream_outlier_ejections_total", cluster="backend") == 1
    assert gw.stat("portway_upstream_hosts_ejected", cluster="backend") == 1

    # While ejected (still so after the requests: checked), nothing reaches it.
    for _ in range(6):
        assert get(gw).status == 200
    assert host_view(gw, bad.address)["outlier"]["ejected"] is True, \
        "the ejection ended during the check: the machine is too slow for 1.5s"
    assert len(bad.requests) == 3

    # base_ejection_time later it is back in balancing and gets traffic.
    wait_until(lambda: flags(gw, bad.address) == [], 5, message="the bad host back")
    assert host_view(gw, bad.address)["reason"] == "ejection time over"
    assert gw.stat("portway_upstream_hosts_ejected", cluster="backend") == 0
    statuses = [get(gw).status for _ in range(4)]
    assert len(bad.requests) > 3 and 503 in statuses, statuses
    assert f"host {bad.address} of cluster 'backend' is out of balancing: outlier" in \
        gw.log_text()


def test_a_success_ends_the_streak(origin, make_gateway):
    state = answering(origin, 503)
    gw = make_gateway(config_with([origin.address], {"consecutive_5xx": 3}))
    for _ in range(2):
        assert get(gw).status == 503
    assert host_view(gw, origin.address)["outlier"]["consecutive_5xx"] == 2
    state["status"] = 200
    assert get(gw).status == 200
    assert host_view(gw, origin.address)["outlier"]["consecutive_5xx"] == 0
    state["status"] = 503
    for _ in range(2):
        assert get(gw).status == 503
    view = host_view(gw, origin.address)
    assert view["outlier"]["consecutive_5xx"] == 2 and view["flags"] == [], view
    assert gw.stat("portway_upstream_outlier_ejections_total", cluster="backend") == 0


def test_gateway_failure_rule_ignores_500(origin, make_gateway):
    state = answering(origin, 500)
    gw = make_gateway(config_with([origin.address], {
        "consecutive_5xx": 0, "consecutive_gateway_failure": 2}))
    for _ in range(4):
        assert get(gw).status == 500
    view = host_view(gw, origin.address)
    assert view["flags"] == [] and view["outlier"]["consecutive_gateway_failure"] == 0, view
    state["status"] = 504
    for _ in range(2):
        assert get(gw).status == 504
    wait_until(lambda: "outlier" in flags(gw, origin.address), 3, message="ejected on 504s")


def test_connect_failures_eject_a_dead_host(origin, make_gateway):
    dead = f"127.0.0.1:{closed_port()}"
    gw = make_gateway(config_with([dead, origin.address], {
        "consecutive_5xx": 0, "consecutive_local_origin_failure": 2,
        "base_ejection_time": "30s"}))
    statuses = [get(gw, "/echo").status for _ in range(4)]
    assert statuses.count(502) == 2, statuses
    wait_until(lambda: "outlier" in flags(gw, dead), 3, message="the dead host ejected")
    assert host_view(gw, dead)["reason"].startswith("2 consecutive_local_origin_failure")
    assert [get(gw, "/echo").status for _ in range(4)] == [200] * 4


def test_sighup_config_turns_it_on_keeps_ejections_and_rejects_bad_fields(
        make_origin, make_gateway):
    bad, good = make_origin("bad"), make_origin("good")
    answering(bad, 503)
    answering(good, 200)
    endpoints = [bad.address, good.address]
    gw = make_gateway(config_with(endpoints))
    assert "outlier" not in host_view(gw, bad.address)  # off: nothing counted
    for _ in range(6):
        get(gw)
    assert flags(gw, bad.address) == []

    on = {"consecutive_5xx": 2, "base_ejection_time": "30s"}
    gw.reload(config_with(endpoints, on))
    gw.wait_stat("portway_config_version", 2)
    assert host_view(gw, bad.address)["outlier"]["consecutive_5xx"] == 0
    for _ in range(4):
        get(gw)
    wait_until(lambda: "outlier" in flags(gw, bad.address), 3, message="ejected after reload")
    seen = len(bad.requests)

    # A reload that keeps the host keeps its ejection (new thresholds: the
    # counts start over, the ejection stays).
    gw.reload(config_with(endpoints, dict(on, consecutive_5xx=3)))
    gw.wait_stat("portway_config_version", 3)
    assert "outlier" in flags(gw, bad.address)
    assert host_view(gw, bad.address)["outlier"]["times_ejected"] == 1
    for _ in range(4):
        assert get(gw).status == 200
    assert len(bad.requests) == seen

    # A bad field: the reload is rejected with the field's path, the
    # running config serves on.
    bad_config = config_with(endpoints, dict(on, max_ejection_percent=150))
    gw.reload(bad_config)
    wait_until(lambda: "reload rejected" in gw.log_text(), 5, message="the reload rejected")
    assert "clusters[0].outlier_detection.max_ejection_percent: must be a percentage" in \
        gw.log_text()
    assert gw.stat("portway_config_version") == 3
    r = run_validate(bad_config)
    assert r.returncode == 1
    assert "clusters[0].outlier_detection.max_ejection_percent" in r.stderr, r.stderr

    # Removing outlier_detection lifts the ejection at once.
    gw.reload(config_with(endpoints))
    gw.wait_stat("portway_config_version", 4)
    assert flags(gw, bad.address) == []
    assert gw.stat("portway_upstream_hosts_ejected", cluster="backend") == 0
    start = len(bad.requests)
    for _ in range(4):
        get(gw)
    assert len(bad.requests) > start
