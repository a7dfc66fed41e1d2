// Outlier detection: passive health checking from the outcomes of real
// requests (api: OutlierDetection, docs/filters/health_check.md).
//
// Two halves:
//   - workers call RecordOutlierOutcome() after each attempt to a host of a
//     cluster with outlier detection: relaxed atomics on the host
//     (OutlierHostState), no lock. Only the attempt whose increment makes a
//     consecutive counter reach its threshold tells the sink (one Post to
//     the main thread per streak);
//   - the main thread's OutlierDetector (one for the process, owned by the
//     Server) ejects through HostHealthManager::Set(kOutlier), bounded by
//     max_ejection_percent, for base_ejection_time x times ejected (capped
//     at max_ejection_time), unejects by timer, and every `interval`
//     evaluates the failure-percentage and success-rate rules, lets the
//     ejection counts decay, and starts new interval counters.
//
// Thread safety: RecordOutlierOutcome() and OnConsecutiveFailures() from
// any thread; everything else of OutlierDetector on the main thread (the
// dispatcher it was given).
//
//   OutlierDetector detector(main_dispatcher, health);
//   detector.Update(snapshot->clusters);              // at each publish
//   // worker, after an attempt:
//   RecordOutlierOutcome(host, *config.outlier, AttemptOutcome::kGatewayFailure, &detector);
#pragma once

#include <map>
#include <memory>
#include <string>

#include "core/event/dispatcher.h"
#include "core/upstream/cluster.h"
#include "core/upstream/health.h"

namespace portway::upstream {

// What one attempt says about its host.
enum class AttemptOutcome : uint8_t {
  kSuccess,             // a response below 500
  k5xx,                 // a 5xx other than 502/503/504
  kGatewayFailure,      // 502, 503 or 504
  kLocalOriginFailure,  // no response: connect refused/failed/timed out, TLS
                        // handshake or verification failed, reset before a
                        // response, per-try or route timeout
};
// The outcome of a response with `status`.
AttemptOutcome OutcomeOfStatus(int status);

// Told when a worker's attempt made a consecutive counter reach its
// threshold. Any thread.
class OutlierSink {
 public:
  virtual ~OutlierSink() = default;
  virtual void OnConsecutiveFailures(HostSharedPtr host, OutlierRule rule) = 0;
};

// Worker: counts `outcome` on `host` (whose cluster has `config`); tells
// `sink` (may be null) of a threshold reached.
void RecordOutlierOutcome(const HostSharedPtr& host, const OutlierConfig& config,
                          AttemptOutcome outcome, OutlierSink* sink);

class OutlierDetector : public OutlierSink {
 public:
  // `dispatcher`: the main thread's (its clock and timers). `health` sets
  // the flags and outlives the detector.
  OutlierDetector(event::Dispatcher& dispatcher, HostHealthManager& health);
  ~OutlierDetector() override;

  // Any thread: posts the crossing to the main thread.
  void OnConsecutiveFailures(HostSharedPtr host, OutlierRule rule) override;

  // Main thread from here on.
  // A config (or DNS) snapshot went live, after HostHealthManager::Adopt:
  // clusters with outlier detection get (or keep) their timers; hosts that
  // stay keep their state; hosts that left are forgotten; a cluster whose
  // outlier detection was removed has its ejections lifted.
  void Update(const std::map<std::string, ClusterSnapshotPtr>& clusters);
  // Drain: timers stop and crossings are ignored from now on.
  void Stop();
  // A crossing as the main thread handles it (what the posted task runs).
  void HandleConsecutive(const HostSharedPtr& host, OutlierRule rule);
  // Runs the cluster's interval evaluation now (tests; the timer calls it).
  void EvaluateInterval(const std::string& cluster);
  // Whether `cluster` has detection state (tests).
  bool Tracks(const std::string& cluster) const { return clusters_.count(cluster) > 0; }

 private:
  struct ClusterState {
    std::shared_ptr<const OutlierConfig> config;
    ClusterSnapshotPtr snapshot;
    event::TimerPtr interval_timer;
    event::TimerPtr uneject_timer;
  };

  // Ejects `host` unless it is ejected already or max_ejection_percent
  // forbids it. True when ejected.
  bool Eject(ClusterState& cluster, const HostSharedPtr& host, const std::string& reason);
  void Uneject(ClusterState& cluster, const HostSharedPtr& host, const std::string& reason);
  // Lifts the ejections that are due, and arms the timer for the next.
  void OnUnejectTimer(ClusterState& cluster);
  void ArmUnejectTimer(ClusterState& cluster);
  void RunInterval(ClusterState& cluster);
  static bool Member(const ClusterState& cluster, const Host* host);

  event::Dispatcher& dispatcher_;
  HostHealthManager& health_;
  std::map<std::string, std::unique_ptr<ClusterState>> clusters_;
  bool stopped_ = false;
  // Expires with the detector: a crossing posted by a worker late is
  // dropped.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace portway::upstream
