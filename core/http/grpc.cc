#include "core/http/grpc.h"

#include <charconv>

#include "core/common/strings.h"

namespace portway::http::grpc {

bool IsGrpcRequest(const HeaderMap& headers) {
  const std::string_view* type = headers.Get("content-type");
  return type != nullptr && IsGrpcContentType(*type);
}

Status StatusForLocalReply(int status, ErrorCause cause) {
  if (cause == ErrorCause::kUpstreamOverflow) return Status::kResourceExhausted;
  switch (status) {
    case 400:
    case 413:
    case 431:
      return Status::kInternal;
    case 401:
      return Status::kUnauthenticated;
    case 403:
      return Status::kPermissionDenied;
    case 404:
      return Status::kUnimplemented;
    case 408:
    case 504:
      return Status::kDeadlineExceeded;
    case 429:
      return Status::kResourceExhausted;
    case 502:
    case 503:
      return Status::kUnavailable;
    default:
      return Status::kUnknown;
  }
}

std::optional<std::chrono::milliseconds> ParseTimeout(const HeaderMap& headers) {
  const std::string_view* value = headers.Get("grpc-timeout");
  if (value == nullptr || value->size() < 2 || value->size() > 9) return std::nullopt;
  std::string_view digits(value->data(), value->size() - 1);
  uint64_t n = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
  if (ec != std::errc() || end != digits.data() + digits.size()) return std::nullopt;
  using std::chrono::milliseconds;
  // Rounded up: a deadline of 500us must not become "no deadline".
  auto ceil_div = [](uint64_t a, uint64_t b) { return (a + b - 1) / b; };
  switch (value->back()) {
    case 'H':
      return milliseconds(n * 3600 * 1000);
    case 'M':
      return milliseconds(n * 60 * 1000);
    case 'S':
      return milliseconds(n * 1000);
    case 'm':
      return milliseconds(n);
    case 'u':
      return milliseconds(ceil_div(n, 1000));
    case 'n':
      return milliseconds(ceil_div(n, 1000000));
    default:
      return std::nullopt;
  }
}

std::string EncodeMessage(std::string_view message) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(message.size());
  for (unsigned char c : message) {
    if (c >= 0x20 && c <= 0x7e && c != '%') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xf]);
    }
  }
  return out;
}

}  // namespace portway::http::grpc
