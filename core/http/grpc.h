// gRPC over HTTP/2 as a gateway sees it: which requests are gRPC, the
// status a local reply becomes, grpc-timeout, grpc-message encoding.
// Facts from the gRPC HTTP/2 protocol description (PROTOCOL-HTTP2.md).
//
// Thread safety: pure functions.
//
//   if (grpc::IsGrpcRequest(headers)) {
//     grpc::Status s = grpc::StatusForLocalReply(503, ErrorCause::kCircuitOpen);
//   }
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "portway/headers.h"
#include "portway/stream_info.h"

namespace portway::http::grpc {

// The codes a gateway produces or reads (grpc/status.h numbering).
enum class Status : int {
  kOk = 0,
  kCancelled = 1,
  kUnknown = 2,
  kInvalidArgument = 3,
  kDeadlineExceeded = 4,
  kNotFound = 5,
  kPermissionDenied = 7,
  kResourceExhausted = 8,
  kUnimplemented = 12,
  kInternal = 13,
  kUnavailable = 14,
  kUnauthenticated = 16,
};

// content-type application/grpc, application/grpc+proto, ...
// (IsGrpcContentType and GrpcStatusOf, which filters need too, are in the
// SDK's portway/headers.h.)
bool IsGrpcRequest(const HeaderMap& headers);

// The status a locally generated HTTP `status` with `cause` becomes for a
// gRPC client: 502/503 -> UNAVAILABLE, 504 -> DEADLINE_EXCEEDED, 404 ->
// UNIMPLEMENTED, 429 and limit overflows -> RESOURCE_EXHAUSTED, 400/413/431
// -> INTERNAL (the request could not be read), 401 -> UNAUTHENTICATED, 403
// -> PERMISSION_DENIED, anything else -> UNKNOWN.
Status StatusForLocalReply(int status, ErrorCause cause);

// grpc-timeout: 1-8 digits and a unit (H M S m u n). nullopt when absent or
// malformed (a malformed value is ignored, as gRPC servers do).
std::optional<std::chrono::milliseconds> ParseTimeout(const HeaderMap& headers);

// grpc-message is percent-encoded: bytes outside 0x20-0x7E and '%' itself.
std::string EncodeMessage(std::string_view message);

}  // namespace portway::http::grpc
