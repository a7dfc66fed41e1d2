#include "core/upstream/cluster_manager.h"

#include <set>

#include "core/upstream/codec_factory.h"

namespace portway::upstream {
namespace {

bool SamePoolSettings(const ClusterConfig& a, const ClusterConfig& b) {
  return a.connect_timeout == b.connect_timeout && a.max_connections == b.max_connections &&
         a.max_pending_requests == b.max_pending_requests && a.idle_timeout == b.idle_timeout &&
         a.max_requests_per_connection == b.max_requests_per_connection &&
         a.protocol == b.protocol && a.auto_protocol == b.auto_protocol &&
         ((a.protocol != http::Protocol::kHttp2 && !a.auto_protocol) || a.http2 == b.http2) &&
         (a.tls == nullptr) == (b.tls == nullptr) && a.tls_identity == b.tls_identity;
}

// Bytes a stream may have queued toward an upstream before its source is
// paused.
constexpr size_t kUpstreamBufferLimit = 65536;

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
    wc.pools.clear();  // pools may be dropped below
    for (const auto& host : snapshot->hosts) live[{name, host->addressString()}] = host.get();
    next.emplace(name, std::move(wc));
  }
  clusters_ = std::move(next);
  // Pools whose host or cluster is gone, or whose connection settings
  // changed: stop reusing them and drop them once idle; the next request
  // builds a fresh pool with the new settings.
  for (auto it = pools_.begin(); it != pools_.end();) {
    const auto& [cluster_name, address, protocol] = it->first;
    auto cluster = clusters_.find(cluster_name);
    // The pool must belong to the host object now in the snapshot (a new
    // weight makes a new Host).
    auto host = live.find({cluster_name, address});
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

const ClusterManager::WorkerCluster* ClusterManager::Find(std::string_view name) const {
  // Debian's abseil has its own string_view type, not std::string_view.
  auto it = clusters_.find(absl::string_view(name.data(), name.size()));
  return it == clusters_.end() ? nullptr : &it->second;
}

ConnPool& ClusterManager::PoolFor(const ClusterSnapshot& cluster, const HostSharedPtr& host) {
  const ClusterConfig& config = *cluster.config;
  PoolKey key{config.name, host->addressString(), config.protocol};
  auto it = pools_.find(key);
  if (it != pools_.end()) return *it->second;
  ConnPoolPtr pool = MakePool(cluster, host);
  ConnPool& ref = *pool;
  pools_.emplace(std::move(key), std::move(pool));
  return ref;
}

ConnPool& ClusterManager::PoolFor(WorkerCluster& cluster, const HostSharedPtr& host) {
  auto [it, inserted] = cluster.pools.try_emplace(host.get(), nullptr);
  if (inserted) it->second = &PoolFor(*cluster.snapshot, host);
  return *it->second;
}

ConnPoolPtr ClusterManager::MakePool(const ClusterSnapshot& cluster, const HostSharedPtr& host) {
  CodecChoice codec = CodecFor(dispatcher_, *cluster.config, kUpstreamBufferLimit);
  return std::make_unique<ConnPoolImpl>(dispatcher_, host, cluster.config, cluster.config->protocol,
                                        std::move(codec.factory), codec.expected_capacity,
                                        kUpstreamBufferLimit);
}

void ClusterManager::DrainAll() {
  for (auto& [key, pool] : pools_) pool->Drain();
}

}  // namespace portway::upstream
