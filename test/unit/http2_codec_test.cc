// The HTTP/2 codecs (core/http/http2): a client codec and a server codec
// piped into each other over in-memory connections, and the server codec
// fed hand-built frames for what a well-behaved client never sends
// (malformed requests, floods).
#include "core/http/http2/codec.h"

#include <nghttp2/nghttp2.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "test/unit/sim_dispatcher.h"

namespace portway::http::http2 {
namespace {

using test::FakeConnection;
using test::SimDispatcher;

class TestCounter final : public Counter {
 public:
  void Inc(uint64_t n) override { value_ += n; }
  uint64_t Value() const override { return value_; }

 private:
  uint64_t value_ = 0;
};

struct TestStats {
  TestCounter rx_reset, tx_reset, goaway_sent, goaway_received, protocol_errors, flood,
      header_overflow, streams_total;
  Http2Stats Pointers() {
    return Http2Stats{&rx_reset,        &tx_reset, &goaway_sent,     &goaway_received,
                      &protocol_errors, &flood,    &header_overflow, &streams_total};
  }
};

// What one side's decoder and stream callbacks saw.
struct Seen : public StreamCallbacks {
  HeaderMapPtr headers;
  std::string body;
  HeaderMapPtr trailers;
  bool end = false;
  int data_calls = 0;
  std::vector<StreamResetReason> resets;
  int above = 0;
  int below = 0;
  void OnResetStream(StreamResetReason reason, std::string_view) override {
    resets.push_back(reason);
  }
  void OnAboveWriteBufferHighWatermark() override { ++above; }
  void OnBelowWriteBufferLowWatermark() override { ++below; }
};

struct ServerStreamSeen : public Seen, public RequestDecoder {
  ResponseEncoder* encoder = nullptr;
  bool read_disable_on_headers = false;
  void DecodeHeaders(HeaderMapPtr h, bool end_stream) override {
    headers = std::move(h);
    end = end_stream;
    if (read_disable_on_headers) encoder->GetStream().ReadDisable(true);
  }
  void DecodeData(Buffer& data, bool end_stream) override {
    ++data_calls;
    body += data.ToString();
    data.Clear();
    end = end_stream;
  }
  void DecodeTrailers(HeaderMapPtr t) override {
    trailers = std::move(t);
    end = true;
  }
};

struct ClientStreamSeen : public Seen, public ResponseDecoder {
  RequestEncoder* encoder = nullptr;
  void DecodeHeaders(HeaderMapPtr h, bool end_stream) override {
    headers = std::move(h);
    end = end_stream;
  }
  void DecodeData(Buffer& data, bool end_stream) override {
    ++data_calls;
    body += data.ToString();
    data.Clear();
    end = end_stream;
  }
  void DecodeTrailers(HeaderMapPtr t) override {
    trailers = std::move(t);
    end = true;
  }
};

struct ServerCallbacks : public ServerConnectionCallbacks {
  std::vector<std::unique_ptr<ServerStreamSeen>> streams;
  std::vector<std::string> errors;
  bool read_disable_on_headers = false;
  RequestDecoder& NewStream(ResponseEncoder& encoder) override {
    auto seen = std::make_unique<ServerStreamSeen>();
    seen->encoder = &encoder;
    seen->read_disable_on_headers = read_disable_on_headers;
    encoder.GetStream().AddCallbacks(*seen);
    streams.push_back(std::move(seen));
    return *streams.back();
  }
  void OnProtocolError(const CodecError& error, ResponseEncoder* encoder) override {
    EXPECT_EQ(encoder, nullptr);
    errors.push_back(error.cause);
    if (on_error) on_error();
  }
  std::function<void()> on_error;
};

struct ClientCallbacks : public ClientConnectionCallbacks {
  std::vector<bool> done;
  int capacity_changed = 0;
  void OnStreamDone(bool reusable) override {
    done.push_back(reusable);
    if (on_done) on_done();
  }
  std::function<void()> on_done;
  void OnCapacityChanged() override { ++capacity_changed; }
};

HeaderMap RequestHeaders(std::string path = "/x") {
  HeaderMap h;
  h.Add(":method", "POST");
  h.Add(":path", path);
  h.Add(":authority", "example.com");
  h.Add(":scheme", "http");
  h.Add("x-test", "1");
  h.Add("connection", "keep-alive");  // dropped on the way
  return h;
}

HeaderMap ResponseHeaders(std::string status = "200") {
  HeaderMap h;
  h.Add(":status", status);
  h.Add("content-type", "text/plain");
  h.Add("transfer-encoding", "chunked");  // dropped on the way
  return h;
}

// ------------------------------------------------------------ piped

class Http2PipeTest : public ::testing::Test {
 protected:
  void SetUp() override { Start(Options(), Options()); }

  void Start(const Options& server_options, const Options& client_options) {
    server_.reset();
    client_.reset();
    server_stats_ = server_counters_.Pointers();
    client_stats_ = client_counters_.Pointers();
    server_ = std::make_unique<ServerConnectionImpl>(dispatcher_, server_conn_, server_callbacks_,
                                                     server_options, &server_stats_);
    client_ = std::make_unique<ClientConnectionImpl>(dispatcher_, client_conn_, client_callbacks_,
                                                     client_options, &client_stats_);
    client_->OnConnected();
    Pump();
  }

  // Moves bytes both ways until neither side writes; returns bytes the
  // client sent.
  size_t Pump() {
    size_t client_bytes = 0;
    for (int i = 0; i < 1000; ++i) {
      std::string to_server = client_conn_.TakeWritten();
      std::string to_client = server_conn_.TakeWritten();
      if (to_server.empty() && to_client.empty()) {
        dispatcher_.RunPending();
        to_server = client_conn_.TakeWritten();
        to_client = server_conn_.TakeWritten();
        if (to_server.empty() && to_client.empty()) break;
      }
      client_bytes += to_server.size();
      if (!to_server.empty() && server_) {
        Buffer b;
        b.Add(to_server);
        server_->Dispatch(b);
      }
      if (!to_client.empty() && client_) {
        Buffer b;
        b.Add(to_client);
        client_->Dispatch(b);
      }
    }
    return client_bytes;
  }

  ClientStreamSeen& StartRequest(bool end_stream) {
    auto seen = std::make_unique<ClientStreamSeen>();
    ClientStreamSeen& s = *seen;
    client_streams_.push_back(std::move(seen));
    s.encoder = &client_->NewStream(s);
    s.encoder->GetStream().AddCallbacks(s);
    s.encoder->EncodeHeaders(RequestHeaders("/" + std::to_string(client_streams_.size())),
                             end_stream);
    return s;
  }

  SimDispatcher dispatcher_;
  FakeConnection server_conn_{dispatcher_, network::Address(), 1};
  FakeConnection client_conn_{dispatcher_, network::Address(), 2};
  TestStats server_counters_, client_counters_;
  Http2Stats server_stats_, client_stats_;
  ServerCallbacks server_callbacks_;
  ClientCallbacks client_callbacks_;
  std::vector<std::unique_ptr<ClientStreamSeen>> client_streams_;
  std::unique_ptr<ServerConnectionImpl> server_;
  std::unique_ptr<ClientConnectionImpl> client_;
};

TEST_F(Http2PipeTest, Http2RoundTripWithBodyAndTrailers) {
  ClientStreamSeen& c = StartRequest(false);
  Buffer body;
  body.Add("hello ");
  c.encoder->EncodeData(body, false);
  body.Add("world");
  c.encoder->EncodeData(body, false);
  HeaderMap req_trailers;
  req_trailers.Add("x-checksum", "abc");
  c.encoder->EncodeTrailers(req_trailers);
  Pump();

  ASSERT_EQ(server_callbacks_.streams.size(), 1u);
  ServerStreamSeen& s = *server_callbacks_.streams[0];
  ASSERT_NE(s.headers, nullptr);
  EXPECT_EQ(s.headers->Method(), "POST");
  EXPECT_EQ(s.headers->Path(), "/1");
  EXPECT_EQ(s.headers->Authority(), "example.com");
  EXPECT_EQ(s.headers->GetOr(":scheme", ""), "http");
  EXPECT_EQ(s.headers->entries()[0].name, ":method");
  EXPECT_EQ(s.headers->GetOr("x-test", ""), "1");
  EXPECT_FALSE(s.headers->Has("connection"));
  EXPECT_EQ(s.body, "hello world");
  ASSERT_NE(s.trailers, nullptr);
  EXPECT_EQ(s.trailers->GetOr("x-checksum", ""), "abc");
  EXPECT_FALSE(server_->Idle());

  s.encoder->EncodeHeaders(ResponseHeaders(), false);
  Buffer response;
  response.Add("response body");
  s.encoder->EncodeData(response, false);
  HeaderMap resp_trailers;
  resp_trailers.Add("grpc-status", "0");
  s.encoder->EncodeTrailers(resp_trailers);
  Pump();

  ASSERT_NE(c.headers, nullptr);
  EXPECT_EQ(c.headers->Status(), 200);
  EXPECT_EQ(c.headers->GetOr("content-type", ""), "text/plain");
  EXPECT_FALSE(c.headers->Has("transfer-encoding"));
  EXPECT_EQ(c.body, "response body");
  ASSERT_NE(c.trailers, nullptr);
  EXPECT_EQ(c.trailers->GetOr("grpc-status", ""), "0");
  EXPECT_TRUE(c.resets.empty());
  EXPECT_TRUE(s.resets.empty());
  EXPECT_EQ(client_callbacks_.done, std::vector<bool>{true});
  EXPECT_EQ(client_->ActiveStreams(), 0u);
  dispatcher_.RunPending();
  EXPECT_TRUE(server_->Idle());
  EXPECT_EQ(server_counters_.streams_total.Value(), 1u);
  EXPECT_EQ(client_counters_.streams_total.Value(), 1u);
}

TEST_F(Http2PipeTest, Http2RequestEndingWithEmptyDataFrame) {
  ClientStreamSeen& c = StartRequest(false);
  Buffer empty;
  c.encoder->EncodeData(empty, true);
  Pump();
  ASSERT_EQ(server_callbacks_.streams.size(), 1u);
  ServerStreamSeen& s = *server_callbacks_.streams[0];
  EXPECT_TRUE(s.end);
  EXPECT_EQ(s.data_calls, 1);
  EXPECT_EQ(s.body, "");
}

TEST_F(Http2PipeTest, Http2ManyConcurrentStreamsInterleaved) {
  constexpr int kStreams = 20;
  for (int i = 0; i < kStreams; ++i) StartRequest(false);
  // Bodies sent in rounds, one piece per stream per round.
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < kStreams; ++i) {
      Buffer piece;
      piece.Add("s" + std::to_string(i) + "r" + std::to_string(round) + ";");
      client_streams_[i]->encoder->EncodeData(piece, round == 2);
    }
    Pump();
  }
  ASSERT_EQ(server_callbacks_.streams.size(), static_cast<size_t>(kStreams));
  EXPECT_EQ(client_->ActiveStreams(), static_cast<uint32_t>(kStreams));
  // Answered in reverse order, each echoing its path and body.
  for (int i = kStreams - 1; i >= 0; --i) {
    ServerStreamSeen& s = *server_callbacks_.streams[i];
    EXPECT_TRUE(s.end);
    s.encoder->EncodeHeaders(ResponseHeaders(), false);
    Buffer echo;
    echo.Add(std::string(s.headers->Path()) + "|" + s.body);
    s.encoder->EncodeData(echo, true);
  }
  Pump();
  for (int i = 0; i < kStreams; ++i) {
    ClientStreamSeen& c = *client_streams_[i];
    std::string n = std::to_string(i);
    EXPECT_EQ(c.body, "/" + std::to_string(i + 1) + "|s" + n + "r0;s" + n + "r1;s" + n + "r2;");
    EXPECT_TRUE(c.end);
  }
  EXPECT_EQ(client_callbacks_.done.size(), static_cast<size_t>(kStreams));
  EXPECT_EQ(client_->ActiveStreams(), 0u);
}

TEST_F(Http2PipeTest, Http2PeerResetReachesServerStreamButNotTheResetter) {
  ClientStreamSeen& c = StartRequest(false);
  Pump();
  ASSERT_EQ(server_callbacks_.streams.size(), 1u);
  c.encoder->GetStream().ResetStream(StreamResetReason::kLocalReset);
  EXPECT_TRUE(c.resets.empty());  // the owner asked: not told
  EXPECT_EQ(client_callbacks_.done, std::vector<bool>{true});
  EXPECT_EQ(client_->ActiveStreams(), 0u);
  Pump();
  ServerStreamSeen& s = *server_callbacks_.streams[0];
  EXPECT_EQ(s.resets, std::vector<StreamResetReason>{StreamResetReason::kRemoteReset});
  EXPECT_EQ(server_counters_.rx_reset.Value(), 1u);
  EXPECT_EQ(client_counters_.tx_reset.Value(), 1u);
  dispatcher_.RunPending();
  EXPECT_TRUE(server_->Idle());
}

TEST_F(Http2PipeTest, Http2RefusedStreamIsTold) {
  ClientStreamSeen& c = StartRequest(true);
  Pump();
  ASSERT_EQ(server_callbacks_.streams.size(), 1u);
  server_callbacks_.streams[0]->encoder->GetStream().ResetStream(StreamResetReason::kRefusedStream);
  EXPECT_TRUE(server_callbacks_.streams[0]->resets.empty());
  Pump();
  EXPECT_EQ(c.resets, std::vector<StreamResetReason>{StreamResetReason::kRefusedStream});
  EXPECT_EQ(client_callbacks_.done, std::vector<bool>{true});
}

TEST_F(Http2PipeTest, Http2GoAwayResetsUnprocessedStreamsAndZeroesCapacity) {
  EXPECT_EQ(client_->StreamCapacity(), 100u);
  ClientStreamSeen& first = StartRequest(true);
  Pump();
  ASSERT_EQ(server_callbacks_.streams.size(), 1u);
  // The second request is on the wire while the server drains.
  ClientStreamSeen& second = StartRequest(true);
  std::string in_flight = client_conn_.TakeWritten();
  server_->StartDrain();
  EXPECT_TRUE(server_->WantsClose());
  server_->StartDrain();  // the final GOAWAY now, last stream id 1
  int changed = client_callbacks_.capacity_changed;
  Buffer b;
  b.Add(server_conn_.TakeWritten());
  client_->Dispatch(b);
  EXPECT_EQ(second.resets, std::vector<StreamResetReason>{StreamResetReason::kGoAway});
  EXPECT_TRUE(first.resets.empty());
  EXPECT_EQ(client_->StreamCapacity(), 0u);
  EXPECT_GT(client_callbacks_.capacity_changed, changed);
  EXPECT_EQ(client_counters_.goaway_received.Value(), 2u);
  // The stream the server took still completes.
  server_callbacks_.streams[0]->encoder->EncodeHeaders(ResponseHeaders(), true);
  Pump();
  ASSERT_NE(first.headers, nullptr);
  EXPECT_TRUE(first.end);
  ASSERT_EQ(client_callbacks_.done.size(), 2u);
  EXPECT_FALSE(client_callbacks_.done[1]);  // after a GOAWAY: not reusable
  EXPECT_EQ(server_callbacks_.streams.size(), 1u);
}

TEST_F(Http2PipeTest, Http2ReadDisabledStreamStopsAtTheWindowAndResumes) {
  server_callbacks_.read_disable_on_headers = true;
  ClientStreamSeen& c = StartRequest(false);
  Buffer big;
  big.Add(std::string(200000, 'a'));
  c.encoder->EncodeData(big, true);
  EXPECT_EQ(c.above, 1);  // 200000 unsent bytes > 65536
  size_t sent = Pump();
  ASSERT_EQ(server_callbacks_.streams.size(), 1u);
  ServerStreamSeen& s = *server_callbacks_.streams[0];
  EXPECT_EQ(s.body.size(), 0u);
  // Nothing acknowledged: the client stopped at the 65535-byte window.
  EXPECT_LT(sent, 65535u + 2000u);
  EXPECT_GE(sent, 65535u);
  EXPECT_EQ(c.below, 0);

  s.encoder->GetStream().ReadDisable(false);
  Pump();
  EXPECT_EQ(s.body.size(), 200000u);
  EXPECT_TRUE(s.end);
  EXPECT_EQ(c.below, 1);
}

TEST_F(Http2PipeTest, Http2ReadDisableNests) {
  server_callbacks_.read_disable_on_headers = true;
  ClientStreamSeen& c = StartRequest(false);
  Buffer body;
  body.Add("abc");
  c.encoder->EncodeData(body, true);
  Pump();
  ServerStreamSeen& s = *server_callbacks_.streams[0];
  s.encoder->GetStream().ReadDisable(true);
  s.encoder->GetStream().ReadDisable(false);
  Pump();
  EXPECT_EQ(s.body, "");
  s.encoder->GetStream().ReadDisable(false);
  Pump();
  EXPECT_EQ(s.body, "abc");
  EXPECT_TRUE(s.end);
}

TEST_F(Http2PipeTest, Http2ResponseOverBufferLimitRaisesWatermarkUntilWindowUpdate) {
  ClientStreamSeen& c = StartRequest(true);
  Pump();
  ServerStreamSeen& s = *server_callbacks_.streams[0];
  // The client does not consume: its window stays shut.
  c.encoder->GetStream().ReadDisable(true);
  s.encoder->EncodeHeaders(ResponseHeaders(), false);
  Buffer big;
  big.Add(std::string(150000, 'b'));
  s.encoder->EncodeData(big, true);
  EXPECT_EQ(s.above, 1);
  Pump();
  // 65535 went out; the rest (> 65536) waits.
  EXPECT_EQ(s.above, 1);
  EXPECT_EQ(s.below, 0);
  EXPECT_EQ(c.body.size(), 0u);
  c.encoder->GetStream().ReadDisable(false);
  Pump();
  EXPECT_EQ(c.body.size(), 150000u);
  EXPECT_EQ(s.below, 1);
  EXPECT_EQ(client_callbacks_.done, std::vector<bool>{true});
}

TEST_F(Http2PipeTest, Http2ResponseEndedWhileReadDisabledIsDeliveredBeforeDone) {
  ClientStreamSeen& c = StartRequest(true);
  Pump();
  c.encoder->GetStream().ReadDisable(true);
  ServerStreamSeen& s = *server_callbacks_.streams[0];
  s.encoder->EncodeHeaders(ResponseHeaders(), false);
  Buffer body;
  body.Add("tail");
  s.encoder->EncodeData(body, true);
  Pump();
  // nghttp2 closed the stream, but its body is still held for the decoder.
  EXPECT_EQ(c.body, "");
  EXPECT_TRUE(client_callbacks_.done.empty());
  EXPECT_EQ(client_->ActiveStreams(), 1u);
  c.encoder->GetStream().ReadDisable(false);
  Pump();
  EXPECT_EQ(c.body, "tail");
  EXPECT_TRUE(c.end);
  EXPECT_EQ(client_callbacks_.done, std::vector<bool>{true});
  EXPECT_EQ(client_->ActiveStreams(), 0u);
}

TEST_F(Http2PipeTest, Http2NothingIsWrittenWhileTheConnectionIsOverItsWatermark) {
  ClientStreamSeen& c = StartRequest(true);
  Pump();
  ServerStreamSeen& s = *server_callbacks_.streams[0];
  server_->OnAboveWriteBufferHighWatermark();
  s.encoder->EncodeHeaders(ResponseHeaders(), false);
  Buffer big;
  big.Add(std::string(70000, 'c'));
  s.encoder->EncodeData(big, true);
  EXPECT_EQ(server_conn_.written(), "");
  EXPECT_EQ(s.above, 1);  // the stream's own buffer holds it all
  server_->OnBelowWriteBufferLowWatermark();
  EXPECT_NE(server_conn_.written(), "");
  Pump();
  EXPECT_EQ(c.body.size(), 70000u);
  EXPECT_EQ(s.below, 1);
}

TEST_F(Http2PipeTest, Http2ClientGoAwayStopsNewStreamsAndLetsTheLastFinish) {
  ClientStreamSeen& c = StartRequest(true);
  Pump();
  client_->GoAway();
  EXPECT_EQ(client_->StreamCapacity(), 0u);
  Pump();
  EXPECT_EQ(server_counters_.goaway_received.Value(), 1u);
  EXPECT_TRUE(server_->WantsClose());
  server_callbacks_.streams[0]->encoder->EncodeHeaders(ResponseHeaders(), true);
  Pump();
  EXPECT_TRUE(c.end);
  EXPECT_EQ(client_callbacks_.done, std::vector<bool>{false});
}

TEST_F(Http2PipeTest, Http2ClientDropsInformationalHeads) {
  ClientStreamSeen& c = StartRequest(false);
  Pump();
  ServerStreamSeen& s = *server_callbacks_.streams[0];
  s.encoder->Encode100Continue();
  Pump();
  EXPECT_EQ(c.headers, nullptr);
  s.encoder->EncodeHeaders(ResponseHeaders("204"), true);
  Pump();
  ASSERT_NE(c.headers, nullptr);
  EXPECT_EQ(c.headers->Status(), 204);
  EXPECT_TRUE(c.end);
  // The request was still open: the client cancels the rest of it.
  EXPECT_EQ(client_callbacks_.done, std::vector<bool>{true});
}

TEST_F(Http2PipeTest, Http2ClientSendsOnlyWhatHttp2Allows) {
  auto seen = std::make_unique<ClientStreamSeen>();
  ClientStreamSeen& c = *seen;
  client_streams_.push_back(std::move(seen));
  c.encoder = &client_->NewStream(c);
  HeaderMap h;
  h.Add(":method", "GET");
  h.Add(":path", "/t");
  h.Add("host", "from-host.example");  // no :authority: host becomes it
  h.Add("te", "trailers");
  h.Add("connection", "x-hop");
  h.Add("x-hop", "dropped");  // named by Connection
  h.Add("keep-alive", "timeout=5");
  h.Add("upgrade", "websocket");
  h.AddLower("X-Mixed", "kept");  // lowercased on the wire
  c.encoder->EncodeHeaders(h, true);
  Pump();
  ASSERT_EQ(server_callbacks_.streams.size(), 1u);
  const HeaderMap& got = *server_callbacks_.streams[0]->headers;
  EXPECT_EQ(got.Authority(), "from-host.example");
  EXPECT_EQ(got.GetOr(":scheme", ""), "http");
  EXPECT_FALSE(got.Has("host"));
  EXPECT_EQ(got.GetOr("te", ""), "trailers");
  EXPECT_FALSE(got.Has("x-hop"));
  EXPECT_FALSE(got.Has("keep-alive"));
  EXPECT_FALSE(got.Has("upgrade"));
  EXPECT_EQ(got.GetOr("x-mixed", ""), "kept");
  EXPECT_EQ(server_counters_.protocol_errors.Value(), 0u);
}

TEST_F(Http2PipeTest, Http2ClientConnectionErrorResetsEveryStream) {
  ClientStreamSeen& a = StartRequest(true);
  ClientStreamSeen& b = StartRequest(true);
  Pump();
  // DATA on stream 0: a connection error (RFC 9113 6.1).
  Buffer bad;
  bad.Add(std::string("\0\0\x01\0\0\0\0\0\0x", 10));
  client_->Dispatch(bad);
  EXPECT_EQ(a.resets, std::vector<StreamResetReason>{StreamResetReason::kProtocolError});
  EXPECT_EQ(b.resets, std::vector<StreamResetReason>{StreamResetReason::kProtocolError});
  EXPECT_EQ(client_callbacks_.done, (std::vector<bool>{false, false}));
  EXPECT_EQ(client_->StreamCapacity(), 0u);
  EXPECT_EQ(client_->ActiveStreams(), 0u);
  EXPECT_EQ(client_counters_.goaway_sent.Value(), 1u);
}

TEST_F(Http2PipeTest, Http2OwnerMayDestroyTheClientCodecWhenAStreamIsDone) {
  StartRequest(true);
  StartRequest(true);
  Pump();
  client_callbacks_.on_done = [this] { client_.reset(); };
  for (auto& s : server_callbacks_.streams) s->encoder->EncodeHeaders(ResponseHeaders(), true);
  Pump();  // both responses arrive in one read; the first OnStreamDone destroys the codec
  EXPECT_EQ(client_, nullptr);
  EXPECT_EQ(client_callbacks_.done.size(), 1u);
  dispatcher_.RunPending();
}

TEST_F(Http2PipeTest, Http2PostedResumeOutlivedByItsCodecDoesNothing) {
  server_callbacks_.read_disable_on_headers = true;
  ClientStreamSeen& c = StartRequest(false);
  Buffer body;
  body.Add("held");
  c.encoder->EncodeData(body, true);
  Pump();
  server_callbacks_.streams[0]->encoder->GetStream().ReadDisable(false);  // posts the resume
  server_->OnConnectionClosed();
  server_.reset();
  dispatcher_.RunPending();
  EXPECT_EQ(server_callbacks_.streams[0]->body, "");
}

TEST_F(Http2PipeTest, Http2ConnectionCloseResetsClientStreams) {
  ClientStreamSeen& a = StartRequest(true);
  ClientStreamSeen& b = StartRequest(true);
  Pump();
  client_->OnConnectionClose(false, "");
  EXPECT_EQ(a.resets, std::vector<StreamResetReason>{StreamResetReason::kConnectionTermination});
  EXPECT_EQ(b.resets, std::vector<StreamResetReason>{StreamResetReason::kConnectionTermination});
  EXPECT_EQ(client_callbacks_.done, (std::vector<bool>{false, false}));
  server_->OnConnectionClosed();
  for (auto& s : server_callbacks_.streams) {
    EXPECT_EQ(s->resets, std::vector<StreamResetReason>{StreamResetReason::kConnectionTermination});
  }
  EXPECT_EQ(server_callbacks_.streams.size(), 2u);
}

// ------------------------------------------------------------ raw frames

std::string Frame(uint8_t type, uint8_t flags, uint32_t stream, std::string_view payload) {
  std::string f;
  size_t n = payload.size();
  f.push_back(static_cast<char>(n >> 16));
  f.push_back(static_cast<char>(n >> 8));
  f.push_back(static_cast<char>(n));
  f.push_back(static_cast<char>(type));
  f.push_back(static_cast<char>(flags));
  for (int shift : {24, 16, 8, 0}) f.push_back(static_cast<char>(stream >> shift));
  f.append(payload);
  return f;
}

struct ParsedFrame {
  uint8_t type;
  uint8_t flags;
  uint32_t stream;
  uint32_t code;  // RST_STREAM / GOAWAY error code
};

uint32_t Read32(std::string_view s, size_t at) {
  return (static_cast<uint32_t>(static_cast<uint8_t>(s[at])) << 24) |
         (static_cast<uint32_t>(static_cast<uint8_t>(s[at + 1])) << 16) |
         (static_cast<uint32_t>(static_cast<uint8_t>(s[at + 2])) << 8) |
         static_cast<uint32_t>(static_cast<uint8_t>(s[at + 3]));
}

std::vector<ParsedFrame> ParseFrames(std::string_view bytes) {
  std::vector<ParsedFrame> frames;
  size_t at = 0;
  while (at + 9 <= bytes.size()) {
    size_t len = (Read32(bytes, at) >> 8);
    ParsedFrame f{static_cast<uint8_t>(bytes[at + 3]), static_cast<uint8_t>(bytes[at + 4]),
                  Read32(bytes, at + 5) & 0x7fffffff, 0};
    if (f.type == NGHTTP2_RST_STREAM && len >= 4) f.code = Read32(bytes, at + 9);
    if (f.type == NGHTTP2_GOAWAY && len >= 8) f.code = Read32(bytes, at + 13);
    frames.push_back(f);
    at += 9 + len;
  }
  return frames;
}

class Http2RawTest : public ::testing::Test {
 protected:
  void SetUp() override {
    nghttp2_hd_deflate_new(&deflater_, 4096);
    Start(Options());
  }
  void TearDown() override { nghttp2_hd_deflate_del(deflater_); }

  void Start(const Options& options) {
    stats_ = counters_.Pointers();
    server_ =
        std::make_unique<ServerConnectionImpl>(dispatcher_, conn_, callbacks_, options, &stats_);
    Send(std::string(NGHTTP2_CLIENT_MAGIC) + Frame(NGHTTP2_SETTINGS, 0, 0, ""));
  }

  std::string Block(const std::vector<std::pair<std::string, std::string>>& fields) {
    std::vector<nghttp2_nv> nva;
    for (const auto& [name, value] : fields) {
      nva.push_back({reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
                     reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(),
                     value.size(), NGHTTP2_NV_FLAG_NONE});
    }
    std::string out(nghttp2_hd_deflate_bound(deflater_, nva.data(), nva.size()), '\0');
    ssize_t n = nghttp2_hd_deflate_hd(deflater_, reinterpret_cast<uint8_t*>(out.data()), out.size(),
                                      nva.data(), nva.size());
    out.resize(static_cast<size_t>(n));
    return out;
  }

  std::string Headers(uint32_t stream, bool end_stream,
                      std::vector<std::pair<std::string, std::string>> fields) {
    return Frame(NGHTTP2_HEADERS,
                 NGHTTP2_FLAG_END_HEADERS | (end_stream ? NGHTTP2_FLAG_END_STREAM : 0), stream,
                 Block(fields));
  }

  static std::vector<std::pair<std::string, std::string>> Get(std::string path = "/") {
    return {{":method", "GET"}, {":path", path}, {":scheme", "http"}, {":authority", "a"}};
  }

  void Send(const std::string& bytes) {
    Buffer b;
    b.Add(bytes);
    server_->Dispatch(b);
  }

  std::vector<ParsedFrame> Output() { return ParseFrames(conn_.TakeWritten()); }

  // By value: callers pass Output()'s temporary.
  static std::optional<ParsedFrame> FindFrame(const std::vector<ParsedFrame>& frames, uint8_t type,
                                              uint32_t stream = 0) {
    for (const ParsedFrame& f : frames) {
      if (f.type == type && (stream == 0 || f.stream == stream)) return f;
    }
    return std::nullopt;
  }

  nghttp2_hd_deflater* deflater_ = nullptr;
  SimDispatcher dispatcher_;
  FakeConnection conn_{dispatcher_, network::Address(), 1};
  TestStats counters_;
  Http2Stats stats_;
  ServerCallbacks callbacks_;
  std::unique_ptr<ServerConnectionImpl> server_;
};

TEST_F(Http2RawTest, Http2ServerSendsSettingsAndTakesHostAsAuthority) {
  Send(Headers(1, true,
               {{":method", "GET"},
                {":path", "/p"},
                {":scheme", "http"},
                {"host", "h.example"},
                {"cookie", "a=1"},
                {"cookie", "b=2"}}));
  auto frames = Output();
  ASSERT_FALSE(frames.empty());
  EXPECT_EQ(frames[0].type, NGHTTP2_SETTINGS);
  ASSERT_EQ(callbacks_.streams.size(), 1u);
  const HeaderMap& h = *callbacks_.streams[0]->headers;
  EXPECT_EQ(h.Authority(), "h.example");
  EXPECT_FALSE(h.Has("host"));
  EXPECT_EQ(h.GetOr("cookie", ""), "a=1; b=2");
  EXPECT_TRUE(callbacks_.streams[0]->end);
}

TEST_F(Http2RawTest, Http2MaxConcurrentStreamsRefusesTheExtraStream) {
  server_.reset();
  Options options;
  options.max_concurrent_streams = 2;
  Start(options);
  // One at a time: HPACK blocks must be made in wire order.
  std::string bytes = Headers(1, false, Get());
  bytes += Headers(3, false, Get());
  bytes += Headers(5, false, Get());
  Send(bytes);
  EXPECT_TRUE(callbacks_.errors.empty());
  EXPECT_EQ(callbacks_.streams.size(), 2u);
  auto frames = Output();
  std::optional<ParsedFrame> rst = FindFrame(frames, NGHTTP2_RST_STREAM, 5);
  ASSERT_TRUE(rst.has_value());
  EXPECT_EQ(rst->code, static_cast<uint32_t>(NGHTTP2_REFUSED_STREAM));
}

struct MalformedCase {
  const char* name;
  std::vector<std::pair<std::string, std::string>> fields;
};

TEST_F(Http2RawTest, Http2MalformedRequestsAreResetBeforeReachingADecoder) {
  std::vector<MalformedCase> cases = {
      {"uppercase name",
       {{":method", "GET"},
        {":path", "/"},
        {":scheme", "http"},
        {":authority", "a"},
        {"X-Up", "1"}}},
      {"connection header",
       {{":method", "GET"},
        {":path", "/"},
        {":scheme", "http"},
        {":authority", "a"},
        {"connection", "keep-alive"}}},
      {"missing :path", {{":method", "GET"}, {":scheme", "http"}, {":authority", "a"}}},
      {"bad value",
       {{":method", "GET"},
        {":path", "/"},
        {":scheme", "http"},
        {":authority", "a"},
        {"x-bad", std::string("a\nb")}}},
      {"te not trailers",
       {{":method", "GET"},
        {":path", "/"},
        {":scheme", "http"},
        {":authority", "a"},
        {"te", "gzip"}}},
  };
  uint32_t stream = 1;
  for (const MalformedCase& c : cases) {
    SCOPED_TRACE(c.name);
    Send(Headers(stream, true, c.fields));
    auto frames = Output();
    std::optional<ParsedFrame> rst = FindFrame(frames, NGHTTP2_RST_STREAM, stream);
    ASSERT_TRUE(rst.has_value());
    EXPECT_EQ(rst->code, static_cast<uint32_t>(NGHTTP2_PROTOCOL_ERROR));
    EXPECT_EQ(callbacks_.streams.size(), 0u);
    stream += 2;
  }
  EXPECT_EQ(counters_.protocol_errors.Value(), cases.size());
  EXPECT_TRUE(callbacks_.errors.empty());  // stream errors, the connection lives
  dispatcher_.RunPending();
  EXPECT_TRUE(server_->Idle());
}

TEST_F(Http2RawTest, Http2ContentLengthMismatchResetsTheStartedStream) {
  // The head is valid, so the request was handed up; the short body is
  // found at END_STREAM and the stream is reset under its decoder.
  auto fields = Get();
  fields[0].second = "POST";
  fields.push_back({"content-length", "10"});
  Send(Headers(1, false, fields) + Frame(NGHTTP2_DATA, NGHTTP2_FLAG_END_STREAM, 1, "abc"));
  ASSERT_EQ(callbacks_.streams.size(), 1u);
  EXPECT_EQ(callbacks_.streams[0]->resets,
            std::vector<StreamResetReason>{StreamResetReason::kProtocolError});
  std::optional<ParsedFrame> rst = FindFrame(Output(), NGHTTP2_RST_STREAM, 1);
  ASSERT_TRUE(rst.has_value());
  EXPECT_EQ(rst->code, static_cast<uint32_t>(NGHTTP2_PROTOCOL_ERROR));
}

TEST_F(Http2RawTest, Http2HeaderListOverLimitIsResetAndCounted) {
  auto fields = Get();
  fields.push_back({"x-big", std::string(70000, 'v')});
  std::string block = Block(fields);
  // Split over HEADERS + CONTINUATION frames of 16384 bytes.
  std::string bytes;
  size_t at = 0;
  bool first = true;
  while (at < block.size()) {
    size_t n = std::min<size_t>(16384, block.size() - at);
    bool last = at + n == block.size();
    uint8_t flags = (last ? NGHTTP2_FLAG_END_HEADERS : 0) | (first ? NGHTTP2_FLAG_END_STREAM : 0);
    bytes += Frame(first ? NGHTTP2_HEADERS : NGHTTP2_CONTINUATION, flags, 1, block.substr(at, n));
    first = false;
    at += n;
  }
  Send(bytes);
  EXPECT_EQ(callbacks_.streams.size(), 0u);
  EXPECT_EQ(counters_.header_overflow.Value(), 1u);
  EXPECT_TRUE(FindFrame(Output(), NGHTTP2_RST_STREAM, 1).has_value());
  EXPECT_TRUE(callbacks_.errors.empty());
}

TEST_F(Http2RawTest, Http2RapidResetFloodEndsTheConnection) {
  server_.reset();
  Options options;
  options.stream_reset_burst = 5;
  options.stream_reset_rate_per_second = 1;
  Start(options);
  std::string bytes;
  std::string cancel("\0\0\0\x08", 4);
  for (uint32_t id = 1; id <= 21; id += 2) {
    bytes += Headers(id, false, Get()) + Frame(NGHTTP2_RST_STREAM, 0, id, cancel);
  }
  Send(bytes);
  auto frames = Output();
  std::optional<ParsedFrame> goaway = FindFrame(frames, NGHTTP2_GOAWAY);
  ASSERT_TRUE(goaway.has_value());
  EXPECT_EQ(goaway->code, static_cast<uint32_t>(NGHTTP2_ENHANCE_YOUR_CALM));
  EXPECT_EQ(callbacks_.errors, std::vector<std::string>{"http2_rapid_reset"});
  EXPECT_EQ(counters_.flood.Value(), 1u);
  EXPECT_TRUE(server_->WantsClose());
  // The owner closes the connection; every stream it saw was told once.
  server_->OnConnectionClosed();
  EXPECT_EQ(callbacks_.streams.size(), 6u);
  for (auto& s : callbacks_.streams) EXPECT_EQ(s->resets.size(), 1u);
}

TEST_F(Http2RawTest, Http2RapidResetBudgetRefills) {
  server_.reset();
  Options options;
  options.stream_reset_burst = 2;
  options.stream_reset_rate_per_second = 1;
  Start(options);
  std::string cancel("\0\0\0\x08", 4);
  uint32_t id = 1;
  for (int i = 0; i < 6; ++i, id += 2) {
    Send(Headers(id, false, Get()) + Frame(NGHTTP2_RST_STREAM, 0, id, cancel));
    dispatcher_.AdvanceTimeAndRun(std::chrono::milliseconds(1000));
  }
  EXPECT_TRUE(callbacks_.errors.empty());
  EXPECT_EQ(counters_.rx_reset.Value(), 6u);
}

TEST_F(Http2RawTest, Http2PingFloodFromAPeerThatDoesNotReadEndsTheConnection) {
  conn_.TakeWritten();
  server_->OnAboveWriteBufferHighWatermark();  // the client stopped reading
  std::string bytes;
  for (int i = 0; i < 1100; ++i) bytes += Frame(NGHTTP2_PING, 0, 0, std::string(8, 'p'));
  Send(bytes);
  EXPECT_EQ(callbacks_.errors, std::vector<std::string>{"http2_flood"});
  auto frames = Output();
  // Only the GOAWAY was written, none of the queued acknowledgements.
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].type, NGHTTP2_GOAWAY);
  EXPECT_EQ(frames[0].code, static_cast<uint32_t>(NGHTTP2_ENHANCE_YOUR_CALM));
  EXPECT_EQ(counters_.flood.Value(), 1u);
}

TEST_F(Http2RawTest, Http2PingsAreAnsweredWhileTheClientReads) {
  std::string bytes;
  for (int i = 0; i < 1100; ++i) bytes += Frame(NGHTTP2_PING, 0, 0, std::string(8, 'p'));
  // Fed in pieces, flushed in between: no queue builds up.
  for (size_t at = 0; at < bytes.size(); at += 17 * 100) Send(bytes.substr(at, 17 * 100));
  EXPECT_TRUE(callbacks_.errors.empty());
  size_t acks = 0;
  for (const ParsedFrame& f : Output()) acks += f.type == NGHTTP2_PING && (f.flags & 1);
  EXPECT_EQ(acks, 1100u);
}

TEST_F(Http2RawTest, Http2ContinuationFloodEndsTheConnection) {
  std::string block = Block(Get());
  std::string bytes = Frame(NGHTTP2_HEADERS, 0, 1, block.substr(0, 1));
  for (int i = 0; i < 20; ++i) bytes += Frame(NGHTTP2_CONTINUATION, 0, 1, "");
  Send(bytes);
  ASSERT_EQ(callbacks_.errors.size(), 1u);
  EXPECT_EQ(callbacks_.errors[0], "http2_continuation_flood");
  std::optional<ParsedFrame> goaway = FindFrame(Output(), NGHTTP2_GOAWAY);
  ASSERT_TRUE(goaway.has_value());
  EXPECT_EQ(goaway->code, static_cast<uint32_t>(NGHTTP2_ENHANCE_YOUR_CALM));
  EXPECT_EQ(callbacks_.streams.size(), 0u);
}

TEST_F(Http2RawTest, Http2SettingsWithTooManyEntriesEndsTheConnection) {
  std::string payload;
  for (int i = 0; i < 40; ++i) payload += std::string("\0\x04\0\0\xff\xff", 6);
  Send(Frame(NGHTTP2_SETTINGS, 0, 0, payload));
  // nghttp2 itself ends this one; the codec reports it as a flood.
  EXPECT_EQ(callbacks_.errors, std::vector<std::string>{"http2_flood"});
  std::optional<ParsedFrame> goaway = FindFrame(Output(), NGHTTP2_GOAWAY);
  ASSERT_TRUE(goaway.has_value());
  EXPECT_EQ(goaway->code, static_cast<uint32_t>(NGHTTP2_ENHANCE_YOUR_CALM));
  EXPECT_EQ(counters_.flood.Value(), 1u);
}

TEST_F(Http2RawTest, Http2EmptyDataFrameFloodEndsTheConnection) {
  auto fields = Get();
  fields[0].second = "POST";
  std::string bytes = Headers(1, false, fields);
  for (int i = 0; i < 101; ++i) bytes += Frame(NGHTTP2_DATA, 0, 1, "");
  Send(bytes);
  EXPECT_EQ(callbacks_.errors, std::vector<std::string>{"http2_empty_frame_flood"});
  std::optional<ParsedFrame> goaway = FindFrame(Output(), NGHTTP2_GOAWAY);
  ASSERT_TRUE(goaway.has_value());
  EXPECT_EQ(goaway->code, static_cast<uint32_t>(NGHTTP2_ENHANCE_YOUR_CALM));
  EXPECT_EQ(counters_.flood.Value(), 1u);
}

TEST_F(Http2RawTest, Http2OwnerMayDestroyTheServerCodecOnAConnectionError) {
  Send(Headers(1, false, Get()));
  callbacks_.on_error = [this] {
    server_->OnConnectionClosed();
    server_.reset();
  };
  Send(Frame(NGHTTP2_DATA, 0, 0, "x"));
  EXPECT_EQ(server_, nullptr);
  EXPECT_EQ(callbacks_.streams[0]->resets,
            std::vector<StreamResetReason>{StreamResetReason::kConnectionTermination});
  dispatcher_.RunPending();
}

TEST_F(Http2RawTest, Http2ConnectionProtocolErrorSendsGoAway) {
  // DATA on stream 0 is a connection error (RFC 9113 6.1).
  Send(Frame(NGHTTP2_DATA, 0, 0, "x"));
  std::optional<ParsedFrame> goaway = FindFrame(Output(), NGHTTP2_GOAWAY);
  ASSERT_TRUE(goaway.has_value());
  EXPECT_EQ(goaway->code, static_cast<uint32_t>(NGHTTP2_PROTOCOL_ERROR));
  EXPECT_EQ(callbacks_.errors, std::vector<std::string>{"http2_protocol_error"});
}

TEST_F(Http2RawTest, Http2BadPrefaceIsAProtocolError) {
  server_.reset();
  stats_ = counters_.Pointers();
  server_ =
      std::make_unique<ServerConnectionImpl>(dispatcher_, conn_, callbacks_, Options(), &stats_);
  Send("GET / HTTP/1.1\r\nhost: a\r\n\r\n");
  EXPECT_EQ(callbacks_.errors, std::vector<std::string>{"http2_bad_preface"});
}

TEST_F(Http2RawTest, Http2DrainSendsNoticeThenFinalGoAway) {
  Send(Headers(1, true, Get()));
  conn_.TakeWritten();
  server_->StartDrain();
  EXPECT_TRUE(server_->WantsClose());
  auto notice = Output();
  std::optional<ParsedFrame> first = FindFrame(notice, NGHTTP2_GOAWAY);
  ASSERT_TRUE(first.has_value());
  dispatcher_.AdvanceTimeAndRun(std::chrono::milliseconds(1000));
  auto final_frames = Output();
  std::optional<ParsedFrame> last = FindFrame(final_frames, NGHTTP2_GOAWAY);
  ASSERT_TRUE(last.has_value());
  EXPECT_EQ(last->code, 0u);
  EXPECT_EQ(counters_.goaway_sent.Value(), 2u);
  // The stream it took is still answered.
  callbacks_.streams[0]->encoder->EncodeHeaders(ResponseHeaders(), true);
  EXPECT_TRUE(FindFrame(Output(), NGHTTP2_HEADERS, 1).has_value());
  dispatcher_.RunPending();
  EXPECT_TRUE(server_->Idle());
}

}  // namespace
}  // namespace portway::http::http2
