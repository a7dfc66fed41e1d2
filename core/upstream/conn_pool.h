// A per-worker pool of HTTP/1.1 keep-alive connections to one upstream host.
//
// Thread safety: belongs to one worker; no locks.
//
//   Cancellable* handle = pool.NewStream(response_decoder, callbacks);
//   // later: callbacks.OnPoolReady(encoder, host) or OnPoolFailure(reason, detail);
//   // a caller that gives up first calls handle->Cancel().
//
// Limits: at most max_connections connections and max_pending_requests
// requests waiting for one; past that NewStream fails with kOverflow at once.
// A request may bring cluster-wide limits too (http::UpstreamLimits, from a
// filter): over max_connections in the whole cluster it waits instead of
// connecting (unless this pool has no connection at all, so it cannot wait
// forever); over max_pending_requests it fails with kOverflow.
#pragma once

#include <chrono>
#include <list>
#include <memory>
#include <string>

#include "core/event/dispatcher.h"
#include "core/http/codec.h"
#include "core/http/http1/codec.h"
#include "core/upstream/cluster.h"
#include "portway/filter.h"

namespace portway::upstream {

enum class PoolFailure {
  kConnectRefused,
  kConnectFailure,
  kConnectTimeout,
  kOverflow,
};

class PoolCallbacks {
 public:
  virtual ~PoolCallbacks() = default;
  // A connection is ready and bound to this request: encode on `encoder`.
  // `connect_ms` is how long its connect took (0 for a reused connection).
  virtual void OnPoolReady(http::RequestEncoder& encoder, double connect_ms) = 0;
  virtual void OnPoolFailure(PoolFailure reason, std::string_view detail) = 0;
};

class Cancellable {
 public:
  virtual ~Cancellable() = default;
  virtual void Cancel() = 0;
};

class ConnPool {
 public:
  ConnPool(event::Dispatcher& dispatcher, HostSharedPtr host,
           std::shared_ptr<const ClusterConfig> config, const http1::Limits& limits,
           size_t buffer_limit);
  ~ConnPool();

  // Either answers at once (returns null) or later through `callbacks`
  // (returns a handle to cancel with).
  Cancellable* NewStream(http::ResponseDecoder& decoder, PoolCallbacks& callbacks,
                         const http::UpstreamLimits& limits = {});
  // Closes idle connections and stops reusing busy ones.
  void Drain();
  bool Idle() const { return clients_.empty() && pending_.empty(); }
  const HostSharedPtr& host() const { return host_; }
  const ClusterConfig& config() const { return *config_; }
  size_t ConnectionCount() const { return clients_.size(); }

 private:
  class ActiveClient;
  // Counted in the cluster's pending gauge from creation to destruction.
  struct PendingRequest : public Cancellable {
    PendingRequest(ConnPool& pool, http::ResponseDecoder& decoder, PoolCallbacks& callbacks,
                   uint32_t max_cluster_connections);
    ~PendingRequest() override;
    void Cancel() override { pool.CancelPending(this); }
    ConnPool& pool;
    http::ResponseDecoder& decoder;
    PoolCallbacks& callbacks;
    const uint32_t max_cluster_connections;  // 0: no cluster-wide limit
  };
  using PendingPtr = std::unique_ptr<PendingRequest>;

  // Another connection is allowed for a request with this cluster-wide
  // limit (0: none), on top of the pool's own max_connections.
  bool MayConnect(uint32_t max_cluster_connections) const;
  void CreateClient();
  void ConnectForWaiting();
  void Attach(ActiveClient& client, http::ResponseDecoder& decoder, PoolCallbacks& callbacks,
              double connect_ms);
  void OnClientReady(ActiveClient& client, double connect_ms);
  void OnClientConnectFailed(ActiveClient& client, PoolFailure reason, std::string detail);
  void OnStreamComplete(ActiveClient& client, bool reusable);
  void OnClientClosed(ActiveClient& client);
  void RemoveClient(ActiveClient& client);
  void CancelPending(PendingRequest* request);
  size_t ConnectingCount() const;

  event::Dispatcher& dispatcher_;
  HostSharedPtr host_;
  std::shared_ptr<const ClusterConfig> config_;
  http1::Limits limits_;
  size_t buffer_limit_;
  std::list<std::unique_ptr<ActiveClient>> clients_;
  std::list<PendingPtr> pending_;
  bool draining_ = false;
};

}  // namespace portway::upstream
