// portway.retry: sends a failed request again, to a host not tried yet
// when the cluster has one (see docs/filters/retry.md). SDK only.
//
// Thread safety: RetryFactory runs on the main thread. Filters run on
// workers; the Shared state (settings, budget counters, stats) is read-only
// except for atomics and the per-cluster counter table, which is guarded by
// its mutex and touched only when a retry event is counted (never on a
// request that needs no retry), at most once per stream per event kind.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "portway/filter.h"
#include "portway/filter_factory.h"
#include "portway/stats.h"

namespace portway::filters::retry {

struct Settings {
  bool on_connect_failure = false;
  bool on_refused_stream = false;  // HTTP/2 upstreams: REFUSED_STREAM or GOAWAY
  // gRPC statuses (grpc-status of a trailers-only response) to retry on.
  std::set<int> grpc_statuses;
  bool on_reset = false;
  bool on_per_try_timeout = false;
  bool on_gateway_error = false;  // 502/503/504 responses
  bool on_5xx = false;            // any 5xx response
  bool on_status_codes = false;
  std::set<int> status_codes;
  bool on_headers = false;
  std::vector<std::pair<std::string, std::string>> headers;  // lowercase name, value ("" any)
  uint32_t num_retries = 1;
  std::chrono::milliseconds per_try_timeout{0};
  bool retry_non_idempotent = false;
  std::chrono::milliseconds base_interval{25};
  std::chrono::milliseconds max_interval{250};
  bool honor_retry_after = false;
  double budget_percent = 20;
  uint32_t min_retry_concurrency = 3;
  size_t max_replay_bytes = 65536;
};

// Shared by every stream of one configured filter, on every worker.
struct Shared {
  Settings settings;
  std::atomic<uint64_t> active_requests{0};
  std::atomic<uint64_t> active_retries{0};
  Counter* attempts = nullptr;   // retries sent
  Counter* succeeded = nullptr;  // requests answered after at least one retry
  Counter* exhausted = nullptr;  // retriable failures with no retry left
  Counter* budget_overflow = nullptr;
  Counter* replay_overflow = nullptr;
  // The counters of one cluster.
  struct Counters {
    Counter* attempts;
    Counter* succeeded;
    Counter* exhausted;
    Counter* budget_overflow;
    Counter* replay_overflow;
  };
  // With per_cluster (set by the factory), For() returns the counters
  // labelled with the request's cluster (cluster="NAME"), made at its first
  // event; otherwise the five pointers above (unit tests set them).
  bool per_cluster = false;
  Counters For(std::string_view cluster);
  std::mutex mutex;
  std::map<std::string, Counters, std::less<>> by_cluster;
};

class RetryFilter : public http::Filter {
 public:
  // `shared` outlives the filter: the factory callback that owns it is
  // held by the config the stream runs on.
  explicit RetryFilter(Shared* shared);
  ~RetryFilter() override;

  uint32_t Phases() const override {
    return http::Phase::kDecodeHeaders | http::Phase::kUpstreamAttempt |
           http::Phase::kUpstreamResult | http::Phase::kStreamComplete;
  }
  void SetCallbacks(http::FilterCallbacks& callbacks) override { callbacks_ = &callbacks; }
  http::FilterHeadersStatus DecodeHeaders(http::HeaderMap& headers, bool end_stream) override;
  http::UpstreamAttemptStatus OnUpstreamAttempt(http::UpstreamAttempt& attempt) override;
  http::UpstreamResultStatus OnUpstreamResult(http::UpstreamResult& result) override;
  void OnStreamComplete(const http::StreamInfo& info) override;

 private:
  bool Retriable(const http::UpstreamResult& result) const;
  bool GrpcStatusMatches(const http::UpstreamResult& result) const;
  std::chrono::milliseconds Backoff(const http::UpstreamResult& result);
  void EndRetry();
  // This stream's counters (its cluster's), looked up once.
  const Shared::Counters& Stats();

  Shared* const shared_;
  std::optional<Shared::Counters> stats_;
  http::FilterCallbacks* callbacks_ = nullptr;
  bool enabled_ = false;  // idempotent (or allowed) request
  // A non-idempotent request replayed only because the upstream may refuse
  // its stream, or because it is a gRPC call (always a POST) and retry_on
  // names gRPC statuses: retried on those and nothing else.
  bool limited_ = false;
  bool grpc_ = false;
  uint32_t retries_ = 0;   // retries asked for
  uint32_t sent_ = 0;      // retries the core sent (a limit may refuse one)
  bool in_retry_ = false;  // counted in active_retries
};

class RetryFactory : public http::FilterFactory {
 public:
  std::string_view Name() const override { return "portway.retry"; }
  std::unique_ptr<google::protobuf::Message> NewConfig() const override;
  absl::StatusOr<http::FilterFactoryCallback> Create(
      const google::protobuf::Message& config) const override;
};

}  // namespace portway::filters::retry
