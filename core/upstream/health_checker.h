// Active health checks: one checker for the whole gateway process, on the
// main thread (not one per worker: N workers must not multiply the probes a
// host receives).
//
// Each (host, check) pair is a session with its own schedule: the first
// probe at a random point of the first interval (so a thousand hosts added
// at once are not probed at once), then every interval (unhealthy_interval
// while the host fails this check, no_traffic_interval while the host has
// had no request since the session began) plus a random delay of up to
// `jitter`. A probe not answered within `timeout` fails. The first result
// decides alone; after that unhealthy_threshold failures in a row take the
// host out, healthy_threshold passes in a row bring it back. A host fails
// its active checks (health_flag::kActiveCheck) while any of its sessions
// fails; the flag is set and cleared through HostHealthManager.
//
// Probes speak what the cluster speaks: http and grpc checks go through a
// connection pool of their own per session (one connection, kept alive
// between probes; the cluster's protocol and TLS), tcp checks open a plain
// TCP connection per probe, custom checks call a module's HealthProbe.
//
// Cost: a session is a timer and, for http/grpc, one pool and one idle
// connection. Update() skips clusters whose snapshot did not change.
//
// Thread safety: main thread only, but for the `done` of custom probes,
// which may be called from any thread (it posts to the dispatcher).
//
//   HealthCheckManager checks(dispatcher, health, random);
//   checks.Update(snapshot->clusters);   // at every publish
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "core/event/dispatcher.h"
#include "core/upstream/cluster.h"
#include "core/upstream/health.h"

namespace portway::upstream {

// One probe of one host: Start() once; it calls `done` once (possibly
// before Start returns), unless Cancel() came first.
class HealthProbeRunner : public event::DeferredDeletable {
 public:
  using Done = std::function<void(bool healthy, std::string detail)>;
  virtual void Start(Done done) = 0;
  virtual void Cancel() = 0;
};

class HealthCheckMailbox;

class HealthCheckManager {
 public:
  HealthCheckManager(event::Dispatcher& dispatcher, HostHealthManager& health, Random& random);
  ~HealthCheckManager();

  // The clusters now in force: sessions start for new (host, check) pairs
  // and stop for those gone; a pair whose check did not change keeps its
  // session, counts and verdict. A host whose sessions all stop has its
  // active-check flag cleared.
  void Update(const std::map<std::string, ClusterSnapshotPtr>& clusters);
  // Stops every session (drain, shutdown).
  void Stop();

  size_t SessionCount() const { return sessions_.size(); }
  // For /clusters: "passing" / "failing" / "pending" per check of `host`
  // (empty if the host has no check).
  std::vector<std::string> Describe(const Host& host) const;

 private:
  class Session;
  struct ClusterChecks;
  struct HostEntry {
    HostSharedPtr host;
    int failing = 0;  // sessions of this host now failing
  };

  void OnVerdict(Session& session, bool failing_now, const std::string& reason);

  event::Dispatcher& dispatcher_;
  HostHealthManager& health_;
  Random& random_;
  // Per cluster: the snapshot last seen and what its probes share.
  std::map<std::string, std::shared_ptr<ClusterChecks>> clusters_;
  // Keyed by (host, check index); the check's identity is in the session.
  std::map<std::pair<const Host*, size_t>, std::unique_ptr<Session>> sessions_;
  absl::flat_hash_map<const Host*, HostEntry> hosts_;
  // Custom probes' answers from other threads come through it.
  std::shared_ptr<HealthCheckMailbox> mailbox_;
};

}  // namespace portway::upstream
