// A GatewayView whose answers the test sets: draining or not, and the
// health of each cluster by name (unknown names: ClusterHealth{}).
#pragma once

#include <functional>
#include <map>
#include <string>
#include <string_view>

#include "core/event/dispatcher.h"
#include "portway/filter.h"
#include "portway/gateway.h"

namespace portway::test {

class FakeGateway : public http::GatewayView {
 public:
  bool Draining() const override { return draining; }
  http::ClusterHealth GetClusterHealth(std::string_view cluster) const override {
    ++health_lookups;
    auto it = clusters.find(cluster);
    return it == clusters.end() ? http::ClusterHealth{} : it->second;
  }
  void SetCluster(const std::string& name, uint32_t total, uint32_t usable) {
    clusters[name] = http::ClusterHealth{true, total, usable};
  }

  bool draining = false;
  std::map<std::string, http::ClusterHealth, std::less<>> clusters;
  mutable int health_lookups = 0;
};

// FilterCallbacks::Worker() for tests: posts to the test's dispatcher.
class FakePoster : public http::WorkerPoster {
 public:
  explicit FakePoster(event::Dispatcher& dispatcher) : dispatcher_(dispatcher) {}
  bool Post(std::function<void()> callback) override {
    if (stopped) return false;
    dispatcher_.Post(std::move(callback));
    return true;
  }
  bool stopped = false;

 private:
  event::Dispatcher& dispatcher_;
};

}  // namespace portway::test
