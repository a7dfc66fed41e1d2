#include "core/server/server.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "core/common/strings.h"
#include "core/upstream/cluster.h"
#include "core/upstream/host.h"
#include "spdlog/spdlog.h"

namespace portway::server {

void Server::ScheduleDns() {
  bool all_resolved = true;
  for (const auto& [name, cluster] : snapshot_->clusters) {
    if (!cluster->config->dns) continue;
    if (!dns_resolved_once_[name]) all_resolved = false;
    if (dns_timers_.count(name) == 0) {
      dns_timers_[name] = dispatcher_->CreateTimer([this, name = name] { ResolveCluster(name); });
      ResolveCluster(name);
    } else if (cluster->hosts.empty() && cluster->dns_error == kNotResolvedYet) {
      // A reload changed the endpoints: resolve now, not at the next tick.
      ResolveCluster(name);
    }
  }
  // Timers of clusters that are gone.
  for (auto it = dns_timers_.begin(); it != dns_timers_.end();) {
    it = snapshot_->clusters.count(it->first) ? std::next(it) : dns_timers_.erase(it);
  }
  if (all_resolved) ready_ = true;
}

void Server::ResolveCluster(const std::string& name) {
  auto it = snapshot_->clusters.find(name);
  if (it == snapshot_->clusters.end()) return;
  const auto& endpoints = it->second->config->endpoints;
  auto batch = std::make_shared<ResolveBatch>();
  batch->endpoints = endpoints;
  batch->results.resize(endpoints.size());
  batch->remaining = endpoints.size();
  if (endpoints.empty()) {
    OnResolved(name, batch);
    return;
  }
  for (size_t i = 0; i < endpoints.size(); ++i) {
    dispatcher_->Resolve(endpoints[i].host, endpoints[i].port,
                         [this, name, i, batch](event::ResolveResult r) {
                           batch->results[i] = std::move(r);
                           // Act once every endpoint has answered.
                           if (--batch->remaining == 0) OnResolved(name, batch);
                         });
  }
}

namespace {
bool SameEndpoints(const std::vector<upstream::EndpointSpec>& a,
                   const std::vector<upstream::EndpointSpec>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].host != b[i].host || a[i].port != b[i].port || a[i].weight != b[i].weight) {
      return false;
    }
  }
  return true;
}
}  // namespace

// Rules: a resolution only replaces the hosts when every name answered; a
// failure never shrinks a cluster that has hosts (a resolver hiccup must not
// turn into 502s); a cluster that never resolved reports the failure, and
// requests to it get 502 upstream_dns_failure.
void Server::OnResolved(const std::string& name, std::shared_ptr<ResolveBatch> batch) {
  auto it = snapshot_->clusters.find(name);
  if (it == snapshot_->clusters.end() || !it->second->config->dns) return;
  const upstream::ClusterSnapshot& current = *it->second;
  auto timer = dns_timers_.find(name);
  if (!SameEndpoints(current.config->endpoints, batch->endpoints)) {
    // Reconfigured while the lookups ran: these answers are for old names.
    ResolveCluster(name);
    return;
  }
  upstream::HostVector hosts;
  std::vector<uint32_t> control_plane_flags;
  std::string error;
  // Keep the Host object (counters, health) of an address we already had;
  // one old host is kept once, so an address two names resolve to is two
  // hosts.
  absl::flat_hash_map<std::string, std::vector<upstream::HostSharedPtr>> reusable;
  for (const auto& old : current.hosts) reusable[old->addressString()].push_back(old);
  std::vector<uint32_t> host_endpoints;
  for (size_t i = 0; i < batch->results.size(); ++i) {
    const auto& r = batch->results[i];
    const auto& spec = current.config->endpoints[i];
    if (r.error != 0) {
      error = Cat("cannot resolve '", spec.host, "': ", r.error_message);
      continue;
    }
    for (const network::Address& address : r.addresses) {
      upstream::HostSharedPtr host;
      if (auto it = reusable.find(address.ToString());
          it != reusable.end() && !it->second.empty()) {
        host = std::move(it->second.back());
        it->second.pop_back();
      }
      if (!host) host = std::make_shared<upstream::Host>(name, address, spec.weight, spec.host);
      hosts.push_back(std::move(host));
      control_plane_flags.push_back(spec.control_plane_flags);
      host_endpoints.push_back(static_cast<uint32_t>(i));
    }
  }
  if (!error.empty() && !current.hosts.empty()) {
    spdlog::warn("cluster '{}': {}; keeping its {} known host(s)", name, error,
                 current.hosts.size());
  } else {
    if (!hosts.empty()) error.clear();
    bool changed = hosts.size() != current.hosts.size() || error != current.dns_error;
    for (size_t i = 0; !changed && i < hosts.size(); ++i) changed = hosts[i] != current.hosts[i];
    if (changed) {
      if (!error.empty()) spdlog::warn("cluster '{}': {}", name, error);
      auto next = std::make_shared<Snapshot>(*snapshot_);
      next->clusters[name] = upstream::MakeClusterSnapshot(
          current.config, hosts, error, control_plane_flags, std::move(host_endpoints));
      Publish(next);
    }
  }
  dns_resolved_once_[name] = true;
  bool all = true;
  for (const auto& [n, c] : snapshot_->clusters) {
    if (c->config->dns && !dns_resolved_once_[n]) all = false;
  }
  if (all) ready_ = true;
  if (timer != dns_timers_.end()) timer->second->Enable(current.config->dns_refresh_rate);
}

}  // namespace portway::server
