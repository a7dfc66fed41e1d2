// A cluster as the data plane sees it: its immutable settings, and a
// snapshot of its hosts with the balancer tables built for them.
//
// Thread safety: both types are immutable once built and shared by every
// worker through the config snapshot. A DNS re-resolution or a config
// change builds a new ClusterSnapshot; requests in flight keep the old one.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/http/codec.h"
#include "core/http/http2/options.h"
#include "core/tls/context.h"
#include "core/upstream/host.h"
#include "core/upstream/load_balancer.h"
#include "portway/health_checker.h"

namespace portway::stats {
struct ClusterStats;
}

namespace portway::upstream {

struct EndpointSpec {
  std::string host;  // IP literal (static) or name (dns)
  uint16_t port = 0;
  uint32_t weight = 1;
  // health_flag::kControlPlaneUnhealthy / kControlPlaneDraining, from the
  // endpoint's health_status.
  uint32_t control_plane_flags = 0;
};

// One active health check of a cluster (api: HealthCheck). Durations are
// resolved: no zero means "default" here.
struct HealthCheckSpec {
  enum class Kind { kHttp, kTcp, kGrpc, kCustom };
  Kind kind = Kind::kHttp;
  std::chrono::milliseconds interval{5000};
  std::chrono::milliseconds timeout{1000};
  std::chrono::milliseconds jitter{0};
  std::chrono::milliseconds no_traffic_interval{5000};
  std::chrono::milliseconds unhealthy_interval{5000};
  uint32_t unhealthy_threshold = 3;
  uint32_t healthy_threshold = 2;
  // kHttp: GET `path` with Host `host`; passes on a status in a range
  // (inclusive).
  std::string path = "/";
  std::string host;
  std::vector<std::pair<int, int>> expected_statuses{{200, 399}};
  // kTcp.
  std::string send;
  std::string expect;
  // kGrpc.
  std::string service;
  std::string authority;
  // kCustom: the registered checker's name and what its factory made.
  std::string custom_name;
  std::shared_ptr<const HealthProbeFactoryFn> custom;
  // Equal identities: the same check (a reload keeps its sessions and
  // their counts).
  std::string identity;
};

// Outlier detection of a cluster (api: OutlierDetection), defaults
// resolved; 0 turns a rule off.
struct OutlierConfig {
  uint32_t consecutive_5xx = 5;
  uint32_t consecutive_gateway_failure = 0;
  uint32_t consecutive_local_origin_failure = 5;
  uint32_t failure_percentage_threshold = 0;
  uint32_t failure_percentage_request_volume = 50;
  double success_rate_stdev_factor = 0;
  uint32_t success_rate_request_volume = 100;
  uint32_t minimum_hosts = 5;
  std::chrono::milliseconds interval{10000};
  std::chrono::milliseconds base_ejection_time{30000};
  std::chrono::milliseconds max_ejection_time{300000};
  uint32_t max_ejection_percent = 10;

  bool operator==(const OutlierConfig&) const = default;
};

struct ClusterConfig {
  std::string name;
  bool dns = false;
  std::vector<EndpointSpec> endpoints;
  LbPolicy lb_policy = LbPolicy::kRoundRobin;
  std::string hash_header;  // lowercase
  bool hash_source_ip = false;
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds dns_refresh_rate{5000};
  uint32_t max_connections = 1024;
  uint32_t max_pending_requests = 1024;
  std::chrono::milliseconds idle_timeout{60000};
  uint32_t max_requests_per_connection = 0;
  // What the pools speak to the hosts (HTTP/2 without TLS: h2c with prior
  // knowledge).
  http::Protocol protocol = http::Protocol::kHttp11;
  // `protocol: auto`: each TLS connection speaks what ALPN agreed on (h2,
  // else HTTP/1.1); `protocol` is then kHttp11, the pools' key.
  bool auto_protocol = false;
  // TLS to the hosts; null for plaintext.
  std::shared_ptr<const tls::ClientContext> tls;
  // A digest of what `tls` was made from: pools are kept across a reload
  // only if it did not change (a rotated certificate or CA drains them, so
  // new connections use the new one).
  std::string tls_identity;
  // With kHttp2: settings, limits and counters (by cluster).
  http::http2::Options http2;
  http::http2::Http2Stats http2_stats;
  stats::ClusterStats* stats = nullptr;
  // Host health: panic below this percentage of usable hosts (0: never),
  // active checks, outlier detection (null: off).
  uint32_t healthy_panic_threshold = 50;
  std::vector<HealthCheckSpec> health_checks;
  std::shared_ptr<const OutlierConfig> outlier;
};

struct ClusterSnapshot {
  std::shared_ptr<const ClusterConfig> config;
  HostVector hosts;
  std::shared_ptr<const LoadBalancerFactory> lb_factory;
  // The last DNS failure when it left the cluster without hosts: requests
  // then get 502 upstream_dns_failure rather than 503 no_healthy_upstream.
  std::string dns_error;
  // How many of `hosts` are usable, for the panic threshold; the hosts
  // keep it once the snapshot is published (HostHealthManager::Adopt).
  std::shared_ptr<HostSetHealth> health;
  // Parallel to `hosts`: the control-plane flags each should carry
  // (from its endpoint's health_status), applied at Adopt.
  std::vector<uint32_t> control_plane_flags;
  // dns clusters, parallel to `hosts`: the index of the endpoint each was
  // resolved from (a config that changes only health_status keeps the
  // hosts and recomputes their flags from it).
  std::vector<uint32_t> host_endpoints;
  // Main thread: Adopt() ran (the snapshot was published once).
  mutable bool adopted = false;
};
using ClusterSnapshotPtr = std::shared_ptr<const ClusterSnapshot>;

// Builds the snapshot for `hosts` (the balancer tables included).
// `control_plane_flags`: empty, or one entry per host.
ClusterSnapshotPtr MakeClusterSnapshot(std::shared_ptr<const ClusterConfig> config,
                                       HostVector hosts, std::string dns_error,
                                       std::vector<uint32_t> control_plane_flags = {},
                                       std::vector<uint32_t> host_endpoints = {});

}  // namespace portway::upstream
