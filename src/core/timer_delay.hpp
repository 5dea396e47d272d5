// aico engine: bounds for actor timer delays (pure logic).
#pragma once

#include <chrono>

#include "caf/all.hpp"

namespace aico {

/// Clamps a timer delay to [1 ms, 24 h]: a zero or negative "time left"
/// still fires, and a huge one cannot overflow the clock.
inline caf::timespan clamp_delay(caf::timespan d) {
  using namespace std::chrono_literals;
  if (d < caf::timespan{1ms})
    return 1ms;
  if (d > caf::timespan{24h})
    return 24h;
  return d;
}

} // namespace aico
