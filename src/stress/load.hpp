// aico-stress: the load of one slice of users (see slice.hpp) in a given
// actor system: each user is a full engine session with its own state
// directory, login and conversation(s). The single-process mode runs one
// slice with every user; a worker of the distributed mode runs the slice
// its controller gave it. Same duration, mix, transports and seeds either
// way: user i always is `stress-000<i+1>` with seed `seed * 1000003 + i`.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <memory>
#include <string>
#include <vector>

#include "src/config/load_config.hpp"
#include "src/stress/progress.hpp"
#include "src/stress/report.hpp"

namespace caf {
class actor_system;
} // namespace caf

namespace aico::stress {

/// Validates an operation mix ("send=70,history=20,read=5,health=5").
bool check_mix(const std::string& text, std::string& err);

/// The name of user `i` (0-based): "stress-0001" for 0.
std::string user_name(int i);

/// The aico profile's user `i` (0-based): a UUID (the backend logs in by
/// UUID + PIN), "5eed0000-0000-4000-8000-000000000001" for 0.
std::string aico_user_uuid(int i);

/// Resident set size of this process in kB (0 if unknown).
int64_t rss_kb();

struct load_params {
  std::string url; ///< gateway base URL (loopback)
  /// The gateway's doors by transport name ("ipc", "grpc"; absent = none).
  std::map<std::string, std::string> endpoints;
  /// The aico profile (aico-backend-peer): users are aico_user_uuid(i), the
  /// password is their PIN, conversations are named USER_k (the backend
  /// keeps a conversation id only if it contains '_'), and `ws_url` is the
  /// peer's WebSocket.
  bool aico = false;
  std::string ws_url;
  std::string password;
  std::string transports = "ipc,ws,http";
  std::string mix = "send=70,history=20,read=5,health=5";
  int first = 0;         ///< users [first, first + count)
  int count = 0;
  double rate = 50;      ///< messages/s of this slice
  bool limited = false;  ///< stop after `messages` messages
  int64_t messages = 0;
  double duration = 20;  ///< load phase, s (upper bound)
  double ramp = 0;       ///< s to create all sessions
  double drain_timeout = 60;
  int conversations = 1;
  uint64_t seed = 1;
  std::string state_root; ///< the users' state directories go below
  /// Further command-line values of the client profile (TLS, CURVE);
  /// url, ipc, transports and the state dir come from above.
  client_flags flags;
};

struct load_hooks {
  /// Called from run()'s thread about every 50 ms during the load.
  std::function<void(double elapsed_s, const progress_counters&)> tick;
  /// Called once when the load stopped, before the drain.
  std::function<void(double load_s, uint64_t queued)> load_stopped;
  /// Polled during load and drain: true stops both early.
  std::function<bool()> stop;
};

class load_runner {
public:
  /// Throws std::invalid_argument on a bad mix (check it with check_mix).
  load_runner(caf::actor_system& sys, load_params p);
  ~load_runner(); ///< shutdown()

  load_runner(const load_runner&) = delete;
  load_runner& operator=(const load_runner&) = delete;

  /// Creates the sessions (over the ramp), runs the load until the duration
  /// or the message budget is reached (or hooks.stop()), stops it and waits
  /// (bounded by drain_timeout) until every queued send and read completed.
  /// Call from one thread, once.
  void run(const load_hooks& hooks);

  /// The counters now (call from run()'s thread or after run()).
  progress_counters counters() const;

  /// Per conversation, the ids enqueued, in order (failed sends removed,
  /// except those whose outcome is unknown).
  std::map<std::string, std::vector<std::string>> sent_ids() const;

  /// The sends whose outcome is unknown (the aico profile: error code
  /// "outcome_unknown"); they stay in sent_ids().
  std::set<std::string> unknown_ids() const;

  /// The measurements of the slice: operations, errors, failovers, load and
  /// drain time, memory, sessions. Config fields and integrity are left to
  /// the caller (who knows the whole run).
  report measurements() const;

  /// Stops the users and their engines (in parallel, each bounded by the
  /// engine's shutdown timeout). Idempotent.
  void shutdown();

private:
  struct impl;
  std::unique_ptr<impl> d_;
};

} // namespace aico::stress
