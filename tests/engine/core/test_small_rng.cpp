// small_rng (src/core/small_rng.hpp): reproducible with a seed, different
// streams for different seeds, usable by <random>'s distributions, and
// roughly uniform (a coarse check that a broken mixer would fail).
#include <gtest/gtest.h>

#include <array>
#include <random>

#include "src/core/backoff.hpp"
#include "src/core/small_rng.hpp"

using namespace aico;

TEST(small_rng, the_same_seed_gives_the_same_stream) {
  small_rng a{42}, b{42}, c{43};
  bool differs = false;
  for (int i = 0; i < 100; ++i) {
    auto x = a();
    EXPECT_EQ(x, b());
    differs = differs || x != c();
  }
  EXPECT_TRUE(differs);
}

TEST(small_rng, a_uniform_distribution_over_it_fills_every_bucket_evenly) {
  small_rng r{7};
  std::uniform_real_distribution<double> d{0.0, 1.0};
  std::array<int, 16> buckets{};
  constexpr int n = 160000;
  for (int i = 0; i < n; ++i) {
    auto x = d(r);
    ASSERT_GE(x, 0.0);
    ASSERT_LT(x, 1.0);
    ++buckets[static_cast<std::size_t>(x * 16)];
  }
  for (auto b : buckets) { // expected 10,000 each; 5 sigma is about 500
    EXPECT_GT(b, 9400);
    EXPECT_LT(b, 10600);
  }
}

TEST(small_rng, small_enough_to_keep_one_per_session) {
  EXPECT_LE(sizeof(small_rng), 8u);
  EXPECT_LE(sizeof(backoff), 64u); // was 2.5 kB with mt19937_64
}
