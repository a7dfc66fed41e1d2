// Admin hooks for filters: what a filter knows about a cluster, shown on
// the admin /clusters page next to the core's own view.
//
// Thread safety: RegisterClusterStatus() may be called from any thread
// (typically once, from a factory's Create()). The admin page calls the
// providers on the main thread, one at a time; a provider must be safe to
// call while workers run (take the filter's own lock).
//
//   portway::RegisterClusterStatus("portway.circuit_breaker",
//       [](std::string_view cluster) { return BreakerJson(cluster); });
#pragma once

#include <functional>
#include <string>
#include <string_view>

namespace portway {

// Returns a JSON value describing `cluster`, or "" for nothing to say.
using ClusterStatusProvider = std::function<std::string(std::string_view cluster)>;

// Adds (or, for the same `source`, replaces) a provider; /clusters shows
// its answer under the cluster's "filters": {"<source>": ...}. Providers
// live for the whole process.
void RegisterClusterStatus(std::string_view source, ClusterStatusProvider provider);

}  // namespace portway
