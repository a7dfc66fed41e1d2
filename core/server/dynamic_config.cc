#include "core/server/server.h"

#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <filesystem>
#include <optional>
#include <set>

#include "core/common/files.h"
#include "core/common/strings.h"
#include "core/http/filter_registry.h"
#include "core/http/module_loader.h"
#include "core/server/admin.h"
#include "core/server/worker.h"
#include "portway/abi.h"
#include "portway/config/v1/bootstrap.pb.h"
#include "spdlog/spdlog.h"

namespace portway::server {

bool Server::HoldsPort(const network::Address& address) const {
  for (const auto& [name, bl] : listeners_) {
    if (bl.bound == address) return true;
  }
  return false;
}

bool Server::BindListeners(const SnapshotPtr& snapshot, std::map<std::string, BoundListener>* bound,
                           config::ConfigErrors* errors) {
  for (const auto& [name, config] : snapshot->listeners) {
    if (bound->count(name) > 0) continue;
    BoundListener bl;
    bl.config = config;
    network::Address address = config->address;
    for (int i = 0; i < options_.workers; ++i) {
      std::string error;
      // The first socket learns the port when the config says :0, and
      // fails when anyone holds the port; the others join it.
      int fd = event::CreateListenSocket(
          address, 4096, &error,
          i == 0 ? event::PortSharing::kNewGroup : event::PortSharing::kJoinGroup);
      if (fd == -EADDRINUSE && i == 0 && HoldsPort(address)) {
        // A listener of this gateway that is on its way out (renamed, or
        // replaced by a push) holds it: take over its port.
        fd = event::CreateListenSocket(address, 4096, &error, event::PortSharing::kJoinGroup);
      }
      if (fd < 0) {
        errors->push_back({Cat("listeners[\"", name, "\"].address"), error});
        for (int open_fd : bl.fds) close(open_fd);
        return false;
      }
      if (i == 0) address = event::SocketLocalAddress(fd);
      bl.fds.push_back(fd);
    }
    bl.bound = address;
    (*bound)[name] = std::move(bl);
  }
  return true;
}

void Server::Publish(SnapshotPtr snapshot) {
  snapshot_ = std::move(snapshot);
  StartHostHealth();
  for (auto& w : workers_) {
    Worker* worker = w.get();
    worker->Post([worker, s = snapshot_] { worker->ApplySnapshot(s); });
  }
}

void Server::StartHostHealth() {
  // New host sets start counting their hosts' health; an unchanged cluster
  // (the same ClusterSnapshot) is not walked again.
  for (const auto& [name, cluster] : snapshot_->clusters) {
    if (!cluster->adopted) {
      health_.Adopt(*cluster);
      cluster->adopted = true;
    }
  }
  health_checks_->Update(snapshot_->clusters);
  outlier_->Update(snapshot_->clusters);
  // Hosts may have left the config: the next health report says so.
  if (health_reporter_) health_reporter_->ConfigChanged();
}

void Server::Reload() {
  if (draining_) return;
  spdlog::info("SIGHUP: reloading {}", options_.config_path);
  config::ConfigErrors errors;
  config::v1::Bootstrap bootstrap;
  bool ok = LoadBootstrapFile(options_.config_path, &bootstrap, &errors);
  if (ok && resources_ != nullptr) {
    // With a control plane the file is the static part; the dynamic
    // resources stay and are folded in again.
    config::v1::Bootstrap previous = resources_->Static();
    resources_->SetStatic(bootstrap);
    bootstrap = resources_->Serving();
    ok = Apply(bootstrap, &errors, nullptr);
    if (!ok) resources_->SetStatic(previous);
  } else if (ok) {
    ok = Apply(bootstrap, &errors, nullptr);
  }
  if (!ok) {
    spdlog::error("reload rejected; the running config (version {}) keeps serving:",
                  snapshot_->version);
    for (const auto& e : errors) spdlog::error("  {}", e.ToString());
    sighup_failure_.Inc();
    return;
  }
  sighup_success_.Inc();
  spdlog::info("reload applied: config version {}", snapshot_->version);
}

bool Server::Apply(const config::v1::Bootstrap& bootstrap, config::ConfigErrors* errors,
                   std::function<void()> on_live) {
  // Only paths not loaded yet are loaded; a module that fails rejects the
  // config like any other error.
  bool modules_loaded = LoadModules(bootstrap, options_.config_path, errors);
  SnapshotPtr next = builder_.Build(bootstrap, snapshot_, errors);
  if (!modules_loaded) next = nullptr;
  // The next listener set: those that stay (same name and address keep
  // their sockets), plus new ones bound now; the rest are removed.
  std::map<std::string, BoundListener> next_listeners;
  std::vector<std::string> removed;
  if (next) {
    for (const auto& [name, bl] : listeners_) {
      auto it = next->listeners.find(name);
      if (it != next->listeners.end() && it->second->address_text == bl.config->address_text) {
        next_listeners[name] = bl;
      } else {
        removed.push_back(name);
      }
    }
    if (!BindListeners(next, &next_listeners, errors)) next = nullptr;
  }
  if (!next) {
    // Sockets bound for listeners this config would have added are closed.
    for (auto& [name, bl] : next_listeners) {
      for (int fd : bl.fds) close(fd);
      bl.fds.clear();
    }
    return false;
  }
  if (!(next->admin_address == snapshot_->admin_address)) {
    spdlog::warn("admin.address changed to {}; the admin server stays on {} until a restart",
                 next->admin_address.ToString(), admin_->bound().ToString());
  }
  Publish(next);
  for (const std::string& name : removed) {
    for (auto& w : workers_) {
      Worker* worker = w.get();
      worker->Post([worker, name] { worker->RemoveListener(name); });
    }
  }
  for (auto& [name, bl] : next_listeners) {
    if (bl.fds.empty()) continue;  // kept: its workers already serve it
    for (size_t i = 0; i < workers_.size(); ++i) {
      Worker* worker = workers_[i].get();
      int fd = bl.fds[i];
      worker->Post([worker, name = name, fd] { worker->AddListener(name, fd); });
    }
    bl.fds.clear();
    spdlog::info("listener '{}' on {}", name, bl.bound.ToString());
  }
  for (auto& [name, bl] : next_listeners) bl.config = next->listeners.at(name);
  listeners_ = std::move(next_listeners);
  ScheduleDns();
  if (on_live) WhenWorkersCaughtUp(std::move(on_live));
  return true;
}

void Server::WhenWorkersCaughtUp(std::function<void()> done) {
  // Each worker runs its tasks in order: once every worker has run this
  // one, everything posted before it (the snapshot, listener changes) is
  // in force everywhere.
  auto left = std::make_shared<size_t>(workers_.size());
  auto callback = std::make_shared<std::function<void()>>(std::move(done));
  if (*left == 0) {
    (*callback)();
    return;
  }
  for (auto& w : workers_) {
    w->Post([this, left, callback] {
      dispatcher_->Post([left, callback] {
        if (--*left == 0) (*callback)();
      });
    });
  }
}

void Server::StartControlPlane(const config::v1::Bootstrap& bootstrap) {
  const auto& cp = bootstrap.control_plane();
  validator_ = std::make_unique<ConfigBuilder>(validation_store_, /*open_files=*/false);
  resources_ = std::make_unique<discovery::ResourceStore>(
      bootstrap, [this](const config::v1::Bootstrap& b, config::ConfigErrors* e) {
        return validator_->Build(b, nullptr, e) != nullptr;
      });
  discovery::ClientOptions options;
  options.address = cp.address();
  options.node.set_id(cp.node_id());
  for (const auto& [k, v] : cp.metadata()) (*options.node.mutable_metadata())[k] = v;
  options.node.set_build(Cat("portway ", PORTWAY_VERSION_STRING));
  auto millis = [](const google::protobuf::Duration& d) {
    return std::chrono::milliseconds(d.seconds() * 1000 + d.nanos() / 1000000);
  };
  if (cp.has_initial_backoff()) options.initial_backoff = millis(cp.initial_backoff());
  if (cp.has_max_backoff()) options.max_backoff = millis(cp.max_backoff());
  initial_fetch_timeout_ = cp.has_initial_fetch_timeout() ? millis(cp.initial_fetch_timeout())
                                                          : std::chrono::milliseconds(15000);
  control_plane_started_ = std::chrono::steady_clock::now();
  if (cp.has_tls()) {
    // The builder checked the files are readable.
    ReadFile(cp.tls().ca_file(), &options.ca_pem);
    if (!cp.tls().cert_file().empty()) {
      ReadFile(cp.tls().cert_file(), &options.cert_pem);
      ReadFile(cp.tls().key_file(), &options.key_pem);
    }
    options.server_name = cp.tls().server_name();
  }
  persist_path_ = cp.persist_path();
  if (!persist_path_.empty()) LoadPersisted();
  client_ = std::make_unique<discovery::Client>(options, [this](discovery::v1::Push push) {
    // From the client's thread to the main loop, which owns the config.
    auto shared = std::make_shared<discovery::v1::Push>(std::move(push));
    dispatcher_->Post([this, shared] { OnPush(*shared); });
  });
  // Host health goes to the control plane: a report when a host's flags
  // change or the config does (at most one a second; each walks every host
  // of the serving snapshot once), and again after each reconnect's Hello.
  health_reporter_ = std::make_unique<discovery::HealthReporter>(
      *dispatcher_,
      [this](const std::function<void(const upstream::Host&)>& visit) {
        for (const auto& [name, cluster] : snapshot_->clusters) {
          for (const auto& host : cluster->hosts) visit(*host);
        }
      },
      [this](discovery::v1::HealthReport report) { client_->SetHealthReport(std::move(report)); });
  health_.AddListener([this](const upstream::HostSharedPtr&, uint32_t) {
    if (health_reporter_) health_reporter_->HostChanged();
  });
  client_->Start();
  spdlog::info("control plane {}: node '{}'", cp.address(), cp.node_id());
}

void Server::LoadModulesFor(const discovery::v1::Push& push) {
  // A filter this gateway does not know yet is looked for as a module named
  // after it in module_dir ("<module_dir>/<filter name>.so"), loaded before
  // the push is judged, if control_plane.allowed_modules lists it (and its
  // sha256 pin, if any, matches). Otherwise the listener naming it is
  // rejected (unknown filter, with the reason) and nothing else; a module
  // not listed is never opened.
  namespace fs = std::filesystem;
  http::FilterRegistryImpl& registry = http::GlobalFilterRegistry();
  std::set<std::string> missing;
  for (const auto& r : push.resources()) {
    if (!r.has_listener()) continue;
    for (const auto& f : r.listener().filters()) {
      if (registry.Find(f.name()) == nullptr) missing.insert(f.name());
    }
  }
  const config::v1::Bootstrap& bootstrap = resources_->Static();
  const std::string& module_dir = bootstrap.module_dir();
  fs::path dir = fs::path(options_.config_path).parent_path() / fs::path(module_dir);
  for (const std::string& name : missing) {
    if (name.empty() || name.find('/') != std::string::npos || name[0] == '.') continue;
    const config::v1::AllowedModule* allowed = nullptr;
    for (const auto& m : bootstrap.control_plane().allowed_modules()) {
      if (m.name() == name) allowed = &m;
    }
    auto refuse = [&](std::string why) {
      spdlog::error("control plane: filter '{}': {}", name, why);
      registry.SetUnavailable(name, std::move(why));
    };
    if (allowed == nullptr) {
      refuse(Cat("not built in, and control_plane.allowed_modules does not list it (", name,
                 ".so is not loaded on demand)"));
      continue;
    }
    fs::path file = dir / (name + ".so");
    std::error_code ec;
    if (!fs::exists(file, ec)) {
      refuse(Cat("allowed, but there is no module ", file.string()));
      continue;
    }
    if (!allowed->sha256().empty()) {
      absl::StatusOr<std::string> sum = http::FileSha256(file.string());
      if (!sum.ok()) {
        refuse(std::string(sum.status().message()));
        continue;
      }
      std::string want = allowed->sha256();
      for (char& c : want) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (*sum != want) {
        refuse(Cat("module ", file.string(), " has sha256 ", *sum,
                   ", not the one control_plane.allowed_modules pins (", want, "); not loaded"));
        continue;
      }
    }
    config::v1::Bootstrap modules;
    modules.set_module_dir(module_dir);
    modules.add_modules()->set_path(name + ".so");
    config::ConfigErrors errors;
    if (LoadModules(modules, options_.config_path, &errors)) {
      spdlog::info("control plane: loaded module {}.so for filter '{}'", name, name);
      if (registry.Find(name) == nullptr) {
        refuse(Cat("module ", file.string(), " loaded but registers no filter of that name"));
      }
    } else {
      std::string why;
      for (const auto& e : errors) why += (why.empty() ? "" : "; ") + e.message;
      refuse(Cat("module ", name, ".so: ", why));
    }
  }
}

void Server::LoadPersisted() {
  std::string bytes;
  if (!ReadFile(persist_path_, &bytes)) {
    spdlog::info("control plane: no persisted config at {} (yet)", persist_path_);
    return;
  }
  discovery::v1::Push push;
  if (!push.ParseFromString(bytes)) {
    spdlog::warn("control plane: {} is not a persisted config; ignored", persist_path_);
    return;
  }
  // Judged like any push: what is still valid serves until the control
  // plane says otherwise.
  discovery::ResourceStore::Outcome outcome = resources_->OnPush(push);
  for (const auto& v : outcome.verdicts.verdicts()) {
    if (!v.accepted()) {
      spdlog::warn("control plane: persisted {} '{}' no longer valid",
                   discovery::TypeName(v.type()), v.name());
    }
  }
  config::ConfigErrors errors;
  if (outcome.changed && !Apply(resources_->Serving(), &errors, nullptr)) {
    for (const auto& e : errors) spdlog::error("control plane: persisted config: {}", e.ToString());
    return;
  }
  persisted_loaded_ = true;
  spdlog::info("control plane: serving {} persisted resource(s) from {}", push.resources_size(),
               persist_path_);
}

void Server::Persist() {
  if (persist_path_.empty()) return;
  // A crash mid-write leaves the old file.
  // Pushed secrets carry private keys: the file is the gateway user's only.
  if (!WriteFileAtomically(persist_path_, resources_->ServingAsPush().SerializeAsString(),
                           /*owner_only=*/true)) {
    spdlog::error("control plane: cannot write {}", persist_path_);
  }
}

void Server::OnPush(const discovery::v1::Push& push) {
  if (draining_ || resources_ == nullptr) return;
  auto started = std::chrono::steady_clock::now();
  LoadModulesFor(push);
  // A listener can pass every check and still not run (its address is
  // taken): kept to undo the push and judge it again without it.
  bool has_listeners = false;
  for (const auto& r : push.resources()) has_listeners = has_listeners || r.has_listener();
  std::optional<discovery::ResourceStore> before;
  if (has_listeners) before.emplace(*resources_);
  discovery::ResourceStore::Outcome outcome = resources_->OnPush(push);

  std::string nonce = push.nonce();
  size_t count = static_cast<size_t>(push.resources_size() + push.removed_size());
  auto applied = [this, nonce, started, count] {
    if (!first_push_applied_) {
      first_push_applied_ = true;
      spdlog::info("control plane push {}: the first push is live; ready", nonce);
    }
    discovery::v1::GatewayMessage m;
    m.mutable_applied()->set_nonce(nonce);
    if (client_) client_->Send(std::move(m));
    spdlog::info(
        "control plane push {}: {} change(s) live on every worker in {:.1f}ms", nonce, count,
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started)
            .count());
  };
  bool live = !outcome.changed;
  if (outcome.changed) {
    config::ConfigErrors errors;
    live = Apply(resources_->Serving(), &errors, applied);
    if (!live && before) {
      // Which pushed listeners failed (errors at listeners["NAME"]...)?
      std::map<std::string, std::vector<discovery::v1::FieldError>> failed;
      for (const auto& e : errors) {
        for (const auto& r : push.resources()) {
          std::string prefix = Cat("listeners[\"", r.name(), "\"]");
          if (!r.has_listener() || !StartsWith(e.path, prefix)) continue;
          discovery::v1::FieldError fe;
          std::string rest = e.path.substr(prefix.size());
          fe.set_path(!rest.empty() && rest[0] == '.' ? rest.substr(1) : rest);
          fe.set_message(e.message);
          failed[r.name()].push_back(fe);
        }
      }
      if (!failed.empty()) {
        // Judge the push again without them; they are rejected with what
        // failed.
        *resources_ = std::move(*before);
        discovery::v1::Push retry = push;
        retry.clear_resources();
        for (const auto& r : push.resources()) {
          if (!(r.has_listener() && failed.count(r.name()))) *retry.add_resources() = r;
        }
        outcome = resources_->OnPush(retry);
        for (const auto& r : push.resources()) {
          if (!(r.has_listener() && failed.count(r.name()))) continue;
          discovery::v1::Verdict* v = outcome.verdicts.add_verdicts();
          v->set_type(discovery::v1::LISTENER);
          v->set_name(r.name());
          v->set_version(r.version());
          v->set_accepted(false);
          for (const auto& fe : failed[r.name()]) *v->add_errors() = fe;
          resources_->RecordRejection(r, failed[r.name()]);
        }
        errors.clear();
        live = !outcome.changed || Apply(resources_->Serving(), &errors, applied);
      }
    }
    if (!live) {
      // Still not runnable: nothing of this push is taken.
      if (before) *resources_ = std::move(*before);
      last_apply_error_.clear();
      for (const auto& e : errors) last_apply_error_ += e.ToString() + "; ";
      spdlog::error("control plane push {}: could not be applied: {}", nonce, last_apply_error_);
      for (auto& v : *outcome.verdicts.mutable_verdicts()) {
        if (!v.accepted()) continue;
        v.set_accepted(false);
        v.clear_pending();
        discovery::v1::FieldError* fe = v.add_errors();
        fe->set_message(Cat("the push could not be applied: ", last_apply_error_));
      }
    }
  }
  size_t rejected = 0;
  for (const auto& v : outcome.verdicts.verdicts()) rejected += v.accepted() ? 0 : 1;
  // A push counts as a failure when any of it was rejected or it could not
  // be applied (the valid part of a partly rejected push still serves).
  (live && rejected == 0 ? push_success_ : push_failure_).Inc();
  discovery::v1::GatewayMessage verdicts;
  *verdicts.mutable_verdicts() = outcome.verdicts;
  client_->Send(std::move(verdicts));
  if (live) {
    last_apply_error_.clear();
    if (outcome.changed) {
      spdlog::info("control plane push {}: {} resource(s), {} rejected; config version {}", nonce,
                   outcome.verdicts.verdicts_size(), rejected, snapshot_->version);
      Persist();
    } else {
      WhenWorkersCaughtUp(applied);
    }
  }
  client_->SetHave(resources_->Have());
}

}  // namespace portway::server
