// Metrics for filters: named counters and gauges that show up on the admin /stats page
// (Prometheus text) next to the core's own.
//
// Thread safety: GetCounter() may be called at any time (typically once,
// in a factory's Create()); the returned counter lives for the whole
// process, and Inc() is a relaxed atomic, safe from every worker at once.
//
//   portway::Counter& retries = portway::GetCounter(
//       "portway_retry_attempts_total", {{"filter", "portway.retry"}});
//   retries.Inc();
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace portway {

class Counter {
 public:
  virtual void Inc(uint64_t n = 1) = 0;
  virtual uint64_t Value() const = 0;

 protected:
  ~Counter() = default;
};

// A value that goes up and down (a state, a count in flight).
class Gauge {
 public:
  virtual void Set(int64_t value) = 0;
  virtual void Add(int64_t n = 1) = 0;
  virtual void Sub(int64_t n = 1) = 0;
  virtual int64_t Value() const = 0;

 protected:
  ~Gauge() = default;
};

// The counter or gauge of that name and labels (created on first use).
// Names follow Prometheus rules; use your own prefix for custom filters.
Counter& GetCounter(const std::string& name,
                    const std::vector<std::pair<std::string, std::string>>& labels);
Gauge& GetGauge(const std::string& name,
                const std::vector<std::pair<std::string, std::string>>& labels);

}  // namespace portway
