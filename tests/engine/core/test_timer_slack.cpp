// Timer slack (src/core/timer_slack.hpp): grains, rounding, never early.
#include <gtest/gtest.h>

#include <chrono>

#include "src/core/timer_slack.hpp"

using namespace aico;
using namespace std::chrono_literals;

namespace {

using tp = std::chrono::steady_clock::time_point;
using dur = std::chrono::steady_clock::duration;

TEST(timer_slack, grain_is_the_largest_power_of_two_ms_within_a_sixteenth) {
  EXPECT_EQ(timer_grain(dur{15ms}), dur{0}); // under 16 ms: exact
  EXPECT_EQ(timer_grain(dur{16ms}), dur{1ms});
  EXPECT_EQ(timer_grain(dur{100ms}), dur{4ms}); // slack 6.25 ms
  EXPECT_EQ(timer_grain(dur{5s}), dur{256ms});   // slack 312 ms
  EXPECT_EQ(timer_grain(dur{30s}), dur{1024ms}); // slack 1.875 s, capped
  EXPECT_EQ(timer_grain(dur{24h}), dur{1024ms});
  EXPECT_EQ(timer_grain(dur{0}), dur{0});
  EXPECT_EQ(timer_grain(dur{-5s}), dur{0});
}

TEST(timer_slack, deadlines_round_up_onto_a_shared_grid_and_never_early) {
  // two sessions arming a 30 s heartbeat 700 ms apart fire together
  tp a{1000s + 200ms}; // (both within one grain: 1030.144 .. 1031.168 s)
  tp b{1000s + 900ms};
  auto ca = coalesce_deadline(a + 30s, dur{30s});
  auto cb = coalesce_deadline(b + 30s, dur{30s});
  EXPECT_EQ(ca, cb);
  EXPECT_GE(ca, b + 30s);
  EXPECT_EQ(ca.time_since_epoch() % dur{1024ms}, dur{0});
  // at most one grain late
  EXPECT_LT(ca - (a + 30s), dur{1024ms});
  // on the grid already: unchanged
  tp on{dur{1024ms} * 1000};
  EXPECT_EQ(coalesce_deadline(on, dur{30s}), on);
  // short delays are exact
  tp c{1000s + 3ms};
  EXPECT_EQ(coalesce_deadline(c, dur{10ms}), c);
}

TEST(timer_slack, every_delay_stays_within_its_slack) {
  for (auto ms : {16, 17, 31, 100, 999, 1000, 5000, 16384, 60000}) {
    dur delay = std::chrono::milliseconds(ms);
    for (int off = 0; off < 2000; off += 7) {
      tp due{1000s + std::chrono::milliseconds(off) + 123us};
      auto c = coalesce_deadline(due, delay);
      EXPECT_GE(c, due);
      EXPECT_LE(c - due, delay / 16) << ms << " ms, offset " << off;
    }
  }
}

} // namespace
