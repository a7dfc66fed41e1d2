"""Host health and the control plane, end to end: gateways report the hosts
they cannot use on their stream, portway-cp keeps each connected gateway's
latest report, and `portwayctl health` shows the fleet's view. Health check
config pushed with a cluster is judged per resource like the rest."""

import json
import signal

import pytest

from portway_test_lib import LOOPBACK, HttpConn, closed_port, to_yaml, wait_until
from test_control_plane import cp_state, ctl, entry, gateway_config, listener_port

pytestmark = pytest.mark.gateway


def health_json(cp, *args):
    r = ctl(cp, "health", "-o", "json", *args)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def host_view(cp, cluster, address, *args):
    for h in health_json(cp, *args).get("hosts", []):
        if h["cluster"] == cluster and h["address"] == address:
            return h
    return None


def cluster_doc(name, endpoints, **extra):
    doc = {"name": name, "endpoints": endpoints}
    doc.update(extra)
    return {"clusters": [doc]}


def test_portwayctl_health_shows_which_gateways_see_a_host_unhealthy(cp, origin, make_gateway):
    down = f"{LOOPBACK}:{closed_port()}"

    def publish(status):
        cp.write("main.yaml", cluster_doc("web", [origin.address,
                                                  {"address": down, "health_status": status}]))
    publish("UNHEALTHY")
    gateways = {node: make_gateway(gateway_config(cp, node=node)) for node in ("gw-a", "gw-b")}
    for gw in gateways.values():
        wait_until(lambda gw=gw: (entry(gw, "cluster", "web") or {}).get("serving_version"),
                   timeout=5, message="the cluster served")

    wait_until(lambda: len((host_view(cp, "web", down) or {}).get("gateways", [])) == 2,
               timeout=3, message="both gateways report the host")
    view = host_view(cp, "web", down)
    assert sorted(g["node_id"] for g in view["gateways"]) == ["gw-a", "gw-b"]
    for g in view["gateways"]:
        assert g["flags"] == ["control_plane_unhealthy"], view
        assert g["reason"] == "endpoint health_status says so", view
        assert int(g["since_unix_ms"]) > 0, view  # int64: a JSON string
    assert sorted(health_json(cp)["gateways"]) == ["gw-a", "gw-b"]
    # The healthy endpoint is in no report.
    assert host_view(cp, "web", origin.address) is None

    # The table, from the real binary.
    r = ctl(cp, "health")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["CLUSTER", "ADDRESS", "GATEWAYS", "FLAGS", "REASON"], r.stdout
    row = next(l for l in lines[1:] if down in l).split()
    assert row[:4] == ["web", down, "2/2", "control_plane_unhealthy"], r.stdout
    # --cluster filters; another cluster's view is empty.
    assert host_view(cp, "web", down, "--cluster", "web") is not None
    r = ctl(cp, "health", "--cluster", "other")
    assert r.returncode == 0 and r.stdout == "all hosts healthy on 2 gateways\n", r.stdout

    # HEALTHY again: the host leaves every report within about two seconds
    # (the push, then at most one report a second).
    publish("HEALTHY")
    wait_until(lambda: ctl(cp, "health").stdout == "all hosts healthy on 2 gateways\n",
               timeout=3, message="the host gone from the fleet's view")

    # A gateway that dies drops out: its report with it.
    publish("UNHEALTHY")
    wait_until(lambda: len((host_view(cp, "web", down) or {}).get("gateways", [])) == 2,
               timeout=3, message="both gateways report the host again")
    gateways["gw-b"].proc.kill()  # no goodbye on the stream
    gateways["gw-b"].stop(expect_code=-signal.SIGKILL)
    wait_until(lambda: health_json(cp)["gateways"] == ["gw-a"], timeout=5,
               message="gw-b gone from the connected gateways")
    view = host_view(cp, "web", down)
    assert [g["node_id"] for g in view["gateways"]] == ["gw-a"], view
    row = next(l for l in ctl(cp, "health").stdout.splitlines() if down in l).split()
    assert row[2] == "1/1", row


def test_a_host_removed_from_the_config_leaves_the_report(cp, origin, make_gateway):
    down = f"{LOOPBACK}:{closed_port()}"
    cp.write("main.yaml", cluster_doc("web", [origin.address,
                                              {"address": down, "health_status": "DRAINING"}]))
    make_gateway(gateway_config(cp, node="gw-1"))
    wait_until(lambda: host_view(cp, "web", down) is not None, timeout=5,
               message="the draining host reported")
    assert host_view(cp, "web", down)["gateways"][0]["flags"] == ["control_plane_draining"]
    # Removed from the config, not flagged healthy: no flag changes, yet the
    # report must forget it.
    cp.write("main.yaml", cluster_doc("web", [origin.address]))
    wait_until(lambda: ctl(cp, "health").stdout == "all hosts healthy on 1 gateway\n",
               timeout=3, message="the removed host gone")


def test_a_reconnecting_gateway_reports_again(cp, origin, make_gateway):
    down = f"{LOOPBACK}:{closed_port()}"
    cp.write("main.yaml", cluster_doc("web", [{"address": down, "health_status": "UNHEALTHY"}]))
    gw = make_gateway(gateway_config(cp, node="gw-r"))
    wait_until(lambda: host_view(cp, "web", down) is not None, timeout=5, message="reported")
    # portway-cp restarts and knows nothing; the gateway's report follows
    # its next Hello, though no host changed.
    cp.stop()
    cp.start()
    wait_until(lambda: cp_state(gw)["connected"] and host_view(cp, "web", down) is not None,
               timeout=5, message="reported again after the reconnect")


def test_portwayctl_health_with_no_gateway_and_its_usage(cp):
    r = ctl(cp, "health")
    assert r.returncode == 0 and r.stdout == "no gateway connected\n", (r.stdout, r.stderr)
    assert health_json(cp) == {"hosts": [], "gateways": [], "omitted": {}}
    r = ctl(cp, "health", "--bogus")
    assert r.returncode == 2 and "health [--cluster NAME] [-o json]" in r.stderr
    r = ctl(cp, "--help")
    assert r.returncode == 0 and "portwayctl --server HOST:PORT health" in r.stdout


# ---- health check config pushed with a cluster

BAD_CHECK = [{"interval": "1s", "timeout": "2s", "http": {"path": "x"}}]
GOOD_CHECK = [{"interval": "1s", "timeout": "500ms", "http": {"path": "/healthz"}}]


def test_a_pushed_cluster_with_a_bad_health_check_is_rejected_with_paths(cp, origin,
                                                                         make_gateway):
    cp.write("main.yaml", cluster_doc("web", [origin.address]))
    gw = make_gateway(gateway_config(cp))
    wait_until(lambda: (entry(gw, "cluster", "web") or {}).get("serving_version"), timeout=5,
               message="the first version served")
    serving = entry(gw, "cluster", "web")["serving_version"]
    cp.write("main.yaml", cluster_doc("web", [origin.address], health_checks=BAD_CHECK,
                                      outlier_detection={"consecutive_5xx": 3}))
    wait_until(lambda: entry(gw, "cluster", "web")["rejected_version"] != "", timeout=3,
               message="the bad version rejected")
    e = entry(gw, "cluster", "web")
    paths = {err["path"] for err in e["errors"]}
    assert {"health_checks[0].timeout", "health_checks[0].http.path"} <= paths, e
    # The old version keeps serving, without any health check.
    assert e["serving_version"] == serving
    dump = gw.admin_json("/config_dump")
    web = next(c for c in dump["clusters"] if c["name"] == "web")
    assert "health_checks" not in web, web
    assert "rejected: health_checks[0].timeout" in cp.log_text()


def test_a_pushed_cluster_with_good_health_config_is_accepted(cp, origin, make_gateway):
    cp.write("main.yaml", cluster_doc("web", [origin.address], health_checks=GOOD_CHECK,
                                      outlier_detection={"consecutive_5xx": 3}))
    gw = make_gateway(gateway_config(cp))
    wait_until(lambda: (entry(gw, "cluster", "web") or {}).get("serving_version"), timeout=5,
               message="served")
    e = entry(gw, "cluster", "web")
    assert e["rejected_version"] == "" and not e.get("errors"), e
    dump = gw.admin_json("/config_dump")
    web = next(c for c in dump["clusters"] if c["name"] == "web")
    assert web["health_checks"][0]["http"]["path"] == "/healthz", web
    assert web["outlier_detection"]["consecutive_5xx"] == 3, web


def test_portwayctl_apply_rejects_a_bad_health_check_with_paths(cp, tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text(to_yaml(cluster_doc("web", [f"{LOOPBACK}:1"], health_checks=BAD_CHECK)))
    r = ctl(cp, "apply", "-f", str(f))
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "cluster 'web': health_checks[0].timeout:" in r.stderr, r.stderr
    assert "cluster 'web': health_checks[0].http.path:" in r.stderr, r.stderr


def test_pushed_active_checks_and_outlier_detection_take_hosts_out(cp, make_origin,
                                                                    make_gateway):
    """Both mechanisms from a push: an active check marks a dead host, outlier
    detection ejects a host answering 503, and the fleet view says why."""
    good = make_origin("good")
    flaky = make_origin("flaky")
    flaky.handlers["/app"] = lambda ctx: ctx.send_response(503) or True
    dead = f"{LOOPBACK}:{closed_port()}"
    doc = cluster_doc(
        "web", [good.address, flaky.address, dead], healthy_panic_threshold=0,
        health_checks=[{"interval": "200ms", "timeout": "150ms", "tcp": {}}],
        outlier_detection={"consecutive_5xx": 2, "max_ejection_percent": 50,
                           "base_ejection_time": "30s"})
    doc["listeners"] = [{"name": "dyn", "address": f"{LOOPBACK}:0",
                         "routes": [{"match": {"prefix": "/"}, "cluster": "web"}]}]
    cp.write("main.yaml", doc)
    gw = make_gateway(gateway_config(cp))
    port = listener_port(gw)
    wait_until(lambda: (host_view(cp, "web", dead) or {}).get("gateways"), timeout=5,
               message="the dead host reported")
    assert host_view(cp, "web", dead)["gateways"][0]["flags"] == ["active_check"]

    # Round robin over good and flaky (the dead host is out): flaky's 503s
    # eject it after consecutive_5xx. The ejection lands on the main thread
    # a moment after the worker saw the crossing, so a request or two more
    # may still reach it; after that only good answers.
    def flaky_ejected():
        web = next(c for c in gw.admin_json("/clusters")["clusters"] if c["name"] == "web")
        host = next(h for h in web["hosts"] if h["address"] == flaky.address)
        return "outlier" in [f["flag"] for f in host["flags"]]

    statuses = []
    with HttpConn(port) as conn:
        while not flaky_ejected() and len(statuses) < 40:
            statuses.append(conn.roundtrip("GET", "/app").status)
        assert flaky_ejected(), statuses
        assert statuses.count(503) >= 2, statuses
        after = [conn.roundtrip("GET", "/app").status for _ in range(6)]
    assert after == [200] * 6, (statuses, after)
    wait_until(lambda: (host_view(cp, "web", flaky.address) or {}).get("gateways"), timeout=5,
               message="the ejected host reported")
    assert host_view(cp, "web", flaky.address)["gateways"][0]["flags"] == ["outlier"]
