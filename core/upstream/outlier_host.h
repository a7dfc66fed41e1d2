// What outlier detection keeps per host (core/upstream/outlier_detector.h
// is the detector; this header is small so that host.h can embed it).
//
// Thread safety: the counters are relaxed atomics that every worker updates
// after each attempt to the host, without a lock; the main thread reads
// them for /clusters and resets them (a crossing handled, an interval
// evaluated, a config change). The ejection fields are the main thread's
// alone.
#pragma once

#include <atomic>
#include <cstdint>

#include "portway/time_source.h"

namespace portway::upstream {

// The rules that eject a host. The consecutive ones are noticed by the
// worker whose attempt crossed the threshold; the other two by the
// cluster's interval timer.
enum class OutlierRule : uint8_t {
  kConsecutive5xx,
  kConsecutiveGatewayFailure,
  kConsecutiveLocalOriginFailure,
  kFailurePercentage,
  kSuccessRate,
};
// "consecutive_5xx", "consecutive_gateway_failure", ... (the config's names).
const char* OutlierRuleName(OutlierRule rule);

struct OutlierHostState {
  // Workers: attempts in a row answered 5xx or failed locally; answered
  // 502/503/504 or failed locally; failed locally. Any other answer (a
  // 2xx, 3xx or 4xx) resets all three; a 5xx resets the local-origin one
  // (the host answered), a 500 the gateway one.
  std::atomic<uint32_t> consecutive_5xx{0};
  std::atomic<uint32_t> consecutive_gateway_failure{0};
  std::atomic<uint32_t> consecutive_local_origin_failure{0};
  // Workers: this interval's attempts that succeeded (no 5xx, no local
  // failure) and that failed; taken and zeroed by the interval timer.
  std::atomic<uint32_t> interval_successes{0};
  std::atomic<uint32_t> interval_failures{0};

  // Main thread: how many times the host was ejected (decays by one per
  // interval while it is back and usable), and while it carries
  // health_flag::kOutlier, until when.
  uint32_t times_ejected = 0;
  MonotonicTime ejected_until{};
  int64_t ejected_until_unix_ms = 0;
};

}  // namespace portway::upstream
