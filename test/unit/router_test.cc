// The Router in isolation: a fake stream (RouterCallbacks) above it, a real
// ClusterManager and connection pools below it, on simulated time with
// in-memory upstream connections. Per-try timeouts fire in simulated
// time, retries go to another host, and the request body kept for a
// retry is bounded.
#include "core/router/router.h"

#include <cerrno>
#include <functional>
#include <string>
#include <vector>

#include "core/upstream/outlier_detector.h"
#include "gtest/gtest.h"
#include "test/unit/sim_dispatcher.h"
#include "test/unit/upstream_fakes.h"

namespace portway::router {
namespace {

using std::chrono::milliseconds;
using test::FakeConnection;

class FakeStream : public RouterCallbacks {
 public:
  FakeStream(event::Dispatcher& d, upstream::ClusterManager& cm) : dispatcher_(d), cm_(cm) {}
  event::Dispatcher& Dispatcher() override { return dispatcher_; }
  upstream::ClusterManager& ClusterManager() override { return cm_; }
  http::StreamInfo& Info() override { return info; }
  void SendLocalReply(http::ErrorCause cause, std::string_view detail) override {
    local_reply = cause;
    local_detail = std::string(detail);
  }
  void SendDirectResponse(int status, std::string_view, std::string_view,
                          std::string_view) override {
    direct_status = status;
  }
  void EncodeHeaders(http::HeaderMapPtr headers, bool end_stream) override {
    response_status = headers->Status();
    response_ended = end_stream;
  }
  void EncodeData(Buffer& data, bool end_stream) override {
    response_body += data.ToString();
    data.Clear();
    response_ended = end_stream;
  }
  void EncodeTrailers(http::HeaderMapPtr) override { response_ended = true; }
  void ResetDownstream(http::ErrorCause cause, std::string_view) override { reset = cause; }
  void ReadDisableDownstream(bool) override {}
  size_t BufferLimit() const override { return 65536; }
  size_t ReplayLimit() const override { return replay_limit; }
  milliseconds PerTryTimeout() const override { return per_try_timeout; }
  const http::UpstreamLimits& Limits() const override { return limits; }
  http::UpstreamAttemptStatus OnUpstreamAttempt(http::UpstreamAttempt& attempt) override {
    attempt_hosts.push_back(std::string(attempt.host));
    return http::UpstreamAttemptStatus::kContinue;
  }
  http::UpstreamResultStatus OnUpstreamResult(http::UpstreamResult& result) override {
    results.push_back(result.kind);
    // Like portway.retry on failures and 5xx: a good response stands.
    bool failed =
        result.kind != http::UpstreamResult::Kind::kResponseHeaders || result.status >= 500;
    if (retries_left == 0 || !failed) return http::UpstreamResultStatus::kContinue;
    --retries_left;
    result.retry_delay = retry_delay;
    return http::UpstreamResultStatus::kRetry;
  }

  // What the test sets.
  size_t replay_limit = 0;
  milliseconds per_try_timeout{0};
  http::UpstreamLimits limits;
  int retries_left = 0;
  milliseconds retry_delay{0};
  // What the router did.
  http::StreamInfo info;
  std::optional<http::ErrorCause> local_reply;
  std::string local_detail;
  int direct_status = 0;
  int response_status = 0;
  std::string response_body;
  bool response_ended = false;
  std::optional<http::ErrorCause> reset;
  std::vector<std::string> attempt_hosts;
  std::vector<http::UpstreamResult::Kind> results;

 private:
  event::Dispatcher& dispatcher_;
  upstream::ClusterManager& cm_;
};

class RouterTest : public testing::Test {
 protected:
  RouterTest()
      : cm_(dispatcher_, std::make_unique<test::FixedSeedLbRandom>()), stream_(dispatcher_, cm_) {
    auto config = test::MakeClusterConfig("backend");
    hosts_ = {test::MakeHost("backend", "10.0.0.1:80"), test::MakeHost("backend", "10.0.0.2:80")};
    cm_.Update({{"backend", test::MakeSnapshot(config, hosts_)}});
    route_.cluster = "backend";
    route_.timeout = milliseconds(15000);
  }
  ~RouterTest() override {
    router_.reset();
    dispatcher_.RunPending();
  }
  FakeConnection* Connection(size_t i) {
    return i < dispatcher_.connections().size() ? dispatcher_.connections()[i] : nullptr;
  }
  static http::HeaderMapPtr Request(std::string_view method) {
    auto h = test::GetRequest("/x");
    h->Set(":method", method);
    return h;
  }

  test::SimDispatcher dispatcher_;
  upstream::ClusterManager cm_;
  upstream::HostVector hosts_;
  FakeStream stream_;
  Route route_;
  std::unique_ptr<Router> router_ = std::make_unique<Router>(stream_);
};

TEST_F(RouterTest, PerTryTimeoutFiresInSimulatedTimeAndAnswers504Cause) {
  stream_.per_try_timeout = milliseconds(100);
  router_->OnRequestHeaders(Request("GET"), route_, true);
  ASSERT_NE(Connection(0), nullptr);
  Connection(0)->CompleteConnect();
  EXPECT_NE(Connection(0)->written().find("GET /x HTTP/1.1\r\n"), std::string::npos);
  dispatcher_.AdvanceTimeAndRun(milliseconds(99));
  EXPECT_FALSE(stream_.local_reply.has_value());
  dispatcher_.AdvanceTimeAndRun(milliseconds(1));
  ASSERT_TRUE(stream_.local_reply.has_value());
  EXPECT_EQ(*stream_.local_reply, http::ErrorCause::kUpstreamTimeout);  // the 504 family
  EXPECT_EQ(stream_.local_detail, "per-try timeout");
  EXPECT_EQ(stream_.results,
            (std::vector<http::UpstreamResult::Kind>{http::UpstreamResult::Kind::kPerTryTimeout}));
  // The attempt's connection is given up, never reused.
  EXPECT_TRUE(Connection(0) == nullptr || Connection(0)->close_type().has_value());
}

TEST_F(RouterTest, APerTryTimeoutRetriesOnAnotherHostAfterTheDelay) {
  stream_.per_try_timeout = milliseconds(100);
  stream_.replay_limit = 1024;
  stream_.retries_left = 1;
  stream_.retry_delay = milliseconds(25);
  router_->OnRequestHeaders(Request("GET"), route_, true);
  Connection(0)->CompleteConnect();
  dispatcher_.AdvanceTimeAndRun(milliseconds(100));  // the first try times out
  EXPECT_FALSE(stream_.local_reply.has_value());
  dispatcher_.AdvanceTimeAndRun(milliseconds(24));  // the back-off
  EXPECT_EQ(dispatcher_.connections().size(), 1u);
  dispatcher_.AdvanceTimeAndRun(milliseconds(1));
  ASSERT_EQ(dispatcher_.connections().size(), 2u);
  FakeConnection* second = Connection(1);
  ASSERT_EQ(stream_.attempt_hosts.size(), 2u);
  EXPECT_NE(stream_.attempt_hosts[0], stream_.attempt_hosts[1]);
  EXPECT_EQ(second->RemoteAddress().ToString(), stream_.attempt_hosts[1]);
  second->CompleteConnect();
  EXPECT_NE(second->written().find("x-portway-attempt-count: 2\r\n"), std::string::npos)
      << second->written();
  second->Feed("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
  EXPECT_EQ(stream_.response_status, 200);
  EXPECT_EQ(stream_.response_body, "ok");
  EXPECT_TRUE(stream_.response_ended);
  EXPECT_EQ(stream_.info.attempts, 2u);
}

TEST_F(RouterTest, ARetryAfterAConnectFailurePicksTheOtherHost) {
  stream_.replay_limit = 1024;
  stream_.retries_left = 3;
  router_->OnRequestHeaders(Request("GET"), route_, true);
  Connection(0)->FailConnect(ECONNREFUSED);
  dispatcher_.RunPending();
  ASSERT_EQ(dispatcher_.connections().size(), 2u);
  ASSERT_EQ(stream_.attempt_hosts.size(), 2u);
  EXPECT_NE(stream_.attempt_hosts[0], stream_.attempt_hosts[1]);
  Connection(1)->FailConnect(ECONNREFUSED);
  dispatcher_.RunPending();
  // Both hosts tried: the balancer may come back to a tried one.
  ASSERT_EQ(stream_.attempt_hosts.size(), 3u);
  ASSERT_EQ(dispatcher_.connections().size(), 3u);
  ASSERT_NE(Connection(2), nullptr);
  Connection(2)->CompleteConnect();
  EXPECT_NE(Connection(2)->written().find("GET /x"), std::string::npos);
  Connection(2)->Feed("HTTP/1.1 204 No Content\r\n\r\n");
  EXPECT_FALSE(stream_.local_reply.has_value()) << stream_.local_detail;
  EXPECT_EQ(stream_.response_status, 204);
}

// Outlier detection sees every attempt, not just the request's result: a
// refused connect counts against its host (and reaching a threshold tells
// the sink), the retry's 200 resets the other host's streak.
class RecordingSink : public upstream::OutlierSink {
 public:
  void OnConsecutiveFailures(upstream::HostSharedPtr host, upstream::OutlierRule rule) override {
    told.emplace_back(host->addressString(), rule);
  }
  std::vector<std::pair<std::string, upstream::OutlierRule>> told;
};

TEST_F(RouterTest, EachAttemptIsCountedForOutlierDetection) {
  auto config = test::MakeClusterConfig("backend");
  auto outlier = std::make_shared<upstream::OutlierConfig>();
  outlier->consecutive_5xx = 2;
  outlier->consecutive_local_origin_failure = 1;
  config->outlier = outlier;
  cm_.Update({{"backend", test::MakeSnapshot(config, hosts_)}});
  RecordingSink sink;
  cm_.set_outlier_sink(&sink);
  for (const auto& h : hosts_) h->outlier().consecutive_5xx.store(1);  // earlier 5xx
  stream_.replay_limit = 1024;
  stream_.retries_left = 1;
  router_->OnRequestHeaders(Request("GET"), route_, true);
  Connection(0)->FailConnect(ECONNREFUSED);
  dispatcher_.RunPending();
  ASSERT_EQ(stream_.attempt_hosts.size(), 2u);
  auto host = [&](const std::string& address) {
    for (const auto& h : hosts_) {
      if (h->addressString() == address) return h;
    }
    return upstream::HostSharedPtr();
  };
  upstream::HostSharedPtr refused = host(stream_.attempt_hosts[0]);
  upstream::HostSharedPtr answered = host(stream_.attempt_hosts[1]);
  ASSERT_TRUE(refused && answered && refused != answered);
  EXPECT_EQ(refused->outlier().consecutive_local_origin_failure.load(), 1u);
  EXPECT_EQ(refused->outlier().consecutive_5xx.load(), 2u);
  EXPECT_EQ(refused->outlier().interval_failures.load(), 1u);
  using R = upstream::OutlierRule;
  EXPECT_EQ(sink.told, (std::vector<std::pair<std::string, R>>{
                           {refused->addressString(), R::kConsecutive5xx},
                           {refused->addressString(), R::kConsecutiveLocalOriginFailure}}));
  Connection(1)->CompleteConnect();
  Connection(1)->Feed("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
  EXPECT_EQ(stream_.response_status, 200);
  EXPECT_EQ(answered->outlier().consecutive_5xx.load(), 0u);
  EXPECT_EQ(answered->outlier().interval_successes.load(), 1u);
  EXPECT_EQ(sink.told.size(), 2u);
}

TEST_F(RouterTest, NothingIsCountedWithoutOutlierDetection) {
  RecordingSink sink;
  cm_.set_outlier_sink(&sink);
  router_->OnRequestHeaders(Request("GET"), route_, true);
  Connection(0)->CompleteConnect();
  Connection(0)->Feed("HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n");
  EXPECT_EQ(stream_.response_status, 503);
  for (const auto& h : hosts_) {
    EXPECT_EQ(h->outlier().consecutive_5xx.load(), 0u);
    EXPECT_EQ(h->outlier().interval_failures.load(), 0u);
  }
  EXPECT_TRUE(sink.told.empty());
}

TEST_F(RouterTest, ARouteTimeoutAfterTheRequestWentOutIsALocalOriginFailure) {
  auto config = test::MakeClusterConfig("backend");
  config->outlier = std::make_shared<upstream::OutlierConfig>();
  cm_.Update({{"backend", test::MakeSnapshot(config, hosts_)}});
  route_.timeout = milliseconds(100);
  router_->OnRequestHeaders(Request("GET"), route_, true);
  Connection(0)->CompleteConnect();
  dispatcher_.AdvanceTimeAndRun(milliseconds(100));
  ASSERT_EQ(stream_.local_reply, http::ErrorCause::kUpstreamTimeout);
  uint32_t local = 0;
  for (const auto& h : hosts_) local += h->outlier().consecutive_local_origin_failure.load();
  EXPECT_EQ(local, 1u);
}

TEST_F(RouterTest, TheRequestBodyIsReplayedOnARetry) {
  stream_.replay_limit = 10;
  stream_.retries_left = 1;
  router_->OnRequestHeaders(Request("PUT"), route_, false);
  Connection(0)->CompleteConnect();
  Buffer body;
  body.Add("hello");
  router_->OnRequestData(body, true);
  EXPECT_NE(Connection(0)->written().find("hello"), std::string::npos);
  Connection(0)->PeerClose();  // reset before any response
  dispatcher_.RunPending();
  ASSERT_EQ(dispatcher_.connections().size(), 2u);
  Connection(1)->CompleteConnect();
  std::string again = Connection(1)->written();
  EXPECT_NE(again.find("PUT /x HTTP/1.1\r\n"), std::string::npos) << again;
  EXPECT_NE(again.find("hello"), std::string::npos) << again;
  EXPECT_FALSE(stream_.info.replay_overflow);
}

TEST_F(RouterTest, ABodyOverTheReplayLimitMakesTheRequestUnretriable) {
  stream_.replay_limit = 10;
  stream_.retries_left = 1;
  router_->OnRequestHeaders(Request("PUT"), route_, false);
  Connection(0)->CompleteConnect();
  Buffer first;
  first.Add("12345");
  router_->OnRequestData(first, false);
  EXPECT_FALSE(stream_.info.replay_overflow);
  Buffer second;
  second.Add("678901");  // 11 bytes in all
  router_->OnRequestData(second, true);
  EXPECT_TRUE(stream_.info.replay_overflow);
  Connection(0)->PeerClose();
  dispatcher_.RunPending();
  // The filters asked for a retry, but the body cannot be sent again.
  EXPECT_EQ(dispatcher_.connections().size(), 1u);
  ASSERT_TRUE(stream_.local_reply.has_value());
  EXPECT_EQ(*stream_.local_reply, http::ErrorCause::kUpstreamResetBeforeResponse);
}

TEST_F(RouterTest, TheRouteTimeoutCoversEveryAttempt) {
  route_.timeout = milliseconds(300);
  stream_.replay_limit = 1024;
  stream_.retries_left = 5;
  stream_.per_try_timeout = milliseconds(200);
  router_->OnRequestHeaders(Request("GET"), route_, true);
  Connection(0)->CompleteConnect();
  dispatcher_.AdvanceTimeAndRun(milliseconds(200));  // try 1 times out, try 2 starts
  ASSERT_EQ(dispatcher_.connections().size(), 2u);
  Connection(1)->CompleteConnect();
  dispatcher_.AdvanceTimeAndRun(milliseconds(99));
  EXPECT_FALSE(stream_.local_reply.has_value());
  dispatcher_.AdvanceTimeAndRun(milliseconds(1));
  ASSERT_TRUE(stream_.local_reply.has_value());
  EXPECT_EQ(*stream_.local_reply, http::ErrorCause::kUpstreamTimeout);
  EXPECT_EQ(stream_.local_detail, "no response within 300ms");
}

TEST_F(RouterTest, ADirectResponseRouteNeverGoesUpstream) {
  route_.action = Route::Action::kDirectResponse;
  route_.direct_status = 418;
  router_->OnRequestHeaders(Request("GET"), route_, true);
  EXPECT_EQ(stream_.direct_status, 418);
  EXPECT_TRUE(dispatcher_.connections().empty());
}

}  // namespace
}  // namespace portway::router
