// aico engine: timer slack -- coalescing many sessions' timers onto shared
// instants (pure logic, no CAF).
//
// An idle session's timers (heartbeat ping, dead-peer check, health check,
// the deadline sweep of a call that was answered long ago) do not need to
// fire at an exact nanosecond. Each one fired on its own wakes the clock
// thread and a scheduler worker: with 10,000 idle sessions in a process
// that was most of their CPU time (docs/performance.md, "Idle sessions").
// Like Linux's timer slack, a timer armed `delay` ahead may fire up to
// delay/16 late (at most 1.024 s): its deadline is rounded up to the next
// multiple of the largest power-of-two number of milliseconds within that
// slack, counted from the clock's epoch, so every timer of the process with
// a similar delay lands on the same instants and one wake-up serves them
// all. Delays under 16 ms are not rounded. A timer never fires early.
// Where lateness is seen by a caller (a call's deadline) the owner passes a
// smaller slack (divisor 64: at most 1/64 of the delay).
#pragma once

#include <chrono>

namespace aico {

/// The grain a timer armed `delay` ahead is rounded to (0 = not rounded):
/// the largest power of two milliseconds not above delay/divisor (16 by
/// default), at most 1024 ms.
template <class Duration>
Duration timer_grain(Duration delay, int divisor = 16) {
  using std::chrono::milliseconds;
  auto slack = delay / divisor;
  if (slack < Duration{milliseconds(1)})
    return Duration{0};
  Duration grain{milliseconds(1)};
  while (grain * 2 <= slack && grain < Duration{milliseconds(1024)})
    grain *= 2;
  return grain;
}

/// `due` (armed `delay` ahead) rounded up onto the process-wide grid of
/// timer_grain(delay, divisor).
template <class TimePoint>
TimePoint coalesce_deadline(TimePoint due, typename TimePoint::duration delay,
                            int divisor = 16) {
  auto g = timer_grain(delay, divisor);
  if (g.count() <= 0)
    return due;
  auto r = due.time_since_epoch() % g;
  if (r.count() < 0)
    r += g;
  return r.count() == 0 ? due : due + (g - r);
}

} // namespace aico
