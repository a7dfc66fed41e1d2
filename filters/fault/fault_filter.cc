#include "filters/fault/fault_filter.h"

#include <charconv>

#include "portway/filters/fault/v1/fault.pb.h"

namespace portway::filters::fault {
namespace {

// True for `percentage` percent of calls, drawn from the worker's random
// source (deterministic in tests).
bool Roll(RandomGenerator& random, double percentage) {
  if (percentage >= 100) return true;
  if (percentage <= 0) return false;
  return random.Chance(percentage);
}

bool ParseInt(std::string_view text, long long* out) {
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), *out);
  return ec == std::errc() && end == text.data() + text.size();
}

}  // namespace

http::FilterHeadersStatus FaultFilter::DecodeHeaders(http::HeaderMap& headers, bool) {
  const Settings& s = *settings_;
  std::chrono::milliseconds delay{0};
  int abort = 0;
  bool header_delay = false;
  bool header_abort = false;
  if (s.header_overrides) {
    long long value = 0;
    if (const std::string_view* v = headers.Get(kDelayHeader)) {
      if (ParseInt(*v, &value) && value >= 0 && value <= kMaxDelay.count()) {
        delay = std::chrono::milliseconds(value);
        header_delay = true;
      }
    }
    if (const std::string_view* v = headers.Get(kAbortHeader)) {
      if (ParseInt(*v, &value) && value >= 200 && value <= 599) {
        abort = static_cast<int>(value);
        header_abort = true;
      }
    }
    // The fault request headers are for Portway, never for the upstream.
    headers.Remove(kDelayHeader);
    headers.Remove(kAbortHeader);
  }
  if (!header_delay && s.delay.count() > 0 && Roll(callbacks_->Random(), s.delay_percentage))
    delay = s.delay;
  if (!header_abort && s.abort_status != 0 && Roll(callbacks_->Random(), s.abort_percentage))
    abort = s.abort_status;

  pending_abort_ = abort;
  if (delay.count() > 0) {
    timer_ = callbacks_->CreateTimer([this] {
      if (pending_abort_ != 0) {
        Abort();
      } else {
        callbacks_->Continue();
      }
    });
    timer_->Enable(delay);
    return http::FilterHeadersStatus::kStopIteration;
  }
  if (abort != 0) {
    Abort();
    return http::FilterHeadersStatus::kStopIteration;
  }
  return http::FilterHeadersStatus::kContinue;
}

void FaultFilter::Abort() {
  callbacks_->SendLocalReply(
      pending_abort_, settings_->abort_body.empty() ? "fault_abort\n" : settings_->abort_body,
      "fault_abort");
}

std::unique_ptr<google::protobuf::Message> FaultFactory::NewConfig() const {
  return std::make_unique<v1::Fault>();
}

absl::StatusOr<http::FilterFactoryCallback> FaultFactory::Create(
    const google::protobuf::Message& message) const {
  const auto& config = static_cast<const v1::Fault&>(message);
  auto settings = std::make_shared<Settings>();
  settings->header_overrides = config.header_overrides();
  if (config.has_abort()) {
    const auto& a = config.abort();
    if (a.status() < 200 || a.status() > 599) {
      return absl::InvalidArgumentError("abort.status: must be between 200 and 599");
    }
    settings->abort_status = static_cast<int>(a.status());
    if (a.has_percentage()) {
      double p = a.percentage().value();
      if (!(p >= 0 && p <= 100)) {
        return absl::InvalidArgumentError("abort.percentage: must be between 0 and 100");
      }
      settings->abort_percentage = p;
    }
    settings->abort_body = a.body();
  }
  if (config.has_delay()) {
    const auto& d = config.delay();
    if (!d.has_fixed_delay()) return absl::InvalidArgumentError("delay.fixed_delay: is required");
    std::chrono::milliseconds delay(d.fixed_delay().seconds() * 1000 +
                                    d.fixed_delay().nanos() / 1000000);
    if (delay.count() <= 0 || delay > kMaxDelay) {
      return absl::InvalidArgumentError("delay.fixed_delay: must be between 1ms and 1h");
    }
    settings->delay = delay;
    if (d.has_percentage()) {
      double p = d.percentage().value();
      if (!(p >= 0 && p <= 100)) {
        return absl::InvalidArgumentError("delay.percentage: must be between 0 and 100");
      }
      settings->delay_percentage = p;
    }
  }
  if (settings->abort_status == 0 && settings->delay.count() == 0 && !settings->header_overrides) {
    return absl::InvalidArgumentError(
        "abort: the filter does nothing: configure abort, delay or header_overrides");
  }
  return http::FilterFactoryCallback(
      [settings]() -> http::FilterPtr { return std::make_unique<FaultFilter>(settings.get()); });
}

}  // namespace portway::filters::fault
