// The process-wide filter registry: built-in filters register at start,
// modules when they are loaded. Looked up by the config builder.
//
// Thread safety: registration and lookup happen on the main thread (config
// building); workers only call the FilterFactoryCallbacks a built config
// holds.
#pragma once

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "portway/filter_factory.h"

namespace portway::http {

class FilterRegistryImpl : public FilterRegistry {
 public:
  absl::Status Register(std::unique_ptr<FilterFactory> factory) override;
  const FilterFactory* Find(std::string_view name) const;
  std::vector<std::string> Names() const;

  // The modules whose factories this registry holds, by canonical path
  // (see module_loader.h).
  bool HasModule(const std::string& path) const { return modules_.count(path) > 0; }
  void AddModule(std::string path) { modules_.insert(std::move(path)); }
  const std::set<std::string>& Modules() const { return modules_; }

 private:
  std::map<std::string, std::unique_ptr<FilterFactory>, std::less<>> factories_;
  std::set<std::string> modules_;
};

FilterRegistryImpl& GlobalFilterRegistry();

}  // namespace portway::http
