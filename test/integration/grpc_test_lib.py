"""gRPC helpers for Portway's integration tests (python3-grpcio, python3-grpc-tools,
grpc-proto).

- generate_stubs(dir): runs grpc_tools.protoc on grpc.testing (test, messages,
  empty) and grpc.health.v1 from /usr/share/grpc-proto into `dir` and returns
  a namespace with the modules (test_pb2, test_pb2_grpc, messages_pb2,
  empty_pb2, health_pb2, health_pb2_grpc). The generated packages live under
  the name `grpc`, which is also grpcio's own package, so the output directory
  is added to grpc.__path__ rather than to sys.path.
- GrpcTestServer: a grpc.server (thread pool) on 127.0.0.1:0 implementing
  grpc.testing.TestService and grpc.health.v1.Health; see its docstring for
  what each method does and what it records.
- channel(port): an insecure channel (HTTP/2 prior knowledge) with 16 MiB
  message limits.

Nothing here listens beyond 127.0.0.1.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import types
from concurrent import futures
from pathlib import Path

import grpc

GRPC_PROTO_ROOT = "/usr/share/grpc-proto"
PROTOS = ["grpc/testing/test.proto", "grpc/testing/messages.proto", "grpc/testing/empty.proto",
          "grpc/health/v1/health.proto"]
MAX_MESSAGE = 16 << 20
MESSAGE_OPTIONS = [("grpc.max_receive_message_length", MAX_MESSAGE),
                   ("grpc.max_send_message_length", MAX_MESSAGE)]

# Interop-test metadata keys: echoed into the response's initial / trailing metadata.
ECHO_INITIAL_KEY = "x-grpc-test-echo-initial"
ECHO_TRAILING_KEY = "x-grpc-test-echo-trailing-bin"
# Makes a handler sleep this many milliseconds first, watching for cancellation.
SLEEP_MS_KEY = "x-sleep-ms"


def generate_stubs(out_dir):
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = ["/usr/bin/python3", "-m", "grpc_tools.protoc", f"-I{GRPC_PROTO_ROOT}",
           f"--python_out={out_dir}", f"--grpc_python_out={out_dir}"] + PROTOS
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"protoc failed ({proc.returncode}): {proc.stderr}")
    pkg = str(out_dir / "grpc")
    if pkg not in grpc.__path__:
        grpc.__path__.append(pkg)
    from grpc.health.v1 import health_pb2, health_pb2_grpc  # noqa: E402
    from grpc.testing import empty_pb2, messages_pb2, test_pb2, test_pb2_grpc  # noqa: E402
    return types.SimpleNamespace(test_pb2=test_pb2, test_pb2_grpc=test_pb2_grpc,
                                 messages_pb2=messages_pb2, empty_pb2=empty_pb2,
                                 health_pb2=health_pb2, health_pb2_grpc=health_pb2_grpc)


def channel(port, host="127.0.0.1", options=()):
    return grpc.insecure_channel(f"{host}:{port}", options=MESSAGE_OPTIONS + list(options))


class CallRecord:
    """One call as the server saw it."""

    def __init__(self, method, context):
        self.method = method
        self.metadata = [(k, v) for k, v in context.invocation_metadata()]
        self.time_remaining = context.time_remaining()   # None without a deadline
        self.started_at = time.monotonic()
        self.cancelled_at = None     # when the call ended before its handler finished
        self.finished = False
        self.messages_sent = 0
        self.messages_received = 0

    def meta(self, key, default=None):
        for k, v in self.metadata:
            if k == key:
                return v
        return default

    def __repr__(self):
        return (f"<CallRecord {self.method} remaining={self.time_remaining} "
                f"cancelled_at={self.cancelled_at} sent={self.messages_sent}>")


class GrpcTestServer:
    """grpc.testing.TestService + grpc.health.v1.Health on 127.0.0.1:0.

      EmptyCall            Empty
      UnaryCall            payload of response_size zero bytes; response_status
                           (EchoStatus) set -> that status and message
      StreamingOutputCall  one response per response_parameters (size, waiting
                           interval_us before each, noticing cancellation)
      StreamingInputCall   aggregated_payload_size of the request stream
      FullDuplexCall       per request, its response_parameters, as they arrive;
                           response_status ends the call with that status
      Health.Check         SERVING for "" and "grpc.testing.TestService",
                           NOT_FOUND for anything else
    Every method: metadata x-grpc-test-echo-initial is sent back in the
    initial metadata, x-grpc-test-echo-trailing-bin in the trailing metadata;
    x-sleep-ms: N sleeps N ms first (stopping early if the call ends).
    fail_with=grpc.StatusCode.X makes every TestService call fail at once
    with X (no message, no initial metadata: a Trailers-Only response).

    calls: every CallRecord, in order of arrival.
    tls=(cert_pem, key_pem): serve TLS (ALPN h2) instead of h2c.
    """

    def __init__(self, stubs, name="grpc-server", fail_with=None, workers=32, tls=None):
        self.stubs = stubs
        self.name = name
        self.fail_with = fail_with
        self.calls: list[CallRecord] = []
        self._lock = threading.Lock()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers),
                                  options=MESSAGE_OPTIONS)
        self._add_services()
        if tls is not None:
            cert_pem, key_pem = tls
            credentials = grpc.ssl_server_credentials([(key_pem.encode(), cert_pem.encode())])
            self.port = self.server.add_secure_port("127.0.0.1:0", credentials)
        else:
            self.port = self.server.add_insecure_port("127.0.0.1:0")
        if not self.port:
            raise RuntimeError("could not bind the gRPC test server")
        self.address = f"127.0.0.1:{self.port}"

    def start(self):
        self.server.start()
        return self

    def stop(self):
        self.server.stop(grace=0).wait(5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def calls_to(self, method):
        with self._lock:
            return [c for c in self.calls if c.method == method]

    # -- plumbing ------------------------------------------------------------

    def _begin(self, method, context):
        rec = CallRecord(method, context)
        with self._lock:
            self.calls.append(rec)

        def on_termination():
            # A streaming handler parked at a yield never runs again once its
            # call is cancelled; grpc still calls this.
            if not rec.finished and rec.cancelled_at is None and self.fail_with is None:
                rec.cancelled_at = time.monotonic()

        context.add_callback(on_termination)
        if self.fail_with is not None and method != "Health.Check":
            context.abort(self.fail_with, "")
        md = dict(context.invocation_metadata())
        if ECHO_INITIAL_KEY in md:
            context.send_initial_metadata([(ECHO_INITIAL_KEY, md[ECHO_INITIAL_KEY])])
        if ECHO_TRAILING_KEY in md:
            context.set_trailing_metadata([(ECHO_TRAILING_KEY, md[ECHO_TRAILING_KEY])])
        if SLEEP_MS_KEY in md:
            if not self._sleep(context, rec, int(md[SLEEP_MS_KEY]) / 1000.0):
                return rec, False
        return rec, True

    @staticmethod
    def _sleep(context, rec, seconds):
        """Sleeps; returns False (recording when) if the call stops being active."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if not context.is_active():
                rec.cancelled_at = time.monotonic()
                return False
            time.sleep(0.01)
        return True

    def _payload(self, size):
        m = self.stubs.messages_pb2
        return m.Payload(type=m.COMPRESSABLE, body=b"\0" * size)

    @staticmethod
    def _maybe_status(context, status):
        if status is not None and status.code != 0:
            context.abort(status_code(status.code), status.message)

    def _add_services(self):
        srv = self
        s = self.stubs

        class TestService(s.test_pb2_grpc.TestServiceServicer):
            def EmptyCall(self, request, context):
                rec, ok = srv._begin("EmptyCall", context)
                rec.finished = ok
                return s.empty_pb2.Empty()

            def UnaryCall(self, request, context):
                rec, ok = srv._begin("UnaryCall", context)
                if not ok:
                    return s.messages_pb2.SimpleResponse()
                if request.HasField("response_status"):
                    srv._maybe_status(context, request.response_status)
                rec.finished = True
                return s.messages_pb2.SimpleResponse(payload=srv._payload(request.response_size))

            def StreamingOutputCall(self, request, context):
                rec, ok = srv._begin("StreamingOutputCall", context)
                if not ok:
                    return
                for p in request.response_parameters:
                    if p.interval_us and not srv._sleep(context, rec, p.interval_us / 1e6):
                        return
                    if not context.is_active():
                        rec.cancelled_at = rec.cancelled_at or time.monotonic()
                        return
                    yield s.messages_pb2.StreamingOutputCallResponse(payload=srv._payload(p.size))
                    rec.messages_sent += 1
                if request.HasField("response_status"):
                    srv._maybe_status(context, request.response_status)
                rec.finished = True

            def StreamingInputCall(self, request_iterator, context):
                rec, ok = srv._begin("StreamingInputCall", context)
                total = 0
                for req in request_iterator:
                    rec.messages_received += 1
                    total += len(req.payload.body)
                rec.finished = ok
                return s.messages_pb2.StreamingInputCallResponse(aggregated_payload_size=total)

            def FullDuplexCall(self, request_iterator, context):
                rec, ok = srv._begin("FullDuplexCall", context)
                if not ok:
                    return
                for req in request_iterator:
                    rec.messages_received += 1
                    if req.HasField("response_status"):
                        srv._maybe_status(context, req.response_status)
                    for p in req.response_parameters:
                        if p.interval_us and not srv._sleep(context, rec, p.interval_us / 1e6):
                            return
                        yield s.messages_pb2.StreamingOutputCallResponse(
                            payload=srv._payload(p.size))
                        rec.messages_sent += 1
                rec.finished = True

        class Health(s.health_pb2_grpc.HealthServicer):
            def Check(self, request, context):
                srv._begin("Health.Check", context)
                if request.service in ("", "grpc.testing.TestService"):
                    return s.health_pb2.HealthCheckResponse(
                        status=s.health_pb2.HealthCheckResponse.SERVING)
                context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service}")

        s.test_pb2_grpc.add_TestServiceServicer_to_server(TestService(), self.server)
        s.health_pb2_grpc.add_HealthServicer_to_server(Health(), self.server)


def status_code(code):
    """The grpc.StatusCode whose number is `code`."""
    for sc in grpc.StatusCode:
        if sc.value[0] == code:
            return sc
    raise ValueError(f"unknown gRPC status code {code}")


class PingPong:
    """A request iterator for bidi calls whose next message is handed in by
    the test (put()), so the test can wait for each answer before sending on."""

    _END = object()

    def __init__(self):
        self._cv = threading.Condition()
        self._items = []

    def put(self, item):
        with self._cv:
            self._items.append(item)
            self._cv.notify()

    def close(self):
        self.put(self._END)

    def __iter__(self):
        return self

    def __next__(self):
        with self._cv:
            if not self._cv.wait_for(lambda: self._items, timeout=30):
                raise StopIteration
            item = self._items.pop(0)
        if item is self._END:
            raise StopIteration
        return item


def grpc_frame(message_bytes, compressed=False):
    """A length-prefixed gRPC message (for raw HTTP/2 clients)."""
    return bytes([1 if compressed else 0]) + len(message_bytes).to_bytes(4, "big") + message_bytes


GRPC_REQUEST_HEADERS = [("content-type", "application/grpc"), ("te", "trailers")]


def _self_check():
    """python3 grpc_test_lib.py: generate, serve, call once (no gateway)."""
    import tempfile
    stubs = generate_stubs(tempfile.mkdtemp(prefix="portway-grpc-stubs-"))
    with GrpcTestServer(stubs) as srv, channel(srv.port) as ch:
        stub = stubs.test_pb2_grpc.TestServiceStub(ch)
        stub.EmptyCall(stubs.empty_pb2.Empty(), timeout=5)
    print("ok", srv.calls)


if __name__ == "__main__":
    sys.exit(_self_check())
