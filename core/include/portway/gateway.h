// What a filter may ask about the gateway it runs in: whether it is
// draining, and how many hosts of a cluster are usable. A health endpoint
// (portway.health_check) answers from these; any filter may read them.
//
// Thread safety: a GatewayView belongs to one worker and is reached through
// FilterCallbacks::Gateway(); call it on that worker's thread, from a
// filter's phases. Every method is a few relaxed atomic loads (no lock, no
// allocation): cheap enough for every request, though a filter normally
// asks only for the requests it cares about.
//
//   const portway::http::GatewayView& gateway = callbacks_->Gateway();
//   if (gateway.Draining()) { ...fail the health check... }
//   portway::http::ClusterHealth h = gateway.GetClusterHealth("backend");
//   if (!h.AtLeastPercent(60)) { ...h.usable of h.total hosts usable... }
#pragma once

#include <cstdint>
#include <string_view>

namespace portway::http {

// The hosts of one cluster in the worker's current config. A host is
// usable when nothing holds it out of balancing: active health checks,
// outlier detection, or the control plane (health_status UNHEALTHY or
// DRAINING). Counts change as health does, without a new config.
struct ClusterHealth {
  bool known = false;   // the cluster exists in this worker's config
  uint32_t total = 0;   // its hosts (0 for an unknown cluster)
  uint32_t usable = 0;  // of them, those usable now

  // Usable hosts as a percentage of all (0 for an unknown cluster or one
  // without hosts).
  double Percent() const { return total == 0 ? 0.0 : 100.0 * usable / total; }
  // True when at least `percent` percent of the hosts are usable, compared
  // exactly in integers. An unknown cluster, or one without hosts, counts
  // as 0%: it passes only `percent` 0.
  bool AtLeastPercent(uint32_t percent) const {
    return static_cast<uint64_t>(usable) * 100 >= static_cast<uint64_t>(percent) * total &&
           (total > 0 || percent == 0);
  }
};

class GatewayView {
 public:
  virtual ~GatewayView() = default;
  // A drain has started (SIGTERM or SIGINT): true from the signal on, for
  // the whole of drain_delay (while listeners still accept and serve) and
  // the drain after it. Health endpoints should fail from here, so the load
  // balancers in front stop sending before the listeners close.
  virtual bool Draining() const = 0;
  // The health of `cluster` as this worker's current config sees it.
  virtual ClusterHealth GetClusterHealth(std::string_view cluster) const = 0;
};

}  // namespace portway::http
