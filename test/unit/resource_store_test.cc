// The gateway's side of the discovery protocol on fake pushes: per-resource
// verdicts with field paths, last good versions kept, warming and
// make-before-break, removals, state of the world and deltas. The validator
// is the real config builder in check-only mode.
#include "core/discovery/resource_store.h"

#include "core/server/config_builder.h"
#include "gtest/gtest.h"

namespace portway::discovery {
namespace {

class ResourceStoreTest : public testing::Test {
 protected:
  ResourceStoreTest()
      : builder_(store_, /*open_files=*/false),
        resources_(Static(), [this](const config::v1::Bootstrap& b, config::ConfigErrors* e) {
          return builder_.Build(b, nullptr, e) != nullptr;
        }) {}

  static config::v1::Bootstrap Static() {
    config::v1::Bootstrap b;
    auto* c = b.add_clusters();
    c->set_name("static");
    c->add_endpoints()->set_address("127.0.0.1:9");
    return b;
  }
  static v1::Resource Cluster(const std::string& name, const std::string& version,
                              const std::string& endpoint = "127.0.0.1:8080") {
    v1::Resource r;
    r.set_name(name);
    r.set_version(version);
    auto* c = r.mutable_cluster();
    if (endpoint.empty()) {
      c->set_type(config::v1::Cluster::EDS);
    } else {
      c->add_endpoints()->set_address(endpoint);
    }
    return r;
  }
  static v1::Resource Endpoints(const std::string& cluster, const std::string& version,
                                const std::string& address) {
    v1::Resource r;
    r.set_name(cluster);
    r.set_version(version);
    r.mutable_endpoints()->add_endpoints()->set_address(address);
    return r;
  }
  static v1::Resource Listener(const std::string& name, const std::string& version,
                               const std::string& cluster, const std::string& route_config = "") {
    v1::Resource r;
    r.set_name(name);
    r.set_version(version);
    auto* l = r.mutable_listener();
    l->set_address("127.0.0.1:0");
    if (!route_config.empty()) {
      l->set_route_config(route_config);
    } else {
      auto* route = l->add_routes();
      route->mutable_match()->set_prefix("/");
      route->set_cluster(cluster);
    }
    return r;
  }
  static v1::Resource Routes(const std::string& name, const std::string& version,
                             const std::string& cluster) {
    v1::Resource r;
    r.set_name(name);
    r.set_version(version);
    auto* route = r.mutable_route_configuration()->add_routes();
    route->mutable_match()->set_prefix("/");
    route->set_cluster(cluster);
    return r;
  }
  ResourceStore::Outcome Push(std::vector<v1::Resource> resources,
                              std::vector<std::pair<v1::ResourceType, std::string>> removed = {},
                              std::vector<v1::ResourceType> full = {}) {
    v1::Push push;
    push.set_nonce("n" + std::to_string(++nonce_));
    push.set_version("set-" + std::to_string(nonce_));
    for (auto& r : resources) *push.add_resources() = std::move(r);
    for (auto& [t, n] : removed) {
      auto* k = push.add_removed();
      k->set_type(t);
      k->set_name(n);
    }
    for (auto t : full) push.add_full_state_types(t);
    return resources_.OnPush(push);
  }
  // "name@version" of what serves, per type, for short assertions.
  std::vector<std::string> Serving() const {
    std::vector<std::string> out;
    for (const auto& e : resources_.Entries()) {
      if (!e.serving_version.empty()) {
        out.push_back(Cat(TypeName(e.type), ":", e.name, "@", e.serving_version));
      }
    }
    return out;
  }
  static std::string Cat(std::string_view a, std::string_view b, std::string_view c,
                         std::string_view d, std::string_view e) {
    return std::string(a) + std::string(b) + std::string(c) + std::string(d) + std::string(e);
  }
  const config::v1::Cluster* ServingCluster(const std::string& name) const {
    for (const auto& c : resources_.Serving().clusters()) {
      if (c.name() == name) return &c;
    }
    return nullptr;
  }

  stats::Store store_;
  server::ConfigBuilder builder_;
  ResourceStore resources_;
  int nonce_ = 0;
};

TEST_F(ResourceStoreTest, GoodResourcesAreAppliedAndABadOneIsReportedWithItsPath) {
  v1::Resource bad = Cluster("bad", "1", "not-an-address");
  auto out = Push({Cluster("a", "1"), bad, Listener("edge", "1", "a")});
  ASSERT_EQ(out.verdicts.verdicts_size(), 3);
  EXPECT_EQ(out.verdicts.nonce(), "n1");
  EXPECT_EQ(out.verdicts.version(), "set-1");
  EXPECT_TRUE(out.verdicts.verdicts(0).accepted());
  const auto& v = out.verdicts.verdicts(1);
  EXPECT_FALSE(v.accepted());
  EXPECT_EQ(v.name(), "bad");
  ASSERT_GE(v.errors_size(), 1);
  EXPECT_EQ(v.errors(0).path(), "endpoints[0].address") << v.errors(0).message();
  EXPECT_TRUE(out.verdicts.verdicts(2).accepted());
  EXPECT_TRUE(out.changed);
  EXPECT_EQ(Serving(), (std::vector<std::string>{"listener:edge@1", "cluster:a@1"}));
  EXPECT_NE(ServingCluster("a"), nullptr);
  EXPECT_EQ(ServingCluster("bad"), nullptr);
  EXPECT_NE(ServingCluster("static"), nullptr);  // static resources stay
}

TEST_F(ResourceStoreTest, ARejectedUpdateKeepsTheLastGoodVersion) {
  Push({Cluster("a", "1", "127.0.0.1:1000")});
  auto out = Push({Cluster("a", "2", "nonsense")});
  EXPECT_FALSE(out.verdicts.verdicts(0).accepted());
  EXPECT_FALSE(out.changed);
  EXPECT_EQ(ServingCluster("a")->endpoints(0).address(), "127.0.0.1:1000");
  auto entries = resources_.Entries();
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].serving_version, "1");
  EXPECT_EQ(entries[0].rejected_version, "2");
  EXPECT_FALSE(entries[0].errors.empty());
  // A good version later clears the error.
  Push({Cluster("a", "3", "127.0.0.1:3000")});
  EXPECT_TRUE(resources_.Entries()[0].errors.empty());
  EXPECT_EQ(ServingCluster("a")->endpoints(0).address(), "127.0.0.1:3000");
}

TEST_F(ResourceStoreTest, ARouteToAnUnknownClusterIsRejectedNotBlackholed) {
  auto out = Push({Listener("edge", "1", "nowhere")});
  ASSERT_FALSE(out.verdicts.verdicts(0).accepted());
  EXPECT_EQ(out.verdicts.verdicts(0).errors(0).path(), "routes[0].cluster");
  EXPECT_EQ(resources_.Serving().listeners_size(), 0);
  // A rejected cluster in the same push does not count as known either.
  out = Push({Cluster("b", "1", "bad address"), Listener("edge", "1", "b")});
  EXPECT_FALSE(out.verdicts.verdicts(0).accepted());
  EXPECT_FALSE(out.verdicts.verdicts(1).accepted());
}

TEST_F(ResourceStoreTest, AnEdsClusterWarmsUntilItsEndpointsArrive) {
  auto out = Push({Cluster("eds", "1", ""), Listener("edge", "1", "eds")});
  ASSERT_TRUE(out.verdicts.verdicts(0).accepted());
  EXPECT_EQ(out.verdicts.verdicts(0).pending(), "waiting for its Endpoints");
  EXPECT_EQ(out.verdicts.verdicts(1).pending(), "waiting for cluster 'eds' to warm");
  EXPECT_EQ(ServingCluster("eds"), nullptr);
  EXPECT_EQ(resources_.Serving().listeners_size(), 0);
  out = Push({Endpoints("eds", "1", "127.0.0.1:7000")});
  EXPECT_TRUE(out.changed);
  ASSERT_NE(ServingCluster("eds"), nullptr);
  EXPECT_EQ(ServingCluster("eds")->endpoints(0).address(), "127.0.0.1:7000");
  EXPECT_EQ(ServingCluster("eds")->type(), config::v1::Cluster::STATIC);
  EXPECT_EQ(resources_.Serving().listeners_size(), 1);
}

TEST_F(ResourceStoreTest, AListenerUpdateWaitsForItsClusterAndTheOldOneKeepsServing) {
  Push({Cluster("a", "1"), Listener("edge", "1", "a")});
  auto out = Push({Cluster("b", "1", ""), Listener("edge", "2", "b")});
  EXPECT_TRUE(out.verdicts.verdicts(1).accepted());
  EXPECT_EQ(out.verdicts.verdicts(1).pending(), "waiting for cluster 'b' to warm");
  ASSERT_EQ(resources_.Serving().listeners_size(), 1);
  EXPECT_EQ(resources_.Serving().listeners(0).routes(0).cluster(), "a");
  Push({Endpoints("b", "1", "127.0.0.1:7001")});
  EXPECT_EQ(resources_.Serving().listeners(0).routes(0).cluster(), "b");
}

TEST_F(ResourceStoreTest, RouteConfigurationsAreFoldedIntoTheirListeners) {
  auto out = Push({Cluster("a", "1"), Routes("main", "1", "a"), Listener("edge", "1", "", "main")});
  for (const auto& v : out.verdicts.verdicts()) EXPECT_TRUE(v.accepted()) << v.name();
  ASSERT_EQ(resources_.Serving().listeners_size(), 1);
  const auto& l = resources_.Serving().listeners(0);
  EXPECT_TRUE(l.route_config().empty());
  EXPECT_EQ(l.routes(0).cluster(), "a");
  out = Push({Listener("other", "1", "", "missing")});
  EXPECT_EQ(out.verdicts.verdicts(0).errors(0).path(), "route_config");
}

TEST_F(ResourceStoreTest, RemovingSomethingStillUsedIsRefused) {
  Push({Cluster("a", "1"), Listener("edge", "1", "a")});
  auto out = Push({}, {{v1::CLUSTER, "a"}});
  ASSERT_EQ(out.verdicts.verdicts_size(), 1);
  EXPECT_FALSE(out.verdicts.verdicts(0).accepted());
  EXPECT_EQ(out.verdicts.verdicts(0).errors(0).message(), "still used by listener 'edge'");
  EXPECT_NE(ServingCluster("a"), nullptr);
  // Removing both in one push is fine (the user goes too).
  out = Push({}, {{v1::CLUSTER, "a"}, {v1::LISTENER, "edge"}});
  EXPECT_TRUE(out.verdicts.verdicts(0).accepted());
  EXPECT_TRUE(out.verdicts.verdicts(1).accepted());
  EXPECT_EQ(ServingCluster("a"), nullptr);
  EXPECT_EQ(resources_.Serving().listeners_size(), 0);
}

TEST_F(ResourceStoreTest, FullStateRemovesWhatThePushLacks) {
  Push({Cluster("a", "1"), Cluster("b", "1")});
  auto out = Push({Cluster("b", "2")}, {}, {v1::CLUSTER});
  EXPECT_EQ(ServingCluster("a"), nullptr);
  EXPECT_NE(ServingCluster("b"), nullptr);
  EXPECT_EQ(Serving(), (std::vector<std::string>{"cluster:b@2"}));
  // Other types are untouched by a full push of clusters.
  Push({Listener("edge", "1", "b")});
  Push({Cluster("b", "3")}, {}, {v1::CLUSTER});
  EXPECT_EQ(resources_.Serving().listeners_size(), 1);
}

TEST_F(ResourceStoreTest, DuplicatesNamesAndStaticCollisionsAreRejected) {
  auto out = Push({Cluster("a", "1"), Cluster("a", "2")});
  EXPECT_FALSE(out.verdicts.verdicts(0).accepted());
  EXPECT_FALSE(out.verdicts.verdicts(1).accepted());
  out = Push({Cluster("static", "1")});
  EXPECT_EQ(out.verdicts.verdicts(0).errors(0).message(), "a static cluster has this name");
  v1::Resource mismatched = Cluster("x", "1");
  mismatched.mutable_cluster()->set_name("y");
  out = Push({mismatched});
  EXPECT_EQ(out.verdicts.verdicts(0).errors(0).path(), "cluster.name");
  v1::Resource empty;
  empty.set_name("nothing");
  out = Push({empty});
  EXPECT_FALSE(out.verdicts.verdicts(0).accepted());
  EXPECT_TRUE(Serving().empty());  // nothing of these pushes was taken
}

// Have() (sent in Hello on a reconnect) lists what serves, not what waits.
TEST_F(ResourceStoreTest, HaveListsWhatServes) {
  Push({Cluster("a", "1"), Cluster("eds", "1", ""), Listener("edge", "7", "a")});
  std::vector<std::string> have;
  for (const auto& v : resources_.Have()) {
    have.push_back(std::string(TypeName(v.type())) + ":" + v.name() + "@" + v.version());
  }
  EXPECT_EQ(have, (std::vector<std::string>{"listener:edge@7", "cluster:a@1"}));
}

}  // namespace
}  // namespace portway::discovery
