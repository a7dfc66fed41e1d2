// HeaderMap: the request or response headers (and trailers) of one stream,
// as the SDK presents them to every codec, filter and the router.
//
// Names are stored lowercase (HTTP/2's rule, applied to HTTP/1 too, so a
// filter never compares case-insensitively). The request line and status
// line travel as pseudo-headers, exactly as in HTTP/2:
//   request:  :method  :path  :authority (the Host)  :scheme
//   response: :status
// Pseudo-headers come first; HTTP/1 codecs translate them to and from the
// start line and the Host header.
//
// Thread safety: none; a HeaderMap belongs to one stream.
//
//   HeaderMap h;
//   h.Add(":status", "200");
//   h.Add("Content-Type", "text/plain");    // stored as content-type
//   if (const std::string* v = h.Get("content-type")) { ... }
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace portway::http {

namespace headers {
inline constexpr std::string_view kMethod = ":method";
inline constexpr std::string_view kPath = ":path";
inline constexpr std::string_view kAuthority = ":authority";
inline constexpr std::string_view kScheme = ":scheme";
inline constexpr std::string_view kStatus = ":status";
}  // namespace headers

class HeaderMap {
 public:
  // Every request and response makes one or more: their memory is recycled
  // per thread rather than going through malloc each time.
  static void* operator new(size_t size);
  static void operator delete(void* block, size_t size) noexcept;

  struct Entry {
    Entry() = default;
    Entry(std::string_view n, std::string_view v) : name(n), value(v) {}
    std::string name;  // lowercase
    std::string value;
  };

  // Appends a field. The name is lowercased.
  void Add(std::string_view name, std::string_view value);
  // Appends a field whose name is already lowercase (codecs, hot path); the
  // strings are built in place.
  void AddLower(std::string_view name, std::string_view value) {
    byte_size_ += name.size() + value.size();
    entries_.emplace_back(name, value);
  }
  // The same, taking the value over (no copy of a long one).
  void AddLowerOwned(std::string_view name, std::string value) {
    byte_size_ += name.size() + value.size();
    Entry& e = entries_.emplace_back(name, std::string_view());
    e.value = std::move(value);
  }
  // Replaces every field of that name with one (keeps the first one's place).
  void Set(std::string_view name, std::string_view value);
  // Set() taking ownership of the value (no copy).
  void SetOwned(std::string_view name, std::string value);
  // Removes every field of that name; returns how many were removed.
  size_t Remove(std::string_view name);
  // Removes, in one pass, every field whose (lowercase) name matches
  // predicate(std::string_view name).
  template <typename Predicate>
  size_t RemoveIf(Predicate&& predicate) {
    size_t removed = 0;
    size_t out = 0;
    for (size_t i = 0; i < entries_.size(); ++i) {
      if (predicate(std::string_view(entries_[i].name))) {
        byte_size_ -= entries_[i].name.size() + entries_[i].value.size();
        ++removed;
        continue;
      }
      if (out != i) entries_[out] = std::move(entries_[i]);
      ++out;
    }
    entries_.resize(out);
    return removed;
  }
  void Reserve(size_t n) { entries_.reserve(n); }
  // The first value of `name` (lowercase), or null.
  const std::string* Get(std::string_view name) const;
  std::string_view GetOr(std::string_view name, std::string_view fallback) const {
    const std::string* v = Get(name);
    return v ? std::string_view(*v) : fallback;
  }
  bool Has(std::string_view name) const { return Get(name) != nullptr; }

  size_t size() const { return entries_.size(); }
  bool empty() const { return entries_.empty(); }
  // Sum of name and value lengths.
  size_t byteSize() const { return byte_size_; }
  const std::vector<Entry>& entries() const { return entries_; }
  std::vector<Entry>::const_iterator begin() const { return entries_.begin(); }
  std::vector<Entry>::const_iterator end() const { return entries_.end(); }

  // Convenience accessors for pseudo-headers.
  std::string_view Method() const { return GetOr(headers::kMethod, ""); }
  std::string_view Path() const { return GetOr(headers::kPath, ""); }
  std::string_view Authority() const { return GetOr(headers::kAuthority, ""); }
  int Status() const;

 private:
  std::vector<Entry> entries_;
  size_t byte_size_ = 0;
};

using HeaderMapPtr = std::unique_ptr<HeaderMap>;

// True when `list` (a comma-separated header value) contains `token`,
// compared case-insensitively (Connection: keep-alive, Upgrade).
bool HeaderListHasToken(std::string_view list, std::string_view token);

// gRPC: a content-type of application/grpc, application/grpc+proto,
// application/grpc;... (case-insensitive); not application/grpc-web.
bool IsGrpcContentType(std::string_view content_type);
// grpc-status of a response head (a trailers-only response) or of
// trailers; -1 when absent or not a number.
int GrpcStatusOf(const HeaderMap& headers);

}  // namespace portway::http
