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

struct AdminHandlers {
  std::mutex mutex;
  std::map<std::string, AdminHandler, std::less<>> by_prefix;
};

AdminHandlers& Handlers() {
  static auto* handlers = new AdminHandlers();  // never destroyed: used until exit
  return *handlers;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string PercentDecode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out += ' ';
    } else if (s[i] == '%' && i + 2 < s.size() && HexValue(s[i + 1]) >= 0 &&
               HexValue(s[i + 2]) >= 0) {
      out += static_cast<char>(HexValue(s[i + 1]) * 16 + HexValue(s[i + 2]));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

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

void RegisterAdminHandler(std::string_view prefix, AdminHandler handler) {
  AdminHandlers& h = Handlers();
  std::lock_guard<std::mutex> lock(h.mutex);
  h.by_prefix[std::string(prefix)] = std::move(handler);
}

std::optional<std::string> AdminQueryParam(std::string_view query, std::string_view name) {
  while (!query.empty()) {
    const size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    const size_t eq = pair.find('=');
    if (PercentDecode(pair.substr(0, eq)) != name) continue;
    return eq == std::string_view::npos ? std::string() : PercentDecode(pair.substr(eq + 1));
  }
  return std::nullopt;
}

namespace server {

std::optional<AdminResponse> HandleFilterAdmin(const AdminRequest& request) {
  AdminHandler handler;
  {
    AdminHandlers& h = Handlers();
    std::lock_guard<std::mutex> lock(h.mutex);
    for (const auto& [prefix, candidate] : h.by_prefix) {
      const std::string_view path = request.path;
      if (path == prefix ||
          (path.size() > prefix.size() && path.substr(0, prefix.size()) == prefix &&
           path[prefix.size()] == '/')) {
        handler = candidate;
        break;
      }
    }
  }
  if (!handler) return std::nullopt;
  return handler(request);
}

std::vector<std::string> FilterAdminPrefixes() {
  AdminHandlers& h = Handlers();
  std::lock_guard<std::mutex> lock(h.mutex);
  std::vector<std::string> out;
  for (const auto& [prefix, handler] : h.by_prefix) out.push_back(prefix);
  return out;
}

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
