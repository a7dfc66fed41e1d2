"""TLS helpers for Portway's integration tests (openssl CLI, python ssl, python3-h2).

- Pki: a throwaway PKI made with the `openssl` command line in a directory:
  a trusted CA and an untrusted one (ECDSA P-256), server certificates with
  SANs, an expired one, client certificates from either CA. `issue()` makes
  more (a fresh serial every time, for rotation tests).
- TlsOrigin: a threaded HTTPS origin (python ssl) that presents a given
  certificate, offers ALPN h2 and/or http/1.1, can require a client
  certificate, and records every request with the SNI, ALPN and client
  certificate of its connection.
- probe() / tls_get(): one client handshake (and optionally one HTTP/1.1
  request) with python ssl, returning what was negotiated or why it failed;
  s_client() runs `openssl s_client -brief`; curl() runs the curl CLI.

Everything binds to 127.0.0.1; every socket operation has a timeout.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import warnings
import zlib
from pathlib import Path

import h2.config
import h2.connection
import h2.events

from portway_test_lib import LOOPBACK, iter_pattern, listen_loopback

try:  # python3-cryptography: parses the DER certificates a handshake returns.
    from cryptography import x509 as _x509
    from cryptography.x509.oid import NameOID as _NameOID
except ImportError:  # pragma: no cover - Debian's python3 has it
    _x509 = None

OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"


def run_openssl(*args, cwd=None, input=None, timeout=30):
    p = subprocess.run([OPENSSL, *args], cwd=cwd, input=input, capture_output=True,
                       timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(map(str, args))} failed ({p.returncode}):\n"
                           + p.stderr.decode(errors="replace"))
    return p.stdout


# ---------------------------------------------------------------------------
# PKI
# ---------------------------------------------------------------------------


class Cert:
    """One certificate and its key on disk (PEM)."""

    def __init__(self, name, cert, key, serial, cn, sans=()):
        self.name = name
        self.cert = Path(cert)
        self.key = Path(key)
        self.serial = serial          # int
        self.cn = cn
        self.sans = list(sans)

    @property
    def cert_pem(self):
        return self.cert.read_text()

    @property
    def key_pem(self):
        return self.key.read_text()

    def __repr__(self):
        return f"<Cert {self.name} CN={self.cn} serial={self.serial:x} {self.cert}>"


_CA_CNF = """\
[ ca ]
default_ca = the_ca
[ the_ca ]
dir = {dir}
database = $dir/index.txt
new_certs_dir = $dir/newcerts
serial = $dir/serial
default_md = sha256
policy = any
copy_extensions = copy
unique_subject = no
[ any ]
commonName = supplied
"""


class Pki:
    """A throwaway PKI in `directory`.

    Certificates (attributes, all `Cert`):
      ca, other_ca          trusted CA / a CA nobody trusts (both ECDSA P-256)
      a                     CN=a.test, SAN DNS:a.test, IP:127.0.0.1
      wild                  CN=wild.test, SAN DNS:*.wild.test
      b                     CN=b.test, SAN DNS:b.test
      origin                CN=origin.test, SAN DNS:origin.test, IP:127.0.0.1
      a_untrusted           like `a`, signed by other_ca
      expired               CN=expired.test, SAN DNS:a.test, DNS:origin.test,
                            IP:127.0.0.1; valid in 2020 only
      client                CN=client-one (clientAuth), signed by ca
      client_untrusted      CN=client-rogue, signed by other_ca
      intermediate          a CA signed by ca
      c_chained             CN=c.test, SAN DNS:c.test, signed by intermediate; its
                            cert file holds the leaf and then the intermediate
      client_chained        CN=client-chained, signed by intermediate, the same
    """

    def __init__(self, directory):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._n = 0
        self.ca = self._make_ca("ca", "Portway Test CA")
        self.other_ca = self._make_ca("other-ca", "Untrusted Test CA")
        self.a = self.issue("a", "a.test", ["DNS:a.test", "IP:127.0.0.1"])
        self.wild = self.issue("wild", "wild.test", ["DNS:*.wild.test"])
        self.b = self.issue("b", "b.test", ["DNS:b.test"])
        self.origin = self.issue("origin", "origin.test", ["DNS:origin.test", "IP:127.0.0.1"])
        self.a_untrusted = self.issue("a-untrusted", "a.test", ["DNS:a.test", "IP:127.0.0.1"],
                                      ca=self.other_ca)
        self.expired = self.issue("expired", "expired.test",
                                  ["DNS:a.test", "DNS:origin.test", "IP:127.0.0.1"],
                                  not_before="20200101000000Z", not_after="20200201000000Z")
        self.client = self.issue("client", "client-one", [], client=True)
        self.client_untrusted = self.issue("client-untrusted", "client-rogue", [], client=True,
                                           ca=self.other_ca)
        self.intermediate = self._make_ca("intermediate", "Portway Test Intermediate",
                                          parent=self.ca)
        self.c_chained = self.issue("c-chained", "c.test", ["DNS:c.test"], ca=self.intermediate,
                                    chain=True)
        self.client_chained = self.issue("client-chained", "client-chained", [], client=True,
                                         ca=self.intermediate, chain=True)

    # -- making certificates ---------------------------------------------

    def _new_key(self, path):
        run_openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-out", str(path))

    def _serial(self, path):
        out = run_openssl("x509", "-in", str(path), "-noout", "-serial").decode()
        return int(out.strip().split("=", 1)[1], 16)

    def _make_ca(self, name, cn, parent=None):
        """A self-signed root, or with `parent` an intermediate it signs."""
        key = self.dir / f"{name}.key"
        cert = self.dir / f"{name}.pem"
        self._new_key(key)
        if parent is None:
            run_openssl("req", "-x509", "-new", "-key", str(key), "-out", str(cert), "-days",
                        "3650", "-subj", f"/CN={cn}", "-sha256",
                        "-addext", "basicConstraints=critical,CA:TRUE",
                        "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        else:
            csr = self.dir / f"{name}.csr"
            ext = self.dir / f"{name}.ext"
            ext.write_text("basicConstraints=critical,CA:TRUE,pathlen:0\n"
                           "keyUsage=critical,keyCertSign,cRLSign\n")
            run_openssl("req", "-new", "-key", str(key), "-out", str(csr), "-subj", f"/CN={cn}")
            run_openssl("x509", "-req", "-in", str(csr), "-CA", str(parent.cert), "-CAkey",
                        str(parent.key), "-set_serial",
                        str(int.from_bytes(os.urandom(8), "big") | 1), "-days", "3650",
                        "-sha256", "-extfile", str(ext), "-out", str(cert))
        ca_dir = self.dir / f"{name}.db"
        (ca_dir / "newcerts").mkdir(parents=True)
        (ca_dir / "index.txt").write_text("")
        (ca_dir / "serial").write_text(os.urandom(8).hex().upper() + "\n")
        (ca_dir / "ca.cnf").write_text(_CA_CNF.format(dir=ca_dir))
        return Cert(name, cert, key, self._serial(cert), cn)

    def issue(self, name, cn, sans, *, ca=None, client=False, days=30, not_before=None,
              not_after=None, key=None, chain=False):
        """Signs a new certificate (a new serial each call). `key`: reuse
        that key file instead of making one; chain: append the issuer's
        certificate to the cert file. Returns a Cert whose files are
        <name>-<n>.pem/.key (names never repeat)."""
        ca = ca or self.ca
        with self._lock:
            self._n += 1
            stem = f"{name}-{self._n}"
        key_path = self.dir / f"{stem}.key"
        if key is not None:
            shutil.copyfile(key, key_path)
        else:
            self._new_key(key_path)
        csr = self.dir / f"{stem}.csr"
        cert_path = self.dir / f"{stem}.pem"
        ext = self.dir / f"{stem}.ext"
        lines = ["basicConstraints=critical,CA:FALSE",
                 "keyUsage=critical,digitalSignature",
                 f"extendedKeyUsage={'clientAuth' if client else 'serverAuth'}"]
        if sans:
            lines.append("subjectAltName=" + ",".join(sans))
        ext.write_text("\n".join(lines) + "\n")
        run_openssl("req", "-new", "-key", str(key_path), "-out", str(csr), "-subj", f"/CN={cn}")
        if not_before or not_after:
            # `openssl x509` (3.0) cannot backdate; `openssl ca` can.
            with self._lock:
                run_openssl("ca", "-batch", "-config", str(self.dir / f"{ca.name}.db" / "ca.cnf"),
                            "-cert", str(ca.cert), "-keyfile", str(ca.key), "-in", str(csr),
                            "-out", str(cert_path), "-extfile", str(ext), "-notext",
                            "-startdate", not_before, "-enddate", not_after)
        else:
            run_openssl("x509", "-req", "-in", str(csr), "-CA", str(ca.cert), "-CAkey", str(ca.key),
                        "-set_serial", str(int.from_bytes(os.urandom(8), "big") | 1),
                        "-days", str(days), "-sha256", "-extfile", str(ext),
                        "-out", str(cert_path))
        serial = self._serial(cert_path)
        if chain:
            cert_path.write_text(cert_path.read_text() + ca.cert.read_text())
        return Cert(stem, cert_path, key_path, serial, cn, sans)

    def bundle(self, name, *certs):
        """A file with several PEM certificates (a CA bundle)."""
        path = self.dir / f"{name}.pem"
        path.write_text("".join(c.cert.read_text() for c in certs))
        return path


def make_pki(directory=None):
    return Pki(directory or tempfile.mkdtemp(prefix="portway-pki-"))


# ---------------------------------------------------------------------------
# Certificate inspection
# ---------------------------------------------------------------------------


class PeerCert:
    """What a handshake showed of the peer's leaf certificate."""

    def __init__(self, der):
        self.der = der
        c = _x509.load_der_x509_certificate(der)
        self.serial = c.serial_number
        cns = c.subject.get_attributes_for_oid(_NameOID.COMMON_NAME)
        self.cn = cns[0].value if cns else None
        try:
            san = c.extensions.get_extension_for_class(_x509.SubjectAlternativeName).value
            self.dns_sans = san.get_values_for_type(_x509.DNSName)
            self.ip_sans = [str(ip) for ip in san.get_values_for_type(_x509.IPAddress)]
        except _x509.ExtensionNotFound:
            self.dns_sans, self.ip_sans = [], []

    def __repr__(self):
        return f"<PeerCert CN={self.cn} serial={self.serial:x} dns={self.dns_sans}>"


# ---------------------------------------------------------------------------
# Client side
# ---------------------------------------------------------------------------

_VERSIONS = {
    "TLS1_0": ssl.TLSVersion.TLSv1,
    "TLS1_1": ssl.TLSVersion.TLSv1_1,
    "TLS1_2": ssl.TLSVersion.TLSv1_2,
    "TLS1_3": ssl.TLSVersion.TLSv1_3,
}


class ProbeResult:
    """One client handshake: ok, or error (the exception text)."""

    def __init__(self):
        self.ok = False
        self.error = None
        self.version = None       # "TLSv1.3"
        self.cipher = None        # "TLS_AES_128_GCM_SHA256"
        self.alpn = None
        self.cert: PeerCert | None = None
        self.response = b""       # raw bytes read after the request (tls_get)
        self.closed_after = None  # seconds from connect to the peer's close (failures)

    @property
    def status(self):
        m = re.match(rb"HTTP/1\.[01] (\d{3})", self.response)
        return int(m.group(1)) if m else None

    def __repr__(self):
        return (f"<ProbeResult ok={self.ok} version={self.version} cipher={self.cipher} "
                f"alpn={self.alpn} cert={self.cert} error={self.error!r}>")


def client_context(*, cafile=None, version=None, min_version=None, max_version=None,
                   ciphers=None, alpn=None, cert=None, key=None,
                   verify=False, seclevel0=False):
    """A client SSLContext. version pins min and max ("TLS1_2"...). Python's
    ssl cannot restrict TLS 1.3 suites: use s_client("-ciphersuites", ...)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    if verify:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cafile=str(cafile))
    else:
        ctx.verify_mode = ssl.CERT_NONE
    lo = version or min_version
    hi = version or max_version
    if seclevel0:
        ctx.set_ciphers((ciphers or "DEFAULT") + ":@SECLEVEL=0")
    elif ciphers:
        ctx.set_ciphers(ciphers)
    with warnings.catch_warnings():
        # TLS 1.0/1.1 are deprecated in python's ssl: on purpose here.
        warnings.simplefilter("ignore", DeprecationWarning)
        if lo:
            ctx.minimum_version = _VERSIONS[lo]
        if hi:
            ctx.maximum_version = _VERSIONS[hi]
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    if cert:
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


def probe(port, server_name=None, *, host=LOOPBACK, timeout=3.0, request=None, **ctx_args):
    """Connects to host:port and does one TLS handshake (SNI server_name, or
    none). request: bytes sent after the handshake; the answer is read until
    the peer closes or a complete-looking response arrives (a TLS 1.3
    server rejects a client certificate only after the client's Finished,
    so a request is what makes that failure visible)."""
    res = ProbeResult()
    ctx = client_context(**ctx_args)
    start = time.monotonic()
    raw = socket.create_connection((host, port), timeout=timeout)
    try:
        s = ctx.wrap_socket(raw, server_hostname=server_name, do_handshake_on_connect=False)
        raw = s
        s.settimeout(timeout)
        try:
            s.do_handshake()
            res.version = s.version()
            res.cipher = s.cipher()[0] if s.cipher() else None
            res.alpn = s.selected_alpn_protocol()
            der = s.getpeercert(binary_form=True)
            res.cert = PeerCert(der) if der else None
            if request is not None:
                s.sendall(request)
                res.response = _read_http1(s, timeout)
                if not res.response:
                    raise ConnectionError("closed without a response")
            res.ok = True
        except (ssl.SSLError, OSError, ConnectionError) as e:
            res.error = f"{type(e).__name__}: {e}"
            res.closed_after = time.monotonic() - start
    finally:
        raw.close()
    return res


def _read_http1(s, timeout):
    """Reads one HTTP/1.1 response (Content-Length framed, or to EOF)."""
    deadline = time.monotonic() + timeout
    buf = b""
    while time.monotonic() < deadline:
        head_end = buf.find(b"\r\n\r\n")
        if head_end >= 0:
            m = re.search(rb"\r\ncontent-length:\s*(\d+)", buf[:head_end], re.I)
            if m and len(buf) >= head_end + 4 + int(m.group(1)):
                return buf
        try:
            chunk = s.recv(65536)
        except (ssl.SSLError, OSError):
            if buf:
                return buf
            raise
        if not chunk:
            return buf
        buf += chunk
    return buf


def http_get(path="/echo", host="a.test", headers=()):
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}"] + [f"{n}: {v}" for n, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def tls_get(port, server_name="a.test", path="/echo", **kw):
    """probe() plus one GET; res.status is the response status."""
    return probe(port, server_name, request=http_get(path, host=server_name or "a.test"), **kw)


class SClient:
    """The outcome of one `openssl s_client -brief` run."""

    def __init__(self, args, rc, out):
        self.args = args
        self.rc = rc
        self.out = out
        m = re.search(r"^Protocol version: (\S+)", out, re.M)
        self.version = m.group(1) if m else None
        m = re.search(r"^Ciphersuite: (\S+)", out, re.M)
        self.cipher = m.group(1) if m else None
        m = re.search(r"^Peer certificate: (.*)$", out, re.M)
        self.peer = m.group(1).strip() if m else None
        m = re.search(r"^ALPN protocol: (\S+)", out, re.M)
        self.alpn = m.group(1) if m else None

    @property
    def ok(self):
        return self.rc == 0 and self.version is not None

    def __repr__(self):
        return f"<SClient rc={self.rc} version={self.version} peer={self.peer!r}\n{self.out}>"


def s_client(port, *args, servername=None, host=LOOPBACK, timeout=10.0, send=b""):
    """Runs `openssl s_client -brief` against host:port. args: extra flags
    ("-tls1_2", "-cipher", "...", "-alpn", "h2"). stdin gets `send` and then
    EOF, so a completed handshake ends the run."""
    cmd = [OPENSSL, "s_client", "-brief", "-connect", f"{host}:{port}"]
    if servername:
        cmd += ["-servername", servername]
    else:
        cmd += ["-noservername"]
    cmd += list(args)
    p = subprocess.run(cmd, input=send, capture_output=True, timeout=timeout)
    out = p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")
    return SClient(cmd, p.returncode, out)


class CurlResult:
    def __init__(self, rc, status, http_version, headers, body, stderr):
        self.rc = rc
        self.status = status
        self.http_version = http_version   # "1.1", "2"
        self.headers = headers             # [(lower name, value)]
        self.body = body
        self.stderr = stderr

    def header(self, name, default=None):
        for n, v in self.headers:
            if n == name.lower():
                return v
        return default

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return (f"<CurlResult rc={self.rc} status={self.status} http={self.http_version} "
                f"stderr={self.stderr!r} body[:200]={self.body[:200]!r}>")


def curl(url, *args, resolve=None, timeout=10.0):
    """Runs curl on url; resolve: {host: port} pinned to 127.0.0.1."""
    tmp = tempfile.mkdtemp(prefix="portway-curl-")
    try:
        cmd = ["curl", "-sS", "--max-time", str(timeout), "-o", f"{tmp}/body",
               "-D", f"{tmp}/head", "-w", "%{http_code} %{http_version}"]
        for host, port in (resolve or {}).items():
            cmd += ["--resolve", f"{host}:{port}:{LOOPBACK}"]
        cmd += list(args) + [url]
        p = subprocess.run(cmd, capture_output=True, timeout=timeout + 5)
        parts = p.stdout.decode().split()
        status = int(parts[0]) if parts and parts[0].isdigit() else None
        version = parts[1] if len(parts) > 1 else None
        headers = []
        try:
            head = Path(f"{tmp}/head").read_text(errors="replace")
            for line in head.splitlines():
                if ":" in line and not line.startswith("HTTP/"):
                    n, _, v = line.partition(":")
                    headers.append((n.strip().lower(), v.strip()))
        except FileNotFoundError:
            pass
        try:
            body = Path(f"{tmp}/body").read_bytes()
        except FileNotFoundError:
            body = b""
        return CurlResult(p.returncode, status, version, headers, body,
                          p.stderr.decode(errors="replace"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------
# HTTPS origin
# ---------------------------------------------------------------------------


class TlsOriginRequest:
    def __init__(self, conn_id, protocol, method, path, headers, body, sni, alpn, client_cn):
        self.conn_id = conn_id
        self.protocol = protocol      # "HTTP/1.1" or "h2"
        self.method = method
        self.path = path
        self.headers = headers        # [(lower name, value)], h2 pseudo-headers included
        self.body = body
        self.sni = sni
        self.alpn = alpn
        self.client_cn = client_cn    # CN of the verified client certificate, or None

    def header(self, name, default=None):
        for n, v in self.headers:
            if n == name.lower():
                return v
        return default

    def __repr__(self):
        return (f"<TlsOriginRequest conn={self.conn_id} {self.protocol} {self.method} {self.path} "
                f"sni={self.sni} alpn={self.alpn} client={self.client_cn}>")


class TlsOrigin:
    """A threaded HTTPS origin on 127.0.0.1, port 0.

    cert: the Cert it presents (swap with set_cert); alpn: the protocols it
    offers (e.g. ["h2", "http/1.1"], or None for no ALPN at all); client_ca:
    a CA file: then a client certificate is required and verified.
    min_version/max_version: "TLS1_2"/"TLS1_3".

    Every request gets 200 with a JSON body {protocol, path, sni, alpn,
    client, body_len, body_crc32}, except (HTTP/1.1 only) /bytes/N: N pattern
    bytes (portway_test_lib.iter_pattern). Records: requests, handshakes
    (sni, alpn, ok/error per TLS connection), connections_accepted.
    """

    def __init__(self, cert, *, alpn=("h2", "http/1.1"), client_ca=None, min_version=None,
                 max_version=None, name="tls-origin", close_after=None):
        self.name = name
        # HTTP/1.1: close each connection after its first response, though
        # the response said nothing of it: "notify" sends close_notify
        # first, "fin" just closes the socket.
        self.close_after = close_after
        self.alpn = list(alpn) if alpn else None
        self.client_ca = client_ca
        self.min_version = min_version
        self.max_version = max_version
        self._lock = threading.Lock()
        self.requests: list[TlsOriginRequest] = []
        self.handshakes: list[dict] = []
        self.connections_accepted = 0
        self.protocol_errors: list[str] = []   # HTTP/1.1 request lines that did not parse
        self._stop = threading.Event()
        self._socks = set()
        self._conn_local = threading.local()   # per connection thread: the SNI seen
        self._ctx = self._context(cert)
        self.listener, self.port = listen_loopback()
        self.address = f"{LOOPBACK}:{self.port}"
        self._thread = None

    def _context(self, cert):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(cert.cert), str(cert.key))
        if self.alpn:
            ctx.set_alpn_protocols(self.alpn)
        if self.client_ca:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(cafile=str(self.client_ca))
        if self.min_version:
            ctx.minimum_version = _VERSIONS[self.min_version]
        if self.max_version:
            ctx.maximum_version = _VERSIONS[self.max_version]
        ctx.sni_callback = self._on_sni
        return ctx

    def set_cert(self, cert):
        self._ctx = self._context(cert)

    def _on_sni(self, sslsock, server_name, ctx):
        # Each connection has its thread, so the handshake's SNI is kept
        # per thread: it is recorded even when the handshake then fails.
        self._conn_local.sni = server_name
        return None

    # -- lifecycle --------------------------------------------------------

    def start(self):
        self._thread = threading.Thread(target=self._accept_loop, daemon=True,
                                        name=f"{self.name}-accept")
        self._thread.start()
        return self

    def __enter__(self):
        return self.start() if self._thread is None else self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        self._stop.set()
        _close_listener(self.listener)
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            try:
                s.close()
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(2)

    def wait_for_requests(self, n, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.requests) >= n:
                    return list(self.requests)
            time.sleep(0.02)
        raise TimeoutError(f"{self.name}: {len(self.requests)} requests, wanted {n}")

    # -- serving ----------------------------------------------------------

    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections_accepted += 1
                conn_id = self.connections_accepted
                self._socks.add(sock)
            threading.Thread(target=self._serve, args=(sock, conn_id), daemon=True,
                             name=f"{self.name}-{conn_id}").start()

    def _serve(self, sock, conn_id):
        sock.settimeout(10)
        record = {"conn_id": conn_id, "sni": None, "alpn": None, "ok": False, "error": None}
        self._conn_local.sni = None
        tls = None
        try:
            try:
                tls = self._ctx.wrap_socket(sock, server_side=True)
            except (ssl.SSLError, OSError) as e:
                record.update(error=f"{type(e).__name__}: {e}", sni=self._conn_local.sni)
                return
            with self._lock:
                self._socks.add(tls)
            record.update(ok=True, sni=self._conn_local.sni, alpn=tls.selected_alpn_protocol())
            client_cn = None
            peer = tls.getpeercert()
            if peer:
                for rdn in peer.get("subject", ()):
                    for k, v in rdn:
                        if k == "commonName":
                            client_cn = v
            meta = (conn_id, record["sni"], record["alpn"], client_cn)
            if record["alpn"] == "h2":
                self._serve_h2(tls, meta)
            else:
                self._serve_h1(tls, meta)
        except (ssl.SSLError, OSError):
            pass
        finally:
            with self._lock:
                self.handshakes.append(record)
                self._socks.discard(tls)
                self._socks.discard(sock)
            # wrap_socket detached `sock`: the TLS socket owns the descriptor.
            for s in (tls, sock):
                try:
                    if s is not None:
                        s.close()
                except OSError:
                    pass

    def _answer(self, req):
        return json.dumps({"protocol": req.protocol, "path": req.path, "sni": req.sni,
                           "alpn": req.alpn, "client": req.client_cn,
                           "body_len": len(req.body),
                           "body_crc32": zlib.crc32(req.body)}).encode()

    def _serve_h1(self, s, meta):
        buf = b""
        while not self._stop.is_set():
            while b"\r\n\r\n" not in buf:
                chunk = s.recv(65536)
                if not chunk:
                    return
                buf += chunk
            head, _, buf = buf.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            parts = lines[0].split(" ")
            if len(parts) != 3:
                # Not HTTP/1.1 (an HTTP/2 preface, say): recorded, then refused.
                with self._lock:
                    self.protocol_errors.append(lines[0])
                s.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
                          b"Connection: close\r\n\r\n")
                return
            method, path, _ = parts
            headers = []
            for line in lines[1:]:
                n, _, v = line.partition(":")
                headers.append((n.strip().lower(), v.strip()))
            length = int(dict(headers).get("content-length", "0"))
            while len(buf) < length:
                chunk = s.recv(65536)
                if not chunk:
                    return
                buf += chunk
            body, buf = buf[:length], buf[length:]
            req = TlsOriginRequest(meta[0], "HTTP/1.1", method, path, headers, body, *meta[1:])
            with self._lock:
                self.requests.append(req)
            if path.startswith("/bytes/"):
                n = int(path.split("/")[2])
                s.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                          + f"Content-Length: {n}\r\n\r\n".encode())
                for chunk in iter_pattern(n):
                    s.sendall(chunk)
            else:
                out = self._answer(req)
                s.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                          + f"Content-Length: {len(out)}\r\n\r\n".encode() + out)
            if dict(headers).get("connection", "").lower() == "close":
                return
            if self.close_after == "notify":
                try:
                    s.unwrap()
                except (ssl.SSLError, OSError):
                    pass
                return
            if self.close_after == "fin":
                return

    def _serve_h2(self, s, meta):
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        conn.initiate_connection()
        s.sendall(conn.data_to_send())
        streams = {}
        while not self._stop.is_set():
            data = s.recv(65536)
            if not data:
                return
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.RequestReceived):
                    hdrs = [(n.decode() if isinstance(n, bytes) else n,
                             v.decode() if isinstance(v, bytes) else v) for n, v in ev.headers]
                    streams[ev.stream_id] = [hdrs, b""]
                    if ev.stream_ended:
                        self._h2_reply(conn, ev.stream_id, streams.pop(ev.stream_id), meta)
                elif isinstance(ev, h2.events.DataReceived):
                    conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    if ev.stream_id in streams:
                        streams[ev.stream_id][1] += ev.data
                    if ev.stream_ended and ev.stream_id in streams:
                        self._h2_reply(conn, ev.stream_id, streams.pop(ev.stream_id), meta)
                elif isinstance(ev, h2.events.StreamEnded):
                    if ev.stream_id in streams:
                        self._h2_reply(conn, ev.stream_id, streams.pop(ev.stream_id), meta)
                elif isinstance(ev, h2.events.ConnectionTerminated):
                    s.sendall(conn.data_to_send())
                    return
            s.sendall(conn.data_to_send())

    def _h2_reply(self, conn, stream_id, entry, meta):
        hdrs, body = entry
        d = dict(hdrs)
        req = TlsOriginRequest(meta[0], "h2", d.get(":method"), d.get(":path"), hdrs, body,
                               *meta[1:])
        with self._lock:
            self.requests.append(req)
        out = self._answer(req)
        conn.send_headers(stream_id, [(":status", "200"), ("content-type", "application/json"),
                                      ("content-length", str(len(out)))])
        conn.send_data(stream_id, out, end_stream=True)


# ---------------------------------------------------------------------------
# Raw sockets
# ---------------------------------------------------------------------------


def _close_listener(sock):
    # close() alone does not wake a thread blocked in accept(); shutdown does.
    for op in (lambda: sock.shutdown(socket.SHUT_RDWR), sock.close):
        try:
            op()
        except OSError:
            pass


def read_until_closed(sock, timeout):
    """Reads until EOF/reset; returns (bytes, seconds until closed or None
    if still open at the deadline)."""
    start = time.monotonic()
    deadline = start + timeout
    buf = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return buf, None
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return buf, None
        except OSError:
            return buf, time.monotonic() - start
        if not chunk:
            return buf, time.monotonic() - start
        buf += chunk


def client_hello_bytes(server_name="a.test"):
    """A real ClientHello record, captured from python's ssl through a memory BIO."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=server_name)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def local_client_speaks(version, cert):
    """Whether this machine's python/OpenSSL client can complete a `version`
    handshake at all (against a local python server allowing it, security
    level 0). Returns (True, "") or (False, why)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.load_cert_chain(str(cert.cert), str(cert.key))
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = _VERSIONS[version]
            ctx.maximum_version = _VERSIONS[version]
    except (ssl.SSLError, ValueError) as e:
        return False, f"the local OpenSSL refuses a {version} server context: {e}"
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind((LOOPBACK, 0))
    listener.listen(1)
    port = listener.getsockname()[1]

    def serve():
        try:
            s, _ = listener.accept()
            s.settimeout(3)
            try:
                ctx.wrap_socket(s, server_side=True).close()
            except (ssl.SSLError, OSError):
                s.close()
        except OSError:
            pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        res = probe(port, "a.test", version=version, seclevel0=True)
    finally:
        t.join(3)
        listener.close()
    if res.ok:
        return True, ""
    return False, f"the local OpenSSL cannot complete a {version} handshake: {res.error}"


class PlaintextAnswerer:
    """A plaintext TCP server that answers whatever arrives with an HTTP/1.1
    400 and closes (as HTTP servers do with bytes that are not HTTP).
    Counts what it received."""

    def __init__(self):
        self.received = []
        self.listener, self.port = listen_loopback(backlog=16)
        self.address = f"{LOOPBACK}:{self.port}"
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while True:
            try:
                s, _ = self.listener.accept()
            except OSError:
                return
            try:
                s.settimeout(5)
                data = s.recv(65536)
                self.received.append(data)
                s.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
                          b"Connection: close\r\n\r\n")
            except OSError:
                pass
            finally:
                s.close()

    def stop(self):
        _close_listener(self.listener)
        self._thread.join(2)


def request_then_close_notify(port, request, server_name="a.test", timeout=3.0):
    """Sends `request`, then close_notify (a TLS half-close: the client
    will write nothing more), and returns what the server sent back before
    its own close. Driven through memory BIOs, so reading continues after
    our close_notify."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=server_name)
    got = b""
    with socket.create_connection((LOOPBACK, port), timeout=timeout) as s:
        while True:
            try:
                obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                s.sendall(outgoing.read())
                data = s.recv(65536)
                if not data:
                    raise ConnectionError("closed during the handshake")
                incoming.write(data)
        obj.write(request)
        try:
            obj.unwrap()
        except ssl.SSLWantReadError:
            pass
        s.sendall(outgoing.read())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data = s.recv(65536)
            except (socket.timeout, OSError):
                break
            if data:
                incoming.write(data)
            else:
                incoming.write_eof()
            try:
                while True:
                    chunk = obj.read(65536)
                    if not chunk:
                        break
                    got += chunk
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError:
                break
            if not data:
                break
    return got
