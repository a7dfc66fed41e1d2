// The real random source behind Dispatcher::Random() and the discovery
// client's back-off: xoshiro256** seeded from std::random_device, one per
// owner (a worker's dispatcher), so workers and processes never jitter in
// lockstep.
//
// Thread safety: none; one owner thread.
#pragma once

#include <cstdint>

#include "portway/time_source.h"

namespace portway::event {

class SeededRandom final : public RandomGenerator {
 public:
  // Seeded from std::random_device.
  SeededRandom();
  // A fixed seed: the same sequence every time.
  explicit SeededRandom(uint64_t seed);
  uint64_t Next() override;

 private:
  uint64_t s_[4];
};

}  // namespace portway::event
