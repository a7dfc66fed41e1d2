// Small fakes for tests of the upstream side (ClusterManager, Router) on a
// SimDispatcher: hosts and cluster snapshots built in one call, a
// deterministic balancer random source, and recording pool callbacks and
// response decoders.
//
// Thread safety: one test thread.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/http/codec.h"
#include "core/upstream/cluster.h"
#include "core/upstream/conn_pool.h"
#include "core/upstream/load_balancer.h"
#include "gtest/gtest.h"

namespace portway::test {

// splitmix64 from a fixed seed.
class FixedSeedLbRandom final : public upstream::Random {
 public:
  explicit FixedSeedLbRandom(uint64_t seed = 1) : state_(seed) {}
  uint64_t Next() override {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }

 private:
  uint64_t state_;
};

inline upstream::HostSharedPtr MakeHost(const std::string& cluster, const std::string& address,
                                        uint32_t weight = 1) {
  auto parsed = network::Address::Parse(address);
  EXPECT_TRUE(parsed.ok()) << address;
  return std::make_shared<upstream::Host>(cluster, *parsed, weight);
}

inline std::shared_ptr<upstream::ClusterConfig> MakeClusterConfig(const std::string& name) {
  auto config = std::make_shared<upstream::ClusterConfig>();
  config->name = name;
  config->connect_timeout = std::chrono::milliseconds(1000);
  return config;
}

inline upstream::ClusterSnapshotPtr MakeSnapshot(
    std::shared_ptr<const upstream::ClusterConfig> config, upstream::HostVector hosts) {
  return upstream::MakeClusterSnapshot(std::move(config), std::move(hosts), "");
}

// Records the upstream response.
class RecordingDecoder : public http::ResponseDecoder {
 public:
  void DecodeHeaders(http::HeaderMapPtr headers, bool end_stream) override {
    status = headers->Status();
    ended = end_stream;
  }
  void DecodeData(Buffer& data, bool end_stream) override {
    body += data.ToString();
    data.Clear();
    ended = end_stream;
  }
  void DecodeTrailers(http::HeaderMapPtr) override { ended = true; }
  int status = 0;
  std::string body;
  bool ended = false;
};

// Records what a pool answered.
class RecordingPoolCallbacks : public upstream::PoolCallbacks {
 public:
  void OnPoolReady(http::RequestEncoder& e, const upstream::PoolStreamInfo&) override {
    encoder = &e;
  }
  void OnPoolFailure(upstream::PoolFailure reason, std::string_view) override { failure = reason; }
  http::RequestEncoder* encoder = nullptr;
  std::optional<upstream::PoolFailure> failure;
};

inline http::HeaderMapPtr GetRequest(std::string_view path = "/") {
  auto h = std::make_unique<http::HeaderMap>();
  h->Add(":method", "GET");
  h->Add(":path", path);
  h->Add(":authority", "example.test");
  return h;
}

}  // namespace portway::test
