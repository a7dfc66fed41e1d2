// Stream-oriented codec interfaces. A codec turns connection bytes into
// streams of headers, body and trailers and back. HTTP/1.1 has at most one
// active stream per connection; HTTP/2 will have many. The connection
// manager and the router talk only to these interfaces, so HTTP/2 plugs in
// without touching them.
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

enum class StreamResetReason {
  kConnectionTermination,  // the connection closed under the stream
  kLocalReset,             // we gave up on it (timeout, error)
  kProtocolError,          // the peer broke the protocol
  kOverflow,               // a limit was exceeded
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
  // `error.status`; the connection is closed after that response.
  virtual void OnProtocolError(const CodecError& error, ResponseEncoder* encoder) = 0;
};

class ServerConnection {
 public:
  virtual ~ServerConnection() = default;
  // Consumes what it can of `data`.
  virtual void Dispatch(Buffer& data) = 0;
  // The peer half-closed.
  virtual void OnEof() = 0;
  // No stream is active and none half-parsed: the connection may be
  // closed without cutting anything off.
  virtual bool Idle() const = 0;
  // True once the codec decided the connection must close after the
  // current response (Connection: close, HTTP/1.0, protocol error).
  virtual bool WantsClose() const = 0;
};

class ClientConnectionCallbacks {
 public:
  virtual ~ClientConnectionCallbacks() = default;
  // The exchange on the current stream is complete in both directions.
  virtual void OnStreamComplete(bool reusable) = 0;
};

class ClientConnection {
 public:
  virtual ~ClientConnection() = default;
  virtual RequestEncoder& NewStream(ResponseDecoder& decoder) = 0;
  virtual void Dispatch(Buffer& data) = 0;
  // The upstream closed (EOF or error). Ends a read-until-close body
  // cleanly, or resets the active stream.
  virtual void OnConnectionClose(bool clean_eof) = 0;
  virtual bool Busy() const = 0;
};

}  // namespace portway::http
