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

  // Why no factory has `name`, when the gateway knows (a module for it was
  // refused); "unknown filter" errors say it. Cleared when `name` registers.
  void SetUnavailable(std::string name, std::string why) {
    unavailable_[std::move(name)] = std::move(why);
  }
  const std::string* Unavailable(std::string_view name) const {
    auto it = unavailable_.find(name);
    return it == unavailable_.end() ? nullptr : &it->second;
  }

 private:
  std::map<std::string, std::unique_ptr<FilterFactory>, std::less<>> factories_;
  std::set<std::string> modules_;
  std::map<std::string, std::string, std::less<>> unavailable_;
};

FilterRegistryImpl& GlobalFilterRegistry();

}  // namespace portway::http
