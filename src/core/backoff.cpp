#include "src/core/backoff.hpp"

#include <algorithm>
#include <cmath>

namespace aico {

backoff::backoff(backoff_options opts, uint64_t seed)
  : opts_(opts), rng_(seed != 0 ? seed : random_seed()) {
  opts_.jitter = std::clamp(opts_.jitter, 0.0, 1.0);
  opts_.multiplier = std::max(opts_.multiplier, 1.0);
  if (opts_.max < opts_.initial)
    opts_.max = opts_.initial;
}

std::chrono::milliseconds backoff::base_delay(uint32_t n) const {
  double d = static_cast<double>(opts_.initial.count())
             * std::pow(opts_.multiplier, static_cast<double>(n));
  d = std::min(d, static_cast<double>(opts_.max.count()));
  return std::chrono::milliseconds{static_cast<int64_t>(d)};
}

std::chrono::milliseconds backoff::next() {
  auto base = static_cast<double>(base_delay(attempt_).count());
  if (attempt_ < 1000)
    ++attempt_;
  std::uniform_real_distribution<double> dist{-opts_.jitter, opts_.jitter};
  auto jittered = base * (1.0 + dist(rng_));
  return std::chrono::milliseconds{
    static_cast<int64_t>(std::max(0.0, std::round(jittered)))};
}

} // namespace aico
