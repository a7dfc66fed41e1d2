// portway-cp: the reference control plane. Serves the resources described
// by the YAML files of a directory, plus those applied through its admin
// API (portwayctl; kept in a state file across restarts), over the
// discovery API (docs/control-plane.md) to every gateway that connects, and
// pushes each change within a poll interval (default 500ms).
//
//   portway-cp --listen 127.0.0.1:18000 --config-dir ./resources
//
// Per gateway stream: after the gateway's Hello, a delta push brings it
// from what it has (Hello.have) to the current set (sent even when empty,
// so the gateway knows it is in sync); every later change is sent as a
// delta (changed resources, removals named). Verdicts and Applied are
// logged and kept per gateway for `portwayctl status`; the latest health
// report of each connected gateway for `portwayctl health`.
#include <arpa/inet.h>
#include <netinet/in.h>

#include <atomic>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "controlplane/resource_dir.h"
#include "core/common/files.h"
#include "core/discovery/resource_store.h"
#include "core/http/filter_registry.h"
#include "core/server/config_builder.h"
#include "filters/builtin.h"
#include "google/protobuf/struct.pb.h"
#include "grpcpp/grpcpp.h"
#include "portway/abi.h"
#include "portway/service/admin/v1/admin.grpc.pb.h"
#include "portway/service/discovery/v1/discovery.grpc.pb.h"
#include "spdlog/spdlog.h"

namespace portway::controlplane {
namespace {

namespace av1 = portway::service::admin::v1;

// Everything the streams and the admin API share, under one lock.
class State {
 public:
  explicit State(std::string state_file) : state_file_(std::move(state_file)) {}

  struct Gateway {
    v1::Node node;
    std::string peer;
    bool connected = true;
    std::string last_push;
    std::string last_applied;
    uint64_t applied_generation = 0;
    std::map<std::string, uint64_t> nonce_generation;
    std::map<Key, v1::Verdict> verdicts;
    // Its latest host health report (connected gateways only: dropped
    // when the stream ends). Bounded by the gateway's cap (10,000 hosts)
    // and gRPC's 4 MiB message limit.
    v1::HealthReport health;
  };

  std::mutex mutex;
  std::condition_variable cv;
  std::vector<std::pair<Key, ResourceDir::Entry>> dir;
  std::map<Key, std::string> dir_sources;  // the first file defining each name
  std::map<Key, v1::Resource> admin;
  uint64_t generation = 0;
  std::map<uint64_t, Gateway> gateways;
  uint64_t next_gateway = 1;

  // Under the lock; null once a reconnect of the same node replaced it.
  Gateway* Find(uint64_t id) {
    auto it = gateways.find(id);
    return it == gateways.end() ? nullptr : &it->second;
  }

  // Under the lock: what a gateway with `node` gets (null: every name's
  // first definition, whoever it is for): the admin resources, and from the
  // directory each name's first file that selects the gateway (files win
  // a name both define).
  std::map<Key, v1::Resource> ServedFor(const v1::Node* node) const {
    std::map<Key, v1::Resource> out = admin;
    std::map<Key, bool> taken;
    for (const auto& [key, e] : dir) {
      if (taken[key]) continue;
      if (node != nullptr && !Selects(e.node_selector, node->metadata())) continue;
      taken[key] = true;
      out[key] = e.resource;
    }
    return out;
  }
  // Under the lock, after a change: wakes the streams.
  void Recompute() {
    dir_sources.clear();
    for (const auto& [key, e] : dir) dir_sources.emplace(key, e.file);
    ++generation;
    cv.notify_all();
  }
  void LoadAdmin() {
    std::string bytes;
    if (!ReadFile(state_file_, &bytes)) return;
    v1::Push saved;
    if (!saved.ParseFromString(bytes)) {
      spdlog::error("{}: not a portway-cp state file; ignored", state_file_);
      return;
    }
    for (const auto& r : saved.resources()) admin[KeyOf(r)] = r;
    spdlog::info("{}: {} applied resource(s)", state_file_, admin.size());
  }
  bool SaveAdmin() {
    v1::Push saved;
    for (const auto& [key, r] : admin) *saved.add_resources() = r;
    return WriteFileAtomically(state_file_, saved.SerializeAsString(), /*owner_only=*/true);
  }

 private:
  std::string state_file_;
};

// Stands in for a filter portway-cp does not know (a module only the
// gateways load): any config passes here, and each gateway's verdict says
// whether the filter exists there and its config is right.
class PassThroughFactory final : public http::FilterFactory {
 public:
  explicit PassThroughFactory(std::string name) : name_(std::move(name)) {}
  std::string_view Name() const override { return name_; }
  std::unique_ptr<google::protobuf::Message> NewConfig() const override {
    return std::make_unique<google::protobuf::Struct>();
  }
  absl::StatusOr<http::FilterFactoryCallback> Create(
      const google::protobuf::Message&) const override {
    return http::FilterFactoryCallback([] { return http::FilterPtr(); });
  }

 private:
  std::string name_;
};

// Every filter name `message` uses (HttpFilter and FilterOverride names,
// at any depth).
void CollectFilterNames(const google::protobuf::Message& message, std::set<std::string>* out) {
  const google::protobuf::Descriptor* d = message.GetDescriptor();
  if (d->full_name() == "portway.config.v1.HttpFilter" ||
      d->full_name() == "portway.config.v1.FilterOverride") {
    const google::protobuf::FieldDescriptor* name = d->FindFieldByName("name");
    out->insert(message.GetReflection()->GetString(message, name));
    return;
  }
  const google::protobuf::Reflection* r = message.GetReflection();
  std::vector<const google::protobuf::FieldDescriptor*> fields;
  r->ListFields(message, &fields);
  for (const auto* f : fields) {
    if (f->cpp_type() != google::protobuf::FieldDescriptor::CPPTYPE_MESSAGE) continue;
    if (f->message_type()->full_name() == "google.protobuf.Struct") continue;
    if (f->is_repeated()) {
      for (int i = 0; i < r->FieldSize(message, f); ++i) {
        CollectFilterNames(r->GetRepeatedMessage(message, f, i), out);
      }
    } else {
      CollectFilterNames(r->GetMessage(message, f), out);
    }
  }
}

// Checks resources as a gateway would: built-in filters fully, filters
// portway-cp does not know passed on. Serialised: the filter registry is
// process-wide and not thread-safe.
class Checker {
 public:
  // Registers a pass-through factory for every unknown filter the
  // resources name, so the config builder accepts them.
  void PassUnknownFilters(const std::vector<v1::Resource>& resources) {
    std::set<std::string> names;
    for (const auto& r : resources) CollectFilterNames(r, &names);
    http::FilterRegistryImpl& registry = http::GlobalFilterRegistry();
    for (const std::string& name : names) {
      if (name.empty() || registry.Find(name) != nullptr) continue;
      (void)registry.Register(std::make_unique<PassThroughFactory>(name));
      spdlog::info("filter '{}' is not built into portway-cp: passed on; the gateways judge it",
                   name);
    }
  }
  std::mutex mutex;
};

using Rw = grpc::ServerReaderWriter<v1::ControlPlaneMessage, v1::GatewayMessage>;

class DiscoveryService final : public v1::Discovery::Service {
 public:
  explicit DiscoveryService(State& state) : state_(state) {}

  grpc::Status Stream(grpc::ServerContext* context, Rw* stream) override {
    v1::GatewayMessage first;
    if (!stream->Read(&first) || !first.has_hello()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "the first message must be Hello");
    }
    const v1::Node node = first.hello().node();
    uint64_t id;
    {
      std::lock_guard<std::mutex> lock(state_.mutex);
      id = state_.next_gateway++;
      // A gateway that reconnects replaces its old entry.
      for (auto it = state_.gateways.begin(); it != state_.gateways.end();) {
        it = it->second.node.id() == node.id() ? state_.gateways.erase(it) : std::next(it);
      }
      State::Gateway& g = state_.gateways[id];
      g.node = node;
      g.peer = context->peer();
    }
    spdlog::info("gateway '{}' connected from {}", node.id(), context->peer());
    // What the gateway has, as we believe: a push brings it to the set.
    std::map<Key, std::string> sent;
    for (const auto& h : first.hello().have()) sent[{h.type(), h.name()}] = h.version();

    std::atomic<bool> done{false};
    std::thread reader([&] {
      v1::GatewayMessage m;
      while (stream->Read(&m)) Report(id, node, m);
      done = true;
      state_.cv.notify_all();
    });
    uint64_t nonce = 0;
    uint64_t seen = 0;
    while (!done && !context->IsCancelled()) {
      std::map<Key, v1::Resource> current;
      uint64_t generation;
      {
        std::unique_lock<std::mutex> lock(state_.mutex);
        state_.cv.wait_for(lock, std::chrono::milliseconds(200),
                           [&] { return state_.generation != seen || done; });
        if (state_.generation == seen) continue;
        generation = seen = state_.generation;
        current = state_.ServedFor(&node);
      }
      v1::ControlPlaneMessage message;
      v1::Push* push = message.mutable_push();
      for (const auto& [key, r] : current) {
        auto it = sent.find(key);
        if (it == sent.end() || it->second != r.version()) *push->add_resources() = r;
      }
      for (const auto& [key, version] : sent) {
        if (current.count(key) == 0) {
          v1::ResourceKey* k = push->add_removed();
          k->set_type(static_cast<v1::ResourceType>(key.first));
          k->set_name(key.second);
        }
      }
      bool empty = push->resources_size() == 0 && push->removed_size() == 0;
      {
        std::lock_guard<std::mutex> lock(state_.mutex);
        State::Gateway* g = state_.Find(id);
        if (g == nullptr) break;
        if (empty && nonce > 0) {
          // Nothing changes for this gateway: once its pushes so far are
          // applied, so is this generation.
          if (g->last_applied == g->last_push) g->applied_generation = generation;
          g->nonce_generation[g->last_push] = generation;
          state_.cv.notify_all();
          continue;
        }
        push->set_nonce(std::to_string(++nonce));
        push->set_version(std::to_string(generation));
        g->last_push = push->nonce();
        g->nonce_generation[push->nonce()] = generation;
      }
      // The first push goes out even when empty: it tells the gateway it
      // is in sync.
      if (!stream->Write(message)) break;
      spdlog::info("gateway '{}': push {}: {} resource(s), {} removal(s)", node.id(), push->nonce(),
                   push->resources_size(), push->removed_size());
      sent.clear();
      for (const auto& [key, r] : current) sent[key] = r.version();
    }
    context->TryCancel();
    reader.join();
    {
      std::lock_guard<std::mutex> lock(state_.mutex);
      auto it = state_.gateways.find(id);
      if (it != state_.gateways.end()) {
        it->second.connected = false;
        it->second.health.Clear();
      }
      state_.cv.notify_all();
    }
    spdlog::info("gateway '{}' disconnected", node.id());
    return grpc::Status::OK;
  }

 private:
  void Report(uint64_t id, const v1::Node& node, const v1::GatewayMessage& m) {
    if (m.has_verdicts()) {
      int accepted = 0;
      for (const auto& v : m.verdicts().verdicts()) {
        if (v.accepted()) {
          ++accepted;
          if (!v.pending().empty()) {
            spdlog::info("gateway '{}': {} '{}' accepted, pending: {}", node.id(),
                         v1::ResourceType_Name(v.type()), v.name(), v.pending());
          }
          continue;
        }
        for (const auto& e : v.errors()) {
          spdlog::warn("gateway '{}': {} '{}' version {} rejected: {}: {}", node.id(),
                       v1::ResourceType_Name(v.type()), v.name(), v.version(), e.path(),
                       e.message());
        }
      }
      spdlog::info("gateway '{}': push {}: {} of {} accepted", node.id(), m.verdicts().nonce(),
                   accepted, m.verdicts().verdicts_size());
      std::lock_guard<std::mutex> lock(state_.mutex);
      if (State::Gateway* g = state_.Find(id)) {
        for (const auto& v : m.verdicts().verdicts()) g->verdicts[{v.type(), v.name()}] = v;
      }
    } else if (m.has_applied()) {
      spdlog::info("gateway '{}': push {} applied", node.id(), m.applied().nonce());
      std::lock_guard<std::mutex> lock(state_.mutex);
      if (State::Gateway* g = state_.Find(id)) {
        g->last_applied = m.applied().nonce();
        auto it = g->nonce_generation.find(m.applied().nonce());
        if (it != g->nonce_generation.end()) {
          g->applied_generation = std::max(g->applied_generation, it->second);
        }
      }
      state_.cv.notify_all();
    } else if (m.has_health()) {
      spdlog::debug("gateway '{}': health report, {} host(s) not usable", node.id(),
                    m.health().unhealthy_size());
      std::lock_guard<std::mutex> lock(state_.mutex);
      if (State::Gateway* g = state_.Find(id)) g->health = m.health();
    }
  }

  State& state_;
};

class AdminService final : public av1::ControlPlaneAdmin::Service {
 public:
  explicit AdminService(State& state) : state_(state) {}

  grpc::Status Apply(grpc::ServerContext*, const av1::ApplyRequest* request,
                     av1::ApplyResponse* response) override {
    std::vector<v1::Resource> resources = ToResources(request->resources());
    v1::Push served;
    std::map<Key, std::string> from_dir;
    {
      std::lock_guard<std::mutex> lock(state_.mutex);
      for (const auto& [key, r] : state_.ServedFor(nullptr)) *served.add_resources() = r;
      from_dir = state_.dir_sources;
    }
    discovery::ResourceStore::Outcome outcome = Check(served, resources);
    bool all_ok = true;
    for (int i = 0; i < outcome.verdicts.verdicts_size(); ++i) {
      v1::Verdict v = outcome.verdicts.verdicts(i);
      if (i < static_cast<int>(resources.size())) {
        auto dir = from_dir.find(KeyOf(resources[i]));
        if (dir != from_dir.end()) {
          v.set_accepted(false);
          v1::FieldError* e = v.add_errors();
          e->set_path("name");
          e->set_message("defined by " + dir->second + "; change it there");
        }
      }
      all_ok = all_ok && v.accepted();
      *response->add_verdicts() = v;
    }
    if (!all_ok) return grpc::Status::OK;
    uint64_t target;
    {
      std::lock_guard<std::mutex> lock(state_.mutex);
      for (const auto& r : resources) state_.admin[KeyOf(r)] = r;
      if (!state_.SaveAdmin()) {
        return grpc::Status(grpc::StatusCode::INTERNAL, "cannot write the state file");
      }
      state_.Recompute();
      target = state_.generation;
    }
    response->set_stored(true);
    spdlog::info("admin: applied {} resource(s)", resources.size());
    if (request->wait_applied_ms() > 0)
      Wait(target, request->wait_applied_ms(), resources, response);
    return grpc::Status::OK;
  }

  grpc::Status Get(grpc::ServerContext*, const av1::GetRequest* request,
                   av1::GetResponse* response) override {
    std::lock_guard<std::mutex> lock(state_.mutex);
    auto wanted = [&](const Key& key) {
      return (request->type() == v1::RESOURCE_TYPE_UNSPECIFIED || key.first == request->type()) &&
             (request->name().empty() || key.second == request->name());
    };
    for (const auto& [key, r] : state_.admin) {
      if (!wanted(key) || state_.dir_sources.count(key)) continue;
      *response->add_resources() = r;
      response->add_sources("admin");
    }
    // Every definition a file makes, with the gateways it is for.
    for (const auto& [key, e] : state_.dir) {
      if (!wanted(key)) continue;
      *response->add_resources() = e.resource;
      std::string source = e.file;
      for (const auto& [k, v] : e.node_selector) source += " " + k + "=" + v;
      response->add_sources(source);
    }
    // Private keys stay here: an operator reading resources (and a file
    // made from them) gets "[redacted]"; applying that back is rejected.
    for (auto& r : *response->mutable_resources()) {
      if (r.has_secret() && !r.secret().private_key().empty()) {
        r.mutable_secret()->set_private_key("[redacted]");
      }
    }
    return grpc::Status::OK;
  }

  grpc::Status Delete(grpc::ServerContext*, const av1::DeleteRequest* request,
                      av1::DeleteResponse* response) override {
    Key key{request->type(), request->name()};
    std::lock_guard<std::mutex> lock(state_.mutex);
    if (auto src = state_.dir_sources.find(key); src != state_.dir_sources.end()) {
      response->set_error("defined by " + src->second + "; remove it there");
      return grpc::Status::OK;
    }
    if (state_.admin.erase(key) == 0) {
      response->set_error("no such resource");
      return grpc::Status::OK;
    }
    if (!state_.SaveAdmin()) {
      return grpc::Status(grpc::StatusCode::INTERNAL, "cannot write the state file");
    }
    state_.Recompute();
    response->set_deleted(true);
    return grpc::Status::OK;
  }

  grpc::Status Status(grpc::ServerContext*, const av1::StatusRequest*,
                      av1::StatusResponse* response) override {
    std::lock_guard<std::mutex> lock(state_.mutex);
    for (const auto& [id, g] : state_.gateways) {
      av1::GatewayStatus* s = response->add_gateways();
      *s->mutable_node() = g.node;
      s->set_connected(g.connected);
      s->set_peer(g.peer);
      s->set_last_push(g.last_push);
      s->set_last_applied(g.last_applied);
      for (const auto& [key, v] : g.verdicts) *s->add_verdicts() = v;
    }
    return grpc::Status::OK;
  }

  // The connected gateways' latest reports, by host: O(reported hosts)
  // under the lock.
  grpc::Status Health(grpc::ServerContext*, const av1::HealthRequest* request,
                      av1::HealthResponse* response) override {
    std::lock_guard<std::mutex> lock(state_.mutex);
    std::map<std::pair<std::string, std::string>, av1::HostFleetHealth> hosts;
    std::set<std::string> gateways;
    for (const auto& [id, g] : state_.gateways) {
      if (!g.connected) continue;
      gateways.insert(g.node.id());
      if (g.health.omitted() > 0) (*response->mutable_omitted())[g.node.id()] = g.health.omitted();
      for (const v1::HostHealth& h : g.health.unhealthy()) {
        if (!request->cluster().empty() && h.cluster() != request->cluster()) continue;
        av1::HostFleetHealth& host = hosts[{h.cluster(), h.address()}];
        // A host listed twice in one report (the same address twice in a
        // cluster) counts once for its gateway.
        if (host.gateways_size() > 0 &&
            host.gateways(host.gateways_size() - 1).node_id() == g.node.id()) {
          continue;
        }
        host.set_cluster(h.cluster());
        host.set_address(h.address());
        av1::GatewayHostView* view = host.add_gateways();
        view->set_node_id(g.node.id());
        *view->mutable_flags() = h.flags();
        view->set_reason(h.reason());
        view->set_since_unix_ms(h.since_unix_ms());
      }
    }
    for (auto& [key, host] : hosts) *response->add_hosts() = std::move(host);
    for (const std::string& id : gateways) response->add_gateways(id);
    return grpc::Status::OK;
  }

 private:
  // Waits until every connected gateway applied generation `target`.
  // Checks `resources` as a gateway checks them: each on its own, against
  // what is served, with field paths.
  discovery::ResourceStore::Outcome Check(const v1::Push& served,
                                          const std::vector<v1::Resource>& resources) {
    std::lock_guard<std::mutex> checking(checker_.mutex);
    checker_.PassUnknownFilters({served.resources().begin(), served.resources().end()});
    checker_.PassUnknownFilters(resources);
    stats::Store store;
    server::ConfigBuilder builder(store, /*open_files=*/false);
    discovery::ResourceStore checker({},
                                     [&](const config::v1::Bootstrap& b, config::ConfigErrors* e) {
                                       return builder.Build(b, nullptr, e) != nullptr;
                                     });
    checker.OnPush(served);
    v1::Push push;
    for (const auto& r : resources) *push.add_resources() = r;
    return checker.OnPush(push);
  }

  Checker checker_;

  void Wait(uint64_t target, uint32_t timeout_ms, const std::vector<v1::Resource>& resources,
            av1::ApplyResponse* response) {
    std::unique_lock<std::mutex> lock(state_.mutex);
    auto all_applied = [&] {
      for (const auto& [id, g] : state_.gateways) {
        if (g.connected && g.applied_generation < target) return false;
      }
      return true;
    };
    state_.cv.wait_for(lock, std::chrono::milliseconds(timeout_ms), all_applied);
    for (const auto& [id, g] : state_.gateways) {
      if (!g.connected) continue;
      av1::GatewayOutcome* o = response->add_gateways();
      o->set_node_id(g.node.id());
      bool applied = g.applied_generation >= target;
      for (const auto& r : resources) {
        auto v = g.verdicts.find(KeyOf(r));
        if (v == g.verdicts.end() || v->second.version() != r.version()) continue;
        if (!v->second.accepted()) {
          applied = false;
          for (const auto& e : v->second.errors()) {
            o->add_problems(r.name() + ": rejected: " + e.path() + ": " + e.message());
          }
        } else if (!v->second.pending().empty()) {
          applied = false;
          o->add_problems(r.name() + ": pending: " + v->second.pending());
        }
      }
      if (g.applied_generation < target && o->problems_size() == 0) {
        o->add_problems("not applied within " + std::to_string(timeout_ms) + "ms");
      }
      o->set_applied(applied);
    }
  }

  State& state_;
};

// Whether `address` (HOST:PORT, [V6]:PORT or unix:PATH) is reachable from
// this host only.
bool IsLocalOnly(const std::string& address) {
  if (address.rfind("unix:", 0) == 0) return true;
  size_t colon = address.rfind(':');
  if (colon == std::string::npos) return false;
  std::string host = address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (host == "localhost") return true;
  in_addr v4{};
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  return inet_pton(AF_INET6, host.c_str(), &v6) == 1 && IN6_IS_ADDR_LOOPBACK(&v6);
}

// --help prints to stdout (exit 0); a usage error to stderr (exit 2).
int Usage(std::ostream& out = std::cerr) {
  out << "usage: portway-cp --listen HOST:PORT --config-dir DIR [--state-file FILE]"
         " [--poll-ms N] [--port-file FILE]\n"
         "                  [--tls-cert FILE --tls-key FILE [--tls-client-ca FILE]]\n"
         "                  [--admin-listen HOST:PORT [--admin-client-ca FILE]] [--insecure]\n"
         "       portway-cp --help | --version\n"
         "Serves the resources of DIR (and those applied with portwayctl) to every\n"
         "gateway that connects; see docs/control-plane.md.\n";
  return &out == &std::cerr ? 2 : 0;
}

}  // namespace
}  // namespace portway::controlplane

int main(int argc, char** argv) {
  using namespace portway::controlplane;
  std::string listen;
  std::string dir;
  std::string port_file;
  std::string state_file;
  std::string tls_cert, tls_key, tls_client_ca;
  std::string admin_listen, admin_client_ca;
  bool insecure = false;
  int poll_ms = 500;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (arg == "--listen") {
      listen = value();
    } else if (arg == "--config-dir") {
      dir = value();
    } else if (arg == "--state-file") {
      state_file = value();
    } else if (arg == "--poll-ms") {
      poll_ms = std::atoi(value().c_str());
    } else if (arg == "--port-file") {
      port_file = value();
    } else if (arg == "--tls-cert") {
      tls_cert = value();
    } else if (arg == "--tls-key") {
      tls_key = value();
    } else if (arg == "--tls-client-ca") {
      tls_client_ca = value();
    } else if (arg == "--admin-listen") {
      admin_listen = value();
    } else if (arg == "--admin-client-ca") {
      admin_client_ca = value();
    } else if (arg == "--insecure") {
      insecure = true;
    } else if (arg == "-h" || arg == "--help") {
      return Usage(std::cout);
    } else if (arg == "--version") {
      std::cout << "portway-cp " << PORTWAY_VERSION_STRING << "\n";
      return 0;
    } else {
      return Usage();
    }
  }
  if (listen.empty() || dir.empty() || poll_ms <= 0) return Usage();
  if (tls_cert.empty() != tls_key.empty()) return Usage();
  if (state_file.empty()) state_file = dir + "/.portway-cp.state";
  // Whoever reaches a plaintext port can read every resource and, through
  // the admin API, reconfigure the fleet: off this host it takes TLS, or
  // saying so.
  for (const auto& [flag, address] : {std::pair<std::string, std::string>{"--listen", listen},
                                      {"--admin-listen", admin_listen}}) {
    if (address.empty() || !tls_cert.empty() || insecure || IsLocalOnly(address)) continue;
    std::cerr << "portway-cp: " << flag << " " << address
              << " is not a loopback address and has no TLS: anyone who reaches it could"
                 " reconfigure every gateway. Give --tls-cert and --tls-key (and"
                 " --tls-client-ca, --admin-client-ca), or --insecure to serve plaintext"
                 " anyway\n";
    return 2;
  }
  if (!admin_client_ca.empty() && (admin_listen.empty() || tls_cert.empty())) {
    std::cerr << "portway-cp: --admin-client-ca needs --admin-listen (the admin API's own"
                 " port) and --tls-cert/--tls-key\n";
    return 2;
  }

  // Signals go to the main thread, which waits for them below.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  portway::filters::RegisterBuiltinFilters();
  State state(state_file);
  ResourceDir resources(dir);
  resources.Refresh();
  {
    std::lock_guard<std::mutex> lock(state.mutex);
    state.LoadAdmin();
    state.dir = resources.Entries();
    state.Recompute();
  }

  DiscoveryService discovery(state);
  AdminService admin(state);
  // One server per port: gRPC verifies client certificates per port, so
  // the admin API, when it has its own client CA, gets its own port.
  auto read = [](const std::string& file) {
    std::string pem;
    if (!portway::ReadFile(file, &pem)) {
      std::cerr << "portway-cp: cannot read " << file << "\n";
      std::exit(1);
    }
    return pem;
  };
  auto credentials = [&](const std::string& client_ca) {
    if (tls_cert.empty()) return grpc::InsecureServerCredentials();
    grpc::SslServerCredentialsOptions tls(
        client_ca.empty() ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                          : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    tls.pem_key_cert_pairs.push_back({read(tls_key), read(tls_cert)});
    if (!client_ca.empty()) tls.pem_root_certs = read(client_ca);
    return grpc::SslServerCredentials(tls);
  };
  auto start = [&](const std::string& address, const std::string& client_ca,
                   std::vector<grpc::Service*> services, std::string* bound) {
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort(address, credentials(client_ca), &port);
    for (grpc::Service* service : services) builder.RegisterService(service);
    std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
    if (!server || port == 0) {
      std::cerr << "portway-cp: cannot listen on " << address << "\n";
      std::exit(1);
    }
    *bound = address.substr(0, address.rfind(':')) + ":" + std::to_string(port);
    return server;
  };
  std::string bound, admin_bound;
  std::unique_ptr<grpc::Server> server, admin_server;
  if (admin_listen.empty()) {
    server = start(listen, tls_client_ca, {&discovery, &admin}, &bound);
    if (!tls_client_ca.empty()) {
      spdlog::warn(
          "portway-cp: the admin API shares --listen: every certificate --tls-client-ca "
          "accepts (gateways' too) may reconfigure the fleet; give --admin-listen and "
          "--admin-client-ca to separate the roles");
    }
  } else {
    server = start(listen, tls_client_ca, {&discovery}, &bound);
    admin_server = start(admin_listen, admin_client_ca, {&admin}, &admin_bound);
    spdlog::info("portway-cp: admin API on {}", admin_bound);
  }
  spdlog::info("portway-cp: serving {} on {}", dir, bound);
  if (!port_file.empty()) {
    // Line 1: the discovery address; line 2, with --admin-listen: "admin ADDRESS".
    std::string text = bound + "\n";
    if (!admin_bound.empty()) text += "admin " + admin_bound + "\n";
    portway::WriteFileAtomically(port_file, text);
  }

  std::atomic<bool> stopping{false};
  std::thread poller([&] {
    while (!stopping) {
      std::this_thread::sleep_for(std::chrono::milliseconds(poll_ms));
      if (resources.Refresh()) {
        std::lock_guard<std::mutex> lock(state.mutex);
        state.dir = resources.Entries();
        state.Recompute();
      }
    }
  });
  int sig = 0;
  sigwait(&signals, &sig);
  spdlog::info("portway-cp: signal {}, stopping", sig);
  stopping = true;
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  if (admin_server) {
    admin_server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  }
  poller.join();
  return 0;
}
