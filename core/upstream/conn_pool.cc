#include "core/upstream/conn_pool.h"

#include <cerrno>
#include <cstring>

#include "core/common/strings.h"
#include "core/server/stats.h"
#include "spdlog/spdlog.h"

namespace portway::upstream {

// One upstream connection and its codec.
class ConnPool::ActiveClient : public event::ConnectionCallbacks,
                               public http::ClientConnectionCallbacks,
                               public event::DeferredDeletable {
 public:
  enum class State { kConnecting, kIdle, kBusy, kClosed };

  ActiveClient(ConnPool& pool)
      : pool_(pool),
        host_(pool.host_),
        config_(pool.config_),
        connect_start_(pool.dispatcher_.Now()) {
    connection_ = pool.dispatcher_.Connect(pool.host_->address());
    connection_->SetCallbacks(this);
    connection_->SetWriteBufferLimit(pool.buffer_limit_);
    codec_ = std::make_unique<http::http1::ClientConnectionImpl>(*connection_, *this, pool.limits_,
                                                                 pool.buffer_limit_);
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
    if (state_ == State::kIdle && !data.empty()) {
      // Bytes no request asked for: the connection is out of step.
      data.Clear();
      Close();
      return;
    }
    if (!data.empty()) codec_->Dispatch(data);
    if (end_stream && state_ != State::kClosed) {
      codec_->OnConnectionClose(/*clean_eof=*/true);
      Close();
    }
  }
  void OnEvent(event::ConnectionEvent event) override {
    switch (event) {
      case event::ConnectionEvent::kConnected: {
        connect_timer_->Disable();
        auto took = pool_.dispatcher_.Now() - connect_start_;
        double ms = std::chrono::duration<double, std::milli>(took).count();
        if (pool_.config_->stats) pool_.config_->stats->connect_time.Record(took);
        state_ = State::kIdle;
        pool_.OnClientReady(*this, ms);
        break;
      }
      case event::ConnectionEvent::kConnectFailed: {
        connect_timer_->Disable();
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
          codec_->OnConnectionClose(/*clean_eof=*/false);
          Close();
        }
        break;
    }
  }
  void OnAboveWriteBufferHighWatermark() override { codec_->OnAboveWriteBufferHighWatermark(); }
  void OnBelowWriteBufferLowWatermark() override { codec_->OnBelowWriteBufferLowWatermark(); }

  // http::ClientConnectionCallbacks
  void OnStreamDone(bool reusable) override {
    ++requests_served_;
    pool_.OnStreamComplete(*this, reusable);
  }

  void SetBusy() {
    state_ = State::kBusy;
    idle_timer_->Disable();
  }
  void SetIdle() {
    state_ = State::kIdle;
    idle_timer_->Enable(pool_.config_->idle_timeout);
  }
  State state() const { return state_; }
  http::http1::ClientConnectionImpl& codec() { return *codec_; }
  uint64_t requests_served() const { return requests_served_; }

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

  ConnPool& pool_;
  const HostSharedPtr host_;
  const std::shared_ptr<const ClusterConfig> config_;
  event::MonotonicTime connect_start_;
  event::ConnectionPtr connection_;
  std::unique_ptr<http::http1::ClientConnectionImpl> codec_;
  event::TimerPtr connect_timer_;
  event::TimerPtr idle_timer_;
  State state_ = State::kConnecting;
  uint64_t requests_served_ = 0;
};

ConnPool::ConnPool(event::Dispatcher& dispatcher, HostSharedPtr host,
                   std::shared_ptr<const ClusterConfig> config, const http1::Limits& limits,
                   size_t buffer_limit)
    : dispatcher_(dispatcher),
      host_(std::move(host)),
      config_(std::move(config)),
      limits_(limits),
      buffer_limit_(buffer_limit) {}

ConnPool::~ConnPool() {
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

size_t ConnPool::ConnectingCount() const {
  size_t n = 0;
  for (const auto& c : clients_) n += c->state() == ActiveClient::State::kConnecting ? 1 : 0;
  return n;
}

ConnPool::PendingRequest::PendingRequest(ConnPool& pool, http::ResponseDecoder& decoder,
                                         PoolCallbacks& callbacks, uint32_t max_cluster_connections)
    : pool(pool),
      decoder(decoder),
      callbacks(callbacks),
      max_cluster_connections(max_cluster_connections) {
  if (pool.config_->stats) pool.config_->stats->requests_pending.Add();
}

ConnPool::PendingRequest::~PendingRequest() {
  if (pool.config_->stats) pool.config_->stats->requests_pending.Sub();
}

bool ConnPool::MayConnect(uint32_t max_cluster_connections) const {
  if (clients_.size() >= config_->max_connections) return false;
  if (max_cluster_connections == 0 || config_->stats == nullptr || clients_.empty()) return true;
  return config_->stats->connections_active.Value() < static_cast<int64_t>(max_cluster_connections);
}

Cancellable* ConnPool::NewStream(http::ResponseDecoder& decoder, PoolCallbacks& callbacks,
                                 const http::UpstreamLimits& limits) {
  // Most recently used idle connection first: it is the least likely to
  // have been closed by the upstream's own idle timeout.
  for (auto it = clients_.rbegin(); it != clients_.rend(); ++it) {
    if ((*it)->state() == ActiveClient::State::kIdle) {
      Attach(**it, decoder, callbacks, 0);
      return nullptr;
    }
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

void ConnPool::CreateClient() { clients_.push_back(std::make_unique<ActiveClient>(*this)); }

// One connection on its way per waiting request, up to the limits (also
// while draining: draining retires connections, not requests).
void ConnPool::ConnectForWaiting() {
  // The request served next (the front) decides the cluster-wide limit.
  if (pending_.size() > ConnectingCount() &&
      MayConnect(pending_.front()->max_cluster_connections)) {
    CreateClient();
  }
}

void ConnPool::Attach(ActiveClient& client, http::ResponseDecoder& decoder,
                      PoolCallbacks& callbacks, double connect_ms) {
  client.SetBusy();
  http::RequestEncoder& encoder = client.codec().NewStream(decoder);
  callbacks.OnPoolReady(encoder, connect_ms);
}

void ConnPool::OnClientReady(ActiveClient& client, double connect_ms) {
  // Draining stops keeping idle connections, not serving waiting requests.
  if (pending_.empty()) {
    if (draining_) {
      client.Close();
    } else {
      client.SetIdle();
    }
    return;
  }
  PendingPtr request = std::move(pending_.front());
  pending_.pop_front();
  Attach(client, request->decoder, request->callbacks, connect_ms);
}

void ConnPool::OnClientConnectFailed(ActiveClient& client, PoolFailure reason, std::string detail) {
  RemoveClient(client);
  // The request this connection was made for fails; others keep waiting
  // for the connections still being made.
  if (!pending_.empty() && pending_.size() > ConnectingCount()) {
    PendingPtr request = std::move(pending_.front());
    pending_.pop_front();
    request->callbacks.OnPoolFailure(reason, detail);
  }
  // Whoever still waits without a connection on the way gets one.
  ConnectForWaiting();
}

void ConnPool::OnStreamComplete(ActiveClient& client, bool reusable) {
  bool retire = !reusable || draining_ ||
                (config_->max_requests_per_connection > 0 &&
                 client.requests_served() >= config_->max_requests_per_connection);
  if (retire) {
    client.Close();
    // A waiting request gets a fresh connection in place of this one.
    ConnectForWaiting();
    return;
  }
  if (!pending_.empty()) {
    PendingPtr request = std::move(pending_.front());
    pending_.pop_front();
    Attach(client, request->decoder, request->callbacks, 0);
    return;
  }
  client.SetIdle();
  // Keep the most recently used connection last: NewStream picks from the
  // back, so the connections least likely to have hit the upstream's own
  // idle timeout are reused first.
  for (auto it = clients_.begin(); it != clients_.end(); ++it) {
    if (it->get() == &client) {
      clients_.splice(clients_.end(), clients_, it);
      break;
    }
  }
}

void ConnPool::OnClientClosed(ActiveClient& client) { RemoveClient(client); }

void ConnPool::RemoveClient(ActiveClient& client) {
  for (auto it = clients_.begin(); it != clients_.end(); ++it) {
    if (it->get() == &client) {
      dispatcher_.DeferredDelete(std::move(*it));
      clients_.erase(it);
      return;
    }
  }
}

void ConnPool::CancelPending(PendingRequest* request) {
  for (auto it = pending_.begin(); it != pending_.end(); ++it) {
    if (it->get() == request) {
      pending_.erase(it);
      return;
    }
  }
}

void ConnPool::Drain() {
  draining_ = true;
  std::vector<ActiveClient*> idle;
  for (auto& c : clients_) {
    if (c->state() == ActiveClient::State::kIdle) idle.push_back(c.get());
  }
  for (ActiveClient* c : idle) c->Close();
}

}  // namespace portway::upstream
