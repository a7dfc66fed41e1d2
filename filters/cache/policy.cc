#include "filters/cache/policy.h"

#include <algorithm>
#include <array>
#include <cstdio>

namespace portway::cache {
namespace {

using std::chrono::seconds;

// Time arithmetic is done in whole seconds on int64: SystemTime counts
// nanoseconds, so subtracting two far-apart times (a 1970 Date from a
// year-9999 Expires) could overflow it.
int64_t ToSeconds(SystemTime t) {
  return std::chrono::floor<seconds>(t).time_since_epoch().count();
}

int64_t ClampDelta(int64_t s) { return std::clamp<int64_t>(s, 0, kMaxDeltaSeconds); }

// ASCII helpers of our own: the library depends on nothing but the standard
// library (and the system abseil's string_view is not std::string_view).
char LowerAscii(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (LowerAscii(a[i]) != LowerAscii(b[i])) return false;
  }
  return true;
}

std::string ToLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = LowerAscii(c);
  return out;
}

bool IsOws(char c) { return c == ' ' || c == '\t'; }

std::string_view TrimOws(std::string_view s) {
  while (!s.empty() && IsOws(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsOws(s.back())) s.remove_suffix(1);
  return s;
}

// The elements of a comma-separated list (RFC 9110 5.6.1), trimmed, empty
// ones dropped. Commas inside quoted strings do not split.
std::vector<std::string_view> SplitList(std::string_view value) {
  std::vector<std::string_view> out;
  bool quoted = false;
  size_t start = 0;
  for (size_t i = 0; i <= value.size(); ++i) {
    if (i < value.size()) {
      char c = value[i];
      if (quoted && c == '\\') {
        ++i;  // the escaped character cannot end the string
        continue;
      }
      if (c == '"') quoted = !quoted;
      if (quoted || c != ',') continue;
    }
    std::string_view element = TrimOws(value.substr(start, i - start));
    if (!element.empty()) out.push_back(element);
    start = i + 1;
  }
  return out;
}

// The content of a quoted-string, unescaped; anything else as it is.
std::string Unquote(std::string_view s) {
  if (s.size() < 2 || s.front() != '"' || s.back() != '"') return std::string(s);
  std::string out;
  for (size_t i = 1; i + 1 < s.size(); ++i) {
    if (s[i] == '\\' && i + 2 < s.size()) ++i;
    out.push_back(s[i]);
  }
  return out;
}

// delta-seconds (RFC 9111 1.2.2): digits only, clamped to 2^31.
std::optional<int64_t> ParseDeltaSeconds(std::string_view s) {
  if (s.empty()) return std::nullopt;
  int64_t n = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    n = std::min<int64_t>(n * 10 + (c - '0'), kMaxDeltaSeconds);
  }
  return n;
}

const std::string* FirstValue(const Fields& fields, std::string_view name) {
  for (const auto& [n, v] : fields) {
    if (EqualsIgnoreCase(n, name)) return &v;
  }
  return nullptr;
}

bool Has(const Fields& fields, std::string_view name) {
  return FirstValue(fields, name) != nullptr;
}

std::optional<SystemTime> DateField(const Fields& fields, std::string_view name) {
  const std::string* value = FirstValue(fields, name);
  if (value == nullptr) return std::nullopt;
  return ParseHttpDate(*value);
}

// RFC 9110 15.1's heuristically cacheable statuses, less 206 (partial
// content is not cached).
bool HeuristicallyCacheable(int status) {
  switch (status) {
    case 200:
    case 203:
    case 204:
    case 300:
    case 301:
    case 308:
    case 404:
    case 405:
    case 410:
    case 414:
    case 501:
      return true;
    default:
      return false;
  }
}

struct EntityTag {
  bool star = false;
  bool weak = false;
  std::string opaque;  // between the quotes
};

// An entity-tag list (RFC 9110 8.8.3), leniently: an unquoted tag is taken
// up to the next comma. Commas may appear inside quoted tags.
std::vector<EntityTag> ParseEntityTags(std::string_view s) {
  std::vector<EntityTag> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && (IsOws(s[i]) || s[i] == ',')) ++i;
    if (i >= s.size()) break;
    EntityTag tag;
    if (s[i] == '*') {
      tag.star = true;
      ++i;
    } else {
      if (s.size() - i >= 2 && (s[i] == 'W' || s[i] == 'w') && s[i + 1] == '/') {
        tag.weak = true;
        i += 2;
      }
      if (i < s.size() && s[i] == '"') {
        size_t end = s.find('"', i + 1);
        if (end == std::string_view::npos) end = s.size();
        tag.opaque = std::string(s.substr(i + 1, end - i - 1));
        i = end + 1;
      } else {
        size_t end = std::min(s.find(',', i), s.size());
        tag.opaque = std::string(TrimOws(s.substr(i, end - i)));
        i = end;
      }
    }
    out.push_back(std::move(tag));
    // Skip anything after the tag up to the next element.
    while (i < s.size() && s[i] != ',') ++i;
  }
  return out;
}

void SetOnce(std::optional<int64_t>& field, std::optional<int64_t> value) {
  if (!field.has_value() && value.has_value()) field = value;
}

constexpr std::array<std::string_view, 12> kMonths = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
constexpr std::array<std::string_view, 7> kShortDays = {"Sun", "Mon", "Tue", "Wed",
                                                        "Thu", "Fri", "Sat"};
constexpr std::array<std::string_view, 7> kLongDays = {"Sunday",   "Monday", "Tuesday", "Wednesday",
                                                       "Thursday", "Friday", "Saturday"};

bool IsDayName(std::string_view s, bool long_form) {
  for (size_t i = 0; i < kShortDays.size(); ++i) {
    if (EqualsIgnoreCase(s, long_form ? kLongDays[i] : kShortDays[i])) return true;
  }
  return false;
}

std::optional<unsigned> MonthNumber(std::string_view s) {
  for (size_t i = 0; i < kMonths.size(); ++i) {
    if (EqualsIgnoreCase(s, kMonths[i])) return static_cast<unsigned>(i + 1);
  }
  return std::nullopt;
}

// Exactly `min_digits` to `max_digits` decimal digits.
std::optional<int> Digits(std::string_view s, size_t min_digits, size_t max_digits) {
  if (s.size() < min_digits || s.size() > max_digits) return std::nullopt;
  int n = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + (c - '0');
  }
  return n;
}

std::vector<std::string_view> SplitSpaces(std::string_view s) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && IsOws(s[i])) ++i;
    size_t start = i;
    while (i < s.size() && !IsOws(s[i])) ++i;
    if (i > start) out.push_back(s.substr(start, i - start));
  }
  return out;
}

// The pieces of a date, checked and turned into a time. Years beyond what
// SystemTime can hold (it counts nanoseconds: 1678..2261) are clamped to its
// ends, so "31 Dec 9999" still reads as "far in the future".
std::optional<SystemTime> MakeTime(int year, std::optional<unsigned> month, std::optional<int> day,
                                   std::string_view time_of_day) {
  if (!month.has_value() || !day.has_value()) return std::nullopt;
  if (time_of_day.size() != 8 || time_of_day[2] != ':' || time_of_day[5] != ':') {
    return std::nullopt;
  }
  std::optional<int> hour = Digits(time_of_day.substr(0, 2), 2, 2);
  std::optional<int> minute = Digits(time_of_day.substr(3, 2), 2, 2);
  std::optional<int> second = Digits(time_of_day.substr(6, 2), 2, 2);
  if (!hour || !minute || !second || *hour > 23 || *minute > 59 || *second > 60) {
    return std::nullopt;
  }
  std::chrono::year_month_day ymd{std::chrono::year{year}, std::chrono::month{*month},
                                  std::chrono::day{static_cast<unsigned>(*day)}};
  if (!ymd.ok()) return std::nullopt;
  int64_t s = std::chrono::sys_days(ymd).time_since_epoch().count() * int64_t{86400} +
              *hour * 3600 + *minute * 60 + *second;
  constexpr int64_t kLimit =
      std::chrono::duration_cast<seconds>(SystemTime::duration::max()).count() - 1;
  s = std::clamp(s, -kLimit, kLimit);
  return SystemTime(std::chrono::duration_cast<SystemTime::duration>(seconds(s)));
}

}  // namespace

CacheControl ParseCacheControl(const Fields& headers) {
  CacheControl cc;
  for (const auto& [name, value] : headers) {
    if (!EqualsIgnoreCase(name, "cache-control")) continue;
    cc.present = true;
    for (std::string_view element : SplitList(value)) {
      size_t eq = element.find('=');
      std::string directive = ToLower(TrimOws(element.substr(0, eq)));
      std::optional<std::string> arg;
      if (eq != std::string_view::npos) arg = Unquote(TrimOws(element.substr(eq + 1)));
      std::optional<int64_t> number;
      if (arg.has_value()) number = ParseDeltaSeconds(*arg);

      if (directive == "no-store") {
        cc.no_store = true;
      } else if (directive == "no-cache") {
        cc.no_cache = true;
        if (arg.has_value() && !arg->empty()) cc.no_cache_has_fields = true;
      } else if (directive == "private") {
        cc.private_ = true;
      } else if (directive == "public") {
        cc.public_ = true;
      } else if (directive == "must-revalidate") {
        cc.must_revalidate = true;
      } else if (directive == "proxy-revalidate") {
        cc.proxy_revalidate = true;
      } else if (directive == "no-transform") {
        cc.no_transform = true;
      } else if (directive == "only-if-cached") {
        cc.only_if_cached = true;
      } else if (directive == "immutable") {
        cc.immutable = true;
      } else if (directive == "max-age") {
        // Invalid freshness information makes the response stale (4.2.1).
        SetOnce(cc.max_age, number.value_or(0));
      } else if (directive == "s-maxage") {
        SetOnce(cc.s_maxage, number.value_or(0));
      } else if (directive == "stale-while-revalidate") {
        SetOnce(cc.stale_while_revalidate, number);
      } else if (directive == "stale-if-error") {
        SetOnce(cc.stale_if_error, number);
      } else if (directive == "min-fresh") {
        SetOnce(cc.min_fresh, number);
      } else if (directive == "max-stale") {
        if (!arg.has_value()) {
          cc.max_stale_any = true;
        } else {
          SetOnce(cc.max_stale, number);
        }
      }
    }
  }
  return cc;
}

std::optional<SystemTime> ParseHttpDate(std::string_view text) {
  text = TrimOws(text);
  size_t comma = text.find(',');
  if (comma != std::string_view::npos) {
    std::string_view day_name = text.substr(0, comma);
    std::vector<std::string_view> parts = SplitSpaces(text.substr(comma + 1));
    if (parts.size() == 5) {
      // IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT
      if (!IsDayName(day_name, false) || parts[4] != "GMT") return std::nullopt;
      std::optional<int> year = Digits(parts[2], 4, 4);
      if (!year) return std::nullopt;
      return MakeTime(*year, MonthNumber(parts[1]), Digits(parts[0], 2, 2), parts[3]);
    }
    if (parts.size() == 3) {
      // RFC 850: Sunday, 06-Nov-94 08:49:37 GMT
      if (!IsDayName(day_name, true) || parts[2] != "GMT") return std::nullopt;
      std::string_view date = parts[0];
      if (date.size() != 9 || date[2] != '-' || date[6] != '-') return std::nullopt;
      std::optional<int> yy = Digits(date.substr(7, 2), 2, 2);
      if (!yy) return std::nullopt;
      return MakeTime(*yy < 70 ? 2000 + *yy : 1900 + *yy, MonthNumber(date.substr(3, 3)),
                      Digits(date.substr(0, 2), 2, 2), parts[1]);
    }
    return std::nullopt;
  }
  // asctime: Sun Nov  6 08:49:37 1994
  std::vector<std::string_view> parts = SplitSpaces(text);
  if (parts.size() != 5 || !IsDayName(parts[0], false)) return std::nullopt;
  std::optional<int> year = Digits(parts[4], 4, 4);
  if (!year) return std::nullopt;
  return MakeTime(*year, MonthNumber(parts[1]), Digits(parts[2], 1, 2), parts[3]);
}

std::string FormatHttpDate(SystemTime time) {
  auto secs = std::chrono::floor<seconds>(time);
  auto day = std::chrono::floor<std::chrono::days>(secs);
  std::chrono::year_month_day ymd{day};
  std::chrono::hh_mm_ss hms{secs - day};
  unsigned weekday = std::chrono::weekday{day}.c_encoding();
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%s, %02u %s %04d %02d:%02d:%02d GMT",
                std::string(kShortDays[weekday]).c_str(), static_cast<unsigned>(ymd.day()),
                std::string(kMonths[static_cast<unsigned>(ymd.month()) - 1]).c_str(),
                static_cast<int>(ymd.year()), static_cast<int>(hms.hours().count()),
                static_cast<int>(hms.minutes().count()), static_cast<int>(hms.seconds().count()));
  return buf;
}

RequestPolicy EvaluateRequest(std::string_view method, const Fields& headers) {
  RequestPolicy req;
  req.cacheable = method == "GET" || method == "HEAD";
  req.cc = ParseCacheControl(headers);
  req.bypass_lookup = req.cc.no_cache;
  // Pragma is deprecated (RFC 9111 5.4); honour its no-cache only from
  // clients that send no Cache-Control, as RFC 7234 5.4 did.
  if (!req.cc.present) {
    for (const auto& [name, value] : headers) {
      if (!EqualsIgnoreCase(name, "pragma")) continue;
      for (std::string_view element : SplitList(value)) {
        if (EqualsIgnoreCase(element, "no-cache")) req.bypass_lookup = true;
      }
    }
  }
  return req;
}

Storability CanStore(int status, const Fields& response_headers, const RequestPolicy& req,
                     bool has_authorization, bool allow_heuristic) {
  auto no = [](std::string reason) { return Storability{false, std::move(reason)}; };
  if (!req.cacheable) return no("method");
  if (req.cc.no_store) return no("request-no-store");
  CacheControl cc = ParseCacheControl(response_headers);
  if (cc.no_store) return no("no-store");
  if (cc.private_) return no("private");
  if (has_authorization && !cc.public_ && !cc.s_maxage && !cc.must_revalidate) {
    return no("authorization");
  }
  std::vector<std::string> vary = VaryNames(response_headers);
  if (std::find(vary.begin(), vary.end(), "*") != vary.end()) return no("vary-star");
  if (status < 200 || status > 599 || status == 206 || status == 304) return no("status");
  bool explicit_freshness =
      cc.max_age.has_value() || cc.s_maxage.has_value() || Has(response_headers, "expires");
  if (!explicit_freshness) {
    if (!HeuristicallyCacheable(status)) return no("status");
    if (!allow_heuristic) return no("no-freshness");
  }
  if (cc.no_cache && !Has(response_headers, "etag") && !Has(response_headers, "last-modified")) {
    return no("no-cache-no-validator");
  }
  if (Has(response_headers, "set-cookie") && !cc.public_ && !cc.s_maxage) {
    return no("set-cookie");
  }
  return Storability{true, ""};
}

std::chrono::seconds FreshnessLifetime(const StoredResponse& response, bool allow_heuristic) {
  if (response.derived.valid && !allow_heuristic) return seconds(response.derived.lifetime);
  CacheControl cc = ParseCacheControl(response.headers);
  if (cc.s_maxage) return seconds(*cc.s_maxage);
  if (cc.max_age) return seconds(*cc.max_age);
  int64_t date = ToSeconds(DateField(response.headers, "date").value_or(response.response_time));
  if (Has(response.headers, "expires")) {
    // An invalid Expires ("0", "-1", garbage) is a time in the past (5.3).
    std::optional<SystemTime> expires = DateField(response.headers, "expires");
    if (!expires) return seconds(0);
    return seconds(ClampDelta(ToSeconds(*expires) - date));
  }
  if (allow_heuristic && HeuristicallyCacheable(response.status)) {
    std::optional<SystemTime> last_modified = DateField(response.headers, "last-modified");
    if (last_modified) {
      int64_t since_modified = ClampDelta(date - ToSeconds(*last_modified));
      return seconds(std::min<int64_t>(since_modified / 10, 24 * 3600));
    }
  }
  return seconds(0);
}

namespace {

// RFC 9111 4.2.3's corrected_initial_age: the age when it arrived.
int64_t CorrectedInitialAge(const StoredResponse& response) {
  int64_t response_time = ToSeconds(response.response_time);
  int64_t age_value = 0;
  if (const std::string* age = FirstValue(response.headers, "age")) {
    age_value = ParseDeltaSeconds(TrimOws(*age)).value_or(0);
  }
  int64_t date_value =
      ToSeconds(DateField(response.headers, "date").value_or(response.response_time));
  int64_t apparent_age = std::max<int64_t>(0, response_time - date_value);
  int64_t response_delay = std::max<int64_t>(0, response_time - ToSeconds(response.request_time));
  return std::max(apparent_age, age_value + response_delay);
}

}  // namespace

void Precompute(StoredResponse& response) {
  response.derived = StoredResponse::Derived{};
  const CacheControl cc = ParseCacheControl(response.headers);
  StoredResponse::Derived d;
  d.corrected_initial_age = CorrectedInitialAge(response);
  d.response_time = ToSeconds(response.response_time);
  d.lifetime = FreshnessLifetime(response, /*allow_heuristic=*/false).count();
  d.no_cache = cc.no_cache;
  d.must_revalidate =
      cc.must_revalidate || cc.proxy_revalidate || cc.s_maxage.has_value() || cc.no_cache;
  d.stale_while_revalidate = cc.stale_while_revalidate;
  d.stale_if_error = cc.stale_if_error.value_or(0);
  d.valid = true;
  response.derived = d;
}

std::chrono::seconds CurrentAge(const StoredResponse& response, SystemTime now) {
  const bool derived = response.derived.valid;
  const int64_t initial =
      derived ? response.derived.corrected_initial_age : CorrectedInitialAge(response);
  const int64_t response_time =
      derived ? response.derived.response_time : ToSeconds(response.response_time);
  const int64_t resident_time = std::max<int64_t>(0, ToSeconds(now) - response_time);
  return seconds(ClampDelta(initial + resident_time));
}

Evaluation Evaluate(const StoredResponse& response, const RequestPolicy& req, SystemTime now,
                    bool allow_heuristic) {
  // The response's own directives: worked out when it was stored, or now.
  bool no_cache;
  std::optional<int64_t> stale_while_revalidate;
  Evaluation ev;
  if (response.derived.valid) {
    no_cache = response.derived.no_cache;
    stale_while_revalidate = response.derived.stale_while_revalidate;
    ev.must_revalidate = response.derived.must_revalidate;
    ev.stale_if_error = seconds(response.derived.stale_if_error);
  } else {
    const CacheControl cc = ParseCacheControl(response.headers);
    no_cache = cc.no_cache;
    stale_while_revalidate = cc.stale_while_revalidate;
    ev.must_revalidate =
        cc.must_revalidate || cc.proxy_revalidate || cc.s_maxage.has_value() || cc.no_cache;
    ev.stale_if_error = seconds(cc.stale_if_error.value_or(0));
  }
  ev.age = CurrentAge(response, now);
  ev.lifetime = FreshnessLifetime(response, allow_heuristic);

  const int64_t age = ev.age.count();
  const int64_t lifetime = ev.lifetime.count();
  const int64_t staleness = age - lifetime;  // > -1: stale
  ev.freshness = Freshness::kStale;
  if (req.bypass_lookup || no_cache) return ev;
  if (req.cc.max_age && age > *req.cc.max_age) return ev;
  if (req.cc.min_fresh && lifetime - age < *req.cc.min_fresh) return ev;
  if (age < lifetime) {
    ev.freshness = Freshness::kFresh;
    return ev;
  }
  if (ev.must_revalidate) return ev;
  if (stale_while_revalidate && staleness <= *stale_while_revalidate) {
    ev.freshness = Freshness::kStaleWhileRevalidate;
  } else if (req.cc.max_stale_any || (req.cc.max_stale && staleness <= *req.cc.max_stale)) {
    ev.freshness = Freshness::kFresh;
  }
  return ev;
}

bool CanServeStaleOnError(const Evaluation& evaluation, const RequestPolicy& req,
                          std::chrono::seconds configured_max_stale) {
  if (evaluation.must_revalidate) return false;
  int64_t limit = req.cc.stale_if_error.value_or(-1);
  if (!req.bypass_lookup) {
    limit = std::max({limit, evaluation.stale_if_error.count(), configured_max_stale.count()});
  }
  if (limit < 0) return false;
  return (evaluation.age - evaluation.lifetime).count() <= limit;
}

std::vector<std::string> VaryNames(const Fields& headers) {
  std::vector<std::string> names;
  for (const auto& [name, value] : headers) {
    if (!EqualsIgnoreCase(name, "vary")) continue;
    for (std::string_view element : SplitList(value)) {
      std::string lower = ToLower(element);
      if (std::find(names.begin(), names.end(), lower) == names.end()) {
        names.push_back(std::move(lower));
      }
    }
  }
  return names;
}

std::vector<std::string> VaryValues(const std::vector<std::string>& names,
                                    const Fields& request_headers) {
  std::vector<std::string> values;
  values.reserve(names.size());
  for (const std::string& wanted : names) {
    std::string joined;
    for (const auto& [name, value] : request_headers) {
      if (!EqualsIgnoreCase(name, wanted)) continue;
      for (std::string_view element : SplitList(value)) {
        std::string normalized;
        for (char c : element) {
          if (IsOws(c)) {
            if (!normalized.empty() && normalized.back() != ' ') normalized.push_back(' ');
          } else {
            normalized.push_back(c);
          }
        }
        if (!joined.empty()) joined += ", ";
        joined += normalized;
      }
    }
    values.push_back(std::move(joined));
  }
  return values;
}

Fields ConditionalHeaders(const StoredResponse& response) {
  Fields out;
  if (const std::string* etag = response.Header("etag")) {
    out.emplace_back("if-none-match", *etag);
  }
  if (const std::string* last_modified = response.Header("last-modified")) {
    if (ParseHttpDate(*last_modified)) out.emplace_back("if-modified-since", *last_modified);
  }
  return out;
}

StoredResponse MergeNotModified(const StoredResponse& stored, const Fields& not_modified_headers,
                                SystemTime request_time, SystemTime response_time) {
  // Fields named by the 304's Connection are hop-by-hop too.
  std::vector<std::string> connection_names;
  for (const auto& [name, value] : not_modified_headers) {
    if (!EqualsIgnoreCase(name, "connection")) continue;
    for (std::string_view element : SplitList(value)) {
      connection_names.push_back(ToLower(element));
    }
  }
  auto keeps_stored = [&](const std::string& lower) {
    return lower == "content-length" || lower == "content-encoding" || lower == "content-range" ||
           IsHopByHop(lower) ||
           std::find(connection_names.begin(), connection_names.end(), lower) !=
               connection_names.end();
  };

  Fields updates;
  std::vector<std::string> replaced = {"age", "date"};
  for (const auto& [name, value] : not_modified_headers) {
    std::string lower = ToLower(name);
    if (keeps_stored(lower)) continue;
    if (std::find(replaced.begin(), replaced.end(), lower) == replaced.end()) {
      replaced.push_back(lower);
    }
    updates.emplace_back(std::move(lower), value);
  }
  if (!Has(updates, "date")) updates.emplace_back("date", FormatHttpDate(response_time));

  StoredResponse merged = stored;
  merged.headers.clear();
  for (const auto& [name, value] : stored.headers) {
    if (std::find(replaced.begin(), replaced.end(), ToLower(name)) == replaced.end()) {
      merged.headers.emplace_back(name, value);
    }
  }
  for (auto& field : updates) merged.headers.push_back(std::move(field));
  merged.request_time = request_time;
  merged.response_time = response_time;
  return merged;
}

bool ClientNotModified(const Fields& request_headers, const StoredResponse& response) {
  if (response.status < 200 || response.status > 299) return false;
  bool has_if_none_match = false;
  std::vector<EntityTag> wanted;
  for (const auto& [name, value] : request_headers) {
    if (!EqualsIgnoreCase(name, "if-none-match")) continue;
    has_if_none_match = true;
    for (EntityTag& tag : ParseEntityTags(value)) wanted.push_back(std::move(tag));
  }
  if (has_if_none_match) {
    std::optional<EntityTag> current;
    if (const std::string* etag = response.Header("etag")) {
      std::vector<EntityTag> tags = ParseEntityTags(*etag);
      if (!tags.empty() && !tags.front().star) current = tags.front();
    }
    for (const EntityTag& tag : wanted) {
      if (tag.star) return true;
      // Weak comparison (RFC 9110 8.8.3.2): the opaque tags match, W/ or not.
      if (current && tag.opaque == current->opaque) return true;
    }
    return false;
  }
  std::optional<SystemTime> since = DateField(request_headers, "if-modified-since");
  if (!since) return false;
  SystemTime modified =
      DateField(response.headers, "last-modified")
          .value_or(DateField(response.headers, "date").value_or(response.response_time));
  return ToSeconds(modified) <= ToSeconds(*since);
}

bool IsHopByHop(std::string_view lowercase_name) {
  static constexpr std::array<std::string_view, 9> kNames = {"connection",
                                                             "keep-alive",
                                                             "proxy-connection",
                                                             "te",
                                                             "trailer",
                                                             "transfer-encoding",
                                                             "upgrade",
                                                             "proxy-authenticate",
                                                             "proxy-authorization"};
  return std::find(kNames.begin(), kNames.end(), lowercase_name) != kNames.end();
}

std::string AgeValue(std::chrono::seconds age) { return std::to_string(ClampDelta(age.count())); }

}  // namespace portway::cache
