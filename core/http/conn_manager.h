// The connection manager: owns one downstream connection and its codec,
// and runs each request as an ActiveStream: proxy headers, routing, the
// router, local replies, timeouts, stats and the access log. It knows no
// protocol: the codec is chosen per connection from its first bytes (the
// HTTP/2 client preface, or anything else for HTTP/1), and an HTTP/2
// connection runs many streams at once.
//
// Thread safety: one worker thread.
//
// Life of a request (see docs/life-of-a-request.md):
//   codec parses headers -> ActiveStream::DecodeHeaders: limits, proxy
//   headers, route match -> Router (direct / redirect / cluster) -> pool ->
//   upstream codec -> response back through Encode* -> codec -> client.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <vector>

#include "core/common/intrusive_list.h"
#include "core/event/dispatcher.h"
#include "core/http/codec.h"
#include "core/http/http1/codec.h"
#include "core/router/router.h"
#include "core/server/snapshot.h"
#include "portway/gateway.h"
#include "portway/stream_info.h"

namespace portway::server {
class FailureHistory;
}  // namespace portway::server

namespace portway::http {

class ConnectionManager;

// What a connection manager needs from its worker.
// A request id the gateway makes up: at most 36 characters, the RFC 9562
// text form of a random UUID.
struct RequestId {
  char text[36];
  uint8_t size = 0;
  std::string_view view() const { return {text, size}; }
};

class ConnectionManagerContext {
 public:
  virtual ~ConnectionManagerContext() = default;
  virtual event::Dispatcher& Dispatcher() = 0;
  virtual upstream::ClusterManager& ClusterManager() = 0;
  // The newest config of that listener, or null once it is removed.
  virtual server::ListenerConfigPtr CurrentListener(const std::string& name) = 0;
  virtual const server::AccessLogger* AccessLog() = 0;
  // The worker is draining its connections (each closes after its current
  // response); false during drain_delay, while the gateway serves on.
  virtual bool Draining() const = 0;
  // What filters see of the gateway (FilterCallbacks::Gateway()).
  virtual const GatewayView& Gateway() = 0;
  // A new X-Request-Id, in place rather than on the heap (one per request).
  virtual RequestId NewRequestId() = 0;
  // Posts to this context's thread from any thread
  // (FilterCallbacks::Worker()).
  virtual std::shared_ptr<WorkerPoster> Poster() = 0;
  // Starts a filter's side request (FilterCallbacks::SendSideRequest) on
  // `route` of `listener`, owned by the context until it is answered.
  virtual void StartSideRequest(server::ListenerConfigPtr listener, const router::Route& route,
                                std::string cluster, HeaderMapPtr headers, size_t max_body_bytes,
                                SideResponseCallback done) = 0;
  // Where failed requests are recorded; null when the history is off.
  virtual server::FailureHistory* Failures() { return nullptr; }
  // The connection is closed; the context drops it.
  virtual void RemoveConnection(ConnectionManager& connection) = 0;
};

// How long a keep-alive connection must be quiet before it gives back its
// buffers' storage and its idle HTTP/1 codec (docs/operations.md, "Idle
// connections").
inline constexpr std::chrono::milliseconds kIdleReleaseDelay{1000};

class ConnectionManager : public event::ConnectionCallbacks,
                          public ServerConnectionCallbacks,
                          public event::DeferredDeletable,
                          public IntrusiveListNode<ConnectionManager> {
 public:
  ConnectionManager(ConnectionManagerContext& context, server::ListenerConfigPtr listener,
                    event::ConnectionPtr connection);
  ~ConnectionManager() override;

  // event::ConnectionCallbacks
  void OnData(Buffer& data, bool end_stream) override;
  void OnEvent(event::ConnectionEvent event) override;
  void OnAboveWriteBufferHighWatermark() override;
  void OnBelowWriteBufferLowWatermark() override;

  // ServerConnectionCallbacks
  RequestDecoder& NewStream(ResponseEncoder& encoder) override;
  void OnProtocolError(const CodecError& error, ResponseEncoder* encoder) override;
  void OnCodecIdle() override;

  // Drain: close now if idle; else HTTP/1 closes after the current
  // response and HTTP/2 sends GOAWAY and closes when its streams are done.
  void StartDrain();
  bool Idle() const { return streams_.empty() && (codec_ == nullptr || codec_->Idle()); }
  const std::string& ListenerName() const { return listener_->name; }
  // False before the first bytes and after an idle HTTP/1 codec was given
  // back (ReleaseIdleStorage); for tests and diagnostics.
  bool HasCodec() const { return codec_ != nullptr; }

 private:
  class ActiveStream;
  friend class ActiveStream;

  void OnStreamDone(ActiveStream& stream, bool reset);
  void CloseConnection(event::CloseType type);
  // Picks the codec from the first bytes; false while they could still be
  // the start of the HTTP/2 preface.
  bool CreateCodec(Buffer& data);
  void CreateHttp1Codec();

  ConnectionManagerContext& context_;
  server::ListenerConfigPtr listener_;
  event::ConnectionPtr connection_;
  // The connection's TLS (null for plaintext), looked up once: it lives as
  // long as the connection.
  const event::TlsInfo* tls_ = nullptr;
  // Null until the first bytes arrive.
  std::unique_ptr<ServerConnection> codec_;
  // codec_ when it speaks HTTP/1: a stalled request head is answered with
  // 408 on it.
  http1::ServerConnectionImpl* http1_ = nullptr;
  // Newest first; owned (each is deleted, deferred, when it leaves). Intrusive: an HTTP/1 request
  // allocates no list node, and an idle connection keeps no list storage.
  IntrusiveList<ActiveStream> streams_;
  // One timer serves both the idle timeout (no request in flight) and the
  // request-headers timeout (a request head is arriving); they never run
  // at once, and every idle connection pays for its timers in memory. The
  // idle timeout makes a first stop (kIdleRelease) after kIdleReleaseDelay
  // of quiet, where the connection gives back what it keeps for the next
  // request (ReleaseIdleStorage); a busy connection never gets there.
  enum class TimerMode : uint8_t { kIdleRelease, kIdle, kRequestHeaders };
  void ArmTimer(TimerMode mode);
  void OnTimer();
  void ReleaseIdleStorage();
  event::TimerPtr timer_;
  std::string client_ip_;
  // The one-byte fields together, after the rest: every idle connection
  // carries this object, and padding is memory too.
  TimerMode timer_mode_ = TimerMode::kIdle;
  bool closed_ = false;
  bool draining_ = false;
  bool codec_draining_ = false;  // codec_->StartDrain() was called
  // An idle HTTP/1 codec was given back: the next bytes make a new one
  // (the connection stays HTTP/1; they are not looked at for a preface).
  bool http1_released_ = false;
  // Nothing in flight and nothing left to send: the connection may close.
  bool Quiet() const { return Idle() && (codec_ == nullptr || !codec_->HasPendingOutput()); }
  void DrainCodec();
};

}  // namespace portway::http
