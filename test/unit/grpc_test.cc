#include "core/http/grpc.h"

#include "gtest/gtest.h"

namespace portway::http::grpc {
namespace {

HeaderMap With(std::string_view name, std::string_view value) {
  HeaderMap h;
  h.Add(name, value);
  return h;
}

TEST(GrpcTest, RecognisesGrpcContentTypes) {
  EXPECT_TRUE(IsGrpcRequest(With("content-type", "application/grpc")));
  EXPECT_TRUE(IsGrpcRequest(With("content-type", "application/grpc+proto")));
  EXPECT_TRUE(IsGrpcRequest(With("content-type", "Application/GRPC;charset=utf-8")));
  EXPECT_FALSE(IsGrpcRequest(With("content-type", "application/grpc-web")));
  EXPECT_FALSE(IsGrpcRequest(With("content-type", "application/json")));
  EXPECT_FALSE(IsGrpcRequest(HeaderMap()));
}

TEST(GrpcTest, ParsesEveryTimeoutUnitAndRoundsUp) {
  using std::chrono::milliseconds;
  EXPECT_EQ(ParseTimeout(With("grpc-timeout", "2H")), milliseconds(7200000));
  EXPECT_EQ(ParseTimeout(With("grpc-timeout", "3M")), milliseconds(180000));
  EXPECT_EQ(ParseTimeout(With("grpc-timeout", "5S")), milliseconds(5000));
  EXPECT_EQ(ParseTimeout(With("grpc-timeout", "250m")), milliseconds(250));
  EXPECT_EQ(ParseTimeout(With("grpc-timeout", "1500u")), milliseconds(2));
  EXPECT_EQ(ParseTimeout(With("grpc-timeout", "1n")), milliseconds(1));
}

TEST(GrpcTest, IgnoresMalformedTimeouts) {
  for (const char* bad : {"", "S", "5", "5s", "-5S", "123456789S", "5 S", "0x5S"}) {
    EXPECT_FALSE(ParseTimeout(With("grpc-timeout", bad)).has_value()) << bad;
  }
  EXPECT_FALSE(ParseTimeout(HeaderMap()).has_value());
}

TEST(GrpcTest, LocalRepliesMapToTheStatusesClientsRetryOn) {
  EXPECT_EQ(StatusForLocalReply(502, ErrorCause::kUpstreamConnectRefused), Status::kUnavailable);
  EXPECT_EQ(StatusForLocalReply(503, ErrorCause::kCircuitOpen), Status::kUnavailable);
  EXPECT_EQ(StatusForLocalReply(503, ErrorCause::kUpstreamOverflow), Status::kResourceExhausted);
  EXPECT_EQ(StatusForLocalReply(504, ErrorCause::kUpstreamTimeout), Status::kDeadlineExceeded);
  EXPECT_EQ(StatusForLocalReply(404, ErrorCause::kNoRoute), Status::kUnimplemented);
  EXPECT_EQ(StatusForLocalReply(429, ErrorCause::kFilterLocalReply), Status::kResourceExhausted);
  EXPECT_EQ(StatusForLocalReply(400, ErrorCause::kDownstreamProtocolError), Status::kInternal);
  EXPECT_EQ(StatusForLocalReply(418, ErrorCause::kFilterLocalReply), Status::kUnknown);
}

TEST(GrpcTest, PercentEncodesMessages) {
  EXPECT_EQ(EncodeMessage("upstream_connect_refused: Connection refused"),
            "upstream_connect_refused: Connection refused");
  EXPECT_EQ(EncodeMessage("50% off\n\xc3\xa9"), "50%25 off%0A%C3%A9");
}

TEST(GrpcTest, ReadsTheStatus) {
  EXPECT_EQ(GrpcStatusOf(With("grpc-status", "14")), 14);
  EXPECT_EQ(GrpcStatusOf(With("grpc-status", "x")), -1);
  EXPECT_EQ(GrpcStatusOf(HeaderMap()), -1);
}

}  // namespace
}  // namespace portway::http::grpc
