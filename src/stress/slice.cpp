#include "src/stress/slice.hpp"

#include <cstddef>

namespace aico::stress {

std::vector<user_slice> split_users(int users, double rate, int64_t messages,
                                    int workers) {
  std::vector<user_slice> out;
  if (workers < 1 || users < 0)
    return out;
  out.reserve(static_cast<std::size_t>(workers));
  auto base = users / workers;
  auto extra = users % workers;
  int first = 0;
  // shares from cumulative bounds, so they telescope to the totals
  auto msg_at = [&](int i) {
    return users == 0 ? 0
                      : static_cast<int64_t>(
                          static_cast<__int128>(messages) * i / users);
  };
  auto rate_at = [&](int i) {
    return users == 0 ? 0.0 : rate * static_cast<double>(i) / users;
  };
  for (int w = 0; w < workers; ++w) {
    user_slice s;
    s.first = first;
    s.count = base + (w < extra ? 1 : 0);
    auto end = first + s.count;
    s.rate = rate_at(end) - rate_at(first);
    s.messages = msg_at(end) - msg_at(first);
    out.push_back(s);
    first = end;
  }
  return out;
}

} // namespace aico::stress
