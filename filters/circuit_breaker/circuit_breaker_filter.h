// portway.circuit_breaker: concurrency limits per cluster, and an
// open/half-open/closed breaker per cluster (see
// docs/filters/circuit_breaker.md). SDK only. Per-host ejection is the
// core's outlier detection (the cluster's outlier_detection), not this
// filter's.
//
// State: one ClusterState per cluster name for the whole process, shared by
// every listener, route and config version that sends to the cluster (a
// reload does not close an open breaker). Each request is judged with the
// thresholds of the filter config it passed through.
//
// Thread safety: Settings are immutable after Create(). A ClusterState is
// shared by every worker: its breaker is guarded by its mutex; its state
// is mirrored in an atomic so a closed breaker admits a request without
// the lock.
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "filters/circuit_breaker/breaker.h"
#include "portway/filter.h"
#include "portway/filter_factory.h"
#include "portway/stats.h"

namespace portway::filters::circuit_breaker {

struct Settings {
  http::UpstreamLimits limits{1024, 1024, 1024, 3};
  bool cluster_breaker = true;
  BreakerPolicy cluster_policy;
  bool on_connect_failure = true;
  bool on_reset = true;
  bool on_timeout = true;
  bool on_gateway_error = true;
  bool on_5xx = false;
  milliseconds slow_threshold{0};  // 0: slow responses are not failures
  std::string fallback_cluster;
};

// Everything the filter knows about one cluster.
class ClusterState {
 public:
  explicit ClusterState(const std::string& cluster);

  // `now` is the caller's clock (the stream's worker: FilterCallbacks::
  // Clock()); every worker's clock is the same monotonic one in production.
  // A probe carries the half-open period it was admitted in (`*period`)
  // back to Record / Release.
  Breaker::Admission AdmitCluster(const BreakerPolicy& policy, Time now, uint64_t* period);
  void RecordCluster(const BreakerPolicy& policy, Time now, bool failure, bool probe,
                     uint64_t period);
  void ReleaseClusterProbe(uint64_t period);
  // The /clusters view: {"state":...}.
  std::string Json(Time now);

  const std::string& name() const { return name_; }
  Counter& rejected() { return *rejected_; }
  Counter& fallback() { return *fallback_; }

 private:
  // After a change: the log line.
  void Published(const Transition& t);

  const std::string name_;
  std::mutex mutex_;
  Breaker cluster_;
  // Lock-free fast paths: cluster_.state(); whether the cluster breaker is
  // closed with no failure to forget.
  std::atomic<BreakerState> cluster_state_{BreakerState::kClosed};
  std::atomic<bool> cluster_clean_{true};
  // The thresholds last used, for the /clusters view of the window.
  BreakerPolicy cluster_policy_;
  Gauge* state_gauge_;
  Counter* cluster_opened_;
  Counter* rejected_;
  Counter* fallback_;
};

// The process-wide map of cluster states (never shrinks: a state is small
// and outlives config changes).
ClusterState& StateFor(std::string_view cluster);

class CircuitBreakerFilter : public http::Filter {
 public:
  // `settings` outlive the filter: the factory callback that owns them is
  // held by the config the stream runs on.
  explicit CircuitBreakerFilter(const Settings* settings) : settings_(settings) {}

  uint32_t Phases() const override {
    return http::Phase::kDecodeHeaders | http::Phase::kUpstreamResult |
           http::Phase::kEncodeHeaders | http::Phase::kStreamComplete;
  }
  void SetCallbacks(http::FilterCallbacks& callbacks) override { callbacks_ = &callbacks; }
  http::FilterHeadersStatus DecodeHeaders(http::HeaderMap& headers, bool end_stream) override;
  http::UpstreamResultStatus OnUpstreamResult(http::UpstreamResult& result) override;
  http::FilterHeadersStatus EncodeHeaders(http::HeaderMap& headers, bool end_stream) override;
  void OnStreamComplete(const http::StreamInfo& info) override;

 private:
  // Whether a response with this status, or a local reply with this
  // cause, is a failure; nullopt-like: `counts` false for no verdict.
  bool IsFailureStatus(int status) const;
  bool ClassifyCause(http::ErrorCause cause, bool* failure) const;
  // Whether a response head now is later than slow_threshold after the
  // request went upstream (on the attempt that answered).
  bool Slow() const;

  const Settings* const settings_;
  http::FilterCallbacks* callbacks_ = nullptr;
  ClusterState* cluster_ = nullptr;  // admitted to this cluster; null: not our business
  bool cluster_probe_ = false;
  uint64_t cluster_period_ = 0;
  bool cluster_recorded_ = false;
  int last_status_ = 0;  // the last upstream response head's status
};

class CircuitBreakerFactory : public http::FilterFactory {
 public:
  std::string_view Name() const override { return "portway.circuit_breaker"; }
  std::unique_ptr<google::protobuf::Message> NewConfig() const override;
  absl::StatusOr<http::FilterFactoryCallback> Create(
      const google::protobuf::Message& config) const override;
};

}  // namespace portway::filters::circuit_breaker
