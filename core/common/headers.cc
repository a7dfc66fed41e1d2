#include "portway/headers.h"

#include <algorithm>
#include <charconv>
#include <cstring>

#include "core/common/small_blocks.h"
#include "core/common/strings.h"

namespace portway::http {

namespace {
bool IsDigit(char c) { return c >= '0' && c <= '9'; }

bool IsLower(std::string_view name) {
  for (char c : name) {
    if (c >= 'A' && c <= 'Z') return false;
  }
  return true;
}
}  // namespace

void* HeaderMap::operator new(size_t size) { return AllocateSmallBlock(size); }
void HeaderMap::operator delete(void* block, size_t size) noexcept { FreeSmallBlock(block, size); }

namespace {
// A request's head and the fields a proxy adds fit the first block; a map
// that keeps growing takes blocks twice the size, up to the largest.
constexpr size_t kFirstBlockBytes = 512 - 24;
constexpr size_t kLargestBlockBytes = 16384;
}  // namespace

HeaderMap::HeaderMap(const HeaderMap& other) : byte_size_(other.byte_size_) {
  entries_.reserve(other.entries_.size());
  if (other.byte_size_ > 0) NewBlock(other.byte_size_);
  for (const Entry& e : other.entries_) entries_.push_back(Entry{Store(e.name), Store(e.value)});
}

HeaderMap& HeaderMap::operator=(const HeaderMap& other) {
  if (this != &other) *this = HeaderMap(other);
  return *this;
}

HeaderMap::HeaderMap(HeaderMap&& other) noexcept
    : entries_(std::move(other.entries_)),
      blocks_(std::exchange(other.blocks_, nullptr)),
      byte_size_(std::exchange(other.byte_size_, 0)) {
  other.entries_.clear();
}

HeaderMap& HeaderMap::operator=(HeaderMap&& other) noexcept {
  if (this != &other) {
    FreeBlocks();
    entries_ = std::move(other.entries_);
    other.entries_.clear();
    blocks_ = std::exchange(other.blocks_, nullptr);
    byte_size_ = std::exchange(other.byte_size_, 0);
  }
  return *this;
}

HeaderMap::~HeaderMap() { FreeBlocks(); }

void HeaderMap::FreeBlocks() noexcept {
  while (blocks_ != nullptr) {
    Block* next = blocks_->next;
    FreeSmallBlock(blocks_, sizeof(Block) + blocks_->capacity);
    blocks_ = next;
  }
}

void HeaderMap::NewBlock(size_t at_least) {
  size_t capacity = kFirstBlockBytes;
  if (blocks_ != nullptr) capacity = std::min(2 * blocks_->capacity, kLargestBlockBytes);
  capacity = std::max(capacity, at_least);
  auto* block = static_cast<Block*>(AllocateSmallBlock(sizeof(Block) + capacity));
  block->next = blocks_;
  block->capacity = capacity;
  block->used = 0;
  blocks_ = block;
}

char* HeaderMap::Allocate(size_t n) {
  if (blocks_ == nullptr || blocks_->capacity - blocks_->used < n) NewBlock(n);
  char* p = blocks_->data() + blocks_->used;
  blocks_->used += n;
  return p;
}

void HeaderMap::ReserveBytes(size_t bytes) {
  if (blocks_ == nullptr || blocks_->capacity - blocks_->used < bytes) NewBlock(bytes);
}

std::string_view HeaderMap::Store(std::string_view bytes) {
  if (bytes.empty()) return {};
  return {Copy(bytes), bytes.size()};
}

char* HeaderMap::Copy(std::string_view bytes) {
  char* p = Allocate(bytes.size());
  if (!bytes.empty()) std::memcpy(p, bytes.data(), bytes.size());
  return p;
}

char* HeaderMap::AddPair(std::string_view name, std::string_view value) {
  // One piece of storage for both, so a block holds them together.
  char* p = Allocate(name.size() + value.size());
  CopyShort(p, name.data(), name.size());
  CopyShort(p + name.size(), value.data(), value.size());
  AddCopied(std::string_view(p, name.size()), std::string_view(p + name.size(), value.size()));
  return p;
}

void HeaderMap::AddLower(std::string_view name, std::string_view value) { AddPair(name, value); }

void HeaderMap::Add(std::string_view name, std::string_view value) {
  LowerAsciiInPlace(AddPair(name, value), name.size());
}

void HeaderMap::Set(std::string_view name, std::string_view value) {
  // Most callers pass lowercase names already; only copy when needed.
  std::string lowered;
  if (!IsLower(name)) lowered = ToLower(name);
  const std::string_view lower = lowered.empty() ? name : std::string_view(lowered);
  size_t out = 0;
  bool replaced = false;
  for (size_t i = 0; i < entries_.size(); ++i) {
    Entry& e = entries_[i];
    if (e.name == lower) {
      if (replaced) {
        byte_size_ -= e.name.size() + e.value.size();
        continue;
      }
      byte_size_ = byte_size_ - e.value.size() + value.size();
      e.value = Store(value);
      replaced = true;
    }
    if (out != i) entries_[out] = e;
    ++out;
  }
  entries_.resize(out);
  if (!replaced) AddLower(lower, value);
}

size_t HeaderMap::Remove(std::string_view name) {
  return RemoveIf([name](std::string_view n) { return EqualsIgnoreCase(n, name); });
}

const std::string_view* HeaderMap::Get(std::string_view name) const {
  if (name.empty()) {
    for (const Entry& e : entries_) {
      if (e.name.empty()) return &e.value;
    }
    return nullptr;
  }
  // Length and first byte rule out nearly every other field before a
  // comparison call.
  const char first = name[0];
  for (const Entry& e : entries_) {
    if (e.name.size() == name.size() && e.name[0] == first &&
        std::memcmp(e.name.data(), name.data(), name.size()) == 0) {
      return &e.value;
    }
  }
  return nullptr;
}

int HeaderMap::Status() const {
  // Pseudo-headers lead: :status is nearly always the first field.
  const std::string_view* v = !entries_.empty() && entries_[0].name == headers::kStatus
                                  ? &entries_[0].value
                                  : Get(headers::kStatus);
  if (v == nullptr) return 0;
  // Codecs always give three digits.
  if (v->size() == 3 && IsDigit((*v)[0]) && IsDigit((*v)[1]) && IsDigit((*v)[2])) {
    return ((*v)[0] - '0') * 100 + ((*v)[1] - '0') * 10 + ((*v)[2] - '0');
  }
  uint64_t parsed = 0;
  if (!ParseUint64(*v, &parsed) || parsed > 999) return 0;
  return static_cast<int>(parsed);
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
  const std::string_view* value = headers.Get("grpc-status");
  if (value == nullptr) return -1;
  int n = -1;
  auto [end, ec] = std::from_chars(value->data(), value->data() + value->size(), n);
  if (ec != std::errc() || end != value->data() + value->size() || n < 0) return -1;
  return n;
}

}  // namespace portway::http
