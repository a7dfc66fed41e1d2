#include "core/upstream/health.h"

#include "core/server/stats.h"
#include "spdlog/spdlog.h"

namespace portway::upstream {

void HostHealthManager::Set(const HostSharedPtr& host, uint32_t flag, bool on,
                            std::string_view reason, stats::ClusterStats* stats) {
  const uint32_t before = host->healthFlags();
  if (((before & flag) != 0) == on) return;
  const bool usable_changed = host->SetHealthFlag(flag, on);
  const uint32_t after = host->healthFlags();
  const int64_t now_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(clock_.SystemNow().time_since_epoch())
          .count();
  Host::HealthDetail& detail = host->healthDetail();
  for (int i = 0; i < health_flag::kCount; ++i) {
    if ((1u << i) == flag) detail.since_unix_ms[i] = on ? now_ms : 0;
  }
  detail.last_reason.assign(reason);
  detail.last_change_unix_ms = now_ms;
  if (stats != nullptr) {
    if (flag == health_flag::kOutlier) {
      if (on) {
        stats->outlier_ejections.Inc();
        stats->hosts_ejected.Add();
      } else {
        stats->hosts_ejected.Sub();
      }
    }
    if (usable_changed) {
      if (after == 0) {
        stats->healthy_hosts.Add();
        stats->hosts_became_usable.Inc();
      } else {
        stats->healthy_hosts.Sub();
        stats->hosts_became_unusable.Inc();
      }
    }
  }
  const char* verb = on ? "set" : "cleared";
  if (usable_changed) {
    if (after == 0) {
      spdlog::info("host {} of cluster '{}' is healthy again: {} {} ({})", host->addressString(),
                   host->cluster(), HealthFlagName(flag), verb, reason);
    } else {
      spdlog::warn("host {} of cluster '{}' is out of balancing: {} ({})", host->addressString(),
                   host->cluster(), HealthFlagName(flag), reason);
    }
  } else {
    spdlog::info("host {} of cluster '{}': {} {} ({}); still {}", host->addressString(),
                 host->cluster(), HealthFlagName(flag), verb, reason,
                 after == 0 ? "healthy" : "out of balancing");
  }
  for (const Listener& listener : listeners_) listener(host, before);
}

void HostHealthManager::Adopt(const ClusterSnapshot& cluster) {
  stats::ClusterStats* stats = cluster.config->stats;
  for (size_t i = 0; i < cluster.hosts.size(); ++i) {
    const HostSharedPtr& host = cluster.hosts[i];
    host->AttachHealth(cluster.health);
    const uint32_t wanted =
        i < cluster.control_plane_flags.size() ? cluster.control_plane_flags[i] : 0;
    for (uint32_t flag :
         {health_flag::kControlPlaneUnhealthy, health_flag::kControlPlaneDraining}) {
      const bool on = (wanted & flag) != 0;
      if (((host->healthFlags() & flag) != 0) != on) {
        Set(host, flag, on,
            on ? "endpoint health_status says so" : "endpoint health_status cleared", stats);
      }
    }
  }
  if (stats != nullptr) {
    int64_t healthy = 0;
    int64_t ejected = 0;
    for (const auto& h : cluster.hosts) {
      healthy += h->usable() ? 1 : 0;
      ejected += (h->healthFlags() & health_flag::kOutlier) ? 1 : 0;
    }
    stats->hosts.Set(static_cast<int64_t>(cluster.hosts.size()));
    stats->healthy_hosts.Set(healthy);
    stats->hosts_ejected.Set(ejected);
  }
}

}  // namespace portway::upstream
