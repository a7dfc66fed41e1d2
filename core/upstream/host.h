// An upstream host: one address of a cluster, with the state the load
// balancers read on every pick.
//
// Thread safety: a Host is shared by every worker through a snapshot. Its
// identity (address, weight) never changes after construction; health and
// the request counters are atomics so workers read and update them without
// a lock. Health is written by the main thread (DNS, health checks) and
// read by workers.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/network/address.h"

namespace portway::upstream {

enum class HealthState : uint8_t {
  kHealthy,
  kUnhealthy,  // failed health checks; skipped by every balancer
  kDraining,   // being removed; no new requests
};

const char* HealthStateName(HealthState state);

class Host {
 public:
  // `hostname`: the DNS name the address was resolved from ("" for an IP
  // endpoint).
  Host(std::string cluster, network::Address address, uint32_t weight, std::string hostname = "")
      : cluster_(std::move(cluster)),
        address_(address),
        address_string_(address.ToString()),
        server_name_(hostname.empty() ? address.Ip() : std::move(hostname)),
        weight_(weight == 0 ? 1 : weight) {}

  const std::string& cluster() const { return cluster_; }
  const network::Address& address() const { return address_; }
  const std::string& addressString() const { return address_string_; }
  // What TLS to this host sends as SNI and verifies (unless the cluster
  // names a server_name): its DNS name, else its IP.
  const std::string& serverName() const { return server_name_; }
  uint32_t weight() const { return weight_; }

  HealthState health() const { return health_.load(std::memory_order_relaxed); }
  void setHealth(HealthState state) { health_.store(state, std::memory_order_relaxed); }
  bool usable() const { return health() == HealthState::kHealthy; }

  // Requests in flight to this host, over all workers. Read by the
  // least-request balancer; updated by the router.
  std::atomic<uint64_t>& activeRequests() { return active_requests_; }
  uint64_t activeRequestCount() const { return active_requests_.load(std::memory_order_relaxed); }

  // Lifetime counters for /clusters.
  std::atomic<uint64_t> requests_total{0};
  std::atomic<uint64_t> connect_failures{0};
  std::atomic<uint64_t> active_connections{0};

 private:
  const std::string cluster_;
  const network::Address address_;
  const std::string address_string_;
  const std::string server_name_;
  const uint32_t weight_;
  std::atomic<HealthState> health_{HealthState::kHealthy};
  std::atomic<uint64_t> active_requests_{0};
};

using HostSharedPtr = std::shared_ptr<Host>;
using HostVector = std::vector<HostSharedPtr>;

}  // namespace portway::upstream
