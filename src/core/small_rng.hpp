// aico engine: a small random generator for jitter (pure logic).
//
// SplitMix64 (Steele, Lea and Flood 2014; the generator Vigna recommends
// for seeding xoshiro): 8 bytes of state, passes BigCrush, and satisfies
// UniformRandomBitGenerator so the <random> distributions work with it.
// It replaced std::mt19937_64 in every per-session object (backoff, the
// offline queue): mt19937_64 carries 2.5 kB of state, and a session held
// four of them (docs/performance.md, "Idle sessions"). Not for secrets.
#pragma once

#include <cstdint>
#include <limits>
#include <random>

namespace aico {

class small_rng {
public:
  using result_type = uint64_t;

  explicit small_rng(uint64_t seed = 0) : s_(seed) {}

  void seed(uint64_t s) { s_ = s; }

  static constexpr result_type min() { return 0; }
  static constexpr result_type max() {
    return std::numeric_limits<result_type>::max();
  }

  result_type operator()() {
    uint64_t z = (s_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }

private:
  uint64_t s_;
};

/// A 64-bit seed from std::random_device (which gives 32 bits per call).
inline uint64_t random_seed() {
  std::random_device rd;
  return (uint64_t{rd()} << 32) ^ uint64_t{rd()};
}

} // namespace aico
