// A request a filter sends on its own (FilterCallbacks::SendSideRequest): a
// Router driven by this object instead of a downstream stream, answered
// into a buffer. It belongs to the worker, not to the stream that started
// it, so it goes on after that stream ends (the cache's background
// revalidation).
//
// Thread safety: one worker thread, like everything the router touches.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "core/event/dispatcher.h"
#include "core/router/router.h"
#include "portway/filter.h"

namespace portway::router {

class SideRequest : public RouterCallbacks, public event::DeferredDeletable {
 public:
  // However the route is set (a route timeout of 0 means none), a side
  // request is given up after this: nobody waits for it, and what it holds
  // (a key being refreshed) must be let go.
  static constexpr std::chrono::seconds kDeadline{60};

  // `hold` keeps `route` alive (the listener config it belongs to).
  // `finished` runs once, after `done`, for the owner to let go of this
  // object (deferred: it is called from inside the router). Destroyed
  // before it was answered (the worker stops), it still calls `done`, with
  // kDownstreamDisconnect.
  SideRequest(event::Dispatcher& dispatcher, upstream::ClusterManager& cluster_manager,
              std::shared_ptr<const void> hold, const Route& route, std::string cluster,
              size_t max_body_bytes, http::SideResponseCallback done,
              std::function<void(SideRequest*)> finished);
  ~SideRequest() override;

  void Start(http::HeaderMapPtr headers);

  // RouterCallbacks
  event::Dispatcher& Dispatcher() override { return dispatcher_; }
  upstream::ClusterManager& ClusterManager() override { return cluster_manager_; }
  http::StreamInfo& Info() override { return info_; }
  void SendLocalReply(http::ErrorCause cause, std::string_view detail) override;
  void SendDirectResponse(int status, std::string_view body, std::string_view content_type,
                          std::string_view location) override;
  void EncodeHeaders(http::HeaderMapPtr headers, bool end_stream) override;
  void EncodeData(Buffer& data, bool end_stream) override;
  void EncodeTrailers(http::HeaderMapPtr trailers) override;
  void ResetDownstream(http::ErrorCause cause, std::string_view detail) override;
  void ReadDisableDownstream(bool) override {}
  size_t BufferLimit() const override { return max_body_bytes_ + 65536; }
  size_t ReplayLimit() const override { return 0; }
  std::chrono::milliseconds PerTryTimeout() const override { return std::chrono::milliseconds(0); }
  const http::UpstreamLimits& Limits() const override { return limits_; }
  http::UpstreamAttemptStatus OnUpstreamAttempt(http::UpstreamAttempt&) override {
    return http::UpstreamAttemptStatus::kContinue;
  }
  http::UpstreamResultStatus OnUpstreamResult(http::UpstreamResult&) override {
    return http::UpstreamResultStatus::kContinue;
  }

 private:
  void Complete(http::ErrorCause cause);

  event::Dispatcher& dispatcher_;
  upstream::ClusterManager& cluster_manager_;
  const std::shared_ptr<const void> hold_;
  const Route& route_;
  const size_t max_body_bytes_;
  http::SideResponseCallback done_;
  std::function<void(SideRequest*)> finished_;
  http::StreamInfo info_;
  http::UpstreamLimits limits_;
  http::SideResponse response_;
  bool complete_ = false;
  std::unique_ptr<Router> router_;
  event::TimerPtr deadline_;
};

}  // namespace portway::router
