#include "src/stress/histogram.hpp"

#include <algorithm>
#include <cmath>

namespace aico::stress {

namespace {

constexpr uint64_t linear_limit = 128; // one bucket per µs below this
constexpr unsigned sub_bits = 6;       // 64 sub-buckets per power of two

unsigned msb(uint64_t v) {
  return 63u - static_cast<unsigned>(__builtin_clzll(v));
}

} // namespace

size_t latency_histogram::index_of(uint64_t us) {
  if (us > max_trackable_us)
    us = max_trackable_us;
  if (us < linear_limit)
    return static_cast<size_t>(us);
  auto e = msb(us) - sub_bits; // >= 1
  auto sub = us >> e;          // 64..127
  return linear_limit + (e - 1) * 64 + (sub - 64);
}

uint64_t latency_histogram::highest_equivalent(size_t i) {
  if (i < linear_limit)
    return i;
  auto k = i - linear_limit;
  auto e = k / 64 + 1;
  auto sub = k % 64 + 64;
  return ((sub + 1) << e) - 1;
}

latency_histogram::latency_histogram()
  : counts_(index_of(max_trackable_us) + 1, 0) {
}

void latency_histogram::record(int64_t ns) {
  if (ns < 0)
    ns = 0;
  auto us = static_cast<uint64_t>(ns) / 1000;
  ++counts_[index_of(us)];
  if (count_ == 0 || ns < min_ns_)
    min_ns_ = ns;
  if (ns > max_ns_)
    max_ns_ = ns;
  ++count_;
  sum_ns_ += ns;
}

int64_t latency_histogram::percentile(double p) const {
  if (count_ == 0)
    return 0;
  p = std::clamp(p, 0.0, 100.0);
  auto rank = static_cast<uint64_t>(std::ceil(p / 100.0 * count_));
  rank = std::clamp<uint64_t>(rank, 1, count_);
  uint64_t seen = 0;
  for (size_t i = 0; i < counts_.size(); ++i) {
    seen += counts_[i];
    if (seen >= rank) {
      auto v = static_cast<int64_t>(highest_equivalent(i) * 1000 + 999);
      return std::max(std::min(v, max_ns_), min_ns_);
    }
  }
  return max_ns_;
}

double latency_histogram::mean() const {
  return count_ ? static_cast<double>(sum_ns_ / count_) : 0.0;
}

bool latency_histogram::consistent() const {
  if (counts_.size() != index_of(max_trackable_us) + 1)
    return false;
  uint64_t n = 0;
  for (auto c : counts_)
    n += c;
  return n == count_ && min_ns_ >= 0 && (count_ == 0 || min_ns_ <= max_ns_);
}

void latency_histogram::merge(const latency_histogram& other) {
  if (other.count_ == 0)
    return;
  for (size_t i = 0; i < counts_.size(); ++i)
    counts_[i] += other.counts_[i];
  if (count_ == 0 || other.min_ns_ < min_ns_)
    min_ns_ = other.min_ns_;
  max_ns_ = std::max(max_ns_, other.max_ns_);
  count_ += other.count_;
  sum_ns_ += other.sum_ns_;
}

} // namespace aico::stress
