// What happened to one request: timings, sizes, the route, cluster and
// host chosen, and why it ended the way it did. Filled along the data path,
// read by the access log and the stats.
//
// Thread safety: one stream, one worker.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "core/event/dispatcher.h"
#include "core/http/local_reply.h"
#include "core/network/address.h"

namespace portway::http {

struct StreamInfo {
  event::MonotonicTime start;
  event::SystemTime start_system;
  std::optional<event::MonotonicTime> upstream_request_sent;
  std::optional<event::MonotonicTime> upstream_response_headers;
  std::optional<event::MonotonicTime> end;

  std::string method;
  std::string path;
  std::string authority;
  std::string request_id;
  std::string listener;
  std::string route;
  std::string cluster;
  std::string upstream_host;
  network::Address downstream_remote;

  int status = 0;
  ErrorCause cause = ErrorCause::kNone;
  std::string detail;  // e.g. the exact parse error
  uint64_t bytes_received = 0;
  uint64_t bytes_sent = 0;
  bool local_reply = false;
};

}  // namespace portway::http
