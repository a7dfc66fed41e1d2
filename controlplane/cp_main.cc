// portway-cp: the reference control plane. Serves the resources described
// by the YAML files of a directory over the discovery API
// (docs/control-plane.md) to every gateway that connects, and pushes each
// change within a poll interval (default 500ms).
//
//   portway-cp --listen 127.0.0.1:18000 --config-dir ./resources
//
// Per gateway stream: after the gateway's Hello, a delta push brings it
// from what it has (Hello.have) to the current set (sent even when empty,
// so the gateway knows it is in sync); every later change is sent as a
// delta (changed resources, removals named). Verdicts and
// Applied messages are logged, rejections with every error and its path.
#include <atomic>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "controlplane/resource_dir.h"
#include "grpcpp/grpcpp.h"
#include "portway/service/discovery/v1/discovery.grpc.pb.h"
#include "spdlog/spdlog.h"

namespace portway::controlplane {
namespace {

// The served set and a generation that counts its changes.
class Catalog {
 public:
  void Set(std::map<Key, v1::Resource> resources) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      resources_ = std::move(resources);
      ++generation_;
    }
    cv_.notify_all();
  }
  // Waits until the generation passes `seen` or `deadline`; returns the
  // current generation and copies the set.
  uint64_t Wait(uint64_t seen, std::chrono::milliseconds timeout,
                std::map<Key, v1::Resource>* out) {
    std::unique_lock<std::mutex> lock(mutex_);
    cv_.wait_for(lock, timeout, [&] { return generation_ != seen; });
    if (generation_ != seen) *out = resources_;
    return generation_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  std::map<Key, v1::Resource> resources_;
  uint64_t generation_ = 0;
};

using Rw = grpc::ServerReaderWriter<v1::ControlPlaneMessage, v1::GatewayMessage>;

class DiscoveryService final : public v1::Discovery::Service {
 public:
  explicit DiscoveryService(Catalog& catalog) : catalog_(catalog) {}

  grpc::Status Stream(grpc::ServerContext* context, Rw* stream) override {
    v1::GatewayMessage first;
    if (!stream->Read(&first) || !first.has_hello()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "the first message must be Hello");
    }
    const v1::Node node = first.hello().node();
    spdlog::info("gateway '{}' connected from {}", node.id(), context->peer());
    // What the gateway has, as we believe: a push brings it to the set.
    std::map<Key, std::string> sent;
    for (const auto& h : first.hello().have()) sent[{h.type(), h.name()}] = h.version();

    std::atomic<bool> done{false};
    std::thread reader([&] {
      v1::GatewayMessage m;
      while (stream->Read(&m)) Report(node, m);
      done = true;
    });
    uint64_t nonce = 0;
    uint64_t seen = 0;
    std::map<Key, v1::Resource> current;
    bool have_current = false;
    while (!done && !context->IsCancelled()) {
      std::map<Key, v1::Resource> latest;
      uint64_t generation = catalog_.Wait(seen, std::chrono::milliseconds(200), &latest);
      if (generation != seen || !have_current) {
        if (generation != seen) current = std::move(latest);
        seen = generation;
        have_current = true;
        v1::ControlPlaneMessage message;
        v1::Push* push = message.mutable_push();
        for (const auto& [key, r] : current) {
          auto it = sent.find(key);
          if (it == sent.end() || it->second != r.version()) *push->add_resources() = r;
        }
        for (const auto& [key, version] : sent) {
          if (current.count(key) == 0) {
            v1::ResourceKey* k = push->add_removed();
            k->set_type(static_cast<v1::ResourceType>(key.first));
            k->set_name(key.second);
          }
        }
        // The first push goes out even when empty: it tells the gateway it
        // is in sync.
        if (push->resources_size() == 0 && push->removed_size() == 0 && nonce > 0) continue;
        push->set_nonce(std::to_string(++nonce));
        if (!stream->Write(message)) break;
        spdlog::info("gateway '{}': push {}: {} resource(s), {} removal(s)", node.id(),
                     push->nonce(), push->resources_size(), push->removed_size());
        sent.clear();
        for (const auto& [key, r] : current) sent[key] = r.version();
      }
    }
    context->TryCancel();
    reader.join();
    spdlog::info("gateway '{}' disconnected", node.id());
    return grpc::Status::OK;
  }

 private:
  static void Report(const v1::Node& node, const v1::GatewayMessage& m) {
    if (m.has_verdicts()) {
      int accepted = 0;
      for (const auto& v : m.verdicts().verdicts()) {
        if (v.accepted()) {
          ++accepted;
          if (!v.pending().empty()) {
            spdlog::info("gateway '{}': {} '{}' accepted, pending: {}", node.id(),
                         v1::ResourceType_Name(v.type()), v.name(), v.pending());
          }
          continue;
        }
        for (const auto& e : v.errors()) {
          spdlog::warn("gateway '{}': {} '{}' version {} rejected: {}: {}", node.id(),
                       v1::ResourceType_Name(v.type()), v.name(), v.version(), e.path(),
                       e.message());
        }
      }
      spdlog::info("gateway '{}': push {}: {} of {} accepted", node.id(), m.verdicts().nonce(),
                   accepted, m.verdicts().verdicts_size());
    } else if (m.has_applied()) {
      spdlog::info("gateway '{}': push {} applied", node.id(), m.applied().nonce());
    }
  }

  Catalog& catalog_;
};

int Usage() {
  std::cerr << "usage: portway-cp --listen HOST:PORT --config-dir DIR [--poll-ms N]"
               " [--port-file FILE]\n";
  return 2;
}

}  // namespace
}  // namespace portway::controlplane

int main(int argc, char** argv) {
  using namespace portway::controlplane;
  std::string listen;
  std::string dir;
  std::string port_file;
  int poll_ms = 500;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (arg == "--listen") {
      listen = value();
    } else if (arg == "--config-dir") {
      dir = value();
    } else if (arg == "--poll-ms") {
      poll_ms = std::atoi(value().c_str());
    } else if (arg == "--port-file") {
      port_file = value();
    } else {
      return Usage();
    }
  }
  if (listen.empty() || dir.empty() || poll_ms <= 0) return Usage();

  // Signals go to the main thread, which waits for them below.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  Catalog catalog;
  ResourceDir resources(dir);
  resources.Refresh();
  catalog.Set(resources.Resources());

  DiscoveryService service(catalog);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || port == 0) {
    std::cerr << "portway-cp: cannot listen on " << listen << "\n";
    return 1;
  }
  std::string host = listen.substr(0, listen.rfind(':'));
  spdlog::info("portway-cp: serving {} on {}:{}", dir, host, port);
  if (!port_file.empty()) {
    std::ofstream(port_file + ".tmp") << host << ":" << port << "\n";
    std::rename((port_file + ".tmp").c_str(), port_file.c_str());
  }

  std::atomic<bool> stopping{false};
  std::thread poller([&] {
    while (!stopping) {
      std::this_thread::sleep_for(std::chrono::milliseconds(poll_ms));
      if (resources.Refresh()) catalog.Set(resources.Resources());
    }
  });
  int sig = 0;
  sigwait(&signals, &sig);
  spdlog::info("portway-cp: signal {}, stopping", sig);
  stopping = true;
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  poller.join();
  return 0;
}
