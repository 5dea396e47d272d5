// Circuit breaker, step by step in virtual time (no actors, no sleeping):
// the breaker reads an injected clock that the tests move by hand.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "src/core/circuit_breaker.hpp"

using namespace aico;
using namespace std::chrono_literals;
using std::chrono::milliseconds;
using bs = breaker_state;
using why = transition_reason;

namespace {

/// Virtual time: starts at an arbitrary point, moves only when told.
struct virtual_clock {
  std::chrono::steady_clock::time_point t =
    std::chrono::steady_clock::time_point{} + 1000h;

  void advance(std::chrono::steady_clock::duration d) { t += d; }

  clock_fn fn() {
    return [this] { return t; };
  }
};

/// The default config without jitter on the open wait, so waits are exact:
/// 5 s, 10 s, 20 s, 40 s, 60 s (cap).
breaker_config exact() {
  breaker_config cfg;
  cfg.open_wait.jitter = 0.0;
  return cfg;
}

struct fixture : ::testing::Test {
  virtual_clock clock;
  std::vector<breaker_transition> log;

  circuit_breaker make(breaker_config cfg = exact()) {
    return circuit_breaker{cfg, clock.fn(),
                           [this](const breaker_transition& t) {
                             log.push_back(t);
                           },
                           1};
  }

  /// One call through the breaker that must be admitted.
  static void call(circuit_breaker& b, bool failed) {
    auto a = b.try_acquire();
    ASSERT_TRUE(a.allowed);
    b.on_result(a.permit, failed);
  }

  /// Closed -> open with ten failures (the minimum number of calls).
  static void trip(circuit_breaker& b) {
    for (int i = 0; i < 10; ++i)
      call(b, true);
    ASSERT_EQ(b.state(), bs::open);
  }
};

using circuit_breaker_test = fixture;

} // namespace

TEST_F(circuit_breaker_test, stays_closed_below_minimum_calls) {
  auto b = make();
  // Nine failures in a row: a 100 % failure rate, but the window holds
  // fewer than minimum_calls (10) outcomes, so the rate is not evaluated.
  for (int i = 0; i < 9; ++i)
    call(b, true);
  EXPECT_EQ(b.state(), bs::closed);
  EXPECT_EQ(b.window_calls(), 9u);
  EXPECT_EQ(b.window_failures(), 9u);
  EXPECT_TRUE(log.empty());
  // Calls are still admitted.
  EXPECT_TRUE(b.try_acquire().allowed);
}

TEST_F(circuit_breaker_test, stays_closed_below_the_failure_rate) {
  auto b = make();
  // 6 successes + 4 failures = 10 calls at 40 %: below the 50 % threshold.
  for (int i = 0; i < 6; ++i)
    call(b, false);
  for (int i = 0; i < 4; ++i)
    call(b, true);
  EXPECT_EQ(b.window_calls(), 10u);
  EXPECT_EQ(b.state(), bs::closed);
}

TEST_F(circuit_breaker_test, opens_at_the_threshold) {
  auto b = make();
  // 5 successes and 4 failures: 9 calls, still below minimum_calls.
  for (int i = 0; i < 5; ++i)
    call(b, false);
  for (int i = 0; i < 4; ++i)
    call(b, true);
  EXPECT_EQ(b.state(), bs::closed);
  // The 10th call fails: 5 of 10 = 50 % >= 50 % with enough calls -> open.
  call(b, true);
  EXPECT_EQ(b.state(), bs::open);
  // The owner is told (so it can notify the supervisor), with the details.
  ASSERT_EQ(log.size(), 1u);
  EXPECT_EQ(log[0].from, bs::closed);
  EXPECT_EQ(log[0].to, bs::open);
  EXPECT_EQ(log[0].reason, why::failure_rate);
  EXPECT_EQ(log[0].calls, 10u);
  EXPECT_DOUBLE_EQ(log[0].failure_rate, 0.5);
  EXPECT_EQ(log[0].open_wait, 5s);
  EXPECT_EQ(log[0].open_count, 1u);
  EXPECT_EQ(log[0].at, clock.t);
}

TEST_F(circuit_breaker_test, successes_alone_never_open) {
  auto b = make();
  for (int i = 0; i < 100; ++i)
    call(b, false);
  EXPECT_EQ(b.state(), bs::closed);
}

TEST_F(circuit_breaker_test, fails_fast_while_open_with_retry_after) {
  auto b = make();
  trip(b);
  // Right after opening: rejected, come back in the full 5 s.
  auto a = b.try_acquire();
  EXPECT_FALSE(a.allowed);
  EXPECT_FALSE(a);
  EXPECT_EQ(a.state, bs::open);
  EXPECT_EQ(a.retry_after, 5000ms);
  // 2 s later: 3 s left.
  clock.advance(2s);
  a = b.try_acquire();
  EXPECT_FALSE(a.allowed);
  EXPECT_EQ(a.retry_after, 3000ms);
  // 1 ms before the end: still open, 1 ms left (rounded up, never 0).
  clock.advance(2999ms);
  a = b.try_acquire();
  EXPECT_FALSE(a.allowed);
  EXPECT_EQ(a.retry_after, 1ms);
  EXPECT_EQ(b.state(), bs::open);
}

TEST_F(circuit_breaker_test, half_open_after_the_wait) {
  auto b = make();
  trip(b);
  // The owner schedules a timer for next_deadline(): the end of the wait.
  ASSERT_TRUE(b.next_deadline());
  EXPECT_EQ(*b.next_deadline(), clock.t + 5s);
  clock.advance(5s);
  // Without any traffic, tick() (the timer) moves it to half_open.
  b.tick();
  EXPECT_EQ(b.state(), bs::half_open);
  ASSERT_EQ(log.size(), 2u);
  EXPECT_EQ(log[1].from, bs::open);
  EXPECT_EQ(log[1].to, bs::half_open);
  EXPECT_EQ(log[1].reason, why::open_wait_elapsed);
  // The next call is admitted as a probe.
  auto a = b.try_acquire();
  EXPECT_TRUE(a.allowed);
  EXPECT_TRUE(a.permit.probe);
  EXPECT_EQ(a.state, bs::half_open);
  EXPECT_EQ(b.probes_in_flight(), 1u);
}

TEST_F(circuit_breaker_test, the_wait_also_ends_lazily_on_the_next_call) {
  auto b = make();
  trip(b);
  clock.advance(5s);
  // No tick(): try_acquire itself applies the elapsed time.
  auto a = b.try_acquire();
  EXPECT_TRUE(a.allowed);
  EXPECT_TRUE(a.permit.probe);
  EXPECT_EQ(b.state(), bs::half_open);
}

TEST_F(circuit_breaker_test, bounds_concurrent_probes) {
  auto b = make();
  trip(b);
  clock.advance(5s);
  // Three probes (half_open_max_probes) are admitted ...
  auto p1 = b.try_acquire();
  clock.advance(1s);
  auto p2 = b.try_acquire();
  auto p3 = b.try_acquire();
  ASSERT_TRUE(p1 && p2 && p3);
  EXPECT_EQ(b.probes_in_flight(), 3u);
  // ... the fourth is rejected. The hint is the time until the earliest
  // probe deadline (p1 was admitted 1 s ago with a 5 s timeout).
  auto p4 = b.try_acquire();
  EXPECT_FALSE(p4.allowed);
  EXPECT_EQ(p4.state, bs::half_open);
  EXPECT_EQ(p4.retry_after, 4000ms);
  // One probe reports success: its slot is free again.
  EXPECT_TRUE(b.on_success(p1.permit));
  EXPECT_EQ(b.probes_in_flight(), 2u);
  EXPECT_EQ(b.state(), bs::half_open); // 1 of 3 successes
  auto p5 = b.try_acquire();
  EXPECT_TRUE(p5.allowed);
  EXPECT_FALSE(b.try_acquire().allowed);
}

TEST_F(circuit_breaker_test, a_lost_probe_times_out_frees_its_slot_and_counts) {
  auto b = make();
  trip(b);
  clock.advance(5s);
  // Probe A goes out and is never heard of again (lost reply).
  auto a = b.try_acquire();
  clock.advance(1s);
  auto p2 = b.try_acquire();
  auto p3 = b.try_acquire();
  ASSERT_TRUE(a && p2 && p3);
  EXPECT_FALSE(b.try_acquire().allowed); // all three slots taken
  // The timer for next_deadline() is A's deadline, 5 s after admission.
  ASSERT_TRUE(b.next_deadline());
  EXPECT_EQ(*b.next_deadline(), clock.t + 4s);
  clock.advance(4s);
  b.tick();
  // A counts as a failed probe (1 of the 2 that re-open) and its slot is
  // free: half_open can't get stuck on lost permits.
  EXPECT_EQ(b.state(), bs::half_open);
  EXPECT_EQ(b.probe_failures(), 1u);
  EXPECT_EQ(b.probes_in_flight(), 2u);
  auto p4 = b.try_acquire();
  EXPECT_TRUE(p4.allowed);
  // A's late answer is ignored: it was already counted.
  EXPECT_FALSE(b.on_success(a.permit));
  EXPECT_EQ(b.probe_successes(), 0u);
  // The three live probes succeed: closed.
  EXPECT_TRUE(b.on_success(p2.permit));
  EXPECT_TRUE(b.on_success(p3.permit));
  EXPECT_TRUE(b.on_success(p4.permit));
  EXPECT_EQ(b.state(), bs::closed);
}

TEST_F(circuit_breaker_test, probes_that_all_time_out_reopen_without_traffic) {
  auto b = make();
  trip(b);
  clock.advance(5s);
  for (int i = 0; i < 3; ++i)
    ASSERT_TRUE(b.try_acquire().allowed);
  // Nothing ever reports back. Only the owner's timer fires.
  clock.advance(5s);
  b.tick();
  // Two timed-out probes are enough to re-open; the wait doubled.
  EXPECT_EQ(b.state(), bs::open);
  EXPECT_EQ(b.probes_in_flight(), 0u);
  EXPECT_EQ(log.back().reason, why::probe_timed_out);
  EXPECT_EQ(log.back().open_wait, 10s);
  EXPECT_EQ(log.back().open_count, 2u);
  // And the cycle goes on: half_open again after the wait.
  clock.advance(10s);
  b.tick();
  EXPECT_EQ(b.state(), bs::half_open);
}

TEST_F(circuit_breaker_test, successful_probes_close) {
  auto b = make();
  trip(b);
  clock.advance(5s);
  auto p1 = b.try_acquire();
  auto p2 = b.try_acquire();
  auto p3 = b.try_acquire();
  EXPECT_TRUE(b.on_success(p1.permit));
  EXPECT_TRUE(b.on_success(p2.permit));
  EXPECT_EQ(b.state(), bs::half_open); // 2 of successes_to_close (3)
  EXPECT_TRUE(b.on_success(p3.permit));
  EXPECT_EQ(b.state(), bs::closed);
  EXPECT_EQ(log.back().reason, why::probes_succeeded);
  // Closed starts from a clean window and a reset wait.
  EXPECT_EQ(b.window_calls(), 0u);
  EXPECT_EQ(b.open_count(), 0u);
  EXPECT_FALSE(b.next_deadline());
  trip(b);
  EXPECT_EQ(log.back().open_wait, 5s); // back to the first wait
}

TEST_F(circuit_breaker_test, failed_probes_reopen_and_the_wait_grows) {
  auto b = make();
  trip(b);
  // Every half-open phase fails twice: the wait grows 5, 10, 20, 40, then
  // stays at the 60 s cap.
  std::vector<milliseconds> waits{log.back().open_wait};
  for (int round = 0; round < 5; ++round) {
    clock.advance(waits.back());
    auto p1 = b.try_acquire();
    auto p2 = b.try_acquire();
    ASSERT_TRUE(p1 && p2);
    EXPECT_TRUE(b.on_failure(p1.permit));
    EXPECT_EQ(b.state(), bs::half_open); // one flaky probe is tolerated
    EXPECT_TRUE(b.on_failure(p2.permit));
    ASSERT_EQ(b.state(), bs::open);
    EXPECT_EQ(log.back().reason, why::probes_failed);
    waits.push_back(log.back().open_wait);
  }
  EXPECT_EQ(waits, (std::vector<milliseconds>{5s, 10s, 20s, 40s, 60s, 60s}));
  EXPECT_EQ(b.open_count(), 6u);
  // The open-wait hint follows the grown wait.
  EXPECT_EQ(b.try_acquire().retry_after, 60s);
}

TEST_F(circuit_breaker_test, one_flaky_probe_does_not_reopen) {
  auto b = make();
  trip(b);
  clock.advance(5s);
  auto p1 = b.try_acquire();
  auto p2 = b.try_acquire();
  auto p3 = b.try_acquire();
  b.on_failure(p1.permit);
  b.on_success(p2.permit);
  b.on_success(p3.permit);
  EXPECT_EQ(b.state(), bs::half_open);
  call(b, false); // the third success
  EXPECT_EQ(b.state(), bs::closed);
}

TEST_F(circuit_breaker_test, a_single_failure_reopens_when_configured) {
  auto cfg = exact();
  cfg.failures_to_reopen = 1; // Polly's behaviour
  auto b = make(cfg);
  trip(b);
  clock.advance(5s);
  auto p = b.try_acquire();
  b.on_failure(p.permit);
  EXPECT_EQ(b.state(), bs::open);
}

TEST_F(circuit_breaker_test, the_window_slides_and_forgets_old_failures) {
  auto b = make();
  // t = 0: five failures.
  for (int i = 0; i < 5; ++i)
    call(b, true);
  // t = 9.5 s: they are still in the 10 s window ...
  clock.advance(9500ms);
  EXPECT_EQ(b.window_failures(), 5u);
  // t = 10 s: ... and gone once their 1 s bucket leaves the window.
  clock.advance(500ms);
  EXPECT_EQ(b.window_calls(), 0u);
  // Five new failures are only 5 calls: below minimum_calls, still closed.
  for (int i = 0; i < 5; ++i)
    call(b, true);
  EXPECT_EQ(b.state(), bs::closed);
  EXPECT_EQ(b.window_calls(), 5u);
}

TEST_F(circuit_breaker_test, failures_spread_within_the_window_add_up) {
  auto b = make();
  // The same five failures, but the next five come 9.5 s later: all ten are
  // in the window, 100 % failures -> open.
  for (int i = 0; i < 5; ++i)
    call(b, true);
  clock.advance(9500ms);
  for (int i = 0; i < 5; ++i)
    call(b, true);
  EXPECT_EQ(b.state(), bs::open);
}

TEST_F(circuit_breaker_test, outcomes_of_an_older_phase_are_ignored) {
  auto b = make();
  // A slow call is admitted while closed ...
  auto slow = b.try_acquire();
  ASSERT_TRUE(slow.allowed);
  // ... the breaker opens meanwhile ...
  trip(b);
  // ... and the slow call reports afterwards: not counted anywhere.
  EXPECT_FALSE(b.on_failure(slow.permit));
  EXPECT_FALSE(b.on_success(slow.permit));
  // A default (never admitted) permit is ignored as well.
  EXPECT_FALSE(b.on_success(breaker_permit{}));
  EXPECT_EQ(b.state(), bs::open);
}

TEST_F(circuit_breaker_test, release_frees_a_probe_slot_without_counting) {
  auto b = make();
  trip(b);
  clock.advance(5s);
  auto p1 = b.try_acquire();
  b.try_acquire();
  b.try_acquire();
  EXPECT_FALSE(b.try_acquire().allowed);
  // The caller cancelled p1: no outcome, but the slot is free.
  EXPECT_TRUE(b.release(p1.permit));
  EXPECT_EQ(b.probe_failures(), 0u);
  EXPECT_EQ(b.probe_successes(), 0u);
  EXPECT_TRUE(b.try_acquire().allowed);
  EXPECT_FALSE(b.release(p1.permit)); // only once
}

TEST_F(circuit_breaker_test, reset_forces_closed) {
  auto b = make();
  trip(b);
  b.reset();
  EXPECT_EQ(b.state(), bs::closed);
  EXPECT_EQ(log.back().reason, why::reset);
  EXPECT_TRUE(b.try_acquire().allowed);
}

TEST_F(circuit_breaker_test, the_open_wait_is_jittered_after_the_cap) {
  breaker_config cfg; // default jitter 0.2
  std::vector<milliseconds> first_waits;
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    circuit_breaker b{cfg, clock.fn(), {}, seed};
    for (int i = 0; i < 10; ++i) {
      auto a = b.try_acquire();
      b.on_failure(a.permit);
    }
    ASSERT_EQ(b.state(), bs::open);
    auto wait = b.try_acquire().retry_after;
    EXPECT_GE(wait, 4000ms);
    EXPECT_LE(wait, 6000ms);
    first_waits.push_back(wait);
  }
  // Twenty clients opened at the same instant do not all come back at once.
  std::sort(first_waits.begin(), first_waits.end());
  EXPECT_LT(first_waits.front(), first_waits.back());
}

TEST_F(circuit_breaker_test, a_bad_config_is_sanitized) {
  breaker_config cfg = exact();
  cfg.half_open_max_probes = 0;
  cfg.successes_to_close = 0;
  cfg.minimum_calls = 0;
  cfg.window_buckets = 0;
  auto b = make(cfg);
  EXPECT_EQ(b.config().half_open_max_probes, 1u);
  EXPECT_EQ(b.config().successes_to_close, 1u);
  call(b, true); // minimum_calls 1: one failure at 100 % opens
  EXPECT_EQ(b.state(), bs::open);
  clock.advance(5s);
  EXPECT_TRUE(b.try_acquire().allowed);
  EXPECT_FALSE(b.try_acquire().allowed); // one probe at a time
}

// -- registry -----------------------------------------------------------------

TEST(breaker_registry, one_breaker_per_key_and_isolated) {
  virtual_clock clock;
  std::vector<std::pair<std::string, breaker_transition>> log;
  breaker_registry reg{exact(), clock.fn(),
                       [&](const std::string& key, const breaker_transition& t) {
                         log.emplace_back(key, t);
                       },
                       7};
  const std::string send = "POST /conversations/messages";
  const std::string list = "GET /conversations";
  auto& a = reg.get(send);
  EXPECT_EQ(&a, &reg.get(send)); // same breaker for the same key
  auto& b = reg.get(list);
  EXPECT_EQ(reg.size(), 2u);
  // Sending messages fails ten times: only that endpoint's breaker opens.
  for (int i = 0; i < 10; ++i) {
    auto p = a.try_acquire();
    a.on_failure(p.permit);
  }
  EXPECT_EQ(a.state(), breaker_state::open);
  EXPECT_EQ(b.state(), breaker_state::closed);
  EXPECT_TRUE(b.try_acquire().allowed);
  EXPECT_FALSE(reg.get(send).try_acquire().allowed);
  // The owner learns which endpoint opened.
  ASSERT_EQ(log.size(), 1u);
  EXPECT_EQ(log[0].first, send);
  EXPECT_EQ(log[0].second.to, breaker_state::open);
  EXPECT_EQ(reg.not_closed(), std::vector<std::string>{send});
  // One timer for all breakers: the earliest deadline.
  ASSERT_TRUE(reg.next_deadline());
  EXPECT_EQ(*reg.next_deadline(), clock.t + 5s);
  clock.advance(5s);
  reg.tick();
  EXPECT_EQ(a.state(), breaker_state::half_open);
  EXPECT_EQ(log.back().first, send);
  EXPECT_EQ(reg.find("GET /nothing"), nullptr);
  EXPECT_EQ(reg.find(list), &b);
}

TEST(breaker_registry, per_key_configuration) {
  virtual_clock clock;
  breaker_registry reg{exact(), clock.fn()};
  auto cfg = exact();
  cfg.minimum_calls = 2;
  reg.configure("GET /health", cfg);
  auto& health = reg.get("GET /health");
  auto& other = reg.get("GET /users/me");
  for (int i = 0; i < 2; ++i) {
    health.on_failure(health.try_acquire().permit);
    other.on_failure(other.try_acquire().permit);
  }
  EXPECT_EQ(health.state(), breaker_state::open);
  EXPECT_EQ(other.state(), breaker_state::closed);
}
