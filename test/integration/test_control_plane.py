"""Dynamic configuration end to end: portway-cp serving a directory of YAML
files, and real gateways following it over the gRPC discovery API."""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from portway_test_lib import (LOOPBACK, HttpConn, closed_port, portway_bin, run_validate,
                              to_yaml, wait_until)

pytestmark = pytest.mark.gateway


def cp_bin():
    return os.environ.get("PORTWAY_CP_BIN") or str(Path(portway_bin()).parent / "portway-cp")


class ControlPlane:
    """portway-cp on a temporary resource directory."""

    def __init__(self, port=0, extra_args=(), config_dir=None):
        self.extra_args = list(extra_args)
        self.dir = Path(tempfile.mkdtemp(prefix="portway-cp-"))
        if config_dir is None:
            self.res = self.dir / "resources"
            self.res.mkdir()
        else:
            # Someone else's directory: the state file goes to ours.
            self.res = Path(config_dir)
            self.extra_args += ["--state-file", str(self.dir / "state")]
        self.port = port
        self.proc = None

    def write(self, name, resources):
        # Written aside and renamed, so a poll never reads half a file.
        tmp = self.res / f".{name}.tmp"
        tmp.write_text(to_yaml(resources))
        os.replace(tmp, self.res / name)

    def start(self):
        port_file = self.dir / "port"
        if port_file.exists():
            port_file.unlink()
        self.log = open(self.dir / "cp.log", "ab")
        self.proc = subprocess.Popen(
            [cp_bin(), "--listen", f"{LOOPBACK}:{self.port}", "--config-dir", str(self.res),
             "--poll-ms", "50", "--port-file", str(port_file)] + self.extra_args,
            stdout=self.log, stderr=subprocess.STDOUT)
        wait_until(port_file.exists, timeout=10, message="portway-cp listening")
        lines = port_file.read_text().splitlines()
        self.port = int(lines[0].rsplit(":", 1)[1])
        # With --admin-listen, line 2 is "admin HOST:PORT".
        self.admin_port = int(lines[1].rsplit(":", 1)[1]) if len(lines) > 1 else self.port
        return self

    @property
    def address(self):
        return f"{LOOPBACK}:{self.port}"

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=10)
        self.log.close()

    def log_text(self):
        return (self.dir / "cp.log").read_text(errors="replace")


def gateway_config(cp, node="gw1"):
    return {"admin": {"address": f"{LOOPBACK}:0"},
            "access_log": {"path": "off"},
            "control_plane": {"address": cp.address, "node_id": node,
                              "initial_backoff": "50ms", "max_backoff": "200ms"}}


def resources(origin_address, body=None, extra_clusters=(), extra_listeners=()):
    route = {"match": {"prefix": "/"}}
    if body is None:
        route["cluster"] = "web"
    else:
        route["direct_response"] = {"status": 200, "body": body}
    return {"clusters": [{"name": "web", "endpoints": [origin_address]}] + list(extra_clusters),
            "listeners": [{"name": "dyn", "address": f"{LOOPBACK}:0", "routes": [route]}]
            + list(extra_listeners)}


def listener_port(gw, name="dyn", timeout=5.0):
    found = {}

    def check():
        for entry in gw.admin_json("/listeners")["listeners"]:
            if entry["name"] == name:
                found["port"] = int(entry["address"].rsplit(":", 1)[1])
                return True
        return False
    wait_until(check, timeout=timeout, message=f"listener {name} on the gateway")
    return found["port"]


def cp_state(gw):
    return gw.admin_json("/control_plane")


def entry(gw, kind, name):
    for e in cp_state(gw)["resources"]:
        if e["type"] == kind and e["name"] == name:
            return e
    return None


def get(port, path="/echo"):
    with HttpConn(port) as c:
        return c.roundtrip("GET", path)


def test_the_gateway_serves_what_is_pushed_and_follows_changes(cp, origin, make_gateway):
    cp.write("main.yaml", resources(origin.address))
    gw = make_gateway(gateway_config(cp))
    port = listener_port(gw)
    assert get(port).status == 200
    assert len(origin.requests) == 1
    state = cp_state(gw)
    assert state["connected"] and state["pushes"] >= 1 and state["last_version"]
    assert entry(gw, "listener", "dyn")["serving_version"]
    # A change to the file reaches the gateway within a second.
    cp.write("main.yaml", resources(origin.address, body="v2\n"))
    wait_until(lambda: get(port).body == b"v2\n", timeout=3, message="the new route")
    # The workers serve the new route a moment before the control plane
    # reads the gateway's report that it is live everywhere.
    wait_until(lambda: "push 2 applied" in cp.log_text(), timeout=3,
               message="the control plane's log of the applied push")


def test_an_empty_directory_syncs_and_a_new_file_is_served(cp, origin, make_gateway):
    gw = make_gateway(gateway_config(cp))
    # An empty first push still says "in sync".
    wait_until(lambda: cp_state(gw)["connected"], timeout=5, message="connected")
    assert cp_state(gw)["resources"] == []
    cp.write("later.yaml", resources(origin.address))
    assert get(listener_port(gw)).status == 200


def test_one_bad_resource_does_not_stop_the_good_ones(cp, origin, make_gateway):
    cp.write("main.yaml", resources(origin.address))
    gw = make_gateway(gateway_config(cp))
    port = listener_port(gw)
    bad = {"name": "broken", "endpoints": ["not-an-address"]}
    also = [{"name": "good2", "address": f"{LOOPBACK}:0",
             "routes": [{"match": {"prefix": "/"},
                         "direct_response": {"status": 200, "body": "good2\n"}}]},
            {"name": "uses_broken", "address": f"{LOOPBACK}:0",
             "routes": [{"match": {"prefix": "/"}, "cluster": "broken"}]}]
    cp.write("main.yaml", resources(origin.address, extra_clusters=[bad], extra_listeners=also))
    assert get(listener_port(gw, "good2")).body == b"good2\n"
    wait_until(lambda: entry(gw, "cluster", "broken") is not None, timeout=3)
    e = entry(gw, "cluster", "broken")
    assert e["serving_version"] == "" and e["rejected_version"]
    assert e["errors"][0]["path"] == "endpoints[0].address", e
    e = entry(gw, "listener", "uses_broken")
    assert e["errors"][0]["path"] == "routes[0].cluster", e
    # /config_dump shows each dynamic resource with its versions and error.
    dump = gw.admin_json("/config_dump")
    names = {(d["type"], d["name"]): d for d in dump["dynamic_resources"]}
    assert names[("cluster", "broken")]["errors"][0]["path"] == "endpoints[0].address"
    assert names[("listener", "good2")]["serving_version"]
    assert any(l["name"] == "good2" for l in dump["listeners"])
    assert not any(l["name"] == "uses_broken" for l in gw.admin_json("/listeners")["listeners"])
    # A bad new version of a serving resource: the old one keeps serving.
    cp.write("main.yaml", {"clusters": [{"name": "web", "endpoints": ["nowhere"]}],
                           "listeners": resources(origin.address)["listeners"]})
    wait_until(lambda: entry(gw, "cluster", "web")["rejected_version"] != "", timeout=3)
    assert get(port).status == 200
    wait_until(lambda: "rejected: endpoints[0].address" in cp.log_text(), timeout=3,
               message="the control plane's log of the rejection")


def test_losing_the_control_plane_changes_nothing_and_it_resyncs(cp, origin, make_gateway):
    cp.write("main.yaml", resources(origin.address))
    gw = make_gateway(gateway_config(cp))
    port = listener_port(gw)
    cp.stop(signal.SIGKILL)
    wait_until(lambda: not cp_state(gw)["connected"], timeout=5, message="disconnected")
    for _ in range(5):
        assert get(port).status == 200  # the last good config serves on
    assert cp_state(gw)["last_error"]
    # Back on the same port with a change: the gateway reconnects and
    # catches up.
    cp.write("main.yaml", resources(origin.address, body="after\n"))
    cp.start()
    wait_until(lambda: get(port).body == b"after\n", timeout=5, message="resynchronised")
    assert cp_state(gw)["connects"] >= 2


def test_a_restart_without_the_control_plane_serves_the_persisted_config(
        cp, origin, make_gateway, tmp_path):
    state = tmp_path / "gateway.state"
    config = gateway_config(cp)
    config["control_plane"]["persist_path"] = str(state)
    config["control_plane"]["initial_fetch_timeout"] = "300ms"
    cp.write("main.yaml", resources(origin.address, body="persisted\n"))
    gw = make_gateway(config)
    assert get(listener_port(gw)).body == b"persisted\n"
    wait_until(state.exists, timeout=3, message="the persisted config")
    gw.stop()
    cp.stop(signal.SIGKILL)
    # The control plane is gone; a fresh gateway comes up serving anyway.
    again = make_gateway(config)
    assert get(listener_port(again)).body == b"persisted\n"
    assert not cp_state(again)["connected"]
    assert entry(again, "listener", "dyn")["serving_version"]
    assert "serving 2 persisted resource(s)" in again.log_text()


def test_pushes_under_load_fail_no_request(cp, origin, make_gateway):
    cp.write("main.yaml", resources(origin.address, body="0\n"))
    gw = make_gateway(gateway_config(cp), workers=2)
    port = listener_port(gw)
    failures, done, count = [], threading.Event(), [0]

    def load():
        while not done.is_set():
            try:
                with HttpConn(port, timeout=5) as c:
                    for _ in range(20):
                        r = c.roundtrip("GET", "/x")
                        if r.status != 200:
                            failures.append(r.status)
                        count[0] += 1
            except Exception as e:  # a refused or cut connection is a failure too
                failures.append(repr(e))
    threads = [threading.Thread(target=load) for _ in range(2)]
    for t in threads:
        t.start()
    pushes = 100
    for i in range(1, pushes + 1):
        cp.write("main.yaml", resources(origin.address, body=f"{i}\n"))
        wait_until(lambda: get(port).body == f"{i}\n".encode(), timeout=3,
                   message=f"push {i} applied")
    done.set()
    for t in threads:
        t.join()
    assert failures == [], failures[:5]
    assert count[0] > pushes
    assert cp_state(gw)["pushes"] >= pushes


def test_control_plane_config_errors_have_paths():
    r = run_validate({"admin": {"address": f"{LOOPBACK}:0"},
                      "control_plane": {"address": "nowhere"}})
    assert r.returncode == 1
    assert "control_plane.address: must be HOST:PORT" in r.stderr
    assert "control_plane.node_id: is required" in r.stderr
    r = run_validate({"admin": {"address": f"{LOOPBACK}:0"},
                      "clusters": [{"name": "e", "type": "EDS"}]})
    assert r.returncode == 1 and "clusters[0].type: EDS needs a control plane" in r.stderr


# ---- portwayctl and portway-cp's admin API

def ctl(cp, *args, timeout=30):
    binary = Path(portway_bin()).parent / "portwayctl"
    return subprocess.run([str(binary), "--server", cp.address, *args], capture_output=True,
                          text=True, timeout=timeout)


def test_portwayctl_apply_get_delete_status(cp, origin, make_gateway, tmp_path):
    gw = make_gateway(gateway_config(cp, node="edge-1"))
    wait_until(lambda: cp_state(gw)["connected"], timeout=5, message="connected")
    good = tmp_path / "good.yaml"
    good.write_text(to_yaml(resources(origin.address, body="from ctl\n")))
    r = ctl(cp, "apply", "-f", str(good), "--wait", "5s")
    assert r.returncode == 0, r.stderr
    assert "stored 2 resource(s)" in r.stdout and "edge-1: applied" in r.stdout, r.stdout
    # Applied means live: no waiting needed.
    assert get(listener_port(gw, timeout=0.5)).body == b"from ctl\n"

    bad = tmp_path / "bad.yaml"
    bad.write_text(to_yaml({"clusters": [{"name": "x", "endpoints": ["no-port"]}],
                            "listeners": [{"name": "l2", "address": f"{LOOPBACK}:0",
                                           "routes": [{"match": {"prefix": "/"},
                                                       "cluster": "missing"}]}]}))
    r = ctl(cp, "apply", "-f", str(bad))
    assert r.returncode == 1
    assert "cluster 'x': endpoints[0].address:" in r.stderr, r.stderr
    assert "listener 'l2': routes[0].cluster:" in r.stderr, r.stderr
    assert "nothing applied" in r.stderr

    r = ctl(cp, "get", "cluster")
    assert r.returncode == 0 and '- name: "web"' in r.stdout and "# admin" in r.stdout, r.stdout
    r = ctl(cp, "status")
    assert r.returncode == 0
    line = next(l for l in r.stdout.splitlines() if l.startswith("edge-1"))
    assert line.split()[1:4] == ["yes", line.split()[2], "yes"], r.stdout

    r = ctl(cp, "delete", "listener", "dyn")
    assert r.returncode == 0, r.stderr
    wait_until(lambda: not any(l["name"] == "dyn" for l in
                               gw.admin_json("/listeners")["listeners"]), timeout=3)
    r = ctl(cp, "delete", "listener", "dyn")
    assert r.returncode == 1 and "no such resource" in r.stderr


def test_applied_resources_survive_a_portway_cp_restart_and_files_win(cp, origin, tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text(to_yaml({"clusters": [{"name": "kept", "endpoints": [origin.address]}]}))
    assert ctl(cp, "apply", "-f", str(f), "--wait", "0s").returncode in (0, 3)
    cp.stop()
    cp.start()
    r = ctl(cp, "get", "cluster", "kept")
    assert r.returncode == 0 and '- name: "kept"' in r.stdout, r.stdout
    # A name a config file defines cannot be changed or deleted from here.
    cp.write("main.yaml", {"clusters": [{"name": "filed", "endpoints": [origin.address]}]})
    wait_until(lambda: ctl(cp, "get", "cluster", "filed").returncode == 0, timeout=3)
    r = ctl(cp, "delete", "cluster", "filed")
    assert r.returncode == 1 and "defined by" in r.stderr and "main.yaml" in r.stderr
    g = tmp_path / "filed.yaml"
    g.write_text(to_yaml({"clusters": [{"name": "filed", "endpoints": ["127.0.0.1:1"]}]}))
    r = ctl(cp, "apply", "-f", str(g))
    assert r.returncode == 1 and "defined by" in r.stderr


def test_portwayctl_says_what_did_not_apply_and_why(cp, make_gateway, tmp_path):
    gw = make_gateway(gateway_config(cp, node="edge-2"))
    wait_until(lambda: cp_state(gw)["connected"], timeout=5, message="connected")
    f = tmp_path / "eds.yaml"
    f.write_text(to_yaml({"clusters": [{"name": "warm", "type": "EDS"}]}))
    r = ctl(cp, "apply", "-f", str(f), "--wait", "1s")
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert "edge-2: NOT applied" in r.stdout
    assert "warm: pending: waiting for its Endpoints" in r.stdout, r.stdout


def test_portwayctl_usage_and_unreachable(tmp_path):
    binary = Path(portway_bin()).parent / "portwayctl"
    r = subprocess.run([str(binary), "--server", f"{LOOPBACK}:{closed_port()}", "status"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 4, r
    r = subprocess.run([str(binary), "status"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "usage:" in r.stderr
    bad = tmp_path / "typo.yaml"
    bad.write_text("clusters:\n  - name: a\n    endpoint: [127.0.0.1:1]\n")
    r = subprocess.run([str(binary), "--server", f"{LOOPBACK}:1", "apply", "-f", str(bad)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "clusters[0].endpoint" in r.stderr, r.stderr


def test_the_control_plane_examples_load(tmp_path):
    examples = Path(__file__).resolve().parents[2] / "examples" / "control-plane"
    r = subprocess.run([portway_bin(), "--validate", "-c", str(examples / "gateway.yaml")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    # The README's command: portway-cp serves the example's resource
    # directory, which holds resources only (not the gateway's bootstrap).
    cp = ControlPlane(config_dir=examples / "resources").start()
    try:
        wait_until(lambda: ctl(cp, "get", "listener", "edge").returncode == 0, timeout=3,
                   message="portway-cp serving the example")
        assert 'route_config: "main"' in ctl(cp, "get", "listener", "edge").stdout
        r = ctl(cp, "apply", "-f", str(examples / "push" / "canary.yaml"), "--wait", "0s")
        assert r.returncode == 0, r.stderr
        log = cp.log_text()
        assert "error" not in log and "warn" not in log, log
    finally:
        cp.stop()
        shutil.rmtree(cp.dir, ignore_errors=True)


def test_portway_cp_says_a_bootstrap_does_not_belong_in_its_directory(cp):
    cp.write("gateway.yaml", {"admin": {"address": f"{LOOPBACK}:0"},
                              "control_plane": {"address": f"{LOOPBACK}:1", "node_id": "n"}})
    wait_until(lambda: "looks like a gateway bootstrap" in cp.log_text(), timeout=3,
               message="the hint")


def test_two_gateways_get_their_own_group_s_resources(cp, make_gateway):
    def answer(text, selector=None):
        doc = {"listeners": [{"name": "dyn", "address": f"{LOOPBACK}:0",
                              "routes": [{"match": {"prefix": "/"},
                                          "direct_response": {"status": 200,
                                                              "body": text}}]}]}
        if selector:
            doc["node_selector"] = selector
        return doc
    # Files by name: the zone-specific ones come first, the default last.
    cp.write("10-zone-a.yaml", answer("zone a\n", {"zone": "a"}))
    cp.write("20-zone-b.yaml", answer("zone b\n", {"zone": "b"}))
    cp.write("90-default.yaml", answer("default\n"))
    gateways = {}
    for node, zone in (("gw-a", "a"), ("gw-b", "b"), ("gw-c", "c")):
        config = gateway_config(cp, node=node)
        config["control_plane"]["metadata"] = {"zone": zone}
        gateways[node] = make_gateway(config)
    bodies = {n: get(listener_port(gw)).body for n, gw in gateways.items()}
    assert bodies == {"gw-a": b"zone a\n", "gw-b": b"zone b\n", "gw-c": b"default\n"}
    # A change to one group's file reaches only that group.
    cp.write("20-zone-b.yaml", answer("zone b v2\n", {"zone": "b"}))
    wait_until(lambda: get(listener_port(gateways["gw-b"])).body == b"zone b v2\n", timeout=3)
    assert get(listener_port(gateways["gw-a"])).body == b"zone a\n"
    r = ctl(cp, "status")
    for node in gateways:
        assert any(l.startswith(node) and " yes " in l for l in r.stdout.splitlines()), r.stdout
    r = ctl(cp, "get", "listener", "dyn")
    assert "10-zone-a.yaml zone=a" in r.stdout and "90-default.yaml" in r.stdout, r.stdout


def test_a_pushed_filter_loads_its_module_on_demand(cp, origin, make_gateway, tmp_path):
    # The test module registers "test.good"; the gateway looks for
    # <module_dir>/test.good.so when a push names that filter.
    built = Path(portway_bin()).parent.parent / "test" / "modules" / "good.so"
    if not built.exists():
        pytest.skip(f"{built} not built (the test modules come with the unit tests)")
    modules = tmp_path / "modules"
    modules.mkdir()
    shutil.copy(built, modules / "test.good.so")
    config = gateway_config(cp)
    config["module_dir"] = str(modules)
    config["control_plane"]["allowed_modules"] = ["test.good", "test.nowhere"]
    gw = make_gateway(config)
    wait_until(lambda: cp_state(gw)["connected"], timeout=5, message="connected")
    doc = resources(origin.address)
    doc["listeners"][0]["filters"] = [{"name": "test.good"}]
    doc["listeners"].append({"name": "unknown", "address": f"{LOOPBACK}:0",
                             "filters": [{"name": "test.nowhere"}],
                             "routes": [{"match": {"prefix": "/"}, "cluster": "web"}]})
    cp.write("main.yaml", doc)
    r = get(listener_port(gw))
    assert r.status == 200 and r.header("x-test-module") == "good"
    assert "loaded module test.good.so for filter 'test.good'" in gw.log_text()
    # No module for the other: that listener alone is rejected, at its path.
    wait_until(lambda: entry(gw, "listener", "unknown") is not None, timeout=3)
    e = entry(gw, "listener", "unknown")
    assert e["errors"][0]["path"] == "filters[0].name", e
    assert "allowed, but there is no module" in e["errors"][0]["message"], e


@pytest.mark.parametrize("squatter_reuses_port", [False, True])
def test_a_listener_that_cannot_bind_is_rejected_alone(cp, origin, make_gateway,
                                                       squatter_reuses_port):
    taken = socket.socket()
    # A process holding the port with SO_REUSEPORT must not get to share
    # its traffic with a pushed listener either.
    if squatter_reuses_port:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    taken.bind((LOOPBACK, 0))
    taken.listen()
    busy = taken.getsockname()[1]
    try:
        cp.write("main.yaml", resources(origin.address))
        gw = make_gateway(gateway_config(cp))
        port = listener_port(gw)
        doc = resources(origin.address, extra_clusters=[{"name": "more",
                                                         "endpoints": [origin.address]}])
        doc["listeners"].append({"name": "busy", "address": f"{LOOPBACK}:{busy}",
                                 "routes": [{"match": {"prefix": "/"}, "cluster": "more"}]})
        cp.write("main.yaml", doc)
        wait_until(lambda: (entry(gw, "listener", "busy") or {}).get("rejected_version"),
                   timeout=3, message="the busy listener rejected")
        e = entry(gw, "listener", "busy")
        assert e["errors"][0]["path"] == "address", e
        # The rest of that push applied, and later pushes still apply.
        assert entry(gw, "cluster", "more")["serving_version"]
        cp.write("main.yaml", resources(origin.address, body="later\n"))
        wait_until(lambda: get(port).body == b"later\n", timeout=3, message="a later push")
        assert cp_state(gw)["last_apply_error"] == ""
    finally:
        taken.close()


def make_pki(d, ca="ca", certs=(("server", "subjectAltName=IP:127.0.0.1"),
                                   ("client", "extendedKeyUsage=clientAuth"))):
    """A CA (ca.pem), a server certificate for 127.0.0.1 and a client
    certificate it issued; or another CA and the certificates named."""
    def run(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{ca}.key", "-out",
        f"{ca}.pem", "-days", "2", "-subj", f"/CN=portway test {ca}")
    for name, ext in certs:
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
            f"{name}.csr", "-subj", f"/CN={name}")
        (d / f"{name}.ext").write_text(ext + "\n")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext")
    return d


def test_tls_and_client_certificates_to_the_control_plane(origin, make_gateway, tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed (scripts/deps.sh test installs it)")
    pki = make_pki(tmp_path)
    cp = ControlPlane(extra_args=["--tls-cert", str(pki / "server.pem"), "--tls-key",
                                  str(pki / "server.key"), "--tls-client-ca",
                                  str(pki / "ca.pem")]).start()
    try:
        cp.write("main.yaml", resources(origin.address, body="over tls\n"))
        config = gateway_config(cp)
        config["control_plane"]["tls"] = {"ca_file": str(pki / "ca.pem"),
                                          "cert_file": str(pki / "client.pem"),
                                          "key_file": str(pki / "client.key")}
        gw = make_gateway(config)
        assert get(listener_port(gw)).body == b"over tls\n"
        # Plaintext, or TLS without the client certificate, gets nothing.
        plain = make_gateway(gateway_config(cp, node="plain"), wait_ready=False)
        no_cert = gateway_config(cp, node="no-cert")
        no_cert["control_plane"]["tls"] = {"ca_file": str(pki / "ca.pem")}
        no_cert_gw = make_gateway(no_cert, wait_ready=False)
        time.sleep(1.0)
        for g in (plain, no_cert_gw):
            assert not cp_state(g)["connected"] and cp_state(g)["pushes"] == 0
        r = ctl(cp, "--ca", str(pki / "ca.pem"), "--cert", str(pki / "client.pem"), "--key",
                str(pki / "client.key"), "status")
        assert r.returncode == 0 and "gw1" in r.stdout, (r.stdout, r.stderr)
        assert ctl(cp, "status").returncode == 4  # plaintext to a TLS control plane
    finally:
        cp.stop()
        shutil.rmtree(cp.dir, ignore_errors=True)


def test_tls_config_errors_have_paths(tmp_path):
    r = run_validate({"admin": {"address": f"{LOOPBACK}:0"},
                      "control_plane": {"address": f"{LOOPBACK}:1", "node_id": "n",
                                        "tls": {"cert_file": str(tmp_path / "missing.pem")}}})
    assert r.returncode == 1
    assert "control_plane.tls.ca_file: is required for TLS" in r.stderr, r.stderr
    assert "control_plane.tls.cert_file: cannot read" in r.stderr
    assert "control_plane.tls.key_file: cert_file and key_file go together" in r.stderr


# ---- filters through portway-cp

BUILTIN_FILTERS = [
    {"name": "portway.fault", "config": {"delay": {"fixed_delay": "1ms",
                                                   "percentage": 0}}},
    {"name": "portway.retry", "config": {"retry_on": ["connect-failure"], "num_retries": 2}},
    {"name": "portway.circuit_breaker", "config": {"max_requests": 100}},
]


def filtered(origin_address, filters, body=None):
    doc = resources(origin_address, body=body)
    doc["listeners"][0]["filters"] = filters
    return doc


def test_portwayctl_apply_takes_every_built_in_filter(cp, origin, make_gateway, tmp_path):
    gw = make_gateway(gateway_config(cp, node="edge-f"))
    wait_until(lambda: cp_state(gw)["connected"], timeout=5, message="connected")
    f = tmp_path / "filters.yaml"
    f.write_text(to_yaml(filtered(origin.address, BUILTIN_FILTERS)))
    r = ctl(cp, "apply", "-f", str(f), "--wait", "5s")
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "edge-f: applied" in r.stdout, r.stdout
    assert get(listener_port(gw)).status == 200
    # portway-cp knows the built-in filters: a bad config is refused there,
    # at its path, before any gateway sees it.
    bad = [dict(BUILTIN_FILTERS[1], config={"num_retries": 11})]
    f.write_text(to_yaml(filtered(origin.address, bad)))
    r = ctl(cp, "apply", "-f", str(f), "--wait", "1s")
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "listener 'dyn': filters[0].config.num_retries: must be at most 10" in r.stderr, \
        r.stderr


def test_every_built_in_filter_is_served_from_the_config_dir(cp, origin, make_gateway):
    cp.write("main.yaml", filtered(origin.address, BUILTIN_FILTERS))
    gw = make_gateway(gateway_config(cp))
    assert get(listener_port(gw)).status == 200
    assert entry(gw, "listener", "dyn")["serving_version"]
    assert "error" not in cp.log_text().lower(), cp.log_text()


def test_a_filter_portway_cp_does_not_know_is_judged_by_the_gateway(cp, origin, make_gateway,
                                                                      tmp_path):
    gw = make_gateway(gateway_config(cp, node="edge-u"))
    wait_until(lambda: cp_state(gw)["connected"], timeout=5, message="connected")
    f = tmp_path / "module.yaml"
    f.write_text(to_yaml(filtered(origin.address,
                                  [{"name": "acme.nowhere", "config": {"any": ["shape"]}}])))
    r = ctl(cp, "apply", "-f", str(f), "--wait", "5s")
    # Stored by portway-cp; the gateway has no such module and says so.
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert "stored 2 resource(s)" in r.stdout, r.stdout
    assert "edge-u: NOT applied" in r.stdout
    assert "dyn: rejected: filters[0].name: unknown filter 'acme.nowhere'" in r.stdout, r.stdout
    assert "filter 'acme.nowhere' is not built into portway-cp" in cp.log_text()


# ---- the binaries themselves

def build_dir():
    return Path(os.environ.get("PORTWAY_BUILD_DIR") or Path(portway_bin()).parent.parent)


@pytest.mark.parametrize("name", ["portway", "portway-cp", "portwayctl"])
def test_help_and_version_go_to_stdout_and_exit_0(name):
    binary = Path(portway_bin()).parent / name
    for flag in ("--help", "--version"):
        r = subprocess.run([str(binary), flag], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, (flag, r)
        assert name in r.stdout and r.stderr == "", (flag, r)
    r = subprocess.run([str(binary), "--no-such-flag"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 2 and "usage:" in r.stderr and r.stdout == "", r


def test_cmake_install_installs_the_three_binaries(tmp_path):
    bdir = build_dir()
    if not (bdir / "CMakeCache.txt").exists():
        pytest.skip(f"no configured build dir at {bdir} (set PORTWAY_BUILD_DIR)")
    r = subprocess.run(["cmake", "--install", str(bdir), "--prefix", str(tmp_path)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    for name in ("portway", "portway-cp", "portwayctl"):
        installed = tmp_path / "bin" / name
        assert installed.exists() and os.access(installed, os.X_OK), name
        v = subprocess.run([str(installed), "--version"], capture_output=True, text=True,
                           timeout=30)
        assert v.returncode == 0 and name in v.stdout, v


# ---- who may talk to portway-cp

def run_cp(*args, timeout=10):
    return subprocess.run([cp_bin(), *args], capture_output=True, text=True, timeout=timeout)


def test_plaintext_off_loopback_is_refused_without_insecure(tmp_path):
    for address in ("0.0.0.0:0", "[::]:0"):
        r = run_cp("--listen", address, "--config-dir", str(tmp_path))
        assert r.returncode == 2, r
        assert f"--listen {address} is not a loopback address and has no TLS" in r.stderr, r
        assert "--tls-cert" in r.stderr and "--insecure" in r.stderr, r.stderr


def test_insecure_serves_plaintext_off_loopback_when_asked(tmp_path):
    # Binds the wildcard address; nothing is sent to it.
    port_file = tmp_path / "port"
    proc = subprocess.Popen([cp_bin(), "--listen", "0.0.0.0:0", "--config-dir", str(tmp_path),
                             "--insecure", "--port-file", str(port_file)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(port_file.exists, timeout=10, message="portway-cp listening")
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


def ctl_at(port, pki, cert, *args):
    binary = Path(portway_bin()).parent / "portwayctl"
    return subprocess.run([str(binary), "--server", f"{LOOPBACK}:{port}", "--ca",
                           str(pki / "ca.pem"), "--cert", str(pki / f"{cert}.pem"), "--key",
                           str(pki / f"{cert}.key"), *args],
                          capture_output=True, text=True, timeout=30)


def test_the_admin_api_takes_only_admin_certificates(origin, make_gateway, tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed (scripts/deps.sh test installs it)")
    # Gateways' certificates come from ca.pem, operators' from admin-ca.pem.
    pki = make_pki(tmp_path)
    make_pki(tmp_path, ca="admin-ca", certs=(("admin", "extendedKeyUsage=clientAuth"),))
    cp = ControlPlane(extra_args=[
        "--tls-cert", str(pki / "server.pem"), "--tls-key", str(pki / "server.key"),
        "--tls-client-ca", str(pki / "ca.pem"), "--admin-listen", f"{LOOPBACK}:0",
        "--admin-client-ca", str(pki / "admin-ca.pem")]).start()
    try:
        assert cp.admin_port != cp.port
        cp.write("main.yaml", resources(origin.address, body="roles\n"))
        # A gateway certificate still works on the discovery stream...
        config = gateway_config(cp)
        config["control_plane"]["tls"] = {"ca_file": str(pki / "ca.pem"),
                                          "cert_file": str(pki / "client.pem"),
                                          "key_file": str(pki / "client.key")}
        gw = make_gateway(config)
        assert get(listener_port(gw)).body == b"roles\n"
        # ...but not on the admin API, on either port.
        r = ctl_at(cp.admin_port, pki, "client", "status")
        assert r.returncode == 4 and "gw1" not in r.stdout, (r.stdout, r.stderr)
        assert "--admin-client-ca" in r.stderr, r.stderr
        r = ctl_at(cp.port, pki, "client", "status")
        assert r.returncode == 4 and "gw1" not in r.stdout, (r.stdout, r.stderr)
        assert "no admin API on this port" in r.stderr, r.stderr
        # An admin certificate works on the admin port, and applies.
        r = ctl_at(cp.admin_port, pki, "admin", "status")
        assert r.returncode == 0 and "gw1" in r.stdout, (r.stdout, r.stderr)
        f = tmp_path / "push.yaml"
        f.write_text(to_yaml({"clusters": [{"name": "pushed", "endpoints": [origin.address]}]}))
        r = ctl_at(cp.admin_port, pki, "admin", "apply", "-f", str(f), "--wait", "5s")
        assert r.returncode == 0 and "gw1: applied" in r.stdout, (r.stdout, r.stderr)
        # An admin certificate is no gateway's.
        as_admin = gateway_config(cp, node="admin-as-gateway")
        as_admin["control_plane"]["tls"] = {"ca_file": str(pki / "ca.pem"),
                                            "cert_file": str(pki / "admin.pem"),
                                            "key_file": str(pki / "admin.key")}
        g2 = make_gateway(as_admin, wait_ready=False)
        time.sleep(1.0)
        assert not cp_state(g2)["connected"] and cp_state(g2)["pushes"] == 0
    finally:
        cp.stop()
        shutil.rmtree(cp.dir, ignore_errors=True)


def test_admin_client_ca_needs_its_own_port_and_tls(tmp_path):
    r = run_cp("--listen", f"{LOOPBACK}:0", "--config-dir", str(tmp_path), "--admin-client-ca",
               str(tmp_path / "ca.pem"))
    assert r.returncode == 2 and "--admin-client-ca needs --admin-listen" in r.stderr, r
    r = run_cp("--listen", f"{LOOPBACK}:0", "--config-dir", str(tmp_path), "--admin-listen",
               "0.0.0.0:0")
    assert r.returncode == 2, r
    assert "--admin-listen 0.0.0.0:0 is not a loopback address and has no TLS" in r.stderr


def test_portwayctl_get_prints_what_apply_takes(cp, origin, tmp_path):
    import json
    doc = filtered(origin.address, BUILTIN_FILTERS + [
        {"name": "acme.module", "config": {"port": "8080", "n": 3, "on": True,
                                           "nested": {"list": [1, "x"]}}}])
    doc["listeners"][0]["limits"] = {"max_request_body_bytes": 1024}
    doc["listeners"][0]["timeouts"] = {"request_headers_timeout": "1500ms"}
    doc["clusters"][0].update({"connect_timeout": "250ms", "lb_policy": "LEAST_REQUEST",
                               "endpoints": [origin.address,
                                             {"address": "127.0.0.1:1", "weight": 3}]})
    doc["route_configurations"] = [{"name": "rc", "routes": [
        {"match": {"prefix": "/"}, "cluster": "web",
         "request_headers": {"add": [{"name": "x-n", "value": "123"}]}}]}]
    f = tmp_path / "in.yaml"
    f.write_text(to_yaml(doc))
    assert ctl(cp, "apply", "-f", str(f), "--wait", "0s").returncode == 0
    before = ctl(cp, "get", "-o", "json")
    assert before.returncode == 0, before.stderr
    lines = before.stdout.splitlines()
    assert len(lines) == 3, before.stdout
    objects = [json.loads(line) for line in lines]
    assert {o["name"] for o in objects} == {"dyn", "rc", "web"}
    assert all(o["source"] == "admin" and o["version"] for o in objects)
    listener = next(o for o in objects if o["name"] == "dyn")["listener"]
    assert listener["filters"][1]["config"]["num_retries"] == 2
    assert "max_request_body_bytes" in listener["limits"]  # snake_case

    # get > f.yaml; apply -f f.yaml: the same resources, the same versions.
    got = ctl(cp, "get")
    assert got.returncode == 0, got.stderr
    assert "routeConfig" not in got.stdout and "route_configurations:" in got.stdout
    again = tmp_path / "again.yaml"
    again.write_text(got.stdout)
    r = ctl(cp, "apply", "-f", str(again), "--wait", "0s")
    assert r.returncode == 0, (r.stdout, r.stderr, got.stdout)
    after = ctl(cp, "get", "-o", "json")
    assert [json.loads(line) for line in after.stdout.splitlines()] == objects
    assert ctl(cp, "get", "-o", "xml").returncode == 2


# ---- which modules a push may load

def marker_module(tmp_path):
    """module_dir with test.marker.so, whose loading leaves test.marker.so.opened."""
    built = Path(portway_bin()).parent.parent / "test" / "modules" / "marks_on_load.so"
    if not built.exists():
        pytest.skip(f"{built} not built (the test modules come with the unit tests)")
    modules = tmp_path / "modules"
    modules.mkdir()
    shutil.copy(built, modules / "test.marker.so")
    return modules


def push_marker(cp, origin, make_gateway, modules, allowed):
    config = gateway_config(cp)
    config["module_dir"] = str(modules)
    if allowed is not None:
        config["control_plane"]["allowed_modules"] = allowed
    gw = make_gateway(config)
    cp.write("main.yaml", filtered(origin.address, [{"name": "test.marker"}]))
    wait_until(lambda: entry(gw, "listener", "dyn") is not None, timeout=5,
               message="a verdict on the listener")
    return gw, entry(gw, "listener", "dyn")


def test_a_module_not_allowed_is_rejected_without_being_opened(cp, origin, make_gateway,
                                                               tmp_path):
    modules = marker_module(tmp_path)
    gw, e = push_marker(cp, origin, make_gateway, modules, allowed=["test.other"])
    assert e["serving_version"] == "" and e["errors"][0]["path"] == "filters[0].name", e
    message = e["errors"][0]["message"]
    assert "unknown filter 'test.marker'" in message, message
    assert "control_plane.allowed_modules does not list it" in message, message
    assert not (modules / "test.marker.so.opened").exists()
    # With no allowed_modules at all, nothing is loaded on demand either.
    gw.stop()
    gw, e = push_marker(cp, origin, make_gateway, modules, allowed=None)
    assert "allowed_modules does not list it" in e["errors"][0]["message"], e
    assert not (modules / "test.marker.so.opened").exists()


def test_an_allowed_module_loads_on_demand(cp, origin, make_gateway, tmp_path):
    modules = marker_module(tmp_path)
    gw, e = push_marker(cp, origin, make_gateway, modules, allowed=["test.marker"])
    assert e["serving_version"] and not e["errors"], e
    assert get(listener_port(gw)).status == 200
    assert (modules / "test.marker.so.opened").exists()


def test_a_module_pinned_by_sha256_loads_only_with_that_content(cp, origin, make_gateway,
                                                                 tmp_path):
    import hashlib
    modules = marker_module(tmp_path)
    wrong = "0" * 64
    gw, e = push_marker(cp, origin, make_gateway, modules,
                        allowed=[{"name": "test.marker", "sha256": wrong}])
    message = e["errors"][0]["message"]
    assert e["serving_version"] == "" and "has sha256" in message and wrong in message, e
    assert not (modules / "test.marker.so.opened").exists()
    gw.stop()
    right = hashlib.sha256((modules / "test.marker.so").read_bytes()).hexdigest()
    gw, e = push_marker(cp, origin, make_gateway, modules,
                        allowed=[{"name": "test.marker", "sha256": right.upper()}])
    assert e["serving_version"] and not e["errors"], e
    assert (modules / "test.marker.so.opened").exists()


def test_allowed_modules_config_errors_have_paths():
    r = run_validate({"admin": {"address": f"{LOOPBACK}:0"},
                      "control_plane": {"address": f"{LOOPBACK}:1", "node_id": "n",
                                        "allowed_modules": ["a", "../b", "a",
                                                            {"name": "c", "sha256": "xyz"}]}})
    assert r.returncode == 1
    assert "control_plane.allowed_modules[1].name: must be a filter name" in r.stderr, r.stderr
    assert "control_plane.allowed_modules[2].name: 'a' is listed twice" in r.stderr
    assert "control_plane.allowed_modules[3].sha256: must be 64 hex digits" in r.stderr


# ---- readiness with a control plane

class SilentControlPlane:
    """Takes the gRPC stream (HTTP/2 settings exchanged, the Hello read) and
    never answers: a control plane that is up but says nothing."""

    SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
    SETTINGS_ACK = b"\x00\x00\x00\x04\x01\x00\x00\x00\x00"

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind((LOOPBACK, 0))
        self.sock.listen()
        self.address = f"{LOOPBACK}:{self.sock.getsockname()[1]}"
        self.conns = []
        self.received = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._talk, args=(conn,), daemon=True).start()

    def _talk(self, conn):
        try:
            conn.sendall(self.SETTINGS)
            acked = False
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                self.received += len(data)
                if not acked:
                    conn.sendall(self.SETTINGS_ACK)
                    acked = True
        except OSError:
            return

    def close(self):
        self.sock.close()
        for c in self.conns:
            c.close()


def ready(gw):
    status, _, body = gw.admin_get("/ready")
    return status, body.decode()


def test_not_ready_until_the_first_push_is_applied(cp, origin, make_gateway):
    silent = SilentControlPlane()
    try:
        config = gateway_config(cp)
        config["control_plane"]["address"] = silent.address
        gw = make_gateway(config, wait_ready=False)
        # Up, connected, nothing received: not ready, and /control_plane
        # says how long it has waited.
        wait_until(lambda: "connected, no response for" in cp_state(gw)["last_error"],
                   timeout=5, message="connected, nothing received")
        status, body = ready(gw)
        assert status == 503, body
        assert "waiting for the control plane's first push: connected, no response for" in body
        time.sleep(1.1)
        assert "no response for 1s" in cp_state(gw)["last_error"] or \
            "no response for 2s" in cp_state(gw)["last_error"], cp_state(gw)
    finally:
        silent.close()
    # A control plane that answers: ready once its first push is live,
    # even an empty one (no listeners yet).
    cp.write("main.yaml", resources(origin.address))
    gw2 = make_gateway(gateway_config(cp, node="gw2"), wait_ready=False)
    wait_until(lambda: ready(gw2)[0] == 200, timeout=5, message="ready after the first push")
    assert get(listener_port(gw2)).status == 200
    assert "the first push is live; ready" in gw2.log_text()


def test_not_ready_while_the_control_plane_is_away_without_a_persisted_config(make_gateway):
    config = gateway_config(type("Away", (), {"address": f"{LOOPBACK}:{closed_port()}"})())
    config["control_plane"]["initial_fetch_timeout"] = "100ms"
    gw = make_gateway(config, wait_ready=False)
    time.sleep(0.5)
    status, body = ready(gw)
    assert status == 503 and "waiting for the control plane's first push" in body, body
    assert gw.admin_json("/listeners")["listeners"] == []


def test_a_persisted_config_makes_ready_after_initial_fetch_timeout(cp, origin, make_gateway,
                                                                   tmp_path):
    state = tmp_path / "gateway.state"
    config = gateway_config(cp)
    config["control_plane"]["persist_path"] = str(state)
    config["control_plane"]["initial_fetch_timeout"] = "1500ms"
    cp.write("main.yaml", resources(origin.address, body="persisted\n"))
    gw = make_gateway(config)
    wait_until(state.exists, timeout=3, message="the persisted config")
    gw.stop()
    cp.stop(signal.SIGKILL)
    again = make_gateway(config, wait_ready=False)
    status, body = ready(again)
    assert status == 503, body
    assert "the persisted config serves meanwhile" in body, body
    assert "initial_fetch_timeout" in body
    wait_until(lambda: ready(again)[0] == 200, timeout=5, message="ready on the persisted config")
    assert get(listener_port(again)).body == b"persisted\n"


def test_initial_fetch_timeout_config_errors_have_paths():
    r = run_validate({"admin": {"address": f"{LOOPBACK}:0"},
                      "control_plane": {"address": f"{LOOPBACK}:1", "node_id": "n",
                                        "initial_fetch_timeout": "-1s"}})
    assert r.returncode == 1
    assert "control_plane.initial_fetch_timeout: invalid duration '-1s'" in r.stderr, r.stderr
