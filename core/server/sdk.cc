// The process-wide parts of the filter SDK that are not per stream:
// gauges, log lines, /clusters status providers and the real clock.
#include "core/server/sdk.h"

#include <map>
#include <mutex>

#include "core/server/stats.h"
#include "portway/admin.h"
#include "portway/log.h"
#include "portway/time_source.h"
#include "spdlog/spdlog.h"

namespace portway {
namespace {

struct StatusProviders {
  std::mutex mutex;
  std::map<std::string, ClusterStatusProvider, std::less<>> by_source;
};

StatusProviders& Providers() {
  static auto* providers = new StatusProviders();  // never destroyed: used until exit
  return *providers;
}

}  // namespace

Gauge& GetGauge(const std::string& name,
                const std::vector<std::pair<std::string, std::string>>& labels) {
  return stats::GlobalStore().GetGauge(name, labels);
}

void Log(LogLevel level, std::string_view message) {
  switch (level) {
    case LogLevel::kDebug:
      spdlog::debug("{}", message);
      break;
    case LogLevel::kInfo:
      spdlog::info("{}", message);
      break;
    case LogLevel::kWarn:
      spdlog::warn("{}", message);
      break;
    case LogLevel::kError:
      spdlog::error("{}", message);
      break;
  }
}

const TimeSource& RealTimeSource() {
  class Real final : public TimeSource {
   public:
    MonotonicTime Now() const override { return std::chrono::steady_clock::now(); }
    SystemTime SystemNow() const override { return std::chrono::system_clock::now(); }
  };
  static const Real real;
  return real;
}

void RegisterClusterStatus(std::string_view source, ClusterStatusProvider provider) {
  StatusProviders& p = Providers();
  std::lock_guard<std::mutex> lock(p.mutex);
  p.by_source[std::string(source)] = std::move(provider);
}

namespace server {

std::string RenderFilterClusterStatus(std::string_view cluster) {
  StatusProviders& p = Providers();
  std::lock_guard<std::mutex> lock(p.mutex);
  std::string out;
  for (const auto& [source, provider] : p.by_source) {
    std::string value = provider(cluster);
    if (value.empty()) continue;
    out += out.empty() ? "{" : ",";
    out += "\"" + source + "\":" + value;
  }
  if (!out.empty()) out += "}";
  return out;
}

}  // namespace server
}  // namespace portway
