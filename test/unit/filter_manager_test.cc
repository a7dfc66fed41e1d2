// The filter chain's iteration model, with scripted filters and a recording
// stream.
#include "core/http/filter_manager.h"

#include <algorithm>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/event/dispatcher.h"
#include "test/unit/fake_gateway.h"

#include "gtest/gtest.h"

namespace portway::http {
namespace {

// Records what reaches the ends of the chain.
class Sink : public FilterManagerCallbacks {
 public:
  Sink() : dispatcher_(event::Dispatcher::Create("test")) {}
  void DecodeHeadersToRouter(HeaderMapPtr headers, bool end_stream) override {
    log.push_back("router:headers" + std::string(end_stream ? ":end" : ""));
    request_headers = std::move(headers);
  }
  void DecodeDataToRouter(Buffer& data, bool end_stream) override {
    log.push_back("router:data:" + data.ToString() + (end_stream ? ":end" : ""));
    data.Clear();
  }
  void DecodeTrailersToRouter(HeaderMapPtr) override { log.push_back("router:trailers"); }
  void EncodeHeadersToCodec(HeaderMapPtr headers, bool end_stream) override {
    log.push_back("codec:headers:" + std::to_string(headers->Status()) +
                  (end_stream ? ":end" : ""));
    response_headers = std::move(headers);
    head_sent = true;
  }
  void EncodeDataToCodec(Buffer& data, bool end_stream) override {
    log.push_back("codec:data:" + data.ToString() + (end_stream ? ":end" : ""));
    data.Clear();
  }
  void EncodeTrailersToCodec(HeaderMapPtr) override { log.push_back("codec:trailers"); }
  void OnFilterLocalReply(int status, std::string_view body, std::string_view error) override {
    log.push_back("local_reply:" + std::to_string(status) + ":" + std::string(error));
  }
  void OnFilterErrorReply(ErrorCause cause, std::string_view detail) override {
    log.push_back("error_reply:" + std::to_string(static_cast<int>(cause)) + ":" +
                  std::string(detail));
  }
  bool OnFilterResponse(std::string_view) override {
    log.push_back("filter_response");
    if (head_sent) return false;
    info.cause = ErrorCause::kNone;
    info.local_reply = false;
    return true;
  }
  std::shared_ptr<WorkerPoster> Worker() override { return nullptr; }
  void SendSideRequest(HeaderMapPtr headers, size_t, SideResponseCallback done) override {
    log.push_back("side_request:" + std::string(headers->Path()));
    side_done = std::move(done);
  }
  SideResponseCallback side_done;
  bool head_sent = false;
  void OnBufferOverflow(bool request) override {
    log.push_back(request ? "overflow:request" : "overflow:response");
  }
  void PauseSource(bool request, bool pause) override {
    log.push_back(std::string("pause:") + (request ? "request:" : "response:") +
                  (pause ? "on" : "off"));
  }
  StreamInfo& Info() override { return info; }
  event::Dispatcher& Dispatcher() override { return *dispatcher_; }
  size_t BufferLimit() const override { return limit; }
  const GatewayView& Gateway() override { return gateway; }
  test::FakeGateway gateway;
  void EnableRequestReplay(size_t max_body_bytes) override { replay = max_body_bytes; }
  void SetPerTryTimeout(std::chrono::milliseconds timeout) override { per_try = timeout; }
  void SetUpstreamLimits(const UpstreamLimits& l) override { limits = l; }
  void SetUpstreamCluster(std::string_view cluster) override { info.cluster = cluster; }
  UpstreamLimits limits;
  size_t replay = 0;
  std::chrono::milliseconds per_try{0};

  std::vector<std::string> log;
  HeaderMapPtr request_headers;
  HeaderMapPtr response_headers;
  StreamInfo info;
  size_t limit = 1024;

 private:
  event::DispatcherPtr dispatcher_;
};

// A filter whose answers are scripted per phase, recording what it saw.
class Scripted : public Filter {
 public:
  Scripted(std::string name, std::vector<std::string>* log) : name_(std::move(name)), log_(log) {}
  void SetCallbacks(FilterCallbacks& callbacks) override { callbacks_ = &callbacks; }
  FilterHeadersStatus DecodeHeaders(HeaderMap& headers, bool) override {
    log_->push_back(name_ + ":decode_headers");
    if (throw_in_decode_headers) throw std::runtime_error("boom");
    headers.Add("x-seen-by", name_);
    if (on_decode_headers) on_decode_headers();
    return stop_decode_headers ? FilterHeadersStatus::kStopIteration
                               : FilterHeadersStatus::kContinue;
  }
  FilterDataStatus DecodeData(Buffer& data, bool end_stream) override {
    log_->push_back(name_ + ":decode_data:" + data.ToString() + (end_stream ? ":end" : ""));
    if (buffer_request_until_end && !end_stream) return FilterDataStatus::kStopIterationAndBuffer;
    return FilterDataStatus::kContinue;
  }
  FilterTrailersStatus DecodeTrailers(HeaderMap&) override {
    log_->push_back(name_ + ":decode_trailers");
    return FilterTrailersStatus::kContinue;
  }
  FilterHeadersStatus EncodeHeaders(HeaderMap& headers, bool) override {
    log_->push_back(name_ + ":encode_headers:" + std::to_string(headers.Status()));
    if (on_encode_headers) on_encode_headers();
    return stop_encode_headers ? FilterHeadersStatus::kStopIteration
                               : FilterHeadersStatus::kContinue;
  }
  FilterDataStatus EncodeData(Buffer& data, bool end_stream) override {
    log_->push_back(name_ + ":encode_data:" + data.ToString() + (end_stream ? ":end" : ""));
    return buffer_response ? FilterDataStatus::kStopIterationAndBuffer
                           : FilterDataStatus::kContinue;
  }
  UpstreamResultStatus OnUpstreamResult(UpstreamResult&) override {
    log_->push_back(name_ + ":upstream_result");
    if (on_upstream_result) on_upstream_result();
    return retry ? UpstreamResultStatus::kRetry : UpstreamResultStatus::kContinue;
  }
  void OnStreamComplete(const StreamInfo&) override { log_->push_back(name_ + ":complete"); }
  void OnDestroy() override { log_->push_back(name_ + ":destroy"); }
  uint32_t Phases() const override { return phases; }

  FilterCallbacks* callbacks_ = nullptr;
  uint32_t phases = Phase::kAll;
  bool stop_decode_headers = false;
  bool throw_in_decode_headers = false;
  bool buffer_request_until_end = false;
  bool buffer_response = false;
  bool stop_encode_headers = false;
  bool retry = false;
  std::function<void()> on_decode_headers;
  std::function<void()> on_encode_headers;
  std::function<void()> on_upstream_result;

 private:
  std::string name_;
  std::vector<std::string>* log_;
};

class FilterManagerTest : public ::testing::Test {
 protected:
  Scripted* Add(const std::string& name) {
    auto f = std::make_unique<Scripted>(name, &sink_.log);
    Scripted* raw = f.get();
    pending_.push_back(std::move(f));
    return raw;
  }
  void Start() { manager_ = std::make_unique<FilterManager>(sink_, std::move(pending_)); }
  static HeaderMapPtr Request() {
    auto h = std::make_unique<HeaderMap>();
    h->Add(":method", "POST");
    h->Add(":path", "/");
    return h;
  }
  static HeaderMapPtr Response(int status) {
    auto h = std::make_unique<HeaderMap>();
    h->Add(":status", std::to_string(status));
    return h;
  }
  void Data(std::string s, bool end) {
    Buffer b;
    b.Add(s);
    manager_->DecodeData(b, end);
  }

  Sink sink_;
  std::vector<FilterPtr> pending_;
  std::unique_ptr<FilterManager> manager_;
};

using Log = std::vector<std::string>;

TEST_F(FilterManagerTest, RequestFlowsInOrderAndResponseInReverse) {
  Add("a");
  Add("b");
  Start();
  manager_->DecodeHeaders(Request(), false);
  Data("x", true);
  manager_->EncodeHeaders(Response(200), true);
  EXPECT_EQ(sink_.log,
            (Log{"a:decode_headers", "b:decode_headers", "router:headers", "a:decode_data:x:end",
                 "b:decode_data:x:end", "router:data:x:end", "b:encode_headers:200",
                 "a:encode_headers:200", "codec:headers:200:end"}));
  // Both filters could change what went upstream.
  EXPECT_EQ(sink_.request_headers->size(), 4u);
}

TEST_F(FilterManagerTest, StoppedHeadersHoldTheBodyUntilContinue) {
  Scripted* a = Add("a");
  Add("b");
  a->stop_decode_headers = true;
  Start();
  manager_->DecodeHeaders(Request(), false);
  Data("1", false);
  Data("2", true);
  EXPECT_EQ(sink_.log, (Log{"a:decode_headers"}));
  sink_.log.clear();
  a->callbacks_->Continue();
  // Headers go on from the next filter; the body waited and now enters at
  // the first filter, in order.
  EXPECT_EQ(sink_.log, (Log{"b:decode_headers", "router:headers", "a:decode_data:1",
                            "b:decode_data:1", "router:data:1", "a:decode_data:2:end",
                            "b:decode_data:2:end", "router:data:2:end"}));
}

TEST_F(FilterManagerTest, AFilterKeepingTheBodySeesEveryChunkAndReleasesItWhole) {
  Scripted* a = Add("a");
  Add("b");
  a->buffer_request_until_end = true;
  Start();
  manager_->DecodeHeaders(Request(), false);
  Data("he", false);
  Data("ll", false);
  Data("o", true);
  EXPECT_EQ(sink_.log, (Log{"a:decode_headers", "b:decode_headers", "router:headers",
                            "a:decode_data:he", "a:decode_data:ll", "a:decode_data:o:end",
                            "b:decode_data:hello:end", "router:data:hello:end"}));
}

TEST_F(FilterManagerTest, KeptBodyOverTheLimitIsAnOverflow) {
  Scripted* a = Add("a");
  a->buffer_request_until_end = true;
  sink_.limit = 4;
  Start();
  manager_->DecodeHeaders(Request(), false);
  Data("abc", false);
  EXPECT_EQ(sink_.log.back(), "a:decode_data:abc");
  Data("de", false);
  EXPECT_EQ(sink_.log.back(), "overflow:request");
}

TEST_F(FilterManagerTest, QueuedBodyOverTheLimitPausesTheClient) {
  Scripted* a = Add("a");
  a->stop_decode_headers = true;
  sink_.limit = 4;
  Start();
  manager_->DecodeHeaders(Request(), false);
  Data("abc", false);
  Data("de", false);
  EXPECT_EQ(sink_.log.back(), "pause:request:on");
  a->callbacks_->Continue();
  EXPECT_EQ(sink_.log.back(), "pause:request:off");
}

TEST_F(FilterManagerTest, LocalReplyStopsTheRequestAndSkipsLaterFilters) {
  Scripted* a = Add("a");
  Add("b");
  a->stop_decode_headers = true;
  Start();
  manager_->DecodeHeaders(Request(), false);
  a->callbacks_->SendLocalReply(403, "no", "denied");
  Data("late", true);  // dropped: the request direction is over
  EXPECT_EQ(sink_.log, (Log{"a:decode_headers", "local_reply:403:denied"}));
}

TEST_F(FilterManagerTest, ResponseBodyCanBeKeptByAFilter) {
  Scripted* a = Add("a");
  Start();
  manager_->DecodeHeaders(Request(), true);
  manager_->EncodeHeaders(Response(200), false);
  a->buffer_response = true;
  Buffer b1, b2;
  b1.Add("x");
  b2.Add("y");
  manager_->EncodeData(b1, false);
  manager_->EncodeData(b2, true);
  EXPECT_EQ(sink_.log.back(), "a:encode_data:y:end");
  a->buffer_response = false;
  a->callbacks_->Continue();
  EXPECT_EQ(sink_.log.back(), "codec:data:xy:end");
}

TEST_F(FilterManagerTest, CompleteCallsEveryFilterOnceThenStopsIteration) {
  Add("a");
  Add("b");
  Start();
  manager_->DecodeHeaders(Request(), false);
  sink_.log.clear();
  manager_->Complete(sink_.info);
  manager_->Complete(sink_.info);
  Data("after", true);
  EXPECT_EQ(sink_.log, (Log{"a:complete", "b:complete", "a:destroy", "b:destroy"}));
}

TEST_F(FilterManagerTest, AFilterThatThrowsGetsA500AndIsNotCalledAgain) {
  Scripted* a = Add("a");
  Add("b");
  a->throw_in_decode_headers = true;
  Start();
  manager_->DecodeHeaders(Request(), false);
  Data("late", true);
  EXPECT_EQ(sink_.log, (Log{"a:decode_headers", "local_reply:500:filter_exception"}));
  sink_.log.clear();
  manager_->Complete(sink_.info);
  // Completion still reaches every filter.
  EXPECT_EQ(sink_.log, (Log{"a:complete", "b:complete", "a:destroy", "b:destroy"}));
}

TEST_F(FilterManagerTest, TimersLetAFilterResumeLater) {
  Scripted* a = Add("a");
  a->stop_decode_headers = true;
  Start();
  manager_->DecodeHeaders(Request(), true);
  std::unique_ptr<FilterTimer> timer =
      a->callbacks_->CreateTimer([&] { a->callbacks_->Continue(); });
  timer->Enable(std::chrono::milliseconds(5));
  auto stop = sink_.Dispatcher().CreateTimer([&] { sink_.Dispatcher().Exit(); });
  stop->Enable(std::chrono::milliseconds(200));
  sink_.Dispatcher().Run();
  EXPECT_EQ(sink_.log.back(), "router:headers:end");
}

// FilterCallbacks::Gateway() is the stream's worker's view, live: a drain
// that starts after the filter got its callbacks shows at its next look.
TEST_F(FilterManagerTest, GatewayIsTheWorkersViewOfTheGateway) {
  Scripted* a = Add("a");
  Start();
  sink_.gateway.SetCluster("backend", 4, 3);
  const GatewayView& gateway = a->callbacks_->Gateway();
  EXPECT_EQ(&gateway, &sink_.gateway);
  EXPECT_FALSE(gateway.Draining());
  sink_.gateway.draining = true;
  EXPECT_TRUE(gateway.Draining());
  EXPECT_EQ(gateway.GetClusterHealth("backend").usable, 3u);
  EXPECT_FALSE(gateway.GetClusterHealth("other").known);
}

// A filter is called only in the phases it declares; a chain where nobody
// wants the response body hands it straight to the codec.
TEST_F(FilterManagerTest, PhasesAFilterDoesNotDeclareAreSkipped) {
  Scripted* a = Add("a");
  Scripted* b = Add("b");
  a->phases = Phase::kDecodeHeaders | Phase::kStreamComplete;
  b->phases = Phase::kEncodeHeaders | Phase::kDestroy;
  Start();
  manager_->DecodeHeaders(Request(), true);
  manager_->EncodeHeaders(Response(200), false);
  Buffer body;
  body.Add("hi");
  manager_->EncodeData(body, true);
  manager_->Complete(sink_.info);
  EXPECT_EQ(sink_.log, (Log{"a:decode_headers", "router:headers:end", "b:encode_headers:200",
                            "codec:headers:200", "codec:data:hi:end", "a:complete", "b:destroy"}));
}

// Chains longer than the inline states, built one filter at a time past
// the announced size: every filter runs, in order, and is destroyed once.
TEST_F(FilterManagerTest, LongChainsGrowPastTheInlineStates) {
  FilterManager manager(sink_, 2);
  for (int i = 0; i < 7; ++i) {
    manager.Add(std::make_unique<Scripted>("f" + std::to_string(i), &sink_.log));
  }
  manager.Start();
  manager.DecodeHeaders(Request(), true);
  Log want;
  for (int i = 0; i < 7; ++i) want.push_back("f" + std::to_string(i) + ":decode_headers");
  want.push_back("router:headers:end");
  EXPECT_EQ(sink_.log, want);
  manager.Complete(sink_.info);
  EXPECT_EQ(std::count(sink_.log.begin(), sink_.log.end(), "f6:destroy"), 1);
}

FilterResponse Answer(int status, std::string body) {
  FilterResponse r;
  r.headers = std::make_unique<HeaderMap>();
  r.headers->Add(":status", std::to_string(status));
  r.body.Add(body);
  return r;
}

// A filter that answers in the request phase (a cache hit): nothing goes
// upstream, later filters never see the request, and the answer passes
// through the encode phases of the filters before it only.
TEST_F(FilterManagerTest, AnAnswerInTheRequestPhaseSkipsTheUpstreamAndLaterFilters) {
  Add("a");
  Scripted* b = Add("b");
  Add("c");
  bool sent = false;
  b->on_decode_headers = [&] { sent = b->callbacks_->SendResponse(Answer(200, "hit")); };
  Start();
  manager_->DecodeHeaders(Request(), false);
  Data("late", true);  // the request direction is over
  EXPECT_TRUE(sent);
  EXPECT_EQ(sink_.log,
            (Log{"a:decode_headers", "b:decode_headers", "filter_response", "a:encode_headers:200",
                 "codec:headers:200", "a:encode_data:hit:end", "codec:data:hit:end"}));
  ASSERT_EQ(sink_.info.decisions.size(), 1u);
  EXPECT_EQ(sink_.info.decisions[0].decision, "answered 200");
  // It is not an error: nothing was counted as a local reply.
  EXPECT_EQ(sink_.info.cause, ErrorCause::kNone);
}

// A filter that replaces the response it is given (a stale copy for a
// 502): the upstream's head goes no further, its body is dropped, and the
// outer filters see only the replacement.
TEST_F(FilterManagerTest, AnAnswerInEncodeHeadersReplacesTheUpstreamResponse) {
  Add("a");
  Scripted* b = Add("b");
  Add("c");
  b->on_encode_headers = [&] {
    if (sink_.log.back() == "b:encode_headers:502") {
      EXPECT_TRUE(b->callbacks_->SendResponse(Answer(200, "stale")));
    }
  };
  Start();
  manager_->DecodeHeaders(Request(), true);
  sink_.log.clear();
  manager_->EncodeHeaders(Response(502), false);
  Buffer bad;
  bad.Add("bad gateway");
  manager_->EncodeData(bad, true);
  EXPECT_EQ(sink_.log, (Log{"c:encode_headers:502", "b:encode_headers:502", "filter_response",
                            "a:encode_headers:200", "codec:headers:200", "a:encode_data:stale:end",
                            "codec:data:stale:end"}));
  EXPECT_TRUE(bad.empty());
}

// A filter that held the response head and answers later (after a lookup
// of its own): what the upstream sends meanwhile is dropped.
TEST_F(FilterManagerTest, AFilterHoldingTheResponseCanAnswerLater) {
  Add("a");
  Scripted* b = Add("b");
  b->stop_encode_headers = true;
  Start();
  manager_->DecodeHeaders(Request(), true);
  sink_.log.clear();
  manager_->EncodeHeaders(Response(503), false);
  Buffer body;
  body.Add("unavailable");
  manager_->EncodeData(body, false);
  // Held: the body waits behind the head.
  EXPECT_EQ(sink_.log, (Log{"b:encode_headers:503"}));
  sink_.log.clear();
  EXPECT_TRUE(b->callbacks_->SendResponse(Answer(200, "copy")));
  Buffer rest;
  rest.Add("more");
  manager_->EncodeData(rest, true);
  EXPECT_EQ(sink_.log, (Log{"filter_response", "a:encode_headers:200", "codec:headers:200",
                            "a:encode_data:copy:end", "codec:data:copy:end"}));
}

// Once the head went to the client it is too late: nothing changes.
TEST_F(FilterManagerTest, AnAnswerAfterTheHeadWentOutIsRefused) {
  Add("a");
  Scripted* b = Add("b");
  Start();
  manager_->DecodeHeaders(Request(), true);
  manager_->EncodeHeaders(Response(200), false);
  sink_.log.clear();
  EXPECT_FALSE(b->callbacks_->SendResponse(Answer(200, "late")));
  Buffer body;
  body.Add("origin");
  manager_->EncodeData(body, true);
  EXPECT_EQ(sink_.log, (Log{"filter_response", "b:encode_data:origin:end",
                            "a:encode_data:origin:end", "codec:data:origin:end"}));
}

// An answer from OnUpstreamResult ends the attempt: no retry is asked of
// the filters after it, and the answer is what the client gets.
TEST_F(FilterManagerTest, AnAnswerToAnUpstreamResultEndsTheAttempt) {
  Add("a");
  Scripted* b = Add("b");
  Scripted* c = Add("c");
  c->retry = true;
  b->on_upstream_result = [&] { b->callbacks_->SendResponse(Answer(200, "stale")); };
  Start();
  manager_->DecodeHeaders(Request(), true);
  sink_.log.clear();
  UpstreamResult result;
  result.kind = UpstreamResult::Kind::kConnectFailure;
  result.cause = ErrorCause::kUpstreamConnectRefused;
  EXPECT_EQ(manager_->OnUpstreamResult(result), UpstreamResultStatus::kContinue);
  EXPECT_EQ(sink_.log, (Log{"a:upstream_result", "b:upstream_result", "filter_response",
                            "a:encode_headers:200", "codec:headers:200", "a:encode_data:stale:end",
                            "codec:data:stale:end"}));
}

// A side request goes to the stream's side of the core with the filter's
// head, and its answer comes back to the filter's callback.
TEST_F(FilterManagerTest, ASideRequestReachesTheCoreAndAnswersTheFilter) {
  Scripted* a = Add("a");
  Start();
  manager_->DecodeHeaders(Request(), true);
  auto head = std::make_unique<HeaderMap>();
  head->Add(":method", "GET");
  head->Add(":path", "/refresh");
  int answered = 0;
  a->callbacks_->SendSideRequest(std::move(head), 1024, [&](SideResponse r) {
    ++answered;
    EXPECT_EQ(r.cause, ErrorCause::kUpstreamTimeout);
  });
  EXPECT_EQ(sink_.log.back(), "side_request:/refresh");
  ASSERT_TRUE(sink_.side_done);
  SideResponse failed;
  failed.cause = ErrorCause::kUpstreamTimeout;
  sink_.side_done(std::move(failed));
  EXPECT_EQ(answered, 1);
}

}  // namespace
}  // namespace portway::http
