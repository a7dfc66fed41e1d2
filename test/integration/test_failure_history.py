"""The failure history: GET /failures lists recent failed requests, and
GET /failures/<request-id> tells the whole story of one (docs/errors.md,
"why did I get a 502?", step one)."""

import json
import threading
import time

import pytest

from portway_test_lib import HttpConn, closed_port, make_config, raw_request

pytestmark = pytest.mark.gateway

RETRY = {"name": "portway.retry",
         "config": {"retry_on": ["connect-failure", "per-try-timeout"], "num_retries": 2,
                    "backoff": {"base_interval": "5ms", "max_interval": "10ms"}}}


def failures(gw, query=""):
    return gw.admin_json("/failures" + query)


def story(gw, request_id):
    status, _, body = gw.admin_get(f"/failures/{request_id}")
    return status, json.loads(body)


def test_a_502_after_retries_tells_every_attempt_and_decision(make_gateway):
    dead = f"127.0.0.1:{closed_port()}"
    gw = make_gateway(make_config([dead], listener={"filters": [RETRY]}))
    with HttpConn(gw.port) as c:
        r = c.roundtrip("GET", "/checkout?id=7")
    assert r.status == 502 and r.header("x-portway-error") == "upstream_connect_refused"
    request_id = r.header("x-request-id")
    assert request_id, r

    listed = failures(gw)["failures"]
    assert [f["request_id"] for f in listed] == [request_id]
    row = listed[0]
    assert (row["status"], row["cause"], row["cluster"], row["path"], row["attempts"]) == (
        502, "upstream_connect_refused", "backend", "/checkout?id=7", 3)

    status, s = story(gw, request_id)
    assert status == 200
    assert s["flag"] == "UCR" and s["local_reply"] is True
    assert [a["host"] for a in s["attempt_log"]] == [dead] * 3
    assert [a["result"] for a in s["attempt_log"]] == ["upstream_connect_refused"] * 3
    assert all("failed_ms" in a for a in s["attempt_log"])
    starts = [a["start_ms"] for a in s["attempt_log"]]
    assert starts == sorted(starts)
    decisions = [(d["filter"], d["decision"]) for d in s["decisions"]]
    assert len(decisions) == 2, decisions
    for n, (name, text) in enumerate(decisions, start=1):
        assert name == "portway.retry"
        assert text.startswith(f"retry after attempt {n} (upstream_connect_refused) in "), text


def test_a_per_try_timeout_shows_how_long_the_attempt_waited(origin, make_gateway):
    origin.handlers["/slow"] = lambda ctx: (time.sleep(0.6), ctx.send_response(200))[-1] or True
    retry = {"name": "portway.retry", "config": {
        "retry_on": ["per-try-timeout"], "num_retries": 1, "per_try_timeout": "150ms"}}
    gw = make_gateway(make_config([origin.address], listener={"filters": [retry]}))
    with HttpConn(gw.port, timeout=5) as c:
        r = c.roundtrip("GET", "/slow")
    assert r.status == 504
    _, s = story(gw, r.header("x-request-id"))
    attempts = s["attempt_log"]
    assert [a["result"] for a in attempts] == ["upstream_timeout"] * 2
    for a in attempts:
        assert 140 <= a["failed_ms"] < 1000, a
        assert "request_sent_ms" in a and "connect_ms" in a


def test_an_upstream_5xx_passed_on_is_recorded_and_carries_the_request_id(origin, make_gateway):
    origin.handlers["/boom"] = lambda ctx: ctx.send_response(503, body=b"down") or True
    gw = make_gateway(make_config([origin.address]))
    with HttpConn(gw.port) as c:
        ok = c.roundtrip("GET", "/fine")
        r = c.roundtrip("GET", "/boom")
    assert ok.status == 200 and not ok.has_header("x-request-id")
    assert r.status == 503 and not r.has_header("x-portway-error")
    request_id = r.header("x-request-id")
    # The id is the one the upstream was sent.
    assert origin.requests[-1].header("x-request-id") == request_id
    (row,) = failures(gw)["failures"]
    assert (row["request_id"], row["status"], row["cause"]) == (request_id, 503,
                                                                "upstream_response")
    _, s = story(gw, request_id)
    assert s["local_reply"] is False
    assert [(a["status"], a["result"]) for a in s["attempt_log"]] == [(503, "response 503")]
    assert "first_byte_ms" in s["attempt_log"][0]


def test_a_filters_local_answer_is_a_decision(origin, make_gateway):
    fault = {"name": "portway.fault", "config": {"abort": {"status": 503}}}
    gw = make_gateway(make_config([origin.address], listener={"filters": [fault]}))
    with HttpConn(gw.port) as c:
        r = c.roundtrip("GET", "/")
    assert r.status == 503
    _, s = story(gw, r.header("x-request-id"))
    assert s["attempt_log"] == []
    assert [d["filter"] for d in s["decisions"]] == ["portway.fault"]
    assert s["decisions"][0]["decision"].startswith("answered 503")


def test_successes_and_client_errors_are_not_failures(origin, make_gateway):
    gw = make_gateway(make_config([origin.address], routes=[
        {"match": {"prefix": "/ok"}, "cluster": "backend"}]))
    with HttpConn(gw.port) as c:
        assert c.roundtrip("GET", "/ok").status == 200
        nr = c.roundtrip("GET", "/nowhere")
    assert nr.status == 404 and nr.header("x-request-id")  # an error reply still has an id
    bad = raw_request(gw.port, b"GET / HTTP/1.1\r\nHost: a\r\nBad Name: v\r\n\r\n").response()
    assert bad.status == 400 and bad.header("x-request-id")
    # A 5xx a client brings on itself must not push real failures out.
    connect = raw_request(gw.port, b"CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n").response()
    assert connect.status == 501
    assert failures(gw)["failures"] == []


def test_a_request_header_timeout_is_a_failure(origin, make_gateway):
    gw = make_gateway(make_config([origin.address], listener={
        "timeouts": {"request_headers_timeout": "200ms"}}))
    raw = raw_request(gw.port, b"GET / HTTP/1.1\r\nHost: a\r\n", read_timeout=3.0)
    r = raw.response()
    assert r.status == 408
    (row,) = failures(gw)["failures"]
    assert row["cause"] == "request_header_timeout" and row["request_id"] == r.header(
        "x-request-id")


def test_the_history_is_bounded_newest_first(make_gateway):
    dead = f"127.0.0.1:{closed_port()}"
    config = make_config([dead])
    config["admin"]["failure_history"] = {"max_entries_per_worker": 3}
    gw = make_gateway(config)
    ids = []
    with HttpConn(gw.port) as c:
        for i in range(5):
            ids.append(c.roundtrip("GET", f"/{i}").header("x-request-id"))
    page = failures(gw)
    assert page["max_entries_per_worker"] == 3
    assert [f["request_id"] for f in page["failures"]] == ids[:1:-1]
    assert [f["request_id"] for f in failures(gw, "?limit=1")["failures"]] == ids[-1:]
    status, s = story(gw, ids[0])
    assert status == 404 and "keeps the last 3" in s["error"]
    assert gw.admin_get("/failures?limit=x")[0] == 400


def test_every_worker_is_asked(make_gateway):
    dead = f"127.0.0.1:{closed_port()}"
    gw = make_gateway(make_config([dead]), workers=2)
    ids = set()

    def one():
        with HttpConn(gw.port) as c:
            ids.add(c.roundtrip("GET", "/").header("x-request-id"))

    threads = [threading.Thread(target=one) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    page = failures(gw)
    assert page["workers"] == 2
    assert {f["request_id"] for f in page["failures"]} == ids
    for request_id in ids:
        assert story(gw, request_id)[0] == 200


def test_disabled_history_records_nothing(make_gateway):
    config = make_config([f"127.0.0.1:{closed_port()}"])
    config["admin"]["failure_history"] = {"disabled": True}
    gw = make_gateway(config)
    with HttpConn(gw.port) as c:
        r = c.roundtrip("GET", "/")
    assert r.status == 502 and r.header("x-request-id")
    page = failures(gw)
    assert page["failures"] == [] and page["max_entries_per_worker"] == 0


def test_a_client_that_half_closes_still_gets_the_list(make_gateway):
    gw = make_gateway(make_config([f"127.0.0.1:{closed_port()}"]))
    with HttpConn(gw.port) as c:
        c.roundtrip("GET", "/")
    raw = raw_request(gw.admin_port, b"GET /failures HTTP/1.1\r\nHost: a\r\n\r\n",
                      shut_write=True, read_timeout=3.0)
    r = raw.response()
    assert r.status == 200 and len(json.loads(r.body)["failures"]) == 1
