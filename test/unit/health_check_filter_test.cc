// portway.health_check against strict fakes of the filter callbacks and a
// FakeGateway (draining, cluster health set by the test). Time comes from a
// SimDispatcher, so the pass-through cache expires exactly.
#include "filters/health_check/health_check_filter.h"

#include <chrono>
#include <string>

#include "core/http/filter_registry.h"
#include "filters/builtin.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "portway/filters/health_check/v1/health_check.pb.h"
#include "test/unit/fake_gateway.h"
#include "test/unit/sim_dispatcher.h"

namespace portway::filters::health_check {
namespace {

using http::FilterHeadersStatus;
using testing::_;
using testing::HasSubstr;
using testing::StrictMock;

class FakeCallbacks : public http::FilterCallbacks {
 public:
  MOCK_METHOD(void, Continue, (), (override));
  MOCK_METHOD(void, SendLocalReply, (int, std::string_view, std::string_view), (override));
  MOCK_METHOD(void, SendErrorReply, (http::ErrorCause, std::string_view), (override));
  MOCK_METHOD(Buffer&, KeptBody, (), (override));
  MOCK_METHOD(std::unique_ptr<http::FilterTimer>, CreateTimer, (std::function<void()>), (override));
  MOCK_METHOD(void, EnableRequestReplay, (size_t), (override));
  MOCK_METHOD(void, SetPerTryTimeout, (std::chrono::milliseconds), (override));
  MOCK_METHOD(void, SetUpstreamLimits, (const http::UpstreamLimits&), (override));
  MOCK_METHOD(void, SetUpstreamCluster, (std::string_view), (override));
  MOCK_METHOD(bool, SendResponse, (http::FilterResponse), (override));
  std::shared_ptr<http::WorkerPoster> Worker() override { return nullptr; }
  MOCK_METHOD(void, SendSideRequest, (http::HeaderMapPtr, size_t, http::SideResponseCallback),
              (override));
  http::StreamInfo& Info() override { return info; }
  const TimeSource& Clock() override { return dispatcher; }
  RandomGenerator& Random() override { return dispatcher.Random(); }
  const http::GatewayView& Gateway() override {
    ++gateway_calls;
    return gateway;
  }
  http::StreamInfo info;
  test::SimDispatcher dispatcher;
  test::FakeGateway gateway;
  int gateway_calls = 0;
};

class HealthCheckTest : public testing::Test {
 protected:
  void Configure(const v1::HealthCheck& config) {
    auto made = HealthCheckFactory().Create(config);
    ASSERT_TRUE(made.ok()) << made.status();
    make_ = *made;
  }
  static v1::HealthCheck Config(std::string path = "/healthz") {
    v1::HealthCheck config;
    config.set_path(std::move(path));
    return config;
  }
  // One stream: its request head through DecodeHeaders; the filter is kept
  // for the response.
  FilterHeadersStatus Request(std::string_view path, std::string_view method = "GET") {
    filter_ = make_();
    filter_->SetCallbacks(callbacks_);
    http::HeaderMap headers;
    headers.Add(":method", method);
    headers.Add(":path", path);
    return filter_->DecodeHeaders(headers, true);
  }
  // The response head as the filter's EncodeHeaders leaves it.
  http::HeaderMap Response(int status) {
    http::HeaderMap headers;
    headers.Add(":status", std::to_string(status));
    EXPECT_EQ(filter_->EncodeHeaders(headers, true), FilterHeadersStatus::kContinue);
    return headers;
  }
  std::string HealthHeader(const http::HeaderMap& headers) {
    const std::string_view* v = headers.Get(kHealthHeader);
    return v == nullptr ? "(none)" : std::string(*v);
  }

  http::FilterFactoryCallback make_;
  http::FilterPtr filter_;
  StrictMock<FakeCallbacks> callbacks_;
};

TEST_F(HealthCheckTest, AnswersOkLocallyWithTheHealthHeader) {
  Configure(Config());
  EXPECT_CALL(callbacks_, SendLocalReply(200, "OK\n", ""));
  EXPECT_EQ(Request("/healthz"), FilterHeadersStatus::kStopIteration);
  EXPECT_EQ(HealthHeader(Response(200)), "ok");
}

TEST_F(HealthCheckTest, TheQueryIsIgnoredAndHeadIsAnsweredToo) {
  Configure(Config());
  EXPECT_CALL(callbacks_, SendLocalReply(200, "OK\n", "")).Times(2);
  EXPECT_EQ(Request("/healthz?probe=lb1"), FilterHeadersStatus::kStopIteration);
  EXPECT_EQ(Request("/healthz", "HEAD"), FilterHeadersStatus::kStopIteration);
}

// Anything but the exact path goes on untouched, without a look at the
// gateway, and its response is left alone.
TEST_F(HealthCheckTest, OtherPathsPassUntouched) {
  Configure(Config());
  for (std::string_view path :
       {"/", "/health", "/healthz/", "/healthzz", "/healthz%3F", "/HEALTHZ", "/api/healthz"}) {
    EXPECT_EQ(Request(path), FilterHeadersStatus::kContinue) << path;
    http::HeaderMap response = Response(200);
    EXPECT_EQ(HealthHeader(response), "(none)") << path;
  }
  EXPECT_EQ(callbacks_.gateway_calls, 0);
}

TEST_F(HealthCheckTest, DrainingAnswers503AtOnce) {
  Configure(Config());
  callbacks_.gateway.draining = true;
  EXPECT_CALL(callbacks_, SendLocalReply(503, HasSubstr("shutting down"), kDrainingError));
  EXPECT_EQ(Request("/healthz"), FilterHeadersStatus::kStopIteration);
  EXPECT_EQ(HealthHeader(Response(503)), "draining");
  // Normal requests still go through while draining.
  EXPECT_EQ(Request("/api"), FilterHeadersStatus::kContinue);
}

TEST_F(HealthCheckTest, DrainingWinsOverPassThrough) {
  v1::HealthCheck config = Config();
  config.set_pass_through(true);
  Configure(config);
  callbacks_.gateway.draining = true;
  EXPECT_CALL(callbacks_, SendLocalReply(503, _, kDrainingError));
  EXPECT_EQ(Request("/healthz"), FilterHeadersStatus::kStopIteration);
}

TEST_F(HealthCheckTest, ClusterBelowItsMinimumAnswers503NamingItAndTheNumbers) {
  v1::HealthCheck config = Config();
  (*config.mutable_cluster_min_healthy_percent())["backend"] = 60;
  Configure(config);
  callbacks_.gateway.SetCluster("backend", 2, 1);
  EXPECT_CALL(
      callbacks_,
      SendLocalReply(503, HasSubstr("cluster backend has 1 of 2 hosts usable (50.0%), below 60%"),
                     kClusterError));
  EXPECT_EQ(Request("/healthz"), FilterHeadersStatus::kStopIteration);
  EXPECT_EQ(HealthHeader(Response(503)), "cluster_unhealthy");
}

// The bound is inclusive: 3 of 5 usable is exactly 60%.
TEST_F(HealthCheckTest, ClusterAtItsMinimumIsHealthy) {
  v1::HealthCheck config = Config();
  (*config.mutable_cluster_min_healthy_percent())["backend"] = 60;
  Configure(config);
  callbacks_.gateway.SetCluster("backend", 5, 3);
  EXPECT_CALL(callbacks_, SendLocalReply(200, "OK\n", ""));
  EXPECT_EQ(Request("/healthz"), FilterHeadersStatus::kStopIteration);
  // Health changes without a new filter config: the next check sees it.
  callbacks_.gateway.SetCluster("backend", 5, 2);
  EXPECT_CALL(callbacks_, SendLocalReply(503, HasSubstr("2 of 5"), kClusterError));
  EXPECT_EQ(Request("/healthz"), FilterHeadersStatus::kStopIteration);
}

TEST_F(HealthCheckTest, UnknownClusterCountsAsZeroPercent) {
  v1::HealthCheck config = Config();
  (*config.mutable_cluster_min_healthy_percent())["ghost"] = 1;
  (*config.mutable_cluster_min_healthy_percent())["empty_ok"] = 0;
  Configure(config);
  EXPECT_CALL(callbacks_,
              SendLocalReply(503, HasSubstr("cluster ghost is not configured"), kClusterError));
  EXPECT_EQ(Request("/healthz"), FilterHeadersStatus::kStopIteration);
}

TEST_F(HealthCheckTest, ZeroPercentPassesEvenForAClusterWithoutHosts) {
  v1::HealthCheck config = Config();
  (*config.mutable_cluster_min_healthy_percent())["ghost"] = 0;
  (*config.mutable_cluster_min_healthy_percent())["none"] = 0;
  Configure(config);
  callbacks_.gateway.SetCluster("none", 0, 0);
  EXPECT_CALL(callbacks_, SendLocalReply(200, "OK\n", ""));
  EXPECT_EQ(Request("/healthz"), FilterHeadersStatus::kStopIteration);
}

TEST_F(HealthCheckTest, PassThroughWithoutCacheAlwaysGoesUpstream) {
  v1::HealthCheck config = Config();
  config.set_pass_through(true);
  Configure(config);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(Request("/healthz"), FilterHeadersStatus::kContinue);
    EXPECT_EQ(HealthHeader(Response(200)), "(none)");
  }
}

// The upstream's status is kept for cache_time; while it is fresh the
// checks are answered from it, then the next one goes upstream again.
TEST_F(HealthCheckTest, PassThroughCachesTheUpstreamStatusForCacheTime) {
  v1::HealthCheck config = Config();
  config.set_pass_through(true);
  config.mutable_cache_time()->set_seconds(2);
  Configure(config);
  EXPECT_EQ(Request("/healthz"), FilterHeadersStatus::kContinue);
  EXPECT_EQ(HealthHeader(Response(503)), "(none)");

  callbacks_.dispatcher.AdvanceTimeAndRun(std::chrono::milliseconds(1999));
  EXPECT_CALL(callbacks_, SendLocalReply(503, "upstream answered 503\n", ""));
  EXPECT_EQ(Request("/healthz"), FilterHeadersStatus::kStopIteration);
  // The cached answer is not cached again (it would never expire).
  EXPECT_EQ(HealthHeader(Response(503)), "cached");

  callbacks_.dispatcher.AdvanceTimeAndRun(std::chrono::milliseconds(1));
  EXPECT_EQ(Request("/healthz"), FilterHeadersStatus::kContinue);
  Response(200);
  EXPECT_CALL(callbacks_, SendLocalReply(200, "OK\n", ""));
  EXPECT_EQ(Request("/healthz"), FilterHeadersStatus::kStopIteration);
}

// The cache never hides a drain or an unhealthy cluster.
TEST_F(HealthCheckTest, CachedAnswerDoesNotHideADrain) {
  v1::HealthCheck config = Config();
  config.set_pass_through(true);
  config.mutable_cache_time()->set_seconds(10);
  Configure(config);
  EXPECT_EQ(Request("/healthz"), FilterHeadersStatus::kContinue);
  Response(200);
  callbacks_.gateway.draining = true;
  EXPECT_CALL(callbacks_, SendLocalReply(503, _, kDrainingError));
  EXPECT_EQ(Request("/healthz"), FilterHeadersStatus::kStopIteration);
}

// Every stream the factory makes shares the cache (one per filter config,
// shared by the workers).
TEST_F(HealthCheckTest, TheCacheIsSharedByTheFiltersOfOneConfig) {
  v1::HealthCheck config = Config();
  config.set_pass_through(true);
  config.mutable_cache_time()->set_seconds(5);
  Configure(config);
  EXPECT_EQ(Request("/healthz"), FilterHeadersStatus::kContinue);
  http::FilterPtr first = std::move(filter_);
  // A second check arrives while the first is upstream: it goes up too.
  EXPECT_EQ(Request("/healthz"), FilterHeadersStatus::kContinue);
  http::HeaderMap headers;
  headers.Add(":status", "204");
  first->EncodeHeaders(headers, true);
  EXPECT_CALL(callbacks_, SendLocalReply(204, "OK\n", ""));
  http::FilterPtr third = make_();
  third->SetCallbacks(callbacks_);
  http::HeaderMap request;
  request.Add(":path", "/healthz");
  EXPECT_EQ(third->DecodeHeaders(request, true), FilterHeadersStatus::kStopIteration);
}

TEST(StatusCacheTest, EmptyExpiredAndOutOfRange) {
  StatusCache cache;
  const MonotonicTime t0{std::chrono::seconds(100)};
  EXPECT_EQ(cache.Get(t0), 0);
  cache.Put(200, t0 + std::chrono::milliseconds(10));
  EXPECT_EQ(cache.Get(t0), 200);
  EXPECT_EQ(cache.Get(t0 + std::chrono::milliseconds(10)), 0);
  cache.Put(0, t0 + std::chrono::seconds(10));  // ignored
  EXPECT_EQ(cache.Get(t0), 200);
}

absl::Status Check(const v1::HealthCheck& config) {
  return HealthCheckFactory().Create(config).status();
}

TEST(HealthCheckConfigTest, ConfigErrorsNameTheField) {
  v1::HealthCheck config;
  EXPECT_EQ(Check(config).message(), "path: is required");
  config.set_path("healthz");
  EXPECT_THAT(std::string(Check(config).message()),
              testing::StartsWith("path: must start with \"/\""));
  config.set_path("/healthz?x=1");
  EXPECT_THAT(std::string(Check(config).message()), testing::StartsWith("path: must not"));
  config.set_path("/healthz");
  (*config.mutable_cluster_min_healthy_percent())["backend"] = 101;
  EXPECT_EQ(Check(config).message(),
            "cluster_min_healthy_percent[backend]: must be between 0 and 100, got 101");
  (*config.mutable_cluster_min_healthy_percent())["backend"] = 100;
  EXPECT_TRUE(Check(config).ok());
  config.mutable_cache_time()->set_seconds(1);
  EXPECT_THAT(std::string(Check(config).message()),
              testing::StartsWith("cache_time: only applies with pass_through"));
  config.set_pass_through(true);
  EXPECT_TRUE(Check(config).ok());
  config.mutable_cache_time()->set_seconds(-1);
  EXPECT_EQ(Check(config).message(), "cache_time: must not be negative");
}

TEST(HealthCheckConfigTest, RegisteredAsABuiltinFilter) {
  RegisterBuiltinFilters();
  const http::FilterFactory* factory = http::GlobalFilterRegistry().Find("portway.health_check");
  ASSERT_NE(factory, nullptr);
  EXPECT_NE(dynamic_cast<const HealthCheckFactory*>(factory), nullptr);
}

}  // namespace
}  // namespace portway::filters::health_check
