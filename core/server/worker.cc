#include "core/server/worker.h"

#include <array>
#include <cerrno>
#include <cstring>
#include <vector>

#include "core/common/strings.h"
#include "core/server/stats.h"
#include "spdlog/spdlog.h"

namespace portway::server {

Worker::Worker(int index, const std::atomic<bool>& gateway_draining)
    : index_(index),
      dispatcher_(event::Dispatcher::Create(Cat("worker_", index))),
      gateway_(*this, gateway_draining) {
  poster_ = std::make_shared<PosterImpl>(*dispatcher_);
  cluster_manager_ =
      std::make_unique<upstream::ClusterManager>(*dispatcher_, upstream::MakeDefaultRandom());
}

void Worker::Start(SnapshotPtr snapshot, std::map<std::string, int> fds) {
  thread_ = std::thread([this, snapshot = std::move(snapshot), fds = std::move(fds)]() mutable {
    ApplySnapshot(std::move(snapshot));
    for (const auto& [name, fd] : fds) AddListener(name, fd);
    dispatcher_->Run();
    // Nothing posted from here on would run.
    poster_->Stop();
    // Tear down in dependency order: downstream connections (which
    // release their upstream streams), then what they queued for
    // deletion, then the pools.
    listeners_.clear();
    while (http::ConnectionManager* c = connections_.PopFront()) delete c;
    side_requests_.clear();
    dispatcher_->ClearDeferredDeleteList();
    cluster_manager_.reset();
    dispatcher_->ClearDeferredDeleteList();
  });
}

void Worker::StartSideRequest(ListenerConfigPtr listener, const router::Route& route,
                              std::string cluster, http::HeaderMapPtr headers,
                              size_t max_body_bytes, http::SideResponseCallback done) {
  auto request = std::make_unique<router::SideRequest>(
      *dispatcher_, *cluster_manager_, std::move(listener), route, std::move(cluster),
      max_body_bytes, std::move(done), [this](router::SideRequest* finished) {
        auto it = side_requests_.find(finished);
        if (it == side_requests_.end()) return;
        // Called from inside its router: deleted once the stack unwinds.
        dispatcher_->DeferredDelete(std::move(it->second));
        side_requests_.erase(it);
      });
  router::SideRequest* raw = request.get();
  side_requests_.emplace(raw, std::move(request));
  raw->Start(std::move(headers));
}

bool Worker::PosterImpl::Post(std::function<void()> callback) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (dispatcher_ == nullptr) return false;
  dispatcher_->Post(std::move(callback));
  return true;
}

void Worker::PosterImpl::Stop() {
  std::lock_guard<std::mutex> lock(mutex_);
  dispatcher_ = nullptr;
}

void Worker::Stop() {
  if (!thread_.joinable()) return;
  dispatcher_->Post([this] { dispatcher_->Exit(); });
  thread_.join();
}

void Worker::ApplySnapshot(SnapshotPtr snapshot) {
  snapshot_ = std::move(snapshot);
  cluster_manager_->Update(snapshot_->clusters);
  failures_.SetCapacity(snapshot_->failure_history_per_worker);
}

void Worker::AddListener(const std::string& name, int fd) {
  auto wl = std::make_unique<WorkerListener>(*this, name);
  wl->listener = dispatcher_->AdoptListener(fd, *wl);
  listeners_[name] = std::move(wl);
}

void Worker::RemoveListener(const std::string& name) {
  listeners_.erase(name);
  std::vector<http::ConnectionManager*> on_listener;
  for (auto* c = connections_.front(); c != nullptr; c = connections_.Next(c)) {
    if (c->ListenerName() == name) on_listener.push_back(c);
  }
  for (auto* c : on_listener) c->StartDrain();
}

void Worker::Drain() {
  draining_ = true;
  listeners_.clear();
  std::vector<http::ConnectionManager*> all;
  for (auto* c = connections_.front(); c != nullptr; c = connections_.Next(c)) all.push_back(c);
  for (auto* c : all) c->StartDrain();
  cluster_manager_->DrainAll();
}

http::ClusterHealth Worker::GatewayViewImpl::GetClusterHealth(std::string_view cluster) const {
  http::ClusterHealth out;
  if (worker_.cluster_manager_ == nullptr) return out;
  const upstream::ClusterManager::WorkerCluster* wc = worker_.cluster_manager_->Find(cluster);
  if (wc == nullptr || wc->snapshot == nullptr) return out;
  const upstream::ClusterSnapshot& snapshot = *wc->snapshot;
  out.known = true;
  // The host set's count, kept by the main thread as flags change: one
  // atomic load, whatever the number of hosts.
  if (snapshot.health != nullptr) {
    const uint32_t total = snapshot.health->total;
    const uint32_t unusable = snapshot.health->unusable.load(std::memory_order_relaxed);
    out.total = total;
    out.usable = unusable >= total ? 0 : total - unusable;
    return out;
  }
  out.total = static_cast<uint32_t>(snapshot.hosts.size());
  for (const auto& host : snapshot.hosts) out.usable += host->usable() ? 1 : 0;
  return out;
}

ListenerConfigPtr Worker::CurrentListener(const std::string& name) {
  auto it = snapshot_->listeners.find(name);
  return it == snapshot_->listeners.end() ? nullptr : it->second;
}

const AccessLogger* Worker::AccessLog() {
  return snapshot_->access_log && snapshot_->access_log->enabled() ? snapshot_->access_log.get()
                                                                   : nullptr;
}

http::RequestId Worker::NewRequestId() {
  upstream::Random& r = cluster_manager_->random();
  uint64_t hi = r.Next();
  uint64_t lo = r.Next();
  // RFC 9562 version 4 layout, formatted by hand, a byte (two hex digits)
  // at a time: this runs per request.
  hi = (hi & 0xffffffffffff0fffULL) | 0x0000000000004000ULL;
  lo = (lo & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;
  // Each byte's two hex digits, from one table.
  static constexpr auto kHexPairs = [] {
    std::array<char, 512> pairs{};
    constexpr char kHex[] = "0123456789abcdef";
    for (int b = 0; b < 256; ++b) {
      pairs[2 * b] = kHex[b >> 4];
      pairs[2 * b + 1] = kHex[b & 0xf];
    }
    return pairs;
  }();
  http::RequestId id;
  char* out = id.text;
  const auto put = [&out](uint64_t word, int first_byte, int last_byte) {
    for (int i = first_byte; i <= last_byte; ++i) {
      const unsigned byte = static_cast<unsigned>(word >> ((7 - i) * 8)) & 0xff;
      std::memcpy(out, &kHexPairs[2 * byte], 2);
      out += 2;
    }
  };
  // 8-4-4-4-12 hex digits: bytes 0-3, 4-5, 6-7 of hi; 0-1, 2-7 of lo.
  put(hi, 0, 3);
  *out++ = '-';
  put(hi, 4, 5);
  *out++ = '-';
  put(hi, 6, 7);
  *out++ = '-';
  put(lo, 0, 1);
  *out++ = '-';
  put(lo, 2, 7);
  id.size = sizeof(id.text);
  return id;
}

void Worker::RemoveConnection(http::ConnectionManager& connection) {
  if (!connections_.Contains(&connection)) return;
  connections_.Remove(&connection);
  dispatcher_->DeferredDelete(std::unique_ptr<http::ConnectionManager>(&connection));
  connection_count_.fetch_sub(1, std::memory_order_relaxed);
}

void Worker::OnAccept(const std::string& name, event::ConnectionPtr connection) {
  ListenerConfigPtr config = CurrentListener(name);
  if (!config || draining_) {
    connection->Close(event::CloseType::kNoFlush);
    return;
  }
  if (config->state->connections.fetch_add(1, std::memory_order_relaxed) >=
      config->max_connections) {
    config->state->connections.fetch_sub(1, std::memory_order_relaxed);
    config->stats->connections_overflow.Inc();
    connection->Close(event::CloseType::kNoFlush);
    return;
  }
  if (config->tls) {
    connection = config->tls->Wrap(*dispatcher_, std::move(connection), config->tls_observer);
  }
  connections_.PushFront(new http::ConnectionManager(*this, config, std::move(connection)));
  connection_count_.fetch_add(1, std::memory_order_relaxed);
}

void Worker::OnAcceptError(const std::string& name, int error, std::chrono::milliseconds paused) {
  if (ListenerConfigPtr config = CurrentListener(name)) config->stats->accept_errors.Inc();
  // One line per worker per 10 s: the condition lasts, the log must not
  // grow with it.
  ++accept_errors_unlogged_;
  event::MonotonicTime now = dispatcher_->Now();
  if (accept_error_logged_ && now - *accept_error_logged_ < std::chrono::seconds(10)) return;
  accept_error_logged_ = now;
  spdlog::error(
      "worker {}: listener '{}' cannot accept: {}{}; pausing accepts for {}ms at a time ({} "
      "time(s) since the last line); open connections: {}",
      index_, name, strerror(error),
      error == EMFILE || error == ENFILE ? " (raise the file descriptor limit, LimitNOFILE)" : "",
      paused.count(), accept_errors_unlogged_, connection_count_.load());
  accept_errors_unlogged_ = 0;
}

}  // namespace portway::server
