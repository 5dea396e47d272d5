// aico engine: the process-wide timer thread for the engine's periodic
// timers (heartbeats, call-deadline sweeps, health checks).
//
// Why not CAF's delayed_send: CAF 0.17's clock thread is woken whenever a
// timer is scheduled, whatever its due time; the idle sessions of a process
// re-arm a few timers every 30 s each, so with 10,000 sessions the clock
// thread woke hundreds of times a second for nothing
// (docs/performance.md, "Idle sessions"). This thread is woken only by a
// timer due before the instant it already plans to wake at
// (src/core/timer_queue.hpp); with timer slack (src/core/timer_slack.hpp)
// the timers of all sessions share instants, and it wakes once per instant.
//
// The thread holds the receiver weakly (a timer does not keep an actor
// alive) and enqueues the message anonymously when it is due; a receiver
// gone by then is skipped. It starts with the first timer and stops at
// process exit.
//
// Under CAF's deterministic test coordinator (virtual time) schedule_at
// uses the actor clock instead, so that tests move time themselves.
#pragma once

#include <utility>

#include "caf/all.hpp"

namespace aico {

/// True when `sys` runs on CAF's test coordinator (a virtual clock).
bool on_virtual_clock(caf::actor_system& sys);

/// Enqueues `msg` to `to` (if it still exists) at `t`, on the timer thread.
void schedule_on_timer_thread(caf::actor_clock::time_point t,
                              const caf::actor_addr& to, caf::message msg);

/// Sends `xs...` to `self` at `t` (never before): on the process-wide
/// timer thread, or on the actor clock under the test coordinator.
template <class Self, class... Ts>
void schedule_at(Self* self, caf::actor_clock::time_point t, Ts&&... xs) {
  if (on_virtual_clock(self->home_system())) {
    self->scheduled_send(self, t, std::forward<Ts>(xs)...);
    return;
  }
  schedule_on_timer_thread(t, self->address(),
                           caf::make_message(std::forward<Ts>(xs)...));
}

} // namespace aico
