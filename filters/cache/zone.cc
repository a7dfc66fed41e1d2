#include "filters/cache/zone.h"

#include <map>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "portway/admin.h"
#include "portway/log.h"

namespace portway::filters::cache {
namespace {

struct Registry {
  std::mutex mutex;
  std::map<std::string, std::shared_ptr<Zone>, std::less<>> zones;
};

Registry& Zones() {
  static auto* registry = new Registry();  // never destroyed: workers use zones until exit
  return *registry;
}

std::vector<std::pair<std::string, std::string>> Labels(const std::string& zone) {
  return {{"zone", zone}};
}

std::string JsonString(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (static_cast<unsigned char>(c) < 0x20) {
      absl::StrAppend(&out, "\\u00", c < 0x10 ? "0" : "", absl::Hex(static_cast<int>(c)));
    } else {
      out.push_back(c);
    }
  }
  out.push_back('"');
  return out;
}

std::string RedisIdentity(const portway::cache::RedisTierOptions& o) {
  return absl::StrCat(o.address, "|", o.prefix, "|", o.command_timeout.count(), "|",
                      o.connect_timeout.count(), "|", o.password, "|", o.db);
}

}  // namespace

Zone::Zone(std::string name, size_t max_bytes)
    : name_(std::move(name)),
      store_(portway::cache::StoreOptions{max_bytes, max_bytes}),
      counters_{
          &GetCounter("portway_cache_hits_total", Labels(name_)),
          &GetCounter("portway_cache_misses_total", Labels(name_)),
          &GetCounter("portway_cache_revalidated_total", Labels(name_)),
          &GetCounter("portway_cache_bypass_total", Labels(name_)),
          &GetCounter("portway_cache_coalesced_total", Labels(name_)),
          &GetCounter("portway_cache_stores_total", Labels(name_)),
          &GetCounter("portway_cache_evictions_total", Labels(name_)),
          &GetCounter("portway_cache_redis_total", {{"zone", name_}, {"result", "hit"}}),
          &GetCounter("portway_cache_redis_total", {{"zone", name_}, {"result", "miss"}}),
          &GetCounter("portway_cache_redis_total", {{"zone", name_}, {"result", "error"}}),
          &GetGauge("portway_cache_bytes", Labels(name_)),
          &GetGauge("portway_cache_entries", Labels(name_)),
      } {}

std::shared_ptr<portway::cache::RedisTier> Zone::redis() const {
  std::lock_guard<std::mutex> lock(redis_mutex_);
  return redis_;
}

absl::Status Zone::SetRedis(const portway::cache::RedisTierOptions& options) {
  std::string identity = RedisIdentity(options);
  {
    std::lock_guard<std::mutex> lock(redis_mutex_);
    if (redis_ != nullptr && identity == redis_identity_) return absl::OkStatus();
  }
  auto tier = portway::cache::RedisTier::Create(options);
  if (!tier.ok()) return tier.status();
  std::shared_ptr<portway::cache::RedisTier> old;
  {
    std::lock_guard<std::mutex> lock(redis_mutex_);
    old = std::move(redis_);
    redis_ = std::shared_ptr<portway::cache::RedisTier>(std::move(*tier));
    redis_identity_ = std::move(identity);
  }
  // Destroying a tier joins its I/O thread: not on a worker, and not under
  // the lock every lookup takes.
  if (old != nullptr) std::thread([old = std::move(old)]() mutable { old.reset(); }).detach();
  return absl::OkStatus();
}

void Zone::Configure(std::optional<size_t> max_bytes,
                     const portway::cache::RedisTierOptions* redis) {
  if (max_bytes.has_value() && store_.max_bytes() != *max_bytes) store_.Resize(*max_bytes);
  if (redis == nullptr) return;
  absl::Status status = SetRedis(*redis);
  if (!status.ok()) {
    Log(LogLevel::kError,
        absl::StrCat("cache zone ", name_, ": no Redis tier: ", status.message()));
  }
}

bool Zone::Insert(const std::string& key, StoredResponsePtr value) {
  const bool stored = store_.Insert(key, std::move(value));
  if (stored) counters_.stores->Inc();
  Publish();
  return stored;
}

size_t Zone::Purge(std::string_view key, bool prefix) {
  size_t n = 0;
  if (prefix) {
    n = store_.ErasePrefix(key);
  } else {
    // The key and, for a response that varies, every variant under it.
    // A URL that varies has its variants under the key plus their values:
    // found by a scan, done only then.
    StoredResponsePtr entry = store_.Lookup(key);
    n = store_.Erase(key) ? 1 : 0;
    if (entry != nullptr && entry->vary_marker) n += store_.ErasePrefix(std::string(key) + "\x1f");
    // And in Redis: the key, or the Vary marker without which its variants
    // are not found.
    if (auto tier = redis()) tier->Del(std::string(key));
  }
  Publish();
  return n;
}

void Zone::Publish() {
  const portway::cache::Store::Totals totals = store_.totals();
  counters_.bytes->Set(static_cast<int64_t>(totals.bytes));
  counters_.entries->Set(static_cast<int64_t>(totals.entries));
  // Count the evictions since the last look, once each, from any worker.
  uint64_t seen = evictions_seen_.load(std::memory_order_relaxed);
  while (totals.evictions > seen && !evictions_seen_.compare_exchange_weak(
                                        seen, totals.evictions, std::memory_order_relaxed)) {
  }
  if (totals.evictions > seen) counters_.evictions->Inc(totals.evictions - seen);
}

Zone::Join Zone::JoinFetch(const std::string& key, std::shared_ptr<http::WorkerPoster> worker,
                           std::function<void()> wake, uint32_t max_waiters) {
  std::lock_guard<std::mutex> lock(fetch_mutex_);
  auto [it, inserted] = fetches_.try_emplace(key);
  if (inserted) return Join::kLeader;
  if (it->second.size() >= max_waiters) return Join::kFull;
  it->second.push_back(Waiter{std::move(worker), std::move(wake)});
  counters_.coalesced->Inc();
  return Join::kWaiter;
}

void Zone::Release(const std::string& key) {
  std::vector<Waiter> waiters;
  {
    std::lock_guard<std::mutex> lock(fetch_mutex_);
    auto it = fetches_.find(key);
    if (it == fetches_.end()) return;
    waiters = std::move(it->second);
    fetches_.erase(it);
  }
  // Outside the lock: a post may run the wake on this very thread later,
  // never now, but a poster's own lock must not nest in ours.
  for (Waiter& w : waiters) w.worker->Post(std::move(w.wake));
}

Counter& Zone::StaleCounter(std::string_view cause) {
  return GetCounter("portway_cache_stale_total", {{"zone", name_}, {"cause", std::string(cause)}});
}

std::string Zone::Json() const {
  const portway::cache::StoreStats s = store_.Stats();
  std::string out =
      absl::StrCat("{\"name\":", JsonString(name_), ",\"max_bytes\":", store_.max_bytes(),
                   ",\"bytes\":", s.bytes, ",\"entries\":", s.entries, ",\"inserts\":", s.inserts,
                   ",\"evictions\":", s.evictions, ",\"rejected_too_big\":", s.rejected_too_big,
                   ",\"hits\":", counters_.hits->Value(), ",\"misses\":", counters_.misses->Value(),
                   ",\"revalidated\":", counters_.revalidated->Value());
  if (auto tier = redis()) {
    absl::StrAppend(&out, ",\"redis\":{\"connected\":", tier->Connected() ? "true" : "false",
                    ",\"hits\":", counters_.redis_hits->Value(),
                    ",\"misses\":", counters_.redis_misses->Value(),
                    ",\"errors\":", counters_.redis_errors->Value(), "}");
  }
  out += "}";
  return out;
}

std::shared_ptr<Zone> GetZone(const std::string& name) {
  Registry& r = Zones();
  std::lock_guard<std::mutex> lock(r.mutex);
  auto it = r.zones.find(name);
  if (it == r.zones.end()) it = r.zones.emplace(name, std::make_shared<Zone>(name, 64 << 20)).first;
  return it->second;
}

std::vector<std::shared_ptr<Zone>> AllZones() {
  Registry& r = Zones();
  std::lock_guard<std::mutex> lock(r.mutex);
  std::vector<std::shared_ptr<Zone>> out;
  for (const auto& [name, zone] : r.zones) out.push_back(zone);
  return out;
}

namespace {

AdminResponse HandleAdmin(const AdminRequest& request) {
  const std::optional<std::string> zone_name = AdminQueryParam(request.query, "zone");
  std::vector<std::shared_ptr<Zone>> zones;
  for (auto& zone : AllZones()) {
    if (!zone_name || zone->name() == *zone_name) zones.push_back(std::move(zone));
  }
  if (zone_name && zones.empty()) {
    return {404, "application/json", "{\"error\":\"no such zone\"}\n"};
  }
  if (request.path == "/cache") {
    if (request.method != "GET" && request.method != "HEAD") {
      return {405, "application/json", "{\"error\":\"use GET\"}\n"};
    }
    std::string out = "{\"zones\":[";
    for (size_t i = 0; i < zones.size(); ++i) absl::StrAppend(&out, i ? "," : "", zones[i]->Json());
    return {200, "application/json", out + "]}\n"};
  }
  if (request.path == "/cache/keys") {
    const std::string prefix = AdminQueryParam(request.query, "prefix").value_or("");
    size_t limit = 100;
    if (auto l = AdminQueryParam(request.query, "limit"))
      limit = std::strtoul(l->c_str(), nullptr, 10);
    std::string out = "{\"keys\":[";
    bool first = true;
    for (const auto& zone : zones) {
      for (const std::string& key : zone->store().Keys(prefix, limit)) {
        absl::StrAppend(&out, first ? "" : ",", "{\"zone\":", JsonString(zone->name()),
                        ",\"key\":", JsonString(key), "}");
        first = false;
      }
    }
    return {200, "application/json", out + "]}\n"};
  }
  if (request.path == "/cache/purge") {
    if (request.method != "POST" && request.method != "DELETE" && request.method != "PURGE") {
      return {405, "application/json", "{\"error\":\"purge with POST\"}\n"};
    }
    const std::optional<std::string> key = AdminQueryParam(request.query, "key");
    const std::optional<std::string> prefix = AdminQueryParam(request.query, "prefix");
    if (key.has_value() == prefix.has_value()) {
      return {400, "application/json", "{\"error\":\"give exactly one of key= and prefix=\"}\n"};
    }
    size_t purged = 0;
    for (const auto& zone : zones) purged += zone->Purge(key ? *key : *prefix, prefix.has_value());
    Log(LogLevel::kInfo, absl::StrCat("cache: purged ", purged, " entries for ",
                                      key ? "key " : "prefix ", key ? *key : *prefix));
    return {200, "application/json", absl::StrCat("{\"purged\":", purged, "}\n")};
  }
  return {404, "application/json", "{\"error\":\"unknown cache admin path\"}\n"};
}

}  // namespace

void RegisterCacheAdmin() {
  static const bool registered = [] {
    RegisterAdminHandler("/cache", HandleAdmin);
    return true;
  }();
  (void)registered;
}

}  // namespace portway::filters::cache
