#include "core/upstream/host.h"

namespace portway::upstream {

const char* HealthStateName(HealthState state) {
  switch (state) {
    case HealthState::kHealthy:
      return "healthy";
    case HealthState::kUnhealthy:
      return "unhealthy";
    case HealthState::kDraining:
      return "draining";
  }
  return "unknown";
}

}  // namespace portway::upstream
