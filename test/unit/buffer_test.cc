#include "portway/buffer.h"

#include <string>

#include "gtest/gtest.h"

namespace portway {
namespace {

TEST(BufferTest, AddAndToStringKeepOrder) {
  Buffer b;
  b.Add("hello ");
  b.Add("world");
  EXPECT_EQ(b.length(), 11u);
  EXPECT_EQ(b.ToString(), "hello world");
}

TEST(BufferTest, MoveTakesEverythingAndEmptiesSource) {
  Buffer a, b;
  a.Add("abc");
  b.Add("def");
  a.Move(b);
  EXPECT_EQ(a.ToString(), "abcdef");
  EXPECT_TRUE(b.empty());
  EXPECT_EQ(b.SliceCount(), 0u);
}

TEST(BufferTest, PartialMoveSplitsAtTheByte) {
  Buffer src, dst;
  std::string big(40000, 'x');
  big[39999] = 'y';
  src.Add(big);
  dst.Move(src, 39999);
  EXPECT_EQ(dst.length(), 39999u);
  EXPECT_EQ(src.ToString(), "y");
}

TEST(BufferTest, DrainAcrossSlicesAndToEmptyFreesSlices) {
  Buffer b;
  b.Add(std::string(Buffer::kSliceSize, 'a'));
  b.Add(std::string(10, 'b'));
  EXPECT_GE(b.SliceCount(), 2u);
  b.Drain(Buffer::kSliceSize + 5);
  EXPECT_EQ(b.ToString(), "bbbbb");
  b.Drain(5);
  EXPECT_TRUE(b.empty());
  EXPECT_EQ(b.SliceCount(), 0u);
}

TEST(BufferTest, LinearizeJoinsSlicesWithoutLosingBytes) {
  Buffer b;
  Buffer part;
  part.Add("GET / HTTP/1.1\r\n");
  b.Move(part);
  part.Add("Host: x\r\n\r\nrest");
  b.Move(part);
  ASSERT_EQ(b.SliceCount(), 2u);
  std::string_view head = b.Linearize(27);
  EXPECT_EQ(head, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(b.ToString(), "GET / HTTP/1.1\r\nHost: x\r\n\r\nrest");
}

TEST(BufferTest, ReserveCommitReadsInPlace) {
  Buffer b;
  size_t available = 0;
  char* p = b.Reserve(100, &available);
  ASSERT_GE(available, 100u);
  std::memcpy(p, "data", 4);
  b.Commit(4);
  EXPECT_EQ(b.ToString(), "data");
  // An uncommitted reservation leaves nothing behind.
  b.Drain(4);
  b.Reserve(100, &available);
  b.Commit(0);
  EXPECT_TRUE(b.empty());
  EXPECT_EQ(b.SliceCount(), 0u);
}

TEST(BufferTest, ManySlicesDrainedOneByOneStayConsistent) {
  Buffer b;
  for (int i = 0; i < 100; ++i) {
    Buffer piece;
    piece.Add(std::string(1, static_cast<char>('a' + i % 26)));
    b.Move(piece);
  }
  std::string expected = b.ToString();
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(b.FrontSlice(), expected.substr(i, 1));
    b.Drain(1);
  }
  EXPECT_TRUE(b.empty());
}

}  // namespace
}  // namespace portway
