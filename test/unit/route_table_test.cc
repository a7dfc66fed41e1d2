#include "core/router/route_table.h"

#include <random>
#include <string>

#include "core/config/yaml_proto.h"
#include "gtest/gtest.h"
#include "portway/config/v1/listener.pb.h"

namespace portway::router {
namespace {

class RouteTableTest : public ::testing::Test {
 protected:
  // Builds a table from a listener written in YAML; fails the test on
  // conversion errors, returns build errors in errors_.
  std::shared_ptr<const RouteTable> Build(const std::string& yaml) {
    config::v1::Listener listener;
    config::ConfigErrors parse_errors;
    EXPECT_TRUE(config::YamlTextToProto(yaml, &listener, &parse_errors))
        << (parse_errors.empty() ? "" : parse_errors[0].ToString());
    errors_.clear();
    return RouteTable::Build(listener, "listeners[0]", {"a", "b", "c"}, &errors_);
  }

  static http::HeaderMap Request(std::string_view method, std::string_view path,
                                 std::string_view host = "example.com") {
    http::HeaderMap h;
    h.Add(":method", method);
    h.Add(":path", path);
    h.Add(":authority", host);
    return h;
  }

  static std::string ClusterOf(const RouteTable& table, const http::HeaderMap& h) {
    const Route* r = table.Match(h);
    return r == nullptr ? "<none>" : r->cluster;
  }

  std::string ErrorText() const {
    std::string out;
    for (const auto& e : errors_) out += e.ToString() + "\n";
    return out;
  }

  config::ConfigErrors errors_;
};

TEST_F(RouteTableTest, FirstMatchingRouteWins) {
  auto t = Build(R"(
name: l
routes:
  - { match: { prefix: /api }, cluster: a }
  - { match: { prefix: /api/v2 }, cluster: b }
  - { match: { prefix: / }, cluster: c }
)");
  ASSERT_NE(t, nullptr) << ErrorText();
  EXPECT_EQ(ClusterOf(*t, Request("GET", "/api/v2/x")), "a");
  EXPECT_EQ(ClusterOf(*t, Request("GET", "/other")), "c");
}

TEST_F(RouteTableTest, ExactPathAndRegexIgnoreTheQuery) {
  auto t = Build(R"(
name: l
routes:
  - { match: { path: /exact }, cluster: a }
  - { match: { regex: "/items/[0-9]+" }, cluster: b }
)");
  ASSERT_NE(t, nullptr) << ErrorText();
  EXPECT_EQ(ClusterOf(*t, Request("GET", "/exact?x=1")), "a");
  EXPECT_EQ(ClusterOf(*t, Request("GET", "/exact/more")), "<none>");
  EXPECT_EQ(ClusterOf(*t, Request("GET", "/items/42?y")), "b");
  // The regex must match the whole path.
  EXPECT_EQ(ClusterOf(*t, Request("GET", "/items/42/x")), "<none>");
}

TEST_F(RouteTableTest, MethodAndHeaderMatchers) {
  auto t = Build(R"(
name: l
routes:
  - match: { prefix: /, methods: [POST], headers: [{ name: X-Tenant, exact: gold }] }
    cluster: a
  - match: { prefix: /, headers: [{ name: x-debug }] }
    cluster: b
  - match: { prefix: /, headers: [{ name: x-canary, regex: "on|yes", invert: true }] }
    cluster: c
)");
  ASSERT_NE(t, nullptr) << ErrorText();
  http::HeaderMap gold = Request("POST", "/");
  gold.Add("x-tenant", "gold");
  EXPECT_EQ(ClusterOf(*t, gold), "a");
  http::HeaderMap get_gold = Request("GET", "/");
  get_gold.Add("x-tenant", "gold");
  EXPECT_EQ(ClusterOf(*t, get_gold), "c");  // method differs; not a canary
  http::HeaderMap debug = Request("GET", "/");
  debug.Add("x-debug", "");
  EXPECT_EQ(ClusterOf(*t, debug), "b");  // presence is enough
  http::HeaderMap canary = Request("GET", "/");
  canary.Add("x-canary", "on");
  EXPECT_EQ(ClusterOf(*t, canary), "<none>");  // inverted regex excludes it
}

TEST_F(RouteTableTest, VirtualHostsExactThenLongestSuffixThenDefault) {
  auto t = Build(R"(
name: l
virtual_hosts:
  - { name: exact, domains: [api.example.com], routes: [{ match: { prefix: / }, cluster: a }] }
  - { name: wide, domains: ["*.example.com"], routes: [{ match: { prefix: / }, cluster: b }] }
  - { name: narrow, domains: ["*.eu.example.com"], routes: [{ match: { prefix: / }, cluster: c }] }
  - { name: any, domains: ["*"], routes: [{ match: { prefix: / }, direct_response: { status: 200 } }] }
)");
  ASSERT_NE(t, nullptr) << ErrorText();
  EXPECT_EQ(ClusterOf(*t, Request("GET", "/", "api.example.com")), "a");
  EXPECT_EQ(ClusterOf(*t, Request("GET", "/", "API.Example.COM:8443")), "a");  // case, port
  EXPECT_EQ(ClusterOf(*t, Request("GET", "/", "www.example.com")), "b");
  EXPECT_EQ(ClusterOf(*t, Request("GET", "/", "x.eu.example.com")), "c");
  // The bare suffix is not matched by "*.example.com".
  const Route* r = t->Match(Request("GET", "/", "example.com"));
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->action, Route::Action::kDirectResponse);
}

TEST_F(RouteTableTest, NoDefaultVirtualHostMeansNoRoute) {
  auto t = Build(R"(
name: l
virtual_hosts:
  - { domains: [a.test], routes: [{ match: { prefix: / }, cluster: a }] }
)");
  ASSERT_NE(t, nullptr) << ErrorText();
  EXPECT_EQ(t->Match(Request("GET", "/", "b.test")), nullptr);
}

TEST_F(RouteTableTest, UnnamedRoutesAreNamedByVirtualHostAndIndex) {
  auto t = Build(R"(
name: l
routes:
  - { match: { prefix: /a }, cluster: a }
  - { name: catch-all, match: { prefix: / }, cluster: b }
)");
  ASSERT_NE(t, nullptr) << ErrorText();
  EXPECT_EQ(t->Match(Request("GET", "/a"))->name, "default/0");
  EXPECT_EQ(t->Match(Request("GET", "/b"))->name, "catch-all");
}

TEST_F(RouteTableTest, ReportsEveryRouteErrorWithItsPath) {
  auto t = Build(R"(
name: l
routes:
  - { match: { prefix: / }, cluster: missing }
  - { match: { prefix: /x }, cluster: a, direct_response: { status: 200 } }
  - { match: { prefix: /y } }
  - { match: { regex: "(" }, cluster: a }
  - { match: { prefix: nope }, cluster: a }
  - { match: { prefix: /, path: /p }, cluster: a }
  - { match: { prefix: / }, redirect: { status: 200 } }
  - { match: { path: /p }, cluster: a, prefix_rewrite: /q }
  - { match: { prefix: / }, cluster: a, request_headers: { add: [{ name: ":path", value: x }] } }
)");
  EXPECT_EQ(t, nullptr);
  std::string text = ErrorText();
  EXPECT_NE(text.find("listeners[0].routes[0].cluster: unknown cluster 'missing'"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("listeners[0].routes[1]: takes only one of"), std::string::npos) << text;
  EXPECT_NE(text.find("listeners[0].routes[2]: needs an action"), std::string::npos) << text;
  EXPECT_NE(text.find("listeners[0].routes[3].match.regex: invalid regex"), std::string::npos)
      << text;
  EXPECT_NE(text.find("listeners[0].routes[4].match.prefix: must start with '/'"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("listeners[0].routes[5].match: takes only one of"), std::string::npos)
      << text;
  EXPECT_NE(text.find("listeners[0].routes[6].redirect.status"), std::string::npos) << text;
  EXPECT_NE(text.find("listeners[0].routes[7].prefix_rewrite: needs match.prefix"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("listeners[0].routes[8].request_headers.add[0].name"), std::string::npos)
      << text;
  EXPECT_EQ(errors_.size(), 9u) << text;
}

TEST_F(RouteTableTest, RejectsDuplicateDomainsAndTwoDefaults) {
  auto t = Build(R"(
name: l
routes: [{ match: { prefix: / }, cluster: a }]
virtual_hosts:
  - { domains: [a.test, "*"], routes: [{ match: { prefix: / }, cluster: a }] }
  - { domains: [A.test], routes: [{ match: { prefix: / }, cluster: b }] }
)");
  EXPECT_EQ(t, nullptr);
  std::string text = ErrorText();
  EXPECT_NE(text.find("virtual_hosts[0].domains[1]: a listener has one default"), std::string::npos)
      << text;
  EXPECT_NE(text.find("virtual_hosts[1].domains[0]: domain 'a.test' is served by two"),
            std::string::npos)
      << text;
}

TEST_F(RouteTableTest, HostHeaderMatcherMatchesTheAuthority) {
  auto t = Build(R"(
name: l
routes:
  - { match: { prefix: /, headers: [{ name: Host, regex: "api\\..*" }] }, cluster: a }
  - { match: { prefix: / }, cluster: b }
)");
  ASSERT_NE(t, nullptr) << ErrorText();
  EXPECT_EQ(ClusterOf(*t, Request("GET", "/", "api.example.com")), "a");
  EXPECT_EQ(ClusterOf(*t, Request("GET", "/", "www.example.com")), "b");
}

TEST_F(RouteTableTest, RejectsMutationsOfFramingAndConnectionHeaders) {
  auto t = Build(R"(
name: l
routes:
  - match: { prefix: / }
    cluster: a
    request_headers: { set: [{ name: Host, value: x }], remove: [content-length] }
    response_headers: { add: [{ name: Transfer-Encoding, value: chunked }], remove: [connection] }
)");
  EXPECT_EQ(t, nullptr);
  std::string text = ErrorText();
  EXPECT_NE(text.find("request_headers.set[0].name: use host_rewrite"), std::string::npos) << text;
  EXPECT_NE(text.find("request_headers.remove[0]: 'content-length' is managed by Portway"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("response_headers.add[0].name: 'Transfer-Encoding' is managed"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("response_headers.remove[0]: 'connection' is managed"), std::string::npos)
      << text;
}

TEST_F(RouteTableTest, DomainsThatDifferOnlyByPortClash) {
  auto t = Build(R"(
name: l
virtual_hosts:
  - { domains: [a.test], routes: [{ match: { prefix: / }, cluster: a }] }
  - { domains: ["a.test:8080"], routes: [{ match: { prefix: / }, cluster: b }] }
)");
  EXPECT_EQ(t, nullptr);
  EXPECT_NE(ErrorText().find("virtual_hosts[1].domains[0]: domain 'a.test:8080' is served by two"),
            std::string::npos)
      << ErrorText();
}

TEST(HeaderMutationTest, RemovesThenSetsThenAdds) {
  HeaderMutation m;
  m.remove = {"x-drop"};
  m.set = {{"x-one", "set"}};
  m.add = {{"x-many", "added"}};
  http::HeaderMap h;
  h.Add("x-drop", "1");
  h.Add("x-one", "a");
  h.Add("x-one", "b");
  h.Add("x-many", "kept");
  m.Apply(h);
  EXPECT_FALSE(h.Has("x-drop"));
  EXPECT_EQ(*h.Get("x-one"), "set");
  size_t one = 0, many = 0;
  for (const auto& e : h) {
    one += e.name == "x-one";
    many += e.name == "x-many";
  }
  EXPECT_EQ(one, 1u);
  EXPECT_EQ(many, 2u);
}

// Past VirtualHost::kIndexedRoutes routes a host is matched through its
// index; the answer must be the one a scan in order gives, for every kind of
// route and whatever the mix.
TEST_F(RouteTableTest, TheIndexFindsTheRouteAScanInOrderFinds) {
  std::mt19937 rng(20261206);
  const std::vector<std::string> segments = {"", "a", "ab", "b", "api", "v1", "x"};
  auto pick = [&](const std::vector<std::string>& from) {
    return from[std::uniform_int_distribution<size_t>(0, from.size() - 1)(rng)];
  };
  auto random_path = [&] {
    std::string path;
    int parts = std::uniform_int_distribution<int>(0, 3)(rng);
    for (int i = 0; i < parts; ++i) path += "/" + pick(segments);
    if (path.empty() || rng() % 3 == 0) path += "/";
    return path;
  };
  for (int table_round = 0; table_round < 20; ++table_round) {
    std::string yaml = "name: l\nroutes:\n";
    const int routes = std::uniform_int_distribution<int>(9, 60)(rng);
    for (int i = 0; i < routes; ++i) {
      std::string match;
      switch (rng() % 6) {
        case 0:
        case 1:
        case 2:
          match = "prefix: \"" + random_path() + "\"";
          break;
        case 3:
          match = "path: \"" + random_path() + "\"";
          break;
        case 4:
          match = "regex: \"/a.*b\"";
          break;
        default:
          match = "prefix: /";
          break;
      }
      if (rng() % 4 == 0) match += ", methods: [POST]";
      if (rng() % 5 == 0) match += ", headers: [{ name: x-v, exact: \"1\" }]";
      yaml += "  - { name: r" + std::to_string(i) + ", match: { " + match + " }, cluster: a }\n";
    }
    auto t = Build(yaml);
    ASSERT_NE(t, nullptr) << ErrorText() << yaml;
    ASSERT_EQ(t->virtual_hosts().size(), 1u);
    const VirtualHost& vh = t->virtual_hosts()[0];
    ASSERT_NE(vh.index, nullptr);
    for (int probe = 0; probe < 200; ++probe) {
      std::string path = random_path();
      if (rng() % 4 == 0) path += "?q=/a";
      http::HeaderMap h = Request(rng() % 2 ? "GET" : "POST", path);
      if (rng() % 2) h.Add("x-v", "1");
      std::string_view bare = std::string_view(path).substr(0, path.find('?'));
      const Route* expected = nullptr;
      for (const Route& r : vh.routes) {
        if (r.Matches(h, bare)) {
          expected = &r;
          break;
        }
      }
      const Route* got = t->Match(h);
      ASSERT_EQ(got, expected) << path << " got " << (got ? got->name : "<none>") << " want "
                               << (expected ? expected->name : "<none>") << "\n"
                               << yaml;
    }
  }
}

TEST_F(RouteTableTest, AThousandPrefixRoutesEachFindTheirOwn) {
  std::string yaml = "name: l\nroutes:\n";
  for (int i = 0; i < 1000; ++i) {
    yaml += "  - { name: svc" + std::to_string(i) + ", match: { prefix: /svc" + std::to_string(i) +
            "/ }, cluster: a }\n";
  }
  yaml += "  - { name: fallback, match: { prefix: / }, cluster: b }\n";
  auto t = Build(yaml);
  ASSERT_NE(t, nullptr) << ErrorText();
  for (int i = 0; i < 1000; ++i) {
    const Route* r = t->Match(Request("GET", "/svc" + std::to_string(i) + "/x?y=1"));
    ASSERT_NE(r, nullptr);
    EXPECT_EQ(r->name, "svc" + std::to_string(i));
  }
  // A path that is a prefix of route prefixes, or runs past them, falls back.
  EXPECT_EQ(t->Match(Request("GET", "/svc1"))->name, "fallback");
  EXPECT_EQ(t->Match(Request("GET", "/svc1000/"))->name, "fallback");
  EXPECT_EQ(t->Match(Request("GET", "/"))->name, "fallback");
}

}  // namespace
}  // namespace portway::router
