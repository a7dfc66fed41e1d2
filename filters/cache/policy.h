// The HTTP caching rules of portway.cache, for a shared cache (RFC 9111,
// with RFC 5861's stale-while-revalidate and stale-if-error): what may be
// stored, how long it stays fresh, how old it is, whether it may be served
// for a given request, how to revalidate it and how to merge the answer.
//
// Everything here is a pure function of its arguments: no I/O, no clock
// (callers pass `now` and the request/response times), no dependency on the
// gateway's header map. Header fields come as `Fields` with lowercase names
// (names are also compared case-insensitively, so a stray uppercase name is
// not missed); a field that appears on several lines is combined as RFC 9110
// 5.3 says.
//
// Thread safety: stateless; every function may be called from any thread.
//
// Example, on a response arriving for a GET:
//
//   RequestPolicy req = EvaluateRequest("GET", request_fields);
//   Storability s = CanStore(status, response_fields, req, has_authorization,
//                            /*allow_heuristic=*/true);
//   if (s.storable) { ...build a StoredResponse and keep it... }
//
// and on a later lookup:
//
//   Evaluation ev = Evaluate(stored, req, now, /*allow_heuristic=*/true);
//   switch (ev.freshness) {
//     case Freshness::kFresh: serve it (with Age: AgeValue(ev.age)).
//     case Freshness::kStaleWhileRevalidate: serve it, refresh in the background.
//     case Freshness::kStale: send ConditionalHeaders(stored) upstream; on a
//       304 serve MergeNotModified(...); on an error serve the stale entry
//       only if CanServeStaleOnError(ev, req, configured_max_stale).
//   }
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "filters/cache/entry.h"

namespace portway::cache {

// The largest delta-seconds value kept (RFC 9111 1.2.2): greater values, and
// sums that would overflow, become this.
inline constexpr int64_t kMaxDeltaSeconds = int64_t{1} << 31;

// Every Cache-Control line of a message, combined. A directive that appears
// twice keeps its first value (RFC 9111 4.2.1 allows that). Unknown
// directives (must-understand included) are ignored.
struct CacheControl {
  bool present = false;  // some cache-control line was there, even empty
  bool no_store = false;
  // Set for both forms of no-cache. The qualified form (no-cache="field")
  // also sets no_cache_has_fields; this library treats it like the plain
  // form, which RFC 9111 5.2.2.4 allows.
  bool no_cache = false;
  bool private_ = false;  // both forms; private="field" is treated as plain private
  bool public_ = false;
  bool must_revalidate = false;
  bool proxy_revalidate = false;
  bool no_transform = false;
  bool only_if_cached = false;
  bool immutable = false;
  // In seconds, clamped to kMaxDeltaSeconds. max-age and s-maxage that are
  // not valid delta-seconds (e.g. "max-age=soon", "max-age=-1") read as 0,
  // so the response counts as stale (RFC 9111 4.2.1); any other directive
  // with a bad number is ignored.
  std::optional<int64_t> max_age;
  std::optional<int64_t> s_maxage;
  std::optional<int64_t> stale_while_revalidate;
  std::optional<int64_t> stale_if_error;
  std::optional<int64_t> min_fresh;
  std::optional<int64_t> max_stale;
  bool max_stale_any = false;  // max-stale without a value
  bool no_cache_has_fields = false;
};

CacheControl ParseCacheControl(const Fields& headers);

// An HTTP-date (RFC 9110 5.6.7) in any of its three forms: IMF-fixdate
// ("Sun, 06 Nov 1994 08:49:37 GMT"), RFC 850 ("Sunday, 06-Nov-94 08:49:37
// GMT"; a two-digit year below 70 is 20yy, else 19yy) and asctime ("Sun Nov
// 6 08:49:37 1994"). Names are matched case-insensitively and surrounding
// whitespace is ignored; anything else malformed (a day the month does not
// have, an hour of 24, a zone other than GMT) is nullopt.
std::optional<SystemTime> ParseHttpDate(std::string_view text);
// IMF-fixdate, to the second (the fraction is dropped).
std::string FormatHttpDate(SystemTime time);

struct RequestPolicy {
  bool cacheable = false;      // GET or HEAD: may be looked up, and its response stored
  bool bypass_lookup = false;  // no-cache (or, without Cache-Control, Pragma: no-cache):
                               // a stored response must be revalidated before use
  CacheControl cc;
};

RequestPolicy EvaluateRequest(std::string_view method, const Fields& headers);

struct Storability {
  bool storable = false;
  // Why not, when not storable: "method", "request-no-store", "no-store",
  // "private", "authorization", "status", "vary-star", "set-cookie",
  // "no-freshness" (no explicit freshness and heuristics off or not
  // allowed), "no-cache-no-validator". Empty when storable.
  std::string reason;
};

// Whether a response (to the request `req` describes) may be stored by a
// shared cache (RFC 9111 3). `has_authorization`: the request carried
// Authorization; then only a response with public, s-maxage or
// must-revalidate may be stored (3.5).
//
// Statuses: 200, 203, 204, 300, 301, 308, 404, 405, 410, 414 and 501 are
// heuristically cacheable and are stored with explicit freshness (max-age,
// s-maxage or Expires) or, when `allow_heuristic`, without. Other final
// statuses are stored only with explicit freshness. 206 is never stored
// (partial content is not cached), nor 1xx or 304.
//
// Policy choices beyond the RFC:
// - Set-Cookie: a response that sets a cookie is not stored unless it says
//   public or s-maxage, so one client's cookie is never replayed to another
//   by accident; when it does say so, the cache stores it as it is.
// - A no-cache response is stored only with a validator (ETag or
//   Last-Modified): every use needs revalidation, and without a validator
//   that is a full fetch, so storing it would gain nothing.
Storability CanStore(int status, const Fields& response_headers, const RequestPolicy& req,
                     bool has_authorization, bool allow_heuristic);

// RFC 9111 4.2.1: s-maxage, else max-age, else Expires - Date (Date absent:
// the response time; Expires invalid: 0), else, when `allow_heuristic` and
// the status is heuristically cacheable (see CanStore), 10% of Date -
// Last-Modified capped at 24 hours (4.2.2), else 0. Never negative.
std::chrono::seconds FreshnessLifetime(const StoredResponse& response, bool allow_heuristic);

// RFC 9111 4.2.3's current_age, from the Age and Date fields and the
// request/response times; a missing or invalid Date counts as the response
// time, a missing or invalid Age as 0, and clock steps backwards as 0.
std::chrono::seconds CurrentAge(const StoredResponse& response, SystemTime now);

// Fills response.derived from its headers and times (call once it is
// complete, before it is shared): the rules below then parse nothing.
void Precompute(StoredResponse& response);

enum class Freshness {
  kFresh,                 // serve it as it is
  kStaleWhileRevalidate,  // serve it, and revalidate in the background (RFC 5861 3)
  kStale,                 // revalidate (or fetch) before serving
};

struct Evaluation {
  Freshness freshness = Freshness::kStale;
  std::chrono::seconds age{0};
  std::chrono::seconds lifetime{0};
  // No stale serving at all: the response has must-revalidate,
  // proxy-revalidate, s-maxage or no-cache.
  bool must_revalidate = false;
  std::chrono::seconds stale_if_error{0};  // the response's stale-if-error, 0 if none
};

// Whether `response` may answer the request `req` describes, at `now`.
// The response is fresh while age < lifetime. The request narrows that with
// max-age (age must not exceed it), min-fresh (lifetime - age must be at
// least it) and no-cache (always kStale), and widens it with max-stale
// (a stale response within it is kFresh for this request). A stale response
// within its stale-while-revalidate window is kStaleWhileRevalidate. A
// response with no-cache is always kStale; one that must_revalidate is never
// served stale.
Evaluation Evaluate(const StoredResponse& response, const RequestPolicy& req, SystemTime now,
                    bool allow_heuristic);

// Whether a stale response may be served because revalidation failed (an
// error status or no answer, RFC 5861 4): not when it must_revalidate, and
// only while its staleness (age - lifetime) is at most the largest of the
// response's stale-if-error, the request's stale-if-error and
// `configured_max_stale`. A request with no-cache only allows it through
// its own stale-if-error.
bool CanServeStaleOnError(const Evaluation& evaluation, const RequestPolicy& req,
                          std::chrono::seconds configured_max_stale);

// The field names of every Vary line: lowercase, trimmed, without
// duplicates, in first-seen order. "*" is kept (such a response is not
// storable; see CanStore).
std::vector<std::string> VaryNames(const Fields& headers);
// The request's value of each named field, in `names`' order: its lines
// joined with ", ", list elements trimmed and joined with ", " (so
// "gzip,br" and "gzip , br" match), runs of spaces and tabs made one space;
// "" for an absent field.
std::vector<std::string> VaryValues(const std::vector<std::string>& names,
                                    const Fields& request_headers);

// The validators for revalidating `response` (RFC 9111 4.3.1):
// if-none-match from its ETag and if-modified-since from its Last-Modified
// (only if that is a valid date), either or both; empty without validators.
Fields ConditionalHeaders(const StoredResponse& response);

// `stored` updated by a 304 to a revalidation (RFC 9111 4.3.4, 3.2): each
// field the 304 carries replaces every stored line of that name, except
// content-length, content-encoding, content-range, transfer-encoding and
// hop-by-hop fields. Age and Date are always the 304's: a stored Age the 304
// lacks is dropped, and a missing Date becomes `response_time`, so the age
// is reckoned from the revalidation. Status, body, trailers and Vary
// bookkeeping are kept; the times are the new ones.
StoredResponse MergeNotModified(const StoredResponse& stored, const Fields& not_modified_headers,
                                SystemTime request_time, SystemTime response_time);

// Whether the client's own conditionals let the cache answer 304 from
// `response` (RFC 9110 13.1.2, 13.1.3, 13.2.2): If-None-Match ("*" or a
// list, weak comparison) when present, else If-Modified-Since against
// Last-Modified (or Date, or the response time). Only a 2xx stored response
// answers 304; an unparseable If-Modified-Since is ignored. The caller
// asks only for GET and HEAD requests (RFC 9110 13.1.3: If-Modified-Since
// means nothing for other methods).
bool ClientNotModified(const Fields& request_headers, const StoredResponse& response);

// The hop-by-hop fields RFC 9110 7.6.1 names, plus keep-alive,
// proxy-connection, proxy-authenticate and proxy-authorization, which are
// never forwarded or stored.
bool IsHopByHop(std::string_view lowercase_name);
// An Age field value: whole seconds, negative as 0, capped at
// kMaxDeltaSeconds.
std::string AgeValue(std::chrono::seconds age);

}  // namespace portway::cache
