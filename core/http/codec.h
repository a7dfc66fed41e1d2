// Stream-oriented codec interfaces. A codec turns connection bytes into
// streams of headers, body and trailers and back. HTTP/1.1 has at most one
// active stream per connection; HTTP/2 has many. The connection manager,
// the pools and the router talk only to these interfaces: which protocol a
// connection speaks is decided once, when its codec is made.
//
// Thread safety: a codec and its streams belong to one worker thread.
//
// Downstream (server) side:
//   ServerConnection::Dispatch(bytes)
//     -> ServerConnectionCallbacks::NewStream(ResponseEncoder&) returns a RequestDecoder
//     -> RequestDecoder::DecodeHeaders / DecodeData / DecodeTrailers
//   the connection manager answers through ResponseEncoder::Encode*.
// Upstream (client) side:
//   ClientConnection::NewStream(ResponseDecoder&) returns a RequestEncoder
//   ClientConnection::Dispatch(bytes) -> ResponseDecoder::Decode*.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "portway/buffer.h"
#include "portway/headers.h"

namespace portway::http {

enum class Protocol { kHttp10, kHttp11, kHttp2 };
// "HTTP/1.0", "HTTP/1.1", "HTTP/2" (access log, StreamInfo).
const char* ProtocolName(Protocol protocol);

enum class StreamResetReason {
  kConnectionTermination,  // the connection closed under the stream
  kLocalReset,             // we gave up on it (timeout, error)
  kProtocolError,          // the peer broke the protocol
  kOverflow,               // a limit was exceeded
  kRemoteReset,            // the peer reset the stream (HTTP/2 RST_STREAM)
  // The peer did not process the stream (HTTP/2 REFUSED_STREAM): nothing
  // of the request was acted on, so it is always safe to send it again.
  kRefusedStream,
  // The peer's GOAWAY left the stream unprocessed (its id was above the
  // last stream id): as safe to retry as a refused stream.
  kGoAway,
  // The connection's transport failed under the stream before the peer
  // processed anything: a TLS 1.3 server rejecting the client certificate
  // after the client's side of the handshake was done. Detail: why.
  kTransportFailure,
};
const char* StreamResetReasonName(StreamResetReason reason);

class StreamCallbacks {
 public:
  virtual ~StreamCallbacks() = default;
  // The stream is gone; nothing more will be decoded or encoded on it.
  virtual void OnResetStream(StreamResetReason reason, std::string_view detail) = 0;
  // Flow control: the peer is not draining what we encode.
  virtual void OnAboveWriteBufferHighWatermark() {}
  virtual void OnBelowWriteBufferLowWatermark() {}
};

class Stream {
 public:
  virtual ~Stream() = default;
  virtual void AddCallbacks(StreamCallbacks& callbacks) = 0;
  virtual void RemoveCallbacks(StreamCallbacks& callbacks) = 0;
  virtual void ResetStream(StreamResetReason reason) = 0;
  // Stops or resumes decoding more of this stream's body (back-pressure to
  // the peer). Calls nest.
  virtual void ReadDisable(bool disable) = 0;
  virtual size_t BufferLimit() const = 0;
};

class ResponseEncoder {
 public:
  virtual ~ResponseEncoder() = default;
  virtual void Encode100Continue() = 0;
  virtual void EncodeHeaders(const HeaderMap& headers, bool end_stream) = 0;
  virtual void EncodeData(Buffer& data, bool end_stream) = 0;
  virtual void EncodeTrailers(const HeaderMap& trailers) = 0;
  virtual Stream& GetStream() = 0;
  // Ask the codec to close the connection once this response is done
  // (HTTP/1: adds Connection: close). Used while draining.
  virtual void CloseAfterResponse() = 0;
  // The owner is done with the stream (it may be freed next): the codec
  // makes no further call on its RequestDecoder, and drops what more of the
  // request arrives. An HTTP/2 stream outlives its owner until its
  // response has gone out under the peer's flow control.
  virtual void DetachDecoder() {}
};

class RequestEncoder {
 public:
  virtual ~RequestEncoder() = default;
  virtual void EncodeHeaders(const HeaderMap& headers, bool end_stream) = 0;
  virtual void EncodeData(Buffer& data, bool end_stream) = 0;
  virtual void EncodeTrailers(const HeaderMap& trailers) = 0;
  virtual Stream& GetStream() = 0;
};

class RequestDecoder {
 public:
  virtual ~RequestDecoder() = default;
  virtual void DecodeHeaders(HeaderMapPtr headers, bool end_stream) = 0;
  virtual void DecodeData(Buffer& data, bool end_stream) = 0;
  virtual void DecodeTrailers(HeaderMapPtr trailers) = 0;
};

class ResponseDecoder {
 public:
  virtual ~ResponseDecoder() = default;
  virtual void DecodeHeaders(HeaderMapPtr headers, bool end_stream) = 0;
  virtual void DecodeData(Buffer& data, bool end_stream) = 0;
  virtual void DecodeTrailers(HeaderMapPtr trailers) = 0;
};

// A codec error: what to answer (server side) and the taxonomy cause.
struct CodecError {
  int status = 0;     // 0: no error
  std::string cause;  // e.g. invalid_content_length
  bool ok() const { return status == 0; }
};

class ServerConnectionCallbacks {
 public:
  virtual ~ServerConnectionCallbacks() = default;
  virtual RequestDecoder& NewStream(ResponseEncoder& encoder) = 0;
  // The request could not be parsed. If `encoder` is non-null, no response
  // was started for it yet and the owner should answer on it with
  // `error.status`; the connection is closed after that response. With a
  // null encoder the connection itself is broken (an HTTP/2 connection
  // error, after the codec sent GOAWAY): the owner closes it.
  virtual void OnProtocolError(const CodecError& error, ResponseEncoder* encoder) = 0;
  // HasPendingOutput() turned false.
  virtual void OnCodecIdle() {}
};

class ServerConnection {
 public:
  virtual ~ServerConnection() = default;
  virtual Protocol protocol() const = 0;
  // Consumes what it can of `data`.
  virtual void Dispatch(Buffer& data) = 0;
  // The peer half-closed.
  virtual void OnEof() = 0;
  // No stream is active and none half-parsed: the connection may be
  // closed without cutting anything off.
  virtual bool Idle() const = 0;
  // True once the codec decided the connection must close when its
  // streams are done (Connection: close, HTTP/1.0, a GOAWAY either way, a
  // protocol error).
  virtual bool WantsClose() const = 0;
  // Drain: HTTP/1 closes after the current response; HTTP/2 sends GOAWAY
  // and lets the streams it already took finish.
  virtual void StartDrain() = 0;
  // The connection closed: every active stream is reset.
  virtual void OnConnectionClosed() = 0;
  // Watermarks of the connection's write buffer.
  virtual void OnAboveWriteBufferHighWatermark() = 0;
  virtual void OnBelowWriteBufferLowWatermark() = 0;
  // A reset stream must close the whole connection to be seen as cut off
  // (an HTTP/1 response delimited by the close).
  virtual bool ResetNeedsClose() const { return false; }
  // Responses whose owners are done but whose bytes wait for the peer's
  // flow control (HTTP/2): closing now would cut them off. The codec calls
  // ServerConnectionCallbacks::OnCodecIdle when the last one is out.
  virtual bool HasPendingOutput() const { return false; }
  // The owner is about to close the connection on purpose (idle, drained):
  // HTTP/2 sends its final GOAWAY naming the last stream it took.
  virtual void Shutdown() {}
};

class ClientConnectionCallbacks {
 public:
  virtual ~ClientConnectionCallbacks() = default;
  // A stream ended: complete in both directions, or reset while the
  // connection stays open. `reusable` is false when the connection must
  // carry no further stream (HTTP/1 Connection: close, a GOAWAY); the
  // owner then closes it once no stream is left on it.
  virtual void OnStreamDone(bool reusable) = 0;
  // How many streams the connection takes changed (HTTP/2 SETTINGS, or a
  // GOAWAY making it 0): the owner may start waiting requests on it.
  virtual void OnCapacityChanged() {}
};

class ClientConnection {
 public:
  virtual ~ClientConnection() = default;
  virtual Protocol protocol() const = 0;
  // The transport is connected: a codec with a connection preface sends it.
  virtual void OnConnected() {}
  // Starts a stream; only while ActiveStreams() < StreamCapacity().
  virtual RequestEncoder& NewStream(ResponseDecoder& decoder) = 0;
  virtual void Dispatch(Buffer& data) = 0;
  // The upstream closed (EOF or error). Ends a read-until-close body
  // cleanly, or resets the active streams; with a `transport_failure`
  // (the TLS handshake failed late), as kTransportFailure with that detail.
  virtual void OnConnectionClose(bool clean_eof, std::string_view transport_failure) = 0;
  // Streams started and not yet done.
  virtual uint32_t ActiveStreams() const = 0;
  // Streams it may carry at once: 1 for HTTP/1; for HTTP/2 the peer's
  // SETTINGS_MAX_CONCURRENT_STREAMS capped by our own limit, 0 once either
  // side sent GOAWAY.
  virtual uint32_t StreamCapacity() const = 0;
  // Asks the peer for no more streams (HTTP/2 GOAWAY); streams in flight
  // finish. HTTP/1 has nothing to say.
  virtual void GoAway() {}
  // Watermarks of the connection's write buffer.
  virtual void OnAboveWriteBufferHighWatermark() = 0;
  virtual void OnBelowWriteBufferLowWatermark() = 0;
};

}  // namespace portway::http
