#include "core/discovery/health_reporter.h"

#include <algorithm>

#include "spdlog/spdlog.h"

namespace portway::discovery {

HealthReporter::HealthReporter(event::Dispatcher& dispatcher, HostWalk walk, Sink sink,
                               Options options)
    : dispatcher_(dispatcher),
      walk_(std::move(walk)),
      sink_(std::move(sink)),
      options_(options),
      timer_(dispatcher_.CreateTimer([this] { Send(); })) {
  // Hosts may be unusable before the reporter exists (a config the gateway
  // started with): the first report is due at once.
  Schedule();
}

void HealthReporter::HostChanged() { Schedule(); }

void HealthReporter::ConfigChanged() {
  if (last_named_hosts_) Schedule();
}

void HealthReporter::Schedule() {
  if (timer_->Enabled()) return;  // coalesced into the report already due
  std::chrono::milliseconds wait{0};
  if (last_sent_) {
    auto next = *last_sent_ + options_.min_interval;
    if (next > dispatcher_.Now()) {
      wait = std::chrono::ceil<std::chrono::milliseconds>(next - dispatcher_.Now());
    }
  }
  timer_->Enable(wait);
}

v1::HealthReport HealthReporter::Build() const {
  v1::HealthReport report;
  uint32_t omitted = 0;
  size_t bytes = 0;
  walk_([&](const upstream::Host& host) {
    const uint32_t flags = host.healthFlags();
    if (flags == 0) return;
    if (static_cast<size_t>(report.unhealthy_size()) >= options_.max_hosts ||
        bytes >= options_.max_bytes) {
      ++omitted;
      return;
    }
    v1::HostHealth* h = report.add_unhealthy();
    h->set_cluster(host.cluster());
    h->set_address(host.addressString());
    for (std::string& name : upstream::HealthFlagNames(flags)) h->add_flags(std::move(name));
    const upstream::Host::HealthDetail& detail = host.healthDetail();
    h->set_reason(detail.last_reason.substr(0, kMaxReasonBytes));
    // Out of balancing since its oldest flag still set.
    int64_t since = 0;
    for (int i = 0; i < upstream::health_flag::kCount; ++i) {
      if ((flags & (1u << i)) == 0 || detail.since_unix_ms[i] == 0) continue;
      since = since == 0 ? detail.since_unix_ms[i] : std::min(since, detail.since_unix_ms[i]);
    }
    h->set_since_unix_ms(since);
    bytes += h->ByteSizeLong() + 4;  // and the field's tag and length
  });
  report.set_omitted(omitted);
  return report;
}

void HealthReporter::Send() {
  v1::HealthReport report = Build();
  std::string bytes = report.SerializeAsString();
  if (bytes == last_report_) return;  // nothing changed since the last one
  // Said once when a report starts leaving hosts out, not once a second.
  if (report.omitted() > 0 && last_omitted_ == 0) {
    spdlog::warn(
        "control plane health report: {} unusable host(s) over the cap of {} left out (the "
        "report counts them in `omitted`)",
        report.omitted(), options_.max_hosts);
  }
  last_omitted_ = report.omitted();
  last_report_ = std::move(bytes);
  last_named_hosts_ = report.unhealthy_size() > 0;
  last_sent_ = dispatcher_.Now();
  ++reports_;
  sink_(std::move(report));
}

}  // namespace portway::discovery
