#include "core/common/intrusive_list.h"

#include <vector>

#include "gtest/gtest.h"

namespace portway {
namespace {

struct Item : IntrusiveListNode<Item> {
  explicit Item(int v) : value(v) {}
  int value;
};

std::vector<int> Values(const IntrusiveList<Item>& list) {
  std::vector<int> out;
  for (Item* i = list.front(); i != nullptr; i = IntrusiveList<Item>::Next(i)) {
    out.push_back(i->value);
  }
  return out;
}

TEST(IntrusiveListTest, PushFrontPutsNewestFirst) {
  IntrusiveList<Item> list;
  Item a(1), b(2), c(3);
  EXPECT_TRUE(list.empty());
  list.PushFront(&a);
  list.PushFront(&b);
  list.PushFront(&c);
  EXPECT_EQ(Values(list), (std::vector<int>{3, 2, 1}));
  EXPECT_EQ(list.front(), &c);
}

TEST(IntrusiveListTest, RemovesFromHeadMiddleAndTail) {
  IntrusiveList<Item> list;
  Item a(1), b(2), c(3), d(4);
  for (Item* i : {&a, &b, &c, &d}) list.PushFront(i);  // 4 3 2 1
  list.Remove(&c);                                     // middle
  EXPECT_EQ(Values(list), (std::vector<int>{4, 2, 1}));
  list.Remove(&d);  // head
  EXPECT_EQ(Values(list), (std::vector<int>{2, 1}));
  list.Remove(&a);  // tail
  EXPECT_EQ(Values(list), (std::vector<int>{2}));
  list.Remove(&b);
  EXPECT_TRUE(list.empty());
}

TEST(IntrusiveListTest, ContainsOnlyWhatIsLinked) {
  IntrusiveList<Item> list;
  Item a(1), b(2), outside(3);
  list.PushFront(&a);
  list.PushFront(&b);
  EXPECT_TRUE(list.Contains(&a));  // the tail: no next, has a prev
  EXPECT_TRUE(list.Contains(&b));  // the head: no prev
  EXPECT_FALSE(list.Contains(&outside));
  list.Remove(&a);
  EXPECT_FALSE(list.Contains(&a));
  // A removed element can go back in.
  list.PushFront(&a);
  EXPECT_TRUE(list.Contains(&a));
  EXPECT_EQ(Values(list), (std::vector<int>{1, 2}));
}

TEST(IntrusiveListTest, PopFrontEmptiesInOrder) {
  IntrusiveList<Item> list;
  Item a(1), b(2);
  list.PushFront(&a);
  list.PushFront(&b);
  EXPECT_EQ(list.PopFront(), &b);
  EXPECT_EQ(list.PopFront(), &a);
  EXPECT_EQ(list.PopFront(), nullptr);
  EXPECT_FALSE(list.Contains(&a));
}

}  // namespace
}  // namespace portway
