#include "filters/circuit_breaker/circuit_breaker_filter.h"

#include <vector>

#include "portway/admin.h"
#include "portway/filters/circuit_breaker/v1/circuit_breaker.pb.h"
#include "portway/log.h"

namespace portway::filters::circuit_breaker {
namespace {

milliseconds ToMillis(const google::protobuf::Duration& d) {
  return milliseconds(d.seconds() * 1000 + d.nanos() / 1000000);
}

struct Registry {
  std::mutex mutex;
  std::map<std::string, std::unique_ptr<ClusterState>, std::less<>> states;
};

Registry& States() {
  static auto* registry = new Registry();  // never destroyed: workers may use it until exit
  return *registry;
}

std::string JsonString(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out.push_back('\\');
    if (static_cast<unsigned char>(c) < 0x20) continue;
    out.push_back(c);
  }
  out.push_back('"');
  return out;
}

std::string BreakerJson(const Breaker& b, const BreakerPolicy& policy, Time now) {
  uint64_t requests = 0;
  uint64_t failures = 0;
  b.WindowCounts(policy, now, &requests, &failures);
  std::string out = "{\"state\":\"" + std::string(BreakerStateName(b.state())) + "\"";
  out += ",\"reason\":" + JsonString(b.reason());
  out += ",\"opened_total\":" + std::to_string(b.opened_total());
  out += ",\"consecutive_failures\":" + std::to_string(b.consecutive_failures());
  out += ",\"window_requests\":" + std::to_string(requests);
  out += ",\"window_failures\":" + std::to_string(failures);
  if (b.state() == BreakerState::kOpen) {
    auto left = std::chrono::duration_cast<milliseconds>(b.open_until() - now).count();
    out += ",\"half_open_in_ms\":" + std::to_string(left > 0 ? left : 0);
  }
  if (b.state() != BreakerState::kClosed) {
    out += ",\"open_duration_ms\":" + std::to_string(b.open_duration().count());
  }
  out += "}";
  return out;
}

}  // namespace

ClusterState& StateFor(std::string_view cluster) {
  // Each worker keeps its own index of the states it has used, so the
  // shared map's lock is taken once per cluster and thread, and remembers
  // the last one (most requests of a worker go to the same few clusters).
  thread_local ClusterState* last = nullptr;
  if (last != nullptr && last->name() == cluster) return *last;
  thread_local std::map<std::string, ClusterState*, std::less<>> cache;
  auto cached = cache.find(cluster);
  if (cached != cache.end()) return *(last = cached->second);
  Registry& r = States();
  std::lock_guard<std::mutex> lock(r.mutex);
  auto it = r.states.find(cluster);
  if (it == r.states.end()) {
    std::string name(cluster);
    it = r.states.emplace(name, std::make_unique<ClusterState>(name)).first;
  }
  cache.emplace(std::string(cluster), it->second.get());
  return *(last = it->second.get());
}

ClusterState::ClusterState(const std::string& cluster)
    : name_(cluster),
      state_gauge_(&GetGauge("portway_circuit_breaker_state", {{"cluster", cluster}})),
      cluster_opened_(&GetCounter("portway_circuit_breaker_opened_total",
                                  {{"cluster", cluster}, {"scope", "cluster"}})),
      rejected_(&GetCounter("portway_circuit_breaker_rejected_total", {{"cluster", cluster}})),
      fallback_(&GetCounter("portway_circuit_breaker_fallback_total", {{"cluster", cluster}})) {}

void ClusterState::Published(const Transition& t) {
  std::string what = "cluster " + name_;
  LogLevel level = t.to == BreakerState::kOpen ? LogLevel::kWarn : LogLevel::kInfo;
  Log(level, "circuit breaker for " + what + ": " + BreakerStateName(t.from) + " -> " +
                 BreakerStateName(t.to) + " (" + t.reason + ")");
}

Breaker::Admission ClusterState::AdmitCluster(const BreakerPolicy& policy, Time now,
                                              uint64_t* period) {
  if (cluster_state_.load(std::memory_order_relaxed) == BreakerState::kClosed) {
    return Breaker::Admission::kYes;
  }
  Transition t;
  Breaker::Admission admission;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    admission = cluster_.Admit(policy, now, &t, period);
    if (t.changed) {
      cluster_state_.store(t.to, std::memory_order_relaxed);
      state_gauge_->Set(static_cast<int64_t>(t.to));
    }
  }
  if (t.changed) Published(t);
  return admission;
}

void ClusterState::RecordCluster(const BreakerPolicy& policy, Time now, bool failure, bool probe,
                                 uint64_t period) {
  // The common case, a success on a clean closed breaker without a
  // window, changes nothing: no lock.
  if (!failure && !probe && policy.failure_rate_threshold == 0 &&
      cluster_clean_.load(std::memory_order_relaxed)) {
    return;
  }
  Transition t;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    cluster_policy_ = policy;
    cluster_.Record(policy, now, failure, probe, &t, period);
    cluster_clean_.store(
        cluster_.state() == BreakerState::kClosed && cluster_.consecutive_failures() == 0,
        std::memory_order_relaxed);
    if (t.changed) {
      cluster_state_.store(t.to, std::memory_order_relaxed);
      state_gauge_->Set(static_cast<int64_t>(t.to));
      if (t.to == BreakerState::kOpen) cluster_opened_->Inc();
    }
  }
  if (t.changed) Published(t);
}

void ClusterState::ReleaseClusterProbe(uint64_t period) {
  std::lock_guard<std::mutex> lock(mutex_);
  cluster_.ReleaseProbe(period);
}

std::string ClusterState::Json(Time now) {
  std::lock_guard<std::mutex> lock(mutex_);
  return BreakerJson(cluster_, cluster_policy_, now);
}

bool CircuitBreakerFilter::IsFailureStatus(int status) const {
  const Settings& s = *settings_;
  if (s.on_5xx && status >= 500 && status <= 599) return true;
  return s.on_gateway_error && (status == 502 || status == 503 || status == 504);
}

// False: not an upstream outcome (a filter's reply, a limit): no verdict.
bool CircuitBreakerFilter::ClassifyCause(http::ErrorCause cause, bool* failure) const {
  const Settings& s = *settings_;
  switch (cause) {
    case http::ErrorCause::kUpstreamConnectRefused:
    case http::ErrorCause::kUpstreamConnectFailure:
    case http::ErrorCause::kUpstreamTlsHandshakeFailed:
    case http::ErrorCause::kUpstreamTlsVerifyFailed:
    case http::ErrorCause::kUpstreamDnsFailure:
      *failure = s.on_connect_failure || s.on_gateway_error || s.on_5xx;
      return true;
    case http::ErrorCause::kUpstreamConnectTimeout:
      *failure = s.on_connect_failure || s.on_timeout || s.on_gateway_error || s.on_5xx;
      return true;
    case http::ErrorCause::kUpstreamResetBeforeResponse:
    case http::ErrorCause::kUpstreamMalformedResponse:
    case http::ErrorCause::kUpstreamResetAfterResponseStarted:
      *failure = s.on_reset || s.on_gateway_error || s.on_5xx;
      return true;
    case http::ErrorCause::kUpstreamTimeout:
      *failure = s.on_timeout || s.on_gateway_error || s.on_5xx;
      return true;
    case http::ErrorCause::kNoHealthyUpstream:
      *failure = s.on_gateway_error || s.on_5xx;
      return true;
    default:
      return false;
  }
}

bool CircuitBreakerFilter::Slow() const {
  if (settings_->slow_threshold.count() == 0) return false;
  const auto& sent = callbacks_->Info().upstream_request_sent;
  return sent.has_value() && callbacks_->Clock().Now() - *sent >= settings_->slow_threshold;
}

http::FilterHeadersStatus CircuitBreakerFilter::DecodeHeaders(http::HeaderMap&, bool) {
  const Settings& s = *settings_;
  http::StreamInfo& info = callbacks_->Info();
  if (info.cluster.empty()) return http::FilterHeadersStatus::kContinue;  // not proxied
  callbacks_->SetUpstreamLimits(s.limits);
  ClusterState* state = &StateFor(info.cluster);
  if (!s.cluster_breaker) {
    cluster_ = state;
    return http::FilterHeadersStatus::kContinue;
  }
  uint64_t period = 0;
  Breaker::Admission admission =
      state->AdmitCluster(s.cluster_policy, callbacks_->Clock().Now(), &period);
  if (admission == Breaker::Admission::kNo && !s.fallback_cluster.empty() &&
      s.fallback_cluster != info.cluster) {
    ClusterState* fallback = &StateFor(s.fallback_cluster);
    Breaker::Admission f =
        fallback->AdmitCluster(s.cluster_policy, callbacks_->Clock().Now(), &period);
    if (f != Breaker::Admission::kNo) {
      state->fallback().Inc();
      callbacks_->SetUpstreamCluster(s.fallback_cluster);
      state = fallback;
      admission = f;
    }
  }
  if (admission == Breaker::Admission::kNo) {
    state->rejected().Inc();
    callbacks_->SendErrorReply(http::ErrorCause::kCircuitOpen,
                               "the breaker for cluster " + state->name() + " is open");
    return http::FilterHeadersStatus::kStopIteration;
  }
  cluster_ = state;
  cluster_probe_ = admission == Breaker::Admission::kProbe;
  cluster_period_ = period;
  return http::FilterHeadersStatus::kContinue;
}

http::UpstreamResultStatus CircuitBreakerFilter::OnUpstreamResult(http::UpstreamResult& result) {
  // The last response head, for the cluster's verdict on what the client
  // got (EncodeHeaders).
  if (cluster_ != nullptr && result.kind == http::UpstreamResult::Kind::kResponseHeaders) {
    last_status_ = result.status;
  }
  return http::UpstreamResultStatus::kContinue;
}

http::FilterHeadersStatus CircuitBreakerFilter::EncodeHeaders(http::HeaderMap&, bool) {
  if (cluster_ == nullptr || cluster_recorded_ || !settings_->cluster_breaker) {
    return http::FilterHeadersStatus::kContinue;
  }
  // What the client gets decides the cluster's verdict: a request answered
  // after a retry is a success.
  const http::StreamInfo& info = callbacks_->Info();
  bool failure = false;
  bool counts = true;
  if (info.local_reply) {
    counts = ClassifyCause(info.cause, &failure);
    // A timeout while the request still waited for a connection measures
    // the gateway's own queue (the limits), not the upstream.
    if (info.cause == http::ErrorCause::kUpstreamTimeout && !info.upstream_request_sent) {
      counts = false;
    }
  } else {
    // Not a local reply: the head is the last upstream response's.
    failure = IsFailureStatus(last_status_) || Slow();
  }
  cluster_recorded_ = true;
  if (counts) {
    cluster_->RecordCluster(settings_->cluster_policy, callbacks_->Clock().Now(), failure,
                            cluster_probe_, cluster_period_);
  } else if (cluster_probe_) {
    cluster_->ReleaseClusterProbe(cluster_period_);
  }
  cluster_probe_ = false;
  return http::FilterHeadersStatus::kContinue;
}

void CircuitBreakerFilter::OnStreamComplete(const http::StreamInfo&) {
  if (cluster_ == nullptr) return;
  if (!cluster_recorded_ && cluster_probe_) cluster_->ReleaseClusterProbe(cluster_period_);
  cluster_probe_ = false;
}

std::unique_ptr<google::protobuf::Message> CircuitBreakerFactory::NewConfig() const {
  return std::make_unique<v1::CircuitBreaker>();
}

namespace {

// Reads one breaker's fields; `prefix` names them in errors.
template <typename Message>
absl::Status ReadPolicy(const Message& m, const std::string& prefix, BreakerPolicy* p) {
  if (m.has_consecutive_failures()) p->consecutive_failures = m.consecutive_failures().value();
  if (m.failure_rate_threshold() > 100) {
    return absl::InvalidArgumentError(prefix +
                                      "failure_rate_threshold: must be a percentage (0-100)");
  }
  p->failure_rate_threshold = m.failure_rate_threshold();
  if (m.has_window()) {
    p->window = ToMillis(m.window());
    if (p->window.count() < 10) {
      return absl::InvalidArgumentError(prefix + "window: must be at least 10ms");
    }
  }
  if (m.has_min_requests()) p->min_requests = m.min_requests().value();
  if (m.has_open_duration()) {
    p->open_duration = ToMillis(m.open_duration());
    if (p->open_duration.count() <= 0) {
      return absl::InvalidArgumentError(prefix + "open_duration: must be at least 1ms");
    }
  }
  if (m.has_max_open_duration()) {
    p->max_open_duration = ToMillis(m.max_open_duration());
  } else {
    p->max_open_duration = std::max(p->max_open_duration, p->open_duration);
  }
  if (p->max_open_duration < p->open_duration) {
    return absl::InvalidArgumentError(prefix +
                                      "max_open_duration: must not be below open_duration");
  }
  if (m.has_half_open_requests()) {
    p->half_open_requests = m.half_open_requests().value();
    if (p->half_open_requests == 0) {
      return absl::InvalidArgumentError(prefix + "half_open_requests: must be at least 1");
    }
  }
  if (p->consecutive_failures == 0 && p->failure_rate_threshold == 0) {
    return absl::InvalidArgumentError(
        prefix +
        "consecutive_failures: with failure_rate_threshold 0 the breaker never opens "
        "(disable it instead)");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<http::FilterFactoryCallback> CircuitBreakerFactory::Create(
    const google::protobuf::Message& message) const {
  const auto& config = static_cast<const v1::CircuitBreaker&>(message);
  auto settings = std::make_shared<Settings>();
  Settings& s = *settings;
  if (config.has_max_connections()) s.limits.max_connections = config.max_connections().value();
  if (config.has_max_pending_requests()) {
    s.limits.max_pending_requests = config.max_pending_requests().value();
  }
  if (config.has_max_requests()) s.limits.max_requests = config.max_requests().value();
  if (config.has_max_retries()) s.limits.max_retries = config.max_retries().value();

  s.cluster_breaker = !config.cluster_breaker_disabled();
  if (s.cluster_breaker) {
    if (absl::Status st = ReadPolicy(config, "", &s.cluster_policy); !st.ok()) return st;
  }
  // Per-host breakers were replaced by the core's outlier detection:
  // `host: {disabled: true}` (the way to turn them off) still loads, a
  // host breaker's settings do not.
  if (config.host().has_breaker()) {
    return absl::InvalidArgumentError(
        "host.breaker: per-host breakers are gone; ejecting a failing host is the cluster's "
        "outlier_detection now (clusters[].outlier_detection, see "
        "docs/filters/health_check.md#outlier-detection)");
  }
  if (config.failure_on_size() > 0) {
    s.on_connect_failure = s.on_reset = s.on_timeout = s.on_gateway_error = false;
  }
  bool slow = false;
  for (int i = 0; i < config.failure_on_size(); ++i) {
    const std::string& on = config.failure_on(i);
    if (on == "connect-failure") {
      s.on_connect_failure = true;
    } else if (on == "reset") {
      s.on_reset = true;
    } else if (on == "timeout") {
      s.on_timeout = true;
    } else if (on == "gateway-error") {
      s.on_gateway_error = true;
    } else if (on == "5xx") {
      s.on_5xx = true;
    } else if (on == "slow") {
      slow = true;
    } else {
      return absl::InvalidArgumentError(
          "failure_on[" + std::to_string(i) + "]: unknown failure '" + on +
          "' (connect-failure, reset, timeout, gateway-error, 5xx, slow)");
    }
  }
  if (config.has_slow_threshold()) {
    s.slow_threshold = ToMillis(config.slow_threshold());
    if (s.slow_threshold.count() <= 0) {
      return absl::InvalidArgumentError("slow_threshold: must be at least 1ms");
    }
  }
  if (slow && s.slow_threshold.count() == 0) {
    return absl::InvalidArgumentError(
        "slow_threshold: failure_on has slow but no threshold is set");
  }
  if (!slow && s.slow_threshold.count() > 0) {
    return absl::InvalidArgumentError("failure_on: slow_threshold is set but slow is not listed");
  }
  s.fallback_cluster = config.fallback_cluster();
  if (!s.fallback_cluster.empty() && !s.cluster_breaker) {
    return absl::InvalidArgumentError(
        "fallback_cluster: needs the cluster breaker (cluster_breaker_disabled is set)");
  }
  // The /clusters view (registered once; the same provider serves every
  // config).
  static const bool registered = [] {
    RegisterClusterStatus("portway.circuit_breaker", [](std::string_view cluster) -> std::string {
      Registry& r = States();
      ClusterState* state = nullptr;
      {
        std::lock_guard<std::mutex> lock(r.mutex);
        auto it = r.states.find(cluster);
        if (it == r.states.end()) return "";
        state = it->second.get();
      }
      // The admin view has no stream: the real clock.
      return state->Json(RealTimeSource().Now());
    });
    return true;
  }();
  (void)registered;
  return http::FilterFactoryCallback([settings]() -> http::FilterPtr {
    return std::make_unique<CircuitBreakerFilter>(settings.get());
  });
}

}  // namespace portway::filters::circuit_breaker
