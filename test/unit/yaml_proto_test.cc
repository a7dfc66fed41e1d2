// The YAML → protobuf converter against the real config protos, plus a small message built at run
// time (below) for what those protos do not use yet: oneofs, proto maps, wrappers, timestamps,
// every numeric type. Building it from a descriptor keeps the test free of extra protoc steps
// and checks that dynamic messages convert too.

#include "core/config/yaml_proto.h"

#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/descriptor.pb.h"
#include "google/protobuf/duration.pb.h"
#include "google/protobuf/dynamic_message.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/timestamp.pb.h"
#include "google/protobuf/util/message_differencer.h"
#include "google/protobuf/wrappers.pb.h"
#include "gtest/gtest.h"
#include "portway/config/v1/bootstrap.pb.h"
#include "portway/config/v1/cluster.pb.h"
#include "portway/config/v1/listener.pb.h"
#include "yaml-cpp/yaml.h"

namespace portway::config {
namespace {

using ::google::protobuf::Message;
using ::google::protobuf::util::MessageDifferencer;
using ::portway::config::v1::Bootstrap;
using ::portway::config::v1::Cluster;
using ::portway::config::v1::Listener;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

std::vector<std::string> ToStrings(const ConfigErrors& errors) {
  std::vector<std::string> out;
  for (const ConfigError& error : errors) out.push_back(error.ToString());
  return out;
}

std::string Joined(const ConfigErrors& errors) {
  std::string out;
  for (const ConfigError& error : errors) out += error.ToString() + "\n";
  return out;
}

// Converts YAML that must be valid.
template <typename T>
T ParseValid(std::string_view yaml) {
  T msg;
  ConfigErrors errors;
  EXPECT_TRUE(YamlTextToProto(yaml, &msg, &errors)) << Joined(errors);
  EXPECT_THAT(errors, IsEmpty());
  return msg;
}

// Converts YAML that must be invalid; returns the errors as "path: message".
template <typename T>
std::vector<std::string> ParseErrors(std::string_view yaml) {
  T msg;
  ConfigErrors errors;
  EXPECT_FALSE(YamlTextToProto(yaml, &msg, &errors)) << msg.DebugString();
  return ToStrings(errors);
}

template <typename T>
T FromText(const std::string& text) {
  T msg;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &msg)) << text;
  return msg;
}

void ExpectProtoEq(const Message& actual, const Message& expected) {
  EXPECT_TRUE(MessageDifferencer::Equals(actual, expected)) << "actual:\n"
                                                            << actual.DebugString() << "expected:\n"
                                                            << expected.DebugString();
}

// The run-time test message. In .proto terms:
//
//   message Sample {
//     string text = 1;  int32 i32 = 2;  int64 i64 = 3;  uint32 u32 = 4;  uint64 u64 = 5;
//     float f = 6;  double d = 7;  bool flag = 8;  bytes raw = 9;
//     map<string, string> labels = 10;
//     map<uint32, Sample> by_port = 11;
//     oneof target { string host = 12; string socket_path = 13; }
//     google.protobuf.UInt32Value max_retries = 14;
//     google.protobuf.BoolValue enabled = 15;
//     google.protobuf.Timestamp at = 16;
//     google.protobuf.Value value = 17;
//     google.protobuf.ListValue list = 18;
//     map<string, google.protobuf.Value> metadata = 19;
//     repeated Sample children = 20;
//     google.protobuf.Duration timeout = 21;
//   }
constexpr char kSampleFile[] = R"pb(
  name: "yaml_proto_test.proto"
  package: "portway.test"
  syntax: "proto3"
  dependency: "google/protobuf/duration.proto"
  dependency: "google/protobuf/struct.proto"
  dependency: "google/protobuf/timestamp.proto"
  dependency: "google/protobuf/wrappers.proto"
  message_type {
    name: "Sample"
    field { name: "text" number: 1 label: LABEL_OPTIONAL type: TYPE_STRING }
    field { name: "i32" number: 2 label: LABEL_OPTIONAL type: TYPE_INT32 }
    field { name: "i64" number: 3 label: LABEL_OPTIONAL type: TYPE_INT64 }
    field { name: "u32" number: 4 label: LABEL_OPTIONAL type: TYPE_UINT32 }
    field { name: "u64" number: 5 label: LABEL_OPTIONAL type: TYPE_UINT64 }
    field { name: "f" number: 6 label: LABEL_OPTIONAL type: TYPE_FLOAT }
    field { name: "d" number: 7 label: LABEL_OPTIONAL type: TYPE_DOUBLE }
    field { name: "flag" number: 8 label: LABEL_OPTIONAL type: TYPE_BOOL }
    field { name: "raw" number: 9 label: LABEL_OPTIONAL type: TYPE_BYTES }
    field {
      name: "labels"
      number: 10
      label: LABEL_REPEATED
      type: TYPE_MESSAGE
      type_name: ".portway.test.Sample.LabelsEntry"
    }
    field {
      name: "by_port"
      number: 11
      label: LABEL_REPEATED
      type: TYPE_MESSAGE
      type_name: ".portway.test.Sample.ByPortEntry"
    }
    field { name: "host" number: 12 label: LABEL_OPTIONAL type: TYPE_STRING oneof_index: 0 }
    field { name: "socket_path" number: 13 label: LABEL_OPTIONAL type: TYPE_STRING oneof_index: 0 }
    field {
      name: "max_retries"
      number: 14
      label: LABEL_OPTIONAL
      type: TYPE_MESSAGE
      type_name: ".google.protobuf.UInt32Value"
    }
    field {
      name: "enabled"
      number: 15
      label: LABEL_OPTIONAL
      type: TYPE_MESSAGE
      type_name: ".google.protobuf.BoolValue"
    }
    field {
      name: "at"
      number: 16
      label: LABEL_OPTIONAL
      type: TYPE_MESSAGE
      type_name: ".google.protobuf.Timestamp"
    }
    field {
      name: "value"
      number: 17
      label: LABEL_OPTIONAL
      type: TYPE_MESSAGE
      type_name: ".google.protobuf.Value"
    }
    field {
      name: "list"
      number: 18
      label: LABEL_OPTIONAL
      type: TYPE_MESSAGE
      type_name: ".google.protobuf.ListValue"
    }
    field {
      name: "metadata"
      number: 19
      label: LABEL_REPEATED
      type: TYPE_MESSAGE
      type_name: ".portway.test.Sample.MetadataEntry"
    }
    field {
      name: "children"
      number: 20
      label: LABEL_REPEATED
      type: TYPE_MESSAGE
      type_name: ".portway.test.Sample"
    }
    field {
      name: "timeout"
      number: 21
      label: LABEL_OPTIONAL
      type: TYPE_MESSAGE
      type_name: ".google.protobuf.Duration"
    }
    oneof_decl { name: "target" }
    nested_type {
      name: "LabelsEntry"
      field { name: "key" number: 1 label: LABEL_OPTIONAL type: TYPE_STRING }
      field { name: "value" number: 2 label: LABEL_OPTIONAL type: TYPE_STRING }
      options { map_entry: true }
    }
    nested_type {
      name: "ByPortEntry"
      field { name: "key" number: 1 label: LABEL_OPTIONAL type: TYPE_UINT32 }
      field {
        name: "value"
        number: 2
        label: LABEL_OPTIONAL
        type: TYPE_MESSAGE
        type_name: ".portway.test.Sample"
      }
      options { map_entry: true }
    }
    nested_type {
      name: "MetadataEntry"
      field { name: "key" number: 1 label: LABEL_OPTIONAL type: TYPE_STRING }
      field {
        name: "value"
        number: 2
        label: LABEL_OPTIONAL
        type: TYPE_MESSAGE
        type_name: ".google.protobuf.Value"
      }
      options { map_entry: true }
    }
  }
)pb";

class SampleTypes {
 public:
  static const SampleTypes& Get() {
    static const SampleTypes* const types = new SampleTypes();
    return *types;
  }

  std::unique_ptr<Message> New() const { return std::unique_ptr<Message>(prototype_->New()); }

  std::unique_ptr<Message> FromText(const std::string& text) const {
    std::unique_ptr<Message> msg = New();
    EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, msg.get())) << text;
    return msg;
  }

 private:
  SampleTypes() {
    for (const google::protobuf::FileDescriptor* file :
         {google::protobuf::Duration::descriptor()->file(),
          google::protobuf::Struct::descriptor()->file(),
          google::protobuf::Timestamp::descriptor()->file(),
          google::protobuf::UInt32Value::descriptor()->file()}) {
      google::protobuf::FileDescriptorProto proto;
      file->CopyTo(&proto);
      pool_.BuildFile(proto);
    }
    google::protobuf::FileDescriptorProto sample;
    google::protobuf::TextFormat::ParseFromString(kSampleFile, &sample);
    const google::protobuf::FileDescriptor* file = pool_.BuildFile(sample);
    prototype_ = factory_.GetPrototype(file->FindMessageTypeByName("Sample"));
  }

  google::protobuf::DescriptorPool pool_;
  google::protobuf::DynamicMessageFactory factory_{&pool_};
  const Message* prototype_ = nullptr;
};

std::unique_ptr<Message> ParseSample(std::string_view yaml, ConfigErrors* errors) {
  std::unique_ptr<Message> msg = SampleTypes::Get().New();
  YamlTextToProto(yaml, msg.get(), errors);
  return msg;
}

std::unique_ptr<Message> ParseValidSample(std::string_view yaml) {
  ConfigErrors errors;
  std::unique_ptr<Message> msg = ParseSample(yaml, &errors);
  EXPECT_THAT(errors, IsEmpty()) << Joined(errors);
  return msg;
}

std::vector<std::string> SampleErrors(std::string_view yaml) {
  ConfigErrors errors;
  ParseSample(yaml, &errors);
  EXPECT_THAT(errors, testing::Not(IsEmpty()));
  return ToStrings(errors);
}

// The example in DESIGN.md "Configuration", verbatim.
constexpr char kDesignExample[] = R"yaml(
admin: { address: 127.0.0.1:9901 }
listeners:
  - name: edge
    address: 0.0.0.0:10000
    filters:
      - name: portway.retry
        config: { retry_on: [connect-failure, gateway-error], num_retries: 2 }
    routes:
      - match: { prefix: / }
        cluster: backend
clusters:
  - name: backend
    endpoints: [127.0.0.1:8080, 127.0.0.1:8081]
    connect_timeout: 1s
)yaml";

constexpr char kDesignExampleProto[] = R"pb(
  admin { address: "127.0.0.1:9901" }
  listeners {
    name: "edge"
    address: "0.0.0.0:10000"
    filters {
      name: "portway.retry"
      config {
        fields {
          key: "retry_on"
          value {
            list_value {
              values { string_value: "connect-failure" }
              values { string_value: "gateway-error" }
            }
          }
        }
        fields {
          key: "num_retries"
          value { number_value: 2 }
        }
      }
    }
    routes {
      match { prefix: "/" }
      cluster: "backend"
    }
  }
  clusters {
    name: "backend"
    endpoints { address: "127.0.0.1:8080" }
    endpoints { address: "127.0.0.1:8081" }
    connect_timeout { seconds: 1 }
  }
)pb";

TEST(YamlProtoTest, ParsesDesignDocExample) {
  ExpectProtoEq(ParseValid<Bootstrap>(kDesignExample), FromText<Bootstrap>(kDesignExampleProto));
}

TEST(YamlProtoTest, AcceptsJson) {
  const Bootstrap bootstrap = ParseValid<Bootstrap>(R"json({
	"admin": {"address": "127.0.0.1:9901"},
	"listeners": [{
		"name": "edge",
		"address": "0.0.0.0:10000",
		"filters": [{"name": "portway.retry",
		             "config": {"retry_on": ["connect-failure", "gateway-error"], "num_retries": 2}}],
		"routes": [{"match": {"prefix": "/"}, "cluster": "backend"}]
	}],
	"clusters": [{
		"name": "backend",
		"endpoints": ["127.0.0.1:8080", {"address": "127.0.0.1:8081"}],
		"connect_timeout": "1s"
	}]
})json");
  ExpectProtoEq(bootstrap, FromText<Bootstrap>(kDesignExampleProto));
}

TEST(YamlProtoTest, EmptyTextIsEmptyMessage) {
  ExpectProtoEq(ParseValid<Bootstrap>(""), Bootstrap());
  ExpectProtoEq(ParseValid<Bootstrap>("# only a comment\n"), Bootstrap());
}

TEST(YamlProtoTest, UnknownFieldSuggestsClosestName) {
  EXPECT_THAT(ParseErrors<Bootstrap>(R"yaml(
listeners:
  - routes:
      - match: { prefx: / }
)yaml"),
              ElementsAre("listeners[0].routes[0].match.prefx: unknown field 'prefx' "
                          "(did you mean 'prefix'?)"));
}

TEST(YamlProtoTest, UnknownFieldSuggestsTransposedName) {
  EXPECT_THAT(ParseErrors<Cluster>("tpye: dns"),
              ElementsAre("tpye: unknown field 'tpye' (did you mean 'type'?)"));
}

TEST(YamlProtoTest, UnknownFieldSuggestsSnakeCaseForCamelCase) {
  EXPECT_THAT(
      ParseErrors<Cluster>("connectionPool: { maxRequestsPerConnection: 1 }"),
      ElementsAre(
          "connectionPool: unknown field 'connectionPool' (did you mean 'connection_pool'?)"));
}

TEST(YamlProtoTest, UnknownFieldWithoutCloseNameListsFields) {
  EXPECT_THAT(
      ParseErrors<Bootstrap>("admin: { bogus: 1 }"),
      ElementsAre("admin.bogus: unknown field 'bogus'; expected one of: address, failure_history"));
}

TEST(YamlProtoTest, ReportsEveryErrorWithItsPath) {
  EXPECT_THAT(ParseErrors<Bootstrap>(R"yaml(
listeners:
  - name: good
    address: 0.0.0.0:10000
    routes: [{ match: { prefix: / }, cluster: a }]
  - name: bad
    address: 0.0.0.0:10001
    routes:
      - match: { prefx: /api }
        cluster: b
        timeout: fast
clusters:
  - name: a
    endpoints: [127.0.0.1:8080]
  - name: b
    endpoints: [127.0.0.1:8081]
  - name: c
    lb_policy: roundrobin
    endpoints: [{ address: 127.0.0.1:8082, weight: -1 }]
    connection_pool: { max_connections: lots }
access_log: { format: yaml }
)yaml"),
              ElementsAre("listeners[1].routes[0].match.prefx: unknown field 'prefx' (did you "
                          "mean 'prefix'?)",
                          "listeners[1].routes[0].timeout: invalid duration 'fast': needs a "
                          "number and a unit (ns, us, ms, s, m, h), e.g. 5s",
                          "clusters[2].lb_policy: unknown value 'roundrobin' (did you mean "
                          "'round_robin'?); expected one of: round_robin, least_request, random, "
                          "ring_hash, maglev",
                          "clusters[2].endpoints[0].weight: value -1 is negative, but uint32 is "
                          "unsigned",
                          "clusters[2].connection_pool.max_connections: expected an integer "
                          "(uint32), found 'lots'",
                          "access_log.format: unknown value 'yaml'; expected one of: text, json"));
}

TEST(YamlProtoTest, ErrorsCarryLineAndColumn) {
  Bootstrap bootstrap;
  ConfigErrors errors;
  EXPECT_FALSE(YamlTextToProto("clusters:\n  - name: a\n    typo: 1\n", &bootstrap, &errors));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].path, "clusters[0].typo");
  EXPECT_EQ(errors[0].line, 3);
  EXPECT_EQ(errors[0].column, 5);
}

TEST(YamlProtoTest, RejectsWrongTypes) {
  EXPECT_THAT(ParseErrors<Bootstrap>(R"yaml(
admin: { address: { host: 127.0.0.1 } }
listeners:
  - name: [a, b]
    routes: { match: { prefix: / } }
    virtual_hosts:
      - domains: example.com
    proxy_headers: { trust_forwarded_for: yes, trust_request_id: 1 }
clusters: backend
)yaml"),
              ElementsAre("admin.address: expected a string, found a map",
                          "listeners[0].name: expected a string, found a list",
                          "listeners[0].routes: expected a list, found a map",
                          "listeners[0].virtual_hosts[0].domains: expected a list, found "
                          "'example.com'",
                          "listeners[0].proxy_headers.trust_forwarded_for: expected a bool (true "
                          "or false), found 'yes'",
                          "listeners[0].proxy_headers.trust_request_id: expected a bool (true or "
                          "false), found '1'",
                          "clusters: expected a list, found 'backend'"));
}

TEST(YamlProtoTest, ListGivenForMessageIsError) {
  EXPECT_THAT(ParseErrors<Bootstrap>("admin: [127.0.0.1:9901]"),
              ElementsAre("admin: expected a map, found a list"));
}

TEST(YamlProtoTest, ScalarForMessageWhoseFirstFieldIsNotScalarIsError) {
  // ListenerTimeouts' field 1 is a Duration and Bootstrap's is Admin: no shorthand for either.
  EXPECT_THAT(ParseErrors<Listener>("timeouts: 5s"),
              ElementsAre("timeouts: expected a map, found '5s'"));
  EXPECT_THAT(ParseErrors<Bootstrap>("just-a-string"),
              ElementsAre("expected a map, found 'just-a-string'"));
}

TEST(YamlProtoTest, ScalarShorthandReportsFirstFieldTypeErrors) {
  // ListenerLimits' field 1 is max_header_bytes, a uint32.
  EXPECT_THAT(ParseErrors<Listener>("limits: lots"),
              ElementsAre("limits: expected an integer (uint32), found 'lots'"));
  EXPECT_EQ(ParseValid<Listener>("limits: 4096").limits().max_header_bytes(), 4096u);
}

TEST(YamlProtoTest, StringFieldKeepsScalarAsWritten) {
  const Bootstrap bootstrap = ParseValid<Bootstrap>(R"yaml(
listeners:
  - name: 8080
    address: 1.50
    routes: [{ cluster: true, match: { prefix: "007" } }]
)yaml");
  EXPECT_EQ(bootstrap.listeners(0).name(), "8080");
  EXPECT_EQ(bootstrap.listeners(0).address(), "1.50");
  EXPECT_EQ(bootstrap.listeners(0).routes(0).cluster(), "true");
  EXPECT_EQ(bootstrap.listeners(0).routes(0).match().prefix(), "007");
}

TEST(YamlProtoTest, BoolAcceptsTrueAndFalseInAnyCase) {
  const Listener listener =
      ParseValid<Listener>("proxy_headers: { trust_forwarded_for: TRUE, trust_request_id: False }");
  EXPECT_TRUE(listener.proxy_headers().trust_forwarded_for());
  EXPECT_FALSE(listener.proxy_headers().trust_request_id());
}

TEST(YamlProtoTest, EnumIsCaseInsensitiveAndAcceptsDashes) {
  EXPECT_EQ(ParseValid<Cluster>("lb_policy: round_robin").lb_policy(), Cluster::ROUND_ROBIN);
  EXPECT_EQ(ParseValid<Cluster>("lb_policy: least-request").lb_policy(), Cluster::LEAST_REQUEST);
  EXPECT_EQ(ParseValid<Cluster>("lb_policy: Ring_Hash").lb_policy(), Cluster::RING_HASH);
  EXPECT_EQ(ParseValid<Cluster>("lb_policy: MAGLEV").lb_policy(), Cluster::MAGLEV);
  EXPECT_EQ(ParseValid<Cluster>("type: dns").type(), Cluster::DNS);
}

TEST(YamlProtoTest, UnknownEnumValueListsValidNames) {
  EXPECT_THAT(ParseErrors<Cluster>("type: logical_dns"),
              ElementsAre("type: unknown value 'logical_dns'; expected one of: static, dns, eds"));
  EXPECT_THAT(ParseErrors<Cluster>("type: statc"),
              ElementsAre("type: unknown value 'statc' (did you mean 'static'?); expected one of: "
                          "static, dns, eds"));
  EXPECT_THAT(ParseErrors<Cluster>("lb_policy: 1"),
              ElementsAre("lb_policy: unknown value '1'; expected one of: round_robin, "
                          "least_request, random, ring_hash, maglev"));
  EXPECT_THAT(ParseErrors<Cluster>("lb_policy: [random]"),
              ElementsAre("lb_policy: expected one of: round_robin, least_request, random, "
                          "ring_hash, maglev, found a list"));
}

TEST(YamlProtoTest, ParseDurationAcceptsOneNumberAndOneUnit) {
  const std::vector<std::pair<std::string, absl::Duration>> cases = {
      {"1s", absl::Seconds(1)},
      {"1.5s", absl::Milliseconds(1500)},
      {"250ms", absl::Milliseconds(250)},
      {"100us", absl::Microseconds(100)},
      {"10ns", absl::Nanoseconds(10)},
      {"2m", absl::Minutes(2)},
      {"1h", absl::Hours(1)},
      {"0s", absl::ZeroDuration()},
      {"0.001s", absl::Milliseconds(1)},
      {"1.500s", absl::Milliseconds(1500)},
  };
  for (const auto& [text, expected] : cases) {
    const absl::StatusOr<absl::Duration> parsed = ParseDuration(text);
    ASSERT_TRUE(parsed.ok()) << text << ": " << parsed.status();
    EXPECT_EQ(*parsed, expected) << text;
  }
}

TEST(YamlProtoTest, ParseDurationRejectsBareNumbersAndOtherForms) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"fast", "invalid duration 'fast': needs a number and a unit (ns, us, ms, s, m, h), e.g. 5s"},
      {"5", "invalid duration '5': needs a unit (ns, us, ms, s, m, h), e.g. 5s"},
      {"0", "invalid duration '0': needs a unit (ns, us, ms, s, m, h), e.g. 5s"},
      {"", "invalid duration '': needs a number and a unit (ns, us, ms, s, m, h), e.g. 5s"},
      {"-1s", "invalid duration '-1s': must not be negative"},
      {"1h30m",
       "invalid duration '1h30m': write one number and one unit, e.g. 90m rather than "
       "1h30m"},
      {"5sec", "invalid duration '5sec': unknown unit 'sec'; use one of (ns, us, ms, s, m, h)"},
      {"5 s", "invalid duration '5 s': unknown unit ' s'; use one of (ns, us, ms, s, m, h)"},
      {".5s", "invalid duration '.5s': needs a number and a unit (ns, us, ms, s, m, h), e.g. 5s"},
      {"99999999999999999999s", "invalid duration '99999999999999999999s': out of range"},
  };
  for (const auto& [text, message] : cases) {
    const absl::StatusOr<absl::Duration> parsed = ParseDuration(text);
    ASSERT_FALSE(parsed.ok()) << text;
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(parsed.status().message(), message);
  }
}

TEST(YamlProtoTest, DurationFieldsParseAndReportBadValues) {
  const Cluster cluster = ParseValid<Cluster>(
      "connect_timeout: 1.5s\ndns_refresh_rate: 250ms\nconnection_pool: {idle_timeout: 2m}");
  EXPECT_EQ(cluster.connect_timeout().seconds(), 1);
  EXPECT_EQ(cluster.connect_timeout().nanos(), 500'000'000);
  EXPECT_EQ(cluster.dns_refresh_rate().nanos(), 250'000'000);
  EXPECT_EQ(cluster.connection_pool().idle_timeout().seconds(), 120);

  EXPECT_THAT(ParseErrors<Bootstrap>(R"yaml(
clusters:
  - connect_timeout: fast
    dns_refresh_rate: 30
    connection_pool: { idle_timeout: { seconds: 5 } }
drain_timeout: 99999999h
)yaml"),
              ElementsAre("clusters[0].connect_timeout: invalid duration 'fast': needs a number "
                          "and a unit (ns, us, ms, s, m, h), e.g. 5s",
                          "clusters[0].dns_refresh_rate: invalid duration '30': needs a unit (ns, "
                          "us, ms, s, m, h), e.g. 5s",
                          "clusters[0].connection_pool.idle_timeout: expected a duration, e.g. "
                          "5s, found a map",
                          "drain_timeout: invalid duration '99999999h': out of range (at most "
                          "315576000000s)"));
}

TEST(YamlProtoTest, EndpointScalarShorthandAndMapFormMix) {
  const Cluster cluster = ParseValid<Cluster>(
      "endpoints: [127.0.0.1:8080, {address: 127.0.0.1:8081, weight: 3}, backend.local:80]");
  ExpectProtoEq(cluster, FromText<Cluster>(R"pb(
                  endpoints { address: "127.0.0.1:8080" }
                  endpoints { address: "127.0.0.1:8081" weight: 3 }
                  endpoints { address: "backend.local:80" }
                )pb"));
}

TEST(YamlProtoTest, NegativeIntoUnsignedIsError) {
  EXPECT_THAT(ParseErrors<Listener>("limits: { max_headers: -5, max_request_body_bytes: -1 }"),
              ElementsAre("limits.max_headers: value -5 is negative, but uint32 is unsigned",
                          "limits.max_request_body_bytes: value -1 is negative, but uint64 is "
                          "unsigned"));
}

TEST(YamlProtoTest, OutOfRangeIntegersAreErrors) {
  EXPECT_THAT(ParseErrors<Listener>(R"yaml(
limits:
  max_headers: 4294967296
  max_request_body_bytes: 18446744073709551616
  max_connections: 1e3
  buffer_limit_bytes: 65536.0
)yaml"),
              ElementsAre("limits.max_headers: value 4294967296 is out of range for uint32 "
                          "(0..4294967295)",
                          "limits.max_request_body_bytes: value 18446744073709551616 is out of "
                          "range for uint64 (0..18446744073709551615)",
                          "limits.max_connections: expected an integer (uint32), found '1e3'",
                          "limits.buffer_limit_bytes: expected an integer (uint32), found "
                          "'65536.0'"));
  const Listener listener = ParseValid<Listener>(
      "limits: { max_headers: 4294967295, max_request_body_bytes: '18446744073709551615' }");
  EXPECT_EQ(listener.limits().max_headers(), 4294967295u);
  EXPECT_EQ(listener.limits().max_request_body_bytes(), 18446744073709551615u);
}

TEST(YamlProtoTest, SignedAndFloatingFieldsCheckTheirRanges) {
  EXPECT_THAT(SampleErrors(R"yaml(
i32: 2147483648
i64: -9223372036854775809
f: 1e39
d: 1e400
)yaml"),
              ElementsAre("i32: value 2147483648 is out of range for int32 (-2147483648.."
                          "2147483647)",
                          "i64: value -9223372036854775809 is out of range for int64 "
                          "(-9223372036854775808..9223372036854775807)",
                          "f: value 1e39 is out of range for float",
                          "d: value 1e400 is out of range for double"));
  const std::unique_ptr<Message> sample = ParseValidSample(R"yaml(
i32: -2147483648
i64: "-9223372036854775808"
u64: 18446744073709551615
f: 0.25
d: -1.5e-3
raw: bytes as written
)yaml");
  ExpectProtoEq(*sample, *SampleTypes::Get().FromText(R"pb(
    i32: -2147483648
    i64: -9223372036854775808
    u64: 18446744073709551615
    f: 0.25
    d: -0.0015
    raw: "bytes as written"
  )pb"));
}

TEST(YamlProtoTest, FilterConfigBecomesStruct) {
  const Listener listener = ParseValid<Listener>(R"yaml(
filters:
  - name: portway.test
    config:
      count: 3
      ratio: -0.5
      enabled: true
      quoted_number: "8080"
      quoted_bool: 'true'
      nothing: ~
      text: connect-failure
      nested: { list: [1, two, { three: 3 }, [], null], empty: {} }
)yaml");
  google::protobuf::Struct expected;
  ASSERT_TRUE(
      google::protobuf::TextFormat::ParseFromString(R"pb(
                                                      fields {
                                                        key: "count"
                                                        value { number_value: 3 }
                                                      }
                                                      fields {
                                                        key: "ratio"
                                                        value { number_value: -0.5 }
                                                      }
                                                      fields {
                                                        key: "enabled"
                                                        value { bool_value: true }
                                                      }
                                                      fields {
                                                        key: "quoted_number"
                                                        value { string_value: "8080" }
                                                      }
                                                      fields {
                                                        key: "quoted_bool"
                                                        value { string_value: "true" }
                                                      }
                                                      fields {
                                                        key: "nothing"
                                                        value { null_value: NULL_VALUE }
                                                      }
                                                      fields {
                                                        key: "text"
                                                        value { string_value: "connect-failure" }
                                                      }
                                                      fields {
                                                        key: "nested"
                                                        value {
                                                          struct_value {
                                                            fields {
                                                              key: "list"
                                                              value {
                                                                list_value {
                                                                  values { number_value: 1 }
                                                                  values { string_value: "two" }
                                                                  values {
                                                                    struct_value {
                                                                      fields {
                                                                        key: "three"
                                                                        value { number_value: 3 }
                                                                      }
                                                                    }
                                                                  }
                                                                  values { list_value {} }
                                                                  values { null_value: NULL_VALUE }
                                                                }
                                                              }
                                                            }
                                                            fields {
                                                              key: "empty"
                                                              value { struct_value {} }
                                                            }
                                                          }
                                                        }
                                                      }
                                                    )pb",
                                                    &expected));
  ExpectProtoEq(listener.filters(0).config(), expected);
}

TEST(YamlProtoTest, StructMustBeMap) {
  EXPECT_THAT(ParseErrors<Listener>("filters: [{ name: x, config: [1, 2] }]"),
              ElementsAre("filters[0].config: expected a map, found a list"));
}

TEST(YamlProtoTest, StructToProtoConvertsTypedConfigWithPrefixedPaths) {
  const Listener listener = ParseValid<Listener>(R"yaml(
filters:
  - name: portway.cluster_like
    config:
      name: backend
      lb_policy: least-request
      endpoints: [127.0.0.1:8080, { address: 127.0.0.1:8081, weight: 2 }]
      connect_timeout: 250ms
      connection_pool: { max_connections: 10 }
  - name: portway.cluster_like
    config: { name: 7, lb_polcy: random, connection_pool: { max_connections: 1.5 } }
)yaml");
  Cluster cluster;
  ConfigErrors errors;
  EXPECT_TRUE(StructToProto(listener.filters(0).config(), &cluster, &errors, "filters[0].config"))
      << Joined(errors);
  ExpectProtoEq(cluster, FromText<Cluster>(R"pb(
                  name: "backend"
                  lb_policy: LEAST_REQUEST
                  endpoints { address: "127.0.0.1:8080" }
                  endpoints { address: "127.0.0.1:8081" weight: 2 }
                  connect_timeout { nanos: 250000000 }
                  connection_pool { max_connections: 10 }
                )pb"));

  Cluster bad;
  EXPECT_FALSE(StructToProto(listener.filters(1).config(), &bad, &errors, "filters[1].config"));
  EXPECT_EQ(bad.name(), "7");
  EXPECT_THAT(ToStrings(errors),
              ElementsAre("filters[1].config.connection_pool.max_connections: expected an "
                          "integer (uint32), found '1.5'",
                          "filters[1].config.lb_polcy: unknown field 'lb_polcy' (did you mean "
                          "'lb_policy'?)"));
}

TEST(YamlProtoTest, NullLeavesFieldsUnset) {
  const Bootstrap bootstrap = ParseValid<Bootstrap>(R"yaml(
admin: ~
access_log:
drain_timeout: null
listeners:
clusters:
  - name: a
    connect_timeout:
    connection_pool: {}
)yaml");
  EXPECT_FALSE(bootstrap.has_admin());
  EXPECT_FALSE(bootstrap.has_access_log());
  EXPECT_FALSE(bootstrap.has_drain_timeout());
  EXPECT_EQ(bootstrap.listeners_size(), 0);
  ASSERT_EQ(bootstrap.clusters_size(), 1);
  EXPECT_FALSE(bootstrap.clusters(0).has_connect_timeout());
  // An empty map is not null: the message is present, all defaults.
  EXPECT_TRUE(bootstrap.clusters(0).has_connection_pool());
}

TEST(YamlProtoTest, NullListItemIsError) {
  EXPECT_THAT(ParseErrors<Bootstrap>("clusters:\n  -\n  - name: a\nlisteners: [{ routes: [~] }]"),
              ElementsAre("clusters[0]: expected a map, found null",
                          "listeners[0].routes[0]: expected a map, found null"));
  EXPECT_THAT(ParseErrors<Bootstrap>("listeners: [{ virtual_hosts: [{ domains: [a, ~] }] }]"),
              ElementsAre("listeners[0].virtual_hosts[0].domains[1]: expected a string, found "
                          "null"));
}

TEST(YamlProtoTest, DuplicateKeyIsError) {
  EXPECT_THAT(ParseErrors<Cluster>("name: a\nendpoints: [x:1]\nname: b\nendpoints: [y:2]"),
              ElementsAre("name: duplicate key 'name'", "endpoints: duplicate key 'endpoints'"));
  EXPECT_THAT(ParseErrors<Listener>("filters: [{ config: { a: 1, a: 2 } }]"),
              ElementsAre("filters[0].config.a: duplicate key 'a'"));
}

TEST(YamlProtoTest, NonScalarKeyIsError) {
  EXPECT_THAT(ParseErrors<Cluster>("? [a, b]\n: 1\n~: 2"),
              ElementsAre("map keys must be strings, found a list",
                          "map keys must be strings, found null"));
}

TEST(YamlProtoTest, SyntaxErrorReportsLineAndColumn) {
  Bootstrap bootstrap;
  ConfigErrors errors;
  EXPECT_FALSE(
      YamlTextToProto("admin:\n  address: 127.0.0.1:9901\n clusters: []\n", &bootstrap, &errors));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].path, "");
  EXPECT_EQ(errors[0].line, 3);
  EXPECT_EQ(errors[0].column, 2);
  EXPECT_EQ(errors[0].ToString(), "YAML syntax error at 3:2: end of map not found");

  errors.clear();
  EXPECT_FALSE(YamlTextToProto("{\"clusters\": [1, 2}", &bootstrap, &errors));
  EXPECT_THAT(ToStrings(errors), ElementsAre(HasSubstr("YAML syntax error at 1:")));
}

TEST(YamlProtoTest, MoreThanOneDocumentIsError) {
  EXPECT_THAT(ParseErrors<Bootstrap>("admin: {}\n---\nadmin: {}\n"),
              ElementsAre("expected one YAML document, found 2 (separated by '---')"));
}

TEST(YamlProtoTest, PathPrefixIsPrepended) {
  Cluster cluster;
  ConfigErrors errors;
  EXPECT_FALSE(
      YamlToProto(YAML::Load("{name: a, endpoints: {x: 1}}"), &cluster, &errors, "resources[4]"));
  EXPECT_THAT(ToStrings(errors), ElementsAre("resources[4].endpoints: expected a list, found a "
                                             "map"));
  // Errors already present are kept; the result reflects this call alone.
  EXPECT_TRUE(YamlToProto(YAML::Load("name: b"), &cluster, &errors, "resources[5]"));
  EXPECT_EQ(errors.size(), 1u);
  EXPECT_EQ(cluster.name(), "b");
}

TEST(YamlProtoTest, RepeatedFieldsAppendOnMerge) {
  Cluster cluster;
  ASSERT_TRUE(YamlTextToProto("endpoints: [a:1]", &cluster, nullptr));
  ASSERT_TRUE(YamlTextToProto("endpoints: [b:2]", &cluster, nullptr));
  EXPECT_EQ(cluster.endpoints_size(), 2);
}

TEST(YamlProtoTest, OneofMembersConflict) {
  EXPECT_THAT(SampleErrors("host: example.com\nsocket_path: /run/x.sock"),
              ElementsAre("socket_path: 'socket_path' and 'host' are both set, but only one of "
                          "them may be (oneof 'target')"));
  // A null member is not set, so it does not conflict.
  ExpectProtoEq(*ParseValidSample("host: ~\nsocket_path: /run/x.sock"),
                *SampleTypes::Get().FromText(R"pb(socket_path: "/run/x.sock")pb"));
}

TEST(YamlProtoTest, ProtoMapFieldsTakeYamlMapsAndNameKeysInPaths) {
  ExpectProtoEq(*ParseValidSample(R"yaml(
labels: { zone: eu-1, "tier name": gold }
by_port: { 80: { text: http }, "443": { text: https } }
metadata: { owner: team-a, weight: 2, gone: ~ }
)yaml"),
                *SampleTypes::Get().FromText(R"pb(
                  labels { key: "zone" value: "eu-1" }
                  labels { key: "tier name" value: "gold" }
                  by_port {
                    key: 80
                    value { text: "http" }
                  }
                  by_port {
                    key: 443
                    value { text: "https" }
                  }
                  metadata {
                    key: "owner"
                    value { string_value: "team-a" }
                  }
                  metadata {
                    key: "weight"
                    value { number_value: 2 }
                  }
                  metadata {
                    key: "gone"
                    value { null_value: NULL_VALUE }
                  }
                )pb"));
  EXPECT_THAT(SampleErrors(R"yaml(
labels: { zone: [a], "say \"hi\"": { x: 1 }, ok: fine, none: ~ }
by_port: { http: { text: x }, 8080: { i32: big }, -1: {} }
metadata: [a]
)yaml"),
              ElementsAre("labels[\"zone\"]: expected a string, found a list",
                          "labels[\"say \\\"hi\\\"\"]: expected a string, found a map",
                          "labels[\"none\"]: expected a string, found null",
                          "by_port[http]: invalid key: expected an integer (uint32), found 'http'",
                          "by_port[8080].i32: expected an integer (int32), found 'big'",
                          "by_port[-1]: invalid key: value -1 is negative, but uint32 is unsigned",
                          "metadata: expected a map, found a list"));
}

TEST(YamlProtoTest, WrapperTypesTakeScalars) {
  ExpectProtoEq(*ParseValidSample("max_retries: 0\nenabled: false"),
                *SampleTypes::Get().FromText("max_retries {}\nenabled {}"));
  // Null leaves a wrapper unset, unlike 0.
  const std::unique_ptr<Message> unset = ParseValidSample("max_retries: ~\nenabled:");
  EXPECT_EQ(unset->ByteSizeLong(), 0u);
  EXPECT_THAT(SampleErrors("max_retries: -1\nenabled: { value: true }"),
              ElementsAre("max_retries: value -1 is negative, but uint32 is unsigned",
                          "enabled: expected a bool (true or false), found a map"));
}

TEST(YamlProtoTest, TimestampsAreRfc3339) {
  ExpectProtoEq(*ParseValidSample("at: 2024-05-01T12:00:00.5Z"),
                *SampleTypes::Get().FromText("at { seconds: 1714564800 nanos: 500000000 }"));
  const std::vector<std::string> errors = SampleErrors("at: yesterday");
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_THAT(errors[0], HasSubstr("at: invalid timestamp 'yesterday': "));
  EXPECT_THAT(errors[0], HasSubstr("expected an RFC 3339 timestamp, e.g. 2024-05-01T12:00:00Z"));
}

TEST(YamlProtoTest, ValueAndListValueTakeAnyYaml) {
  ExpectProtoEq(*ParseValidSample("value: [1, x]\nlist: [true, ~]"),
                *SampleTypes::Get().FromText(R"pb(
                  value {
                    list_value {
                      values { number_value: 1 }
                      values { string_value: "x" }
                    }
                  }
                  list {
                    values { bool_value: true }
                    values { null_value: NULL_VALUE }
                  }
                )pb"));
  EXPECT_THAT(SampleErrors("list: x\nvalue: 1e999"),
              ElementsAre("list: expected a list, found 'x'",
                          "value: number 1e999 is out of range for a double"));
}

TEST(YamlProtoTest, ErrorsInsideNestedMessagesOfDynamicTypesHaveFullPaths) {
  EXPECT_THAT(SampleErrors("children: [{}, { children: [{ timeout: 5, u32: x }] }]"),
              ElementsAre("children[1].children[0].timeout: invalid duration '5': needs a unit "
                          "(ns, us, ms, s, m, h), e.g. 5s",
                          "children[1].children[0].u32: expected an integer (uint32), found 'x'"));
}

TEST(YamlProtoTest, DeepNestingIsErrorNotCrash) {
  std::string deep;
  for (int i = 0; i < 150; ++i) deep += "{children: [";
  for (int i = 0; i < 150; ++i) deep += "]}";
  std::unique_ptr<Message> sample = SampleTypes::Get().New();
  ConfigErrors errors;
  EXPECT_FALSE(YamlToProto(YAML::Load(deep), sample.get(), &errors));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_THAT(errors[0].message, HasSubstr("nested deeper than 100 levels"));

  std::string deep_struct = "config: ";
  for (int i = 0; i < 150; ++i) deep_struct += "{a: ";
  deep_struct += "1";
  for (int i = 0; i < 150; ++i) deep_struct += "}";
  errors.clear();
  v1::HttpFilter filter;
  EXPECT_FALSE(YamlTextToProto(deep_struct, &filter, &errors));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_THAT(errors[0].message, HasSubstr("nested deeper than 100 levels"));
}

TEST(YamlProtoTest, ProtoToJsonRoundTrips) {
  const Bootstrap bootstrap = ParseValid<Bootstrap>(std::string(kDesignExample) + R"yaml(
drain_timeout: 1.5s
access_log: { format: json }
)yaml");
  const std::string json = ProtoToJson(bootstrap);
  EXPECT_THAT(json, HasSubstr(R"("connect_timeout": "1s")"));
  EXPECT_THAT(json, HasSubstr(R"("drain_timeout": "1.500s")"));
  EXPECT_THAT(json, HasSubstr(R"("format": "JSON")"));
  EXPECT_THAT(json, HasSubstr(R"("num_retries": 2)"));
  EXPECT_THAT(json, testing::Not(HasSubstr("connectTimeout")));
  ExpectProtoEq(ParseValid<Bootstrap>(json), bootstrap);
}

TEST(YamlProtoTest, ProtoToJsonReportsUnprintableMessages) {
  google::protobuf::Duration too_long;
  too_long.set_seconds(315'576'000'001);
  EXPECT_THAT(ProtoToJson(too_long), HasSubstr("\"error\""));
}

TEST(YamlProtoTest, ReadsFileAndNamesMissingFile) {
  char path[] = "/tmp/yaml_proto_test_XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  const std::string text = "clusters: [{ name: a, connect_timeout: 2s }]\n";
  ASSERT_EQ(write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
  close(fd);
  Bootstrap bootstrap;
  ConfigErrors errors;
  EXPECT_TRUE(YamlFileToProto(path, &bootstrap, &errors)) << Joined(errors);
  EXPECT_EQ(bootstrap.clusters(0).connect_timeout().seconds(), 2);
  std::remove(path);

  errors.clear();
  EXPECT_FALSE(YamlFileToProto("/nonexistent/portway.yaml", &bootstrap, &errors));
  EXPECT_THAT(ToStrings(errors),
              ElementsAre("cannot open /nonexistent/portway.yaml: No such file or directory"));

  errors.clear();
  EXPECT_FALSE(YamlFileToProto("/tmp", &bootstrap, &errors));
  EXPECT_THAT(ToStrings(errors), ElementsAre("cannot read /tmp: Is a directory"));
}

TEST(YamlProtoTest, ConfigErrorToStringOmitsEmptyPath) {
  EXPECT_EQ((ConfigError{"a.b[0]", "bad"}).ToString(), "a.b[0]: bad");
  EXPECT_EQ((ConfigError{"", "bad"}).ToString(), "bad");
}

}  // namespace
}  // namespace portway::config
