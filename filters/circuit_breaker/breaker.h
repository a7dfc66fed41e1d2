// The breaker state machine of portway.circuit_breaker, on its own so it
// can be tested with simulated time (every call takes `now`).
//
//   closed --(N failures in a row, or failure rate over the window)--> open
//   open --(open duration elapsed, checked on the next Admit)--> half-open
//   half-open --(every probe succeeded)--> closed
//   half-open --(a probe failed)--> open, for twice as long (capped)
//
// Thread safety: none; the filter guards each Breaker with its cluster's
// mutex.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <string>

namespace portway::filters::circuit_breaker {

using Time = std::chrono::steady_clock::time_point;
using std::chrono::milliseconds;

struct BreakerPolicy {
  uint32_t consecutive_failures = 5;    // 0: off
  uint32_t failure_rate_threshold = 0;  // percent; 0: off
  milliseconds window{10000};
  uint32_t min_requests = 20;
  milliseconds open_duration{5000};
  milliseconds max_open_duration{60000};
  uint32_t half_open_requests = 1;
};

enum class BreakerState : uint8_t { kClosed = 0, kOpen = 1, kHalfOpen = 2 };
const char* BreakerStateName(BreakerState state);

// A change of state, for the log line and the stats.
struct Transition {
  bool changed = false;
  BreakerState from = BreakerState::kClosed;
  BreakerState to = BreakerState::kClosed;
  std::string reason;
};

class Breaker {
 public:
  enum class Admission {
    kYes,    // closed
    kProbe,  // half-open: one of the probes; end it with Record(probe) or ReleaseProbe()
    kNo,     // open, or half-open with every probe taken
  };

  // With kProbe, `*probe_period` names the half-open period the probe
  // belongs to; pass it back to Record() / ReleaseProbe().
  Admission Admit(const BreakerPolicy& policy, Time now, Transition* transition,
                  uint64_t* probe_period = nullptr);
  // The outcome of a request (or attempt) admitted earlier. Outcomes of
  // requests admitted before the breaker opened are ignored while it is
  // not closed; a probe's outcome decides the half-open state, but only
  // in its own half-open period (a late probe from an earlier one is
  // ignored).
  void Record(const BreakerPolicy& policy, Time now, bool failure, bool probe,
              Transition* transition, uint64_t probe_period = 0);
  // A probe that ended without an outcome (the client left): its slot
  // goes to another request, if its period is still on.
  void ReleaseProbe(uint64_t probe_period = 0);

  BreakerState state() const { return state_; }
  const std::string& reason() const { return reason_; }  // why it last opened
  uint64_t opened_total() const { return opened_total_; }
  uint32_t consecutive_failures() const { return consecutive_; }
  Time open_until() const { return open_until_; }
  milliseconds open_duration() const { return open_duration_; }
  // Requests and failures in the window ending at `now`.
  void WindowCounts(const BreakerPolicy& policy, Time now, uint64_t* requests,
                    uint64_t* failures) const;

 private:
  static constexpr size_t kBuckets = 10;
  struct Bucket {
    int64_t index = -1;  // which slice of time it counts
    uint32_t requests = 0;
    uint32_t failures = 0;
  };
  static int64_t BucketIndex(const BreakerPolicy& policy, Time now);
  void Open(const BreakerPolicy& policy, Time now, std::string reason, Transition* transition);
  void Set(BreakerState to, std::string reason, Transition* transition);
  void ResetCounts();

  BreakerState state_ = BreakerState::kClosed;
  std::string reason_;
  uint32_t consecutive_ = 0;
  std::array<Bucket, kBuckets> buckets_{};
  Time open_until_{};
  milliseconds open_duration_{0};  // of the current or last open period
  bool reopened_ = false;          // tripped again from half-open since the last close
  uint64_t period_ = 0;            // counts half-open periods
  uint32_t probes_started_ = 0;
  uint32_t probes_succeeded_ = 0;
  uint64_t opened_total_ = 0;
};

}  // namespace portway::filters::circuit_breaker
