#!/usr/bin/python3
"""Writes the seed corpus of http2_server_fuzz (test/fuzz/corpus/http2).

Each file is one fuzz input: a control byte, the owner's 16-byte script
(see http2_server_fuzz.cc), then what a well-behaved client sends, encoded
by the h2 library (python3-h2). Run once with /usr/bin/python3; the
outputs are committed.
"""
import os

import h2.config
import h2.connection
import h2.settings

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "http2")
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Control byte bits (http2_server_fuzz.cc): bit 0 the harness sends the
# preface; bits 1-3 max_concurrent_streams - 1; bit 4 small windows;
# bits 5-6 the read size (1, 9, 100, all); bit 7 a protocol error closes
# at once.
WHOLE = 3 << 5
NINE = 1 << 5
ONE = 0


def client(validate=True):
    conn = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding="utf-8",
                                  validate_outbound_headers=validate,
                                  normalize_outbound_headers=validate))
    conn.initiate_connection()
    return conn


def request(conn, stream_id, method="GET", path="/", end_stream=True, extra=()):
    headers = [(":method", method), (":scheme", "http"), (":authority", "example.com"),
               (":path", path)] + list(extra)
    conn.send_headers(stream_id, headers, end_stream=end_stream)


def frame(kind, flags, stream_id, payload=b""):
    """One raw frame, for what h2 will not send."""
    return (len(payload).to_bytes(3, "big") + bytes([kind, flags]) +
            stream_id.to_bytes(4, "big") + payload)


def write(name, control, script, conn, strip_preface=False, raw=b""):
    data = conn.data_to_send() + raw
    if strip_preface:
        assert data.startswith(PREFACE)
        data = data[len(PREFACE):]
    script = bytes(script)
    assert len(script) == 16
    blob = bytes([control]) + script + data
    assert len(blob) < 2048, name
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(blob)


def main():
    os.makedirs(OUT, exist_ok=True)

    # GET / answered at once with headers only.
    c = client()
    request(c, 1)
    write("get", WHOLE | (7 << 1), [5] * 16, c)

    # POST with a body, read-disabled and resumed, answered with a body.
    c = client()
    request(c, 1, "POST", "/upload", end_stream=False, extra=[("content-length", "5")])
    c.send_data(1, b"hello", end_stream=True)
    write("post_body", NINE | (7 << 1), [11, 12, 0, 3, 8, 4, 6, 8] * 2, c)

    # The same, the harness sending the preface, one byte per read, small windows.
    c = client()
    request(c, 1, "POST", "/upload", end_stream=False, extra=[("content-length", "5")])
    c.send_data(1, b"hello", end_stream=True)
    write("post_body_bytewise", 1 | ONE | 0x10 | (7 << 1), [4, 7, 11, 3, 12, 15] + [0] * 10, c,
          strip_preface=True)

    # A request with trailers, answered with headers, data and trailers.
    c = client()
    request(c, 1, "POST", "/rpc", end_stream=False, extra=[("te", "trailers")])
    c.send_data(1, b"abc", end_stream=False)
    c.send_headers(1, [("grpc-timeout", "1S")], end_stream=True)
    write("trailers", WHOLE | (7 << 1), [0, 0, 0, 0, 9] * 3 + [0], c)

    # Two streams; the client resets the second, pings and goes away.
    c = client()
    request(c, 1)
    request(c, 3, "POST", "/b", end_stream=False)
    c.send_data(3, b"x" * 10, end_stream=False)
    c.reset_stream(3)
    c.ping(b"12345678")
    c.close_connection()
    write("rst_ping_goaway", NINE | (3 << 1), [0, 4, 6, 10, 13, 2, 3, 8] * 2, c)

    # Settings changes, a window update, a ping, a drain from the server.
    c = client()
    c.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 100,
                       h2.settings.SettingCodes.MAX_FRAME_SIZE: 16384})
    request(c, 1, "GET", "/big")
    c.increment_flow_control_window(1000)
    c.ping(b"abcdefgh")
    write("settings_window_drain", NINE | (7 << 1), [0, 1, 7, 4, 4, 12, 2, 3] * 2, c)

    # CONNECT: answered 501 by the codec, never handed up.
    c = client(validate=False)  # h2 does not know plain CONNECT
    c.send_headers(1, [(":method", "CONNECT"), (":authority", "example.com:443")],
                   end_stream=False)
    write("connect", WHOLE | (7 << 1), [4] * 16, c)

    # A body shorter than its content-length, then a field name in capitals
    # and a connection-specific field (both malformed in HTTP/2).
    c = client(validate=False)
    request(c, 1, "POST", "/", end_stream=False, extra=[("content-length", "10")])
    c.send_data(1, b"abc", end_stream=True)
    request(c, 3, extra=[("X-Upper", "1")])
    request(c, 5, extra=[("connection", "close")])
    write("malformed", WHOLE | (7 << 1), [0] * 16, c)

    # A header list over the 4096-byte limit (one field, then indexed
    # again and again, so that the file stays small).
    c = client()
    request(c, 1, extra=[("x-big", "v" * 1000)] * 5)
    write("header_overflow", WHOLE | (7 << 1), [4] * 16, c)

    # Rapid reset: requests each cancelled at once, over the burst of 8.
    c = client()
    for i in range(12):
        request(c, 1 + 2 * i, end_stream=False)
        c.reset_stream(1 + 2 * i)
    write("rapid_reset", NINE | (7 << 1), [0, 0, 4, 0] * 4, c)

    # Empty DATA frames, over the limit of 4.
    c = client()
    request(c, 1, "POST", "/", end_stream=False)
    write("empty_data_flood", WHOLE | (7 << 1), [0] * 16, c,
          raw=b"".join(frame(0, 0, 1) for _ in range(6)))

    # PINGs while the connection's write buffer is over its watermark.
    c = client()
    write("ping_flood", NINE | (7 << 1), [0, 6, 6, 6] * 4, c,
          raw=b"".join(frame(6, 0, 0, bytes([i] * 8)) for i in range(24)))


if __name__ == "__main__":
    main()
