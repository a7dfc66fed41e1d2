// The per-thread small-block cache (core/common/small_blocks.cc) as a
// standard allocator, for containers made and dropped with every request:
// a header map's fields, a buffer's slice list.
//
//   std::vector<Entry, portway::BlockAllocator<Entry>> entries;
//
// Thread safety: a block freed on another thread joins that thread's cache,
// which is fine for plain memory.
#pragma once

#include <cstddef>

namespace portway {

void* AllocateSmallBlock(size_t size);
// `size` must be the size passed to AllocateSmallBlock.
void FreeSmallBlock(void* block, size_t size) noexcept;

template <typename T>
struct BlockAllocator {
  using value_type = T;
  BlockAllocator() = default;
  template <typename U>
  BlockAllocator(const BlockAllocator<U>&) {}  // NOLINT: allocators convert implicitly
  // Blocks have operator new's alignment.
  static_assert(alignof(T) <= __STDCPP_DEFAULT_NEW_ALIGNMENT__);
  T* allocate(size_t n) { return static_cast<T*>(AllocateSmallBlock(n * sizeof(T))); }
  void deallocate(T* p, size_t n) noexcept { FreeSmallBlock(p, n * sizeof(T)); }
  friend bool operator==(const BlockAllocator&, const BlockAllocator&) { return true; }
};

}  // namespace portway
