// Per-worker connection pools to one upstream host, for any protocol.
//
// Thread safety: a pool belongs to one worker; no locks.
//
//   Cancellable* handle = pool.NewStream(response_decoder, callbacks);
//   // later: callbacks.OnPoolReady(encoder, info) or OnPoolFailure(reason, detail);
//   // a caller that gives up first calls handle->Cancel().
//
// One implementation serves HTTP/1.1 and HTTP/2: a connection carries as
// many streams at once as its codec says (ClientConnection::StreamCapacity:
// 1 for HTTP/1.1, the peer's SETTINGS_MAX_CONCURRENT_STREAMS capped by the
// cluster's own limit for HTTP/2). What differs between the protocols lives
// in the codec, not here.
//
// Limits: at most max_connections connections and max_pending_requests
// requests waiting for a stream; past that NewStream fails with kOverflow at
// once. A request may bring cluster-wide limits too (http::UpstreamLimits,
// from a filter): over max_connections in the whole cluster it waits instead
// of connecting (unless this pool has no connection at all, so it cannot
// wait forever); over max_pending_requests it fails with kOverflow.
#pragma once

#include <chrono>
#include <functional>
#include <list>
#include <memory>
#include <string>

#include "core/event/dispatcher.h"
#include "core/http/codec.h"
#include "core/upstream/cluster.h"
#include "portway/filter.h"

namespace portway::upstream {

enum class PoolFailure {
  kConnectRefused,
  kConnectFailure,
  kConnectTimeout,
  kTlsHandshakeFailed,  // the TCP connect worked; TLS did not
  kTlsVerifyFailed,     // the host's certificate did not verify
  kOverflow,
};

// How the stream handed to OnPoolReady came about.
struct PoolStreamInfo {
  // How long the connection's connect took; 0 on a reused connection.
  double connect_ms = 0;
  // The connection carried a stream before (or carries others now): a
  // failure on it may be the upstream closing an idle connection.
  bool reused = false;
  http::Protocol protocol = http::Protocol::kHttp11;
};

class PoolCallbacks {
 public:
  virtual ~PoolCallbacks() = default;
  // A stream is ready and bound to this request: encode on `encoder`.
  virtual void OnPoolReady(http::RequestEncoder& encoder, const PoolStreamInfo& info) = 0;
  virtual void OnPoolFailure(PoolFailure reason, std::string_view detail) = 0;
};

class Cancellable {
 public:
  virtual ~Cancellable() = default;
  virtual void Cancel() = 0;
};

class ConnPool {
 public:
  virtual ~ConnPool() = default;
  // Either answers at once (returns null) or later through `callbacks`
  // (returns a handle to cancel with).
  virtual Cancellable* NewStream(http::ResponseDecoder& decoder, PoolCallbacks& callbacks,
                                 const http::UpstreamLimits& limits = {}) = 0;
  // Closes idle connections and stops starting streams on busy ones.
  virtual void Drain() = 0;
  // No connection and nobody waiting.
  virtual bool Idle() const = 0;
  virtual const HostSharedPtr& host() const = 0;
  virtual const ClusterConfig& config() const = 0;
  virtual http::Protocol protocol() const = 0;
  virtual size_t ConnectionCount() const = 0;
};
using ConnPoolPtr = std::unique_ptr<ConnPool>;

// Makes the codec a new upstream connection speaks.
using ClientCodecFactory = std::function<std::unique_ptr<http::ClientConnection>(
    event::Connection& connection, http::ClientConnectionCallbacks& callbacks)>;

class ConnPoolImpl final : public ConnPool {
 public:
  // `expected_capacity`: streams a connection is assumed to take before its
  // peer says otherwise (1 for HTTP/1.1), used to decide how many
  // connections to open for the requests waiting. 0: unknown (`protocol:
  // auto`, ALPN decides): one connection is opened at a time until one is
  // up, and each connection that comes up says what the next will take.
  ConnPoolImpl(event::Dispatcher& dispatcher, HostSharedPtr host,
               std::shared_ptr<const ClusterConfig> config, http::Protocol protocol,
               ClientCodecFactory codec_factory, uint32_t expected_capacity, size_t buffer_limit);
  ~ConnPoolImpl() override;

  Cancellable* NewStream(http::ResponseDecoder& decoder, PoolCallbacks& callbacks,
                         const http::UpstreamLimits& limits = {}) override;
  void Drain() override;
  bool Idle() const override { return clients_.empty() && pending_.empty(); }
  const HostSharedPtr& host() const override { return host_; }
  const ClusterConfig& config() const override { return *config_; }
  http::Protocol protocol() const override { return protocol_; }
  size_t ConnectionCount() const override { return clients_.size(); }

 private:
  class ActiveClient;
  // Counted in the cluster's pending gauge from creation to destruction.
  struct PendingRequest : public Cancellable {
    PendingRequest(ConnPoolImpl& pool, http::ResponseDecoder& decoder, PoolCallbacks& callbacks,
                   uint32_t max_cluster_connections);
    ~PendingRequest() override;
    void Cancel() override { pool.CancelPending(this); }
    ConnPoolImpl& pool;
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
  // Starts waiting requests on `client` while it has room.
  void ServePending(ActiveClient& client);
  void Attach(ActiveClient& client, http::ResponseDecoder& decoder, PoolCallbacks& callbacks);
  void OnClientReady(ActiveClient& client);
  void OnClientConnectFailed(ActiveClient& client, PoolFailure reason, std::string detail);
  void OnStreamDone(ActiveClient& client, bool reusable);
  void OnCapacityChanged(ActiveClient& client);
  // The client takes no new stream: close it now if it carries none.
  void Retire(ActiveClient& client);
  void OnClientClosed(ActiveClient& client);
  void RemoveClient(ActiveClient& client);
  // Keeps the order NewStream relies on: connections with room at the
  // back (the most recently used last), the others (connecting, full,
  // retired) at the front.
  void Place(ActiveClient& client);
  void CancelPending(PendingRequest* request);
  // Streams a connection not yet connected is expected to take.
  size_t StreamsPerNewConnection() const;
  // Streams the connections still connecting are expected to take.
  size_t ConnectingCapacity() const;

  event::Dispatcher& dispatcher_;
  HostSharedPtr host_;
  std::shared_ptr<const ClusterConfig> config_;
  const http::Protocol protocol_;
  ClientCodecFactory codec_factory_;
  uint32_t expected_capacity_;
  // expected_capacity_ is learned from the connections (protocol: auto).
  const bool learn_capacity_;
  bool capacity_known_;
  size_t buffer_limit_;
  // Those with room at the back, most recently used last (see Place).
  std::list<std::unique_ptr<ActiveClient>> clients_;
  std::list<PendingPtr> pending_;
  bool draining_ = false;
};

}  // namespace portway::upstream
