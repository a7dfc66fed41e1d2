// Admin hooks for filters: what a filter knows about a cluster, shown on
// the admin /clusters page next to the core's own view, and admin paths of
// a filter's own (the cache's purge).
//
// Thread safety: RegisterClusterStatus() and RegisterAdminHandler() may be
// called from any thread (typically once, from a factory's Create()). The
// admin server calls providers and handlers on the main thread, one at a
// time; they must be safe to call while workers run (take the filter's own
// lock).
//
//   portway::RegisterClusterStatus("portway.circuit_breaker",
//       [](std::string_view cluster) { return BreakerJson(cluster); });
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace portway {

// Returns a JSON value describing `cluster`, or "" for nothing to say.
using ClusterStatusProvider = std::function<std::string(std::string_view cluster)>;

// Adds (or, for the same `source`, replaces) a provider; /clusters shows
// its answer under the cluster's "filters": {"<source>": ...}. Providers
// live for the whole process.
void RegisterClusterStatus(std::string_view source, ClusterStatusProvider provider);

// One request to a filter's admin path.
struct AdminRequest {
  std::string method;  // "GET", "POST", ...
  std::string path;    // without the query, e.g. "/cache/purge"
  std::string query;   // after '?', not decoded; see AdminQueryParam()
};

struct AdminResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
};

using AdminHandler = std::function<AdminResponse(const AdminRequest&)>;

// Serves every admin path equal to `prefix` or under `prefix` + "/" (e.g.
// "/cache") with `handler`, whatever the method; replaces a handler of the
// same prefix. The core's own paths cannot be taken. Handlers live for the
// whole process.
void RegisterAdminHandler(std::string_view prefix, AdminHandler handler);

// The percent-decoded value of `name` in a query string ("a=1&b=%2Fx"), or
// nullopt when absent.
std::optional<std::string> AdminQueryParam(std::string_view query, std::string_view name);

}  // namespace portway
