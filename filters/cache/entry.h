// A stored response: what the cache keeps of one upstream answer, shared
// (immutable, behind a shared_ptr) by every stream that serves it, by the
// in-process store and, serialized, by the Redis tier.
//
// Thread safety: immutable once built; a StoredResponsePtr may be read from
// any thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace portway::cache {

using SystemTime = std::chrono::system_clock::time_point;
using Fields = std::vector<std::pair<std::string, std::string>>;

struct StoredResponse {
  // A Vary marker: not a response, but the note stored under a URL's
  // primary key that its responses vary on `vary_names`; the variants live
  // under the primary key plus the request's values of those headers.
  bool vary_marker = false;
  std::vector<std::string> vary_names;  // lowercase, in the response's order

  int status = 200;
  // The response header fields, names lowercase, without pseudo-headers and
  // hop-by-hop fields, in the order received.
  Fields headers;
  std::string body;
  Fields trailers;
  // RFC 9111 4.2.3's request_time and response_time: when the request that
  // fetched this was sent, and when its response head arrived.
  SystemTime request_time;
  SystemTime response_time;
  // The request's values of the fields Vary names, in vary_names' order
  // (empty string for an absent field).
  std::vector<std::string> vary_values;

  // What the freshness rules need, worked out once when the response is
  // stored (portway::cache::Precompute in policy.h) so a hit parses no
  // header. `valid` false: the rules read the headers instead. Not part of
  // the wire form (worked out again after decoding).
  struct Derived {
    bool valid = false;
    int64_t corrected_initial_age = 0;  // seconds, RFC 9111 4.2.3
    int64_t response_time = 0;          // seconds since the epoch
    int64_t lifetime = 0;               // seconds, no heuristics
    bool must_revalidate = false;       // must-/proxy-revalidate, s-maxage or no-cache
    bool no_cache = false;
    std::optional<int64_t> stale_while_revalidate;
    int64_t stale_if_error = 0;
  };
  Derived derived;

  // What this object costs in the store's byte budget: its bytes plus a
  // fixed allowance for the bookkeeping around them.
  size_t Charge() const {
    size_t n = sizeof(StoredResponse) + 64 + body.size();
    for (const auto& [name, value] : headers) n += name.size() + value.size() + 32;
    for (const auto& [name, value] : trailers) n += name.size() + value.size() + 32;
    for (const auto& name : vary_names) n += name.size() + 32;
    for (const auto& value : vary_values) n += value.size() + 32;
    return n;
  }
  // The first value of a (lowercase) header field, or null.
  const std::string* Header(std::string_view name) const {
    for (const auto& [n, v] : headers) {
      if (n == name) return &v;
    }
    return nullptr;
  }
};

using StoredResponsePtr = std::shared_ptr<const StoredResponse>;

}  // namespace portway::cache
