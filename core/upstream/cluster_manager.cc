#include "core/upstream/cluster_manager.h"

#include <set>

namespace portway::upstream {
namespace {

bool SamePoolSettings(const ClusterConfig& a, const ClusterConfig& b) {
  return a.connect_timeout == b.connect_timeout && a.max_connections == b.max_connections &&
         a.max_pending_requests == b.max_pending_requests && a.idle_timeout == b.idle_timeout &&
         a.max_requests_per_connection == b.max_requests_per_connection;
}

}  // namespace

ClusterManager::ClusterManager(event::Dispatcher& dispatcher, std::unique_ptr<Random> random)
    : dispatcher_(dispatcher), random_(std::move(random)) {}

void ClusterManager::Update(const std::map<std::string, ClusterSnapshotPtr>& clusters) {
  absl::flat_hash_map<std::string, WorkerCluster> next;
  std::map<std::pair<std::string, std::string>, const Host*> live;
  for (const auto& [name, snapshot] : clusters) {
    auto it = clusters_.find(name);
    WorkerCluster wc;
    if (it != clusters_.end() && it->second.snapshot == snapshot) {
      wc = std::move(it->second);
    } else {
      wc.snapshot = snapshot;
      wc.lb = snapshot->lb_factory->Create(*random_);
    }
    for (const auto& host : snapshot->hosts) live[{name, host->addressString()}] = host.get();
    next.emplace(name, std::move(wc));
  }
  clusters_ = std::move(next);
  // Pools whose host or cluster is gone, or whose connection settings
  // changed: stop reusing them and drop them once idle; the next request
  // builds a fresh pool with the new settings.
  for (auto it = pools_.begin(); it != pools_.end();) {
    auto cluster = clusters_.find(it->first.first);
    // The pool must belong to the host object now in the snapshot (a new
    // weight makes a new Host).
    auto host = live.find(it->first);
    bool keep = host != live.end() && host->second == it->second->host().get() &&
                cluster != clusters_.end() &&
                SamePoolSettings(it->second->config(), *cluster->second.snapshot->config);
    if (!keep) {
      it->second->Drain();
      draining_pools_.push_back(std::move(it->second));
      it = pools_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto it = draining_pools_.begin(); it != draining_pools_.end();) {
    it = (*it)->Idle() ? draining_pools_.erase(it) : it + 1;
  }
}

ClusterManager::WorkerCluster* ClusterManager::Get(const std::string& name) {
  auto it = clusters_.find(name);
  return it == clusters_.end() ? nullptr : &it->second;
}

ConnPool& ClusterManager::PoolFor(const ClusterSnapshot& cluster, const HostSharedPtr& host) {
  auto key = std::make_pair(cluster.config->name, host->addressString());
  auto it = pools_.find(key);
  if (it != pools_.end()) return *it->second;
  http1::Limits limits;
  auto pool =
      std::make_unique<ConnPool>(dispatcher_, host, cluster.config, limits, /*buffer_limit=*/65536);
  ConnPool& ref = *pool;
  pools_.emplace(std::move(key), std::move(pool));
  return ref;
}

void ClusterManager::DrainAll() {
  for (auto& [key, pool] : pools_) pool->Drain();
}

}  // namespace portway::upstream
