// Counters, gauges and histograms, rendered in Prometheus text format by
// the admin /stats page.
//
// Thread safety: metrics are created on the main thread while a config is
// built (under a mutex) and are never destroyed while the process runs, so
// workers hold plain references. Updates are relaxed atomics: no lock on the
// request path.
//
//   Counter& c = store.GetCounter("portway_downstream_requests_total", {{"listener", "edge"}});
//   c.Inc();
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "core/http/http2/options.h"
#include "core/http/local_reply.h"
#include "core/tls/connection.h"
#include "portway/stats.h"

namespace portway::stats {

using Labels = std::vector<std::pair<std::string, std::string>>;

// Final, so calls on the core's own counters are not virtual.
class Counter final : public portway::Counter {
 public:
  void Inc(uint64_t n = 1) override { value_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t Value() const override { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

class Gauge final : public portway::Gauge {
 public:
  void Add(int64_t n = 1) override { value_.fetch_add(n, std::memory_order_relaxed); }
  void Sub(int64_t n = 1) override { value_.fetch_sub(n, std::memory_order_relaxed); }
  void Set(int64_t n) override { value_.store(n, std::memory_order_relaxed); }
  int64_t Value() const override { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> value_{0};
};

// A duration histogram, rendered in seconds (Prometheus' base unit) with
// fixed buckets from 0.5 ms to 60 s. Record() takes a std::chrono duration,
// so a caller cannot pass the wrong unit.
class Histogram {
 public:
  static constexpr std::array<double, 16> kBounds = {
      0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
  template <typename Rep, typename Period>
  void Record(std::chrono::duration<Rep, Period> d) {
    RecordNanos(std::chrono::duration_cast<std::chrono::nanoseconds>(d).count());
  }
  void RecordNanos(int64_t nanos);
  uint64_t Count() const { return count_.load(std::memory_order_relaxed); }
  double SumSeconds() const {
    return static_cast<double>(sum_ns_.load(std::memory_order_relaxed)) / 1e9;
  }
  uint64_t Bucket(size_t i) const { return buckets_[i].load(std::memory_order_relaxed); }

 private:
  std::array<std::atomic<uint64_t>, kBounds.size() + 1> buckets_{};
  std::atomic<uint64_t> count_{0};
  std::atomic<uint64_t> sum_ns_{0};
};

struct ClusterStats;

class Store {
 public:
  Counter& GetCounter(const std::string& name, const Labels& labels);
  Gauge& GetGauge(const std::string& name, const Labels& labels);
  Histogram& GetHistogram(const std::string& name, const Labels& labels);
  std::string RenderPrometheus() const;
  // Adds a cluster's block to what RenderPrometheus() shows (a cluster
  // name registered again replaces the block: the old one stays valid).
  void AddCluster(const std::string& cluster, const ClusterStats* stats);

 private:
  template <typename T>
  using Family = std::map<std::string, std::map<std::string, std::unique_ptr<T>>>;
  mutable std::mutex mutex_;
  Family<Counter> counters_;
  Family<Gauge> gauges_;
  Family<Histogram> histograms_;
  std::map<std::string, const ClusterStats*> clusters_;

  void RenderClusters(std::string& out) const;
};

// The process's store (the admin /stats page renders it); filters reach it
// through portway::GetCounter.
Store& GlobalStore();

// The HTTP/2 counters labelled key=value (listener or cluster).
http::http2::Http2Stats Http2Counters(Store& store, const std::string& key,
                                      const std::string& value);

// The metrics of one listener, shared by every worker.
struct ListenerStats {
  ListenerStats(Store& store, const std::string& listener);
  Counter& requests;
  std::array<Counter*, 6> responses;  // index = status / 100 (1xx..5xx); 0 unused
  std::array<Counter*, static_cast<size_t>(http::ErrorCause::kCount)> local_replies;
  Gauge& connections_active;
  Counter& connections_total;
  Counter& connections_overflow;
  Counter& protocol_errors;
  Counter& accept_errors;  // accept() failed (EMFILE, ...): accepting paused
  // HTTP/2 connections of this listener.
  http::http2::Http2Stats http2;
  // gRPC responses by grpc-status (0-16), local replies included.
  std::array<Counter*, 17> grpc_responses;
  // From the parsed request head to the end of the exchange, for every
  // stream that finishes (local replies and cut responses included).
  Histogram& request_duration;
  // TLS handshakes (listeners with tls): completed, of which resumed, and
  // failed by reason.
  Counter& tls_handshakes;
  Counter& tls_resumed;
  Counter& tls_failed_handshake;
  Counter& tls_failed_verify;
  // Feeds the four above; given to every TLS connection of the listener.
  std::shared_ptr<tls::HandshakeObserver> tls_observer;
};

// The metrics of one route, labelled by listener and route name.
struct RouteStats {
  RouteStats(Store& store, const std::string& listener, const std::string& route);
  Counter& requests;
  std::array<Counter*, 6> responses;
};

// The metrics of one cluster, in one block: a gateway may have tens of
// thousands of clusters, so they are not a map entry each in the Store;
// the Store renders every registered block at scrape time (names in
// stats.cc). Registered on construction, never destroyed (like every
// metric).
struct ClusterStats {
  ClusterStats(Store& store, const std::string& cluster);
  ClusterStats(const ClusterStats&) = delete;
  ClusterStats& operator=(const ClusterStats&) = delete;

  Counter requests;
  std::array<Counter, 6> response_counters;  // index = status / 100; 0 unused
  std::array<Counter*, 6> responses;         // &response_counters[i], 0: null
  Gauge connections_active;
  Counter connections_total;
  Counter connect_failures;
  Counter connect_timeouts;
  Counter pending_overflow;
  Counter requests_timeout;
  Counter resets;
  Histogram connect_time;
  Histogram request_time;
  Gauge healthy_hosts;
  Gauge hosts;
  // The cluster's load over every worker and host; the cluster-wide
  // limits (http::UpstreamLimits) are checked against these.
  Gauge requests_active;
  Gauge requests_pending;
  Gauge retries_active;
  Counter overflow_max_pending;
  Counter overflow_max_requests;
  Counter overflow_max_retries;
  // Host health (core/upstream/health.h): picks made in panic (too few
  // usable hosts: balanced over all), active check probes by result,
  // outlier ejections, and hosts entering/leaving the usable set.
  Counter lb_panic;
  Counter health_check_passed;
  Counter health_check_failed;
  Counter outlier_ejections;
  Gauge hosts_ejected;
  Counter hosts_became_unusable;
  Counter hosts_became_usable;
};

}  // namespace portway::stats
