// aico-stress: the final report (counters, histograms, integrity) as human
// text and as JSON. Reports merge (histograms add up, counters sum), so the
// figures of several sessions or processes can be combined.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include <boost/json.hpp>

#include "src/stress/histogram.hpp"
#include "src/stress/integrity.hpp"

namespace aico::stress {

struct op_stats {
  uint64_t ok = 0;
  uint64_t errors = 0;
  /// Latency of successful operations by transport ("ipc", "ws", "http",
  /// "none" when nothing was connected at completion).
  std::map<std::string, latency_histogram> by_transport;

  latency_histogram total() const;
  void merge(const op_stats& other);
};

struct report {
  // -- what ran -------------------------------------------------------------
  uint64_t users = 0;
  double rate = 0;          ///< requested messages/s (all users)
  double duration_s = 0;    ///< requested
  std::string transports;
  std::string mix;
  std::string faults;
  uint64_t seed = 0;
  /// Worker processes of a distributed run (0: single process; then the
  /// report has no "workers" field, as before).
  uint64_t workers = 0;
  // -- measured -------------------------------------------------------------
  double elapsed_s = 0;     ///< load phase
  double drain_s = 0;       ///< waiting for the queues after the load
  std::map<std::string, op_stats> operations; ///< send, history, read, health
  std::map<std::string, uint64_t> errors;     ///< by error class
  uint64_t failovers = 0;   ///< changes of the active transport
  uint64_t refreshes = 0;   ///< token refreshes
  uint64_t logins = 0;
  uint64_t login_failures = 0;
  uint64_t undrained = 0;   ///< sends still queued when the drain ended
  uint64_t fault_actions = 0;
  uint64_t gateway_kills = 0;
  int64_t rss_before_kb = 0;
  int64_t rss_after_kb = 0;
  uint64_t sessions = 0;
  integrity_result integrity;
  bool integrity_checked = false;

  /// Adds another report's measurements (config fields are kept).
  void merge(const report& other);

  double per_session_kb() const;
  bool exact() const { return integrity_checked && integrity.total.exact(); }

  boost::json::object to_json() const;
  std::string to_text() const;
};

/// {"count","mean_ms","p50_ms","p90_ms","p99_ms","p999_ms","max_ms"}.
boost::json::object latency_json(const latency_histogram& h);

} // namespace aico::stress
