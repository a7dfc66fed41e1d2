#include "core/http/filter_registry.h"

#include "core/common/strings.h"

namespace portway::http {

absl::Status FilterRegistryImpl::Register(std::unique_ptr<FilterFactory> factory) {
  std::string name(factory->Name());
  if (name.empty()) return absl::InvalidArgumentError("a filter factory needs a name");
  if (factories_.count(name) > 0) {
    return absl::AlreadyExistsError(Cat("filter '", name, "' is already registered"));
  }
  unavailable_.erase(name);
  factories_.emplace(std::move(name), std::move(factory));
  return absl::OkStatus();
}

const FilterFactory* FilterRegistryImpl::Find(std::string_view name) const {
  auto it = factories_.find(name);
  return it == factories_.end() ? nullptr : it->second.get();
}

std::vector<std::string> FilterRegistryImpl::Names() const {
  std::vector<std::string> names;
  for (const auto& [name, factory] : factories_) names.push_back(name);
  return names;
}

FilterRegistryImpl& GlobalFilterRegistry() {
  static FilterRegistryImpl* registry = new FilterRegistryImpl();
  return *registry;
}

}  // namespace portway::http
