#include "core/router/route_table.h"

#include "core/common/strings.h"

#include <algorithm>

#include "portway/config/v1/listener.pb.h"
#include "portway/config/v1/route.pb.h"
#include "re2/re2.h"

namespace portway::router {
namespace {

bool IsTchar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

void AddError(config::ConfigErrors* errors, std::string path, std::string message) {
  errors->push_back({std::move(path), std::move(message)});
}

std::shared_ptr<re2::RE2> CompileRegex(const std::string& pattern, const std::string& path,
                                       config::ConfigErrors* errors) {
  re2::RE2::Options options;
  options.set_log_errors(false);
  auto re = std::make_shared<re2::RE2>(pattern, options);
  if (!re->ok()) {
    AddError(errors, path, Cat("invalid regex '", pattern, "': ", re->error()));
    return nullptr;
  }
  return re;
}

bool ValidHeaderValue(std::string_view value) {
  for (unsigned char c : value) {
    if ((c < 0x20 && c != '\t') || c == 0x7f) return false;
  }
  return true;
}

// Fields that describe the message or the connection rather than its
// content: a mutation of them would corrupt framing or routing.
void RejectReservedName(std::string_view name, const std::string& path,
                        config::ConfigErrors* errors) {
  std::string lower = ToLower(name);
  if (lower == "host") {
    AddError(errors, path, "use host_rewrite to change the Host header");
  } else if (lower == "content-length" || lower == "transfer-encoding" || lower == "connection" ||
             lower == "keep-alive" || lower == "te" || lower == "upgrade" ||
             lower == "proxy-connection" || lower == "trailer") {
    AddError(errors, path, Cat("'", name, "' is managed by Portway and cannot be changed"));
  }
}

HeaderMutation BuildMutation(const config::v1::HeaderMutation& proto, const std::string& path,
                             config::ConfigErrors* errors) {
  HeaderMutation m;
  auto convert = [&](const auto& list, const char* field, auto& out) {
    for (int i = 0; i < list.size(); ++i) {
      std::string p = Cat(path, ".", field, "[", i, "]");
      ValidateHeaderName(list[i].name(), p + ".name", errors);
      RejectReservedName(list[i].name(), p + ".name", errors);
      if (!ValidHeaderValue(list[i].value())) {
        AddError(errors, p + ".value", "header values may not contain control characters");
      }
      out.emplace_back(ToLower(list[i].name()), list[i].value());
    }
  };
  convert(proto.add(), "add", m.add);
  convert(proto.set(), "set", m.set);
  for (int i = 0; i < proto.remove_size(); ++i) {
    ValidateHeaderName(proto.remove(i), Cat(path, ".remove[", i, "]"), errors);
    RejectReservedName(proto.remove(i), Cat(path, ".remove[", i, "]"), errors);
    m.remove.push_back(ToLower(proto.remove(i)));
  }
  return m;
}

bool BuildRoute(const config::v1::Route& proto, const std::string& path,
                const std::set<std::string>& clusters, Route* route, config::ConfigErrors* errors,
                const RouteTable::FilterOverrideBuilder& overrides) {
  size_t before = errors->size();
  route->name = proto.name();
  const auto& match = proto.match();
  int kinds = !match.prefix().empty() + !match.path().empty() + !match.regex().empty();
  if (kinds != 1) {
    AddError(errors, path + ".match",
             kinds == 0 ? "needs one of prefix, path or regex (e.g. prefix: /)"
                        : "takes only one of prefix, path or regex");
  }
  if (!match.prefix().empty()) {
    route->path_match = Route::PathMatch::kPrefix;
    route->path_value = match.prefix();
    if (match.prefix()[0] != '/') AddError(errors, path + ".match.prefix", "must start with '/'");
  } else if (!match.path().empty()) {
    route->path_match = Route::PathMatch::kExact;
    route->path_value = match.path();
    if (match.path()[0] != '/') AddError(errors, path + ".match.path", "must start with '/'");
  } else if (!match.regex().empty()) {
    route->path_match = Route::PathMatch::kRegex;
    route->path_regex = CompileRegex(match.regex(), path + ".match.regex", errors);
  }
  for (int i = 0; i < match.methods_size(); ++i) {
    const std::string& m = match.methods(i);
    if (m.empty() || !std::all_of(m.begin(), m.end(), IsTchar)) {
      AddError(errors, Cat(path, ".match.methods[", i, "]"),
               Cat("'", m, "' is not an HTTP method"));
    }
    route->methods.push_back(ToUpper(m));
  }
  for (int i = 0; i < match.headers_size(); ++i) {
    const auto& h = match.headers(i);
    std::string p = Cat(path, ".match.headers[", i, "]");
    ValidateHeaderName(h.name(), p + ".name", errors);
    Route::HeaderMatch hm;
    hm.name = ToLower(h.name());
    // The Host header travels as :authority.
    if (hm.name == "host") hm.name = std::string(http::headers::kAuthority);
    hm.invert = h.invert();
    if (!h.exact().empty() && !h.regex().empty()) {
      AddError(errors, p, "takes only one of exact or regex");
    }
    if (!h.exact().empty()) {
      hm.has_exact = true;
      hm.exact = h.exact();
    }
    if (!h.regex().empty()) hm.regex = CompileRegex(h.regex(), p + ".regex", errors);
    route->header_matches.push_back(std::move(hm));
  }

  int actions = !proto.cluster().empty() + proto.has_direct_response() + proto.has_redirect();
  if (actions != 1) {
    AddError(errors, path,
             actions == 0 ? "needs an action: cluster, direct_response or redirect"
                          : "takes only one of cluster, direct_response or redirect");
  }
  if (!proto.cluster().empty()) {
    route->action = Route::Action::kCluster;
    route->cluster = proto.cluster();
    if (clusters.count(proto.cluster()) == 0) {
      AddError(errors, path + ".cluster",
               Cat("unknown cluster '", proto.cluster(), "' (define it under clusters)"));
    }
  } else if (proto.has_direct_response()) {
    route->action = Route::Action::kDirectResponse;
    const auto& d = proto.direct_response();
    route->direct_status = static_cast<int>(d.status());
    if (d.status() < 200 || d.status() > 599) {
      AddError(errors, path + ".direct_response.status", "must be between 200 and 599");
    }
    route->direct_body = d.body();
    route->direct_content_type = d.content_type().empty() ? "text/plain" : d.content_type();
  } else if (proto.has_redirect()) {
    route->action = Route::Action::kRedirect;
    const auto& r = proto.redirect();
    route->redirect_scheme = r.scheme();
    route->redirect_host = r.host();
    route->redirect_path = r.path();
    route->redirect_status = r.status() == 0 ? 301 : static_cast<int>(r.status());
    static constexpr int kRedirects[] = {301, 302, 303, 307, 308};
    if (std::find(std::begin(kRedirects), std::end(kRedirects), route->redirect_status) ==
        std::end(kRedirects)) {
      AddError(errors, path + ".redirect.status", "must be 301, 302, 303, 307 or 308");
    }
    if (!r.scheme().empty() && r.scheme() != "http" && r.scheme() != "https") {
      AddError(errors, path + ".redirect.scheme", "must be http or https");
    }
    if (!r.path().empty() && r.path()[0] != '/') {
      AddError(errors, path + ".redirect.path", "must start with '/'");
    }
  }
  if (proto.has_timeout()) {
    if (proto.timeout().seconds() < 0 || proto.timeout().nanos() < 0) {
      AddError(errors, path + ".timeout", "must not be negative");
    }
    route->timeout = std::chrono::milliseconds(proto.timeout().seconds() * 1000 +
                                               proto.timeout().nanos() / 1000000);
  }
  if (!proto.prefix_rewrite().empty()) {
    route->has_prefix_rewrite = true;
    route->prefix_rewrite = proto.prefix_rewrite();
    if (route->path_match != Route::PathMatch::kPrefix) {
      AddError(errors, path + ".prefix_rewrite", "needs match.prefix");
    }
  }
  route->host_rewrite = proto.host_rewrite();
  for (int i = 0; i < proto.filters_size(); ++i) {
    std::string fpath = Cat(path, ".filters[", i, "]");
    FilterOverride o;
    if (!overrides) {
      AddError(errors, fpath, "filter overrides are not supported here");
    } else if (overrides(proto.filters(i), fpath, &o, errors)) {
      route->filter_overrides.push_back(std::move(o));
    }
  }
  route->request_headers =
      BuildMutation(proto.request_headers(), path + ".request_headers", errors);
  route->response_headers =
      BuildMutation(proto.response_headers(), path + ".response_headers", errors);
  return errors->size() == before;
}

std::string_view StripPort(std::string_view authority) {
  if (!authority.empty() && authority.front() == '[') {
    size_t close = authority.find(']');
    return close == std::string_view::npos ? authority : authority.substr(0, close + 1);
  }
  size_t colon = authority.rfind(':');
  return colon == std::string_view::npos ? authority : authority.substr(0, colon);
}

}  // namespace

Route::Route() = default;
Route::~Route() = default;
Route::Route(Route&&) noexcept = default;
Route& Route::operator=(Route&&) noexcept = default;

void ValidateHeaderName(std::string_view name, const std::string& path,
                        config::ConfigErrors* errors) {
  if (name.empty()) {
    AddError(errors, path, "header name is empty");
  } else if (name[0] == ':') {
    AddError(errors, path, "pseudo-headers cannot be changed here");
  } else if (!std::all_of(name.begin(), name.end(), IsTchar)) {
    AddError(errors, path, Cat("'", name, "' is not a valid header name"));
  }
}

void HeaderMutation::Apply(http::HeaderMap& headers) const {
  for (const std::string& name : remove) headers.Remove(name);
  for (const auto& [name, value] : set) headers.Set(name, value);
  for (const auto& [name, value] : add) headers.AddLower(name, value);
}

bool Route::Matches(const http::HeaderMap& headers, std::string_view path) const {
  switch (path_match) {
    case PathMatch::kPrefix:
      if (!StartsWith(path, path_value)) return false;
      break;
    case PathMatch::kExact:
      if (path != path_value) return false;
      break;
    case PathMatch::kRegex:
      if (!re2::RE2::FullMatch(re2::StringPiece(path.data(), path.size()), *path_regex)) {
        return false;
      }
      break;
  }
  if (!methods.empty()) {
    std::string_view method = headers.Method();
    if (std::find(methods.begin(), methods.end(), method) == methods.end()) return false;
  }
  for (const HeaderMatch& hm : header_matches) {
    const std::string_view* value = headers.Get(hm.name);
    bool matched;
    if (value == nullptr) {
      matched = false;
    } else if (hm.has_exact) {
      matched = *value == hm.exact;
    } else if (hm.regex) {
      matched = re2::RE2::FullMatch(*value, *hm.regex);
    } else {
      matched = true;
    }
    if (matched == hm.invert) return false;
  }
  return true;
}

std::shared_ptr<const RouteTable> RouteTable::Build(const config::v1::Listener& listener,
                                                    const std::string& path,
                                                    const std::set<std::string>& clusters,
                                                    config::ConfigErrors* errors,
                                                    const RouteStatsFactory& stats_for,
                                                    const FilterOverrideBuilder& overrides) {
  size_t before = errors->size();
  auto table = std::shared_ptr<RouteTable>(new RouteTable());
  if (listener.routes_size() > 0) {
    VirtualHost vh;
    vh.name = "default";
    for (int i = 0; i < listener.routes_size(); ++i) {
      Route route;
      BuildRoute(listener.routes(i), Cat(path, ".routes[", i, "]"), clusters, &route, errors,
                 overrides);
      vh.routes.push_back(std::move(route));
    }
    table->virtual_hosts_.push_back(std::move(vh));
    table->default_host_ = 0;
  }
  std::set<std::string> seen_domains;
  for (int v = 0; v < listener.virtual_hosts_size(); ++v) {
    const auto& proto = listener.virtual_hosts(v);
    std::string vpath = Cat(path, ".virtual_hosts[", v, "]");
    size_t index = table->virtual_hosts_.size();
    VirtualHost vh;
    vh.name = proto.name().empty() ? Cat("vhost_", v) : proto.name();
    if (proto.domains_size() == 0) {
      AddError(errors, vpath + ".domains", "needs at least one domain (\"*\" matches any Host)");
    }
    for (int d = 0; d < proto.domains_size(); ++d) {
      std::string domain = ToLower(proto.domains(d));
      std::string dpath = Cat(vpath, ".domains[", d, "]");
      // Ports are ignored when matching, so "a.com" and "a.com:8080" clash.
      if (!seen_domains.insert(std::string(StripPort(domain))).second) {
        AddError(errors, dpath,
                 Cat("domain '", domain, "' is served by two virtual hosts (ports are ignored)"));
        continue;
      }
      if (domain == "*") {
        if (table->default_host_ >= 0) {
          AddError(errors, dpath,
                   "a listener has one default virtual host ('*' or top-level routes)");
        }
        table->default_host_ = static_cast<int>(index);
      } else if (StartsWith(domain, "*.")) {
        table->suffix_domains_.emplace_back(domain.substr(1), index);
      } else if (domain.empty() || domain.find('*') != std::string::npos ||
                 domain.find_first_of(" /\t") != std::string::npos) {
        AddError(errors, dpath, Cat("'", domain, "' is not a host name, '*.suffix' or '*'"));
      } else {
        table->exact_domains_[std::string(StripPort(domain))] = index;
      }
    }
    for (int i = 0; i < proto.routes_size(); ++i) {
      Route route;
      BuildRoute(proto.routes(i), Cat(vpath, ".routes[", i, "]"), clusters, &route, errors,
                 overrides);
      vh.routes.push_back(std::move(route));
    }
    table->virtual_hosts_.push_back(std::move(vh));
  }
  std::sort(table->suffix_domains_.begin(), table->suffix_domains_.end(),
            [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
  if (errors->size() != before) return nullptr;
  for (VirtualHost& vh : table->virtual_hosts_) {
    for (size_t i = 0; i < vh.routes.size(); ++i) {
      Route& route = vh.routes[i];
      if (route.name.empty()) route.name = Cat(vh.name, "/", i);
      if (stats_for) route.stats = stats_for(route.name);
    }
    if (vh.routes.size() > VirtualHost::kIndexedRoutes) {
      vh.index = std::make_unique<RouteIndex>();
      vh.index->Build(vh.routes);
    }
  }
  return table;
}

const VirtualHost* RouteTable::SelectVirtualHost(std::string_view authority) const {
  if (!exact_domains_.empty() || !suffix_domains_.empty()) {
    std::string host = ToLower(StripPort(authority));
    auto it = exact_domains_.find(host);
    if (it != exact_domains_.end()) return &virtual_hosts_[it->second];
    for (const auto& [suffix, index] : suffix_domains_) {
      if (host.size() > suffix.size() && EndsWith(host, suffix)) {
        return &virtual_hosts_[index];
      }
    }
  }
  return default_host_ >= 0 ? &virtual_hosts_[default_host_] : nullptr;
}

const Route* RouteTable::Match(const http::HeaderMap& headers) const {
  const VirtualHost* vh = SelectVirtualHost(headers.Authority());
  if (vh == nullptr) return nullptr;
  std::string_view path = headers.Path();
  size_t query = path.find('?');
  if (query != std::string_view::npos) path = path.substr(0, query);
  if (vh->index == nullptr) {
    for (const Route& route : vh->routes) {
      if (route.Matches(headers, path)) return &route;
    }
    return nullptr;
  }
  return vh->index->Match(vh->routes, headers, path);
}

// ------------------------------------------------------------ route index

void RouteIndex::Build(const std::vector<Route>& routes) {
  nodes_.assign(1, Node{});
  for (uint32_t i = 0; i < routes.size(); ++i) {
    const Route& route = routes[i];
    switch (route.path_match) {
      case Route::PathMatch::kPrefix: {
        uint32_t node = 0;
        for (char c : route.path_value) {
          uint32_t next = Child(node, c);
          if (next == 0) {
            next = static_cast<uint32_t>(nodes_.size());
            auto& children = nodes_[node].children;
            auto at = std::lower_bound(children.begin(), children.end(), c,
                                       [](const auto& child, char b) { return child.first < b; });
            children.insert(at, {c, next});
            nodes_.emplace_back();  // may move nodes_: `children` is not used past here
          }
          node = next;
        }
        nodes_[node].routes.push_back(i);
        break;
      }
      case Route::PathMatch::kExact:
        exact_[route.path_value].push_back(i);
        break;
      case Route::PathMatch::kRegex:
        regex_.push_back(i);
        break;
    }
  }
}

// The child of `node` by byte `c`, or 0 (the root is nobody's child).
uint32_t RouteIndex::Child(uint32_t node, char c) const {
  const auto& children = nodes_[node].children;
  auto at = std::lower_bound(children.begin(), children.end(), c,
                             [](const auto& child, char b) { return child.first < b; });
  return at != children.end() && at->first == c ? at->second : 0;
}

const Route* RouteIndex::Match(const std::vector<Route>& routes, const http::HeaderMap& headers,
                               std::string_view path) const {
  // The first route in configuration order is the matching one with the
  // lowest index. Each candidate list is ascending, so a list is tried only
  // up to its first match or the best index found so far.
  size_t best = routes.size();
  const auto take = [&](const std::vector<uint32_t>& candidates) {
    for (uint32_t i : candidates) {
      if (i >= best) return;
      if (routes[i].Matches(headers, path)) {
        best = i;
        return;
      }
    }
  };
  uint32_t node = 0;
  for (size_t depth = 0;; ++depth) {
    take(nodes_[node].routes);
    if (depth == path.size()) break;
    node = Child(node, path[depth]);
    if (node == 0) break;
  }
  if (!exact_.empty()) {
    auto it = exact_.find(absl::string_view(path.data(), path.size()));
    if (it != exact_.end()) take(it->second);
  }
  take(regex_);
  return best < routes.size() ? &routes[best] : nullptr;
}

}  // namespace portway::router
