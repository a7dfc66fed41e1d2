// portway.cache on simulated time: each test plays streams through the
// filter as the filter manager would (request head, then the response the
// upstream or the core's local reply produced) against fake callbacks that
// record what the filter answered.
#include "filters/cache/cache_filter.h"

#include <map>

#include "gtest/gtest.h"
#include "portway/filters/cache/v1/cache.pb.h"
#include "test/unit/fake_gateway.h"
#include "test/unit/sim_dispatcher.h"

namespace portway::filters::cache {
namespace {

using http::FilterDataStatus;
using http::FilterHeadersStatus;
using std::chrono::milliseconds;
using std::chrono::seconds;

class Callbacks : public http::FilterCallbacks {
 public:
  explicit Callbacks(test::SimDispatcher& d, std::shared_ptr<http::WorkerPoster> poster)
      : dispatcher_(d), poster_(std::move(poster)) {}
  void Continue() override { ++continued; }
  void SendLocalReply(int status, std::string_view, std::string_view error) override {
    local_reply = status;
    local_error = std::string(error);
  }
  void SendErrorReply(http::ErrorCause, std::string_view) override { ADD_FAILURE(); }
  bool SendResponse(http::FilterResponse r) override {
    if (head_sent) return false;
    response = std::move(r);
    answered = true;
    info.cause = http::ErrorCause::kNone;
    info.local_reply = false;
    return true;
  }
  http::StreamInfo& Info() override { return info; }
  Buffer& KeptBody() override { return kept; }
  std::unique_ptr<http::FilterTimer> CreateTimer(std::function<void()> cb) override {
    class Timer : public http::FilterTimer {
     public:
      explicit Timer(event::TimerPtr t) : t_(std::move(t)) {}
      void Enable(milliseconds timeout) override { t_->Enable(timeout); }
      void Disable() override { t_->Disable(); }
      event::TimerPtr t_;
    };
    return std::make_unique<Timer>(dispatcher_.CreateTimer(std::move(cb)));
  }
  const TimeSource& Clock() override { return dispatcher_; }
  RandomGenerator& Random() override { return dispatcher_.Random(); }
  const http::GatewayView& Gateway() override { return gateway; }
  std::shared_ptr<http::WorkerPoster> Worker() override { return poster_; }
  void SendSideRequest(http::HeaderMapPtr headers, size_t,
                       http::SideResponseCallback done) override {
    side_requests.push_back({std::move(headers), std::move(done)});
  }
  struct Side {
    http::HeaderMapPtr headers;
    http::SideResponseCallback done;
  };
  std::vector<Side> side_requests;
  void EnableRequestReplay(size_t) override {}
  void SetPerTryTimeout(milliseconds) override {}
  void SetUpstreamLimits(const http::UpstreamLimits&) override {}
  void SetUpstreamCluster(std::string_view) override {}

  std::string Header(std::string_view name) const {
    const std::string_view* v = response.headers ? response.headers->Get(name) : nullptr;
    return v ? std::string(*v) : "";
  }

  http::StreamInfo info;
  Buffer kept;
  test::FakeGateway gateway;
  int continued = 0;
  int local_reply = 0;
  std::string local_error;
  bool answered = false;
  bool head_sent = false;
  http::FilterResponse response;

 private:
  test::SimDispatcher& dispatcher_;
  std::shared_ptr<http::WorkerPoster> poster_;
};

// One stream through the filter.
struct Stream {
  std::unique_ptr<Callbacks> callbacks;
  http::FilterPtr filter;
  http::HeaderMapPtr request;
  FilterHeadersStatus decode = FilterHeadersStatus::kContinue;

  // The upstream (or the core) answers; returns what the filter did with
  // the head.
  FilterHeadersStatus Respond(int status, std::vector<std::pair<std::string, std::string>> headers,
                              std::string body) {
    http::HeaderMap h;
    h.Add(":status", std::to_string(status));
    for (auto& [n, v] : headers) h.Add(n, v);
    const FilterHeadersStatus s = filter->EncodeHeaders(h, body.empty());
    if (s == FilterHeadersStatus::kContinue) {
      response_headers = std::make_unique<http::HeaderMap>();
      for (const auto& e : h) response_headers->Add(e.name, e.value);
      callbacks->head_sent = true;
    }
    if (!body.empty()) {
      Buffer b;
      b.Add(body);
      filter->EncodeData(b, true);
    }
    filter->OnDestroy();
    return s;
  }
  // The core's local reply for `cause` (what the router sends after the
  // retries are spent).
  FilterHeadersStatus Fail(http::ErrorCause cause, int status) {
    callbacks->info.cause = cause;
    callbacks->info.local_reply = true;
    return Respond(status, {{"content-type", "text/plain"}}, "");
  }
  std::string Body() { return callbacks->response.body.ToString(); }
  std::string UpstreamHeader(std::string_view name) const {
    const std::string_view* v = request->Get(name);
    return v ? std::string(*v) : "";
  }
  http::HeaderMapPtr response_headers;
};

class CacheFilterTest : public testing::Test {
 protected:
  CacheFilterTest() {
    config_.set_zone(testing::UnitTest::GetInstance()->current_test_info()->name());
  }
  void Build() {
    CacheFactory factory;
    auto made = factory.Create(config_);
    ASSERT_TRUE(made.ok()) << made.status();
    make_ = *made;
  }
  Stream Get(std::string path, std::vector<std::pair<std::string, std::string>> headers = {},
             std::string method = "GET") {
    if (!make_) Build();
    Stream s;
    s.callbacks = std::make_unique<Callbacks>(dispatcher_, poster_);
    s.filter = make_();
    s.filter->SetCallbacks(*s.callbacks);
    s.request = std::make_unique<http::HeaderMap>();
    s.request->Add(":method", method);
    s.request->Add(":authority", "example.com");
    s.request->Add(":path", path);
    for (auto& [n, v] : headers) s.request->Add(n, v);
    s.decode = s.filter->DecodeHeaders(*s.request, true);
    return s;
  }
  // A response stored as `path` (a miss that the origin answers).
  void Prime(std::string path, std::vector<std::pair<std::string, std::string>> headers,
             std::string body) {
    Stream s = Get(path);
    ASSERT_EQ(s.decode, FilterHeadersStatus::kContinue);
    s.Respond(200, std::move(headers), std::move(body));
    EXPECT_EQ(s.response_headers->GetOr("x-portway-cache", ""), "MISS");
  }
  void Advance(milliseconds d) { dispatcher_.AdvanceTimeAndRun(d); }

  test::SimDispatcher dispatcher_;
  std::shared_ptr<http::WorkerPoster> poster_;
  v1::Cache config_;
  http::FilterFactoryCallback make_;
};

TEST_F(CacheFilterTest, AStoredResponseIsServedUntilItExpires) {
  Prime("/a", {{"cache-control", "max-age=60"}, {"etag", "\"v1\""}}, "hello");
  Advance(seconds(10));
  Stream hit = Get("/a");
  EXPECT_EQ(hit.decode, FilterHeadersStatus::kStopIteration);
  ASSERT_TRUE(hit.callbacks->answered);
  EXPECT_EQ(hit.callbacks->response.headers->Status(), 200);
  EXPECT_EQ(hit.Body(), "hello");
  EXPECT_EQ(hit.callbacks->Header("x-portway-cache"), "HIT");
  EXPECT_EQ(hit.callbacks->Header("age"), "10");
  EXPECT_EQ(hit.callbacks->Header("content-length"), "5");
  EXPECT_EQ(hit.callbacks->info.response_flag, "HIT");
  EXPECT_EQ(hit.callbacks->continued, 0);

  // Another URL, another host: misses.
  EXPECT_EQ(Get("/b").decode, FilterHeadersStatus::kContinue);
  Advance(seconds(51));
  Stream expired = Get("/a");
  EXPECT_EQ(expired.decode, FilterHeadersStatus::kContinue);
  EXPECT_FALSE(expired.callbacks->answered);
  // It asks the origin whether the copy still holds.
  EXPECT_EQ(expired.UpstreamHeader("if-none-match"), "\"v1\"");
}

TEST_F(CacheFilterTest, A304RevalidatesTheCopy) {
  Prime("/a", {{"cache-control", "max-age=5"}, {"etag", "\"v1\""}, {"x-version", "1"}}, "body");
  Advance(seconds(6));
  Stream s = Get("/a");
  ASSERT_EQ(s.decode, FilterHeadersStatus::kContinue);
  EXPECT_EQ(
      s.Respond(304, {{"cache-control", "max-age=100"}, {"etag", "\"v1\""}, {"x-version", "2"}},
                ""),
      FilterHeadersStatus::kStopIteration);
  EXPECT_EQ(s.callbacks->response.headers->Status(), 200);
  EXPECT_EQ(s.Body(), "body");
  EXPECT_EQ(s.callbacks->Header("x-portway-cache"), "REVALIDATED");
  EXPECT_EQ(s.callbacks->Header("x-version"), "2");
  // Fresh again, for the new max-age.
  Advance(seconds(50));
  Stream hit = Get("/a");
  EXPECT_EQ(hit.callbacks->Header("x-portway-cache"), "HIT");
  EXPECT_EQ(hit.callbacks->Header("x-version"), "2");
}

TEST_F(CacheFilterTest, AFailedUpstreamGetsTheStaleCopyWithTheCause) {
  Prime("/a", {{"cache-control", "max-age=1"}}, "last good");
  Advance(seconds(30));
  Stream s = Get("/a");
  ASSERT_EQ(s.decode, FilterHeadersStatus::kContinue);
  EXPECT_EQ(s.Fail(http::ErrorCause::kUpstreamConnectRefused, 502),
            FilterHeadersStatus::kStopIteration);
  EXPECT_EQ(s.callbacks->response.headers->Status(), 200);
  EXPECT_EQ(s.Body(), "last good");
  EXPECT_EQ(s.callbacks->Header("x-portway-cache"), "STALE; cause=upstream_connect_refused");
  EXPECT_EQ(s.callbacks->Header("age"), "30");
  EXPECT_EQ(s.callbacks->info.response_flag, "STALE");
  EXPECT_EQ(s.callbacks->info.cause, http::ErrorCause::kNone);

  // An upstream 502 and a breaker's 503 alike.
  Stream bad = Get("/a");
  bad.Respond(502, {}, "bad gateway");
  EXPECT_EQ(bad.callbacks->Header("x-portway-cache"), "STALE; cause=upstream_status_502");
  Stream open = Get("/a");
  open.Fail(http::ErrorCause::kCircuitOpen, 503);
  EXPECT_EQ(open.callbacks->Header("x-portway-cache"), "STALE; cause=circuit_open");
}

TEST_F(CacheFilterTest, StaleIsServedOnlyForTheListedFailuresAndWithinMaxStale) {
  config_.add_serve_stale_on("502");
  config_.mutable_max_stale()->set_seconds(60);
  Prime("/a", {{"cache-control", "max-age=1"}}, "x");
  Advance(seconds(10));
  Stream five_hundred = Get("/a");
  EXPECT_EQ(five_hundred.Respond(500, {}, "oops"), FilterHeadersStatus::kContinue);
  EXPECT_FALSE(five_hundred.callbacks->answered);
  EXPECT_EQ(five_hundred.response_headers->GetOr("x-portway-cache", ""), "MISS");

  Stream refused = Get("/a");
  refused.Fail(http::ErrorCause::kUpstreamConnectRefused, 502);
  EXPECT_FALSE(refused.callbacks->answered);

  Stream ok = Get("/a");
  EXPECT_EQ(ok.Respond(502, {}, ""), FilterHeadersStatus::kStopIteration);
  // 61s past its freshness: too stale.
  Advance(seconds(52));
  Stream late = Get("/a");
  EXPECT_EQ(late.Respond(502, {}, ""), FilterHeadersStatus::kContinue);
  EXPECT_FALSE(late.callbacks->answered);
}

TEST_F(CacheFilterTest, MustRevalidateIsNeverServedStale) {
  Prime("/a", {{"cache-control", "max-age=1, must-revalidate"}}, "x");
  Advance(seconds(5));
  Stream s = Get("/a");
  EXPECT_EQ(s.Respond(502, {}, ""), FilterHeadersStatus::kContinue);
  EXPECT_FALSE(s.callbacks->answered);
}

TEST_F(CacheFilterTest, StaleIfErrorExtendsPastMaxStale) {
  config_.mutable_max_stale()->set_seconds(0);
  Prime("/a", {{"cache-control", "max-age=1, stale-if-error=100"}}, "x");
  Advance(seconds(50));
  Stream s = Get("/a");
  EXPECT_EQ(s.Respond(503, {}, ""), FilterHeadersStatus::kStopIteration);
  Advance(seconds(100));
  Stream late = Get("/a");
  EXPECT_EQ(late.Respond(503, {}, ""), FilterHeadersStatus::kContinue);
}

TEST_F(CacheFilterTest, WhatMustNotBeStoredIsNot) {
  Prime("/nostore", {{"cache-control", "no-store, max-age=60"}}, "x");
  Prime("/private", {{"cache-control", "private, max-age=60"}}, "x");
  Prime("/nothing", {}, "x");  // no freshness, no last_good
  for (const char* path : {"/nostore", "/private", "/nothing"}) {
    Stream s = Get(path);
    EXPECT_EQ(s.decode, FilterHeadersStatus::kContinue) << path;
    EXPECT_EQ(s.Respond(502, {}, ""), FilterHeadersStatus::kContinue) << path;
  }
  // POST is not looked up, and says so.
  Stream post = Get("/a", {}, "POST");
  EXPECT_EQ(post.decode, FilterHeadersStatus::kContinue);
  post.Respond(200, {{"cache-control", "max-age=60"}}, "x");
  EXPECT_EQ(post.response_headers->GetOr("x-portway-cache", ""), "BYPASS");
}

TEST_F(CacheFilterTest, LastGoodKeepsResponsesWithoutFreshnessForFailuresOnly) {
  config_.set_last_good(true);
  Prime("/api", {{"content-type", "application/json"}}, "{}");
  Stream again = Get("/api");
  EXPECT_EQ(again.decode, FilterHeadersStatus::kContinue);  // never a hit
  EXPECT_EQ(again.Fail(http::ErrorCause::kUpstreamTimeout, 504),
            FilterHeadersStatus::kStopIteration);
  EXPECT_EQ(again.callbacks->Header("x-portway-cache"), "STALE; cause=upstream_timeout");
  EXPECT_EQ(again.Body(), "{}");
}

TEST_F(CacheFilterTest, ObjectsOverTheLimitStreamPastTheStore) {
  config_.mutable_max_object_bytes()->set_value(8);
  Prime("/big", {{"cache-control", "max-age=60"}}, "0123456789");
  Prime("/small", {{"cache-control", "max-age=60"}}, "01234567");
  EXPECT_EQ(Get("/big").decode, FilterHeadersStatus::kContinue);
  EXPECT_EQ(Get("/small").decode, FilterHeadersStatus::kStopIteration);
  // Announced too big: not teed at all.
  Stream s = Get("/announced");
  s.Respond(200, {{"cache-control", "max-age=60"}, {"content-length", "100"}}, "x");
  EXPECT_EQ(Get("/announced").decode, FilterHeadersStatus::kContinue);
}

TEST_F(CacheFilterTest, VaryKeepsOneCopyPerVariant) {
  Stream gz = Get("/v", {{"accept-encoding", "gzip"}});
  gz.Respond(200, {{"cache-control", "max-age=60"}, {"vary", "Accept-Encoding"}}, "gzipped");
  Stream br = Get("/v", {{"accept-encoding", "br"}});
  EXPECT_EQ(br.decode, FilterHeadersStatus::kContinue);
  br.Respond(200, {{"cache-control", "max-age=60"}, {"vary", "Accept-Encoding"}}, "brotli");
  Stream gz2 = Get("/v", {{"accept-encoding", "gzip"}});
  EXPECT_EQ(gz2.Body(), "gzipped");
  Stream br2 = Get("/v", {{"accept-encoding", "br"}});
  EXPECT_EQ(br2.Body(), "brotli");
  EXPECT_EQ(Get("/v").decode, FilterHeadersStatus::kContinue);
}

TEST_F(CacheFilterTest, ClientConditionalsAndHeadAreAnsweredFromTheCopy) {
  Prime("/a", {{"cache-control", "max-age=60"}, {"etag", "W/\"1\""}}, "hello");
  Stream cond = Get("/a", {{"if-none-match", "\"1\""}});
  EXPECT_EQ(cond.callbacks->response.headers->Status(), 304);
  EXPECT_EQ(cond.Body(), "");
  Stream head = Get("/a", {}, "HEAD");
  EXPECT_EQ(head.callbacks->response.headers->Status(), 200);
  EXPECT_EQ(head.callbacks->Header("content-length"), "5");
  EXPECT_EQ(head.Body(), "");
  // A client that wants it revalidated goes upstream.
  Stream nocache = Get("/a", {{"cache-control", "no-cache"}});
  EXPECT_EQ(nocache.decode, FilterHeadersStatus::kContinue);
}

TEST_F(CacheFilterTest, AnUnsafeRequestInvalidatesTheUrl) {
  Prime("/a", {{"cache-control", "max-age=60"}}, "x");
  Stream put = Get("/a", {}, "PUT");
  put.Respond(204, {}, "");
  EXPECT_EQ(Get("/a").decode, FilterHeadersStatus::kContinue);
}

TEST_F(CacheFilterTest, ConcurrentMissesWaitForOneFetch) {
  poster_ = std::make_shared<test::FakePoster>(dispatcher_);
  Stream leader = Get("/a");
  EXPECT_EQ(leader.decode, FilterHeadersStatus::kContinue);
  Stream waiter = Get("/a");
  EXPECT_EQ(waiter.decode, FilterHeadersStatus::kStopIteration);
  EXPECT_EQ(waiter.callbacks->continued, 0);
  leader.Respond(200, {{"cache-control", "max-age=60"}}, "one fetch");
  dispatcher_.RunPending();
  EXPECT_TRUE(waiter.callbacks->answered);
  EXPECT_EQ(waiter.Body(), "one fetch");
  EXPECT_EQ(waiter.callbacks->continued, 0);

  // A fetch whose answer cannot be stored sends its waiters upstream.
  Stream leader2 = Get("/b");
  Stream waiter2 = Get("/b");
  EXPECT_EQ(waiter2.decode, FilterHeadersStatus::kStopIteration);
  leader2.Respond(200, {{"cache-control", "no-store"}}, "x");
  dispatcher_.RunPending();
  EXPECT_EQ(waiter2.callbacks->continued, 1);

  // A waiter gives up after coalesce_timeout.
  Stream leader3 = Get("/c");
  Stream waiter3 = Get("/c");
  Advance(milliseconds(4999));
  EXPECT_EQ(waiter3.callbacks->continued, 0);
  Advance(milliseconds(1));
  EXPECT_EQ(waiter3.callbacks->continued, 1);
  leader3.filter->OnDestroy();
}

TEST_F(CacheFilterTest, StaleWhileRevalidateAnswersAtOnceAndRefreshesBehind) {
  poster_ = std::make_shared<test::FakePoster>(dispatcher_);
  Prime("/a", {{"cache-control", "max-age=1, stale-while-revalidate=60"}, {"etag", "\"v1\""}},
        "old");
  Advance(seconds(10));
  Stream s = Get("/a");
  EXPECT_EQ(s.decode, FilterHeadersStatus::kStopIteration);
  EXPECT_EQ(s.Body(), "old");
  EXPECT_EQ(s.callbacks->Header("x-portway-cache"), "STALE; cause=stale_while_revalidate");
  ASSERT_EQ(s.callbacks->side_requests.size(), 1u);
  auto& side = s.callbacks->side_requests[0];
  EXPECT_EQ(side.headers->GetOr("if-none-match", ""), "\"v1\"");
  EXPECT_EQ(side.headers->Path(), "/a");
  // A second request meanwhile is answered too, without a second refresh.
  Stream t = Get("/a");
  EXPECT_EQ(t.Body(), "old");
  EXPECT_TRUE(t.callbacks->side_requests.empty());
  // The stream is long gone when the refresh comes back.
  s.filter->OnDestroy();
  s.filter.reset();
  http::SideResponse r;
  r.headers = std::make_unique<http::HeaderMap>();
  r.headers->Add(":status", "200");
  r.headers->Add("cache-control", "max-age=100");
  r.body = "new";
  side.done(std::move(r));
  Stream hit = Get("/a");
  EXPECT_EQ(hit.callbacks->Header("x-portway-cache"), "HIT");
  EXPECT_EQ(hit.Body(), "new");
  // Past the window: revalidated before it is served.
  Advance(seconds(200));
  EXPECT_EQ(Get("/a").decode, FilterHeadersStatus::kContinue);
}

TEST_F(CacheFilterTest, AStaleAnswerToAFailureSaysWhyAndCarriesTheRequestId) {
  Prime("/a", {{"cache-control", "max-age=1"}}, "x");
  Advance(seconds(5));
  Stream s = Get("/a");
  s.callbacks->info.request_id = "req-7";
  s.Fail(http::ErrorCause::kUpstreamConnectTimeout, 504);
  EXPECT_EQ(s.callbacks->Header("x-request-id"), "req-7");
  EXPECT_EQ(s.callbacks->response.detail, "cache: stale copy served for upstream_connect_timeout");
  // A plain hit says nothing of the kind.
  Prime("/b", {{"cache-control", "max-age=60"}}, "y");
  Stream hit = Get("/b");
  EXPECT_EQ(hit.callbacks->Header("x-request-id"), "");
  EXPECT_EQ(hit.callbacks->response.detail, "");
}

TEST_F(CacheFilterTest, AWaiterAnsweredByTheCoreLetsGo) {
  poster_ = std::make_shared<test::FakePoster>(dispatcher_);
  Stream leader = Get("/a");
  Stream waiter = Get("/a");
  ASSERT_EQ(waiter.decode, FilterHeadersStatus::kStopIteration);
  // The stream's idle timeout answers while it waits: the held request is
  // gone, and the wake that follows must not touch it.
  http::HeaderMap timeout;
  timeout.Add(":status", "408");
  waiter.callbacks->info.local_reply = true;
  waiter.callbacks->info.cause = http::ErrorCause::kStreamIdleTimeout;
  EXPECT_EQ(waiter.filter->EncodeHeaders(timeout, true), FilterHeadersStatus::kContinue);
  leader.Respond(200, {{"cache-control", "max-age=60"}}, "body");
  dispatcher_.RunPending();
  Advance(seconds(10));
  EXPECT_EQ(waiter.callbacks->continued, 0);
  EXPECT_FALSE(waiter.callbacks->answered);
}

TEST_F(CacheFilterTest, AHeadRefreshesItsCopyWithAGet) {
  Prime("/a", {{"cache-control", "max-age=1, stale-while-revalidate=60"}}, "body");
  Advance(seconds(5));
  Stream head = Get("/a", {}, "HEAD");
  EXPECT_EQ(head.callbacks->Header("x-portway-cache"), "STALE; cause=stale_while_revalidate");
  ASSERT_EQ(head.callbacks->side_requests.size(), 1u);
  EXPECT_EQ(head.callbacks->side_requests[0].headers->Method(), "GET");
}

TEST_F(CacheFilterTest, ConfigErrorsNameTheField) {
  CacheFactory factory;
  v1::Cache bad;
  bad.add_serve_stale_on("502");
  bad.add_serve_stale_on("sometimes");
  EXPECT_EQ(factory.Create(bad).status().message().substr(0, 34),
            "serve_stale_on[1]: unknown \"someti");
  v1::Cache big;
  big.mutable_max_object_bytes()->set_value(10 << 20);
  EXPECT_EQ(factory.Create(big).status().message().substr(0, 17), "max_object_bytes:");
  v1::Cache redis;
  redis.mutable_store()->mutable_redis();
  EXPECT_EQ(factory.Create(redis).status().message().substr(0, 20), "store.redis.address:");
}

}  // namespace
}  // namespace portway::filters::cache
