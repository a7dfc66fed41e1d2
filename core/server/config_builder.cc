#include "core/server/config_builder.h"

#include "core/common/strings.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <set>

#include "absl/container/flat_hash_map.h"
#include "core/http/filter_registry.h"
#include "core/http/module_loader.h"
#include "core/server/health_config.h"
#include "core/server/tls_config.h"
#include "google/protobuf/message.h"
#include "portway/config/v1/bootstrap.pb.h"

namespace portway::server {
namespace {

void AddError(config::ConfigErrors* errors, std::string path, std::string message) {
  errors->push_back({std::move(path), std::move(message)});
}

std::chrono::milliseconds ToMillis(const google::protobuf::Duration& d) {
  return std::chrono::milliseconds(d.seconds() * 1000 + d.nanos() / 1000000);
}

// A duration field: default when unset, error when negative.
// http2: on a listener or a cluster; 0 keeps each default.
void BuildHttp2Options(const config::v1::Http2Options& proto, const std::string& path,
                       http::http2::Options* out, config::ConfigErrors* errors) {
  // RFC 9113 6.5.2 and 6.9.1: windows and stream counts are 31-bit.
  constexpr uint32_t kMax31 = 0x7fffffff;
  auto take = [&](uint32_t value, const char* field, uint32_t min, uint32_t max, uint32_t* to) {
    if (value == 0) return;
    if (value < min || value > max) {
      AddError(errors, Cat(path, ".", field), Cat("must be between ", min, " and ", max));
      return;
    }
    *to = value;
  };
  take(proto.max_concurrent_streams(), "max_concurrent_streams", 1, kMax31,
       &out->max_concurrent_streams);
  take(proto.initial_stream_window_bytes(), "initial_stream_window_bytes", 65535, kMax31,
       &out->initial_stream_window_bytes);
  take(proto.initial_connection_window_bytes(), "initial_connection_window_bytes", 65535, kMax31,
       &out->initial_connection_window_bytes);
  take(proto.max_header_list_bytes(), "max_header_list_bytes", 1024, 1024 * 1024,
       &out->max_header_list_bytes);
  take(proto.stream_reset_burst(), "stream_reset_burst", 1, kMax31, &out->stream_reset_burst);
  take(proto.stream_reset_rate_per_second(), "stream_reset_rate_per_second", 1, kMax31,
       &out->stream_reset_rate_per_second);
  take(proto.max_outbound_control_frames(), "max_outbound_control_frames", 1, kMax31,
       &out->max_outbound_control_frames);
  take(proto.max_empty_data_frames(), "max_empty_data_frames", 1, kMax31,
       &out->max_empty_data_frames);
}

std::chrono::milliseconds DurationOr(bool has, const google::protobuf::Duration& d,
                                     std::chrono::milliseconds fallback, const std::string& path,
                                     config::ConfigErrors* errors) {
  if (!has) return fallback;
  if (d.seconds() < 0 || d.nanos() < 0) {
    AddError(errors, path, "must not be negative");
    return fallback;
  }
  return ToMillis(d);
}

upstream::LbPolicy ToPolicy(config::v1::Cluster::LbPolicy p) {
  switch (p) {
    case config::v1::Cluster::LEAST_REQUEST:
      return upstream::LbPolicy::kLeastRequest;
    case config::v1::Cluster::RANDOM:
      return upstream::LbPolicy::kRandom;
    case config::v1::Cluster::RING_HASH:
      return upstream::LbPolicy::kRingHash;
    case config::v1::Cluster::MAGLEV:
      return upstream::LbPolicy::kMaglev;
    default:
      return upstream::LbPolicy::kRoundRobin;
  }
}

// Parses a filter's `config` into its factory's typed message and lets the
// factory check it; every error is reported under `path`.
bool MakeFilter(const std::string& name, const google::protobuf::Struct& config,
                const std::string& path, http::FilterFactoryCallback* out,
                config::ConfigErrors* errors) {
  const http::FilterRegistryImpl& registry = http::GlobalFilterRegistry();
  const http::FilterFactory* factory = registry.Find(name);
  if (factory == nullptr) {
    std::string known;
    for (const std::string& n : registry.Names()) known += (known.empty() ? "" : ", ") + n;
    if (const std::string* why = registry.Unavailable(name)) {
      AddError(errors, path + ".name", Cat("unknown filter '", name, "': ", *why));
      return false;
    }
    AddError(errors, path + ".name",
             Cat("unknown filter '", name, "' (known: ", known.empty() ? "none" : known, ")"));
    return false;
  }
  std::unique_ptr<google::protobuf::Message> message = factory->NewConfig();
  if (!config::StructToProto(config, message.get(), errors, path + ".config")) return false;
  absl::StatusOr<http::FilterFactoryCallback> made = factory->Create(*message);
  if (!made.ok()) {
    // Factories report "FIELD.PATH: message" relative to their config.
    std::string text(made.status().message());
    size_t colon = text.find(": ");
    std::string_view head = std::string_view(text).substr(0, colon);
    bool is_path =
        colon != std::string::npos && !head.empty() && head.find(' ') == std::string_view::npos;
    if (is_path) {
      AddError(errors, Cat(path, ".config.", head), text.substr(colon + 2));
    } else {
      AddError(errors, path + ".config", text);
    }
    return false;
  }
  *out = std::move(*made);
  return true;
}

void BuildFilters(const config::v1::Listener& proto, const std::string& path,
                  std::vector<ListenerConfig::Filter>* out, config::ConfigErrors* errors) {
  for (int i = 0; i < proto.filters_size(); ++i) {
    const auto& f = proto.filters(i);
    http::FilterFactoryCallback make;
    if (MakeFilter(f.name(), f.config(), Cat(path, ".filters[", i, "]"), &make, errors)) {
      out->push_back({f.name(), std::move(make)});
    }
  }
}

// A route's override must name a filter of the listener's chain.
router::RouteTable::FilterOverrideBuilder OverrideBuilder(const config::v1::Listener& listener) {
  return [&listener](const config::v1::FilterOverride& proto, const std::string& path,
                     router::FilterOverride* out, config::ConfigErrors* errors) {
    bool in_chain = false;
    for (const auto& f : listener.filters()) in_chain = in_chain || f.name() == proto.name();
    if (!in_chain) {
      AddError(errors, path + ".name",
               Cat("'", proto.name(), "' is not in this listener's filters"));
      return false;
    }
    out->name = proto.name();
    out->disabled = proto.disabled();
    if (proto.disabled()) {
      if (proto.has_config()) {
        AddError(errors, path + ".config", "has no effect on a disabled filter");
        return false;
      }
      return true;
    }
    if (!proto.has_config()) {
      AddError(errors, path, "needs disabled: true or a config");
      return false;
    }
    return MakeFilter(proto.name(), proto.config(), path, &out->make, errors);
  };
}

}  // namespace

bool LoadBootstrapFile(const std::string& path, config::v1::Bootstrap* bootstrap,
                       config::ConfigErrors* errors) {
  if (!config::YamlFileToProto(path, bootstrap, errors)) return false;
  ResolveTlsPaths(std::filesystem::path(path).parent_path().string(), bootstrap);
  return true;
}

bool LoadModules(const config::v1::Bootstrap& bootstrap, const std::string& config_path,
                 config::ConfigErrors* errors) {
  namespace fs = std::filesystem;
  size_t before = errors->size();
  fs::path config_dir = fs::path(config_path).parent_path();
  fs::path module_dir = config_dir / fs::path(bootstrap.module_dir());
  for (int i = 0; i < bootstrap.modules_size(); ++i) {
    const std::string& path = bootstrap.modules(i).path();
    std::string field = Cat("modules[", i, "].path");
    if (path.empty()) {
      AddError(errors, field, "is required");
      continue;
    }
    // Always a path with a directory: dlopen never searches for it.
    fs::path full = fs::path(path).is_absolute() ? fs::path(path) : module_dir / path;
    std::error_code ec;
    fs::path absolute = fs::absolute(full, ec);
    std::string resolved = (ec ? full : absolute).lexically_normal().string();
    absl::Status status = http::LoadModule(resolved, http::GlobalFilterRegistry());
    if (!status.ok()) AddError(errors, field, std::string(status.message()));
  }
  return errors->size() == before;
}

SnapshotPtr ConfigBuilder::Build(const config::v1::Bootstrap& bootstrap,
                                 const SnapshotPtr& previous, config::ConfigErrors* errors) {
  size_t before = errors->size();
  auto snapshot = std::make_shared<Snapshot>();

  // Admin.
  std::string admin =
      bootstrap.admin().address().empty() ? "127.0.0.1:9901" : bootstrap.admin().address();
  auto admin_address = network::Address::Parse(admin);
  if (!admin_address.ok()) {
    AddError(errors, "admin.address", std::string(admin_address.status().message()));
  } else {
    snapshot->admin_address = *admin_address;
  }
  const auto& history = bootstrap.admin().failure_history();
  if (history.max_entries_per_worker() > 100000) {
    AddError(errors, "admin.failure_history.max_entries_per_worker", "must be at most 100000");
  }
  snapshot->failure_history_per_worker = history.disabled() ? 0
                                         : history.max_entries_per_worker() == 0
                                             ? 256
                                             : history.max_entries_per_worker();
  snapshot->drain_timeout = DurationOr(bootstrap.has_drain_timeout(), bootstrap.drain_timeout(),
                                       std::chrono::milliseconds(15000), "drain_timeout", errors);
  snapshot->drain_delay = DurationOr(bootstrap.has_drain_delay(), bootstrap.drain_delay(),
                                     std::chrono::milliseconds(0), "drain_delay", errors);
  if (bootstrap.has_control_plane()) {
    const auto& cp = bootstrap.control_plane();
    if (cp.address().empty() || cp.address().find(':') == std::string::npos) {
      AddError(errors, "control_plane.address", "must be HOST:PORT");
    }
    if (cp.node_id().empty()) AddError(errors, "control_plane.node_id", "is required");
    auto initial =
        DurationOr(cp.has_initial_backoff(), cp.initial_backoff(), std::chrono::milliseconds(250),
                   "control_plane.initial_backoff", errors);
    auto max = DurationOr(cp.has_max_backoff(), cp.max_backoff(), std::chrono::milliseconds(30000),
                          "control_plane.max_backoff", errors);
    if (cp.has_tls()) {
      const auto& tls = cp.tls();
      auto readable = [&](const std::string& file, const std::string& field, bool required) {
        if (file.empty()) {
          if (required) AddError(errors, field, "is required for TLS");
          return;
        }
        if (!std::ifstream(file)) AddError(errors, field, Cat("cannot read '", file, "'"));
      };
      readable(tls.ca_file(), "control_plane.tls.ca_file", true);
      readable(tls.cert_file(), "control_plane.tls.cert_file", false);
      readable(tls.key_file(), "control_plane.tls.key_file", false);
      if (tls.cert_file().empty() != tls.key_file().empty()) {
        AddError(errors, "control_plane.tls.key_file", "cert_file and key_file go together");
      }
    }
    DurationOr(cp.has_initial_fetch_timeout(), cp.initial_fetch_timeout(),
               std::chrono::milliseconds(15000), "control_plane.initial_fetch_timeout", errors);
    std::set<std::string> allowed;
    for (int i = 0; i < cp.allowed_modules_size(); ++i) {
      const auto& m = cp.allowed_modules(i);
      std::string path = Cat("control_plane.allowed_modules[", i, "]");
      if (m.name().empty() || m.name().find('/') != std::string::npos || m.name()[0] == '.') {
        AddError(errors, path + ".name", "must be a filter name (no '/', not starting with '.')");
      } else if (!allowed.insert(m.name()).second) {
        AddError(errors, path + ".name", Cat("'", m.name(), "' is listed twice"));
      }
      bool hex = m.sha256().size() == 64 &&
                 std::all_of(m.sha256().begin(), m.sha256().end(),
                             [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); });
      if (!m.sha256().empty() && !hex) {
        AddError(errors, path + ".sha256", "must be 64 hex digits (sha256sum FILE)");
      }
    }
    if (initial.count() <= 0) {
      AddError(errors, "control_plane.initial_backoff", "must be at least 1ms");
    } else if (max < initial) {
      AddError(errors, "control_plane.max_backoff", "must not be below initial_backoff");
    }
  }

  // Access log.
  std::string log_error;
  snapshot->access_log = AccessLogger::Open(
      open_files_ ? bootstrap.access_log().path() : std::string("off"),
      bootstrap.access_log().format() == config::v1::AccessLog::JSON ? AccessLogger::Format::kJson
                                                                     : AccessLogger::Format::kText,
      &log_error);
  if (!snapshot->access_log) AddError(errors, "access_log.path", log_error);

  // Secrets before what names them.
  SecretMap secrets = BuildSecrets(bootstrap, errors);

  // Clusters first: routes are checked against their names.
  std::set<std::string> cluster_names;
  for (int i = 0; i < bootstrap.clusters_size(); ++i) {
    const auto& proto = bootstrap.clusters(i);
    std::string path = Cat("clusters[", i, "]");
    size_t cluster_errors = errors->size();
    if (proto.name().empty()) {
      AddError(errors, path + ".name", "is required");
    } else if (!cluster_names.insert(proto.name()).second) {
      AddError(errors, path + ".name", Cat("duplicate cluster name '", proto.name(), "'"));
    }
    auto config = std::make_shared<upstream::ClusterConfig>();
    config->name = proto.name();
    config->dns = proto.type() == config::v1::Cluster::DNS;
    if (proto.type() == config::v1::Cluster::EDS) {
      // The control-plane client turns EDS clusters into static ones with
      // their Endpoints resource before building; here nobody did.
      AddError(errors, path + ".type",
               "EDS needs a control plane (its endpoints come from an Endpoints resource)");
    }
    config->lb_policy = ToPolicy(proto.lb_policy());
    config->hash_header = ToLower(proto.hash_policy().header());
    config->hash_source_ip = proto.hash_policy().source_ip();
    if ((config->lb_policy == upstream::LbPolicy::kRingHash ||
         config->lb_policy == upstream::LbPolicy::kMaglev) &&
        config->hash_header.empty() && !config->hash_source_ip) {
      AddError(errors, path + ".hash_policy",
               "ring_hash and maglev need a hash_policy (header: NAME or source_ip: true)");
    }
    if (!config->hash_header.empty() && config->hash_source_ip) {
      AddError(errors, path + ".hash_policy", "takes only one of header or source_ip");
    }
    config->connect_timeout =
        DurationOr(proto.has_connect_timeout(), proto.connect_timeout(),
                   std::chrono::milliseconds(5000), path + ".connect_timeout", errors);
    if (proto.has_connect_timeout() && config->connect_timeout.count() == 0) {
      AddError(errors, path + ".connect_timeout", "must be greater than 0");
    }
    config->dns_refresh_rate =
        DurationOr(proto.has_dns_refresh_rate(), proto.dns_refresh_rate(),
                   std::chrono::milliseconds(5000), path + ".dns_refresh_rate", errors);
    if (config->dns_refresh_rate.count() < 100)
      config->dns_refresh_rate = std::chrono::milliseconds(100);
    const auto& pool = proto.connection_pool();
    if (pool.max_connections() > 0) config->max_connections = pool.max_connections();
    if (pool.max_pending_requests() > 0) config->max_pending_requests = pool.max_pending_requests();
    config->idle_timeout =
        DurationOr(pool.has_idle_timeout(), pool.idle_timeout(), std::chrono::milliseconds(60000),
                   path + ".connection_pool.idle_timeout", errors);
    config->max_requests_per_connection = pool.max_requests_per_connection();
    config->protocol =
        proto.protocol() == config::v1::HTTP2 ? http::Protocol::kHttp2 : http::Protocol::kHttp11;
    config->auto_protocol = proto.protocol() == config::v1::AUTO;
    BuildHttp2Options(proto.http2(), path + ".http2", &config->http2, errors);
    if (proto.has_tls()) {
      config->tls = BuildClusterTls(proto.tls(), path + ".tls", secrets, config->protocol,
                                    config->auto_protocol, errors, &config->tls_identity);
    } else if (config->auto_protocol) {
      AddError(errors, path + ".protocol",
               "auto needs tls (ALPN picks the protocol); without TLS say http1 or http2");
    }

    BuildClusterHealth(proto, path, config.get(), errors);

    upstream::HostVector hosts;
    std::vector<uint32_t> control_plane_flags;
    // The previous snapshot's hosts of this cluster by address, each taken
    // at most once (built at the first endpoint that needs it).
    absl::flat_hash_map<std::string, std::vector<upstream::HostSharedPtr>> reusable;
    bool reuse_indexed = false;
    for (int e = 0; e < proto.endpoints_size(); ++e) {
      const auto& ep = proto.endpoints(e);
      std::string epath = Cat(path, ".endpoints[", e, "]");
      upstream::EndpointSpec spec;
      absl::Status split = network::Address::SplitHostPort(ep.address(), &spec.host, &spec.port);
      if (!split.ok()) {
        AddError(errors, epath + ".address", std::string(split.message()));
        continue;
      }
      if (spec.port == 0) AddError(errors, epath + ".address", "port 0 cannot be connected to");
      if (ep.weight() > 10000) AddError(errors, epath + ".weight", "must be at most 10000");
      spec.weight = ep.weight() == 0 ? 1 : ep.weight();
      if (ep.health_status() == config::v1::Endpoint::UNHEALTHY) {
        spec.control_plane_flags = upstream::health_flag::kControlPlaneUnhealthy;
      } else if (ep.health_status() == config::v1::Endpoint::DRAINING) {
        spec.control_plane_flags = upstream::health_flag::kControlPlaneDraining;
      }
      if (!config->dns) {
        bool ok = false;
        network::Address address = network::Address::FromIp(spec.host, spec.port, &ok);
        if (!ok) {
          AddError(errors, epath + ".address",
                   Cat("'", spec.host,
                       "' is not an IP address; set the cluster's type: dns to resolve "
                       "names"));
          continue;
        }
        // The same address and weight keep their Host object (its counters,
        // health and the workers' pools) across a reload; an address listed
        // twice is two hosts, each kept once.
        if (!reuse_indexed) {
          reuse_indexed = true;
          if (previous) {
            auto it = previous->clusters.find(proto.name());
            if (it != previous->clusters.end() && !it->second->config->dns) {
              for (const auto& old : it->second->hosts)
                reusable[old->addressString()].push_back(old);
            }
          }
        }
        upstream::HostSharedPtr host;
        if (auto r = reusable.find(address.ToString()); r != reusable.end()) {
          auto& candidates = r->second;
          auto match = std::find_if(candidates.begin(), candidates.end(),
                                    [&](const auto& old) { return old->weight() == spec.weight; });
          if (match != candidates.end()) {
            host = *match;
            candidates.erase(match);
          }
        }
        if (!host) host = std::make_shared<upstream::Host>(config->name, address, spec.weight);
        hosts.push_back(std::move(host));
        control_plane_flags.push_back(spec.control_plane_flags);
      }
      config->endpoints.push_back(std::move(spec));
    }
    if (errors->size() != cluster_errors || proto.name().empty()) continue;

    // A check-only build (--validate, the control plane's per-resource
    // checks) runs nothing: no metrics.
    if (open_files_) {
      auto& cs = cluster_stats_[proto.name()];
      if (!cs) cs = std::make_unique<stats::ClusterStats>(store_, proto.name());
      config->stats = cs.get();
      if (config->protocol == http::Protocol::kHttp2 || config->auto_protocol) {
        config->http2_stats = stats::Http2Counters(store_, "cluster", proto.name());
      }
    }

    std::string dns_error;
    std::vector<uint32_t> host_endpoints;
    if (config->dns) {
      // Keep what the last resolution found if the cluster did not change.
      dns_error = kNotResolvedYet;
      if (previous) {
        auto it = previous->clusters.find(proto.name());
        if (it != previous->clusters.end() && it->second->config->dns) {
          const auto& old = *it->second->config;
          bool same = old.endpoints.size() == config->endpoints.size();
          for (size_t k = 0; same && k < old.endpoints.size(); ++k) {
            same = old.endpoints[k].host == config->endpoints[k].host &&
                   old.endpoints[k].port == config->endpoints[k].port &&
                   old.endpoints[k].weight == config->endpoints[k].weight;
          }
          if (same) {
            // The resolved hosts stay; each takes its endpoint's health_status
            // as this config says it.
            hosts = it->second->hosts;
            dns_error = it->second->dns_error;
            host_endpoints = it->second->host_endpoints;
            control_plane_flags.clear();
            for (uint32_t k : host_endpoints) {
              control_plane_flags.push_back(
                  k < config->endpoints.size() ? config->endpoints[k].control_plane_flags : 0);
            }
          }
        }
      }
    }
    snapshot->clusters[proto.name()] =
        upstream::MakeClusterSnapshot(std::move(config), std::move(hosts), std::move(dns_error),
                                      std::move(control_plane_flags), std::move(host_endpoints));
  }

  // Listeners.
  std::set<std::string> listener_names;
  std::set<std::string> listener_addresses;
  for (int i = 0; i < bootstrap.listeners_size(); ++i) {
    const auto& proto = bootstrap.listeners(i);
    std::string path = Cat("listeners[", i, "]");
    size_t listener_errors = errors->size();
    auto listener = std::make_shared<ListenerConfig>();
    listener->name = proto.name();
    if (proto.name().empty()) {
      AddError(errors, path + ".name", "is required");
    } else if (!listener_names.insert(proto.name()).second) {
      AddError(errors, path + ".name", Cat("duplicate listener name '", proto.name(), "'"));
    }
    auto address = network::Address::Parse(proto.address());
    if (proto.address().empty()) {
      AddError(errors, path + ".address", "is required (e.g. 0.0.0.0:10000)");
    } else if (!address.ok()) {
      AddError(errors, path + ".address", std::string(address.status().message()));
    } else {
      listener->address = *address;
      listener->address_text = proto.address();
      if (address->port() != 0 && !listener_addresses.insert(proto.address()).second) {
        AddError(errors, path + ".address", "two listeners cannot share an address");
      }
    }
    BuildFilters(proto, path, &listener->filters, errors);
    const auto& limits = proto.limits();
    auto& codec = listener->codec;
    if (limits.max_header_bytes() > 0) codec.limits.max_header_bytes = limits.max_header_bytes();
    if (limits.max_headers() > 0) codec.limits.max_headers = limits.max_headers();
    if (limits.max_request_line_bytes() > 0) {
      codec.limits.max_request_line_bytes = limits.max_request_line_bytes();
    }
    if (codec.limits.max_request_line_bytes > codec.limits.max_header_bytes) {
      // The request line is part of the head: an explicit conflict is an
      // error, a default simply follows the smaller head limit.
      if (limits.max_request_line_bytes() > 0) {
        AddError(errors, path + ".limits.max_request_line_bytes", "cannot exceed max_header_bytes");
      }
      codec.limits.max_request_line_bytes = codec.limits.max_header_bytes;
    }
    if (limits.max_header_bytes() > 1024 * 1024) {
      AddError(errors, path + ".limits.max_header_bytes", "must be at most 1048576");
    }
    if (limits.buffer_limit_bytes() > 0) codec.buffer_limit = limits.buffer_limit_bytes();
    if (limits.buffer_limit_bytes() > 0 && limits.buffer_limit_bytes() < 1024) {
      AddError(errors, path + ".limits.buffer_limit_bytes", "must be at least 1024");
    }
    codec.max_request_body_bytes = limits.max_request_body_bytes();
    if (limits.max_connections() > 0) listener->max_connections = limits.max_connections();
    listener->request_headers_timeout = DurationOr(
        proto.timeouts().has_request_headers_timeout(), proto.timeouts().request_headers_timeout(),
        std::chrono::milliseconds(10000), path + ".timeouts.request_headers_timeout", errors);
    listener->idle_timeout =
        DurationOr(proto.timeouts().has_idle_timeout(), proto.timeouts().idle_timeout(),
                   std::chrono::milliseconds(60000), path + ".timeouts.idle_timeout", errors);
    listener->stream_idle_timeout = DurationOr(
        proto.timeouts().has_stream_idle_timeout(), proto.timeouts().stream_idle_timeout(),
        std::chrono::milliseconds(300000), path + ".timeouts.stream_idle_timeout", errors);
    listener->trust_forwarded_for = proto.proxy_headers().trust_forwarded_for();
    listener->trust_request_id = proto.proxy_headers().trust_request_id();
    if (proto.protocols_size() > 0) {
      listener->http1 = listener->http2 = false;
      for (int i = 0; i < proto.protocols_size(); ++i) {
        if (proto.protocols(i) == config::v1::AUTO) {
          AddError(errors, Cat(path, ".protocols[", i, "]"),
                   "auto is for clusters; a listener lists http1 and/or http2");
          continue;
        }
        bool& on = proto.protocols(i) == config::v1::HTTP2 ? listener->http2 : listener->http1;
        if (on) AddError(errors, Cat(path, ".protocols[", i, "]"), "listed twice");
        on = true;
      }
    }
    BuildHttp2Options(proto.http2(), path + ".http2", &listener->http2_options, errors);
    if (proto.has_tls()) {
      // Ticket keys outlive reloads (a reload must not end every client's
      // resumption) unless the rotation period changed.
      std::shared_ptr<tls::TicketKeys> keys;
      if (!proto.tls().disable_session_tickets()) {
        auto& slot = ticket_keys_[proto.name()];
        if (!slot || slot->rotation() != TicketRotation(proto.tls())) {
          slot = std::make_shared<tls::TicketKeys>(TicketRotation(proto.tls()));
        }
        keys = slot;
      }
      listener->tls = BuildListenerTls(proto.tls(), path + ".tls", secrets, listener->http1,
                                       listener->http2, proto.name(), std::move(keys), errors);
    }
    // A stream's queue toward the client is bounded like an HTTP/1 one.
    listener->http2_options.stream_buffer_limit = codec.buffer_limit;
    listener->http2_options.coalesce_writes = true;
    switch (proto.headers_with_underscores()) {
      case config::v1::Listener::ALLOW:
        listener->headers_with_underscores = UnderscoreHeaders::kAllow;
        break;
      case config::v1::Listener::REJECT:
        listener->headers_with_underscores = UnderscoreHeaders::kReject;
        break;
      default:
        listener->headers_with_underscores = UnderscoreHeaders::kDrop;
        break;
    }
    if (!proto.route_config().empty()) {
      AddError(errors, path + ".route_config",
               Cat("needs a control plane (the RouteConfiguration '", proto.route_config(),
                   "' comes from one)"));
    } else if (proto.routes_size() == 0 && proto.virtual_hosts_size() == 0) {
      AddError(errors, path, "needs routes or virtual_hosts");
    }
    listener->routes = router::RouteTable::Build(
        proto, path, cluster_names, errors,
        [this, &proto](const std::string& route) -> stats::RouteStats* {
          if (!open_files_) return nullptr;
          auto& slot = route_stats_[{proto.name(), route}];
          if (!slot) slot = std::make_unique<stats::RouteStats>(store_, proto.name(), route);
          return slot.get();
        },
        OverrideBuilder(proto));
    if (errors->size() != listener_errors || proto.name().empty()) continue;

    auto& ls = listener_stats_[proto.name()];
    if (!ls) ls = std::make_unique<stats::ListenerStats>(store_, proto.name());
    listener->stats = ls.get();
    auto& state = listener_states_[proto.name()];
    if (!state) state = std::make_shared<ListenerState>();
    listener->state = state;
    if (listener->tls) listener->tls_observer = ls->tls_observer;
    snapshot->listeners[proto.name()] = std::move(listener);
  }

  if (errors->size() != before) return nullptr;
  snapshot->version = next_version_++;
  snapshot->config_json = RedactedConfigJson(bootstrap);
  return snapshot;
}

}  // namespace portway::server
