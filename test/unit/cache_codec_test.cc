#include "filters/cache/codec.h"

#include <random>

#include <gtest/gtest.h>

namespace portway::cache {
namespace {

using std::chrono::microseconds;

StoredResponse FullResponse() {
  StoredResponse r;
  r.status = 203;
  r.headers = {{"content-type", "text/plain"}, {"cache-control", "max-age=60"}, {"x-empty", ""}};
  r.body = std::string("binary\0body\xff\x80", 13);
  r.trailers = {{"grpc-status", "0"}};
  r.request_time = SystemTime(microseconds(1'700'000'000'123'456));
  r.response_time = SystemTime(microseconds(1'700'000'000'223'456));
  r.vary_names = {"accept-encoding", "accept-language"};
  r.vary_values = {"gzip", ""};
  return r;
}

void ExpectSame(const StoredResponse& a, const StoredResponse& b) {
  EXPECT_EQ(a.vary_marker, b.vary_marker);
  EXPECT_EQ(a.vary_names, b.vary_names);
  EXPECT_EQ(a.status, b.status);
  EXPECT_EQ(a.headers, b.headers);
  EXPECT_EQ(a.body, b.body);
  EXPECT_EQ(a.trailers, b.trailers);
  EXPECT_EQ(a.request_time, b.request_time);
  EXPECT_EQ(a.response_time, b.response_time);
  EXPECT_EQ(a.vary_values, b.vary_values);
}

// Rewrites the last four bytes as the CRC-32C of the rest, so a test can
// reach the structural checks behind the checksum.
std::string Reseal(std::string payload) {
  uint32_t crc = 0xFFFFFFFFu;
  for (unsigned char c : payload) {
    crc ^= c;
    for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ ((crc & 1) ? 0x82F63B78u : 0);
  }
  crc ^= 0xFFFFFFFFu;
  for (int i = 0; i < 4; ++i) payload.push_back(static_cast<char>((crc >> (8 * i)) & 0xFF));
  return payload;
}

std::string WithoutChecksum(const std::string& wire) { return wire.substr(0, wire.size() - 4); }

TEST(CacheCodecTest, RoundTripsEveryField) {
  const StoredResponse in = FullResponse();
  absl::StatusOr<StoredResponse> out = DecodeStoredResponse(EncodeStoredResponse(in));
  ASSERT_TRUE(out.ok()) << out.status();
  ExpectSame(in, *out);
}

TEST(CacheCodecTest, RoundTripsVaryMarkerAndEmptyResponse) {
  StoredResponse marker;
  marker.vary_marker = true;
  marker.vary_names = {"accept"};
  absl::StatusOr<StoredResponse> out = DecodeStoredResponse(EncodeStoredResponse(marker));
  ASSERT_TRUE(out.ok()) << out.status();
  ExpectSame(marker, *out);

  StoredResponse empty;
  out = DecodeStoredResponse(EncodeStoredResponse(empty));
  ASSERT_TRUE(out.ok()) << out.status();
  ExpectSame(empty, *out);
}

TEST(CacheCodecTest, RoundTripsLargeBodyAndTimesBeforeEpoch) {
  StoredResponse in = FullResponse();
  in.body.resize(300'000);  // lengths past one and two varint bytes
  for (size_t i = 0; i < in.body.size(); ++i) in.body[i] = static_cast<char>(i * 7);
  in.request_time = SystemTime(microseconds(-5));
  absl::StatusOr<StoredResponse> out = DecodeStoredResponse(EncodeStoredResponse(in));
  ASSERT_TRUE(out.ok()) << out.status();
  ExpectSame(in, *out);
}

TEST(CacheCodecTest, TruncatesTimesToMicroseconds) {
  StoredResponse in;
  in.response_time = SystemTime(std::chrono::nanoseconds(1'999));
  absl::StatusOr<StoredResponse> out = DecodeStoredResponse(EncodeStoredResponse(in));
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->response_time, SystemTime(microseconds(1)));
}

TEST(CacheCodecTest, RefusesEveryTruncation) {
  const std::string wire = EncodeStoredResponse(FullResponse());
  for (size_t n = 0; n < wire.size(); ++n) {
    EXPECT_FALSE(DecodeStoredResponse(std::string_view(wire).substr(0, n)).ok()) << n;
  }
}

TEST(CacheCodecTest, RefusesEveryResealedTruncation) {
  // Truncated bodies under a valid checksum: the length checks, not the
  // checksum, must refuse them.
  const std::string payload = WithoutChecksum(EncodeStoredResponse(FullResponse()));
  for (size_t n = 0; n < payload.size(); ++n) {
    EXPECT_FALSE(DecodeStoredResponse(Reseal(payload.substr(0, n))).ok()) << n;
  }
}

TEST(CacheCodecTest, RefusesEveryChangedByte) {
  const std::string wire = EncodeStoredResponse(FullResponse());
  for (size_t i = 0; i < wire.size(); ++i) {
    for (int flip : {0x01, 0x80, 0xFF}) {
      std::string bad = wire;
      bad[i] = static_cast<char>(bad[i] ^ flip);
      EXPECT_FALSE(DecodeStoredResponse(bad).ok()) << "byte " << i << " ^ " << flip;
    }
  }
}

TEST(CacheCodecTest, SurvivesRandomGarbleUnderValidChecksum) {
  const std::string payload = WithoutChecksum(EncodeStoredResponse(FullResponse()));
  std::mt19937 rng(20261206);
  int refused = 0;
  for (int round = 0; round < 5000; ++round) {
    std::string bad = payload;
    const int changes = 1 + static_cast<int>(rng() % 4);
    for (int c = 0; c < changes; ++c) {
      // Keep magic and version so the structural decoding is what is tested.
      const size_t at = 5 + rng() % (bad.size() - 5);
      bad[at] = static_cast<char>(rng());
    }
    absl::StatusOr<StoredResponse> out = DecodeStoredResponse(Reseal(bad));
    if (!out.ok()) {
      ++refused;
    } else {
      // What decodes must re-encode to exactly the same bytes.
      EXPECT_EQ(EncodeStoredResponse(*out), Reseal(bad));
    }
  }
  EXPECT_GT(refused, 0);
}

TEST(CacheCodecTest, RefusesHugeCountWithoutAllocating) {
  std::string payload("PWSR\x01\x00\xc8\x01", 8);         // magic, version, flags, status 200
  for (int i = 0; i < 9; ++i) payload.push_back('\xff');  // vary_names count ~2^63
  payload.push_back('\x7f');
  EXPECT_FALSE(DecodeStoredResponse(Reseal(payload)).ok());
  // A varint longer than ten bytes.
  std::string long_varint("PWSR\x01\x00", 6);
  long_varint.append(11, '\x80');
  long_varint.push_back('\x01');
  EXPECT_FALSE(DecodeStoredResponse(Reseal(long_varint)).ok());
}

TEST(CacheCodecTest, RefusesOtherVersionMagicFlagsStatusAndTrailingBytes) {
  const std::string payload = WithoutChecksum(EncodeStoredResponse(FullResponse()));
  std::string newer = payload;
  newer[4] = 2;
  absl::StatusOr<StoredResponse> out = DecodeStoredResponse(Reseal(newer));
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.status().message().find("version 2"), std::string::npos) << out.status();

  std::string magic = payload;
  magic[0] = 'X';
  EXPECT_FALSE(DecodeStoredResponse(Reseal(magic)).ok());

  std::string flags = payload;
  flags[5] = 0x02;
  EXPECT_FALSE(DecodeStoredResponse(Reseal(flags)).ok());

  StoredResponse bad_status;
  bad_status.status = 1000;
  EXPECT_FALSE(DecodeStoredResponse(EncodeStoredResponse(bad_status)).ok());

  EXPECT_FALSE(DecodeStoredResponse(Reseal(payload + "x")).ok());
  EXPECT_TRUE(DecodeStoredResponse(Reseal(payload)).ok());
}

}  // namespace
}  // namespace portway::cache
