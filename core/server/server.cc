#include "core/server/server.h"

#include <pthread.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>
#include <set>

#include "absl/strings/str_format.h"
#include "core/common/files.h"
#include "core/common/strings.h"
#include "core/http/conn_manager.h"
#include "core/http/filter_registry.h"
#include "core/http/module_loader.h"
#include "core/server/failure_history.h"
#include "core/server/sdk.h"
#include "core/upstream/cluster_manager.h"
#include "portway/abi.h"
#include "portway/config/v1/bootstrap.pb.h"
#include "spdlog/spdlog.h"

namespace portway::server {

// ================================================================ worker

class Worker : public http::ConnectionManagerContext {
 public:
  Worker(int index) : index_(index), dispatcher_(event::Dispatcher::Create(Cat("worker_", index))) {
    cluster_manager_ =
        std::make_unique<upstream::ClusterManager>(*dispatcher_, upstream::MakeDefaultRandom());
  }
  ~Worker() override { Stop(); }

  void Start(SnapshotPtr snapshot, std::map<std::string, int> fds) {
    thread_ = std::thread([this, snapshot = std::move(snapshot), fds = std::move(fds)]() mutable {
      ApplySnapshot(std::move(snapshot));
      for (const auto& [name, fd] : fds) AddListener(name, fd);
      dispatcher_->Run();
      // Tear down in dependency order: downstream connections (which
      // release their upstream streams), then what they queued for
      // deletion, then the pools.
      listeners_.clear();
      connections_.clear();
      dispatcher_->ClearDeferredDeleteList();
      cluster_manager_.reset();
      dispatcher_->ClearDeferredDeleteList();
    });
  }
  void Stop() {
    if (!thread_.joinable()) return;
    dispatcher_->Post([this] { dispatcher_->Exit(); });
    thread_.join();
  }
  void Post(std::function<void()> fn) { dispatcher_->Post(std::move(fn)); }
  size_t ConnectionCount() const { return connection_count_.load(std::memory_order_relaxed); }

  // --- worker thread from here on
  void ApplySnapshot(SnapshotPtr snapshot) {
    snapshot_ = std::move(snapshot);
    cluster_manager_->Update(snapshot_->clusters);
    failures_.SetCapacity(snapshot_->failure_history_per_worker);
  }
  FailureHistory* Failures() override { return failures_.capacity() > 0 ? &failures_ : nullptr; }
  const FailureHistory& failures() const { return failures_; }
  void AddListener(const std::string& name, int fd) {
    auto wl = std::make_unique<WorkerListener>(*this, name);
    wl->listener = dispatcher_->AdoptListener(fd, *wl);
    listeners_[name] = std::move(wl);
  }
  // Stops accepting and drains the listener's connections: each closes
  // after its current response (idle ones at once).
  void RemoveListener(const std::string& name) {
    listeners_.erase(name);
    std::vector<http::ConnectionManager*> on_listener;
    for (auto& [ptr, owned] : connections_) {
      if (ptr->ListenerName() == name) on_listener.push_back(ptr);
    }
    for (auto* c : on_listener) c->StartDrain();
  }
  void Drain() {
    draining_ = true;
    listeners_.clear();
    std::vector<http::ConnectionManager*> all;
    for (auto& [ptr, owned] : connections_) all.push_back(ptr);
    for (auto* c : all) c->StartDrain();
    cluster_manager_->DrainAll();
  }

  // http::ConnectionManagerContext
  event::Dispatcher& Dispatcher() override { return *dispatcher_; }
  upstream::ClusterManager& ClusterManager() override { return *cluster_manager_; }
  ListenerConfigPtr CurrentListener(const std::string& name) override {
    auto it = snapshot_->listeners.find(name);
    return it == snapshot_->listeners.end() ? nullptr : it->second;
  }
  const AccessLogger* AccessLog() override {
    return snapshot_->access_log && snapshot_->access_log->enabled() ? snapshot_->access_log.get()
                                                                     : nullptr;
  }
  bool Draining() const override { return draining_; }
  std::string NewRequestId() override {
    upstream::Random& r = cluster_manager_->random();
    uint64_t hi = r.Next();
    uint64_t lo = r.Next();
    // RFC 9562 version 4 layout, formatted by hand: this runs per request.
    hi = (hi & 0xffffffffffff0fffULL) | 0x0000000000004000ULL;
    lo = (lo & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;
    static constexpr char kHex[] = "0123456789abcdef";
    std::string id(36, '-');
    size_t pos = 0;
    for (int i = 15; i >= 0; --i) {
      if (pos == 8 || pos == 13 || pos == 18) ++pos;
      id[pos++] = kHex[(hi >> (i * 4)) & 0xf];
    }
    for (int i = 15; i >= 0; --i) {
      if (pos == 18 || pos == 23) ++pos;
      id[pos++] = kHex[(lo >> (i * 4)) & 0xf];
    }
    return id;
  }
  void RemoveConnection(http::ConnectionManager& connection) override {
    auto it = connections_.find(&connection);
    if (it == connections_.end()) return;
    dispatcher_->DeferredDelete(std::move(it->second));
    connections_.erase(it);
    connection_count_.fetch_sub(1, std::memory_order_relaxed);
  }

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

  void OnAccept(const std::string& name, event::ConnectionPtr connection) {
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
    auto cm = std::make_unique<http::ConnectionManager>(*this, config, std::move(connection));
    http::ConnectionManager* raw = cm.get();
    connections_.emplace(raw, std::move(cm));
    connection_count_.fetch_add(1, std::memory_order_relaxed);
  }

  void OnAcceptError(const std::string& name, int error, std::chrono::milliseconds paused) {
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

  const int index_;
  FailureHistory failures_{0};
  std::optional<event::MonotonicTime> accept_error_logged_;
  uint64_t accept_errors_unlogged_ = 0;
  event::DispatcherPtr dispatcher_;
  std::unique_ptr<upstream::ClusterManager> cluster_manager_;
  SnapshotPtr snapshot_;
  std::map<std::string, std::unique_ptr<WorkerListener>> listeners_;
  std::map<http::ConnectionManager*, std::unique_ptr<http::ConnectionManager>> connections_;
  std::atomic<size_t> connection_count_{0};
  std::thread thread_;
  bool draining_ = false;
};

// ================================================================= admin

class AdminServer : public event::ListenerCallbacks {
 public:
  AdminServer(Server& server, event::Dispatcher& dispatcher)
      : server_(server), dispatcher_(dispatcher) {}

  bool Listen(const network::Address& address, std::string* error) {
    // No SO_REUSEPORT here: a second Portway started by mistake on the same
    // ports fails on the admin address instead of silently sharing traffic.
    int fd = event::CreateListenSocket(address, 128, error, event::PortSharing::kExclusive);
    if (fd < 0) return false;
    bound_ = event::SocketLocalAddress(fd);
    listener_ = dispatcher_.AdoptListener(fd, *this);
    return true;
  }
  const network::Address& bound() const { return bound_; }
  void OnAccept(event::ConnectionPtr connection) override {
    auto c = std::make_unique<Connection>(*this, std::move(connection));
    Connection* raw = c.get();
    connections_.emplace(raw, std::move(c));
  }

 private:
  // One admin connection: the same HTTP/1 codec as the data plane.
  class Connection : public event::ConnectionCallbacks,
                     public http::ServerConnectionCallbacks,
                     public http::RequestDecoder,
                     public event::DeferredDeletable {
   public:
    Connection(AdminServer& admin, event::ConnectionPtr connection)
        : admin_(admin), connection_(std::move(connection)) {
      http::http1::ServerOptions options;
      codec_ = std::make_unique<http::http1::ServerConnectionImpl>(*connection_, *this, options);
      connection_->SetCallbacks(this);
    }
    void OnData(Buffer& data, bool end_stream) override {
      if (closed_) return;
      codec_->Dispatch(data);
      if (end_stream && !closed_) {
        // A client that half-closed after its request still gets a reply
        // that comes later (/failures).
        if (reply_pending_) {
          close_after_reply_ = true;
        } else {
          Close();
        }
      }
    }
    void OnEvent(event::ConnectionEvent event) override {
      if (event == event::ConnectionEvent::kRemoteClose ||
          event == event::ConnectionEvent::kLocalClose) {
        closed_ = true;
        admin_.Remove(this);
      }
    }
    http::RequestDecoder& NewStream(http::ResponseEncoder& encoder) override {
      encoder_ = &encoder;
      return *this;
    }
    void OnProtocolError(const http::CodecError& error, http::ResponseEncoder* encoder) override {
      if (encoder != nullptr) Respond(error.status, "text/plain", error.cause + "\n");
      Close();
    }
    void DecodeHeaders(http::HeaderMapPtr headers, bool end_stream) override {
      method_ = std::string(headers->Method());
      path_ = std::string(headers->Path());
      if (end_stream) Handle();
    }
    void DecodeData(Buffer& data, bool end_stream) override {
      data.Clear();
      if (end_stream) Handle();
    }
    void DecodeTrailers(http::HeaderMapPtr) override { Handle(); }

   private:
    void Handle() {
      Server& s = admin_.server_;
      std::string path = path_.substr(0, path_.find('?'));
      if (method_ != "GET" && method_ != "HEAD") {
        Respond(405, "text/plain", "method not allowed\n");
      } else if (path == "/ready") {
        std::string why = s.NotReadyReason();
        Respond(why.empty() ? 200 : 503, "text/plain", why.empty() ? "ready\n" : why + "\n");
      } else if (path == "/stats") {
        Respond(200, "text/plain; version=0.0.4", s.RenderStats());
      } else if (path == "/clusters") {
        Respond(200, "application/json", s.RenderClusters());
      } else if (path == "/listeners") {
        Respond(200, "application/json", s.RenderListeners());
      } else if (path == "/config_dump") {
        Respond(200, "application/json", s.RenderConfigDump());
      } else if (path == "/control_plane") {
        Respond(200, "application/json", s.RenderControlPlane());
      } else if (path == "/failures" || StartsWith(path, "/failures/")) {
        // The workers answer on their own threads; the reply comes later.
        std::weak_ptr<bool> alive = alive_;
        reply_pending_ = true;
        s.CollectFailures(path_, [this, alive](int status, std::string body) {
          if (alive.expired() || closed_) return;
          reply_pending_ = false;
          Respond(status, "application/json", body);
          if (codec_->WantsClose() || close_after_reply_) Close();
        });
        return;
      } else if (path == "/") {
        Respond(200, "text/plain",
                "/ready /stats /clusters /listeners /config_dump /control_plane /failures\n");
      } else {
        Respond(404, "text/plain", "unknown admin path\n");
      }
      if (codec_->WantsClose()) Close();
    }
    void Respond(int status, std::string_view content_type, const std::string& body) {
      http::HeaderMap headers;
      headers.AddLower(":status", std::to_string(status));
      headers.AddLower("content-type", std::string(content_type));
      headers.AddLower("content-length", std::to_string(body.size()));
      encoder_->EncodeHeaders(headers, false);
      Buffer data;
      data.Add(body);
      encoder_->EncodeData(data, true);
    }
    void Close() {
      if (closed_) return;
      closed_ = true;
      connection_->Close(event::CloseType::kFlushWrite);
      if (connection_->Closed()) admin_.Remove(this);
    }

    AdminServer& admin_;
    event::ConnectionPtr connection_;
    std::unique_ptr<http::http1::ServerConnectionImpl> codec_;
    http::ResponseEncoder* encoder_ = nullptr;
    std::string method_;
    std::string path_;
    bool closed_ = false;
    bool reply_pending_ = false;
    bool close_after_reply_ = false;
    // Expires with the connection: a late answer from the workers is dropped.
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  };

  void Remove(Connection* c) {
    auto it = connections_.find(c);
    if (it == connections_.end()) return;
    dispatcher_.DeferredDelete(std::move(it->second));
    connections_.erase(it);
  }

  Server& server_;
  event::Dispatcher& dispatcher_;
  network::Address bound_;
  event::ListenerPtr listener_;
  std::map<Connection*, std::unique_ptr<Connection>> connections_;
};

// ================================================================ server

Server::Server(Options options)
    : options_(std::move(options)),
      store_(stats::GlobalStore()),
      builder_(store_),
      dispatcher_(event::Dispatcher::Create("main")),
      config_version_(store_.GetGauge("portway_config_version", {})),
      sighup_success_(store_.GetCounter("portway_config_reloads_total",
                                        {{"source", "sighup"}, {"result", "success"}})),
      sighup_failure_(store_.GetCounter("portway_config_reloads_total",
                                        {{"source", "sighup"}, {"result", "failure"}})),
      push_success_(store_.GetCounter("portway_config_reloads_total",
                                      {{"source", "control_plane"}, {"result", "success"}})),
      push_failure_(store_.GetCounter("portway_config_reloads_total",
                                      {{"source", "control_plane"}, {"result", "failure"}})) {
  store_
      .GetGauge("portway_build_info",
                {{"version", PORTWAY_VERSION_STRING}, {"abi", PORTWAY_ABI_STAMP}})
      .Set(1);
  if (options_.workers <= 0) {
    options_.workers = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  }
}

Server::~Server() {
  if (client_) client_->Stop();
  for (auto& w : workers_) w->Stop();
  workers_.clear();
  admin_.reset();
  for (auto& [name, bl] : listeners_) {
    for (int fd : bl.fds) close(fd);
  }
}

namespace {

// Every downstream connection may hold an upstream one too; the rest is the
// process's own (admin, control plane, DNS, logs).
constexpr rlim_t kReservedFds = 256;

// The soft RLIMIT_NOFILE (often 1024) is raised to the hard limit: running
// out of descriptors pauses accepting, so the limit is what caps the
// connections a gateway can serve. A warning says when even that cannot
// cover the listeners' max_connections.
void RaiseFileLimit(const Snapshot& snapshot) {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
  if (limit.rlim_cur < limit.rlim_max) {
    rlimit raised = limit;
    raised.rlim_cur = limit.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) {
      limit = raised;
    } else {
      spdlog::warn("cannot raise the file descriptor limit from {} to {}: {}", limit.rlim_cur,
                   limit.rlim_max, strerror(errno));
    }
  }
  rlim_t wanted = kReservedFds;
  for (const auto& [name, listener] : snapshot.listeners) {
    wanted += 2 * static_cast<rlim_t>(listener->max_connections);
  }
  if (limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur < wanted) {
    spdlog::warn(
        "the file descriptor limit ({}) is below what the listeners' max_connections may need "
        "({}: two per connection, downstream and upstream, plus {}); past it accepting pauses. "
        "Raise it (ulimit -n, LimitNOFILE=) or lower limits.max_connections",
        limit.rlim_cur, wanted, kReservedFds);
  }
}

}  // namespace

bool Server::HoldsPort(const network::Address& address) const {
  for (const auto& [name, bl] : listeners_) {
    if (bl.bound == address) return true;
  }
  return false;
}

bool Server::BindListeners(const SnapshotPtr& snapshot, std::map<std::string, BoundListener>* bound,
                           config::ConfigErrors* errors) {
  for (const auto& [name, config] : snapshot->listeners) {
    if (bound->count(name) > 0) continue;
    BoundListener bl;
    bl.config = config;
    network::Address address = config->address;
    for (int i = 0; i < options_.workers; ++i) {
      std::string error;
      // The first socket learns the port when the config says :0, and
      // fails when anyone holds the port; the others join it.
      int fd = event::CreateListenSocket(
          address, 4096, &error,
          i == 0 ? event::PortSharing::kNewGroup : event::PortSharing::kJoinGroup);
      if (fd == -EADDRINUSE && i == 0 && HoldsPort(address)) {
        // A listener of this gateway that is on its way out (renamed, or
        // replaced by a push) holds it: take over its port.
        fd = event::CreateListenSocket(address, 4096, &error, event::PortSharing::kJoinGroup);
      }
      if (fd < 0) {
        errors->push_back({Cat("listeners[\"", name, "\"].address"), error});
        for (int open_fd : bl.fds) close(open_fd);
        return false;
      }
      if (i == 0) address = event::SocketLocalAddress(fd);
      bl.fds.push_back(fd);
    }
    bl.bound = address;
    (*bound)[name] = std::move(bl);
  }
  return true;
}

std::string Server::RenderStats() const {
  if (snapshot_) config_version_.Set(static_cast<int64_t>(snapshot_->version));
  return store_.RenderPrometheus();
}

bool Server::Init(config::ConfigErrors* errors) {
  config::v1::Bootstrap bootstrap;
  if (!LoadBootstrapFile(options_.config_path, &bootstrap, errors)) return false;
  // Modules first: the filters they register are looked up by Build(),
  // which still runs after a module error so that every error is reported.
  bool modules_loaded = LoadModules(bootstrap, options_.config_path, errors);
  SnapshotPtr snapshot = builder_.Build(bootstrap, nullptr, errors);
  if (!snapshot || !modules_loaded) return false;
  RaiseFileLimit(*snapshot);
  std::map<std::string, BoundListener> bound;
  if (!BindListeners(snapshot, &bound, errors)) {
    for (auto& [name, bl] : bound) {
      for (int fd : bl.fds) close(fd);
    }
    return false;
  }

  admin_ = std::make_unique<AdminServer>(*this, *dispatcher_);
  std::string error;
  if (!admin_->Listen(snapshot->admin_address, &error)) {
    errors->push_back({"admin.address", error});
    return false;
  }
  snapshot_ = snapshot;
  listeners_ = std::move(bound);

  // Workers are created with the process signals blocked, so the kernel
  // delivers them to the main thread, whose loop handles them.
  sigset_t process_signals;
  sigset_t previous;
  sigemptyset(&process_signals);
  for (int sig : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&process_signals, sig);
  pthread_sigmask(SIG_BLOCK, &process_signals, &previous);
  for (int i = 0; i < options_.workers; ++i) {
    auto worker = std::make_unique<Worker>(i);
    std::map<std::string, int> fds;
    for (auto& [name, bl] : listeners_) fds[name] = bl.fds[i];
    worker->Start(snapshot_, std::move(fds));
    workers_.push_back(std::move(worker));
  }
  pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  // Workers own the listening fds now.
  for (auto& [name, bl] : listeners_) bl.fds.clear();

  signals_.push_back(dispatcher_->ListenForSignal(SIGTERM, [this] { StartDrain(); }));
  signals_.push_back(dispatcher_->ListenForSignal(SIGINT, [this] { StartDrain(); }));
  signals_.push_back(dispatcher_->ListenForSignal(SIGHUP, [this] { Reload(); }));

  ScheduleDns();
  if (bootstrap.has_control_plane()) StartControlPlane(bootstrap);
  if (!options_.admin_address_path.empty()) {
    WriteFileAtomically(options_.admin_address_path, admin_->bound().ToString());
  }
  for (const auto& [name, bl] : listeners_) {
    spdlog::info("listener '{}' on {}", name, bl.bound.ToString());
  }
  spdlog::info("admin on {}; {} worker(s); config version {}", admin_->bound().ToString(),
               options_.workers, snapshot_->version);
  return true;
}

int Server::Run() {
  dispatcher_->Run();
  for (auto& w : workers_) w->Stop();
  spdlog::info("stopped");
  return exit_code_;
}

void Server::Publish(SnapshotPtr snapshot) {
  snapshot_ = std::move(snapshot);
  for (auto& w : workers_) {
    Worker* worker = w.get();
    worker->Post([worker, s = snapshot_] { worker->ApplySnapshot(s); });
  }
}

void Server::Reload() {
  if (draining_) return;
  spdlog::info("SIGHUP: reloading {}", options_.config_path);
  config::ConfigErrors errors;
  config::v1::Bootstrap bootstrap;
  bool ok = LoadBootstrapFile(options_.config_path, &bootstrap, &errors);
  if (ok && resources_ != nullptr) {
    // With a control plane the file is the static part; the dynamic
    // resources stay and are folded in again.
    config::v1::Bootstrap previous = resources_->Static();
    resources_->SetStatic(bootstrap);
    bootstrap = resources_->Serving();
    ok = Apply(bootstrap, &errors, nullptr);
    if (!ok) resources_->SetStatic(previous);
  } else if (ok) {
    ok = Apply(bootstrap, &errors, nullptr);
  }
  if (!ok) {
    spdlog::error("reload rejected; the running config (version {}) keeps serving:",
                  snapshot_->version);
    for (const auto& e : errors) spdlog::error("  {}", e.ToString());
    sighup_failure_.Inc();
    return;
  }
  sighup_success_.Inc();
  spdlog::info("reload applied: config version {}", snapshot_->version);
}

bool Server::Apply(const config::v1::Bootstrap& bootstrap, config::ConfigErrors* errors,
                   std::function<void()> on_live) {
  // Only paths not loaded yet are loaded; a module that fails rejects the
  // config like any other error.
  bool modules_loaded = LoadModules(bootstrap, options_.config_path, errors);
  SnapshotPtr next = builder_.Build(bootstrap, snapshot_, errors);
  if (!modules_loaded) next = nullptr;
  // The next listener set: those that stay (same name and address keep
  // their sockets), plus new ones bound now; the rest are removed.
  std::map<std::string, BoundListener> next_listeners;
  std::vector<std::string> removed;
  if (next) {
    for (const auto& [name, bl] : listeners_) {
      auto it = next->listeners.find(name);
      if (it != next->listeners.end() && it->second->address_text == bl.config->address_text) {
        next_listeners[name] = bl;
      } else {
        removed.push_back(name);
      }
    }
    if (!BindListeners(next, &next_listeners, errors)) next = nullptr;
  }
  if (!next) {
    // Sockets bound for listeners this config would have added are closed.
    for (auto& [name, bl] : next_listeners) {
      for (int fd : bl.fds) close(fd);
      bl.fds.clear();
    }
    return false;
  }
  if (!(next->admin_address == snapshot_->admin_address)) {
    spdlog::warn("admin.address changed to {}; the admin server stays on {} until a restart",
                 next->admin_address.ToString(), admin_->bound().ToString());
  }
  Publish(next);
  for (const std::string& name : removed) {
    for (auto& w : workers_) {
      Worker* worker = w.get();
      worker->Post([worker, name] { worker->RemoveListener(name); });
    }
  }
  for (auto& [name, bl] : next_listeners) {
    if (bl.fds.empty()) continue;  // kept: its workers already serve it
    for (size_t i = 0; i < workers_.size(); ++i) {
      Worker* worker = workers_[i].get();
      int fd = bl.fds[i];
      worker->Post([worker, name = name, fd] { worker->AddListener(name, fd); });
    }
    bl.fds.clear();
    spdlog::info("listener '{}' on {}", name, bl.bound.ToString());
  }
  for (auto& [name, bl] : next_listeners) bl.config = next->listeners.at(name);
  listeners_ = std::move(next_listeners);
  ScheduleDns();
  if (on_live) WhenWorkersCaughtUp(std::move(on_live));
  return true;
}

void Server::WhenWorkersCaughtUp(std::function<void()> done) {
  // Each worker runs its tasks in order: once every worker has run this
  // one, everything posted before it (the snapshot, listener changes) is
  // in force everywhere.
  auto left = std::make_shared<size_t>(workers_.size());
  auto callback = std::make_shared<std::function<void()>>(std::move(done));
  if (*left == 0) {
    (*callback)();
    return;
  }
  for (auto& w : workers_) {
    w->Post([this, left, callback] {
      dispatcher_->Post([left, callback] {
        if (--*left == 0) (*callback)();
      });
    });
  }
}

void Server::StartControlPlane(const config::v1::Bootstrap& bootstrap) {
  const auto& cp = bootstrap.control_plane();
  validator_ = std::make_unique<ConfigBuilder>(validation_store_, /*open_files=*/false);
  resources_ = std::make_unique<discovery::ResourceStore>(
      bootstrap, [this](const config::v1::Bootstrap& b, config::ConfigErrors* e) {
        return validator_->Build(b, nullptr, e) != nullptr;
      });
  discovery::ClientOptions options;
  options.address = cp.address();
  options.node.set_id(cp.node_id());
  for (const auto& [k, v] : cp.metadata()) (*options.node.mutable_metadata())[k] = v;
  options.node.set_build(Cat("portway ", PORTWAY_VERSION_STRING));
  auto millis = [](const google::protobuf::Duration& d) {
    return std::chrono::milliseconds(d.seconds() * 1000 + d.nanos() / 1000000);
  };
  if (cp.has_initial_backoff()) options.initial_backoff = millis(cp.initial_backoff());
  if (cp.has_max_backoff()) options.max_backoff = millis(cp.max_backoff());
  initial_fetch_timeout_ = cp.has_initial_fetch_timeout() ? millis(cp.initial_fetch_timeout())
                                                          : std::chrono::milliseconds(15000);
  control_plane_started_ = std::chrono::steady_clock::now();
  if (cp.has_tls()) {
    // The builder checked the files are readable.
    ReadFile(cp.tls().ca_file(), &options.ca_pem);
    if (!cp.tls().cert_file().empty()) {
      ReadFile(cp.tls().cert_file(), &options.cert_pem);
      ReadFile(cp.tls().key_file(), &options.key_pem);
    }
    options.server_name = cp.tls().server_name();
  }
  persist_path_ = cp.persist_path();
  if (!persist_path_.empty()) LoadPersisted();
  client_ = std::make_unique<discovery::Client>(options, [this](discovery::v1::Push push) {
    // From the client's thread to the main loop, which owns the config.
    auto shared = std::make_shared<discovery::v1::Push>(std::move(push));
    dispatcher_->Post([this, shared] { OnPush(*shared); });
  });
  client_->Start();
  spdlog::info("control plane {}: node '{}'", cp.address(), cp.node_id());
}

void Server::LoadModulesFor(const discovery::v1::Push& push) {
  // A filter this gateway does not know yet is looked for as a module named
  // after it in module_dir ("<module_dir>/<filter name>.so"), loaded before
  // the push is judged, if control_plane.allowed_modules lists it (and its
  // sha256 pin, if any, matches). Otherwise the listener naming it is
  // rejected (unknown filter, with the reason) and nothing else; a module
  // not listed is never opened.
  namespace fs = std::filesystem;
  http::FilterRegistryImpl& registry = http::GlobalFilterRegistry();
  std::set<std::string> missing;
  for (const auto& r : push.resources()) {
    if (!r.has_listener()) continue;
    for (const auto& f : r.listener().filters()) {
      if (registry.Find(f.name()) == nullptr) missing.insert(f.name());
    }
  }
  const config::v1::Bootstrap& bootstrap = resources_->Static();
  const std::string& module_dir = bootstrap.module_dir();
  fs::path dir = fs::path(options_.config_path).parent_path() / fs::path(module_dir);
  for (const std::string& name : missing) {
    if (name.empty() || name.find('/') != std::string::npos || name[0] == '.') continue;
    const config::v1::AllowedModule* allowed = nullptr;
    for (const auto& m : bootstrap.control_plane().allowed_modules()) {
      if (m.name() == name) allowed = &m;
    }
    auto refuse = [&](std::string why) {
      spdlog::error("control plane: filter '{}': {}", name, why);
      registry.SetUnavailable(name, std::move(why));
    };
    if (allowed == nullptr) {
      refuse(Cat("not built in, and control_plane.allowed_modules does not list it (", name,
                 ".so is not loaded on demand)"));
      continue;
    }
    fs::path file = dir / (name + ".so");
    std::error_code ec;
    if (!fs::exists(file, ec)) {
      refuse(Cat("allowed, but there is no module ", file.string()));
      continue;
    }
    if (!allowed->sha256().empty()) {
      absl::StatusOr<std::string> sum = http::FileSha256(file.string());
      if (!sum.ok()) {
        refuse(std::string(sum.status().message()));
        continue;
      }
      std::string want = allowed->sha256();
      for (char& c : want) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (*sum != want) {
        refuse(Cat("module ", file.string(), " has sha256 ", *sum,
                   ", not the one control_plane.allowed_modules pins (", want, "); not loaded"));
        continue;
      }
    }
    config::v1::Bootstrap modules;
    modules.set_module_dir(module_dir);
    modules.add_modules()->set_path(name + ".so");
    config::ConfigErrors errors;
    if (LoadModules(modules, options_.config_path, &errors)) {
      spdlog::info("control plane: loaded module {}.so for filter '{}'", name, name);
      if (registry.Find(name) == nullptr) {
        refuse(Cat("module ", file.string(), " loaded but registers no filter of that name"));
      }
    } else {
      std::string why;
      for (const auto& e : errors) why += (why.empty() ? "" : "; ") + e.message;
      refuse(Cat("module ", name, ".so: ", why));
    }
  }
}

void Server::LoadPersisted() {
  std::string bytes;
  if (!ReadFile(persist_path_, &bytes)) {
    spdlog::info("control plane: no persisted config at {} (yet)", persist_path_);
    return;
  }
  discovery::v1::Push push;
  if (!push.ParseFromString(bytes)) {
    spdlog::warn("control plane: {} is not a persisted config; ignored", persist_path_);
    return;
  }
  // Judged like any push: what is still valid serves until the control
  // plane says otherwise.
  discovery::ResourceStore::Outcome outcome = resources_->OnPush(push);
  for (const auto& v : outcome.verdicts.verdicts()) {
    if (!v.accepted()) {
      spdlog::warn("control plane: persisted {} '{}' no longer valid",
                   discovery::TypeName(v.type()), v.name());
    }
  }
  config::ConfigErrors errors;
  if (outcome.changed && !Apply(resources_->Serving(), &errors, nullptr)) {
    for (const auto& e : errors) spdlog::error("control plane: persisted config: {}", e.ToString());
    return;
  }
  persisted_loaded_ = true;
  spdlog::info("control plane: serving {} persisted resource(s) from {}", push.resources_size(),
               persist_path_);
}

void Server::Persist() {
  if (persist_path_.empty()) return;
  // A crash mid-write leaves the old file.
  if (!WriteFileAtomically(persist_path_, resources_->ServingAsPush().SerializeAsString())) {
    spdlog::error("control plane: cannot write {}", persist_path_);
  }
}

void Server::OnPush(const discovery::v1::Push& push) {
  if (draining_ || resources_ == nullptr) return;
  auto started = std::chrono::steady_clock::now();
  LoadModulesFor(push);
  // A listener can pass every check and still not run (its address is
  // taken): kept to undo the push and judge it again without it.
  bool has_listeners = false;
  for (const auto& r : push.resources()) has_listeners = has_listeners || r.has_listener();
  std::optional<discovery::ResourceStore> before;
  if (has_listeners) before.emplace(*resources_);
  discovery::ResourceStore::Outcome outcome = resources_->OnPush(push);

  std::string nonce = push.nonce();
  size_t count = static_cast<size_t>(push.resources_size() + push.removed_size());
  auto applied = [this, nonce, started, count] {
    if (!first_push_applied_) {
      first_push_applied_ = true;
      spdlog::info("control plane push {}: the first push is live; ready", nonce);
    }
    discovery::v1::GatewayMessage m;
    m.mutable_applied()->set_nonce(nonce);
    if (client_) client_->Send(std::move(m));
    spdlog::info(
        "control plane push {}: {} change(s) live on every worker in {:.1f}ms", nonce, count,
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started)
            .count());
  };
  bool live = !outcome.changed;
  if (outcome.changed) {
    config::ConfigErrors errors;
    live = Apply(resources_->Serving(), &errors, applied);
    if (!live && before) {
      // Which pushed listeners failed (errors at listeners["NAME"]...)?
      std::map<std::string, std::vector<discovery::v1::FieldError>> failed;
      for (const auto& e : errors) {
        for (const auto& r : push.resources()) {
          std::string prefix = Cat("listeners[\"", r.name(), "\"]");
          if (!r.has_listener() || !StartsWith(e.path, prefix)) continue;
          discovery::v1::FieldError fe;
          std::string rest = e.path.substr(prefix.size());
          fe.set_path(!rest.empty() && rest[0] == '.' ? rest.substr(1) : rest);
          fe.set_message(e.message);
          failed[r.name()].push_back(fe);
        }
      }
      if (!failed.empty()) {
        // Judge the push again without them; they are rejected with what
        // failed.
        *resources_ = std::move(*before);
        discovery::v1::Push retry = push;
        retry.clear_resources();
        for (const auto& r : push.resources()) {
          if (!(r.has_listener() && failed.count(r.name()))) *retry.add_resources() = r;
        }
        outcome = resources_->OnPush(retry);
        for (const auto& r : push.resources()) {
          if (!(r.has_listener() && failed.count(r.name()))) continue;
          discovery::v1::Verdict* v = outcome.verdicts.add_verdicts();
          v->set_type(discovery::v1::LISTENER);
          v->set_name(r.name());
          v->set_version(r.version());
          v->set_accepted(false);
          for (const auto& fe : failed[r.name()]) *v->add_errors() = fe;
          resources_->RecordRejection(r, failed[r.name()]);
        }
        errors.clear();
        live = !outcome.changed || Apply(resources_->Serving(), &errors, applied);
      }
    }
    if (!live) {
      // Still not runnable: nothing of this push is taken.
      if (before) *resources_ = std::move(*before);
      last_apply_error_.clear();
      for (const auto& e : errors) last_apply_error_ += e.ToString() + "; ";
      spdlog::error("control plane push {}: could not be applied: {}", nonce, last_apply_error_);
      for (auto& v : *outcome.verdicts.mutable_verdicts()) {
        if (!v.accepted()) continue;
        v.set_accepted(false);
        v.clear_pending();
        discovery::v1::FieldError* fe = v.add_errors();
        fe->set_message(Cat("the push could not be applied: ", last_apply_error_));
      }
    }
  }
  size_t rejected = 0;
  for (const auto& v : outcome.verdicts.verdicts()) rejected += v.accepted() ? 0 : 1;
  // A push counts as a failure when any of it was rejected or it could not
  // be applied (the valid part of a partly rejected push still serves).
  (live && rejected == 0 ? push_success_ : push_failure_).Inc();
  discovery::v1::GatewayMessage verdicts;
  *verdicts.mutable_verdicts() = outcome.verdicts;
  client_->Send(std::move(verdicts));
  if (live) {
    last_apply_error_.clear();
    if (outcome.changed) {
      spdlog::info("control plane push {}: {} resource(s), {} rejected; config version {}", nonce,
                   outcome.verdicts.verdicts_size(), rejected, snapshot_->version);
      Persist();
    } else {
      WhenWorkersCaughtUp(applied);
    }
  }
  client_->SetHave(resources_->Have());
}

void Server::StartDrain() {
  if (draining_) return;
  draining_ = true;
  // No more pushes: the config in force drains as it is.
  if (client_) client_->Stop();
  spdlog::info("draining: no new connections; waiting up to {}ms for requests in flight",
               snapshot_->drain_timeout.count());
  for (auto& w : workers_) {
    Worker* worker = w.get();
    worker->Post([worker] { worker->Drain(); });
  }
  drain_deadline_ = dispatcher_->Now() + snapshot_->drain_timeout;
  drain_timer_ = dispatcher_->CreateTimer([this] { CheckDrained(); });
  drain_timer_->Enable(std::chrono::milliseconds(20));
}

void Server::CheckDrained() {
  size_t open = 0;
  for (auto& w : workers_) open += w->ConnectionCount();
  if (open == 0 || dispatcher_->Now() >= drain_deadline_) {
    if (open > 0) spdlog::warn("drain timeout: closing {} connection(s)", open);
    dns_timers_.clear();
    // A SIGTERM repeated by a supervisor while the process finishes exiting
    // must not turn a clean exit into a kill. Removing the handlers restores
    // the default action, so SIGTERM is blocked first (workers never take
    // signals; see Init): it stays pending and the process exits 0.
    sigset_t term;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &term, nullptr);
    signals_.clear();
    dispatcher_->Exit();
    return;
  }
  drain_timer_->Enable(std::chrono::milliseconds(20));
}

// ------------------------------------------------------------------- DNS

void Server::ScheduleDns() {
  bool all_resolved = true;
  for (const auto& [name, cluster] : snapshot_->clusters) {
    if (!cluster->config->dns) continue;
    if (!dns_resolved_once_[name]) all_resolved = false;
    if (dns_timers_.count(name) == 0) {
      dns_timers_[name] = dispatcher_->CreateTimer([this, name = name] { ResolveCluster(name); });
      ResolveCluster(name);
    } else if (cluster->hosts.empty() && cluster->dns_error == kNotResolvedYet) {
      // A reload changed the endpoints: resolve now, not at the next tick.
      ResolveCluster(name);
    }
  }
  // Timers of clusters that are gone.
  for (auto it = dns_timers_.begin(); it != dns_timers_.end();) {
    it = snapshot_->clusters.count(it->first) ? std::next(it) : dns_timers_.erase(it);
  }
  if (all_resolved) ready_ = true;
}

void Server::ResolveCluster(const std::string& name) {
  auto it = snapshot_->clusters.find(name);
  if (it == snapshot_->clusters.end()) return;
  const auto& endpoints = it->second->config->endpoints;
  auto batch = std::make_shared<ResolveBatch>();
  batch->endpoints = endpoints;
  batch->results.resize(endpoints.size());
  batch->remaining = endpoints.size();
  if (endpoints.empty()) {
    OnResolved(name, batch);
    return;
  }
  for (size_t i = 0; i < endpoints.size(); ++i) {
    dispatcher_->Resolve(endpoints[i].host, endpoints[i].port,
                         [this, name, i, batch](event::ResolveResult r) {
                           batch->results[i] = std::move(r);
                           // Act once every endpoint has answered.
                           if (--batch->remaining == 0) OnResolved(name, batch);
                         });
  }
}

namespace {
bool SameEndpoints(const std::vector<upstream::EndpointSpec>& a,
                   const std::vector<upstream::EndpointSpec>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].host != b[i].host || a[i].port != b[i].port || a[i].weight != b[i].weight) {
      return false;
    }
  }
  return true;
}
}  // namespace

// Rules: a resolution only replaces the hosts when every name answered; a
// failure never shrinks a cluster that has hosts (a resolver hiccup must not
// turn into 502s); a cluster that never resolved reports the failure, and
// requests to it get 502 upstream_dns_failure.
void Server::OnResolved(const std::string& name, std::shared_ptr<ResolveBatch> batch) {
  auto it = snapshot_->clusters.find(name);
  if (it == snapshot_->clusters.end() || !it->second->config->dns) return;
  const upstream::ClusterSnapshot& current = *it->second;
  auto timer = dns_timers_.find(name);
  if (!SameEndpoints(current.config->endpoints, batch->endpoints)) {
    // Reconfigured while the lookups ran: these answers are for old names.
    ResolveCluster(name);
    return;
  }
  upstream::HostVector hosts;
  std::string error;
  for (size_t i = 0; i < batch->results.size(); ++i) {
    const auto& r = batch->results[i];
    const auto& spec = current.config->endpoints[i];
    if (r.error != 0) {
      error = Cat("cannot resolve '", spec.host, "': ", r.error_message);
      continue;
    }
    for (const network::Address& address : r.addresses) {
      // Keep the Host object (and its counters) of an address we already had.
      upstream::HostSharedPtr host;
      for (const auto& old : current.hosts) {
        if (old->address() == address) host = old;
      }
      if (!host) host = std::make_shared<upstream::Host>(name, address, spec.weight);
      hosts.push_back(std::move(host));
    }
  }
  if (!error.empty() && !current.hosts.empty()) {
    spdlog::warn("cluster '{}': {}; keeping its {} known host(s)", name, error,
                 current.hosts.size());
  } else {
    if (!hosts.empty()) error.clear();
    bool changed = hosts.size() != current.hosts.size() || error != current.dns_error;
    for (size_t i = 0; !changed && i < hosts.size(); ++i) changed = hosts[i] != current.hosts[i];
    if (changed) {
      if (!error.empty()) spdlog::warn("cluster '{}': {}", name, error);
      auto next = std::make_shared<Snapshot>(*snapshot_);
      next->clusters[name] = upstream::MakeClusterSnapshot(current.config, hosts, error);
      Publish(next);
    }
  }
  dns_resolved_once_[name] = true;
  bool all = true;
  for (const auto& [n, c] : snapshot_->clusters) {
    if (c->config->dns && !dns_resolved_once_[n]) all = false;
  }
  if (all) ready_ = true;
  if (timer != dns_timers_.end()) timer->second->Enable(current.config->dns_refresh_rate);
}

// ----------------------------------------------------------- admin pages

namespace {

// %XX in a request id taken from a path (ids a trusted client chose may
// hold characters a URL must escape).
std::string PercentDecode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    auto hex = [](char c) {
      return c >= '0' && c <= '9'   ? c - '0'
             : c >= 'a' && c <= 'f' ? c - 'a' + 10
             : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                    : -1;
    };
    if (s[i] == '%' && i + 2 < s.size() && hex(s[i + 1]) >= 0 && hex(s[i + 2]) >= 0) {
      out.push_back(static_cast<char>(hex(s[i + 1]) * 16 + hex(s[i + 2])));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

}  // namespace

void Server::CollectFailures(const std::string& target,
                             std::function<void(int, std::string)> done) {
  size_t q = target.find('?');
  std::string_view path = std::string_view(target).substr(0, q);
  std::string_view query = q == std::string::npos ? "" : std::string_view(target).substr(q + 1);
  constexpr std::string_view kPrefix = "/failures/";
  std::string id = path.size() > kPrefix.size() ? PercentDecode(path.substr(kPrefix.size())) : "";
  uint64_t limit = 100;
  for (std::string_view param : SplitView(query, '&')) {
    if (StartsWith(param, "limit=") && !ParseUint64(param.substr(6), &limit)) {
      done(400, "{\"error\":\"limit must be a whole number\"}\n");
      return;
    }
  }
  struct Gathered {
    std::vector<FailureHistory::Summary> rows;
    std::optional<FailureHistory::Summary> story;  // the newest with that id
    size_t left = 0;
  };
  auto gathered = std::make_shared<Gathered>();
  gathered->left = workers_.size();
  size_t per_worker = snapshot_ ? snapshot_->failure_history_per_worker : 0;
  auto finish = [gathered, id, limit, per_worker, workers = workers_.size(),
                 done = std::move(done)] {
    if (!id.empty()) {
      if (gathered->story) {
        done(200, gathered->story->json + "\n");
      } else {
        done(404, Cat("{\"error\":",
                      JsonString(Cat("no failed request with id '", id,
                                     "' in the history (it keeps the last ", per_worker,
                                     " per worker)")),
                      "}\n"));
      }
      return;
    }
    auto& rows = gathered->rows;
    std::stable_sort(rows.begin(), rows.end(),
                     [](const auto& a, const auto& b) { return a.time > b.time; });
    if (rows.size() > limit) rows.resize(limit);
    std::string out = Cat("{\"workers\":", workers, ",\"max_entries_per_worker\":", per_worker,
                          ",\"failures\":[");
    for (size_t i = 0; i < rows.size(); ++i) {
      if (i > 0) out.push_back(',');
      out += rows[i].json;
    }
    out += "]}\n";
    done(200, std::move(out));
  };
  if (workers_.empty()) {
    finish();
    return;
  }
  auto shared_finish = std::make_shared<decltype(finish)>(std::move(finish));
  for (auto& w : workers_) {
    Worker* worker = w.get();
    worker->Post([this, worker, gathered, id, shared_finish] {
      // On the worker's thread: its history is its own.
      std::vector<FailureHistory::Summary> rows;
      std::optional<FailureHistory::Summary> story;
      if (id.empty()) {
        worker->failures().AppendSummaries(&rows);
      } else {
        story = worker->failures().Story(id);
      }
      dispatcher_->Post(
          [gathered, rows = std::move(rows), story = std::move(story), shared_finish]() mutable {
            for (auto& r : rows) gathered->rows.push_back(std::move(r));
            // With trusted client ids, several workers may know one id.
            if (story && (!gathered->story || story->time > gathered->story->time)) {
              gathered->story = std::move(story);
            }
            if (--gathered->left == 0) (*shared_finish)();
          });
    });
  }
}

std::string Server::RenderClusters() const {
  std::string out = "{\"clusters\":[";
  bool first_cluster = true;
  for (const auto& [name, cluster] : snapshot_->clusters) {
    if (!first_cluster) out.push_back(',');
    first_cluster = false;
    out +=
        Cat("{\"name\":", JsonString(name), ",\"type\":\"", cluster->config->dns ? "dns" : "static",
            "\",\"dns_error\":", JsonString(cluster->dns_error), ",\"hosts\":[");
    bool first = true;
    for (const auto& host : cluster->hosts) {
      if (!first) out.push_back(',');
      first = false;
      out += Cat("{\"address\":", JsonString(host->addressString()), ",\"weight\":", host->weight(),
                 ",\"health\":\"", upstream::HealthStateName(host->health()),
                 "\",\"active_requests\":", host->activeRequestCount(),
                 ",\"requests_total\":", host->requests_total.load(),
                 ",\"connect_failures\":", host->connect_failures.load(),
                 ",\"active_connections\":", host->active_connections.load(), "}");
    }
    out.append("]");
    if (const stats::ClusterStats* stats = cluster->config->stats) {
      out += Cat(",\"load\":{\"requests_active\":", stats->requests_active.Value(),
                 ",\"requests_pending\":", stats->requests_pending.Value(),
                 ",\"retries_active\":", stats->retries_active.Value(),
                 ",\"connections_active\":", stats->connections_active.Value(), "}");
    }
    std::string filters = RenderFilterClusterStatus(name);
    if (!filters.empty()) out += Cat(",\"filters\":", filters);
    out.push_back('}');
  }
  out.append("]}\n");
  return out;
}

std::string Server::RenderListeners() const {
  std::string out = "{\"listeners\":[";
  bool first = true;
  for (const auto& [name, bl] : listeners_) {
    if (!first) out.push_back(',');
    first = false;
    out +=
        Cat("{\"name\":", JsonString(name), ",\"address\":", JsonString(bl.bound.ToString()), "}");
  }
  out.append("]}\n");
  return out;
}

std::string Server::RenderConfigDump() const {
  // The snapshot version first; with a control plane, each dynamic
  // resource with its versions and last error; then the running bootstrap
  // (static and dynamic resources folded together).
  std::string head = Cat("{\"version\":", snapshot_->version);
  if (resources_) head += Cat(",\"dynamic_resources\":", RenderDynamicResources());
  std::string_view json = snapshot_->config_json;
  size_t open = json.find('{');
  if (open == std::string_view::npos) return head + "}\n";
  std::string_view rest = json.substr(open + 1);
  size_t first = rest.find_first_not_of(" \n\t");
  bool empty = first == std::string_view::npos || rest[first] == '}';
  return Cat(head, empty ? "" : ",", rest, "\n");
}

std::string Server::RenderDynamicResources() const {
  std::string out = "[";
  bool first = true;
  for (const auto& e : resources_->Entries()) {
    if (!first) out.push_back(',');
    first = false;
    out += Cat("{\"type\":\"", discovery::TypeName(e.type), "\",\"name\":", JsonString(e.name),
               ",\"serving_version\":", JsonString(e.serving_version),
               ",\"accepted_version\":", JsonString(e.accepted_version),
               ",\"pending\":", JsonString(e.pending),
               ",\"rejected_version\":", JsonString(e.rejected_version), ",\"errors\":[");
    for (size_t i = 0; i < e.errors.size(); ++i) {
      if (i > 0) out.push_back(',');
      out += Cat("{\"path\":", JsonString(e.errors[i].path()),
                 ",\"message\":", JsonString(e.errors[i].message()), "}");
    }
    out += "]}";
  }
  out += "]";
  return out;
}

std::string Server::NotReadyReason() const {
  if (draining_) return "draining";
  if (!ready_) return "starting";
  if (client_ == nullptr || first_push_applied_) return "";
  auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - control_plane_started_);
  if (persisted_loaded_ && waited >= initial_fetch_timeout_) return "";
  discovery::Client::Status st = client_->GetStatus();
  std::string why = "waiting for the control plane's first push: ";
  if (st.pushes > 0) {
    why += last_apply_error_.empty() ? "received, not live on every worker yet"
                                     : Cat("received, could not be applied: ", last_apply_error_);
  } else if (!st.last_error.empty()) {
    why += st.last_error;
  } else {
    why += "connecting";
  }
  if (persisted_loaded_) {
    why +=
        Cat("; the persisted config serves meanwhile, ready in at most ",
            (initial_fetch_timeout_ - waited).count(), "ms (control_plane.initial_fetch_timeout)");
  }
  return why;
}

std::string Server::RenderControlPlane() const {
  if (client_ == nullptr) return "{\"configured\":false}\n";
  discovery::Client::Status st = client_->GetStatus();
  return Cat("{\"configured\":true,\"connected\":", st.connected ? "true" : "false",
             ",\"connects\":", st.connects, ",\"pushes\":", st.pushes,
             ",\"last_nonce\":", JsonString(st.last_nonce),
             ",\"last_version\":", JsonString(st.last_version),
             ",\"last_error\":", JsonString(st.last_error),
             ",\"last_apply_error\":", JsonString(last_apply_error_),
             ",\"resources\":", RenderDynamicResources(), "}\n");
}

}  // namespace portway::server
