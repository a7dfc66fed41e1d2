"""The admin /stats page as a Prometheus scraper sees it: parsed by a strict
text-format (0.0.4) parser written here, then checked family by family.

What it holds the page to: every family has one # HELP and one # TYPE line
before its samples; durations are in seconds and named *_seconds; histograms
are cumulative and end in +Inf = _count; build info, config version and
reload counters exist and move; the downstream request duration histogram
counts requests; retry and circuit-breaker metrics carry the cluster.
"""

import math
import re
import signal
import subprocess

import pytest

from portway_test_lib import (HttpConn, REPO_ROOT, closed_port, make_cluster, make_config,
                              portway_bin, wait_until)

pytestmark = pytest.mark.gateway

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL = r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"'
_SAMPLE_RE = re.compile(rf"^({_NAME})(?:\{{((?:{_LABEL})(?:,{_LABEL})*)?\}})? (\S+)(?: (-?\d+))?$")
_TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


class Family:
    def __init__(self, name):
        self.name = name
        self.help = None
        self.type = None
        self.samples = []  # (sample name, {labels}, value)

    def values(self, suffix="", **labels):
        want = set(labels.items())
        return [v for (n, ls, v) in self.samples
                if n == self.name + suffix and want <= set(ls.items())]


def _value(text, line):
    if text in ("+Inf", "-Inf", "NaN"):
        return float(text.replace("Inf", "inf").replace("NaN", "nan"))
    if not re.fullmatch(r"-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", text):
        raise ValueError(f"bad sample value {text!r}: {line!r}")
    return float(text)


def parse_strict(text):
    """{family name: Family}; raises ValueError on anything a strict
    Prometheus parser would refuse, and on samples outside a declared family."""
    if text and not text.endswith("\n"):
        raise ValueError("the exposition must end with a newline")
    families = {}
    current = None
    for line in text.split("\n")[:-1]:
        if line.startswith("#"):
            m = re.fullmatch(rf"# (HELP|TYPE) ({_NAME}) ?(.*)", line)
            if not m:
                if line.startswith("# HELP") or line.startswith("# TYPE"):
                    raise ValueError(f"malformed comment: {line!r}")
                continue
            kind, name, rest = m.groups()
            fam = families.get(name)
            if fam is None:
                if current is not None and current.name == name:
                    fam = current
                else:
                    fam = families[name] = Family(name)
            elif fam is not current:
                raise ValueError(f"family {name} declared again after other families")
            if kind == "HELP":
                if fam.help is not None:
                    raise ValueError(f"two HELP lines for {name}")
                if re.search(r"\\[^\\n]", rest):
                    raise ValueError(f"bad escape in HELP: {line!r}")
                fam.help = rest
            else:
                if fam.type is not None:
                    raise ValueError(f"two TYPE lines for {name}")
                if rest not in _TYPES:
                    raise ValueError(f"unknown type {rest!r} for {name}")
                if fam.samples:
                    raise ValueError(f"TYPE for {name} after its samples")
                fam.type = rest
            current = fam
            continue
        if not line.strip():
            raise ValueError("blank line inside the exposition")
        m = _SAMPLE_RE.match(line)
        if not m:
            raise ValueError(f"unparsable sample line: {line!r}")
        sample = m.group(1)
        labels = {}
        if m.group(2):
            for lm in re.finditer(_LABEL, m.group(2)):
                if lm.group(1) in labels:
                    raise ValueError(f"duplicate label {lm.group(1)}: {line!r}")
                labels[lm.group(1)] = lm.group(2)
        value = _value(m.group(7), line)  # groups: name, labels, 2 x (key, value), value, ts
        if current is None:
            raise ValueError(f"sample before any family: {line!r}")
        base = current.name
        allowed = {base}
        if current.type == "histogram":
            allowed = {base + "_bucket", base + "_sum", base + "_count"}
        if sample not in allowed:
            raise ValueError(f"sample {sample} does not belong to family {base}")
        current.samples.append((sample, labels, value))
    for fam in families.values():
        if fam.help is None or fam.type is None:
            raise ValueError(f"family {fam.name} lacks HELP or TYPE")
        if fam.type == "histogram":
            _check_histogram(fam)
    return families


def _check_histogram(fam):
    series = {}
    for sample, labels, value in fam.samples:
        key = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
        s = series.setdefault(key, {"buckets": [], "sum": None, "count": None})
        if sample.endswith("_bucket"):
            if "le" not in labels:
                raise ValueError(f"{fam.name}: bucket without le")
            s["buckets"].append((_value(labels["le"], labels["le"]), value))
        elif sample.endswith("_sum"):
            s["sum"] = value
        else:
            s["count"] = value
    for key, s in series.items():
        bounds = [b for b, _ in s["buckets"]]
        counts = [c for _, c in s["buckets"]]
        if bounds != sorted(bounds) or not bounds or not math.isinf(bounds[-1]):
            raise ValueError(f"{fam.name}{key}: buckets not ascending to +Inf: {bounds}")
        if counts != sorted(counts):
            raise ValueError(f"{fam.name}{key}: buckets not cumulative: {counts}")
        if s["count"] != counts[-1] or s["sum"] is None:
            raise ValueError(f"{fam.name}{key}: _count {s['count']} != +Inf {counts[-1]}")


def scrape(gw):
    status, headers, body = gw.admin_get("/stats")
    assert status == 200
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse_strict(body.decode())


# ---------------------------------------------------------------- the parser itself


def test_the_strict_parser_refuses_what_prometheus_refuses():
    good = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 3\n"
    assert parse_strict(good)["a_total"].values(x="1") == [3.0]
    for bad in ["a_total 3\n",  # no HELP/TYPE
                "# TYPE a_total counter\na_total 3\n",  # no HELP
                "# HELP a_total A.\n# TYPE a_total counter\na_total{x=1} 3\n",
                "# HELP a_total A.\n# TYPE a_total counter\nb_total 3\n",
                "# HELP a_total A.\n# TYPE a_total counter\na_total 3",
                "# HELP h A.\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\n"
                "h_sum 1\nh_count 1\n"]:
        with pytest.raises(ValueError):
            parse_strict(bad)


# ---------------------------------------------------------------- the page


@pytest.fixture
def busy_gateway(make_origin, make_gateway):
    """A gateway with retry and circuit-breaker traffic on two clusters."""
    origin = make_origin()
    dead = f"127.0.0.1:{closed_port()}"
    filters = [{"name": "portway.retry", "config": {
                   "retry_on": ["connect-failure"], "num_retries": 1,
                   "backoff": {"base_interval": "1ms"}}},
               {"name": "portway.circuit_breaker", "config": {
                   "consecutive_failures": 100, "host": {"disabled": True}}}]
    gw = make_gateway(make_config(
        clusters=[make_cluster("good", [origin.address]), make_cluster("dead", [dead])],
        routes=[{"name": "good", "match": {"prefix": "/good"}, "cluster": "good"},
                {"name": "dead", "match": {"prefix": "/dead"}, "cluster": "dead"}],
        listener={"filters": filters}))
    with HttpConn(gw.port) as c:
        assert c.roundtrip("GET", "/good/echo").status == 200
        assert c.roundtrip("GET", "/dead").status == 502
    return gw


def test_every_family_has_help_and_type(busy_gateway):
    families = scrape(busy_gateway)
    assert len(families) > 30
    for fam in families.values():
        assert fam.help and fam.type, fam.name
        if fam.type == "counter":
            assert fam.name.endswith("_total"), fam.name


def test_durations_are_seconds(busy_gateway):
    families = scrape(busy_gateway)
    for fam in families.values():
        words = set(fam.name.split("_"))
        if fam.type == "histogram" or words & {"time", "duration", "latency", "ms", "millis"}:
            assert fam.name.endswith("_seconds"), f"{fam.name} is a duration without _seconds"
    connect = families["portway_upstream_connect_duration_seconds"]
    assert connect.values("_count", cluster="good") == [1.0]
    # A loopback connect takes well under 100 ms: in seconds, not milliseconds.
    assert 0 < connect.values("_sum", cluster="good")[0] < 0.1
    bounds = sorted({_value(ls["le"], "") for (n, ls, v) in connect.samples if n.endswith("_bucket")})
    assert bounds[0] <= 0.001 and bounds[-2] >= 10, bounds  # 1 ms resolution up to 10 s+


def test_build_info_names_version_and_abi(busy_gateway):
    info = scrape(busy_gateway)["portway_build_info"]
    assert info.type == "gauge"
    [(name, labels, value)] = info.samples
    assert value == 1
    version = subprocess.run([portway_bin(), "--version"], capture_output=True,
                             text=True).stdout.strip()
    assert labels["version"] and labels["version"] in version, (labels, version)
    assert labels["abi"].startswith(f"portway {labels['version']}; sdk "), labels


def test_sighup_reloads_are_counted_and_bump_the_config_version(origin, make_gateway):
    config = make_config([origin.address])
    gw = make_gateway(config)
    before = scrape(gw)
    assert before["portway_config_version"].values() == [1.0]
    reloads = before["portway_config_reloads_total"]
    assert reloads.values(source="sighup", result="success") == [0.0]
    assert reloads.values(source="sighup", result="failure") == [0.0]
    gw.reload(config)
    wait_until(lambda: scrape(gw)["portway_config_reloads_total"].values(
        source="sighup", result="success") == [1.0], 5, message="a successful reload counted")
    assert scrape(gw)["portway_config_version"].values() == [2.0]
    gw.reload("listeners: [ { name: edge } ]\n")  # invalid
    wait_until(lambda: scrape(gw)["portway_config_reloads_total"].values(
        source="sighup", result="failure") == [1.0], 5, message="a failed reload counted")
    after = scrape(gw)
    assert after["portway_config_version"].values() == [2.0]  # the old config serves on
    assert after["portway_config_reloads_total"].values(source="sighup", result="success") == [1.0]


def test_request_duration_histogram_counts_every_finished_request(origin, make_gateway):
    gw = make_gateway(make_config([origin.address], routes=[
        {"match": {"path": "/direct"}, "direct_response": {"status": 200, "body": "x"}},
        {"match": {"prefix": "/"}, "cluster": "backend"}]))
    with HttpConn(gw.port) as c:
        assert c.roundtrip("GET", "/echo").status == 200
        assert c.roundtrip("GET", "/direct").status == 200
        assert c.roundtrip("GET", "/delay/0.3").status == 200
        assert c.roundtrip("GET", "/status/503").status == 503

    def counted():
        fam = scrape(gw)["portway_downstream_request_duration_seconds"]
        return fam if fam.values("_count", listener="edge") == [4.0] else None

    fam = wait_until(counted, 5, message="4 requests in the duration histogram")
    assert fam.type == "histogram"
    # The delayed one is above 250 ms, the rest below it.
    assert fam.values("_bucket", listener="edge", le="0.25") == [3.0]
    assert 0.3 <= fam.values("_sum", listener="edge")[0] < 5


def test_retry_and_circuit_breaker_metrics_carry_the_cluster(busy_gateway):
    families = scrape(busy_gateway)
    for name, fam in families.items():
        if name.startswith("portway_retry_") or name.startswith("portway_circuit_breaker_"):
            for sample, labels, _ in fam.samples:
                assert labels.get("cluster"), f"{sample}{labels} has no cluster label"
    attempts = families["portway_retry_attempts_total"]
    assert attempts.values(cluster="dead") == [1.0]
    assert attempts.values(cluster="good") == []  # no retry there, no series
    assert families["portway_retry_exhausted_total"].values(cluster="dead") == [1.0]
    assert families["portway_circuit_breaker_state"].values(cluster="dead") == [0.0]
    assert families["portway_circuit_breaker_state"].values(cluster="good") == [0.0]


@pytest.fixture
def control_plane():
    import shutil
    from test_control_plane import ControlPlane
    c = ControlPlane().start()
    yield c
    c.stop()
    shutil.rmtree(c.dir, ignore_errors=True)


def test_control_plane_pushes_are_counted_and_bump_the_config_version(control_plane, origin,
                                                                       make_gateway):
    from test_control_plane import gateway_config, listener_port, resources
    control_plane.write("main.yaml", resources(origin.address))
    gw = make_gateway(gateway_config(control_plane))
    listener_port(gw)  # the first push serves

    def pushes(result):
        return scrape(gw)["portway_config_reloads_total"].values(
            source="control_plane", result=result)

    wait_until(lambda: pushes("success") and pushes("success")[0] >= 1, 5,
               message="the first push counted")
    version = scrape(gw)["portway_config_version"].values()[0]
    assert version >= 2
    good = pushes("success")[0]
    control_plane.write("main.yaml", resources(origin.address, body="v2\n"))
    wait_until(lambda: pushes("success")[0] > good, 5, message="a second push counted")
    assert scrape(gw)["portway_config_version"].values()[0] > version
    assert pushes("failure") == [0.0]
    bad = {"name": "broken", "endpoints": ["not-an-address"]}
    control_plane.write("main.yaml", resources(origin.address, extra_clusters=[bad]))
    wait_until(lambda: pushes("failure")[0] >= 1, 5, message="a rejected push counted")
