"""portway.cache through the real gateway: storing and serving (MISS, HIT,
REVALIDATED, BYPASS), the stale copy that stands in for a failing upstream
(STALE; cause=...), coalescing, the admin /cache pages, the access log, bad
configs, a control-plane push, and the shared Redis tier with a real
redis-server."""

import http.client
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
import urllib.parse

import pytest

from portway_test_lib import (LOOPBACK, HttpConn, closed_port, make_config, pattern_bytes,
                              run_validate, wait_until)

pytestmark = pytest.mark.gateway

CACHE = "x-portway-cache"
# Ages are whole seconds (now and the response time each rounded down), so a
# max-age=1 copy may already read as one second old on the request right
# after it was stored. SHORT is short, yet a HIT just after the MISS is
# certain; PAST_SHORT is long enough that it is certainly stale.
SHORT = "max-age=2"
PAST_SHORT = 2.1


# --------------------------------------------------------------------------- helpers


def cache_filter(**config):
    return {"name": "portway.cache", "config": config}


def cache_config(endpoints, cache=None, *, after=(), **kw):
    """One listener whose chain is portway.cache first, then `after`."""
    filters = [cache_filter(**(cache or {}))] + list(after)
    return make_config(endpoints, listener={"filters": filters}, **kw)


def serve(origin, path, body=b"v1", headers=(("Cache-Control", "max-age=60"),), status=200):
    """origin answers `path` from a mutable state the test flips:
    state["mode"] is "ok", "sleep" (state["sleep"] seconds first) or "reset"."""
    state = {"status": status, "body": body, "headers": list(headers), "mode": "ok",
             "sleep": 0.0}

    def handler(ctx):
        if state["mode"] == "reset":
            ctx.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            ctx.conn.mark_closed("origin")
            return False
        if state["mode"] == "sleep":
            time.sleep(state["sleep"])
        ctx.send_response(state["status"], state["headers"], state["body"])
        return True
    origin.handlers[path] = handler
    return state


def get(gw_or_port, target, headers=None, method="GET", host="portway.test", timeout=10.0,
        body=None):
    port = gw_or_port if isinstance(gw_or_port, int) else gw_or_port.port
    with HttpConn(port, timeout=timeout) as c:
        return c.roundtrip(method, target, headers=headers, host=host, body=body)


def hits_on(origin, path, method=None):
    return len([r for r in origin.requests
                if r.path == path and (method is None or r.method == method)])


def assert_stale(r, body, cause, min_age=1):
    assert r.status == 200, r
    assert r.body == body, r
    assert r.header_values(CACHE) == [f"STALE; cause={cause}"], r
    assert r.header("x-portway-error") is None, r
    assert r.header("age") is not None and int(r.header("age")) >= min_age, r


def admin_request(gw, method, path):
    """(status, body) of any method on the admin port."""
    conn = http.client.HTTPConnection(gw.admin_host, gw.admin_port, timeout=5)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def zone_view(gw, name="default"):
    for z in gw.admin_json("/cache")["zones"]:
        if z["name"] == name:
            return z
    raise AssertionError(f"no zone {name} in /cache: {gw.admin_json('/cache')}")


# --------------------------------------------------------------------------- the headline


def test_stale_copy_is_served_when_the_origin_is_gone(origin, make_gateway):
    serve(origin, "/page", b"v1", [("Cache-Control", SHORT), ("Content-Type", "text/plain"),
                                    ("ETag", '"p1"')])
    gw = make_gateway(cache_config([origin.address]))
    r = get(gw, "/page")
    assert r.status == 200 and r.body == b"v1" and r.header(CACHE) == "MISS", r
    r = get(gw, "/page")
    assert r.status == 200 and r.body == b"v1" and r.header(CACHE) == "HIT", r
    assert r.header("age") is not None and int(r.header("age")) >= 0, r
    assert hits_on(origin, "/page") == 1

    origin.stop()
    time.sleep(PAST_SHORT)
    for _ in range(5):
        r = get(gw, "/page")
        assert_stale(r, b"v1", "upstream_connect_refused", min_age=2)
        # The stored head comes back with the stored body.
        assert r.header("content-type") == "text/plain" and r.header("etag") == '"p1"', r
        assert r.header("content-length") == "2", r
    gw.wait_stat("portway_cache_stale_total", 5, zone="default", cause="upstream_connect_refused")
    assert gw.stat("portway_cache_stale_total", zone="default",
                   cause="upstream_connect_refused") == 5
    assert gw.stat("portway_cache_hits_total", zone="default") == 1
    assert gw.stat("portway_cache_misses_total", zone="default") >= 1
    # An uncached path still fails as it would without the cache.
    r = get(gw, "/never-seen")
    assert r.status == 502 and r.header("x-portway-error") == "upstream_connect_refused", r


def test_stale_is_served_after_the_retries_are_exhausted(origin, make_gateway):
    state = serve(origin, "/r", b"v1", [("Cache-Control", SHORT)])
    retry = {"name": "portway.retry",
             "config": {"retry_on": ["connect-failure", "gateway-error"], "num_retries": 2,
                        "backoff": {"base_interval": "5ms", "max_interval": "20ms"}}}
    gw = make_gateway(cache_config([origin.address], after=[retry]))
    assert get(gw, "/r").header(CACHE) == "MISS"
    time.sleep(PAST_SHORT)
    state["status"], state["body"] = 502, b"bad gateway"
    assert_stale(get(gw, "/r"), b"v1", "upstream_status_502")
    # The first try and both retries reached the origin before the copy stood in.
    assert hits_on(origin, "/r") == 1 + 3
    assert gw.stat("portway_retry_attempts_total", filter="portway.retry") == 2

    origin.stop()
    assert_stale(get(gw, "/r"), b"v1", "upstream_connect_refused")
    assert gw.stat("portway_retry_attempts_total", filter="portway.retry") == 4
    gw.wait_stat("portway_cache_stale_total", 1, zone="default", cause="upstream_status_502")
    gw.wait_stat("portway_cache_stale_total", 1, zone="default",
                 cause="upstream_connect_refused")


# --------------------------------------------------------------------------- failure causes


def test_upstream_502_for_an_expired_copy_is_replaced_by_it(origin, make_gateway):
    state = serve(origin, "/s", b"v1", [("Cache-Control", SHORT)])
    gw = make_gateway(cache_config([origin.address]))
    assert get(gw, "/s").header(CACHE) == "MISS"
    time.sleep(PAST_SHORT)
    state["status"], state["body"] = 502, b"origin says 502"
    for _ in range(3):
        assert_stale(get(gw, "/s"), b"v1", "upstream_status_502")
    assert hits_on(origin, "/s") == 4  # every stale answer asked the origin first
    gw.wait_stat("portway_cache_stale_total", 3, zone="default", cause="upstream_status_502")
    # The origin recovers: its new answer is served and stored.
    state["status"], state["body"] = 200, b"v2"
    r = get(gw, "/s")
    assert r.status == 200 and r.body == b"v2" and r.header(CACHE) == "MISS", r


def test_a_status_not_in_serve_stale_on_passes_through(origin, make_gateway):
    state = serve(origin, "/s", b"v1", [("Cache-Control", SHORT)])
    gw = make_gateway(cache_config([origin.address], {"serve_stale_on": ["503"]}))
    assert get(gw, "/s").header(CACHE) == "MISS"
    time.sleep(PAST_SHORT)
    # Errors without freshness of their own (a 502 with max-age would be
    # stored, and served, as any other response).
    state["headers"] = []
    state["status"], state["body"] = 502, b"origin says 502"
    r = get(gw, "/s")
    assert r.status == 502 and r.body == b"origin says 502", r
    assert r.header(CACHE) == "MISS", r
    state["status"], state["body"] = 503, b"origin says 503"
    assert_stale(get(gw, "/s"), b"v1", "upstream_status_503")


def test_serve_stale_on_none_turns_stale_serving_off(origin, make_gateway):
    serve(origin, "/s", b"v1", [("Cache-Control", SHORT)])
    gw = make_gateway(cache_config([origin.address], {"serve_stale_on": ["none"]}))
    assert get(gw, "/s").header(CACHE) == "MISS"
    assert get(gw, "/s").header(CACHE) == "HIT"
    origin.stop()
    time.sleep(PAST_SHORT)
    r = get(gw, "/s")
    assert r.status == 502 and r.header("x-portway-error") == "upstream_connect_refused", r


def test_must_revalidate_is_never_served_stale(origin, make_gateway):
    state = serve(origin, "/mr", b"v1", [("Cache-Control", SHORT + ", must-revalidate")])
    gw = make_gateway(cache_config([origin.address]))
    assert get(gw, "/mr").header(CACHE) == "MISS"
    assert get(gw, "/mr").header(CACHE) == "HIT"
    time.sleep(PAST_SHORT)
    state["status"], state["body"] = 502, b"origin says 502"
    r = get(gw, "/mr")
    assert r.status == 502 and r.body == b"origin says 502", r
    assert not (r.header(CACHE) or "").startswith("STALE"), r


def test_max_stale_zero_serves_only_what_stale_if_error_allows(origin, make_gateway):
    plain = serve(origin, "/plain", b"plain", [("Cache-Control", "max-age=1")])
    sie = serve(origin, "/sie", b"sie", [("Cache-Control", "max-age=1, stale-if-error=60")])
    gw = make_gateway(cache_config([origin.address], {"max_stale": "0s"}))
    assert get(gw, "/plain").header(CACHE) == "MISS"
    assert get(gw, "/sie").header(CACHE) == "MISS"
    time.sleep(2.1)  # at least one whole second past max-age=1
    for state in (plain, sie):
        state["status"], state["body"] = 503, b"down"
    r = get(gw, "/plain")
    assert r.status == 503 and r.body == b"down", r
    assert_stale(get(gw, "/sie"), b"sie", "upstream_status_503")


def test_route_timeout_is_replaced_by_the_stale_copy(origin, make_gateway):
    state = serve(origin, "/t", b"v1", [("Cache-Control", SHORT)])
    gw = make_gateway(cache_config([origin.address], routes=[
        {"match": {"prefix": "/"}, "cluster": "backend", "timeout": "0.5s"}]))
    assert get(gw, "/t").header(CACHE) == "MISS"
    time.sleep(PAST_SHORT)
    state["mode"], state["sleep"] = "sleep", 2.0
    t0 = time.monotonic()
    r = get(gw, "/t")
    elapsed = time.monotonic() - t0
    assert_stale(r, b"v1", "upstream_timeout")
    assert 0.4 <= elapsed < 1.8, elapsed


def test_upstream_reset_is_replaced_by_the_stale_copy(origin, make_gateway):
    state = serve(origin, "/x", b"v1", [("Cache-Control", SHORT)])
    gw = make_gateway(cache_config([origin.address]))
    assert get(gw, "/x").header(CACHE) == "MISS"
    time.sleep(PAST_SHORT)
    state["mode"] = "reset"
    assert_stale(get(gw, "/x"), b"v1", "upstream_reset_before_response")
    gw.wait_stat("portway_cache_stale_total", 1, zone="default",
                 cause="upstream_reset_before_response")


def test_open_circuit_is_replaced_by_the_stale_copy(origin, make_gateway):
    serve(origin, "/c", b"v1", [("Cache-Control", SHORT)])
    breaker = {"name": "portway.circuit_breaker",
               "config": {"consecutive_failures": 1, "open_duration": "30s",
                          "host": {"disabled": True}}}
    gw = make_gateway(cache_config([origin.address], after=[breaker]))
    assert get(gw, "/c").header(CACHE) == "MISS"
    origin.stop()
    time.sleep(PAST_SHORT)
    # The refused connection opens the breaker (it counts, even though the
    # client got the copy) ...
    assert_stale(get(gw, "/c"), b"v1", "upstream_connect_refused")
    # ... and from then on the breaker's fast failure is what the copy replaces.
    assert_stale(get(gw, "/c"), b"v1", "circuit_open")
    gw.wait_stat("portway_cache_stale_total", 1, zone="default", cause="circuit_open")
    assert gw.stat("portway_circuit_breaker_rejected_total", cluster="backend") >= 1


def test_overflow_is_replaced_by_the_stale_copy(origin, make_gateway):
    serve(origin, "/o", b"v1", [("Cache-Control", SHORT)])
    slow = serve(origin, "/slow", b"slow", [("Cache-Control", "no-store")])
    breaker = {"name": "portway.circuit_breaker", "config": {"max_requests": 1}}
    gw = make_gateway(cache_config([origin.address], after=[breaker]))
    assert get(gw, "/o").header(CACHE) == "MISS"
    time.sleep(PAST_SHORT)
    slow["mode"], slow["sleep"] = "sleep", 1.5
    result = {}
    t = threading.Thread(target=lambda: result.update(r=get(gw, "/slow")))
    t.start()
    try:
        wait_until(lambda: any(q.path == "/slow" for q in origin.all_requests), timeout=3,
                   message="the slow request holds the only slot")
        assert_stale(get(gw, "/o"), b"v1", "upstream_overflow")
    finally:
        t.join()
    assert result["r"].status == 200


def test_no_healthy_upstream_is_replaced_by_the_stale_copy(origin, make_gateway):
    # The zone outlives a reload; the reloaded cluster has no hosts at all.
    serve(origin, "/n", b"v1", [("Cache-Control", SHORT)])
    gw = make_gateway(cache_config([origin.address]))
    assert get(gw, "/n").header(CACHE) == "MISS"
    assert get(gw, "/n").header(CACHE) == "HIT"
    gw.reload(cache_config([]))
    wait_until(lambda: (get(gw, "/other").header("x-portway-error") == "no_healthy_upstream"),
               timeout=5, message="the reload with no endpoints")
    time.sleep(PAST_SHORT)
    assert_stale(get(gw, "/n"), b"v1", "no_healthy_upstream")


def test_last_good_keeps_responses_without_freshness_for_failures_only(origin, make_gateway):
    serve(origin, "/lg", b"last good", headers=[])
    serve(origin, "/nolg", b"not kept", headers=[])
    gw = make_gateway(cache_config([origin.address], {"last_good": True}))
    for _ in range(2):
        r = get(gw, "/lg")
        assert r.status == 200 and r.header(CACHE) == "MISS", r  # never a HIT
    assert hits_on(origin, "/lg") == 2
    origin.stop()
    # Stored moments ago: its Age may well be 0.
    assert_stale(get(gw, "/lg"), b"last good", "upstream_connect_refused", min_age=0)


def test_without_last_good_a_response_without_freshness_is_not_kept(origin, make_gateway):
    serve(origin, "/nolg", b"not kept", headers=[])
    gw = make_gateway(cache_config([origin.address]))
    assert get(gw, "/nolg").header(CACHE) == "MISS"
    origin.stop()
    r = get(gw, "/nolg")
    assert r.status == 502 and r.header("x-portway-error") == "upstream_connect_refused", r


# --------------------------------------------------------------------------- what is stored


@pytest.mark.parametrize("cache_control,extra", [
    ("no-store", []),
    ("private, max-age=60", []),
    ("max-age=60", [("Set-Cookie", "session=abc")]),
])
def test_responses_a_shared_cache_must_not_keep_are_never_hits(origin, make_gateway,
                                                                cache_control, extra):
    serve(origin, "/p", b"mine", [("Cache-Control", cache_control)] + extra)
    gw = make_gateway(cache_config([origin.address]))
    for _ in range(3):
        r = get(gw, "/p")
        assert r.status == 200 and r.body == b"mine" and r.header(CACHE) == "MISS", r
    assert hits_on(origin, "/p") == 3
    assert gw.stat("portway_cache_hits_total", zone="default") == 0
    assert zone_view(gw)["entries"] == 0


def test_vary_stores_each_variant_apart(origin, make_gateway):
    def handler(ctx):
        enc = ctx.req.header("accept-encoding", "none")
        ctx.send_response(200, [("Cache-Control", "max-age=60"), ("Vary", "Accept-Encoding")],
                          f"enc={enc}".encode())
        return True
    origin.handlers["/v"] = handler
    gw = make_gateway(cache_config([origin.address]))
    for enc in ("gzip", "br"):
        r = get(gw, "/v", headers=[("Accept-Encoding", enc)])
        assert r.body == f"enc={enc}".encode() and r.header(CACHE) == "MISS", r
    for enc in ("gzip", "br", "gzip"):
        r = get(gw, "/v", headers=[("Accept-Encoding", enc)])
        assert r.body == f"enc={enc}".encode() and r.header(CACHE) == "HIT", r
    assert hits_on(origin, "/v") == 2


def test_key_headers_and_exclude_query(origin, make_gateway):
    def handler(ctx):
        body = f"tenant={ctx.req.header('x-tenant')} q={ctx.req.query}".encode()
        ctx.send_response(200, [("Cache-Control", "max-age=60")], body)
        return True
    origin.handlers["/k"] = handler
    gw = make_gateway(cache_config([origin.address], {
        "key": {"exclude_query": True, "headers": ["X-Tenant"]}}))
    assert get(gw, "/k?a=1", headers=[("X-Tenant", "a")]).header(CACHE) == "MISS"
    assert get(gw, "/k?a=1", headers=[("X-Tenant", "b")]).header(CACHE) == "MISS"
    r = get(gw, "/k?a=2", headers=[("X-Tenant", "a")])  # the query is not in the key
    assert r.header(CACHE) == "HIT" and r.body == b"tenant=a q=a=1", r
    r = get(gw, "/k?zzz", headers=[("X-Tenant", "b")])
    assert r.header(CACHE) == "HIT" and r.body == b"tenant=b q=a=1", r
    assert hits_on(origin, "/k") == 2


def test_the_query_is_part_of_the_key_by_default(origin, make_gateway):
    serve(origin, "/q", b"q")
    gw = make_gateway(cache_config([origin.address]))
    assert get(gw, "/q?a=1").header(CACHE) == "MISS"
    assert get(gw, "/q?a=2").header(CACHE) == "MISS"
    assert get(gw, "/q?a=1").header(CACHE) == "HIT"
    assert get(gw, "/q?a=1", host="other.test").header(CACHE) == "MISS"  # the host is too


def test_objects_over_max_object_bytes_are_served_whole_but_not_stored(origin, make_gateway):
    big = pattern_bytes(100_000)
    serve(origin, "/big", big)

    def chunked(ctx):
        ctx.send_raw(b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        for i in range(0, len(big), 16384):
            part = big[i:i + 16384]
            ctx.send_raw(b"%x\r\n%s\r\n" % (len(part), part))
        ctx.send_raw(b"0\r\n\r\n")
        return True
    origin.handlers["/big-chunked"] = chunked
    serve(origin, "/small", b"s" * 1000)
    gw = make_gateway(cache_config([origin.address], {"max_object_bytes": 65536}))
    for path in ("/big", "/big-chunked"):
        for _ in range(2):
            r = get(gw, path)
            assert r.status == 200 and r.header(CACHE) == "MISS", r
            assert len(r.body) == len(big) and r.body == big, path
        assert hits_on(origin, path) == 2
    assert get(gw, "/small").header(CACHE) == "MISS"
    r = get(gw, "/small")
    assert r.header(CACHE) == "HIT" and r.body == b"s" * 1000, r


def test_the_zone_evicts_to_stay_under_max_bytes(origin, make_gateway):
    serve(origin, "/e/", b"e" * 3000)
    gw = make_gateway(cache_config([origin.address], {"max_bytes": 65536,
                                                      "max_object_bytes": 4096}))
    with HttpConn(gw.port) as c:
        for i in range(60):
            r = c.roundtrip("GET", f"/e/{i}")
            assert r.status == 200 and r.header(CACHE) == "MISS", r
    stats = gw.stats()
    assert stats.get_value("portway_cache_stores_total", zone="default") >= 20
    assert stats.get_value("portway_cache_evictions_total", zone="default") >= 1
    assert 0 < stats.get_value("portway_cache_bytes", zone="default") <= 65536
    entries = stats.get_value("portway_cache_entries", zone="default")
    assert 0 < entries < 60
    view = zone_view(gw)
    assert view["bytes"] <= 65536 and view["entries"] == entries, view


def test_requests_with_authorization_are_not_shared_unless_public(origin, make_gateway):
    serve(origin, "/auth", b"yours", [("Cache-Control", "max-age=60")])
    serve(origin, "/pub", b"everyone's", [("Cache-Control", "public, max-age=60")])
    gw = make_gateway(cache_config([origin.address]))
    creds = [("Authorization", "Bearer secret")]
    for _ in range(2):
        assert get(gw, "/auth", headers=creds).header(CACHE) == "MISS"
    assert hits_on(origin, "/auth") == 2
    assert get(gw, "/pub", headers=creds).header(CACHE) == "MISS"
    assert get(gw, "/pub", headers=creds).header(CACHE) == "HIT"


def test_every_worker_shares_the_zone(origin, make_gateway):
    serve(origin, "/w", b"shared")
    gw = make_gateway(cache_config([origin.address]), workers=2)
    labels = []
    for _ in range(12):  # new connections, spread over both workers
        r = get(gw, "/w")
        assert r.status == 200 and r.body == b"shared", r
        labels.append(r.header(CACHE))
    assert labels == ["MISS"] + ["HIT"] * 11, labels
    assert hits_on(origin, "/w") == 1


# --------------------------------------------------------------------------- revalidation


def test_a_304_revalidates_the_stored_copy(origin, make_gateway):
    def handler(ctx):
        if ctx.req.header("if-none-match") == '"e1"':
            ctx.send_response(304, [("ETag", '"e1"'), ("Cache-Control", "max-age=60")])
        else:
            ctx.send_response(200, [("ETag", '"e1"'), ("Cache-Control", SHORT)],
                              b"full body")
        return True
    origin.handlers["/rv"] = handler
    gw = make_gateway(cache_config([origin.address]))
    r = get(gw, "/rv")
    assert r.header(CACHE) == "MISS" and r.body == b"full body", r
    time.sleep(PAST_SHORT)
    r = get(gw, "/rv")
    assert r.status == 200 and r.body == b"full body", r
    assert r.header(CACHE) == "REVALIDATED", r
    assert origin.requests[-1].header("if-none-match") == '"e1"', origin.requests[-1].headers
    # The 304's new Cache-Control made the copy fresh for a minute.
    r = get(gw, "/rv")
    assert r.status == 200 and r.body == b"full body" and r.header(CACHE) == "HIT", r
    assert hits_on(origin, "/rv") == 2
    gw.wait_stat("portway_cache_revalidated_total", 1, zone="default")


def test_last_modified_is_sent_back_as_if_modified_since(origin, make_gateway):
    stamp = "Wed, 21 Oct 2026 07:28:00 GMT"

    def handler(ctx):
        if ctx.req.header("if-modified-since") == stamp:
            ctx.send_response(304, [("Last-Modified", stamp), ("Cache-Control", "max-age=60")])
        else:
            ctx.send_response(200, [("Last-Modified", stamp), ("Cache-Control", SHORT)],
                              b"dated")
        return True
    origin.handlers["/lm"] = handler
    gw = make_gateway(cache_config([origin.address]))
    assert get(gw, "/lm").header(CACHE) == "MISS"
    time.sleep(PAST_SHORT)
    r = get(gw, "/lm")
    assert r.status == 200 and r.body == b"dated" and r.header(CACHE) == "REVALIDATED", r
    assert origin.requests[-1].header("if-modified-since") == stamp


def test_a_client_conditional_on_a_hit_gets_304_from_the_cache(origin, make_gateway):
    serve(origin, "/etag", b"tagged", [("Cache-Control", "max-age=60"), ("ETag", '"t1"')])
    gw = make_gateway(cache_config([origin.address]))
    assert get(gw, "/etag").header(CACHE) == "MISS"
    r = get(gw, "/etag", headers=[("If-None-Match", '"t1"')])
    assert r.status == 304 and r.body == b"" and r.header(CACHE) == "HIT", r
    assert r.header("etag") == '"t1"', r
    r = get(gw, "/etag", headers=[("If-None-Match", '"other"')])
    assert r.status == 200 and r.body == b"tagged" and r.header(CACHE) == "HIT", r
    assert hits_on(origin, "/etag") == 1


def test_head_is_served_from_a_stored_get(origin, make_gateway):
    serve(origin, "/h", b"hello world")
    gw = make_gateway(cache_config([origin.address]))
    assert get(gw, "/h").header(CACHE) == "MISS"
    with HttpConn(gw.port) as c:
        r = c.roundtrip("HEAD", "/h")
        assert r.status == 200 and r.header(CACHE) == "HIT", r
        assert r.header("content-length") == "11", r
        # No body followed the head: the next response on the connection parses.
        r = c.roundtrip("GET", "/h")
        assert r.status == 200 and r.body == b"hello world" and r.header(CACHE) == "HIT", r
    assert hits_on(origin, "/h") == 1


# --------------------------------------------------------------------------- unsafe methods


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_a_successful_unsafe_request_invalidates_the_copy(origin, make_gateway, method):
    serve(origin, "/inv", b"doc")
    gw = make_gateway(cache_config([origin.address]))
    assert get(gw, "/inv").header(CACHE) == "MISS"
    assert get(gw, "/inv").header(CACHE) == "HIT"
    r = get(gw, "/inv", method=method, body=b"new" if method != "DELETE" else None)
    assert r.status == 200 and r.header(CACHE) == "BYPASS", r
    assert hits_on(origin, "/inv", method) == 1
    assert get(gw, "/inv").header(CACHE) == "MISS"
    assert hits_on(origin, "/inv", "GET") == 2
    gw.wait_stat("portway_cache_bypass_total", 1, zone="default")


def test_a_failed_unsafe_request_leaves_the_copy(origin, make_gateway):
    state = serve(origin, "/keep", b"doc")
    gw = make_gateway(cache_config([origin.address]))
    assert get(gw, "/keep").header(CACHE) == "MISS"
    state["status"] = 500
    r = get(gw, "/keep", method="POST", body=b"x")
    assert r.status == 500 and r.header(CACHE) == "BYPASS", r
    assert get(gw, "/keep").header(CACHE) == "HIT"


# --------------------------------------------------------------------------- coalescing


def test_concurrent_misses_are_coalesced_into_one_fetch(origin, make_gateway):
    state = serve(origin, "/co", b"together")
    state["mode"], state["sleep"] = "sleep", 0.5
    gw = make_gateway(cache_config([origin.address]))
    n = 10
    barrier = threading.Barrier(n)
    out = [None] * n

    def one(i):
        with HttpConn(gw.port, timeout=10) as c:
            barrier.wait()
            out[i] = c.roundtrip("GET", "/co")
    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    assert all(r is not None and r.status == 200 and r.body == b"together" for r in out), out
    assert hits_on(origin, "/co") == 1
    labels = sorted(r.header(CACHE) for r in out)
    assert labels.count("MISS") == 1, labels
    assert gw.stat("portway_cache_coalesced_total", zone="default") >= 1


def test_waiters_go_upstream_themselves_after_coalesce_timeout(origin, make_gateway):
    state = serve(origin, "/co", b"slow")
    state["mode"], state["sleep"] = "sleep", 1.0
    gw = make_gateway(cache_config([origin.address], {"coalesce_timeout": "200ms"}))
    out = [None] * 3

    def one(i):
        out[i] = get(gw, "/co")
    threads = []
    for i in range(3):
        threads.append(threading.Thread(target=one, args=(i,)))
        threads[-1].start()
        time.sleep(0.05)
    for t in threads:
        t.join(15)
    assert all(r is not None and r.status == 200 and r.body == b"slow" for r in out), out
    # Had the waiters waited for the first fetch, they would have found its
    # copy (HITs, one origin request): each gave up after 200ms and asked.
    assert hits_on(origin, "/co") == 3
    assert sorted(r.header(CACHE) for r in out) == ["MISS"] * 3


def test_coalescing_off_sends_every_miss(origin, make_gateway):
    state = serve(origin, "/co", b"apart")
    state["mode"], state["sleep"] = "sleep", 0.5
    gw = make_gateway(cache_config([origin.address], {"max_waiters": 0}))
    out = [None] * 4

    def one(i):
        out[i] = get(gw, "/co")
    threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    assert all(r is not None and r.body == b"apart" for r in out), out
    assert hits_on(origin, "/co") == 4
    assert gw.stat("portway_cache_coalesced_total", zone="default") == 0


# --------------------------------------------------------------------------- stats, admin, log


def test_stats_count_each_outcome(origin, make_gateway):
    state = serve(origin, "/st", b"v1", [("Cache-Control", SHORT)])
    gw = make_gateway(cache_config([origin.address], {"zone": "stats-zone"}))
    z = {"zone": "stats-zone"}
    get(gw, "/st")
    get(gw, "/st")
    get(gw, "/st", method="POST", body=b"x")  # bypass, and invalidates
    get(gw, "/st")
    time.sleep(PAST_SHORT)
    state["status"] = 503
    assert_stale(get(gw, "/st"), b"v1", "upstream_status_503")
    gw.wait_stat("portway_cache_stale_total", 1, cause="upstream_status_503", **z)
    stats = gw.stats()
    assert stats.get_value("portway_cache_hits_total", **z) == 1
    assert stats.get_value("portway_cache_misses_total", **z) >= 2
    assert stats.get_value("portway_cache_bypass_total", **z) == 1
    assert stats.get_value("portway_cache_stores_total", **z) == 2
    assert stats.get_value("portway_cache_revalidated_total", **z) == 0
    assert stats.get_value("portway_cache_evictions_total", **z) == 0
    assert stats.get_value("portway_cache_entries", **z) == 1
    assert stats.get_value("portway_cache_bytes", **z) >= 2
    for name in ("portway_cache_hits_total", "portway_cache_misses_total",
                 "portway_cache_bypass_total", "portway_cache_stores_total",
                 "portway_cache_revalidated_total", "portway_cache_evictions_total",
                 "portway_cache_bytes", "portway_cache_entries", "portway_cache_stale_total"):
        assert stats.series(name), f"{name} missing from /stats"


def test_admin_lists_keys_and_purges(origin, make_gateway):
    serve(origin, "/a", b"a")
    serve(origin, "/b", b"b")
    gw = make_gateway(cache_config([origin.address]))
    host = f"127.0.0.1:{gw.port}"
    for target in ("/a?x=1", "/b", "/a?x=2"):
        assert get(gw, target, host=host).header(CACHE) == "MISS"
    view = zone_view(gw)
    assert view["entries"] == 3 and view["bytes"] > 0, view
    assert view["misses"] >= 3 and view["hits"] == 0, view

    keys = gw.admin_json("/cache/keys?prefix=" + urllib.parse.quote(f"{host}/a"))["keys"]
    assert sorted(k["key"] for k in keys) == [f"{host}/a?x=1", f"{host}/a?x=2"], keys
    assert all(k["zone"] == "default" for k in keys), keys
    everything = gw.admin_json("/cache/keys")["keys"]
    assert {k["key"] for k in everything} == {f"{host}/a?x=1", f"{host}/a?x=2", f"{host}/b"}

    # One key.
    status, body = admin_request(gw, "POST", "/cache/purge?key="
                                 + urllib.parse.quote(f"{host}/a?x=1", safe=""))
    assert status == 200 and json.loads(body) == {"purged": 1}, body
    assert get(gw, "/a?x=1", host=host).header(CACHE) == "MISS"
    assert get(gw, "/a?x=2", host=host).header(CACHE) == "HIT"
    # A prefix.
    status, body = admin_request(gw, "POST", "/cache/purge?prefix="
                                 + urllib.parse.quote(f"{host}/a", safe=""))
    assert status == 200 and json.loads(body) == {"purged": 2}, body
    assert get(gw, "/a?x=2", host=host).header(CACHE) == "MISS"
    assert get(gw, "/b", host=host).header(CACHE) == "HIT"
    # Wrong uses.
    assert admin_request(gw, "GET", "/cache/purge?key=x")[0] == 405
    assert admin_request(gw, "POST", "/cache/purge?key=x&prefix=y")[0] == 400
    assert admin_request(gw, "POST", "/cache/purge")[0] == 400
    status, body = admin_request(gw, "POST", "/cache/purge?key=nothing-here")
    assert status == 200 and json.loads(body) == {"purged": 0}, body


def test_access_log_flags_hit_stale_and_revalidated(origin, make_gateway):
    state = serve(origin, "/log", b"v1", [("Cache-Control", SHORT), ("ETag", '"L"')])

    def rv(ctx):
        if ctx.req.header("if-none-match") == '"R"':
            ctx.send_response(304, [("ETag", '"R"'), ("Cache-Control", "max-age=60")])
        else:
            ctx.send_response(200, [("ETag", '"R"'), ("Cache-Control", SHORT)], b"r")
        return True
    origin.handlers["/rvlog"] = rv
    gw = make_gateway(cache_config([origin.address]))
    get(gw, "/log")
    get(gw, "/rvlog")
    assert get(gw, "/log").header(CACHE) == "HIT"
    time.sleep(PAST_SHORT)
    assert get(gw, "/rvlog").header(CACHE) == "REVALIDATED"
    state["status"] = 502
    state["headers"] = []
    assert get(gw, "/log").header(CACHE).startswith("STALE")

    def lines():
        return [l for l in gw.stdout_text().splitlines() if "listener=edge" in l]
    want = ['"GET /log HTTP/1.1" 200 HIT ', '"GET /rvlog HTTP/1.1" 200 REVALIDATED ',
            '"GET /log HTTP/1.1" 200 STALE ']
    wait_until(lambda: all(any(w in l for l in lines()) for w in want), timeout=5,
               message="the HIT, REVALIDATED and STALE access log lines")
    stale = [l for l in lines() if '200 STALE ' in l]
    assert len(stale) == 1 and "error=-" in stale[0], stale


# --------------------------------------------------------------------------- config errors


def test_bad_cache_configs_are_rejected_with_paths(origin):
    r = run_validate(cache_config([origin.address], {"serve_stale_on": ["sometimes"]}))
    assert r.returncode == 1
    assert "listeners[0].filters[0].config.serve_stale_on[0]" in r.stderr, r.stderr
    assert "sometimes" in r.stderr, r.stderr

    r = run_validate(cache_config([origin.address], {"max_bytes": 64 << 20,
                                                     "max_object_bytes": 8 << 20}))
    assert r.returncode == 1
    assert "listeners[0].filters[0].config.max_object_bytes" in r.stderr, r.stderr

    r = run_validate(cache_config([origin.address], {"store": {"redis": {"key_prefix": "x:"}}}))
    assert r.returncode == 1
    assert "listeners[0].filters[0].config.store.redis.address" in r.stderr, r.stderr

    good = cache_config([origin.address], {
        "zone": "default", "max_bytes": 67108864, "max_object_bytes": 1048576,
        "key": {"exclude_host": False, "exclude_query": False, "headers": ["x-tenant"]},
        "serve_stale_on": ["connect-failure", "reset", "timeout", "500", "502", "503", "504",
                           "circuit-open", "no-healthy-upstream", "overflow"],
        "max_stale": "3600s", "last_good": False, "max_waiters": 256,
        "coalesce_timeout": "5s",
        "store": {"redis": {"address": f"127.0.0.1:{closed_port()}",
                            "key_prefix": "portway:cache:", "timeout": "50ms",
                            "connect_timeout": "200ms"}}})
    r = run_validate(good)
    assert r.returncode == 0, r.stderr


# --------------------------------------------------------------------------- control plane


def test_a_cache_pushed_over_the_control_plane_serves_stale(cp, origin, make_gateway):
    from test_control_plane import filtered, gateway_config, listener_port

    serve(origin, "/page", b"pushed v1", [("Cache-Control", SHORT)])
    cp.write("main.yaml", filtered(origin.address, [cache_filter(zone="pushed")]))
    gw = make_gateway(gateway_config(cp))
    port = listener_port(gw)
    r = get(port, "/page")
    assert r.status == 200 and r.header(CACHE) == "MISS", r
    r = get(port, "/page")
    assert r.status == 200 and r.header(CACHE) == "HIT", r
    assert hits_on(origin, "/page") == 1
    origin.stop()
    time.sleep(PAST_SHORT)
    for _ in range(3):
        assert_stale(get(port, "/page"), b"pushed v1", "upstream_connect_refused")
    gw.wait_stat("portway_cache_stale_total", 3, zone="pushed", cause="upstream_connect_refused")


# --------------------------------------------------------------------------- Redis tier


REDIS_SERVER = "/usr/bin/redis-server"


class RedisServer:
    """A real redis-server child on a loopback port, nothing persisted."""

    def __init__(self, port=None):
        self.port = port or closed_port()
        self.dir = tempfile.mkdtemp(prefix="portway-redis-")
        self.proc = None

    @property
    def address(self):
        return f"{LOOPBACK}:{self.port}"

    def start(self):
        self.log = open(os.path.join(self.dir, "redis.log"), "ab")
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", LOOPBACK, "--save", "",
             "--appendonly", "no", "--dir", self.dir],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        wait_until(self.ping, timeout=10, interval=0.05, message="redis-server answering PING")
        return self

    def ping(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"redis-server exited with {self.proc.returncode}")
        try:
            with socket.create_connection((LOOPBACK, self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)
        if getattr(self, "log", None) is not None and not self.log.closed:
            self.log.close()

    def cleanup(self):
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def redis_server():
    if not os.path.exists(REDIS_SERVER):
        print(f"SKIP: {REDIS_SERVER} is missing (apt-get install redis-server)")
        pytest.skip(f"{REDIS_SERVER} is missing: no Redis tier test")
    r = RedisServer().start()
    yield r
    r.cleanup()


def redis_connected(gw, zone="default"):
    return zone_view(gw, zone).get("redis", {}).get("connected") is True


def two_gateways_on_redis(origin, make_gateway, redis_server, **redis):
    """Two gateways with one zone on `redis_server`, both connected (the tier
    connects with a zone's first request: each gets one, to /warm-a and
    /warm-b)."""
    redis = {"address": redis_server.address, "timeout": "100ms", **redis}
    config = cache_config([origin.address], {"store": {"redis": redis}})
    a = make_gateway(config)
    b = make_gateway(config)
    get(a, "/warm-a")
    get(b, "/warm-b")
    wait_until(lambda: redis_connected(a) and redis_connected(b), timeout=5,
               message="both gateways connected to Redis")
    return a, b


def test_two_gateways_share_entries_through_redis(origin, make_gateway, redis_server):
    def by_path(ctx):
        ctx.send_response(200, [("Cache-Control", "max-age=300")], ctx.req.path.encode())
        return True
    for path in ("/shared", "/warm-a", "/warm-b", "/local/", "/after/"):
        origin.handlers[path] = by_path
    a, b = two_gateways_on_redis(origin, make_gateway, redis_server, key_prefix="it:",
                                 connect_timeout="200ms")

    r = get(a, "/shared")
    assert r.status == 200 and r.header(CACHE) == "MISS", r
    time.sleep(0.3)  # the SET goes out asynchronously
    r = get(b, "/shared")
    assert r.status == 200 and r.body == b"/shared" and r.header(CACHE) == "HIT", r
    assert hits_on(origin, "/shared") == 1
    assert zone_view(b)["redis"]["hits"] >= 1
    gw_b_hits = b.stat("portway_cache_redis_total", zone="default", result="hit")
    assert gw_b_hits >= 1
    # Now in B's own store as well.
    assert get(b, "/shared").header(CACHE) == "HIT"

    # Redis dies: every request still succeeds, promptly.
    redis_server.kill()
    for i in range(6):
        for gw in (a, b):
            for target in ("/shared", f"/local/{i}"):
                t0 = time.monotonic()
                r = get(gw, target, timeout=5)
                took = time.monotonic() - t0
                assert r.status == 200 and r.body == target.encode(), r
                assert r.header(CACHE) in ("MISS", "HIT"), r
                assert took < 1.0, (target, took)
    assert get(a, "/shared").header(CACHE) == "HIT"  # its own store

    # Redis is back (empty) on the same port: B sees what A stores again.
    redis_server.start()
    n = [0]

    def shared_again():
        n[0] += 1
        target = f"/after/{n[0]}"
        if get(a, target).status != 200:
            return False
        time.sleep(0.1)
        return get(b, target).header(CACHE) == "HIT"
    wait_until(shared_again, timeout=20, interval=0.2,
               message="gateway B hitting what A stored after Redis came back")


def test_a_purge_by_key_reaches_redis(origin, make_gateway, redis_server):
    serve(origin, "/p", body=b"purge me", headers=[("Cache-Control", "max-age=300")])
    a, b = two_gateways_on_redis(origin, make_gateway, redis_server)
    assert get(a, "/p").header(CACHE) == "MISS"
    time.sleep(0.3)
    key = urllib.parse.quote("portway.test/p", safe="")
    status, body = admin_request(a, "POST", f"/cache/purge?key={key}")
    assert status == 200 and json.loads(body)["purged"] == 1, body
    time.sleep(0.3)  # the DEL goes out asynchronously
    # B never had it in its own store: only Redis could answer, and it was purged.
    assert get(b, "/p").header(CACHE) == "MISS"
    assert hits_on(origin, "/p") == 2


# --------------------------------------------------------------------------- stale-while-revalidate


def test_stale_while_revalidate_answers_at_once_and_refreshes_behind(origin, make_gateway):
    state = serve(origin, "/swr", body=b"v1", headers=[
        ("Cache-Control", "max-age=1, stale-while-revalidate=30"), ("ETag", '"1"')])
    gw = make_gateway(cache_config([origin.address]))
    assert get(gw, "/swr").header(CACHE) == "MISS"
    time.sleep(2.1)
    # The origin is slow now: the client does not wait for it.
    state["mode"] = "sleep"
    state["sleep"] = 1.0
    state["body"] = b"v2"
    state["headers"] = [("Cache-Control", "max-age=60"), ("ETag", '"2"')]
    t0 = time.monotonic()
    r = get(gw, "/swr")
    took = time.monotonic() - t0
    assert r.status == 200 and r.body == b"v1", r
    assert r.header(CACHE) == "STALE; cause=stale_while_revalidate", r
    assert took < 0.5, took
    # One refresh went upstream, with the copy's validator; a second
    # request meanwhile is answered from the copy and starts no other.
    r = get(gw, "/swr")
    assert r.body == b"v1" and r.header(CACHE) == "STALE; cause=stale_while_revalidate", r
    wait_until(lambda: hits_on(origin, "/swr") == 2, timeout=5, message="the refresh")
    refresh = [q for q in origin.requests if q.path == "/swr"][-1]
    assert refresh.header("if-none-match") == '"1"', refresh
    # Once it is back, the refreshed copy is served.
    wait_until(lambda: get(gw, "/swr").body == b"v2", timeout=5, message="the refreshed copy")
    assert hits_on(origin, "/swr") == 2
    gw.wait_stat("portway_cache_stale_total", 2, zone="default", cause="stale_while_revalidate")
