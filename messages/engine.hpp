// aico engine: the engine as a whole — a supervisor (with its transports) and
// a token manager, spawned into a host's caf::actor_system and wired
// together. Host actors use the typed handles; `engine` owns their lifetime.
#pragma once

#include <chrono>

#include "caf/all.hpp"

#include "messages/supervisor.hpp"
#include "messages/token_manager.hpp"

namespace aico {

struct engine_config {
  supervisor_config connection;
  token_manager_config tokens;
  /// Default deadline of API calls made through the engine.
  caf::timespan request_timeout = std::chrono::seconds(10);
  /// Upper bound for stopping the engine's actors on destruction.
  caf::timespan shutdown_timeout = std::chrono::seconds(5);
};

class engine {
public:
  /// Spawns the supervisor and the token manager into `sys` and starts
  /// connecting (unless `connect` is false).
  engine(caf::actor_system& sys, engine_config cfg, bool connect = true);

  /// Stops the engine's actors (never the host's), bounded by
  /// cfg.shutdown_timeout.
  ~engine();

  engine(const engine&) = delete;
  engine& operator=(const engine&) = delete;

  supervisor_actor connection() const { return sup_; }
  token_manager_actor tokens() const { return tokens_; }
  const engine_config& config() const { return cfg_; }

private:
  caf::actor_system& sys_;
  engine_config cfg_;
  supervisor_actor sup_;
  token_manager_actor tokens_;
};

} // namespace aico
