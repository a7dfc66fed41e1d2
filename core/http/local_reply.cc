#include "core/http/local_reply.h"

#include "core/http/codec.h"

namespace portway::http {

const ErrorCauseInfo& InfoFor(ErrorCause cause) {
  static const ErrorCauseInfo kInfo[] = {
      {"none", "-", 0},
      {"upstream_connect_refused", "UCR", 502},
      {"upstream_connect_failure", "UCF", 502},
      {"upstream_connect_timeout", "UCT", 504},
      {"upstream_tls_handshake_failed", "UTH", 502},
      {"upstream_tls_verify_failed", "UTV", 502},
      {"upstream_reset_before_response", "URX", 502},
      {"upstream_reset_after_response_started", "URS", 0},
      {"upstream_malformed_response", "UMR", 502},
      {"upstream_dns_failure", "DNS", 502},
      {"upstream_timeout", "UTO", 504},
      {"no_healthy_upstream", "UH", 503},
      {"upstream_overflow", "UO", 503},
      {"circuit_open", "CO", 503},
      {"cluster_not_found", "NC", 503},
      {"no_route", "NR", 404},
      {"downstream_protocol_error", "DPE", 400},
      {"request_header_timeout", "RHT", 408},
      {"stream_idle_timeout", "SI", 408},
      {"payload_too_large", "PTL", 413},
      {"downstream_disconnect", "DC", 0},
      {"filter_local_reply", "FLR", 0},
  };
  static_assert(sizeof(kInfo) / sizeof(kInfo[0]) == static_cast<size_t>(ErrorCause::kCount));
  return kInfo[static_cast<size_t>(cause)];
}

const char* StreamResetReasonName(StreamResetReason reason) {
  switch (reason) {
    case StreamResetReason::kConnectionTermination:
      return "connection_termination";
    case StreamResetReason::kLocalReset:
      return "local_reset";
    case StreamResetReason::kProtocolError:
      return "protocol_error";
    case StreamResetReason::kOverflow:
      return "overflow";
    case StreamResetReason::kRemoteReset:
      return "remote_reset";
    case StreamResetReason::kRefusedStream:
      return "refused_stream";
    case StreamResetReason::kGoAway:
      return "goaway";
    case StreamResetReason::kTransportFailure:
      return "transport_failure";
  }
  return "unknown";
}

const char* ProtocolName(Protocol protocol) {
  switch (protocol) {
    case Protocol::kHttp10:
      return "HTTP/1.0";
    case Protocol::kHttp11:
      return "HTTP/1.1";
    case Protocol::kHttp2:
      return "HTTP/2";
  }
  return "unknown";
}

std::string_view ErrorCauseName(ErrorCause cause) { return InfoFor(cause).name; }

}  // namespace portway::http
