#include "filters/retry/retry_filter.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <string>

#include "portway/filters/retry/v1/retry.pb.h"

namespace portway::filters::retry {
namespace {

std::chrono::milliseconds ToMillis(const google::protobuf::Duration& d) {
  return std::chrono::milliseconds(d.seconds() * 1000 + d.nanos() / 1000000);
}

bool Idempotent(std::string_view method) {
  return method == "GET" || method == "HEAD" || method == "OPTIONS" || method == "TRACE" ||
         method == "PUT" || method == "DELETE";
}

}  // namespace

Shared::Counters Shared::For(std::string_view cluster) {
  if (!per_cluster) return {attempts, succeeded, exhausted, budget_overflow, replay_overflow};
  std::lock_guard<std::mutex> lock(mutex);
  auto it = by_cluster.find(cluster);
  if (it == by_cluster.end()) {
    const std::vector<std::pair<std::string, std::string>> labels = {
        {"filter", "portway.retry"}, {"cluster", std::string(cluster)}};
    it = by_cluster
             .emplace(std::string(cluster),
                      Counters{&GetCounter("portway_retry_attempts_total", labels),
                               &GetCounter("portway_retry_success_after_retry_total", labels),
                               &GetCounter("portway_retry_exhausted_total", labels),
                               &GetCounter("portway_retry_budget_overflow_total", labels),
                               &GetCounter("portway_retry_replay_overflow_total", labels)})
             .first;
  }
  return it->second;
}

const Shared::Counters& RetryFilter::Stats() {
  if (!stats_) {
    stats_ = shared_->per_cluster ? shared_->For(callbacks_->Info().cluster) : shared_->For("");
  }
  return *stats_;
}

RetryFilter::RetryFilter(Shared* shared) : shared_(shared) {
  shared_->active_requests.fetch_add(1, std::memory_order_relaxed);
}

RetryFilter::~RetryFilter() {
  EndRetry();
  shared_->active_requests.fetch_sub(1, std::memory_order_relaxed);
}

void RetryFilter::EndRetry() {
  if (in_retry_) {
    in_retry_ = false;
    shared_->active_retries.fetch_sub(1, std::memory_order_relaxed);
  }
}

http::FilterHeadersStatus RetryFilter::DecodeHeaders(http::HeaderMap& headers, bool) {
  const Settings& s = shared_->settings;
  enabled_ = s.retry_non_idempotent || Idempotent(headers.Method());
  // A refused stream was never processed: safe to send again whatever the
  // method (RFC 9113 8.7).
  // Likewise a gRPC call whose status says to retry (gRPC's own retry
  // policy retries any method on the statuses it lists).
  const std::string_view* type = headers.Get("content-type");
  grpc_ = !s.grpc_statuses.empty() && type != nullptr && http::IsGrpcContentType(*type);
  limited_ = !enabled_ && (s.on_refused_stream || grpc_);
  if (limited_) enabled_ = true;
  if (enabled_) {
    callbacks_->EnableRequestReplay(s.max_replay_bytes);
    // A request retried only on a refused stream or a gRPC status keeps
    // the route's timeout: a per-try timeout would fail it, not retry it.
    if (s.per_try_timeout.count() > 0 && !limited_) {
      callbacks_->SetPerTryTimeout(s.per_try_timeout);
    }
  }
  return http::FilterHeadersStatus::kContinue;
}

bool RetryFilter::GrpcStatusMatches(const http::UpstreamResult& r) const {
  const Settings& s = shared_->settings;
  // Only a trailers-only response has its grpc-status in the head; one
  // that streamed messages first has committed them.
  if (s.grpc_statuses.empty() || r.kind != http::UpstreamResult::Kind::kResponseHeaders ||
      r.headers == nullptr) {
    return false;
  }
  return s.grpc_statuses.count(http::GrpcStatusOf(*r.headers)) > 0;
}

bool RetryFilter::Retriable(const http::UpstreamResult& r) const {
  const Settings& s = shared_->settings;
  if (r.kind == http::UpstreamResult::Kind::kReset && r.refused_stream && s.on_refused_stream) {
    return true;
  }
  if (limited_) return grpc_ && GrpcStatusMatches(r);
  if (GrpcStatusMatches(r)) return true;
  bool any_failure = s.on_gateway_error || s.on_5xx;
  switch (r.kind) {
    case http::UpstreamResult::Kind::kConnectFailure:
      return s.on_connect_failure || any_failure;
    case http::UpstreamResult::Kind::kReset:
      return s.on_reset || any_failure;
    case http::UpstreamResult::Kind::kPerTryTimeout:
      return s.on_per_try_timeout || any_failure;
    case http::UpstreamResult::Kind::kResponseHeaders:
      if (s.on_5xx && r.status >= 500 && r.status <= 599) return true;
      if (s.on_gateway_error && (r.status == 502 || r.status == 503 || r.status == 504)) {
        return true;
      }
      if (s.on_status_codes && s.status_codes.count(r.status) > 0) return true;

      if (s.on_headers && r.headers != nullptr) {
        for (const auto& [name, value] : s.headers) {
          const std::string_view* v = r.headers->Get(name);
          if (v != nullptr && (value.empty() || *v == value)) return true;
        }
      }
      return false;
  }
  return false;
}

std::chrono::milliseconds RetryFilter::Backoff(const http::UpstreamResult& r) {
  const Settings& s = shared_->settings;
  if (s.honor_retry_after && r.headers != nullptr && (r.status == 429 || r.status == 503)) {
    if (const std::string_view* v = r.headers->Get("retry-after")) {
      uint64_t seconds = 0;
      auto [end, ec] = std::from_chars(v->data(), v->data() + v->size(), seconds);
      if (ec == std::errc() && end == v->data() + v->size()) {
        return std::min(std::chrono::milliseconds(seconds * 1000), s.max_interval);
      }
    }
  }
  // Full jitter over an exponentially growing ceiling.
  uint64_t ceiling = static_cast<uint64_t>(s.base_interval.count());
  for (uint32_t i = 1; i < retries_ + 1 && ceiling < static_cast<uint64_t>(s.max_interval.count());
       ++i) {
    ceiling *= 2;
  }
  ceiling = std::min<uint64_t>(ceiling, static_cast<uint64_t>(s.max_interval.count()));
  // The worker's random source (deterministic in tests).
  return callbacks_->Random().Jitter(std::chrono::milliseconds(ceiling));
}

http::UpstreamResultStatus RetryFilter::OnUpstreamResult(http::UpstreamResult& result) {
  // The attempt that was a retry is over, whatever came of it.
  EndRetry();
  if (!enabled_ || !Retriable(result)) return http::UpstreamResultStatus::kContinue;
  if (callbacks_->Info().replay_overflow) {
    // Retriable, but the body is too large to send again: counted, and the
    // access log shows replay_overflow.
    Stats().replay_overflow->Inc();
    return http::UpstreamResultStatus::kContinue;
  }
  const Settings& s = shared_->settings;
  if (retries_ >= s.num_retries) {
    Stats().exhausted->Inc();
    return http::UpstreamResultStatus::kContinue;
  }
  // The budget: retries in flight stay a bounded share of all requests, so
  // a failing upstream is not hit with a multiple of its normal load.
  uint64_t active = shared_->active_requests.load(std::memory_order_relaxed);
  uint64_t allowed = std::max<uint64_t>(s.min_retry_concurrency,
                                        static_cast<uint64_t>(active * s.budget_percent / 100.0));
  if (shared_->active_retries.load(std::memory_order_relaxed) >= allowed) {
    Stats().budget_overflow->Inc();
    return http::UpstreamResultStatus::kContinue;
  }
  result.retry_delay = Backoff(result);
  ++retries_;
  in_retry_ = true;
  shared_->active_retries.fetch_add(1, std::memory_order_relaxed);
  return http::UpstreamResultStatus::kRetry;
}

http::UpstreamAttemptStatus RetryFilter::OnUpstreamAttempt(http::UpstreamAttempt& attempt) {
  // Counted when sent, not when asked for: a cluster limit (max_retries)
  // may refuse a retry, and the client may leave during the back-off.
  if (attempt.attempt > sent_ + 1) {
    sent_ = attempt.attempt - 1;
    Stats().attempts->Inc();
  }
  return http::UpstreamAttemptStatus::kContinue;
}

void RetryFilter::OnStreamComplete(const http::StreamInfo& info) {
  EndRetry();
  if (sent_ > 0 && info.status >= 200 && info.status < 500 && !info.local_reply) {
    Stats().succeeded->Inc();
  }
}

std::unique_ptr<google::protobuf::Message> RetryFactory::NewConfig() const {
  return std::make_unique<v1::Retry>();
}

absl::StatusOr<http::FilterFactoryCallback> RetryFactory::Create(
    const google::protobuf::Message& message) const {
  const auto& config = static_cast<const v1::Retry&>(message);
  auto shared = std::make_shared<Shared>();
  Settings& s = shared->settings;
  if (config.retry_on_size() == 0) s.on_connect_failure = true;
  for (int i = 0; i < config.retry_on_size(); ++i) {
    const std::string& on = config.retry_on(i);
    if (on == "connect-failure") {
      s.on_connect_failure = true;
    } else if (on == "reset") {
      s.on_reset = true;
    } else if (on == "per-try-timeout") {
      s.on_per_try_timeout = true;
    } else if (on == "gateway-error") {
      s.on_gateway_error = true;
    } else if (on == "5xx") {
      s.on_5xx = true;
    } else if (on == "retriable-status-codes") {
      s.on_status_codes = true;
    } else if (on == "retriable-headers") {
      s.on_headers = true;
    } else if (on == "refused-stream") {
      // An HTTP/2 upstream's REFUSED_STREAM, or a GOAWAY that left the
      // stream unprocessed; HTTP/1.1 upstreams never report one.
      s.on_refused_stream = true;
    } else if (on == "cancelled") {
      s.grpc_statuses.insert(1);
    } else if (on == "deadline-exceeded") {
      s.grpc_statuses.insert(4);
    } else if (on == "resource-exhausted") {
      s.grpc_statuses.insert(8);
    } else if (on == "internal") {
      s.grpc_statuses.insert(13);
    } else if (on == "unavailable") {
      s.grpc_statuses.insert(14);
    } else {
      return absl::InvalidArgumentError(
          "retry_on[" + std::to_string(i) + "]: unknown condition '" + on +
          "' (connect-failure, refused-stream, reset, per-try-timeout, gateway-error, 5xx, "
          "retriable-status-codes, retriable-headers; gRPC: cancelled, deadline-exceeded, "
          "resource-exhausted, internal, unavailable)");
    }
  }
  if (config.has_num_retries()) {
    if (config.num_retries().value() > 10) {
      return absl::InvalidArgumentError("num_retries: must be at most 10");
    }
    s.num_retries = config.num_retries().value();
  }
  if (config.has_per_try_timeout()) {
    s.per_try_timeout = ToMillis(config.per_try_timeout());
    if (s.per_try_timeout.count() <= 0) {
      return absl::InvalidArgumentError("per_try_timeout: must be at least 1ms");
    }
  }
  for (int i = 0; i < config.retriable_status_codes_size(); ++i) {
    uint32_t code = config.retriable_status_codes(i);
    if (code < 100 || code > 599) {
      return absl::InvalidArgumentError("retriable_status_codes[" + std::to_string(i) +
                                        "]: must be between 100 and 599");
    }
    s.status_codes.insert(static_cast<int>(code));
  }
  if (s.on_status_codes && s.status_codes.empty()) {
    return absl::InvalidArgumentError(
        "retriable_status_codes: retry_on has retriable-status-codes but none are listed");
  }
  for (int i = 0; i < config.retriable_headers_size(); ++i) {
    const auto& h = config.retriable_headers(i);
    if (h.name().empty()) {
      return absl::InvalidArgumentError("retriable_headers[" + std::to_string(i) +
                                        "].name: must not be empty");
    }
    std::string name = h.name();
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    s.headers.emplace_back(std::move(name), h.value());
  }
  if (s.on_headers && s.headers.empty()) {
    return absl::InvalidArgumentError(
        "retriable_headers: retry_on has retriable-headers but none are listed");
  }
  s.retry_non_idempotent = config.retry_non_idempotent();
  if (config.backoff().has_base_interval()) {
    s.base_interval = ToMillis(config.backoff().base_interval());
    if (s.base_interval.count() <= 0) {
      return absl::InvalidArgumentError("backoff.base_interval: must be at least 1ms");
    }
  }
  s.max_interval = config.backoff().has_max_interval() ? ToMillis(config.backoff().max_interval())
                                                       : s.base_interval * 10;
  if (s.max_interval < s.base_interval) {
    return absl::InvalidArgumentError("backoff.max_interval: must not be below base_interval");
  }
  s.honor_retry_after = config.honor_retry_after();
  if (config.budget().has_budget_percent()) {
    double p = config.budget().budget_percent().value();
    if (!(p >= 0 && p <= 100)) {
      return absl::InvalidArgumentError("budget.budget_percent: must be between 0 and 100");
    }
    s.budget_percent = p;
  }
  if (config.budget().has_min_retry_concurrency()) {
    s.min_retry_concurrency = config.budget().min_retry_concurrency().value();
  }
  if (config.has_max_replay_bytes()) {
    s.max_replay_bytes = static_cast<size_t>(config.max_replay_bytes().value());
  }
  // Counted per cluster (the request's), so a failing cluster shows in its
  // own series; the series appear with a cluster's first retry event.
  shared->per_cluster = true;
  return http::FilterFactoryCallback(
      [shared]() -> http::FilterPtr { return std::make_unique<RetryFilter>(shared.get()); });
}

}  // namespace portway::filters::retry
