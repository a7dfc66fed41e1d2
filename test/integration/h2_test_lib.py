"""HTTP/2 helpers for Portway's integration tests (python3-h2, hyperframe, hpack).

- H2Client: a well-behaved h2c (prior knowledge) client on top of h2's state
  machine. Inbound validation stays on, so a gateway that sends an invalid
  response (a connection-specific header, a bad pseudo-header) makes the
  test fail loudly; outbound validation is off so a test may send what it
  likes on a fresh connection.
- RawH2Conn: frames built by hand with hyperframe and hpack, with no state
  machine at all: for protocol violations and abuse (rapid reset, CONTINUATION,
  PING and empty DATA floods) and for streams sent after a GOAWAY.
- H2Origin: a threaded h2c origin (h2 server side). It records every request
  (headers, body, trailers) and every connection, and answers by path, see its
  docstring.

Everything binds to 127.0.0.1; every socket operation has a timeout.
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
import urllib.parse

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import hpack
from hyperframe import frame as hf

from portway_test_lib import LOOPBACK, iter_pattern, listen_loopback, wait_until

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
MAX_STREAM_ID = (1 << 31) - 1

# RFC 9113 section 7 error codes.
NO_ERROR = 0x0
PROTOCOL_ERROR = 0x1
INTERNAL_ERROR = 0x2
FLOW_CONTROL_ERROR = 0x3
STREAM_CLOSED = 0x5
FRAME_SIZE_ERROR = 0x6
REFUSED_STREAM = 0x7
CANCEL = 0x8
COMPRESSION_ERROR = 0x9
ENHANCE_YOUR_CALM = 0xB

# RFC 9113 section 6.5.2 settings identifiers.
SETTINGS_HEADER_TABLE_SIZE = 0x1
SETTINGS_ENABLE_PUSH = 0x2
SETTINGS_MAX_CONCURRENT_STREAMS = 0x3
SETTINGS_INITIAL_WINDOW_SIZE = 0x4
SETTINGS_MAX_FRAME_SIZE = 0x5
SETTINGS_MAX_HEADER_LIST_SIZE = 0x6


def _text(v):
    return v.decode("latin-1") if isinstance(v, (bytes, bytearray)) else str(v)


def _bytes(v):
    return v if isinstance(v, bytes) else str(v).encode("latin-1")


class H2Response:
    """What one client stream received.

    status is None when no final response head arrived. ended: END_STREAM was
    received (a clean end). reset_code: the RST_STREAM error code, if the peer
    reset the stream. trailers_only: the first and only HEADERS carried
    END_STREAM (gRPC "Trailers-Only").
    """

    def __init__(self, stream_id):
        self.stream_id = stream_id
        self.status = None
        self.headers: list[tuple[str, str]] = []
        self.informational: list[list[tuple[str, str]]] = []
        self.body = bytearray()
        self.trailers: list[tuple[str, str]] = []
        self.ended = False
        self.reset_code = None
        self.trailers_only = False
        self.data_frames = 0

    def header(self, name, default=None):
        for n, v in self.headers:
            if n == name:
                return v
        return default

    def header_values(self, name):
        return [v for n, v in self.headers if n == name]

    def trailer(self, name, default=None):
        for n, v in self.trailers:
            if n == name:
                return v
        return default

    @property
    def done(self):
        return self.ended or self.reset_code is not None

    @property
    def clean(self):
        """Ended with END_STREAM and was not reset."""
        return self.ended and self.reset_code is None

    def json(self):
        return json.loads(bytes(self.body))

    def __repr__(self):
        return (f"<H2Response stream={self.stream_id} status={self.status} ended={self.ended} "
                f"reset={self.reset_code} headers={self.headers!r} trailers={self.trailers!r} "
                f"body[:200]={bytes(self.body[:200])!r}>")


def request_headers(method, path, authority="portway.test", scheme="http", headers=()):
    """The usual pseudo-headers followed by `headers` (as given, not normalized)."""
    out = [(":method", method), (":scheme", scheme), (":authority", authority), (":path", path)]
    return out + [(n, v) for n, v in headers]


class H2Client:
    """A well-behaved h2c client with prior knowledge.

        with H2Client(port) as c:
            sid = c.request("GET", "/echo")
            r = c.response(sid)

    settings: {SETTINGS_*: value} sent in the first SETTINGS frame.
    auto_ack: give back flow-control credit as DATA is received (False: the
    client keeps reading the socket but lets the windows run dry; ack_all()
    gives the credit back).
    """

    def __init__(self, port, host=LOOPBACK, timeout=5.0, settings=None, auto_ack=True):
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        config = h2.config.H2Configuration(
            client_side=True, header_encoding=None, validate_outbound_headers=False,
            normalize_outbound_headers=False, validate_inbound_headers=True)
        self.conn = h2.connection.H2Connection(config=config)
        initial = {SETTINGS_ENABLE_PUSH: 0}
        initial.update(settings or {})
        self.conn.local_settings = h2.settings.Settings(client=True, initial_values=initial)
        self.auto_ack = auto_ack
        self.streams: dict[int, H2Response] = {}
        self.remote_settings: dict[int, int] = {}
        self.settings_received = threading.Event()
        self.goaway = None           # the last h2.events.ConnectionTerminated
        self.closed = False          # EOF or reset from the peer
        self.events = []
        self._unacked: dict[int, int] = {}
        self.conn.initiate_connection()
        self.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    # -- sending ------------------------------------------------------------

    def request(self, method, path, headers=(), body=None, trailers=None, end_stream=True,
                authority="portway.test"):
        """Opens a stream; returns its id. With body/trailers, sends them too
        (waiting for flow-control credit as needed)."""
        sid = self.conn.get_next_available_stream_id()
        hdrs = [(_bytes(n), _bytes(v)) for n, v in
                request_headers(method, path, authority, headers=headers)]
        has_more = body is not None or trailers is not None or not end_stream
        self.streams[sid] = H2Response(sid)
        self.conn.send_headers(sid, hdrs, end_stream=not has_more)
        self.flush()
        if body is not None:
            self.send_body(sid, body, end_stream=(trailers is None and end_stream))
        if trailers is not None:
            self.conn.send_headers(sid, [(_bytes(n), _bytes(v)) for n, v in trailers],
                                   end_stream=True)
            self.flush()
        return sid

    def send_body(self, sid, data, end_stream=True, timeout=None):
        data = memoryview(_bytes(data) if not isinstance(data, (bytes, bytearray)) else data)
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            window = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size)
            if window > 0 and len(data):
                take = min(window, len(data))
                last = take == len(data)
                self.conn.send_data(sid, bytes(data[:take]), end_stream=end_stream and last)
                self.flush()
                data = data[take:]
                if last:
                    return
                continue
            if not len(data):
                if end_stream:
                    self.conn.end_stream(sid)
                    self.flush()
                return
            self.pump(deadline)

    def ping(self, payload=b"12345678"):
        self.conn.ping(payload)
        self.flush()

    def reset(self, sid, code=CANCEL):
        self.conn.reset_stream(sid, code)
        self.flush()

    def ack_all(self):
        """Gives back the flow-control credit held while auto_ack was False."""
        for sid, n in list(self._unacked.items()):
            try:
                self.conn.acknowledge_received_data(n, sid)
            except h2.exceptions.StreamClosedError:
                pass
        self._unacked.clear()
        self.flush()

    # -- receiving ----------------------------------------------------------

    def pump(self, deadline):
        """Reads once (until `deadline`, a monotonic time) and handles the events.
        Raises TimeoutError at the deadline, returns False on EOF."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("HTTP/2 client: nothing before the deadline")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(1 << 20)
        except socket.timeout:
            raise TimeoutError("HTTP/2 client: nothing before the deadline") from None
        except ConnectionResetError:
            data = b""
        if not data:
            self.closed = True
            return False
        for ev in self.conn.receive_data(data):
            self._handle(ev)
        self.flush()
        return True

    def _stream(self, sid):
        if sid not in self.streams:
            self.streams[sid] = H2Response(sid)
        return self.streams[sid]

    def _handle(self, ev):
        self.events.append(ev)
        if isinstance(ev, h2.events.ResponseReceived):
            r = self._stream(ev.stream_id)
            r.headers = [(_text(n), _text(v)) for n, v in ev.headers]
            r.status = int(r.header(":status"))
            if ev.stream_ended is not None:
                r.trailers_only = True
        elif isinstance(ev, h2.events.InformationalResponseReceived):
            self._stream(ev.stream_id).informational.append(
                [(_text(n), _text(v)) for n, v in ev.headers])
        elif isinstance(ev, h2.events.DataReceived):
            r = self._stream(ev.stream_id)
            r.body += ev.data
            r.data_frames += 1
            if self.auto_ack:
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            else:
                self._unacked[ev.stream_id] = (self._unacked.get(ev.stream_id, 0)
                                               + ev.flow_controlled_length)
        elif isinstance(ev, h2.events.TrailersReceived):
            self._stream(ev.stream_id).trailers = [(_text(n), _text(v)) for n, v in ev.headers]
        elif isinstance(ev, h2.events.StreamEnded):
            self._stream(ev.stream_id).ended = True
        elif isinstance(ev, h2.events.StreamReset):
            self._stream(ev.stream_id).reset_code = int(ev.error_code)
        elif isinstance(ev, h2.events.RemoteSettingsChanged):
            for code, change in ev.changed_settings.items():
                self.remote_settings[int(code)] = change.new_value
            self.settings_received.set()
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self.goaway = ev

    def read_until(self, predicate, timeout=None, what="condition"):
        """Reads until predicate() is true. Raises TimeoutError, or
        ConnectionError if the connection ends first."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not predicate():
            if self.closed:
                raise ConnectionError(f"connection closed before {what}"
                                      + (f" (GOAWAY {self.goaway})" if self.goaway else ""))
            try:
                self.pump(deadline)
            except TimeoutError:
                raise TimeoutError(f"timed out waiting for {what}") from None
        return True

    def response(self, sid, timeout=None):
        """Waits until the stream ends (END_STREAM or RST_STREAM); returns its H2Response.
        If the connection ends first, returns what the stream had (not done)."""
        r = self._stream(sid)
        try:
            self.read_until(lambda: r.done or self.goaway is not None and self._goaway_covers(sid),
                            timeout, what=f"stream {sid} to end")
        except ConnectionError:
            pass
        return r

    def _goaway_covers(self, sid):
        # A GOAWAY whose last_stream_id is below sid means the stream was never processed.
        return self.goaway.last_stream_id is not None and sid > self.goaway.last_stream_id

    def wait_settings(self, timeout=None):
        self.read_until(self.settings_received.is_set, timeout, what="the peer's SETTINGS")
        return self.remote_settings


class RawH2Conn:
    """A frame-level h2c connection with no state machine (hyperframe + hpack).

    Sends the preface and a SETTINGS frame at once (unless preface=False).
    While reading it answers SETTINGS with an ACK, PING with a PING ACK
    (auto_ping=True) and gives back flow-control credit for DATA
    (auto_window=True). Everything received is kept: frames, per-stream
    H2Response objects (headers decoded with its own HPACK decoder),
    goaways, rst codes.

    rcvbuf: SO_RCVBUF set before connecting (small values make a peer's
    writes back up quickly when this side stops reading).
    """

    def __init__(self, port, host=LOOPBACK, timeout=5.0, settings=None, preface=True,
                 auto_ping=True, auto_window=True, rcvbuf=None):
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self.decoder.max_header_list_size = 1 << 24
        self.auto_ping = auto_ping
        self.auto_window = auto_window
        self.buf = bytearray()
        self.frames: list = []
        self.streams: dict[int, H2Response] = {}
        self.remote_settings: dict[int, int] = {}
        self.settings_frames = 0
        self.goaways: list[hf.GoAwayFrame] = []
        self.closed = False
        self.reset = False
        self.send_failed = False
        self._header_block = None      # (stream_id, bytearray) while CONTINUATION is expected
        self.next_stream_id = 1
        if preface:
            self.send_raw(PREFACE + self.settings_frame(settings or {}).serialize())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    # -- frames -----------------------------------------------------------

    @staticmethod
    def settings_frame(settings):
        f = hf.SettingsFrame(0)
        f.settings = dict(settings)
        return f

    def encode_headers(self, headers):
        return self.encoder.encode([(_bytes(n), _bytes(v)) for n, v in headers])

    def headers_frame(self, sid, headers, end_stream=True, end_headers=True, block=None):
        f = hf.HeadersFrame(sid)
        f.data = self.encode_headers(headers) if block is None else block
        if end_stream:
            f.flags.add("END_STREAM")
        if end_headers:
            f.flags.add("END_HEADERS")
        return f

    @staticmethod
    def data_frame(sid, data, end_stream=False):
        f = hf.DataFrame(sid)
        f.data = _bytes(data)
        if end_stream:
            f.flags.add("END_STREAM")
        return f

    @staticmethod
    def continuation_frame(sid, block=b"", end_headers=False):
        f = hf.ContinuationFrame(sid)
        f.data = block
        if end_headers:
            f.flags.add("END_HEADERS")
        return f

    @staticmethod
    def rst_frame(sid, code=CANCEL):
        f = hf.RstStreamFrame(sid)
        f.error_code = code
        return f

    @staticmethod
    def ping_frame(payload=b"\0" * 8, ack=False):
        f = hf.PingFrame(0)
        f.opaque_data = payload
        if ack:
            f.flags.add("ACK")
        return f

    @staticmethod
    def window_update_frame(sid, increment):
        f = hf.WindowUpdateFrame(sid)
        f.window_increment = increment
        return f

    # -- sending ----------------------------------------------------------

    def send_raw(self, data):
        """Sends bytes; returns False (and sets send_failed) if the peer has
        closed the connection or the send timed out."""
        try:
            self.sock.settimeout(self.timeout)
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            self.send_failed = True
            return False

    def send_frames(self, *frames):
        return self.send_raw(b"".join(f.serialize() for f in frames))

    def new_stream_id(self):
        sid = self.next_stream_id
        self.next_stream_id += 2
        return sid

    def send_request(self, method, path, headers=(), body=None, end_stream=None,
                     authority="portway.test", sid=None):
        """HEADERS (+ one DATA with the body); returns the stream id."""
        if sid is None:
            sid = self.new_stream_id()
        else:
            self.next_stream_id = max(self.next_stream_id, sid + 2)
        hdrs = request_headers(method, path, authority, headers=headers)
        self.send_headers(sid, hdrs, end_stream=(body is None) if end_stream is None else
                          (end_stream and body is None))
        if body is not None:
            self.send_frames(self.data_frame(sid, body, end_stream=True if end_stream is None
                                             else end_stream))
        return sid

    def send_headers(self, sid, headers, end_stream=True):
        """Sends exactly these header fields (in this order, as spelled) on sid."""
        self.streams.setdefault(sid, H2Response(sid))
        self.next_stream_id = max(self.next_stream_id, sid + 2)
        return self.send_frames(self.headers_frame(sid, headers, end_stream=end_stream))

    # -- receiving --------------------------------------------------------

    def _stream(self, sid):
        if sid not in self.streams:
            self.streams[sid] = H2Response(sid)
        return self.streams[sid]

    def _on_header_block(self, sid, block, end_stream):
        fields = [(_text(n), _text(v)) for n, v in self.decoder.decode(bytes(block), raw=True)]
        r = self._stream(sid)
        status = next((v for n, v in fields if n == ":status"), None)
        if r.status is None and status is not None and 100 <= int(status) < 200:
            r.informational.append(fields)
        elif r.status is None:
            r.headers = fields
            r.status = int(status) if status is not None else None
            r.trailers_only = end_stream
        else:
            r.trailers = fields
        if end_stream:
            r.ended = True

    def _handle(self, f):
        self.frames.append(f)
        if isinstance(f, hf.SettingsFrame):
            if "ACK" not in f.flags:
                self.settings_frames += 1
                self.remote_settings.update(f.settings)
                ack = hf.SettingsFrame(0)
                ack.flags.add("ACK")
                self.send_frames(ack)
        elif isinstance(f, hf.PingFrame):
            if "ACK" not in f.flags and self.auto_ping:
                self.send_frames(self.ping_frame(f.opaque_data, ack=True))
        elif isinstance(f, hf.HeadersFrame):
            end_stream = "END_STREAM" in f.flags
            if "END_HEADERS" in f.flags:
                self._on_header_block(f.stream_id, f.data, end_stream)
            else:
                self._header_block = (f.stream_id, bytearray(f.data), end_stream)
        elif isinstance(f, hf.ContinuationFrame):
            if self._header_block is not None:
                sid, block, end_stream = self._header_block
                block += f.data
                if "END_HEADERS" in f.flags:
                    self._header_block = None
                    self._on_header_block(sid, block, end_stream)
        elif isinstance(f, hf.DataFrame):
            r = self._stream(f.stream_id)
            r.body += f.data
            r.data_frames += 1
            if "END_STREAM" in f.flags:
                r.ended = True
            n = f.flow_controlled_length
            if self.auto_window and n:
                self.send_frames(self.window_update_frame(0, n),
                                 self.window_update_frame(f.stream_id, n))
        elif isinstance(f, hf.RstStreamFrame):
            self._stream(f.stream_id).reset_code = f.error_code
        elif isinstance(f, hf.GoAwayFrame):
            self.goaways.append(f)

    def _parse(self):
        while len(self.buf) >= 9:
            f, length = hf.Frame.parse_frame_header(memoryview(self.buf[:9]))
            if len(self.buf) < 9 + length:
                return
            f.parse_body(memoryview(bytes(self.buf[9:9 + length])))
            del self.buf[:9 + length]
            self._handle(f)

    def pump(self, deadline):
        """Reads once until `deadline`; returns False on EOF/reset or timeout."""
        if self.closed:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(1 << 20)
        except socket.timeout:
            return False
        except ConnectionResetError:
            self.closed = self.reset = True
            return False
        if not data:
            self.closed = True
            return False
        self.buf += data
        self._parse()
        return True

    def read(self, until=None, timeout=None):
        """Reads until until() is true, the peer closes, or timeout. Returns
        whether until() became true (True at EOF when until is None)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            if until is not None and until():
                return True
            if self.closed:
                return until is None
            if time.monotonic() >= deadline:
                return False
            self.pump(deadline)

    @property
    def goaway(self):
        return self.goaways[-1] if self.goaways else None

    def goaway_codes(self):
        return [g.error_code for g in self.goaways]

    def wait_goaway_or_close(self, timeout=None):
        """True if a GOAWAY arrives or the peer closes within timeout."""
        return self.read(lambda: bool(self.goaways) or self.closed, timeout)

    def response(self, sid, timeout=None):
        """Waits until stream sid ends, is reset, or the connection ends."""
        r = self._stream(sid)
        self.read(lambda: r.done, timeout)
        return r

    def wait_settings(self, timeout=None):
        self.read(lambda: self.settings_frames > 0, timeout)
        return self.remote_settings


# ---------------------------------------------------------------------------
# H2Origin
# ---------------------------------------------------------------------------


class H2OriginRequest:
    """What the HTTP/2 origin received on one stream."""

    def __init__(self, conn_id, stream_id):
        self.conn_id = conn_id
        self.stream_id = stream_id
        self.headers: list[tuple[str, str]] = []
        self.body = bytearray()
        self.trailers: list[tuple[str, str]] = []
        self.complete = False       # END_STREAM received
        self.reset_code = None      # the peer reset the stream
        self.received_at = time.monotonic()
        self.response_bytes_sent = 0

    def header(self, name, default=None):
        for n, v in self.headers:
            if n == name:
                return v
        return default

    def trailer(self, name, default=None):
        for n, v in self.trailers:
            if n == name:
                return v
        return default

    @property
    def method(self):
        return self.header(":method")

    @property
    def path(self):
        return urllib.parse.urlsplit(self.header(":path", "")).path

    @property
    def query(self):
        return urllib.parse.urlsplit(self.header(":path", "")).query

    def to_json(self):
        return {"conn_id": self.conn_id, "stream_id": self.stream_id,
                "method": self.method, "path": self.header(":path"),
                "authority": self.header(":authority"), "scheme": self.header(":scheme"),
                "headers": [list(h) for h in self.headers],
                "trailers": [list(t) for t in self.trailers],
                "body": bytes(self.body).decode("utf-8", "replace"),
                "body_len": len(self.body)}

    def __repr__(self):
        return (f"<H2OriginRequest conn={self.conn_id} stream={self.stream_id} {self.method} "
                f"{self.header(':path')} body_len={len(self.body)} complete={self.complete}>")


class H2Reply:
    """An origin answer: status, headers, body (bytes or an iterable of
    chunks; None: the head alone carries END_STREAM, as in gRPC's
    Trailers-Only), trailers (sent as a final HEADERS), delay before the
    head, and reset (an error code: answer with RST_STREAM instead)."""

    def __init__(self, status=200, headers=(), body=b"", trailers=None, delay=0.0, reset=None):
        self.status = status
        self.headers = list(headers)
        self.body = body
        self.trailers = trailers
        self.delay = delay
        self.reset = reset


class _OutStream:
    def __init__(self, req, reply):
        self.req = req
        self.reply = reply
        body = b"" if reply.body is None else reply.body
        self.chunks = iter([body]) if isinstance(body, (bytes, bytearray)) else iter(body)
        self.pending = b""
        self.head_sent = False
        self.done = False


class H2Origin:
    """A threaded h2c (prior knowledge) origin on 127.0.0.1, port 0.

    Behaviour by path (query ?trailers=1 adds response trailers everywhere):
      /echo (and any path not listed)  200, JSON of the request (method, path,
                         authority, headers incl. pseudo-headers, body, trailers)
      /status/N          status N, body "status N"
      /delay/SECONDS     the head waits SECONDS (other streams go on meanwhile)
      /bytes/N           N pattern bytes, flow-controlled
      /reset             RST_STREAM INTERNAL_ERROR instead of an answer
    Response trailers (?trailers=1, or a request header x-want-trailers):
    "x-origin-trailer: done" and, for every request trailer, "x-echo-<name>".
    Custom: origin.handlers["/path"] = fn(H2OriginRequest) -> H2Reply (keys
    ending in "/" match as prefixes). The reply is made once the request's
    END_STREAM arrives.

    connections_accepted counts TCP connections; requests lists complete
    requests, all_requests every stream opened; protocol_errors what h2
    rejected from the peer.
    """

    def __init__(self, name="h2origin", max_concurrent_streams=None):
        self.name = name
        self.handlers = {}
        self.max_concurrent_streams = max_concurrent_streams
        self._lock = threading.Lock()
        self._requests: list[H2OriginRequest] = []
        self._conn_count = 0
        self._open_conns = 0
        self.protocol_errors: list[str] = []
        self.body_bytes_sent = 0
        self._tls = threading.local()    # per connection thread: body bytes not yet written
        self._stop = threading.Event()
        self._socks = set()
        self._threads = []
        self.listener, self.port = listen_loopback()
        self.address = f"{LOOPBACK}:{self.port}"
        self._accept_thread = None

    def start(self):
        self._accept_thread = threading.Thread(target=self._accept_loop, daemon=True,
                                               name=f"{self.name}-accept")
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
        try:
            self.listener.close()
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
        for t in self._threads:
            t.join(2)

    # -- inspection -------------------------------------------------------

    @property
    def requests(self):
        with self._lock:
            return [r for r in self._requests if r.complete]

    @property
    def all_requests(self):
        with self._lock:
            return list(self._requests)

    @property
    def connections_accepted(self):
        with self._lock:
            return self._conn_count

    @property
    def connections_open(self):
        with self._lock:
            return self._open_conns

    def wait_for_requests(self, n, timeout=5.0):
        wait_until(lambda: len(self.requests) >= n, timeout,
                   message=f"{self.name} to receive {n} request(s) (has {len(self.requests)})")
        return self.requests

    # -- serving ----------------------------------------------------------

    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self.listener], [], [], 0.1)
            except (OSError, ValueError):
                return
            if not ready:
                continue
            try:
                sock, _ = self.listener.accept()
            except OSError:
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._conn_count += 1
                self._open_conns += 1
                conn_id = self._conn_count
                self._socks.add(sock)
            t = threading.Thread(target=self._serve, args=(sock, conn_id), daemon=True,
                                 name=f"{self.name}-conn{conn_id}")
            self._threads = [x for x in self._threads if x.is_alive()] + [t]
            t.start()

    def _reply_for(self, req):
        for key, fn in self.handlers.items():
            if req.path == key or (key.endswith("/") and req.path.startswith(key)):
                return fn(req)
        path = req.path
        if path.startswith("/status/"):
            n = int(path.split("/")[2])
            return H2Reply(n, [("content-type", "text/plain")], f"status {n}".encode())
        if path.startswith("/delay/"):
            return H2Reply(200, [("content-type", "text/plain")], b"delayed",
                           delay=float(path.split("/")[2]))
        if path.startswith("/bytes/"):
            n = int(path.split("/")[2])
            return H2Reply(200, [("content-type", "application/octet-stream"),
                                 ("content-length", str(n))],
                           (bytes(c) for c in iter_pattern(n, 16384)))
        if path == "/reset":
            return H2Reply(reset=INTERNAL_ERROR)
        data = req.to_json()
        data["origin"] = self.name
        return H2Reply(200, [("content-type", "application/json")], json.dumps(data).encode())

    def _serve(self, sock, conn_id):
        config = h2.config.H2Configuration(client_side=False, header_encoding=None,
                                           validate_inbound_headers=True)
        conn = h2.connection.H2Connection(config=config)
        if self.max_concurrent_streams is not None:
            conn.local_settings = h2.settings.Settings(
                client=False,
                initial_values={SETTINGS_MAX_CONCURRENT_STREAMS: self.max_concurrent_streams})
        self._tls.unflushed = 0
        streams: dict[int, H2OriginRequest] = {}
        out: dict[int, _OutStream] = {}
        delayed: list[tuple[float, _OutStream]] = []
        try:
            conn.initiate_connection()
            sock.sendall(conn.data_to_send())
            while not self._stop.is_set():
                now = time.monotonic()
                wait = 0.05
                if delayed:
                    wait = max(0.0, min(wait, min(t for t, _ in delayed) - now))
                if any(not o.done and o.head_sent for o in out.values()):
                    wait = min(wait, 0.01)
                ready, _, _ = select.select([sock], [], [], wait)
                if ready:
                    data = sock.recv(1 << 20)
                    if not data:
                        return
                    try:
                        events = conn.receive_data(data)
                    except h2.exceptions.ProtocolError as e:
                        self.protocol_errors.append(repr(e))
                        sock.sendall(conn.data_to_send())
                        return
                    for ev in events:
                        self._on_event(conn, conn_id, ev, streams, out, delayed)
                now = time.monotonic()
                for item in [d for d in delayed if d[0] <= now]:
                    delayed.remove(item)
                    self._start_reply(conn, item[1])
                for sid, o in list(out.items()):
                    if o.head_sent and not o.done:
                        self._pump_body(conn, sid, o)
                    if o.done:
                        del out[sid]
                data = conn.data_to_send()
                if data:
                    sock.settimeout(30.0)
                    sock.sendall(data)
                # Counted once written to the socket, so a stalled peer shows
                # as a plateau.
                with self._lock:
                    self.body_bytes_sent += self._tls.unflushed
                self._tls.unflushed = 0
        except (OSError, h2.exceptions.ProtocolError) as e:
            if not self._stop.is_set() and not isinstance(e, (ConnectionResetError,
                                                              BrokenPipeError)):
                self.protocol_errors.append(repr(e))
        finally:
            with self._lock:
                self._open_conns -= 1
                self._socks.discard(sock)
            try:
                sock.close()
            except OSError:
                pass

    def _on_event(self, conn, conn_id, ev, streams, out, delayed):
        if isinstance(ev, h2.events.RequestReceived):
            req = H2OriginRequest(conn_id, ev.stream_id)
            req.headers = [(_text(n), _text(v)) for n, v in ev.headers]
            streams[ev.stream_id] = req
            with self._lock:
                self._requests.append(req)
            if ev.stream_ended is not None:
                self._request_done(conn, req, out, delayed)
        elif isinstance(ev, h2.events.DataReceived):
            req = streams.get(ev.stream_id)
            if req is not None:
                req.body += ev.data
            conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        elif isinstance(ev, h2.events.TrailersReceived):
            req = streams.get(ev.stream_id)
            if req is not None:
                req.trailers = [(_text(n), _text(v)) for n, v in ev.headers]
                if ev.stream_ended is not None:
                    self._request_done(conn, req, out, delayed)
        elif isinstance(ev, h2.events.StreamEnded):
            req = streams.get(ev.stream_id)
            if req is not None and not req.complete:
                self._request_done(conn, req, out, delayed)
        elif isinstance(ev, h2.events.StreamReset):
            req = streams.get(ev.stream_id)
            if req is not None:
                req.reset_code = int(ev.error_code)
            o = out.pop(ev.stream_id, None)
            if o is not None:
                o.done = True
            for item in [d for d in delayed if d[1].req.stream_id == ev.stream_id]:
                delayed.remove(item)

    def _request_done(self, conn, req, out, delayed):
        req.complete = True
        reply = self._reply_for(req)
        o = _OutStream(req, reply)
        out[req.stream_id] = o
        if reply.delay:
            delayed.append((time.monotonic() + reply.delay, o))
        else:
            self._start_reply(conn, o)

    def _start_reply(self, conn, o):
        sid = o.req.stream_id
        reply = o.reply
        if o.done:
            return
        try:
            if reply.reset is not None:
                conn.reset_stream(sid, reply.reset)
                o.done = True
                return
            headers = [(b":status", str(reply.status).encode())]
            headers += [(_bytes(n).lower(), _bytes(v)) for n, v in reply.headers]
            headers.append((b"x-origin-name", self.name.encode()))
            if reply.body is None:
                conn.send_headers(sid, headers, end_stream=True)
                o.done = True
                return
            conn.send_headers(sid, headers)
            o.head_sent = True
            self._pump_body(conn, sid, o)
        except h2.exceptions.StreamClosedError:
            o.done = True

    def _trailers_for(self, o):
        req, reply = o.req, o.reply
        if reply.trailers is not None:
            return reply.trailers
        wants = "trailers=1" in req.query.split("&") or req.header("x-want-trailers") is not None
        if not wants:
            return None
        return [("x-origin-trailer", "done")] + [(f"x-echo-{n}", v) for n, v in req.trailers]

    def _pump_body(self, conn, sid, o, budget=256 << 10):
        """Moves up to `budget` body bytes into h2 (the caller writes them out
        before the next call), so a wide-open window never means buffering the
        whole body here."""
        try:
            while True:
                if not o.pending:
                    o.pending = next(o.chunks, None)
                    if o.pending is None:
                        trailers = self._trailers_for(o)
                        if trailers:
                            conn.send_headers(sid, [(_bytes(n), _bytes(v)) for n, v in trailers],
                                              end_stream=True)
                        else:
                            conn.end_stream(sid)
                        o.done = True
                        return
                    o.pending = bytes(o.pending)
                    if not o.pending:
                        continue
                window = min(conn.local_flow_control_window(sid), conn.max_outbound_frame_size)
                if window <= 0:
                    return
                if budget <= 0:
                    return
                piece, o.pending = o.pending[:window], o.pending[window:]
                conn.send_data(sid, piece)
                budget -= len(piece)
                o.req.response_bytes_sent += len(piece)
                self._tls.unflushed += len(piece)
        except h2.exceptions.StreamClosedError:
            o.done = True
