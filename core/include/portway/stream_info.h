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
#include <string_view>
#include <vector>

#include "portway/block_allocator.h"

namespace portway::http {

// Why the core answered instead of the upstream (docs/errors.md). The
// x-portway-error value, access-log flag and status of each are fixed.
enum class ErrorCause : uint8_t {
  kNone = 0,
  kUpstreamConnectRefused,
  kUpstreamConnectFailure,
  kUpstreamConnectTimeout,
  kUpstreamTlsHandshakeFailed,  // detail: OpenSSL's reason (protocol version, alert, ...)
  kUpstreamTlsVerifyFailed,     // the host's certificate did not verify; detail says why
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

// The cause's name, as in x-portway-error and the access log
// ("upstream_connect_refused"); "none" for kNone.
std::string_view ErrorCauseName(ErrorCause cause);

// One upstream attempt as the core saw it (the failure history shows each).
struct UpstreamAttemptInfo {
  using Time = std::chrono::steady_clock::time_point;
  std::string host;  // "IP:PORT"
  Time start;        // the host was picked
  // The connection was ready and the request started going out.
  std::optional<Time> request_sent;
  std::optional<Time> response_headers;  // the first byte of a response head
  std::optional<Time> failed;            // when `result` was known
  double connect_ms = 0;                 // 0 for a reused connection
  // How the attempt failed (kNone: a response head arrived, see status).
  ErrorCause result = ErrorCause::kNone;
  int status = 0;  // the upstream's status, when a response head arrived
};

// Something a filter decided for the stream, recorded by the core: a host
// turned down, a retry asked for, a local answer.
struct FilterDecision {
  std::chrono::steady_clock::time_point at;
  std::string filter;  // the filter's registered name
  std::string decision;
};

struct StreamInfo {
  using Time = std::chrono::steady_clock::time_point;

  Time start;
  std::chrono::system_clock::time_point start_system;
  std::optional<Time> upstream_request_sent;
  std::optional<Time> upstream_response_headers;
  std::optional<Time> end;

  // Copies of the request line and Host, made only when the access log or
  // the failure history is on.
  // "HTTP/1.0", "HTTP/1.1" or "HTTP/2": what the client spoke.
  std::string_view protocol = "HTTP/1.1";
  // The client connection's TLS; all empty for plaintext. The version
  // ("TLSv1.3"), the name the client asked for (SNI), and the subject of
  // the client certificate it presented, verified (RFC 2253; empty if it
  // sent none). They view the connection's own copy, which outlives the
  // stream.
  std::string_view tls_version;
  std::string_view tls_sni;
  std::string_view tls_peer_subject;
  std::string method;
  std::string path;
  std::string authority;
  // The X-Request-Id sent upstream (and on error responses). It views the
  // stream's own copy: valid while the stream lives, like the rest of this.
  std::string_view request_id;
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
  // A filter's word on how the response was made, for the access log's
  // flag column when no error cause took it (the cache's HIT, STALE, ...).
  std::string response_flag;
  // Upstream attempts made (0: none, e.g. a direct response).
  uint32_t attempts = 0;
  // The request body outgrew the replay limit (EnableRequestReplay): the
  // request can no longer be sent again.
  bool replay_overflow = false;
  // Every attempt in order, and what the filters decided along the way
  // (GET /failures/<request-id> on the admin port shows both).
  // (Its memory comes from the per-thread block cache: one per request.)
  std::vector<UpstreamAttemptInfo, BlockAllocator<UpstreamAttemptInfo>> attempt_log;
  std::vector<FilterDecision> decisions;
};

}  // namespace portway::http
