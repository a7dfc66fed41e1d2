#include "core/http/http1/parser.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cstring>

namespace portway::http1 {

namespace {

// Character classes, one bit each, looked up in a single table so that every per-byte check on
// the hot path is one load and one test.
enum CharClass : uint8_t {
  kTchar = 1 << 0,       // RFC 9110 §5.6.2 token characters
  kFieldVchar = 1 << 1,  // field-value / reason-phrase bytes: HTAB, SP, VCHAR, obs-text
  kTargetChar = 1 << 2,  // request-target bytes: VCHAR only (no CTL, SP, DEL, non-ASCII)
  kHexDigit = 1 << 3,
  kHostChar = 1 << 4,  // reg-name, IP-literal and port: unreserved, sub-delims, '%', ':', '[]'
  kQdtext = 1 << 5,    // RFC 9110 §5.6.4 qdtext
  kDigit = 1 << 6,
  kRegName = 1 << 7,  // reg-name and IPv4 bytes: kHostChar without ':', '[' and ']'
};

constexpr std::array<uint8_t, 256> MakeCharTable() {
  std::array<uint8_t, 256> t{};
  for (int c = 0; c < 256; ++c) {
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    const bool digit = c >= '0' && c <= '9';
    const bool vchar = c >= 0x21 && c <= 0x7e;
    uint8_t bits = 0;
    if (alpha || digit) bits |= kTchar | kHostChar;
    if (digit) bits |= kDigit | kHexDigit;
    if ((c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')) bits |= kHexDigit;
    if (vchar || c == ' ' || c == '\t' || c >= 0x80) bits |= kFieldVchar;
    if (vchar) bits |= kTargetChar;
    if (c == '\t' || c == ' ' || c == 0x21 || (c >= 0x23 && c <= 0x5b) ||
        (c >= 0x5d && c <= 0x7e) || c >= 0x80) {
      bits |= kQdtext;
    }
    t[c] = bits;
  }
  for (char c : std::string_view("!#$%&'*+-.^_`|~")) t[static_cast<uint8_t>(c)] |= kTchar;
  for (char c : std::string_view("-._~!$&'()*+,;=%:[]")) {
    t[static_cast<uint8_t>(c)] |= kHostChar;
  }
  for (int c = 0; c < 256; ++c) {
    if ((t[c] & kHostChar) != 0 && c != ':' && c != '[' && c != ']') t[c] |= kRegName;
  }
  return t;
}

constexpr std::array<uint8_t, 256> kCharTable = MakeCharTable();

inline bool Is(char c, uint8_t char_class) {
  return (kCharTable[static_cast<uint8_t>(c)] & char_class) != 0;
}

inline bool IsOws(char c) { return c == ' ' || c == '\t'; }

inline uint32_t HexValue(char c) {
  if (c <= '9') return static_cast<uint32_t>(c - '0');
  return static_cast<uint32_t>((c | 0x20) - 'a' + 10);
}

// `lower` must be lowercase ASCII; avoids a dependency on locale-aware comparisons.
bool EqualsIgnoreCase(std::string_view s, std::string_view lower) {
  if (s.size() != lower.size()) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c | 0x20);
    if (c != lower[i]) return false;
  }
  return true;
}

// A field name (tchars only) against a lowercase name made of letters,
// digits and '-': OR-ing 0x20 into a tchar lowercases a letter and makes
// no other tchar one of those bytes, so the test is exact, and it runs a
// word at a time.
bool NameIs(std::string_view name, std::string_view lower) {
  constexpr uint64_t kCaseBits = 0x2020202020202020;
  if (name.size() != lower.size()) return false;
  size_t i = 0;
  for (; i + 8 <= name.size(); i += 8) {
    uint64_t a;
    uint64_t b;
    std::memcpy(&a, name.data() + i, 8);
    std::memcpy(&b, lower.data() + i, 8);
    if ((a | kCaseBits) != b) return false;
  }
  for (; i < name.size(); ++i) {
    if ((name[i] | 0x20) != lower[i]) return false;
  }
  return true;
}

std::string_view TrimOws(std::string_view s) {
  while (!s.empty() && IsOws(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsOws(s.back())) s.remove_suffix(1);
  return s;
}

// Checks "HTTP/d.d". kBadVersion only for well-formed versions we don't speak, so that garbage
// stays a 400 and only a real HTTP/2.0 (say) earns a 505.
ParseError ParseVersion(std::string_view v, ParseError malformed, int* minor) {
  if (v.size() != 8 || v.substr(0, 5) != "HTTP/" || !Is(v[5], kDigit) || v[6] != '.' ||
      !Is(v[7], kDigit)) {
    return malformed;
  }
  if (v[5] != '1' || (v[7] != '0' && v[7] != '1')) return ParseError::kBadVersion;
  *minor = v[7] - '0';
  return ParseError::kNone;
}

// True if the eight bytes at `p` may hold a CTL (< 0x20, HTAB included) or DEL. These are the
// classic "has a byte less than N" / "has a zero byte" tests: exact about whether such a byte
// exists. Bytes >= 0x80 (obs-text) never match.
// The high bit of each byte of `x` that is below 0x20 or is DEL. Borrows may also mark bytes
// above a marked one, never below it: on a little-endian machine the first marked byte in
// memory order is exact. (On a big-endian one a false mark can only land on a SP or '~' byte
// before a control byte, never on HTAB or CR, so ScanFieldLine merely declines that line.)
inline uint64_t ControlMask(uint64_t x) {
  constexpr uint64_t kOnes = 0x0101010101010101;
  constexpr uint64_t kHighBits = 0x8080808080808080;
  const uint64_t del = x ^ (kOnes * 0x7f);
  return (((x - kOnes * 0x20) & ~x) | ((del - kOnes) & ~del)) & kHighBits;
}

inline uint64_t LoadWord(const char* p) {
  uint64_t x;
  std::memcpy(&x, p, 8);
  return x;
}

// The index, within its word, of the first byte ControlMask marked (mask non-zero).
inline size_t FirstMarkedByte(uint64_t mask) {
  if constexpr (std::endian::native == std::endian::little) {
    return static_cast<size_t>(std::countr_zero(mask)) / 8;
  } else {
    return static_cast<size_t>(std::countl_zero(mask)) / 8;
  }
}

inline bool MayHoldControl(const char* p) { return ControlMask(LoadWord(p)) != 0; }

// Field values are most of a head's bytes, so they are checked eight at a time; only a value
// that may hold a control byte (usually an allowed HTAB) is looked at byte by byte.
bool IsValidFieldValue(const char* p, size_t n) {
  bool suspicious = n < 8;
  for (size_t i = 0; !suspicious && i + 8 <= n; i += 8) suspicious = MayHoldControl(p + i);
  // The tail as one word overlapping bytes already checked.
  if (!suspicious && n % 8 != 0) suspicious = MayHoldControl(p + n - 8);
  if (!suspicious) return true;
  for (size_t i = 0; i < n; ++i) {
    if (!Is(p[i], kFieldVchar)) return false;
  }
  return true;
}

// The length of the token at the start of `p`, looking at no more than `n` bytes: four bytes
// a step while four more are there, then byte by byte.
[[gnu::always_inline]] inline size_t TokenLength(const char* p, size_t n) {
  const auto klass = [p](size_t at) { return kCharTable[static_cast<uint8_t>(p[at])]; };
  size_t i = 0;
  while (i + 4 <= n && (klass(i) & klass(i + 1) & klass(i + 2) & klass(i + 3) & kTchar)) i += 4;
  while (i < n && Is(p[i], kTchar)) ++i;
  return i;
}

// The field line whose name is `name_len` bytes and whose value (untrimmed) ends at `end`.
[[gnu::always_inline]] inline FieldLine Located(const char* p, size_t name_len, size_t end) {
  size_t begin = name_len + 1;
  while (begin < end && IsOws(p[begin])) ++begin;
  while (end > begin && IsOws(p[end - 1])) --end;
  return FieldLine{name_len, begin, end};
}

// Validates one field line (CRLF excluded) and locates its parts. A CR in the line always
// fails here; the caller tells that case apart.
ParseError ParseFieldLine(std::string_view line, FieldLine* out) {
  if (!line.empty() && IsOws(line[0])) return ParseError::kObsFold;
  const char* const p = line.data();
  const size_t i = TokenLength(p, line.size());
  if (i == 0 || i >= line.size() || p[i] != ':') return ParseError::kInvalidHeaderName;
  if (!IsValidFieldValue(p + i + 1, line.size() - i - 1)) return ParseError::kInvalidHeaderValue;
  *out = Located(p, i, line.size());
  return ParseError::kNone;
}

// The common field line in one pass over its bytes: a token, a colon, a value of visible
// characters, obs-text, SP and HTAB, then CRLF, all within `avail` bytes of `p`. Returns the
// line's length with its CRLF and locates its parts as ParseFieldLine does; returns 0 for
// anything else (a line not complete yet, an error, obs-fold), which the caller then takes
// through the line-at-a-time path. It accepts exactly the lines that path accepts, so the two
// never disagree: it only saves finding the LF first.
size_t ScanFieldLine(const char* p, size_t avail, FieldLine* out) {
  const size_t i = TokenLength(p, avail);
  if (i == 0 || i >= avail || p[i] != ':') return 0;
  // The value up to its first control byte, eight bytes a step; an HTAB is the one control
  // byte a value may hold, and the first other one must be the CR of CRLF.
  size_t j = i + 1;
  while (true) {
    if (j + 8 <= avail) {
      const uint64_t mask = ControlMask(LoadWord(p + j));
      if (mask == 0) {
        j += 8;
        continue;
      }
      j += FirstMarkedByte(mask);
    } else {
      while (j < avail && Is(p[j], kFieldVchar) && p[j] != '\t') ++j;
      if (j >= avail) return 0;
    }
    if (p[j] != '\t') break;
    ++j;
  }
  if (p[j] != '\r' || j + 1 >= avail || p[j + 1] != '\n') return 0;
  *out = Located(p, i, j);
  return j + 2;
}

// RFC 9112 §6.3: 1*DIGIT. Rejects lists ("5, 5"), signs and spaces, which some peers would
// otherwise read differently.
bool ParseContentLength(std::string_view v, uint64_t* out) {
  constexpr uint64_t kMax = uint64_t{1} << 63;
  if (v.empty()) return false;
  uint64_t n = 0;
  for (char c : v) {
    if (!Is(c, kDigit)) return false;
    const uint64_t d = static_cast<uint64_t>(c - '0');
    if (n > (kMax - d) / 10) return false;
    n = n * 10 + d;
  }
  *out = n;
  return true;
}

void ScanConnectionTokens(std::string_view v, bool* close, bool* keep_alive, bool* upgrade) {
  while (true) {
    const size_t comma = v.find(',');
    const std::string_view token = TrimOws(v.substr(0, comma));
    if (EqualsIgnoreCase(token, "close")) {
      *close = true;
    } else if (EqualsIgnoreCase(token, "keep-alive")) {
      *keep_alive = true;
    } else if (EqualsIgnoreCase(token, "upgrade")) {
      *upgrade = true;
    }
    if (comma == std::string_view::npos) return;
    v.remove_prefix(comma + 1);
  }
}

// RFC 3986 authority without userinfo, as RFC 9110 §7.2 allows in Host: `host [":" port]`,
// host = "[" IPv6 "]" / IPv4 / reg-name. The port, when its colon is there, is 1*5DIGIT up to
// 65535: an empty or oversized port would be read differently by the next hop. Host may be
// empty (RFC 9112 §3.2); an absolute-form authority may not.
bool IsValidAuthority(std::string_view a, bool allow_empty) {
  if (a.empty()) return allow_empty;
  size_t i = 0;
  if (a[0] == '[') {
    const size_t close = a.find(']');
    if (close == std::string_view::npos || close == 1) return false;
    for (i = 1; i < close; ++i) {
      const char c = a[i];
      if (!Is(c, kHexDigit) && c != ':' && c != '.') return false;
    }
    i = close + 1;
  } else {
    // reg-name and IPv4: unreserved, sub-delims, pct-encoded; no ':', '@', '[' or ']'.
    while (i < a.size() && Is(a[i], kRegName)) ++i;
    if (i == 0 || (i < a.size() && a[i] != ':')) return false;
  }
  if (i == a.size()) return true;
  if (a[i] != ':') return false;
  const std::string_view port = a.substr(i + 1);
  if (port.empty() || port.size() > 5) return false;
  uint32_t value = 0;
  for (char c : port) {
    if (!Is(c, kDigit)) return false;
    value = value * 10 + static_cast<uint32_t>(c - '0');
  }
  return value <= 65535;
}

// RFC 9112 §3.2: the four forms of request-target. An absolute-form target must name http or
// https (this is not a forward proxy for other schemes) and an authority that is valid Host.
ParseError CheckTarget(std::string_view method, std::string_view target) {
  if (target[0] == '/') return ParseError::kNone;
  if (method == "CONNECT") return ParseError::kNone;  // authority-form; refused by the codec
  if (target == "*") {
    return method == "OPTIONS" ? ParseError::kNone : ParseError::kInvalidTarget;
  }
  const size_t colon = target.find("://");
  if (colon == std::string_view::npos) return ParseError::kInvalidTarget;
  const std::string_view scheme = target.substr(0, colon);
  if (!EqualsIgnoreCase(scheme, "http") && !EqualsIgnoreCase(scheme, "https")) {
    return ParseError::kInvalidTarget;
  }
  std::string_view rest = target.substr(colon + 3);
  const std::string_view authority = rest.substr(0, rest.find_first_of("/?"));
  if (!IsValidAuthority(authority, /*allow_empty=*/false)) return ParseError::kInvalidHost;
  return ParseError::kNone;
}

}  // namespace

const char* ParseErrorName(ParseError e) {
  switch (e) {
    case ParseError::kNone:
      return "none";
    case ParseError::kBadRequestLine:
      return "bad_request_line";
    case ParseError::kUriTooLong:
      return "uri_too_long";
    case ParseError::kHeadersTooLarge:
      return "headers_too_large";
    case ParseError::kTooManyHeaders:
      return "too_many_headers";
    case ParseError::kBadVersion:
      return "unsupported_http_version";
    case ParseError::kInvalidLineEnding:
      return "invalid_line_ending";
    case ParseError::kInvalidHeaderName:
      return "invalid_header_name";
    case ParseError::kInvalidHeaderValue:
      return "invalid_header_value";
    case ParseError::kObsFold:
      return "obsolete_line_folding";
    case ParseError::kMissingHost:
      return "missing_host";
    case ParseError::kDuplicateHost:
      return "duplicate_host";
    case ParseError::kInvalidHost:
      return "invalid_host";
    case ParseError::kInvalidTarget:
      return "invalid_target";
    case ParseError::kInvalidContentLength:
      return "invalid_content_length";
    case ParseError::kContentLengthWithTransferEncoding:
      return "content_length_and_transfer_encoding";
    case ParseError::kUnsupportedTransferEncoding:
      return "unsupported_transfer_encoding";
    case ParseError::kTransferEncodingInHttp10:
      return "transfer_encoding_in_http10";
    case ParseError::kBadChunk:
      return "invalid_chunk";
    case ParseError::kTrailersTooLarge:
      return "trailers_too_large";
    case ParseError::kTruncatedBody:
      return "truncated_body";
    case ParseError::kBadStatusLine:
      return "malformed_status_line";
    case ParseError::kInvalidResponse:
      return "invalid_response";
  }
  return "unknown";
}

int ParseErrorStatus(ParseError e) {
  switch (e) {
    case ParseError::kNone:
      return 0;
    case ParseError::kUriTooLong:
      return 414;
    case ParseError::kHeadersTooLarge:
    case ParseError::kTooManyHeaders:
    case ParseError::kTrailersTooLarge:
      return 431;
    case ParseError::kBadVersion:
      return 505;
    case ParseError::kUnsupportedTransferEncoding:
      return 501;
    case ParseError::kBadStatusLine:
    case ParseError::kInvalidResponse:
      return 502;
    case ParseError::kBadRequestLine:
    case ParseError::kInvalidLineEnding:
    case ParseError::kInvalidHeaderName:
    case ParseError::kInvalidHeaderValue:
    case ParseError::kObsFold:
    case ParseError::kMissingHost:
    case ParseError::kDuplicateHost:
    case ParseError::kInvalidHost:
    case ParseError::kInvalidTarget:
    case ParseError::kInvalidContentLength:
    case ParseError::kContentLengthWithTransferEncoding:
    case ParseError::kTransferEncodingInHttp10:
    case ParseError::kBadChunk:
    case ParseError::kTruncatedBody:
      return 400;
  }
  return 400;
}

// ---------------------------------------------------------------------------------------------
// HeadParser

HeadParser::HeadParser(const Limits& limits) : limits_(limits) {}

void HeadParser::Reset() {
  phase_ = Phase::kStartLine;
  error_ = ParseError::kNone;
  leading_empty_lines_ = 0;
  method_checked_ = 0;
  line_start_ = 0;
  scan_pos_ = 0;
  head_size_ = 0;
  method_ = target_ = reason_ = Span{};
  status_ = 0;
  version_minor_ = 1;
  fields_.clear();
}

HeadParser::Result HeadParser::ParseRequest(std::string_view data, Head* out) {
  return Parse(data, /*is_request=*/true, {}, out);
}

HeadParser::Result HeadParser::ParseResponse(std::string_view data, std::string_view request_method,
                                             Head* out) {
  return Parse(data, /*is_request=*/false, request_method, out);
}

HeadParser::Result HeadParser::Fail(ParseError error) {
  phase_ = Phase::kError;
  error_ = error;
  return Result::kError;
}

// The start of a request line, `len` bytes from line_start_ (without the CR of its CRLF), whose
// LF may not have arrived: it must open with 1*tchar SP. Bytes that cannot (a TLS ClientHello
// on a plaintext port) fail here, before a line feed or a limit is reached. Only the first
// max_request_line_bytes are looked at (past them the line fails as too long), and each byte
// once: the scan resumes where the previous call stopped, and ends at the method's SP.
ParseError HeadParser::CheckMethod(const char* base, size_t len) {
  if (method_checked_ == SIZE_MAX) return ParseError::kNone;
  const size_t end = line_start_ + std::min<size_t>(len, limits_.max_request_line_bytes);
  size_t i = std::max(method_checked_, line_start_);
  while (i < end && Is(base[i], kTchar)) ++i;
  method_checked_ = i;
  if (i == end) return ParseError::kNone;
  if (base[i] == ' ' && i > line_start_) {
    method_checked_ = SIZE_MAX;
    return ParseError::kNone;
  }
  return base[i] == '\r' ? ParseError::kInvalidLineEnding : ParseError::kBadRequestLine;
}

HeadParser::Result HeadParser::Parse(std::string_view data, bool is_request,
                                     std::string_view request_method, Head* out) {
  if (phase_ == Phase::kError) return Result::kError;
  if (data.size() < scan_pos_) {
    // The caller broke the "same prefix, longer" contract; rescanning beats reading offsets
    // past the end of its buffer.
    Reset();
  }
  if (phase_ == Phase::kDone) return Finish(data, is_request, request_method, out);
  const char* const base = data.data();
  const size_t n = data.size();
  while (true) {
    // A field line not yet looked at is first tried whole; the path below takes what that
    // declines, resuming from scan_pos_ so a head that arrives a byte at a time costs no
    // rescanning.
    if (phase_ == Phase::kFields && scan_pos_ == line_start_) {
      const char* const line = base + line_start_;
      const size_t avail = n - line_start_;
      if (avail >= 2 && line[0] == '\r' && line[1] == '\n') {
        const size_t next = line_start_ + 2;
        if (next > limits_.max_header_bytes) return Fail(ParseError::kHeadersTooLarge);
        return EndHead(next, data, is_request, request_method, out);
      }
      FieldLine field;
      const size_t length = ScanFieldLine(line, avail, &field);
      if (length != 0 && line_start_ + length <= limits_.max_header_bytes &&
          fields_.size() < limits_.max_headers) {
        AddField(line_start_, field);
        line_start_ = scan_pos_ = line_start_ + length;
        continue;
      }
    }
    const char* lf_ptr =
        scan_pos_ < n ? static_cast<const char*>(std::memchr(base + scan_pos_, '\n', n - scan_pos_))
                      : nullptr;
    if (lf_ptr == nullptr) {
      scan_pos_ = n;
      // Enforce the limits now rather than when the line or head ends: a peer must not be able
      // to make us buffer without bound by never sending LF.
      if (is_request && phase_ == Phase::kStartLine) {
        size_t partial = n - line_start_;
        if (partial > 0 && base[n - 1] == '\r') --partial;  // may be the CR of the CRLF
        if (const ParseError e = CheckMethod(base, partial); e != ParseError::kNone) return Fail(e);
        if (partial > limits_.max_request_line_bytes) return Fail(ParseError::kUriTooLong);
      }
      // The head needs at least one more byte, so it will exceed the limit.
      if (n >= limits_.max_header_bytes) return Fail(ParseError::kHeadersTooLarge);
      return Result::kIncomplete;
    }
    const size_t lf = static_cast<size_t>(lf_ptr - base);
    const size_t next = lf + 1;
    const bool has_cr = lf > line_start_ && base[lf - 1] == '\r';
    const size_t content_len = (has_cr ? lf - 1 : lf) - line_start_;
    // The method first, then limits, then the rest of the syntax: the order in which feeding the
    // bytes one at a time finds each, so that it reports the same error as feeding them at once.
    if (is_request && phase_ == Phase::kStartLine) {
      if (const ParseError e = CheckMethod(base, content_len); e != ParseError::kNone) {
        return Fail(e);
      }
      if (content_len > limits_.max_request_line_bytes) return Fail(ParseError::kUriTooLong);
    }
    if (next > limits_.max_header_bytes) return Fail(ParseError::kHeadersTooLarge);
    if (!has_cr) return Fail(ParseError::kInvalidLineEnding);
    const std::string_view line(base + line_start_, content_len);
    // No valid line contains a CR (no grammar rule allows CTLs), so a bare CR is looked for
    // only once validation has failed, off the fast path.
    const auto fail_line = [this, line](ParseError e) {
      return Fail(line.find('\r') != std::string_view::npos ? ParseError::kInvalidLineEnding : e);
    };
    // The head fits in max_header_bytes (a uint32_t), so its offsets do too.
    const auto line_offset = static_cast<uint32_t>(line_start_);
    if (phase_ == Phase::kStartLine) {
      if (content_len == 0) {
        if (!is_request) return Fail(ParseError::kBadStatusLine);
        if (++leading_empty_lines_ > kMaxLeadingEmptyLines) {
          return Fail(ParseError::kBadRequestLine);
        }
      } else {
        const ParseError e =
            is_request ? ParseRequestLine(line, line_offset) : ParseStatusLine(line, line_offset);
        if (e != ParseError::kNone) return fail_line(e);
        phase_ = Phase::kFields;
      }
    } else if (content_len == 0) {
      return EndHead(next, data, is_request, request_method, out);
    } else {
      if (fields_.size() >= limits_.max_headers) return Fail(ParseError::kTooManyHeaders);
      FieldLine field;
      const ParseError e = ParseFieldLine(line, &field);
      if (e != ParseError::kNone) return fail_line(e);
      AddField(line_offset, field);
    }
    line_start_ = scan_pos_ = next;
  }
}

// The empty line ending the head ends at `next`.
HeadParser::Result HeadParser::EndHead(size_t next, std::string_view data, bool is_request,
                                       std::string_view request_method, Head* out) {
  head_size_ = next;
  line_start_ = scan_pos_ = next;
  phase_ = Phase::kDone;
  return Finish(data, is_request, request_method, out);
}

// `line` is followed in memory by its CR, which ends the scans below without length checks.
ParseError HeadParser::ParseRequestLine(std::string_view line, uint32_t line_offset) {
  const char* const p = line.data();
  const size_t n = line.size();
  size_t i = 0;
  while (Is(p[i], kTchar)) ++i;
  if (i == 0 || i >= n || p[i] != ' ') return ParseError::kBadRequestLine;
  const size_t method_len = i;
  const size_t target_begin = ++i;
  while (Is(p[i], kTargetChar)) ++i;
  if (i == target_begin || i >= n || p[i] != ' ') return ParseError::kBadRequestLine;
  const ParseError e =
      ParseVersion(line.substr(i + 1), ParseError::kBadRequestLine, &version_minor_);
  if (e != ParseError::kNone) return e;
  method_ = Span{line_offset, static_cast<uint32_t>(method_len)};
  target_ = Span{line_offset + static_cast<uint32_t>(target_begin),
                 static_cast<uint32_t>(i - target_begin)};
  return ParseError::kNone;
}

ParseError HeadParser::ParseStatusLine(std::string_view line, uint32_t line_offset) {
  if (line.size() < 8) return ParseError::kBadStatusLine;
  const ParseError e = ParseVersion(line.substr(0, 8), ParseError::kBadStatusLine, &version_minor_);
  if (e != ParseError::kNone) return e;
  if (line.size() < 12 || line[8] != ' ' || !Is(line[9], kDigit) || !Is(line[10], kDigit) ||
      !Is(line[11], kDigit)) {
    return ParseError::kBadStatusLine;
  }
  status_ = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
  if (status_ < 100 || status_ > 599) return ParseError::kBadStatusLine;
  reason_ = Span{line_offset + 12, 0};
  if (line.size() > 12) {
    // "HTTP/1.1 200" without SP and reason is accepted; anything else must be SP reason.
    if (line[12] != ' ') return ParseError::kBadStatusLine;
    for (size_t i = 13; i < line.size(); ++i) {
      if (!Is(line[i], kFieldVchar)) return ParseError::kBadStatusLine;
    }
    reason_ = Span{line_offset + 13, static_cast<uint32_t>(line.size() - 13)};
  }
  return ParseError::kNone;
}

HeadParser::Result HeadParser::Finish(std::string_view data, bool is_request,
                                      std::string_view request_method, Head* out) {
  const char* const base = data.data();
  const auto view = [base](Span s) { return std::string_view(base + s.offset, s.length); };
  Head& head = *out;
  head.method = is_request ? view(method_) : std::string_view();
  head.target = is_request ? view(target_) : std::string_view();
  head.status = is_request ? 0 : status_;
  head.reason = is_request ? std::string_view() : view(reason_);
  head.version_minor = version_minor_;
  head.headers.clear();
  head.headers.reserve(fields_.size());
  head.host = std::string_view();
  head.head_size = head_size_;

  bool has_host = false;
  bool has_content_length = false;
  bool has_transfer_encoding = false;
  bool close = false;
  bool keep_alive_token = false;
  bool upgrade_token = false;
  bool has_upgrade_field = false;
  bool expect_continue = false;
  uint64_t content_length = 0;
  for (const FieldSpan& span : fields_) {
    const HeaderField field{view(span.name), view(span.value)};
    head.headers.push_back(field);
    // Dispatch on length first: most fields are none of these, and this rejects them with one
    // comparison.
    switch (field.name.size()) {
      case 4:
        if (is_request && NameIs(field.name, "host")) {
          if (has_host) return Fail(ParseError::kDuplicateHost);
          if (!IsValidAuthority(field.value, /*allow_empty=*/true)) {
            return Fail(ParseError::kInvalidHost);
          }
          has_host = true;
          head.host = field.value;
        }
        break;
      case 6:
        if (is_request && NameIs(field.name, "expect") &&
            EqualsIgnoreCase(field.value, "100-continue")) {
          expect_continue = true;
        }
        break;
      case 7:
        if (NameIs(field.name, "upgrade") && !field.value.empty()) {
          has_upgrade_field = true;
        }
        break;
      case 10:
        if (NameIs(field.name, "connection")) {
          ScanConnectionTokens(field.value, &close, &keep_alive_token, &upgrade_token);
        }
        break;
      case 14:
        if (NameIs(field.name, "content-length")) {
          if (has_content_length || !ParseContentLength(field.value, &content_length)) {
            return Fail(ParseError::kInvalidContentLength);
          }
          has_content_length = true;
        }
        break;
      case 17:
        if (NameIs(field.name, "transfer-encoding")) {
          if (has_transfer_encoding || !EqualsIgnoreCase(field.value, "chunked")) {
            return Fail(ParseError::kUnsupportedTransferEncoding);
          }
          has_transfer_encoding = true;
        }
        break;
      default:
        break;
    }
  }

  const bool http11 = version_minor_ == 1;
  if (has_transfer_encoding && !http11) return Fail(ParseError::kTransferEncodingInHttp10);
  if (has_transfer_encoding && has_content_length) {
    return Fail(ParseError::kContentLengthWithTransferEncoding);
  }
  head.content_length = content_length;
  head.keep_alive = !close && (http11 || keep_alive_token);
  // RFC 9110 §7.8 and §10.1.1: Upgrade and 100-continue are ignored in HTTP/1.0 requests.
  head.has_upgrade = http11 && upgrade_token && has_upgrade_field;
  head.expect_continue = http11 && expect_continue;

  if (is_request) {
    if (http11 && !has_host) return Fail(ParseError::kMissingHost);
    if (const ParseError e = CheckTarget(head.method, head.target); e != ParseError::kNone) {
      return Fail(e);
    }
    // "Content-Length: 0" is reported as kNone so that callers have one test for "no body
    // bytes follow" (the field itself stays in `headers`).
    head.body = has_transfer_encoding ? BodyKind::kChunked
                : content_length > 0  ? BodyKind::kContentLength
                                      : BodyKind::kNone;
    return Result::kDone;
  }

  // RFC 9112 §6.3, in its order of precedence.
  const int status = status_;
  if (status < 200 || status == 204) {
    // These never have a body, so a framing header would leave its bytes to be read as the next
    // response; Content-Length: 0 is harmless and common.
    if (has_transfer_encoding || content_length != 0) return Fail(ParseError::kInvalidResponse);
    head.body = BodyKind::kNone;
  } else if (status == 304 || request_method == "HEAD" ||
             (request_method == "CONNECT" && status < 300)) {
    head.body = BodyKind::kNone;
  } else if (has_transfer_encoding) {
    head.body = BodyKind::kChunked;
  } else if (has_content_length) {
    head.body = content_length > 0 ? BodyKind::kContentLength : BodyKind::kNone;
  } else {
    head.body = BodyKind::kUntilClose;
    head.keep_alive = false;
  }
  return Result::kDone;
}

// ---------------------------------------------------------------------------------------------
// BodyDecoder

BodyDecoder::BodyDecoder(const Limits& limits) : limits_(limits) {}

void BodyDecoder::Reset(BodyKind kind, uint64_t content_length) {
  error_ = ParseError::kNone;
  remaining_ = 0;
  chunk_size_ = 0;
  chunk_size_digits_ = 0;
  chunk_line_bytes_ = 0;
  payload_bytes_ = 0;
  trailer_bytes_ = 0;
  partial_line_.clear();
  trailers_.clear();
  switch (kind) {
    case BodyKind::kNone:
      state_ = State::kDone;
      break;
    case BodyKind::kContentLength:
      remaining_ = content_length;
      state_ = content_length == 0 ? State::kDone : State::kContentLength;
      break;
    case BodyKind::kChunked:
      state_ = State::kChunkSizeStart;
      break;
    case BodyKind::kUntilClose:
      state_ = State::kUntilClose;
      break;
  }
}

void BodyDecoder::Fail(ParseError error) {
  state_ = State::kError;
  error_ = error;
}

bool BodyDecoder::OnEof() {
  if (state_ == State::kDone) return true;
  if (state_ == State::kUntilClose) {
    state_ = State::kDone;
    return true;
  }
  if (state_ != State::kError) Fail(ParseError::kTruncatedBody);
  return false;
}

BodyDecoder::Step BodyDecoder::Decode(std::string_view in) {
  Step step;
  switch (state_) {
    case State::kDone:
      step.done = true;
      return step;
    case State::kError:
      return step;
    case State::kContentLength: {
      const size_t take = static_cast<size_t>(std::min<uint64_t>(remaining_, in.size()));
      step.consumed = step.payload_len = take;
      remaining_ -= take;
      payload_bytes_ += take;
      if (remaining_ == 0) {
        state_ = State::kDone;
        step.done = true;
      }
      return step;
    }
    case State::kUntilClose:
      step.consumed = step.payload_len = in.size();
      payload_bytes_ += in.size();
      return step;
    default:
      return DecodeChunked(in);
  }
}

BodyDecoder::Step BodyDecoder::DecodeChunked(std::string_view in) {
  Step step;
  const size_t n = in.size();
  size_t pos = 0;
  while (pos < n) {
    if (state_ == State::kChunkData) {
      const size_t take = static_cast<size_t>(std::min<uint64_t>(remaining_, n - pos));
      step.payload_offset = pos;
      step.payload_len = take;
      pos += take;
      remaining_ -= take;
      payload_bytes_ += take;
      if (remaining_ == 0) state_ = State::kChunkDataCr;
      // One payload span per step; the framing after it is left for the next call.
      step.consumed = pos;
      return step;
    }
    if (state_ == State::kTrailer) {
      pos = DecodeTrailerLine(in, pos);
      if (state_ == State::kTrailer) continue;
      break;  // done or failed
    }
    const char c = in[pos++];
    if (state_ <= State::kChunkSizeLf && ++chunk_line_bytes_ > kMaxChunkLineBytes) {
      Fail(ParseError::kBadChunk);
      break;
    }
    // Whitespace is rejected everywhere in the chunk line (RFC 9112 allows BWS around chunk-ext):
    // "5 \r\n" or " 5\r\n" is read differently by different parsers.
    bool ok = true;
    switch (state_) {
      case State::kChunkSizeStart:
        ok = Is(c, kHexDigit);
        chunk_size_ = ok ? HexValue(c) : 0;
        chunk_size_digits_ = 1;
        state_ = State::kChunkSize;
        break;
      case State::kChunkSize:
        if (Is(c, kHexDigit)) {
          ok = ++chunk_size_digits_ <= kMaxChunkSizeDigits;
          chunk_size_ = (chunk_size_ << 4) | HexValue(c);
        } else if (c == ';') {
          state_ = State::kExtNameStart;
        } else if (c == '\r') {
          state_ = State::kChunkSizeLf;
        } else {
          ok = false;
        }
        break;
      case State::kExtNameStart:
        ok = Is(c, kTchar);
        state_ = State::kExtName;
        break;
      case State::kExtName:
        if (c == '=') {
          state_ = State::kExtValueStart;
        } else if (c == ';') {
          state_ = State::kExtNameStart;
        } else if (c == '\r') {
          state_ = State::kChunkSizeLf;
        } else {
          ok = Is(c, kTchar);
        }
        break;
      case State::kExtValueStart:
        if (c == '"') {
          state_ = State::kExtQuoted;
        } else {
          ok = Is(c, kTchar);
          state_ = State::kExtToken;
        }
        break;
      case State::kExtToken:
        if (c == ';') {
          state_ = State::kExtNameStart;
        } else if (c == '\r') {
          state_ = State::kChunkSizeLf;
        } else {
          ok = Is(c, kTchar);
        }
        break;
      case State::kExtQuoted:
        if (c == '"') {
          state_ = State::kExtAfterQuoted;
        } else if (c == '\\') {
          state_ = State::kExtQuotedPair;
        } else {
          ok = Is(c, kQdtext);
        }
        break;
      case State::kExtQuotedPair:
        ok = Is(c, kFieldVchar);
        state_ = State::kExtQuoted;
        break;
      case State::kExtAfterQuoted:
        if (c == ';') {
          state_ = State::kExtNameStart;
        } else if (c == '\r') {
          state_ = State::kChunkSizeLf;
        } else {
          ok = false;
        }
        break;
      case State::kChunkSizeLf:
        ok = c == '\n';
        chunk_line_bytes_ = 0;
        if (chunk_size_ == 0) {
          state_ = State::kTrailer;
        } else {
          remaining_ = chunk_size_;
          state_ = State::kChunkData;
        }
        break;
      case State::kChunkDataCr:
        ok = c == '\r';
        state_ = State::kChunkDataLf;
        break;
      case State::kChunkDataLf:
        ok = c == '\n';
        state_ = State::kChunkSizeStart;
        break;
      default:
        ok = false;  // unreachable: data, trailer and non-chunked states are handled above
        break;
    }
    if (!ok) {
      Fail(ParseError::kBadChunk);
      break;
    }
  }
  step.consumed = pos;
  step.done = state_ == State::kDone;
  return step;
}

size_t BodyDecoder::DecodeTrailerLine(std::string_view in, size_t pos) {
  const char* const start = in.data() + pos;
  const size_t available = in.size() - pos;
  const char* lf = static_cast<const char*>(std::memchr(start, '\n', available));
  const size_t take = lf != nullptr ? static_cast<size_t>(lf - start) + 1 : available;
  // Checked before buffering, so a peer cannot grow partial_line_ past the limit.
  if (trailer_bytes_ + partial_line_.size() + take > limits_.max_header_bytes) {
    Fail(ParseError::kTrailersTooLarge);
    return pos + take;
  }
  if (lf == nullptr) {
    partial_line_.append(start, take);
    return pos + take;
  }
  std::string_view line(start, take);
  if (!partial_line_.empty()) {
    partial_line_.append(start, take);
    line = partial_line_;
  }
  trailer_bytes_ += line.size();
  if (line.size() < 2 || line[line.size() - 2] != '\r') {
    Fail(ParseError::kInvalidLineEnding);
    return pos + take;
  }
  line.remove_suffix(2);
  if (line.find('\r') != std::string_view::npos) {
    Fail(ParseError::kInvalidLineEnding);
    return pos + take;
  }
  if (line.empty()) {
    state_ = State::kDone;
  } else if (trailers_.size() >= limits_.max_headers) {
    Fail(ParseError::kTrailersTooLarge);
  } else {
    FieldLine field;
    const ParseError e = ParseFieldLine(line, &field);
    if (e != ParseError::kNone) {
      Fail(e);
    } else {
      trailers_.emplace_back(
          std::string(line.substr(0, field.name_len)),
          std::string(line.substr(field.value_begin, field.value_end - field.value_begin)));
    }
  }
  partial_line_.clear();
  return pos + take;
}

}  // namespace portway::http1
