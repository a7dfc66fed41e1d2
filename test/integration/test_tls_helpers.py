"""Self-tests of tls_test_lib (no gateway needed): the PKI says what the TLS
tests rely on, and the HTTPS origin records what they assert on."""

import pytest

from tls_test_lib import (Pki, TlsOrigin, curl, probe, run_openssl, s_client, tls_get)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return Pki(tmp_path_factory.mktemp("pki-helpers"))


def verify(pki, ca, cert, purpose):
    import subprocess
    p = subprocess.run(["openssl", "verify", "-CAfile", str(ca.cert), "-purpose", purpose,
                        str(cert.cert)], capture_output=True)
    return p.returncode == 0, p.stdout.decode() + p.stderr.decode()


def test_the_pki_chains_as_documented(pki):
    assert verify(pki, pki.ca, pki.a, "sslserver")[0]
    assert verify(pki, pki.ca, pki.client, "sslclient")[0]
    assert not verify(pki, pki.ca, pki.a_untrusted, "sslserver")[0]
    assert not verify(pki, pki.ca, pki.client_untrusted, "sslclient")[0]
    ok, out = verify(pki, pki.ca, pki.expired, "sslserver")
    assert not ok and "expired" in out, out
    text = run_openssl("x509", "-in", str(pki.wild.cert), "-noout", "-ext",
                       "subjectAltName").decode()
    assert "DNS:*.wild.test" in text
    key = run_openssl("pkey", "-in", str(pki.ca.key), "-noout", "-text").decode()
    assert "prime256v1" in key or "P-256" in key


def test_issue_makes_a_new_serial_each_time(pki):
    one = pki.issue("again", "a.test", ["DNS:a.test"])
    two = pki.issue("again", "a.test", ["DNS:a.test"])
    assert one.serial != two.serial and one.cert != two.cert


def test_the_origin_records_sni_alpn_and_client_certificate(pki):
    with TlsOrigin(pki.origin, client_ca=pki.ca.cert) as o:
        assert tls_get(o.port, "origin.test").status is None  # no client certificate
        r = tls_get(o.port, "origin.test", alpn=["http/1.1"], cert=pki.client.cert,
                    key=pki.client.key, verify=True, cafile=pki.ca.cert)
        assert r.status == 200 and r.alpn == "http/1.1", r
        c = curl(f"https://origin.test:{o.port}/h2", "--http2", "--cacert", str(pki.ca.cert),
                 "--cert", str(pki.client.cert), "--key", str(pki.client.key),
                 resolve={"origin.test": o.port})
        assert c.status == 200 and c.http_version == "2", c
        reqs = o.wait_for_requests(2)
    assert [(q.protocol, q.sni, q.client_cn) for q in reqs] == [
        ("HTTP/1.1", "origin.test", "client-one"), ("h2", "origin.test", "client-one")]


def test_probe_and_s_client_see_versions_and_certificates(pki):
    with TlsOrigin(pki.a, alpn=None, min_version="TLS1_3") as o:
        assert not probe(o.port, "a.test", version="TLS1_2").ok
        p = probe(o.port, "a.test")
        assert p.ok and p.version == "TLSv1.3" and p.cert.serial == pki.a.serial, p
        assert p.cert.ip_sans == ["127.0.0.1"] and p.cert.dns_sans == ["a.test"]
        assert not s_client(o.port, "-tls1_2", servername="a.test").ok
        r = s_client(o.port, "-tls1_3", servername="a.test")
        assert r.ok and r.peer == "CN = a.test", r


def test_chained_certificates_verify_only_with_their_intermediate(pki):
    import subprocess
    leaf_only = pki.dir / "c-leaf-only.pem"
    run_openssl("x509", "-in", str(pki.c_chained.cert), "-out", str(leaf_only))
    p = subprocess.run(["openssl", "verify", "-CAfile", str(pki.ca.cert), str(leaf_only)],
                       capture_output=True)
    assert p.returncode != 0
    p = subprocess.run(["openssl", "verify", "-CAfile", str(pki.ca.cert), "-untrusted",
                        str(pki.c_chained.cert), str(leaf_only)], capture_output=True)
    assert p.returncode == 0, p.stderr
    assert pki.c_chained.cert.read_text().count("BEGIN CERTIFICATE") == 2
