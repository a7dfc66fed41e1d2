// The failure history: the recent requests that failed (every 5xx the
// gateway sent or passed on, every reset, every timeout), each with the
// whole story: which hosts were tried, how long connecting and the first
// byte took, how each attempt ended and what the filters decided. An
// operator pastes the x-request-id of an error response into
// GET /failures/<id> on the admin port and reads why.
//
// Thread safety: one FailureHistory per worker, touched only on its
// worker's thread (the admin asks each worker through Dispatcher::Post),
// so recording takes no lock. Memory is bounded: a ring of `capacity`
// records, each with bounded strings and lists.
//
//   FailureHistory history(256);
//   if (FailureHistory::IsFailure(info, reset)) history.Record(info, reset);
//   history.AppendSummaries(&rows);            // newest first
//   std::optional<std::string> story = history.Story("ad2e873a-...");
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "portway/stream_info.h"

namespace portway::server {

// "2026-12-06T04:42:26.123Z".
std::string Iso8601(std::chrono::system_clock::time_point t);

class FailureHistory {
 public:
  // Per-record bounds: strings past them are cut (and say so), lists keep
  // their first entries.
  static constexpr size_t kMaxFieldBytes = 512;
  static constexpr size_t kMaxAttempts = 16;
  static constexpr size_t kMaxDecisions = 32;

  explicit FailureHistory(size_t capacity) { SetCapacity(capacity); }

  // Shrinking keeps the newest records; 0 turns recording off.
  void SetCapacity(size_t capacity);
  size_t capacity() const { return capacity_; }

  // A response of 500 or more (local or the upstream's), a reset stream, or
  // a timeout answered locally (408). Not what a client brings on itself: a
  // malformed request (even a 501 or 505) or its own disconnect, so that no
  // client can flush real failures out of the history.
  static bool IsFailure(const http::StreamInfo& info, bool reset);
  void Record(const http::StreamInfo& info, bool reset);

  struct Summary {
    std::chrono::system_clock::time_point time;
    std::string json;  // one object
  };
  // Adds one summary per record, newest first.
  void AppendSummaries(std::vector<Summary>* out) const;
  // The whole story of the newest record with that request id (its time,
  // and a JSON object); nullopt when this worker has none.
  std::optional<Summary> Story(std::string_view request_id) const;

 private:
  struct Attempt {
    std::string host;
    double start_ms = 0;  // from the start of the request
    std::optional<double> request_sent_ms;
    std::optional<double> response_headers_ms;
    std::optional<double> failed_ms;
    double connect_ms = 0;
    http::ErrorCause result = http::ErrorCause::kNone;
    int status = 0;
  };
  struct Decision {
    double at_ms = 0;
    std::string filter;
    std::string decision;
  };
  struct Entry {
    std::chrono::system_clock::time_point time;
    std::string request_id;
    std::string method;
    std::string path;
    std::string authority;
    std::string listener;
    std::string route;
    std::string cluster;
    std::string upstream_host;
    std::string downstream_ip;
    int status = 0;
    bool reset = false;
    bool local_reply = false;
    http::ErrorCause cause = http::ErrorCause::kNone;
    std::string detail;
    double duration_ms = 0;
    uint32_t attempts_made = 0;
    std::vector<Attempt> attempts;
    std::vector<Decision> decisions;
  };

  std::string SummaryJson(const Entry& e) const;
  std::string StoryJson(const Entry& e) const;

  size_t capacity_ = 0;
  std::vector<Entry> ring_;  // ring_[next_ - 1] is the newest
  size_t next_ = 0;          // where the next record goes
  size_t size_ = 0;
};

}  // namespace portway::server
