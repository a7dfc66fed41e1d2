// Small string helpers over std::string_view.
//
// Debian's abseil is built with its own absl::string_view (not an alias of
// std::string_view), so absl's string functions do not accept the
// std::string_view used throughout Portway. These cover what the data path
// needs, without allocation unless a string is returned.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace portway {

inline char AsciiLower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }

// The high bit of each byte of `x` that is an ASCII capital letter ('A' to
// 'Z'); bytes >= 0x80 never count. Each add stays below 0x100 per byte, so
// no carry crosses into the next byte.
inline uint64_t AsciiUpperBits(uint64_t x) {
  constexpr uint64_t kOnes = 0x0101010101010101;
  const uint64_t seven_bits = x & (kOnes * 0x7f);
  const uint64_t at_least_a = seven_bits + kOnes * (0x80 - 'A');
  const uint64_t past_z = seven_bits + kOnes * (0x80 - 'Z' - 1);
  return at_least_a & ~past_z & ~x & (kOnes * 0x80);
}

// Lowercases `n` bytes of ASCII in place, eight at a time.
inline void LowerAsciiInPlace(char* p, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t x;
    std::memcpy(&x, p + i, 8);
    x |= AsciiUpperBits(x) >> 2;  // 0x80 >> 2 is the case bit
    std::memcpy(p + i, &x, 8);
  }
  for (; i < n; ++i) p[i] = AsciiLower(p[i]);
}

// True if `s` holds an ASCII capital letter; eight bytes at a time.
inline bool HasAsciiUpper(std::string_view s) {
  size_t i = 0;
  for (; i + 8 <= s.size(); i += 8) {
    uint64_t x;
    std::memcpy(&x, s.data() + i, 8);
    if (AsciiUpperBits(x) != 0) return true;
  }
  for (; i < s.size(); ++i) {
    if (s[i] >= 'A' && s[i] <= 'Z') return true;
  }
  return false;
}

// Copies n bytes, sizeof(Word) <= n <= 2 * sizeof(Word), as two word
// moves that overlap when n is less than two words.
template <typename Word>
inline void CopyTwoWords(char* dst, const char* src, size_t n) {
  Word head;
  Word tail;
  std::memcpy(&head, src, sizeof(Word));
  std::memcpy(&tail, src + n - sizeof(Word), sizeof(Word));
  std::memcpy(dst, &head, sizeof(Word));
  std::memcpy(dst + n - sizeof(Word), &tail, sizeof(Word));
}

// Copies n bytes. Header names and values are mostly a few bytes: two
// overlapping moves copy those without a call into memcpy (an HTTP/1 head
// written out is some twenty such copies). n may be 0, src then null; the
// ranges must not overlap.
inline void CopyShort(char* dst, const char* src, size_t n) {
  if (n > 16) {
    std::memcpy(dst, src, n);
  } else if (n >= 8) {
    CopyTwoWords<uint64_t>(dst, src, n);
  } else if (n >= 4) {
    CopyTwoWords<uint32_t>(dst, src, n);
  } else {
    for (size_t i = 0; i < n; ++i) dst[i] = src[i];
  }
}

inline std::string ToLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = AsciiLower(c);
  return out;
}

inline std::string ToUpper(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 32);
  }
  return out;
}

inline bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (AsciiLower(a[i]) != AsciiLower(b[i])) return false;
  }
  return true;
}

inline bool StartsWith(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}

inline bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

inline bool StartsWithIgnoreCase(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && EqualsIgnoreCase(s.substr(0, prefix.size()), prefix);
}

// Strips spaces and tabs (HTTP's optional whitespace) from both ends.
inline std::string_view TrimOws(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

inline std::vector<std::string_view> SplitView(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (true) {
    size_t pos = s.find(sep, start);
    if (pos == std::string_view::npos) {
      out.push_back(s.substr(start));
      return out;
    }
    out.push_back(s.substr(start, pos - start));
    start = pos + 1;
  }
}

// Decimal digits only; false on anything else or overflow.
inline bool ParseUint64(std::string_view s, uint64_t* out) {
  if (s.empty()) return false;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (UINT64_MAX - d) / 10) return false;
    v = v * 10 + d;
  }
  *out = v;
  return true;
}

// Concatenation for the cold paths (errors, local replies, logs).
template <typename... Parts>
std::string Cat(const Parts&... parts) {
  std::string out;
  auto append = [&out](const auto& p) {
    using T = std::decay_t<decltype(p)>;
    if constexpr (std::is_arithmetic_v<T> && !std::is_same_v<T, char>) {
      out += std::to_string(p);
    } else if constexpr (std::is_same_v<T, char>) {
      out.push_back(p);
    } else {
      out.append(std::string_view(p));
    }
  };
  (append(parts), ...);
  return out;
}

// A JSON string literal of `s`, quotes included. Control characters and
// bytes of 0x80 and above (a request's bytes need not be UTF-8) are written
// as \u00XX, so the output is valid JSON whatever the input.
inline std::string JsonString(std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(s.size() + 2);
  out.push_back('"');
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(ch);
    } else if (c < 0x20 || c >= 0x7f) {
      out.append("\\u00");
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xf]);
    } else {
      out.push_back(ch);
    }
  }
  out.push_back('"');
  return out;
}

}  // namespace portway
