// The filter chain's iteration model, with scripted filters and a recording
// stream.
#include "core/http/filter_manager.h"

#include <algorithm>
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
  FilterHeadersStatus EncodeHeaders(HeaderMap&, bool) override {
    log_->push_back(name_ + ":encode_headers");
    return FilterHeadersStatus::kContinue;
  }
  FilterDataStatus EncodeData(Buffer& data, bool end_stream) override {
    log_->push_back(name_ + ":encode_data:" + data.ToString() + (end_stream ? ":end" : ""));
    return buffer_response ? FilterDataStatus::kStopIterationAndBuffer
                           : FilterDataStatus::kContinue;
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
  EXPECT_EQ(sink_.log, (Log{"a:decode_headers", "b:decode_headers", "router:headers",
                            "a:decode_data:x:end", "b:decode_data:x:end", "router:data:x:end",
                            "b:encode_headers", "a:encode_headers", "codec:headers:200:end"}));
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
  EXPECT_EQ(sink_.log, (Log{"a:decode_headers", "router:headers:end", "b:encode_headers",
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

}  // namespace
}  // namespace portway::http
