// Module loading and custom health checkers: while a module registers, its
// RegisterHealthChecker calls are held back (on the loading thread) and
// land only if the whole module is accepted, like its filters.
//
// Thread safety: a staging belongs to the thread that made it.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "portway/health_checker.h"

namespace portway::upstream {

class HealthCheckerStaging {
 public:
  // `module`: the canonical path of the module registering. The same
  // module loaded again (into another filter registry) registering the
  // same names is not a conflict; its second factories are dropped.
  explicit HealthCheckerStaging(std::string module);
  ~HealthCheckerStaging();  // discards what was not committed
  HealthCheckerStaging(const HealthCheckerStaging&) = delete;
  HealthCheckerStaging& operator=(const HealthCheckerStaging&) = delete;

  size_t size() const { return staged_.size(); }
  // Stops staging and registers what was staged (names were checked when
  // staged, so this cannot fail).
  void Commit();
  // Stops staging and drops what was staged.
  void Discard();

  // RegisterHealthChecker's side.
  static HealthCheckerStaging* Current();
  std::vector<std::unique_ptr<HealthCheckerFactory>>& staged() { return staged_; }
  const std::string& module() const { return module_; }
  // Registrations that were already there from this same module.
  size_t repeated = 0;

 private:
  void Stop();
  std::vector<std::unique_ptr<HealthCheckerFactory>> staged_;
  HealthCheckerStaging* previous_;
  std::string module_;
  bool active_ = true;
};

}  // namespace portway::upstream
