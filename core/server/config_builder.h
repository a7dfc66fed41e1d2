// Turns a Bootstrap proto into a runnable Snapshot, validating everything
// and reporting every problem with its field path. Nothing is half-built:
// either the whole snapshot is valid or the caller keeps the old one.
//
// Thread safety: main thread only.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "core/config/yaml_proto.h"
#include "core/server/snapshot.h"
#include "core/server/stats.h"
#include "core/tls/ticket_keys.h"

namespace portway::config::v1 {
class Bootstrap;
}

namespace portway::server {

class ConfigBuilder {
 public:
  // `open_files` false: check only, touch nothing (portway --validate).
  explicit ConfigBuilder(stats::Store& store, bool open_files = true)
      : store_(store), open_files_(open_files) {}

  // `previous` (may be null) lends DNS results and listener state to the
  // new snapshot. Returns null and fills `errors` on any error.
  SnapshotPtr Build(const config::v1::Bootstrap& bootstrap, const SnapshotPtr& previous,
                    config::ConfigErrors* errors);

 private:
  stats::Store& store_;
  const bool open_files_;
  // Per-name state and stats that live across reloads.
  std::map<std::string, std::shared_ptr<ListenerState>> listener_states_;
  std::map<std::string, std::unique_ptr<stats::ListenerStats>> listener_stats_;
  std::map<std::string, std::unique_ptr<stats::ClusterStats>> cluster_stats_;
  std::map<std::pair<std::string, std::string>, std::unique_ptr<stats::RouteStats>> route_stats_;
  // Session ticket keys by listener name: a reload keeps them.
  std::map<std::string, std::shared_ptr<tls::TicketKeys>> ticket_keys_;
  uint64_t next_version_ = 1;
};

// Loads a YAML/JSON bootstrap file into `bootstrap`; false with errors.
bool LoadBootstrapFile(const std::string& path, config::v1::Bootstrap* bootstrap,
                       config::ConfigErrors* errors);

// Loads the filter modules `bootstrap` names into the global filter
// registry (see core/http/module_loader.h), before Build() looks filters up.
// Relative paths resolve against `module_dir`, itself relative to the
// directory of `config_path`, the config file. Modules already loaded are
// skipped. False, with an error at modules[i].path per module that could
// not be loaded; the modules that did load stay loaded.
bool LoadModules(const config::v1::Bootstrap& bootstrap, const std::string& config_path,
                 config::ConfigErrors* errors);

}  // namespace portway::server
