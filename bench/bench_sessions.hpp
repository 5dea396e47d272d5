// aico-bench-sessions: what the raw baseline (raw_lws_idle.cpp) and the
// engine run share. Names no libwebsockets type.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace aico::bench {

/// What the process uses at one moment (from /proc/self and getrusage).
struct process_sample {
  int64_t rss_kb = 0;
  int64_t threads = 0;
  int64_t fds = 0;
  double cpu_s = 0; ///< user + system time so far
};

process_sample sample_process();

struct idle_params {
  int sessions = 10000;
  double rate = 500; ///< new sessions per second (ramp)
  std::chrono::milliseconds hold{30000};
  std::chrono::milliseconds ping_interval{30000};
  std::chrono::milliseconds connect_timeout{300000};
};

/// One variant's figures.
struct idle_figures {
  int64_t connected = 0;       ///< sessions up when the ramp ended
  int64_t still_connected = 0; ///< sessions up at the end of the hold
  int64_t drops = 0;           ///< sessions that went down during the hold
  double connect_s = 0;        ///< first start -> all up
  process_sample before;       ///< before the first session
  process_sample after;        ///< all up
  process_sample held;         ///< end of the hold
  std::string error;
  bool ok() const { return error.empty(); }
  double kb_per_session() const {
    return connected > 0
             ? static_cast<double>(after.rss_kb - before.rss_kb)
                 / static_cast<double>(connected)
             : 0;
  }
  /// CPU share of one core used while idle (hold phase).
  double idle_cpu_pct(double hold_s) const {
    return hold_s > 0 ? 100.0 * (held.cpu_s - after.cpu_s) / hold_s : 0;
  }
};

/// `sessions` idle connections in one libwebsockets context on this thread.
idle_figures raw_lws_idle(const std::string& ws_url, const std::string& token,
                          const idle_params& p);

} // namespace aico::bench
