// Tells the control plane which hosts this gateway cannot use: a
// HealthReport (every host with a health flag set: cluster, address, flag
// names, last reason, since) handed to a sink, which the discovery Client
// sends on its stream and again after every reconnect's Hello
// (docs/control-plane.md, "Host health").
//
// When: a report is due after a host's flags change (HostHealthManager's
// listener calls HostChanged) and after a new config goes live
// (ConfigChanged: a host removed from the config must leave the report).
// Changes are coalesced: at most one report per `min_interval` (1s), sent
// by a timer on the main loop, so a burst (a cluster going dark, a big
// push) costs one report.
//
// Cost: each report walks every host of the current snapshot once,
// O(hosts), on the main thread; nothing is walked while no report is due.
// A report carries at most `max_hosts` hosts (10,000) and about
// `max_bytes` (2 MiB), in cluster order, each reason cut to 256 bytes; the
// rest are counted in HealthReport.omitted. A report equal to the last one
// is not sent again.
//
// Thread safety: main thread only (the dispatcher's loop), like the hosts'
// health details it reads.
//
//   HealthReporter reporter(*dispatcher, walk_hosts,
//                           [&](v1::HealthReport r) { client->SetHealthReport(std::move(r)); });
//   health.AddListener([&](const auto&, uint32_t) { reporter.HostChanged(); });
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <optional>

#include "core/event/dispatcher.h"
#include "core/upstream/host.h"
#include "portway/service/discovery/v1/discovery.pb.h"

namespace portway::discovery {

namespace v1 = portway::service::discovery::v1;

class HealthReporter {
 public:
  // Calls `visit` for every host of the serving config.
  using HostWalk = std::function<void(const std::function<void(const upstream::Host&)>& visit)>;
  using Sink = std::function<void(v1::HealthReport report)>;

  struct Options {
    std::chrono::milliseconds min_interval{1000};
    // A report stops adding hosts at either cap (the rest are counted in
    // `omitted`), so it stays well under gRPC's 4 MiB message limit: a
    // larger one would end the stream, and the config pushes with it.
    size_t max_hosts = 10000;
    size_t max_bytes = 2 << 20;
  };
  // A host's reason is cut to this many bytes in the report.
  static constexpr size_t kMaxReasonBytes = 256;

  HealthReporter(event::Dispatcher& dispatcher, HostWalk walk, Sink sink, Options options);
  HealthReporter(event::Dispatcher& dispatcher, HostWalk walk, Sink sink)
      : HealthReporter(dispatcher, std::move(walk), std::move(sink), Options()) {}

  // A host's flags changed: a report is due.
  void HostChanged();
  // A new config is live. A report is due only if the last one named a
  // host (a host removed from the config may be in it); a new host that is
  // unusable from the start comes with its own HostChanged.
  void ConfigChanged();
  // Builds the report now (O(hosts)); what a due report sends.
  v1::HealthReport Build() const;
  // Reports sent to the sink so far.
  uint64_t reports() const { return reports_; }

 private:
  void Schedule();
  void Send();

  event::Dispatcher& dispatcher_;
  const HostWalk walk_;
  const Sink sink_;
  const Options options_;
  event::TimerPtr timer_;
  std::optional<MonotonicTime> last_sent_;
  // What the last report said (serialized), to skip an equal one.
  std::string last_report_;
  bool last_named_hosts_ = false;
  uint32_t last_omitted_ = 0;
  uint64_t reports_ = 0;
};

}  // namespace portway::discovery
