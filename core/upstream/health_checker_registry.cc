// The registry of custom health checkers (portway/health_checker.h).
#include <map>
#include <mutex>
#include <string>

#include "core/upstream/health_checker_registry.h"

namespace portway {
namespace {

thread_local upstream::HealthCheckerStaging* current_staging = nullptr;

struct Registry {
  std::mutex mutex;
  std::map<std::string, std::unique_ptr<HealthCheckerFactory>, std::less<>> factories;
  std::map<std::string, std::string, std::less<>> module_of;  // name -> module ("" built in)
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
  bool taken = r.factories.count(name) != 0;
  upstream::HealthCheckerStaging* staging = upstream::HealthCheckerStaging::Current();
  if (taken && staging != nullptr && r.module_of[name] == staging->module()) {
    ++staging->repeated;  // the same module, loaded again
    return absl::OkStatus();
  }
  if (staging != nullptr) {
    for (const auto& f : staging->staged()) taken = taken || f->Name() == name;
  }
  if (taken) {
    return absl::AlreadyExistsError("health checker '" + name + "' is already registered");
  }
  if (staging != nullptr) {
    staging->staged().push_back(std::move(factory));
  } else {
    r.factories.emplace(std::move(name), std::move(factory));
  }
  return absl::OkStatus();
}

const HealthCheckerFactory* FindHealthChecker(std::string_view name) {
  Registry& r = Checkers();
  std::lock_guard<std::mutex> lock(r.mutex);
  auto it = r.factories.find(name);
  return it == r.factories.end() ? nullptr : it->second.get();
}

namespace upstream {

HealthCheckerStaging::HealthCheckerStaging(std::string module)
    : previous_(current_staging), module_(std::move(module)) {
  current_staging = this;
}

HealthCheckerStaging::~HealthCheckerStaging() { Discard(); }

HealthCheckerStaging* HealthCheckerStaging::Current() { return current_staging; }

void HealthCheckerStaging::Stop() {
  if (!active_) return;
  active_ = false;
  current_staging = previous_;
}

void HealthCheckerStaging::Commit() {
  Stop();
  Registry& r = Checkers();
  std::lock_guard<std::mutex> lock(r.mutex);
  for (auto& factory : staged_) {
    std::string name(factory->Name());
    r.module_of[name] = module_;
    r.factories.emplace(std::move(name), std::move(factory));
  }
  staged_.clear();
}

void HealthCheckerStaging::Discard() {
  Stop();
  staged_.clear();
}

}  // namespace upstream
}  // namespace portway
