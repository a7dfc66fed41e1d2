#include "core/upstream/outlier_detector.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/common/strings.h"
#include "spdlog/spdlog.h"

namespace portway::upstream {

const char* OutlierRuleName(OutlierRule rule) {
  switch (rule) {
    case OutlierRule::kConsecutive5xx:
      return "consecutive_5xx";
    case OutlierRule::kConsecutiveGatewayFailure:
      return "consecutive_gateway_failure";
    case OutlierRule::kConsecutiveLocalOriginFailure:
      return "consecutive_local_origin_failure";
    case OutlierRule::kFailurePercentage:
      return "failure_percentage";
    case OutlierRule::kSuccessRate:
      return "success_rate";
  }
  return "unknown";
}

AttemptOutcome OutcomeOfStatus(int status) {
  if (status == 502 || status == 503 || status == 504) return AttemptOutcome::kGatewayFailure;
  if (status >= 500 && status <= 599) return AttemptOutcome::k5xx;
  return AttemptOutcome::kSuccess;
}

namespace {

// A store only when there is something to reset: a healthy host's counters
// stay 0 and their cache line is not written on every request.
void Reset(std::atomic<uint32_t>& counter) {
  if (counter.load(std::memory_order_relaxed) != 0) counter.store(0, std::memory_order_relaxed);
}

uint32_t* ThresholdOf(OutlierConfig& c, OutlierRule rule) {
  switch (rule) {
    case OutlierRule::kConsecutive5xx:
      return &c.consecutive_5xx;
    case OutlierRule::kConsecutiveGatewayFailure:
      return &c.consecutive_gateway_failure;
    case OutlierRule::kConsecutiveLocalOriginFailure:
      return &c.consecutive_local_origin_failure;
    default:
      return nullptr;
  }
}

std::atomic<uint32_t>* CounterOf(OutlierHostState& s, OutlierRule rule) {
  switch (rule) {
    case OutlierRule::kConsecutive5xx:
      return &s.consecutive_5xx;
    case OutlierRule::kConsecutiveGatewayFailure:
      return &s.consecutive_gateway_failure;
    case OutlierRule::kConsecutiveLocalOriginFailure:
      return &s.consecutive_local_origin_failure;
    default:
      return nullptr;
  }
}

void ResetConsecutive(OutlierHostState& s) {
  Reset(s.consecutive_5xx);
  Reset(s.consecutive_gateway_failure);
  Reset(s.consecutive_local_origin_failure);
}

}  // namespace

void RecordOutlierOutcome(const HostSharedPtr& host, const OutlierConfig& config,
                          AttemptOutcome outcome, OutlierSink* sink) {
  OutlierHostState& s = host->outlier();
  if (outcome == AttemptOutcome::kSuccess) {
    s.interval_successes.fetch_add(1, std::memory_order_relaxed);
    ResetConsecutive(s);
    return;
  }
  s.interval_failures.fetch_add(1, std::memory_order_relaxed);
  // Exactly the attempt that reaches the threshold tells: one notice per
  // streak, whatever the number of workers. The main thread resets the
  // counter when it handles it, so a streak that did not eject (the
  // max_ejection_percent bound) can cross again.
  auto bump = [&](std::atomic<uint32_t>& counter, uint32_t threshold, OutlierRule rule) {
    const uint32_t n = counter.fetch_add(1, std::memory_order_relaxed) + 1;
    if (threshold != 0 && n == threshold && sink != nullptr)
      sink->OnConsecutiveFailures(host, rule);
  };
  bump(s.consecutive_5xx, config.consecutive_5xx, OutlierRule::kConsecutive5xx);
  if (outcome == AttemptOutcome::k5xx) {
    Reset(s.consecutive_gateway_failure);
  } else {
    bump(s.consecutive_gateway_failure, config.consecutive_gateway_failure,
         OutlierRule::kConsecutiveGatewayFailure);
  }
  if (outcome == AttemptOutcome::kLocalOriginFailure) {
    bump(s.consecutive_local_origin_failure, config.consecutive_local_origin_failure,
         OutlierRule::kConsecutiveLocalOriginFailure);
  } else {
    Reset(s.consecutive_local_origin_failure);
  }
}

OutlierDetector::OutlierDetector(event::Dispatcher& dispatcher, HostHealthManager& health)
    : dispatcher_(dispatcher), health_(health) {}

OutlierDetector::~OutlierDetector() = default;

void OutlierDetector::OnConsecutiveFailures(HostSharedPtr host, OutlierRule rule) {
  std::weak_ptr<bool> alive = alive_;
  dispatcher_.Post([this, alive, host = std::move(host), rule] {
    if (alive.expired()) return;
    HandleConsecutive(host, rule);
  });
}

bool OutlierDetector::Member(const ClusterState& cluster, const Host* host) {
  for (const auto& h : cluster.snapshot->hosts) {
    if (h.get() == host) return true;
  }
  return false;
}

void OutlierDetector::HandleConsecutive(const HostSharedPtr& host, OutlierRule rule) {
  if (stopped_) return;
  auto it = clusters_.find(host->cluster());
  // A host that left its cluster (or a cluster that lost its detection)
  // while the notice was on its way: nothing to eject.
  if (it == clusters_.end() || !Member(*it->second, host.get())) return;
  ClusterState& cluster = *it->second;
  OutlierConfig config = *cluster.config;
  uint32_t* threshold = ThresholdOf(config, rule);
  std::atomic<uint32_t>* counter = CounterOf(host->outlier(), rule);
  if (threshold == nullptr || counter == nullptr) return;
  // The streak is handled: the next one counts from zero.
  counter->store(0, std::memory_order_relaxed);
  if (*threshold == 0) return;  // turned off by a reload meanwhile
  Eject(cluster, host, Cat(*threshold, " ", OutlierRuleName(rule)));
}

bool OutlierDetector::Eject(ClusterState& cluster, const HostSharedPtr& host,
                            const std::string& reason) {
  if ((host->healthFlags() & health_flag::kOutlier) != 0) return false;
  const OutlierConfig& config = *cluster.config;
  const size_t total = cluster.snapshot->hosts.size();
  size_t ejected = 0;
  for (const auto& h : cluster.snapshot->hosts) {
    if ((h->healthFlags() & health_flag::kOutlier) != 0) ++ejected;
  }
  // max_ejection_percent of the hosts, rounded down, but at least one (a
  // two-host cluster can eject its bad host at the default 10%); 0 ejects
  // none.
  size_t allowed = static_cast<size_t>(config.max_ejection_percent) * total / 100;
  if (allowed == 0 && config.max_ejection_percent > 0) allowed = 1;
  if (ejected >= allowed) {
    spdlog::info(
        "host {} of cluster '{}' not ejected ({}): {} of {} host(s) already are "
        "(max_ejection_percent {})",
        host->addressString(), host->cluster(), reason, ejected, total,
        config.max_ejection_percent);
    return false;
  }
  OutlierHostState& s = host->outlier();
  ++s.times_ejected;
  // base x times, capped; computed in 64 bits and bounded before the
  // multiplication can overflow.
  const int64_t base = config.base_ejection_time.count();
  const int64_t cap = config.max_ejection_time.count();
  int64_t ms = cap;
  if (base > 0 && static_cast<int64_t>(s.times_ejected) <= cap / base) {
    ms = std::min(cap, base * static_cast<int64_t>(s.times_ejected));
  }
  const std::chrono::milliseconds duration(ms);
  s.ejected_until = dispatcher_.Now() + duration;
  s.ejected_until_unix_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                dispatcher_.SystemNow().time_since_epoch())
                                .count() +
                            ms;
  health_.Set(host, health_flag::kOutlier, true,
              Cat(reason, "; ejected for ", ms, "ms (ejection ", s.times_ejected, ")"),
              cluster.snapshot->config->stats);
  ArmUnejectTimer(cluster);
  return true;
}

void OutlierDetector::Uneject(ClusterState& cluster, const HostSharedPtr& host,
                              const std::string& reason) {
  OutlierHostState& s = host->outlier();
  s.ejected_until = {};
  s.ejected_until_unix_ms = 0;
  // A host back from ejection starts its streaks afresh.
  ResetConsecutive(s);
  s.interval_successes.store(0, std::memory_order_relaxed);
  s.interval_failures.store(0, std::memory_order_relaxed);
  health_.Set(host, health_flag::kOutlier, false, reason, cluster.snapshot->config->stats);
}

void OutlierDetector::ArmUnejectTimer(ClusterState& cluster) {
  if (stopped_) return;
  bool any = false;
  MonotonicTime next{};
  for (const auto& h : cluster.snapshot->hosts) {
    if ((h->healthFlags() & health_flag::kOutlier) == 0) continue;
    if (!any || h->outlier().ejected_until < next) next = h->outlier().ejected_until;
    any = true;
  }
  if (!any) {
    cluster.uneject_timer->Disable();
    return;
  }
  auto wait = std::chrono::ceil<std::chrono::milliseconds>(next - dispatcher_.Now());
  cluster.uneject_timer->Enable(std::max(wait, std::chrono::milliseconds(0)));
}

void OutlierDetector::OnUnejectTimer(ClusterState& cluster) {
  const MonotonicTime now = dispatcher_.Now();
  for (const auto& h : cluster.snapshot->hosts) {
    if ((h->healthFlags() & health_flag::kOutlier) != 0 && h->outlier().ejected_until <= now) {
      Uneject(cluster, h, "ejection time over");
    }
  }
  ArmUnejectTimer(cluster);
}

void OutlierDetector::EvaluateInterval(const std::string& name) {
  auto it = clusters_.find(name);
  if (it != clusters_.end()) RunInterval(*it->second);
}

void OutlierDetector::RunInterval(ClusterState& cluster) {
  const OutlierConfig& config = *cluster.config;
  struct Sample {
    HostSharedPtr host;
    uint64_t successes;
    uint64_t failures;
  };
  std::vector<Sample> samples;
  samples.reserve(cluster.snapshot->hosts.size());
  for (const auto& h : cluster.snapshot->hosts) {
    OutlierHostState& s = h->outlier();
    const uint64_t ok = s.interval_successes.exchange(0, std::memory_order_relaxed);
    const uint64_t bad = s.interval_failures.exchange(0, std::memory_order_relaxed);
    if ((h->healthFlags() & health_flag::kOutlier) != 0) continue;
    // The decay: one ejection forgiven per interval spent back in
    // balancing and usable, so a host that stays good returns to
    // base_ejection_time if it fails again.
    if (s.times_ejected > 0 && h->usable()) --s.times_ejected;
    samples.push_back({h, ok, bad});
  }

  if (config.failure_percentage_threshold > 0) {
    std::vector<const Sample*> eligible;
    for (const Sample& s : samples) {
      if (s.successes + s.failures >= config.failure_percentage_request_volume) {
        eligible.push_back(&s);
      }
    }
    if (!eligible.empty() && eligible.size() >= config.minimum_hosts) {
      for (const Sample* s : eligible) {
        const uint64_t total = s->successes + s->failures;
        if (s->failures * 100 >=
            static_cast<uint64_t>(config.failure_percentage_threshold) * total) {
          Eject(cluster, s->host,
                Cat("failure_percentage: ", s->failures * 100 / total, "% of ", total,
                    " attempts failed (threshold ", config.failure_percentage_threshold, "%)"));
        }
      }
    }
  }

  if (config.success_rate_stdev_factor > 0) {
    std::vector<std::pair<const Sample*, double>> eligible;
    for (const Sample& s : samples) {
      const uint64_t total = s.successes + s.failures;
      if (total > 0 && total >= config.success_rate_request_volume) {
        eligible.push_back({&s, 100.0 * static_cast<double>(s.successes) / total});
      }
    }
    if (!eligible.empty() && eligible.size() >= config.minimum_hosts) {
      double mean = 0;
      for (const auto& [s, rate] : eligible) mean += rate;
      mean /= static_cast<double>(eligible.size());
      double variance = 0;
      for (const auto& [s, rate] : eligible) variance += (rate - mean) * (rate - mean);
      variance /= static_cast<double>(eligible.size());
      const double threshold = mean - config.success_rate_stdev_factor * std::sqrt(variance);
      for (const auto& [s, rate] : eligible) {
        if (rate < threshold) {
          Eject(cluster, s->host,
                Cat("success_rate: ", static_cast<int>(rate), "% is below the cluster's ",
                    static_cast<int>(threshold), "% (mean ", static_cast<int>(mean), "%)"));
        }
      }
    }
  }
  if (!stopped_) cluster.interval_timer->Enable(config.interval);
}

void OutlierDetector::Update(const std::map<std::string, ClusterSnapshotPtr>& clusters) {
  // Clusters gone, or without detection now.
  for (auto it = clusters_.begin(); it != clusters_.end();) {
    auto now_it = clusters.find(it->first);
    if (now_it != clusters.end() && now_it->second->config->outlier != nullptr) {
      ++it;
      continue;
    }
    if (now_it != clusters.end()) {
      // Still there without outlier detection: nothing keeps its hosts
      // ejected any more.
      ClusterState& state = *it->second;
      state.snapshot = now_it->second;
      for (const auto& h : state.snapshot->hosts) {
        h->outlier().times_ejected = 0;
        if ((h->healthFlags() & health_flag::kOutlier) != 0) {
          Uneject(state, h, "outlier detection removed from the cluster");
        }
      }
    }
    it = clusters_.erase(it);
  }
  for (const auto& [name, snapshot] : clusters) {
    const std::shared_ptr<const OutlierConfig>& config = snapshot->config->outlier;
    if (config == nullptr) continue;
    std::unique_ptr<ClusterState>& slot = clusters_[name];
    const bool fresh = slot == nullptr;
    if (fresh) {
      slot = std::make_unique<ClusterState>();
      ClusterState* state = slot.get();
      state->interval_timer = dispatcher_.CreateTimer([this, state] { RunInterval(*state); });
      state->uneject_timer = dispatcher_.CreateTimer([this, state] { OnUnejectTimer(*state); });
    }
    ClusterState& state = *slot;
    const bool changed = fresh || !(*state.config == *config);
    const bool interval_changed = fresh || state.config->interval != config->interval;
    state.config = config;
    state.snapshot = snapshot;
    if (changed) {
      // New thresholds: streaks counted against the old ones start over
      // (a counter past a lowered threshold would never reach it).
      for (const auto& h : snapshot->hosts) ResetConsecutive(h->outlier());
    }
    if (stopped_) continue;
    if (interval_changed) state.interval_timer->Enable(config->interval);
    // Hosts that stay keep their ejection (and its end); the timer now
    // walks the new host set.
    ArmUnejectTimer(state);
  }
}

void OutlierDetector::Stop() {
  stopped_ = true;
  for (auto& [name, state] : clusters_) {
    state->interval_timer->Disable();
    state->uneject_timer->Disable();
  }
}

}  // namespace portway::upstream
