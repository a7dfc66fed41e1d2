// The wire form of a StoredResponse, as the Redis tier keeps it: a versioned
// binary encoding that any gateway of the fleet can read back.
//
// Layout (all lengths and counts are unsigned LEB128 varints, in their
// shortest form so that each response has exactly one encoding):
//
//   "PWSR"  magic                4 bytes
//   version                      1 byte (kStoredResponseVersion)
//   flags                        1 byte (bit 0: vary_marker; others must be 0)
//   status                       varint (0..999)
//   vary_names                   count, then each: length, bytes
//   headers                      count, then each: name length, name, value length, value
//   body                         length, bytes
//   trailers                     as headers
//   request_time, response_time  int64 microseconds since the Unix epoch, little-endian
//   vary_values                  as vary_names
//   checksum                     CRC-32C of everything before it, 4 bytes little-endian
//
// The checksum is there because the shared tier is written by every gateway
// and read back much later: a torn or garbled value must be a miss, not a
// wrong response served. Decoding checks every length against the bytes
// left before reading, so no input, however garbled, reads out of bounds.
//
// Thread safety: both functions are pure and may be called from any thread.
//
//   std::string wire = EncodeStoredResponse(response);
//   absl::StatusOr<StoredResponse> back = DecodeStoredResponse(wire);
//   if (!back.ok()) { /* treat as a miss */ }
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "filters/cache/entry.h"

namespace portway::cache {

inline constexpr uint8_t kStoredResponseVersion = 1;

// Times are truncated to whole microseconds. `response.status` must be in
// 0..999 for the result to decode.
std::string EncodeStoredResponse(const StoredResponse& response);

// InvalidArgument for anything that is not a whole, intact encoding of
// version kStoredResponseVersion (a newer version is refused, not guessed at;
// the caller treats any error as a miss).
absl::StatusOr<StoredResponse> DecodeStoredResponse(std::string_view wire);

}  // namespace portway::cache
