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

const char* HealthFlagName(uint32_t flag) {
  switch (flag) {
    case health_flag::kActiveCheck:
      return "active_check";
    case health_flag::kOutlier:
      return "outlier";
    case health_flag::kControlPlaneUnhealthy:
      return "control_plane_unhealthy";
    case health_flag::kControlPlaneDraining:
      return "control_plane_draining";
  }
  return "unknown";
}

std::vector<std::string> HealthFlagNames(uint32_t flags) {
  std::vector<std::string> names;
  for (int i = 0; i < health_flag::kCount; ++i) {
    if (flags & (1u << i)) names.emplace_back(HealthFlagName(1u << i));
  }
  return names;
}

HealthState Host::health() const {
  const uint32_t flags = healthFlags();
  if (flags & health_flag::kControlPlaneDraining) return HealthState::kDraining;
  return flags == 0 ? HealthState::kHealthy : HealthState::kUnhealthy;
}

bool Host::SetHealthFlag(uint32_t flag, bool on) {
  const uint32_t before = healthFlags();
  const uint32_t after = on ? (before | flag) : (before & ~flag);
  if (after == before) return false;
  health_flags_.store(after, std::memory_order_relaxed);
  const bool changed = (before == 0) != (after == 0);
  if (changed && health_set_) {
    if (after != 0) {
      health_set_->unusable.fetch_add(1, std::memory_order_relaxed);
    } else {
      health_set_->unusable.fetch_sub(1, std::memory_order_relaxed);
    }
  }
  return changed;
}

void Host::setHealth(HealthState state) {
  SetHealthFlag(health_flag::kControlPlaneUnhealthy, state == HealthState::kUnhealthy);
  SetHealthFlag(health_flag::kControlPlaneDraining, state == HealthState::kDraining);
}

void Host::AttachHealth(std::shared_ptr<HostSetHealth> set) {
  if (set == health_set_) return;
  health_set_ = std::move(set);
  if (health_set_ && !usable()) health_set_->unusable.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace portway::upstream
