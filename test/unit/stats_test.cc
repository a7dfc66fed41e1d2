// The stats store's Prometheus text: HELP and TYPE per family, histograms
// in seconds, and per-cluster retry counters.
#include "core/server/stats.h"

#include <chrono>
#include <string>

#include "filters/retry/retry_filter.h"
#include "gtest/gtest.h"

namespace portway::stats {
namespace {

using std::chrono::microseconds;
using std::chrono::milliseconds;
using std::chrono::seconds;

TEST(HistogramTest, RecordsDurationsInSecondsBuckets) {
  Histogram h;
  h.Record(microseconds(400));  // 0.0004 s: the first bucket (le 0.0005)
  h.Record(milliseconds(3));    // le 0.005
  h.Record(milliseconds(300));  // le 0.5
  h.Record(seconds(45));        // le 60
  h.Record(seconds(120));       // +Inf
  EXPECT_EQ(h.Count(), 5u);
  EXPECT_DOUBLE_EQ(h.SumSeconds(), 0.0004 + 0.003 + 0.3 + 45 + 120);
  EXPECT_EQ(h.Bucket(0), 1u);
  EXPECT_EQ(h.Bucket(3), 1u);   // 0.005
  EXPECT_EQ(h.Bucket(9), 1u);   // 0.5
  EXPECT_EQ(h.Bucket(15), 1u);  // 60
  EXPECT_EQ(h.Bucket(Histogram::kBounds.size()), 1u);
}

TEST(HistogramTest, ANegativeDurationCountsAsZero) {
  Histogram h;
  h.Record(milliseconds(-5));
  EXPECT_EQ(h.Bucket(0), 1u);
  EXPECT_EQ(h.SumSeconds(), 0);
}

TEST(StoreTest, EveryFamilyHasHelpThenTypeOnce) {
  Store store;
  store.GetCounter("portway_downstream_requests_total", {{"listener", "a"}}).Inc();
  store.GetCounter("portway_downstream_requests_total", {{"listener", "b"}}).Inc(2);
  store.GetCounter("custom_module_things_total", {}).Inc();
  store.GetHistogram("portway_downstream_request_duration_seconds", {{"listener", "a"}})
      .Record(milliseconds(20));
  std::string text = store.RenderPrometheus();
  EXPECT_NE(text.find("# HELP portway_downstream_requests_total Requests whose head was "
                      "accepted.\n# TYPE portway_downstream_requests_total counter\n"),
            std::string::npos)
      << text;
  EXPECT_EQ(text.find("# TYPE portway_downstream_requests_total"),
            text.rfind("# TYPE portway_downstream_requests_total"));
  // A family nobody described still gets a HELP line.
  EXPECT_NE(text.find("# HELP custom_module_things_total Portway metric "
                      "custom_module_things_total (no description).\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("portway_downstream_request_duration_seconds_bucket{listener=\"a\","
                      "le=\"0.025\"} 1\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("portway_downstream_request_duration_seconds_sum{listener=\"a\"} 0.02\n"),
            std::string::npos)
      << text;
}

TEST(StoreTest, ClusterHistogramsAreSeconds) {
  Store store;
  ClusterStats cluster(store, "web");
  cluster.connect_time.Record(microseconds(1500));
  std::string text = store.RenderPrometheus();
  EXPECT_NE(text.find("# TYPE portway_upstream_connect_duration_seconds histogram\n"),
            std::string::npos);
  EXPECT_NE(text.find("portway_upstream_connect_duration_seconds_sum{cluster=\"web\"} 0.0015\n"),
            std::string::npos)
      << text;
  EXPECT_EQ(text.find("_ms"), std::string::npos) << text;
}

TEST(RetryCountersTest, PerClusterCountersAreLabelledAndShared) {
  filters::retry::Shared shared;
  shared.per_cluster = true;
  auto a = shared.For("unit-a");
  auto again = shared.For("unit-a");
  auto b = shared.For("unit-b");
  EXPECT_EQ(a.attempts, again.attempts);
  EXPECT_NE(a.attempts, b.attempts);
  a.attempts->Inc();
  std::string text = GlobalStore().RenderPrometheus();
  EXPECT_NE(
      text.find("portway_retry_attempts_total{filter=\"portway.retry\",cluster=\"unit-a\"} 1"),
      std::string::npos)
      << text;
}

}  // namespace
}  // namespace portway::stats
