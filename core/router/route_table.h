// The routing table of one listener: virtual hosts chosen by Host, routes
// matched in order by path, method and headers, each with one action
// (forward to a cluster, answer directly, or redirect).
//
// Thread safety: immutable once built; shared by every worker through the
// config snapshot.
//
//   auto table = RouteTable::Build(listener_proto, "listeners[0]", cluster_names, &errors);
//   const Route* route = table->Match(request_headers);
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "core/config/yaml_proto.h"
#include "portway/filter_factory.h"
#include "portway/headers.h"

namespace re2 {
class RE2;
}
namespace portway::stats {
struct RouteStats;
}  // namespace portway::stats
namespace portway::config::v1 {
class Listener;
class Route;
class HeaderMutation;
class FilterOverride;
}  // namespace portway::config::v1

namespace portway::router {

struct HeaderMutation {
  std::vector<std::pair<std::string, std::string>> add;
  std::vector<std::pair<std::string, std::string>> set;
  std::vector<std::string> remove;
  bool empty() const { return add.empty() && set.empty() && remove.empty(); }
  void Apply(http::HeaderMap& headers) const;
};

// A route's change to one filter of the listener's chain.
struct FilterOverride {
  std::string name;
  bool disabled = false;
  http::FilterFactoryCallback make;  // set when the route replaces the config
};

struct Route {
  enum class Action { kCluster, kDirectResponse, kRedirect };
  enum class PathMatch { kPrefix, kExact, kRegex };
  struct HeaderMatch {
    std::string name;  // lowercase
    std::string exact;
    std::shared_ptr<re2::RE2> regex;
    bool has_exact = false;
    bool invert = false;
  };

  Route();
  ~Route();
  Route(Route&&) noexcept;
  Route& operator=(Route&&) noexcept;

  // Path is without the query string.
  bool Matches(const http::HeaderMap& headers, std::string_view path) const;

  // The configured name, or "<virtual host>/<index>" when unnamed; the
  // label of the route's metrics.
  std::string name;
  stats::RouteStats* stats = nullptr;
  PathMatch path_match = PathMatch::kPrefix;
  std::string path_value;
  std::shared_ptr<re2::RE2> path_regex;
  std::vector<std::string> methods;
  std::vector<HeaderMatch> header_matches;

  Action action = Action::kCluster;
  std::string cluster;
  std::chrono::milliseconds timeout{15000};  // 0 = none
  bool has_prefix_rewrite = false;
  std::string prefix_rewrite;
  std::string host_rewrite;
  HeaderMutation request_headers;
  HeaderMutation response_headers;
  std::vector<FilterOverride> filter_overrides;
  const FilterOverride* FindOverride(std::string_view filter) const {
    for (const FilterOverride& o : filter_overrides) {
      if (o.name == filter) return &o;
    }
    return nullptr;
  }

  int direct_status = 200;
  std::string direct_body;
  std::string direct_content_type;

  std::string redirect_scheme;
  std::string redirect_host;
  std::string redirect_path;
  int redirect_status = 301;
};

// Finds the first matching route of a virtual host without trying every
// route: prefix routes sit in a byte trie of their prefixes, exact routes in
// a hash map of their paths, and only regex routes are tried one by one. A
// request's candidates are the routes whose path rule holds (those on the
// trie nodes its path walks through, those of its exact path, every regex
// route); the one with the lowest index that also matches method and
// headers is the one a scan in order would find. Cost per request: the
// path's length plus the candidates, whatever the number of routes.
class RouteIndex {
 public:
  void Build(const std::vector<Route>& routes);
  // The first route of `routes` (those Build() indexed) matching the
  // request, or null. `path` is without the query.
  const Route* Match(const std::vector<Route>& routes, const http::HeaderMap& headers,
                     std::string_view path) const;

 private:
  struct Node {
    std::vector<std::pair<char, uint32_t>> children;  // by byte, sorted
    std::vector<uint32_t> routes;                     // prefixes ending here
  };
  uint32_t Child(uint32_t node, char c) const;
  std::vector<Node> nodes_;  // nodes_[0] is the root (prefix "")
  absl::flat_hash_map<std::string, std::vector<uint32_t>> exact_;
  std::vector<uint32_t> regex_;
};

struct VirtualHost {
  std::string name;
  std::vector<Route> routes;
  // Built only for hosts with more routes than a scan in order handles as
  // fast (kIndexedRoutes); empty otherwise.
  std::unique_ptr<RouteIndex> index;
  static constexpr size_t kIndexedRoutes = 8;
};

class RouteTable {
 public:
  // Validates and builds. Every problem is appended to `errors` with its
  // path under `path` (e.g. "listeners[0]"); returns null if there was any.
  // `stats_for` (may be empty, e.g. in tests) gives each route its metrics
  // by route name.
  using RouteStatsFactory = std::function<stats::RouteStats*(const std::string& route)>;
  // Checks one route's filter override (at `path`) and fills `out`; false
  // (with errors appended) when it is wrong.
  using FilterOverrideBuilder =
      std::function<bool(const config::v1::FilterOverride& proto, const std::string& path,
                         FilterOverride* out, config::ConfigErrors* errors)>;
  static std::shared_ptr<const RouteTable> Build(const config::v1::Listener& listener,
                                                 const std::string& path,
                                                 const std::set<std::string>& clusters,
                                                 config::ConfigErrors* errors,
                                                 const RouteStatsFactory& stats_for = {},
                                                 const FilterOverrideBuilder& overrides = {});

  // The first matching route of the virtual host chosen by :authority, or
  // null (404 no_route).
  const Route* Match(const http::HeaderMap& headers) const;
  const std::vector<VirtualHost>& virtual_hosts() const { return virtual_hosts_; }

 private:
  const VirtualHost* SelectVirtualHost(std::string_view authority) const;

  std::vector<VirtualHost> virtual_hosts_;
  absl::flat_hash_map<std::string, size_t> exact_domains_;
  // Suffix wildcards ("*.example.com" stored as ".example.com"), longest
  // first so the most specific wins.
  std::vector<std::pair<std::string, size_t>> suffix_domains_;
  int default_host_ = -1;
};

// Appends errors for a header name that cannot be sent (empty, pseudo,
// non-token) under `path`.
void ValidateHeaderName(std::string_view name, const std::string& path,
                        config::ConfigErrors* errors);

}  // namespace portway::router
