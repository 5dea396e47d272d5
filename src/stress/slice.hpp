// aico-stress: a slice of the simulated users (user indices
// [first, first + count)) with its share of the rate and of the --messages
// budget. The single-process mode runs one slice with every user; the
// distributed mode gives one slice to each worker process.
#pragma once

#include <cstdint>
#include <vector>

namespace aico::stress {

struct user_slice {
  int first = 0;         ///< index of the first user (0-based)
  int count = 0;         ///< number of users
  double rate = 0;       ///< messages/s of these users
  int64_t messages = 0;  ///< share of the --messages budget (if limited)
};

/// Splits `users` users over `workers` slices: contiguous, disjoint, in
/// order, covering every user; the sizes differ by at most one (the first
/// slices get the remainder). Rate and message budget are shared in
/// proportion to the size; the message shares add up to `messages` exactly,
/// the rate shares to `rate` (up to rounding). `workers` > `users` gives
/// empty slices at the end; `workers` < 1 gives none.
std::vector<user_slice> split_users(int users, double rate, int64_t messages,
                                    int workers);

} // namespace aico::stress
