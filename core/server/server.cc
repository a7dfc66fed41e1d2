#include "core/server/server.h"

#include <pthread.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>

#include "core/common/files.h"
#include "core/server/admin.h"
#include "core/server/worker.h"
#include "portway/abi.h"
#include "portway/config/v1/bootstrap.pb.h"
#include "spdlog/spdlog.h"

namespace portway::server {

Server::Server(Options options)
    : options_(std::move(options)),
      health_(RealTimeSource()),
      store_(stats::GlobalStore()),
      builder_(store_),
      dispatcher_(event::Dispatcher::Create("main")),
      health_random_(upstream::MakeDefaultRandom()),
      health_checks_(
          std::make_unique<upstream::HealthCheckManager>(*dispatcher_, health_, *health_random_)),
      outlier_(std::make_unique<upstream::OutlierDetector>(*dispatcher_, health_)),
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
  health_checks_->Stop();
  if (client_) client_->Stop();
  health_reporter_.reset();
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
  StartHostHealth();
  listeners_ = std::move(bound);

  // Workers are created with the process signals blocked, so the kernel
  // delivers them to the main thread, whose loop handles them.
  sigset_t process_signals;
  sigset_t previous;
  sigemptyset(&process_signals);
  for (int sig : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&process_signals, sig);
  pthread_sigmask(SIG_BLOCK, &process_signals, &previous);
  for (int i = 0; i < options_.workers; ++i) {
    auto worker = std::make_unique<Worker>(i, gateway_draining_);
    worker->ClusterManager().set_outlier_sink(outlier_.get());
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

// Three phases, each logged. 1: at the signal, /ready and every health
// endpoint (GatewayView::Draining) answer 503 while the listeners keep
// accepting and serving as before, for drain_delay, so the load balancers
// in front see the failing check and stop sending. 2: the listeners close
// and connections drain (CloseListeners). 3: exit once none is left or at
// drain_timeout (CheckDrained). A second signal during the delay cuts it
// short (a supervisor in a hurry); later ones do nothing.
void Server::StartDrain() {
  if (draining_) {
    if (!listeners_closed_) {
      spdlog::info("draining: second signal, skipping the rest of drain_delay");
      CloseListeners();
    }
    return;
  }
  draining_ = true;
  gateway_draining_.store(true, std::memory_order_relaxed);
  // No more pushes: the config in force drains as it is.
  if (client_) client_->Stop();
  health_reporter_.reset();
  const std::chrono::milliseconds delay = snapshot_->drain_delay;
  if (delay.count() <= 0) {
    spdlog::info("draining: /ready and health checks answer 503");
    CloseListeners();
    return;
  }
  spdlog::info(
      "draining: /ready and health checks answer 503; listeners keep serving for {}ms "
      "(drain_delay)",
      delay.count());
  drain_delay_timer_ = dispatcher_->CreateTimer([this] {
    spdlog::info("draining: drain_delay over");
    CloseListeners();
  });
  drain_delay_timer_->Enable(delay);
}

void Server::CloseListeners() {
  if (listeners_closed_) return;
  listeners_closed_ = true;
  if (drain_delay_timer_) drain_delay_timer_->Disable();
  // No ejections start or end while draining.
  outlier_->Stop();
  spdlog::info(
      "draining: listeners closed, no new connections; waiting up to {}ms for requests "
      "in flight",
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
    if (open > 0) {
      spdlog::warn("drain timeout: closing {} connection(s)", open);
    } else {
      spdlog::info("drained: no connection left");
    }
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

}  // namespace portway::server
