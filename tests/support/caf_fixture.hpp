// Tests: an actor system on CAF's deterministic test coordinator (virtual
// time, no worker threads): messages run only when the test says so
// (run()), and timers fire only when it moves the clock (advance()). The
// one fixture for every actor test that must not sleep; derive from it.
#pragma once

#include <gtest/gtest.h>

#include "caf/all.hpp"

namespace aico::test {

struct caf_fixture : ::testing::Test {
  static caf::actor_system_config& init(caf::actor_system_config& cfg) {
    cfg.set("scheduler.policy", caf::atom("testing"));
    return cfg;
  }

  caf::actor_system_config cfg;
  caf::actor_system sys{init(cfg)};
  caf::scheduler::test_coordinator& sched{
    dynamic_cast<caf::scheduler::test_coordinator&>(sys.scheduler())};

  /// Runs every message that is ready (and what they send, and so on).
  void run() { sched.run(); }

  /// Moves the virtual clock by `d` (firing the timers due) and runs.
  void advance(caf::timespan d) {
    sched.advance_time(d);
    sched.run();
  }
};

} // namespace aico::test
