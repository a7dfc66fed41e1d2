#include "core/upstream/cluster.h"

#include "core/server/stats.h"

namespace portway::upstream {

ClusterSnapshotPtr MakeClusterSnapshot(std::shared_ptr<const ClusterConfig> config,
                                       HostVector hosts, std::string dns_error) {
  auto snapshot = std::make_shared<ClusterSnapshot>();
  snapshot->lb_factory = MakeLoadBalancerFactory(config->lb_policy, hosts);
  if (config->stats != nullptr) {
    config->stats->hosts.Set(static_cast<int64_t>(hosts.size()));
    int64_t healthy = 0;
    for (const auto& h : hosts) healthy += h->usable() ? 1 : 0;
    config->stats->healthy_hosts.Set(healthy);
  }
  snapshot->config = std::move(config);
  snapshot->hosts = std::move(hosts);
  snapshot->dns_error = std::move(dns_error);
  return snapshot;
}

}  // namespace portway::upstream
