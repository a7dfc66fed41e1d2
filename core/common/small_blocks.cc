#include "core/common/small_blocks.h"

#include <array>
#include <cstdint>
#include <new>

#include "portway/filter.h"

namespace portway {
namespace {

// 32-byte steps: a block wastes no more than malloc's own rounding would
// (long-lived objects such as a connection's timer come from here too, and
// every idle connection carries them).
constexpr size_t kGranule = 32;
constexpr size_t kClasses = 64;  // blocks of 32, 64, ..., 2048 bytes
// Blocks kept per class: 64 up to 1024 bytes, 16 above (a stream is about
// 1 KiB), so at most ~1.9 MiB stay with a thread.
constexpr size_t kSmallClasses = 32;
constexpr size_t kPerSmallClass = 64;
constexpr size_t kPerLargeClass = 16;

struct FreeBlock {
  FreeBlock* next;
};

constexpr std::array<uint32_t, kClasses> MakeLimits() {
  std::array<uint32_t, kClasses> limits{};
  for (size_t c = 0; c < kClasses; ++c) {
    limits[c] = c < kSmallClasses ? kPerSmallClass : kPerLargeClass;
  }
  return limits;
}
constexpr std::array<uint32_t, kClasses> kLimits = MakeLimits();
// Set as a class's count when the thread's cache closes: no free fits under
// any limit, so blocks go straight back to malloc with no other test.
constexpr uint32_t kClosedCount = UINT32_MAX / 2;

// Trivially destructible, so it stays usable while the thread exits; the
// Drainer empties it then and turns it off.
struct Cache {
  std::array<FreeBlock*, kClasses> heads;
  std::array<uint32_t, kClasses> counts;
  bool registered;
};

thread_local Cache cache{};

struct Drainer {
  ~Drainer() {
    for (size_t c = 0; c < kClasses; ++c) {
      while (FreeBlock* b = cache.heads[c]) {
        cache.heads[c] = b->next;
        ::operator delete(b, (c + 1) * kGranule);
      }
      cache.counts[c] = kClosedCount;
    }
  }
};

thread_local Drainer drainer;

// Blocks of 1..32 bytes are class 0, 33..64 class 1, and so on; a size of
// 0 wraps to a class past kClasses and goes to malloc.
size_t ClassOf(size_t size) { return (size - 1) / kGranule; }

constexpr bool kBypass = kSmallBlocksBypassed;

}  // namespace

void* AllocateSmallBlock(size_t size) {
  size_t c = ClassOf(size);
  if (kBypass || c >= kClasses) return ::operator new(size);
  if (FreeBlock* b = cache.heads[c]) {
    cache.heads[c] = b->next;
    --cache.counts[c];
    return b;
  }
  return ::operator new((c + 1) * kGranule);
}

void FreeSmallBlock(void* block, size_t size) noexcept {
  if (block == nullptr) return;
  size_t c = ClassOf(size);
  if (kBypass || c >= kClasses) {
    ::operator delete(block, size);
    return;
  }
  if (cache.counts[c] >= kLimits[c]) {  // full, or the thread's cache closed
    ::operator delete(block, (c + 1) * kGranule);
    return;
  }
  if (!cache.registered) {
    cache.registered = true;
    (void)&drainer;  // constructs it, so its destructor runs at thread exit
  }
  auto* b = static_cast<FreeBlock*>(block);
  b->next = cache.heads[c];
  cache.heads[c] = b;
  ++cache.counts[c];
}

namespace http {

void* Filter::operator new(size_t size) { return AllocateSmallBlock(size); }
void Filter::operator delete(void* block, size_t size) noexcept { FreeSmallBlock(block, size); }

}  // namespace http
}  // namespace portway
