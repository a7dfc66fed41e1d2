// portway.retry and portway.circuit_breaker against strict fakes of the
// filter callbacks: every call a filter makes into the core is expected
// explicitly, and anything else fails the test. Time and randomness come
// from a SimDispatcher: the tests move the clock and pick the draws.
#include "filters/circuit_breaker/circuit_breaker_filter.h"
#include "filters/retry/retry_filter.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "portway/filters/circuit_breaker/v1/circuit_breaker.pb.h"
#include "portway/filters/retry/v1/retry.pb.h"
#include "test/unit/fake_gateway.h"
#include "test/unit/sim_dispatcher.h"

namespace portway::filters {
namespace {

using http::ErrorCause;
using http::UpstreamResult;
using http::UpstreamResultStatus;
using testing::_;
using testing::StrictMock;

class FakeCallbacks : public http::FilterCallbacks {
 public:
  MOCK_METHOD(void, Continue, (), (override));
  MOCK_METHOD(void, SendLocalReply, (int, std::string_view, std::string_view), (override));
  MOCK_METHOD(void, SendErrorReply, (ErrorCause, std::string_view), (override));
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
  const http::GatewayView& Gateway() override { return gateway; }
  http::StreamInfo info;
  test::FakeGateway gateway;
  test::SimDispatcher dispatcher;
};

http::HeaderMapPtr Request(std::string_view method) {
  auto h = std::make_unique<http::HeaderMap>();
  h->Add(":method", method);
  h->Add(":path", "/");
  return h;
}

UpstreamResult Result(UpstreamResult::Kind kind, int status = 0, uint32_t attempt = 1) {
  UpstreamResult r;
  r.kind = kind;
  r.status = status;
  r.attempt = attempt;
  r.cause = kind == UpstreamResult::Kind::kConnectFailure ? ErrorCause::kUpstreamConnectRefused
                                                          : ErrorCause::kNone;
  return r;
}

// ---- portway.retry ----

class RetryTest : public testing::Test {
 protected:
  // Builds through the factory, so config checks run too.
  void Configure(const std::string& retry_on, uint32_t num_retries = 2) {
    retry::v1::Retry config;
    for (std::string_view on : {std::string_view(retry_on)}) {
      size_t start = 0;
      while (start <= on.size()) {
        size_t comma = on.find(',', start);
        if (comma == std::string_view::npos) comma = on.size();
        config.add_retry_on(std::string(on.substr(start, comma - start)));
        start = comma + 1;
      }
    }
    config.mutable_num_retries()->set_value(num_retries);
    config.mutable_backoff()->mutable_base_interval()->set_nanos(100 * 1000000);
    config.mutable_backoff()->mutable_max_interval()->set_nanos(500 * 1000000);
    auto made = retry::RetryFactory().Create(config);
    ASSERT_TRUE(made.ok()) << made.status();
    make_ = *made;
  }
  http::FilterPtr Start(std::string_view method = "GET") {
    http::FilterPtr f = make_();
    f->SetCallbacks(callbacks_);
    auto headers = Request(method);
    f->DecodeHeaders(*headers, true);
    return f;
  }
  http::FilterFactoryCallback make_;
  StrictMock<FakeCallbacks> callbacks_;
};

TEST_F(RetryTest, RetriesAConnectFailureAndKeepsTheRequest) {
  Configure("connect-failure");
  EXPECT_CALL(callbacks_, EnableRequestReplay(65536));
  auto f = Start();
  auto r = Result(UpstreamResult::Kind::kConnectFailure);
  EXPECT_EQ(f->OnUpstreamResult(r), UpstreamResultStatus::kRetry);
  EXPECT_LE(r.retry_delay.count(), 100);
}

TEST_F(RetryTest, DoesNotRetryPostByDefault) {
  Configure("connect-failure");
  auto f = Start("POST");  // no EnableRequestReplay expected either
  auto r = Result(UpstreamResult::Kind::kConnectFailure);
  EXPECT_EQ(f->OnUpstreamResult(r), UpstreamResultStatus::kContinue);
}

TEST_F(RetryTest, GatewayErrorMatchesOnly502To504) {
  Configure("gateway-error", 10);
  EXPECT_CALL(callbacks_, EnableRequestReplay(_));
  auto f = Start();
  for (int status : {500, 501, 505, 200, 404}) {
    auto r = Result(UpstreamResult::Kind::kResponseHeaders, status);
    EXPECT_EQ(f->OnUpstreamResult(r), UpstreamResultStatus::kContinue) << status;
  }
  for (int status : {502, 503, 504}) {
    auto r = Result(UpstreamResult::Kind::kResponseHeaders, status);
    EXPECT_EQ(f->OnUpstreamResult(r), UpstreamResultStatus::kRetry) << status;
  }
}

TEST_F(RetryTest, RefusedStreamRetriesEvenAPostButNothingElseOfIt) {
  Configure("refused-stream");
  EXPECT_CALL(callbacks_, EnableRequestReplay(_));
  auto f = Start("POST");
  auto reset = Result(UpstreamResult::Kind::kReset);
  EXPECT_EQ(f->OnUpstreamResult(reset), UpstreamResultStatus::kContinue);
  auto refused = Result(UpstreamResult::Kind::kReset);
  refused.refused_stream = true;
  EXPECT_EQ(f->OnUpstreamResult(refused), UpstreamResultStatus::kRetry);
}

TEST_F(RetryTest, GrpcStatusesOfATrailersOnlyResponse) {
  Configure("unavailable,resource-exhausted", 10);
  EXPECT_CALL(callbacks_, EnableRequestReplay(_));
  auto f = Start();
  for (auto [code, want] : std::vector<std::pair<std::string, UpstreamResultStatus>>{
           {"14", UpstreamResultStatus::kRetry},
           {"8", UpstreamResultStatus::kRetry},
           {"0", UpstreamResultStatus::kContinue},
           {"13", UpstreamResultStatus::kContinue},
           {"14x", UpstreamResultStatus::kContinue}}) {
    http::HeaderMap head;
    head.Add(":status", "200");
    head.Add("grpc-status", code);
    auto r = Result(UpstreamResult::Kind::kResponseHeaders, 200);
    r.headers = &head;
    EXPECT_EQ(f->OnUpstreamResult(r), want) << code;
  }
}

TEST_F(RetryTest, GrpcCallsAreRetriedOnTheirStatusesOnlyThoughTheyArePosts) {
  Configure("unavailable,5xx", 10);
  EXPECT_CALL(callbacks_, EnableRequestReplay(_));
  http::FilterPtr f = make_();
  f->SetCallbacks(callbacks_);
  auto headers = Request("POST");
  headers->Add("content-type", "application/grpc");
  f->DecodeHeaders(*headers, true);
  http::HeaderMap head;
  head.Add(":status", "200");
  head.Add("grpc-status", "14");
  auto unavailable = Result(UpstreamResult::Kind::kResponseHeaders, 200);
  unavailable.headers = &head;
  EXPECT_EQ(f->OnUpstreamResult(unavailable), UpstreamResultStatus::kRetry);
  // A POST is not replayed on anything else, though 5xx is listed.
  auto bad_gateway = Result(UpstreamResult::Kind::kResponseHeaders, 502);
  EXPECT_EQ(f->OnUpstreamResult(bad_gateway), UpstreamResultStatus::kContinue);
}

TEST_F(RetryTest, APostReplayedOnlyForRefusedStreamsKeepsTheRouteTimeout) {
  retry::v1::Retry config;
  config.add_retry_on("refused-stream");
  config.add_retry_on("5xx");
  config.mutable_per_try_timeout()->set_nanos(300 * 1000000);
  auto made = retry::RetryFactory().Create(config);
  ASSERT_TRUE(made.ok()) << made.status();
  make_ = *made;
  // Replay, but no per-try timeout: it would fail the POST, not retry it
  // (StrictMock: a SetPerTryTimeout call fails the test).
  EXPECT_CALL(callbacks_, EnableRequestReplay(_));
  auto post = Start("POST");
  EXPECT_CALL(callbacks_, EnableRequestReplay(_));
  EXPECT_CALL(callbacks_, SetPerTryTimeout(std::chrono::milliseconds(300)));
  auto get = Start("GET");
}

TEST_F(RetryTest, RetriableHeaders) {
  retry::v1::Retry config;
  config.add_retry_on("retriable-headers");
  auto* h = config.add_retriable_headers();
  h->set_name("X-Overloaded");
  h->set_value("yes");
  auto made = retry::RetryFactory().Create(config);
  ASSERT_TRUE(made.ok()) << made.status();
  make_ = *made;
  EXPECT_CALL(callbacks_, EnableRequestReplay(_));
  auto f = Start();
  http::HeaderMap response;
  response.Add(":status", "200");
  response.Add("x-overloaded", "no");
  auto r = Result(UpstreamResult::Kind::kResponseHeaders, 200);
  r.headers = &response;
  EXPECT_EQ(f->OnUpstreamResult(r), UpstreamResultStatus::kContinue);
  response.Set("x-overloaded", "yes");
  EXPECT_EQ(f->OnUpstreamResult(r), UpstreamResultStatus::kRetry);
}

TEST_F(RetryTest, StopsAfterNumRetries) {
  Configure("5xx", 2);
  EXPECT_CALL(callbacks_, EnableRequestReplay(_));
  auto f = Start();
  for (uint32_t attempt = 1; attempt <= 2; ++attempt) {
    auto r = Result(UpstreamResult::Kind::kResponseHeaders, 500, attempt);
    EXPECT_EQ(f->OnUpstreamResult(r), UpstreamResultStatus::kRetry);
  }
  auto r = Result(UpstreamResult::Kind::kResponseHeaders, 500, 3);
  EXPECT_EQ(f->OnUpstreamResult(r), UpstreamResultStatus::kContinue);
}

TEST_F(RetryTest, NoRetryOnceTheBodyOutgrewTheReplayBuffer) {
  Configure("connect-failure");
  EXPECT_CALL(callbacks_, EnableRequestReplay(_));
  auto f = Start();
  callbacks_.info.replay_overflow = true;
  auto r = Result(UpstreamResult::Kind::kConnectFailure);
  EXPECT_EQ(f->OnUpstreamResult(r), UpstreamResultStatus::kContinue);
}

// The back-off ceiling doubles per retry up to max_interval; with the
// jitter pinned to its top the delays are exact.
TEST_F(RetryTest, ExponentialBackoffCappedAtMaxInterval) {
  retry::v1::Retry config;
  config.add_retry_on("5xx");
  config.mutable_num_retries()->set_value(5);
  config.mutable_backoff()->mutable_base_interval()->set_nanos(100 * 1000000);
  config.mutable_backoff()->mutable_max_interval()->set_nanos(500 * 1000000);
  auto made = retry::RetryFactory().Create(config);
  ASSERT_TRUE(made.ok());
  // Reach the Shared state through a filter made by hand with the same
  // settings, so the jitter can be pinned.
  auto shared = std::make_shared<retry::Shared>();
  shared->settings.on_5xx = true;
  shared->settings.num_retries = 5;
  shared->settings.base_interval = std::chrono::milliseconds(100);
  shared->settings.max_interval = std::chrono::milliseconds(500);
  shared->attempts = &GetCounter("test_retry_attempts", {});
  shared->succeeded = &GetCounter("test_retry_succeeded", {});
  shared->exhausted = &GetCounter("test_retry_exhausted", {});
  shared->budget_overflow = &GetCounter("test_retry_budget", {});
  shared->replay_overflow = &GetCounter("test_retry_replay", {});
  shared->settings.min_retry_concurrency = 100;
  callbacks_.dispatcher.sim_random().AlwaysMax();
  retry::RetryFilter f(shared.get());
  f.SetCallbacks(callbacks_);
  EXPECT_CALL(callbacks_, EnableRequestReplay(_));
  auto headers = Request("GET");
  f.DecodeHeaders(*headers, true);
  std::vector<int64_t> delays;
  for (uint32_t attempt = 1; attempt <= 5; ++attempt) {
    auto r = Result(UpstreamResult::Kind::kResponseHeaders, 503, attempt);
    ASSERT_EQ(f.OnUpstreamResult(r), UpstreamResultStatus::kRetry);
    delays.push_back(r.retry_delay.count());
    http::UpstreamAttempt next;
    next.attempt = attempt + 1;
    f.OnUpstreamAttempt(next);
  }
  EXPECT_EQ(delays, (std::vector<int64_t>{100, 200, 400, 500, 500}));
  EXPECT_EQ(shared->attempts->Value(), 5u);
}

// The jitter is drawn from the worker's random source (FilterCallbacks::
// Random()), full jitter in [0, ceiling]: no engine of the filter's own.
TEST_F(RetryTest, BackoffJitterComesFromTheWorkersRandomSource) {
  Configure("connect-failure", 3);  // base 100ms
  EXPECT_CALL(callbacks_, EnableRequestReplay(_));
  auto f = Start();
  test::SimRandom& random = callbacks_.dispatcher.sim_random();
  random.Push(0);                  // the bottom of [0, 100]
  random.Push(uint64_t{1} << 63);  // the middle of [0, 200]
  random.Push(UINT64_MAX);         // the top of [0, 400]
  std::vector<int64_t> delays;
  for (uint32_t attempt = 1; attempt <= 3; ++attempt) {
    auto r = Result(UpstreamResult::Kind::kConnectFailure, 0, attempt);
    ASSERT_EQ(f->OnUpstreamResult(r), UpstreamResultStatus::kRetry);
    delays.push_back(r.retry_delay.count());
  }
  EXPECT_EQ(delays, (std::vector<int64_t>{0, 100, 400}));
}

TEST_F(RetryTest, BudgetBoundsRetriesInFlight) {
  auto shared = std::make_shared<retry::Shared>();
  shared->settings.on_connect_failure = true;
  shared->settings.budget_percent = 0;
  shared->settings.min_retry_concurrency = 2;
  shared->attempts = &GetCounter("test_budget_attempts", {});
  shared->succeeded = &GetCounter("test_budget_succeeded", {});
  shared->exhausted = &GetCounter("test_budget_exhausted", {});
  shared->budget_overflow = &GetCounter("test_budget_overflow", {});
  shared->replay_overflow = &GetCounter("test_budget_replay", {});
  std::vector<std::unique_ptr<retry::RetryFilter>> filters;
  EXPECT_CALL(callbacks_, EnableRequestReplay(_)).Times(3);
  std::vector<UpstreamResultStatus> answers;
  for (int i = 0; i < 3; ++i) {
    filters.push_back(std::make_unique<retry::RetryFilter>(shared.get()));
    filters.back()->SetCallbacks(callbacks_);
    auto headers = Request("GET");
    filters.back()->DecodeHeaders(*headers, true);
    auto r = Result(UpstreamResult::Kind::kConnectFailure);
    answers.push_back(filters.back()->OnUpstreamResult(r));
  }
  EXPECT_EQ(answers, (std::vector<UpstreamResultStatus>{UpstreamResultStatus::kRetry,
                                                        UpstreamResultStatus::kRetry,
                                                        UpstreamResultStatus::kContinue}));
  EXPECT_EQ(shared->budget_overflow->Value(), 1u);
  // A retry that ends frees its place in the budget.
  filters[0]->OnStreamComplete(callbacks_.info);
  EXPECT_CALL(callbacks_, EnableRequestReplay(_));
  retry::RetryFilter another(shared.get());
  another.SetCallbacks(callbacks_);
  auto headers = Request("GET");
  another.DecodeHeaders(*headers, true);
  auto r = Result(UpstreamResult::Kind::kConnectFailure);
  EXPECT_EQ(another.OnUpstreamResult(r), UpstreamResultStatus::kRetry);
}

TEST_F(RetryTest, ConfigErrorsNameTheField) {
  retry::v1::Retry config;
  config.add_retry_on("connect-failure");
  config.add_retry_on("sometimes");
  auto made = retry::RetryFactory().Create(config);
  ASSERT_FALSE(made.ok());
  EXPECT_THAT(std::string(made.status().message()), testing::StartsWith("retry_on[1]: unknown"));
  retry::v1::Retry headers;
  headers.add_retry_on("retriable-headers");
  made = retry::RetryFactory().Create(headers);
  ASSERT_FALSE(made.ok());
  EXPECT_THAT(std::string(made.status().message()), testing::StartsWith("retriable_headers:"));
}

// ---- portway.circuit_breaker ----

namespace cb = circuit_breaker;

class CircuitBreakerTest : public testing::Test {
 protected:
  // Every test gets clusters of its own: breaker state is process-wide.
  void SetUp() override {
    cluster_ = std::string("cb-") + testing::UnitTest::GetInstance()->current_test_info()->name();
    callbacks_.info.cluster = cluster_;
  }
  void Configure(const cb::v1::CircuitBreaker& config) {
    auto made = cb::CircuitBreakerFactory().Create(config);
    ASSERT_TRUE(made.ok()) << made.status();
    make_ = *made;
  }
  // One request through the filter: admitted or not, then (if admitted)
  // one attempt on `host` with `status` as the client's answer.
  http::FilterPtr Admit() {
    http::FilterPtr f = make_();
    f->SetCallbacks(callbacks_);
    auto headers = Request("GET");
    last_status_ = f->DecodeHeaders(*headers, true);
    return f;
  }
  void Finish(http::Filter& f, int status) {
    auto r = Result(UpstreamResult::Kind::kResponseHeaders, status);
    f.OnUpstreamResult(r);
    http::HeaderMap response;
    response.Add(":status", std::to_string(status));
    f.EncodeHeaders(response, true);
    callbacks_.info.status = status;
    f.OnStreamComplete(callbacks_.info);
  }
  std::string cluster_;
  http::FilterFactoryCallback make_;
  StrictMock<FakeCallbacks> callbacks_;
  http::FilterHeadersStatus last_status_ = http::FilterHeadersStatus::kContinue;
};

TEST_F(CircuitBreakerTest, HandsTheLimitsToTheCore) {
  cb::v1::CircuitBreaker config;
  config.mutable_max_connections()->set_value(10);
  config.mutable_max_pending_requests()->set_value(0);
  config.mutable_max_requests()->set_value(30);
  Configure(config);
  http::UpstreamLimits seen;
  EXPECT_CALL(callbacks_, SetUpstreamLimits(_)).WillOnce(testing::SaveArg<0>(&seen));
  auto f = Admit();
  EXPECT_EQ(seen.max_connections, 10u);
  EXPECT_EQ(seen.max_pending_requests, 0u);  // 0: unlimited
  EXPECT_EQ(seen.max_requests, 30u);
  EXPECT_EQ(seen.max_retries, 3u);  // the default
}

TEST_F(CircuitBreakerTest, OpensFailsFastHalfOpensAndCloses) {
  cb::v1::CircuitBreaker config;
  config.mutable_consecutive_failures()->set_value(2);
  config.mutable_open_duration()->set_nanos(50 * 1000000);
  config.mutable_host()->set_disabled(true);
  Configure(config);
  EXPECT_CALL(callbacks_, SetUpstreamLimits(_)).Times(testing::AnyNumber());
  for (int i = 0; i < 2; ++i) {
    auto f = Admit();
    Finish(*f, 503);
  }
  // Open: 503 circuit_open without an attempt.
  EXPECT_CALL(callbacks_, SendErrorReply(ErrorCause::kCircuitOpen,
                                         "the breaker for cluster " + cluster_ + " is open"));
  auto rejected = Admit();
  EXPECT_EQ(last_status_, http::FilterHeadersStatus::kStopIteration);
  testing::Mock::VerifyAndClearExpectations(&callbacks_);
  EXPECT_CALL(callbacks_, SetUpstreamLimits(_)).Times(testing::AnyNumber());
  // Still open 1ms before open_duration ends (simulated time).
  callbacks_.dispatcher.AdvanceTimeAndRun(std::chrono::milliseconds(49));
  EXPECT_CALL(callbacks_, SendErrorReply(ErrorCause::kCircuitOpen, _));
  auto early = Admit();
  EXPECT_EQ(last_status_, http::FilterHeadersStatus::kStopIteration);
  testing::Mock::VerifyAndClearExpectations(&callbacks_);
  EXPECT_CALL(callbacks_, SetUpstreamLimits(_)).Times(testing::AnyNumber());
  // At open_duration: one probe goes through, the next is refused.
  callbacks_.dispatcher.AdvanceTimeAndRun(std::chrono::milliseconds(1));
  auto probe = Admit();
  EXPECT_EQ(last_status_, http::FilterHeadersStatus::kContinue);
  EXPECT_CALL(callbacks_, SendErrorReply(ErrorCause::kCircuitOpen, _));
  auto second = Admit();
  testing::Mock::VerifyAndClearExpectations(&callbacks_);
  EXPECT_CALL(callbacks_, SetUpstreamLimits(_)).Times(testing::AnyNumber());
  Finish(*probe, 200);  // the probe succeeds: closed
  auto after = Admit();
  EXPECT_EQ(last_status_, http::FilterHeadersStatus::kContinue);
  EXPECT_EQ(GetGauge("portway_circuit_breaker_state", {{"cluster", cluster_}}).Value(), 0);
  EXPECT_EQ(GetCounter("portway_circuit_breaker_rejected_total", {{"cluster", cluster_}}).Value(),
            3u);
}

TEST_F(CircuitBreakerTest, OpenClusterGoesToTheFallback) {
  cb::v1::CircuitBreaker config;
  config.mutable_consecutive_failures()->set_value(1);
  config.mutable_host()->set_disabled(true);
  config.set_fallback_cluster(cluster_ + "-fallback");
  Configure(config);
  EXPECT_CALL(callbacks_, SetUpstreamLimits(_)).Times(testing::AnyNumber());
  auto f = Admit();
  Finish(*f, 502);
  EXPECT_CALL(callbacks_, SetUpstreamCluster(cluster_ + "-fallback"));
  auto to_fallback = Admit();
  EXPECT_EQ(last_status_, http::FilterHeadersStatus::kContinue);
}

// Per-host ejection moved to the core's outlier detection
// (outlier_detector_test.cc): the filter no longer looks at attempts, so
// hosts that fail never get turned down by it.
TEST_F(CircuitBreakerTest, LeavesHostsToOutlierDetection) {
  cb::v1::CircuitBreaker config;
  config.set_cluster_breaker_disabled(true);
  config.mutable_host()->set_disabled(true);  // still accepted
  Configure(config);
  auto f = make_();
  EXPECT_EQ(f->Phases() & http::Phase::kUpstreamAttempt, 0u);
  EXPECT_CALL(callbacks_, SetUpstreamLimits(_)).Times(testing::AnyNumber());
  for (int i = 0; i < 10; ++i) {
    auto g = Admit();
    EXPECT_EQ(last_status_, http::FilterHeadersStatus::kContinue);
    Finish(*g, 502);
  }
}

TEST_F(CircuitBreakerTest, SlowResponsesCountWhenConfigured) {
  cb::v1::CircuitBreaker config;
  config.mutable_consecutive_failures()->set_value(1);
  config.mutable_host()->set_disabled(true);
  config.add_failure_on("slow");
  config.mutable_slow_threshold()->set_nanos(20 * 1000000);
  Configure(config);
  EXPECT_CALL(callbacks_, SetUpstreamLimits(_)).Times(testing::AnyNumber());
  // Slow is measured from when the request went upstream.
  // Slow is measured on the worker's clock from when the request went
  // upstream: 19ms is fine, 20ms is slow.
  callbacks_.info.upstream_request_sent = callbacks_.dispatcher.Now();
  callbacks_.dispatcher.AdvanceTimeAndRun(std::chrono::milliseconds(19));
  auto fast = Admit();
  Finish(*fast, 200);
  auto still = Admit();
  EXPECT_EQ(last_status_, http::FilterHeadersStatus::kContinue);
  callbacks_.info.upstream_request_sent = callbacks_.dispatcher.Now();
  callbacks_.dispatcher.AdvanceTimeAndRun(std::chrono::milliseconds(20));
  Finish(*still, 200);  // 20ms >= 20ms: a failure
  EXPECT_CALL(callbacks_, SendErrorReply(ErrorCause::kCircuitOpen, _));
  auto refused = Admit();
}

TEST_F(CircuitBreakerTest, ConfigErrorsNameTheField) {
  auto error = [](const cb::v1::CircuitBreaker& c) {
    auto made = cb::CircuitBreakerFactory().Create(c);
    return made.ok() ? std::string("ok") : std::string(made.status().message());
  };
  cb::v1::CircuitBreaker c;
  c.set_failure_rate_threshold(150);
  EXPECT_THAT(error(c), testing::StartsWith("failure_rate_threshold:"));
  c = {};
  c.mutable_host()->mutable_breaker()->mutable_consecutive_failures()->set_value(2);
  EXPECT_THAT(error(c), testing::StartsWith("host.breaker: per-host breakers are gone"));
  EXPECT_THAT(error(c), testing::HasSubstr("outlier_detection"));
  c = {};
  c.mutable_host()->set_disabled(true);
  EXPECT_EQ(error(c), "ok");
  c = {};
  c.add_failure_on("slow");
  EXPECT_THAT(error(c), testing::StartsWith("slow_threshold:"));
  c = {};
  c.add_failure_on("sad");
  EXPECT_THAT(error(c), testing::StartsWith("failure_on[0]: unknown failure 'sad'"));
  c = {};
  c.mutable_open_duration()->set_seconds(10);
  c.mutable_max_open_duration()->set_seconds(5);
  EXPECT_THAT(error(c), testing::StartsWith("max_open_duration:"));
  c = {};
  c.set_cluster_breaker_disabled(true);
  c.set_fallback_cluster("b");
  EXPECT_THAT(error(c), testing::StartsWith("fallback_cluster:"));
  EXPECT_EQ(error(cb::v1::CircuitBreaker()), "ok");
}

}  // namespace
}  // namespace portway::filters
