// ClusterManager::Update in isolation, on simulated time with in-memory
// upstream connections: what a new set of clusters keeps (balancers,
// pools and their keep-alive connections, host state) and what it drains.
#include "core/upstream/cluster_manager.h"

#include "gtest/gtest.h"
#include "test/unit/sim_dispatcher.h"
#include "test/unit/upstream_fakes.h"

namespace portway::upstream {
namespace {

using test::FakeConnection;

class ClusterManagerTest : public testing::Test {
 protected:
  ClusterManagerTest()
      : cm_(dispatcher_, std::make_unique<test::FixedSeedLbRandom>()),
        config_a_(test::MakeClusterConfig("a")),
        config_b_(test::MakeClusterConfig("b")),
        a1_(test::MakeHost("a", "10.0.0.1:80")),
        a2_(test::MakeHost("a", "10.0.0.2:80")),
        b1_(test::MakeHost("b", "10.0.1.1:80")),
        snap_a_(test::MakeSnapshot(config_a_, {a1_, a2_})),
        snap_b_(test::MakeSnapshot(config_b_, {b1_})) {}

  // One request through `pool` on a fresh connection. With `answer` the
  // response comes back and the connection goes idle (keep-alive); else
  // it stays busy. Returns the connection.
  FakeConnection* Exchange(ConnPool& pool, bool answer) {
    size_t before = dispatcher_.connections().size();
    auto decoder = std::make_unique<test::RecordingDecoder>();
    auto callbacks = std::make_unique<test::RecordingPoolCallbacks>();
    pool.NewStream(*decoder, *callbacks);
    EXPECT_EQ(dispatcher_.connections().size(), before + 1);
    FakeConnection* c = dispatcher_.connections().back();
    c->CompleteConnect();
    EXPECT_NE(callbacks->encoder, nullptr);
    if (callbacks->encoder == nullptr) return c;
    callbacks->encoder->EncodeHeaders(*test::GetRequest(), true);
    EXPECT_NE(c->written().find("GET / HTTP/1.1\r\n"), std::string::npos) << c->written();
    if (answer) {
      c->Feed("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
      EXPECT_EQ(decoder->status, 200);
      EXPECT_TRUE(decoder->ended);
    }
    dispatcher_.RunPending();
    decoders_.push_back(std::move(decoder));
    pool_callbacks_.push_back(std::move(callbacks));
    return c;
  }

  test::SimDispatcher dispatcher_;
  ClusterManager cm_;
  std::shared_ptr<ClusterConfig> config_a_;
  std::shared_ptr<ClusterConfig> config_b_;
  HostSharedPtr a1_;
  HostSharedPtr a2_;
  HostSharedPtr b1_;
  ClusterSnapshotPtr snap_a_;
  ClusterSnapshotPtr snap_b_;
  std::vector<std::unique_ptr<test::RecordingDecoder>> decoders_;
  std::vector<std::unique_ptr<test::RecordingPoolCallbacks>> pool_callbacks_;
};

TEST_F(ClusterManagerTest, AnUnchangedClusterKeepsItsBalancerPoolsAndConnections) {
  cm_.Update({{"a", snap_a_}});
  ClusterManager::WorkerCluster* a = cm_.Get("a");
  ASSERT_NE(a, nullptr);
  LoadBalancer* lb = a->lb.get();
  ConnPool* pool = &cm_.PoolFor(*snap_a_, a1_);
  FakeConnection* idle = Exchange(*pool, /*answer=*/true);
  cm_.Update({{"a", snap_a_}});
  EXPECT_EQ(cm_.Get("a")->lb.get(), lb);  // same snapshot: same balancer state
  EXPECT_EQ(&cm_.PoolFor(*snap_a_, a1_), pool);
  EXPECT_EQ(cm_.DrainingPools(), 0u);
  dispatcher_.RunPending();
  EXPECT_FALSE(idle->close_type().has_value());  // the keep-alive connection stays
  EXPECT_EQ(pool->ConnectionCount(), 1u);
}

TEST_F(ClusterManagerTest, ANewSnapshotOfTheSameHostsKeepsPoolsAndHostState) {
  cm_.Update({{"a", snap_a_}});
  ConnPool* pool = &cm_.PoolFor(*snap_a_, a1_);
  FakeConnection* idle = Exchange(*pool, /*answer=*/true);
  // Host health lives on the Host, which the new snapshot shares.
  a2_->setHealth(HealthState::kUnhealthy);
  auto again = test::MakeSnapshot(config_a_, {a1_, a2_});
  cm_.Update({{"a", again}});
  EXPECT_EQ(cm_.Get("a")->snapshot, again);
  EXPECT_EQ(&cm_.PoolFor(*again, a1_), pool);
  EXPECT_EQ(cm_.DrainingPools(), 0u);
  EXPECT_FALSE(idle->close_type().has_value());
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(cm_.Get("a")->lb->ChooseHost(nullptr), a1_) << "the unhealthy host was picked";
  }
}

TEST_F(ClusterManagerTest, ARemovedClusterIsGoneAndItsPoolDrains) {
  cm_.Update({{"a", snap_a_}, {"b", snap_b_}});
  ConnPool& pool = cm_.PoolFor(*snap_b_, b1_);
  FakeConnection* busy = Exchange(pool, /*answer=*/false);
  FakeConnection* idle = Exchange(pool, /*answer=*/true);
  ASSERT_EQ(pool.ConnectionCount(), 2u);
  cm_.Update({{"a", snap_a_}});
  EXPECT_EQ(cm_.Get("b"), nullptr);
  ASSERT_NE(cm_.Get("a"), nullptr);
  EXPECT_EQ(cm_.DrainingPools(), 1u);
  // The idle connection closes now; the busy one finishes its response
  // and is then closed instead of going back to the pool.
  EXPECT_TRUE(idle->close_type().has_value());
  EXPECT_FALSE(busy->close_type().has_value());
  std::shared_ptr<bool> busy_alive = busy->alive_flag();
  busy->Feed("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
  EXPECT_EQ(decoders_[0]->status, 200);
  EXPECT_TRUE(busy->close_type().has_value());
  dispatcher_.RunPending();
  EXPECT_FALSE(*busy_alive);  // released by the pool, not kept for reuse
  // Once idle, the next update drops the draining pool.
  cm_.Update({{"a", snap_a_}});
  EXPECT_EQ(cm_.DrainingPools(), 0u);
}

TEST_F(ClusterManagerTest, ChangedPoolSettingsOrAReweightedHostGetANewPool) {
  cm_.Update({{"a", snap_a_}});
  ConnPool* pool1 = &cm_.PoolFor(*snap_a_, a1_);
  ConnPool* pool2 = &cm_.PoolFor(*snap_a_, a2_);
  FakeConnection* idle1 = Exchange(*pool1, /*answer=*/true);
  // A new connect timeout: every pool of the cluster is replaced.
  auto slower = test::MakeClusterConfig("a");
  slower->connect_timeout = std::chrono::milliseconds(5000);
  auto snap_slower = test::MakeSnapshot(slower, {a1_, a2_});
  cm_.Update({{"a", snap_slower}});
  // Both old pools had nothing in flight: closed and dropped at once.
  EXPECT_EQ(cm_.DrainingPools(), 0u);
  EXPECT_TRUE(idle1->close_type().has_value());
  ConnPool* fresh1 = &cm_.PoolFor(*snap_slower, a1_);
  EXPECT_EQ(fresh1->config().connect_timeout, std::chrono::milliseconds(5000));
  dispatcher_.RunPending();
  // A new weight makes a new Host object: its pool is replaced, the other
  // host's is kept.
  auto a2_heavier = test::MakeHost("a", "10.0.0.2:80", 5);
  (void)pool2;
  FakeConnection* old_a2 = Exchange(cm_.PoolFor(*snap_slower, a2_), /*answer=*/true);
  FakeConnection* kept_a1 = Exchange(*fresh1, /*answer=*/true);
  auto snap_weights = test::MakeSnapshot(slower, {a1_, a2_heavier});
  cm_.Update({{"a", snap_weights}});
  EXPECT_EQ(&cm_.PoolFor(*snap_weights, a1_), fresh1);
  EXPECT_FALSE(kept_a1->close_type().has_value());
  EXPECT_TRUE(old_a2->close_type().has_value());
  EXPECT_EQ(cm_.PoolFor(*snap_weights, a2_heavier).host(), a2_heavier);
}

TEST_F(ClusterManagerTest, ThePoolRememberedInTheClusterFollowsUpdates) {
  cm_.Update({{"a", snap_a_}});
  ClusterManager::WorkerCluster* a = cm_.Get("a");
  ConnPool* pool1 = &cm_.PoolFor(*a, a1_);
  EXPECT_EQ(pool1, &cm_.PoolFor(*snap_a_, a1_));
  EXPECT_EQ(&cm_.PoolFor(*a, a1_), pool1);
  EXPECT_NE(&cm_.PoolFor(*a, a2_), pool1);
  // New pool settings replace the pools; the remembered one must not stay.
  auto slower = test::MakeClusterConfig("a");
  slower->connect_timeout = std::chrono::milliseconds(5000);
  cm_.Update({{"a", test::MakeSnapshot(slower, {a1_, a2_})}});
  ConnPool& fresh = cm_.PoolFor(*cm_.Get("a"), a1_);
  EXPECT_EQ(fresh.config().connect_timeout, std::chrono::milliseconds(5000));
  EXPECT_EQ(&fresh, &cm_.PoolFor(*cm_.Get("a")->snapshot, a1_));
}

TEST_F(ClusterManagerTest, ARotatedTlsCertificateReplacesThePoolsAnUnchangedOneKeepsThem) {
  // What a reload makes of an unchanged tls block: a new context object,
  // the same identity. The pool (and its warm connections) stays.
  auto with_tls = test::MakeClusterConfig("a");
  with_tls->tls_identity = "digest-1";
  auto snap1 = test::MakeSnapshot(with_tls, {a1_});
  cm_.Update({{"a", snap1}});
  ConnPool* pool = &cm_.PoolFor(*snap1, a1_);
  FakeConnection* idle = Exchange(*pool, /*answer=*/true);
  auto same = test::MakeClusterConfig("a");
  same->tls_identity = "digest-1";
  auto snap2 = test::MakeSnapshot(same, {a1_});
  cm_.Update({{"a", snap2}});
  EXPECT_EQ(&cm_.PoolFor(*snap2, a1_), pool);
  EXPECT_FALSE(idle->close_type().has_value());
  // A rotated certificate or CA: new connections must use it.
  auto rotated = test::MakeClusterConfig("a");
  rotated->tls_identity = "digest-2";
  auto snap3 = test::MakeSnapshot(rotated, {a1_});
  cm_.Update({{"a", snap3}});
  EXPECT_TRUE(idle->close_type().has_value());
  EXPECT_EQ(cm_.PoolFor(*snap3, a1_).config().tls_identity, "digest-2");
}

TEST_F(ClusterManagerTest, AnAddedClusterGetsABalancerOverItsHosts) {
  cm_.Update({{"a", snap_a_}});
  EXPECT_EQ(cm_.Get("b"), nullptr);
  cm_.Update({{"a", snap_a_}, {"b", snap_b_}});
  ASSERT_NE(cm_.Get("b"), nullptr);
  EXPECT_EQ(cm_.Get("b")->lb->ChooseHost(nullptr), b1_);
}

}  // namespace
}  // namespace portway::upstream
