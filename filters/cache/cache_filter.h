// portway.cache: an RFC 9111 shared cache whose headline is the answer it
// gives when the upstream fails: the stored copy, marked
// "x-portway-cache: STALE; cause=<why>", in place of a 502/503/504 (see
// docs/filters/cache.md). SDK only.
//
// A stream's life in the filter:
//   DecodeHeaders  not GET/HEAD (or a Range request): BYPASS. Else look the
//                  key up (the process's zone, then Redis): fresh -> HIT,
//                  answered here; within stale-while-revalidate -> STALE
//                  at once, and a side request refreshes it behind;
//                  stale or absent -> upstream, with the
//                  stored validators, the stored copy kept for the failure
//                  path. A miss already being fetched by another stream
//                  waits for it (coalescing).
//   EncodeHeaders  a failure in serve_stale_on (a local reply's cause or an
//                  upstream 5xx) with a copy the rules allow -> STALE,
//                  replacing the response; a 304 to our validators ->
//                  REVALIDATED (the stored copy with the new headers);
//                  a storable response -> MISS, and the body is teed.
//   EncodeData     tees up to max_object_bytes; at the end, stores.
//
// Thread safety: a filter lives on its stream's worker. Settings are
// immutable; the zone is shared (zone.h). Answers from Redis and wakes
// from coalescing arrive through the worker's poster and find the filter
// through a weak token, so a stream that ended meanwhile is left alone.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "filters/cache/policy.h"
#include "filters/cache/zone.h"
#include "portway/filter.h"
#include "portway/filter_factory.h"

namespace portway::filters::cache {

// What serve_stale_on can name.
enum StaleOn : uint32_t {
  kOnConnectFailure = 1u << 0,
  kOnReset = 1u << 1,
  kOnTimeout = 1u << 2,
  kOn500 = 1u << 3,
  kOn502 = 1u << 4,
  kOn503 = 1u << 5,
  kOn504 = 1u << 6,
  kOnCircuitOpen = 1u << 7,
  kOnNoHealthyUpstream = 1u << 8,
  kOnOverflow = 1u << 9,
  kOnAll = (1u << 10) - 1,
};

struct Settings {
  std::shared_ptr<Zone> zone;
  bool key_host = true;
  bool key_query = true;
  std::vector<std::string> key_headers;  // lowercase
  size_t max_object_bytes = 1 << 20;
  uint32_t stale_on = kOnAll;
  std::chrono::seconds max_stale{86400};
  bool last_good = false;
  uint32_t max_waiters = 256;
  std::chrono::milliseconds coalesce_timeout{5000};
};

class CacheFilter : public http::Filter {
 public:
  explicit CacheFilter(std::shared_ptr<const Settings> settings);
  ~CacheFilter() override;

  uint32_t Phases() const override {
    return http::Phase::kDecodeHeaders | http::Phase::kEncodeHeaders | http::Phase::kEncodeData |
           http::Phase::kEncodeTrailers | http::Phase::kDestroy;
  }
  void SetCallbacks(http::FilterCallbacks& callbacks) override { callbacks_ = &callbacks; }
  http::FilterHeadersStatus DecodeHeaders(http::HeaderMap& headers, bool end_stream) override;
  http::FilterHeadersStatus EncodeHeaders(http::HeaderMap& headers, bool end_stream) override;
  http::FilterDataStatus EncodeData(Buffer& data, bool end_stream) override;
  http::FilterTrailersStatus EncodeTrailers(http::HeaderMap& trailers) override;
  void OnDestroy() override;

 private:
  enum class State {
    kStart,
    kBypass,    // not ours: passes through, marked BYPASS
    kLookup,    // waiting for Redis
    kWaiting,   // waiting for another stream's fetch of the key
    kUpstream,  // the request went upstream (a miss or a revalidation)
    kAnswered,  // we sent the response
  };

  // Looks the key up in the zone (following a Vary marker). Null: absent.
  StoredResponsePtr LookupLocal() const;
  // With what the lookups found (maybe nothing): answer, wait, or go
  // upstream. `may_wait`: coalescing and Redis are still to be tried.
  // Returns true when the request goes on upstream.
  bool Decide(StoredResponsePtr found, bool may_ask_redis, bool may_wait);
  void AskRedis();
  // Serves `stored` while a side request refreshes it (RFC 5861
  // stale-while-revalidate).
  void RevalidateInBackground(const StoredResponsePtr& stored);
  void OnRedis(StoredResponsePtr found);
  void OnWake();
  // The request goes upstream: our validators added for a stored copy.
  void PrepareUpstream();
  // Continues the held request (after an asynchronous step).
  void Resume(bool upstream);
  // Answers with `stored`, labelled (HIT, STALE; cause=..., REVALIDATED).
  bool Serve(const StoredResponsePtr& stored, std::string label, std::string flag,
             std::string detail = "");
  // The failure this response stands for, if serve_stale_on names it:
  // its name for the STALE label; nullopt otherwise.
  std::optional<std::string> StaleCause(const http::HeaderMap& headers) const;
  void Store(StoredResponsePtr response);
  void FinishStoring();
  void ReleaseFetch();

  const std::shared_ptr<const Settings> settings_;
  Zone& zone_;
  http::FilterCallbacks* callbacks_ = nullptr;
  State state_ = State::kStart;
  // Held while the request waits (kLookup, kWaiting): the head stays
  // alive in the chain until Continue().
  http::HeaderMap* request_ = nullptr;
  portway::cache::Fields request_fields_;
  portway::cache::RequestPolicy policy_;
  bool head_request_ = false;
  bool has_authorization_ = false;
  bool client_conditional_ = false;  // If-None-Match or If-Modified-Since
  bool unsafe_ = false;              // POST, PUT, DELETE, PATCH: a success invalidates
  bool followed_vary_ = false;       // a Redis marker was followed to a variant
  std::string key_;
  // The copy found for this request (stale, or the one a no-cache request
  // revalidates): what a failure is answered with and a 304 updates.
  StoredResponsePtr stored_;
  bool sent_validators_ = false;
  SystemTime request_time_;
  // The response being teed into the store.
  std::unique_ptr<StoredResponse> pending_;
  bool leader_ = false;
  std::unique_ptr<http::FilterTimer> wait_timer_;
  std::shared_ptr<http::WorkerPoster> worker_;
  // Expires with the filter: late answers from other threads check it.
  std::shared_ptr<CacheFilter*> alive_;
};

class CacheFactory : public http::FilterFactory {
 public:
  std::string_view Name() const override { return "portway.cache"; }
  std::unique_ptr<google::protobuf::Message> NewConfig() const override;
  absl::StatusOr<http::FilterFactoryCallback> Create(
      const google::protobuf::Message& config) const override;
};

}  // namespace portway::filters::cache
