// aico engine: exponential backoff with jitter (pure logic, no actors).
//
// delay(n) = min(initial * multiplier^n, max), then jittered uniformly in
// [delay * (1 - jitter), delay * (1 + jitter)]: the jitter is applied AFTER
// the cap, so many clients capped at `max` still spread out (gRPC's
// connection-backoff.md; defaults multiplier 1.6, jitter 0.2).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <random>

#include "src/core/small_rng.hpp"

namespace aico {

struct backoff_options {
  std::chrono::milliseconds initial{500};
  double multiplier = 1.6;
  double jitter = 0.2; ///< 0..1
  std::chrono::milliseconds max{30000};
};

class backoff {
public:
  /// `seed` makes the jitter reproducible (tests); 0 = random seed.
  explicit backoff(backoff_options opts = {}, uint64_t seed = 0);

  /// The delay before the next attempt; advances the attempt counter.
  std::chrono::milliseconds next();

  /// The un-jittered delay for attempt `n` (0-based), capped at max.
  std::chrono::milliseconds base_delay(uint32_t n) const;

  /// Back to the first attempt (after a success).
  void reset() { attempt_ = 0; }

  uint32_t attempts() const { return attempt_; }
  const backoff_options& options() const { return opts_; }

private:
  backoff_options opts_;
  uint32_t attempt_ = 0;
  small_rng rng_;
};

} // namespace aico
