#include "portway/headers.h"

#include <charconv>

#include "core/common/small_blocks.h"
#include "core/common/strings.h"

namespace portway::http {

namespace {
bool IsLower(std::string_view name) {
  for (char c : name) {
    if (c >= 'A' && c <= 'Z') return false;
  }
  return true;
}
}  // namespace

void* HeaderMap::operator new(size_t size) { return AllocateSmallBlock(size); }
void HeaderMap::operator delete(void* block, size_t size) noexcept { FreeSmallBlock(block, size); }

void HeaderMap::Add(std::string_view name, std::string_view value) {
  // Built in place: no temporaries to move (codecs add every field here).
  Entry& e = entries_.emplace_back(name, value);
  for (char& c : e.name) c = AsciiLower(c);
  byte_size_ += name.size() + value.size();
}

void HeaderMap::Set(std::string_view name, std::string_view value) {
  // Most callers pass lowercase names already; only copy when needed.
  std::string lowered;
  if (!IsLower(name)) lowered = ToLower(name);
  std::string_view lower = lowered.empty() ? name : std::string_view(lowered);
  bool replaced = false;
  for (auto it = entries_.begin(); it != entries_.end();) {
    if (it->name == lower) {
      if (!replaced) {
        byte_size_ = byte_size_ - it->value.size() + value.size();
        it->value = std::string(value);
        replaced = true;
        ++it;
      } else {
        byte_size_ -= it->name.size() + it->value.size();
        it = entries_.erase(it);
      }
    } else {
      ++it;
    }
  }
  if (!replaced) AddLower(lower, value);
}

void HeaderMap::SetOwned(std::string_view name, std::string value) {
  std::string lowered;
  if (!IsLower(name)) lowered = ToLower(name);
  std::string_view lower = lowered.empty() ? name : std::string_view(lowered);
  Remove(lower);
  AddLowerOwned(lower, std::move(value));
}

size_t HeaderMap::Remove(std::string_view name) {
  size_t removed = 0;
  for (auto it = entries_.begin(); it != entries_.end();) {
    if (EqualsIgnoreCase(it->name, name)) {
      byte_size_ -= it->name.size() + it->value.size();
      it = entries_.erase(it);
      ++removed;
    } else {
      ++it;
    }
  }
  return removed;
}

const std::string* HeaderMap::Get(std::string_view name) const {
  for (const Entry& e : entries_) {
    if (e.name == name) return &e.value;
  }
  return nullptr;
}

int HeaderMap::Status() const {
  int status = 0;
  const std::string* v = Get(headers::kStatus);
  uint64_t parsed = 0;
  if (v == nullptr || !ParseUint64(*v, &parsed) || parsed > 999) return 0;
  status = static_cast<int>(parsed);
  return status;
}

bool HeaderListHasToken(std::string_view list, std::string_view token) {
  for (std::string_view part : SplitView(list, ',')) {
    if (EqualsIgnoreCase(TrimOws(part), token)) return true;
  }
  return false;
}

bool IsGrpcContentType(std::string_view type) {
  constexpr std::string_view kGrpc = "application/grpc";
  if (type.size() < kGrpc.size() || !EqualsIgnoreCase(type.substr(0, kGrpc.size()), kGrpc)) {
    return false;
  }
  return type.size() == kGrpc.size() || type[kGrpc.size()] == '+' || type[kGrpc.size()] == ';';
}

int GrpcStatusOf(const HeaderMap& headers) {
  const std::string* value = headers.Get("grpc-status");
  if (value == nullptr) return -1;
  int n = -1;
  auto [end, ec] = std::from_chars(value->data(), value->data() + value->size(), n);
  if (ec != std::errc() || end != value->data() + value->size() || n < 0) return -1;
  return n;
}

}  // namespace portway::http
