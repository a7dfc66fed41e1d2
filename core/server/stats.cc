#include "core/server/stats.h"

#include "core/common/strings.h"

#include "absl/strings/str_format.h"

namespace portway::stats {
namespace {

std::string RenderLabels(const Labels& labels) {
  std::string out;
  for (const auto& [k, v] : labels) {
    if (!out.empty()) out.push_back(',');
    out += Cat(k, "=\"");
    for (char c : v) {
      if (c == '"' || c == '\\') out.push_back('\\');
      if (c == '\n') {
        out.append("\\n");
        continue;
      }
      out.push_back(c);
    }
    out.push_back('"');
  }
  return out;
}

std::string WithLabel(const std::string& labels, std::string_view extra) {
  if (labels.empty()) return std::string(extra);
  return Cat(labels, ",", extra);
}

template <typename T, typename Map>
T& GetOrCreate(Map& family, const std::string& name, const Labels& labels) {
  auto& series = family[name];
  auto& slot = series[RenderLabels(labels)];
  if (!slot) slot = std::make_unique<T>();
  return *slot;
}

std::string FormatDouble(double v) { return absl::StrFormat("%.6g", v); }

// # HELP text of every metric family Portway itself creates. A family
// missing here (a custom module's) still gets a HELP line.
const std::map<std::string_view, std::string_view>& HelpTexts() {
  static const auto* help = new std::map<std::string_view, std::string_view>{
      {"portway_build_info", "Always 1; the labels name the version and the module ABI stamp."},
      {"portway_config_version",
       "Version of the configuration serving: 1 at start, +1 per applied reload or push."},
      {"portway_config_reloads_total",
       "Configuration changes tried, by source (sighup, control_plane) and result."},
      {"portway_downstream_requests_total", "Requests whose head was accepted."},
      {"portway_downstream_responses_total",
       "Responses completed to clients, local replies included, by status class."},
      {"portway_downstream_request_duration_seconds",
       "From the parsed request head to the end of the exchange, per listener."},
      {"portway_local_replies_total", "Requests that ended with each error cause."},
      {"portway_downstream_connections_active", "Open client connections."},
      {"portway_downstream_connections_total", "Client connections accepted and served."},
      {"portway_downstream_connections_overflow_total",
       "Connections closed at accept because of max_connections."},
      {"portway_downstream_protocol_errors_total", "Malformed requests and 413s."},
      {"portway_downstream_accept_errors_total",
       "Times a listener could not accept (out of file descriptors or memory) and paused."},
      {"portway_http2_streams_total", "HTTP/2 streams started, by listener or cluster."},
      {"portway_http2_rx_reset_total", "HTTP/2 RST_STREAM frames received."},
      {"portway_http2_tx_reset_total", "HTTP/2 RST_STREAM frames sent."},
      {"portway_http2_goaway_sent_total", "HTTP/2 GOAWAY frames sent (drain notices included)."},
      {"portway_http2_goaway_received_total", "HTTP/2 GOAWAY frames received."},
      {"portway_http2_protocol_errors_total",
       "HTTP/2 malformed messages and connection errors from the peer."},
      {"portway_http2_flood_total",
       "HTTP/2 connections ended by an abuse limit (rapid reset, floods)."},
      {"portway_http2_header_overflow_total", "HTTP/2 header blocks over max_header_list_bytes."},
      {"portway_tls_handshakes_total", "TLS handshakes completed on the listener."},
      {"portway_tls_sessions_resumed_total",
       "TLS handshakes that resumed a session (a ticket) instead of a full handshake."},
      {"portway_tls_handshake_failures_total",
       "TLS handshakes that failed: verify (a client certificate did not verify) or handshake."},
      {"portway_grpc_responses_total",
       "gRPC responses to clients by grpc-status, local replies included."},
      {"portway_route_requests_total", "Requests that matched the route."},
      {"portway_route_responses_total", "Responses completed for the route, by status class."},
      {"portway_upstream_requests_total", "Requests for which a host of the cluster was picked."},
      {"portway_upstream_responses_total", "Response heads received from the cluster's hosts."},
      {"portway_upstream_connections_active", "Open upstream connections."},
      {"portway_upstream_connections_total", "Upstream connections opened."},
      {"portway_upstream_connect_failures_total", "Failed connects, timeouts included."},
      {"portway_upstream_connect_timeouts_total", "Connects that hit connect_timeout."},
      {"portway_upstream_pending_overflow_total",
       "Requests refused with 503 upstream_overflow by a pool's own limits."},
      {"portway_upstream_request_timeouts_total", "Route timeouts."},
      {"portway_upstream_resets_total",
       "Upstream exchanges that failed after the request was sent."},
      {"portway_upstream_limit_overflow_total",
       "Requests or retries refused by a cluster-wide limit."},
      {"portway_upstream_hosts", "Hosts in the cluster."},
      {"portway_upstream_hosts_healthy", "Hosts in the cluster whose health state is healthy."},
      {"portway_upstream_requests_active", "Requests in flight to the cluster."},
      {"portway_upstream_requests_pending", "Requests waiting for an upstream connection."},
      {"portway_upstream_retries_active", "Retries in flight to the cluster."},
      {"portway_upstream_connect_duration_seconds",
       "TCP connect time of new upstream connections."},
      {"portway_upstream_request_duration_seconds",
       "From sending the request upstream to the end of the response."},
      {"portway_retry_attempts_total", "Retries started."},
      {"portway_retry_success_after_retry_total",
       "Requests answered below 500 after at least one retry."},
      {"portway_retry_exhausted_total", "Retriable failures with no retry left."},
      {"portway_retry_budget_overflow_total", "Retries refused by the retry budget."},
      {"portway_retry_replay_overflow_total",
       "Retriable failures whose body was too large to send again."},
      {"portway_circuit_breaker_state", "The cluster breaker: 0 closed, 1 open, 2 half-open."},
      {"portway_circuit_breaker_opened_total", "Breakers that opened, by scope."},
      {"portway_circuit_breaker_rejected_total", "Requests refused with 503 circuit_open."},
      {"portway_circuit_breaker_fallback_total", "Requests sent to the fallback cluster."},
  };
  return *help;
}

std::string HelpEscape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out.push_back(c);
    }
  }
  return out;
}

void RenderFamilyHead(std::string& out, std::string_view name, std::string_view type) {
  const auto& help = HelpTexts();
  auto it = help.find(name);
  std::string text = it != help.end() ? HelpEscape(it->second)
                                      : Cat("Portway metric ", name, " (no description).");
  out += Cat("# HELP ", name, " ", text, "\n# TYPE ", name, " ", type, "\n");
}

void RenderHistogram(std::string& out, const std::string& name, const std::string& labels,
                     const Histogram& h) {
  uint64_t cumulative = 0;
  for (size_t i = 0; i < Histogram::kBounds.size(); ++i) {
    cumulative += h.Bucket(i);
    out += Cat(name, "_bucket{",
               WithLabel(labels, Cat("le=\"", FormatDouble(Histogram::kBounds[i]), "\"")), "} ",
               cumulative, "\n");
  }
  cumulative += h.Bucket(Histogram::kBounds.size());
  out += Cat(name, "_bucket{", WithLabel(labels, "le=\"+Inf\""), "} ", cumulative, "\n");
  out += Cat(name, "_sum{", labels, "} ", absl::StrFormat("%.9g", h.SumSeconds()), "\n");
  out += Cat(name, "_count{", labels, "} ", h.Count(), "\n");
}

}  // namespace

Store& GlobalStore() {
  static Store* store = new Store();
  return *store;
}

void Histogram::RecordNanos(int64_t nanos) {
  if (nanos < 0) nanos = 0;  // a clock that stepped back: count it as instant
  double seconds = static_cast<double>(nanos) / 1e9;
  size_t i = 0;
  while (i < kBounds.size() && seconds > kBounds[i]) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_ns_.fetch_add(static_cast<uint64_t>(nanos), std::memory_order_relaxed);
}

Counter& Store::GetCounter(const std::string& name, const Labels& labels) {
  std::lock_guard<std::mutex> lock(mutex_);
  return GetOrCreate<Counter>(counters_, name, labels);
}

Gauge& Store::GetGauge(const std::string& name, const Labels& labels) {
  std::lock_guard<std::mutex> lock(mutex_);
  return GetOrCreate<Gauge>(gauges_, name, labels);
}

Histogram& Store::GetHistogram(const std::string& name, const Labels& labels) {
  std::lock_guard<std::mutex> lock(mutex_);
  return GetOrCreate<Histogram>(histograms_, name, labels);
}

std::string Store::RenderPrometheus() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::string out;
  for (const auto& [name, series] : counters_) {
    RenderFamilyHead(out, name, "counter");
    for (const auto& [labels, c] : series) {
      out += Cat(name, "{", labels, "} ", c->Value(), "\n");
    }
  }
  for (const auto& [name, series] : gauges_) {
    RenderFamilyHead(out, name, "gauge");
    for (const auto& [labels, g] : series) {
      out += Cat(name, "{", labels, "} ", g->Value(), "\n");
    }
  }
  for (const auto& [name, series] : histograms_) {
    RenderFamilyHead(out, name, "histogram");
    for (const auto& [labels, h] : series) RenderHistogram(out, name, labels, *h);
  }
  RenderClusters(out);
  return out;
}

namespace {
std::array<Counter*, 6> ClassCounters(Store& store, const std::string& name, const std::string& key,
                                      const std::string& value) {
  std::array<Counter*, 6> out{};
  for (int i = 1; i <= 5; ++i) {
    out[i] = &store.GetCounter(name, {{key, value}, {"class", Cat(i, "xx")}});
  }
  return out;
}
}  // namespace

http::http2::Http2Stats Http2Counters(Store& store, const std::string& key,
                                      const std::string& value) {
  const Labels labels{{key, value}};
  http::http2::Http2Stats s;
  s.streams_total = &store.GetCounter("portway_http2_streams_total", labels);
  s.rx_reset = &store.GetCounter("portway_http2_rx_reset_total", labels);
  s.tx_reset = &store.GetCounter("portway_http2_tx_reset_total", labels);
  s.goaway_sent = &store.GetCounter("portway_http2_goaway_sent_total", labels);
  s.goaway_received = &store.GetCounter("portway_http2_goaway_received_total", labels);
  s.protocol_errors = &store.GetCounter("portway_http2_protocol_errors_total", labels);
  s.flood = &store.GetCounter("portway_http2_flood_total", labels);
  s.header_overflow = &store.GetCounter("portway_http2_header_overflow_total", labels);
  return s;
}

ListenerStats::ListenerStats(Store& store, const std::string& listener)
    : requests(store.GetCounter("portway_downstream_requests_total", {{"listener", listener}})),
      responses(ClassCounters(store, "portway_downstream_responses_total", "listener", listener)),
      local_replies{},
      connections_active(
          store.GetGauge("portway_downstream_connections_active", {{"listener", listener}})),
      connections_total(
          store.GetCounter("portway_downstream_connections_total", {{"listener", listener}})),
      connections_overflow(store.GetCounter("portway_downstream_connections_overflow_total",
                                            {{"listener", listener}})),
      protocol_errors(
          store.GetCounter("portway_downstream_protocol_errors_total", {{"listener", listener}})),
      accept_errors(
          store.GetCounter("portway_downstream_accept_errors_total", {{"listener", listener}})),
      grpc_responses{},
      request_duration(store.GetHistogram("portway_downstream_request_duration_seconds",
                                          {{"listener", listener}})),
      tls_handshakes(store.GetCounter("portway_tls_handshakes_total", {{"listener", listener}})),
      tls_resumed(store.GetCounter("portway_tls_sessions_resumed_total", {{"listener", listener}})),
      tls_failed_handshake(store.GetCounter("portway_tls_handshake_failures_total",
                                            {{"listener", listener}, {"reason", "handshake"}})),
      tls_failed_verify(store.GetCounter("portway_tls_handshake_failures_total",
                                         {{"listener", listener}, {"reason", "verify"}})) {
  // Counters are never destroyed, so the observer may outlive these stats'
  // owner without harm.
  class Observer final : public tls::HandshakeObserver {
   public:
    explicit Observer(ListenerStats& stats) : stats_(stats) {}
    void OnHandshakeDone(const event::TlsInfo& info) override {
      stats_.tls_handshakes.Inc();
      if (info.session_reused) stats_.tls_resumed.Inc();
    }
    void OnHandshakeFailed(const event::TlsInfo& info) override {
      (info.failure == event::TlsInfo::Failure::kVerify ? stats_.tls_failed_verify
                                                        : stats_.tls_failed_handshake)
          .Inc();
    }

   private:
    ListenerStats& stats_;
  };
  tls_observer = std::make_shared<Observer>(*this);
  http2 = Http2Counters(store, "listener", listener);
  for (size_t i = 0; i < grpc_responses.size(); ++i) {
    grpc_responses[i] =
        &store.GetCounter("portway_grpc_responses_total",
                          {{"listener", listener}, {"grpc_status", std::to_string(i)}});
  }
  for (size_t i = 1; i < local_replies.size(); ++i) {
    local_replies[i] = &store.GetCounter(
        "portway_local_replies_total",
        {{"listener", listener},
         {"cause", std::string(http::InfoFor(static_cast<http::ErrorCause>(i)).name)}});
  }
}

RouteStats::RouteStats(Store& store, const std::string& listener, const std::string& route)
    : requests(store.GetCounter("portway_route_requests_total",
                                {{"listener", listener}, {"route", route}})),
      responses{} {
  for (int i = 1; i <= 5; ++i) {
    responses[i] =
        &store.GetCounter("portway_route_responses_total",
                          {{"listener", listener}, {"route", route}, {"class", Cat(i, "xx")}});
  }
}

ClusterStats::ClusterStats(Store& store, const std::string& cluster) : responses{} {
  for (int i = 1; i <= 5; ++i) responses[i] = &response_counters[i];
  store.AddCluster(cluster, this);
}

void Store::AddCluster(const std::string& cluster, const ClusterStats* stats) {
  std::lock_guard<std::mutex> lock(mutex_);
  clusters_[cluster] = stats;
}

namespace {

// The cluster metrics, as RenderPrometheus() writes them for each cluster.
struct ClusterCounter {
  const char* name;
  const char* extra;  // another label, or ""
  const Counter ClusterStats::*member;
};
const ClusterCounter kClusterCounters[] = {
    {"portway_upstream_requests_total", "", &ClusterStats::requests},
    {"portway_upstream_connections_total", "", &ClusterStats::connections_total},
    {"portway_upstream_connect_failures_total", "", &ClusterStats::connect_failures},
    {"portway_upstream_connect_timeouts_total", "", &ClusterStats::connect_timeouts},
    {"portway_upstream_pending_overflow_total", "", &ClusterStats::pending_overflow},
    {"portway_upstream_request_timeouts_total", "", &ClusterStats::requests_timeout},
    {"portway_upstream_resets_total", "", &ClusterStats::resets},
    {"portway_upstream_limit_overflow_total", "limit=\"max_pending_requests\"",
     &ClusterStats::overflow_max_pending},
    {"portway_upstream_limit_overflow_total", "limit=\"max_requests\"",
     &ClusterStats::overflow_max_requests},
    {"portway_upstream_limit_overflow_total", "limit=\"max_retries\"",
     &ClusterStats::overflow_max_retries},
    {"portway_upstream_lb_panic_total", "", &ClusterStats::lb_panic},
    {"portway_upstream_health_checks_total", "result=\"passed\"",
     &ClusterStats::health_check_passed},
    {"portway_upstream_health_checks_total", "result=\"failed\"",
     &ClusterStats::health_check_failed},
    {"portway_upstream_outlier_ejections_total", "", &ClusterStats::outlier_ejections},
    {"portway_upstream_host_transitions_total", "to=\"unusable\"",
     &ClusterStats::hosts_became_unusable},
    {"portway_upstream_host_transitions_total", "to=\"usable\"",
     &ClusterStats::hosts_became_usable},
};
struct ClusterGauge {
  const char* name;
  const Gauge ClusterStats::*member;
};
const ClusterGauge kClusterGauges[] = {
    {"portway_upstream_connections_active", &ClusterStats::connections_active},
    {"portway_upstream_hosts_healthy", &ClusterStats::healthy_hosts},
    {"portway_upstream_hosts", &ClusterStats::hosts},
    {"portway_upstream_hosts_ejected", &ClusterStats::hosts_ejected},
    {"portway_upstream_requests_active", &ClusterStats::requests_active},
    {"portway_upstream_requests_pending", &ClusterStats::requests_pending},
    {"portway_upstream_retries_active", &ClusterStats::retries_active},
};
struct ClusterHistogram {
  const char* name;
  const Histogram ClusterStats::*member;
};
const ClusterHistogram kClusterHistograms[] = {
    {"portway_upstream_connect_duration_seconds", &ClusterStats::connect_time},
    {"portway_upstream_request_duration_seconds", &ClusterStats::request_time},
};

}  // namespace

// Under the lock: every registered cluster's block, grouped by metric.
void Store::RenderClusters(std::string& out) const {
  std::vector<std::pair<std::string, const ClusterStats*>> clusters;
  clusters.reserve(clusters_.size());
  for (const auto& [name, stats] : clusters_) {
    clusters.emplace_back(RenderLabels({{"cluster", name}}), stats);
  }
  std::string_view last;
  for (const auto& m : kClusterCounters) {
    if (last != m.name) RenderFamilyHead(out, m.name, "counter");
    last = m.name;
    for (const auto& [labels, s] : clusters) {
      out += Cat(m.name, "{", *m.extra ? WithLabel(labels, m.extra) : labels, "} ",
                 (s->*m.member).Value(), "\n");
    }
  }
  RenderFamilyHead(out, "portway_upstream_responses_total", "counter");
  for (const auto& [labels, s] : clusters) {
    for (int i = 1; i <= 5; ++i) {
      out += Cat("portway_upstream_responses_total{", WithLabel(labels, Cat("class=\"", i, "xx\"")),
                 "} ", s->response_counters[i].Value(), "\n");
    }
  }
  for (const auto& m : kClusterGauges) {
    RenderFamilyHead(out, m.name, "gauge");
    for (const auto& [labels, s] : clusters) {
      out += Cat(m.name, "{", labels, "} ", (s->*m.member).Value(), "\n");
    }
  }
  for (const auto& m : kClusterHistograms) {
    RenderFamilyHead(out, m.name, "histogram");
    for (const auto& [labels, s] : clusters) RenderHistogram(out, m.name, labels, s->*m.member);
  }
}

}  // namespace portway::stats

namespace portway {

Counter& GetCounter(const std::string& name,
                    const std::vector<std::pair<std::string, std::string>>& labels) {
  return stats::GlobalStore().GetCounter(name, labels);
}

}  // namespace portway
