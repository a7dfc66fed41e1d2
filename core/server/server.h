// The gateway process: the main thread (config, admin, signals, DNS, drain)
// and N workers, each with its own event loop and SO_REUSEPORT listeners.
//
// Thread safety: Server's methods run on the main thread. Workers receive
// new snapshots, listeners and drain orders only through Dispatcher::Post;
// they share nothing mutable except atomics (stats, host state).
//
//   Server server(options);
//   if (!server.Init(&errors)) { ...print errors... }
//   return server.Run();   // until SIGTERM/SIGINT and drain
//
// Server's methods are defined by concern: server.cc (start, stop, drain,
// signals), dynamic_config.cc (binding listeners, applying a new config
// from a SIGHUP or the control plane, handing snapshots to the workers),
// dns_refresh.cc (re-resolving DNS clusters) and admin.cc (the admin
// pages). The workers are in worker.h, the admin server in admin.h.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "core/config/yaml_proto.h"
#include "core/discovery/client.h"
#include "core/discovery/health_reporter.h"
#include "core/discovery/resource_store.h"
#include "core/event/dispatcher.h"
#include "core/server/config_builder.h"
#include "core/server/snapshot.h"
#include "core/server/stats.h"
#include "core/upstream/health.h"
#include "core/upstream/health_checker.h"
#include "core/upstream/outlier_detector.h"

namespace portway::server {

struct Options {
  std::string config_path;
  int workers = 0;  // 0 = number of cores
  std::string admin_address_path;
};

class Worker;
class AdminServer;

class Server {
 public:
  explicit Server(Options options);
  ~Server();

  // Loads the config, binds every socket and starts the workers. On
  // failure, `errors` says why and nothing is left running.
  bool Init(config::ConfigErrors* errors);
  // Serves until a SIGTERM/SIGINT drain finishes. Returns the exit code.
  int Run();

  // Admin pages (admin.cc).
  bool Ready() const { return NotReadyReason().empty(); }
  // Why /ready answers 503 ("" when ready): starting, draining, or, with a
  // control plane, its first push not applied yet (unless a persisted
  // config is loaded and control_plane.initial_fetch_timeout has passed).
  std::string NotReadyReason() const;
  bool Draining() const { return draining_; }
  std::string RenderStats() const;
  std::string RenderClusters() const;
  std::string RenderListeners() const;
  std::string RenderConfigDump() const;
  std::string RenderControlPlane() const;
  // [{type, name, serving_version, ...}] of the control plane's resources.
  std::string RenderDynamicResources() const;
  // GET /failures[?limit=N] and /failures/<request-id>: asks every worker
  // for its failure history; `done` runs on the main thread with the
  // status and JSON body once all have answered.
  void CollectFailures(const std::string& target, std::function<void(int, std::string)> done);

 private:
  struct BoundListener {
    ListenerConfigPtr config;
    std::vector<int> fds;  // one per worker; handed over on start
    network::Address bound;
  };

  // Dynamic configuration (dynamic_config.cc).
  // True when one of this gateway's listeners is bound to `address`.
  bool HoldsPort(const network::Address& address) const;
  bool BindListeners(const SnapshotPtr& snapshot, std::map<std::string, BoundListener>* bound,
                     config::ConfigErrors* errors);
  void Publish(SnapshotPtr snapshot);
  // snapshot_ just went live: its host sets count their hosts' health
  // (HostHealthManager::Adopt); the active checks and outlier detection
  // follow its clusters.
  void StartHostHealth();
  void Reload();
  // Builds, binds and publishes `bootstrap`; false (with errors) leaves
  // the running config alone. `on_live` (optional) runs on the main
  // thread once every worker serves it.
  bool Apply(const config::v1::Bootstrap& bootstrap, config::ConfigErrors* errors,
             std::function<void()> on_live);
  // Runs `done` on the main thread after every worker ran what was posted
  // to it so far.
  void WhenWorkersCaughtUp(std::function<void()> done);
  void StartControlPlane(const config::v1::Bootstrap& bootstrap);
  void OnPush(const discovery::v1::Push& push);
  // control_plane.persist_path: read at start, rewritten after each push.
  void LoadPersisted();
  // Loads "<module_dir>/<filter>.so" for each filter a push names that no
  // module registered yet.
  void LoadModulesFor(const discovery::v1::Push& push);
  void Persist();
  // Drain (server.cc). StartDrain (SIGTERM, SIGINT) fails health checks
  // at once and, after drain_delay, calls CloseListeners: no new
  // connections, then CheckDrained until none is left or drain_timeout.
  void StartDrain();
  void CloseListeners();
  void CheckDrained();
  // DNS clusters (dns_refresh.cc).
  void ScheduleDns();
  void ResolveCluster(const std::string& name);
  struct ResolveBatch {
    std::vector<upstream::EndpointSpec> endpoints;  // what was asked
    std::vector<event::ResolveResult> results;      // one per endpoint
    size_t remaining = 0;
  };
  void OnResolved(const std::string& name, std::shared_ptr<ResolveBatch> batch);

  Options options_;
  // Host health (main thread): every verdict on a host goes through it.
  upstream::HostHealthManager health_;
  stats::Store& store_;  // the process's GlobalStore()
  ConfigBuilder builder_;
  event::DispatcherPtr dispatcher_;
  // Active health checks, for the whole process (main thread).
  std::unique_ptr<upstream::Random> health_random_;
  std::unique_ptr<upstream::HealthCheckManager> health_checks_;
  // Outlier detection (main thread; workers post their crossings to it).
  std::unique_ptr<upstream::OutlierDetector> outlier_;
  SnapshotPtr snapshot_;
  std::map<std::string, BoundListener> listeners_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::unique_ptr<AdminServer> admin_;
  std::vector<event::SignalHandlePtr> signals_;
  std::map<std::string, event::TimerPtr> dns_timers_;
  std::map<std::string, bool> dns_resolved_once_;
  // Set with draining_ and read by the workers' filters
  // (GatewayView::Draining); outlives the workers.
  std::atomic<bool> gateway_draining_{false};
  event::TimerPtr drain_delay_timer_;
  bool listeners_closed_ = false;  // the drain proper has begun
  event::TimerPtr drain_timer_;
  event::MonotonicTime drain_deadline_;
  bool ready_ = false;
  bool draining_ = false;
  int exit_code_ = 0;
  // With a control plane (bootstrap control_plane): what it sent, checked
  // by a builder of its own (check-only, stats of its own).
  stats::Store validation_store_;
  std::unique_ptr<ConfigBuilder> validator_;
  std::unique_ptr<discovery::ResourceStore> resources_;
  std::unique_ptr<discovery::Client> client_;
  // Tells the control plane which hosts this gateway cannot use (its timer
  // is on dispatcher_, declared before it).
  std::unique_ptr<discovery::HealthReporter> health_reporter_;
  std::string last_apply_error_;
  std::string persist_path_;
  // portway_config_version (set from the snapshot at each scrape) and
  // portway_config_reloads_total{source,result}.
  stats::Gauge& config_version_;
  stats::Counter& sighup_success_;
  stats::Counter& sighup_failure_;
  stats::Counter& push_success_;
  stats::Counter& push_failure_;
  // Readiness with a control plane (main thread).
  bool first_push_applied_ = false;
  bool persisted_loaded_ = false;
  std::chrono::steady_clock::time_point control_plane_started_;
  std::chrono::milliseconds initial_fetch_timeout_{15000};
};

}  // namespace portway::server
