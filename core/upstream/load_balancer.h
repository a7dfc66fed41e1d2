// Load balancers: which host of a cluster gets the next request.
//
// Thread safety: a LoadBalancerFactory is built once per host set on the main
// thread, where it does the expensive work (hash rings, Maglev tables), and is
// then shared read-only by every worker; Create() may be called from any
// thread at once. Each worker calls Create() for its own LoadBalancer, which
// keeps per-worker mutable state (round-robin position) and is not
// thread-safe. Host health is read on every pick, so a health change takes
// effect at the next pick without rebuilding anything; a change of the host
// set itself (hosts added or removed) needs a new factory.
//
//   // Main thread, when the cluster's host set changes:
//   std::shared_ptr<const LoadBalancerFactory> factory =
//       MakeLoadBalancerFactory(LbPolicy::kRingHash, hosts);
//   // Each worker, on receiving the new snapshot:
//   LoadBalancerPtr lb = factory->Create(worker_random);
//   // Per request:
//   LbContext context{.has_hash = true, .hash = HashKey(session_cookie)};
//   HostSharedPtr host = lb->ChooseHost(&context);
//   // On retry, prefer a host other than the one that failed:
//   HostSharedPtr next = lb->ChooseHost(&context, {host.get()});
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "core/upstream/host.h"
#include "portway/time_source.h"

namespace portway::stats {
struct ClusterStats;
}

namespace portway::upstream {

// Randomness is injected so that tests are deterministic: the SDK's
// generator interface. Not thread-safe: one per worker.
using Random = RandomGenerator;

// The core's generator (event::SeededRandom, xoshiro256**) seeded from
// std::random_device, so that workers and processes do not pick in lockstep.
std::unique_ptr<Random> MakeDefaultRandom();

enum class LbPolicy {
  kRoundRobin,    // smooth weighted round robin
  kLeastRequest,  // power of two choices on in-flight requests
  kRandom,        // weighted random
  kRingHash,      // ketama-style consistent hashing on LbContext::hash
  kMaglev,        // Maglev consistent hashing on LbContext::hash
};

struct LbContext {
  // Set by the router from the cluster's hash policy; the consistent hashing
  // balancers need it and fall back to a random host without it. Other
  // policies ignore it.
  bool has_hash = false;
  uint64_t hash = 0;
};

// Per-worker picker. Not thread-safe; one per worker per cluster snapshot.
// It keeps its factory's shared tables alive, but the Random passed to
// Create() must outlive it.
class LoadBalancer {
 public:
  virtual ~LoadBalancer() = default;
  // A usable host (HealthState::kHealthy), or nullptr when none is usable.
  // `context` may be null. `avoid` (usually empty) lists hosts to avoid when
  // another usable host exists, e.g. the hosts already tried by a retry; if
  // every usable host is in `avoid`, one of them is returned anyway. Hashing
  // balancers answer deterministically, so a given key and `avoid` always
  // land on the same host.
  virtual HostSharedPtr ChooseHost(const LbContext* context,
                                   const std::vector<const Host*>& avoid = {}) = 0;
};
using LoadBalancerPtr = std::unique_ptr<LoadBalancer>;

// Immutable once built; see the thread-safety note at the top.
class LoadBalancerFactory {
 public:
  virtual ~LoadBalancerFactory() = default;
  virtual LoadBalancerPtr Create(Random& random) const = 0;
};

// `hosts` may be empty (every pick then returns nullptr); null entries are
// dropped. The hashing policies order hosts by address string before building
// their tables, so equal host sets map every key to the same address whatever
// the vector order, in every process.
//
// With `health` (and a panic threshold in it), a picker checks it first: in
// panic (HostSetHealth::Panic) it picks among every host, health ignored
// (weighted at random; by hash over the hosts in address order when the
// context has a hash), `avoid` still honoured, and counts the pick in
// stats->lb_panic (stats may be null).
std::shared_ptr<const LoadBalancerFactory> MakeLoadBalancerFactory(
    LbPolicy policy, HostVector hosts, std::shared_ptr<const HostSetHealth> health = nullptr,
    stats::ClusterStats* stats = nullptr);

// The hash the router feeds into LbContext::hash. It is XXH64 with seed 0, so
// it is stable across processes, builds and machines (unlike std::hash), and
// matches other XXH64-based proxies given the same key.
uint64_t HashKey(std::string_view key);

}  // namespace portway::upstream
