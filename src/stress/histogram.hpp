// aico-stress: an HDR-style latency histogram (log-linear buckets).
//
// Values are nanoseconds, bucketed at microsecond resolution: below 128 µs
// one bucket per µs, above that 64 sub-buckets per power of two (relative
// error < 1.6 %, i.e. two significant digits). Range 1 µs .. 10 min; larger
// values land in the last bucket (the exact maximum is kept separately).
// Histograms of the same layout merge by adding counts, so reports of
// several processes (or sessions) can be combined.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace aico::stress {

class latency_histogram {
public:
  static constexpr uint64_t max_trackable_us = 600ull * 1000 * 1000; // 10 min

  latency_histogram();

  /// Records one value in nanoseconds (negative values count as 0).
  void record(int64_t ns);

  /// The value (ns) at or below which `p` percent of the recorded values
  /// lie (p in 0..100), as the highest value equivalent to its bucket,
  /// capped at max(). 0 when empty.
  int64_t percentile(double p) const;

  int64_t max() const { return max_ns_; }
  int64_t min() const { return count_ ? min_ns_ : 0; }
  uint64_t count() const { return count_; }
  double mean() const;

  /// Adds the other histogram's values.
  void merge(const latency_histogram& other);

  /// Bucket index of a value in µs (exposed for tests).
  static size_t index_of(uint64_t us);
  /// Highest µs value that falls into bucket `i`.
  static uint64_t highest_equivalent(size_t i);

  /// True if the buckets have this build's layout and add up to count()
  /// (checked after a histogram came over the network, see wire.hpp).
  bool consistent() const;

  /// CAF serialization (defined in src/stress/wire.hpp, which needs CAF).
  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f,
                                                 latency_histogram& x);

private:
  std::vector<uint64_t> counts_;
  uint64_t count_ = 0;
  int64_t max_ns_ = 0;
  int64_t min_ns_ = 0;
  long double sum_ns_ = 0;
};

} // namespace aico::stress
