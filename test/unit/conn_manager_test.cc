// The ConnectionManager in isolation: a FakeConnection plays the client
// (the test feeds raw bytes and reads what was written back), a fake
// worker context around it, simulated time for the request-headers and
// idle timeouts. Routes come from YAML through the real RouteTable.
#include "core/http/conn_manager.h"

#include <string>

#include "core/config/yaml_proto.h"
#include "core/router/side_request.h"
#include "core/server/stats.h"
#include "gtest/gtest.h"
#include "portway/config/v1/listener.pb.h"
#include "test/unit/fake_gateway.h"
#include "test/unit/sim_dispatcher.h"
#include "test/unit/upstream_fakes.h"

namespace portway::http {
namespace {

using std::chrono::milliseconds;
using test::FakeConnection;

class FakeContext : public ConnectionManagerContext {
 public:
  explicit FakeContext(test::SimDispatcher& d)
      : dispatcher_(d), cm_(d, std::make_unique<test::FixedSeedLbRandom>()) {}
  event::Dispatcher& Dispatcher() override { return dispatcher_; }
  upstream::ClusterManager& ClusterManager() override { return cm_; }
  server::ListenerConfigPtr CurrentListener(const std::string&) override { return listener; }
  const server::AccessLogger* AccessLog() override { return nullptr; }
  bool Draining() const override { return false; }
  const GatewayView& Gateway() override { return gateway; }
  test::FakeGateway gateway;
  RequestId NewRequestId() override {
    const std::string text = "req-" + std::to_string(++ids_);
    RequestId id;
    id.size = static_cast<uint8_t>(text.copy(id.text, sizeof(id.text)));
    return id;
  }
  std::shared_ptr<http::WorkerPoster> Poster() override {
    return std::make_shared<test::FakePoster>(dispatcher_);
  }
  void StartSideRequest(server::ListenerConfigPtr l, const router::Route& route,
                        std::string cluster, HeaderMapPtr headers, size_t max_body_bytes,
                        SideResponseCallback done) override {
    auto request = std::make_unique<router::SideRequest>(
        dispatcher_, cm_, std::move(l), route, std::move(cluster), max_body_bytes, std::move(done),
        [this](router::SideRequest* finished) {
          for (auto& r : side_requests) {
            if (r.get() == finished) dispatcher_.DeferredDelete(std::move(r));
          }
        });
    router::SideRequest* raw = request.get();
    side_requests.push_back(std::move(request));
    raw->Start(std::move(headers));
  }
  std::vector<std::unique_ptr<router::SideRequest>> side_requests;
  // The worker would delete the manager (and with it the connection); the
  // test keeps both until its end so it can look at what was written.
  void RemoveConnection(ConnectionManager&) override { ++removed; }

  server::ListenerConfigPtr listener;
  std::unique_ptr<ConnectionManager> owned;
  int removed = 0;

 private:
  test::SimDispatcher& dispatcher_;
  upstream::ClusterManager cm_;
  int ids_ = 0;
};

class ConnectionManagerTest : public testing::Test {
 protected:
  ConnectionManagerTest() : context_(dispatcher_) {}

  void Start(const std::string& routes_yaml, milliseconds headers_timeout = milliseconds(1000),
             milliseconds idle_timeout = milliseconds(5000)) {
    config::v1::Listener proto;
    config::ConfigErrors errors;
    ASSERT_TRUE(config::YamlTextToProto(routes_yaml, &proto, &errors))
        << (errors.empty() ? "" : errors[0].ToString());
    auto listener = std::make_shared<server::ListenerConfig>();
    listener->name = "edge";
    listener->routes = router::RouteTable::Build(proto, "listeners[0]", {}, &errors);
    ASSERT_NE(listener->routes, nullptr) << (errors.empty() ? "" : errors[0].ToString());
    listener->request_headers_timeout = headers_timeout;
    listener->idle_timeout = idle_timeout;
    static stats::Store store;  // outlives every manager
    static stats::ListenerStats listener_stats(store, "conn_manager_test");
    listener->stats = &listener_stats;
    listener->state = std::make_shared<server::ListenerState>();
    listener->state->connections.fetch_add(1);
    context_.listener = listener;
    auto address = network::Address::Parse("127.0.0.1:40000");
    ASSERT_TRUE(address.ok());
    event::ConnectionPtr connection = dispatcher_.Connect(*address);
    client_ = dispatcher_.connections().back();
    context_.owned = std::make_unique<ConnectionManager>(context_, listener, std::move(connection));
  }
  // One GET /hello on the connection, served; what was written for it.
  std::string GetHello() {
    client_->Feed("GET /hello HTTP/1.1\r\nhost: example.test\r\n\r\n");
    dispatcher_.RunPending();
    return client_->TakeWritten();
  }
  test::SimDispatcher dispatcher_;
  FakeContext context_;
  FakeConnection* client_ = nullptr;
};

constexpr char kDirectRoutes[] = R"(
name: edge
virtual_hosts:
  - name: any
    domains: ["*"]
    routes:
      - { match: { prefix: /hello }, direct_response: { status: 200, body: "hi there" } }
)";

TEST_F(ConnectionManagerTest, ARequestRoutedToADirectResponseIsAnswered) {
  Start(kDirectRoutes);
  client_->Feed("GET /hello HTTP/1.1\r\nhost: example.test\r\n\r\n");
  dispatcher_.RunPending();
  std::string out = client_->TakeWritten();
  EXPECT_EQ(out.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << out;
  EXPECT_NE(out.find("\r\n\r\nhi there"), std::string::npos) << out;
  EXPECT_FALSE(client_->close_type().has_value());  // keep-alive
  // A second request on the same connection; no route: 404.
  client_->Feed("GET /nothing HTTP/1.1\r\nhost: example.test\r\n\r\n");
  dispatcher_.RunPending();
  out = client_->TakeWritten();
  EXPECT_EQ(out.rfind("HTTP/1.1 404", 0), 0u) << out;
}

TEST_F(ConnectionManagerTest, AMalformedRequestGets400AndTheConnectionCloses) {
  Start(kDirectRoutes);
  client_->Feed("GET /hello HTTP/1.1\r\nbad header line\r\n\r\n");
  dispatcher_.RunPending();
  std::string out = client_->written();
  EXPECT_EQ(out.rfind("HTTP/1.1 400", 0), 0u) << out;
  EXPECT_NE(out.find("connection: close"), std::string::npos) << out;
  ASSERT_TRUE(client_->close_type().has_value());
  EXPECT_EQ(*client_->close_type(), event::CloseType::kFlushWrite);
  EXPECT_EQ(context_.removed, 1);  // the close completed on the loop
}

TEST_F(ConnectionManagerTest, ARequestHeadThatStallsGets408AtTheHeadersTimeout) {
  Start(kDirectRoutes, /*headers_timeout=*/milliseconds(1000));
  client_->Feed("GET /hello HTTP/1.1\r\nhost: exa");
  dispatcher_.AdvanceTimeAndRun(milliseconds(600));
  client_->Feed("mple.test\r\n");  // more bytes do not extend the deadline
  dispatcher_.AdvanceTimeAndRun(milliseconds(399));
  EXPECT_TRUE(client_->written().empty());
  dispatcher_.AdvanceTimeAndRun(milliseconds(1));
  std::string out = client_->written();
  EXPECT_EQ(out.rfind("HTTP/1.1 408", 0), 0u) << out;
  EXPECT_NE(out.find("x-portway-error: request_header_timeout"), std::string::npos) << out;
  ASSERT_TRUE(client_->close_type().has_value());
}

TEST_F(ConnectionManagerTest, AnIdleConnectionClosesAtTheIdleTimeout) {
  Start(kDirectRoutes, milliseconds(1000), /*idle_timeout=*/milliseconds(5000));
  dispatcher_.AdvanceTimeAndRun(milliseconds(4999));
  EXPECT_FALSE(client_->close_type().has_value());
  dispatcher_.AdvanceTimeAndRun(milliseconds(1));
  ASSERT_TRUE(client_->close_type().has_value());
  EXPECT_EQ(*client_->close_type(), event::CloseType::kFlushWrite);
  EXPECT_TRUE(client_->written().empty());  // nothing is sent, just a close
}

TEST_F(ConnectionManagerTest, TheIdleTimeoutStartsAgainAfterEachResponse) {
  Start(kDirectRoutes, milliseconds(1000), /*idle_timeout=*/milliseconds(5000));
  dispatcher_.AdvanceTimeAndRun(milliseconds(4000));
  client_->Feed("GET /hello HTTP/1.1\r\nhost: example.test\r\n\r\n");
  dispatcher_.RunPending();
  EXPECT_FALSE(client_->written().empty());
  dispatcher_.AdvanceTimeAndRun(milliseconds(4999));
  EXPECT_FALSE(client_->close_type().has_value());
  dispatcher_.AdvanceTimeAndRun(milliseconds(1));
  EXPECT_TRUE(client_->close_type().has_value());
}

TEST_F(ConnectionManagerTest, AQuietConnectionGivesBackItsStorageAfterTheReleaseDelay) {
  Start(kDirectRoutes, milliseconds(1000), /*idle_timeout=*/milliseconds(5000));
  EXPECT_EQ(GetHello().rfind("HTTP/1.1 200", 0), 0u);
  dispatcher_.AdvanceTimeAndRun(kIdleReleaseDelay - milliseconds(1));
  EXPECT_EQ(client_->idle_releases(), 0);
  EXPECT_TRUE(context_.owned->HasCodec());
  dispatcher_.AdvanceTimeAndRun(milliseconds(1));
  EXPECT_EQ(client_->idle_releases(), 1);
  EXPECT_FALSE(context_.owned->HasCodec());
  EXPECT_FALSE(client_->close_type().has_value());
  // The connection goes on serving, on a new codec.
  std::string out = GetHello();
  EXPECT_TRUE(context_.owned->HasCodec());
  EXPECT_EQ(out.rfind("HTTP/1.1 200", 0), 0u) << out;
  EXPECT_NE(out.find("\r\n\r\nhi there"), std::string::npos) << out;
  // The idle timeout still counts from the last response, stop included.
  dispatcher_.AdvanceTimeAndRun(milliseconds(4999));
  EXPECT_EQ(client_->idle_releases(), 2);
  EXPECT_FALSE(client_->close_type().has_value());
  dispatcher_.AdvanceTimeAndRun(milliseconds(1));
  ASSERT_TRUE(client_->close_type().has_value());
  EXPECT_EQ(*client_->close_type(), event::CloseType::kFlushWrite);
}

TEST_F(ConnectionManagerTest, ABusyConnectionNeverReachesTheRelease) {
  Start(kDirectRoutes, milliseconds(1000), /*idle_timeout=*/milliseconds(5000));
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(GetHello().rfind("HTTP/1.1 200", 0), 0u);
    dispatcher_.AdvanceTimeAndRun(kIdleReleaseDelay / 2);
  }
  EXPECT_EQ(client_->idle_releases(), 0);
}

TEST_F(ConnectionManagerTest, AReleasedHttp1ConnectionStaysHttp1) {
  Start(kDirectRoutes, milliseconds(1000), /*idle_timeout=*/milliseconds(5000));
  ASSERT_TRUE(context_.listener->http2);  // a fresh connection could pick HTTP/2
  GetHello();
  dispatcher_.AdvanceTimeAndRun(kIdleReleaseDelay);
  ASSERT_EQ(client_->idle_releases(), 1);
  ASSERT_FALSE(context_.owned->HasCodec());
  // The HTTP/2 preface is not a protocol switch mid-connection: it is a
  // malformed HTTP/1 request.
  client_->Feed("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
  dispatcher_.RunPending();
  std::string out = client_->written();
  EXPECT_EQ(out.rfind("HTTP/1.1 ", 0), 0u) << out;
  EXPECT_EQ(out.rfind("HTTP/1.1 200", 0), std::string::npos) << out;
}

TEST_F(ConnectionManagerTest, BackPressureKeepsTheCodecThroughTheRelease) {
  // A codec that paused reading, or that heard the connection is over its
  // write watermark (said once, on the crossing), holds state a new codec
  // would not have: it stays. The buffers are still given back.
  Start(kDirectRoutes, milliseconds(1000), /*idle_timeout=*/milliseconds(5000));
  GetHello();
  client_->set_write_buffered(100);
  dispatcher_.AdvanceTimeAndRun(kIdleReleaseDelay);
  EXPECT_EQ(client_->idle_releases(), 1);
  EXPECT_TRUE(context_.owned->HasCodec());

  client_->set_write_buffered(0);
  GetHello();
  client_->ReadDisable(true);
  dispatcher_.AdvanceTimeAndRun(kIdleReleaseDelay);
  EXPECT_EQ(client_->idle_releases(), 2);
  EXPECT_TRUE(context_.owned->HasCodec());
}

TEST_F(ConnectionManagerTest, NoReleaseStopWhenTheIdleTimeoutComesFirst) {
  Start(kDirectRoutes, milliseconds(1000), /*idle_timeout=*/kIdleReleaseDelay);
  GetHello();
  dispatcher_.AdvanceTimeAndRun(kIdleReleaseDelay);
  EXPECT_EQ(client_->idle_releases(), 0);
  ASSERT_TRUE(client_->close_type().has_value());  // closed at its idle timeout
}

TEST_F(ConnectionManagerTest, WithoutAnIdleTimeoutTheReleaseStillComes) {
  Start(kDirectRoutes, milliseconds(1000), /*idle_timeout=*/milliseconds(0));
  GetHello();
  dispatcher_.AdvanceTimeAndRun(kIdleReleaseDelay);
  EXPECT_EQ(client_->idle_releases(), 1);
  EXPECT_FALSE(context_.owned->HasCodec());
  dispatcher_.AdvanceTimeAndRun(std::chrono::hours(1));
  EXPECT_EQ(client_->idle_releases(), 1);  // once, and no close
  EXPECT_FALSE(client_->close_type().has_value());
}

}  // namespace
}  // namespace portway::http
