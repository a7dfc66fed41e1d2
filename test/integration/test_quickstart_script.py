"""`make run` (scripts/run-quickstart.sh): stopping the script stops the demo
origin and the gateway with it, whichever way the stop arrives.

The script runs in its own session, so it leads its own process group, as a
foreground job in a terminal does. Ctrl-C in a terminal sends SIGINT to the
whole foreground group: the script, the gateway and the demo origin at once.
A non-interactive bash starts its background jobs with SIGINT ignored, so the
origin never sees that SIGINT; only the script's trap can stop it. The other
cases: `kill -INT` or `kill` (SIGTERM) aimed at the script alone, where
neither child gets a signal except through the script.

The quick-start config is used as shipped, with its fixed ports rewritten to
port 0 (listener, admin) and a free port (the origin), so the test never
collides with a real `make run`.
"""

import os
import signal
import socket
import subprocess
import time
import urllib.request

import pytest

from portway_test_lib import LOOPBACK, REPO_ROOT, wait_until

pytestmark = pytest.mark.gateway

SCRIPT = REPO_ROOT / "scripts" / "run-quickstart.sh"
QUICKSTART = REPO_ROOT / "examples" / "quickstart" / "portway.yaml"


def _free_port():
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def _descendants(pid):
    """Every live process below pid (children, grandchildren, ...)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] == "Z":
            continue
        parents.setdefault(int(fields[1]), []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for kid in parents.get(todo.pop(), []):
            out.append(kid)
            todo.append(kid)
    return out


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _origin_pids(port):
    """The demo origins serving `port`, found by their command line."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _alive(int(entry)):
            words = _cmdline(int(entry)).split()
            if any(w.endswith("demo_origin.py") for w in words) and str(port) in words:
                out.append(int(entry))
    return out


def _port_free(port):
    with socket.socket() as s:
        try:
            s.bind((LOOPBACK, port))
            return True
        except OSError:
            return False


class Quickstart:
    def __init__(self, binary, tmp_path):
        self.origin_port = _free_port()
        text = QUICKSTART.read_text()
        for old, new in (("127.0.0.1:9901", "127.0.0.1:0"), ("127.0.0.1:10000", "127.0.0.1:0"),
                         ("127.0.0.1:8080", f"127.0.0.1:{self.origin_port}")):
            assert old in text, f"{QUICKSTART} no longer mentions {old}; update this test"
            text = text.replace(old, new)
        self.config = tmp_path / "portway.yaml"
        self.config.write_text(text)
        self.admin_file = tmp_path / "admin-address"
        self.log = open(tmp_path / "script.log", "wb")
        env = dict(os.environ, PORTWAY_QUICKSTART_CONFIG=str(self.config),
                   PORTWAY_QUICKSTART_ORIGIN_PORT=str(self.origin_port))
        self.proc = subprocess.Popen(
            ["bash", str(SCRIPT), binary, "--admin-address-path", str(self.admin_file)],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT, env=env,
            start_new_session=True)
        self.pid = self.proc.pid
        self.children = []

    def admin(self, path):
        with urllib.request.urlopen(f"http://{self.admin_address}{path}", timeout=2) as r:
            return r.status, r.read()

    def wait_serving(self):
        def admin_known():
            assert self.proc.poll() is None, f"script exited early: {self.output()}"
            try:
                return self.admin_file.read_text().strip()
            except FileNotFoundError:
                return None

        self.admin_address = wait_until(admin_known, 15, message="admin address file")

        def demo_answers():
            assert self.proc.poll() is None, f"script exited early: {self.output()}"
            try:
                import json
                listeners = json.loads(self.admin("/listeners")[1])["listeners"]
                address = listeners[0]["address"]
                with urllib.request.urlopen(f"http://{address}/", timeout=2) as r:
                    return r.status == 200 and b"from the demo origin" in r.read()
            except OSError:
                return False

        wait_until(demo_answers, 15, interval=0.1, message="the demo origin through the gateway")
        self.children = _descendants(self.pid)
        names = " | ".join(_cmdline(p) for p in self.children)
        assert "demo_origin.py" in names and "portway" in names, names

    def output(self):
        self.log.flush()
        return open(self.log.name, "rb").read().decode(errors="replace")

    def cleanup(self):
        for pid in [self.pid] + self.children + _origin_pids(self.origin_port):
            if _alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        self.log.close()


@pytest.fixture
def quickstart(portway_binary, tmp_path):
    q = Quickstart(portway_binary, tmp_path)
    yield q
    q.cleanup()


def _assert_all_stopped(q, timeout=20):
    try:
        q.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the script did not exit: {q.output()}")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_alive(p) for p in q.children):
        time.sleep(0.05)
    left = {p: _cmdline(p) for p in q.children if _alive(p)}
    assert not left, f"still running after the script exited: {left}\n{q.output()}"
    assert _port_free(q.origin_port), f"origin port {q.origin_port} still bound"


def test_ctrl_c_on_the_foreground_group_stops_origin_and_gateway(quickstart):
    quickstart.wait_serving()
    os.killpg(quickstart.pid, signal.SIGINT)  # what a terminal does on Ctrl-C
    _assert_all_stopped(quickstart)
    # Interrupted, and says so to whoever ran it (make, a shell): 128 + SIGINT.
    assert quickstart.proc.returncode in (-signal.SIGINT, 128 + signal.SIGINT)


def test_sigint_to_the_script_alone_stops_origin_and_gateway(quickstart):
    quickstart.wait_serving()
    os.kill(quickstart.pid, signal.SIGINT)
    _assert_all_stopped(quickstart)


def test_sigterm_to_the_script_alone_stops_origin_and_gateway(quickstart):
    quickstart.wait_serving()
    os.kill(quickstart.pid, signal.SIGTERM)
    _assert_all_stopped(quickstart)
    assert quickstart.proc.returncode in (-signal.SIGTERM, 128 + signal.SIGTERM)


def test_gateway_failing_to_start_stops_the_origin(quickstart_broken):
    q = quickstart_broken
    try:
        q.proc.wait(20)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the script kept running without a gateway: {q.output()}")
    assert q.proc.returncode != 0
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _origin_pids(q.origin_port):
        time.sleep(0.05)
    assert not _origin_pids(q.origin_port), f"the demo origin outlived the failed gateway\n{q.output()}"
    assert _port_free(q.origin_port), f"origin port {q.origin_port} still bound"


@pytest.fixture
def quickstart_broken(portway_binary, tmp_path):
    q = Quickstart(portway_binary, tmp_path)
    q.config.write_text("listeners: [ { name: edge } ]\n")  # invalid: no address, no routes
    yield q
    q.cleanup()


def test_second_ctrl_c_stops_a_draining_gateway_and_the_origin(quickstart):
    """Ctrl-C while a request is in flight: the gateway drains (up to the
    quick start's 15 s drain timeout); an impatient second Ctrl-C must still
    leave nothing behind."""
    quickstart.wait_serving()
    import json
    address = json.loads(quickstart.admin("/listeners")[1])["listeners"][0]["address"]
    host, port = address.rsplit(":", 1)
    held = socket.create_connection((host, int(port)), timeout=5)
    try:
        held.sendall(b"GET / HTTP/1.1\r\nhost: demo\r\n")  # head not finished: in flight
        time.sleep(0.2)
        os.killpg(quickstart.pid, signal.SIGINT)
        time.sleep(1.0)
        assert quickstart.proc.poll() is None, "the gateway should still be draining"
        os.killpg(quickstart.pid, signal.SIGINT)
        _assert_all_stopped(quickstart, timeout=5)  # well before the drain would end
    finally:
        held.close()
