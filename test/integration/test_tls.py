"""TLS end to end (issue 10): termination on listeners (SNI, ALPN, versions,
ciphers, client certificates), origination toward clusters (verification,
SNI, ALPN, client certificates), certificate rotation on SIGHUP, and
secrets pushed by a control plane.

The PKI is made once per session with the openssl CLI (tls_test_lib.Pki);
HTTPS origins are tls_test_lib.TlsOrigin; clients are python ssl, openssl
s_client and curl.
"""

import json
import os
import signal
import socket
import ssl
import threading
import time
import zlib

import h2.config
import h2.connection
import h2.events
import pytest

from portway_test_lib import (LOOPBACK, PATTERN_BLOCK, HttpConn, make_cluster, make_config,
                              pattern_bytes, pattern_crc32, run_validate, to_yaml, wait_until)
from test_control_plane import ctl, entry, gateway_config, listener_port
from tls_test_lib import (PeerCert, PlaintextAnswerer, Pki, TlsOrigin, _read_http1,
                          client_context, client_hello_bytes, curl, http_get, local_client_speaks,
                          probe, read_until_closed, request_then_close_notify, s_client, tls_get)

pytestmark = pytest.mark.gateway

HANDSHAKES = "portway_tls_handshakes_total"
HANDSHAKE_FAILURES = "portway_tls_handshake_failures_total"


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    return Pki(tmp_path_factory.mktemp("pki"))


def cert_entry(cert):
    return {"cert_file": str(cert.cert), "key_file": str(cert.key)}


def tls_listener(*certs, protocols=None, **tls):
    """Listener fields for a TLS listener presenting `certs` (in that order)."""
    block = {"certificates": [cert_entry(c) for c in certs]}
    block.update(tls)
    fields = {"tls": block}
    if protocols is not None:
        fields["protocols"] = protocols
    return fields


def https_config(origin, *certs, protocols=None, access_log=None, extra_listeners=(), **tls):
    return make_config([origin.address], listener=tls_listener(*certs, protocols=protocols, **tls),
                       access_log=access_log, extra_listeners=extra_listeners)


def extra_listener(name, *certs, **kw):
    lst = {"name": name, "address": f"{LOOPBACK}:0",
           "routes": [{"match": {"prefix": "/"}, "cluster": "backend"}]}
    lst.update(tls_listener(*certs, **kw))
    return lst


def https_curl(gw, pki, path="/echo", *args, listener="edge", host="a.test"):
    port = gw.listener_port(listener)
    return curl(f"https://{host}:{port}{path}", "--cacert", str(pki.ca.cert), *args,
                resolve={host: port})


# ---------------------------------------------------------------------------
# Termination
# ---------------------------------------------------------------------------


def test_terminates_tls_and_tells_the_origin_the_scheme_was_https(origin, make_gateway, pki):
    gw = make_gateway(https_config(origin, pki.a))
    r = https_curl(gw, pki, "/echo", "--http1.1", "-H", "X-Forwarded-Proto: http")
    assert r.rc == 0 and r.status == 200, r
    req = origin.requests[-1]
    # The client's claim is not trusted: the gateway says what it saw.
    assert req.header("x-forwarded-proto") == "https", req.headers
    assert gw.wait_stat(HANDSHAKES, 1, listener="edge") >= 1
    assert gw.stat(HANDSHAKE_FAILURES, listener="edge") == 0


def test_a_plaintext_listener_beside_a_tls_one_still_says_http(origin, make_gateway, pki):
    plain = {"name": "plain", "address": f"{LOOPBACK}:0",
             "routes": [{"match": {"prefix": "/"}, "cluster": "backend"}]}
    gw = make_gateway(https_config(origin, pki.a, extra_listeners=[plain]))
    with HttpConn(gw.listener_port("plain")) as c:
        assert c.roundtrip("GET", "/echo").status == 200
    assert origin.requests[-1].header("x-forwarded-proto") == "http"
    assert https_curl(gw, pki, "/echo").status == 200
    assert origin.requests[-1].header("x-forwarded-proto") == "https"


def test_the_certificate_verifies_against_the_ca_by_name_and_by_ip(origin, make_gateway, pki):
    gw = make_gateway(https_config(origin, pki.a))
    port = gw.listener_port()
    # check_hostname=False in probe; curl checks the name for us.
    assert https_curl(gw, pki).status == 200
    r = curl(f"https://127.0.0.1:{port}/echo", "--cacert", str(pki.ca.cert))
    assert r.status == 200, r
    # A client that trusts only the other CA refuses the gateway.
    r = curl(f"https://a.test:{port}/echo", "--cacert", str(pki.other_ca.cert),
             resolve={"a.test": port})
    assert r.rc != 0 and r.status in (None, 0), r


# -- SNI ----------------------------------------------------------------------


def test_sni_picks_exact_then_wildcard_then_the_first_certificate(origin, make_gateway, pki):
    exact = pki.issue("exact", "exact.wild.test", ["DNS:exact.wild.test"])
    # The wildcard is listed before the exact name: exact still wins.
    gw = make_gateway(https_config(
        origin, pki.a, pki.wild, exact, pki.b,
        extra_listeners=[extra_listener("b_first", pki.b, pki.a)]))
    port = gw.listener_port()
    expect = {"a.test": "a.test", "b.test": "b.test", "x.wild.test": "wild.test",
              "deep.x.wild.test": "a.test",   # a wildcard covers one label only
              "exact.wild.test": "exact.wild.test", "unknown.test": "a.test",
              "wild.test": "a.test",          # nor the bare parent name
              "A.TEST": "a.test", "b.test.": "b.test", "X.Wild.Test": "wild.test"}
    for name, cn in expect.items():
        r = s_client(port, servername=name)
        assert r.ok, r
        assert r.peer == f"CN = {cn}", (name, r)
    # No SNI at all: the first certificate.
    r = s_client(port)
    assert r.ok and r.peer == "CN = a.test", r
    # Order matters for the fallback only.
    other = gw.listener_port("b_first")
    assert s_client(other, servername="unknown.test").peer == "CN = b.test"
    assert s_client(other, servername="a.test").peer == "CN = a.test"
    # The same through python's ssl, by serial: the very certificate configured.
    got = probe(port, "x.wild.test", verify=True, cafile=pki.ca.cert)
    assert got.ok and got.cert.serial == pki.wild.serial, got


# -- ALPN ---------------------------------------------------------------------


def test_alpn_h2_gets_http2_and_http11_gets_http1(origin, make_gateway, pki):
    gw = make_gateway(https_config(origin, pki.a, protocols=["http1", "http2"]))
    r2 = https_curl(gw, pki, "/echo", "--http2")
    assert r2.status == 200 and r2.http_version == "2", r2
    r1 = https_curl(gw, pki, "/echo", "--http1.1")
    assert r1.status == 200 and r1.http_version == "1.1", r1
    assert len(origin.requests) == 2
    # Both reached the origin as HTTPS requests.
    assert all(q.header("x-forwarded-proto") == "https" for q in origin.requests)
    p = probe(gw.port, "a.test", alpn=["h2", "http/1.1"])
    assert p.ok and p.alpn == "h2", p


def test_a_listener_without_http2_does_not_offer_h2(origin, make_gateway, pki):
    gw = make_gateway(https_config(origin, pki.a, protocols=["http1"]))
    p = probe(gw.port, "a.test", alpn=["h2", "http/1.1"])
    assert p.ok and p.alpn == "http/1.1", p
    # A client that offers only h2 gets the no_application_protocol alert
    # (RFC 7301 3.2), not a connection it cannot use.
    only = probe(gw.port, "a.test", alpn=["h2"])
    assert not only.ok and "no application protocol" in only.error, only
    r = https_curl(gw, pki, "/echo", "--http2")
    assert r.status == 200 and r.http_version == "1.1", r


def test_without_alpn_the_protocol_is_sniffed(origin, make_gateway, pki):
    gw = make_gateway(https_config(origin, pki.a, protocols=["http1", "http2"]))
    # HTTP/1.1 with no ALPN at all.
    r = tls_get(gw.port, "a.test")
    assert r.ok and r.alpn is None and r.status == 200, r
    # HTTP/2 with prior knowledge over TLS, no ALPN.
    status = h2_get_over_tls(gw.port, "a.test", alpn=None)
    assert status == 200
    assert len(origin.requests) == 2


def h2_get_over_tls(port, server_name, alpn=("h2",), path="/echo"):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    with socket.create_connection((LOOPBACK, port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname=server_name) as s:
            conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
            conn.initiate_connection()
            conn.send_headers(1, [(":method", "GET"), (":path", path), (":scheme", "https"),
                                  (":authority", server_name)], end_stream=True)
            s.sendall(conn.data_to_send())
            status = None
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                data = s.recv(65536)
                if not data:
                    break
                for ev in conn.receive_data(data):
                    if isinstance(ev, h2.events.ResponseReceived):
                        status = int(dict(ev.headers)[b":status"])
                    if isinstance(ev, h2.events.StreamEnded) and ev.stream_id == 1:
                        return status
                s.sendall(conn.data_to_send())
            return status


# -- versions and ciphers -----------------------------------------------------


def test_a_tls_connection_quiet_past_the_idle_release_serves_again(origin, make_gateway, pki):
    """The idle release (docs/operations.md, "Idle connections") also gives
    back the TLS layer's empty buffers; the session goes on, both ways."""
    gw = make_gateway(https_config(origin, pki.a))
    ctx = client_context(cafile=str(pki.ca.cert))
    with socket.create_connection((LOOPBACK, gw.listener_port("edge")), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="a.test") as s:
            for i in range(3):
                if i:
                    time.sleep(1.5)
                s.sendall(http_get(f"/bytes/{100_000 * (i + 1)}"))
                response = _read_http1(s, 5.0)
                head, _, body = response.partition(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 200"), head
                assert len(body) == 100_000 * (i + 1)
    assert gw.stat(HANDSHAKES, listener="edge") == 1


def test_a_tls13_only_listener_refuses_tls12(origin, make_gateway, pki):
    gw = make_gateway(https_config(origin, pki.a, min_version="tlsv1_3"))
    r12 = s_client(gw.port, "-tls1_2", servername="a.test")
    assert not r12.ok, r12
    r13 = s_client(gw.port, "-tls1_3", servername="a.test")
    assert r13.ok and r13.version == "TLSv1.3", r13
    assert gw.wait_stat(HANDSHAKE_FAILURES, 1, listener="edge") >= 1


@pytest.mark.parametrize("old", ["TLS1_0", "TLS1_1"])
def test_the_default_listener_refuses_tls_below_12(origin, make_gateway, pki, old):
    can, why = local_client_speaks(old, pki.a)
    if not can:
        pytest.skip(why)
    gw = make_gateway(https_config(origin, pki.a))
    r = probe(gw.port, "a.test", version=old, seclevel0=True)
    assert not r.ok, r
    assert probe(gw.port, "a.test", version="TLS1_2").ok
    assert probe(gw.port, "a.test", version="TLS1_3").ok


def test_only_the_configured_versions_and_tls12_ciphers_are_accepted(origin, make_gateway, pki):
    gw = make_gateway(https_config(origin, pki.a, min_version="tlsv1_2", max_version="tlsv1_2",
                                   ciphers="ECDHE-ECDSA-AES128-GCM-SHA256"))
    port = gw.listener_port()
    versions = {}
    for v in ("TLS1_0", "TLS1_1", "TLS1_2", "TLS1_3"):
        versions[v] = probe(port, "a.test", version=v, seclevel0=v in ("TLS1_0", "TLS1_1")).ok
    assert versions == {"TLS1_0": False, "TLS1_1": False, "TLS1_2": True, "TLS1_3": False}
    ciphers = {}
    for c in ("ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
              "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-ECDSA-AES128-SHA256",
              "ECDHE-ECDSA-AES256-SHA"):
        r = s_client(port, "-tls1_2", "-cipher", c, servername="a.test")
        ciphers[c] = r.ok
        if r.ok:
            assert r.cipher == c, r
    assert ciphers == {"ECDHE-ECDSA-AES128-GCM-SHA256": True,
                       "ECDHE-ECDSA-AES256-GCM-SHA384": False,
                       "ECDHE-ECDSA-CHACHA20-POLY1305": False,
                       "ECDHE-ECDSA-AES128-SHA256": False,
                       "ECDHE-ECDSA-AES256-SHA": False}


def test_only_the_configured_tls13_suites_and_curves_are_accepted(origin, make_gateway, pki):
    gw = make_gateway(https_config(origin, pki.a, min_version="tlsv1_3",
                                   ciphersuites="TLS_AES_128_GCM_SHA256", curves=["P-256"]))
    port = gw.listener_port()
    suites = {}
    for suite in ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
                  "TLS_CHACHA20_POLY1305_SHA256"):
        r = s_client(port, "-tls1_3", "-ciphersuites", suite, servername="a.test")
        suites[suite] = r.ok
        if r.ok:
            assert r.cipher == suite, r
    assert suites == {"TLS_AES_128_GCM_SHA256": True, "TLS_AES_256_GCM_SHA384": False,
                      "TLS_CHACHA20_POLY1305_SHA256": False}
    assert not s_client(port, "-tls1_3", "-groups", "X25519", servername="a.test").ok
    assert s_client(port, "-tls1_3", "-groups", "P-256", servername="a.test").ok


# -- client certificates ------------------------------------------------------


def test_a_required_client_certificate_must_verify_and_is_logged(origin, make_gateway, pki,
                                                                  tmp_path):
    log = tmp_path / "access.log"
    gw = make_gateway(https_config(origin, pki.a, client_ca_file=str(pki.ca.cert),
                                   require_client_certificate=True,
                                   access_log={"path": str(log), "format": "json"}))
    port = gw.listener_port()
    none = tls_get(port)
    assert none.status is None, none
    rogue = tls_get(port, cert=pki.client_untrusted.cert, key=pki.client_untrusted.key)
    assert rogue.status is None, rogue
    good = tls_get(port, cert=pki.client.cert, key=pki.client.key)
    assert good.ok and good.status == 200, good
    assert len(origin.requests) == 1
    # The same over TLS 1.2, where the refusal is in the handshake itself.
    assert not probe(port, "a.test", version="TLS1_2").ok
    assert tls_get(port, version="TLS1_2", cert=pki.client.cert, key=pki.client.key).status == 200
    assert gw.wait_stat(HANDSHAKE_FAILURES, 3, listener="edge") >= 3
    # The untrusted certificate is a verify failure; the missing ones are not.
    assert gw.stat(HANDSHAKE_FAILURES, listener="edge", reason="verify") == 1
    # The verified subject is in the access log line of the request (its
    # field name is the implementation's; its value names the client).
    wait_until(lambda: len(log.read_text().splitlines()) >= 2, message="two access log lines")
    lines = log.read_text().splitlines()
    entries = [e for e in map(json.loads, lines) if e.get("status") == 200]
    assert len(entries) == 2, lines
    for e in entries:
        assert e["tls_client_subject"] == "CN=client-one", e
        assert e["tls_sni"] == "a.test" and e["tls_version"] in ("TLSv1.2", "TLSv1.3"), e
    assert sorted(e["tls_version"] for e in entries) == ["TLSv1.2", "TLSv1.3"]
    assert not any("client-rogue" in l for l in lines)


def test_an_optional_client_certificate_is_asked_for_but_not_required(origin, make_gateway,
                                                                      pki):
    gw = make_gateway(https_config(origin, pki.a, client_ca_file=str(pki.ca.cert)))
    assert tls_get(gw.port).status == 200
    assert tls_get(gw.port, cert=pki.client.cert, key=pki.client.key).status == 200
    # A certificate that is offered must still verify.
    rogue = tls_get(gw.port, cert=pki.client_untrusted.cert, key=pki.client_untrusted.key)
    assert rogue.status is None, rogue


# -- wrong protocol on the port -----------------------------------------------


def test_plaintext_to_a_tls_port_is_closed_and_counted(origin, make_gateway, pki):
    gw = make_gateway(https_config(origin, pki.a))
    before = gw.stat(HANDSHAKE_FAILURES, listener="edge")
    with socket.create_connection((LOOPBACK, gw.port), timeout=5) as s:
        s.sendall(b"GET /echo HTTP/1.1\r\nHost: a.test\r\n\r\n")
        data, closed_after = read_until_closed(s, 3.0)
    assert closed_after is not None, "the gateway kept a plaintext connection open on TLS"
    assert not data.startswith(b"HTTP/1.1 200"), data
    assert origin.requests == []
    gw.wait_stat(HANDSHAKE_FAILURES, before + 1, listener="edge")
    assert tls_get(gw.port).status == 200
    assert gw.alive()


def test_tls_to_a_plaintext_port_is_answered_or_closed(origin, make_gateway, pki):
    gw = make_gateway(make_config([origin.address]))
    start = time.monotonic()
    r = probe(gw.port, "a.test", timeout=5)
    assert not r.ok and time.monotonic() - start < 4, r
    with socket.create_connection((LOOPBACK, gw.port), timeout=5) as s:
        s.sendall(client_hello_bytes())
        data, closed_after = read_until_closed(s, 3.0)
    assert closed_after is not None, data
    assert origin.requests == []
    with HttpConn(gw.port) as c:
        assert c.roundtrip("GET", "/echo").status == 200


def test_garbage_and_truncated_client_hellos_are_closed(origin, make_gateway, pki):
    gw = make_gateway(https_config(origin, pki.a))
    hello = client_hello_bytes()
    before = gw.stat(HANDSHAKE_FAILURES, listener="edge")
    cases = {
        # A handshake record whose body is noise.
        "garbage": b"\x16\x03\x01\x00\x40" + os.urandom(64),
        # Not even a record header.
        "noise": os.urandom(300),
        # Half a ClientHello, then the client's FIN.
        "truncated": hello[:len(hello) // 2],
    }
    for name, data in cases.items():
        with socket.create_connection((LOOPBACK, gw.port), timeout=5) as s:
            s.sendall(data)
            if name == "truncated":
                s.shutdown(socket.SHUT_WR)
            _, closed_after = read_until_closed(s, 3.0)
            assert closed_after is not None, f"{name}: still open after 3 s"
    assert gw.wait_stat(HANDSHAKE_FAILURES, before + 2, listener="edge") >= before + 2
    assert tls_get(gw.port).status == 200
    assert gw.alive()


def test_a_client_hello_that_never_finishes_is_timed_out(origin, make_gateway, pki):
    gw = make_gateway(make_config([origin.address], listener=dict(
        tls_listener(pki.a), timeouts={"request_headers_timeout": "1s"})))
    hello = client_hello_bytes()
    with socket.create_connection((LOOPBACK, gw.port), timeout=5) as s:
        s.sendall(hello[:20])
        _, closed_after = read_until_closed(s, 4.0)
    assert closed_after is not None, "a half ClientHello held the connection for 4 s"


# ---------------------------------------------------------------------------
# Origination
# ---------------------------------------------------------------------------


@pytest.fixture
def tls_origin(pki):
    started = []

    def make(cert=None, **kw):
        o = TlsOrigin(cert or pki.origin, **kw).start()
        started.append(o)
        return o

    yield make
    for o in started:
        o.stop()


def origination_config(endpoint, protocol=None, **tls):
    options = {"tls": tls}
    if protocol:
        options["protocol"] = protocol
    return make_config(clusters=[make_cluster("backend", [endpoint], **options)])


def get(gw, path="/echo"):
    with HttpConn(gw.port) as c:
        return c.roundtrip("GET", path)


def test_originates_tls_with_the_configured_ca_and_sni(tls_origin, make_gateway, pki):
    o = tls_origin(alpn=["http/1.1"])
    gw = make_gateway(origination_config(o.address, ca_file=str(pki.ca.cert),
                                         server_name="origin.test"))
    r = get(gw)
    assert r.status == 200, r
    body = r.json()
    assert body["sni"] == "origin.test" and body["protocol"] == "HTTP/1.1", body
    assert o.requests[0].sni == "origin.test"


def test_without_server_name_the_endpoint_address_is_verified(tls_origin, make_gateway, pki):
    # The origin certificate carries IP:127.0.0.1, and the endpoint is that IP.
    o = tls_origin(alpn=["http/1.1"])
    gw = make_gateway(origination_config(o.address, ca_file=str(pki.ca.cert)))
    assert get(gw).status == 200
    assert o.requests[0].sni is None  # RFC 6066: no SNI for an IP address
    # b.test's certificate has no IP SAN: verification must fail.
    o2 = tls_origin(cert=pki.b, alpn=["http/1.1"])
    gw2 = make_gateway(origination_config(o2.address, ca_file=str(pki.ca.cert)))
    r = get(gw2)
    assert r.status == 502 and r.header("x-portway-error") == "upstream_tls_verify_failed", r


@pytest.mark.parametrize("case", ["unknown_ca", "wrong_name", "expired"])
def test_an_origin_that_does_not_verify_is_a_502(tls_origin, make_gateway, pki, case):
    cert = pki.expired if case == "expired" else pki.origin
    o = tls_origin(cert=cert, alpn=["http/1.1"])
    ca = pki.other_ca if case == "unknown_ca" else pki.ca
    name = "b.test" if case == "wrong_name" else "origin.test"
    gw = make_gateway(origination_config(o.address, ca_file=str(ca.cert), server_name=name))
    r = get(gw)
    assert r.status == 502, r
    assert r.header("x-portway-error") == "upstream_tls_verify_failed", r
    # Counted when the stream completes, just after the client has its answer.
    assert gw.wait_stat("portway_local_replies_total", 1,
                        cause="upstream_tls_verify_failed") == 1
    assert o.requests == []
    # The gateway did reach the origin and said the configured name.
    hs = wait_until(lambda: list(o.handshakes), message="the origin's handshake record")
    assert hs[0]["sni"] == name, hs


def test_a_plaintext_origin_behind_a_tls_cluster_is_a_handshake_failure(make_gateway, pki):
    # A plaintext HTTP server answers the ClientHello with a 400 and closes.
    answerer = PlaintextAnswerer()
    try:
        gw = make_gateway(origination_config(answerer.address, ca_file=str(pki.ca.cert),
                                             server_name="origin.test"))
        start = time.monotonic()
        r = get(gw)
        assert r.status == 502, r
        assert r.header("x-portway-error") == "upstream_tls_handshake_failed", r
        assert time.monotonic() - start < 0.9, "not told before the connect timeout"
        # What reached the origin was a ClientHello.
        assert answerer.received and answerer.received[0][:1] == b"\x16", answerer.received
        assert gw.wait_stat("portway_local_replies_total", 1,
                            cause="upstream_tls_handshake_failed") == 1
    finally:
        answerer.stop()


def test_a_plaintext_origin_that_stays_silent_is_a_connect_timeout(origin, make_gateway, pki):
    # FakeOrigin waits for the end of a request head that never comes: the
    # handshake stalls, and the cluster's connect_timeout (1s) covers it.
    gw = make_gateway(origination_config(origin.address, ca_file=str(pki.ca.cert),
                                         server_name="origin.test"))
    start = time.monotonic()
    r = get(gw)
    took = time.monotonic() - start
    assert r.status == 504 and r.header("x-portway-error") == "upstream_connect_timeout", r
    assert 0.8 < took < 3, took
    assert origin.requests == []


def test_a_version_the_origin_does_not_speak_is_a_handshake_failure(tls_origin, make_gateway,
                                                                    pki):
    o = tls_origin(alpn=["http/1.1"], max_version="TLS1_2")
    gw = make_gateway(origination_config(o.address, ca_file=str(pki.ca.cert),
                                         server_name="origin.test", min_version="tlsv1_3"))
    r = get(gw)
    assert r.status == 502 and r.header("x-portway-error") == "upstream_tls_handshake_failed", r
    assert o.requests == []
    # The same origin with the default versions: TLS 1.2 is fine.
    gw2 = make_gateway(origination_config(o.address, ca_file=str(pki.ca.cert),
                                          server_name="origin.test"))
    assert get(gw2).status == 200


@pytest.mark.parametrize("offer,expect", [(("h2", "http/1.1"), "h2"),
                                          (("http/1.1",), "HTTP/1.1")])
def test_protocol_auto_follows_the_origins_alpn(tls_origin, make_gateway, pki, offer, expect):
    o = tls_origin(alpn=list(offer))
    gw = make_gateway(origination_config(o.address, protocol="auto", ca_file=str(pki.ca.cert),
                                         server_name="origin.test"))
    for _ in range(3):
        assert get(gw).status == 200
    assert [q.protocol for q in o.requests] == [expect] * 3
    if expect == "h2":
        assert o.requests[0].header(":scheme") == "https", o.requests[0].headers
        # One multiplexed connection is enough for three sequential requests.
        assert o.connections_accepted == 1


def test_a_dns_endpoint_is_the_sni_and_the_name_verified(tls_origin, make_gateway, pki):
    local = pki.issue("localhost", "localhost", ["DNS:localhost"])
    o = tls_origin(cert=local, alpn=["http/1.1"])
    gw = make_gateway(make_config(clusters=[make_cluster(
        "backend", [f"localhost:{o.port}"], type="dns", tls={"ca_file": str(pki.ca.cert)})]))
    r = get(gw)
    assert r.status == 200, r
    assert o.requests[0].sni == "localhost"


def test_upstream_tls_connections_are_kept_alive_and_carry_large_bodies(tls_origin,
                                                                        make_gateway, pki):
    o = tls_origin(alpn=["http/1.1"])
    gw = make_gateway(origination_config(o.address, ca_file=str(pki.ca.cert),
                                         server_name="origin.test"))
    with HttpConn(gw.port) as c:
        for _ in range(5):
            assert c.roundtrip("GET", "/echo").status == 200
        n = 6 << 20
        r = c.roundtrip("GET", f"/bytes/{n}")
        assert r.status == 200 and len(r.body) == n and zlib.crc32(r.body) == pattern_crc32(n)
        body = os.urandom(2 << 20)
        r = c.roundtrip("POST", "/sink", body=body)
        assert r.status == 200, r
        assert r.json()["body_len"] == len(body)
        assert r.json()["body_crc32"] == zlib.crc32(body)
    assert o.connections_accepted == 1


def test_protocol_http2_toward_an_http1_only_origin_fails_fast(tls_origin, make_gateway, pki):
    o = tls_origin(alpn=["http/1.1"])
    gw = make_gateway(origination_config(o.address, protocol="http2", ca_file=str(pki.ca.cert),
                                         server_name="origin.test"))
    start = time.monotonic()
    r = get(gw)
    assert r.status == 502, r
    assert time.monotonic() - start < 3


def test_protocol_http2_sends_no_h2_preface_without_alpn_h2(tls_origin, make_gateway, pki):
    # RFC 9113 3.3: HTTP/2 over TLS is agreed with ALPN; without it the
    # connect failed.
    o = tls_origin(alpn=["http/1.1"])
    gw = make_gateway(origination_config(o.address, protocol="http2", ca_file=str(pki.ca.cert),
                                         server_name="origin.test"))
    r = get(gw)
    assert r.status == 502
    assert r.header("x-portway-error") == "upstream_tls_handshake_failed", r
    time.sleep(0.3)
    # The origin's HTTP/1.1 parser would show the preface as "PRI *".
    assert [q.method for q in o.requests] == [] and o.protocol_errors == [], o.requests


@pytest.mark.parametrize("how", ["notify", "fin"])
def test_an_upstream_tls_connection_closed_while_idle_is_not_reused(tls_origin, make_gateway,
                                                                    pki, how):
    o = tls_origin(alpn=["http/1.1"], close_after=how)
    gw = make_gateway(origination_config(o.address, ca_file=str(pki.ca.cert),
                                         server_name="origin.test"))
    statuses = []
    for _ in range(5):
        statuses.append(get(gw).status)
        time.sleep(0.2)  # time for the close to arrive
    assert statuses == [200] * 5, statuses
    assert o.connections_accepted == 5


def test_protocol_http1_does_not_offer_h2_to_the_origin(tls_origin, make_gateway, pki):
    o = tls_origin(alpn=["h2", "http/1.1"])
    gw = make_gateway(origination_config(o.address, protocol="http1", ca_file=str(pki.ca.cert),
                                         server_name="origin.test"))
    assert get(gw).status == 200
    assert o.requests[0].protocol == "HTTP/1.1" and o.requests[0].alpn != "h2"


def test_an_upstream_client_certificate_is_presented(tls_origin, make_gateway, pki):
    o = tls_origin(alpn=["http/1.1"], client_ca=pki.ca.cert)
    gw = make_gateway(origination_config(o.address, ca_file=str(pki.ca.cert),
                                         server_name="origin.test",
                                         cert_file=str(pki.client.cert),
                                         key_file=str(pki.client.key)))
    r = get(gw)
    assert r.status == 200, r
    assert o.requests[0].client_cn == "client-one"
    # Without one, the origin refuses: a 502, never a 200. Over TLS 1.3
    # the refusal comes after the client's Finished (any 502 will do);
    # over TLS 1.2 it is part of the handshake.
    gw2 = make_gateway(origination_config(o.address, ca_file=str(pki.ca.cert),
                                          server_name="origin.test"))
    r2 = get(gw2)
    assert r2.status == 502, r2
    o12 = tls_origin(alpn=["http/1.1"], client_ca=pki.ca.cert, max_version="TLS1_2")
    gw3 = make_gateway(origination_config(o12.address, ca_file=str(pki.ca.cert),
                                          server_name="origin.test"))
    r3 = get(gw3)
    assert r3.status == 502, r3
    assert r3.header("x-portway-error") == "upstream_tls_handshake_failed", r3
    assert len(o.requests) == 1 and o12.requests == []


# ---------------------------------------------------------------------------
# Rotation
# ---------------------------------------------------------------------------


def served_serial(port, server_name="a.test"):
    """The serial of the certificate a new handshake sees, None if it fails."""
    r = probe(port, server_name)
    return r.cert.serial if r.ok and r.cert else None


def install(cert, dest_cert, dest_key):
    """Replaces the files atomically (a reader never sees half a file)."""
    for src, dst in ((cert.cert, dest_cert), (cert.key, dest_key)):
        tmp = dst.with_suffix(".tmp")
        tmp.write_bytes(src.read_bytes())
        os.replace(tmp, dst)


def test_sighup_rotates_the_certificate_and_keeps_connections(origin, make_gateway, pki,
                                                              tmp_path):
    crt, key = tmp_path / "live.pem", tmp_path / "live.key"
    first = pki.issue("rot", "a.test", ["DNS:a.test", "IP:127.0.0.1"])
    install(first, crt, key)
    gw = make_gateway(make_config([origin.address], listener={
        "tls": {"certificates": [{"cert_file": str(crt), "key_file": str(key)}]}}))
    port = gw.listener_port()
    assert served_serial(port) == first.serial
    # A keep-alive connection made before the rotation.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with ctx.wrap_socket(socket.create_connection((LOOPBACK, port), timeout=5),
                         server_hostname="a.test") as kept:
        kept.sendall(http_get())
        assert _status(kept) == 200
        second = pki.issue("rot", "a.test", ["DNS:a.test", "IP:127.0.0.1"])
        install(second, crt, key)
        gw.send_signal(signal.SIGHUP)
        wait_until(lambda: served_serial(port) == second.serial, timeout=5,
                   message="new handshakes to see the new certificate")
        # The old connection still works, on its old session.
        kept.sendall(http_get())
        assert _status(kept) == 200
        assert peer_serial(kept) == first.serial
    assert gw.alive()


def peer_serial(s):
    return PeerCert(s.getpeercert(binary_form=True)).serial


def _status(s):
    data = _read_http1(s, 5)
    assert data.startswith(b"HTTP/1.1 "), data
    return int(data[9:12])


def _resume(port, version, sni="a.test"):
    """Two connections, the second offering the first's session. Returns
    (first session, whether the second resumed)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ctx.maximum_version = {
        "TLS1_2": ssl.TLSVersion.TLSv1_2, "TLS1_3": ssl.TLSVersion.TLSv1_3}[version]
    with ctx.wrap_socket(socket.create_connection((LOOPBACK, port), timeout=5),
                         server_hostname=sni) as s:
        # TLS 1.3 tickets come after the handshake: a request and its answer
        # make sure they have been read.
        s.sendall(http_get())
        assert _status(s) == 200
        session = s.session
    with ctx.wrap_socket(socket.create_connection((LOOPBACK, port), timeout=5),
                         server_hostname=sni, session=session) as s:
        s.sendall(http_get())
        assert _status(s) == 200
        return session, s.session_reused


def test_sessions_resume_with_tickets_and_across_a_reload(origin, make_gateway, pki):
    gw = make_gateway(https_config(origin, pki.a))
    session, reused = _resume(gw.port, "TLS1_3")
    assert reused, "a TLS 1.3 session did not resume"
    session, reused = _resume(gw.port, "TLS1_2")
    assert reused and session.has_ticket, session
    assert gw.wait_stat("portway_tls_sessions_resumed_total", 2, listener="edge") == 2
    # A session made before a reload resumes after it (ticket keys survive).
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    with ctx.wrap_socket(socket.create_connection((LOOPBACK, gw.port), timeout=5),
                         server_hostname="a.test") as s:
        s.sendall(http_get())
        assert _status(s) == 200
        before = s.session
    gw.reload(gw.config)
    time.sleep(0.5)
    with ctx.wrap_socket(socket.create_connection((LOOPBACK, gw.port), timeout=5),
                         server_hostname="a.test", session=before) as s:
        s.sendall(http_get())
        assert _status(s) == 200
        assert s.session_reused, "a session from before the reload did not resume"


def test_disabled_session_tickets_issue_none(origin, make_gateway, pki):
    gw = make_gateway(https_config(origin, pki.a, disable_session_tickets=True))
    session, reused = _resume(gw.port, "TLS1_2")
    assert not session.has_ticket, "a TLS 1.2 session ticket with tickets disabled"
    assert not reused
    session, reused = _resume(gw.port, "TLS1_3")
    assert not reused, "a TLS 1.3 session resumed with tickets disabled"
    assert gw.stat("portway_tls_sessions_resumed_total", listener="edge") == 0
    assert tls_get(gw.port).status == 200


def test_a_bad_certificate_file_on_sighup_keeps_the_old_one(origin, make_gateway, pki, tmp_path):
    crt, key = tmp_path / "live.pem", tmp_path / "live.key"
    install(pki.a, crt, key)
    gw = make_gateway(make_config([origin.address], listener={
        "tls": {"certificates": [{"cert_file": str(crt), "key_file": str(key)}]}}))
    crt.write_text("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
    gw.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    assert gw.alive()
    r = probe(gw.port, "a.test")
    assert r.ok and r.cert.serial == pki.a.serial, r
    # A key that does not match the certificate is refused too.
    install(pki.b, crt, tmp_path / "unused.key")
    key.write_bytes(pki.a.key.read_bytes())
    gw.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    r = probe(gw.port, "a.test")
    assert r.ok and r.cert.serial == pki.a.serial, r
    # And an expired one.
    install(pki.expired, crt, key)
    gw.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    r = probe(gw.port, "a.test")
    assert r.ok and r.cert.serial == pki.a.serial, r
    assert gw.alive()


def test_rotation_under_load_fails_no_request(origin, make_gateway, pki, tmp_path):
    crt, key = tmp_path / "live.pem", tmp_path / "live.key"
    install(pki.issue("load", "a.test", ["DNS:a.test"]), crt, key)
    gw = make_gateway(make_config([origin.address], listener={
        "tls": {"certificates": [{"cert_file": str(crt), "key_file": str(key)}]}}))
    port = gw.listener_port()
    failures, serials, count = [], set(), [0]
    lock = threading.Lock()
    total = 300
    rotated = threading.Event()

    def load():
        # At least `total` requests, and on until the last rotation is done.
        while True:
            with lock:
                if count[0] >= total and rotated.is_set():
                    return
                count[0] += 1
            r = tls_get(port, "a.test", timeout=5)
            with lock:
                if r.status != 200:
                    failures.append(r)
                elif r.cert:
                    serials.add(r.cert.serial)
    threads = [threading.Thread(target=load) for _ in range(3)]
    for t in threads:
        t.start()
    issued = []
    for _ in range(5):
        time.sleep(0.15)
        c = pki.issue("load", "a.test", ["DNS:a.test"])
        issued.append(c.serial)
        install(c, crt, key)
        gw.send_signal(signal.SIGHUP)
    time.sleep(0.3)
    rotated.set()
    for t in threads:
        t.join(60)
    assert failures == [], failures[:5]
    assert count[0] >= total
    # Load ran across the rotations: more than one certificate was served,
    # and the last one is what a handshake sees now.
    assert len(serials) >= 2, serials
    wait_until(lambda: served_serial(port) == issued[-1], timeout=5,
               message="the last certificate")
    assert gw.alive()


# ---------------------------------------------------------------------------
# Secrets: bootstrap and control plane
# ---------------------------------------------------------------------------


def test_a_bootstrap_secret_serves_and_its_key_is_redacted(origin, make_gateway, pki):
    config = make_config([origin.address], listener={"tls": {"certificates": [
        {"secret": "a-secret"}]}})
    config["secrets"] = [{"name": "a-secret", "certificate_chain": pki.a.cert_pem,
                          "private_key": pki.a.key_pem}]
    gw = make_gateway(config)
    r = tls_get(gw.port)
    assert r.status == 200 and r.cert.serial == pki.a.serial, r
    _assert_no_key(gw, pki.a)
    assert gw.admin_json("/config_dump")["secrets"][0]["private_key"] == "[redacted]"


def _key_body(cert):
    lines = [l for l in cert.key_pem.splitlines() if l and not l.startswith("-----")]
    return lines


def _assert_no_key(gw, cert):
    status, _, body = gw.admin_get("/config_dump")
    assert status == 200
    text = body.decode(errors="replace")
    assert "PRIVATE KEY" not in text
    for line in _key_body(cert):
        assert line not in text, "a line of the private key is in /config_dump"
    logs = gw.log_text()
    assert "PRIVATE KEY" not in logs
    for line in _key_body(cert):
        assert line not in logs, "a line of the private key is in the gateway's logs"


def secret_resources(origin_address, secret):
    return {"secrets": [secret],
            "clusters": [{"name": "web", "endpoints": [origin_address]}],
            "listeners": [{"name": "dyn", "address": f"{LOOPBACK}:0",
                           "tls": {"certificates": [{"secret": secret["name"]}]},
                           "routes": [{"match": {"prefix": "/"}, "cluster": "web"}]}]}


def pem_secret(name, cert, key=None, chain=None):
    return {"name": name, "certificate_chain": chain if chain is not None else cert.cert_pem,
            "private_key": (key or cert).key_pem}


def test_a_pushed_secret_serves_and_bad_ones_are_rejected(cp, origin, make_gateway, pki):
    good = pki.issue("pushed", "a.test", ["DNS:a.test"])
    cp.write("main.yaml", secret_resources(origin.address, pem_secret("site", good)))
    gw = make_gateway(gateway_config(cp))
    port = listener_port(gw)
    r = tls_get(port)
    assert r.status == 200 and r.cert.serial == good.serial, r
    wait_until(lambda: entry(gw, "secret", "site") is not None, timeout=3,
               message="the secret on /control_plane")
    assert entry(gw, "secret", "site")["serving_version"]

    bad = {
        "mismatched_key": (pem_secret("site", pki.b, key=pki.a), "private_key"),
        "expired": (pem_secret("site", pki.expired), "certificate_chain"),
        "garbage": (pem_secret("site", pki.a, chain="-----BEGIN CERTIFICATE-----\nAAAA\n"
                                                     "-----END CERTIFICATE-----\n"),
                    "certificate_chain"),
        "garbage_key": ({"name": "site", "certificate_chain": pki.a.cert_pem,
                         "private_key": "not a key"}, "private_key"),
    }
    for case, (secret, path) in bad.items():
        before = entry(gw, "secret", "site")["rejected_version"]
        cp.write("main.yaml", secret_resources(origin.address, secret))
        wait_until(lambda: entry(gw, "secret", "site")["rejected_version"] not in ("", before),
                   timeout=3, message=f"{case}: a rejected verdict")
        e = entry(gw, "secret", "site")
        assert [err["path"] for err in e["errors"]] == [path], (case, e)
        r = tls_get(port)
        assert r.status == 200 and r.cert.serial == good.serial, (case, r)
    # A new good secret replaces the served one.
    newer = pki.issue("pushed", "a.test", ["DNS:a.test"])
    cp.write("main.yaml", secret_resources(origin.address, pem_secret("site", newer)))
    wait_until(lambda: tls_get(port).cert.serial == newer.serial, timeout=3,
               message="the new secret served")
    for c in (good, newer, pki.a, pki.b):
        _assert_no_key(gw, c)
    dump = gw.admin_json("/config_dump")
    secrets = {s["name"]: s for s in dump["secrets"]}
    assert secrets["site"]["private_key"] == "[redacted]", secrets
    # A listener naming a secret nobody pushed is rejected with its path.
    res = secret_resources(origin.address, pem_secret("site", newer))
    res["listeners"].append({"name": "dangling", "address": f"{LOOPBACK}:0",
                             "tls": {"certificates": [{"secret": "nothere"}]},
                             "routes": [{"match": {"prefix": "/"}, "cluster": "web"}]})
    cp.write("main.yaml", res)
    wait_until(lambda: entry(gw, "listener", "dangling") is not None, timeout=3)
    e = entry(gw, "listener", "dangling")
    assert [err["path"] for err in e["errors"]] == ["tls.certificates[0].secret"], e
    # A secret still in use is not removed with the file's other resources
    # gone: the listener keeps serving its certificate.
    res.pop("secrets")
    cp.write("main.yaml", res)
    time.sleep(0.5)
    r = tls_get(port)
    assert r.status == 200 and r.cert.serial == newer.serial, r


# ---------------------------------------------------------------------------
# Data path through TLS, and edges
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("http", ["--http1.1", "--http2"])
def test_large_bodies_cross_a_tls_listener_intact(origin, make_gateway, pki, tmp_path, http):
    gw = make_gateway(https_config(origin, pki.a, protocols=["http1", "http2"]))
    n = 8 << 20
    r = https_curl(gw, pki, f"/bytes/{n}", http)
    assert r.status == 200 and len(r.body) == n, r
    assert zlib.crc32(r.body) == pattern_crc32(n)
    up = tmp_path / "up.bin"
    m = 3 << 20
    up.write_bytes(pattern_bytes(m))
    r = https_curl(gw, pki, "/sink", http, "--data-binary", f"@{up}")
    assert r.status == 200, r
    assert r.json() == {"bytes": m, "crc32": pattern_crc32(m)}
    assert r.http_version == ("2" if http == "--http2" else "1.1")


def test_many_concurrent_handshakes_all_succeed(origin, make_gateway, pki):
    gw = make_gateway(https_config(origin, pki.a, pki.b), workers=2)
    port = gw.listener_port()
    results = []
    lock = threading.Lock()

    def worker(i):
        for j in range(10):
            name = "a.test" if (i + j) % 2 else "b.test"
            r = tls_get(port, name, timeout=10)
            with lock:
                results.append((name, r.status, r.cert.cn if r.cert else None, r.error))
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    bad = [x for x in results if x[1] != 200 or x[2] != x[0]]
    assert len(results) == 200 and bad == [], bad[:5]
    assert gw.wait_stat(HANDSHAKES, 200, listener="edge") == 200


def test_h2_streams_multiplexed_over_tls_with_large_responses(origin, make_gateway, pki):
    gw = make_gateway(https_config(origin, pki.a, protocols=["http1", "http2"]))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    size, streams = 1 << 20, 8
    bodies, ended = {}, set()
    with ctx.wrap_socket(socket.create_connection((LOOPBACK, gw.port), timeout=10),
                         server_hostname="a.test") as s:
        assert s.selected_alpn_protocol() == "h2"
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        for i in range(streams):
            sid = 1 + 2 * i
            bodies[sid] = bytearray()
            conn.send_headers(sid, [(":method", "GET"), (":path", f"/bytes/{size}"),
                                    (":scheme", "https"), (":authority", "a.test")],
                              end_stream=True)
        s.sendall(conn.data_to_send())
        deadline = time.monotonic() + 20
        while len(ended) < streams and time.monotonic() < deadline:
            data = s.recv(1 << 16)
            if not data:
                break
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.DataReceived):
                    bodies[ev.stream_id] += ev.data
                    conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamEnded):
                    ended.add(ev.stream_id)
            s.sendall(conn.data_to_send())
    assert len(ended) == streams
    for sid, body in bodies.items():
        assert len(body) == size and zlib.crc32(body) == pattern_crc32(size), sid


def test_a_client_certificate_over_http2_is_logged(origin, make_gateway, pki, tmp_path):
    log = tmp_path / "access.log"
    gw = make_gateway(https_config(origin, pki.a, protocols=["http1", "http2"],
                                   client_ca_file=str(pki.ca.cert),
                                   require_client_certificate=True,
                                   access_log={"path": str(log), "format": "text"}))
    r = https_curl(gw, pki, "/echo", "--http2", "--cert", str(pki.client.cert),
                   "--key", str(pki.client.key))
    assert r.status == 200 and r.http_version == "2", r
    r = https_curl(gw, pki, "/echo", "--http2")
    assert r.status is None or r.status == 0, r
    line = wait_until(lambda: log.read_text().strip(), message="the access log line")
    assert 'client_cert="CN=client-one"' in line and "sni=a.test" in line, line
    assert '"GET /echo HTTP/2"' in line, line


def test_a_trusted_proxys_forwarded_proto_is_kept(origin, make_gateway, pki):
    config = https_config(origin, pki.a)
    config["listeners"][0]["proxy_headers"] = {"trust_forwarded_for": True}
    gw = make_gateway(config)
    assert https_curl(gw, pki, "/echo", "-H", "X-Forwarded-Proto: http").status == 200
    assert origin.requests[-1].header("x-forwarded-proto") == "http"
    assert https_curl(gw, pki, "/echo").status == 200
    assert origin.requests[-1].header("x-forwarded-proto") == "https"


def test_a_listener_that_names_no_certificate_or_a_bad_one_is_refused_at_start(pki, tmp_path):
    def config(tls):
        return make_config(["127.0.0.1:1"], listener={"tls": tls})
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    cases = {
        "no_certificates": ({"certificates": []}, "listeners[0].tls.certificates"),
        "missing_file": ({"certificates": [{"cert_file": str(tmp_path / "nope.pem"),
                                            "key_file": str(pki.a.key)}]},
                         "listeners[0].tls.certificates[0].cert_file"),
        "garbage": ({"certificates": [{"cert_file": str(garbage), "key_file": str(pki.a.key)}]},
                    "listeners[0].tls.certificates[0].cert_file"),
        "key_mismatch": ({"certificates": [{"cert_file": str(pki.a.cert),
                                            "key_file": str(pki.b.key)}]},
                         "listeners[0].tls.certificates[0].key_file"),
        "expired": ({"certificates": [cert_entry(pki.expired)]},
                    "listeners[0].tls.certificates[0]"),
        "unknown_secret": ({"certificates": [{"secret": "nothere"}]},
                           "listeners[0].tls.certificates[0].secret"),
        "bad_cipher": ({"certificates": [cert_entry(pki.a)], "ciphers": "NOT-A-CIPHER"},
                       "listeners[0].tls.ciphers"),
        "bad_curve": ({"certificates": [cert_entry(pki.a)], "curves": ["P-999"]},
                      "listeners[0].tls.curves"),
        "min_above_max": ({"certificates": [cert_entry(pki.a)], "min_version": "tlsv1_3",
                           "max_version": "tlsv1_2"}, "listeners[0].tls"),
        "require_without_ca": ({"certificates": [cert_entry(pki.a)],
                                "require_client_certificate": True}, "listeners[0].tls"),
        "ticket_rotation_too_short": ({"certificates": [cert_entry(pki.a)],
                                       "session_ticket_rotation": "10s"},
                                      "listeners[0].tls.session_ticket_rotation"),
    }
    wrong = {}
    for case, (tls, path) in cases.items():
        r = run_validate(config(tls))
        if r.returncode == 0 or path not in r.stderr + r.stdout:
            wrong[case] = (r.returncode, (r.stderr + r.stdout)[-300:])
    assert wrong == {}


def test_auto_needs_tls_and_the_cluster_files_must_load(pki, tmp_path):
    def config(**opts):
        return make_config(clusters=[make_cluster("backend", ["127.0.0.1:1"], **opts)])
    cases = {
        "auto_without_tls": ({"protocol": "auto"}, "clusters[0].protocol"),
        "missing_ca": ({"tls": {"ca_file": str(tmp_path / "nope.pem")}},
                       "clusters[0].tls.ca_file"),
        "client_key_mismatch": ({"tls": {"cert_file": str(pki.client.cert),
                                         "key_file": str(pki.a.key)}},
                                "clusters[0].tls.key_file"),
        "cert_without_key": ({"tls": {"cert_file": str(pki.client.cert)}}, "clusters[0].tls"),
    }
    wrong = {}
    for case, (opts, path) in cases.items():
        r = run_validate(config(**opts))
        if r.returncode == 0 or path not in r.stderr + r.stdout:
            wrong[case] = (r.returncode, (r.stderr + r.stdout)[-300:])
    assert wrong == {}


def test_a_request_followed_by_close_notify_is_answered(origin, make_gateway, pki):
    gw = make_gateway(https_config(origin, pki.a))
    data = request_then_close_notify(gw.port, http_get("/echo"))
    assert data.startswith(b"HTTP/1.1 200 "), data[:200]
    assert origin.requests[-1].path == "/echo"


def test_a_client_that_stops_reading_holds_back_the_origin(origin, make_gateway, pki):
    gw = make_gateway(https_config(origin, pki.a))
    base = gw.rss_kb()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    with ctx.wrap_socket(raw, server_hostname="a.test") as s:
        s.settimeout(5)
        s.connect((LOOPBACK, gw.port))
        s.sendall(http_get(f"/bytes/{256 << 20}"))
        got = 0
        while got < (1 << 20):
            got += len(s.recv(65536))
        peak = 0
        for _ in range(20):  # 2 s stalled
            time.sleep(0.1)
            peak = max(peak, gw.rss_kb())
        sent = origin.body_bytes_sent
    # Socket buffers hold a few MB; the gateway must not read on for the client.
    assert sent < (64 << 20), f"origin sent {sent} bytes to a stalled client"
    if os.environ.get("PORTWAY_SANITIZED"):
        print(f"RSS peak not checked under a sanitizer ({peak} KiB)")
        return
    assert peak - base < 32 * 1024, (base, peak)


def _session_from(port, **ctx_args):
    """A TLS 1.3 session (with its ticket) from one request on port."""
    ctx = client_context(**ctx_args)
    with ctx.wrap_socket(socket.create_connection((LOOPBACK, port), timeout=5),
                         server_hostname="a.test") as s:
        s.sendall(http_get())
        assert _status(s) == 200
        return ctx, s.session


def _get_with_session(ctx, port, session):
    """(status or None, resumed) of one GET offering `session`."""
    try:
        with ctx.wrap_socket(socket.create_connection((LOOPBACK, port), timeout=5),
                             server_hostname="a.test", session=session) as s:
            s.sendall(http_get())
            return _status(s), s.session_reused
    except (ssl.SSLError, OSError, AssertionError):
        return None, False


def test_a_session_from_an_open_listener_does_not_skip_client_certificates(origin, make_gateway,
                                                                          pki, tmp_path):
    log = tmp_path / "access.log"
    mtls = extra_listener("mtls", pki.a, client_ca_file=str(pki.ca.cert),
                          require_client_certificate=True)
    gw = make_gateway(https_config(origin, pki.a, extra_listeners=[mtls],
                                   access_log={"path": str(log), "format": "json"}))
    ctx, session = _session_from(gw.port)
    status, resumed = _get_with_session(ctx, gw.listener_port("mtls"), session)
    assert status is None and not resumed, "a session from the open listener got past mTLS"
    # On the mTLS listener itself, a resumed session keeps its client's subject.
    ctx, session = _session_from(gw.listener_port("mtls"), cert=pki.client.cert,
                                 key=pki.client.key)
    status, resumed = _get_with_session(ctx, gw.listener_port("mtls"), session)
    assert status == 200 and resumed
    wait_until(lambda: len(log.read_text().splitlines()) >= 3, message="three log lines")
    entries = [json.loads(l) for l in log.read_text().splitlines()]
    assert [e.get("tls_client_subject") for e in entries if e["listener"] == "mtls"] == [
        "CN=client-one", "CN=client-one"], entries


def test_a_rotated_cluster_ca_file_is_used_after_sighup(tls_origin, make_gateway, pki, tmp_path):
    o = tls_origin(cert=pki.a_untrusted, alpn=["http/1.1"])
    ca = tmp_path / "upstream-ca.pem"
    ca.write_bytes(pki.ca.cert.read_bytes())
    gw = make_gateway(origination_config(o.address, ca_file=str(ca), server_name="a.test"))
    r = get(gw)
    assert r.status == 502 and r.header("x-portway-error") == "upstream_tls_verify_failed", r
    tmp = tmp_path / "ca.tmp"
    tmp.write_bytes(pki.ca.cert.read_bytes() + pki.other_ca.cert.read_bytes())
    os.replace(tmp, ca)
    gw.send_signal(signal.SIGHUP)
    wait_until(lambda: get(gw).status == 200, timeout=5, message="the new CA bundle in use")


def test_tickets_from_one_worker_resume_on_another(origin, make_gateway, pki):
    gw = make_gateway(https_config(origin, pki.a), workers=2)
    ctx, session = _session_from(gw.port)
    resumed = [_get_with_session(ctx, gw.port, session) for _ in range(12)]
    assert resumed == [(200, True)] * 12, resumed


def test_connecting_and_leaving_is_not_a_handshake_failure(origin, make_gateway, pki):
    gw = make_gateway(https_config(origin, pki.a))
    for _ in range(5):
        socket.create_connection((LOOPBACK, gw.port), timeout=5).close()
    assert tls_get(gw.port).status == 200
    assert gw.stat(HANDSHAKE_FAILURES, listener="edge") == 0
    assert gw.stat(HANDSHAKES, listener="edge") == 1


def test_pipelined_requests_in_one_tls_write_are_answered_in_order(origin, make_gateway, pki):
    gw = make_gateway(https_config(origin, pki.a))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    n = 20
    with ctx.wrap_socket(socket.create_connection((LOOPBACK, gw.port), timeout=5),
                         server_hostname="a.test") as s:
        s.sendall(b"".join(http_get(f"/echo/{i}") for i in range(n)))
        paths = []
        for _ in range(n):
            assert _status(s) == 200
        paths = [q.path for q in origin.requests]
    assert paths == [f"/echo/{i}" for i in range(n)]


def test_a_handshake_and_request_dribbled_byte_by_byte_complete(origin, make_gateway, pki):
    gw = make_gateway(https_config(origin, pki.a))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="a.test")

    def dribble(sock, data):
        for i in range(0, len(data), 7):
            sock.sendall(data[i:i + 7])
            time.sleep(0.001)
    with socket.create_connection((LOOPBACK, gw.port), timeout=5) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while True:
            try:
                obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                dribble(s, outgoing.read())
                incoming.write(s.recv(65536))
        dribble(s, outgoing.read())
        # One TLS record per byte of the request.
        for b in http_get("/dribbled"):
            obj.write(bytes([b]))
        dribble(s, outgoing.read())
        got = b""
        deadline = time.monotonic() + 5
        while b"\r\n\r\n" not in got and time.monotonic() < deadline:
            incoming.write(s.recv(65536))
            try:
                while True:
                    got += obj.read(65536)
            except ssl.SSLWantReadError:
                pass
    assert got.startswith(b"HTTP/1.1 200 "), got[:100]
    assert origin.requests[-1].path == "/dribbled"


def test_protocol_auto_multiplexes_concurrent_requests_on_one_tls_connection(
        tls_origin, make_gateway, pki):
    o = tls_origin(alpn=["h2", "http/1.1"])
    gw = make_gateway(origination_config(o.address, protocol="auto", ca_file=str(pki.ca.cert),
                                         server_name="origin.test"))
    assert get(gw).status == 200   # the pool learns the origin speaks h2
    results = []

    def one(i):
        with HttpConn(gw.port) as c:
            results.append(c.roundtrip("GET", f"/c/{i}").status)
    threads = [threading.Thread(target=one, args=(i,)) for i in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert results == [200] * 30
    assert {q.protocol for q in o.requests} == {"h2"}
    assert o.connections_accepted == 1


def test_a_host_that_fails_verification_is_retried_on_another(tls_origin, make_gateway, pki):
    bad = tls_origin(cert=pki.a_untrusted, alpn=["http/1.1"], name="bad")
    good = tls_origin(alpn=["http/1.1"], name="good")
    config = make_config(clusters=[make_cluster(
        "backend", [bad.address, good.address],
        tls={"ca_file": str(pki.ca.cert)})], listener={
        "filters": [{"name": "portway.retry",
                     "config": {"retry_on": ["connect-failure"], "num_retries": 1}}]})
    gw = make_gateway(config)
    with HttpConn(gw.port) as c:
        statuses = [c.roundtrip("GET", "/echo").status for _ in range(6)]
    assert statuses == [200] * 6
    assert len(good.requests) == 6 and bad.requests == []
    assert any(not h["ok"] for h in bad.handshakes), bad.handshakes


def test_a_reload_can_turn_tls_on_and_off_for_a_listener(origin, make_gateway, pki):
    plain = make_config([origin.address])
    gw = make_gateway(plain)
    with HttpConn(gw.port) as c:
        assert c.roundtrip("GET", "/echo").status == 200
    gw.reload(https_config(origin, pki.a))

    def tls_now():
        r = tls_get(gw.port)
        return r.status == 200
    wait_until(tls_now, timeout=5, message="the listener to speak TLS")
    assert origin.requests[-1].header("x-forwarded-proto") == "https"
    gw.reload(plain)

    def plain_now():
        try:
            with HttpConn(gw.port, timeout=2) as c:
                return c.roundtrip("GET", "/echo").status == 200
        except Exception:
            return False
    wait_until(plain_now, timeout=5, message="the listener to speak plaintext again")
    assert origin.requests[-1].header("x-forwarded-proto") == "http"
    assert not probe(gw.port, "a.test").ok


def test_a_cluster_presents_a_secret_as_its_client_certificate(tls_origin, make_gateway, pki):
    o = tls_origin(alpn=["http/1.1"], client_ca=pki.ca.cert)
    config = origination_config(o.address, ca_file=str(pki.ca.cert), server_name="origin.test",
                                secret="gw-client")
    config["secrets"] = [pem_secret("gw-client", pki.client)]
    gw = make_gateway(config)
    assert get(gw).status == 200
    assert o.requests[0].client_cn == "client-one"
    _assert_no_key(gw, pki.client)


def test_files_holding_pushed_keys_are_private_and_ctl_redacts(cp, origin, make_gateway, pki,
                                                               tmp_path):
    state = tmp_path / "gateway.state"
    config = gateway_config(cp)
    config["control_plane"]["persist_path"] = str(state)
    gw = make_gateway(config)
    wait_until(lambda: gw.admin_json("/control_plane")["connected"], timeout=5,
               message="connected")
    applied = tmp_path / "secret.yaml"
    applied.write_text(to_yaml(secret_resources(origin.address, pem_secret("site", pki.a))))
    r = ctl(cp, "apply", "-f", str(applied), "--wait", "5s")
    assert r.returncode == 0, r.stderr
    assert tls_get(listener_port(gw)).status == 200
    key_line = _key_body(pki.a)[0]
    # The gateway's persisted config and portway-cp's state file (what
    # portwayctl applied) hold the key: owner-only.
    cp_state_file = cp.res / ".portway-cp.state"
    for path in (state, cp_state_file):
        wait_until(lambda: path.exists() and key_line in path.read_text(errors="replace"),
                   timeout=3, message=f"the key in {path}")
        mode = path.stat().st_mode & 0o777
        assert mode == 0o600, (str(path), oct(mode))
    # portwayctl shows the secret without its key.
    r = ctl(cp, "get", "secret", "site")
    assert r.returncode == 0, r.stderr
    assert "[redacted]" in r.stdout and key_line not in r.stdout and "PRIVATE KEY" not in r.stdout
    assert key_line not in cp.log_text()


def test_scheme_toward_an_h2c_upstream_says_how_that_hop_is_carried(make_h2_origin, make_gateway,
                                                                     pki):
    # docs/tls.md: `:scheme` toward a host is `https` over TLS, `http`
    # otherwise, whatever the client used; X-Forwarded-Proto carries the
    # client's scheme. (The issue's spec said ":scheme https toward HTTP/2
    # upstreams" for TLS listeners; the implementation chose per hop.)
    h2o = make_h2_origin()
    config = make_config(clusters=[make_cluster("backend", [h2o.address], protocol="http2")],
                         listener=tls_listener(pki.a))
    gw = make_gateway(config)
    assert tls_get(gw.port).status == 200
    req = h2o.requests[-1]
    assert req.header(":scheme") == "http", req.headers
    assert req.header("x-forwarded-proto") == "https", req.headers


@pytest.mark.parametrize("offer", [("h2", "http/1.1"), ("http/1.1",)])
def test_cluster_tls_rotation_under_load_fails_no_request(tls_origin, make_gateway, pki, tmp_path,
                                                          offer):
    # Each SIGHUP with a changed CA file replaces the cluster's pools;
    # requests on the old ones finish, new ones use the new pools.
    o = tls_origin(alpn=list(offer))
    ca = tmp_path / "ca.pem"
    ca.write_bytes(pki.ca.cert.read_bytes())
    gw = make_gateway(origination_config(o.address, protocol="auto", ca_file=str(ca),
                                         server_name="origin.test"), workers=2)
    done, failures, count = threading.Event(), [], [0]

    def load():
        while not done.is_set():
            try:
                with HttpConn(gw.port, timeout=5) as c:
                    for _ in range(20):
                        r = c.roundtrip("GET", "/x")
                        count[0] += 1
                        if r.status != 200:
                            failures.append((r.status, r.header("x-portway-error")))
            except Exception as e:  # a cut connection is a failure too
                failures.append(repr(e))
    threads = [threading.Thread(target=load) for _ in range(3)]
    for t in threads:
        t.start()
    for i in range(8):
        time.sleep(0.15)
        data = pki.ca.cert.read_bytes() + (pki.other_ca.cert.read_bytes() if i % 2 == 0 else b"")
        tmp = ca.with_suffix(".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, ca)
        gw.send_signal(signal.SIGHUP)
    time.sleep(0.2)
    done.set()
    for t in threads:
        t.join(30)
    assert failures == [], failures[:5]
    assert count[0] > 100
    # New pools were made: more upstream connections than one per worker.
    assert o.connections_accepted > 2


def test_clients_that_vanish_mid_response_leave_the_gateway_serving(origin, make_gateway, pki):
    import struct

    gw = make_gateway(https_config(origin, pki.a, protocols=["http1", "http2"]), workers=2)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    for i in range(20):
        ctx.set_alpn_protocols(["h2"] if i % 2 else ["http/1.1"])
        raw = socket.create_connection((LOOPBACK, gw.port), timeout=5)
        s = ctx.wrap_socket(raw, server_hostname="a.test")
        if s.selected_alpn_protocol() == "h2":
            conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
            conn.initiate_connection()
            for sid in (1, 3, 5):
                conn.send_headers(sid, [(":method", "GET"), (":path", f"/bytes/{32 << 20}"),
                                        (":scheme", "https"), (":authority", "a.test")],
                                  end_stream=True)
            s.sendall(conn.data_to_send())
        else:
            s.sendall(http_get(f"/bytes/{32 << 20}"))
        # Some of the response, within HTTP/2's first flow-control window
        # (this client never opens it further).
        got = 0
        while got < (48 << 10):
            got += len(s.recv(65536))
        # Gone without a close_notify or a FIN: a reset.
        # (wrap_socket detached `raw`: the TLS socket owns the descriptor.)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    assert gw.alive()
    assert tls_get(gw.port).status == 200
    r = https_curl(gw, pki, "/echo", "--http2")
    assert r.status == 200 and r.http_version == "2", r
    # Every upstream connection those downloads used is closed again.
    def downloads_closed():
        ids = {q.conn_id for q in origin.all_requests if q.path.startswith("/bytes/")}
        return ids and all(c.closed_by for c in origin.connections if c.id in ids)
    wait_until(downloads_closed, timeout=5, message="the origin's download connections closed")


# -- certificate chains ----------------------------------------------------------


def _verifies(port, name, pki):
    """A client trusting only the root, checking the name: the gateway must
    send the intermediate."""
    r = curl(f"https://{name}:{port}/echo", "--cacert", str(pki.ca.cert), resolve={name: port})
    return r.status == 200, r


def test_a_listener_sends_each_certificates_intermediates(origin, make_gateway, pki):
    # c.test is chained through an intermediate, a.test is not; both in one
    # listener, from files and from an inline secret.
    config = make_config([origin.address], listener=tls_listener(pki.a, pki.c_chained),
                         extra_listeners=[{
                             "name": "from_secret", "address": f"{LOOPBACK}:0",
                             "routes": [{"match": {"prefix": "/"}, "cluster": "backend"}],
                             "tls": {"certificates": [{"secret": "a"}, {"secret": "c"}]}}])
    config["secrets"] = [pem_secret("a", pki.a), pem_secret("c", pki.c_chained)]
    gw = make_gateway(config)
    for listener in ("edge", "from_secret"):
        port = gw.listener_port(listener)
        for name in ("c.test", "a.test"):
            ok, r = _verifies(port, name, pki)
            assert ok, (listener, name, r)


def test_a_client_certificate_chained_through_an_intermediate_verifies(origin, make_gateway, pki,
                                                                       tmp_path):
    log = tmp_path / "access.log"
    gw = make_gateway(https_config(origin, pki.a, client_ca_file=str(pki.ca.cert),
                                   require_client_certificate=True,
                                   access_log={"path": str(log), "format": "json"}))
    r = tls_get(gw.port, cert=pki.client_chained.cert, key=pki.client_chained.key)
    assert r.status == 200, r
    line = wait_until(lambda: log.read_text().strip(), message="the access log line")
    assert json.loads(line)["tls_client_subject"] == "CN=client-chained"


def test_an_origin_sending_its_intermediate_verifies_against_the_root(tls_origin, make_gateway,
                                                                      pki):
    o = tls_origin(cert=pki.c_chained, alpn=["http/1.1"])
    gw = make_gateway(origination_config(o.address, ca_file=str(pki.ca.cert),
                                         server_name="c.test"))
    assert get(gw).status == 200


def test_a_cluster_sends_its_client_certificates_intermediate(tls_origin, make_gateway, pki):
    o = tls_origin(alpn=["http/1.1"], client_ca=pki.ca.cert)
    gw = make_gateway(origination_config(o.address, ca_file=str(pki.ca.cert),
                                         server_name="origin.test",
                                         cert_file=str(pki.client_chained.cert),
                                         key_file=str(pki.client_chained.key)))
    assert get(gw).status == 200
    assert o.requests[0].client_cn == "client-chained"


def test_a_rotated_client_ca_file_is_used_after_sighup(origin, make_gateway, pki, tmp_path):
    ca = tmp_path / "clients-ca.pem"
    ca.write_bytes(pki.ca.cert.read_bytes())
    gw = make_gateway(https_config(origin, pki.a, client_ca_file=str(ca),
                                   require_client_certificate=True))
    good = dict(cert=pki.client.cert, key=pki.client.key)
    rogue = dict(cert=pki.client_untrusted.cert, key=pki.client_untrusted.key)
    assert tls_get(gw.port, **good).status == 200
    assert tls_get(gw.port, **rogue).status is None
    tmp = tmp_path / "ca.tmp"
    tmp.write_bytes(pki.other_ca.cert.read_bytes())
    os.replace(tmp, ca)
    gw.send_signal(signal.SIGHUP)
    wait_until(lambda: tls_get(gw.port, **rogue).status == 200, timeout=5,
               message="the new client CA in use")
    assert tls_get(gw.port, **good).status is None


def test_the_gateway_says_close_notify_before_it_closes(origin, make_gateway, pki):
    # Python's ssl raises SSLEOFError on a TCP close without close_notify and
    # returns b"" on a proper one.
    gw = make_gateway(make_config([origin.address], listener=dict(
        tls_listener(pki.a), timeouts={"idle_timeout": "1s"})))
    ctx = client_context()
    with ctx.wrap_socket(socket.create_connection((LOOPBACK, gw.port), timeout=5),
                         server_hostname="a.test") as s:
        s.sendall(http_get())
        assert _status(s) == 200
        start = time.monotonic()
        assert s.recv(100) == b""  # the idle timeout
        assert 0.5 < time.monotonic() - start < 3
    with ctx.wrap_socket(socket.create_connection((LOOPBACK, gw.port), timeout=5),
                         server_hostname="a.test") as s:
        s.sendall(http_get(headers=[("Connection", "close")]))
        assert _status(s) == 200
        assert s.recv(100) == b""


def test_seeded_mutated_client_hellos_never_take_the_gateway_down(origin, make_gateway, pki):
    import random

    gw = make_gateway(https_config(origin, pki.a, pki.wild, protocols=["http1", "http2"],
                                   client_ca_file=str(pki.ca.cert)))
    rnd = random.Random(0x7115)
    seeds = [client_hello_bytes(n) for n in ("a.test", "x.wild.test", None)]
    for i in range(150):
        hello = bytearray(rnd.choice(seeds))
        kind = i % 4
        if kind == 0:    # flipped bytes
            for _ in range(rnd.randrange(1, 8)):
                hello[rnd.randrange(len(hello))] = rnd.randrange(256)
        elif kind == 1:  # cut short
            hello = hello[:rnd.randrange(len(hello))]
        elif kind == 2:  # bytes inserted
            at = rnd.randrange(len(hello))
            hello[at:at] = rnd.randbytes(rnd.randrange(1, 50))
        else:            # trailing garbage records
            hello += rnd.randbytes(rnd.randrange(1, 2000))
        with socket.create_connection((LOOPBACK, gw.port), timeout=3) as s:
            try:
                s.sendall(bytes(hello))
                s.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            _, closed_after = read_until_closed(s, 3)
        assert closed_after is not None, f"connection {i} still open"
        assert gw.alive(), f"the gateway died on {bytes(hello).hex()}"
    assert tls_get(gw.port).status == 200
    assert origin.requests[-1].path == "/echo" and len(origin.requests) == 1


@pytest.mark.parametrize("n", [65536, 200000])
def test_a_response_arriving_in_one_burst_crosses_tls_intact(origin, make_gateway, pki, n):
    # The origin sends head and body with one write: the gateway reads a
    # full block and then a short rest in the same loop turn, so what the
    # TLS layer seals is [head][large body slice][small body slice].
    def one_write(ctx):
        body = pattern_bytes(n)
        ctx.send_raw(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % n + body)
        return True
    origin.handlers["/onewrite"] = one_write
    gw = make_gateway(https_config(origin, pki.a))
    want = pattern_bytes(n)
    for _ in range(5):
        r = tls_get(gw.port, path="/onewrite", timeout=10)
        assert r.status == 200, r
        body = r.response.split(b"\r\n\r\n", 1)[1]
        assert len(body) == n
        if body != want:
            first = next(i for i in range(n) if body[i] != want[i])
            last = max(i for i in range(n) if body[i] != want[i])
            pytest.fail(f"body bytes {first}..{last} differ; they hold pattern bytes from "
                        f"offset {PATTERN_BLOCK.find(body[first:first + 32])}")


def test_a_pushed_cluster_originates_tls_and_a_push_rotates_its_client_certificate(
        cp, tls_origin, make_gateway, pki):
    # Origination from a push: a cluster with tls (verified, SNI from
    # server_name, protocol auto) and a pushed secret as its client
    # certificate; a new version of the secret is what the next connection
    # presents.
    o = tls_origin(alpn=["h2", "http/1.1"], client_ca=pki.ca.cert)
    first = pki.issue("gw-client-1", "gateway-one", [], client=True)
    second = pki.issue("gw-client-2", "gateway-two", [], client=True)

    def resources(client_cert):
        return {"secrets": [pem_secret("gw-client", client_cert)],
                "clusters": [{"name": "secure", "endpoints": [o.address], "protocol": "auto",
                              "tls": {"ca_file": str(pki.ca.cert), "server_name": "origin.test",
                                      "secret": "gw-client"}}],
                "listeners": [{"name": "dyn", "address": f"{LOOPBACK}:0",
                               "routes": [{"match": {"prefix": "/"}, "cluster": "secure"}]}]}

    cp.write("main.yaml", resources(first))
    gw = make_gateway(gateway_config(cp))
    port = listener_port(gw)
    with HttpConn(port) as c:
        r = c.roundtrip("GET", "/echo")
    assert r.status == 200, r
    assert o.requests[-1].sni == "origin.test" and o.requests[-1].protocol == "h2"
    assert o.requests[-1].client_cn == "gateway-one"

    cp.write("main.yaml", resources(second))

    def presents_second():
        with HttpConn(port) as c:
            assert c.roundtrip("GET", "/echo").status == 200
        return o.requests[-1].client_cn == "gateway-two"
    wait_until(presents_second, timeout=5, message="the rotated client certificate upstream")
