#include "core/common/strings.h"

#include <string>

#include "gtest/gtest.h"

namespace portway {
namespace {

TEST(CopyShortTest, CopiesEveryLengthExactlyAndNothingPast) {
  std::string src;
  for (int i = 0; i < 64; ++i) src.push_back(static_cast<char>('a' + i % 26));
  for (size_t n = 0; n <= 40; ++n) {
    std::string dst(48, '#');
    CopyShort(dst.data() + 4, src.data() + 3, n);
    EXPECT_EQ(dst.substr(0, 4), "####") << n;
    EXPECT_EQ(dst.substr(4, n), src.substr(3, n)) << n;
    EXPECT_EQ(dst.substr(4 + n), std::string(44 - n, '#')) << n;
  }
  CopyShort(nullptr, nullptr, 0);  // an empty view may have no data
}

}  // namespace
}  // namespace portway
