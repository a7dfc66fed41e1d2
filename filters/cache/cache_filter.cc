#include "filters/cache/cache_filter.h"

#include <algorithm>
#include <charconv>
#include <mutex>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "filters/cache/codec.h"
#include "portway/filters/cache/v1/cache.pb.h"
#include "portway/log.h"

namespace portway::filters::cache {
namespace {

using portway::cache::Fields;
using portway::cache::Freshness;

constexpr std::string_view kCacheHeader = "x-portway-cache";
// Separates the parts of a key: configured header values, Vary values.
constexpr char kKeyHeaderSeparator = '\x1e';
constexpr char kVarySeparator = '\x1f';

std::chrono::milliseconds ToMillis(const google::protobuf::Duration& d) {
  return std::chrono::milliseconds(d.seconds() * 1000 + d.nanos() / 1000000);
}

Fields ToFields(const http::HeaderMap& headers) {
  Fields out;
  out.reserve(headers.size());
  for (const auto& e : headers) {
    if (!e.name.empty() && e.name[0] == ':') continue;
    out.emplace_back(e.name, e.value);
  }
  return out;
}

// The request fields the rules read before anything goes upstream
// (freshness requirements, conditionals): a hit copies no other field.
Fields RuleFields(const http::HeaderMap& headers) {
  Fields out;
  for (const auto& e : headers) {
    if (e.name == "cache-control" || e.name == "pragma" || e.name == "if-none-match" ||
        e.name == "if-modified-since") {
      out.emplace_back(e.name, e.value);
    }
  }
  return out;
}

std::string VariantKey(const std::string& key, const std::vector<std::string>& values) {
  std::string out = key;
  for (const std::string& v : values) {
    out.push_back(kVarySeparator);
    out += v;
  }
  return out;
}

// The names a response's Connection field lists: hop-by-hop too.
std::vector<std::string> ConnectionTokens(const http::HeaderMap& headers) {
  std::vector<std::string> out;
  for (const auto& e : headers) {
    if (e.name != "connection") continue;
    for (absl::string_view token :
         absl::StrSplit(absl::string_view(e.value.data(), e.value.size()), ',')) {
      token = absl::StripAsciiWhitespace(token);
      if (!token.empty()) out.push_back(absl::AsciiStrToLower(token));
    }
  }
  return out;
}

struct StaleOnName {
  std::string_view name;
  uint32_t bit;
};
constexpr StaleOnName kStaleOnNames[] = {
    {"connect-failure", kOnConnectFailure},
    {"reset", kOnReset},
    {"timeout", kOnTimeout},
    {"500", kOn500},
    {"502", kOn502},
    {"503", kOn503},
    {"504", kOn504},
    {"circuit-open", kOnCircuitOpen},
    {"no-healthy-upstream", kOnNoHealthyUpstream},
    {"overflow", kOnOverflow},
};

uint32_t BitForCause(http::ErrorCause cause) {
  using http::ErrorCause;
  switch (cause) {
    case ErrorCause::kUpstreamConnectRefused:
    case ErrorCause::kUpstreamConnectFailure:
    case ErrorCause::kUpstreamConnectTimeout:
    case ErrorCause::kUpstreamTlsHandshakeFailed:
    case ErrorCause::kUpstreamTlsVerifyFailed:
    case ErrorCause::kUpstreamDnsFailure:
      return kOnConnectFailure;
    case ErrorCause::kUpstreamResetBeforeResponse:
    case ErrorCause::kUpstreamMalformedResponse:
      return kOnReset;
    case ErrorCause::kUpstreamTimeout:
      return kOnTimeout;
    case ErrorCause::kCircuitOpen:
      return kOnCircuitOpen;
    case ErrorCause::kNoHealthyUpstream:
      return kOnNoHealthyUpstream;
    case ErrorCause::kUpstreamOverflow:
      return kOnOverflow;
    default:
      return 0;
  }
}

uint32_t BitForStatus(int status) {
  switch (status) {
    case 500:
      return kOn500;
    case 502:
      return kOn502;
    case 503:
      return kOn503;
    case 504:
      return kOn504;
    default:
      return 0;
  }
}

// A complete response, made immutable to be shared, with what the
// freshness rules need worked out once.
StoredResponsePtr Seal(StoredResponse response) {
  portway::cache::Precompute(response);
  return std::make_shared<const StoredResponse>(std::move(response));
}

// Whether a response head may be stored for this request (and its body
// is not announced as too big).
bool ShouldStore(const Settings& settings, int status, const http::HeaderMap& headers,
                 const Fields& fields, const portway::cache::RequestPolicy& policy,
                 bool has_authorization) {
  const portway::cache::Storability verdict =
      portway::cache::CanStore(status, fields, policy, has_authorization,
                               /*allow_heuristic=*/false);
  if (!verdict.storable && !(settings.last_good && verdict.reason == "no-freshness")) return false;
  if (const std::string_view* length = headers.Get("content-length")) {
    uint64_t bytes = 0;
    const char* end = length->data() + length->size();
    auto [parsed_to, ec] = std::from_chars(length->data(), end, bytes);
    // Codecs vouch for the digits; anything else (or past 2^64) is not stored.
    if (ec != std::errc() || parsed_to != end || bytes > settings.max_object_bytes) return false;
  }
  return true;
}

// What is kept of a response head: its end-to-end fields, its times and
// the request's values of what it varies on.
std::unique_ptr<StoredResponse> StoredHead(int status, const http::HeaderMap& headers,
                                           Fields fields, const Fields& request_fields,
                                           SystemTime request_time, SystemTime response_time) {
  auto stored = std::make_unique<StoredResponse>();
  stored->status = status;
  const std::vector<std::string> listed = ConnectionTokens(headers);
  for (auto& [name, value] : fields) {
    if (portway::cache::IsHopByHop(name) || name == kCacheHeader ||
        std::find(listed.begin(), listed.end(), name) != listed.end()) {
      continue;
    }
    stored->headers.emplace_back(std::move(name), std::move(value));
  }
  stored->request_time = request_time;
  stored->response_time = response_time;
  stored->vary_names = portway::cache::VaryNames(stored->headers);
  stored->vary_values = portway::cache::VaryValues(stored->vary_names, request_fields);
  return stored;
}

// Stores `response` under `key` (behind a Vary marker when it varies), in
// the zone and in its Redis tier.
void StoreResponse(const Settings& settings, const std::string& key, StoredResponsePtr response) {
  Zone& zone = *settings.zone;
  std::string variant = key;
  StoredResponsePtr marker;
  if (!response->vary_names.empty()) {
    // Under the URL's key, a note of what the URL varies on; the response
    // under the key plus this request's values.
    auto note = std::make_shared<StoredResponse>();
    note->vary_marker = true;
    note->vary_names = response->vary_names;
    note->request_time = response->request_time;
    note->response_time = response->response_time;
    marker = std::move(note);
    zone.Insert(key, marker);
    variant = VariantKey(key, response->vary_values);
  }
  zone.Insert(variant, response);
  if (auto tier = zone.redis()) {
    // Kept in Redis as long as it may still be served: fresh, then stale.
    const auto lifetime = portway::cache::FreshnessLifetime(*response, /*allow_heuristic=*/false);
    const auto ttl = std::max<std::chrono::seconds>(
        std::chrono::seconds(1),
        lifetime + std::max(settings.max_stale, std::chrono::seconds(86400)));
    if (marker != nullptr) tier->Set(key, portway::cache::EncodeStoredResponse(*marker), ttl);
    tier->Set(variant, portway::cache::EncodeStoredResponse(*response), ttl);
  }
}

}  // namespace

CacheFilter::CacheFilter(std::shared_ptr<const Settings> settings)
    : settings_(std::move(settings)), zone_(*settings_->zone) {}

CacheFilter::~CacheFilter() { ReleaseFetch(); }

http::FilterHeadersStatus CacheFilter::DecodeHeaders(http::HeaderMap& headers, bool) {
  request_time_ = callbacks_->Clock().SystemNow();
  request_fields_ = RuleFields(headers);
  const std::string_view method = headers.Method();
  policy_ = portway::cache::EvaluateRequest(method, request_fields_);

  // The key: host, path (and query), configured header values.
  if (settings_->key_host) key_ = absl::AsciiStrToLower(std::string(headers.Authority()));
  std::string_view path = headers.Path();
  if (!settings_->key_query) path = path.substr(0, path.find('?'));
  key_ += path;
  for (const std::string& name : settings_->key_headers) {
    key_.push_back(kKeyHeaderSeparator);
    key_ += name;
    key_ += '=';
    key_ += headers.GetOr(name, "");
  }

  if (!policy_.cacheable || headers.Has("range")) {
    // Unsafe methods that succeed invalidate what is stored for the URL
    // (RFC 9111 4.4); see EncodeHeaders.
    state_ = State::kBypass;
    unsafe_ = method == "POST" || method == "PUT" || method == "DELETE" || method == "PATCH";
    return http::FilterHeadersStatus::kContinue;
  }
  head_request_ = method == "HEAD";
  client_conditional_ = headers.Has("if-none-match") || headers.Has("if-modified-since");
  has_authorization_ = headers.Has("authorization");
  request_ = &headers;
  worker_ = callbacks_->Worker();
  return Decide(LookupLocal(), /*may_ask_redis=*/true, /*may_wait=*/true)
             ? http::FilterHeadersStatus::kContinue
             : http::FilterHeadersStatus::kStopIteration;
}

StoredResponsePtr CacheFilter::LookupLocal() const {
  StoredResponsePtr found = zone_.store().Lookup(key_);
  if (found == nullptr || !found->vary_marker) return found;
  // request_ is held while the filter looks (DecodeHeaders, a wake).
  const std::vector<std::string> values =
      portway::cache::VaryValues(found->vary_names, ToFields(*request_));
  return zone_.store().Lookup(VariantKey(key_, values));
}

bool CacheFilter::Decide(StoredResponsePtr found, bool may_ask_redis, bool may_wait) {
  if (found == nullptr && may_ask_redis && worker_ != nullptr && zone_.redis() != nullptr) {
    AskRedis();
    return false;
  }
  const SystemTime now = callbacks_->Clock().SystemNow();
  if (found != nullptr) {
    const portway::cache::Evaluation ev =
        portway::cache::Evaluate(*found, policy_, now, /*allow_heuristic=*/false);
    if (!policy_.bypass_lookup && ev.freshness == Freshness::kFresh) {
      zone_.counters().hits->Inc();
      if (Serve(found, "HIT", "HIT")) return false;
    }
    if (!policy_.bypass_lookup && ev.freshness == Freshness::kStaleWhileRevalidate) {
      // RFC 5861: the copy answers now; one request refreshes it behind.
      RevalidateInBackground(found);
      zone_.StaleCounter("stale_while_revalidate").Inc();
      if (Serve(found, "STALE; cause=stale_while_revalidate", "STALE")) return false;
    }
    // Stale, or the client wants it revalidated: ask the upstream, and
    // keep the copy for a 304 or a failure.
    stored_ = std::move(found);
  }
  if (policy_.cc.only_if_cached) {
    // Nothing it may use is stored, and it must not go upstream.
    callbacks_->SendLocalReply(504, "only-if-cached: not in the cache\n", "cache_only_if_cached");
    state_ = State::kAnswered;
    return false;
  }
  // A HEAD does not lead a fetch (its answer has no body to store).
  if (may_wait && !head_request_ && worker_ != nullptr && settings_->max_waiters > 0) {
    if (alive_ == nullptr) alive_ = std::make_shared<CacheFilter*>(this);
    std::weak_ptr<CacheFilter*> weak = alive_;
    auto wake = [weak] {
      if (auto alive = weak.lock()) (*alive)->OnWake();
    };
    switch (zone_.JoinFetch(key_, worker_, wake, settings_->max_waiters)) {
      case Zone::Join::kLeader:
        leader_ = true;
        break;
      case Zone::Join::kWaiter:
        state_ = State::kWaiting;
        wait_timer_ = callbacks_->CreateTimer([this] { OnWake(); });
        wait_timer_->Enable(settings_->coalesce_timeout);
        return false;
      case Zone::Join::kFull:
        break;
    }
  }
  PrepareUpstream();
  return true;
}

void CacheFilter::AskRedis() {
  state_ = State::kLookup;
  if (alive_ == nullptr) alive_ = std::make_shared<CacheFilter*>(this);
  std::weak_ptr<CacheFilter*> weak = alive_;
  std::shared_ptr<http::WorkerPoster> worker = worker_;
  Zone* zone = &zone_;  // zones live for the process
  // The answer comes on the tier's thread (or at once, refused): hop back
  // to this stream's worker, where the filter may still be. The callback
  // holds no reference to the tier: the tier must never be destroyed
  // from its own thread.
  auto ask = [weak, worker, zone](const std::string& key, auto&& self) -> void {
    std::shared_ptr<portway::cache::RedisTier> tier = zone->redis();
    if (tier == nullptr) {
      worker->Post([weak] {
        auto alive = weak.lock();
        if (alive != nullptr && (*alive)->state_ == State::kLookup) (*alive)->OnRedis(nullptr);
      });
      return;
    }
    tier->Get(key, [weak, worker, zone, self](portway::cache::RedisGetResult r) mutable {
      StoredResponsePtr found;
      if (r.status == portway::cache::RedisGetResult::kHit) {
        auto decoded = portway::cache::DecodeStoredResponse(r.value);
        if (decoded.ok()) {
          found = Seal(std::move(*decoded));
        } else {
          zone->counters().redis_errors->Inc();
        }
      } else if (r.status == portway::cache::RedisGetResult::kMiss) {
        zone->counters().redis_misses->Inc();
      } else {
        zone->counters().redis_errors->Inc();
      }
      worker->Post([weak, found, self]() mutable {
        auto alive = weak.lock();
        if (alive == nullptr) return;
        CacheFilter& filter = **alive;
        if (filter.state_ != State::kLookup) return;
        if (found != nullptr && found->vary_marker && !filter.followed_vary_) {
          filter.followed_vary_ = true;
          // The URL varies: remember how, then ask for this request's
          // variant.
          filter.zone_.Insert(filter.key_, found);
          const std::string variant =
              VariantKey(filter.key_,
                         portway::cache::VaryValues(found->vary_names, ToFields(*filter.request_)));
          self(variant, self);
          return;
        }
        if (found != nullptr && found->vary_marker) found = nullptr;  // a marker under a variant
        filter.OnRedis(std::move(found));
      });
    });
  };
  ask(key_, ask);
}

void CacheFilter::RevalidateInBackground(const StoredResponsePtr& stored) {
  // One refresh per key at a time, across workers: a key already being
  // fetched is left to that fetch.
  if (worker_ != nullptr &&
      zone_.JoinFetch(key_, worker_, nullptr, /*max_waiters=*/0) != Zone::Join::kLeader) {
    return;
  }
  // The client's request as it came, without its own conditionals, with
  // the copy's validators.
  auto headers = std::make_unique<http::HeaderMap>();
  headers->AddLower(":method", "GET");  // a HEAD's refresh must bring the body
  for (const auto& e : *request_) {
    if (e.name == ":method" || e.name == "if-none-match" || e.name == "if-modified-since" ||
        e.name == "if-match" || e.name == "if-unmodified-since" || e.name == "if-range" ||
        e.name == "range") {
      continue;
    }
    headers->AddLower(e.name, e.value);
  }
  for (auto& [name, value] : portway::cache::ConditionalHeaders(*stored)) {
    headers->AddLower(name, value);
  }
  const TimeSource* clock = &callbacks_->Clock();
  const bool coalesced = worker_ != nullptr;
  callbacks_->SendSideRequest(
      std::move(headers), settings_->max_object_bytes,
      [settings = settings_, key = key_, stored, request_fields = ToFields(*request_),
       policy = policy_, has_authorization = has_authorization_, request_time = clock->SystemNow(),
       clock, coalesced](http::SideResponse r) {
        Zone& zone = *settings->zone;
        if (r.headers != nullptr) {
          const SystemTime now = clock->SystemNow();
          const int status = r.headers->Status();
          Fields fields = ToFields(*r.headers);
          if (status == 304) {
            StoreResponse(
                *settings, key,
                Seal(portway::cache::MergeNotModified(*stored, fields, request_time, now)));
            zone.counters().revalidated->Inc();
          } else if (ShouldStore(*settings, status, *r.headers, fields, policy,
                                 has_authorization)) {
            std::unique_ptr<StoredResponse> fresh = StoredHead(
                status, *r.headers, std::move(fields), request_fields, request_time, now);
            fresh->body = std::move(r.body);
            if (r.trailers != nullptr) fresh->trailers = ToFields(*r.trailers);
            StoreResponse(*settings, key, Seal(std::move(*fresh)));
          }
        }
        // A failed refresh leaves the copy as it was (and it still answers
        // failures).
        if (coalesced) zone.Release(key);
      });
}

void CacheFilter::OnRedis(StoredResponsePtr found) {
  if (found != nullptr) {
    zone_.counters().redis_hits->Inc();
    // Kept in the process too: the next request finds it without Redis.
    std::string key = key_;
    if (!found->vary_names.empty()) key = VariantKey(key_, found->vary_values);
    zone_.Insert(key, found);
  }
  Resume(Decide(std::move(found), /*may_ask_redis=*/false, /*may_wait=*/true));
}

void CacheFilter::OnWake() {
  if (state_ != State::kWaiting) return;
  // Disabled, not destroyed: this may be the timer's own callback.
  wait_timer_->Disable();
  // The fetch we waited for is done (or we gave up): look again, and go
  // upstream ourselves when there is still nothing fresh.
  Resume(Decide(LookupLocal(), /*may_ask_redis=*/false, /*may_wait=*/false));
}

void CacheFilter::PrepareUpstream() {
  state_ = State::kUpstream;
  // What the response will be stored under needs every field Vary may
  // name: the whole request, kept now that the head goes upstream.
  if (request_ != nullptr) request_fields_ = ToFields(*request_);
  // Our validators go only when the client sent none of its own: a 304
  // then answers our question, not the client's.
  if (stored_ != nullptr && request_ != nullptr && !request_->Has("if-none-match") &&
      !request_->Has("if-modified-since")) {
    for (auto& [name, value] : portway::cache::ConditionalHeaders(*stored_)) {
      request_->AddLower(name, value);
      sent_validators_ = true;
    }
  }
  request_ = nullptr;
}

void CacheFilter::Resume(bool upstream) {
  if (upstream) callbacks_->Continue();
}

bool CacheFilter::Serve(const StoredResponsePtr& stored, std::string label, std::string flag,
                        std::string detail) {
  const SystemTime now = callbacks_->Clock().SystemNow();
  const int status = stored->status;
  const bool not_modified = status == 200 && client_conditional_ &&
                            portway::cache::ClientNotModified(request_fields_, *stored);
  const bool has_body = !not_modified && status != 204 && status != 304 && status >= 200;

  http::FilterResponse response;
  response.headers = std::make_unique<http::HeaderMap>();
  http::HeaderMap& h = *response.headers;
  h.Reserve(stored->headers.size() + 4);
  h.AddLower(":status", std::to_string(not_modified ? 304 : status));
  for (const auto& [name, value] : stored->headers) {
    if (name == "age" || name == "content-length" || name == kCacheHeader) continue;
    h.AddLower(name, value);
  }
  h.AddLower("age", portway::cache::AgeValue(portway::cache::CurrentAge(*stored, now)));
  h.AddLowerOwned(kCacheHeader, std::move(label));
  if (has_body) {
    h.AddLower("content-length", std::to_string(stored->body.size()));
    if (!head_request_) {
      response.body.Add(stored->body);
      if (!stored->trailers.empty()) {
        response.trailers = std::make_unique<http::HeaderMap>();
        for (const auto& [name, value] : stored->trailers) response.trailers->AddLower(name, value);
      }
    }
  }
  if (!detail.empty() && !callbacks_->Info().request_id.empty()) {
    // The request went upstream and failed: its id finds the attempts on
    // the admin /failures page.
    h.AddLower("x-request-id", callbacks_->Info().request_id);
  }
  response.detail = std::move(detail);
  const State before = state_;
  state_ = State::kAnswered;
  callbacks_->Info().response_flag = std::move(flag);
  if (!callbacks_->SendResponse(std::move(response))) {
    state_ = before;
    callbacks_->Info().response_flag.clear();
    return false;
  }
  request_ = nullptr;
  return true;
}

std::optional<std::string> CacheFilter::StaleCause(const http::HeaderMap& headers) const {
  const http::StreamInfo& info = callbacks_->Info();
  if (info.local_reply) {
    if ((BitForCause(info.cause) & settings_->stale_on) == 0) return std::nullopt;
    return std::string(http::ErrorCauseName(info.cause));
  }
  const int status = headers.Status();
  if ((BitForStatus(status) & settings_->stale_on) == 0) return std::nullopt;
  return absl::StrCat("upstream_status_", status);
}

http::FilterHeadersStatus CacheFilter::EncodeHeaders(http::HeaderMap& headers, bool end_stream) {
  const int status = headers.Status();
  if (state_ == State::kBypass) {
    zone_.counters().bypass->Inc();
    if (unsafe_ && status >= 200 && status < 400 && !callbacks_->Info().local_reply) {
      zone_.Purge(key_, /*prefix=*/false);
    }
    headers.SetOwned(kCacheHeader, "BYPASS");
    return http::FilterHeadersStatus::kContinue;
  }
  if (state_ == State::kLookup || state_ == State::kWaiting) {
    // The core answered while we waited (a timeout, another filter's
    // reply): the request head we held is gone, and so is our part.
    state_ = State::kAnswered;
    request_ = nullptr;
    if (wait_timer_ != nullptr) wait_timer_->Disable();
    return http::FilterHeadersStatus::kContinue;
  }
  if (state_ != State::kUpstream) return http::FilterHeadersStatus::kContinue;

  const SystemTime now = callbacks_->Clock().SystemNow();
  if (stored_ != nullptr) {
    if (std::optional<std::string> cause = StaleCause(headers)) {
      const portway::cache::Evaluation ev =
          portway::cache::Evaluate(*stored_, policy_, now, /*allow_heuristic=*/false);
      if (portway::cache::CanServeStaleOnError(ev, policy_, settings_->max_stale)) {
        ReleaseFetch();
        zone_.StaleCounter(*cause).Inc();
        if (Serve(stored_, absl::StrCat("STALE; cause=", *cause), "STALE",
                  absl::StrCat("cache: stale copy served for ", *cause))) {
          return http::FilterHeadersStatus::kStopIteration;
        }
      }
    }
    if (status == 304 && sent_validators_ && !callbacks_->Info().local_reply) {
      StoredResponsePtr merged =
          Seal(portway::cache::MergeNotModified(*stored_, ToFields(headers), request_time_, now));
      Store(merged);
      ReleaseFetch();
      zone_.counters().revalidated->Inc();
      if (Serve(merged, "REVALIDATED", "REVALIDATED")) {
        return http::FilterHeadersStatus::kStopIteration;
      }
    }
  }

  zone_.counters().misses->Inc();
  headers.SetOwned(kCacheHeader, "MISS");
  if (!callbacks_->Info().local_reply && !head_request_) {
    Fields fields = ToFields(headers);
    if (ShouldStore(*settings_, status, headers, fields, policy_, has_authorization_)) {
      pending_ =
          StoredHead(status, headers, std::move(fields), request_fields_, request_time_, now);
      if (end_stream) FinishStoring();
    }
  }
  if (pending_ == nullptr) ReleaseFetch();
  return http::FilterHeadersStatus::kContinue;
}

http::FilterDataStatus CacheFilter::EncodeData(Buffer& data, bool end_stream) {
  if (pending_ != nullptr) {
    if (pending_->body.size() + data.length() > settings_->max_object_bytes) {
      // Too big after all (no or a wrong Content-Length): let it stream.
      pending_.reset();
      ReleaseFetch();
    } else {
      data.ForEachSlice([&](std::string_view slice) { pending_->body.append(slice); });
      if (end_stream) FinishStoring();
    }
  }
  return http::FilterDataStatus::kContinue;
}

http::FilterTrailersStatus CacheFilter::EncodeTrailers(http::HeaderMap& trailers) {
  if (pending_ != nullptr) {
    pending_->trailers = ToFields(trailers);
    FinishStoring();
  }
  return http::FilterTrailersStatus::kContinue;
}

void CacheFilter::FinishStoring() {
  std::unique_ptr<StoredResponse> complete = std::move(pending_);
  Store(Seal(std::move(*complete)));
  ReleaseFetch();
}

void CacheFilter::Store(StoredResponsePtr response) {
  StoreResponse(*settings_, key_, std::move(response));
}

void CacheFilter::ReleaseFetch() {
  if (!leader_) return;
  leader_ = false;
  zone_.Release(key_);
}

void CacheFilter::OnDestroy() {
  ReleaseFetch();
  wait_timer_.reset();
  pending_.reset();
  alive_.reset();
}

// ---- factory ----

std::unique_ptr<google::protobuf::Message> CacheFactory::NewConfig() const {
  return std::make_unique<v1::Cache>();
}

absl::StatusOr<http::FilterFactoryCallback> CacheFactory::Create(
    const google::protobuf::Message& message) const {
  const auto& config = static_cast<const v1::Cache&>(message);
  auto settings = std::make_shared<Settings>();
  const std::string zone_name = config.zone().empty() ? "default" : config.zone();
  const uint64_t max_bytes = config.has_max_bytes() ? config.max_bytes().value() : 64ull << 20;
  // Left out, the zone keeps the size another config gave it.
  const std::optional<size_t> zone_bytes =
      config.has_max_bytes() ? std::optional<size_t>(max_bytes) : std::nullopt;
  if (max_bytes < (64u << 10))
    return absl::InvalidArgumentError("max_bytes: must be at least 65536");
  settings->max_object_bytes =
      config.has_max_object_bytes() ? config.max_object_bytes().value() : 1u << 20;
  if (settings->max_object_bytes == 0 || settings->max_object_bytes > max_bytes / 16) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_object_bytes: must be between 1 and max_bytes / 16 (", max_bytes / 16, ")"));
  }
  settings->key_host = !config.key().exclude_host();
  settings->key_query = !config.key().exclude_query();
  for (int i = 0; i < config.key().headers_size(); ++i) {
    const std::string& name = config.key().headers(i);
    if (name.empty() || name[0] == ':') {
      return absl::InvalidArgumentError(
          absl::StrCat("key.headers[", i, "]: must be a header name"));
    }
    settings->key_headers.push_back(absl::AsciiStrToLower(name));
  }
  if (config.serve_stale_on_size() > 0) {
    settings->stale_on = 0;
    for (int i = 0; i < config.serve_stale_on_size(); ++i) {
      const std::string& on = config.serve_stale_on(i);
      if (on == "none" && config.serve_stale_on_size() == 1) break;
      const auto* known = std::find_if(std::begin(kStaleOnNames), std::end(kStaleOnNames),
                                       [&](const StaleOnName& n) { return n.name == on; });
      if (known == std::end(kStaleOnNames)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "serve_stale_on[", i, "]: unknown \"", on,
            "\" (want connect-failure, reset, timeout, 500, 502, 503, 504, circuit-open, "
            "no-healthy-upstream, overflow, or none alone)"));
      }
      settings->stale_on |= known->bit;
    }
  }
  if (config.has_max_stale()) {
    if (config.max_stale().seconds() < 0) {
      return absl::InvalidArgumentError("max_stale: must not be negative");
    }
    settings->max_stale = std::chrono::seconds(config.max_stale().seconds());
  }
  settings->last_good = config.last_good();
  if (config.has_max_waiters()) settings->max_waiters = config.max_waiters().value();
  if (config.has_coalesce_timeout()) {
    settings->coalesce_timeout = ToMillis(config.coalesce_timeout());
    if (settings->coalesce_timeout.count() < 1) {
      return absl::InvalidArgumentError("coalesce_timeout: must be at least 1ms");
    }
  }
  std::optional<portway::cache::RedisTierOptions> redis;
  if (config.store().has_redis()) {
    const auto& r = config.store().redis();
    if (r.address().empty()) {
      return absl::InvalidArgumentError("store.redis.address: required (host:port or unix:/path)");
    }
    if (!absl::StartsWith(r.address(), "unix:") && r.address().rfind(':') == std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("store.redis.address: \"", r.address(),
                                                     "\" is not host:port or unix:/path"));
    }
    redis.emplace();
    redis->address = r.address();
    if (!r.key_prefix().empty()) redis->prefix = r.key_prefix();
    if (r.has_timeout()) redis->command_timeout = ToMillis(r.timeout());
    if (r.has_connect_timeout()) redis->connect_timeout = ToMillis(r.connect_timeout());
    if (redis->command_timeout.count() < 1) {
      return absl::InvalidArgumentError("store.redis.timeout: must be at least 1ms");
    }
    redis->password = r.password();
    redis->db = static_cast<int>(r.db());
  }
  settings->zone = GetZone(zone_name);
  RegisterCacheAdmin();

  // The zone takes this config's size and Redis tier when the config is
  // first used, not when it is checked: a config that is rejected after
  // this filter passed changes nothing.
  auto apply = std::make_shared<std::once_flag>();
  std::shared_ptr<const Settings> frozen = settings;
  return [frozen, apply, zone_bytes, redis]() -> http::FilterPtr {
    std::call_once(*apply, [&] { frozen->zone->Configure(zone_bytes, redis ? &*redis : nullptr); });
    return std::make_unique<CacheFilter>(frozen);
  };
}

}  // namespace portway::filters::cache
