// An upstream host: one address of a cluster, with the state the load
// balancers read on every pick.
//
// Thread safety: a Host is shared by every worker through a snapshot. Its
// identity (address, weight) never changes after construction; health and
// the request counters are atomics so workers read and update them without
// a lock. Health flags are written by the main thread only (through
// HostHealthManager: active checks, outlier detection, the control plane)
// and read by workers at every pick, so a change takes effect at the next
// pick without a new snapshot.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/network/address.h"
#include "core/upstream/outlier_host.h"

namespace portway::upstream {

enum class HealthState : uint8_t {
  kHealthy,
  kUnhealthy,  // failed health checks, ejected, or so said by the control plane
  kDraining,   // being removed; no new requests
};

const char* HealthStateName(HealthState state);

// Why a host is out of balancing: one bit per source, each set and cleared
// by its own source alone. A host is usable when no bit is set.
namespace health_flag {
constexpr uint32_t kActiveCheck = 1u << 0;            // failed its active checks
constexpr uint32_t kOutlier = 1u << 1;                // ejected by outlier detection
constexpr uint32_t kControlPlaneUnhealthy = 1u << 2;  // endpoint health_status UNHEALTHY
constexpr uint32_t kControlPlaneDraining = 1u << 3;   // endpoint health_status DRAINING
constexpr uint32_t kAll = kActiveCheck | kOutlier | kControlPlaneUnhealthy | kControlPlaneDraining;
constexpr int kCount = 4;
}  // namespace health_flag

// "active_check", "outlier", "control_plane_unhealthy", "control_plane_draining".
const char* HealthFlagName(uint32_t flag);
// The names of the bits of `flags`, in bit order.
std::vector<std::string> HealthFlagNames(uint32_t flags);

// The health of the hosts of one cluster snapshot as a whole, for the
// panic threshold: how many are unusable, kept by the main thread as flags
// change (O(1) per change) and read by every worker's balancer.
struct HostSetHealth {
  HostSetHealth(uint32_t total_hosts, uint32_t panic_threshold_percent)
      : total(total_hosts), panic_threshold(panic_threshold_percent) {}
  // Fewer than panic_threshold percent of the hosts are usable: balance
  // over every host.
  bool Panic() const {
    if (panic_threshold == 0 || total == 0) return false;
    const uint64_t usable_hosts = total - unusable.load(std::memory_order_relaxed);
    return usable_hosts * 100 < static_cast<uint64_t>(panic_threshold) * total;
  }
  const uint32_t total;
  const uint32_t panic_threshold;
  std::atomic<uint32_t> unusable{0};
};

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

  uint32_t healthFlags() const { return health_flags_.load(std::memory_order_relaxed); }
  bool usable() const { return healthFlags() == 0; }
  // The flags summed up: draining if the control plane drains it, else
  // unhealthy if any flag is set.
  HealthState health() const;
  // Main thread (tests too): sets or clears `flag`, keeping the attached
  // host set's count of unusable hosts. True when usable() changed.
  // HostHealthManager::Set wraps it with the log line, stats and reasons.
  bool SetHealthFlag(uint32_t flag, bool on);
  // Tests and tools: replaces the control-plane flags with `state`.
  void setHealth(HealthState state);
  // Main thread: the host set whose unusable count this host keeps (the
  // published snapshot's); counted in it at once if unusable.
  void AttachHealth(std::shared_ptr<HostSetHealth> set);

  // Main thread only (the admin page and the control-plane report read it
  // there): since when each flag is set (wall clock, ms since the epoch; 0
  // when clear), and the reason of the last change.
  struct HealthDetail {
    std::array<int64_t, health_flag::kCount> since_unix_ms{};
    std::string last_reason;
    int64_t last_change_unix_ms = 0;
  };
  HealthDetail& healthDetail() { return health_detail_; }
  const HealthDetail& healthDetail() const { return health_detail_; }

  // Requests in flight to this host, over all workers. Read by the
  // least-request balancer; updated by the router.
  std::atomic<uint64_t>& activeRequests() { return active_requests_; }
  uint64_t activeRequestCount() const { return active_requests_.load(std::memory_order_relaxed); }

  // Lifetime counters for /clusters.
  std::atomic<uint64_t> requests_total{0};
  std::atomic<uint64_t> connect_failures{0};
  std::atomic<uint64_t> active_connections{0};

  // Outlier detection's counters and ejection state (outlier_host.h).
  OutlierHostState& outlier() { return outlier_; }
  const OutlierHostState& outlier() const { return outlier_; }

 private:
  const std::string cluster_;
  const network::Address address_;
  const std::string address_string_;
  const std::string server_name_;
  const uint32_t weight_;
  std::atomic<uint32_t> health_flags_{0};
  std::shared_ptr<HostSetHealth> health_set_;  // main thread
  HealthDetail health_detail_;                 // main thread
  std::atomic<uint64_t> active_requests_{0};
  OutlierHostState outlier_;
};

using HostSharedPtr = std::shared_ptr<Host>;
using HostVector = std::vector<HostSharedPtr>;

}  // namespace portway::upstream
