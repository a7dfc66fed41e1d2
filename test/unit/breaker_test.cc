// The breaker state machine of portway.circuit_breaker, on simulated time.
#include "filters/circuit_breaker/breaker.h"

#include "gtest/gtest.h"

namespace portway::filters::circuit_breaker {
namespace {

using namespace std::chrono_literals;
using Admission = Breaker::Admission;

class BreakerTest : public testing::Test {
 protected:
  // Simulated time: starts far from the epoch so window buckets are real.
  Time now = Time() + 1000h;
  BreakerPolicy policy;
  Breaker b;
  Transition t;

  // Probes report with the half-open period of the last admission.
  void Record(bool failure, bool probe = false) {
    t = Transition();
    b.Record(policy, now, failure, probe, &t, period);
  }
  Admission Admit() {
    t = Transition();
    return b.Admit(policy, now, &t, &period);
  }
  uint64_t period = 0;
};

TEST_F(BreakerTest, OpensAfterConsecutiveFailures) {
  policy.consecutive_failures = 3;
  Record(true);
  Record(true);
  EXPECT_EQ(b.state(), BreakerState::kClosed);
  Record(true);
  EXPECT_EQ(b.state(), BreakerState::kOpen);
  EXPECT_TRUE(t.changed);
  EXPECT_EQ(t.from, BreakerState::kClosed);
  EXPECT_EQ(t.reason, "3 consecutive failures");
  EXPECT_EQ(b.opened_total(), 1u);
  EXPECT_EQ(Admit(), Admission::kNo);
}

TEST_F(BreakerTest, SuccessResetsTheRun) {
  policy.consecutive_failures = 3;
  Record(true);
  Record(true);
  Record(false);
  Record(true);
  Record(true);
  EXPECT_EQ(b.state(), BreakerState::kClosed);
  EXPECT_EQ(b.consecutive_failures(), 2u);
}

TEST_F(BreakerTest, FailureRateNeedsMinRequests) {
  policy.consecutive_failures = 0;
  policy.failure_rate_threshold = 50;
  policy.min_requests = 10;
  policy.window = 10s;
  // 4 failures of 8: 50%, but under min_requests.
  for (int i = 0; i < 4; ++i) {
    Record(false);
    Record(true);
  }
  EXPECT_EQ(b.state(), BreakerState::kClosed);
  Record(false);  // 9 requests
  Record(true);   // 10 requests, 5 failures: 50%
  EXPECT_EQ(b.state(), BreakerState::kOpen);
  EXPECT_EQ(t.reason, "failure rate 50% (5 of 10) over 10000ms");
}

TEST_F(BreakerTest, FailureRateBelowThresholdStaysClosed) {
  policy.consecutive_failures = 0;
  policy.failure_rate_threshold = 50;
  policy.min_requests = 4;
  for (int i = 0; i < 20; ++i) {
    Record(false);
    Record(false);
    Record(true);  // 33%
  }
  EXPECT_EQ(b.state(), BreakerState::kClosed);
}

TEST_F(BreakerTest, OldFailuresLeaveTheWindow) {
  policy.consecutive_failures = 0;
  policy.failure_rate_threshold = 50;
  policy.min_requests = 4;
  policy.window = 10s;
  Record(true);
  Record(true);
  Record(true);  // 3 of 3, under min_requests
  uint64_t requests = 0, failures = 0;
  b.WindowCounts(policy, now, &requests, &failures);
  EXPECT_EQ(requests, 3u);
  now += 11s;  // they slide out
  b.WindowCounts(policy, now, &requests, &failures);
  EXPECT_EQ(requests, 0u);
  Record(false);
  Record(false);
  Record(false);
  Record(true);  // 1 of 4: 25%
  EXPECT_EQ(b.state(), BreakerState::kClosed);
}

TEST_F(BreakerTest, HalfOpensAfterTheOpenDuration) {
  policy.consecutive_failures = 1;
  policy.open_duration = 5s;
  Record(true);
  ASSERT_EQ(b.state(), BreakerState::kOpen);
  now += 4999ms;
  EXPECT_EQ(Admit(), Admission::kNo);
  EXPECT_FALSE(t.changed);
  now += 1ms;
  EXPECT_EQ(Admit(), Admission::kProbe);
  EXPECT_TRUE(t.changed);
  EXPECT_EQ(t.to, BreakerState::kHalfOpen);
  // One probe by default: the next request waits for its verdict.
  EXPECT_EQ(Admit(), Admission::kNo);
}

TEST_F(BreakerTest, ProbesCloseItWhenAllSucceed) {
  policy.consecutive_failures = 1;
  policy.half_open_requests = 2;
  Record(true);
  now += policy.open_duration;
  EXPECT_EQ(Admit(), Admission::kProbe);
  EXPECT_EQ(Admit(), Admission::kProbe);
  EXPECT_EQ(Admit(), Admission::kNo);
  // A request admitted before the trip finishing now decides nothing.
  Record(false, /*probe=*/false);
  EXPECT_EQ(b.state(), BreakerState::kHalfOpen);
  Record(false, true);
  EXPECT_EQ(b.state(), BreakerState::kHalfOpen);
  Record(false, true);
  EXPECT_EQ(b.state(), BreakerState::kClosed);
  EXPECT_EQ(t.reason, "2 half-open probe(s) succeeded");
  EXPECT_EQ(Admit(), Admission::kYes);
}

TEST_F(BreakerTest, FailedProbeReopensForLongerUpToTheCap) {
  policy.consecutive_failures = 1;
  policy.open_duration = 1s;
  policy.max_open_duration = 3s;
  Record(true);
  EXPECT_EQ(b.open_duration(), 1s);
  std::vector<std::chrono::milliseconds> durations;
  for (int i = 0; i < 3; ++i) {
    now += b.open_duration();
    ASSERT_EQ(Admit(), Admission::kProbe);
    Record(true, true);
    ASSERT_EQ(b.state(), BreakerState::kOpen);
    EXPECT_EQ(t.reason, "a half-open probe failed");
    durations.push_back(b.open_duration());
  }
  EXPECT_EQ(durations, (std::vector<std::chrono::milliseconds>{2s, 3s, 3s}));
  EXPECT_EQ(b.open_until(), now + 3s);
  // Closing resets the growth: the next trip is short again.
  now += 3s;
  ASSERT_EQ(Admit(), Admission::kProbe);
  Record(false, true);
  ASSERT_EQ(b.state(), BreakerState::kClosed);
  Record(true);
  EXPECT_EQ(b.open_duration(), 1s);
  EXPECT_EQ(b.opened_total(), 5u);
}

TEST_F(BreakerTest, ReleasedProbeFreesItsSlot) {
  policy.consecutive_failures = 1;
  Record(true);
  now += policy.open_duration;
  EXPECT_EQ(Admit(), Admission::kProbe);
  EXPECT_EQ(Admit(), Admission::kNo);
  b.ReleaseProbe(period);  // the client left
  EXPECT_EQ(Admit(), Admission::kProbe);
}

// A probe from an earlier half-open period that reports late decides
// nothing about the current one, and does not free one of its slots.
TEST_F(BreakerTest, LateProbesFromAnEarlierPeriodAreIgnored) {
  policy.consecutive_failures = 1;
  policy.half_open_requests = 2;
  Record(true);
  now += policy.open_duration;
  ASSERT_EQ(Admit(), Admission::kProbe);
  uint64_t first_period = period;
  ASSERT_EQ(Admit(), Admission::kProbe);
  Record(true, true);  // the second probe fails fast: open again, for 10s
  ASSERT_EQ(b.state(), BreakerState::kOpen);
  now += b.open_duration();
  ASSERT_EQ(Admit(), Admission::kProbe);  // a new period
  ASSERT_NE(period, first_period);
  // The first period's probe finally answers: ignored either way.
  t = Transition();
  b.Record(policy, now, true, true, &t, first_period);
  EXPECT_EQ(b.state(), BreakerState::kHalfOpen);
  b.Record(policy, now, false, true, &t, first_period);
  EXPECT_EQ(b.state(), BreakerState::kHalfOpen);
  b.ReleaseProbe(first_period);
  ASSERT_EQ(Admit(), Admission::kProbe);  // the second slot of this period
  EXPECT_EQ(Admit(), Admission::kNo);     // and no third
  Record(false, true);
  Record(false, true);
  EXPECT_EQ(b.state(), BreakerState::kClosed);
}

TEST_F(BreakerTest, OutcomesWhileOpenAreIgnored) {
  policy.consecutive_failures = 2;
  Record(true);
  Record(true);
  ASSERT_EQ(b.state(), BreakerState::kOpen);
  Time until = b.open_until();
  Record(true);  // admitted before the trip
  Record(false);
  EXPECT_EQ(b.state(), BreakerState::kOpen);
  EXPECT_EQ(b.open_until(), until);
  EXPECT_EQ(b.opened_total(), 1u);
}

}  // namespace
}  // namespace portway::filters::circuit_breaker
