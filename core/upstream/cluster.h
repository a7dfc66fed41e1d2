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

namespace portway::stats {
struct ClusterStats;
}

namespace portway::upstream {

struct EndpointSpec {
  std::string host;  // IP literal (static) or name (dns)
  uint16_t port = 0;
  uint32_t weight = 1;
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
};

struct ClusterSnapshot {
  std::shared_ptr<const ClusterConfig> config;
  HostVector hosts;
  std::shared_ptr<const LoadBalancerFactory> lb_factory;
  // The last DNS failure when it left the cluster without hosts: requests
  // then get 502 upstream_dns_failure rather than 503 no_healthy_upstream.
  std::string dns_error;
};
using ClusterSnapshotPtr = std::shared_ptr<const ClusterSnapshot>;

// Builds the snapshot for `hosts` (the balancer tables included).
ClusterSnapshotPtr MakeClusterSnapshot(std::shared_ptr<const ClusterConfig> config,
                                       HostVector hosts, std::string dns_error);

}  // namespace portway::upstream
