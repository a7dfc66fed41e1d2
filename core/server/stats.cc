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
    for (const auto& [labels, h] : series) {
      uint64_t cumulative = 0;
      for (size_t i = 0; i < Histogram::kBounds.size(); ++i) {
        cumulative += h->Bucket(i);
        out += Cat(name, "_bucket{",
                   WithLabel(labels, Cat("le=\"", FormatDouble(Histogram::kBounds[i]), "\"")), "} ",
                   cumulative, "\n");
      }
      cumulative += h->Bucket(Histogram::kBounds.size());
      out += Cat(name, "_bucket{", WithLabel(labels, "le=\"+Inf\""), "} ", cumulative, "\n");
      out += Cat(name, "_sum{", labels, "} ", FormatDouble(h->SumMs()), "\n");
      out += Cat(name, "_count{", labels, "} ", h->Count(), "\n");
    }
  }
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
          store.GetCounter("portway_downstream_protocol_errors_total", {{"listener", listener}})) {
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

ClusterStats::ClusterStats(Store& store, const std::string& cluster)
    : requests(store.GetCounter("portway_upstream_requests_total", {{"cluster", cluster}})),
      responses(ClassCounters(store, "portway_upstream_responses_total", "cluster", cluster)),
      connections_active(
          store.GetGauge("portway_upstream_connections_active", {{"cluster", cluster}})),
      connections_total(
          store.GetCounter("portway_upstream_connections_total", {{"cluster", cluster}})),
      connect_failures(
          store.GetCounter("portway_upstream_connect_failures_total", {{"cluster", cluster}})),
      connect_timeouts(
          store.GetCounter("portway_upstream_connect_timeouts_total", {{"cluster", cluster}})),
      pending_overflow(
          store.GetCounter("portway_upstream_pending_overflow_total", {{"cluster", cluster}})),
      requests_timeout(
          store.GetCounter("portway_upstream_request_timeouts_total", {{"cluster", cluster}})),
      resets(store.GetCounter("portway_upstream_resets_total", {{"cluster", cluster}})),
      connect_time(store.GetHistogram("portway_upstream_connect_time_ms", {{"cluster", cluster}})),
      request_time(store.GetHistogram("portway_upstream_request_time_ms", {{"cluster", cluster}})),
      healthy_hosts(store.GetGauge("portway_upstream_hosts_healthy", {{"cluster", cluster}})),
      hosts(store.GetGauge("portway_upstream_hosts", {{"cluster", cluster}})),
      requests_active(store.GetGauge("portway_upstream_requests_active", {{"cluster", cluster}})),
      requests_pending(store.GetGauge("portway_upstream_requests_pending", {{"cluster", cluster}})),
      retries_active(store.GetGauge("portway_upstream_retries_active", {{"cluster", cluster}})),
      overflow_max_pending(
          store.GetCounter("portway_upstream_limit_overflow_total",
                           {{"cluster", cluster}, {"limit", "max_pending_requests"}})),
      overflow_max_requests(store.GetCounter("portway_upstream_limit_overflow_total",
                                             {{"cluster", cluster}, {"limit", "max_requests"}})),
      overflow_max_retries(store.GetCounter("portway_upstream_limit_overflow_total",
                                            {{"cluster", cluster}, {"limit", "max_retries"}})) {}

}  // namespace portway::stats

namespace portway {

Counter& GetCounter(const std::string& name,
                    const std::vector<std::pair<std::string, std::string>>& labels) {
  return stats::GlobalStore().GetCounter(name, labels);
}

}  // namespace portway
