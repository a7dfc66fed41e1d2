// The connection manager: owns one downstream connection and its codec,
// and runs each request as an ActiveStream: proxy headers, routing, the
// router, local replies, timeouts, stats and the access log.
//
// Thread safety: one worker thread.
//
// Life of a request (see docs/life-of-a-request.md):
//   codec parses headers -> ActiveStream::DecodeHeaders: limits, proxy
//   headers, route match -> Router (direct / redirect / cluster) -> pool ->
//   upstream codec -> response back through Encode* -> codec -> client.
#pragma once

#include <list>
#include <memory>
#include <string>

#include "core/event/dispatcher.h"
#include "core/http/codec.h"
#include "core/http/http1/codec.h"
#include "core/router/router.h"
#include "core/server/snapshot.h"
#include "portway/stream_info.h"

namespace portway::server {
class FailureHistory;
}  // namespace portway::server

namespace portway::http {

class ConnectionManager;

// What a connection manager needs from its worker.
class ConnectionManagerContext {
 public:
  virtual ~ConnectionManagerContext() = default;
  virtual event::Dispatcher& Dispatcher() = 0;
  virtual upstream::ClusterManager& ClusterManager() = 0;
  // The newest config of that listener, or null once it is removed.
  virtual server::ListenerConfigPtr CurrentListener(const std::string& name) = 0;
  virtual const server::AccessLogger* AccessLog() = 0;
  virtual bool Draining() const = 0;
  virtual std::string NewRequestId() = 0;
  // Where failed requests are recorded; null when the history is off.
  virtual server::FailureHistory* Failures() { return nullptr; }
  // The connection is closed; the context drops it.
  virtual void RemoveConnection(ConnectionManager& connection) = 0;
};

class ConnectionManager : public event::ConnectionCallbacks,
                          public ServerConnectionCallbacks,
                          public event::DeferredDeletable {
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

  // Drain: close now if idle, else after the current response.
  void StartDrain();
  bool Idle() const { return stream_ == nullptr && codec_->Idle(); }
  const std::string& ListenerName() const { return listener_->name; }

 private:
  class ActiveStream;
  friend class ActiveStream;

  void OnStreamDone(bool reset);
  void CloseConnection(event::CloseType type);

  ConnectionManagerContext& context_;
  server::ListenerConfigPtr listener_;
  event::ConnectionPtr connection_;
  std::unique_ptr<http1::ServerConnectionImpl> codec_;
  std::unique_ptr<ActiveStream> stream_;
  // One timer serves both the idle timeout (no request in flight) and the
  // request-headers timeout (a request head is arriving); they never run
  // at once, and every idle connection pays for its timers in memory.
  enum class TimerMode { kIdle, kRequestHeaders };
  void ArmTimer(TimerMode mode);
  void OnTimer();
  event::TimerPtr timer_;
  TimerMode timer_mode_ = TimerMode::kIdle;
  std::string client_ip_;
  bool closed_ = false;
  bool draining_ = false;
};

}  // namespace portway::http
