// One worker: a thread with its own event loop, its SO_REUSEPORT listeners,
// the downstream connections they accepted (one http::ConnectionManager
// each), its connection pools (its own upstream::ClusterManager) and its
// failure history. It is the ConnectionManagerContext its connections see.
//
// Thread safety: the Server creates, starts and stops a Worker on the main
// thread; from any thread only Post() and ConnectionCount() may be called.
// Everything else (ApplySnapshot, AddListener, RemoveListener, Drain,
// failures() and the ConnectionManagerContext methods) runs on the worker's
// own thread, which the main thread reaches through Post(): a new snapshot
// or listener takes effect between two events, never in the middle of one.
//
//   Worker worker(0);
//   worker.Start(snapshot, {{"edge", fd}});  // the worker owns `fd` now
//   worker.Post([&worker, next] { worker.ApplySnapshot(next); });
//   worker.Stop();                           // exits the loop, joins
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "core/common/intrusive_list.h"
#include "core/event/dispatcher.h"
#include "core/http/conn_manager.h"
#include "core/router/side_request.h"
#include "core/server/failure_history.h"
#include "core/server/snapshot.h"
#include "core/upstream/cluster_manager.h"

namespace portway::server {

class Worker : public http::ConnectionManagerContext {
 public:
  // `gateway_draining`: the process's drain flag (set by the main thread
  // on SIGTERM); it outlives the worker.
  Worker(int index, const std::atomic<bool>& gateway_draining);
  ~Worker() override { Stop(); }

  void Start(SnapshotPtr snapshot, std::map<std::string, int> fds);
  void Stop();
  void Post(std::function<void()> fn) { dispatcher_->Post(std::move(fn)); }
  size_t ConnectionCount() const { return connection_count_.load(std::memory_order_relaxed); }

  // --- worker thread from here on
  void ApplySnapshot(SnapshotPtr snapshot);
  FailureHistory* Failures() override { return failures_.capacity() > 0 ? &failures_ : nullptr; }
  const FailureHistory& failures() const { return failures_; }
  void AddListener(const std::string& name, int fd);
  // Stops accepting and drains the listener's connections: each closes
  // after its current response (idle ones at once).
  void RemoveListener(const std::string& name);
  void Drain();

  // http::ConnectionManagerContext
  event::Dispatcher& Dispatcher() override { return *dispatcher_; }
  upstream::ClusterManager& ClusterManager() override { return *cluster_manager_; }
  ListenerConfigPtr CurrentListener(const std::string& name) override;
  const AccessLogger* AccessLog() override;
  bool Draining() const override { return draining_; }
  const http::GatewayView& Gateway() override { return gateway_; }
  http::RequestId NewRequestId() override;
  std::shared_ptr<http::WorkerPoster> Poster() override { return poster_; }
  void StartSideRequest(ListenerConfigPtr listener, const router::Route& route, std::string cluster,
                        http::HeaderMapPtr headers, size_t max_body_bytes,
                        http::SideResponseCallback done) override;
  void RemoveConnection(http::ConnectionManager& connection) override;

 private:
  struct WorkerListener : public event::ListenerCallbacks {
    WorkerListener(Worker& worker, std::string name) : worker(worker), name(std::move(name)) {}
    void OnAccept(event::ConnectionPtr connection) override {
      worker.OnAccept(name, std::move(connection));
    }
    void OnAcceptError(int error, std::chrono::milliseconds paused) override {
      worker.OnAcceptError(name, error, paused);
    }
    Worker& worker;
    std::string name;
    event::ListenerPtr listener;
  };

  // FilterCallbacks::Gateway() for this worker's streams.
  class GatewayViewImpl final : public http::GatewayView {
   public:
    GatewayViewImpl(const Worker& worker, const std::atomic<bool>& draining)
        : worker_(worker), draining_(draining) {}
    bool Draining() const override { return draining_.load(std::memory_order_relaxed); }
    http::ClusterHealth GetClusterHealth(std::string_view cluster) const override;

   private:
    const Worker& worker_;
    const std::atomic<bool>& draining_;
  };

  // FilterCallbacks::Worker(): posts to this worker's loop until its
  // thread tears down, then drops what it is given.
  class PosterImpl final : public http::WorkerPoster {
   public:
    explicit PosterImpl(event::Dispatcher& dispatcher) : dispatcher_(&dispatcher) {}
    bool Post(std::function<void()> callback) override;
    void Stop();

   private:
    std::mutex mutex_;
    event::Dispatcher* dispatcher_;  // null once stopped
  };

  void OnAccept(const std::string& name, event::ConnectionPtr connection);
  void OnAcceptError(const std::string& name, int error, std::chrono::milliseconds paused);

  const int index_;
  FailureHistory failures_{0};
  std::optional<event::MonotonicTime> accept_error_logged_;
  uint64_t accept_errors_unlogged_ = 0;
  event::DispatcherPtr dispatcher_;
  std::shared_ptr<PosterImpl> poster_;
  std::unique_ptr<upstream::ClusterManager> cluster_manager_;
  SnapshotPtr snapshot_;
  std::map<std::string, std::unique_ptr<WorkerListener>> listeners_;
  // Owned: each is deleted (deferred) when it leaves the list. Intrusive,
  // so an idle connection pays two pointers for its place here.
  IntrusiveList<http::ConnectionManager> connections_;
  // Filters' side requests in flight (they outlive the streams that made
  // them); each goes once answered.
  std::map<router::SideRequest*, std::unique_ptr<router::SideRequest>> side_requests_;
  std::atomic<size_t> connection_count_{0};
  std::thread thread_;
  bool draining_ = false;
  GatewayViewImpl gateway_;
};

}  // namespace portway::server
