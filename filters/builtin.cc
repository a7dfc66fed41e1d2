#include "filters/builtin.h"

#include "core/http/filter_registry.h"
#include "filters/cache/cache_filter.h"
#include "filters/circuit_breaker/circuit_breaker_filter.h"
#include "filters/fault/fault_filter.h"
#include "filters/health_check/health_check_filter.h"
#include "filters/retry/retry_filter.h"

namespace portway::filters {

void RegisterBuiltinFilters() {
  static bool registered = [] {
    auto& registry = http::GlobalFilterRegistry();
    (void)registry.Register(std::make_unique<fault::FaultFactory>());
    (void)registry.Register(std::make_unique<retry::RetryFactory>());
    (void)registry.Register(std::make_unique<circuit_breaker::CircuitBreakerFactory>());
    (void)registry.Register(std::make_unique<health_check::HealthCheckFactory>());
    (void)registry.Register(std::make_unique<cache::CacheFactory>());
    return true;
  }();
  (void)registered;
}

}  // namespace portway::filters
