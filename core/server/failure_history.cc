#include "core/server/failure_history.h"

#include <algorithm>
#include <ctime>

#include "absl/strings/str_format.h"
#include "core/common/strings.h"
#include "core/http/local_reply.h"

namespace portway::server {
namespace {

std::string Bounded(std::string_view s) {
  if (s.size() <= FailureHistory::kMaxFieldBytes) return std::string(s);
  return Cat(s.substr(0, FailureHistory::kMaxFieldBytes), "...(cut)");
}

double MsBetween(http::StreamInfo::Time from, http::StreamInfo::Time to) {
  return std::chrono::duration<double, std::milli>(to - from).count();
}

std::string Ms(double ms) { return absl::StrFormat("%.3f", ms); }

// What ended the request, in the taxonomy's words: the local reply's cause,
// or the upstream's own 5xx passed on.
std::string_view CauseName(http::ErrorCause cause, int status) {
  if (cause != http::ErrorCause::kNone) return http::InfoFor(cause).name;
  return status >= 500 ? "upstream_response" : "none";
}

std::string AttemptResult(http::ErrorCause result, int status) {
  if (result != http::ErrorCause::kNone) return std::string(http::InfoFor(result).name);
  if (status != 0) return Cat("response ", status);
  return "in progress";
}

}  // namespace

std::string Iso8601(std::chrono::system_clock::time_point t) {
  auto since = t.time_since_epoch();
  auto seconds = std::chrono::duration_cast<std::chrono::seconds>(since);
  auto millis = std::chrono::duration_cast<std::chrono::milliseconds>(since - seconds).count();
  std::time_t tt = static_cast<std::time_t>(seconds.count());
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[40];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
  return absl::StrFormat("%s.%03dZ", buf, static_cast<int>(millis));
}

void FailureHistory::SetCapacity(size_t capacity) {
  if (capacity == capacity_) return;
  // Re-laid newest last, so the ring starts over at 0.
  std::vector<Entry> kept;
  size_t keep = std::min(size_, capacity);
  kept.reserve(keep);
  for (size_t i = keep; i > 0; --i) {
    kept.push_back(std::move(ring_[(next_ + capacity_ - i) % capacity_]));
  }
  ring_ = std::move(kept);
  ring_.resize(capacity);
  capacity_ = capacity;
  size_ = keep;
  next_ = capacity == 0 ? 0 : keep % capacity;
}

bool FailureHistory::IsFailure(const http::StreamInfo& info, bool reset) {
  if (info.cause == http::ErrorCause::kDownstreamProtocolError ||
      info.cause == http::ErrorCause::kDownstreamDisconnect) {
    return false;
  }
  if (reset || info.status >= 500) return true;
  // A filter answered in place of a failed upstream (the cache's stale
  // copy): what failed is worth keeping.
  if (!info.response_flag.empty() && !info.attempt_log.empty()) {
    const http::UpstreamAttemptInfo& last = info.attempt_log.back();
    if (last.result != http::ErrorCause::kNone || last.status >= 500) return true;
  }
  return info.cause == http::ErrorCause::kRequestHeaderTimeout ||
         info.cause == http::ErrorCause::kStreamIdleTimeout ||
         info.cause == http::ErrorCause::kUpstreamTimeout;
}

void FailureHistory::Record(const http::StreamInfo& info, bool reset) {
  if (capacity_ == 0) return;
  Entry& e = ring_[next_];
  next_ = (next_ + 1) % capacity_;
  size_ = std::min(size_ + 1, capacity_);
  e = Entry{};
  e.time = info.start_system;
  // Whole (the header limit bounds it), or a long trusted id never matches.
  e.request_id = info.request_id;
  e.method = Bounded(info.method);
  e.path = Bounded(info.path);
  e.authority = Bounded(info.authority);
  e.listener = info.listener;
  e.route = info.route;
  e.cluster = info.cluster;
  e.upstream_host = info.upstream_host;
  e.downstream_ip = info.downstream_ip;
  e.status = info.status;
  e.reset = reset;
  e.local_reply = info.local_reply;
  e.cause = info.cause;
  e.detail = Bounded(info.detail);
  if (info.end) e.duration_ms = MsBetween(info.start, *info.end);
  e.attempts_made = info.attempts;
  size_t attempts = std::min(info.attempt_log.size(), kMaxAttempts);
  e.attempts.reserve(attempts);
  for (size_t i = 0; i < attempts; ++i) {
    const http::UpstreamAttemptInfo& a = info.attempt_log[i];
    Attempt& out = e.attempts.emplace_back();
    out.host = a.host;
    out.start_ms = MsBetween(info.start, a.start);
    if (a.request_sent) out.request_sent_ms = MsBetween(a.start, *a.request_sent);
    if (a.response_headers) out.response_headers_ms = MsBetween(a.start, *a.response_headers);
    if (a.failed) out.failed_ms = MsBetween(a.start, *a.failed);
    out.connect_ms = a.connect_ms;
    out.result = a.result;
    out.status = a.status;
  }
  size_t decisions = std::min(info.decisions.size(), kMaxDecisions);
  e.decisions.reserve(decisions);
  for (size_t i = 0; i < decisions; ++i) {
    const http::FilterDecision& d = info.decisions[i];
    e.decisions.push_back({MsBetween(info.start, d.at), d.filter, Bounded(d.decision)});
  }
}

void FailureHistory::AppendSummaries(std::vector<Summary>* out) const {
  for (size_t i = 1; i <= size_; ++i) {
    const Entry& e = ring_[(next_ + capacity_ - i) % capacity_];
    out->push_back({e.time, SummaryJson(e)});
  }
}

std::optional<FailureHistory::Summary> FailureHistory::Story(std::string_view request_id) const {
  for (size_t i = 1; i <= size_; ++i) {
    const Entry& e = ring_[(next_ + capacity_ - i) % capacity_];
    if (e.request_id == request_id) return Summary{e.time, StoryJson(e)};
  }
  return std::nullopt;
}

std::string FailureHistory::SummaryJson(const Entry& e) const {
  return Cat("{\"request_id\":", JsonString(e.request_id),
             ",\"time\":", JsonString(Iso8601(e.time)), ",\"method\":", JsonString(e.method),
             ",\"path\":", JsonString(e.path), ",\"listener\":", JsonString(e.listener),
             ",\"route\":", JsonString(e.route), ",\"cluster\":", JsonString(e.cluster),
             ",\"status\":", e.status, ",\"reset\":", e.reset ? "true" : "false",
             ",\"cause\":", JsonString(CauseName(e.cause, e.status)),
             ",\"attempts\":", e.attempts_made, ",\"duration_ms\":", Ms(e.duration_ms), "}");
}

std::string FailureHistory::StoryJson(const Entry& e) const {
  std::string out = SummaryJson(e);
  out.pop_back();  // the closing brace: the story adds to the summary
  out += Cat(",\"authority\":", JsonString(e.authority),
             ",\"downstream_ip\":", JsonString(e.downstream_ip),
             ",\"upstream_host\":", JsonString(e.upstream_host),
             ",\"local_reply\":", e.local_reply ? "true" : "false");
  if (e.cause != http::ErrorCause::kNone) {
    out += Cat(",\"flag\":", JsonString(http::InfoFor(e.cause).flag));
  }
  out += Cat(",\"detail\":", JsonString(e.detail), ",\"attempt_log\":[");
  for (size_t i = 0; i < e.attempts.size(); ++i) {
    const Attempt& a = e.attempts[i];
    if (i > 0) out.push_back(',');
    out += Cat("{\"attempt\":", i + 1, ",\"host\":", JsonString(a.host),
               ",\"start_ms\":", Ms(a.start_ms));
    if (a.request_sent_ms) {
      // connect_ms is 0 when the pool handed over an open connection.
      out += Cat(",\"connect_ms\":", Ms(a.connect_ms),
                 ",\"reused_connection\":", a.connect_ms == 0 ? "true" : "false",
                 ",\"request_sent_ms\":", Ms(*a.request_sent_ms));
    }
    if (a.response_headers_ms) out += Cat(",\"first_byte_ms\":", Ms(*a.response_headers_ms));
    if (a.status != 0) out += Cat(",\"status\":", a.status);
    if (a.failed_ms) out += Cat(",\"failed_ms\":", Ms(*a.failed_ms));
    out += Cat(",\"result\":", JsonString(AttemptResult(a.result, a.status)), "}");
  }
  out += "],\"decisions\":[";
  for (size_t i = 0; i < e.decisions.size(); ++i) {
    const Decision& d = e.decisions[i];
    if (i > 0) out.push_back(',');
    out += Cat("{\"at_ms\":", Ms(d.at_ms), ",\"filter\":", JsonString(d.filter),
               ",\"decision\":", JsonString(d.decision), "}");
  }
  out += "]}";
  return out;
}

}  // namespace portway::server
