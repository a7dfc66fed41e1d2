#include "filters/cache/codec.h"

#include <array>
#include <limits>

#include "absl/status/status.h"

namespace portway::cache {
namespace {

constexpr std::string_view kMagic = "PWSR";
constexpr uint8_t kFlagVaryMarker = 1;
constexpr int kMaxStatus = 999;
constexpr size_t kChecksumBytes = 4;

// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), table-driven.
constexpr std::array<uint32_t, 256> MakeCrcTable() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t crc = i;
    for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ ((crc & 1) ? 0x82F63B78u : 0);
    table[i] = crc;
  }
  return table;
}
constexpr std::array<uint32_t, 256> kCrcTable = MakeCrcTable();

uint32_t Crc32c(std::string_view data) {
  uint32_t crc = 0xFFFFFFFFu;
  for (unsigned char c : data) crc = kCrcTable[(crc ^ c) & 0xFF] ^ (crc >> 8);
  return crc ^ 0xFFFFFFFFu;
}

void PutVarint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7F) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

void PutFixed(std::string& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}

void PutString(std::string& out, std::string_view s) {
  PutVarint(out, s.size());
  out.append(s);
}

void PutStrings(std::string& out, const std::vector<std::string>& strings) {
  PutVarint(out, strings.size());
  for (const auto& s : strings) PutString(out, s);
}

void PutFields(std::string& out, const Fields& fields) {
  PutVarint(out, fields.size());
  for (const auto& [name, value] : fields) {
    PutString(out, name);
    PutString(out, value);
  }
}

void PutTime(std::string& out, SystemTime t) {
  int64_t micros =
      std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
  PutFixed(out, static_cast<uint64_t>(micros), 8);
}

// Reads from a bounded view; every getter checks the bytes left first and
// fails (leaving the reader unusable) rather than read past the end.
class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}

  bool empty() const { return in_.empty(); }

  bool Byte(uint8_t& v) {
    if (in_.empty()) return false;
    v = static_cast<uint8_t>(in_[0]);
    in_.remove_prefix(1);
    return true;
  }

  bool Varint(uint64_t& v) {
    v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      uint8_t b;
      if (!Byte(b)) return false;
      // The tenth byte may only carry the top bit of a 64-bit value.
      if (shift == 63 && b > 1) return false;
      // Only the shortest form is accepted, so every value has one encoding.
      if (b == 0 && shift > 0) return false;
      v |= static_cast<uint64_t>(b & 0x7F) << shift;
      if ((b & 0x80) == 0) return true;
    }
    return false;
  }

  bool Fixed64(uint64_t& v) {
    if (in_.size() < 8) return false;
    v = 0;
    for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(static_cast<uint8_t>(in_[i])) << (8 * i);
    in_.remove_prefix(8);
    return true;
  }

  bool String(std::string& s) {
    uint64_t n;
    if (!Varint(n) || n > in_.size()) return false;
    s.assign(in_.data(), n);
    in_.remove_prefix(n);
    return true;
  }

  // A count of items each at least `min_item_bytes` long: a count the bytes
  // left cannot hold is refused before anything is reserved for it.
  bool Count(uint64_t& n, size_t min_item_bytes) {
    return Varint(n) && n <= in_.size() / min_item_bytes;
  }

  bool Strings(std::vector<std::string>& strings) {
    uint64_t n;
    if (!Count(n, 1)) return false;
    strings.resize(n);
    for (auto& s : strings) {
      if (!String(s)) return false;
    }
    return true;
  }

  bool FieldList(Fields& fields) {
    uint64_t n;
    if (!Count(n, 2)) return false;
    fields.resize(n);
    for (auto& [name, value] : fields) {
      if (!String(name) || !String(value)) return false;
    }
    return true;
  }

  bool Time(SystemTime& t) {
    uint64_t raw;
    if (!Fixed64(raw)) return false;
    const int64_t micros = static_cast<int64_t>(raw);
    // system_clock counts nanoseconds here: refuse what it cannot hold.
    using Micros = std::chrono::microseconds;
    constexpr int64_t kMax =
        std::chrono::duration_cast<Micros>(SystemTime::duration::max()).count();
    constexpr int64_t kMin =
        std::chrono::duration_cast<Micros>(SystemTime::duration::min()).count();
    if (micros > kMax || micros < kMin) return false;
    t = SystemTime(std::chrono::duration_cast<SystemTime::duration>(Micros(micros)));
    return true;
  }

 private:
  std::string_view in_;
};

// absl here predates std::string_view interop (Debian's build keeps its own
// string_view), hence std::string rather than StrCat.
absl::Status Corrupt(const std::string& what) {
  return absl::InvalidArgumentError("stored response: " + what);
}

}  // namespace

std::string EncodeStoredResponse(const StoredResponse& response) {
  std::string out;
  out.reserve(64 + response.Charge());
  out.append(kMagic);
  out.push_back(static_cast<char>(kStoredResponseVersion));
  out.push_back(static_cast<char>(response.vary_marker ? kFlagVaryMarker : 0));
  PutVarint(out, static_cast<uint32_t>(response.status));
  PutStrings(out, response.vary_names);
  PutFields(out, response.headers);
  PutString(out, response.body);
  PutFields(out, response.trailers);
  PutTime(out, response.request_time);
  PutTime(out, response.response_time);
  PutStrings(out, response.vary_values);
  PutFixed(out, Crc32c(out), kChecksumBytes);
  return out;
}

absl::StatusOr<StoredResponse> DecodeStoredResponse(std::string_view wire) {
  constexpr size_t kMinSize = kMagic.size() + 2 + kChecksumBytes;
  if (wire.size() < kMinSize) return Corrupt("truncated");
  if (wire.substr(0, kMagic.size()) != kMagic) return Corrupt("bad magic");
  const uint8_t version = static_cast<uint8_t>(wire[kMagic.size()]);
  if (version != kStoredResponseVersion) {
    return Corrupt("unsupported version " + std::to_string(version));
  }
  const std::string_view payload = wire.substr(0, wire.size() - kChecksumBytes);
  uint32_t stored_crc = 0;
  for (size_t i = 0; i < kChecksumBytes; ++i) {
    stored_crc |= static_cast<uint32_t>(static_cast<uint8_t>(wire[payload.size() + i])) << (8 * i);
  }
  if (Crc32c(payload) != stored_crc) return Corrupt("checksum mismatch");

  Reader in(payload.substr(kMagic.size() + 1));
  StoredResponse r;
  uint8_t flags;
  uint64_t status;
  if (!in.Byte(flags) || (flags & ~kFlagVaryMarker) != 0) return Corrupt("bad flags");
  r.vary_marker = (flags & kFlagVaryMarker) != 0;
  if (!in.Varint(status) || status > kMaxStatus) return Corrupt("bad status");
  r.status = static_cast<int>(status);
  if (!in.Strings(r.vary_names)) return Corrupt("bad vary names");
  if (!in.FieldList(r.headers)) return Corrupt("bad headers");
  if (!in.String(r.body)) return Corrupt("bad body");
  if (!in.FieldList(r.trailers)) return Corrupt("bad trailers");
  if (!in.Time(r.request_time) || !in.Time(r.response_time)) return Corrupt("bad times");
  if (!in.Strings(r.vary_values)) return Corrupt("bad vary values");
  if (!in.empty()) return Corrupt("trailing bytes");
  return r;
}

}  // namespace portway::cache
