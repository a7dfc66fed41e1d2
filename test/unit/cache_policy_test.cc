// The HTTP caching rules of portway.cache (RFC 9111, RFC 5861), on
// injected times.
#include "filters/cache/policy.h"

#include "gtest/gtest.h"

namespace portway::cache {
namespace {

using namespace std::chrono_literals;
using std::chrono::seconds;

// Sun, 06 Nov 1994 08:49:37 GMT, RFC 9110's example date.
const SystemTime kExampleDate = SystemTime(784111777s);
// A round "now" for the freshness tests, far from the epoch.
const SystemTime kT0 = SystemTime(1'700'000'000s);

StoredResponse Response(Fields headers, int status = 200) {
  StoredResponse r;
  r.status = status;
  r.headers = std::move(headers);
  r.request_time = kT0;
  r.response_time = kT0;
  return r;
}

RequestPolicy Get(Fields headers = {}) { return EvaluateRequest("GET", headers); }

// --- Cache-Control -------------------------------------------------------

TEST(CacheControlTest, AbsentIsNotPresent) {
  CacheControl cc = ParseCacheControl({{"content-type", "text/plain"}});
  EXPECT_FALSE(cc.present);
  EXPECT_FALSE(cc.max_age.has_value());
}

TEST(CacheControlTest, CombinesEveryLineCaseInsensitively) {
  CacheControl cc = ParseCacheControl({{"cache-control", "Public, MAX-AGE=60"},
                                       {"x-other", "no-store"},
                                       {"cache-control", "s-maxage=30 , must-revalidate"},
                                       {"Cache-Control", "immutable,no-transform"}});
  EXPECT_TRUE(cc.present);
  EXPECT_TRUE(cc.public_);
  EXPECT_EQ(cc.max_age, 60);
  EXPECT_EQ(cc.s_maxage, 30);
  EXPECT_TRUE(cc.must_revalidate);
  EXPECT_TRUE(cc.immutable);
  EXPECT_TRUE(cc.no_transform);
  EXPECT_FALSE(cc.no_store);
}

TEST(CacheControlTest, QuotedValuesAndFieldLists) {
  CacheControl cc = ParseCacheControl(
      {{"cache-control", "max-age=\"120\", no-cache=\"set-cookie, x-a\", private=\"x-b\""}});
  EXPECT_EQ(cc.max_age, 120);
  EXPECT_TRUE(cc.no_cache);
  EXPECT_TRUE(cc.no_cache_has_fields);
  EXPECT_TRUE(cc.private_);
  EXPECT_FALSE(cc.public_);
}

TEST(CacheControlTest, CommasInsideQuotesDoNotSplitDirectives) {
  CacheControl cc = ParseCacheControl({{"cache-control", "no-cache=\"x-a,no-store,x-b\""}});
  EXPECT_TRUE(cc.no_cache_has_fields);
  EXPECT_FALSE(cc.no_store);
}

TEST(CacheControlTest, PlainNoCacheHasNoFields) {
  CacheControl cc = ParseCacheControl({{"cache-control", "no-cache"}});
  EXPECT_TRUE(cc.no_cache);
  EXPECT_FALSE(cc.no_cache_has_fields);
}

TEST(CacheControlTest, BadFreshnessNumbersMeanStaleOtherBadNumbersAreIgnored) {
  CacheControl cc = ParseCacheControl(
      {{"cache-control",
        "max-age=soon, s-maxage=-5, stale-while-revalidate=1.5, stale-if-error=x, min-fresh="}});
  EXPECT_EQ(cc.max_age, 0);
  EXPECT_EQ(cc.s_maxage, 0);
  EXPECT_FALSE(cc.stale_while_revalidate.has_value());
  EXPECT_FALSE(cc.stale_if_error.has_value());
  EXPECT_FALSE(cc.min_fresh.has_value());
}

TEST(CacheControlTest, HugeDeltaSecondsClampTo2Pow31) {
  CacheControl cc = ParseCacheControl(
      {{"cache-control", "max-age=99999999999999999999999, max-stale=2147483649"}});
  EXPECT_EQ(cc.max_age, int64_t{2147483648});
  EXPECT_EQ(cc.max_stale, int64_t{2147483648});
}

TEST(CacheControlTest, FirstOccurrenceWins) {
  CacheControl cc =
      ParseCacheControl({{"cache-control", "max-age=10"}, {"cache-control", "max-age=99"}});
  EXPECT_EQ(cc.max_age, 10);
}

TEST(CacheControlTest, MaxStaleWithAndWithoutValue) {
  EXPECT_TRUE(ParseCacheControl({{"cache-control", "max-stale"}}).max_stale_any);
  CacheControl cc = ParseCacheControl({{"cache-control", "max-stale=30"}});
  EXPECT_FALSE(cc.max_stale_any);
  EXPECT_EQ(cc.max_stale, 30);
}

// --- HTTP-date -----------------------------------------------------------

TEST(HttpDateTest, ParsesTheThreeFormsOfRfc9110) {
  for (const char* text : {"Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT",
                           "Sun Nov  6 08:49:37 1994", "  sun, 06 nov 1994 08:49:37 GMT  "}) {
    std::optional<SystemTime> t = ParseHttpDate(text);
    ASSERT_TRUE(t.has_value()) << text;
    EXPECT_EQ(*t, kExampleDate) << text;
  }
}

TEST(HttpDateTest, RejectsMalformedDates) {
  for (const char* text :
       {"", "0", "-1", "Sun, 06 Nov 1994 08:49:37 PST", "Sun, 31 Feb 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 24:00:00 GMT", "Sun, 6 Nov 1994 08:49:37 GMT",
        "Sun, 06 Foo 1994 08:49:37 GMT", "Sun, 06 Nov 94 08:49:37 GMT", "Sun Nov  6 08:49 1994",
        "Xyz, 06 Nov 1994 08:49:37 GMT"}) {
    EXPECT_FALSE(ParseHttpDate(text).has_value()) << text;
  }
}

TEST(HttpDateTest, Rfc850TwoDigitYearsPivotAt70) {
  EXPECT_EQ(ParseHttpDate("Thursday, 01-Jan-70 00:00:00 GMT"), SystemTime(0s));
  EXPECT_EQ(ParseHttpDate("Saturday, 01-Jan-00 00:00:00 GMT"), SystemTime(946684800s));
}

TEST(HttpDateTest, LeapDayAndFarFuture) {
  EXPECT_TRUE(ParseHttpDate("Thu, 29 Feb 2024 12:00:00 GMT").has_value());
  EXPECT_FALSE(ParseHttpDate("Thu, 29 Feb 2023 12:00:00 GMT").has_value());
  // Beyond SystemTime's range: clamped, still later than anything sane.
  std::optional<SystemTime> far = ParseHttpDate("Fri, 31 Dec 9999 23:59:59 GMT");
  ASSERT_TRUE(far.has_value());
  EXPECT_GT(*far, kT0 + 24h * 365 * 200);
}

TEST(HttpDateTest, FormatsImfFixdateAndRoundTrips) {
  EXPECT_EQ(FormatHttpDate(kExampleDate), "Sun, 06 Nov 1994 08:49:37 GMT");
  EXPECT_EQ(FormatHttpDate(kExampleDate + 999ms), "Sun, 06 Nov 1994 08:49:37 GMT");
  EXPECT_EQ(FormatHttpDate(SystemTime(0s)), "Thu, 01 Jan 1970 00:00:00 GMT");
  EXPECT_EQ(ParseHttpDate(FormatHttpDate(kT0)), kT0);
}

// --- Requests ------------------------------------------------------------

TEST(RequestTest, OnlyGetAndHeadAreCacheable) {
  EXPECT_TRUE(EvaluateRequest("GET", {}).cacheable);
  EXPECT_TRUE(EvaluateRequest("HEAD", {}).cacheable);
  EXPECT_FALSE(EvaluateRequest("POST", {}).cacheable);
  EXPECT_FALSE(EvaluateRequest("get", {}).cacheable);  // methods are case-sensitive
}

TEST(RequestTest, NoCacheAndPragmaBypassLookup) {
  EXPECT_FALSE(Get().bypass_lookup);
  EXPECT_TRUE(Get({{"cache-control", "no-cache"}}).bypass_lookup);
  EXPECT_TRUE(Get({{"pragma", "no-cache"}}).bypass_lookup);
  // With Cache-Control present, Pragma is ignored.
  EXPECT_FALSE(Get({{"pragma", "no-cache"}, {"cache-control", "max-age=10"}}).bypass_lookup);
}

// --- Storability ---------------------------------------------------------

struct StoreCase {
  const char* name;
  int status;
  Fields headers;
  bool has_authorization;
  bool allow_heuristic;
  const char* reason;  // "" when storable
};

TEST(CanStoreTest, Table) {
  const StoreCase cases[] = {
      {"max-age", 200, {{"cache-control", "max-age=60"}}, false, false, ""},
      {"expires", 200, {{"expires", "Sun, 06 Nov 1994 08:49:37 GMT"}}, false, false, ""},
      {"heuristic-allowed",
       200,
       {{"last-modified", "Sun, 06 Nov 1994 08:49:37 GMT"}},
       false,
       true,
       ""},
      {"heuristic-off", 200, {}, false, false, "no-freshness"},
      {"no-store", 200, {{"cache-control", "max-age=60, no-store"}}, false, true, "no-store"},
      {"private", 200, {{"cache-control", "private, max-age=60"}}, false, true, "private"},
      {"partial", 206, {{"cache-control", "max-age=60"}}, false, true, "status"},
      {"not-modified", 304, {{"cache-control", "max-age=60"}}, false, true, "status"},
      {"informational", 103, {{"cache-control", "max-age=60"}}, false, true, "status"},
      {"302-heuristic", 302, {}, false, true, "status"},
      {"302-explicit", 302, {{"cache-control", "max-age=60"}}, false, false, ""},
      {"500-expires", 500, {{"expires", "Sun, 06 Nov 1994 08:49:37 GMT"}}, false, false, ""},
      {"404-heuristic", 404, {}, false, true, ""},
      {"410-heuristic", 410, {}, false, true, ""},
      {"vary-star",
       200,
       {{"cache-control", "max-age=60"}, {"vary", "accept, *"}},
       false,
       true,
       "vary-star"},
      {"vary-ok", 200, {{"cache-control", "max-age=60"}, {"vary", "accept"}}, false, true, ""},
      {"authorization", 200, {{"cache-control", "max-age=60"}}, true, true, "authorization"},
      {"authorization-public", 200, {{"cache-control", "public, max-age=60"}}, true, true, ""},
      {"authorization-s-maxage", 200, {{"cache-control", "s-maxage=60"}}, true, true, ""},
      {"authorization-must-revalidate",
       200,
       {{"cache-control", "must-revalidate, max-age=5"}},
       true,
       true,
       ""},
      {"set-cookie",
       200,
       {{"cache-control", "max-age=60"}, {"set-cookie", "a=b"}},
       false,
       true,
       "set-cookie"},
      {"set-cookie-public",
       200,
       {{"cache-control", "public, max-age=60"}, {"set-cookie", "a=b"}},
       false,
       true,
       ""},
      {"no-cache-no-validator",
       200,
       {{"cache-control", "no-cache"}},
       false,
       true,
       "no-cache-no-validator"},
      {"no-cache-etag", 200, {{"cache-control", "no-cache"}, {"etag", "\"v1\""}}, false, true, ""},
  };
  for (const StoreCase& c : cases) {
    Storability s = CanStore(c.status, c.headers, Get(), c.has_authorization, c.allow_heuristic);
    EXPECT_EQ(s.storable, std::string(c.reason).empty()) << c.name;
    EXPECT_EQ(s.reason, c.reason) << c.name;
  }
}

TEST(CanStoreTest, RequestSideRules) {
  Fields fresh = {{"cache-control", "max-age=60"}};
  EXPECT_EQ(CanStore(200, fresh, EvaluateRequest("POST", {}), false, true).reason, "method");
  EXPECT_EQ(CanStore(200, fresh, Get({{"cache-control", "no-store"}}), false, true).reason,
            "request-no-store");
}

// --- Freshness lifetime --------------------------------------------------

TEST(FreshnessLifetimeTest, PrecedenceSMaxageMaxAgeExpiresHeuristic) {
  const std::string date = FormatHttpDate(kT0);
  const std::string expires = FormatHttpDate(kT0 + 300s);
  const std::string modified = FormatHttpDate(kT0 - 10 * 3600s);  // 10h before Date
  Fields all = {{"cache-control", "max-age=60, s-maxage=30"},
                {"date", date},
                {"expires", expires},
                {"last-modified", modified}};
  EXPECT_EQ(FreshnessLifetime(Response(all), true), 30s);
  all[0].second = "max-age=60";
  EXPECT_EQ(FreshnessLifetime(Response(all), true), 60s);
  all.erase(all.begin());
  EXPECT_EQ(FreshnessLifetime(Response(all), true), 300s);
  all.erase(all.begin() + 1);                                // expires
  EXPECT_EQ(FreshnessLifetime(Response(all), true), 3600s);  // 10% of 10h
  EXPECT_EQ(FreshnessLifetime(Response(all), false), 0s);
}

TEST(FreshnessLifetimeTest, HeuristicCappedAtOneDayAndOnlyForHeuristicStatuses) {
  Fields headers = {{"date", FormatHttpDate(kT0)},
                    {"last-modified", FormatHttpDate(kT0 - 24h * 365)}};
  EXPECT_EQ(FreshnessLifetime(Response(headers), true), 24h);
  EXPECT_EQ(FreshnessLifetime(Response(headers, 302), true), 0s);
  // Last-Modified after Date: nothing to go on.
  headers[1].second = FormatHttpDate(kT0 + 1h);
  EXPECT_EQ(FreshnessLifetime(Response(headers), true), 0s);
}

TEST(FreshnessLifetimeTest, InvalidOrPastExpiresIsStale) {
  for (const char* value : {"0", "-1", "garbage", "Sun, 06 Nov 1994 08:49:37 GMT"}) {
    StoredResponse r = Response({{"date", FormatHttpDate(kT0)}, {"expires", value}});
    EXPECT_EQ(FreshnessLifetime(r, true), 0s) << value;
  }
}

TEST(FreshnessLifetimeTest, ExpiresWithoutDateUsesResponseTime) {
  StoredResponse r = Response({{"expires", FormatHttpDate(kT0 + 90s)}});
  EXPECT_EQ(FreshnessLifetime(r, false), 90s);
}

TEST(FreshnessLifetimeTest, InvalidMaxAgeOverridesExpires) {
  StoredResponse r = Response({{"cache-control", "max-age=abc"},
                               {"date", FormatHttpDate(kT0)},
                               {"expires", FormatHttpDate(kT0 + 3600s)}});
  EXPECT_EQ(FreshnessLifetime(r, true), 0s);
}

// --- Age -----------------------------------------------------------------

struct AgeCase {
  const char* name;
  seconds request_before_response;              // response_time - request_time
  std::optional<seconds> date_before_response;  // response_time - Date, none: no Date
  const char* age_header;                       // nullptr: none
  seconds resident;                             // now - response_time
  seconds expected;
};

TEST(CurrentAgeTest, Rfc9111Section423) {
  const AgeCase cases[] = {
      {"fresh-from-origin", 0s, 0s, nullptr, 0s, 0s},
      {"resident-time", 0s, 0s, nullptr, 100s, 100s},
      {"apparent-age", 0s, 20s, nullptr, 10s, 30s},
      {"age-header-plus-delay", 2s, 0s, "50", 10s, 62s},
      {"apparent-age-wins-over-small-age", 1s, 100s, "5", 0s, 100s},
      {"no-date", 3s, std::nullopt, "7", 5s, 15s},
      {"invalid-age", 0s, 0s, "ten", 5s, 5s},
      {"date-in-the-future", 0s, -30s, nullptr, 5s, 5s},
      {"clock-stepped-back", 0s, 0s, nullptr, -50s, 0s},
  };
  for (const AgeCase& c : cases) {
    Fields headers;
    if (c.date_before_response)
      headers.emplace_back("date", FormatHttpDate(kT0 - *c.date_before_response));
    if (c.age_header) headers.emplace_back("age", c.age_header);
    StoredResponse r = Response(headers);
    r.request_time = kT0 - c.request_before_response;
    EXPECT_EQ(CurrentAge(r, kT0 + c.resident), c.expected) << c.name;
  }
}

// --- Evaluate ------------------------------------------------------------

struct EvalCase {
  const char* name;
  const char* response_cc;
  Fields request;
  seconds age;  // resident time; Date == response time
  Freshness expected;
};

TEST(EvaluateTest, Table) {
  const EvalCase cases[] = {
      {"fresh", "max-age=60", {}, 59s, Freshness::kFresh},
      {"stale-at-lifetime", "max-age=60", {}, 60s, Freshness::kStale},
      {"swr-window",
       "max-age=60, stale-while-revalidate=30",
       {},
       90s,
       Freshness::kStaleWhileRevalidate},
      {"swr-past-window", "max-age=60, stale-while-revalidate=30", {}, 91s, Freshness::kStale},
      {"swr-but-must-revalidate",
       "max-age=60, stale-while-revalidate=30, must-revalidate",
       {},
       70s,
       Freshness::kStale},
      {"response-no-cache", "max-age=600, no-cache", {}, 0s, Freshness::kStale},
      {"request-no-cache", "max-age=600", {{"cache-control", "no-cache"}}, 0s, Freshness::kStale},
      {"request-pragma", "max-age=600", {{"pragma", "no-cache"}}, 0s, Freshness::kStale},
      {"request-max-age-ok",
       "max-age=600",
       {{"cache-control", "max-age=100"}},
       100s,
       Freshness::kFresh},
      {"request-max-age-exceeded",
       "max-age=600",
       {{"cache-control", "max-age=100"}},
       101s,
       Freshness::kStale},
      {"request-max-age-zero",
       "max-age=600",
       {{"cache-control", "max-age=0"}},
       1s,
       Freshness::kStale},
      {"min-fresh-ok",
       "max-age=600",
       {{"cache-control", "min-fresh=100"}},
       500s,
       Freshness::kFresh},
      {"min-fresh-fails",
       "max-age=600",
       {{"cache-control", "min-fresh=100"}},
       501s,
       Freshness::kStale},
      {"max-stale-within",
       "max-age=60",
       {{"cache-control", "max-stale=30"}},
       90s,
       Freshness::kFresh},
      {"max-stale-beyond",
       "max-age=60",
       {{"cache-control", "max-stale=30"}},
       91s,
       Freshness::kStale},
      {"max-stale-any", "max-age=60", {{"cache-control", "max-stale"}}, 100000s, Freshness::kFresh},
      {"max-stale-vs-must-revalidate",
       "max-age=60, must-revalidate",
       {{"cache-control", "max-stale"}},
       61s,
       Freshness::kStale},
      {"max-stale-vs-s-maxage",
       "s-maxage=60",
       {{"cache-control", "max-stale"}},
       61s,
       Freshness::kStale},
  };
  for (const EvalCase& c : cases) {
    StoredResponse r = Response({{"date", FormatHttpDate(kT0)}, {"cache-control", c.response_cc}});
    Evaluation ev = Evaluate(r, Get(c.request), kT0 + c.age, true);
    EXPECT_EQ(ev.freshness, c.expected) << c.name;
    EXPECT_EQ(ev.age, c.age) << c.name;
  }
}

TEST(EvaluateTest, ReportsLifetimeRevalidationAndStaleIfError) {
  StoredResponse r = Response({{"cache-control", "max-age=60, stale-if-error=300"}});
  Evaluation ev = Evaluate(r, Get(), kT0 + 10s, true);
  EXPECT_EQ(ev.lifetime, 60s);
  EXPECT_EQ(ev.stale_if_error, 300s);
  EXPECT_FALSE(ev.must_revalidate);
  for (const char* cc :
       {"max-age=1, must-revalidate", "max-age=1, proxy-revalidate", "s-maxage=1", "no-cache"}) {
    EXPECT_TRUE(Evaluate(Response({{"cache-control", cc}}), Get(), kT0, true).must_revalidate)
        << cc;
  }
}

TEST(EvaluateTest, AgeHeaderCountsTowardsStaleness) {
  StoredResponse r = Response({{"cache-control", "max-age=60"}, {"age", "55"}});
  EXPECT_EQ(Evaluate(r, Get(), kT0 + 4s, true).freshness, Freshness::kFresh);
  EXPECT_EQ(Evaluate(r, Get(), kT0 + 5s, true).freshness, Freshness::kStale);
}

TEST(StaleOnErrorTest, Limits) {
  StoredResponse r = Response({{"cache-control", "max-age=60, stale-if-error=100"}});
  auto serve = [&](seconds resident, Fields request, seconds configured) {
    RequestPolicy req = Get(request);
    return CanServeStaleOnError(Evaluate(r, req, kT0 + resident, true), req, configured);
  };
  EXPECT_TRUE(serve(160s, {}, 0s));  // staleness 100 <= response's 100
  EXPECT_FALSE(serve(161s, {}, 0s));
  EXPECT_TRUE(serve(260s, {}, 200s));  // configured limit is larger
  EXPECT_TRUE(serve(300s, {{"cache-control", "stale-if-error=240"}}, 0s));
  EXPECT_FALSE(serve(301s, {{"cache-control", "stale-if-error=240"}}, 0s));
  // A no-cache request only accepts what it asks for itself.
  EXPECT_FALSE(serve(100s, {{"cache-control", "no-cache"}}, 1000s));
  EXPECT_TRUE(serve(100s, {{"cache-control", "no-cache, stale-if-error=50"}}, 0s));

  StoredResponse strict =
      Response({{"cache-control", "max-age=60, must-revalidate, stale-if-error=100"}});
  EXPECT_FALSE(CanServeStaleOnError(Evaluate(strict, Get(), kT0 + 61s, true), Get(), 1000s));
  StoredResponse plain = Response({{"cache-control", "max-age=60"}});
  EXPECT_FALSE(CanServeStaleOnError(Evaluate(plain, Get(), kT0 + 61s, true), Get(), 0s));
}

// --- Vary ----------------------------------------------------------------

TEST(VaryTest, NamesLowercasedTrimmedDeduped) {
  EXPECT_EQ(VaryNames({{"vary", " Accept-Encoding ,Accept-Language"},
                       {"content-type", "x"},
                       {"vary", "accept-encoding, , Origin"}}),
            (std::vector<std::string>{"accept-encoding", "accept-language", "origin"}));
  EXPECT_EQ(VaryNames({{"vary", "*"}}), (std::vector<std::string>{"*"}));
  EXPECT_TRUE(VaryNames({}).empty());
}

TEST(VaryTest, ValuesJoinedAndNormalized) {
  Fields request = {{"accept-encoding", "gzip,br"},
                    {"accept-language", "  en-US ,   fr;q=0.5 "},
                    {"accept-encoding", "zstd"},
                    {"user-agent", "Mozilla/5.0  (X11;\tLinux)"}};
  EXPECT_EQ(VaryValues({"accept-encoding", "accept-language", "origin", "user-agent"}, request),
            (std::vector<std::string>{"gzip, br, zstd", "en-US, fr;q=0.5", "",
                                      "Mozilla/5.0 (X11; Linux)"}));
  // Differently spaced lists of the same values select the same variant.
  EXPECT_EQ(
      VaryValues({"accept-encoding"}, {{"accept-encoding", "gzip , br"}}),
      VaryValues({"accept-encoding"}, {{"accept-encoding", "gzip"}, {"accept-encoding", "br"}}));
}

// --- Revalidation ----------------------------------------------------------

TEST(RevalidationTest, ConditionalHeadersFromValidators) {
  const std::string modified = "Sun, 06 Nov 1994 08:49:37 GMT";
  EXPECT_EQ(ConditionalHeaders(Response({{"etag", "W/\"v1\""}, {"last-modified", modified}})),
            (Fields{{"if-none-match", "W/\"v1\""}, {"if-modified-since", modified}}));
  EXPECT_EQ(ConditionalHeaders(Response({{"last-modified", modified}})),
            (Fields{{"if-modified-since", modified}}));
  EXPECT_TRUE(ConditionalHeaders(Response({{"last-modified", "yesterday"}})).empty());
  EXPECT_TRUE(ConditionalHeaders(Response({{"content-type", "text/html"}})).empty());
}

TEST(RevalidationTest, MergeNotModifiedReplacesFieldsKeepsBodyAndLength) {
  StoredResponse stored = Response({{"content-type", "text/html"},
                                    {"content-length", "5"},
                                    {"cache-control", "max-age=10"},
                                    {"etag", "\"v1\""},
                                    {"x-old", "a"},
                                    {"x-old", "b"},
                                    {"age", "300"},
                                    {"date", FormatHttpDate(kT0)}});
  stored.body = "hello";
  const SystemTime later = kT0 + 1000s;
  StoredResponse merged = MergeNotModified(stored,
                                           {{"cache-control", "max-age=600"},
                                            {"content-length", "0"},
                                            {"x-old", "c"},
                                            {"connection", "x-hop"},
                                            {"x-hop", "1"},
                                            {"keep-alive", "timeout=5"},
                                            {"date", FormatHttpDate(later)}},
                                           later - 1s, later);
  EXPECT_EQ(merged.body, "hello");
  EXPECT_EQ(merged.status, 200);
  EXPECT_EQ(merged.request_time, later - 1s);
  EXPECT_EQ(merged.response_time, later);
  EXPECT_EQ(merged.headers, (Fields{{"content-type", "text/html"},
                                    {"content-length", "5"},
                                    {"etag", "\"v1\""},
                                    {"cache-control", "max-age=600"},
                                    {"x-old", "c"},
                                    {"date", FormatHttpDate(later)}}));
  // Fresh again from the revalidation: the old Age is gone.
  Evaluation ev = Evaluate(merged, Get(), later + 5s, true);
  EXPECT_EQ(ev.age, 6s);
  EXPECT_EQ(ev.freshness, Freshness::kFresh);
}

TEST(RevalidationTest, MergeWithoutDateUsesTheResponseTime) {
  StoredResponse stored =
      Response({{"date", FormatHttpDate(kT0)}, {"cache-control", "max-age=60"}});
  const SystemTime later = kT0 + 3600s;
  StoredResponse merged = MergeNotModified(stored, {{"age", "3"}}, later, later);
  EXPECT_EQ(
      merged.headers,
      (Fields{{"cache-control", "max-age=60"}, {"age", "3"}, {"date", FormatHttpDate(later)}}));
  EXPECT_EQ(CurrentAge(merged, later), 3s);
}

// --- Client conditionals ---------------------------------------------------

struct ConditionalCase {
  const char* name;
  Fields request;
  bool expected;
};

TEST(ClientNotModifiedTest, Table) {
  const std::string modified = FormatHttpDate(kT0 - 100s);
  StoredResponse r =
      Response({{"etag", "W/\"abc\""}, {"last-modified", modified}, {"date", FormatHttpDate(kT0)}});
  const ConditionalCase cases[] = {
      {"none", {}, false},
      {"weak-matches-weak", {{"if-none-match", "W/\"abc\""}}, true},
      {"strong-matches-weak", {{"if-none-match", "\"abc\""}}, true},
      {"list", {{"if-none-match", "\"x\", W/\"y\",\"abc\""}}, true},
      {"list-over-lines", {{"if-none-match", "\"x\""}, {"if-none-match", "\"abc\""}}, true},
      {"no-match", {{"if-none-match", "\"abcd\", \"ab\""}}, false},
      {"star", {{"if-none-match", "*"}}, true},
      {"inm-beats-ims",
       {{"if-none-match", "\"other\""}, {"if-modified-since", FormatHttpDate(kT0)}},
       false},
      {"ims-equal", {{"if-modified-since", modified}}, true},
      {"ims-later", {{"if-modified-since", FormatHttpDate(kT0)}}, true},
      {"ims-earlier", {{"if-modified-since", FormatHttpDate(kT0 - 101s)}}, false},
      {"ims-invalid", {{"if-modified-since", "last week"}}, false},
  };
  for (const ConditionalCase& c : cases) {
    EXPECT_EQ(ClientNotModified(c.request, r), c.expected) << c.name;
  }
}

TEST(ClientNotModifiedTest, EdgeCases) {
  // A comma inside a quoted tag is part of the tag.
  StoredResponse comma = Response({{"etag", "\"a,b\""}});
  EXPECT_TRUE(ClientNotModified({{"if-none-match", "\"x\", \"a,b\""}}, comma));
  EXPECT_FALSE(ClientNotModified({{"if-none-match", "\"a\""}}, comma));
  // No ETag: only "*" matches.
  StoredResponse untagged = Response({{"date", FormatHttpDate(kT0)}});
  EXPECT_FALSE(ClientNotModified({{"if-none-match", "\"a\""}}, untagged));
  EXPECT_TRUE(ClientNotModified({{"if-none-match", "*"}}, untagged));
  // No Last-Modified: compared with Date.
  EXPECT_TRUE(ClientNotModified({{"if-modified-since", FormatHttpDate(kT0)}}, untagged));
  EXPECT_FALSE(ClientNotModified({{"if-modified-since", FormatHttpDate(kT0 - 1s)}}, untagged));
  // A stored 404 never becomes a 304.
  StoredResponse missing = Response({{"etag", "\"a\""}}, 404);
  EXPECT_FALSE(ClientNotModified({{"if-none-match", "\"a\""}}, missing));
}

// --- Small helpers ---------------------------------------------------------

TEST(HelpersTest, HopByHop) {
  for (const char* name :
       {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
        "upgrade", "proxy-authenticate", "proxy-authorization"}) {
    EXPECT_TRUE(IsHopByHop(name)) << name;
  }
  for (const char* name : {"content-length", "trailers", "authorization", "cache-control", ""}) {
    EXPECT_FALSE(IsHopByHop(name)) << name;
  }
}

TEST(HelpersTest, AgeValue) {
  EXPECT_EQ(AgeValue(0s), "0");
  EXPECT_EQ(AgeValue(3600s), "3600");
  EXPECT_EQ(AgeValue(-5s), "0");
  EXPECT_EQ(AgeValue(seconds(int64_t{1} << 40)), "2147483648");
}

}  // namespace
}  // namespace portway::cache
