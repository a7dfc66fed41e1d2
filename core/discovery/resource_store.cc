#include "core/discovery/resource_store.h"

#include <set>

#include "core/common/strings.h"
#include "google/protobuf/util/message_differencer.h"

namespace portway::discovery {
namespace {

// Types in dependency order: what a later type uses is checked first.
constexpr v1::ResourceType kOrder[] = {v1::SECRET, v1::ENDPOINTS, v1::CLUSTER,
                                       v1::ROUTE_CONFIGURATION, v1::LISTENER};

v1::FieldError Error(std::string path, std::string message) {
  v1::FieldError e;
  e.set_path(std::move(path));
  e.set_message(std::move(message));
  return e;
}

// "listeners[0].routes[1].cluster" with prefix "listeners[0]" -> "routes[1].cluster".
std::vector<v1::FieldError> Relative(const config::ConfigErrors& errors, std::string_view prefix) {
  std::vector<v1::FieldError> out;
  for (const auto& e : errors) {
    std::string path = e.path;
    if (StartsWith(path, prefix)) {
      path = path.substr(prefix.size());
      if (!path.empty() && path[0] == '.') path = path.substr(1);
    }
    out.push_back(Error(path, e.message));
  }
  return out;
}

// The clusters every route of a listener or route configuration names.
template <typename WithRoutes>
void RouteClusters(const WithRoutes& m, std::set<std::string>* out) {
  for (const auto& r : m.routes()) {
    if (!r.cluster().empty()) out->insert(r.cluster());
  }
  for (const auto& vh : m.virtual_hosts()) {
    for (const auto& r : vh.routes()) {
      if (!r.cluster().empty()) out->insert(r.cluster());
    }
  }
}

// The secrets a listener or cluster names.
std::set<std::string> SecretsUsed(const v1::Resource& r) {
  std::set<std::string> names;
  if (r.has_listener()) {
    for (const auto& c : r.listener().tls().certificates()) {
      if (!c.secret().empty()) names.insert(c.secret());
    }
  } else if (r.has_cluster() && !r.cluster().tls().secret().empty()) {
    names.insert(r.cluster().tls().secret());
  }
  return names;
}

// A cluster that only has to exist (route checks look names up).
config::v1::Cluster Stub(const std::string& name) {
  config::v1::Cluster c;
  c.set_name(name);
  c.add_endpoints()->set_address("127.0.0.1:1");
  return c;
}

}  // namespace

v1::ResourceType TypeOf(const v1::Resource& resource) {
  switch (resource.body_case()) {
    case v1::Resource::kListener:
      return v1::LISTENER;
    case v1::Resource::kRouteConfiguration:
      return v1::ROUTE_CONFIGURATION;
    case v1::Resource::kCluster:
      return v1::CLUSTER;
    case v1::Resource::kEndpoints:
      return v1::ENDPOINTS;
    case v1::Resource::kSecret:
      return v1::SECRET;
    default:
      return v1::RESOURCE_TYPE_UNSPECIFIED;
  }
}

const char* TypeName(v1::ResourceType type) {
  switch (type) {
    case v1::LISTENER:
      return "listener";
    case v1::ROUTE_CONFIGURATION:
      return "route_configuration";
    case v1::CLUSTER:
      return "cluster";
    case v1::ENDPOINTS:
      return "endpoints";
    case v1::SECRET:
      return "secret";
    default:
      return "unknown";
  }
}

ResourceStore::ResourceStore(config::v1::Bootstrap static_bootstrap, Validator validate)
    : static_(std::move(static_bootstrap)), validate_(std::move(validate)), serving_(static_) {}

void ResourceStore::SetStatic(config::v1::Bootstrap bootstrap) {
  static_ = std::move(bootstrap);
  Recompute();
}

std::vector<v1::FieldError> ResourceStore::Check(
    const v1::Resource& resource, const std::map<Key, v1::Resource>& candidate) const {
  std::vector<v1::FieldError> errors;
  const std::string& name = resource.name();
  v1::ResourceType type = TypeOf(resource);
  if (type == v1::RESOURCE_TYPE_UNSPECIFIED) {
    errors.push_back(
        Error("", "has no body (listener, route_configuration, cluster, endpoints or secret)"));
    return errors;
  }
  if (name.empty()) errors.push_back(Error("name", "is required"));
  auto check_name = [&](const std::string& body_name, const char* field) {
    if (!body_name.empty() && body_name != name) {
      errors.push_back(Error(Cat(TypeName(type), ".", field),
                             Cat("'", body_name, "' differs from the resource name '", name, "'")));
    }
  };
  // Clusters every check sees: the static ones and the candidate's.
  auto add_clusters = [&](config::v1::Bootstrap* b) {
    for (const auto& c : static_.clusters()) *b->add_clusters() = Stub(c.name());
    for (const auto& [key, r] : candidate) {
      if (key.first == v1::CLUSTER) *b->add_clusters() = Stub(key.second);
    }
  };
  // The secrets the resource names, from the candidate (checked first: a
  // bad one already left it) or the static ones. Only those: a check must
  // not cost the size of the whole set (10,000 clusters are checked one
  // by one).
  auto add_secrets = [&](config::v1::Bootstrap* b) {
    for (const std::string& used : SecretsUsed(resource)) {
      auto it = candidate.find({v1::SECRET, used});
      if (it != candidate.end()) {
        config::v1::Secret* secret = b->add_secrets();
        *secret = it->second.secret();
        secret->set_name(used);
        continue;
      }
      for (const auto& s : static_.secrets()) {
        if (s.name() == used) *b->add_secrets() = s;
      }
    }
  };
  config::v1::Bootstrap probe;
  std::string prefix;
  switch (type) {
    case v1::SECRET: {
      check_name(resource.secret().name(), "name");
      for (const auto& c : static_.secrets()) {
        if (c.name() == name) errors.push_back(Error("name", "a static secret has this name"));
      }
      config::v1::Secret* secret = probe.add_secrets();
      *secret = resource.secret();
      secret->set_name(name.empty() ? "secret" : name);
      // A pushed secret carries its PEM inline: a file path would name a
      // file on the control plane's machine, not this one.
      if (!secret->cert_file().empty() || !secret->key_file().empty()) {
        errors.push_back(Error("secret.cert_file",
                               "pushed secrets carry certificate_chain and private_key inline"));
        return errors;
      }
      prefix = "secrets[0]";
      break;
    }
    case v1::CLUSTER: {
      check_name(resource.cluster().name(), "name");
      for (const auto& c : static_.clusters()) {
        if (c.name() == name) errors.push_back(Error("name", "a static cluster has this name"));
      }
      config::v1::Cluster* c = probe.add_clusters();
      *c = resource.cluster();
      c->set_name(name);
      add_secrets(&probe);
      if (c->type() == config::v1::Cluster::EDS) {
        // Checked with its endpoints when they are known; they are checked
        // on their own anyway.
        c->set_type(config::v1::Cluster::STATIC);
        c->clear_endpoints();
        c->add_endpoints()->set_address("127.0.0.1:1");
      }
      prefix = "clusters[0]";
      break;
    }
    case v1::ENDPOINTS: {
      check_name(resource.endpoints().cluster(), "cluster");
      config::v1::Cluster* c = probe.add_clusters();
      c->set_name(name.empty() ? "endpoints" : name);
      *c->mutable_endpoints() = resource.endpoints().endpoints();
      prefix = "clusters[0]";
      break;
    }
    case v1::ROUTE_CONFIGURATION: {
      const auto& rc = resource.route_configuration();
      check_name(rc.name(), "name");
      config::v1::Listener* l = probe.add_listeners();
      l->set_name("route_configuration");
      l->set_address("127.0.0.1:0");
      *l->mutable_routes() = rc.routes();
      *l->mutable_virtual_hosts() = rc.virtual_hosts();
      add_clusters(&probe);
      prefix = "listeners[0]";
      break;
    }
    case v1::LISTENER: {
      check_name(resource.listener().name(), "name");
      for (const auto& l : static_.listeners()) {
        if (l.name() == name) errors.push_back(Error("name", "a static listener has this name"));
      }
      config::v1::Listener* l = probe.add_listeners();
      *l = resource.listener();
      l->set_name(name.empty() ? "listener" : name);
      if (!l->route_config().empty()) {
        auto it = candidate.find({v1::ROUTE_CONFIGURATION, l->route_config()});
        if (it == candidate.end()) {
          errors.push_back(
              Error("route_config", Cat("no RouteConfiguration named '", l->route_config(), "'")));
          return errors;
        }
        if (l->routes_size() > 0 || l->virtual_hosts_size() > 0) {
          errors.push_back(Error("route_config", "set together with routes or virtual_hosts"));
          return errors;
        }
        *l->mutable_routes() = it->second.route_configuration().routes();
        *l->mutable_virtual_hosts() = it->second.route_configuration().virtual_hosts();
        l->clear_route_config();
      }
      add_clusters(&probe);
      add_secrets(&probe);
      prefix = "listeners[0]";
      break;
    }
    default:
      break;
  }
  config::ConfigErrors found;
  if (!validate_(probe, &found)) {
    for (auto& e : Relative(found, prefix)) errors.push_back(std::move(e));
  }
  return errors;
}

std::string ResourceStore::NotReady(const v1::Resource& resource,
                                    const std::map<Key, v1::Resource>& ready) const {
  auto cluster_ready = [&](const std::string& name) {
    for (const auto& c : static_.clusters()) {
      if (c.name() == name) return true;
    }
    return ready.count({v1::CLUSTER, name}) > 0;
  };
  std::set<std::string> clusters;
  switch (TypeOf(resource)) {
    case v1::CLUSTER:
      if (resource.cluster().type() == config::v1::Cluster::EDS &&
          ready.count({v1::ENDPOINTS, resource.name()}) == 0) {
        return "waiting for its Endpoints";
      }
      return "";
    case v1::ROUTE_CONFIGURATION:
      RouteClusters(resource.route_configuration(), &clusters);
      break;
    case v1::LISTENER: {
      const auto& l = resource.listener();
      if (!l.route_config().empty()) {
        auto it = ready.find({v1::ROUTE_CONFIGURATION, l.route_config()});
        if (it == ready.end())
          return Cat("waiting for RouteConfiguration '", l.route_config(), "'");
        RouteClusters(it->second.route_configuration(), &clusters);
      } else {
        RouteClusters(l, &clusters);
      }
      break;
    }
    default:
      return "";
  }
  for (const auto& c : clusters) {
    if (!cluster_ready(c)) return Cat("waiting for cluster '", c, "' to warm");
  }
  return "";
}

config::v1::Bootstrap ResourceStore::Merge(const std::map<Key, v1::Resource>& resources) const {
  config::v1::Bootstrap out = static_;
  for (const auto& [key, r] : resources) {
    if (key.first == v1::SECRET) {
      config::v1::Secret* secret = out.add_secrets();
      *secret = r.secret();
      secret->set_name(key.second);
    } else if (key.first == v1::CLUSTER) {
      config::v1::Cluster* c = out.add_clusters();
      *c = r.cluster();
      c->set_name(key.second);
      if (c->type() == config::v1::Cluster::EDS) {
        c->set_type(config::v1::Cluster::STATIC);
        c->clear_endpoints();
        auto it = resources.find({v1::ENDPOINTS, key.second});
        if (it != resources.end()) *c->mutable_endpoints() = it->second.endpoints().endpoints();
      }
    } else if (key.first == v1::LISTENER) {
      config::v1::Listener* l = out.add_listeners();
      *l = r.listener();
      l->set_name(key.second);
      if (!l->route_config().empty()) {
        auto it = resources.find({v1::ROUTE_CONFIGURATION, l->route_config()});
        if (it != resources.end()) {
          *l->mutable_routes() = it->second.route_configuration().routes();
          *l->mutable_virtual_hosts() = it->second.route_configuration().virtual_hosts();
        }
        l->clear_route_config();
      }
    }
  }
  return out;
}

void ResourceStore::Recompute() {
  // In dependency order, each accepted version serves once what it uses
  // serves; until then the previous serving version stays.
  std::map<Key, v1::Resource> ready;
  for (v1::ResourceType type : kOrder) {
    for (auto& [key, slot] : slots_) {
      if (key.first != type) continue;
      if (slot.has_accepted) {
        slot.pending = NotReady(slot.accepted, ready);
        if (slot.pending.empty()) {
          slot.serving = slot.accepted;
          slot.has_serving = true;
        }
      }
      if (slot.has_serving && NotReady(slot.serving, ready).empty()) ready[key] = slot.serving;
    }
  }
  serving_ = Merge(ready);
}

ResourceStore::Outcome ResourceStore::OnPush(const v1::Push& push) {
  Outcome outcome;
  outcome.verdicts.set_nonce(push.nonce());
  outcome.verdicts.set_version(push.version());
  const std::map<Key, Slot> before = slots_;
  const config::v1::Bootstrap serving_before = serving_;

  // The candidate: what would be accepted if every pushed resource were.
  std::map<Key, v1::Resource> accepted;
  for (const auto& [key, slot] : slots_) {
    if (slot.has_accepted) accepted[key] = slot.accepted;
  }
  std::map<Key, int> count;
  for (const auto& r : push.resources()) ++count[{TypeOf(r), r.name()}];
  std::map<Key, v1::Resource> candidate = accepted;
  for (const auto& r : push.resources()) candidate[{TypeOf(r), r.name()}] = r;

  // Removals: named ones, and for full-state types whatever the push lacks.
  std::set<Key> removals;
  for (const auto& k : push.removed()) removals.insert({k.type(), k.name()});
  for (int t : push.full_state_types()) {
    for (const auto& [key, r] : accepted) {
      if (key.first == t && count.count(key) == 0) removals.insert(key);
    }
  }
  for (const auto& key : removals) candidate.erase(key);

  // Each pushed resource on its own, dependencies first; a rejected one
  // goes back to its last good version before its users are checked.
  std::map<Key, std::vector<v1::FieldError>> errors;
  for (v1::ResourceType type : kOrder) {
    for (const auto& r : push.resources()) {
      Key key{TypeOf(r), r.name()};
      if (key.first != type) continue;
      std::vector<v1::FieldError> e;
      if (count[key] > 1) {
        e.push_back(Error("name", Cat("the push carries ", TypeName(type), " '", r.name(), "' ",
                                      count[key], " times")));
      } else {
        e = Check(r, candidate);
      }
      if (e.empty()) continue;
      errors[key] = std::move(e);
      auto old = accepted.find(key);
      if (old != accepted.end()) {
        candidate[key] = old->second;
      } else {
        candidate.erase(key);
      }
    }
  }
  for (const auto& r : push.resources()) {
    Key key{TypeOf(r), r.name()};
    if (key.first == v1::RESOURCE_TYPE_UNSPECIFIED && !errors.count(key)) {
      errors[key] = Check(r, candidate);
      candidate.erase(key);
    }
  }

  // A removal that would leave a user without what it uses is refused.
  std::map<Key, std::string> refused;
  for (const auto& key : removals) {
    std::string user;
    for (const auto& [k, r] : candidate) {
      std::set<std::string> clusters;
      if (k.first == v1::LISTENER) {
        if (key.first == v1::ROUTE_CONFIGURATION && r.listener().route_config() == key.second) {
          user = Cat("listener '", k.second, "'");
        }
        RouteClusters(r.listener(), &clusters);
      } else if (k.first == v1::ROUTE_CONFIGURATION) {
        RouteClusters(r.route_configuration(), &clusters);
      }
      if (key.first == v1::CLUSTER && clusters.count(key.second)) {
        user = Cat(TypeName(static_cast<v1::ResourceType>(k.first)), " '", k.second, "'");
      }
      if (key.first == v1::ENDPOINTS && k.first == v1::CLUSTER && k.second == key.second &&
          r.cluster().type() == config::v1::Cluster::EDS) {
        user = Cat("cluster '", k.second, "'");
      }
      if (key.first == v1::SECRET && SecretsUsed(r).count(key.second)) {
        user = Cat(TypeName(static_cast<v1::ResourceType>(k.first)), " '", k.second, "'");
      }
      if (!user.empty()) break;
    }
    if (!user.empty()) {
      refused[key] = Cat("still used by ", user);
      candidate[key] = accepted.at(key);
    }
  }

  // Take what passed, then check the result as a whole.
  for (const auto& r : push.resources()) {
    Key key{TypeOf(r), r.name()};
    if (key.first == v1::RESOURCE_TYPE_UNSPECIFIED) continue;
    Slot& slot = slots_[key];
    if (errors.count(key)) {
      slot.rejected_version = r.version();
      slot.errors = errors[key];
    } else {
      slot.accepted = r;
      slot.has_accepted = true;
      slot.rejected_version.clear();
      slot.errors.clear();
    }
  }
  for (const auto& key : removals) {
    if (refused.count(key)) continue;
    slots_.erase(key);
  }
  Recompute();
  config::ConfigErrors whole;
  if (!validate_(serving_, &whole)) {
    // Each part passed alone but not together (rare: e.g. two listeners on
    // one address). Nothing of this push is taken.
    slots_ = before;
    serving_ = serving_before;
    std::vector<v1::FieldError> as_a_whole;
    for (const auto& e : whole) {
      as_a_whole.push_back(Error("", Cat("the config as a whole: ", e.ToString())));
    }
    for (const auto& r : push.resources()) {
      Key key{TypeOf(r), r.name()};
      if (!errors.count(key)) errors[key] = as_a_whole;
      Slot& slot = slots_[key];
      slot.rejected_version = r.version();
      slot.errors = errors[key];
    }
    // A slot that never had an accepted version stays only as a record of
    // its rejection.
    removals.clear();
    refused.clear();
  }

  for (const auto& r : push.resources()) {
    Key key{TypeOf(r), r.name()};
    v1::Verdict* v = outcome.verdicts.add_verdicts();
    v->set_type(key.first == v1::RESOURCE_TYPE_UNSPECIFIED
                    ? v1::RESOURCE_TYPE_UNSPECIFIED
                    : static_cast<v1::ResourceType>(key.first));
    v->set_name(r.name());
    v->set_version(r.version());
    auto e = errors.find(key);
    v->set_accepted(e == errors.end());
    if (e != errors.end()) {
      for (const auto& fe : e->second) *v->add_errors() = fe;
    } else if (auto s = slots_.find(key); s != slots_.end()) {
      v->set_pending(s->second.pending);
    }
  }
  for (const auto& key : removals) {
    v1::Verdict* v = outcome.verdicts.add_verdicts();
    v->set_type(static_cast<v1::ResourceType>(key.first));
    v->set_name(key.second);
    auto it = refused.find(key);
    v->set_accepted(it == refused.end());
    if (it != refused.end()) *v->add_errors() = Error("", it->second);
  }
  outcome.changed = !google::protobuf::util::MessageDifferencer::Equals(serving_, serving_before);
  return outcome;
}

std::vector<ResourceStore::Entry> ResourceStore::Entries() const {
  std::vector<Entry> out;
  for (const auto& [key, slot] : slots_) {
    Entry e;
    e.type = static_cast<v1::ResourceType>(key.first);
    e.name = key.second;
    if (slot.has_serving) e.serving_version = slot.serving.version();
    if (slot.has_accepted) e.accepted_version = slot.accepted.version();
    e.pending = slot.pending;
    e.rejected_version = slot.rejected_version;
    e.errors = slot.errors;
    out.push_back(std::move(e));
  }
  return out;
}

void ResourceStore::RecordRejection(const v1::Resource& resource,
                                    std::vector<v1::FieldError> errors) {
  Slot& slot = slots_[{TypeOf(resource), resource.name()}];
  slot.rejected_version = resource.version();
  slot.errors = std::move(errors);
}

v1::Push ResourceStore::ServingAsPush() const {
  v1::Push push;
  push.set_nonce("persisted");
  for (const auto& [key, slot] : slots_) {
    if (slot.has_serving) *push.add_resources() = slot.serving;
  }
  for (v1::ResourceType t : kOrder) push.add_full_state_types(t);
  return push;
}

std::vector<v1::ResourceVersion> ResourceStore::Have() const {
  std::vector<v1::ResourceVersion> out;
  for (const auto& [key, slot] : slots_) {
    if (!slot.has_serving) continue;
    v1::ResourceVersion v;
    v.set_type(static_cast<v1::ResourceType>(key.first));
    v.set_name(key.second);
    v.set_version(slot.serving.version());
    out.push_back(std::move(v));
  }
  return out;
}

}  // namespace portway::discovery
