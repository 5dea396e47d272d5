// Tests on real threads: the bounded wait the thread-safe recorders share
// (support/report_log.hpp, support/engine_harness.hpp).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <optional>
#include <vector>

namespace aico::test {

/// Waits on `cv` (with `lock` held on the mutex guarding `xs`) at most
/// `timeout` for an element at index >= from satisfying `pred`; returns a
/// copy of the first one, or nothing.
template <class T, class Pred>
std::optional<T> wait_first(std::unique_lock<std::mutex>& lock,
                            std::condition_variable& cv,
                            const std::vector<T>& xs, std::size_t from,
                            std::chrono::milliseconds timeout, Pred pred) {
  std::optional<T> res;
  cv.wait_for(lock, timeout, [&] {
    for (auto i = from; i < xs.size(); ++i)
      if (pred(xs[i])) {
        res = xs[i];
        return true;
      }
    return false;
  });
  return res;
}

} // namespace aico::test
