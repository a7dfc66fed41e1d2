#include "core/router/router.h"

#include <algorithm>

#include "core/common/strings.h"
#include "core/http/grpc.h"
#include "core/server/stats.h"
#include "core/upstream/load_balancer.h"
#include "core/upstream/outlier_detector.h"

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
    case upstream::PoolFailure::kTlsHandshakeFailed:
      return http::ErrorCause::kUpstreamTlsHandshakeFailed;
    case upstream::PoolFailure::kTlsVerifyFailed:
      return http::ErrorCause::kUpstreamTlsVerifyFailed;
    case upstream::PoolFailure::kOverflow:
      return http::ErrorCause::kUpstreamOverflow;
  }
  return http::ErrorCause::kUpstreamConnectFailure;
}

}  // namespace

Router::~Router() { Abort(); }

void Router::Abort() {
  if (retry_timer_) retry_timer_->Disable();
  EndAttempt();
  if (timeout_) timeout_->Disable();
  Finish();
}

void Router::EndAttempt() {
  if (pool_handle_ != nullptr) {
    pool_handle_->Cancel();
    pool_handle_ = nullptr;
  }
  if (encoder_ != nullptr) {
    // A stream given up half-way closes its connection (never reused).
    http::RequestEncoder* encoder = encoder_;
    encoder_ = nullptr;
    upstream_paused_ = false;
    encoder->GetStream().RemoveCallbacks(*this);
    encoder->GetStream().ResetStream(http::StreamResetReason::kLocalReset);
  }
  if (per_try_timer_) per_try_timer_->Disable();
  ReleaseHostCount();
  ReleaseRetryCount();
  // A pause for this attempt's slow upstream ends with the attempt.
  if (paused_for_upstream_) {
    paused_for_upstream_ = false;
    callbacks_.ReadDisableDownstream(false);
  }
}

void Router::Finish() {
  if (done_) return;
  done_ = true;
  ReleaseHostCount();
  ReleaseRetryCount();
  if (request_counted_ != nullptr) {
    request_counted_->requests_active.Sub();
    request_counted_ = nullptr;
  }
}

void Router::ReleaseRetryCount() {
  // On the cluster it was counted on, whatever the stream's cluster is now.
  if (retry_counted_ != nullptr) retry_counted_->retries_active.Sub();
  retry_counted_ = nullptr;
}

void Router::ReleaseHostCount() {
  if (attempt_counted_ && host_) host_->activeRequests().fetch_sub(1, std::memory_order_relaxed);
  attempt_counted_ = false;
}

void Router::OnRequestHeaders(http::HeaderMapPtr headers, const Route& route, bool end_stream) {
  route_ = &route;
  request_complete_ = end_stream;
  http::StreamInfo& info = callbacks_.Info();

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

  // The route's cluster, or the one a filter chose instead.
  if (info.cluster.empty()) info.cluster = route.cluster;
  upstream::ClusterManager::WorkerCluster* cluster = callbacks_.ClusterManager().Get(info.cluster);
  if (cluster == nullptr) {
    done_ = true;
    callbacks_.SendLocalReply(http::ErrorCause::kClusterNotFound, info.cluster);
    return;
  }
  const upstream::ClusterConfig& config = *cluster->snapshot->config;
  if (config.stats != nullptr) {
    uint32_t max_requests = callbacks_.Limits().max_requests;
    if (max_requests > 0 &&
        config.stats->requests_active.Value() >= static_cast<int64_t>(max_requests)) {
      done_ = true;
      config.stats->overflow_max_requests.Inc();
      callbacks_.SendLocalReply(http::ErrorCause::kUpstreamOverflow,
                                Cat("max_requests (", max_requests, ") reached for the cluster"));
      return;
    }
    request_counted_ = config.stats;
    request_counted_->requests_active.Add();
  }
  if (!config.hash_header.empty()) {
    if (const std::string_view* v = headers->Get(config.hash_header)) {
      lb_context_.has_hash = true;
      lb_context_.hash = upstream::HashKey(*v);
    }
  } else if (config.hash_source_ip) {
    lb_context_.has_hash = true;
    lb_context_.hash = upstream::HashKey(info.downstream_ip);
  }
  replay_limit_ = callbacks_.ReplayLimit();
  replay_ok_ = replay_limit_ > 0;

  // A gRPC deadline runs from now, whether or not the request (a stream,
  // perhaps) is complete, and caps the route's timeout.
  if (callbacks_.GrpcRequest()) {
    if (auto deadline = http::grpc::ParseTimeout(*headers)) {
      std::chrono::milliseconds ms = std::max(*deadline, std::chrono::milliseconds(1));
      if (route.timeout.count() > 0) ms = std::min(ms, route.timeout);
      ArmTimeout(ms, "grpc-timeout");
    }
  }
  RewriteRequest(*headers);
  request_headers_ = std::move(headers);
  if (request_complete_) StartTimeout();
  StartAttempt(cluster);
}

void Router::StartAttempt(upstream::ClusterManager::WorkerCluster* cluster) {
  // Looked up again for every later attempt: a config update may have
  // replaced the worker's balancer since the request started.
  const std::string& name = callbacks_.Info().cluster;
  if (cluster == nullptr) cluster = callbacks_.ClusterManager().Get(name);
  if (cluster == nullptr) {
    Finish();
    callbacks_.SendLocalReply(http::ErrorCause::kClusterNotFound, name);
    return;
  }
  cluster_ = cluster->snapshot;
  attempt_reused_ = false;
  attempt_sent_ = false;
  attempt_told_ = false;
  host_ = PickHost(*cluster);
  if (!host_) return;
  http::StreamInfo& info = callbacks_.Info();
  ++attempt_;
  info.attempts = attempt_;
  attempt_counted_ = true;
  host_->activeRequests().fetch_add(1, std::memory_order_relaxed);
  host_->requests_total.fetch_add(1, std::memory_order_relaxed);
  if (cluster_->config->stats) cluster_->config->stats->requests.Inc();
  info.upstream_host = host_->addressString();
  http::UpstreamAttemptInfo& logged = info.attempt_log.emplace_back();
  logged.host = host_->addressString();
  logged.start = callbacks_.Dispatcher().Now();
  // Set again when this attempt's request goes out.
  info.upstream_request_sent.reset();
  if (replay_limit_ > 0) {
    // The upstream can tell a retry from a first try. (Any client copy was
    // dropped on the way in, so the first try appends without a search.)
    if (attempt_ == 1) {
      request_headers_->AddLower("x-portway-attempt-count", "1");
    } else {
      request_headers_->Set("x-portway-attempt-count", std::to_string(attempt_));
    }
  }
  if (attempt_ > 1) {
    // A new attempt sends everything received so far again.
    pending_body_.Clear();
    replay_.ForEachSlice([this](std::string_view s) { pending_body_.Add(s); });
    if (replay_trailers_ && !request_trailers_) {
      request_trailers_ = std::make_unique<http::HeaderMap>(*replay_trailers_);
    }
  }
  upstream::ConnPool& pool = callbacks_.ClusterManager().PoolFor(*cluster, host_);
  // :scheme says how this hop is carried: an https client's request to a
  // plaintext origin is "http". It reaches the wire only with HTTP/2
  // (HTTP/1.1 pools skip the lookup).
  const upstream::ClusterConfig& config = pool.config();
  if (config.protocol == http::Protocol::kHttp2 || config.auto_protocol) {
    std::string_view scheme = config.tls != nullptr ? "https" : "http";
    if (request_headers_->GetOr(http::headers::kScheme, "") != scheme) {
      request_headers_->Set(http::headers::kScheme, scheme);
    }
  }
  pool_handle_ = pool.NewStream(*this, *this, callbacks_.Limits());
}

upstream::HostSharedPtr Router::PickHost(upstream::ClusterManager::WorkerCluster& cluster) {
  std::vector<const upstream::Host*> avoid;
  avoid.reserve(tried_.size());
  for (const auto& h : tried_) avoid.push_back(h.get());
  // Hosts the filters turned down for this attempt (a breaker open for
  // them); never used, unlike tried hosts, which are only avoided.
  std::vector<const upstream::Host*> refused;
  http::ErrorCause cause_if_none_left = http::ErrorCause::kNoHealthyUpstream;
  for (;;) {
    upstream::HostSharedPtr host = cluster.lb->ChooseHost(&lb_context_, avoid);
    auto is_refused = [&](const upstream::HostSharedPtr& h) {
      return std::find(refused.begin(), refused.end(), h.get()) != refused.end();
    };
    if (host && is_refused(host)) {
      // Every usable host is tried or refused: a tried one may still do.
      host = cluster.lb->ChooseHost(&lb_context_, refused);
      if (host && is_refused(host)) {
        Finish();
        callbacks_.SendLocalReply(
            cause_if_none_left, Cat("every host of ", cluster_->config->name, " was turned down"));
        return nullptr;
      }
    }
    if (!host) {
      Finish();
      if (!cluster_->dns_error.empty()) {
        callbacks_.SendLocalReply(http::ErrorCause::kUpstreamDnsFailure, cluster_->dns_error);
      } else {
        callbacks_.SendLocalReply(http::ErrorCause::kNoHealthyUpstream, cluster_->config->name);
      }
      return nullptr;
    }
    http::UpstreamAttempt attempt;
    attempt.cluster = cluster_->config->name;
    attempt.host = host->addressString();
    attempt.attempt = attempt_ + 1;
    http::UpstreamAttemptStatus status = callbacks_.OnUpstreamAttempt(attempt);
    if (done_) return nullptr;  // a filter answered
    if (status == http::UpstreamAttemptStatus::kContinue) return host;
    refused.push_back(host.get());
    avoid.push_back(host.get());
    cause_if_none_left = attempt.cause_if_none_left;
  }
}

bool Router::MaybeRetry(http::UpstreamResult::Kind kind, http::ErrorCause cause, int status,
                        const http::HeaderMap* headers, bool refused_stream) {
  ReportOutlier(kind, status, refused_stream);
  if (response_started_ || done_) return false;
  RecordAttemptResult(cause);
  http::UpstreamResult result;
  result.kind = kind;
  result.cause = cause;
  result.status = status;
  result.headers = headers;
  result.attempt = attempt_;
  result.host = host_ ? std::string_view(host_->addressString()) : std::string_view();
  result.refused_stream = refused_stream;
  result.connection_reused = attempt_reused_;
  result.request_sent = attempt_sent_;
  // A filter that answered with a response of its own (a stale copy)
  // aborted us: the caller has nothing left to do.
  if (callbacks_.OnUpstreamResult(result) != http::UpstreamResultStatus::kRetry) return done_;
  // Filters see StreamInfo::replay_overflow and do not ask; a filter that
  // asks anyway gets no retry.
  if (!replay_ok_) {
    NoteRetryRefused("the request body outgrew the replay limit");
    return false;
  }
  stats::ClusterStats* stats = Stats();
  uint32_t max_retries = callbacks_.Limits().max_retries;
  // A retry that failed and asks again does not count against itself.
  int64_t others =
      stats == nullptr ? 0 : stats->retries_active.Value() - (retry_counted_ == stats ? 1 : 0);
  if (max_retries > 0 && stats != nullptr && others >= static_cast<int64_t>(max_retries)) {
    // The cluster has enough retries in flight: this result stands.
    stats->overflow_max_retries.Inc();
    NoteRetryRefused("the cluster's max_retries are in flight");
    return false;
  }
  EndAttempt();
  if (host_) tried_.push_back(host_);
  if (stats != nullptr) {
    retry_counted_ = stats;
    stats->retries_active.Add();
  }
  if (!retry_timer_) retry_timer_ = callbacks_.Dispatcher().CreateTimer([this] { StartAttempt(); });
  retry_timer_->Enable(result.retry_delay);
  return true;
}

void Router::ReportOutlier(http::UpstreamResult::Kind kind, int status, bool refused_stream) {
  if (attempt_told_ || !host_ || !cluster_ || cluster_->config->outlier == nullptr) return;
  attempt_told_ = true;
  upstream::AttemptOutcome outcome = upstream::AttemptOutcome::kLocalOriginFailure;
  if (kind == http::UpstreamResult::Kind::kResponseHeaders) {
    outcome = upstream::OutcomeOfStatus(status);
  } else if (refused_stream) {
    // REFUSED_STREAM or GOAWAY: the host turned the stream down unprocessed
    // (it is going away, or at its stream limit): no verdict on its health.
    return;
  }
  upstream::RecordOutlierOutcome(host_, *cluster_->config->outlier, outcome,
                                 callbacks_.ClusterManager().outlier_sink());
}

void Router::NoteRetryRefused(std::string_view why) {
  callbacks_.Info().decisions.push_back(
      {callbacks_.Dispatcher().Now(), "router", Cat("retry not made: ", why)});
}

void Router::RecordAttemptResult(http::ErrorCause cause) {
  auto& log = callbacks_.Info().attempt_log;
  // The first outcome of an attempt is its result; a route timeout after a
  // response head arrived does not rewrite it.
  if (!log.empty() && log.back().result == http::ErrorCause::kNone &&
      cause != http::ErrorCause::kNone &&
      (log.back().status == 0 || cause == http::ErrorCause::kUpstreamResetAfterResponseStarted)) {
    log.back().result = cause;
    log.back().failed = callbacks_.Dispatcher().Now();
  }
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

void Router::OnPoolReady(http::RequestEncoder& encoder, const upstream::PoolStreamInfo& pool_info) {
  pool_handle_ = nullptr;
  encoder_ = &encoder;
  attempt_reused_ = pool_info.reused;
  encoder.GetStream().AddCallbacks(*this);
  http::StreamInfo& info = callbacks_.Info();
  info.upstream_request_sent = callbacks_.Dispatcher().Now();
  if (!info.attempt_log.empty()) {
    info.attempt_log.back().request_sent = info.upstream_request_sent;
    info.attempt_log.back().connect_ms = pool_info.connect_ms;
  }
  std::chrono::milliseconds per_try = callbacks_.PerTryTimeout();
  if (per_try.count() > 0) {
    if (!per_try_timer_) {
      per_try_timer_ = callbacks_.Dispatcher().CreateTimer([this] { OnPerTryTimeout(); });
    }
    per_try_timer_->Enable(per_try);
  }
  SendUpstream();
}

void Router::SendUpstream() {
  bool headers_only = request_complete_ && pending_body_.empty() && !request_trailers_;
  http::RequestEncoder* encoder = encoder_;
  attempt_sent_ = true;
  encoder->EncodeHeaders(*request_headers_, headers_only);
  if (encoder_ == nullptr || headers_only) return;
  if (!pending_body_.empty() || (request_complete_ && !request_trailers_)) {
    encoder->EncodeData(pending_body_, request_complete_ && !request_trailers_);
    if (encoder_ == nullptr) return;
  }
  if (request_trailers_) {
    encoder->EncodeTrailers(*request_trailers_);
    request_trailers_.reset();
  }
  // The waiting body is out: that pause ends (a pause for a slow upstream
  // is separate and ends on its own watermark).
  if (paused_for_pending_) {
    paused_for_pending_ = false;
    callbacks_.ReadDisableDownstream(false);
  }
}

void Router::OnPoolFailure(upstream::PoolFailure reason, std::string_view detail) {
  pool_handle_ = nullptr;
  http::ErrorCause cause = CauseFor(reason);
  RecordAttemptResult(cause);
  // An overflow made no attempt: nothing to retry, the limit answers.
  if (reason != upstream::PoolFailure::kOverflow &&
      MaybeRetry(http::UpstreamResult::Kind::kConnectFailure, cause, 0, nullptr)) {
    return;
  }
  if (timeout_) timeout_->Disable();
  Finish();
  callbacks_.SendLocalReply(cause, detail);
}

void Router::OnRequestData(Buffer& data, bool end_stream) {
  if (end_stream) request_complete_ = true;
  if (done_ && encoder_ == nullptr) {
    data.Clear();
    return;
  }
  if (replay_ok_) {
    // Kept for a retry, bounded: past the limit the request can no longer
    // be sent again.
    if (replay_.length() + data.length() > replay_limit_) {
      replay_ok_ = false;
      replay_.Clear();
      callbacks_.Info().replay_overflow = true;
    } else {
      data.ForEachSlice([this](std::string_view s) { replay_.Add(s); });
    }
  }
  if (encoder_ != nullptr) {
    encoder_->EncodeData(data, end_stream);
  } else {
    pending_body_.Move(data);
    // Until a connection is ready the body waits here, bounded: past the
    // limit the client is paused.
    if (pending_body_.length() > callbacks_.BufferLimit() && !paused_for_pending_) {
      paused_for_pending_ = true;
      callbacks_.ReadDisableDownstream(true);
    }
  }
  if (end_stream) StartTimeout();
}

void Router::OnRequestTrailers(http::HeaderMapPtr trailers) {
  request_complete_ = true;
  if (replay_ok_) replay_trailers_ = std::make_unique<http::HeaderMap>(*trailers);
  if (encoder_ != nullptr) {
    encoder_->EncodeTrailers(*trailers);
  } else {
    request_trailers_ = std::move(trailers);
  }
  StartTimeout();
}

void Router::StartTimeout() {
  // A gRPC deadline already bounds the whole exchange.
  if (route_ == nullptr || route_->timeout.count() == 0 || done_ || timeout_what_ != nullptr) {
    return;
  }
  ArmTimeout(route_->timeout, nullptr);
}

void Router::ArmTimeout(std::chrono::milliseconds timeout, const char* what) {
  if (!timeout_) timeout_ = callbacks_.Dispatcher().CreateTimer([this] { OnTimeout(); });
  timeout_ms_ = timeout;
  timeout_what_ = what;
  timeout_->Enable(timeout);
}

void Router::OnTimeout() {
  if (cluster_ && cluster_->config->stats) cluster_->config->stats->requests_timeout.Inc();
  bool started = response_started_;
  // No response head within the route's timeout after the request went
  // out: the host's failure (one still waiting for a connection measures
  // the gateway's own queue).
  if (!started && attempt_sent_) {
    ReportOutlier(http::UpstreamResult::Kind::kPerTryTimeout, 0, false);
  }
  RecordAttemptResult(http::ErrorCause::kUpstreamTimeout);
  Abort();
  if (started) {
    callbacks_.ResetDownstream(http::ErrorCause::kUpstreamTimeout,
                               timeout_what_ != nullptr ? timeout_what_ : "route timeout");
  } else {
    callbacks_.SendLocalReply(http::ErrorCause::kUpstreamTimeout,
                              Cat("no response within ", timeout_ms_.count(), "ms",
                                  timeout_what_ != nullptr ? Cat(" (", timeout_what_, ")") : ""));
  }
}

void Router::OnPerTryTimeout() {
  if (cluster_ && cluster_->config->stats) cluster_->config->stats->requests_timeout.Inc();
  if (MaybeRetry(http::UpstreamResult::Kind::kPerTryTimeout, http::ErrorCause::kUpstreamTimeout, 0,
                 nullptr)) {
    return;
  }
  Abort();
  callbacks_.SendLocalReply(http::ErrorCause::kUpstreamTimeout, "per-try timeout");
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
  if (per_try_timer_) per_try_timer_->Disable();
  int status = headers->Status();
  if (!callbacks_.Info().attempt_log.empty()) {
    http::UpstreamAttemptInfo& attempt = callbacks_.Info().attempt_log.back();
    attempt.response_headers = callbacks_.Dispatcher().Now();
    attempt.status = status;
  }
  if (cluster_->config->stats && status >= 100 && status < 600) {
    cluster_->config->stats->responses[status / 100]->Inc();
  }
  // The last moment to try again: nothing of this response left yet.
  if (MaybeRetry(http::UpstreamResult::Kind::kResponseHeaders, http::ErrorCause::kNone, status,
                 headers.get())) {
    return;
  }
  response_started_ = true;
  http::StreamInfo& info = callbacks_.Info();
  info.upstream_response_headers = callbacks_.Dispatcher().Now();
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
  upstream_paused_ = false;
  if (per_try_timer_) per_try_timer_->Disable();
  if (cluster_ && cluster_->config->stats) cluster_->config->stats->resets.Inc();
  if (response_started_) {
    RecordAttemptResult(http::ErrorCause::kUpstreamResetAfterResponseStarted);
    if (timeout_) timeout_->Disable();
    Finish();
    callbacks_.ResetDownstream(http::ErrorCause::kUpstreamResetAfterResponseStarted, detail);
    return;
  }
  if (reason == http::StreamResetReason::kTransportFailure) {
    // The host refused the connection's TLS (our client certificate)
    // before processing anything: a failed connect.
    http::ErrorCause cause = http::ErrorCause::kUpstreamTlsHandshakeFailed;
    if (MaybeRetry(http::UpstreamResult::Kind::kConnectFailure, cause, 0, nullptr)) return;
    if (timeout_) timeout_->Disable();
    Finish();
    callbacks_.SendLocalReply(cause, detail);
    return;
  }
  http::ErrorCause cause = reason == http::StreamResetReason::kProtocolError
                               ? http::ErrorCause::kUpstreamMalformedResponse
                               : http::ErrorCause::kUpstreamResetBeforeResponse;
  bool refused = reason == http::StreamResetReason::kRefusedStream ||
                 reason == http::StreamResetReason::kGoAway;
  if (MaybeRetry(http::UpstreamResult::Kind::kReset, cause, 0, nullptr, refused)) return;
  if (timeout_) timeout_->Disable();
  Finish();
  callbacks_.SendLocalReply(cause, detail);
}

void Router::OnAboveWriteBufferHighWatermark() {
  // The upstream is not taking the request body as fast as the client
  // sends it.
  if (!paused_for_upstream_) {
    paused_for_upstream_ = true;
    callbacks_.ReadDisableDownstream(true);
  }
}

void Router::OnBelowWriteBufferLowWatermark() {
  if (paused_for_upstream_) {
    paused_for_upstream_ = false;
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
