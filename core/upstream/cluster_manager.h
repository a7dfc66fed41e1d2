// The clusters as one worker sees them: a balancer and connection pools per
// cluster, rebuilt when a new config snapshot arrives.
//
// Thread safety: one per worker; no locks.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <tuple>

#include "absl/container/flat_hash_map.h"
#include "core/event/dispatcher.h"
#include "core/upstream/cluster.h"
#include "core/upstream/conn_pool.h"

namespace portway::upstream {

class OutlierSink;

class ClusterManager {
 public:
  struct WorkerCluster {
    ClusterSnapshotPtr snapshot;
    LoadBalancerPtr lb;
    // The pools PoolFor() found for this cluster's hosts, by host: a
    // request's pool without building its key. Emptied by Update().
    absl::flat_hash_map<const Host*, ConnPool*> pools;
  };

  ClusterManager(event::Dispatcher& dispatcher, std::unique_ptr<Random> random);

  // Adopts a new set of clusters. Pools of hosts that remain are kept (their
  // keep-alive connections too); pools of hosts that left are drained.
  void Update(const std::map<std::string, ClusterSnapshotPtr>& clusters);
  WorkerCluster* Get(const std::string& name);
  // The same without a string copy (absl's heterogeneous lookup).
  const WorkerCluster* Find(std::string_view name) const;
  ConnPool& PoolFor(const ClusterSnapshot& cluster, const HostSharedPtr& host);
  // The same, remembered in the cluster (the request path).
  ConnPool& PoolFor(WorkerCluster& cluster, const HostSharedPtr& host);
  Random& random() { return *random_; }
  // Closes idle upstream connections (shutdown).
  void DrainAll();
  // Pools taken out of service by Update() and still closing connections
  // (dropped at a later Update() once idle).
  size_t DrainingPools() const { return draining_pools_.size(); }
  // Where the router reports a host's consecutive failures reaching an
  // outlier threshold (the process's OutlierDetector; null: nowhere). Set
  // before the worker starts.
  void set_outlier_sink(OutlierSink* sink) { outlier_sink_ = sink; }
  OutlierSink* outlier_sink() const { return outlier_sink_; }

 private:
  ConnPoolPtr MakePool(const ClusterSnapshot& cluster, const HostSharedPtr& host);

  event::Dispatcher& dispatcher_;
  std::unique_ptr<Random> random_;
  absl::flat_hash_map<std::string, WorkerCluster> clusters_;
  // Keyed by cluster name, host address and protocol.
  using PoolKey = std::tuple<std::string, std::string, http::Protocol>;
  std::map<PoolKey, ConnPoolPtr> pools_;
  std::vector<ConnPoolPtr> draining_pools_;
  OutlierSink* outlier_sink_ = nullptr;
};

}  // namespace portway::upstream
