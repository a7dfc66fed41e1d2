// The cache's in-process store: S3-FIFO eviction, the byte bound, the
// conditional replace used by revalidation, and sharing between threads.
#include "filters/cache/store.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <random>
#include <set>
#include <thread>

#include "gtest/gtest.h"

namespace portway::cache {
namespace {

constexpr size_t kMiB = size_t{1} << 20;

StoredResponsePtr Response(size_t body_bytes, char fill = 'x') {
  auto response = std::make_shared<StoredResponse>();
  response->body.assign(body_bytes, fill);
  response->headers = {{"content-type", "text/plain"}};
  return response;
}

size_t ChargeOf(const std::string& key, const StoredResponsePtr& value) {
  return value->Charge() + key.size();
}

// What the store holds, recomputed from its keys; checks Stats() against it.
// (Lookup bumps frequencies, so only call this where that does not matter.)
void ExpectConsistent(Store& store) {
  std::vector<std::string> keys = store.Keys("", SIZE_MAX);
  size_t bytes = 0;
  for (const std::string& key : keys) {
    StoredResponsePtr value = store.Lookup(key);
    ASSERT_NE(value, nullptr) << key;
    bytes += ChargeOf(key, value);
  }
  StoreStats stats = store.Stats();
  EXPECT_EQ(stats.entries, keys.size());
  EXPECT_EQ(stats.bytes, bytes);
  EXPECT_LE(stats.bytes, store.max_bytes());
}

TEST(CacheStoreTest, MissThenHit) {
  Store store({.max_bytes = kMiB, .max_object_bytes = kMiB});
  EXPECT_EQ(store.Lookup("k"), nullptr);
  StoredResponsePtr value = Response(100);
  EXPECT_TRUE(store.Insert("k", value));
  EXPECT_EQ(store.Lookup("k"), value);
  EXPECT_EQ(store.Lookup("other"), nullptr);
  StoreStats stats = store.Stats();
  EXPECT_EQ(stats.entries, 1u);
  EXPECT_EQ(stats.bytes, value->Charge() + 1);
  EXPECT_EQ(stats.inserts, 1u);
}

TEST(CacheStoreTest, ReplaceUpdatesValueAndBytes) {
  Store store({.max_bytes = kMiB, .max_object_bytes = kMiB});
  ASSERT_TRUE(store.Insert("key", Response(100)));
  StoredResponsePtr bigger = Response(5000);
  ASSERT_TRUE(store.Insert("key", bigger));
  EXPECT_EQ(store.Lookup("key"), bigger);
  EXPECT_EQ(store.Stats().entries, 1u);
  EXPECT_EQ(store.Stats().bytes, ChargeOf("key", bigger));
  StoredResponsePtr smaller = Response(10);
  ASSERT_TRUE(store.Insert("key", smaller));
  EXPECT_EQ(store.Stats().bytes, ChargeOf("key", smaller));
  EXPECT_EQ(store.Stats().inserts, 3u);
}

TEST(CacheStoreTest, RejectsObjectsTooBigForTheLimitOrTheShard) {
  Store store({.max_bytes = 64 * 1024, .max_object_bytes = 10000});
  EXPECT_FALSE(store.Insert("big", Response(20000)));
  EXPECT_EQ(store.Lookup("big"), nullptr);
  EXPECT_FALSE(store.Insert("null", nullptr));

  // Under max_object_bytes but over the (single) shard's budget.
  Store tiny({.max_bytes = 4096, .max_object_bytes = kMiB});
  EXPECT_FALSE(tiny.Insert("k", Response(8000)));
  EXPECT_EQ(tiny.Stats().rejected_too_big, 1u);
  EXPECT_EQ(tiny.Stats().bytes, 0u);

  EXPECT_EQ(store.Stats().rejected_too_big, 2u);
  EXPECT_EQ(store.Stats().entries, 0u);
  EXPECT_EQ(store.Stats().bytes, 0u);
}

TEST(CacheStoreTest, TooBigReplacementRemovesTheOlderValue) {
  Store store({.max_bytes = kMiB, .max_object_bytes = 10000});
  ASSERT_TRUE(store.Insert("k", Response(100)));
  EXPECT_FALSE(store.Insert("k", Response(20000)));
  EXPECT_EQ(store.Lookup("k"), nullptr);
  EXPECT_EQ(store.Stats().bytes, 0u);
  EXPECT_EQ(store.Stats().erased, 1u);
}

TEST(CacheStoreTest, ShardCountGivesEachShardAtLeastOneMiB) {
  EXPECT_EQ(Store({.max_bytes = 0}).shard_count(), 1u);
  EXPECT_EQ(Store({.max_bytes = kMiB}).shard_count(), 1u);
  EXPECT_EQ(Store({.max_bytes = 2 * kMiB - 1}).shard_count(), 1u);
  EXPECT_EQ(Store({.max_bytes = 2 * kMiB}).shard_count(), 2u);
  EXPECT_EQ(Store({.max_bytes = 5 * kMiB}).shard_count(), 4u);
  EXPECT_EQ(Store({.max_bytes = 1024 * kMiB}).shard_count(), 16u);
}

TEST(CacheStoreTest, ByteBoundHoldsUnderRandomOperations) {
  for (size_t max_bytes : {size_t{200 * 1024}, 4 * kMiB}) {
    Store store({.max_bytes = max_bytes, .max_object_bytes = 300 * 1024});
    std::mt19937 rng(42);
    std::vector<StoredResponsePtr> seen;
    for (int i = 0; i < 10000; ++i) {
      std::string key = "k" + std::to_string(rng() % 3000);
      switch (rng() % 10) {
        case 0:
          store.Erase(key);
          break;
        case 1: {
          StoredResponsePtr current = store.Lookup(key);
          store.ReplaceIf(key, current.get(), Response(rng() % 50000));
          break;
        }
        case 2:
          store.Lookup(key);
          break;
        case 3:
          if (rng() % 50 == 0) store.Resize(max_bytes / (1 + rng() % 4));
          break;
        default:
          store.Insert(key, Response(rng() % 40 == 0 ? 310000 : rng() % 30000));
      }
      ASSERT_LE(store.Stats().bytes, store.max_bytes()) << "after op " << i;
      // The lock-free totals the gauges read agree with the shards.
      const StoreStats stats = store.Stats();
      const Store::Totals totals = store.totals();
      ASSERT_EQ(totals.bytes, stats.bytes) << "after op " << i;
      ASSERT_EQ(totals.entries, stats.entries) << "after op " << i;
      ASSERT_EQ(totals.evictions, stats.evictions) << "after op " << i;
      if (i % 1000 == 999) ExpectConsistent(store);
    }
    StoreStats stats = store.Stats();
    EXPECT_GT(stats.evictions, 100u);
    EXPECT_GT(stats.rejected_too_big, 0u);
  }
}

// Fills a one-shard store with objects of `body` bytes, so the test can
// count in objects.
class CacheStoreEvictionTest : public testing::Test {
 protected:
  static constexpr size_t kBody = 4000;
  Store store{{.max_bytes = kMiB, .max_object_bytes = kMiB}};
  size_t capacity = kMiB / ChargeOf("key-000000", Response(kBody));

  void Put(const std::string& key) { ASSERT_TRUE(store.Insert(key, Response(kBody))); }
  static std::string Key(const char* kind, int i) {
    char buf[32];
    snprintf(buf, sizeof buf, "%s-%06d", kind, i);
    return buf;
  }
  bool Present(const std::string& key) {
    std::vector<std::string> keys = store.Keys(key, 1);
    return !keys.empty() && keys[0] == key;
  }
};

TEST_F(CacheStoreEvictionTest, OneHitWondersGoBeforeReaccessedEntries) {
  ASSERT_EQ(store.shard_count(), 1u);
  int n = static_cast<int>(capacity);
  for (int i = 0; i < n; ++i) Put(Key("key", i));
  ASSERT_EQ(store.Stats().evictions, 0u);
  for (int i = 0; i < n; i += 2) ASSERT_NE(store.Lookup(Key("key", i)), nullptr);
  for (int i = 0; i < n / 4; ++i) Put(Key("new", i));

  StoreStats stats = store.Stats();
  EXPECT_GE(stats.evictions, static_cast<uint64_t>(n / 4));
  EXPECT_GT(stats.promoted, 0u);
  int evicted = 0;
  for (int i = 0; i < n; ++i) {
    if (i % 2 == 0) {
      EXPECT_TRUE(Present(Key("key", i))) << "reaccessed entry " << i << " was evicted";
    } else if (!Present(Key("key", i))) {
      ++evicted;
    }
  }
  EXPECT_EQ(evicted, static_cast<int>(stats.evictions));
}

TEST_F(CacheStoreEvictionTest, HotSetSurvivesALongScan) {
  // A hot set of a fifth of the cache, used twice, and as many cold keys
  // stored at the same time and never used again.
  int hot = static_cast<int>(capacity / 5);
  for (int i = 0; i < hot; ++i) {
    Put(Key("hot", i));
    Put(Key("cold", i));
  }
  for (int round = 0; round < 2; ++round) {
    for (int i = 0; i < hot; ++i) ASSERT_NE(store.Lookup(Key("hot", i)), nullptr);
  }
  // A scan of twenty cache-fulls of one-time keys.
  for (int i = 0; i < static_cast<int>(capacity) * 20; ++i) Put(Key("scan", i));

  for (int i = 0; i < hot; ++i) {
    EXPECT_NE(store.Lookup(Key("hot", i)), nullptr) << i;
    EXPECT_FALSE(Present(Key("cold", i))) << i;
  }
  EXPECT_LE(store.Stats().bytes, store.max_bytes());
}

TEST_F(CacheStoreEvictionTest, KeyStoredAgainSoonAfterEvictionGoesToMain) {
  Put("victim");
  int i = 0;
  while (store.Stats().evictions == 0) Put(Key("fill", i++));
  ASSERT_FALSE(Present("victim"));  // the oldest, never used: first out

  Put("victim");
  Put("fresh");
  EXPECT_EQ(store.Stats().ghost_admissions, 1u);
  // Main is left alone while the small queue is over its share, so a scan
  // drops "fresh" (small) but not "victim" (main), though neither is used.
  for (int j = 0; j < static_cast<int>(capacity) * 3; ++j) Put(Key("scan", j));
  EXPECT_TRUE(Present("victim"));
  EXPECT_FALSE(Present("fresh"));
  EXPECT_EQ(store.Stats().ghost_admissions, 1u);
}

TEST_F(CacheStoreEvictionTest, MainGivesEntriesHitThereAnotherPass) {
  // A cache-full of keys used once more, so they are promoted to main as
  // new keys push them out of the small queue; main then spends their hit.
  int n = static_cast<int>(capacity);
  for (int i = 0; i < n; ++i) {
    Put(Key("a", i));
    store.Lookup(Key("a", i));
  }
  // New keys until the store is over budget (how many fit beside the
  // cache-full depends on the exact charge per entry).
  for (int b = 0; store.Stats().promoted == 0 && b < n; ++b) Put(Key("b", b));
  ASSERT_GT(store.Stats().promoted, static_cast<uint64_t>(n / 2));
  // Used again while in main: the even ones.
  std::vector<int> kept_even;
  for (int i = 0; i < n; i += 2) {
    if (store.Lookup(Key("a", i)) != nullptr) kept_even.push_back(i);
  }
  ASSERT_GT(kept_even.size(), static_cast<size_t>(n / 3));
  uint64_t evictions_before = store.Stats().evictions;
  for (int i = 1; i < n / 4; ++i) Put(Key("b", i));

  // Main did evict, and only the odd ones, though the even ones interleave
  // with them in main's order.
  int odd_evicted = 0;
  for (int i = 1; i < n; i += 2) odd_evicted += !Present(Key("a", i));
  EXPECT_GT(odd_evicted, 1);
  EXPECT_GT(store.Stats().evictions, evictions_before);
  for (int i : kept_even) EXPECT_TRUE(Present(Key("a", i))) << i;
  EXPECT_LE(store.Stats().bytes, store.max_bytes());
}

TEST(CacheStoreTest, EraseAndErasePrefixAcrossShards) {
  Store store({.max_bytes = 64 * kMiB, .max_object_bytes = kMiB});
  ASSERT_EQ(store.shard_count(), 16u);
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(store.Insert("a/" + std::to_string(i), Response(10)));
    ASSERT_TRUE(store.Insert("b/" + std::to_string(i), Response(10)));
  }
  EXPECT_TRUE(store.Erase("a/7"));
  EXPECT_FALSE(store.Erase("a/7"));
  EXPECT_EQ(store.Lookup("a/7"), nullptr);
  EXPECT_EQ(store.ErasePrefix("a/"), 99u);
  EXPECT_EQ(store.Keys("a/", SIZE_MAX).size(), 0u);
  EXPECT_EQ(store.Stats().entries, 100u);
  EXPECT_NE(store.Lookup("b/7"), nullptr);
  EXPECT_EQ(store.ErasePrefix(""), 100u);
  StoreStats stats = store.Stats();
  EXPECT_EQ(stats.entries, 0u);
  EXPECT_EQ(stats.bytes, 0u);
  EXPECT_EQ(stats.erased, 200u);
  EXPECT_EQ(stats.evictions, 0u);
}

TEST(CacheStoreTest, ReplaceIfOnlyWhenAbsentForNullExpected) {
  Store store({.max_bytes = kMiB, .max_object_bytes = kMiB});
  StoredResponsePtr first = Response(10);
  EXPECT_TRUE(store.ReplaceIf("k", nullptr, first));
  EXPECT_EQ(store.Lookup("k"), first);
  EXPECT_FALSE(store.ReplaceIf("k", nullptr, Response(20)));
  EXPECT_EQ(store.Lookup("k"), first);
  EXPECT_EQ(store.Stats().inserts, 1u);
}

TEST(CacheStoreTest, ReplaceIfOnlyWhenTheCurrentValueMatches) {
  Store store({.max_bytes = kMiB, .max_object_bytes = kMiB});
  StoredResponsePtr v1 = Response(10), v2 = Response(20), v3 = Response(30);
  // Absent: a non-null expectation fails.
  EXPECT_FALSE(store.ReplaceIf("k", v1.get(), v2));
  EXPECT_EQ(store.Lookup("k"), nullptr);

  ASSERT_TRUE(store.Insert("k", v1));
  EXPECT_TRUE(store.ReplaceIf("k", v1.get(), v2));
  EXPECT_EQ(store.Lookup("k"), v2);
  EXPECT_EQ(store.Stats().bytes, ChargeOf("k", v2));
  // A revalidation that started from v1 lost the race to v2.
  EXPECT_FALSE(store.ReplaceIf("k", v1.get(), v3));
  EXPECT_EQ(store.Lookup("k"), v2);
  EXPECT_EQ(store.Stats().bytes, ChargeOf("k", v2));
}

TEST(CacheStoreTest, ResizeEvictsDownToTheNewBudget) {
  Store store({.max_bytes = 4 * kMiB, .max_object_bytes = kMiB});
  ASSERT_EQ(store.shard_count(), 4u);
  for (int i = 0; i < 2000; ++i) store.Insert("k" + std::to_string(i), Response(3000));
  ASSERT_GT(store.Stats().bytes, 3 * kMiB);

  store.Resize(kMiB);
  EXPECT_EQ(store.max_bytes(), kMiB);
  EXPECT_EQ(store.shard_count(), 4u);
  EXPECT_LE(store.Stats().bytes, kMiB);
  EXPECT_GT(store.Stats().evictions, 0u);
  ExpectConsistent(store);

  store.Resize(0);
  EXPECT_EQ(store.Stats().entries, 0u);
  EXPECT_FALSE(store.Insert("k", Response(1)));

  store.Resize(4 * kMiB);
  for (int i = 0; i < 2000; ++i) store.Insert("k" + std::to_string(i), Response(3000));
  EXPECT_GT(store.Stats().bytes, 3 * kMiB);
  EXPECT_LE(store.Stats().bytes, 4 * kMiB);
}

TEST(CacheStoreTest, KeysHonoursPrefixAndLimit) {
  Store store({.max_bytes = 16 * kMiB, .max_object_bytes = kMiB});
  for (int i = 0; i < 50; ++i) {
    store.Insert("GET:example.com/" + std::to_string(i), Response(10));
    store.Insert("GET:other.org/" + std::to_string(i), Response(10));
  }
  std::vector<std::string> all = store.Keys("GET:example.com/", SIZE_MAX);
  EXPECT_EQ(all.size(), 50u);
  std::set<std::string> unique(all.begin(), all.end());
  EXPECT_EQ(unique.size(), 50u);
  for (const std::string& key : all) EXPECT_TRUE(key.starts_with("GET:example.com/")) << key;

  std::vector<std::string> some = store.Keys("GET:example.com/", 7);
  EXPECT_EQ(some.size(), 7u);
  for (const std::string& key : some) EXPECT_TRUE(unique.contains(key)) << key;
  EXPECT_EQ(store.Keys("", SIZE_MAX).size(), 100u);
  EXPECT_EQ(store.Keys("GET:nowhere", SIZE_MAX).size(), 0u);
  EXPECT_EQ(store.Keys("", 0).size(), 0u);
}

TEST(CacheStoreTest, ConcurrentUseKeepsTheInvariants) {
  Store store({.max_bytes = 4 * kMiB, .max_object_bytes = 256 * 1024});
  ASSERT_EQ(store.shard_count(), 4u);
  std::atomic<bool> over_budget{false};
  std::atomic<bool> torn_hit{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&store, &over_budget, &torn_hit, t] {
      std::mt19937 rng(t);
      for (int i = 0; i < 20000; ++i) {
        std::string key = "k" + std::to_string(rng() % 2000);
        switch (rng() % 8) {
          case 0:
            store.Erase(key);
            break;
          case 1: {
            StoredResponsePtr current = store.Lookup(key);
            store.ReplaceIf(key, current.get(), Response(rng() % 20000));
            break;
          }
          case 2:
          case 3:
          case 4:
            if (StoredResponsePtr hit = store.Lookup(key)) {
              // A hit stays readable however the store changes meanwhile.
              if (std::count(hit->body.begin(), hit->body.end(), 'x') !=
                  static_cast<std::ptrdiff_t>(hit->body.size())) {
                torn_hit = true;
              }
            }
            break;
          default:
            store.Insert(key, Response(rng() % 20000));
        }
        if (i % 100 == 0 && store.Stats().bytes > store.max_bytes()) over_budget = true;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_FALSE(over_budget);
  EXPECT_FALSE(torn_hit);
  StoreStats stats = store.Stats();
  EXPECT_GT(stats.inserts, 0u);
  EXPECT_GT(stats.evictions, 0u);
  ExpectConsistent(store);
}

}  // namespace
}  // namespace portway::cache
