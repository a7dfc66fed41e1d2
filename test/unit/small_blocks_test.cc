#include "core/common/small_blocks.h"

#include <vector>

#include "gtest/gtest.h"

namespace portway {
namespace {

constexpr bool kCached = !kSmallBlocksBypassed;

TEST(SmallBlocksTest, AFreedBlockServesItsWholeClassAndNoOther) {
  if (!kCached) GTEST_SKIP() << "AddressSanitizer build: every block comes from malloc";
  // Classes are 32-byte steps: 33..64 share one, 32 and 65 are others.
  void* a = AllocateSmallBlock(33);
  FreeSmallBlock(a, 33);
  void* b = AllocateSmallBlock(64);
  EXPECT_EQ(b, a);
  FreeSmallBlock(b, 64);
  void* c = AllocateSmallBlock(32);
  void* d = AllocateSmallBlock(65);
  EXPECT_NE(c, a);  // the block for 33..64 is still in the cache, not handed out
  EXPECT_NE(d, a);
  void* e = AllocateSmallBlock(48);
  EXPECT_EQ(e, a);
  for (auto [p, n] : {std::pair{c, 32}, {d, 65}, {e, 48}}) FreeSmallBlock(p, n);
}

TEST(SmallBlocksTest, EachClassKeepsAtMostItsLimit) {
  if (!kCached) GTEST_SKIP() << "AddressSanitizer build: every block comes from malloc";
  for (size_t size : {size_t{100}, size_t{2000}}) {
    const size_t limit = size <= 1024 ? 64 : 16;
    // Taking more than the class can hold empties its list, whatever
    // earlier tests left in it.
    std::vector<void*> blocks;
    for (size_t i = 0; i < 3 * limit; ++i) blocks.push_back(AllocateSmallBlock(size));
    for (void* p : blocks) FreeSmallBlock(p, size);
    // The list now holds the first `limit` freed, the last of them on top;
    // the rest went back to malloc.
    std::vector<void*> again;
    for (size_t i = 0; i < limit; ++i) {
      again.push_back(AllocateSmallBlock(size));
      EXPECT_EQ(again.back(), blocks[limit - 1 - i]) << size << " " << i;
    }
    for (void* p : again) FreeSmallBlock(p, size);
  }
}

TEST(SmallBlocksTest, ZeroAndLargeSizesGoToMalloc) {
  void* zero = AllocateSmallBlock(0);
  EXPECT_NE(zero, nullptr);
  FreeSmallBlock(zero, 0);
  void* large = AllocateSmallBlock(4096);
  static_cast<char*>(large)[4095] = 1;  // all of it is ours
  FreeSmallBlock(large, 4096);
  FreeSmallBlock(nullptr, 64);  // freeing null is a no-op
}

}  // namespace
}  // namespace portway
