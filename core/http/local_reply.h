// The 502 family: every cause of a locally generated response, with its
// status, its x-portway-error value, its access-log flag and its counter.
// docs/errors.md explains each one and what to do about it.
#pragma once

#include <cstdint>
#include <string_view>

namespace portway::http {

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
  kClusterNotFound,
  kNoRoute,
  kDownstreamProtocolError,  // detail names the exact parse error
  kRequestHeaderTimeout,
  kStreamIdleTimeout,
  kPayloadTooLarge,
  kDownstreamDisconnect,
  kCount,
};

struct ErrorCauseInfo {
  std::string_view name;  // x-portway-error value, stats label
  std::string_view flag;  // access-log flag
  int status;             // HTTP status of the local reply
};

const ErrorCauseInfo& InfoFor(ErrorCause cause);

}  // namespace portway::http
