// HTTP/1.1 codecs over one TCP connection: the server side (downstream) and
// the client side (upstream), both on Portway's own strict parser.
//
// Thread safety: one worker thread.
//
// Pipelining: requests are answered strictly in order. Once a request is
// fully read the server codec pauses reading; bytes of the next request
// wait in the connection's buffer and are parsed when the response is done.
#pragma once

#include <memory>

#include "core/event/dispatcher.h"
#include "core/http/codec.h"
#include "core/http/http1/parser.h"

namespace portway::http::http1 {

using portway::http1::BodyDecoder;
using portway::http1::HeadParser;
using portway::http1::Limits;

struct ServerOptions {
  Limits limits;
  // Bytes a stream may have queued toward the peer before it is asked to
  // pause (the stream's high watermark).
  size_t buffer_limit = 65536;
  uint64_t max_request_body_bytes = 0;  // 0 = unlimited
};

class ServerConnectionImpl final : public ServerConnection, public Stream, public ResponseEncoder {
 public:
  ServerConnectionImpl(event::Connection& connection, ServerConnectionCallbacks& callbacks,
                       const ServerOptions& options);

  // ServerConnection
  Protocol protocol() const override { return http10_ ? Protocol::kHttp10 : Protocol::kHttp11; }
  void Dispatch(Buffer& data) override;
  void OnEof() override;
  bool Idle() const override { return state_ == State::kHead && !head_started_; }
  bool WantsClose() const override { return !keep_alive_; }
  void StartDrain() override { keep_alive_ = false; }
  void OnConnectionClosed() override;
  void OnAboveWriteBufferHighWatermark() override;
  void OnBelowWriteBufferLowWatermark() override;
  bool ResetNeedsClose() const override { return response_close_delimited_; }

  // ResponseEncoder
  void Encode100Continue() override;
  void EncodeHeaders(const HeaderMap& headers, bool end_stream) override;
  void EncodeData(Buffer& data, bool end_stream) override;
  void EncodeTrailers(const HeaderMap& trailers) override;
  Stream& GetStream() override { return *this; }
  void CloseAfterResponse() override { keep_alive_ = false; }

  // Stream
  void AddCallbacks(StreamCallbacks& callbacks) override {
    stream_callbacks_ = &callbacks;
    // A stream that starts on a connection already over its limit must
    // know, or it would never pause its source.
    if (above_high_) callbacks.OnAboveWriteBufferHighWatermark();
  }
  void RemoveCallbacks(StreamCallbacks& callbacks) override {
    if (stream_callbacks_ == &callbacks) stream_callbacks_ = nullptr;
  }
  void ResetStream(StreamResetReason reason) override;
  void ReadDisable(bool disable) override { connection_.ReadDisable(disable); }
  size_t BufferLimit() const override { return options_.buffer_limit; }

  bool ResponseStarted() const { return response_started_; }

 private:
  enum class State { kHead, kBody, kAwaitResponse, kClosed };

  // True when it consumed a head (or failed on one); false: needs more.
  bool DispatchHead(Buffer& data);
  void DispatchBody(Buffer& data);
  void ProtocolError(portway::http1::ParseError error);
  void ProtocolError(int status, std::string cause);
  void OnResponseComplete();

  // Parser state exists only while a request is being read or answered:
  // an idle keep-alive connection does not carry ~200 bytes of it.
  // A worker keeps the parsers of finished requests for the next ones (the
  // field vector keeps its capacity): no allocation per request for them.
  struct Parsers {
    explicit Parsers(const Limits& limits) : head(limits), body(limits) {}
    HeadParser head;
    BodyDecoder body;
  };
  struct ReleaseParsers {
    void operator()(Parsers* parsers) const;
  };
  using ParsersPtr = std::unique_ptr<Parsers, ReleaseParsers>;
  static ParsersPtr AcquireParsers(const Limits& limits);
  static std::vector<std::unique_ptr<Parsers>>& ParsersPool();

  event::Connection& connection_;
  ServerConnectionCallbacks& callbacks_;
  const ServerOptions options_;
  ParsersPtr parsers_;
  RequestDecoder* decoder_ = nullptr;
  StreamCallbacks* stream_callbacks_ = nullptr;
  State state_ = State::kHead;
  bool head_started_ = false;
  bool keep_alive_ = true;
  bool request_complete_ = false;
  bool response_started_ = false;
  bool response_chunked_ = false;
  bool response_no_body_ = false;
  bool response_close_delimited_ = false;
  bool request_is_head_ = false;
  bool above_high_ = false;         // the connection's write buffer is over its limit
  bool paused_for_output_ = false;  // reading paused until the client drains
  bool http10_ = false;
  bool read_paused_ = false;
  uint64_t body_received_ = 0;
};

class ClientConnectionImpl final : public ClientConnection, public Stream, public RequestEncoder {
 public:
  ClientConnectionImpl(event::Connection& connection, ClientConnectionCallbacks& callbacks,
                       const Limits& limits, size_t buffer_limit);

  // ClientConnection
  Protocol protocol() const override { return Protocol::kHttp11; }
  RequestEncoder& NewStream(ResponseDecoder& decoder) override;
  void Dispatch(Buffer& data) override;
  void OnConnectionClose(bool clean_eof, std::string_view transport_failure) override;
  uint32_t ActiveStreams() const override { return decoder_ != nullptr ? 1 : 0; }
  uint32_t StreamCapacity() const override { return keep_alive_ ? 1 : 0; }

  // RequestEncoder
  void EncodeHeaders(const HeaderMap& headers, bool end_stream) override;
  void EncodeData(Buffer& data, bool end_stream) override;
  void EncodeTrailers(const HeaderMap& trailers) override;
  Stream& GetStream() override { return *this; }

  // Stream
  void AddCallbacks(StreamCallbacks& callbacks) override {
    stream_callbacks_ = &callbacks;
    if (above_high_) callbacks.OnAboveWriteBufferHighWatermark();
  }
  void RemoveCallbacks(StreamCallbacks& callbacks) override {
    if (stream_callbacks_ == &callbacks) stream_callbacks_ = nullptr;
  }
  void ResetStream(StreamResetReason reason) override;
  void ReadDisable(bool disable) override { connection_.ReadDisable(disable); }
  size_t BufferLimit() const override { return buffer_limit_; }

  void OnAboveWriteBufferHighWatermark() override {
    above_high_ = true;
    if (stream_callbacks_) stream_callbacks_->OnAboveWriteBufferHighWatermark();
  }
  void OnBelowWriteBufferLowWatermark() override {
    above_high_ = false;
    if (stream_callbacks_) stream_callbacks_->OnBelowWriteBufferLowWatermark();
  }

 private:
  enum class State { kIdle, kHead, kBody, kDone };
  void Fail(StreamResetReason reason, std::string_view detail);
  void MaybeComplete();

  event::Connection& connection_;
  ClientConnectionCallbacks& callbacks_;
  const size_t buffer_limit_;
  Limits limits_;
  HeadParser head_parser_;
  BodyDecoder body_decoder_;
  ResponseDecoder* decoder_ = nullptr;
  StreamCallbacks* stream_callbacks_ = nullptr;
  State state_ = State::kIdle;
  std::string method_;
  bool request_chunked_ = false;
  bool request_complete_ = false;
  bool response_complete_ = false;
  bool keep_alive_ = true;
  bool above_high_ = false;
};

}  // namespace portway::http::http1
