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
//   if (const std::string_view* v = h.Get("content-type")) { ... }
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "portway/block_allocator.h"

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

  // A field. Both views point into the map's own storage (or at constants):
  // they stay valid, and their bytes unchanged, for as long as the map lives
  // (a field that is replaced or removed leaves its old bytes in place, so
  // a map that is changed over and over grows), and a copy of the map
  // copies them.
  struct Entry {
    std::string_view name;  // lowercase
    std::string_view value;
  };

  // The entry vector's memory comes from the per-thread block cache.
  using Entries = std::vector<Entry, BlockAllocator<Entry>>;

  HeaderMap() = default;
  HeaderMap(const HeaderMap& other);
  HeaderMap& operator=(const HeaderMap& other);
  HeaderMap(HeaderMap&& other) noexcept;
  HeaderMap& operator=(HeaderMap&& other) noexcept;
  ~HeaderMap();

  // Appends a field. The name is lowercased.
  void Add(std::string_view name, std::string_view value);
  // Appends a field whose name is already lowercase (codecs, hot path).
  void AddLower(std::string_view name, std::string_view value);
  // The same; kept for callers that have the value as a std::string.
  void AddLowerOwned(std::string_view name, const std::string& value) { AddLower(name, value); }
  // Replaces every field of that name with one (keeps the first one's place).
  void Set(std::string_view name, std::string_view value);
  void SetOwned(std::string_view name, const std::string& value) { Set(name, value); }
  // Removes every field of that name; returns how many were removed.
  size_t Remove(std::string_view name);
  // Removes, in one pass, every field whose (lowercase) name matches
  // predicate(std::string_view name).
  template <typename Predicate>
  size_t RemoveIf(Predicate&& predicate) {
    size_t removed = 0;
    size_t out = 0;
    for (size_t i = 0; i < entries_.size(); ++i) {
      if (predicate(entries_[i].name)) {
        byte_size_ -= entries_[i].name.size() + entries_[i].value.size();
        ++removed;
        continue;
      }
      if (out != i) entries_[out] = entries_[i];
      ++out;
    }
    entries_.resize(out);
    return removed;
  }
  // Room for `n` fields.
  void Reserve(size_t n) { entries_.reserve(n); }
  // Room for `bytes` bytes of names and values in one piece of storage.
  void ReserveBytes(size_t bytes);

  // The first value of `name` (lowercase), or null. The pointer is good
  // until the map's fields are next added, set or removed; the view it
  // points to, until the map is destroyed.
  const std::string_view* Get(std::string_view name) const;
  std::string_view GetOr(std::string_view name, std::string_view fallback) const {
    const std::string_view* v = Get(name);
    return v ? *v : fallback;
  }
  bool Has(std::string_view name) const { return Get(name) != nullptr; }

  size_t size() const { return entries_.size(); }
  bool empty() const { return entries_.empty(); }
  // Sum of name and value lengths.
  size_t byteSize() const { return byte_size_; }
  const Entries& entries() const { return entries_; }
  Entries::const_iterator begin() const { return entries_.begin(); }
  Entries::const_iterator end() const { return entries_.end(); }

  // Convenience accessors for pseudo-headers.
  std::string_view Method() const { return GetOr(headers::kMethod, ""); }
  std::string_view Path() const { return GetOr(headers::kPath, ""); }
  std::string_view Authority() const { return GetOr(headers::kAuthority, ""); }
  int Status() const;

  // For codecs, which copy a whole message head in at once and then add
  // fields that view that copy. Copy() returns the map's own copy of
  // `bytes` (writable: a codec may lowercase names in it); AddCopied()
  // appends a field whose name (lowercase) and value are views into such a
  // copy, or into static storage (a string literal), and are not copied.
  char* Copy(std::string_view bytes);
  void AddCopied(std::string_view name, std::string_view value) {
    byte_size_ += name.size() + value.size();
    entries_.push_back(Entry{name, value});
  }

 private:
  // Storage: blocks that never move, the newest first.
  struct Block {
    Block* next;
    size_t capacity;
    size_t used;
    char* data() { return reinterpret_cast<char*>(this + 1); }
  };
  char* Allocate(size_t n);
  // Appends a copy of the field; returns where its name was copied to.
  char* AddPair(std::string_view name, std::string_view value);
  void NewBlock(size_t at_least);
  std::string_view Store(std::string_view bytes);
  void FreeBlocks() noexcept;

  Entries entries_;
  Block* blocks_ = nullptr;
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
