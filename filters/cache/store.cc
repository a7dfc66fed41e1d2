#include "filters/cache/store.h"

#include <algorithm>
#include <iterator>
#include <list>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/hash/hash.h"

namespace portway::cache {
namespace {

constexpr size_t kMaxShards = 16;
constexpr size_t kMinShardBytes = size_t{1} << 20;
constexpr uint8_t kMaxFreq = 3;

enum class Queue : uint8_t { kSmall, kMain };

struct Entry {
  std::string key;
  StoredResponsePtr value;
  uint64_t hash;  // what the ghost remembers once the entry is gone
  size_t charge;
  uint8_t freq;
  Queue queue;
};

// Front is the newest (head), back the oldest (tail). std::list so that
// entries move between queues by splice, keeping the index's iterators
// (and the string_views into Entry::key it is keyed by) valid.
using EntryList = std::list<Entry>;

uint64_t HashKey(std::string_view key) { return absl::Hash<std::string_view>{}(key); }

}  // namespace

class Store::Shard {
 public:
  Shard(size_t budget, AtomicTotals& totals) : budget_(budget), totals_(totals) {}

  StoredResponsePtr Lookup(std::string_view key) {
    std::lock_guard lock(mu_);
    auto found = index_.find(key);
    if (found == index_.end()) return nullptr;
    Entry& entry = *found->second;
    if (entry.freq < kMaxFreq) ++entry.freq;
    return entry.value;
  }

  bool Put(std::string key, uint64_t hash, StoredResponsePtr value, size_t charge, bool too_big,
           bool conditional, const StoredResponse* expected) {
    std::lock_guard lock(mu_);
    auto found = index_.find(key);
    if (conditional) {
      const StoredResponse* current = found == index_.end() ? nullptr : found->second->value.get();
      if (current != expected) return false;
    }
    if (too_big || charge > budget_) {
      ++stats_.rejected_too_big;
      if (found != index_.end()) {
        Drop(found->second);
        ++stats_.erased;
      }
      return false;
    }

    if (found != index_.end()) {
      // A replacement keeps its queue and count (the key has earned them),
      // moving to its queue's head, and is set aside while room is made so
      // it cannot be the victim.
      EntryList::iterator node = found->second;
      Queue queue = node->queue;
      Unaccount(*node);
      held_.splice(held_.begin(), ListOf(queue), node);
      MakeRoom(charge);
      node->value = std::move(value);
      node->charge = charge;
      ListOf(queue).splice(ListOf(queue).begin(), held_, node);
      Account(*node);
    } else {
      Queue queue = Queue::kSmall;
      if (auto ghost = ghost_index_.find(hash); ghost != ghost_index_.end()) {
        ghost_.erase(ghost->second);
        ghost_index_.erase(ghost);
        queue = Queue::kMain;
        ++stats_.ghost_admissions;
      }
      MakeRoom(charge);
      EntryList& list = ListOf(queue);
      list.push_front(Entry{std::move(key), std::move(value), hash, charge, 0, queue});
      index_.emplace(std::string_view(list.front().key), list.begin());
      totals_.entries.fetch_add(1, std::memory_order_relaxed);
      Account(list.front());
    }
    ++stats_.inserts;
    return true;
  }

  bool Erase(std::string_view key) {
    std::lock_guard lock(mu_);
    auto found = index_.find(key);
    if (found == index_.end()) return false;
    Drop(found->second);
    ++stats_.erased;
    return true;
  }

  size_t ErasePrefix(std::string_view prefix) {
    std::lock_guard lock(mu_);
    size_t n = 0;
    for (EntryList* list : {&small_, &main_}) {
      for (auto it = list->begin(); it != list->end();) {
        auto next = std::next(it);
        if (std::string_view(it->key).starts_with(prefix)) {
          Drop(it);
          ++n;
        }
        it = next;
      }
    }
    stats_.erased += n;
    return n;
  }

  void Resize(size_t budget) {
    std::lock_guard lock(mu_);
    budget_ = budget;
    MakeRoom(0);
  }

  void AddStats(StoreStats& sum) const {
    std::lock_guard lock(mu_);
    sum.bytes += bytes_;
    sum.entries += index_.size();
    sum.inserts += stats_.inserts;
    sum.evictions += stats_.evictions;
    sum.rejected_too_big += stats_.rejected_too_big;
    sum.erased += stats_.erased;
    sum.promoted += stats_.promoted;
    sum.ghost_admissions += stats_.ghost_admissions;
  }

  void AddKeys(std::string_view prefix, size_t limit, std::vector<std::string>& out) const {
    std::lock_guard lock(mu_);
    for (const EntryList* list : {&main_, &small_}) {
      for (const Entry& entry : *list) {
        if (out.size() >= limit) return;
        if (std::string_view(entry.key).starts_with(prefix)) out.push_back(entry.key);
      }
    }
  }

 private:
  // The small FIFO's share of the bytes: once it holds that much, room is
  // made from it first; below that, from main.
  size_t SmallTarget() const { return budget_ / 10; }

  EntryList& ListOf(Queue queue) { return queue == Queue::kSmall ? small_ : main_; }

  void Account(const Entry& entry) {
    bytes_ += entry.charge;
    totals_.bytes.fetch_add(entry.charge, std::memory_order_relaxed);
    if (entry.queue == Queue::kSmall) small_bytes_ += entry.charge;
  }
  void Unaccount(const Entry& entry) {
    bytes_ -= entry.charge;
    totals_.bytes.fetch_sub(entry.charge, std::memory_order_relaxed);
    if (entry.queue == Queue::kSmall) small_bytes_ -= entry.charge;
  }

  // Removes an entry from its queue and the index (not from the ghost).
  void Drop(EntryList::iterator node) {
    Unaccount(*node);
    index_.erase(std::string_view(node->key));
    totals_.entries.fetch_sub(1, std::memory_order_relaxed);
    ListOf(node->queue).erase(node);
  }

  // Evicts until `incoming` more bytes fit in the budget. Amortized O(1)
  // per call: each step either frees an entry, promotes one (once per
  // entry) or spends one of the frequency bumps that hits paid for.
  void MakeRoom(size_t incoming) {
    while (bytes_ + incoming > budget_ && !(small_.empty() && main_.empty())) {
      if (!small_.empty() && (small_bytes_ >= SmallTarget() || main_.empty())) {
        EvictFromSmall();
      } else {
        EvictFromMain();
      }
    }
  }

  void EvictFromSmall() {
    auto tail = std::prev(small_.end());
    if (tail->freq >= 1) {
      // Asked for again while in the small queue: worth keeping.
      small_bytes_ -= tail->charge;
      tail->queue = Queue::kMain;
      main_.splice(main_.begin(), small_, tail);
      ++stats_.promoted;
      return;
    }
    uint64_t hash = tail->hash;
    Drop(tail);
    ++stats_.evictions;
    totals_.evictions.fetch_add(1, std::memory_order_relaxed);
    RememberInGhost(hash);
  }

  void EvictFromMain() {
    auto tail = std::prev(main_.end());
    if (tail->freq > 0) {
      --tail->freq;
      main_.splice(main_.begin(), main_, tail);
      return;
    }
    Drop(tail);
    ++stats_.evictions;
    totals_.evictions.fetch_add(1, std::memory_order_relaxed);
  }

  // The ghost remembers about as many keys as the shard holds (at least
  // one), which once the shard is full is close to main's entry count, as
  // in the paper, without a separate byte estimate for keys it no longer has.
  void RememberInGhost(uint64_t hash) {
    if (auto old = ghost_index_.find(hash); old != ghost_index_.end()) {
      ghost_.erase(old->second);
      ghost_index_.erase(old);
    }
    ghost_.push_front(hash);
    ghost_index_.emplace(hash, ghost_.begin());
    size_t limit = std::max<size_t>(index_.size(), 1);
    while (ghost_.size() > limit) {
      ghost_index_.erase(ghost_.back());
      ghost_.pop_back();
    }
  }

  mutable std::mutex mu_;
  size_t budget_;
  size_t bytes_ = 0;  // small + main, excluding an entry held aside by Put
  size_t small_bytes_ = 0;
  EntryList small_;
  EntryList main_;
  EntryList held_;  // only inside Put: the entry being replaced
  absl::flat_hash_map<std::string_view, EntryList::iterator> index_;
  std::list<uint64_t> ghost_;  // front is the newest
  absl::flat_hash_map<uint64_t, std::list<uint64_t>::iterator> ghost_index_;
  StoreStats stats_;  // only the counters are kept here
  AtomicTotals& totals_;
};

Store::Store(StoreOptions options)
    : max_object_bytes_(options.max_object_bytes), max_bytes_(options.max_bytes) {
  size_t n = 1;
  while (n < kMaxShards && options.max_bytes / (n * 2) >= kMinShardBytes) n *= 2;
  int bits = 0;
  while ((size_t{1} << bits) < n) ++bits;
  shard_shift_ = 64 - bits;
  shards_.reserve(n);
  for (size_t i = 0; i < n; ++i)
    shards_.push_back(std::make_unique<Shard>(options.max_bytes / n, totals_));
}

Store::~Store() = default;

Store::Shard& Store::ShardFor(uint64_t hash) const {
  // The top bits, because the index's hash table uses the low ones: keys
  // sharing a shard would otherwise share their control bytes too.
  return *shards_[shards_.size() == 1 ? 0 : hash >> shard_shift_];
}

StoredResponsePtr Store::Lookup(std::string_view key) { return ShardFor(HashKey(key)).Lookup(key); }

bool Store::Put(std::string key, StoredResponsePtr value, bool conditional,
                const StoredResponse* expected) {
  uint64_t hash = HashKey(key);
  bool too_big = true;
  size_t charge = 0;
  if (value != nullptr) {
    size_t object = value->Charge();  // walks the headers: outside the lock
    too_big = object > max_object_bytes_;
    charge = object + key.size();
  }
  return ShardFor(hash).Put(std::move(key), hash, std::move(value), charge, too_big, conditional,
                            expected);
}

bool Store::Insert(std::string key, StoredResponsePtr value) {
  return Put(std::move(key), std::move(value), false, nullptr);
}

bool Store::ReplaceIf(std::string key, const StoredResponse* expected, StoredResponsePtr value) {
  return Put(std::move(key), std::move(value), true, expected);
}

bool Store::Erase(std::string_view key) { return ShardFor(HashKey(key)).Erase(key); }

size_t Store::ErasePrefix(std::string_view prefix) {
  size_t n = 0;
  for (auto& shard : shards_) n += shard->ErasePrefix(prefix);
  return n;
}

void Store::Resize(size_t max_bytes) {
  std::lock_guard lock(resize_mu_);
  // Growing: publish first; shrinking: once every shard is down to it. So
  // max_bytes() is never below what the shards' budgets allow.
  bool grow = max_bytes >= max_bytes_.load(std::memory_order_relaxed);
  if (grow) max_bytes_.store(max_bytes, std::memory_order_relaxed);
  for (auto& shard : shards_) shard->Resize(max_bytes / shards_.size());
  if (!grow) max_bytes_.store(max_bytes, std::memory_order_relaxed);
}

StoreStats Store::Stats() const {
  StoreStats sum;
  for (const auto& shard : shards_) shard->AddStats(sum);
  return sum;
}

std::vector<std::string> Store::Keys(std::string_view prefix, size_t limit) const {
  std::vector<std::string> keys;
  for (const auto& shard : shards_) {
    if (keys.size() >= limit) break;
    shard->AddKeys(prefix, limit, keys);
  }
  return keys;
}

}  // namespace portway::cache
