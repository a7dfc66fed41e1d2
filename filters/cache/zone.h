// A cache zone: one named store shared by every filter config that names
// it, in every worker, across reloads; with its optional Redis tier, its
// stats, and the table of fetches in flight that coalesces requests for
// the same key.
//
// Thread safety: everything here may be called from any worker at once.
// The store locks per shard; the Redis tier and the in-flight table have a
// mutex each, held only to swap a pointer or edit a small vector.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "filters/cache/entry.h"
#include "filters/cache/redis_tier.h"
#include "filters/cache/store.h"
#include "portway/filter.h"
#include "portway/stats.h"

namespace portway::filters::cache {

using portway::cache::StoredResponse;
using portway::cache::StoredResponsePtr;

class Zone {
 public:
  Zone(std::string name, size_t max_bytes);

  const std::string& name() const { return name_; }
  portway::cache::Store& store() { return store_; }

  // The Redis tier, or null. A config with other Redis settings replaces
  // it; streams that hold the old one finish with it.
  std::shared_ptr<portway::cache::RedisTier> redis() const;
  absl::Status SetRedis(const portway::cache::RedisTierOptions& options);
  // Applies what a config sets of the zone, when the config goes live:
  // its size, its Redis tier (null: the config says nothing, the zone
  // keeps what it has). A tier that cannot be made is logged, and the zone
  // goes on without a new one.
  void Configure(std::optional<size_t> max_bytes, const portway::cache::RedisTierOptions* redis);

  // Stores `value` under `key` and keeps the gauges and eviction count
  // current.
  bool Insert(const std::string& key, StoredResponsePtr value);
  size_t Purge(std::string_view key, bool prefix);

  // Coalescing. The first stream to miss a key leads: it fetches, and
  // calls Release() once it stored the response or knows it will not.
  // Later streams join as waiters: `wake` is posted to their worker on
  // Release (they look again, and go upstream if there is still nothing).
  enum class Join { kLeader, kWaiter, kFull };
  Join JoinFetch(const std::string& key, std::shared_ptr<http::WorkerPoster> worker,
                 std::function<void()> wake, uint32_t max_waiters);
  void Release(const std::string& key);

  // {"name":...,"bytes":...} for the admin page.
  std::string Json() const;

  struct Counters {
    Counter* hits;
    Counter* misses;
    Counter* revalidated;
    Counter* bypass;
    Counter* coalesced;
    Counter* stores;
    Counter* evictions;
    Counter* redis_hits;
    Counter* redis_misses;
    Counter* redis_errors;
    Gauge* bytes;
    Gauge* entries;
  };
  const Counters& counters() const { return counters_; }
  // portway_cache_stale_total{zone, cause}.
  Counter& StaleCounter(std::string_view cause);

 private:
  // Sets the size gauges and counts new evictions, from the store's
  // lock-free totals.
  void Publish();

  struct Waiter {
    std::shared_ptr<http::WorkerPoster> worker;
    std::function<void()> wake;
  };

  const std::string name_;
  portway::cache::Store store_;
  Counters counters_;
  std::atomic<uint64_t> evictions_seen_{0};

  mutable std::mutex redis_mutex_;
  std::shared_ptr<portway::cache::RedisTier> redis_;
  std::string redis_identity_;  // the options it was made with

  std::mutex fetch_mutex_;
  absl::flat_hash_map<std::string, std::vector<Waiter>> fetches_;
};

// The zone of that name, made on first use (64 MiB until Configure()).
// Zones live for the process.
std::shared_ptr<Zone> GetZone(const std::string& name);

// Every zone, for the admin page and purge.
std::vector<std::shared_ptr<Zone>> AllZones();

// Serves /cache on the admin port (once per process).
void RegisterCacheAdmin();

}  // namespace portway::filters::cache
