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

/// Longest delay saturating_delay gives (also clamp_delay's cap).
constexpr caf::timespan max_timer_delay = std::chrono::hours(24);

/// A delay given in seconds as a double (possibly huge, infinite or NaN:
/// e.g. computed from a token's `exp` far in the future) as a timer delay
/// in [0, max_timer_delay], without an out-of-range conversion (which is
/// undefined behaviour and, in practice, a negative delay). NaN and
/// negative values give 0. `capped` (if given) says whether the delay was
/// shortened to max_timer_delay: the timer then fires early and its owner
/// must look again instead of acting.
inline caf::timespan saturating_delay(double seconds,
                                      bool* capped = nullptr) {
  using secs = std::chrono::duration<double>;
  auto max_s = std::chrono::duration_cast<secs>(max_timer_delay).count();
  if (capped)
    *capped = false;
  if (!(seconds > 0)) // also NaN
    return caf::timespan{0};
  if (seconds >= max_s) {
    if (capped)
      *capped = seconds > max_s;
    return max_timer_delay;
  }
  return std::chrono::duration_cast<caf::timespan>(secs{seconds});
}

} // namespace aico
