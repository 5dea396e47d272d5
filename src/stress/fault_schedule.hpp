// aico-stress: the fault schedule.
//
//   every 5s: ws down 2s; every 11s: ipc down 3s; 5% 503; kill every 30s
//
// Clauses are separated by ';' or new lines ('#' starts a comment):
//   every P: DOOR down D         take a door down for D every P (D < P);
//                                DOOR is any transport name but http (the
//                                gateway's fault endpoint is on HTTP)
//   every P: drop ws             close every open WebSocket once every P
//   every P: kill                kill -9 the gateway and restart it (only
//   kill every P                 when aico-stress started the gateway)
//   N% [5xx]                     fail N % of API requests (default 503)
//   latency Dms                  delay every API request by D
// Durations: 500ms, 5s, 2m, or a plain number of seconds.
#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace aico::stress {

enum class fault_kind { door_down, drop_ws, kill };

struct periodic_fault {
  fault_kind kind = fault_kind::door_down;
  /// door_down: the door's transport name ("ws", "ipc", "grpc", ...), also
  /// its key in the gateway's fault endpoint ({"ws":"down"}).
  std::string door;
  std::chrono::milliseconds period{0};
  std::chrono::milliseconds duration{0}; ///< door_down: the down time
};

/// "ws down", "drop ws", "kill": the clause's action without its times.
std::string to_string(const periodic_fault& f);

struct fault_schedule {
  std::vector<periodic_fault> periodic;
  double fail_ratio = 0;  ///< 0..1
  int fail_status = 503;  ///< 500..599
  int latency_ms = 0;
  bool empty() const {
    return periodic.empty() && fail_ratio == 0 && latency_ms == 0;
  }
  bool has_kill() const;
  /// Some clause switches the door `name` (the gateway must open it).
  bool switches_door(const std::string& name) const;
};

/// Parses a schedule; on error returns false and sets `err` to a message
/// naming the offending clause.
bool parse_fault_schedule(const std::string& text, fault_schedule& out,
                          std::string& err);

/// Parses "500ms", "5s", "2m", "1.5s" or "3" (seconds); false if malformed
/// or negative.
bool parse_duration(const std::string& text, std::chrono::milliseconds& out);

/// One line describing the schedule (for the report).
std::string describe(const fault_schedule& s);

} // namespace aico::stress
