// Active health checks in simulated time: the schedule, the thresholds, the
// probes (HTTP over the pool, TCP, custom) over fake connections, and how
// verdicts reach the host's flags.
#include "core/upstream/health_checker.h"

#include <thread>

#include "core/server/stats.h"
#include "gtest/gtest.h"
#include "test/unit/sim_dispatcher.h"

namespace portway::upstream {
namespace {

using std::chrono::milliseconds;
using test::FakeConnection;
using test::SimDispatcher;

class HealthCheckerTest : public ::testing::Test {
 protected:
  HealthCheckerTest() : health_(dispatcher_), checks_(dispatcher_, health_, random_) {
    random_.AlwaysMin();  // first probes at once, no jitter unless a test says so
  }

  HostSharedPtr MakeHost(uint16_t port) {
    bool ok = false;
    return std::make_shared<Host>("web", network::Address::FromIp("127.0.0.1", port, &ok), 1);
  }

  static HealthCheckSpec Http(std::string path = "/hc") {
    HealthCheckSpec spec;
    spec.kind = HealthCheckSpec::Kind::kHttp;
    spec.interval = milliseconds(1000);
    spec.no_traffic_interval = spec.interval;
    spec.unhealthy_interval = spec.interval;
    spec.timeout = milliseconds(200);
    spec.unhealthy_threshold = 3;
    spec.healthy_threshold = 2;
    spec.path = std::move(path);
    spec.host = "web.internal";
    spec.identity = "http" + spec.path;
    return spec;
  }

  // Publishes a cluster "web" of `hosts` with `checks`.
  ClusterSnapshotPtr Publish(HostVector hosts, std::vector<HealthCheckSpec> checks) {
    auto config = std::make_shared<ClusterConfig>();
    config->name = "web";
    config->health_checks = std::move(checks);
    config->stats = &stats_;
    auto snapshot = MakeClusterSnapshot(config, std::move(hosts), "");
    health_.Adopt(*snapshot);
    clusters_["web"] = snapshot;
    checks_.Update(clusters_);
    return snapshot;
  }

  FakeConnection* LastConnection() {
    return dispatcher_.connections().empty() ? nullptr : dispatcher_.connections().back();
  }

  // Answers the probe on the newest connection with `response` (connecting
  // it first if needed); returns the request it read.
  std::string Answer(std::string_view response) {
    FakeConnection* c = LastConnection();
    EXPECT_NE(c, nullptr);
    if (c == nullptr) return "";
    if (c->written().empty()) c->CompleteConnect();
    std::string request = c->TakeWritten();
    c->Feed(response);
    dispatcher_.RunPending();
    return request;
  }

  static constexpr std::string_view kOk = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
  static constexpr std::string_view kDown =
      "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n";

  SimDispatcher dispatcher_;
  test::SimRandom random_;
  stats::Store store_;
  stats::ClusterStats stats_{store_, "web"};
  HostHealthManager health_;
  HealthCheckManager checks_;
  std::map<std::string, ClusterSnapshotPtr> clusters_;
};

TEST_F(HealthCheckerTest, HttpThresholdsTakeTheHostOutAndBringItBack) {
  HostSharedPtr host = MakeHost(8080);
  Publish({host}, {Http()});
  dispatcher_.RunPending();  // first probe at 0 (random at its minimum)

  std::string request = Answer(kOk);
  EXPECT_EQ(request.rfind("GET /hc HTTP/1.1\r\n", 0), 0u) << request;
  EXPECT_NE(request.find("host: web.internal\r\n"), std::string::npos) << request;
  EXPECT_NE(request.find("user-agent: portway-health-check\r\n"), std::string::npos);
  EXPECT_TRUE(host->usable());
  EXPECT_EQ(checks_.Describe(*host), std::vector<std::string>{"passing"});
  EXPECT_EQ(stats_.health_check_passed.Value(), 1u);

  // Two failures: under unhealthy_threshold (3), still usable. The
  // connection is kept alive between probes.
  const size_t connections = dispatcher_.connections().size();
  for (int i = 0; i < 2; ++i) {
    dispatcher_.AdvanceTimeAndRun(milliseconds(1000));
    Answer(kDown);
    EXPECT_TRUE(host->usable()) << i;
  }
  EXPECT_EQ(dispatcher_.connections().size(), connections);
  dispatcher_.AdvanceTimeAndRun(milliseconds(1000));
  Answer(kDown);
  EXPECT_FALSE(host->usable());
  EXPECT_EQ(host->healthFlags(), health_flag::kActiveCheck);
  EXPECT_EQ(host->healthDetail().last_reason, "active check failed 3 time(s): status 503");
  EXPECT_EQ(stats_.health_check_failed.Value(), 3u);
  EXPECT_EQ(stats_.hosts_became_unusable.Value(), 1u);

  // One pass is not enough (healthy_threshold 2); two are.
  dispatcher_.AdvanceTimeAndRun(milliseconds(1000));
  Answer(kOk);
  EXPECT_FALSE(host->usable());
  dispatcher_.AdvanceTimeAndRun(milliseconds(1000));
  Answer(kOk);
  EXPECT_TRUE(host->usable());
  EXPECT_EQ(host->healthDetail().last_reason, "active check passed 2 time(s): status 200");
}

TEST_F(HealthCheckerTest, TheFirstResultDecidesAlone) {
  HostSharedPtr host = MakeHost(8080);
  Publish({host}, {Http()});
  dispatcher_.RunPending();
  Answer(kDown);
  EXPECT_FALSE(host->usable());
  EXPECT_EQ(host->healthDetail().last_reason, "active check failed 1 time(s): status 503");
}

TEST_F(HealthCheckerTest, AProbeWithoutAnswerFailsAtItsTimeoutAndItsConnectionIsDropped) {
  HostSharedPtr host = MakeHost(8080);
  Publish({host}, {Http()});
  dispatcher_.RunPending();
  FakeConnection* c = LastConnection();
  ASSERT_NE(c, nullptr);
  std::shared_ptr<bool> alive = c->alive_flag();
  c->CompleteConnect();
  dispatcher_.AdvanceTimeAndRun(milliseconds(199));
  EXPECT_TRUE(host->usable());
  dispatcher_.AdvanceTimeAndRun(milliseconds(1));
  EXPECT_FALSE(host->usable());
  EXPECT_EQ(host->healthDetail().last_reason,
            "active check failed 1 time(s): no answer within 200ms");
  EXPECT_FALSE(*alive);
  // The next probe opens a new connection.
  const size_t before = dispatcher_.connections().size();
  dispatcher_.AdvanceTimeAndRun(milliseconds(1000));
  EXPECT_EQ(dispatcher_.connections().size(), before + 1);
}

TEST_F(HealthCheckerTest, ConnectFailuresFail) {
  HostSharedPtr host = MakeHost(8080);
  Publish({host}, {Http()});
  dispatcher_.RunPending();
  LastConnection()->FailConnect(ECONNREFUSED);
  dispatcher_.RunPending();
  EXPECT_FALSE(host->usable());
  EXPECT_EQ(host->healthDetail().last_reason.rfind(
                "active check failed 1 time(s): connection refused", 0),
            0u)
      << host->healthDetail().last_reason;
}

TEST_F(HealthCheckerTest, IntervalsFollowTheHostsStateAndJitterAddsToThem) {
  HealthCheckSpec spec = Http();
  spec.unhealthy_interval = milliseconds(3000);
  spec.jitter = milliseconds(500);
  HostSharedPtr host = MakeHost(8080);
  Publish({host}, {spec});
  dispatcher_.RunPending();
  random_.AlwaysMax();  // from now on: the whole jitter
  Answer(kDown);        // failing: the next probe in 3000 + 500
  ASSERT_TRUE(dispatcher_.NextTimerIn().has_value());
  EXPECT_EQ(*dispatcher_.NextTimerIn(), milliseconds(3500));
  dispatcher_.AdvanceTimeAndRun(milliseconds(3500));
  Answer(kOk);  // still failing (1 of 2 passes): unhealthy_interval again
  EXPECT_EQ(*dispatcher_.NextTimerIn(), milliseconds(3500));
  dispatcher_.AdvanceTimeAndRun(milliseconds(3500));
  Answer(kOk);  // healthy: interval + jitter
  EXPECT_TRUE(host->usable());
  EXPECT_EQ(*dispatcher_.NextTimerIn(), milliseconds(1500));
}

TEST_F(HealthCheckerTest, NoTrafficIntervalUntilTheHostGetsARequest) {
  HealthCheckSpec spec = Http();
  spec.no_traffic_interval = milliseconds(60000);
  HostSharedPtr host = MakeHost(8080);
  Publish({host}, {spec});
  dispatcher_.RunPending();
  Answer(kOk);
  EXPECT_EQ(*dispatcher_.NextTimerIn(), milliseconds(60000));
  host->requests_total.fetch_add(1);
  dispatcher_.AdvanceTimeAndRun(milliseconds(60000));
  Answer(kOk);
  EXPECT_EQ(*dispatcher_.NextTimerIn(), milliseconds(1000));
}

TEST_F(HealthCheckerTest, FirstProbesAreSpreadOverOneInterval) {
  random_.AlwaysMax();
  HostSharedPtr host = MakeHost(8080);
  Publish({host}, {Http()});
  dispatcher_.RunPending();
  EXPECT_TRUE(dispatcher_.connections().empty());
  // At most interval - 1 (999ms), rounded up to the 20ms probe tick.
  EXPECT_EQ(*dispatcher_.NextTimerIn(), milliseconds(1000));
}

TEST_F(HealthCheckerTest, ProbesStartOnATwentyMillisecondTick) {
  HealthCheckSpec spec = Http();
  spec.interval = spec.no_traffic_interval = milliseconds(1005);
  HostSharedPtr host = MakeHost(8080);
  Publish({host}, {spec});
  dispatcher_.RunPending();
  dispatcher_.AdvanceTimeAndRun(milliseconds(7));  // the answer comes 7ms in
  Answer(kOk);
  // 7 + 1005 = 1012, rounded up to 1020: 1013 from now.
  EXPECT_EQ(*dispatcher_.NextTimerIn(), milliseconds(1013));
}

TEST_F(HealthCheckerTest, AHostFailsWhileAnyOfItsChecksFails) {
  HostSharedPtr host = MakeHost(8080);
  HealthCheckSpec tcp;
  tcp.kind = HealthCheckSpec::Kind::kTcp;
  tcp.interval = tcp.no_traffic_interval = tcp.unhealthy_interval = milliseconds(1000);
  tcp.timeout = milliseconds(200);
  tcp.send = "PING\r\n";
  tcp.expect = "PONG";
  tcp.identity = "tcp";
  Publish({host}, {Http(), tcp});
  dispatcher_.RunPending();
  ASSERT_EQ(dispatcher_.connections().size(), 2u);
  FakeConnection* http = dispatcher_.connections()[0];
  FakeConnection* raw = dispatcher_.connections()[1];
  http->CompleteConnect();
  http->Feed(kOk);
  raw->CompleteConnect();
  EXPECT_EQ(raw->TakeWritten(), "PING\r\n");
  raw->Feed("-ERR", /*end_stream=*/true);
  dispatcher_.RunPending();
  EXPECT_FALSE(host->usable());
  EXPECT_EQ(checks_.Describe(*host), (std::vector<std::string>{"passing", "failing"}));
  EXPECT_EQ(host->healthDetail().last_reason,
            "active check failed 1 time(s): closed before the expected bytes came");

  // The TCP check passes twice: the host is back (the HTTP one never failed).
  for (int i = 0; i < 2; ++i) {
    dispatcher_.AdvanceTimeAndRun(milliseconds(1000));
    // The HTTP probe goes out on its kept connection, the TCP one on a new one.
    EXPECT_FALSE(http->TakeWritten().empty());
    http->Feed(kOk);
    FakeConnection* next = dispatcher_.connections().back();
    ASSERT_NE(next, http);
    next->CompleteConnect();
    EXPECT_EQ(next->TakeWritten(), "PING\r\n");
    next->Feed("+PO");  // a match may straddle reads
    next->Feed("NG\r\n");
    dispatcher_.RunPending();
  }
  EXPECT_TRUE(host->usable()) << host->healthDetail().last_reason;
}

TEST_F(HealthCheckerTest, AConnectOnlyTcpCheckDoesNotDestroyTheConnectionUnderItsCallback) {
  HealthCheckSpec tcp;
  tcp.kind = HealthCheckSpec::Kind::kTcp;
  tcp.identity = "tcp";
  HostSharedPtr host = MakeHost(8080);
  Publish({host}, {tcp});
  dispatcher_.RunPending();
  FakeConnection* c = LastConnection();
  ASSERT_NE(c, nullptr);
  std::shared_ptr<bool> alive = c->alive_flag();
  // The verdict comes inside the connection's own kConnected callback: the
  // connection is closed there, but must outlive the callback (the real
  // one flushes after it returns).
  c->CompleteConnect();
  EXPECT_TRUE(*alive);
  EXPECT_TRUE(c->close_type().has_value());
  EXPECT_EQ(checks_.Describe(*host), std::vector<std::string>{"passing"});
  dispatcher_.RunPending();
  EXPECT_FALSE(*alive);
}

TEST_F(HealthCheckerTest, AnUnchangedCheckKeepsItsSessionARemovedOneClearsTheFlag) {
  HostSharedPtr host = MakeHost(8080);
  Publish({host}, {Http()});
  dispatcher_.RunPending();
  Answer(kDown);
  ASSERT_FALSE(host->usable());
  // A new snapshot with the same check: same session, still failing, no
  // probe at once.
  const size_t before = dispatcher_.connections().size();
  Publish({host}, {Http()});
  dispatcher_.RunPending();
  EXPECT_FALSE(host->usable());
  EXPECT_EQ(checks_.SessionCount(), 1u);
  EXPECT_EQ(dispatcher_.connections().size(), before);
  // A changed check (another path) starts over: the old verdict goes.
  Publish({host}, {Http("/other")});
  EXPECT_TRUE(host->usable());
  EXPECT_EQ(host->healthDetail().last_reason, "its active check changed");
  dispatcher_.RunPending();
  Answer(kDown);
  EXPECT_FALSE(host->usable());
  // No checks any more.
  Publish({host}, {});
  EXPECT_TRUE(host->usable());
  EXPECT_EQ(checks_.SessionCount(), 0u);
  EXPECT_EQ(dispatcher_.ArmedTimers(), 0u);
}

TEST_F(HealthCheckerTest, AHostRemovedFromTheClusterLosesItsSession) {
  HostSharedPtr a = MakeHost(8080);
  HostSharedPtr b = MakeHost(8081);
  Publish({a, b}, {Http()});
  EXPECT_EQ(checks_.SessionCount(), 2u);
  Publish({a}, {Http()});
  EXPECT_EQ(checks_.SessionCount(), 1u);
  EXPECT_TRUE(checks_.Describe(*b).empty());
}

// A module's probe answering from its own thread.
class ThreadedProbe : public HealthProbe {
 public:
  explicit ThreadedProbe(bool* healthy) : healthy_(healthy) {}
  ~ThreadedProbe() override {
    if (thread_.joinable()) thread_.join();
  }
  void Check(std::function<void(HealthCheckResult)> done) override {
    if (thread_.joinable()) thread_.join();
    const bool healthy = *healthy_;
    thread_ = std::thread([done, healthy] { done({healthy, healthy ? "pong" : "no pong"}); });
  }

 private:
  bool* healthy_;
  std::thread thread_;
};

TEST_F(HealthCheckerTest, CustomProbesAnswerFromAnyThread) {
  bool healthy = false;
  std::string target_address;
  HealthCheckSpec spec;
  spec.kind = HealthCheckSpec::Kind::kCustom;
  spec.interval = spec.no_traffic_interval = spec.unhealthy_interval = milliseconds(1000);
  spec.timeout = milliseconds(500);
  spec.healthy_threshold = 1;
  spec.identity = "custom";
  spec.custom = std::make_shared<const HealthProbeFactoryFn>(
      [&](const HealthCheckTarget& target) -> std::unique_ptr<HealthProbe> {
        target_address = target.address;
        return std::make_unique<ThreadedProbe>(&healthy);
      });
  HostSharedPtr host = MakeHost(8080);
  Publish({host}, {spec});
  // The verdict comes back through a Post: wait for it in real time.
  auto settle = [&] {
    for (int i = 0; i < 200 && checks_.Describe(*host).front() == "pending"; ++i) {
      dispatcher_.RunPending();
      std::this_thread::sleep_for(milliseconds(1));
    }
  };
  dispatcher_.RunPending();
  settle();
  EXPECT_EQ(target_address, "127.0.0.1:8080");
  EXPECT_FALSE(host->usable());
  EXPECT_EQ(host->healthDetail().last_reason, "active check failed 1 time(s): no pong");
  healthy = true;
  dispatcher_.AdvanceTimeAndRun(milliseconds(1000));
  for (int i = 0; i < 200 && !host->usable(); ++i) {
    dispatcher_.RunPending();
    std::this_thread::sleep_for(milliseconds(1));
  }
  EXPECT_TRUE(host->usable());
}

}  // namespace
}  // namespace portway::upstream
