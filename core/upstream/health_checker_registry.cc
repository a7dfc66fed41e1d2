// The registry of custom health checkers (portway/health_checker.h).
#include <map>
#include <mutex>
#include <string>

#include "portway/health_checker.h"

namespace portway {
namespace {

struct Registry {
  std::mutex mutex;
  std::map<std::string, std::unique_ptr<HealthCheckerFactory>, std::less<>> factories;
};

Registry& Checkers() {
  static auto* registry = new Registry();  // never destroyed: probes may outlive statics
  return *registry;
}

}  // namespace

absl::Status RegisterHealthChecker(std::unique_ptr<HealthCheckerFactory> factory) {
  if (factory == nullptr) return absl::InvalidArgumentError("no factory");
  Registry& r = Checkers();
  std::lock_guard<std::mutex> lock(r.mutex);
  std::string name(factory->Name());
  if (name.empty()) return absl::InvalidArgumentError("a health checker needs a name");
  if (r.factories.count(name) != 0) {
    return absl::AlreadyExistsError("health checker '" + name + "' is already registered");
  }
  r.factories.emplace(std::move(name), std::move(factory));
  return absl::OkStatus();
}

const HealthCheckerFactory* FindHealthChecker(std::string_view name) {
  Registry& r = Checkers();
  std::lock_guard<std::mutex> lock(r.mutex);
  auto it = r.factories.find(name);
  return it == r.factories.end() ? nullptr : it->second.get();
}

}  // namespace portway
