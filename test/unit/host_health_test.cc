// Core-owned host health: flags, the host set's unusable count, the panic
// threshold in the balancers, and HostHealthManager's bookkeeping.
#include "core/upstream/health.h"

#include <set>

#include "core/server/stats.h"
#include "gtest/gtest.h"
#include "test/unit/sim_dispatcher.h"

namespace portway::upstream {
namespace {

HostVector MakeHosts(int n, const std::string& cluster = "web") {
  HostVector hosts;
  for (int i = 0; i < n; ++i) {
    bool ok = false;
    hosts.push_back(std::make_shared<Host>(
        cluster, network::Address::FromIp("10.0.0." + std::to_string(i + 1), 80, &ok), 1));
  }
  return hosts;
}

TEST(HostHealthTest, FlagsComeAndGoEachOnItsOwn) {
  HostVector hosts = MakeHosts(1);
  Host& h = *hosts[0];
  EXPECT_TRUE(h.SetHealthFlag(health_flag::kActiveCheck, true));
  EXPECT_FALSE(h.SetHealthFlag(health_flag::kOutlier, true));  // already unusable
  EXPECT_EQ(h.health(), HealthState::kUnhealthy);
  EXPECT_FALSE(h.SetHealthFlag(health_flag::kActiveCheck, false));  // the outlier flag stays
  EXPECT_FALSE(h.usable());
  EXPECT_TRUE(h.SetHealthFlag(health_flag::kOutlier, false));
  EXPECT_TRUE(h.usable());
  h.SetHealthFlag(health_flag::kControlPlaneDraining, true);
  EXPECT_EQ(h.health(), HealthState::kDraining);
  EXPECT_EQ(HealthFlagNames(health_flag::kActiveCheck | health_flag::kControlPlaneDraining),
            (std::vector<std::string>{"active_check", "control_plane_draining"}));
}

TEST(HostHealthTest, TheHostSetCountsUnusableHostsAndPanicsBelowTheThreshold) {
  HostVector hosts = MakeHosts(4);
  auto set = std::make_shared<HostSetHealth>(4, 50);
  hosts[0]->SetHealthFlag(health_flag::kActiveCheck, true);  // before attaching
  for (auto& h : hosts) h->AttachHealth(set);
  EXPECT_EQ(set->unusable.load(), 1u);
  EXPECT_FALSE(set->Panic());  // 3 of 4
  hosts[1]->SetHealthFlag(health_flag::kOutlier, true);
  EXPECT_FALSE(set->Panic());  // 2 of 4: exactly 50% is not below it
  hosts[2]->SetHealthFlag(health_flag::kOutlier, true);
  EXPECT_TRUE(set->Panic());  // 1 of 4
  hosts[2]->SetHealthFlag(health_flag::kControlPlaneUnhealthy, true);
  EXPECT_EQ(set->unusable.load(), 3u);  // a second flag does not count twice
  hosts[2]->SetHealthFlag(health_flag::kOutlier, false);
  hosts[2]->SetHealthFlag(health_flag::kControlPlaneUnhealthy, false);
  EXPECT_EQ(set->unusable.load(), 2u);
  EXPECT_FALSE(set->Panic());
  EXPECT_FALSE(HostSetHealth(4, 0).Panic());
}

TEST(HostHealthTest, InPanicEveryHostIsPickedAndAvoidIsHonoured) {
  HostVector hosts = MakeHosts(4);
  auto set = std::make_shared<HostSetHealth>(4, 50);
  for (auto& h : hosts) h->AttachHealth(set);
  stats::Store store;
  stats::ClusterStats stats(store, "web");
  test::SimRandom random;
  for (LbPolicy policy : {LbPolicy::kRoundRobin, LbPolicy::kLeastRequest, LbPolicy::kRandom,
                          LbPolicy::kRingHash, LbPolicy::kMaglev}) {
    auto lb = MakeLoadBalancerFactory(policy, hosts, set, &stats)->Create(random);
    for (int i = 0; i < 3; ++i) hosts[i]->SetHealthFlag(health_flag::kActiveCheck, true);
    std::set<const Host*> picked;
    for (int i = 0; i < 400; ++i) picked.insert(lb->ChooseHost(nullptr).get());
    EXPECT_EQ(picked.size(), 4u) << static_cast<int>(policy);
    // Hashed: one key, one host, every time; avoid moves it.
    LbContext context{.has_hash = true, .hash = 12345};
    HostSharedPtr first = lb->ChooseHost(&context);
    EXPECT_EQ(lb->ChooseHost(&context), first);
    EXPECT_NE(lb->ChooseHost(&context, {first.get()}), first);
    // Out of panic: only the usable host.
    hosts[0]->SetHealthFlag(health_flag::kActiveCheck, false);
    hosts[1]->SetHealthFlag(health_flag::kActiveCheck, false);
    for (int i = 0; i < 50; ++i) EXPECT_TRUE(lb->ChooseHost(nullptr)->usable());
    hosts[0]->SetHealthFlag(health_flag::kActiveCheck, false);
    hosts[1]->SetHealthFlag(health_flag::kActiveCheck, false);
    hosts[2]->SetHealthFlag(health_flag::kActiveCheck, false);
  }
  EXPECT_GE(stats.lb_panic.Value(), 5u * 403);
}

TEST(HostHealthTest, WithoutPanicNoUsableHostMeansNoHost) {
  HostVector hosts = MakeHosts(2);
  auto set = std::make_shared<HostSetHealth>(2, 0);
  for (auto& h : hosts) {
    h->AttachHealth(set);
    h->SetHealthFlag(health_flag::kOutlier, true);
  }
  test::SimRandom random;
  auto lb = MakeLoadBalancerFactory(LbPolicy::kRoundRobin, hosts, set)->Create(random);
  EXPECT_EQ(lb->ChooseHost(nullptr), nullptr);
}

TEST(HostHealthTest, TheManagerKeepsReasonsSinceStatsAndTellsListeners) {
  test::SimDispatcher clock;
  HostHealthManager health(clock);
  stats::Store store;
  stats::ClusterStats stats(store, "web");
  auto config = std::make_shared<ClusterConfig>();
  config->name = "web";
  config->stats = &stats;
  HostVector hosts = MakeHosts(3);
  auto cluster =
      MakeClusterSnapshot(config, hosts, "", {0, health_flag::kControlPlaneUnhealthy, 0});
  std::vector<std::pair<std::string, uint32_t>> seen;
  health.AddListener([&](const HostSharedPtr& h, uint32_t old_flags) {
    seen.emplace_back(h->addressString(), old_flags);
  });
  health.Adopt(*cluster);
  EXPECT_EQ(hosts[1]->healthFlags(), health_flag::kControlPlaneUnhealthy);
  EXPECT_EQ(cluster->health->unusable.load(), 1u);
  EXPECT_EQ(stats.hosts.Value(), 3);
  EXPECT_EQ(stats.healthy_hosts.Value(), 2);
  ASSERT_EQ(seen.size(), 1u);

  clock.AdvanceTimeAndRun(std::chrono::milliseconds(5000));
  health.Set(hosts[0], health_flag::kOutlier, true, "5 consecutive 5xx", &stats);
  EXPECT_EQ(stats.healthy_hosts.Value(), 1);
  EXPECT_EQ(stats.outlier_ejections.Value(), 1u);
  EXPECT_EQ(stats.hosts_ejected.Value(), 1);
  EXPECT_EQ(hosts[0]->healthDetail().last_reason, "5 consecutive 5xx");
  const int64_t since = hosts[0]->healthDetail().since_unix_ms[1];
  EXPECT_EQ(since, std::chrono::duration_cast<std::chrono::milliseconds>(
                       clock.SystemNow().time_since_epoch())
                       .count());
  // Setting what is already set changes nothing and tells nobody.
  health.Set(hosts[0], health_flag::kOutlier, true, "again", &stats);
  EXPECT_EQ(seen.size(), 2u);
  EXPECT_EQ(stats.outlier_ejections.Value(), 1u);
  health.Set(hosts[0], health_flag::kOutlier, false, "ejection over", &stats);
  EXPECT_EQ(hosts[0]->healthDetail().since_unix_ms[1], 0);
  EXPECT_EQ(stats.hosts_ejected.Value(), 0);
  EXPECT_EQ(stats.healthy_hosts.Value(), 2);
  EXPECT_EQ(stats.hosts_became_usable.Value(), 1u);

  // The next snapshot says the endpoint is healthy: Adopt clears the flag.
  auto next = MakeClusterSnapshot(config, hosts, "");
  health.Adopt(*next);
  EXPECT_TRUE(hosts[1]->usable());
  EXPECT_EQ(next->health->unusable.load(), 0u);
}

}  // namespace
}  // namespace portway::upstream
