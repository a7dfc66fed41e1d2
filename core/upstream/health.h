// Host health as the core owns it: the one place that turns a verdict (an
// active check, outlier detection, the control plane) into a host's flags,
// and says so (log line, stats, listeners such as the control-plane
// reporter).
//
// Cost: a verdict touches its host alone (an atomic store, the host set's
// unusable count, one gauge): workers see it at their next pick, with no
// snapshot rebuilt and no cluster walked. Adopt() walks a cluster's hosts,
// but only when a new host set is published.
//
// Thread safety: main thread only.
//
//   HostHealthManager health(RealTimeSource());
//   health.Adopt(*cluster_snapshot);                  // at publish
//   health.Set(host, health_flag::kActiveCheck, true, "status 503");
#pragma once

#include <functional>
#include <string_view>
#include <vector>

#include "core/upstream/cluster.h"
#include "portway/time_source.h"

namespace portway::upstream {

class HostHealthManager {
 public:
  // Called after each change of a host's flags.
  using Listener = std::function<void(const HostSharedPtr& host, uint32_t old_flags)>;

  explicit HostHealthManager(const TimeSource& clock) : clock_(clock) {}

  // Sets or clears `flag` on `host`, with `reason` for the log line and
  // /clusters. `stats` (may be null) are the host's cluster's. Nothing
  // happens when the flag already has that value.
  void Set(const HostSharedPtr& host, uint32_t flag, bool on, std::string_view reason,
           stats::ClusterStats* stats);
  // A snapshot of a cluster goes live: its hosts count their health in its
  // host set, and take the control-plane flags their endpoints carry.
  void Adopt(const ClusterSnapshot& cluster);
  void AddListener(Listener listener) { listeners_.push_back(std::move(listener)); }
  const TimeSource& clock() const { return clock_; }

 private:
  const TimeSource& clock_;
  std::vector<Listener> listeners_;
};

}  // namespace portway::upstream
