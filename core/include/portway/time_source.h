// Time and randomness as a filter sees them: the clock of its worker and a
// random source seeded per worker, both reached through FilterCallbacks
// (Clock(), Random()). Filters never read std::chrono clocks or make their
// own random engines: the core hands them these, so tests can drive time by
// hand and make every "random" choice deterministic.
//
// Thread safety: the TimeSource and RandomGenerator a filter gets belong to
// its worker thread; use them only from the filter's own callbacks.
// RealTimeSource() may be read from any thread.
//
//   std::chrono::milliseconds delay = callbacks.Random().Jitter(ceiling);
//   auto deadline = callbacks.Clock().Now() + delay;
#pragma once

#include <chrono>
#include <cstdint>

namespace portway {

using MonotonicTime = std::chrono::steady_clock::time_point;
using SystemTime = std::chrono::system_clock::time_point;

class TimeSource {
 public:
  virtual ~TimeSource() = default;
  // Monotonic time, for durations and deadlines. A worker reads its clock
  // once per event it wakes for: readings within one callback are equal.
  virtual MonotonicTime Now() const = 0;
  // Wall-clock time, for dates shown to people (logs, headers).
  virtual SystemTime SystemNow() const = 0;
};

// The process's real clocks, for code that has no stream at hand (an admin
// status view rendered on the main thread). On a stream, use
// FilterCallbacks::Clock(): in tests that one is simulated.
const TimeSource& RealTimeSource();

// A source of uniformly distributed 64-bit values, and the few shapes of
// randomness a gateway needs built on it.
class RandomGenerator {
 public:
  virtual ~RandomGenerator() = default;
  // A uniform value over all 64 bits.
  virtual uint64_t Next() = 0;

  // Uniform in [0, max], both ends included (Lemire's multiply-shift: no
  // modulo bias worth measuring for the bounds a gateway uses).
  uint64_t UpTo(uint64_t max) {
    if (max == UINT64_MAX) return Next();
    return static_cast<uint64_t>((static_cast<unsigned __int128>(Next()) * (max + 1)) >> 64);
  }
  // Uniform in [lo, hi]; lo when hi < lo.
  uint64_t Between(uint64_t lo, uint64_t hi) { return hi <= lo ? lo : lo + UpTo(hi - lo); }
  // "Full jitter": a delay uniform in [0, ceiling].
  std::chrono::milliseconds Jitter(std::chrono::milliseconds ceiling) {
    if (ceiling.count() <= 0) return std::chrono::milliseconds(0);
    return std::chrono::milliseconds(UpTo(static_cast<uint64_t>(ceiling.count())));
  }
  // Uniform in [0, 1).
  double Unit() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }
  // True with probability percent / 100 (0 never, 100 always).
  bool Chance(double percent) { return Unit() * 100.0 < percent; }
};

}  // namespace portway
