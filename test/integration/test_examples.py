"""The deployment examples are checked, not just shipped:

- examples/systemd/portway.service passes `systemd-analyze verify` (with
  ExecStart pointed at the built binary, since verify checks it exists) and
  keeps the settings the docs promise; its config validates and drains
  within TimeoutStopSec.
- examples/kubernetes/sidecar.yaml parses; the portway.yaml in its ConfigMap
  validates; the readiness probe hits /ready on the admin port the config
  binds; the grace period covers preStop plus the drain.
"""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from portway_test_lib import REPO_ROOT, parse_duration, run_validate

pytestmark = pytest.mark.gateway

SYSTEMD = REPO_ROOT / "examples" / "systemd"
KUBERNETES = REPO_ROOT / "examples" / "kubernetes"


def unit_settings(text):
    """[(section, key, value)] of a unit file, in order (keys may repeat)."""
    out, section = [], None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line: {raw!r}"
        out.append((section, key.strip(), value.strip()))
    return out


def settings_dict(text):
    d = {}
    for section, key, value in unit_settings(text):
        d.setdefault((section, key), []).append(value)
    return d


def yaml_module():
    try:
        import yaml
    except ImportError:
        pytest.fail("python3-yaml is needed (scripts/deps.sh test installs it)")
    return yaml


# ---------------------------------------------------------------- systemd


def _systemd_analyze():
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.fail("systemd-analyze is missing (package systemd; scripts/deps.sh test)")
    return tool


def _unit_for(binary, tmp_path):
    """The shipped unit with the binary path pointing at the build."""
    text = (SYSTEMD / "portway.service").read_text()
    assert "/usr/local/bin/portway" in text
    unit = tmp_path / "portway.service"
    unit.write_text(text.replace("/usr/local/bin/portway", binary))
    return unit


def _verify(unit):
    r = subprocess.run([_systemd_analyze(), "verify", str(unit)], capture_output=True, text=True,
                       cwd=unit.parent, timeout=60)
    # verify exits 0 on lines it ignores; any message about the unit is a defect.
    messages = [l for l in (r.stdout + r.stderr).splitlines() if unit.name in l or "portway" in l]
    return r.returncode, messages, r


def test_systemd_unit_verifies(portway_binary, tmp_path):
    code, messages, r = _verify(_unit_for(portway_binary, tmp_path))
    assert code == 0 and not messages, f"rc={code}\n{r.stdout}\n{r.stderr}"


def test_systemd_verify_catches_a_broken_unit(portway_binary, tmp_path):
    # The check above means something: a misspelt setting is reported.
    unit = _unit_for(portway_binary, tmp_path)
    unit.write_text(unit.read_text().replace("Type=exec", "Type=exec-ish"))
    code, messages, r = _verify(unit)
    assert code != 0 or messages, f"verify accepted a bad Type=\n{r.stdout}\n{r.stderr}"


def test_systemd_unit_keeps_its_promises():
    text = (SYSTEMD / "portway.service").read_text()
    s = settings_dict(text)
    svc = lambda key: s.get(("Service", key), [])  # noqa: E731
    # No sd_notify in Portway: never Type=notify.
    assert svc("Type") in (["simple"], ["exec"])
    reload = svc("ExecReload")
    assert reload and re.search(r"kill -HUP \$MAINPID$", reload[-1]), reload
    assert svc("KillSignal") == ["SIGTERM"]
    for key, want in [("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"),
                      ("ProtectHome", "yes"), ("PrivateTmp", "yes"),
                      ("CapabilityBoundingSet", "CAP_NET_BIND_SERVICE"),
                      ("AmbientCapabilities", "CAP_NET_BIND_SERVICE")]:
        assert svc(key) == [want], (key, svc(key))
    assert svc("DynamicUser") == ["yes"] or svc("User")
    assert int(svc("LimitNOFILE")[0]) >= 65536
    # The drain fits in the stop timeout.
    config = (SYSTEMD / "portway.yaml").read_text()
    m = re.search(r"^drain_timeout:\s*(\S+)", config, re.M)
    drain = parse_duration(m.group(1) if m else None, 15.0)
    assert parse_duration(svc("TimeoutStopSec")[0]) > drain
    # ExecStart and ExecStartPre use the config the example ships.
    assert svc("ExecStart") == ["/usr/local/bin/portway -c /etc/portway/portway.yaml"]


def test_systemd_example_config_validates(portway_binary):
    r = run_validate((SYSTEMD / "portway.yaml").read_text(), binary=portway_binary)
    assert r.returncode == 0, r.stdout + r.stderr


def test_systemd_unit_security_exposure_is_low(portway_binary, tmp_path):
    unit = _unit_for(portway_binary, tmp_path)
    r = subprocess.run([_systemd_analyze(), "security", "--offline=yes", str(unit)],
                       capture_output=True, text=True, cwd=tmp_path, timeout=60)
    m = re.search(r"Overall exposure level for \S+: ([\d.]+)", r.stdout + r.stderr)
    assert m, r.stdout + r.stderr
    assert float(m.group(1)) <= 2.5, r.stdout[-2000:]


# ---------------------------------------------------------------- Kubernetes


def _sidecar():
    docs = [d for d in yaml_module().safe_load_all((KUBERNETES / "sidecar.yaml").read_text()) if d]
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    [deployment] = by_kind["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    [portway] = [c for c in pod["containers"] if "-c" in c.get("args", [])]
    # The config: the ConfigMap mounted where portway's -c points.
    config_path = Path(portway["args"][portway["args"].index("-c") + 1])
    [mount] = [m for m in portway["volumeMounts"]
               if config_path.parent == Path(m["mountPath"])]
    [volume] = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    cm_name = volume["configMap"]["name"]
    [configmap] = [c for c in by_kind["ConfigMap"] if c["metadata"]["name"] == cm_name]
    config_text = configmap["data"][config_path.name]
    return by_kind, pod, portway, config_text


def _port_number(container, port):
    if isinstance(port, int):
        return port
    [p] = [p for p in container["ports"] if p["name"] == port]
    return p["containerPort"]


def test_sidecar_config_validates(portway_binary):
    _, _, _, config_text = _sidecar()
    r = run_validate(config_text, binary=portway_binary)
    assert r.returncode == 0, r.stdout + r.stderr


def test_sidecar_probe_matches_the_admin_config():
    _, _, portway, config_text = _sidecar()
    config = yaml_module().safe_load(config_text)
    probe = portway["readinessProbe"]["httpGet"]
    assert probe["path"] == "/ready"
    host, _, port = config["admin"]["address"].rpartition(":")
    assert _port_number(portway, probe["port"]) == int(port)
    # The kubelet probes the pod IP: the admin must not be loopback-only.
    assert host in ("0.0.0.0", "[::]", "::"), host


def test_sidecar_ports_and_upstream_match_the_pod():
    by_kind, pod, portway, config_text = _sidecar()
    config = yaml_module().safe_load(config_text)
    listener_ports = {int(l["address"].rpartition(":")[2]) for l in config["listeners"]}
    declared = {p["containerPort"] for p in portway["ports"]}
    assert listener_ports <= declared
    # The Service sends traffic to Portway, never straight to the app.
    for svc in by_kind.get("Service", []):
        for p in svc["spec"]["ports"]:
            assert _port_number(portway, p["targetPort"]) in listener_ports
    # The app container serves what the cluster points at.
    app = [c for c in pod["containers"] if c is not portway]
    app_ports = {p["containerPort"] for c in app for p in c.get("ports", [])}
    endpoints = {e for c in config["clusters"] for e in c["endpoints"]}
    assert endpoints and all(e.startswith("127.0.0.1:") and int(e.rpartition(":")[2]) in app_ports
                             for e in endpoints), (endpoints, app_ports)


def test_sidecar_grace_period_covers_prestop_and_drain():
    _, pod, portway, config_text = _sidecar()
    config = yaml_module().safe_load(config_text)
    drain = parse_duration(config.get("drain_timeout"), 15.0)
    command = portway["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    pre_stop = float(command[1])
    grace = pod["terminationGracePeriodSeconds"]
    assert grace > pre_stop + drain, (grace, pre_stop, drain)
    # The app outlives Portway's drain, so requests in flight can finish.
    for c in pod["containers"]:
        if c is portway:
            continue
        app_stop = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command")
        assert app_stop and app_stop[0] == "sleep" and float(app_stop[1]) >= pre_stop + drain
