// The configuration the data plane runs on: immutable, built on the main
// thread, handed to every worker as a shared_ptr<const Snapshot>. A request
// keeps the snapshot it started with; the next request sees the newest.
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <string>

#include "core/http/http1/codec.h"
#include "core/http/http2/options.h"
#include "core/network/address.h"
#include "core/router/route_table.h"
#include "core/server/access_log.h"
#include "core/upstream/cluster.h"
#include "portway/filter_factory.h"

namespace portway::stats {
struct ListenerStats;
}

namespace portway::server {

// State of a listener that outlives config reloads (the same name keeps it).
struct ListenerState {
  std::atomic<uint64_t> connections{0};
};

// listeners[].headers_with_underscores: what a request header whose name
// has an underscore gets.
enum class UnderscoreHeaders : uint8_t { kDrop, kAllow, kReject };

struct ListenerConfig {
  std::string name;
  network::Address address;
  std::string address_text;
  http::http1::ServerOptions codec;
  // listeners[].protocols: with both, a connection starting with the
  // HTTP/2 client preface speaks HTTP/2 (h2c with prior knowledge), any
  // other speaks HTTP/1.
  bool http1 = true;
  bool http2 = true;
  http::http2::Options http2_options;
  std::chrono::milliseconds request_headers_timeout{10000};
  std::chrono::milliseconds idle_timeout{60000};
  std::chrono::milliseconds stream_idle_timeout{300000};
  uint32_t max_connections = 16384;
  bool trust_forwarded_for = false;
  bool trust_request_id = false;
  UnderscoreHeaders headers_with_underscores = UnderscoreHeaders::kDrop;
  std::shared_ptr<const router::RouteTable> routes;
  // The HTTP filter chain, in order; each makes one filter per stream.
  struct Filter {
    std::string name;
    http::FilterFactoryCallback make;
  };
  std::vector<Filter> filters;
  stats::ListenerStats* stats = nullptr;
  std::shared_ptr<ListenerState> state;
  // listeners[].tls: every accepted connection is wrapped in TLS; null for
  // plaintext.
  tls::ServerContextPtr tls;
  // Counts handshakes for the listener's stats.
  std::shared_ptr<tls::HandshakeObserver> tls_observer;
};
using ListenerConfigPtr = std::shared_ptr<const ListenerConfig>;

// dns_error of a DNS cluster whose names were not looked up yet.
inline constexpr char kNotResolvedYet[] = "not resolved yet";

struct Snapshot {
  uint64_t version = 0;
  std::map<std::string, ListenerConfigPtr> listeners;
  std::map<std::string, upstream::ClusterSnapshotPtr> clusters;
  std::shared_ptr<AccessLogger> access_log;
  std::chrono::milliseconds drain_timeout{15000};
  // SIGTERM: serve on, failing health endpoints, this long before draining.
  std::chrono::milliseconds drain_delay{0};
  network::Address admin_address;
  // Failed requests each worker keeps for GET /failures (0: none).
  size_t failure_history_per_worker = 256;
  std::string config_json;  // for /config_dump
};
using SnapshotPtr = std::shared_ptr<const Snapshot>;

}  // namespace portway::server
