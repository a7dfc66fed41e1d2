// portwayctl: talks to portway-cp's admin API.
//
//   portwayctl --server HOST:PORT apply -f FILE [--wait 10s]
//   portwayctl --server HOST:PORT get [TYPE [NAME]]
//   portwayctl --server HOST:PORT delete TYPE NAME
//   portwayctl --server HOST:PORT status
//
// TYPE: listener, route_configuration, cluster, endpoints. FILE has the
// shape of portway-cp's files (listeners:, route_configurations:,
// clusters:, endpoints:). Exit codes: 0 done; 1 refused (a resource
// rejected, nothing to delete); 2 bad usage or input file; 3 stored but not
// applied by every connected gateway in time; 4 portway-cp unreachable.
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "core/common/files.h"
#include "core/config/yaml_proto.h"
#include "google/protobuf/util/json_util.h"
#include "grpcpp/grpcpp.h"
#include "portway/abi.h"
#include "portway/service/admin/v1/admin.grpc.pb.h"

namespace {

namespace av1 = portway::service::admin::v1;
namespace dv1 = portway::service::discovery::v1;

constexpr int kOk = 0, kRefused = 1, kUsage = 2, kNotApplied = 3, kUnreachable = 4;

// --help prints to stdout (exit 0); a usage error to stderr (exit 2).
int Usage(std::ostream& out = std::cerr) {
  out << "usage: portwayctl --server HOST:PORT [--ca FILE [--cert FILE --key FILE]] COMMAND\n"
         "       portwayctl --server HOST:PORT apply -f FILE [--wait DURATION]\n"
         "       portwayctl --server HOST:PORT get [TYPE [NAME]]\n"
         "       portwayctl --server HOST:PORT delete TYPE NAME\n"
         "       portwayctl --server HOST:PORT status\n"
         "       portwayctl --help | --version\n"
         "TYPE: listener, route_configuration, cluster, endpoints\n"
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
    google::protobuf::util::JsonPrintOptions options;
    options.add_whitespace = false;
    for (int i = 0; i < response.resources_size(); ++i) {
      std::string json;
      (void)google::protobuf::util::MessageToJsonString(response.resources(i), &json, options);
      std::cout << json << "  # " << response.sources(i) << "\n";
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
  return Usage();
}
