// The connection pool against a real loopback origin on the same event loop.
#include "core/upstream/conn_pool.h"
#include "core/upstream/codec_factory.h"

#include <unistd.h>

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace portway::upstream {
namespace {

// Answers every request head on a connection with a tiny 200, keeping the
// connection open.
class LoopbackOrigin : public event::ListenerCallbacks {
 public:
  explicit LoopbackOrigin(event::Dispatcher& d) : dispatcher_(d) {
    std::string error;
    int fd = event::CreateListenSocket(*network::Address::Parse("127.0.0.1:0"), 64, &error);
    EXPECT_GE(fd, 0) << error;
    address_ = event::SocketLocalAddress(fd);
    listener_ = d.AdoptListener(fd, *this);
  }
  void OnAccept(event::ConnectionPtr connection) override {
    ++accepted;
    conns_.push_back(std::make_unique<Conn>(std::move(connection)));
  }
  const network::Address& address() const { return address_; }
  // Closes every accepted connection (the origin's idle timeout).
  void CloseAll() {
    for (auto& c : conns_) c->connection->Close(event::CloseType::kNoFlush);
  }
  int accepted = 0;

 private:
  struct Conn : public event::ConnectionCallbacks {
    explicit Conn(event::ConnectionPtr c) : connection(std::move(c)) {
      connection->SetCallbacks(this);
    }
    void OnData(Buffer& data, bool) override {
      pending += data.ToString();
      data.Clear();
      size_t end;
      while ((end = pending.find("\r\n\r\n")) != std::string::npos) {
        pending.erase(0, end + 4);
        Buffer out;
        out.Add("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
        connection->Write(out);
      }
    }
    void OnEvent(event::ConnectionEvent) override {}
    event::ConnectionPtr connection;
    std::string pending;
  };

  event::Dispatcher& dispatcher_;
  network::Address address_;
  event::ListenerPtr listener_;
  std::vector<std::unique_ptr<Conn>> conns_;
};

// One request through the pool: GET /, records how it ended.
class Request : public http::ResponseDecoder, public PoolCallbacks {
 public:
  explicit Request(event::Dispatcher& d) : dispatcher_(d) {}
  void OnPoolReady(http::RequestEncoder& encoder, const PoolStreamInfo&) override {
    http::HeaderMap h;
    h.Add(":method", "GET");
    h.Add(":path", "/");
    h.Add(":authority", "origin");
    encoder.EncodeHeaders(h, true);
  }
  void OnPoolFailure(PoolFailure reason, std::string_view) override {
    failure = reason;
    failed = true;
    dispatcher_.Exit();
  }
  void DecodeHeaders(http::HeaderMapPtr headers, bool end_stream) override {
    status = headers->Status();
  }
  void DecodeData(Buffer& data, bool end_stream) override {
    body += data.ToString();
    data.Clear();
    if (end_stream) {
      done = true;
      dispatcher_.Exit();
    }
  }
  void DecodeTrailers(http::HeaderMapPtr) override {}

  int status = 0;
  std::string body;
  bool done = false;
  bool failed = false;
  PoolFailure failure = PoolFailure::kConnectFailure;

 private:
  event::Dispatcher& dispatcher_;
};

class ConnPoolTest : public ::testing::Test {
 protected:
  ConnPoolTest() : dispatcher_(event::Dispatcher::Create("test")), origin_(*dispatcher_) {
    config_ = std::make_shared<ClusterConfig>();
    config_->name = "test";
    config_->connect_timeout = std::chrono::milliseconds(1000);
  }

  std::unique_ptr<ConnPool> MakePool(const network::Address& address) {
    auto host = std::make_shared<Host>("test", address, 1);
    return std::make_unique<ConnPoolImpl>(*dispatcher_, host, config_, http::Protocol::kHttp11,
                                          Http1CodecFactory(65536), 1, 65536);
  }

  // Runs the loop until something calls Exit(), or `ms` pass.
  void RunFor(int ms) {
    auto guard = dispatcher_->CreateTimer([this] { dispatcher_->Exit(); });
    guard->Enable(std::chrono::milliseconds(ms));
    dispatcher_->Run();
  }
  // Runs the loop until `done()` holds, or about `ms` pass.
  template <typename Pred>
  void RunUntil(Pred done, int ms) {
    for (int waited = 0; !done() && waited < ms; waited += 50) RunFor(50);
  }

  event::DispatcherPtr dispatcher_;
  LoopbackOrigin origin_;
  std::shared_ptr<ClusterConfig> config_;
};

TEST_F(ConnPoolTest, ReusesOneKeepAliveConnectionForSequentialRequests) {
  auto pool = MakePool(origin_.address());
  for (int i = 0; i < 3; ++i) {
    Request r(*dispatcher_);
    pool->NewStream(r, r);
    RunFor(2000);
    ASSERT_TRUE(r.done) << "request " << i;
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, "ok");
  }
  EXPECT_EQ(origin_.accepted, 1);
  EXPECT_EQ(pool->ConnectionCount(), 1u);
}

TEST_F(ConnPoolTest, AnUnknownProtocolConnectsOnceThenLearnsHowManyConnectionsItNeeds) {
  // protocol: auto (capacity 0): until a connection says what it speaks,
  // one connect serves the whole queue; this one speaks HTTP/1.1, so the
  // rest of the queue gets connections of its own.
  auto host = std::make_shared<Host>("test", origin_.address(), 1);
  ConnPoolImpl pool(*dispatcher_, host, config_, http::Protocol::kHttp11, Http1CodecFactory(65536),
                    /*expected_capacity=*/0, 65536);
  std::vector<std::unique_ptr<Request>> requests;
  for (int i = 0; i < 5; ++i) {
    requests.push_back(std::make_unique<Request>(*dispatcher_));
    pool.NewStream(*requests.back(), *requests.back());
  }
  EXPECT_EQ(pool.ConnectionCount(), 1u);  // not five handshakes at once
  RunUntil(
      [&] {
        for (auto& r : requests) {
          if (!r->done) return false;
        }
        return true;
      },
      3000);
  for (auto& r : requests) EXPECT_EQ(r->status, 200);
  EXPECT_EQ(origin_.accepted, 5);
}

TEST_F(ConnPoolTest, OverflowsAtOnceWhenConnectionsAndQueueAreFull) {
  // As in Envoy, a request waiting for a connect in progress is pending too.
  config_->max_connections = 1;
  config_->max_pending_requests = 2;
  auto pool = MakePool(origin_.address());
  Request first(*dispatcher_), second(*dispatcher_), third(*dispatcher_);
  EXPECT_NE(pool->NewStream(first, first), nullptr);    // waits for the connect
  EXPECT_NE(pool->NewStream(second, second), nullptr);  // waits for a free connection
  EXPECT_EQ(pool->NewStream(third, third), nullptr);    // answered at once
  EXPECT_TRUE(third.failed);
  EXPECT_EQ(third.failure, PoolFailure::kOverflow);
  RunUntil([&] { return first.done && second.done; }, 3000);
  EXPECT_TRUE(first.done);
  EXPECT_TRUE(second.done);
  EXPECT_EQ(origin_.accepted, 1);
}

TEST_F(ConnPoolTest, ReportsConnectionRefused) {
  std::string error;
  int fd = event::CreateListenSocket(*network::Address::Parse("127.0.0.1:0"), 1, &error);
  ASSERT_GE(fd, 0);
  network::Address closed = event::SocketLocalAddress(fd);
  close(fd);
  auto pool = MakePool(closed);
  Request r(*dispatcher_);
  pool->NewStream(r, r);
  RunFor(2000);
  ASSERT_TRUE(r.failed);
  EXPECT_EQ(r.failure, PoolFailure::kConnectRefused);
  EXPECT_EQ(pool->ConnectionCount(), 0u);
}

TEST_F(ConnPoolTest, ClosesIdleConnectionsAfterIdleTimeout) {
  config_->idle_timeout = std::chrono::milliseconds(50);
  auto pool = MakePool(origin_.address());
  Request r(*dispatcher_);
  pool->NewStream(r, r);
  RunFor(2000);
  ASSERT_TRUE(r.done);
  EXPECT_EQ(pool->ConnectionCount(), 1u);
  RunFor(300);
  EXPECT_EQ(pool->ConnectionCount(), 0u);
}

TEST_F(ConnPoolTest, DropsAConnectionTheOriginClosedAndConnectsAgain) {
  auto pool = MakePool(origin_.address());
  Request r1(*dispatcher_);
  pool->NewStream(r1, r1);
  RunFor(2000);
  ASSERT_TRUE(r1.done);
  origin_.CloseAll();
  RunFor(100);  // the pool sees the close while the connection is idle
  EXPECT_EQ(pool->ConnectionCount(), 0u);
  Request r2(*dispatcher_);
  pool->NewStream(r2, r2);
  RunFor(2000);
  ASSERT_TRUE(r2.done);
  EXPECT_EQ(origin_.accepted, 2);
}

}  // namespace
}  // namespace portway::upstream
