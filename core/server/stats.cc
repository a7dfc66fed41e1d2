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
  out += Cat(name, "_sum{", labels, "} ", FormatDouble(h.SumMs()), "\n");
  out += Cat(name, "_count{", labels, "} ", h.Count(), "\n");
}

}  // namespace

Store& GlobalStore() {
  static Store* store = new Store();
  return *store;
}

void Histogram::Record(double ms) {
  size_t i = 0;
  while (i < kBounds.size() && ms > kBounds[i]) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_us_.fetch_add(static_cast<uint64_t>(ms * 1000), std::memory_order_relaxed);
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
    out += Cat("# TYPE ", name, " counter\n");
    for (const auto& [labels, c] : series) {
      out += Cat(name, "{", labels, "} ", c->Value(), "\n");
    }
  }
  for (const auto& [name, series] : gauges_) {
    out += Cat("# TYPE ", name, " gauge\n");
    for (const auto& [labels, g] : series) {
      out += Cat(name, "{", labels, "} ", g->Value(), "\n");
    }
  }
  for (const auto& [name, series] : histograms_) {
    out += Cat("# TYPE ", name, " histogram\n");
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
          store.GetCounter("portway_downstream_accept_errors_total", {{"listener", listener}})) {
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
};
struct ClusterGauge {
  const char* name;
  const Gauge ClusterStats::*member;
};
const ClusterGauge kClusterGauges[] = {
    {"portway_upstream_connections_active", &ClusterStats::connections_active},
    {"portway_upstream_hosts_healthy", &ClusterStats::healthy_hosts},
    {"portway_upstream_hosts", &ClusterStats::hosts},
    {"portway_upstream_requests_active", &ClusterStats::requests_active},
    {"portway_upstream_requests_pending", &ClusterStats::requests_pending},
    {"portway_upstream_retries_active", &ClusterStats::retries_active},
};
struct ClusterHistogram {
  const char* name;
  const Histogram ClusterStats::*member;
};
const ClusterHistogram kClusterHistograms[] = {
    {"portway_upstream_connect_time_ms", &ClusterStats::connect_time},
    {"portway_upstream_request_time_ms", &ClusterStats::request_time},
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
    if (last != m.name) out += Cat("# TYPE ", m.name, " counter\n");
    last = m.name;
    for (const auto& [labels, s] : clusters) {
      out += Cat(m.name, "{", *m.extra ? WithLabel(labels, m.extra) : labels, "} ",
                 (s->*m.member).Value(), "\n");
    }
  }
  out += "# TYPE portway_upstream_responses_total counter\n";
  for (const auto& [labels, s] : clusters) {
    for (int i = 1; i <= 5; ++i) {
      out += Cat("portway_upstream_responses_total{", WithLabel(labels, Cat("class=\"", i, "xx\"")),
                 "} ", s->response_counters[i].Value(), "\n");
    }
  }
  for (const auto& m : kClusterGauges) {
    out += Cat("# TYPE ", m.name, " gauge\n");
    for (const auto& [labels, s] : clusters) {
      out += Cat(m.name, "{", labels, "} ", (s->*m.member).Value(), "\n");
    }
  }
  for (const auto& m : kClusterHistograms) {
    out += Cat("# TYPE ", m.name, " histogram\n");
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
