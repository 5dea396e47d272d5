// aico-stress: the live progress line. Pure formatting (unit-tested): the
// plain line printed every 5 s when stderr is not a terminal, and the
// progress bar that updates in place on a terminal.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace aico::stress {

/// Counters of a running load (one process, or summed over workers).
struct progress_counters {
  uint64_t created = 0;     ///< sessions created so far
  uint64_t users = 0;       ///< sessions to create
  uint64_t logged_in = 0;
  uint64_t ops_ok = 0;
  uint64_t ops_err = 0;
  uint64_t sends = 0;       ///< messages enqueued
  uint64_t outstanding = 0; ///< operations waiting for completion
  /// Users by active transport: the slot of each transport_mode value
  /// (ipc, ws, http, then the transports not in the default order), the
  /// last slot for none.
  static constexpr std::size_t none = 7;
  std::array<int64_t, none + 1> mix{};

  void add(const progress_counters& other);
};

/// The plain line (unchanged since the first version):
/// `[  12.3s] users 200/200 (198 in)  ops 1234 (180/s)  sent 900  errors 3
///  queued 12  mix ipc 150 ws 40 http 10 none 0`.
std::string format_progress_line(double elapsed_s, const progress_counters& c,
                                 double ops_rate);

/// The terminal line:
/// `[#######.............]  35%  7.0/20s  users 200/200  ops 1234 (180/s)
///  sent 900  err 3  queued 12  ipc 150 ws 40 http 10 none 0`.
/// The fraction is elapsed/duration, or sent/messages when `messages` > 0
/// (a --messages budget), whichever is further. `bar_width` cells between
/// the brackets; a `max_width` > 0 cuts the line to that many characters
/// (the terminal's width, so the line never wraps).
std::string format_progress_bar(double elapsed_s, double duration_s,
                                int64_t messages, const progress_counters& c,
                                double ops_rate, size_t bar_width = 20,
                                size_t max_width = 0);

} // namespace aico::stress
