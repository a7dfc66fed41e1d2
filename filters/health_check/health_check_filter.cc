#include "filters/health_check/health_check_filter.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "portway/filters/health_check/v1/health_check.pb.h"

namespace portway::filters::health_check {
namespace {

constexpr uint64_t kStatusBits = 16;
constexpr uint64_t kStatusMask = (uint64_t{1} << kStatusBits) - 1;

uint64_t Millis(MonotonicTime t) {
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  return ms < 0 ? 0 : static_cast<uint64_t>(ms);
}

std::chrono::milliseconds ToMillis(const google::protobuf::Duration& d) {
  return std::chrono::milliseconds(d.seconds() * 1000 + d.nanos() / 1000000);
}

// `target` is `path`, or `path` followed by a query. No scan of the rest
// of a longer target: most requests differ in their first bytes.
bool IsPath(std::string_view target, std::string_view path) {
  if (target.size() < path.size() || target.compare(0, path.size(), path) != 0) return false;
  return target.size() == path.size() || target[path.size()] == '?';
}

}  // namespace

int StatusCache::Get(MonotonicTime now) const {
  const uint64_t word = word_.load(std::memory_order_relaxed);
  if (word == 0 || (word >> kStatusBits) <= Millis(now)) return 0;
  return static_cast<int>(word & kStatusMask);
}

void StatusCache::Put(int status, MonotonicTime expires) {
  if (status <= 0 || static_cast<uint64_t>(status) > kStatusMask) return;
  word_.store((Millis(expires) << kStatusBits) | static_cast<uint64_t>(status),
              std::memory_order_relaxed);
}

http::FilterHeadersStatus HealthCheckFilter::DecodeHeaders(http::HeaderMap& headers, bool) {
  const Settings& s = *settings_;
  // Everything but the health check: one prefix compare, nothing kept.
  if (!IsPath(headers.Path(), s.path)) return http::FilterHeadersStatus::kContinue;

  const http::GatewayView& gateway = callbacks_->Gateway();
  if (gateway.Draining()) {
    Answer("draining", 503, "health_check_draining: the gateway is shutting down\n",
           kDrainingError);
    return http::FilterHeadersStatus::kStopIteration;
  }
  for (const auto& [cluster, percent] : s.min_healthy) {
    const http::ClusterHealth health = gateway.GetClusterHealth(cluster);
    if (health.AtLeastPercent(percent)) continue;
    std::string body =
        health.known
            ? absl::StrFormat("%s: cluster %s has %u of %u hosts usable (%.1f%%), below %u%%\n",
                              kClusterError, cluster, health.usable, health.total, health.Percent(),
                              percent)
            : absl::StrFormat("%s: cluster %s is not configured (counts as 0%%), below %u%%\n",
                              kClusterError, cluster, percent);
    Answer("cluster_unhealthy", 503, body, kClusterError);
    return http::FilterHeadersStatus::kStopIteration;
  }
  if (!s.pass_through) {
    Answer("ok", 200, "OK\n", "");
    return http::FilterHeadersStatus::kStopIteration;
  }
  if (s.cache_time.count() > 0) {
    if (const int status = s.cache.Get(callbacks_->Clock().Now()); status != 0) {
      Answer("cached", status,
             status >= 200 && status < 300 ? std::string("OK\n")
                                           : absl::StrCat("upstream answered ", status, "\n"),
             "");
      return http::FilterHeadersStatus::kStopIteration;
    }
    caching_ = true;
  }
  return http::FilterHeadersStatus::kContinue;
}

http::FilterHeadersStatus HealthCheckFilter::EncodeHeaders(http::HeaderMap& headers, bool) {
  if (answered_ != nullptr) {
    headers.Set(kHealthHeader, answered_);
  } else if (caching_) {
    // Whatever answered the check (the upstream, or the gateway's own 502
    // or 503 for it) is the answer until cache_time runs out.
    settings_->cache.Put(headers.Status(), callbacks_->Clock().Now() + settings_->cache_time);
  }
  return http::FilterHeadersStatus::kContinue;
}

void HealthCheckFilter::Answer(const char* health, int status, std::string_view body,
                               std::string_view error) {
  answered_ = health;
  callbacks_->SendLocalReply(status, body, error);
}

std::unique_ptr<google::protobuf::Message> HealthCheckFactory::NewConfig() const {
  return std::make_unique<v1::HealthCheck>();
}

absl::StatusOr<http::FilterFactoryCallback> HealthCheckFactory::Create(
    const google::protobuf::Message& message) const {
  const auto& config = static_cast<const v1::HealthCheck&>(message);
  auto settings = std::make_shared<Settings>();
  if (config.path().empty()) return absl::InvalidArgumentError("path: is required");
  if (config.path().front() != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("path: must start with \"/\", got \"", config.path(), "\""));
  }
  if (config.path().find('?') != std::string::npos) {
    return absl::InvalidArgumentError(
        "path: must not have a query (the query of a request is ignored when matching)");
  }
  settings->path = config.path();
  settings->pass_through = config.pass_through();
  if (config.has_cache_time()) {
    const auto& d = config.cache_time();
    if (d.seconds() < 0 || d.nanos() < 0) {
      return absl::InvalidArgumentError("cache_time: must not be negative");
    }
    settings->cache_time = ToMillis(d);
    if (settings->cache_time.count() > 0 && !settings->pass_through) {
      return absl::InvalidArgumentError(
          "cache_time: only applies with pass_through: true (a local answer is never cached)");
    }
  }
  for (const auto& [cluster, percent] : config.cluster_min_healthy_percent()) {
    if (cluster.empty()) {
      return absl::InvalidArgumentError("cluster_min_healthy_percent: a cluster name is empty");
    }
    if (percent > 100) {
      return absl::InvalidArgumentError(absl::StrCat(
          "cluster_min_healthy_percent[", cluster, "]: must be between 0 and 100, got ", percent));
    }
    settings->min_healthy.emplace_back(cluster, percent);
  }
  std::sort(settings->min_healthy.begin(), settings->min_healthy.end());
  return http::FilterFactoryCallback([settings]() -> http::FilterPtr {
    return std::make_unique<HealthCheckFilter>(settings.get());
  });
}

}  // namespace portway::filters::health_check
