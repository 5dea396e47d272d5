// Backoff: exponential growth, cap, and jitter bounds applied after the cap.
#include <gtest/gtest.h>

#include "src/core/backoff.hpp"

using namespace aico;
using namespace std::chrono_literals;

TEST(backoff, grows_exponentially_up_to_the_cap) {
  backoff b{{100ms, 2.0, 0.0, 1000ms}, 42};
  EXPECT_EQ(b.next(), 100ms);
  EXPECT_EQ(b.next(), 200ms);
  EXPECT_EQ(b.next(), 400ms);
  EXPECT_EQ(b.next(), 800ms);
  EXPECT_EQ(b.next(), 1000ms); // capped
  EXPECT_EQ(b.next(), 1000ms);
  EXPECT_EQ(b.attempts(), 6u);
  b.reset();
  EXPECT_EQ(b.next(), 100ms);
}

TEST(backoff, jitter_stays_within_bounds_and_is_applied_after_the_cap) {
  backoff_options opts{500ms, 1.6, 0.2, 30000ms};
  backoff b{opts, 7};
  bool above_cap = false;
  for (uint32_t n = 0; n < 200; ++n) {
    auto base = b.base_delay(n);
    auto d = b.next();
    EXPECT_GE(d.count(), static_cast<int64_t>(base.count() * 0.8) - 1) << n;
    EXPECT_LE(d.count(), static_cast<int64_t>(base.count() * 1.2) + 1) << n;
    if (d > opts.max)
      above_cap = true;
  }
  // jitter after the cap: capped delays still spread both ways
  EXPECT_TRUE(above_cap);
}

TEST(backoff, jitter_spreads_clients_apart) {
  backoff a{{1000ms, 1.6, 0.2, 30000ms}, 1};
  backoff b{{1000ms, 1.6, 0.2, 30000ms}, 2};
  int same = 0;
  for (int i = 0; i < 20; ++i)
    if (a.next() == b.next())
      ++same;
  EXPECT_LT(same, 5);
}

TEST(backoff, same_seed_is_reproducible) {
  backoff a{{}, 99};
  backoff b{{}, 99};
  for (int i = 0; i < 10; ++i)
    EXPECT_EQ(a.next(), b.next());
}

TEST(backoff, sanitizes_options) {
  backoff b{{1000ms, 0.5, 3.0, 10ms}, 3}; // multiplier < 1, jitter > 1, max < initial
  EXPECT_EQ(b.options().multiplier, 1.0);
  EXPECT_EQ(b.options().jitter, 1.0);
  EXPECT_EQ(b.options().max, 1000ms);
  for (int i = 0; i < 50; ++i) {
    auto d = b.next();
    EXPECT_GE(d.count(), 0);
    EXPECT_LE(d.count(), 2000);
  }
}
