// portwayctl: talks to portway-cp's admin API.
//
//   portwayctl --server HOST:PORT apply -f FILE [--wait 10s]
//   portwayctl --server HOST:PORT get [TYPE [NAME]] [-o yaml|json]
//   portwayctl --server HOST:PORT delete TYPE NAME
//   portwayctl --server HOST:PORT status
//   portwayctl --server HOST:PORT health [--cluster NAME] [-o json]
//
// TYPE: listener, route_configuration, cluster, endpoints. FILE has the
// shape of portway-cp's files (listeners:, route_configurations:,
// clusters:, endpoints:). Exit codes: 0 done; 1 refused (a resource
// rejected, nothing to delete); 2 bad usage or input file; 3 stored but not
// applied by every connected gateway in time; 4 portway-cp unreachable.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "core/common/files.h"
#include "core/config/yaml_proto.h"
#include "google/protobuf/util/json_util.h"
#include "grpcpp/grpcpp.h"
#include "portway/abi.h"
#include "portway/service/admin/v1/admin.grpc.pb.h"
#include "yaml-cpp/yaml.h"

namespace {

namespace av1 = portway::service::admin::v1;
namespace dv1 = portway::service::discovery::v1;

constexpr int kOk = 0, kRefused = 1, kUsage = 2, kNotApplied = 3, kUnreachable = 4;

// --help prints to stdout (exit 0); a usage error to stderr (exit 2).
int Usage(std::ostream& out = std::cerr) {
  out << "usage: portwayctl --server HOST:PORT [--ca FILE [--cert FILE --key FILE]] COMMAND\n"
         "       portwayctl --server HOST:PORT apply -f FILE [--wait DURATION]\n"
         "       portwayctl --server HOST:PORT get [TYPE [NAME]] [-o yaml|json]\n"
         "       portwayctl --server HOST:PORT delete TYPE NAME\n"
         "       portwayctl --server HOST:PORT status\n"
         "       portwayctl --server HOST:PORT health [--cluster NAME] [-o json]\n"
         "       portwayctl --help | --version\n"
         "TYPE: listener, route_configuration, cluster, endpoints\n"
         "health: every host a connected gateway cannot use, with how many of the\n"
         "connected gateways see it so (GATEWAYS unhealthy/total) and why.\n"
         "Talks to portway-cp's admin API; see docs/control-plane.md.\n";
  return &out == &std::cerr ? kUsage : kOk;
}

bool ParseType(const std::string& s, dv1::ResourceType* type) {
  if (s == "listener" || s == "listeners") {
    *type = dv1::LISTENER;
  } else if (s == "route_configuration" || s == "route_configurations") {
    *type = dv1::ROUTE_CONFIGURATION;
  } else if (s == "cluster" || s == "clusters") {
    *type = dv1::CLUSTER;
  } else if (s == "endpoints") {
    *type = dv1::ENDPOINTS;
  } else if (s == "secret" || s == "secrets") {
    *type = dv1::SECRET;
  } else {
    return false;
  }
  return true;
}

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// "10s", "500ms", "2m" -> milliseconds; -1 if not a duration.
long ParseMillis(const std::string& s) {
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  std::string unit(end);
  if (end == s.c_str() || v < 0) return -1;
  if (unit == "ms") return static_cast<long>(v);
  if (unit == "s" || unit.empty()) return static_cast<long>(v * 1000);
  if (unit == "m") return static_cast<long>(v * 60000);
  return -1;
}

bool g_client_cert = false;  // --cert given: a refused handshake is likely

// A message as the YAML the config loader reads back (core/config/
// yaml_proto.h): snake_case field names, enums by name, durations as "5s",
// wrappers as plain values, strings quoted so "8080" stays a string.
void EmitMessage(const google::protobuf::Message& m, YAML::Emitter& out);

void EmitValue(const google::protobuf::Value& v, YAML::Emitter& out) {
  switch (v.kind_case()) {
    case google::protobuf::Value::kNumberValue: {
      double n = v.number_value();
      if (std::trunc(n) == n && std::fabs(n) < 9.2e18) {
        out << static_cast<int64_t>(n);
      } else {
        out << n;
      }
      break;
    }
    case google::protobuf::Value::kStringValue:
      out << YAML::DoubleQuoted << v.string_value();
      break;
    case google::protobuf::Value::kBoolValue:
      out << v.bool_value();
      break;
    case google::protobuf::Value::kStructValue:
      out << YAML::BeginMap;
      for (const auto& [key, field] : std::map<std::string, google::protobuf::Value>(
               v.struct_value().fields().begin(), v.struct_value().fields().end())) {
        out << YAML::Key << key << YAML::Value;
        EmitValue(field, out);
      }
      out << YAML::EndMap;
      break;
    case google::protobuf::Value::kListValue:
      out << YAML::BeginSeq;
      for (const auto& e : v.list_value().values()) EmitValue(e, out);
      out << YAML::EndSeq;
      break;
    default:
      out << YAML::Null;
  }
}

void EmitField(const google::protobuf::Message& m, const google::protobuf::FieldDescriptor* f,
               int index, YAML::Emitter& out) {
  using FD = google::protobuf::FieldDescriptor;
  const google::protobuf::Reflection* r = m.GetReflection();
  bool rep = f->is_repeated();
  switch (f->cpp_type()) {
    case FD::CPPTYPE_INT32:
      out << (rep ? r->GetRepeatedInt32(m, f, index) : r->GetInt32(m, f));
      break;
    case FD::CPPTYPE_INT64:
      out << (rep ? r->GetRepeatedInt64(m, f, index) : r->GetInt64(m, f));
      break;
    case FD::CPPTYPE_UINT32:
      out << (rep ? r->GetRepeatedUInt32(m, f, index) : r->GetUInt32(m, f));
      break;
    case FD::CPPTYPE_UINT64:
      out << (rep ? r->GetRepeatedUInt64(m, f, index) : r->GetUInt64(m, f));
      break;
    case FD::CPPTYPE_DOUBLE:
      out << (rep ? r->GetRepeatedDouble(m, f, index) : r->GetDouble(m, f));
      break;
    case FD::CPPTYPE_FLOAT:
      out << (rep ? r->GetRepeatedFloat(m, f, index) : r->GetFloat(m, f));
      break;
    case FD::CPPTYPE_BOOL:
      out << (rep ? r->GetRepeatedBool(m, f, index) : r->GetBool(m, f));
      break;
    case FD::CPPTYPE_ENUM:
      out << (rep ? r->GetRepeatedEnum(m, f, index) : r->GetEnum(m, f))->name();
      break;
    case FD::CPPTYPE_STRING:
      out << YAML::DoubleQuoted << (rep ? r->GetRepeatedString(m, f, index) : r->GetString(m, f));
      break;
    case FD::CPPTYPE_MESSAGE:
      EmitMessage(rep ? r->GetRepeatedMessage(m, f, index) : r->GetMessage(m, f), out);
      break;
  }
}

void EmitMessage(const google::protobuf::Message& m, YAML::Emitter& out) {
  const google::protobuf::Descriptor* d = m.GetDescriptor();
  const std::string& type = d->full_name();
  const google::protobuf::Reflection* r = m.GetReflection();
  if (type == "google.protobuf.Duration") {
    int64_t seconds = r->GetInt64(m, d->FindFieldByName("seconds"));
    int32_t nanos = r->GetInt32(m, d->FindFieldByName("nanos"));
    if (nanos == 0) {
      out << std::to_string(seconds) + "s";
    } else if (nanos % 1000000 == 0) {
      out << std::to_string(seconds * 1000 + nanos / 1000000) + "ms";
    } else {
      out << std::to_string(seconds * 1000000000 + nanos) + "ns";
    }
    return;
  }
  if (type == "google.protobuf.Struct" || type == "google.protobuf.Value" ||
      type == "google.protobuf.ListValue") {
    google::protobuf::Value v;
    if (type == "google.protobuf.Struct") {
      v.mutable_struct_value()->CopyFrom(m);
    } else if (type == "google.protobuf.ListValue") {
      v.mutable_list_value()->CopyFrom(m);
    } else {
      v.CopyFrom(m);
    }
    EmitValue(v, out);
    return;
  }
  if (d->file()->name() == "google/protobuf/wrappers.proto") {
    EmitField(m, d->FindFieldByNumber(1), 0, out);
    return;
  }
  std::vector<const google::protobuf::FieldDescriptor*> fields;
  r->ListFields(m, &fields);
  out << YAML::BeginMap;
  for (const auto* f : fields) {
    out << YAML::Key << f->name() << YAML::Value;
    if (f->is_map()) {
      // key/value entries, sorted for a stable output
      std::map<std::string, const google::protobuf::Message*> entries;
      for (int i = 0; i < r->FieldSize(m, f); ++i) {
        const auto& e = r->GetRepeatedMessage(m, f, i);
        YAML::Emitter key;
        EmitField(e, e.GetDescriptor()->FindFieldByNumber(1), 0, key);
        entries[key.c_str()] = &e;
      }
      out << YAML::BeginMap;
      for (const auto& [k, e] : entries) {
        out << YAML::Key;
        EmitField(*e, e->GetDescriptor()->FindFieldByNumber(1), 0, out);
        out << YAML::Value;
        EmitField(*e, e->GetDescriptor()->FindFieldByNumber(2), 0, out);
      }
      out << YAML::EndMap;
    } else if (f->is_repeated()) {
      out << YAML::BeginSeq;
      for (int i = 0; i < r->FieldSize(m, f); ++i) EmitField(m, f, i, out);
      out << YAML::EndSeq;
    } else {
      EmitField(m, f, 0, out);
    }
  }
  out << YAML::EndMap;
}

// The ResourceSet key and body of a resource (null if it has none).
const google::protobuf::Message* Body(const dv1::Resource& r, std::string* key) {
  switch (r.body_case()) {
    case dv1::Resource::kListener:
      *key = "listeners";
      return &r.listener();
    case dv1::Resource::kRouteConfiguration:
      *key = "route_configurations";
      return &r.route_configuration();
    case dv1::Resource::kCluster:
      *key = "clusters";
      return &r.cluster();
    case dv1::Resource::kEndpoints:
      *key = "endpoints";
      return &r.endpoints();
    case dv1::Resource::kSecret:
      *key = "secrets";
      return &r.secret();
    default:
      return nullptr;
  }
}

// What `apply -f` reads: one section per type, each resource under a
// comment saying where portway-cp has it from.
void PrintYaml(const av1::GetResponse& response) {
  std::map<std::string, std::vector<int>> sections;
  const std::vector<std::string> order = {"listeners", "route_configurations", "clusters",
                                          "endpoints", "secrets"};
  for (int i = 0; i < response.resources_size(); ++i) {
    std::string key;
    if (Body(response.resources(i), &key) != nullptr) sections[key].push_back(i);
  }
  for (const std::string& section : order) {
    auto it = sections.find(section);
    if (it == sections.end()) continue;
    std::cout << section << ":\n";
    for (int i : it->second) {
      std::string key;
      YAML::Emitter out;
      out.SetSeqFormat(YAML::Block);
      EmitMessage(*Body(response.resources(i), &key), out);
      std::cout << "  # " << response.sources(i) << ", version " << response.resources(i).version()
                << "\n";
      std::string text = out.c_str();
      size_t start = 0;
      bool first = true;
      while (start < text.size()) {
        size_t end = text.find('\n', start);
        if (end == std::string::npos) end = text.size();
        std::cout << (first ? "  - " : "    ") << text.substr(start, end - start) << "\n";
        first = false;
        start = end + 1;
      }
    }
  }
}

int Unreachable(const std::string& server, const grpc::Status& status) {
  std::cerr << "portwayctl: " << server << ": " << status.error_message();
  if (status.error_code() == grpc::StatusCode::UNIMPLEMENTED) {
    std::cerr << " (no admin API on this port: portway-cp serves it on its --admin-listen"
                 " address when it has one)";
  } else if (status.error_code() == grpc::StatusCode::UNAVAILABLE && g_client_cert) {
    std::cerr << " (if portway-cp is up, it refused this client certificate: its admin API"
                 " takes only certificates issued by its --admin-client-ca)";
  }
  std::cerr << "\n";
  return kUnreachable;
}

}  // namespace

int main(int argc, char** argv) {
  std::string server;
  std::string ca, cert, key;
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--server" && i + 1 < argc) {
      server = argv[++i];
    } else if (a == "--ca" && i + 1 < argc) {
      ca = argv[++i];
    } else if (a == "--cert" && i + 1 < argc) {
      cert = argv[++i];
    } else if (a == "--key" && i + 1 < argc) {
      key = argv[++i];
    } else if (a == "-h" || a == "--help") {
      return Usage(std::cout);
    } else if (a == "--version") {
      std::cout << "portwayctl " << PORTWAY_VERSION_STRING << "\n";
      return kOk;
    } else {
      args.push_back(a);
    }
  }
  if (server.empty() || args.empty()) return Usage();
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  if (!ca.empty()) {
    grpc::SslCredentialsOptions tls;
    if (!portway::ReadFile(ca, &tls.pem_root_certs) ||
        (!cert.empty() && !portway::ReadFile(cert, &tls.pem_cert_chain)) ||
        (!key.empty() && !portway::ReadFile(key, &tls.pem_private_key))) {
      std::cerr << "portwayctl: cannot read the TLS files\n";
      return kUsage;
    }
    credentials = grpc::SslCredentials(tls);
    g_client_cert = !cert.empty();
  }
  auto channel = grpc::CreateChannel(server, credentials);
  auto stub = av1::ControlPlaneAdmin::NewStub(channel);
  auto deadline = [](long ms) {
    return std::chrono::system_clock::now() + std::chrono::milliseconds(ms);
  };
  const std::string& command = args[0];

  if (command == "apply") {
    std::string file;
    long wait_ms = 10000;
    for (size_t i = 1; i < args.size(); ++i) {
      if ((args[i] == "-f" || args[i] == "--file") && i + 1 < args.size()) {
        file = args[++i];
      } else if (args[i] == "--wait" && i + 1 < args.size()) {
        wait_ms = ParseMillis(args[++i]);
        if (wait_ms < 0) return Usage();
      } else {
        return Usage();
      }
    }
    if (file.empty()) return Usage();
    av1::ApplyRequest request;
    portway::config::ConfigErrors errors;
    if (!portway::config::YamlFileToProto(file, request.mutable_resources(), &errors)) {
      for (const auto& e : errors) std::cerr << file << ": " << e.ToString() << "\n";
      return kUsage;
    }
    request.set_wait_applied_ms(static_cast<uint32_t>(wait_ms));
    av1::ApplyResponse response;
    grpc::ClientContext context;
    context.set_deadline(deadline(wait_ms + 10000));
    grpc::Status status = stub->Apply(&context, request, &response);
    if (!status.ok()) return Unreachable(server, status);
    bool rejected = false;
    for (const auto& v : response.verdicts()) {
      std::string what = Lower(dv1::ResourceType_Name(v.type())) + " '" + v.name() + "'";
      if (v.accepted()) continue;
      rejected = true;
      for (const auto& e : v.errors()) {
        std::cerr << what << ": " << (e.path().empty() ? "" : e.path() + ": ") << e.message()
                  << "\n";
      }
    }
    if (rejected || !response.stored()) {
      std::cerr << "portwayctl: nothing applied\n";
      return kRefused;
    }
    std::cout << "stored " << response.verdicts_size() << " resource(s)\n";
    int missing = 0;
    for (const auto& g : response.gateways()) {
      if (g.applied()) {
        std::cout << "  " << g.node_id() << ": applied\n";
        continue;
      }
      ++missing;
      std::cout << "  " << g.node_id() << ": NOT applied\n";
      for (const auto& p : g.problems()) std::cout << "    " << p << "\n";
    }
    if (response.gateways_size() == 0) std::cout << "  (no gateway connected)\n";
    return missing > 0 ? kNotApplied : kOk;
  }

  if (command == "get") {
    av1::GetRequest request;
    bool json = false;
    for (size_t i = 1; i < args.size();) {
      if (args[i] == "-o" && i + 1 < args.size()) {
        if (args[i + 1] == "json") {
          json = true;
        } else if (args[i + 1] != "yaml") {
          return Usage();
        }
        args.erase(args.begin() + i, args.begin() + i + 2);
      } else {
        ++i;
      }
    }
    if (args.size() > 1) {
      dv1::ResourceType type;
      if (!ParseType(args[1], &type)) return Usage();
      request.set_type(type);
    }
    if (args.size() > 2) request.set_name(args[2]);
    if (args.size() > 3) return Usage();
    av1::GetResponse response;
    grpc::ClientContext context;
    context.set_deadline(deadline(10000));
    grpc::Status status = stub->Get(&context, request, &response);
    if (!status.ok()) return Unreachable(server, status);
    if (!request.name().empty() && response.resources_size() == 0) {
      std::cerr << "portwayctl: no such resource\n";
      return kRefused;
    }
    if (json) {
      // One JSON object per resource per line: the resource (snake_case
      // field names) and where portway-cp has it from.
      google::protobuf::util::JsonPrintOptions options;
      options.add_whitespace = false;
      options.preserve_proto_field_names = true;
      for (int i = 0; i < response.resources_size(); ++i) {
        std::string body;
        (void)google::protobuf::util::MessageToJsonString(response.resources(i), &body, options);
        YAML::Emitter source;
        source << YAML::DoubleQuoted << response.sources(i);
        std::cout << "{\"source\":" << source.c_str() << "," << body.substr(1) << "\n";
      }
    } else {
      PrintYaml(response);
    }
    return kOk;
  }

  if (command == "delete") {
    if (args.size() != 3) return Usage();
    av1::DeleteRequest request;
    dv1::ResourceType type;
    if (!ParseType(args[1], &type)) return Usage();
    request.set_type(type);
    request.set_name(args[2]);
    av1::DeleteResponse response;
    grpc::ClientContext context;
    context.set_deadline(deadline(10000));
    grpc::Status status = stub->Delete(&context, request, &response);
    if (!status.ok()) return Unreachable(server, status);
    if (!response.deleted()) {
      std::cerr << "portwayctl: " << args[1] << " '" << args[2] << "': " << response.error()
                << "\n";
      return kRefused;
    }
    std::cout << "deleted " << args[1] << " '" << args[2] << "'\n";
    return kOk;
  }

  if (command == "status") {
    if (args.size() != 1) return Usage();
    av1::StatusResponse response;
    grpc::ClientContext context;
    context.set_deadline(deadline(10000));
    grpc::Status status = stub->Status(&context, av1::StatusRequest(), &response);
    if (!status.ok()) return Unreachable(server, status);
    std::printf("%-20s %-10s %-10s %-8s %s\n", "GATEWAY", "CONNECTED", "LAST_PUSH", "APPLIED",
                "REJECTED");
    for (const auto& g : response.gateways()) {
      int rejected = 0;
      for (const auto& v : g.verdicts()) rejected += v.accepted() ? 0 : 1;
      bool applied = !g.last_push().empty() && g.last_push() == g.last_applied();
      std::printf("%-20s %-10s %-10s %-8s %d\n", g.node().id().c_str(),
                  g.connected() ? "yes" : "no", g.last_push().c_str(), applied ? "yes" : "no",
                  rejected);
      for (const auto& v : g.verdicts()) {
        if (v.accepted()) continue;
        for (const auto& e : v.errors()) {
          std::printf("  %s '%s' %s: %s: %s\n", Lower(dv1::ResourceType_Name(v.type())).c_str(),
                      v.name().c_str(), v.version().c_str(), e.path().c_str(), e.message().c_str());
        }
      }
    }
    return kOk;
  }

  if (command == "health") {
    av1::HealthRequest request;
    bool json = false;
    for (size_t i = 1; i < args.size(); ++i) {
      if (args[i] == "--cluster" && i + 1 < args.size()) {
        request.set_cluster(args[++i]);
      } else if (args[i] == "-o" && i + 1 < args.size() && args[i + 1] == "json") {
        json = true;
        ++i;
      } else {
        return Usage();
      }
    }
    av1::HealthResponse response;
    grpc::ClientContext context;
    context.set_deadline(deadline(10000));
    grpc::Status status = stub->Health(&context, request, &response);
    if (!status.ok()) return Unreachable(server, status);
    if (json) {
      google::protobuf::util::JsonPrintOptions options;
      options.add_whitespace = false;
      options.preserve_proto_field_names = true;
      options.always_print_primitive_fields = true;
      std::string body;
      (void)google::protobuf::util::MessageToJsonString(response, &body, options);
      std::cout << body << "\n";
      return kOk;
    }
    const int total = response.gateways_size();
    if (response.hosts_size() == 0) {
      if (total == 0) {
        std::cout << "no gateway connected\n";
      } else {
        std::cout << "all hosts healthy on " << total << " gateway" << (total == 1 ? "" : "s")
                  << "\n";
      }
    } else {
      std::printf("%-20s %-24s %-9s %-40s %s\n", "CLUSTER", "ADDRESS", "GATEWAYS", "FLAGS",
                  "REASON");
      for (const auto& h : response.hosts()) {
        // Every flag some gateway sees, and the reason of the most recent
        // change among them.
        std::vector<std::string> flags;
        const av1::GatewayHostView* latest = nullptr;
        for (const auto& g : h.gateways()) {
          for (const auto& f : g.flags()) {
            if (std::find(flags.begin(), flags.end(), f) == flags.end()) flags.push_back(f);
          }
          if (latest == nullptr || g.since_unix_ms() > latest->since_unix_ms()) latest = &g;
        }
        std::string joined;
        for (const auto& f : flags) joined += (joined.empty() ? "" : ",") + f;
        std::string count = std::to_string(h.gateways_size()) + "/" + std::to_string(total);
        std::printf("%-20s %-24s %-9s %-40s %s\n", h.cluster().c_str(), h.address().c_str(),
                    count.c_str(), joined.c_str(),
                    latest != nullptr ? latest->reason().c_str() : "");
      }
    }
    for (const auto& [node, omitted] : response.omitted()) {
      std::cout << "  " << node << ": " << omitted
                << " more unusable host(s) not reported (over its report's cap)\n";
    }
    return kOk;
  }
  return Usage();
}
