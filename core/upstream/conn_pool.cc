#include "core/upstream/conn_pool.h"

#include <cerrno>
#include <cstring>
#include <limits>

#include "core/common/strings.h"
#include "core/server/stats.h"

namespace portway::upstream {

// One upstream connection and its codec.
class ConnPoolImpl::ActiveClient : public event::ConnectionCallbacks,
                                   public http::ClientConnectionCallbacks,
                                   public event::DeferredDeletable {
 public:
  // kRetired: takes no new stream, closes when its last one is done.
  enum class State { kConnecting, kReady, kRetired, kClosed };

  explicit ActiveClient(ConnPoolImpl& pool)
      : pool_(pool),
        host_(pool.host_),
        config_(pool.config_),
        connect_start_(pool.dispatcher_.Now()) {
    connection_ = pool.dispatcher_.Connect(pool.host_->address());
    if (pool.config_->tls) {
      // SNI and the name verified: the cluster's server_name, else the
      // name the host was resolved from, else its IP.
      connection_ = pool.config_->tls->Wrap(pool.dispatcher_, std::move(connection_),
                                            pool.host_->serverName());
    }
    connection_->SetCallbacks(this);
    connection_->SetWriteBufferLimit(pool.buffer_limit_);
    connect_timer_ = pool.dispatcher_.CreateTimer([this] { OnConnectTimeout(); });
    connect_timer_->Enable(pool.config_->connect_timeout);
    idle_timer_ = pool.dispatcher_.CreateTimer([this] { Close(); });
    pool.host_->active_connections.fetch_add(1, std::memory_order_relaxed);
    if (pool.config_->stats) {
      pool.config_->stats->connections_active.Add();
      pool.config_->stats->connections_total.Inc();
    }
  }

  // A deferred delete may run after the pool is gone: touch only what the
  // client holds itself.
  ~ActiveClient() override {
    host_->active_connections.fetch_sub(1, std::memory_order_relaxed);
    if (config_->stats) config_->stats->connections_active.Sub();
  }

  // event::ConnectionCallbacks
  void OnData(Buffer& data, bool end_stream) override {
    if (codec_ == nullptr) {
      // Bytes before the connect completed cannot happen; be safe anyway.
      data.Clear();
      return;
    }
    if (!data.empty()) codec_->Dispatch(data);
    if (end_stream && state_ != State::kClosed) {
      codec_->OnConnectionClose(/*clean_eof=*/true, "");
      Close();
    }
  }
  void OnEvent(event::ConnectionEvent event) override {
    switch (event) {
      case event::ConnectionEvent::kConnected: {
        connect_timer_->Disable();
        auto took = pool_.dispatcher_.Now() - connect_start_;
        connect_ms_ = std::chrono::duration<double, std::milli>(took).count();
        if (pool_.config_->stats) pool_.config_->stats->connect_time.Record(took);
        if (const event::TlsInfo* tls = connection_->Tls();
            tls != nullptr && pool_.config_->protocol == http::Protocol::kHttp2 &&
            !pool_.config_->auto_protocol && tls->alpn != "h2") {
          // RFC 9113 3.3: over TLS, HTTP/2 is agreed with ALPN; a host that
          // did not pick h2 would read the preface as a broken request.
          Fail(PoolFailure::kTlsHandshakeFailed, Cat("the host did not agree to HTTP/2 (ALPN: ",
                                                     tls->alpn.empty() ? "none" : tls->alpn, ")"));
          break;
        }
        state_ = State::kReady;
        // Made now, not at connect: with `protocol: auto` the codec is the
        // one ALPN agreed on.
        codec_ = pool_.codec_factory_(*connection_, *this);
        codec_->OnConnected();
        pool_.OnClientReady(*this);
        break;
      }
      case event::ConnectionEvent::kConnectFailed: {
        connect_timer_->Disable();
        if (const event::TlsInfo* tls = connection_->Tls();
            tls != nullptr && tls->failure != event::TlsInfo::Failure::kNone) {
          Fail(tls->failure == event::TlsInfo::Failure::kVerify ? PoolFailure::kTlsVerifyFailed
                                                                : PoolFailure::kTlsHandshakeFailed,
               tls->failure_detail);
          break;
        }
        int err = connection_->LastError();
        PoolFailure reason =
            err == ECONNREFUSED ? PoolFailure::kConnectRefused : PoolFailure::kConnectFailure;
        Fail(reason, strerror(err));
        break;
      }
      case event::ConnectionEvent::kRemoteClose:
      case event::ConnectionEvent::kLocalClose:
        if (state_ == State::kConnecting) {
          Fail(PoolFailure::kConnectFailure, strerror(connection_->LastError()));
          break;
        }
        if (state_ != State::kClosed) {
          // A TLS handshake that failed after it seemed done (the host
          // rejected our certificate) is a failed connect, not a reset.
          std::string_view tls_failure;
          if (const event::TlsInfo* tls = connection_->Tls();
              tls != nullptr && tls->failure != event::TlsInfo::Failure::kNone) {
            tls_failure = tls->failure_detail;
            pool_.host_->connect_failures.fetch_add(1, std::memory_order_relaxed);
            if (pool_.config_->stats) pool_.config_->stats->connect_failures.Inc();
          }
          codec_->OnConnectionClose(/*clean_eof=*/false, tls_failure);
          Close();
        }
        break;
    }
  }
  void OnAboveWriteBufferHighWatermark() override {
    if (codec_ != nullptr) codec_->OnAboveWriteBufferHighWatermark();
  }
  void OnBelowWriteBufferLowWatermark() override {
    if (codec_ != nullptr) codec_->OnBelowWriteBufferLowWatermark();
  }

  // http::ClientConnectionCallbacks
  void OnStreamDone(bool reusable) override {
    if (state_ == State::kClosed) return;
    pool_.OnStreamDone(*this, reusable);
  }
  void OnCapacityChanged() override {
    if (state_ == State::kClosed) return;
    pool_.OnCapacityChanged(*this);
  }

  // Can start another stream now.
  bool HasRoom() const {
    if (state_ != State::kReady) return false;
    uint32_t max = pool_.config_->max_requests_per_connection;
    if (max > 0 && streams_started_ >= max) return false;
    return codec_->ActiveStreams() < codec_->StreamCapacity();
  }
  // Every stream this connection may still carry has been started.
  bool Exhausted() const {
    uint32_t max = pool_.config_->max_requests_per_connection;
    if (max > 0 && streams_started_ >= max) return true;
    return codec_ != nullptr && codec_->StreamCapacity() == 0;
  }
  http::RequestEncoder& StartStream(http::ResponseDecoder& decoder, PoolStreamInfo& info) {
    info.reused = streams_started_ > 0 && !fresh_;
    info.connect_ms = info.reused ? 0 : connect_ms_;
    info.protocol = codec_->protocol();
    ++streams_started_;
    idle_timer_->Disable();
    return codec_->NewStream(decoder);
  }
  // Streams started while the connection's connect is being served count
  // as fresh ones (an HTTP/2 connection serves a whole queue at once).
  void SetFresh(bool fresh) { fresh_ = fresh; }
  void Retire() {
    if (state_ == State::kReady) state_ = State::kRetired;
  }
  void ArmIdleTimer() { idle_timer_->Enable(pool_.config_->idle_timeout); }
  State state() const { return state_; }
  uint32_t ActiveStreams() const { return codec_ != nullptr ? codec_->ActiveStreams() : 0; }
  uint32_t StreamCapacity() const { return codec_ != nullptr ? codec_->StreamCapacity() : 0; }
  // Where the pool keeps it (see ConnPoolImpl::Place).
  std::list<std::unique_ptr<ActiveClient>>::iterator self;

  void Close() {
    if (state_ == State::kClosed) return;
    CloseSilently();
    pool_.OnClientClosed(*this);
  }
  // Closes without telling the pool (the pool is being destroyed).
  void CloseSilently() {
    state_ = State::kClosed;
    connect_timer_->Disable();
    idle_timer_->Disable();
    connection_->Close(event::CloseType::kNoFlush);
  }

 private:
  void OnConnectTimeout() {
    if (pool_.config_->stats) pool_.config_->stats->connect_timeouts.Inc();
    Fail(PoolFailure::kConnectTimeout, "connect timeout");
  }
  void Fail(PoolFailure reason, std::string detail) {
    if (state_ == State::kClosed) return;
    state_ = State::kClosed;
    connect_timer_->Disable();
    connection_->Close(event::CloseType::kNoFlush);
    pool_.host_->connect_failures.fetch_add(1, std::memory_order_relaxed);
    if (pool_.config_->stats) pool_.config_->stats->connect_failures.Inc();
    pool_.OnClientConnectFailed(*this, reason, std::move(detail));
  }

  ConnPoolImpl& pool_;
  const HostSharedPtr host_;
  const std::shared_ptr<const ClusterConfig> config_;
  event::MonotonicTime connect_start_;
  double connect_ms_ = 0;
  event::ConnectionPtr connection_;
  std::unique_ptr<http::ClientConnection> codec_;
  event::TimerPtr connect_timer_;
  event::TimerPtr idle_timer_;
  State state_ = State::kConnecting;
  uint64_t streams_started_ = 0;
  bool fresh_ = false;
};

ConnPoolImpl::ConnPoolImpl(event::Dispatcher& dispatcher, HostSharedPtr host,
                           std::shared_ptr<const ClusterConfig> config, http::Protocol protocol,
                           ClientCodecFactory codec_factory, uint32_t expected_capacity,
                           size_t buffer_limit)
    : dispatcher_(dispatcher),
      host_(std::move(host)),
      config_(std::move(config)),
      protocol_(protocol),
      codec_factory_(std::move(codec_factory)),
      expected_capacity_(std::max<uint32_t>(expected_capacity, 1)),
      learn_capacity_(expected_capacity == 0),
      capacity_known_(expected_capacity != 0),
      buffer_limit_(buffer_limit) {}

ConnPoolImpl::~ConnPoolImpl() {
  // Callers cancel their requests before a pool goes away; close what is
  // left without calling back into this half-destroyed pool.
  pending_.clear();
  draining_ = true;
  std::list<std::unique_ptr<ActiveClient>> clients;
  clients.swap(clients_);
  for (auto& client : clients) {
    if (client->state() != ActiveClient::State::kClosed) client->CloseSilently();
  }
}

size_t ConnPoolImpl::StreamsPerNewConnection() const {
  // Unknown: a connection being made may take every waiting request.
  size_t each = capacity_known_ ? expected_capacity_ : std::numeric_limits<uint32_t>::max();
  if (config_->max_requests_per_connection > 0) {
    each = std::min<size_t>(each, config_->max_requests_per_connection);
  }
  return each;
}

size_t ConnPoolImpl::ConnectingCapacity() const {
  size_t each = StreamsPerNewConnection();
  size_t n = 0;
  for (const auto& c : clients_) n += c->state() == ActiveClient::State::kConnecting ? each : 0;
  return n;
}

ConnPoolImpl::PendingRequest::PendingRequest(ConnPoolImpl& pool, http::ResponseDecoder& decoder,
                                             PoolCallbacks& callbacks,
                                             uint32_t max_cluster_connections)
    : pool(pool),
      decoder(decoder),
      callbacks(callbacks),
      max_cluster_connections(max_cluster_connections) {
  if (pool.config_->stats) pool.config_->stats->requests_pending.Add();
}

ConnPoolImpl::PendingRequest::~PendingRequest() {
  if (pool.config_->stats) pool.config_->stats->requests_pending.Sub();
}

bool ConnPoolImpl::MayConnect(uint32_t max_cluster_connections) const {
  if (clients_.size() >= config_->max_connections) return false;
  if (max_cluster_connections == 0 || config_->stats == nullptr || clients_.empty()) return true;
  return config_->stats->connections_active.Value() < static_cast<int64_t>(max_cluster_connections);
}

Cancellable* ConnPoolImpl::NewStream(http::ResponseDecoder& decoder, PoolCallbacks& callbacks,
                                     const http::UpstreamLimits& limits) {
  // Connections with room are kept at the back, the most recently used
  // last (the least likely to have hit the upstream's own idle timeout):
  // one look says whether any has room.
  if (!clients_.empty() && clients_.back()->HasRoom()) {
    ActiveClient& client = *clients_.back();
    Attach(client, decoder, callbacks);
    if (client.state() != ActiveClient::State::kClosed) Place(client);
    return nullptr;
  }
  stats::ClusterStats* stats = config_->stats;
  if (limits.max_pending_requests > 0 && stats != nullptr &&
      stats->requests_pending.Value() >= static_cast<int64_t>(limits.max_pending_requests)) {
    stats->overflow_max_pending.Inc();
    callbacks.OnPoolFailure(
        PoolFailure::kOverflow,
        Cat("max_pending_requests (", limits.max_pending_requests, ") reached for the cluster"));
    return nullptr;
  }
  if (!MayConnect(limits.max_connections) && pending_.size() >= config_->max_pending_requests) {
    if (stats) stats->pending_overflow.Inc();
    callbacks.OnPoolFailure(PoolFailure::kOverflow, "too many pending requests");
    return nullptr;
  }
  pending_.push_back(
      std::make_unique<PendingRequest>(*this, decoder, callbacks, limits.max_connections));
  Cancellable* handle = pending_.back().get();
  ConnectForWaiting();
  return handle;
}

void ConnPoolImpl::CreateClient() {
  // Connecting: no room yet, so at the front.
  clients_.push_front(std::make_unique<ActiveClient>(*this));
  clients_.front()->self = clients_.begin();
}

void ConnPoolImpl::Place(ActiveClient& client) {
  if (client.HasRoom()) {
    clients_.splice(clients_.end(), clients_, client.self);
  } else {
    clients_.splice(clients_.begin(), clients_, client.self);
  }
}

// Enough connections on their way for the requests waiting, up to the
// limits (also while draining: draining retires connections, not requests).
void ConnPoolImpl::ConnectForWaiting() {
  // The request served next (the front) decides the cluster-wide limit.
  // (A connect reports its failure later, from the loop: this cannot
  // recurse.)
  while (!pending_.empty() && pending_.size() > ConnectingCapacity() &&
         MayConnect(pending_.front()->max_cluster_connections)) {
    CreateClient();
  }
}

void ConnPoolImpl::Attach(ActiveClient& client, http::ResponseDecoder& decoder,
                          PoolCallbacks& callbacks) {
  PoolStreamInfo info;
  http::RequestEncoder& encoder = client.StartStream(decoder, info);
  callbacks.OnPoolReady(encoder, info);
}

void ConnPoolImpl::ServePending(ActiveClient& client) {
  while (!pending_.empty() && client.HasRoom()) {
    PendingPtr request = std::move(pending_.front());
    pending_.pop_front();
    Attach(client, request->decoder, request->callbacks);
    // OnPoolReady may have ended that stream, and with it the connection.
    if (client.state() == ActiveClient::State::kClosed) return;
  }
  Place(client);
}

void ConnPoolImpl::OnClientReady(ActiveClient& client) {
  // With `protocol: auto` a connection says only now what it speaks: the
  // next ones are expected to speak the same.
  if (learn_capacity_) {
    expected_capacity_ = std::max<uint32_t>(client.StreamCapacity(), 1);
    capacity_known_ = true;
  }
  client.SetFresh(true);
  ServePending(client);
  if (client.state() == ActiveClient::State::kClosed) return;
  client.SetFresh(false);
  // It took fewer than expected (its limit, a request count cap): the rest
  // need connections of their own.
  if (!pending_.empty()) ConnectForWaiting();
  if (client.ActiveStreams() > 0) return;
  // Draining stops keeping idle connections, not serving waiting requests.
  if (draining_) {
    client.Close();
  } else {
    client.ArmIdleTimer();
  }
}

void ConnPoolImpl::OnClientConnectFailed(ActiveClient& client, PoolFailure reason,
                                         std::string detail) {
  RemoveClient(client);
  // The requests this connection was made for fail; others keep waiting
  // for the connections still being made.
  size_t fail = std::min(StreamsPerNewConnection(), pending_.size());
  while (fail > 0 && pending_.size() > ConnectingCapacity()) {
    PendingPtr request = std::move(pending_.front());
    pending_.pop_front();
    request->callbacks.OnPoolFailure(reason, detail);
    --fail;
  }
  // Whoever still waits without a connection on the way gets one.
  ConnectForWaiting();
}

void ConnPoolImpl::OnStreamDone(ActiveClient& client, bool reusable) {
  if (!reusable || draining_) client.Retire();
  if (client.state() == ActiveClient::State::kRetired || client.Exhausted()) {
    Retire(client);
    return;
  }
  ServePending(client);
  if (client.state() == ActiveClient::State::kClosed) return;
  if (client.ActiveStreams() == 0) client.ArmIdleTimer();
  Place(client);
}

void ConnPoolImpl::OnCapacityChanged(ActiveClient& client) {
  if (client.state() == ActiveClient::State::kConnecting) return;
  if (client.Exhausted()) {
    Retire(client);
    return;
  }
  ServePending(client);
  if (!pending_.empty()) ConnectForWaiting();
}

void ConnPoolImpl::Retire(ActiveClient& client) {
  client.Retire();
  if (client.ActiveStreams() == 0) {
    client.Close();
    // A waiting request gets a fresh connection in place of this one.
    ConnectForWaiting();
    return;
  }
  Place(client);
}

void ConnPoolImpl::OnClientClosed(ActiveClient& client) {
  RemoveClient(client);
  ConnectForWaiting();
}

void ConnPoolImpl::RemoveClient(ActiveClient& client) {
  auto it = client.self;
  dispatcher_.DeferredDelete(std::move(*it));
  clients_.erase(it);
}

void ConnPoolImpl::CancelPending(PendingRequest* request) {
  for (auto it = pending_.begin(); it != pending_.end(); ++it) {
    if (it->get() == request) {
      pending_.erase(it);
      return;
    }
  }
}

void ConnPoolImpl::Drain() {
  draining_ = true;
  std::vector<ActiveClient*> idle;
  for (auto& c : clients_) {
    c->Retire();
    if (c->state() != ActiveClient::State::kConnecting && c->ActiveStreams() == 0) {
      idle.push_back(c.get());
    }
  }
  for (ActiveClient* c : idle) c->Close();
}

}  // namespace portway::upstream
