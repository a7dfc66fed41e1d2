#include "core/upstream/cluster.h"

#include "core/server/stats.h"

namespace portway::upstream {

ClusterSnapshotPtr MakeClusterSnapshot(std::shared_ptr<const ClusterConfig> config,
                                       HostVector hosts, std::string dns_error,
                                       std::vector<uint32_t> control_plane_flags,
                                       std::vector<uint32_t> host_endpoints) {
  auto snapshot = std::make_shared<ClusterSnapshot>();
  // The count starts at zero: the hosts count themselves in when the
  // snapshot is published (HostHealthManager::Adopt).
  snapshot->health = std::make_shared<HostSetHealth>(static_cast<uint32_t>(hosts.size()),
                                                     config->healthy_panic_threshold);
  snapshot->lb_factory =
      MakeLoadBalancerFactory(config->lb_policy, hosts, snapshot->health, config->stats);
  snapshot->config = std::move(config);
  snapshot->hosts = std::move(hosts);
  snapshot->dns_error = std::move(dns_error);
  snapshot->control_plane_flags = std::move(control_plane_flags);
  snapshot->host_endpoints = std::move(host_endpoints);
  return snapshot;
}

}  // namespace portway::upstream
