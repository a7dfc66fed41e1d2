// portway.health_check: the gateway's own health endpoint, for the load
// balancers in front of it (see README.md). Requests for the configured
// path are answered 503 from the moment a drain starts, or while a named
// cluster has too few usable hosts; otherwise 200 locally, or, with
// pass_through, by the route's upstream (its status cached for
// cache_time). Every other request passes untouched: one prefix compare.
//
// Thread safety: HealthCheckFactory runs on the main thread. Each
// HealthCheckFilter belongs to one stream. The shared Settings are
// immutable except the pass-through cache, one atomic word shared by every
// worker (no lock).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "portway/filter.h"
#include "portway/filter_factory.h"

namespace portway::filters::health_check {

// Set on every answer the filter makes itself: "ok", "draining",
// "cluster_unhealthy", or "cached" (a pass-through answer from the cache).
inline constexpr std::string_view kHealthHeader = "x-portway-health";
// x-portway-error of the two 503s.
inline constexpr std::string_view kDrainingError = "health_check_draining";
inline constexpr std::string_view kClusterError = "health_check_cluster_unhealthy";

// The last pass-through answer: its status and until when it is fresh,
// packed into one word so every worker reads and writes it without a lock.
class StatusCache {
 public:
  // The cached status if it is fresh at `now`, else 0.
  int Get(MonotonicTime now) const;
  void Put(int status, MonotonicTime expires);

 private:
  // (expiry in ms of the monotonic clock << 16) | status; 0 when empty.
  std::atomic<uint64_t> word_{0};
};

struct Settings {
  std::string path;
  bool pass_through = false;
  std::chrono::milliseconds cache_time{0};
  // (cluster, minimum percentage of usable hosts), sorted by name.
  std::vector<std::pair<std::string, uint32_t>> min_healthy;
  mutable StatusCache cache;
};

class HealthCheckFilter : public http::Filter {
 public:
  // `settings` outlive the filter: the factory callback that owns them is
  // held by the config the stream runs on.
  explicit HealthCheckFilter(const Settings* settings) : settings_(settings) {}

  uint32_t Phases() const override {
    return http::Phase::kDecodeHeaders | http::Phase::kEncodeHeaders;
  }
  void SetCallbacks(http::FilterCallbacks& callbacks) override { callbacks_ = &callbacks; }
  http::FilterHeadersStatus DecodeHeaders(http::HeaderMap& headers, bool end_stream) override;
  http::FilterHeadersStatus EncodeHeaders(http::HeaderMap& headers, bool end_stream) override;

 private:
  void Answer(const char* health, int status, std::string_view body, std::string_view error);

  const Settings* const settings_;
  http::FilterCallbacks* callbacks_ = nullptr;
  // What this filter answered itself (x-portway-health), or null.
  const char* answered_ = nullptr;
  // A pass-through check on its way upstream: its answer is cached.
  bool caching_ = false;
};

class HealthCheckFactory : public http::FilterFactory {
 public:
  std::string_view Name() const override { return "portway.health_check"; }
  std::unique_ptr<google::protobuf::Message> NewConfig() const override;
  absl::StatusOr<http::FilterFactoryCallback> Create(
      const google::protobuf::Message& config) const override;
};

}  // namespace portway::filters::health_check
