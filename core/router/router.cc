#include "core/router/router.h"

#include "core/common/strings.h"

#include "core/server/stats.h"
#include "core/upstream/load_balancer.h"

namespace portway::router {
namespace {

http::ErrorCause CauseFor(upstream::PoolFailure reason) {
  switch (reason) {
    case upstream::PoolFailure::kConnectRefused:
      return http::ErrorCause::kUpstreamConnectRefused;
    case upstream::PoolFailure::kConnectFailure:
      return http::ErrorCause::kUpstreamConnectFailure;
    case upstream::PoolFailure::kConnectTimeout:
      return http::ErrorCause::kUpstreamConnectTimeout;
    case upstream::PoolFailure::kOverflow:
      return http::ErrorCause::kUpstreamOverflow;
  }
  return http::ErrorCause::kUpstreamConnectFailure;
}

}  // namespace

Router::~Router() { Abort(); }

void Router::Abort() {
  if (pool_handle_ != nullptr) {
    pool_handle_->Cancel();
    pool_handle_ = nullptr;
  }
  if (encoder_ != nullptr) {
    http::RequestEncoder* encoder = encoder_;
    encoder_ = nullptr;
    encoder->GetStream().RemoveCallbacks(*this);
    encoder->GetStream().ResetStream(http::StreamResetReason::kLocalReset);
  }
  if (timeout_) timeout_->Disable();
  Finish();
}

void Router::Finish() {
  if (done_) return;
  done_ = true;
  if (host_) host_->activeRequests().fetch_sub(1, std::memory_order_relaxed);
}

void Router::OnRequestHeaders(http::HeaderMapPtr headers, const Route& route, bool end_stream) {
  route_ = &route;
  request_complete_ = end_stream;
  http::StreamInfo& info = callbacks_.Info();
  info.route = route.name;

  if (route.action == Route::Action::kDirectResponse) {
    done_ = true;
    callbacks_.SendDirectResponse(route.direct_status, route.direct_body, route.direct_content_type,
                                  "");
    return;
  }
  if (route.action == Route::Action::kRedirect) {
    done_ = true;
    std::string_view path = headers->Path();
    std::string location =
        Cat(route.redirect_scheme.empty() ? headers->GetOr(http::headers::kScheme, "http")
                                          : route.redirect_scheme,
            "://", route.redirect_host.empty() ? headers->Authority() : route.redirect_host,
            route.redirect_path.empty() ? path : route.redirect_path);
    callbacks_.SendDirectResponse(route.redirect_status, "", "", location);
    return;
  }

  info.cluster = route.cluster;
  upstream::ClusterManager::WorkerCluster* cluster = callbacks_.ClusterManager().Get(route.cluster);
  if (cluster == nullptr) {
    done_ = true;
    callbacks_.SendLocalReply(http::ErrorCause::kClusterNotFound, route.cluster);
    return;
  }
  cluster_ = cluster->snapshot;
  const upstream::ClusterConfig& config = *cluster_->config;

  upstream::LbContext context;
  if (!config.hash_header.empty()) {
    if (const std::string* v = headers->Get(config.hash_header)) {
      context.has_hash = true;
      context.hash = upstream::HashKey(*v);
    }
  } else if (config.hash_source_ip) {
    context.has_hash = true;
    context.hash = upstream::HashKey(info.downstream_ip);
  }
  host_ = cluster->lb->ChooseHost(&context);
  if (!host_) {
    done_ = true;
    if (!cluster_->dns_error.empty()) {
      callbacks_.SendLocalReply(http::ErrorCause::kUpstreamDnsFailure, cluster_->dns_error);
    } else {
      callbacks_.SendLocalReply(http::ErrorCause::kNoHealthyUpstream, route.cluster);
    }
    return;
  }
  host_->activeRequests().fetch_add(1, std::memory_order_relaxed);
  host_->requests_total.fetch_add(1, std::memory_order_relaxed);
  if (config.stats) config.stats->requests.Inc();
  info.upstream_host = host_->addressString();

  RewriteRequest(*headers);
  request_headers_ = std::move(headers);
  if (request_complete_) StartTimeout();

  upstream::ConnPool& pool = callbacks_.ClusterManager().PoolFor(*cluster_, host_);
  pool_handle_ = pool.NewStream(*this, *this);
}

void Router::RewriteRequest(http::HeaderMap& headers) {
  const Route& route = *route_;
  if (route.has_prefix_rewrite) {
    std::string path(headers.Path());
    path = Cat(route.prefix_rewrite, path.substr(route.path_value.size()));
    headers.Set(http::headers::kPath, path);
  }
  if (!route.host_rewrite.empty()) headers.Set(http::headers::kAuthority, route.host_rewrite);
  route.request_headers.Apply(headers);
}

void Router::OnPoolReady(http::RequestEncoder& encoder, double connect_ms) {
  pool_handle_ = nullptr;
  encoder_ = &encoder;
  encoder.GetStream().AddCallbacks(*this);
  callbacks_.Info().upstream_request_sent = callbacks_.Dispatcher().Now();
  SendUpstream();
}

void Router::SendUpstream() {
  bool headers_only = request_complete_ && pending_body_.empty() && !request_trailers_;
  http::RequestEncoder* encoder = encoder_;
  encoder->EncodeHeaders(*request_headers_, headers_only);
  if (encoder_ == nullptr || headers_only) return;
  if (!pending_body_.empty() || (request_complete_ && !request_trailers_)) {
    encoder->EncodeData(pending_body_, request_complete_ && !request_trailers_);
    if (encoder_ == nullptr) return;
  }
  if (request_trailers_) encoder->EncodeTrailers(*request_trailers_);
  if (downstream_paused_) {
    downstream_paused_ = false;
    callbacks_.ReadDisableDownstream(false);
  }
}

void Router::OnPoolFailure(upstream::PoolFailure reason, std::string_view detail) {
  pool_handle_ = nullptr;
  if (timeout_) timeout_->Disable();
  Finish();
  callbacks_.SendLocalReply(CauseFor(reason), detail);
}

void Router::OnRequestData(Buffer& data, bool end_stream) {
  if (end_stream) request_complete_ = true;
  if (done_ && encoder_ == nullptr) {
    data.Clear();
    return;
  }
  if (encoder_ != nullptr) {
    encoder_->EncodeData(data, end_stream);
  } else {
    pending_body_.Move(data);
    // Until a connection is ready the body waits here, bounded: past the
    // limit the client is paused.
    if (pending_body_.length() > callbacks_.BufferLimit() && !downstream_paused_) {
      downstream_paused_ = true;
      callbacks_.ReadDisableDownstream(true);
    }
  }
  if (end_stream) StartTimeout();
}

void Router::OnRequestTrailers(http::HeaderMapPtr trailers) {
  request_complete_ = true;
  if (encoder_ != nullptr) {
    encoder_->EncodeTrailers(*trailers);
  } else {
    request_trailers_ = std::move(trailers);
  }
  StartTimeout();
}

void Router::StartTimeout() {
  if (route_ == nullptr || route_->timeout.count() == 0 || done_) return;
  if (!timeout_) timeout_ = callbacks_.Dispatcher().CreateTimer([this] { OnTimeout(); });
  timeout_->Enable(route_->timeout);
}

void Router::OnTimeout() {
  if (cluster_ && cluster_->config->stats) cluster_->config->stats->requests_timeout.Inc();
  bool started = response_started_;
  Abort();
  if (started) {
    callbacks_.ResetDownstream(http::ErrorCause::kUpstreamTimeout, "route timeout");
  } else {
    callbacks_.SendLocalReply(http::ErrorCause::kUpstreamTimeout,
                              Cat("no response within ", route_->timeout.count(), "ms"));
  }
}

void Router::ReleaseUpstream() {
  // A connection going back to the pool must not stay paused.
  if (encoder_ != nullptr && upstream_paused_) {
    upstream_paused_ = false;
    encoder_->GetStream().ReadDisable(false);
  }
  encoder_ = nullptr;
  if (timeout_) timeout_->Disable();
  Finish();
}

void Router::DecodeHeaders(http::HeaderMapPtr headers, bool end_stream) {
  response_started_ = true;
  http::StreamInfo& info = callbacks_.Info();
  info.upstream_response_headers = callbacks_.Dispatcher().Now();
  int status = headers->Status();
  if (cluster_->config->stats && status >= 100 && status < 600) {
    cluster_->config->stats->responses[status / 100]->Inc();
  }
  route_->response_headers.Apply(*headers);
  if (end_stream) ReleaseUpstream();
  callbacks_.EncodeHeaders(std::move(headers), end_stream);
}

void Router::DecodeData(Buffer& data, bool end_stream) {
  if (end_stream) ReleaseUpstream();
  callbacks_.EncodeData(data, end_stream);
}

void Router::DecodeTrailers(http::HeaderMapPtr trailers) {
  ReleaseUpstream();
  callbacks_.EncodeTrailers(std::move(trailers));
}

void Router::OnResetStream(http::StreamResetReason reason, std::string_view detail) {
  encoder_ = nullptr;
  if (timeout_) timeout_->Disable();
  Finish();
  if (cluster_ && cluster_->config->stats) cluster_->config->stats->resets.Inc();
  if (response_started_) {
    callbacks_.ResetDownstream(http::ErrorCause::kUpstreamResetAfterResponseStarted, detail);
    return;
  }
  if (reason == http::StreamResetReason::kProtocolError) {
    callbacks_.SendLocalReply(http::ErrorCause::kUpstreamMalformedResponse, detail);
  } else {
    callbacks_.SendLocalReply(http::ErrorCause::kUpstreamResetBeforeResponse, detail);
  }
}

void Router::OnAboveWriteBufferHighWatermark() {
  // The upstream is not taking the request body as fast as the client
  // sends it.
  if (!downstream_paused_) {
    downstream_paused_ = true;
    callbacks_.ReadDisableDownstream(true);
  }
}

void Router::OnBelowWriteBufferLowWatermark() {
  if (downstream_paused_) {
    downstream_paused_ = false;
    callbacks_.ReadDisableDownstream(false);
  }
}

void Router::OnDownstreamAboveWriteBufferHighWatermark() {
  if (encoder_ != nullptr && !upstream_paused_) {
    upstream_paused_ = true;
    encoder_->GetStream().ReadDisable(true);
  }
}

void Router::OnDownstreamBelowWriteBufferLowWatermark() {
  if (encoder_ != nullptr && upstream_paused_) {
    upstream_paused_ = false;
    encoder_->GetStream().ReadDisable(false);
  }
}

}  // namespace portway::router
