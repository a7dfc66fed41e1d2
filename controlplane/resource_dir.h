// portway-cp's source of truth: a directory of YAML (or JSON) files, each a
// ResourceSet (top-level `listeners:`, `route_configurations:`, `clusters:`,
// `endpoints:`, shaped as in the gateway's bootstrap).
//
// Refresh() re-reads the files that changed (by mtime and size). A file
// with errors is reported with every error and its path, and the last
// good version of its resources stays served. A name defined in two files
// is served from the first file (by name) and the other is reported.
// Every resource's version is a hash of its content, so an unchanged
// resource keeps its version across reloads and restarts.
//
// Thread safety: none; portway-cp calls it from its poll thread and copies
// Resources() under its own lock.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "portway/service/discovery/v1/discovery.pb.h"

namespace portway::controlplane {

namespace v1 = portway::service::discovery::v1;
using Key = std::pair<int, std::string>;  // (ResourceType, name)

class ResourceDir {
 public:
  explicit ResourceDir(std::string dir) : dir_(std::move(dir)) {}

  // True when the served set changed.
  bool Refresh();

  // One resource as a file defines it.
  struct Entry {
    v1::Resource resource;
    std::map<std::string, std::string> node_selector;
    std::string file;
  };
  // In file-name order (a gateway gets the first matching entry of a key).
  const std::vector<std::pair<Key, Entry>>& Entries() const { return entries_; }

 private:
  struct File {
    int64_t mtime_ns = -1;
    int64_t size = -1;
    v1::ResourceSet good;  // the last version that parsed
  };
  std::string dir_;
  std::map<std::string, File> files_;
  std::vector<std::pair<Key, Entry>> entries_;
};

// Whether a gateway with `metadata` gets resources with `selector`.
bool Selects(const std::map<std::string, std::string>& selector,
             const google::protobuf::Map<std::string, std::string>& metadata);

// The resources a ResourceSet names, each with its name and a content
// version (a hash: the same resource gets the same version everywhere).
std::vector<v1::Resource> ToResources(const v1::ResourceSet& set);
Key KeyOf(const v1::Resource& resource);

}  // namespace portway::controlplane
