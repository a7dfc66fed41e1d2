#include "core/router/side_request.h"

#include <utility>

namespace portway::router {

SideRequest::SideRequest(event::Dispatcher& dispatcher, upstream::ClusterManager& cluster_manager,
                         std::shared_ptr<const void> hold, const Route& route, std::string cluster,
                         size_t max_body_bytes, http::SideResponseCallback done,
                         std::function<void(SideRequest*)> finished)
    : dispatcher_(dispatcher),
      cluster_manager_(cluster_manager),
      hold_(std::move(hold)),
      route_(route),
      max_body_bytes_(max_body_bytes),
      done_(std::move(done)),
      finished_(std::move(finished)) {
  info_.cluster = std::move(cluster);
  info_.route = route.name;
  info_.start = dispatcher_.Now();
}

SideRequest::~SideRequest() {
  // The worker is stopping with the request still out: drop it, and say
  // so to whoever waits.
  if (router_ != nullptr) router_->Abort();
  if (!complete_) {
    complete_ = true;
    http::SideResponse gone;
    gone.cause = http::ErrorCause::kDownstreamDisconnect;
    http::SideResponseCallback done = std::move(done_);
    done(std::move(gone));
  }
}

void SideRequest::Start(http::HeaderMapPtr headers) {
  deadline_ = dispatcher_.CreateTimer([this] { Complete(http::ErrorCause::kUpstreamTimeout); });
  deadline_->Enable(kDeadline);
  router_ = std::make_unique<Router>(*this);
  router_->OnRequestHeaders(std::move(headers), route_, /*end_stream=*/true);
}

void SideRequest::SendLocalReply(http::ErrorCause cause, std::string_view) { Complete(cause); }

void SideRequest::SendDirectResponse(int status, std::string_view body, std::string_view,
                                     std::string_view) {
  response_.headers = std::make_unique<http::HeaderMap>();
  response_.headers->Add(":status", std::to_string(status));
  response_.body = std::string(body);
  Complete(http::ErrorCause::kNone);
}

void SideRequest::EncodeHeaders(http::HeaderMapPtr headers, bool end_stream) {
  if (complete_) return;
  response_.headers = std::move(headers);
  if (end_stream) Complete(http::ErrorCause::kNone);
}

void SideRequest::EncodeData(Buffer& data, bool end_stream) {
  if (complete_) {
    data.Clear();
    return;
  }
  if (response_.body.size() + data.length() > max_body_bytes_) {
    data.Clear();
    Complete(http::ErrorCause::kPayloadTooLarge);
    return;
  }
  data.ForEachSlice([&](std::string_view slice) { response_.body.append(slice); });
  data.Clear();
  if (end_stream) Complete(http::ErrorCause::kNone);
}

void SideRequest::EncodeTrailers(http::HeaderMapPtr trailers) {
  if (complete_) return;
  response_.trailers = std::move(trailers);
  Complete(http::ErrorCause::kNone);
}

void SideRequest::ResetDownstream(http::ErrorCause cause, std::string_view) { Complete(cause); }

void SideRequest::Complete(http::ErrorCause cause) {
  if (complete_) return;
  complete_ = true;
  if (deadline_ != nullptr) deadline_->Disable();
  if (cause != http::ErrorCause::kNone) response_.headers.reset();
  response_.cause = cause;
  // The rest of an unfinished response is not wanted.
  if (router_ != nullptr && cause != http::ErrorCause::kNone) router_->Abort();
  http::SideResponseCallback done = std::move(done_);
  done(std::move(response_));
  finished_(this);
}

}  // namespace portway::router
