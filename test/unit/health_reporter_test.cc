// The gateway's host health report to the control plane, in simulated
// time: what a report says (only unusable hosts, flag names, reason,
// since), that changes are coalesced to one report per second, that a host
// removed from the config leaves the report, that an unchanged report is
// not sent again, and the cap on hosts per report.
#include "core/discovery/health_reporter.h"

#include "core/upstream/health.h"
#include "gtest/gtest.h"
#include "test/unit/sim_dispatcher.h"

namespace portway::discovery {
namespace {

using std::chrono::milliseconds;
namespace flag = upstream::health_flag;

class HealthReporterTest : public testing::Test {
 protected:
  upstream::HostSharedPtr AddHost(const std::string& cluster, const std::string& address) {
    auto host = std::make_shared<upstream::Host>(cluster, *network::Address::Parse(address), 1);
    hosts_.push_back(host);
    return host;
  }
  std::unique_ptr<HealthReporter> MakeReporter(HealthReporter::Options options = {}) {
    auto reporter = std::make_unique<HealthReporter>(
        dispatcher_,
        [this](const std::function<void(const upstream::Host&)>& visit) {
          ++walks_;
          for (const auto& h : hosts_) visit(*h);
        },
        [this](v1::HealthReport report) { sent_.push_back(std::move(report)); }, options);
    health_.AddListener(
        [r = reporter.get()](const upstream::HostSharedPtr&, uint32_t) { r->HostChanged(); });
    return reporter;
  }

  test::SimDispatcher dispatcher_;
  upstream::HostHealthManager health_{dispatcher_};
  upstream::HostVector hosts_;
  std::vector<v1::HealthReport> sent_;
  int walks_ = 0;
};

TEST_F(HealthReporterTest, ReportsOnlyUnusableHostsWithFlagsReasonAndSince) {
  auto a = AddHost("web", "127.0.0.1:8001");
  AddHost("web", "127.0.0.1:8002");
  auto reporter = MakeReporter();
  dispatcher_.RunPending();
  EXPECT_TRUE(sent_.empty());  // all healthy: nothing to say
  const int64_t before_ms =
      std::chrono::duration_cast<milliseconds>(dispatcher_.SystemNow().time_since_epoch()).count();
  health_.Set(a, flag::kOutlier, true, "5 consecutive 5xx", nullptr);
  dispatcher_.AdvanceTimeAndRun(milliseconds(10));
  health_.Set(a, flag::kActiveCheck, true, "status 503", nullptr);
  dispatcher_.AdvanceTimeAndRun(milliseconds(1000));
  ASSERT_EQ(sent_.size(), 2u);
  ASSERT_EQ(sent_[1].unhealthy_size(), 1);
  const v1::HostHealth& h = sent_[1].unhealthy(0);
  EXPECT_EQ(h.cluster(), "web");
  EXPECT_EQ(h.address(), "127.0.0.1:8001");
  EXPECT_EQ(std::vector<std::string>(h.flags().begin(), h.flags().end()),
            (std::vector<std::string>{"active_check", "outlier"}));
  EXPECT_EQ(h.reason(), "status 503");
  // Since its oldest flag: the outlier ejection.
  EXPECT_EQ(h.since_unix_ms(), before_ms);
  EXPECT_EQ(sent_[1].omitted(), 0u);
}

TEST_F(HealthReporterTest, CoalescesChangesToOneReportPerSecond) {
  auto a = AddHost("web", "127.0.0.1:8001");
  auto b = AddHost("web", "127.0.0.1:8002");
  auto reporter = MakeReporter();
  dispatcher_.RunPending();
  walks_ = 0;
  // The first change after a quiet second goes out at once.
  health_.Set(a, flag::kActiveCheck, true, "timeout", nullptr);
  dispatcher_.RunPending();
  ASSERT_EQ(sent_.size(), 1u);
  // A burst right after: held until a second after the last report, then
  // one report with all of it; no host walk meanwhile.
  for (int i = 0; i < 50; ++i) {
    health_.Set(b, flag::kOutlier, i % 2 == 0, "flapping", nullptr);
    dispatcher_.AdvanceTimeAndRun(milliseconds(10));
  }
  health_.Set(b, flag::kOutlier, true, "ejected", nullptr);
  EXPECT_EQ(sent_.size(), 1u);
  EXPECT_EQ(walks_, 1);
  EXPECT_EQ(dispatcher_.NextTimerIn(), milliseconds(500));
  dispatcher_.AdvanceTimeAndRun(milliseconds(499));
  EXPECT_EQ(sent_.size(), 1u);
  dispatcher_.AdvanceTimeAndRun(milliseconds(1));
  ASSERT_EQ(sent_.size(), 2u);
  EXPECT_EQ(walks_, 2);
  EXPECT_EQ(sent_[1].unhealthy_size(), 2);
  EXPECT_EQ(reporter->reports(), 2u);
}

TEST_F(HealthReporterTest, AHostRemovedFromTheConfigLeavesTheReport) {
  auto a = AddHost("web", "127.0.0.1:8001");
  health_.Set(a, flag::kControlPlaneUnhealthy, true, "endpoint health_status says so", nullptr);
  auto reporter = MakeReporter();  // the config it starts with has it unusable
  dispatcher_.RunPending();
  ASSERT_EQ(sent_.size(), 1u);
  EXPECT_EQ(sent_[0].unhealthy(0).flags(0), "control_plane_unhealthy");
  // A new config without the host: no flag changed, yet the report must
  // drop it.
  hosts_.clear();
  AddHost("web", "127.0.0.1:8009");
  reporter->ConfigChanged();
  dispatcher_.AdvanceTimeAndRun(milliseconds(1000));
  ASSERT_EQ(sent_.size(), 2u);
  EXPECT_EQ(sent_[1].unhealthy_size(), 0);
  // With nothing reported, a new config costs no walk.
  walks_ = 0;
  reporter->ConfigChanged();
  dispatcher_.AdvanceTimeAndRun(milliseconds(5000));
  EXPECT_EQ(walks_, 0);
  EXPECT_EQ(sent_.size(), 2u);
}

TEST_F(HealthReporterTest, AnUnchangedReportIsNotSentAgain) {
  auto a = AddHost("web", "127.0.0.1:8001");
  auto reporter = MakeReporter();
  health_.Set(a, flag::kOutlier, true, "ejected", nullptr);
  dispatcher_.AdvanceTimeAndRun(milliseconds(1000));
  ASSERT_EQ(sent_.size(), 1u);
  reporter->ConfigChanged();  // same hosts, same state
  dispatcher_.AdvanceTimeAndRun(milliseconds(2000));
  EXPECT_EQ(sent_.size(), 1u);
  // Set and cleared within the second: the report would be the same.
  health_.Set(a, flag::kActiveCheck, true, "x", nullptr);
  health_.Set(a, flag::kActiveCheck, false, "y", nullptr);
  dispatcher_.AdvanceTimeAndRun(milliseconds(2000));
  // The reason changed ("y"): that is news.
  ASSERT_EQ(sent_.size(), 2u);
  EXPECT_EQ(sent_[1].unhealthy(0).reason(), "y");
}

TEST_F(HealthReporterTest, CapsTheHostsPerReportAndCountsTheRest) {
  for (int i = 0; i < 5; ++i) {
    auto h = AddHost("web", "127.0.0.1:" + std::to_string(8001 + i));
    health_.Set(h, flag::kActiveCheck, true, "down", nullptr);
  }
  HealthReporter::Options options;
  options.max_hosts = 3;
  auto reporter = MakeReporter(options);
  dispatcher_.RunPending();
  ASSERT_EQ(sent_.size(), 1u);
  EXPECT_EQ(sent_[0].unhealthy_size(), 3);
  EXPECT_EQ(sent_[0].unhealthy(2).address(), "127.0.0.1:8003");
  EXPECT_EQ(sent_[0].omitted(), 2u);
}

TEST_F(HealthReporterTest, CapsTheReportsBytesAndCutsLongReasons) {
  for (int i = 0; i < 20; ++i) {
    auto h = AddHost("web", "127.0.0.1:" + std::to_string(8001 + i));
    health_.Set(h, flag::kActiveCheck, true, std::string(10000, 'r'), nullptr);
  }
  HealthReporter::Options options;
  options.max_bytes = 1000;  // about three hosts with a 256-byte reason
  auto reporter = MakeReporter(options);
  dispatcher_.RunPending();
  ASSERT_EQ(sent_.size(), 1u);
  EXPECT_EQ(sent_[0].unhealthy(0).reason().size(), HealthReporter::kMaxReasonBytes);
  EXPECT_EQ(sent_[0].unhealthy_size(), 4);  // the one that crossed the cap is kept
  EXPECT_EQ(sent_[0].omitted(), 16u);
  EXPECT_LT(sent_[0].ByteSizeLong(), 1000u + 400u);
}

}  // namespace
}  // namespace portway::discovery
