// StreamInfo: what happened to one request, as the core records it along
// the data path: timings, sizes, the route, cluster and host chosen, and the
// cause of any locally generated response. Filters read it (and may add a
// detail); the access log and the stats are written from it.
//
// Thread safety: one stream, one worker.
//
//   void OnStreamComplete(const StreamInfo& info) override {
//     if (info.cause == ErrorCause::kUpstreamConnectRefused) ...
//   }
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

namespace portway::http {

// Why the core answered instead of the upstream (docs/errors.md). The
// x-portway-error value, access-log flag and status of each are fixed.
enum class ErrorCause : uint8_t {
  kNone = 0,
  kUpstreamConnectRefused,
  kUpstreamConnectFailure,
  kUpstreamConnectTimeout,
  kUpstreamResetBeforeResponse,
  kUpstreamResetAfterResponseStarted,
  kUpstreamMalformedResponse,
  kUpstreamDnsFailure,
  kUpstreamTimeout,
  kNoHealthyUpstream,
  kUpstreamOverflow,
  kCircuitOpen,  // a circuit breaker is open for the cluster or every host
  kClusterNotFound,
  kNoRoute,
  kDownstreamProtocolError,  // detail names the exact parse error
  kRequestHeaderTimeout,
  kStreamIdleTimeout,
  kPayloadTooLarge,
  kDownstreamDisconnect,
  kFilterLocalReply,  // a filter answered; detail names the filter's reason
  kCount,
};

struct StreamInfo {
  using Time = std::chrono::steady_clock::time_point;

  Time start;
  std::chrono::system_clock::time_point start_system;
  std::optional<Time> upstream_request_sent;
  std::optional<Time> upstream_response_headers;
  std::optional<Time> end;

  // Copies of the request line and Host, made only when the access log is on.
  std::string method;
  std::string path;
  std::string authority;
  std::string request_id;
  std::string listener;
  std::string route;
  // The cluster the request goes to: the route's, set before the filters
  // run, or the one a filter chose (FilterCallbacks::SetUpstreamCluster).
  std::string cluster;
  std::string upstream_host;  // "IP:PORT" of the chosen host
  std::string downstream_ip;  // the client's address

  int status = 0;  // the status sent downstream (0: none)
  ErrorCause cause = ErrorCause::kNone;
  // More precise reason: the parse error, the filter's error name, ...
  std::string detail;
  uint64_t bytes_received = 0;
  uint64_t bytes_sent = 0;
  bool local_reply = false;
  // Upstream attempts made (0: none, e.g. a direct response).
  uint32_t attempts = 0;
  // The request body outgrew the replay limit (EnableRequestReplay): the
  // request can no longer be sent again.
  bool replay_overflow = false;
};

}  // namespace portway::http
