// Outlier detection in simulated time: the workers' counters, the
// consecutive rules, ejection time and its growth, max_ejection_percent,
// unejection by timer, the interval rules, and config / host set changes.
#include "core/upstream/outlier_detector.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "core/server/stats.h"
#include "test/unit/sim_dispatcher.h"

namespace portway::upstream {
namespace {

using std::chrono::milliseconds;
using test::SimDispatcher;

class OutlierDetectorTest : public testing::Test {
 protected:
  OutlierDetectorTest() : health_(dispatcher_), detector_(dispatcher_, health_) {
    config_.consecutive_local_origin_failure = 0;  // each test turns on what it tests
    config_.base_ejection_time = milliseconds(1000);
    config_.max_ejection_time = milliseconds(10000);
    config_.interval = milliseconds(60000);
    config_.max_ejection_percent = 100;
  }

  HostSharedPtr MakeHost(int i) {
    bool ok = false;
    network::Address address = network::Address::FromIp("10.0.0." + std::to_string(i), 80, &ok);
    EXPECT_TRUE(ok);
    return std::make_shared<Host>("backend", address, 1);
  }
  // Publishes `hosts` with config_ as the cluster "backend", like
  // Server::Publish: Adopt, then the detector.
  void Publish(const HostVector& hosts, bool with_outlier = true) {
    auto config = std::make_shared<ClusterConfig>();
    config->name = "backend";
    config->stats = &stats_;
    if (with_outlier) config->outlier = std::make_shared<OutlierConfig>(config_);
    cluster_config_ = config;
    snapshot_ = MakeClusterSnapshot(config, hosts, "");
    health_.Adopt(*snapshot_);
    detector_.Update({{"backend", snapshot_}});
  }
  HostVector Publish(int n) {
    HostVector hosts;
    for (int i = 1; i <= n; ++i) hosts.push_back(MakeHost(i));
    Publish(hosts);
    return hosts;
  }
  // `n` attempts on `host` with `outcome`, as a worker reports them, then
  // the main thread runs what they posted.
  void Record(const HostSharedPtr& host, AttemptOutcome outcome, int n = 1) {
    for (int i = 0; i < n; ++i) {
      RecordOutlierOutcome(host, *cluster_config_->outlier, outcome, &detector_);
    }
    dispatcher_.RunPending();
  }
  static bool Ejected(const HostSharedPtr& host) {
    return (host->healthFlags() & health_flag::kOutlier) != 0;
  }

  SimDispatcher dispatcher_;
  stats::Store store_;
  stats::ClusterStats stats_{store_, "backend"};
  HostHealthManager health_;
  OutlierDetector detector_;
  OutlierConfig config_;
  std::shared_ptr<const ClusterConfig> cluster_config_;
  ClusterSnapshotPtr snapshot_;
};

TEST(OutcomeOfStatusTest, SortsResponses) {
  EXPECT_EQ(OutcomeOfStatus(200), AttemptOutcome::kSuccess);
  EXPECT_EQ(OutcomeOfStatus(404), AttemptOutcome::kSuccess);
  EXPECT_EQ(OutcomeOfStatus(500), AttemptOutcome::k5xx);
  EXPECT_EQ(OutcomeOfStatus(501), AttemptOutcome::k5xx);
  for (int s : {502, 503, 504}) EXPECT_EQ(OutcomeOfStatus(s), AttemptOutcome::kGatewayFailure);
}

// Workers race on a host's counters: however the increments interleave,
// exactly one attempt reaches the threshold and tells the sink.
TEST(RecordOutlierOutcomeTest, OneNoticePerStreakAcrossThreads) {
  class CountingSink : public OutlierSink {
   public:
    void OnConsecutiveFailures(HostSharedPtr, OutlierRule rule) override {
      if (rule == OutlierRule::kConsecutive5xx) ++count;
    }
    std::atomic<int> count{0};
  } sink;
  bool ok = false;
  auto host = std::make_shared<Host>("backend", network::Address::FromIp("10.0.0.1", 80, &ok), 1);
  OutlierConfig config;
  config.consecutive_5xx = 1000;
  std::vector<std::thread> workers;
  for (int t = 0; t < 4; ++t) {
    workers.emplace_back([&] {
      for (int i = 0; i < 500; ++i) {
        RecordOutlierOutcome(host, config, AttemptOutcome::k5xx, &sink);
      }
    });
  }
  for (auto& w : workers) w.join();
  EXPECT_EQ(host->outlier().consecutive_5xx.load(), 2000u);
  EXPECT_EQ(host->outlier().interval_failures.load(), 2000u);
  EXPECT_EQ(sink.count.load(), 1);
}

TEST_F(OutlierDetectorTest, Consecutive5xxEjectsAtTheThreshold) {
  config_.consecutive_5xx = 3;
  HostVector hosts = Publish(2);
  Record(hosts[0], AttemptOutcome::k5xx, 2);
  EXPECT_FALSE(Ejected(hosts[0]));
  EXPECT_EQ(hosts[0]->outlier().consecutive_5xx.load(), 2u);
  Record(hosts[0], AttemptOutcome::kGatewayFailure);  // a 503 is a 5xx too
  EXPECT_TRUE(Ejected(hosts[0]));
  EXPECT_FALSE(hosts[0]->usable());
  EXPECT_TRUE(hosts[1]->usable());
  EXPECT_EQ(hosts[0]->outlier().times_ejected, 1u);
  EXPECT_EQ(hosts[0]->healthDetail().last_reason,
            "3 consecutive_5xx; ejected for 1000ms (ejection 1)");
  EXPECT_EQ(stats_.outlier_ejections.Value(), 1u);
  EXPECT_EQ(stats_.hosts_ejected.Value(), 1);
  EXPECT_EQ(snapshot_->health->unusable.load(), 1u);
}

TEST_F(OutlierDetectorTest, ASuccessResetsTheStreak) {
  config_.consecutive_5xx = 3;
  HostVector hosts = Publish(1);
  Record(hosts[0], AttemptOutcome::k5xx, 2);
  Record(hosts[0], AttemptOutcome::kSuccess);
  EXPECT_EQ(hosts[0]->outlier().consecutive_5xx.load(), 0u);
  Record(hosts[0], AttemptOutcome::k5xx, 2);
  EXPECT_FALSE(Ejected(hosts[0]));
  Record(hosts[0], AttemptOutcome::k5xx);
  EXPECT_TRUE(Ejected(hosts[0]));
}

TEST_F(OutlierDetectorTest, GatewayFailuresIgnore500s) {
  config_.consecutive_5xx = 0;
  config_.consecutive_gateway_failure = 3;
  HostVector hosts = Publish(1);
  Record(hosts[0], AttemptOutcome::kGatewayFailure, 2);
  Record(hosts[0], AttemptOutcome::k5xx);  // a 500 breaks the gateway streak
  EXPECT_EQ(hosts[0]->outlier().consecutive_gateway_failure.load(), 0u);
  Record(hosts[0], AttemptOutcome::k5xx, 10);
  EXPECT_FALSE(Ejected(hosts[0]));
  Record(hosts[0], AttemptOutcome::kGatewayFailure, 2);
  Record(hosts[0], AttemptOutcome::kLocalOriginFailure);  // counts as a gateway failure
  EXPECT_TRUE(Ejected(hosts[0]));
  EXPECT_EQ(hosts[0]->healthDetail().last_reason.rfind("3 consecutive_gateway_failure", 0), 0u);
}

TEST_F(OutlierDetectorTest, LocalOriginFailuresCountOnlyWithoutAResponse) {
  config_.consecutive_5xx = 0;
  config_.consecutive_local_origin_failure = 2;
  HostVector hosts = Publish(1);
  Record(hosts[0], AttemptOutcome::kLocalOriginFailure);
  Record(hosts[0], AttemptOutcome::kGatewayFailure);  // it answered: the streak ends
  EXPECT_EQ(hosts[0]->outlier().consecutive_local_origin_failure.load(), 0u);
  Record(hosts[0], AttemptOutcome::kLocalOriginFailure);
  EXPECT_FALSE(Ejected(hosts[0]));
  Record(hosts[0], AttemptOutcome::kLocalOriginFailure);
  EXPECT_TRUE(Ejected(hosts[0]));
  EXPECT_EQ(hosts[0]->healthDetail().last_reason.rfind("2 consecutive_local_origin_failure", 0),
            0u);
}

TEST_F(OutlierDetectorTest, UnejectedByTimerAfterBaseEjectionTime) {
  config_.consecutive_5xx = 1;
  HostVector hosts = Publish(2);
  Record(hosts[0], AttemptOutcome::k5xx);
  ASSERT_TRUE(Ejected(hosts[0]));
  dispatcher_.AdvanceTimeAndRun(milliseconds(999));
  EXPECT_TRUE(Ejected(hosts[0]));
  dispatcher_.AdvanceTimeAndRun(milliseconds(1));
  EXPECT_FALSE(Ejected(hosts[0]));
  EXPECT_TRUE(hosts[0]->usable());
  EXPECT_EQ(hosts[0]->healthDetail().last_reason, "ejection time over");
  EXPECT_EQ(stats_.hosts_ejected.Value(), 0);
  EXPECT_EQ(snapshot_->health->unusable.load(), 0u);
}

TEST_F(OutlierDetectorTest, EjectionTimeGrowsWithEachEjectionUpToTheCap) {
  config_.consecutive_5xx = 1;
  config_.base_ejection_time = milliseconds(1000);
  config_.max_ejection_time = milliseconds(2500);
  HostVector hosts = Publish(2);
  for (int64_t expected : {1000, 2000, 2500, 2500}) {
    Record(hosts[0], AttemptOutcome::k5xx);
    ASSERT_TRUE(Ejected(hosts[0]));
    dispatcher_.AdvanceTimeAndRun(milliseconds(expected - 1));
    EXPECT_TRUE(Ejected(hosts[0])) << expected;
    dispatcher_.AdvanceTimeAndRun(milliseconds(1));
    EXPECT_FALSE(Ejected(hosts[0])) << expected;
  }
  EXPECT_EQ(hosts[0]->outlier().times_ejected, 4u);
  EXPECT_EQ(stats_.outlier_ejections.Value(), 4u);
}

TEST_F(OutlierDetectorTest, TimesEjectedDecaysOncePerIntervalWhileBack) {
  config_.consecutive_5xx = 1;
  config_.interval = milliseconds(10000);
  config_.base_ejection_time = milliseconds(1000);
  HostVector hosts = Publish(2);
  Record(hosts[0], AttemptOutcome::k5xx);
  dispatcher_.AdvanceTimeAndRun(milliseconds(1000));  // back
  Record(hosts[0], AttemptOutcome::k5xx);             // second ejection: 2s
  EXPECT_EQ(hosts[0]->outlier().times_ejected, 2u);
  dispatcher_.AdvanceTimeAndRun(milliseconds(2000));  // back at t=3s
  dispatcher_.AdvanceTimeAndRun(milliseconds(7000));  // the interval at t=10s
  EXPECT_EQ(hosts[0]->outlier().times_ejected, 1u);
  dispatcher_.AdvanceTimeAndRun(milliseconds(10000));
  EXPECT_EQ(hosts[0]->outlier().times_ejected, 0u);
  // Forgiven: the next ejection is base_ejection_time again.
  Record(hosts[0], AttemptOutcome::k5xx);
  dispatcher_.AdvanceTimeAndRun(milliseconds(1000));
  EXPECT_FALSE(Ejected(hosts[0]));
}

TEST_F(OutlierDetectorTest, NoDecayWhileEjected) {
  config_.consecutive_5xx = 1;
  config_.interval = milliseconds(100);
  config_.base_ejection_time = milliseconds(1000);
  HostVector hosts = Publish(2);
  Record(hosts[0], AttemptOutcome::k5xx);
  dispatcher_.AdvanceTimeAndRun(milliseconds(900));  // nine intervals, still ejected
  EXPECT_EQ(hosts[0]->outlier().times_ejected, 1u);
}

TEST_F(OutlierDetectorTest, MaxEjectionPercentBoundsEjectionsButOneIsAlwaysAllowed) {
  config_.consecutive_5xx = 1;
  config_.max_ejection_percent = 10;
  HostVector hosts = Publish(3);
  Record(hosts[0], AttemptOutcome::k5xx);
  EXPECT_TRUE(Ejected(hosts[0]));  // 10% of 3 rounds to 0: one may be anyway
  Record(hosts[1], AttemptOutcome::k5xx);
  EXPECT_FALSE(Ejected(hosts[1]));
  EXPECT_EQ(stats_.outlier_ejections.Value(), 1u);
  // The refused streak starts over: once the first host is back, the next
  // crossing ejects the second.
  EXPECT_EQ(hosts[1]->outlier().consecutive_5xx.load(), 0u);
  dispatcher_.AdvanceTimeAndRun(milliseconds(1000));
  Record(hosts[1], AttemptOutcome::k5xx);
  EXPECT_TRUE(Ejected(hosts[1]));
}

TEST_F(OutlierDetectorTest, MaxEjectionPercentOfLargerClusters) {
  config_.consecutive_5xx = 1;
  config_.max_ejection_percent = 50;
  HostVector hosts = Publish(4);
  for (const auto& h : hosts) Record(h, AttemptOutcome::k5xx);
  int ejected = 0;
  for (const auto& h : hosts) ejected += Ejected(h) ? 1 : 0;
  EXPECT_EQ(ejected, 2);
}

TEST_F(OutlierDetectorTest, ZeroMaxEjectionPercentEjectsNone) {
  config_.consecutive_5xx = 1;
  config_.max_ejection_percent = 0;
  HostVector hosts = Publish(2);
  Record(hosts[0], AttemptOutcome::k5xx);
  EXPECT_FALSE(Ejected(hosts[0]));
}

TEST_F(OutlierDetectorTest, FailurePercentageNeedsVolumeAndMinimumHosts) {
  config_.consecutive_5xx = 0;
  config_.failure_percentage_threshold = 50;
  config_.failure_percentage_request_volume = 10;
  config_.minimum_hosts = 3;
  config_.interval = milliseconds(1000);
  HostVector hosts = Publish(4);
  // Only two hosts have the volume: the rule does not judge.
  Record(hosts[0], AttemptOutcome::kGatewayFailure, 6);
  Record(hosts[0], AttemptOutcome::kSuccess, 4);
  Record(hosts[1], AttemptOutcome::kSuccess, 10);
  Record(hosts[2], AttemptOutcome::kSuccess, 9);  // one short
  dispatcher_.AdvanceTimeAndRun(milliseconds(1000));
  EXPECT_FALSE(Ejected(hosts[0]));
  // The interval's counters started over.
  EXPECT_EQ(hosts[0]->outlier().interval_failures.load(), 0u);
  EXPECT_EQ(hosts[1]->outlier().interval_successes.load(), 0u);
  // Three hosts with volume: 60% failed >= 50% is ejected, 40% is not.
  Record(hosts[0], AttemptOutcome::kLocalOriginFailure, 6);
  Record(hosts[0], AttemptOutcome::kSuccess, 4);
  Record(hosts[1], AttemptOutcome::kGatewayFailure, 4);
  Record(hosts[1], AttemptOutcome::kSuccess, 6);
  Record(hosts[2], AttemptOutcome::kSuccess, 10);
  dispatcher_.AdvanceTimeAndRun(milliseconds(1000));
  EXPECT_TRUE(Ejected(hosts[0]));
  EXPECT_FALSE(Ejected(hosts[1]));
  EXPECT_FALSE(Ejected(hosts[2]));
  EXPECT_EQ(hosts[0]->healthDetail().last_reason.rfind("failure_percentage: 60% of 10", 0), 0u);
}

TEST_F(OutlierDetectorTest, SuccessRateEjectsHostsBelowMeanMinusFactorStdev) {
  config_.consecutive_5xx = 0;
  config_.success_rate_stdev_factor = 1.0;
  config_.success_rate_request_volume = 20;
  config_.minimum_hosts = 4;
  config_.interval = milliseconds(1000);
  HostVector hosts = Publish(5);
  // Rates 100, 100, 100, 95 and 50 (host 5): mean 89, stdev 19.6: only
  // host 5 is below 69.4.
  for (int i = 0; i < 3; ++i) Record(hosts[i], AttemptOutcome::kSuccess, 20);
  Record(hosts[3], AttemptOutcome::kSuccess, 19);
  Record(hosts[3], AttemptOutcome::k5xx);
  Record(hosts[4], AttemptOutcome::kSuccess, 10);
  Record(hosts[4], AttemptOutcome::k5xx, 10);
  dispatcher_.AdvanceTimeAndRun(milliseconds(1000));
  EXPECT_TRUE(Ejected(hosts[4]));
  for (int i = 0; i < 4; ++i) EXPECT_FALSE(Ejected(hosts[i])) << i;
  EXPECT_EQ(hosts[4]->healthDetail().last_reason.rfind("success_rate: 50% is below", 0), 0u);
}

TEST_F(OutlierDetectorTest, SuccessRateNeedsMinimumHostsWithVolume) {
  config_.consecutive_5xx = 0;
  config_.success_rate_stdev_factor = 1.0;
  config_.success_rate_request_volume = 20;
  config_.minimum_hosts = 5;
  config_.interval = milliseconds(1000);
  HostVector hosts = Publish(5);
  for (int i = 0; i < 3; ++i) Record(hosts[i], AttemptOutcome::kSuccess, 20);
  Record(hosts[3], AttemptOutcome::kSuccess, 19);  // below the volume
  Record(hosts[4], AttemptOutcome::k5xx, 20);
  dispatcher_.AdvanceTimeAndRun(milliseconds(1000));
  for (const auto& h : hosts) EXPECT_FALSE(Ejected(h));
}

TEST_F(OutlierDetectorTest, AHostRemovedWhileEjectedIsForgotten) {
  config_.consecutive_5xx = 1;
  config_.max_ejection_percent = 10;  // one host of a small cluster
  HostVector hosts = Publish(4);
  Record(hosts[0], AttemptOutcome::k5xx);
  ASSERT_TRUE(Ejected(hosts[0]));
  // A worker's notice about a host that the next config removes lands
  // after the removal: nothing happens to it.
  RecordOutlierOutcome(hosts[3], *cluster_config_->outlier, AttemptOutcome::k5xx, &detector_);
  Publish({hosts[1], hosts[2]});
  dispatcher_.RunPending();
  EXPECT_EQ(hosts[3]->healthFlags(), 0u);
  EXPECT_EQ(stats_.outlier_ejections.Value(), 1u);
  EXPECT_EQ(stats_.hosts_ejected.Value(), 0);
  // The removed host is no longer the detector's: its timer passes
  // without a word on it (no stats moved), and it does not count against
  // max_ejection_percent of the new host set.
  dispatcher_.AdvanceTimeAndRun(milliseconds(2000));
  EXPECT_EQ(stats_.hosts_ejected.Value(), 0);
  Record(hosts[2], AttemptOutcome::k5xx);
  EXPECT_TRUE(Ejected(hosts[2]));
  EXPECT_EQ(stats_.hosts_ejected.Value(), 1);
}

TEST_F(OutlierDetectorTest, HostsThatStayKeepTheirEjection) {
  config_.consecutive_5xx = 1;
  HostVector hosts = Publish(2);
  Record(hosts[0], AttemptOutcome::k5xx);
  dispatcher_.AdvanceTimeAndRun(milliseconds(500));
  HostSharedPtr added = MakeHost(9);
  Publish({hosts[0], hosts[1], added});
  EXPECT_TRUE(Ejected(hosts[0]));
  EXPECT_EQ(snapshot_->health->unusable.load(), 1u);
  dispatcher_.AdvanceTimeAndRun(milliseconds(499));
  EXPECT_TRUE(Ejected(hosts[0]));
  dispatcher_.AdvanceTimeAndRun(milliseconds(1));
  EXPECT_FALSE(Ejected(hosts[0]));
}

TEST_F(OutlierDetectorTest, RemovingOutlierDetectionLiftsEjections) {
  config_.consecutive_5xx = 1;
  HostVector hosts = Publish(2);
  Record(hosts[0], AttemptOutcome::k5xx);
  ASSERT_TRUE(Ejected(hosts[0]));
  Publish(hosts, /*with_outlier=*/false);
  EXPECT_FALSE(Ejected(hosts[0]));
  EXPECT_FALSE(detector_.Tracks("backend"));
  EXPECT_EQ(stats_.hosts_ejected.Value(), 0);
  EXPECT_EQ(hosts[0]->outlier().times_ejected, 0u);
}

TEST_F(OutlierDetectorTest, ALoweredThresholdRestartsTheStreaks) {
  config_.consecutive_5xx = 5;
  HostVector hosts = Publish(2);
  Record(hosts[0], AttemptOutcome::k5xx, 4);
  config_.consecutive_5xx = 3;
  Publish(hosts);
  EXPECT_EQ(hosts[0]->outlier().consecutive_5xx.load(), 0u);
  Record(hosts[0], AttemptOutcome::k5xx, 3);
  EXPECT_TRUE(Ejected(hosts[0]));
}

TEST_F(OutlierDetectorTest, StoppedDetectorNeitherEjectsNorTicks) {
  config_.consecutive_5xx = 1;
  HostVector hosts = Publish(2);
  Record(hosts[0], AttemptOutcome::k5xx);
  ASSERT_TRUE(Ejected(hosts[0]));
  detector_.Stop();
  Record(hosts[1], AttemptOutcome::k5xx);
  EXPECT_FALSE(Ejected(hosts[1]));
  dispatcher_.AdvanceTimeAndRun(milliseconds(5000));
  EXPECT_TRUE(Ejected(hosts[0]));  // drain: the timers are off
}

}  // namespace
}  // namespace portway::upstream
