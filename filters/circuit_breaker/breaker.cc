#include "filters/circuit_breaker/breaker.h"

#include <algorithm>

namespace portway::filters::circuit_breaker {

const char* BreakerStateName(BreakerState state) {
  switch (state) {
    case BreakerState::kClosed:
      return "closed";
    case BreakerState::kOpen:
      return "open";
    case BreakerState::kHalfOpen:
      return "half_open";
  }
  return "unknown";
}

int64_t Breaker::BucketIndex(const BreakerPolicy& policy, Time now) {
  int64_t width = std::max<int64_t>(1, policy.window.count() / static_cast<int64_t>(kBuckets));
  auto ms = std::chrono::duration_cast<milliseconds>(now.time_since_epoch()).count();
  return ms / width;
}

void Breaker::WindowCounts(const BreakerPolicy& policy, Time now, uint64_t* requests,
                           uint64_t* failures) const {
  int64_t current = BucketIndex(policy, now);
  *requests = 0;
  *failures = 0;
  for (const Bucket& b : buckets_) {
    if (b.index >= 0 && b.index > current - static_cast<int64_t>(kBuckets) && b.index <= current) {
      *requests += b.requests;
      *failures += b.failures;
    }
  }
}

void Breaker::ResetCounts() {
  consecutive_ = 0;
  buckets_.fill(Bucket{});
}

void Breaker::Set(BreakerState to, std::string reason, Transition* transition) {
  transition->changed = true;
  transition->from = state_;
  transition->to = to;
  transition->reason = std::move(reason);
  state_ = to;
}

void Breaker::Open(const BreakerPolicy& policy, Time now, std::string reason,
                   Transition* transition) {
  // A trip from half-open means the upstream is still failing: wait
  // longer each time, up to the cap.
  open_duration_ =
      reopened_ ? std::min(open_duration_ * 2, policy.max_open_duration) : policy.open_duration;
  reopened_ = true;
  open_until_ = now + open_duration_;
  ++opened_total_;
  reason_ = reason;
  probes_started_ = 0;
  probes_succeeded_ = 0;
  ResetCounts();
  Set(BreakerState::kOpen, std::move(reason), transition);
}

Breaker::Admission Breaker::Admit(const BreakerPolicy& policy, Time now, Transition* transition,
                                  uint64_t* probe_period) {
  if (state_ == BreakerState::kClosed) return Admission::kYes;
  if (state_ == BreakerState::kOpen) {
    if (now < open_until_) return Admission::kNo;
    ++period_;
    probes_started_ = 0;
    probes_succeeded_ = 0;
    Set(BreakerState::kHalfOpen,
        "open for " + std::to_string(open_duration_.count()) + "ms; probing", transition);
  }
  if (probes_started_ >= policy.half_open_requests) return Admission::kNo;
  ++probes_started_;
  if (probe_period != nullptr) *probe_period = period_;
  return Admission::kProbe;
}

void Breaker::ReleaseProbe(uint64_t probe_period) {
  if (state_ == BreakerState::kHalfOpen && probe_period == period_ && probes_started_ > 0) {
    --probes_started_;
  }
}

void Breaker::Record(const BreakerPolicy& policy, Time now, bool failure, bool probe,
                     Transition* transition, uint64_t probe_period) {
  if (state_ == BreakerState::kHalfOpen) {
    if (!probe || probe_period != period_) return;
    if (failure) {
      Open(policy, now, "a half-open probe failed", transition);
      return;
    }
    if (++probes_succeeded_ >= policy.half_open_requests) {
      reopened_ = false;
      ResetCounts();
      Set(BreakerState::kClosed,
          std::to_string(probes_succeeded_) + " half-open probe(s) succeeded", transition);
    }
    return;
  }
  if (state_ != BreakerState::kClosed) return;

  consecutive_ = failure ? consecutive_ + 1 : 0;
  if (policy.consecutive_failures > 0 && consecutive_ >= policy.consecutive_failures) {
    Open(policy, now, std::to_string(consecutive_) + " consecutive failures", transition);
    return;
  }
  if (policy.failure_rate_threshold == 0) return;
  int64_t index = BucketIndex(policy, now);
  Bucket& b = buckets_[static_cast<size_t>(index) % kBuckets];
  if (b.index != index) b = Bucket{index, 0, 0};
  ++b.requests;
  if (failure) ++b.failures;
  if (!failure) return;
  uint64_t requests = 0;
  uint64_t failures = 0;
  WindowCounts(policy, now, &requests, &failures);
  if (requests >= policy.min_requests && requests > 0 &&
      failures * 100 >= static_cast<uint64_t>(policy.failure_rate_threshold) * requests) {
    Open(policy, now,
         "failure rate " + std::to_string(failures * 100 / requests) + "% (" +
             std::to_string(failures) + " of " + std::to_string(requests) + ") over " +
             std::to_string(policy.window.count()) + "ms",
         transition);
  }
}

}  // namespace portway::filters::circuit_breaker
