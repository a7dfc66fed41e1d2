// Custom active health checkers: a module can teach the gateway a new kind
// of probe, configured per cluster as
//
//   health_checks:
//   - interval: 5s
//     custom: { name: acme.redis_ping, config: { password_file: /etc/pw } }
//
// The core owns the schedule (interval, jitter, timeout, thresholds) and
// what a verdict does to the host; a checker only answers "is this host
// healthy now?".
//
// Thread safety: Register, Create and the factory function run on the main
// thread. A probe's Check() runs on the main thread; its `done` may be
// called from any thread, once (later calls, and calls after the probe's
// timeout or destruction, are ignored).
//
//   class PingFactory : public portway::HealthCheckerFactory {
//     std::string_view Name() const override { return "acme.ping"; }
//     std::unique_ptr<google::protobuf::Message> NewConfig() const override { ... }
//     absl::StatusOr<portway::HealthProbeFactoryFn> Create(const Message& m) const override {
//       return [](const portway::HealthCheckTarget& target) {
//         return std::make_unique<PingProbe>(target.address);
//       };
//     }
//   };
//   // In the module's register function:
//   portway::RegisterHealthChecker(std::make_unique<PingFactory>());
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace google::protobuf {
class Message;
}

namespace portway {

// The host a probe checks.
struct HealthCheckTarget {
  std::string cluster;
  std::string address;  // "IP:PORT" ("[IPv6]:PORT")
  std::string ip;
  uint16_t port = 0;
  std::string hostname;  // the DNS name it was resolved from, or ""
};

struct HealthCheckResult {
  bool healthy = false;
  // Why, for the log line and /clusters ("connection refused", "status 500").
  std::string detail;
};

// One per host and check, for as long as both exist.
class HealthProbe {
 public:
  virtual ~HealthProbe() = default;
  // Starts one probe. Call `done` once with the verdict. The core fails
  // the probe itself if `done` is not called within the check's timeout.
  virtual void Check(std::function<void(HealthCheckResult)> done) = 0;
};

using HealthProbeFactoryFn =
    std::function<std::unique_ptr<HealthProbe>(const HealthCheckTarget& target)>;

class HealthCheckerFactory {
 public:
  virtual ~HealthCheckerFactory() = default;
  // The name configs use in `custom.name`.
  virtual std::string_view Name() const = 0;
  // An empty instance of the typed config message (`custom.config`).
  virtual std::unique_ptr<google::protobuf::Message> NewConfig() const = 0;
  // Checks `config`; InvalidArgumentError("FIELD: what is wrong") is
  // reported under the check's path (clusters[0].health_checks[0].custom.config.FIELD).
  virtual absl::StatusOr<HealthProbeFactoryFn> Create(
      const google::protobuf::Message& config) const = 0;
};

// Registers a checker for the life of the process (call it from a module's
// register function). AlreadyExists if the name is taken.
absl::Status RegisterHealthChecker(std::unique_ptr<HealthCheckerFactory> factory);

// The registered checker named `name`, or null (main thread).
const HealthCheckerFactory* FindHealthChecker(std::string_view name);

}  // namespace portway
