// HTTP/2 codecs over one TCP connection, on nghttp2: the server side
// (downstream, many request streams per connection) and the client side
// (upstream, many requests multiplexed on one pooled connection). Both
// implement the protocol-neutral interfaces of core/http/codec.h.
//
// Thread safety: a codec, its session and its streams belong to one worker
// thread.
//
//   ServerConnectionImpl codec(dispatcher, connection, callbacks, Options(), &stats);
//   codec.Dispatch(bytes);   // preface included; NewStream() per request
//
// Re-entrancy. nghttp2 calls back while it parses (Dispatch) and while it
// serializes (every flush). From those callbacks the codec calls the
// streams' decoders and StreamCallbacks directly, and they may call back
// into the codec (encode, reset, read-disable); those only queue work in
// nghttp2, and the output is flushed once nghttp2 has returned. What may
// destroy the codec (ServerConnectionCallbacks::OnProtocolError,
// ClientConnectionCallbacks::OnStreamDone / OnCapacityChanged) is never
// called from inside nghttp2: it is queued and run last, when the public
// entry point (Dispatch, Encode*, ResetStream, ...) is about to return, and
// the codec touches nothing of itself after such a call may have destroyed
// it. Streams are destroyed through Dispatcher::DeferredDelete, so an owner
// may still call a stream that just ended until its callback stack unwinds;
// calls on an ended stream do nothing.
//
// Flow control. Received DATA is acknowledged (WINDOW_UPDATE) on the
// connection as soon as it arrives, and on the stream only once it was
// handed to the stream's decoder. While a stream is read-disabled its DATA
// is held, unacknowledged, so the peer stops at the stream window: a slow
// consumer costs at most one stream window of memory. Sent DATA is
// buffered per stream and pulled by nghttp2 as the peer's windows allow;
// over Options::stream_buffer_limit unsent bytes the stream's callbacks get
// OnAboveWriteBufferHighWatermark, and OnBelow... once under half of it.
// While the connection's own write buffer is over its high watermark the
// codec pulls nothing from nghttp2 (control frames included: nghttp2's
// outbound-ack limit then catches a peer that floods PINGs or SETTINGS and
// never reads).
#pragma once

#include <nghttp2/nghttp2.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <string>
#include <vector>

#include "core/event/dispatcher.h"
#include "core/http/codec.h"
#include "core/http/http2/options.h"
#include "portway/block_allocator.h"
#include "portway/stats.h"

namespace portway::http::http2 {

class StreamImpl;

// What both sides share: the nghttp2 session, its options and callbacks,
// the streams, flushing and the abuse limits. Not used on its own.
class SessionBase {
 public:
  SessionBase(const SessionBase&) = delete;
  SessionBase& operator=(const SessionBase&) = delete;

 protected:
  SessionBase(event::Dispatcher& dispatcher, event::Connection& connection, const Options& options,
              Http2Stats* stats, bool server);
  virtual ~SessionBase();

  // Serializes what nghttp2 has queued and writes it, then runs the owner
  // events queued meanwhile. The last call of every public entry point:
  // the owner may destroy the codec in those events.
  void Flush();
  // With Options::coalesce_writes: Flush() at the end of this loop turn, so
  // responses finished in the same turn go out in one write; else Flush().
  void FlushSoon();
  // Feeds bytes to nghttp2; a connection error ends the session.
  void Receive(Buffer& data);
  // Queues a call into the owner, run at the end of the next Flush().
  void QueueOwnerEvent(std::function<void()> event) { owner_events_.push_back(std::move(event)); }
  // Ends the session on a connection error: GOAWAY with `code` written
  // directly (nghttp2 may have acknowledgements queued that a flooding
  // peer should not get first), nothing more read or sent.
  void FailConnection(uint32_t code, std::string cause, bool flood);
  void SetWriteBlocked(bool blocked);
  // Runs the queued owner events; stops if one destroyed the codec.
  void RunOwnerEvents();
  // One RST_STREAM's worth of the rapid-reset budget; false when spent.
  bool TakeResetToken();
  // Hands a stream to the dispatcher for deletion.
  void RetireStream(StreamImpl& stream);
  void Inc(Counter* counter) {
    if (counter != nullptr) counter->Inc();
  }
  // nghttp2_session_want_read/write both 0: GOAWAY exchanged, nothing left.
  bool SessionDone() const;

  // Side-specific halves of the nghttp2 callbacks.
  virtual int OnBeginHeaders(const nghttp2_frame& frame) = 0;
  virtual int OnHeadersComplete(StreamImpl& stream, const nghttp2_frame& frame) = 0;
  virtual void OnStreamClosed(StreamImpl& stream, uint32_t error_code) = 0;
  // The session failed (connection error, ours or nghttp2's).
  virtual void OnConnectionError(const std::string& cause) = 0;
  virtual void OnGoAwayReceived(int32_t last_stream_id) = 0;
  virtual void OnRemoteSettings() {}

  friend class StreamImpl;
  friend class ServerStream;
  friend class ClientStream;
  friend struct Nghttp2Callbacks;

  event::Dispatcher& dispatcher_;
  event::Connection& connection_;
  const Options options_;
  event::TimerPtr flush_timer_;  // FlushSoon()
  Http2Stats stats_;
  const bool server_;
  nghttp2_session* session_ = nullptr;
  // Every stream not yet retired, oldest first (nodes from the block cache:
  // one per stream).
  using StreamList =
      std::list<std::unique_ptr<StreamImpl>, BlockAllocator<std::unique_ptr<StreamImpl>>>;
  StreamList streams_;
  std::vector<std::function<void()>> owner_events_;
  // Cleared when the codec is destroyed: queued owner events and posted
  // resumes check it.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  int in_nghttp2_ = 0;  // nghttp2 is on the stack: do not flush now
  bool flushing_ = false;
  bool flush_again_ = false;
  bool running_owner_events_ = false;
  bool write_blocked_ = false;  // the connection's write buffer is over its high watermark
  bool dead_ = false;           // connection error or connection closed: no more I/O
  bool goaway_received_ = false;
  // The error code of a GOAWAY nghttp2 itself sent (a connection error it
  // detected while parsing).
  uint32_t library_goaway_code_ = 0;
  // A connection error a callback found; nghttp2 returns a fatal error
  // right after, and this says which GOAWAY to send.
  uint32_t pending_error_code_ = 0;
  std::string pending_error_cause_;
  bool pending_error_flood_ = false;
  uint32_t empty_frames_ = 0;
  // Rapid-reset token bucket, on the dispatcher's clock.
  double reset_tokens_ = 0;
  MonotonicTime reset_tokens_at_;
};

// Downstream: requests in, responses out.
//
// A request reaches ServerConnectionCallbacks::NewStream only once its
// whole header block was received and passed nghttp2's RFC 9113 checks
// (8.2, 8.3) and ours (field characters, the header list limit): a
// malformed head is answered RST_STREAM PROTOCOL_ERROR (over the limit:
// ENHANCE_YOUR_CALM, HTTP/2 having no 431) and never reaches an upstream.
// A body that contradicts its content-length is only found later: that
// stream is reset under its decoder (OnResetStream(kProtocolError)).
// CONNECT is answered 501 here, as the HTTP/1 codec does.
//
// Resets: Stream::ResetStream(reason) sends RST_STREAM (kLocalReset:
// INTERNAL_ERROR, the response failed; kConnectionTermination: CANCEL;
// kRefusedStream: REFUSED_STREAM; kProtocolError: PROTOCOL_ERROR) and does
// not call the owner's own OnResetStream. A peer's RST_STREAM calls
// OnResetStream(kRemoteReset). A response that ends before its request
// body is followed by RST_STREAM NO_ERROR (RFC 9113 8.1).
//
// Connection errors (nghttp2's, a flood, a bad preface) send GOAWAY and
// then call OnProtocolError(error, nullptr) with error.cause one of
// http2_protocol_error, http2_bad_preface, http2_flood (PING/SETTINGS
// floods and nghttp2's own ENHANCE_YOUR_CALM), http2_rapid_reset,
// http2_empty_frame_flood, http2_continuation_flood; the owner closes the
// connection and calls OnConnectionClosed().
class ServerConnectionImpl final : public ServerConnection, private SessionBase {
 public:
  // Queues the server SETTINGS (and the connection window's increase);
  // they are written with the first response to the client preface.
  ServerConnectionImpl(event::Dispatcher& dispatcher, event::Connection& connection,
                       ServerConnectionCallbacks& callbacks, const Options& options,
                       Http2Stats* stats);
  ~ServerConnectionImpl() override;

  // ServerConnection
  Protocol protocol() const override { return Protocol::kHttp2; }
  // Takes every byte (the client preface included).
  void Dispatch(Buffer& data) override;
  // HTTP/2 has no half-close: the connection is to close once its streams
  // are done (WantsClose()); streams in flight are left to finish.
  void OnEof() override;
  bool Idle() const override { return streams_.empty(); }
  bool HasPendingOutput() const override { return !streams_.empty(); }
  void Shutdown() override { SendFinalGoAway(); }
  bool WantsClose() const override { return draining_ || goaway_received_ || dead_ || eof_; }
  // GOAWAY in two steps: a shutdown notice now (last stream id 2^31-1, so
  // requests already in flight are still taken), the final GOAWAY with the
  // last stream id after Options::drain_goaway_delay or at a second call.
  void StartDrain() override;
  void OnConnectionClosed() override;
  void OnAboveWriteBufferHighWatermark() override { SetWriteBlocked(true); }
  void OnBelowWriteBufferLowWatermark() override;

 private:
  int OnBeginHeaders(const nghttp2_frame& frame) override;
  int OnHeadersComplete(StreamImpl& stream, const nghttp2_frame& frame) override;
  void OnStreamClosed(StreamImpl& stream, uint32_t error_code) override;
  void OnConnectionError(const std::string& cause) override;
  void OnGoAwayReceived(int32_t) override {}
  void SendFinalGoAway();
  // ResponseEncoder::CloseAfterResponse() is a no-op on HTTP/2: one
  // response never closes a multiplexed connection; the owner drains it
  // with StartDrain().

  ServerConnectionCallbacks& callbacks_;
  event::TimerPtr drain_timer_;
  bool draining_ = false;
  bool final_goaway_sent_ = false;
  bool eof_ = false;
  bool error_reported_ = false;
};

// Upstream: requests out, responses in.
//
// Stream end: ClientConnectionCallbacks::OnStreamDone(reusable) once the
// response was handed up whole and the request sent (a request still
// being sent then is cancelled), or once the stream was reset; reusable is
// false after a GOAWAY either way or a connection error. A stream reset by
// its owner (RST_STREAM CANCEL) is done without its OnResetStream. Peer
// resets map to kRefusedStream (REFUSED_STREAM) or kRemoteReset, streams
// a GOAWAY left unprocessed to kGoAway, a malformed response (nghttp2's
// checks) to kProtocolError, a header list over the limit to kOverflow.
class ClientConnectionImpl final : public ClientConnection, private SessionBase {
 public:
  // Queues the preface and SETTINGS (ENABLE_PUSH 0); OnConnected() writes
  // them (or the first request's flush, whichever comes first).
  ClientConnectionImpl(event::Dispatcher& dispatcher, event::Connection& connection,
                       ClientConnectionCallbacks& callbacks, const Options& options,
                       Http2Stats* stats);
  ~ClientConnectionImpl() override;

  // ClientConnection
  Protocol protocol() const override { return Protocol::kHttp2; }
  void OnConnected() override;
  RequestEncoder& NewStream(ResponseDecoder& decoder) override;
  void Dispatch(Buffer& data) override;
  void OnConnectionClose(bool clean_eof, std::string_view transport_failure) override;
  uint32_t ActiveStreams() const override { return active_streams_; }
  uint32_t StreamCapacity() const override;
  void GoAway() override;
  void OnAboveWriteBufferHighWatermark() override { SetWriteBlocked(true); }
  void OnBelowWriteBufferLowWatermark() override;

 private:
  friend class ClientStream;
  int OnBeginHeaders(const nghttp2_frame& frame) override;
  int OnHeadersComplete(StreamImpl& stream, const nghttp2_frame& frame) override;
  void OnStreamClosed(StreamImpl& stream, uint32_t error_code) override;
  void OnConnectionError(const std::string& cause) override;
  void OnGoAwayReceived(int32_t last_stream_id) override;
  void OnRemoteSettings() override;
  // The stream ended: counted out, retired, and OnStreamDone queued.
  void StreamDone(StreamImpl& stream);
  // Resets every stream not yet done with `reason` (their callbacks are
  // told) and queues OnStreamDone(false) for each.
  void ResetAllStreams(StreamResetReason reason, std::string_view detail);
  bool Reusable() const { return !goaway_received_ && !goaway_sent_ && !dead_; }

  ClientConnectionCallbacks& callbacks_;
  uint32_t active_streams_ = 0;
  int32_t goaway_last_stream_id_ = 0;
  bool goaway_sent_ = false;
};

}  // namespace portway::http::http2
