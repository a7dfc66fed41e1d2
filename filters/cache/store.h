// The cache's in-process store: stored responses under string keys, within
// a byte budget, evicted by S3-FIFO (Yang et al., "FIFO queues are all you
// need for cache eviction", SOSP'23).
//
// Why S3-FIFO and not LRU: most cached responses are asked for once. New
// objects enter a small FIFO (~10% of the bytes); only those asked for again
// before they reach its end move to the main FIFO (~90%), so a long scan of
// one-time URLs passes through the small queue without flushing the hot set.
// A ghost FIFO remembers (by hash only) keys recently dropped from the small
// queue; such a key, stored again, was evicted too early and goes straight
// to main. Hits only bump a 2-bit counter (no list moves), which keeps the
// lock held on the hit path short.
//
// The store is split into shards (up to 16, each with at least ~1 MiB of
// budget), each behind its own mutex and with max_bytes / shard_count() of
// the budget; a key's shard is picked by its hash. A shard never holds more
// than its budget, so the whole store never holds more than max_bytes().
// An object is charged value->Charge() + key.size().
//
// Thread safety: every method may be called from any thread; the store is
// shared by all workers. Values are immutable and shared: a Lookup's result
// stays valid after the entry is evicted or replaced.
//
// Example:
//   Store store({.max_bytes = 64 << 20, .max_object_bytes = 1 << 20});
//   store.Insert(key, std::move(response));
//   if (StoredResponsePtr hit = store.Lookup(key)) Serve(*hit);
//   // Revalidation: swap in the refreshed copy unless someone beat us to it.
//   store.ReplaceIf(key, hit.get(), std::move(refreshed));
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "filters/cache/entry.h"

namespace portway::cache {

struct StoreOptions {
  size_t max_bytes = 64 << 20;
  // Larger objects are not stored at all (Insert returns false).
  size_t max_object_bytes = 1 << 20;
};

struct StoreStats {
  size_t bytes = 0;               // charged bytes held now
  size_t entries = 0;             // objects held now
  uint64_t inserts = 0;           // values stored (new keys and replacements)
  uint64_t evictions = 0;         // objects dropped to make room or by Resize
  uint64_t rejected_too_big = 0;  // Insert/ReplaceIf refused for size
  // Removed by Erase/ErasePrefix, or superseded by a value too big to store.
  uint64_t erased = 0;
  uint64_t promoted = 0;          // moved from the small FIFO to main
  uint64_t ghost_admissions = 0;  // inserted straight into main (key was in ghost)
};

class Store {
 public:
  explicit Store(StoreOptions options);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // The value stored under `key`, or null. A hit counts towards keeping it.
  StoredResponsePtr Lookup(std::string_view key);

  // Stores `value` under `key`, replacing any value there, evicting others
  // as needed. False, and nothing stored, when `value` is null, its
  // Charge() exceeds max_object_bytes, or the object would not fit in its
  // shard's budget; a value already under `key` is then removed too (it has
  // been superseded, and serving it would be serving the older response).
  bool Insert(std::string key, StoredResponsePtr value);

  // As Insert, but only if the value now under `key` is `expected` (by
  // pointer); `expected` null means only if `key` is absent. Lets a
  // revalidation that raced with another store of the same key lose
  // instead of overwriting a newer response. False if it did not match or
  // the value was refused (see Insert).
  bool ReplaceIf(std::string key, const StoredResponse* expected, StoredResponsePtr value);

  // Removes `key`; false if it was absent.
  bool Erase(std::string_view key);
  // Removes every key starting with `prefix` (all of them for ""); returns
  // how many. Walks every entry of every shard: for purges, not hot paths.
  size_t ErasePrefix(std::string_view prefix);

  // Changes the budget (shard count stays), evicting down to it before it
  // returns. While it runs, shards not yet visited keep their old budget.
  void Resize(size_t max_bytes);

  // A sum over the shards, each read under its lock (not one snapshot).
  StoreStats Stats() const;
  // What the store holds now and has evicted so far, without taking any
  // lock (relaxed atomics the shards keep current): for gauges updated on
  // every store.
  struct Totals {
    size_t bytes = 0;
    size_t entries = 0;
    uint64_t evictions = 0;
  };
  Totals totals() const {
    return {totals_.bytes.load(std::memory_order_relaxed),
            totals_.entries.load(std::memory_order_relaxed),
            totals_.evictions.load(std::memory_order_relaxed)};
  }
  // Up to `limit` keys starting with `prefix`, in no particular order.
  std::vector<std::string> Keys(std::string_view prefix, size_t limit) const;

  size_t shard_count() const { return shards_.size(); }
  size_t max_bytes() const { return max_bytes_.load(std::memory_order_relaxed); }

 private:
  class Shard;
  struct AtomicTotals {
    std::atomic<size_t> bytes{0};
    std::atomic<size_t> entries{0};
    std::atomic<uint64_t> evictions{0};
  };

  bool Put(std::string key, StoredResponsePtr value, bool conditional,
           const StoredResponse* expected);
  Shard& ShardFor(uint64_t hash) const;

  AtomicTotals totals_;  // the shards' bytes_, entry and eviction counts, summed
  const size_t max_object_bytes_;
  int shard_shift_ = 0;  // the hash's top bits pick the shard
  std::vector<std::unique_ptr<Shard>> shards_;
  std::atomic<size_t> max_bytes_;
  std::mutex resize_mu_;  // one Resize at a time, so shards agree at its end
};

}  // namespace portway::cache
