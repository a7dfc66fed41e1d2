#include "controlplane/resource_dir.h"

#include <sys/stat.h>

#include <cstdio>
#include <filesystem>
#include <functional>

#include "core/config/yaml_proto.h"
#include "core/discovery/resource_store.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "spdlog/spdlog.h"

namespace portway::controlplane {
namespace {

// A content hash: the same resource gets the same version everywhere.
std::string VersionOf(const v1::Resource& r) {
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream out(&bytes);
    google::protobuf::io::CodedOutputStream coded(&out);
    coded.SetSerializationDeterministic(true);
    r.SerializeToCodedStream(&coded);
  }
  // FNV-1a, 64 bits: stable across builds (std::hash is not).
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 1099511628211ull;
  }
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(h));
  return hex;
}

bool IsConfigFile(const std::filesystem::path& p) {
  std::string ext = p.extension().string();
  return ext == ".yaml" || ext == ".yml" || ext == ".json";
}

}  // namespace

bool ResourceDir::Refresh() {
  std::error_code ec;
  std::map<std::string, bool> present;
  for (const auto& entry : std::filesystem::directory_iterator(dir_, ec)) {
    if (!entry.is_regular_file() || !IsConfigFile(entry.path())) continue;
    std::string path = entry.path().string();
    present[path] = true;
    struct stat st {};
    if (stat(path.c_str(), &st) != 0) continue;
    int64_t mtime = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
    File& f = files_[path];
    if (f.mtime_ns == mtime && f.size == st.st_size) continue;
    f.mtime_ns = mtime;
    f.size = st.st_size;
    v1::ResourceSet set;
    config::ConfigErrors errors;
    if (!config::YamlFileToProto(path, &set, &errors)) {
      spdlog::error("{}: {} error(s); its last good version stays served:", path, errors.size());
      for (const auto& e : errors) spdlog::error("  {}: {}", path, e.ToString());
      bool bootstrap = false;
      for (const auto& e : errors) {
        bootstrap = bootstrap || e.path == "admin" || e.path == "control_plane";
      }
      if (bootstrap) {
        spdlog::error("  {}: looks like a gateway bootstrap; keep it out of --config-dir", path);
      }
      continue;
    }
    f.good = std::move(set);
    spdlog::info("{}: loaded", path);
  }
  if (ec) spdlog::error("{}: {}", dir_, ec.message());
  for (auto it = files_.begin(); it != files_.end();) {
    if (present.count(it->first) == 0) {
      spdlog::info("{}: removed", it->first);
      it = files_.erase(it);
    } else {
      ++it;
    }
  }

  std::vector<std::pair<Key, Entry>> next;
  for (const auto& [file, f] : files_) {
    std::map<std::string, std::string> selector(f.good.node_selector().begin(),
                                                f.good.node_selector().end());
    for (auto& r : ToResources(f.good)) {
      Key key = KeyOf(r);
      bool duplicate = false;
      for (const auto& [k, e] : next) {
        if (k == key && e.node_selector == selector) {
          spdlog::warn(
              "{}: {} '{}' is also defined in {} for the same gateways; that one is served", file,
              v1::ResourceType_Name(static_cast<v1::ResourceType>(key.first)), key.second, e.file);
          duplicate = true;
          break;
        }
      }
      if (duplicate) continue;
      next.push_back({key, Entry{std::move(r), selector, file}});
    }
  }
  bool changed = next.size() != entries_.size();
  for (size_t i = 0; !changed && i < next.size(); ++i) {
    changed = next[i].first != entries_[i].first ||
              next[i].second.resource.version() != entries_[i].second.resource.version() ||
              next[i].second.node_selector != entries_[i].second.node_selector ||
              next[i].second.file != entries_[i].second.file;
  }
  entries_ = std::move(next);
  return changed;
}

bool Selects(const std::map<std::string, std::string>& selector,
             const google::protobuf::Map<std::string, std::string>& metadata) {
  for (const auto& [k, v] : selector) {
    auto it = metadata.find(k);
    if (it == metadata.end() || it->second != v) return false;
  }
  return true;
}

Key KeyOf(const v1::Resource& r) { return {discovery::TypeOf(r), r.name()}; }

std::vector<v1::Resource> ToResources(const v1::ResourceSet& set) {
  std::vector<v1::Resource> out;
  auto add = [&](const std::string& name, const std::function<void(v1::Resource*)>& fill) {
    v1::Resource r;
    r.set_name(name);
    fill(&r);
    r.set_version(VersionOf(r));
    out.push_back(std::move(r));
  };
  for (const auto& l : set.listeners()) {
    add(l.name(), [&](v1::Resource* r) { *r->mutable_listener() = l; });
  }
  for (const auto& rc : set.route_configurations()) {
    add(rc.name(), [&](v1::Resource* r) { *r->mutable_route_configuration() = rc; });
  }
  for (const auto& c : set.clusters()) {
    add(c.name(), [&](v1::Resource* r) { *r->mutable_cluster() = c; });
  }
  for (const auto& e : set.endpoints()) {
    add(e.cluster(), [&](v1::Resource* r) { *r->mutable_endpoints() = e; });
  }
  for (const auto& secret : set.secrets()) {
    add(secret.name(), [&](v1::Resource* r) { *r->mutable_secret() = secret; });
  }
  return out;
}

}  // namespace portway::controlplane
