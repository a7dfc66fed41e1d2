"""Load balancing across origins of one cluster (one worker, so one balancer state)."""

import collections

import pytest

from portway_test_lib import HttpConn, closed_port, make_config

pytestmark = pytest.mark.gateway


def _names(gw, n, headers_for=lambda i: None, new_connection=False):
    names = []
    conn = None
    try:
        for i in range(n):
            if conn is None or new_connection:
                if conn is not None:
                    conn.close()
                conn = HttpConn(gw.port)
            r = conn.roundtrip("GET", f"/echo?i={i}", headers=headers_for(i))
            assert r.status == 200, r
            names.append(r.header("x-origin-name"))
    finally:
        if conn is not None:
            conn.close()
    return names


@pytest.fixture
def two_origins(make_origin):
    return make_origin("a"), make_origin("b")


def test_round_robin_alternates(two_origins, make_gateway):
    a, b = two_origins
    gw = make_gateway(make_config([a.address, b.address],
                                  cluster_options={"lb_policy": "round_robin"}))
    names = _names(gw, 10)
    assert all(names[i] != names[i + 1] for i in range(len(names) - 1)), names
    assert collections.Counter(names) == {"a": 5, "b": 5}


def test_round_robin_alternates_across_connections(two_origins, make_gateway):
    a, b = two_origins
    gw = make_gateway(make_config([a.address, b.address]))  # round_robin is the default
    names = _names(gw, 8, new_connection=True)
    assert collections.Counter(names) == {"a": 4, "b": 4}, names


def test_weighted_round_robin_follows_weights(two_origins, make_gateway):
    a, b = two_origins
    gw = make_gateway(make_config([{"address": a.address, "weight": 1},
                                   {"address": b.address, "weight": 3}]))
    names = _names(gw, 12)
    assert collections.Counter(names) == {"a": 3, "b": 9}, names


@pytest.mark.parametrize("policy", ["ring_hash", "maglev"])
def test_header_hash_sticks_key_to_one_origin(two_origins, make_gateway, policy):
    a, b = two_origins
    gw = make_gateway(make_config([a.address, b.address], cluster_options={
        "lb_policy": policy, "hash_policy": {"header": "x-user"}}))
    keys = [f"user-{k}" for k in range(16)]
    placement = collections.defaultdict(set)
    with HttpConn(gw.port) as c:
        for rnd in range(3):
            for key in keys:
                r = c.roundtrip("GET", "/echo", headers=[("X-User", key)])
                assert r.status == 200
                placement[key].add(r.header("x-origin-name"))
    moved = {k: v for k, v in placement.items() if len(v) != 1}
    assert not moved, f"keys that moved between origins: {moved}"
    used = {next(iter(v)) for v in placement.values()}
    assert used == {"a", "b"}, f"16 keys all hashed to {used}"


@pytest.mark.parametrize("policy", ["ring_hash", "maglev"])
def test_header_hash_is_stable_across_connections(two_origins, make_gateway, policy):
    a, b = two_origins
    gw = make_gateway(make_config([a.address, b.address], cluster_options={
        "lb_policy": policy, "hash_policy": {"header": "x-user"}}))
    names = _names(gw, 6, headers_for=lambda i: [("X-User", "alice")], new_connection=True)
    assert len(set(names)) == 1, names


def test_source_ip_hash_sticks_client_to_one_origin(two_origins, make_gateway):
    a, b = two_origins
    gw = make_gateway(make_config([a.address, b.address], cluster_options={
        "lb_policy": "ring_hash", "hash_policy": {"source_ip": True}}))
    names = _names(gw, 8, new_connection=True)
    assert len(set(names)) == 1, names


def test_random_uses_every_origin(two_origins, make_gateway):
    a, b = two_origins
    gw = make_gateway(make_config([a.address, b.address], cluster_options={"lb_policy": "random"}))
    names = _names(gw, 40)
    counts = collections.Counter(names)
    assert counts["a"] > 0 and counts["b"] > 0, counts


def test_least_request_uses_every_origin(two_origins, make_gateway):
    a, b = two_origins
    gw = make_gateway(make_config([a.address, b.address],
                                  cluster_options={"lb_policy": "least_request"}))
    counts = collections.Counter(_names(gw, 40))
    assert counts["a"] > 0 and counts["b"] > 0, counts


def test_dead_endpoint_does_not_break_live_one(make_origin, make_gateway):
    """Requests balanced to the live endpoint succeed; the dead one's get 502 (or are
    steered away, if the gateway does that): nothing else."""
    a = make_origin("a")
    gw = make_gateway(make_config([a.address, f"127.0.0.1:{closed_port()}"]))
    statuses = []
    with HttpConn(gw.port) as c:
        for _ in range(4):
            statuses.append(c.roundtrip("GET", "/echo").status)
    assert statuses.count(200) >= 2, statuses
    assert set(statuses) <= {200, 502}, statuses


def test_clusters_admin_counts_requests_per_host(two_origins, make_gateway):
    a, b = two_origins
    gw = make_gateway(make_config([a.address, b.address]))
    _names(gw, 6)
    [cluster] = [c for c in gw.admin_json("/clusters")["clusters"] if c["name"] == "backend"]
    totals = {h["address"]: h["requests_total"] for h in cluster["hosts"]}
    assert totals == {a.address: 3, b.address: 3}, cluster
