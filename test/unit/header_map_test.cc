#include "portway/headers.h"

#include <initializer_list>
#include <string>
#include <utility>

#include "core/common/strings.h"
#include "gtest/gtest.h"

namespace portway::http {
namespace {

HeaderMap MapOf(std::initializer_list<std::pair<std::string_view, std::string_view>> fields) {
  HeaderMap h;
  for (const auto& [name, value] : fields) h.AddLower(name, value);
  return h;
}

std::string Dump(const HeaderMap& h) {
  std::string out;
  for (const auto& e : h) {
    out += std::string(e.name) + "=" + std::string(e.value) + ";";
  }
  return out;
}

TEST(HeaderMapTest, AddLowercasesNamesAndCountsBytes) {
  HeaderMap h;
  h.Add("Content-Type", "text/plain");
  h.AddLower("x-a", "1");
  EXPECT_EQ(Dump(h), "content-type=text/plain;x-a=1;");
  EXPECT_EQ(h.byteSize(), 12u + 10u + 3u + 1u);
  ASSERT_NE(h.Get("content-type"), nullptr);
  EXPECT_EQ(*h.Get("content-type"), "text/plain");
  EXPECT_EQ(h.Get("Content-Type"), nullptr);  // lookups take lowercase names
}

TEST(HeaderMapTest, FieldsDoNotViewTheCallersBytes) {
  HeaderMap h;
  {
    std::string name = "X-Long-Name-Past-Any-Small-String";
    std::string value(300, 'v');
    h.Add(name, value);
    name.assign(name.size(), '#');
    value.assign(value.size(), '#');
  }
  EXPECT_EQ(h.GetOr("x-long-name-past-any-small-string", ""), std::string(300, 'v'));
}

TEST(HeaderMapTest, ViewsStayValidAsTheMapGrowsAndChanges) {
  HeaderMap h;
  h.AddLower("first", "one");
  const std::string_view first = *h.Get("first");
  // Past the first block, into larger ones.
  for (int i = 0; i < 200; ++i) h.AddLower("field-" + std::to_string(i), std::string(100, 'x'));
  h.Set("first", "changed");
  h.Remove("field-3");
  EXPECT_EQ(first, "one");  // the old bytes are still there
  EXPECT_EQ(*h.Get("first"), "changed");
  EXPECT_EQ(h.size(), 200u);
  EXPECT_EQ(*h.Get("field-199"), std::string(100, 'x'));
}

TEST(HeaderMapTest, SetReplacesTheFirstAndDropsTheRest) {
  HeaderMap h = MapOf({{"a", "1"}, {"b", "2"}, {"a", "3"}, {"c", "4"}});
  h.Set("A", "new");
  EXPECT_EQ(Dump(h), "a=new;b=2;c=4;");
  EXPECT_EQ(h.byteSize(), 1u + 3u + 2u + 2u);
  h.Set("d", "5");
  EXPECT_EQ(Dump(h), "a=new;b=2;c=4;d=5;");
}

TEST(HeaderMapTest, RemoveAndRemoveIfKeepOrderAndBytes) {
  HeaderMap h = MapOf({{"a", "1"}, {"x-1", "2"}, {"b", "3"}, {"x-2", "4"}});
  EXPECT_EQ(h.Remove("A"), 1u);
  EXPECT_EQ(h.RemoveIf([](std::string_view n) { return n.starts_with("x-"); }), 2u);
  EXPECT_EQ(Dump(h), "b=3;");
  EXPECT_EQ(h.byteSize(), 2u);
}

TEST(HeaderMapTest, CopiesOwnTheirBytes) {
  auto original = std::make_unique<HeaderMap>();
  original->AddLower(":status", "200");
  original->Add("ETag", std::string(600, 'e'));
  HeaderMap copy(*original);
  HeaderMap assigned;
  assigned.AddLower("gone", "soon");
  assigned = *original;
  original.reset();  // the copies must not view its storage
  EXPECT_EQ(Dump(copy), ":status=200;etag=" + std::string(600, 'e') + ";");
  EXPECT_EQ(Dump(assigned), Dump(copy));
  EXPECT_EQ(copy.byteSize(), assigned.byteSize());
  EXPECT_EQ(copy.Status(), 200);
}

TEST(HeaderMapTest, MovesTakeTheStorage) {
  HeaderMap a;
  a.AddLower("k", "v");
  const std::string_view view = *a.Get("k");
  HeaderMap b(std::move(a));
  EXPECT_TRUE(a.empty());
  EXPECT_EQ(a.byteSize(), 0u);
  EXPECT_EQ(b.Get("k")->data(), view.data());  // nothing copied
  HeaderMap c;
  c.AddLower("old", "x");
  c = std::move(b);
  EXPECT_EQ(Dump(c), "k=v;");
  a.AddLower("again", "ok");  // a moved-from map is usable
  EXPECT_EQ(Dump(a), "again=ok;");
}

TEST(HeaderMapTest, CodecCopyThenViews) {
  HeaderMap h;
  const std::string wire = "Host: example\r\nAccept: */*\r\n";
  h.ReserveBytes(wire.size() + 64);
  char* copy = h.Copy(wire);
  for (int i = 0; i < 4; ++i) copy[i] = static_cast<char>(copy[i] | 0x20);
  h.AddCopied(std::string_view(copy, 4), std::string_view(copy + 6, 7));
  h.AddCopied(headers::kScheme, "http");  // static storage is fine too
  h.AddLower("x-forwarded-for", "10.0.0.1");
  EXPECT_EQ(Dump(h), "host=example;:scheme=http;x-forwarded-for=10.0.0.1;");
  EXPECT_EQ(h.byteSize(), 4u + 7u + 7u + 4u + 15u + 8u);
}

TEST(HeaderMapTest, StatusParsesThreeDigitsAndRejectsOthers) {
  HeaderMap h;
  EXPECT_EQ(h.Status(), 0);
  h.AddLower(":status", "503");
  EXPECT_EQ(h.Status(), 503);
  h.Set(":status", "5x3");
  EXPECT_EQ(h.Status(), 0);
  h.Set(":status", "1000");
  EXPECT_EQ(h.Status(), 0);
  h.Set(":status", "99");
  EXPECT_EQ(h.Status(), 99);
}

TEST(LowerAsciiInPlaceTest, EveryAsciiByteAtEveryPosition) {
  // Each of the 128 ASCII bytes, at each offset of a word and in the tail.
  for (size_t length : {1u, 7u, 8u, 9u, 16u, 23u}) {
    for (int c = 0; c < 128; ++c) {
      for (size_t at = 0; at < length; ++at) {
        std::string s(length, 'Q');
        s[at] = static_cast<char>(c);
        std::string expected = s;
        for (char& e : expected) e = AsciiLower(e);
        LowerAsciiInPlace(s.data(), s.size());
        ASSERT_EQ(s, expected) << "byte " << c << " at " << at << " of " << length;
      }
    }
  }
}

TEST(HasAsciiUpperTest, EveryByteAtEveryPosition) {
  for (size_t length : {1u, 7u, 8u, 9u, 16u, 23u}) {
    EXPECT_FALSE(HasAsciiUpper(std::string(length, 'q')));
    for (int c = 0; c < 256; ++c) {
      for (size_t at = 0; at < length; ++at) {
        std::string s(length, 'q');
        s[at] = static_cast<char>(c);
        ASSERT_EQ(HasAsciiUpper(s), c >= 'A' && c <= 'Z') << "byte " << c << " at " << at;
      }
    }
  }
}

}  // namespace
}  // namespace portway::http
