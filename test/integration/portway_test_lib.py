"""Helpers for Portway's integration tests (standard library only).

- FakeOrigin: a threaded raw-socket HTTP/1.1 origin with its own strict little
  parser. It records every request it receives and serves a behaviour chosen
  by the request path (see FakeOrigin's docstring).
- Gateway: runs the portway binary on a generated config, waits for /ready,
  talks to the admin endpoint, parses /stats, signals and stops the process.
- HttpConn / raw_request / parse_response: a tiny HTTP/1.1 client side that
  never "fixes" what it receives, so framing bugs stay visible.
- closed_port / Blackhole: ports for connect-refused and connect-timeout.

Everything binds to 127.0.0.1; nothing here sends traffic off the machine.
"""

from __future__ import annotations

import atexit
import http.client
import json
import os
import random
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
import urllib.parse
import zlib
from http import HTTPStatus
from pathlib import Path

LOOPBACK = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PORTWAY_BIN = REPO_ROOT / "build" / "bin" / "portway"


def portway_bin() -> str:
    return os.environ.get("PORTWAY_BIN") or str(DEFAULT_PORTWAY_BIN)


def wait_until(predicate, timeout=5.0, interval=0.02, message="condition"):
    """Polls predicate() until it returns something truthy; returns that value.

    Raises TimeoutError after `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


# ---------------------------------------------------------------------------
# Deterministic body pattern (period 64 KiB, pseudo-random so shifts show up)
# ---------------------------------------------------------------------------

PATTERN_BLOCK = random.Random(0x5EED).randbytes(65536)
_PATTERN_MV = memoryview(PATTERN_BLOCK)
_PATTERN_CRC_CACHE: dict[int, int] = {}


def iter_pattern(n: int, chunk: int = 65536):
    """Yields memoryviews that together are the first n bytes of the pattern."""
    pos = 0
    size = len(PATTERN_BLOCK)
    while pos < n:
        start = pos % size
        take = min(chunk, n - pos, size - start)
        yield _PATTERN_MV[start:start + take]
        pos += take


def pattern_bytes(n: int) -> bytes:
    return b"".join(bytes(c) for c in iter_pattern(n))


def pattern_crc32(n: int) -> int:
    if n not in _PATTERN_CRC_CACHE:
        crc = 0
        for c in iter_pattern(n):
            crc = zlib.crc32(c, crc)
        _PATTERN_CRC_CACHE[n] = crc
    return _PATTERN_CRC_CACHE[n]


# ---------------------------------------------------------------------------
# Client side: response parsing
# ---------------------------------------------------------------------------


class ProtocolError(Exception):
    pass


class ConnectionClosed(Exception):
    """The peer closed the connection before sending any byte of a response."""


def _find_header(headers, name):
    lname = name.lower()
    return [v for (n, v) in headers if n.lower() == lname]


class Response:
    """One parsed HTTP/1.1 response.

    complete is False when the connection ended before the message did
    (truncated body, missing last chunk, half a head).
    """

    def __init__(self):
        self.version = ""
        self.status = None
        self.reason = ""
        self.headers: list[tuple[str, str]] = []
        self.trailers: list[tuple[str, str]] = []
        self.body = b""
        self.complete = False
        self.close_delimited = False
        self.error = None
        self.raw_head = b""

    def header(self, name, default=None):
        values = _find_header(self.headers, name)
        return values[0] if values else default

    def header_values(self, name):
        return _find_header(self.headers, name)

    def has_header(self, name):
        return bool(_find_header(self.headers, name))

    def connection_tokens(self):
        tokens = set()
        for v in self.header_values("connection"):
            tokens.update(t.strip().lower() for t in v.split(",") if t.strip())
        return tokens

    def json(self):
        return json.loads(self.body)

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    def __repr__(self):
        body = self.body[:200]
        return (f"<Response {self.status} {self.reason!r} complete={self.complete} "
                f"headers={self.headers!r} body[:200]={body!r}>")


_STATUS_LINE_RE = re.compile(rb"^HTTP/(\d)\.(\d) (\d{3})(?: (.*))?$")
_TOKEN_RE = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


def _parse_fields(lines, what):
    fields = []
    for line in lines:
        if b":" not in line:
            raise ProtocolError(f"{what} line without colon: {line!r}")
        name, _, value = line.partition(b":")
        if not _TOKEN_RE.match(name):
            raise ProtocolError(f"invalid {what} name: {name!r}")
        if b"\r" in value or b"\n" in value:
            raise ProtocolError(f"bare CR/LF in {what} value: {value!r}")
        fields.append((name.decode("latin-1"), value.strip(b" \t").decode("latin-1")))
    return fields


def _decode_chunked(buf, pos):
    """Returns (body_parts, trailers, end_pos_or_None, error)."""
    parts = []
    mv = memoryview(buf)
    n = len(buf)
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return parts, [], None, None
        size_text = bytes(buf[pos:eol]).split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
            if not re.fullmatch(rb"[0-9A-Fa-f]+", size_text):
                raise ValueError
        except ValueError:
            return parts, [], None, f"bad chunk size line {bytes(buf[pos:eol])!r}"
        pos = eol + 2
        if size == 0:
            trailers = []
            while True:
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    return parts, [], None, None
                line = bytes(buf[pos:eol])
                pos = eol + 2
                if not line:
                    try:
                        return parts, _parse_fields(trailers, "trailer"), pos, None
                    except ProtocolError as e:
                        return parts, [], None, str(e)
                trailers.append(line)
        if n < pos + size + 2:
            if n > pos:
                parts.append(bytes(mv[pos:min(n, pos + size)]))
            return parts, [], None, None
        parts.append(bytes(mv[pos:pos + size]))
        if bytes(buf[pos + size:pos + size + 2]) != b"\r\n":
            return parts, [], None, "chunk data not followed by CRLF"
        pos += size + 2


def try_parse_response(buf, head_request=False, eof=False):
    """Parses one response from the start of buf.

    Returns (response, consumed). Returns (None, 0) when more bytes are needed
    and the connection is still open. When eof is True and the message is not
    complete, returns a Response with complete=False (status None if not even
    the head arrived). Raises ProtocolError on an unparsable head.
    """
    idx = buf.find(b"\r\n\r\n")
    if idx < 0:
        if eof:
            r = Response()
            r.raw_head = bytes(buf)
            return r, len(buf)
        return None, 0
    head = bytes(buf[:idx])
    lines = head.split(b"\r\n")
    m = _STATUS_LINE_RE.match(lines[0])
    if not m:
        raise ProtocolError(f"bad status line {lines[0]!r}")
    r = Response()
    r.raw_head = head
    r.version = f"HTTP/{m.group(1).decode()}.{m.group(2).decode()}"
    r.status = int(m.group(3))
    r.reason = (m.group(4) or b"").decode("latin-1")
    r.headers = _parse_fields(lines[1:], "header")
    pos = idx + 4
    if 100 <= r.status < 200 or head_request or r.status in (204, 304):
        r.complete = True
        return r, pos
    te = ",".join(r.header_values("transfer-encoding"))
    if te:
        codings = [c.strip().lower() for c in te.split(",") if c.strip()]
        if codings and codings[-1] == "chunked":
            parts, trailers, end, error = _decode_chunked(buf, pos)
            if end is not None:
                r.body = b"".join(parts)
                r.trailers = trailers
                r.complete = True
                return r, end
            if error or eof:
                r.body = b"".join(parts)
                r.error = error
                return r, len(buf)
            return None, 0
    cls = r.header_values("content-length")
    if cls and not te:
        if len(set(cls)) != 1 or not re.fullmatch(r"[0-9]+", cls[0]):
            raise ProtocolError(f"bad Content-Length {cls!r}")
        n = int(cls[0])
        if len(buf) - pos >= n:
            r.body = bytes(buf[pos:pos + n])
            r.complete = True
            return r, pos + n
        if eof:
            r.body = bytes(buf[pos:])
            return r, len(buf)
        return None, 0
    # Delimited by the connection closing.
    if eof:
        r.body = bytes(buf[pos:])
        r.complete = True
        r.close_delimited = True
        return r, len(buf)
    return None, 0


def parse_response(data, head_request=False, eof=True):
    """Parses the first response in data (assumed to be everything received)."""
    r, _ = try_parse_response(data, head_request=head_request, eof=eof)
    if r is None:
        raise ProtocolError("incomplete response")
    return r


def parse_responses(data, eof=True, skip_interim=True):
    """Parses every response in data, in order."""
    out = []
    buf = bytearray(data)
    while buf:
        r, consumed = try_parse_response(buf, eof=eof)
        if r is None:
            break
        del buf[:consumed]
        if skip_interim and r.complete and r.status is not None and 100 <= r.status < 200:
            continue
        out.append(r)
        if not r.complete:
            break
    return out


def build_request(method, target, headers=None, body=None, host="portway.test",
                  version="HTTP/1.1"):
    """Serializes a request. headers: list of (name, value) or a dict.

    Adds Host (unless host is None or a Host header is given) and
    Content-Length when a body is given without framing headers.
    """
    if headers is None:
        headers = []
    elif isinstance(headers, dict):
        headers = list(headers.items())
    else:
        headers = list(headers)
    names = {n.lower() for n, _ in headers}
    if host is not None and "host" not in names:
        headers.insert(0, ("Host", host))
    if body is not None and "content-length" not in names and "transfer-encoding" not in names:
        headers.append(("Content-Length", str(len(body))))
    out = [f"{method} {target} {version}\r\n".encode("latin-1")]
    for n, v in headers:
        out.append(f"{n}: {v}\r\n".encode("latin-1"))
    out.append(b"\r\n")
    if body:
        out.append(body if isinstance(body, bytes) else body.encode())
    return b"".join(out)


def chunked_body(parts, trailers=()):
    out = []
    for p in parts:
        if p:
            out.append(b"%x\r\n%s\r\n" % (len(p), p))
    out.append(b"0\r\n")
    for n, v in trailers:
        out.append(f"{n}: {v}\r\n".encode("latin-1"))
    out.append(b"\r\n")
    return b"".join(out)


class HttpConn:
    """One client connection that sends raw bytes and parses responses strictly."""

    def __init__(self, port, host=LOOPBACK, timeout=5.0):
        self.port = port
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.eof = False
        self.reset = False
        self.interim: list[Response] = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data):
        self.sock.sendall(data)

    def request(self, method, target, headers=None, body=None, host="portway.test",
                version="HTTP/1.1"):
        self.send(build_request(method, target, headers, body, host, version))

    def roundtrip(self, method, target, headers=None, body=None, host="portway.test",
                  version="HTTP/1.1", timeout=None):
        self.request(method, target, headers, body, host, version)
        return self.read_response(head_request=(method == "HEAD"), timeout=timeout)

    def _recv_some(self, deadline, size=262144):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no complete response before the deadline; "
                               f"have {len(self.buf)} bytes: {bytes(self.buf[:300])!r}")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(size)
        except socket.timeout:
            raise TimeoutError("no complete response before the deadline; "
                               f"have {len(self.buf)} bytes: {bytes(self.buf[:300])!r}") from None
        except ConnectionResetError:
            self.eof = True
            self.reset = True
            return False
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def read_response(self, head_request=False, timeout=None, interim=False):
        """Reads one response. 1xx responses are collected in self.interim and
        skipped unless interim=True. Raises ConnectionClosed when the connection
        ends before any byte, TimeoutError when nothing complete arrives."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            if self.eof and not self.buf:
                raise ConnectionClosed("connection closed before a response"
                                       + (" (reset)" if self.reset else ""))
            r, consumed = try_parse_response(self.buf, head_request=head_request, eof=self.eof)
            if r is not None:
                del self.buf[:consumed]
                if r.complete and 100 <= r.status < 200 and r.status != 101 and not interim:
                    self.interim.append(r)
                    continue
                return r
            self._recv_some(deadline)

    def read_head(self, timeout=None):
        """Reads only a response head; the body stays unread in the socket/buffer."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            idx = self.buf.find(b"\r\n\r\n")
            if idx >= 0:
                r, _ = try_parse_response(self.buf[:idx + 4], head_request=True)
                del self.buf[:idx + 4]
                if 100 <= r.status < 200:
                    self.interim.append(r)
                    continue
                return r
            if self.eof:
                raise ConnectionClosed("connection closed before a response head")
            self._recv_some(deadline)

    def read_body_stream(self, n, consumer, timeout=None, chunk=1 << 20):
        """Reads up to n body bytes (after read_head), passing each piece to consumer.
        Returns the count read (less than n if the connection closed)."""
        got = 0
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        if self.buf:
            take = min(n, len(self.buf))
            consumer(memoryview(bytes(self.buf[:take])))
            del self.buf[:take]
            got += take
        bufarr = bytearray(chunk)
        mv = memoryview(bufarr)
        while got < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"body read timed out after {got} of {n} bytes")
            self.sock.settimeout(remaining)
            try:
                k = self.sock.recv_into(mv, min(chunk, n - got))
            except socket.timeout:
                raise TimeoutError(f"body read timed out after {got} of {n} bytes") from None
            except ConnectionResetError:
                self.eof = self.reset = True
                break
            if k == 0:
                self.eof = True
                break
            consumer(mv[:k])
            got += k
        return got

    def wait_closed(self, timeout=3.0):
        """True if the peer closes (FIN or RST) within timeout. Data that
        arrives meanwhile is appended to self.buf."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            try:
                self._recv_some(deadline)
            except TimeoutError:
                return False
        return True

    def is_open(self):
        """Non-blocking check: False if the peer has closed the connection."""
        if self.eof:
            return False
        r, _, _ = select.select([self.sock], [], [], 0)
        if not r:
            return True
        try:
            data = self.sock.recv(65536, socket.MSG_PEEK)
        except ConnectionResetError:
            self.eof = self.reset = True
            return False
        except BlockingIOError:
            return True
        if not data:
            self.eof = True
            return False
        return True


class RawResult(bytes):
    """The bytes a raw_request received; .closed tells whether the peer closed
    (FIN or RST) before the read timeout, .reset whether it was an RST."""

    closed = False
    reset = False
    elapsed = 0.0

    def response(self, head_request=False):
        return parse_response(bytes(self), head_request=head_request, eof=True)

    def responses(self):
        return parse_responses(bytes(self), eof=True)


def raw_request(port, data, read_timeout=5.0, host=LOOPBACK, shut_write=False,
                until=None):
    """Sends raw bytes on a new connection and returns what comes back.

    Reads until the peer closes, until `read_timeout` seconds have passed in
    total, or until until(bytes_so_far) is true. Returns a RawResult.
    """
    start = time.monotonic()
    deadline = start + read_timeout
    got = bytearray()
    closed = reset = False
    with socket.create_connection((host, port), timeout=read_timeout) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            if data:
                s.sendall(data)
            if shut_write:
                s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass
        while True:
            if until is not None and until(bytes(got)):
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            s.settimeout(remaining)
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                closed = reset = True
                break
            if not chunk:
                closed = True
                break
            got += chunk
    result = RawResult(bytes(got))
    result.closed = closed
    result.reset = reset
    result.elapsed = time.monotonic() - start
    return result


def closed_port():
    """A loopback port that nothing listens on (bound once, then released).

    Picked below the kernel's ephemeral range (32768 and up on Linux): a
    port from bind(0) could be handed to a listener another test (running
    at the same time under ctest -j) binds to port 0, and a request meant to
    be refused would then hang there."""
    for _ in range(200):
        port = random.randrange(20000, 32000)
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind((LOOPBACK, port))
        except OSError:
            continue
        finally:
            s.close()
        return port
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((LOOPBACK, 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Blackhole:
    """A loopback port whose SYNs go unanswered: a listener with backlog 0 and
    its accept queue filled (never accepted). Linux (and gVisor) drop further
    SYNs, so a connect() there hangs until the caller's timeout.

    .ok is False when the kernel did not behave that way (then skip the test).
    """

    def __init__(self, probe_timeout=0.3):
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind((LOOPBACK, 0))
        self.listener.listen(0)
        self.port = self.listener.getsockname()[1]
        self.address = f"{LOOPBACK}:{self.port}"
        self.fillers = []
        self.ok = False
        for _ in range(8):
            c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            c.settimeout(probe_timeout)
            try:
                c.connect((LOOPBACK, self.port))
            except (socket.timeout, TimeoutError):
                c.close()
                self.ok = True
                break
            except OSError:
                c.close()
                break
            self.fillers.append(c)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        for c in self.fillers:
            c.close()
        self.listener.close()


# ---------------------------------------------------------------------------
# FakeOrigin
# ---------------------------------------------------------------------------


class OriginRequest:
    """What the fake origin received for one request."""

    def __init__(self):
        self.id = 0
        self.conn_id = 0
        self.peer_port = 0
        self.method = ""
        self.target = ""
        self.path = ""
        self.query = ""
        self.version = ""
        self.headers: list[tuple[str, str]] = []
        self.trailers: list[tuple[str, str]] = []
        self.body_len = 0
        self.body_crc32 = 0
        self.body = b""          # the first `keep_body_bytes` bytes
        self.complete = False    # the whole body arrived
        self.received_at = 0.0
        self.response_bytes_sent = 0

    def header(self, name, default=None):
        values = _find_header(self.headers, name)
        return values[0] if values else default

    def header_values(self, name):
        return _find_header(self.headers, name)

    def has_header(self, name):
        return bool(_find_header(self.headers, name))

    def trailer(self, name, default=None):
        values = _find_header(self.trailers, name)
        return values[0] if values else default

    def to_json(self):
        return {
            "id": self.id, "conn_id": self.conn_id, "peer_port": self.peer_port,
            "method": self.method, "target": self.target, "path": self.path,
            "query": self.query, "version": self.version,
            "headers": [list(h) for h in self.headers],
            "trailers": [list(t) for t in self.trailers],
            "body_len": self.body_len, "body_crc32": self.body_crc32,
            "complete": self.complete,
        }

    def __repr__(self):
        return (f"<OriginRequest #{self.id} conn={self.conn_id} {self.method} {self.target} "
                f"body_len={self.body_len} complete={self.complete}>")


class OriginConnection:
    def __init__(self, conn_id, peer_port):
        self.id = conn_id
        self.peer_port = peer_port
        self.accepted_at = time.monotonic()
        self.bytes_received = 0
        self.requests = 0
        self.closed_by = None     # "peer" (EOF/RST seen) or "origin"
        self.closed_at = None
        self.closed = threading.Event()

    def mark_closed(self, by):
        if self.closed_by is None:
            self.closed_by = by
            self.closed_at = time.monotonic()
        self.closed.set()

    def __repr__(self):
        return (f"<OriginConnection #{self.id} peer={self.peer_port} requests={self.requests} "
                f"closed_by={self.closed_by}>")


class _BadRequest(Exception):
    pass


class _PeerClosed(Exception):
    pass


class _Reader:
    def __init__(self, sock, conn):
        self.sock = sock
        self.conn = conn
        self.buf = bytearray()

    def fill(self):
        try:
            data = self.sock.recv(262144)
        except ConnectionResetError:
            data = b""
        if not data:
            return False
        self.conn.bytes_received += len(data)
        self.buf += data
        return True

    def read_head(self, limit=1 << 20):
        while True:
            while self.buf.startswith(b"\r\n"):
                del self.buf[:2]
            idx = self.buf.find(b"\r\n\r\n")
            if idx >= 0:
                head = bytes(self.buf[:idx])
                del self.buf[:idx + 4]
                return head
            if len(self.buf) > limit:
                raise _BadRequest("head too large")
            if not self.fill():
                if self.buf:
                    raise _PeerClosed()
                return None

    def read_line(self, limit=65536):
        while True:
            idx = self.buf.find(b"\r\n")
            if idx >= 0:
                line = bytes(self.buf[:idx])
                del self.buf[:idx + 2]
                return line
            if len(self.buf) > limit:
                raise _BadRequest("line too long")
            if not self.fill():
                raise _PeerClosed()

    def read_into(self, n, consumer):
        """Reads exactly n bytes, passing them to consumer; raises _PeerClosed early."""
        if self.buf:
            take = min(n, len(self.buf))
            consumer(memoryview(bytes(self.buf[:take])))
            del self.buf[:take]
            n -= take
        if n <= 0:
            return
        chunk = bytearray(min(n, 262144))
        mv = memoryview(chunk)
        while n > 0:
            try:
                k = self.sock.recv_into(mv, min(n, len(chunk)))
            except ConnectionResetError:
                k = 0
            if k == 0:
                raise _PeerClosed()
            self.conn.bytes_received += k
            consumer(mv[:k])
            n -= k


class _Body:
    def __init__(self, keep_limit):
        self.len = 0
        self.crc = 0
        self.keep = bytearray()
        self.keep_limit = keep_limit

    def feed(self, mv):
        self.len += len(mv)
        self.crc = zlib.crc32(mv, self.crc)
        if len(self.keep) < self.keep_limit:
            self.keep += mv[:self.keep_limit - len(self.keep)]


class OriginContext:
    """Passed to custom handlers: the request, its connection and send helpers."""

    def __init__(self, origin, sock, conn, reader, req, keep_alive):
        self.origin = origin
        self.sock = sock
        self.conn = conn
        self.reader = reader
        self.req = req
        self.keep_alive = keep_alive

    def send_raw(self, data):
        self.sock.sendall(data)

    def send_response(self, status, headers=(), body=b"", reason=None):
        self.origin._send_response(self, status, headers, body, reason)


_REQUEST_LINE_RE = re.compile(rb"^([!#$%&'*+\-.^_`|~0-9A-Za-z]+) (\S+) (HTTP/\d\.\d)$")


class FakeOrigin:
    """A threaded HTTP/1.1 origin on 127.0.0.1 (port 0 by default).

    Behaviour by path (the query string is ignored unless stated):
      /echo (and any path not listed)  200, JSON of the request as received
      /status/N          status N (no body for 1xx/204/304)
      /delay/SECONDS     sleeps, then 200 "delayed"; notices the peer closing meanwhile
      /reset             reads the request, closes with SO_LINGER 0 (RST)
      /close             reads the request, closes without a reply (FIN)
      /malformed         "HTTP/1.1 abc" status line; then keeps the connection open
      /bad-header        a header with a space before the colon (?kind=cr: bare CR in
                         a value); then keeps the connection open
      /truncate-cl       Content-Length: 1000, sends 10 bytes, closes
      /truncate-chunked  chunked, sends one 10-byte chunk, closes
      /bytes/N           N pattern bytes with Content-Length, streamed in 64 KiB writes
      /chunked/N         N pattern bytes chunked (16 KiB chunks); ?trailers=1 adds
                         the trailer "X-Origin-Trailer: done"
      /sink              reads the body, answers JSON {"bytes": n, "crc32": c}
      /head              200 with 5000 pattern bytes (HEAD: same head, no body)
      /204, /304         those statuses (no body; /304?cl=1 adds Content-Length: 5000)
      /hop-by-hop        200 carrying hop-by-hop response headers
    HEAD never gets a body. Keep-alive is honoured (HTTP/1.1 unless
    "Connection: close"; HTTP/1.0 only with "Connection: keep-alive").
    "Expect: 100-continue" gets an interim 100 before the body is read
    (send_100_continue=False to turn that off).

    Custom behaviour: origin.handlers["/path"] = fn(ctx) -> bool (True keeps
    the connection); keys ending in "/" match as prefixes.
    """

    def __init__(self, name="origin", port=0, send_100_continue=True, keep_body_bytes=1 << 20,
                 also_ipv6=False):
        self.name = name
        self.send_100_continue = send_100_continue
        self.keep_body_bytes = keep_body_bytes
        self.handlers = {}
        self._lock = threading.Lock()
        self._requests: list[OriginRequest] = []
        self._connections: list[OriginConnection] = []
        self._socks = set()
        self._stop = threading.Event()
        self._threads = []
        self.protocol_errors = []
        self.body_bytes_sent = 0
        self._listeners = []
        s, self.port = listen_loopback(port, 512)
        self._listeners.append(s)
        self.address = f"{LOOPBACK}:{self.port}"
        if also_ipv6 and socket.has_ipv6:
            try:
                s6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
                s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                s6.bind(("::1", self.port))
                s6.listen(512)
                self._listeners.append(s6)
            except OSError:
                pass
        self._accept_thread = None

    # -- lifecycle --------------------------------------------------------

    def start(self):
        self._accept_thread = threading.Thread(target=self._accept_loop,
                                               name=f"origin-{self.name}", daemon=True)
        self._accept_thread.start()
        return self

    def __enter__(self):
        if self._accept_thread is None:
            self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        self._stop.set()
        for s in self._listeners:
            try:
                s.close()
            except OSError:
                pass
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._accept_thread is not None:
            self._accept_thread.join(2)
        for t in list(self._threads):
            t.join(1)

    # -- inspection -------------------------------------------------------

    @property
    def requests(self) -> list[OriginRequest]:
        with self._lock:
            return [r for r in self._requests if r.complete]

    @property
    def all_requests(self) -> list[OriginRequest]:
        """Including requests whose body never fully arrived."""
        with self._lock:
            return list(self._requests)

    @property
    def connections(self) -> list[OriginConnection]:
        with self._lock:
            return list(self._connections)

    @property
    def connections_accepted(self) -> int:
        with self._lock:
            return len(self._connections)

    @property
    def bytes_received(self) -> int:
        with self._lock:
            return sum(c.bytes_received for c in self._connections)

    def clear(self):
        with self._lock:
            self._requests.clear()
            self._connections = [c for c in self._connections if not c.closed.is_set()]

    def wait_for_requests(self, n, timeout=5.0):
        wait_until(lambda: len(self.requests) >= n, timeout,
                   message=f"origin {self.name} to receive {n} request(s) (has {len(self.requests)})")
        return self.requests

    def wait_for_connections(self, n, timeout=5.0):
        wait_until(lambda: self.connections_accepted >= n, timeout,
                   message=f"origin {self.name} to accept {n} connection(s)")
        return self.connections

    def connection(self, conn_id) -> OriginConnection:
        with self._lock:
            for c in self._connections:
                if c.id == conn_id:
                    return c
        raise KeyError(conn_id)

    # -- serving ----------------------------------------------------------

    def _accept_loop(self):
        next_id = 1
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select(self._listeners, [], [], 0.1)
            except (OSError, ValueError):
                return
            for ls in ready:
                try:
                    sock, peer = ls.accept()
                except OSError:
                    continue
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                conn = OriginConnection(next_id, peer[1])
                next_id += 1
                with self._lock:
                    self._connections.append(conn)
                    self._socks.add(sock)
                t = threading.Thread(target=self._serve, args=(sock, conn), daemon=True,
                                     name=f"origin-{self.name}-conn{conn.id}")
                self._threads = [x for x in self._threads if x.is_alive()]
                self._threads.append(t)
                t.start()

    def _serve(self, sock, conn):
        reader = _Reader(sock, conn)
        try:
            while not self._stop.is_set():
                try:
                    head = reader.read_head()
                except _PeerClosed:
                    conn.mark_closed("peer")
                    return
                if head is None:
                    conn.mark_closed("peer")
                    return
                try:
                    keep = self._one_request(sock, conn, reader, head)
                except _PeerClosed:
                    conn.mark_closed("peer")
                    return
                except _BadRequest as e:
                    self.protocol_errors.append(str(e))
                    try:
                        sock.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
                                     b"Connection: close\r\n\r\n")
                    except OSError:
                        pass
                    conn.mark_closed("origin")
                    return
                if not keep:
                    if not conn.closed.is_set():
                        conn.mark_closed("origin")
                    return
        except (BrokenPipeError, ConnectionResetError):
            conn.mark_closed("peer")
        except OSError:
            conn.mark_closed("peer" if not self._stop.is_set() else "origin")
        finally:
            with self._lock:
                self._socks.discard(sock)
            try:
                sock.close()
            except OSError:
                pass

    def _one_request(self, sock, conn, reader, head):
        lines = head.split(b"\r\n")
        m = _REQUEST_LINE_RE.match(lines[0])
        if not m:
            raise _BadRequest(f"bad request line {lines[0]!r}")
        try:
            headers = _parse_fields(lines[1:], "header")
        except ProtocolError as e:
            raise _BadRequest(str(e)) from None
        req = OriginRequest()
        req.conn_id = conn.id
        req.peer_port = conn.peer_port
        req.method = m.group(1).decode()
        req.target = m.group(2).decode("latin-1")
        req.version = m.group(3).decode()
        split = urllib.parse.urlsplit(req.target)
        req.path = split.path or req.target
        req.query = split.query
        req.headers = headers
        req.received_at = time.monotonic()
        conn.requests += 1

        conn_tokens = set()
        for v in req.header_values("connection"):
            conn_tokens.update(t.strip().lower() for t in v.split(","))
        if req.version == "HTTP/1.0":
            keep_alive = "keep-alive" in conn_tokens
        else:
            keep_alive = "close" not in conn_tokens

        te = ",".join(req.header_values("transfer-encoding")).lower()
        cls = req.header_values("content-length")
        chunked = bool(te) and te.split(",")[-1].strip() == "chunked"
        if te and not chunked:
            raise _BadRequest(f"unsupported transfer-encoding {te!r}")
        length = 0
        if not chunked and cls:
            if len(set(cls)) != 1 or not cls[0].isdigit():
                raise _BadRequest(f"bad content-length {cls!r}")
            length = int(cls[0])
        expects_body = chunked or length > 0
        expect = (req.header("expect") or "").lower()
        if expect == "100-continue" and expects_body and self.send_100_continue:
            sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")

        body = _Body(self.keep_body_bytes)
        with self._lock:
            req.id = len(self._requests) + 1
            self._requests.append(req)
        try:
            if chunked:
                while True:
                    line = reader.read_line()
                    size_text = line.split(b";", 1)[0].strip()
                    if not re.fullmatch(rb"[0-9A-Fa-f]+", size_text):
                        raise _BadRequest(f"bad chunk size {line!r}")
                    size = int(size_text, 16)
                    if size == 0:
                        trailer_lines = []
                        while True:
                            t = reader.read_line()
                            if not t:
                                break
                            trailer_lines.append(t)
                        try:
                            req.trailers = _parse_fields(trailer_lines, "trailer")
                        except ProtocolError as e:
                            raise _BadRequest(str(e)) from None
                        break
                    reader.read_into(size, body.feed)
                    if reader.read_line() != b"":
                        raise _BadRequest("chunk not followed by CRLF")
            elif length:
                reader.read_into(length, body.feed)
        finally:
            req.body_len = body.len
            req.body_crc32 = body.crc
            req.body = bytes(body.keep)
        req.complete = True
        ctx = OriginContext(self, sock, conn, reader, req, keep_alive)
        return self._dispatch(ctx)

    def _send_response(self, ctx, status, headers=(), body=b"", reason=None):
        head_request = ctx.req.method == "HEAD"
        hdrs = [("Server", "fake-origin"), ("X-Origin-Name", self.name)] + list(headers)
        names = {n.lower() for n, _ in hdrs}
        no_body = status in (204, 304) or 100 <= status < 200
        if not no_body and "content-length" not in names and "transfer-encoding" not in names:
            hdrs.append(("Content-Length", str(len(body))))
        if not ctx.keep_alive:
            hdrs.append(("Connection", "close"))
        elif ctx.req.version == "HTTP/1.0":
            hdrs.append(("Connection", "keep-alive"))
        if reason is None:
            try:
                reason = HTTPStatus(status).phrase
            except ValueError:
                reason = "Unknown"
        out = [f"HTTP/1.1 {status} {reason}\r\n".encode("latin-1")]
        out += [f"{n}: {v}\r\n".encode("latin-1") for n, v in hdrs]
        out.append(b"\r\n")
        if body and not head_request and not no_body:
            out.append(body)
        ctx.sock.sendall(b"".join(out))

    def _sleep_watching(self, ctx, seconds):
        """Sleeps; returns False if the peer closed (or we are stopping) meanwhile."""
        deadline = time.monotonic() + seconds
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True
            if self._stop.is_set():
                return False
            if ctx.reader.buf:
                # Pipelined bytes already buffered: nothing to watch, just wait.
                return not self._stop.wait(remaining)
            try:
                ready, _, _ = select.select([ctx.sock], [], [], min(remaining, 0.05))
            except (OSError, ValueError):
                return False
            if ready:
                try:
                    data = ctx.sock.recv(1, socket.MSG_PEEK)
                except OSError:
                    data = b""
                if not data:
                    ctx.conn.mark_closed("peer")
                    return False
                return not self._stop.wait(max(0.0, deadline - time.monotonic()))

    def _stream_body(self, ctx, chunks):
        for piece in chunks:
            ctx.sock.sendall(piece)
            ctx.req.response_bytes_sent += len(piece)
            with self._lock:
                self.body_bytes_sent += len(piece)

    def _dispatch(self, ctx):
        req = ctx.req
        path = req.path
        head_request = req.method == "HEAD"
        for key, fn in self.handlers.items():
            if path == key or (key.endswith("/") and path.startswith(key)):
                return bool(fn(ctx))

        if path.startswith("/status/"):
            status = int(path.split("/")[2])
            body = b"" if status in (204, 304) or status < 200 else f"status {status}\n".encode()
            self._send_response(ctx, status, [("Content-Type", "text/plain")], body)
            return ctx.keep_alive
        if path.startswith("/delay/"):
            if not self._sleep_watching(ctx, float(path.split("/")[2])):
                return False
            self._send_response(ctx, 200, [("Content-Type", "text/plain")], b"delayed")
            return ctx.keep_alive
        if path == "/reset":
            ctx.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                struct.pack("ii", 1, 0))
            ctx.conn.mark_closed("origin")
            return False
        if path == "/close":
            try:
                ctx.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            ctx.conn.mark_closed("origin")
            return False
        if path == "/malformed":
            ctx.send_raw(b"HTTP/1.1 abc\r\nContent-Length: 2\r\n\r\nok")
            return True
        if path == "/bad-header":
            kind = urllib.parse.parse_qs(req.query).get("kind", ["space"])[0]
            bad = b"X-Bad\rHeader: x\r\n" if kind == "cr" else b"X-Bad-Header : x\r\n"
            if kind == "cr-value":
                bad = b"X-Bad: a\rb\r\n"
            ctx.send_raw(b"HTTP/1.1 200 OK\r\n" + bad + b"Content-Length: 2\r\n\r\nok")
            return True
        if path == "/truncate-cl":
            ctx.send_raw(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                         b"Content-Length: 1000\r\n\r\n0123456789")
            ctx.sock.shutdown(socket.SHUT_RDWR)
            ctx.conn.mark_closed("origin")
            return False
        if path == "/truncate-chunked":
            ctx.send_raw(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n")
            ctx.sock.shutdown(socket.SHUT_RDWR)
            ctx.conn.mark_closed("origin")
            return False
        if path.startswith("/bytes/"):
            n = int(path.split("/")[2])
            self._send_response(ctx, 200, [("Content-Type", "application/octet-stream"),
                                           ("Content-Length", str(n))])
            if not head_request:
                self._stream_body(ctx, iter_pattern(n, 65536))
            return ctx.keep_alive
        if path.startswith("/chunked/"):
            n = int(path.split("/")[2])
            trailers = urllib.parse.parse_qs(req.query).get("trailers", ["0"])[0] == "1"
            hdrs = [("Content-Type", "application/octet-stream"),
                    ("Transfer-Encoding", "chunked")]
            if trailers:
                hdrs.append(("Trailer", "X-Origin-Trailer"))
            self._send_response(ctx, 200, hdrs)
            if not head_request:
                self._stream_body(ctx, (b"%x\r\n%s\r\n" % (len(c), c)
                                        for c in iter_pattern(n, 16384)))
                end = b"0\r\n" + (b"X-Origin-Trailer: done\r\n" if trailers else b"") + b"\r\n"
                ctx.send_raw(end)
            return ctx.keep_alive
        if path == "/sink":
            body = json.dumps({"bytes": req.body_len, "crc32": req.body_crc32}).encode()
            self._send_response(ctx, 200, [("Content-Type", "application/json")], body)
            return ctx.keep_alive
        if path == "/head":
            self._send_response(ctx, 200, [("Content-Type", "application/octet-stream")],
                                pattern_bytes(5000))
            return ctx.keep_alive
        if path == "/204":
            self._send_response(ctx, 204, [("X-Status", "no-content")])
            return ctx.keep_alive
        if path == "/304":
            hdrs = [("ETag", '"v1"')]
            if urllib.parse.parse_qs(req.query).get("cl", ["0"])[0] == "1":
                hdrs.append(("Content-Length", "5000"))
            self._send_response(ctx, 304, hdrs)
            return ctx.keep_alive
        if path == "/hop-by-hop":
            hdrs = [("Connection", "X-Origin-Hop"), ("X-Origin-Hop", "secret"),
                    ("Keep-Alive", "timeout=99"), ("Proxy-Connection", "keep-alive"),
                    ("Upgrade", "example/1"), ("Trailer", "X-Never"),
                    ("X-End-To-End", "kept"), ("Content-Type", "text/plain")]
            self._send_response(ctx, 200, hdrs, b"hop")
            return ctx.keep_alive
        # /echo and everything else.
        data = req.to_json()
        data["origin"] = self.name
        try:
            data["body"] = req.body.decode("utf-8")
        except UnicodeDecodeError:
            data["body"] = None
        self._send_response(ctx, 200, [("Content-Type", "application/json")],
                            json.dumps(data).encode())
        return ctx.keep_alive


# ---------------------------------------------------------------------------
# Config helpers
# ---------------------------------------------------------------------------

_PLAIN_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _yaml_scalar(v):
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, dict) and not v:
        return "{}"
    if isinstance(v, (list, tuple)) and not v:
        return "[]"
    raise TypeError(f"cannot write {type(v).__name__} as YAML")


def _yaml_emit(obj, indent, lines):
    pad = " " * indent
    if isinstance(obj, dict):
        for k, v in obj.items():
            key = k if _PLAIN_KEY_RE.match(str(k)) else json.dumps(str(k))
            if isinstance(v, (dict, list, tuple)) and v:
                lines.append(f"{pad}{key}:")
                _yaml_emit(v, indent + 2, lines)
            else:
                lines.append(f"{pad}{key}: {_yaml_scalar(v)}")
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            if isinstance(item, (dict, list, tuple)) and item:
                sub = []
                _yaml_emit(item, indent + 2, sub)
                sub[0] = pad + "- " + sub[0][indent + 2:]
                lines.extend(sub)
            else:
                lines.append(f"{pad}- {_yaml_scalar(item)}")
    else:
        lines.append(pad + _yaml_scalar(obj))


def to_yaml(obj) -> str:
    """Block-style YAML for dicts/lists/scalars (strings always double-quoted)."""
    if isinstance(obj, (dict, list, tuple)) and not obj:
        return _yaml_scalar(obj) + "\n"
    lines = []
    _yaml_emit(obj, 0, lines)
    return "\n".join(lines) + "\n"


def listen_loopback(port=0, backlog=128):
    """A TCP socket listening on LOOPBACK:port (0: any free port), with
    SO_REUSEADDR; returns (socket, port)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((LOOPBACK, port))
    s.listen(backlog)
    return s, s.getsockname()[1]


def make_cluster(name, endpoints, **options):
    c = {"name": name, "endpoints": list(endpoints), "connect_timeout": "1s"}
    c.update(options)
    return c


def make_config(endpoints=None, *, routes=None, virtual_hosts=None, clusters=None,
                listener=None, extra_listeners=(), cluster_options=None,
                drain_timeout="3s", access_log=None):
    """A one-listener ("edge") config. With only `endpoints`, every request
    goes to cluster "backend" made of them. `listener` entries override the
    listener's fields (limits, timeouts, proxy_headers, ...)."""
    if clusters is None:
        clusters = []
        if endpoints is not None:
            clusters.append(make_cluster("backend", endpoints, **(cluster_options or {})))
    if routes is None and virtual_hosts is None:
        routes = [{"match": {"prefix": "/"}, "cluster": "backend"}]
    lst = {"name": "edge", "address": f"{LOOPBACK}:0"}
    if virtual_hosts is not None:
        lst["virtual_hosts"] = virtual_hosts
    else:
        lst["routes"] = routes
    lst.update(listener or {})
    return {
        "admin": {"address": f"{LOOPBACK}:0"},
        "access_log": access_log or {"path": "stdout", "format": "text"},
        "drain_timeout": drain_timeout,
        "listeners": [lst] + list(extra_listeners),
        "clusters": clusters,
    }


def parse_duration(text, default=15.0):
    if text is None:
        return default
    m = re.fullmatch(r"\s*([0-9.]+)\s*(ms|s|m|h)?\s*", str(text))
    if not m:
        return default
    value = float(m.group(1))
    return value * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]


# ---------------------------------------------------------------------------
# Prometheus text
# ---------------------------------------------------------------------------

_PROM_LINE_RE = re.compile(
    r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?\s*$")
_PROM_LABEL_RE = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')


def parse_prometheus(text):
    """{(metric_name, ((label, value), ...sorted)): float}"""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _PROM_LINE_RE.match(line)
        if not m:
            raise ValueError(f"unparsable stats line: {line!r}")
        labels = {}
        if m.group(2):
            rest = m.group(2)
            pos = 0
            while pos < len(rest):
                lm = _PROM_LABEL_RE.match(rest, pos)
                if not lm:
                    if rest[pos:].strip(" ,") == "":
                        break
                    raise ValueError(f"unparsable labels in: {line!r}")
                value = lm.group(2).replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")
                labels[lm.group(1)] = value
                pos = lm.end()
        raw = m.group(3)
        value = float({"+Inf": "inf", "-Inf": "-inf"}.get(raw, raw))
        out[(m.group(1), tuple(sorted(labels.items())))] = value
    return out


class Stats(dict):
    def get_value(self, name, **labels):
        """Sum of every series `name` whose labels include `labels`."""
        want = set(labels.items())
        return sum(v for (n, ls), v in self.items() if n == name and want <= set(ls))

    def series(self, name):
        return {ls: v for (n, ls), v in self.items() if n == name}


# ---------------------------------------------------------------------------
# Gateway
# ---------------------------------------------------------------------------

_LIVE_GATEWAYS = set()


@atexit.register
def _kill_leftovers():
    for gw in list(_LIVE_GATEWAYS):
        try:
            if gw.proc is not None and gw.proc.poll() is None:
                gw.proc.kill()
        except Exception:
            pass


class GatewayError(Exception):
    pass


class Gateway:
    """Runs portway on `config` (a dict, written as YAML, or a YAML string).

        with Gateway(make_config([origin.address])) as gw:
            port = gw.listener_port("edge")

    stop() sends SIGTERM and asserts the exit code (0 by default).
    """

    def __init__(self, config, *, workers=1, log_level=None, args=(), binary=None,
                 ready_timeout=10.0, env=None, wait_ready=True):
        # wait_ready=False: start() returns once the admin answers /ready at
        # all (a gateway that is up but waits for its control plane).
        self.wait_ready = wait_ready
        self.binary = binary or portway_bin()
        self.workers = workers
        self.log_level = log_level or os.environ.get("PORTWAY_TEST_LOG_LEVEL", "info")
        self.extra_args = list(args)
        self.ready_timeout = ready_timeout
        self.env = env
        self.dir = Path(tempfile.mkdtemp(prefix="portway-it-"))
        self.config_path = self.dir / "portway.yaml"
        self.admin_path_file = self.dir / "admin-address"
        self.stdout_path = self.dir / "stdout.log"
        self.stderr_path = self.dir / "stderr.log"
        self.proc = None
        self.admin_host = None
        self.admin_port = None
        self.exit_code = None
        self._listeners = None
        self._children = None
        self.config = config
        self.write_config(config)

    # -- config -----------------------------------------------------------

    def write_config(self, config):
        """Writes the config file atomically (does not signal)."""
        self.config = config
        text = config if isinstance(config, str) else to_yaml(config)
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.config_path)

    def reload(self, config):
        """Writes a new config and sends SIGHUP."""
        self.write_config(config)
        self._listeners = None
        self.send_signal(signal.SIGHUP)

    @property
    def drain_timeout(self):
        if isinstance(self.config, dict):
            return parse_duration(self.config.get("drain_timeout"), 15.0)
        m = re.search(r"^drain_timeout:\s*(\S+)", self.config, re.M)
        return parse_duration(m.group(1) if m else None, 15.0)

    # -- process ----------------------------------------------------------

    def command(self):
        cmd = [self.binary, "-c", str(self.config_path),
               "--admin-address-path", str(self.admin_path_file)]
        if self.workers is not None:
            cmd += ["--workers", str(self.workers)]
        if self.log_level:
            cmd += ["--log-level", self.log_level]
        return cmd + self.extra_args

    def start(self):
        if not os.path.exists(self.binary):
            raise GatewayError(f"portway binary not found: {self.binary}")
        self._out = open(self.stdout_path, "wb")
        self._err = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                     stdout=self._out, stderr=self._err, env=self.env)
        _LIVE_GATEWAYS.add(self)
        try:
            self._wait_ready()
        except BaseException:
            self.dump_logs()
            self.kill()
            raise
        return self

    def _wait_ready(self):
        deadline = time.monotonic() + self.ready_timeout
        last = "no admin address yet"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise GatewayError(f"portway exited with {self.proc.returncode} during start\n"
                                   + self.log_tail())
            if self.admin_port is None:
                try:
                    text = self.admin_path_file.read_text().strip()
                except FileNotFoundError:
                    text = ""
                if text:
                    host, _, port = text.rpartition(":")
                    self.admin_host = host.strip("[]") or LOOPBACK
                    self.admin_port = int(port)
            if self.admin_port is not None:
                try:
                    status, _, _ = self.admin_get("/ready", timeout=1.0)
                    if status == 200 or (not self.wait_ready and status == 503):
                        return
                    last = f"/ready answered {status}"
                except OSError as e:
                    last = f"/ready failed: {e}"
            time.sleep(0.02)
        raise GatewayError(f"portway not ready after {self.ready_timeout}s ({last})\n"
                           + self.log_tail())

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def wait_exit(self, timeout):
        """Returns the exit code, or None if still running after timeout."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self._close_files()

    def stop(self, expect_code=0, timeout=None, check=True):
        """SIGTERM, wait, and (if check) assert the exit code."""
        if self.proc is None:
            return None
        if timeout is None:
            timeout = self.drain_timeout + 5.0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                self._close_files()
                if check:
                    raise AssertionError(f"portway did not exit within {timeout}s of SIGTERM\n"
                                         + self.log_tail())
        self.exit_code = self.proc.returncode
        self._close_files()
        _LIVE_GATEWAYS.discard(self)
        if check and expect_code is not None and self.exit_code != expect_code:
            raise AssertionError(f"portway exited with {self.exit_code}, expected {expect_code}\n"
                                 + self.log_tail())
        return self.exit_code

    def _close_files(self):
        for f in (getattr(self, "_out", None), getattr(self, "_err", None)):
            if f is not None and not f.closed:
                f.close()

    def cleanup(self):
        if not os.environ.get("PORTWAY_KEEP_TMP"):
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is not None:
                self.dump_logs()
            self.stop(check=exc_type is None)
        finally:
            if exc_type is None:
                self.cleanup()

    # -- logs -------------------------------------------------------------

    def stdout_text(self):
        try:
            return self.stdout_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stderr_text(self):
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_text(self):
        return self.stdout_text() + self.stderr_text()

    def log_tail(self, lines=40):
        out = []
        for label, text in (("stdout", self.stdout_text()), ("stderr", self.stderr_text())):
            tail = text.splitlines()[-lines:]
            out.append(f"--- portway {label} (last {len(tail)} lines, {self.dir}) ---")
            out.extend(tail)
        return "\n".join(out)

    def dump_logs(self):
        print(self.log_tail(), flush=True)

    # -- admin ------------------------------------------------------------

    def admin_get(self, path, timeout=5.0):
        """(status, {lowercase header: value}, body bytes)"""
        conn = http.client.HTTPConnection(self.admin_host, self.admin_port, timeout=timeout)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
        finally:
            conn.close()

    def admin_json(self, path):
        status, _, body = self.admin_get(path)
        if status != 200:
            raise AssertionError(f"admin {path} answered {status}: {body[:300]!r}")
        return json.loads(body)

    def listeners(self):
        if self._listeners is None:
            data = self.admin_json("/listeners")
            self._listeners = {entry["name"]: entry["address"] for entry in data["listeners"]}
        return self._listeners

    def listener_address(self, name="edge"):
        return self.listeners()[name]

    def listener_port(self, name="edge"):
        return int(self.listener_address(name).rsplit(":", 1)[1])

    @property
    def port(self):
        return self.listener_port("edge")

    def stats(self) -> Stats:
        status, _, body = self.admin_get("/stats")
        if status != 200:
            raise AssertionError(f"/stats answered {status}")
        return Stats(parse_prometheus(body.decode()))

    def stat(self, name, **labels):
        return self.stats().get_value(name, **labels)

    def wait_stat(self, name, at_least, timeout=3.0, **labels):
        """Waits until stat(name, **labels) >= at_least; returns the value."""
        last = [None]

        def check():
            last[0] = self.stat(name, **labels)
            return last[0] >= at_least

        try:
            wait_until(check, timeout, interval=0.05, message=f"{name}{labels} >= {at_least}")
        except TimeoutError:
            raise AssertionError(f"stat {name}{labels} is {last[0]}, expected >= {at_least}; "
                                 f"series: {self.stats().series(name)}") from None
        return last[0]

    # -- memory -----------------------------------------------------------

    def _child_pids(self):
        if self._children is None:
            kids = []
            for entry in os.listdir("/proc"):
                if not entry.isdigit():
                    continue
                try:
                    with open(f"/proc/{entry}/stat") as f:
                        fields = f.read().rsplit(")", 1)[1].split()
                    if int(fields[1]) == self.pid:
                        kids.append(int(entry))
                except (OSError, IndexError, ValueError):
                    continue
            self._children = kids
        return self._children

    def rss_kb(self):
        """VmRSS of the gateway process plus any child processes (workers), in KiB."""
        total = 0
        for pid in [self.pid] + self._child_pids():
            try:
                with open(f"/proc/{pid}/status") as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1])
                            break
            except OSError:
                continue
        return total


def run_validate(config, binary=None, timeout=20.0):
    """Runs `portway --validate -c FILE`; returns CompletedProcess (text)."""
    d = Path(tempfile.mkdtemp(prefix="portway-validate-"))
    try:
        path = d / "portway.yaml"
        path.write_text(config if isinstance(config, str) else to_yaml(config))
        return subprocess.run([binary or portway_bin(), "--validate", "-c", str(path)],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout)
    finally:
        shutil.rmtree(d, ignore_errors=True)


class RssSampler:
    """Samples a gateway's RSS in a background thread; .max_kb after stop()."""

    def __init__(self, gateway, interval=0.05):
        self.gateway = gateway
        self.interval = interval
        self.max_kb = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.max_kb = max(self.max_kb, self.gateway.rss_kb())
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(2)
        self.max_kb = max(self.max_kb, self.gateway.rss_kb())


def run_in_thread(fn, *args, **kwargs):
    """Starts fn in a daemon thread; returns a handle with .result(timeout)."""

    class Handle:
        def __init__(self):
            self.value = None
            self.error = None
            self.done = threading.Event()

        def result(self, timeout=10.0):
            if not self.done.wait(timeout):
                raise TimeoutError(f"{fn.__name__} did not finish in {timeout}s")
            if self.error is not None:
                raise self.error
            return self.value

    h = Handle()

    def body():
        try:
            h.value = fn(*args, **kwargs)
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            h.error = e
        finally:
            h.done.set()

    threading.Thread(target=body, daemon=True).start()
    return h
