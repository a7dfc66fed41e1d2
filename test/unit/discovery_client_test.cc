// The gateway's discovery client against a scripted control plane: an
// in-process gRPC server on loopback (a real stream, a fake peer). Checks
// the protocol's order (Hello first, with node and what the gateway has;
// pushes delivered in order; verdicts and Applied sent back), and that
// after the control plane restarts the client says Hello again.
#include "core/discovery/client.h"

#include <condition_variable>
#include <deque>
#include <mutex>

#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "portway/service/discovery/v1/discovery.grpc.pb.h"
#include "test/unit/sim_dispatcher.h"

namespace portway::discovery {
namespace {

using Rw = grpc::ServerReaderWriter<v1::ControlPlaneMessage, v1::GatewayMessage>;

// Records what gateways send; each stream gets the pushes queued for it.
class FakeControlPlane final : public v1::Discovery::Service {
 public:
  grpc::Status Stream(grpc::ServerContext* context, Rw* stream) override {
    v1::GatewayMessage m;
    int index;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      index = streams_++;
    }
    std::thread reader([&] {
      v1::GatewayMessage in;
      while (stream->Read(&in)) {
        std::lock_guard<std::mutex> lock(mutex_);
        received_.push_back({index, in});
        cv_.notify_all();
      }
    });
    for (;;) {
      v1::ControlPlaneMessage out;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        // Polls for cancellation, which does not signal the condition.
        while (outbox_.empty() && !context->IsCancelled()) {
          cv_.wait_for(lock, std::chrono::milliseconds(20));
        }
        if (context->IsCancelled()) break;
        out = std::move(outbox_.front());
        outbox_.pop_front();
      }
      stream->Write(out);
    }
    context->TryCancel();
    reader.join();
    return grpc::Status::OK;
  }

  void Push(const std::string& nonce, const std::string& cluster) {
    v1::ControlPlaneMessage m;
    m.mutable_push()->set_nonce(nonce);
    v1::Resource* r = m.mutable_push()->add_resources();
    r->set_name(cluster);
    r->set_version("v-" + nonce);
    r->mutable_cluster()->add_endpoints()->set_address("127.0.0.1:1");
    std::lock_guard<std::mutex> lock(mutex_);
    outbox_.push_back(std::move(m));
    cv_.notify_all();
  }
  // Waits until `n` messages arrived; returns them as (stream, message).
  std::vector<std::pair<int, v1::GatewayMessage>> WaitFor(size_t n) {
    std::unique_lock<std::mutex> lock(mutex_);
    cv_.wait_for(lock, std::chrono::seconds(10), [&] { return received_.size() >= n; });
    return received_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<v1::ControlPlaneMessage> outbox_;
  int streams_ = 0;
  std::vector<std::pair<int, v1::GatewayMessage>> received_;
};

class DiscoveryClientTest : public testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(port_, 0);
    ClientOptions options;
    options.address = "127.0.0.1:" + std::to_string(port_);
    options.node.set_id("gw-test");
    (*options.node.mutable_metadata())["zone"] = "a";
    options.initial_backoff = std::chrono::milliseconds(10);
    options.max_backoff = std::chrono::milliseconds(50);
    // The jitter pinned to the top of its range: back-offs are exact.
    random_ = std::make_shared<test::SimRandom>();
    random_->AlwaysMax();
    options.random = random_;
    client_ = std::make_unique<Client>(options, [this](v1::Push push) {
      std::lock_guard<std::mutex> lock(mutex_);
      pushes_.push_back(push);
      cv_.notify_all();
    });
  }
  void TearDown() override {
    client_->Stop();
    if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  }
  std::vector<v1::Push> WaitPushes(size_t n) {
    std::unique_lock<std::mutex> lock(mutex_);
    cv_.wait_for(lock, std::chrono::seconds(10), [&] { return pushes_.size() >= n; });
    return pushes_;
  }

  FakeControlPlane service_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<Client> client_;
  std::shared_ptr<test::SimRandom> random_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<v1::Push> pushes_;
};

TEST_F(DiscoveryClientTest, HelloFirstThenPushesInOrderAndAnswersGoBack) {
  v1::ResourceVersion have;
  have.set_type(v1::CLUSTER);
  have.set_name("kept");
  have.set_version("7");
  client_->SetHave({have});
  client_->Start();
  auto got = service_.WaitFor(1);
  ASSERT_EQ(got.size(), 1u);
  ASSERT_TRUE(got[0].second.has_hello());
  const auto& hello = got[0].second.hello();
  EXPECT_EQ(hello.node().id(), "gw-test");
  EXPECT_EQ(hello.node().metadata().at("zone"), "a");
  ASSERT_EQ(hello.have_size(), 1);
  EXPECT_EQ(hello.have(0).name(), "kept");

  service_.Push("1", "a");
  service_.Push("2", "b");
  auto pushes = WaitPushes(2);
  ASSERT_EQ(pushes.size(), 2u);
  EXPECT_EQ(pushes[0].nonce(), "1");
  EXPECT_EQ(pushes[1].nonce(), "2");
  auto status = client_->GetStatus();
  EXPECT_TRUE(status.connected);
  EXPECT_EQ(status.pushes, 2u);
  EXPECT_EQ(status.last_nonce, "2");

  v1::GatewayMessage verdicts;
  verdicts.mutable_verdicts()->set_nonce("1");
  client_->Send(verdicts);
  v1::GatewayMessage applied;
  applied.mutable_applied()->set_nonce("1");
  client_->Send(applied);
  got = service_.WaitFor(3);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[1].second.verdicts().nonce(), "1");
  EXPECT_EQ(got[2].second.applied().nonce(), "1");
}

// The control plane goes away and comes back on the same port: the client
// reconnects by itself and announces what it has.
TEST_F(DiscoveryClientTest, AfterTheControlPlaneRestartsTheClientSaysHelloAgain) {
  client_->Start();
  service_.Push("1", "a");
  ASSERT_EQ(WaitPushes(1).size(), 1u);
  v1::ResourceVersion have;
  have.set_type(v1::CLUSTER);
  have.set_name("a");
  have.set_version("v-1");
  client_->SetHave({have});
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(100));
  server_.reset();
  FakeControlPlane again;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:" + std::to_string(port_), grpc::InsecureServerCredentials(),
                           &port);
  builder.RegisterService(&again);
  server_ = builder.BuildAndStart();
  ASSERT_EQ(port, port_);
  auto got = again.WaitFor(1);
  ASSERT_EQ(got.size(), 1u);
  ASSERT_TRUE(got[0].second.has_hello());
  ASSERT_EQ(got[0].second.hello().have_size(), 1);
  EXPECT_EQ(got[0].second.hello().have(0).version(), "v-1");
  again.Push("1", "b");  // a new stream's nonces start again
  ASSERT_EQ(WaitPushes(2).size(), 2u);
  EXPECT_GE(client_->GetStatus().connects, 2u);
  // Every back-off came from the injected random source: with the draw at
  // its top, the first wait after a stream ends is initial_backoff exactly.
  auto backoffs = client_->BackoffHistory();
  ASSERT_FALSE(backoffs.empty());
  EXPECT_EQ(backoffs.front(), std::chrono::milliseconds(10));
  client_->Stop();  // before `again` goes away
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(100));
}

// Full jitter under a ceiling that doubles per failure up to max_backoff;
// the draw comes from the random source handed in.
TEST(DiscoveryBackoffTest, CeilingDoublesPerFailureUpToTheCapAndJitterIsInjected) {
  ClientOptions options;
  options.initial_backoff = std::chrono::milliseconds(250);
  options.max_backoff = std::chrono::milliseconds(1500);
  test::SimRandom top;
  top.AlwaysMax();
  std::vector<int64_t> ceilings;
  for (int failures = 1; failures <= 5; ++failures) {
    ceilings.push_back(Client::BackoffDelay(options, failures, top).count());
  }
  EXPECT_EQ(ceilings, (std::vector<int64_t>{250, 500, 1000, 1500, 1500}));
  test::SimRandom bottom;
  bottom.AlwaysMin();
  EXPECT_EQ(Client::BackoffDelay(options, 3, bottom).count(), 0);
  test::SimRandom middle;
  middle.Push(uint64_t{1} << 63);
  EXPECT_EQ(Client::BackoffDelay(options, 2, middle).count(), 250);  // half of [0, 500]
}

// The health report set before the stream opens goes right after the
// Hello; a newer one goes out at once while the stream is up.
TEST_F(DiscoveryClientTest, TheHealthReportFollowsTheHelloAndUpdatesGoOutAtOnce) {
  v1::HealthReport report;
  v1::HostHealth* h = report.add_unhealthy();
  h->set_cluster("web");
  h->set_address("127.0.0.1:8001");
  h->add_flags("outlier");
  client_->SetHealthReport(report);
  client_->Start();
  auto got = service_.WaitFor(2);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_TRUE(got[0].second.has_hello());
  ASSERT_TRUE(got[1].second.has_health());
  ASSERT_EQ(got[1].second.health().unhealthy_size(), 1);
  EXPECT_EQ(got[1].second.health().unhealthy(0).address(), "127.0.0.1:8001");
  report.clear_unhealthy();
  client_->SetHealthReport(report);
  got = service_.WaitFor(3);
  ASSERT_EQ(got.size(), 3u);
  ASSERT_TRUE(got[2].second.has_health());
  EXPECT_EQ(got[2].second.health().unhealthy_size(), 0);
}

TEST_F(DiscoveryClientTest, NothingIsSentWithoutAStream) {
  // Not started: Send() drops, and Stop() returns at once.
  v1::GatewayMessage m;
  m.mutable_applied()->set_nonce("x");
  client_->Send(m);
  client_->Stop();
  EXPECT_FALSE(client_->GetStatus().connected);
}

TEST_F(DiscoveryClientTest, SaysHowLongAnOpenStreamWentUnanswered) {
  client_->Start();
  service_.WaitFor(1);  // the Hello arrived; nothing is sent back
  std::string error;
  for (int i = 0; i < 500 && error.empty(); ++i) {
    error = client_->GetStatus().last_error;
    if (error.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(error.rfind("connected, no response for ", 0), 0u) << error;
  EXPECT_FALSE(client_->GetStatus().connected);
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  // Seconds, counted from the Hello (at least 1 by now; more on a slow
  // machine).
  error = client_->GetStatus().last_error;
  EXPECT_EQ(error.rfind("connected, no response for ", 0), 0u) << error;
  EXPECT_NE(error, "connected, no response for 0s");
  // The first message ends the wait.
  service_.Push("1", "c");
  WaitPushes(1);
  EXPECT_TRUE(client_->GetStatus().connected);
  EXPECT_EQ(client_->GetStatus().last_error, "");
}

}  // namespace
}  // namespace portway::discovery
